//! `parley demo` as a user runs it: exit status, exported results recomputed independently
//! from the exported CSVs, and no node process left behind (also after Ctrl-C).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use parley_tests::parley_bin;

/// PIDs of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline"))
            && String::from_utf8_lossy(&cmd).contains(needle)
        {
            out.push(pid);
        }
    }
    out
}

/// Recompute count, Σx, Σx², mean and sample variance of a column from CSV files, with no
/// Parley code involved.
fn recompute(csvs: &[std::path::PathBuf], column: &str) -> (i64, i64, i64, f64, f64) {
    let (mut n, mut s, mut q) = (0i64, 0i64, 0i64);
    for p in csvs {
        let mut rdr = csv::Reader::from_path(p).unwrap();
        let idx = rdr
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == column)
            .unwrap();
        for rec in rdr.records() {
            let v: i64 = rec.unwrap()[idx].parse().unwrap();
            n += 1;
            s += v;
            q += v * v;
        }
    }
    let mean = s as f64 / n as f64;
    let var = (q as f64 - (s as f64) * (s as f64) / n as f64) / (n as f64 - 1.0);
    (n, s, q, mean, var)
}

#[test]
fn demo_exports_results_that_match_an_independent_recomputation_and_leaves_no_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fed");
    let export = tmp.path().join("export");
    let out = Command::new(parley_bin())
        .args(["demo", "--rows", "3000", "--dir"])
        .arg(&dir)
        .arg("--export")
        .arg(&export)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plaintext reference"), "{stdout}");
    assert!(stdout.contains("hospital-a  -> hospital-b"), "{stdout}");
    assert!(
        processes_mentioning(dir.to_str().unwrap()).is_empty(),
        "node processes survived the demo"
    );

    audit_logs_verify_and_tampering_is_detected(&dir);

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("results.json")).unwrap()).unwrap();
    let csvs: Vec<_> = ["hospital-a", "hospital-b", "hospital-c"]
        .iter()
        .map(|h| export.join(format!("{h}.csv")))
        .collect();
    for column in ["systolic_bp", "cholesterol"] {
        let (n, s, q, mean, var) = recompute(&csvs, column);
        let r = &results["statistics"][column];
        assert_eq!(r["count"].as_i64(), Some(n));
        assert_eq!(r["sum"].as_i64(), Some(s));
        assert_eq!(r["sum_of_squares"].as_i64(), Some(q));
        assert!((r["mean"].as_f64().unwrap() - mean).abs() <= 1e-9 * mean.abs());
        assert!((r["variance"].as_f64().unwrap() - var).abs() <= 1e-9 * var.abs());
    }
    study_matches_an_independent_recomputation(&results, &csvs);
}

/// Every row of the exported CSVs as (age, systolic_bp, cholesterol, diabetic).
fn rows(csvs: &[std::path::PathBuf]) -> Vec<[f64; 4]> {
    let mut out = Vec::new();
    for p in csvs {
        let mut rdr = csv::Reader::from_path(p).unwrap();
        let h = rdr.headers().unwrap().clone();
        let idx = |c: &str| h.iter().position(|x| x == c).unwrap();
        let cols = [
            idx("age"),
            idx("systolic_bp"),
            idx("cholesterol"),
            idx("diabetic"),
        ];
        for rec in rdr.records() {
            let rec = rec.unwrap();
            out.push(cols.map(|i| rec[i].parse::<f64>().unwrap()));
        }
    }
    out
}

fn estimates(job: &serde_json::Value) -> &Vec<serde_json::Value> {
    job["result"]["estimates"].as_array().unwrap()
}

fn estimate<'a>(
    job: &'a serde_json::Value,
    name: &str,
    group: Option<[i64; 2]>,
) -> &'a serde_json::Value {
    let g = group
        .map(|g| serde_json::json!(g))
        .unwrap_or(serde_json::Value::Null);
    &estimates(job)
        .iter()
        .find(|e| e["name"] == name && e["group"] == g)
        .unwrap_or_else(|| panic!("no estimate {name} {group:?}: {job}"))["value"]
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn comoment(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum()
}

fn rel_close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-12)
}

