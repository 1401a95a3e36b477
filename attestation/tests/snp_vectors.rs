//! Real SEV-SNP vectors from `../shared/vectors` (see its MANIFEST.md): every report
//! parses to the MANIFEST's values and verifies or fails exactly as it says; mutated,
//! truncated and extended reports, wrong-product roots, expired certificates and
//! mismatching VCEKs are each rejected with their reason code.
#![allow(clippy::unwrap_used)] // tests fail loudly

use parley_attestation::snp::roots::{PINNED, Role};
use parley_attestation::snp::verify::check_vek;
use parley_attestation::snp::{
    AmdCert, Endorsements, Product, REPORT_LEN, Report, ReportError, ReportVersion, SigningKey,
    TrustAnchors, Verifier, codes, json, verify,
};
use parley_attestation::verdict::{Findings, Status, codes as common};
use time::OffsetDateTime;
use time::macros::datetime;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{VECTORS}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Inside every vector certificate's validity window.
const AT: OffsetDateTime = datetime!(2025-06-01 00:00 UTC);

struct Expected {
    dir: &'static str,
    cert: &'static str,
    product: Product,
    version: u32,
    guest_svn: u32,
    policy: u64,
    platform_info: u64,
    cpuid: Option<(u8, u8, u8)>,
    current_tcb: &'static str,
    reported_tcb: &'static str,
    committed_tcb: &'static str,
    launch_tcb: &'static str,
    current_version: &'static str,
    family_id: &'static str,
    image_id: &'static str,
    report_data: &'static str,
    measurement: &'static str,
    id_key_digest: &'static str,
    report_id: &'static str,
    chip_id: &'static str,
    sig_r: &'static str,
    sig_s: &'static str,
    /// (bootloader, tee, snp, microcode) of reported_tcb.
    reported_decoded: (u8, u8, u8, u8),
}

const ZERO32: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const ZERO48: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
const FF32: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

