//! The auditor's commands end to end: `parley policy check|from-evidence`,
//! `parley attest verify --policy [--sign-with]`, `parley attest check-verdict`.

use std::path::Path;
use std::process::Output;

use parley_tests::{Setup, parley_bin};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");
const AT: &str = "2025-06-01T00:00:00Z";

fn parley(args: &[&str]) -> Output {
    std::process::Command::new(parley_bin())
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn policy_check_names_the_line_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.toml");
    std::fs::write(
        &f,
        format!(
            "format = 2\nname = \"x\"\n[snp]\nmeasurements = [\"{}\"]\n[snp.guest]\nallow_debugg = true\n",
            "00".repeat(48)
        ),
    )
    .unwrap();
    let o = parley(&["policy", "check", &p(&f)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("line 6") && err.contains("allow_debugg"),
        "{err}"
    );
    std::fs::write(
        &f,
        format!(
            "format = 2\nname = \"x\"\n[snp]\nmeasurements = [\"{}\"]\n",
            "00".repeat(48)
        ),
    )
    .unwrap();
    let o = parley(&["policy", "check", &p(&f)]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("admits snp"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_verdict_is_reproduced_offline_and_an_altered_one_is_rejected() {
    // A node identity to sign with: any party of a local federation.
    let setup = Setup::new(10).await;
    let node = &setup.fed.parties[0];
    let dir = tempfile::tempdir().unwrap();
    let ev = format!("{VECTORS}/snp/milan-v2-trustee/report.bin");
    let certs = format!("{VECTORS}/snp/milan-v2-trustee");
    let policy = dir.path().join("policy.toml");

    let o = parley(&[
        "policy",
        "from-evidence",
        &ev,
        "--name",
        "prod-2026-11",
        "--certs",
        &certs,
        "--at",
        AT,
        "--out",
        &p(&policy),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("crl-missing"),
        "{}",
        text(&o)
    );
    let o = parley(&["policy", "check", &p(&policy)]);
    assert!(o.status.success(), "{}", text(&o));

    // Warning (no AMD CRL): exit 1 unless --allow-warning.
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "attest",
            "verify",
            &ev,
            "--policy",
            policy.to_str().unwrap(),
            "--certs",
            &certs,
            "--at",
            AT,
            "--json",
        ];
        args.extend_from_slice(extra);
        parley(&args)
    };
    let o = verify(&[]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = verify(&[
        "--allow-warning",
        "--sign-with",
        node.config.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let signed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let appraisal = &signed["ear"]["submods"]["snp"];
    assert_eq!(appraisal["ear.status"], "warning");
    assert_eq!(appraisal["ear.parley.reasons"][0]["code"], "crl-missing");
    assert_eq!(
        signed["ear"]["eat_profile"],
        "tag:github.com,2023:veraison/ear"
    );
    let key = signed["signature"]["key"].as_str().unwrap().to_owned();
    let stored = dir.path().join("verdict.json");
    std::fs::write(&stored, &o.stdout).unwrap();

    let check = |verdict: &Path, policy: &Path| {
        parley(&[
            "attest",
            "check-verdict",
            &p(verdict),
            "--evidence",
            &ev,
            "--policy",
            &p(policy),
            "--certs",
            &certs,
            "--key",
            &key,
        ])
    };
    let o = check(&stored, &policy);
    assert!(o.status.success(), "{}", text(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["reproduced"], true);

    // An altered field: the signature fails.
    let mut altered = signed.clone();
    altered["ear"]["submods"]["snp"]["ear.status"] = "affirming".into();
    let bad = dir.path().join("altered.json");
    std::fs::write(&bad, serde_json::to_vec(&altered).unwrap()).unwrap();
    let o = check(&bad, &policy);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("signature does not verify"),
        "{}",
        text(&o)
    );
    // Another policy than the one the verdict names: not reproduced.
    let other = dir.path().join("other.toml");
    let mut t = std::fs::read_to_string(&policy).unwrap();
    t.push_str("\n# edited\n");
    std::fs::write(&other, t).unwrap();
    let o = check(&stored, &other);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not reproduced"),
        "{}",
        text(&o)
    );
}

#[test]
fn verify_without_policy_keeps_its_genuineness_only_meaning() {
    let ev = format!("{VECTORS}/snp/milan-v2-go-sev-guest/report.bin");
    let certs = format!("{VECTORS}/snp/milan-v2-go-sev-guest");
    let o = parley(&[
        "attest", "verify", &ev, "--certs", &certs, "--at", AT, "--json",
    ]);
    // Genuine (debug or not): a warning saying no policy was applied, exit 0.
    assert!(o.status.success(), "{}", text(&o));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        out["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "no-policy")
    );
}
