//! Synthetic AMD-style hierarchies built at test time (RSA-2048 PSS SHA-384 ARK and
//! ASK/ASVK, P-384 VCEK/VLEK, reports signed by them), for the cases no public vector
//! covers: VLEK-signed reports, Turin v5 reports, a validly signed report whose VCEK
//! disagrees on TCB or chip id, CRLs (revoked, stale, forged), a non-default root. The
//! AMD structure is the real one; only the keys are ours, so every verdict that relies on
//! this root also carries `non-default-root`.
#![allow(clippy::unwrap_used)] // tests fail loudly

use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use der::asn1::{BitString, Ia5String, OctetString, UtcTime};
use der::{Decode, DecodePem, Encode};
use p384::ecdsa::signature::Signer;
use parley_attestation::snp::{
    AmdCert, Endorsements, REPORT_LEN, Report, TrustAnchors, codes, json, verify,
};
use parley_attestation::verdict::{Findings, Status, codes as common};
use rand_chacha_03::ChaCha20Rng;
use rand_chacha_03::rand_core::SeedableRng;
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use spki::SubjectPublicKeyInfoOwned;
use time::OffsetDateTime;
use time::macros::datetime;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::time::{Time, Validity};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");
const AT: OffsetDateTime = datetime!(2025-06-01 00:00 UTC);

/// 2024-01-01 .. 2030-01-01
const FROM: u64 = 1_704_067_200;
const UNTIL: u64 = 1_893_456_000;

fn time(unix: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(unix)).unwrap())
}

/// The RSASSA-PSS SHA-384 algorithm identifier, exactly as AMD encodes it.
fn pss_alg() -> AlgorithmIdentifierOwned {
    let pem = std::fs::read(format!("{VECTORS}/roots/amd/milan/ark.pem")).unwrap();
    Certificate::from_pem(&pem).unwrap().signature_algorithm
}

struct Rsa {
    key: rsa::RsaPrivateKey,
    name: Name,
}

/// Keys are slow to make: one hierarchy per test binary.
struct Pki {
    ark: Rsa,
    ask: Rsa,
    asvk: Rsa,
    other_ark: Rsa,
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    asvk_der: Vec<u8>,
}

fn rsa_key(rng: &mut ChaCha20Rng, cn: &str) -> Rsa {
    Rsa {
        key: rsa::RsaPrivateKey::new(rng, 2048).unwrap(),
        name: Name::from_str(&format!("CN={cn},O=Parley Test,OU=Engineering")).unwrap(),
    }
}

fn rsa_spki(k: &Rsa) -> SubjectPublicKeyInfoOwned {
    let der = k.key.to_public_key().to_public_key_der().unwrap();
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).unwrap()
}

fn sign_pss(issuer: &Rsa, tbs: &[u8]) -> Vec<u8> {
    let signer = rsa::pss::SigningKey::<sha2::Sha384>::new(issuer.key.clone());
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    signer.sign_with_rng(&mut rng, tbs).to_vec()
}

fn cert(
    issuer: &Rsa,
    subject: &Name,
    spki: SubjectPublicKeyInfoOwned,
    serial: u8,
    extensions: Vec<Extension>,
    validity: (u64, u64),
) -> Vec<u8> {
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[serial]).unwrap(),
        signature: pss_alg(),
        issuer: issuer.name.clone(),
        validity: Validity {
            not_before: time(validity.0),
            not_after: time(validity.1),
        },
        subject: subject.clone(),
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: (!extensions.is_empty()).then_some(extensions),
    };
    let sig = sign_pss(issuer, &tbs.to_der().unwrap());
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: pss_alg(),
        signature: BitString::from_bytes(&sig).unwrap(),
    }
    .to_der()
    .unwrap()
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(2026);
        let ark = rsa_key(&mut rng, "ARK-Milan");
        let ask = rsa_key(&mut rng, "SEV-Milan");
        let asvk = rsa_key(&mut rng, "SEV-VLEK-Milan");
        let other_ark = rsa_key(&mut rng, "ARK-Milan");
        let window = (FROM - 86_400, UNTIL + 86_400 * 3650);
        let ark_der = cert(&ark, &ark.name, rsa_spki(&ark), 1, vec![], window);
        let ask_der = cert(&ark, &ask.name, rsa_spki(&ask), 2, vec![], window);
        let asvk_der = cert(&ark, &asvk.name, rsa_spki(&asvk), 3, vec![], window);
        Pki {
            ark,
            ask,
            asvk,
            other_ark,
            ark_der,
            ask_der,
            asvk_der,
        }
    })
}

