//! `parley attest` for SIM evidence.

use super::attest::{Verified, VerifyInputs};

pub fn inspect(_bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
    anyhow::bail!("SIM evidence inspection is not implemented yet")
}

pub fn verify(_bytes: &[u8], _inputs: &VerifyInputs) -> anyhow::Result<Verified> {
    anyhow::bail!("SIM evidence verification is not implemented yet")
}
