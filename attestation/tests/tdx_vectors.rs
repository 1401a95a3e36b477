//! Every real TDX vector parses to the MANIFEST's values and verifies (or fails) exactly as
//! the MANIFEST says, inside its collateral window, and fails outside it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tdx_support;

use parley_attestation::tdx::pck::{CertSummary, PckChain, PckExtension};
use parley_attestation::tdx::quote::{BodyKind, CertificationData};
use parley_attestation::tdx::{Quote, QuoteError, TcbStatus, TrustRoots, codes, inspect};
use parley_attestation::verdict::{Status, codes as common};
use tdx_support::*;

fn hexs(b: &[u8]) -> String {
    hex::encode(b)
}

#[test]
fn every_vector_parses_to_the_manifest_values() {
    for vector in TDX_VECTORS {
        let m = manifest(vector);
        let bytes = quote_bytes(vector);
        let get = |k: &str| {
            m.get(k)
                .unwrap_or_else(|| panic!("{vector}: no MANIFEST row {k}"))
                .clone()
        };
        assert_eq!(
            hexs(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()),
            get("quote sha256"),
            "{vector}"
        );
        let q = Quote::parse(&bytes).unwrap_or_else(|e| panic!("{vector}: {e}"));

        // "length / signed bytes / sig_data_len / trailing"
        let lens = get("length / signed bytes / sig_data_len / trailing");
        let nums: Vec<usize> = lens
            .split(['/', '('])
            .take(4)
            .map(|s| s.trim().parse().unwrap())
            .collect();
        assert_eq!(nums[0], bytes.len(), "{vector}");
        assert_eq!(nums[1], q.signed_bytes().len(), "{vector}");
        assert_eq!(nums[2], q.signature_data().len as usize, "{vector}");
        assert_eq!(nums[3], q.trailing().len(), "{vector}");
        let all_zero = lens.contains("all zero: True");
        assert_eq!(all_zero, q.trailing_nonzero() == 0, "{vector}");

        // Header.
        let h: serde_json::Value = serde_json::from_str(&get("header")).unwrap();
        let hd = q.header();
        assert_eq!(h["version"], hd.version, "{vector}");
        assert_eq!(h["att_key_type"], hd.attestation_key_type, "{vector}");
        assert_eq!(h["tee_type"], format!("{:#x}", hd.tee_type), "{vector}");
        assert_eq!(h["qe_vendor_id"], hexs(hd.qe_vendor_id), "{vector}");
        assert_eq!(h["user_data"], hexs(hd.user_data), "{vector}");
        match q.body_kind() {
            BodyKind::V4TdReport10 => assert!(h.get("body_type").is_none()),
            kind => {
                assert_eq!(h["body_type"], kind.v5_body_type().unwrap(), "{vector}");
                assert_eq!(h["body_size"], q.signed_bytes().len() - 54, "{vector}");
            }
        }

        // Body, through the typed view and through the inspect JSON.
        let r = q.td_report();
        let json = inspect::to_json(&q);
        let mut fields: Vec<(&str, &str, Vec<u8>)> = vec![
            ("body.tee_tcb_svn", "tee_tcb_svn", r.tee_tcb_svn.to_vec()),
            ("body.mrseam", "mr_seam", r.mr_seam.to_vec()),
            (
                "body.mrsignerseam",
                "mr_signer_seam",
                r.mr_signer_seam.to_vec(),
            ),
            (
                "body.seam_attributes",
                "seam_attributes",
                r.seam_attributes.to_vec(),
            ),
            (
                "body.td_attributes",
                "td_attributes",
                r.td_attributes.to_vec(),
            ),
            ("body.xfam", "xfam", r.xfam.to_vec()),
            ("body.mrtd", "mr_td", r.mr_td.to_vec()),
            ("body.mrconfigid", "mr_config_id", r.mr_config_id.to_vec()),
            ("body.mrowner", "mr_owner", r.mr_owner.to_vec()),
            (
                "body.mrownerconfig",
                "mr_owner_config",
                r.mr_owner_config.to_vec(),
            ),
            ("body.rtmr0", "rtmr0", r.rtmr[0].to_vec()),
            ("body.rtmr1", "rtmr1", r.rtmr[1].to_vec()),
            ("body.rtmr2", "rtmr2", r.rtmr[2].to_vec()),
            ("body.rtmr3", "rtmr3", r.rtmr[3].to_vec()),
            ("body.report_data", "report_data", r.report_data.to_vec()),
        ];
        if let (Some(s2), Some(st)) = (r.tee_tcb_svn2, r.mr_service_td) {
            fields.push(("body.tee_tcb_svn2", "tee_tcb_svn2", s2.to_vec()));
            fields.push(("body.mrservicetd", "mr_service_td", st.to_vec()));
        } else {
            assert!(!m.contains_key("body.tee_tcb_svn2"), "{vector}");
            assert!(json["body"].get("tee_tcb_svn2").is_none());
        }
        for (row, name, value) in &fields {
            assert_eq!(&hexs(value), &get(row), "{vector} {row}");
            assert_eq!(json["body"][name], get(row), "{vector} inspect {name}");
        }
        assert_eq!(json["type"], "tdx");
        assert_eq!(json["header"]["tee_type"], 0x81);

        // TD attributes decoded.
        let attrs = r.td_attributes();
        assert_eq!(
            json["body"]["td_attributes_decoded"]["debug"],
            attrs.debug(),
            "{vector}"
        );
        assert_eq!(
            json["body"]["td_attributes_decoded"]["sept_ve_disable"],
            attrs.sept_ve_disable(),
            "{vector}"
        );

        // Signature data.
        let s = q.signature_data();
        let qe = get("QE report (mrenclave, mrsigner, isvprodid, isvsvn, cpusvn)");
        let qe: Vec<&str> = qe.split(", ").collect();
        assert_eq!(qe[0], hexs(s.qe_report.mr_enclave), "{vector}");
        assert_eq!(qe[1], hexs(s.qe_report.mr_signer), "{vector}");
        assert_eq!(qe[2], s.qe_report.isv_prod_id.to_string(), "{vector}");
        assert_eq!(qe[3], s.qe_report.isv_svn.to_string(), "{vector}");
        assert_eq!(qe[4], hexs(s.qe_report.cpu_svn), "{vector}");
        assert_eq!(
            json["signature_data"]["qe_report"]["mr_enclave"], qe[0],
            "{vector}"
        );
        assert_eq!(
            get("QE auth data length / cert data types"),
            format!(
                "{} / outer {}, inner 5",
                s.qe_auth_data.len(),
                s.certification_data_type
            ),
            "{vector}"
        );
        assert_eq!(get("attestation key (x||y)"), hexs(s.attestation_key));
        assert_eq!(
            json["signature_data"]["attestation_key"],
            hexs(s.attestation_key)
        );

        // PCK chain and SGX extension.
        let CertificationData::PckCertChain(pem) = s.certification_data else {
            panic!("{vector}: no PCK chain");
        };
        let chain = PckChain::from_pem(pem).unwrap();
        assert_eq!(chain.certs.len(), 3, "{vector}");
        let ext = PckExtension::from_cert(&chain.certs[0]).unwrap();
        let sgx_type = get("PCK cert FMSPC / PCE-ID / PCESVN / SGX type");
        assert_eq!(
            sgx_type,
            format!(
                "{} / {} / {} / {}",
                hexs(&ext.fmspc),
                hexs(&ext.pce_id),
                ext.pce_svn,
                ext.sgx_type
            ),
            "{vector}"
        );
        let comps = get("PCK cert TCB comp SVNs / CPUSVN");
        let expected_comps = format!(
            "[{}] / {}",
            ext.tcb_components
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            hexs(&ext.cpu_svn)
        );
        assert_eq!(comps, expected_comps, "{vector}");
        let pck_json = &json["signature_data"]["certification_data"]["pck_extension"];
        assert_eq!(pck_json["fmspc"], hexs(&ext.fmspc));
        for (row, cert) in [
            ("cert pck_leaf", &chain.certs[0]),
            ("cert pck_intermediate", &chain.certs[1]),
            ("cert root_in_quote", &chain.certs[2]),
        ] {
            let summary = CertSummary::of(cert).unwrap();
            let expected = get(row);
            let (cn, validity) = expected.split_once("; ").unwrap();
            assert!(
                summary.subject.starts_with(&format!("CN={cn},")),
                "{vector} {row}: {}",
                summary.subject
            );
            assert_eq!(
                validity,
                format!("{} .. {}", summary.not_before, summary.not_after),
                "{vector} {row}"
            );
        }
    }
}

