//! Secure sum: correctness against plaintext for n = 3, 5, 7, fault handling, typed errors.

use parley_enclave::field::{Field, M61, M127};
use parley_enclave::message::{Chunk, Message, Packed, SessionId};
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Fault, Filter, Harness, Order, Outcome, edit_elements};
use parley_enclave::sum::SecureSum;
use parley_enclave::{CheckFailure, Config, MpcError, Protocol, Status};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn session(tag: u8) -> SessionId {
    SessionId([tag; 32])
}

fn parties<F: Field>(inputs: &[Vec<F>], t: usize, chunk: usize, seed: u64) -> Vec<SecureSum<F>> {
    let n = inputs.len();
    let points: Vec<u64> = (1..=n as u64).collect();
    inputs
        .iter()
        .enumerate()
        .map(|(me, v)| {
            let mut cfg = Config::new(me, points.clone(), t, session(1));
            cfg.max_chunk_elems = chunk;
            let rng = ChaCha20Rng::seed_from_u64(seed ^ (me as u64) << 32);
            SecureSum::new(cfg, SecretVec::new(v.clone()), rng).expect("valid config")
        })
        .collect()
}

fn plain_sum<F: Field>(inputs: &[Vec<F>]) -> Vec<F> {
    let mut acc = vec![F::zero(); inputs[0].len()];
    for v in inputs {
        F::add_assign_slice(&mut acc, v);
    }
    acc
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn sum_equals_plaintext_sum(
        n in prop::sample::select(vec![3usize, 5, 7]),
        len in 1usize..40,
        chunk in 1usize..50,
        seed in any::<u64>(),
        random_order in any::<bool>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let inputs: Vec<Vec<M127>> = (0..n).map(|_| (0..len).map(|_| M127::random(&mut rng)).collect()).collect();
        let t = (n - 1) / 2;
        let order = if random_order { Order::Random } else { Order::Fifo };
        let report = Harness::new(parties(&inputs, t, chunk, seed), seed).order(order).run();
        let expected = plain_sum(&inputs);
        for o in &report.outcomes {
            prop_assert_eq!(o.output(), Some(&expected));
        }
        // Two all-to-all rounds of len elements: (n − 1)·len elements per party per round.
        for tr in &report.traffic {
            prop_assert_eq!(tr.payload_bytes, 2 * (n as u64 - 1) * len as u64 * 16);
            prop_assert_eq!(tr.rounds, 2);
        }
    }

    #[test]
    fn one_corrupted_opening_share_aborts(n in prop::sample::select(vec![3usize, 5, 7]), seed in any::<u64>(), elem in 0usize..8, victim_pick in any::<usize>()) {
        let inputs: Vec<Vec<M61>> = (0..n).map(|i| (0..8).map(|k| M61::from_u64((i * 100 + k) as u64)).collect()).collect();
        let cheater = seed as usize % n;
        let victim = (cheater + 1 + victim_pick % (n - 1)) % n;
        let tamper = Fault::Tamper(
            Filter::from(cheater).to(victim).kind("open"),
            Box::new(move |env| edit_elements::<M61>(&mut env.msg, |v| v[elem] += M61::one())),
        );
        let report = Harness::new(parties(&inputs, (n - 1) / 2, 1 << 16, seed), seed).fault(tamper).run();
        match &report.outcomes[victim] {
            Outcome::Aborted(MpcError::Check(CheckFailure::OpeningConsistency { context: "opening", element, degree, shares })) => {
                prop_assert_eq!(*element, elem);
                prop_assert_eq!(*degree, (n - 1) / 2);
                prop_assert_eq!(*shares, n);
            }
            other => prop_assert!(false, "victim should abort on the opening check, got {:?}", other),
        }
        // Everyone else saw consistent shares: the right sum, or an abort because the victim
        // told them it aborted — never a wrong sum.
        let expected = plain_sum(&inputs);
        for (i, o) in report.outcomes.iter().enumerate() {
            if i != victim {
                match o {
                    Outcome::Done(v) => prop_assert_eq!(v, &expected),
                    Outcome::Aborted(MpcError::PeerAborted { from, reason }) => {
                        prop_assert_eq!(*from, victim);
                        prop_assert!(reason.contains("opening consistency check failed"), "{}", reason);
                    }
                    other => prop_assert!(false, "party {} {:?}", i, other),
                }
            }
        }
    }

    #[test]
    fn one_corrupted_input_share_aborts_every_honest_party(seed in any::<u64>(), elem in 0usize..8) {
        // n = 5, t = 1: four honest parties, so a wrong share to one of them makes the honest
        // sum shares inconsistent, and every honest party's opening check fails.
        let n = 5;
        let inputs: Vec<Vec<M127>> = (0..n).map(|i| (0..8).map(|k| M127::from_u64((i * 10 + k) as u64)).collect()).collect();
        let tamper = Fault::Tamper(
            Filter::from(0).to(2).kind("share"),
            Box::new(move |env| edit_elements::<M127>(&mut env.msg, |v| v[elem] += M127::from_u64(5))),
        );
        let report = Harness::new(parties(&inputs, 1, 1 << 16, seed), seed).order(Order::Random).fault(tamper).run();
        for o in &report.outcomes[1..] {
            let Some(e) = o.error() else { panic!("honest party should abort: {:?}", report.outcomes) };
            // Each honest party fails the check itself, or hears first from one that did.
            let own = matches!(e.check_failure(), Some(CheckFailure::OpeningConsistency { element, .. }) if *element == elem);
            let told = matches!(e, MpcError::PeerAborted { reason, .. } if reason.contains(&format!("opening consistency check failed for element {elem}")));
            prop_assert!(own || told, "unexpected error {e}");
        }
    }
}

