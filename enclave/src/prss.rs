//! Pseudo-random secret sharing (Cramer–Damgård–Ishai, TCC 2005) and its key setup.
//!
//! Owns: the key sets, the sans-IO [`KeySetup`] that agrees them over the host's attested
//! sessions with a hash echo, per-job key derivation, and the non-interactive sharings built
//! from them ([`JobRandomness`]: random degree-t, zero degree-2t, double sharings, and the
//! pairwise streams the multiplication uses for resharing).
//!
//! **Key sets.** One key per set A of n − t parties (C(n, t) keys: 3 at n = 3, 10 at n = 5,
//! 35 at n = 7), known exactly to A's members; plus one key per pair of parties (for n = 3 the
//! pairs *are* the sets, so their keys are shared). Any t parties miss at least one set key,
//! which is what makes the sharings private.
//!
//! **Agreement** ([`KeySetup`], 2 rounds): round 0 (`key-deal`), the lowest-indexed member of
//! each set samples its key and sends it to the other members; round 1 (`key-echo`), every
//! party sends every co-member of each set of ≥ 3 parties SHA-256(label ‖ session ‖ set ‖ key);
//! a mismatch aborts with [`CheckFailure::PrssKeyEcho`], so a dealer cannot hand different
//! members different keys. (A pair has no third member to compare with; an inconsistent pair
//! key only corrupts that pair's values, which the opening checks then catch.)
//!
//! **Per-job keys.** A job never uses a set key directly: each stream's ChaCha20 seed is
//! HKDF-SHA256(salt = label, ikm = set key, info = purpose ‖ job session ‖ parties) (a
//! [`StreamRng`], ChaCha12), so jobs
//! get independent randomness from one setup, and a job's streams are independent by purpose.
//!
//! **Sharings.** For set A with complement T (|T| = t) let f_A be the degree-t polynomial with
//! f_A(0) = 1 and f_A(α_j) = 0 for j ∈ T. Random: party k's share Σ_{A∋k} f_A(α_k)·PRF_A is a
//! degree-t sharing of Σ_A PRF_A. Zero: Σ_{A∋k} Σ_{l=1..t} PRF_{A,l}·α_k^l·f_A(α_k) is a
//! degree-2t sharing of 0. Double: (\[r\]_t, \[r\]_t + \[0\]_2t). Cost: C(n − 1, t) stream draws
//! per random element (2 at n = 3, 6 at n = 5, 20 at n = 7), no communication.

use crate::error::{CheckFailure, MpcError};
use crate::field::Field;
use crate::inbox::{Expect, Inbox, Limits};
use crate::message::{Header, Kind, Message, Outgoing, SessionId, abort_notices, chunked};
use crate::protocol::{Config, Protocol, Status};
use crate::secret::SecretVec;
use crate::shamir::Shamir;
use rand_chacha::{ChaCha12Rng, ChaCha20Rng};
use rand_core::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// The keystream behind every derived stream (PRSS sets, resharing pairs, the check coin):
/// ChaCha with 12 rounds, `rand`'s own CSPRNG choice — the best published attacks reach 7
/// rounds — at 1.6× the speed of ChaCha20 on the multiplication's hot path. Seeds always come
/// from HKDF-SHA256.
pub type StreamRng = ChaCha12Rng;

const ECHO_LABEL: &[u8] = b"parley/prss-key-echo/v1";
const HKDF_SALT: &[u8] = b"parley/prss-job-keys/v1";
/// A key-deal or key-echo entry: set mask then 32 bytes.
const ENTRY: usize = 33;

/// A set of parties as a bit mask (bit i = party i; n ≤ 7).
pub type PartySet = u8;

/// The members of `set`, ascending.
pub fn members(set: PartySet) -> Vec<usize> {
    (0..8).filter(|i| set & (1 << i) != 0).collect()
}

fn subsets(n: usize, size: usize) -> Vec<PartySet> {
    (0u16..(1 << n))
        .filter(|m| m.count_ones() as usize == size)
        .filter_map(|m| u8::try_from(m).ok())
        .collect()
}

