//! `parley node`: assemble a node from its config and run it until shutdown.
//!
//! Start-up: load the manifest (every party must have signed it) and the policy (it must be
//! the one the manifest pins for this party), open the keys, measure this executable, load
//! the datasets, then build the first [`Epoch`]: a fresh TLS key and its RA-TLS certificate
//! bound to the manifest. Then listen, dial the parties with a higher manifest index, and
//! serve the admin socket. Shutdown (SIGTERM, SIGINT or an admin request) aborts running
//! jobs, writes `status.json` and logs the frame counters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use parley_attestation::appraise::Appraiser;
use parley_attestation::collateral::CollateralSet;
use parley_attestation::evidence::{EvidenceKind, Inputs};
use parley_attestation::hexbytes::HexBytes;
use parley_attestation::policy::PolicyDoc;
use parley_attestation::ratls::{
    self, Gate1, OwnCertificate, PinnedParty, RaTlsVerifier, TlsBinding,
};
use parley_attestation::sim::SimEndorsement;
use parley_keys::Signer;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::{AttestationMode, NodeConfig};
use crate::jobs::engine::Engine;
use crate::jobs::job::{JobKind, JobSpec};
use crate::jobs::programs::encode_i128;
use crate::jobs::{JobError, Version};
use crate::manifest::Manifest;
use crate::peer::Event;
use crate::peer::status::{Counters, PeerCounters, VerdictRecord, VerdictStore};
use crate::store::Store;
use crate::store::audit::Journal;
use crate::store::data::Dataset;
use crate::tee::{EvidenceSource, SimulatedTee, SnpTee, TdxTee};
use parley_enclave::field::M127;
use parley_enclave::secret::SecretVec;
use parley_keys::envelope::EnvelopeStore;
use parley_keys::signer::SealedSigner;
use parley_keys::store::BlobId;

