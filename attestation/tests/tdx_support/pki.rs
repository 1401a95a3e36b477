//! A test PKI for TDX: a root, a PCK CA, a PCK leaf with an SGX extension, a TCB signer,
//! CRLs, signed TCB Info and QE Identity, and a quote re-signed with a fresh attestation
//! key. The header, TD report and QE report come from a real vector so the structures are
//! real; only keys, certificates and collateral values are the test's. Lives in tests
//! only: it is never compiled into the library.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    CustomExtension, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevokedCertParams, SerialNumber,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::Value;
use time::OffsetDateTime;

use super::{Dir, dcap_field, quote_bytes, t};
use parley_attestation::tdx::{Quote, TrustRoots};

/// Knobs of one test scenario; `Scenario::new` gives one that verifies (UpToDate) under
/// the test root.
pub struct Scenario {
    /// The vector whose header, body and QE report are reused.
    pub template: &'static str,
    pub tee_tcb_svn: Option<[u8; 16]>,
    pub tee_tcb_svn2: Option<[u8; 16]>,
    pub pck_components: [u8; 16],
    pub pck_pce_svn: u16,
    pub fmspc: [u8; 6],
    pub pce_id: [u8; 2],
    /// The `tcbInfo` object (dates are set by `build`).
    pub tcb_info: Value,
    /// The `enclaveIdentity` object (dates are set by `build`).
    pub qe_identity: Value,
    pub revoke_leaf: bool,
    pub revoke_intermediate: bool,
    pub revoke_tcb_signer: bool,
    /// Sign the PCK CRL with the root instead of the PCK CA.
    pub pck_crl_from_root: bool,
    /// Sign the TCB Info with a key that is not the TCB signer's.
    pub tcb_info_wrong_key: bool,
    pub leaf_not_after: OffsetDateTime,
    pub collateral_from: OffsetDateTime,
    pub collateral_to: OffsetDateTime,
    pub at: OffsetDateTime,
}

pub struct Built {
    pub quote: Vec<u8>,
    pub dir: Dir,
    pub roots: TrustRoots,
    pub at: OffsetDateTime,
    /// The same collateral as loose parts, for other verifiers.
    pub parts: Parts,
}

pub struct Parts {
    pub root_der: Vec<u8>,
    pub tcb_info: String,
    pub tcb_info_signature: Vec<u8>,
    pub qe_identity: String,
    pub qe_identity_signature: Vec<u8>,
    pub signing_chain_pem: String,
    pub pck_ca_chain_pem: String,
    pub pck_crl: Vec<u8>,
    pub root_crl: Vec<u8>,
}

