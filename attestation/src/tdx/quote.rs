//! The TDX quote wire format (Intel TDX DCAP quote versions 4 and 5) as typed views over
//! the input bytes.
//!
//! Layout (all integers little-endian):
//! - header, 48 bytes: version u16, attestation key type u16, TEE type u32, two reserved
//!   u16 (QE SVN and PCE SVN in the SGX v3 layout; zero in TDX quotes), QE vendor id (16),
//!   user data (20);
//! - v4: the TD report body (TDX 1.0, 584 bytes);
//!   v5: body type u16, body size u32, then the body: type 2 = TDX 1.0 (584 bytes),
//!   type 3 = TDX 1.5 (648 bytes: adds TEE_TCB_SVN2 and MRSERVICETD);
//! - signature data length u32, then the signature data: quote signature (64, r‖s
//!   big-endian), attestation key (64, x‖y), certification data type u16 (must be 6, QE
//!   report certification data), size u32, then: QE report (384), QE report signature
//!   (64), QE auth data length u16 and data, and the inner certification data type u16
//!   (5 = PCK certificate chain in PEM), size u32 and data.
//!
//! Every length is checked before it is read and every nested length must match its
//! contents exactly. Parsing stops at the end of the signature data; see
//! [`Quote::trailing`] for the rule on what follows.

use thiserror::Error;

use super::reader::Reader;

/// Length of the quote header.
pub const HEADER_LEN: usize = 48;
/// Length of a TDX 1.0 TD report body (`sgx_report2_body_t`).
pub const TD_REPORT10_LEN: usize = 584;
/// Length of a TDX 1.5 TD report body (`sgx_report2_body_v1_5_t`).
pub const TD_REPORT15_LEN: usize = 648;
/// Length of an SGX enclave report body (the QE report).
pub const ENCLAVE_REPORT_LEN: usize = 384;
/// TEE type of TDX in the quote header.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Attestation key type ECDSA-256 with P-256, the only one Intel's TD QE produces.
pub const ATTESTATION_KEY_ECDSA_P256: u16 = 2;
/// Intel's QE vendor id (`939A7233-F79C-4CA9-940A-0DB3957F0607`).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Certification data type 5: PCK certificate chain (PEM).
pub const CERT_DATA_PCK_CHAIN: u16 = 5;
/// Certification data type 6: QE report certification data.
pub const CERT_DATA_QE_REPORT: u16 = 6;

/// Why a byte string is not a TDX quote Parley understands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum QuoteError {
    #[error(
        "TDX quote is truncated: {field} needs {needed} bytes at offset {offset} but only {available} remain; \
         the file is cut short or is not a TDX quote"
    )]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("unsupported TDX quote version {version}: Parley reads versions 4 and 5")]
    UnsupportedVersion { version: u16 },
    #[error(
        "unsupported TEE type {tee_type:#x} in the quote header: Parley reads TDX quotes (0x81) only"
    )]
    UnsupportedTeeType { tee_type: u32 },
    #[error(
        "unsupported attestation key type {key_type}: Parley reads ECDSA-256 with P-256 (type 2) only"
    )]
    UnsupportedAttestationKeyType { key_type: u16 },
    #[error(
        "unsupported quote v5 body type {body_type}: Parley reads TD reports for TDX 1.0 (2) and TDX 1.5 (3)"
    )]
    UnsupportedBodyType { body_type: u16 },
    #[error(
        "quote v5 body type {body_type} declares {declared} bytes but that body is {expected} bytes"
    )]
    BodySizeMismatch {
        body_type: u16,
        declared: u32,
        expected: usize,
    },
    #[error(
        "unsupported {which} certification data type {found} at offset {offset}: expected {expected}"
    )]
    UnexpectedCertificationDataType {
        which: &'static str,
        found: u16,
        expected: u16,
        offset: usize,
    },
    #[error(
        "{what} declares {declared} bytes but its contents take {consumed}: the quote is malformed"
    )]
    LengthMismatch {
        what: &'static str,
        declared: usize,
        consumed: usize,
    },
}

