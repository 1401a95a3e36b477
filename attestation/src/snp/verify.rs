//! Genuineness of an SNP report: signature, endorsement chain, AMD extensions, CRLs.
//!
//! [`verify`] is a pure function of (report bytes, endorsements, roots, time). It checks:
//! the report parses strictly; it is signed (ECDSA P-384 / SHA-384 over `[0, 0x2A0)`,
//! `r` and `s` little-endian) by the VCEK or VLEK the report names; that key is certified
//! VCEK ← ASK ← ARK or VLEK ← ASVK ← ARK (RSASSA-PSS SHA-384) up to a trusted ARK, each
//! certificate valid at the given time; the certificate's AMD extensions match the
//! report (TCB SPLs equal `REPORTED_TCB`; `hwID` equals `CHIP_ID` unless the chip id is
//! masked or the key is a VLEK; the product line agrees with the chain and the report's
//! CPUID); and, when CRLs are supplied, none revokes the intermediate. A missing CRL is a
//! warning (`crl-missing`), never silently affirming.
//!
//! Every problem found becomes a [`Reason`]; verification keeps going after a failure
//! where later checks still say something useful, so an operator sees every cause.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ring::signature::{self, UnparsedPublicKey};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::FromDer as _;
use x509_parser::revocation_list::CertificateRevocationList;

use super::cert::{self, AmdCert, CertError, PublicKey, SignedBy};
use super::codes;
use super::report::{
    FirmwareVersion, GuestPolicy, PlatformInfo, Report, ReportError, SIG_ALGO_ECDSA_P384_SHA384,
    SigningKey,
};
use super::roots::TrustAnchors;
use super::tcb::{Product, TcbVersion};
use crate::verdict::{Findings, Reason, Status, codes as common};

/// Certificates and CRLs that come with a report: the VCEK or VLEK, optionally its
/// intermediate (and ARK, which is only used if it is also a trusted root), and CRLs.
#[derive(Debug, Clone, Default)]
pub struct Endorsements {
    /// VCEK/VLEK candidates (ECDSA P-384 keys).
    pub veks: Vec<AmdCert>,
    /// Other certificates (ASK, ASVK, ARK).
    pub chain: Vec<AmdCert>,
    /// DER CRLs with the name of the file or source they came from.
    pub crls: Vec<(String, Vec<u8>)>,
    /// Inputs that could not be used, with the reason.
    pub problems: Vec<String>,
}

impl Endorsements {
    /// Endorsements from just a VCEK/VLEK certificate (PEM or DER).
    pub fn from_vek(bytes: &[u8]) -> Endorsements {
        let mut e = Endorsements::default();
        e.add_file("VCEK/VLEK certificate", bytes);
        e
    }

    /// Sort one file's certificates (PEM or DER, any number) or CRL into place. Files that
    /// are neither are recorded in [`Endorsements::problems`].
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) {
        if let Some(crls) = crl_blocks(bytes) {
            for der in crls {
                self.crls.push((name.to_owned(), der));
            }
            return;
        }
        match AmdCert::parse_many(bytes, name) {
            Ok(certs) => {
                for c in certs {
                    if matches!(c.key, PublicKey::EcP384(_)) {
                        self.veks.push(c);
                    } else {
                        self.chain.push(c);
                    }
                }
            }
            Err(e) => self.problems.push(e.to_string()),
        }
    }

    /// Add a DER CRL.
    pub fn add_crl(&mut self, name: &str, der: Vec<u8>) {
        self.crls.push((name.to_owned(), der));
    }
}

/// A CRL file: PEM `X509 CRL` blocks, or DER that parses as a CRL. `None` otherwise.
fn crl_blocks(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    if let Ok(blocks) = cert::pem_or_der_blocks(bytes, "X509 CRL", "CRL")
        && blocks
            .iter()
            .all(|b| CertificateRevocationList::from_der(b).is_ok())
    {
        return Some(blocks);
    }
    None
}

