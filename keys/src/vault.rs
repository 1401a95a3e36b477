//! The Vault / OpenBao [`KeyBackend`]: a Transit key wraps data keys; the node logs in with
//! AppRole and keeps its token alive in the background.
//!
//! Owns every call to Vault: the session (login, renewal, fresh login when renewal is
//! refused or the token nears its maximum TTL), the retry policy, the mapping of failures
//! to [`VaultFailure`], and the two calls `vaultrs` 0.8 gets wrong against OpenBao (the
//! health probe, whose response lacks an Enterprise field, and key reads, which lack
//! `latest_version`): those use the same HTTP client directly.
//!
//! Failure handling: network errors, a sealed Vault and 5xx answers are retried with
//! exponential backoff up to the policy's attempts, then returned typed. A 403 is checked
//! with a token lookup: an invalid token means log in again and retry once; a valid one
//! means the policy lacks the path ([`VaultFailure::PermissionDenied`], not retried). No
//! data key is cached: while Vault is away, opening and sealing fail closed, and stored
//! blobs are untouched.
//!
//! Secrets: the token and secret-id live in [`SecretString`]s; `vaultrs` keeps its own copy
//! of the token in plain `String`s inside its client (a limit we can't fix from outside).
//! No `vaultrs` error is ever `Debug`-printed (its parse errors carry response bodies).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use tokio::time::Instant;
use vaultrs::api::transit::requests::{DataKeyType, UpdateKeyConfigurationRequest};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::{Zeroize, Zeroizing};

use crate::backend::{
    BackendFuture, DATA_KEY_LEN, DataKey, Health, KekStatus, KekVersion, KeyBackend, WrappedKey,
};
use crate::error::{KeyError, VaultFailure};
use crate::secret::{SecretSource, SecretString};

const PREFIX: &str = "vault";

/// How often and how long to retry transient failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, including the first (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Everything needed to reach Vault, with secrets still at their sources.
#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// `http(s)://host:port`.
    pub address: String,
    pub transit_mount: String,
    /// The Transit key that wraps data keys (type aes256-gcm96).
    pub key: String,
    pub approle_mount: String,
    pub role_id: SecretSource,
    pub secret_id: SecretSource,
    /// PEM bundle of CAs for an `https` address; the system roots are not used.
    pub ca_cert: Option<PathBuf>,
    pub namespace: Option<String>,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Unseals `SecretSource::SealedFile` secrets.
    pub protector: Arc<dyn crate::sealing::FileProtector>,
}

/// Counters for status output and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SessionStats {
    pub logins: u64,
    pub renewals: u64,
    /// Renewals Vault refused (token revoked or expired): each is followed by a login.
    pub renewals_refused: u64,
    pub retries: u64,
}

struct Token {
    client: Arc<VaultClient>,
    obtained: Instant,
    lease: Duration,
    renewable: bool,
    /// The lease the login granted; a shorter renewal means the maximum TTL is near.
    first_lease: Duration,
    near_max_ttl: bool,
    generation: u64,
}

struct Inner {
    s: VaultSettings,
    /// A client without a token: logins and the health probe.
    anon: Arc<VaultClient>,
    token: Mutex<Option<Token>>,
    login_lock: tokio::sync::Mutex<()>,
    logins: AtomicU64,
    renewals: AtomicU64,
    renewals_refused: AtomicU64,
    retries: AtomicU64,
}

/// The Vault / OpenBao backend. Dropping it stops the renewal task.
pub struct VaultBackend {
    inner: Arc<Inner>,
    renewal: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultBackend")
            .field("address", &self.inner.s.address)
            .field("key", &self.inner.s.key)
            .finish_non_exhaustive()
    }
}

impl Drop for VaultBackend {
    fn drop(&mut self) {
        if let Some(h) = self.renewal.take() {
            h.abort();
        }
    }
}

/// Install ring as the process's rustls provider (vaultrs is built without one, which
/// keeps aws-lc-rs out). Harmless if a provider is already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A failed call, before it becomes a [`KeyError`].
#[derive(Debug)]
enum CallError {
    /// Vault answered with an HTTP error status.
    Api {
        status: u16,
        message: String,
    },
    Network(String),
    Parse(String),
}

