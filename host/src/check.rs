//! `parley node check`: an operator's preflight. Runs everything a node does at start-up —
//! config, manifest and policy hash, key backend and identity key, evidence from this
//! platform, sealed datasets — without starting it and without touching the audit log or
//! the jobs, then checks what only shows once the node runs: the listen port, the data
//! directory's permissions, that this node's own evidence passes its own policy (peers
//! with the same policy would refuse it otherwise) and which peers answer on TCP.
//!
//! Failures name what to fix; warnings are printed but do not fail the check (a peer that
//! is not up yet is normal before a federation's first start).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use parley_attestation::ratls;

use crate::config::NodeConfig;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    Warn(String),
    Fail(String),
}

/// One line of the preflight report.
#[derive(Debug, Clone)]
pub struct Line {
    pub check: &'static str,
    pub outcome: Outcome,
}

impl Line {
    fn new(check: &'static str, outcome: Outcome) -> Self {
        Line { check, outcome }
    }
}

/// Run every check on `config`. Stops after the first failure that makes the later checks
/// meaningless (the node cannot be built); otherwise reports them all.
pub async fn run(config: NodeConfig, peer_timeout: Duration) -> Vec<Line> {
    let mut lines = Vec::new();
    // A running node owns its store and port: checking beside it would only report those
    // as taken (and a key rotation must not resume twice).
    if let Some(h) = crate::store::lock::StoreLock::holder(&config.data_dir) {
        lines.push(Line::new(
            "not running",
            Outcome::Fail(format!(
                "{h}: it holds the store; stop it first (`parley attest peers` and `parley audit checkpoint` inspect a running node)"
            )),
        ));
        return lines;
    }
    let admin = config.admin_socket();
    if admin.exists()
        && crate::admin::call(
            &admin,
            &crate::admin::AdminRequest::Status,
            Duration::from_secs(2),
        )
        .await
        .is_ok()
    {
        lines.push(Line::new(
            "not running",
            Outcome::Fail(format!(
                "a node answers on {}: stop it first (`parley attest peers` and `parley audit checkpoint` inspect a running node)",
                admin.display()
            )),
        ));
        return lines;
    }
    lines.push(Line::new("data directory", data_dir_permissions(&config)));
    let measurement = match crate::util::measure_self() {
        Ok(m) => m,
        Err(e) => {
            lines.push(Line::new(
                "measurement",
                Outcome::Fail(format!("cannot measure this executable: {e}")),
            ));
            return lines;
        }
    };
    let ctx = match crate::node::build_context(config, measurement, false).await {
        Ok(c) => c,
        Err(e) => {
            lines.push(Line::new("node start-up", Outcome::Fail(format!("{e:#}"))));
            return lines;
        }
    };
    let epoch = ctx.epoch();
    let me = &epoch.manifest.parties[epoch.me];
    lines.push(Line::new(
        "manifest and policy",
        Outcome::Ok(format!(
            "{} in federation {} (epoch {}, manifest {}…, {} parties, threshold {}); policy {}",
            me.name,
            epoch.manifest.federation,
            epoch.manifest.epoch,
            &hex::encode(epoch.manifest_hash)[..16],
            epoch.manifest.parties.len(),
            epoch.manifest.threshold,
            ctx.config.policy.display()
        )),
    ));
    lines.push(Line::new(
        "keys",
        Outcome::Ok(format!(
            "{} backend; identity key {} matches the manifest",
            match ctx.config.keys.backend {
                parley_keys::config::BackendKind::Local => "local",
                parley_keys::config::BackendKind::Vault => "vault",
            },
            ctx.identity.public_key()
        )),
    ));
    lines.push(Line::new("own evidence", own_evidence(&ctx)));
    let catalog = ctx.catalog();
    lines.push(Line::new(
        "datasets",
        if catalog.meta.is_empty() {
            Outcome::Warn("none imported yet (`parley data import`)".into())
        } else {
            Outcome::Ok(
                catalog
                    .meta
                    .values()
                    .map(|m| format!("{} v{} ({} rows)", m.name, m.version, m.rows))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        },
    ));
    let listen = ctx
        .config
        .listen
        .map(|a| a.to_string())
        .unwrap_or_else(|| me.address.clone());
    lines.push(Line::new(
        "listen address",
        match tokio::net::TcpListener::bind(&listen).await {
            Ok(_) => Outcome::Ok(format!("{listen} is free")),
            Err(e) => Outcome::Fail(format!(
                "cannot listen on {listen}: {e} — is another process using the port?"
            )),
        },
    ));
    for (i, p) in epoch.manifest.parties.iter().enumerate() {
        if i == epoch.me {
            continue;
        }
        let outcome =
            match tokio::time::timeout(peer_timeout, tokio::net::TcpStream::connect(&p.address))
                .await
            {
                Ok(Ok(_)) => Outcome::Ok(format!("{} answers at {}", p.name, p.address)),
                Ok(Err(e)) => Outcome::Warn(format!(
                    "cannot reach {} at {}: {e} — not started yet, or a firewall between you?",
                    p.name, p.address
                )),
                Err(_) => Outcome::Warn(format!(
                    "{} at {}: no answer within {} s — a firewall dropping packets?",
                    p.name,
                    p.address,
                    peer_timeout.as_secs()
                )),
            };
        lines.push(Line::new("peer", outcome));
    }
    lines
}

/// The store holds sealed keys and datasets: nobody but the node's user may list it.
fn data_dir_permissions(config: &NodeConfig) -> Outcome {
    match std::fs::metadata(&config.data_dir) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Outcome::Fail(format!(
            "{} is accessible to other users (mode {:o}): chmod 700 it",
            config.data_dir.display(),
            m.permissions().mode() & 0o777
        )),
        Ok(_) => Outcome::Ok(format!("{} (mode 700)", config.data_dir.display())),
        // The node creates it on first start.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Outcome::Warn(format!(
            "{} does not exist yet; the node creates it",
            config.data_dir.display()
        )),
        Err(e) => Outcome::Fail(format!("cannot read {}: {e}", config.data_dir.display())),
    }
}

