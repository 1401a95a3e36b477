//! Straight-line vector programs: what the MPC [`crate::engine::Engine`] executes.
//!
//! Owns the instruction set ([`Op`]), the builder that type-checks lengths and
//! shared/public kinds, and the schedule: consecutive communication instructions that do not
//! depend on each other are batched into one round, and local instructions run as soon as
//! their operands exist. Every register is written once (register i is instruction i's result).
//!
//! Communication per instruction: `mul`/`dot` of two shared registers is one multiplication
//! (degree reduction) round, `open` one all-to-all opening round; everything else is local.
//! Inputs are all shared in the first round; outputs are opened at the end, after the
//! malicious-security verification, to their [`Recipients`] only.
//!
//! **Checks and checkpoints.** `assert_zero` names a check: the engine verifies that the
//! register is zero in the verification that ends its segment, after the multiplication
//! check, and aborts with [`crate::CheckFailure::Assertion`] naming the check otherwise.
//! `checkpoint` ends a segment: everything so far is verified (multiplications, input
//! consistency, assertions) before the program goes on. Input range checks sit before a
//! checkpoint so that no value derived from an unchecked input is ever opened, masked or not
//! (a huge out-of-range input could make a statistical mask too narrow).
//!
//! The higher-level protocols (random bits, comparison, truncation, fixed point, range
//! checks) are compositions of these instructions (the `gadgets` module).

use crate::error::MpcError;
use crate::field::Field;

/// A register: the result of one instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reg(pub(crate) usize);

impl Reg {
    /// The register's index (= the index of the instruction that writes it).
    pub fn index(self) -> usize {
        self.0
    }
}

/// Who learns an output (DESIGN §1: a node learns an output only when the job names it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Recipients {
    /// Every party.
    All,
    /// These parties only (indices into the manifest's party list). The others never
    /// receive the output's opening shares.
    Parties(Vec<usize>),
    /// No party: each party keeps its own share of the output for delivery to an outside
    /// recipient (an analyst's key), who reconstructs it with the degree-t check
    /// ([`crate::shamir::Shamir::reconstruct`]).
    External,
}

impl Recipients {
    /// Whether party `p` receives the opened value.
    pub fn includes(&self, p: usize) -> bool {
        match self {
            Recipients::All => true,
            Recipients::Parties(ps) => ps.contains(&p),
            Recipients::External => false,
        }
    }
}

/// A deterministic function of public values that every party computes locally. Inputs are
/// read as their canonical integers in `[0, p)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PublicFn {
    /// `c mod 2^bits`.
    LowBits(u32),
    /// The low `bits` bits of each element as 0/1 elements, bit-major: bit i of element j
    /// lands at index `i·len + j`.
    Bits(u32),
    /// `c^((p−3)/4)` for p ≡ 3 (mod 4): for a nonzero square c, the inverse of the square
    /// root of c that is itself a square. A zero or a non-square aborts with
    /// [`crate::CheckFailure::NotASquare`].
    InvSqrt,
}

/// One instruction. Operands are registers written by earlier instructions.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Op<F: Field> {
    /// `party`'s private input vector of `len` elements (shared).
    Input {
        /// The owner.
        party: usize,
        /// Length.
        len: usize,
    },
    /// `len` fresh random values nobody knows (shared; PRSS, no communication).
    Random {
        /// Length.
        len: usize,
    },
    /// `len` fresh random integers nobody knows, each the sum over the C(n, t) PRSS key
    /// sets of a uniform integer in `[0, 2^bits)`, so below C(n, t)·2^bits (shared; no
    /// communication). At least one summand is unknown to any t parties: a statistical mask.
    RandomInt {
        /// Length.
        len: usize,
        /// Bits per summand.
        bits: u32,
    },
    /// A public constant vector.
    Constant(Vec<F>),
    /// `a + b`.
    Add(Reg, Reg),
    /// `a − b`.
    Sub(Reg, Reg),
    /// `−a`.
    Neg(Reg),
    /// Element-wise `a · b`; a public operand of length 1 broadcasts.
    Mul(Reg, Reg),
    /// `c · a` for a public scalar.
    Scale(Reg, F),
    /// Inner product `Σ a_i · b_i` (length 1). Two shared operands cost one multiplication.
    Dot(Reg, Reg),
    /// `Σ a_i` (length 1).
    Sum(Reg),
    /// `a[start .. start + len]`.
    Slice {
        /// Source.
        a: Reg,
        /// First element.
        start: usize,
        /// Length.
        len: usize,
    },
    /// Concatenation of registers of the same kind.
    Concat(Vec<Reg>),
    /// Opens a shared register to all parties (checked, masked by the program's design).
    Open(Reg),
    /// A local function of a public register.
    PublicMap {
        /// The public operand.
        a: Reg,
        /// The function.
        f: PublicFn,
    },
    /// Asserts that every element of a shared register is zero; verified at the end of the
    /// segment. `check` indexes [`Program::checks`].
    AssertZero {
        /// The register.
        a: Reg,
        /// The named check.
        check: usize,
    },
    /// Verifies everything so far before going on (see the module docs).
    Checkpoint,
    /// Marks a register as a job output, opened to `to` after verification.
    Output {
        /// The register.
        a: Reg,
        /// Who learns it.
        to: Recipients,
    },
}

