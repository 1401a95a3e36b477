//! The engine: one task that owns the node's jobs and the outboxes of its peer sessions.
//!
//! Sessions, the admin socket and a timer feed it [`Event`]s; it answers by sending frames.
//! A job moves proposed → attesting → running → done | aborted, or proposed → refused. It
//! leaves `proposed` only once every party's approval is held; in `attesting` the engine
//! re-runs gate 2 with every peer (fresh evidence bound to the session and a new nonce) and
//! checks the policy's platform-diversity rule; only then do protocol messages go out, and
//! only to parties over their attested sessions. A lost peer, a refused re-attestation, a
//! timeout, a peer's abort or a failed check aborts the job, and nothing is delivered.
//!
//! The engine also re-attests sessions older than the policy's maximum age, renews the TLS
//! certificate before it expires, and switches federation epochs at a job boundary.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_attestation::appraise::Platform;
use parley_attestation::ratls::{self, Gate2Context, Role};
use parley_enclave::engine::{Engine as MpcEngine, Security};
use parley_enclave::field::{Field, M127};
use parley_enclave::program::Program;
use parley_enclave::prss::KeySetup;
use parley_enclave::secret::SecretVec;
use parley_enclave::{Config as MpcConfig, Message, Outgoing, Protocol, SessionId, Status};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ring::rand::SecureRandom;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

use crate::admin::{AdminRequest, AdminResponse, NodeStatus, PeerView};
use crate::job::{JobId, JobKind, JobOutput, JobSpec, JobState, JobView, SecurityModel};
use crate::node::{CERT_LIFETIME, Epoch, NodeContext};
use crate::wire::Body;

/// Protocol messages buffered for a job that has not started yet, per job.
const MAX_EARLY_MESSAGES: usize = 4096;
/// Decisions buffered for proposals not yet received (sessions are independent, so a
/// party's approval can overtake the proposal itself).
const MAX_EARLY_DECISIONS: usize = 256;
/// A peer must answer a re-attestation challenge within this time.
const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the engine knows about an established session.
#[derive(Clone)]
pub struct SessionInfo {
    /// The epoch the session was established in.
    pub epoch: Arc<Epoch>,
    /// Our role on the connection.
    pub role: Role,
    pub exporter: [u8; ratls::EXPORTER_LEN],
    /// SHA-256 of the SubjectPublicKeyInfo of the certificate we presented on it.
    pub own_spki_sha256: [u8; 32],
    pub peer_spki_sha256: [u8; 32],
    pub gate1_platform: Option<Platform>,
}

pub enum Event {
    PeerUp {
        peer: usize,
        conn: u64,
        outbox: mpsc::Sender<Body>,
        close: watch::Sender<bool>,
        info: SessionInfo,
    },
    PeerDown {
        peer: usize,
        conn: u64,
        reason: String,
    },
    PeerError {
        party: String,
        error: String,
    },
    Frame {
        peer: usize,
        conn: u64,
        body: Body,
    },
    Admin(AdminRequest, oneshot::Sender<AdminResponse>),
}

struct PeerSlot {
    conn: u64,
    outbox: mpsc::Sender<Body>,
    close: watch::Sender<bool>,
    info: SessionInfo,
    /// When the peer's last fresh evidence was accepted.
    attested_at: Instant,
    /// Our outstanding re-attestation challenge.
    challenge: Option<([u8; 32], Instant)>,
}

struct Job {
    spec: JobSpec,
    state: JobState,
    approvals: BTreeSet<usize>,
    waiting_attestation: BTreeSet<usize>,
    /// Parties (us included) that announced they passed every gate for this job.
    ready: BTreeSet<usize>,
    runner: Option<Runner>,
    early: Vec<(usize, Message)>,
    created: Instant,
    started: Option<Instant>,
    compute_ms: Option<u64>,
    compute_us: Option<u64>,
    result: Option<JobOutput>,
    commitments: Vec<String>,
}

/// A running job's protocol: first the PRSS key set-up, then the engine.
enum Runner {
    Keys {
        setup: Box<KeySetup>,
        program: Arc<Program<M127>>,
        inputs: Vec<SecretVec<M127>>,
        /// Engine messages that arrived before our key set-up finished.
        pending: Vec<(usize, Message)>,
    },
    Compute {
        engine: Box<MpcEngine<M127>>,
    },
}

