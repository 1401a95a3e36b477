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
//! Nof, CRYPTO 2018; t < n/2). A secret MAC key \[r\] comes from PRSS. Each multiplication
//! computes \[x·y\] and its MAC'd copy \[r·x·y\] in the same round (2 elements where semi-honest
//! sends 1), from whichever factor carries a MAC: \[r·x\]·\[y\] or \[x\]·\[r·y\]. Products always
//! carry a MAC; inputs and random values get \[r·v\] in one multiplication round after the
//! input round only if they are ever (through linear operations) the MAC'd factor of a
//! product ([`crate::program`]'s MAC plan; Chida et al. MAC every input, but a MAC that is
//! never used needs no verifying). Linear operations act on both copies. Every product and
//! MAC'd input is logged as a pair (z, r·z); un-MAC'd inputs are logged for consistency.
//!
//! GRR with PRSS-derived subshares is secure up to additive attacks for t < n/2: a
//! corrupted resharer controls only the subshares it sends (the derived ones are computed by
//! their recipients), and chooses their deviation from its correct polynomial knowing only
//! its own view; on the honest points that is an error independent of the honest values —
//! an additive error on the product, possibly with an inconsistency (honest shares off one
//! degree-t polynomial, possible when n − t > t + 1). Before any output:
//! 1. round V1: open a PRSS coin c and \[r\] (all-to-all, degree-t checked). The coin is opened
//!    only after every logged value is fixed; α_k = ChaCha12(HKDF(c)) per logged element.
//! 2. round V2: \[T\] = Σ α_k·\[r·z_k\] − r·Σ α_k·\[z_k\]. Open \[T + Σ γ_k·v_k + ρ\] (γ from the
//!    same stream over the un-MAC'd inputs v_k, ρ a fresh PRSS random): the degree-t check
//!    catches any inconsistent sharing, the value reveals nothing. In the same round reshare
//!    \[β\]·\[T\] for a fresh PRSS \[β\].
//! 3. round V3: open \[β·T\] (degree-t checked); it must be 0, else
//!    [`CheckFailure::MultiplicationCheck`]. T alone is not opened: with an error on an
//!    \[r·x\] wire it depends on honest values; β·T is uniform unless T = 0.
//!
//! Only then are outputs delivered, each only to its [`Recipients`] (DESIGN §1): every party
//! sends its shares of an output to the named parties (kind `output`) and to nobody else; a
//! recipient reconstructs from all n shares with the degree-t check, so a wrong share aborts
//! it rather than changing its value. An output for an outside recipient is opened to no
//! party: each party's share goes into [`EngineOutput::external`] for the host to deliver,
//! and the recipient runs [`reconstruct_external`].
//!
//! **Checkpoints and assertions** ([`crate::program`]): the verification above also ends
//! every segment. In the same three rounds it checks each named assertion: per check, a
//! random linear combination Z of the asserted values (coefficients from the same coin) is
//! multiplied by a fresh PRSS \[β\] and β·Z opened — zero iff (with probability ≥ 1 − 2/p) every
//! asserted value is zero, and uniform otherwise, so nothing else leaks. Assertions are
//! judged only after the multiplication check passed, so a failure points at the asserted
//! inputs rather than at tampered arithmetic. After a checkpoint the opened MAC key is
//! replaced by a fresh PRSS \[r'\], old MAC'd copies are dropped, and the values a later
//! segment needs as MAC'd factors get \[r'·x\] in one multiplication round.
//! Semi-honest jobs run the verification only for segments with assertions (without T).
//!
//! Intermediate `open` instructions are opened all-to-all with the degree-t check (so their
//! value is fixed by the n − t ≥ t + 1 honest shares) and are covered by the final check: an
//! additive error on \[x\] before an opening is value-independent, so the opened value leaks
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
//! **Rounds and elements** (per party; M127 elements are 16 bytes):
//!
//! | phase | rounds | elements sent |
//! |---|---|---|
//! | inputs | 1 | (n − 1)·(own input length) + a 32-byte commitment per peer |
//! | input MACs (malicious, if any input is a MAC'd factor) | 1 | (n − 1 − t) per MAC'd input element |
//! | program | its round count | (n − 1 − t) per multiplication (×2 malicious); (n − 1) per opened element |
//! | verification (malicious) | 3 | 4(n − 1) + (n − 1 − t) |
//! | checkpoint (each) | 3 (+1 to re-MAC) | as verification (+ (n − 1 − t) per re-MAC'd element) |
//! | outputs | 1 | one per output element per recipient other than itself |
//!
//! Per multiplication: n = 3, t = 1: 16 B semi-honest, 32 B malicious; n = 5, t = 2: 32 B /
//! 64 B; n = 7, t = 3: 48 B / 96 B. DN07 (double sharings and a king) would send ≈ 2(n − 1)/n
//! elements in 2 rounds — fewer at n ≥ 5 but twice the latency; GRR with derived subshares
//! already meets the one-element bound at n = 3 (DESIGN §9).

use crate::commit::{Commitment, Opening, commit};
use crate::error::{CheckFailure, ConfigError, MpcError};
use crate::field::Field;
use crate::inbox::{Expect, Inbox, Limits};
use crate::message::{Header, Kind, Message, Outgoing, PartWriter, abort_notices};
use crate::program::{Op, Program, PublicFn, Recipients, Reg, Step};
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

impl core::fmt::Display for Security {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Security::SemiHonest => "semi-honest",
            Security::Malicious => "malicious",
        })
    }
}

impl core::str::FromStr for Security {
    type Err = MpcError;
    /// `"semi-honest"` or `"malicious"` (a job policy setting).
    fn from_str(s: &str) -> Result<Self, MpcError> {
        match s {
            "semi-honest" => Ok(Security::SemiHonest),
            "malicious" => Ok(Security::Malicious),
            other => Err(ConfigError::Other(format!(
                "unknown security model {other:?}: use \"malicious\" or \"semi-honest\""
            ))
            .into()),
        }
    }
}

