//! Verification of a parsed TDX quote at a given time against given collateral and roots.
//!
//! Every link is checked on its own and adds its own reason, so one verification names
//! everything that is wrong (a missing CRL and a bad signature both show up):
//! quote signature (attestation key over header and body) → QE report data binding
//! (SHA-256 of attestation key ‖ QE auth data, then 32 zero bytes) → PCK chain to a root,
//! with the PCK CRL and root CA CRL → QE report signature (PCK key) → TCB signing chain
//! → TCB Info and QE Identity signatures and validity windows → TCB evaluation
//! ([`super::tcb`]). Anything that cannot be checked for want of an input is a refusal
//! that says what is missing.

use std::time::Duration;

use ring::digest;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde_json::{Value, json};
use time::OffsetDateTime;
use webpki::{
    BorrowedCertRevocationList, CertRevocationList, EndEntityCert, ExpirationPolicy,
    ExtendedKeyUsageValidator, KeyPurposeIdIter, RevocationCheckDepth, RevocationOptionsBuilder,
    UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::codes;
use super::collateral::{Collateral, Signed, TcbStatus, fmt_time};
use super::pck::{CertSummary, PckChain, PckExtension, rfc3339};
use super::quote::{CertificationData, INTEL_QE_VENDOR_ID, Quote, TdAttributes};
use super::roots::{Root, TrustRoots};
use super::tcb::{self, LevelMatch, PlatformEvaluation, TcbFailure};
use crate::verdict::{Findings, Reason, codes as common};

/// The measurements and attributes of the TD, copied out of the quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxClaims {
    pub quote_version: u16,
    /// v5 body type (2 = TDX 1.0, 3 = TDX 1.5); `None` for v4.
    pub body_type: Option<u16>,
    pub tee_tcb_svn: [u8; 16],
    pub mr_seam: [u8; 48],
    pub mr_signer_seam: [u8; 48],
    pub seam_attributes: [u8; 8],
    pub td_attributes: TdAttributes,
    pub xfam: [u8; 8],
    pub mr_td: [u8; 48],
    pub mr_config_id: [u8; 48],
    pub mr_owner: [u8; 48],
    pub mr_owner_config: [u8; 48],
    pub rtmr: [[u8; 48]; 4],
    pub report_data: [u8; 64],
    pub tee_tcb_svn2: Option<[u8; 16]>,
    pub mr_service_td: Option<[u8; 48]>,
}

impl TdxClaims {
    pub fn from_quote(q: &Quote<'_>) -> Self {
        let r = q.td_report();
        TdxClaims {
            quote_version: q.header().version,
            body_type: q.body_kind().v5_body_type(),
            tee_tcb_svn: *r.tee_tcb_svn,
            mr_seam: *r.mr_seam,
            mr_signer_seam: *r.mr_signer_seam,
            seam_attributes: *r.seam_attributes,
            td_attributes: r.td_attributes(),
            xfam: *r.xfam,
            mr_td: *r.mr_td,
            mr_config_id: *r.mr_config_id,
            mr_owner: *r.mr_owner,
            mr_owner_config: *r.mr_owner_config,
            rtmr: r.rtmr.map(|m| *m),
            report_data: *r.report_data,
            tee_tcb_svn2: r.tee_tcb_svn2.copied(),
            mr_service_td: r.mr_service_td.copied(),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "quote_version": self.quote_version,
            "tee_tcb_svn": hex::encode(self.tee_tcb_svn),
            "mr_seam": hex::encode(self.mr_seam),
            "mr_signer_seam": hex::encode(self.mr_signer_seam),
            "seam_attributes": hex::encode(self.seam_attributes),
            "td_attributes": hex::encode(self.td_attributes.0.to_le_bytes()),
            "td_attributes_decoded": td_attributes_json(self.td_attributes),
            "xfam": hex::encode(self.xfam),
            "mr_td": hex::encode(self.mr_td),
            "mr_config_id": hex::encode(self.mr_config_id),
            "mr_owner": hex::encode(self.mr_owner),
            "mr_owner_config": hex::encode(self.mr_owner_config),
            "rtmr0": hex::encode(self.rtmr[0]),
            "rtmr1": hex::encode(self.rtmr[1]),
            "rtmr2": hex::encode(self.rtmr[2]),
            "rtmr3": hex::encode(self.rtmr[3]),
            "report_data": hex::encode(self.report_data),
        });
        if let Some(m) = v.as_object_mut() {
            if let Some(t) = self.body_type {
                m.insert("body_type".into(), json!(t));
            }
            if let Some(s) = self.tee_tcb_svn2 {
                m.insert("tee_tcb_svn2".into(), json!(hex::encode(s)));
            }
            if let Some(s) = self.mr_service_td {
                m.insert("mr_service_td".into(), json!(hex::encode(s)));
            }
        }
        v
    }
}

