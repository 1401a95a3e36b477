//! `parley bench ...`: performance figures as ratios to a baseline measured in the same run.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// An attested session set-up (both gates) against a plain mutual TLS 1.3 handshake.
    Handshake {
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Handshake { iterations, json } => {
            let f = parley::bench::handshake(iterations.max(1)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                println!(
                    "attested set-up (mutual RA-TLS 1.3, gate 1 + gate 2): {:.3} ms\nplain mutual TLS 1.3 handshake: {:.3} ms\nratio: {:.2}x over {} iterations each",
                    f.attested_ms, f.plain_mtls_ms, f.ratio, f.iterations
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