fn roots() -> TrustAnchors {
    let p = pki();
    let certs = [&p.ark_der, &p.ask_der, &p.asvk_der]
        .iter()
        .map(|d| AmdCert::from_der(d, "synthetic").unwrap())
        .collect();
    TrustAnchors::from_certs(certs).unwrap()
}

fn ext(oid: &str, value: Vec<u8>) -> Extension {
    Extension {
        extn_id: der::oid::ObjectIdentifier::new(oid).unwrap(),
        critical: false,
        extn_value: OctetString::new(value).unwrap(),
    }
}

/// What the endorsement key certificate says.
struct Vek {
    vlek: bool,
    product_name: &'static str,
    /// SPLs by arc: 1 bl, 2 tee, 3 snp, 8 ucode, 9 fmc.
    spl: Vec<(u8, u8)>,
    hw_id: Option<Vec<u8>>,
    validity: (u64, u64),
}

fn vek_cert(v: &Vek, key: &p384::ecdsa::SigningKey) -> Vec<u8> {
    let p = pki();
    let mut exts = vec![
        ext("1.3.6.1.4.1.3704.1.1", 1u32.to_der().unwrap()),
        ext(
            "1.3.6.1.4.1.3704.1.2",
            Ia5String::new(v.product_name).unwrap().to_der().unwrap(),
        ),
    ];
    for (arc, val) in &v.spl {
        exts.push(ext(
            &format!("1.3.6.1.4.1.3704.1.3.{arc}"),
            u32::from(*val).to_der().unwrap(),
        ));
    }
    if let Some(hw) = &v.hw_id {
        exts.push(ext("1.3.6.1.4.1.3704.1.4", hw.clone()));
    }
    if v.vlek {
        exts.push(ext(
            "1.3.6.1.4.1.3704.1.5",
            Ia5String::new("test-csp").unwrap().to_der().unwrap(),
        ));
    }
    let spki_der = key.verifying_key().to_public_key_der().unwrap();
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).unwrap();
    let (issuer, cn) = if v.vlek {
        (&p.asvk, "SEV-VLEK")
    } else {
        (&p.ask, "SEV-VCEK")
    };
    let subject = Name::from_str(&format!("CN={cn},O=Parley Test,OU=Engineering")).unwrap();
    cert(issuer, &subject, spki, 0, exts, v.validity)
}

/// A report with the given version, TCB bytes, chip id and signing key, signed by `key`.
fn report(
    version: u32,
    tcb: [u8; 8],
    chip_id: &[u8],
    vlek: bool,
    cpuid: Option<(u8, u8, u8)>,
    key: &p384::ecdsa::SigningKey,
) -> Vec<u8> {
    let mut b = vec![0u8; REPORT_LEN];
    b[0..4].copy_from_slice(&version.to_le_bytes());
    b[8..16].copy_from_slice(&0x3_0000u64.to_le_bytes());
    b[0x34] = 1; // ECDSA P-384
    b[0x48] = if vlek { 1 << 2 } else { 0 };
    b[0x50..0x90].copy_from_slice(&[0xAB; 64]);
    b[0x90..0xC0].copy_from_slice(&[0xCD; 48]);
    for off in [0x38, 0x180, 0x1E0, 0x1F0] {
        b[off..off + 8].copy_from_slice(&tcb);
    }
    if let Some((f, m, s)) = cpuid {
        b[0x188] = f;
        b[0x189] = m;
        b[0x18A] = s;
    }
    b[0x1A0..0x1A0 + chip_id.len()].copy_from_slice(chip_id);
    b[0x1E8..0x1EB].copy_from_slice(&[4, 58, 1]);
    b[0x1EC..0x1EF].copy_from_slice(&[4, 58, 1]);
    if version >= 5 {
        b[0x1F8..0x200].copy_from_slice(&3u64.to_le_bytes());
        b[0x200..0x208].copy_from_slice(&7u64.to_le_bytes());
    }
    let sig: p384::ecdsa::Signature = key.sign(&b[..0x2A0]);
    let (r, s) = sig.split_bytes();
    for (i, v) in r.iter().rev().enumerate() {
        b[0x2A0 + i] = *v;
    }
    for (i, v) in s.iter().rev().enumerate() {
        b[0x2E8 + i] = *v;
    }
    b
}

fn key(seed: u64) -> p384::ecdsa::SigningKey {
    p384::ecdsa::SigningKey::random(&mut ChaCha20Rng::seed_from_u64(seed))
}