/// The named TD attribute bits, plus any reserved bits that are set.
pub fn td_attributes_json(a: TdAttributes) -> Value {
    let mut m = serde_json::Map::new();
    for (bit, name) in TdAttributes::NAMED {
        m.insert(name.to_owned(), json!(a.bit(bit)));
    }
    m.insert(
        "reserved_bits_set".to_owned(),
        json!(format!("{:#018x}", a.unnamed_bits())),
    );
    Value::Object(m)
}

/// The platform identity from the PCK leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PckIdentity {
    pub extension: PckExtension,
    /// SHA-256 of the PCK leaf certificate (DER).
    pub leaf_sha256: String,
}

impl PckIdentity {
    pub fn to_json(&self) -> Value {
        let e = &self.extension;
        json!({
            "fmspc": hex::encode(e.fmspc),
            "pce_id": hex::encode(e.pce_id),
            "pce_svn": e.pce_svn,
            "cpu_svn": hex::encode(e.cpu_svn),
            "tcb_components": e.tcb_components,
            "sgx_type": e.sgx_type,
            "ppid": hex::encode(&e.ppid),
            "platform_instance_id": e.platform_instance_id.as_ref().map(hex::encode),
            "dynamic_platform": e.dynamic_platform,
            "cached_keys": e.cached_keys,
            "smt_enabled": e.smt_enabled,
            "leaf_sha256": self.leaf_sha256,
        })
    }
}

/// The outcome of TCB evaluation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TcbEvaluation {
    /// Final status: platform, TDX module and QE converged (and launch/current combined).
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
    pub platform: PlatformEvaluation,
    /// `None` when no QE Identity was given or it did not match.
    pub qe: Option<LevelMatch>,
    pub qe_tcb_evaluation_data_number: Option<u32>,
}

/// Everything a verification established, and what it found wrong.
#[derive(Debug, Clone)]
pub struct Verification {
    /// Reasons; the status is the worst of them (`affirming` when there are none).
    pub findings: Findings,
    pub claims: TdxClaims,
    /// Set when the PCK leaf certificate and its SGX extension parse.
    pub pck: Option<PckIdentity>,
    /// Set when a TCB Info whose signature verifies under its signing certificate could be
    /// evaluated for this platform. Read it with `findings`: a failure of that
    /// certificate's chain or of a validity window is a refusal there.
    pub tcb: Option<TcbEvaluation>,
    pub pck_chain: Vec<CertSummary>,
    /// The root the PCK chain ended at.
    pub root: Option<CertSummary>,
    pub collateral: Vec<super::collateral::CollateralDigest>,
    pub at: OffsetDateTime,
}

impl Verification {
    /// Type-specific details for the CLI and verdicts.
    pub fn details_json(&self) -> Value {
        json!({
            "claims": self.claims.to_json(),
            "pck": self.pck.as_ref().map(PckIdentity::to_json),
            "tcb": self.tcb,
            "pck_chain": self.pck_chain,
            "root": self.root,
            "collateral": self.collateral,
        })
    }
}

/// Accepts any (or no) extended key usage: Intel's PCK and TCB signing certificates carry
/// none, and the chain's purpose is fixed by where it is used.
struct AnyEku;

impl ExtendedKeyUsageValidator for AnyEku {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for id in iter {
            id?;
        }
        Ok(())
    }
}

