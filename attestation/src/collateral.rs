//! The collateral cache: where VCEKs/VLEKs, AMD chains and CRLs, Intel TCB Info, QE
//! Identity and CRLs are kept, and how appraisal picks what a piece of evidence needs.
//!
//! `parley collateral fetch` (host) fills the cache from AMD KDS and Intel PCS (or a
//! PCCS); this module only reads it, so auditors can use the same directory offline.
//! Layout (every file optional; what a verification needs and cannot find is a refusal
//! naming it):
//!
//! ```text
//! <dir>/snp/<Product>/cert_chain.pem        ASK + ARK      (KDS /vcek/v1/<Product>/cert_chain)
//! <dir>/snp/<Product>/crl.der               ARK's CRL      (KDS /vcek/v1/<Product>/crl)
//! <dir>/snp/<Product>/vlek_cert_chain.pem   ASVK + ARK     (KDS /vlek/v1/<Product>/cert_chain)
//! <dir>/snp/<Product>/vcek/<hwid>-<tcb>.der one VCEK per chip and reported TCB
//! <dir>/snp/<Product>/vlek/*.pem|der        VLEKs (provisioned by the cloud provider)
//! <dir>/tdx/qe_identity.json                PCS GET /tdx/certification/v4/qe/identity
//! <dir>/tdx/tcb_signing_chain.pem           PCS TCB-Info-Issuer-Chain header
//! <dir>/tdx/root_ca_crl.der                 Intel SGX Root CA CRL
//! <dir>/tdx/pck_crl_platform.der            PCS GET /sgx/certification/v4/pckcrl?ca=platform
//! <dir>/tdx/pck_crl_processor.der           … ?ca=processor
//! <dir>/tdx/fmspc-<fmspc>/tcb_info.json     PCS GET /tdx/certification/v4/tcb?fmspc=<fmspc>
//! ```
//!
//! A directory without `snp/` or `tdx/` is read as one flat TDX collateral directory
//! (the layout of [`crate::tdx::collateral`]), as `parley attest verify --collateral` has
//! always accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::evidence::sha256_hex;
use crate::snp::{AmdCert, Endorsements};
use crate::tdx::collateral::{CollateralDigest, QeIdentity, TcbInfo};
use crate::tdx::quote::CertificationData;
use crate::tdx::{self, Collateral, CollateralError, Quote};
use crate::verdict::{Reason, codes};

/// Why a cache directory could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    #[error("cannot read collateral {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "collateral file {path} is unusable: {reason}; delete it and run `parley collateral fetch` again"
    )]
    Malformed { path: String, reason: String },
    #[error(transparent)]
    Tdx(#[from] CollateralError),
}

/// Where TDX collateral comes from.
#[derive(Debug, Clone, Default)]
pub enum TdxCollateral {
    /// None was given: every TDX verification refuses with `collateral-missing`.
    #[default]
    None,
    /// One collateral set (a flat directory), used for every quote.
    Fixed(Collateral),
    /// A cache: the TCB Info and PCK CRL are chosen per quote (FMSPC, PCK CA).
    Cache(TdxCache),
}

/// The TDX part of a cache directory.
#[derive(Debug, Clone, Default)]
pub struct TdxCache {
    /// QE Identity, signing chain, root CA CRL: the same for every platform.
    pub shared: Collateral,
    /// FMSPC (lowercase hex) → (path, TCB Info response body).
    pub tcb_infos: BTreeMap<String, (String, Vec<u8>)>,
    /// `platform` / `processor` → (path, CRL DER).
    pub pck_crls: BTreeMap<String, (String, Vec<u8>)>,
}

impl TdxCollateral {
    /// The collateral for `quote`, or a reason why there is none.
    pub fn for_quote(&self, quote: &Quote<'_>) -> Result<Collateral, Reason> {
        match self {
            TdxCollateral::None => Err(Reason::refuse(
                codes::COLLATERAL_MISSING,
                "no TDX collateral was given: pass --collateral DIR (filled by `parley collateral fetch`) holding the TCB Info, QE Identity, TCB signing chain and CRLs",
            )),
            TdxCollateral::Fixed(c) => Ok(c.clone()),
            TdxCollateral::Cache(cache) => Ok(cache.for_quote(quote)),
        }
    }
}

