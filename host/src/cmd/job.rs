//! `parley job ...`: propose jobs and decide on them over the node's admin socket.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use parley::admin::{self, AdminRequest, AdminResponse};
use parley::config::NodeConfig;
use parley::jobs::job::{JobId, JobKind, JobView, SecurityModel};

#[derive(Subcommand)]
pub enum JobCommand {
    /// Propose a job to every party (this node becomes its proposer).
    Propose {
        #[arg(long)]
        config: PathBuf,
        /// summary-stats, or analytics (with --spec)
        #[arg(long, default_value = "summary-stats")]
        kind: String,
        #[arg(long)]
        dataset: String,
        /// Comma-separated column names.
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Parties that receive the result (default: every party).
        #[arg(long, value_delimiter = ',')]
        recipients: Vec<String>,
        /// `malicious` (default) or `semi-honest` — part of what every party approves. An
        /// analytics job takes its spec's `security`; this flag, if given, must agree.
        #[arg(long)]
        security: Option<String>,
        /// An analytics job's spec (JSON: analysis, bounds, max_rows, privacy,
        /// neighbouring, k_anonymity, recipients, security).
        #[arg(long)]
        spec: Option<PathBuf>,
    },
    /// Approve a job awaiting this node's decision (signed with the node's identity key).
    Approve {
        #[arg(long)]
        config: PathBuf,
        id: JobId,
    },
    /// Refuse a job awaiting this node's decision; it never starts anywhere.
    Refuse {
        #[arg(long)]
        config: PathBuf,
        id: JobId,
        #[arg(long)]
        reason: String,
    },
    /// Jobs this node holds (this run's and, from its store, earlier ones), newest first.
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One job: state, approvals, verdicts, commitments and (for recipients) the result.
    Show {
        #[arg(long)]
        config: PathBuf,
        id: JobId,
    },
}

async fn call(config: &Path, req: AdminRequest) -> anyhow::Result<AdminResponse> {
    let cfg = NodeConfig::load(config)?;
    Ok(admin::call(&cfg.admin_socket(), &req, Duration::from_secs(30)).await?)
}

fn print_view(v: &JobView) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(cmd: JobCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        JobCommand::Propose {
            config,
            kind,
            dataset,
            columns,
            recipients,
            security,
            spec,
        } => {
            let kind = match kind.as_str() {
                "summary-stats" => JobKind::SummaryStats,
                "analytics" => JobKind::Analytics,
                other => bail!("unknown job kind {other:?}; known: summary-stats, analytics"),
            };
            let analytics =
                match (&spec, kind) {
                    (Some(p), JobKind::Analytics) => {
                        let text = std::fs::read(p)
                            .with_context(|| format!("cannot read {}", p.display()))?;
                        Some(Box::new(
                            serde_json::from_slice::<parley_enclave::analytics::AnalyticsSpec>(
                                &text,
                            )
                            .with_context(|| {
                                format!("{} is not an analytics job spec", p.display())
                            })?,
                        ))
                    }
                    (None, JobKind::Analytics) => bail!("--kind analytics needs --spec FILE"),
                    (Some(_), _) => bail!("--spec is for --kind analytics"),
                    (None, _) => None,
                };
            let flag = match security.as_deref() {
                None => None,
                Some("malicious") => Some(SecurityModel::Malicious),
                Some("semi-honest") => Some(SecurityModel::SemiHonest),
                Some(other) => {
                    bail!("unknown security model {other:?}; use malicious or semi-honest")
                }
            };
            let named = analytics.as_ref().map(|a| SecurityModel::from(a.security));
            let security = match (flag, named) {
                (Some(f), Some(n)) if f != n => bail!(
                    "--security {} disagrees with the spec's security = {:?}: a job has one security model",
                    f.as_str(),
                    n.as_str()
                ),
                (f, n) => f.or(n).unwrap_or_default(),
            };
            let req = AdminRequest::Submit {
                kind,
                dataset,
                columns,
                security,
                bench: None,
                recipients,
                analytics,
            };
            match call(&config, req).await? {
                AdminResponse::Submitted { id } => println!("proposed job {id}"),
                AdminResponse::Error { message } => bail!("{message}"),
                other => bail!(other.unexpected()),
            }
        }
        JobCommand::Approve { config, id } => {
            match call(&config, AdminRequest::Approve { id }).await? {
                AdminResponse::Job(v) => print_view(&v)?,
                AdminResponse::NoSuchJob { id } => {
                    bail!("this node holds no job {id}; `parley job list` shows the jobs it holds")
                }
                AdminResponse::Error { message } => bail!("{message}"),
                other => bail!(other.unexpected()),
            }
        }
        JobCommand::Refuse { config, id, reason } => {
            match call(&config, AdminRequest::Refuse { id, reason }).await? {
                AdminResponse::Job(v) => print_view(&v)?,
                AdminResponse::Error { message } => bail!("{message}"),
                other => bail!(other.unexpected()),
            }
        }
        JobCommand::List { config, json } => match call(&config, AdminRequest::Jobs).await? {
            AdminResponse::Jobs { jobs } if json => {
                println!("{}", serde_json::to_string_pretty(&jobs)?)
            }
            AdminResponse::Jobs { jobs: list } => {
                for v in list {
                    let state = serde_json::to_value(&v.state)?;
                    println!(
                        "{}  {}  {}{}  approvals: {}",
                        v.spec.id,
                        v.spec.kind.as_str(),
                        state["state"].as_str().unwrap_or("?"),
                        if v.awaiting_operator {
                            " (awaiting this operator)"
                        } else {
                            ""
                        },
                        v.approvals.join(", ")
                    );
                }
            }
            AdminResponse::Error { message } => bail!("{message}"),
            other => bail!(other.unexpected()),
        },
        JobCommand::Show { config, id } => match call(&config, AdminRequest::Job { id }).await? {
            AdminResponse::Job(v) => print_view(&v)?,
            AdminResponse::NoSuchJob { id } => {
                bail!("this node holds no job {id}; `parley job list` shows the jobs it holds")
            }
            AdminResponse::Error { message } => bail!("{message}"),
            other => bail!(other.unexpected()),
        },
    }
    Ok(ExitCode::SUCCESS)
}