pub struct Engine {
    ctx: Arc<NodeContext>,
    epoch: Arc<Epoch>,
    peers: Vec<Option<PeerSlot>>,
    last_error: BTreeMap<String, String>,
    jobs: BTreeMap<JobId, Job>,
    early_decisions: Vec<(usize, JobId, bool, Option<String>)>,
    pending_epoch: Option<Epoch>,
    stop: watch::Sender<bool>,
    rng: ring::rand::SystemRandom,
}

impl Engine {
    pub fn new(ctx: Arc<NodeContext>, stop: watch::Sender<bool>) -> Self {
        let epoch = ctx.epoch();
        let n = epoch.manifest.parties.len();
        Engine {
            ctx,
            epoch,
            peers: (0..n).map(|_| None).collect(),
            last_error: BTreeMap::new(),
            jobs: BTreeMap::new(),
            early_decisions: Vec::new(),
            pending_epoch: None,
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
                _ = tick.tick() => self.on_tick().await,
                _ = crate::util::stopped(&mut stop) => break,
            }
        }
        // Shutting down: abort what is still running so peers are told.
        for id in self.open_jobs() {
            self.abort(id, "the node is shutting down".into(), true)
                .await;
        }
        self.jobs.values().map(|j| view(j, &self.epoch)).collect()
    }

    fn name(&self, peer: usize) -> String {
        self.epoch.name(peer).to_owned()
    }

    fn open_jobs(&self) -> Vec<JobId> {
        self.jobs
            .iter()
            .filter(|(_, j)| !j.state.is_final())
            .map(|(id, _)| *id)
            .collect()
    }

    fn slot(&mut self, peer: usize, conn: u64) -> Option<&mut PeerSlot> {
        self.peers
            .get_mut(peer)?
            .as_mut()
            .filter(|s| s.conn == conn)
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::PeerUp {
                peer,
                conn,
                outbox,
                close,
                info,
            } => {
                if info.epoch.manifest_hash != self.epoch.manifest_hash || peer >= self.peers.len()
                {
                    // Established under an epoch we just left: drop it, its dialer reconnects.
                    let _ = close.send(true);
                    return;
                }
                if let Some(old) = self.peers[peer].take() {
                    let _ = old.close.send(true);
                }
                self.last_error.remove(&self.name(peer));
                self.peers[peer] = Some(PeerSlot {
                    conn,
                    outbox,
                    close,
                    info,
                    attested_at: Instant::now(),
                    challenge: None,
                });
            }
            Event::PeerDown { peer, conn, reason } => {
                if self.slot(peer, conn).is_some() {
                    self.peers[peer] = None;
                    let who = self.name(peer);
                    self.last_error
                        .insert(who.clone(), format!("session ended: {reason}"));
                    for id in self.jobs_involving(peer) {
                        self.abort(
                            id,
                            format!("lost the session with peer {who}: {reason}"),
                            true,
                        )
                        .await;
                    }
                }
            }
            Event::PeerError { party, error } => {
                let connected = self
                    .epoch
                    .manifest
                    .index_of(&party)
                    .is_some_and(|i| self.peers[i].is_some());
                if !connected {
                    self.last_error.insert(party, error);
                }
            }
            Event::Frame { peer, conn, body } => {
                if self.slot(peer, conn).is_some() {
                    self.on_frame(peer, body).await;
                }
            }
            Event::Admin(req, reply) => {
                let resp = self.on_admin(req).await;
                let _ = reply.send(resp);
            }
        }
    }

    fn jobs_involving(&self, _peer: usize) -> Vec<JobId> {
        // Every job involves every party.
        self.open_jobs()
    }

    async fn send(&self, peer: usize, body: Body) {
        if let Some(slot) = self.peers.get(peer).and_then(Option::as_ref) {
            // A full outbox applies backpressure; a closed one means the session is ending,
            // which its PeerDown event reports.
            let _ = slot.outbox.send(body).await;
        }
    }

    async fn broadcast(&self, make: impl Fn() -> Body) {
        for p in 0..self.peers.len() {
            if p != self.epoch.me {
                self.send(p, make()).await;
            }
        }
    }

    /// Refuse a peer on an established session: tell it why, close, abort its jobs.
    async fn drop_peer(&mut self, peer: usize, reason: String) {
        let who = self.name(peer);
        tracing::warn!(peer = %who, %reason, "dropping peer");
        self.send(
            peer,
            Body::Refuse {
                reason: reason.clone(),
            },
        )
        .await;
        if let Some(slot) = self.peers[peer].take() {
            let _ = slot.close.send(true);
        }
        self.last_error.insert(who.clone(), reason.clone());
        for id in self.jobs_involving(peer) {
            self.abort(id, format!("peer {who} was dropped: {reason}"), true)
                .await;
        }
    }

    // ---- attestation on established sessions -------------------------------------------

    /// Send a fresh gate-2 challenge to `peer` (unless one is outstanding).
    async fn reattest(&mut self, peer: usize) {
        let t = self.ctx.reported_time();
        let Some(slot) = self.peers.get_mut(peer).and_then(Option::as_mut) else {
            return;
        };
        if slot.challenge.is_some() {
            return;
        }
        let nonce = crate::session::nonce();
        slot.challenge = Some((nonce, Instant::now()));
        self.send(
            peer,
            Body::Challenge {
                nonce,
                unix_time: t,
            },
        )
        .await;
    }

    async fn on_challenge(&mut self, peer: usize, nonce: [u8; 32]) {
        let Some(slot) = self.peers[peer].as_ref() else {
            return;
        };
        if slot.challenge.is_some_and(|(ours, _)| ours == nonce) {
            let v = self.epoch.gate1.appraiser.refusal(
                ratls::codes::REFLECTION,
                "it sent back this node's own challenge nonce".into(),
                crate::util::unix_now(),
            );
            self.epoch
                .gate1
                .sink
                .record_gate(&self.name(peer), 2, &v, false);
            return self.drop_peer(peer, v.summary()).await;
        }
        let info = slot.info.clone();
        let rd = ratls::gate2_report_data(
            info.role,
            &info.own_spki_sha256,
            &info.exporter,
            &info.epoch.manifest_hash,
            &nonce,
        );
        match self.ctx.tee.collect(&rd) {
            Ok(evidence) => {
                self.send(
                    peer,
                    Body::Attest {
                        evidence,
                        unix_time: self.ctx.reported_time(),
                    },
                )
                .await
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot collect fresh evidence for a re-attestation")
            }
        }
    }

    async fn on_attest(&mut self, peer: usize, evidence: Vec<u8>, peer_time: i64) {
        let who = self.name(peer);
        let Some(slot) = self.peers[peer].as_mut() else {
            return;
        };
        let Some((our_nonce, _)) = slot.challenge.take() else {
            let v = self.epoch.gate1.appraiser.refusal(
                ratls::codes::UNSOLICITED_EVIDENCE,
                "fresh evidence that answers no outstanding challenge (a replay?)".into(),
                crate::util::unix_now(),
            );
            self.epoch.gate1.sink.record_gate(&who, 2, &v, false);
            return self.drop_peer(peer, v.summary()).await;
        };
        let info = slot.info.clone();
        let cx = Gate2Context {
            peer_role: info.role.other(),
            peer_spki_sha256: info.peer_spki_sha256,
            exporter: &info.exporter,
            manifest_hash: info.epoch.manifest_hash,
            our_nonce,
            gate1_platform: info.gate1_platform.as_ref(),
            peer_time,
            now: crate::util::unix_now(),
        };
        let (verdict, accepted) = self.epoch.gate1.check_gate2(&who, &evidence, &cx);
        if !accepted {
            return self
                .drop_peer(
                    peer,
                    format!("re-attestation refused: {}", verdict.summary()),
                )
                .await;
        }
        if let Some(slot) = self.peers[peer].as_mut() {
            slot.attested_at = Instant::now();
        }
        let me = self.epoch.me;
        let ready: Vec<JobId> = self
            .jobs
            .iter_mut()
            .filter(|(_, j)| j.state == JobState::Attesting && !j.ready.contains(&me))
            .filter_map(|(id, j)| {
                j.waiting_attestation.remove(&peer);
                j.waiting_attestation.is_empty().then_some(*id)
            })
            .collect();
        for id in ready {
            self.mark_ready(id, me).await;
        }
    }

    /// `party` passed every gate for job `id` (its own re-attestation of every peer and the
    /// platform-diversity rule). Our readiness is announced to every party; the protocol
    /// starts only when every party is ready, so no share leaves this node for a job that
    /// some party is still refusing.
    async fn mark_ready(&mut self, id: JobId, party: usize) {
        let n = self.peers.len();
        let me = self.epoch.me;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state != JobState::Attesting && job.state != JobState::Proposed {
            return;
        }
        if !job.ready.insert(party) {
            return;
        }
        if party == me {
            self.broadcast(|| Body::Ready { job: id }).await;
        }
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.state == JobState::Attesting && job.ready.len() == n {
            self.start(id).await;
        }
    }

    async fn on_tick(&mut self) {
        let max_age = Duration::from_secs(self.epoch.policy().policy.session.max_age_secs);
        for p in 0..self.peers.len() {
            let Some(slot) = self.peers[p].as_ref() else {
                continue;
            };
            match slot.challenge {
                Some((_, sent)) if sent.elapsed() > CHALLENGE_TIMEOUT => {
                    self.drop_peer(
                        p,
                        format!(
                            "no fresh evidence within {} s of a challenge",
                            CHALLENGE_TIMEOUT.as_secs()
                        ),
                    )
                    .await;
                }
                None if slot.attested_at.elapsed() > max_age => self.reattest(p).await,
                _ => {}
            }
        }
        self.check_timeouts().await;
        // Renew the certificate well before it expires (same manifest and policy).
        let remaining = self.epoch.cert_not_after - crate::util::unix_now();
        if self.pending_epoch.is_none() && remaining < (CERT_LIFETIME.as_secs() / 3) as i64 {
            match self
                .ctx
                .build_epoch(self.epoch.manifest.clone(), self.epoch.policy().clone())
                .await
            {
                Ok(e) => {
                    self.ctx.install_epoch(e);
                    self.epoch = self.ctx.epoch();
                    tracing::info!("renewed the RA-TLS certificate");
                }
                Err(e) => tracing::error!(error = %e, "cannot renew the RA-TLS certificate"),
            }
        }
        if self.pending_epoch.is_some() && self.open_jobs().is_empty() {
            self.switch_epoch();
        }
    }

    // ---- epochs ---------------------------------------------------------------------------

    /// Load the manifest and policy the config names and stage them as the next epoch.
    async fn activate(&mut self) -> Result<(u64, bool), String> {
        let (manifest, policy) =
            NodeContext::load_federation(&self.ctx.config).map_err(|e| format!("{e:#}"))?;
        if manifest.hash() == self.epoch.manifest_hash {
            return Err(format!("epoch {} is already active", manifest.epoch));
        }
        manifest.verify_successor(&self.epoch.manifest)?;
        let n = manifest.epoch;
        let e = self
            .ctx
            .build_epoch(manifest, policy)
            .await
            .map_err(|e| format!("{e:#}"))?;
        self.pending_epoch = Some(e);
        if self.open_jobs().is_empty() {
            self.switch_epoch();
            Ok((n, false))
        } else {
            Ok((n, true))
        }
    }

    fn switch_epoch(&mut self) {
        let Some(e) = self.pending_epoch.take() else {
            return;
        };
        tracing::info!(epoch = e.manifest.epoch, manifest = %hex::encode(e.manifest_hash), "switching to a new federation epoch");
        for slot in self.peers.iter_mut().filter_map(Option::take) {
            let _ = slot.close.send(true);
        }
        let n = e.manifest.parties.len();
        self.ctx.install_epoch(e);
        self.epoch = self.ctx.epoch();
        self.peers = (0..n).map(|_| None).collect();
        self.last_error.clear();
    }

    // ---- admin ----------------------------------------------------------------------------

    async fn on_admin(&mut self, req: AdminRequest) -> AdminResponse {
        match req {
            AdminRequest::Status => AdminResponse::Status(Box::new(self.status())),
            AdminRequest::Job { id } => match self.jobs.get(&id) {
                Some(j) => AdminResponse::Job(Box::new(view(j, &self.epoch))),
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
                security,
                bench,
                recipients,
            } => match self
                .submit(kind, dataset, columns, security, bench, recipients)
                .await
            {
                Ok(id) => AdminResponse::Submitted { id },
                Err(message) => AdminResponse::Error { message },
            },
            AdminRequest::Activate => match self.activate().await {
                Ok((epoch, pending)) => AdminResponse::Activated { epoch, pending },
                Err(message) => AdminResponse::Error { message },
            },
        }
    }

    pub fn status(&self) -> NodeStatus {
        let peers = self
            .epoch
            .manifest
            .parties
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.epoch.me)
            .map(|(i, p)| {
                let slot = self.peers[i].as_ref();
                (
                    p.name.clone(),
                    PeerView {
                        address: p.address.clone(),
                        connected: slot.is_some(),
                        last_error: self.last_error.get(&p.name).cloned(),
                        verdict: self.ctx.verdicts.get(&p.name, 1),
                        gate2: self.ctx.verdicts.get(&p.name, 2),
                        attested_secs_ago: slot.map(|s| s.attested_at.elapsed().as_secs()),
                    },
                )
            })
            .collect();
        NodeStatus {
            party: self.epoch.my_name().to_owned(),
            epoch: self.epoch.manifest.epoch,
            manifest_hash: hex::encode(self.epoch.manifest_hash),
            attestation_mode: self.ctx.evidence_kind.as_str().to_owned(),
            measurement: hex::encode(self.ctx.measurement),
            peers,
            counters: self.ctx.counters.snapshot(),
            jobs: self.jobs.values().map(|j| view(j, &self.epoch)).collect(),
        }
    }

    fn disconnected(&self) -> Vec<String> {
        (0..self.peers.len())
            .filter(|&p| p != self.epoch.me && self.peers[p].is_none())
            .map(|p| {
                let n = self.name(p);
                match self.last_error.get(&n) {
                    Some(e) => format!("{n} ({e})"),
                    None => format!("{n} (not connected yet)"),
                }
            })
            .collect()
    }

    // ---- jobs -----------------------------------------------------------------------------

    async fn submit(
        &mut self,
        kind: JobKind,
        dataset: String,
        columns: Vec<String>,
        security: SecurityModel,
        bench: Option<crate::job::BenchSpec>,
        recipients: Vec<String>,
    ) -> Result<JobId, String> {
        if self.pending_epoch.is_some() {
            return Err(
                "a new federation epoch is being activated; propose the job once it is".into(),
            );
        }
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
            proposer: self.epoch.my_name().to_owned(),
            manifest_hash: self.epoch.manifest_hash,
            created: crate::util::unix_now(),
            security,
            bench,
            recipients,
        };
        self.ctx.check_job(&self.epoch, &spec)?;
        tracing::info!(job = %spec.id, kind = kind.as_str(), "proposing job");
        let s = spec.clone();
        self.broadcast(|| Body::Propose(s.clone())).await;
        self.record_and_decide(spec).await;
        Ok(JobId(id))
    }

    /// Record a proposal and send this node's decision to every party.
    async fn record_and_decide(&mut self, spec: JobSpec) {
        let id = spec.id;
        let me = self.epoch.my_name().to_owned();
        let decision = self.ctx.check_job(&self.epoch, &spec).and_then(|()| {
            if self.pending_epoch.is_some() {
                Err(format!("{me} is switching federation epochs"))
            } else if self.ctx.config.jobs.auto_approve.iter().any(|k| k == spec.kind.as_str()) {
                Ok(())
            } else {
                Err(format!(
                    "job kind {} needs an operator's approval on {me} (no auto-approval rule matches)",
                    spec.kind.as_str()
                ))
            }
        });
        self.jobs.insert(
            id,
            Job {
                spec,
                state: JobState::Proposed,
                approvals: BTreeSet::new(),
                waiting_attestation: BTreeSet::new(),
                ready: BTreeSet::new(),
                runner: None,
                early: Vec::new(),
                created: Instant::now(),
                started: None,
                compute_ms: None,
                compute_us: None,
                result: None,
                commitments: Vec::new(),
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
        self.on_decision(self.epoch.me, id, approved, reason).await;
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early_decisions)
            .into_iter()
            .partition(|d| d.1 == id);
        self.early_decisions = later;
        for (party, job, approved, reason) in now {
            self.on_decision(party, job, approved, reason).await;
        }
    }

    async fn on_frame(&mut self, peer: usize, body: Body) {
        let who = self.name(peer);
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
            Body::Challenge { nonce, .. } => self.on_challenge(peer, nonce).await,
            Body::Ready { job } => {
                if self.jobs.contains_key(&job) {
                    self.mark_ready(job, peer).await;
                } else {
                    tracing::warn!(peer = %who, job = %job, "readiness for an unknown job; ignored");
                }
            }
            Body::Attest {
                evidence,
                unix_time,
            } => self.on_attest(peer, evidence, unix_time).await,
            Body::Refuse { reason } => {
                tracing::warn!(peer = %who, %reason, "the peer refused this node");
                if let Some(slot) = self.peers[peer].take() {
                    let _ = slot.close.send(true);
                }
                self.last_error
                    .insert(who.clone(), format!("refused this node: {reason}"));
                for id in self.jobs_involving(peer) {
                    self.abort(id, format!("peer {who} refused this node: {reason}"), false)
                        .await;
                }
            }
            Body::Ping => self.send(peer, Body::Pong).await,
            Body::Pong => {}
            Body::Hello(_) | Body::Accept => {
                tracing::warn!(peer = %who, "unexpected set-up frame mid-session; ignored")
            }
        }
    }

    async fn on_decision(
        &mut self,
        party: usize,
        id: JobId,
        approved: bool,
        reason: Option<String>,
    ) {
        let who = self.name(party);
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
            self.attest_for_job(id).await;
        }
    }

    /// Every party approved: check platform diversity and re-attest every peer before the
    /// protocol starts.
    async fn attest_for_job(&mut self, id: JobId) {
        let mut types: BTreeSet<&str> = BTreeSet::from([self.ctx.evidence_kind.as_str()]);
        for slot in self.peers.iter().flatten() {
            if let Some(p) = &slot.info.gate1_platform {
                types.insert(p.tee.as_str());
            }
        }
        let required = self.epoch.policy().policy.federation.min_distinct_tee_types;
        if types.len() < required {
            let found: Vec<&str> = types.into_iter().collect();
            return self
                .abort(
                    id,
                    format!(
                        "platform-diversity: the parties run on {} only; policy {:?} requires {required} distinct TEE types",
                        found.join(", "),
                        self.epoch.policy().policy.name
                    ),
                    true,
                )
                .await;
        }
        let peers: Vec<usize> = (0..self.peers.len())
            .filter(|&p| p != self.epoch.me)
            .collect();
        if let Some(job) = self.jobs.get_mut(&id) {
            job.state = JobState::Attesting;
            job.waiting_attestation = peers.iter().copied().collect();
        }
        for p in peers {
            if self.peers[p].is_none() {
                return self
                    .abort(id, format!("no session with {}", self.name(p)), true)
                    .await;
            }
            self.reattest(p).await;
        }
    }

    /// Start the job's protocol: a fresh PRSS key set-up among the parties (its own
    /// session id), then the engine running the job's program on this party's inputs.
    async fn start(&mut self, id: JobId) {
        let Some(spec) = self.jobs.get(&id).map(|j| j.spec.clone()) else {
            return;
        };
        let inputs = match self.ctx.job_inputs(&self.epoch, &spec) {
            Ok(v) => v,
            Err(e) => return self.abort(id, e, true).await,
        };
        let program = match crate::programs::build(
            &spec,
            self.epoch.manifest.parties.len(),
            recipients(&self.epoch, &spec),
        ) {
            Ok(p) => p,
            Err(e) => return self.abort(id, e.to_string(), true).await,
        };
        let Some(rng) = self.seeded_rng() else {
            return self
                .abort(id, "the system random number generator failed".into(), true)
                .await;
        };
        #[cfg_attr(not(feature = "sim-cheat"), allow(unused_mut))]
        let mut setup = match KeySetup::new(
            self.mpc_config(keys_session_id(&self.epoch.manifest_hash, id)),
            rng,
        ) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .abort(id, format!("cannot start the key set-up: {e}"), true)
                    .await;
            }
        };
        #[cfg(feature = "sim-cheat")]
        if let Some(crate::cheat::Cheat::Mpc(d)) = self.ctx.cheat {
            use parley_enclave::cheat::Deviation;
            // Deal the inconsistent key to the next party (a dealer's own index is no victim).
            let d = match d {
                Deviation::InconsistentPrssKey { .. } => Deviation::InconsistentPrssKey {
                    victim: (self.epoch.me + 1) % self.epoch.manifest.parties.len(),
                },
                other => other,
            };
            setup.set_cheat(d);
        }
        let out = match setup.start() {
            Ok(o) => o,
            Err(e) => return self.abort(id, e.to_string(), true).await,
        };
        // A party that deals every key it shares and has no echo to wait for is done at once.
        let done = setup.status() == Status::Done;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        tracing::info!(job = %id, security = job.spec.security.as_str(), "every party approved and re-attested; computing");
        job.state = JobState::Running;
        job.started = Some(Instant::now());
        job.runner = Some(Runner::Keys {
            setup: Box::new(setup),
            program,
            inputs,
            pending: Vec::new(),
        });
        let early = std::mem::take(&mut job.early);
        self.send_outgoing(id, out).await;
        if done {
            self.advance(id).await;
        }
        for (from, msg) in early {
            self.on_mpc(from, id, msg).await;
        }
    }

    fn seeded_rng(&self) -> Option<ChaCha20Rng> {
        let mut seed = [0u8; 32];
        self.rng.fill(&mut seed).ok()?;
        Some(ChaCha20Rng::from_seed(seed))
    }

    fn mpc_config(&self, session: SessionId) -> MpcConfig {
        let points = self
            .epoch
            .manifest
            .parties
            .iter()
            .map(|p| p.point)
            .collect();
        MpcConfig::new(
            self.epoch.me,
            points,
            self.epoch.manifest.threshold,
            session,
        )
    }

    async fn on_mpc(&mut self, peer: usize, id: JobId, msg: Message) {
        let who = self.name(peer);
        let Some(job) = self.jobs.get_mut(&id) else {
            tracing::warn!(peer = %who, job = %id, "protocol message for an unknown job; ignored");
            return;
        };
        match job.state {
            JobState::Proposed | JobState::Attesting => {
                if job.early.len() >= MAX_EARLY_MESSAGES {
                    let reason =
                        format!("peer {who} sent too many messages before the job started");
                    return self.abort(id, reason, true).await;
                }
                job.early.push((peer, msg));
                return;
            }
            JobState::Running => {}
            _ => return,
        }
        let keys_session = keys_session_id(&self.epoch.manifest_hash, id);
        let Some(runner) = job.runner.as_mut() else {
            return;
        };
        let step = match runner {
            Runner::Keys { setup, pending, .. } => {
                if msg.chunk().session != keys_session {
                    // The job's engine messages can overtake our own key set-up.
                    if pending.len() >= MAX_EARLY_MESSAGES {
                        Err((
                            format!("peer {who} sent too many messages during the key set-up"),
                            Vec::new(),
                        ))
                    } else {
                        pending.push((peer, msg));
                        Ok((Vec::new(), false))
                    }
                } else {
                    match setup.handle(peer, msg) {
                        Ok(out) => Ok((out, setup.status() == Status::Done)),
                        Err(e) => Err((
                            format!("{e} (key set-up message from {who})"),
                            setup.take_unsent(),
                        )),
                    }
                }
            }
            Runner::Compute { engine } => match engine.handle(peer, msg) {
                Ok(out) => Ok((out, engine.status() == Status::Done)),
                Err(e) => Err((format!("{e} (message from {who})"), engine.take_unsent())),
            },
        };
        match step {
            Err((reason, unsent)) => {
                // The protocol's own abort notices name the failed check to every peer.
                self.send_outgoing(id, unsent).await;
                self.abort(id, reason, true).await;
            }
            Ok((out, done)) => {
                self.send_outgoing(id, out).await;
                if done {
                    self.advance(id).await;
                }
            }
        }
    }

    /// The key set-up finished: start the engine. The engine finished: deliver.
    async fn advance(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match job.runner.take() {
            Some(Runner::Keys {
                setup,
                program,
                inputs,
                pending,
            }) => {
                let Some(keys) = setup.into_keys() else {
                    return self
                        .abort(id, "the key set-up ended without keys".into(), true)
                        .await;
                };
                let security = match job.spec.security {
                    SecurityModel::Malicious => Security::Malicious,
                    SecurityModel::SemiHonest => Security::SemiHonest,
                };
                let Some(rng) = self.seeded_rng() else {
                    return self
                        .abort(id, "the system random number generator failed".into(), true)
                        .await;
                };
                let cfg = self.mpc_config(session_id(&self.epoch.manifest_hash, id));
                #[cfg_attr(not(feature = "sim-cheat"), allow(unused_mut))]
                let mut engine = match MpcEngine::new(cfg, security, program, inputs, &keys, rng) {
                    Ok(e) => e,
                    Err(e) => {
                        return self
                            .abort(id, format!("cannot start the engine: {e}"), true)
                            .await;
                    }
                };
                #[cfg(feature = "sim-cheat")]
                if let Some(crate::cheat::Cheat::Mpc(d)) = self.ctx.cheat {
                    engine.set_cheat(d);
                }
                let out = match engine.start() {
                    Ok(o) => o,
                    Err(e) => {
                        let unsent = engine.take_unsent();
                        self.send_outgoing(id, unsent).await;
                        return self.abort(id, e.to_string(), true).await;
                    }
                };
                let done = engine.status() == Status::Done;
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.runner = Some(Runner::Compute {
                        engine: Box::new(engine),
                    });
                }
                self.send_outgoing(id, out).await;
                if done {
                    Box::pin(self.advance(id)).await;
                }
                for (from, msg) in pending {
                    Box::pin(self.on_mpc(from, id, msg)).await;
                }
            }
            Some(Runner::Compute { engine }) => {
                let Some(output) = engine.output() else {
                    return self
                        .abort(id, "the engine finished without output".into(), true)
                        .await;
                };
                let commitments: Vec<String> = output
                    .commitments
                    .iter()
                    .map(|c| hex::encode(c.0))
                    .collect();
                match crate::programs::decode(&job.spec, &output.values) {
                    Ok(result) => {
                        // `None`: this party is not a recipient and received no opening shares.
                        job.compute_ms = job.started.map(|s| s.elapsed().as_millis() as u64);
                        job.compute_us = job.started.map(|s| s.elapsed().as_micros() as u64);
                        job.result = result;
                        job.commitments = commitments;
                        job.state = JobState::Done;
                        tracing::info!(job = %id, compute_ms = job.compute_ms, "job done");
                    }
                    Err(e) => {
                        self.abort(id, format!("cannot interpret the result: {e}"), true)
                            .await
                    }
                }
            }
            None => {}
        }
    }

    async fn send_outgoing(&mut self, id: JobId, out: Vec<Outgoing>) {
        for o in out {
            self.send(
                o.to,
                Body::Mpc {
                    job: id,
                    msg: o.msg,
                },
            )
            .await;
        }
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
        job.runner = None;
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

fn view(j: &Job, epoch: &Epoch) -> JobView {
    JobView {
        spec: j.spec.clone(),
        state: j.state.clone(),
        approvals: j
            .approvals
            .iter()
            .filter_map(|&p| epoch.manifest.parties.get(p).map(|x| x.name.clone()))
            .collect(),
        result: j.result.clone(),
        compute_ms: j.compute_ms,
        compute_us: j.compute_us,
        commitments: j.commitments.clone(),
    }
}

/// Who receives a job's outputs, as manifest indices.
fn recipients(epoch: &Epoch, spec: &JobSpec) -> parley_enclave::program::Recipients {
    use parley_enclave::program::Recipients;
    if spec.recipients.is_empty() {
        return Recipients::All;
    }
    Recipients::Parties(
        spec.recipients
            .iter()
            .filter_map(|r| epoch.manifest.index_of(r))
            .collect(),
    )
}

/// The session id of a job's PRSS key set-up.
fn keys_session_id(manifest_hash: &[u8; 32], id: JobId) -> SessionId {
    let mut h = Sha256::new();
    h.update(b"parley/job-keys/v1\0");
    h.update(manifest_hash);
    h.update(id.0);
    SessionId(h.finalize().into())
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
