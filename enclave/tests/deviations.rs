//! Deviation tests with teeth: for each deviation a corrupted party can make, the honest
//! parties abort before any output and name the failed check. The additive-attack test has a
//! mutation twin: built with `--features test-disable-mult-check` (the Chida check switched
//! off) the same attack delivers a wrong output, so the abort is the check's doing.
//!
//! Run the mutation twin with:
//! `cargo test -p parley-enclave --features test-disable-mult-check --test deviations`

use parley_enclave::cheat::Deviation;
use parley_enclave::engine::{Engine, EngineOutput, Security};
use parley_enclave::field::{Field, M127};
use parley_enclave::program::{Program, ProgramBuilder};
use parley_enclave::prss::KeySetup;
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Fault, Filter, Harness, Order, Outcome, Report, edit_elements, engines};
use parley_enclave::{Config, MpcError, SessionId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::sync::Arc;

const SESSION: SessionId = SessionId([0x51; 32]);
const LEN: usize = 6;

/// Inputs from parties 0 and 1 (and 2); products, an inner product, a masked intermediate
/// opening when `with_open`, and outputs.
fn program(n: usize, with_open: bool) -> Program<M127> {
    let mut b = ProgramBuilder::new(n);
    let x = b.input(0, LEN);
    let y = b.input(1, LEN);
    let z = b.input(2, LEN);
    let base = if with_open {
        let r = b.random(LEN);
        let masked = b.add(x, r);
        let opened = b.open(masked);
        b.sub(opened, r)
    } else {
        x
    };
    let p = b.mul(base, y);
    let q = b.mul(p, z);
    let ip = b.dot(x, z);
    let s = b.sum(q);
    b.output(p);
    b.output(s);
    b.output(ip);
    b.build().expect("valid")
}

fn inputs(n: usize) -> Vec<Vec<Vec<M127>>> {
    (0..n)
        .map(|p| {
            if p < 3 {
                vec![
                    (0..LEN)
                        .map(|i| M127::from_u64((p * 10 + i + 1) as u64))
                        .collect(),
                ]
            } else {
                vec![]
            }
        })
        .collect()
}

fn expected(n: usize) -> Vec<Vec<M127>> {
    let inp = inputs(n);
    let (x, y, z) = (&inp[0][0], &inp[1][0], &inp[2][0]);
    let p: Vec<M127> = x.iter().zip(y).map(|(a, b)| *a * *b).collect();
    let s = p
        .iter()
        .zip(z)
        .fold(M127::zero(), |acc, (a, b)| acc + *a * *b);
    vec![p, vec![s], vec![M127::dot(x, z)]]
}

fn federation(
    n: usize,
    t: usize,
    security: Security,
    with_open: bool,
    cheater: usize,
    d: Deviation,
) -> Vec<Engine<M127>> {
    let secret = inputs(n)
        .into_iter()
        .map(|p| p.into_iter().map(SecretVec::new).collect())
        .collect();
    let mut parties = engines(
        t,
        security,
        Arc::new(program(n, with_open)),
        secret,
        SESSION,
        77,
    )
    .expect("valid");
    parties[cheater].set_cheat(d);
    parties
}

/// Every honest party aborted, none delivered output, and at least one failed `check` itself
/// (the others may have been told by an abort notice quoting it). Returns the honest errors.
fn assert_caught(report: &Report<EngineOutput<M127>>, cheater: usize, check: &str) -> Vec<String> {
    let mut own = 0;
    let mut errors = Vec::new();
    for (i, o) in report
        .outcomes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != cheater)
    {
        let Outcome::Aborted(e) = o else {
            panic!("honest party {i} did not abort: {o:?}")
        };
        let text = e.to_string();
        match e {
            MpcError::Check(_) => {
                assert!(
                    text.contains(check),
                    "party {i} failed another check: {text}"
                );
                own += 1;
            }
            MpcError::PeerAborted { reason, .. } => {
                assert!(reason.contains(check), "party {i}: {text}")
            }
            other => panic!("party {i} aborted for a non-check reason: {other}"),
        }
        errors.push(text);
    }
    assert!(
        own > 0,
        "no honest party detected the deviation itself: {errors:?}"
    );
    errors
}

