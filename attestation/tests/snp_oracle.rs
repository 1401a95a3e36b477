//! The `sev` crate (8, `crypto_nossl`) as an independent oracle: over every vector and
//! over every single-byte mutation of them, its parser and its signature/chain check must
//! agree with ours, except where Parley is deliberately stricter.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // tests fail loudly

use parley_attestation::snp::oracle::compare_with_sev;
use parley_attestation::snp::{Endorsements, TrustAnchors, verify};
use parley_attestation::verdict::codes::MALFORMED_EVIDENCE;
use sev::certs::snp::{Certificate, Chain, Verifiable, ca};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use time::macros::datetime;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{VECTORS}/{rel}")).unwrap()
}

/// (report dir, VCEK file, product dir for the roots)
const VECTORS_SNP: [(&str, &str, &str); 4] = [
    ("snp/milan-v2-trustee", "vcek.der", "milan"),
    ("snp/milan-v2-go-sev-guest", "vcek.der", "milan"),
    ("snp/milan-v2-virtee", "vcek.der", "milan"),
    ("snp/genoa-v3-azure", "vcek.pem", "genoa"),
];

fn sev_chain(product: &str, vcek: &[u8]) -> Chain {
    let ca = ca::Chain::from_pem(
        &read(&format!("roots/amd/{product}/ark.pem")),
        &read(&format!("roots/amd/{product}/ask.pem")),
    )
    .unwrap();
    let vek = if vcek.starts_with(b"-----") {
        Certificate::from_pem(vcek).unwrap()
    } else {
        Certificate::from_der(vcek).unwrap()
    };
    Chain { ca, vek }
}

/// sev's verdict: chain and report signature (it checks no times, CRLs or extensions).
fn sev_verifies(report: &[u8], chain: &Chain) -> bool {
    let Ok(r) = AttestationReport::from_bytes(report) else {
        return false;
    };
    (chain, &r).verify().is_ok()
}

#[test]
fn sev_agrees_on_every_vector() {
    let roots = TrustAnchors::pinned().unwrap();
    let at = datetime!(2025-06-01 00:00 UTC);
    for (dir, vcek, product) in VECTORS_SNP {
        let report = read(&format!("{dir}/report.bin"));
        let vcek = read(&format!("{dir}/{vcek}"));
        compare_with_sev(&report).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let chain = sev_chain(product, &vcek);
        assert!(sev_verifies(&report, &chain), "{dir}: sev rejects");
        assert!(verify(&report, &Endorsements::from_vek(&vcek), roots, at).is_ok());
    }
}

#[test]
fn sev_also_rejects_the_negative_vceks() {
    let report = read("snp/milan-v2-trustee/report.bin");
    for name in ["vcek-invalid-legacy.der", "vcek-invalid-new.der"] {
        let vcek = read(&format!("snp/milan-v2-trustee/negative/{name}"));
        assert!(!sev_verifies(&report, &sev_chain("milan", &vcek)), "{name}");
    }
}

#[test]
fn sev_agrees_on_every_single_byte_mutation() {
    let roots = TrustAnchors::pinned().unwrap();
    let at = datetime!(2025-06-01 00:00 UTC);
    for (dir, vcek, product) in VECTORS_SNP {
        let good = read(&format!("{dir}/report.bin"));
        let vcek = read(&format!("{dir}/{vcek}"));
        let chain = sev_chain(product, &vcek);
        let ours = Endorsements::from_vek(&vcek);
        let mut sev_accepted = 0;
        // Every byte of the report, flipped two ways.
        for at_byte in 0..good.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[at_byte] ^= mask;
                compare_with_sev(&bad).unwrap_or_else(|e| panic!("{dir} @{at_byte:#x}: {e}"));
                if at_byte % 16 == 0 {
                    // Ours through the full verification (slower) on every 16th byte.
                    let ok_ours = verify(&bad, &ours, roots, at).is_ok();
                    assert!(
                        !ok_ours,
                        "{dir} @{at_byte:#x}^{mask:#x}: we accept a mutation"
                    );
                }
                // sev re-encodes the report before checking the signature, so it accepts
                // changes to bytes it skips (reserved TCB bytes, reserved fields, the
                // signature block's tail). Each of those we refuse as malformed.
                if mask == 0x80 && at_byte % 4 == 2 && sev_verifies(&bad, &chain) {
                    sev_accepted += 1;
                    let f = verify(&bad, &ours, roots, at).unwrap_err().findings;
                    assert!(
                        f.has(MALFORMED_EVIDENCE),
                        "{dir} @{at_byte:#x}: sev accepts, we do not call it malformed"
                    );
                }
            }
        }
        // Evidence for choosing our own parser: sev accepts many altered reports (about
        // 430 single-byte changes per report; a quarter of the positions are tried here).
        assert!(sev_accepted > 50, "{dir}: sev accepted {sev_accepted}");
    }
}
