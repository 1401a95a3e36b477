//! Criterion benches of the comparison and truncation protocols in memory, n = 3 (t = 1),
//! malicious: comparisons (`ltz` of 32-bit values) and probabilistic truncations
//! (`trunc_pr` of 63-bit values by 16 bits) per second.
//!
//! Each iteration is a whole job: input sharing, the random bits the batch needs (squares
//! opened and rooted), the checkpoint that verifies them with the input, the batch itself,
//! the final verification and one output (the sum of the results). Time is the CPU time of
//! the single harness thread running all three parties, so one party's share is a third.
//!
//! `cargo bench -p parley-enclave --bench gadgets`. Batch 10^6 takes about two minutes and
//! 14 GB per comparison job (all three parties in one process), so criterion's eleven runs
//! of it are opt-in: set `PARLEY_BENCH_1M=1`. `examples/gadgets1m.rs` measures one job of
//! each at 10^6 instead.

#[path = "support/mod.rs"]
mod support;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use parley_enclave::SessionId;
use parley_enclave::engine::Security;
use parley_enclave::field::{Field, M127};
use parley_enclave::gadgets::{Circuit, KAPPA};
use parley_enclave::program::Program;
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Harness, engines};
use std::sync::Arc;
use std::time::Duration;
use support::CpuTime;

/// `ltz` (comparison with zero, the core of every comparison) or `trunc_pr` on a batch.
fn program(batch: usize, compare: bool) -> Program<M127> {
    let (p, (), _) = Circuit::<M127>::build(3, 1, KAPPA, |c| {
        let x = c.b().input(0, batch);
        let r = if compare {
            c.ltz(x, 32, "x")
        } else {
            c.trunc_pr(x, 63, 16, "x")
        };
        let s = c.b().sum(r);
        c.b().output(s);
        Ok(())
    })
    .expect("within limits");
    p
}

fn inputs(batch: usize) -> Vec<Vec<SecretVec<M127>>> {
    let x: Vec<M127> = (0..batch)
        .map(|i| {
            let v = M127::from_u64((i as u64).wrapping_mul(0x9e37_79b9) % (1 << 31));
            if i % 2 == 0 { v } else { -v }
        })
        .collect();
    vec![vec![SecretVec::new(x)], vec![], vec![]]
}

fn bench(c: &mut Criterion<CpuTime>) {
    let large = std::env::var_os("PARLEY_BENCH_1M").is_some();
    for (name, compare) in [
        ("compare/ltz32/n3/malicious", true),
        ("trunc/pr63by16/n3/malicious", false),
    ] {
        let mut group = c.benchmark_group(name);
        group.warm_up_time(Duration::from_millis(500));
        for batch in [1_000usize, 10_000, 1_000_000] {
            if batch >= 1_000_000 && !large {
                continue;
            }
            group.throughput(Throughput::Elements(batch as u64));
            group
                .sample_size(10)
                .measurement_time(Duration::from_secs(if batch >= 1_000_000 { 60 } else { 5 }));
            let prog = Arc::new(program(batch, compare));
            group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
                b.iter_batched(
                    || {
                        engines(
                            1,
                            Security::Malicious,
                            Arc::clone(&prog),
                            inputs(batch),
                            SessionId([9; 32]),
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

criterion_group! {
    name = gadgets;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench
}
criterion_main!(gadgets);