/// The study recomputed from the CSVs with no Parley code: exact integers exactly, exact
/// means and variances within 1e-9 relative, suppression exactly where a hospital holds
/// 1 … min_k − 1 patients of a band, DP results within 6 stated standard errors (or 6σ of
/// the total noise) of the exact value.
fn study_matches_an_independent_recomputation(
    results: &serde_json::Value,
    csvs: &[std::path::PathBuf],
) {
    let data = rows(csvs);
    let jobs = results["study"]["jobs"].as_array().expect("study exported");
    let job = |kind: &str| {
        jobs.iter()
            .find(|j| j["spec"]["analysis"]["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} job"))
    };
    // Every result says which rule admitted it; every DP value carries its standard error.
    for j in jobs.iter().filter(|j| !j["result"].is_null()) {
        let rule = j["result"]["privacy"]["rule"].as_str().unwrap_or_default();
        assert!(
            rule.starts_with("the privacy rule") || rule.starts_with("differential privacy"),
            "{j}"
        );
        if j["result"]["privacy"]["mode"] == "dp" {
            for e in estimates(j) {
                if e["value"]["type"] == "real" || e["value"]["type"] == "integer" {
                    assert!(e["standard_error"].as_f64().is_some(), "{e}");
                }
            }
        }
    }
    // Mean and variance of systolic BP per age band, exact from the declared view: a band
    // is suppressed exactly when some hospital holds 1 … min_k − 1 patients in it.
    let v = job("variance");
    assert_eq!(v["result"]["privacy"]["mode"], "exact");
    let edges: Vec<i64> =
        serde_json::from_value(v["spec"]["analysis"]["group_by"]["edges"].clone()).unwrap();
    let k = results["study"]["policy"]["min_k"].as_u64().unwrap() as usize;
    let per_hospital: Vec<Vec<[f64; 4]>> =
        csvs.iter().map(|c| rows(std::slice::from_ref(c))).collect();
    for w in edges.windows(2) {
        let in_band = |r: &&[f64; 4]| r[0] >= w[0] as f64 && r[0] < w[1] as f64;
        let bp: Vec<f64> = data.iter().filter(in_band).map(|r| r[1]).collect();
        let g = Some([w[0], w[1]]);
        let small = per_hospital.iter().any(|h| {
            let c = h.iter().filter(in_band).count();
            c > 0 && c < k
        });
        if small {
            assert_eq!(estimate(v, "count", g)["type"], "suppressed");
            continue;
        }
        assert_eq!(
            estimate(v, "count", g)["value"].as_i64(),
            Some(bp.len() as i64)
        );
        let m = estimate(v, "mean", g)["value"].as_f64().unwrap();
        assert!(
            rel_close(m, mean(&bp), 1e-9),
            "mean {g:?}: {m} vs {}",
            mean(&bp)
        );
        let var = comoment(&bp, &bp) / (bp.len() as f64 - 1.0);
        let got = estimate(v, "variance", g)["value"].as_f64().unwrap();
        assert!(rel_close(got, var, 1e-9), "variance {g:?}: {got} vs {var}");
    }
    // A DP value lies within 6 standard errors of the exact one.
    let within = |job: &serde_json::Value, name: &str, want: f64| {
        let e = estimates(job)
            .iter()
            .find(|e| e["name"] == name && e["group"].is_null())
            .unwrap_or_else(|| panic!("no {name}: {job}"));
        let got = e["value"]["value"].as_f64().unwrap();
        let se = e["standard_error"].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 6.0 * se,
            "{name}: {got} vs {want} (standard error {se})"
        );
    };
    // Correlation of age and BP (DP).
    let age: Vec<f64> = data.iter().map(|r| r[0]).collect();
    let bp: Vec<f64> = data.iter().map(|r| r[1]).collect();
    let chol: Vec<f64> = data.iter().map(|r| r[2]).collect();
    let r = comoment(&age, &bp) / (comoment(&age, &age) * comoment(&bp, &bp)).sqrt();
    within(job("correlation"), "correlation", r);
    // Regression of cholesterol on age and BP (DP): centred normal equations, Cramer's rule.
    let (saa, sab, sbb) = (
        comoment(&age, &age),
        comoment(&age, &bp),
        comoment(&bp, &bp),
    );
    let (say, sby) = (comoment(&age, &chol), comoment(&bp, &chol));
    let det = saa * sbb - sab * sab;
    let b_age = (say * sbb - sab * sby) / det;
    let b_bp = (saa * sby - sab * say) / det;
    let intercept = mean(&chol) - b_age * mean(&age) - b_bp * mean(&bp);
    let reg = job("linear-regression");
    for (name, want) in [
        ("intercept", intercept),
        ("beta[age]", b_age),
        ("beta[systolic_bp]", b_bp),
    ] {
        within(reg, name, want);
    }
    // DP count of diabetics: within 6σ of the total noise.
    let c = job("count");
    let exact = data.iter().filter(|r| r[3] == 1.0).count() as f64;
    let got = estimate(c, "count", None)["value"].as_f64().unwrap();
    let sigma = c["result"]["privacy"]["noise"][0]["sigma_total"]
        .as_f64()
        .unwrap();
    assert!(
        (got - exact).abs() <= 6.0 * sigma,
        "DP count {got} vs {exact} (σ = {sigma})"
    );
    assert_eq!(c["result"]["privacy"]["mode"], "dp");
    // DP median: the released bin's exact cumulative counts around q·N within
    // 6σ·√bins·(1 + q).
    let q = job("quantiles");
    let edges: Vec<i64> = serde_json::from_value(q["spec"]["analysis"]["edges"].clone()).unwrap();
    let bin = estimate(q, "quantile 0.5", None);
    assert_eq!(bin["type"], "bin");
    let b = bin["index"].as_u64().unwrap() as usize;
    let bins = edges.len() - 1;
    let below = |e: i64| bp.iter().filter(|&&x| x < e as f64).count() as f64;
    let through = if b + 1 == bins {
        bp.len() as f64
    } else {
        below(edges[b + 1])
    };
    let before = below(edges[b]);
    let sigma = q["result"]["privacy"]["noise"][0]["sigma_total"]
        .as_f64()
        .unwrap();
    let slack = 6.0 * sigma * (bins as f64).sqrt() * 1.5;
    let target = 0.5 * bp.len() as f64;
    assert!(
        through >= target - slack && before <= target + slack,
        "median bin {b}: exact cumulative {before}..{through}, target {target}, slack {slack}"
    );
    // The exact minimum was refused before it ran.
    let m = job("min");
    assert!(m["result"].is_null());
    assert!(
        m["refused"]
            .as_str()
            .unwrap()
            .contains("one person's value"),
        "{m}"
    );
}

