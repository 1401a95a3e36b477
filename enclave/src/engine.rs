//! The general MPC engine: runs a [`Program`] among n parties as a sans-IO state machine,
//! semi-honest or with malicious security (abort).
//!
//! # Protocol
//!
//! **Inputs** (round 0): each party commits to its canonical input buffer
//! ([`crate::commit`]) and Shamir-shares it (degree t) to every party, in the same round
//! (`commit` and `share` messages).
//!
//! **Multiplication: GRR degree reduction with PRSS-derived subshares** (Gennaro–Rabin–Rabin
//! 1998; DESIGN §9). For shared x, y each party i holds d_i = x_i·y_i on a degree-2t
//! polynomial, and x·y = Σ_i λ_i·d_i (Lagrange at 0 over all n points, n ≥ 2t + 1). Party i
//! reshares λ_i·d_i with a degree-t polynomial p_i whose values at the t parties after it
//! (i+1 … i+t mod n) are drawn from streams it shares pairwise with each of them; those
//! parties draw the same values themselves, so i sends p_i(α_k) only to the other
//! n − 1 − t parties. Each party k sums what it holds: z_k = Σ_i p_i(α_k). Any t parties see
//! at most t values of p_i, so nothing about d_i. One round; per multiplication each party
//! sends **n − 1 − t elements** (1 at n = 3, 2 at n = 5 with t = 2, 3 at n = 7 with t = 3)
//! and draws 2t stream elements. An inner product costs one multiplication.
//!
//! **Malicious security with abort** (Chida, Genkin, Hamada, Ikarashi, Kikuchi, Lindell,
//! Nof, CRYPTO 2018; t < n/2). A secret MAC key [r] comes from PRSS. Every shared value is
//! carried as the pair ([x], [r·x]): after the input round, one multiplication round computes
//! [r·v] for every input and random value; each multiplication computes [x·y] and
//! [(r·x)·y] in the same round (2 elements where semi-honest sends 1); linear operations act
//! on both. Every multiplication output and input is logged. GRR is secure up to additive
//! attacks for t < n/2 — a corrupted party can only add errors independent of the honest
//! values, or make honest shares inconsistent — so before any output:
//! 1. round V1: open a PRSS coin c and [r] (all-to-all, degree-t checked). The coin is opened
//!    only after every logged value is fixed; α_k = ChaCha20(HKDF(c)) per logged element.
//! 2. round V2: [T] = Σ α_k·[r·z_k] − r·Σ α_k·[z_k]. Open [T + ρ] for a fresh PRSS [ρ]
//!    (degree-t check: catches inconsistent sharings, reveals nothing) and reshare [β]·[T]
//!    for a fresh PRSS [β].
//! 3. round V3: open [β·T] (degree-t checked); it must be 0, else
//!    [`CheckFailure::MultiplicationCheck`]. T alone is not opened: with an error on an
//!    [r·x] wire it depends on honest values; β·T is uniform unless T = 0.
//!
//! Only then are outputs opened (all-to-all, degree-t checked).
//!
//! Intermediate `open` instructions are opened all-to-all with the degree-t check (so their
//! value is fixed by the n − t ≥ t + 1 honest shares) and are covered by the final check: an
//! additive error on [x] before an opening is value-independent, so the opened value leaks
//! nothing beyond what the adversary knows; it can make later results wrong, which the
//! check catches. Programs must mask what they open.
//!
//! **Error bound** (per job, independent of its size): an altered value passes the check
//! only if the random linear combination cancels it (≤ 1/p) or it matches r (≤ 1/p), an
//! inconsistency survives the combination or r (≤ 2/p), or β·T = 0 with T ≠ 0 (≤ 1/p):
//! ≤ 5/p in all, plus the (computational) pseudo-randomness of the coin expansion. Per field:
//! 2^61 − 1: 5/p ≈ 2^-58.7; 2^127 − 1: ≈ 2^-124.7; 2^521 − 1: ≈ 2^-518.7 — all below
//! 2^-40 with one repetition; [`Engine::new`] refuses fields where 5/p > 2^-40.
//!
//! **Rounds**: 1 (inputs) + [1 (input MACs), malicious] + the program's rounds + [3
//! (verification), malicious] + 1 (outputs, if any).

use crate::commit::{Commitment, Opening, commit};
use crate::error::{CheckFailure, ConfigError, MpcError};
use crate::field::{Field, encode_slice};
use crate::inbox::{Expect, Inbox, Limits};
use crate::message::{Header, Kind, Message, Outgoing, abort_notices, chunked};
use crate::program::{Op, Program, Reg, Step};
use crate::protocol::{Config, Protocol, Status};
use crate::prss::{JobRandomness, KeyMaterial};
use crate::secret::SecretVec;
use crate::shamir::{Shamir, lagrange_coefficients};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The security model a job runs in. Semi-honest is a named policy choice, never a fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Correct against parties that follow the protocol; private against t colluding.
    SemiHonest,
    /// Chida et al. (CRYPTO 2018): private and correct with abort against t < n/2 malicious
    /// parties.
    Malicious,
}

/// What a finished job delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOutput<F: Field> {
    /// One vector per output instruction, in program order.
    pub values: Vec<Vec<F>>,
    /// Every party's input commitment, by party index.
    pub commitments: Vec<Commitment>,
}

/// A shared value and, in malicious mode, its MAC'd copy r·x.
struct Shared<F: Field> {
    x: SecretVec<F>,
    rx: Option<SecretVec<F>>,
}