const MILAN_TCB: [u8; 8] = [3, 0, 0, 0, 0, 0, 8, 115];
const MILAN_SPL: [(u8, u8); 4] = [(1, 3), (2, 0), (3, 8), (8, 115)];

fn milan_vcek() -> Vek {
    Vek {
        vlek: false,
        product_name: "Milan-B0",
        spl: MILAN_SPL.to_vec(),
        hw_id: Some(vec![0x11; 64]),
        validity: (FROM, UNTIL),
    }
}

fn run(report: &[u8], e: &Endorsements, roots: &TrustAnchors) -> Findings {
    match verify(report, e, roots, AT) {
        Ok(v) => v.findings,
        Err(r) => r.findings,
    }
}

fn codes_of(f: &Findings) -> Vec<&str> {
    f.reasons.iter().map(|r| r.code.as_str()).collect()
}

#[test]
fn genuine_synthetic_vcek_report_names_its_root() {
    let k = key(1);
    let r = report(2, MILAN_TCB, &[0x11; 64], false, None, &k);
    let e = Endorsements::from_vek(&vek_cert(&milan_vcek(), &k));
    let f = run(&r, &e, &roots());
    assert_eq!(
        codes_of(&f),
        [codes::NON_DEFAULT_ROOT, codes::CRL_MISSING],
        "{f:?}"
    );
    assert_eq!(f.status(), Status::Warning);
    // The pinned AMD roots do not trust it.
    let f = run(&r, &e, TrustAnchors::pinned().unwrap());
    assert!(f.has(common::UNTRUSTED_CHAIN));
}

#[test]
fn vlek_signed_reports_verify_through_the_asvk() {
    let k = key(2);
    let vlek = Vek {
        vlek: true,
        hw_id: None,
        ..milan_vcek()
    };
    let cert = vek_cert(&vlek, &k);
    // VLEK reports have an all-zero chip id; v2, v3 and v5 alike.
    for (version, cpuid) in [
        (2, None),
        (3, Some((0x19, 0x01, 0x01))),
        (5, Some((0x19, 0x01, 0x01))),
    ] {
        let r = report(version, MILAN_TCB, &[], true, cpuid, &k);
        let parsed = Report::parse(&r).unwrap();
        assert_eq!(
            json::report_json(&parsed, parsed.product())["signing_key"],
            "VLEK"
        );
        let v = verify(&r, &Endorsements::from_vek(&cert), &roots(), AT)
            .unwrap_or_else(|e| panic!("v{version}: {:?}", e.findings));
        assert_eq!(v.claims.signing_key, "VLEK");
        assert!(!v.findings.has(codes::CHIP_ID_MISMATCH));
        // sev cannot parse a v2 report with a zero chip id; the oracle allows for that.
        #[cfg(target_os = "linux")]
        parley_attestation::snp::oracle::compare_with_sev(&r).unwrap();
    }
    // The report says VLEK, the certificate is a VCEK (and the reverse).
    let vcek = vek_cert(&milan_vcek(), &k);
    let r = report(2, MILAN_TCB, &[], true, None, &k);
    assert!(run(&r, &Endorsements::from_vek(&vcek), &roots()).has(codes::SIGNING_KEY_MISMATCH));
    let r = report(2, MILAN_TCB, &[0x11; 64], false, None, &k);
    assert!(run(&r, &Endorsements::from_vek(&cert), &roots()).has(codes::SIGNING_KEY_MISMATCH));
}

