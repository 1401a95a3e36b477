//! The comparison and truncation workloads of `parley bench mpc` (issue 9), shared by the
//! host's bench (in memory and over loopback TLS), `benches/gadgets.rs` and
//! `examples/gadgets1m.rs`, so every setting measures the same program.
//!
//! - [`GadgetWorkload::Compare`]: `ltz` of a batch of 32-bit signed values (the core of every
//!   comparison: `lt`, `le`, min/max, thresholds), output Σ `[x < 0]`.
//! - [`GadgetWorkload::Trunc`]: `trunc_pr` of a batch of 63-bit values by 16 bits (the
//!   truncation after a fixed-point product with k = 32), output Σ ⌊x / 2^16⌋ + u.
//!
//! Party 0 inputs the batch; a job is the whole thing (input sharing, random bits, the
//! checkpoint that verifies them with the input, the batch, the final verification and one
//! output). [`measure_in_memory`] times one job with all parties in this thread.

use super::{Circuit, CircuitInfo, KAPPA};
use crate::engine::Security;
use crate::error::MpcError;
use crate::field::{Field, M127};
use crate::program::{Program, Recipients};
use crate::secret::SecretVec;
use serde::Serialize;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GadgetWorkload {
    /// Comparisons: `ltz` of 32-bit values.
    Compare,
    /// Probabilistic truncations of 63-bit values by 16 bits.
    Trunc,
}

impl GadgetWorkload {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            GadgetWorkload::Compare => "compare (ltz, 32-bit)",
            GadgetWorkload::Trunc => "trunc_pr (63 → 47 bits)",
        }
    }
}

/// The program for n parties, threshold t, its output opened to `to`.
pub fn program(
    w: GadgetWorkload,
    n: usize,
    t: usize,
    batch: usize,
    to: Recipients,
) -> Result<(Program<M127>, CircuitInfo), MpcError> {
    let (p, (), info) = Circuit::<M127>::build(n, t, KAPPA, |c| {
        let x = c.b().input(0, batch);
        let r = match w {
            GadgetWorkload::Compare => c.ltz(x, 32, "x"),
            GadgetWorkload::Trunc => c.trunc_pr(x, 63, 16, "x"),
        };
        let s = c.b().sum(r);
        c.b().output_to(s, to.clone());
        Ok(())
    })?;
    Ok((p, info))
}

/// Element i of the batch: ±((i·0x9e3779b9) mod 2^31), negative at odd i.
fn value(i: usize) -> i64 {
    let v = ((i as u64).wrapping_mul(0x9e37_79b9) % (1 << 31)) as i64;
    if i.is_multiple_of(2) { v } else { -v }
}

/// Party `me`'s inputs (party 0: the batch; the others: none).
pub fn inputs(me: usize, batch: usize) -> Vec<SecretVec<M127>> {
    if me == 0 {
        vec![SecretVec::new(
            (0..batch).map(|i| M127::from_i64(value(i))).collect(),
        )]
    } else {
        Vec::new()
    }
}

/// Whether the opened output is right: the exact count of negatives, or for truncations
/// within `batch` of Σ ⌊x/2^16⌋ (each element rounds up with probability < 1).
pub fn output_ok(w: GadgetWorkload, batch: usize, out: i128) -> bool {
    match w {
        GadgetWorkload::Compare => out == (0..batch).filter(|&i| value(i) < 0).count() as i128,
        GadgetWorkload::Trunc => {
            let floor: i128 = (0..batch)
                .map(|i| i128::from(value(i).div_euclid(1 << 16)))
                .sum();
            out >= floor && out <= floor + batch as i128
        }
    }
}

/// One in-memory measurement.
#[derive(Clone, Debug, Serialize)]
pub struct GadgetFigures {
    /// Workload.
    pub workload: GadgetWorkload,
    /// Parties.
    pub n: usize,
    /// Batch.
    pub batch: usize,
    /// Wall seconds of the whole job (all parties in one thread).
    pub seconds: f64,
    /// Operations (comparisons or truncations) per second.
    pub per_second: f64,
    /// Shared × shared multiplications of the program.
    pub multiplications: usize,
    /// Random bits drawn.
    pub random_bits: u64,
    /// Rounds.
    pub rounds: usize,
    /// Payload bytes the last party (no inputs) sent.
    pub bytes_per_party: u64,
    /// Whether the output was right.
    pub output_ok: bool,
}

/// Runs one job with all n parties in this thread and times it (wall clock; the host passes
/// its own clock in, since this crate has none).
pub fn measure_in_memory(
    w: GadgetWorkload,
    n: usize,
    batch: usize,
    security: Security,
    clock: &dyn Fn() -> f64,
) -> Result<GadgetFigures, MpcError> {
    let t = (n - 1) / 2;
    let (program, info) = program(w, n, t, batch, Recipients::All)?;
    let stats = program.stats();
    let parties = crate::sim::engines(
        t,
        security,
        std::sync::Arc::new(program),
        (0..n).map(|me| inputs(me, batch)).collect(),
        crate::message::SessionId([9; 32]),
        1,
    )?;
    let start = clock();
    let report = crate::sim::Harness::new(parties, 1).run();
    let seconds = clock() - start;
    let out = report.outcomes[0]
        .output()
        .and_then(|o| o.values.first()?.as_ref()?.first()?.to_i128_vartime());
    if let Some(e) = report.outcomes.iter().find_map(|o| o.error()) {
        return Err(e.clone());
    }
    Ok(GadgetFigures {
        workload: w,
        n,
        batch,
        seconds,
        per_second: batch as f64 / seconds.max(1e-9),
        multiplications: stats.multiplications,
        random_bits: info.random_bits,
        rounds: stats.rounds,
        bytes_per_party: report.traffic[n - 1].payload_bytes,
        output_ok: out.is_some_and(|v| output_ok(w, batch, v)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_batches_run_and_check() {
        let clock = || 0.0;
        for w in [GadgetWorkload::Compare, GadgetWorkload::Trunc] {
            let f = measure_in_memory(w, 3, 200, Security::Malicious, &clock).expect("runs");
            assert!(f.output_ok, "{w:?}");
            assert!(f.multiplications > 0 || w == GadgetWorkload::Trunc);
        }
        assert!(!output_ok(GadgetWorkload::Compare, 10, 4));
    }
}