enum Value<F: Field> {
    Shared(Shared<F>),
    Public(Vec<F>),
}

/// GRR resharing with PRSS-derived subshares (see the module docs).
struct Grr<F: Field> {
    derive_for: Vec<usize>,
    send_to: Vec<usize>,
    derived_from: Vec<usize>,
    recv_from: Vec<usize>,
    /// For each party in `send_to`: (coefficient on d, coefficients on the derived values).
    send_coeffs: Vec<(F, Vec<F>)>,
    own_coeffs: (F, Vec<F>),
}

impl<F: Field> Grr<F> {
    fn new(shamir: &Shamir<F>, me: usize) -> Result<Self, MpcError> {
        let (n, t) = (shamir.n(), shamir.t());
        let at = |k: usize| (me + k) % n;
        let derive_for: Vec<usize> = (1..=t).map(at).collect();
        let send_to: Vec<usize> = (t + 1..n).map(at).collect();
        let derived_from: Vec<usize> = (1..=t).map(|k| (me + n - k) % n).collect();
        let recv_from: Vec<usize> = (1..n - t).map(at).collect();
        let bad = || MpcError::Misuse("evaluation points collide");
        let lambda = lagrange_coefficients(shamir.field_points(), F::zero()).ok_or_else(bad)?;
        let lambda_me = lambda[me];
        let mut base = vec![F::zero()];
        base.extend(derive_for.iter().map(|&j| shamir.point(j)));
        let coeffs = |k: usize| -> Result<(F, Vec<F>), MpcError> {
            let l = lagrange_coefficients(&base, shamir.point(k)).ok_or_else(bad)?;
            Ok((l[0] * lambda_me, l[1..].to_vec()))
        };
        let send_coeffs = send_to
            .iter()
            .map(|&k| coeffs(k))
            .collect::<Result<_, _>>()?;
        let own_coeffs = coeffs(me)?;
        Ok(Self {
            derive_for,
            send_to,
            derived_from,
            recv_from,
            send_coeffs,
            own_coeffs,
        })
    }
}

/// What a round in flight needs when it completes.
struct RoundState<F: Field> {
    /// This party's partial sum of the resharing (own polynomial + derived subshares).
    reshare_own: SecretVec<F>,
    /// This party's shares being opened.
    open_own: SecretVec<F>,
    open_context: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    NotStarted,
    Inputs,
    InputMac,
    Program(usize),
    Verify1,
    Verify2,
    Verify3,
    Output,
    Done,
    Aborted,
}

/// One party's engine for one job.
pub struct Engine<F: Field> {
    cfg: Config,
    security: Security,
    shamir: Shamir<F>,
    program: Arc<Program<F>>,
    grr: Grr<F>,
    rand: JobRandomness<F>,
    rng: ChaCha20Rng,
    inputs: Vec<SecretVec<F>>,
    opening: Opening,
    commitments: Vec<Option<Commitment>>,
    regs: Vec<Option<Value<F>>>,
    mac_key: SecretVec<F>,
    log_z: SecretVec<F>,
    log_rz: SecretVec<F>,
    inbox: Inbox,
    round: u32,
    phase: Phase,
    pending: Option<RoundState<F>>,
    output: Option<EngineOutput<F>>,
    abort: Option<MpcError>,
    unsent: Vec<Outgoing>,
    #[cfg(feature = "cheat")]
    cheat: Option<crate::cheat::Deviation>,
    #[cfg(feature = "cheat")]
    mul_rounds: usize,
    #[cfg(feature = "cheat")]
    open_rounds: usize,
}

impl<F: Field> core::fmt::Debug for Engine<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("field", &F::NAME)
            .field("me", &self.cfg.me)
            .field("session", &self.cfg.session)
            .field("security", &self.security)
            .field("phase", &self.phase)
            .field("round", &self.round)
            .finish_non_exhaustive()
    }
}

/// Error bound of the malicious check for field `F`, as text: "5/p ≈ 2^-x".
pub fn error_bound<F: Field>() -> String {
    format!("5/p ≈ 2^-{:.1}", log2_error::<F>())
}

fn log2_error<F: Field>() -> f64 {
    // p > 2^BITS; for the Mersenne fields p ≈ 2^(BITS + 1).
    f64::from(F::BITS + 1) - 5f64.log2()
}

/// Smallest −log2 of the per-job statistical error accepted (DESIGN §5).
pub const STATISTICAL_SECURITY: f64 = 40.0;

