//! `parley attest` for SNP evidence: loading AMD roots and endorsements from files.

use std::path::Path;

use anyhow::Context;
use parley_attestation::snp::{AmdCert, TrustAnchors};

/// Explicit AMD roots (ARKs, optionally ASKs/ASVKs) from a file or directory.
pub fn roots(dir: &Path) -> anyhow::Result<TrustAnchors> {
    let mut certs = Vec::new();
    for (name, data) in read_inputs(dir)? {
        certs.extend(
            AmdCert::parse_many(&data, &name)
                .with_context(|| format!("cannot use {name} as a root certificate"))?,
        );
    }
    TrustAnchors::from_certs(certs)
        .with_context(|| format!("no usable AMD roots in {}", dir.display()))
}

/// The certificate/CRL files of `path`: the file itself, or the files of a directory
/// whose names end in .pem, .der, .crt, .cer or .crl (other files are ignored).
pub fn read_inputs(path: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let read = |p: &Path| {
        std::fs::read(p)
            .with_context(|| format!("cannot read {}", p.display()))
            .map(|d| (p.display().to_string(), d))
    };
    if !path.is_dir() {
        return Ok(vec![read(path)?]);
    }
    let mut paths: Vec<_> = std::fs::read_dir(path)
        .with_context(|| format!("cannot list {}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["pem", "der", "crt", "cer", "crl"].contains(&e.to_ascii_lowercase().as_str())
                })
        })
        .collect();
    paths.sort();
    paths.iter().map(|p| read(p)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use std::path::PathBuf;

    use parley_attestation::evidence::{self, EvidenceKind};
    use parley_attestation::verdict::Status;
    use time::macros::datetime;

    use super::super::attest::{InputArgs, load_inputs};

    fn vectors() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors"))
    }

    fn verify(bytes: &[u8], certs: Option<PathBuf>, roots: Option<PathBuf>) -> evidence::Verified {
        let args = InputArgs {
            certs,
            collateral: None,
            roots,
        };
        let inputs = load_inputs(Some(EvidenceKind::Snp), &args).unwrap();
        evidence::verify(bytes, None, &inputs, datetime!(2025-06-01 00:00 UTC))
    }

    #[test]
    fn inspect_prints_every_field() {
        let bytes = std::fs::read(vectors().join("snp/genoa-v3-azure/report.bin")).unwrap();
        let j = evidence::verifier(EvidenceKind::Snp)
            .inspect(&bytes)
            .unwrap();
        assert_eq!(j["type"], "snp");
        assert_eq!(j["product"], "Genoa");
        assert_eq!(j["version"], 3);
        assert_eq!(j["reported_tcb"]["snp"], 23);
        for field in [
            "policy",
            "measurement",
            "chip_id",
            "launch_tcb",
            "current_mit_vector",
        ] {
            assert!(j.get(field).is_some(), "{field}");
        }
        assert!(
            evidence::verifier(EvidenceKind::Snp)
                .inspect(&bytes[..100])
                .is_err()
        );
    }

    #[test]
    fn verify_directory_of_certs() {
        let dir = vectors().join("snp/milan-v2-trustee");
        let bytes = std::fs::read(dir.join("report.bin")).unwrap();
        let v = verify(&bytes, Some(dir.clone()), None);
        assert_eq!(v.findings.status(), Status::Warning);
        assert_eq!(v.details["claims"]["product"], "Milan");
        // Explicit roots: the Genoa ones do not fit a Milan VCEK.
        let genoa = vectors().join("roots/amd/genoa/ask_ark_chain.go-sev-guest.pem");
        let v = verify(&bytes, Some(dir.clone()), Some(genoa));
        assert_eq!(v.findings.status(), Status::Contraindicated);
        assert!(v.findings.has("wrong-product"));
        // No certificates: refused, not an error.
        let v = verify(&bytes, None, None);
        assert!(v.findings.has("missing-endorsement"));
        // Garbage evidence: a finding, not an error.
        let v = verify(b"\x02\x00\x00\x00garbage", Some(dir), None);
        assert!(v.findings.has("malformed-evidence"));
    }
}
