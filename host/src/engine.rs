//! The engine: one task that owns the node's jobs and the outboxes of its peer sessions.
//!
//! Sessions, the admin socket and timers feed it [`Event`]s; it answers by sending frames.
//! A job moves proposed → running → done | aborted, or proposed → refused; it starts only
//! once every party's approval is held, and its protocol messages go only to parties over
//! their attested sessions. A lost peer, a timeout, a peer's abort or a failed check aborts
//! the job and nothing is delivered.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_enclave::field::Field;
use parley_enclave::field::M127;
use parley_enclave::secret::SecretVec;
use parley_enclave::sum::SecureSum;
use parley_enclave::{Config as MpcConfig, Message, Outgoing, Protocol, SessionId, Status};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ring::rand::SecureRandom;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use crate::admin::{AdminRequest, AdminResponse, NodeStatus, PeerView};
use crate::data::Moments;
use crate::job::{ColumnStats, JobId, JobKind, JobSpec, JobState, JobView};
use crate::node::NodeContext;
use crate::wire::Body;

/// Protocol messages buffered for a job that has not started yet, per job.
const MAX_EARLY_MESSAGES: usize = 4096;
/// Decisions buffered for proposals not yet received (sessions are independent, so a
/// party's approval can overtake the proposal itself).
const MAX_EARLY_DECISIONS: usize = 256;

pub enum Event {
    PeerUp {
        peer: usize,
        conn: u64,
        outbox: mpsc::Sender<Body>,
    },
    PeerDown {
        peer: usize,
        conn: u64,
        reason: String,
    },
    PeerError {
        peer: usize,
        error: String,
    },
    Frame {
        peer: usize,
        body: Body,
    },
    Admin(AdminRequest, oneshot::Sender<AdminResponse>),
}

struct PeerSlot {
    conn: u64,
    outbox: mpsc::Sender<Body>,
}

struct Job {
    spec: JobSpec,
    state: JobState,
    approvals: BTreeSet<usize>,
    protocol: Option<SecureSum<M127>>,
    early: Vec<(usize, Message)>,
    created: Instant,
    started: Option<Instant>,
    compute_ms: Option<u64>,
    result: Option<Vec<ColumnStats>>,
}

pub struct Engine {
    ctx: Arc<NodeContext>,
    peers: Vec<Option<PeerSlot>>,
    last_error: Vec<Option<String>>,
    jobs: BTreeMap<JobId, Job>,
    early_decisions: Vec<(usize, JobId, bool, Option<String>)>,
    stop: watch::Sender<bool>,
    rng: ring::rand::SystemRandom,
}

impl Engine {
    pub fn new(ctx: Arc<NodeContext>, stop: watch::Sender<bool>) -> Self {
        let n = ctx.manifest.parties.len();
        Engine {
            ctx,
            peers: (0..n).map(|_| None).collect(),
            last_error: vec![None; n],
            jobs: BTreeMap::new(),
            early_decisions: Vec::new(),
            stop,
            rng: ring::rand::SystemRandom::new(),
        }
    }

