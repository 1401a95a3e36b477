//! One module per CLI subcommand group; each exposes clap args and `run`.
pub mod attest;
pub mod attest_sim;
pub mod attest_snp;
pub mod attest_tdx;
pub mod bench;
pub mod collateral;
pub mod data;
pub mod keys;
pub mod manifest;
pub mod policy;
