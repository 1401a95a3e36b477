//! Creating a whole federation on one machine: keys, the simulation root and endorsements,
//! policies, the manifest, node configs and sample data. `parley demo` uses it, and so do
//! the integration tests (which then change one party to see it refused).
//!
//! Layout under the federation directory:
//! ```text
//! federation/manifest.toml     the manifest, signed by every party (each party keeps a copy)
//! federation/kek.key           KEK of the simulation root (0600)
//! federation/sim-root.sealed   the simulation root's private key
//! <party>/node.toml            the node's config (paths relative to this directory)
//! <party>/manifest.toml        the party's copy of the manifest
//! <party>/policy.toml          the party's appraisal policy (hash pinned in the manifest)
//! <party>/parley.db            the node's store: sealed identity and simulation keys, the
//!                              sealed dataset, jobs, verdicts, the audit log
//! <party>/keys/keyring         the local key-encryption keyring (0600)
//! <party>/sim-endorsement.json the simulation root's certificate of the node's key
//! <party>/patients.csv         the party's sample data as CSV (imported into the store)
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use parley_attestation::hexbytes::{Ed25519Key, HexBytes};
use parley_attestation::policy::{POLICY_FORMAT, Policy, PolicyDoc, SimRules};
use parley_attestation::sim::{SimEndorsement, SimEndorsementBody};
use parley_keys::Signer;
use parley_keys::local::{LocalKek, LocalSigner};
use parley_keys::signer::SealedSigner;
use parley_keys::store::BlobId;
use ring::rand::SecureRandom;

use crate::config::{
    AttestationMode, AttestationSection, JobsSection, NodeConfig, SimulatedPlatform, default_tcb,
};
use crate::manifest::{FieldName, MANIFEST_FORMAT, Manifest, Party};
use crate::node::{NodeKeys, SIM_KEY_BLOB};
use crate::store::data::sample_patients;
use parley_attestation::policy::{FederationRules, SessionRules};

const ROOT_KEY_LABEL: &str = "simulation-root";
/// Simulation endorsements are valid this long.
const ENDORSEMENT_DAYS: i64 = 30;

/// What to create.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dir: PathBuf,
    pub federation: String,
    /// Party names and addresses, in manifest order.
    pub parties: Vec<(String, String)>,
    pub threshold: usize,
    /// Sample rows per party.
    pub rows: usize,
    /// The launch measurement the policies accept (SHA-384 of the `parley` binary).
    pub measurement: [u8; 48],
}

/// One party's files.
#[derive(Debug, Clone)]
pub struct PartyFiles {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub policy: PathBuf,
    pub manifest: PathBuf,
    pub data: PathBuf,
}

/// A federation created on disk.
#[derive(Debug)]
pub struct Federation {
    pub dir: PathBuf,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    pub parties: Vec<PartyFiles>,
    pub simulation_root: Ed25519Key,
}

