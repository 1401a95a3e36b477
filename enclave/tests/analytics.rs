//! The analytics catalogue against its plaintext references at n = 3 and n = 5: integers
//! exactly, divisions on shares within the documented bound (|error| ≤ |v|·2^−60 + 2^−40,
//! checked here as 1e-9 relative + 1e-9 absolute against f64, whose own rounding is far
//! below that); release-policy, spec and bit-budget refusals; k-anonymity suppression; a
//! cheating party's out-of-range aggregates abort with the range check named.

use parley_enclave::analytics::spec::{
    Analysis, AnalyticsSpec, Bounds, Filter, GroupBy, Neighbouring, Privacy, SecurityModel,
};
use parley_enclave::analytics::{
    Plan, ReleasePolicy, Table, Value, reference::reference, run_in_memory,
};
use parley_enclave::program::Recipients;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// A DP policy that also declares the exact view `s` needs (min_k 1: the in-memory parties
/// use the spec's k as theirs).
pub fn policy_for(s: &AnalyticsSpec) -> ReleasePolicy {
    ReleasePolicy {
        dataset: "patients".into(),
        max_rows: 1,
        kinds: BTreeMap::new(),
        default: parley_enclave::analytics::Release::Dp,
        min_k: Some(1),
        views: vec![parley_enclave::analytics::View::needed_by(s)],
        disjoint: false,
        semi_honest: false,
        max_rho_per_job: None,
    }
}

fn bounds() -> BTreeMap<String, Bounds> {
    [
        ("age", (0, 120)),
        ("bp", (60, 260)),
        ("chol", (80, 500)),
        ("w", (0, 10)),
    ]
    .into_iter()
    .map(|(k, (min, max))| (k.to_owned(), Bounds { min, max }))
    .collect()
}

pub fn spec(analysis: Analysis) -> AnalyticsSpec {
    AnalyticsSpec {
        analysis,
        bounds: bounds(),
        max_rows: 1000,
        privacy: Privacy::Exact,
        neighbouring: Neighbouring::AddRemoveOne,
        k_anonymity: None,
        recipients: Recipients::All,
        security: SecurityModel::Malicious,
    }
}

/// Party p's rows: bp and chol rise with age, some values outside the bounds (clipped).
fn tables(n: usize, rows: usize, seed: u64) -> Vec<Table> {
    tables_in(n, rows, seed, 10, 100)
}

fn tables_in(n: usize, rows: usize, seed: u64, age_lo: i64, age_span: u32) -> Vec<Table> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n)
        .map(|p| {
            let mut cols: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for _ in 0..rows + p {
                let age = (rng.next_u32() % age_span) as i64 + age_lo;
                let bp = 90
                    + age / 2
                    + (rng.next_u32() % 40) as i64
                    + if rng.next_u32() % 50 == 0 { 300 } else { 0 };
                let chol = 120 + age + (bp - 120) / 3 + (rng.next_u32() % 60) as i64;
                let w = (rng.next_u32() % 11) as i64;
                let diab = i64::from(rng.next_u32() % 4 == 0);
                for (k, v) in [
                    ("age", age),
                    ("bp", bp),
                    ("chol", chol),
                    ("w", w),
                    ("diabetic", diab),
                ] {
                    cols.entry(k.to_owned()).or_default().push(v);
                }
            }
            Table::new(cols).expect("table")
        })
        .collect()
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs() + 1e-9
}

/// Runs `s` at n = 3 and 5 and compares with the reference.
fn check(s: &AnalyticsSpec, rows: usize, seed: u64) {
    for (n, t) in [(3usize, 1usize), (5, 2)] {
        check_on(s, n, t, &tables(n, rows, seed + n as u64), seed);
    }
}

fn check_on(s: &AnalyticsSpec, n: usize, t: usize, data: &[Table], seed: u64) {
    {
        let data = data.to_vec();
        let plan = Plan::new(s, n, t, &[&policy_for(s)]).expect("plan");
        let got = run_in_memory(&plan, &data, &mut [], seed).expect("runs");
        let want = reference(s, &data).expect("reference");
        assert_eq!(
            got.estimates.len(),
            want.len(),
            "{:?} vs {:?}",
            got.estimates,
            want
        );
        for w in &want {
            let g = got
                .get(&w.name, w.group)
                .unwrap_or_else(|| panic!("{} missing", w.name));
            match (&w.value, g) {
                (Value::Integer { value: a }, Value::Integer { value: b }) => {
                    assert_eq!(a, b, "{} at n = {n}", w.name)
                }
                // An empty group: NaN in f64, undefined on shares.
                (Value::Real { value: a }, Value::Undefined { .. }) if a.is_nan() => {}
                (Value::Real { value: a }, Value::Real { value: b }) => {
                    assert!(
                        close(*b, *a),
                        "{} {:?} at n = {n}: got {b}, want {a}",
                        w.name,
                        w.group
                    )
                }
                (a, b) => panic!("{}: {a:?} vs {b:?}", w.name),
            }
        }
    }
}

