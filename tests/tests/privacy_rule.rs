//! The privacy rule at a node (issue 17).
//!
//! The refusal differential: no decision depends on a party's rows. Every refusal path of a
//! node's check — the spec, the release policy and its views, the schema, the declared
//! size, the security model, the budget — runs against two stores whose dataset has the
//! same catalogue entry (name, schema, version, declared size) and different rows; the
//! refusals must be byte-identical, and none may carry a number from the rows. And keep
//! bits take one fixed time slot whatever the data.

use parley::jobs::job::{JobId, JobKind, JobSpec, SecurityModel};
use parley::node::NodeContext;
use parley_enclave::analytics::spec::{
    Analysis, AnalyticsSpec, Bounds, Filter, GroupBy, Neighbouring, Privacy, SecurityModel as Model,
};
use parley_enclave::program::Recipients;
use parley_tests::{Setup, in_process, parley_bin};
use std::sync::Arc;

const DECLARED: usize = 200;

/// A federation whose hospital-a holds `csv` as version 2 of `patients`, and hospital-a's
/// node context (in process: only its checks are exercised).
async fn node_with(csv: &str) -> (Setup, Arc<NodeContext>) {
    let setup = Setup::new(DECLARED).await;
    // A budget below the per-job cap, so the budget path is reachable.
    setup
        .fed
        .edit_config("hospital-a", |c| {
            c.budgets.insert("patients".into(), "0.5".parse().unwrap());
        })
        .unwrap();
    let file = setup.tmp.path().join("rows.csv");
    std::fs::write(&file, csv).unwrap();
    let a = setup.fed.party("hospital-a").unwrap().clone();
    let (ok, out) = parley_tests::data_import(&a.config, "patients", "patients", &file);
    assert!(ok && out.contains("version 2"), "{out}");
    let ctx = in_process(&setup, "hospital-a").await;
    (setup, ctx)
}

/// `n` rows; `shift` moves every value, so the two stores share nothing but their shape.
fn csv(n: usize, shift: i64) -> String {
    let mut s = String::from("age,sex,systolic_bp,cholesterol,diabetic\n");
    for i in 0..n as i64 {
        let age = 20 + (i * 7 + shift * 13) % 70;
        let bp = 100 + (i * 11 + shift * 29) % 90;
        let chol = 150 + (i * 5 + shift * 31) % 150;
        let diab = i64::from((i + shift) % 5 == 0);
        s.push_str(&format!("{age},{},{bp},{chol},{diab}\n", (i + shift) % 2));
    }
    s
}

fn bounds() -> std::collections::BTreeMap<String, Bounds> {
    [
        ("age", (0, 120)),
        ("sex", (0, 1)),
        ("systolic_bp", (60, 260)),
        ("cholesterol", (80, 500)),
        ("diabetic", (0, 1)),
    ]
    .into_iter()
    .map(|(c, (min, max))| (c.to_owned(), Bounds { min, max }))
    .collect()
}

fn analytics(analysis: Analysis, privacy: Privacy) -> AnalyticsSpec {
    AnalyticsSpec {
        analysis,
        bounds: bounds(),
        max_rows: DECLARED as u64,
        privacy,
        neighbouring: Neighbouring::AddRemoveOne,
        k_anonymity: None,
        recipients: Recipients::All,
        security: Model::Malicious,
    }
}

fn dp(rho: &str) -> Privacy {
    Privacy::Dp {
        rho: rho.parse().unwrap(),
        delta: "0.000001".parse().unwrap(),
    }
}

fn variance(filter: Option<Filter>, group_by: Option<GroupBy>, column: &str) -> Analysis {
    Analysis::Variance {
        column: column.into(),
        filter,
        group_by,
    }
}