/// Values copied from MANIFEST.md, "Expected values: SEV-SNP reports".
const EXPECTED: [Expected; 4] = [
    Expected {
        dir: "snp/milan-v2-trustee",
        cert: "vcek.der",
        product: Product::Milan,
        version: 2,
        guest_svn: 4,
        policy: 0x3001f,
        platform_info: 1,
        cpuid: None,
        current_tcb: "03000000000008ce",
        reported_tcb: "0300000000000873",
        committed_tcb: "0300000000000873",
        launch_tcb: "0300000000000873",
        current_version: "1.52.4",
        family_id: "01000000000000000000000000000000",
        image_id: "02000000000000000000000000000000",
        report_data: "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e20000000000000000000000000000000000000000000000000000000000000000",
        measurement: "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
        id_key_digest: "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6e0b2bb57af7a44a3",
        report_id: "385eba81216de4776548fcb86f8ead03c1ebc92b6207f3210d9ccebb89c99005",
        chip_id: "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e",
        sig_r: "5008396832f141d9dcfba4dcaa0162e1595f1bb35e16162228519e6617abd4542decd1f2b915fe62cc43414e4fdceb06",
        sig_s: "e4cf5d14b5f97055bcb51492a75630a114c7d6816ad1bc34a3c76b912b904331cdd698ceb89aad5b3c62261ad4786340",
        reported_decoded: (3, 0, 8, 115),
    },
    Expected {
        dir: "snp/milan-v2-go-sev-guest",
        cert: "vcek.der",
        product: Product::Milan,
        version: 2,
        guest_svn: 0,
        policy: 0xb0000,
        platform_info: 1,
        cpuid: None,
        current_tcb: "0200000000000544",
        reported_tcb: "0200000000000544",
        committed_tcb: "0200000000000544",
        launch_tcb: "0200000000000544",
        current_version: "1.49.3",
        family_id: "00000000000000000000000000000000",
        image_id: "00000000000000000000000000000000",
        report_data: "01020304050000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        measurement: "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01",
        id_key_digest: ZERO48,
        report_id: "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a",
        chip_id: "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d",
        sig_r: "21c89c9932a2504bd2a590c9c21a32bbba083b2dd6e5bc7438896bf672ae1353aa5fa6bbb6274fca69f9f8b85a8b8e4f",
        sig_s: "e0105d55989411f6ec1b31c97f152cdb0ae9d78b4276f847f4167e0b0265bd348f5fa104301cf9b6b66695a06b2489e6",
        reported_decoded: (2, 0, 5, 68),
    },
    Expected {
        dir: "snp/milan-v2-virtee",
        cert: "vcek.der",
        product: Product::Milan,
        version: 2,
        guest_svn: 0,
        policy: 0x30000,
        platform_info: 1,
        cpuid: None,
        current_tcb: "0300000000000873",
        reported_tcb: "0300000000000873",
        committed_tcb: "0300000000000873",
        launch_tcb: "0300000000000873",
        current_version: "1.52.4",
        family_id: "00000000000000000000000000000000",
        image_id: "00000000000000000000000000000000",
        report_data: "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd",
        measurement: "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
        id_key_digest: ZERO48,
        report_id: "92b3b47d59f0a2a10a74c5678868a80238cf593c01a82f3cffb878e904c28d5b",
        chip_id: "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6",
        sig_r: "72827fd0029b56ee2b7dec81480554cb05c0379cc2cb70e13da66ea9b7ee4044d54a2af43d235f62971966aa114fab61",
        sig_s: "49bf903b08ac41cb4673dccf309eabc5446dbb31a95cb1407e976e8c773bc5bbeabf6efe571daf0b1d9a91beb97e9d20",
        reported_decoded: (3, 0, 8, 115),
    },
    Expected {
        dir: "snp/genoa-v3-azure",
        cert: "vcek.pem",
        product: Product::Genoa,
        version: 3,
        guest_svn: 65547,
        policy: 0x3001f,
        platform_info: 0x24,
        cpuid: Some((0x19, 0x11, 0x01)),
        current_tcb: "0a00000000001754",
        reported_tcb: "0a00000000001754",
        committed_tcb: "0a00000000001754",
        launch_tcb: "0a00000000001754",
        current_version: "1.55.40",
        family_id: "01232000000000000000000000000000",
        image_id: "02000000000000000000000000000000",
        report_data: "b581f12e29a2d7d64e5e0b738d563879a78b51c644d0fa0cce02b48699f6bf5f0000000000000000000000000000000000000000000000000000000000000000",
        measurement: "f57dc09a507c6ecd82369bffb600f0003792f4d99bc26e985ec0c266fc34faf3706faf814c9e61065768a6ff917c89ae",
        id_key_digest: "942fd93ebde6ea7a96efadeafc60f1c6b3d10e703b1dafd7555b92f7f3d32d0e006767648cba5b102af3d65756af4177",
        report_id: "8c678f0cba548b25bc8ed1f723231570447886c74b1fa1f7eb23699755cb4801",
        chip_id: "0506ffba875e939c2729d20c74eb72b4c5ba6bf7ea1faaa640141f12c6d64782fb487f68ce69dcd021e914cc0d9244327bc121f0242d6470903ad1d4aaea4ad1",
        sig_r: "b775bc3097f1fd61a6070368fad320ec5f6f4c45481152cd34d7da06913947a7eae049f2e4db8fecdcf91dcf31bc59e8",
        sig_s: "113c2620a93befb582da98565baac97b92e13d69b7504d3c839aa1c8c6e1971b230f82b9cfdbedf6200d731625bbfb65",
        reported_decoded: (10, 0, 23, 84),
    },
];

fn roots() -> &'static TrustAnchors {
    TrustAnchors::pinned().unwrap()
}

fn endorse(e: &Expected) -> Endorsements {
    Endorsements::from_vek(&read(&format!("{}/{}", e.dir, e.cert)))
}

fn codes_of(f: &Findings) -> Vec<&str> {
    f.reasons.iter().map(|r| r.code.as_str()).collect()
}

/// Run verification and return the findings whichever way it went.
fn findings(report: &[u8], e: &Endorsements, roots: &TrustAnchors, at: OffsetDateTime) -> Findings {
    match verify(report, e, roots, at) {
        Ok(v) => v.findings,
        Err(r) => r.findings,
    }
}