/// Number of PRSS key sets of n − t parties, C(n, t): the number of summands in a random
/// sharing (3 at n = 3, 10 at n = 5 with t = 2, 35 at n = 7 with t = 3).
pub fn set_count(n: usize, t: usize) -> usize {
    subsets(n, n - t).len()
}

/// Every key set for (n, t): the (n − t)-sets and the pairs, deduplicated, ascending.
pub fn key_sets(n: usize, t: usize) -> Vec<PartySet> {
    let mut sets = subsets(n, n - t);
    sets.extend(subsets(n, 2));
    sets.sort_unstable();
    sets.dedup();
    sets
}

fn pair(a: usize, b: usize) -> PartySet {
    (1u8 << a) | (1u8 << b)
}

fn lowest(set: PartySet) -> usize {
    set.trailing_zeros() as usize
}

/// A 32-byte key: zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct SetKey(Zeroizing<[u8; 32]>);

impl core::fmt::Debug for SetKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SetKey(redacted)")
    }
}

impl SetKey {
    fn echo_hash(&self, session: &SessionId, set: PartySet) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(ECHO_LABEL);
        h.update(session.0);
        h.update([set]);
        h.update(*self.0);
        h.finalize().into()
    }

    /// A per-job stream seed: HKDF-SHA256 with purpose, job and parties in the info.
    fn derive(
        &self,
        purpose: &[u8],
        job: &SessionId,
        parties: &[u8],
    ) -> Result<StreamRng, MpcError> {
        use ring::hkdf;
        struct Len32;
        impl hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(&self.0[..]);
        let info = [purpose, &job.0[..], parties];
        let mut seed = Zeroizing::new([0u8; 32]);
        prk.expand(&info, Len32)
            .and_then(|okm| okm.fill(&mut seed[..]))
            .map_err(|_| MpcError::Misuse("HKDF refused a 32-byte output"))?;
        Ok(StreamRng::from_seed(*seed))
    }
}

/// One party's keys from a completed [`KeySetup`]: a key for every key set it belongs to.
/// Long-lived (per federation epoch and peer sessions); jobs derive from it.
pub struct KeyMaterial {
    me: usize,
    n: usize,
    t: usize,
    keys: BTreeMap<PartySet, SetKey>,
}

impl core::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("me", &self.me)
            .field("n", &self.n)
            .field("t", &self.t)
            .field("sets", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    pub(crate) fn from_keys(
        me: usize,
        n: usize,
        t: usize,
        keys: BTreeMap<PartySet, SetKey>,
    ) -> Self {
        Self { me, n, t, keys }
    }

    /// Test and benchmark helper: consistent key material for all n parties, sampled in one
    /// place from `rng`. A trusted dealer: never use it for a real federation.
    pub fn trusted_dealer<R: Rng + ?Sized>(n: usize, t: usize, rng: &mut R) -> Vec<KeyMaterial> {
        let mut all: Vec<BTreeMap<PartySet, SetKey>> = vec![BTreeMap::new(); n];
        for set in key_sets(n, t) {
            let mut k = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut k[..]);
            for m in members(set) {
                if let Some(map) = all.get_mut(m) {
                    map.insert(set, SetKey(k.clone()));
                }
            }
        }
        all.into_iter()
            .enumerate()
            .map(|(me, keys)| Self::from_keys(me, n, t, keys))
            .collect()
    }

    /// This party's index.
    pub fn me(&self) -> usize {
        self.me
    }
    /// Number of parties.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Threshold.
    pub fn t(&self) -> usize {
        self.t
    }

    fn key(&self, set: PartySet) -> Result<&SetKey, MpcError> {
        self.keys.get(&set).ok_or(MpcError::Misuse(
            "key material lacks a key set this party belongs to",
        ))
    }
}

