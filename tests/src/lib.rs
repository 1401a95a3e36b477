//! Shared harness for Parley's cross-crate integration tests: a federation of real
//! `parley node` processes on 127.0.0.1, created in a temporary directory and stopped when
//! the [`Cluster`] is dropped (or the test process dies).
#![forbid(unsafe_code)]

pub mod keys_suite;
pub mod openbao;

use std::path::{Path, PathBuf};
use std::time::Duration;

use parley::admin::{AdminRequest, AdminResponse, NodeStatus};
use parley::dev::launcher::NodeProcess;
use parley::dev::setup::{Federation, Plan, free_ports};
use parley::jobs::job::{JobId, JobKind, JobView};

pub use parley::dev::demo::HOSPITALS;

/// The `parley` binary next to this test executable (target/debug/parley).
pub fn parley_bin() -> PathBuf {
    built_binary("parley", "cargo build -p parley")
}

/// Run `bin` with `args`; whether it succeeded, and its stdout followed by its stderr.
pub fn run(bin: &Path, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = std::process::Command::new(bin)
        .args(args)
        .output()
        .expect("run parley");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The `parley` binary built with the `sim-cheat` feature (target/debug/parley-sim-cheat).
/// `parley data import --config CONFIG --dataset DATASET --schema SCHEMA --file FILE`: a
/// new version of a dataset, through the node when one runs on that store. Returns whether
/// it succeeded and what it printed.
pub fn data_import(config: &Path, dataset: &str, schema: &str, file: &Path) -> (bool, String) {
    run(
        &parley_bin(),
        &[
            "data".as_ref(),
            "import".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--dataset".as_ref(),
            dataset.as_ref(),
            "--schema".as_ref(),
            schema.as_ref(),
            "--file".as_ref(),
            file.as_os_str(),
        ],
    )
}

pub fn parley_cheat_bin() -> PathBuf {
    built_binary(
        "parley-sim-cheat",
        "cargo build -p parley --features sim-cheat && cp target/debug/parley target/debug/parley-sim-cheat",
    )
}

/// `cargo test` does not build another package's binaries, so the README's test command
/// (tests/run.sh) builds them first; this refuses a missing or stale one.
fn built_binary(name: &str, how: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug/<name>
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("target dir");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: run `bash tests/run.sh`, or `{how}`",
                bin.display()
            )
        });
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["host/src", "attestation/src", "enclave/src", "keys/src"] {
        if let Some(newer) = newest_file(&root.join(dir)).filter(|(t, _)| *t > built) {
            panic!(
                "{} is older than {}: run `bash tests/run.sh`, or `{how}`",
                bin.display(),
                newer.1.display()
            );
        }
    }
    bin
}

fn newest_file(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let cand = if p.is_dir() {
            newest_file(&p)
        } else {
            e.metadata().ok()?.modified().ok().map(|t| (t, p))
        };
        if let Some(c) = cand
            && best.as_ref().is_none_or(|b| c.0 > b.0)
        {
            best = Some(c);
        }
    }
    best
}

/// A federation on disk, not yet started.
pub struct Setup {
    pub tmp: tempfile::TempDir,
    pub fed: Federation,
    pub bin: PathBuf,
}

impl Setup {
    /// Three hospitals with `rows` sample rows each; policies accept `bin`'s measurement.
    pub async fn new(rows: usize) -> Self {
        Self::with_binary(rows, parley_bin()).await
    }

    pub async fn with_binary(rows: usize, bin: PathBuf) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("parley-it-")
            .tempdir()
            .expect("tempdir");
        let ports = free_ports(3).expect("ports");
        let plan = Plan {
            dir: tmp.path().to_owned(),
            federation: "integration".into(),
            parties: HOSPITALS
                .iter()
                .zip(&ports)
                .map(|(n, p)| ((*n).to_owned(), format!("127.0.0.1:{p}")))
                .collect(),
            threshold: 1,
            rows,
            measurement: parley::util::measure_file(&bin).expect("measure binary"),
        };
        let fed = Federation::create(&plan).await.expect("create federation");
        Setup { tmp, fed, bin }
    }

    /// Start every node, each with the default binary unless `binary_for` names another.
    pub fn start(self, binary_for: &[(&str, PathBuf)]) -> Cluster {
        let all: Vec<String> = self.fed.parties.iter().map(|p| p.name.clone()).collect();
        let names: Vec<&str> = all.iter().map(String::as_str).collect();
        self.start_some(&names, binary_for)
    }

    /// Start only the named nodes.
    pub fn start_some(self, names: &[&str], binary_for: &[(&str, PathBuf)]) -> Cluster {
        let mut nodes = Vec::new();
        for p in self
            .fed
            .parties
            .iter()
            .filter(|p| names.contains(&p.name.as_str()))
        {
            let bin = binary_for
                .iter()
                .find(|(n, _)| *n == p.name)
                .map_or(self.bin.clone(), |(_, b)| b.clone());
            nodes.push(
                NodeProcess::spawn(&bin, &p.name, &p.config, &p.dir, &p.dir.join("node.log"))
                    .expect("spawn node"),
            );
        }
        Cluster { setup: self, nodes }
    }
}

