//! The RA-TLS certificate reader (X.509, the CMW evidence extension, the identity binding,
//! the SNP certificate table), simulated evidence and the evidence front door on arbitrary
//! bytes: nothing may panic, and nothing unsigned may verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley_attestation::evidence::{self, Inputs};
use parley_attestation::ratls;
use parley_attestation::sim::SimEvidence;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = ratls::parse_certificate(data) {
        // A parsed certificate hands back bounded parts.
        assert!(c.spki_der.len() <= data.len());
        assert!(c.evidence.len() <= data.len());
    }
    let _ = SimEvidence::parse(data);
    let at = time::macros::datetime!(2025-06-01 00:00 UTC);
    let v = evidence::verify(data, None, &Inputs::default(), at);
    // No roots for simulated evidence and no endorsements: nothing can be genuine.
    assert!(v.claims.is_none() || !v.findings.reasons.is_empty());
});
