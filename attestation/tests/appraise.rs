//! Appraisal against real vectors: drafted policies admit their own evidence and refuse
//! other genuine evidence; each policy rule, flipped alone, gives exactly its reason code;
//! verdicts serialise as EAR (checked against the draft's CDDL shape), are signed, and are
//! reproduced or rejected offline.
#![allow(clippy::unwrap_used)] // tests fail loudly

use std::path::{Path, PathBuf};

use parley_attestation::appraise::Appraiser;
use parley_attestation::collateral::CollateralSet;
use parley_attestation::draft::{DraftOptions, draft};
use parley_attestation::ear::{Ear, SignedVerdict, VerdictError, to_be_signed};
use parley_attestation::evidence::{self, Claims, Inputs, Verified};
use parley_attestation::hexbytes::{Ed25519Key, HexBytes};
use parley_attestation::policy::{Policy, PolicyDoc, SmtRule};
use parley_attestation::sim::{
    SimClaims, SimEndorsement, SimEndorsementBody, SimEvidence, SimGuestPolicy, SimTcb,
};
use parley_attestation::snp::{Endorsements, TcbVersion};
use parley_attestation::verdict::{Status, codes};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");
const SNP_AT: OffsetDateTime = datetime!(2025-06-01 00:00 UTC);
const TDX_AT: OffsetDateTime = datetime!(2025-06-20 00:00 UTC);

fn vector(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(VECTORS).join(rel)).unwrap()
}

fn snp_inputs(dir: &str) -> Inputs {
    Inputs {
        snp: Endorsements::from_vek(
            &std::fs::read(Path::new(VECTORS).join(format!("snp/{dir}/vcek.der")))
                .unwrap_or_else(|_| vector(&format!("snp/{dir}/vcek.pem"))),
        ),
        ..Inputs::default()
    }
}

fn tdx_inputs() -> Inputs {
    let set = CollateralSet::load(&PathBuf::from(VECTORS).join("tdx/v4-phala-dcap-qvl")).unwrap();
    Inputs {
        tdx: set.tdx,
        ..Inputs::default()
    }
}

fn doc(p: &Policy) -> PolicyDoc {
    PolicyDoc::parse(&p.to_toml().unwrap(), "test").unwrap()
}

fn opts() -> DraftOptions {
    DraftOptions {
        name: "drafted".into(),
        ..DraftOptions::default()
    }
}

fn drafted(evidence: &[u8], inputs: &Inputs, at: OffsetDateTime) -> (Policy, Verified) {
    let v = evidence::verify(evidence, None, inputs, at);
    let d = draft(&v, None, &opts()).unwrap();
    (d.policy, v)
}

fn codes_of(reasons: &[parley_attestation::verdict::Reason]) -> Vec<&str> {
    reasons.iter().map(|r| r.code.as_str()).collect()
}

#[test]
fn a_drafted_policy_admits_its_snp_evidence_with_only_the_missing_crl() {
    for dir in ["milan-v2-trustee", "milan-v2-virtee", "genoa-v3-azure"] {
        let ev = vector(&format!("snp/{dir}/report.bin"));
        let inputs = snp_inputs(dir);
        let (policy, _) = drafted(&ev, &inputs, SNP_AT);
        let a = Appraiser::with_inputs(doc(&policy), inputs);
        let v = a.appraise_with(&ev, None, SNP_AT.unix_timestamp());
        assert_eq!(v.status, Status::Warning, "{dir}: {}", v.summary());
        assert_eq!(codes_of(&v.reasons), [codes::CRL_MISSING], "{dir}");
        let p = v.platform.as_ref().unwrap();
        assert_eq!(p.tee.as_str(), "snp");
        assert!(!p.chip.is_empty() && p.measurement.len() == 96);
        assert!(v.inputs.iter().any(|i| i.item == "vcek"), "{:?}", v.inputs);
        assert!(v.inputs.iter().any(|i| i.item == "ark"));
        // Sessions do not accept the warning unless the policy tolerates it by name.
        assert!(!a.accepts(&v));
        let mut tolerant = policy.clone();
        tolerant.tolerate = vec![codes::CRL_MISSING.into()];
        let t = Appraiser::with_inputs(doc(&tolerant), snp_inputs(dir));
        let v = t.appraise_with(&ev, None, SNP_AT.unix_timestamp());
        assert_eq!(v.status, Status::Warning);
        assert!(t.accepts(&v));
    }
}

