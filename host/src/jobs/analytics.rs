//! Analytics jobs in the node service: the enclave's catalogue (`parley_enclave::analytics`)
//! run between nodes under each party's release policy and privacy budget.
//!
//! Owns the plan a node checks before it approves (its own `[[release]]` policy and
//! `[budgets]` entry), the budget ledger in the store (reserve at approval, spend before any
//! share leaves the node, unreserve when a job ends before that), this node's inputs (exact
//! local aggregates of its rows and noise from its pre-sampled pool), and the field-generic
//! engine: a plan runs in 2^127 − 1 or, when its exact intermediates need it, 2^521 − 1.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parley_enclave::analytics::spec::Privacy;
use parley_enclave::analytics::{FieldKind, Plan, Table, local};
use parley_enclave::decimal::Decimal;
use parley_enclave::dp::budget::PrivacyBudget;
use parley_enclave::dp::noise::{NoisePool, NoiseSamples};
use parley_enclave::engine::{Engine as MpcEngine, Security};
use parley_enclave::field::{Field, M127, M521};
use parley_enclave::program::Program;
use parley_enclave::prss::KeyMaterial;
use parley_enclave::secret::SecretVec;
use parley_enclave::{Config as MpcConfig, Message, MpcError, Outgoing, Protocol, Status};
use rand_chacha::ChaCha20Rng;

use crate::jobs::JobError;
use crate::jobs::job::{JobOutput, JobSpec};
use crate::node::{Epoch, NodeContext};
use crate::store::audit::Journal;
use crate::store::data::Dataset;

/// Check an analytics job against this node before it approves: [`plan`], and whether its
/// privacy budget still covers the job's ρ.
pub fn check(ctx: &NodeContext, epoch: &Epoch, spec: &JobSpec) -> Result<(), JobError> {
    let plan = plan(ctx, epoch, spec)?;
    if let Some(rho) = rho_of(&plan) {
        let b = budget(ctx, &spec.dataset)?;
        if rho > b.available() {
            tracing::info!(
                job = %spec.id, dataset = %spec.dataset, left = %b.available(), total = %b.total, need = %rho,
                "refusing: the privacy budget does not cover the job"
            );
            return Err(JobError::BudgetExhausted {
                party: epoch.my_name().to_owned(),
                dataset: spec.dataset.clone(),
                need: rho.to_string(),
            });
        }
    }
    Ok(())
}

/// The plan of an analytics job on this node: its spec, its release policy (refusals name
/// the rule and the change) and its data.
pub fn plan(ctx: &NodeContext, epoch: &Epoch, spec: &JobSpec) -> Result<Plan, JobError> {
    let me = epoch.my_name();
    let a = spec
        .analytics
        .as_ref()
        .ok_or_else(|| JobError::Spec("an analytics job needs its analytics spec".into()))?;
    // One security model: what every node approves is what the engine runs.
    let named = crate::jobs::job::SecurityModel::from(a.security);
    if named != spec.security {
        return Err(JobError::Spec(format!(
            "the job runs {} but its analytics spec says {}: the two must agree (one security model per job)",
            spec.security.as_str(),
            named.as_str()
        )));
    }
    if !spec.recipients.is_empty() {
        return Err(JobError::Spec(
            "an analytics job names its recipients in its analytics spec".into(),
        ));
    }
    let policy = release_policy(ctx, me, &spec.dataset)?;
    let plan = Plan::new(
        a,
        epoch.manifest.parties.len(),
        epoch.manifest.threshold,
        &[policy],
    )
    .map_err(|e| JobError::Policy {
        party: me.to_owned(),
        reason: e.to_string(),
    })?;
    // Only the public catalogue from here on (the schema, the declared size): no decision
    // depends on the rows (DESIGN §6, item 6).
    let catalog = ctx.catalog();
    let ds = catalog.named(spec, me)?;
    check_schema(&ds.schema, policy, a).map_err(|reason| JobError::Policy {
        party: me.to_owned(),
        reason,
    })?;
    Ok(plan)
}

