//! Outputs to named recipients only (DESIGN §1): a party not named by an output never
//! receives its opening shares; outside recipients get one share per party and reconstruct
//! with the degree-t check.

use parley_enclave::SessionId;
use parley_enclave::engine::{EngineOutput, Security, reconstruct_external};
use parley_enclave::field::{Field, M127};
use parley_enclave::program::{ProgramBuilder, Recipients};
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Fault, Filter, Harness, Order, Report, engines};
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

const SESSION: SessionId = SessionId([0x3c; 32]);

/// out0 = x0 + x1 to everyone, out1 = x0·x1 to `subset`, out2 = Σ x2 to nobody (external).
fn run(
    n: usize,
    t: usize,
    security: Security,
    subset: Vec<usize>,
    seed: u64,
    counted: Option<usize>,
) -> (Report<EngineOutput<M127>>, usize) {
    let mut b = ProgramBuilder::<M127>::new(n);
    let x0 = b.input(0, 3);
    let x1 = b.input(1, 3);
    let x2 = b.input(2, 3);
    let s = b.add(x0, x1);
    let p = b.mul(x0, x1);
    let q = b.sum(x2);
    b.output(s);
    b.output_to(p, Recipients::Parties(subset));
    b.output_to(q, Recipients::External);
    let program = Arc::new(b.build().expect("valid"));
    let inputs: Vec<Vec<SecretVec<M127>>> = (0..n)
        .map(|i| {
            if i < 3 {
                vec![SecretVec::new(
                    (1..=3)
                        .map(|k| M127::from_u64((10 * i + k) as u64))
                        .collect(),
                )]
            } else {
                vec![]
            }
        })
        .collect();
    let parties = engines(t, security, program, inputs, SESSION, seed).expect("valid");
    let hits = Rc::new(Cell::new(0usize));
    let mut h = Harness::new(parties, seed).order(Order::Random);
    if let Some(p) = counted {
        let hits = Rc::clone(&hits);
        h = h.fault(Fault::Tamper(
            Filter::any().kind("output").to(p),
            Box::new(move |_| hits.set(hits.get() + 1)),
        ));
    }
    let report = h.run();
    (report, hits.get())
}

fn m(v: &[u64]) -> Vec<M127> {
    v.iter().map(|&x| M127::from_u64(x)).collect()
}

#[test]
fn only_named_parties_learn_an_output() {
    for (n, t) in [(3, 1), (5, 2)] {
        for security in [Security::SemiHonest, Security::Malicious] {
            let (report, _) = run(n, t, security, vec![1, 2], 7, None);
            for (i, o) in report.outcomes.iter().enumerate() {
                let out = o.output().expect("done");
                assert_eq!(out.values[0], Some(m(&[12, 14, 16])), "party {i}");
                let want = (i == 1 || i == 2).then(|| m(&[11, 2 * 12, 3 * 13]));
                assert_eq!(out.values[1], want, "party {i}");
                assert_eq!(out.values[2], None, "external output is opened to nobody");
                assert!(out.all_values().is_none());
            }
        }
    }
}

#[test]
fn a_non_recipient_receives_no_output_shares() {
    // Party 0 is named by no output except the one to everyone: drop that one and it gets
    // nothing at all in the output round.
    let (_, to_recipient) = run(3, 1, Security::Malicious, vec![0], 1, Some(0));
    assert_eq!(
        to_recipient, 2,
        "a recipient hears from both peers (one frame each)"
    );
    let mut b = ProgramBuilder::<M127>::new(3);
    let x = b.input(0, 2);
    let y = b.input(1, 2);
    let p = b.mul(x, y);
    b.output_to(p, Recipients::Parties(vec![1]));
    let program = Arc::new(b.build().expect("valid"));
    let inputs = [
        vec![SecretVec::new(m(&[2, 3]))],
        vec![SecretVec::new(m(&[5, 7]))],
        vec![],
    ];
    for outsider in [0, 2] {
        let parties = engines(
            1,
            Security::Malicious,
            Arc::clone(&program),
            inputs
                .iter()
                .map(|p| p.iter().map(SecretVec::duplicate).collect())
                .collect(),
            SESSION,
            3,
        )
        .expect("valid");
        let hits = Rc::new(Cell::new(0usize));
        let counter = Rc::clone(&hits);
        let report = Harness::new(parties, 3)
            .fault(Fault::Tamper(
                Filter::any().kind("output").to(outsider),
                Box::new(move |_| counter.set(counter.get() + 1)),
            ))
            .run();
        assert_eq!(hits.get(), 0, "party {outsider} was sent output shares");
        let outs: Vec<_> = report
            .outcomes
            .iter()
            .map(|o| o.output().expect("done").values[0].clone())
            .collect();
        assert_eq!(outs, vec![None, Some(m(&[10, 21])), None]);
    }
}

#[test]
fn outside_recipients_reconstruct_with_the_degree_check() {
    let (report, _) = run(5, 2, Security::Malicious, vec![4], 11, None);
    let mut shares: Vec<_> = report
        .outcomes
        .iter()
        .map(|o| {
            let out = o.output().expect("done");
            assert_eq!(out.external.len(), 1);
            out.external[0].clone()
        })
        .collect();
    let points: Vec<u64> = (1..=5).collect();
    assert_eq!(
        reconstruct_external(&points, 2, &shares).expect("consistent"),
        m(&[21 + 22 + 23])
    );
    // A wrong share from one party is caught, not silently outvoted.
    shares[3].shares.as_mut_slice()[0] += M127::one();
    let err = reconstruct_external(&points, 2, &shares).expect_err("inconsistent");
    assert!(
        err.to_string()
            .contains("external output reconstruction consistency check failed"),
        "{err}"
    );
    // Missing or duplicated shares are refused with the party named.
    let err = reconstruct_external(&points, 2, &shares[..4]).expect_err("missing");
    assert!(err.to_string().contains("no share from party 4"), "{err}");
    let mut dup = shares.clone();
    dup[1] = dup[0].clone();
    let err = reconstruct_external(&points, 2, &dup).expect_err("duplicate");
    assert!(err.to_string().contains("two shares from party 0"), "{err}");
    assert!(format!("{:?}", shares[0]).contains("redacted"));
}

#[test]
fn recipients_outside_the_federation_are_refused() {
    let mut b = ProgramBuilder::<M127>::new(3);
    let x = b.input(0, 1);
    b.output_to(x, Recipients::Parties(vec![3]));
    let err = b.build().expect_err("party 3 of 3");
    assert!(
        err.to_string()
            .contains("output r0 to party 3, but the program has 3 parties"),
        "{err}"
    );
    let mut b = ProgramBuilder::<M127>::new(3);
    let x = b.input(0, 1);
    b.output_to(x, Recipients::Parties(vec![]));
    assert!(b.build().is_err());
}
