//! The node service with real processes: consent, faults, hostile frames, rollback
//! detection and recovery, and audit logs that verify after all of it.

use std::ffi::OsStr;
use std::time::Duration;

use parley::admin::{AdminRequest, AdminResponse};
use parley::jobs::job::{BenchWorkload, JobKind, JobState, SecurityModel};
use parley::peer::status::PeerCounters;
use parley_tests::{Cluster, HOSPITALS, Setup, attach, connect, in_process};
use tokio::io::AsyncWriteExt;

const COLUMNS: [&str; 1] = ["systolic_bp"];

fn share_frames(c: &std::collections::BTreeMap<String, PeerCounters>) -> u64 {
    c.values().map(PeerCounters::share_frames).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_needs_every_signed_approval_and_one_refusal_stops_it() {
    let setup = Setup::new(200).await;
    setup
        .fed
        .edit_config("hospital-b", |c| c.jobs.auto_approve.clear())
        .unwrap();
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    let b_config = cluster
        .setup
        .fed
        .party("hospital-b")
        .unwrap()
        .config
        .clone();

    let id = cluster.submit("hospital-a", &COLUMNS).await.unwrap();
    let v = cluster
        .wait_job_on("hospital-b", id, "b awaiting its operator", |v| {
            v.awaiting_operator
        })
        .await;
    assert_eq!(v.state, JobState::Proposed);
    let a = cluster
        .wait_job_on("hospital-a", id, "a and c approved", |v| {
            v.approvals.len() == 2
        })
        .await;
    assert_eq!(
        a.state,
        JobState::Proposed,
        "the job started without hospital-b's approval"
    );
    assert!(!a.approvals.contains(&"hospital-b".to_owned()));
    let before = share_frames(&cluster.status("hospital-a").await.counters);
    assert_eq!(before, 0, "shares moved before every party approved");

    let (ok, out) = cluster.cli(&[
        "job".as_ref(),
        "approve".as_ref(),
        "--config".as_ref(),
        b_config.as_os_str(),
        id.to_string().as_ref(),
    ]);
    assert!(ok, "{out}");
    for v in cluster.wait_job(id).await {
        assert_eq!(v.state, JobState::Done);
        assert_eq!(v.approvals.len(), 3);
        assert_eq!(
            v.verdicts.len(),
            2,
            "each node keeps its peers' verdicts with the job"
        );
    }
    // Approving twice is refused: approvals are single-use.
    let (ok, _) = cluster.cli(&[
        "job".as_ref(),
        "approve".as_ref(),
        "--config".as_ref(),
        b_config.as_os_str(),
        id.to_string().as_ref(),
    ]);
    assert!(!ok);

    let shares_after_first = share_frames(&cluster.status("hospital-a").await.counters);
    let id2 = cluster.submit("hospital-a", &COLUMNS).await.unwrap();
    cluster
        .wait_job_on("hospital-b", id2, "b awaiting its operator", |v| {
            v.awaiting_operator
        })
        .await;
    let (ok, out) = cluster.cli(&[
        "job".as_ref(),
        "refuse".as_ref(),
        "--config".as_ref(),
        b_config.as_os_str(),
        id2.to_string().as_ref(),
        "--reason".as_ref(),
        "not this quarter".as_ref(),
    ]);
    assert!(ok, "{out}");
    for v in cluster.wait_job(id2).await {
        match v.state {
            JobState::Refused(r) => assert!(
                r.contains("hospital-b") && r.contains("not this quarter"),
                "{r}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(v.result.is_none());
    }
    assert_eq!(
        share_frames(&cluster.status("hospital-a").await.counters),
        shares_after_first,
        "a refused job moved shares"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_node_mid_job_aborts_it_everywhere_and_a_rerun_succeeds_after_restart() {
    let setup = Setup::new(200).await;
    for h in HOSPITALS {
        setup
            .fed
            .edit_config(h, |c| c.jobs.auto_approve.push("bench-mul".into()))
            .unwrap();
    }
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    // A long job: a thousand dependent multiplication rounds.
    let req =
        parley::dev::bench::bench_request(BenchWorkload::T2, 1_000_000, SecurityModel::Malicious);
    let AdminResponse::Submitted { id } = cluster.admin("hospital-a", req).await else {
        panic!("not submitted")
    };
    cluster
        .wait_job_on("hospital-a", id, "the job running", |v| {
            v.state == JobState::Running
        })
        .await;
    cluster.node_mut("hospital-c").kill().await;
    for h in ["hospital-a", "hospital-b"] {
        let v = cluster
            .wait_job_on(h, id, "an abort", |v| v.state.is_final())
            .await;
        match v.state {
            JobState::Aborted(r) => assert!(r.contains("hospital-c"), "{h}: {r}"),
            other => panic!("{h}: {other:?}"),
        }
        assert!(v.result.is_none());
    }
    cluster.restart("hospital-c", &[]);
    cluster.all_connected().await;
    let rerun = cluster.submit("hospital-a", &COLUMNS).await.unwrap();
    for v in cluster.wait_job(rerun).await {
        assert_eq!(v.state, JobState::Done);
    }
    // hospital-c's store records the interrupted job as aborted.
    let c_config = cluster
        .setup
        .fed
        .party("hospital-c")
        .unwrap()
        .config
        .clone();
    let log = cluster.setup.tmp.path().join("c.json");
    let (ok, out) = cluster.cli(&[
        "audit".as_ref(),
        "export".as_ref(),
        "--config".as_ref(),
        c_config.as_os_str(),
        "--out".as_ref(),
        log.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let export: parley::store::audit::AuditExport =
        serde_json::from_slice(&std::fs::read(&log).unwrap()).unwrap();
    assert!(
        export
            .entries
            .iter()
            .any(|e| e.event == "job-aborted" && e.detail["job"] == id.to_string())
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_oversized_and_out_of_order_frames_are_rejected_without_crashing() {
    let setup = Setup::new(50).await;
    let c = in_process(&setup, "hospital-c").await;
    let mut cluster = setup.start_some(&["hospital-a", "hospital-b"], &[]);
    cluster.wait_session("hospital-a", "hospital-b").await;

    // An oversized length prefix: refused before any allocation.
    let mut t = connect(&c, "hospital-a").await.unwrap();
    attach(&c, "hospital-a", &mut t).await;
    t.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    t.flush().await.unwrap();
    // Garbage of a valid length.
    let mut t = connect(&c, "hospital-a").await.unwrap();
    attach(&c, "hospital-a", &mut t).await;
    let mut frame = 64u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0xa5; 64]);
    t.write_all(&frame).await.unwrap();
    t.flush().await.unwrap();
    // Well-formed frames out of order: protocol messages and decisions for jobs nobody
    // proposed, fresh evidence nobody asked for.
    let mut t = connect(&c, "hospital-a").await.unwrap();
    attach(&c, "hospital-a", &mut t).await;
    let job = parley::jobs::job::JobId([7; 16]);
    let chunk = parley_enclave::message::Chunk {
        session: parley_enclave::SessionId([1; 32]),
        round: 5,
        part: 0,
        parts: 1,
        data: parley_enclave::message::Packed::new(vec![0; 16]),
    };
    for body in [
        parley::peer::wire::Body::Mpc {
            job,
            msg: parley_enclave::Message::Share(chunk),
        },
        parley::peer::wire::Body::Ready { job },
        parley::peer::wire::Body::Abort {
            job,
            reason: "nothing".into(),
        },
        parley::peer::wire::Body::Attest {
            evidence: vec![1, 2, 3],
            endorsements: Vec::new(),
            unix_time: 0,
        },
    ] {
        let _ = parley::peer::session::send(&c, "hospital-a", &mut t, &body).await;
    }
    // hospital-a is alive, still serves its peer, and refused the unsolicited evidence.
    let s = cluster
        .wait_for("hospital-a", "the unsolicited evidence refused", |s| {
            s.peers["hospital-c"]
                .gate2
                .as_ref()
                .is_some_and(|r| r.verdict.has("unsolicited-evidence"))
        })
        .await;
    assert!(s.peers["hospital-b"].connected);
    let log = std::fs::read_to_string(
        cluster
            .setup
            .fed
            .party("hospital-a")
            .unwrap()
            .dir
            .join("node.log"),
    )
    .unwrap();
    assert!(
        log.contains("exceeds the"),
        "the oversized frame was not refused as such"
    );
    assert!(log.contains("protocol violation"));
    // The injected share frame was received and dropped; hospital-a sent none.
    let sent: u64 = cluster
        .status("hospital-a")
        .await
        .counters
        .values()
        .flat_map(|p| p.sent.iter())
        .filter(|(k, _)| parley::peer::status::SHARE_KINDS.contains(&k.as_str()))
        .map(|(_, t)| t.frames)
        .sum();
    assert_eq!(sent, 0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_older_store_is_refused_and_recover_rejoins_with_the_lost_range_logged() {
    let setup = Setup::new(100).await;
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    let id = cluster.submit("hospital-a", &COLUMNS).await.unwrap();
    cluster.wait_job(id).await;
    let c = cluster.setup.fed.party("hospital-c").unwrap().clone();
    // Back up hospital-c's store while it is stopped.
    cluster
        .node_mut("hospital-c")
        .stop(Duration::from_secs(5))
        .await;
    let backup = cluster.setup.tmp.path().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    let db_files: Vec<String> = ["parley.db", "parley.db-wal", "parley.db-shm"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for f in &db_files {
        if c.dir.join(f).exists() {
            std::fs::copy(c.dir.join(f), backup.join(f)).unwrap();
        }
    }
    // More work after the backup: peers see hospital-c's log grow.
    cluster.restart("hospital-c", &[]);
    cluster.all_connected().await;
    for _ in 0..2 {
        let id = cluster.submit("hospital-b", &COLUMNS).await.unwrap();
        cluster.wait_job(id).await;
    }
    cluster
        .node_mut("hospital-c")
        .stop(Duration::from_secs(5))
        .await;
    for f in &db_files {
        let _ = std::fs::remove_file(c.dir.join(f));
        if backup.join(f).exists() {
            std::fs::copy(backup.join(f), c.dir.join(f)).unwrap();
        }
    }
    cluster.restart("hospital-c", &[]);
    for h in ["hospital-a", "hospital-b"] {
        let s = cluster
            .wait_for(h, "hospital-c refused as rolled back", |s| {
                s.peers["hospital-c"]
                    .gate2
                    .as_ref()
                    .is_some_and(|r| r.verdict.has("rollback-detected"))
            })
            .await;
        let msg = s.peers["hospital-c"]
            .gate2
            .as_ref()
            .unwrap()
            .verdict
            .summary();
        assert!(msg.contains("rolled back"), "{msg}");
    }
    // An auditor with a head hospital-a holds sees the truncated log.
    let a_config = cluster
        .setup
        .fed
        .party("hospital-a")
        .unwrap()
        .config
        .clone();
    let tmp = cluster.setup.tmp.path().to_owned();
    let (ok, cp) = cluster.cli(&[
        "audit".as_ref(),
        "checkpoint".as_ref(),
        "--config".as_ref(),
        a_config.as_os_str(),
        "--of".as_ref(),
        "hospital-c".as_ref(),
    ]);
    assert!(ok, "{cp}");
    std::fs::write(tmp.join("cp.json"), &cp).unwrap();
    let export = |cluster: &Cluster, name: &str| {
        let cfg = cluster.setup.fed.party(name).unwrap().config.clone();
        let out = tmp.join(format!("{name}.json"));
        let (ok, msg) = cluster.cli(&[
            "audit".as_ref(),
            "export".as_ref(),
            "--config".as_ref(),
            cfg.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert!(ok, "{msg}");
        out
    };
    let verify =
        |cluster: &Cluster, log: &std::path::Path, checkpoint: Option<&std::path::Path>| {
            let mut args: Vec<&OsStr> = vec!["audit".as_ref(), "verify".as_ref(), log.as_os_str()];
            if let Some(c) = checkpoint {
                args.push("--checkpoint".as_ref());
                args.push(c.as_os_str());
            }
            cluster.cli(&args)
        };
    let c_log = export(&cluster, "hospital-c");
    let (ok, out) = verify(&cluster, &c_log, None);
    assert!(ok, "the restored log is consistent on its own: {out}");
    let (ok, out) = verify(&cluster, &c_log, Some(&tmp.join("cp.json")));
    assert!(!ok && out.contains("truncated"), "{out}");

    // Recovery: peers' heads say what was lost; the node records it and rejoins.
    cluster
        .node_mut("hospital-c")
        .stop(Duration::from_secs(5))
        .await;
    cluster.restart("hospital-c", &["recover"]);
    cluster.all_connected().await;
    let id = cluster.submit("hospital-a", &COLUMNS).await.unwrap();
    for v in cluster.wait_job(id).await {
        assert_eq!(v.state, JobState::Done);
    }
    let c_log = export(&cluster, "hospital-c");
    let (ok, out) = verify(&cluster, &c_log, Some(&tmp.join("cp.json")));
    assert!(
        ok,
        "the recovered log acknowledges the head hospital-a held: {out}"
    );
    let recovered: parley::store::audit::AuditExport =
        serde_json::from_slice(&std::fs::read(&c_log).unwrap()).unwrap();
    assert_eq!(recovered.entries[0].event, "recovery");
    assert!(
        recovered.entries[0].detail["record"]["lost_entries"]
            .as_str()
            .is_some()
    );

    // Every node's log verifies; one altered entry does not.
    for h in HOSPITALS {
        let log = export(&cluster, h);
        let (ok, out) = verify(&cluster, &log, None);
        assert!(ok, "{h}: {out}");
    }
    let a_log = export(&cluster, "hospital-a");
    let mut a: serde_json::Value = serde_json::from_slice(&std::fs::read(&a_log).unwrap()).unwrap();
    a["entries"][2]["detail"]["peer"] = serde_json::json!("someone-else");
    std::fs::write(&a_log, serde_json::to_vec(&a).unwrap()).unwrap();
    let (ok, out) = verify(&cluster, &a_log, None);
    assert!(!ok && out.contains("INVALID"), "{out}");
    cluster.stop().await;
}

fn keys_status(config: &std::path::Path) -> serde_json::Value {
    let out = std::process::Command::new(parley_tests::parley_bin())
        .args(["keys", "status", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["status"].clone()
}

/// Issue 11 at node level: `parley keys rotate-data` killed (SIGKILL) after two blobs of a
/// node's SQLite store leaves every blob readable; the node's next start finishes the
/// rotation, and its data, identity and simulation keys all still work in a job.
#[tokio::test(flavor = "multi_thread")]
async fn killing_rotate_data_midway_loses_nothing_and_the_node_finishes_it() {
    use std::io::{BufRead, BufReader};
    let rows = 100;
    let setup = Setup::new(rows).await;
    let c = setup.fed.party("hospital-c").unwrap().clone();
    // More sealed blobs: extra dataset versions from the node's own sample CSV.
    for i in 0..6 {
        let out = std::process::Command::new(parley_tests::parley_bin())
            .args(["data", "import", "--schema", "patients", "--dataset"])
            .arg(format!("extra-{i}"))
            .arg("--config")
            .arg(&c.config)
            .arg("--file")
            .arg(c.dir.join("patients.csv"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let before = keys_status(&c.config);
    let count = before["blob_count"].as_u64().unwrap();
    assert!(count >= 9, "{before}");
    assert!(before["pending_data_rotation"].is_null());

    let mut proc = std::process::Command::new(parley_tests::parley_bin())
        .args(["keys", "rotate-data", "--pause-ms", "300", "--config"])
        .arg(&c.config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let l = lines.next().unwrap().unwrap();
        assert!(l.starts_with("re-encrypted "), "{l}");
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(proc.id()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    proc.wait().unwrap();

    let mid = keys_status(&c.config);
    let target = mid["pending_data_rotation"]
        .as_u64()
        .expect("the rotation was interrupted");
    let in_generation = |st: &serde_json::Value| {
        st["blobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["generation"].as_u64() == Some(target))
            .count() as u64
    };
    let moved = in_generation(&mid);
    assert!(moved >= 2 && moved < count, "{moved} of {count}");
    assert_eq!(mid["blob_count"].as_u64(), Some(count));
    assert_eq!(mid["unreadable"], serde_json::json!([]), "{mid}");

    // The node finishes the rotation when it opens its keys, then computes correctly.
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    let id = cluster.submit("hospital-a", &COLUMNS).await.unwrap();
    let idx = parley::store::data::patients_schema()
        .column_index(COLUMNS[0])
        .unwrap();
    let m = (0..3)
        .map(|i| {
            parley::store::data::sample_patients(i, rows)
                .moments(idx)
                .unwrap()
        })
        .fold(parley::store::data::Moments::default(), |a, b| a.add(&b));
    let want = vec![parley::jobs::job::ColumnStats::from_moments(COLUMNS[0], &m)];
    for v in cluster.wait_job(id).await {
        assert_eq!(v.state, JobState::Done);
        assert_eq!(v.result.as_ref().and_then(|r| r.summary()), Some(&want));
    }
    let after = keys_status(&c.config);
    assert!(after["pending_data_rotation"].is_null(), "{after}");
    // The job added one sealed blob: the dataset's release ledger (the privacy rule).
    assert_eq!(after["blob_count"].as_u64(), Some(count + 1));
    assert_eq!(in_generation(&after), count + 1, "{after}");
    // Every extra dataset still opens with its rows.
    let out = std::process::Command::new(parley_tests::parley_bin())
        .args(["data", "list", "--json", "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{list}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..6 {
        assert!(list.contains(&format!("extra-{i}")), "{list}");
    }
    cluster.stop().await;
}

fn analytics_request(title_part: &str, max_rows: u64) -> AdminRequest {
    let (_, spec) = parley::dev::study::jobs(max_rows)
        .unwrap()
        .into_iter()
        .find(|(t, _)| t.contains(title_part))
        .unwrap();
    AdminRequest::Submit {
        kind: JobKind::Analytics,
        dataset: "patients".into(),
        columns: Vec::new(),
        security: SecurityModel::Malicious,
        bench: None,
        recipients: Vec::new(),
        analytics: Some(Box::new(spec)),
    }
}

async fn propose(cluster: &Cluster, req: AdminRequest) -> parley::jobs::job::JobId {
    match cluster.admin("hospital-a", req).await {
        AdminResponse::Submitted { id } => id,
        other => panic!("not proposed: {other:?}"),
    }
}

/// Analytics jobs through the service: each node applies its own release policy and privacy
/// budget. A DP job reserves ρ at approval and spends it before any share leaves; a node
/// whose budget cannot cover the next job refuses it (so it never starts anywhere), and a
/// node whose policy declares no exact view stops an exact job another node proposed.
#[tokio::test(flavor = "multi_thread")]
async fn analytics_jobs_respect_every_nodes_release_policy_and_budget() {
    let rows = 200;
    let setup = Setup::new(rows).await;
    setup
        .fed
        .edit_config("hospital-b", |c| {
            c.budgets.insert("patients".into(), "0.15".parse().unwrap());
        })
        .unwrap();
    setup
        .fed
        .edit_config("hospital-c", |c| {
            c.release[0].views.clear();
        })
        .unwrap();
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;

    // A DP count: approved by all, computed, ρ = 0.1 spent on every node.
    let id = propose(&cluster, analytics_request("diabetics", rows as u64)).await;
    let views = cluster.wait_job(id).await;
    for v in &views {
        assert_eq!(v.state, JobState::Done, "{:?}", v.state);
        let Some(parley::jobs::job::JobOutput::Analytics(r)) = &v.result else {
            panic!("no analytics result: {:?}", v.result);
        };
        assert_eq!(r["privacy"]["mode"], "dp");
        assert_eq!(r["privacy"]["rho"], "0.1");
    }
    let st = cluster.status("hospital-b").await;
    assert_eq!(st.budgets_left["patients"], "0.05");
    assert_eq!(
        cluster.status("hospital-a").await.budgets_left["patients"],
        "1.9"
    );

    // The same again: hospital-b has ρ = 0.05 left and refuses; nothing runs anywhere.
    let id = propose(&cluster, analytics_request("diabetics", rows as u64)).await;
    for v in cluster.wait_job(id).await {
        match &v.state {
            JobState::Refused(why) => {
                assert!(
                    why.contains("hospital-b") && why.contains("budget"),
                    "{why}"
                )
            }
            other => panic!("not refused: {other:?}"),
        }
    }
    // hospital-a's reservation for the refused job was given back.
    assert_eq!(
        cluster.status("hospital-a").await.budgets_left["patients"],
        "1.9"
    );

    // hospital-c declares no exact view: the exact age-band job hospital-a proposes never
    // starts, and the refusal names the view it would need.
    let id = propose(&cluster, analytics_request("age band", rows as u64)).await;
    for v in cluster.wait_job(id).await {
        match &v.state {
            JobState::Refused(why) => {
                assert!(
                    why.contains("hospital-c") && why.contains("only the views its owner declares"),
                    "{why}"
                )
            }
            other => panic!("not refused: {other:?}"),
        }
    }
    // The budget movements are on the audit trail.
    let cfg = cluster
        .setup
        .fed
        .party("hospital-a")
        .unwrap()
        .config
        .clone();
    let (ok, out) = cluster.cli(&[
        "audit".as_ref(),
        "export".as_ref(),
        "--config".as_ref(),
        cfg.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let log: parley::store::audit::AuditExport = serde_json::from_str(&out).unwrap();
    let events: Vec<&str> = log.entries.iter().map(|e| e.event.as_str()).collect();
    for e in ["budget-reserve", "budget-spend", "budget-unreserve"] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    cluster.stop().await;
}