#[test]
fn a_drafted_policy_refuses_other_genuine_evidence_naming_the_measurement() {
    let (policy, _) = drafted(
        &vector("snp/milan-v2-trustee/report.bin"),
        &snp_inputs("milan-v2-trustee"),
        SNP_AT,
    );
    let other = vector("snp/milan-v2-virtee/report.bin");
    let a = Appraiser::with_inputs(doc(&policy), snp_inputs("milan-v2-virtee"));
    let v = a.appraise_with(&other, None, SNP_AT.unix_timestamp());
    assert_eq!(v.status, Status::Contraindicated);
    let r = v
        .reasons
        .iter()
        .find(|r| r.code == codes::MEASUREMENT_NOT_ACCEPTED)
        .unwrap();
    let m = &v.platform.as_ref().unwrap().measurement;
    assert!(r.message.contains(&m[..12]), "{}", r.message);
    assert!(
        r.message.contains("not in policy drafted; accepted: "),
        "{}",
        r.message
    );
}

#[test]
fn a_debug_guest_is_refused_unless_the_draft_was_asked_to_admit_it() {
    let ev = vector("snp/milan-v2-go-sev-guest/report.bin");
    let inputs = snp_inputs("milan-v2-go-sev-guest");
    let v = evidence::verify(&ev, None, &inputs, SNP_AT);
    let d = draft(&v, None, &opts()).unwrap();
    assert!(
        d.notes.iter().any(|n| n.contains("debugging")),
        "{:?}",
        d.notes
    );
    let a = Appraiser::with_inputs(doc(&d.policy), inputs.clone());
    let verdict = a.appraise_with(&ev, None, SNP_AT.unix_timestamp());
    assert_eq!(verdict.status, Status::Contraindicated);
    assert_eq!(
        codes_of(&verdict.reasons),
        [codes::CRL_MISSING, codes::DEBUG_ENABLED]
    );
    assert_eq!(verdict.trust_vector.configuration, 96);
    let mut o = opts();
    o.allow_debug = true;
    let d = draft(&v, None, &o).unwrap();
    let a = Appraiser::with_inputs(doc(&d.policy), inputs);
    let verdict = a.appraise_with(&ev, None, SNP_AT.unix_timestamp());
    assert_eq!(codes_of(&verdict.reasons), [codes::CRL_MISSING]);
}

#[test]
fn a_drafted_policy_admits_its_tdx_evidence_affirming() {
    let ev = vector("tdx/v4-phala-dcap-qvl/quote.bin");
    let (policy, v) = drafted(&ev, &tdx_inputs(), TDX_AT);
    assert!(v.findings.reasons.is_empty(), "{:?}", v.findings);
    let a = Appraiser::with_inputs(doc(&policy), tdx_inputs());
    let verdict = a.appraise_with(&ev, None, TDX_AT.unix_timestamp());
    assert_eq!(verdict.status, Status::Affirming, "{}", verdict.summary());
    assert!(a.accepts(&verdict));
    assert!(verdict.platform.as_ref().unwrap().chip.starts_with("ppid:"));
    for item in [
        "tcb-info",
        "qe-identity",
        "pck-crl",
        "root-ca-crl",
        "intel-root",
    ] {
        assert!(
            verdict.inputs.iter().any(|i| i.item == item),
            "{item}: {:?}",
            verdict.inputs
        );
    }
    // Its own report data binds; another value does not.
    let rd = match &v.claims {
        Some(c) => c.report_data(),
        None => unreachable!(),
    };
    let bound = a.appraise(&ev, &rd, TDX_AT.unix_timestamp());
    assert_eq!(bound.status, Status::Affirming);
    assert_eq!(bound.trust_vector.instance_identity, 2);
    let wrong = a.appraise(&ev, &[7; 64], TDX_AT.unix_timestamp());
    assert_eq!(codes_of(&wrong.reasons), [codes::REPORT_DATA_MISMATCH]);
    // Other genuine TDX evidence: refused, naming its MRTD.
    let azure = vector("tdx/v4-azure-trustee/quote.bin");
    let other = a.appraise_with(&azure, None, TDX_AT.unix_timestamp());
    assert!(
        other.has(codes::MEASUREMENT_NOT_ACCEPTED),
        "{}",
        other.summary()
    );
    assert!(
        other.summary().contains("MRTD 024a32b07038"),
        "{}",
        other.summary()
    );
}

