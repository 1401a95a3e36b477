//! The pinned AMD roots of trust, and root sets given explicitly.
//!
//! ARK (root), ASK (VCEK intermediate) and ASVK (VLEK intermediate) for Milan, Genoa and
//! Turin are compiled in from `roots/*.pem` — copies of AMD KDS `cert_chain` downloads
//! (`/vcek/v1/<product>/cert_chain`, `/vlek/v1/<product>/cert_chain`). Their SHA-256
//! fingerprints over the DER are listed in [`PINNED`] and asserted by the tests; compare
//! them with a fresh KDS download to re-establish trust:
//!
//! | product | cert | SHA-256 (DER) |
//! |---|---|---|
//! | Milan | ARK  | `69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd` |
//! | Milan | ASK  | `67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b` |
//! | Milan | ASVK | `c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5` |
//! | Genoa | ARK  | `4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1` |
//! | Genoa | ASK  | `5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521` |
//! | Genoa | ASVK | `197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372` |
//! | Turin | ARK  | `1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a` |
//! | Turin | ASK  | `5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185` |
//! | Turin | ASVK | `104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c` |
//!
//! Only ARKs are trust anchors: an ASK or ASVK, pinned or supplied, is used only after
//! its signature by a trusted ARK verifies. A root set other than the pinned one is
//! allowed (tests, a future product line) but every verdict that relies on an ARK not
//! pinned here says so (`non-default-root`).

use std::sync::OnceLock;

use super::cert::{AmdCert, CertError};
use super::tcb::Product;

/// The role of a pinned certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// AMD Root Key (self-signed).
    Ark,
    /// AMD SEV Key: issues VCEKs.
    Ask,
    /// AMD SEV VLEK Key: issues VLEKs.
    Asvk,
}

/// One compiled-in certificate with its expected fingerprint.
#[derive(Debug, Clone, Copy)]
pub struct PinnedCert {
    pub product: Product,
    pub role: Role,
    pub pem: &'static [u8],
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: &'static str,
}

macro_rules! pinned {
    ($product:ident, $role:ident, $file:literal, $sha:literal) => {
        PinnedCert {
            product: Product::$product,
            role: Role::$role,
            pem: include_bytes!(concat!("roots/", $file)),
            sha256: $sha,
        }
    };
}

/// Every compiled-in AMD certificate.
pub const PINNED: [PinnedCert; 9] = [
    pinned!(
        Milan,
        Ark,
        "milan-ark.pem",
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"
    ),
    pinned!(
        Milan,
        Ask,
        "milan-ask.pem",
        "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b"
    ),
    pinned!(
        Milan,
        Asvk,
        "milan-asvk.pem",
        "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5"
    ),
    pinned!(
        Genoa,
        Ark,
        "genoa-ark.pem",
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"
    ),
    pinned!(
        Genoa,
        Ask,
        "genoa-ask.pem",
        "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521"
    ),
    pinned!(
        Genoa,
        Asvk,
        "genoa-asvk.pem",
        "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372"
    ),
    pinned!(
        Turin,
        Ark,
        "turin-ark.pem",
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"
    ),
    pinned!(
        Turin,
        Ask,
        "turin-ask.pem",
        "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185"
    ),
    pinned!(
        Turin,
        Asvk,
        "turin-asvk.pem",
        "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c"
    ),
];

/// Why a root set cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RootsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error(
        "the pinned {product} {role:?} certificate has SHA-256 {got}, expected {expected}: the build is corrupt"
    )]
    PinnedMismatch {
        product: Product,
        role: Role,
        got: String,
        expected: String,
    },
    #[error("the root set holds no self-signed ARK: pass at least one AMD root (ARK) certificate")]
    NoArk,
}

/// The ARKs trusted for a verification, and known intermediates (ASK/ASVK).
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    pub(crate) arks: Vec<AmdCert>,
    pub(crate) intermediates: Vec<AmdCert>,
}

impl TrustAnchors {
    /// The compiled-in AMD roots (parsed once per process).
    pub fn pinned() -> Result<&'static TrustAnchors, RootsError> {
        static PINNED_SET: OnceLock<Result<TrustAnchors, RootsError>> = OnceLock::new();
        PINNED_SET
            .get_or_init(|| {
                let mut certs = Vec::new();
                for p in PINNED {
                    let what = format!("pinned {} {:?}", p.product, p.role);
                    for c in AmdCert::parse_many(p.pem, &what)? {
                        let got = hex::encode(c.fingerprint);
                        if got != p.sha256 {
                            return Err(RootsError::PinnedMismatch {
                                product: p.product,
                                role: p.role,
                                got,
                                expected: p.sha256.to_owned(),
                            });
                        }
                        certs.push(c);
                    }
                }
                TrustAnchors::from_certs(certs)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A root set from explicit certificates: self-signed ones become trusted ARKs, the
    /// others candidate intermediates (trusted only once an ARK's signature verifies).
    pub fn from_certs(certs: Vec<AmdCert>) -> Result<TrustAnchors, RootsError> {
        let (arks, intermediates): (Vec<_>, Vec<_>) =
            certs.into_iter().partition(AmdCert::is_self_signed);
        if arks.is_empty() {
            return Err(RootsError::NoArk);
        }
        Ok(TrustAnchors {
            arks,
            intermediates,
        })
    }

    /// The trusted ARKs.
    pub fn arks(&self) -> &[AmdCert] {
        &self.arks
    }

    /// Whether `ark` is one of the compiled-in ARKs (by SHA-256 of its DER).
    pub fn is_pinned_ark(ark: &AmdCert) -> bool {
        let fp = hex::encode(ark.fingerprint);
        PINNED.iter().any(|p| p.role == Role::Ark && p.sha256 == fp)
    }
}
