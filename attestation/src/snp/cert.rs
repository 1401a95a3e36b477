//! AMD certificates: ARK, ASK/ASVK and VCEK/VLEK, as owned values ready to verify.
//!
//! x509-parser reads the DER; this module keeps only what verification needs (raw TBS
//! and signature, names, validity, the public key) and decodes the AMD extensions of
//! VCEK/VLEK certificates (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and
//! KDS Interface Specification": OIDs under 1.3.6.1.4.1.3704.1). Signatures are checked
//! with ring: RSASSA-PSS SHA-384 (MGF1 SHA-384, 48-byte salt) for the AMD chain.
//!
//! AMD VCEKs have serial number 0, which RFC 5280 forbids; x509-parser accepts it and so
//! do we, since their authenticity comes from the pinned ARK, not from the serial.

use std::fmt;

use asn1_rs::{Any, Class, FromDer, Ia5String, Integer, Tag};
use ring::signature::{self, UnparsedPublicKey};
use time::OffsetDateTime;
use x509_parser::prelude::{X509Certificate, X509Name};
use x509_parser::signature_algorithm::SignatureAlgorithm;

use super::tcb::Product;

const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_SHA384: &str = "2.16.840.1.101.3.4.2.2";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_SECP384R1: &str = "1.3.132.0.34";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

const OID_AMD_STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
const OID_AMD_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_AMD_SPL_PREFIX: &str = "1.3.6.1.4.1.3704.1.3.";
const OID_AMD_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_AMD_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";

/// Why a certificate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("{what} is not a DER X.509 certificate: {detail}")]
    NotX509 { what: String, detail: String },
    #[error("{what} has {extra} bytes after the certificate: pass one certificate per file")]
    TrailingBytes { what: String, extra: usize },
    #[error(
        "{what} has an unsupported public key ({detail}): AMD keys are RSA (ARK/ASK/ASVK) or ECDSA P-384 (VCEK/VLEK)"
    )]
    UnsupportedKey { what: String, detail: String },
    #[error("{what} has a malformed AMD extension {oid}: {detail}")]
    BadExtension {
        what: String,
        oid: &'static str,
        detail: String,
    },
    #[error("{what} lacks the AMD extension {oid} ({name}) that a VCEK/VLEK must carry")]
    MissingExtension {
        what: String,
        oid: String,
        name: &'static str,
    },
    #[error("{what} is not PEM or DER: {detail}")]
    NotPem { what: String, detail: String },
}

/// The public key of a certificate.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// PKCS#1 `RSAPublicKey` DER (the SPKI bit string's contents).
    Rsa(Vec<u8>),
    /// An uncompressed SEC1 P-384 point.
    EcP384(Vec<u8>),
}

/// The AMD extensions of a VCEK or VLEK certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AmdExtensions {
    pub struct_version: Option<u32>,
    pub product_name: Option<String>,
    /// SPL values by the last OID arc: 1 bootloader, 2 TEE, 3 SNP, 4..7 reserved SPLs,
    /// 8 microcode, 9 FMC (Turin).
    pub spl: [Option<u8>; 10],
    /// The chip id as AMD stores it: raw bytes in extnValue (VCEK only).
    pub hw_id: Option<Vec<u8>>,
    /// The cloud provider (VLEK only).
    pub csp_id: Option<String>,
}

/// One AMD certificate, parsed and owned.
#[derive(Clone)]
pub struct AmdCert {
    pub der: Vec<u8>,
    /// SHA-256 of the DER.
    pub fingerprint: [u8; 32],
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    pub subject_cn: String,
    pub issuer_cn: String,
    pub serial: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub key: PublicKey,
    tbs: Vec<u8>,
    sig_alg_ok: Result<(), String>,
    signature: Vec<u8>,
    pub amd: AmdExtensions,
}

impl fmt::Debug for AmdCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmdCert")
            .field("subject_cn", &self.subject_cn)
            .field("issuer_cn", &self.issuer_cn)
            .field("fingerprint", &hex::encode(self.fingerprint))
            .finish_non_exhaustive()
    }
}