#[test]
fn pinned_roots_have_the_manifest_fingerprints() {
    let manifest = [
        (
            Product::Milan,
            Role::Ark,
            "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
        ),
        (
            Product::Milan,
            Role::Ask,
            "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
        ),
        (
            Product::Milan,
            Role::Asvk,
            "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
        ),
        (
            Product::Genoa,
            Role::Ark,
            "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
        ),
        (
            Product::Genoa,
            Role::Ask,
            "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
        ),
        (
            Product::Genoa,
            Role::Asvk,
            "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
        ),
        (
            Product::Turin,
            Role::Ark,
            "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
        ),
        (
            Product::Turin,
            Role::Ask,
            "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
        ),
        (
            Product::Turin,
            Role::Asvk,
            "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
        ),
    ];
    for (product, role, fp) in manifest {
        let p = PINNED
            .iter()
            .find(|p| p.product == product && p.role == role)
            .unwrap();
        assert_eq!(p.sha256, fp, "{product} {role:?}");
        let certs = AmdCert::parse_many(p.pem, "pinned").unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(hex::encode(certs[0].fingerprint), fp, "{product} {role:?}");
        assert_eq!(certs[0].product(), Some(product));
        // The same certificate as the shared vectors' copy.
        let dir = product.as_str().to_lowercase();
        let shared = match role {
            Role::Ark => read(&format!("roots/amd/{dir}/ark.pem")),
            Role::Ask => read(&format!("roots/amd/{dir}/ask.pem")),
            Role::Asvk => read(&format!("roots/amd/{dir}/asvk_ark_chain.pem")),
        };
        let shared = AmdCert::parse_many(&shared, "shared").unwrap();
        assert_eq!(shared[0].fingerprint, certs[0].fingerprint);
    }
    let anchors = roots();
    assert_eq!(anchors.arks().len(), 3);
    assert!(anchors.arks().iter().all(TrustAnchors::is_pinned_ark));
}

#[test]
fn every_vector_parses_to_the_manifest_values() {
    for e in &EXPECTED {
        let bytes = read(&format!("{}/report.bin", e.dir));
        assert_eq!(bytes.len(), REPORT_LEN);
        let r = Report::parse(&bytes).unwrap();
        let d = e.dir;
        assert_eq!(r.version().as_u32(), e.version, "{d}");
        assert_eq!(r.guest_svn(), e.guest_svn, "{d}");
        assert_eq!(r.policy().0, e.policy, "{d}");
        assert_eq!(r.vmpl(), 0, "{d}");
        assert_eq!(r.signature_algo(), 1, "{d}");
        assert_eq!(r.platform_info().0, e.platform_info, "{d}");
        assert_eq!(r.flags(), 0, "{d}");
        assert_eq!(r.signing_key(), SigningKey::Vcek, "{d}");
        assert!(!r.author_key_en() && !r.mask_chip_key(), "{d}");
        assert_eq!(
            r.cpuid().map(|c| (c.family, c.model, c.stepping)),
            e.cpuid,
            "{d}"
        );
        assert_eq!(r.current_tcb().to_string(), e.current_tcb, "{d}");
        assert_eq!(r.reported_tcb().to_string(), e.reported_tcb, "{d}");
        assert_eq!(r.committed_tcb().to_string(), e.committed_tcb, "{d}");
        assert_eq!(r.launch_tcb().to_string(), e.launch_tcb, "{d}");
        assert_eq!(r.current_version().to_string(), e.current_version, "{d}");
        assert_eq!(r.committed_version().to_string(), e.current_version, "{d}");
        assert_eq!(hex::encode(r.family_id()), e.family_id, "{d}");
        assert_eq!(hex::encode(r.image_id()), e.image_id, "{d}");
        assert_eq!(hex::encode(r.report_data()), e.report_data, "{d}");
        assert_eq!(hex::encode(r.measurement()), e.measurement, "{d}");
        assert_eq!(hex::encode(r.host_data()), ZERO32, "{d}");
        assert_eq!(hex::encode(r.id_key_digest()), e.id_key_digest, "{d}");
        assert_eq!(hex::encode(r.author_key_digest()), ZERO48, "{d}");
        assert_eq!(hex::encode(r.report_id()), e.report_id, "{d}");
        assert_eq!(hex::encode(r.report_id_ma()), FF32, "{d}");
        assert_eq!(hex::encode(r.chip_id()), e.chip_id, "{d}");
        assert_eq!(hex::encode(r.signature_r()), e.sig_r, "{d}");
        assert_eq!(hex::encode(r.signature_s()), e.sig_s, "{d}");
        assert_eq!(r.launch_mit_vector(), None, "{d}");
        let rd = r.reported_tcb().decode(e.product);
        assert_eq!(
            (rd.bootloader, rd.tee, rd.snp, rd.microcode, rd.fmc),
            (
                e.reported_decoded.0,
                e.reported_decoded.1,
                e.reported_decoded.2,
                e.reported_decoded.3,
                None
            ),
            "{d}"
        );
        // v2 names no product; v3 names it through CPUID.
        let expect_product = (r.version() != ReportVersion::V2).then_some(e.product);
        assert_eq!(r.product(), expect_product, "{d}");
        let j = json::report_json(&r, r.product());
        assert_eq!(j["type"], "snp");
        assert_eq!(j["measurement"], e.measurement);
        assert_eq!(j["reported_tcb"]["raw"], e.reported_tcb);
        if r.product().is_none() {
            assert!(j["product"].is_null());
            assert!(j["reported_tcb"].get("microcode").is_none());
        } else {
            assert_eq!(j["reported_tcb"]["microcode"], e.reported_decoded.3);
        }
    }
}