/// The FMSPC and PCK CA (`platform` or `processor`) of a quote's PCK certificate.
pub fn quote_platform(quote: &Quote<'_>) -> Option<(String, &'static str)> {
    let CertificationData::PckCertChain(pem) = quote.signature_data().certification_data else {
        return None;
    };
    let chain = tdx::pck::PckChain::from_pem(pem).ok()?;
    let leaf = chain.leaf()?;
    let ext = tdx::pck::PckExtension::from_cert(leaf).ok()?;
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let ca = if cert.issuer().to_string().contains("Processor") {
        "processor"
    } else {
        "platform"
    };
    Some((hex::encode(ext.fmspc), ca))
}

impl TdxCache {
    fn for_quote(&self, quote: &Quote<'_>) -> Collateral {
        let mut c = self.shared.clone();
        let Some((fmspc, ca)) = quote_platform(quote) else {
            return c;
        };
        if let Some((path, bytes)) = self.tcb_infos.get(&fmspc) {
            // Validated when the cache was loaded; a failure here leaves the item absent,
            // which verification reports as missing.
            let _ = c.set_tcb_info_pcs(bytes, path);
        }
        if let Some((path, der)) = self.pck_crls.get(ca) {
            c.digests.push(CollateralDigest {
                item: "PCK CRL",
                origin: path.clone(),
                sha256: sha256_hex(der),
            });
            c.pck_crl = Some(der.clone());
        }
        c
    }
}

/// Everything read from a collateral directory.
#[derive(Debug, Clone, Default)]
pub struct CollateralSet {
    pub snp: Endorsements,
    pub tdx: TdxCollateral,
}

impl CollateralSet {
    /// Read a cache directory (layout above), or a flat TDX collateral directory.
    pub fn load(dir: &Path) -> Result<Self, CacheError> {
        if !dir.is_dir() {
            return Err(CacheError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let (snp_dir, tdx_dir) = (dir.join("snp"), dir.join("tdx"));
        if !snp_dir.is_dir() && !tdx_dir.is_dir() {
            return Ok(CollateralSet {
                snp: Endorsements::default(),
                tdx: TdxCollateral::Fixed(Collateral::from_dir(dir)?),
            });
        }
        let mut set = CollateralSet::default();
        if snp_dir.is_dir() {
            for path in files_under(&snp_dir)? {
                let bytes = read(&path)?;
                let before = set.snp.problems.len();
                set.snp.add_file(&path.display().to_string(), &bytes);
                if let Some(p) = set.snp.problems.get(before) {
                    return Err(CacheError::Malformed {
                        path: path.display().to_string(),
                        reason: p.clone(),
                    });
                }
            }
        }
        if tdx_dir.is_dir() {
            let mut cache = TdxCache {
                shared: Collateral::from_dir(&tdx_dir)?,
                ..TdxCache::default()
            };
            for ca in ["platform", "processor"] {
                let path = tdx_dir.join(format!("pck_crl_{ca}.der"));
                if path.is_file() {
                    let der = read(&path)?;
                    check_crl(&path, &der)?;
                    cache
                        .pck_crls
                        .insert(ca.to_owned(), (path.display().to_string(), der));
                }
            }
            for entry in list(&tdx_dir)? {
                let Some(fmspc) = entry
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("fmspc-"))
                    .map(str::to_ascii_lowercase)
                else {
                    continue;
                };
                let path = entry.join("tcb_info.json");
                if path.is_file() {
                    let bytes = read(&path)?;
                    // Parse now so a bad file is named at load time, not at appraisal.
                    Collateral::default().set_tcb_info_pcs(&bytes, &path.display().to_string())?;
                    cache
                        .tcb_infos
                        .insert(fmspc, (path.display().to_string(), bytes));
                }
            }
            set.tdx = TdxCollateral::Cache(cache);
        }
        Ok(set)
    }

    /// What expires when, soonest first.
    pub fn expiries(dir: &Path) -> Result<Vec<Expiry>, CacheError> {
        let mut out = Vec::new();
        for path in files_under(dir)? {
            let bytes = read(&path)?;
            let shown = path
                .strip_prefix(dir)
                .unwrap_or(&path)
                .display()
                .to_string();
            out.extend(expiry_of(&shown, &path, &bytes)?);
        }
        out.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.file.cmp(&b.file)));
        Ok(out)
    }
}

/// When one item of the cache stops being usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    /// Path relative to the cache directory.
    pub file: String,
    /// What it is (`certificate CN=…`, `CRL`, `TCB Info`, `QE Identity`).
    pub what: String,
    #[serde(serialize_with = "rfc3339")]
    pub not_after: OffsetDateTime,
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    use time::format_description::well_known::Rfc3339;
    s.serialize_str(
        &t.format(&Rfc3339)
            .unwrap_or_else(|_| t.unix_timestamp().to_string()),
    )
}

