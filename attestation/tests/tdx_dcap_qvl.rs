//! Differential test against dcap-qvl 0.7 (a dev-dependency only): on every vector with
//! complete collateral, on mutated quotes and on the test-PKI scenarios, both verifiers
//! must agree on accept/refuse and, when both evaluate, on the TCB status. This is also the
//! evidence for the decision recorded in `src/tdx/mod.rs`: dcap-qvl is correct and fails
//! closed here (no matching level, other FMSPC, expired collateral, revocation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tdx_support;

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::verify::QuoteVerifier;
use parley_attestation::tdx::roots::INTEL_SGX_ROOT_CA_PEM;
use parley_attestation::tdx::{Collateral, Quote, TrustRoots, Verification, codes};
use parley_attestation::verdict::Status;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tdx_support::pki::{Built, Scenario};
use tdx_support::*;
use time::OffsetDateTime;

fn intel_root() -> Vec<u8> {
    CertificateDer::from_pem_slice(INTEL_SGX_ROOT_CA_PEM.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn theirs(
    root: &[u8],
    quote: &[u8],
    c: &QuoteCollateralV3,
    at: OffsetDateTime,
) -> Result<String, String> {
    QuoteVerifier::new(root.to_vec())
        // Debug TDs are a policy matter in Parley; let dcap-qvl judge genuineness only.
        .allow_debug(true)
        .verify(quote, c, u64::try_from(at.unix_timestamp()).unwrap())
        .map(|r| r.status)
        .map_err(|e| format!("{e:#}"))
}

/// Warnings that are Parley's alone (not verification failures).
const OURS_ONLY: [&str; 2] = [codes::NON_DEFAULT_ROOT, codes::TRAILING_DATA];

/// Statuses Parley's verification refuses but dcap-qvl reports as a status (policy).
const REFUSED_STATUSES: [&str; 2] = ["OutOfDate", "OutOfDateConfigurationNeeded"];

fn agree(what: &str, ours: &Verification, theirs: &Result<String, String>) {
    let refusals: Vec<&str> = ours
        .findings
        .reasons
        .iter()
        .filter(|r| r.severity == Status::Contraindicated)
        .map(|r| r.code.as_str())
        .collect();
    match theirs {
        Err(e) => assert!(
            !refusals.is_empty(),
            "{what}: dcap-qvl refuses ({e}) but Parley accepts: {:#?}",
            ours.findings
        ),
        Ok(status) => {
            let tcb = ours.tcb.as_ref().unwrap_or_else(|| {
                panic!(
                    "{what}: dcap-qvl says {status}, Parley has no TCB: {:#?}",
                    ours.findings
                )
            });
            assert_eq!(tcb.status.as_str(), status, "{what}");
            if REFUSED_STATUSES.contains(&status.as_str()) {
                assert!(
                    refusals.iter().all(|c| c.starts_with("tcb-out-of-date")),
                    "{what}: {refusals:?}"
                );
            } else {
                assert!(
                    refusals.is_empty(),
                    "{what}: dcap-qvl accepts ({status}): {refusals:?}"
                );
            }
        }
    }
    let _ = OURS_ONLY;
}

/// dcap-qvl collateral from a Parley collateral directory's parts.
fn from_dcap_json(rel: &str) -> QuoteCollateralV3 {
    let v: Value = serde_json::from_slice(&read(rel)).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    let b = |k: &str| hex::decode(v[k].as_str().unwrap()).unwrap();
    QuoteCollateralV3 {
        pck_crl_issuer_chain: s("pck_crl_issuer_chain"),
        root_ca_crl: b("root_ca_crl"),
        pck_crl: b("pck_crl"),
        tcb_info_issuer_chain: s("tcb_info_issuer_chain"),
        tcb_info: s("tcb_info"),
        tcb_info_signature: b("tcb_info_signature"),
        qe_identity_issuer_chain: s("qe_identity_issuer_chain"),
        qe_identity: s("qe_identity"),
        qe_identity_signature: b("qe_identity_signature"),
        pck_certificate_chain: None,
    }
}

/// The signed JSON text and signature of a PCS response file.
fn pcs(rel: &str, key: &str) -> (String, Vec<u8>) {
    let text = String::from_utf8(read(rel)).unwrap();
    #[derive(serde::Deserialize)]
    struct R<'a> {
        #[serde(borrow)]
        signature: &'a str,
    }
    let sig: R = serde_json::from_str(&text).unwrap();
    let raw: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
        serde_json::from_str(&text).unwrap();
    (
        raw[key].get().to_owned(),
        hex::decode(sig.signature).unwrap(),
    )
}

fn vector_cases() -> Vec<(&'static str, QuoteCollateralV3)> {
    let phala5 = "tdx/v5-phala-dcap-qvl-outdated/collateral.json";
    let mut go5 = from_dcap_json(phala5);
    let (tcb, sig) = pcs("tdx/v5-go-tdx-guest/tcbinfo_response.json", "tcbInfo");
    go5.tcb_info = tcb;
    go5.tcb_info_signature = sig;

    let chain = tcb_signing_chain();
    let (tcb, tcb_sig) = pcs(
        "tdx/v4-go-tdx-guest-spr-e4/tcbinfo_response.json",
        "tcbInfo",
    );
    let (qe, qe_sig) = pcs(
        "tdx/v4-go-tdx-guest-spr-e4/qe_identity_response.json",
        "enclaveIdentity",
    );
    let spr = QuoteCollateralV3 {
        pck_crl_issuer_chain: String::new(),
        root_ca_crl: read("roots/intel/root_ca_crl.go-tdx-guest.der"),
        pck_crl: read("tdx/v4-go-tdx-guest-spr-e4/pck_crl.der"),
        tcb_info_issuer_chain: chain.clone(),
        tcb_info: tcb,
        tcb_info_signature: tcb_sig,
        qe_identity_issuer_chain: chain,
        qe_identity: qe,
        qe_identity_signature: qe_sig,
        pck_certificate_chain: None,
    };
    vec![
        (
            "v4-phala-dcap-qvl",
            from_dcap_json("tdx/v4-phala-dcap-qvl/collateral.json"),
        ),
        ("v5-phala-dcap-qvl-outdated", from_dcap_json(phala5)),
        ("v5-go-tdx-guest", go5),
        ("v4-go-tdx-guest-spr-e4", spr),
    ]
}

#[test]
fn real_vectors_agree_inside_and_outside_their_windows() {
    let root = intel_root();
    for (vector, coll) in vector_cases() {
        let c = case(vector);
        let ours_coll = c.dir.load();
        let bytes = quote_bytes(vector);
        for at in [c.inside, c.before, c.after] {
            let ours = verify_at(&bytes, &ours_coll, at);
            let th = theirs(&root, &bytes, &coll, at);
            agree(&format!("{vector} at {at}"), &ours, &th);
        }
    }
    // The expected outcomes, stated plainly.
    let (_, c) = &vector_cases()[0];
    assert_eq!(
        theirs(
            &root,
            &quote_bytes("v4-phala-dcap-qvl"),
            c,
            t("2025-06-20T00:00:00Z")
        ),
        Ok("UpToDate".to_owned())
    );
    let (_, c) = &vector_cases()[1];
    let e = theirs(
        &root,
        &quote_bytes("v5-phala-dcap-qvl-outdated"),
        c,
        t("2026-02-19T00:00:00Z"),
    )
    .unwrap_err();
    assert!(e.contains("No matching TCB level"), "{e}");
}

#[test]
fn another_fmspc_is_refused_by_both() {
    // The v4 dcap-qvl quote (FMSPC b0c06f000000) with the v5 collateral (90c06f000000),
    // at a time the latter is valid.
    let root = intel_root();
    let coll = from_dcap_json("tdx/v5-phala-dcap-qvl-outdated/collateral.json");
    let bytes = quote_bytes("v4-phala-dcap-qvl");
    let at = t("2026-02-19T00:00:00Z");
    let th = theirs(&root, &bytes, &coll, at);
    assert!(
        th.as_ref().unwrap_err().contains("Fmspc mismatch"),
        "{th:?}"
    );
    let ours = verify_at(&bytes, &case("v5-phala-dcap-qvl-outdated").dir.load(), at);
    assert!(ours.findings.has(codes::FMSPC_MISMATCH));
    agree("other FMSPC", &ours, &th);
}

#[test]
fn mutated_quotes_are_refused_by_both() {
    let root = intel_root();
    let (vector, coll) = vector_cases().remove(0);
    let c = case(vector);
    let ours_coll = c.dir.load();
    let bytes = quote_bytes(vector);
    let end = Quote::parse(&bytes).unwrap().quote_bytes().len();
    let mut stricter = 0;
    let root_copy = {
        let q = Quote::parse(&bytes).unwrap();
        let sig_end = q.quote_bytes().len();
        let text = &bytes[..sig_end];
        let marker = b"-----BEGIN CERTIFICATE-----";
        let starts: Vec<usize> = (0..text.len() - marker.len())
            .filter(|i| &text[*i..*i + marker.len()] == marker)
            .collect();
        assert_eq!(starts.len(), 3);
        starts[2]..sig_end
    };
    for at in (0..end).step_by(13) {
        let mut m = bytes.clone();
        m[at] ^= 0x01;
        let th = theirs(&root, &m, &coll, c.inside);
        match Quote::parse(&m) {
            Ok(q) => {
                let ours =
                    parley_attestation::tdx::verify(&q, &ours_coll, &TrustRoots::intel(), c.inside);
                assert_eq!(ours.findings.status(), Status::Contraindicated, "byte {at}");
                if th.is_ok() && only_pck_chain_refusal(&ours) {
                    // dcap-qvl never looks at the root certificate the quote carries (it
                    // is not on the path to its own anchor), so a damaged copy goes
                    // unnoticed; Parley requires every certificate in the quote to parse
                    // and to be on the path or the anchor itself. Stricter, never laxer.
                    assert!(root_copy.contains(&at), "byte {at} is not in the root copy");
                    stricter += 1;
                    continue;
                }
                agree(&format!("byte {at}"), &ours, &th);
            }
            // Our parser refuses; dcap-qvl must not accept either.
            Err(e) => assert!(th.is_err(), "byte {at}: we say {e}, dcap-qvl accepts"),
        }
    }
    // About one in thirteen bytes of the root copy.
    assert!(
        stricter <= root_copy.len() / 13 + 1,
        "{stricter} disagreements"
    );
}

/// Parley's only refusal is about the PCK chain's form.
fn only_pck_chain_refusal(ours: &Verification) -> bool {
    let refusals: Vec<_> = ours
        .findings
        .reasons
        .iter()
        .filter(|r| r.severity == Status::Contraindicated)
        .collect();
    refusals.len() == 1 && refusals[0].code == codes::PCK_CHAIN_INVALID
}

fn pki_collateral(b: &Built) -> QuoteCollateralV3 {
    let p = &b.parts;
    QuoteCollateralV3 {
        pck_crl_issuer_chain: p.pck_ca_chain_pem.clone(),
        root_ca_crl: p.root_crl.clone(),
        pck_crl: p.pck_crl.clone(),
        tcb_info_issuer_chain: p.signing_chain_pem.clone(),
        tcb_info: p.tcb_info.clone(),
        tcb_info_signature: p.tcb_info_signature.clone(),
        qe_identity_issuer_chain: p.signing_chain_pem.clone(),
        qe_identity: p.qe_identity.clone(),
        qe_identity_signature: p.qe_identity_signature.clone(),
        pck_certificate_chain: None,
    }
}

#[test]
fn test_pki_scenarios_agree() {
    const V4: &str = "v4-phala-dcap-qvl";
    const V5: &str = "v5-phala-dcap-qvl-outdated";
    let mut scenarios: Vec<(String, Scenario)> = Vec::new();
    for status in [
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    ] {
        scenarios.push((
            format!("platform {status}"),
            Scenario::new(V4).platform_status(status, &["INTEL-SA-00001"]),
        ));
    }
    for qe in ["OutOfDate", "Revoked"] {
        let mut sc = Scenario::new(V4).platform_status("ConfigurationNeeded", &[]);
        sc.qe_identity["tcbLevels"][0]["tcbStatus"] = Value::from(qe);
        scenarios.push((format!("QE {qe}"), sc));
    }
    let mut sc = Scenario::new(V4);
    sc.pck_components = [1; 16];
    scenarios.push(("no platform level".into(), sc));
    let mut sc = Scenario::new(V4);
    sc.tee_tcb_svn = Some([1, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    scenarios.push(("no module level".into(), sc));
    let mut sc = Scenario::new(V4);
    sc.fmspc = [1, 2, 3, 4, 5, 6];
    scenarios.push(("fmspc".into(), sc));
    for (name, f) in [
        (
            "revoked leaf",
            (|s: &mut Scenario| s.revoke_leaf = true) as fn(&mut Scenario),
        ),
        ("revoked CA", |s: &mut Scenario| {
            s.revoke_intermediate = true
        }),
        ("revoked signer", |s: &mut Scenario| {
            s.revoke_tcb_signer = true
        }),
        ("wrong key", |s: &mut Scenario| s.tcb_info_wrong_key = true),
        ("expired leaf", |s: &mut Scenario| {
            s.leaf_not_after = t("2025-12-31T00:00:00Z")
        }),
        ("late", |s: &mut Scenario| s.at = t("2026-03-01T00:00:00Z")),
    ] {
        let mut sc = Scenario::new(V4);
        f(&mut sc);
        scenarios.push((name.into(), sc));
    }
    for (name, svn, svn2) in [
        ("relaunch", 4u8, 13u8),
        ("1.5 up to date", 7, 13),
        ("1.5 current below", 7, 1),
    ] {
        let mut sc = Scenario::new(V5);
        sc.tee_tcb_svn = Some([svn, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        sc.tee_tcb_svn2 = Some([svn2, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        scenarios.push((name.into(), sc));
    }

    for (name, sc) in scenarios {
        let b = sc.build();
        let coll = Collateral::from_dir(b.dir.dir.path()).unwrap();
        let q = Quote::parse(&b.quote).unwrap();
        let ours = parley_attestation::tdx::verify(&q, &coll, &b.roots, b.at);
        let th = theirs(&b.parts.root_der, &b.quote, &pki_collateral(&b), b.at);
        agree(&name, &ours, &th);
    }
}

#[test]
fn parsing_agrees_with_dcap_qvl_on_every_field() {
    use dcap_qvl::quote::{AuthData, Quote as DQuote, Report};
    use parley_attestation::tdx::quote::CertificationData;
    for vector in TDX_VECTORS {
        let bytes = quote_bytes(vector);
        let ours = Quote::parse(&bytes).unwrap();
        let theirs = DQuote::parse(&bytes).unwrap();
        let h = ours.header();
        assert_eq!(theirs.header.version, h.version, "{vector}");
        assert_eq!(theirs.header.attestation_key_type, h.attestation_key_type);
        assert_eq!(theirs.header.tee_type, h.tee_type);
        assert_eq!(theirs.header.qe_svn, h.qe_svn);
        assert_eq!(theirs.header.pce_svn, h.pce_svn);
        assert_eq!(&theirs.header.qe_vendor_id, h.qe_vendor_id);
        assert_eq!(&theirs.header.user_data, h.user_data);
        assert_eq!(
            theirs.signed_length(),
            ours.signed_bytes().len(),
            "{vector}"
        );

        let r = ours.td_report();
        let td = theirs.report.as_td10().unwrap();
        assert_eq!(&td.tee_tcb_svn, r.tee_tcb_svn, "{vector}");
        assert_eq!(&td.mr_seam, r.mr_seam);
        assert_eq!(&td.mr_signer_seam, r.mr_signer_seam);
        assert_eq!(&td.seam_attributes, r.seam_attributes);
        assert_eq!(&td.td_attributes, r.td_attributes);
        assert_eq!(&td.xfam, r.xfam);
        assert_eq!(&td.mr_td, r.mr_td);
        assert_eq!(&td.mr_config_id, r.mr_config_id);
        assert_eq!(&td.mr_owner, r.mr_owner);
        assert_eq!(&td.mr_owner_config, r.mr_owner_config);
        assert_eq!(&td.rt_mr0, r.rtmr[0]);
        assert_eq!(&td.rt_mr1, r.rtmr[1]);
        assert_eq!(&td.rt_mr2, r.rtmr[2]);
        assert_eq!(&td.rt_mr3, r.rtmr[3]);
        assert_eq!(&td.report_data, r.report_data);
        match &theirs.report {
            Report::TD15(t15) => {
                assert_eq!(Some(&t15.tee_tcb_svn2), r.tee_tcb_svn2, "{vector}");
                assert_eq!(Some(&t15.mr_service_td), r.mr_service_td, "{vector}");
            }
            Report::TD10(_) => assert!(r.tee_tcb_svn2.is_none() && r.mr_service_td.is_none()),
            _ => panic!("{vector}: unexpected body"),
        }

        let s = ours.signature_data();
        let AuthData::V4(a) = &theirs.auth_data else {
            panic!("{vector}: v4 auth data expected");
        };
        assert_eq!(&a.ecdsa_signature, s.quote_signature, "{vector}");
        assert_eq!(&a.ecdsa_attestation_key, s.attestation_key);
        assert_eq!(a.certification_data.cert_type, s.certification_data_type);
        let qe = &a.qe_report_data;
        assert_eq!(&qe.qe_report, s.qe_report.raw);
        assert_eq!(&qe.qe_report_signature, s.qe_report_signature);
        assert_eq!(qe.qe_auth_data.data, s.qe_auth_data);
        let CertificationData::PckCertChain(pem) = s.certification_data else {
            panic!("{vector}");
        };
        assert_eq!(qe.certification_data.cert_type, 5);
        assert_eq!(qe.certification_data.body.data, pem);
    }
}