/// Runs with seeded reordering. A cheater stays quiet about its own abort (a real one would
/// not help), so the honest parties must find the deviation themselves.
fn run_with(parties: Vec<Engine<M127>>, seed: u64, cheater: usize) -> Report<EngineOutput<M127>> {
    Harness::new(parties, seed)
        .order(Order::Random)
        .fault(Fault::Drop(Filter::from(cheater).kind("abort")))
        .run()
}

fn run(parties: Vec<Engine<M127>>, seed: u64) -> Report<EngineOutput<M127>> {
    Harness::new(parties, seed).order(Order::Random).run()
}

#[test]
fn honest_run_is_correct() {
    for (n, t) in [(3, 1), (5, 2), (5, 1)] {
        for with_open in [false, true] {
            let secret = inputs(n)
                .into_iter()
                .map(|p| p.into_iter().map(SecretVec::new).collect())
                .collect();
            let parties = engines(
                t,
                Security::Malicious,
                Arc::new(program(n, with_open)),
                secret,
                SESSION,
                77,
            )
            .expect("valid");
            for o in run(parties, 1).outcomes {
                assert_eq!(
                    o.output()
                        .expect("done")
                        .all_values()
                        .expect("all delivered"),
                    expected(n)
                );
            }
        }
    }
}

#[cfg(not(feature = "test-disable-mult-check"))]
#[test]
fn additive_attack_is_caught_by_the_multiplication_check() {
    for (n, t, cheater) in [(3, 1, 1), (5, 2, 4), (5, 1, 0), (7, 3, 2)] {
        for (round, element) in [(0, 0), (0, 3), (1, 2)] {
            let d = Deviation::AdditiveAttack { round, element };
            let report = run_with(
                federation(n, t, Security::Malicious, false, cheater, d),
                5,
                cheater,
            );
            assert_caught(
                &report,
                cheater,
                "multiplication check (Chida et al.) failed",
            );
        }
    }
}

/// Mutation twin: with the check switched off the same attack goes through and a wrong
/// output is delivered, so the test above passes because of the check.
#[cfg(feature = "test-disable-mult-check")]
#[test]
fn additive_attack_delivers_a_wrong_output_without_the_check() {
    let d = Deviation::AdditiveAttack {
        round: 0,
        element: 0,
    };
    let report = run_with(federation(3, 1, Security::Malicious, false, 1, d), 5, 1);
    for (i, o) in report.outcomes.iter().enumerate() {
        let out = o
            .output()
            .unwrap_or_else(|| panic!("party {i} should deliver without the check: {o:?}"));
        assert_ne!(
            out.all_values().expect("all delivered"),
            expected(3),
            "party {i} got the right output despite the attack"
        );
        assert_ne!(
            out.all_values().expect("all delivered")[0][0],
            expected(3)[0][0],
            "the attacked product is wrong"
        );
    }
}

#[test]
fn semi_honest_mode_does_not_catch_an_additive_attack() {
    // Named policy choice, not a fallback: this is the difference it makes.
    let d = Deviation::AdditiveAttack {
        round: 0,
        element: 0,
    };
    let report = run_with(federation(3, 1, Security::SemiHonest, false, 1, d), 5, 1);
    for o in &report.outcomes {
        let out = o.output().expect("semi-honest delivers");
        assert_ne!(out.all_values().expect("all delivered"), expected(3));
    }
}

#[test]
fn wrong_input_share_is_caught() {
    for (n, t) in [(3, 1), (5, 2), (5, 1)] {
        for element in [0, 5] {
            let d = Deviation::WrongShare {
                victim: Some(1),
                element,
            };
            let report = run_with(federation(n, t, Security::Malicious, false, 0, d), 9, 0);
            assert_caught(
                &report,
                0,
                "masked verification-value opening consistency check failed",
            );
        }
    }
}

#[test]
fn inconsistent_input_sharing_is_caught() {
    for (n, t) in [(3, 1), (5, 1), (7, 2)] {
        let d = Deviation::InconsistentInput { element: 2 };
        let report = run_with(federation(n, t, Security::Malicious, false, 2, d), 13, 2);
        assert_caught(
            &report,
            2,
            "masked verification-value opening consistency check failed",
        );
    }
}

