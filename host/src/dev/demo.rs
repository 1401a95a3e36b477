//! `parley demo`: a three-hospital federation in simulation mode, in one command.
//!
//! It creates a throw-away federation (simulation root, identity keys, manifest, policies,
//! node configs, sample data) under a temporary directory or `--dir`, starts three separate
//! `parley node` processes on 127.0.0.1, proposes a `summary-stats` job over `systolic_bp`
//! and `cholesterol`, and prints each statistic beside a plaintext reference that only the
//! demo computes (as a check), the verdicts each node reached about each peer, the frames
//! and bytes each node sent to each peer, and the wall time. It stops every node it started,
//! whatever happens (also on Ctrl-C), and exits non-zero if any result disagrees with the
//! reference or any node fails.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;

use crate::admin::{AdminRequest, AdminResponse, NodeStatus};
use crate::dev::launcher::{JobReach, NodeProcess, all_connected, wait_job, wait_until};
use crate::dev::setup::{Federation, Plan, free_ports};
use crate::jobs::job::{ColumnStats, JobKind, JobState, JobView};
use crate::store::data::{Moments, SAMPLE_SEED, patients_schema, sample_patients};

pub const HOSPITALS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];
pub const DEMO_COLUMNS: [&str; 2] = ["systolic_bp", "cholesterol"];

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where to create the federation (default: a new temporary directory, kept afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Sample rows per hospital.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Also write each hospital's sample data as CSV and the results as JSON here.
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Make one node deviate, e.g. `hospital-b:corrupt-share` (sim-cheat builds only).
    #[arg(long, value_name = "NODE:KIND")]
    pub cheat: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(Duration::from_millis(120));
            Progress(Some(pb))
        } else {
            Progress(None)
        }
    }
    fn step(&self, msg: &str) {
        match &self.0 {
            Some(pb) => pb.set_message(msg.to_owned()),
            None => tracing::info!(step = msg, "demo"),
        }
    }
    fn done(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let exe = std::env::current_exe().context("cannot find the parley executable")?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => tempfile::Builder::new()
            .prefix("parley-demo-")
            .tempdir()?
            .keep(),
    };
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    let cheat = parse_cheat(args.cheat.as_deref())?;
    let progress = Progress::new();

    progress.step("creating the federation and sample data");
    let ports = free_ports(HOSPITALS.len())?;
    let plan = Plan {
        dir: dir.clone(),
        federation: "parley-demo".into(),
        parties: HOSPITALS
            .iter()
            .zip(&ports)
            .map(|(n, p)| ((*n).to_owned(), format!("127.0.0.1:{p}")))
            .collect(),
        threshold: 1,
        rows: args.rows,
        measurement: crate::util::measure_file(&exe)
            .context("cannot measure the parley executable")?,
    };
    let fed = Federation::create(&plan).await?;
    if let Some((node, kind)) = &cheat {
        let k = kind.clone();
        fed.edit_config(node, move |c| c.cheat = Some(k))?;
    }
    let setup_time = started.elapsed();

    progress.step("starting three parley node processes");
    let mut nodes = Vec::new();
    for p in &fed.parties {
        nodes.push(NodeProcess::spawn(
            &exe,
            &p.name,
            &p.config,
            &p.dir,
            &p.dir.join("node.log"),
        )?);
    }
    let outcome = tokio::select! {
        r = drive(&mut nodes, &fed, &args, &progress, cheat.is_some()) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    progress.step("stopping the nodes");
    for n in nodes.iter_mut() {
        n.stop(Duration::from_secs(5)).await;
    }
    let audits = if outcome.is_ok() {
        progress.step("exporting and verifying every node's audit log");
        Some(audit_logs(&fed).await)
    } else {
        None
    };
    progress.done();
    let report = match outcome {
        Ok(mut r) => {
            r.audits = audits.unwrap_or_default();
            r
        }
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            eprintln!(
                "node logs: {}",
                fed.parties
                    .iter()
                    .map(|p| p.dir.join("node.log").display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut ok = print_report(&report, &fed, &args, setup_time, started.elapsed());
    let study = match &report.study {
        None => None,
        Some(Ok(s)) => {
            crate::dev::study::print(s);
            println!(
                "\n  study wall time: {:.2} s for {} jobs",
                report.study_time.as_secs_f64(),
                s.jobs.len()
            );
            Some(s)
        }
        Some(Err(e)) => {
            ok = false;
            println!("\nstudy FAILED: {e}");
            None
        }
    };
    if let Some(export) = &args.export {
        export_results(export, &report, &fed, args.rows, study)?;
        println!(
            "\nexported: {} (CSV per hospital, results.json)",
            export.display()
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn parse_cheat(s: Option<&str>) -> anyhow::Result<Option<(String, String)>> {
    let Some(s) = s else { return Ok(None) };
    if !cfg!(feature = "sim-cheat") {
        bail!(
            "this build has no sim-cheat feature; run `cargo run -p parley --features sim-cheat -- demo --cheat {s}`"
        );
    }
    let (node, kind) = s
        .split_once(':')
        .context("--cheat takes NODE:KIND, e.g. hospital-b:additive-attack")?;
    if !HOSPITALS.contains(&node) {
        bail!(
            "--cheat: unknown node {node:?}; nodes are {}",
            HOSPITALS.join(", ")
        );
    }
    #[cfg(feature = "sim-cheat")]
    crate::dev::cheat::parse(Some(kind)).map_err(|e| anyhow::anyhow!("--cheat: {e}"))?;
    Ok(Some((node.to_owned(), kind.to_owned())))
}

struct Report {
    ready_time: Duration,
    job_time: Duration,
    views: Vec<JobView>,
    statuses: Vec<NodeStatus>,
    reference: BTreeMap<String, Moments>,
    cheating: bool,
    /// The study's jobs through the node service (not when a node cheats), or why it failed.
    study: Option<Result<crate::dev::study::Study, String>>,
    study_time: Duration,
    /// Per node: its exported log and the verification against a peer-held tree head.
    audits: Vec<(String, PathBuf, Result<String, String>)>,
}

/// Export each (stopped) node's audit log next to its store and verify it offline against
/// the tree head the next party holds of it — what an auditor does with `parley audit`.
async fn audit_logs(fed: &Federation) -> Vec<(String, PathBuf, Result<String, String>)> {
    let mut out = Vec::new();
    for (i, p) in fed.parties.iter().enumerate() {
        let witness = &fed.parties[(i + 1) % fed.parties.len()];
        let path = p.dir.join("audit.json");
        let r = async {
            let cfg = crate::config::NodeConfig::load(&p.config)?;
            let export = crate::node::NodeKeys::open_with(&cfg, false)
                .await?
                .export_audit()
                .await?;
            std::fs::write(&path, serde_json::to_vec_pretty(&export)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            let wcfg = crate::config::NodeConfig::load(&witness.config)?;
            let wstore = std::sync::Arc::new(crate::store::Store::open(&wcfg.store_path())?);
            let held = crate::store::audit::Journal::open(wstore, &wcfg.party)?.held_head(&p.name);
            match crate::store::audit::verify_export(&export, &export.identity_key, held.as_ref()) {
                crate::store::audit::ExportCheck::Valid { size } => Ok(format!(
                    "{size} entries verify{}",
                    match &held {
                        Some(h) => format!(
                            ", consistent with the head of size {} {} holds",
                            h.head.size, witness.name
                        ),
                        None => String::new(),
                    }
                )),
                crate::store::audit::ExportCheck::Invalid(why) => anyhow::bail!("INVALID: {why}"),
            }
        }
        .await
        .map_err(|e: anyhow::Error| format!("{e:#}"));
        out.push((p.name.clone(), path, r));
    }
    out
}

async fn drive(
    nodes: &mut [NodeProcess],
    fed: &Federation,
    args: &DemoArgs,
    progress: &Progress,
    cheating: bool,
) -> anyhow::Result<Report> {
    let timeout = Duration::from_secs(args.timeout);
    let t0 = Instant::now();
    progress.step("waiting for attested sessions between all nodes");
    wait_until(
        nodes,
        timeout,
        "attested sessions between all nodes",
        all_connected,
    )
    .await?;
    let ready_time = t0.elapsed();

    // The demo's own plaintext reference, computed from the same sample data (a check only).
    progress.step("computing the plaintext reference (demo check only)");
    let mut reference = BTreeMap::new();
    for (i, _) in fed.parties.iter().enumerate() {
        let d = sample_patients(i as u64, args.rows);
        for c in DEMO_COLUMNS {
            let idx = patients_schema().column_index(c).context("demo column")?;
            let m = d.moments(idx).context("demo column")?;
            let e = reference
                .entry(c.to_owned())
                .or_insert_with(Moments::default);
            *e = e.add(&m);
        }
    }

    progress.step("proposing the job and computing");
    let t1 = Instant::now();
    let req = AdminRequest::Submit {
        kind: JobKind::SummaryStats,
        dataset: "patients".into(),
        columns: DEMO_COLUMNS.iter().map(|s| (*s).to_owned()).collect(),
        security: crate::jobs::job::SecurityModel::Malicious,
        bench: None,
        recipients: Vec::new(),
        analytics: None,
    };
    let id = match nodes[0].request(&req).await? {
        AdminResponse::Submitted { id } => id,
        AdminResponse::Error { message } => {
            bail!("{} refused the proposal: {message}", nodes[0].name)
        }
        other => bail!(other.unexpected()),
    };
    let views = wait_job(
        nodes,
        id,
        JobReach::Proposer,
        timeout,
        Duration::from_secs(10),
    )
    .await?;
    let views: Vec<JobView> = nodes
        .iter()
        .zip(views)
        .map(|(n, v)| {
            v.with_context(|| format!("job {id} ended before its proposal reached {}", n.name))
        })
        .collect::<anyhow::Result<_>>()?;
    let job_time = t1.elapsed();
    // The study: analytics jobs through the same service (not when a node cheats).
    let t2 = Instant::now();
    let study = if cheating {
        None
    } else {
        progress.step("running the study: analytics jobs proposed, approved and computed");
        Some(
            async {
                // The demo's check reads the same CSVs the nodes imported.
                let mut hospitals = Vec::new();
                for p in &fed.parties {
                    let d = crate::store::data::Dataset::load_csv(
                        "patients",
                        patients_schema(),
                        &p.data,
                    )
                    .with_context(|| format!("cannot read {}", p.data.display()))?;
                    hospitals.push((p.name.clone(), d));
                }
                crate::dev::study::run_on_nodes(nodes, args.rows as u64, timeout, &hospitals).await
            }
            .await
            .map_err(|e| format!("{e:#}")),
        )
    };
    let study_time = t2.elapsed();
    let mut statuses = Vec::new();
    for n in nodes.iter() {
        statuses.push(n.status().await?);
    }
    Ok(Report {
        ready_time,
        job_time,
        views,
        statuses,
        reference,
        cheating,
        study,
        study_time,
        audits: Vec::new(),
    })
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.6}"))
}

/// Print the report; returns whether every node's result equals the reference (or, when a
/// node cheats, whether every node aborted with nothing delivered).
fn print_report(
    r: &Report,
    fed: &Federation,
    args: &DemoArgs,
    setup: Duration,
    total: Duration,
) -> bool {
    let mut ok = true;
    println!("Parley demo: 3 hospitals, Shamir secret sharing (n = 3, t = 1) over GF(2^127 - 1)");
    println!(
        "simulation mode: simulated evidence, NO hardware protection; {} rows per hospital\n",
        args.rows
    );
    println!("Federation directory: {}", fed.dir.display());
    for p in &fed.parties {
        println!("  {:<11} data dir {}", p.name, p.dir.display());
    }

    println!("\nAttestation verdicts, each node about each peer, reached before any share moved");
    println!(
        "(gate 1: evidence in the peer's TLS certificate; gate 2: fresh evidence bound to the session,"
    );
    println!(" re-run when the job started):");
    for s in &r.statuses {
        for (peer, v) in &s.peers {
            for (gate, rec) in [(1, &v.verdict), (2, &v.gate2)] {
                match rec {
                    Some(rec) => {
                        let reasons: Vec<String> =
                            rec.verdict.reasons.iter().map(|x| x.code.clone()).collect();
                        println!(
                            "  {:<11} -> {:<11} gate {gate}: {:<15} {:<9} [{}]",
                            s.party,
                            peer,
                            rec.verdict.status.to_string(),
                            if rec.accepted { "accepted" } else { "REFUSED" },
                            reasons.join(", ")
                        );
                    }
                    None => println!("  {:<11} -> {:<11} gate {gate}: no verdict", s.party, peer),
                }
            }
        }
    }

    if let Some(v) = r.views.first() {
        println!(
            "\nConsent: job {} (hash {}) proposed by {}; nothing was shared before every party's signed approval of that hash:",
            v.spec.id, v.hash, v.spec.proposer
        );
        println!(
            "  approved by {} (each operator's auto-approval rule for the demo; `parley job approve` otherwise)",
            v.approvals.join(", ")
        );
    }

    if r.cheating {
        println!(
            "\nA node was told to cheat ({}).",
            args.cheat.as_deref().unwrap_or("")
        );
        for (v, s) in r.views.iter().zip(&r.statuses) {
            let party = s.party.as_str();
            match &v.state {
                JobState::Aborted(reason) => println!("  {party:<11} aborted, no output: {reason}"),
                other => {
                    ok = false;
                    println!("  {party:<11} did NOT abort: {other}");
                }
            }
            if v.result.is_some() {
                ok = false;
                println!("  {party:<11} DELIVERED AN OUTPUT");
            }
        }
    } else {
        println!("\nJoint statistics (only the totals were opened; rows never left their node):");
        println!(
            "  {:<12} {:<15} {:>22} {:>22}  match",
            "column", "statistic", "MPC result", "plaintext reference*"
        );
        let first = r.views.first();
        for v in &r.views {
            match &v.state {
                JobState::Done if v.result == first.and_then(|f| f.result.clone()) => {}
                JobState::Done => {
                    ok = false;
                    println!("  nodes disagree on the result!");
                }
                other => {
                    ok = false;
                    println!("  a node did not finish: {other}");
                }
            }
        }
        if let Some(result) = first
            .and_then(|f| f.result.as_ref())
            .and_then(|r| r.summary())
        {
            for c in result {
                let Some(m) = r.reference.get(&c.column) else {
                    continue;
                };
                let reference = ColumnStats::from_moments(&c.column, m);
                let rows = [
                    ("count", c.count.clone(), reference.count.clone()),
                    ("sum", c.sum.clone(), reference.sum.clone()),
                    (
                        "sum of squares",
                        c.sum_of_squares.clone(),
                        reference.sum_of_squares.clone(),
                    ),
                    ("mean", fmt_opt(c.mean), fmt_opt(reference.mean)),
                    ("variance", fmt_opt(c.variance), fmt_opt(reference.variance)),
                ];
                for (stat, got, want) in rows {
                    let same = got == want;
                    ok &= same;
                    println!(
                        "  {:<12} {:<15} {:>22} {:>22}  {}",
                        c.column,
                        stat,
                        got,
                        want,
                        if same { "yes" } else { "NO" }
                    );
                }
                ok &= c.mean == reference.mean && c.variance == reference.variance;
            }
        }
        println!(
            "  * computed by the demo from the sample data, as a check only; the nodes never see it."
        );
        println!(
            "  mean = Σx/n and sample variance = (nΣx² − (Σx)²)/(n(n−1)), exact rationals rounded once to f64."
        );
    }

    println!("\nTraffic each node sent to each peer (frames by type, bytes):");
    for s in &r.statuses {
        for (peer, c) in &s.counters {
            let t = c.sent_total();
            let by: Vec<String> = c
                .sent
                .iter()
                .map(|(k, v)| format!("{k} {}", v.frames))
                .collect();
            println!(
                "  {:<11} -> {:<11} {:>3} frames {:>7} bytes  ({})",
                s.party,
                peer,
                t.frames,
                t.bytes,
                by.join(", ")
            );
        }
    }
    println!(
        "\nAudit logs (exported after the nodes stopped; `parley audit verify FILE` re-checks them):"
    );
    for (party, path, res) in &r.audits {
        match res {
            Ok(m) => println!("  {party:<11} {}: {m}", path.display()),
            Err(e) => {
                ok = false;
                println!("  {party:<11} {}: {e}", path.display());
            }
        }
    }
    let compute: Vec<String> = r
        .views
        .iter()
        .filter_map(|v| v.compute_ms)
        .map(|m| format!("{m} ms"))
        .collect();
    println!(
        "\nWall time: {:.2} s total (setup and sample data {:.2} s, attested sessions {:.2} s, job {:.3} s; MPC per node {})",
        total.as_secs_f64(),
        setup.as_secs_f64(),
        r.ready_time.as_secs_f64(),
        r.job_time.as_secs_f64(),
        compute.join(", ")
    );
    println!("{}", if ok { "\nOK" } else { "\nFAILED" });
    ok
}

fn export_results(
    dir: &PathBuf,
    r: &Report,
    fed: &Federation,
    rows: usize,
    study: Option<&crate::dev::study::Study>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for p in &fed.parties {
        std::fs::copy(&p.data, dir.join(format!("{}.csv", p.name)))
            .with_context(|| format!("cannot copy {}", p.data.display()))?;
    }
    let result = r
        .views
        .first()
        .and_then(|v| v.result.as_ref())
        .and_then(|r| r.summary().cloned())
        .unwrap_or_default();
    let stats: serde_json::Map<String, serde_json::Value> = result
        .iter()
        .map(|c| {
            let int = |s: &str| {
                s.parse::<i64>()
                    .map(serde_json::Value::from)
                    .unwrap_or_else(|_| json!(s))
            };
            (
                c.column.clone(),
                json!({
                    "count": int(&c.count),
                    "sum": int(&c.sum),
                    "sum_of_squares": int(&c.sum_of_squares),
                    "mean": c.mean,
                    "variance": c.variance,
                }),
            )
        })
        .collect();
    let doc = json!({
        "federation": fed.manifest.federation,
        "manifest_hash": hex::encode(fed.manifest.hash()),
        "job": r.views.first().map(|v| v.spec.id.to_string()),
        "state": r.views.first().map(|v| &v.state),
        "hospitals": fed.parties.iter().map(|p| format!("{}.csv", p.name)).collect::<Vec<_>>(),
        "rows_per_hospital": rows,
        "sample_seed": format!("ChaCha20Rng::seed_from_u64({SAMPLE_SEED} + hospital index)"),
        "variance": "sample variance, n - 1 denominator",
        "rounding": "mean and variance are exact rationals rounded once to the nearest f64",
        "statistics": stats,
        "study": study,
        "study_check": "recompute from the CSVs: integers exactly, correlation and regression coefficients within 1e-3 relative of f64 (the divisions on shares are within 2^-60 relative + 2^-40), DP results within 6σ of the exact value (σ = sigma_total of the noised statistic; for a quantile bin: the exact cumulative counts around it within 6·σ·√bins·(1 + q) of q·N)",
    });
    std::fs::write(dir.join("results.json"), serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}