impl<F: Field> Engine<F> {
    /// Sets up party `cfg.me` for one job.
    ///
    /// `inputs` are this party's input vectors, one per `input` instruction it owns, in
    /// program order. `keys` come from a [`crate::prss::KeySetup`] among the same parties;
    /// the job's streams are derived from them and `cfg.session`. `rng` (a seeded CSPRNG)
    /// supplies the input sharings and the commitment opening.
    pub fn new(
        cfg: Config,
        security: Security,
        program: Arc<Program<F>>,
        inputs: Vec<SecretVec<F>>,
        keys: &KeyMaterial,
        mut rng: ChaCha20Rng,
    ) -> Result<Self, MpcError> {
        cfg.validate()?;
        let shamir = Shamir::new(&cfg.points, cfg.t)?;
        let n = cfg.n();
        if program.parties() != n {
            return Err(ConfigError::Other(format!(
                "program is for {} parties, the job has {n}",
                program.parties()
            ))
            .into());
        }
        if keys.me() != cfg.me {
            return Err(ConfigError::Other(format!(
                "key material is party {}'s, this is party {}",
                keys.me(),
                cfg.me
            ))
            .into());
        }
        if security == Security::Malicious && log2_error::<F>() < STATISTICAL_SECURITY {
            return Err(ConfigError::Other(format!(
                "field {} is too small for a 2^-40 error with one check repetition ({})",
                F::NAME,
                error_bound::<F>()
            ))
            .into());
        }
        let want = program.input_lens(cfg.me);
        let got: Vec<usize> = inputs.iter().map(SecretVec::len).collect();
        if want != got {
            return Err(MpcError::Input(format!(
                "the program expects inputs of lengths {want:?} from party {}, got {got:?}",
                cfg.me
            )));
        }
        let grr = Grr::new(&shamir, cfg.me)?;
        let mut rand = JobRandomness::new(keys, &shamir, &cfg.session)?;
        let mac_key = match security {
            Security::Malicious => rand.random(1),
            Security::SemiHonest => SecretVec::zeros(0),
        };
        let limits = Limits {
            chunk_elems: cfg.max_chunk_elems,
            max_ahead: cfg.max_ahead_rounds,
            max_buffered: cfg.max_buffered_bytes,
        };
        let mut inbox = Inbox::new(cfg.me, n, cfg.session, limits);
        let mut expects = Vec::new();
        for j in (0..n).filter(|&j| j != cfg.me) {
            expects.push(Expect {
                kind: Kind::Commit,
                from: j,
                elems: 1,
                elem_len: 32,
            });
            let elems = program.input_lens(j).iter().sum();
            expects.push(Expect {
                kind: Kind::Share,
                from: j,
                elems,
                elem_len: F::ENCODED_LEN,
            });
        }
        inbox.begin_round(0, &expects)?;
        let opening = Opening::random(&mut rng);
        let regs = (0..program.ops().len()).map(|_| None).collect();
        Ok(Self {
            cfg,
            security,
            shamir,
            program,
            grr,
            rand,
            rng,
            inputs,
            opening,
            commitments: vec![None; n],
            regs,
            mac_key,
            log_z: SecretVec::zeros(0),
            log_rz: SecretVec::zeros(0),
            inbox,
            round: 0,
            phase: Phase::NotStarted,
            pending: None,
            output: None,
            abort: None,
            unsent: Vec::new(),
            #[cfg(feature = "cheat")]
            cheat: None,
            #[cfg(feature = "cheat")]
            mul_rounds: 0,
            #[cfg(feature = "cheat")]
            open_rounds: 0,
        })
    }

    /// Makes this party deviate from the protocol (simulation only).
    #[cfg(feature = "cheat")]
    pub fn set_cheat(&mut self, deviation: crate::cheat::Deviation) {
        self.cheat = Some(deviation);
    }

    /// The security model.
    pub fn security(&self) -> Security {
        self.security
    }

    /// This party's commitment opening (secret; keep it with the job for a consented audit).
    pub fn commitment_opening(&self) -> &Opening {
        &self.opening
    }

    fn malicious(&self) -> bool {
        self.security == Security::Malicious
    }

    fn others(&self) -> impl Iterator<Item = usize> + use<F> {
        let me = self.cfg.me;
        (0..self.cfg.n()).filter(move |&j| j != me)
    }

    fn send_bytes(
        &self,
        kind: Kind,
        to: usize,
        bytes: &[u8],
        elem_len: usize,
        out: &mut Vec<Outgoing>,
    ) {
        let header = Header {
            kind,
            session: self.cfg.session,
            round: self.round,
        };
        chunked(header, to, bytes, elem_len, self.cfg.max_chunk_elems, out);
    }

    // ---- input round -------------------------------------------------------------------

    fn start_inputs(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let me = self.cfg.me;
        let mut buffer = SecretVec::zeros(0);
        for v in &self.inputs {
            buffer.extend_from_slice(v.as_slice());
        }
        self.inputs.clear();
        let c = commit(&self.cfg.session, me, &self.opening, buffer.as_slice());
        self.commitments[me] = Some(c);
        #[allow(unused_mut)]
        let mut shares = self.shamir.share_slice(buffer.as_slice(), &mut self.rng);
        #[cfg(feature = "cheat")]
        if let Some(crate::cheat::Deviation::InconsistentInput { element }) = self.cheat
            && element < buffer.len()
        {
            // Add α_j^(t+1) to every party's share: a polynomial of degree t + 1.
            for (j, s) in shares.iter_mut().enumerate() {
                let x = self.shamir.point(j);
                let mut pow = F::one();
                for _ in 0..=self.cfg.t {
                    pow *= x;
                }
                s.as_mut_slice()[element] += pow;
            }
        }
        for j in self.others() {
            self.send_bytes(Kind::Commit, j, &c.0, 32, out);
            #[allow(unused_mut)] // mutated only with the `cheat` feature
            let mut bytes = Zeroizing::new(encode_slice(shares[j].as_slice()));
            #[cfg(feature = "cheat")]
            if let Some(d @ crate::cheat::Deviation::WrongShare { element, .. }) = self.cheat
                && d.victim(me, self.cfg.n()) == Some(j)
                && element < shares[j].len()
            {
                let wrong = shares[j].as_slice()[element] + F::one();
                wrong.write_bytes(
                    &mut bytes[element * F::ENCODED_LEN..(element + 1) * F::ENCODED_LEN],
                );
            }
            self.send_bytes(Kind::Share, j, &bytes, F::ENCODED_LEN, out);
        }
        // Own shares go straight into the input registers once the round completes.
        let own = shares.swap_remove(me);
        self.inputs = vec![own];
        Ok(())
    }

