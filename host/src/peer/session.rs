//! Attested peer sessions: one mutually attested TLS 1.3 connection per pair of parties.
//!
//! The party with the lower manifest index dials; the other accepts. Both certificates are
//! appraised by the RA-TLS verifiers during the handshake (gate 1). Then, before the
//! session reaches the engine, each side runs gate 2:
//!
//! 1. send `Hello {party, manifest hash, clock, nonce}`; check the peer's (its party is the
//!    one its certificate names, same manifest, and its nonce is not ours: reflection);
//! 2. answer the peer's nonce with fresh evidence (`Attest`) whose report data binds our
//!    role, our certificate's key, this connection's TLS exporter value, the manifest hash
//!    and the peer's nonce ([`ratls::gate2_report_data`]);
//! 3. appraise the peer's answer against our nonce and this connection (same platform as
//!    its gate-1 evidence, clocks within the policy's skew) and send `Accept` or `Refuse`;
//! 4. wait for the peer's `Accept`.
//!
//! Only then does the engine see the session, so no job frame — let alone a share — moves
//! before both gates passed in both directions. The engine re-runs gate 2 in-band
//! (`Challenge` → `Attest`) at each job start and when a session is older than the policy's
//! maximum age.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parley_attestation::appraise::Platform;
use parley_attestation::ratls::{self, Gate2Context, Role};
use ring::rand::SecureRandom;
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

use crate::node::{Epoch, NodeContext};
use crate::peer::wire::{self, Body, Hello, WireError};
use crate::peer::{Event, SessionInfo};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Protocol frames queued per peer before a job's actor waits (backpressure).
const OUTBOX: usize = 256;
/// Control frames queued per peer; the engine never waits on them, and a peer that lets
/// this many pile up has stopped reading and is closed.
const CONTROL_OUTBOX: usize = 1024;

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
    #[error("this node refused peer {peer} at gate 2: {reason}")]
    Refused { peer: String, reason: String },
    #[error("peer {peer} refused this node: {reason}")]
    RefusedByPeer { peer: String, reason: String },
}

/// A session that passed both gates in both directions.
pub struct Established {
    pub stream: TlsStream<TcpStream>,
    pub peer: usize,
    pub info: SessionInfo,
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

/// The TLS exporter value gate 2 binds (label [`ratls::EXPORTER_LABEL`], empty context).
pub fn exporter(tls: &TlsStream<TcpStream>) -> Result<[u8; ratls::EXPORTER_LEN], rustls::Error> {
    let mut out = [0u8; ratls::EXPORTER_LEN];
    match tls {
        TlsStream::Client(s) => {
            s.get_ref()
                .1
                .export_keying_material(&mut out, ratls::EXPORTER_LABEL, None)?
        }
        TlsStream::Server(s) => {
            s.get_ref()
                .1
                .export_keying_material(&mut out, ratls::EXPORTER_LABEL, None)?
        }
    };
    Ok(out)
}

/// The peer's end-entity certificate on this connection.
pub fn peer_certificate(tls: &TlsStream<TcpStream>) -> Option<Vec<u8>> {
    let certs = match tls {
        TlsStream::Client(s) => s.get_ref().1.peer_certificates(),
        TlsStream::Server(s) => s.get_ref().1.peer_certificates(),
    };
    certs.and_then(|c| c.first()).map(|c| c.as_ref().to_vec())
}

/// Dial `peer`: TCP, TLS with both gate-1 checks, then gate 2.
pub async fn dial(
    ctx: &Arc<NodeContext>,
    epoch: &Arc<Epoch>,
    peer: usize,
) -> Result<Established, SessionError> {
    let p = &epoch.manifest.parties[peer];
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
    let connector = TlsConnector::from(epoch.client_config.clone());
    let tls =
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
            Ok(Ok(s)) => TlsStream::Client(s),
        };
    gate2(ctx, epoch, tls, Role::Client, peer)
        .await
        .map_err(|e| match e {
            // In TLS 1.3 the server checks our certificate after our side of the handshake
            // completes: its refusal arrives as an alert on our first read.
            SessionError::Protocol { peer, reason } if reason.contains("alert") => {
                SessionError::Handshake {
                    peer,
                    addr: addr.clone(),
                    reason,
                }
            }
            other => other,
        })
}

/// Accept one inbound connection: TLS with both gate-1 checks, identify the party, gate 2.
pub async fn accept(
    ctx: &Arc<NodeContext>,
    epoch: &Arc<Epoch>,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
) -> Result<Established, SessionError> {
    let from = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown address".into());
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
        Ok(Ok(s)) => TlsStream::Server(s),
    };
    // The verifier accepted the certificate; read the party it names.
    let party = peer_certificate(&tls)
        .and_then(|c| ratls::parse_certificate(&c).ok())
        .map(|c| c.binding.party)
        .ok_or_else(|| SessionError::Protocol {
            peer: "unidentified".into(),
            reason: "no client certificate".into(),
        })?;
    let peer = epoch
        .manifest
        .index_of(&party)
        .ok_or_else(|| SessionError::Protocol {
            peer: party.clone(),
            reason: "not a party".into(),
        })?;
    gate2(ctx, epoch, tls, Role::Server, peer).await
}

