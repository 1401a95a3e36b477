//! One module per CLI subcommand group; each exposes clap args and `run`.
pub mod attest;
