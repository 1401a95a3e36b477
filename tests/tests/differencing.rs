//! The privacy rule against a differencing adversary (DESIGN §6, ERRATA issue 17), in
//! process over 200 random worlds and on real nodes for one.
//!
//! Three parties hold random patients; every party declares the same random set of exact
//! views; a random sequence of exact jobs runs over a few dataset versions with planted
//! structures (overlapping bands, two partition columns, replace-one versions, an erasure
//! amid churn, movers whose value is unchanged, edits to unused columns, an edited value, a
//! four-version inclusion–exclusion, a point-mass value column, complements under
//! suppression). Each party decides its keep bits with [`rule::decide`] against its own
//! ledger, exactly as a node does; a cell is released when every party keeps it.
//!
//! The adversary then uses exact linear algebra: it takes the membership vector of every
//! released cell (one variable per party per individual — a run of unchanged row), removes
//! the attacker's own variables (a party knows its rows), and tests whether any other
//! party's individual, or any union of fewer than `min_k` of its individuals (persons
//! counted once), lies in the span. Every release is a sum over a cell of a per-entry
//! constant (1, y or y²), so such a vector in the span is exactly a statistic over fewer
//! than `min_k` people. It must find none; with the keep bits switched off (everything
//! released) it must find some, so the adversary has teeth.
//!
//! On real nodes one world is played through `parley node` processes (its datasets imported
//! with the CLI, its later versions through the running nodes): every node must suppress
//! exactly the cells the in-process parties suppress, and the adversary must find nothing
//! in what the nodes released.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use num_bigint::BigInt;
use num_traits::{Signed, Zero};
use parley_enclave::analytics::local::{Layout, cell_rows};
use parley_enclave::analytics::rule::{self, Individual, JobCells, Ledger, Population};
use parley_enclave::analytics::spec::{
    Analysis, AnalyticsSpec, Bounds, Filter, GroupBy, Neighbouring, Privacy, SecurityModel,
};
use parley_enclave::analytics::{Table, View};
use parley_enclave::program::Recipients;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

const COLS: [&str; 6] = ["age", "sex", "bp", "chol", "diabetic", "z"];
const AGE: usize = 0;
const SEX: usize = 1;
const BP: usize = 2;
const CHOL: usize = 3;
const DIAB: usize = 4;
const Z: usize = 5;
const BOUNDS: [(i64, i64); 6] = [(0, 120), (0, 1), (60, 260), (80, 500), (0, 1), (0, 100)];
const N: usize = 3;

/// A person's row; `who` is the ground-truth person (several variables may be one person).
#[derive(Clone, Debug)]
struct Row {
    who: u64,
    v: [i64; 6],
}

/// One party: its rows at the current version, its population (local identifiers) and the
/// ledger its node keeps.
struct Party {
    rows: Vec<Row>,
    cols: Vec<Vec<i64>>,
    pop: Population,
    ledger: Ledger,
    version: u64,
    /// Local identifier → person, over every version.
    person_of: HashMap<Individual, u64>,
}

fn columns(rows: &[Row]) -> Vec<Vec<i64>> {
    (0..COLS.len())
        .map(|c| rows.iter().map(|r| r.v[c]).collect())
        .collect()
}

impl Party {
    fn new(rows: Vec<Row>) -> Self {
        let cols = columns(&rows);
        let pop = Population::fresh(rows.len());
        let person_of = pop
            .ids
            .iter()
            .zip(&rows)
            .map(|(&i, r)| (i, r.who))
            .collect();
        Party {
            rows,
            cols,
            pop,
            ledger: Ledger::default(),
            version: 1,
            person_of,
        }
    }

    /// The next version (as a node's import does).
    fn import(&mut self, rows: Vec<Row>) {
        let cols = columns(&rows);
        self.pop = self.pop.follow(&self.cols, &cols);
        for (&i, r) in self.pop.ids.iter().zip(&rows) {
            self.person_of.insert(i, r.who);
        }
        self.rows = rows;
        self.cols = cols;
        self.version += 1;
    }