/// Claims of a verified report, owned, for the appraisal layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpClaims {
    pub product: Product,
    pub version: u32,
    pub signing_key: &'static str,
    pub guest_svn: u32,
    #[serde(serialize_with = "ser_u64")]
    pub policy: u64,
    pub vmpl: u32,
    #[serde(with = "hex_bytes")]
    pub measurement: [u8; 48],
    #[serde(with = "hex_bytes")]
    pub report_data: [u8; 64],
    #[serde(with = "hex_bytes")]
    pub host_data: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub family_id: [u8; 16],
    #[serde(with = "hex_bytes")]
    pub image_id: [u8; 16],
    #[serde(with = "hex_bytes")]
    pub id_key_digest: [u8; 48],
    #[serde(with = "hex_bytes")]
    pub author_key_digest: [u8; 48],
    #[serde(with = "hex_bytes")]
    pub report_id: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub chip_id: [u8; 64],
    #[serde(serialize_with = "ser_u64")]
    pub platform_info: u64,
    #[serde(serialize_with = "ser_tcb")]
    pub current_tcb: TcbVersion,
    #[serde(serialize_with = "ser_tcb")]
    pub reported_tcb: TcbVersion,
    #[serde(serialize_with = "ser_tcb")]
    pub committed_tcb: TcbVersion,
    #[serde(serialize_with = "ser_tcb")]
    pub launch_tcb: TcbVersion,
    #[serde(skip)]
    pub current_version: FirmwareVersion,
    #[serde(skip)]
    pub committed_version: FirmwareVersion,
    pub launch_mit_vector: Option<u64>,
    pub current_mit_vector: Option<u64>,
}

impl SnpClaims {
    fn new(r: &Report<'_>, product: Product) -> SnpClaims {
        SnpClaims {
            product,
            version: r.version().as_u32(),
            signing_key: r.signing_key().as_str(),
            guest_svn: r.guest_svn(),
            policy: r.policy().0,
            vmpl: r.vmpl(),
            measurement: *r.measurement(),
            report_data: *r.report_data(),
            host_data: *r.host_data(),
            family_id: *r.family_id(),
            image_id: *r.image_id(),
            id_key_digest: *r.id_key_digest(),
            author_key_digest: *r.author_key_digest(),
            report_id: *r.report_id(),
            chip_id: *r.chip_id(),
            platform_info: r.platform_info().0,
            current_tcb: r.current_tcb(),
            reported_tcb: r.reported_tcb(),
            committed_tcb: r.committed_tcb(),
            launch_tcb: r.launch_tcb(),
            current_version: r.current_version(),
            committed_version: r.committed_version(),
            launch_mit_vector: r.launch_mit_vector(),
            current_mit_vector: r.current_mit_vector(),
        }
    }
    /// The guest policy bits.
    pub fn guest_policy(&self) -> GuestPolicy {
        GuestPolicy(self.policy)
    }
    /// The platform info bits.
    pub fn platform(&self) -> PlatformInfo {
        PlatformInfo(self.platform_info)
    }
}

