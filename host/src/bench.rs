//! `parley bench`: figures measured in one process, reported as ratios to a baseline run
//! in the same process (this machine is shared and noisy).
//!
//! `handshake`: an attested session set-up — TCP, mutual TLS 1.3 with RA-TLS verifiers on
//! both sides (gate 1) and the fresh-evidence exchange (gate 2) — against a plain mutual
//! TLS 1.3 handshake with CA-signed P-256 certificates verified by webpki, over loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::setup::{Federation, Plan, free_ports};

#[derive(Debug, Serialize)]
pub struct HandshakeFigures {
    pub iterations: usize,
    /// Mean wall time of one attested set-up (both gates, both directions), ms.
    pub attested_ms: f64,
    /// Mean wall time of one plain mutual TLS 1.3 handshake plus one round trip, ms.
    pub plain_mtls_ms: f64,
    pub ratio: f64,
}

/// Measure `iterations` attested set-ups and as many plain mTLS handshakes, interleaved in
/// blocks so load changes hit both alike.
pub async fn handshake(iterations: usize) -> anyhow::Result<HandshakeFigures> {
    let tmp = tempfile::Builder::new().prefix("parley-bench-").tempdir()?;
    let ports = free_ports(3)?;
    let plan = Plan {
        dir: tmp.path().to_owned(),
        federation: "bench".into(),
        parties: ["a", "b", "c"]
            .iter()
            .zip(&ports)
            .map(|(n, p)| ((*n).to_owned(), format!("127.0.0.1:{p}")))
            .collect(),
        threshold: 1,
        rows: 10,
        measurement: crate::util::measure_self()?,
    };
    let fed = Federation::create(&plan)?;
    let load = |name: &str| -> anyhow::Result<crate::config::NodeConfig> {
        Ok(crate::config::NodeConfig::load(&fed.party(name)?.config)?)
    };
    let a = crate::node::prepare(load("a")?).await?;
    let b = crate::node::prepare(load("b")?).await?;

    // b accepts attested sessions at its manifest address.
    let listener = TcpListener::bind(&b.epoch().manifest.parties[1].address).await?;
    let bb = b.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let epoch = bb.epoch();
            let acceptor = tokio_rustls::TlsAcceptor::from(epoch.server_config.clone());
            let _ = crate::session::accept(&bb, &epoch, &acceptor, tcp).await;
        }
    });

    let plain = PlainMtls::new()?;
    let plain_addr = plain.serve().await?;

    let (mut attested, mut plain_total) = (Duration::ZERO, Duration::ZERO);
    let block = 10.min(iterations.max(1));
    let mut done = 0;
    while done < iterations {
        let k = block.min(iterations - done);
        let t = Instant::now();
        for _ in 0..k {
            let epoch = a.epoch();
            crate::session::dial(&a, &epoch, 1)
                .await
                .context("attested set-up failed")?;
        }
        attested += t.elapsed();
        let t = Instant::now();
        for _ in 0..k {
            plain.connect(plain_addr).await?;
        }
        plain_total += t.elapsed();
        done += k;
    }
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / iterations as f64;
    let (am, pm) = (per(attested), per(plain_total));
    Ok(HandshakeFigures {
        iterations,
        attested_ms: am,
        plain_mtls_ms: pm,
        ratio: am / pm,
    })
}

/// A CA, a server and a client certificate for plain mutual TLS 1.3.
struct PlainMtls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl PlainMtls {
    fn new() -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf =
            |name: &str| -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
                let key = rcgen::KeyPair::generate()?;
                let cert = rcgen::CertificateParams::new(vec![name.to_owned()])?
                    .signed_by(&key, &issuer)?;
                Ok((
                    cert.der().clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                ))
            };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let roots = Arc::new(roots);
        let (scert, skey) = leaf("server.bench")?;
        let (ccert, ckey) = leaf("client.bench")?;
        let cv = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(cv)
            .with_single_cert(vec![scert], skey)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![ccert], ckey)?;
        Ok(PlainMtls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    async fn serve(&self) -> anyhow::Result<std::net::SocketAddr> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut b = [0u8; 1];
                        if tls.read_exact(&mut b).await.is_ok() {
                            let _ = tls.write_all(&b).await;
                        }
                    }
                });
            }
        });
        Ok(addr)
    }

    /// One handshake and one round trip (so the server's client-certificate check is done).
    async fn connect(&self, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("server.bench")?;
        let mut tls = tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await?;
        tls.write_all(&[7]).await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        Ok(())
    }
}
