//! The engine: one task that owns the node's jobs — consent, attestation for each job,
//! budgets, timeouts — and the control outboxes of its peer sessions.
//!
//! Sessions, the admin socket, job actors and a timer feed it [`Event`]s; it answers by
//! sending frames. It never computes: each running job is an actor ([`crate::jobs::actor`]) on its
//! own thread that sends its protocol frames itself, so the engine, the admin socket and
//! other jobs go on while a step computes. After each event it publishes every job's view
//! and the peers' status on the [`Board`], which the admin socket reads.
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

use parley_attestation::ratls::{self, Gate2Context};
use parley_enclave::engine::Security;
use parley_enclave::{Config as MpcConfig, Message, SessionId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ring::rand::SecureRandom;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::admin::{AdminRequest, AdminResponse, PeerView};
use crate::jobs::job::{
    JobApproval, JobId, JobKind, JobOutput, JobSpec, JobState, JobView, SecurityModel,
    SignedApproval,
};
use parley_attestation::hexbytes::{Ed25519Key, HexBytes};

use crate::jobs::actor::{JobActor, Outcome};
use crate::jobs::analytics::Work;
use crate::jobs::board::{Board, PeerBoard};
use crate::jobs::{JobError, Version};
use crate::node::{CERT_LIFETIME, Epoch, NodeContext};
use crate::peer::wire::Body;
pub use crate::peer::{Event, SessionInfo};
use crate::store::audit::SignedTreeHead;
use parley_enclave::analytics::Plan;
use parley_enclave::decimal::Decimal;
use parley_enclave::dp::noise::NoisePool;

pub use crate::peer::codes;

/// Protocol messages buffered for a job that has not started yet, per job.
const MAX_EARLY_MESSAGES: usize = 4096;
/// Decisions buffered for proposals not yet received (sessions are independent, so a
/// party's approval can overtake the proposal itself).
const MAX_EARLY_DECISIONS: usize = 256;
/// Final jobs kept in memory (older ones are read from the store).
const KEPT_JOBS: usize = 256;
/// A peer must answer a re-attestation challenge within this time.
const CHALLENGE_TIMEOUT: Duration = Duration::from_secs(30);

struct PeerSlot {
    conn: u64,
    outbox: mpsc::Sender<Body>,
    data: mpsc::Sender<crate::peer::DataFrame>,
    close: watch::Sender<bool>,
    info: SessionInfo,
    /// When the peer's last fresh evidence was accepted.
    attested_at: Instant,
    /// Our outstanding re-attestation challenge.
    challenge: Option<([u8; 32], Instant)>,
    /// When the session last heard from the peer (kept by the session's reader).
    alive: Arc<crate::peer::session::Liveness>,
    /// The head of our log the peer holds (log id, size), as far as we know.
    holds_of_me: Option<([u8; 16], u64)>,
}

/// `parley node recover`: collect the heads peers hold of our log, then recover.
struct Recovery {
    reported: BTreeSet<usize>,
    candidates: Vec<SignedTreeHead>,
    done: bool,
}

struct Job {
    spec: JobSpec,
    hash: [u8; 32],
    awaiting_operator: bool,
    verdicts: BTreeMap<String, String>,
    state: JobState,
    approvals: BTreeSet<usize>,
    waiting_attestation: BTreeSet<usize>,
    /// Parties (us included) that announced they passed every gate for this job.
    ready: BTreeSet<usize>,
    /// The running job's actor.
    actor: Option<JobActor>,
    early: Vec<(usize, Message)>,
    created: Instant,
    started: Option<Instant>,
    compute_ms: Option<u64>,
    compute_us: Option<u64>,
    result: Option<JobOutput>,
    commitments: Vec<String>,
    /// An analytics job's plan: built once (at this node's approval, or at the start) and
    /// kept for the run and the decoding of its outputs.
    plan: Option<Plan>,
    /// This node's budget charge for the job: (dataset, ρ, spent).
    charge: Option<(String, Decimal, bool)>,
}

/// A generator seeded from the OS, or `None` (then DP jobs are refused, never run on a
/// predictable seed).
fn os_seeded() -> Option<ChaCha20Rng> {
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut seed).ok()?;
    Some(ChaCha20Rng::from_seed(seed))
}

pub struct Engine {
    ctx: Arc<NodeContext>,
    epoch: Arc<Epoch>,
    peers: Vec<Option<PeerSlot>>,
    last_error: BTreeMap<String, String>,
    jobs: BTreeMap<JobId, Job>,
    early_decisions: Vec<(usize, SignedApproval)>,
    /// Each peer's datasets and versions (names only).
    catalogs: BTreeMap<String, BTreeMap<String, u64>>,
    recovery: Option<Recovery>,
    pending_epoch: Option<Epoch>,
    stop: watch::Sender<bool>,
    /// This node's DP noise, pre-sampled from a CSPRNG and refilled between jobs.
    noise: Option<NoisePool>,
    rng: ring::rand::SystemRandom,
    /// What readers (the admin socket) see.
    board: Arc<Board>,
    /// The engine's own events, for job actors to report on.
    events: mpsc::Sender<Event>,
    /// A job changed state while handling an event that otherwise publishes nothing.
    changed: bool,
}

impl Engine {
    pub fn new(
        ctx: Arc<NodeContext>,
        stop: watch::Sender<bool>,
        board: Arc<Board>,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let recover = ctx.recover;
        let epoch = ctx.epoch();
        let n = epoch.manifest.parties.len();
        Engine {
            ctx,
            epoch,
            peers: (0..n).map(|_| None).collect(),
            last_error: BTreeMap::new(),
            jobs: BTreeMap::new(),
            early_decisions: Vec::new(),
            catalogs: BTreeMap::new(),
            recovery: recover.then(|| Recovery {
                reported: BTreeSet::new(),
                candidates: Vec::new(),
                done: false,
            }),
            pending_epoch: None,
            stop,
            noise: os_seeded().map(NoisePool::new),
            rng: ring::rand::SystemRandom::new(),
            board,
            events,
            changed: false,
        }
    }

