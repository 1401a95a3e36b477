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