/// Pick `n` free TCP ports on 127.0.0.1 (bound then released: another process could take
/// one before the node binds it, which the node then reports clearly).
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn mkdir_private(p: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("cannot create {}", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", p.display()))
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the system random number generator failed"))?;
    Ok(b)
}

/// The policy the demo gives every party: simulated evidence of this exact build only.
pub fn default_policy(federation: &str, root: Ed25519Key, measurement: [u8; 48]) -> Policy {
    Policy {
        format: POLICY_FORMAT,
        name: format!("{federation}-simulated"),
        tolerate: Vec::new(),
        session: SessionRules::default(),
        federation: FederationRules::default(),
        snp: None,
        tdx: None,
        sim: Some(SimRules {
            allow_simulated: true,
            roots: vec![root],
            measurements: vec![HexBytes(measurement)],
            allow_debug: false,
            allow_migration_agent: false,
            allowed_vmpls: vec![0],
            min_tcb: default_tcb(),
        }),
    }
}

impl Federation {
    /// Create everything `plan` describes. The directory must not already hold a federation.
    pub async fn create(plan: &Plan) -> anyhow::Result<Self> {
        let fed_dir = plan.dir.join("federation");
        if fed_dir.join("manifest.toml").exists() {
            anyhow::bail!(
                "{} already holds a federation; choose an empty --dir",
                plan.dir.display()
            );
        }
        mkdir_private(&plan.dir)?;
        mkdir_private(&fed_dir)?;
        let root_kek = LocalKek::create(&fed_dir.join("kek.key"))?;
        let root =
            LocalSigner::create(&root_kek, ROOT_KEY_LABEL, &fed_dir.join("sim-root.sealed"))?;
        let root_pk = Ed25519Key(*root.public_key().as_bytes());
        let policy = default_policy(&plan.federation, root_pk, plan.measurement);
        let policy_text = toml::to_string(&policy)?;
        let policy_hash = HexBytes(PolicyDoc::parse(&policy_text, "policy")?.hash);

        let mut parties = Vec::new();
        let mut entries = Vec::new();
        for (i, (name, address)) in plan.parties.iter().enumerate() {
            let dir = plan.dir.join(name);
            mkdir_private(&dir)?;
            let config = dir.join("node.toml");
            let cfg = NodeConfig {
                party: name.clone(),
                manifest: PathBuf::from("manifest.toml"),
                policy: PathBuf::from("policy.toml"),
                data_dir: PathBuf::from("."),
                listen: None,
                keys: parley_keys::config::KeysConfig::default(),
                attestation: AttestationSection {
                    mode: AttestationMode::Simulated,
                    sim_endorsement: Some("sim-endorsement.json".into()),
                    simulated: SimulatedPlatform::default(),
                    tsm_root: None,
                    vmpl: None,
                    collateral: None,
                },
                jobs: JobsSection {
                    auto_approve: vec!["summary-stats".into(), "analytics".into()],
                    ..JobsSection::default()
                },
                // The study's release policy and budget for the sample patients data.
                release: vec![crate::dev::study::policy(plan.rows as u64)],
                budgets: [(
                    "patients".to_owned(),
                    crate::dev::study::BUDGET_RHO
                        .parse()
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                )]
                .into_iter()
                .collect(),
                cheat: None,
            };
            std::fs::write(&config, toml::to_string(&cfg)?)?;
            let policy_path = dir.join("policy.toml");
            std::fs::write(&policy_path, &policy_text)?;
            // The node's store: identity and simulation keys, and its sealed sample data.
            let loaded = NodeConfig::load(&config)?;
            let keys = NodeKeys::open(&loaded).await?;
            let sim_key =
                SealedSigner::open_or_create(&keys.envelope, &BlobId::new(SIM_KEY_BLOB)?).await?;
            endorse(
                &root,
                root_pk,
                name,
                Ed25519Key(*sim_key.public_key().as_bytes()),
                &dir.join("sim-endorsement.json"),
            )?;
            let mut sample = sample_patients(i as u64, plan.rows);
            let data = dir.join("patients.csv");
            sample
                .write_csv(&data)
                .with_context(|| format!("cannot write {}", data.display()))?;
            crate::store::datasets::store(&keys.envelope, &keys.journal, &mut sample).await?;
            entries.push(Party {
                name: name.clone(),
                point: i as u64 + 1,
                address: address.clone(),
                identity_key: Ed25519Key(*keys.identity.public_key().as_bytes()),
                policy_hash,
            });
            let manifest = dir.join("manifest.toml");
            parties.push(PartyFiles {
                name: name.clone(),
                dir,
                config,
                policy: policy_path,
                manifest,
                data,
            });
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            federation: plan.federation.clone(),
            epoch: 1,
            previous: None,
            field: FieldName::Mersenne127,
            threshold: plan.threshold,
            parties: entries,
            signatures: Vec::new(),
        };
        manifest
            .validate()
            .map_err(|m| anyhow::anyhow!("invalid federation plan: {m}"))?;
        let manifest_path = fed_dir.join("manifest.toml");
        let mut fed = Federation {
            dir: plan.dir.clone(),
            manifest_path,
            manifest,
            parties,
            simulation_root: root_pk,
        };
        fed.sign_and_write().await?;
        Ok(fed)
    }

    /// Every operator signs `manifest` (any previous signatures are dropped).
    pub async fn sign_by_all(&self, manifest: &mut Manifest) -> anyhow::Result<()> {
        manifest.signatures.clear();
        let tbs = manifest.to_be_signed();
        for p in &self.parties {
            if manifest.party(&p.name).is_none() {
                continue;
            }
            // Signing only reads the store: it works beside a running node.
            let keys = NodeKeys::open_with(&NodeConfig::load(&p.config)?, false).await?;
            let key = Ed25519Key(*keys.identity.public_key().as_bytes());
            let sig = keys.identity.sign(&tbs).await?;
            manifest.add_signature(&p.name, key, sig.0);
        }
        Ok(())
    }

    /// Sign the current manifest by every party and write it everywhere.
    pub async fn sign_and_write(&mut self) -> anyhow::Result<()> {
        let mut m = self.manifest.clone();
        self.sign_by_all(&mut m).await?;
        self.manifest = m;
        let text = self.manifest.to_toml();
        std::fs::write(&self.manifest_path, &text)?;
        for p in &self.parties {
            std::fs::write(&p.manifest, &text)
                .with_context(|| format!("cannot write {}", p.manifest.display()))?;
        }
        Ok(())
    }

    /// Draft, sign and write (to `federation/manifest.epoch-N.toml`) the next epoch after
    /// applying `edit`; returns its path. Nodes switch with `parley manifest activate`.
    pub async fn next_epoch(
        &self,
        edit: impl FnOnce(&mut Manifest),
    ) -> anyhow::Result<(PathBuf, Manifest)> {
        let mut next = self.manifest.body();
        next.epoch += 1;
        next.previous = Some(HexBytes(self.manifest.hash()));
        edit(&mut next);
        next.validate()
            .map_err(|m| anyhow::anyhow!("invalid next epoch: {m}"))?;
        self.sign_by_all(&mut next).await?;
        let path = self
            .dir
            .join("federation")
            .join(format!("manifest.epoch-{}.toml", next.epoch));
        std::fs::write(&path, next.to_toml())?;
        Ok((path, next))
    }

    pub fn party(&self, name: &str) -> anyhow::Result<&PartyFiles> {
        self.parties
            .iter()
            .find(|p| p.name == name)
            .with_context(|| format!("no party {name:?}"))
    }

    /// Replace a party's policy and pin its new hash in the manifest.
    pub async fn set_policy(&mut self, name: &str, policy: &Policy) -> anyhow::Result<()> {
        let text = toml::to_string(policy)?;
        let hash = PolicyDoc::parse(&text, name)?.hash;
        let path = self.party(name)?.policy.clone();
        std::fs::write(&path, text)?;
        let entry = self
            .manifest
            .parties
            .iter_mut()
            .find(|p| p.name == name)
            .context("no such party")?;
        entry.policy_hash = HexBytes(hash);
        self.sign_and_write().await
    }

    /// Change a party's node config.
    pub fn edit_config(
        &self,
        name: &str,
        edit: impl FnOnce(&mut NodeConfig),
    ) -> anyhow::Result<()> {
        let path = self.party(name)?.config.clone();
        let mut cfg: NodeConfig = toml::from_str(&std::fs::read_to_string(&path)?)?;
        edit(&mut cfg);
        std::fs::write(&path, toml::to_string(&cfg)?)?;
        Ok(())
    }

    /// Re-endorse a party's simulation key with a fresh root that no policy pins (a node
    /// whose simulation key the federation never certified).
    pub fn endorse_with_rogue_root(&self, name: &str) -> anyhow::Result<Ed25519Key> {
        let p = self.party(name)?;
        let rogue_dir = self.dir.join(format!("rogue-root-{name}"));
        mkdir_private(&rogue_dir)?;
        let kek = LocalKek::create(&rogue_dir.join("kek.key"))?;
        let rogue = LocalSigner::create(&kek, ROOT_KEY_LABEL, &rogue_dir.join("sim-root.sealed"))?;
        let rogue_pk = Ed25519Key(*rogue.public_key().as_bytes());
        let path = p.dir.join("sim-endorsement.json");
        let current: SimEndorsement = serde_json::from_slice(&std::fs::read(&path)?)?;
        std::fs::remove_file(&path)?;
        endorse(&rogue, rogue_pk, name, current.body.key, &path)?;
        Ok(rogue_pk)
    }
}

fn endorse(
    root: &LocalSigner,
    root_pk: Ed25519Key,
    node: &str,
    sim_key: Ed25519Key,
    path: &Path,
) -> anyhow::Result<()> {
    let now = crate::util::unix_now();
    let body = SimEndorsementBody {
        node: node.to_owned(),
        platform_id: HexBytes(random_bytes::<32>()?),
        key: sim_key,
        not_before: now - 3600,
        not_after: now + ENDORSEMENT_DAYS * 86_400,
    };
    let sig = root.sign_now(&SimEndorsement::to_be_signed(&body));
    let e = SimEndorsement {
        body,
        root: root_pk,
        signature: HexBytes(sig.0),
    };
    std::fs::write(path, serde_json::to_vec_pretty(&e)?)
        .with_context(|| format!("cannot write {}", path.display()))
}
