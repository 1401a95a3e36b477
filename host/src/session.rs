//! Peer sessions: one mutually attested TLS 1.3 connection per pair of parties.
//!
//! The party with the lower manifest index dials; the other accepts. Both certificates are
//! appraised by the RA-TLS verifiers during the handshake (gate 1); then each side sends a
//! `Hello` naming itself and the manifest hash, and only after both Hellos check out does
//! the session reach the engine, so no job frame — let alone a share — can move before
//! both sides have accepted each other.

use std::sync::Arc;
use std::time::Duration;

use parley_attestation::ratls;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::engine::Event;
use crate::node::NodeContext;
use crate::wire::{self, Body, Hello, WireError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Outgoing frames queued per peer before the engine waits.
const OUTBOX: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot reach peer {peer} at {addr}: {reason}")]
    Unreachable {
        peer: String,
        addr: String,
        reason: String,
    },
    #[error("TLS handshake with peer {peer} at {addr} failed: {reason}")]
    Handshake {
        peer: String,
        addr: String,
        reason: String,
    },
    #[error("peer {peer}: {reason}")]
    Protocol { peer: String, reason: String },
}

/// Describe a connect error the way an operator setting up machines needs it.
fn unreachable_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused — is it running?".into(),
        std::io::ErrorKind::TimedOut => {
            "timed out — is the address right and the port open in the firewall?".into()
        }
        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::NotFound => {
            format!("{e} — check the address in the manifest")
        }
        _ => e.to_string(),
    }
}

fn handshake_reason(e: &std::io::Error) -> String {
    if let Some(inner) = e.get_ref()
        && let Some(tls) = inner.downcast_ref::<rustls::Error>()
    {
        return match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
                format!("this node refused the peer's attestation: {}", o.0)
            }
            rustls::Error::AlertReceived(alert) => {
                format!(
                    "the peer refused this node (TLS alert {alert:?}) — its log and verdicts say why"
                )
            }
            other => other.to_string(),
        };
    }
    e.to_string()
}

/// Dial `peer` once: TCP, TLS with both gate-1 checks, then Hello.
pub async fn dial(
    ctx: &Arc<NodeContext>,
    peer: usize,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SessionError> {
    let p = &ctx.manifest.parties[peer];
    let (name, addr) = (p.name.clone(), p.address.clone());
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await {
        Err(_) => {
            return Err(SessionError::Unreachable {
                peer: name,
                addr,
                reason: "timed out — is the address right and the port open in the firewall?"
                    .into(),
            });
        }
        Ok(Err(e)) => {
            return Err(SessionError::Unreachable {
                peer: name,
                addr,
                reason: unreachable_reason(&e),
            });
        }
        Ok(Ok(s)) => s,
    };
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::try_from(name.clone()).map_err(|e| SessionError::Protocol {
        peer: name.clone(),
        reason: format!("party name is not a valid TLS server name: {e}"),
    })?;
    let connector = TlsConnector::from(ctx.client_config.clone());
    let mut tls =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(server_name, tcp)).await {
            Err(_) => {
                return Err(SessionError::Handshake {
                    peer: name,
                    addr,
                    reason: "timed out".into(),
                });
            }
            Ok(Err(e)) => {
                return Err(SessionError::Handshake {
                    peer: name,
                    addr,
                    reason: handshake_reason(&e),
                });
            }
            Ok(Ok(s)) => s,
        };
    // In TLS 1.3 the server checks our certificate after our handshake completes: a refusal
    // arrives as an alert on the first read, which is the peer's Hello.
    send_hello(ctx, &mut tls, peer).await?;
    expect_hello(ctx, &mut tls, peer)
        .await
        .map_err(|e| match e {
            SessionError::Protocol { peer, reason } if reason.contains("alert") => {
                SessionError::Handshake {
                    peer,
                    addr: addr.clone(),
                    reason,
                }
            }
            other => other,
        })?;
    Ok(tls)
}

/// Accept one inbound connection: TLS with both gate-1 checks, identify the party, Hello.
pub async fn accept(
    ctx: &Arc<NodeContext>,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Result<(usize, tokio_rustls::server::TlsStream<TcpStream>), SessionError> {
    let from = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown address".into());
    let _ = tcp.set_nodelay(true);
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Err(_) => {
            return Err(SessionError::Handshake {
                peer: "unidentified".into(),
                addr: from,
                reason: "timed out".into(),
            });
        }
        Ok(Err(e)) => {
            return Err(SessionError::Handshake {
                peer: "unidentified".into(),
                addr: from,
                reason: handshake_reason(&e),
            });
        }
        Ok(Ok(s)) => s,
    };
    // The verifier accepted the certificate; read the party it names.
    let party = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| ratls::parse_certificate(c.as_ref()).ok())
        .map(|c| c.binding.party)
        .ok_or_else(|| SessionError::Protocol {
            peer: "unidentified".into(),
            reason: "no client certificate".into(),
        })?;
    let peer = ctx
        .manifest
        .index_of(&party)
        .ok_or_else(|| SessionError::Protocol {
            peer: party.clone(),
            reason: "not a party".into(),
        })?;
    expect_hello(ctx, &mut tls, peer).await?;
    send_hello(ctx, &mut tls, peer).await?;
    Ok((peer, tls))
}