impl<F: Field> Op<F> {
    /// The registers this instruction reads.
    pub(crate) fn reads(&self) -> Vec<Reg> {
        match self {
            Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) | Op::Dot(a, b) => vec![*a, *b],
            Op::Neg(a)
            | Op::Scale(a, _)
            | Op::Sum(a)
            | Op::Open(a)
            | Op::Slice { a, .. }
            | Op::PublicMap { a, .. }
            | Op::AssertZero { a, .. }
            | Op::Output { a, .. } => vec![*a],
            Op::Concat(parts) => parts.clone(),
            Op::Input { .. }
            | Op::Random { .. }
            | Op::RandomInt { .. }
            | Op::Constant(_)
            | Op::Checkpoint => vec![],
        }
    }

    /// Whether the register is created in the input phase (inputs and PRSS values).
    pub(crate) fn is_initial(&self) -> bool {
        matches!(
            self,
            Op::Input { .. } | Op::Random { .. } | Op::RandomInt { .. }
        )
    }
}

/// Length and kind of a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegInfo {
    /// Number of elements.
    pub len: usize,
    /// Secret-shared (`true`) or public.
    pub shared: bool,
}

/// A unit of the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Run instruction `i` locally.
    Local(usize),
    /// One communication round for these instructions (multiplications and openings).
    Round(Vec<usize>),
    /// Verify the segment with this index, then go on with the next one.
    Checkpoint(usize),
}

/// What the verification at the end of a segment covers beyond the multiplications.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Segment {
    /// `(register, check)` pairs asserted zero in this segment.
    pub asserts: Vec<(Reg, usize)>,
    /// Registers of earlier segments that need a MAC'd copy under this segment's key
    /// (computed in one multiplication round when the segment starts).
    pub remac: Vec<usize>,
}

/// Counts that fix a program's cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramStats {
    /// Multiplications (element-wise products and inner products) between shared values.
    pub multiplications: usize,
    /// Communication rounds of the program body (excluding input, verification and output).
    pub rounds: usize,
    /// Elements opened by `open` instructions.
    pub opened: usize,
    /// Output elements.
    pub outputs: usize,
    /// Checkpoints (each adds a verification: 3 rounds, plus 1 if values need new MACs).
    pub checkpoints: usize,
    /// Elements asserted zero.
    pub asserted: usize,
}

/// A checked, scheduled program.
#[derive(Clone, Debug)]
pub struct Program<F: Field> {
    pub(crate) n: usize,
    pub(crate) threshold: Option<usize>,
    pub(crate) ops: Vec<Op<F>>,
    pub(crate) info: Vec<RegInfo>,
    pub(crate) steps: Vec<Step>,
    pub(crate) outputs: Vec<(Reg, Recipients)>,
    pub(crate) checks: Vec<String>,
    pub(crate) segments: Vec<Segment>,
    pub(crate) stats: ProgramStats,
    /// Malicious mode: whether a register created in the input phase needs its MAC'd copy
    /// r·x (products always carry one).
    pub(crate) needs_mac: Vec<bool>,
    /// For each shared×shared product: whether the left operand is the MAC'd factor
    /// (\[r·z\] = \[r·a\]·\[b\]); otherwise the right one is (\[r·z\] = \[a\]·\[r·b\]).
    pub(crate) mac_left: Vec<bool>,
    /// Registers whose last reader is step i (outputs and assertions count as read at the
    /// end of their segment); the engine frees them then.
    pub(crate) dead_after: Vec<Vec<usize>>,
}