    fn finish_inputs(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let n = self.cfg.n();
        let me = self.cfg.me;
        let own = self.inputs.pop().unwrap_or_else(|| SecretVec::zeros(0));
        let mut per_party: Vec<SecretVec<F>> = Vec::with_capacity(n);
        for j in 0..n {
            if j == me {
                per_party.push(own.duplicate());
                continue;
            }
            let c = self.inbox.take_bytes(Kind::Commit, j)?;
            let mut arr = [0u8; 32];
            if c.len() == 32 {
                arr.copy_from_slice(&c);
            }
            self.commitments[j] = Some(Commitment(arr));
            per_party.push(self.inbox.take::<F>(Kind::Share, j)?);
        }
        // Split each party's vector into its input registers, in program order.
        let mut offsets = vec![0usize; n];
        let program = Arc::clone(&self.program);
        for (i, op) in program.ops().iter().enumerate() {
            match op {
                Op::Input { party, len } => {
                    let (party, len) = (*party, *len);
                    let start = offsets[party];
                    let src = per_party[party].as_slice();
                    let x = SecretVec::new(
                        src.get(start..start + len)
                            .map(<[F]>::to_vec)
                            .unwrap_or_default(),
                    );
                    offsets[party] += len;
                    self.regs[i] = Some(Value::Shared(Shared { x, rx: None }));
                }
                Op::Random { len } => {
                    let x = self.rand.random(*len);
                    self.regs[i] = Some(Value::Shared(Shared { x, rx: None }));
                }
                _ => {}
            }
        }
        if self.malicious() {
            // One multiplication round: [r·v] for every input and random value.
            let r = self.mac_key.as_slice().first().copied().unwrap_or_default();
            let mut d = SecretVec::zeros(0);
            for v in self.regs.iter().flatten() {
                if let Value::Shared(s) = v {
                    let start = d.len();
                    d.extend_from_slice(s.x.as_slice());
                    F::scale_slice(&mut d.as_mut_slice()[start..], r);
                }
            }
            self.send_round(d, SecretVec::zeros(0), "", out)?;
            self.phase = Phase::InputMac;
            Ok(())
        } else {
            self.phase = Phase::Program(0);
            self.run_program(out)
        }
    }

    fn finish_input_mac(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let (z, _) = self.finish_round()?;
        let mut offset = 0;
        for v in self.regs.iter_mut().flatten() {
            if let Value::Shared(s) = v {
                let len = s.x.len();
                let rx = SecretVec::new(
                    z.as_slice()
                        .get(offset..offset + len)
                        .map(<[F]>::to_vec)
                        .unwrap_or_default(),
                );
                offset += len;
                self.log_z.extend_from_slice(s.x.as_slice());
                self.log_rz.extend_from_slice(rx.as_slice());
                s.rx = Some(rx);
            }
        }
        self.phase = Phase::Program(0);
        self.run_program(out)
    }

    // ---- rounds --------------------------------------------------------------------------

    /// Starts the next round: reshares `reshare` (degree-2t values) and opens `open`.
    fn send_round(
        &mut self,
        #[allow(unused_mut)] mut reshare: SecretVec<F>,
        open: SecretVec<F>,
        open_context: &'static str,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), MpcError> {
        self.round += 1;
        let m = reshare.len();
        let mut reshare_own = SecretVec::zeros(m);
        if m > 0 {
            #[cfg(feature = "cheat")]
            self.cheat_additive(&mut reshare);
            let t = self.cfg.t;
            let mut derived: Vec<SecretVec<F>> = Vec::with_capacity(t);
            for &j in &self.grr.derive_for {
                let mut r = SecretVec::zeros(m);
                self.rand.fill_pair_out(j, r.as_mut_slice());
                derived.push(r);
            }
            let mut buf = SecretVec::zeros(m);
            for (idx, &k) in self.grr.send_to.iter().enumerate() {
                let (cd, cr) = &self.grr.send_coeffs[idx];
                buf.as_mut_slice().copy_from_slice(reshare.as_slice());
                F::scale_slice(buf.as_mut_slice(), *cd);
                for (c, r) in cr.iter().zip(&derived) {
                    F::add_scaled_slice(buf.as_mut_slice(), *c, r.as_slice());
                }
                let bytes = Zeroizing::new(encode_slice(buf.as_slice()));
                self.send_bytes(Kind::Reshare, k, &bytes, F::ENCODED_LEN, out);
            }
            let (cd, cr) = &self.grr.own_coeffs;
            reshare_own
                .as_mut_slice()
                .copy_from_slice(reshare.as_slice());
            F::scale_slice(reshare_own.as_mut_slice(), *cd);
            for (c, r) in cr.iter().zip(&derived) {
                F::add_scaled_slice(reshare_own.as_mut_slice(), *c, r.as_slice());
            }
            for &i in &self.grr.derived_from {
                self.rand.fill_pair_in(i, buf.as_mut_slice());
                F::add_assign_slice(reshare_own.as_mut_slice(), buf.as_slice());
            }
        }
        if !open.is_empty() {
            let bytes = Zeroizing::new(encode_slice(open.as_slice()));
            for j in self.others() {
                #[cfg(feature = "cheat")]
                if let Some(wrong) = self.cheat_opening(j, open.as_slice()) {
                    self.send_bytes(Kind::Open, j, &wrong, F::ENCODED_LEN, out);
                    continue;
                }
                self.send_bytes(Kind::Open, j, &bytes, F::ENCODED_LEN, out);
            }
            #[cfg(feature = "cheat")]
            {
                self.open_rounds += 1;
            }
        }
        let mut expects = Vec::new();
        for &i in &self.grr.recv_from {
            expects.push(Expect {
                kind: Kind::Reshare,
                from: i,
                elems: m,
                elem_len: F::ENCODED_LEN,
            });
        }
        for j in self.others() {
            expects.push(Expect {
                kind: Kind::Open,
                from: j,
                elems: open.len(),
                elem_len: F::ENCODED_LEN,
            });
        }
        self.inbox.begin_round(self.round, &expects)?;
        self.pending = Some(RoundState {
            reshare_own,
            open_own: open,
            open_context,
        });
        Ok(())
    }