/// Verify a parsed quote at time `at`.
pub fn verify(
    quote: &Quote<'_>,
    collateral: &Collateral,
    roots: &TrustRoots,
    at: OffsetDateTime,
) -> Verification {
    let mut v = Verification {
        findings: Findings::default(),
        claims: TdxClaims::from_quote(quote),
        pck: None,
        tcb: None,
        pck_chain: Vec::new(),
        root: None,
        collateral: collateral.digests.clone(),
        at,
    };
    let now = unix_time(at);
    let sig = quote.signature_data();

    if quote.header().qe_vendor_id != &INTEL_QE_VENDOR_ID {
        v.findings.push(Reason::refuse(
            codes::UNTRUSTED_QE_VENDOR,
            format!(
                "QE vendor id {} is not Intel's {}: only Intel's quoting enclave is trusted",
                hex::encode(quote.header().qe_vendor_id),
                hex::encode(INTEL_QE_VENDOR_ID)
            ),
        ));
    }

    // 1. Quote signature by the attestation key.
    let mut att_key = [4u8; 65];
    if let Some(dst) = att_key.get_mut(1..) {
        dst.copy_from_slice(sig.attestation_key);
    }
    if UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &att_key)
        .verify(quote.signed_bytes(), sig.quote_signature)
        .is_err()
    {
        v.findings.push(Reason::refuse(
            codes::BAD_QUOTE_SIGNATURE,
            format!(
                "the quote signature over the header and TD report ({} bytes) does not verify with the attestation key in the quote",
                quote.signed_bytes().len()
            ),
        ));
    }

    // 2. The QE report binds the attestation key and QE auth data.
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(sig.attestation_key);
    ctx.update(sig.qe_auth_data);
    let expected = ctx.finish();
    let (bound, zeros) = sig.qe_report.report_data.split_at(32);
    if bound != expected.as_ref() || zeros.iter().any(|b| *b != 0) {
        v.findings.push(Reason::refuse(
            codes::QE_REPORT_DATA_MISMATCH,
            format!(
                "QE report data {} is not SHA-256(attestation key ‖ QE auth data) = {} followed by 32 zero bytes: the attestation key is not the QE's",
                hex::encode(sig.qe_report.report_data),
                hex::encode(expected.as_ref())
            ),
        ));
    }

    // 3. CRLs: parse, check windows; which ones the chains may rely on.
    let pck_crl = load_crl(
        &mut v.findings,
        collateral.pck_crl.as_deref(),
        "PCK CRL",
        at,
    );
    let root_crl = load_crl(
        &mut v.findings,
        collateral.root_ca_crl.as_deref(),
        "root CA CRL",
        at,
    );

    // 4. PCK chain, QE report signature, PCK extension.
    let chain = match sig.certification_data {
        CertificationData::PckCertChain(pem) => match PckChain::from_pem(pem) {
            Ok(c) => Some(c),
            Err(e) => {
                v.findings.push(Reason::refuse(
                    codes::PCK_CHAIN_INVALID,
                    format!("the quote's PCK certificate chain is unusable: {e}"),
                ));
                None
            }
        },
        CertificationData::Other { cert_type, .. } => {
            v.findings.push(Reason::refuse(
                codes::UNSUPPORTED_CERTIFICATION_DATA,
                format!(
                    "the quote carries certification data type {cert_type}, not the PCK certificate chain (type 5): configure the quote generation library to embed the PCK chain"
                ),
            ));
            None
        }
    };
    if let Some(chain) = &chain {
        v.pck_chain = chain
            .certs
            .iter()
            .filter_map(|c| CertSummary::of(c).ok())
            .collect();
        verify_pck(&mut v, quote, chain, roots, now, at, &pck_crl, &root_crl);
    }

    // 5. Collateral: signing chain, signatures, windows, then TCB evaluation.
    // Intel signs both with one certificate: check a shared chain once.
    let shared = collateral.tcb_info.is_some()
        && collateral.qe_identity.is_some()
        && collateral.tcb_info_issuer_chain == collateral.qe_identity_issuer_chain;
    let tcb_key = collateral.tcb_info.as_ref().and_then(|_| {
        signing_key(
            &mut v.findings,
            if shared {
                "TCB Info and QE Identity"
            } else {
                "TCB Info"
            },
            collateral.tcb_info_issuer_chain.as_deref(),
            roots,
            now,
            &root_crl,
            at,
        )
    });
    let qe_key = if shared {
        tcb_key.clone()
    } else {
        collateral.qe_identity.as_ref().and_then(|_| {
            signing_key(
                &mut v.findings,
                "QE Identity",
                collateral.qe_identity_issuer_chain.as_deref(),
                roots,
                now,
                &root_crl,
                at,
            )
        })
    };
    let tcb_info = check_signed(
        &mut v.findings,
        "TCB Info",
        collateral.tcb_info.as_ref(),
        tcb_key.as_deref(),
        |t| (t.issue_date, t.next_update),
        at,
    );
    let qe_identity = check_signed(
        &mut v.findings,
        "QE Identity",
        collateral.qe_identity.as_ref(),
        qe_key.as_deref(),
        |q| (q.issue_date, q.next_update),
        at,
    );
    if collateral.tcb_info.is_none() {
        let fmspc = v
            .pck
            .as_ref()
            .map_or("<unknown>".to_owned(), |p| hex::encode(p.extension.fmspc));
        v.findings.push(Reason::refuse(
            codes::COLLATERAL_MISSING,
            format!(
                "no TCB Info: the TCB cannot be evaluated; add the PCS response of GET /tdx/certification/v4/tcb?fmspc={fmspc} as tcb_info.json to the collateral directory"
            ),
        ));
    }
    if collateral.qe_identity.is_none() {
        v.findings.push(Reason::refuse(
            codes::COLLATERAL_MISSING,
            "no QE Identity: the quoting enclave cannot be identified; add the PCS response of GET /tdx/certification/v4/qe/identity as qe_identity.json to the collateral directory",
        ));
    }
    evaluate(&mut v, quote, tcb_info, qe_identity);

    // 6. Bytes after the quote.
    let nonzero = quote.trailing_nonzero();
    if nonzero > 0 {
        v.findings.push(Reason::warn(
            codes::TRAILING_DATA,
            format!(
                "{} bytes follow the signature data, {nonzero} of them non-zero; no signature covers them and they were ignored",
                quote.trailing().len()
            ),
        ));
    }
    v
}