#[test]
fn expired_tdx_collateral_is_never_affirming_unless_tolerated_by_name() {
    let ev = vector("tdx/v4-phala-dcap-qvl/quote.bin");
    let (mut policy, _) = drafted(&ev, &tdx_inputs(), TDX_AT);
    let later = datetime!(2025-08-01 00:00 UTC).unix_timestamp();
    let v = Appraiser::with_inputs(doc(&policy), tdx_inputs()).appraise_with(&ev, None, later);
    assert_eq!(v.status, Status::Contraindicated);
    assert!(v.has(codes::COLLATERAL_EXPIRED), "{}", v.summary());
    policy.tolerate = vec![codes::COLLATERAL_EXPIRED.into()];
    let a = Appraiser::with_inputs(doc(&policy), tdx_inputs());
    let v = a.appraise_with(&ev, None, later);
    // Still other refusals (expired CRLs count as collateral too), never affirming.
    assert_ne!(v.status, Status::Affirming);
    for r in v
        .reasons
        .iter()
        .filter(|r| r.code == codes::COLLATERAL_EXPIRED)
    {
        assert_eq!(r.severity, Status::Warning);
        assert!(r.message.contains("tolerated by policy"), "{}", r.message);
    }
}

#[test]
fn sessions_refuse_snp_and_tdx_evidence_without_collateral() {
    let (policy, _) = drafted(
        &vector("tdx/v4-phala-dcap-qvl/quote.bin"),
        &tdx_inputs(),
        TDX_AT,
    );
    let a = Appraiser::new(doc(&policy));
    let v = a.appraise_with(
        &vector("tdx/v4-phala-dcap-qvl/quote.bin"),
        None,
        TDX_AT.unix_timestamp(),
    );
    assert_eq!(v.status, Status::Contraindicated);
    assert!(v.has(codes::COLLATERAL_MISSING), "{}", v.summary());
    let v = a.appraise_with(
        &vector("snp/milan-v2-trustee/report.bin"),
        None,
        SNP_AT.unix_timestamp(),
    );
    assert!(v.has(codes::MISSING_ENDORSEMENT), "{}", v.summary());
}

// ---- each rule, flipped alone --------------------------------------------------------

fn snp_base() -> (Policy, Claims) {
    let (mut policy, v) = drafted(
        &vector("snp/milan-v2-trustee/report.bin"),
        &snp_inputs("milan-v2-trustee"),
        SNP_AT,
    );
    let mut claims = v.claims.unwrap();
    let Claims::Snp(c) = &mut claims else {
        unreachable!()
    };
    // Give every pinned rule something to compare.
    let g = &mut policy.snp.as_mut().unwrap().guest;
    g.host_data = Some(HexBytes(c.host_data));
    g.id_key_digest = Some(HexBytes(c.id_key_digest));
    g.author_key_digest = Some(HexBytes(c.author_key_digest));
    g.family_id = Some(HexBytes(c.family_id));
    g.image_id = Some(HexBytes(c.image_id));
    g.smt = SmtRule::Disabled;
    c.platform_info &= !1;
    c.guest_svn = 5;
    g.min_guest_svn = 5;
    (policy, claims)
}