#[test]
fn the_embedded_root_is_the_vector_root() {
    let pem = read("roots/intel/Intel_SGX_Root_CA.pem");
    let der = read("roots/intel/Intel_SGX_Root_CA.dcap-qvl.der");
    let roots = TrustRoots::intel();
    assert_eq!(roots.roots()[0].der.as_ref(), der.as_slice());
    let from_pem = TrustRoots::from_certs(vec![("pem".into(), pem)]).unwrap();
    assert_eq!(from_pem.roots()[0].der.as_ref(), der.as_slice());
    assert!(from_pem.roots()[0].pinned);
    assert_eq!(
        roots.roots()[0].summary.sha256,
        "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
    );
}

/// Codes no genuine vector may show: its evidence verifies in every case.
const EVIDENCE_FAILURES: [&str; 7] = [
    codes::BAD_QUOTE_SIGNATURE,
    codes::BAD_QE_REPORT_SIGNATURE,
    codes::QE_REPORT_DATA_MISMATCH,
    codes::PCK_CHAIN_INVALID,
    codes::UNTRUSTED_QE_VENDOR,
    codes::BAD_COLLATERAL_SIGNATURE,
    common::MALFORMED_EVIDENCE,
];

#[test]
fn v4_phala_verifies_up_to_date() {
    let c = case("v4-phala-dcap-qvl");
    let v = verify_at(&quote_bytes(c.vector), &c.dir.load(), c.inside);
    assert_eq!(codes(&v), Vec::<String>::new(), "{:#?}", v.findings);
    assert_eq!(v.findings.status(), Status::Affirming);
    let tcb = v.tcb.as_ref().unwrap();
    assert_eq!(tcb.status, TcbStatus::UpToDate);
    assert!(tcb.advisory_ids.is_empty());
    assert_eq!(tcb.platform.launch.tcb_date, "2024-03-13T00:00:00Z");
    assert_eq!(
        tcb.platform.module.as_ref().unwrap().status,
        TcbStatus::UpToDate
    );
    assert_eq!(tcb.qe.as_ref().unwrap().status, TcbStatus::UpToDate);
    assert_eq!(tcb.platform.tcb_evaluation_data_number, 17);
    assert_eq!(
        v.root.as_ref().unwrap().sha256,
        "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
    );
    assert_eq!(
        hex::encode(v.pck.as_ref().unwrap().extension.fmspc),
        "b0c06f000000"
    );
    assert_eq!(v.collateral.len(), 6);
}

