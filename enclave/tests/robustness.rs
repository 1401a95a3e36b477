//! Arbitrary peer messages never panic a state machine: every malformed, misrouted or
//! replayed frame is a typed error (and aborts the job), never a crash.

use parley_enclave::engine::{Engine, Security};
use parley_enclave::field::{Field, M127};
use parley_enclave::message::{Chunk, Packed};
use parley_enclave::program::ProgramBuilder;
use parley_enclave::prss::KeySetup;
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::engines;
use parley_enclave::sum::SecureSum;
use parley_enclave::{Config, Message, Protocol, SessionId};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::sync::Arc;

const SESSION: SessionId = SessionId([3; 32]);

fn arb_message() -> impl Strategy<Value = Message> {
    (
        0u8..7,
        prop_oneof![Just(SESSION), any::<[u8; 32]>().prop_map(SessionId)],
        prop_oneof![0u32..8, any::<u32>()],
        prop_oneof![0u32..3, any::<u32>()],
        prop_oneof![1u32..3, any::<u32>()],
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            (0usize..12).prop_map(|k| vec![0u8; 16 * k]),
            (0usize..12).prop_map(|k| vec![0xffu8; 16 * k]),
        ],
    )
        .prop_map(|(kind, session, round, part, parts, data)| {
            let chunk = Chunk {
                session,
                round,
                part,
                parts,
                data: Packed::new(data),
            };
            match kind {
                0 => Message::Share(chunk),
                1 => Message::Open(chunk),
                2 => Message::Reshare(chunk),
                3 => Message::KeyDeal(chunk),
                4 => Message::KeyEcho(chunk),
                5 => Message::Commit(chunk),
                _ => Message::Abort(chunk),
            }
        })
}

fn engine(security: Security) -> Engine<M127> {
    let mut b = ProgramBuilder::new(3);
    let x = b.input(0, 4);
    let y = b.input(1, 4);
    let z = b.mul(x, y);
    let s = b.dot(z, x);
    b.output(s);
    let inputs = vec![
        vec![SecretVec::new(vec![M127::one(); 4])],
        vec![SecretVec::new(vec![M127::one(); 4])],
        vec![],
    ];
    engines(
        1,
        security,
        Arc::new(b.build().expect("valid")),
        inputs,
        SESSION,
        1,
    )
    .expect("valid")
    .remove(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn engine_survives_arbitrary_frames(
        msgs in proptest::collection::vec((0usize..5, arb_message()), 1..6),
        started in any::<bool>(),
        malicious in any::<bool>(),
    ) {
        let mut e = engine(if malicious { Security::Malicious } else { Security::SemiHonest });
        if started {
            e.start().expect("start");
        }
        for (from, msg) in msgs {
            let _ = e.handle(from, msg);
            let _ = e.take_unsent();
        }
    }

    #[test]
    fn sum_and_key_setup_survive_arbitrary_frames(msgs in proptest::collection::vec((0usize..5, arb_message()), 1..6)) {
        let cfg = Config::new(1, vec![1, 2, 3], 1, SESSION);
        let mut sum = SecureSum::new(cfg.clone(), SecretVec::new(vec![M127::one(); 3]), ChaCha20Rng::seed_from_u64(1)).expect("valid");
        let mut keys = KeySetup::new(cfg, ChaCha20Rng::seed_from_u64(2)).expect("valid");
        sum.start().expect("start");
        keys.start().expect("start");
        for (from, msg) in msgs {
            let _ = sum.handle(from, msg.clone());
            let _ = keys.handle(from, msg);
        }
    }
}
