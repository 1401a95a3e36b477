//! The analytics catalogue under DP and its refusals: DP results within 6σ of the exact
//! value at n = 3 and 5; the noise the MPC adds (opened noisy histogram minus the exact one)
//! against the exact convolution of the parties' truncated discrete Gaussians; k-anonymity
//! on noisy counts; release-policy, spec, budget and bit-budget refusals before anything
//! runs; a cheating party's out-of-range aggregates abort with the range check named.

use parley_enclave::analytics::spec::{
    Analysis, AnalyticsSpec, Bounds, Filter, GroupBy, Neighbouring, Privacy, SecurityModel,
    SpecError,
};
use parley_enclave::analytics::{
    AnalyticsError, LocalStats, Plan, PolicyError, Release, ReleasePolicy, Table, Value, View,
    local::local_stats, reference::reference, run_in_memory, run_stats,
};
use parley_enclave::decimal::Decimal;
use parley_enclave::dp::budget::PrivacyBudget;
use parley_enclave::dp::noise::NoisePool;
use parley_enclave::field::Field;
use parley_enclave::program::Recipients;
use parley_enclave::{CheckFailure, MpcError};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn dec(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

fn policy(default: Release) -> ReleasePolicy {
    ReleasePolicy {
        dataset: "patients".into(),
        max_rows: 1,
        kinds: BTreeMap::new(),
        default,
        min_k: None,
        views: Vec::new(),
        disjoint: false,
        semi_honest: false,
        max_rho_per_job: None,
    }
}

/// A policy that declares exactly the view `s` needs (min_k 1: the in-memory parties use
/// the spec's k as theirs).
fn exact_policy(s: &AnalyticsSpec) -> ReleasePolicy {
    let mut p = policy(Release::Dp);
    p.min_k = Some(1);
    p.views = vec![View::needed_by(s)];
    p
}

fn spec(analysis: Analysis, privacy: Privacy) -> AnalyticsSpec {
    AnalyticsSpec {
        analysis,
        bounds: [("age", (0, 120)), ("bp", (60, 260)), ("chol", (80, 500))]
            .into_iter()
            .map(|(k, (min, max))| (k.to_owned(), Bounds { min, max }))
            .collect(),
        max_rows: 2000,
        privacy,
        neighbouring: Neighbouring::AddRemoveOne,
        k_anonymity: None,
        recipients: Recipients::All,
        security: SecurityModel::Malicious,
    }
}

fn dp(rho: &str) -> Privacy {
    Privacy::Dp {
        rho: dec(rho),
        delta: dec("0.000001"),
    }
}

fn tables(n: usize, rows: usize, seed: u64) -> Vec<Table> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut cols: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for _ in 0..rows {
                let age = i64::from(rng.next_u32() % 90) + 18;
                let bp = 90 + age / 2 + i64::from(rng.next_u32() % 40);
                let chol = 120 + age + (bp - 120) / 3 + i64::from(rng.next_u32() % 60);
                let diab = i64::from(rng.next_u32() % 5 == 0);
                for (k, v) in [("age", age), ("bp", bp), ("chol", chol), ("diabetic", diab)] {
                    cols.entry(k.to_owned()).or_default().push(v);
                }
            }
            Table::new(cols).expect("table")
        })
        .collect()
}

fn pools(n: usize, seed: u64) -> Vec<NoisePool> {
    (0..n)
        .map(|i| NoisePool::new(ChaCha20Rng::seed_from_u64(seed * 31 + i as u64)))
        .collect()
}

fn bin_index(v: &Value) -> usize {
    match v {
        Value::Bin { index, .. } => *index,
        other => panic!("not a bin: {other:?}"),
    }
}