#[test]
fn v5_go_tdx_guest_verifies_up_to_date_with_full_collateral() {
    let c = case("v5-go-tdx-guest");
    let v = verify_at(&quote_bytes(c.vector), &c.dir.load(), c.inside);
    assert_eq!(codes(&v), Vec::<String>::new(), "{:#?}", v.findings);
    let tcb = v.tcb.as_ref().unwrap();
    assert_eq!(tcb.status, TcbStatus::UpToDate);
    assert_eq!(tcb.platform.launch.tcb_date, "2024-11-13T00:00:00Z");
    assert!(
        tcb.platform.current.is_some(),
        "TDX 1.5: current TCB evaluated"
    );
    assert_eq!(v.claims.body_type, Some(3));
}

#[test]
fn v5_go_tdx_guest_with_only_its_tcb_info_fails_closed_but_reports_up_to_date() {
    let c = Dir::new()
        .vector("tcb_info.json", "tdx/v5-go-tdx-guest/tcbinfo_response.json")
        .file("tcb_signing_chain.pem", tcb_signing_chain().as_bytes());
    let v = verify_at(
        &quote_bytes("v5-go-tdx-guest"),
        &c.load(),
        t("2026-02-10T00:00:00Z"),
    );
    assert_eq!(
        codes(&v),
        s(&[
            codes::COLLATERAL_MISSING,
            codes::CRL_MISSING,
            codes::CRL_MISSING
        ])
    );
    assert_eq!(v.findings.status(), Status::Contraindicated);
    assert_eq!(v.tcb.as_ref().unwrap().status, TcbStatus::UpToDate);
    let msgs: Vec<&str> = v
        .findings
        .reasons
        .iter()
        .map(|r| r.message.as_str())
        .collect();
    assert!(msgs.iter().any(|m| m.contains("QE Identity")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("PCK CRL")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.contains("root CA CRL")), "{msgs:?}");
}

