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
            return Err(JobError::BudgetExhausted {
                party: epoch.my_name().to_owned(),
                dataset: spec.dataset.clone(),
                left: b.available().to_string(),
                total: b.total.to_string(),
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
    if !spec.recipients.is_empty() {
        return Err(JobError::Spec(
            "an analytics job names its recipients in its analytics spec".into(),
        ));
    }
    let policy = ctx
        .config
        .release
        .iter()
        .find(|p| p.dataset == spec.dataset)
        .ok_or_else(|| JobError::NoReleasePolicy {
            party: me.to_owned(),
            dataset: spec.dataset.clone(),
        })?;
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
    let catalog = ctx.catalog();
    let ds = catalog.named(spec, me)?;
    let data = |reason: String| JobError::Data {
        party: me.to_owned(),
        dataset: spec.dataset.clone(),
        reason,
    };
    local::local_stats(&plan.spec, &plan.layout, &table(ds).map_err(data)?)
        .map_err(|e| data(e.to_string()))?;
    Ok(plan)
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
        .inputs::<F>(me, &stats, noise.as_ref(), true)
        .map_err(|e| JobError::Program(e.to_string()))?;
    let (program, names, _) = plan
        .program::<F>()
        .map_err(|e| JobError::Program(e.to_string()))?;
    Ok((Arc::new(program), inputs, names))
}

/// This party's work for an analytics plan, and the names of its outputs.
pub fn work(
    plan: &Plan,
    me: usize,
    ds: &Dataset,
    pool: Option<&mut NoisePool>,
) -> Result<(Work, Vec<String>), JobError> {
    Ok(match plan.field {
        FieldKind::M127 => {
            let (program, inputs, names) = work_in::<M127>(plan, me, ds, pool)?;
            (Work::M127 { program, inputs }, names)
        }
        FieldKind::M521 => {
            let (program, inputs, names) = work_in::<M521>(plan, me, ds, pool)?;
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
