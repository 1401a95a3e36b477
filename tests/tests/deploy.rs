//! The deployment recipes in deploy/, the operator's preflight (`parley node check`) and
//! the CLI's manners in a pipeline.
//!
//! The systemd and Kubernetes checks need `systemd-analyze` and `kubectl` (both on this
//! project's CI machine); where one is missing the test says so and checks the rest.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use parley::admin::{self, AdminRequest, AdminResponse};
use parley_tests::{Setup, run};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn have(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()));
    if !found {
        eprintln!("{tool} is not installed: its part of this test is skipped");
    }
    found
}

fn check(bin: &Path, config: &Path) -> (bool, String) {
    run(
        bin,
        &[
            "node".as_ref(),
            "check".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--peer-timeout".as_ref(),
            "1".as_ref(),
        ],
    )
}

fn audit_entries(bin: &Path, config: &Path) -> usize {
    let (ok, out) = run(
        bin,
        &[
            "audit".as_ref(),
            "export".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ],
    );
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("audit export JSON");
    v["entries"].as_array().expect("entries").len()
}

#[tokio::test(flavor = "multi_thread")]
async fn node_check_passes_a_ready_node_and_names_what_blocks_one() {
    let setup = Setup::new(50).await;
    let a = setup.fed.party("hospital-a").unwrap().clone();
    let bin = setup.bin.clone();

    let before = audit_entries(&bin, &a.config);
    let (ok, out) = check(&bin, &a.config);
    assert!(ok, "{out}");
    assert!(out.contains("ok    keys"), "{out}");
    assert!(
        out.contains("ok    own evidence") && out.contains("warning (simulated-evidence"),
        "the node's own evidence passes its own policy, with the simulation warning: {out}"
    );
    assert!(
        out.contains("ok    datasets             patients v1 (50 rows)"),
        "{out}"
    );
    assert!(
        out.contains("warn  peer                 cannot reach hospital-b"),
        "peers that are down are warnings, named: {out}"
    );
    assert_eq!(
        audit_entries(&bin, &a.config),
        before,
        "a check leaves the audit log alone"
    );

    // A peer that runs answers; the running node itself is not checked beside itself.
    let cluster = setup.start_some(&["hospital-b"], &[]);
    let b = cluster.setup.fed.party("hospital-b").unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while admin::call(
        &b.dir.join("admin.sock"),
        &AdminRequest::Status,
        Duration::from_secs(2),
    )
    .await
    .is_err()
    {
        assert!(Instant::now() < deadline, "hospital-b never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out) = check(&bin, &a.config);
    assert!(
        ok && out.contains("ok    peer                 hospital-b answers"),
        "{out}"
    );
    let (ok, out) = check(&bin, &b.config);
    assert!(!ok && out.contains("FAIL  not running"), "{out}");

    // A data directory other users can read fails, with the fix.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&a.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, out) = check(&bin, &a.config);
    assert!(!ok && out.contains("chmod 700"), "{out}");
    std::fs::set_permissions(&a.dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // A policy that is not the one the manifest pins stops the node, and the check says so.
    let policy = a.dir.join("policy.toml");
    let original = std::fs::read(&policy).unwrap();
    let mut edited = original.clone();
    edited.extend_from_slice(b"\n# edited\n");
    std::fs::write(&policy, &edited).unwrap();
    let (ok, out) = check(&bin, &a.config);
    assert!(!ok && out.contains("FAIL  node start-up"), "{out}");
    assert!(
        out.contains("policy"),
        "the failure names the policy: {out}"
    );
    std::fs::write(&policy, &original).unwrap();
    assert!(check(&bin, &a.config).0);
    cluster.stop().await;
}

/// The unit's command lines with the binary and the config path replaced by test ones.
fn unit_for_test(bin: &Path, config: Option<&Path>) -> String {
    let unit = std::fs::read_to_string(deploy_dir().join("systemd/parley-node@.service")).unwrap();
    let unit = unit.replace("/usr/local/bin/parley", bin.to_str().unwrap());
    match config {
        Some(c) => unit.replace("/etc/parley/%i/node.toml", c.to_str().unwrap()),
        None => unit,
    }
}

fn exec_line(unit: &str, key: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}"));
    line.split_whitespace().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_systemd_unit_verifies_is_hardened_and_its_command_lines_run_a_node() {
    let setup = Setup::new(20).await;
    let a = setup.fed.party("hospital-a").unwrap().clone();
    let tmp = tempfile::tempdir().unwrap();

    if have("systemd-analyze") {
        let unit_path = tmp.path().join("parley-node@.service");
        std::fs::write(&unit_path, unit_for_test(&setup.bin, None)).unwrap();
        // The instance is found from the template beside it.
        let instance = tmp.path().join("parley-node@hospital-a.service");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&instance)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&instance)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in: {text}"));
        // systemd rates ≤ 2.0 "OK"; the score stays there.
        assert!(level <= 2.0, "exposure level {level}: {text}");
        eprintln!("systemd exposure level of parley-node@.service: {level}");
    }

    // The unit's exact command lines, with test paths: the preflight passes, the node
    // starts, and SIGTERM (the unit's KillSignal) stops it cleanly with its final status.
    let unit = unit_for_test(&setup.bin, Some(&a.config)).replace("%i", "hospital-a");
    let pre = exec_line(&unit, "ExecStartPre");
    let out = Command::new(&pre[0]).args(&pre[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "ExecStartPre: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let start = exec_line(&unit, "ExecStart");
    let log = std::fs::File::create(tmp.path().join("node.log")).unwrap();
    let mut child = Command::new(&start[0])
        .args(&start[1..])
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(AdminResponse::Status(s)) = admin::call(
            &a.dir.join("admin.sock"),
            &AdminRequest::Status,
            Duration::from_secs(2),
        )
        .await
        {
            assert_eq!(s.party, "hospital-a");
            break;
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "the unit's ExecStart did not run a node: {}",
                std::fs::read_to_string(tmp.path().join("node.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM ends the node cleanly: {status}");
    assert!(a.dir.join("status.json").exists());
}

#[test]
fn the_example_configs_parse_and_the_k8s_recipe_renders() {
    for file in ["systemd/node.toml.example", "k8s/node.toml"] {
        let path = deploy_dir().join(file);
        let cfg = parley::config::NodeConfig::load(&path)
            .unwrap_or_else(|e| panic!("{file} is not a valid node config: {e}"));
        assert_eq!(
            cfg.keys.backend,
            parley_keys::config::BackendKind::Vault,
            "{file}"
        );
        assert!(
            cfg.jobs.auto_approve.is_empty(),
            "{file}: every job waits for an operator"
        );
    }
    if !have("kubectl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let k8s = tmp.path().join("k8s");
    std::fs::create_dir_all(k8s.join("federation")).unwrap();
    for entry in std::fs::read_dir(deploy_dir().join("k8s")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), k8s.join(entry.file_name())).unwrap();
        }
    }
    for f in ["manifest.toml", "policy.toml", "openbao-ca.pem"] {
        std::fs::write(k8s.join("federation").join(f), format!("# {f}\n")).unwrap();
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&k8s)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "kind: StatefulSet",
        "replicas: 1",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "automountServiceAccountToken: false",
        "kind: NetworkPolicy",
        "- /etc/parley/node.toml",
        "mountPath: /etc/parley",
        "name: parley-node-",
    ] {
        assert!(
            text.contains(needle),
            "rendered k8s lacks {needle:?}:\n{text}"
        );
    }
    // The container image runs what the StatefulSet asks for, as the user it expects.
    let containerfile =
        std::fs::read_to_string(deploy_dir().join("container/Containerfile")).unwrap();
    assert!(containerfile.contains(r#"CMD ["node", "--config", "/etc/parley/node.toml"]"#));
    assert!(containerfile.contains("USER 65532:65532") && text.contains("runAsUser: 65532"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_ends_a_command_quietly() {
    // `parley audit export … | head -c1`: the reader goes away before the output is written.
    let setup = Setup::new(20).await;
    let a = setup.fed.party("hospital-a").unwrap().clone();
    for _ in 0..3 {
        let mut child = Command::new(&setup.bin)
            .args(["audit", "export", "--config"])
            .arg(&a.config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        // 141 = 128 + SIGPIPE, as a shell reports a writer whose reader left; 0 if the
        // output fit in the pipe before the reader closed it.
        assert!(
            matches!(out.status.code(), Some(0) | Some(141)),
            "{:?}: {stderr}",
            out.status
        );
    }
}