impl From<ClientError> for CallError {
    fn from(e: ClientError) -> Self {
        use rustify::errors::ClientError as R;
        match e {
            ClientError::APIError { code, errors } => CallError::Api {
                status: code,
                message: short(&errors.join("; ")),
            },
            ClientError::RestClientError { source } => match source {
                R::RequestError { source, .. } => CallError::Network(chain(source.as_ref())),
                R::ServerResponseError { code, .. } => CallError::Api {
                    status: code,
                    message: format!("HTTP {code}"),
                },
                R::ResponseError { .. } => CallError::Network("the response was cut off".into()),
                other => CallError::Parse(other.to_string()),
            },
            other => CallError::Parse(other.to_string()),
        }
    }
}

/// Display an error and its causes (connection refused, timed out …), without bodies.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    short(&out)
}

fn short(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

impl CallError {
    fn into_failure(self, path: &str) -> VaultFailure {
        match self {
            CallError::Network(detail) => VaultFailure::Unreachable { detail },
            CallError::Parse(detail) => VaultFailure::BadResponse { detail },
            CallError::Api { status, message } => match status {
                503 if message.to_ascii_lowercase().contains("sealed") => VaultFailure::Sealed,
                403 => VaultFailure::PermissionDenied {
                    path: path.to_owned(),
                },
                404 => VaultFailure::NotFound {
                    path: path.to_owned(),
                },
                429 | 500..=599 => VaultFailure::Server { status, message },
                _ => VaultFailure::Rejected { status, message },
            },
        }
    }
}

impl VaultBackend {
    /// Build the client and start the renewal task (which logs in). Doesn't wait for Vault:
    /// a node starts while Vault is away and its key operations fail closed until it
    /// returns. Call [`Self::login`] to wait for a first login. Needs a tokio runtime.
    pub fn connect(settings: VaultSettings) -> Result<Self, KeyError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| KeyError::Config {
            reason: "the Vault backend with token renewal needs a tokio runtime".into(),
        })?;
        let mut b = Self::connect_without_renewal(settings)?;
        let weak = Arc::downgrade(&b.inner);
        b.renewal = Some(handle.spawn(renewal_loop(weak)));
        Ok(b)
    }

    /// Like [`Self::connect`] but without the background renewal (one-shot CLI commands).
    pub fn connect_without_renewal(settings: VaultSettings) -> Result<Self, KeyError> {
        let url = url::Url::parse(&settings.address).map_err(|e| KeyError::Config {
            reason: format!("vault address {:?} is not a URL: {e}", settings.address),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(KeyError::Config {
                reason: format!("vault address {:?} must be http or https", settings.address),
            });
        }
        install_crypto_provider();
        let anon = Arc::new(build_client(&settings, "")?);
        Ok(VaultBackend {
            inner: Arc::new(Inner {
                s: settings,
                anon,
                token: Mutex::new(None),
                login_lock: tokio::sync::Mutex::new(()),
                logins: AtomicU64::new(0),
                renewals: AtomicU64::new(0),
                renewals_refused: AtomicU64::new(0),
                retries: AtomicU64::new(0),
            }),
            renewal: None,
        })
    }

    /// Log in now (retrying transient failures per the policy).
    pub async fn login(&self) -> Result<(), KeyError> {
        self.inner.login(None).await.map(|_| ())
    }

    pub fn stats(&self) -> SessionStats {
        let i = &self.inner;
        SessionStats {
            logins: i.logins.load(Ordering::Relaxed),
            renewals: i.renewals.load(Ordering::Relaxed),
            renewals_refused: i.renewals_refused.load(Ordering::Relaxed),
            retries: i.retries.load(Ordering::Relaxed),
        }
    }

    pub fn address(&self) -> &str {
        &self.inner.s.address
    }

    /// A [`crate::signer::TransitSigner`] over an Ed25519 Transit key, sharing this session.
    pub fn transit_signer_session(&self) -> VaultSession {
        VaultSession {
            inner: self.inner.clone(),
        }
    }
}

/// A handle on the logged-in session, for other Transit keys (the signer).
#[derive(Clone)]
pub struct VaultSession {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VaultSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VaultSession({})", self.inner.s.address)
    }
}

impl VaultSession {
    pub fn address(&self) -> &str {
        &self.inner.s.address
    }

    /// Read a Transit key: versions, minimum decryption version, public keys.
    pub async fn read_key(&self, name: &str) -> Result<KeyInfo, KeyError> {
        self.inner.read_key(name).await
    }