/// What a finished job delivers to this party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOutput<F: Field> {
    /// One entry per output instruction, in program order: the opened value, or `None` when
    /// the output is not addressed to this party (it never received the opening shares).
    pub values: Vec<Option<Vec<F>>>,
    /// This party's shares of the outputs addressed to an outside recipient
    /// ([`Recipients::External`]), for the host to deliver (encrypted to the recipient).
    pub external: Vec<ExternalShare<F>>,
    /// Every party's input commitment, by party index.
    pub commitments: Vec<Commitment>,
}

impl<F: Field> EngineOutput<F> {
    /// Every output's value, if all of them are addressed to this party.
    pub fn all_values(&self) -> Option<Vec<Vec<F>>> {
        self.values.iter().cloned().collect()
    }
}

/// One party's shares of an output addressed to an outside recipient. Secret: redacted in
/// `Debug`, zeroized on drop.
pub struct ExternalShare<F: Field> {
    /// Index of the output instruction.
    pub output: usize,
    /// The party holding the shares.
    pub party: usize,
    /// That party's evaluation point.
    pub point: u64,
    /// The shares, one per element of the output.
    pub shares: SecretVec<F>,
}

impl<F: Field> Clone for ExternalShare<F> {
    fn clone(&self) -> Self {
        Self {
            output: self.output,
            party: self.party,
            point: self.point,
            shares: self.shares.duplicate(),
        }
    }
}

impl<F: Field> PartialEq for ExternalShare<F> {
    fn eq(&self, o: &Self) -> bool {
        self.output == o.output
            && self.party == o.party
            && self.point == o.point
            && self.shares == o.shares
    }
}

impl<F: Field> Eq for ExternalShare<F> {}

impl<F: Field> core::fmt::Debug for ExternalShare<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ExternalShare")
            .field("output", &self.output)
            .field("party", &self.party)
            .field("shares", &self.shares)
            .finish()
    }
}

/// What an outside recipient does with the [`ExternalShare`]s of one output it received from
/// the parties: reconstructs each element from all of them with the degree-t check, so a
/// wrong share from up to t parties is detected (n − t ≥ t + 1 honest shares fix the value).
/// `points` and `t` come from the federation manifest.
pub fn reconstruct_external<F: Field>(
    points: &[u64],
    t: usize,
    shares: &[ExternalShare<F>],
) -> Result<Vec<F>, MpcError> {
    let shamir = Shamir::<F>::new(points, t)?;
    let n = points.len();
    let Some(first) = shares.first() else {
        return Err(MpcError::Input("no shares to reconstruct from".into()));
    };
    let mut by_party: Vec<Option<&[F]>> = vec![None; n];
    for s in shares {
        if s.output != first.output {
            return Err(MpcError::Input(format!(
                "shares of outputs {} and {} mixed",
                first.output, s.output
            )));
        }
        let slot = by_party
            .get_mut(s.party)
            .ok_or(MpcError::UnknownParty { from: s.party, n })?;
        if slot.is_some() {
            return Err(MpcError::Input(format!(
                "two shares from party {}",
                s.party
            )));
        }
        if points.get(s.party) != Some(&s.point) {
            return Err(MpcError::Input(format!(
                "share from party {} claims point {}, the manifest says {:?}",
                s.party,
                s.point,
                points.get(s.party)
            )));
        }
        *slot = Some(s.shares.as_slice());
    }
    let views: Vec<&[F]> = by_party
        .into_iter()
        .enumerate()
        .map(|(p, v)| v.ok_or_else(|| MpcError::Input(format!("no share from party {p}"))))
        .collect::<Result<_, _>>()?;
    shamir.open_checked(&views, "external output reconstruction")
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

fn shared_in<F: Field>(regs: &[Option<Value<F>>], r: Reg) -> Result<&Shared<F>, MpcError> {
    match regs.get(r.0) {
        Some(Some(Value::Shared(s))) => Ok(s),
        _ => Err(MpcError::Misuse(
            "operand register is not a computed shared value",
        )),
    }
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

/// A product's two factor slices.
type Factors<'a, F> = Option<(&'a [F], &'a [F])>;

/// The factors of a product's MAC'd copy: (r·a, b) or (a, r·b) as the program planned;
/// `None` in semi-honest mode.
fn mac_factors<'a, F: Field>(
    security: Security,
    left: bool,
    a: &'a Shared<F>,
    b: &'a Shared<F>,
) -> Result<Factors<'a, F>, MpcError> {
    if security == Security::SemiHonest {
        return Ok(None);
    }
    let missing = MpcError::Misuse("planned MAC'd factor has no MAC");
    Ok(Some(if left {
        (a.rx.as_ref().ok_or(missing)?.as_slice(), b.x.as_slice())
    } else {
        (a.x.as_slice(), b.rx.as_ref().ok_or(missing)?.as_slice())
    }))
}

/// One segment of a resharing batch; its degree-2t values are computed block by block.
enum Seg<'a, F: Field> {
    /// `x ⊙ y`.
    Prod(&'a [F], &'a [F]),
    /// `c · x`.
    Scaled(F, &'a [F]),
    /// Precomputed values.
    Vals(&'a [F]),
}

impl<F: Field> Seg<'_, F> {
    fn len(&self) -> usize {
        match self {
            Seg::Prod(x, _) | Seg::Scaled(_, x) | Seg::Vals(x) => x.len(),
        }
    }
    fn fill(&self, start: usize, out: &mut [F]) {
        let end = start + out.len();
        match self {
            Seg::Prod(x, y) => F::mul_slices(out, &x[start..end], &y[start..end]),
            Seg::Scaled(c, x) => {
                out.copy_from_slice(&x[start..end]);
                F::scale_slice(out, *c);
            }
            Seg::Vals(v) => out.copy_from_slice(&v[start..end]),
        }
    }
}

/// Elements processed per block: small enough for L1/L2, large enough to amortise the loops.
const BLOCK: usize = 2048;

