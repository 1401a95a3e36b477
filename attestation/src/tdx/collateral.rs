//! DCAP collateral for TDX: TCB Info, QE Identity, their signing chain, and the CRLs,
//! loaded from a directory in either the Intel PCS response format or dcap-qvl's JSON.
//!
//! Directory layout (`--collateral DIR`), every file optional; what is absent is named in
//! the findings as missing:
//!
//! | item | file (aliases) | content |
//! |---|---|---|
//! | everything, dcap-qvl format | `collateral.json` | dcap-qvl `QuoteCollateralV3` JSON: `tcb_info`, `tcb_info_signature`, `tcb_info_issuer_chain`, `qe_identity`, `qe_identity_signature`, `qe_identity_issuer_chain`, `pck_crl`, `root_ca_crl` (CRLs and signatures hex) |
//! | TCB Info | `tcb_info.json` (`tcbInfo.json`, `tcbinfo_response.json`) | PCS body of `GET /tdx/certification/v4/tcb?fmspc=…`: `{"tcbInfo":{…},"signature":"hex"}` |
//! | QE Identity | `qe_identity.json` (`enclaveIdentity.json`, `qe_identity_response.json`) | PCS body of `GET /tdx/certification/v4/qe/identity`: `{"enclaveIdentity":{…},"signature":"hex"}` |
//! | TCB signing chain | `tcb_signing_chain.pem` (`tcb_info_issuer_chain.pem`) | PEM of the PCS `TCB-Info-Issuer-Chain` header (URL-decoded): TCB Signing cert, then root; signs both TCB Info and QE Identity |
//! | PCK CRL | `pck_crl.der` or `pck_crl.pem` (`pckcrl.der`) | PCS body of `GET /sgx/certification/v4/pckcrl?ca=platform` (or `processor`, matching the quote's PCK CA) |
//! | Root CA CRL | `root_ca_crl.der` or `root_ca_crl.pem` | `https://certificates.trustedservices.intel.com/IntelSGXRootCA.der` |
//!
//! A split file and `collateral.json` may be combined: a split file replaces the same item
//! from `collateral.json`. Two files for one item (an alias and a canonical name) are an
//! error, as is anything that does not parse. Loading parses and decodes everything once,
//! so a loaded [`Collateral`] can be cached and reused for many verifications; signatures
//! and validity windows are checked by the verifier at the verification time.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::roots::sha256_hex;

/// Why collateral could not be loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CollateralError {
    #[error("cannot read collateral {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("collateral {origin} is malformed: {reason}")]
    Malformed { origin: String, reason: String },
    #[error("collateral directory {dir} holds both {first} and {second} for the {item}; keep one")]
    Ambiguous {
        dir: String,
        item: &'static str,
        first: String,
        second: String,
    },
}

fn malformed(origin: &str, reason: impl std::fmt::Display) -> CollateralError {
    CollateralError::Malformed {
        origin: origin.to_owned(),
        reason: reason.to_string(),
    }
}

/// TCB status values in Intel's TCB Info and QE Identity, plus the two TDX 1.5 results of
/// combining launch and current TCB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum TcbStatus {
    UpToDate,
    #[serde(rename = "SWHardeningNeeded")]
    SwHardeningNeeded,
    ConfigurationNeeded,
    #[serde(rename = "ConfigurationAndSWHardeningNeeded")]
    ConfigurationAndSwHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
    #[serde(rename = "TDRelaunchAdvised")]
    TdRelaunchAdvised,
    #[serde(rename = "TDRelaunchAdvisedConfigurationNeeded")]
    TdRelaunchAdvisedConfigurationNeeded,
}

