//! The `[keys]` section of the node config, and opening a backend and a signer from it.
//!
//! ```toml
//! [keys]
//! backend = "vault"                  # or "local" (the default)
//!
//! [keys.local]
//! keyring = "keys/keyring"           # relative paths are resolved against the node's data dir
//! seal = "snp"                       # or "none" (the default); TDX has no sealing key
//! recovery_public_key = "x25519:…"   # the operator's offline key (`RecoveryPrivateKey`)
//!
//! [keys.vault]
//! address = "https://vault.example.org:8200"
//! key = "parley"                     # Transit key wrapping data keys
//! role_id = { file = "/etc/parley/vault-role-id" }
//! secret_id = { env = "PARLEY_VAULT_SECRET_ID" }
//! ca_cert = "/etc/parley/vault-ca.pem"
//!
//! [keys.signer]
//! kind = "sealed"                    # or "transit" with transit_key = "parley-identity"
//!
//! [keys.rotation]
//! kek_max_age_days = 90
//! data_max_age_days = 365
//! ```
//!
//! Secrets are never values in the config: `role_id` and `secret_id` name a file or an
//! environment variable ([`SecretSource`]). Unknown fields are errors, so a typo never
//! silently falls back to a default.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::KeyError;
use crate::backend::KeyBackend;
use crate::envelope::EnvelopeStore;
use crate::identity::Signer;
use crate::keyring::LocalKeyring;
use crate::rotation::RotationSchedule;
use crate::sealing::{
    FileProtector, KeyRequest, PlainFile, RecoveryPublicKey, SealingDevice, SevGuestDevice,
    TeeSealed,
};
use crate::secret::SecretSource;
use crate::signer::{SealedSigner, TransitSigner};
use crate::store::BlobId;
use crate::vault::{RetryPolicy, VaultBackend, VaultSettings};

/// The `[keys]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    #[serde(default)]
    pub backend: BackendKind,
    #[serde(default)]
    pub local: LocalConfig,
    pub vault: Option<VaultConfig>,
    #[serde(default)]
    pub signer: SignerConfig,
    #[serde(default)]
    pub rotation: RotationSchedule,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    #[default]
    Local,
    Vault,
}

/// `[keys.local]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// The KEK keyring file (created on first start).
    #[serde(default = "default_keyring")]
    pub keyring: PathBuf,
    /// How the keyring file (and `sealed_file` secrets) are protected at rest.
    #[serde(default)]
    pub seal: SealKind,
    /// `x25519:<hex>`: the operator's offline recovery key; required with `seal = "snp"`.
    pub recovery_public_key: Option<String>,
    /// SNP derived-key request: VMPL, guest SVN and minimum TCB version mixed into the key.
    #[serde(default)]
    pub snp_vmpl: u32,
    #[serde(default)]
    pub snp_guest_svn: u32,
    #[serde(default)]
    pub snp_tcb_version: u64,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            keyring: default_keyring(),
            seal: SealKind::None,
            recovery_public_key: None,
            snp_vmpl: 0,
            snp_guest_svn: 0,
            snp_tcb_version: 0,
        }
    }
}

/// Protection of secret files at rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SealKind {
    /// A 0600 file: the host operator can read it.
    #[default]
    None,
    /// Sealed with an SEV-SNP derived key (measurement not bound) plus a recovery wrap.
    /// Not available on TDX, which has no sealing key.
    Snp,
}

fn default_keyring() -> PathBuf {
    PathBuf::from("keys/keyring")
}

/// `[keys.vault]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    pub address: String,
    #[serde(default = "default_transit")]
    pub transit_mount: String,
    pub key: String,
    #[serde(default = "default_approle")]
    pub approle_mount: String,
    pub role_id: SecretSource,
    pub secret_id: SecretSource,
    pub ca_cert: Option<PathBuf>,
    pub namespace: Option<String>,
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_transit() -> String {
    "transit".into()
}
fn default_approle() -> String {
    "approle".into()
}
fn default_timeout() -> u64 {
    10
}

/// `[keys.vault.retry]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        let p = RetryPolicy::default();
        RetryConfig {
            max_attempts: p.max_attempts,
            initial_backoff_ms: u64::try_from(p.initial_backoff.as_millis()).unwrap_or(200),
            max_backoff_ms: u64::try_from(p.max_backoff.as_millis()).unwrap_or(3000),
        }
    }
}

/// `[keys.signer]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignerConfig {
    #[serde(default)]
    pub kind: SignerKind,
    /// Blob id of the sealed identity key.
    #[serde(default = "default_identity_blob")]
    pub blob: String,
    /// Transit key name (kind = "transit").
    pub transit_key: Option<String>,
    /// Transit key version, pinned (kind = "transit"); the latest if absent.
    pub transit_version: Option<u32>,
}

impl Default for SignerConfig {
    fn default() -> Self {
        SignerConfig {
            kind: SignerKind::Sealed,
            blob: default_identity_blob(),
            transit_key: None,
            transit_version: None,
        }
    }
}