impl Scenario {
    pub fn new(template: &'static str) -> Self {
        let coll = format!("tdx/{template}/collateral.json");
        let tcb_info: Value = serde_json::from_str(&dcap_field(&coll, "tcb_info")).unwrap();
        let qe_identity: Value = serde_json::from_str(&dcap_field(&coll, "qe_identity")).unwrap();
        let fmspc: [u8; 6] = hex::decode(tcb_info["fmspc"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        Scenario {
            template,
            tee_tcb_svn: None,
            tee_tcb_svn2: None,
            pck_components: [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
            pck_pce_svn: 13,
            fmspc,
            pce_id: [0, 0],
            tcb_info,
            qe_identity,
            revoke_leaf: false,
            revoke_intermediate: false,
            revoke_tcb_signer: false,
            pck_crl_from_root: false,
            tcb_info_wrong_key: false,
            leaf_not_after: t("2030-01-01T00:00:00Z"),
            collateral_from: t("2026-01-01T00:00:00Z"),
            collateral_to: t("2026-02-01T00:00:00Z"),
            at: t("2026-01-15T00:00:00Z"),
        }
    }

    /// Set the status of the TCB Info level that the default platform matches (the first).
    pub fn platform_status(mut self, status: &str, advisories: &[&str]) -> Self {
        let level = &mut self.tcb_info["tcbLevels"][0];
        level["tcbStatus"] = Value::from(status);
        level["advisoryIDs"] = Value::from(advisories.to_vec());
        self
    }

    pub fn build(&self) -> Built {
        let rng = SystemRandom::new();
        let root = ca("Parley Test SGX Root CA", None, &[0x01]);
        let pck_ca = ca("Parley Test PCK Platform CA", Some(&root), &[0x02]);

        let (leaf_kp, leaf_signer) = key();
        let mut leaf_params = params("Parley Test PCK Certificate", &[0x03]);
        leaf_params.not_after = self.leaf_not_after;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[1, 2, 840, 113741, 1, 13, 1],
                sgx_extension(self),
            ));
        let leaf = leaf_params.signed_by(&leaf_kp, &pck_ca).unwrap();

        let (signer_kp, tcb_signer) = key();
        let mut signer_params = params("Parley Test TCB Signing", &[0x04]);
        signer_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let signer_cert = signer_params.signed_by(&signer_kp, &root).unwrap();

        // CRLs.
        let revoked = |serial: u8| RevokedCertParams {
            serial_number: SerialNumber::from(vec![serial]),
            revocation_time: t("2025-12-01T00:00:00Z"),
            reason_code: None,
            invalidity_date: None,
        };
        let crl_params = |revoked_certs| CertificateRevocationListParams {
            this_update: self.collateral_from,
            next_update: self.collateral_to,
            crl_number: SerialNumber::from(vec![1]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let mut root_revoked = Vec::new();
        if self.revoke_intermediate {
            root_revoked.push(revoked(0x02));
        }
        if self.revoke_tcb_signer {
            root_revoked.push(revoked(0x04));
        }
        let root_crl = crl_params(root_revoked).signed_by(&root).unwrap();
        let leaf_revoked = if self.revoke_leaf {
            vec![revoked(0x03)]
        } else {
            Vec::new()
        };
        let pck_crl = if self.pck_crl_from_root {
            crl_params(leaf_revoked).signed_by(&root).unwrap()
        } else {
            crl_params(leaf_revoked).signed_by(&pck_ca).unwrap()
        };

        // Collateral, signed.
        let fmt = |d: OffsetDateTime| {
            d.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let mut tcb_info = self.tcb_info.clone();
        tcb_info["issueDate"] = Value::from(fmt(self.collateral_from));
        tcb_info["nextUpdate"] = Value::from(fmt(self.collateral_to));
        let mut qe_identity = self.qe_identity.clone();
        qe_identity["issueDate"] = Value::from(fmt(self.collateral_from));
        qe_identity["nextUpdate"] = Value::from(fmt(self.collateral_to));
        let tcb_body = serde_json::to_string(&tcb_info).unwrap();
        let qe_body = serde_json::to_string(&qe_identity).unwrap();
        let tcb_key = if self.tcb_info_wrong_key {
            key().1
        } else {
            tcb_signer
        };
        let tcb_sig = tcb_key.sign(&rng, tcb_body.as_bytes()).unwrap();
        let signer_for_qe = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &signer_kp.serialize_der(),
            &rng,
        )
        .unwrap();
        let qe_sig = signer_for_qe.sign(&rng, qe_body.as_bytes()).unwrap();
        let dir = Dir::new()
            .file(
                "tcb_info.json",
                format!(
                    "{{\"tcbInfo\":{tcb_body},\"signature\":\"{}\"}}",
                    hex::encode(tcb_sig.as_ref())
                )
                .as_bytes(),
            )
            .file(
                "qe_identity.json",
                format!(
                    "{{\"enclaveIdentity\":{qe_body},\"signature\":\"{}\"}}",
                    hex::encode(qe_sig.as_ref())
                )
                .as_bytes(),
            )
            .file(
                "tcb_signing_chain.pem",
                format!("{}{}", signer_cert.pem(), root.pem()).as_bytes(),
            )
            .file("pck_crl.der", pck_crl.der())
            .file("root_ca_crl.der", root_crl.der());

        let pem = format!("{}{}{}", leaf.pem(), pck_ca.pem(), root.pem());
        let quote = self.quote(&leaf_signer, pem.as_bytes());
        let roots =
            TrustRoots::from_certs(vec![("test-root.der".into(), root.der().to_vec())]).unwrap();
        let parts = Parts {
            root_der: root.der().to_vec(),
            tcb_info: tcb_body,
            tcb_info_signature: tcb_sig.as_ref().to_vec(),
            qe_identity: qe_body,
            qe_identity_signature: qe_sig.as_ref().to_vec(),
            signing_chain_pem: format!("{}{}", signer_cert.pem(), root.pem()),
            pck_ca_chain_pem: format!("{}{}", pck_ca.pem(), root.pem()),
            pck_crl: pck_crl.der().to_vec(),
            root_crl: root_crl.der().to_vec(),
        };
        Built {
            quote,
            dir,
            roots,
            at: self.at,
            parts,
        }
    }

    fn quote(&self, pck_key: &EcdsaKeyPair, pem: &[u8]) -> Vec<u8> {
        let template = quote_bytes(self.template);
        let q = Quote::parse(&template).unwrap();
        let mut signed = q.signed_bytes().to_vec();
        let body_at = if q.header().version == 5 { 54 } else { 48 };
        if let Some(svn) = self.tee_tcb_svn {
            signed[body_at..body_at + 16].copy_from_slice(&svn);
        }
        if let Some(svn2) = self.tee_tcb_svn2 {
            signed[body_at + 584..body_at + 600].copy_from_slice(&svn2);
        }
        let sig = q.signature_data();
        build_quote(&signed, sig.qe_report.raw, sig.qe_auth_data, pck_key, pem)
    }
}

/// Assemble and sign a v4/v5 quote from its parts.
pub fn build_quote(
    signed: &[u8],
    qe_report: &[u8; 384],
    auth: &[u8],
    pck_key: &EcdsaKeyPair,
    pem: &[u8],
) -> Vec<u8> {
    let rng = SystemRandom::new();
    let (_, att) = key();
    let att_pub = &att.public_key().as_ref()[1..];
    let quote_sig = att.sign(&rng, signed).unwrap();
    let mut report = *qe_report;
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    h.update(att_pub);
    h.update(auth);
    report[320..352].copy_from_slice(h.finish().as_ref());
    report[352..384].fill(0);
    let qe_sig = pck_key.sign(&rng, &report).unwrap();

    let mut inner = Vec::new();
    inner.extend_from_slice(&5u16.to_le_bytes());
    inner.extend_from_slice(&u32::try_from(pem.len()).unwrap().to_le_bytes());
    inner.extend_from_slice(pem);
    let mut outer = Vec::new();
    outer.extend_from_slice(&report);
    outer.extend_from_slice(qe_sig.as_ref());
    outer.extend_from_slice(&u16::try_from(auth.len()).unwrap().to_le_bytes());
    outer.extend_from_slice(auth);
    outer.extend_from_slice(&inner);
    let mut sig_data = Vec::new();
    sig_data.extend_from_slice(quote_sig.as_ref());
    sig_data.extend_from_slice(att_pub);
    sig_data.extend_from_slice(&6u16.to_le_bytes());
    sig_data.extend_from_slice(&u32::try_from(outer.len()).unwrap().to_le_bytes());
    sig_data.extend_from_slice(&outer);
    let mut quote = signed.to_vec();
    quote.extend_from_slice(&u32::try_from(sig_data.len()).unwrap().to_le_bytes());
    quote.extend_from_slice(&sig_data);
    quote
}

/// A fresh P-256 key as rcgen and ring see it.
fn key() -> (KeyPair, EcdsaKeyPair) {
    let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let ring_kp = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &kp.serialize_der(),
        &SystemRandom::new(),
    )
    .unwrap();
    (kp, ring_kp)
}

fn params(cn: &str, serial: &[u8]) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Parley Tests");
    p.distinguished_name = dn;
    p.serial_number = Some(SerialNumber::from(serial.to_vec()));
    p.not_before = t("2020-01-01T00:00:00Z");
    p.not_after = t("2040-01-01T00:00:00Z");
    p
}

fn ca(
    cn: &str,
    issuer: Option<&CertifiedIssuer<'static, KeyPair>>,
    serial: &[u8],
) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = params(cn, serial);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let kp = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    match issuer {
        None => CertifiedIssuer::self_signed(p, kp).unwrap(),
        Some(i) => CertifiedIssuer::signed_by(p, kp, i).unwrap(),
    }
}

