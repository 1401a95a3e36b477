//! A flipped byte anywhere that matters is rejected with the right reason: each signed
//! region of the quote, its signature, the attestation key, the QE report and its
//! signature, the QE auth data, the certificates, and the collateral.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tdx_support;

use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use parley_attestation::tdx::pck::PckChain;
use parley_attestation::tdx::quote::CertificationData;
use parley_attestation::tdx::{Collateral, Quote, TrustRoots, Verification, codes};
use parley_attestation::verdict::{Status, codes as common};
use tdx_support::*;

/// Byte ranges of the quote's regions, from the parse of the original.
struct Layout {
    header_fixed: Range<usize>,
    header_signed: Range<usize>,
    descriptor: Option<Range<usize>>,
    body: Range<usize>,
    sig_len: Range<usize>,
    quote_sig: Range<usize>,
    att_key: Range<usize>,
    outer_type_size: Range<usize>,
    qe_report: Range<usize>,
    qe_sig: Range<usize>,
    auth_len: Range<usize>,
    auth: Range<usize>,
    inner_type: Range<usize>,
    inner_size: Range<usize>,
    pem: Range<usize>,
}

fn layout(bytes: &[u8]) -> Layout {
    let q = Quote::parse(bytes).unwrap();
    let signed = q.signed_bytes().len();
    let v5 = q.header().version == 5;
    let body_start = if v5 { 54 } else { 48 };
    let s = signed + 4;
    let auth_len = q.signature_data().qe_auth_data.len();
    let CertificationData::PckCertChain(pem) = q.signature_data().certification_data else {
        panic!("no PEM");
    };
    let pem_start = s + 584 + auth_len + 6;
    Layout {
        header_fixed: 0..8,
        header_signed: 8..48,
        descriptor: v5.then_some(48..54),
        body: body_start..signed,
        sig_len: signed..s,
        quote_sig: s..s + 64,
        att_key: s + 64..s + 128,
        outer_type_size: s + 128..s + 134,
        qe_report: s + 134..s + 518,
        qe_sig: s + 518..s + 582,
        auth_len: s + 582..s + 584,
        auth: s + 584..s + 584 + auth_len,
        inner_type: s + 584 + auth_len..s + 584 + auth_len + 2,
        inner_size: s + 584 + auth_len + 2..pem_start,
        pem: pem_start..pem_start + pem.len(),
    }
}

fn flipped(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= mask;
    b
}

struct Fixture {
    bytes: Vec<u8>,
    coll: Collateral,
    at: time::OffsetDateTime,
    baseline: Vec<String>,
}

fn fixture(vector: &'static str) -> Fixture {
    let c = case(vector);
    let bytes = quote_bytes(vector);
    let coll = c.dir.load();
    let baseline = codes(&verify_at(&bytes, &coll, c.inside));
    Fixture {
        bytes,
        coll,
        at: c.inside,
        baseline,
    }
}