    /// Run until stopped; returns the final view of every job.
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) -> Vec<JobView> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.handle(ev).await,
                    None => break,
                },
                _ = tick.tick() => self.check_timeouts().await,
                _ = crate::util::stopped(&mut stop) => break,
            }
        }
        // Shutting down: abort what is still running so peers are told.
        let open: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.state.is_final())
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            self.abort(id, "the node is shutting down".into(), true)
                .await;
        }
        self.jobs.values().map(|j| view(j, &self.ctx)).collect()
    }

    fn name(&self, peer: usize) -> &str {
        &self.ctx.manifest.parties[peer].name
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::PeerUp { peer, conn, outbox } => {
                self.peers[peer] = Some(PeerSlot { conn, outbox });
                self.last_error[peer] = None;
            }
            Event::PeerDown { peer, conn, reason } => {
                if self.peers[peer].as_ref().is_some_and(|s| s.conn == conn) {
                    self.peers[peer] = None;
                    self.last_error[peer] = Some(format!("session ended: {reason}"));
                    let affected: Vec<JobId> = self
                        .jobs
                        .iter()
                        .filter(|(_, j)| !j.state.is_final())
                        .map(|(id, _)| *id)
                        .collect();
                    let who = self.name(peer).to_owned();
                    for id in affected {
                        self.abort(
                            id,
                            format!("lost the session with peer {who}: {reason}"),
                            true,
                        )
                        .await;
                    }
                }
            }
            Event::PeerError { peer, error } => {
                if self.peers[peer].is_none() {
                    self.last_error[peer] = Some(error);
                }
            }
            Event::Frame { peer, body } => self.on_frame(peer, body).await,
            Event::Admin(req, reply) => {
                let resp = self.on_admin(req).await;
                let _ = reply.send(resp);
            }
        }
    }

    async fn send(&self, peer: usize, body: Body) {
        if let Some(slot) = &self.peers[peer] {
            // A full outbox applies backpressure to the engine; a closed one means the
            // session is ending, which its PeerDown event reports.
            let _ = slot.outbox.send(body).await;
        }
    }

    async fn broadcast(&self, make: impl Fn() -> Body) {
        for p in 0..self.peers.len() {
            if p != self.ctx.me {
                self.send(p, make()).await;
            }
        }
    }

    async fn on_admin(&mut self, req: AdminRequest) -> AdminResponse {
        match req {
            AdminRequest::Status => AdminResponse::Status(Box::new(self.status())),
            AdminRequest::Job { id } => match self.jobs.get(&id) {
                Some(j) => AdminResponse::Job(Box::new(view(j, &self.ctx))),
                None => AdminResponse::Error {
                    message: format!("no job {id} on this node"),
                },
            },
            AdminRequest::Shutdown => {
                let _ = self.stop.send(true);
                AdminResponse::ShuttingDown
            }
            AdminRequest::Submit {
                kind,
                dataset,
                columns,
            } => match self.submit(kind, dataset, columns).await {
                Ok(id) => AdminResponse::Submitted { id },
                Err(message) => AdminResponse::Error { message },
            },
        }
    }

    pub fn status(&self) -> NodeStatus {
        let verdicts = self.ctx.verdicts.snapshot();
        let peers = self
            .ctx
            .manifest
            .parties
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.ctx.me)
            .map(|(i, p)| {
                (
                    p.name.clone(),
                    PeerView {
                        address: p.address.clone(),
                        connected: self.peers[i].is_some(),
                        last_error: self.last_error[i].clone(),
                        verdict: verdicts.get(&p.name).cloned(),
                    },
                )
            })
            .collect();
        NodeStatus {
            party: self.ctx.manifest.parties[self.ctx.me].name.clone(),
            manifest_hash: hex::encode(self.ctx.manifest_hash),
            attestation_mode: self.ctx.evidence_mode.to_owned(),
            measurement: hex::encode(self.ctx.measurement),
            peers,
            counters: self.ctx.counters.snapshot(),
            jobs: self.jobs.values().map(|j| view(j, &self.ctx)).collect(),
        }
    }

    fn disconnected(&self) -> Vec<String> {
        (0..self.peers.len())
            .filter(|&p| p != self.ctx.me && self.peers[p].is_none())
            .map(|p| match &self.last_error[p] {
                Some(e) => format!("{} ({e})", self.name(p)),
                None => format!("{} (not connected yet)", self.name(p)),
            })
            .collect()
    }

    async fn submit(
        &mut self,
        kind: JobKind,
        dataset: String,
        columns: Vec<String>,
    ) -> Result<JobId, String> {
        let missing = self.disconnected();
        if !missing.is_empty() {
            return Err(format!(
                "cannot propose a job: no attested session with {}",
                missing.join(", ")
            ));
        }
        let mut id = [0u8; 16];
        self.rng
            .fill(&mut id)
            .map_err(|_| "the system random number generator failed".to_owned())?;
        let spec = JobSpec {
            id: JobId(id),
            kind,
            dataset,
            columns,
            proposer: self.ctx.manifest.parties[self.ctx.me].name.clone(),
            manifest_hash: self.ctx.manifest_hash,
            created: crate::util::unix_now(),
        };
        self.ctx.check_job(&spec)?;
        tracing::info!(job = %spec.id, kind = kind.as_str(), "proposing job");
        let s = spec.clone();
        self.broadcast(|| Body::Propose(s.clone())).await;
        self.record_and_decide(spec).await;
        Ok(JobId(id))
    }

    /// Record a proposal and send this node's decision to every party.
    async fn record_and_decide(&mut self, spec: JobSpec) {
        let id = spec.id;
        let decision = self.ctx.check_job(&spec).and_then(|()| {
            if self.ctx.config.jobs.auto_approve.iter().any(|k| k == spec.kind.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "job kind {} needs an operator's approval on {} (no auto-approval rule matches)",
                    spec.kind.as_str(),
                    self.ctx.manifest.parties[self.ctx.me].name
                ))
            }
        });
        self.jobs.insert(
            id,
            Job {
                spec,
                state: JobState::Proposed,
                approvals: BTreeSet::new(),
                protocol: None,
                early: Vec::new(),
                created: Instant::now(),
                started: None,
                compute_ms: None,
                result: None,
            },
        );
        let (approved, reason) = match decision {
            Ok(()) => (true, None),
            Err(r) => (false, Some(r)),
        };
        let r = reason.clone();
        self.broadcast(|| Body::Approve {
            job: id,
            approved,
            reason: r.clone(),
        })
        .await;
        self.on_decision(self.ctx.me, id, approved, reason).await;
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early_decisions)
            .into_iter()
            .partition(|d| d.1 == id);
        self.early_decisions = later;
        for (party, job, approved, reason) in now {
            self.on_decision(party, job, approved, reason).await;
        }
    }

    async fn on_frame(&mut self, peer: usize, body: Body) {
        let who = self.name(peer).to_owned();
        match body {
            Body::Propose(spec) => {
                if spec.proposer != who {
                    tracing::warn!(peer = %who, "proposal names another proposer; ignored");
                } else if self.jobs.contains_key(&spec.id) {
                    tracing::warn!(peer = %who, job = %spec.id, "duplicate proposal; ignored");
                } else {
                    tracing::info!(peer = %who, job = %spec.id, kind = spec.kind.as_str(), "job proposed");
                    self.record_and_decide(spec).await;
                }
            }
            Body::Approve {
                job,
                approved,
                reason,
            } => self.on_decision(peer, job, approved, reason).await,
            Body::Mpc { job, msg } => self.on_mpc(peer, job, msg).await,
            Body::Abort { job, reason } => {
                if self.jobs.get(&job).is_some_and(|j| !j.state.is_final()) {
                    self.abort(job, format!("peer {who} aborted the job: {reason}"), false)
                        .await;
                }
            }
            Body::Ping => self.send(peer, Body::Pong).await,
            Body::Pong => {}
            Body::Hello(_) => tracing::warn!(peer = %who, "unexpected hello mid-session; ignored"),
        }
    }

    async fn on_decision(
        &mut self,
        party: usize,
        id: JobId,
        approved: bool,
        reason: Option<String>,
    ) {
        let who = self.name(party).to_owned();
        let n = self.peers.len();
        let Some(job) = self.jobs.get_mut(&id) else {
            if self.early_decisions.len() < MAX_EARLY_DECISIONS {
                self.early_decisions.push((party, id, approved, reason));
            } else {
                tracing::warn!(peer = %who, job = %id, "too many decisions on unknown jobs; ignored");
            }
            return;
        };
        if job.state != JobState::Proposed {
            return;
        }
        if !approved {
            let why = reason.unwrap_or_else(|| "no reason given".into());
            tracing::warn!(job = %id, party = %who, reason = %why, "job refused");
            job.state = JobState::Refused(format!("{who} refused: {why}"));
            return;
        }
        job.approvals.insert(party);
        if job.approvals.len() == n {
            self.start(id).await;
        }
    }

    async fn start(&mut self, id: JobId) {
        let inputs = match self.jobs.get(&id).map(|j| self.ctx.job_inputs(&j.spec)) {
            Some(Ok(v)) => v,
            Some(Err(e)) => return self.abort(id, e, true).await,
            None => return,
        };
        let mut seed = [0u8; 32];
        if self.rng.fill(&mut seed).is_err() {
            return self
                .abort(id, "the system random number generator failed".into(), true)
                .await;
        }
        let cfg = MpcConfig::new(
            self.ctx.me,
            self.ctx.manifest.parties.iter().map(|p| p.point).collect(),
            self.ctx.manifest.threshold,
            session_id(&self.ctx.manifest_hash, id),
        );
        let mut proto =
            match SecureSum::new(cfg, SecretVec::new(inputs), ChaCha20Rng::from_seed(seed)) {
                Ok(p) => p,
                Err(e) => {
                    return self
                        .abort(id, format!("cannot start the protocol: {e}"), true)
                        .await;
                }
            };
        let out = match proto.start() {
            Ok(o) => o,
            Err(e) => return self.abort(id, e.to_string(), true).await,
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        tracing::info!(job = %id, "all parties approved; computing");
        job.state = JobState::Running;
        job.started = Some(Instant::now());
        job.protocol = Some(proto);
        let early = std::mem::take(&mut job.early);
        self.send_outgoing(id, out).await;
        for (from, msg) in early {
            self.on_mpc(from, id, msg).await;
        }
    }

    async fn on_mpc(&mut self, peer: usize, id: JobId, msg: Message) {
        let who = self.name(peer).to_owned();
        let Some(job) = self.jobs.get_mut(&id) else {
            tracing::warn!(peer = %who, job = %id, "protocol message for an unknown job; ignored");
            return;
        };
        match job.state {
            JobState::Proposed => {
                if job.early.len() >= MAX_EARLY_MESSAGES {
                    return self
                        .abort(
                            id,
                            format!("peer {who} sent too many messages before the job started"),
                            true,
                        )
                        .await;
                }
                job.early.push((peer, msg));
                return;
            }
            JobState::Running => {}
            _ => return,
        }
        let Some(proto) = job.protocol.as_mut() else {
            return;
        };
        let result = proto.handle(peer, msg);
        let done = proto.status() == Status::Done;
        match result {
            Err(e) => {
                self.abort(id, format!("{e} (message from {who})"), true)
                    .await
            }
            Ok(out) => {
                self.send_outgoing(id, out).await;
                if done {
                    self.finish(id);
                }
            }
        }
    }

    #[cfg_attr(not(feature = "sim-cheat"), allow(unused_mut))]
    async fn send_outgoing(&mut self, id: JobId, out: Vec<Outgoing>) {
        for o in out {
            let mut msg = o.msg;
            #[cfg(feature = "sim-cheat")]
            crate::cheat::apply(self.ctx.cheat, self.ctx.me, o.to, &mut msg);
            self.send(o.to, Body::Mpc { job: id, msg }).await;
        }
    }

    fn finish(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Some(out) = job.protocol.as_ref().and_then(|p| p.output()) else {
            return;
        };
        let mut cols = Vec::new();
        for (name, triple) in job.spec.columns.iter().zip(out.chunks_exact(3)) {
            let v: Vec<i128> = triple
                .iter()
                .map(|x| x.to_i128_vartime().unwrap_or(i128::MAX))
                .collect();
            let m = Moments {
                count: v[0],
                sum: v[1],
                sum_sq: v[2],
            };
            cols.push(ColumnStats::from_moments(name, &m));
        }
        job.compute_ms = job.started.map(|s| s.elapsed().as_millis() as u64);
        job.result = Some(cols);
        job.state = JobState::Done;
        job.protocol = None;
        tracing::info!(job = %id, compute_ms = job.compute_ms, "job done");
    }

    async fn abort(&mut self, id: JobId, reason: String, tell_peers: bool) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state.is_final() {
            return;
        }
        tracing::warn!(job = %id, %reason, "job aborted; nothing is delivered");
        job.state = JobState::Aborted(reason.clone());
        job.protocol = None;
        job.early.clear();
        if tell_peers {
            self.broadcast(|| Body::Abort {
                job: id,
                reason: reason.clone(),
            })
            .await;
        }
    }

    async fn check_timeouts(&mut self) {
        let limit = Duration::from_secs(self.ctx.config.jobs.timeout_secs);
        let late: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.state.is_final() && j.created.elapsed() > limit)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let waiting = self.jobs.get(&id).map(|j| j.state.clone());
            self.abort(
                id,
                format!("timed out after {} s (state {waiting:?})", limit.as_secs()),
                true,
            )
            .await;
        }
    }
}

fn view(j: &Job, ctx: &NodeContext) -> JobView {
    JobView {
        spec: j.spec.clone(),
        state: j.state.clone(),
        approvals: j
            .approvals
            .iter()
            .map(|&p| ctx.manifest.parties[p].name.clone())
            .collect(),
        result: j.result.clone(),
        compute_ms: j.compute_ms,
    }
}

/// The MPC session id of a job: bound to the federation manifest and the job id.
fn session_id(manifest_hash: &[u8; 32], id: JobId) -> SessionId {
    let mut h = Sha256::new();
    h.update(b"parley/job-session/v1\0");
    h.update(manifest_hash);
    h.update(id.0);
    SessionId(h.finalize().into())
}

/// Encode an exact aggregate as a field element (negative values wrap mod p).
pub fn encode_i128(v: i128) -> M127 {
    let mag = M127::from_u128(v.unsigned_abs());
    if v < 0 { -mag } else { mag }
}
