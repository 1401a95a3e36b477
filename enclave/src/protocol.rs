//! The sans-IO protocol shape shared by every MPC state machine, and the per-job
//! configuration.
//!
//! A protocol is constructed with a [`Config`], its inputs and a seeded CSPRNG; [`Protocol::start`]
//! returns the first outgoing messages; the host then feeds each incoming message to
//! [`Protocol::handle`] and sends what it returns, until [`Protocol::status`] is
//! [`Status::Done`] (read [`Protocol::output`]) or [`Status::Aborted`]. Any error from `handle`
//! aborts the job: the machine delivers no output afterwards.

use crate::error::{ConfigError, MpcError};
use crate::message::{Message, Outgoing, SessionId};

/// Smallest federation the protocols support.
pub const MIN_PARTIES: usize = 3;
/// Largest federation the protocols support (DESIGN §5).
pub const MAX_PARTIES: usize = 7;
/// Default maximum number of field elements per message (1 MiB of 2^127 − 1 elements).
pub const DEFAULT_CHUNK_ELEMS: usize = 1 << 16;
/// Default bound on how many rounds a peer's message may run ahead of this party.
pub const DEFAULT_MAX_AHEAD: u32 = 16;
/// Default bound on bytes buffered per peer for future rounds.
pub const DEFAULT_MAX_BUFFERED: usize = 1 << 30;

/// Per-job parameters, identical at every party except `me`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This party's index, `0..n`.
    pub me: usize,
    /// Every party's Shamir evaluation point, from the federation manifest, by party index.
    pub points: Vec<u64>,
    /// Corruption threshold: 1 ≤ t and 2t < n.
    pub t: usize,
    /// The job's session id; every message carries it.
    pub session: SessionId,
    /// Largest number of field elements per message; larger payloads are split into parts.
    /// Must be equal at every party.
    pub max_chunk_elems: usize,
    /// How many rounds ahead a peer's message may be before it is refused.
    pub max_ahead_rounds: u32,
    /// Bytes per peer buffered for future rounds before its messages are refused.
    pub max_buffered_bytes: usize,
}

impl Config {
    /// A configuration with default limits.
    pub fn new(me: usize, points: Vec<u64>, t: usize, session: SessionId) -> Self {
        Self {
            me,
            points,
            t,
            session,
            max_chunk_elems: DEFAULT_CHUNK_ELEMS,
            max_ahead_rounds: DEFAULT_MAX_AHEAD,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED,
        }
    }

    /// Number of parties.
    pub fn n(&self) -> usize {
        self.points.len()
    }

    /// Checks party count, index and chunk size (points and threshold are checked by
    /// [`crate::shamir::Shamir::new`]).
    pub fn validate(&self) -> Result<(), MpcError> {
        let n = self.n();
        if !(MIN_PARTIES..=MAX_PARTIES).contains(&n) {
            return Err(ConfigError::PartyCount {
                n,
                min: MIN_PARTIES,
                max: MAX_PARTIES,
            }
            .into());
        }
        if self.me >= n {
            return Err(ConfigError::MyIndex { me: self.me, n }.into());
        }
        if self.max_chunk_elems == 0 {
            return Err(ConfigError::ChunkSize.into());
        }
        Ok(())
    }
}

/// Where a protocol instance is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Not started yet.
    NotStarted,
    /// Waiting for messages of `round`.
    Running {
        /// Current round.
        round: u32,
    },
    /// Finished: the output is available.
    Done,
    /// Aborted: no output will be delivered.
    Aborted,
}

/// A sans-IO MPC state machine.
pub trait Protocol {
    /// What the protocol delivers when done.
    type Output;

    /// Begins the protocol; returns the first messages to send. Call exactly once.
    fn start(&mut self) -> Result<Vec<Outgoing>, MpcError>;

    /// Processes one message from party `from`; returns messages to send. An error aborts
    /// the job.
    fn handle(&mut self, from: usize, msg: Message) -> Result<Vec<Outgoing>, MpcError>;

    /// Current status.
    fn status(&self) -> Status;

    /// The output, once [`Status::Done`].
    fn output(&self) -> Option<&Self::Output>;

    /// Why the job aborted, once [`Status::Aborted`].
    fn abort_reason(&self) -> Option<&MpcError>;

    /// Messages to send after the call that aborted: replies produced before the failure
    /// (they do not depend on the failed check, and let honest peers reach the same check
    /// themselves), then an `abort` notice to every peer naming the cause, so nobody waits for
    /// a timeout. Empty unless the last call returned an error.
    fn take_unsent(&mut self) -> Vec<Outgoing>;
}
