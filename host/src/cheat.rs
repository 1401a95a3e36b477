//! Deliberate protocol deviations for demonstrations and tests (`sim-cheat` builds only).
//!
//! Release and CVM builds leave this module out entirely; a node refuses a `cheat` setting
//! unless it runs on simulated evidence.

use parley_enclave::Message;

/// How a cheating node deviates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cheat {
    /// Add one to the first element of every input share sent to the first other party.
    CorruptShare,
    /// Add one to the first element of every opening sent to the first other party.
    WrongOpening,
    /// Report a clock this many seconds off in session set-up and re-attestation.
    ClockSkew(i64),
}

pub fn parse(s: Option<&str>) -> anyhow::Result<Option<Cheat>> {
    match s {
        None => Ok(None),
        Some("corrupt-share") => Ok(Some(Cheat::CorruptShare)),
        Some("wrong-opening") => Ok(Some(Cheat::WrongOpening)),
        Some(s) if s.starts_with("clock-skew=") => {
            let secs = s["clock-skew=".len()..]
                .parse()
                .map_err(|_| anyhow::anyhow!("clock-skew=SECONDS takes an integer"))?;
            Ok(Some(Cheat::ClockSkew(secs)))
        }
        Some(other) => anyhow::bail!(
            "unknown cheat {other:?}; known: corrupt-share, wrong-opening, clock-skew=SECONDS"
        ),
    }
}

/// Tamper with an outgoing message to party `to`, if this node cheats.
pub fn apply(cheat: Option<Cheat>, me: usize, to: usize, msg: &mut Message) {
    let target_kind = match cheat {
        None | Some(Cheat::ClockSkew(_)) => return,
        Some(Cheat::CorruptShare) => "share",
        Some(Cheat::WrongOpening) => "open",
    };
    // Only the lowest-index other party is targeted, so honest parties disagree.
    let target = if me == 0 { 1 } else { 0 };
    if msg.kind() != target_kind || to != target {
        return;
    }
    let bytes = msg.chunk_mut().data.as_mut_bytes();
    // Elements are little-endian: flipping bit 0 of the first byte changes the first
    // element by ±1 and keeps the encoding canonical (unless it was p − 1; never here).
    if let Some(b) = bytes.first_mut() {
        *b ^= 1;
    }
}