/// The job against the dataset's schema: every column it reads exists; an exact release
/// uses the schema's bounds (no clipping), a value column that is not categorical, and a
/// view whose partition spans the schema's bounds (so a filter's cell is exactly its value).
fn check_schema(
    schema: &crate::store::data::Schema,
    policy: &parley_enclave::analytics::ReleasePolicy,
    a: &parley_enclave::analytics::AnalyticsSpec,
) -> Result<(), String> {
    let d = &policy.dataset;
    let column = |name: &str| {
        schema
            .column_index(name)
            .map(|i| &schema.columns[i])
            .ok_or_else(|| {
                format!(
                    "dataset {d:?} has no column {name:?} (schema {})",
                    schema.name
                )
            })
    };
    let an = &a.analysis;
    let mut read: Vec<&str> = an.value_columns();
    read.extend(an.filter().map(|f| f.column.as_str()));
    read.extend(an.group_by().map(|g| g.column.as_str()));
    for c in &read {
        column(c)?;
    }
    if a.privacy != Privacy::Exact {
        return Ok(());
    }
    let view = policy
        .admit(a)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("dataset {d:?}: an exact job needs a declared view"))?;
    let k = policy.min_k.unwrap_or(u64::MAX);
    for c in an.value_columns() {
        let col = column(c)?;
        let b = a.bounds_of(c).map_err(|e| e.to_string())?;
        if (b.min, b.max) != (col.min, col.max) {
            return Err(format!(
                "an exact release uses the schema's bounds (no clipping): set bounds.{c} = {{ min = {}, max = {} }}",
                col.min, col.max
            ));
        }
        let values = i128::from(col.max) - i128::from(col.min) + 1;
        if view.column.as_deref() == Some(c) && values < 2 * i128::from(k) {
            return Err(format!(
                "column {c:?} of dataset {d:?} is categorical (its bounds admit {values} values, fewer than 2·min_k = {}): it may partition a view, never be its value column; use DP",
                2 * i128::from(k)
            ));
        }
    }
    for p in &view.partition {
        let col = column(&p.column)?;
        let (first, last) = (p.edges[0], p.edges[p.edges.len() - 1]);
        if first > col.min || last <= col.max {
            return Err(format!(
                "dataset {d:?}'s view partitions {:?} by edges {first}..{last}, which do not span its bounds [{}, {}]: its owner widens the edges (first ≤ {}, last > {})",
                p.column, col.min, col.max, col.min, col.max
            ));
        }
    }
    Ok(())
}

/// A dataset against its release policy (at import and at node start): it holds no more
/// rows than the policy declares. The declared size is public and sizes every job, so a
/// dataset never exceeds it and no job's acceptance depends on the rows.
pub fn check_against_policy(
    config: &crate::config::NodeConfig,
    ds: &Dataset,
) -> Result<(), String> {
    match config.release.iter().find(|p| p.dataset == ds.name) {
        Some(p) if ds.rows() as u64 > p.max_rows => Err(format!(
            "dataset {:?} has {} rows, more than the {} its release policy declares (max_rows in its [[release]]): import at most {} rows, or raise max_rows (peers then see the new size at their next job)",
            ds.name,
            ds.rows(),
            p.max_rows,
            p.max_rows
        )),
        _ => Ok(()),
    }
}

/// Whether `column` takes fewer than 2·`min_k` distinct values in this version of the
/// dataset (DESIGN §6 item 1: categorical, so never an exact view's value column). Data
/// decide it, so it never refuses a job: the party's keep bits suppress every cell.
pub fn categorical_in(ds: &Dataset, column: &str, min_k: u64) -> bool {
    let Some(idx) = ds.schema.column_index(column) else {
        return false;
    };
    let need = 2 * min_k;
    let mut seen = std::collections::BTreeSet::new();
    for &x in &ds.columns[idx] {
        seen.insert(x);
        if seen.len() as u64 >= need {
            return false;
        }
    }
    true
}

/// This party's decision for an exact job under the privacy rule: the members of each of
/// the job's cells among its individuals, against its release ledger.
pub fn keep_bits(
    plan: &Plan,
    ds: &Dataset,
    ledger: &parley_enclave::analytics::rule::Ledger,
    job: &str,
    version: u64,
    min_k: u64,
) -> Result<parley_enclave::analytics::rule::Decision, JobError> {
    use parley_enclave::analytics::rule;
    let data = |reason: String| JobError::Data {
        party: "this party".into(),
        dataset: ds.name.clone(),
        reason,
    };
    let rows = local::cell_rows(&plan.spec, &plan.layout, &table(ds).map_err(data)?)
        .map_err(|e| data(e.to_string()))?;
    let cells = rule::memberships(&rows, &ds.population.ids, plan.layout.cells());
    let an = &plan.spec.analysis;
    let summed = matches!(
        an.kind(),
        parley_enclave::analytics::spec::KindName::Sum
            | parley_enclave::analytics::spec::KindName::Mean
            | parley_enclave::analytics::spec::KindName::Variance
    );
    let columns = if summed {
        an.value_columns()
    } else {
        Vec::new()
    };
    Ok(decide(ds, &cells, &columns, ledger, job, version, min_k))
}

