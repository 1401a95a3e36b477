//! The shape of the node, met as operators meet it: real `parley node` processes and the
//! `parley` CLI. `job list` shows what awaits an operator; `job show` reads finished jobs
//! from the store after a restart.

use std::ffi::OsStr;
use std::time::Duration;

use parley::jobs::job::{JobState, JobView};
use parley_tests::Setup;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// `parley job list --json` on `cfg`: every job the node holds.
fn job_list(cluster: &parley_tests::Cluster, cfg: &std::path::Path) -> Vec<JobView> {
    let out = std::process::Command::new(&cluster.setup.bin)
        .args([
            os("job"),
            os("list"),
            os("--json"),
            os("--config"),
            cfg.as_os_str(),
        ])
        .output()
        .expect("run parley job list");
    assert!(
        out.status.success(),
        "parley job list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "job list --json is not a list of jobs ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn job_list_shows_what_awaits_an_operator_and_show_reads_the_store_after_a_restart() {
    let setup = Setup::new(40).await;
    // hospital-b's operator decides by hand.
    setup
        .fed
        .edit_config("hospital-b", |c| c.jobs.auto_approve.clear())
        .unwrap();
    let b_cfg = setup.fed.party("hospital-b").unwrap().config.clone();
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;

    let id = cluster
        .submit("hospital-a", &["systolic_bp"])
        .await
        .unwrap();
    // The approving node lists the pending job, marked as awaiting its operator.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = job_list(&cluster, &b_cfg);
        if let Some(v) = jobs.iter().find(|v| v.spec.id == id) {
            assert_eq!(v.state, JobState::Proposed);
            assert!(v.awaiting_operator, "not marked as awaiting the operator");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} never listed on hospital-b"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The human-readable list says so too.
    let (ok, text) = cluster.cli(&[os("job"), os("list"), os("--config"), b_cfg.as_os_str()]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&id.to_string()) && text.contains("awaiting this operator"),
        "{text}"
    );

    let (ok, text) = cluster.cli(&[
        os("job"),
        os("approve"),
        os("--config"),
        b_cfg.as_os_str(),
        os(&id.to_string()),
    ]);
    assert!(ok, "{text}");
    for v in cluster.wait_job(id).await {
        assert_eq!(v.state, JobState::Done);
    }

    // After a restart the node reads the finished job from its store.
    cluster
        .node_mut("hospital-b")
        .stop(Duration::from_secs(5))
        .await;
    cluster.restart("hospital-b", &[]);
    cluster.all_connected().await;
    let (ok, text) = cluster.cli(&[
        os("job"),
        os("show"),
        os("--config"),
        b_cfg.as_os_str(),
        os(&id.to_string()),
    ]);
    assert!(ok, "job show after a restart: {text}");
    let shown: JobView = serde_json::from_str(&text).expect("job show prints the job");
    assert_eq!(shown.state, JobState::Done);
    assert!(
        job_list(&cluster, &b_cfg)
            .iter()
            .any(|v| v.spec.id == id && v.state == JobState::Done),
        "the finished job is missing from job list after a restart"
    );
    // An unknown job is a clear refusal, not a protocol error.
    let (ok, text) = cluster.cli(&[
        os("job"),
        os("show"),
        os("--config"),
        b_cfg.as_os_str(),
        os("00000000000000000000000000000000"),
    ]);
    assert!(!ok);
    assert!(text.contains("holds no job"), "{text}");
    cluster.stop().await;
}

/// Audit entries in `cfg`'s log, read as an auditor would (`parley audit export`, which
/// only reads and so runs beside the node).
fn audit_size(
    cluster: &parley_tests::Cluster,
    cfg: &std::path::Path,
    out: &std::path::Path,
) -> usize {
    let (ok, text) = cluster.cli(&[
        os("audit"),
        os("export"),
        os("--config"),
        cfg.as_os_str(),
        os("--out"),
        out.as_os_str(),
    ]);
    assert!(ok, "audit export beside the node: {text}");
    let export: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    export["entries"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_writer_per_store_and_a_hot_import_is_used_by_the_next_job() {
    let rows = 30;
    let setup = Setup::new(rows).await;
    // Room under hospital-a's declared size for the hot import's newcomers.
    setup
        .fed
        .edit_config("hospital-a", |c| c.release[0].max_rows = 60)
        .unwrap();
    let a = setup.fed.party("hospital-a").unwrap().clone();
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    let pid = cluster.node("hospital-a").pid().unwrap();
    let export = cluster.setup.tmp.path().join("audit-a.json");
    let before = audit_size(&cluster, &a.config, &export);

    // A second node on the same store is refused before it writes anything, naming the pid.
    let out = std::process::Command::new(&cluster.setup.bin)
        .args([os("node"), os("--config"), a.config.as_os_str()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second node on one store ran: {err}"
    );
    assert!(
        err.contains(&format!("node is running (pid {pid})")),
        "the refusal does not name the running node: {err}"
    );
    // A command that would write beside the node is refused the same way.
    let (ok, text) = cluster.cli(&[
        os("keys"),
        os("rotate"),
        os("--config"),
        a.config.as_os_str(),
    ]);
    assert!(!ok, "a key rotation ran beside the node: {text}");
    assert!(
        text.contains(&format!("node is running (pid {pid})")),
        "{text}"
    );
    assert!(
        !text.contains("Error {") && !text.contains("Os {"),
        "Debug text: {text}"
    );
    // Nothing was written by either.
    assert_eq!(audit_size(&cluster, &a.config, &export), before);

    // A hot import goes through the running node: hospital-a's rows and twenty newcomers
    // (at least min_k of them, and varied values, so the privacy rule lets the total out).
    let csv = std::fs::read_to_string(a.dir.join("patients.csv")).unwrap();
    let newcomers: String = (0..20)
        .map(|i| format!("{},{},{},{},0\n", 30 + i, i % 2, 150 + i, 200 + i))
        .collect();
    let file = cluster.setup.tmp.path().join("patients-v2.csv");
    std::fs::write(&file, format!("{csv}{newcomers}")).unwrap();
    let (ok, text) = cluster.cli(&[
        os("data"),
        os("import"),
        os("--config"),
        a.config.as_os_str(),
        os("--dataset"),
        os("patients"),
        os("--schema"),
        os("patients"),
        os("--file"),
        file.as_os_str(),
    ]);
    assert!(ok, "hot import: {text}");
    assert!(
        text.contains("version 2") && text.contains("running node"),
        "{text}"
    );
    // Read-only commands read beside the node.
    let (ok, text) = cluster.cli(&[os("data"), os("list"), os("--config"), a.config.as_os_str()]);
    assert!(ok && text.contains("version 2"), "{text}");

    // The next job, proposed by another party (so the new version reached the peers), uses
    // the new version.
    let col = "systolic_bp";
    let idx = parley::store::data::patients_schema()
        .column_index(col)
        .unwrap();
    let mut want = parley::store::data::Dataset::load_csv(
        "patients",
        parley::store::data::patients_schema(),
        &file,
    )
    .unwrap()
    .moments(idx)
    .unwrap();
    for i in 1..3 {
        want = want.add(
            &parley::store::data::sample_patients(i, rows)
                .moments(idx)
                .unwrap(),
        );
    }
    let want = vec![parley::jobs::job::ColumnStats::from_moments(col, &want)];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let id = cluster.submit("hospital-b", &[col]).await.unwrap();
        let views = cluster.wait_job(id).await;
        // The announcement may still be on its way: then hospital-a refuses the old version.
        if views
            .iter()
            .any(|v| matches!(&v.state, JobState::Refused(r) if r.contains("version")))
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        for v in &views {
            assert_eq!(v.state, JobState::Done, "the job after the hot import");
            assert_eq!(v.result.as_ref().and_then(|r| r.summary()), Some(&want));
        }
        assert_eq!(want[0].count, (20 + 3 * rows).to_string());
        break;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_jobs_run_at_once() {
    use parley::jobs::job::{BenchWorkload, SecurityModel};
    let setup = Setup::new(20).await;
    for h in parley_tests::HOSPITALS {
        setup
            .fed
            .edit_config(h, |c| {
                c.jobs.auto_approve.push("bench-mul".into());
                c.jobs.timeout_secs = 300;
            })
            .unwrap();
    }
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    let req = || {
        parley::dev::bench::bench_request(BenchWorkload::T1, 1_000_000, SecurityModel::Malicious)
    };
    let mut ids = Vec::new();
    for proposer in ["hospital-a", "hospital-b"] {
        match cluster.admin(proposer, req()).await {
            parley::admin::AdminResponse::Submitted { id } => ids.push(id),
            other => panic!("not submitted: {}", other.kind()),
        }
    }
    // Both are running at the same moment on some node.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut together = false;
    while !together && std::time::Instant::now() < deadline {
        for h in parley_tests::HOSPITALS {
            let jobs = job_list(&cluster, &cluster.setup.fed.party(h).unwrap().config);
            let running = ids
                .iter()
                .filter(|id| {
                    jobs.iter()
                        .any(|v| v.spec.id == **id && v.state == JobState::Running)
                })
                .count();
            together |= running == 2;
        }
        let done = ids.iter().all(|id| {
            job_list(
                &cluster,
                &cluster.setup.fed.party("hospital-c").unwrap().config,
            )
            .iter()
            .any(|v| v.spec.id == *id && v.state.is_final())
        });
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for id in &ids {
        for v in cluster.wait_job(*id).await {
            assert_eq!(v.state, JobState::Done);
        }
    }
    assert!(together, "the two jobs never ran at the same time");
    cluster.stop().await;
}

/// A peer that passes both gates and then stops reading (while it keeps the node busy
/// answering it) is dropped within about `peer_silent_secs`; the node answers its operator
/// meanwhile and runs the next job once the real party is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_that_stops_reading_is_dropped_and_the_node_goes_on() {
    use parley::peer::wire::Body;
    const SILENT_SECS: u64 = 2;
    let setup = Setup::new(20).await;
    for h in parley_tests::HOSPITALS {
        setup
            .fed
            .edit_config(h, |c| c.jobs.peer_silent_secs = SILENT_SECS)
            .unwrap();
    }
    let mut cluster = setup.start_some(&["hospital-a", "hospital-b"], &[]);
    cluster.wait_session("hospital-a", "hospital-b").await;

    // hospital-c's genuine keys and evidence, in this process: it attaches, then asks for
    // fresh evidence again and again and never reads an answer.
    let c = parley_tests::in_process(&cluster.setup, "hospital-c").await;
    let mut tls = parley_tests::connect(&c, "hospital-a").await.unwrap();
    parley_tests::attach(&c, "hospital-a", &mut tls).await;
    cluster.wait_session("hospital-a", "hospital-c").await;
    let flood = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut sent = 0u64;
        while started.elapsed() < Duration::from_secs(60) {
            let body = Body::Challenge {
                nonce: parley::peer::session::nonce(),
                unix_time: parley::util::unix_now(),
            };
            let send = parley::peer::session::send(&c, "hospital-a", &mut tls, &body);
            match tokio::time::timeout(Duration::from_secs(5), send).await {
                Ok(Ok(())) => sent += 1,
                _ => break,
            }
        }
        sent
    });
    cluster
        .wait_for("hospital-a", "hospital-c dropped", |s| {
            s.peers.get("hospital-c").is_some_and(|p| !p.connected)
        })
        .await;
    // Why, from hospital-a's log (its status soon shows the dialer's later attempts to
    // reach the absent real hospital-c instead).
    let log = std::fs::read_to_string(&cluster.node("hospital-a").log).unwrap();
    let why: Vec<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "session ended" && v["peer"] == "hospital-c")
        .map(|v| v["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        why.iter()
            .any(|r| r.contains("peer-silent") || r.contains("closed by this node")),
        "dropped for another reason: {why:?}"
    );
    // The node answered its operator throughout and still does, at once.
    let t0 = std::time::Instant::now();
    let (ok, text) = cluster.cli(&[
        os("job"),
        os("list"),
        os("--config"),
        cluster
            .setup
            .fed
            .party("hospital-a")
            .unwrap()
            .config
            .as_os_str(),
    ]);
    assert!(ok, "{text}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    let sent = flood.await.unwrap();
    assert!(sent > 0);

    // The real hospital-c joins and the federation computes.
    let c = cluster.setup.fed.party("hospital-c").unwrap().clone();
    cluster.nodes.push(
        parley::dev::launcher::NodeProcess::spawn(
            &cluster.setup.bin,
            &c.name,
            &c.config,
            &c.dir,
            &c.dir.join("node.log"),
        )
        .unwrap(),
    );
    cluster.all_connected().await;
    let id = cluster
        .submit("hospital-a", &["systolic_bp"])
        .await
        .unwrap();
    for v in cluster.wait_job(id).await {
        assert_eq!(v.state, JobState::Done);
    }
    cluster.stop().await;
}

/// Mutation twin of the store lock (run by `tests/run.sh` with `--ignored`): in the
/// sim-cheat test build with `PARLEY_MUTATION=no-store-lock`, the lock is switched off, and
/// the attack it stops — a second `parley node` writing to a running node's store — must
/// then succeed (its start-up entry lands in the running node's audit log).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "mutation twin: tests/run.sh runs it"]
async fn mutation_twin_without_the_store_lock_a_second_node_writes_beside_the_first() {
    let setup = Setup::new(10).await;
    let a = setup.fed.party("hospital-a").unwrap().clone();
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    let export = cluster.setup.tmp.path().join("audit-a.json");
    let before = audit_size(&cluster, &a.config, &export);
    let out = std::process::Command::new(parley_tests::parley_cheat_bin())
        .args([os("node"), os("--config"), a.config.as_os_str()])
        .env("PARLEY_MUTATION", "no-store-lock")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("node is running"),
        "the mutation did not switch the lock off: {err}"
    );
    let after = audit_size(&cluster, &a.config, &export);
    assert!(
        after > before,
        "without the lock a second writer must reach the store ({before} -> {after} entries): {err}"
    );
    cluster.stop().await;
}