/// A reason code and the change of exactly one claim that must produce it.
type Case = (&'static str, Box<dyn FnOnce(&mut Claims)>);

fn flip(
    policy: &Policy,
    base: &Claims,
    root: Option<&str>,
    change: impl FnOnce(&mut Claims),
) -> Vec<String> {
    let a = Appraiser::new(doc(policy));
    assert!(
        a.check_claims(base, root).reasons.is_empty(),
        "{:?}",
        a.check_claims(base, root)
    );
    let mut c = base.clone();
    change(&mut c);
    a.check_claims(&c, root)
        .reasons
        .into_iter()
        .map(|r| r.code)
        .collect()
}

fn snp(c: &mut Claims) -> &mut parley_attestation::snp::SnpClaims {
    match c {
        Claims::Snp(c) => c,
        _ => unreachable!(),
    }
}

const MILAN_ARK: &str = "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd";

#[test]
fn each_snp_rule_flipped_alone_gives_exactly_its_code() {
    let (p, base) = snp_base();
    let root = Some(MILAN_ARK);
    let lower = |t: TcbVersion| {
        let mut b = t.0;
        b[7] -= 1; // microcode
        TcbVersion(b)
    };
    let cases: Vec<Case> = vec![
        (
            codes::MEASUREMENT_NOT_ACCEPTED,
            Box::new(|c| snp(c).measurement[0] ^= 1),
        ),
        (codes::DEBUG_ENABLED, Box::new(|c| snp(c).policy |= 1 << 19)),
        (
            codes::MIGRATION_AGENT_ENABLED,
            Box::new(|c| snp(c).policy |= 1 << 18),
        ),
        (codes::SMT_ENABLED, Box::new(|c| snp(c).platform_info |= 1)),
        (codes::VMPL_NOT_ALLOWED, Box::new(|c| snp(c).vmpl = 2)),
        (codes::GUEST_SVN_TOO_OLD, Box::new(|c| snp(c).guest_svn = 4)),
        (
            codes::TCB_TOO_OLD,
            Box::new(move |c| snp(c).reported_tcb = lower(snp(c).reported_tcb)),
        ),
        (
            codes::COMMITTED_TCB_TOO_OLD,
            Box::new(move |c| snp(c).committed_tcb = lower(snp(c).committed_tcb)),
        ),
        (
            codes::LAUNCH_TCB_TOO_OLD,
            Box::new(move |c| snp(c).launch_tcb = lower(snp(c).launch_tcb)),
        ),
        (
            codes::HOST_DATA_MISMATCH,
            Box::new(|c| snp(c).host_data[0] ^= 1),
        ),
        (
            codes::ID_KEY_MISMATCH,
            Box::new(|c| snp(c).id_key_digest[0] ^= 1),
        ),
        (
            codes::AUTHOR_KEY_MISMATCH,
            Box::new(|c| snp(c).author_key_digest[0] ^= 1),
        ),
        (
            codes::FAMILY_ID_MISMATCH,
            Box::new(|c| snp(c).family_id[0] ^= 1),
        ),
        (
            codes::IMAGE_ID_MISMATCH,
            Box::new(|c| snp(c).image_id[0] ^= 1),
        ),
    ];
    for (code, change) in cases {
        assert_eq!(flip(&p, &base, root, change), [code], "{code}");
    }
    // The root the chain ended at.
    let a = Appraiser::new(doc(&p));
    let r = a.check_claims(&base, Some(&"ab".repeat(32)));
    assert_eq!(codes_of(&r.reasons), [codes::ROOT_NOT_ACCEPTED]);
    // A policy without [snp] refuses SNP evidence outright.
    let mut no_snp = p.clone();
    no_snp.snp = None;
    no_snp.sim = Some(sim_rules(Ed25519Key([1; 32])));
    let r = Appraiser::new(doc(&no_snp)).check_claims(&base, root);
    assert_eq!(codes_of(&r.reasons), [codes::TEE_TYPE_NOT_ACCEPTED]);
}

fn tdx(c: &mut Claims) -> &mut parley_attestation::evidence::TdxAppraisal {
    match c {
        Claims::Tdx(c) => c,
        _ => unreachable!(),
    }
}

#[test]
fn each_tdx_rule_flipped_alone_gives_exactly_its_code() {
    let (mut p, v) = drafted(
        &vector("tdx/v4-phala-dcap-qvl/quote.bin"),
        &tdx_inputs(),
        TDX_AT,
    );
    let mut base = v.claims.unwrap();
    let t = p.tdx.as_mut().unwrap();
    tdx(&mut base).claims.mr_config_id = [5; 48];
    t.mr_config_id = Some(HexBytes([5; 48]));
    let root = v.root_sha256.as_deref();
    let cases: Vec<Case> = vec![
        (
            codes::MEASUREMENT_NOT_ACCEPTED,
            Box::new(|c| tdx(c).claims.mr_td[0] ^= 1),
        ),
        (
            codes::RTMR_NOT_ACCEPTED,
            Box::new(|c| tdx(c).claims.rtmr[0][0] ^= 1),
        ),
        (
            codes::RTMR_NOT_ACCEPTED,
            Box::new(|c| tdx(c).claims.rtmr[1][0] ^= 1),
        ),
        (
            codes::RTMR_NOT_ACCEPTED,
            Box::new(|c| tdx(c).claims.rtmr[2][0] ^= 1),
        ),
        (
            codes::RTMR_NOT_ACCEPTED,
            Box::new(|c| tdx(c).claims.rtmr[3][0] ^= 1),
        ),
        (
            codes::MR_SEAM_NOT_ACCEPTED,
            Box::new(|c| tdx(c).claims.mr_seam[0] ^= 1),
        ),
        (
            codes::MR_SIGNER_SEAM_NOT_ACCEPTED,
            Box::new(|c| tdx(c).claims.mr_signer_seam[0] ^= 1),
        ),
        (
            codes::XFAM_NOT_ACCEPTED,
            Box::new(|c| tdx(c).claims.xfam[0] ^= 1),
        ),
        (
            codes::DEBUG_ENABLED,
            Box::new(|c| tdx(c).claims.td_attributes.0 |= 1),
        ),
        (
            codes::MIGRATABLE_TD,
            Box::new(|c| tdx(c).claims.td_attributes.0 |= 1 << 29),
        ),
        (
            codes::SEPT_VE_NOT_DISABLED,
            Box::new(|c| tdx(c).claims.td_attributes.0 &= !(1 << 28)),
        ),
        (
            codes::MR_CONFIG_ID_MISMATCH,
            Box::new(|c| tdx(c).claims.mr_config_id[0] ^= 1),
        ),
        (
            codes::TCB_EVALUATION_TOO_OLD,
            Box::new(|c| {
                tdx(c)
                    .tcb
                    .as_mut()
                    .unwrap()
                    .platform
                    .tcb_evaluation_data_number -= 1
            }),
        ),
    ];
    for (code, change) in cases {
        assert_eq!(flip(&p, &base, root, change), [code], "{code}");
    }
    let r = Appraiser::new(doc(&p)).check_claims(&base, Some(&"cd".repeat(32)));
    assert_eq!(codes_of(&r.reasons), [codes::ROOT_NOT_ACCEPTED]);
}

fn sim(c: &mut Claims) -> &mut SimClaims {
    match c {
        Claims::Sim(c) => c,
        _ => unreachable!(),
    }
}

fn sim_rules(root: Ed25519Key) -> parley_attestation::policy::SimRules {
    parley_attestation::policy::SimRules {
        allow_simulated: true,
        roots: vec![root],
        measurements: vec![HexBytes([1; 48])],
        allow_debug: false,
        allow_migration_agent: false,
        allowed_vmpls: vec![0],
        min_tcb: SimTcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        },
    }
}

