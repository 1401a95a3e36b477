//! The MPC programs behind each job kind, and this party's inputs to them.
//!
//! Inputs are exact local aggregates (never rows) or, for benchmarks, synthetic vectors
//! generated inside the node. Every program is straight-line and identical at every party.

use std::sync::Arc;

use parley_enclave::field::{Field, M127};
use parley_enclave::program::{Program, ProgramBuilder, Recipients};
use parley_enclave::secret::SecretVec;

use crate::jobs::job::{BenchSpec, BenchWorkload, ColumnStats, JobKind, JobOutput, JobSpec};
use crate::store::data::Moments;

/// The chunk of the T2 workload (BASELINES: chunks of 1000).
pub const T2_CHUNK: usize = 1000;
/// Largest `bench-mul` size a node accepts.
pub const MAX_BENCH_SIZE: u64 = 10_000_000;

#[derive(Debug, thiserror::Error)]
#[error("cannot build the program for job kind {kind}: {reason}")]
pub struct ProgramError {
    kind: &'static str,
    reason: String,
}

/// The program for `spec` with `n` parties (threshold `t`) whose outputs go to `to` only.
pub fn build(
    spec: &JobSpec,
    n: usize,
    t: usize,
    to: Recipients,
) -> Result<Arc<Program<M127>>, ProgramError> {
    let err = |reason: String| ProgramError {
        kind: spec.kind.as_str(),
        reason,
    };
    let p = match spec.kind {
        JobKind::SummaryStats => summary_stats(n, spec.columns.len(), to),
        JobKind::Analytics => {
            return Err(err(
                "analytics programs come from the job's plan (analytics_job)".into(),
            ));
        }
        JobKind::BenchMul => {
            let b = spec
                .bench
                .ok_or_else(|| err("no bench parameters".into()))?;
            bench_mul(n, t, b, to).map_err(err)?
        }
    };
    p.map(Arc::new).map_err(|e| err(e.to_string()))
}

/// Σ over parties of [count, Σx, Σx²] per column; then per column n·Σx² − (Σx)² on shares.
/// The release is one cell (the whole dataset) under the privacy rule: each party's input
/// ends with its keep bit (checked 0 or 1), and every output is multiplied by the product
/// of the bits. Opened: the product, then counts, sums and the variance numerators.
fn summary_stats(
    n: usize,
    columns: usize,
    to: Recipients,
) -> Result<Program<M127>, parley_enclave::MpcError> {
    let mut p = ProgramBuilder::new(n);
    let mut total = None;
    let mut keep = None;
    for party in 0..n {
        let x = p.input(party, 3 * columns + 1);
        let stats = p.slice(x, 0, 3 * columns);
        let bit = p.slice(x, 3 * columns, 1);
        let one = p.constant(vec![M127::one()]);
        let bm1 = p.sub(bit, one);
        let sq = p.mul(bit, bm1);
        p.assert_zero(sq, &format!("party {party}'s keep bit is 0 or 1"));
        total = Some(match total {
            Some(t) => p.add(t, stats),
            None => stats,
        });
        keep = Some(match keep {
            Some(k) => p.mul(k, bit),
            None => bit,
        });
    }
    let (Some(total), Some(keep)) = (total, keep) else {
        return Err(parley_enclave::MpcError::Program(
            "a job needs parties".into(),
        ));
    };
    let wide = p.concat(&vec![keep; columns]);
    let pick = |p: &mut ProgramBuilder<M127>, k: usize| {
        let parts: Vec<_> = (0..columns).map(|c| p.slice(total, 3 * c + k, 1)).collect();
        p.concat(&parts)
    };
    let counts = pick(&mut p, 0);
    let sums = pick(&mut p, 1);
    let squares = pick(&mut p, 2);
    let nq = p.mul(counts, squares);
    let ss = p.mul(sums, sums);
    let numerators = p.sub(nq, ss);
    let counts = p.mul(counts, wide);
    let sums = p.mul(sums, wide);
    let numerators = p.mul(numerators, wide);
    p.output_to(keep, to.clone());
    p.output_to(counts, to.clone());
    p.output_to(sums, to.clone());
    p.output_to(numerators, to);
    p.build()
}