/// Collect fresh evidence from this platform and appraise it under this node's own policy,
/// as a peer holding the same policy would at gate 1.
fn own_evidence(ctx: &crate::node::NodeContext) -> Outcome {
    let mut nonce = [0u8; 32];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).is_err() {
        return Outcome::Fail("the system random number generator failed".into());
    }
    let report_data = ratls::gate1_report_data(&nonce, &ctx.identity.public_key().fingerprint());
    let collected = match ctx.tee.collect(&report_data) {
        Ok(c) => c,
        Err(e) => return Outcome::Fail(format!("{} evidence: {e}", ctx.tee.mode())),
    };
    let epoch = ctx.epoch();
    let verdict = epoch.gate1.appraiser.appraise_endorsed(
        &collected.evidence,
        &collected.endorsements,
        Some(&report_data),
        crate::util::unix_now(),
    );
    let measurement = verdict
        .claims
        .get("measurement")
        .and_then(|m| m.as_str())
        .map(|m| format!(", measurement {}…", &m[..m.len().min(16)]))
        .unwrap_or_default();
    let summary = format!(
        "{} evidence{measurement}: {} under this node's policy",
        ctx.tee.mode(),
        verdict.summary()
    );
    if epoch.gate1.appraiser.accepts(&verdict) {
        Outcome::Ok(summary)
    } else {
        Outcome::Warn(format!(
            "{summary} — peers holding the same policy will refuse this node"
        ))
    }
}

/// Print the report; true when nothing failed.
pub fn print(lines: &[Line]) -> bool {
    let mut ok = true;
    for l in lines {
        let (tag, text) = match &l.outcome {
            Outcome::Ok(t) => ("ok  ", t),
            Outcome::Warn(t) => ("warn", t),
            Outcome::Fail(t) => {
                ok = false;
                ("FAIL", t)
            }
        };
        println!("{tag}  {:<20} {text}", l.check);
    }
    println!(
        "{}",
        if ok {
            "\nready to start: parley node --config …"
        } else {
            "\nnot ready: fix the FAIL lines above"
        }
    );
    ok
}
