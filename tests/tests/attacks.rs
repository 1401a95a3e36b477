//! The privacy rule under attack (issue 17; DESIGN §6, "The privacy rule", items 1–7), as an
//! analyst or a curious party meets the product: a federation made by the README's
//! `parley demo --rows N --dir DIR`, real `parley node` processes, the CLI and the network.
//!
//! The test rewrites each hospital's `[[release]]` with the views the attacks need, imports
//! crafted data (`parley data import`, also through a running node), proposes jobs with
//! `parley job propose` and reads what was released with `parley job show`. Every attack of
//! the list is replayed and must now be refused, suppressed or DP-only:
//!
//! 1. isolation through a filter (exact: refused; DP: noise and standard errors),
//! 2. differencing two partitions (undeclared: refused; declared: the ledger suppresses),
//! 3. own-row subtraction (k is each party's own, not the combined count),
//! 4. complements and categories (a filtered cell beside its band; DP-only kinds; a
//!    categorical value column; what a suppressed cell shows),
//! 5. data-dependent refusals (byte-identical over different rows; no budget left shown),
//! 6. versions (an added row, then newcomers in a group of `min_k`, then an erasure),
//! 7. a silent downgrade to semi-honest.
//!
//! At the end a differencing adversary who knows every row of the other parties checks, per
//! party, that no individual's indicator lies in the span of the memberships of the cells
//! that were released (modulo 2^61 − 1; `enclave/tests/release_rule.rs` has the exact rational adversary).
//!
//! Data design: every row comes in blocks of at least `min_k` identical rows (identical rows
//! are distinct individuals that share every membership, so they always form one atom),
//! except the attacks' targets. The demo's one sample row per hospital stays in the new
//! version (removing it would freeze the dataset: no stable identifier) and gets nine
//! copies, so it is a block too. Twenty more rows per hospital share a block's partition
//! columns and differ in cholesterol, so that column is not categorical in any hospital's
//! data (a value column taking fewer than 2·min_k values is suppressed whole).
//!
//! A second test replays attack 5's budget refusal where an operator approves by hand (the
//! reservation at approval once sent the budget's remaining, total, spent and reserved ρ
//! to every party as the refusal reason).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use parley::config::NodeConfig;
use parley::dev::launcher::{JobReach, NodeProcess};
use parley::jobs::job::JobId;
use parley_enclave::analytics::spec::{GroupBy, KindName};
use parley_enclave::analytics::{Release, ReleasePolicy, View};
use serde_json::{Value, json};

const HOSPITALS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];
/// Every party's `min_k`.
const MIN_K: u64 = 10;
/// Each party's declared size (`[[release]] max_rows`): hospital-b's is the largest, so a
/// job sized for hospital-a and hospital-c reaches hospital-b and is refused there.
const DECLARED: [u64; 3] = [60, 80, 60];
/// Every job's `max_rows` (at least every declared size).
const MAX_ROWS: u64 = 80;
/// hospital-c's total budget: lower than the others', so a job can fit theirs and not its.
const C_BUDGET: &str = "1";
/// Views: mean cholesterol by age split at 40, and at 41 (the differencing pair).
const AGE_SPLIT_40: [i64; 3] = [0, 40, 121];
const AGE_SPLIT_41: [i64; 3] = [0, 41, 121];
/// The bands of the diabetic × age view.
const AGE_BANDS: [i64; 4] = [0, 30, 40, 121];
/// The count view by systolic BP (own-row subtraction).
const BP_SPLIT: [i64; 3] = [0, 200, 1000];

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

// ---------------------------------------------------------------------------------------
// The data the test crafts, and who each row is.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Row {
    age: i64,
    sex: i64,
    bp: i64,
    chol: i64,
    diab: i64,
}

const fn row(age: i64, sex: i64, bp: i64, chol: i64, diab: i64) -> Row {
    Row {
        age,
        sex,
        bp,
        chol,
        diab,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Age,
    Bp,
    Diab,
}

impl Col {
    fn name(self) -> &'static str {
        match self {
            Col::Age => "age",
            Col::Bp => "systolic_bp",
            Col::Diab => "diabetic",
        }
    }

    fn of(self, r: &Row) -> i64 {
        match self {
            Col::Age => r.age,
            Col::Bp => r.bp,
            Col::Diab => r.diab,
        }
    }
}

// hospital-a: nine rows of systolic BP ≥ 200 (attack 3), otherwise blocks.
const A9: Row = row(87, 0, 210, 230, 0);
const A_YOUNG: Row = row(35, 1, 118, 190, 0);
// hospital-b: the targets.
const B_OLD: Row = row(60, 0, 140, 210, 0);
/// b's only row of systolic BP ≥ 200 (attack 3); same age and diabetic as B_OLD.
const B_S3: Row = row(60, 0, 215, 240, 0);
/// The one patient aged 40 (attack 2).
const B_P40: Row = row(40, 1, 135, 262, 0);
/// 24 non-diabetics and one diabetic in the band [30, 40) (attack 4).
const B_BAND: Row = row(35, 0, 120, 200, 0);
const B_D1: Row = row(35, 0, 120, 310, 1);
/// The row added in version 3 (attack 6; diabetic, so attack 5's filter matches it).
const B_NEW: Row = row(70, 1, 150, 270, 1);
// hospital-c: the one patient with systolic BP 178 (attack 1).
const C_T178: Row = row(61, 1, 178, 226, 1);
const C_YOUNG: Row = row(25, 0, 115, 175, 0);

/// One individual: a local identifier (the node follows rows by content across versions)
/// and its row.
#[derive(Clone, Copy, Debug)]
struct Person {
    id: usize,
    row: Row,
}

/// One hospital's versions of `patients` as the test imported them.
#[derive(Default)]
struct Data {
    versions: BTreeMap<u64, Vec<Person>>,
    next: usize,
}

impl Data {
    fn current(&self) -> u64 {
        *self.versions.keys().last().expect("a version")
    }

    fn rows(&self, v: u64) -> &[Person] {
        &self.versions[&v]
    }

    /// The next version: the current rows plus `n` new individuals with row `r`.
    fn with_added(&mut self, r: Row, n: usize) -> u64 {
        let mut rows = self
            .versions
            .get(&self.current())
            .cloned()
            .unwrap_or_default();
        for _ in 0..n {
            rows.push(Person {
                id: self.next,
                row: r,
            });
            self.next += 1;
        }
        let v = self.current() + 1;
        self.versions.insert(v, rows);
        v
    }