/// A fresh random nonce.
pub fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    // The system RNG failing is fatal for the session; an all-zero nonce is then refused by
    // the peer as a reflection of its own only if it also failed, so fail loudly instead.
    if ring::rand::SystemRandom::new().fill(&mut n).is_err() {
        tracing::error!("the system random number generator failed");
    }
    n
}

/// Our fresh evidence answering `peer_nonce` on a connection where we have `role`.
pub fn answer(
    ctx: &NodeContext,
    epoch: &Epoch,
    role: Role,
    exporter: &[u8],
    peer_nonce: &[u8; 32],
) -> Result<crate::tee::Collected, String> {
    let rd = ratls::gate2_report_data(
        role,
        &epoch.own_spki_sha256,
        exporter,
        &epoch.manifest_hash,
        peer_nonce,
    );
    ctx.tee.collect(&rd).map_err(|e| e.to_string())
}

async fn gate2(
    ctx: &Arc<NodeContext>,
    epoch: &Arc<Epoch>,
    mut tls: TlsStream<TcpStream>,
    role: Role,
    peer: usize,
) -> Result<Established, SessionError> {
    let name = epoch.name(peer).to_owned();
    let proto = |reason: String| SessionError::Protocol {
        peer: name.clone(),
        reason,
    };
    let exporter =
        exporter(&tls).map_err(|e| proto(format!("cannot derive the TLS exporter: {e}")))?;
    let cert = peer_certificate(&tls).ok_or_else(|| proto("no peer certificate".into()))?;
    let peer_spki_sha256: [u8; 32] = ratls::parse_certificate(&cert)
        .map(|c| Sha256::digest(&c.spki_der).into())
        .map_err(|e| proto(e.to_string()))?;
    let expected = (role == Role::Client).then_some(name.as_str());
    let gate1_platform: Option<Platform> = epoch
        .gate1
        .check(&cert, expected, crate::util::unix_now())
        .verdict
        .platform;

    let my_nonce = nonce();
    let hello = Body::Hello(Hello {
        party: epoch.my_name().to_owned(),
        manifest_hash: epoch.manifest_hash,
        unix_time: ctx.reported_time(),
        nonce: my_nonce,
    });
    send(ctx, &name, &mut tls, &hello).await?;
    let their = match recv(ctx, &name, &mut tls).await? {
        Body::Hello(h) => h,
        Body::Refuse { reason } => return Err(SessionError::RefusedByPeer { peer: name, reason }),
        other => {
            return Err(proto(format!(
                "expected hello, got a {} frame",
                other.kind()
            )));
        }
    };
    let early_refusal = if their.party != name {
        Some((
            "wrong-party",
            format!(
                "its hello names {:?}, but its certificate names {name:?}",
                their.party
            ),
        ))
    } else if their.manifest_hash != epoch.manifest_hash {
        Some((
            ratls::codes::MANIFEST_MISMATCH,
            format!(
                "it runs federation manifest {}…, this node runs {}… — every party must activate the same manifest",
                &hex::encode(their.manifest_hash)[..16],
                &hex::encode(epoch.manifest_hash)[..16]
            ),
        ))
    } else if their.nonce == my_nonce {
        Some((
            ratls::codes::REFLECTION,
            "it sent back this node's own challenge nonce".to_owned(),
        ))
    } else {
        None
    };
    if let Some((code, message)) = early_refusal {
        let v = epoch
            .gate1
            .appraiser
            .refusal(code, message, crate::util::unix_now());
        epoch.gate1.sink.record_gate(&name, 2, &v, false);
        return Err(refuse_peer(ctx, &name, &mut tls, v.summary()).await);
    }

    let ours = answer(ctx, epoch, role, &exporter, &their.nonce).map_err(proto)?;
    send(
        ctx,
        &name,
        &mut tls,
        &Body::Attest {
            evidence: ours.evidence,
            endorsements: ours.endorsements,
            unix_time: ctx.reported_time(),
        },
    )
    .await?;
    let (their_evidence, their_endorsements, their_time) = match recv(ctx, &name, &mut tls).await? {
        Body::Attest {
            evidence,
            endorsements,
            unix_time,
        } => (evidence, endorsements, unix_time),
        Body::Refuse { reason } => return Err(SessionError::RefusedByPeer { peer: name, reason }),
        other => {
            return Err(proto(format!(
                "expected fresh evidence, got a {} frame",
                other.kind()
            )));
        }
    };
    let cx = Gate2Context {
        peer_role: role.other(),
        peer_spki_sha256,
        exporter: &exporter,
        manifest_hash: epoch.manifest_hash,
        our_nonce: my_nonce,
        gate1_platform: gate1_platform.as_ref(),
        peer_time: their_time,
        now: crate::util::unix_now(),
    };
    let (verdict, accepted) =
        epoch
            .gate1
            .check_gate2(&name, &their_evidence, &their_endorsements, &cx);
    if !accepted {
        return Err(refuse_peer(ctx, &name, &mut tls, verdict.summary()).await);
    }
    send(ctx, &name, &mut tls, &Body::Accept).await?;
    match recv(ctx, &name, &mut tls).await? {
        Body::Accept => {}
        Body::Refuse { reason } => return Err(SessionError::RefusedByPeer { peer: name, reason }),
        other => {
            return Err(proto(format!(
                "expected accept, got a {} frame",
                other.kind()
            )));
        }
    }
    let info = SessionInfo {
        epoch: epoch.clone(),
        role,
        exporter,
        own_spki_sha256: epoch.own_spki_sha256,
        peer_spki_sha256,
        gate1_platform,
    };
    Ok(Established {
        stream: tls,
        peer,
        info,
    })
}

