//! The study `parley demo` runs across the three hospitals after its first job: mean and
//! variance of systolic BP per age band, exact from the view every hospital declares (each
//! hospital suppresses a band that would isolate fewer than `min_k` of its patients); the
//! correlation of age and BP, a regression of cholesterol on age and BP, a median of BP and
//! a count of diabetics, all with DP and their standard errors; and an exact minimum the
//! privacy rule refuses.
//!
//! [`run_on_nodes`] runs it **through the node service**: each job is proposed to every
//! node as an `analytics` job, checked by each node against its own release policy and
//! budget, approved with its signature (reserving ρ), and computed between the nodes over
//! their attested sessions, each adding noise from its own pool. [`run`] is the same study
//! with all parties in memory (tests and benchmarks).

use std::collections::BTreeMap;

use anyhow::Context;
use parley_enclave::analytics::spec::{
    Analysis, AnalyticsSpec, Bounds, Filter, GroupBy, KindName, Neighbouring, Privacy,
    SecurityModel,
};
use parley_enclave::analytics::{Plan, Release, ReleasePolicy, Table, View, run_in_memory};
use parley_enclave::decimal::Decimal;
use parley_enclave::dp::budget::PrivacyBudget;
use parley_enclave::dp::noise::NoisePool;
use parley_enclave::program::Recipients;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;

use crate::store::data::Dataset;

/// k of the age-band table.
pub const K_ANONYMITY: u64 = 10;
/// Age bands.
pub const AGE_BANDS: [i64; 6] = [0, 30, 45, 60, 75, 121];
/// Each hospital's zCDP budget for the patients dataset.
pub const BUDGET_RHO: &str = "2";

/// One job of the study and its result.
#[derive(Debug, Clone, Serialize)]
pub struct StudyJob {
    /// What it answers.
    pub title: String,
    /// The spec every hospital approved.
    pub spec: AnalyticsSpec,
    /// The result (with its privacy parameters): an `AnalyticsResult` as JSON.
    pub result: Option<serde_json::Value>,
    /// Why it was refused, if it was.
    pub refused: Option<String>,
    /// For exact real-valued results: the largest relative error against an f64 computation
    /// from the pooled rows (the demo's check only; the nodes never see pooled rows).
    pub max_relative_error_vs_f64: Option<f64>,
}

/// The study's output.
#[derive(Debug, Clone, Serialize)]
pub struct Study {
    /// The release policy each hospital applies to its patients dataset.
    pub policy: ReleasePolicy,
    /// The jobs, in order.
    pub jobs: Vec<StudyJob>,
    /// Each hospital's remaining budget after the study.
    pub budget_left: BTreeMap<String, Decimal>,
}

/// The hospitals' release policy for the patients dataset, declaring `max_rows` rows: exact
/// views of the count, mean and variance of systolic BP and of cholesterol per age band
/// (and of age over the whole dataset); every other kind of the study only with DP; min,
/// max and quantiles never exactly.
pub fn policy(max_rows: u64) -> ReleasePolicy {
    let mut kinds = BTreeMap::new();
    for k in [
        KindName::Count,
        KindName::Mean,
        KindName::Variance,
        KindName::Correlation,
        KindName::Covariance,
        KindName::LinearRegression,
        KindName::Histogram,
        KindName::Quantiles,
        KindName::Min,
        KindName::Max,
    ] {
        kinds.insert(k, Release::Dp);
    }
    ReleasePolicy {
        dataset: "patients".into(),
        max_rows,
        kinds,
        default: Release::Refused,
        min_k: Some(K_ANONYMITY),
        views: ["systolic_bp", "cholesterol", "age"]
            .into_iter()
            .map(|c| View {
                kinds: vec![KindName::Count, KindName::Mean, KindName::Variance],
                column: Some(c.into()),
                // Age is summed over the whole dataset only.
                partition: (c != "age")
                    .then(|| GroupBy {
                        column: "age".into(),
                        edges: AGE_BANDS.to_vec(),
                    })
                    .into_iter()
                    .collect(),
            })
            .collect(),
        disjoint: false,
        semi_honest: false,
        max_rho_per_job: Some(Decimal::ONE),
    }
}

fn dec(s: &str) -> anyhow::Result<Decimal> {
    s.parse().map_err(|e| anyhow::anyhow!("{e}"))
}

