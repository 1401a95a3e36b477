//! TDX quote verification throughput with collateral loaded once (cached), beside one bare
//! ECDSA P-256 verification (ring) in the same run; prints verifications per second and
//! the ratio. A full verification does 7 ECDSA P-256 verifications (quote, QE report, PCK
//! leaf and CA certificates, TCB signing certificate, TCB Info, QE Identity) plus 2 CRL
//! signatures, path building, DER and JSON work.
//!
//! Run: `cargo bench -p parley-attestation --bench tdx` (uses the real v4 vector and its
//! collateral from `../shared/vectors`).

use std::cell::Cell;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use parley_attestation::tdx::{Collateral, Quote, TrustRoots, verify};
use parley_attestation::verdict::Status;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use time::macros::datetime;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

/// Iterations and time spent, over every call criterion makes (warm-up included).
#[derive(Default)]
struct Tally {
    iters: Cell<u64>,
    nanos: Cell<u128>,
}

impl Tally {
    fn per_second(&self) -> f64 {
        let secs = self.nanos.get() as f64 / 1e9;
        if secs == 0.0 {
            return 0.0;
        }
        self.iters.get() as f64 / secs
    }
}

fn timed(tally: &Tally, iters: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let d = start.elapsed();
    tally.iters.set(tally.iters.get() + iters);
    tally.nanos.set(tally.nanos.get() + d.as_nanos());
    d
}

fn main() {
    let dir = PathBuf::from(VECTORS).join("tdx/v4-phala-dcap-qvl");
    let bytes = std::fs::read(dir.join("quote.bin")).expect("v4 vector");
    let collateral = {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::copy(
            dir.join("collateral.json"),
            tmp.path().join("collateral.json"),
        )
        .expect("collateral");
        Collateral::from_dir(tmp.path()).expect("collateral loads")
    };
    let roots = TrustRoots::intel();
    let at = datetime!(2025-06-20 00:00 UTC);

    // The bench is only meaningful if the verification succeeds.
    let q = Quote::parse(&bytes).expect("quote parses");
    assert_eq!(
        verify(&q, &collateral, &roots, at).findings.status(),
        Status::Affirming
    );
    let sig = q.signature_data();
    let mut key = [4u8; 65];
    key[1..].copy_from_slice(sig.attestation_key);
    let signed = q.signed_bytes();

    let full = Tally::default();
    let bare = Tally::default();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(30)
        .configure_from_args();
    let mut g = c.benchmark_group("tdx");
    g.bench_function("verify_quote_cached_collateral", |b| {
        b.iter_custom(|iters| {
            timed(&full, iters, || {
                let q = Quote::parse(black_box(&bytes)).expect("parses");
                black_box(verify(&q, &collateral, &roots, at));
            })
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| black_box(Quote::parse(black_box(&bytes)).is_ok()))
    });
    g.bench_function("bare_ecdsa_p256_verify", |b| {
        b.iter_custom(|iters| {
            timed(&bare, iters, || {
                black_box(
                    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key)
                        .verify(black_box(signed), sig.quote_signature)
                        .is_ok(),
                );
            })
        })
    });
    g.finish();
    c.final_summary();

    let (f, p) = (full.per_second(), bare.per_second());
    if f > 0.0 && p > 0.0 {
        println!(
            "TDX full verifications/s (collateral cached): {f:.0}; bare ECDSA P-256 verifications/s: {p:.0}; one full verification costs {:.1} bare P-256 verifications",
            p / f
        );
    }
}
