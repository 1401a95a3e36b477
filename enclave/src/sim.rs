//! In-memory federation harness: runs n protocol instances against each other with seeded
//! scheduling and fault injection. No sockets, no clock: "time" is the count of deliveries.
//!
//! Faults: drop, delay, corrupt (bit flips) and tamper (arbitrary edits, e.g. a party that
//! sends chosen values) on messages matching a [`Filter`]; random reordering of all messages
//! in flight; a party that stops at a given round.

use crate::error::MpcError;
use crate::field::{Field, decode_slice, encode_slice};
use crate::message::{Message, Outgoing};
use crate::protocol::{Protocol, Status};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// A message in flight.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Sender.
    pub from: usize,
    /// Recipient.
    pub to: usize,
    /// The message.
    pub msg: Message,
    ready_at: u64,
    seq: u64,
}

/// Which messages a fault applies to; `None` matches anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Filter {
    /// Sender.
    pub from: Option<usize>,
    /// Recipient.
    pub to: Option<usize>,
    /// Message kind (`"share"`, `"open"`, …).
    pub kind: Option<&'static str>,
    /// Round.
    pub round: Option<u32>,
}

impl Filter {
    /// Matches every message.
    pub fn any() -> Self {
        Self::default()
    }
    /// Messages from `party`.
    pub fn from(party: usize) -> Self {
        Self {
            from: Some(party),
            ..Self::default()
        }
    }
    /// Restricts to recipient `party`.
    pub fn to(mut self, party: usize) -> Self {
        self.to = Some(party);
        self
    }
    /// Restricts to a kind.
    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = Some(kind);
        self
    }
    /// Restricts to a round.
    pub fn round(mut self, round: u32) -> Self {
        self.round = Some(round);
        self
    }
    /// Whether `env` matches.
    pub fn matches(&self, env: &Envelope) -> bool {
        self.from.is_none_or(|f| f == env.from)
            && self.to.is_none_or(|t| t == env.to)
            && self.kind.is_none_or(|k| k == env.msg.kind())
            && self.round.is_none_or(|r| r == env.msg.chunk().round)
    }
}

/// A tampering function: edits a message in flight.
pub type TamperFn = Box<dyn FnMut(&mut Envelope)>;

/// A fault to inject.
pub enum Fault {
    /// Drop matching messages.
    Drop(Filter),
    /// Deliver matching messages only after `steps` further deliveries.
    Delay(Filter, u64),
    /// XOR `mask` into byte `byte` (modulo the payload length) of matching payloads.
    Corrupt(Filter, usize, u8),
    /// Apply an arbitrary edit to matching messages.
    Tamper(Filter, TamperFn),
    /// The party stops (sends and processes nothing) once it reaches this round.
    Stop {
        /// The party.
        party: usize,
        /// The round at which it stops.
        at_round: u32,
    },
}

/// Delivery order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// First in, first out over all links.
    Fifo,
    /// A seeded random choice among all ready messages (reorders within and across links).
    Random,
}

/// How a party finished.
#[derive(Debug)]
pub enum Outcome<O> {
    /// Delivered an output.
    Done(O),
    /// Aborted with this error.
    Aborted(MpcError),
    /// Still waiting when no message was left in flight.
    Stalled(Status),
}

impl<O> Outcome<O> {
    /// The output, if any.
    pub fn output(&self) -> Option<&O> {
        match self {
            Outcome::Done(o) => Some(o),
            _ => None,
        }
    }
    /// The abort reason, if any.
    pub fn error(&self) -> Option<&MpcError> {
        match self {
            Outcome::Aborted(e) => Some(e),
            _ => None,
        }
    }
}

/// What one party sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages sent.
    pub messages: u64,
    /// Payload bytes sent (packed field elements; headers excluded).
    pub payload_bytes: u64,
    /// Rounds in which it sent at least one message.
    pub rounds: u64,
    /// Payload bytes per round number (abort notices excluded).
    pub bytes_by_round: std::collections::BTreeMap<u32, u64>,
}

/// The result of a run.
#[derive(Debug)]
pub struct Report<O> {
    /// Per party, by index.
    pub outcomes: Vec<Outcome<O>>,
    /// Per party, by index.
    pub traffic: Vec<Traffic>,
    /// Deliveries made.
    pub deliveries: u64,
}

impl<O> Report<O> {
    /// The outputs of every party, or `None` if any party did not finish.
    pub fn all_outputs(&self) -> Option<Vec<&O>> {
        self.outcomes.iter().map(|o| o.output()).collect()
    }
}

