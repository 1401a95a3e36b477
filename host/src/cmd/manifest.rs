//! `parley manifest ...`: walk several organisations through setting up (and changing) a
//! federation. Each exports its public identity, one drafts the manifest, each signs it,
//! all activate it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use parley::admin::{self, AdminRequest, AdminResponse};
use parley::config::NodeConfig;
use parley::manifest::{FieldName, MANIFEST_FORMAT, Manifest, Party};
use parley::node::archived_manifest_path;
use parley_attestation::hexbytes::{Ed25519Key, HexBytes};
use parley_attestation::policy::PolicyDoc;
use parley_keys::Signer;
use serde::{Deserialize, Serialize};

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Print this node's public identity (a `[[party]]` entry) for the manifest's drafter.
    ExportIdentity {
        #[arg(long)]
        config: PathBuf,
        /// The address peers reach this node at (default: the config's `listen`).
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Draft a manifest (unsigned) from the parties' exported identities, in point order.
    Init {
        #[arg(long)]
        federation: Option<String>,
        #[arg(long)]
        threshold: usize,
        /// Draft the next epoch of this (active) manifest instead of epoch 1.
        #[arg(long)]
        previous: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Identity files from `export-identity`.
        #[arg(required = true)]
        identities: Vec<PathBuf>,
    },
    /// Sign a manifest with this node's identity key (in place).
    Sign {
        #[arg(long)]
        config: PathBuf,
        file: PathBuf,
        /// The epoch this one replaces, when signing with an old key to consent to its rotation.
        #[arg(long)]
        previous: Option<PathBuf>,
    },
    /// Check a manifest: structure, every party's signature, and (with --previous) the epoch chain.
    Verify {
        file: PathBuf,
        #[arg(long)]
        previous: Option<PathBuf>,
    },
    /// Install a fully signed next epoch for this node; a running node switches at the next
    /// job boundary.
    Activate {
        #[arg(long)]
        config: PathBuf,
        file: PathBuf,
        /// This party's policy for the new epoch (its hash must be the one the manifest pins).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    name: String,
    address: String,
    identity_key: Ed25519Key,
    policy_hash: HexBytes<32>,
}

/// The node's identity signer (from its store and key backend).
async fn identity(cfg: &NodeConfig) -> anyhow::Result<std::sync::Arc<dyn Signer>> {
    Ok(parley::node::NodeKeys::open_with(cfg, false)
        .await?
        .identity)
}

/// Write via a temporary file and rename, so a crash never leaves half a manifest.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

pub async fn run(cmd: ManifestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ManifestCommand::ExportIdentity {
            config,
            address,
            out,
        } => {
            let cfg = NodeConfig::load(&config)?;
            let id = identity(&cfg).await?;
            let policy_text = std::fs::read_to_string(&cfg.policy)
                .with_context(|| format!("cannot read {}", cfg.policy.display()))?;
            let policy = PolicyDoc::parse(&policy_text, &cfg.policy.display().to_string())?;
            let address = address
                .or_else(|| cfg.listen.map(|a| a.to_string()))
                .context("pass --address HOST:PORT (the config has no `listen`)")?;
            let f = IdentityFile {
                name: cfg.party.clone(),
                address,
                identity_key: Ed25519Key(*id.public_key().as_bytes()),
                policy_hash: HexBytes(policy.hash),
            };
            let text = toml::to_string(&f)?;
            match out {
                Some(p) => std::fs::write(&p, text)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => print!("{text}"),
            }
        }
        ManifestCommand::Init {
            federation,
            threshold,
            previous,
            out,
            identities,
        } => {
            let prev = previous.as_deref().map(Manifest::load).transpose()?;
            let mut parties = Vec::new();
            for (i, p) in identities.iter().enumerate() {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                let f: IdentityFile = toml::from_str(&text)
                    .with_context(|| format!("{} is not an identity file", p.display()))?;
                parties.push(Party {
                    name: f.name,
                    point: i as u64 + 1,
                    address: f.address,
                    identity_key: f.identity_key,
                    policy_hash: f.policy_hash,
                });
            }
            let m = Manifest {
                format: MANIFEST_FORMAT,
                federation: match (&federation, &prev) {
                    (Some(f), _) => f.clone(),
                    (None, Some(p)) => p.federation.clone(),
                    (None, None) => bail!("pass --federation NAME"),
                },
                epoch: prev.as_ref().map_or(1, |p| p.epoch + 1),
                previous: prev.as_ref().map(|p| HexBytes(p.hash())),
                field: FieldName::Mersenne127,
                threshold,
                parties,
                signatures: Vec::new(),
            };
            m.validate()
                .map_err(|e| anyhow::anyhow!("the draft is not a valid manifest: {e}"))?;
            write_atomically(&out, &m.to_toml())?;
            println!(
                "drafted epoch {} of {:?}: {} (hash {})",
                m.epoch,
                m.federation,
                out.display(),
                hex::encode(m.hash())
            );
            println!(
                "next: every party runs `parley manifest sign --config <its node.toml> {}`",
                out.display()
            );
        }
        ManifestCommand::Sign {
            config,
            file,
            previous,
        } => {
            let cfg = NodeConfig::load(&config)?;
            let id = identity(&cfg).await?;
            let key = Ed25519Key(*id.public_key().as_bytes());
            let mut m = Manifest::load(&file)?;
            let in_this = m.party(&cfg.party).is_some_and(|p| p.identity_key == key);
            let in_prev = match &previous {
                Some(p) => Manifest::load(p)?
                    .party(&cfg.party)
                    .is_some_and(|p| p.identity_key == key),
                None => false,
            };
            if !in_this && !in_prev {
                bail!(
                    "{}'s identity key {key} is not this manifest's key for {:?} (nor the previous epoch's)",
                    cfg.party,
                    cfg.party
                );
            }
            let sig = id.sign(&m.to_be_signed()).await?;
            m.add_signature(&cfg.party, key, sig.0);
            write_atomically(&file, &m.to_toml())?;
            println!(
                "{} signed {} (epoch {}, hash {})",
                cfg.party,
                file.display(),
                m.epoch,
                hex::encode(m.hash())
            );
            if let Err(e) = m.verify_signatures() {
                println!("still missing: {e}");
            }
        }
        ManifestCommand::Verify { file, previous } => {
            let m = Manifest::load(&file)?;
            let mut ok = true;
            println!(
                "{}: federation {:?}, epoch {}, hash {}",
                file.display(),
                m.federation,
                m.epoch,
                hex::encode(m.hash())
            );
            if let Err(e) = m.verify_signatures() {
                ok = false;
                println!("signatures: {e}");
            } else {
                println!("signatures: every party signed");
            }
            if let Some(p) = previous {
                match m.verify_successor(&Manifest::load(&p)?) {
                    Ok(()) => println!("epoch chain: follows {}", p.display()),
                    Err(e) => {
                        ok = false;
                        println!("epoch chain: {e}");
                    }
                }
            }
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        ManifestCommand::Activate {
            config,
            file,
            policy,
        } => {
            let cfg = NodeConfig::load(&config)?;
            let next = Manifest::load(&file)?;
            next.verify_signatures()
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let current = Manifest::load(&cfg.manifest)?;
            next.verify_successor(&current)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let me = next
                .party(&cfg.party)
                .with_context(|| format!("{} is not a party of the new epoch", cfg.party))?;
            let policy_path = policy.as_deref().unwrap_or(&cfg.policy);
            let policy_text = std::fs::read_to_string(policy_path)
                .with_context(|| format!("cannot read {}", policy_path.display()))?;
            let doc = PolicyDoc::parse(&policy_text, &policy_path.display().to_string())?;
            if doc.hash != me.policy_hash.0 {
                bail!(
                    "policy {} has hash {}, but the new epoch pins {} for {}: pass the agreed policy with --policy",
                    policy_path.display(),
                    doc.hash_hex(),
                    me.policy_hash,
                    cfg.party
                );
            }
            // Keep the superseded files, then install the new ones.
            std::fs::copy(
                &cfg.manifest,
                archived_manifest_path(&cfg.manifest, current.epoch),
            )?;
            if policy.is_some() {
                std::fs::copy(
                    &cfg.policy,
                    archived_manifest_path(&cfg.policy, current.epoch),
                )?;
                write_atomically(&cfg.policy, &policy_text)?;
            }
            write_atomically(&cfg.manifest, &next.to_toml())?;
            match admin::call(
                &cfg.admin_socket(),
                &AdminRequest::Activate,
                Duration::from_secs(30),
            )
            .await
            {
                Ok(AdminResponse::Activated {
                    epoch,
                    pending: false,
                }) => println!("{}: epoch {epoch} is active", cfg.party),
                Ok(AdminResponse::Activated {
                    epoch,
                    pending: true,
                }) => {
                    println!(
                        "{}: epoch {epoch} will be active when the running jobs finish",
                        cfg.party
                    )
                }
                Ok(AdminResponse::Error { message }) => {
                    bail!("the running node refused the new epoch: {message}")
                }
                Ok(other) => bail!(other.unexpected()),
                Err(admin::AdminClientError::Connect { .. }) => {
                    println!(
                        "{}: installed epoch {}; the node uses it when it starts",
                        cfg.party, next.epoch
                    )
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