#[test]
fn v5_phala_outdated_matches_no_tcb_level() {
    let c = case("v5-phala-dcap-qvl-outdated");
    let v = verify_at(&quote_bytes(c.vector), &c.dir.load(), c.inside);
    assert_eq!(
        codes(&v),
        s(&[codes::NO_MATCHING_TCB_LEVEL]),
        "{:#?}",
        v.findings
    );
    assert_eq!(v.findings.status(), Status::Contraindicated);
    assert!(v.tcb.is_none(), "no status at all, never UpToDate");
    // The QE itself is fine.
    assert!(!v.findings.has(codes::QE_IDENTITY_MISMATCH));
}

#[test]
fn spr_e4_matches_no_tcb_level() {
    let c = case("v4-go-tdx-guest-spr-e4");
    let v = verify_at(&quote_bytes(c.vector), &c.dir.load(), c.inside);
    // The only TCB signing certificate in the vectors was re-issued in 2025 (same key),
    // so in 2023 it is not yet valid: that is the `expired` (the chain signing TCB Info
    // and QE Identity). Its 39 junk bytes give the trailing-data warning.
    assert_eq!(
        codes(&v),
        s(&[
            common::EXPIRED,
            codes::NO_MATCHING_TCB_LEVEL,
            codes::TRAILING_DATA
        ]),
        "{:#?}",
        v.findings
    );
    assert!(v.tcb.is_none());
    let expired: Vec<_> = v
        .findings
        .reasons
        .iter()
        .filter(|r| r.code == common::EXPIRED)
        .collect();
    assert!(expired.iter().all(|r| r.message.contains("signing chain")));
}

#[test]
fn trustee_collateral_for_another_fmspc_is_refused() {
    let c = case("v4-trustee");
    let v = verify_at(&quote_bytes(c.vector), &c.dir.load(), c.inside);
    assert_eq!(
        codes(&v),
        s(&[
            codes::CRL_MISSING,
            codes::CRL_MISSING,
            codes::FMSPC_MISMATCH
        ]),
        "{:#?}",
        v.findings
    );
    assert!(v.tcb.is_none());
    let fmspc = v
        .findings
        .reasons
        .iter()
        .find(|r| r.code == codes::FMSPC_MISMATCH)
        .unwrap();
    assert!(fmspc.message.contains("00a06d080000"), "{}", fmspc.message);
    assert!(fmspc.message.contains("50806f000000"), "{}", fmspc.message);
}

#[test]
fn azure_without_collateral_fails_closed_naming_what_is_missing() {
    let c = case("v4-azure-trustee");
    let v = verify_at(&quote_bytes(c.vector), &c.dir.load(), c.inside);
    assert_eq!(
        codes(&v),
        s(&[
            codes::COLLATERAL_MISSING,
            codes::COLLATERAL_MISSING,
            codes::CRL_MISSING,
            codes::CRL_MISSING
        ])
    );
    assert_eq!(v.findings.status(), Status::Contraindicated);
    let tcb_msg = &v
        .findings
        .reasons
        .iter()
        .find(|r| r.message.contains("TCB Info"))
        .unwrap()
        .message;
    assert!(tcb_msg.contains("fmspc=00806f050000"), "{tcb_msg}");
    // The evidence itself is genuine: the PCK chain reached the Intel root.
    assert!(v.root.is_some());
}