/// GRR send for a batch: reshares every segment's values, writing the subshares for the
/// parties in `send_to` into `writers` and returning this party's own partial sums per
/// segment (own polynomial plus the subshares derived for it). `tweak` adds 1 to one batch
/// element before resharing (the `cheat` feature's additive attack).
fn grr_send<F: Field>(
    grr: &Grr<F>,
    rand: &mut JobRandomness<F>,
    segs: &[Seg<'_, F>],
    tweak: Option<usize>,
    writers: &mut [PartWriter],
) -> Vec<SecretVec<F>> {
    let t = grr.derive_for.len();
    let mut d = SecretVec::<F>::zeros(BLOCK);
    let mut derived: Vec<SecretVec<F>> = (0..t).map(|_| SecretVec::zeros(BLOCK)).collect();
    let mut vals = SecretVec::<F>::zeros(BLOCK);
    let mut pos = 0usize;
    let mut own_all = Vec::with_capacity(segs.len());
    for seg in segs {
        let len = seg.len();
        let mut own = SecretVec::<F>::zeros(len);
        let mut start = 0;
        while start < len {
            let b = BLOCK.min(len - start);
            let d = &mut d.as_mut_slice()[..b];
            seg.fill(start, d);
            if let Some(g) = tweak
                && (pos..pos + b).contains(&g)
            {
                d[g - pos] += F::one();
            }
            for (r, &j) in derived.iter_mut().zip(&grr.derive_for) {
                rand.fill_pair_out(j, &mut r.as_mut_slice()[..b]);
            }
            let vals = &mut vals.as_mut_slice()[..b];
            for ((cd, cr), w) in grr.send_coeffs.iter().zip(writers.iter_mut()) {
                combine(vals, *cd, d, cr, &derived);
                w.extend(vals);
            }
            let own_block = &mut own.as_mut_slice()[start..start + b];
            let (cd, cr) = &grr.own_coeffs;
            combine(own_block, *cd, d, cr, &derived);
            for &i in &grr.derived_from {
                rand.fill_pair_in(i, vals);
                F::add_assign_slice(own_block, vals);
            }
            start += b;
            pos += b;
        }
        own_all.push(own);
    }
    own_all
}

/// `out = cd·d + Σ_j cr_j·r_j` over a block.
#[inline]
fn combine<F: Field>(out: &mut [F], cd: F, d: &[F], cr: &[F], derived: &[SecretVec<F>]) {
    match (cr, derived) {
        // t = 1 (n = 3): one fused pass.
        ([c0], [r0]) => {
            for ((o, &x), &r) in out.iter_mut().zip(d).zip(r0.as_slice()) {
                *o = F::mul_add2(cd, x, *c0, r);
            }
        }
        _ => {
            for (o, &x) in out.iter_mut().zip(d) {
                *o = cd * x;
            }
            for (c, r) in cr.iter().zip(derived) {
                F::add_scaled_slice(out, *c, &r.as_slice()[..out.len()]);
            }
        }
    }
}

/// What a round in flight needs when it completes.
struct RoundState<F: Field> {
    /// This party's partial sums of the resharing, per segment.
    reshare_own: Vec<SecretVec<F>>,
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
    /// New MACs for the segment starting at this step.
    Remac(usize),
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
    /// Registers holding (x, r·x) pairs to verify, in the order all parties log them.
    log: Vec<usize>,
    /// Input and random registers without a MAC: checked for consistency only.
    unmacked: Vec<usize>,
    inbox: Inbox,
    round: u32,
    /// Index of the current segment (checkpoints passed).
    segment: usize,
    /// Registers a pending verification still reads (logged values, un-MAC'd inputs).
    pinned: Vec<bool>,
    /// Registers past their last reader, freed once unpinned.
    dead: Vec<bool>,
    /// Where the program goes on after the verification in flight (`None`: the outputs).
    after_verify: Option<usize>,
    /// The named checks of the verification in flight, in the order of their openings.
    verify_checks: Vec<usize>,
    /// (p − 3)/4 as little-endian limbs, for `InvSqrt`.
    sqrt_exp: Vec<u64>,
    /// This party's shares of outputs for outside recipients.
    external: Vec<ExternalShare<F>>,
    /// This party's shares of the outputs addressed to it, during the output round.
    output_own: SecretVec<F>,
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
        if let Some(pt) = program.threshold()
            && pt != cfg.t
        {
            return Err(ConfigError::Other(format!(
                "the program's statistical masks are sized for t = {pt}, the job has t = {}",
                cfg.t
            ))
            .into());
        }
        let sets = crate::prss::set_count(n, cfg.t);
        for op in program.ops() {
            if let Op::RandomInt { bits, .. } = op {
                // The sum over the key sets must stay below 2^BITS < p.
                let need = u64::from(*bits) + u64::from(usize::BITS - sets.leading_zeros());
                if need > u64::from(F::BITS) {
                    return Err(ConfigError::Other(format!(
                        "random integers of {bits} bits summed over {sets} key sets need {need} bits; {} has {}",
                        F::NAME,
                        F::BITS
                    ))
                    .into());
                }
            }
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
        let sqrt_exp = if program.ops().iter().any(|op| {
            matches!(
                op,
                Op::PublicMap {
                    f: PublicFn::InvSqrt,
                    ..
                }
            )
        }) {
            sqrt_exponent::<F>()?
        } else {
            Vec::new()
        };
        let opening = Opening::random(&mut rng);
        let regs = (0..program.ops().len()).map(|_| None).collect();
        let len = program.ops().len();
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
            log: Vec::new(),
            unmacked: Vec::new(),
            inbox,
            round: 0,
            segment: 0,
            pinned: vec![false; len],
            dead: vec![false; len],
            after_verify: None,
            verify_checks: Vec::new(),
            sqrt_exp,
            external: Vec::new(),
            output_own: SecretVec::zeros(0),
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

    // ---- input round -------------------------------------------------------------------

    fn start_inputs(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let me = self.cfg.me;
        let mut buffer = SecretVec::with_capacity(self.inputs.iter().map(SecretVec::len).sum());
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
            let mut commit_msg =
                PartWriter::new(self.header(Kind::Commit), 1, 32, self.cfg.max_chunk_elems);
            commit_msg.extend_raw(&c.0);
            commit_msg.finish(j, out);
            // Only the copy for j is altered: the dealer keeps its own share unchanged.
            #[cfg(feature = "cheat")]
            if let Some(d @ crate::cheat::Deviation::WrongShare { element, .. }) = self.cheat
                && d.victim(me, self.cfg.n()) == Some(j)
                && let Some(x) = shares[j].as_mut_slice().get_mut(element)
            {
                *x += F::one();
            }
            let share = &shares[j];
            let mut w = PartWriter::new(
                self.header(Kind::Share),
                share.len(),
                F::ENCODED_LEN,
                self.cfg.max_chunk_elems,
            );
            w.extend(share.as_slice());
            w.finish(j, out);
        }
        // Own shares go into the input registers once the round completes.
        let own = shares.swap_remove(me);
        self.inputs = vec![own];
        Ok(())
    }

    fn header(&self, kind: Kind) -> Header {
        Header {
            kind,
            session: self.cfg.session,
            round: self.round,
        }
    }

    fn finish_inputs(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let n = self.cfg.n();
        let me = self.cfg.me;
        let own = self.inputs.pop().unwrap_or_else(|| SecretVec::zeros(0));
        let mut payloads = Vec::with_capacity(n);
        for j in 0..n {
            if j == me {
                payloads.push(None);
                continue;
            }
            let c = self.inbox.take_bytes(Kind::Commit, j)?;
            let mut arr = [0u8; 32];
            if c.len() == 32 {
                arr.copy_from_slice(&c);
            }
            self.commitments[j] = Some(Commitment(arr));
            payloads.push(self.inbox.take_payload(Kind::Share, j)?);
        }
        // Decode each party's shares straight into its input registers, in program order.
        let mut own_at = 0usize;
        let program = Arc::clone(&self.program);
        for (i, op) in program.ops().iter().enumerate() {
            match op {
                Op::Input { party, len } => {
                    let mut x = SecretVec::zeros(*len);
                    if *party == me {
                        let src = own.as_slice().get(own_at..own_at + len);
                        x.as_mut_slice().copy_from_slice(
                            src.ok_or(MpcError::Misuse("own input shares too short"))?,
                        );
                        own_at += len;
                    } else if let Some(Some(p)) = payloads.get_mut(*party) {
                        p.decode_into(x.as_mut_slice())?;
                    }
                    self.regs[i] = Some(Value::Shared(Shared { x, rx: None }));
                }
                Op::Random { len } => {
                    let x = self.rand.random(*len);
                    self.regs[i] = Some(Value::Shared(Shared { x, rx: None }));
                }
                Op::RandomInt { len, bits } => {
                    let x = self.rand.random_int(*len, *bits);
                    self.regs[i] = Some(Value::Shared(Shared { x, rx: None }));
                }
                _ => {}
            }
        }
        let needs = &self.program.needs_mac;
        self.unmacked = (0..self.regs.len())
            .filter(|&i| {
                matches!(self.regs[i], Some(Value::Shared(_)))
                    && !needs.get(i).copied().unwrap_or(true)
            })
            .collect();
        let macked: Vec<usize> = (0..self.regs.len())
            .filter(|&i| {
                matches!(self.regs[i], Some(Value::Shared(_)))
                    && needs.get(i).copied().unwrap_or(true)
            })
            .collect();
        if self.malicious() {
            // The verification reads them whatever the program does.
            for i in self
                .unmacked
                .clone()
                .into_iter()
                .chain(macked.iter().copied())
            {
                self.pin(i);
            }
        }
        if self.malicious() && !macked.is_empty() {
            // One multiplication round: [r·v] for every input and random value that is ever a
            // MAC'd factor of a product (see `program::mac_plan`).
            let r = self.mac_key.as_slice().first().copied().unwrap_or_default();
            let segs: Vec<Seg<'_, F>> = macked
                .iter()
                .map(|&i| shared_in(&self.regs, Reg(i)).map(|s| Seg::Scaled(r, s.x.as_slice())))
                .collect::<Result<_, _>>()?;
            let state = Self::send_round_with(
                &self.cfg,
                &self.grr,
                &mut self.rand,
                self.round + 1,
                &segs,
                &[],
                None,
                "",
                out,
            );
            self.begin(state, out)?;
            self.phase = Phase::InputMac;
            Ok(())
        } else {
            self.phase = Phase::Program(0);
            self.run_program(out)
        }
    }

    fn finish_input_mac(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let (zs, _) = self.finish_round()?;
        let mut zs = zs.into_iter();
        let needs = &self.program.needs_mac;
        for (i, v) in self.regs.iter_mut().enumerate() {
            if let Some(Value::Shared(s)) = v
                && needs.get(i).copied().unwrap_or(true)
            {
                s.rx = zs.next();
                self.log.push(i);
            }
        }
        self.phase = Phase::Program(0);
        self.run_program(out)
    }

    // ---- rounds --------------------------------------------------------------------------

    /// Builds the next round's messages: reshares `segs` and opens the concatenation of
    /// `open`. Free of `self` so that segments can borrow registers.
    #[allow(clippy::too_many_arguments)]
    fn send_round_with(
        cfg: &Config,
        grr: &Grr<F>,
        rand: &mut JobRandomness<F>,
        round: u32,
        segs: &[Seg<'_, F>],
        open: &[&[F]],
        tweak: Option<usize>,
        open_context: &'static str,
        out: &mut Vec<Outgoing>,
    ) -> (u32, RoundState<F>, usize, usize) {
        let header = |kind| Header {
            kind,
            session: cfg.session,
            round,
        };
        let m: usize = segs.iter().map(Seg::len).sum();
        let mut writers: Vec<PartWriter> = grr
            .send_to
            .iter()
            .map(|_| {
                PartWriter::new(
                    header(Kind::Reshare),
                    m,
                    F::ENCODED_LEN,
                    cfg.max_chunk_elems,
                )
            })
            .collect();
        let reshare_own = if m > 0 {
            grr_send(grr, rand, segs, tweak, &mut writers)
        } else {
            Vec::new()
        };
        for (w, &k) in writers.into_iter().zip(&grr.send_to) {
            w.finish(k, out);
        }
        let o: usize = open.iter().map(|v| v.len()).sum();
        let mut open_own = SecretVec::with_capacity(o);
        for v in open {
            open_own.extend_from_slice(v);
        }
        (
            round,
            RoundState {
                reshare_own,
                open_own,
                open_context,
            },
            m,
            o,
        )
    }

    /// Sends this party's opening shares (with the `cheat` hook) and starts expecting the
    /// round's messages.
    fn begin(
        &mut self,
        (round, state, m, o): (u32, RoundState<F>, usize, usize),
        out: &mut Vec<Outgoing>,
    ) -> Result<(), MpcError> {
        self.round = round;
        if o > 0 {
            let mut w = PartWriter::new(
                self.header(Kind::Open),
                o,
                F::ENCODED_LEN,
                self.cfg.max_chunk_elems,
            );
            w.extend(state.open_own.as_slice());
            for j in self.others() {
                #[cfg(feature = "cheat")]
                if let Some(wrong) = self.cheat_opening(j, state.open_own.as_slice(), Kind::Open) {
                    wrong.finish(j, out);
                    continue;
                }
                w.messages_to(j, out);
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
                elems: o,
                elem_len: F::ENCODED_LEN,
            });
        }
        self.inbox.begin_round(round, &expects)?;
        self.pending = Some(state);
        Ok(())
    }

    /// A round with no resharing.
    fn send_open(
        &mut self,
        open: &[&[F]],
        context: &'static str,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), MpcError> {
        let state = Self::send_round_with(
            &self.cfg,
            &self.grr,
            &mut self.rand,
            self.round + 1,
            &[],
            open,
            None,
            context,
            out,
        );
        self.begin(state, out)
    }

    /// Completes the round in flight: the reshared degree-t values per segment and the
    /// opened values.
    fn finish_round(&mut self) -> Result<(Vec<SecretVec<F>>, Vec<F>), MpcError> {
        let state = self
            .pending
            .take()
            .ok_or(MpcError::Misuse("no round in flight"))?;
        let mut zs = state.reshare_own;
        for &i in &self.grr.recv_from {
            if let Some(mut payload) = self.inbox.take_payload(Kind::Reshare, i)? {
                for z in &mut zs {
                    payload.add_into(z.as_mut_slice())?;
                }
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
        Ok((zs, opened))
    }

    // ---- program -------------------------------------------------------------------------

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
                    self.release_step(idx);
                    self.phase = Phase::Program(idx + 1);
                }
                Some(Step::Checkpoint(_)) => return self.start_verify(Some(idx + 1), out),
                Some(Step::Round(ops)) => {
                    let ops = ops.clone();
                    let mut dots = Vec::new();
                    for &i in &ops {
                        if let Op::Dot(a, b) = &program.ops()[i] {
                            let (sa, sb) = (shared_in(&self.regs, *a)?, shared_in(&self.regs, *b)?);
                            dots.push(F::dot(sa.x.as_slice(), sb.x.as_slice()));
                            if let Some((p, q)) =
                                mac_factors(self.security, program.mac_left[i], sa, sb)?
                            {
                                dots.push(F::dot(p, q));
                            }
                        }
                    }
                    let mut segs = Vec::new();
                    let mut open: Vec<&[F]> = Vec::new();
                    let mut dot_at = 0;
                    for &i in &ops {
                        match &program.ops()[i] {
                            Op::Mul(a, b) => {
                                let (sa, sb) =
                                    (shared_in(&self.regs, *a)?, shared_in(&self.regs, *b)?);
                                segs.push(Seg::Prod(sa.x.as_slice(), sb.x.as_slice()));
                                if let Some((p, q)) =
                                    mac_factors(self.security, program.mac_left[i], sa, sb)?
                                {
                                    segs.push(Seg::Prod(p, q));
                                }
                            }
                            Op::Dot(..) => {
                                let k = if self.security == Security::Malicious {
                                    2
                                } else {
                                    1
                                };
                                for _ in 0..k {
                                    segs.push(Seg::Vals(&dots[dot_at..dot_at + 1]));
                                    dot_at += 1;
                                }
                            }
                            Op::Open(a) => open.push(shared_in(&self.regs, *a)?.x.as_slice()),
                            _ => {
                                return Err(MpcError::Misuse(
                                    "local instruction scheduled in a round",
                                ));
                            }
                        }
                    }
                    #[cfg(feature = "cheat")]
                    let tweak = self.cheat_additive_index();
                    #[cfg(not(feature = "cheat"))]
                    let tweak = None;
                    let state = Self::send_round_with(
                        &self.cfg,
                        &self.grr,
                        &mut self.rand,
                        self.round + 1,
                        &segs,
                        &open,
                        tweak,
                        "intermediate opening",
                        out,
                    );
                    self.begin(state, out)?;
                    self.release_step(idx);
                    #[cfg(feature = "cheat")]
                    {
                        self.mul_rounds += 1;
                    }
                    return Ok(());
                }
                None => return self.start_verify(None, out),
            }
        }
        Ok(())
    }

    fn finish_program_round(
        &mut self,
        idx: usize,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), MpcError> {
        let (zs, opened) = self.finish_round()?;
        let program = Arc::clone(&self.program);
        let Some(Step::Round(ops)) = program.steps.get(idx) else {
            return Err(MpcError::Misuse("round finished outside a round step"));
        };
        let malicious = self.malicious();
        let mut zs = zs.into_iter();
        let mut oo = 0usize;
        for &i in ops {
            let len = program.info[i].len;
            match &program.ops()[i] {
                Op::Mul(..) | Op::Dot(..) => {
                    let x = zs.next().ok_or(MpcError::Misuse("round lost a product"))?;
                    let rx = if malicious { zs.next() } else { None };
                    if malicious {
                        self.log.push(i);
                        self.pin(i);
                    }
                    self.regs[i] = Some(Value::Shared(Shared { x, rx }));
                }
                Op::Open(_) => {
                    let v = opened
                        .get(oo..oo + len)
                        .map(<[F]>::to_vec)
                        .unwrap_or_default();
                    oo += len;
                    self.regs[i] = Some(Value::Public(v));
                }
                _ => {}
            }
        }
        self.phase = Phase::Program(idx + 1);
        self.run_program(out)
    }

    fn exec_local(&mut self, op: &Op<F>) -> Result<Option<Value<F>>, MpcError> {
        let r = self.mac_key.as_slice().first().copied().unwrap_or_default();
        let v = match op {
            Op::Input { .. }
            | Op::Random { .. }
            | Op::RandomInt { .. }
            | Op::Output { .. }
            | Op::AssertZero { .. }
            | Op::Checkpoint => return Ok(None),
            Op::PublicMap { a, f } => match self.value(*a)? {
                Value::Public(c) => Value::Public(public_map(c, *f, &self.sqrt_exp)?),
                Value::Shared(_) => {
                    return Err(MpcError::Misuse("public function of a shared register"));
                }
            },
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

    // ---- verification ----------------------------------------------------------------------

    /// Starts the verification that ends the current segment; the program then goes on at
    /// step `after` (`None`: the outputs). Semi-honest segments without assertions skip it.
    fn start_verify(
        &mut self,
        after: Option<usize>,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), MpcError> {
        self.after_verify = after;
        let asserts = self
            .program
            .segments
            .get(self.segment)
            .is_some_and(|s| !s.asserts.is_empty());
        if !self.malicious() && !asserts {
            return self.after_verified(out);
        }
        let coin = self.rand.random(1);
        if self.malicious() {
            let key = self.mac_key.duplicate();
            self.send_open(
                &[coin.as_slice(), key.as_slice()],
                "coin and MAC-key opening",
                out,
            )?;
        } else {
            self.send_open(&[coin.as_slice()], "coin opening", out)?;
        }
        self.phase = Phase::Verify1;
        Ok(())
    }

    fn finish_verify1(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let (_, opened) = self.finish_round()?;
        let Some(&coin) = opened.first() else {
            return Err(MpcError::Misuse("verification opening lost its coin"));
        };
        let mut alpha_rng = coin_stream(&coin, &self.cfg.session, self.segment)?;
        const CHUNK: usize = 4096;
        #[allow(clippy::useless_vec)] // up to 4096 × 72 bytes: keep it off the stack
        let mut alpha = vec![F::zero(); CHUNK];
        // Values to multiply by fresh random β: the Chida value T, then one random linear
        // combination per named check.
        let mut vals: Vec<F> = Vec::new();
        let mut masked: Vec<F> = Vec::new();
        if self.malicious() {
            let Some(&r) = opened.get(1) else {
                return Err(MpcError::Misuse("verification opening lost the MAC key"));
            };
            // w = Σ α_k [z_k], u = Σ α_k [r·z_k], over the log in chunks.
            let (mut w, mut u) = (F::zero(), F::zero());
            for &i in &self.log {
                let s = shared_in(&self.regs, Reg(i))?;
                let rx =
                    s.rx.as_ref()
                        .ok_or(MpcError::Misuse("logged value without its MAC"))?;
                for (z, rz) in
                    s.x.as_slice()
                        .chunks(CHUNK)
                        .zip(rx.as_slice().chunks(CHUNK))
                {
                    let a = &mut alpha[..z.len()];
                    F::fill_random(&mut alpha_rng, a);
                    w += F::dot(a, z);
                    u += F::dot(a, rz);
                }
            }
            let t_share = u - r * w;
            // Un-MAC'd inputs join the consistency check with their own coefficients γ.
            let mut c = F::zero();
            for &i in &self.unmacked {
                let s = shared_in(&self.regs, Reg(i))?;
                for z in s.x.as_slice().chunks(CHUNK) {
                    let g = &mut alpha[..z.len()];
                    F::fill_random(&mut alpha_rng, g);
                    c += F::dot(g, z);
                }
            }
            let rho = self.rand.random(1);
            let first = |v: &SecretVec<F>| v.as_slice().first().copied().unwrap_or_default();
            masked.push(t_share + c + first(&rho));
            vals.push(t_share);
        }
        // Assertions: one random linear combination per named check.
        let program = Arc::clone(&self.program);
        let mut groups: Vec<(usize, F)> = Vec::new();
        if let Some(seg) = program.segments.get(self.segment) {
            for (reg, check) in &seg.asserts {
                let s = shared_in(&self.regs, *reg)?;
                let mut z = F::zero();
                for x in s.x.as_slice().chunks(CHUNK) {
                    let a = &mut alpha[..x.len()];
                    F::fill_random(&mut alpha_rng, a);
                    z += F::dot(a, x);
                }
                match groups.iter_mut().find(|g| g.0 == *check) {
                    Some(g) => g.1 += z,
                    None => groups.push((*check, z)),
                }
            }
        }
        self.verify_checks = groups.iter().map(|g| g.0).collect();
        vals.extend(groups.iter().map(|g| g.1));
        let betas = self.rand.random(vals.len());
        let bv = SecretVec::new(
            vals.iter()
                .zip(betas.as_slice())
                .map(|(v, b)| *b * *v)
                .collect(),
        );
        let state = Self::send_round_with(
            &self.cfg,
            &self.grr,
            &mut self.rand,
            self.round + 1,
            &[Seg::Vals(bv.as_slice())],
            &[&masked],
            None,
            "masked verification-value opening",
            out,
        );
        self.begin(state, out)?;
        self.phase = Phase::Verify2;
        Ok(())
    }

    fn finish_verify2(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        // Opening [T + ρ] checked the consistency of T's sharing; its value is noise.
        let (bt, _) = self.finish_round()?;
        let bt = bt
            .into_iter()
            .next()
            .ok_or(MpcError::Misuse("zero check lost its product"))?;
        self.send_open(&[bt.as_slice()], "zero-check opening", out)?;
        self.phase = Phase::Verify3;
        Ok(())
    }

    fn finish_verify3(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let (_, opened) = self.finish_round()?;
        let mut opened = opened.into_iter();
        if self.malicious() {
            let zero = opened.next().is_some_and(|v| v == F::zero());
            if !zero && !cfg!(feature = "test-disable-mult-check") {
                return Err(CheckFailure::MultiplicationCheck {
                    error_bound: error_bound::<F>(),
                }
                .into());
            }
        }
        // Only after the multiplications are known to be right do the assertions say
        // anything about the inputs.
        for check in core::mem::take(&mut self.verify_checks) {
            if opened.next() != Some(F::zero()) {
                let name = self
                    .program
                    .checks
                    .get(check)
                    .cloned()
                    .unwrap_or_else(|| format!("check {check}"));
                return Err(CheckFailure::Assertion { check: name }.into());
            }
        }
        self.after_verified(out)
    }

    /// The segment is verified: release what the verification held, then go on.
    fn after_verified(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        for i in core::mem::take(&mut self.log)
            .into_iter()
            .chain(core::mem::take(&mut self.unmacked))
        {
            self.unpin(i);
        }
        let Some(next) = self.after_verify.take() else {
            return self.start_output(out);
        };
        self.segment += 1;
        let program = Arc::clone(&self.program);
        let checkpoint_step = next.saturating_sub(1);
        if self.malicious() {
            // The old key was opened: a fresh one for the new segment, and no old MAC'd copy
            // may be used again.
            self.mac_key = self.rand.random(1);
            for v in self.regs.iter_mut().flatten() {
                if let Value::Shared(s) = v {
                    s.rx = None;
                }
            }
            let remac = program
                .segments
                .get(self.segment)
                .map(|s| s.remac.as_slice())
                .unwrap_or(&[]);
            if !remac.is_empty() {
                let r = self.mac_key.as_slice().first().copied().unwrap_or_default();
                let segs: Vec<Seg<'_, F>> = remac
                    .iter()
                    .map(|&i| shared_in(&self.regs, Reg(i)).map(|s| Seg::Scaled(r, s.x.as_slice())))
                    .collect::<Result<_, _>>()?;
                let state = Self::send_round_with(
                    &self.cfg,
                    &self.grr,
                    &mut self.rand,
                    self.round + 1,
                    &segs,
                    &[],
                    None,
                    "",
                    out,
                );
                self.begin(state, out)?;
                self.phase = Phase::Remac(next);
                return Ok(());
            }
        }
        self.release_step(checkpoint_step);
        self.phase = Phase::Program(next);
        self.run_program(out)
    }

    fn finish_remac(&mut self, next: usize, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let (zs, _) = self.finish_round()?;
        let program = Arc::clone(&self.program);
        let remac = program
            .segments
            .get(self.segment)
            .map(|s| s.remac.as_slice())
            .unwrap_or(&[]);
        for (&i, rx) in remac.iter().zip(zs) {
            if let Some(Some(Value::Shared(s))) = self.regs.get_mut(i) {
                s.rx = Some(rx);
                self.log.push(i);
                self.pin(i);
            }
        }
        self.release_step(next.saturating_sub(1));
        self.phase = Phase::Program(next);
        self.run_program(out)
    }

    // ---- outputs ---------------------------------------------------------------------------

    /// Sends every peer its shares of the outputs addressed to it, and only those.
    fn start_output(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        let program = Arc::clone(&self.program);
        let (n, me) = (self.cfg.n(), self.cfg.me);
        let mut to_peer: Vec<SecretVec<F>> = (0..n).map(|_| SecretVec::zeros(0)).collect();
        let mut mine = SecretVec::zeros(0);
        for (idx, (r, to)) in program.outputs.iter().enumerate() {
            let Value::Shared(s) = self.value(*r)? else {
                continue;
            };
            for (k, buf) in to_peer.iter_mut().enumerate() {
                if k != me && to.includes(k) {
                    buf.extend_from_slice(s.x.as_slice());
                }
            }
            if to.includes(me) {
                mine.extend_from_slice(s.x.as_slice());
            }
            if *to == Recipients::External {
                self.external.push(ExternalShare {
                    output: idx,
                    party: me,
                    point: self.cfg.points.get(me).copied().unwrap_or_default(),
                    shares: s.x.duplicate(),
                });
            }
        }
        self.round += 1;
        for (k, buf) in to_peer.iter().enumerate() {
            if buf.is_empty() {
                continue;
            }
            let mut w = PartWriter::new(
                self.header(Kind::Output),
                buf.len(),
                F::ENCODED_LEN,
                self.cfg.max_chunk_elems,
            );
            #[cfg(feature = "cheat")]
            let wrong = self.cheat_opening(k, buf.as_slice(), Kind::Output);
            #[cfg(feature = "cheat")]
            if let Some(wrong) = wrong {
                wrong.finish(k, out);
                continue;
            }
            w.extend(buf.as_slice());
            w.finish(k, out);
        }
        #[cfg(feature = "cheat")]
        {
            self.open_rounds += 1;
        }
        let expects: Vec<Expect> = self
            .others()
            .map(|j| Expect {
                kind: Kind::Output,
                from: j,
                elems: mine.len(),
                elem_len: F::ENCODED_LEN,
            })
            .collect();
        self.inbox.begin_round(self.round, &expects)?;
        self.output_own = mine;
        self.phase = Phase::Output;
        Ok(())
    }

    fn finish_output(&mut self) -> Result<(), MpcError> {
        let (n, me) = (self.cfg.n(), self.cfg.me);
        let own = core::mem::replace(&mut self.output_own, SecretVec::zeros(0));
        let opened = if own.is_empty() {
            Vec::new()
        } else {
            let mut held = Vec::with_capacity(n);
            for j in 0..n {
                if j == me {
                    held.push(own.duplicate());
                } else {
                    held.push(self.inbox.take::<F>(Kind::Output, j)?);
                }
            }
            let views: Vec<&[F]> = held.iter().map(SecretVec::as_slice).collect();
            self.shamir.open_checked(&views, "output opening")?
        };
        let program = Arc::clone(&self.program);
        let mut values = Vec::with_capacity(program.outputs.len());
        let mut at = 0;
        for (r, to) in &program.outputs {
            if !to.includes(me) {
                values.push(None);
                continue;
            }
            match self.value(*r)? {
                Value::Shared(s) => {
                    let len = s.x.len();
                    values.push(Some(
                        opened
                            .get(at..at + len)
                            .map(<[F]>::to_vec)
                            .unwrap_or_default(),
                    ));
                    at += len;
                }
                Value::Public(p) => values.push(Some(p.clone())),
            }
        }
        let commitments = self
            .commitments
            .iter()
            .map(|c| c.unwrap_or(Commitment([0; 32])))
            .collect();
        self.output = Some(EngineOutput {
            values,
            external: core::mem::take(&mut self.external),
            commitments,
        });
        self.phase = Phase::Done;
        // Shares are no longer needed.
        self.regs.clear();
        self.log.clear();
        Ok(())
    }

    // ---- register lifetimes ----------------------------------------------------------------

    fn pin(&mut self, i: usize) {
        if let Some(p) = self.pinned.get_mut(i) {
            *p = true;
        }
    }

    fn unpin(&mut self, i: usize) {
        if let Some(p) = self.pinned.get_mut(i) {
            *p = false;
        }
        if self.dead.get(i).copied().unwrap_or(false)
            && let Some(slot) = self.regs.get_mut(i)
        {
            *slot = None;
        }
    }

    /// Frees the registers step `idx` read last, except those a pending verification holds.
    fn release_step(&mut self, idx: usize) {
        let program = Arc::clone(&self.program);
        for &r in program
            .dead_after
            .get(idx)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(d) = self.dead.get_mut(r) {
                *d = true;
            }
            if !self.pinned.get(r).copied().unwrap_or(false)
                && let Some(slot) = self.regs.get_mut(r)
            {
                *slot = None;
            }
        }
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
                Phase::Remac(next) => self.finish_remac(next, out)?,
                Phase::Output => self.finish_output()?,
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
    fn cheat_additive_index(&self) -> Option<usize> {
        match self.cheat {
            // The z-part of the round's first instruction comes first; r·z is left alone.
            Some(crate::cheat::Deviation::AdditiveAttack { round, element })
                if round == self.mul_rounds =>
            {
                Some(element)
            }
            _ => None,
        }
    }

    #[cfg(feature = "cheat")]
    fn cheat_opening(&self, to: usize, open: &[F], kind: Kind) -> Option<PartWriter> {
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
        let mut wrong = SecretVec::new(open.to_vec());
        wrong.as_mut_slice()[element] += F::one();
        let mut w = PartWriter::new(
            self.header(kind),
            open.len(),
            F::ENCODED_LEN,
            self.cfg.max_chunk_elems,
        );
        w.extend(wrong.as_slice());
        Some(w)
    }
}

/// The ChaCha20 stream of check coefficients α, from the opened coin.
fn coin_stream<F: Field>(
    coin: &F,
    session: &crate::message::SessionId,
    segment: usize,
) -> Result<crate::prss::StreamRng, MpcError> {
    use ring::hkdf;
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"parley/chida-coin/v1").extract(&coin.to_bytes());
    let mut seed = Zeroizing::new([0u8; 32]);
    let seg = u64::try_from(segment).unwrap_or(u64::MAX).to_le_bytes();
    prk.expand(&[&session.0[..], &seg[..]], Len32)
        .and_then(|okm| okm.fill(&mut seed[..]))
        .map_err(|_| MpcError::Misuse("HKDF refused a 32-byte output"))?;
    Ok(crate::prss::StreamRng::from_seed(*seed))
}

