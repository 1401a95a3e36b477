//! Evidence type detection from the bytes alone.

use serde::{Deserialize, Serialize};

/// The evidence formats Parley understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceKind {
    /// AMD SEV-SNP attestation report.
    Snp,
    /// Intel TDX quote.
    Tdx,
    /// Parley simulated evidence (no hardware protection).
    Sim,
}

impl EvidenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Snp => "snp",
            EvidenceKind::Tdx => "tdx",
            EvidenceKind::Sim => "sim",
        }
    }
}

impl std::str::FromStr for EvidenceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "snp" => Ok(EvidenceKind::Snp),
            "tdx" => Ok(EvidenceKind::Tdx),
            "sim" => Ok(EvidenceKind::Sim),
            other => Err(format!(
                "unknown evidence type {other:?}: expected snp, tdx or sim"
            )),
        }
    }
}

/// Magic prefix of Parley simulated evidence.
pub const SIM_MAGIC: &[u8] = b"parley-sim-evidence/1\n";

/// Guess the evidence type from its first bytes. `None` when nothing matches; the
/// type-specific parser still decides whether the bytes are well formed.
pub fn detect(bytes: &[u8]) -> Option<EvidenceKind> {
    if bytes.starts_with(SIM_MAGIC) {
        return Some(EvidenceKind::Sim);
    }
    // TDX quote header: u16 version (4 or 5), u16 attestation key type, u32 TEE type 0x81.
    if let (Some(v), Some(tee)) = (le_u16(bytes, 0), le_u32(bytes, 4))
        && (v == 4 || v == 5)
        && tee == 0x81
    {
        return Some(EvidenceKind::Tdx);
    }
    // SNP report: u32 little-endian version; the report is 1184 bytes. Small versions
    // that the parser does not support are still detected so it can name them.
    if let Some(v) = le_u32(bytes, 0)
        && (1..=31).contains(&v)
    {
        return Some(EvidenceKind::Snp);
    }
    None
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)?.try_into().ok().map(u16::from_le_bytes)
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)?.try_into().ok().map(u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_prefix() {
        assert_eq!(
            detect(b"parley-sim-evidence/1\n{}"),
            Some(EvidenceKind::Sim)
        );
        let mut tdx = vec![0u8; 64];
        tdx[0] = 4;
        tdx[2] = 2;
        tdx[4] = 0x81;
        assert_eq!(detect(&tdx), Some(EvidenceKind::Tdx));
        let mut snp = vec![0u8; 1184];
        snp[0] = 2;
        assert_eq!(detect(&snp), Some(EvidenceKind::Snp));
        assert_eq!(detect(b""), None);
        assert_eq!(detect(&[0xff; 8]), None);
    }
}