/// The sans-IO key agreement (2 rounds: `key-deal`, `key-echo`). Output: [`KeyMaterial`].
pub struct KeySetup {
    cfg: Config,
    rng: ChaCha20Rng,
    inbox: Inbox,
    sets: Vec<PartySet>,
    keys: BTreeMap<PartySet, SetKey>,
    state: SetupState,
    output: Option<KeyMaterial>,
    unsent: Vec<Outgoing>,
    #[cfg(feature = "cheat")]
    cheat: Option<crate::cheat::Deviation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SetupState {
    NotStarted,
    Dealing,
    Echoing,
    Done,
    Aborted(MpcError),
}

const ROUND_DEAL: u32 = 0;
const ROUND_ECHO: u32 = 1;

impl core::fmt::Debug for KeySetup {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeySetup")
            .field("me", &self.cfg.me)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl KeySetup {
    /// Key agreement for party `cfg.me` (`cfg.session` identifies the setup, not a job).
    pub fn new(cfg: Config, rng: ChaCha20Rng) -> Result<Self, MpcError> {
        cfg.validate()?;
        // Validates t against n (the points themselves are unused here).
        Shamir::<crate::field::M61>::new(&cfg.points, cfg.t)?;
        let sets: Vec<PartySet> = key_sets(cfg.n(), cfg.t)
            .into_iter()
            .filter(|&s| s & (1 << cfg.me) != 0)
            .collect();
        let limits = Limits {
            chunk_elems: cfg.max_chunk_elems,
            max_ahead: cfg.max_ahead_rounds,
            max_buffered: cfg.max_buffered_bytes,
        };
        let mut inbox = Inbox::new(cfg.me, cfg.n(), cfg.session, limits);
        let expects: Vec<Expect> = (0..cfg.me)
            .map(|d| Expect {
                kind: Kind::KeyDeal,
                from: d,
                elems: sets.iter().filter(|&&s| lowest(s) == d).count(),
                elem_len: ENTRY,
            })
            .collect();
        inbox.begin_round(ROUND_DEAL, &expects)?;
        Ok(Self {
            cfg,
            rng,
            inbox,
            sets,
            keys: BTreeMap::new(),
            state: SetupState::NotStarted,
            output: None,
            unsent: Vec::new(),
            #[cfg(feature = "cheat")]
            cheat: None,
        })
    }

    /// Makes this party deviate (simulation only).
    #[cfg(feature = "cheat")]
    pub fn set_cheat(&mut self, deviation: crate::cheat::Deviation) {
        self.cheat = Some(deviation);
    }

    /// Sets shared by this party and `peer` that need an echo (≥ 3 members), ascending.
    fn echo_sets(&self, peer: usize) -> Vec<PartySet> {
        self.sets
            .iter()
            .copied()
            .filter(|&s| s & (1 << peer) != 0 && s.count_ones() >= 3)
            .collect()
    }

    fn send(&self, kind: Kind, round: u32, to: usize, bytes: &[u8], out: &mut Vec<Outgoing>) {
        let header = Header {
            kind,
            session: self.cfg.session,
            round,
        };
        chunked(header, to, bytes, ENTRY, self.cfg.max_chunk_elems, out);
    }

    fn progress(&mut self, out: &mut Vec<Outgoing>) -> Result<(), MpcError> {
        loop {
            if !self.inbox.complete() {
                return Ok(());
            }
            match self.state {
                SetupState::Dealing => {
                    for d in 0..self.cfg.me {
                        let bytes = self.inbox.take_bytes(Kind::KeyDeal, d)?;
                        let expected: Vec<PartySet> = self
                            .sets
                            .iter()
                            .copied()
                            .filter(|&s| lowest(s) == d)
                            .collect();
                        for (entry, &set) in bytes.chunks_exact(ENTRY).zip(&expected) {
                            let (mask, key) = entry.split_at(1);
                            if mask.first() != Some(&set) {
                                return Err(MpcError::KeySetup(format!(
                                    "party {d} dealt a key for set {:?} where set {:?} was expected",
                                    mask.first().map(|&m| members(m)),
                                    members(set)
                                )));
                            }
                            let mut k = Zeroizing::new([0u8; 32]);
                            k.copy_from_slice(key);
                            self.keys.insert(set, SetKey(k));
                        }
                    }
                    let n = self.cfg.n();
                    let mut expects = Vec::new();
                    for peer in (0..n).filter(|&p| p != self.cfg.me) {
                        let sets = self.echo_sets(peer);
                        expects.push(Expect {
                            kind: Kind::KeyEcho,
                            from: peer,
                            elems: sets.len(),
                            elem_len: ENTRY,
                        });
                        let mut bytes = Vec::with_capacity(sets.len() * ENTRY);
                        for set in sets {
                            bytes.push(set);
                            bytes.extend_from_slice(
                                &self.key(set)?.echo_hash(&self.cfg.session, set),
                            );
                        }
                        self.send(Kind::KeyEcho, ROUND_ECHO, peer, &bytes, out);
                    }
                    self.inbox.begin_round(ROUND_ECHO, &expects)?;
                    self.state = SetupState::Echoing;
                }
                SetupState::Echoing => {
                    for peer in (0..self.cfg.n()).filter(|&p| p != self.cfg.me) {
                        let bytes = self.inbox.take_bytes(Kind::KeyEcho, peer)?;
                        for (entry, set) in bytes.chunks_exact(ENTRY).zip(self.echo_sets(peer)) {
                            let (mask, hash) = entry.split_at(1);
                            let mine = self.key(set)?.echo_hash(&self.cfg.session, set);
                            let same_set = mask.first() == Some(&set);
                            if !same_set || !bool::from(mine[..].ct_eq(hash)) {
                                return Err(CheckFailure::PrssKeyEcho {
                                    set: members(set),
                                    from: peer,
                                }
                                .into());
                            }
                        }
                    }
                    let keys = core::mem::take(&mut self.keys);
                    self.output = Some(KeyMaterial::from_keys(
                        self.cfg.me,
                        self.cfg.n(),
                        self.cfg.t,
                        keys,
                    ));
                    self.state = SetupState::Done;
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
    }

    fn key(&self, set: PartySet) -> Result<&SetKey, MpcError> {
        self.keys
            .get(&set)
            .ok_or(MpcError::Misuse("key setup lost a key"))
    }

    fn fail(&mut self, e: MpcError, mut out: Vec<Outgoing>) -> MpcError {
        self.state = SetupState::Aborted(e.clone());
        out.extend(abort_notices(
            self.cfg.session,
            self.cfg.me,
            self.cfg.n(),
            &e,
        ));
        self.unsent = out;
        e
    }
}

impl Protocol for KeySetup {
    type Output = KeyMaterial;

    fn start(&mut self) -> Result<Vec<Outgoing>, MpcError> {
        if self.state != SetupState::NotStarted {
            return Err(MpcError::Misuse("start called twice"));
        }
        let me = self.cfg.me;
        let mut out = Vec::new();
        let mut per_peer: Vec<Zeroizing<Vec<u8>>> = vec![Zeroizing::new(Vec::new()); self.cfg.n()];
        for &set in self.sets.iter().filter(|&&s| lowest(s) == me) {
            let mut k = Zeroizing::new([0u8; 32]);
            self.rng.fill_bytes(&mut k[..]);
            for m in members(set).into_iter().filter(|&m| m != me) {
                if let Some(buf) = per_peer.get_mut(m) {
                    buf.push(set);
                    #[cfg(feature = "cheat")]
                    if let Some(crate::cheat::Deviation::InconsistentPrssKey { victim }) =
                        self.cheat
                        && victim == m
                    {
                        // Deal a different key to the victim than to the other members.
                        let mut other = *k;
                        other[0] ^= 1;
                        buf.extend_from_slice(&other);
                        other.zeroize();
                        continue;
                    }
                    buf.extend_from_slice(&k[..]);
                }
            }
            self.keys.insert(set, SetKey(k));
        }
        for (to, bytes) in per_peer.iter().enumerate() {
            if !bytes.is_empty() {
                self.send(Kind::KeyDeal, ROUND_DEAL, to, bytes, &mut out);
            }
        }
        self.state = SetupState::Dealing;
        match self.progress(&mut out) {
            Ok(()) => Ok(out),
            Err(e) => Err(self.fail(e, out)),
        }
    }

    fn handle(&mut self, from: usize, msg: Message) -> Result<Vec<Outgoing>, MpcError> {
        if let SetupState::Aborted(e) = &self.state {
            return Err(MpcError::Aborted(Box::new(e.clone())));
        }
        let mut out = Vec::new();
        match self
            .inbox
            .accept(from, msg)
            .and_then(|()| self.progress(&mut out))
        {
            Ok(()) => Ok(out),
            Err(e) if self.state == SetupState::Done => Err(e),
            Err(e) => Err(self.fail(e, out)),
        }
    }

    fn status(&self) -> Status {
        match self.state {
            SetupState::NotStarted => Status::NotStarted,
            SetupState::Dealing | SetupState::Echoing => Status::Running {
                round: self.inbox.round(),
            },
            SetupState::Done => Status::Done,
            SetupState::Aborted(_) => Status::Aborted,
        }
    }

    fn output(&self) -> Option<&KeyMaterial> {
        self.output.as_ref()
    }

    fn abort_reason(&self) -> Option<&MpcError> {
        match &self.state {
            SetupState::Aborted(e) => Some(e),
            _ => None,
        }
    }

    fn take_unsent(&mut self) -> Vec<Outgoing> {
        core::mem::take(&mut self.unsent)
    }
}

impl KeySetup {
    /// Takes the key material out once done (it is not `Clone`).
    pub fn into_keys(self) -> Option<KeyMaterial> {
        self.output
    }
}

/// One set's PRSS stream and this party's coefficients for it.
struct SetStream<F: Field> {
    rng: StreamRng,
    /// f_A(α_me).
    coeff: F,
    /// α_me^l · f_A(α_me) for l = 1..=t (zero sharings).
    zero_coeffs: Vec<F>,
}

/// A job's non-interactive randomness for this party: PRSS streams per key set and the
/// pairwise resharing streams. Every party must draw in the same order (the program order).
pub struct JobRandomness<F: Field> {
    me: usize,
    n: usize,
    t: usize,
    sets: Vec<SetStream<F>>,
    /// Stream for subshares this party derives *for* peer j (j's copy is `pair_in` at j).
    pair_out: Vec<Option<StreamRng>>,
    /// Stream for subshares peer i derives for this party.
    pair_in: Vec<Option<StreamRng>>,
    scratch: Vec<F>,
}

impl<F: Field> core::fmt::Debug for JobRandomness<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JobRandomness")
            .field("me", &self.me)
            .field("sets", &self.sets.len())
            .finish_non_exhaustive()
    }
}

impl<F: Field> JobRandomness<F> {
    /// Derives the job's streams from `keys` for job `session` at the federation's points.
    pub fn new(
        keys: &KeyMaterial,
        shamir: &Shamir<F>,
        session: &SessionId,
    ) -> Result<Self, MpcError> {
        let (me, n, t) = (keys.me, keys.n, keys.t);
        if shamir.n() != n || shamir.t() != t {
            return Err(MpcError::Config(crate::error::ConfigError::Other(format!(
                "key material is for n = {n}, t = {t}; the job has n = {}, t = {}",
                shamir.n(),
                shamir.t()
            ))));
        }
        let x_me = shamir.point(me);
        let mut sets = Vec::new();
        for set in subsets(n, n - t).into_iter().filter(|s| s & (1 << me) != 0) {
            // f_A(x) = Π_{j ∉ A} (x − α_j) / (0 − α_j).
            let mut num = F::one();
            let mut den = F::one();
            for j in (0..n).filter(|j| set & (1 << j) == 0) {
                num *= x_me - shamir.point(j);
                den *= -shamir.point(j);
            }
            let coeff = num
                * den
                    .inverse()
                    .ok_or(MpcError::Misuse("zero evaluation point"))?;
            let mut zero_coeffs = Vec::with_capacity(t);
            let mut pow = F::one();
            for _ in 0..t {
                pow *= x_me;
                zero_coeffs.push(pow * coeff);
            }
            let rng = keys.key(set)?.derive(b"prss", session, &[set])?;
            sets.push(SetStream {
                rng,
                coeff,
                zero_coeffs,
            });
        }
        let mut pair_out = Vec::with_capacity(n);
        let mut pair_in = Vec::with_capacity(n);
        for j in 0..n {
            if j == me {
                pair_out.push(None);
                pair_in.push(None);
                continue;
            }
            let key = keys.key(pair(me, j))?;
            let (a, b) = (
                u8::try_from(me).unwrap_or(u8::MAX),
                u8::try_from(j).unwrap_or(u8::MAX),
            );
            pair_out.push(Some(key.derive(b"reshare", session, &[a, b])?));
            pair_in.push(Some(key.derive(b"reshare", session, &[b, a])?));
        }
        Ok(Self {
            me,
            n,
            t,
            sets,
            pair_out,
            pair_in,
            scratch: Vec::new(),
        })
    }

    /// This party's shares of `m` fresh random values (degree t).
    pub fn random(&mut self, m: usize) -> SecretVec<F> {
        let mut out = SecretVec::zeros(m);
        self.scratch.resize(m, F::zero());
        for s in &mut self.sets {
            F::fill_random(&mut s.rng, &mut self.scratch);
            F::add_scaled_slice(out.as_mut_slice(), s.coeff, &self.scratch);
        }
        self.scratch.zeroize();
        out
    }

    /// This party's shares of `m` random integers: each is Σ_A r_A over the key sets, with
    /// r_A uniform in `[0, 2^bits)` (so the sum is below C(n, t)·2^bits). Any t parties miss
    /// at least one r_A, which masks statistically. `bits` must be below [`Field::BITS`].
    pub fn random_int(&mut self, m: usize, bits: u32) -> SecretVec<F> {
        let mut out = SecretVec::zeros(m);
        let nbytes = (bits as usize).div_ceil(8);
        let top_mask = if bits.is_multiple_of(8) {
            0xff
        } else {
            (1u8 << (bits % 8)) - 1
        };
        let mut buf = Zeroizing::new(vec![0u8; F::ENCODED_LEN]);
        for s in &mut self.sets {
            for o in out.as_mut_slice() {
                s.rng.fill_bytes(&mut buf[..nbytes]);
                if let Some(b) = buf.get_mut(nbytes.wrapping_sub(1)) {
                    *b &= top_mask;
                }
                // Below 2^bits ≤ 2^BITS < p: always canonical.
                let v = F::from_bytes(&buf).unwrap_or_default();
                *o += s.coeff * v;
            }
        }
        out
    }

    /// This party's shares of `m` zeros (degree 2t).
    pub fn zero(&mut self, m: usize) -> SecretVec<F> {
        let mut out = SecretVec::zeros(m);
        self.scratch.resize(m, F::zero());
        for s in &mut self.sets {
            for &c in &s.zero_coeffs {
                F::fill_random(&mut s.rng, &mut self.scratch);
                F::add_scaled_slice(out.as_mut_slice(), c, &self.scratch);
            }
        }
        self.scratch.zeroize();
        out
    }

    /// Shares of `m` random values as degree-t and degree-2t sharings of the same values.
    pub fn double(&mut self, m: usize) -> (SecretVec<F>, SecretVec<F>) {
        let r = self.random(m);
        let mut r2 = self.zero(m);
        F::add_assign_slice(r2.as_mut_slice(), r.as_slice());
        (r, r2)
    }

    /// Fills `out` with the next subshares this party derives for peer `j` (resharing).
    pub(crate) fn fill_pair_out(&mut self, j: usize, out: &mut [F]) {
        if let Some(Some(rng)) = self.pair_out.get_mut(j) {
            F::fill_random(rng, out);
        }
    }

    /// Fills `out` with the next subshares peer `i` derives for this party.
    pub(crate) fn fill_pair_in(&mut self, i: usize, out: &mut [F]) {
        if let Some(Some(rng)) = self.pair_in.get_mut(i) {
            F::fill_random(rng, out);
        }
    }

    /// Number of parties.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Threshold.
    pub fn t(&self) -> usize {
        self.t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::M127;

    fn setup(n: usize, t: usize) -> (Shamir<M127>, Vec<JobRandomness<M127>>) {
        let points: Vec<u64> = (0..n as u64).map(|i| 2 * i + 1).collect();
        let shamir = Shamir::new(&points, t).expect("valid");
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let keys = KeyMaterial::trusted_dealer(n, t, &mut rng);
        let job = SessionId([9; 32]);
        let jr = keys
            .iter()
            .map(|k| JobRandomness::new(k, &shamir, &job).expect("derive"))
            .collect();
        (shamir, jr)
    }

    #[test]
    fn key_set_counts_match_design() {
        assert_eq!(subsets(3, 2).len(), 3);
        assert_eq!(subsets(5, 3).len(), 10);
        assert_eq!(subsets(7, 4).len(), 35);
        assert_eq!(key_sets(3, 1).len(), 3);
        assert_eq!(key_sets(5, 2).len(), 10 + 10);
    }

    #[test]
    fn random_zero_and_double_sharings_are_consistent() {
        for (n, t) in [(3, 1), (5, 2), (5, 1), (7, 3)] {
            let (shamir, mut jr) = setup(n, t);
            let r: Vec<SecretVec<M127>> = jr.iter_mut().map(|j| j.random(4)).collect();
            let views: Vec<&[M127]> = r.iter().map(|v| v.as_slice()).collect();
            let value = shamir.open_checked(&views, "random").expect("degree t");
            assert!(value.iter().all(|v| *v != M127::zero()));

            // Zero sharings have degree 2t: interpolate over 2t + 1 points.
            let z: Vec<SecretVec<M127>> = jr.iter_mut().map(|j| j.zero(3)).collect();
            let wide = Shamir::<M127>::new(shamir.points(), 2 * t).ok();
            let xs: Vec<M127> = shamir.field_points()[..=2 * t].to_vec();
            let lag = crate::shamir::lagrange_coefficients(&xs, M127::zero()).expect("distinct");
            for e in 0..3 {
                let ys: Vec<M127> = z[..=2 * t].iter().map(|v| v.as_slice()[e]).collect();
                assert_eq!(M127::dot(&lag, &ys), M127::zero());
            }
            drop(wide);

            let d: Vec<(SecretVec<M127>, SecretVec<M127>)> =
                jr.iter_mut().map(|j| j.double(2)).collect();
            let views: Vec<&[M127]> = d.iter().map(|(a, _)| a.as_slice()).collect();
            let v = shamir.open_checked(&views, "double").expect("degree t");
            for (e, want) in v.iter().enumerate() {
                let ys: Vec<M127> = d[..=2 * t].iter().map(|(_, b)| b.as_slice()[e]).collect();
                assert_eq!(M127::dot(&lag, &ys), *want);
            }
        }
    }

    #[test]
    fn pair_streams_agree_and_differ_by_direction() {
        let (_, mut jr) = setup(3, 1);
        let mut a = [M127::zero(); 3];
        let mut b = [M127::zero(); 3];
        let mut c = [M127::zero(); 3];
        jr[0].fill_pair_out(1, &mut a);
        jr[1].fill_pair_in(0, &mut b);
        jr[1].fill_pair_out(0, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn jobs_get_independent_streams() {
        let points = [1, 2, 3];
        let shamir = Shamir::<M127>::new(&points, 1).expect("valid");
        let keys = KeyMaterial::trusted_dealer(3, 1, &mut ChaCha20Rng::seed_from_u64(5));
        let mut a = JobRandomness::new(&keys[0], &shamir, &SessionId([1; 32])).expect("derive");
        let mut b = JobRandomness::new(&keys[0], &shamir, &SessionId([2; 32])).expect("derive");
        assert_ne!(a.random(2).as_slice(), b.random(2).as_slice());
    }
}