    /// Completes the round in flight: the reshared degree-t values and the opened values.
    fn finish_round(&mut self) -> Result<(SecretVec<F>, Vec<F>), MpcError> {
        let state = self
            .pending
            .take()
            .ok_or(MpcError::Misuse("no round in flight"))?;
        let mut z = state.reshare_own;
        for i in self.grr.recv_from.clone() {
            let part = self.inbox.take::<F>(Kind::Reshare, i)?;
            if !z.is_empty() {
                F::add_assign_slice(z.as_mut_slice(), part.as_slice());
            }
        }
        let opened = if state.open_own.is_empty() {
            Vec::new()
        } else {
            let mut held = Vec::with_capacity(self.cfg.n());
            for j in 0..self.cfg.n() {
                if j == self.cfg.me {
                    held.push(state.open_own.duplicate());
                } else {
                    held.push(self.inbox.take::<F>(Kind::Open, j)?);
                }
            }
            let views: Vec<&[F]> = held.iter().map(SecretVec::as_slice).collect();
            self.shamir.open_checked(&views, state.open_context)?
        };
        Ok((z, opened))
    }

    // ---- program -------------------------------------------------------------------------

    fn shared(&self, r: Reg) -> Result<&Shared<F>, MpcError> {
        match self.regs.get(r.0) {
            Some(Some(Value::Shared(s))) => Ok(s),
            _ => Err(MpcError::Misuse(
                "operand register is not a computed shared value",
            )),
        }
    }

    fn value(&self, r: Reg) -> Result<&Value<F>, MpcError> {
        self.regs
            .get(r.0)
            .and_then(Option::as_ref)
            .ok_or(MpcError::Misuse("operand register not computed"))
    }

    /// Runs local steps until a round is sent or the program ends.
    fn run_program(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let program = Arc::clone(&self.program);
        while let Phase::Program(idx) = self.phase {
            match program.steps.get(idx) {
                Some(Step::Local(i)) => {
                    let v = self.exec_local(&program.ops()[*i])?;
                    if let Some(v) = v {
                        self.regs[*i] = Some(v);
                    }
                    self.phase = Phase::Program(idx + 1);
                }
                Some(Step::Round(ops)) => {
                    let mut reshare = SecretVec::zeros(0);
                    let mut open = SecretVec::zeros(0);
                    for &i in ops {
                        match &program.ops()[i] {
                            Op::Mul(a, b) => {
                                let (a, b) = (self.shared(*a)?, self.shared(*b)?);
                                let mut d = SecretVec::zeros(a.x.len());
                                F::mul_slices(d.as_mut_slice(), a.x.as_slice(), b.x.as_slice());
                                reshare.extend_from_slice(d.as_slice());
                                if let Some(rx) = &a.rx {
                                    F::mul_slices(d.as_mut_slice(), rx.as_slice(), b.x.as_slice());
                                    reshare.extend_from_slice(d.as_slice());
                                }
                            }
                            Op::Dot(a, b) => {
                                let (a, b) = (self.shared(*a)?, self.shared(*b)?);
                                reshare
                                    .extend_from_slice(&[F::dot(a.x.as_slice(), b.x.as_slice())]);
                                if let Some(rx) = &a.rx {
                                    reshare.extend_from_slice(&[F::dot(
                                        rx.as_slice(),
                                        b.x.as_slice(),
                                    )]);
                                }
                            }
                            Op::Open(a) => open.extend_from_slice(self.shared(*a)?.x.as_slice()),
                            _ => {
                                return Err(MpcError::Misuse(
                                    "local instruction scheduled in a round",
                                ));
                            }
                        }
                    }
                    self.send_round(reshare, open, "intermediate opening", out)?;
                    #[cfg(feature = "cheat")]
                    {
                        self.mul_rounds += 1;
                    }
                    return Ok(());
                }
                None => {
                    return if self.malicious() {
                        self.start_verify(out)
                    } else {
                        self.start_output(out)
                    };
                }
            }
        }
        Ok(())
    }

    fn finish_program_round(
        &mut self,
        idx: usize,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), MpcError> {
        let (z, opened) = self.finish_round()?;
        let program = Arc::clone(&self.program);
        let Some(Step::Round(ops)) = program.steps.get(idx) else {
            return Err(MpcError::Misuse("round finished outside a round step"));
        };
        let malicious = self.malicious();
        let (mut zo, mut oo) = (0usize, 0usize);
        let take = |v: &[F], at: &mut usize, len: usize| -> Vec<F> {
            let s = v.get(*at..*at + len).map(<[F]>::to_vec).unwrap_or_default();
            *at += len;
            s
        };
        for &i in ops {
            let len = program.info[i].len;
            match &program.ops()[i] {
                Op::Mul(..) | Op::Dot(..) => {
                    let x = SecretVec::new(take(z.as_slice(), &mut zo, len));
                    let rx = malicious.then(|| SecretVec::new(take(z.as_slice(), &mut zo, len)));
                    if let Some(rx) = &rx {
                        self.log_z.extend_from_slice(x.as_slice());
                        self.log_rz.extend_from_slice(rx.as_slice());
                    }
                    self.regs[i] = Some(Value::Shared(Shared { x, rx }));
                }
                Op::Open(_) => self.regs[i] = Some(Value::Public(take(&opened, &mut oo, len))),
                _ => {}
            }
        }
        self.phase = Phase::Program(idx + 1);
        self.run_program(out)
    }

