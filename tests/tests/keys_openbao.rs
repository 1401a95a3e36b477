//! The key-backend suite and the Vault session against a real OpenBao (`bao server`).
//!
//! Most tests share one dev server (each on its own Transit keys and AppRole mount); the
//! outage test runs its own Raft-backed server so it can stop it and start it again.
//! Needs `bao`: see `parley_tests::openbao::MISSING_BAO`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_keys::backend::KeyBackend;
use parley_keys::envelope::EnvelopeStore;
use parley_keys::signer::TransitSigner;
use parley_keys::store::{BlobId, BlobStore, MemoryStore};
use parley_keys::vault::VaultBackend;
use parley_keys::{KeyError, Signer, VaultFailure};
use parley_tests::keys_suite;
use parley_tests::openbao::{Bao, Provision, shared_dev, write_0600};

fn failure(e: &KeyError) -> &VaultFailure {
    match e {
        KeyError::Vault { failure, .. } => failure,
        other => panic!("expected a Vault error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_against_openbao() {
    let node = shared_dev().provision("suite", &Provision::default());
    let backend = Arc::new(VaultBackend::connect(node.settings()).unwrap());
    keys_suite::all(backend.clone()).await;
    let st = backend.kek_status().await.unwrap();
    assert!(st.latest_version >= 4, "{st:?}");
    assert!(
        st.key.contains("/v1/transit/keys/parley-suite"),
        "{}",
        st.key
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_health_and_wrong_credentials() {
    let bao = shared_dev();
    let node = bao.provision("login", &Provision::default());
    let backend = VaultBackend::connect_without_renewal(node.settings()).unwrap();
    let h = backend.health().await.unwrap();
    assert!(h.reachable && !h.sealed, "{h:?}");
    assert!(h.detail.contains("2."), "{h:?}");
    backend.login().await.unwrap();
    assert_eq!(backend.stats().logins, 1);

    // A wrong secret-id: a typed refusal naming where the secret came from, never the secret.
    write_0600(
        &node.secret_id_path(),
        "00000000-0000-0000-0000-000000000000",
    );
    let bad = VaultBackend::connect_without_renewal(node.settings()).unwrap();
    let err = bad.login().await.unwrap_err();
    assert!(
        matches!(failure(&err), VaultFailure::LoginRefused { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("role-id from file"), "{text}");
    assert!(
        !text.contains(&node.secret_id) && !text.contains(&node.role_id),
        "{text}"
    );
    // New work fails closed with the same typed error.
    let es = EnvelopeStore::new(Arc::new(bad), Arc::new(MemoryStore::new()));
    let err = es.put(&keys_suite::id("x"), b"x").await.unwrap_err();
    assert!(matches!(failure(&err), VaultFailure::LoginRefused { .. }));
    // The secret-id is re-read at every login: issuing a new one fixes it without a restart.
    bao.new_secret_id(&node, "login");
    es.put(&keys_suite::id("x"), b"x").await.unwrap();

    // A wrong role-id, and an unreachable address.
    write_0600(&node.dir.path().join("role-id"), "not-a-role");
    let err = VaultBackend::connect_without_renewal(node.settings())
        .unwrap()
        .login()
        .await
        .unwrap_err();
    assert!(matches!(failure(&err), VaultFailure::LoginRefused { .. }));
    let mut s = node.settings();
    s.address = "http://127.0.0.1:1".into();
    let err = VaultBackend::connect_without_renewal(s)
        .unwrap()
        .login()
        .await
        .unwrap_err();
    assert!(
        matches!(failure(&err), VaultFailure::Unreachable { .. }),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_denied_is_typed_and_not_retried() {
    let node = shared_dev().provision(
        "noperm",
        &Provision {
            may_rotate: false,
            ..Provision::default()
        },
    );
    let backend = VaultBackend::connect_without_renewal(node.settings()).unwrap();
    let err = backend.rotate_kek().await.unwrap_err();
    match failure(&err) {
        VaultFailure::PermissionDenied { path } => {
            assert_eq!(path, "transit/keys/parley-noperm/rotate")
        }
        other => panic!("{other}"),
    }
    assert!(!err.is_transient());
    let st = backend.stats();
    assert_eq!((st.logins, st.retries), (1, 0), "{st:?}");
    // Permitted operations still work with the same token.
    let es = EnvelopeStore::new(Arc::new(backend), Arc::new(MemoryStore::new()));
    es.put(&keys_suite::id("ok"), b"fine").await.unwrap();
}

/// Short TTLs: the background task renews, and logs in afresh when the maximum TTL nears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_with_short_ttls() {
    let node = shared_dev().provision(
        "renew",
        &Provision {
            token_ttl: "6s",
            token_max_ttl: "12s",
            may_rotate: true,
        },
    );
    let backend = Arc::new(VaultBackend::connect(node.settings()).unwrap());
    let es = EnvelopeStore::new(backend.clone(), Arc::new(MemoryStore::new()));
    let id = keys_suite::id("renew/a");
    let start = Instant::now();
    let mut i = 0u32;
    // TTLs of seconds, not fractions: a renewer woken a second late on a loaded machine
    // must still renew in time.
    while start.elapsed() < Duration::from_secs(14) {
        es.put(&id, &i.to_be_bytes()).await.unwrap();
        assert_eq!(es.get(&id).await.unwrap().as_slice(), i.to_be_bytes());
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let st = backend.stats();
    // Every 4 s a renewal or a login; the 12 s maximum forces at least one fresh login.
    assert!(st.renewals >= 2, "{st:?}");
    assert!(st.logins >= 2, "{st:?}");
    // No operation ever needed the 403 path: the token was always fresh.
    assert_eq!(st.renewals_refused, 0, "{st:?}");
}

/// A token revoked behind the node's back: operations log in again; so does the renewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relogin_after_revocation_and_expiry() {
    let bao = shared_dev();
    let node = bao.provision(
        "relogin",
        &Provision {
            token_ttl: "2s",
            token_max_ttl: "1h",
            may_rotate: true,
        },
    );
    // Without renewal: the token expires; the next operation logs in first.
    let backend = Arc::new(VaultBackend::connect_without_renewal(node.settings()).unwrap());
    let es = EnvelopeStore::new(backend.clone(), Arc::new(MemoryStore::new()));
    let id = keys_suite::id("relogin/a");
    es.put(&id, b"one").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(es.get(&id).await.unwrap().as_slice(), b"one");
    assert_eq!(backend.stats().logins, 2);

    // Revoked by an operator: the 403 is recognised (lookup-self fails) and answered by
    // one fresh login.
    bao.revoke_tokens(&node);
    assert_eq!(es.get(&id).await.unwrap().as_slice(), b"one");
    assert_eq!(backend.stats().logins, 3);

    // With renewal: a revoked token's renewal is refused and the task logs in again.
    let renewing = Arc::new(VaultBackend::connect(node.settings()).unwrap());
    renewing.login().await.unwrap();
    let logins_before = renewing.stats().logins;
    bao.revoke_tokens(&node);
    // The renewer either has its renewal refused and logs in again, or (on a loaded
    // machine, waking after the 2 s token has expired by its own clock) logs in directly.
    let deadline = Instant::now() + Duration::from_secs(20);
    while renewing.stats().logins == logins_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let st = renewing.stats();
    assert!(st.logins > logins_before, "{st:?}");
    let es2 = EnvelopeStore::new(renewing, Arc::new(MemoryStore::new()));
    es2.put(&id, b"two").await.unwrap();

    // Revoked, and the secret-id no longer valid: the typed "token expired" error, and
    // nothing stored changes. A fresh token first (the one from above has a 2 s lease that
    // the renewal part may have outlived on a loaded machine; an expired token would take
    // the "log in again" path rather than the 403 one).
    let before = es.blob_store().get(&id).unwrap();
    bao.revoke_tokens(&node);
    assert_eq!(es.get(&id).await.unwrap().as_slice(), b"one");
    write_0600(&node.secret_id_path(), "revoked-secret-id");
    bao.revoke_tokens(&node);
    let err = es.get(&id).await.unwrap_err();
    assert_eq!(failure(&err), &VaultFailure::TokenExpired, "{err}");
    assert_eq!(es.blob_store().get(&id).unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_signer() {
    let bao = shared_dev();
    let node = bao.provision("signer", &Provision::default());
    let backend = VaultBackend::connect_without_renewal(node.settings()).unwrap();
    let signer = TransitSigner::new(backend.transit_signer_session(), &node.identity_key, None)
        .await
        .unwrap();
    assert_eq!(signer.version(), 1);
    let msg = b"parley-tree-head\0{\"size\":3}";
    let sig = signer.sign(msg).await.unwrap();
    assert!(signer.public_key().verify(msg, &sig));
    assert!(!signer.public_key().verify(b"other", &sig));
    // The public key is the one OpenBao reports.
    let (_, key) = bao.api("GET", &format!("transit/keys/{}", node.identity_key), None);
    let b64 = key["data"]["keys"]["1"]["public_key"].as_str().unwrap();
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    assert_eq!(signer.public_key().as_bytes().as_slice(), raw.as_slice());
    // A key that isn't Ed25519 (the AES data-key key) is refused as a signer.
    let err = TransitSigner::new(backend.transit_signer_session(), &node.key, None)
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Config { .. }), "{err}");
}

/// OpenBao stopped mid-run: typed errors, nothing lost, new work fails closed; it comes
/// back sealed (typed); once unsealed everything works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_stopped_mid_run() {
    let mut bao = Bao::persistent();
    let node = bao.provision("outage", &Provision::default());
    let backend = Arc::new(VaultBackend::connect(node.settings()).unwrap());
    let mem = Arc::new(MemoryStore::new());
    let es = EnvelopeStore::new(backend.clone(), mem.clone());
    let ids: Vec<BlobId> = (0..5).map(|i| keys_suite::id(&format!("o/{i}"))).collect();
    for (i, id) in ids.iter().enumerate() {
        es.put(id, format!("value {i}").as_bytes()).await.unwrap();
    }
    let before: Vec<_> = ids.iter().map(|id| mem.get(id).unwrap()).collect();

    bao.stop();
    let t = Instant::now();
    let err = es.get(&ids[0]).await.unwrap_err();
    assert!(
        matches!(failure(&err), VaultFailure::Unreachable { .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert!(t.elapsed() < Duration::from_secs(5), "bounded retries");
    let err = es.put(&ids[1], b"new work").await.unwrap_err();
    assert!(
        matches!(failure(&err), VaultFailure::Unreachable { .. }),
        "{err}"
    );
    let err = es.rotate_kek().await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!backend.health().await.unwrap().reachable);
    let after: Vec<_> = ids.iter().map(|id| mem.get(id).unwrap()).collect();
    assert_eq!(
        before, after,
        "nothing stored changed while OpenBao was away"
    );

    bao.start_again();
    let h = backend.health().await.unwrap();
    assert!(h.reachable && h.sealed, "{h:?}");
    let err = es.get(&ids[0]).await.unwrap_err();
    assert_eq!(failure(&err), &VaultFailure::Sealed, "{err}");
    assert!(err.to_string().contains("unseal"));

    bao.unseal();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            es.get(id).await.unwrap().as_slice(),
            format!("value {i}").as_bytes()
        );
    }
    es.put(&ids[1], b"new work").await.unwrap();
    assert_eq!(es.rotate_kek().await.unwrap().kek_version, 2);
}

/// The AppRole secret-id as a TEE-sealed file (fake SNP device): the node unseals it at login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_secret_id_logs_in() {
    use parley_keys::sealing::{
        FakeSnpDevice, KeyRequest, RecoveryPrivateKey, TeeSealed, seal_secret_file,
    };
    use parley_keys::secret::SecretSource;

    let node = shared_dev().provision("sealedsid", &Provision::default());
    let rk = RecoveryPrivateKey::generate().unwrap();
    let sealer = Arc::new(TeeSealed::new(
        Arc::new(FakeSnpDevice::new()),
        KeyRequest::without_measurement(0, 0, 0),
        rk.public().unwrap(),
    ));
    let sealed = node.dir.path().join("secret-id.sealed");
    seal_secret_file(sealer.as_ref(), &node.secret_id, &sealed).unwrap();
    let raw = std::fs::read(&sealed).unwrap();
    assert!(!String::from_utf8_lossy(&raw).contains(&node.secret_id));
    let mut s = node.settings();
    s.secret_id = SecretSource::SealedFile(sealed.clone());
    s.protector = sealer;
    let backend = VaultBackend::connect_without_renewal(s).unwrap();
    backend.login().await.unwrap();
    // Another chip can't unseal it: a typed error naming the sealed file.
    let mut s = node.settings();
    s.secret_id = SecretSource::SealedFile(sealed);
    s.protector = Arc::new(TeeSealed::new(
        Arc::new(FakeSnpDevice::new()),
        KeyRequest::without_measurement(0, 0, 0),
        rk.public().unwrap(),
    ));
    let err = VaultBackend::connect_without_renewal(s)
        .unwrap()
        .login()
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Secret { .. }), "{err}");
    assert!(err.to_string().contains("sealed file"), "{err}");
}