    fn table(&self) -> Table {
        Table::new(
            COLS.iter()
                .map(|c| c.to_string())
                .zip(self.cols.iter().cloned()),
        )
        .expect("table")
    }
}

fn rand(rng: &mut ChaCha20Rng, lo: i64, hi: i64) -> i64 {
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64
}

fn person(rng: &mut ChaCha20Rng, who: u64) -> Row {
    let age = rand(rng, 18, 95);
    let z = if rng.next_u32().is_multiple_of(5) {
        rand(rng, 1, 100)
    } else {
        0
    };
    Row {
        who,
        v: [
            age,
            rand(rng, 0, 1),
            rand(rng, 90, 200),
            rand(rng, 120, 330),
            i64::from(rng.next_u32().is_multiple_of(4)),
            z,
        ],
    }
}

/// The declared views: overlapping age bands, two partition columns, a point-mass column.
fn views(rng: &mut ChaCha20Rng) -> Vec<View> {
    let band = |edges: Vec<i64>| GroupBy {
        column: "age".into(),
        edges,
    };
    let diab = GroupBy {
        column: "diabetic".into(),
        edges: vec![0, 1, 2],
    };
    let sex = GroupBy {
        column: "sex".into(),
        edges: vec![0, 1, 2],
    };
    let all = vec![
        View {
            kinds: vec![rule_kind("count"), rule_kind("mean"), rule_kind("variance")],
            column: Some("bp".into()),
            partition: vec![band(vec![0, 40, 60, 121]), diab.clone()],
        },
        View {
            kinds: vec![rule_kind("count"), rule_kind("sum"), rule_kind("mean")],
            column: Some("bp".into()),
            partition: vec![band(vec![0, 41, 60, 121]), sex.clone()],
        },
        View {
            kinds: vec![rule_kind("sum"), rule_kind("variance")],
            column: Some("chol".into()),
            partition: vec![band(vec![0, 50, 121]), diab],
        },
        View {
            kinds: vec![rule_kind("sum"), rule_kind("mean")],
            column: Some("z".into()),
            partition: vec![sex],
        },
        View {
            kinds: vec![rule_kind("histogram")],
            column: None,
            partition: vec![band(vec![0, 30, 45, 60, 75, 121])],
        },
    ];
    // A random non-empty subset, always with the two overlapping band views.
    let mut out: Vec<View> = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i < 2 || rng.next_u32().is_multiple_of(2))
        .map(|(_, v)| v)
        .collect();
    out.sort_by_key(|v| v.column.clone());
    out
}

fn rule_kind(k: &str) -> parley_enclave::analytics::spec::KindName {
    serde_json::from_value(serde_json::Value::String(k.into())).expect("kind")
}

/// A random exact job admitted by `view`.
fn job(rng: &mut ChaCha20Rng, view: &View) -> AnalyticsSpec {
    let kind = view.kinds[rng.next_u32() as usize % view.kinds.len()];
    let parts = &view.partition;
    let group = (!parts.is_empty() && !rng.next_u32().is_multiple_of(3))
        .then(|| rng.next_u32() as usize % parts.len());
    let filter = parts
        .iter()
        .enumerate()
        .filter(|(i, p)| Some(*i) != group && p.edges.windows(2).any(|w| w[1] == w[0] + 1))
        .find(|_| rng.next_u32().is_multiple_of(2))
        .map(|(_, p)| {
            let cells: Vec<i64> = p
                .edges
                .windows(2)
                .filter(|w| w[1] == w[0] + 1)
                .map(|w| w[0])
                .collect();
            Filter {
                column: p.column.clone(),
                equals: cells[rng.next_u32() as usize % cells.len()],
            }
        });
    let group_by = group.map(|g| parts[g].clone());
    let column = view.column.clone().unwrap_or_default();
    let analysis = match kind.as_str() {
        "count" => Analysis::Count { filter, group_by },
        "sum" => Analysis::Sum {
            column,
            filter,
            group_by,
        },
        "mean" => Analysis::Mean {
            column,
            filter,
            group_by,
        },
        "variance" => Analysis::Variance {
            column,
            filter,
            group_by,
        },
        _ => {
            let p = &parts[0];
            Analysis::Histogram {
                column: p.column.clone(),
                edges: p.edges.clone(),
                filter,
            }
        }
    };
    AnalyticsSpec {
        analysis,
        bounds: COLS
            .iter()
            .zip(BOUNDS)
            .map(|(c, (min, max))| (c.to_string(), Bounds { min, max }))
            .collect(),
        max_rows: 1000,
        privacy: Privacy::Exact,
        neighbouring: Neighbouring::AddRemoveOne,
        k_anonymity: None,
        recipients: Recipients::All,
        security: SecurityModel::Malicious,
    }
}