/// (p − 3)/4 as little-endian 64-bit limbs; refuses fields with p ≢ 3 (mod 4).
fn sqrt_exponent<F: Field>() -> Result<Vec<u64>, MpcError> {
    // p − 1 is the canonical encoding of −1.
    let bytes = (-F::one()).to_bytes();
    if bytes.first().map(|b| b & 3) != Some(2) {
        return Err(ConfigError::Other(format!(
            "{} is not ≡ 3 (mod 4): random bits by squaring need that",
            F::NAME
        ))
        .into());
    }
    let mut limbs: Vec<u64> = bytes
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect();
    // (p − 1 − 2) / 4: clear bit 1 (set, as p − 1 ≡ 2 mod 4), then shift right by 2.
    if let Some(l) = limbs.first_mut() {
        *l &= !2;
    }
    for i in 0..limbs.len() {
        let next = limbs.get(i + 1).copied().unwrap_or(0);
        limbs[i] = (limbs[i] >> 2) | (next << 62);
    }
    Ok(limbs)
}

/// The canonical integer of a public element as little-endian bytes.
fn int_bytes<F: Field>(c: &F) -> Vec<u8> {
    c.to_bytes()
}

fn bit_of(bytes: &[u8], i: u32) -> bool {
    bytes
        .get((i / 8) as usize)
        .is_some_and(|b| (b >> (i % 8)) & 1 == 1)
}

