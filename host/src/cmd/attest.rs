//! `parley attest ...`: offline inspection and verification of evidence.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum AttestCommand {
    /// Print every parsed field of a piece of evidence.
    Inspect {
        /// The evidence file (raw bytes).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Inspect { file, .. } => {
            anyhow::bail!("cannot inspect {}: no evidence format is implemented yet", file.display())
        }
    }
}
