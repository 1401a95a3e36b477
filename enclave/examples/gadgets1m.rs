//! Comparisons and truncations per second at batch 10^6, n = 3, malicious, in memory (all
//! parties in one thread): one job each, the whole job timed (input sharing, random bits,
//! verification, one output). Prints one JSON line per job.
//! `cargo run --release --example gadgets1m -p parley-enclave` (about 3 minutes; the
//! comparison job peaks near 14 GB for the three parties together).
//!
//! Timing is the CPU time of the harness thread (the machine is shared); a party's own
//! share is a third of it.

use parley_enclave::SessionId;
use parley_enclave::engine::Security;
use parley_enclave::field::{Field, M127};
use parley_enclave::gadgets::{Circuit, KAPPA};
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Harness, engines};
use std::sync::Arc;

const N: usize = 1_000_000;

fn cpu_secs() -> f64 {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9)
        .unwrap_or(0.0)
}

fn main() {
    for (name, compare) in [("ltz32", true), ("trunc_pr63by16", false)] {
        let (program, (), info) = Circuit::<M127>::build(3, 1, KAPPA, |c| {
            let x = c.b().input(0, N);
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
        let stats = program.stats();
        let x: Vec<M127> = (0..N)
            .map(|i| {
                let v = M127::from_u64((i as u64).wrapping_mul(0x9e37_79b9) % (1 << 31));
                if i % 2 == 0 { v } else { -v }
            })
            .collect();
        let inputs = vec![vec![SecretVec::new(x)], vec![], vec![]];
        let parties = engines(
            1,
            Security::Malicious,
            Arc::new(program),
            inputs,
            SessionId([9; 32]),
            1,
        )
        .expect("valid");
        let t0 = cpu_secs();
        let report = Harness::new(parties, 1).run();
        let secs = cpu_secs() - t0;
        assert!(
            report.outcomes.iter().all(|o| o.output().is_some()),
            "job failed"
        );
        println!(
            "{{\"job\":\"{name}\",\"batch\":{N},\"n\":3,\"security\":\"malicious\",\"cpu_seconds\":{secs:.2},\"per_second\":{:.0},\"per_second_per_party\":{:.0},\"multiplications\":{},\"random_bits\":{},\"rounds\":{},\"bytes_per_party\":{}}}",
            N as f64 / secs,
            3.0 * N as f64 / secs,
            stats.multiplications,
            info.random_bits,
            stats.rounds,
            report.traffic[0].payload_bytes
        );
    }
}
