//! "Secure sum, opened to all": each party inputs a vector of field elements (its local
//! aggregates); all learn the element-wise sum over all parties and nothing else.
//!
//! Rounds (2, all-to-all):
//! 0. `share`: each party Shamir-shares its vector (degree t) to every other party.
//! 1. `open`: each party adds the n shares it holds and sends the sum share to every other
//!    party; each opens with the degree-t consistency check over all n shares.
//!
//! Cost per party: (n − 1)·m elements in each round for an m-element vector.
//!
//! Security (t < n/2, with abort): a corrupted dealer can only substitute its own input (a
//! sharing inconsistent on the honest parties' points makes the honest sum shares
//! inconsistent, which the opening check catches); a wrong opening share fails the check,
//! because the n − t ≥ t + 1 honest shares fix the polynomial. Sums need no multiplication, so
//! this is the whole protocol, also against malicious parties.

use crate::error::MpcError;
use crate::field::{Field, encode_slice};
use crate::inbox::{Expect, Inbox, Limits};
use crate::message::{Header, Kind, Message, Outgoing, abort_notices, chunked};
use crate::protocol::{Config, Protocol, Status};
use crate::secret::SecretVec;
use crate::shamir::Shamir;
use rand_chacha::ChaCha20Rng;

enum State<F: Field> {
    NotStarted { input: SecretVec<F> },
    Sharing { own: SecretVec<F> },
    Opening { sum: SecretVec<F> },
    Done(Vec<F>),
    Aborted(MpcError),
}

/// The secure-sum state machine for one party.
pub struct SecureSum<F: Field> {
    cfg: Config,
    shamir: Shamir<F>,
    len: usize,
    rng: ChaCha20Rng,
    inbox: Inbox,
    state: State<F>,
    unsent: Vec<Outgoing>,
}

impl<F: Field> core::fmt::Debug for SecureSum<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SecureSum")
            .field("field", &F::NAME)
            .field("me", &self.cfg.me)
            .field("session", &self.cfg.session)
            .field("len", &self.len)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

const ROUND_SHARE: u32 = 0;
const ROUND_OPEN: u32 = 1;

impl<F: Field> SecureSum<F> {
    /// Sets up the protocol for party `cfg.me` with its input vector. Every party must input
    /// a vector of the same length (part of the job spec); an empty vector is refused.
    pub fn new(cfg: Config, input: SecretVec<F>, rng: ChaCha20Rng) -> Result<Self, MpcError> {
        cfg.validate()?;
        let shamir = Shamir::new(&cfg.points, cfg.t)?;
        let len = input.len();
        if len == 0 {
            return Err(MpcError::Input("secure sum of an empty vector".into()));
        }
        let limits = Limits {
            chunk_elems: cfg.max_chunk_elems,
            max_ahead: cfg.max_ahead_rounds,
            max_buffered: cfg.max_buffered_bytes,
        };
        let mut inbox = Inbox::new(cfg.me, cfg.n(), cfg.session, limits);
        inbox.begin_round(ROUND_SHARE, &Self::expect_all(&cfg, Kind::Share, len))?;
        Ok(Self {
            cfg,
            shamir,
            len,
            rng,
            inbox,
            state: State::NotStarted { input },
            unsent: Vec::new(),
        })
    }

    fn expect_all(cfg: &Config, kind: Kind, elems: usize) -> Vec<Expect> {
        (0..cfg.n())
            .filter(|&j| j != cfg.me)
            .map(|from| Expect {
                kind,
                from,
                elems,
                elem_len: F::ENCODED_LEN,
            })
            .collect()
    }

    fn send_all(&self, kind: Kind, round: u32, per_party: &[&[F]], out: &mut Vec<Outgoing>) {
        for (to, v) in per_party.iter().enumerate() {
            if to != self.cfg.me {
                let mut bytes = encode_slice(v);
                chunked(
                    Header {
                        kind,
                        session: self.cfg.session,
                        round,
                    },
                    to,
                    &bytes,
                    F::ENCODED_LEN,
                    self.cfg.max_chunk_elems,
                    out,
                );
                zeroize::Zeroize::zeroize(&mut bytes);
            }
        }
    }

