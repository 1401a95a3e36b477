//! One module per CLI subcommand group; each exposes clap args and `run`.
pub mod attest;
pub mod attest_sim;
pub mod attest_snp;
pub mod attest_tdx;
pub mod audit;
pub mod bench;
pub mod collateral;
pub mod data;
pub mod job;
pub mod keys;
pub mod manifest;
pub mod policy;
