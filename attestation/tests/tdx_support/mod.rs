//! Shared helpers for the TDX tests: the real vectors in `../shared/vectors` (read in place,
//! never copied), their MANIFEST, collateral directories assembled in temp dirs, and a test
//! PKI (`pki`) for statuses no real vector shows.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod pki;

use std::collections::HashMap;
use std::path::PathBuf;

use parley_attestation::tdx::{Collateral, Quote, TrustRoots, Verification, verify};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

/// The six TDX vectors.
pub const TDX_VECTORS: [&str; 6] = [
    "v4-phala-dcap-qvl",
    "v5-phala-dcap-qvl-outdated",
    "v4-go-tdx-guest-spr-e4",
    "v5-go-tdx-guest",
    "v4-trustee",
    "v4-azure-trustee",
];

pub fn path(rel: &str) -> PathBuf {
    PathBuf::from(VECTORS).join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    std::fs::read(path(rel)).unwrap_or_else(|e| panic!("read vector {rel}: {e}"))
}

pub fn quote_bytes(vector: &str) -> Vec<u8> {
    read(&format!("tdx/{vector}/quote.bin"))
}

pub fn t(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("time {s}: {e}"))
}

/// The rows of the MANIFEST table for `tdx/<vector>/quote.bin`: field -> value (without
/// the backticks).
pub fn manifest(vector: &str) -> HashMap<String, String> {
    let text = String::from_utf8(read("MANIFEST.md")).unwrap();
    let heading = format!("#### `tdx/{vector}/quote.bin`");
    let start = text
        .find(&heading)
        .unwrap_or_else(|| panic!("no MANIFEST section for {vector}"));
    let mut rows = HashMap::new();
    for line in text[start + heading.len()..].lines() {
        if line.starts_with("####") || line.starts_with("## ") {
            break;
        }
        // `| key | `value` |`; keys may contain `|` (e.g. `(x||y)`), values are in backticks.
        let (Some(open), Some(close)) = (line.find('`'), line.rfind('`')) else {
            continue;
        };
        if !line.starts_with('|') || open == close {
            continue;
        }
        let key = line[1..open].trim().trim_end_matches('|').trim();
        rows.insert(key.to_owned(), line[open + 1..close].to_owned());
    }
    assert!(
        rows.len() > 20,
        "MANIFEST section for {vector} is too short"
    );
    rows
}

