//! `parley keys rotate|rotate-data|status`: key rotation and revocation, run by an operator.
//!
//! Reads the `[keys]` section of the node config and opens the node's blob store. Each
//! command is safe to run again after an interruption: `rotate` rewraps what is left,
//! `rotate-data` resumes the recorded job. A Vault backend is used without the background
//! renewal (one-shot command); the token lives for the command only.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use parley_keys::config::{KeysConfig, describe_toml_error, open_backend};
use parley_keys::envelope::EnvelopeStore;
use parley_keys::rotation::KeysStatus;
use parley_keys::store::{BlobStore, FileStore};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Rotate the key-encryption key and rewrap every data key (no data re-encryption).
    Rotate {
        #[command(flatten)]
        node: NodeArgs,
        /// Then revoke every older KEK version (raise min_decryption_version). Refused,
        /// changing nothing, unless every stored blob is under the new version.
        #[arg(long)]
        revoke: bool,
        /// Don't add a KEK version: only finish rewrapping after an interrupted rotation.
        #[arg(long)]
        rewrap_only: bool,
    },
    /// Re-encrypt every blob under a fresh data key. Crash-safe: run it again to finish.
    RotateData {
        #[command(flatten)]
        node: NodeArgs,
        /// Pause this long after each blob, to spread the I/O on a busy node.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        pause_ms: u64,
    },
    /// Show KEK versions, data-key generations and ages, and what the schedule says is due.
    Status {
        #[command(flatten)]
        node: NodeArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct NodeArgs {
    /// The node config file (its `[keys]` section is used).
    #[arg(long, short)]
    pub config: PathBuf,
    /// The node's data directory: relative paths in the config resolve against it.
    /// Defaults to the config file's directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A file blob store directory instead of the node's store (tests, migrations).
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// Read the `[keys]` table of a node config file.
pub fn load_keys_config(path: &Path) -> anyhow::Result<KeysConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), describe_toml_error(&e, &text)))?;
    let keys = table
        .get("keys")
        .cloned()
        .unwrap_or(toml::Value::Table(Default::default()));
    let cfg: KeysConfig = keys.try_into().map_err(|e: toml::de::Error| {
        anyhow::anyhow!(
            "{}: [keys]: {}",
            path.display(),
            describe_toml_error(&e, "")
        )
    })?;
    cfg.validate()
        .with_context(|| format!("{}: [keys]", path.display()))?;
    Ok(cfg)
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let node = match &cmd {
        KeysCommand::Rotate { node, .. }
        | KeysCommand::RotateData { node, .. }
        | KeysCommand::Status { node, .. } => node,
    };
    let cfg = load_keys_config(&node.config)?;
    let base = node
        .data_dir
        .clone()
        .or_else(|| node.config.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut _lock = None;
    let store: Arc<dyn BlobStore> = match &node.store {
        Some(dir) => Arc::new(FileStore::open(dir)?),
        // The node's own SQLite store. A rotation writes it, so it takes the store's lock
        // (refused beside a running node); `status` only reads.
        None => {
            let node_cfg = parley::config::NodeConfig::load(&node.config)?;
            if !matches!(cmd, KeysCommand::Status { .. }) {
                _lock = Some(parley::store::lock::StoreLock::acquire(
                    &node_cfg.data_dir,
                    "parley keys rotate",
                    "a key rotation changes the store and is refused beside it",
                    "stop the node first, or leave it to the node's own schedule ([keys.rotation])",
                )?);
            }
            Arc::new(parley::store::Store::open(&node_cfg.store_path())?)
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_with(cmd, &cfg, &base, store))
}

/// The commands over any blob store (the node passes its SQLite store here).
pub async fn run_with(
    cmd: KeysCommand,
    cfg: &KeysConfig,
    base: &Path,
    store: Arc<dyn BlobStore>,
) -> anyhow::Result<ExitCode> {
    let opened = open_backend(cfg, base, false)?;
    let es = EnvelopeStore::new(opened.backend.clone(), store);
    match cmd {
        KeysCommand::Rotate {
            revoke,
            rewrap_only,
            ..
        } => {
            let r = if rewrap_only {
                es.rewrap_all().await.context("rewrap")?
            } else {
                es.rotate_kek().await.context("KEK rotation")?
            };
            println!(
                "KEK version {}; {} data keys rewrapped, {} already current",
                r.kek_version, r.changed, r.skipped
            );
            if revoke {
                let min = es.revoke_below_latest().await.context("revocation")?;
                println!("KEK versions below {min} revoked");
            }
        }
        KeysCommand::RotateData { pause_ms, .. } => {
            let pause = std::time::Duration::from_millis(pause_ms);
            let r = es
                .rotate_data_with(|id| {
                    // One line per blob: an operator (or a test) sees how far it got.
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "re-encrypted {id}");
                    let _ = out.flush();
                    if !pause.is_zero() {
                        // A one-shot command on a current-thread runtime with nothing else
                        // to run: sleeping the thread only delays this command.
                        std::thread::sleep(pause);
                    }
                })
                .await
                .context("data-key rotation")?;
            println!(
                "{} blobs re-encrypted under fresh data keys (generation {}), {} already done{}",
                r.changed,
                r.generation,
                r.skipped,
                if r.resumed {
                    "; finished an interrupted run"
                } else {
                    ""
                }
            );
        }
        KeysCommand::Status { json, .. } => {
            let st = es.status().await.context("key status")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let due = cfg.rotation.due(&st, now);
            if json {
                let v = serde_json::json!({ "status": st, "due": due });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_status(&st, now);
                for d in &due {
                    println!("due: {d}");
                }
            }
            if !st.unreadable.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn age(now: u64, t: u64) -> String {
    let s = now.saturating_sub(t);
    match s {
        0..3600 => format!("{} min", s / 60),
        3600..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn print_status(st: &KeysStatus, now: u64) {
    println!("backend: {}", st.backend);
    println!(
        "KEK: latest version {}, minimum decryption version {}",
        st.kek.latest_version, st.kek.min_decryption_version
    );
    for v in &st.kek.versions {
        let revoked = if v.version < st.kek.min_decryption_version {
            " (revoked)"
        } else {
            ""
        };
        println!(
            "  v{}: created {} ago{revoked}",
            v.version,
            age(now, v.created_unix)
        );
    }
    println!(
        "blobs: {} (data-key generation {})",
        st.blob_count, st.generation
    );
    for (v, n) in &st.blobs_per_kek_version {
        println!("  {n} under KEK v{v}");
    }
    if let Some(t) = st.oldest_data_key_unix {
        println!("oldest data key: {} old", age(now, t));
    }
    if let Some(t) = st.last_data_rotation_unix {
        println!("last data-key rotation: {} ago", age(now, t));
    }
    if let Some(g) = st.pending_data_rotation {
        println!(
            "an interrupted rotate-data (to generation {g}) is pending: run `parley keys rotate-data`"
        );
    }
    for id in &st.unreadable {
        println!("UNREADABLE blob {id}: restore it from a backup");
    }
}
