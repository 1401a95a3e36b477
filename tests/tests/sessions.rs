//! Attested sessions over real sockets: gate 1 (evidence in the certificate), gate 2 (fresh
//! evidence bound to the connection), signed manifests and epochs. Each refusal asserts the
//! reason code and that no share frame moved.

use std::time::Duration;

use parley::admin::NodeStatus;
use parley::peer::session::{self, answer};
use parley::peer::status::PeerCounters;
use parley::peer::wire::{Body, Hello};
use parley_attestation::ratls::{self, Role, codes as ratls_codes};
use parley_attestation::verdict::codes;
use parley_tests::{Cluster, Setup, connect, in_process, modified_binary};

fn share_frames(status: &serde_json::Value, peer: &str) -> u64 {
    let c: PeerCounters = status["counters"]
        .get(peer)
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .unwrap_or_default();
    c.share_frames()
}

/// Wait until `node`'s latest gate-`gate` verdict about `peer` is a refusal with `code`.
async fn refused(
    cluster: &mut Cluster,
    node: &str,
    peer: &str,
    gate: u8,
    code: &str,
) -> NodeStatus {
    let (peer_s, code_s) = (peer.to_owned(), code.to_owned());
    cluster
        .wait_for(
            node,
            &format!("a gate-{gate} refusal of {peer} with {code}"),
            move |s| {
                let v = &s.peers[&peer_s];
                let rec = if gate == 1 { &v.verdict } else { &v.gate2 };
                rec.as_ref()
                    .is_some_and(|r| !r.accepted && r.verdict.has(&code_s))
            },
        )
        .await
}