/// The rule's decision over `cells` of this version of `ds`; nothing is kept when the
/// population is frozen or a `summed` column is categorical in this version.
fn decide(
    ds: &Dataset,
    cells: &[Vec<parley_enclave::analytics::rule::Individual>],
    summed: &[&str],
    ledger: &parley_enclave::analytics::rule::Ledger,
    job: &str,
    version: u64,
    min_k: u64,
) -> parley_enclave::analytics::rule::Decision {
    use parley_enclave::analytics::rule;
    let categorical = summed.iter().any(|c| categorical_in(ds, c, min_k));
    rule::decide(
        ledger,
        &rule::JobCells {
            job,
            version,
            cells,
            population: &ds.population.ids,
            frozen: ds.population.frozen || categorical,
        },
        min_k,
    )
}

/// Runs `f` and returns on the next boundary of `slot` after it started (a step that
/// overruns takes a whole number of slots): how long a data-dependent step took is then not
/// visible to peers (the privacy rule's keep bits, DESIGN §6 item 4).
pub async fn in_slot<T>(slot: std::time::Duration, f: impl FnOnce() -> T) -> T {
    let started = tokio::time::Instant::now();
    let out = f();
    let elapsed = started.elapsed();
    let slot = slot.max(std::time::Duration::from_millis(1));
    let slots = u32::try_from(elapsed.as_nanos() / slot.as_nanos() + 1).unwrap_or(u32::MAX);
    if slots > 1 {
        // Overrunning says, to a whole number of slots, how long the step took.
        tracing::warn!(
            slots,
            slot_ms = slot.as_millis() as u64,
            "the privacy rule's step overran its time slot: raise [jobs] rule_slot_ms so its duration says nothing about the data"
        );
    }
    tokio::time::sleep_until(started + slot * slots).await;
    out
}

/// This party's decision for a release of the whole dataset as one exact cell (a
/// `summary-stats` job) under the privacy rule.
pub fn total_keep(
    ds: &Dataset,
    columns: &[String],
    ledger: &parley_enclave::analytics::rule::Ledger,
    job: &str,
    version: u64,
    min_k: u64,
) -> parley_enclave::analytics::rule::Decision {
    let summed: Vec<&str> = columns.iter().map(String::as_str).collect();
    decide(
        ds,
        std::slice::from_ref(&ds.population.ids),
        &summed,
        ledger,
        job,
        version,
        min_k,
    )
}

/// This node's release policy for `dataset`.
pub fn release_policy<'a>(
    ctx: &'a NodeContext,
    me: &str,
    dataset: &str,
) -> Result<&'a parley_enclave::analytics::ReleasePolicy, JobError> {
    ctx.config
        .release
        .iter()
        .find(|p| p.dataset == dataset)
        .ok_or_else(|| JobError::NoReleasePolicy {
            party: me.to_owned(),
            dataset: dataset.to_owned(),
        })
}

/// A dataset as the analytics see it (columns by name).
pub fn table(ds: &Dataset) -> Result<Table, String> {
    Table::new(
        ds.schema
            .columns
            .iter()
            .map(|c| c.name.clone())
            .zip(ds.columns.iter().cloned()),
    )
    .map_err(|e| e.to_string())
}

/// This node's budget for `dataset`, from its config and its ledger: every spend (also the
/// spends a recovery restored), and every reservation of a job not yet spent or released.
pub fn budget(ctx: &NodeContext, dataset: &str) -> Result<PrivacyBudget, JobError> {
    let total = *ctx
        .config
        .budgets
        .get(dataset)
        .ok_or_else(|| JobError::NoBudget {
            party: ctx.config.party.clone(),
            dataset: dataset.to_owned(),
        })?;
    ledger_budget(&ctx.journal, dataset, total)
}