/// A collateral directory in a temp dir.
pub struct Dir {
    pub dir: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Self {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn file(self, name: &str, bytes: &[u8]) -> Self {
        std::fs::write(self.dir.path().join(name), bytes).unwrap();
        self
    }
    pub fn vector(self, name: &str, rel: &str) -> Self {
        let bytes = read(rel);
        self.file(name, &bytes)
    }
    pub fn load(&self) -> Collateral {
        Collateral::from_dir(self.dir.path()).unwrap()
    }
}

/// A string field of a dcap-qvl collateral.json vector.
pub fn dcap_field(rel: &str, field: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(&read(rel)).unwrap();
    v[field].as_str().unwrap().to_owned()
}

/// The Intel TCB Signing chain (PEM) shipped in the dcap-qvl v4 vector; Intel serves it in
/// an HTTP header, so the split-format vectors lack it.
pub fn tcb_signing_chain() -> String {
    dcap_field(
        "tdx/v4-phala-dcap-qvl/collateral.json",
        "tcb_info_issuer_chain",
    )
}

/// How a vector is verified in these tests: its collateral, a time inside the joint
/// validity window (from the MANIFEST) and times outside it.
pub struct Case {
    pub vector: &'static str,
    pub dir: Dir,
    pub inside: OffsetDateTime,
    pub before: OffsetDateTime,
    pub after: OffsetDateTime,
}

/// The collateral setup of each vector (see `tdx_vectors.rs` for what is expected).
pub fn case(vector: &'static str) -> Case {
    let d = |s| t(s);
    match vector {
        "v4-phala-dcap-qvl" => Case {
            vector,
            dir: Dir::new().vector("collateral.json", "tdx/v4-phala-dcap-qvl/collateral.json"),
            inside: d("2025-06-20T00:00:00Z"),
            before: d("2025-06-18T00:00:00Z"),
            after: d("2025-07-21T00:00:00Z"),
        },
        "v5-phala-dcap-qvl-outdated" => Case {
            vector,
            dir: Dir::new().vector(
                "collateral.json",
                "tdx/v5-phala-dcap-qvl-outdated/collateral.json",
            ),
            inside: d("2026-02-19T00:00:00Z"),
            before: d("2026-02-17T00:00:00Z"),
            after: d("2026-03-22T00:00:00Z"),
        },
        // go-tdx-guest's 2023 collateral: TCB Info, QE Identity, PCK CRL; the root CA CRL
        // of that year; the TCB signing chain Intel re-issued in 2025 (same key).
        "v4-go-tdx-guest-spr-e4" => Case {
            vector,
            dir: Dir::new()
                .vector(
                    "tcbinfo_response.json",
                    "tdx/v4-go-tdx-guest-spr-e4/tcbinfo_response.json",
                )
                .vector(
                    "qe_identity_response.json",
                    "tdx/v4-go-tdx-guest-spr-e4/qe_identity_response.json",
                )
                .vector("pck_crl.der", "tdx/v4-go-tdx-guest-spr-e4/pck_crl.der")
                .vector(
                    "root_ca_crl.der",
                    "roots/intel/root_ca_crl.go-tdx-guest.der",
                )
                .file("tcb_signing_chain.pem", tcb_signing_chain().as_bytes()),
            inside: d("2023-06-20T00:00:00Z"),
            before: d("2023-06-01T00:00:00Z"),
            after: d("2023-07-20T00:00:00Z"),
        },
        // Its own TCB Info, plus the QE Identity, CRLs and signing chain Intel served on
        // the same days (from the v5 dcap-qvl vector; none of them is platform-specific).
        "v5-go-tdx-guest" => Case {
            vector,
            dir: Dir::new()
                .vector(
                    "collateral.json",
                    "tdx/v5-phala-dcap-qvl-outdated/collateral.json",
                )
                .vector("tcb_info.json", "tdx/v5-go-tdx-guest/tcbinfo_response.json"),
            inside: d("2026-02-20T00:00:00Z"),
            before: d("2026-01-30T00:00:00Z"),
            after: d("2026-03-05T00:00:00Z"),
        },
        "v4-trustee" => Case {
            vector,
            dir: Dir::new()
                .vector("tcbInfo.json", "tdx/v4-trustee/tcbInfo.json")
                .vector("enclaveIdentity.json", "tdx/v4-trustee/qe_identity.json")
                .file("tcb_signing_chain.pem", tcb_signing_chain().as_bytes()),
            inside: d("2025-11-01T00:00:00Z"),
            before: d("2025-10-20T00:00:00Z"),
            after: d("2025-11-28T00:00:00Z"),
        },
        "v4-azure-trustee" => Case {
            vector,
            dir: Dir::new(),
            inside: d("2025-01-01T00:00:00Z"),
            before: d("2023-09-01T00:00:00Z"),
            after: d("2031-01-01T00:00:00Z"),
        },
        other => panic!("no case for {other}"),
    }
}

pub fn verify_at(bytes: &[u8], c: &Collateral, at: OffsetDateTime) -> Verification {
    let q = Quote::parse(bytes).unwrap();
    verify(&q, c, &TrustRoots::intel(), at)
}

/// The reason codes of a verification, sorted, duplicates kept.
pub fn codes(v: &Verification) -> Vec<String> {
    let mut c: Vec<String> = v.findings.reasons.iter().map(|r| r.code.clone()).collect();
    c.sort();
    c
}

pub fn s(v: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}