fn keypair() -> (Ed25519KeyPair, Ed25519Key) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pk = Ed25519Key(kp.public_key().as_ref().try_into().unwrap());
    (kp, pk)
}

/// Simulated evidence as a node produces it (TCB 3/0/8/115, measurement 01…).
fn sim_evidence(root: &Ed25519KeyPair, root_pk: Ed25519Key) -> Vec<u8> {
    let (node, node_pk) = keypair();
    let body = SimEndorsementBody {
        node: "hospital-a".into(),
        platform_id: HexBytes([9; 32]),
        key: node_pk,
        not_before: 0,
        not_after: i64::MAX / 2,
    };
    let esig = root.sign(&SimEndorsement::to_be_signed(&body));
    let claims = SimClaims {
        version: 1,
        platform_id: HexBytes([9; 32]),
        measurement: HexBytes([1; 48]),
        report_data: HexBytes([2; 64]),
        host_data: HexBytes([0; 32]),
        guest_svn: 0,
        vmpl: 0,
        policy: SimGuestPolicy::default(),
        reported_tcb: SimTcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
        },
    };
    let sig = node.sign(&SimEvidence::claims_to_be_signed(&claims));
    SimEvidence {
        claims,
        endorsement: SimEndorsement {
            body,
            root: root_pk,
            signature: HexBytes(esig.as_ref().try_into().unwrap()),
        },
        signature: HexBytes(sig.as_ref().try_into().unwrap()),
    }
    .encode()
}

