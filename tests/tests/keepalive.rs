//! Keep-alive: sessions ping on their own when idle and note every frame as it arrives, so
//! a node busy with a long MPC step stays alive to its peers and does not mistake its own
//! backlog for silence; a node that is really gone (here: frozen with SIGSTOP) is dropped
//! as silent after `[jobs] peer_silent_secs`, and rejoins when it comes back.

use std::time::Duration;

use parley::admin::AdminResponse;
use parley::jobs::job::{BenchWorkload, JobState, SecurityModel};
use parley_tests::{HOSPITALS, Setup};

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_node_stays_alive_and_a_frozen_one_is_dropped_as_silent() {
    const SILENT_SECS: u64 = 2;
    let setup = Setup::new(50).await;
    for h in HOSPITALS {
        setup
            .fed
            .edit_config(h, |c| {
                c.jobs.peer_silent_secs = SILENT_SECS;
                c.jobs.timeout_secs = 600;
                c.jobs.auto_approve.push("bench-mul".into());
            })
            .unwrap();
    }
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;

    // Idle for several silence windows: the sessions' own pings keep every peer.
    tokio::time::sleep(Duration::from_secs(3 * SILENT_SECS)).await;
    for h in HOSPITALS {
        let s = cluster.status(h).await;
        assert!(
            s.peers.values().all(|p| p.connected),
            "{h} dropped an idle peer: {:?}",
            s.peers
        );
    }

    // Two batches of 10^6 malicious multiplications: steps that keep each engine busy
    // for about as long as the silence window, a job that outlasts it several times.
    let req =
        parley::dev::bench::bench_request(BenchWorkload::T1, 2_000_000, SecurityModel::Malicious);
    let AdminResponse::Submitted { id } = cluster.admin("hospital-a", req).await else {
        panic!("not submitted")
    };
    let views = parley::dev::launcher::wait_job(
        &cluster.nodes,
        id,
        parley::dev::launcher::JobReach::EveryNode,
        Duration::from_secs(300),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    let mut longest = 0;
    for v in views.into_iter().flatten() {
        assert_eq!(
            v.state,
            JobState::Done,
            "a busy node was taken for a silent one"
        );
        longest = longest.max(v.compute_ms.unwrap_or(0));
    }
    eprintln!("the job took {longest} ms against a {SILENT_SECS} s silence window");
    assert!(
        longest > SILENT_SECS * 1000,
        "the job ({longest} ms) did not outlast the silence window: the test proves nothing"
    );

    // Frozen: no frame at all. Both peers drop it as silent, with the reason.
    let pid = nix::unistd::Pid::from_raw(cluster.node("hospital-c").pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    for h in ["hospital-a", "hospital-b"] {
        cluster
            .wait_for(h, "hospital-c dropped as silent", |s| {
                let c = &s.peers["hospital-c"];
                !c.connected
                    && c.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("peer-silent"))
            })
            .await;
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    cluster.all_connected().await;
    cluster.stop().await;
}