#[test]
fn the_evidence_of_every_vector_verifies() {
    for vector in TDX_VECTORS {
        let c = case(vector);
        let v = verify_at(&quote_bytes(vector), &c.dir.load(), c.inside);
        for code in EVIDENCE_FAILURES {
            assert!(!v.findings.has(code), "{vector}: {:#?}", v.findings);
        }
        assert!(!v.findings.has(codes::UNTRUSTED_ROOT), "{vector}");
        assert!(v.root.is_some(), "{vector}");
        assert!(v.pck.is_some(), "{vector}");
    }
}

#[test]
fn outside_the_window_every_vector_fails() {
    for vector in TDX_VECTORS {
        let c = case(vector);
        let coll = c.dir.load();
        for at in [c.before, c.after] {
            let v = verify_at(&quote_bytes(vector), &coll, at);
            assert_eq!(
                v.findings.status(),
                Status::Contraindicated,
                "{vector} at {at}"
            );
            if vector != "v4-azure-trustee" {
                assert!(
                    v.findings.has(codes::COLLATERAL_EXPIRED),
                    "{vector} at {at}: {:#?}",
                    v.findings
                );
            }
        }
    }
    // Certificates too: long after the PCK leaf expires.
    let c = case("v4-azure-trustee");
    let v = verify_at(
        &quote_bytes(c.vector),
        &c.dir.load(),
        t("2031-01-01T00:00:00Z"),
    );
    assert!(v.findings.has(common::EXPIRED), "{:#?}", v.findings);
}

#[test]
fn explicit_intel_root_is_not_flagged_but_another_is() {
    let c = case("v4-phala-dcap-qvl");
    let bytes = quote_bytes(c.vector);
    let q = Quote::parse(&bytes).unwrap();
    let coll = c.dir.load();
    let intel = TrustRoots::from_certs(vec![(
        "intel.pem".into(),
        read("roots/intel/Intel_SGX_Root_CA.pem"),
    )])
    .unwrap();
    let v = parley_attestation::tdx::verify(&q, &coll, &intel, c.inside);
    assert!(codes(&v).is_empty(), "{:#?}", v.findings);

    let amd =
        TrustRoots::from_certs(vec![("ark.pem".into(), read("roots/amd/milan/ark.pem"))]).unwrap();
    let v = parley_attestation::tdx::verify(&q, &coll, &amd, c.inside);
    assert!(v.findings.has(codes::UNTRUSTED_ROOT), "{:#?}", v.findings);
    assert_eq!(v.findings.status(), Status::Contraindicated);
}

#[test]
fn truncations_are_typed_errors() {
    for vector in TDX_VECTORS {
        let bytes = quote_bytes(vector);
        let end = Quote::parse(&bytes).unwrap().quote_bytes().len();
        for len in 0..end {
            match Quote::parse(&bytes[..len]) {
                Err(QuoteError::Truncated { .. }) => {}
                other => panic!("{vector}: prefix of {len} bytes gave {other:?}"),
            }
        }
        for len in end..=bytes.len() {
            assert!(Quote::parse(&bytes[..len]).is_ok(), "{vector} {len}");
        }
    }
}

#[test]
fn trailing_bytes_rule() {
    // Zero padding is silent; non-zero bytes are reported and warned about, never signed.
    let c = case("v4-phala-dcap-qvl");
    let coll = c.dir.load();
    let mut bytes = quote_bytes(c.vector);
    let q = Quote::parse(&bytes).unwrap();
    assert_eq!((q.trailing().len(), q.trailing_nonzero()), (70, 0));
    let v = verify_at(&bytes, &coll, c.inside);
    assert!(!v.findings.has(codes::TRAILING_DATA));
    bytes.push(0x42);
    let v = verify_at(&bytes, &coll, c.inside);
    assert_eq!(codes(&v), s(&[codes::TRAILING_DATA]));
    assert_eq!(v.findings.status(), Status::Warning);
    let json = inspect::to_json(&Quote::parse(&bytes).unwrap());
    assert_eq!(json["trailing_bytes"]["count"], 71);
    assert_eq!(json["trailing_bytes"]["nonzero"], 1);
}

