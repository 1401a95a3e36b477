//! The PCK certificate chain carried in a quote, and the Intel SGX extension of the PCK
//! leaf certificate (FMSPC, PCE id, TCB components), decoded with `x509-parser`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest;
use rustls_pki_types::CertificateDer;
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::der_parser::ber::BerObjectContent;
use x509_parser::der_parser::der::{DerObject, parse_der};
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Intel's chains are leaf, PCK CA, root; a longer list is refused before any parsing
/// work (path building over attacker-chosen lists costs time).
pub const MAX_CHAIN_LEN: usize = 5;

/// Why the PCK certificate chain or its SGX extension could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PckError {
    #[error("the PCK certificate chain is not valid PEM: {reason}")]
    Pem { reason: String },
    #[error(
        "the PCK certificate chain holds a PEM section of kind {kind:?}; only certificates are allowed"
    )]
    NotACertificate { kind: String },
    #[error("the PCK certificate chain is empty")]
    Empty,
    #[error(
        "the PCK certificate chain holds {count} certificates; at most {MAX_CHAIN_LEN} are accepted"
    )]
    TooLong { count: usize },
    #[error("certificate {index} of the PCK chain is not valid X.509: {reason}")]
    Certificate { index: usize, reason: String },
    #[error("the PCK leaf certificate has no Intel SGX extension (OID 1.2.840.113741.1.13.1)")]
    MissingSgxExtension,
    #[error("the PCK leaf certificate's SGX extension is malformed at {field}: {reason}")]
    SgxExtension { field: &'static str, reason: String },
}

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

/// The PCK certificates, DER, leaf first, as they appear in the quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckChain {
    pub certs: Vec<CertificateDer<'static>>,
}

impl PckChain {
    /// Decode the PEM chain of certification data type 5.
    ///
    /// Strict form, so that every byte of it matters: trailing NUL bytes (the chain is a
    /// C string in Intel's QE) are dropped; then only `CERTIFICATE` blocks and blank
    /// lines may appear, block lines are base64 only, and the base64 must be canonical
    /// (padding and unused bits as an encoder writes them).
    pub fn from_pem(bytes: &[u8]) -> Result<Self, PckError> {
        let text = trim_nul(bytes);
        let mut certs: Vec<CertificateDer<'static>> = Vec::new();
        let mut block: Option<Vec<u8>> = None;
        for (n, raw) in text.split(|b| *b == b'\n').enumerate() {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            let pem = |reason: &str| PckError::Pem {
                reason: format!("line {}: {reason}", n + 1),
            };
            match block.as_mut() {
                None if line.is_empty() => {}
                None if line == BEGIN => block = Some(Vec::new()),
                None if line.starts_with(b"-----BEGIN ") => {
                    return Err(PckError::NotACertificate {
                        kind: String::from_utf8_lossy(line).into_owned(),
                    });
                }
                None => return Err(pem("text outside a CERTIFICATE block")),
                Some(b64) if line == END => {
                    let der = STANDARD
                        .decode(&*b64)
                        .map_err(|e| pem(&format!("invalid base64: {e}")))?;
                    certs.push(CertificateDer::from(der));
                    if certs.len() > MAX_CHAIN_LEN {
                        return Err(PckError::TooLong { count: certs.len() });
                    }
                    block = None;
                }
                Some(b64) => {
                    if !line
                        .iter()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'='))
                    {
                        return Err(pem("a character that is not base64"));
                    }
                    b64.extend_from_slice(line);
                }
            }
        }
        if block.is_some() {
            return Err(PckError::Pem {
                reason: "a CERTIFICATE block has no END line".to_owned(),
            });
        }
        if certs.is_empty() {
            return Err(PckError::Empty);
        }
        for (index, cert) in certs.iter().enumerate() {
            match X509Certificate::from_der(cert) {
                Ok(([], _)) => {}
                Ok((rest, _)) => {
                    return Err(PckError::Certificate {
                        index,
                        reason: format!("{} bytes after the certificate", rest.len()),
                    });
                }
                Err(e) => {
                    return Err(PckError::Certificate {
                        index,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(PckChain { certs })
    }

    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.certs.first()
    }
}

fn trim_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    bytes.get(..end).unwrap_or_default()
}

/// What an operator or auditor needs to recognise a certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub sha256: String,
}

impl CertSummary {
    pub fn of(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        Ok(CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: serial_hex(cert.raw_serial()),
            not_before: rfc3339(cert.validity().not_before.timestamp()),
            not_after: rfc3339(cert.validity().not_after.timestamp()),
            sha256: hex::encode(digest::digest(&digest::SHA256, der)),
        })
    }
}