#[test]
fn every_vector_verifies_with_its_vcek() {
    for e in &EXPECTED {
        let bytes = read(&format!("{}/report.bin", e.dir));
        let v = verify(&bytes, &endorse(e), roots(), AT)
            .unwrap_or_else(|r| panic!("{}: {:?}", e.dir, r.findings));
        assert_eq!(v.claims.product, e.product, "{}", e.dir);
        assert_eq!(hex::encode(v.claims.measurement), e.measurement);
        // Genuine, but no CRL was supplied: never affirming.
        assert_eq!(codes_of(&v.findings), [codes::CRL_MISSING], "{}", e.dir);
        assert_eq!(v.findings.status(), Status::Warning);
    }
    // The DEBUG vector is genuine; refusing it is the policy layer's job.
    let bytes = read("snp/milan-v2-go-sev-guest/report.bin");
    let v = verify(&bytes, &endorse(&EXPECTED[1]), roots(), AT).unwrap();
    assert!(v.claims.guest_policy().debug());
}

#[test]
fn cached_verifier_agrees_with_uncached() {
    let verifier = Verifier::new(roots().clone());
    for e in &EXPECTED {
        let bytes = read(&format!("{}/report.bin", e.dir));
        for _ in 0..2 {
            let v = verifier.verify(&bytes, &endorse(e), AT).unwrap();
            assert_eq!(codes_of(&v.findings), [codes::CRL_MISSING]);
        }
        // The cache keeps no time-dependent result.
        let r = verifier
            .verify(&bytes, &endorse(e), datetime!(2060-01-01 00:00 UTC))
            .unwrap_err();
        assert!(r.findings.has(common::EXPIRED));
    }
}

#[test]
fn synthetic_negative_vceks_are_rejected() {
    let report = read("snp/milan-v2-trustee/report.bin");
    for name in ["vcek-invalid-legacy.der", "vcek-invalid-new.der"] {
        let e = Endorsements::from_vek(&read(&format!("snp/milan-v2-trustee/negative/{name}")));
        let f = findings(&report, &e, roots(), AT);
        assert_eq!(f.status(), Status::Contraindicated, "{name}");
        for code in [
            common::BAD_SIGNATURE,
            codes::TCB_MISMATCH,
            codes::CHIP_ID_MISMATCH,
            common::UNTRUSTED_CHAIN,
        ] {
            assert!(f.has(code), "{name}: {code} missing in {:?}", codes_of(&f));
        }
    }
}

#[test]
fn vcek_of_another_report_is_rejected() {
    // Same TCB, another chip: the signature and hwID disagree, the TCB matches.
    let report = read("snp/milan-v2-trustee/report.bin");
    let e = Endorsements::from_vek(&read("snp/milan-v2-virtee/vcek.der"));
    let f = findings(&report, &e, roots(), AT);
    assert!(f.has(common::BAD_SIGNATURE));
    assert!(f.has(codes::CHIP_ID_MISMATCH));
    assert!(!f.has(codes::TCB_MISMATCH));
    // Another chip and another TCB.
    let e = Endorsements::from_vek(&read("snp/milan-v2-go-sev-guest/vcek.der"));
    let f = findings(&report, &e, roots(), AT);
    assert!(f.has(codes::TCB_MISMATCH) && f.has(codes::CHIP_ID_MISMATCH));
}

