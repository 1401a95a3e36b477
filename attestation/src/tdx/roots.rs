//! Trust anchors for Intel's PCK and TCB signing chains.
//!
//! The pinned default is the Intel SGX Root CA, embedded below as Intel publishes it
//! (<https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem>).
//! SHA-256 of its DER: `44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3`
//! (subject CN=Intel SGX Root CA, valid 2018-05-21T10:45:10Z to 2049-12-31T23:59:59Z);
//! a test checks both against the vector copies. Any other root is an explicit input and
//! is named in the findings.

use std::path::Path;

use ring::digest;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{PemObject, SectionKind};
use thiserror::Error;

use super::pck::CertSummary;

/// The Intel SGX Root CA certificate (PEM), the root of every PCK and TCB signing chain.
pub const INTEL_SGX_ROOT_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
";

/// SHA-256 fingerprint (DER) of [`INTEL_SGX_ROOT_CA_PEM`].
pub const INTEL_SGX_ROOT_CA_SHA256: &str =
    "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3";

/// Why a set of roots could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RootsError {
    #[error("cannot read root certificates from {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin} is not a PEM or DER X.509 certificate: {reason}")]
    NotACertificate { origin: String, reason: String },
    #[error("no root certificates (.pem, .crt, .cer or .der files) in {path}")]
    Empty { path: String },
}

/// One trust anchor.
#[derive(Debug, Clone)]
pub struct Root {
    pub der: CertificateDer<'static>,
    pub summary: CertSummary,
    /// True for the pinned Intel SGX Root CA (compared by DER bytes).
    pub pinned: bool,
    /// Where it came from (file name, or "pinned").
    pub origin: String,
}

/// The roots a verification accepts: the pinned Intel root by default.
#[derive(Debug, Clone)]
pub struct TrustRoots {
    roots: Vec<Root>,
}

impl TrustRoots {
    /// The pinned Intel SGX Root CA only.
    pub fn intel() -> Self {
        let der = intel_root_der();
        TrustRoots {
            roots: vec![Root {
                summary: CertSummary::of(&der).unwrap_or_else(|e| CertSummary {
                    subject: format!("unparsable pinned root: {e}"),
                    issuer: String::new(),
                    serial: String::new(),
                    not_before: String::new(),
                    not_after: String::new(),
                    sha256: INTEL_SGX_ROOT_CA_SHA256.to_owned(),
                }),
                der,
                pinned: true,
                origin: "pinned".to_owned(),
            }],
        }
    }

    /// Explicit roots, each DER or PEM; `origin` names them in errors and findings.
    pub fn from_certs(certs: Vec<(String, Vec<u8>)>) -> Result<Self, RootsError> {
        let pinned_der = intel_root_der();
        let mut roots = Vec::new();
        for (origin, bytes) in certs {
            for der in decode_certs(&origin, &bytes)? {
                let summary =
                    CertSummary::of(&der).map_err(|reason| RootsError::NotACertificate {
                        origin: origin.clone(),
                        reason,
                    })?;
                roots.push(Root {
                    pinned: der.as_ref() == pinned_der.as_ref(),
                    der,
                    summary,
                    origin: origin.clone(),
                });
            }
        }
        Ok(TrustRoots { roots })
    }

    /// Every `.pem`, `.crt`, `.cer` and `.der` file in `dir` (other files are ignored).
    pub fn from_dir(dir: &Path) -> Result<Self, RootsError> {
        let io = |source| RootsError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?
            .into_iter()
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "pem" | "crt" | "cer" | "der"))
            })
            .collect();
        files.sort();
        let mut certs = Vec::new();
        for path in files {
            let bytes = std::fs::read(&path).map_err(|source| RootsError::Io {
                path: path.display().to_string(),
                source,
            })?;
            certs.push((path.display().to_string(), bytes));
        }
        let roots = Self::from_certs(certs)?;
        if roots.roots.is_empty() {
            return Err(RootsError::Empty {
                path: dir.display().to_string(),
            });
        }
        Ok(roots)
    }

    pub fn roots(&self) -> &[Root] {
        &self.roots
    }
}

fn intel_root_der() -> CertificateDer<'static> {
    // The constant is valid PEM (tested); an empty certificate would make every chain fail.
    CertificateDer::from_pem_slice(INTEL_SGX_ROOT_CA_PEM.as_bytes())
        .unwrap_or_else(|_| CertificateDer::from(Vec::new()))
}

fn decode_certs(origin: &str, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, RootsError> {
    if bytes.starts_with(&[0x30]) {
        return Ok(vec![CertificateDer::from(bytes.to_vec())]);
    }
    let mut out = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let (kind, der) = item.map_err(|e| RootsError::NotACertificate {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
        if kind == SectionKind::Certificate {
            out.push(CertificateDer::from(der));
        }
    }
    if out.is_empty() {
        return Err(RootsError::NotACertificate {
            origin: origin.to_owned(),
            reason: "no CERTIFICATE section".to_owned(),
        });
    }
    Ok(out)
}

/// Lowercase hex SHA-256 of some bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pinned_root_has_the_documented_fingerprint() {
        let roots = TrustRoots::intel();
        let [root] = roots.roots() else {
            panic!("one pinned root expected");
        };
        assert_eq!(sha256_hex(&root.der), INTEL_SGX_ROOT_CA_SHA256);
        assert_eq!(root.summary.sha256, INTEL_SGX_ROOT_CA_SHA256);
        assert!(root.summary.subject.contains("CN=Intel SGX Root CA"));
        assert_eq!(root.summary.not_after, "2049-12-31T23:59:59Z");
        assert!(root.pinned);
    }

    #[test]
    fn explicit_roots_are_marked_pinned_only_when_identical() {
        let der = intel_root_der().as_ref().to_vec();
        let roots = TrustRoots::from_certs(vec![("a.der".into(), der)]).unwrap();
        assert!(roots.roots()[0].pinned);
        assert!(matches!(
            TrustRoots::from_certs(vec![("b.pem".into(), b"junk".to_vec())]),
            Err(RootsError::NotACertificate { .. })
        ));
    }
}