impl<F: Field> Program<F> {
    /// Number of parties the program is written for.
    pub fn parties(&self) -> usize {
        self.n
    }
    /// The threshold the program's statistical masks were sized for, if it depends on one
    /// (see [`ProgramBuilder::for_threshold`]); the engine refuses any other.
    pub fn threshold(&self) -> Option<usize> {
        self.threshold
    }
    /// The instructions.
    pub fn ops(&self) -> &[Op<F>] {
        &self.ops
    }
    /// Length and kind of every register.
    pub fn info(&self, r: Reg) -> Option<RegInfo> {
        self.info.get(r.0).copied()
    }
    /// Cost counts.
    pub fn stats(&self) -> ProgramStats {
        self.stats
    }
    /// The output registers, in order.
    pub fn outputs(&self) -> Vec<Reg> {
        self.outputs.iter().map(|(r, _)| *r).collect()
    }
    /// Who learns each output, in order.
    pub fn output_recipients(&self) -> Vec<&Recipients> {
        self.outputs.iter().map(|(_, to)| to).collect()
    }
    /// The names of the checks `assert_zero` instructions refer to.
    pub fn checks(&self) -> &[String] {
        &self.checks
    }
    /// Lengths of `party`'s inputs, in program order.
    pub fn input_lens(&self, party: usize) -> Vec<usize> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                Op::Input { party: p, len } if *p == party => Some(*len),
                _ => None,
            })
            .collect()
    }
}

/// Builds a [`Program`]; the first error is reported by [`ProgramBuilder::build`].
#[derive(Debug)]
pub struct ProgramBuilder<F: Field> {
    n: usize,
    threshold: Option<usize>,
    ops: Vec<Op<F>>,
    info: Vec<RegInfo>,
    checks: Vec<String>,
    error: Option<String>,
}

