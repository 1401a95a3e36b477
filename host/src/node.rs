//! `parley node`: assemble a node from its config and run it until shutdown.
//!
//! Start-up order: load and check the manifest and policy (the policy must be the one the
//! manifest pins for this party), open the keys, measure this executable, create a fresh TLS
//! key and its RA-TLS certificate, load the datasets, then listen, dial the parties with a
//! higher manifest index, and serve the admin socket. Shutdown (SIGTERM, SIGINT or an admin
//! request) aborts running jobs, writes `status.json` and logs the frame counters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use parley_attestation::appraise::Appraiser;
use parley_attestation::hexbytes::HexBytes;
use parley_attestation::policy::PolicyDoc;
use parley_attestation::ratls::{
    self, Gate1, OwnCertificate, PinnedParty, RaTlsVerifier, TlsBinding,
};
use parley_attestation::sim::SimEndorsement;
use parley_keys::Signer;
use parley_keys::local::{LocalKek, LocalSigner};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::{AttestationMode, NodeConfig};
use crate::data::{Dataset, builtin_schema};
use crate::engine::{Engine, Event, encode_i128};
use crate::job::{JobKind, JobSpec};
use crate::manifest::Manifest;
use crate::status::{Counters, PeerCounters, VerdictRecord, VerdictStore};
use crate::tee::{EvidenceSource, SimulatedTee};

/// Key labels: a sealed blob opens only for the purpose it was sealed for.
pub const IDENTITY_KEY_LABEL: &str = "identity-key";
pub const SIM_KEY_LABEL: &str = "simulation-key";
/// RA-TLS certificates live this long; a restart makes a new one.
const CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Everything the node's tasks share, fixed at start-up.
pub struct NodeContext {
    pub config: NodeConfig,
    pub manifest: Manifest,
    pub manifest_hash: [u8; 32],
    pub me: usize,
    pub measurement: [u8; 48],
    pub evidence_mode: &'static str,
    pub counters: Arc<Counters>,
    pub verdicts: Arc<VerdictStore>,
    pub client_config: Arc<rustls::ClientConfig>,
    pub server_config: Arc<rustls::ServerConfig>,
    pub datasets: BTreeMap<String, Dataset>,
    #[cfg(feature = "sim-cheat")]
    pub cheat: Option<crate::cheat::Cheat>,
    conn_ids: AtomicU64,
}

impl NodeContext {
    pub fn next_connection_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether this node can run `spec` at all (regardless of approval rules).
    pub fn check_job(&self, spec: &JobSpec) -> Result<(), String> {
        if spec.manifest_hash != self.manifest_hash {
            return Err("the job is for another federation manifest".into());
        }
        let me = &self.manifest.parties[self.me].name;
        let ds = self
            .datasets
            .get(&spec.dataset)
            .ok_or_else(|| format!("{me} has no dataset {:?}", spec.dataset))?;
        if spec.columns.is_empty() || spec.columns.len() > 64 {
            return Err("a summary-stats job names 1 to 64 columns".into());
        }
        for c in &spec.columns {
            if ds.schema.column_index(c).is_none() {
                return Err(format!(
                    "{me}'s dataset {:?} has no column {c:?}",
                    spec.dataset
                ));
            }
        }
        match spec.kind {
            JobKind::SummaryStats => Ok(()),
        }
    }

    /// This party's protocol inputs for `spec`: exact local aggregates, never rows.
    pub fn job_inputs(&self, spec: &JobSpec) -> Result<Vec<parley_enclave::field::M127>, String> {
        self.check_job(spec)?;
        let ds = &self.datasets[&spec.dataset];
        let mut v = Vec::with_capacity(3 * spec.columns.len());
        for c in &spec.columns {
            let idx = ds
                .schema
                .column_index(c)
                .ok_or_else(|| format!("no column {c:?}"))?;
            let m = ds.moments(idx).ok_or_else(|| format!("no column {c:?}"))?;
            v.extend([
                encode_i128(m.count),
                encode_i128(m.sum),
                encode_i128(m.sum_sq),
            ]);
        }
        Ok(v)
    }
}

/// What a node writes to `status.json` when it stops.
#[derive(Debug, Serialize)]
pub struct FinalStatus {
    pub party: String,
    pub counters: BTreeMap<String, PeerCounters>,
    pub verdicts: BTreeMap<String, VerdictRecord>,
    pub jobs: Vec<crate::job::JobView>,
}