#[test]
fn wrong_opening_before_output_is_caught() {
    // Opening 0: the masked intermediate opening (with_open) or the coin/MAC-key opening.
    for (with_open, check) in [
        (
            true,
            "intermediate opening consistency check failed for element 4",
        ),
        (
            false,
            "coin and MAC-key opening consistency check failed for element 1",
        ),
    ] {
        for (n, t) in [(3, 1), (5, 2)] {
            let element = if with_open { 4 } else { 1 };
            let d = Deviation::WrongOpening {
                victim: Some(0),
                opening: 0,
                element,
            };
            let report = run_with(
                federation(n, t, Security::Malicious, with_open, 1, d),
                21,
                1,
            );
            assert_caught(&report, 1, check);
        }
    }
    // The zero-check opening (third opening without intermediate opens).
    let d = Deviation::WrongOpening {
        victim: Some(2),
        opening: 2,
        element: 0,
    };
    let report = run_with(federation(3, 1, Security::Malicious, false, 0, d), 21, 0);
    assert_caught(&report, 0, "zero-check opening consistency check failed");
}

#[test]
fn wrong_output_share_aborts_its_victim_but_no_wrong_output_is_delivered() {
    // After the check has passed, a wrong output share can only make its victim abort (no
    // fairness, DESIGN §2); nobody accepts a wrong value.
    let d = Deviation::WrongOpening {
        victim: Some(2),
        opening: 3,
        element: 0,
    };
    let report = run_with(federation(3, 1, Security::Malicious, false, 0, d), 3, 0);
    let victim = report.outcomes[2]
        .error()
        .expect("victim aborts")
        .to_string();
    assert!(
        victim.contains("output opening consistency check failed"),
        "{victim}"
    );
    for o in &report.outcomes {
        if let Some(out) = o.output() {
            assert_eq!(out.all_values().expect("all delivered"), expected(3));
        }
    }
}

#[test]
fn chosen_reshare_values_are_caught() {
    // A party that sends chosen values instead of its subshares, in every multiplication round.
    for round in [1u32, 2, 3] {
        let secret = inputs(3)
            .into_iter()
            .map(|p| p.into_iter().map(SecretVec::new).collect())
            .collect();
        let parties = engines(
            1,
            Security::Malicious,
            Arc::new(program(3, false)),
            secret,
            SESSION,
            4,
        )
        .expect("valid");
        let tamper = Fault::Tamper(
            Filter::from(2).kind("reshare").round(round),
            Box::new(|env| {
                edit_elements::<M127>(&mut env.msg, |v| {
                    v.iter_mut().for_each(|x| *x = M127::from_u64(7))
                })
            }),
        );
        let report = Harness::new(parties, 4).fault(tamper).run();
        let errors = assert_caught(&report, 2, "check");
        assert!(
            errors
                .iter()
                .all(|e| e.contains("consistency check failed")
                    || e.contains("multiplication check")),
            "{errors:?}"
        );
    }
}

#[test]
fn inconsistent_prss_key_is_caught() {
    // n = 5, t = 2: the hash echo in key setup. n = 3, t = 1: the sets are pairs (nobody to
    // echo with), and the inconsistent pair key corrupts shared randomness, which the
    // openings catch.
    for (n, t, check) in [
        (5, 2, "PRSS key echo check failed"),
        (3, 1, "consistency check failed"),
    ] {
        let points: Vec<u64> = (1..=n as u64).collect();
        let mut setups: Vec<KeySetup> = (0..n)
            .map(|me| {
                KeySetup::new(
                    Config::new(me, points.clone(), t, SessionId([2; 32])),
                    ChaCha20Rng::seed_from_u64(me as u64),
                )
                .expect("valid")
            })
            .collect();
        setups[0].set_cheat(Deviation::InconsistentPrssKey { victim: 1 });
        let (report, done) = Harness::new(setups, 1).run_into_parties();
        if n == 5 {
            for (i, o) in report.outcomes.iter().enumerate().skip(1) {
                let e = o
                    .error()
                    .unwrap_or_else(|| panic!("party {i}: {o:?}"))
                    .to_string();
                assert!(e.contains(check), "{e}");
            }
            continue;
        }
        let keys: Vec<_> = done
            .into_iter()
            .map(|s| s.into_keys().expect("pairs have no echo"))
            .collect();
        let program = Arc::new(program(n, false));
        let parties: Vec<Engine<M127>> = keys
            .iter()
            .zip(inputs(n))
            .enumerate()
            .map(|(me, (k, inp))| {
                let cfg = Config::new(me, points.clone(), t, SESSION);
                let inp = inp.into_iter().map(SecretVec::new).collect();
                Engine::new(
                    cfg,
                    Security::Malicious,
                    Arc::clone(&program),
                    inp,
                    k,
                    ChaCha20Rng::seed_from_u64(me as u64),
                )
                .expect("valid")
            })
            .collect();
        let report = run_with(parties, 2, 0);
        assert_caught(&report, 0, check);
    }
}