#[test]
fn wrong_product_roots_are_rejected() {
    let genoa_only = TrustAnchors::from_certs(
        AmdCert::parse_many(
            &read("roots/amd/genoa/ask_ark_chain.go-sev-guest.pem"),
            "genoa",
        )
        .unwrap(),
    )
    .unwrap();
    let milan = &EXPECTED[0];
    let report = read(&format!("{}/report.bin", milan.dir));
    let f = findings(&report, &endorse(milan), &genoa_only, AT);
    assert!(f.has(codes::WRONG_PRODUCT), "{:?}", codes_of(&f));
    assert!(f.has(common::UNTRUSTED_CHAIN));
    assert_eq!(f.status(), Status::Contraindicated);

    // A Genoa chain supplied beside a Milan VCEK does not help it.
    let mut e = endorse(milan);
    e.add_file(
        "genoa chain",
        &read("roots/amd/genoa/ask_ark_chain.go-sev-guest.pem"),
    );
    let f = findings(&report, &e, &genoa_only, AT);
    assert!(f.has(codes::WRONG_PRODUCT) && f.has(common::UNTRUSTED_CHAIN));

    // The v3 Genoa report checked against a Milan VCEK: CPUID and certificate disagree.
    let genoa = read("snp/genoa-v3-azure/report.bin");
    let f = findings(&genoa, &endorse(milan), roots(), AT);
    assert!(f.has(codes::WRONG_PRODUCT) && f.has(common::BAD_SIGNATURE));
}

#[test]
fn certificates_outside_their_window_are_expired() {
    for e in &EXPECTED {
        let report = read(&format!("{}/report.bin", e.dir));
        // Before the VCEK was issued, and after it expired.
        for at in [
            datetime!(2020-01-01 00:00 UTC),
            datetime!(2033-01-01 00:00 UTC),
        ] {
            let f = findings(&report, &endorse(e), roots(), at);
            assert!(
                f.has(common::EXPIRED),
                "{} at {at}: {:?}",
                e.dir,
                codes_of(&f)
            );
            assert_eq!(f.status(), Status::Contraindicated);
        }
    }
}

#[test]
fn missing_or_unusable_endorsement() {
    let report = read("snp/milan-v2-trustee/report.bin");
    let f = findings(&report, &Endorsements::default(), roots(), AT);
    assert_eq!(codes_of(&f), [codes::MISSING_ENDORSEMENT]);
    let f = findings(
        &report,
        &Endorsements::from_vek(b"not a certificate"),
        roots(),
        AT,
    );
    assert!(f.has(codes::MALFORMED_CERTIFICATE) && f.has(codes::MISSING_ENDORSEMENT));
    // A chain file that ends in the ARK is fine: the ARK is trusted because it is pinned.
    let mut e = endorse(&EXPECTED[0]);
    e.add_file(
        "chain",
        &read("roots/amd/milan/ask_ark_chain.go-sev-guest.pem"),
    );
    assert!(verify(&report, &e, roots(), AT).is_ok());
}

#[test]
fn turin_vcek_chains_to_the_turin_ark() {
    let vek = AmdCert::from_der(&read("snp/turin-vcek-only/vcek.der"), "turin vcek").unwrap();
    assert_eq!(vek.product(), Some(Product::Turin));
    assert_eq!(vek.amd.struct_version, Some(1));
    assert_eq!(vek.amd.product_name.as_deref(), Some("Turin"));
    assert_eq!(vek.amd.spl[9], Some(0)); // fmcSPL
    assert_eq!(vek.amd.spl[8], Some(9)); // ucodeSPL
    assert_eq!(
        hex::encode(vek.amd.hw_id.as_ref().unwrap()),
        "1e550a8ee5cf9f4d"
    );
    let f = check_vek(&vek, &[], roots(), datetime!(2025-06-01 00:00 UTC));
    assert!(f.reasons.is_empty(), "{:?}", f);
    let f = check_vek(&vek, &[], roots(), datetime!(2032-01-01 00:00 UTC));
    assert!(f.has(common::EXPIRED));
    // Milan roots only: wrong product.
    let milan = TrustAnchors::from_certs(
        AmdCert::parse_many(&read("roots/amd/milan/ask_ark_chain.go-sev-guest.pem"), "m").unwrap(),
    )
    .unwrap();
    assert!(check_vek(&vek, &[], &milan, AT).has(codes::WRONG_PRODUCT));
}

