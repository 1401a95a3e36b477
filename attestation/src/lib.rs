//! Parley attestation: evidence formats, verification, appraisal and RA-TLS.
//!
//! This crate is what auditors run alone, so it does no I/O beyond reading bytes it is
//! given (the guest collectors are the one exception) and never signs: time, collateral,
//! roots and policy are all inputs.
//!
//! Layout:
//! - [`collect`]: collecting evidence in the guest (configfs-tsm), the one OS-facing part.
//! - [`evidence`]: detecting the evidence type from its bytes.
//! - [`snp`]: AMD SEV-SNP attestation reports.
//! - [`tdx`]: Intel TDX quotes.
//! - [`verdict`]: appraisal results with stable reason codes.
#![forbid(unsafe_code)]

pub mod collect;
pub mod evidence;
pub mod snp;
pub mod tdx;
pub mod verdict;