/// The quote header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub version: u16,
    pub attestation_key_type: u16,
    pub tee_type: u32,
    /// Reserved in the TDX header; the QE SVN in the SGX v3 layout.
    pub qe_svn: u16,
    /// Reserved in the TDX header; the PCE SVN in the SGX v3 layout.
    pub pce_svn: u16,
    pub qe_vendor_id: &'a [u8; 16],
    pub user_data: &'a [u8; 20],
}

/// Which TD report body the quote carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Quote v4: a TDX 1.0 TD report.
    V4TdReport10,
    /// Quote v5, body type 2: a TDX 1.0 TD report.
    V5TdReport10,
    /// Quote v5, body type 3: a TDX 1.5 TD report.
    V5TdReport15,
}

impl BodyKind {
    /// The v5 body type (`None` for v4 quotes, which have no body descriptor).
    pub fn v5_body_type(self) -> Option<u16> {
        match self {
            BodyKind::V4TdReport10 => None,
            BodyKind::V5TdReport10 => Some(2),
            BodyKind::V5TdReport15 => Some(3),
        }
    }
}

/// The TD report body (`sgx_report2_body_t` and, for TDX 1.5, its two extra fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdReport<'a> {
    pub tee_tcb_svn: &'a [u8; 16],
    pub mr_seam: &'a [u8; 48],
    pub mr_signer_seam: &'a [u8; 48],
    pub seam_attributes: &'a [u8; 8],
    pub td_attributes: &'a [u8; 8],
    pub xfam: &'a [u8; 8],
    pub mr_td: &'a [u8; 48],
    pub mr_config_id: &'a [u8; 48],
    pub mr_owner: &'a [u8; 48],
    pub mr_owner_config: &'a [u8; 48],
    pub rtmr: [&'a [u8; 48]; 4],
    pub report_data: &'a [u8; 64],
    /// TDX 1.5 only: the TEE TCB SVN after TD-preserving module updates.
    pub tee_tcb_svn2: Option<&'a [u8; 16]>,
    /// TDX 1.5 only: SERVTD_HASH of the bound service TDs (zero if none).
    pub mr_service_td: Option<&'a [u8; 48]>,
}

impl TdReport<'_> {
    /// The TD attributes as a little-endian integer, decoded.
    pub fn td_attributes(&self) -> TdAttributes {
        TdAttributes(u64::from_le_bytes(*self.td_attributes))
    }
}

/// TD attributes (Intel TDX module ABI, TD attributes table): which bits are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TdAttributes(pub u64);

impl TdAttributes {
    /// The attribute bits Parley names, with their names, in bit order.
    pub const NAMED: [(u32, &'static str); 13] = [
        (0, "debug"),
        (4, "hgs_plus_prof"),
        (5, "perf_prof"),
        (6, "pmt_prof"),
        (16, "icssd"),
        (17, "servtd_ext"),
        (27, "lass"),
        (28, "sept_ve_disable"),
        (29, "migratable"),
        (30, "pks"),
        (31, "kl"),
        (62, "tpa"),
        (63, "perfmon"),
    ];

    pub fn bit(self, bit: u32) -> bool {
        bit < 64 && (self.0 >> bit) & 1 == 1
    }
    /// Off-TD debug: the host can read and write the TD's state and private memory.
    pub fn debug(self) -> bool {
        self.bit(0)
    }
    /// Guest accesses to pending private pages exit to the host instead of raising #VE.
    pub fn sept_ve_disable(self) -> bool {
        self.bit(28)
    }
    /// The TD can be migrated by a migration TD.
    pub fn migratable(self) -> bool {
        self.bit(29)
    }
    /// Set bits that have no name in [`Self::NAMED`] (reserved, must be zero).
    pub fn unnamed_bits(self) -> u64 {
        let named = Self::NAMED
            .iter()
            .fold(0u64, |acc, (bit, _)| acc | (1u64 << bit));
        self.0 & !named
    }
}

/// An SGX enclave report body (here: the quoting enclave's report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnclaveReport<'a> {
    /// The whole 384-byte report, as signed by the PCK key.
    pub raw: &'a [u8; ENCLAVE_REPORT_LEN],
    pub cpu_svn: &'a [u8; 16],
    pub misc_select: u32,
    pub isv_ext_prod_id: &'a [u8; 16],
    pub attributes: &'a [u8; 16],
    pub mr_enclave: &'a [u8; 32],
    pub mr_signer: &'a [u8; 32],
    pub config_id: &'a [u8; 64],
    pub isv_prod_id: u16,
    pub isv_svn: u16,
    pub config_svn: u16,
    pub isv_family_id: &'a [u8; 16],
    pub report_data: &'a [u8; 64],
}

