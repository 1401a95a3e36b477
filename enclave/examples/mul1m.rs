//! The "mul-1M" workload of `../shared/BASELINES.md` in memory (all parties in one thread):
//! T1 = one vectorised multiplication of 10^6 elements, T2 = 1000 dependent rounds of 1000.
//! Prints a JSON line per configuration. `cargo run --release --example mul1m -p parley-enclave`.
//!
//! Timing: CPU time of the single harness thread (the machine is shared; best of 3), for
//! the whole job minus the same job without the multiplications. Both include input sharing,
//! input MACs (the baseline keeps one 1-element product so that its MACs match), malicious
//! verification and the output opening, so the figure is the marginal cost of the
//! multiplications and, malicious, of verifying them — BASELINES excludes input sharing.
//! Three parties share one core here: per-party cost is a third of the time.

use parley_enclave::SessionId;
use parley_enclave::engine::{EngineOutput, Security};
use parley_enclave::field::{Field, M127};
use parley_enclave::program::{Program, ProgramBuilder, Reg};
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Harness, Report, engines};
use std::sync::Arc;
use std::time::Instant;

const N: usize = 1_000_000;

fn inputs(n: usize) -> Vec<Vec<SecretVec<M127>>> {
    let a: Vec<M127> = (0..N)
        .map(|i| M127::from_u64((i % 1000) as u64 + 1))
        .collect();
    let b: Vec<M127> = (0..N)
        .map(|i| M127::from_u64((i % 997) as u64 + 2))
        .collect();
    (0..n)
        .map(|p| match p {
            0 => vec![SecretVec::new(a.clone())],
            1 => vec![SecretVec::new(b.clone())],
            _ => vec![],
        })
        .collect()
}

fn t1(n: usize, with_mul: bool) -> Program<M127> {
    let mut p = ProgramBuilder::new(n);
    let a = p.input(0, N);
    let b = p.input(1, N);
    let s = if with_mul {
        let c = p.mul(a, b);
        p.sum(c)
    } else {
        let sa = p.sum(a);
        let sb = p.sum(b);
        let s = p.add(sa, sb);
        mac_a(&mut p, a, b, s)
    };
    p.output(s);
    p.build().expect("valid")
}

/// Baselines do one 1-element product a[0]·b[0], so that (malicious) `a` gets the same input
/// MAC as in the measured job: input sharing, MACs included, is then in both and cancels.
fn mac_a(p: &mut ProgramBuilder<M127>, a: Reg, b: Reg, s: Reg) -> Reg {
    let a0 = p.slice(a, 0, 1);
    let b0 = p.slice(b, 0, 1);
    let d = p.mul(a0, b0);
    p.add(s, d)
}

fn t2(n: usize, with_mul: bool) -> Program<M127> {
    let chunk = 1000;
    let mut p = ProgramBuilder::new(n);
    let a = p.input(0, N);
    let b = p.input(1, N);
    let mut acc = p.slice(a, 0, chunk);
    for k in 1..N / chunk {
        let bk = p.slice(b, k * chunk, chunk);
        acc = if with_mul {
            p.mul(acc, bk)
        } else {
            p.add(acc, bk)
        };
    }
    let mut s = p.sum(acc);
    if !with_mul {
        s = mac_a(&mut p, a, b, s);
    }
    p.output(s);
    p.build().expect("valid")
}

/// This thread's CPU time in seconds (the machine is shared; wall time is noisy).
fn cpu_s() -> f64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(f64::NAN, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

type Run = (f64, f64, Report<EngineOutput<M127>>);

fn run(n: usize, t: usize, sec: Security, prog: Program<M127>) -> Run {
    let parties = engines(t, sec, Arc::new(prog), inputs(n), SessionId([1; 32]), 1).expect("valid");
    let (start, cpu) = (Instant::now(), cpu_s());
    let report = Harness::new(parties, 1).run();
    (start.elapsed().as_secs_f64(), cpu_s() - cpu, report)
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    for (n, t) in [(3usize, 1usize), (5, 2)] {
        for sec in [Security::SemiHonest, Security::Malicious] {
            for (name, build) in [("T1", t1 as fn(usize, bool) -> Program<M127>), ("T2", t2)] {
                // Filters: every argument must name the workload, `n3`/`n5` or `semi`/`mal`.
                let tags = [
                    name.to_string(),
                    format!("n{n}"),
                    if sec == Security::Malicious {
                        "mal"
                    } else {
                        "semi"
                    }
                    .to_string(),
                ];
                if !which.iter().all(|w| tags.contains(w)) {
                    continue;
                }
                // Best of REPS runs each: the machine is shared and noisy.
                const REPS: usize = 3;
                let mut best = (f64::MAX, f64::MAX, f64::MAX);
                let mut kept = None;
                for _ in 0..REPS {
                    let (wall, with, report) = run(n, t, sec, build(n, true));
                    let (_, without, base) = run(n, t, sec, build(n, false));
                    best = (best.0.min(wall), best.1.min(with), best.2.min(without));
                    kept = Some((report, base));
                }
                let (wall, with, without) = best;
                let Some((report, base)) = kept else { continue };
                let out = report.outcomes[0].output().expect("done");
                // Minus the baseline's one product.
                let mults = if name == "T1" {
                    (N - 1) as f64
                } else {
                    (N - 1000 - 1) as f64
                };
                let bytes =
                    report.traffic[2].payload_bytes as f64 - base.traffic[2].payload_bytes as f64;
                println!(
                    "{{\"workload\":\"{name}\",\"n\":{n},\"t\":{t},\"security\":\"{sec:?}\",\"job_wall_s\":{wall:.3},\"job_cpu_s\":{with:.3},\"baseline_cpu_s\":{without:.3},\"mult_per_s\":{:.0},\"bytes_per_mult_party\":{:.2},\"rounds\":{},\"checksum\":{:?}}}",
                    mults / (with - without).max(1e-9),
                    bytes / mults,
                    report.traffic[2].rounds,
                    out.all_values().expect("all delivered")[0][0].to_i128_vartime(),
                );
            }
        }
    }
}