/// Running nodes; stopped on drop.
pub struct Cluster {
    pub setup: Setup,
    pub nodes: Vec<NodeProcess>,
}

impl Cluster {
    pub fn node(&self, name: &str) -> &NodeProcess {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("node name")
    }

    pub async fn status(&self, name: &str) -> NodeStatus {
        self.node(name).status().await.expect("status")
    }

    /// Wait until `check` holds for the named node's status.
    pub async fn wait_for(
        &mut self,
        name: &str,
        what: &str,
        check: impl Fn(&NodeStatus) -> bool,
    ) -> NodeStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            for n in self.nodes.iter_mut() {
                if let Some(st) = n.try_exited() {
                    panic!(
                        "node {} exited ({st}) while waiting for {what}:\n{}",
                        n.name,
                        n.log_tail(20)
                    );
                }
            }
            if let Ok(s) = self.node(name).status().await
                && check(&s)
            {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what} on {name}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until every running node has a session with each of its peers.
    pub async fn all_connected(&mut self) {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for h in names {
            self.wait_for(
                &h,
                "all peers connected, with their catalogs",
                parley::dev::launcher::all_connected,
            )
            .await;
        }
    }

    /// Wait until `a` has a session with `b`.
    pub async fn wait_session(&mut self, a: &str, b: &str) {
        self.wait_for(a, &format!("a session with {b}"), |s| {
            s.peers.get(b).is_some_and(|p| p.connected)
        })
        .await;
    }

