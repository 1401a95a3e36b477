//! Statuses and failures no real vector shows, with a test PKI generated here and passed as
//! an explicit root (never compiled into the library): Revoked, OutOfDate, module and QE
//! convergence, TDX 1.5 relaunch, CRL revocation, wrong issuers and keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tdx_support;

use parley_attestation::tdx::{Collateral, Quote, TcbStatus, TrustRoots, Verification, codes};
use parley_attestation::verdict::{Status, codes as common};
use serde_json::Value;
use tdx_support::pki::{Built, Scenario};
use tdx_support::*;

const V4: &str = "v4-phala-dcap-qvl";
const V5: &str = "v5-phala-dcap-qvl-outdated";

fn run(b: &Built) -> Verification {
    let coll = Collateral::from_dir(b.dir.dir.path()).unwrap();
    let q = Quote::parse(&b.quote).unwrap();
    parley_attestation::tdx::verify(&q, &coll, &b.roots, b.at)
}

/// The codes besides the `non-default-root` warning every test-PKI run carries.
fn codes_(v: &Verification) -> Vec<String> {
    codes(v)
        .into_iter()
        .filter(|c| c != codes::NON_DEFAULT_ROOT)
        .collect()
}

#[test]
fn the_test_pki_verifies_only_as_an_explicit_named_root() {
    let b = Scenario::new(V4).build();
    let v = run(&b);
    assert_eq!(
        codes(&v),
        s(&[codes::NON_DEFAULT_ROOT]),
        "{:#?}",
        v.findings
    );
    assert_eq!(v.findings.status(), Status::Warning);
    let r = v
        .findings
        .reasons
        .iter()
        .find(|r| r.code == codes::NON_DEFAULT_ROOT)
        .unwrap();
    assert!(
        r.message.contains("Parley Test SGX Root CA"),
        "{}",
        r.message
    );
    assert!(r.message.contains("test-root.der"), "{}", r.message);
    assert_eq!(v.tcb.as_ref().unwrap().status, TcbStatus::UpToDate);

    // Under the default (pinned Intel) root nothing of it is trusted.
    let coll = Collateral::from_dir(b.dir.dir.path()).unwrap();
    let q = Quote::parse(&b.quote).unwrap();
    let v = parley_attestation::tdx::verify(&q, &coll, &TrustRoots::intel(), b.at);
    assert!(v.findings.has(codes::UNTRUSTED_ROOT), "{:#?}", v.findings);
    assert_eq!(v.findings.status(), Status::Contraindicated);
}

#[test]
fn platform_statuses() {
    let cases = [
        ("UpToDate", None, Status::Warning),
        (
            "SWHardeningNeeded",
            Some(codes::TCB_SW_HARDENING_NEEDED),
            Status::Warning,
        ),
        (
            "ConfigurationNeeded",
            Some(codes::TCB_CONFIGURATION_NEEDED),
            Status::Warning,
        ),
        (
            "ConfigurationAndSWHardeningNeeded",
            Some(codes::TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED),
            Status::Warning,
        ),
        (
            "OutOfDate",
            Some(codes::TCB_OUT_OF_DATE),
            Status::Contraindicated,
        ),
        (
            "OutOfDateConfigurationNeeded",
            Some(codes::TCB_OUT_OF_DATE_CONFIGURATION_NEEDED),
            Status::Contraindicated,
        ),
        ("Revoked", Some(codes::TCB_REVOKED), Status::Contraindicated),
    ];
    for (status, code, overall) in cases {
        let b = Scenario::new(V4)
            .platform_status(status, &["INTEL-SA-00001", "INTEL-SA-00002"])
            .build();
        let v = run(&b);
        let expected: Vec<String> = code.into_iter().map(str::to_owned).collect();
        assert_eq!(codes_(&v), expected, "{status}: {:#?}", v.findings);
        assert_eq!(v.findings.status(), overall, "{status}");
        let tcb = v.tcb.as_ref().unwrap();
        assert_eq!(tcb.status.as_str(), status);
        assert_eq!(tcb.advisory_ids, ["INTEL-SA-00001", "INTEL-SA-00002"]);
        if let Some(code) = code {
            let r = v.findings.reasons.iter().find(|r| r.code == code).unwrap();
            assert!(r.message.contains("INTEL-SA-00002"), "{}", r.message);
        }
    }
}

