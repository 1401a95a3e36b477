//! Parley attestation: evidence formats, verification, appraisal and RA-TLS.
//!
//! This crate is what auditors run alone, so it does no I/O beyond reading bytes it is
//! given (the guest collectors are the one exception) and never signs: time, collateral,
//! roots and policy are all inputs, and signatures are made by the host through the
//! `Signer` of `parley-keys` over bytes built by [`canonical`].
//!
//! Layout:
//! - [`collect`]: collecting evidence in the guest (configfs-tsm), the one OS-facing part.
//! - [`evidence`]: one interface over every evidence type: detect, parse, verify, claims.
//! - [`collateral`]: the collateral cache layout (VCEKs, TCB Info, QE Identity, CRLs).
//! - [`sim`]: simulated evidence (per-node keys endorsed by a federation root).
//! - [`snp`]: AMD SEV-SNP attestation reports.
//! - [`tdx`]: Intel TDX quotes.
//! - [`policy`]: the appraisal policy (TOML, format 2), named by its hash.
//! - [`draft`]: drafting a policy from known-good evidence.
//! - [`appraise`]: appraisal of evidence against a policy, producing a [`appraise::Verdict`].
//! - [`verdict`]: statuses and reasons with stable codes.
//! - [`ear`]: verdicts as signed EAT Attestation Results, and their offline check.
//! - [`ratls`]: the RA-TLS certificate (gate 1) and the rustls verifiers.
//! - [`canonical`]: canonical to-be-signed bytes and signature checks.
#![forbid(unsafe_code)]

pub mod appraise;
pub mod canonical;
pub mod collateral;
pub mod collect;
pub mod draft;
pub mod ear;
pub mod evidence;
pub mod hexbytes;
pub mod policy;
pub mod ratls;
pub mod sim;
pub mod snp;
pub mod tdx;
pub mod verdict;
