//! The OpenBao harness stops its server when a test panics and when the test process is
//! killed outright (SIGKILL: no destructor runs; the wrapper sees its stdin pipe close).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use parley_tests::openbao::Bao;

fn alive(pid: u32) -> bool {
    // Signal 0 checks existence; a zombie (not yet reaped by the wrapper) counts as gone.
    let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !status.is_empty() && !status.contains(") Z ")
}

fn gone_within(pid: u32, d: Duration) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Helper run by `server_dies_with_a_killed_test_process` in a child process.
#[test]
#[ignore = "run as a child process by the test below"]
fn hold_a_server_forever() {
    if std::env::var_os("PARLEY_TEST_HOLD_BAO").is_none() {
        return; // only as the child of the test below
    }
    let bao = Bao::dev();
    println!("pid {}", bao.pid().unwrap());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn server_dies_with_a_killed_test_process() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "hold_a_server_forever",
            "--nocapture",
        ])
        .env("PARLEY_TEST_HOLD_BAO", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    let pid: u32 = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            seen.push(l.clone());
            l.strip_prefix("pid ").map(|p| p.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("the child started no server; it printed {seen:?}"));
    assert!(alive(pid));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "bao {pid} outlived its test"
    );
}

#[test]
fn server_dies_when_a_test_panics() {
    let pid = std::sync::Arc::new(std::sync::Mutex::new(None));
    let p2 = pid.clone();
    let r = std::thread::spawn(move || {
        let bao = Bao::dev();
        *p2.lock().unwrap() = bao.pid();
        panic!("a failing test");
    })
    .join();
    assert!(r.is_err());
    let pid = pid.lock().unwrap().unwrap();
    assert!(
        gone_within(pid, Duration::from_secs(5)),
        "bao {pid} outlived its test"
    );
}