fn unix_time(at: OffsetDateTime) -> UnixTime {
    let secs = u64::try_from(at.unix_timestamp()).unwrap_or(0);
    UnixTime::since_unix_epoch(Duration::from_secs(secs))
}

/// A parsed CRL the chains may use, with its issuer name (raw DER).
struct UsableCrl<'a> {
    crl: CertRevocationList<'a>,
    issuer: Vec<u8>,
}

fn load_crl<'a>(
    findings: &mut Findings,
    der: Option<&'a [u8]>,
    name: &str,
    at: OffsetDateTime,
) -> Option<UsableCrl<'a>> {
    let Some(der) = der else {
        findings.push(Reason::refuse(
            codes::CRL_MISSING,
            format!(
                "no {name}: revocation cannot be checked; add it to the collateral directory ({})",
                if name == "PCK CRL" {
                    "PCS GET /sgx/certification/v4/pckcrl?ca=platform or processor, as pck_crl.der"
                } else {
                    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der, as root_ca_crl.der"
                }
            ),
        ));
        return None;
    };
    let parsed = match CertificateRevocationList::from_der(der) {
        Ok(([], crl)) => crl,
        Ok(_) => {
            findings.push(Reason::refuse(
                codes::CRL_INVALID,
                format!("the {name} has trailing bytes after its DER"),
            ));
            return None;
        }
        Err(e) => {
            findings.push(Reason::refuse(
                codes::CRL_INVALID,
                format!("the {name} is not a valid X.509 CRL: {e}"),
            ));
            return None;
        }
    };
    let this_update = parsed.last_update().timestamp();
    let next_update = parsed.next_update().map(|t| t.timestamp());
    let now = at.unix_timestamp();
    match next_update {
        None => findings.push(Reason::refuse(
            codes::CRL_INVALID,
            format!("the {name} has no nextUpdate, so its freshness cannot be judged"),
        )),
        Some(next) if now < this_update || now > next => findings.push(Reason::refuse(
            codes::COLLATERAL_EXPIRED,
            format!(
                "the {name} is valid from {} to {}, not at {}: fetch a current one",
                rfc3339(this_update),
                rfc3339(next),
                fmt_time(at)
            ),
        )),
        Some(_) => {}
    }
    let issuer = parsed.issuer().as_raw().to_vec();
    match BorrowedCertRevocationList::from_der(der) {
        Ok(crl) => Some(UsableCrl {
            crl: crl.into(),
            issuer,
        }),
        Err(e) => {
            findings.push(Reason::refuse(
                codes::CRL_INVALID,
                format!("the {name} cannot be used for revocation checking: {e}"),
            ));
            None
        }
    }
}