#[test]
fn turin_v5_reports_use_the_fmc_layout() {
    let k = key(3);
    let turin_tcb = [1, 2, 3, 4, 0, 0, 0, 9]; // fmc, bl, tee, snp, reserved x3, ucode
    let vcek = Vek {
        vlek: false,
        product_name: "Turin",
        spl: vec![(9, 1), (1, 2), (2, 3), (3, 4), (8, 9)],
        hw_id: Some(vec![0x42; 8]),
        validity: (FROM, UNTIL),
    };
    let mut chip = [0u8; 64];
    chip[..8].copy_from_slice(&[0x42; 8]);
    let r = report(5, turin_tcb, &chip, false, Some((0x1A, 0x02, 0x01)), &k);
    let parsed = Report::parse(&r).unwrap();
    let j = json::report_json(&parsed, parsed.product());
    assert_eq!(j["product"], "Turin");
    assert_eq!(j["reported_tcb"]["fmc"], 1);
    assert_eq!(j["reported_tcb"]["bootloader"], 2);
    assert_eq!(j["reported_tcb"]["tee"], 3);
    assert_eq!(j["reported_tcb"]["snp"], 4);
    assert_eq!(j["reported_tcb"]["microcode"], 9);
    assert_eq!(j["launch_mit_vector"], 3);
    assert_eq!(j["current_mit_vector"], 7);
    #[cfg(target_os = "linux")]
    parley_attestation::snp::oracle::compare_with_sev(&r).unwrap();

    // The Turin chain: a Turin ARK/ASK.
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let ark = rsa_key(&mut rng, "ARK-Turin");
    let ask = rsa_key(&mut rng, "SEV-Turin");
    let window = (FROM - 86_400, UNTIL + 86_400);
    let ark_der = cert(&ark, &ark.name, rsa_spki(&ark), 1, vec![], window);
    let ask_der = cert(&ark, &ask.name, rsa_spki(&ask), 2, vec![], window);
    let turin_roots = TrustAnchors::from_certs(vec![
        AmdCert::from_der(&ark_der, "ark").unwrap(),
        AmdCert::from_der(&ask_der, "ask").unwrap(),
    ])
    .unwrap();
    // Re-issue the VCEK under the Turin ASK.
    let spki_der = k.verifying_key().to_public_key_der().unwrap();
    let spki = SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).unwrap();
    let mut exts = vec![ext(
        "1.3.6.1.4.1.3704.1.2",
        Ia5String::new("Turin").unwrap().to_der().unwrap(),
    )];
    for (arc, val) in &vcek.spl {
        exts.push(ext(
            &format!("1.3.6.1.4.1.3704.1.3.{arc}"),
            u32::from(*val).to_der().unwrap(),
        ));
    }
    exts.push(ext("1.3.6.1.4.1.3704.1.4", vec![0x42; 8]));
    let subject = Name::from_str("CN=SEV-VCEK,O=Parley Test").unwrap();
    let turin_vcek = cert(&ask, &subject, spki, 0, exts, (FROM, UNTIL));
    let e = Endorsements::from_vek(&turin_vcek);
    let v = verify(&r, &e, &turin_roots, AT).unwrap_or_else(|e| panic!("{:?}", e.findings));
    assert_eq!(v.claims.launch_mit_vector, Some(3));
    // The same TCB bytes read as Milan would not match: the layout matters.
    let mut wrong = r.clone();
    wrong[0x188] = 0x1B; // CPUID of an unknown product line
    assert!(run(&wrong, &e, &turin_roots).has(codes::WRONG_PRODUCT));
    wrong[0x188] = 0x19; // CPUID says Milan: its reserved TCB bytes hold Turin's SPLs
    assert!(run(&wrong, &e, &turin_roots).has(common::MALFORMED_EVIDENCE));
    // Milan roots for a Turin VCEK.
    assert!(run(&r, &e, &roots()).has(codes::WRONG_PRODUCT));
}

#[test]
fn validly_signed_report_with_a_disagreeing_vcek() {
    let k = key(4);
    let r = report(2, MILAN_TCB, &[0x11; 64], false, None, &k);
    // TCB: the certificate is for microcode 116.
    let mut spl = MILAN_SPL.to_vec();
    spl[3] = (8, 116);
    let tcb = Vek {
        spl,
        ..milan_vcek()
    };
    let f = run(&r, &Endorsements::from_vek(&vek_cert(&tcb, &k)), &roots());
    assert!(f.has(codes::TCB_MISMATCH), "{f:?}");
    assert!(!f.has(common::BAD_SIGNATURE));
    assert_eq!(f.status(), Status::Contraindicated);
    // Chip id.
    let chip = Vek {
        hw_id: Some(vec![0x22; 64]),
        ..milan_vcek()
    };
    let f = run(&r, &Endorsements::from_vek(&vek_cert(&chip, &k)), &roots());
    assert!(f.has(codes::CHIP_ID_MISMATCH) && !f.has(common::BAD_SIGNATURE));
    // The nested-OCTET-STRING hwID encoding is not AMD's: refused.
    let mut nested = vec![0x04, 64];
    nested.extend_from_slice(&[0x11; 64]);
    let chip = Vek {
        hw_id: Some(nested),
        ..milan_vcek()
    };
    let f = run(&r, &Endorsements::from_vek(&vek_cert(&chip, &k)), &roots());
    assert!(f.has(codes::CHIP_ID_MISMATCH));
    // A masked chip id is not compared.
    let masked = report(2, MILAN_TCB, &[], false, None, &k);
    let f = run(
        &masked,
        &Endorsements::from_vek(&vek_cert(&milan_vcek(), &k)),
        &roots(),
    );
    assert!(!f.has(codes::CHIP_ID_MISMATCH) && f.status() == Status::Warning);
    // Product: a Genoa VCEK under the Milan ASK.
    let genoa = Vek {
        product_name: "Genoa",
        ..milan_vcek()
    };
    let f = run(&r, &Endorsements::from_vek(&vek_cert(&genoa, &k)), &roots());
    assert!(f.has(codes::WRONG_PRODUCT));
    // Expired VCEK.
    let old = Vek {
        validity: (FROM - 86_400 * 800, FROM - 86_400 * 30),
        ..milan_vcek()
    };
    let f = run(&r, &Endorsements::from_vek(&vek_cert(&old, &k)), &roots());
    assert!(f.has(common::EXPIRED));
}

