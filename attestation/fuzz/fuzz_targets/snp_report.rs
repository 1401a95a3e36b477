//! SEV-SNP report parsing, JSON, verification and the certificate readers on arbitrary
//! bytes: nothing may panic, a parsed report must hand back exactly its input, and our
//! parser must agree with the `sev` crate's by the oracle's rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_attestation::snp::{Endorsements, Report, TrustAnchors, certtable, json, verify};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Report::parse(data) {
        assert_eq!(r.as_bytes().as_slice(), data);
        let _ = json::report_json(&r, r.product());
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = parley_attestation::snp::oracle::compare_with_sev(data) {
        panic!("parser disagreement with sev: {e}");
    }
    let _ = certtable::parse(data);
    let Ok(roots) = TrustAnchors::pinned() else {
        panic!("pinned roots do not load");
    };
    let at = time::macros::datetime!(2025-06-01 00:00 UTC);
    // The same bytes as report and as certificate: both paths must fail cleanly.
    let endorsements = Endorsements::from_vek(data);
    assert!(verify(data, &endorsements, roots, at).is_err());
});