/// Map a path-building failure to a reason.
fn chain_reason(what: &str, e: &webpki::Error) -> Reason {
    use webpki::Error as E;
    let (code, hint) = match e {
        E::UnknownIssuer => (
            codes::UNTRUSTED_ROOT,
            "it does not chain to any accepted root (the Intel SGX Root CA unless --roots says otherwise)",
        ),
        E::CertExpired { .. } | E::CertNotValidYet { .. } => (
            common::EXPIRED,
            "a certificate is outside its validity period at the verification time",
        ),
        E::CertRevoked => (codes::CRL_REVOKED, "a certificate is revoked by its CRL"),
        E::CrlExpired { .. }
        | E::InvalidCrlSignatureForPublicKey
        | E::IssuerNotCrlSigner
        | E::UnknownRevocationStatus
        | E::UnsupportedCrlVersion
        | E::UnsupportedCrlIssuingDistributionPoint
        | E::UnsupportedIndirectCrl
        | E::UnsupportedDeltaCrl
        | E::UnsupportedRevocationReason
        | E::UnsupportedRevocationReasonsPartitioning
        | E::UnsupportedCrlSignatureAlgorithmContext(_)
        | E::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_)
        | E::InvalidCrlNumber => (
            codes::CRL_INVALID,
            "a CRL could not be used (wrong issuer, bad signature or unsupported form)",
        ),
        _ => (
            if what.starts_with("PCK") {
                codes::PCK_CHAIN_INVALID
            } else {
                codes::COLLATERAL_CHAIN_INVALID
            },
            "the certificate chain is invalid",
        ),
    };
    Reason::refuse(code, format!("{what}: {hint} ({e})"))
}

/// Build and check a path from `leaf` to one of `roots`; returns the root used and the
/// number of intermediates on the path.
#[allow(clippy::too_many_arguments)]
fn build_path<'r>(
    findings: &mut Findings,
    what: &str,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &'r TrustRoots,
    now: UnixTime,
    crls: &[&UsableCrl<'_>],
    strict_revocation: bool,
) -> Option<(&'r Root, Vec<Vec<u8>>)> {
    let ee = match EndEntityCert::try_from(leaf) {
        Ok(ee) => ee,
        Err(e) => {
            findings.push(chain_reason(what, &e));
            return None;
        }
    };
    let usable: Vec<(&Root, TrustAnchor<'_>)> = roots
        .roots()
        .iter()
        .filter_map(|r| {
            webpki::anchor_from_trusted_cert(&r.der)
                .ok()
                .map(|a| (r, a))
        })
        .collect();
    let anchors: Vec<TrustAnchor<'_>> = usable.iter().map(|(_, a)| a.clone()).collect();
    let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().map(|c| &c.crl).collect();
    let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
        b.with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(if strict_revocation {
                UnknownStatusPolicy::Deny
            } else {
                UnknownStatusPolicy::Allow
            })
            // Windows are checked (and reported) by `load_crl`.
            .with_expiration_policy(ExpirationPolicy::Ignore)
            .build()
    });
    let path = match ee.verify_for_usage(
        &[webpki::ring::ECDSA_P256_SHA256],
        &anchors,
        intermediates,
        now,
        AnyEku,
        revocation,
        None,
    ) {
        Ok(p) => p,
        Err(e) => {
            let mut reason = chain_reason(what, &e);
            if matches!(e, webpki::Error::CertRevoked) {
                let revoked = revoked_subjects(leaf, intermediates, crls);
                reason.message = format!("{}: revoked: {}", reason.message, revoked.join("; "));
            }
            findings.push(reason);
            return None;
        }
    };
    let anchor = path.anchor();
    let Some(root) = usable.iter().find_map(|(r, a)| {
        (a.subject == anchor.subject && a.subject_public_key_info == anchor.subject_public_key_info)
            .then_some(*r)
    }) else {
        // Cannot happen (the anchors are the roots'); refuse rather than trust a path
        // whose root we cannot name.
        findings.push(Reason::refuse(
            codes::UNTRUSTED_ROOT,
            format!("{what}: the chain ends at a trust anchor that is not one of the given roots"),
        ));
        return None;
    };
    let used = path
        .intermediate_certificates()
        .map(|c| c.der().as_ref().to_vec())
        .collect();
    Some((root, used))
}