/// The certification data inside the QE report certification data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificationData<'a> {
    /// Type 5: the PCK certificate chain, PEM, leaf first (often NUL-terminated).
    PckCertChain(&'a [u8]),
    /// Types 1 to 4 (PPID forms, PCK leaf only): parsed but not verifiable offline.
    Other { cert_type: u16, data: &'a [u8] },
}

/// The signature data of a v4/v5 quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureData<'a> {
    /// Declared signature data length.
    pub len: u32,
    /// ECDSA P-256 signature (r‖s, big-endian) over header and body.
    pub quote_signature: &'a [u8; 64],
    /// The attestation public key (x‖y, big-endian).
    pub attestation_key: &'a [u8; 64],
    /// Outer certification data type (always 6 once parsed).
    pub certification_data_type: u16,
    pub qe_report: EnclaveReport<'a>,
    /// ECDSA P-256 signature (r‖s) over the QE report by the PCK key.
    pub qe_report_signature: &'a [u8; 64],
    pub qe_auth_data: &'a [u8],
    pub certification_data: CertificationData<'a>,
}

/// A parsed TDX quote: typed views into the input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote<'a> {
    bytes: &'a [u8],
    header: Header<'a>,
    body_kind: BodyKind,
    body: TdReport<'a>,
    signed_len: usize,
    signature: SignatureData<'a>,
    end: usize,
}

impl<'a> Quote<'a> {
    /// Parse a TDX quote (v4 or v5).
    ///
    /// Trailing bytes: parsing stops at the end of the signature data (its declared
    /// length). Whatever follows is covered by no signature and is never read. Quotes
    /// reach us zero-padded (configfs `outblob` and QGS buffers are larger than the quote),
    /// so trailing bytes are accepted here; [`Quote::trailing`] returns them and the
    /// verifier adds a `trailing-data` warning when any of them is non-zero, so that an
    /// appraisal policy can demand exact evidence.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, QuoteError> {
        let mut r = Reader::new(bytes, 0);
        let header = Header {
            version: r.u16("header.version")?,
            attestation_key_type: r.u16("header.attestation_key_type")?,
            tee_type: r.u32("header.tee_type")?,
            qe_svn: r.u16("header.qe_svn")?,
            pce_svn: r.u16("header.pce_svn")?,
            qe_vendor_id: r.array("header.qe_vendor_id")?,
            user_data: r.array("header.user_data")?,
        };
        if header.version != 4 && header.version != 5 {
            return Err(QuoteError::UnsupportedVersion {
                version: header.version,
            });
        }
        if header.tee_type != TEE_TYPE_TDX {
            return Err(QuoteError::UnsupportedTeeType {
                tee_type: header.tee_type,
            });
        }
        if header.attestation_key_type != ATTESTATION_KEY_ECDSA_P256 {
            return Err(QuoteError::UnsupportedAttestationKeyType {
                key_type: header.attestation_key_type,
            });
        }

        let body_kind = if header.version == 4 {
            BodyKind::V4TdReport10
        } else {
            let body_type = r.u16("body.type")?;
            let size = r.u32("body.size")?;
            let (kind, expected) = match body_type {
                2 => (BodyKind::V5TdReport10, TD_REPORT10_LEN),
                3 => (BodyKind::V5TdReport15, TD_REPORT15_LEN),
                other => return Err(QuoteError::UnsupportedBodyType { body_type: other }),
            };
            if usize::try_from(size).ok() != Some(expected) {
                return Err(QuoteError::BodySizeMismatch {
                    body_type,
                    declared: size,
                    expected,
                });
            }
            kind
        };
        let body = parse_td_report(&mut r, body_kind == BodyKind::V5TdReport15)?;
        let signed_len = r.offset();

        let sig_len = r.u32("signature_data.length")?;
        let sig_start = r.offset();
        let sig_bytes = r.take(usize_from(sig_len), "signature_data")?;
        let signature = parse_signature_data(sig_bytes, sig_start, sig_len)?;
        let end = r.offset();