fn ser_u64<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:#018x}"))
}
fn ser_tcb<S: serde::Serializer>(v: &TcbVersion, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(v.0))
}
mod hex_bytes {
    pub fn serialize<S: serde::Serializer, const N: usize>(
        v: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

/// Genuine evidence: its claims, and the warnings that still apply (`crl-missing`,
/// `non-default-root`).
#[derive(Debug, Clone)]
pub struct VerifiedSnp {
    pub claims: SnpClaims,
    pub findings: Findings,
    /// SHA-256 of the VCEK/VLEK, intermediate and ARK DER that verified it.
    pub chain_sha256: [[u8; 32]; 3],
    /// What was checked, for the verdict's details.
    pub details: serde_json::Value,
}

/// Evidence that is not genuine (or could not be checked): at least one
/// `contraindicated` reason.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub findings: Findings,
    pub details: serde_json::Value,
}

/// Verify one report at `at`. See the module documentation for what is checked.
pub fn verify(
    report: &[u8],
    endorsements: &Endorsements,
    roots: &TrustAnchors,
    at: OffsetDateTime,
) -> Result<VerifiedSnp, Rejected> {
    verify_inner(report, endorsements, roots, at, None)
}

/// How many chains a [`Verifier`] remembers before it starts over.
const CACHE_LIMIT: usize = 4096;

/// A verifier that remembers verified VCEK/VLEK chains, so repeated evidence from the
/// same chip skips certificate parsing and the three RSA verifications. The cache holds
/// only time-independent results; validity windows and CRLs are re-checked every time.
pub struct Verifier {
    roots: TrustAnchors,
    cache: Mutex<HashMap<[u8; 32], Arc<ChainResult>>>,
}

impl Verifier {
    pub fn new(roots: TrustAnchors) -> Verifier {
        Verifier {
            roots,
            cache: Mutex::new(HashMap::new()),
        }
    }
    pub fn verify(
        &self,
        report: &[u8],
        endorsements: &Endorsements,
        at: OffsetDateTime,
    ) -> Result<VerifiedSnp, Rejected> {
        verify_inner(report, endorsements, &self.roots, at, Some(&self.cache))
    }
}

/// A chain from a VEK to an ARK, or the reasons there is none. Independent of time.
#[derive(Debug)]
struct ChainResult {
    intermediate: Option<AmdCert>,
    ark: Option<AmdCert>,
    reasons: Vec<Reason>,
}

fn refuse(f: &mut Findings, code: &str, msg: impl Into<String>) {
    f.push(Reason::refuse(code, msg));
}

fn rejected(findings: Findings, details: serde_json::Value) -> Result<VerifiedSnp, Rejected> {
    Err(Rejected { findings, details })
}

fn verify_inner(
    bytes: &[u8],
    endorsements: &Endorsements,
    roots: &TrustAnchors,
    at: OffsetDateTime,
    cache: Option<&Mutex<HashMap<[u8; 32], Arc<ChainResult>>>>,
) -> Result<VerifiedSnp, Rejected> {
    let mut f = Findings::default();
    let mut details = serde_json::Map::new();
    let report = match Report::parse(bytes) {
        Ok(r) => r,
        Err(e) => {
            let code = match e {
                ReportError::UnsupportedVersion { .. } => codes::UNSUPPORTED_VERSION,
                _ => common::MALFORMED_EVIDENCE,
            };
            refuse(&mut f, code, e.to_string());
            return rejected(f, details.into());
        }
    };
    details.insert("report_version".into(), report.version().as_u32().into());
    details.insert("signing_key".into(), report.signing_key().as_str().into());

    if report.signing_key() == SigningKey::None || report.mask_chip_key() {
        refuse(
            &mut f,
            codes::UNSIGNED_REPORT,
            "the report is not signed (SIGNING_KEY is none or MASK_CHIP_KEY is set): request a report signed by the VCEK or VLEK",
        );
        return rejected(f, details.into());
    }
    if report.signature_algo() != SIG_ALGO_ECDSA_P384_SHA384 {
        refuse(
            &mut f,
            common::BAD_SIGNATURE,
            format!(
                "SIGNATURE_ALGO is {}, not 1 (ECDSA P-384 with SHA-384), the only algorithm the ABI defines",
                report.signature_algo()
            ),
        );
        return rejected(f, details.into());
    }
    for p in &endorsements.problems {
        refuse(&mut f, codes::MALFORMED_CERTIFICATE, p.clone());
    }

    // Pick the endorsement key: the one of the right kind whose key verifies the report
    // (each candidate's signature check runs at most once).
    let want_vlek = report.signing_key() == SigningKey::Vlek;
    let of_kind: Vec<&AmdCert> = endorsements
        .veks
        .iter()
        .filter(|c| is_vlek(c) == want_vlek)
        .collect();
    let chosen = of_kind
        .iter()
        .find(|c| report_signed_by(&report, c))
        .map(|c| (*c, true))
        .or_else(|| of_kind.first().map(|c| (*c, false)))
        .or_else(|| {
            endorsements
                .veks
                .first()
                .map(|c| (c, report_signed_by(&report, c)))
        });
    let Some((vek, signature_ok)) = chosen else {
        refuse(
            &mut f,
            codes::MISSING_ENDORSEMENT,
            format!(
                "no {} certificate was supplied: pass the {} (from the extended report's certificate table or AMD KDS) with --certs",
                report.signing_key(),
                report.signing_key()
            ),
        );
        return rejected(f, details.into());
    };
    details.insert("vek_subject".into(), vek.subject_cn.clone().into());
    details.insert("vek_sha256".into(), hex::encode(vek.fingerprint).into());

    if is_vlek(vek) != want_vlek {
        refuse(
            &mut f,
            codes::SIGNING_KEY_MISMATCH,
            format!(
                "the report says it is signed by the {} but the certificate supplied is a {} ({})",
                report.signing_key(),
                if is_vlek(vek) { "VLEK" } else { "VCEK" },
                vek.subject_cn
            ),
        );
    }
    if !signature_ok {
        refuse(
            &mut f,
            common::BAD_SIGNATURE,
            format!(
                "the report signature does not verify with the {} key (certificate SHA-256 {}): the report was altered or belongs to another chip or TCB",
                report.signing_key(),
                hex::encode(vek.fingerprint)
            ),
        );
    }

    // The product line comes from the certificate; the report's CPUID must agree.
    let product = match vek.product() {
        Some(p) => p,
        None => {
            refuse(
                &mut f,
                codes::WRONG_PRODUCT,
                format!(
                    "the certificate names product {:?}, which is not Milan, Genoa or Turin",
                    vek.amd.product_name.as_deref().unwrap_or("(none)")
                ),
            );
            return rejected(f, details.into());
        }
    };
    details.insert("product".into(), product.as_str().into());
    if let Some(cpu) = report.cpuid() {
        match Product::from_cpuid(cpu.family, cpu.model) {
            Some(p) if p == product => {}
            other => refuse(
                &mut f,
                codes::WRONG_PRODUCT,
                format!(
                    "the report's CPUID (family {:#04x}, model {:#04x}) is {}, but its certificate is for {product}",
                    cpu.family,
                    cpu.model,
                    other.map_or("an unknown product line".to_owned(), |p| p.to_string())
                ),
            ),
        }
    }
    if let Err(e) = report.check_tcb_reserved_for(Some(product)) {
        refuse(&mut f, common::MALFORMED_EVIDENCE, e.to_string());
    }
    check_extensions(&report, vek, product, &mut f);

    // The chain (cached when a verifier is used).
    let chain = match cache {
        Some(cache) => {
            let key = chain_key(vek, &endorsements.chain);
            let hit = cache.lock().ok().and_then(|c| c.get(&key).cloned());
            match hit {
                Some(c) => c,
                None => {
                    let c = Arc::new(build_chain(vek, product, &endorsements.chain, roots));
                    if let Ok(mut m) = cache.lock() {
                        // Bounded: peers choose what they send, so they must not be able
                        // to grow this without limit. Starting over is only slower.
                        if m.len() >= CACHE_LIMIT {
                            m.clear();
                        }
                        m.insert(key, c.clone());
                    }
                    c
                }
            }
        }
        None => Arc::new(build_chain(vek, product, &endorsements.chain, roots)),
    };
    for r in &chain.reasons {
        f.push(r.clone());
    }

    check_validity(vek, &chain, at, &mut f);

    if let (Some(ark), Some(inter)) = (&chain.ark, &chain.intermediate) {
        details.insert("intermediate".into(), inter.subject_cn.clone().into());
        details.insert("ark".into(), ark.subject_cn.clone().into());
        details.insert("ark_sha256".into(), hex::encode(ark.fingerprint).into());
        if !TrustAnchors::is_pinned_ark(ark) {
            f.push(Reason::warn(
                codes::NON_DEFAULT_ROOT,
                format!(
                    "the chain ends at an ARK that is not one of the pinned AMD roots: {} (SHA-256 {})",
                    ark.subject_cn,
                    hex::encode(ark.fingerprint)
                ),
            ));
        }
        check_crls(&endorsements.crls, ark, inter, at, &mut f);
    }

    if f.status() == Status::Contraindicated {
        return rejected(f, details.into());
    }
    match (&chain.intermediate, &chain.ark) {
        (Some(inter), Some(ark)) => Ok(VerifiedSnp {
            claims: SnpClaims::new(&report, product),
            findings: f,
            chain_sha256: [vek.fingerprint, inter.fingerprint, ark.fingerprint],
            details: details.into(),
        }),
        // build_chain always adds a refusal when either is missing; stay closed anyway.
        _ => {
            refuse(&mut f, common::UNTRUSTED_CHAIN, "no chain to a trusted ARK");
            rejected(f, details.into())
        }
    }
}

/// Check a VCEK/VLEK certificate on its own (no report): that it chains to a trusted ARK
/// through `supplied` or the roots' intermediates, for its own product line, and that
/// every certificate is valid at `at`. For collateral caches that vet a VCEK when they
/// store it. CRLs are not consulted here.
pub fn check_vek(
    vek: &AmdCert,
    supplied: &[AmdCert],
    roots: &TrustAnchors,
    at: OffsetDateTime,
) -> Findings {
    let mut f = Findings::default();
    let Some(product) = vek.product() else {
        refuse(
            &mut f,
            codes::WRONG_PRODUCT,
            format!(
                "the certificate {} names no known product line (productName {:?})",
                vek.subject_cn, vek.amd.product_name
            ),
        );
        return f;
    };
    let chain = build_chain(vek, product, supplied, roots);
    for r in &chain.reasons {
        f.push(r.clone());
    }
    check_validity(vek, &chain, at, &mut f);
    f
}

fn check_validity(vek: &AmdCert, chain: &ChainResult, at: OffsetDateTime, f: &mut Findings) {
    let vlek = is_vlek(vek);
    let mut certs: Vec<(&str, &AmdCert)> = vec![(if vlek { "VLEK" } else { "VCEK" }, vek)];
    if let Some(i) = &chain.intermediate {
        certs.push((if vlek { "ASVK" } else { "ASK" }, i));
    }
    if let Some(a) = &chain.ark {
        certs.push(("ARK", a));
    }
    for (role, c) in certs {
        if !c.valid_at(at) {
            refuse(
                f,
                common::EXPIRED,
                format!(
                    "the {role} certificate ({}) is valid from {} to {}, not at the verification time {}",
                    c.subject_cn,
                    rfc3339(c.not_before),
                    rfc3339(c.not_after),
                    rfc3339(at)
                ),
            );
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn is_vlek(c: &AmdCert) -> bool {
    c.subject_cn == "SEV-VLEK" || c.amd.csp_id.is_some()
}

fn report_signed_by(report: &Report<'_>, vek: &AmdCert) -> bool {
    let PublicKey::EcP384(point) = &vek.key else {
        return false;
    };
    let mut sig = [0u8; 96];
    let (r, s) = sig.split_at_mut(48);
    r.copy_from_slice(&report.signature_r());
    s.copy_from_slice(&report.signature_s());
    UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
        .verify(report.signed_bytes(), &sig)
        .is_ok()
}

/// The VCEK/VLEK's AMD extensions against the report: TCB SPLs, hwID.
fn check_extensions(report: &Report<'_>, vek: &AmdCert, product: Product, f: &mut Findings) {
    let spl = &vek.amd.spl;
    let get = |i: usize| spl.get(i).copied().flatten();
    // Positions of each SPL arc in the 8 TCB bytes; reserved positions come from spl_4..7.
    let layout: [usize; 8] = if product.has_fmc() {
        [9, 1, 2, 3, 5, 6, 7, 8]
    } else {
        [1, 2, 4, 5, 6, 7, 3, 8]
    };
    let required: &[usize] = if product.has_fmc() {
        &[9, 1, 2, 3, 8]
    } else {
        &[1, 2, 3, 8]
    };
    let missing: Vec<String> = required
        .iter()
        .filter(|&&i| get(i).is_none())
        .map(|i| format!("1.3.6.1.4.1.3704.1.3.{i}"))
        .collect();
    if !missing.is_empty() {
        refuse(
            f,
            codes::MALFORMED_CERTIFICATE,
            format!(
                "the {product} certificate {} lacks the TCB extensions {}",
                vek.subject_cn,
                missing.join(", ")
            ),
        );
    } else {
        let expected = TcbVersion(layout.map(|i| get(i).unwrap_or(0)));
        let reported = report.reported_tcb();
        if expected != reported {
            refuse(
                f,
                codes::TCB_MISMATCH,
                format!(
                    "REPORTED_TCB is {reported} ({}) but the certificate is for TCB {expected} ({}): fetch the VCEK for the reported TCB",
                    reported.decode(product),
                    expected.decode(product)
                ),
            );
        }
    }
    // hwID: VCEKs only, and only when the chip id is not masked.
    if is_vlek(vek) || report.chip_id_is_zero() {
        return;
    }
    let want_len = if product.has_fmc() { 8 } else { 64 };
    match &vek.amd.hw_id {
        None => refuse(
            f,
            codes::MALFORMED_CERTIFICATE,
            format!(
                "the VCEK {} has no hwID extension (1.3.6.1.4.1.3704.1.4)",
                vek.subject_cn
            ),
        ),
        Some(hw) => {
            let chip = report.chip_id().as_slice();
            let (head, tail) = chip.split_at(want_len.min(chip.len()));
            if hw.len() != want_len || head != hw.as_slice() || tail.iter().any(|&b| b != 0) {
                refuse(
                    f,
                    codes::CHIP_ID_MISMATCH,
                    format!(
                        "CHIP_ID {} does not match the VCEK's hwID {}: the certificate belongs to another chip",
                        hex::encode(chip),
                        hex::encode(hw)
                    ),
                );
            }
        }
    }
}

fn chain_key(vek: &AmdCert, extra: &[AmdCert]) -> [u8; 32] {
    let mut all = vek.fingerprint.to_vec();
    for c in extra {
        all.extend_from_slice(&c.fingerprint);
    }
    cert::sha256(&all)
}

/// VEK ← intermediate ← trusted ARK, or why not. Time-independent.
fn build_chain(
    vek: &AmdCert,
    product: Product,
    supplied: &[AmdCert],
    roots: &TrustAnchors,
) -> ChainResult {
    let mut reasons = Vec::new();
    let vlek = is_vlek(vek);
    let inter_role = if vlek { "ASVK" } else { "ASK" };
    let mut bad_sigs = Vec::new();
    // Supplied intermediates first, then the ones that come with the roots.
    for inter in supplied.iter().chain(roots.intermediates.iter()) {
        match vek.signed_by(inter) {
            SignedBy::OtherIssuer => continue,
            SignedBy::BadSignature(e) => {
                bad_sigs.push(format!("{} ({e})", inter.subject_cn));
                continue;
            }
            SignedBy::Yes => {}
        }
        for ark in &roots.arks {
            match inter.signed_by(ark) {
                SignedBy::Yes => {}
                SignedBy::OtherIssuer => continue,
                SignedBy::BadSignature(e) => {
                    bad_sigs.push(format!("{} by {} ({e})", inter.subject_cn, ark.subject_cn));
                    continue;
                }
            }
            if !ark.is_self_signed() {
                continue;
            }
            for (what, c) in [(inter_role, inter), ("ARK", ark)] {
                if c.product() != Some(product) {
                    reasons.push(Reason::refuse(
                        codes::WRONG_PRODUCT,
                        format!(
                            "the {what} {} is not for {product}, the product line of the {}",
                            c.subject_cn,
                            if vlek { "VLEK" } else { "VCEK" }
                        ),
                    ));
                }
            }
            return ChainResult {
                intermediate: Some(inter.clone()),
                ark: Some(ark.clone()),
                reasons,
            };
        }
    }
    // No chain: say why as precisely as the inputs allow.
    let issuer_product = vek.issuer_cn.rsplit('-').next().unwrap_or("");
    let have: Vec<String> = roots.arks.iter().map(|a| a.subject_cn.clone()).collect();
    if !roots.arks.iter().any(|a| a.product() == Some(product)) {
        reasons.push(Reason::refuse(
            codes::WRONG_PRODUCT,
            format!(
                "the {} is for {product} (issuer {}) but the trusted roots are for other product lines: {}",
                if vlek { "VLEK" } else { "VCEK" },
                vek.issuer_cn,
                have.join(", ")
            ),
        ));
    }
    let why = if bad_sigs.is_empty() {
        format!(
            "no trusted {inter_role} issued the certificate (issuer {}, {issuer_product}); trusted roots: {}",
            vek.issuer_cn,
            have.join(", ")
        )
    } else {
        format!(
            "signatures in the chain do not verify: {}",
            bad_sigs.join("; ")
        )
    };
    reasons.push(Reason::refuse(
        common::UNTRUSTED_CHAIN,
        format!(
            "the {} does not chain to a trusted AMD root: {why}",
            if vlek { "VLEK" } else { "VCEK" }
        ),
    ));
    if supplied.iter().any(AmdCert::is_self_signed) {
        reasons.push(Reason::refuse(
            common::UNTRUSTED_CHAIN,
            "a self-signed certificate among the supplied certificates is not a trusted root: pass --roots to trust a root explicitly",
        ));
    }
    ChainResult {
        intermediate: None,
        ark: None,
        reasons,
    }
}

/// CRLs issued by `ark`: signature, window at `at`, and revocation of `inter`.
fn check_crls(
    crls: &[(String, Vec<u8>)],
    ark: &AmdCert,
    inter: &AmdCert,
    at: OffsetDateTime,
    f: &mut Findings,
) {
    let mut used = 0;
    for (name, der) in crls {
        let crl = match CertificateRevocationList::from_der(der) {
            Ok(([], crl)) => crl,
            Ok(_) => {
                refuse(
                    f,
                    codes::CRL_INVALID,
                    format!("the CRL {name} has trailing bytes"),
                );
                continue;
            }
            Err(e) => {
                refuse(
                    f,
                    codes::CRL_INVALID,
                    format!("the CRL {name} is not a DER CRL: {e}"),
                );
                continue;
            }
        };
        if crl.issuer().as_raw() != ark.subject.as_slice() {
            // Another product line's CRL: not about this chain.
            continue;
        }
        used += 1;
        let tbs = crl.tbs_cert_list.as_ref();
        // RSASSA-PSS, named identically inside and outside the signed part.
        let sig_ok = crl.signature_algorithm == crl.tbs_cert_list.signature
            && crl
                .signature_algorithm
                .algorithm
                .to_id_string()
                .eq("1.2.840.113549.1.1.10")
            && matches!(&ark.key, PublicKey::Rsa(k)
                if UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA384, k)
                    .verify(tbs, &crl.signature_value.data)
                    .is_ok());
        if !sig_ok {
            refuse(
                f,
                codes::CRL_INVALID,
                format!(
                    "the CRL {name} claims issuer {} but its RSASSA-PSS SHA-384 signature does not verify with that ARK",
                    ark.subject_cn
                ),
            );
            continue;
        }
        let this = OffsetDateTime::from_unix_timestamp(crl.last_update().timestamp())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let next = crl
            .next_update()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.timestamp()).ok());
        if at < this || next.is_none_or(|n| at > n) {
            f.push(Reason::warn(
                codes::CRL_EXPIRED,
                format!(
                    "the CRL {name} from {} is valid from {} to {}, not at the verification time {}: fetch a current CRL",
                    ark.subject_cn,
                    rfc3339(this),
                    next.map_or("(no nextUpdate)".to_owned(), rfc3339),
                    rfc3339(at)
                ),
            ));
        }
        if crl
            .iter_revoked_certificates()
            .any(|rc| strip_zeros(rc.raw_serial()) == strip_zeros(&inter.serial))
        {
            refuse(
                f,
                codes::REVOKED,
                format!(
                    "the CRL {name} revokes {} (serial {})",
                    inter.subject_cn,
                    hex::encode(&inter.serial)
                ),
            );
        }
    }
    if used == 0 {
        f.push(Reason::warn(
            codes::CRL_MISSING,
            format!(
                "no CRL from {} was supplied, so revocation of {} was not checked: pass AMD KDS's CRL for this product with --certs",
                ark.subject_cn, inter.subject_cn
            ),
        ));
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&x| x == 0).count();
    b.get(n..).unwrap_or_default()
}

/// Convert a certificate error into the reason the verdict carries.
pub fn cert_problem(e: &CertError) -> Reason {
    Reason::refuse(codes::MALFORMED_CERTIFICATE, e.to_string())
}