/// The serial as a hex number: the DER sign byte (leading zeros) is dropped.
fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode(raw.get(start..).unwrap_or(raw))
}

pub(crate) fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// The Intel SGX extension of a PCK certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckExtension {
    pub ppid: Vec<u8>,
    /// SGX TCB components 1 to 16 (the `sgxtcbcomponents` of TCB Info).
    pub tcb_components: [u8; 16],
    pub pce_svn: u16,
    pub cpu_svn: [u8; 16],
    pub pce_id: [u8; 2],
    pub fmspc: [u8; 6],
    /// 0 standard, 1 scalable, 2 scalable with integrity.
    pub sgx_type: u64,
    /// Platform CA certificates only.
    pub platform_instance_id: Option<Vec<u8>>,
    pub dynamic_platform: Option<bool>,
    pub cached_keys: Option<bool>,
    pub smt_enabled: Option<bool>,
}

const SGX_EXTENSION: &str = "1.2.840.113741.1.13.1";

impl PckExtension {
    /// Decode the SGX extension of a PCK certificate (DER).
    pub fn from_cert(der: &[u8]) -> Result<Self, PckError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| PckError::Certificate {
            index: 0,
            reason: e.to_string(),
        })?;
        let oid = oid(SGX_EXTENSION)?;
        let ext = cert
            .get_extension_unique(&oid)
            .map_err(|e| PckError::SgxExtension {
                field: "extension",
                reason: e.to_string(),
            })?
            .ok_or(PckError::MissingSgxExtension)?;
        Self::from_extension_value(ext.value)
    }

    /// Decode the DER value of the SGX extension: a SEQUENCE of (OID, value) pairs.
    pub fn from_extension_value(value: &[u8]) -> Result<Self, PckError> {
        let top = entries(value, "extension")?;
        let tcb = entries_of(get(&top, ".2", "tcb")?, "tcb")?;
        let mut tcb_components = [0u8; 16];
        for (i, slot) in tcb_components.iter_mut().enumerate() {
            let suffix = format!(".2.{}", i + 1);
            let v = get(&tcb, &suffix, "tcb.component")?;
            *slot = int(v, "tcb.component", u64::from(u8::MAX))?
                .try_into()
                .map_err(|_| bad("tcb.component", "out of range"))?;
        }
        let pce_svn = int(get(&tcb, ".2.17", "tcb.pcesvn")?, "tcb.pcesvn", 0xffff)?
            .try_into()
            .map_err(|_| bad("tcb.pcesvn", "out of range"))?;
        let cpu_svn = fixed::<16>(get(&tcb, ".2.18", "tcb.cpusvn")?, "tcb.cpusvn")?;
        let config = match find(&top, ".7") {
            Some(v) => Some(entries_of(v, "configuration")?),
            None => None,
        };
        let flag = |suffix: &str, field: &'static str| -> Result<Option<bool>, PckError> {
            let Some(config) = &config else {
                return Ok(None);
            };
            find(config, suffix)
                .map(|v| match v.content {
                    BerObjectContent::Boolean(b) => Ok(b),
                    _ => Err(bad(field, "not a BOOLEAN")),
                })
                .transpose()
        };
        Ok(PckExtension {
            ppid: octets(get(&top, ".1", "ppid")?, "ppid")?.to_vec(),
            tcb_components,
            pce_svn,
            cpu_svn,
            pce_id: fixed::<2>(get(&top, ".3", "pceid")?, "pceid")?,
            fmspc: fixed::<6>(get(&top, ".4", "fmspc")?, "fmspc")?,
            sgx_type: match get(&top, ".5", "sgx_type")?.content {
                BerObjectContent::Enum(v) => v,
                _ => return Err(bad("sgx_type", "not an ENUMERATED")),
            },
            platform_instance_id: find(&top, ".6")
                .map(|v| octets(v, "platform_instance_id").map(<[u8]>::to_vec))
                .transpose()?,
            dynamic_platform: flag(".7.1", "configuration.dynamic_platform")?,
            cached_keys: flag(".7.2", "configuration.cached_keys")?,
            smt_enabled: flag(".7.3", "configuration.smt_enabled")?,
        })
    }
}

type Entries<'a> = Vec<(String, DerObject<'a>)>;

fn oid(s: &str) -> Result<Oid<'static>, PckError> {
    s.parse::<Oid>().map_err(|_| bad("oid", "invalid constant"))
}