#[test]
fn collateral_formats_agree() {
    // The dcap-qvl JSON and the split PCS files give the same result for the same data.
    let coll = "tdx/v4-phala-dcap-qvl/collateral.json";
    let tcb = dcap_field(coll, "tcb_info");
    let tcb_sig = dcap_field(coll, "tcb_info_signature");
    let qe = dcap_field(coll, "qe_identity");
    let qe_sig = dcap_field(coll, "qe_identity_signature");
    let split = Dir::new()
        .file(
            "tcb_info.json",
            format!("{{\"tcbInfo\":{tcb},\"signature\":\"{tcb_sig}\"}}").as_bytes(),
        )
        .file(
            "qe_identity.json",
            format!("{{\"enclaveIdentity\":{qe},\"signature\":\"{qe_sig}\"}}").as_bytes(),
        )
        .file(
            "tcb_signing_chain.pem",
            dcap_field(coll, "tcb_info_issuer_chain").as_bytes(),
        )
        .file(
            "pck_crl.der",
            &hex::decode(dcap_field(coll, "pck_crl")).unwrap(),
        )
        .file(
            "root_ca_crl.pem",
            pem_crl(&hex::decode(dcap_field(coll, "root_ca_crl")).unwrap()).as_bytes(),
        );
    let c = case("v4-phala-dcap-qvl");
    let a = verify_at(&quote_bytes(c.vector), &c.dir.load(), c.inside);
    let b = verify_at(&quote_bytes(c.vector), &split.load(), c.inside);
    assert_eq!(codes(&a), codes(&b));
    assert_eq!(a.tcb, b.tcb);
    assert!(codes(&b).is_empty(), "{:#?}", b.findings);
}

fn pem_crl(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        lines.join("\n")
    )
}

#[test]
fn ambiguous_and_malformed_collateral_are_errors() {
    use parley_attestation::tdx::{Collateral, CollateralError};
    let d = Dir::new()
        .file("tcb_info.json", b"{}")
        .file("tcbInfo.json", b"{}");
    assert!(matches!(
        Collateral::from_dir(d.dir.path()),
        Err(CollateralError::Ambiguous { .. })
    ));
    let d = Dir::new().file("tcb_info.json", b"{\"tcbInfo\":{},\"signature\":\"00\"}");
    let e = Collateral::from_dir(d.dir.path()).unwrap_err();
    assert!(matches!(e, CollateralError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("tcb_info.json"), "{e}");
    let d = Dir::new().file("pck_crl.der", b"not a crl");
    assert!(Collateral::from_dir(d.dir.path()).is_err());
    assert!(Collateral::from_dir(std::path::Path::new("/nonexistent/dir")).is_err());
}

#[test]
fn qe_report_fields_match_the_results_file() {
    let text = String::from_utf8(read("RESULTS-tdx.txt")).unwrap();
    for vector in TDX_VECTORS {
        let start = text.find(&format!("\ntdx/{vector}\n")).unwrap();
        let line = text[start..]
            .lines()
            .find(|l| l.trim_start().starts_with("qe_report:"))
            .unwrap();
        let dict = line.split_once(": ").unwrap().1.replace('\'', "\"");
        let want: serde_json::Value = serde_json::from_str(&dict).unwrap();
        let bytes = quote_bytes(vector);
        let json = inspect::to_json(&Quote::parse(&bytes).unwrap());
        let got = &json["signature_data"]["qe_report"];
        for (theirs, ours) in [
            ("cpusvn", "cpu_svn"),
            ("miscselect", "misc_select"),
            ("attributes", "attributes"),
            ("mrenclave", "mr_enclave"),
            ("mrsigner", "mr_signer"),
            ("isvprodid", "isv_prod_id"),
            ("isvsvn", "isv_svn"),
        ] {
            assert_eq!(got[ours], want[theirs], "{vector} {ours}");
        }
    }
}
