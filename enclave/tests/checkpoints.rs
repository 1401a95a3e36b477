//! Checkpoints and named assertions in the engine: values carried across a checkpoint get
//! fresh MACs, an additive attack on either side of a checkpoint is caught (before the next
//! segment or before the outputs), and assertions are judged in both security modes.

mod common;

use common::{elems, ints};
use parley_enclave::cheat::Deviation;
use parley_enclave::engine::{EngineOutput, Security};
use parley_enclave::field::M127;
use parley_enclave::program::{Program, ProgramBuilder};
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Harness, Order, Report, engines};
use parley_enclave::{CheckFailure, SessionId};
use std::sync::Arc;

const SESSION: SessionId = SessionId([0x77; 32]);

/// a = x·y; [checkpoint]; b = a·y (a needs a new MAC); c = b·x; outputs a, c, x + y.
fn program(n: usize, assert_zero_of: Option<usize>) -> Program<M127> {
    let mut b = ProgramBuilder::new(n);
    let x = b.input(0, 3);
    let y = b.input(1, 3);
    let a = b.mul(x, y);
    if let Some(i) = assert_zero_of {
        let s = b.slice(x, i, 1);
        b.assert_zero(s, "x[i] is zero");
    }
    b.checkpoint();
    let bb = b.mul(a, y);
    let c = b.mul(bb, x);
    b.output(a);
    b.output(c);
    let s = b.add(x, y);
    b.output(s);
    b.build().expect("valid")
}

fn run(
    n: usize,
    t: usize,
    security: Security,
    program: Program<M127>,
    cheat: Option<(usize, Deviation)>,
) -> Report<EngineOutput<M127>> {
    let xs = elems::<M127>(&[0, 2, 3]);
    let ys = elems::<M127>(&[5, 7, 11]);
    let mut inputs = vec![vec![SecretVec::new(xs)], vec![SecretVec::new(ys)]];
    inputs.resize_with(n, Vec::new);
    let mut parties = engines(t, security, Arc::new(program), inputs, SESSION, 4).expect("valid");
    if let Some((who, d)) = cheat {
        parties[who].set_cheat(d);
    }
    Harness::new(parties, 4).order(Order::Random).run()
}

#[test]
fn values_cross_a_checkpoint_with_fresh_macs() {
    for (n, t) in [(3, 1), (5, 2)] {
        let p = program(n, None);
        assert_eq!(p.stats().checkpoints, 1);
        for security in [Security::Malicious, Security::SemiHonest] {
            let report = run(n, t, security, p.clone(), None);
            for o in &report.outcomes {
                let v = o.output().expect("done").all_values().expect("to all");
                assert_eq!(ints(&v[0]), vec![0, 14, 33]);
                assert_eq!(ints(&v[1]), vec![0, 14 * 7 * 2, 33 * 11 * 3]);
                assert_eq!(ints(&v[2]), vec![5, 9, 14]);
            }
        }
    }
}

#[cfg(not(feature = "test-disable-mult-check"))]
#[test]
fn additive_attacks_on_either_side_of_a_checkpoint_are_caught() {
    // Round 0 of the multiplications is before the checkpoint, rounds 1 and 2 after it.
    for round in [0, 1, 2] {
        let d = Deviation::AdditiveAttack { round, element: 1 };
        let report = run(3, 1, Security::Malicious, program(3, None), Some((2, d)));
        for (i, o) in report.outcomes.iter().enumerate() {
            let e = o.error().unwrap_or_else(|| {
                panic!("party {i} delivered despite the attack in round {round}: {o:?}")
            });
            // Each honest party finds it itself or quotes a peer that did.
            if i != 2 {
                assert!(
                    matches!(
                        e.check_failure(),
                        Some(CheckFailure::MultiplicationCheck { .. })
                    ) || e
                        .to_string()
                        .contains("multiplication check (Chida et al.) failed"),
                    "round {round}, party {i}: {e}"
                );
            }
        }
    }
}