async fn stop_without_shares(cluster: Cluster, peer: &str) {
    let peer = peer.to_owned();
    for st in cluster.stop().await {
        assert_eq!(
            share_frames(&st, &peer),
            0,
            "share frames moved with {peer}: {st}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn federation_forms_only_with_both_gates_and_jobs_reattest() {
    let mut cluster = Setup::new(100).await.start(&[]);
    for h in parley_tests::HOSPITALS {
        cluster
            .wait_for(h, "all peers connected", |s| {
                s.peers.values().all(|p| p.connected)
            })
            .await;
    }
    let id = cluster.submit("hospital-a", &["age"]).await.unwrap();
    cluster.wait_job(id).await;
    let s = cluster.status("hospital-b").await;
    for (peer, v) in &s.peers {
        let g1 = v.verdict.as_ref().unwrap();
        let g2 = v.gate2.as_ref().unwrap();
        assert!(g1.accepted && g2.accepted, "{peer}");
        // Once at session set-up, once more when the job started.
        assert!(
            g2.appraisals >= 2,
            "{peer} was not re-attested at job start: {g2:?}"
        );
        assert!(v.attested_secs_ago.is_some());
    }
    // `parley attest peers` shows the same over the admin socket.
    let out = std::process::Command::new(&cluster.setup.bin)
        .args(["attest", "peers", "--config"])
        .arg(&cluster.setup.fed.party("hospital-b").unwrap().config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("gate 1: warning accepted") && text.contains("gate 2: warning accepted"),
        "{text}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_impostor_with_another_identity_key_is_refused() {
    let setup = Setup::new(50).await;
    let real_c = in_process(&setup, "hospital-c").await;
    // The impostor has hospital-c's genuine simulated TEE but not its identity key.
    let dir = setup.tmp.path().join("impostor");
    std::fs::create_dir_all(&dir).unwrap();
    let kek = parley_keys::local::LocalKek::create(&dir.join("kek")).unwrap();
    let rogue =
        parley_keys::local::LocalSigner::create(&kek, "identity-key", &dir.join("id")).unwrap();
    let epoch = real_c.epoch();
    // A certificate built the way a node builds one, but vouched for by the rogue key.
    let tls_key = rcgen::KeyPair::generate().unwrap();
    let spki = ratls::spki_der(&tls_key);
    let rogue_pk = parley_keys::Signer::public_key(&rogue);
    let evidence = real_c
        .tee
        .collect(&ratls::gate1_report_data(&spki, &rogue_pk.fingerprint()))
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (nb, na) = (
        now - time::Duration::minutes(5),
        now + time::Duration::hours(1),
    );
    let binding = ratls::TlsBinding {
        party: "hospital-c".into(),
        spki_sha256: parley_attestation::hexbytes::HexBytes(
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&spki)).into(),
        ),
        manifest_hash: parley_attestation::hexbytes::HexBytes(epoch.manifest_hash),
        not_before: nb.unix_timestamp(),
        not_after: na.unix_timestamp(),
    };
    let sig = rogue.sign_now(&binding.to_be_signed());
    let ext = ratls::extension_value(&evidence.evidence, &[], &binding, &sig.0);
    let own = ratls::OwnCertificate {
        cert: ratls::build_certificate(&tls_key, "hospital-c", ext, nb, na).unwrap(),
        key: ratls::private_key_der(&tls_key),
    };
    let verifier = ratls::RaTlsVerifier::new(
        epoch.gate1.clone(),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    );
    let forged_client = std::sync::Arc::new(ratls::client_config(verifier, &own).unwrap());
    let mut cluster = setup.start_some(&["hospital-a", "hospital-b"], &[]);
    cluster.wait_session("hospital-a", "hospital-b").await;
    let tcp = tokio::net::TcpStream::connect(&epoch.manifest.parties[0].address)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("hospital-a").unwrap();
    let attempt = tokio_rustls::TlsConnector::from(forged_client)
        .connect(name, tcp)
        .await;
    if let Ok(mut tls) = attempt {
        // TLS 1.3: the server's refusal arrives on the first read.
        let mut buf = [0u8; 1];
        assert!(
            tokio::io::AsyncReadExt::read(&mut tls, &mut buf)
                .await
                .map_or(true, |n| n == 0)
        );
    }
    refused(
        &mut cluster,
        "hospital-a",
        "hospital-c",
        1,
        ratls_codes::IDENTITY_KEY_MISMATCH,
    )
    .await;
    stop_without_shares(cluster, "hospital-c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_missing_a_signature_stops_the_node_from_starting() {
    let setup = Setup::new(50).await;
    let c = setup.fed.party("hospital-c").unwrap();
    let mut m = setup.fed.manifest.clone();
    m.signatures.retain(|s| s.party != "hospital-b");
    std::fs::write(&c.manifest, m.to_toml()).unwrap();
    let out = std::process::Command::new(&setup.bin)
        .args(["node", "--config"])
        .arg(&c.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not signed by hospital-b") && err.contains("parley manifest sign"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_presenting_another_manifest_is_refused() {
    let setup = Setup::new(50).await;
    // A different (fully signed) manifest for hospital-c only.
    let mut other = setup.fed.manifest.body();
    other.federation = "another-federation".into();
    setup.fed.sign_by_all(&mut other).await.unwrap();
    std::fs::write(
        &setup.fed.party("hospital-c").unwrap().manifest,
        other.to_toml(),
    )
    .unwrap();
    let mut cluster = setup.start(&[]);
    refused(
        &mut cluster,
        "hospital-a",
        "hospital-c",
        1,
        ratls_codes::MANIFEST_MISMATCH,
    )
    .await;
    refused(
        &mut cluster,
        "hospital-b",
        "hospital-c",
        1,
        ratls_codes::MANIFEST_MISMATCH,
    )
    .await;
    stop_without_shares(cluster, "hospital-c").await;
}

/// Hello with our own nonce, read theirs.
async fn hello(
    ctx: &parley::node::NodeContext,
    peer: &str,
    tls: &mut tokio_rustls::TlsStream<tokio::net::TcpStream>,
    nonce: [u8; 32],
) -> [u8; 32] {
    let e = ctx.epoch();
    let h = Body::Hello(Hello {
        party: e.my_name().to_owned(),
        manifest_hash: e.manifest_hash,
        unix_time: parley::util::unix_now(),
        nonce,
    });
    session::send(ctx, peer, tls, &h).await.unwrap();
    match session::recv(ctx, peer, tls).await.unwrap() {
        Body::Hello(h) => h.nonce,
        other => panic!("expected hello, got {other:?}"),
    }
}

/// Send gate-2 evidence of our choosing.
async fn send_attest(
    ctx: &parley::node::NodeContext,
    peer: &str,
    tls: &mut tokio_rustls::TlsStream<tokio::net::TcpStream>,
    evidence: parley::tee::Collected,
) {
    let body = Body::Attest {
        evidence: evidence.evidence,
        endorsements: evidence.endorsements,
        unix_time: parley::util::unix_now(),
    };
    session::send(ctx, peer, tls, &body).await.unwrap();
}

/// Read frames until the peer's gate-2 evidence arrives.
async fn their_attest(
    ctx: &parley::node::NodeContext,
    peer: &str,
    tls: &mut tokio_rustls::TlsStream<tokio::net::TcpStream>,
) -> parley::tee::Collected {
    match session::recv(ctx, peer, tls).await.unwrap() {
        Body::Attest {
            evidence,
            endorsements,
            ..
        } => parley::tee::Collected {
            evidence,
            endorsements,
        },
        other => panic!("expected attest, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_gate2_evidence_from_an_earlier_connection_is_refused() {
    let setup = Setup::new(50).await;
    let c = in_process(&setup, "hospital-c").await;
    let mut cluster = setup.start_some(&["hospital-a", "hospital-b"], &[]);
    cluster.wait_session("hospital-a", "hospital-b").await;
    let epoch = c.epoch();

    // Connection 1: honest, and the evidence is recorded.
    let mut t1 = connect(&c, "hospital-a").await.unwrap();
    let x1 = session::exporter(&t1).unwrap();
    let their_nonce = hello(&c, "hospital-a", &mut t1, session::nonce()).await;
    let recorded = answer(&c, &epoch, Role::Client, &x1, &their_nonce).unwrap();
    send_attest(&c, "hospital-a", &mut t1, recorded.clone()).await;
    let _ = their_attest(&c, "hospital-a", &mut t1).await;
    drop(t1);

    // Connection 2: the recorded evidence again.
    let mut t2 = connect(&c, "hospital-a").await.unwrap();
    hello(&c, "hospital-a", &mut t2, session::nonce()).await;
    send_attest(&c, "hospital-a", &mut t2, recorded).await;
    refused(
        &mut cluster,
        "hospital-a",
        "hospital-c",
        2,
        codes::REPORT_DATA_MISMATCH,
    )
    .await;
    stop_without_shares(cluster, "hospital-c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_bound_to_another_connection_is_refused() {
    let setup = Setup::new(50).await;
    let c = in_process(&setup, "hospital-c").await;
    let mut cluster = setup.start_some(&["hospital-a", "hospital-b"], &[]);
    cluster.wait_session("hospital-a", "hospital-b").await;
    let epoch = c.epoch();
    let t1 = connect(&c, "hospital-a").await.unwrap();
    let mut t2 = connect(&c, "hospital-a").await.unwrap();
    let other_exporter = session::exporter(&t1).unwrap();
    let nonce2 = hello(&c, "hospital-a", &mut t2, session::nonce()).await;
    // Right nonce, wrong connection.
    let ev = answer(&c, &epoch, Role::Client, &other_exporter, &nonce2).unwrap();
    send_attest(&c, "hospital-a", &mut t2, ev).await;
    refused(
        &mut cluster,
        "hospital-a",
        "hospital-c",
        2,
        codes::REPORT_DATA_MISMATCH,
    )
    .await;
    drop(t1);
    stop_without_shares(cluster, "hospital-c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_genuine_node_relaying_another_nodes_evidence_is_refused() {
    let setup = Setup::new(50).await;
    // D is hospital-c, genuine; it bridges A and B.
    let d = in_process(&setup, "hospital-c").await;
    let mut cluster = setup.start_some(&["hospital-a", "hospital-b"], &[]);
    cluster.wait_session("hospital-a", "hospital-b").await;
    let mut to_a = connect(&d, "hospital-a").await.unwrap();
    let n_a = hello(&d, "hospital-a", &mut to_a, session::nonce()).await;
    // D asks B to answer A's nonce on the D↔B connection...
    let mut to_b = connect(&d, "hospital-b").await.unwrap();
    hello(&d, "hospital-b", &mut to_b, n_a).await;
    let b_evidence = their_attest(&d, "hospital-b", &mut to_b).await;
    // ...and presents B's fresh evidence to A as its own.
    send_attest(&d, "hospital-a", &mut to_a, b_evidence).await;
    let s = refused(
        &mut cluster,
        "hospital-a",
        "hospital-c",
        2,
        codes::REPORT_DATA_MISMATCH,
    )
    .await;
    // It binds the D↔B exporter and B's key and comes from B's platform, not D's.
    assert!(
        s.peers["hospital-c"]
            .gate2
            .as_ref()
            .unwrap()
            .verdict
            .has(ratls_codes::PLATFORM_CHANGED)
    );
    stop_without_shares(cluster, "hospital-c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_reflecting_our_nonce_or_our_evidence_is_refused() {
    let setup = Setup::new(50).await;
    let c = in_process(&setup, "hospital-c").await;
    let mut cluster = setup.start_some(&["hospital-a", "hospital-b"], &[]);
    cluster.wait_session("hospital-a", "hospital-b").await;
    let epoch = c.epoch();

    // Echo A's nonce back: read A's hello first, then send ours with its nonce.
    let mut t = connect(&c, "hospital-a").await.unwrap();
    let a_nonce = match session::recv(&c, "hospital-a", &mut t).await.unwrap() {
        Body::Hello(h) => h.nonce,
        other => panic!("{other:?}"),
    };
    let h = Body::Hello(Hello {
        party: "hospital-c".into(),
        manifest_hash: epoch.manifest_hash,
        unix_time: parley::util::unix_now(),
        nonce: a_nonce,
    });
    session::send(&c, "hospital-a", &mut t, &h).await.unwrap();
    refused(
        &mut cluster,
        "hospital-a",
        "hospital-c",
        2,
        ratls_codes::REFLECTION,
    )
    .await;

    // Echo A's own evidence back.
    let mut t = connect(&c, "hospital-a").await.unwrap();
    hello(&c, "hospital-a", &mut t, session::nonce()).await;
    let a_evidence = their_attest(&c, "hospital-a", &mut t).await;
    send_attest(&c, "hospital-a", &mut t, a_evidence).await;
    let s = refused(
        &mut cluster,
        "hospital-a",
        "hospital-c",
        2,
        codes::REPORT_DATA_MISMATCH,
    )
    .await;
    assert!(
        s.peers["hospital-c"]
            .gate2
            .as_ref()
            .unwrap()
            .verdict
            .has(ratls_codes::PLATFORM_CHANGED)
    );
    stop_without_shares(cluster, "hospital-c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copied_certificate_without_its_private_key_fails_the_handshake() {
    let setup = Setup::new(50).await;
    let c = in_process(&setup, "hospital-c").await;
    let mut cluster = setup.start_some(&["hospital-a", "hospital-b"], &[]);
    cluster.wait_session("hospital-a", "hospital-b").await;
    // Copy B's certificate off the wire (B presents it to anyone who connects).
    let mut to_b = connect(&c, "hospital-b").await.unwrap();
    let b_cert = session::peer_certificate(&to_b).unwrap();
    hello(&c, "hospital-b", &mut to_b, session::nonce()).await;
    drop(to_b);
    // Present it to A with a key of our own (rustls' config builder refuses a mismatched
    // pair, so a resolver hands it over as an attacker would).
    let key = ratls::private_key_der(&rcgen::KeyPair::generate().unwrap());
    let signer = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
    let certified = std::sync::Arc::new(rustls::sign::CertifiedKey::new(
        vec![rustls::pki_types::CertificateDer::from(b_cert)],
        signer,
    ));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = ratls::RaTlsVerifier::new(c.epoch().gate1.clone(), provider.clone());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(verifier))
        .with_client_cert_resolver(std::sync::Arc::new(Stolen(certified)));
    let tcp = tokio::net::TcpStream::connect(&c.epoch().manifest.parties[0].address)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("hospital-a").unwrap();
    let outcome = match tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
    {
        Err(e) => Err(e),
        Ok(mut tls) => {
            let mut buf = [0u8; 1];
            tokio::io::AsyncReadExt::read(&mut tls, &mut buf)
                .await
                .map(|_| ())
        }
    };
    let err = outcome.expect_err("a certificate without its key must not give a session");
    assert!(
        err.to_string().to_lowercase().contains("alert") || err.to_string().contains("Decrypt"),
        "{err}"
    );
    let s = cluster.status("hospital-a").await;
    assert!(s.peers["hospital-c"].attested_secs_ago.is_none());
    stop_without_shares(cluster, "hospital-c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clock_skewed_past_the_limit_is_refused() {
    let setup = Setup::with_binary(50, parley_tests::parley_cheat_bin()).await;
    setup
        .fed
        .edit_config("hospital-c", |c| c.cheat = Some("clock-skew=600".into()))
        .unwrap();
    let mut cluster = setup.start(&[]);
    let s = refused(
        &mut cluster,
        "hospital-a",
        "hospital-c",
        2,
        ratls_codes::CLOCK_SKEW,
    )
    .await;
    let msg = &s.peers["hospital-c"]
        .gate2
        .as_ref()
        .unwrap()
        .verdict
        .reasons
        .iter()
        .find(|r| r.code == ratls_codes::CLOCK_SKEW)
        .unwrap()
        .message;
    assert!(msg.contains("allows 120 s"), "{msg}");
    refused(
        &mut cluster,
        "hospital-b",
        "hospital-c",
        2,
        ratls_codes::CLOCK_SKEW,
    )
    .await;
    stop_without_shares(cluster, "hospital-c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn activating_an_epoch_whose_policy_refuses_a_connected_peer_drops_it() {
    let mut setup = Setup::new(100).await;
    let bin_m = parley::util::measure_file(&setup.bin).unwrap();
    let other = modified_binary(&setup.bin, setup.tmp.path());
    let other_m = parley::util::measure_file(&other).unwrap();
    // Epoch 1: every policy admits both builds.
    let mut both =
        parley::dev::setup::default_policy("integration", setup.fed.simulation_root, bin_m);
    both.sim
        .as_mut()
        .unwrap()
        .measurements
        .push(parley_attestation::hexbytes::HexBytes(other_m));
    for h in parley_tests::HOSPITALS {
        setup.fed.set_policy(h, &both).await.unwrap();
    }
    let mut cluster = setup.start(&[("hospital-c", other)]);
    for h in parley_tests::HOSPITALS {
        cluster
            .wait_for(h, "all peers connected", |s| {
                s.peers.values().all(|p| p.connected)
            })
            .await;
    }
    // Epoch 2: A's and B's policy admits only the original build.
    let strict =
        parley::dev::setup::default_policy("integration", cluster.setup.fed.simulation_root, bin_m);
    let strict_text = toml::to_string(&strict).unwrap();
    let strict_path = cluster.setup.tmp.path().join("strict.toml");
    std::fs::write(&strict_path, &strict_text).unwrap();
    let strict_hash = parley_attestation::policy::PolicyDoc::parse(&strict_text, "strict")
        .unwrap()
        .hash;
    let (next_path, _) = cluster
        .setup
        .fed
        .next_epoch(|m| {
            for p in m.parties.iter_mut().take(2) {
                p.policy_hash = parley_attestation::hexbytes::HexBytes(strict_hash);
            }
        })
        .await
        .unwrap();
    for h in parley_tests::HOSPITALS {
        let mut cmd = std::process::Command::new(&cluster.setup.bin);
        cmd.args(["manifest", "activate", "--config"])
            .arg(&cluster.setup.fed.party(h).unwrap().config)
            .arg(&next_path);
        if h != "hospital-c" {
            cmd.arg("--policy").arg(&strict_path);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{h}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for h in ["hospital-a", "hospital-b"] {
        let s = refused(
            &mut cluster,
            h,
            "hospital-c",
            1,
            codes::MEASUREMENT_NOT_ACCEPTED,
        )
        .await;
        assert_eq!(s.epoch, 2);
        assert!(!s.peers["hospital-c"].connected);
    }
    cluster
        .wait_for("hospital-a", "A and B together in epoch 2", |s| {
            s.peers["hospital-b"].connected
        })
        .await;
    let err = cluster
        .try_submit("hospital-a", &["age"])
        .await
        .unwrap_err();
    assert!(err.contains("hospital-c"), "{err}");
    cluster.stop().await;
}

#[test]
fn gate2_report_data_binds_every_input() {
    let base = ratls::gate2_report_data(Role::Client, &[1; 32], &[2; 32], &[3; 32], &[4; 32]);
    assert_ne!(
        base,
        ratls::gate2_report_data(Role::Server, &[1; 32], &[2; 32], &[3; 32], &[4; 32])
    );
    assert_ne!(
        base,
        ratls::gate2_report_data(Role::Client, &[9; 32], &[2; 32], &[3; 32], &[4; 32])
    );
    assert_ne!(
        base,
        ratls::gate2_report_data(Role::Client, &[1; 32], &[9; 32], &[3; 32], &[4; 32])
    );
    assert_ne!(
        base,
        ratls::gate2_report_data(Role::Client, &[1; 32], &[2; 32], &[9; 32], &[4; 32])
    );
    assert_ne!(
        base,
        ratls::gate2_report_data(Role::Client, &[1; 32], &[2; 32], &[3; 32], &[9; 32])
    );
    let _ = Duration::ZERO;
}

/// Always presents a copied certificate with a key that is not its own.
#[derive(Debug)]
struct Stolen(std::sync::Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Stolen {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<std::sync::Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_diversity_is_enforced_before_a_job_starts() {
    let mut setup = Setup::new(50).await;
    let m = parley::util::measure_file(&setup.bin).unwrap();
    let mut diverse =
        parley::dev::setup::default_policy("integration", setup.fed.simulation_root, m);
    diverse.federation.min_distinct_tee_types = 2;
    setup.fed.set_policy("hospital-b", &diverse).await.unwrap();
    let mut cluster = setup.start(&[]);
    for h in parley_tests::HOSPITALS {
        cluster
            .wait_for(h, "all peers connected", |s| {
                s.peers.values().all(|p| p.connected)
            })
            .await;
    }
    let id = cluster.submit("hospital-a", &["age"]).await.unwrap();
    for v in cluster.wait_job(id).await {
        assert!(v.result.is_none());
        match v.state {
            parley::jobs::job::JobState::Aborted(r) => {
                assert!(r.contains("platform-diversity"), "{r}")
            }
            other => panic!("{other:?}"),
        }
    }
    stop_without_shares(cluster, "hospital-b").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_older_than_the_policy_allows_are_reattested() {
    let mut setup = Setup::new(50).await;
    let m = parley::util::measure_file(&setup.bin).unwrap();
    let mut short = parley::dev::setup::default_policy("integration", setup.fed.simulation_root, m);
    short.session.max_age_secs = 1;
    setup.fed.set_policy("hospital-a", &short).await.unwrap();
    let mut cluster = setup.start(&[]);
    cluster
        .wait_for("hospital-a", "three fresh appraisals of hospital-b", |s| {
            s.peers["hospital-b"]
                .gate2
                .as_ref()
                .is_some_and(|r| r.accepted && r.appraisals >= 3)
        })
        .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_manifest_cli_walks_organisations_through_setup() {
    let setup = Setup::new(20).await;
    let dir = setup.tmp.path().join("ceremony");
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new(&setup.bin)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let mut ids = Vec::new();
    for p in &setup.fed.parties {
        let id = dir.join(format!("{}.toml", p.name));
        let addr = setup.fed.manifest.party(&p.name).unwrap().address.clone();
        let (ok, out) = run(&[
            "manifest".as_ref(),
            "export-identity".as_ref(),
            "--config".as_ref(),
            p.config.as_os_str(),
            "--address".as_ref(),
            addr.as_ref(),
            "--out".as_ref(),
            id.as_os_str(),
        ]);
        assert!(ok, "{out}");
        ids.push(id);
    }
    let draft = dir.join("manifest.toml");
    let mut init: Vec<&std::ffi::OsStr> = vec![
        "manifest".as_ref(),
        "init".as_ref(),
        "--federation".as_ref(),
        "ceremony".as_ref(),
        "--threshold".as_ref(),
        "1".as_ref(),
        "--out".as_ref(),
        draft.as_os_str(),
    ];
    init.extend(ids.iter().map(|p| p.as_os_str()));
    let (ok, out) = run(&init);
    assert!(ok, "{out}");
    let verify = || run(&["manifest".as_ref(), "verify".as_ref(), draft.as_os_str()]);
    let (ok, out) = verify();
    assert!(
        !ok && out.contains("not signed by hospital-a, hospital-b, hospital-c"),
        "{out}"
    );
    for (i, p) in setup.fed.parties.iter().enumerate() {
        let (ok, out) = run(&[
            "manifest".as_ref(),
            "sign".as_ref(),
            "--config".as_ref(),
            p.config.as_os_str(),
            draft.as_os_str(),
        ]);
        assert!(ok, "{out}");
        let (ok, out) = verify();
        assert_eq!(ok, i == 2, "{out}");
    }
    // The drafted manifest lists exactly the exported identities.
    let m = parley::manifest::Manifest::load(&draft).unwrap();
    assert_eq!(
        m.parties
            .iter()
            .map(|p| &p.identity_key)
            .collect::<Vec<_>>(),
        setup
            .fed
            .manifest
            .parties
            .iter()
            .map(|p| &p.identity_key)
            .collect::<Vec<_>>()
    );
    // Changing it after signing breaks every signature.
    let tampered = std::fs::read_to_string(&draft)
        .unwrap()
        .replace("federation = \"ceremony\"", "federation = \"ceremonx\"");
    std::fs::write(&draft, tampered).unwrap();
    let (ok, out) = verify();
    assert!(!ok && out.contains("does not verify"), "{out}");
}