    /// The next version: the current rows without the last individual with row `r`.
    fn with_erased(&mut self, r: Row) -> (u64, Person) {
        let mut rows = self.rows(self.current()).to_vec();
        let at = rows
            .iter()
            .rposition(|p| p.row == r)
            .expect("a row to erase");
        let gone = rows.remove(at);
        let v = self.current() + 1;
        self.versions.insert(v, rows);
        (v, gone)
    }

    fn csv(&self, v: u64) -> String {
        let mut s = String::from("age,sex,systolic_bp,cholesterol,diabetic\n");
        for p in self.rows(v) {
            let r = p.row;
            s.push_str(&format!(
                "{},{},{},{},{}\n",
                r.age, r.sex, r.bp, r.chol, r.diab
            ));
        }
        s
    }
}

/// The demo's sample rows of one hospital (`DIR/hospital-x/patients.csv`).
fn demo_rows(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).expect("the demo leaves patients.csv");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("age,sex,systolic_bp,cholesterol,diabetic"),
        "{}",
        path.display()
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Vec<i64> = l.split(',').map(|x| x.trim().parse().unwrap()).collect();
            row(v[0], v[1], v[2], v[3], v[4])
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Release policies and specs.

fn release_policy(declared: u64) -> ReleasePolicy {
    let g = |c: &str, e: &[i64]| GroupBy {
        column: c.into(),
        edges: e.to_vec(),
    };
    let chol = |partition| View {
        kinds: vec![KindName::Count, KindName::Mean, KindName::Variance],
        column: Some("cholesterol".into()),
        partition,
    };
    ReleasePolicy {
        dataset: "patients".into(),
        max_rows: declared,
        kinds: [
            (KindName::Min, Release::Refused),
            (KindName::Max, Release::Refused),
        ]
        .into_iter()
        .collect(),
        default: Release::Dp,
        min_k: Some(MIN_K),
        views: vec![
            chol(vec![g("age", &AGE_SPLIT_40)]),
            chol(vec![g("age", &AGE_SPLIT_41)]),
            chol(vec![g("diabetic", &[0, 1, 2]), g("age", &AGE_BANDS)]),
            View {
                kinds: vec![KindName::Count],
                column: None,
                partition: vec![g("systolic_bp", &BP_SPLIT)],
            },
            // An owner's mistake the node must catch: a categorical value column.
            View {
                kinds: vec![KindName::Mean],
                column: Some("diabetic".into()),
                partition: Vec::new(),
            },
        ],
        disjoint: false,
        semi_honest: false,
        max_rho_per_job: Some("1".parse().unwrap()),
    }
}

fn exact() -> Value {
    json!({ "mode": "exact" })
}

fn dp(rho: &str) -> Value {
    json!({ "mode": "dp", "rho": rho, "delta": "0.000001" })
}

fn spec(analysis: Value, privacy: Value) -> Value {
    json!({
        "analysis": analysis,
        "bounds": {
            "age": { "min": 0, "max": 120 },
            "sex": { "min": 0, "max": 1 },
            "systolic_bp": { "min": 60, "max": 260 },
            "cholesterol": { "min": 80, "max": 500 },
            "diabetic": { "min": 0, "max": 1 },
        },
        "max_rows": MAX_ROWS,
        "privacy": privacy,
        "neighbouring": "add-remove-one",
        "k_anonymity": null,
        "recipients": "all",
        "security": "malicious",
    })
}

/// An exact job of a declared view: its kind, filter and group-by (what the differencing
/// adversary needs to know of its cells).
#[derive(Clone, Debug)]
struct Exact {
    kind: &'static str,
    filter: Option<(Col, i64)>,
    group_by: Option<(Col, Vec<i64>)>,
}

impl Exact {
    fn spec(&self) -> Value {
        let mut a = json!({ "kind": self.kind });
        if self.kind != "count" {
            a["column"] = json!("cholesterol");
        }
        a["filter"] = match self.filter {
            Some((c, v)) => json!({ "column": c.name(), "equals": v }),
            None => Value::Null,
        };
        a["group_by"] = match &self.group_by {
            Some((c, e)) => json!({ "column": c.name(), "edges": e }),
            None => Value::Null,
        };
        spec(a, exact())
    }

    /// Cell `g` (in the job's public order) holds `r`.
    fn holds(&self, g: usize, r: &Row) -> bool {
        if let Some((c, v)) = self.filter
            && c.of(r) != v
        {
            return false;
        }
        match &self.group_by {
            None => g == 0,
            Some((c, e)) => {
                // Values outside the edges are clipped into the end groups.
                let x = c.of(r);
                let last = e.len() - 2;
                let bin = (0..=last).find(|&i| x < e[i + 1]).unwrap_or(last);
                bin == g
            }
        }
    }

    fn cells(&self) -> usize {
        self.group_by.as_ref().map_or(1, |(_, e)| e.len() - 1)
    }
}

fn variance_by(c: Col, edges: &[i64], filter: Option<(Col, i64)>) -> Exact {
    Exact {
        kind: "variance",
        filter,
        group_by: Some((c, edges.to_vec())),
    }
}

// ---------------------------------------------------------------------------------------
// The federation: the demo's directory, three node processes, the CLI.

struct Fed {
    /// Killed on drop (and they die with this process).
    nodes: Vec<NodeProcess>,
    bin: PathBuf,
    dir: PathBuf,
    specs: usize,
    data: [Data; 3],
    /// Every exact job that ran: the job, each party's version it read, and per cell
    /// whether it was released.
    released: Vec<(String, Exact, [u64; 3], Vec<bool>)>,
    _tmp: tempfile::TempDir,
}

impl Fed {
    fn config(&self, h: &str) -> PathBuf {
        self.dir.join(h).join("node.toml")
    }