#[test]
fn unknown_or_misplaced_statuses_are_refused() {
    let mut sc = Scenario::new(V4);
    sc.tcb_info["tcbLevels"][0]["tcbStatus"] = Value::from("Fine");
    let b = sc.build();
    // The collateral does not even load: an unknown status is malformed collateral.
    assert!(Collateral::from_dir(b.dir.dir.path()).is_err());

    let mut sc = Scenario::new(V4);
    sc.tcb_info["tcbLevels"][0]["tcbStatus"] = Value::from("TDRelaunchAdvised");
    let v = run(&sc.build());
    assert_eq!(
        codes_(&v),
        s(&[codes::COLLATERAL_INVALID]),
        "{:#?}",
        v.findings
    );
}

#[test]
fn module_and_qe_levels_converge() {
    // TDX module level OutOfDate (TDX_01 level with isvsvn 6 is the one matched).
    let mut sc = Scenario::new(V4);
    set_module_status(&mut sc.tcb_info, "OutOfDate", &["INTEL-SA-00099"]);
    let v = run(&sc.build());
    assert_eq!(
        codes_(&v),
        s(&[codes::TCB_OUT_OF_DATE]),
        "{:#?}",
        v.findings
    );
    let tcb = v.tcb.as_ref().unwrap();
    assert_eq!(
        tcb.platform.module.as_ref().unwrap().status,
        TcbStatus::OutOfDate
    );
    assert!(tcb.advisory_ids.contains(&"INTEL-SA-00099".to_owned()));

    // Module Revoked.
    let mut sc = Scenario::new(V4);
    set_module_status(&mut sc.tcb_info, "Revoked", &[]);
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::TCB_REVOKED]));

    // Platform ConfigurationNeeded with an OutOfDate QE.
    let mut sc = Scenario::new(V4).platform_status("ConfigurationNeeded", &[]);
    sc.qe_identity["tcbLevels"][0]["tcbStatus"] = Value::from("OutOfDate");
    let v = run(&sc.build());
    assert_eq!(
        codes_(&v),
        s(&[codes::TCB_OUT_OF_DATE_CONFIGURATION_NEEDED]),
        "{:#?}",
        v.findings
    );

    // QE Revoked.
    let mut sc = Scenario::new(V4);
    sc.qe_identity["tcbLevels"][0]["tcbStatus"] = Value::from("Revoked");
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::TCB_REVOKED]));

    // A QE status outside UpToDate/OutOfDate/Revoked is malformed collateral.
    let mut sc = Scenario::new(V4);
    sc.qe_identity["tcbLevels"][0]["tcbStatus"] = Value::from("SWHardeningNeeded");
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::COLLATERAL_INVALID]));
}

fn set_module_status(tcb_info: &mut Value, status: &str, advisories: &[&str]) {
    let ids = tcb_info["tdxModuleIdentities"].as_array_mut().unwrap();
    let m = ids.iter_mut().find(|m| m["id"] == "TDX_01").unwrap();
    for level in m["tcbLevels"].as_array_mut().unwrap() {
        level["tcbStatus"] = Value::from(status);
        level["advisoryIDs"] = Value::from(advisories.to_vec());
    }
}