#[test]
fn count_sum_mean_match_the_reference() {
    let gb = Some(GroupBy {
        column: "age".into(),
        edges: vec![0, 40, 65, 200],
    });
    check(
        &spec(Analysis::Count {
            filter: Some(Filter {
                column: "diabetic".into(),
                equals: 1,
            }),
            group_by: gb.clone(),
        }),
        30,
        1,
    );
    check(
        &spec(Analysis::Sum {
            column: "bp".into(),
            filter: None,
            group_by: gb.clone(),
        }),
        30,
        2,
    );
    check(
        &spec(Analysis::Mean {
            column: "bp".into(),
            filter: None,
            group_by: None,
        }),
        30,
        3,
    );
}

#[test]
fn variance_matches_the_reference() {
    let gb = Some(GroupBy {
        column: "age".into(),
        edges: vec![0, 50, 200],
    });
    check(
        &spec(Analysis::Variance {
            column: "bp".into(),
            filter: None,
            group_by: gb,
        }),
        20,
        4,
    );
}

/// The privacy rule releases exactly only sums of a per-individual constant over a cell:
/// weighted means, correlations, covariances and regressions are DP only, refused by the
/// spec itself whatever a policy says.
#[test]
fn exact_is_refused_for_every_kind_outside_the_rule() {
    use parley_enclave::analytics::{AnalyticsError, SpecError};
    for a in [
        Analysis::WeightedMean {
            column: "chol".into(),
            weight: "w".into(),
            filter: None,
        },
        Analysis::Correlation {
            x: "age".into(),
            y: "bp".into(),
            filter: None,
        },
        Analysis::Covariance {
            columns: vec!["age".into(), "bp".into()],
            filter: None,
        },
        Analysis::LinearRegression {
            response: "chol".into(),
            predictors: vec!["age".into()],
            filter: None,
        },
    ] {
        let kind = a.kind();
        let s = spec(a);
        let err = Plan::new(&s, 3, 1, &[&policy_for(&s)]).expect_err("exact");
        assert_eq!(err, AnalyticsError::Spec(SpecError::DpOnly { kind }));
    }
}

#[test]
fn histograms_match_the_reference() {
    check(
        &spec(Analysis::Histogram {
            column: "bp".into(),
            edges: vec![60, 100, 120, 140, 160, 260],
            filter: None,
        }),
        25,
        9,
    );
}

fn kinds() -> Vec<Analysis> {
    let gb = Some(GroupBy {
        column: "age".into(),
        edges: vec![0, 30, 60, 200],
    });
    vec![
        Analysis::Count {
            filter: None,
            group_by: gb.clone(),
        },
        Analysis::Sum {
            column: "chol".into(),
            filter: None,
            group_by: gb.clone(),
        },
        Analysis::Mean {
            column: "bp".into(),
            filter: None,
            group_by: gb.clone(),
        },
        Analysis::Variance {
            column: "bp".into(),
            filter: None,
            group_by: gb,
        },
        Analysis::Histogram {
            column: "age".into(),
            edges: vec![0, 18, 40, 65, 90, 121],
            filter: None,
        },
    ]
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    /// Any kind, random data (sizes, age ranges that leave groups empty, values past the
    /// bounds), n = 3 or 5: the result equals the reference.
    #[test]
    fn any_kind_matches_its_reference(
        kind in 0usize..5,
        five in any::<bool>(),
        rows in 3usize..25,
        age_lo in 0i64..50,
        age_span in 1u32..80,
        seed in any::<u64>(),
    ) {
        let (n, t) = if five { (5, 2) } else { (3, 1) };
        let data = tables_in(n, rows, seed, age_lo, age_span);
        check_on(&spec(kinds()[kind].clone()), n, t, &data, seed);
    }
}

/// An exact release never runs semi-honest (one party's additive error on a suppression bit
/// would release a suppressed cell); a DP job runs semi-honest only where every party's
/// release policy names that choice.
#[test]
fn semi_honest_only_for_dp_where_the_policy_allows_it() {
    use parley_enclave::analytics::{AnalyticsError, PolicyError, SpecError};
    let mut s = spec(Analysis::Count {
        filter: None,
        group_by: None,
    });
    s.security = SecurityModel::SemiHonest;
    let mut allowing = policy_for(&s);
    allowing.semi_honest = true;
    let err = Plan::new(&s, 3, 1, &[&allowing]).expect_err("exact semi-honest");
    assert_eq!(err, AnalyticsError::Spec(SpecError::ExactNeedsMalicious));
    s.privacy = Privacy::Dp {
        rho: "0.5".parse().expect("rho"),
        delta: "0.000001".parse().expect("delta"),
    };
    let mut dp_policy = policy_for(&s);
    let err = Plan::new(&s, 3, 1, &[&dp_policy]).expect_err("policy without semi_honest");
    assert!(matches!(
        err,
        AnalyticsError::Policy(PolicyError::SemiHonest { .. })
    ));
    dp_policy.semi_honest = true;
    Plan::new(&s, 3, 1, &[&dp_policy]).expect("named policy choice");
}