/// One planted version change of a party's rows (and its name, for failure messages).
fn change(rng: &mut ChaCha20Rng, before: &[Row], next_who: &mut u64) -> (Vec<Row>, &'static str) {
    let mut rows = before.to_vec();
    let pick = |rng: &mut ChaCha20Rng, rows: &[Row]| rng.next_u32() as usize % rows.len();
    let mut fresh = |rng: &mut ChaCha20Rng| {
        *next_who += 1;
        person(rng, *next_who)
    };
    let what = match rng.next_u32() % 9 {
        0 => {
            rows.push(fresh(rng));
            "add one"
        }
        1 => {
            for _ in 0..rand(rng, 3, 8) {
                rows.push(fresh(rng));
            }
            "add a group"
        }
        2 => {
            let i = pick(rng, &rows);
            rows.remove(i);
            "erase one"
        }
        3 => {
            let i = pick(rng, &rows);
            rows[i] = fresh(rng);
            "replace one"
        }
        4 => {
            let i = pick(rng, &rows);
            rows.remove(i);
            for _ in 0..rand(rng, 2, 6) {
                rows.push(fresh(rng));
            }
            "erasure amid churn"
        }
        5 => {
            // A mover: the partition column changes, the value does not.
            let i = pick(rng, &rows);
            rows[i].v[AGE] = if rows[i].v[AGE] < 41 { 70 } else { 40 };
            "mover"
        }
        6 => {
            let i = pick(rng, &rows);
            rows[i].v[SEX] = 1 - rows[i].v[SEX];
            rows[i].v[Z] = (rows[i].v[Z] + 1) % 100;
            "edit to other columns"
        }
        7 => {
            let i = pick(rng, &rows);
            rows[i].v[BP] = (rows[i].v[BP] + 7).min(260);
            rows[i].v[CHOL] = (rows[i].v[CHOL] + 3).min(500);
            "edited value"
        }
        _ => {
            // One step of an inclusion–exclusion chain: swap one person out and back in.
            let i = pick(rng, &rows);
            let r = rows.remove(i);
            rows.push(fresh(rng));
            rows.push(r);
            "inclusion–exclusion step"
        }
    };
    let _ = DIAB;
    (rows, what)
}

/// A world's first versions: three parties, with planted people aged exactly 40 and 41
/// (the edge of the overlapping bands).
fn world(rng: &mut ChaCha20Rng, next_who: &mut u64) -> Vec<Vec<Row>> {
    (0..N)
        .map(|_| {
            let n = rand(rng, 200, 500) as usize;
            let mut rows: Vec<Row> = (0..n)
                .map(|_| {
                    *next_who += 1;
                    person(rng, *next_who)
                })
                .collect();
            for age in [40, 41] {
                *next_who += 1;
                let mut r = person(rng, *next_who);
                r.v[AGE] = age;
                rows.push(r);
            }
            rows
        })
        .collect()
}

/// One step of a script.
enum Step {
    /// A party imports a new version of its dataset.
    Import {
        party: usize,
        rows: Vec<Row>,
        what: &'static str,
    },
    /// An exact job.
    Job(AnalyticsSpec),
}

/// A world, its views and what happens to it: data only, no decision of the rule.
struct Script {
    min_k: u64,
    views: Vec<View>,
    first: Vec<Vec<Row>>,
    steps: Vec<Step>,
}