/// Tell the peer why it is refused (best effort) and return the error for our side.
async fn refuse_peer<S: AsyncWrite + Unpin>(
    ctx: &NodeContext,
    peer: &str,
    s: &mut S,
    reason: String,
) -> SessionError {
    let _ = send(
        ctx,
        peer,
        s,
        &Body::Refuse {
            reason: reason.clone(),
        },
    )
    .await;
    SessionError::Refused {
        peer: peer.to_owned(),
        reason,
    }
}

/// Send one frame during set-up (counted).
pub async fn send<S: AsyncWrite + Unpin>(
    ctx: &NodeContext,
    peer: &str,
    s: &mut S,
    body: &Body,
) -> Result<(), SessionError> {
    let proto = |reason: String| SessionError::Protocol {
        peer: peer.to_owned(),
        reason,
    };
    let bytes = wire::encode(body).map_err(|e| proto(e.to_string()))?;
    wire::write_frame(s, &bytes)
        .await
        .map_err(|e| proto(format!("sending {}: {e}", body.kind())))?;
    ctx.counters.sent(peer, body.kind(), bytes.len());
    Ok(())
}

/// Receive one frame during set-up (counted), within the handshake timeout.
pub async fn recv<S: AsyncRead + Unpin>(
    ctx: &NodeContext,
    peer: &str,
    s: &mut S,
) -> Result<Body, SessionError> {
    let proto = |reason: String| SessionError::Protocol {
        peer: peer.to_owned(),
        reason,
    };
    let (body, len) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, wire::read_frame(s)).await {
        Err(_) => return Err(proto("no answer within the handshake timeout".into())),
        Ok(Err(WireError::Io(e))) => return Err(proto(handshake_reason(&e))),
        Ok(Err(e)) => return Err(proto(e.to_string())),
        Ok(Ok(x)) => x,
    };
    ctx.counters.received(peer, body.kind(), len);
    Ok(body)
}

/// When the session last received bytes from its peer, kept by the session's reader as
/// they arrive. The engine reads it to find silent peers: a node whose engine was busy
/// with a long MPC step must not mistake its own backlog of unprocessed frames for a
/// silent peer.
#[derive(Debug)]
pub struct Liveness {
    base: Instant,
    last_ms: AtomicU64,
}

