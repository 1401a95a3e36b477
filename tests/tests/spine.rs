//! The spine end to end: three real `parley node` processes on 127.0.0.1, mutual RA-TLS
//! (gate 1) with simulated evidence, Shamir sharing of local aggregates, and refusals.

use parley::jobs::job::{ColumnStats, JobState};
use parley::peer::status::PeerCounters;
use parley::store::data::{Moments, patients_schema, sample_patients};
use parley_attestation::verdict::codes;
use parley_tests::{HOSPITALS, Setup, modified_binary};

const COLUMNS: [&str; 2] = ["systolic_bp", "cholesterol"];

fn reference(rows: usize) -> Vec<ColumnStats> {
    COLUMNS
        .iter()
        .map(|c| {
            let idx = patients_schema().column_index(c).unwrap();
            let m = (0..3)
                .map(|i| sample_patients(i, rows).moments(idx).unwrap())
                .fold(Moments::default(), |a, b| a.add(&b));
            ColumnStats::from_moments(c, &m)
        })
        .collect()
}

/// Both ways, share-carrying frames between `a` and `b` as `a` counted them.
fn share_frames(status: &serde_json::Value, peer: &str) -> u64 {
    let c: PeerCounters = status["counters"]
        .get(peer)
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .unwrap_or_default();
    c.share_frames()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_compute_the_known_answer_for_the_documented_seed() {
    let rows = 100_000;
    let mut cluster = Setup::new(rows).await.start(&[]);
    cluster.all_connected().await;
    let id = cluster
        .submit("hospital-b", &COLUMNS)
        .await
        .expect("submit");
    let views = cluster.wait_job(id).await;
    let want = reference(rows);
    for v in &views {
        assert_eq!(v.state, JobState::Done, "{v:?}");
        assert_eq!(v.result.as_ref().and_then(|r| r.summary()), Some(&want));
        assert_eq!(
            v.commitments.len(),
            3,
            "every party's input commitment is kept with the job"
        );
    }
    // Known answers for seed 20261124 + i, 100,000 rows per hospital: a change to the
    // generator or the protocol cannot pass silently.
    let r = views[0].result.as_ref().and_then(|r| r.summary()).unwrap();
    assert_eq!(
        (
            r[0].count.as_str(),
            r[0].sum.as_str(),
            r[0].sum_of_squares.as_str()
        ),
        ("300000", "37417688", "4756812152")
    );
    assert_eq!(
        (
            r[1].count.as_str(),
            r[1].sum.as_str(),
            r[1].sum_of_squares.as_str()
        ),
        ("300000", "59309027", "12115930123")
    );
    // Means and variances: exact rationals rounded once to f64.
    assert_eq!(r[0].mean, Some(37417688.0 / 300000.0));
    assert!((r[0].mean.unwrap() - 124.725_626_666_666_66).abs() < 1e-12);
    assert!((r[0].variance.unwrap() - 299.559_558).abs() < 1e-6);
    assert!((r[1].mean.unwrap() - 197.696_756_666_666_66).abs() < 1e-12);
    assert!((r[1].variance.unwrap() - 1_302.430_488).abs() < 1e-6);

    // Every node appraised its two peers and accepted them with only the simulation warning.
    for h in HOSPITALS {
        let s = cluster.status(h).await;
        for (peer, p) in &s.peers {
            let rec = p
                .verdict
                .as_ref()
                .unwrap_or_else(|| panic!("{h} has no verdict about {peer}"));
            assert!(rec.accepted);
            assert_eq!(
                rec.verdict
                    .reasons
                    .iter()
                    .map(|r| r.code.as_str())
                    .collect::<Vec<_>>(),
                vec![codes::SIMULATED]
            );
        }
    }
    let finals = cluster.stop().await;
    for (st, h) in finals.iter().zip(HOSPITALS) {
        for peer in HOSPITALS.iter().filter(|p| **p != h) {
            assert!(
                share_frames(st, peer) >= 2,
                "{h} exchanged no shares with {peer}: {st}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_another_measurement_is_refused_by_both_peers_before_any_share() {
    let setup = Setup::new(200).await;
    let other = modified_binary(&setup.bin, setup.tmp.path());
    let mut cluster = setup.start(&[("hospital-c", other)]);
    for h in ["hospital-a", "hospital-b"] {
        let s = cluster
            .wait_for(h, "a verdict about hospital-c", |s| {
                s.peers["hospital-c"].verdict.is_some()
            })
            .await;
        let rec = s.peers["hospital-c"].verdict.clone().unwrap();
        assert!(!rec.accepted, "{h} accepted a node running another build");
        assert!(
            rec.verdict.has(codes::MEASUREMENT_NOT_ACCEPTED),
            "{h}: {:?}",
            rec.verdict
        );
        let msg = &rec
            .verdict
            .reasons
            .iter()
            .find(|r| r.code == codes::MEASUREMENT_NOT_ACCEPTED)
            .unwrap()
            .message;
        assert!(msg.contains("not in policy"), "{msg}");
        assert!(!s.peers["hospital-c"].connected);
    }
    cluster
        .wait_for("hospital-a", "a session with hospital-b", |s| {
            s.peers["hospital-b"].connected
        })
        .await;
    let err = cluster
        .try_submit("hospital-a", &COLUMNS)
        .await
        .expect_err("a job without hospital-c must not start");
    assert!(err.contains("hospital-c"), "{err}");
    let finals = cluster.stop().await;
    assert_eq!(share_frames(&finals[0], "hospital-c"), 0);
    assert_eq!(share_frames(&finals[1], "hospital-c"), 0);
    for peer in ["hospital-a", "hospital-b"] {
        assert_eq!(
            share_frames(&finals[2], peer),
            0,
            "hospital-c exchanged shares with {peer}"
        );
        // Not even a hello got through to or from the refused node.
        assert!(
            finals[2]["counters"]
                .get(peer)
                .is_none_or(|c| c["received"].as_object().is_none_or(|m| m.is_empty()))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_without_allow_simulated_refuses_simulated_evidence() {
    let mut setup = Setup::new(200).await;
    let mut strict =
        parley::dev::setup::default_policy("integration", setup.fed.simulation_root, [0; 48]);
    let sim = strict.sim.as_mut().unwrap();
    sim.allow_simulated = false;
    sim.roots.clear();
    sim.measurements = vec![parley_attestation::hexbytes::HexBytes(
        parley::util::measure_file(&setup.bin).unwrap(),
    )];
    setup.fed.set_policy("hospital-a", &strict).await.unwrap();
    let mut cluster = setup.start(&[]);
    let s = cluster
        .wait_for("hospital-a", "verdicts about both peers", |s| {
            s.peers.values().all(|p| p.verdict.is_some())
        })
        .await;
    for (peer, p) in &s.peers {
        let rec = p.verdict.as_ref().unwrap();
        assert!(
            !rec.accepted,
            "hospital-a accepted simulated evidence from {peer}"
        );
        assert!(
            rec.verdict.has(codes::SIMULATED_NOT_ALLOWED),
            "{:?}",
            rec.verdict
        );
    }
    cluster
        .wait_for("hospital-b", "a session with hospital-c", |s| {
            s.peers["hospital-c"].connected
        })
        .await;
    let finals = cluster.stop().await;
    for peer in ["hospital-b", "hospital-c"] {
        assert_eq!(share_frames(&finals[0], peer), 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_simulation_key_the_root_did_not_certify_is_refused() {
    let setup = Setup::new(200).await;
    setup.fed.endorse_with_rogue_root("hospital-c").unwrap();
    let mut cluster = setup.start(&[]);
    for h in ["hospital-a", "hospital-b"] {
        let s = cluster
            .wait_for(h, "a verdict about hospital-c", |s| {
                s.peers["hospital-c"].verdict.is_some()
            })
            .await;
        let rec = s.peers["hospital-c"].verdict.clone().unwrap();
        assert!(!rec.accepted);
        assert!(rec.verdict.has(codes::UNTRUSTED_CHAIN), "{:?}", rec.verdict);
    }
    let finals = cluster.stop().await;
    assert_eq!(
        share_frames(&finals[0], "hospital-c") + share_frames(&finals[1], "hospital-c"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_debug_or_out_of_date_node_is_refused() {
    let setup = Setup::new(200).await;
    setup
        .fed
        .edit_config("hospital-b", |c| c.attestation.simulated.debug = true)
        .unwrap();
    setup
        .fed
        .edit_config("hospital-c", |c| {
            c.attestation.simulated.tcb.microcode = 100
        })
        .unwrap();
    let mut cluster = setup.start(&[]);
    let s = cluster
        .wait_for("hospital-a", "verdicts about both peers", |s| {
            s.peers.values().all(|p| p.verdict.is_some())
        })
        .await;
    let b = s.peers["hospital-b"].verdict.clone().unwrap();
    assert!(
        !b.accepted && b.verdict.has(codes::DEBUG_ENABLED),
        "{:?}",
        b.verdict
    );
    let c = s.peers["hospital-c"].verdict.clone().unwrap();
    assert!(
        !c.accepted && c.verdict.has(codes::TCB_TOO_OLD),
        "{:?}",
        c.verdict
    );
    assert!(
        c.verdict
            .reasons
            .iter()
            .any(|r| r.message.contains("microcode 100 < 213"))
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_share_frame_makes_every_node_abort_without_output() {
    let setup = Setup::with_binary(500, parley_tests::parley_cheat_bin()).await;
    setup
        .fed
        .edit_config("hospital-c", |c| c.cheat = Some("wrong-share".into()))
        .unwrap();
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    let id = cluster.submit("hospital-a", &COLUMNS).await.unwrap();
    let views = cluster.wait_job(id).await;
    for v in &views {
        assert!(
            v.result.is_none(),
            "an output was delivered despite a corrupted share"
        );
        match &v.state {
            JobState::Aborted(reason) => {
                assert!(reason.contains("consistency check failed"), "{reason}")
            }
            other => panic!("expected an abort, got {other:?}"),
        }
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_peer_is_named_with_what_to_do() {
    let setup = Setup::new(50).await;
    let fed_parties: Vec<_> = setup.fed.parties.clone();
    // Start only hospital-a: it dials b and c, which are not running.
    let mut node = parley::dev::launcher::NodeProcess::spawn(
        &setup.bin,
        "hospital-a",
        &fed_parties[0].config,
        &fed_parties[0].dir,
        &fed_parties[0].dir.join("node.log"),
    )
    .unwrap();
    let addr_b = setup.fed.manifest.parties[1].address.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(s) = node.status().await
            && let Some(e) = &s.peers["hospital-b"].last_error
        {
            assert_eq!(
                e,
                &format!(
                    "cannot reach peer hospital-b at {addr_b}: connection refused — is it running?"
                )
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection error reported"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    node.stop(std::time::Duration::from_secs(5)).await;
}