fn script(seed: u64) -> Script {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let min_k = rand(&mut rng, 3, 5) as u64;
    let mut next_who = 0u64;
    let first = world(&mut rng, &mut next_who);
    let views = views(&mut rng);
    let mut now = first.clone();
    let mut steps = Vec::new();
    for step in 0..12 {
        if step > 0 && rng.next_u32().is_multiple_of(3) {
            let party = rng.next_u32() as usize % N;
            let (rows, what) = change(&mut rng, &now[party], &mut next_who);
            now[party] = rows.clone();
            steps.push(Step::Import { party, rows, what });
        }
        let view = &views[rng.next_u32() as usize % views.len()];
        let spec = job(&mut rng, view);
        assert!(view.admits(&spec), "the generator's job fits its view");
        steps.push(Step::Job(spec));
    }
    Script {
        min_k,
        views,
        first,
        steps,
    }
}

impl Script {
    fn log(&self) -> String {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Import { party, what, .. } => format!("v: party {party} {what}"),
                Step::Job(spec) => format!("job: {:?}", spec.analysis),
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    }
}

/// Each released cell: every party's members.
type Cells = Vec<Vec<Vec<Individual>>>;

/// The parties' final state, per job the keep product of each cell, and the released cells.
type Played = (Vec<Party>, Vec<Vec<bool>>, Cells);

/// The script played by in-process parties.
fn play_script(s: &Script, rule_on: bool) -> Played {
    let mut parties: Vec<Party> = s.first.iter().cloned().map(Party::new).collect();
    let mut keeps = Vec::new();
    let mut released = Vec::new();
    for (i, step) in s.steps.iter().enumerate() {
        match step {
            Step::Import { party, rows, .. } => parties[*party].import(rows.clone()),
            Step::Job(spec) => {
                let cells = run_job(&mut parties, spec, &format!("job-{i}"), s.min_k, rule_on);
                keeps.push(cells.iter().map(Option::is_some).collect());
                released.extend(cells.into_iter().flatten());
            }
        }
    }
    (parties, keeps, released)
}

/// The released cells of one job: per cell, each party's members (by local identifier), or
/// none if suppressed. `rule_on = false` keeps everything (the adversary's teeth).
fn run_job(
    parties: &mut [Party],
    spec: &AnalyticsSpec,
    id: &str,
    min_k: u64,
    rule_on: bool,
) -> Vec<Option<Vec<Vec<Individual>>>> {
    let layout = Layout::of(spec).expect("layout");
    let cells = layout.cells();
    let mut keep = vec![true; cells];
    let mut members: Vec<Vec<Vec<Individual>>> = Vec::new();
    for p in parties.iter_mut() {
        let rows = cell_rows(spec, &layout, &p.table()).expect("cells");
        let m = rule::memberships(&rows, &p.pop.ids, cells);
        if rule_on {
            let d = rule::decide(
                &p.ledger,
                &JobCells {
                    job: id,
                    version: p.version,
                    cells: &m,
                    population: &p.pop.ids,
                    frozen: p.pop.frozen,
                },
                min_k,
            );
            for (k, b) in keep.iter_mut().zip(&d.keep) {
                *k &= *b;
            }
            p.ledger.cells.extend(d.record);
        }
        members.push(m);
    }
    (0..cells)
        .map(|c| keep[c].then(|| members.iter().map(|m| m[c].clone()).collect()))
        .collect()
}

// ---- exact linear algebra over the rationals (integer rows, fraction-free) -------------

fn gcd(a: &BigInt, b: &BigInt) -> BigInt {
    let (mut a, mut b) = (a.abs(), b.abs());
    while !b.is_zero() {
        let r = &a % &b;
        a = b;
        b = r;
    }
    a
}

fn normalise(v: &mut [BigInt]) {
    let g = v.iter().fold(BigInt::zero(), |g, x| gcd(&g, x));
    if !g.is_zero() && g != BigInt::from(1) {
        for x in v.iter_mut() {
            *x = &*x / &g;
        }
    }
}

/// A row-echelon basis of the span (rows with distinct pivot columns).
struct Span {
    rows: Vec<(usize, Vec<BigInt>)>,
}