fn bench_mul(
    n: usize,
    t: usize,
    b: BenchSpec,
    to: Recipients,
) -> Result<Result<Program<M127>, parley_enclave::MpcError>, String> {
    let size = usize::try_from(b.size).map_err(|_| "size too large".to_owned())?;
    if b.size == 0 || b.size > MAX_BENCH_SIZE {
        return Err(format!("size must be 1 to {MAX_BENCH_SIZE}"));
    }
    if let Some(w) = gadget(b.workload) {
        return Ok(parley_enclave::gadgets::bench::program(w, n, t, size, to).map(|(p, _)| p));
    }
    if matches!(b.workload, BenchWorkload::T2 | BenchWorkload::T2Baseline)
        && (size % T2_CHUNK != 0 || size < 2 * T2_CHUNK)
    {
        return Err(format!(
            "T2 needs a size that is a multiple of {T2_CHUNK}, at least {}",
            2 * T2_CHUNK
        ));
    }
    let mut p = ProgramBuilder::new(n);
    let a = p.input(0, size);
    let bb = p.input(1, size);
    // Baselines keep one 1-element product so that, malicious, `a` gets the same input MAC.
    let mac_twin = |p: &mut ProgramBuilder<M127>, s| {
        let a0 = p.slice(a, 0, 1);
        let b0 = p.slice(bb, 0, 1);
        let d = p.mul(a0, b0);
        p.add(s, d)
    };
    let s = match b.workload {
        BenchWorkload::T1 => {
            let c = p.mul(a, bb);
            p.sum(c)
        }
        BenchWorkload::T1Baseline => {
            let sa = p.sum(a);
            let sb = p.sum(bb);
            let s = p.add(sa, sb);
            mac_twin(&mut p, s)
        }
        BenchWorkload::Compare | BenchWorkload::Trunc => {
            return Err("a gadget workload has its own program".into());
        }
        BenchWorkload::T2 | BenchWorkload::T2Baseline => {
            let mut acc = p.slice(a, 0, T2_CHUNK);
            for k in 1..size / T2_CHUNK {
                let bk = p.slice(bb, k * T2_CHUNK, T2_CHUNK);
                acc = if b.workload == BenchWorkload::T2 {
                    p.mul(acc, bk)
                } else {
                    p.add(acc, bk)
                };
            }
            let s = p.sum(acc);
            if b.workload == BenchWorkload::T2Baseline {
                mac_twin(&mut p, s)
            } else {
                s
            }
        }
    };
    p.output_to(s, to);
    Ok(p.build())
}

/// Multiplications a `bench-mul` job performs (the baselines' one product excluded).
pub fn bench_mults(b: BenchSpec) -> u64 {
    match b.workload {
        BenchWorkload::T1 => b.size,
        BenchWorkload::T2 => b.size - T2_CHUNK as u64,
        BenchWorkload::T1Baseline | BenchWorkload::T2Baseline => 0,
        // Comparisons or truncations, not multiplications.
        BenchWorkload::Compare | BenchWorkload::Trunc => b.size,
    }
}

/// The enclave workload behind a comparison or truncation bench.
pub fn gadget(w: BenchWorkload) -> Option<parley_enclave::gadgets::bench::GadgetWorkload> {
    use parley_enclave::gadgets::bench::GadgetWorkload;
    match w {
        BenchWorkload::Compare => Some(GadgetWorkload::Compare),
        BenchWorkload::Trunc => Some(GadgetWorkload::Trunc),
        _ => None,
    }
}

/// This party's synthetic `bench-mul` inputs: party 0 a_i = (i mod 1000) + 1, party 1
/// b_i = (i mod 997) + 2 (BASELINES), others none.
pub fn bench_inputs(me: usize, b: BenchSpec) -> Vec<SecretVec<M127>> {
    let n = b.size as usize;
    if gadget(b.workload).is_some() {
        return parley_enclave::gadgets::bench::inputs(me, n);
    }
    match me {
        0 => vec![SecretVec::new(
            (0..n)
                .map(|i| M127::from_u64((i % 1000) as u64 + 1))
                .collect(),
        )],
        1 => vec![SecretVec::new(
            (0..n)
                .map(|i| M127::from_u64((i % 997) as u64 + 2))
                .collect(),
        )],
        _ => Vec::new(),
    }
}

/// Interpret the engine's outputs for `spec`: `None` when this party is not a recipient.
pub fn decode(
    spec: &JobSpec,
    values: &[Option<Vec<M127>>],
) -> Result<Option<JobOutput>, crate::jobs::JobError> {
    if values.iter().any(Option::is_none) {
        return Ok(None);
    }
    let values: Vec<Vec<M127>> = values.iter().flatten().cloned().collect();
    decode_opened(spec, &values)
        .map(Some)
        .map_err(crate::jobs::JobError::Decode)
}

fn decode_opened(spec: &JobSpec, values: &[Vec<M127>]) -> Result<JobOutput, String> {
    let int = |x: &M127| {
        x.to_i128_vartime()
            .ok_or_else(|| "an opened value is out of range".to_owned())
    };
    match spec.kind {
        JobKind::SummaryStats => {
            let [keep, counts, sums, numerators] = values else {
                return Err("expected four outputs".into());
            };
            if keep.first().map(int).transpose()? != Some(1) {
                return Ok(JobOutput::Suppressed(crate::jobs::job::SUPPRESSED.into()));
            }
            let mut cols = Vec::new();
            for (i, name) in spec.columns.iter().enumerate() {
                let (n, s, v) = (int(&counts[i])?, int(&sums[i])?, int(&numerators[i])?);
                if n <= 0 || (v + s * s) % n != 0 {
                    return Err(format!("column {name}: inconsistent aggregates"));
                }
                let m = Moments {
                    count: n,
                    sum: s,
                    sum_sq: (v + s * s) / n,
                };
                cols.push(ColumnStats::from_moments(name, &m));
            }
            Ok(JobOutput::SummaryStats(cols))
        }
        JobKind::Analytics => Err("analytics results come from the job's plan".into()),
        JobKind::BenchMul => {
            let s = values
                .first()
                .and_then(|v| v.first())
                .ok_or_else(|| "no output".to_owned())?;
            Ok(JobOutput::BenchMul(int(s)?.to_string()))
        }
    }
}

/// Encode an exact aggregate as a field element (negative values wrap mod p).
pub fn encode_i128(v: i128) -> M127 {
    let mag = M127::from_u128(v.unsigned_abs());
    if v < 0 { -mag } else { mag }
}