#[test]
fn no_matching_level_is_a_refusal_never_a_status() {
    // Platform: PCK SGX components below every level.
    let mut sc = Scenario::new(V4);
    sc.pck_components = [1; 16];
    let v = run(&sc.build());
    assert_eq!(
        codes_(&v),
        s(&[codes::NO_MATCHING_TCB_LEVEL]),
        "{:#?}",
        v.findings
    );
    assert!(v.tcb.is_none());

    // PCE SVN below every level.
    let mut sc = Scenario::new(V4);
    sc.pck_pce_svn = 1;
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::NO_MATCHING_TCB_LEVEL]));

    // TDX module ISVSVN below every module level.
    let mut sc = Scenario::new(V4);
    sc.tee_tcb_svn = Some([1, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let v = run(&sc.build());
    assert_eq!(
        codes_(&v),
        s(&[codes::NO_MATCHING_TCB_LEVEL]),
        "{:#?}",
        v.findings
    );

    // QE ISVSVN below every QE level.
    let mut sc = Scenario::new(V4);
    for level in sc.qe_identity["tcbLevels"].as_array_mut().unwrap() {
        level["tcb"]["isvsvn"] = Value::from(200);
    }
    let v = run(&sc.build());
    assert_eq!(
        codes_(&v),
        s(&[codes::NO_MATCHING_TCB_LEVEL]),
        "{:#?}",
        v.findings
    );
}

#[test]
fn tdx_1_5_relaunch_advised_and_current_tcb() {
    // Launch module ISVSVN 4 (OutOfDate level), current 13 (UpToDate): relaunch advised.
    let mut sc = Scenario::new(V5);
    sc.tee_tcb_svn = Some([4, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    sc.tee_tcb_svn2 = Some([13, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let v = run(&sc.build());
    assert_eq!(
        codes_(&v),
        s(&[codes::TCB_TD_RELAUNCH_ADVISED]),
        "{:#?}",
        v.findings
    );
    assert_eq!(v.findings.status(), Status::Warning);
    let tcb = v.tcb.as_ref().unwrap();
    assert_eq!(tcb.status, TcbStatus::TdRelaunchAdvised);
    assert_eq!(tcb.platform.launch.status, TcbStatus::OutOfDate);
    assert_eq!(
        tcb.platform.current.as_ref().unwrap().status,
        TcbStatus::UpToDate
    );

    // Both up to date.
    let mut sc = Scenario::new(V5);
    sc.tee_tcb_svn = Some([7, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    sc.tee_tcb_svn2 = Some([13, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let v = run(&sc.build());
    assert_eq!(codes_(&v), Vec::<String>::new(), "{:#?}", v.findings);

    // Current TCB matching no level: refused even though launch is fine.
    let mut sc = Scenario::new(V5);
    sc.tee_tcb_svn = Some([7, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    sc.tee_tcb_svn2 = Some([1, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let v = run(&sc.build());
    assert_eq!(
        codes_(&v),
        s(&[codes::NO_MATCHING_TCB_LEVEL]),
        "{:#?}",
        v.findings
    );
}

#[test]
fn crl_revocation() {
    for (what, tweak) in [
        (
            "CN=Parley Test PCK Certificate",
            (|s: &mut Scenario| s.revoke_leaf = true) as fn(&mut Scenario),
        ),
        ("CN=Parley Test PCK Platform CA", |s: &mut Scenario| {
            s.revoke_intermediate = true
        }),
        ("CN=Parley Test TCB Signing", |s: &mut Scenario| {
            s.revoke_tcb_signer = true
        }),
    ] {
        let mut sc = Scenario::new(V4);
        tweak(&mut sc);
        let v = run(&sc.build());
        let r = v
            .findings
            .reasons
            .iter()
            .find(|r| r.code == codes::CRL_REVOKED)
            .unwrap_or_else(|| panic!("{what}: {:#?}", v.findings));
        assert!(r.message.contains(what), "{what}: {}", r.message);
        assert_eq!(v.findings.status(), Status::Contraindicated, "{what}");
    }
}

#[test]
fn crl_from_the_wrong_issuer_or_window() {
    let mut sc = Scenario::new(V4);
    sc.pck_crl_from_root = true;
    let v = run(&sc.build());
    assert!(v.findings.has(codes::CRL_INVALID), "{:#?}", v.findings);

    // Collateral (TCB Info, QE Identity, CRLs) outside its window.
    let mut sc = Scenario::new(V4);
    sc.at = t("2026-03-01T00:00:00Z");
    let v = run(&sc.build());
    let expired = codes_(&v)
        .iter()
        .filter(|c| *c == codes::COLLATERAL_EXPIRED)
        .count();
    assert_eq!(expired, 4, "{:#?}", v.findings);
}

#[test]
fn collateral_checks() {
    let mut sc = Scenario::new(V4);
    sc.fmspc = [1, 2, 3, 4, 5, 6];
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::FMSPC_MISMATCH]));

    let mut sc = Scenario::new(V4);
    sc.pce_id = [1, 0];
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::PCE_ID_MISMATCH]));

    let mut sc = Scenario::new(V4);
    sc.tcb_info["id"] = Value::from("SGX");
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::COLLATERAL_INVALID]));

    let mut sc = Scenario::new(V4);
    sc.tcb_info["tcbType"] = Value::from(1);
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::COLLATERAL_INVALID]));

    let mut sc = Scenario::new(V4);
    sc.qe_identity["id"] = Value::from("QE");
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::COLLATERAL_INVALID]));

    let mut sc = Scenario::new(V4);
    sc.qe_identity["mrsigner"] = Value::from("00".repeat(32));
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::QE_IDENTITY_MISMATCH]));

    let mut sc = Scenario::new(V4);
    sc.qe_identity["isvprodid"] = Value::from(1);
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::QE_IDENTITY_MISMATCH]));

    // The QE's debug bit is under the attributes mask.
    let mut sc = Scenario::new(V4);
    sc.qe_identity["attributes"] = Value::from("13000000000000000000000000000000");
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::QE_IDENTITY_MISMATCH]));

    let mut sc = Scenario::new(V4);
    let ids = sc.tcb_info["tdxModuleIdentities"].as_array_mut().unwrap();
    for m in ids {
        m["mrsigner"] = Value::from("11".repeat(48));
    }
    let v = run(&sc.build());
    assert_eq!(
        codes_(&v),
        s(&[codes::TDX_MODULE_MISMATCH]),
        "{:#?}",
        v.findings
    );

    let mut sc = Scenario::new(V4);
    sc.tcb_info["tdxModuleIdentities"] = Value::from(Vec::<Value>::new());
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::TDX_MODULE_MISMATCH]));

    let mut sc = Scenario::new(V4);
    sc.tcb_info_wrong_key = true;
    let v = run(&sc.build());
    assert_eq!(codes_(&v), s(&[codes::BAD_COLLATERAL_SIGNATURE]));
    assert!(
        v.tcb.is_none(),
        "unauthenticated TCB Info is never evaluated"
    );
}

#[test]
fn expired_pck_certificate() {
    let mut sc = Scenario::new(V4);
    sc.leaf_not_after = t("2025-12-31T00:00:00Z");
    let v = run(&sc.build());
    assert!(v.findings.has(common::EXPIRED), "{:#?}", v.findings);
    assert_eq!(v.findings.status(), Status::Contraindicated);
}

#[test]
fn level_order_is_canonical_not_json_order() {
    // Reversing the JSON order of the levels does not change the match (Intel sorts).
    let mut sc = Scenario::new(V4).platform_status("UpToDate", &[]);
    sc.tcb_info["tcbLevels"].as_array_mut().unwrap().reverse();
    let v = run(&sc.build());
    assert_eq!(codes_(&v), Vec::<String>::new(), "{:#?}", v.findings);
    assert_eq!(v.tcb.as_ref().unwrap().status, TcbStatus::UpToDate);
}