fn sim_policy(root: Ed25519Key) -> Policy {
    let text = format!(
        "format = 2\nname = \"sim\"\n[sim]\nallow_simulated = true\nroots = [\"{root}\"]\nmeasurements = [\"{}\"]\nmin_tcb = {{ bootloader = 3, tee = 0, snp = 8, microcode = 115 }}\n",
        "01".repeat(48)
    );
    PolicyDoc::parse(&text, "sim").unwrap().policy
}

#[test]
fn simulated_evidence_is_a_warning_only_when_allowed_and_each_rule_flips() {
    let (root, root_pk) = keypair();
    let ev = sim_evidence(&root, root_pk);
    let p = sim_policy(root_pk);
    let a = Appraiser::new(doc(&p));
    let v = a.appraise(&ev, &[2; 64], 1000);
    assert_eq!(codes_of(&v.reasons), [codes::SIMULATED], "{}", v.summary());
    assert!(a.accepts(&v));
    assert_eq!(v.trust_vector.hardware, 32);
    // A draft needs the explicit flag.
    let verified = evidence::verify(
        &ev,
        None,
        &Inputs {
            sim_roots: vec![root_pk],
            ..Inputs::default()
        },
        OffsetDateTime::UNIX_EPOCH,
    );
    assert!(draft(&verified, Some(root_pk), &opts()).is_err());
    let mut o = opts();
    o.allow_simulated = true;
    let d = draft(&verified, Some(root_pk), &o).unwrap();
    assert_eq!(d.policy.sim.as_ref().unwrap().roots, [root_pk]);
    // Not allowed: refused.
    let mut strict = p.clone();
    strict.sim.as_mut().unwrap().allow_simulated = false;
    strict.sim.as_mut().unwrap().roots.clear();
    let v = Appraiser::new(doc(&strict)).appraise(&ev, &[2; 64], 1000);
    assert!(v.has(codes::SIMULATED_NOT_ALLOWED));
    assert_eq!(v.status, Status::Contraindicated);
    let base = verified.claims.unwrap();
    let cases: Vec<Case> = vec![
        (
            codes::MEASUREMENT_NOT_ACCEPTED,
            Box::new(move |c| sim(c).measurement.0[0] ^= 1),
        ),
        (
            codes::DEBUG_ENABLED,
            Box::new(move |c| sim(c).policy.debug = true),
        ),
        (
            codes::MIGRATION_AGENT_ENABLED,
            Box::new(move |c| sim(c).policy.migrate_ma = true),
        ),
        (codes::VMPL_NOT_ALLOWED, Box::new(move |c| sim(c).vmpl = 1)),
        (
            codes::TCB_TOO_OLD,
            Box::new(move |c| sim(c).reported_tcb.snp = 7),
        ),
    ];
    for (code, change) in cases {
        assert_eq!(flip(&p, &base, None, change), [code], "{code}");
    }
}

// ---- EAR ------------------------------------------------------------------------------