    fn exec_local(&mut self, op: &Op<F>) -> Result<Option<Value<F>>, MpcError> {
        let r = self.mac_key.as_slice().first().copied().unwrap_or_default();
        let v = match op {
            Op::Input { .. } | Op::Random { .. } | Op::Output(_) => return Ok(None),
            Op::Constant(c) => Value::Public(c.clone()),
            Op::Add(a, b) => self.linear(*a, *b, F::one(), r)?,
            Op::Sub(a, b) => self.linear(*a, *b, -F::one(), r)?,
            Op::Neg(a) => map_value(self.value(*a)?, |v| F::scale_slice(v, -F::one())),
            Op::Scale(a, c) => map_value(self.value(*a)?, |v| F::scale_slice(v, *c)),
            Op::Sum(a) => map_value_to(self.value(*a)?, |v| {
                vec![v.iter().fold(F::zero(), |acc, x| acc + *x)]
            }),
            Op::Slice { a, start, len } => {
                let (s, l) = (*start, *len);
                map_value_to(self.value(*a)?, |v| {
                    v.get(s..s + l).map(<[F]>::to_vec).unwrap_or_default()
                })
            }
            Op::Concat(parts) => {
                let vals: Vec<&Value<F>> = parts
                    .iter()
                    .map(|p| self.value(*p))
                    .collect::<Result<_, _>>()?;
                concat_values(&vals)
            }
            Op::Mul(a, b) => match (self.value(*a)?, self.value(*b)?) {
                (Value::Public(x), Value::Public(y)) => Value::Public(mul_broadcast(x, y)),
                (Value::Shared(s), Value::Public(c)) | (Value::Public(c), Value::Shared(s)) => {
                    Value::Shared(Shared {
                        x: SecretVec::new(mul_broadcast(s.x.as_slice(), c)),
                        rx: s
                            .rx
                            .as_ref()
                            .map(|rx| SecretVec::new(mul_broadcast(rx.as_slice(), c))),
                    })
                }
                _ => return Err(MpcError::Misuse("shared product scheduled as local")),
            },
            Op::Dot(a, b) => match (self.value(*a)?, self.value(*b)?) {
                (Value::Public(x), Value::Public(y)) => Value::Public(vec![F::dot(x, y)]),
                (Value::Shared(s), Value::Public(c)) | (Value::Public(c), Value::Shared(s)) => {
                    Value::Shared(Shared {
                        x: SecretVec::new(vec![F::dot(s.x.as_slice(), c)]),
                        rx: s
                            .rx
                            .as_ref()
                            .map(|rx| SecretVec::new(vec![F::dot(rx.as_slice(), c)])),
                    })
                }
                _ => return Err(MpcError::Misuse("shared inner product scheduled as local")),
            },
            Op::Open(_) => return Err(MpcError::Misuse("opening scheduled as local")),
        };
        Ok(Some(v))
    }

    /// `a + sign·b` for any mix of shared and public operands.
    fn linear(&self, a: Reg, b: Reg, sign: F, r: F) -> Result<Value<F>, MpcError> {
        let combine = |x: &[F], y: &[F]| -> Vec<F> {
            let mut out = x.to_vec();
            F::add_scaled_slice(&mut out, sign, y);
            out
        };
        Ok(match (self.value(a)?, self.value(b)?) {
            (Value::Public(x), Value::Public(y)) => Value::Public(combine(x, y)),
            (Value::Shared(s), Value::Shared(t)) => Value::Shared(Shared {
                x: SecretVec::new(combine(s.x.as_slice(), t.x.as_slice())),
                rx: match (&s.rx, &t.rx) {
                    (Some(p), Some(q)) => Some(SecretVec::new(combine(p.as_slice(), q.as_slice()))),
                    _ => None,
                },
            }),
            (Value::Shared(s), Value::Public(c)) => {
                // [x] + sign·c, and [r·x] + sign·c·[r].
                let rc: Vec<F> = c.iter().map(|&ci| ci * r).collect();
                Value::Shared(Shared {
                    x: SecretVec::new(combine(s.x.as_slice(), c)),
                    rx: s
                        .rx
                        .as_ref()
                        .map(|rx| SecretVec::new(combine(rx.as_slice(), &rc))),
                })
            }
            (Value::Public(c), Value::Shared(s)) => {
                // c + sign·[x], and c·[r] + sign·[r·x].
                let rc: Vec<F> = c.iter().map(|&ci| ci * r).collect();
                Value::Shared(Shared {
                    x: SecretVec::new(combine(c, s.x.as_slice())),
                    rx: s
                        .rx
                        .as_ref()
                        .map(|rx| SecretVec::new(combine(&rc, rx.as_slice()))),
                })
            }
        })
    }

    // ---- verification (malicious) ----------------------------------------------------------

