//! SEV-SNP evidence throughput: reports parsed per second and fully verified per second,
//! with the VCEK chain cached and uncached, beside a bare ECDSA P-384 verification of the
//! same report (the floor: no verification can be cheaper than its one signature).
//!
//! `cargo bench -p parley-attestation --bench snp` runs criterion, then prints a table of
//! the same operations timed in this run and each one's ratio to the bare P-384 floor.
//! Uncached = the VCEK DER is parsed and the whole chain (three RSA-4096 PSS
//! verifications) checked on every call; cached = a `Verifier` that has seen this VCEK
//! before, so only the report signature, extensions, times and CRL state are checked.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use parley_attestation::snp::cert::PublicKey;
use parley_attestation::snp::{AmdCert, Endorsements, Report, TrustAnchors, Verifier, verify};
use ring::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use time::macros::datetime;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

struct Input {
    report: Vec<u8>,
    vcek_der: Vec<u8>,
    point: Vec<u8>,
    sig: [u8; 96],
}

fn input() -> Input {
    let read =
        |p: &str| std::fs::read(format!("{VECTORS}/{p}")).unwrap_or_else(|e| panic!("{p}: {e}"));
    let report = read("snp/milan-v2-trustee/report.bin");
    let vcek_der = read("snp/milan-v2-trustee/vcek.der");
    let vcek = AmdCert::from_der(&vcek_der, "vcek").expect("vector VCEK parses");
    let PublicKey::EcP384(point) = vcek.key else {
        panic!("the VCEK key is not P-384")
    };
    let r = Report::parse(&report).expect("vector report parses");
    let mut sig = [0u8; 96];
    sig[..48].copy_from_slice(&r.signature_r());
    sig[48..].copy_from_slice(&r.signature_s());
    Input {
        report,
        vcek_der,
        point,
        sig,
    }
}

type Op<'a> = Box<dyn Fn() + 'a>;

fn ops(i: &Input) -> Vec<(&'static str, Op<'_>)> {
    let roots = TrustAnchors::pinned().expect("pinned roots");
    let at = datetime!(2025-06-01 00:00 UTC);
    let parsed = Endorsements::from_vek(&i.vcek_der);
    let verifier = Verifier::new(roots.clone());
    verifier
        .verify(&i.report, &parsed, at)
        .expect("the vector verifies");
    vec![
        (
            "parse",
            Box::new(move || {
                black_box(Report::parse(black_box(&i.report)).is_ok());
            }),
        ),
        (
            "p384_bare",
            Box::new(move || {
                let (signed, _) = i.report.split_at(0x2A0);
                let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &i.point);
                black_box(key.verify(black_box(signed), &i.sig).is_ok());
            }),
        ),
        (
            "verify_cached",
            Box::new(move || {
                black_box(verifier.verify(black_box(&i.report), &parsed, at).is_ok());
            }),
        ),
        (
            "verify_uncached",
            Box::new(move || {
                let e = Endorsements::from_vek(black_box(&i.vcek_der));
                black_box(verify(black_box(&i.report), &e, roots, at).is_ok());
            }),
        ),
    ]
}

fn per_second(op: &dyn Fn(), budget: Duration) -> f64 {
    for _ in 0..3 {
        op();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        op();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let i = input();
    let ops = ops(&i);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("snp");
        g.throughput(Throughput::Elements(1));
        for (name, op) in &ops {
            g.bench_function(*name, |b| b.iter(op));
        }
        g.finish();
    }
    c.final_summary();

    // The same operations timed back to back in this run, against the P-384 floor.
    let budget = Duration::from_millis(700);
    let rates: Vec<(&str, f64)> = ops
        .iter()
        .map(|(name, op)| (*name, per_second(op.as_ref(), budget)))
        .collect();
    let floor = rates
        .iter()
        .find(|(n, _)| *n == "p384_bare")
        .map_or(f64::NAN, |(_, r)| *r);
    println!("\nSNP throughput (this run)      ops/s   time vs bare P-384");
    for (name, rate) in &rates {
        println!("  {name:<26} {rate:>10.0}   {:>6.2}x", floor / rate);
    }
}
