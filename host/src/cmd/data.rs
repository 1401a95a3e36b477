//! `parley data ...`: import datasets into the node's store (sealed) and list them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use parley::config::NodeConfig;
use parley::data::Schema;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Validate a CSV file against a schema and store it sealed as a new dataset version.
    /// Nothing is stored unless every row is valid. A running node uses the new version
    /// after a restart.
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
            let keys = parley::node::NodeKeys::open(&cfg).await?;
            let meta = parley::datasets::import_csv(
                &keys.envelope,
                &keys.journal,
                &dataset,
                schema,
                &file,
            )
            .await
            .with_context(|| format!("nothing was imported from {}", file.display()))?;
            println!(
                "{}: dataset {:?} version {} ({} rows, schema {}) stored sealed",
                cfg.party, meta.name, meta.version, meta.rows, meta.schema.name
            );
        }
        DataCommand::List { config, json } => {
            let cfg = NodeConfig::load(&config)?;
            let store = std::sync::Arc::new(parley::store::Store::open(&cfg.store_path())?);
            let journal = parley::audit::Journal::open(store, &cfg.party)?;
            let list = parley::datasets::list(&journal)?;
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