    /// Sign `message` with version `version` of the Transit key `name`; returns the raw
    /// signature bytes (`vault:vN:` prefix removed, version checked).
    pub async fn sign(
        &self,
        name: &str,
        version: u32,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let mount = self.inner.s.transit_mount.clone();
        let path = format!("{mount}/sign/{name}");
        let input = B64.encode(message);
        let name_c = name.to_owned();
        let resp = self
            .inner
            .call("sign", &path, move |c| {
                let (mount, name, input) = (mount.clone(), name_c.clone(), input.clone());
                async move {
                    let mut opts = vaultrs::api::transit::requests::SignDataRequest::builder();
                    opts.key_version(u64::from(version));
                    vaultrs::transit::data::sign(&*c, &mount, &name, &input, Some(&mut opts))
                        .await
                        .map_err(CallError::from)
                }
            })
            .await?;
        let bad = |reason: &str| {
            KeyError::vault(
                &self.inner.s.address,
                "sign",
                VaultFailure::BadResponse {
                    detail: reason.to_owned(),
                },
            )
        };
        let w =
            WrappedKey::parse(&resp.signature).ok_or_else(|| bad("signature is not vault:vN:…"))?;
        if w.version() != version {
            return Err(bad("signed with another key version than requested"));
        }
        B64.decode(w.body())
            .map_err(|_| bad("signature is not base64"))
    }
}

/// A Transit key as read from Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub latest_version: u32,
    pub min_decryption_version: u32,
    pub versions: Vec<KekVersion>,
    /// Base64 public keys of asymmetric keys, by version.
    pub public_keys: BTreeMap<u32, String>,
}

fn build_client(s: &VaultSettings, token: &str) -> Result<VaultClient, KeyError> {
    let cfg = |reason: String| KeyError::Config { reason };
    let mut b = VaultClientSettingsBuilder::default();
    // Every field set explicitly: vaultrs would otherwise read VAULT_* variables.
    b.address(&s.address)
        .token(token)
        .verify(true)
        .identity(None)
        .timeout(Some(s.request_timeout))
        .ca_certs(
            s.ca_cert
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>(),
        );
    if let Some(ns) = &s.namespace {
        b.set_namespace(ns.clone());
    }
    let settings = b
        .build()
        .map_err(|e| cfg(format!("vault client settings: {e}")))?;
    VaultClient::new(settings).map_err(|e| cfg(format!("vault client for {}: {e}", s.address)))
}

impl Inner {
    fn addr(&self) -> &str {
        &self.s.address
    }

    fn err(&self, op: &'static str, failure: VaultFailure) -> KeyError {
        KeyError::vault(self.addr(), op, failure)
    }

    /// The current client if its token is still within its lease, less a safety margin
    /// (a request must reach Vault before the lease ends).
    fn current(&self) -> Option<(Arc<VaultClient>, u64)> {
        self.token_within(|lease| (lease / 10).min(Duration::from_secs(1)))
    }

    fn token_within(
        &self,
        margin: impl Fn(Duration) -> Duration,
    ) -> Option<(Arc<VaultClient>, u64)> {
        let g = self.token.lock().ok()?;
        let t = g.as_ref()?;
        let end = t.obtained + t.lease;
        (Instant::now() + margin(t.lease) < end).then(|| (t.client.clone(), t.generation))
    }

