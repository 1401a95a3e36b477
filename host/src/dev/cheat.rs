//! Deliberate deviations for demonstrations and tests (`sim-cheat` builds only).
//!
//! Release and CVM builds leave this module, and the enclave's `cheat` feature, out
//! entirely; a node refuses a `cheat` setting unless it runs on simulated evidence.

use parley_enclave::cheat::Deviation;

/// How a cheating node deviates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cheat {
    /// A protocol deviation carried out by the MPC engine (`wrong-share`, `additive-attack`,
    /// `inconsistent-input`, `wrong-opening`, `inconsistent-prss-key`).
    Mpc(Deviation),
    /// Report a clock this many seconds off in session set-up and re-attestation.
    ClockSkew(i64),
}

/// The kinds `--cheat NODE:KIND` accepts.
pub const KINDS: &str = "wrong-share, additive-attack, inconsistent-input, wrong-opening, inconsistent-prss-key, clock-skew=SECONDS";

pub fn parse(s: Option<&str>) -> anyhow::Result<Option<Cheat>> {
    let Some(s) = s else { return Ok(None) };
    if let Some(secs) = s.strip_prefix("clock-skew=") {
        let secs = secs
            .parse()
            .map_err(|_| anyhow::anyhow!("clock-skew=SECONDS takes an integer"))?;
        return Ok(Some(Cheat::ClockSkew(secs)));
    }
    match s.parse::<Deviation>() {
        Ok(d) => Ok(Some(Cheat::Mpc(d))),
        Err(_) => anyhow::bail!("unknown cheat {s:?}; known: {KINDS}"),
    }
}