/// Every refusal path a proposal can take at a node's check, by name.
fn battery() -> Vec<(&'static str, AnalyticsSpec, SecurityModel)> {
    let bands = |edges: Vec<i64>| {
        Some(GroupBy {
            column: "age".into(),
            edges,
        })
    };
    let demo_bands = bands(parley::dev::study::AGE_BANDS.to_vec());
    let mal = SecurityModel::Malicious;
    vec![
        (
            "isolation: exact variance filtered on one bp value",
            analytics(
                variance(
                    Some(Filter {
                        column: "systolic_bp".into(),
                        equals: 178,
                    }),
                    None,
                    "cholesterol",
                ),
                Privacy::Exact,
            ),
            mal,
        ),
        (
            "differencing: bands the owner did not declare",
            analytics(
                variance(
                    None,
                    Some(GroupBy {
                        column: "systolic_bp".into(),
                        edges: vec![0, 178, 1000],
                    }),
                    "cholesterol",
                ),
                Privacy::Exact,
            ),
            mal,
        ),
        (
            "exact correlation",
            analytics(
                Analysis::Correlation {
                    x: "age".into(),
                    y: "systolic_bp".into(),
                    filter: None,
                },
                Privacy::Exact,
            ),
            mal,
        ),
        (
            "exact regression on a 0/1 column",
            analytics(
                Analysis::LinearRegression {
                    response: "cholesterol".into(),
                    predictors: vec!["diabetic".into()],
                    filter: None,
                },
                Privacy::Exact,
            ),
            mal,
        ),
        (
            "exact minimum",
            analytics(
                Analysis::Min {
                    column: "systolic_bp".into(),
                    edges: vec![60, 120, 261],
                    min_count: 1,
                    filter: None,
                },
                Privacy::Exact,
            ),
            mal,
        ),
        (
            "max_rows below the declared size (the old count oracle)",
            {
                let mut s = analytics(
                    Analysis::Count {
                        filter: Some(Filter {
                            column: "diabetic".into(),
                            equals: 1,
                        }),
                        group_by: None,
                    },
                    dp("0.1"),
                );
                s.max_rows = 1;
                s
            },
            mal,
        ),
        (
            "exact, semi-honest",
            {
                let mut s = analytics(
                    variance(None, demo_bands.clone(), "systolic_bp"),
                    Privacy::Exact,
                );
                s.security = Model::SemiHonest;
                s
            },
            SecurityModel::SemiHonest,
        ),
        (
            "the job and its analytics spec name different security models",
            analytics(variance(None, demo_bands.clone(), "systolic_bp"), dp("0.1")),
            SecurityModel::SemiHonest,
        ),
        (
            "exact view with clipped bounds",
            {
                let mut s = analytics(
                    variance(None, demo_bands.clone(), "systolic_bp"),
                    Privacy::Exact,
                );
                s.bounds
                    .insert("systolic_bp".into(), Bounds { min: 60, max: 200 });
                s
            },
            mal,
        ),
        (
            "a column the schema lacks",
            {
                let mut s = analytics(variance(None, None, "weight"), dp("0.1"));
                s.bounds
                    .insert("weight".into(), Bounds { min: 0, max: 300 });
                s
            },
            mal,
        ),
        (
            "a job over the per-job ρ cap",
            analytics(variance(None, None, "systolic_bp"), dp("1.5")),
            mal,
        ),
        (
            "a job over the remaining budget",
            analytics(
                Analysis::Count {
                    filter: None,
                    group_by: None,
                },
                dp("0.9"),
            ),
            mal,
        ),
        (
            "a refused kind",
            analytics(
                Analysis::WeightedMean {
                    column: "cholesterol".into(),
                    weight: "age".into(),
                    filter: None,
                },
                dp("0.1"),
            ),
            mal,
        ),
    ]
}

