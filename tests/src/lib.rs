//! Shared helpers for Parley's cross-crate integration tests.
#![forbid(unsafe_code)]

pub mod keys_suite;
pub mod openbao;
