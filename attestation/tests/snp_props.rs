//! Property tests: the SNP parser, verifier, certificate and certificate-table readers
//! never panic on arbitrary bytes; parsing round-trips; and, on every input, our parser
//! and the `sev` crate's agree by the oracle's rules.
#![allow(clippy::unwrap_used)] // tests fail loudly

use parley_attestation::snp::{
    AmdCert, Endorsements, REPORT_LEN, Report, TrustAnchors, certtable, json, verify,
};
use proptest::prelude::*;
use time::macros::datetime;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

fn vector(i: usize) -> (Vec<u8>, Vec<u8>) {
    let (dir, cert) = [
        ("snp/milan-v2-trustee", "vcek.der"),
        ("snp/milan-v2-go-sev-guest", "vcek.der"),
        ("snp/milan-v2-virtee", "vcek.der"),
        ("snp/genoa-v3-azure", "vcek.pem"),
    ][i % 4];
    (
        std::fs::read(format!("{VECTORS}/{dir}/report.bin")).unwrap(),
        std::fs::read(format!("{VECTORS}/{dir}/{cert}")).unwrap(),
    )
}

/// A report-shaped input: a supported version, policy bit 17 set, the rest random, and
/// optionally the reserved areas cleared so the parser gets past them.
fn report_like() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![2u32, 3, 5]),
        prop::collection::vec(any::<u8>(), REPORT_LEN),
        any::<bool>(),
    )
        .prop_map(|(v, mut b, clear)| {
            b[0..4].copy_from_slice(&v.to_le_bytes());
            b[0x0A] |= 0x02;
            if clear {
                b[0x0B] &= 0x03;
                b[0x0C..0x10].fill(0);
                b[0x40] &= 0xBF;
                b[0x41..0x48].fill(0);
                b[0x48] &= 0x03; // VCEK
                b[0x49..0x50].fill(0);
                for tcb in [0x38, 0x180, 0x1E0, 0x1F0] {
                    b[tcb + 2..tcb + 6].fill(0);
                }
                let cpuid_end = if v == 2 { 0x188 } else { 0x18B };
                b[cpuid_end..0x1A0].fill(0);
                b[0x1EB] = 0;
                b[0x1EF] = 0;
                let mit_end = if v == 5 { 0x208 } else { 0x1F8 };
                b[mit_end..0x2A0].fill(0);
                b[0x2D0..0x2E8].fill(0);
                b[0x318..].fill(0);
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2400)) {
        let _ = Report::parse(&bytes);
        let _ = AmdCert::parse_many(&bytes, "fuzz");
        let _ = certtable::parse(&bytes);
        let roots = TrustAnchors::pinned().unwrap();
        let e = Endorsements::from_vek(&bytes);
        let r = verify(&bytes, &e, roots, datetime!(2025-06-01 00:00 UTC));
        prop_assert!(r.is_err());
        #[cfg(target_os = "linux")]
        parley_attestation::snp::oracle::compare_with_sev(&bytes).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn report_like_inputs_round_trip_and_agree_with_sev(bytes in report_like()) {
        if let Ok(r) = Report::parse(&bytes) {
            // Round trip: the view hands back the exact bytes and every field maps back
            // to its offset.
            prop_assert_eq!(r.as_bytes().as_slice(), bytes.as_slice());
            prop_assert_eq!(r.measurement().as_slice(), &bytes[0x90..0xC0]);
            prop_assert_eq!(r.report_data().as_slice(), &bytes[0x50..0x90]);
            prop_assert_eq!(r.chip_id().as_slice(), &bytes[0x1A0..0x1E0]);
            prop_assert_eq!(&r.reported_tcb().0[..], &bytes[0x180..0x188]);
            let j = json::report_json(&r, r.product());
            prop_assert_eq!(
                hex::decode(j["host_data"].as_str().unwrap()).unwrap(),
                bytes[0xC0..0xE0].to_vec()
            );
            let mut sig_r = bytes[0x2A0..0x2D0].to_vec();
            sig_r.reverse();
            prop_assert_eq!(hex::decode(j["signature"]["r"].as_str().unwrap()).unwrap(), sig_r);
        }
        #[cfg(target_os = "linux")]
        parley_attestation::snp::oracle::compare_with_sev(&bytes).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_vectors_never_verify(
        which in 0usize..4,
        edits in prop::collection::vec((0usize..REPORT_LEN, 1u8..=255), 1..4),
    ) {
        let (mut report, vcek) = vector(which);
        for (at, x) in edits {
            report[at] ^= x;
        }
        let roots = TrustAnchors::pinned().unwrap();
        let r = verify(&report, &Endorsements::from_vek(&vcek), roots, datetime!(2025-06-01 00:00 UTC));
        prop_assert!(r.is_err());
        #[cfg(target_os = "linux")]
        parley_attestation::snp::oracle::compare_with_sev(&report).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn mutated_certificates_never_panic_or_verify(
        edits in prop::collection::vec((0usize..1400, any::<u8>()), 1..4),
    ) {
        let (report, mut vcek) = vector(0);
        let len = vcek.len();
        for (at, x) in edits {
            vcek[at % len] ^= x.max(1);
        }
        let roots = TrustAnchors::pinned().unwrap();
        let r = verify(&report, &Endorsements::from_vek(&vcek), roots, datetime!(2025-06-01 00:00 UTC));
        prop_assert!(r.is_err());
    }
}
