//! Temporary probe (not committed).
use parley_enclave::SessionId;
use parley_enclave::engine::Security;
use parley_enclave::field::{Field, M127};
use parley_enclave::gadgets::{Circuit, KAPPA};
use parley_enclave::secret::SecretVec;
use parley_enclave::sim::{Harness, engines};
use std::sync::Arc;
use std::time::Instant;
fn main() {
    let batch: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let which = std::env::args().nth(2).unwrap();
    let t0 = Instant::now();
    let (program, (), info) = Circuit::<M127>::build(3, 1, KAPPA, |c| {
        let x = c.b().input(0, batch);
        let o = if which == "ltz" {
            c.ltz(x, 32, "x")
        } else {
            c.trunc_pr(x, 63, 16, "x")
        };
        let s = c.b().sum(o);
        c.b().output(s);
        Ok(())
    })
    .unwrap();
    println!("build {:?} {:?} {:?}", t0.elapsed(), program.stats(), info);
    let inputs = vec![
        vec![SecretVec::new(
            (0..batch)
                .map(|i| M127::from_u64(i as u64 * 7919 % 1000003))
                .collect(),
        )],
        vec![],
        vec![],
    ];
    let parties = engines(
        1,
        Security::Malicious,
        Arc::new(program),
        inputs,
        SessionId([1; 32]),
        1,
    )
    .unwrap();
    let t0 = Instant::now();
    let r = Harness::new(parties, 1).run();
    let el = t0.elapsed();
    println!(
        "run {:?} ok={} per sec {:.0} bytes/party {}",
        el,
        r.outcomes[0].output().is_some(),
        batch as f64 / el.as_secs_f64(),
        r.traffic[0].payload_bytes
    );
}