async fn send_hello<S: AsyncWrite + Unpin>(
    ctx: &NodeContext,
    s: &mut S,
    peer: usize,
) -> Result<(), SessionError> {
    let name = &ctx.manifest.parties[peer].name;
    let hello = Body::Hello(Hello {
        party: ctx.manifest.parties[ctx.me].name.clone(),
        manifest_hash: ctx.manifest_hash,
        unix_time: crate::util::unix_now(),
    });
    let bytes = wire::encode(&hello).map_err(|e| SessionError::Protocol {
        peer: name.clone(),
        reason: e.to_string(),
    })?;
    wire::write_frame(s, &bytes)
        .await
        .map_err(|e| SessionError::Protocol {
            peer: name.clone(),
            reason: format!("sending hello: {e}"),
        })?;
    ctx.counters.sent(name, "hello", bytes.len());
    Ok(())
}

async fn expect_hello<S: AsyncRead + Unpin>(
    ctx: &NodeContext,
    s: &mut S,
    peer: usize,
) -> Result<(), SessionError> {
    let name = ctx.manifest.parties[peer].name.clone();
    let proto = |reason: String| SessionError::Protocol {
        peer: name.clone(),
        reason,
    };
    let (body, len) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, wire::read_frame(s)).await {
        Err(_) => return Err(proto("no hello within the handshake timeout".into())),
        Ok(Err(WireError::Io(e))) => return Err(proto(handshake_reason(&e))),
        Ok(Err(e)) => return Err(proto(format!("waiting for hello: {e}"))),
        Ok(Ok(x)) => x,
    };
    ctx.counters.received(&name, body.kind(), len);
    match body {
        Body::Hello(h) if h.party != name => Err(proto(format!(
            "its hello names {:?}, but its certificate names {name:?}",
            h.party
        ))),
        Body::Hello(h) if h.manifest_hash != ctx.manifest_hash => Err(proto(format!(
            "it runs federation manifest {}…, this node runs {}… — distribute the same manifest to every party",
            &hex::encode(h.manifest_hash)[..16],
            &hex::encode(ctx.manifest_hash)[..16]
        ))),
        Body::Hello(_) => Ok(()),
        other => Err(proto(format!(
            "expected hello, got a {} frame",
            other.kind()
        ))),
    }
}

/// Run an established session until it ends: frames in go to the engine as events; the
/// engine sends frames out through the returned outbox.
pub async fn run<S>(
    ctx: Arc<NodeContext>,
    peer: usize,
    stream: S,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let name = ctx.manifest.parties[peer].name.clone();
    let (rd, wr): (ReadHalf<S>, WriteHalf<S>) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Body>(OUTBOX);
    let conn = ctx.next_connection_id();
    if events
        .send(Event::PeerUp {
            peer,
            conn,
            outbox: tx,
        })
        .await
        .is_err()
    {
        return;
    }
    tracing::info!(peer = %name, "session established");
    let writer = tokio::spawn(write_loop(ctx.clone(), name.clone(), wr, rx));
    let reason = tokio::select! {
        r = read_loop(&ctx, peer, &name, rd, &events) => r,
        _ = crate::util::stopped(&mut stop) => "this node is shutting down".to_owned(),
    };
    writer.abort();
    tracing::info!(peer = %name, %reason, "session ended");
    let _ = events.send(Event::PeerDown { peer, conn, reason }).await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    ctx: &NodeContext,
    peer: usize,
    name: &str,
    mut rd: R,
    events: &mpsc::Sender<Event>,
) -> String {
    loop {
        match wire::read_frame(&mut rd).await {
            Ok((body, len)) => {
                ctx.counters.received(name, body.kind(), len);
                if events.send(Event::Frame { peer, body }).await.is_err() {
                    return "this node is shutting down".into();
                }
            }
            Err(WireError::Closed) => return "the peer closed the connection".into(),
            Err(WireError::Io(e)) => return handshake_reason(&e),
            Err(e) => {
                tracing::warn!(peer = %name, error = %e, "protocol violation; closing the session");
                return format!("protocol violation: {e}");
            }
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    ctx: Arc<NodeContext>,
    name: String,
    mut wr: W,
    mut rx: mpsc::Receiver<Body>,
) {
    use tokio::io::AsyncWriteExt;
    while let Some(body) = rx.recv().await {
        let kind = body.kind();
        let bytes = match wire::encode(&body) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(peer = %name, error = %e, "cannot encode a frame; dropping it");
                continue;
            }
        };
        if let Err(e) = wire::write_frame(&mut wr, &bytes).await {
            tracing::debug!(peer = %name, error = %e, "write failed");
            return;
        }
        ctx.counters.sent(&name, kind, bytes.len());
    }
    let _ = wr.shutdown().await;
}