    /// Advances through every round whose messages are all in.
    fn progress(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        loop {
            if !self.inbox.complete() {
                return Ok(());
            }
            match &mut self.state {
                State::Sharing { own } => {
                    let mut sum = own.duplicate();
                    for j in (0..self.cfg.n()).filter(|&j| j != self.cfg.me) {
                        let shares = self.inbox.take::<F>(Kind::Share, j)?;
                        F::add_assign_slice(sum.as_mut_slice(), shares.as_slice());
                    }
                    self.inbox.begin_round(
                        ROUND_OPEN,
                        &Self::expect_all(&self.cfg, Kind::Open, self.len),
                    )?;
                    let views = vec![sum.as_slice(); self.cfg.n()];
                    self.send_all(Kind::Open, ROUND_OPEN, &views, out);
                    self.state = State::Opening { sum };
                }
                State::Opening { sum } => {
                    let mut held = Vec::with_capacity(self.cfg.n());
                    for j in 0..self.cfg.n() {
                        if j == self.cfg.me {
                            held.push(sum.duplicate());
                        } else {
                            held.push(self.inbox.take::<F>(Kind::Open, j)?);
                        }
                    }
                    let views: Vec<&[F]> = held.iter().map(|v| v.as_slice()).collect();
                    let total = self.shamir.open_checked(&views, "opening")?;
                    self.state = State::Done(total);
                    return Ok(());
                }
                State::NotStarted { .. } | State::Done(_) | State::Aborted(_) => return Ok(()),
            }
        }
    }

    fn fail(&mut self, e: MpcError, mut out: Vec<Outgoing>) -> MpcError {
        if !matches!(self.state, State::Done(_)) {
            self.state = State::Aborted(e.clone());
            out.extend(abort_notices(
                self.cfg.session,
                self.cfg.me,
                self.cfg.n(),
                &e,
            ));
        }
        self.unsent = out;
        e
    }
}

impl<F: Field> Protocol for SecureSum<F> {
    type Output = Vec<F>;

    fn start(&mut self) -> Result<Vec<Outgoing>, MpcError> {
        let State::NotStarted { input } = &self.state else {
            return Err(MpcError::Misuse("start called twice"));
        };
        let shares = self.shamir.share_slice(input.as_slice(), &mut self.rng);
        let mut out = Vec::new();
        let views: Vec<&[F]> = shares.iter().map(|s| s.as_slice()).collect();
        self.send_all(Kind::Share, ROUND_SHARE, &views, &mut out);
        let own = shares
            .into_iter()
            .nth(self.cfg.me)
            .unwrap_or_else(|| SecretVec::zeros(self.len));
        self.state = State::Sharing { own };
        match self.progress(&mut out) {
            Ok(()) => Ok(out),
            Err(e) => Err(self.fail(e, out)),
        }
    }

    fn handle(&mut self, from: usize, msg: Message) -> Result<Vec<Outgoing>, MpcError> {
        if let State::Aborted(e) = &self.state {
            return Err(MpcError::Aborted(Box::new(e.clone())));
        }
        let mut out = Vec::new();
        let result = self
            .inbox
            .accept(from, msg)
            .and_then(|()| self.progress(&mut out));
        match result {
            Ok(()) => Ok(out),
            Err(e) => Err(self.fail(e, out)),
        }
    }

    fn status(&self) -> Status {
        match &self.state {
            State::NotStarted { .. } => Status::NotStarted,
            State::Sharing { .. } | State::Opening { .. } => Status::Running {
                round: self.inbox.round(),
            },
            State::Done(_) => Status::Done,
            State::Aborted(_) => Status::Aborted,
        }
    }

    fn output(&self) -> Option<&Vec<F>> {
        match &self.state {
            State::Done(v) => Some(v),
            _ => None,
        }
    }

    fn abort_reason(&self) -> Option<&MpcError> {
        match &self.state {
            State::Aborted(e) => Some(e),
            _ => None,
        }
    }

    fn take_unsent(&mut self) -> Vec<Outgoing> {
        core::mem::take(&mut self.unsent)
    }
}