/// A public function of public values (variable time: the values are public).
fn public_map<F: Field>(c: &[F], f: PublicFn, sqrt_exp: &[u64]) -> Result<Vec<F>, MpcError> {
    Ok(match f {
        PublicFn::LowBits(bits) => c
            .iter()
            .map(|x| {
                let mut b = int_bytes(x);
                let full = (bits / 8) as usize;
                if let Some(byte) = b.get_mut(full) {
                    *byte &= (1u8 << (bits % 8)).wrapping_sub(1);
                }
                for byte in b.iter_mut().skip(full + 1) {
                    *byte = 0;
                }
                F::from_bytes(&b).unwrap_or_default()
            })
            .collect(),
        PublicFn::Bits(bits) => {
            let ints: Vec<Vec<u8>> = c.iter().map(int_bytes).collect();
            let mut out = Vec::with_capacity(c.len() * bits as usize);
            for i in 0..bits {
                out.extend(
                    ints.iter()
                        .map(|b| if bit_of(b, i) { F::one() } else { F::zero() }),
                );
            }
            out
        }
        PublicFn::InvSqrt => {
            let mut out = Vec::with_capacity(c.len());
            for (element, x) in c.iter().enumerate() {
                let y = x.pow_limbs(sqrt_exp);
                // y² · x = x^((p−1)/2): 1 exactly for a nonzero square.
                if y * y * *x != F::one() {
                    return Err(CheckFailure::NotASquare { element }.into());
                }
                out.push(y);
            }
            out
        }
    })
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