/// Which of the certificates the CRLs revoke (their subjects), for the message.
fn revoked_subjects(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    crls: &[&UsableCrl<'_>],
) -> Vec<String> {
    std::iter::once(leaf)
        .chain(intermediates)
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
        .filter(|c| {
            crls.iter().any(|crl| {
                crl.issuer.as_slice() == c.issuer().as_raw()
                    && matches!(crl.crl.find_serial(c.raw_serial()), Ok(Some(_)))
            })
        })
        .map(|c| c.subject().to_string())
        .collect()
}

/// The root's own validity is not checked by path building.
fn check_root_validity(findings: &mut Findings, root: &Root, at: OffsetDateTime, what: &str) {
    if let Ok((_, cert)) = X509Certificate::from_der(&root.der) {
        let now = at.unix_timestamp();
        let v = cert.validity();
        if now < v.not_before.timestamp() || now > v.not_after.timestamp() {
            findings.push(Reason::refuse(
                common::EXPIRED,
                format!(
                    "{what}: root {} is valid from {} to {}, not at {}",
                    root.summary.subject,
                    root.summary.not_before,
                    root.summary.not_after,
                    fmt_time(at)
                ),
            ));
        }
    }
}

fn note_root(findings: &mut Findings, root: &Root) {
    if !root.pinned && !findings.has(codes::NON_DEFAULT_ROOT) {
        findings.push(Reason::warn(
            codes::NON_DEFAULT_ROOT,
            format!(
                "the chain ends at root {} (SHA-256 {}, from {}), not the pinned Intel SGX Root CA",
                root.summary.subject, root.summary.sha256, root.origin
            ),
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn verify_pck(
    v: &mut Verification,
    quote: &Quote<'_>,
    chain: &PckChain,
    roots: &TrustRoots,
    now: UnixTime,
    at: OffsetDateTime,
    pck_crl: &Option<UsableCrl<'_>>,
    root_crl: &Option<UsableCrl<'_>>,
) {
    let Some((leaf, rest)) = chain.certs.split_first() else {
        return;
    };
    let leaf_cert = match X509Certificate::from_der(leaf) {
        Ok((_, c)) => c,
        Err(e) => {
            v.findings.push(Reason::refuse(
                codes::PCK_CHAIN_INVALID,
                format!("the PCK leaf certificate does not parse: {e}"),
            ));
            return;
        }
    };

    // The PCK CRL must come from the PCK leaf's issuer (Platform or Processor CA).
    let mut crls: Vec<&UsableCrl<'_>> = Vec::new();
    let mut strict = pck_crl.is_some() && root_crl.is_some();
    if let Some(c) = pck_crl {
        if c.issuer.as_slice() == leaf_cert.issuer().as_raw() {
            crls.push(c);
        } else {
            strict = false;
            v.findings.push(Reason::refuse(
                codes::CRL_INVALID,
                format!(
                    "the PCK CRL is not issued by the PCK leaf's issuer ({}): fetch the CRL for that CA (ca=platform or ca=processor)",
                    leaf_cert.issuer()
                ),
            ));
        }
    }
    if let Some(c) = root_crl {
        crls.push(c);
    }
    if let Some((root, used)) = build_path(
        &mut v.findings,
        "PCK certificate chain",
        leaf,
        rest,
        roots,
        now,
        &crls,
        strict,
    ) {
        check_root_validity(&mut v.findings, root, at, "PCK certificate chain");
        note_root(&mut v.findings, root);
        // Every certificate in the quote must be on the path or be the root itself.
        for (i, c) in rest.iter().enumerate() {
            let on_path = used.iter().any(|u| u.as_slice() == c.as_ref());
            if !on_path && c.as_ref() != root.der.as_ref() {
                v.findings.push(Reason::refuse(
                    codes::PCK_CHAIN_INVALID,
                    format!(
                        "certificate {} of the quote's PCK chain is neither on the verified path nor the root",
                        i + 1
                    ),
                ));
            }
        }
        if let Some(c) = root_crl
            && c.issuer.as_slice() != subject_raw(&root.der).as_slice()
        {
            v.findings.push(Reason::refuse(
                codes::CRL_INVALID,
                format!(
                    "the root CA CRL is not issued by the root {}",
                    root.summary.subject
                ),
            ));
        }
        v.root = Some(root.summary.clone());
    }

    // QE report signature by the PCK leaf key.
    let key = leaf_cert.public_key().subject_public_key.data.as_ref();
    let qe = &quote.signature_data().qe_report;
    if UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(qe.raw, quote.signature_data().qe_report_signature)
        .is_err()
    {
        v.findings.push(Reason::refuse(
            codes::BAD_QE_REPORT_SIGNATURE,
            "the QE report signature does not verify with the PCK leaf certificate's key",
        ));
    }

    match PckExtension::from_cert(leaf) {
        Ok(extension) => {
            v.pck = Some(PckIdentity {
                extension,
                leaf_sha256: super::roots::sha256_hex(leaf),
            });
        }
        Err(e) => v.findings.push(Reason::refuse(
            codes::PCK_CHAIN_INVALID,
            format!("the PCK leaf certificate: {e}"),
        )),
    }
}

fn subject_raw(der: &[u8]) -> Vec<u8> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c.subject().as_raw().to_vec())
        .unwrap_or_default()
}

/// Check the chain of a collateral signing certificate (`what` names the items it signs)
/// and return the certificate's public key. The chain's failures are reported; the key is
/// still returned so the signature can be checked too (the result is a refusal anyway).
#[allow(clippy::too_many_arguments)]
fn signing_key(
    findings: &mut Findings,
    what: &str,
    chain: Option<&[CertificateDer<'static>]>,
    roots: &TrustRoots,
    now: UnixTime,
    root_crl: &Option<UsableCrl<'_>>,
    at: OffsetDateTime,
) -> Option<Vec<u8>> {
    let Some((leaf, rest)) = chain.and_then(|c| c.split_first()) else {
        findings.push(Reason::refuse(
            codes::COLLATERAL_MISSING,
            format!(
                "no signing certificate chain for the {what}: its signature cannot be checked; add the PCS TCB-Info-Issuer-Chain header (PEM) as tcb_signing_chain.pem"
            ),
        ));
        return None;
    };
    let crls: Vec<&UsableCrl<'_>> = root_crl.iter().collect();
    let what = format!("{what} signing chain");
    if let Some((root, used)) = build_path(
        findings,
        &what,
        leaf,
        rest,
        roots,
        now,
        &crls,
        root_crl.is_some(),
    ) {
        check_root_validity(findings, root, at, &what);
        note_root(findings, root);
        if !used.is_empty() {
            findings.push(Reason::refuse(
                codes::COLLATERAL_CHAIN_INVALID,
                format!("{what}: the signing certificate must be issued by the root directly"),
            ));
        }
    }
    match X509Certificate::from_der(leaf) {
        Ok((_, c)) => Some(c.public_key().subject_public_key.data.to_vec()),
        Err(e) => {
            findings.push(Reason::refuse(
                codes::COLLATERAL_CHAIN_INVALID,
                format!("{what}: the signing certificate does not parse: {e}"),
            ));
            None
        }
    }
}

/// Check a signed collateral item's signature and window. Returns it when the signature
/// verifies under `key`.
fn check_signed<'c, T>(
    findings: &mut Findings,
    name: &str,
    item: Option<&'c Signed<T>>,
    key: Option<&[u8]>,
    window: impl Fn(&T) -> (OffsetDateTime, OffsetDateTime),
    at: OffsetDateTime,
) -> Option<&'c T> {
    let (item, key) = (item?, key?);
    if UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(&item.body, &item.signature)
        .is_err()
    {
        findings.push(Reason::refuse(
            codes::BAD_COLLATERAL_SIGNATURE,
            format!(
                "the {name} signature ({}) does not verify with its signing certificate",
                item.origin
            ),
        ));
        return None;
    }
    let (from, to) = window(&item.value);
    if at < from || at > to {
        findings.push(Reason::refuse(
            codes::COLLATERAL_EXPIRED,
            format!(
                "the {name} ({}) is valid from {} to {}, not at {}: fetch current collateral",
                item.origin,
                fmt_time(from),
                fmt_time(to),
                fmt_time(at)
            ),
        ));
    }
    Some(&item.value)
}

fn failure_reason(f: TcbFailure) -> Reason {
    match f {
        TcbFailure::WrongCollateral(m) => Reason::refuse(codes::COLLATERAL_INVALID, m),
        TcbFailure::FmspcMismatch { quote, collateral } => Reason::refuse(
            codes::FMSPC_MISMATCH,
            format!(
                "the TCB Info is for FMSPC {} but the quote's PCK certificate has FMSPC {}: fetch the TCB Info for fmspc={}",
                hex::encode(collateral),
                hex::encode(quote),
                hex::encode(quote)
            ),
        ),
        TcbFailure::PceIdMismatch { quote, collateral } => Reason::refuse(
            codes::PCE_ID_MISMATCH,
            format!(
                "the TCB Info is for PCE id {} but the PCK certificate has {}",
                hex::encode(collateral),
                hex::encode(quote)
            ),
        ),
        TcbFailure::ModuleMismatch(m) => Reason::refuse(codes::TDX_MODULE_MISMATCH, m),
        TcbFailure::NoMatchingLevel(m) => Reason::refuse(codes::NO_MATCHING_TCB_LEVEL, m),
        TcbFailure::QeMismatch(m) => Reason::refuse(codes::QE_IDENTITY_MISMATCH, m),
    }
}

fn evaluate(
    v: &mut Verification,
    quote: &Quote<'_>,
    tcb_info: Option<&super::collateral::TcbInfo>,
    qe_identity: Option<&super::collateral::QeIdentity>,
) {
    let qe =
        qe_identity.and_then(
            |id| match tcb::evaluate_qe(id, &quote.signature_data().qe_report) {
                Ok(m) => Some((m, id.tcb_evaluation_data_number)),
                Err(f) => {
                    v.findings.push(failure_reason(f));
                    None
                }
            },
        );
    let (Some(info), Some(pck)) = (tcb_info, v.pck.as_ref()) else {
        return;
    };
    let report = quote.td_report();
    let platform = tcb::check_tcb_info(info, &pck.extension)
        .and_then(|()| tcb::check_module_identity(info, report))
        .and_then(|()| tcb::evaluate_platform(info, &pck.extension, report));
    let platform = match platform {
        Ok(p) => p,
        Err(f) => {
            v.findings.push(failure_reason(f));
            return;
        }
    };
    let qe_status = qe.as_ref().map(|(m, _)| m.status);
    let mut status = platform.launch.status;
    if let Some(q) = qe_status {
        status = tcb::converge(status, q);
    }
    if let Some(current) = &platform.current {
        let mut cur = current.status;
        if let Some(q) = qe_status {
            cur = tcb::converge(cur, q);
        }
        status = tcb::combine_launch_current(status, cur);
    }
    let mut advisory_ids = platform.launch.advisory_ids.clone();
    if let Some(c) = &platform.current {
        tcb::merge_advisories(&mut advisory_ids, &c.advisory_ids);
    }
    if let Some((m, _)) = &qe {
        tcb::merge_advisories(&mut advisory_ids, &m.advisory_ids);
    }
    if let Some(r) = status_reason(status, &advisory_ids) {
        v.findings.push(r);
    }
    v.tcb = Some(TcbEvaluation {
        status,
        advisory_ids,
        qe_tcb_evaluation_data_number: qe.as_ref().map(|(_, n)| *n),
        qe: qe.map(|(m, _)| m),
        platform,
    });
}

fn status_reason(status: TcbStatus, advisories: &[String]) -> Option<Reason> {
    use TcbStatus::*;
    let adv = if advisories.is_empty() {
        String::from("no advisories")
    } else {
        format!("advisories {}", advisories.join(", "))
    };
    let msg = |what: &str| format!("TCB status {status}: {what} ({adv})");
    Some(match status {
        UpToDate => return None,
        SwHardeningNeeded => Reason::warn(
            codes::TCB_SW_HARDENING_NEEDED,
            msg("the platform is patched but the TD must use software mitigations"),
        ),
        ConfigurationNeeded => Reason::warn(
            codes::TCB_CONFIGURATION_NEEDED,
            msg("the platform needs a BIOS/configuration change"),
        ),
        ConfigurationAndSwHardeningNeeded => Reason::warn(
            codes::TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED,
            msg("the platform needs a configuration change and software mitigations"),
        ),
        OutOfDate => Reason::refuse(
            codes::TCB_OUT_OF_DATE,
            msg("the platform, TDX module or QE needs a TCB recovery update"),
        ),
        OutOfDateConfigurationNeeded => Reason::refuse(
            codes::TCB_OUT_OF_DATE_CONFIGURATION_NEEDED,
            msg("the platform needs a TCB recovery update and a configuration change"),
        ),
        Revoked => Reason::refuse(
            codes::TCB_REVOKED,
            msg("the platform's keys or TCB are revoked"),
        ),
        TdRelaunchAdvised => Reason::warn(
            codes::TCB_TD_RELAUNCH_ADVISED,
            msg("the TD launched on an out-of-date TDX module and should be relaunched"),
        ),
        TdRelaunchAdvisedConfigurationNeeded => Reason::warn(
            codes::TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
            msg("the TD should be relaunched and the platform needs a configuration change"),
        ),
    })
}