#[test]
fn dp_count_and_mean_are_within_six_sigma_at_n3_and_n5() {
    for (n, t) in [(3usize, 1usize), (5, 2)] {
        let data = tables(n, 200, 11 + n as u64);
        let s = spec(
            Analysis::Count {
                filter: Some(Filter {
                    column: "diabetic".into(),
                    equals: 1,
                }),
                group_by: None,
            },
            dp("0.5"),
        );
        let plan = Plan::new(&s, n, t, &[&policy(Release::Dp)]).expect("plan");
        let got = run_in_memory(&plan, &data, &mut pools(n, 1), 1).expect("runs");
        let want = reference(&s, &data).expect("ref");
        let sigma = plan.sigma_total(0);
        let (g, w) = (
            got.get("count", None)
                .and_then(Value::as_f64)
                .expect("count"),
            want[0].value.as_f64().expect("count"),
        );
        assert!(
            (g - w).abs() <= 6.0 * sigma,
            "n = {n}: {g} vs {w}, σ = {sigma}"
        );
        assert!(plan.privacy.epsilon.expect("ε") > 0.0);
        // Mean of bp per age band, DP on the sufficient statistics.
        let s = spec(
            Analysis::Mean {
                column: "bp".into(),
                filter: None,
                group_by: Some(GroupBy {
                    column: "age".into(),
                    edges: vec![0, 50, 200],
                }),
            },
            dp("1"),
        );
        let plan = Plan::new(&s, n, t, &[&policy(Release::Dp)]).expect("plan");
        let got = run_in_memory(&plan, &data, &mut pools(n, 2), 2).expect("runs");
        for w in reference(&s, &data).expect("ref") {
            let g = got
                .get("mean", w.group)
                .and_then(Value::as_f64)
                .expect("mean");
            // σ of the mean ≈ √(σ_S² + mean²·σ_n²)/count; 6 of those.
            let cnt = got
                .get("count", w.group)
                .and_then(Value::as_f64)
                .expect("n");
            let (sn, ss) = (plan.sigma_total(0), plan.sigma_total(1));
            let m = w.value.as_f64().expect("mean");
            let tol = 6.0 * (ss * ss + m * m * sn * sn).sqrt() / cnt;
            assert!(
                (g - m).abs() <= tol,
                "n = {n}: mean {g} vs {m} (tolerance {tol})"
            );
        }
    }
}

#[test]
fn dp_quantiles_min_max_come_from_the_noisy_histogram() {
    let edges: Vec<i64> = (0..=20).map(|i| 60 + 10 * i).collect();
    for (n, t) in [(3usize, 1usize), (5, 2)] {
        let data = tables(n, 150, 21 + n as u64);
        for analysis in [
            Analysis::Quantiles {
                column: "bp".into(),
                edges: edges.clone(),
                quantiles: vec![dec("0.5"), dec("0.9")],
                filter: None,
            },
            Analysis::Min {
                column: "bp".into(),
                edges: edges.clone(),
                min_count: 20,
                filter: None,
            },
            Analysis::Max {
                column: "bp".into(),
                edges: edges.clone(),
                min_count: 20,
                filter: None,
            },
        ] {
            let s = spec(analysis, dp("2"));
            let plan = Plan::new(&s, n, t, &[&policy(Release::Dp)]).expect("plan");
            let got = run_in_memory(&plan, &data, &mut pools(n, 3), 3).expect("runs");
            let sigma = plan.sigma_total(0);
            // The exact histogram, to judge the answer: the released bin's exact cumulative
            // count must be within 6σ·√bins of the target on both sides.
            let mut h = vec![0f64; edges.len() - 1];
            for tb in &data {
                for &v in tb.column("bp").expect("bp") {
                    h[parley_enclave::analytics::local::bin_of(&edges, v.clamp(60, 260))] += 1.0;
                }
            }
            let total: f64 = h.iter().sum();
            let slack = 6.0 * sigma * (h.len() as f64).sqrt();
            for w in reference(&s, &data).expect("ref") {
                let b = bin_index(got.get(&w.name, None).expect("answer"));
                let (order, target): (Vec<usize>, f64) = match w.name.as_str() {
                    "max" => ((0..h.len()).rev().collect(), 20.0),
                    "min" => ((0..h.len()).collect(), 20.0),
                    q => (
                        (0..h.len()).collect(),
                        q.trim_start_matches("quantile ").parse::<f64>().expect("q") * total,
                    ),
                };
                let pos = order.iter().position(|&i| i == b).expect("bin");
                let through: f64 = order[..=pos].iter().map(|&i| h[i]).sum();
                let before = through - h[b];
                assert!(
                    through >= target - slack && before <= target + slack,
                    "{} at n = {n}: bin {b} (exact {:?}), cumulative {before}..{through}, target {target}",
                    w.name,
                    bin_index(&w.value)
                );
            }
        }
    }
}

