//! Comparisons and truncations per second at batch 10^6, n = 3, malicious, in memory (all
//! parties in one thread): one job each, the whole job timed (input sharing, random bits,
//! verification, one output). Prints one JSON line per job. The workloads are
//! `parley_enclave::gadgets::bench`'s, the same `parley bench mpc` runs.
//! `cargo run --release --example gadgets1m -p parley-enclave` (about 3 minutes; the
//! comparison job peaks near 14 GB for the three parties together).

use parley_enclave::engine::Security;
use parley_enclave::gadgets::bench::{GadgetWorkload, measure_in_memory};

const N: usize = 1_000_000;

fn main() {
    let t0 = std::time::Instant::now();
    let clock = move || t0.elapsed().as_secs_f64();
    for w in [GadgetWorkload::Compare, GadgetWorkload::Trunc] {
        let f = measure_in_memory(w, 3, N, Security::Malicious, &clock).expect("runs");
        assert!(f.output_ok, "wrong output");
        println!("{}", serde_json::to_string(&f).expect("json"));
    }
}