fn bad(field: &'static str, reason: impl Into<String>) -> PckError {
    PckError::SgxExtension {
        field,
        reason: reason.into(),
    }
}

/// Parse a DER SEQUENCE of SEQUENCE { OID, value } with no trailing bytes.
fn entries<'a>(der: &'a [u8], field: &'static str) -> Result<Entries<'a>, PckError> {
    let (rest, obj) = parse_der(der).map_err(|e| bad(field, e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(field, format!("{} trailing bytes", rest.len())));
    }
    entries_of(&obj, field)
}

fn entries_of<'a>(obj: &DerObject<'a>, field: &'static str) -> Result<Entries<'a>, PckError> {
    let seq = obj
        .as_sequence()
        .map_err(|_| bad(field, "not a SEQUENCE"))?;
    let mut out: Entries<'a> = Vec::with_capacity(seq.len());
    for entry in seq {
        let pair = entry
            .as_sequence()
            .map_err(|_| bad(field, "entry is not a SEQUENCE"))?;
        let [key, value] = pair.as_slice() else {
            return Err(bad(field, "entry is not an (OID, value) pair"));
        };
        let key = key
            .as_oid()
            .map_err(|_| bad(field, "entry key is not an OID"))?
            .to_id_string();
        if out.iter().any(|(k, _)| *k == key) {
            return Err(bad(field, format!("OID {key} appears twice")));
        }
        out.push((key, value.clone()));
    }
    Ok(out)
}

fn find<'e, 'a>(entries: &'e Entries<'a>, suffix: &str) -> Option<&'e DerObject<'a>> {
    let wanted = format!("{SGX_EXTENSION}{suffix}");
    entries.iter().find(|(k, _)| *k == wanted).map(|(_, v)| v)
}

fn get<'e, 'a>(
    entries: &'e Entries<'a>,
    suffix: &str,
    field: &'static str,
) -> Result<&'e DerObject<'a>, PckError> {
    find(entries, suffix).ok_or_else(|| bad(field, "missing"))
}

fn octets<'a>(obj: &DerObject<'a>, field: &'static str) -> Result<&'a [u8], PckError> {
    match obj.content {
        BerObjectContent::OctetString(b) => Ok(b),
        _ => Err(bad(field, "not an OCTET STRING")),
    }
}

fn fixed<const N: usize>(obj: &DerObject<'_>, field: &'static str) -> Result<[u8; N], PckError> {
    let b = octets(obj, field)?;
    b.try_into()
        .map_err(|_| bad(field, format!("{} bytes, expected {N}", b.len())))
}

fn int(obj: &DerObject<'_>, field: &'static str, max: u64) -> Result<u64, PckError> {
    match obj.content {
        BerObjectContent::Integer(_) => {}
        _ => return Err(bad(field, "not an INTEGER")),
    }
    let v = obj
        .as_u64()
        .map_err(|_| bad(field, "not a non-negative INTEGER"))?;
    if v > max {
        return Err(bad(field, format!("{v} exceeds {max}")));
    }
    Ok(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pem_rules() {
        assert_eq!(PckChain::from_pem(b"\0\0"), Err(PckError::Empty));
        assert!(matches!(
            PckChain::from_pem(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            Err(PckError::Pem { .. })
        ));
        assert!(matches!(
            PckChain::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(PckError::NotACertificate { .. })
        ));
        assert!(matches!(
            PckChain::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(PckError::Certificate { index: 0, .. })
        ));
        // Non-canonical base64 (unused bits set) and stray text are refused.
        assert!(matches!(
            PckChain::from_pem(b"-----BEGIN CERTIFICATE-----\nAAB=\n-----END CERTIFICATE-----\n"),
            Err(PckError::Pem { .. })
        ));
        assert!(matches!(
            PckChain::from_pem(
                b"x\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
            ),
            Err(PckError::Pem { .. })
        ));
        assert!(matches!(
            PckChain::from_pem(
                b"-----BEGIN CERTIFICATE-----\nAA\x0bAA\n-----END CERTIFICATE-----\n"
            ),
            Err(PckError::Pem { .. })
        ));
    }

    #[test]
    fn extension_rules() {
        assert!(PckExtension::from_extension_value(&[]).is_err());
        // SEQUENCE {} : no TCB entry.
        assert_eq!(
            PckExtension::from_extension_value(&[0x30, 0x00]),
            Err(bad("tcb", "missing"))
        );
        // Trailing bytes after the SEQUENCE.
        assert!(PckExtension::from_extension_value(&[0x30, 0x00, 0x00]).is_err());
    }
}