    /// Log in with AppRole unless another task already replaced token `stale`.
    async fn login(&self, stale: Option<u64>) -> Result<Arc<VaultClient>, KeyError> {
        let _g = self.login_lock.lock().await;
        if let Some((client, generation)) = self.current()
            && Some(generation) != stale
        {
            return Ok(client);
        }
        let p = self.s.protector.as_ref();
        let role_id = self.s.role_id.read_with("AppRole role-id", p)?;
        let secret_id = self.s.secret_id.read_with("AppRole secret-id", p)?;
        let mount = self.s.approle_mount.clone();
        let mut attempt = 0;
        let mut auth = loop {
            let r = vaultrs::auth::approle::login(
                &*self.anon,
                &mount,
                role_id.expose(),
                secret_id.expose(),
            )
            .await
            .map_err(CallError::from);
            match r {
                Ok(a) => break a,
                Err(CallError::Api {
                    status: 400 | 403,
                    message,
                }) => {
                    return Err(self.err(
                        "AppRole login",
                        VaultFailure::LoginRefused {
                            role_id_hint: format!("(role-id from {})", self.s.role_id.describe()),
                            detail: message,
                        },
                    ));
                }
                Err(e) => {
                    let f = e.into_failure(&format!("auth/{mount}/login"));
                    if !f.is_transient() || attempt + 1 >= self.s.retry.max_attempts {
                        return Err(self.err("AppRole login", f));
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.s.retry.backoff(attempt)).await;
                    attempt += 1;
                }
            }
        };
        let token = SecretString::new(std::mem::take(&mut auth.client_token));
        auth.accessor.zeroize();
        let client = Arc::new(build_client(&self.s, token.expose())?);
        drop(token);
        let lease = Duration::from_secs(auth.lease_duration);
        let mut g = self
            .token
            .lock()
            .map_err(|_| KeyError::Crypto("vault token lock poisoned"))?;
        let generation = g.as_ref().map_or(1, |t| t.generation + 1);
        *g = Some(Token {
            client: client.clone(),
            obtained: Instant::now(),
            lease,
            renewable: auth.renewable,
            first_lease: lease,
            near_max_ttl: false,
            generation,
        });
        drop(g);
        self.logins.fetch_add(1, Ordering::Relaxed);
        tracing::info!(vault = %self.addr(), lease_secs = auth.lease_duration, "logged in to Vault with AppRole");
        Ok(client)
    }