/// Byte ranges of every field of the signed region, with what a flipped byte must cause.
fn fields(version: u32) -> Vec<(&'static str, usize, usize, &'static str)> {
    let mut v = vec![
        // Byte 0 can turn v2 into v3 and back; see flags_and_policy_bits_...
        ("version", 0x001, 3, codes::UNSUPPORTED_VERSION),
        ("guest_svn", 0x004, 4, common::BAD_SIGNATURE),
        ("policy.abi", 0x008, 2, common::BAD_SIGNATURE),
        ("policy.reserved", 0x00C, 4, common::MALFORMED_EVIDENCE),
        ("family_id", 0x010, 16, common::BAD_SIGNATURE),
        ("image_id", 0x020, 16, common::BAD_SIGNATURE),
        ("vmpl", 0x030, 4, common::BAD_SIGNATURE),
        (
            "platform_info.reserved",
            0x041,
            7,
            common::MALFORMED_EVIDENCE,
        ),
        ("flags.reserved", 0x049, 3, common::MALFORMED_EVIDENCE),
        ("reserved0", 0x04C, 4, common::MALFORMED_EVIDENCE),
        ("report_data", 0x050, 64, common::BAD_SIGNATURE),
        ("measurement", 0x090, 48, common::BAD_SIGNATURE),
        ("host_data", 0x0C0, 32, common::BAD_SIGNATURE),
        ("id_key_digest", 0x0E0, 48, common::BAD_SIGNATURE),
        ("author_key_digest", 0x110, 48, common::BAD_SIGNATURE),
        ("report_id", 0x140, 32, common::BAD_SIGNATURE),
        ("report_id_ma", 0x160, 32, common::BAD_SIGNATURE),
        ("reserved1", 0x18B, 21, common::MALFORMED_EVIDENCE),
        ("chip_id", 0x1A0, 64, codes::CHIP_ID_MISMATCH),
        ("current_version", 0x1E8, 3, common::BAD_SIGNATURE),
        ("reserved2", 0x1EB, 1, common::MALFORMED_EVIDENCE),
        ("committed_version", 0x1EC, 3, common::BAD_SIGNATURE),
        ("reserved3", 0x1EF, 1, common::MALFORMED_EVIDENCE),
        ("mit_vectors", 0x1F8, 16, common::MALFORMED_EVIDENCE),
        ("reserved4", 0x208, 152, common::MALFORMED_EVIDENCE),
        ("signature.r", 0x2A0, 48, common::BAD_SIGNATURE),
        ("signature.r.high", 0x2D0, 24, common::MALFORMED_EVIDENCE),
        ("signature.s", 0x2E8, 48, common::BAD_SIGNATURE),
        ("signature.s.high", 0x318, 24, common::MALFORMED_EVIDENCE),
        ("signature.reserved", 0x330, 368, common::MALFORMED_EVIDENCE),
    ];
    // TCBs (Milan/Genoa layout): BL and TEE, the reserved bytes, SNP and microcode.
    for (name, off, code) in [
        ("current_tcb", 0x038, common::BAD_SIGNATURE),
        ("reported_tcb", 0x180, codes::TCB_MISMATCH),
        ("committed_tcb", 0x1E0, common::BAD_SIGNATURE),
        ("launch_tcb", 0x1F0, common::BAD_SIGNATURE),
    ] {
        v.push((name, off, 2, code));
        v.push((name, off + 2, 4, common::MALFORMED_EVIDENCE));
        v.push((name, off + 6, 2, code));
    }
    if version == 2 {
        v.push(("cpuid (v2 reserved)", 0x188, 3, common::MALFORMED_EVIDENCE));
    } else {
        v.push(("cpuid", 0x188, 3, codes::WRONG_PRODUCT));
    }
    v
}

#[test]
fn a_flipped_byte_in_any_field_is_rejected_with_its_reason() {
    for e in &EXPECTED {
        let good = read(&format!("{}/report.bin", e.dir));
        let endorsements = endorse(e);
        for (name, off, len, code) in fields(e.version) {
            // First, middle and last byte of the field; each bit pattern flips the low bit
            // and, separately, the whole byte.
            for at in [off, off + len / 2, off + len - 1] {
                for mask in [0x01u8, 0xFF] {
                    let mut bad = good.clone();
                    bad[at] ^= mask;
                    let f = findings(&bad, &endorsements, roots(), AT);
                    assert_eq!(
                        f.status(),
                        Status::Contraindicated,
                        "{} {name} @{at:#x}^{mask:#x}",
                        e.dir
                    );
                    // A CPUID byte that still names Genoa (e.g. the stepping) only breaks
                    // the signature.
                    let want = if name == "cpuid" && f.has(common::BAD_SIGNATURE) && !f.has(code) {
                        common::BAD_SIGNATURE
                    } else {
                        code
                    };
                    assert!(
                        f.has(want),
                        "{} {name} @{at:#x}^{mask:#x}: want {want}, got {:?}",
                        e.dir,
                        codes_of(&f)
                    );
                    // Every change to a signed, non-reserved byte breaks the signature.
                    if want != common::MALFORMED_EVIDENCE && want != codes::UNSUPPORTED_VERSION {
                        assert!(f.has(common::BAD_SIGNATURE), "{} {name} @{at:#x}", e.dir);
                    }
                }
            }
        }
    }
}