/// Build the node's context: everything that can fail at start-up fails here, with the
/// file or party named.
pub fn prepare(config: NodeConfig) -> anyhow::Result<(Arc<NodeContext>, Arc<dyn EvidenceSource>)> {
    let manifest = Manifest::load(&config.manifest)?;
    let me = manifest.index_of(&config.party).with_context(|| {
        format!(
            "party {:?} (from the node config) is not in the manifest {}",
            config.party,
            config.manifest.display()
        )
    })?;
    let manifest_hash = manifest.hash();
    let policy_text = std::fs::read_to_string(&config.policy)
        .with_context(|| format!("cannot read policy {}", config.policy.display()))?;
    let policy = PolicyDoc::parse(&policy_text, &config.policy.display().to_string())?;
    let pinned = manifest.parties[me].policy_hash;
    if pinned.0 != policy.hash {
        bail!(
            "policy {} has hash {}, but the manifest pins {} for {}: use the policy every party agreed on, or publish a new manifest",
            config.policy.display(),
            policy.hash_hex(),
            pinned,
            config.party
        );
    }
    let kek = LocalKek::open(&config.keys.kek_file)?;
    let identity = LocalSigner::open(&kek, IDENTITY_KEY_LABEL, &config.keys.identity_key)?;
    if identity.public_key().as_bytes() != &manifest.parties[me].identity_key.0 {
        bail!(
            "the identity key in {} is {}, but the manifest pins {} for {}",
            config.keys.identity_key.display(),
            identity.public_key(),
            manifest.parties[me].identity_key,
            config.party
        );
    }
    #[cfg(feature = "sim-cheat")]
    let cheat = crate::cheat::parse(config.cheat.as_deref())?;
    #[cfg(not(feature = "sim-cheat"))]
    if config.cheat.is_some() {
        bail!(
            "this build has no sim-cheat feature: remove `cheat` from {}",
            config.party
        );
    }
    let measurement =
        crate::util::measure_self().context("cannot measure this executable (/proc/self/exe)")?;
    let source: Arc<dyn EvidenceSource> = match config.attestation.mode {
        AttestationMode::Simulated => {
            let key_path = config
                .attestation
                .sim_key
                .clone()
                .context("sim_key is missing")?;
            let end_path = config
                .attestation
                .sim_endorsement
                .clone()
                .context("sim_endorsement is missing")?;
            let sim_key = LocalSigner::open(&kek, SIM_KEY_LABEL, &key_path)?;
            let endorsement: SimEndorsement = serde_json::from_slice(
                &std::fs::read(&end_path)
                    .with_context(|| format!("cannot read {}", end_path.display()))?,
            )
            .with_context(|| format!("{} is not a simulation endorsement", end_path.display()))?;
            if endorsement.body.key.0 != *sim_key.public_key().as_bytes() {
                bail!(
                    "the endorsement {} is for another simulation key than {}",
                    end_path.display(),
                    key_path.display()
                );
            }
            Arc::new(SimulatedTee::new(
                sim_key,
                endorsement,
                measurement,
                config.attestation.simulated,
            ))
        }
    };

    // A fresh TLS key per start, bound to evidence and to the identity key.
    let tls_key = rcgen::KeyPair::generate().context("cannot generate the TLS key")?;
    let spki = ratls::spki_der(&tls_key);
    let report_data = ratls::gate1_report_data(&spki, &identity.public_key().fingerprint());
    let evidence = source.collect(&report_data)?;
    let now = time::OffsetDateTime::now_utc();
    // Backdate a little so peers with slightly slow clocks accept the certificate.
    let not_before = now - time::Duration::minutes(5);
    let not_after = now + CERT_LIFETIME;
    let binding = TlsBinding {
        party: config.party.clone(),
        spki_sha256: HexBytes(
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&spki)).into(),
        ),
        manifest_hash: HexBytes(manifest_hash),
        not_before: not_before.unix_timestamp(),
        not_after: not_after.unix_timestamp(),
    };
    let sig = identity.sign_now(&binding.to_be_signed());
    let ext = ratls::extension_value(&evidence, &binding, &sig.0);
    let cert = ratls::build_certificate(&tls_key, &config.party, ext, not_before, not_after)?;
    let own = OwnCertificate {
        cert,
        key: ratls::private_key_der(&tls_key),
    };

    let verdicts = Arc::new(VerdictStore::default());
    let gate1 = Arc::new(Gate1 {
        me: config.party.clone(),
        parties: manifest
            .parties
            .iter()
            .map(|p| PinnedParty {
                name: p.name.clone(),
                identity_key: p.identity_key,
            })
            .collect(),
        manifest_hash,
        appraiser: Appraiser::new(policy),
        sink: verdicts.clone(),
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = RaTlsVerifier::new(gate1, provider);
    let client_config = Arc::new(ratls::client_config(verifier.clone(), &own)?);
    let server_config = Arc::new(ratls::server_config(verifier, &own)?);

    let mut datasets = BTreeMap::new();
    for d in &config.datasets {
        let schema = builtin_schema(&d.schema).with_context(|| {
            format!(
                "dataset {:?}: unknown schema {:?} (built-in: patients)",
                d.name, d.schema
            )
        })?;
        let ds = Dataset::load_csv(&d.name, schema, &d.file)?;
        tracing::info!(dataset = %d.name, rows = ds.rows(), "dataset loaded");
        datasets.insert(d.name.clone(), ds);
    }
    let ctx = NodeContext {
        config,
        manifest,
        manifest_hash,
        me,
        measurement,
        evidence_mode: source.mode(),
        counters: Arc::new(Counters::default()),
        verdicts,
        client_config,
        server_config,
        datasets,
        #[cfg(feature = "sim-cheat")]
        cheat,
        conn_ids: AtomicU64::new(1),
    };
    Ok((Arc::new(ctx), source))
}

/// Run a node until `shutdown` completes or an admin request stops it.
pub async fn run(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (ctx, _source) = prepare(config)?;
    let me = &ctx.manifest.parties[ctx.me];
    let listen = ctx
        .config
        .listen
        .map(|a| a.to_string())
        .unwrap_or_else(|| me.address.clone());
    let listener = TcpListener::bind(&listen).await.with_context(|| {
        format!(
            "cannot listen on {listen} for {}: is another node using the port?",
            me.name
        )
    })?;
    let admin_path: PathBuf = ctx.config.admin_socket();
    let admin = crate::admin::bind(&admin_path)
        .with_context(|| format!("cannot create the admin socket {}", admin_path.display()))?;
    tracing::info!(
        party = %me.name,
        %listen,
        manifest = %hex::encode(ctx.manifest_hash),
        measurement = %hex::encode(ctx.measurement),
        mode = ctx.evidence_mode,
        "node started"
    );

    let (events_tx, events_rx) = mpsc::channel::<Event>(1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    let engine = Engine::new(ctx.clone(), stop_tx.clone());
    let engine_task = tokio::spawn(engine.run(events_rx));

    // Admin socket.
    let (calls_tx, mut calls_rx) = mpsc::channel(64);
    tokio::spawn(crate::admin::serve(admin, calls_tx));
    {
        let ev = events_tx.clone();
        tokio::spawn(async move {
            while let Some((req, reply)) = calls_rx.recv().await {
                if ev.send(Event::Admin(req, reply)).await.is_err() {
                    break;
                }
            }
        });
    }

    // Inbound sessions.
    {
        let ctx = ctx.clone();
        let ev = events_tx.clone();
        let stop = stop_rx.clone();
        let acceptor = TlsAcceptor::from(ctx.server_config.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (ctx, ev, stop, acceptor) =
                    (ctx.clone(), ev.clone(), stop.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match crate::session::accept(&ctx, &acceptor, tcp).await {
                        Ok((peer, tls)) => crate::session::run(ctx, peer, tls, ev, stop).await,
                        Err(e) => {
                            tracing::warn!(from = %addr, error = %e, "inbound session refused")
                        }
                    }
                });
            }
        });
    }

    // Outbound sessions to parties with a higher index, with backoff.
    for peer in (ctx.me + 1)..ctx.manifest.parties.len() {
        let (ctx, ev, mut stop) = (ctx.clone(), events_tx.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                if *stop.borrow() {
                    return;
                }
                match crate::session::dial(&ctx, peer).await {
                    Ok(tls) => {
                        backoff = Duration::from_millis(100);
                        crate::session::run(ctx.clone(), peer, tls, ev.clone(), stop.clone()).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "peer session not established");
                        let _ = ev
                            .send(Event::PeerError {
                                peer,
                                error: e.to_string(),
                            })
                            .await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = crate::util::stopped(&mut stop) => return,
                }
            }
        });
    }

    let mut stop_wait = stop_rx.clone();
    tokio::select! {
        _ = shutdown => tracing::info!("shutdown requested by signal"),
        _ = crate::util::stopped(&mut stop_wait) => tracing::info!("shutdown requested over the admin socket"),
    }
    let _ = stop_tx.send(true);
    // Let the engine tell peers about aborted jobs, then stop.
    let jobs = match tokio::time::timeout(Duration::from_secs(5), engine_task).await {
        Ok(Ok(jobs)) => jobs,
        _ => Vec::new(),
    };
    let status = FinalStatus {
        party: ctx.manifest.parties[ctx.me].name.clone(),
        counters: ctx.counters.snapshot(),
        verdicts: ctx.verdicts.snapshot(),
        jobs,
    };
    for (peer, c) in &status.counters {
        let s = c.sent_total();
        let r = c.received_total();
        tracing::info!(%peer, sent_frames = s.frames, sent_bytes = s.bytes, received_frames = r.frames, received_bytes = r.bytes, by_type = %serde_json::to_string(c).unwrap_or_default(), "frame counters");
    }
    let path = ctx.config.status_file();
    if let Err(e) = std::fs::write(
        &path,
        serde_json::to_vec_pretty(&status).unwrap_or_default(),
    ) {
        tracing::error!(path = %path.display(), error = %e, "cannot write the final status");
    }
    let _ = std::fs::remove_file(&admin_path);
    tracing::info!("node stopped");
    Ok(())
}
