//! deploy/local/launch.sh starts nodes from config files and stops them all together.

use std::process::Command;
use std::time::{Duration, Instant};

use parley::admin::{self, AdminRequest, AdminResponse};
use parley_tests::Setup;

#[tokio::test(flavor = "multi_thread")]
async fn the_local_launcher_starts_a_federation_and_stops_it() {
    let setup = Setup::new(100).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/launch.sh");
    let mut child = Command::new("bash")
        .arg(&script)
        .arg("--bin")
        .arg(&setup.bin)
        .args(setup.fed.parties.iter().map(|p| p.config.clone()))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    'wait: loop {
        assert!(
            Instant::now() < deadline,
            "the launched nodes never connected"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the launcher exited early"
        );
        for p in &setup.fed.parties {
            match admin::call(
                &p.dir.join("admin.sock"),
                &AdminRequest::Status,
                Duration::from_secs(2),
            )
            .await
            {
                Ok(AdminResponse::Status(s)) if s.peers.values().all(|v| v.connected) => {}
                _ => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue 'wait;
                }
            }
        }
        break;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    // Every node wrote its final status on the way out.
    let deadline = Instant::now() + Duration::from_secs(15);
    for p in &setup.fed.parties {
        while !p.dir.join("status.json").exists() {
            assert!(Instant::now() < deadline, "{} did not shut down", p.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