/// An in-memory federation.
pub struct Harness<P: Protocol> {
    parties: Vec<P>,
    rng: ChaCha20Rng,
    order: Order,
    faults: Vec<Fault>,
    stopped: Vec<bool>,
    in_flight: Vec<Envelope>,
    traffic: Vec<Traffic>,
    last_round_sent: Vec<Option<u32>>,
    now: u64,
    seq: u64,
}

impl<P: Protocol> Harness<P> {
    /// A harness over `parties` (party i at index i), scheduling seeded by `seed`.
    pub fn new(parties: Vec<P>, seed: u64) -> Self {
        let n = parties.len();
        Self {
            parties,
            rng: ChaCha20Rng::seed_from_u64(seed),
            order: Order::Fifo,
            faults: Vec::new(),
            stopped: vec![false; n],
            in_flight: Vec::new(),
            traffic: vec![Traffic::default(); n],
            last_round_sent: vec![None; n],
            now: 0,
            seq: 0,
        }
    }

    /// Sets the delivery order.
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Adds a fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }

    /// The parties, e.g. to inspect state after a run.
    pub fn parties(&self) -> &[P] {
        &self.parties
    }

    fn check_stop(&mut self, party: usize) {
        for f in &self.faults {
            if let Fault::Stop { party: p, at_round } = f
                && *p == party
            {
                let round = match self.parties[party].status() {
                    Status::Running { round } => round,
                    _ => 0,
                };
                if round >= *at_round {
                    self.stopped[party] = true;
                }
            }
        }
    }

    fn enqueue(&mut self, from: usize, out: Vec<Outgoing>) {
        self.check_stop(from);
        if self.stopped[from] {
            return;
        }
        for o in out {
            let mut env = Envelope {
                from,
                to: o.to,
                msg: o.msg,
                ready_at: self.now,
                seq: self.seq,
            };
            self.seq += 1;
            let t = &mut self.traffic[from];
            t.messages += 1;
            t.payload_bytes += env.msg.chunk().data.len() as u64;
            let round = env.msg.chunk().round;
            if env.msg.kind() != "abort" {
                *t.bytes_by_round.entry(round).or_default() += env.msg.chunk().data.len() as u64;
            }
            if self.last_round_sent[from] != Some(round) {
                t.rounds += 1;
                self.last_round_sent[from] = Some(round);
            }
            let mut dropped = false;
            for f in &mut self.faults {
                match f {
                    Fault::Drop(filter) if filter.matches(&env) => dropped = true,
                    Fault::Delay(filter, steps) if filter.matches(&env) => env.ready_at += *steps,
                    Fault::Corrupt(filter, byte, mask) if filter.matches(&env) => {
                        let data = env.msg.chunk_mut().data.as_mut_bytes();
                        if !data.is_empty() {
                            let i = *byte % data.len();
                            data[i] ^= *mask;
                        }
                    }
                    Fault::Tamper(filter, edit) if filter.matches(&env) => edit(&mut env),
                    _ => {}
                }
            }
            if !dropped {
                self.in_flight.push(env);
            }
        }
    }

    fn next(&mut self) -> Option<Envelope> {
        if self.in_flight.is_empty() {
            return None;
        }
        let min_ready = self
            .in_flight
            .iter()
            .map(|e| e.ready_at)
            .min()
            .unwrap_or(self.now);
        self.now = self.now.max(min_ready);
        let ready: Vec<usize> = (0..self.in_flight.len())
            .filter(|&i| self.in_flight[i].ready_at <= self.now)
            .collect();
        let pick = match self.order {
            Order::Fifo => ready.iter().copied().min_by_key(|&i| self.in_flight[i].seq),
            Order::Random => {
                let k = (self.rng.next_u64() % ready.len() as u64) as usize;
                ready.get(k).copied()
            }
        }?;
        Some(self.in_flight.swap_remove(pick))
    }

    /// Starts every party and delivers messages until none is left in flight; returns each
    /// party's error (if it aborted) and the number of deliveries.
    fn drive(&mut self) -> (Vec<Option<MpcError>>, u64) {
        let n = self.parties.len();
        let mut errors: Vec<Option<MpcError>> = vec![None; n];
        for (i, error) in errors.iter_mut().enumerate() {
            self.check_stop(i);
            if self.stopped[i] {
                continue;
            }
            match self.parties[i].start() {
                Ok(out) => self.enqueue(i, out),
                Err(e) => {
                    *error = Some(e);
                    let unsent = self.parties[i].take_unsent();
                    self.enqueue(i, unsent);
                }
            }
        }
        let mut deliveries = 0;
        while let Some(env) = self.next() {
            self.now += 1;
            deliveries += 1;
            let to = env.to;
            if to >= n || self.stopped[to] || errors[to].is_some() {
                continue;
            }
            match self.parties[to].handle(env.from, env.msg) {
                Ok(out) => self.enqueue(to, out),
                Err(e) => {
                    errors[to] = Some(e);
                    // As a host should: send what the party produced before it aborted.
                    let unsent = self.parties[to].take_unsent();
                    self.enqueue(to, unsent);
                }
            }
        }
        (errors, deliveries)
    }

    fn outcomes<O>(
        &self,
        errors: Vec<Option<MpcError>>,
        done: impl Fn(&P) -> Option<O>,
    ) -> Vec<Outcome<O>> {
        self.parties
            .iter()
            .zip(errors)
            .map(|(p, e)| match (e, done(p)) {
                (Some(e), _) => Outcome::Aborted(e),
                (None, Some(o)) => Outcome::Done(o),
                (None, None) => Outcome::Stalled(p.status()),
            })
            .collect()
    }

    /// Runs the federation to quiescence and reports each party's outcome.
    pub fn run(&mut self) -> Report<P::Output>
    where
        P::Output: Clone,
    {
        let (errors, deliveries) = self.drive();
        let outcomes = self.outcomes(errors, |p| p.output().cloned());
        Report {
            outcomes,
            traffic: self.traffic.clone(),
            deliveries,
        }
    }

    /// Like [`Harness::run`] for outputs that cannot be cloned (key material): outcomes carry
    /// `()`, and the parties are handed back to take their outputs.
    pub fn run_into_parties(mut self) -> (Report<()>, Vec<P>) {
        let (errors, deliveries) = self.drive();
        let outcomes = self.outcomes(errors, |p| p.output().map(|_| ()));
        let report = Report {
            outcomes,
            traffic: self.traffic.clone(),
            deliveries,
        };
        (report, self.parties)
    }
}