fn crl(issuer: &Rsa, revoked: &[u8], this: u64, next: u64) -> Vec<u8> {
    let tbs = TbsCertList {
        version: Version::V2,
        signature: pss_alg(),
        issuer: issuer.name.clone(),
        this_update: time(this),
        next_update: Some(time(next)),
        revoked_certificates: (!revoked.is_empty()).then(|| {
            revoked
                .iter()
                .map(|s| RevokedCert {
                    serial_number: SerialNumber::new(&[*s]).unwrap(),
                    revocation_date: time(this),
                    crl_entry_extensions: None,
                })
                .collect()
        }),
        crl_extensions: None,
    };
    let sig = sign_pss(issuer, &tbs.to_der().unwrap());
    CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: pss_alg(),
        signature: BitString::from_bytes(&sig).unwrap(),
    }
    .to_der()
    .unwrap()
}

#[test]
fn crls_are_checked_when_supplied() {
    let p = pki();
    let k = key(5);
    let r = report(2, MILAN_TCB, &[0x11; 64], false, None, &k);
    let vcek = vek_cert(&milan_vcek(), &k);
    let with = |crl: Vec<u8>| {
        let mut e = Endorsements::from_vek(&vcek);
        e.add_file("crl.der", &crl);
        run(&r, &e, &roots())
    };
    let now = AT.unix_timestamp() as u64;
    // Current CRL revoking nothing relevant: revocation checked, no crl-missing.
    let f = with(crl(&p.ark, &[9], now - 86_400, now + 86_400 * 30));
    assert_eq!(codes_of(&f), [codes::NON_DEFAULT_ROOT], "{f:?}");
    // The ASK (serial 2) revoked.
    let f = with(crl(&p.ark, &[2], now - 86_400, now + 86_400 * 30));
    assert!(f.has(codes::REVOKED) && f.status() == Status::Contraindicated);
    // The ASVK's CRL entry does not touch a VCEK chain; a stale CRL is a warning.
    let f = with(crl(&p.ark, &[3], now - 86_400 * 60, now - 86_400 * 30));
    assert!(f.has(codes::CRL_EXPIRED) && !f.has(codes::REVOKED));
    assert_eq!(f.status(), Status::Warning);
    // Signed by another key under the ARK's name: forged.
    let f = with(crl(&p.other_ark, &[], now - 86_400, now + 86_400));
    assert!(f.has(codes::CRL_INVALID) && f.status() == Status::Contraindicated);
    // PEM works too.
    let der = crl(&p.ark, &[], now - 86_400, now + 86_400);
    let pem = format!(
        "-----BEGIN X509 CRL-----\n{}\n-----END X509 CRL-----\n",
        base64_lines(&der)
    );
    let f = with(pem.into_bytes());
    assert_eq!(codes_of(&f), [codes::NON_DEFAULT_ROOT]);
    // A CRL from another root (the pinned world) is not about this chain: still missing.
    let f = with(crl(&p.ask, &[2], now - 86_400, now + 86_400));
    assert!(f.has(codes::CRL_MISSING) && !f.has(codes::REVOKED));
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let s = base64::engine::general_purpose::STANDARD.encode(der);
    s.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn supplied_arks_are_not_trusted() {
    // Chain material in the certificate directory, including a self-signed "ARK" that is
    // not a trusted root: the verdict refuses and says to pass --roots.
    let k = key(6);
    let r = report(2, MILAN_TCB, &[0x11; 64], false, None, &k);
    let mut e = Endorsements::from_vek(&vek_cert(&milan_vcek(), &k));
    e.add_file("ark.der", &pki().ark_der);
    e.add_file("ask.der", &pki().ask_der);
    let f = run(&r, &e, TrustAnchors::pinned().unwrap());
    assert!(f.has(common::UNTRUSTED_CHAIN), "{f:?}");
    assert!(f.reasons.iter().any(|x| x.message.contains("--roots")));
}
