//! The operator-only admin socket: a Unix socket (mode 0600 in the node's data directory)
//! carrying one JSON request and one JSON response per line. CLI commands and `parley demo`
//! talk to a running node through it; nothing else can reach it over the network.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::job::{JobId, JobKind, JobView};
use crate::status::{PeerCounters, VerdictRecord};

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
        security: crate::job::SecurityModel,
        #[serde(default)]
        bench: Option<crate::job::BenchSpec>,
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
    /// Every job this node knows in this run.
    Jobs,
    /// The latest signed tree head this node holds of `party`'s audit log.
    Checkpoint { party: String },
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
    Jobs(Vec<JobView>),
    Checkpoint(Box<crate::audit::SignedTreeHead>),
    /// The new epoch is active, or will be once running jobs finish (`pending`).
    Activated {
        epoch: u64,
        pending: bool,
    },
    Error {
        message: String,
    },
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

/// Serve requests until the listener fails or `calls` closes.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<AdminCall>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, calls).await {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
}

async fn handle(stream: UnixStream, calls: mpsc::Sender<AdminCall>) -> std::io::Result<()> {
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
                Ok(req) => {
                    let (tx, rx) = oneshot::channel();
                    if calls.send((req, tx)).await.is_err() {
                        AdminResponse::Error {
                            message: "the node is shutting down".into(),
                        }
                    } else {
                        rx.await.unwrap_or(AdminResponse::Error {
                            message: "the node is shutting down".into(),
                        })
                    }
                }
                Err(e) => AdminResponse::Error {
                    message: format!("malformed request: {e}"),
                },
            }
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        wr.write_all(&out).await?;
    }
    Ok(())
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