impl Span {
    fn new(vectors: &[Vec<BigInt>]) -> Self {
        let mut s = Span { rows: Vec::new() };
        for v in vectors {
            let r = s.reduce(v.clone());
            if let Some(p) = r.iter().position(|x| !x.is_zero()) {
                s.rows.push((p, r));
            }
        }
        s
    }

    /// `v` minus its component in the span, scaled (zero iff `v` lies in the span).
    fn reduce(&self, mut v: Vec<BigInt>) -> Vec<BigInt> {
        for (p, r) in &self.rows {
            if v[*p].is_zero() {
                continue;
            }
            let (a, b) = (r[*p].clone(), v[*p].clone());
            for (x, y) in v.iter_mut().zip(r) {
                *x = &*x * &a - &b * y;
            }
            normalise(&mut v);
        }
        v
    }

    fn contains(&self, v: &[BigInt]) -> bool {
        self.reduce(v.to_vec()).iter().all(Zero::is_zero)
    }

    /// Variables every vector of the span treats alike (equal columns of the basis).
    fn blocks(&self, vars: usize) -> Vec<Vec<usize>> {
        let mut by: BTreeMap<Vec<BigInt>, Vec<usize>> = BTreeMap::new();
        for j in 0..vars {
            let col: Vec<BigInt> = self.rows.iter().map(|(_, r)| r[j].clone()).collect();
            by.entry(col).or_default().push(j);
        }
        by.into_values().collect()
    }
}

/// A statistic over fewer than `min_k` people of a party other than `attacker`, from the
/// released cells: a description of the first one found.
fn isolation(
    parties: &[Party],
    released: &[Vec<Vec<Individual>>],
    attacker: usize,
    min_k: u64,
) -> Option<String> {
    // Variables: every other party's individuals that appear in a released cell.
    let mut index: BTreeMap<(usize, Individual), usize> = BTreeMap::new();
    for cell in released {
        for (p, m) in cell.iter().enumerate() {
            if p == attacker {
                continue;
            }
            for &i in m {
                let n = index.len();
                index.entry((p, i)).or_insert(n);
            }
        }
    }
    let vars = index.len();
    if vars == 0 {
        return None;
    }
    let vectors: Vec<Vec<BigInt>> = released
        .iter()
        .map(|cell| {
            let mut v = vec![BigInt::zero(); vars];
            for (p, m) in cell.iter().enumerate() {
                if p == attacker {
                    continue;
                }
                for &i in m {
                    v[index[&(p, i)]] = BigInt::from(1);
                }
            }
            v
        })
        .collect();
    let span = Span::new(&vectors);
    let var_of: Vec<(usize, Individual)> = {
        let mut v = vec![(0, 0); vars];
        for (&k, &j) in &index {
            v[j] = k;
        }
        v
    };
    let people = |set: &[usize]| -> BTreeSet<(usize, u64)> {
        set.iter()
            .map(|&j| {
                let (p, i) = var_of[j];
                (p, parties[p].person_of[&i])
            })
            .collect()
    };
    // Candidates: blocks within one party holding fewer than min_k people, and unions of
    // up to three of them that stay below min_k.
    let small: Vec<Vec<usize>> = span
        .blocks(vars)
        .into_iter()
        .filter(|b| {
            let who = people(b);
            let one_party = who.iter().map(|(p, _)| p).collect::<BTreeSet<_>>().len() == 1;
            one_party && (who.len() as u64) < min_k
        })
        .collect();
    let indicator = |set: &[usize]| {
        let mut v = vec![BigInt::zero(); vars];
        for &j in set {
            v[j] = BigInt::from(1);
        }
        v
    };
    let mut tried = 0usize;
    for a in 0..small.len() {
        for b in a..small.len() {
            for c in b..small.len() {
                let mut set: Vec<usize> = small[a].clone();
                if b > a {
                    set.extend(&small[b]);
                }
                if c > b {
                    set.extend(&small[c]);
                }
                let who = people(&set);
                let parties_in: BTreeSet<usize> = who.iter().map(|(p, _)| *p).collect();
                if parties_in.len() != 1 || who.len() as u64 >= min_k {
                    continue;
                }
                tried += 1;
                if tried > 20_000 {
                    return None;
                }
                if span.contains(&indicator(&set)) {
                    return Some(format!(
                        "party {attacker} isolates {} person(s) of party {:?} over {} released cells",
                        who.len(),
                        parties_in,
                        released.len()
                    ));
                }
            }
        }
    }
    // Single individuals (already covered when their block is small, kept for clarity).
    None
}