fn ledger_budget(
    journal: &Journal,
    dataset: &str,
    total: Decimal,
) -> Result<PrivacyBudget, JobError> {
    let store = &journal.store;
    let rows: Vec<(i64, String, String, String)> = store.read(|c| {
        let mut stmt = c
            .prepare("SELECT seq, job_id, kind, amount FROM ledger WHERE dataset = ?1 ORDER BY seq")
            .map_err(|e| store.sql_error(e))?;
        let rows = stmt
            .query_map(rusqlite::params![dataset], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| store.sql_error(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| store.sql_error(e))
    })?;
    let closed: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.2 == "spend" || r.2 == "unreserve")
        .map(|r| r.1.as_str())
        .collect();
    let mut b = PrivacyBudget::new(dataset, total);
    let amount = |a: &str| -> Result<Decimal, JobError> {
        a.parse()
            .map_err(|e| JobError::Ledger(format!("it holds an unreadable amount {a:?}: {e}")))
    };
    // The ledger is the record: charges are replayed without the availability check.
    let mut charge = |key: String, rho: Decimal, spent: bool| {
        b.charges.insert(
            key,
            parley_enclave::dp::budget::Charge {
                rho,
                state: if spent {
                    parley_enclave::dp::budget::ChargeState::Spent
                } else {
                    parley_enclave::dp::budget::ChargeState::Reserved
                },
            },
        );
    };
    for (seq, job, kind, a) in &rows {
        match kind.as_str() {
            "spend" | "recovered-spend" => charge(format!("{job}#{seq}"), amount(a)?, true),
            "reserve" if !closed.contains(job.as_str()) => charge(job.clone(), amount(a)?, false),
            _ => {}
        }
    }
    Ok(b)
}

/// Record a budget movement for job `job` in the ledger with its audit entry.
pub fn record(
    journal: &Journal,
    dataset: &str,
    job: &str,
    kind: &'static str,
    rho: Decimal,
) -> Result<(), JobError> {
    let store = &journal.store;
    let detail = serde_json::json!({ "job": job, "dataset": dataset, "rho": rho.to_string() });
    journal
        .record_with(&format!("budget-{kind}"), detail, |tx| {
            tx.execute(
                "INSERT INTO ledger (dataset, job_id, kind, amount, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![
                    dataset,
                    job,
                    kind,
                    rho.to_string(),
                    crate::util::unix_now()
                ],
            )
            .map_err(|e| store.sql_error(e))?;
            Ok(())
        })
        .map(|_| ())
        .map_err(|e| JobError::Ledger(e.to_string()))
}

/// The ρ a job charges (0 for exact releases).
pub fn rho_of(plan: &Plan) -> Option<Decimal> {
    match plan.spec.privacy {
        Privacy::Dp { rho, .. } => Some(rho),
        Privacy::Exact => None,
    }
}

/// This node's noise for `plan` from its pool (refilled first; samples are used once).
fn take_noise(plan: &Plan, pool: Option<&mut NoisePool>) -> Result<Option<NoiseSamples>, JobError> {
    let Some(per_stat) = &plan.noise else {
        return Ok(None);
    };
    let pool = pool.ok_or(JobError::NoNoisePool)?;
    let groups = plan.layout.groups;
    let mut need = BTreeMap::new();
    for s in per_stat {
        *need.entry(s.sigma).or_insert(0usize) += groups;
    }
    for (&sigma, &count) in &need {
        pool.refill(sigma, count)
            .map_err(|e| JobError::Noise(e.to_string()))?;
    }
    let parts = per_stat
        .iter()
        .map(|s| pool.take(s.sigma, groups))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| JobError::Noise(e.to_string()))?;
    Ok(Some(NoiseSamples::concat(parts)))
}

/// A job's program and this party's inputs, in the field the job runs in.
pub enum Work {
    M127 {
        program: Arc<Program<M127>>,
        inputs: Vec<SecretVec<M127>>,
    },
    M521 {
        program: Arc<Program<M521>>,
        inputs: Vec<SecretVec<M521>>,
    },
}

/// A program, this party's inputs to it, and its output names.
type FieldWork<F> = (Arc<Program<F>>, Vec<SecretVec<F>>, Vec<String>);

fn work_in<F: Field>(
    plan: &Plan,
    me: usize,
    ds: &Dataset,
    pool: Option<&mut NoisePool>,
    keep: Option<&[bool]>,
) -> Result<FieldWork<F>, JobError> {
    let data = |reason: String| JobError::Data {
        party: format!("party {me}"),
        dataset: ds.name.clone(),
        reason,
    };
    let stats = local::local_stats(&plan.spec, &plan.layout, &table(ds).map_err(data)?)
        .map_err(|e| data(e.to_string()))?;
    let noise = take_noise(plan, pool)?;
    let inputs = plan
        .inputs::<F>(me, &stats, noise.as_ref(), keep, true)
        .map_err(|e| JobError::Program(e.to_string()))?;
    let (program, names, _) = plan
        .program::<F>()
        .map_err(|e| JobError::Program(e.to_string()))?;
    Ok((Arc::new(program), inputs, names))
}

