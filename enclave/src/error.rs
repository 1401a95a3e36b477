//! The crate's error type: one enum whose variants carry what failed and on which input.
//!
//! Failed security checks are grouped in [`CheckFailure`]: each names the check, so an abort
//! report says *which* check caught the deviation. Every error from
//! [`crate::protocol::Protocol::handle`] is fatal for that job: the state machine moves to
//! [`crate::protocol::Status::Aborted`] and delivers no output.

use crate::field::FieldError;

/// Errors from configuration, peer messages and security checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MpcError {
    /// The federation or job parameters are unusable; fix the manifest or job spec.
    #[error("invalid MPC configuration: {0}")]
    Config(#[from] ConfigError),

    /// A message came from a party index outside the federation (a host bug).
    #[error("message from unknown party {from}: the federation has {n} parties (0..{n})")]
    UnknownParty {
        /// Claimed sender.
        from: usize,
        /// Number of parties.
        n: usize,
    },
    /// A message claims to come from this party itself (a host bug).
    #[error("message from party {from}, which is this party: the host must not loop messages back")]
    FromSelf {
        /// Claimed sender.
        from: usize,
    },
    /// A message belongs to another job/session.
    #[error("message from party {from} belongs to session {got}, this job is session {expected}")]
    WrongSession {
        /// Sender.
        from: usize,
        /// This job's session id (hex prefix).
        expected: String,
        /// The message's session id (hex prefix).
        got: String,
    },
    /// A message for a round this party already finished (a replay or duplicate).
    #[error(
        "party {from} sent a {kind} message for round {round}, but round {round} is already complete (now at round {current})"
    )]
    StaleRound {
        /// Sender.
        from: usize,
        /// Message kind.
        kind: &'static str,
        /// Round claimed by the message.
        round: u32,
        /// This party's current round.
        current: u32,
    },
    /// A message for a round too far ahead of this party to be honest.
    #[error(
        "party {from} sent a {kind} message for round {round} while this party is at round {current} (more than {max_ahead} rounds ahead)"
    )]
    TooFarAhead {
        /// Sender.
        from: usize,
        /// Message kind.
        kind: &'static str,
        /// Round claimed.
        round: u32,
        /// This party's current round.
        current: u32,
        /// The allowed lead.
        max_ahead: u32,
    },
    /// Peer buffered more data for future rounds than the limit allows.
    #[error("party {from} sent {bytes} bytes for future rounds, over the limit of {limit}")]
    TooMuchBuffered {
        /// Sender.
        from: usize,
        /// Bytes it would have buffered.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A message of a kind, or from a party, that this round does not expect.
    #[error(
        "party {from} sent an unexpected {kind} message in round {round}: this round expects {expected}"
    )]
    Unexpected {
        /// Sender.
        from: usize,
        /// Message kind.
        kind: &'static str,
        /// Round.
        round: u32,
        /// What the round expects from that party, in words.
        expected: String,
    },
    /// The same chunk of a message arrived twice.
    #[error("party {from} sent part {part} of its {kind} message for round {round} twice")]
    Duplicate {
        /// Sender.
        from: usize,
        /// Message kind.
        kind: &'static str,
        /// Round.
        round: u32,
        /// Chunk index.
        part: u32,
    },
    /// A chunk's framing (part count or index) does not match what the round expects.
    #[error(
        "party {from} sent {kind} round {round} part {part} of {parts}, expected {expected_parts} parts"
    )]
    BadChunking {
        /// Sender.
        from: usize,
        /// Message kind.
        kind: &'static str,
        /// Round.
        round: u32,
        /// Claimed part index.
        part: u32,
        /// Claimed part count.
        parts: u32,
        /// Expected part count.
        expected_parts: u32,
    },
    /// A message payload has the wrong size.
    #[error(
        "party {from} sent a {kind} message for round {round} (part {part}) with {got} bytes, expected {expected}"
    )]
    WrongLength {
        /// Sender.
        from: usize,
        /// Message kind.
        kind: &'static str,
        /// Round.
        round: u32,
        /// Chunk index.
        part: u32,
        /// Expected byte length.
        expected: usize,
        /// Received byte length.
        got: usize,
    },
    /// A payload element is not a canonical field element.
    #[error(
        "party {from} sent a {kind} message for round {round} whose element {element} is invalid: {error}"
    )]
    BadElement {
        /// Sender.
        from: usize,
        /// Message kind.
        kind: &'static str,
        /// Round.
        round: u32,
        /// Element index within the round's payload from that party.
        element: usize,
        /// Why it failed.
        error: FieldError,
    },
    /// Another party aborted the job and said why (its words, unverified).
    #[error("party {from} aborted the job: {reason}")]
    PeerAborted {
        /// The party that aborted.
        from: usize,
        /// Its stated reason, escaped and truncated.
        reason: String,
    },
    /// A security check failed: the job aborts and no output is delivered.
    #[error("security check failed, job aborted with no output: {0}")]
    Check(#[from] CheckFailure),
    /// A program is ill-formed (lengths, kinds, undefined registers).
    #[error("invalid program: {0}")]
    Program(String),
    /// A key-setup message does not match the key sets the federation defines.
    #[error("PRSS key setup failed: {0}")]
    KeySetup(String),
    /// An input supplied by the local host is unusable.
    #[error("invalid local input: {0}")]
    Input(String),
    /// The state machine was used out of order (a host bug), e.g. `start` twice.
    #[error("protocol misuse: {0}")]
    Misuse(&'static str),
    /// The job already aborted; the original error was reported then.
    #[error("the job already aborted: {0}")]
    Aborted(Box<MpcError>),
}

/// Unusable parameters; the message says which value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Number of parties outside what the protocols support.
    #[error("{n} parties: supported are {min} to {max}")]
    PartyCount {
        /// Parties given.
        n: usize,
        /// Minimum.
        min: usize,
        /// Maximum.
        max: usize,
    },
    /// Threshold not in 1 ≤ t < n/2.
    #[error("threshold t = {t} with n = {n} parties: need 1 ≤ t and 2t < n (honest majority)")]
    Threshold {
        /// Threshold given.
        t: usize,
        /// Parties.
        n: usize,
    },
    /// This party's index is outside the federation.
    #[error("my index {me} is outside 0..{n}")]
    MyIndex {
        /// Index given.
        me: usize,
        /// Parties.
        n: usize,
    },
    /// An evaluation point is zero (it would hold the secret itself).
    #[error("evaluation point of party {party} is 0; points must be nonzero")]
    ZeroPoint {
        /// Party index.
        party: usize,
    },
    /// Two parties share an evaluation point.
    #[error("parties {a} and {b} share evaluation point {point}; points must be distinct")]
    DuplicatePoint {
        /// First party.
        a: usize,
        /// Second party.
        b: usize,
        /// The point.
        point: u64,
    },
    /// An evaluation point is too large to be a "small" manifest integer.
    #[error("evaluation point {point} of party {party} is above the limit {max}")]
    PointTooLarge {
        /// Party.
        party: usize,
        /// Point.
        point: u64,
        /// Limit.
        max: u64,
    },
    /// A chunk size of zero.
    #[error("maximum elements per message must be at least 1")]
    ChunkSize,
    /// Other parameter problems.
    #[error("{0}")]
    Other(String),
}

