//! Exact range checks of shared inputs: values at each bound pass, values just past a bound
//! (with the cheating owner's best hint) and forged hints abort with the check named, at
//! n = 3 and n = 5; the abort comes at the checkpoint, before anything derived from the
//! input is opened.

mod common;

use common::{abort_reasons, elems, ints, outputs, run};
use num_bigint::BigInt;
use parley_enclave::field::{Field, M127};
use parley_enclave::gadgets::range::{range_hint, range_hint_unchecked, range_width};
use parley_enclave::gadgets::{Circuit, KAPPA};
use parley_enclave::program::Program;
use parley_enclave::{CheckFailure, MpcError};

const CHECK: &str = "range: party 0's systolic_bp values within [60, 260]";

fn big(v: &[i128]) -> Vec<BigInt> {
    v.iter().map(|&x| BigInt::from(x)).collect()
}

/// Party 0 inputs x (len) and its hint; party 1 inputs y. After the range check and a
/// checkpoint: output [x < y] and x + y.
fn program(n: usize, t: usize, len: usize, lo: i128, hi: i128) -> (Program<M127>, u32) {
    let w = range_width(&BigInt::from(lo), &BigInt::from(hi));
    let (p, (), _) = Circuit::<M127>::build(n, t, KAPPA, |c| {
        let x = c.b().input(0, len);
        let hint = c.b().input(0, 2 * w as usize * len);
        let y = c.b().input(1, len);
        c.assert_range(x, &big(&[lo]), &big(&[hi]), w, hint, CHECK);
        c.checkpoint();
        let lt = c.lt(x, y, 12, "x − y");
        c.b().output(lt);
        let s = c.b().add(x, y);
        c.b().output(s);
        Ok(())
    })
    .expect("fits");
    (p, w)
}

fn run_with(
    n: usize,
    t: usize,
    x: &[i128],
    hint: Vec<M127>,
    seed: u64,
) -> parley_enclave::sim::Report<parley_enclave::engine::EngineOutput<M127>> {
    let (prog, _) = program(n, t, x.len(), 60, 260);
    let y: Vec<i128> = x.iter().map(|v| 200 - v / 2).collect();
    let mut inputs = vec![vec![elems(x), hint], vec![elems(&y)]];
    inputs.resize(n, vec![]);
    run(t, prog, inputs, seed)
}

fn assert_range_abort(
    report: &parley_enclave::sim::Report<parley_enclave::engine::EngineOutput<M127>>,
) {
    for e in abort_reasons(report) {
        // Every party names the check itself or quotes a peer that did.
        let named = matches!(e.check_failure(), Some(CheckFailure::Assertion { check }) if check == CHECK)
            // (a quoted reason is escaped: compare its tail)
            || matches!(&e, MpcError::PeerAborted { reason, .. } if reason.contains("systolic_bp values within [60, 260]"));
        assert!(named, "{e}");
    }
}

#[test]
fn values_at_the_bounds_pass() {
    for (n, t) in [(3, 1), (5, 2)] {
        let x = [60i128, 260, 61, 259, 130];
        let w = range_width(&BigInt::from(60), &BigInt::from(260));
        let hint =
            range_hint::<M127>(&big(&x), &big(&[60]), &big(&[260]), w, "x").expect("in range");
        let got = outputs(&run_with(n, t, &x, hint, 3));
        let y: Vec<i128> = x.iter().map(|v| 200 - v / 2).collect();
        assert_eq!(
            ints(&got[0]),
            x.iter()
                .zip(&y)
                .map(|(a, b)| i128::from(a < b))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            ints(&got[1]),
            x.iter().zip(&y).map(|(a, b)| a + b).collect::<Vec<_>>()
        );
    }
}

#[test]
fn values_just_past_a_bound_abort_with_the_check_named() {
    let w = range_width(&BigInt::from(60), &BigInt::from(260));
    for (n, t) in [(3, 1), (5, 2)] {
        for bad in [59i128, 261, 0, -1, 1 << 40] {
            let x = [100i128, bad, 200];
            // The honest helper refuses to make a hint for it...
            assert!(range_hint::<M127>(&big(&x), &big(&[60]), &big(&[260]), w, "x").is_err());
            // ...so a cheating owner sends its best try.
            let hint =
                range_hint_unchecked::<M127>(&big(&x), &BigInt::from(60), &BigInt::from(260), w);
            assert_range_abort(&run_with(n, t, &x, hint, 5));
        }
    }
}

#[test]
fn forged_hints_abort() {
    let w = range_width(&BigInt::from(60), &BigInt::from(260)) as usize;
    let x = [300i128];
    // Non-bits that still satisfy both sums: x − lo = 240 = 2·120 (b_1 = 120), and
    // hi − x = −40 = the field element p − 40 in bit 0.
    let mut hint = vec![M127::zero(); 2 * w];
    hint[1] = M127::from_u64(120);
    hint[w] = -M127::from_u64(40);
    assert_range_abort(&run_with(3, 1, &x, hint, 7));
    // An in-range value whose hint has one flipped bit.
    let good = [100i128];
    let mut hint =
        range_hint_unchecked::<M127>(&big(&good), &BigInt::from(60), &BigInt::from(260), w as u32);
    hint[0] = M127::one() - hint[0];
    assert_range_abort(&run_with(5, 2, &good, hint, 8));
}

#[test]
fn the_abort_comes_before_anything_derived_from_the_input_is_opened() {
    let w = range_width(&BigInt::from(60), &BigInt::from(260));
    let ok = [100i128, 200];
    let bad = [100i128, 261];
    let good_run = run_with(
        3,
        1,
        &ok,
        range_hint::<M127>(&big(&ok), &big(&[60]), &big(&[260]), w, "x").expect("ok"),
        9,
    );
    let bad_run = run_with(
        3,
        1,
        &bad,
        range_hint_unchecked::<M127>(&big(&bad), &BigInt::from(60), &BigInt::from(260), w),
        9,
    );
    assert_range_abort(&bad_run);
    let last_round = |r: &parley_enclave::sim::Report<_>| {
        r.traffic
            .iter()
            .filter_map(|t| t.bytes_by_round.keys().max().copied())
            .max()
            .unwrap_or(0)
    };
    // The valid job goes on to the masked comparison and the outputs; the invalid one stops
    // at the checkpoint's last verification round.
    let (prog, _) = program(3, 1, 2, 60, 260);
    let stats = prog.stats();
    assert_eq!(stats.checkpoints, 1);
    assert!(last_round(&bad_run) < last_round(&good_run));
    // Rounds: input, bit squares (and input MACs), bit openings, 5 verification rounds.
    assert!(last_round(&bad_run) <= 8, "{}", last_round(&bad_run));
}