    async fn client(&self) -> Result<(Arc<VaultClient>, u64), KeyError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        self.login(None).await?;
        self.current()
            .ok_or_else(|| self.err("login", VaultFailure::TokenExpired))
    }

    /// Run one Vault call with the retry policy and the 403 check. See the module docs.
    async fn call<T, F, Fut>(&self, op: &'static str, path: &str, f: F) -> Result<T, KeyError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut attempt = 0;
        let mut relogged = false;
        loop {
            let (client, generation) = self.client().await?;
            let failure = match f(client.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) => e.into_failure(path),
            };
            if let VaultFailure::PermissionDenied { .. } = failure {
                if relogged {
                    return Err(self.err(op, failure));
                }
                match vaultrs::token::lookup_self(&*client)
                    .await
                    .map_err(CallError::from)
                {
                    Ok(_) => return Err(self.err(op, failure)),
                    Err(CallError::Api { status: 403, .. }) => {
                        // The token is dead (revoked, expired early): a fresh login, once.
                        tracing::warn!(vault = %self.addr(), op, "Vault token refused; logging in again");
                        relogged = true;
                        self.login(Some(generation)).await.map_err(|e| match e {
                            KeyError::Vault { failure: f, .. } if !f.is_transient() => {
                                self.err(op, VaultFailure::TokenExpired)
                            }
                            other => other,
                        })?;
                        continue;
                    }
                    Err(e) => {
                        let f = e.into_failure("auth/token/lookup-self");
                        if !f.is_transient() {
                            return Err(self.err(op, failure));
                        }
                        // Vault went away between the two calls: retry below.
                    }
                }
            } else if !failure.is_transient() {
                return Err(self.err(op, failure));
            }
            if attempt + 1 >= self.s.retry.max_attempts {
                return Err(self.err(op, failure));
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(vault = %self.addr(), op, attempt, "transient Vault failure, retrying");
            tokio::time::sleep(self.s.retry.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// GET a path with the current token, outside vaultrs (see the module docs).
    async fn raw_get(
        &self,
        client: &VaultClient,
        path: &str,
    ) -> Result<serde_json::Value, CallError> {
        let url = format!("{}/v1/{path}", self.addr().trim_end_matches('/'));
        let mut req = client.http.http.get(&url);
        if !client.middle.token.is_empty() {
            req = req.header("X-Vault-Token", client.middle.token.as_str());
        }
        if let Some(ns) = &self.s.namespace {
            req = req.header("X-Vault-Namespace", ns.as_str());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CallError::Network(chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| CallError::Network(chain(&e)))?;
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let message = json
                .as_ref()
                .and_then(|j| j.get("errors"))
                .and_then(|e| e.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| format!("HTTP {status}"));
            return Err(CallError::Api {
                status,
                message: short(&message),
            });
        }
        json.ok_or_else(|| CallError::Parse(format!("GET {path}: the body is not JSON")))
    }

    async fn read_key(&self, name: &str) -> Result<KeyInfo, KeyError> {
        let path = format!("{}/keys/{name}", self.s.transit_mount);
        let p2 = path.clone();
        let v = self
            .call("read key", &path, |c| {
                let p = p2.clone();
                async move { self.raw_get(&c, &p).await }
            })
            .await?;
        parse_key(&v).map_err(|detail| {
            self.err(
                "read key",
                VaultFailure::BadResponse {
                    detail: format!("{path}: {detail}"),
                },
            )
        })
    }

    async fn health(&self) -> Health {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct H {
            initialized: bool,
            sealed: bool,
            standby: bool,
            version: String,
        }
        let path = "sys/health?standbyok=true&perfstandbyok=true&sealedcode=200&uninitcode=200";
        let backend = format!("vault {}", self.addr());
        match self.raw_get(&self.anon, path).await {
            Ok(v) => {
                let h: H = serde_json::from_value(v).unwrap_or_default();
                Health {
                    backend,
                    reachable: true,
                    sealed: h.sealed,
                    detail: format!(
                        "version {}, initialized {}, sealed {}, standby {}",
                        h.version, h.initialized, h.sealed, h.standby
                    ),
                }
            }
            Err(e) => Health {
                backend,
                reachable: false,
                sealed: false,
                detail: e.into_failure("sys/health").to_string(),
            },
        }
    }

    /// Renew the token; a refusal is answered with a fresh login.
    async fn renew(&self) -> Result<(), KeyError> {
        // No margin here: renewing a token in its last moments is still worth trying.
        let Some((client, generation)) = self.token_within(|_| Duration::ZERO) else {
            return self.login(None).await.map(|_| ());
        };
        match vaultrs::token::renew_self(&*client, None)
            .await
            .map_err(CallError::from)
        {
            Ok(mut auth) => {
                auth.client_token.zeroize();
                let mut g = self
                    .token
                    .lock()
                    .map_err(|_| KeyError::Crypto("vault token lock poisoned"))?;
                if let Some(t) = g.as_mut().filter(|t| t.generation == generation) {
                    t.obtained = Instant::now();
                    t.lease = Duration::from_secs(auth.lease_duration);
                    t.renewable = auth.renewable;
                    // Vault caps renewals at the token's maximum TTL: log in afresh instead.
                    t.near_max_ttl = t.lease < t.first_lease;
                }
                drop(g);
                self.renewals.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(vault = %self.addr(), lease_secs = auth.lease_duration, "Vault token renewed");
                Ok(())
            }
            Err(e) => {
                let f = e.into_failure("auth/token/renew-self");
                if f.is_transient() {
                    return Err(self.err("renew token", f));
                }
                self.renewals_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(vault = %self.addr(), "Vault refused to renew the token; logging in again");
                self.login(Some(generation)).await.map(|_| ())
            }
        }
    }

    /// When the renewal task should act next, and whether to renew or log in afresh.
    fn plan(&self) -> (Instant, bool) {
        let now = Instant::now();
        let Ok(g) = self.token.lock() else {
            return (now, false);
        };
        match g.as_ref() {
            None => (now, false),
            Some(t) => {
                let at = t.obtained + t.lease.mul_f64(2.0 / 3.0);
                (at, t.renewable && !t.near_max_ttl)
            }
        }
    }
}

/// The background task: renew at two thirds of the lease, log in when renewal is refused
/// or the maximum TTL is near, back off while Vault is away. Ends when the backend drops.
async fn renewal_loop(inner: Weak<Inner>) {
    let mut delay = Duration::ZERO;
    loop {
        let Some(i) = inner.upgrade() else { return };
        let (at, renew) = i.plan();
        let floor = i.s.retry.initial_backoff;
        drop(i);
        tokio::time::sleep_until(at.max(Instant::now() + delay)).await;
        let Some(i) = inner.upgrade() else { return };
        let r = if renew {
            i.renew().await
        } else {
            i.login(i.current().map(|c| c.1)).await.map(|_| ())
        };
        delay = match r {
            Ok(()) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(error = %e, "Vault session upkeep failed; will retry");
                (delay * 2).clamp(floor, Duration::from_secs(30))
            }
        };
    }
}

fn parse_key(v: &serde_json::Value) -> Result<KeyInfo, String> {
    let data = v.get("data").ok_or("no data field")?;
    let keys = data
        .get("keys")
        .and_then(|k| k.as_object())
        .ok_or("no keys map")?;
    let mut versions = Vec::new();
    let mut public_keys = BTreeMap::new();
    for (k, val) in keys {
        let version: u32 = k
            .parse()
            .map_err(|_| format!("key version {k:?} is not a number"))?;
        let created_unix = if let Some(n) = val.as_u64() {
            n
        } else if let Some(obj) = val.as_object() {
            if let Some(pk) = obj.get("public_key").and_then(|p| p.as_str()) {
                public_keys.insert(version, pk.to_owned());
            }
            obj.get("creation_time")
                .and_then(|t| t.as_str())
                .and_then(|t| {
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map_or(0, |t| u64::try_from(t.unix_timestamp()).unwrap_or(0))
        } else {
            return Err(format!("key version {version}: unexpected entry"));
        };
        versions.push(KekVersion {
            version,
            created_unix,
        });
    }
    versions.sort_by_key(|v| v.version);
    // OpenBao and Vault omit or include `latest_version`; the map is the truth.
    let latest_version = versions
        .last()
        .map(|v| v.version)
        .ok_or("no key versions")?;
    let min = data
        .get("min_decryption_version")
        .and_then(|m| m.as_u64())
        .and_then(|m| u32::try_from(m).ok())
        .ok_or("no min_decryption_version")?;
    Ok(KeyInfo {
        latest_version,
        min_decryption_version: min,
        versions,
        public_keys,
    })
}

fn decode_dek(b64: &str) -> Option<Zeroizing<[u8; DATA_KEY_LEN]>> {
    let bytes = Zeroizing::new(B64.decode(b64).ok()?);
    let arr: [u8; DATA_KEY_LEN] = bytes.as_slice().try_into().ok()?;
    Some(Zeroizing::new(arr))
}

impl KeyBackend for VaultBackend {
    fn kind(&self) -> &'static str {
        PREFIX
    }

    fn describe(&self) -> String {
        format!(
            "vault {}/v1/{}/keys/{}",
            self.inner.s.address.trim_end_matches('/'),
            self.inner.s.transit_mount,
            self.inner.s.key
        )
    }

    fn generate_data_key(&self) -> BackendFuture<'_, DataKey> {
        Box::pin(async move {
            let i = &self.inner;
            let (mount, key) = (i.s.transit_mount.clone(), i.s.key.clone());
            let path = format!("{mount}/datakey/plaintext/{key}");
            let mut resp = i
                .call("generate data key", &path, |c| {
                    let (mount, key) = (mount.clone(), key.clone());
                    async move {
                        vaultrs::transit::generate::data_key(
                            &*c,
                            &mount,
                            &key,
                            DataKeyType::Plaintext,
                            None,
                        )
                        .await
                        .map_err(CallError::from)
                    }
                })
                .await?;
            let plain = resp.plaintext.take().map(Zeroizing::new);
            let bad = |detail: &str| {
                i.err(
                    "generate data key",
                    VaultFailure::BadResponse {
                        detail: detail.to_owned(),
                    },
                )
            };
            let plaintext = plain
                .as_deref()
                .and_then(|p| decode_dek(p))
                .ok_or_else(|| bad("no 32-byte plaintext data key"))?;
            let wrapped = WrappedKey::parse(&resp.ciphertext)
                .filter(|w| w.backend() == PREFIX)
                .ok_or_else(|| bad("ciphertext is not vault:vN:…"))?;
            Ok(DataKey { plaintext, wrapped })
        })
    }

    fn unwrap_data_key<'a>(
        &'a self,
        wrapped: &'a WrappedKey,
    ) -> BackendFuture<'a, Zeroizing<[u8; DATA_KEY_LEN]>> {
        Box::pin(async move {
            let i = &self.inner;
            self.check_prefix(wrapped)?;
            let (mount, key) = (i.s.transit_mount.clone(), i.s.key.clone());
            let path = format!("{mount}/decrypt/{key}");
            let ct = wrapped.as_str().to_owned();
            let r = i
                .call("unwrap data key", &path, |c| {
                    let (mount, key, ct) = (mount.clone(), key.clone(), ct.clone());
                    async move {
                        vaultrs::transit::data::decrypt(&*c, &mount, &key, &ct, None)
                            .await
                            .map_err(CallError::from)
                    }
                })
                .await;
            let mut resp = match r {
                Ok(r) => r,
                Err(e) => return Err(self.explain_rejection(e, wrapped).await),
            };
            let plain = Zeroizing::new(std::mem::take(&mut resp.plaintext));
            decode_dek(&plain).ok_or_else(|| {
                i.err(
                    "unwrap data key",
                    VaultFailure::BadResponse {
                        detail: "plaintext is not a 32-byte base64 data key".into(),
                    },
                )
            })
        })
    }

    fn rewrap<'a>(&'a self, wrapped: &'a WrappedKey) -> BackendFuture<'a, WrappedKey> {
        Box::pin(async move {
            let i = &self.inner;
            self.check_prefix(wrapped)?;
            let (mount, key) = (i.s.transit_mount.clone(), i.s.key.clone());
            let path = format!("{mount}/rewrap/{key}");
            let ct = wrapped.as_str().to_owned();
            let r = i
                .call("rewrap data key", &path, |c| {
                    let (mount, key, ct) = (mount.clone(), key.clone(), ct.clone());
                    async move {
                        vaultrs::transit::data::rewrap(&*c, &mount, &key, &ct, None)
                            .await
                            .map_err(CallError::from)
                    }
                })
                .await;
            let resp = match r {
                Ok(r) => r,
                Err(e) => return Err(self.explain_rejection(e, wrapped).await),
            };
            WrappedKey::parse(&resp.ciphertext)
                .filter(|w| w.backend() == PREFIX)
                .ok_or_else(|| {
                    i.err(
                        "rewrap data key",
                        VaultFailure::BadResponse {
                            detail: "ciphertext is not vault:vN:…".into(),
                        },
                    )
                })
        })
    }

    fn rotate_kek(&self) -> BackendFuture<'_, u32> {
        Box::pin(async move {
            let i = &self.inner;
            let (mount, key) = (i.s.transit_mount.clone(), i.s.key.clone());
            let path = format!("{mount}/keys/{key}/rotate");
            i.call("rotate key", &path, |c| {
                let (mount, key) = (mount.clone(), key.clone());
                async move {
                    vaultrs::transit::key::rotate(&*c, &mount, &key)
                        .await
                        .map_err(CallError::from)
                }
            })
            .await?;
            let v = i.read_key(&key).await?.latest_version;
            tracing::info!(key = %self.describe(), version = v, "KEK rotated");
            Ok(v)
        })
    }

    fn kek_status(&self) -> BackendFuture<'_, KekStatus> {
        Box::pin(async move {
            let info = self.inner.read_key(&self.inner.s.key).await?;
            Ok(KekStatus {
                key: self.describe(),
                latest_version: info.latest_version,
                min_decryption_version: info.min_decryption_version,
                versions: info.versions,
            })
        })
    }

    fn set_min_decryption_version(&self, version: u32) -> BackendFuture<'_, ()> {
        Box::pin(async move {
            let i = &self.inner;
            let info = i.read_key(&i.s.key).await?;
            if version == 0 || version > info.latest_version {
                return Err(KeyError::Refused {
                    op: "raise the minimum decryption version",
                    reason: format!(
                        "version {version} is not between 1 and the latest ({})",
                        info.latest_version
                    ),
                });
            }
            if version < info.min_decryption_version {
                return Err(KeyError::Refused {
                    op: "lower the minimum decryption version",
                    reason: format!(
                        "it is {}; a revoked version stays revoked",
                        info.min_decryption_version
                    ),
                });
            }
            let (mount, key) = (i.s.transit_mount.clone(), i.s.key.clone());
            let path = format!("{mount}/keys/{key}/config");
            i.call("set min_decryption_version", &path, |c| {
                let (mount, key) = (mount.clone(), key.clone());
                async move {
                    let mut opts = UpdateKeyConfigurationRequest::builder();
                    opts.min_decryption_version(Some(u64::from(version)));
                    vaultrs::transit::key::update(&*c, &mount, &key, Some(&mut opts))
                        .await
                        .map_err(CallError::from)
                }
            })
            .await?;
            tracing::info!(key = %self.describe(), min_decryption_version = version, "KEK versions revoked");
            Ok(())
        })
    }

    fn health(&self) -> BackendFuture<'_, Health> {
        Box::pin(async move { Ok(self.inner.health().await) })
    }
}