/// A failed security check. Each variant names the check; none names an output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckFailure {
    /// The shares opened for an element do not lie on one polynomial of degree ≤ t.
    #[error(
        "{context} consistency check failed for element {element} (degree-{degree} check over {shares} shares)"
    )]
    OpeningConsistency {
        /// Which opening, e.g. "opening", "output opening", "coin opening".
        context: &'static str,
        /// First inconsistent element.
        element: usize,
        /// The degree bound t.
        degree: usize,
        /// Number of shares checked.
        shares: usize,
    },
    /// The Chida et al. multiplication check failed: some multiplication, input sharing or
    /// random sharing was altered (an additive attack or inconsistent resharing).
    #[error(
        "multiplication check (Chida et al.) failed: the verification value is nonzero, so a multiplication, input sharing or random sharing was altered (error bound {error_bound})"
    )]
    MultiplicationCheck {
        /// The statistical error bound of the check, e.g. "5/p ≈ 2^-124.7".
        error_bound: String,
    },
    /// A named assertion of the program (an input range check, a consistency check of local
    /// aggregates, a noise bound) failed at verification. Verified after the multiplication
    /// check, so with overwhelming probability the cause is the asserted value itself, i.e.
    /// an input that a party shared.
    #[error("input validation failed: {check}")]
    Assertion {
        /// The check's name, e.g. "range: party 1's count of rows is within [0, 1000000]".
        check: String,
    },
    /// A random-bit square opened to zero or to a non-square: a multiplication was tampered
    /// with (an honest run hits zero with probability 1/p per bit).
    #[error(
        "random-bit check failed: opened square {element} of the round is zero or not a square, so a multiplication was altered"
    )]
    NotASquare {
        /// Index of the element within the opened vector.
        element: usize,
    },
    /// A co-member of a PRSS key set holds a different key for it than this party.
    #[error(
        "PRSS key echo check failed for set {set:?}: party {from} holds a different key than this party"
    )]
    PrssKeyEcho {
        /// The set's members.
        set: Vec<usize>,
        /// The party whose echo differed.
        from: usize,
    },
}

impl MpcError {
    /// Whether this error is a failed security check (as opposed to a malformed message or
    /// a configuration problem).
    pub fn check_failure(&self) -> Option<&CheckFailure> {
        match self {
            Self::Check(c) => Some(c),
            Self::Aborted(inner) => inner.check_failure(),
            _ => None,
        }
    }
}
