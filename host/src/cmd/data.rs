//! `parley data ...`: import datasets into the node's store (sealed) and list them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use parley::config::NodeConfig;
use parley::store::data::Schema;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Validate a CSV file against a schema and store it sealed as a new dataset version.
    /// Nothing is stored unless every row is valid. Beside a running node the import goes
    /// through it (its admin socket): the node reads the file, uses the new version for
    /// the next job and announces it to its peers.
    Import {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        dataset: String,
        /// A schema file (TOML) or the name of a built-in schema (`patients`).
        #[arg(long)]
        schema: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// List the datasets in the node's store (names, versions, row counts; never values).
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: DataCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DataCommand::Import {
            config,
            dataset,
            schema,
            file,
        } => {
            let cfg = NodeConfig::load(&config)?;
            let schema = Schema::load(&schema)?;
            // A running node is its store's one writer: the import goes through it.
            if let Some(h) = parley::store::lock::StoreLock::holder(&cfg.data_dir)
                && h.is_node()
            {
                return import_through_node(&cfg, &h, dataset, schema, &file).await;
            }
            let nothing = || format!("nothing was imported from {}", file.display());
            let mut ds = parley::store::data::Dataset::load_csv(&dataset, schema, &file)
                .with_context(nothing)?;
            parley::jobs::analytics::check_against_policy(&cfg, &ds)
                .map_err(anyhow::Error::msg)
                .with_context(nothing)?;
            let keys = parley::node::NodeKeys::open(&cfg).await?;
            let meta = parley::store::datasets::store(&keys.envelope, &keys.journal, &mut ds)
                .await
                .with_context(nothing)?;
            println!(
                "{}: dataset {:?} version {} ({} rows, schema {}) stored sealed",
                cfg.party, meta.name, meta.version, meta.rows, meta.schema.name
            );
        }
        DataCommand::List { config, json } => {
            let cfg = NodeConfig::load(&config)?;
            let store = std::sync::Arc::new(parley::store::Store::open(&cfg.store_path())?);
            let journal = parley::store::audit::Journal::open(store, &cfg.party)?;
            let list = parley::store::datasets::list(&journal)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for m in list {
                    println!(
                        "{}  version {}  {} rows  schema {}",
                        m.name, m.version, m.rows, m.schema.name
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `data import` beside a running node: the node imports the file itself.
async fn import_through_node(
    cfg: &NodeConfig,
    holder: &parley::store::lock::Holder,
    dataset: String,
    schema: Schema,
    file: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    use parley::admin::{AdminRequest, AdminResponse};
    let who = holder.to_string();
    let abs =
        std::fs::canonicalize(file).with_context(|| format!("cannot read {}", file.display()))?;
    let req = AdminRequest::Import {
        dataset,
        schema: Box::new(schema),
        file: abs,
    };
    let answer = parley::admin::call(
        &cfg.admin_socket(),
        &req,
        std::time::Duration::from_secs(600),
    )
    .await
    .with_context(|| {
        format!("{who}: the import must go through it, but its admin socket did not answer")
    })?;
    match answer {
        AdminResponse::Imported { meta } => {
            println!(
                "{}: dataset {:?} version {} ({} rows, schema {}) stored sealed by the running node; the next job uses it",
                cfg.party, meta.name, meta.version, meta.rows, meta.schema.name
            );
            Ok(ExitCode::SUCCESS)
        }
        AdminResponse::Error { message } => anyhow::bail!("{message}"),
        other => anyhow::bail!(other.unexpected()),
    }
}
