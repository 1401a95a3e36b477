//! `parley attest` for TDX evidence: the CLI edge of `parley_attestation::tdx`.

use anyhow::Context;
use parley_attestation::tdx::{self, Collateral, Quote, TrustRoots};
use parley_attestation::verdict::{Findings, Reason, codes as common};
use serde_json::json;

use super::attest::{Verified, VerifyInputs};

pub fn inspect(bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
    let quote = Quote::parse(bytes)?;
    Ok(tdx::inspect::to_json(&quote))
}

pub fn verify(bytes: &[u8], inputs: &VerifyInputs) -> anyhow::Result<Verified> {
    let quote = match Quote::parse(bytes) {
        Ok(q) => q,
        Err(e) => {
            let mut findings = Findings::default();
            findings.push(Reason::refuse(
                common::MALFORMED_EVIDENCE,
                format!("not a TDX quote Parley can read: {e}"),
            ));
            return Ok(Verified {
                findings,
                details: json!({}),
            });
        }
    };
    let roots = match &inputs.roots {
        Some(dir) => TrustRoots::from_dir(dir)
            .with_context(|| format!("cannot use --roots {}", dir.display()))?,
        None => TrustRoots::intel(),
    };
    let mut pre = Findings::default();
    let collateral = match &inputs.collateral {
        Some(dir) => match Collateral::from_dir(dir) {
            Ok(c) => c,
            Err(e) => {
                pre.push(Reason::refuse(
                    tdx::codes::COLLATERAL_INVALID,
                    format!("cannot load --collateral {}: {e}", dir.display()),
                ));
                Collateral::default()
            }
        },
        None => {
            pre.push(Reason::refuse(
                tdx::codes::COLLATERAL_MISSING,
                "no --collateral DIR given: TDX verification needs the TCB Info, QE Identity, TCB signing chain, PCK CRL and root CA CRL (layout in `parley_attestation::tdx::collateral`)",
            ));
            Collateral::default()
        }
    };
    let verification = tdx::verify(&quote, &collateral, &roots, inputs.at);
    let mut findings = pre;
    for r in verification.findings.reasons.iter().cloned() {
        findings.push(r);
    }
    Ok(Verified {
        findings,
        details: verification.details_json(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use time::macros::datetime;

    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

    fn vector(rel: &str) -> Vec<u8> {
        std::fs::read(PathBuf::from(VECTORS).join(rel)).unwrap()
    }

    fn inputs(collateral: Option<PathBuf>, roots: Option<PathBuf>) -> VerifyInputs {
        VerifyInputs {
            certs: None,
            collateral,
            roots,
            at: datetime!(2025-06-20 00:00 UTC),
        }
    }

    fn codes(v: &Verified) -> Vec<&str> {
        v.findings.reasons.iter().map(|r| r.code.as_str()).collect()
    }

    #[test]
    fn inspect_prints_the_quote() {
        let json = inspect(&vector("tdx/v4-phala-dcap-qvl/quote.bin")).unwrap();
        assert_eq!(json["type"], "tdx");
        assert_eq!(
            json["body"]["mr_td"],
            "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7"
        );
        assert_eq!(
            json["body"]["td_attributes_decoded"]["sept_ve_disable"],
            true
        );
        let err = inspect(b"not a quote").unwrap_err();
        assert!(err.to_string().contains("TDX quote"), "{err}");
    }

    #[test]
    fn verify_fails_closed_without_collateral() {
        let v = verify(
            &vector("tdx/v4-phala-dcap-qvl/quote.bin"),
            &inputs(None, None),
        )
        .unwrap();
        assert_eq!(
            v.findings.status(),
            parley_attestation::verdict::Status::Contraindicated
        );
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
        let v = verify(&quote, &inputs(Some(dir.path().into()), None)).unwrap();
        assert!(codes(&v).is_empty(), "{:?}", v.findings);
        assert_eq!(v.details["tcb"]["status"], "UpToDate");

        let roots = PathBuf::from(VECTORS).join("roots/amd/milan");
        let v = verify(&quote, &inputs(Some(dir.path().into()), Some(roots))).unwrap();
        assert!(
            codes(&v).contains(&tdx::codes::UNTRUSTED_ROOT),
            "{:?}",
            codes(&v)
        );

        std::fs::write(dir.path().join("tcb_info.json"), b"{").unwrap();
        let v = verify(&quote, &inputs(Some(dir.path().into()), None)).unwrap();
        assert_eq!(codes(&v)[0], tdx::codes::COLLATERAL_INVALID);
        assert!(v.findings.reasons[0].message.contains("tcb_info.json"));
    }

    #[test]
    fn verify_names_malformed_evidence() {
        let v = verify(&[4, 0, 2, 0, 0x81, 0, 0, 0], &inputs(None, None)).unwrap();
        assert_eq!(codes(&v), [common::MALFORMED_EVIDENCE]);
    }
}
