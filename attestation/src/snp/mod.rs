//! AMD SEV-SNP attestation reports: parsing, verification to the pinned AMD roots, collection.
//!
//! What this module owns:
//! - [`report`]: the strict parser, a typed zero-copy view over exactly 1184 bytes.
//! - [`tcb`]: TCB versions and product lines (Milan/Genoa vs Turin layouts).
//! - [`cert`]: AMD certificates (ARK, ASK/ASVK, VCEK/VLEK) and their extensions.
//! - [`roots`]: the pinned AMD roots and explicit root sets.
//! - [`verify`](mod@verify): genuineness (signature, chain, extensions, CRLs) at a given time.
//! - [`json`]: the JSON form `parley attest inspect` prints.
//! - [`certtable`]: the host's certificate table (extended report, configfs `auxblob`).
//! - [`collect`](mod@collect): getting a report inside the guest.
//!
//! Appraisal against a policy (measurements, policy bits, minimum TCBs) is not here: this
//! module only says whether evidence is genuine and hands out its claims.
//!
//! Why our own parser and ring rather than the `sev` crate: see `ARCHITECTURE.md`
//! ("SEV-SNP evidence"). In short, `sev` 8 re-serialises the report before checking its
//! signature, guesses the product of v2 reports from the chip id (and fails on a masked
//! chip id, i.e. every v2 VLEK report), reads unknown versions as v5, and checks neither
//! validity times, CRLs, the product line nor the TCB/hwID extensions; its crypto pulls
//! `rsa` (RUSTSEC-2023-0071). It stays a test oracle over every vector and fuzz input.

pub mod cert;
pub mod certtable;
pub mod collect;
pub mod json;
/// Differential parsing against the `sev` crate (tests and fuzzing only).
#[cfg(target_os = "linux")]
#[doc(hidden)]
pub mod oracle;
pub mod report;
pub mod roots;
pub mod tcb;
pub mod verify;

pub use cert::{AmdCert, CertError};
pub use report::{
    Cpuid, FirmwareVersion, GuestPolicy, PlatformInfo, REPORT_LEN, Report, ReportError,
    ReportVersion, SigningKey,
};
pub use roots::{RootsError, TrustAnchors};
pub use tcb::{DecodedTcb, Product, TcbVersion};
pub use verify::{Endorsements, Rejected, SnpClaims, VerifiedSnp, Verifier, verify};

/// SNP-specific reason codes (stable, kebab-case). The generic ones (`bad-signature`,
/// `untrusted-chain`, `expired`, `malformed-evidence`) are in [`crate::verdict::codes`].
pub mod codes {
    /// The report version is not 2, 3 or 5.
    pub const UNSUPPORTED_VERSION: &str = crate::verdict::codes::UNSUPPORTED_VERSION;
    /// The report is not signed (SIGNING_KEY none, or MASK_CHIP_KEY set).
    pub const UNSIGNED_REPORT: &str = "unsigned-report";
    /// No VCEK/VLEK certificate was supplied.
    pub const MISSING_ENDORSEMENT: &str = crate::verdict::codes::MISSING_ENDORSEMENT;
    /// A supplied certificate cannot be parsed or lacks required AMD extensions.
    pub const MALFORMED_CERTIFICATE: &str = crate::verdict::codes::MALFORMED_CERTIFICATE;
    /// The report names a VLEK but the certificate is a VCEK, or the reverse.
    pub const SIGNING_KEY_MISMATCH: &str = "signing-key-mismatch";
    /// The certificate's TCB extensions differ from REPORTED_TCB.
    pub const TCB_MISMATCH: &str = "tcb-mismatch";
    /// The VCEK's hwID differs from CHIP_ID.
    pub const CHIP_ID_MISMATCH: &str = "chip-id-mismatch";
    /// Certificates, roots or CPUID disagree on the product line.
    pub const WRONG_PRODUCT: &str = "wrong-product";
    /// No CRL from the ARK was supplied: revocation not checked (warning).
    pub const CRL_MISSING: &str = crate::verdict::codes::CRL_MISSING;
    /// A CRL is malformed or its signature does not verify.
    pub const CRL_INVALID: &str = crate::verdict::codes::CRL_INVALID;
    /// The CRL is outside its validity window at the verification time (warning).
    pub const CRL_EXPIRED: &str = crate::verdict::codes::CRL_EXPIRED;
    /// A CRL revokes a certificate of the chain.
    pub const REVOKED: &str = crate::verdict::codes::REVOKED;
    /// The chain ends at an ARK that is not one of the pinned AMD roots (warning).
    pub const NON_DEFAULT_ROOT: &str = crate::verdict::codes::NON_DEFAULT_ROOT;
}