/// Whether `issuer`'s key signed `subject` with RSASSA-PSS SHA-384, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedBy {
    Yes,
    /// Names differ: `subject` was not issued by `issuer` at all.
    OtherIssuer,
    /// Issued under that name, but the signature does not verify.
    BadSignature(String),
}

impl AmdCert {
    /// Parse one DER certificate; `what` names it in errors (a file name or role).
    pub fn from_der(der: &[u8], what: &str) -> Result<AmdCert, CertError> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::NotX509 {
            what: what.to_owned(),
            detail: e.to_string(),
        })?;
        if !rest.is_empty() {
            return Err(CertError::TrailingBytes {
                what: what.to_owned(),
                extra: rest.len(),
            });
        }
        // x509-parser does not check the unsigned outer envelope's tags; we insist on
        // SEQUENCE { SEQUENCE, SEQUENCE, BIT STRING } so one certificate has one encoding.
        check_envelope(der, cert.tbs_certificate.as_ref()).map_err(|detail| {
            CertError::NotX509 {
                what: what.to_owned(),
                detail,
            }
        })?;
        if cert.signature_value.unused_bits != 0 {
            return Err(CertError::NotX509 {
                what: what.to_owned(),
                detail: "the signature BIT STRING has unused bits".into(),
            });
        }
        let spki = cert.public_key();
        let alg = spki.algorithm.algorithm.to_id_string();
        let key = if alg == OID_RSA_ENCRYPTION {
            PublicKey::Rsa(spki.subject_public_key.data.to_vec())
        } else if alg == OID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if curve.as_deref() != Some(OID_SECP384R1) {
                return Err(CertError::UnsupportedKey {
                    what: what.to_owned(),
                    detail: format!("EC curve {}", curve.unwrap_or_else(|| "absent".into())),
                });
            }
            PublicKey::EcP384(spki.subject_public_key.data.to_vec())
        } else {
            return Err(CertError::UnsupportedKey {
                what: what.to_owned(),
                detail: format!("algorithm {alg}"),
            });
        };
        let amd = amd_extensions(&cert, what)?;
        Ok(AmdCert {
            der: der.to_vec(),
            fingerprint: sha256(der),
            subject: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().as_raw().to_vec(),
            subject_cn: common_name(cert.subject()),
            issuer_cn: common_name(cert.issuer()),
            serial: cert.raw_serial().to_vec(),
            not_before: to_time(cert.validity().not_before.timestamp()),
            not_after: to_time(cert.validity().not_after.timestamp()),
            key,
            tbs: cert.tbs_certificate.as_ref().to_vec(),
            // The outer algorithm is not signed: it must repeat the signed one exactly.
            sig_alg_ok: if cert.signature_algorithm == cert.tbs_certificate.signature {
                check_pss_sha384(&cert.tbs_certificate.signature)
            } else {
                Err("the outer signatureAlgorithm differs from the signed one".to_owned())
            },
            signature: cert.signature_value.data.to_vec(),
            amd,
        })
    }

    /// Parse a PEM or DER file that holds certificates (a chain file may hold several).
    pub fn parse_many(bytes: &[u8], what: &str) -> Result<Vec<AmdCert>, CertError> {
        let ders = pem_or_der_blocks(bytes, "CERTIFICATE", what)?;
        ders.iter()
            .enumerate()
            .map(|(i, d)| {
                let name = if ders.len() > 1 {
                    format!("{what} (certificate {})", i + 1)
                } else {
                    what.to_owned()
                };
                AmdCert::from_der(d, &name)
            })
            .collect()
    }

    /// Whether the certificate is self-issued and self-signed (an ARK).
    pub fn is_self_signed(&self) -> bool {
        self.signed_by(self) == SignedBy::Yes
    }

    /// Check that `issuer` issued and signed this certificate.
    pub fn signed_by(&self, issuer: &AmdCert) -> SignedBy {
        if self.issuer != issuer.subject {
            return SignedBy::OtherIssuer;
        }
        if let Err(e) = &self.sig_alg_ok {
            return SignedBy::BadSignature(e.clone());
        }
        match verify_pss_sha384(&issuer.key, &self.tbs, &self.signature) {
            Ok(()) => SignedBy::Yes,
            Err(e) => SignedBy::BadSignature(e),
        }
    }

    /// The product line this AMD certificate belongs to: from the VCEK/VLEK
    /// `productName`, or from the CN of ARK (`ARK-Milan`), ASK (`SEV-Milan`) and ASVK
    /// (`SEV-VLEK-Milan`).
    pub fn product(&self) -> Option<Product> {
        if let Some(name) = &self.amd.product_name {
            return Product::from_product_name(name);
        }
        let cn = self.subject_cn.as_str();
        let line = cn
            .strip_prefix("ARK-")
            .or_else(|| cn.strip_prefix("SEV-VLEK-"))
            .or_else(|| cn.strip_prefix("SEV-"))?;
        Product::from_product_name(line)
    }

    /// Whether `at` lies inside the validity window (both ends inclusive).
    pub fn valid_at(&self, at: OffsetDateTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }
}