fn spec(analysis: Analysis, max_rows: u64, privacy: Privacy, k: Option<u64>) -> AnalyticsSpec {
    AnalyticsSpec {
        analysis,
        bounds: [
            ("age", (0, 120)),
            ("systolic_bp", (60, 260)),
            ("cholesterol", (80, 500)),
        ]
        .into_iter()
        .map(|(c, (min, max))| (c.to_owned(), Bounds { min, max }))
        .collect(),
        max_rows,
        privacy,
        neighbouring: Neighbouring::AddRemoveOne,
        k_anonymity: k,
        recipients: Recipients::All,
        security: SecurityModel::Malicious,
    }
}

/// The study's jobs for hospitals of at most `max_rows` rows each.
pub fn jobs(max_rows: u64) -> anyhow::Result<Vec<(String, AnalyticsSpec)>> {
    let dp = Privacy::Dp {
        rho: dec("0.1")?,
        delta: dec("0.000001")?,
    };
    let bp_edges: Vec<i64> = (0..=40).map(|i| 60 + 5 * i).collect();
    Ok(vec![
        (
            "mean and variance of systolic BP per age band (exact, the privacy rule)".into(),
            spec(
                Analysis::Variance {
                    column: "systolic_bp".into(),
                    filter: None,
                    group_by: Some(GroupBy {
                        column: "age".into(),
                        edges: AGE_BANDS.to_vec(),
                    }),
                },
                max_rows,
                Privacy::Exact,
                Some(K_ANONYMITY),
            ),
        ),
        (
            "correlation of age and systolic BP (DP)".into(),
            spec(
                Analysis::Correlation {
                    x: "age".into(),
                    y: "systolic_bp".into(),
                    filter: None,
                },
                max_rows,
                dp,
                None,
            ),
        ),
        (
            "regression of cholesterol on age and systolic BP (DP sufficient statistics)".into(),
            spec(
                Analysis::LinearRegression {
                    response: "cholesterol".into(),
                    predictors: vec!["age".into(), "systolic_bp".into()],
                    filter: None,
                },
                max_rows,
                dp,
                None,
            ),
        ),
        (
            "median systolic BP (DP, 5 mmHg bins)".into(),
            spec(
                Analysis::Quantiles {
                    column: "systolic_bp".into(),
                    edges: bp_edges.clone(),
                    quantiles: vec![dec("0.5")?],
                    filter: None,
                },
                max_rows,
                dp,
                None,
            ),
        ),
        (
            "number of diabetics (DP)".into(),
            spec(
                Analysis::Count {
                    filter: Some(Filter {
                        column: "diabetic".into(),
                        equals: 1,
                    }),
                    group_by: None,
                },
                max_rows,
                dp,
                None,
            ),
        ),
        (
            "exact minimum systolic BP (must be refused)".into(),
            spec(
                Analysis::Min {
                    column: "systolic_bp".into(),
                    edges: bp_edges,
                    min_count: 1,
                    filter: None,
                },
                max_rows,
                Privacy::Exact,
                None,
            ),
        ),
    ])
}