// A minimal DER writer for the SGX extension (test fixtures only).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap());
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | u8::try_from(bytes.len()).unwrap());
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut push = |mut v: u64| {
        let mut tmp = vec![u8::try_from(v & 0x7f).unwrap()];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | u8::try_from(v & 0x7f).unwrap());
            v >>= 7;
        }
        tmp.reverse();
        body.extend(tmp);
    };
    push(arcs[0] * 40 + arcs[1]);
    for a in &arcs[2..] {
        push(*a);
    }
    tlv(0x06, &body)
}

fn int(v: u64) -> Vec<u8> {
    let mut bytes: Vec<u8> = v
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

fn entry(suffix: &[u64], value: Vec<u8>) -> Vec<u8> {
    let mut arcs = vec![1, 2, 840, 113741, 1, 13, 1];
    arcs.extend_from_slice(suffix);
    let mut c = oid(&arcs);
    c.extend(value);
    tlv(0x30, &c)
}

fn sgx_extension(s: &Scenario) -> Vec<u8> {
    let mut tcb = Vec::new();
    for (i, svn) in s.pck_components.iter().enumerate() {
        tcb.extend(entry(&[2, i as u64 + 1], int(u64::from(*svn))));
    }
    tcb.extend(entry(&[2, 17], int(u64::from(s.pck_pce_svn))));
    tcb.extend(entry(&[2, 18], tlv(0x04, &s.pck_components)));
    let mut all = Vec::new();
    all.extend(entry(&[1], tlv(0x04, &[0x11; 16])));
    all.extend(entry(&[2], tlv(0x30, &tcb)));
    all.extend(entry(&[3], tlv(0x04, &s.pce_id)));
    all.extend(entry(&[4], tlv(0x04, &s.fmspc)));
    all.extend(entry(&[5], tlv(0x0a, &[0])));
    tlv(0x30, &all)
}