impl<F: Field> ProgramBuilder<F> {
    /// A program for `n` parties.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            threshold: None,
            ops: Vec::new(),
            info: Vec::new(),
            checks: Vec::new(),
            error: None,
        }
    }

    /// Records the threshold the program's masks were sized for: random integers are a sum
    /// over C(n, t) key sets, so their bound depends on t.
    pub fn for_threshold(mut self, t: usize) -> Self {
        self.threshold = Some(t);
        self
    }

    /// Number of parties.
    pub fn parties(&self) -> usize {
        self.n
    }

    /// Length and kind of a register built so far.
    pub fn info(&self, r: Reg) -> Option<RegInfo> {
        self.info.get(r.0).copied()
    }

    /// Records an error (the first one wins); [`ProgramBuilder::build`] reports it.
    pub fn fail(&mut self, msg: String) {
        if self.error.is_none() {
            self.error = Some(msg);
        }
    }

    fn get(&mut self, r: Reg) -> RegInfo {
        match self.info.get(r.0) {
            Some(i) => *i,
            None => {
                self.fail(format!("register r{} is not defined yet", r.0));
                RegInfo {
                    len: 0,
                    shared: false,
                }
            }
        }
    }

    fn push(&mut self, op: Op<F>, info: RegInfo) -> Reg {
        self.ops.push(op);
        self.info.push(info);
        Reg(self.ops.len() - 1)
    }

    fn same_len(&mut self, what: &str, a: Reg, b: Reg) -> (RegInfo, RegInfo) {
        let (ia, ib) = (self.get(a), self.get(b));
        if ia.len != ib.len {
            self.fail(format!(
                "{what} of r{} (length {}) and r{} (length {}): lengths differ",
                a.0, ia.len, b.0, ib.len
            ));
        }
        (ia, ib)
    }

    /// `party`'s private input of `len` elements.
    pub fn input(&mut self, party: usize, len: usize) -> Reg {
        if party >= self.n {
            self.fail(format!(
                "input from party {party}, but the program has {} parties",
                self.n
            ));
        }
        self.push(Op::Input { party, len }, RegInfo { len, shared: true })
    }
    /// `len` shared random values.
    pub fn random(&mut self, len: usize) -> Reg {
        self.push(Op::Random { len }, RegInfo { len, shared: true })
    }
    /// `len` shared random integers below C(n, t)·2^bits (see [`Op::RandomInt`]).
    pub fn random_int(&mut self, len: usize, bits: u32) -> Reg {
        if bits == 0 || bits >= F::BITS {
            self.fail(format!(
                "random integers of {bits} bits in {} (at most {} bits)",
                F::NAME,
                F::BITS - 1
            ));
        }
        self.push(Op::RandomInt { len, bits }, RegInfo { len, shared: true })
    }
    /// A public constant.
    pub fn constant(&mut self, values: Vec<F>) -> Reg {
        let len = values.len();
        self.push(Op::Constant(values), RegInfo { len, shared: false })
    }
    /// `a + b`.
    pub fn add(&mut self, a: Reg, b: Reg) -> Reg {
        let (ia, ib) = self.same_len("add", a, b);
        self.push(
            Op::Add(a, b),
            RegInfo {
                len: ia.len,
                shared: ia.shared || ib.shared,
            },
        )
    }
    /// `a − b`.
    pub fn sub(&mut self, a: Reg, b: Reg) -> Reg {
        let (ia, ib) = self.same_len("sub", a, b);
        self.push(
            Op::Sub(a, b),
            RegInfo {
                len: ia.len,
                shared: ia.shared || ib.shared,
            },
        )
    }
    /// `−a`.
    pub fn neg(&mut self, a: Reg) -> Reg {
        let ia = self.get(a);
        self.push(Op::Neg(a), ia)
    }
    /// Element-wise product; a public operand of length 1 broadcasts.
    pub fn mul(&mut self, a: Reg, b: Reg) -> Reg {
        let (ia, ib) = (self.get(a), self.get(b));
        let len = if ia.len == ib.len || (!ib.shared && ib.len == 1) {
            ia.len
        } else if !ia.shared && ia.len == 1 {
            ib.len
        } else {
            self.fail(format!(
                "mul of r{} (length {}) and r{} (length {}): lengths differ",
                a.0, ia.len, b.0, ib.len
            ));
            ia.len
        };
        self.push(
            Op::Mul(a, b),
            RegInfo {
                len,
                shared: ia.shared || ib.shared,
            },
        )
    }
    /// `c · a`.
    pub fn scale(&mut self, a: Reg, c: F) -> Reg {
        let ia = self.get(a);
        self.push(Op::Scale(a, c), ia)
    }
    /// Inner product (length 1).
    pub fn dot(&mut self, a: Reg, b: Reg) -> Reg {
        let (ia, ib) = self.same_len("dot", a, b);
        self.push(
            Op::Dot(a, b),
            RegInfo {
                len: 1,
                shared: ia.shared || ib.shared,
            },
        )
    }
    /// Sum of elements (length 1).
    pub fn sum(&mut self, a: Reg) -> Reg {
        let ia = self.get(a);
        self.push(
            Op::Sum(a),
            RegInfo {
                len: 1,
                shared: ia.shared,
            },
        )
    }
    /// `a[start .. start + len]`.
    pub fn slice(&mut self, a: Reg, start: usize, len: usize) -> Reg {
        let ia = self.get(a);
        if start.checked_add(len).is_none_or(|end| end > ia.len) {
            self.fail(format!(
                "slice {start}..{start}+{len} of r{} (length {})",
                a.0, ia.len
            ));
        }
        self.push(
            Op::Slice { a, start, len },
            RegInfo {
                len,
                shared: ia.shared,
            },
        )
    }
    /// Concatenation (all shared or all public).
    pub fn concat(&mut self, parts: &[Reg]) -> Reg {
        let infos: Vec<RegInfo> = parts.iter().map(|&r| self.get(r)).collect();
        let shared = infos.first().is_some_and(|i| i.shared);
        if infos.iter().any(|i| i.shared != shared) {
            self.fail("concat of shared and public registers".into());
        }
        let len = infos.iter().map(|i| i.len).sum();
        self.push(Op::Concat(parts.to_vec()), RegInfo { len, shared })
    }
    /// Opens a shared register to all parties. Only open values masked so that they reveal
    /// nothing beyond what the job releases.
    pub fn open(&mut self, a: Reg) -> Reg {
        let ia = self.get(a);
        if !ia.shared {
            self.fail(format!("open of public register r{}", a.0));
        }
        self.push(
            Op::Open(a),
            RegInfo {
                len: ia.len,
                shared: false,
            },
        )
    }
    /// A local function of a public register.
    pub fn public_map(&mut self, a: Reg, f: PublicFn) -> Reg {
        let ia = self.get(a);
        if ia.shared {
            self.fail(format!("public function {f:?} of shared register r{}", a.0));
        }
        let len = match f {
            PublicFn::LowBits(bits) | PublicFn::Bits(bits) if bits == 0 || bits > F::BITS => {
                self.fail(format!(
                    "public function {f:?}: {bits} bits in {} (1 to {})",
                    F::NAME,
                    F::BITS
                ));
                ia.len
            }
            PublicFn::Bits(bits) => match ia.len.checked_mul(bits as usize) {
                Some(l) => l,
                None => {
                    self.fail(format!("public function {f:?} of r{}: too long", a.0));
                    0
                }
            },
            PublicFn::LowBits(_) | PublicFn::InvSqrt => ia.len,
        };
        self.push(Op::PublicMap { a, f }, RegInfo { len, shared: false })
    }
    /// Asserts that the shared register `a` is zero; a failure at verification aborts the job
    /// with the check named `check`.
    pub fn assert_zero(&mut self, a: Reg, check: &str) {
        let ia = self.get(a);
        if !ia.shared {
            self.fail(format!(
                "assertion {check:?} on public register r{}: check public values directly",
                a.0
            ));
        }
        let idx = match self.checks.iter().position(|c| c == check) {
            Some(i) => i,
            None => {
                self.checks.push(check.to_owned());
                self.checks.len() - 1
            }
        };
        self.push(Op::AssertZero { a, check: idx }, ia);
    }
    /// Ends a segment: everything so far is verified before the program goes on.
    pub fn checkpoint(&mut self) {
        self.push(
            Op::Checkpoint,
            RegInfo {
                len: 0,
                shared: false,
            },
        );
    }
    /// Marks `a` as an output opened to every party after verification.
    pub fn output(&mut self, a: Reg) {
        self.output_to(a, Recipients::All);
    }
    /// Marks `a` as an output opened to `to` only, after verification.
    pub fn output_to(&mut self, a: Reg, to: Recipients) {
        let ia = self.get(a);
        if let Recipients::Parties(ps) = &to {
            if ps.is_empty() {
                self.fail(format!("output r{} to an empty set of parties", a.0));
            }
            if let Some(p) = ps.iter().find(|&&p| p >= self.n) {
                self.fail(format!(
                    "output r{} to party {p}, but the program has {} parties",
                    a.0, self.n
                ));
            }
        }
        let to = match to {
            Recipients::Parties(mut ps) => {
                ps.sort_unstable();
                ps.dedup();
                Recipients::Parties(ps)
            }
            other => other,
        };
        self.push(Op::Output { a, to }, ia);
    }

    /// Checks and schedules the program.
    pub fn build(self) -> Result<Program<F>, MpcError> {
        if let Some(e) = self.error {
            return Err(MpcError::Program(e));
        }
        let info = self.info;
        let ops = self.ops;
        let mut steps = Vec::new();
        let mut group: Vec<usize> = Vec::new();
        let mut stats = ProgramStats::default();
        let mut outputs = Vec::new();
        let mut segments = vec![Segment::default()];
        let is_round = |i: usize| -> bool {
            match &ops[i] {
                Op::Mul(a, b) | Op::Dot(a, b) => info[a.0].shared && info[b.0].shared,
                Op::Open(_) => true,
                _ => false,
            }
        };
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::Output { a, to } => {
                    outputs.push((*a, to.clone()));
                    stats.outputs += info[a.0].len;
                    continue;
                }
                Op::AssertZero { a, check } => {
                    if let Some(seg) = segments.last_mut() {
                        seg.asserts.push((*a, *check));
                    }
                    stats.asserted += info[a.0].len;
                    continue;
                }
                Op::Checkpoint => {
                    if !group.is_empty() {
                        steps.push(Step::Round(core::mem::take(&mut group)));
                    }
                    steps.push(Step::Checkpoint(segments.len() - 1));
                    segments.push(Segment::default());
                    stats.checkpoints += 1;
                    continue;
                }
                Op::Input { .. } | Op::Random { .. } | Op::RandomInt { .. } => continue,
                _ => {}
            }
            let deps = op.reads();
            if deps.iter().any(|d| group.contains(&d.0)) {
                steps.push(Step::Round(core::mem::take(&mut group)));
            }
            if is_round(i) {
                match op {
                    Op::Open(_) => stats.opened += info[i].len,
                    Op::Dot(..) => stats.multiplications += 1,
                    _ => stats.multiplications += info[i].len,
                }
                group.push(i);
            } else {
                steps.push(Step::Local(i));
            }
        }
        if !group.is_empty() {
            steps.push(Step::Round(group));
        }
        stats.rounds = steps.iter().filter(|s| matches!(s, Step::Round(_))).count();
        let seg_of = segment_of(&ops);
        let (needs_mac, mac_left, remac) = mac_plan(&ops, &info, &seg_of, segments.len());
        for (seg, r) in segments.iter_mut().zip(remac) {
            seg.remac = r;
        }
        let dead_after = liveness(&ops, &steps, &segments);
        Ok(Program {
            n: self.n,
            threshold: self.threshold,
            needs_mac,
            mac_left,
            ops,
            info,
            steps,
            outputs,
            checks: self.checks,
            segments,
            stats,
            dead_after,
        })
    }
}

