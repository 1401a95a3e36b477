//! `parley audit ...`: export a node's audit log, verify an export offline (against a
//! tree head a peer holds), and read the tree heads a node holds of its peers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use parley::config::NodeConfig;
use parley::store::audit::{AuditExport, ExportCheck, SignedTreeHead, verify_export};
use parley_attestation::hexbytes::Ed25519Key;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write the node's current audit log and a tree head signed by its identity key.
    Export {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check an exported log: the signed head, sequence numbers and the Merkle root; with
    /// --checkpoint, that it extends a tree head a peer holds.
    Verify {
        log: PathBuf,
        /// A signed tree head of this log held by a peer (`parley audit checkpoint`).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The identity key to trust (`ed25519:…`, from the manifest); default: the export's.
        #[arg(long)]
        key: Option<Ed25519Key>,
    },
    /// Print the latest signed tree head this node holds of another party's log.
    Checkpoint {
        #[arg(long)]
        config: PathBuf,
        /// The party whose log.
        #[arg(long)]
        of: String,
    },
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Export { config, out } => {
            let cfg = NodeConfig::load(&config)?;
            // Read-only beside a possibly running node: no key rotation from here.
            let export = parley::node::NodeKeys::open_with(&cfg, false)
                .await?
                .export_audit()
                .await?;
            let text = serde_json::to_string_pretty(&export)?;
            match out {
                Some(p) => std::fs::write(&p, text)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => println!("{text}"),
            }
        }
        AuditCommand::Verify {
            log,
            checkpoint,
            key,
        } => {
            let export: AuditExport = serde_json::from_slice(
                &std::fs::read(&log).with_context(|| format!("cannot read {}", log.display()))?,
            )
            .with_context(|| format!("{} is not an audit export", log.display()))?;
            let cp: Option<SignedTreeHead> = match &checkpoint {
                Some(p) => Some(
                    serde_json::from_slice(
                        &std::fs::read(p)
                            .with_context(|| format!("cannot read {}", p.display()))?,
                    )
                    .with_context(|| format!("{} is not a signed tree head", p.display()))?,
                ),
                None => None,
            };
            let key = key.unwrap_or(export.identity_key);
            match verify_export(&export, &key, cp.as_ref()) {
                ExportCheck::Valid { size } => {
                    println!(
                        "{}: {} entries of {}'s log verify under {key}{}",
                        log.display(),
                        size,
                        export.party,
                        if cp.is_some() {
                            ", consistent with the peer-held tree head"
                        } else {
                            ""
                        }
                    );
                }
                ExportCheck::Invalid(why) => {
                    println!("{}: INVALID: {why}", log.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        AuditCommand::Checkpoint { config, of } => {
            let cfg = NodeConfig::load(&config)?;
            // A running node answers over its admin socket; a stopped one from its store.
            let held = match parley::admin::call(
                &cfg.admin_socket(),
                &parley::admin::AdminRequest::Checkpoint { party: of.clone() },
                Duration::from_secs(10),
            )
            .await
            {
                Ok(parley::admin::AdminResponse::Checkpoint(h)) => Some(*h),
                Ok(parley::admin::AdminResponse::Error { message }) => bail!("{message}"),
                Ok(other) => bail!(other.unexpected()),
                Err(_) => {
                    let store = std::sync::Arc::new(parley::store::Store::open(&cfg.store_path())?);
                    parley::store::audit::Journal::open(store, &cfg.party)?.held_head(&of)
                }
            };
            match held {
                Some(h) => println!("{}", serde_json::to_string_pretty(&h)?),
                None => bail!("{} holds no tree head of {of}'s log", cfg.party),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
