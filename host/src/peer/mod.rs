//! The peer layer: everything between this node and its peers' nodes.
//!
//! It owns the sessions: dialing and accepting, both attestation gates, the Hello exchange,
//! keep-alive (pings when idle, liveness noted on every byte read), a writer that gives up
//! on a peer that stops reading, reconnects with backoff, and each peer's two outboxes —
//! control frames the engine never waits on, and protocol frames job actors wait on. It
//! reports what happens as [`Event`]s to the engine and knows nothing of jobs.

pub mod connect;
pub mod session;
pub mod status;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use parley_attestation::appraise::Platform;
use parley_attestation::ratls::{self, Role};
use tokio::sync::{mpsc, oneshot, watch};

use crate::admin::{AdminRequest, AdminResponse};
use crate::jobs::actor::Outcome;
use crate::jobs::job::JobId;
use crate::node::Epoch;
use wire::Body;

/// Reason codes of the node service.
pub mod codes {
    /// A peer came back with an older store (audit log or budget ledger behind what it
    /// showed before), or a rewritten log.
    pub const ROLLBACK: &str = "rollback-detected";
    /// A peer sent nothing for longer than the keep-alive timeout.
    pub const SILENT: &str = "peer-silent";
}

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

/// A job's protocol frame with the job's cancel flag: the session's writer skips the
/// frames of a job that has ended, so nothing of an aborted job goes out after its abort.
pub struct DataFrame {
    pub body: Body,
    pub cancelled: Arc<AtomicBool>,
}

/// What the engine hears: from sessions, the admin socket and job actors.
pub enum Event {
    PeerUp {
        peer: usize,
        conn: u64,
        /// Control frames (consent, attestation, aborts): never waited on.
        outbox: mpsc::Sender<Body>,
        /// Protocol frames, sent by job actors (waited on: backpressure).
        data: mpsc::Sender<DataFrame>,
        close: watch::Sender<bool>,
        info: SessionInfo,
        alive: Arc<session::Liveness>,
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
    /// A job's actor finished.
    JobEnded {
        id: JobId,
        outcome: Outcome,
    },
    /// A dataset version was imported through the node: tell the peers.
    CatalogChanged,
}
