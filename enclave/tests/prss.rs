//! PRSS key setup over the in-memory harness: agreement, per-job sharings, the hash echo.

use parley_enclave::cheat::Deviation;
use parley_enclave::field::M127;
use parley_enclave::prss::{JobRandomness, KeyMaterial, KeySetup};
use parley_enclave::shamir::Shamir;
use parley_enclave::sim::{Harness, Outcome};
use parley_enclave::{CheckFailure, Config, MpcError, SessionId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn setups(n: usize, t: usize, seed: u64) -> Vec<KeySetup> {
    let points: Vec<u64> = (1..=n as u64).collect();
    (0..n)
        .map(|me| {
            let cfg = Config::new(me, points.clone(), t, SessionId([0xa5; 32]));
            KeySetup::new(cfg, ChaCha20Rng::seed_from_u64(seed + me as u64)).expect("valid")
        })
        .collect()
}

fn run_setup(n: usize, t: usize, seed: u64) -> Vec<KeyMaterial> {
    let harness = Harness::new(setups(n, t, seed), seed);
    let (report, parties) = harness.run_into_parties();
    for o in &report.outcomes {
        assert!(matches!(o, Outcome::Done(())), "{o:?}");
    }
    parties
        .into_iter()
        .map(|p| p.into_keys().expect("done"))
        .collect()
}

#[test]
fn agreed_keys_give_consistent_sharings_for_every_federation_size() {
    for (n, t) in [(3, 1), (5, 1), (5, 2), (7, 2), (7, 3)] {
        let keys = run_setup(n, t, 11);
        let points: Vec<u64> = (1..=n as u64).collect();
        let shamir = Shamir::<M127>::new(&points, t).expect("valid");
        let job = SessionId([3; 32]);
        let mut jr: Vec<JobRandomness<M127>> = keys
            .iter()
            .map(|k| JobRandomness::new(k, &shamir, &job).expect("derive"))
            .collect();
        let shares: Vec<_> = jr.iter_mut().map(|j| j.random(16)).collect();
        let views: Vec<&[M127]> = shares.iter().map(|s| s.as_slice()).collect();
        shamir
            .open_checked(&views, "random")
            .expect("PRSS sharing has degree t");
    }
}

#[test]
fn inconsistent_key_is_caught_by_the_echo() {
    // n = 5, t = 2: sets of 3, so every dealt key has two other members to compare.
    let mut parties = setups(5, 2, 3);
    parties[0].set_cheat(Deviation::InconsistentPrssKey { victim: 2 });
    let (report, _) = Harness::new(parties, 3).run_into_parties();
    let victim = report.outcomes[2].error().expect("victim aborts");
    assert!(
        matches!(
            victim.check_failure(),
            Some(CheckFailure::PrssKeyEcho { .. })
        ),
        "{victim}"
    );
    assert!(
        victim
            .to_string()
            .contains("PRSS key echo check failed for set"),
        "{victim}"
    );
    // Every honest co-member of an affected set notices; nobody finishes with keys.
    for (i, o) in report.outcomes.iter().enumerate().skip(1) {
        assert!(!matches!(o, Outcome::Done(_)), "party {i} finished: {o:?}");
    }
}

#[test]
fn key_setup_refuses_bad_frames() {
    let mut p = setups(3, 1, 1).remove(1);
    let msg = parley_enclave::Message::KeyDeal(parley_enclave::message::Chunk {
        session: SessionId([0xa5; 32]),
        round: 0,
        part: 0,
        parts: 1,
        data: parley_enclave::message::Packed::new(vec![0u8; 32]),
    });
    use parley_enclave::Protocol;
    p.start().expect("start");
    assert!(matches!(
        p.handle(0, msg),
        Err(MpcError::WrongLength {
            expected: 33,
            got: 32,
            ..
        })
    ));
}