fn job(ctx: &NodeContext, a: AnalyticsSpec, security: SecurityModel) -> JobSpec {
    let epoch = ctx.epoch();
    JobSpec {
        id: JobId([7; 16]),
        kind: JobKind::Analytics,
        dataset: "patients".into(),
        columns: Vec::new(),
        proposer: "hospital-b".into(),
        manifest_hash: epoch.manifest_hash,
        created: 1_000,
        security,
        bench: None,
        recipients: Vec::new(),
        nonce: [3; 16],
        expires: i64::MAX,
        dataset_versions: [("hospital-a".to_owned(), 2)].into_iter().collect(),
        analytics: Some(Box::new(a)),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_is_the_same_whatever_the_rows() {
    let (_s1, one) = node_with(&csv(150, 0)).await;
    let (_s2, two) = node_with(&csv(37, 5)).await;
    // Both stores declare the same size for the same dataset version (the catalogue).
    for ctx in [&one, &two] {
        assert!(
            ctx.config
                .release
                .iter()
                .any(|p| p.dataset == "patients" && p.max_rows == DECLARED as u64)
        );
    }
    let mut refusals = 0;
    let cases = battery();
    let all = cases.len();
    for (name, a, security) in cases {
        let mut texts = Vec::new();
        for ctx in [&one, &two] {
            let spec = job(ctx, a.clone(), security);
            let r = ctx.check_job(&ctx.epoch(), &spec);
            texts.push(r.map_err(|e| e.to_string()));
        }
        assert_eq!(
            texts[0], texts[1],
            "{name}: the decision depends on the rows"
        );
        if let Err(t) = &texts[0] {
            println!("{name}: {t}");
            refusals += 1;
            for n in ["150", "37"] {
                assert!(!t.contains(n), "{name}: {t} carries a row count");
            }
            assert!(!t.contains("left"), "{name}: {t} states a remaining budget");
        }
    }
    assert_eq!(refusals, all, "every case of the battery is a refusal path");
    // summary-stats of a column no view releases exactly (a 0/1 column here: its Σ and Σ²
    // would count the diabetics; of a mostly-zero column, give one person's value).
    let mut texts = Vec::new();
    for ctx in [&one, &two] {
        let mut spec = job(
            ctx,
            analytics(variance(None, None, "diabetic"), Privacy::Exact),
            SecurityModel::Malicious,
        );
        spec.kind = JobKind::SummaryStats;
        spec.analytics = None;
        spec.columns = vec!["diabetic".into()];
        texts.push(
            ctx.check_job(&ctx.epoch(), &spec)
                .map_err(|e| e.to_string()),
        );
    }
    assert_eq!(texts[0], texts[1]);
    let t = texts[0]
        .clone()
        .expect_err("summary-stats outside the views");
    assert!(t.contains("declares no exact view of \"diabetic\""), "{t}");
}

/// Keep bits take one fixed slot whatever the data: a dataset whose cells are all kept and
/// one whose cells are all suppressed finish on the same slot boundary.
#[tokio::test(flavor = "multi_thread")]
async fn keep_bits_take_the_same_time_whatever_the_data() {
    use parley::store::data::sample_patients;
    use parley_enclave::analytics::Plan;
    use parley_enclave::analytics::rule::Ledger;
    let policy = parley::dev::study::policy(5000);
    let (_, spec) = parley::dev::study::jobs(5000)
        .unwrap()
        .into_iter()
        .find(|(t, _)| t.contains("age band"))
        .unwrap();
    let plan = Plan::new(&spec, 3, 1, &[&policy]).unwrap();
    let big = sample_patients(0, 5000);
    // Three patients: every band holds 0 or 1–2 of them, below min_k: nothing kept.
    let mut tiny = sample_patients(1, 3);
    tiny.name = big.name.clone();
    let slot = std::time::Duration::from_millis(300);
    let mut took = Vec::new();
    let mut kept = Vec::new();
    for ds in [&big, &tiny] {
        let started = std::time::Instant::now();
        let d = parley::jobs::analytics::in_slot(slot, || {
            parley::jobs::analytics::keep_bits(&plan, ds, &Ledger::default(), "j", 1, 10).unwrap()
        })
        .await;
        took.push(started.elapsed());
        kept.push(d.keep.iter().filter(|&&b| b).count());
    }
    assert!(
        kept[0] > 0 && kept[1] == 0,
        "the two datasets decide differently: {kept:?}"
    );
    for t in &took {
        assert!(
            *t >= slot && *t < slot + std::time::Duration::from_millis(150),
            "the step took {t:?}, the slot is {slot:?}: {took:?}"
        );
    }
}

/// Own-row subtraction on real nodes: in the age band under 40 hospital-a holds 9 patients,
/// hospital-b 1 and hospital-c none; the combined count is 10 = min_k. hospital-a asks for
/// the exact count and mean of cholesterol per band and subtracts its own 9 rows. Returns
/// hospital-b's patient's cholesterol if the band was released, `None` if suppressed.
/// `measured` is the build the policies admit, `bin` what is started (a wrapper of it).
async fn own_row_subtraction(measured: std::path::PathBuf, bin: std::path::PathBuf) -> Option<f64> {
    use parley::admin::{AdminRequest, AdminResponse};
    use parley::jobs::job::{JobOutput, JobState};
    use parley_enclave::analytics::View;
    use parley_enclave::analytics::spec::KindName;
    let setup = Setup::with_binary(100, measured).await;
    let band = GroupBy {
        column: "age".into(),
        edges: vec![0, 40, 121],
    };
    // (hospital, rows under 40, their cholesterol)
    let plan = [
        ("hospital-a", 9, 200),
        ("hospital-b", 1, 333),
        ("hospital-c", 0, 0),
    ];
    for (name, young, chol) in plan {
        setup
            .fed
            .edit_config(name, |c| {
                let p = &mut c.release[0];
                p.min_k = Some(10);
                p.views = vec![View {
                    kinds: vec![KindName::Count, KindName::Mean, KindName::Variance],
                    column: Some("cholesterol".into()),
                    partition: vec![band.clone()],
                }];
            })
            .unwrap();
        let mut csv = String::from("age,sex,systolic_bp,cholesterol,diabetic\n");
        for i in 0..young {
            csv.push_str(&format!("30,{},120,{chol},0\n", i % 2));
        }
        for i in 0..20 {
            csv.push_str(&format!("{},{},130,{},0\n", 50 + i, i % 2, 180 + i));
        }
        let file = setup.tmp.path().join(format!("{name}.csv"));
        std::fs::write(&file, csv).unwrap();
        let cfg = setup.fed.party(name).unwrap().config.clone();
        let (ok, out) = parley_tests::data_import(&cfg, "patients", "patients", &file);
        assert!(ok, "{out}");
    }
    let names: Vec<String> = setup.fed.parties.iter().map(|p| p.name.clone()).collect();
    let each: Vec<(&str, std::path::PathBuf)> =
        names.iter().map(|n| (n.as_str(), bin.clone())).collect();
    let mut cluster = setup.start(&each);
    cluster.all_connected().await;
    let mut a = analytics(variance(None, Some(band), "cholesterol"), Privacy::Exact);
    a.max_rows = 100;
    let req = AdminRequest::Submit {
        kind: JobKind::Analytics,
        dataset: "patients".into(),
        columns: Vec::new(),
        security: SecurityModel::Malicious,
        bench: None,
        recipients: Vec::new(),
        analytics: Some(Box::new(a)),
    };
    let AdminResponse::Submitted { id } = cluster.admin("hospital-a", req).await else {
        panic!("not proposed")
    };
    let views = cluster.wait_job(id).await;
    let v = &views[0];
    assert_eq!(v.state, JobState::Done, "{:?}", v.state);
    let Some(JobOutput::Analytics(r)) = &v.result else {
        panic!("no result")
    };
    cluster.stop().await;
    let young = r["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["group"] == serde_json::json!([0, 40]))
        .collect::<Vec<_>>();
    let get = |name: &str| {
        young
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| &e["value"])
    };
    if get("count")?["type"] == "suppressed" {
        assert!(
            get("mean").is_none(),
            "a suppressed band shows nothing else: {young:?}"
        );
        return None;
    }
    let n = get("count")?["value"].as_f64()?;
    let mean = get("mean")?["value"].as_f64()?;
    Some(n * mean - 9.0 * 200.0)
}

/// The rule stops own-row subtraction: hospital-b's keep bit suppresses the band.
#[tokio::test(flavor = "multi_thread")]
async fn own_row_subtraction_is_suppressed() {
    assert_eq!(own_row_subtraction(parley_bin(), parley_bin()).await, None);
}

/// Mutation twin (tests/run.sh): with the keep bits switched off (`PARLEY_MUTATION=
/// no-keep-bits` in the sim-cheat build) the same attack recovers hospital-b's patient.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "mutation twin: run by tests/run.sh"]
async fn mutation_twin_no_keep_bits() {
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("parley-no-keep-bits");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nPARLEY_MUTATION=no-keep-bits exec '{}' \"$@\"\n",
            parley_tests::parley_cheat_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let got = own_row_subtraction(parley_tests::parley_cheat_bin(), wrapper).await;
    let value = got.expect("with the rule off the band is released");
    assert!(
        (value - 333.0).abs() < 1e-6,
        "recovered {value}, planted 333"
    );
}

/// A 0/1 column stored in a wide column (bounds 60–260, values 120 and 121 only) is
/// categorical in the data: an exact view summing it is suppressed whole, by the data owner's
/// keep bits rather than by a refusal (which would depend on the rows).
#[test]
fn a_value_column_with_few_values_is_suppressed_not_refused() {
    use parley::store::data::sample_patients;
    use parley_enclave::analytics::Plan;
    use parley_enclave::analytics::rule::Ledger;
    let policy = parley::dev::study::policy(5000);
    let (_, spec) = parley::dev::study::jobs(5000)
        .unwrap()
        .into_iter()
        .find(|(t, _)| t.contains("age band"))
        .unwrap();
    let plan = Plan::new(&spec, 3, 1, &[&policy]).unwrap();
    let mut ds = sample_patients(0, 2000);
    let keep = |ds: &parley::store::data::Dataset| {
        parley::jobs::analytics::keep_bits(&plan, ds, &Ledger::default(), "j", 1, 10)
            .unwrap()
            .keep
    };
    assert!(
        keep(&ds).iter().any(|&k| k),
        "varied values: bands are kept"
    );
    let bp = ds.schema.column_index("systolic_bp").unwrap();
    for (i, v) in ds.columns[bp].iter_mut().enumerate() {
        *v = 120 + (i % 2) as i64;
    }
    assert!(
        parley::jobs::analytics::categorical_in(&ds, "systolic_bp", 10),
        "two values is categorical"
    );
    assert!(
        keep(&ds).iter().all(|&k| !k),
        "a categorical value column releases nothing"
    );
}

/// Two datasets of one party with exact views: refused at load unless each is declared
/// disjoint (one ledger per dataset would let the same people be differenced across them).
#[tokio::test(flavor = "multi_thread")]
async fn exact_views_on_two_datasets_need_them_declared_disjoint() {
    let setup = Setup::new(1).await;
    let a = setup.fed.party("hospital-a").unwrap().config.clone();
    setup
        .fed
        .edit_config("hospital-a", |c| {
            let mut second = c.release[0].clone();
            second.dataset = "patients-2025".into();
            c.release.push(second);
        })
        .unwrap();
    let e = parley::config::NodeConfig::load(&a).expect_err("two populations");
    assert!(e.to_string().contains("disjoint = true"), "{e}");
    setup
        .fed
        .edit_config("hospital-a", |c| {
            for r in &mut c.release {
                r.disjoint = true;
            }
        })
        .unwrap();
    parley::config::NodeConfig::load(&a).expect("declared disjoint");
}

/// Versions through `summary-stats` (an exact release of the whole dataset as one cell):
/// re-run after hospital-b imports one more patient, the total would difference that
/// patient, so hospital-b's keep bit suppresses it; with ten more newcomers (eleven new
/// together) the total is released.
#[tokio::test(flavor = "multi_thread")]
async fn a_total_rerun_after_one_new_row_is_suppressed() {
    use parley::jobs::job::JobOutput;
    let setup = Setup::new(40).await;
    // Room for the newcomers under hospital-b's declared size.
    setup
        .fed
        .edit_config("hospital-b", |c| c.release[0].max_rows = 100)
        .unwrap();
    let b = setup.fed.party("hospital-b").unwrap().clone();
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    assert!(matches!(total(&cluster).await, JobOutput::SummaryStats(_)));
    let csv = std::fs::read_to_string(b.dir.join("patients.csv")).unwrap();
    let import = |cluster: &parley_tests::Cluster, extra: &str, tag: &str| {
        let file = cluster.setup.tmp.path().join(format!("b-{tag}.csv"));
        std::fs::write(&file, format!("{csv}{extra}")).unwrap();
        let (ok, out) = parley_tests::data_import(&b.config, "patients", "patients", &file);
        assert!(ok, "{out}");
    };
    let one = "44,1,131,277,0\n";
    import(&cluster, one, "one");
    match total(&cluster).await {
        JobOutput::Suppressed(why) => assert_eq!(why, "suppressed by the rule"),
        other => panic!("one new patient differenced by a total re-run: {other:?}"),
    }
    // Keep the first newcomer (dropping it would be a removal: the dataset would freeze).
    let ten: String = std::iter::once(one.to_owned())
        .chain((0..10).map(|i| format!("{},0,140,{},0\n", 50 + i, 200 + i)))
        .collect();
    import(&cluster, &ten, "ten");
    assert!(matches!(total(&cluster).await, JobOutput::SummaryStats(_)));
    cluster.stop().await;
}

/// A summary-stats job of cholesterol proposed by hospital-b, and what it delivered.
async fn total(cluster: &parley_tests::Cluster) -> parley::jobs::job::JobOutput {
    let id = cluster
        .submit("hospital-b", &["cholesterol"])
        .await
        .unwrap();
    let views = cluster.wait_job(id).await;
    assert_eq!(
        views[0].state,
        parley::jobs::job::JobState::Done,
        "{:?}",
        views[0].state
    );
    views[0].result.clone().expect("a result")
}