    /// Propose a summary job on `name`. A node that restarted a moment ago may still be
    /// reconnecting (the proposer's view of it lags by a keep-alive): "no attested session"
    /// and "has no dataset" are retried for a while; anything else is returned at once.
    pub async fn submit(&self, name: &str, columns: &[&str]) -> Result<JobId, String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_submit(name, columns).await {
                Err(e)
                    if (e.contains("no attested session") || e.contains("has no dataset"))
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// [`Self::submit`] once, without retrying (tests that expect a refusal).
    pub async fn try_submit(&self, name: &str, columns: &[&str]) -> Result<JobId, String> {
        let req = AdminRequest::Submit {
            kind: JobKind::SummaryStats,
            dataset: "patients".into(),
            columns: columns.iter().map(|s| (*s).to_owned()).collect(),
            security: parley::jobs::job::SecurityModel::Malicious,
            bench: None,
            recipients: Vec::new(),
            analytics: None,
        };
        match self.node(name).request(&req).await.expect("admin") {
            AdminResponse::Submitted { id } => Ok(id),
            AdminResponse::Error { message } => Err(message),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Wait until the job is final on every node.
    pub async fn wait_job(&self, id: JobId) -> Vec<JobView> {
        let views = parley::dev::launcher::wait_job(
            &self.nodes,
            id,
            parley::dev::launcher::JobReach::EveryNode,
            Duration::from_secs(60),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        views.into_iter().flatten().collect()
    }

    /// Stop every node gracefully and return each one's final `status.json`.
    pub async fn stop(mut self) -> Vec<serde_json::Value> {
        for n in self.nodes.iter_mut() {
            n.stop(Duration::from_secs(5)).await;
        }
        let started: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        self.setup
            .fed
            .parties
            .iter()
            .filter(|p| started.contains(&p.name))
            .map(|p| {
                let text = std::fs::read_to_string(p.dir.join("status.json"))
                    .expect("status.json written at shutdown");
                serde_json::from_str(&text).expect("status.json is JSON")
            })
            .collect()
    }
}

/// A copy of `bin` with bytes appended: another build, so another measurement.
pub fn modified_binary(bin: &Path, dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let out = dir.join("parley-modified");
    let mut bytes = std::fs::read(bin).expect("read binary");
    bytes.extend_from_slice(b"\0parley-modified-build\0");
    std::fs::write(&out, bytes).expect("write binary");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    out
}

/// An in-process copy of `party` built from its config and genuine keys (for tests that
/// make a legitimate node misbehave on the wire).
pub async fn in_process(setup: &Setup, party: &str) -> std::sync::Arc<parley::node::NodeContext> {
    let cfg = parley::config::NodeConfig::load(&setup.fed.party(party).unwrap().config).unwrap();
    // It runs as the build the other nodes run (its "measurement" is that binary's).
    let m = parley::util::measure_file(&setup.bin).unwrap();
    parley::node::prepare_measured(cfg, m)
        .await
        .expect("prepare in-process node")
}

/// A TLS connection from `ctx` to `target`, with `ctx`'s RA-TLS certificate and verifiers.
pub async fn connect(
    ctx: &parley::node::NodeContext,
    target: &str,
) -> Result<tokio_rustls::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let epoch = ctx.epoch();
    let addr = epoch
        .manifest
        .party(target)
        .expect("target party")
        .address
        .clone();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from(target.to_owned()).expect("server name");
    let tls = tokio_rustls::TlsConnector::from(epoch.client_config.clone())
        .connect(name, tcp)
        .await?;
    Ok(tokio_rustls::TlsStream::Client(tls))
}

impl Cluster {
    /// Send any admin request to a node.
    pub async fn admin(&self, name: &str, req: AdminRequest) -> AdminResponse {
        self.node(name).request(&req).await.expect("admin")
    }

    /// One job as a node sees it.
    /// `None` also while the node is too busy to answer within 10 s (a large MPC step).
    pub async fn job(&self, name: &str, id: JobId) -> Option<JobView> {
        match parley::admin::call(
            &self.node(name).admin_socket,
            &AdminRequest::Job { id },
            Duration::from_secs(10),
        )
        .await
        {
            Ok(AdminResponse::Job(v)) => Some(*v),
            Ok(_) | Err(parley::admin::AdminClientError::Timeout { .. }) => None,
            Err(e) => panic!("asking {name} about job {id}: {e}"),
        }
    }

    /// Wait until `check` holds for the job as `name` sees it.
    pub async fn wait_job_on(
        &self,
        name: &str,
        id: JobId,
        what: &str,
        check: impl Fn(&JobView) -> bool,
    ) -> JobView {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = self.job(name, id).await
                && check(&v)
            {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what} on {name}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run a `parley` CLI command; returns (success, stdout + stderr).
    pub fn cli(&self, args: &[&std::ffi::OsStr]) -> (bool, String) {
        run(&self.setup.bin, args)
    }

    /// Start `name` again (after a stop or kill), optionally in `recover` mode.
    pub fn restart(&mut self, name: &str, extra: &[&str]) {
        let p = self.setup.fed.party(name).unwrap().clone();
        let proc = NodeProcess::spawn_with(
            &self.setup.bin,
            extra,
            &p.name,
            &p.config,
            &p.dir,
            &p.dir.join("node.log"),
        )
        .unwrap();
        let i = self.nodes.iter().position(|n| n.name == name).unwrap();
        self.nodes[i] = proc;
    }

    pub fn node_mut(&mut self, name: &str) -> &mut NodeProcess {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .expect("node name")
    }
}

/// Complete gate 2 honestly as an in-process node over `tls` (we are the client).
pub async fn attach(
    ctx: &parley::node::NodeContext,
    peer: &str,
    tls: &mut tokio_rustls::TlsStream<tokio::net::TcpStream>,
) {
    use parley::peer::session;
    use parley::peer::wire::{Body, Hello};
    let e = ctx.epoch();
    let exporter = session::exporter(tls).unwrap();
    let hello = Body::Hello(Hello {
        party: e.my_name().to_owned(),
        manifest_hash: e.manifest_hash,
        unix_time: parley::util::unix_now(),
        nonce: session::nonce(),
    });
    session::send(ctx, peer, tls, &hello).await.unwrap();
    let their = match session::recv(ctx, peer, tls).await.unwrap() {
        Body::Hello(h) => h.nonce,
        other => panic!("{other:?}"),
    };
    let ev = session::answer(
        ctx,
        &e,
        parley_attestation::ratls::Role::Client,
        &exporter,
        &their,
    )
    .unwrap();
    session::send(
        ctx,
        peer,
        tls,
        &Body::Attest {
            evidence: ev.evidence,
            endorsements: ev.endorsements,
            unix_time: parley::util::unix_now(),
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        session::recv(ctx, peer, tls).await.unwrap(),
        Body::Attest { .. }
    ));
    session::send(ctx, peer, tls, &Body::Accept).await.unwrap();
    assert!(matches!(
        session::recv(ctx, peer, tls).await.unwrap(),
        Body::Accept
    ));
}