#[test]
fn dp_regression_and_correlation_run_on_noisy_sufficient_statistics() {
    // Noisy sufficient statistics: the error of Q = nΣxy − ΣxΣy grows like n·σ while Q
    // grows like n², so these need many rows; 3 × 2000 rows, ρ = 8.
    let data = tables(3, 2000, 5);
    let s = spec(
        Analysis::Correlation {
            x: "age".into(),
            y: "bp".into(),
            filter: None,
        },
        dp("8"),
    );
    let plan = Plan::new(&s, 3, 1, &[&policy(Release::Dp)]).expect("plan");
    let got = run_in_memory(&plan, &data, &mut pools(3, 4), 4).expect("runs");
    let r = got
        .get("correlation", None)
        .and_then(Value::as_f64)
        .expect("r");
    let want = reference(&s, &data).expect("ref")[0]
        .value
        .as_f64()
        .expect("r");
    assert!((r - want).abs() < 0.15, "{r} vs {want}");
    assert_eq!(got.privacy.mode, "dp");
    assert_eq!(
        got.privacy.noise.len(),
        6,
        "count, Σ age, Σ bp, Σ age², Σ age·bp, Σ bp²"
    );
    let s = spec(
        Analysis::LinearRegression {
            response: "chol".into(),
            predictors: vec!["age".into()],
            filter: None,
        },
        dp("8"),
    );
    let plan = Plan::new(&s, 3, 1, &[&policy(Release::Dp)]).expect("plan");
    let got = run_in_memory(&plan, &data, &mut pools(3, 5), 5).expect("runs");
    let b = got
        .get("beta[age]", None)
        .and_then(Value::as_f64)
        .expect("β");
    let want = reference(&s, &data).expect("ref");
    let wb = want[1].value.as_f64().expect("β");
    assert!((b - wb).abs() < 0.3, "{b} vs {wb}");
}