#[test]
fn delays_and_reordering_still_give_the_sum() {
    let inputs: Vec<Vec<M127>> = (0..3)
        .map(|i| vec![M127::from_i64(-(i as i64)), M127::from_u64(7)])
        .collect();
    let report = Harness::new(parties(&inputs, 1, 1, 9), 9)
        .order(Order::Random)
        .fault(Fault::Delay(Filter::from(2).kind("share"), 50))
        .fault(Fault::Delay(Filter::any().kind("open").to(0), 5))
        .run();
    let expected = vec![M127::from_i64(-3), M127::from_u64(21)];
    for o in &report.outcomes {
        assert_eq!(o.output(), Some(&expected));
    }
}

#[test]
fn dropped_or_stopped_party_stalls_without_output() {
    let inputs: Vec<Vec<M127>> = (0..3).map(|_| vec![M127::one()]).collect();
    let report = Harness::new(parties(&inputs, 1, 4, 1), 1)
        .fault(Fault::Drop(Filter::from(1).to(0)))
        .run();
    assert!(matches!(
        report.outcomes[0],
        Outcome::Stalled(Status::Running { round: 0 })
    ));
    assert!(matches!(
        report.outcomes[2],
        Outcome::Stalled(Status::Running { round: 1 })
    ));

    let report = Harness::new(parties(&inputs, 1, 4, 1), 1)
        .fault(Fault::Stop {
            party: 2,
            at_round: 1,
        })
        .run();
    for o in &report.outcomes {
        assert!(o.output().is_none());
    }
}

#[test]
fn corrupted_bytes_give_typed_errors_not_panics() {
    let inputs: Vec<Vec<M127>> = (0..3).map(|_| vec![M127::one(); 4]).collect();
    // Setting the top bit makes element 1 non-canonical.
    let report = Harness::new(parties(&inputs, 1, 16, 3), 3)
        .fault(Fault::Corrupt(
            Filter::from(1).to(0).kind("share"),
            31,
            0x80,
        ))
        .run();
    let err = report.outcomes[0].error().expect("aborts").to_string();
    assert_eq!(
        err,
        "party 1 sent a share message for round 0 whose element 1 is invalid: field element encoding is not canonical for M127: the integer is not below the modulus"
    );
}

fn share_msg(session_tag: u8, round: u32, part: u32, parts: u32, len: usize) -> Message {
    Message::Share(Chunk {
        session: session(session_tag),
        round,
        part,
        parts,
        data: Packed::new(vec![0u8; len]),
    })
}

