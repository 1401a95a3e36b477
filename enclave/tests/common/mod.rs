//! Shared helpers for the gadget and analytics tests: run a program among n parties in
//! memory and collect what party 0 received.
#![allow(dead_code)]

use parley_enclave::engine::{EngineOutput, Security};
use parley_enclave::field::Field;
use parley_enclave::program::Program;
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Harness, Order, Report, engines};
use parley_enclave::{MpcError, SessionId};
use std::sync::Arc;

pub const SESSION: SessionId = SessionId([0x5a; 32]);

/// Runs `program` with `inputs[p]` = party p's input vectors; returns the report.
pub fn run<F: Field>(
    t: usize,
    program: Program<F>,
    inputs: Vec<Vec<Vec<F>>>,
    seed: u64,
) -> Report<EngineOutput<F>> {
    let secret: Vec<Vec<SecretVec<F>>> = inputs
        .into_iter()
        .map(|p| p.into_iter().map(SecretVec::new).collect())
        .collect();
    let parties = engines(
        t,
        Security::Malicious,
        Arc::new(program),
        secret,
        SESSION,
        seed,
    )
    .expect("valid engines");
    Harness::new(parties, seed).order(Order::Random).run()
}

/// Every party's outputs, checking they agree; panics with the abort reason otherwise.
pub fn outputs<F: Field>(report: &Report<EngineOutput<F>>) -> Vec<Vec<F>> {
    let mut first: Option<Vec<Vec<F>>> = None;
    for (i, o) in report.outcomes.iter().enumerate() {
        let out = o
            .output()
            .unwrap_or_else(|| panic!("party {i} did not finish: {o:?}"))
            .all_values()
            .expect("outputs to all");
        match &first {
            Some(f) => assert_eq!(f, &out, "parties disagree"),
            None => first = Some(out),
        }
    }
    first.expect("at least one party")
}

/// The error every party aborted with (they must all abort).
pub fn abort_reasons<F: Field>(report: &Report<EngineOutput<F>>) -> Vec<MpcError> {
    report
        .outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| {
            o.error()
                .unwrap_or_else(|| panic!("party {i} did not abort: {o:?}"))
                .clone()
        })
        .collect()
}

/// Signed integers of public elements.
pub fn ints<F: Field>(v: &[F]) -> Vec<i128> {
    v.iter()
        .map(|x| x.to_i128_vartime().expect("fits i128"))
        .collect()
}

/// Elements of signed integers.
pub fn elems<F: Field>(v: &[i128]) -> Vec<F> {
    v.iter()
        .map(|&x| {
            let m = F::from_u128(x.unsigned_abs());
            if x < 0 { -m } else { m }
        })
        .collect()
}