    fn start_verify(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let coin = self.rand.random(1);
        let mut open = coin;
        open.extend_from_slice(self.mac_key.as_slice());
        self.send_round(SecretVec::zeros(0), open, "coin and MAC-key opening", out)?;
        self.phase = Phase::Verify1;
        Ok(())
    }

    fn finish_verify1(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let (_, opened) = self.finish_round()?;
        let (Some(&coin), Some(&r)) = (opened.first(), opened.get(1)) else {
            return Err(MpcError::Misuse("verification opening lost its values"));
        };
        let mut alpha_rng = coin_stream(&coin, &self.cfg.session)?;
        // w = Σ α_k [z_k], u = Σ α_k [r·z_k], over the log in chunks.
        const CHUNK: usize = 4096;
        #[allow(clippy::useless_vec)] // up to 4096 × 72 bytes: keep it off the stack
        let mut alpha = vec![F::zero(); CHUNK];
        let (mut w, mut u) = (F::zero(), F::zero());
        for (z, rz) in self
            .log_z
            .as_slice()
            .chunks(CHUNK)
            .zip(self.log_rz.as_slice().chunks(CHUNK))
        {
            let a = &mut alpha[..z.len()];
            F::fill_random(&mut alpha_rng, a);
            w += F::dot(a, z);
            u += F::dot(a, rz);
        }
        let t_share = u - r * w;
        let rho = self.rand.random(1);
        let beta = self.rand.random(1);
        let first = |v: &SecretVec<F>| v.as_slice().first().copied().unwrap_or_default();
        let masked = SecretVec::new(vec![t_share + first(&rho)]);
        let bt = SecretVec::new(vec![first(&beta) * t_share]);
        self.send_round(bt, masked, "masked verification-value opening", out)?;
        self.phase = Phase::Verify2;
        Ok(())
    }

    fn finish_verify2(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        // Opening [T + ρ] checked the consistency of T's sharing; its value is noise.
        let (bt, _) = self.finish_round()?;
        self.send_round(SecretVec::zeros(0), bt, "zero-check opening", out)?;
        self.phase = Phase::Verify3;
        Ok(())
    }

    fn finish_verify3(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let (_, opened) = self.finish_round()?;
        let zero = opened.first().is_some_and(|v| *v == F::zero());
        if !zero && !cfg!(feature = "test-disable-mult-check") {
            return Err(CheckFailure::MultiplicationCheck {
                error_bound: error_bound::<F>(),
            }
            .into());
        }
        self.start_output(out)
    }

    // ---- outputs ---------------------------------------------------------------------------

    fn start_output(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let program = Arc::clone(&self.program);
        let mut open = SecretVec::zeros(0);
        let mut any_shared = false;
        for r in program.outputs() {
            if let Value::Shared(s) = self.value(*r)? {
                open.extend_from_slice(s.x.as_slice());
                any_shared = true;
            }
        }
        if !any_shared {
            return self.finish_output(Vec::new());
        }
        self.send_round(SecretVec::zeros(0), open, "output opening", out)?;
        self.phase = Phase::Output;
        Ok(())
    }

    fn finish_output(&mut self, opened: Vec<F>) -> Result<(), MpcError> {
        let program = Arc::clone(&self.program);
        let mut values = Vec::with_capacity(program.outputs().len());
        let mut at = 0;
        for r in program.outputs() {
            match self.value(*r)? {
                Value::Shared(s) => {
                    let len = s.x.len();
                    values.push(
                        opened
                            .get(at..at + len)
                            .map(<[F]>::to_vec)
                            .unwrap_or_default(),
                    );
                    at += len;
                }
                Value::Public(p) => values.push(p.clone()),
            }
        }
        let commitments = self
            .commitments
            .iter()
            .map(|c| c.unwrap_or(Commitment([0; 32])))
            .collect();
        self.output = Some(EngineOutput {
            values,
            commitments,
        });
        self.phase = Phase::Done;
        // Shares are no longer needed.
        self.regs.clear();
        self.log_z = SecretVec::zeros(0);
        self.log_rz = SecretVec::zeros(0);
        Ok(())
    }

    // ---- driving ---------------------------------------------------------------------------

    fn progress(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        while self.inbox.complete() {
            match self.phase {
                Phase::Inputs => self.finish_inputs(out)?,
                Phase::InputMac => self.finish_input_mac(out)?,
                Phase::Program(idx) => self.finish_program_round(idx, out)?,
                Phase::Verify1 => self.finish_verify1(out)?,
                Phase::Verify2 => self.finish_verify2(out)?,
                Phase::Verify3 => self.finish_verify3(out)?,
                Phase::Output => {
                    let (_, opened) = self.finish_round()?;
                    self.finish_output(opened)?;
                }
                Phase::NotStarted | Phase::Done | Phase::Aborted => return Ok(()),
            }
        }
        Ok(())
    }

    fn fail(&mut self, e: MpcError, mut out: Vec<Outgoing>) -> MpcError {
        if self.phase != Phase::Done {
            out.extend(abort_notices(
                self.cfg.session,
                self.cfg.me,
                self.cfg.n(),
                &e,
            ));
            self.phase = Phase::Aborted;
            self.abort = Some(e.clone());
            // Nothing secret is needed any more.
            self.regs.clear();
            self.pending = None;
        }
        self.unsent = out;
        e
    }

    // ---- cheat hooks -----------------------------------------------------------------------

