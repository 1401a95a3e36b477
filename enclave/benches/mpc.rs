//! Criterion benches of the MPC engine in memory (all parties in one thread, the harness
//! delivering messages): multiplications per second at batch 1, 1,000 and 1,000,000 for
//! n = 3 (t = 1) and n = 5 (t = 2), semi-honest and malicious, plus field batch operations.
//!
//! Each iteration is a whole job — input sharing, the batch of multiplications, (malicious:
//! input MACs and verification), output opening — so batch 1 shows the fixed cost of a job
//! and batch 10^6 approaches the per-multiplication cost (`examples/mul1m.rs` separates the
//! marginal cost). Time is the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`): the
//! machine is shared, and in memory there is no waiting to measure. Bytes per multiplication
//! per party are deterministic and printed once per configuration with the DESIGN §9 bound.
//!
//! `cargo bench -p parley-enclave --bench mpc` (filter with e.g. `-- mul/n3`).

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use parley_enclave::SessionId;
use parley_enclave::engine::Security;
use parley_enclave::field::{Field, M61, M127, M521};
use parley_enclave::program::{Program, ProgramBuilder};
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Harness, engines};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

#[path = "support/mod.rs"]
mod support;
use support::CpuTime;

fn program(n: usize, batch: usize, with_mul: bool) -> Program<M127> {
    let mut b = ProgramBuilder::new(n);
    let x = b.input(0, batch);
    let y = b.input(1, batch);
    let s = if with_mul {
        let z = b.mul(x, y);
        b.sum(z)
    } else {
        let (sx, sy) = (b.sum(x), b.sum(y));
        b.add(sx, sy)
    };
    b.output(s);
    b.build().expect("valid")
}

fn inputs(n: usize, batch: usize) -> Vec<Vec<SecretVec<M127>>> {
    (0..n)
        .map(|p| match p {
            0 => vec![SecretVec::new(
                (0..batch)
                    .map(|i| M127::from_u64((i % 1000) as u64 + 1))
                    .collect(),
            )],
            1 => vec![SecretVec::new(
                (0..batch)
                    .map(|i| M127::from_u64((i % 997) as u64 + 2))
                    .collect(),
            )],
            _ => vec![],
        })
        .collect()
}

/// Payload bytes per multiplication sent by party n − 1 (it has no input): in the
/// multiplication round itself, and for the whole job minus the same job without the
/// multiplication (which adds the MAC of the MAC'd factor in malicious mode).
fn bytes_per_mult(n: usize, t: usize, security: Security, batch: usize) -> (f64, f64) {
    let traffic = |with_mul| {
        let parties = engines(
            t,
            security,
            Arc::new(program(n, batch, with_mul)),
            inputs(n, batch),
            SessionId([7; 32]),
            1,
        )
        .expect("valid");
        let report = Harness::new(parties, 1).run();
        report.traffic[n - 1].clone()
    };
    let (with, without) = (traffic(true), traffic(false));
    // The multiplication is the last round before verification and output.
    // Malicious: sync, coin and key, masked T, sync, zero check, then the outputs.
    let extra_rounds = if security == Security::Malicious {
        6
    } else {
        1
    };
    let mul_round = with
        .bytes_by_round
        .keys()
        .rev()
        .nth(extra_rounds)
        .copied()
        .unwrap_or(0);
    let round_bytes = with.bytes_by_round.get(&mul_round).copied().unwrap_or(0) as f64;
    (
        round_bytes / batch as f64,
        (with.payload_bytes as f64 - without.payload_bytes as f64) / batch as f64,
    )
}

fn bench_mul(c: &mut Criterion<CpuTime>) {
    for (n, t) in [(3usize, 1usize), (5, 2)] {
        for security in [Security::SemiHonest, Security::Malicious] {
            let tag = if security == Security::Malicious {
                "malicious"
            } else {
                "semi-honest"
            };
            let mut group = c.benchmark_group(format!("mul/n{n}/{tag}"));
            group.warm_up_time(Duration::from_millis(500));
            for batch in [1usize, 1000, 1_000_000] {
                let bound = (n - 1 - t) as f64
                    * 16.0
                    * if security == Security::Malicious {
                        2.0
                    } else {
                        1.0
                    };
                let (round, job) = bytes_per_mult(n, t, security, batch);
                eprintln!(
                    "mul/n{n}/{tag}/{batch}: {round:.2} bytes per multiplication per party in its round \
                     (DESIGN §9 bound {bound}; {:.0}% of it), {job:.2} for the whole job incl. input MACs",
                    100.0 * round / bound
                );
                group.throughput(Throughput::Elements(batch as u64));
                if batch >= 1_000_000 {
                    group
                        .sample_size(10)
                        .measurement_time(Duration::from_secs(5));
                } else {
                    group
                        .sample_size(20)
                        .measurement_time(Duration::from_secs(3));
                }
                let prog = Arc::new(program(n, batch, true));
                group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
                    b.iter_batched(
                        || {
                            engines(
                                t,
                                security,
                                Arc::clone(&prog),
                                inputs(n, batch),
                                SessionId([7; 32]),
                                1,
                            )
                            .expect("valid")
                        },
                        |parties| {
                            let report = Harness::new(parties, 1).run();
                            assert!(report.outcomes.iter().all(|o| o.output().is_some()));
                            report
                        },
                        BatchSize::PerIteration,
                    )
                });
            }
            group.finish();
        }
    }
}

fn bench_field<F: Field>(c: &mut Criterion<CpuTime>) {
    const LEN: usize = 1 << 16;
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut x = vec![F::zero(); LEN];
    let mut y = vec![F::zero(); LEN];
    F::fill_random(&mut rng, &mut x);
    F::fill_random(&mut rng, &mut y);
    let mut out = vec![F::zero(); LEN];
    let mut group = c.benchmark_group(format!("field/{}", F::NAME));
    group.throughput(Throughput::Elements(LEN as u64));
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    group.bench_function("mul_slices", |b| {
        b.iter(|| F::mul_slices(&mut out, black_box(&x), black_box(&y)))
    });
    group.bench_function("dot", |b| b.iter(|| F::dot(black_box(&x), black_box(&y))));
    group.bench_function("fill_random", |b| {
        b.iter(|| F::fill_random(&mut rng, &mut out))
    });
    group.finish();
}

fn fields(c: &mut Criterion<CpuTime>) {
    bench_field::<M61>(c);
    bench_field::<M127>(c);
    bench_field::<M521>(c);
}

fn config() -> Criterion<CpuTime> {
    Criterion::default().with_measurement(CpuTime)
}

criterion_group! {
    name = benches;
    config = config();
    targets = fields, bench_mul
}
criterion_main!(benches);