impl TcbStatus {
    /// Intel's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SwHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
            TcbStatus::TdRelaunchAdvised => "TDRelaunchAdvised",
            TcbStatus::TdRelaunchAdvisedConfigurationNeeded => {
                "TDRelaunchAdvisedConfigurationNeeded"
            }
        }
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One SVN of a TCB level (category and type are informational).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Component {
    pub svn: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Tcb {
    #[serde(rename = "sgxtcbcomponents")]
    pub sgx_components: Vec<Component>,
    #[serde(rename = "tdxtcbcomponents", default)]
    pub tdx_components: Vec<Component>,
    #[serde(rename = "pcesvn")]
    pub pce_svn: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcbLevel {
    pub tcb: Tcb,
    pub tcb_date: String,
    pub tcb_status: TcbStatus,
    #[serde(rename = "advisoryIDs", default)]
    pub advisory_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TdxModule {
    #[serde(with = "hex_array")]
    pub mrsigner: [u8; 48],
    #[serde(with = "hex_array")]
    pub attributes: [u8; 8],
    #[serde(with = "hex_array")]
    pub attributes_mask: [u8; 8],
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ModuleTcb {
    pub isvsvn: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TdxModuleTcbLevel {
    pub tcb: ModuleTcb,
    pub tcb_date: String,
    pub tcb_status: TcbStatus,
    #[serde(rename = "advisoryIDs", default)]
    pub advisory_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TdxModuleIdentity {
    pub id: String,
    #[serde(with = "hex_array")]
    pub mrsigner: [u8; 48],
    #[serde(with = "hex_array")]
    pub attributes: [u8; 8],
    #[serde(with = "hex_array")]
    pub attributes_mask: [u8; 8],
    pub tcb_levels: Vec<TdxModuleTcbLevel>,
}

/// The `tcbInfo` object of a TCB Info response (TDX: id "TDX", version 3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TcbInfo {
    pub id: String,
    pub version: u32,
    #[serde(with = "rfc3339")]
    pub issue_date: OffsetDateTime,
    #[serde(with = "rfc3339")]
    pub next_update: OffsetDateTime,
    #[serde(with = "hex_array")]
    pub fmspc: [u8; 6],
    #[serde(with = "hex_array")]
    pub pce_id: [u8; 2],
    pub tcb_type: u32,
    pub tcb_evaluation_data_number: u32,
    #[serde(default)]
    pub tdx_module: Option<TdxModule>,
    #[serde(default)]
    pub tdx_module_identities: Vec<TdxModuleIdentity>,
    pub tcb_levels: Vec<TcbLevel>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QeTcb {
    pub isvsvn: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QeTcbLevel {
    pub tcb: QeTcb,
    pub tcb_date: String,
    pub tcb_status: TcbStatus,
    #[serde(rename = "advisoryIDs", default)]
    pub advisory_ids: Vec<String>,
}

/// The `enclaveIdentity` object of a QE Identity response (TDX: id "TD_QE", version 2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QeIdentity {
    pub id: String,
    pub version: u32,
    #[serde(with = "rfc3339")]
    pub issue_date: OffsetDateTime,
    #[serde(with = "rfc3339")]
    pub next_update: OffsetDateTime,
    pub tcb_evaluation_data_number: u32,
    #[serde(with = "hex_array")]
    pub miscselect: [u8; 4],
    #[serde(with = "hex_array")]
    pub miscselect_mask: [u8; 4],
    #[serde(with = "hex_array")]
    pub attributes: [u8; 16],
    #[serde(with = "hex_array")]
    pub attributes_mask: [u8; 16],
    #[serde(with = "hex_array")]
    pub mrsigner: [u8; 32],
    pub isvprodid: u16,
    pub tcb_levels: Vec<QeTcbLevel>,
}

/// A signed JSON object: the exact bytes Intel signed, the signature, and the parse.
#[derive(Debug, Clone)]
pub struct Signed<T> {
    /// The signed bytes: the JSON value exactly as it appears in the response.
    pub body: Vec<u8>,
    /// ECDSA P-256 signature, r‖s big-endian.
    pub signature: Vec<u8>,
    pub value: T,
    /// File (and field) it came from.
    pub origin: String,
}

/// One loaded collateral item, for verdicts: what it is, where from, its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CollateralDigest {
    pub item: &'static str,
    pub origin: String,
    pub sha256: String,
}

/// Everything needed to appraise a TDX quote besides the quote and the roots.
#[derive(Debug, Clone, Default)]
pub struct Collateral {
    pub tcb_info: Option<Signed<TcbInfo>>,
    pub qe_identity: Option<Signed<QeIdentity>>,
    /// Signing chain of the TCB Info (leaf first).
    pub tcb_info_issuer_chain: Option<Vec<CertificateDer<'static>>>,
    /// Signing chain of the QE Identity (leaf first); Intel uses the same as TCB Info.
    pub qe_identity_issuer_chain: Option<Vec<CertificateDer<'static>>>,
    /// DER.
    pub pck_crl: Option<Vec<u8>>,
    /// DER.
    pub root_ca_crl: Option<Vec<u8>>,
    pub digests: Vec<CollateralDigest>,
}

#[derive(Deserialize)]
struct PcsTcbInfo<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
struct PcsQeIdentity<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

/// dcap-qvl's `QuoteCollateralV3` as JSON. Byte fields are hex strings (or arrays).
#[derive(Deserialize)]
struct DcapQvlJson {
    tcb_info_issuer_chain: Option<String>,
    tcb_info: Option<String>,
    tcb_info_signature: Option<Bytes>,
    qe_identity_issuer_chain: Option<String>,
    qe_identity: Option<String>,
    qe_identity_signature: Option<Bytes>,
    pck_crl: Option<Bytes>,
    root_ca_crl: Option<Bytes>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Bytes {
    Hex(String),
    Array(Vec<u8>),
}

impl Bytes {
    fn decode(self, origin: &str) -> Result<Vec<u8>, CollateralError> {
        match self {
            Bytes::Hex(s) => hex::decode(s.trim()).map_err(|e| malformed(origin, e)),
            Bytes::Array(v) => Ok(v),
        }
    }
}

const ITEMS: [(&str, &[&str]); 5] = [
    (
        "TCB Info",
        &["tcb_info.json", "tcbInfo.json", "tcbinfo_response.json"],
    ),
    (
        "QE Identity",
        &[
            "qe_identity.json",
            "enclaveIdentity.json",
            "qe_identity_response.json",
        ],
    ),
    (
        "TCB signing chain",
        &["tcb_signing_chain.pem", "tcb_info_issuer_chain.pem"],
    ),
    ("PCK CRL", &["pck_crl.der", "pck_crl.pem", "pckcrl.der"]),
    ("root CA CRL", &["root_ca_crl.der", "root_ca_crl.pem"]),
];

impl Collateral {
    /// Load a collateral directory (layout in the module docs).
    pub fn from_dir(dir: &Path) -> Result<Self, CollateralError> {
        if !dir.is_dir() {
            return Err(CollateralError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let mut c = Collateral::default();
        let all_in_one = dir.join("collateral.json");
        if all_in_one.is_file() {
            let bytes = read(&all_in_one)?;
            c = Self::from_dcap_qvl_json(&bytes, &all_in_one.display().to_string())?;
        }
        let [tcb, qe, chain, pck_crl, root_crl] = ITEMS;
        if let Some((path, bytes)) = find_one(dir, tcb)? {
            c.set_tcb_info_pcs(&bytes, &path)?;
        }
        if let Some((path, bytes)) = find_one(dir, qe)? {
            c.set_qe_identity_pcs(&bytes, &path)?;
        }
        if let Some((path, bytes)) = find_one(dir, chain)? {
            let certs = pem_certs(&bytes, &path)?;
            c.tcb_info_issuer_chain = Some(certs.clone());
            c.qe_identity_issuer_chain = Some(certs);
            c.note("TCB signing chain", path, &bytes);
        }
        if let Some((path, bytes)) = find_one(dir, pck_crl)? {
            let der = crl_der(&bytes, &path)?;
            c.note("PCK CRL", path, &der);
            c.pck_crl = Some(der);
        }
        if let Some((path, bytes)) = find_one(dir, root_crl)? {
            let der = crl_der(&bytes, &path)?;
            c.note("root CA CRL", path, &der);
            c.root_ca_crl = Some(der);
        }
        Ok(c)
    }

    /// Parse dcap-qvl's collateral JSON (`QuoteCollateralV3`).
    pub fn from_dcap_qvl_json(bytes: &[u8], origin: &str) -> Result<Self, CollateralError> {
        let j: DcapQvlJson = serde_json::from_slice(bytes).map_err(|e| malformed(origin, e))?;
        let mut c = Collateral::default();
        let field = |name: &str| format!("{origin}#{name}");
        match (j.tcb_info, j.tcb_info_signature) {
            (Some(body), Some(sig)) => {
                let o = field("tcb_info");
                let value = parse_json::<TcbInfo>(body.as_bytes(), &o)?;
                let signature = sig.decode(&field("tcb_info_signature"))?;
                c.note("TCB Info", o.clone(), body.as_bytes());
                c.tcb_info = Some(Signed {
                    body: body.into_bytes(),
                    signature,
                    value,
                    origin: o,
                });
            }
            (None, None) => {}
            _ => {
                return Err(malformed(
                    origin,
                    "tcb_info and tcb_info_signature must come together",
                ));
            }
        }
        match (j.qe_identity, j.qe_identity_signature) {
            (Some(body), Some(sig)) => {
                let o = field("qe_identity");
                let value = parse_json::<QeIdentity>(body.as_bytes(), &o)?;
                let signature = sig.decode(&field("qe_identity_signature"))?;
                c.note("QE Identity", o.clone(), body.as_bytes());
                c.qe_identity = Some(Signed {
                    body: body.into_bytes(),
                    signature,
                    value,
                    origin: o,
                });
            }
            (None, None) => {}
            _ => {
                return Err(malformed(
                    origin,
                    "qe_identity and qe_identity_signature must come together",
                ));
            }
        }
        if let Some(pem) = j.tcb_info_issuer_chain {
            let o = field("tcb_info_issuer_chain");
            c.tcb_info_issuer_chain = Some(pem_certs(pem.as_bytes(), &o)?);
            c.note("TCB Info issuer chain", o, pem.as_bytes());
        }
        if let Some(pem) = j.qe_identity_issuer_chain {
            let o = field("qe_identity_issuer_chain");
            c.qe_identity_issuer_chain = Some(pem_certs(pem.as_bytes(), &o)?);
            c.note("QE Identity issuer chain", o, pem.as_bytes());
        }
        if let Some(b) = j.pck_crl {
            let o = field("pck_crl");
            let der = b.decode(&o)?;
            c.note("PCK CRL", o, &der);
            c.pck_crl = Some(der);
        }
        if let Some(b) = j.root_ca_crl {
            let o = field("root_ca_crl");
            let der = b.decode(&o)?;
            c.note("root CA CRL", o, &der);
            c.root_ca_crl = Some(der);
        }
        Ok(c)
    }

    /// Set the TCB Info from a PCS response body (`{"tcbInfo":…,"signature":…}`).
    pub fn set_tcb_info_pcs(&mut self, bytes: &[u8], origin: &str) -> Result<(), CollateralError> {
        let r: PcsTcbInfo = serde_json::from_slice(bytes).map_err(|e| malformed(origin, e))?;
        let body = r.tcb_info.get().as_bytes().to_vec();
        let value = parse_json::<TcbInfo>(&body, origin)?;
        let signature = hex::decode(r.signature.trim()).map_err(|e| malformed(origin, e))?;
        self.replace_note("TCB Info", origin.to_owned(), &body);
        self.tcb_info = Some(Signed {
            body,
            signature,
            value,
            origin: origin.to_owned(),
        });
        Ok(())
    }

    /// Set the QE Identity from a PCS response body (`{"enclaveIdentity":…,"signature":…}`).
    pub fn set_qe_identity_pcs(
        &mut self,
        bytes: &[u8],
        origin: &str,
    ) -> Result<(), CollateralError> {
        let r: PcsQeIdentity = serde_json::from_slice(bytes).map_err(|e| malformed(origin, e))?;
        let body = r.enclave_identity.get().as_bytes().to_vec();
        let value = parse_json::<QeIdentity>(&body, origin)?;
        let signature = hex::decode(r.signature.trim()).map_err(|e| malformed(origin, e))?;
        self.replace_note("QE Identity", origin.to_owned(), &body);
        self.qe_identity = Some(Signed {
            body,
            signature,
            value,
            origin: origin.to_owned(),
        });
        Ok(())
    }

    fn note(&mut self, item: &'static str, origin: String, bytes: &[u8]) {
        self.digests.push(CollateralDigest {
            item,
            origin,
            sha256: sha256_hex(bytes),
        });
    }

    fn replace_note(&mut self, item: &'static str, origin: String, bytes: &[u8]) {
        self.digests.retain(|d| d.item != item);
        self.note(item, origin, bytes);
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CollateralError> {
    std::fs::read(path).map_err(|source| CollateralError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn find_one(
    dir: &Path,
    (item, names): (&'static str, &[&str]),
) -> Result<Option<(String, Vec<u8>)>, CollateralError> {
    let mut found: Option<String> = None;
    let mut out = None;
    for name in names {
        let path = dir.join(name);
        if !path.is_file() {
            continue;
        }
        let shown = path.display().to_string();
        if let Some(first) = found {
            return Err(CollateralError::Ambiguous {
                dir: dir.display().to_string(),
                item,
                first,
                second: shown,
            });
        }
        out = Some((shown.clone(), read(&path)?));
        found = Some(shown);
    }
    Ok(out)
}

fn parse_json<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    origin: &str,
) -> Result<T, CollateralError> {
    serde_json::from_slice(bytes).map_err(|e| malformed(origin, e))
}

fn pem_certs(bytes: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, CollateralError> {
    let mut certs = Vec::new();
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let (kind, der) = item.map_err(|e| malformed(origin, e))?;
        if kind != SectionKind::Certificate {
            return Err(malformed(
                origin,
                format!("holds a {kind:?} section; only certificates are allowed"),
            ));
        }
        certs.push(CertificateDer::from(der));
    }
    if certs.is_empty() {
        return Err(malformed(origin, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// A CRL file is DER, or PEM (`X509 CRL`), or hex of the DER (some PCCS caches).
fn crl_der(bytes: &[u8], origin: &str) -> Result<Vec<u8>, CollateralError> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| malformed(origin, e))?;
    if text.contains("-----BEGIN") {
        for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
            let (kind, der) = item.map_err(|e| malformed(origin, e))?;
            if kind == SectionKind::Crl {
                return Ok(der);
            }
        }
        return Err(malformed(origin, "holds no X509 CRL PEM section"));
    }
    hex::decode(text.trim())
        .map_err(|e| malformed(origin, format!("neither DER, PEM nor hex: {e}")))
}

/// serde for Intel's hex strings (either case) into fixed-size arrays.
mod hex_array {
    use serde::{Deserialize, Deserializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let v = hex::decode(s.as_ref()).map_err(D::Error::custom)?;
        let len = v.len();
        v.try_into()
            .map_err(|_| D::Error::custom(format!("expected {N} hex bytes, got {len}")))
    }
}

mod rfc3339 {
    use serde::{Deserialize, Deserializer, de::Error};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        OffsetDateTime::parse(&s, &Rfc3339).map_err(D::Error::custom)
    }
}

/// Format a time for messages.
pub(crate) fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
