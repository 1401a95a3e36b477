//! `parley attest` for TDX evidence.

use super::attest::{Verified, VerifyInputs};

pub fn inspect(_bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
    anyhow::bail!("TDX evidence inspection is not implemented yet")
}

pub fn verify(_bytes: &[u8], _inputs: &VerifyInputs) -> anyhow::Result<Verified> {
    anyhow::bail!("TDX evidence verification is not implemented yet")
}