/// Exact probabilities of N_Z(0, σ²) conditioned on |x| ≤ M.
fn truncated_gaussian(sigma: f64, m: i64) -> Vec<f64> {
    let w: Vec<f64> = (-m..=m)
        .map(|x| (-(x as f64).powi(2) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|v| v / total).collect()
}

fn convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

#[test]
fn the_noise_the_mpc_adds_matches_the_exact_convolution() {
    // A DP histogram over 512 bins at n = 3, four jobs with fixed seeds: each bin's opened
    // noisy count minus its exact count is one sample of the summed noise (2048 samples).
    // Test: Pearson chi-square against the exact convolution of the three parties'
    // truncated discrete Gaussians (σ from the plan), tails merged so every bin expects
    // ≥ 5; the statistic with k degrees of freedom, Wilson–Hilferty-transformed to a
    // standard normal, must be below 3.09 (p > 0.001, one-sided).
    let edges: Vec<i64> = (0..=512).map(|i| 60 + i).collect();
    let mut s = spec(
        Analysis::Histogram {
            column: "bp".into(),
            edges: edges.clone(),
            filter: None,
        },
        dp("40"),
    );
    s.max_rows = 100;
    let plan = Plan::new(&s, 3, 1, &[&policy(Release::Dp)]).expect("plan");
    let noise = plan.noise.as_ref().expect("dp");
    let (sigma, m) = (noise[0].sigma, noise[0].bound);
    let mut samples = Vec::new();
    for job in 0..4u64 {
        let data = tables(3, 30, 40 + job);
        let got = run_in_memory(&plan, &data, &mut pools(3, 50 + job), 60 + job).expect("runs");
        let want = reference(&s, &data).expect("ref");
        for w in want {
            let g = got
                .get("count", w.group)
                .and_then(Value::as_f64)
                .expect("count");
            samples.push((g - w.value.as_f64().expect("exact")) as i64);
        }
    }
    let pmf = truncated_gaussian(sigma.to_f64(), m as i64);
    let exact = convolve(&convolve(&pmf, &pmf), &pmf);
    let offset = 3 * m as i64;
    let mut observed = vec![0u64; exact.len()];
    for v in &samples {
        observed[(v + offset) as usize] += 1;
    }
    let n = samples.len() as f64;
    let (mut bins_e, mut bins_o) = (Vec::new(), Vec::new());
    let (mut e, mut o) = (0.0, 0u64);
    for (p, c) in exact.iter().zip(&observed) {
        e += p * n;
        o += c;
        if e >= 5.0 {
            bins_e.push(e);
            bins_o.push(o);
            (e, o) = (0.0, 0);
        }
    }
    if let (Some(le), Some(lo)) = (bins_e.last_mut(), bins_o.last_mut()) {
        *le += e;
        *lo += o;
    }
    let chi2: f64 = bins_e
        .iter()
        .zip(&bins_o)
        .map(|(e, &o)| (o as f64 - e).powi(2) / e)
        .sum();
    let k = (bins_e.len() - 1) as f64;
    assert!(k >= 5.0, "too few chi-square bins ({k})");
    let z = ((chi2 / k).cbrt() - (1.0 - 2.0 / (9.0 * k))) / (2.0 / (9.0 * k)).sqrt();
    assert!(
        z < 3.09,
        "chi-square {chi2:.1} with {k} dof (z = {z:.2}), σ = {sigma}"
    );
}

#[test]
fn k_anonymity_suppresses_on_noisy_counts() {
    // Histogram of age with a bin nobody falls in and bins with hundreds of rows.
    let data = tables(3, 300, 7);
    let mut s = spec(
        Analysis::Histogram {
            column: "age".into(),
            edges: vec![0, 10, 18, 60, 121],
            filter: None,
        },
        dp("2"),
    );
    s.k_anonymity = Some(20);
    let plan = Plan::new(&s, 3, 1, &[&policy(Release::Dp)]).expect("plan");
    let got = run_in_memory(&plan, &data, &mut pools(3, 8), 8).expect("runs");
    assert_eq!(got.get("count", Some([0, 10])), Some(&Value::Suppressed));
    assert_eq!(got.get("count", Some([10, 18])), Some(&Value::Suppressed));
    assert!(matches!(
        got.get("count", Some([18, 60])),
        Some(Value::Integer { .. })
    ));
    // Exact, grouped: a group where some party holds 1 … k − 1 rows is suppressed (each
    // party's own keep bit; here the in-memory parties use k as their min_k), the others
    // exact. Ages 18–107 over 40 rows: each party has a few rows under 20 and ≥ 10 above.
    let mut s = spec(
        Analysis::Variance {
            column: "bp".into(),
            filter: None,
            group_by: Some(GroupBy {
                column: "age".into(),
                edges: vec![0, 20, 121],
            }),
        },
        Privacy::Exact,
    );
    s.k_anonymity = Some(10);
    let data = tables(3, 40, 9);
    let plan = Plan::new(&s, 3, 1, &[&exact_policy(&s)]).expect("plan");
    let got = run_in_memory(&plan, &data, &mut [], 9).expect("runs");
    assert_eq!(got.get("count", Some([0, 20])), Some(&Value::Suppressed));
    assert!(got.get("mean", Some([0, 20])).is_none());
    let want = reference(&s, &data).expect("ref");
    let cnt = want
        .iter()
        .find(|e| e.name == "count" && e.group == Some([20, 121]))
        .expect("group");
    assert_eq!(got.get("count", Some([20, 121])), Some(&cnt.value));
}

#[test]
fn the_release_policy_refuses_before_anything_runs() {
    let count = Analysis::Count {
        filter: None,
        group_by: None,
    };
    let hist = Analysis::Histogram {
        column: "bp".into(),
        edges: vec![60, 120, 260],
        filter: None,
    };
    // An exact minimum is one person's value: refused by the spec itself...
    let min = Analysis::Min {
        column: "bp".into(),
        edges: vec![60, 120, 260],
        min_count: 1,
        filter: None,
    };
    let e = Plan::new(
        &spec(min.clone(), Privacy::Exact),
        3,
        1,
        &[&policy(Release::Dp)],
    )
    .expect_err("exact min");
    assert!(
        matches!(e, AnalyticsError::Spec(SpecError::ExactIndividual { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("one person's value"), "{e}");
    // ...and a policy listing any kind as exact is refused when it is loaded: exact
    // releases come only from declared views.
    let mut p = policy(Release::Dp);
    p.kinds.insert(min.kind(), Release::Exact);
    let e = p.validate().expect_err("exact in kinds");
    assert!(e.contains("declared views"), "{e}");
    assert!(policy(Release::Exact).validate().is_err());
    // A view releasing a kind outside the rule, or without min_k, is refused too.
    let mut p = exact_policy(&spec(count.clone(), Privacy::Exact));
    p.views[0]
        .kinds
        .push(parley_enclave::analytics::spec::KindName::Correlation);
    assert!(
        p.validate()
            .expect_err("view kind")
            .contains("never released exactly")
    );
    let mut p = exact_policy(&spec(count.clone(), Privacy::Exact));
    p.min_k = None;
    assert!(p.validate().expect_err("no k").contains("min_k"));
    // A kind the dataset refuses.
    let mut p = policy(Release::Dp);
    p.kinds.insert(count.kind(), Release::Refused);
    let e = Plan::new(
        &spec(count.clone(), dp("0.1")),
        3,
        1,
        &[&policy(Release::Dp), &p],
    )
    .expect_err("refused");
    assert!(
        matches!(e, AnalyticsError::Policy(PolicyError::KindRefused { .. })),
        "{e}"
    );
    // Exact without a declared view that admits it: the refusal names the view needed.
    let e = Plan::new(
        &spec(count.clone(), Privacy::Exact),
        3,
        1,
        &[&policy(Release::Dp)],
    )
    .expect_err("no view");
    assert!(
        matches!(e, AnalyticsError::Policy(PolicyError::NoView { .. })),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("kinds [count], column none, partition []"),
        "{e}"
    );
    // A view partitioned by diabetic admits its cells as filters; a filter on another
    // column, another cell width or other edges is DP only.
    let by_age = Some(GroupBy {
        column: "age".into(),
        edges: vec![0, 40, 121],
    });
    let mut p = policy(Release::Dp);
    p.min_k = Some(10);
    p.views = vec![View {
        kinds: vec![parley_enclave::analytics::spec::KindName::Mean],
        column: Some("bp".into()),
        partition: vec![
            GroupBy {
                column: "diabetic".into(),
                edges: vec![0, 1, 2],
            },
            by_age.clone().expect("age"),
        ],
    }];
    p.validate().expect("valid");
    let mean = |filter: Option<Filter>, group_by: Option<GroupBy>, column: &str| {
        spec(
            Analysis::Mean {
                column: column.into(),
                filter,
                group_by,
            },
            Privacy::Exact,
        )
    };
    let diab = |v| {
        Some(Filter {
            column: "diabetic".into(),
            equals: v,
        })
    };
    for ok in [
        mean(diab(1), by_age.clone(), "bp"),
        mean(diab(0), None, "bp"),
        mean(None, by_age.clone(), "bp"),
        mean(None, None, "bp"),
    ] {
        Plan::new(&ok, 3, 1, &[&p]).expect("admitted by the view");
    }
    for refused in [
        mean(
            Some(Filter {
                column: "bp".into(),
                equals: 178,
            }),
            None,
            "chol",
        ),
        mean(
            Some(Filter {
                column: "age".into(),
                equals: 30,
            }),
            None,
            "bp",
        ),
        mean(
            diab(1),
            Some(GroupBy {
                column: "age".into(),
                edges: vec![0, 41, 121],
            }),
            "bp",
        ),
        mean(None, None, "chol"),
    ] {
        let e = Plan::new(&refused, 3, 1, &[&p]).expect_err("no view");
        assert!(
            matches!(e, AnalyticsError::Policy(PolicyError::NoView { .. })),
            "{e}"
        );
    }
    // The job's max_rows below the dataset's declared size.
    let mut p = exact_policy(&spec(count.clone(), Privacy::Exact));
    p.max_rows = 5000;
    let e = Plan::new(&spec(count.clone(), Privacy::Exact), 3, 1, &[&p]).expect_err("size");
    assert!(e.to_string().contains("set max_rows ≥ 5000"), "{e}");
    // A DP grouped release below the dataset's k (exact releases use each party's own
    // min_k through its keep bits instead).
    let mut p = policy(Release::Dp);
    p.min_k = Some(10);
    let e = Plan::new(&spec(hist.clone(), dp("0.5")), 3, 1, &[&p]).expect_err("k");
    assert!(e.to_string().contains("k_anonymity ≥ 10"), "{e}");
    let mut s = spec(hist.clone(), dp("0.5"));
    s.k_anonymity = Some(10);
    Plan::new(&s, 3, 1, &[&p]).expect("with k");
    // An exact release from a policy without min_k.
    let mut p = exact_policy(&spec(hist.clone(), Privacy::Exact));
    p.min_k = None;
    let e = Plan::new(&spec(hist, Privacy::Exact), 3, 1, &[&p]).expect_err("no min_k");
    assert!(e.to_string().contains("no min_k"), "{e}");
    // A per-job ρ cap.
    let mut p = policy(Release::Dp);
    p.max_rho_per_job = Some(dec("0.1"));
    let e = Plan::new(&spec(count, dp("0.5")), 3, 1, &[&p]).expect_err("ρ");
    assert!(e.to_string().contains("lower privacy.rho"), "{e}");
}

#[test]
fn the_budget_reserves_at_approval_and_spends_before_delivery() {
    let s = spec(
        Analysis::Count {
            filter: None,
            group_by: None,
        },
        dp("0.3"),
    );
    let plan = Plan::new(&s, 3, 1, &[&policy(Release::Dp)]).expect("plan");
    let mut budget = PrivacyBudget::new("patients", dec("0.5"));
    plan.reserve(&mut budget, "job-1").expect("fits");
    // A second job would exceed the total: refused at approval.
    let e = plan.reserve(&mut budget, "job-2").expect_err("over budget");
    assert!(e.to_string().contains("has only ρ = 0.2 left"), "{e}");
    plan.confirm_spend(&mut budget, "job-1").expect("spend");
    assert_eq!(budget.spent(), dec("0.3"));
    assert!(
        budget.release("job-1").is_err(),
        "nothing is refunded after a spend"
    );
}

#[test]
fn the_field_follows_the_bit_budget() {
    // An exact variance with bounds of ±2^31 and 2^32 rows per party: n·Σx² needs ≈ 130
    // bits, past 2^127 − 1: the plan runs in 2^521 − 1.
    let wide = Bounds {
        min: -(1 << 31),
        max: 1 << 31,
    };
    let mut s = spec(
        Analysis::Variance {
            column: "y".into(),
            filter: None,
            group_by: None,
        },
        Privacy::Exact,
    );
    s.bounds.insert("y".into(), wide);
    s.max_rows = 1 << 32;
    let plan = Plan::new(&s, 3, 1, &[&exact_policy(&s)]).expect("fits 2^521 − 1");
    assert_eq!(plan.field.name(), parley_enclave::field::M521::NAME);
    assert!(
        plan.advice()
            .contains("lower max_rows (now 4294967296) or narrow the bounds of y"),
        "{}",
        plan.advice()
    );
    // A count fits 2^127 − 1.
    let s = spec(
        Analysis::Count {
            filter: None,
            group_by: None,
        },
        Privacy::Exact,
    );
    let plan = Plan::new(&s, 3, 1, &[&exact_policy(&s)]).expect("fits");
    assert_eq!(plan.field.name(), parley_enclave::field::M127::NAME);
}

fn assert_range_abort(e: &AnalyticsError, check: &str) {
    let AnalyticsError::Mpc(m) = e else {
        panic!("{e}")
    };
    let named = matches!(m.check_failure(), Some(CheckFailure::Assertion { check: c }) if c == check)
        || matches!(m, MpcError::PeerAborted { reason, .. } if reason.contains(check.trim_start_matches("range: ")));
    assert!(named, "{e} does not name {check:?}");
}

#[test]
fn a_cheating_partys_out_of_range_aggregates_abort_with_the_check_named() {
    let s = spec(
        Analysis::Mean {
            column: "bp".into(),
            filter: None,
            group_by: None,
        },
        Privacy::Exact,
    );
    for (n, t) in [(3usize, 1usize), (5, 2)] {
        let plan = Plan::new(&s, n, t, &[&exact_policy(&s)]).expect("plan");
        let data = tables(n, 30, 3);
        let honest: Vec<LocalStats> = data
            .iter()
            .map(|tb| local_stats(&plan.spec, &plan.layout, tb).expect("stats"))
            .collect();
        let none: Vec<_> = (0..n).map(|_| None).collect();
        // Party 1 claims a sum above count·260 (a value past the bound, to pull the mean).
        let mut stats = honest.clone();
        let c = stats[1].as_slice()[0];
        stats[1].set(1, c * 260 + 1);
        let e = run_stats(&plan, &stats, &none, &[1], 5).expect_err("aborts");
        assert_range_abort(
            &e,
            "range: party 1's sums within count·bounds (count·lo ≤ Σx ≤ count·hi)",
        );
        // Party 0 claims more rows than max_rows (with a consistent sum).
        let mut stats = honest.clone();
        stats[0].set(0, 2001);
        stats[0].set(1, 2001 * 100);
        let e = run_stats(&plan, &stats, &none, &[0], 6).expect_err("aborts");
        assert_range_abort(
            &e,
            "range: party 0's row counts within [0, max_rows = 2000]",
        );
        // At the bound exactly (count·260, all rows at the maximum) it runs.
        let mut stats = honest;
        stats[1].set(1, c * 260);
        run_stats(&plan, &stats, &none, &[1], 7).expect("at the bound");
    }
    // Cauchy–Schwarz: a variance job whose Σx² is within count·bounds but below (Σx)²/count.
    let s = spec(
        Analysis::Variance {
            column: "bp".into(),
            filter: None,
            group_by: None,
        },
        Privacy::Exact,
    );
    let plan = Plan::new(&s, 3, 1, &[&exact_policy(&s)]).expect("plan");
    // 10 rows: Σx = 2000 (mean 200), Σx² = 10·3600 + 1 > count·lo² but < (Σx)²/10 = 400000.
    let fake = LocalStats::from_raw(vec![10, 2000, 36_001]);
    let ok = LocalStats::from_raw(vec![10, 2000, 400_000]);
    let e = run_stats(&plan, &[ok.clone(), fake, ok], &[None, None, None], &[1], 8)
        .expect_err("aborts");
    assert_range_abort(
        &e,
        "range: party 1's Cauchy–Schwarz (0 ≤ count·Σx² − (Σx)² ≤ max_rows²·(hi − lo)²/4)",
    );
}

#[test]
fn specs_and_policies_read_from_json_and_refuse_unknown_fields() {
    let text = r#"{
        "analysis": {"kind": "quantiles", "column": "bp", "edges": [60, 120, 180, 260],
                     "quantiles": ["0.5", "0.9"]},
        "bounds": {"bp": {"min": 60, "max": 260}},
        "max_rows": 1000,
        "privacy": {"mode": "dp", "rho": "0.1", "delta": "0.000001"},
        "neighbouring": "add-remove-one",
        "recipients": "all"
    }"#;
    let s: AnalyticsSpec = serde_json::from_str(text).expect("spec");
    s.validate(3).expect("valid");
    assert_eq!(
        s.security,
        SecurityModel::Malicious,
        "malicious unless named"
    );
    let p = Plan::new(&s, 3, 1, &[&policy(Release::Dp)]).expect("plan");
    assert_eq!(p.privacy.mode, "dp");
    // A typo is refused, not ignored.
    let bad = text.replace("\"max_rows\"", "\"max_row\"");
    assert!(serde_json::from_str::<AnalyticsSpec>(&bad).is_err());
    let pol: ReleasePolicy = serde_json::from_str(
        r#"{"dataset": "patients", "max_rows": 2000, "kinds": {"min": "refused"},
            "default": "dp", "min_k": 10,
            "view": [{"kinds": ["count", "mean"], "column": "bp",
                      "partition": [{"column": "age", "edges": [0, 40, 121]}]}]}"#,
    )
    .expect("policy");
    pol.validate().expect("valid");
    assert_eq!(pol.views[0].column.as_deref(), Some("bp"));
    // Without the declared size, or with a typo in a view, it does not load.
    assert!(
        serde_json::from_str::<ReleasePolicy>(r#"{"dataset": "patients", "default": "dp"}"#)
            .is_err()
    );
    assert!(
        serde_json::from_str::<ReleasePolicy>(
            r#"{"dataset": "patients", "max_rows": 1, "default": "dp",
                "view": [{"kinds": ["count"], "partitions": []}]}"#
        )
        .is_err()
    );
}