fn parley(args: &[&std::ffi::OsStr]) -> (bool, String) {
    parley_tests::run(&parley_bin(), args)
}

/// What an auditor does after the demo: every node's exported log verifies with
/// `parley audit verify`; one altered entry fails; a tail truncated and re-signed with the
/// node's own key passes alone but fails against the tree head a peer holds.
fn audit_logs_verify_and_tampering_is_detected(dir: &Path) {
    let hospitals = ["hospital-a", "hospital-b", "hospital-c"];
    for h in hospitals {
        let log = dir.join(h).join("audit.json");
        let (ok, out) = parley(&["audit".as_ref(), "verify".as_ref(), log.as_os_str()]);
        assert!(ok && out.contains("verify under"), "{h}: {out}");
    }
    let log = dir.join("hospital-b").join("audit.json");
    let export: parley::store::audit::AuditExport =
        serde_json::from_slice(&std::fs::read(&log).unwrap()).unwrap();

    // One entry altered.
    let mut altered = serde_json::to_value(&export).unwrap();
    altered["entries"][1]["time"] = serde_json::json!(1);
    let bad = dir.join("altered.json");
    std::fs::write(&bad, serde_json::to_vec(&altered).unwrap()).unwrap();
    let (ok, out) = parley(&["audit".as_ref(), "verify".as_ref(), bad.as_os_str()]);
    assert!(!ok && out.contains("INVALID"), "{out}");

    // Truncated and re-signed by hospital-b's own identity key.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = parley::config::NodeConfig::load(&dir.join("hospital-b").join("node.toml")).unwrap();
    let keys = rt.block_on(parley::node::NodeKeys::open(&cfg)).unwrap();
    let mut cut = export.clone();
    cut.entries.truncate(3);
    let leaves: Vec<Vec<u8>> = cut.entries.iter().map(|e| e.leaf()).collect();
    cut.head.head.size = 3;
    cut.head.head.root =
        parley_attestation::hexbytes::HexBytes(parley::store::audit::root_of(&leaves));
    let sig = rt
        .block_on(keys.identity.sign(&cut.head.head.to_be_signed()))
        .unwrap();
    cut.head.signature = parley_attestation::hexbytes::HexBytes(sig.0);
    drop(keys);
    let cut_path = dir.join("truncated.json");
    std::fs::write(&cut_path, serde_json::to_vec(&cut).unwrap()).unwrap();
    let (ok, out) = parley(&["audit".as_ref(), "verify".as_ref(), cut_path.as_os_str()]);
    assert!(ok, "a re-signed truncated log is self-consistent: {out}");
    // hospital-c is stopped: the checkpoint comes from its store.
    let c_cfg = dir.join("hospital-c").join("node.toml");
    let (ok, cp) = parley(&[
        "audit".as_ref(),
        "checkpoint".as_ref(),
        "--config".as_ref(),
        c_cfg.as_os_str(),
        "--of".as_ref(),
        "hospital-b".as_ref(),
    ]);
    assert!(ok, "{cp}");
    let cp_path = dir.join("checkpoint.json");
    std::fs::write(&cp_path, cp).unwrap();
    let (ok, out) = parley(&[
        "audit".as_ref(),
        "verify".as_ref(),
        cut_path.as_os_str(),
        "--checkpoint".as_ref(),
        cp_path.as_os_str(),
    ]);
    assert!(!ok && out.contains("truncated"), "{out}");
    let (ok, out) = parley(&[
        "audit".as_ref(),
        "verify".as_ref(),
        log.as_os_str(),
        "--checkpoint".as_ref(),
        cp_path.as_os_str(),
    ]);
    assert!(ok, "the untouched log extends the peer-held head: {out}");
}