impl Liveness {
    pub fn new() -> Arc<Self> {
        Arc::new(Liveness {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How long since the last bytes arrived (or since the session began).
    pub fn silent_for(&self) -> Duration {
        self.base
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// The session's read half, noting every read that brings bytes: a frame of several
/// megabytes arriving slowly on a loaded machine is a live peer, not a silent one.
struct Touching<'a, R> {
    inner: R,
    alive: &'a Liveness,
}

impl<R: AsyncRead + Unpin> AsyncRead for Touching<'_, R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.alive.touch();
        }
        polled
    }
}

/// How often a session with nothing else to send pings: a third of the time after which
/// the peer drops a silent session, at most 10 s.
pub fn ping_every(peer_silent_secs: u64) -> Duration {
    (Duration::from_secs(peer_silent_secs.max(1)) / 3).min(Duration::from_secs(10))
}

/// Run an established session until it ends or the engine closes it: frames in go to the
/// engine as events; the engine sends frames out through the session's outbox. The
/// session keeps itself alive: its writer pings when idle and its reader records every
/// frame, whether or not the engine is free to look (see [`Liveness`]).
pub async fn run(
    ctx: Arc<NodeContext>,
    epoch: Arc<Epoch>,
    est: Established,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let Established { stream, peer, info } = est;
    let name = epoch.name(peer).to_owned();
    let (rd, wr): (ReadHalf<_>, WriteHalf<_>) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<Body>(CONTROL_OUTBOX);
    let (data_tx, data_rx) = mpsc::channel::<crate::peer::DataFrame>(OUTBOX);
    let (close_tx, mut close_rx) = watch::channel(false);
    let conn = ctx.next_connection_id();
    let alive = Liveness::new();
    if events
        .send(Event::PeerUp {
            peer,
            conn,
            outbox: tx,
            data: data_tx,
            close: close_tx,
            info,
            alive: alive.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    tracing::info!(peer = %name, "session established (both gates passed)");
    let silent = Duration::from_secs(ctx.config.jobs.peer_silent_secs.max(1));
    let mut writer = tokio::spawn(write_loop(
        ctx.clone(),
        name.clone(),
        wr,
        Outboxes {
            control: rx,
            data: data_rx,
        },
        ping_every(ctx.config.jobs.peer_silent_secs),
        silent,
    ));
    let mut writer_done = false;
    let reason = tokio::select! {
        r = read_loop(&ctx, peer, conn, &name, rd, &events, &alive) => r,
        r = &mut writer => {
            writer_done = true;
            r.unwrap_or_else(|_| "the session's writer failed".to_owned())
        }
        _ = crate::util::stopped(&mut stop) => "this node is shutting down".to_owned(),
        _ = crate::util::stopped(&mut close_rx) => "closed by this node".to_owned(),
    };
    // Give the writer a moment to flush a final Refuse or Abort.
    if !writer_done {
        let _ = tokio::time::timeout(Duration::from_millis(200), &mut writer).await;
        writer.abort();
    }
    tracing::info!(peer = %name, %reason, "session ended");
    let _ = events.send(Event::PeerDown { peer, conn, reason }).await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    ctx: &NodeContext,
    peer: usize,
    conn: u64,
    name: &str,
    rd: R,
    events: &mpsc::Sender<Event>,
    alive: &Liveness,
) -> String {
    let mut rd = Touching { inner: rd, alive };
    loop {
        match wire::read_frame(&mut rd).await {
            Ok((body, len)) => {
                ctx.counters.received(name, body.kind(), len);
                if events
                    .send(Event::Frame { peer, conn, body })
                    .await
                    .is_err()
                {
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

/// A session's two outboxes: control frames (consent, attestation, aborts) go first, so a
/// job's bulk protocol frames never hold up an abort or a keep-alive. When the engine
/// closes the control outbox (the session ends) the writer stops: queued protocol frames
/// are dropped, never flushed after an abort or a refusal.
struct Outboxes {
    control: mpsc::Receiver<Body>,
    data: mpsc::Receiver<crate::peer::DataFrame>,
}

/// Write frames until both outboxes close; returns why the session must end. A frame the
/// peer does not take within `silent` (it stopped reading) ends the session, so its jobs
/// abort and nothing waits on it for ever.
async fn write_loop<W: AsyncWrite + Unpin>(
    ctx: Arc<NodeContext>,
    name: String,
    mut wr: W,
    mut rx: Outboxes,
    ping_every: Duration,
    silent: Duration,
) -> String {
    use tokio::io::AsyncWriteExt;
    let mut tick = tokio::time::interval(ping_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_write = Instant::now();
    let mut data_open = true;
    let reason = loop {
        let body = tokio::select! {
            biased;
            b = rx.control.recv() => match b {
                Some(b) => b,
                None => break "this node closed the session".to_owned(),
            },
            f = rx.data.recv(), if data_open => match f {
                Some(f) if f.cancelled.load(std::sync::atomic::Ordering::SeqCst) => continue,
                Some(f) => f.body,
                None => { data_open = false; continue }
            },
            _ = tick.tick() => {
                if last_write.elapsed() < ping_every {
                    continue;
                }
                Body::Ping
            }
        };
        let kind = body.kind();
        let bytes = match wire::encode(&body) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(peer = %name, error = %e, "cannot encode a frame; dropping it");
                continue;
            }
        };
        match tokio::time::timeout(silent, wire::write_frame(&mut wr, &bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(peer = %name, error = %e, "write failed");
                break format!("cannot write to the peer: {e}");
            }
            Err(_) => {
                tracing::warn!(peer = %name, secs = silent.as_secs(), "the peer stopped reading; closing the session");
                break format!(
                    "{}: the peer took no data for {} s (it stopped reading)",
                    crate::peer::codes::SILENT,
                    silent.as_secs()
                );
            }
        }
        last_write = Instant::now();
        ctx.counters.sent(&name, kind, bytes.len());
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), wr.shutdown()).await;
    reason
}
