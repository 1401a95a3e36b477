//! `parley policy check|from-evidence`: validate a policy file, or draft one from
//! known-good evidence for an operator to review.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use parley_attestation::draft::{DraftOptions, draft};
use parley_attestation::evidence::{self, EvidenceKind};
use parley_attestation::sim::SimEvidence;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::attest::{InputArgs, load_inputs, load_policy};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file: print its name, hash and sections, or the first error with
    /// its line and column.
    Check {
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Draft a policy that admits this (known-good, genuine) evidence. Review it before
    /// use. Debug guests, migration agents and simulated evidence are admitted only when a
    /// flag asks.
    FromEvidence {
        /// The evidence file.
        file: PathBuf,
        /// The policy's name (letters, digits, '.', '_', '-').
        #[arg(long, default_value = "drafted")]
        name: String,
        #[command(flatten)]
        inputs: InputArgs,
        /// Verification time (RFC 3339); defaults to now.
        #[arg(long)]
        at: Option<String>,
        /// Admit debug guests (never in production).
        #[arg(long)]
        allow_debug: bool,
        /// Admit a migration agent (SNP) or migratable TDs.
        #[arg(long)]
        allow_migration_agent: bool,
        /// Admit simulated evidence (no hardware protection).
        #[arg(long)]
        allow_simulated: bool,
        /// TDX: accept this TCB status besides UpToDate (repeatable; Intel's name).
        #[arg(long = "accept-tcb-status")]
        tcb_statuses: Vec<String>,
        /// Write the policy here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { file, json } => {
            let doc = load_policy(&file)?;
            let p = &doc.policy;
            let sections: Vec<&str> = [
                ("snp", p.snp.is_some()),
                ("tdx", p.tdx.is_some()),
                ("sim", p.sim.is_some()),
            ]
            .into_iter()
            .filter_map(|(n, on)| on.then_some(n))
            .collect();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "file": file.display().to_string(),
                        "name": p.name,
                        "format": p.format,
                        "sha256": doc.hash_hex(),
                        "sections": sections,
                        "allow_simulated": p.allow_simulated(),
                        "tolerate": p.tolerate,
                    }))?
                );
            } else {
                println!(
                    "{}: policy {:?} (format {}), sha256 {}; admits {}{}",
                    file.display(),
                    p.name,
                    p.format,
                    doc.hash_hex(),
                    sections.join(", "),
                    if p.allow_simulated() {
                        " (simulated evidence allowed: no hardware protection)"
                    } else {
                        ""
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::FromEvidence {
            file,
            name,
            inputs,
            at,
            allow_debug,
            allow_migration_agent,
            allow_simulated,
            tcb_statuses,
            out,
        } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read evidence file {}", file.display()))?;
            let at = match at {
                Some(s) => OffsetDateTime::parse(&s, &Rfc3339)
                    .with_context(|| format!("--at {s:?} is not an RFC 3339 time"))?,
                None => OffsetDateTime::now_utc(),
            };
            let kind = evidence::detect(&bytes);
            let mut loaded = load_inputs(kind, &inputs)?;
            // Simulated evidence names its root; with --allow-simulated the operator vouches
            // for it, and the draft pins it.
            let sim_root = match kind {
                Some(EvidenceKind::Sim) if allow_simulated => {
                    let root = SimEvidence::parse(&bytes)?.endorsement.root;
                    loaded.sim_roots = vec![root];
                    Some(root)
                }
                _ => None,
            };
            let verified = evidence::verify(&bytes, kind, &loaded, at);
            let d = draft(
                &verified,
                sim_root,
                &DraftOptions {
                    name,
                    allow_debug,
                    allow_migration_agent,
                    allow_simulated,
                    tcb_statuses,
                },
            )
            .with_context(|| format!("cannot draft a policy from {}", file.display()))?;
            let mut text = format!(
                "# Drafted by `parley policy from-evidence` from {} (SHA-256 {}) at {}.\n# Review every value before use: it admits exactly what that evidence showed.\n",
                file.display(),
                hex::encode(verified.evidence_sha256),
                at.format(&Rfc3339)?
            );
            for n in &d.notes {
                text.push_str(&format!("# NOTE: {n}\n"));
            }
            text.push_str(&d.policy.to_toml()?);
            // What we write must be a valid policy.
            parley_attestation::policy::PolicyDoc::parse(&text, "drafted policy")?;
            for n in &d.notes {
                eprintln!("note: {n}");
            }
            match out {
                Some(path) => std::fs::write(&path, &text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
