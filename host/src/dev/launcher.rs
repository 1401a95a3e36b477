//! Starting and stopping `parley node` processes on this machine (the demo and the
//! integration tests). Children die with their parent (PR_SET_PDEATHSIG via
//! `--die-with-parent`) and are killed on drop, so none is left behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::admin::{self, AdminRequest, AdminResponse, NodeStatus};

/// A running node process.
pub struct NodeProcess {
    pub name: String,
    pub config: PathBuf,
    pub admin_socket: PathBuf,
    pub log: PathBuf,
    child: Child,
}

impl NodeProcess {
    /// Start `exe node --config CONFIG --die-with-parent`, logging JSON to `log`.
    pub fn spawn(
        exe: &Path,
        name: &str,
        config: &Path,
        data_dir: &Path,
        log: &Path,
    ) -> anyhow::Result<Self> {
        Self::spawn_with(exe, &[], name, config, data_dir, log)
    }

    /// [`NodeProcess::spawn`] with extra arguments after `node` (e.g. `recover`); the log
    /// is appended to, so a restarted node keeps its history.
    pub fn spawn_with(
        exe: &Path,
        extra: &[&str],
        name: &str,
        config: &Path,
        data_dir: &Path,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(exe)
            .arg("node")
            .args(extra)
            .arg("--config")
            .arg(config)
            .arg("--die-with-parent")
            .env("PARLEY_LOG", "json")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} for {name}", exe.display()))?;
        Ok(NodeProcess {
            name: name.to_owned(),
            config: config.to_owned(),
            admin_socket: data_dir.join("admin.sock"),
            log: log.to_owned(),
            child,
        })
    }

    /// Kill the process outright (SIGKILL): a crash, for tests.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// `Some(exit status)` once the process has exited.
    pub fn try_exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of the node's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub async fn request(&self, req: &AdminRequest) -> anyhow::Result<AdminResponse> {
        self.request_within(req, Duration::from_secs(10)).await
    }

    /// [`Self::request`] with a chosen timeout (a node busy with a large MPC batch answers
    /// its admin socket only between protocol steps).
    pub async fn request_within(
        &self,
        req: &AdminRequest,
        timeout: Duration,
    ) -> anyhow::Result<AdminResponse> {
        Ok(admin::call(&self.admin_socket, req, timeout).await?)
    }

    pub async fn status(&self) -> anyhow::Result<NodeStatus> {
        match self.request(&AdminRequest::Status).await? {
            AdminResponse::Status(s) => Ok(*s),
            other => anyhow::bail!("{}: {}", self.name, other.unexpected()),
        }
    }

    /// Stop gracefully: ask over the admin socket, then SIGTERM, then SIGKILL.
    pub async fn stop(&mut self, grace: Duration) {
        if self.try_exited().is_some() {
            return;
        }
        let _ = admin::call(
            &self.admin_socket,
            &AdminRequest::Shutdown,
            Duration::from_secs(2),
        )
        .await;
        if self.wait_for(grace).await {
            return;
        }
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if self.wait_for(grace).await {
            return;
        }
        let _ = self.child.kill().await;
    }

    async fn wait_for(&mut self, d: Duration) -> bool {
        tokio::time::timeout(d, self.child.wait()).await.is_ok()
    }
}

/// Wait until `check` holds for every node's status, failing early if a node exits.
pub async fn wait_until(
    nodes: &mut [NodeProcess],
    timeout: Duration,
    what: &str,
    check: impl Fn(&NodeStatus) -> bool,
) -> anyhow::Result<Vec<NodeStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        for n in nodes.iter_mut() {
            if let Some(st) = n.try_exited() {
                anyhow::bail!(
                    "node {} exited ({st}) while waiting for {what}; its log ends:\n{}",
                    n.name,
                    n.log_tail(15)
                );
            }
        }
        let mut all = Vec::new();
        for n in nodes.iter() {
            if let Ok(s) = n.status().await {
                all.push(s);
            }
        }
        if all.len() == nodes.len() && all.iter().all(&check) {
            return Ok(all);
        }
        if Instant::now() > deadline {
            let detail: Vec<String> = all
                .iter()
                .flat_map(|s| {
                    s.peers
                        .iter()
                        .filter(|(_, p)| !p.connected)
                        .map(move |(peer, p)| {
                            format!(
                                "{} → {peer}: {}",
                                s.party,
                                p.last_error
                                    .clone()
                                    .unwrap_or_else(|| "not connected".into())
                            )
                        })
                })
                .collect();
            anyhow::bail!(
                "timed out after {} s waiting for {what}: {}",
                timeout.as_secs(),
                detail.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every peer of this node is connected and has sent its dataset catalog.
pub fn all_connected(s: &NodeStatus) -> bool {
    s.peers.values().all(|p| p.connected && p.catalog)
}

/// Which nodes must hold a job, ended, before [`wait_job`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobReach {
    /// Every node: the job was agreed, so every node records how it ended.
    EveryNode,
    /// The proposer suffices: it may end a job (a refusal, a lost session) before some
    /// node ever heard of it.
    Proposer,
}

/// Poll every node until the job has ended everywhere `reach` asks for; each node's view,
/// `None` where the node never heard of the job. A proposal reaches peers a moment after
/// `Submit` answers, so "no such job" means "not yet" until the deadline; so does a node
/// too busy to answer its admin socket within `ask_within`.
pub async fn wait_job(
    nodes: &[NodeProcess],
    id: crate::jobs::job::JobId,
    reach: JobReach,
    timeout: Duration,
    ask_within: Duration,
) -> anyhow::Result<Vec<Option<crate::jobs::job::JobView>>> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut views = Vec::with_capacity(nodes.len());
        let mut busy = None;
        for n in nodes {
            match admin::call(&n.admin_socket, &AdminRequest::Job { id }, ask_within).await {
                Ok(AdminResponse::Job(v)) => views.push(Some(*v)),
                Ok(AdminResponse::NoSuchJob { .. }) => views.push(None),
                Ok(other) => {
                    anyhow::bail!("{}: about job {id}: {}", n.name, other.unexpected())
                }
                Err(e @ admin::AdminClientError::Timeout { .. }) => {
                    busy = Some(format!("{}: {e}", n.name));
                    views.push(None);
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("asking {} about job {id}", n.name));
                }
            }
        }
        let known: Vec<&crate::jobs::job::JobView> = views.iter().flatten().collect();
        let settled = busy.is_none()
            && !known.is_empty()
            && known.iter().all(|v| v.state.is_final())
            && match reach {
                JobReach::EveryNode => known.len() == nodes.len(),
                JobReach::Proposer => {
                    known.len() == nodes.len()
                        || nodes
                            .iter()
                            .zip(&views)
                            .any(|(n, v)| v.as_ref().is_some_and(|v| v.spec.proposer == n.name))
                }
            };
        if settled {
            return Ok(views);
        }
        if Instant::now() > deadline {
            let states: Vec<String> = nodes
                .iter()
                .zip(&views)
                .map(|(n, v)| match v {
                    Some(v) => format!("{}: {}", n.name, v.state),
                    None => format!("{}: unknown", n.name),
                })
                .collect();
            anyhow::bail!(
                "job {id} did not end within {} s ({}){}",
                timeout.as_secs(),
                states.join(", "),
                busy.map(|b| format!("; {b}")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
