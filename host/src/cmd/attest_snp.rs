//! `parley attest` for SNP evidence.

use parley_attestation::snp::{Report, json};

use super::attest::{Verified, VerifyInputs};

pub fn inspect(bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
    let report = Report::parse(bytes)?;
    Ok(json::report_json(&report, report.product()))
}

pub fn verify(_bytes: &[u8], _inputs: &VerifyInputs) -> anyhow::Result<Verified> {
    anyhow::bail!("SNP evidence verification is not implemented yet")
}
