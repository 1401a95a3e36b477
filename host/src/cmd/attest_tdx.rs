//! `parley attest` for TDX evidence: loading explicit Intel roots.

use std::path::Path;

use anyhow::Context;
use parley_attestation::tdx::TrustRoots;

/// Explicit roots for Intel's chains from a directory.
pub fn roots(dir: &Path) -> anyhow::Result<TrustRoots> {
    TrustRoots::from_dir(dir).with_context(|| format!("cannot use --roots {}", dir.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use parley_attestation::evidence::{self, EvidenceKind, Verified};
    use parley_attestation::tdx;
    use parley_attestation::verdict::{Status, codes as common};
    use time::macros::datetime;

    use super::super::attest::{InputArgs, load_inputs};

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

    fn vector(rel: &str) -> Vec<u8> {
        std::fs::read(PathBuf::from(VECTORS).join(rel)).unwrap()
    }

    fn verify(
        bytes: &[u8],
        collateral: Option<PathBuf>,
        roots: Option<PathBuf>,
    ) -> anyhow::Result<Verified> {
        let args = InputArgs {
            certs: None,
            collateral,
            roots,
        };
        let inputs = load_inputs(Some(EvidenceKind::Tdx), &args)?;
        Ok(evidence::verify(
            bytes,
            None,
            &inputs,
            datetime!(2025-06-20 00:00 UTC),
        ))
    }

    fn codes(v: &Verified) -> Vec<&str> {
        v.findings.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    #[test]
    fn inspect_prints_the_quote() {
        let t = evidence::verifier(EvidenceKind::Tdx);
        let json = t
            .inspect(&vector("tdx/v4-phala-dcap-qvl/quote.bin"))
            .unwrap();
        assert_eq!(json["type"], "tdx");
        assert_eq!(
            json["body"]["td_attributes_decoded"]["sept_ve_disable"],
            true
        );
        let err = t.inspect(b"not a quote").unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn verify_fails_closed_without_collateral() {
        let v = verify(&vector("tdx/v4-phala-dcap-qvl/quote.bin"), None, None).unwrap();
        assert_eq!(v.findings.status(), Status::Contraindicated);
        assert_eq!(codes(&v)[0], tdx::codes::COLLATERAL_MISSING);
        assert!(v.findings.reasons[0].message.contains("--collateral"));
    }

    #[test]
    fn verify_with_collateral_and_roots() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("collateral.json"),
            vector("tdx/v4-phala-dcap-qvl/collateral.json"),
        )
        .unwrap();
        let quote = vector("tdx/v4-phala-dcap-qvl/quote.bin");
        let v = verify(&quote, Some(dir.path().into()), None).unwrap();
        assert!(codes(&v).is_empty(), "{:?}", v.findings);
        assert_eq!(v.details["tcb"]["status"], "UpToDate");

        let roots = PathBuf::from(VECTORS).join("roots/amd/milan");
        let v = verify(&quote, Some(dir.path().into()), Some(roots)).unwrap();
        assert!(
            codes(&v).contains(&tdx::codes::UNTRUSTED_ROOT),
            "{:?}",
            codes(&v)
        );

        // A malformed collateral file is an error naming it, before any verification.
        std::fs::write(dir.path().join("tcb_info.json"), b"{").unwrap();
        let e = verify(&quote, Some(dir.path().into()), None).unwrap_err();
        assert!(format!("{e:#}").contains("tcb_info.json"), "{e:#}");
    }

    #[test]
    fn verify_names_malformed_evidence() {
        let v = verify(&[4, 0, 2, 0, 0x81, 0, 0, 0], None, None).unwrap();
        assert_eq!(codes(&v), [common::MALFORMED_EVIDENCE]);
    }
}
