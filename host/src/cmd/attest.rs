//! `parley attest ...`: offline inspection and verification of evidence, for auditors.
//!
//! The evidence type is detected from the bytes (`--type` overrides); each type's module
//! (`attest_snp`, `attest_tdx`, `attest_sim`) turns the bytes into JSON or findings.
//! Nothing here touches the network.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use parley_attestation::evidence::{self, EvidenceKind};
use parley_attestation::verdict::{Findings, Reason, Status, codes};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Subcommand)]
pub enum AttestCommand {
    /// Print every parsed field of a piece of evidence.
    Inspect {
        /// The evidence file (raw bytes).
        file: PathBuf,
        /// Print JSON (the default and only format for now).
        #[arg(long)]
        json: bool,
        /// Override type detection: snp, tdx or sim.
        #[arg(long = "type")]
        kind: Option<EvidenceKind>,
    },
    /// Verify that evidence is genuine (signature and endorsement chain) at a given time.
    Verify {
        /// The evidence file (raw bytes).
        file: PathBuf,
        /// SNP: a directory holding the VCEK or VLEK (PEM or DER) and optionally its chain.
        #[arg(long)]
        certs: Option<PathBuf>,
        /// TDX: a directory holding TCB Info, QE Identity and CRLs.
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// A directory of root certificates to use instead of the pinned vendor roots.
        #[arg(long)]
        roots: Option<PathBuf>,
        /// Verification time (RFC 3339); defaults to now.
        #[arg(long)]
        at: Option<String>,
        /// Print JSON (the default and only format for now).
        #[arg(long)]
        json: bool,
        /// Override type detection: snp, tdx or sim.
        #[arg(long = "type")]
        kind: Option<EvidenceKind>,
    },
    /// Show a running node's latest verdicts about each peer (both gates), their age and
    /// reasons, over the node's admin socket.
    Peers {
        /// The node's config file (locates its admin socket).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Inputs to genuineness verification besides the evidence itself.
#[allow(dead_code)] // each evidence type reads the inputs it needs
pub struct VerifyInputs {
    pub certs: Option<PathBuf>,
    pub collateral: Option<PathBuf>,
    pub roots: Option<PathBuf>,
    pub at: OffsetDateTime,
}

/// What a type-specific verifier found: findings plus type-specific details for the JSON.
pub struct Verified {
    pub findings: Findings,
    pub details: serde_json::Value,
}

pub fn run(cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Peers { config, json } => peers(&config, json),
        AttestCommand::Inspect { file, kind, .. } => {
            let bytes = read(&file)?;
            let kind = detect(&bytes, kind, &file)?;
            let value = match kind {
                EvidenceKind::Snp => super::attest_snp::inspect(&bytes),
                EvidenceKind::Tdx => super::attest_tdx::inspect(&bytes),
                EvidenceKind::Sim => super::attest_sim::inspect(&bytes),
            }
            .with_context(|| {
                format!(
                    "cannot parse {} as {} evidence",
                    file.display(),
                    kind.as_str()
                )
            })?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        AttestCommand::Verify {
            file,
            certs,
            collateral,
            roots,
            at,
            kind,
            ..
        } => {
            let bytes = read(&file)?;
            let at = match at {
                Some(s) => OffsetDateTime::parse(&s, &Rfc3339).with_context(|| {
                    format!("--at {s:?} is not an RFC 3339 time (e.g. 2025-06-20T00:00:00Z)")
                })?,
                None => OffsetDateTime::now_utc(),
            };
            let inputs = VerifyInputs {
                certs,
                collateral,
                roots,
                at,
            };
            let (kind_str, mut verified) = match detect(&bytes, kind, &file) {
                Ok(kind) => {
                    let v = match kind {
                        EvidenceKind::Snp => super::attest_snp::verify(&bytes, &inputs),
                        EvidenceKind::Tdx => super::attest_tdx::verify(&bytes, &inputs),
                        EvidenceKind::Sim => super::attest_sim::verify(&bytes, &inputs),
                    }?;
                    (json!(kind.as_str()), v)
                }
                Err(e) => {
                    let mut findings = Findings::default();
                    findings.push(Reason::refuse(
                        codes::UNKNOWN_EVIDENCE_TYPE,
                        format!("{e:#}"),
                    ));
                    (
                        serde_json::Value::Null,
                        Verified {
                            findings,
                            details: json!({}),
                        },
                    )
                }
            };
            if verified.findings.status() != Status::Contraindicated {
                verified.findings.push(Reason::warn(
                    codes::NO_POLICY,
                    "genuineness only: no appraisal policy was applied (pass --policy to appraise)",
                ));
            }
            let status = verified.findings.status();
            let out = json!({
                "type": kind_str,
                "status": status,
                "reasons": verified.findings.reasons,
                "verification_time": at.format(&Rfc3339)?,
                "details": verified.details,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(if status == Status::Contraindicated {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn read(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read evidence file {}", file.display()))
}

fn detect(
    bytes: &[u8],
    forced: Option<EvidenceKind>,
    file: &std::path::Path,
) -> anyhow::Result<EvidenceKind> {
    match forced.or_else(|| evidence::detect(bytes)) {
        Some(k) => Ok(k),
        None => anyhow::bail!(
            "{} ({} bytes) is not SEV-SNP, TDX or Parley simulated evidence; pass --type if you know its type",
            file.display(),
            bytes.len()
        ),
    }
}

fn peers(config: &std::path::Path, json_out: bool) -> anyhow::Result<ExitCode> {
    use parley::admin::{AdminRequest, AdminResponse, call};
    let cfg = parley::config::NodeConfig::load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = match rt.block_on(call(
        &cfg.admin_socket(),
        &AdminRequest::Status,
        std::time::Duration::from_secs(10),
    ))? {
        AdminResponse::Status(s) => s,
        other => anyhow::bail!("unexpected answer from the node: {other:?}"),
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&status.peers)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = parley::util::unix_now();
    println!(
        "{} (epoch {}, manifest {}…)",
        status.party,
        status.epoch,
        &status.manifest_hash[..16]
    );
    for (peer, v) in &status.peers {
        println!(
            "  {peer} ({}): {}",
            v.address,
            if v.connected {
                "connected"
            } else {
                "not connected"
            }
        );
        for (gate, rec) in [(1, &v.verdict), (2, &v.gate2)] {
            match rec {
                None => println!("    gate {gate}: no verdict yet"),
                Some(r) => {
                    println!(
                        "    gate {gate}: {} {} ({} s ago, {} appraisals)",
                        r.verdict.status,
                        if r.accepted { "accepted" } else { "REFUSED" },
                        now - r.at,
                        r.appraisals
                    );
                    for reason in &r.verdict.reasons {
                        println!("      {}: {}", reason.code, reason.message);
                    }
                }
            }
        }
        if let Some(a) = v.attested_secs_ago {
            println!("    fresh evidence accepted {a} s ago");
        }
        if let Some(e) = &v.last_error {
            println!("    last error: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