#[test]
fn deviation_names_parse() {
    for name in Deviation::KINDS {
        name.parse::<Deviation>().expect("known");
    }
    assert_eq!(
        "nope"
            .parse::<Deviation>()
            .expect_err("unknown")
            .to_string(),
        "unknown deviation \"nope\"; known: wrong-share, additive-attack, inconsistent-input, wrong-opening, inconsistent-prss-key"
    );
}

/// Products whose MAC rides on the right factor, and an input that is never MAC'd.
fn right_mac_program(n: usize) -> Program<M127> {
    let mut b = ProgramBuilder::new(n);
    let x = b.input(0, LEN);
    let y = b.input(1, LEN);
    let p = b.mul(x, x); // MACs x
    let q = b.mul(y, p); // y has no MAC: [r·q] = [y]·[r·p]
    b.output(q);
    b.build().expect("valid")
}

/// Element 1 of the right-MAC program's output y·x·x.
#[cfg(feature = "test-disable-mult-check")]
fn expected_right_mac(n: usize) -> M127 {
    let inp = inputs(n);
    inp[1][0][1] * inp[0][0][1] * inp[0][0][1]
}

fn right_mac_federation(n: usize, t: usize, cheater: usize, d: Deviation) -> Vec<Engine<M127>> {
    let secret = inputs(n)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            if i < 2 {
                p.into_iter().map(SecretVec::new).collect()
            } else {
                vec![]
            }
        })
        .collect();
    let mut parties = engines(
        t,
        Security::Malicious,
        Arc::new(right_mac_program(n)),
        secret,
        SESSION,
        8,
    )
    .expect("valid");
    parties[cheater].set_cheat(d);
    parties
}

#[test]
fn deviations_on_right_factor_macs_and_unmacked_inputs_are_caught() {
    for (n, t) in [(3, 1), (5, 1), (5, 2)] {
        let attack = Deviation::AdditiveAttack {
            round: 1,
            element: 1,
        };
        let report = run_with(right_mac_federation(n, t, 2, attack), 6, 2);
        #[cfg(not(feature = "test-disable-mult-check"))]
        assert_caught(&report, 2, "multiplication check (Chida et al.) failed");
        // Mutation twin: without the check the attacked product is delivered, wrong.
        #[cfg(feature = "test-disable-mult-check")]
        for o in &report.outcomes {
            let out = o.output().expect("delivered without the check");
            assert_ne!(
                out.all_values().expect("all delivered")[0][1],
                expected_right_mac(n)
            );
        }
        // Party 1's input y is never MAC'd: its consistency is checked with the rest.
        let report = run_with(
            right_mac_federation(n, t, 1, Deviation::InconsistentInput { element: 3 }),
            6,
            1,
        );
        assert_caught(
            &report,
            1,
            "masked verification-value opening consistency check failed",
        );
        let wrong = Deviation::WrongShare {
            victim: Some(0),
            element: 0,
        };
        let report = run_with(right_mac_federation(n, t, 1, wrong), 6, 1);
        assert_caught(
            &report,
            1,
            "masked verification-value opening consistency check failed",
        );
    }
}