fn default_identity_blob() -> String {
    "identity/node-key".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignerKind {
    #[default]
    Sealed,
    Transit,
}

impl KeysConfig {
    /// Parse a `[keys]` table given as TOML text (tests, `parley keys` with `--config`).
    pub fn from_toml(text: &str) -> Result<Self, KeyError> {
        let c: KeysConfig = toml::from_str(text).map_err(|e| KeyError::Config {
            reason: describe_toml_error(&e, text),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Cross-field checks serde can't express.
    pub fn validate(&self) -> Result<(), KeyError> {
        let bad = |reason: &str| {
            Err(KeyError::Config {
                reason: reason.to_owned(),
            })
        };
        if self.backend == BackendKind::Vault && self.vault.is_none() {
            return bad("backend = \"vault\" needs a [keys.vault] section");
        }
        if let Some(v) = &self.vault {
            if url::Url::parse(&v.address).is_err() {
                return bad("keys.vault.address is not a URL (e.g. https://vault:8200)");
            }
            if v.retry.max_attempts == 0 {
                return bad("keys.vault.retry.max_attempts must be at least 1");
            }
            if v.request_timeout_secs == 0 {
                return bad("keys.vault.request_timeout_secs must be at least 1");
            }
        }
        match self.signer.kind {
            SignerKind::Transit if self.backend != BackendKind::Vault => {
                return bad("signer kind \"transit\" needs backend = \"vault\"");
            }
            SignerKind::Transit if self.signer.transit_key.is_none() => {
                return bad("signer kind \"transit\" needs keys.signer.transit_key");
            }
            _ => {}
        }
        BlobId::new(&self.signer.blob)?;
        if self.local.seal == SealKind::Snp {
            match &self.local.recovery_public_key {
                None => {
                    return bad(
                        "keys.local.seal = \"snp\" needs keys.local.recovery_public_key (an offline operator key; without it a host move loses the keyring)",
                    );
                }
                Some(k) => {
                    k.parse::<RecoveryPublicKey>()?;
                }
            }
        }
        Ok(())
    }

    /// The protector for secret files: plain, or sealed with `device` (the SNP guest
    /// device unless a test passes a fake one).
    pub fn protector(
        &self,
        device: Option<Arc<dyn SealingDevice>>,
    ) -> Result<Arc<dyn FileProtector>, KeyError> {
        match self.local.seal {
            SealKind::None => Ok(Arc::new(PlainFile)),
            SealKind::Snp => {
                let recovery: RecoveryPublicKey = self
                    .local
                    .recovery_public_key
                    .as_deref()
                    .ok_or_else(|| KeyError::Config {
                        reason: "keys.local.seal = \"snp\" needs keys.local.recovery_public_key"
                            .into(),
                    })?
                    .parse()?;
                let device = device.unwrap_or_else(|| Arc::new(SevGuestDevice));
                let req = KeyRequest::without_measurement(
                    self.local.snp_vmpl,
                    self.local.snp_guest_svn,
                    self.local.snp_tcb_version,
                );
                Ok(Arc::new(TeeSealed::new(device, req, recovery)))
            }
        }
    }

    /// Vault settings with paths resolved; `None` for the local backend.
    pub fn vault_settings(
        &self,
        base: &Path,
        protector: Arc<dyn FileProtector>,
    ) -> Option<VaultSettings> {
        let v = self.vault.as_ref()?;
        let resolve_src = |s: &SecretSource| match s {
            SecretSource::File(p) => SecretSource::File(base.join(p)),
            SecretSource::SealedFile(p) => SecretSource::SealedFile(base.join(p)),
            other => other.clone(),
        };
        Some(VaultSettings {
            address: v.address.clone(),
            transit_mount: v.transit_mount.clone(),
            key: v.key.clone(),
            approle_mount: v.approle_mount.clone(),
            role_id: resolve_src(&v.role_id),
            secret_id: resolve_src(&v.secret_id),
            ca_cert: v.ca_cert.as_ref().map(|p| base.join(p)),
            namespace: v.namespace.clone(),
            request_timeout: Duration::from_secs(v.request_timeout_secs),
            retry: RetryPolicy {
                max_attempts: v.retry.max_attempts,
                initial_backoff: Duration::from_millis(v.retry.initial_backoff_ms),
                max_backoff: Duration::from_millis(v.retry.max_backoff_ms),
            },
            protector,
        })
    }
}

/// A TOML error without the echoed source line or quoted values: a secret typed into the
/// config by mistake must not reach a log. The host should report config errors this way.
pub fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let line = e
        .span()
        .map(|s| text.get(..s.start).map_or(0, |t| t.lines().count().max(1)));
    // Double-quoted text is a value; in "unknown variant" / "invalid …" messages the first
    // backticked word is the user's value too. Field and variant names we expect stay.
    let raw = e.message();
    let mut redact_tick = raw.starts_with("unknown variant") || raw.starts_with("invalid");
    let mut msg = String::new();
    let mut open: Option<char> = None;
    for c in raw.chars() {
        match open {
            None if c == '"' || c == '`' => {
                open = Some(c);
                msg.push(c);
            }
            Some(q) if c == q => {
                if q == '"' || redact_tick {
                    msg.push('…');
                }
                if q == '`' {
                    redact_tick = false;
                }
                open = None;
                msg.push(c);
            }
            Some(q) if q == '"' || redact_tick => {}
            _ => msg.push(c),
        }
    }
    match line {
        Some(l) => format!("line {l}: {}", msg.trim()),
        None => msg.trim().to_owned(),
    }
}

/// An opened backend: the trait object, and the Vault session when there is one.
#[derive(Debug)]
pub struct OpenedBackend {
    pub backend: Arc<dyn KeyBackend>,
    pub vault: Option<Arc<VaultBackend>>,
}

/// Open the configured backend. Relative paths resolve against `base` (the node's data
/// directory). `renew`: keep the Vault token alive in the background (a node); one-shot
/// commands pass `false`. A Vault backend needs a tokio runtime.
pub fn open_backend(cfg: &KeysConfig, base: &Path, renew: bool) -> Result<OpenedBackend, KeyError> {
    open_backend_with(cfg, base, renew, None)
}

/// [`open_backend`] with an explicit sealing device (tests pass a fake one).
pub fn open_backend_with(
    cfg: &KeysConfig,
    base: &Path,
    renew: bool,
    device: Option<Arc<dyn SealingDevice>>,
) -> Result<OpenedBackend, KeyError> {
    cfg.validate()?;
    let protector = cfg.protector(device)?;
    match cfg.backend {
        BackendKind::Local => {
            let path = base.join(&cfg.local.keyring);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
                    action: "create",
                    path: dir.to_owned(),
                    source,
                })?;
            }
            let ring = LocalKeyring::open_or_create(&path, protector)?;
            Ok(OpenedBackend {
                backend: Arc::new(ring),
                vault: None,
            })
        }
        BackendKind::Vault => {
            let settings = cfg
                .vault_settings(base, protector)
                .ok_or_else(|| KeyError::Config {
                    reason: "backend = \"vault\" needs a [keys.vault] section".into(),
                })?;
            let v = Arc::new(if renew {
                VaultBackend::connect(settings)?
            } else {
                VaultBackend::connect_without_renewal(settings)?
            });
            Ok(OpenedBackend {
                backend: v.clone(),
                vault: Some(v),
            })
        }
    }
}