/// The EAR shape of draft-fv-rats-ear (cddl/ear.cddl, ear-appraisal.cddl, ar4si.cddl):
/// checked rule by rule against a JSON value.
fn check_ear_schema(ear: &Value) {
    let top = ear.as_object().expect("EAR is a map");
    assert_eq!(top["eat_profile"], "tag:github.com,2023:veraison/ear");
    assert!(top["iat"].is_i64(), "iat is an int");
    let vid = top["ear.verifier-id"].as_object().unwrap();
    assert!(vid["developer"].is_string() && vid["build"].is_string());
    assert_eq!(vid.len(), 2, "verifier-id has exactly developer and build");
    let submods = top["submods"].as_object().unwrap();
    assert!(!submods.is_empty(), "{{ + text => EAR-appraisal }}");
    for key in top.keys() {
        // Known EAR claims, or extensions in the $$ear-extension socket.
        assert!(
            [
                "eat_profile",
                "iat",
                "ear.verifier-id",
                "submods",
                "eat_nonce",
                "ear.raw-evidence"
            ]
            .contains(&key.as_str())
                || key.starts_with("ear.parley."),
            "{key}"
        );
    }
    for (_, a) in submods {
        let a = a.as_object().unwrap();
        let tier = a["ear.status"].as_str().unwrap();
        assert!(["none", "affirming", "warning", "contraindicated"].contains(&tier));
        if let Some(tv) = a.get("ear.trustworthiness-vector") {
            let tv = tv.as_object().unwrap();
            assert!(!tv.is_empty(), "non-empty<trustworthiness-vector>");
            for (k, v) in tv {
                assert!(
                    [
                        "instance-identity",
                        "configuration",
                        "executables",
                        "file-system",
                        "hardware",
                        "runtime-opaque",
                        "storage-opaque",
                        "sourced-data"
                    ]
                    .contains(&k.as_str()),
                    "{k}"
                );
                let n = v.as_i64().unwrap();
                assert!(
                    (-128..=127).contains(&n),
                    "trustworthiness-claim = -128 .. 127"
                );
            }
        }
        if let Some(id) = a.get("ear.appraisal-policy-id") {
            assert!(id.is_string());
        }
        for key in a.keys() {
            assert!(
                [
                    "ear.status",
                    "ear.trustworthiness-vector",
                    "ear.appraisal-policy-id"
                ]
                .contains(&key.as_str())
                    || key.starts_with("ear.parley."),
                "{key}"
            );
        }
    }
}

fn signed(verdict: &parley_attestation::appraise::Verdict, key: &Ed25519KeyPair) -> SignedVerdict {
    let ear = Ear::from_verdict(verdict).to_value();
    let sig = key.sign(&to_be_signed(&ear).unwrap());
    let pk = Ed25519Key(key.public_key().as_ref().try_into().unwrap());
    SignedVerdict::new(ear, pk, sig.as_ref().try_into().unwrap())
}

#[test]
fn verdicts_are_ears_that_reproduce_offline_and_reject_any_altered_field() {
    let ev = vector("tdx/v4-phala-dcap-qvl/quote.bin");
    let (policy, _) = drafted(&ev, &tdx_inputs(), TDX_AT);
    let a = Appraiser::with_inputs(doc(&policy), tdx_inputs());
    let verdict = a.appraise_with(&ev, None, TDX_AT.unix_timestamp());
    let (node, node_pk) = keypair();
    let s = signed(&verdict, &node);
    check_ear_schema(&s.ear);
    let ear: Ear = s.ear().unwrap();
    let (name, appraisal) = ear.appraisal().unwrap();
    assert_eq!(name, "tdx");
    assert_eq!(appraisal.policy.sha256, a.policy().hash_hex());
    assert_eq!(ear.iat, TDX_AT.unix_timestamp());

    // Stored and read back: the signature verifies and a fresh appraisal reproduces it.
    let stored = serde_json::to_vec_pretty(&s).unwrap();
    let back = SignedVerdict::parse(&stored, "v.json").unwrap();
    back.verify_signature("v.json", Some(&node_pk)).unwrap();
    let again =
        Appraiser::with_inputs(doc(&policy), tdx_inputs()).appraise_with(&ev, None, ear.iat);
    back.check_reproduced("v.json", &again).unwrap();
    assert!(matches!(
        back.verify_signature("v.json", Some(&Ed25519Key([3; 32]))),
        Err(VerdictError::WrongSigner { .. })
    ));

    // Any altered field: every leaf of the EAR, one at a time.
    let mut leaves = Vec::new();
    collect_leaves("", &s.ear, &mut leaves);
    assert!(leaves.len() > 40, "{}", leaves.len());
    for path in leaves {
        let mut altered = s.clone();
        let slot = altered.ear.pointer_mut(&path).unwrap();
        *slot = match slot {
            Value::String(x) => Value::String(format!("{x}0")),
            Value::Number(n) => Value::from(n.as_i64().unwrap_or(0) + 1),
            Value::Bool(b) => Value::Bool(!*b),
            _ => Value::String("altered".into()),
        };
        assert!(
            matches!(
                altered.verify_signature("v.json", None),
                Err(VerdictError::BadSignature { .. })
            ),
            "{path}"
        );
        assert!(
            matches!(
                altered.check_reproduced("v.json", &again),
                Err(VerdictError::NotReproduced { .. })
            ),
            "{path}"
        );
    }
    // Appraised with another policy: not reproduced, and the difference is named.
    let mut other = policy.clone();
    other.name = "other".into();
    let different =
        Appraiser::with_inputs(doc(&other), tdx_inputs()).appraise_with(&ev, None, ear.iat);
    let e = back.check_reproduced("v.json", &different).unwrap_err();
    assert!(e.to_string().contains("ear.parley.policy"), "{e}");
}