        Ok(Quote {
            bytes,
            header,
            body_kind,
            body,
            signed_len,
            signature,
            end,
        })
    }

    pub fn header(&self) -> &Header<'a> {
        &self.header
    }
    pub fn body_kind(&self) -> BodyKind {
        self.body_kind
    }
    pub fn td_report(&self) -> &TdReport<'a> {
        &self.body
    }
    pub fn signature_data(&self) -> &SignatureData<'a> {
        &self.signature
    }
    /// The bytes the quote signature covers: header, body descriptor (v5) and body.
    pub fn signed_bytes(&self) -> &'a [u8] {
        self.bytes.get(..self.signed_len).unwrap_or_default()
    }
    /// The quote proper: from the header to the end of the signature data.
    pub fn quote_bytes(&self) -> &'a [u8] {
        self.bytes.get(..self.end).unwrap_or_default()
    }
    /// Bytes after the signature data (see [`Quote::parse`] for the rule).
    pub fn trailing(&self) -> &'a [u8] {
        self.bytes.get(self.end..).unwrap_or_default()
    }
    /// Number of non-zero bytes after the signature data.
    pub fn trailing_nonzero(&self) -> usize {
        self.trailing().iter().filter(|b| **b != 0).count()
    }
    /// The input as given, trailing bytes included.
    pub fn input(&self) -> &'a [u8] {
        self.bytes
    }
}

fn usize_from(v: u32) -> usize {
    // u32 always fits in usize on the 32- and 64-bit targets Parley supports.
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn parse_td_report<'a>(r: &mut Reader<'a>, v15: bool) -> Result<TdReport<'a>, QuoteError> {
    Ok(TdReport {
        tee_tcb_svn: r.array("body.tee_tcb_svn")?,
        mr_seam: r.array("body.mr_seam")?,
        mr_signer_seam: r.array("body.mr_signer_seam")?,
        seam_attributes: r.array("body.seam_attributes")?,
        td_attributes: r.array("body.td_attributes")?,
        xfam: r.array("body.xfam")?,
        mr_td: r.array("body.mr_td")?,
        mr_config_id: r.array("body.mr_config_id")?,
        mr_owner: r.array("body.mr_owner")?,
        mr_owner_config: r.array("body.mr_owner_config")?,
        rtmr: [
            r.array("body.rtmr0")?,
            r.array("body.rtmr1")?,
            r.array("body.rtmr2")?,
            r.array("body.rtmr3")?,
        ],
        report_data: r.array("body.report_data")?,
        tee_tcb_svn2: if v15 {
            Some(r.array("body.tee_tcb_svn2")?)
        } else {
            None
        },
        mr_service_td: if v15 {
            Some(r.array("body.mr_service_td")?)
        } else {
            None
        },
    })
}

fn parse_signature_data(
    bytes: &[u8],
    base: usize,
    len: u32,
) -> Result<SignatureData<'_>, QuoteError> {
    let mut r = Reader::new(bytes, base);
    let quote_signature = r.array("signature_data.quote_signature")?;
    let attestation_key = r.array("signature_data.attestation_key")?;
    let type_offset = r.offset();
    let certification_data_type = r.u16("signature_data.certification_data.type")?;
    if certification_data_type != CERT_DATA_QE_REPORT {
        return Err(QuoteError::UnexpectedCertificationDataType {
            which: "outer",
            found: certification_data_type,
            expected: CERT_DATA_QE_REPORT,
            offset: type_offset,
        });
    }
    let outer_len = usize_from(r.u32("signature_data.certification_data.size")?);
    let outer_base = r.offset();
    let outer = r.take(outer_len, "signature_data.certification_data")?;
    if r.remaining() != 0 {
        return Err(QuoteError::LengthMismatch {
            what: "signature data",
            declared: usize_from(len),
            consumed: usize_from(len).saturating_sub(r.remaining()),
        });
    }

    let mut q = Reader::new(outer, outer_base);
    let qe_report_base = q.offset();
    let qe_report = parse_enclave_report(q.array("qe_report")?, qe_report_base)?;
    let qe_report_signature = q.array("qe_report_signature")?;
    let auth_len = usize::from(q.u16("qe_auth_data.size")?);
    let qe_auth_data = q.take(auth_len, "qe_auth_data")?;
    let inner_offset = q.offset();
    let inner_type = q.u16("certification_data.type")?;
    let inner_len = usize_from(q.u32("certification_data.size")?);
    let inner = q.take(inner_len, "certification_data")?;
    if q.remaining() != 0 {
        return Err(QuoteError::LengthMismatch {
            what: "QE report certification data",
            declared: outer_len,
            consumed: outer_len.saturating_sub(q.remaining()),
        });
    }
    let certification_data = match inner_type {
        CERT_DATA_PCK_CHAIN => CertificationData::PckCertChain(inner),
        1..=4 => CertificationData::Other {
            cert_type: inner_type,
            data: inner,
        },
        other => {
            return Err(QuoteError::UnexpectedCertificationDataType {
                which: "inner",
                found: other,
                expected: CERT_DATA_PCK_CHAIN,
                offset: inner_offset,
            });
        }
    };
    Ok(SignatureData {
        len,
        quote_signature,
        attestation_key,
        certification_data_type,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        certification_data,
    })
}