fn check_envelope(der: &[u8], tbs: &[u8]) -> Result<(), String> {
    fn universal(any: &Any<'_>, tag: Tag, constructed: bool, name: &str) -> Result<(), String> {
        if any.class() == Class::Universal
            && any.tag() == tag
            && any.header.is_constructed() == constructed
        {
            Ok(())
        } else {
            Err(format!(
                "{name} has tag {} (class {:?})",
                any.tag(),
                any.class()
            ))
        }
    }
    let (rest, outer) = Any::from_der(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing bytes".into());
    }
    universal(&outer, Tag::Sequence, true, "the certificate")?;
    let (rest, t) = Any::from_der(outer.data).map_err(|e| e.to_string())?;
    universal(&t, Tag::Sequence, true, "tbsCertificate")?;
    let (rest, alg) = Any::from_der(rest).map_err(|e| e.to_string())?;
    universal(&alg, Tag::Sequence, true, "signatureAlgorithm")?;
    let (rest, sig) = Any::from_der(rest).map_err(|e| e.to_string())?;
    universal(&sig, Tag::BitString, false, "signatureValue")?;
    if !rest.is_empty() {
        return Err("extra fields after signatureValue".into());
    }
    if outer.data.get(..tbs.len()) != Some(tbs) {
        return Err("tbsCertificate is not the first field".into());
    }
    Ok(())
}