/// The blob holding the node's simulation key (simulation mode only).
pub const SIM_KEY_BLOB: &str = "simulation/key";
/// RA-TLS certificates live this long; they are renewed after two thirds of it.
pub const CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Everything that changes together when the federation switches epochs (or the TLS
/// certificate is renewed): the manifest, this node's policy, and the TLS key and
/// certificate bound to them.
pub struct Epoch {
    pub manifest: Manifest,
    pub manifest_hash: [u8; 32],
    pub me: usize,
    pub gate1: Arc<Gate1>,
    pub client_config: Arc<rustls::ClientConfig>,
    pub server_config: Arc<rustls::ServerConfig>,
    /// SHA-256 of this certificate's SubjectPublicKeyInfo (gate-2 report data).
    pub own_spki_sha256: [u8; 32],
    /// Unix seconds.
    pub cert_not_after: i64,
}

impl Epoch {
    pub fn name(&self, party: usize) -> &str {
        &self.manifest.parties[party].name
    }
    pub fn my_name(&self) -> &str {
        self.name(self.me)
    }
    pub fn policy(&self) -> &PolicyDoc {
        self.gate1.appraiser.policy()
    }
}

/// Why a node cannot be built or run. Each message says which file, key or step failed
/// and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node's files disagree with each other or with the manifest.
    #[error("{0}")]
    Setup(String),
    /// A step of building or running the node failed (the cause's text is part of the
    /// message, so it is not repeated as a source).
    #[error("{what}: {cause}")]
    Step {
        what: String,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Lock(#[from] crate::store::lock::LockError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Dataset(#[from] crate::store::datasets::DatasetError),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error(transparent)]
    Policy(#[from] parley_attestation::policy::PolicyError),
    #[error(transparent)]
    Keys(#[from] parley_keys::KeyError),
    #[error(transparent)]
    RaTls(#[from] parley_attestation::ratls::RaTlsError),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Name the step an error comes from ([`NodeError::Step`]).
trait Step<T> {
    fn step(self, what: &str) -> Result<T, NodeError>;
    fn step_with(self, what: impl FnOnce() -> String) -> Result<T, NodeError>;
}

impl<T, E: Into<Box<dyn std::error::Error + Send + Sync>>> Step<T> for Result<T, E> {
    fn step(self, what: &str) -> Result<T, NodeError> {
        self.step_with(|| what.to_owned())
    }
    fn step_with(self, what: impl FnOnce() -> String) -> Result<T, NodeError> {
        self.map_err(|e| NodeError::Step {
            what: what(),
            cause: e.into(),
        })
    }
}

impl<T> Step<T> for Option<T> {
    fn step(self, what: &str) -> Result<T, NodeError> {
        self.ok_or_else(|| NodeError::Setup(what.to_owned()))
    }
    fn step_with(self, what: impl FnOnce() -> String) -> Result<T, NodeError> {
        self.ok_or_else(|| NodeError::Setup(what()))
    }
}

/// The datasets a node holds (unsealed) and their metadata, as of one moment: a hot import
/// installs a new catalog; a job keeps the one it started with.
#[derive(Default)]
pub struct Catalog {
    pub datasets: BTreeMap<String, Arc<Dataset>>,
    pub meta: BTreeMap<String, crate::store::datasets::DatasetMeta>,
}

impl Catalog {
    /// This node's version of `dataset`, if it holds it.
    pub fn version(&self, dataset: &str) -> Option<u64> {
        self.meta.get(dataset).map(|m| m.version)
    }

    /// The dataset `spec` names, whatever its version (`me` names this party in a refusal).
    pub fn named(&self, spec: &JobSpec, me: &str) -> Result<&Arc<Dataset>, JobError> {
        self.datasets
            .get(&spec.dataset)
            .ok_or_else(|| JobError::NoDataset {
                party: me.to_owned(),
                dataset: spec.dataset.clone(),
            })
    }

    /// The dataset a job computes on: the version named in its proposal for `me`, which
    /// every party approved. A newer import since then refuses the job (propose it again).
    pub fn for_job(&self, spec: &JobSpec, me: &str) -> Result<&Arc<Dataset>, JobError> {
        let ds = self.named(spec, me)?;
        let approved = spec.dataset_versions.get(me).copied();
        let now = self.version(&spec.dataset);
        if approved != now {
            return Err(JobError::VersionChanged {
                party: me.to_owned(),
                dataset: spec.dataset.clone(),
                now: Version(now),
                approved: Version(approved),
            });
        }
        Ok(ds)
    }
}

/// Everything the node's tasks share.
pub struct NodeContext {
    pub config: NodeConfig,
    pub measurement: [u8; 48],
    pub evidence_kind: EvidenceKind,
    pub counters: Arc<Counters>,
    pub verdicts: Arc<VerdictStore>,
    /// The datasets this node holds, replaced as a whole by a hot import.
    catalog: RwLock<Arc<Catalog>>,
    pub identity: Arc<dyn Signer>,
    pub tee: Arc<dyn EvidenceSource>,
    pub journal: Arc<Journal>,
    pub keys: Arc<NodeKeys>,
    /// `parley node recover`: rebuild the log and ledger from peer-held tree heads.
    pub recover: bool,
    #[cfg(feature = "sim-cheat")]
    pub cheat: Option<crate::dev::cheat::Cheat>,
    epoch: RwLock<Arc<Epoch>>,
    /// Bumped whenever the epoch changes, so dialers can follow.
    epoch_version: watch::Sender<u64>,
    conn_ids: AtomicU64,
}

impl NodeContext {
    pub fn epoch(&self) -> Arc<Epoch> {
        self.epoch.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The datasets as of now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Install a newly imported dataset version (the import has already sealed and
    /// recorded it); jobs that started before keep the version they started with.
    pub fn install_dataset(&self, ds: Dataset, meta: crate::store::datasets::DatasetMeta) {
        let mut slot = self.catalog.write().unwrap_or_else(|p| p.into_inner());
        let mut next = Catalog {
            datasets: slot.datasets.clone(),
            meta: slot.meta.clone(),
        };
        next.datasets.insert(meta.name.clone(), Arc::new(ds));
        next.meta.insert(meta.name.clone(), meta);
        *slot = Arc::new(next);
    }

    /// Install a new epoch; `membership_changed` tells dialers to re-read the party list.
    pub fn install_epoch(&self, e: Epoch) {
        *self.epoch.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(e);
        self.epoch_version.send_modify(|v| *v += 1);
    }

    pub fn watch_epochs(&self) -> watch::Receiver<u64> {
        self.epoch_version.subscribe()
    }

    pub fn next_connection_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// This node's clock, as it reports it to peers (a `sim-cheat` node may lie).
    pub fn reported_time(&self) -> i64 {
        #[cfg(feature = "sim-cheat")]
        if let Some(crate::dev::cheat::Cheat::ClockSkew(s)) = self.cheat {
            return crate::util::unix_now() + s;
        }
        crate::util::unix_now()
    }

    /// Whether this node can run `spec` at all (regardless of approval rules).
    pub fn check_job(&self, epoch: &Epoch, spec: &JobSpec) -> Result<(), JobError> {
        if spec.manifest_hash != epoch.manifest_hash {
            return Err(JobError::OtherManifest);
        }
        let me = epoch.my_name();
        for r in &spec.recipients {
            if epoch.manifest.index_of(r).is_none() {
                return Err(JobError::UnknownRecipient(r.clone()));
            }
        }
        match spec.kind {
            JobKind::Analytics => crate::jobs::analytics::check(self, epoch, spec),
            JobKind::SummaryStats => {
                if spec.security != crate::jobs::job::SecurityModel::Malicious {
                    return Err(JobError::Spec(
                        "summary-stats is an exact release: it runs only under the malicious security model (drop --security semi-honest)".into(),
                    ));
                }
                // An exact release of the whole dataset: the privacy rule needs the owner's
                // min_k.
                let policy = crate::jobs::analytics::release_policy(self, me, &spec.dataset)?;
                if policy.min_k.is_none() {
                    return Err(JobError::Policy {
                        party: me.to_owned(),
                        reason: format!(
                            "summary-stats is an exact release and dataset {:?} has no min_k in its release policy: its owner sets min_k",
                            spec.dataset
                        ),
                    });
                }
                // The exact count, mean and variance of a whole column: only of a column a
                // declared view releases exactly with its variance (the view's margin).
                use parley_enclave::analytics::spec::KindName;
                if let Some(c) = spec.columns.iter().find(|c| {
                    !policy.views.iter().any(|v| {
                        v.column.as_deref() == Some(c.as_str())
                            && v.kinds.contains(&KindName::Variance)
                    })
                }) {
                    return Err(JobError::Policy {
                        party: me.to_owned(),
                        reason: format!(
                            "summary-stats releases the exact count, mean and variance of {c:?}, and dataset {:?} declares no exact view of {c:?} with variance: ask its owner to declare one, or use an analytics job with DP",
                            spec.dataset
                        ),
                    });
                }
                let catalog = self.catalog();
                let ds = catalog.named(spec, me)?;
                if spec.columns.is_empty() || spec.columns.len() > 64 {
                    return Err(JobError::Spec(
                        "a summary-stats job names 1 to 64 columns".into(),
                    ));
                }
                for c in &spec.columns {
                    if ds.schema.column_index(c).is_none() {
                        return Err(JobError::NoColumn {
                            party: me.to_owned(),
                            dataset: spec.dataset.clone(),
                            column: c.clone(),
                        });
                    }
                }
                Ok(())
            }
            JobKind::BenchMul => {
                let b = spec.bench.ok_or_else(|| {
                    JobError::Spec("a bench-mul job needs bench parameters".into())
                })?;
                crate::jobs::programs::build(
                    spec,
                    epoch.manifest.parties.len(),
                    epoch.manifest.threshold,
                    parley_enclave::program::Recipients::All,
                )
                .map_err(|e| JobError::Program(e.to_string()))?;
                if b.size > crate::jobs::programs::MAX_BENCH_SIZE {
                    return Err(JobError::Spec("bench size too large".into()));
                }
                Ok(())
            }
        }
    }

    /// This party's protocol inputs for `spec`: exact local aggregates (never rows), or
    /// synthetic benchmark vectors.
    pub fn job_inputs(
        &self,
        epoch: &Epoch,
        spec: &JobSpec,
        keep: Option<&[bool]>,
    ) -> Result<Vec<SecretVec<M127>>, JobError> {
        self.check_job(epoch, spec)?;
        match spec.kind {
            JobKind::Analytics => Err(JobError::Spec(
                "an analytics job's inputs come from its plan".into(),
            )),
            JobKind::BenchMul => {
                let b = spec.bench.ok_or_else(|| {
                    JobError::Spec("a bench-mul job needs bench parameters".into())
                })?;
                Ok(crate::jobs::programs::bench_inputs(epoch.me, b))
            }
            JobKind::SummaryStats => {
                let catalog = self.catalog();
                let me = epoch.my_name();
                let ds = catalog.for_job(spec, me)?;
                let no_column = |c: &String| JobError::NoColumn {
                    party: me.to_owned(),
                    dataset: spec.dataset.clone(),
                    column: c.clone(),
                };
                let mut v = Vec::with_capacity(3 * spec.columns.len());
                for c in &spec.columns {
                    let idx = ds.schema.column_index(c).ok_or_else(|| no_column(c))?;
                    let m = ds.moments(idx).ok_or_else(|| no_column(c))?;
                    v.extend([
                        encode_i128(m.count),
                        encode_i128(m.sum),
                        encode_i128(m.sum_sq),
                    ]);
                }
                // The privacy rule's keep bit of the one cell (fail closed: none, not kept).
                let kept = keep.and_then(|k| k.first().copied()).unwrap_or(false);
                v.push(encode_i128(i128::from(kept)));
                Ok(vec![SecretVec::new(v)])
            }
        }
    }

    /// Load and check the manifest and policy the config names: every party signed the
    /// manifest, this party is in it, and the policy is the one it pins for this party.
    pub fn load_federation(config: &NodeConfig) -> Result<(Manifest, PolicyDoc), NodeError> {
        let manifest = Manifest::load(&config.manifest)?;
        manifest.verify_signatures().map_err(|e| {
            NodeError::Setup(format!("manifest {}: {e}", config.manifest.display()))
        })?;
        let me = manifest.index_of(&config.party).step_with(|| {
            format!(
                "party {:?} (from the node config) is not in the manifest {}",
                config.party,
                config.manifest.display()
            )
        })?;
        let policy_text = std::fs::read_to_string(&config.policy)
            .step_with(|| format!("cannot read policy {}", config.policy.display()))?;
        let policy = PolicyDoc::parse(&policy_text, &config.policy.display().to_string())?;
        let pinned = manifest.parties[me].policy_hash;
        if pinned.0 != policy.hash {
            return Err(NodeError::Setup(format!(
                "policy {} has hash {}, but the manifest pins {} for {}: use the policy every party agreed on, or publish a new manifest epoch",
                config.policy.display(),
                policy.hash_hex(),
                pinned,
                config.party
            )));
        }
        Ok((manifest, policy))
    }

    /// Build an epoch for this node (see [`build_epoch`]).
    pub async fn build_epoch(
        &self,
        manifest: Manifest,
        policy: PolicyDoc,
    ) -> Result<Epoch, NodeError> {
        build_epoch(
            &self.config.party,
            self.identity.as_ref(),
            self.tee.as_ref(),
            self.verdicts.clone(),
            manifest,
            policy,
            self.config.attestation.collateral.as_deref(),
        )
        .await
    }
}

fn tsm_root(config: &NodeConfig) -> PathBuf {
    config
        .attestation
        .tsm_root
        .clone()
        .unwrap_or_else(|| PathBuf::from(parley_attestation::collect::DEFAULT_TSM_REPORT_ROOT))
}

/// The pinned vendor roots plus what a collateral cache holds.
pub fn appraisal_inputs(collateral: Option<&Path>) -> Result<Inputs, NodeError> {
    let mut inputs = Inputs::default();
    if let Some(dir) = collateral {
        let set = CollateralSet::load(dir).step_with(|| {
            format!(
                "cannot read the collateral cache {} ([attestation] collateral; fill it with `parley collateral fetch`)",
                dir.display()
            )
        })?;
        inputs.snp = set.snp;
        inputs.tdx = set.tdx;
    }
    Ok(inputs)
}

/// Build an epoch: a fresh TLS key, evidence binding it to our identity, and a certificate
/// bound to `manifest`, with verifiers appraising peers against `policy` with the pinned
/// roots and the collateral cache.
pub async fn build_epoch(
    party: &str,
    identity: &dyn Signer,
    tee: &dyn EvidenceSource,
    verdicts: Arc<VerdictStore>,
    manifest: Manifest,
    policy: PolicyDoc,
    collateral: Option<&Path>,
) -> Result<Epoch, NodeError> {
    let inputs = appraisal_inputs(collateral)?;
    let me = manifest
        .index_of(party)
        .step("this party is not in the manifest")?;
    if identity.public_key().as_bytes() != &manifest.parties[me].identity_key.0 {
        return Err(NodeError::Setup(format!(
            "this node's identity key is {}, but the manifest pins {} for {party}",
            identity.public_key(),
            manifest.parties[me].identity_key,
        )));
    }
    let manifest_hash = manifest.hash();
    let tls_key = rcgen::KeyPair::generate().step("cannot generate the TLS key")?;
    let spki = ratls::spki_der(&tls_key);
    let report_data = ratls::gate1_report_data(&spki, &identity.public_key().fingerprint());
    let collected = tee.collect(&report_data).step_with(|| {
        format!(
            "this node is configured for {} evidence ([attestation] mode); use mode = \"simulated\" outside a confidential VM",
            tee.mode()
        )
    })?;
    let now = time::OffsetDateTime::now_utc();
    // Backdated a little so peers with slightly slow clocks accept the certificate.
    let not_before = now - time::Duration::minutes(5);
    let not_after = now + CERT_LIFETIME;
    let own_spki_sha256: [u8; 32] = Sha256::digest(&spki).into();
    let binding = TlsBinding {
        party: party.to_owned(),
        spki_sha256: HexBytes(own_spki_sha256),
        manifest_hash: HexBytes(manifest_hash),
        not_before: not_before.unix_timestamp(),
        not_after: not_after.unix_timestamp(),
    };
    let sig = identity.sign(&binding.to_be_signed()).await?;
    let ext = ratls::extension_value(
        &collected.evidence,
        &collected.endorsements,
        &binding,
        &sig.0,
    );
    let cert = ratls::build_certificate(&tls_key, party, ext, not_before, not_after)?;
    let own = OwnCertificate {
        cert,
        key: ratls::private_key_der(&tls_key),
    };
    let gate1 = Arc::new(Gate1 {
        me: party.to_owned(),
        parties: manifest
            .parties
            .iter()
            .map(|p| PinnedParty {
                name: p.name.clone(),
                identity_key: p.identity_key,
            })
            .collect(),
        manifest_hash,
        appraiser: Appraiser::with_inputs(policy, inputs),
        sink: verdicts,
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = RaTlsVerifier::new(gate1.clone(), provider);
    Ok(Epoch {
        client_config: Arc::new(ratls::client_config(verifier.clone(), &own)?),
        server_config: Arc::new(ratls::server_config(verifier, &own)?),
        manifest,
        manifest_hash,
        me,
        gate1,
        own_spki_sha256,
        cert_not_after: not_after.unix_timestamp(),
    })
}

/// What a node writes to `status.json` when it stops.
#[derive(Debug, Serialize)]
pub struct FinalStatus {
    pub party: String,
    pub counters: BTreeMap<String, PeerCounters>,
    pub verdicts: Vec<(String, VerdictRecord)>,
    pub jobs: Vec<crate::jobs::job::JobView>,
}

/// Build the node: everything that can fail at start-up fails here, naming the file or party.
pub async fn prepare(config: NodeConfig) -> Result<Arc<NodeContext>, NodeError> {
    let measurement =
        crate::util::measure_self().step("cannot measure this executable (/proc/self/exe)")?;
    prepare_measured(config, measurement).await
}

/// [`prepare`] with the simulated launch measurement given rather than measured: lets a test
/// process act as a node running a given `parley` build. Real TEEs measure themselves.
pub async fn prepare_measured(
    config: NodeConfig,
    measurement: [u8; 48],
) -> Result<Arc<NodeContext>, NodeError> {
    let ctx = build_context(config, measurement, true).await?;
    abort_interrupted_jobs(&ctx.journal)?;
    ctx.journal.record(
        "node-start",
        serde_json::json!({
            "party": ctx.config.party,
            "measurement": hex::encode(measurement),
            "manifest": hex::encode(ctx.epoch().manifest_hash),
            "epoch": ctx.epoch().manifest.epoch,
            "mode": ctx.evidence_kind.as_str(),
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )?;
    Ok(Arc::new(ctx))
}

/// Everything [`prepare_measured`] does except what marks a start on the audit log (used
/// by `parley node check`, which must leave the log and the jobs alone, and passes
/// `finish_rotations = false` so a due key rotation waits for the node itself).
pub async fn build_context(
    config: NodeConfig,
    measurement: [u8; 48],
    finish_rotations: bool,
) -> Result<NodeContext, NodeError> {
    let (manifest, policy) = NodeContext::load_federation(&config)?;
    #[cfg(feature = "sim-cheat")]
    let cheat = crate::dev::cheat::parse(config.cheat.as_deref())
        .map_err(|e| NodeError::Setup(format!("{e:#}")))?;
    // Deviations exist to demonstrate the checks; never on hardware-attested evidence.
    #[cfg(feature = "sim-cheat")]
    if cheat.is_some() && config.attestation.mode != AttestationMode::Simulated {
        return Err(NodeError::Setup(
            "`cheat` is only allowed in a federation that runs on simulated evidence".into(),
        ));
    }
    #[cfg(not(feature = "sim-cheat"))]
    if config.cheat.is_some() {
        return Err(NodeError::Setup(format!(
            "this build has no sim-cheat feature: remove `cheat` from the config of {}",
            config.party
        )));
    }
    // The node is its store's one writer: the lock comes before anything is written.
    let keys = if finish_rotations {
        let lock = crate::store::lock::StoreLock::acquire(
            &config.data_dir,
            crate::store::lock::NODE,
            "a second `parley node` on this store is refused",
            "stop the running node first; `parley job`, `parley data import` and `parley status` reach it through its admin socket",
        )?;
        NodeKeys::open_inner(&config, true, Some(lock)).await?
    } else {
        NodeKeys::open_with(&config, false).await?
    };
    let journal = keys.journal.clone();
    let (tee, evidence_kind): (Arc<dyn EvidenceSource>, EvidenceKind) =
        match config.attestation.mode {
            AttestationMode::Simulated => {
                let end_path = config
                    .attestation
                    .sim_endorsement
                    .clone()
                    .step("sim_endorsement is missing")?;
                let sim_key = SealedSigner::open(&keys.envelope, &BlobId::new(SIM_KEY_BLOB)?)
                    .await
                    .step_with(|| {
                        format!(
                            "cannot open the simulation key in {}",
                            config.store_path().display()
                        )
                    })?;
                let endorsement: SimEndorsement = serde_json::from_slice(
                    &std::fs::read(&end_path)
                        .step_with(|| format!("cannot read {}", end_path.display()))?,
                )
                .step_with(|| format!("{} is not a simulation endorsement", end_path.display()))?;
                if endorsement.body.key.0 != *Signer::public_key(&sim_key).as_bytes() {
                    return Err(NodeError::Setup(format!(
                        "the endorsement {} is for another simulation key than the node's",
                        end_path.display()
                    )));
                }
                (
                    Arc::new(SimulatedTee::new(
                        sim_key,
                        endorsement,
                        measurement,
                        config.attestation.simulated,
                    )),
                    EvidenceKind::Sim,
                )
            }
            AttestationMode::Snp => (
                Arc::new(SnpTee {
                    tsm_root: tsm_root(&config),
                    vmpl: config.attestation.vmpl,
                }),
                EvidenceKind::Snp,
            ),
            AttestationMode::Tdx => (
                Arc::new(TdxTee {
                    tsm_root: tsm_root(&config),
                }),
                EvidenceKind::Tdx,
            ),
        };
    let mut catalog = Catalog::default();
    for (name, (meta, ds)) in crate::store::datasets::load_all(&keys.envelope, &journal).await? {
        tracing::info!(dataset = %name, version = meta.version, rows = ds.rows(), "dataset unsealed");
        crate::jobs::analytics::check_against_policy(&config, &ds).map_err(NodeError::Setup)?;
        catalog.datasets.insert(name.clone(), Arc::new(ds));
        catalog.meta.insert(name, meta);
    }
    let verdicts = Arc::new(VerdictStore::new(Some(journal.clone())));
    let first = build_epoch(
        &config.party,
        keys.identity.as_ref(),
        tee.as_ref(),
        verdicts.clone(),
        manifest,
        policy,
        config.attestation.collateral.as_deref(),
    )
    .await?;
    let (epoch_version, _) = watch::channel(0);
    let ctx = NodeContext {
        config,
        measurement,
        evidence_kind,
        counters: Arc::new(Counters::default()),
        verdicts,
        catalog: RwLock::new(Arc::new(catalog)),
        identity: keys.identity.clone(),
        tee,
        journal,
        keys: Arc::new(keys),
        recover: false,
        #[cfg(feature = "sim-cheat")]
        cheat,
        epoch: RwLock::new(Arc::new(first)),
        epoch_version,
        conn_ids: AtomicU64::new(1),
    };
    Ok(ctx)
}

/// The node's store, key backend, envelope encryption and identity signer.
pub struct NodeKeys {
    pub store: Arc<Store>,
    pub journal: Arc<Journal>,
    pub opened: parley_keys::config::OpenedBackend,
    pub envelope: EnvelopeStore,
    pub identity: Arc<dyn Signer>,
    /// The store's writer lock, held while these keys are open for writing.
    pub lock: Option<crate::store::lock::StoreLock>,
}

impl NodeKeys {
    /// Open the store and the key backend, finish an interrupted key rotation, and open
    /// (or, on first start, create) the identity key.
    pub async fn open(config: &NodeConfig) -> Result<Self, NodeError> {
        Self::open_with(config, true).await
    }

    /// [`Self::open`]; `finish_rotations = false` leaves a due or interrupted rotation (and
    /// its audit entry) to the next [`Self::open`] (blobs open in either generation).
    pub async fn open_with(config: &NodeConfig, finish_rotations: bool) -> Result<Self, NodeError> {
        // Opening for writing takes the store's lock: never beside a running node.
        let lock = if finish_rotations {
            Some(crate::store::lock::StoreLock::acquire(
                &config.data_dir,
                "a parley command that writes the store",
                "this command changes the store and is refused beside it",
                "run it through the node (`parley data import` does) or stop the node first",
            )?)
        } else {
            None
        };
        Self::open_inner(config, finish_rotations, lock).await
    }

    async fn open_inner(
        config: &NodeConfig,
        finish_rotations: bool,
        lock: Option<crate::store::lock::StoreLock>,
    ) -> Result<Self, NodeError> {
        let store = Arc::new(Store::open(&config.store_path())?);
        let journal = Arc::new(Journal::open(store.clone(), &config.party)?);
        let opened = parley_keys::config::open_backend(&config.keys, &config.data_dir, true)
            .step_with(|| format!("cannot open the key backend of {}", config.party))?;
        let envelope = EnvelopeStore::new(opened.backend.clone(), store.clone());
        // A rotation that was killed mid-way resumes here, before anything reads a blob.
        let due = if finish_rotations {
            envelope
                .run_schedule(&config.keys.rotation, crate::util::unix_now().max(0) as u64)
                .await
                .step("cannot finish the scheduled key rotation")?
        } else {
            Vec::new()
        };
        if !due.is_empty() {
            journal.record(
                "key-rotation",
                serde_json::json!({ "done": due.iter().map(ToString::to_string).collect::<Vec<_>>(), "by": "schedule" }),
            )?;
        }
        let identity: Arc<dyn Signer> = Arc::from(
            parley_keys::config::open_signer(&config.keys, &envelope, &opened)
                .await
                .step("cannot open the identity key")?,
        );
        Ok(NodeKeys {
            store,
            journal,
            opened,
            envelope,
            identity,
            lock,
        })
    }

    /// The node's current audit-log generation with a tree head signed now by its identity.
    pub async fn export_audit(&self) -> Result<crate::store::audit::AuditExport, NodeError> {
        let head = self.journal.head()?;
        let sig = self.identity.sign(&head.to_be_signed()).await?;
        // A running node may append between reading the head and the entries: export
        // exactly the entries the head covers (the log only grows, so they come first).
        let mut entries = self.journal.entries()?;
        entries.truncate(usize::try_from(head.size).unwrap_or(usize::MAX));
        Ok(crate::store::audit::AuditExport {
            format: 1,
            party: self.journal.party.clone(),
            identity_key: parley_attestation::hexbytes::Ed25519Key(
                *self.identity.public_key().as_bytes(),
            ),
            entries,
            head: crate::store::audit::SignedTreeHead {
                head,
                signature: parley_attestation::hexbytes::HexBytes(sig.0),
            },
        })
    }
}

/// Run a node until `shutdown` completes or an admin request stops it.
pub async fn run(
    config: NodeConfig,
    recover: bool,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    let mut ctx = prepare(config).await?;
    if recover {
        Arc::get_mut(&mut ctx)
            .step("node context shared too early")?
            .recover = true;
        tracing::warn!("recovery mode: waiting for peers' tree heads of this node's log");
    }
    let epoch = ctx.epoch();
    let me = epoch.manifest.parties[epoch.me].clone();
    let listen = ctx
        .config
        .listen
        .map(|a| a.to_string())
        .unwrap_or_else(|| me.address.clone());
    let listener = TcpListener::bind(&listen).await.step_with(|| {
        format!(
            "cannot listen on {listen} for {}: is another node using the port?",
            me.name
        )
    })?;
    let admin_path: PathBuf = ctx.config.admin_socket();
    let admin = crate::admin::bind(&admin_path)
        .step_with(|| format!("cannot create the admin socket {}", admin_path.display()))?;
    tracing::info!(
        party = %me.name,
        %listen,
        manifest = %hex::encode(epoch.manifest_hash),
        epoch = epoch.manifest.epoch,
        measurement = %hex::encode(ctx.measurement),
        mode = ctx.evidence_kind.as_str(),
        "node started"
    );
    drop(epoch);

    let (events_tx, events_rx) = mpsc::channel::<Event>(1024);
    let (stop_tx, stop_rx) = watch::channel(false);
    let board = Arc::new(crate::jobs::board::Board::new());
    let engine = Engine::new(
        ctx.clone(),
        stop_tx.clone(),
        board.clone(),
        events_tx.clone(),
    );
    let engine_task = tokio::spawn(engine.run(events_rx));

    // Admin socket: reads from the board and the store; changes through the engine.
    let (calls_tx, mut calls_rx) = mpsc::channel(64);
    let catalog_changed = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(crate::admin::serve(
        admin,
        Arc::new(crate::admin::AdminService {
            ctx: ctx.clone(),
            board,
            calls: calls_tx,
            catalog_changed: catalog_changed.clone(),
            imports: tokio::sync::Mutex::new(()),
        }),
    ));
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
    {
        let ev = events_tx.clone();
        tokio::spawn(async move {
            loop {
                catalog_changed.notified().await;
                if ev.send(Event::CatalogChanged).await.is_err() {
                    break;
                }
            }
        });
    }

    // The peer layer: inbound sessions and one dialer per higher-indexed party.
    crate::peer::connect::spawn(ctx.clone(), listener, events_tx.clone(), stop_rx.clone());

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
    // Every entry is committed as it is written; the last one says the stop was orderly.
    if let Err(e) = ctx.journal.record(
        "node-stop",
        serde_json::json!({
            "aborted_jobs": jobs.iter().filter(|j| matches!(j.state, crate::jobs::job::JobState::Aborted(_))).count(),
        }),
    ) {
        tracing::error!(error = %e, "cannot record the stop in the audit log");
    }
    let status = FinalStatus {
        party: ctx.config.party.clone(),
        counters: ctx.counters.snapshot(),
        verdicts: ctx
            .verdicts
            .snapshot()
            .into_iter()
            .map(|((peer, _), r)| (peer, r))
            .collect(),
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

/// Where `parley manifest activate` keeps superseded epochs.
pub fn archived_manifest_path(manifest: &Path, epoch: u64) -> PathBuf {
    let stem = manifest
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("manifest");
    manifest.with_file_name(format!("{stem}.epoch-{epoch}.toml"))
}

/// Jobs that were not final when the node stopped are aborted: peers aborted them when the
/// session dropped, and a re-run is a new job.
fn abort_interrupted_jobs(journal: &Journal) -> Result<(), NodeError> {
    let store = &journal.store;
    let open: Vec<(String, String)> = store.read(|c| {
        let mut stmt = c
            .prepare("SELECT id, view FROM jobs WHERE state NOT IN ('done', 'aborted', 'refused')")
            .map_err(|e| store.sql_error(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| store.sql_error(e))?;
        rows.map(|r| r.map_err(|e| store.sql_error(e))).collect()
    })?;
    for (id, view) in open {
        let reason =
            "the node stopped during the job; nothing was delivered (re-run it as a new job)";
        let mut v: crate::jobs::job::JobView =
            serde_json::from_str(&view).map_err(|e| store.corrupt(e.to_string()))?;
        v.state = crate::jobs::job::JobState::Aborted(reason.into());
        let json = serde_json::to_string(&v).unwrap_or_default();
        journal.record_with(
            "job-aborted",
            serde_json::json!({ "job": id, "reason": reason }),
            |tx| {
                tx.execute(
                    "UPDATE jobs SET state = 'aborted', view = ?2, updated = ?3 WHERE id = ?1",
                    rusqlite::params![id, json, crate::util::unix_now()],
                )
                .map_err(|e| store.sql_error(e))?;
                Ok(())
            },
        )?;
    }
    Ok(())
}
