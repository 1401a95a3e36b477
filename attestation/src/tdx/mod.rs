//! Intel TDX quotes: parsing, verification with DCAP collateral, collection.
//!
//! This module owns the TDX quote format (v4 and v5), its verification against Intel's
//! DCAP collateral at a given time, and collection in a TD guest. It leaves appraisal
//! policy (accepted measurements, attribute rules, minimum TCB) to the policy layer,
//! which reads [`Verification`] and never re-parses the quote.
//!
//! Layout:
//! - [`quote`]: the wire format as typed views over the bytes ([`Quote::parse`]);
//! - [`pck`]: the PCK certificate chain and the PCK certificate's SGX extension;
//! - [`collateral`]: TCB Info, QE Identity, signing chain and CRLs, from a directory;
//! - [`roots`]: the pinned Intel SGX Root CA and explicit roots;
//! - [`tcb`]: TCB level matching and status convergence;
//! - [`verify`](mod@verify): the verification pipeline ([`verify()`]);
//! - [`inspect`]: the JSON view printed by `parley attest inspect`;
//! - [`collect`]: getting a quote in a TD through configfs-tsm.
//!
//! Why not dcap-qvl as the engine: dcap-qvl 0.7 verifies correctly and fails closed on
//! every vector and mutation here (the differential test `tests/tdx_dcap_qvl.rs` keeps
//! checking that), but it is all-or-nothing: one opaque `anyhow` error, the first one
//! only; it needs every collateral item before it checks anything (so a quote with only a
//! TCB Info cannot be evaluated at all); and it applies policy that Parley keeps in its
//! policy layer (SEPT_VE_DISABLE required, migratable refused). Parley needs a stable
//! reason code per failed link, every failure at once, and the TCB result even when a
//! CRL is missing (as a refusal that names it). So the chain checks use rustls-webpki,
//! signatures ring, and dcap-qvl stays a dev-dependency oracle.

pub mod collateral;
pub mod collect;
pub mod inspect;
pub mod pck;
pub mod quote;
mod reader;
pub mod roots;
pub mod tcb;
pub mod verify;

pub use collateral::{Collateral, CollateralError, TcbStatus};
pub use quote::{Quote, QuoteError};
pub use roots::{RootsError, TrustRoots};
pub use verify::{PckIdentity, TcbEvaluation, TdxClaims, Verification, verify};

/// Stable reason codes for TDX verification (kebab-case). Shared ones live in
/// [`crate::verdict::codes`] (`malformed-evidence`, `expired`, ...).
pub mod codes {
    /// The quote signature does not verify with the attestation key.
    pub const BAD_QUOTE_SIGNATURE: &str = "bad-quote-signature";
    /// The QE report signature does not verify with the PCK key.
    pub const BAD_QE_REPORT_SIGNATURE: &str = "bad-qe-report-signature";
    /// The QE report does not bind the attestation key and QE auth data.
    pub const QE_REPORT_DATA_MISMATCH: &str = "qe-report-data-mismatch";
    /// The quote was produced by a QE from another vendor.
    pub const UNTRUSTED_QE_VENDOR: &str = "untrusted-qe-vendor";
    /// A chain does not reach any accepted root.
    pub const UNTRUSTED_ROOT: &str = "untrusted-root";
    /// A chain ends at an explicitly given root that is not the pinned Intel root.
    pub const NON_DEFAULT_ROOT: &str = crate::verdict::codes::NON_DEFAULT_ROOT;
    /// The PCK chain or the PCK certificate's SGX extension is malformed or invalid.
    pub const PCK_CHAIN_INVALID: &str = "pck-chain-invalid";
    /// The quote has no PCK certificate chain (certification data type other than 5).
    pub const UNSUPPORTED_CERTIFICATION_DATA: &str = "unsupported-certification-data";
    /// A certificate is revoked by a CRL.
    pub const CRL_REVOKED: &str = "crl-revoked";
    /// A CRL was not given, so revocation was not checked.
    pub const CRL_MISSING: &str = crate::verdict::codes::CRL_MISSING;
    /// A CRL is malformed, badly signed or from the wrong issuer.
    pub const CRL_INVALID: &str = crate::verdict::codes::CRL_INVALID;
    /// TCB Info, QE Identity or their signing chain was not given.
    pub const COLLATERAL_MISSING: &str = crate::verdict::codes::COLLATERAL_MISSING;
    /// TCB Info, QE Identity or a CRL is outside its validity window.
    pub const COLLATERAL_EXPIRED: &str = crate::verdict::codes::COLLATERAL_EXPIRED;
    /// Collateral of the wrong kind (id, version) or with a status it may not hold.
    pub const COLLATERAL_INVALID: &str = "collateral-invalid";
    /// The TCB Info or QE Identity signature does not verify.
    pub const BAD_COLLATERAL_SIGNATURE: &str = "bad-collateral-signature";
    /// The collateral signing chain is invalid.
    pub const COLLATERAL_CHAIN_INVALID: &str = "collateral-chain-invalid";
    /// The TCB Info is for another platform (FMSPC).
    pub const FMSPC_MISMATCH: &str = "fmspc-mismatch";
    /// The TCB Info is for another PCE.
    pub const PCE_ID_MISMATCH: &str = "pce-id-mismatch";
    /// The QE report does not match the QE Identity.
    pub const QE_IDENTITY_MISMATCH: &str = "qe-identity-mismatch";
    /// The TDX module's signer or attributes do not match the TCB Info.
    pub const TDX_MODULE_MISMATCH: &str = "tdx-module-mismatch";
    /// No TCB level (platform, TDX module or QE) is met: never an UpToDate.
    pub const NO_MATCHING_TCB_LEVEL: &str = "no-matching-tcb-level";
    pub const TCB_SW_HARDENING_NEEDED: &str = "tcb-sw-hardening-needed";
    pub const TCB_CONFIGURATION_NEEDED: &str = "tcb-configuration-needed";
    pub const TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED: &str =
        "tcb-configuration-and-sw-hardening-needed";
    pub const TCB_OUT_OF_DATE: &str = "tcb-out-of-date";
    pub const TCB_OUT_OF_DATE_CONFIGURATION_NEEDED: &str = "tcb-out-of-date-configuration-needed";
    pub const TCB_REVOKED: &str = "tcb-revoked";
    pub const TCB_TD_RELAUNCH_ADVISED: &str = "tcb-td-relaunch-advised";
    pub const TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED: &str =
        "tcb-td-relaunch-advised-configuration-needed";
    /// Non-zero bytes follow the quote; nothing signs them.
    pub const TRAILING_DATA: &str = crate::verdict::codes::TRAILING_DATA;
}

/// The fuzz target body: parse arbitrary bytes, and when they parse, exercise every
/// accessor, the JSON view and the PCK chain decoding. Must never panic.
pub fn fuzz_parse(data: &[u8]) {
    if let Ok(q) = Quote::parse(data) {
        let _ = inspect::to_json(&q);
        let _ = TdxClaims::from_quote(&q).to_json();
        let _ = q.trailing_nonzero();
        if let quote::CertificationData::PckCertChain(pem) = q.signature_data().certification_data
            && let Ok(chain) = pck::PckChain::from_pem(pem)
            && let Some(leaf) = chain.leaf()
        {
            let _ = pck::PckExtension::from_cert(leaf);
        }
    }
}