/// Split a 384-byte SGX report body into its fields (offsets from `sgx_report_body_t`).
fn parse_enclave_report(
    raw: &[u8; ENCLAVE_REPORT_LEN],
    base: usize,
) -> Result<EnclaveReport<'_>, QuoteError> {
    let mut r = Reader::new(raw, base);
    let cpu_svn = r.array("qe_report.cpu_svn")?;
    let misc_select = r.u32("qe_report.misc_select")?;
    r.take(12, "qe_report.reserved1")?;
    let isv_ext_prod_id = r.array("qe_report.isv_ext_prod_id")?;
    let attributes = r.array("qe_report.attributes")?;
    let mr_enclave = r.array("qe_report.mr_enclave")?;
    r.take(32, "qe_report.reserved2")?;
    let mr_signer = r.array("qe_report.mr_signer")?;
    r.take(32, "qe_report.reserved3")?;
    let config_id = r.array("qe_report.config_id")?;
    let isv_prod_id = r.u16("qe_report.isv_prod_id")?;
    let isv_svn = r.u16("qe_report.isv_svn")?;
    let config_svn = r.u16("qe_report.config_svn")?;
    r.take(42, "qe_report.reserved4")?;
    let isv_family_id = r.array("qe_report.isv_family_id")?;
    let report_data = r.array("qe_report.report_data")?;
    Ok(EnclaveReport {
        raw,
        cpu_svn,
        misc_select,
        isv_ext_prod_id,
        attributes,
        mr_enclave,
        mr_signer,
        config_id,
        isv_prod_id,
        isv_svn,
        config_svn,
        isv_family_id,
        report_data,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn td_attribute_bits() {
        let a = TdAttributes(u64::from_le_bytes([0x01, 0, 0, 0x10, 0, 0, 0, 0]));
        assert!(a.debug());
        assert!(a.sept_ve_disable());
        assert!(!a.migratable());
        assert_eq!(a.unnamed_bits(), 0);
        assert_eq!(TdAttributes(1 << 1).unnamed_bits(), 2);
        assert!(!a.bit(64));
    }

    #[test]
    fn empty_and_short_inputs_are_typed_errors() {
        assert!(matches!(
            Quote::parse(&[]),
            Err(QuoteError::Truncated {
                field: "header.version",
                ..
            })
        ));
        let mut h = [0u8; 48];
        h[0] = 3;
        assert_eq!(
            Quote::parse(&h),
            Err(QuoteError::UnsupportedVersion { version: 3 })
        );
        h[0] = 4;
        assert_eq!(
            Quote::parse(&h),
            Err(QuoteError::UnsupportedTeeType { tee_type: 0 })
        );
        h[4] = 0x81;
        h[2] = 3;
        assert_eq!(
            Quote::parse(&h),
            Err(QuoteError::UnsupportedAttestationKeyType { key_type: 3 })
        );
        h[2] = 2;
        assert!(matches!(
            Quote::parse(&h),
            Err(QuoteError::Truncated {
                field: "body.tee_tcb_svn",
                offset: 48,
                ..
            })
        ));
    }
}