fn expiry_of(shown: &str, path: &Path, bytes: &[u8]) -> Result<Vec<Expiry>, CacheError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let item = |what: String, not_after: OffsetDateTime| Expiry {
        file: shown.to_owned(),
        what,
        not_after,
    };
    if name.ends_with(".json") {
        #[derive(serde::Deserialize)]
        struct Any {
            #[serde(rename = "tcbInfo")]
            tcb_info: Option<Box<serde_json::value::RawValue>>,
            #[serde(rename = "enclaveIdentity")]
            enclave_identity: Option<Box<serde_json::value::RawValue>>,
        }
        let any: Any = serde_json::from_slice(bytes).map_err(|e| malformed(path, e))?;
        let mut out = Vec::new();
        if let Some(raw) = any.tcb_info {
            let t: TcbInfo = serde_json::from_str(raw.get()).map_err(|e| malformed(path, e))?;
            out.push(item(
                format!("TCB Info for FMSPC {}", hex::encode(t.fmspc)),
                t.next_update,
            ));
        }
        if let Some(raw) = any.enclave_identity {
            let q: QeIdentity = serde_json::from_str(raw.get()).map_err(|e| malformed(path, e))?;
            out.push(item(format!("QE Identity {}", q.id), q.next_update));
        }
        return Ok(out);
    }
    if name.ends_with(".crl") || name.contains("crl") {
        let der = crl_der(bytes).ok_or_else(|| malformed(path, "not a DER or PEM CRL"))?;
        let (_, crl) = CertificateRevocationList::from_der(&der).map_err(|e| malformed(path, e))?;
        let next = crl
            .next_update()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.timestamp()).ok())
            .ok_or_else(|| malformed(path, "the CRL has no nextUpdate"))?;
        return Ok(vec![item(format!("CRL from {}", crl.issuer()), next)]);
    }
    let mut out = Vec::new();
    for der in cert_ders(bytes) {
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| malformed(path, e))?;
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| malformed(path, e))?;
        out.push(item(format!("certificate {}", cert.subject()), not_after));
    }
    Ok(out)
}

fn cert_ders(bytes: &[u8]) -> Vec<Vec<u8>> {
    if bytes.first() == Some(&0x30) {
        return vec![bytes.to_vec()];
    }
    CertificateDer::pem_slice_iter(bytes)
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect()
}

/// A CRL as DER from DER, PEM or hex.
pub fn crl_der(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.first() == Some(&0x30) {
        return Some(bytes.to_vec());
    }
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        if let Ok((SectionKind::Crl, der)) = item {
            return Some(der);
        }
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| hex::decode(t.trim()).ok())
        .filter(|d| d.first() == Some(&0x30))
}

fn check_crl(path: &Path, der: &[u8]) -> Result<(), CacheError> {
    CertificateRevocationList::from_der(der)
        .map(|_| ())
        .map_err(|e| malformed(path, e))
}

/// Parse a VCEK/VLEK certificate file (for the fetcher's checks).
pub fn amd_cert(path: &Path, bytes: &[u8]) -> Result<AmdCert, CacheError> {
    AmdCert::from_der(
        cert_ders(bytes)
            .first()
            .ok_or_else(|| malformed(path, "no certificate"))?,
        &path.display().to_string(),
    )
    .map_err(|e| malformed(path, e))
}

fn malformed(path: &Path, e: impl std::fmt::Display) -> CacheError {
    CacheError::Malformed {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CacheError> {
    std::fs::read(path).map_err(|source| CacheError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let io = |source| CacheError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    out.sort();
    Ok(out)
}

/// Certificate, CRL and JSON files under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> Result<Vec<PathBuf>, CacheError> {
    let mut out = Vec::new();
    for p in list(dir)? {
        if p.is_dir() {
            out.extend(files_under(&p)?);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "pem" | "der" | "crt" | "cer" | "crl" | "json"))
        {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crl_forms() {
        assert_eq!(crl_der(&[0x30, 1]), Some(vec![0x30, 1]));
        assert_eq!(crl_der(b"3001"), Some(vec![0x30, 1]));
        assert_eq!(crl_der(b"zz"), None);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let e = CollateralSet::load(Path::new("/nonexistent/parley")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/parley"), "{e}");
    }
}
