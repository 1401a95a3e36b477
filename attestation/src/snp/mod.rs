//! AMD SEV-SNP attestation reports: parsing, verification to the pinned AMD roots, collection.
//!
//! What this module owns:
//! - [`report`]: the strict parser, a typed zero-copy view over exactly 1184 bytes.
//! - [`tcb`]: TCB versions and product lines (Milan/Genoa vs Turin layouts).
//! - [`json`]: the JSON form `parley attest inspect` prints.
//!
//! Appraisal against a policy (measurements, policy bits, minimum TCBs) is not here: this
//! module only says whether evidence is genuine and hands out its claims.

pub mod json;
pub mod report;
pub mod tcb;

pub use report::{
    Cpuid, FirmwareVersion, GuestPolicy, PlatformInfo, REPORT_LEN, Report, ReportError,
    ReportVersion, SigningKey,
};
pub use tcb::{DecodedTcb, Product, TcbVersion};