impl VaultBackend {
    fn check_prefix(&self, wrapped: &WrappedKey) -> Result<(), KeyError> {
        if wrapped.backend() == PREFIX {
            Ok(())
        } else {
            Err(KeyError::WrongBackend {
                blob: "(data key)".into(),
                expected: PREFIX,
                found: wrapped.backend().to_owned(),
            })
        }
    }

    /// Turn a 400 on decrypt/rewrap into a revoked-version or rejected-key error.
    async fn explain_rejection(&self, e: KeyError, wrapped: &WrappedKey) -> KeyError {
        let KeyError::Vault {
            failure: VaultFailure::Rejected { message, .. },
            ..
        } = &e
        else {
            return e;
        };
        let lower = message.to_ascii_lowercase();
        if lower.contains("disallowed by policy") || lower.contains("too old") {
            let min = match self.inner.read_key(&self.inner.s.key).await {
                Ok(info) => info.min_decryption_version,
                Err(_) => wrapped.version() + 1,
            };
            return KeyError::KeyVersionRevoked {
                key: self.describe(),
                version: wrapped.version(),
                min,
            };
        }
        KeyError::WrappedKeyRejected {
            key: self.describe(),
            what: format!("{wrapped:?}"),
            reason: message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_read_parsing_is_lenient_about_fields_and_strict_about_shape() {
        let v = serde_json::json!({"data": {"keys": {"1": 1700000000u64, "3": 1700000300u64, "2": 1700000100u64},
            "min_decryption_version": 2, "type": "aes256-gcm96"}});
        let k = parse_key(&v).unwrap();
        assert_eq!((k.latest_version, k.min_decryption_version), (3, 2));
        assert_eq!(k.versions[0].created_unix, 1700000000);
        let v = serde_json::json!({"data": {"keys": {"1": {"public_key": "AAAA", "creation_time": "2026-01-01T00:00:00Z", "name": "ed25519"}},
            "min_decryption_version": 1}});
        let k = parse_key(&v).unwrap();
        assert_eq!(k.public_keys.get(&1).map(String::as_str), Some("AAAA"));
        assert!(k.versions[0].created_unix > 1_700_000_000);
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"data": {"keys": {}}}),
            serde_json::json!({"data": {"keys": {"x": 1}, "min_decryption_version": 1}}),
            serde_json::json!({"data": {"keys": {"1": 1}}}),
        ] {
            assert!(parse_key(&bad).is_err());
        }
    }

    #[test]
    fn connect_checks_its_inputs_without_panicking() {
        let s = VaultSettings {
            address: "http://127.0.0.1:8200".into(),
            transit_mount: "transit".into(),
            key: "k".into(),
            approle_mount: "approle".into(),
            role_id: SecretSource::Env("X".into()),
            secret_id: SecretSource::Env("Y".into()),
            ca_cert: None,
            namespace: None,
            request_timeout: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            protector: Arc::new(crate::sealing::PlainFile),
        };
        // No runtime: a typed error, not a panic.
        assert!(matches!(
            VaultBackend::connect(s.clone()),
            Err(KeyError::Config { .. })
        ));
        for addr in ["not a url", "ftp://x", ""] {
            let mut bad = s.clone();
            bad.address = addr.into();
            assert!(matches!(
                VaultBackend::connect_without_renewal(bad),
                Err(KeyError::Config { .. })
            ));
        }
        assert!(VaultBackend::connect_without_renewal(s).is_ok());
    }

    #[test]
    fn classification() {
        let f = |status, m: &str| {
            CallError::Api {
                status,
                message: m.into(),
            }
            .into_failure("p")
        };
        assert_eq!(f(503, "Vault is sealed"), VaultFailure::Sealed);
        assert!(matches!(
            f(403, "permission denied"),
            VaultFailure::PermissionDenied { .. }
        ));
        assert!(matches!(f(404, ""), VaultFailure::NotFound { .. }));
        assert!(f(502, "").is_transient());
        assert!(!f(400, "bad").is_transient());
        assert!(
            CallError::Network("refused".into())
                .into_failure("p")
                .is_transient()
        );
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(0), Duration::from_millis(200));
        assert_eq!(p.backoff(40), Duration::from_secs(3));
    }
}