/// The segment of every instruction: the number of checkpoints before it, except that
/// registers created in the input phase belong to segment 0 wherever they are written.
fn segment_of<F: Field>(ops: &[Op<F>]) -> Vec<usize> {
    let mut seg = 0;
    ops.iter()
        .map(|op| {
            let s = if op.is_initial() { 0 } else { seg };
            if matches!(op, Op::Checkpoint) {
                seg += 1;
            }
            s
        })
        .collect()
}

/// Which registers need a MAC'd copy, which factor of each product carries the MAC, and
/// which registers each segment re-MACs under its own key.
///
/// Chida et al. MAC every input so every wire has \[r·x\]. Only the MAC'd factor of a product
/// is ever used, so an input that is never (through linear operations) the MAC'd factor of a
/// product skips its \[r·v\] multiplication; its consistency is still checked in the masked
/// verification opening (see [`crate::engine`]). Products always carry a MAC: it is what
/// verifies them. A checkpoint opens the MAC key, so a value of an earlier segment that a
/// later segment needs as a MAC'd factor gets a fresh \[r'·x\] when that segment starts.
/// Walks the program backwards, preferring a factor that has a MAC anyway.
#[allow(clippy::type_complexity)]
fn mac_plan<F: Field>(
    ops: &[Op<F>],
    info: &[RegInfo],
    seg_of: &[usize],
    segments: usize,
) -> (Vec<bool>, Vec<bool>, Vec<Vec<usize>>) {
    let len = ops.len();
    let mut need = vec![false; len];
    let mut mac_left = vec![true; len];
    let mut remac: Vec<Vec<usize>> = vec![Vec::new(); segments];
    let is_product = |i: usize| match &ops[i] {
        Op::Mul(a, b) | Op::Dot(a, b) => info[a.0].shared && info[b.0].shared,
        _ => false,
    };
    for i in (0..len).rev() {
        let s = seg_of[i];
        let mark = |r: Reg, need: &mut Vec<bool>, remac: &mut Vec<Vec<usize>>| {
            if seg_of[r.0] == s {
                need[r.0] = true;
            } else if !remac[s].contains(&r.0) {
                remac[s].push(r.0);
            }
        };
        match &ops[i] {
            Op::Mul(a, b) | Op::Dot(a, b) if info[a.0].shared && info[b.0].shared => {
                let free = |r: Reg, need: &[bool], remac: &[Vec<usize>]| {
                    if seg_of[r.0] == s {
                        is_product(r.0) || need[r.0]
                    } else {
                        remac[s].contains(&r.0)
                    }
                };
                if !free(*a, &need, &remac) && free(*b, &need, &remac) {
                    mac_left[i] = false;
                    mark(*b, &mut need, &mut remac);
                } else {
                    mark(*a, &mut need, &mut remac);
                }
            }
            _ if !need[i] => {}
            Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) | Op::Dot(a, b) => {
                for r in [a, b] {
                    if info[r.0].shared {
                        mark(*r, &mut need, &mut remac);
                    }
                }
            }
            Op::Neg(a) | Op::Scale(a, _) | Op::Sum(a) | Op::Slice { a, .. } => {
                mark(*a, &mut need, &mut remac)
            }
            Op::Concat(parts) => {
                for r in parts {
                    mark(*r, &mut need, &mut remac);
                }
            }
            _ => {}
        }
    }
    for r in &mut remac {
        r.sort_unstable();
    }
    (need, mac_left, remac)
}

