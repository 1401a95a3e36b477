//! A full key-management run with every log record captured at TRACE level (ours, vaultrs,
//! reqwest, hyper), then the captured text is searched for the secrets the run handled:
//! the AppRole secret-id, Vault tokens, the local KEKs, data keys, blob plaintexts and the
//! identity key. Errors and `Debug` output of every handle are logged too.

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use parley_keys::backend::{KeyBackend, WrappedKey};
use parley_keys::envelope::EnvelopeStore;
use parley_keys::keyring::LocalKeyring;
use parley_keys::signer::{SealedSigner, TransitSigner};
use parley_keys::store::{BlobId, BlobStore, MemoryStore};
use parley_keys::vault::VaultBackend;
use parley_keys::{KeyError, Signer};
use parley_tests::keys_suite;
use parley_tests::openbao::{Provision, shared_dev, write_0600};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Data keys of every blob in `mem`, unwrapped through the backend (the test's own view).
async fn data_keys(backend: &dyn KeyBackend, mem: &MemoryStore) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for id in mem.list().unwrap() {
        let rec = mem.get(&id).unwrap().unwrap();
        let len = usize::from(u16::from_be_bytes([rec.sealed[20], rec.sealed[21]]));
        let text = std::str::from_utf8(&rec.sealed[22..22 + len]).unwrap();
        let w = WrappedKey::parse(text).unwrap();
        if let Ok(k) = backend.unwrap_data_key(&w).await {
            out.push(k.to_vec());
        }
    }
    out
}

/// Every 32-byte KEK in a plain keyring file (format in `parley_keys::keyring`).
fn keyring_keys(path: &std::path::Path) -> Vec<Vec<u8>> {
    let b = std::fs::read(path).unwrap();
    let n = u32::from_be_bytes(b[8..12].try_into().unwrap()) as usize;
    (0..n)
        .map(|i| b[12 + i * 44 + 12..12 + i * 44 + 44].to_vec())
        .collect()
}

fn forms(secret: &[u8]) -> Vec<String> {
    vec![
        hex::encode(secret),
        B64.encode(secret),
        // Any 12-byte window of the base64 form (a secret split across lines or re-encoded).
        B64.encode(secret)[..16].to_owned(),
        format!("{secret:?}")[..40.min(format!("{secret:?}").len())].to_owned(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_material_in_logs() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let mut secrets: Vec<(String, String)> = Vec::new();
    let plaintexts = ["PLAINTEXT-MARKER-alpha-7f3e", "PLAINTEXT-MARKER-beta-19ac"];

    // --- Vault / OpenBao ---
    let bao = shared_dev();
    let node = bao.provision(
        "logs",
        &Provision {
            token_ttl: "2s",
            token_max_ttl: "4s",
            may_rotate: true,
        },
    );
    secrets.push(("secret-id".into(), node.secret_id.clone()));
    let vault = Arc::new(VaultBackend::connect(node.settings()).unwrap());
    tracing::info!(?vault, settings = ?node.settings(), "vault backend");
    let mem = Arc::new(MemoryStore::new());
    let es = EnvelopeStore::new(vault.clone(), mem.clone());
    for (i, p) in plaintexts.iter().enumerate() {
        es.put(&keys_suite::id(&format!("log/{i}")), p.as_bytes())
            .await
            .unwrap();
    }
    let signer = SealedSigner::open_or_create(&es, &keys_suite::id("identity/node-key"))
        .await
        .unwrap();
    tracing::info!(?signer, "sealed signer");
    let pkcs8 = es.get(&keys_suite::id("identity/node-key")).await.unwrap();
    secrets.push(("identity key pkcs8".into(), hex::encode(&pkcs8[16..48])));
    let transit = TransitSigner::new(vault.transit_signer_session(), &node.identity_key, None)
        .await
        .unwrap();
    transit.sign(b"hello").await.unwrap();
    es.rotate_kek().await.unwrap();
    es.rotate_data().await.unwrap();
    es.revoke_below_latest().await.unwrap();
    // Renewals and a fresh login happen in the background meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    bao.revoke_tokens(&node);
    es.get(&keys_suite::id("log/0")).await.unwrap();
    for k in data_keys(vault.as_ref(), &mem).await {
        secrets.push(("vault data key".into(), hex::encode(&k)));
        for f in forms(&k) {
            secrets.push(("vault data key (form)".into(), f));
        }
    }
    // Failures are logged with their Display and Debug forms.
    let mut rec = mem.get(&keys_suite::id("log/0")).unwrap().unwrap();
    let n = rec.sealed.len();
    rec.sealed[n - 3] ^= 1;
    let e = es
        .open_record(&keys_suite::id("log/0"), &rec)
        .await
        .unwrap_err();
    tracing::error!(error = %e, debug = ?e, "tampered blob");
    write_0600(&node.secret_id_path(), "wrong-secret-id-marker");
    let bad = VaultBackend::connect_without_renewal(node.settings()).unwrap();
    let e: KeyError = bad.login().await.unwrap_err();
    tracing::error!(error = %e, debug = ?e, "bad login");
    secrets.push(("wrong secret-id".into(), "wrong-secret-id-marker".into()));

    // --- Local keyring ---
    let dir = tempfile::tempdir().unwrap();
    let keyring_path = dir.path().join("keyring");
    let local = Arc::new(LocalKeyring::create(&keyring_path).unwrap());
    tracing::info!(?local, "local backend");
    let lmem = Arc::new(MemoryStore::new());
    let les = EnvelopeStore::new(local.clone(), lmem.clone());
    for (i, p) in plaintexts.iter().enumerate() {
        les.put(&BlobId::new(&format!("l/{i}")).unwrap(), p.as_bytes())
            .await
            .unwrap();
    }
    les.rotate_kek().await.unwrap();
    les.rotate_data().await.unwrap();
    let st = les.status().await.unwrap();
    tracing::info!(?st, "status");
    for k in keyring_keys(&keyring_path) {
        for f in forms(&k) {
            secrets.push(("local KEK".into(), f));
        }
    }
    for k in data_keys(local.as_ref(), &lmem).await {
        for f in forms(&k) {
            secrets.push(("local data key".into(), f));
        }
    }
    for p in plaintexts {
        secrets.push(("plaintext".into(), p.into()));
    }

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.len() > 2000,
        "the run was logged ({} bytes)",
        logs.len()
    );
    assert!(
        logs.contains("logged in to Vault"),
        "our own events are captured"
    );
    assert!(
        logs.contains("start request"),
        "vaultrs's TRACE events are captured"
    );
    for (what, s) in &secrets {
        assert!(!logs.contains(s.as_str()), "{what} appears in the logs");
    }
    // Vault tokens (OpenBao service tokens start with "s.", Vault's with "hvs.").
    for (i, _) in logs.match_indices("s.") {
        let tail: String = logs[i + 2..].chars().take(24).collect();
        let looks_like_token = tail.len() == 24 && tail.chars().all(|c| c.is_ascii_alphanumeric());
        let before = logs[..i].chars().last().unwrap_or(' ');
        assert!(
            !looks_like_token || before.is_ascii_alphanumeric(),
            "something token-like in the logs: s.{tail}"
        );
    }
    assert!(
        !logs.contains("X-Vault-Token:"),
        "a token header in the logs"
    );
}
