//! The operator-only admin socket: a Unix socket (mode 0600 in the node's data directory)
//! carrying one JSON request and one JSON response per line. CLI commands and `parley demo`
//! talk to a running node through it; nothing else can reach it over the network.
//!
//! Reads (status, jobs, tree heads) are answered here from the [`Board`] the engine
//! publishes and from the store, so they never wait for the engine or a job's computation.
//! Requests that change the node go to the engine; a dataset import runs here (the node
//! is its store's one writer) and the engine announces the new version to the peers.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::jobs::board::Board;
use crate::jobs::job::{JobId, JobKind, JobView};
use crate::node::NodeContext;
use crate::peer::status::{PeerCounters, VerdictRecord};

/// Requests are small; anything longer is refused.
const MAX_REQUEST_LEN: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AdminRequest {
    /// Peers, verdicts, counters and jobs.
    Status,
    /// Propose a job to every party.
    Submit {
        kind: JobKind,
        #[serde(default)]
        dataset: String,
        #[serde(default)]
        columns: Vec<String>,
        #[serde(default)]
        security: crate::jobs::job::SecurityModel,
        #[serde(default)]
        bench: Option<crate::jobs::job::BenchSpec>,
        /// Parties that receive the result (empty: every party).
        #[serde(default)]
        recipients: Vec<String>,
        /// The spec of an `analytics` job.
        #[serde(default)]
        analytics: Option<Box<parley_enclave::analytics::AnalyticsSpec>>,
    },
    /// One job's state and result.
    Job { id: JobId },
    /// Stop the node gracefully.
    Shutdown,
    /// Switch to the manifest and policy now at the config's paths, at the next job boundary.
    Activate,
    /// The operator approves a job awaiting this node's decision (signed with the identity key).
    Approve { id: JobId },
    /// The operator refuses a job awaiting this node's decision.
    Refuse { id: JobId, reason: String },
    /// Every job this node holds, this run's and earlier runs' (from its store).
    Jobs,
    /// The latest signed tree head this node holds of `party`'s audit log.
    Checkpoint { party: String },
    /// Import a CSV file (read by the node, so an absolute path it can read) as a new
    /// version of `dataset`; the node uses it for the next job and announces it to peers.
    Import {
        dataset: String,
        schema: Box<crate::store::data::Schema>,
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum AdminResponse {
    Status(Box<NodeStatus>),
    Submitted {
        id: JobId,
    },
    Job(Box<JobView>),
    /// This node holds no job with that id (a proposal may not have reached it yet).
    NoSuchJob {
        id: JobId,
    },
    ShuttingDown,
    /// Every job this node holds: this run's and, from its store, earlier runs' (newest first).
    Jobs {
        jobs: Vec<JobView>,
    },
    Checkpoint(Box<crate::store::audit::SignedTreeHead>),
    /// The new epoch is active, or will be once running jobs finish (`pending`).
    Activated {
        epoch: u64,
        pending: bool,
    },
    /// A dataset version was imported.
    Imported {
        meta: Box<crate::store::datasets::DatasetMeta>,
    },
    Error {
        message: String,
    },
}

impl AdminResponse {
    /// The reply's name on the wire (for messages; never the reply's contents).
    pub fn kind(&self) -> &'static str {
        match self {
            AdminResponse::Status(_) => "status",
            AdminResponse::Submitted { .. } => "submitted",
            AdminResponse::Job(_) => "job",
            AdminResponse::NoSuchJob { .. } => "no-such-job",
            AdminResponse::ShuttingDown => "shutting-down",
            AdminResponse::Jobs { .. } => "jobs",
            AdminResponse::Checkpoint(_) => "checkpoint",
            AdminResponse::Activated { .. } => "activated",
            AdminResponse::Imported { .. } => "imported",
            AdminResponse::Error { .. } => "error",
        }
    }

    /// An error for a reply the caller did not expect.
    pub fn unexpected(&self) -> String {
        format!(
            "the node gave an unexpected answer ({}); is this parley the same version as the node's?",
            self.kind()
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub party: String,
    pub epoch: u64,
    pub manifest_hash: String,
    pub attestation_mode: String,
    pub measurement: String,
    pub peers: BTreeMap<String, PeerView>,
    pub counters: BTreeMap<String, PeerCounters>,
    pub jobs: Vec<JobView>,
    /// Per dataset with a `[budgets]` entry: the ρ left (total − spent − reserved).
    #[serde(default)]
    pub budgets_left: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    pub address: String,
    pub connected: bool,
    pub last_error: Option<String>,
    /// The latest gate-1 verdict (the evidence in the peer's certificate).
    pub verdict: Option<VerdictRecord>,
    /// The latest gate-2 verdict (fresh evidence bound to the session).
    pub gate2: Option<VerdictRecord>,
    /// Seconds since the peer's fresh evidence was last accepted, when connected.
    pub attested_secs_ago: Option<u64>,
    /// Connected, and the peer's dataset catalog of this session has arrived: jobs over its
    /// data can be proposed.
    #[serde(default)]
    pub catalog: bool,
}

/// A request with the channel for its answer.
pub type AdminCall = (AdminRequest, oneshot::Sender<AdminResponse>);

/// Bind the socket (mode 0600; a stale socket file from a crash is replaced).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// What the admin socket needs of the node.
pub struct AdminService {
    pub ctx: Arc<NodeContext>,
    pub board: Arc<Board>,
    /// Requests that change the node, for the engine.
    pub calls: mpsc::Sender<AdminCall>,
    /// Told when an import installed a new dataset version (the engine announces it).
    pub catalog_changed: Arc<tokio::sync::Notify>,
    /// One import at a time: versions are numbered in order.
    pub imports: tokio::sync::Mutex<()>,
}

/// Serve requests until the listener fails.
pub async fn serve(listener: UnixListener, svc: Arc<AdminService>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let svc = svc.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, svc).await {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
}

async fn handle(stream: UnixStream, svc: Arc<AdminService>) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    // One connection carries a bounded amount of requests.
    let mut lines = BufReader::new(rd.take(MAX_REQUEST_LEN as u64 * 16)).lines();
    while let Some(line) = lines.next_line().await? {
        let resp = if line.len() > MAX_REQUEST_LEN {
            AdminResponse::Error {
                message: format!("request longer than {MAX_REQUEST_LEN} bytes"),
            }
        } else {
            match serde_json::from_str::<AdminRequest>(&line) {
                Ok(req) => svc.answer(req).await,
                Err(e) => AdminResponse::Error {
                    message: format!("malformed request: {e}"),
                },
            }
        };
        let mut out = encode(&resp);
        out.push(b'\n');
        wr.write_all(&out).await?;
    }
    Ok(())
}

impl AdminService {
    async fn answer(&self, req: AdminRequest) -> AdminResponse {
        let error = |e: &dyn std::fmt::Display| AdminResponse::Error {
            message: e.to_string(),
        };
        match req {
            AdminRequest::Status => AdminResponse::Status(Box::new(self.board.status(&self.ctx))),
            AdminRequest::Job { id } => match self.board.job(&id) {
                Some(v) => AdminResponse::Job(Box::new(v)),
                None => match self.ctx.journal.store.job_view(&id) {
                    Ok(Some(v)) => AdminResponse::Job(Box::new(v)),
                    Ok(None) => AdminResponse::NoSuchJob { id },
                    Err(e) => error(&e),
                },
            },
            AdminRequest::Jobs => {
                let mut jobs = self.board.jobs();
                match self.ctx.journal.store.job_views(LISTED_JOBS) {
                    Ok(old) => {
                        let live: std::collections::BTreeSet<JobId> =
                            jobs.iter().map(|v| v.spec.id).collect();
                        jobs.extend(old.into_iter().filter(|v| !live.contains(&v.spec.id)));
                    }
                    Err(e) => return error(&e),
                }
                jobs.sort_by_key(|v| std::cmp::Reverse(v.spec.created));
                AdminResponse::Jobs { jobs }
            }
            AdminRequest::Checkpoint { party } => match self.ctx.journal.held_head(&party) {
                Some(h) => AdminResponse::Checkpoint(Box::new(h)),
                None => AdminResponse::Error {
                    message: format!("this node holds no tree head of {party}"),
                },
            },
            AdminRequest::Import {
                dataset,
                schema,
                file,
            } => match self.import(dataset, *schema, file).await {
                Ok(meta) => AdminResponse::Imported {
                    meta: Box::new(meta),
                },
                Err(message) => AdminResponse::Error { message },
            },
            other => {
                let (tx, rx) = oneshot::channel();
                if self.calls.send((other, tx)).await.is_err() {
                    return AdminResponse::Error {
                        message: "the node is shutting down".into(),
                    };
                }
                rx.await.unwrap_or(AdminResponse::Error {
                    message: "the node is shutting down".into(),
                })
            }
        }
    }

    /// Validate and seal a CSV file as a new dataset version, then install it for the next
    /// job. Nothing is stored unless every row is valid.
    async fn import(
        &self,
        name: String,
        schema: crate::store::data::Schema,
        file: PathBuf,
    ) -> Result<crate::store::datasets::DatasetMeta, String> {
        if !file.is_absolute() {
            return Err(format!(
                "{}: the node reads the file itself, so give an absolute path",
                file.display()
            ));
        }
        let _one = self.imports.lock().await;
        let nothing = |e: &dyn std::fmt::Display| {
            format!("nothing was imported from {}: {e}", file.display())
        };
        let (n, f) = (name.clone(), file.clone());
        let mut ds = tokio::task::spawn_blocking(move || {
            crate::store::data::Dataset::load_csv(&n, schema, &f)
        })
        .await
        .map_err(|e| nothing(&e))?
        .map_err(|e| nothing(&e))?;
        crate::jobs::analytics::check_against_policy(&self.ctx.config, &ds)
            .map_err(|e| nothing(&e))?;
        let meta =
            crate::store::datasets::store(&self.ctx.keys.envelope, &self.ctx.journal, &mut ds)
                .await
                .map_err(|e| nothing(&e))?;
        tracing::info!(dataset = %meta.name, version = meta.version, rows = meta.rows, "dataset imported through the node");
        self.ctx.install_dataset(ds, meta.clone());
        self.catalog_changed.notify_one();
        Ok(meta)
    }
}

/// `parley job list` shows at most this many jobs of earlier runs.
const LISTED_JOBS: usize = 1000;

/// One response as a JSON line. A response that cannot be serialised is answered with an
/// error naming the failure, never with an empty line the client cannot read.
fn encode(resp: &AdminResponse) -> Vec<u8> {
    serde_json::to_vec(resp).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot serialise an admin response");
        let fallback = AdminResponse::Error {
            message: format!("the node could not encode its answer ({e}); see its log"),
        };
        serde_json::to_vec(&fallback).unwrap_or_else(|_| b"{}".to_vec())
    })
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminClientError {
    #[error("cannot connect to the node's admin socket {path}: {source} — is the node running?")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("admin socket {path}: {message}")]
    Protocol { path: String, message: String },
    #[error("admin socket {path}: no answer within {secs} s")]
    Timeout { path: String, secs: u64 },
}

/// Send one request to a node and wait for its answer.
pub async fn call(
    path: &Path,
    req: &AdminRequest,
    timeout: Duration,
) -> Result<AdminResponse, AdminClientError> {
    let p = path.display().to_string();
    let fut = async {
        let stream =
            UnixStream::connect(path)
                .await
                .map_err(|source| AdminClientError::Connect {
                    path: p.clone(),
                    source,
                })?;
        let (rd, mut wr) = stream.into_split();
        let proto = |e: &dyn std::fmt::Display| AdminClientError::Protocol {
            path: p.clone(),
            message: e.to_string(),
        };
        let mut line = serde_json::to_vec(req).map_err(|e| proto(&e))?;
        line.push(b'\n');
        wr.write_all(&line).await.map_err(|e| proto(&e))?;
        let mut lines = BufReader::new(rd).lines();
        let answer = lines
            .next_line()
            .await
            .map_err(|e| proto(&e))?
            .ok_or_else(|| proto(&"the node closed the connection"))?;
        serde_json::from_str(&answer).map_err(|e| proto(&e))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| AdminClientError::Timeout {
            path: p.clone(),
            secs: timeout.as_secs(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::job::{JobState, JobView};

    fn view(state: JobState) -> JobView {
        JobView {
            spec: crate::jobs::job::tests::spec(),
            state,
            approvals: vec!["hospital-a".into()],
            result: None,
            compute_ms: None,
            compute_us: None,
            commitments: Vec::new(),
            hash: "00".into(),
            awaiting_operator: true,
            verdicts: BTreeMap::new(),
        }
    }

    /// Every answer the socket sends is one JSON line the client reads back (an internally
    /// tagged enum cannot hold a bare list: `Jobs` once serialised to nothing).
    #[test]
    fn every_response_round_trips_as_one_line() {
        let answers = [
            AdminResponse::Jobs {
                jobs: vec![
                    view(JobState::Proposed),
                    view(JobState::Aborted("x".into())),
                ],
            },
            AdminResponse::Jobs { jobs: Vec::new() },
            AdminResponse::Job(Box::new(view(JobState::Done))),
            AdminResponse::NoSuchJob {
                id: crate::jobs::job::JobId([7; 16]),
            },
            AdminResponse::Submitted {
                id: crate::jobs::job::JobId([7; 16]),
            },
            AdminResponse::ShuttingDown,
            AdminResponse::Activated {
                epoch: 2,
                pending: true,
            },
            AdminResponse::Error {
                message: "m".into(),
            },
        ];
        for a in answers {
            let line = encode(&a);
            assert!(!line.contains(&b'\n'));
            let back: AdminResponse = serde_json::from_slice(&line).unwrap();
            assert_eq!(serde_json::to_vec(&back).unwrap(), line);
        }
    }
}