/// This party's work for an analytics plan, and the names of its outputs; `keep` is an
/// exact job's keep bits ([`keep_bits`]).
pub fn work(
    plan: &Plan,
    me: usize,
    ds: &Dataset,
    pool: Option<&mut NoisePool>,
    keep: Option<&[bool]>,
) -> Result<(Work, Vec<String>), JobError> {
    Ok(match plan.field {
        FieldKind::M127 => {
            let (program, inputs, names) = work_in::<M127>(plan, me, ds, pool, keep)?;
            (Work::M127 { program, inputs }, names)
        }
        FieldKind::M521 => {
            let (program, inputs, names) = work_in::<M521>(plan, me, ds, pool, keep)?;
            (Work::M521 { program, inputs }, names)
        }
    })
}

/// A running engine, in either field.
pub enum AnyEngine {
    M127(Box<MpcEngine<M127>>),
    M521(Box<MpcEngine<M521>>),
}

macro_rules! each {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            AnyEngine::M127($e) => $body,
            AnyEngine::M521($e) => $body,
        }
    };
}

impl AnyEngine {
    pub fn new(
        cfg: MpcConfig,
        security: Security,
        work: Work,
        keys: &KeyMaterial,
        rng: ChaCha20Rng,
    ) -> Result<Self, MpcError> {
        Ok(match work {
            Work::M127 { program, inputs } => AnyEngine::M127(Box::new(MpcEngine::new(
                cfg, security, program, inputs, keys, rng,
            )?)),
            Work::M521 { program, inputs } => AnyEngine::M521(Box::new(MpcEngine::new(
                cfg, security, program, inputs, keys, rng,
            )?)),
        })
    }

    pub fn start(&mut self) -> Result<Vec<Outgoing>, MpcError> {
        each!(self, e => e.start())
    }

    pub fn handle(&mut self, from: usize, msg: Message) -> Result<Vec<Outgoing>, MpcError> {
        each!(self, e => e.handle(from, msg))
    }

    pub fn status(&self) -> Status {
        each!(self, e => e.status())
    }

    pub fn take_unsent(&mut self) -> Vec<Outgoing> {
        each!(self, e => e.take_unsent())
    }

    #[cfg(feature = "sim-cheat")]
    pub fn set_cheat(&mut self, d: parley_enclave::cheat::Deviation) {
        each!(self, e => e.set_cheat(d))
    }

    /// Every party's input commitment (hex), once the engine is done.
    pub fn commitments(&self) -> Option<Vec<String>> {
        each!(self, e => e.output().map(|o| o.commitments.iter().map(|c| hex::encode(c.0)).collect()))
    }

    /// The job's output for this party (`None`: not a recipient).
    pub fn decode(
        &self,
        spec: &JobSpec,
        analytics: Option<(&Plan, &[String])>,
    ) -> Result<Option<JobOutput>, JobError> {
        match (self, analytics) {
            (AnyEngine::M127(e), None) => {
                let out = e
                    .output()
                    .ok_or_else(|| JobError::Decode("the engine finished without output".into()))?;
                crate::jobs::programs::decode(spec, &out.values)
            }
            (AnyEngine::M127(e), Some((plan, names))) => finish(plan, names, e.output()),
            (AnyEngine::M521(e), Some((plan, names))) => finish(plan, names, e.output()),
            (AnyEngine::M521(_), None) => {
                Err(JobError::Decode("a 2^521 − 1 job without a plan".into()))
            }
        }
    }
}

fn finish<F: Field>(
    plan: &Plan,
    names: &[String],
    out: Option<&parley_enclave::engine::EngineOutput<F>>,
) -> Result<Option<JobOutput>, JobError> {
    let out = out.ok_or_else(|| JobError::Decode("the engine finished without output".into()))?;
    // A party the spec does not name as a recipient never received the opening shares.
    let Some(values) = out.values.iter().cloned().collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let result = plan
        .finish::<F>(names, &values)
        .map_err(|e| JobError::Decode(e.to_string()))?;
    serde_json::to_value(&result)
        .map(|v| Some(JobOutput::Analytics(v)))
        .map_err(|e| JobError::Decode(e.to_string()))
}