    /// `parley ARGS`: whether it succeeded, stdout, stderr.
    fn parley(&self, args: &[&OsStr]) -> (bool, String, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .output()
            .expect("run parley");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `parley data import` of version `v` of hospital `i`'s data (through its node when
    /// it runs).
    fn import(&self, i: usize, v: u64) -> String {
        let h = HOSPITALS[i];
        let file = self.dir.join(format!("{h}-v{v}.csv"));
        std::fs::write(&file, self.data[i].csv(v)).unwrap();
        let cfg = self.config(h);
        let (ok, out, err) = self.parley(&[
            os("data"),
            os("import"),
            os("--config"),
            cfg.as_os_str(),
            os("--dataset"),
            os("patients"),
            os("--schema"),
            os("patients"),
            os("--file"),
            file.as_os_str(),
        ]);
        assert!(ok, "importing {h} version {v}: {out}{err}");
        assert!(
            out.contains(&format!("version {v} ")),
            "{h}'s import became another version than {v}: {out}"
        );
        out
    }

    fn spec_file(&mut self, spec: &Value) -> PathBuf {
        self.specs += 1;
        let f = self.dir.join(format!("job-{}.json", self.specs));
        std::fs::write(&f, serde_json::to_vec_pretty(spec).unwrap()).unwrap();
        f
    }

    /// `parley job propose` on `from`: the job id, or the CLI's refusal (stderr).
    fn propose(&mut self, from: &str, spec: &Value, extra: &[&str]) -> Result<JobId, String> {
        let file = self.spec_file(spec);
        let cfg = self.config(from);
        let mut args = vec![
            os("job"),
            os("propose"),
            os("--config"),
            cfg.as_os_str(),
            os("--dataset"),
            os("patients"),
            os("--kind"),
            os("analytics"),
            os("--spec"),
            file.as_os_str(),
        ];
        args.extend(extra.iter().map(|s| os(s)));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out, err) = self.parley(&args);
            if ok {
                let id = out
                    .trim()
                    .strip_prefix("proposed job ")
                    .unwrap_or_else(|| panic!("job propose printed {out:?}"));
                return Ok(id.parse().unwrap());
            }
            // A session may still be (re)connecting: not a refusal.
            if err.contains("no attested session") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            return Err(err);
        }
    }

    /// A proposal every node must refuse at once: the proposer's refusal text (stderr).
    fn refused_at(&mut self, from: &str, spec: &Value, extra: &[&str], attack: &str) -> String {
        match self.propose(from, spec, extra) {
            Ok(id) => panic!("{attack}: {from} accepted the proposal (job {id}): {spec}"),
            Err(e) => e,
        }
    }

    /// `parley job show` on node `h`.
    fn show(&self, h: &str, id: JobId) -> Value {
        let cfg = self.config(h);
        let (ok, out, err) = self.parley(&[
            os("job"),
            os("show"),
            os("--config"),
            cfg.as_os_str(),
            os(&id.to_string()),
        ]);
        assert!(ok, "job show {id} on {h}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("job show is not JSON ({e}): {out}"))
    }

    /// Jobs each node holds (`parley job list --json`).
    fn job_counts(&self) -> Vec<usize> {
        HOSPITALS
            .iter()
            .map(|h| {
                let cfg = self.config(h);
                let (ok, out, err) = self.parley(&[
                    os("job"),
                    os("list"),
                    os("--json"),
                    os("--config"),
                    cfg.as_os_str(),
                ]);
                assert!(ok, "job list on {h}: {err}");
                serde_json::from_str::<Vec<Value>>(&out).unwrap().len()
            })
            .collect()
    }

    /// Wait until job `id` has ended on every node; what `parley job show` says on each
    /// (they agree on the state and the result), as the proposer shows it.
    async fn outcome(&self, id: JobId) -> Value {
        parley::dev::launcher::wait_job(
            &self.nodes,
            id,
            JobReach::EveryNode,
            Duration::from_secs(90),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let views: Vec<Value> = HOSPITALS.iter().map(|h| self.show(h, id)).collect();
        for (h, v) in HOSPITALS.iter().zip(&views).skip(1) {
            assert_eq!(v["state"], views[0]["state"], "{h} ends job {id} otherwise");
            assert_eq!(v["result"], views[0]["result"], "{h} got another result");
        }
        let proposer = views[0]["spec"]["proposer"].as_str().unwrap().to_owned();
        let i = HOSPITALS.iter().position(|h| *h == proposer).unwrap();
        views[i].clone()
    }

    /// Propose and wait: the job's final view.
    async fn run(&mut self, from: &str, spec: &Value, attack: &str) -> Value {
        let id = self
            .propose(from, spec, &[])
            .unwrap_or_else(|e| panic!("{attack}: the proposal was refused: {e}"));
        self.outcome(id).await
    }

    /// Run an exact job from `from`: it must be done; per cell, whether it was released
    /// (checked against the plaintext where it was), recorded for the adversary.
    async fn run_exact(&mut self, from: &str, job: &Exact, label: &str) -> Vec<bool> {
        let view = self.run(from, &job.spec(), label).await;
        assert_eq!(view["state"]["state"], "done", "{label}: {}", view["state"]);
        let versions = [0, 1, 2].map(|i| {
            view["spec"]["dataset_versions"][HOSPITALS[i]]
                .as_u64()
                .unwrap()
        });
        for (i, v) in versions.iter().enumerate() {
            assert_eq!(
                *v,
                self.data[i].current(),
                "{label}: the job read another version of {}",
                HOSPITALS[i]
            );
        }
        let result = &view["result"]["values"];
        assert_eq!(result["privacy"]["mode"], "exact", "{label}");
        let cells = cells_of(result, label);
        assert_eq!(cells.len(), job.cells(), "{label}: cells {result}");
        let mut kept = Vec::new();
        for (g, (group, released, count, mean)) in cells.iter().enumerate() {
            kept.push(*released);
            if !released {
                continue;
            }
            // The released numbers are the plaintext's.
            let (n, sum) = self.plaintext(job, g, versions);
            if job.kind != "mean" {
                assert_eq!(*count, Some(n), "{label}: count of cell {group:?}");
            }
            if let Some(m) = mean {
                let want = sum as f64 / n as f64;
                assert!(
                    (m - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{label}: mean of cell {group:?} is {m}, the plaintext's {want}"
                );
            }
        }
        self.released
            .push((label.to_owned(), job.clone(), versions, kept.clone()));
        kept
    }

    /// Count and Σ cholesterol of cell `g` of `job` over every party's rows.
    fn plaintext(&self, job: &Exact, g: usize, versions: [u64; 3]) -> (i64, i64) {
        let mut n = 0;
        let mut s = 0;
        for (i, v) in versions.iter().enumerate() {
            for p in self.data[i].rows(*v) {
                if job.holds(g, &p.row) {
                    n += 1;
                    s += p.row.chol;
                }
            }
        }
        (n, s)
    }

    /// The three nodes, as child processes (`parley node --config …`); returns once every
    /// session is up with its peer's catalog.
    async fn start(&mut self) {
        for h in HOSPITALS {
            let d = self.dir.join(h);
            self.nodes.push(
                NodeProcess::spawn(&self.bin, h, &self.config(h), &d, &d.join("node.log"))
                    .expect("spawn parley node"),
            );
        }
        parley::dev::launcher::wait_until(
            &mut self.nodes,
            Duration::from_secs(60),
            "every session up, with its peer's catalog",
            parley::dev::launcher::all_connected,
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Rewrite hospital `h`'s `node.toml` (parsed as a [`NodeConfig`], written back as TOML).
    fn edit_config(&self, h: &str, edit: impl FnOnce(&mut NodeConfig)) {
        let path = self.config(h);
        let mut cfg: NodeConfig = toml::from_str(&std::fs::read_to_string(&path).unwrap())
            .expect("the demo's node.toml is a NodeConfig");
        edit(&mut cfg);
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    }

    async fn stop(mut self) {
        for n in self.nodes.iter_mut() {
            n.stop(Duration::from_secs(5)).await;
        }
    }
}

/// The README's federation: `parley demo --rows 1 --dir DIR` (its nodes stop with it).
fn demo(bin: &Path, dir: &Path) {
    let out = Command::new(bin)
        .args(["demo", "--rows", "1", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "parley demo failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Per cell of an exact count, mean or variance result, in order: its group, whether it
/// was released, and its count and mean where the kind releases them. A suppressed cell
/// must show nothing but `{"type": "suppressed"}` — no "no rows" or "fewer than 2 rows"
/// flag, no other estimate.
fn cells_of(result: &Value, label: &str) -> Vec<(Value, bool, Option<i64>, Option<f64>)> {
    let estimates = result["estimates"].as_array().expect("estimates");
    let mut groups: Vec<Value> = Vec::new();
    for e in estimates {
        if !groups.contains(&e["group"]) {
            groups.push(e["group"].clone());
        }
    }
    groups
        .into_iter()
        .map(|g| {
            let of: Vec<&Value> = estimates.iter().filter(|e| e["group"] == g).collect();
            let first = of
                .iter()
                .find(|e| e["name"] == "count")
                .or_else(|| of.iter().find(|e| e["name"] == "mean"))
                .unwrap_or_else(|| panic!("{label}: no count or mean in group {g}: {result}"));
            if first["value"]["type"] == "suppressed" {
                assert_eq!(
                    of.len(),
                    1,
                    "complements and categories ({label}): a suppressed cell {g} shows more than its suppression: {of:?}"
                );
                assert_eq!(
                    first["value"],
                    json!({ "type": "suppressed" }),
                    "complements and categories ({label}): a suppressed cell's value"
                );
                let keys: BTreeSet<&str> = first
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(
                    keys,
                    BTreeSet::from(["name", "group", "value"]),
                    "complements and categories ({label}): a suppressed cell carries {first}"
                );
                return (g, false, None, None);
            }
            let n = of
                .iter()
                .find(|e| e["name"] == "count")
                .map(|c| {
                    c["value"]["value"]
                        .as_i64()
                        .unwrap_or_else(|| panic!("{label}: count {c}"))
                });
            let mean = of
                .iter()
                .find(|e| e["name"] == "mean")
                .and_then(|e| e["value"]["value"].as_f64());
            (g, true, n, mean)
        })
        .collect()
}

/// The numbers in a text (maximal runs of digits and dots, e.g. "0.95", "60").
fn numbers(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|t| t.trim_matches('.'))
        .filter(|t| t.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

fn strings(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------
// The differencing adversary: exact linear algebra over GF(2^61 − 1).

const P: u64 = (1 << 61) - 1;

fn mul(a: u64, b: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(P)) as u64
}

fn inv(a: u64) -> u64 {
    let (mut r, mut b, mut e) = (1u64, a, P - 2);
    while e > 0 {
        if e & 1 == 1 {
            r = mul(r, b);
        }
        b = mul(b, b);
        e >>= 1;
    }
    r
}

fn rank(mut m: Vec<Vec<u64>>) -> usize {
    let cols = m.first().map_or(0, Vec::len);
    let mut r = 0;
    for c in 0..cols {
        let Some(p) = (r..m.len()).find(|&i| m[i][c] != 0) else {
            continue;
        };
        m.swap(r, p);
        let iv = inv(m[r][c]);
        let pivot: Vec<u64> = m[r].iter().map(|&x| mul(x, iv)).collect();
        for (i, rowv) in m.iter_mut().enumerate() {
            if i != r && rowv[c] != 0 {
                let f = rowv[c];
                for (x, y) in rowv.iter_mut().zip(&pivot) {
                    *x = (*x + P - mul(f, *y)) % P;
                }
            }
        }
        m[r] = pivot;
        r += 1;
    }
    r
}

/// The individuals of hospital `i` that some combination of the released cells of `jobs`
/// (all jobs if empty; an adversary who knows every other party's rows cancels theirs)
/// isolates: those whose indicator lies in the span of the cells' membership vectors.
fn isolated(fed: &Fed, i: usize, jobs: &[&str]) -> Vec<Person> {
    isolated_if(fed, i, jobs, false)
}

/// [`isolated`], or with `every_cell` what it would isolate had every cell of `jobs` been
/// released (the attack without the rule: proof that the attack is real).
fn isolated_if(fed: &Fed, i: usize, jobs: &[&str], every_cell: bool) -> Vec<Person> {
    let data = &fed.data[i];
    let mut people: BTreeMap<usize, Person> = BTreeMap::new();
    for rows in data.versions.values() {
        for p in rows {
            people.insert(p.id, *p);
        }
    }
    let index: BTreeMap<usize, usize> = people.keys().enumerate().map(|(k, id)| (*id, k)).collect();
    let mut m: Vec<Vec<u64>> = Vec::new();
    for (label, job, versions, kept) in &fed.released {
        if !jobs.is_empty() && !jobs.contains(&label.as_str()) {
            continue;
        }
        for (g, _) in kept.iter().enumerate().filter(|(_, k)| **k || every_cell) {
            let mut v = vec![0u64; people.len()];
            for p in data.rows(versions[i]) {
                if job.holds(g, &p.row) {
                    v[index[&p.id]] = 1;
                }
            }
            m.push(v);
        }
    }
    if m.is_empty() {
        return Vec::new();
    }
    let base = rank(m.clone());
    people
        .values()
        .filter(|p| {
            let mut with = m.clone();
            let mut e = vec![0u64; people.len()];
            e[index[&p.id]] = 1;
            with.push(e);
            rank(with) == base
        })
        .copied()
        .collect()
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_attack_on_the_privacy_rule_is_refused_suppressed_or_dp_only() {
    let started = Instant::now();
    let bin = parley_tests::parley_bin();
    let tmp = tempfile::Builder::new()
        .prefix("parley-attacks-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().join("fed");

    // The README's federation: `parley demo --rows N --dir DIR` (its nodes stop with it).
    demo(&bin, &dir);
    eprintln!("demo: {:.1} s", started.elapsed().as_secs_f64());

    // Version 2 of each hospital: the demo's row (kept: removing it would freeze the
    // dataset) and nine copies of it, then the crafted rows.
    let sample: Vec<Row> = HOSPITALS
        .iter()
        .map(|h| {
            let rows = demo_rows(&dir.join(h).join("patients.csv"));
            assert_eq!(rows.len(), 1, "{h}: demo --rows 1");
            rows[0]
        })
        .collect();
    // The design's cells must not be touched by the demo's rows (deterministic sample data).
    for (h, d) in HOSPITALS.iter().zip(&sample) {
        assert!(
            !(30..=40).contains(&d.age) && d.bp < 178,
            "{h}'s sample row {d:?} lands in a cell the attacks craft: move the test's targets"
        );
    }
    let mut data: [Data; 3] = Default::default();
    // Each hospital's cholesterol must take at least 2·min_k values, or the column is
    // categorical there and its keep bits suppress every exact sum of it: twenty rows that
    // share every partition column with a block of ten (so they join its atom) and differ
    // only in cholesterol.
    let filler = |base: Row, from: i64| -> Vec<(Row, usize)> {
        (0..20)
            .map(|j| {
                (
                    Row {
                        chol: from + j,
                        ..base
                    },
                    1,
                )
            })
            .collect()
    };
    let blocks: [Vec<(Row, usize)>; 3] = [
        vec![(sample[0], 9), (A9, 9), (A_YOUNG, 10)],
        vec![
            (sample[1], 9),
            (B_OLD, 10),
            (B_S3, 1),
            (B_P40, 1),
            (B_BAND, 24),
            (B_D1, 1),
        ],
        vec![(sample[2], 9), (C_T178, 1), (C_YOUNG, 10)],
    ];
    let blocks: [Vec<(Row, usize)>; 3] = [
        [blocks[0].clone(), filler(A_YOUNG, 150)].concat(),
        [blocks[1].clone(), filler(B_OLD, 150)].concat(),
        [blocks[2].clone(), filler(C_YOUNG, 130)].concat(),
    ];
    for (i, d) in data.iter_mut().enumerate() {
        d.versions.insert(
            1,
            vec![Person {
                id: 0,
                row: sample[i],
            }],
        );
        d.next = 1;
        let mut rows = d.versions[&1].clone();
        for (r, n) in &blocks[i] {
            for _ in 0..*n {
                rows.push(Person {
                    id: d.next,
                    row: *r,
                });
                d.next += 1;
            }
        }
        assert!(rows.len() as u64 <= DECLARED[i]);
        d.versions.insert(2, rows);
    }

    let mut fed = Fed {
        nodes: Vec::new(),
        bin: bin.clone(),
        dir: dir.clone(),
        specs: 0,
        data,
        released: Vec::new(),
        _tmp: tmp,
    };

    // Each hospital's `[[release]]`: the attacks' views, its declared size; hospital-c's
    // budget lowered (attack 5's budget refusal).
    for (i, h) in HOSPITALS.iter().enumerate() {
        fed.edit_config(h, |cfg| {
            assert!(
                cfg.jobs.auto_approve.iter().any(|k| k == "analytics"),
                "{h} approves analytics jobs by rule"
            );
            cfg.release = vec![release_policy(DECLARED[i])];
            if *h == "hospital-c" {
                cfg.budgets
                    .insert("patients".into(), C_BUDGET.parse().unwrap());
            }
        });
    }
    for i in 0..3 {
        fed.import(i, 2);
    }

    fed.start().await;
    eprintln!("nodes up: {:.1} s", started.elapsed().as_secs_f64());

    // ---- Refusals first: nothing of them may reach the ledger or a result. ----
    let jobs_before = fed.job_counts();

    // 1. Isolation: an exact variance of cholesterol among systolic BP = 178 (one patient
    // of hospital-c) is no declared view: every node refuses it.
    let isolate = spec(
        json!({ "kind": "variance", "column": "cholesterol",
                "filter": { "column": "systolic_bp", "equals": 178 }, "group_by": null }),
        exact(),
    );
    for h in HOSPITALS {
        let why = fed.refused_at(h, &isolate, &[], "isolation");
        assert!(
            why.contains(&format!("{h} refuses"))
                && why.contains("releases exactly only the views its owner declares"),
            "isolation: {h}'s refusal: {why}"
        );
    }

    // 2. Differencing two undeclared partitions on systolic BP: refused.
    for edges in [[0, 178, 1000], [0, 179, 1000]] {
        let s = spec(
            json!({ "kind": "variance", "column": "cholesterol", "filter": null,
                    "group_by": { "column": "systolic_bp", "edges": edges } }),
            exact(),
        );
        let why = fed.refused_at("hospital-a", &s, &[], "differencing");
        assert!(
            why.contains("releases exactly only the views its owner declares"),
            "differencing: group-by systolic_bp {edges:?}: {why}"
        );
    }

    // 4. Complements and categories: kinds that are no sum over a cell are DP only; a
    // categorical value column is never an exact view's, even if its owner declares one.
    for (kind, analysis) in [
        (
            "linear-regression",
            json!({ "kind": "linear-regression", "response": "cholesterol",
                    "predictors": ["diabetic"], "filter": null }),
        ),
        (
            "weighted-mean",
            json!({ "kind": "weighted-mean", "column": "cholesterol", "weight": "age",
                    "filter": null }),
        ),
        (
            "correlation",
            json!({ "kind": "correlation", "x": "age", "y": "cholesterol", "filter": null }),
        ),
        (
            "covariance",
            json!({ "kind": "covariance", "columns": ["age", "cholesterol"], "filter": null }),
        ),
    ] {
        let why = fed.refused_at("hospital-b", &spec(analysis, exact()), &[], kind);
        assert!(
            why.contains(&format!(
                "an exact {kind} is not a statistic the privacy rule releases"
            )) && why.contains("privacy.mode = \"dp\""),
            "complements and categories: an exact {kind}: {why}"
        );
    }
    let why = fed.refused_at(
        "hospital-c",
        &spec(
            json!({ "kind": "mean", "column": "diabetic", "filter": null, "group_by": null }),
            exact(),
        ),
        &[],
        "categorical",
    );
    assert!(
        why.contains("column \"diabetic\" of dataset \"patients\" is categorical"),
        "complements and categories: an exact mean of a 0/1 column: {why}"
    );

    // 7. Silent downgrade: the CLI refuses a flag that disagrees with the spec; the nodes
    // refuse an exact release under semi-honest, and a DP one where no policy names it.
    let declared_view = variance_by(Col::Age, &AGE_SPLIT_40, None).spec();
    let why = fed.refused_at(
        "hospital-a",
        &declared_view,
        &["--security", "semi-honest"],
        "downgrade",
    );
    assert!(
        why.contains("--security semi-honest disagrees with the spec's security"),
        "silent downgrade: the CLI's refusal: {why}"
    );
    let mut semi = declared_view.clone();
    semi["security"] = json!("semi-honest");
    let why = fed.refused_at("hospital-a", &semi, &[], "downgrade");
    assert!(
        why.contains("hospital-a refuses")
            && why.contains("an exact release runs only under the malicious security model"),
        "silent downgrade: an exact semi-honest spec: {why}"
    );
    let mut semi_dp = spec(
        json!({ "kind": "count", "filter": null, "group_by": null }),
        dp("0.1"),
    );
    semi_dp["security"] = json!("semi-honest");
    let why = fed.refused_at("hospital-b", &semi_dp, &[], "downgrade");
    assert!(
        why.contains("runs jobs only under the malicious security model"),
        "silent downgrade: a DP semi-honest spec under policies that do not name it: {why}"
    );

    assert_eq!(
        fed.job_counts(),
        jobs_before,
        "a refused proposal left a job on some node (something may have been released)"
    );

    // 5. Data-dependent refusals, first sitting (hospital-b holds one diabetic).
    let probes = refusal_probes(&mut fed).await;
    eprintln!("refusals: {:.1} s", started.elapsed().as_secs_f64());

    // 1, continued. The same isolation with DP runs: noise, standard errors.
    let mut isolate_dp = isolate.clone();
    isolate_dp["privacy"] = dp("0.1");
    let v = fed.run("hospital-a", &isolate_dp, "isolation (DP)").await;
    assert_eq!(
        v["state"]["state"], "done",
        "isolation (DP): {}",
        v["state"]
    );
    let r = &v["result"]["values"];
    assert_eq!(r["privacy"]["mode"], "dp", "isolation (DP): {r}");
    assert!(
        !r["privacy"]["noise"].as_array().unwrap().is_empty(),
        "isolation (DP): no noise reported: {r}"
    );
    let count = r["estimates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "count")
        .expect("a noisy count");
    assert!(
        count["standard_error"].as_f64().is_some_and(|s| s > 0.0),
        "isolation (DP): the count carries no standard error: {count}"
    );
    // (A standard deviation is √ of the noisy variance, whose derivative may not exist.)
    for e in r["estimates"].as_array().unwrap() {
        if e["value"]["type"] == "real" && e["name"] != "std_dev" {
            assert!(
                e["standard_error"].as_f64().is_some(),
                "isolation (DP): {e} carries no standard error"
            );
        }
    }

    // ---- The ledger: exact releases of declared views. ----
    const SPLIT_40: &str = "differencing: split at 40";
    const SPLIT_41: &str = "differencing: split at 41";
    const BANDS: &str = "complements: the bands";
    const BANDS_ND: &str = "complements: the bands, diabetic = 0";
    const BP_200: &str = "own-row subtraction: systolic BP split at 200";
    const REPEAT: &str = "versions: the same job again";
    const ONE_ADDED: &str = "versions: one row added";
    const TEN_ADDED: &str = "versions: ten rows added";
    const ONE_ERASED: &str = "versions: one row erased";
    let j1 = variance_by(Col::Age, &AGE_SPLIT_40, None);
    let j2 = variance_by(Col::Age, &AGE_SPLIT_41, None);
    let b_person = |fed: &Fed, r: Row| {
        let p: Vec<usize> = fed.data[1]
            .rows(fed.data[1].current())
            .iter()
            .filter(|p| p.row == r)
            .map(|p| p.id)
            .collect();
        p
    };
    let ids = |found: &[Person]| found.iter().map(|p| p.id).collect::<Vec<_>>();

    // 2. Differencing through two declared views: the split at 40 is released; the split
    // at 41 would give hospital-b's one patient aged 40, so hospital-b suppresses it.
    let kept = fed.run_exact("hospital-a", &j1, SPLIT_40).await;
    assert_eq!(kept, [true, true], "{SPLIT_40}: released");
    let kept = fed.run_exact("hospital-a", &j2, SPLIT_41).await;
    assert_eq!(
        kept,
        [false, false],
        "{SPLIT_41}: released beside the split at 40, it gives the age-40 patient's value"
    );
    let p40 = b_person(&fed, B_P40);
    assert_eq!(
        ids(&isolated_if(&fed, 1, &[SPLIT_40, SPLIT_41], true)),
        p40,
        "differencing: had both splits been released, only the age-40 patient is isolated"
    );
    let found = isolated(&fed, 1, &[SPLIT_40, SPLIT_41]);
    assert!(
        found.is_empty(),
        "differencing: what the two splits released isolates {found:?}"
    );

    // 4. Complements: the band [30, 40) holds 24 non-diabetics and 1 diabetic of
    // hospital-b. The mean of its non-diabetics beside the whole band gives the diabetic.
    let x = variance_by(Col::Age, &AGE_BANDS, None);
    let y = Exact {
        kind: "mean",
        filter: Some((Col::Diab, 0)),
        group_by: Some((Col::Age, AGE_BANDS.to_vec())),
    };
    let band = (0..x.cells()).find(|&g| x.holds(g, &B_D1)).unwrap();
    let in_band: Vec<Row> = fed.data[1]
        .rows(2)
        .iter()
        .filter(|p| x.holds(band, &p.row))
        .map(|p| p.row)
        .collect();
    assert_eq!(
        (
            in_band.len(),
            in_band.iter().filter(|r| r.diab == 1).count()
        ),
        (25, 1),
        "complements: the crafted band"
    );
    let kept_x = fed.run_exact("hospital-b", &x, BANDS).await;
    assert_eq!(kept_x, [true, true, true], "{BANDS}: released");
    let kept_y = fed.run_exact("hospital-b", &y, BANDS_ND).await;
    assert!(
        !(kept_x[band] && kept_y[band]),
        "complements: the band [30, 40) was released both whole and without its one diabetic"
    );
    assert!(
        !kept_y[band],
        "{BANDS_ND}: the band's non-diabetic mean was released beside the whole band"
    );
    assert_eq!(
        ids(&isolated_if(&fed, 1, &[BANDS, BANDS_ND], true)),
        b_person(&fed, B_D1),
        "complements: had both been released, only the band's diabetic is isolated"
    );
    let found = isolated(&fed, 1, &[SPLIT_40, BANDS, BANDS_ND]);
    assert!(found.is_empty(), "complements: isolated {found:?}");

    // 3. Own-row subtraction: systolic BP ≥ 200 holds 9 rows of hospital-a, 1 of
    // hospital-b, none of hospital-c: 10 combined, but hospital-a knows its own nine.
    let z = Exact {
        kind: "count",
        filter: None,
        group_by: Some((Col::Bp, BP_SPLIT.to_vec())),
    };
    let cell = (0..3)
        .map(|i| {
            fed.data[i]
                .rows(2)
                .iter()
                .filter(|p| z.holds(1, &p.row))
                .count()
        })
        .collect::<Vec<_>>();
    assert_eq!(cell, [9, 1, 0], "own-row subtraction: the crafted cell");
    let kept = fed.run_exact("hospital-c", &z, BP_200).await;
    assert!(
        !kept[1],
        "{BP_200}: the cell of 9 + 1 + 0 rows (min_k = 10 combined) was released"
    );
    assert_eq!(
        ids(&isolated_if(&fed, 1, &[BP_200], true)),
        b_person(&fed, B_S3),
        "own-row subtraction: had the cell been released, hospital-b's one row is isolated"
    );

    // 6. Versions. The same job again on the same rows: the same release.
    let r0 = fed.run_exact("hospital-b", &j1, REPEAT).await;
    assert_eq!(r0, [true, true], "{REPEAT}: on the same rows");
    // One row added (through the running node): the cell holding it is suppressed.
    let v3 = fed.data[1].with_added(B_NEW, 1);
    let said = fed.import(1, v3);
    assert!(
        said.contains("running node"),
        "versions: the import beside the node did not go through it: {said}"
    );
    let r1 = fed.run_exact("hospital-b", &j1, ONE_ADDED).await;
    let holder = (0..j1.cells()).find(|&g| j1.holds(g, &B_NEW)).unwrap();
    assert!(
        !r1[holder],
        "{ONE_ADDED}: the cell holding the added row was released"
    );
    assert_eq!(
        ids(&isolated_if(&fed, 1, &[REPEAT, ONE_ADDED], true)),
        b_person(&fed, B_NEW),
        "versions: had both been released, only the added row is isolated"
    );
    let found = isolated(&fed, 1, &[REPEAT, ONE_ADDED]);
    assert!(
        found.is_empty(),
        "versions: the added row is isolated: {found:?}"
    );

    // 5. Data-dependent refusals, second sitting: hospital-b now holds two diabetics and
    // one more row; every refusal must read the same, byte for byte.
    let again = refusal_probes(&mut fed).await;
    for (k, (a, b)) in probes.iter().zip(&again).enumerate() {
        assert_eq!(
            a, b,
            "data-dependent refusals: probe {k} reads otherwise once hospital-b's rows changed"
        );
    }

    // 6, continued. Nine more newcomers like the first: ten new individuals of one
    // pattern (min_k), released together.
    let v4 = fed.data[1].with_added(B_NEW, 9);
    fed.import(1, v4);
    let r2 = fed.run_exact("hospital-b", &j1, TEN_ADDED).await;
    assert_eq!(r2, [true, true], "{TEN_ADDED}: ten newcomers are released");
    // One of them erased: the cell freezes (its difference with the last release would be
    // the erased row).
    let (v5, erased) = fed.data[1].with_erased(B_NEW);
    fed.import(1, v5);
    let r3 = fed.run_exact("hospital-b", &j1, ONE_ERASED).await;
    assert!(
        !r3[holder],
        "{ONE_ERASED}: the erased row's cell was released again"
    );
    assert_eq!(
        ids(&isolated_if(&fed, 1, &[TEN_ADDED, ONE_ERASED], true)),
        [erased.id],
        "versions: had both been released, only the erased row is isolated"
    );
    let found = isolated(&fed, 1, &[TEN_ADDED, ONE_ERASED]);
    assert!(
        found.is_empty(),
        "versions: the erased row ({erased:?}) or another is isolated: {found:?}"
    );

    // 5, third sitting: ten diabetics now, one row fewer; the same refusals.
    let last = refusal_probes(&mut fed).await;
    assert_eq!(
        probes, last,
        "data-dependent refusals: the refusals changed with hospital-b's rows"
    );

    // 5. A budget refusal names the job's need, never what another party has left.
    budget_refusal(&mut fed).await;

    // The differencing adversary over everything released, for every party.
    for (i, h) in HOSPITALS.iter().enumerate() {
        let found = isolated(&fed, i, &[]);
        assert!(
            found.is_empty(),
            "differencing adversary: the released cells isolate {h}'s {found:?}"
        );
    }
    let released: Vec<String> = fed
        .released
        .iter()
        .map(|(l, _, v, k)| format!("{l} (versions {v:?}): {k:?}"))
        .collect();
    eprintln!("exact releases:\n  {}", released.join("\n  "));
    fed.stop().await;
    eprintln!("wall time: {:.1} s", started.elapsed().as_secs_f64());
}

/// Attack 5's probes: proposals whose refusal depends on the spec and the policy alone.
/// Each node's own refusal of a filtered job with `max_rows: 1` (exact and DP-only kinds),
/// and hospital-b's refusal, as a peer, of one sized for the others. Returns the texts.
async fn refusal_probes(fed: &mut Fed) -> Vec<String> {
    let filtered = |kind: &str, max_rows: u64| {
        let (a, p) = if kind == "count" {
            (
                json!({ "kind": "count", "filter": { "column": "diabetic", "equals": 1 },
                        "group_by": null }),
                exact(),
            )
        } else {
            (
                json!({ "kind": "correlation", "x": "age", "y": "cholesterol",
                        "filter": { "column": "diabetic", "equals": 1 } }),
                dp("0.1"),
            )
        };
        let mut s = spec(a, p);
        s["max_rows"] = json!(max_rows);
        s
    };
    let mut texts = Vec::new();
    for kind in ["count", "correlation"] {
        for (i, h) in HOSPITALS.iter().enumerate() {
            let why = fed.refused_at(h, &filtered(kind, 1), &[], "data-dependent refusals");
            let d = DECLARED[i].to_string();
            assert!(
                why.contains(&format!("declares up to {d} rows")),
                "data-dependent refusals: {h}'s refusal of a {kind} with max_rows 1 does not name its declared size: {why}"
            );
            assert_eq!(
                numbers(&why),
                strings(&[&d, "1"]),
                "data-dependent refusals: {h}'s refusal carries another number: {why}"
            );
            texts.push(why);
        }
        // Sized for hospital-a and hospital-c: they approve, hospital-b refuses as a peer.
        let small = DECLARED[0].max(DECLARED[2]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let why = loop {
            let id = fed
                .propose("hospital-a", &filtered(kind, small), &[])
                .unwrap_or_else(|e| panic!("data-dependent refusals: hospital-a refused: {e}"));
            let v = fed.outcome(id).await;
            assert_eq!(v["state"]["state"], "refused", "{}", v["state"]);
            let why = v["state"]["detail"].as_str().unwrap().to_owned();
            // The announcement of hospital-b's new version may still be on its way.
            if why.contains("version") && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            break why;
        };
        let d = DECLARED[1].to_string();
        assert!(
            why.starts_with("hospital-b refused: ") && why.contains(&format!("up to {d} rows")),
            "data-dependent refusals: hospital-b's refusal as a peer: {why}"
        );
        assert_eq!(
            numbers(&why),
            strings(&[&d, &small.to_string()]),
            "data-dependent refusals: hospital-b's refusal carries another number: {why}"
        );
        texts.push(why);
    }
    texts
}

/// hospital-c's budget (lower than the others') does not cover a job the others' do: its
/// refusal, as every party and the analyst read it, names the job's ρ and nothing of what
/// it has left.
async fn budget_refusal(fed: &mut Fed) {
    let c = &fed.nodes[2];
    let status = c.status().await.expect("hospital-c's status");
    let left = status.budgets_left["patients"].clone();
    let rho = "0.95";
    let left_f: f64 = left.parse().unwrap();
    assert!(
        left_f < 0.95,
        "hospital-c has ρ = {left} left: the probe would fit"
    );
    let s = spec(
        json!({ "kind": "count", "filter": null, "group_by": null }),
        dp(rho),
    );
    let id = fed
        .propose("hospital-a", &s, &[])
        .unwrap_or_else(|e| panic!("budget refusal: hospital-a refused the probe itself: {e}"));
    let v = fed.outcome(id).await;
    assert_eq!(v["state"]["state"], "refused", "budget: {}", v["state"]);
    for h in HOSPITALS {
        let why = fed.show(h, id)["state"]["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            why.starts_with("hospital-c refused: ") && why.contains("does not cover ρ = 0.95"),
            "budget: {h} reads {why}"
        );
        assert!(
            !why.contains("left") && !why.contains("spent") && !why.contains("reserved"),
            "budget: the refusal {h} reads states a remaining budget: {why}"
        );
        assert_eq!(
            numbers(&why),
            strings(&[rho]),
            "budget: the refusal {h} reads carries another number (hospital-c has {left} left): {why}"
        );
    }
}

/// Attack 5 where an operator decides by hand: a proposal is checked against the budget when it arrives, but its ρ is reserved only at
/// the operator's approval. Two DP jobs that each fit hospital-c's budget, approved one
/// after the other, make the second reservation fail, and that failure's text — "has only
/// ρ = … left (total …, spent …, reserved …)" — goes to every party and the analyst as the
/// refusal. It must read like the budget refusal at proposal time: the job's need only.
#[tokio::test(flavor = "multi_thread")]
async fn a_budget_refusal_at_a_manual_approval_states_no_budget() {
    let bin = parley_tests::parley_bin();
    let tmp = tempfile::Builder::new()
        .prefix("parley-attacks-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().join("fed");
    demo(&bin, &dir);
    let mut fed = Fed {
        nodes: Vec::new(),
        bin,
        dir,
        specs: 0,
        data: Default::default(),
        released: Vec::new(),
        _tmp: tmp,
    };
    // hospital-c's operator decides analytics jobs by hand; its budget fits one job.
    fed.edit_config("hospital-c", |cfg| {
        cfg.jobs.auto_approve.retain(|k| k != "analytics");
        cfg.budgets.insert(
            "patients".into(),
            "0.6".parse().unwrap(), // the demo spent 0.4
        );
    });
    fed.start().await;
    let s = spec(
        json!({ "kind": "count", "filter": null, "group_by": null }),
        dp("0.15"),
    );
    let first = fed.propose("hospital-a", &s, &[]).unwrap();
    let second = fed.propose("hospital-a", &s, &[]).unwrap();
    let c = fed.config("hospital-c");
    for id in [first, second] {
        // Wait until hospital-c holds the proposal, then approve it by hand.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out, err) = fed.parley(&[
                os("job"),
                os("approve"),
                os("--config"),
                c.as_os_str(),
                os(&id.to_string()),
            ]);
            if ok {
                break;
            }
            assert!(
                err.contains("holds no job") && Instant::now() < deadline,
                "budget: approving {id} on hospital-c: {out}{err}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let v = fed.outcome(first).await;
    assert_eq!(v["state"]["state"], "done", "budget: {}", v["state"]);
    let v = fed.outcome(second).await;
    assert_eq!(v["state"]["state"], "refused", "budget: {}", v["state"]);
    for h in HOSPITALS {
        let why = fed.show(h, second)["state"]["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            !why.contains("left") && !why.contains("spent") && !why.contains("reserved"),
            "budget: the refusal {h} reads states hospital-c's budget: {why}"
        );
        assert_eq!(
            numbers(&why),
            strings(&["0.15"]),
            "budget: the refusal {h} reads carries another number: {why}"
        );
    }
    fed.stop().await;
}