/// Open the configured identity signer.
pub async fn open_signer(
    cfg: &KeysConfig,
    store: &EnvelopeStore,
    opened: &OpenedBackend,
) -> Result<Box<dyn Signer>, KeyError> {
    match cfg.signer.kind {
        SignerKind::Sealed => {
            let id = BlobId::new(&cfg.signer.blob)?;
            Ok(Box::new(SealedSigner::open_or_create(store, &id).await?))
        }
        SignerKind::Transit => {
            let vault = opened.vault.as_ref().ok_or_else(|| KeyError::Config {
                reason: "signer kind \"transit\" needs backend = \"vault\"".into(),
            })?;
            let key = cfg
                .signer
                .transit_key
                .as_deref()
                .unwrap_or("parley-identity");
            Ok(Box::new(
                TransitSigner::new(
                    vault.transit_signer_session(),
                    key,
                    cfg.signer.transit_version,
                )
                .await?,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let c = KeysConfig::from_toml("").unwrap();
        assert_eq!(c.backend, BackendKind::Local);
        let c = KeysConfig::from_toml(
            r#"
backend = "vault"
[vault]
address = "http://127.0.0.1:8200"
key = "parley"
role_id = { file = "role-id" }
secret_id = { env = "PARLEY_VAULT_SECRET_ID" }
[vault.retry]
max_attempts = 2
initial_backoff_ms = 10
max_backoff_ms = 100
[rotation]
kek_max_age_days = 30
"#,
        )
        .unwrap();
        let s = c
            .vault_settings(Path::new("/data"), Arc::new(PlainFile))
            .unwrap();
        assert_eq!(s.role_id, SecretSource::File("/data/role-id".into()));
        assert_eq!(s.retry.max_attempts, 2);
        assert_eq!(c.rotation.kek_max_age_days, Some(30));

        for bad in [
            "backend = \"vault\"",
            "typo = 1",
            "[vault]\naddress=\"x\"\nkey=\"k\"\nrole_id={file=\"a\"}\nsecret_id={value=\"s3cret\"}",
            "[vault]\naddress=\"http://a\"\nkey=\"k\"\nrole_id={file=\"a\"}\nsecret_id=\"s3cret\"",
            "[signer]\nkind = \"transit\"",
            "[signer]\nblob = \"/abs\"",
            "[local]\nseal = \"snp\"",
            "[local]\nseal = \"snp\"\nrecovery_public_key = \"x25519:00\"",
            "[local]\nseal = \"tdx\"",
        ] {
            let e = KeysConfig::from_toml(bad).unwrap_err();
            assert!(
                matches!(e, KeyError::Config { .. } | KeyError::InvalidBlobId { .. }),
                "{bad}"
            );
            // A secret typed into the config is refused, and not echoed back.
            assert!(!e.to_string().contains("s3cret"), "{e}");
            if bad == "typo = 1" {
                assert!(e.to_string().contains("unknown field `typo`"), "{e}");
            }
        }
    }
}