#[test]
fn flags_and_policy_bits_that_parse_still_break_the_signature() {
    let e = &EXPECTED[0];
    let good = read(&format!("{}/report.bin", e.dir));
    // AUTHOR_KEY_EN, and DEBUG in the policy: valid encodings, but not what was signed.
    for (at, mask, code) in [
        (0x048, 0x01, common::BAD_SIGNATURE),
        (0x00A, 0x08, common::BAD_SIGNATURE),
        (0x048, 0x04, codes::SIGNING_KEY_MISMATCH), // claims VLEK
        (0x048, 0x1C, codes::UNSIGNED_REPORT),      // SIGNING_KEY = none
        (0x048, 0x02, codes::UNSIGNED_REPORT),      // MASK_CHIP_KEY
        (0x034, 0x02, common::BAD_SIGNATURE),       // SIGNATURE_ALGO 3
        (0x00A, 0x02, common::MALFORMED_EVIDENCE),  // policy bit 17 cleared
        (0x00B, 0x04, common::MALFORMED_EVIDENCE),  // policy bit 26 (reserved)
        (0x040, 0x40, common::MALFORMED_EVIDENCE),  // platform info bit 6 (reserved)
        (0x048, 0x20, common::MALFORMED_EVIDENCE),  // flags bit 5 (reserved)
        (0x000, 0x01, common::BAD_SIGNATURE),       // v2 read as v3
    ] {
        let mut bad = good.clone();
        bad[at] ^= mask;
        let f = findings(&bad, &endorse(e), roots(), AT);
        assert!(f.has(code), "@{at:#x}^{mask:#x}: {:?}", codes_of(&f));
        assert_eq!(f.status(), Status::Contraindicated);
    }
}

#[test]
fn truncated_extended_and_empty_inputs_are_typed_errors() {
    let good = read("snp/milan-v2-trustee/report.bin");
    assert_eq!(Report::parse(&[]).unwrap_err(), ReportError::Empty);
    for n in [1, 4, 0x2A0, REPORT_LEN - 1] {
        assert_eq!(
            Report::parse(&good[..n]).unwrap_err(),
            ReportError::Truncated { got: n }
        );
        let f = findings(&good[..n], &endorse(&EXPECTED[0]), roots(), AT);
        assert_eq!(codes_of(&f), [common::MALFORMED_EVIDENCE]);
    }
    for extra in [1usize, 4000] {
        let mut long = good.clone();
        long.resize(REPORT_LEN + extra, 0);
        assert_eq!(
            Report::parse(&long).unwrap_err(),
            ReportError::TrailingBytes {
                got: REPORT_LEN + extra,
                extra
            }
        );
        let f = findings(&long, &endorse(&EXPECTED[0]), roots(), AT);
        assert_eq!(codes_of(&f), [common::MALFORMED_EVIDENCE]);
    }
    let f = findings(&[], &endorse(&EXPECTED[0]), roots(), AT);
    assert_eq!(codes_of(&f), [common::MALFORMED_EVIDENCE]);
}

#[test]
fn error_messages_say_what_and_where() {
    let good = read("snp/milan-v2-trustee/report.bin");
    let mut bad = good.clone();
    bad[0] = 4;
    assert_eq!(
        Report::parse(&bad).unwrap_err().to_string(),
        "SNP report version 4 is not supported: Parley accepts versions 2, 3 and 5"
    );
    let mut bad = good.clone();
    bad[0x2D1] = 0x7f;
    let msg = Report::parse(&bad).unwrap_err().to_string();
    assert!(
        msg.contains("0x2d0") && msg.contains("must be zero"),
        "{msg}"
    );
}
