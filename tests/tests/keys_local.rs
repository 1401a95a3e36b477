//! The key-backend suite against the local keyring backend, and the crash-safety of
//! `rotate-data` (a child process killed mid-rotation, then run again).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use parley_keys::envelope::EnvelopeStore;
use parley_keys::keyring::LocalKeyring;
use parley_keys::store::{BlobId, BlobStore, FileStore};
use parley_tests::keys_suite;

#[tokio::test]
async fn suite_against_local_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(LocalKeyring::create(&dir.path().join("keyring")).unwrap());
    keys_suite::all(backend).await;
}

fn contents(i: usize) -> Vec<u8> {
    format!("blob {i} {}", "payload ".repeat(i % 13)).into_bytes()
}

async fn open_store(dir: &Path) -> EnvelopeStore {
    let backend = Arc::new(LocalKeyring::open(&dir.join("keyring")).unwrap());
    let store = Arc::new(FileStore::open(&dir.join("store")).unwrap());
    EnvelopeStore::new(backend, store)
}

async fn assert_all_open(es: &EnvelopeStore, n: usize) {
    for i in 0..n {
        let id = BlobId::new(&format!("blob-{i:03}")).unwrap();
        assert_eq!(
            es.get(&id).await.unwrap().as_slice(),
            contents(i).as_slice(),
            "{id}"
        );
    }
}

/// Kill `keys-rotate-child` after `kill_after` blobs (SIGKILL: no cleanup of any kind),
/// check nothing is lost, run it again, check it finishes the same job.
#[tokio::test]
async fn rotate_data_survives_being_killed() {
    const N: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    LocalKeyring::create(&dir.path().join("keyring")).unwrap();
    let es = open_store(dir.path()).await;
    for i in 0..N {
        es.put(&BlobId::new(&format!("blob-{i:03}")).unwrap(), &contents(i))
            .await
            .unwrap();
    }
    let child = env!("CARGO_BIN_EXE_keys-rotate-child");
    let store_dir = dir.path().join("store");
    let keyring = dir.path().join("keyring");
    let mut generation = 0;
    // Killed early, midway and near the end; the last kill leaves the child three blobs
    // (≥ 300 ms of its pacing) to spare, so a test thread woken late on a loaded machine
    // still kills it before it finishes.
    for kill_after in [1, 17, N - 3] {
        let mut proc = Command::new(child)
            .arg(&store_dir)
            .arg(&keyring)
            .arg("100")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
        for _ in 0..kill_after {
            let l = lines.next().unwrap().unwrap();
            assert!(l.starts_with("rotated "), "{l}");
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(proc.id()).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        proc.wait().unwrap();
        generation += 1;

        // Killed mid-way: the job is pending, blobs are in two generations, all open.
        let es = open_store(dir.path()).await;
        let st = es.status().await.unwrap();
        assert_eq!(
            st.pending_data_rotation,
            Some(generation),
            "after {kill_after}"
        );
        let done = st
            .blobs
            .iter()
            .filter(|b| b.generation == generation)
            .count();
        assert!(done >= kill_after && done < N, "{done} of {N} rotated");
        assert_eq!(st.blob_count, N);
        assert_all_open(&es, N).await;

        // The restart finishes the job.
        let out = Command::new(child)
            .arg(&store_dir)
            .arg(&keyring)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = String::from_utf8_lossy(&out.stdout);
        let last = last.lines().last().unwrap();
        assert_eq!(last, format!("done {} true", N - done), "{last}");
        let st = es.status().await.unwrap();
        assert!(st.pending_data_rotation.is_none());
        assert!(
            st.blobs
                .iter()
                .all(|b| b.generation == generation && b.version == 1)
        );
        assert_all_open(&es, N).await;
    }
    // Killed at full speed, most likely in the middle of a blob's write: whatever state
    // it leaves, everything opens and the next run finishes.
    let mut proc = Command::new(child)
        .arg(&store_dir)
        .arg(&keyring)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let _ = lines.next();
    let _ = proc.kill();
    proc.wait().unwrap();
    let es = open_store(dir.path()).await;
    assert_all_open(&es, N).await;
    let out = Command::new(child)
        .arg(&store_dir)
        .arg(&keyring)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = es.status().await.unwrap();
    assert!(st.pending_data_rotation.is_none());
    assert!(st.blobs.iter().all(|b| b.generation == st.generation));
    assert_all_open(&es, N).await;

    // No temporary files are left behind as blobs.
    let store = FileStore::open(&store_dir).unwrap();
    assert_eq!(store.list().unwrap().len(), N);
}

/// The suite over a keyring sealed to a (fake) SNP device, opened from the config; after
/// an upgrade (new measurement) it still opens; after a host move only the recovery key
/// opens it, and the new host reseals it.
#[tokio::test]
async fn suite_against_tee_sealed_keyring_and_upgrade() {
    use parley_keys::config::{KeysConfig, open_backend_with};
    use parley_keys::sealing::{FakeSnpDevice, RecoveryPrivateKey, TeeSealed};

    let dir = tempfile::tempdir().unwrap();
    let rk = RecoveryPrivateKey::generate().unwrap();
    let cfg = KeysConfig::from_toml(&format!(
        "[local]\nkeyring = \"keyring\"\nseal = \"snp\"\nrecovery_public_key = \"{}\"\nsnp_guest_svn = 1\nsnp_tcb_version = 8\n",
        rk.public().unwrap()
    ))
    .unwrap();
    let dev = FakeSnpDevice::new();
    let opened = open_backend_with(&cfg, dir.path(), false, Some(Arc::new(dev.clone()))).unwrap();
    keys_suite::all(opened.backend.clone()).await;
    let env = keys_suite::Env::new(opened.backend.clone());
    env.es
        .put(&keys_suite::id("kept"), b"survives upgrades")
        .await
        .unwrap();
    // The file on disk holds no KEK in the clear (it is sealed).
    let stored = std::fs::read(dir.path().join("keyring")).unwrap();
    assert!(stored.starts_with(b"PTS1"));

    // Upgrade: another image on the same chip opens the keyring.
    let mut upgraded = dev.clone();
    upgraded.measurement = [0x55; 48];
    upgraded.guest_svn = 2;
    let opened2 = open_backend_with(&cfg, dir.path(), false, Some(Arc::new(upgraded))).unwrap();
    let es2 = EnvelopeStore::new(opened2.backend, env.mem.clone());
    assert_eq!(
        es2.get(&keys_suite::id("kept")).await.unwrap().as_slice(),
        b"survives upgrades"
    );

    // Host move: the TEE key differs; typed error; the recovery key restores it.
    let mut moved = dev.clone();
    moved.chip_secret = [0xAA; 32];
    let e = open_backend_with(&cfg, dir.path(), false, Some(Arc::new(moved.clone()))).unwrap_err();
    assert!(matches!(e, parley_keys::KeyError::Sealing { .. }), "{e}");
    let path = dir.path().join("keyring");
    let plain = TeeSealed::recover(&path, &stored, &rk).unwrap();
    let protector = cfg.protector(Some(Arc::new(moved.clone()))).unwrap();
    std::fs::remove_file(&path).unwrap();
    parley_tests::openbao::write_0600(&path, "");
    std::fs::write(&path, protector.protect(&plain).unwrap()).unwrap();
    let opened3 = open_backend_with(&cfg, dir.path(), false, Some(Arc::new(moved))).unwrap();
    let es3 = EnvelopeStore::new(opened3.backend, env.mem.clone());
    assert_eq!(
        es3.get(&keys_suite::id("kept")).await.unwrap().as_slice(),
        b"survives upgrades"
    );
}
