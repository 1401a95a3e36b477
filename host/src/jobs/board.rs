//! The board: what the engine publishes for readers — each job's latest view and the
//! node's peer status — so the admin socket (and the API to come) answers without asking
//! the engine, and never waits for a job's computation.
//!
//! The engine replaces entries after each event it handles; readers copy them out. The one
//! lock is held only to copy a map, never across an MPC step or any I/O. Jobs of earlier
//! runs come from the store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::admin::{NodeStatus, PeerView};
use crate::jobs::job::{JobId, JobView};
use crate::node::NodeContext;

/// The node's identity and peers as the engine last published them.
#[derive(Debug, Clone, Default)]
pub struct PeerBoard {
    pub party: String,
    pub epoch: u64,
    pub manifest_hash: String,
    pub peers: BTreeMap<String, PeerView>,
}

#[derive(Default)]
pub struct Board {
    jobs: Mutex<BTreeMap<JobId, JobView>>,
    peers: Mutex<PeerBoard>,
}

impl Board {
    pub fn new() -> Self {
        Self::default()
    }

    /// Publish one job's current view.
    pub fn put_job(&self, v: JobView) {
        lock(&self.jobs).insert(v.spec.id, v);
    }

    /// Forget a job the engine no longer holds in memory (its view stays in the store).
    pub fn forget_job(&self, id: &JobId) {
        lock(&self.jobs).remove(id);
    }

    pub fn put_peers(&self, p: PeerBoard) {
        *lock(&self.peers) = p;
    }

    /// A job of this run, as last published.
    pub fn job(&self, id: &JobId) -> Option<JobView> {
        lock(&self.jobs).get(id).cloned()
    }

    /// Every job of this run, as last published.
    pub fn jobs(&self) -> Vec<JobView> {
        lock(&self.jobs).values().cloned().collect()
    }

    /// The node's status: the published peers, this run's jobs, and what is read live
    /// (frame counters, budgets left).
    pub fn status(&self, ctx: &NodeContext) -> NodeStatus {
        let peers = lock(&self.peers).clone();
        NodeStatus {
            party: peers.party,
            epoch: peers.epoch,
            manifest_hash: peers.manifest_hash,
            attestation_mode: ctx.evidence_kind.as_str().to_owned(),
            measurement: hex::encode(ctx.measurement),
            peers: peers.peers,
            counters: ctx.counters.snapshot(),
            jobs: self.jobs(),
            budgets_left: ctx
                .config
                .budgets
                .keys()
                .map(|d| {
                    let left = crate::jobs::analytics::budget(ctx, d).map_or_else(
                        |e| format!("unreadable: {e}"),
                        |b| b.available().to_string(),
                    );
                    (d.clone(), left)
                })
                .collect(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