    /// Run until stopped; returns the final view of every job.
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) -> Vec<JobView> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut stop = self.stop.subscribe();
        self.publish();
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => {
                        // A protocol message for a running job only passes through to its
                        // actor: nothing to publish.
                        let quiet = matches!(&ev, Event::Frame { body: Body::Mpc { .. }, .. });
                        self.handle(ev).await;
                        if !quiet || std::mem::take(&mut self.changed) {
                            self.publish();
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.on_tick().await;
                    self.publish();
                }
                _ = crate::util::stopped(&mut stop) => break,
            }
        }
        // Shutting down: abort what is still running so peers are told.
        for id in self.open_jobs() {
            self.abort(id, "the node is shutting down".into(), true)
                .await;
        }
        self.publish();
        self.jobs.values().map(|j| view(j, &self.epoch)).collect()
    }

    /// Publish every job's view and the peers' status for readers; forget final jobs beyond
    /// the newest [`KEPT_JOBS`] (their views stay in the store).
    fn publish(&mut self) {
        let finished: Vec<(Instant, JobId)> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state.is_final())
            .map(|(id, j)| (j.created, *id))
            .collect();
        if finished.len() > KEPT_JOBS {
            let mut finished = finished;
            finished.sort();
            for (_, id) in &finished[..finished.len() - KEPT_JOBS] {
                self.jobs.remove(id);
                self.board.forget_job(id);
            }
        }
        for j in self.jobs.values() {
            self.board.put_job(view(j, &self.epoch));
        }
        self.board.put_peers(self.peer_board());
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
                data,
                close,
                info,
                alive,
            } => {
                if info.epoch.manifest_hash != self.epoch.manifest_hash || peer >= self.peers.len()
                {
                    // Established under an epoch we just left: drop it, its dialer reconnects.
                    let _ = close.send(true);
                    return;
                }
                if let Some(old) = self.peers[peer].take() {
                    let _ = old.close.send(true);
                    // Running jobs send over the old session's outboxes: they cannot go on.
                    let who = self.name(peer);
                    for id in self.jobs_involving(peer) {
                        self.abort(
                            id,
                            format!("the session with peer {who} was replaced by a new one"),
                            true,
                        )
                        .await;
                    }
                }
                self.last_error.remove(&self.name(peer));
                self.peers[peer] = Some(PeerSlot {
                    conn,
                    outbox,
                    data,
                    close,
                    info,
                    attested_at: Instant::now(),
                    challenge: None,
                    alive,
                    holds_of_me: None,
                });
                // Names and versions of our datasets (never contents), for proposals.
                let datasets = catalog_body(&self.ctx.catalog());
                self.send(peer, datasets).await;
                self.send_checkpoint(peer).await;
            }
            Event::PeerDown { peer, conn, reason } => {
                if self.slot(peer, conn).is_some() {
                    self.peers[peer] = None;
                    let who = self.name(peer);
                    // The next session brings a fresh catalog; proposals never use an old one.
                    self.catalogs.remove(&who);
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
                // The operator's next read sees what this request changed.
                self.publish();
                let _ = reply.send(resp);
            }
            Event::JobEnded { id, outcome } => self.job_ended(id, outcome).await,
            Event::CatalogChanged => {
                let catalog = self.ctx.catalog();
                self.broadcast(|| catalog_body(&catalog)).await;
            }
        }
    }

    fn jobs_involving(&self, _peer: usize) -> Vec<JobId> {
        // Every job involves every party.
        self.open_jobs()
    }

    /// A control frame to `peer`. Never waits: a peer whose control outbox is full has
    /// stopped reading, and its session is closed (its jobs abort on the PeerDown that
    /// follows); a closed outbox means the session is already ending.
    async fn send(&self, peer: usize, body: Body) {
        if let Some(slot) = self.peers.get(peer).and_then(Option::as_ref)
            && let Err(mpsc::error::TrySendError::Full(_)) = slot.outbox.try_send(body)
        {
            tracing::warn!(peer = %self.name(peer), "the peer is not reading its control frames; closing the session");
            let _ = slot.close.send(true);
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
        let nonce = crate::peer::session::nonce();
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
            Ok(c) => {
                self.send(
                    peer,
                    Body::Attest {
                        evidence: c.evidence,
                        endorsements: c.endorsements,
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

    async fn on_attest(
        &mut self,
        peer: usize,
        evidence: Vec<u8>,
        endorsements: Vec<u8>,
        peer_time: i64,
    ) {
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
        let (verdict, accepted) = self
            .epoch
            .gate1
            .check_gate2(&who, &evidence, &endorsements, &cx);
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
        // Keep-alive: a silent peer is dropped (and its jobs aborted). Sessions ping on
        // their own when idle, so only a peer whose process or network is gone falls silent.
        let silent_after = Duration::from_secs(self.ctx.config.jobs.peer_silent_secs.max(1));
        for p in 0..self.peers.len() {
            let silent = self.peers[p]
                .as_ref()
                .is_some_and(|slot| slot.alive.silent_for() > silent_after);
            if silent {
                let reason = format!(
                    "{}: no frame for {} s",
                    codes::SILENT,
                    silent_after.as_secs()
                );
                self.drop_peer(p, reason).await;
            }
        }
        // Proposals whose approvals did not all arrive in time.
        let now = crate::util::unix_now();
        let expired: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.state == JobState::Proposed && j.spec.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(j) = self.jobs.get_mut(&id) {
                j.state =
                    JobState::Refused("the proposal expired before every party approved it".into());
                j.awaiting_operator = false;
            }
            self.unreserve(id);
            self.persist(
                id,
                "job-refused",
                serde_json::json!({ "job": id.to_string(), "reason": "expired" }),
            );
        }
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

    // ---- audit-log tree heads and rollback detection ----------------------------------------

    /// The latest tree head of `party`'s log that this node holds.
    pub fn held_head(&self, party: &str) -> Option<SignedTreeHead> {
        self.ctx.journal.held_head(party)
    }

    async fn send_checkpoint(&self, peer: usize) {
        let held = self.held_head(&self.name(peer));
        self.send(peer, Body::Checkpoint { held }).await;
    }

    async fn signed_head(&self) -> Option<SignedTreeHead> {
        let head = self.ctx.journal.head().ok()?;
        let sig = self.ctx.identity.sign(&head.to_be_signed()).await.ok()?;
        Some(SignedTreeHead {
            head,
            signature: HexBytes(sig.0),
        })
    }

    /// Send our current head to `peer`, with a consistency proof from what it holds.
    async fn send_head(&mut self, peer: usize) {
        if self.recovery.as_ref().is_some_and(|r| !r.done) {
            return;
        }
        let Some(head) = self.signed_head().await else {
            return;
        };
        let Some(slot) = self.peers[peer].as_mut() else {
            return;
        };
        let proof = match &slot.holds_of_me {
            Some((log, size)) if *log == head.head.log_id.0 => self
                .ctx
                .journal
                .consistency_proof(*size)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        slot.holds_of_me = Some((head.head.log_id.0, head.head.size));
        self.send(peer, Body::TreeHead { head, proof }).await;
    }

    async fn on_checkpoint(&mut self, peer: usize, held: Option<SignedTreeHead>) {
        let own_key = Ed25519Key(*self.ctx.identity.public_key().as_bytes());
        let held = held.filter(|h| h.verify(&own_key) && h.head.party == self.epoch.my_name());
        let ours = match self.ctx.journal.head() {
            Ok(h) => h,
            Err(e) => return tracing::error!(error = %e, "cannot read this node's audit log"),
        };
        if let Some(h) = &held {
            let behind = (h.head.log_id == ours.log_id && h.head.size > ours.size)
                || h.head.ledger_counter > ours.ledger_counter;
            if behind {
                let who = self.name(peer);
                tracing::error!(
                    peer = %who, held_size = h.head.size, our_size = ours.size, held_counter = h.head.ledger_counter,
                    our_counter = ours.ledger_counter,
                    "a peer holds a newer head of this node's audit log: this store was rolled back (restored from a backup?); run `parley node recover`"
                );
                if let Some(r) = self.recovery.as_mut()
                    && !r.done
                {
                    r.candidates.push(h.clone());
                }
            }
        }
        if let Some(slot) = self.peers[peer].as_mut() {
            slot.holds_of_me = held.map(|h| (h.head.log_id.0, h.head.size));
        }
        if let Some(r) = self.recovery.as_mut()
            && !r.done
        {
            r.reported.insert(peer);
            return self.maybe_recover().await;
        }
        self.send_head(peer).await;
    }

    async fn on_tree_head(&mut self, peer: usize, head: SignedTreeHead, proof: Vec<u8>) {
        let who = self.name(peer);
        let key = self.epoch.manifest.parties[peer].identity_key;
        if head.head.party != who || !head.verify(&key) {
            return self
                .drop_peer(
                    peer,
                    format!(
                        "{}: a tree head not signed by {who}'s identity key",
                        codes::ROLLBACK
                    ),
                )
                .await;
        }
        let h = &head.head;
        let verdict = match self.held_head(&who) {
            None => Ok(()),
            Some(held) if held.head.log_id == h.log_id => {
                let o = &held.head;
                if h.size < o.size || h.ledger_counter < o.ledger_counter {
                    Err(format!(
                        "its audit log has {} entries and its ledger counter is {}, but it showed this node {} entries and counter {} before: its store was rolled back",
                        h.size, h.ledger_counter, o.size, o.ledger_counter
                    ))
                } else if !crate::store::audit::verify_consistency(
                    o.size, &o.root.0, h.size, &h.root.0, &proof,
                ) {
                    Err(format!(
                        "its audit log (size {}) is not an extension of the one it showed before (size {}): it was rewritten",
                        h.size, o.size
                    ))
                } else {
                    Ok(())
                }
            }
            Some(held) => match &h.recovered {
                Some(p)
                    if p.log_id == held.head.log_id
                        && p.size >= held.head.size
                        && p.ledger_counter >= held.head.ledger_counter =>
                {
                    let _ = self.ctx.journal.record(
                        "peer-recovered",
                        serde_json::json!({ "peer": who, "previous_size": p.size, "previous_counter": p.ledger_counter, "new_log": h.log_id }),
                    );
                    Ok(())
                }
                _ => Err(format!(
                    "it presents a different audit log ({}…) that does not acknowledge the one it showed before ({}…, {} entries)",
                    &h.log_id.to_string()[..8],
                    &held.head.log_id.to_string()[..8],
                    held.head.size
                )),
            },
        };
        match verdict {
            Ok(()) => {
                let json = serde_json::to_string(&head).unwrap_or_default();
                let store = &self.ctx.journal.store;
                let r = store.transaction(|tx| {
                    tx.execute(
                        "INSERT INTO peer_heads (peer, head, at) VALUES (?1, ?2, ?3) ON CONFLICT(peer) DO UPDATE SET head = ?2, at = ?3",
                        rusqlite::params![who, json, crate::util::unix_now()],
                    )
                    .map_err(|e| store.sql_error(e))?;
                    Ok(())
                });
                if let Err(e) = r {
                    tracing::error!(error = %e, "cannot store a peer's tree head");
                }
            }
            Err(reason) => {
                let v = self.epoch.gate1.appraiser.refusal(
                    codes::ROLLBACK,
                    reason.clone(),
                    crate::util::unix_now(),
                );
                self.epoch.gate1.sink.record_gate(&who, 2, &v, false);
                let _ = self.ctx.journal.record(
                    "rollback-detected",
                    serde_json::json!({ "peer": who, "reason": reason }),
                );
                self.drop_peer(
                    peer,
                    format!(
                        "{}: {reason} — its operator must run `parley node recover`",
                        codes::ROLLBACK
                    ),
                )
                .await;
            }
        }
    }

    /// Recovery mode: once every connected peer said which of our heads it holds, start a
    /// new log generation that records the lost range, restore the ledger counter and spend
    /// to the newest held head, sign it, and show peers the new head.
    async fn maybe_recover(&mut self) {
        let connected: BTreeSet<usize> = (0..self.peers.len())
            .filter(|&p| self.peers[p].is_some())
            .collect();
        let Some(r) = self.recovery.as_mut() else {
            return;
        };
        if r.done
            || connected.is_empty()
            || !connected.iter().all(|p| r.reported.contains(p))
            || connected.len() + 1 < self.peers.len()
        {
            return;
        }
        r.done = true;
        let newest = r
            .candidates
            .iter()
            .max_by_key(|h| (h.head.size, h.head.ledger_counter))
            .cloned();
        let Some(newest) = newest else {
            tracing::info!(
                "recovery: no peer holds a newer head of this node's log; nothing to recover"
            );
            for p in connected {
                self.send_head(p).await;
            }
            return;
        };
        let ours = match self.ctx.journal.head() {
            Ok(h) => h,
            Err(e) => return tracing::error!(error = %e, "recovery: cannot read the log"),
        };
        let record = serde_json::json!({
            "previous": newest.head.as_previous(),
            "previous_head": newest,
            "restored_size": ours.size,
            "lost_entries": format!("{}..{}", ours.size, newest.head.size),
            "restored_ledger_counter": ours.ledger_counter,
            "peer_held_ledger_counter": newest.head.ledger_counter,
            "peer_held_spent": newest.head.spent,
        });
        let sig = match self
            .ctx
            .identity
            .sign(
                &parley_attestation::canonical::to_be_signed(
                    parley_attestation::canonical::Domain::Recovery,
                    &record,
                )
                .unwrap_or_default(),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return tracing::error!(error = %e, "recovery: cannot sign the recovery record");
            }
        };
        let detail =
            serde_json::json!({ "record": record, "operator_signature": hex::encode(sig.0) });
        if let Err(e) = self.ctx.journal.start_generation(detail) {
            return tracing::error!(error = %e, "recovery: cannot start a new log generation");
        }
        // Ledger: as many entries as peers saw, and their spend.
        let store = self.ctx.journal.store.clone();
        let missing = newest
            .head
            .ledger_counter
            .saturating_sub(ours.ledger_counter);
        let spent = newest.head.spent.clone();
        let r = self.ctx.journal.record_with(
            "ledger-recovered",
            serde_json::json!({ "entries_restored": missing, "spent": spent }),
            |tx| {
                // Entries peers counted but this store lost: counted again, amounts below.
                for _ in 0..missing {
                    tx.execute(
                        "INSERT INTO ledger (dataset, job_id, kind, amount, at) VALUES ('*', 'recovery', 'recovered', '0', ?1)",
                        rusqlite::params![crate::util::unix_now()],
                    )
                    .map_err(|e| store.sql_error(e))?;
                }
                for (dataset, amount) in &spent {
                    let held: u128 = amount.parse().unwrap_or(0);
                    let have: u128 = ours.spent.get(dataset).and_then(|a| a.parse().ok()).unwrap_or(0);
                    let amount = held.saturating_sub(have).to_string();
                    tx.execute(
                        "INSERT INTO ledger (dataset, job_id, kind, amount, at) VALUES (?1, 'recovery', 'recovered-spend', ?2, ?3)",
                        rusqlite::params![dataset, amount, crate::util::unix_now()],
                    )
                    .map_err(|e| store.sql_error(e))?;
                }
                Ok(())
            },
        );
        if let Err(e) = r {
            return tracing::error!(error = %e, "recovery: cannot restore the ledger");
        }
        tracing::warn!(lost = %format!("{}..{}", ours.size, newest.head.size), "recovered from a rolled-back store; the lost range is recorded in the audit log");
        for p in connected {
            self.send_head(p).await;
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
        self.catalogs.clear();
        self.last_error.clear();
    }

    // ---- admin ----------------------------------------------------------------------------

    /// Requests that change the node (reads are served from the board and the store by the
    /// admin socket itself).
    async fn on_admin(&mut self, req: AdminRequest) -> AdminResponse {
        match req {
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
                analytics,
            } => match self
                .submit(
                    kind, dataset, columns, security, bench, recipients, analytics,
                )
                .await
            {
                Ok(id) => AdminResponse::Submitted { id },
                Err(e) => AdminResponse::Error {
                    message: e.to_string(),
                },
            },
            AdminRequest::Activate => match self.activate().await {
                Ok((epoch, pending)) => AdminResponse::Activated { epoch, pending },
                Err(message) => AdminResponse::Error { message },
            },
            AdminRequest::Approve { id } | AdminRequest::Refuse { id, .. }
                if !self.jobs.get(&id).is_some_and(|j| j.awaiting_operator) =>
            {
                AdminResponse::Error {
                    message: format!("job {id} is not awaiting this node's decision"),
                }
            }
            AdminRequest::Approve { id } => {
                self.decide(id, true, None).await;
                AdminResponse::Job(Box::new(view(&self.jobs[&id], &self.epoch)))
            }
            AdminRequest::Refuse { id, reason } => {
                let reason = format!("refused by {}'s operator: {reason}", self.epoch.my_name());
                self.decide(id, false, Some(reason)).await;
                AdminResponse::Job(Box::new(view(&self.jobs[&id], &self.epoch)))
            }
            other => AdminResponse::Error {
                message: format!(
                    "{} is answered by the admin socket, not the engine",
                    serde_json::to_value(&other)
                        .ok()
                        .and_then(|v| v["cmd"].as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            },
        }
    }

    /// This node and its peers, for the board.
    fn peer_board(&self) -> PeerBoard {
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
                        catalog: slot.is_some() && self.catalogs.contains_key(&p.name),
                    },
                )
            })
            .collect();
        PeerBoard {
            party: self.epoch.my_name().to_owned(),
            epoch: self.epoch.manifest.epoch,
            manifest_hash: hex::encode(self.epoch.manifest_hash),
            peers,
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

    #[allow(clippy::too_many_arguments)] // the admin request's fields, one by one
    async fn submit(
        &mut self,
        kind: JobKind,
        dataset: String,
        columns: Vec<String>,
        security: SecurityModel,
        bench: Option<crate::jobs::job::BenchSpec>,
        recipients: Vec<String>,
        analytics: Option<Box<parley_enclave::analytics::AnalyticsSpec>>,
    ) -> Result<JobId, JobError> {
        if self.pending_epoch.is_some() {
            return Err(JobError::NotNow(
                "a new federation epoch is being activated; propose the job once it is".into(),
            ));
        }
        let missing = self.disconnected();
        if !missing.is_empty() {
            return Err(JobError::NotNow(format!(
                "cannot propose a job: no attested session with {}",
                missing.join(", ")
            )));
        }
        let mut id = [0u8; 16];
        let mut nonce = [0u8; 16];
        self.rng
            .fill(&mut id)
            .and_then(|()| self.rng.fill(&mut nonce))
            .map_err(|_| JobError::Rng)?;
        // Every party's version of the dataset, from the catalogs peers sent.
        let mut dataset_versions = BTreeMap::new();
        if kind != JobKind::BenchMul {
            for (i, p) in self.epoch.manifest.parties.iter().enumerate() {
                let v = if i == self.epoch.me {
                    self.ctx.catalog().version(&dataset)
                } else {
                    self.catalogs
                        .get(&p.name)
                        .and_then(|c| c.get(&dataset).copied())
                };
                let v = v.ok_or_else(|| JobError::NoDataset {
                    party: p.name.clone(),
                    dataset: dataset.clone(),
                })?;
                dataset_versions.insert(p.name.clone(), v);
            }
        }
        let now = crate::util::unix_now();
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
            nonce,
            expires: now + self.ctx.config.jobs.approval_window_secs as i64,
            dataset_versions,
            analytics,
        };
        self.ctx.check_job(&self.epoch, &spec)?;
        tracing::info!(job = %spec.id, kind = kind.as_str(), "proposing job");
        let s = spec.clone();
        self.broadcast(|| Body::Propose(s.clone())).await;
        self.record_and_decide(spec).await;
        Ok(JobId(id))
    }

    /// Record a proposal, then decide: approve under an auto-approval rule, refuse if this
    /// node cannot run it, or wait for the operator (`parley job approve|refuse`).
    async fn record_and_decide(&mut self, spec: JobSpec) {
        let id = spec.id;
        let me = self.epoch.my_name().to_owned();
        let hash = spec.hash();
        let check = self.ctx.check_job(&self.epoch, &spec).and_then(|()| {
            if self.pending_epoch.is_some() {
                return Err(JobError::NotNow(format!(
                    "{me} is switching federation epochs"
                )));
            }
            if spec.expires <= crate::util::unix_now() {
                return Err(JobError::NotNow("the proposal has already expired".into()));
            }
            if spec.kind != JobKind::BenchMul {
                let mine = self.ctx.catalog().version(&spec.dataset);
                let named = spec.dataset_versions.get(&me).copied();
                if named != mine {
                    return Err(JobError::VersionMismatch {
                        party: me.clone(),
                        dataset: spec.dataset.clone(),
                        named: Version(named),
                        now: Version(mine),
                    });
                }
            }
            Ok(())
        });
        let auto = self
            .ctx
            .config
            .jobs
            .auto_approve
            .iter()
            .any(|k| k == spec.kind.as_str());
        let detail = serde_json::json!({
            "job": id.to_string(), "kind": spec.kind.as_str(), "proposer": spec.proposer,
            "hash": hex::encode(hash), "dataset": spec.dataset, "columns": spec.columns,
            "recipients": spec.recipients, "security": spec.security.as_str(),
        });
        self.jobs.insert(
            id,
            Job {
                spec,
                hash,
                state: JobState::Proposed,
                approvals: BTreeSet::new(),
                awaiting_operator: check.is_ok() && !auto,
                waiting_attestation: BTreeSet::new(),
                ready: BTreeSet::new(),
                actor: None,
                early: Vec::new(),
                created: Instant::now(),
                started: None,
                compute_ms: None,
                compute_us: None,
                result: None,
                commitments: Vec::new(),
                verdicts: BTreeMap::new(),
                plan: None,
                charge: None,
            },
        );
        self.persist(id, "job-proposed", detail);
        match check {
            Err(reason) => self.decide(id, false, Some(reason.to_string())).await,
            Ok(()) if auto => self.decide(id, true, None).await,
            Ok(()) => {
                tracing::info!(job = %id, "job awaits this node's operator: parley job approve {id}")
            }
        }
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early_decisions)
            .into_iter()
            .partition(|d| d.1.approval.job == id);
        self.early_decisions = later;
        for (party, signed) in now {
            self.on_decision(party, signed).await;
        }
    }

    /// Sign this node's decision on `id` and send it to every party.
    async fn decide(&mut self, id: JobId, mut approved: bool, mut reason: Option<String>) {
        // Approving a DP job reserves its ρ on this node's budget first.
        if approved && let Err(why) = self.reserve(id) {
            approved = false;
            reason = Some(why.to_string());
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.awaiting_operator = false;
        let approval = JobApproval {
            job: id,
            job_hash: HexBytes(job.hash),
            party: self.epoch.my_name().to_owned(),
            approved,
            reason,
            time: crate::util::unix_now(),
        };
        let signature = match self.ctx.identity.sign(&approval.to_be_signed()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot sign the approval");
                return self
                    .abort(id, format!("cannot sign the approval: {e}"), true)
                    .await;
            }
        };
        let signed = SignedApproval {
            approval,
            signature: HexBytes(signature.0),
        };
        let out = signed.clone();
        self.broadcast(|| Body::Approve(out.clone())).await;
        self.on_decision(self.epoch.me, signed).await;
    }

    /// The job delivered its output: persist it with a ledger entry (the release counter
    /// peers hold) and the output's hash (never the values) in the audit log.
    fn delivered(&self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let output_hash = job
            .result
            .as_ref()
            .map(|r| hex::encode(parley_attestation::canonical::jcs_sha256(r).unwrap_or_default()));
        let v = view(job, &self.epoch);
        let json = serde_json::to_string(&v).unwrap_or_default();
        let dataset = job.spec.dataset.clone();
        let store = &self.ctx.journal.store;
        let now = crate::util::unix_now();
        let detail = serde_json::json!({
            "job": id.to_string(), "commitments": job.commitments, "output_sha256": output_hash,
            "recipient": job.result.is_some(),
        });
        let result = self.ctx.journal.record_with("job-done", detail, |tx| {
            tx.execute(
                "UPDATE jobs SET state = 'done', view = ?2, updated = ?3 WHERE id = ?1",
                rusqlite::params![id.to_string(), json, now],
            )
            .map_err(|e| store.sql_error(e))?;
            // No differential privacy yet: a release with amount 0 still counts.
            tx.execute(
                "INSERT INTO ledger (dataset, job_id, kind, amount, at) VALUES (?1, ?2, 'release', '0', ?3)",
                rusqlite::params![dataset, id.to_string(), now],
            )
            .map_err(|e| store.sql_error(e))?;
            Ok(())
        });
        if let Err(e) = result {
            tracing::error!(job = %id, error = %e, "cannot persist the finished job");
        }
    }

    /// Persist a job's current view with an audit entry, in one transaction.
    fn persist(&self, id: JobId, event: &str, detail: serde_json::Value) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let v = view(job, &self.epoch);
        let spec = serde_json::to_string(&job.spec).unwrap_or_default();
        let json = serde_json::to_string(&v).unwrap_or_default();
        let state = serde_json::to_value(&v.state)
            .ok()
            .and_then(|s| s.get("state").and_then(|x| x.as_str().map(str::to_owned)));
        let store = &self.ctx.journal.store;
        let now = crate::util::unix_now();
        let result = self.ctx.journal.record_with(event, detail, |tx| {
            tx.execute(
                "INSERT INTO jobs (id, hash, spec, state, view, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
                 ON CONFLICT(id) DO UPDATE SET state = ?4, view = ?5, updated = ?6",
                rusqlite::params![id.to_string(), v.hash, spec, state.unwrap_or_default(), json, now],
            )
            .map_err(|e| store.sql_error(e))?;
            Ok(())
        });
        if let Err(e) = result {
            tracing::error!(job = %id, error = %e, "cannot persist the job");
        }
    }

    async fn on_frame(&mut self, peer: usize, body: Body) {
        let who = self.name(peer);
        match body {
            Body::Propose(spec) => {
                if spec.proposer != who {
                    tracing::warn!(peer = %who, "proposal names another proposer; ignored");
                } else if self.jobs.contains_key(&spec.id)
                    || !matches!(self.ctx.journal.store.job_view(&spec.id), Ok(None))
                {
                    // Also a job this node no longer holds in memory: ids are single-use.
                    tracing::warn!(peer = %who, job = %spec.id, "duplicate proposal; ignored");
                } else {
                    tracing::info!(peer = %who, job = %spec.id, kind = spec.kind.as_str(), "job proposed");
                    self.record_and_decide(spec).await;
                }
            }
            Body::Approve(signed) => {
                let key = self.epoch.manifest.parties[peer].identity_key;
                if signed.approval.party != who || !signed.verify(&key) {
                    tracing::warn!(peer = %who, "an approval not signed by the sending party's identity key; ignored");
                } else {
                    self.on_decision(peer, signed).await;
                }
            }
            Body::Catalog { datasets } => {
                self.catalogs
                    .insert(who.clone(), datasets.into_iter().collect());
            }
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
                endorsements,
                unix_time,
            } => {
                self.on_attest(peer, evidence, endorsements, unix_time)
                    .await
            }
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
            Body::Checkpoint { held } => self.on_checkpoint(peer, held).await,
            Body::TreeHead { head, proof } => self.on_tree_head(peer, head, proof).await,
            // Keep-alives: the session already noted that the peer is there.
            Body::Ping | Body::Pong => {}
            Body::Hello(_) | Body::Accept => {
                tracing::warn!(peer = %who, "unexpected set-up frame mid-session; ignored")
            }
        }
    }

    async fn on_decision(&mut self, party: usize, signed: SignedApproval) {
        let who = self.name(party);
        let n = self.peers.len();
        let id = signed.approval.job;
        let Some(job) = self.jobs.get_mut(&id) else {
            if self.early_decisions.len() < MAX_EARLY_DECISIONS {
                self.early_decisions.push((party, signed));
            } else {
                tracing::warn!(peer = %who, job = %id, "too many decisions on unknown jobs; ignored");
            }
            return;
        };
        if signed.approval.job_hash.0 != job.hash {
            tracing::warn!(peer = %who, job = %id, "an approval of another version of the job; ignored");
            return;
        }
        if job.state != JobState::Proposed || job.approvals.contains(&party) {
            return;
        }
        let approved = signed.approval.approved;
        let reason = signed.approval.reason.clone();
        // Single-use: one decision per party and job, kept with the job.
        let json = serde_json::to_string(&signed).unwrap_or_default();
        let store = &self.ctx.journal.store;
        let detail = serde_json::json!({ "job": id.to_string(), "party": who, "approved": approved, "reason": reason });
        let recorded = self.ctx.journal.record_with("job-approval", detail, |tx| {
            tx.execute(
                "INSERT INTO approvals (job_id, party, approval, at) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id.to_string(), who, json, crate::util::unix_now()],
            )
            .map_err(|e| store.sql_error(e))?;
            Ok(())
        });
        if let Err(e) = recorded {
            tracing::warn!(job = %id, party = %who, error = %e, "cannot record the approval (a replay?); ignored");
            return;
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !approved {
            let why = reason.unwrap_or_else(|| "no reason given".into());
            tracing::warn!(job = %id, party = %who, reason = %why, "job refused");
            job.state = JobState::Refused(format!("{who} refused: {why}"));
            job.awaiting_operator = false;
            self.unreserve(id);
            self.persist(
                id,
                "job-refused",
                serde_json::json!({ "job": id.to_string(), "by": who }),
            );
            return;
        }
        job.approvals.insert(party);
        if job.approvals.len() == n {
            self.persist(
                id,
                "job-approved",
                serde_json::json!({ "job": id.to_string() }),
            );
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
        for p in peers.clone() {
            self.send_head(p).await;
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

    /// Start the job's protocol: its actor runs a fresh PRSS key set-up among the parties
    /// (its own session id), then the engine on this party's inputs.
    async fn start(&mut self, id: JobId) {
        let Some(spec) = self.jobs.get(&id).map(|j| j.spec.clone()) else {
            return;
        };
        // The privacy rule decides this party's keep bits and records the kept cells before
        // anything of the job leaves the node.
        let keep = match self.privacy_rule(id, &spec).await {
            Ok(k) => k,
            Err(e) => return self.abort(id, e.to_string(), true).await,
        };
        let (work, output_names) = match compute(|| self.job_work(id, &spec, keep.as_deref())) {
            Ok(w) => w,
            Err(e) => return self.abort(id, e.to_string(), true).await,
        };
        // The budget is spent before any share of this job leaves the node (a job that
        // aborts later is still charged: no refund once shares may have left).
        if let Err(e) = self.spend(id) {
            return self.abort(id, e.to_string(), true).await;
        }
        let (Some(keys_rng), Some(engine_rng)) = (self.seeded_rng(), self.seeded_rng()) else {
            return self
                .abort(id, "the system random number generator failed".into(), true)
                .await;
        };
        let security = match spec.security {
            SecurityModel::Malicious => Security::Malicious,
            SecurityModel::SemiHonest => Security::SemiHonest,
        };
        let keys_session = keys_session_id(&self.epoch.manifest_hash, id);
        let start = crate::jobs::actor::Start {
            id,
            spec: spec.clone(),
            plan: self.jobs.get(&id).and_then(|j| j.plan.clone()),
            output_names,
            security,
            work: Some(work),
            keys_cfg: self.mpc_config(keys_session),
            engine_cfg: self.mpc_config(session_id(&self.epoch.manifest_hash, id)),
            keys_session,
            keys_rng,
            engine_rng,
            names: self
                .epoch
                .manifest
                .parties
                .iter()
                .map(|p| p.name.clone())
                .collect(),
            outboxes: self
                .peers
                .iter()
                .map(|s| s.as_ref().map(|s| s.data.clone()))
                .collect(),
            #[cfg(feature = "sim-cheat")]
            cheat: self.cheat(),
        };
        let events = self.events.clone();
        let actor = match JobActor::spawn(start, move |id, outcome| {
            let _ = events.blocking_send(Event::JobEnded { id, outcome });
        }) {
            Ok(a) => a,
            Err(e) => {
                return self
                    .abort(id, format!("cannot start the job's thread: {e}"), true)
                    .await;
            }
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        tracing::info!(job = %id, security = job.spec.security.as_str(), "every party approved and re-attested; computing");
        let started_detail = serde_json::json!({ "job": id.to_string() });
        job.state = JobState::Running;
        job.started = Some(Instant::now());
        // The verdicts this job runs on, kept with it.
        for (i, p) in self.epoch.manifest.parties.iter().enumerate() {
            if i != self.epoch.me
                && let Some(r) = self.ctx.verdicts.get(&p.name, 2)
            {
                let codes: Vec<&str> = r.verdict.reasons.iter().map(|x| x.code.as_str()).collect();
                job.verdicts.insert(
                    p.name.clone(),
                    format!("{} [{}]", r.verdict.status, codes.join(", ")),
                );
            }
        }
        for (from, msg) in std::mem::take(&mut job.early) {
            actor.deliver(from, msg);
        }
        job.actor = Some(actor);
        self.persist(id, "job-started", started_detail);
    }

    /// The deviation a sim-cheat build was told to make, if it is one of the protocol's.
    #[cfg(feature = "sim-cheat")]
    fn cheat(&self) -> Option<parley_enclave::cheat::Deviation> {
        use parley_enclave::cheat::Deviation;
        let Some(crate::dev::cheat::Cheat::Mpc(d)) = self.ctx.cheat else {
            return None;
        };
        // Deal the inconsistent key to the next party (a dealer's own index is no victim).
        Some(match d {
            Deviation::InconsistentPrssKey { .. } => Deviation::InconsistentPrssKey {
                victim: (self.epoch.me + 1) % self.epoch.manifest.parties.len(),
            },
            other => other,
        })
    }

    /// An analytics job's plan, built on first use and kept with the job.
    fn job_plan(&mut self, id: JobId) -> Result<Plan, JobError> {
        let job = self
            .jobs
            .get(&id)
            .ok_or_else(|| JobError::NotNow(format!("this node no longer holds job {id}")))?;
        if let Some(p) = &job.plan {
            return Ok(p.clone());
        }
        let plan = crate::jobs::analytics::plan(&self.ctx, &self.epoch, &job.spec)?;
        if let Some(job) = self.jobs.get_mut(&id) {
            job.plan = Some(plan.clone());
        }
        Ok(plan)
    }

    /// An exact analytics job's keep bits (the privacy rule, DESIGN §6 item 4): computed
    /// against this dataset's release ledger in a fixed time slot, the kept cells appended to
    /// the ledger before the job sends anything. `None` for every other job.
    async fn privacy_rule(
        &mut self,
        id: JobId,
        spec: &JobSpec,
    ) -> Result<Option<Vec<bool>>, JobError> {
        let exact = spec.analytics.as_ref().map(|a| a.privacy)
            == Some(parley_enclave::analytics::spec::Privacy::Exact);
        // A summary-stats job is one exact cell: the whole dataset.
        let plan = match spec.kind {
            JobKind::Analytics if exact => Some(self.job_plan(id)?),
            JobKind::SummaryStats => None,
            _ => return Ok(None),
        };
        let cells = plan.as_ref().map_or(1, |p| p.layout.cells());
        // The mutation twin (test builds only): every cell kept, no ledger, so the attacks
        // the rule stops must then succeed.
        #[cfg(feature = "sim-cheat")]
        if std::env::var("PARLEY_MUTATION").as_deref() == Ok("no-keep-bits") {
            return Ok(Some(vec![true; cells]));
        }
        let me = self.epoch.my_name().to_owned();
        let min_k = crate::jobs::analytics::release_policy(&self.ctx, &me, &spec.dataset)?
            .min_k
            .unwrap_or(u64::MAX);
        let catalog = self.ctx.catalog();
        let ds = catalog.for_job(spec, &me)?;
        let version = catalog.version(&spec.dataset).unwrap_or(0);
        let ledger =
            crate::store::releases::load(&self.ctx.keys.envelope, &self.ctx.journal, &spec.dataset)
                .await
                .map_err(|e| JobError::Ledger(e.to_string()))?;
        let slot = std::time::Duration::from_millis(self.ctx.config.jobs.rule_slot_ms.max(1));
        let job = id.to_string();
        let decision = crate::jobs::analytics::in_slot(slot, || {
            compute(|| match &plan {
                Some(plan) => {
                    crate::jobs::analytics::keep_bits(plan, ds, &ledger, &job, version, min_k)
                }
                None => Ok(crate::jobs::analytics::total_keep(
                    ds,
                    &spec.columns,
                    &ledger,
                    &job,
                    version,
                    min_k,
                )),
            })
        })
        .await?;
        debug_assert_eq!(decision.keep.len(), cells);
        crate::store::releases::append(
            &self.ctx.keys.envelope,
            &self.ctx.journal,
            &spec.dataset,
            &job,
            ledger,
            decision.record,
        )
        .await
        .map_err(|e| JobError::Ledger(e.to_string()))?;
        Ok(Some(decision.keep))
    }

    /// This party's program and inputs for job `id` (and an analytics job's output names);
    /// `keep` is an exact job's keep bits from [`Self::privacy_rule`].
    fn job_work(
        &mut self,
        id: JobId,
        spec: &JobSpec,
        keep: Option<&[bool]>,
    ) -> Result<(Work, Vec<String>), JobError> {
        if spec.kind == JobKind::Analytics {
            let plan = self.job_plan(id)?;
            let catalog = self.ctx.catalog();
            let ds = catalog.for_job(spec, self.epoch.my_name())?;
            let (work, names) =
                crate::jobs::analytics::work(&plan, self.epoch.me, ds, self.noise.as_mut(), keep)?;
            tracing::info!(job = %id, field = plan.field.name(), "analytics plan");
            return Ok((work, names));
        }
        let inputs = self.ctx.job_inputs(&self.epoch, spec, keep)?;
        let program = crate::jobs::programs::build(
            spec,
            self.epoch.manifest.parties.len(),
            self.epoch.manifest.threshold,
            recipients(&self.epoch, spec),
        )
        .map_err(|e| JobError::Program(e.to_string()))?;
        Ok((Work::M127 { program, inputs }, Vec::new()))
    }

    /// At this node's approval of a DP job: reserve its ρ in the ledger.
    fn reserve(&mut self, id: JobId) -> Result<(), JobError> {
        let Some(job) = self.jobs.get(&id) else {
            return Ok(());
        };
        if job.spec.kind != JobKind::Analytics || job.charge.is_some() {
            return Ok(());
        }
        let dataset = job.spec.dataset.clone();
        let plan = self.job_plan(id)?;
        let Some(rho) = crate::jobs::analytics::rho_of(&plan) else {
            return Ok(());
        };
        let mut budget = crate::jobs::analytics::budget(&self.ctx, &dataset)?;
        // The refusal peers and the analyst read names the job's need, never what is left;
        // the detail stays in this node's log.
        plan.reserve(&mut budget, &id.to_string()).map_err(|e| {
            tracing::info!(job = %id, dataset = %dataset, detail = %e, "refusing: the reservation does not fit the budget");
            JobError::BudgetExhausted {
                party: self.epoch.my_name().to_owned(),
                dataset: dataset.clone(),
                need: rho.to_string(),
            }
        })?;
        crate::jobs::analytics::record(
            &self.ctx.journal,
            &dataset,
            &id.to_string(),
            "reserve",
            rho,
        )?;
        if let Some(job) = self.jobs.get_mut(&id) {
            job.charge = Some((dataset, rho, false));
        }
        Ok(())
    }

    /// Before any share of job `id` leaves this node: spend its reservation.
    fn spend(&mut self, id: JobId) -> Result<(), JobError> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Ok(());
        };
        let Some((dataset, rho, spent)) = job.charge.as_mut() else {
            return Ok(());
        };
        if *spent {
            return Ok(());
        }
        crate::jobs::analytics::record(&self.ctx.journal, dataset, &id.to_string(), "spend", *rho)
            .map_err(|e| JobError::Spend(e.to_string()))?;
        *spent = true;
        Ok(())
    }

    /// Job `id` ended before it spent its reservation: give the ρ back.
    fn unreserve(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        // Spent charges stay: no refund once shares may have left.
        if !matches!(job.charge, Some((_, _, false))) {
            return;
        }
        let Some((dataset, rho, _)) = job.charge.take() else {
            return;
        };
        if let Err(e) = crate::jobs::analytics::record(
            &self.ctx.journal,
            &dataset,
            &id.to_string(),
            "unreserve",
            rho,
        ) {
            tracing::error!(job = %id, error = %e, "cannot release the budget reservation");
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
            }
            JobState::Running => {
                if let Some(actor) = &job.actor {
                    actor.deliver(peer, msg);
                }
            }
            _ => {}
        }
    }

    /// A job's actor finished: deliver, or abort with its reason.
    async fn job_ended(&mut self, id: JobId, outcome: Outcome) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.state != JobState::Running {
            return;
        }
        job.actor = None;
        match outcome {
            Outcome::Done {
                result,
                commitments,
                compute,
                longest_step,
            } => {
                // `None`: this party is not a recipient and received no opening shares.
                job.compute_ms = Some(compute.as_millis() as u64);
                job.compute_us = Some(compute.as_micros() as u64);
                job.result = result;
                job.commitments = commitments;
                job.state = JobState::Done;
                tracing::info!(
                    job = %id,
                    compute_ms = job.compute_ms,
                    longest_step_ms = longest_step.as_millis() as u64,
                    "job done"
                );
                self.delivered(id);
            }
            Outcome::Failed { reason, notices } => {
                // The protocol's own notices name the failed check to every peer: they go
                // out before the generic abort, on the control outbox.
                for o in notices {
                    self.send(
                        o.to,
                        Body::Mpc {
                            job: id,
                            msg: o.msg,
                        },
                    )
                    .await;
                }
                self.abort(id, reason, true).await
            }
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
        self.changed = true;
        job.state = JobState::Aborted(reason.clone());
        self.unreserve(id);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        // Cancelling the actor ends it: nothing more of this job goes out.
        if let Some(actor) = job.actor.take() {
            actor.cancel();
        }
        job.early.clear();
        self.persist(
            id,
            "job-aborted",
            serde_json::json!({ "job": id.to_string(), "reason": reason }),
        );
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
            let waiting = self
                .jobs
                .get(&id)
                .map_or_else(String::new, |j| j.state.to_string());
            self.abort(
                id,
                format!("timed out after {} s (state {waiting})", limit.as_secs()),
                true,
            )
            .await;
        }
    }
}

/// Run a heavy local step of the engine's own (building a job's inputs from its dataset) on
/// this task's thread after handing the rest of the runtime's work on it to another, so the
/// session tasks it shares the thread with are not stranded. Plain call outside a
/// multi-thread runtime.
fn compute<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
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
        hash: hex::encode(j.hash),
        awaiting_operator: j.awaiting_operator,
        verdicts: j.verdicts.clone(),
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

/// Names and versions of a node's datasets (never contents), for peers' proposals.
fn catalog_body(catalog: &crate::node::Catalog) -> Body {
    Body::Catalog {
        datasets: catalog
            .meta
            .values()
            .map(|m| (m.name.clone(), m.version))
            .collect(),
    }
}
