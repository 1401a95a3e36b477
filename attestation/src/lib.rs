//! Parley attestation: evidence formats, verification, appraisal and RA-TLS.
//!
//! This crate is what auditors run alone, so it does no I/O beyond reading bytes it is
//! given (the guest collectors under `collect` are the one exception) and never signs:
//! time, collateral, roots and policy are all inputs.
//!
//! Layout:
//! - [`sim`]: simulated evidence for ordinary hardware (per-node keys under a federation root).
//! - [`snp`]: AMD SEV-SNP attestation reports.
//! - [`tdx`]: Intel TDX quotes.
//! - [`policy`]: the appraisal policy (TOML).
//! - [`verdict`]: appraisal results with stable reason codes.
//! - [`appraise`]: evidence detection and appraisal against a policy.
//! - [`ratls`]: the RA-TLS certificate (gate 1) and the rustls verifiers.
#![forbid(unsafe_code)]

pub mod snp;
pub mod tdx;
