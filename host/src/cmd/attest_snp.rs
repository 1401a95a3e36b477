//! `parley attest` for SNP evidence: thin glue over `parley_attestation::snp`.

use std::path::Path;

use anyhow::Context;
use parley_attestation::snp::{
    AmdCert, Endorsements, Report, TrustAnchors, json, verify as snp_verify,
};
use serde_json::json;

use super::attest::{Verified, VerifyInputs};

pub fn inspect(bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
    let report = Report::parse(bytes)?;
    Ok(json::report_json(&report, report.product()))
}

pub fn verify(bytes: &[u8], inputs: &VerifyInputs) -> anyhow::Result<Verified> {
    let custom_roots;
    let roots = match &inputs.roots {
        Some(dir) => {
            let mut certs = Vec::new();
            for (name, data) in read_inputs(dir)? {
                certs.extend(
                    AmdCert::parse_many(&data, &name)
                        .with_context(|| format!("cannot use {name} as a root certificate"))?,
                );
            }
            custom_roots = TrustAnchors::from_certs(certs)
                .with_context(|| format!("no usable AMD roots in {}", dir.display()))?;
            &custom_roots
        }
        None => TrustAnchors::pinned()?,
    };
    let mut endorsements = Endorsements::default();
    if let Some(dir) = &inputs.certs {
        for (name, data) in read_inputs(dir)? {
            endorsements.add_file(&name, &data);
        }
    }
    Ok(
        match snp_verify::verify(bytes, &endorsements, roots, inputs.at) {
            Ok(v) => {
                let mut details = v.details;
                if let Some(obj) = details.as_object_mut() {
                    obj.insert("claims".into(), json!(v.claims));
                }
                Verified {
                    findings: v.findings,
                    details,
                }
            }
            Err(r) => Verified {
                findings: r.findings,
                details: r.details,
            },
        },
    )
}

/// The certificate/CRL files of `path`: the file itself, or the files of a directory
/// whose names end in .pem, .der, .crt, .cer or .crl (other files are ignored).
fn read_inputs(path: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
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

    use parley_attestation::verdict::Status;
    use time::macros::datetime;

    use super::*;

    fn vectors() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors"))
    }

    fn inputs(certs: Option<PathBuf>, roots: Option<PathBuf>) -> VerifyInputs {
        VerifyInputs {
            certs,
            collateral: None,
            roots,
            at: datetime!(2025-06-01 00:00 UTC),
        }
    }

    #[test]
    fn inspect_prints_every_field() {
        let bytes = std::fs::read(vectors().join("snp/genoa-v3-azure/report.bin")).unwrap();
        let j = inspect(&bytes).unwrap();
        assert_eq!(j["type"], "snp");
        assert_eq!(j["product"], "Genoa");
        assert_eq!(j["version"], 3);
        assert_eq!(j["guest_svn"], 65547);
        assert_eq!(j["cpuid_fam_id"], 0x19);
        assert_eq!(j["reported_tcb"]["snp"], 23);
        for field in [
            "policy",
            "family_id",
            "image_id",
            "vmpl",
            "signature_algo",
            "current_tcb",
            "platform_info",
            "signing_key",
            "mask_chip_key",
            "report_data",
            "measurement",
            "host_data",
            "id_key_digest",
            "author_key_digest",
            "report_id",
            "report_id_ma",
            "reported_tcb",
            "chip_id",
            "committed_tcb",
            "current_build",
            "current_minor",
            "current_major",
            "committed_build",
            "committed_minor",
            "committed_major",
            "launch_tcb",
            "launch_mit_vector",
            "current_mit_vector",
        ] {
            assert!(j.get(field).is_some(), "{field}");
        }
        assert!(inspect(&bytes[..100]).is_err());
    }

    #[test]
    fn verify_directory_of_certs() {
        let dir = vectors().join("snp/milan-v2-trustee");
        let bytes = std::fs::read(dir.join("report.bin")).unwrap();
        let v = verify(&bytes, &inputs(Some(dir.clone()), None)).unwrap();
        assert_eq!(v.findings.status(), Status::Warning);
        assert_eq!(v.details["claims"]["product"], "Milan");
        // Explicit roots: the Genoa ones do not fit a Milan VCEK.
        let genoa = vectors().join("roots/amd/genoa/ask_ark_chain.go-sev-guest.pem");
        let v = verify(&bytes, &inputs(Some(dir.clone()), Some(genoa))).unwrap();
        assert_eq!(v.findings.status(), Status::Contraindicated);
        assert!(v.findings.has("wrong-product"));
        // No certificates: refused, not an error.
        let v = verify(&bytes, &inputs(None, None)).unwrap();
        assert!(v.findings.has("missing-endorsement"));
        // Garbage evidence: a finding, not an error.
        let v = verify(b"\x02\x00\x00\x00garbage", &inputs(Some(dir), None)).unwrap();
        assert!(v.findings.has("malformed-evidence"));
    }
}