/// Mutation twin (`--features test-disable-mult-check`): without the check, the same
/// attacks on either side of the checkpoint deliver wrong outputs, so the test above passes
/// because of the check.
#[cfg(feature = "test-disable-mult-check")]
#[test]
fn additive_attacks_around_a_checkpoint_go_through_without_the_check() {
    for round in [0, 2] {
        let d = Deviation::AdditiveAttack { round, element: 1 };
        let report = run(3, 1, Security::Malicious, program(3, None), Some((2, d)));
        for o in &report.outcomes {
            let v = o.output().expect("delivered").all_values().expect("to all");
            assert_ne!(
                ints(&v[1]),
                vec![0, 14 * 7 * 2, 33 * 11 * 3],
                "round {round}"
            );
        }
    }
}

#[test]
fn assertions_are_judged_in_both_security_modes() {
    for security in [Security::Malicious, Security::SemiHonest] {
        // x[0] = 0 passes; x[1] = 2 does not.
        let report = run(3, 1, security, program(3, Some(0)), None);
        assert!(report.all_outputs().is_some(), "{security}");
        let report = run(3, 1, security, program(3, Some(1)), None);
        for o in &report.outcomes {
            let e = o.error().expect("aborted");
            let named = matches!(e.check_failure(), Some(CheckFailure::Assertion { check }) if check == "x[i] is zero")
                || e.to_string().contains("x[i] is zero");
            assert!(named, "{security}: {e}");
        }
    }
}

#[test]
fn nobody_reveals_the_coin_before_every_party_has_finished_the_checked_rounds() {
    // Party 2 holds back its resharing of the last multiplication round to party 1. Party
    // 0 finishes that round, but must not open its coin and MAC-key shares (which, with
    // party 2's own, would reveal them) before party 1 has finished too — only then could
    // party 2 no longer adapt the held-back messages.
    use parley_enclave::sim::{Fault, Filter};
    use std::cell::RefCell;
    use std::rc::Rc;
    let p = program(3, None);
    let xs = elems::<M127>(&[0, 2, 3]);
    let ys = elems::<M127>(&[5, 7, 11]);
    let inputs = vec![vec![SecretVec::new(xs)], vec![SecretVec::new(ys)], vec![]];
    let parties = engines(1, Security::Malicious, Arc::new(p), inputs, SESSION, 4).expect("valid");
    type Send = (usize, usize, &'static str, u32);
    let sends: Rc<RefCell<Vec<Send>>> = Rc::default();
    let log = Rc::clone(&sends);
    // The final segment's multiplications are in rounds 8 and 9 (after the checkpoint's
    // five verification rounds and its re-MAC round).
    let report = Harness::new(parties, 4)
        .fault(Fault::Delay(
            Filter::from(2).to(1).kind("reshare").round(9),
            500,
        ))
        .fault(Fault::Tamper(
            Filter::any(),
            Box::new(move |e| {
                log.borrow_mut()
                    .push((e.from, e.to, e.msg.kind(), e.msg.chunk().round))
            }),
        ))
        .run();
    assert!(report.all_outputs().is_some());
    let sends = sends.borrow();
    let at = |pred: &dyn Fn(&Send) -> bool| sends.iter().position(pred).expect("sent");
    // (Sends are logged when made; the held-back message is delivered 500 steps later.)
    let party0_sync = at(&|s| s.0 == 0 && s.3 == 10);
    let party1_sync = at(&|s| s.0 == 1 && s.3 == 10);
    let party0_coin = at(&|s| s.0 == 0 && s.3 == 11);
    // Party 0 was ready early, but opened its coin share only after party 1 (which had to
    // wait for the held-back message) sent its sync share.
    assert!(
        party0_sync < party1_sync && party1_sync < party0_coin,
        "{sends:?}"
    );
    assert!(at(&|s| s.0 == 2 && s.1 == 1 && s.2 == "reshare" && s.3 == 9) < party0_sync);
}