#[test]
fn bad_messages_give_typed_errors() {
    let inputs: Vec<Vec<M127>> = (0..3).map(|_| vec![M127::one(); 2]).collect();
    let fresh = || parties(&inputs, 1, 16, 5).remove(0);

    let mut p = fresh();
    p.start().expect("start");
    assert!(matches!(
        p.handle(7, share_msg(1, 0, 0, 1, 32)),
        Err(MpcError::UnknownParty { from: 7, n: 3 })
    ));
    // Any error aborts the job; later messages report the original cause.
    assert_eq!(p.status(), Status::Aborted);
    assert!(matches!(
        p.handle(1, share_msg(1, 0, 0, 1, 32)),
        Err(MpcError::Aborted(_))
    ));

    let mut p = fresh();
    p.start().expect("start");
    assert!(matches!(
        p.handle(0, share_msg(1, 0, 0, 1, 32)),
        Err(MpcError::FromSelf { from: 0 })
    ));

    let mut p = fresh();
    assert!(matches!(
        p.handle(1, share_msg(2, 0, 0, 1, 32)),
        Err(MpcError::WrongSession { from: 1, .. })
    ));

    let mut p = fresh();
    p.start().expect("start");
    p.handle(1, share_msg(1, 0, 0, 1, 32))
        .expect("first copy is fine");
    assert!(matches!(
        p.handle(1, share_msg(1, 0, 0, 1, 32)),
        Err(MpcError::Duplicate {
            from: 1,
            round: 0,
            ..
        })
    ));

    let mut p = fresh();
    p.start().expect("start");
    assert!(matches!(
        p.handle(1, share_msg(1, 0, 0, 1, 31)),
        Err(MpcError::WrongLength {
            expected: 32,
            got: 31,
            ..
        })
    ));

    let mut p = fresh();
    assert!(matches!(
        p.handle(1, share_msg(1, 0, 0, 2, 32)),
        Err(MpcError::BadChunking {
            expected_parts: 1,
            parts: 2,
            ..
        })
    ));

    let mut p = fresh();
    let open = Message::Open(Chunk {
        session: session(1),
        round: 0,
        part: 0,
        parts: 1,
        data: Packed::new(vec![0; 32]),
    });
    let err = p
        .handle(1, open)
        .expect_err("open is not expected in round 0");
    assert_eq!(
        err.to_string(),
        "party 1 sent an unexpected open message in round 0: this round expects share (2 elements)"
    );

    let mut p = fresh();
    assert!(matches!(
        p.handle(1, share_msg(1, 40, 0, 1, 32)),
        Err(MpcError::TooFarAhead {
            round: 40,
            current: 0,
            ..
        })
    ));

    // A round-1 message arriving early is buffered; its duplicate is refused.
    let mut p = fresh();
    let early = Message::Open(Chunk {
        session: session(1),
        round: 1,
        part: 0,
        parts: 1,
        data: Packed::new(vec![0; 32]),
    });
    p.handle(2, early.clone()).expect("buffered");
    assert!(matches!(
        p.handle(2, early),
        Err(MpcError::Duplicate { round: 1, .. })
    ));

    let mut p = fresh();
    p.start().expect("start");
    assert!(matches!(p.start(), Err(MpcError::Misuse(_))));
}

#[test]
fn messages_round_trip_through_postcard_compactly() {
    let inputs: Vec<Vec<M127>> = (0..3).map(|_| vec![M127::one(); 1000]).collect();
    let mut p = parties(&inputs, 1, 1 << 16, 5).remove(0);
    let out = p.start().expect("start");
    assert_eq!(out.len(), 2);
    for o in out {
        assert_eq!(o.msg.kind(), "share");
        let bytes = postcard::to_allocvec(&o.msg).expect("encodes");
        // 16,000 payload bytes plus a small header: packed, not one value per element.
        assert!(bytes.len() < 16_000 + 48, "{} bytes", bytes.len());
        let back: Message = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, o.msg);
        assert!(format!("{:?}", back).contains("redacted"));
    }
}

#[test]
fn debug_output_redacts_inputs() {
    let secret = SecretVec::new(vec![M127::from_u64(123_456_789)]);
    let dbg = format!("{secret:?}");
    assert!(!dbg.contains("123456789"), "{dbg}");
    let p = parties(
        &[
            vec![M127::from_u64(987_654_321)],
            vec![M127::one()],
            vec![M127::one()],
        ],
        1,
        4,
        1,
    )
    .remove(0);
    assert!(!format!("{p:?}").contains("987654321"));
}

#[test]
fn invalid_configs_are_refused() {
    let input = || SecretVec::new(vec![M127::one()]);
    let rng = || ChaCha20Rng::seed_from_u64(0);
    let err = SecureSum::new(Config::new(0, vec![1, 2], 1, session(1)), input(), rng())
        .expect_err("2 parties");
    assert_eq!(
        err.to_string(),
        "invalid MPC configuration: 2 parties: supported are 3 to 7"
    );
    let err = SecureSum::new(Config::new(3, vec![1, 2, 3], 1, session(1)), input(), rng())
        .expect_err("index");
    assert_eq!(
        err.to_string(),
        "invalid MPC configuration: my index 3 is outside 0..3"
    );
    let err = SecureSum::new(
        Config::new(0, vec![1, 2, 3, 4], 2, session(1)),
        input(),
        rng(),
    )
    .expect_err("t");
    assert_eq!(
        err.to_string(),
        "invalid MPC configuration: threshold t = 2 with n = 4 parties: need 1 ≤ t and 2t < n (honest majority)"
    );
    let err = SecureSum::new(
        Config::new(0, vec![1, 2, 3], 1, session(1)),
        SecretVec::<M127>::new(vec![]),
        rng(),
    )
    .expect_err("empty");
    assert!(matches!(err, MpcError::Input(_)));
}
