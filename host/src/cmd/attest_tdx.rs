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