/// Decodes the payload of `msg` as `F` elements, applies `edit`, and re-encodes: a party that
/// sends chosen values. Payloads that do not decode are left alone.
pub fn edit_elements<F: Field>(msg: &mut Message, edit: impl FnOnce(&mut Vec<F>)) {
    let chunk = msg.chunk_mut();
    if let Ok(mut v) = decode_slice::<F>(chunk.data.as_bytes()) {
        edit(&mut v);
        chunk.data = crate::message::Packed::new(encode_slice(&v));
    }
}

/// Builds one [`crate::engine::Engine`] per party for `program`, with key material from a
/// trusted dealer (simulation only), evaluation points 1..=n and per-party seeded RNGs.
/// `inputs[i]` are party i's input vectors in program order.
pub fn engines<F: Field>(
    t: usize,
    security: crate::engine::Security,
    program: std::sync::Arc<crate::program::Program<F>>,
    inputs: Vec<Vec<crate::secret::SecretVec<F>>>,
    session: crate::message::SessionId,
    seed: u64,
) -> Result<Vec<crate::engine::Engine<F>>, MpcError> {
    engines_with(t, security, program, inputs, session, seed, |_| {})
}

/// [`engines`] with a hook to adjust each party's [`crate::protocol::Config`] (chunk sizes,
/// limits) before construction.
pub fn engines_with<F: Field>(
    t: usize,
    security: crate::engine::Security,
    program: std::sync::Arc<crate::program::Program<F>>,
    inputs: Vec<Vec<crate::secret::SecretVec<F>>>,
    session: crate::message::SessionId,
    seed: u64,
    configure: impl Fn(&mut crate::protocol::Config),
) -> Result<Vec<crate::engine::Engine<F>>, MpcError> {
    let n = program.parties();
    let points: Vec<u64> = (1..=n as u64).collect();
    let mut dealer = ChaCha20Rng::seed_from_u64(seed ^ 0x6b65_7973);
    let keys = crate::prss::KeyMaterial::trusted_dealer(n, t, &mut dealer);
    inputs
        .into_iter()
        .zip(keys)
        .enumerate()
        .map(|(me, (inp, k))| {
            let mut cfg = crate::protocol::Config::new(me, points.clone(), t, session);
            configure(&mut cfg);
            let rng = ChaCha20Rng::seed_from_u64(
                seed.wrapping_add(me as u64)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            crate::engine::Engine::new(cfg, security, std::sync::Arc::clone(&program), inp, &k, rng)
        })
        .collect()
}
