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
//! malicious-security verification.

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
    /// Marks a register as a job output, opened after verification.
    Output(Reg),
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
}

/// A checked, scheduled program.
#[derive(Clone, Debug)]
pub struct Program<F: Field> {
    pub(crate) n: usize,
    pub(crate) ops: Vec<Op<F>>,
    pub(crate) info: Vec<RegInfo>,
    pub(crate) steps: Vec<Step>,
    pub(crate) outputs: Vec<Reg>,
    pub(crate) stats: ProgramStats,
    /// Malicious mode: whether an input or random register needs its MAC'd copy r·x
    /// (products always carry one).
    pub(crate) needs_mac: Vec<bool>,
    /// For each shared×shared product: whether the left operand is the MAC'd factor
    /// (\[r·z\] = \[r·a\]·\[b\]); otherwise the right one is (\[r·z\] = \[a\]·\[r·b\]).
    pub(crate) mac_left: Vec<bool>,
}

impl<F: Field> Program<F> {
    /// Number of parties the program is written for.
    pub fn parties(&self) -> usize {
        self.n
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
    pub fn outputs(&self) -> &[Reg] {
        &self.outputs
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
    ops: Vec<Op<F>>,
    info: Vec<RegInfo>,
    error: Option<String>,
}

impl<F: Field> ProgramBuilder<F> {
    /// A program for `n` parties.
    pub fn new(n: usize) -> Self {
        Self {
            n,
            ops: Vec::new(),
            info: Vec::new(),
            error: None,
        }
    }

    fn fail(&mut self, msg: String) {
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
    /// Marks `a` as an output (opened to all after verification).
    pub fn output(&mut self, a: Reg) {
        let ia = self.get(a);
        self.push(Op::Output(a), ia);
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
        let is_round = |i: usize| -> bool {
            match &ops[i] {
                Op::Mul(a, b) | Op::Dot(a, b) => info[a.0].shared && info[b.0].shared,
                Op::Open(_) => true,
                _ => false,
            }
        };
        for (i, op) in ops.iter().enumerate() {
            let deps: Vec<usize> = match op {
                Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) | Op::Dot(a, b) => vec![a.0, b.0],
                Op::Neg(a) | Op::Scale(a, _) | Op::Sum(a) | Op::Open(a) | Op::Slice { a, .. } => {
                    vec![a.0]
                }
                Op::Concat(parts) => parts.iter().map(|r| r.0).collect(),
                Op::Output(a) => {
                    outputs.push(*a);
                    stats.outputs += info[a.0].len;
                    continue;
                }
                Op::Input { .. } => continue,
                Op::Random { .. } | Op::Constant(_) => vec![],
            };
            if deps.iter().any(|d| group.contains(d)) {
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
        let (needs_mac, mac_left) = mac_plan(&ops, &info);
        let n = self.n;
        Ok(Program {
            needs_mac,
            mac_left,
            n,
            ops,
            info,
            steps,
            outputs,
            stats,
        })
    }
}

/// Which inputs and random values need a MAC'd copy in malicious mode, and which factor of
/// each product carries the MAC.
///
/// Chida et al. MAC every input so every wire has \[r·x\]. Only the MAC'd factor of a product
/// is ever used, so an input that is never (through linear operations) the MAC'd factor of a
/// product skips its \[r·v\] multiplication; its consistency is still checked in the masked
/// verification opening (see [`crate::engine`]). Products always carry a MAC: it is what
/// verifies them. Walks the program backwards, preferring a factor that has a MAC anyway.
fn mac_plan<F: Field>(ops: &[Op<F>], info: &[RegInfo]) -> (Vec<bool>, Vec<bool>) {
    let len = ops.len();
    let mut need = vec![false; len];
    let mut mac_left = vec![true; len];
    let is_product = |i: usize| match &ops[i] {
        Op::Mul(a, b) | Op::Dot(a, b) => info[a.0].shared && info[b.0].shared,
        _ => false,
    };
    for i in (0..len).rev() {
        match &ops[i] {
            Op::Mul(a, b) | Op::Dot(a, b) if info[a.0].shared && info[b.0].shared => {
                let free = |r: Reg| is_product(r.0) || need[r.0];
                if !free(*a) && free(*b) {
                    mac_left[i] = false;
                } else {
                    need[a.0] = true;
                }
            }
            _ if !need[i] => {}
            Op::Add(a, b) | Op::Sub(a, b) | Op::Mul(a, b) | Op::Dot(a, b) => {
                for r in [a, b] {
                    if info[r.0].shared {
                        need[r.0] = true;
                    }
                }
            }
            Op::Neg(a) | Op::Scale(a, _) | Op::Sum(a) | Op::Slice { a, .. } => need[a.0] = true,
            Op::Concat(parts) => parts.iter().for_each(|r| need[r.0] = true),
            _ => {}
        }
    }
    (need, mac_left)
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