/// Runs the study over the hospitals' datasets (in party order).
pub fn run(hospitals: &[(String, Dataset)], seed: u64) -> anyhow::Result<Study> {
    let tables: Vec<Table> = hospitals
        .iter()
        .map(|(_, d)| {
            Table::new(
                d.schema
                    .columns
                    .iter()
                    .map(|c| c.name.clone())
                    .zip(d.columns.iter().cloned()),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let max_rows = tables.iter().map(Table::rows).max().unwrap_or(1).max(1) as u64;
    let n = hospitals.len();
    let t = (n - 1) / 2;
    let pol = policy(max_rows);
    let mut budgets: Vec<PrivacyBudget> = hospitals
        .iter()
        .map(|(name, _)| Ok(PrivacyBudget::new(name.clone(), dec(BUDGET_RHO)?)))
        .collect::<anyhow::Result<_>>()?;
    // Each node's noise pool from its own CSPRNG (seeded here: the demo is reproducible).
    let mut pools: Vec<NoisePool> = (0..n)
        .map(|i| NoisePool::new(ChaCha20Rng::seed_from_u64(seed ^ (0x6e6f_6973 + i as u64))))
        .collect();
    let policies: Vec<&ReleasePolicy> = (0..n).map(|_| &pol).collect();
    let mut done = Vec::new();
    for (j, (title, spec)) in jobs(max_rows)?.into_iter().enumerate() {
        let job_id = format!("study-{j}");
        let plan = match Plan::new(&spec, n, t, &policies) {
            Ok(p) => p,
            Err(e) => {
                done.push(StudyJob {
                    title,
                    spec,
                    result: None,
                    refused: Some(e.to_string()),
                    max_relative_error_vs_f64: None,
                });
                continue;
            }
        };
        // Approval: every hospital reserves the job's ρ on its budget...
        for b in &mut budgets {
            plan.reserve(b, &job_id)
                .with_context(|| format!("{title}: budget"))?;
        }
        let result = run_in_memory(&plan, &tables, &mut pools, seed.wrapping_add(j as u64))
            .with_context(|| format!("{title}: the job aborted"))?;
        // ...and spends it before the result is delivered.
        for b in &mut budgets {
            plan.confirm_spend(b, &job_id)
                .with_context(|| format!("{title}: budget"))?;
        }
        let result = serde_json::to_value(&result)?;
        let err = (result["privacy"]["mode"] == "exact")
            .then(|| relative_error(&result, &spec, &tables))
            .flatten();
        done.push(StudyJob {
            title,
            spec,
            result: Some(result),
            refused: None,
            max_relative_error_vs_f64: err,
        });
    }
    Ok(Study {
        policy: pol,
        jobs: done,
        budget_left: hospitals
            .iter()
            .zip(&budgets)
            .map(|((name, _), b)| (name.clone(), b.available()))
            .collect(),
    })
}

/// The largest relative error of the result's real values (JSON of an `AnalyticsResult`)
/// against the f64 reference from the pooled rows (the demo's check only).
fn relative_error(r: &serde_json::Value, spec: &AnalyticsSpec, tables: &[Table]) -> Option<f64> {
    let reference = parley_enclave::analytics::reference::reference(spec, tables).ok()?;
    let mut worst: Option<f64> = None;
    for e in r["estimates"].as_array()? {
        if e["value"]["type"] != "real" {
            continue;
        }
        let group: Option<[i64; 2]> = serde_json::from_value(e["group"].clone()).ok()?;
        let (Some(got), Some(want)) = (
            e["value"]["value"].as_f64(),
            reference
                .iter()
                .find(|w| w.name == e["name"].as_str().unwrap_or_default() && w.group == group)
                .and_then(|w| w.value.as_f64()),
        ) else {
            continue;
        };
        let rel = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
        worst = Some(worst.map_or(rel, |w: f64| w.max(rel)));
    }
    worst
}

/// Runs the study through the nodes' service: a proposal per job from `nodes[0]`, every
/// node's signed approval (or refusal), the computation between the nodes, the result each
/// recipient holds. `max_rows` bounds each hospital's rows.
pub async fn run_on_nodes(
    nodes: &[crate::dev::launcher::NodeProcess],
    max_rows: u64,
    timeout: std::time::Duration,
    check: &[(String, Dataset)],
) -> anyhow::Result<Study> {
    // The demo's own check: each hospital's CSV, pooled only here, never in a node.
    let tables: Vec<Table> = check
        .iter()
        .map(|(_, d)| crate::jobs::analytics::table(d).map_err(|e| anyhow::anyhow!(e)))
        .collect::<anyhow::Result<_>>()?;
    use crate::admin::{AdminRequest, AdminResponse};
    use crate::jobs::job::{JobKind, JobOutput, JobState, JobView};
    let proposer = nodes.first().context("no nodes")?;
    let mut done = Vec::new();
    for (title, spec) in jobs(max_rows)? {
        let req = AdminRequest::Submit {
            kind: JobKind::Analytics,
            dataset: "patients".into(),
            columns: Vec::new(),
            security: crate::jobs::job::SecurityModel::Malicious,
            bench: None,
            recipients: Vec::new(),
            analytics: Some(Box::new(spec.clone())),
        };
        let id = match proposer.request(&req).await? {
            AdminResponse::Submitted { id } => id,
            AdminResponse::Error { message } => {
                done.push(StudyJob {
                    title,
                    spec,
                    result: None,
                    refused: Some(message),
                    max_relative_error_vs_f64: None,
                });
                continue;
            }
            other => anyhow::bail!(other.unexpected()),
        };
        let views: Vec<JobView> = crate::dev::launcher::wait_job(
            nodes,
            id,
            crate::dev::launcher::JobReach::Proposer,
            timeout,
            std::time::Duration::from_secs(10),
        )
        .await
        .with_context(|| title.clone())?
        .into_iter()
        .flatten()
        .collect();
        let (result, refused) = match &views[0].state {
            JobState::Done => {
                let results: Vec<Option<&JobOutput>> =
                    views.iter().map(|v| v.result.as_ref()).collect();
                anyhow::ensure!(
                    results.windows(2).all(|w| w[0] == w[1]),
                    "{title}: the nodes disagree on the result"
                );
                match views[0].result.clone() {
                    Some(JobOutput::Analytics(v)) => (Some(v), None),
                    _ => anyhow::bail!("{title}: the job delivered no analytics output"),
                }
            }
            JobState::Refused(why) => (None, Some(why.clone())),
            other => anyhow::bail!("{title}: job {id} ended {other} on {}", proposer.name),
        };
        let err = result
            .as_ref()
            .filter(|r| r["privacy"]["mode"] == "exact")
            .and_then(|r| relative_error(r, &spec, &tables));
        done.push(StudyJob {
            title,
            spec,
            result,
            refused,
            max_relative_error_vs_f64: err,
        });
    }
    let mut budget_left = BTreeMap::new();
    for n in nodes {
        let st = n.status().await?;
        let left = st
            .budgets_left
            .get("patients")
            .context("a node without a budget for patients")?;
        budget_left.insert(st.party.clone(), dec(left)?);
    }
    Ok(Study {
        policy: policy(max_rows),
        jobs: done,
        budget_left,
    })
}

fn show(v: &serde_json::Value) -> String {
    match v["type"].as_str().unwrap_or_default() {
        "integer" => v["value"].to_string(),
        "real" => v["value"]
            .as_f64()
            .map_or_else(|| v["value"].to_string(), |x| format!("{x:.6}")),
        "bin" => format!("[{}, {})", v["lo"], v["hi"]),
        "suppressed" => "suppressed by the rule".to_owned(),
        "undefined" => format!("undefined ({})", v["reason"].as_str().unwrap_or_default()),
        other => format!("{other}?"),
    }
}

/// Prints the study.
pub fn print(study: &Study) {
    println!(
        "\nStudy: the analytics catalogue as jobs of the node service (proposed, approved by each hospital's signature under its release policy and budget, computed between the nodes)"
    );
    println!(
        "release policy of every hospital's patients dataset: exact views of the count, mean and variance of systolic BP and cholesterol per age band and of age (min_k = {K_ANONYMITY}); DP for the other kinds; ρ ≤ 1 per job"
    );
    for j in &study.jobs {
        println!("\n  {}", j.title);
        if let Some(why) = &j.refused {
            println!("    REFUSED before it ran: {why}");
            continue;
        }
        let Some(r) = &j.result else { continue };
        for e in r["estimates"].as_array().into_iter().flatten() {
            let group = e["group"]
                .as_array()
                .and_then(|g| Some(format!("age {}–{}: ", g.first()?, g.get(1)?.as_i64()? - 1)))
                .unwrap_or_default();
            let se = e["standard_error"]
                .as_f64()
                .map(|se| format!("   ± {:.3} (95 %; standard error {se:.3})", 1.96 * se))
                .unwrap_or_default();
            println!(
                "    {group}{:<22} {}{se}",
                e["name"].as_str().unwrap_or_default(),
                show(&e["value"])
            );
        }
        let p = &r["privacy"];
        println!(
            "    admitted by {}",
            p["rule"].as_str().unwrap_or("an unnamed rule")
        );
        match p["mode"].as_str() {
            Some("dp") => {
                println!(
                    "    privacy: ρ = {} zCDP (ε = {:.3}, δ = {}; with the 10σ tails δ ≤ {:.2e}), add/remove-one neighbours, noise from each party's pool, promise from the n − t = 2 honest parties",
                    p["rho"].as_str().unwrap_or_default(),
                    p["epsilon"].as_f64().unwrap_or(f64::NAN),
                    p["delta"].as_str().unwrap_or_default(),
                    p["delta_total"].as_f64().unwrap_or(f64::NAN),
                );
                for s in p["noise"].as_array().into_iter().flatten() {
                    println!(
                        "      noise on {}: sensitivity {}, ρ share {}, σ per party {}, |z| ≤ {}, σ of the total {:.3}",
                        s["statistic"].as_str().unwrap_or_default(),
                        s["sensitivity"],
                        s["rho"].as_str().unwrap_or_default(),
                        s["sigma_text"].as_str().unwrap_or_default(),
                        s["bound"],
                        s["sigma_total"].as_f64().unwrap_or(f64::NAN)
                    );
                }
            }
            _ => println!(
                "    accuracy: {}",
                r["error_bound"].as_str().unwrap_or("integers, exact")
            ),
        }
        if let Some(e) = j.max_relative_error_vs_f64 {
            println!(
                "    largest relative error against an f64 computation from the pooled rows (demo check only): {e:.1e}"
            );
        }
        println!("    field: {}", r["field"].as_str().unwrap_or_default());
    }
    let left: Vec<String> = study
        .budget_left
        .iter()
        .map(|(h, r)| format!("{h} ρ = {r}"))
        .collect();
    println!(
        "\n  budgets left (of ρ = {BUDGET_RHO} each, reserved at approval, spent before delivery): {}",
        left.join(", ")
    );
}