fn collect_leaves(path: &str, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                collect_leaves(
                    &format!("{path}/{}", k.replace('~', "~0").replace('/', "~1")),
                    x,
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                collect_leaves(&format!("{path}/{i}"), x, out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

/// The SNP host's certificate table as a guest receives it (configfs-tsm `auxblob`).
fn cert_table(vek_der: &[u8]) -> Vec<u8> {
    use parley_attestation::snp::certtable::{CertTableEntry, EntryKind, encode};
    encode(&[CertTableEntry {
        kind: EntryKind::Vcek,
        data: vek_der.to_vec(),
    }])
}

#[test]
fn the_certificate_table_sent_with_snp_evidence_supplies_the_vcek_and_nothing_more() {
    let at = SNP_AT.unix_timestamp();
    for dir in ["milan-v2-trustee", "milan-v2-virtee"] {
        let ev = vector(&format!("snp/{dir}/report.bin"));
        let (policy, _) = drafted(&ev, &snp_inputs(dir), SNP_AT);
        // A node with no collateral at all: only the pinned AMD roots.
        let a = Appraiser::with_inputs(doc(&policy), Inputs::default());
        let bare = a.appraise_with(&ev, None, at);
        assert_eq!(bare.status, Status::Contraindicated, "{dir}");
        // The same evidence with its table: exactly what a node with the VCEK concludes.
        let vcek = vector(&format!("snp/{dir}/vcek.der"));
        let with_table = a.appraise_endorsed(&ev, &cert_table(&vcek), None, at);
        let with_inputs =
            Appraiser::with_inputs(doc(&policy), snp_inputs(dir)).appraise_with(&ev, None, at);
        assert_eq!(with_table.status, with_inputs.status, "{dir}");
        assert_eq!(codes_of(&with_table.reasons), [codes::CRL_MISSING], "{dir}");
        assert!(with_table.inputs.iter().any(|i| i.item == "vcek"));
        // Another chip's VCEK in the table (a forged table): refused all the same.
        let other = if dir == "milan-v2-trustee" {
            "milan-v2-virtee"
        } else {
            "milan-v2-trustee"
        };
        let forged = a.appraise_endorsed(
            &ev,
            &cert_table(&vector(&format!("snp/{other}/vcek.der"))),
            None,
            at,
        );
        assert_eq!(forged.status, Status::Contraindicated, "{dir}");
        assert!(!a.accepts(&forged));
    }
    // A malformed table is refused as such, never trusted in part.
    let ev = vector("snp/milan-v2-virtee/report.bin");
    let a = Appraiser::with_inputs(
        doc(&drafted(&ev, &snp_inputs("milan-v2-virtee"), SNP_AT).0),
        Inputs::default(),
    );
    let v = a.appraise_endorsed(&ev, &[1, 2, 3], None, at);
    assert!(v.has(codes::MALFORMED_EVIDENCE), "{}", v.summary());
}