    #[cfg(feature = "cheat")]
    fn cheat_additive(&mut self, reshare: &mut SecretVec<F>) {
        if let Some(crate::cheat::Deviation::AdditiveAttack { round, element }) = self.cheat
            && matches!(self.phase, Phase::Program(_))
            && round == self.mul_rounds
            && let Some(d) = reshare.as_mut_slice().get_mut(element)
        {
            // The z-part comes first in each instruction's batch; r·z is left alone.
            *d += F::one();
        }
    }

    #[cfg(feature = "cheat")]
    fn cheat_opening(&self, to: usize, open: &[F]) -> Option<Zeroizing<Vec<u8>>> {
        let d = self.cheat?;
        let crate::cheat::Deviation::WrongOpening {
            opening, element, ..
        } = d
        else {
            return None;
        };
        if opening != self.open_rounds
            || d.victim(self.cfg.me, self.cfg.n()) != Some(to)
            || element >= open.len()
        {
            return None;
        }
        let mut wrong = open.to_vec();
        wrong[element] += F::one();
        Some(Zeroizing::new(encode_slice(&wrong)))
    }
}

/// The ChaCha20 stream of check coefficients α, from the opened coin.
fn coin_stream<F: Field>(
    coin: &F,
    session: &crate::message::SessionId,
) -> Result<ChaCha20Rng, MpcError> {
    use ring::hkdf;
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"parley/chida-coin/v1").extract(&coin.to_bytes());
    let mut seed = Zeroizing::new([0u8; 32]);
    prk.expand(&[&session.0[..]], Len32)
        .and_then(|okm| okm.fill(&mut seed[..]))
        .map_err(|_| MpcError::Misuse("HKDF refused a 32-byte output"))?;
    Ok(ChaCha20Rng::from_seed(*seed))
}

fn mul_broadcast<F: Field>(x: &[F], c: &[F]) -> Vec<F> {
    if c.len() == 1 {
        let mut out = x.to_vec();
        F::scale_slice(&mut out, c[0]);
        out
    } else {
        let mut out = vec![F::zero(); x.len()];
        F::mul_slices(&mut out, x, c);
        out
    }
}

fn map_value<F: Field>(v: &Value<F>, f: impl Fn(&mut [F])) -> Value<F> {
    match v {
        Value::Public(p) => {
            let mut p = p.clone();
            f(&mut p);
            Value::Public(p)
        }
        Value::Shared(s) => {
            let mut x = s.x.duplicate();
            f(x.as_mut_slice());
            let rx = s.rx.as_ref().map(|rx| {
                let mut rx = rx.duplicate();
                f(rx.as_mut_slice());
                rx
            });
            Value::Shared(Shared { x, rx })
        }
    }
}

fn map_value_to<F: Field>(v: &Value<F>, f: impl Fn(&[F]) -> Vec<F>) -> Value<F> {
    match v {
        Value::Public(p) => Value::Public(f(p)),
        Value::Shared(s) => Value::Shared(Shared {
            x: SecretVec::new(f(s.x.as_slice())),
            rx: s.rx.as_ref().map(|rx| SecretVec::new(f(rx.as_slice()))),
        }),
    }
}

fn concat_values<F: Field>(vals: &[&Value<F>]) -> Value<F> {
    if vals.iter().all(|v| matches!(v, Value::Public(_))) {
        let mut out = Vec::new();
        for v in vals {
            if let Value::Public(p) = v {
                out.extend_from_slice(p);
            }
        }
        return Value::Public(out);
    }
    let mut x = SecretVec::zeros(0);
    let mut rx = Some(SecretVec::zeros(0));
    for v in vals {
        if let Value::Shared(s) = v {
            x.extend_from_slice(s.x.as_slice());
            match (&mut rx, &s.rx) {
                (Some(acc), Some(r)) => acc.extend_from_slice(r.as_slice()),
                _ => rx = None,
            }
        }
    }
    Value::Shared(Shared { x, rx })
}

impl<F: Field> Protocol for Engine<F> {
    type Output = EngineOutput<F>;

    fn start(&mut self) -> Result<Vec<Outgoing>, MpcError> {
        if self.phase != Phase::NotStarted {
            return Err(MpcError::Misuse("start called twice"));
        }
        let mut out = Vec::new();
        self.phase = Phase::Inputs;
        match self
            .start_inputs(&mut out)
            .and_then(|()| self.progress(&mut out))
        {
            Ok(()) => Ok(out),
            Err(e) => Err(self.fail(e, out)),
        }
    }

    fn handle(&mut self, from: usize, msg: Message) -> Result<Vec<Outgoing>, MpcError> {
        if let Some(e) = &self.abort {
            return Err(MpcError::Aborted(Box::new(e.clone())));
        }
        let mut out = Vec::new();
        let result = self
            .inbox
            .accept(from, msg)
            .and_then(|()| match self.phase {
                Phase::NotStarted => Ok(()),
                _ => self.progress(&mut out),
            });
        match result {
            Ok(()) => Ok(out),
            Err(e) => Err(self.fail(e, out)),
        }
    }

    fn status(&self) -> Status {
        match self.phase {
            Phase::NotStarted => Status::NotStarted,
            Phase::Done => Status::Done,
            Phase::Aborted => Status::Aborted,
            _ => Status::Running { round: self.round },
        }
    }

    fn output(&self) -> Option<&EngineOutput<F>> {
        self.output.as_ref()
    }

    fn abort_reason(&self) -> Option<&MpcError> {
        self.abort.as_ref()
    }

    fn take_unsent(&mut self) -> Vec<Outgoing> {
        core::mem::take(&mut self.unsent)
    }
}