impl Fixture {
    fn run(&self, bytes: &[u8]) -> Result<Verification, String> {
        match Quote::parse(bytes) {
            Ok(q) => Ok(parley_attestation::tdx::verify(
                &q,
                &self.coll,
                &TrustRoots::intel(),
                self.at,
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Every byte of `range` flipped must give a verification that is refused and has
    /// every code in `must`.
    fn expect(&self, name: &str, range: Range<usize>, must: &[&str]) {
        for at in range {
            let v = self
                .run(&flipped(&self.bytes, at, 0x01))
                .unwrap_or_else(|e| panic!("{name}: byte {at} made the quote unparsable: {e}"));
            assert_eq!(
                v.findings.status(),
                Status::Contraindicated,
                "{name} byte {at}"
            );
            for code in must {
                assert!(v.findings.has(code), "{name} byte {at}: {:#?}", v.findings);
            }
        }
    }

    /// Every byte of `range` flipped (both low and high bit) is a typed parse error, or a
    /// refusal with one of `or_codes`.
    fn expect_parse_error(&self, name: &str, range: Range<usize>, or_codes: &[&str]) {
        for at in range {
            for mask in [0x01, 0x80] {
                match self.run(&flipped(&self.bytes, at, mask)) {
                    Err(_) => {}
                    Ok(v) => {
                        assert_eq!(v.findings.status(), Status::Contraindicated, "{name} {at}");
                        assert!(
                            or_codes.iter().any(|c| v.findings.has(c)),
                            "{name} byte {at} mask {mask:#x}: {:#?}",
                            v.findings
                        );
                    }
                }
            }
        }
    }
}

fn check_quote_regions(vector: &'static str) {
    let f = fixture(vector);
    let l = layout(&f.bytes);
    f.expect_parse_error("header version/key type/TEE type", l.header_fixed, &[]);
    f.expect(
        "header reserved, vendor, user data",
        l.header_signed.clone(),
        &[codes::BAD_QUOTE_SIGNATURE],
    );
    f.expect(
        "QE vendor id",
        12..28,
        &[codes::BAD_QUOTE_SIGNATURE, codes::UNTRUSTED_QE_VENDOR],
    );
    if let Some(d) = l.descriptor {
        f.expect_parse_error("v5 body descriptor", d, &[]);
    }
    f.expect("TD report body", l.body, &[codes::BAD_QUOTE_SIGNATURE]);
    f.expect_parse_error("signature data length", l.sig_len, &[]);
    f.expect(
        "quote signature",
        l.quote_sig,
        &[codes::BAD_QUOTE_SIGNATURE],
    );
    f.expect(
        "attestation key",
        l.att_key,
        &[codes::BAD_QUOTE_SIGNATURE, codes::QE_REPORT_DATA_MISMATCH],
    );
    f.expect_parse_error("certification data type and size", l.outer_type_size, &[]);
    f.expect("QE report", l.qe_report, &[codes::BAD_QE_REPORT_SIGNATURE]);
    f.expect(
        "QE report signature",
        l.qe_sig,
        &[codes::BAD_QE_REPORT_SIGNATURE],
    );
    f.expect_parse_error("QE auth data length", l.auth_len, &[]);
    f.expect("QE auth data", l.auth, &[codes::QE_REPORT_DATA_MISMATCH]);
    f.expect_parse_error(
        "inner certification data type",
        l.inner_type,
        &[codes::UNSUPPORTED_CERTIFICATION_DATA],
    );
    f.expect_parse_error("inner certification data size", l.inner_size, &[]);

    // Flipped PEM text: refused, since the strict PEM rules and the chain leave no byte
    // without effect.
    let chain_codes = [
        codes::PCK_CHAIN_INVALID,
        codes::UNTRUSTED_ROOT,
        common::EXPIRED,
        codes::CRL_INVALID,
    ];
    for at in l.pem.clone().step_by(5) {
        let v = f.run(&flipped(&f.bytes, at, 0x01)).unwrap();
        assert_eq!(
            v.findings.status(),
            Status::Contraindicated,
            "PEM byte {at}"
        );
        assert!(
            chain_codes.iter().any(|c| v.findings.has(c)),
            "PEM byte {at}: {:#?}",
            v.findings
        );
    }
    let _ = f.baseline;
}

#[test]
fn v4_every_signed_region_and_signature_byte() {
    let f = fixture("v4-phala-dcap-qvl");
    assert!(
        f.baseline.is_empty(),
        "baseline must verify: {:?}",
        f.baseline
    );
    check_quote_regions("v4-phala-dcap-qvl");
}

#[test]
fn v5_every_signed_region_and_signature_byte() {
    let f = fixture("v5-phala-dcap-qvl-outdated");
    assert_eq!(f.baseline, s(&[codes::NO_MATCHING_TCB_LEVEL]));
    check_quote_regions("v5-phala-dcap-qvl-outdated");
}

/// Re-encode a chain in the layout of Intel's QE (64-column lines, LF, NUL-terminated).
fn encode_chain(certs: &[Vec<u8>], nul: bool) -> Vec<u8> {
    let mut out = String::new();
    for der in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    let mut bytes = out.into_bytes();
    if nul {
        bytes.push(0);
    }
    bytes
}

#[test]
fn every_certificate_byte_matters() {
    let f = fixture("v4-phala-dcap-qvl");
    let l = layout(&f.bytes);
    let pem = &f.bytes[l.pem.clone()];
    let certs: Vec<Vec<u8>> = PckChain::from_pem(pem)
        .unwrap()
        .certs
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    assert_eq!(
        encode_chain(&certs, true),
        pem,
        "the re-encoding reproduces the quote"
    );
    let chain_codes = [
        codes::PCK_CHAIN_INVALID,
        codes::UNTRUSTED_ROOT,
        common::EXPIRED,
        codes::CRL_INVALID,
        codes::CRL_REVOKED,
    ];
    for (i, der) in certs.iter().enumerate() {
        for at in (0..der.len()).step_by(3) {
            let mut mutated = certs.clone();
            mutated[i][at] ^= 0x01;
            let mut bytes = f.bytes.clone();
            bytes[l.pem.clone()].copy_from_slice(&encode_chain(&mutated, true));
            let v = f.run(&bytes).unwrap();
            assert_eq!(
                v.findings.status(),
                Status::Contraindicated,
                "cert {i} byte {at}"
            );
            assert!(
                chain_codes.iter().any(|c| v.findings.has(c)),
                "cert {i} byte {at}: {:#?}",
                v.findings
            );
        }
    }
}

#[test]
fn trailing_bytes_are_outside_every_signature() {
    let f = fixture("v4-phala-dcap-qvl");
    let end = Quote::parse(&f.bytes).unwrap().quote_bytes().len();
    for at in end..f.bytes.len() {
        let v = f.run(&flipped(&f.bytes, at, 0x01)).unwrap();
        assert_eq!(codes(&v), s(&[codes::TRAILING_DATA]), "byte {at}");
    }
}

// ---- collateral ----

const COLL: &str = "tdx/v4-phala-dcap-qvl/collateral.json";

struct Split {
    tcb: String,
    tcb_sig: String,
    qe: String,
    qe_sig: String,
    chain: String,
    pck_crl: Vec<u8>,
    root_crl: Vec<u8>,
}

fn split() -> Split {
    Split {
        tcb: dcap_field(COLL, "tcb_info"),
        tcb_sig: dcap_field(COLL, "tcb_info_signature"),
        qe: dcap_field(COLL, "qe_identity"),
        qe_sig: dcap_field(COLL, "qe_identity_signature"),
        chain: dcap_field(COLL, "tcb_info_issuer_chain"),
        pck_crl: hex::decode(dcap_field(COLL, "pck_crl")).unwrap(),
        root_crl: hex::decode(dcap_field(COLL, "root_ca_crl")).unwrap(),
    }
}

impl Split {
    fn dir(&self) -> Dir {
        Dir::new()
            .file(
                "tcb_info.json",
                format!(
                    "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
                    self.tcb, self.tcb_sig
                )
                .as_bytes(),
            )
            .file(
                "qe_identity.json",
                format!(
                    "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
                    self.qe, self.qe_sig
                )
                .as_bytes(),
            )
            .file("tcb_signing_chain.pem", self.chain.as_bytes())
            .file("pck_crl.der", &self.pck_crl)
            .file("root_ca_crl.der", &self.root_crl)
    }

    /// Verify with this collateral; a load error counts as a refusal too.
    fn verify(&self) -> Result<Verification, String> {
        let d = self.dir();
        let c = Collateral::from_dir(d.dir.path()).map_err(|e| e.to_string())?;
        Ok(verify_at(
            &quote_bytes("v4-phala-dcap-qvl"),
            &c,
            t("2025-06-20T00:00:00Z"),
        ))
    }
}

fn refused_with(r: Result<Verification, String>, any_of: &[&str], what: &str) {
    if let Ok(v) = r {
        assert_eq!(v.findings.status(), Status::Contraindicated, "{what}");
        assert!(
            any_of.iter().any(|c| v.findings.has(c)),
            "{what}: {:#?}",
            v.findings
        );
    }
}

#[test]
fn collateral_baseline_verifies() {
    let v = split().verify().unwrap();
    assert!(codes(&v).is_empty(), "{:#?}", v.findings);
}

#[test]
fn flipped_tcb_info_and_qe_identity_are_refused() {
    let base = split();
    for at in (0..base.tcb.len()).step_by(7) {
        let mut m = split();
        let mut b = m.tcb.into_bytes();
        b[at] ^= 0x01;
        m.tcb = String::from_utf8_lossy(&b).into_owned();
        refused_with(
            m.verify(),
            &[codes::BAD_COLLATERAL_SIGNATURE],
            &format!("tcb {at}"),
        );
    }
    for at in (0..base.qe.len()).step_by(5) {
        let mut m = split();
        let mut b = m.qe.into_bytes();
        b[at] ^= 0x01;
        m.qe = String::from_utf8_lossy(&b).into_owned();
        refused_with(
            m.verify(),
            &[codes::BAD_COLLATERAL_SIGNATURE],
            &format!("qe {at}"),
        );
    }
    for at in 0..64 {
        let mut m = split();
        let mut sig = hex::decode(&m.tcb_sig).unwrap();
        sig[at] ^= 0x01;
        m.tcb_sig = hex::encode(sig);
        refused_with(
            m.verify(),
            &[codes::BAD_COLLATERAL_SIGNATURE],
            "tcb signature",
        );
        let mut m = split();
        let mut sig = hex::decode(&m.qe_sig).unwrap();
        sig[at] ^= 0x01;
        m.qe_sig = hex::encode(sig);
        refused_with(
            m.verify(),
            &[codes::BAD_COLLATERAL_SIGNATURE],
            "qe signature",
        );
    }
}

#[test]
fn flipped_crls_are_refused() {
    let base = split();
    for at in (0..base.pck_crl.len()).step_by(11) {
        let mut m = split();
        m.pck_crl[at] ^= 0x01;
        refused_with(
            m.verify(),
            &[
                codes::CRL_INVALID,
                codes::COLLATERAL_EXPIRED,
                codes::CRL_REVOKED,
            ],
            &format!("pck crl {at}"),
        );
    }
    for at in 0..base.root_crl.len() {
        let mut m = split();
        m.root_crl[at] ^= 0x01;
        refused_with(
            m.verify(),
            &[
                codes::CRL_INVALID,
                codes::COLLATERAL_EXPIRED,
                codes::CRL_REVOKED,
            ],
            &format!("root crl {at}"),
        );
    }
}

#[test]
fn flipped_signing_chain_is_refused() {
    let base = split();
    let certs: Vec<Vec<u8>> = base
        .chain
        .split("-----END CERTIFICATE-----")
        .filter(|p| p.contains("BEGIN"))
        .map(|p| {
            let b64: String = p
                .lines()
                .filter(|l| !l.starts_with("-----") && !l.is_empty())
                .collect();
            STANDARD.decode(b64).unwrap()
        })
        .collect();
    assert_eq!(certs.len(), 2);
    for at in (0..certs[0].len()).step_by(3) {
        let mut mutated = certs.clone();
        mutated[0][at] ^= 0x01;
        let mut m = split();
        m.chain = String::from_utf8(encode_chain(&mutated, false)).unwrap();
        refused_with(
            m.verify(),
            &[
                codes::COLLATERAL_CHAIN_INVALID,
                codes::UNTRUSTED_ROOT,
                codes::BAD_COLLATERAL_SIGNATURE,
                common::EXPIRED,
            ],
            &format!("signing cert byte {at}"),
        );
    }
}