fn to_time(unix: i64) -> OffsetDateTime {
    // ASN1Time is always representable; the fallback only guards the conversion.
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn common_name(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The signature algorithm must be RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte
/// salt, which is what AMD uses and what ring's `RSA_PSS_2048_8192_SHA384` checks.
fn check_pss_sha384(alg: &x509_parser::x509::AlgorithmIdentifier<'_>) -> Result<(), String> {
    if alg.algorithm.to_id_string() != OID_RSASSA_PSS {
        return Err(format!(
            "signature algorithm {} is not RSASSA-PSS",
            alg.algorithm.to_id_string()
        ));
    }
    match SignatureAlgorithm::try_from(alg) {
        Ok(SignatureAlgorithm::RSASSA_PSS(p)) => {
            let hash = p.hash_algorithm_oid().to_id_string();
            let mgf = p
                .mask_gen_algorithm()
                .map(|m| (m.mgf.to_id_string(), m.hash.to_id_string()))
                .map_err(|e| format!("bad RSASSA-PSS mask generation: {e}"))?;
            if hash != OID_SHA384 || mgf != (OID_MGF1.to_owned(), OID_SHA384.to_owned()) {
                return Err(format!(
                    "RSASSA-PSS with hash {hash} and MGF {mgf:?}: expected SHA-384 and MGF1-SHA-384"
                ));
            }
            if p.salt_length() != 48 {
                return Err(format!(
                    "RSASSA-PSS salt length {}: expected 48",
                    p.salt_length()
                ));
            }
            Ok(())
        }
        Ok(_) => Err("signature algorithm is not RSASSA-PSS".into()),
        Err(e) => Err(format!("bad RSASSA-PSS parameters: {e}")),
    }
}

fn verify_pss_sha384(key: &PublicKey, msg: &[u8], sig: &[u8]) -> Result<(), String> {
    match key {
        PublicKey::Rsa(k) => UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA384, k)
            .verify(msg, sig)
            .map_err(|_| "RSASSA-PSS SHA-384 signature does not verify".to_owned()),
        PublicKey::EcP384(_) => Err("the issuer key is ECDSA, not RSA".to_owned()),
    }
}

fn amd_extensions(cert: &X509Certificate<'_>, what: &str) -> Result<AmdExtensions, CertError> {
    let mut out = AmdExtensions::default();
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        let bad = |oid: &'static str, detail: String| CertError::BadExtension {
            what: what.to_owned(),
            oid,
            detail,
        };
        if oid == OID_AMD_STRUCT_VERSION {
            out.struct_version =
                Some(der_uint(ext.value).map_err(|d| bad(OID_AMD_STRUCT_VERSION, d))?);
        } else if oid == OID_AMD_PRODUCT_NAME {
            let (rest, s) = Ia5String::from_der(ext.value)
                .map_err(|e| bad(OID_AMD_PRODUCT_NAME, e.to_string()))?;
            if !rest.is_empty() {
                return Err(bad(OID_AMD_PRODUCT_NAME, "trailing bytes".into()));
            }
            out.product_name = Some(s.string());
        } else if let Some(arc) = oid.strip_prefix(OID_AMD_SPL_PREFIX) {
            let slot = arc
                .parse::<usize>()
                .ok()
                .and_then(|i| out.spl.get_mut(i).filter(|_| i >= 1));
            // Unknown SPL arcs are not ours to interpret; the known ones must decode.
            if let Some(slot) = slot {
                let v = der_uint(ext.value).map_err(|d| bad("1.3.6.1.4.1.3704.1.3.x", d))?;
                *slot =
                    Some(u8::try_from(v).map_err(|_| {
                        bad("1.3.6.1.4.1.3704.1.3.x", format!("SPL {v} exceeds 255"))
                    })?);
            }
        } else if oid == OID_AMD_HWID {
            out.hw_id = Some(ext.value.to_vec());
        } else if oid == OID_AMD_CSP_ID {
            let (rest, s) =
                Ia5String::from_der(ext.value).map_err(|e| bad(OID_AMD_CSP_ID, e.to_string()))?;
            if !rest.is_empty() {
                return Err(bad(OID_AMD_CSP_ID, "trailing bytes".into()));
            }
            out.csp_id = Some(s.string());
        }
    }
    Ok(out)
}

fn der_uint(bytes: &[u8]) -> Result<u32, String> {
    let (rest, i) = Integer::from_der(bytes).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err("trailing bytes after the INTEGER".into());
    }
    i.as_u32().map_err(|e| e.to_string())
}

/// Split a PEM file into the DER of its `label` blocks, or take a DER file as one block.
pub(crate) fn pem_or_der_blocks(
    bytes: &[u8],
    label: &str,
    what: &str,
) -> Result<Vec<Vec<u8>>, CertError> {
    let text_start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if !bytes
        .get(text_start..)
        .unwrap_or_default()
        .starts_with(b"-----BEGIN")
    {
        return Ok(vec![bytes.to_vec()]);
    }
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let pem = pem.map_err(|e| CertError::NotPem {
            what: what.to_owned(),
            detail: e.to_string(),
        })?;
        if pem.label == label {
            out.push(pem.contents);
        }
    }
    if out.is_empty() {
        return Err(CertError::NotPem {
            what: what.to_owned(),
            detail: format!("no {label} block"),
        });
    }
    Ok(out)
}