/// For each step, the registers it reads last. Assertions count as read by the checkpoint
/// that ends their segment and outputs as read at the end (index `steps.len()`).
fn liveness<F: Field>(ops: &[Op<F>], steps: &[Step], segments: &[Segment]) -> Vec<Vec<usize>> {
    let end = steps.len();
    let mut last = vec![None::<usize>; ops.len()];
    let mut read = |r: usize, at: usize| {
        if let Some(slot) = last.get_mut(r) {
            *slot = Some(slot.map_or(at, |l| l.max(at)));
        }
    };
    let mut checkpoint_step = vec![end; segments.len()];
    for (si, step) in steps.iter().enumerate() {
        match step {
            Step::Local(i) => ops[*i].reads().iter().for_each(|r| read(r.0, si)),
            Step::Round(is) => {
                for i in is {
                    ops[*i].reads().iter().for_each(|r| read(r.0, si));
                }
            }
            Step::Checkpoint(seg) => checkpoint_step[*seg] = si,
        }
    }
    for (seg, s) in segments.iter().enumerate() {
        for (r, _) in &s.asserts {
            read(r.0, checkpoint_step[seg]);
        }
        // Re-MAC'd values are read when the next segment starts, right after the checkpoint.
        if seg > 0 {
            for &r in &s.remac {
                read(r, checkpoint_step[seg - 1]);
            }
        }
    }
    for op in ops {
        if let Op::Output { a, .. } = op {
            read(a.0, end);
        }
    }
    let mut dead = vec![Vec::new(); end + 1];
    for (r, l) in last.iter().enumerate() {
        if let Some(l) = l {
            dead[*l].push(r);
        }
    }
    dead
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::M61;

    #[test]
    fn independent_multiplications_share_a_round() {
        let mut b = ProgramBuilder::<M61>::new(3);
        let x = b.input(0, 4);
        let y = b.input(1, 4);
        let p = b.mul(x, y);
        let q = b.mul(y, y);
        let s = b.add(p, q); // depends on both: runs after their round
        let r = b.mul(s, x); // second round
        let o = b.sum(r);
        b.output(o);
        let prog = b.build().expect("valid");
        assert_eq!(prog.stats().rounds, 2);
        assert_eq!(prog.stats().multiplications, 12);
        assert_eq!(
            prog.steps,
            vec![
                Step::Round(vec![2, 3]),
                Step::Local(4),
                Step::Round(vec![5]),
                Step::Local(6)
            ]
        );
        // q = y·y MACs y, so p = x·y uses y's MAC too and x needs none; s·x MACs s (a sum
        // of products, which carry MACs anyway).
        assert_eq!(&prog.needs_mac[..2], &[false, true]);
        assert!(!prog.mac_left[2] && prog.mac_left[3] && prog.mac_left[5]);
    }

    #[test]
    fn right_only_inputs_skip_their_mac() {
        let mut b = ProgramBuilder::<M61>::new(3);
        let x = b.input(0, 4);
        let y = b.input(1, 4);
        let z = b.input(2, 4);
        let p = b.mul(x, y); // MACs x
        let q = b.mul(z, p); // p is a product: MAC on the right, z needs none
        let w = b.add(x, y); // linear, never a MAC'd factor
        b.output(q);
        b.output(w);
        let prog = b.build().expect("valid");
        assert_eq!(&prog.needs_mac[..3], &[true, false, false]);
        assert!(prog.mac_left[3]);
        assert!(!prog.mac_left[4]);
    }

    #[test]
    fn length_errors_are_reported() {
        let mut b = ProgramBuilder::<M61>::new(3);
        let x = b.input(0, 4);
        let y = b.input(1, 5);
        let _ = b.mul(x, y);
        let err = b.build().expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            "invalid program: mul of r0 (length 4) and r1 (length 5): lengths differ"
        );
        let mut b = ProgramBuilder::<M61>::new(3);
        let _ = b.input(3, 1);
        assert!(b.build().is_err());
    }
}