#[test]
fn ctrl_c_stops_every_node_the_demo_started() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fed");
    // A large data set keeps the demo busy long enough to interrupt it mid-run.
    let mut child = Command::new(parley_bin())
        .args(["demo", "--rows", "200000", "--dir"])
        .arg(&dir)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !["hospital-a", "hospital-b", "hospital-c"]
        .iter()
        .all(|h| Path::new(&dir.join(h).join("admin.sock")).exists())
    {
        assert!(Instant::now() < deadline, "nodes never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the demo ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_mentioning(dir.to_str().unwrap()).len(),
        4,
        "demo plus three nodes"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "an interrupted demo must not report success"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(dir.to_str().unwrap()).is_empty() {
        assert!(Instant::now() < deadline, "node processes survived Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn demo_cheat_aborts_with_the_failed_check_named_and_no_output() {
    for (kind, check) in [
        (
            "additive-attack",
            "multiplication check (Chida et al.) failed",
        ),
        ("wrong-share", "consistency check failed"),
        ("inconsistent-prss-key", "consistency check failed"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let out = Command::new(parley_tests::parley_cheat_bin())
            .args(["demo", "--rows", "300", "--cheat"])
            .arg(format!("hospital-b:{kind}"))
            .arg("--dir")
            .arg(tmp.path().join("fed"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind}: the cheat was not caught:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for h in ["hospital-a", "hospital-b", "hospital-c"] {
            assert!(
                stdout.contains(&format!("{h}  aborted, no output: ")),
                "{kind}: {stdout}"
            );
        }
        assert!(stdout.contains(check), "{kind}: {stdout}");
        assert!(!stdout.contains("DELIVERED"), "{kind}: {stdout}");
    }
}

#[test]
fn a_build_without_sim_cheat_refuses_to_cheat() {
    let out = Command::new(parley_bin())
        .args(["demo", "--cheat", "hospital-b:additive-attack"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sim-cheat feature"));
}