/// One seed in process: the isolations the adversary finds.
fn play(seed: u64, rule_on: bool) -> Vec<String> {
    let s = script(seed);
    let (parties, _, released) = play_script(&s, rule_on);
    (0..N)
        .filter_map(|attacker| isolation(&parties, &released, attacker, s.min_k))
        .map(|f| format!("seed {seed}: {f}\n  {}", s.log()))
        .collect()
}

#[test]
fn no_combination_of_releases_isolates_fewer_than_min_k_people() {
    let seeds: u64 = std::env::var("PARLEY_RULE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    for seed in 0..seeds {
        let found = play(seed, true);
        assert!(found.is_empty(), "{}", found.join("\n"));
    }
}

#[test]
fn without_the_rule_the_adversary_isolates_people() {
    let hits = (0..40).filter(|&s| !play(s, false).is_empty()).count();
    assert!(
        hits >= 10,
        "the adversary found isolations in only {hits} of 40 seeds"
    );
}

// ---- one world on real nodes ------------------------------------------------------------

/// The seed played on real nodes.
const NODE_SEED: u64 = 11;

fn csv(rows: &[Row]) -> String {
    let mut s = COLS.join(",");
    s.push('\n');
    for r in rows {
        let line: Vec<String> = r.v.iter().map(i64::to_string).collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    s
}

fn schema_toml() -> String {
    let mut s = String::from("name = \"study\"\n");
    for (c, (min, max)) in COLS.iter().zip(BOUNDS) {
        s.push_str(&format!(
            "[[column]]\nname = \"{c}\"\nmin = {min}\nmax = {max}\n"
        ));
    }
    s
}

/// Import `rows` as the next version of dataset `study` at `party` (through its node when
/// it runs).
fn import(setup: &parley_tests::Setup, party: usize, rows: &[Row], tag: &str) {
    let p = &setup.fed.parties[party];
    let file = setup.tmp.path().join(format!("{}-{tag}.csv", p.name));
    std::fs::write(&file, csv(rows)).unwrap();
    let schema = setup.tmp.path().join("study.toml");
    let (ok, out) = parley_tests::data_import(&p.config, "study", &schema.to_string_lossy(), &file);
    assert!(ok, "import at {}: {out}", p.name);
}

/// Per cell of an exact job's result, whether it was released.
fn released_cells(spec: &AnalyticsSpec, r: &serde_json::Value) -> Vec<bool> {
    let est = r["estimates"].as_array().expect("estimates");
    let name = match spec.analysis.kind().as_str() {
        "sum" => "sum",
        "mean" => "mean",
        _ => "count",
    };
    let labels: Vec<serde_json::Value> = match (&spec.analysis, spec.analysis.group_by()) {
        (Analysis::Histogram { edges, .. }, _) | (_, Some(GroupBy { edges, .. })) => edges
            .windows(2)
            .map(|w| serde_json::json!([w[0], w[1]]))
            .collect(),
        _ => vec![serde_json::Value::Null],
    };
    labels
        .iter()
        .map(|l| {
            let e = est
                .iter()
                .find(|e| e["name"] == name && e["group"] == *l)
                .unwrap_or_else(|| panic!("no {name} {l} in {r}"));
            e["value"]["type"] != "suppressed"
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_world_on_real_nodes_releases_what_the_rule_allows_and_isolates_no_one() {
    use parley::admin::{AdminRequest, AdminResponse};
    use parley::jobs::job::{JobKind, JobOutput, JobState, SecurityModel as Model};
    use parley_enclave::analytics::{Release, ReleasePolicy};
    let s = script(NODE_SEED);
    let setup = parley_tests::Setup::new(1).await;
    std::fs::write(setup.tmp.path().join("study.toml"), schema_toml()).unwrap();
    for p in &setup.fed.parties {
        setup
            .fed
            .edit_config(&p.name, |c| {
                // Two datasets with exact views: each declared disjoint.
                c.release[0].disjoint = true;
                c.release.push(ReleasePolicy {
                    dataset: "study".into(),
                    max_rows: 1000,
                    kinds: BTreeMap::new(),
                    default: Release::Refused,
                    min_k: Some(s.min_k),
                    views: s.views.clone(),
                    disjoint: true,
                    semi_honest: false,
                    max_rho_per_job: None,
                });
            })
            .unwrap();
    }
    for (i, rows) in s.first.iter().enumerate() {
        import(&setup, i, rows, "v1");
    }
    let names: Vec<String> = setup.fed.parties.iter().map(|p| p.name.clone()).collect();
    let mut cluster = setup.start(&[]);
    cluster.all_connected().await;
    let mut proposer = 0usize;
    let mut node_keeps: Vec<Vec<bool>> = Vec::new();
    for (i, step) in s.steps.iter().enumerate() {
        match step {
            Step::Import { party, rows, .. } => {
                import(&cluster.setup, *party, rows, &format!("s{i}"));
                // The importer knows its new version at once; the others' are unchanged.
                proposer = *party;
            }
            Step::Job(spec) => {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                let views = loop {
                    let req = AdminRequest::Submit {
                        kind: JobKind::Analytics,
                        dataset: "study".into(),
                        columns: Vec::new(),
                        security: Model::Malicious,
                        bench: None,
                        recipients: Vec::new(),
                        analytics: Some(Box::new(spec.clone())),
                    };
                    let AdminResponse::Submitted { id } =
                        cluster.admin(&names[proposer], req).await
                    else {
                        panic!("step {i}: not proposed")
                    };
                    let views = cluster.wait_job(id).await;
                    // A peer's announcement of an earlier import may still be on its way.
                    let late = views
                        .iter()
                        .any(|v| matches!(&v.state, JobState::Refused(r) if r.contains("version")));
                    if late && std::time::Instant::now() < deadline {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        continue;
                    }
                    break views;
                };
                let mut seen: Option<Vec<bool>> = None;
                for v in &views {
                    assert_eq!(v.state, JobState::Done, "step {i}: {:?}", v.state);
                    let Some(JobOutput::Analytics(r)) = &v.result else {
                        panic!("step {i}: no result")
                    };
                    let cells = released_cells(spec, r);
                    if let Some(prev) = &seen {
                        assert_eq!(prev, &cells, "step {i}: the nodes disagree");
                    }
                    seen = Some(cells);
                }
                node_keeps.push(seen.expect("a view"));
            }
        }
    }
    cluster.stop().await;
    let (parties, keeps, _) = play_script(&s, true);
    assert_eq!(
        node_keeps,
        keeps,
        "the nodes suppressed other cells than the rule in process:\n  {}",
        s.log()
    );
    assert!(
        keeps.iter().flatten().any(|&k| k),
        "the world released nothing: it tests nothing"
    );
    // The adversary on what the nodes released (memberships from the known rows).
    let mut replay: Vec<Party> = s.first.iter().cloned().map(Party::new).collect();
    let mut released = Vec::new();
    let mut j = 0;
    for (i, step) in s.steps.iter().enumerate() {
        match step {
            Step::Import { party, rows, .. } => replay[*party].import(rows.clone()),
            Step::Job(spec) => {
                let cells = run_job(&mut replay, spec, &format!("job-{i}"), s.min_k, false);
                for (c, kept) in cells.into_iter().zip(&node_keeps[j]) {
                    if *kept {
                        released.extend(c);
                    }
                }
                j += 1;
            }
        }
    }
    for attacker in 0..N {
        let found = isolation(&parties, &released, attacker, s.min_k);
        assert!(found.is_none(), "{found:?}\n  {}", s.log());
    }
}
