//! The peer wire protocol: length-delimited frames of a versioned, typed message enum.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of `postcard`-encoded
//! [`Frame`]. Frames above [`MAX_FRAME_LEN`] are refused before any allocation; the MPC
//! engine chunks large batches under that limit. A frame with another [`WIRE_VERSION`] or an
//! undecodable body is a typed error that ends the session, never a panic.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::jobs::job::{JobId, JobSpec};

/// Bumped on any incompatible change to [`Body`].
pub const WIRE_VERSION: u16 = 1;
/// Largest accepted frame (bytes after the length prefix).
pub const MAX_FRAME_LEN: usize = 16 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub struct Frame {
    pub version: u16,
    pub body: Body,
}

/// What peers say to each other.
#[derive(Debug, Serialize, Deserialize)]
pub enum Body {
    /// First frame of a session in each direction, after the TLS handshake: who we are,
    /// which manifest we run, our clock, and our gate-2 challenge nonce.
    Hello(Hello),
    /// Fresh evidence answering the peer's latest nonce (gate 2).
    Attest {
        evidence: Vec<u8>,
        /// SNP: the host's certificate table; empty otherwise.
        endorsements: Vec<u8>,
        unix_time: i64,
    },
    /// The sender accepted the peer's gate-2 evidence; the session may carry jobs.
    Accept,
    /// The sender refuses the peer (and closes the session); the reason is for the logs.
    Refuse {
        reason: String,
    },
    /// Re-attestation on an established session: answer with `Attest`.
    Challenge {
        nonce: [u8; 32],
        unix_time: i64,
    },
    /// A job proposal, sent by the proposer to every party.
    Propose(JobSpec),
    /// A party's signed decision on a proposal, sent to every party.
    Approve(crate::jobs::job::SignedApproval),
    /// The datasets (names and versions, never contents) the sender can compute over.
    Catalog {
        datasets: Vec<(String, u64)>,
    },
    /// The sender passed every gate for this job (re-attested every peer, platform
    /// diversity); the protocol starts when every party has said so.
    Ready {
        job: JobId,
    },
    /// A protocol message of a running job.
    Mpc {
        job: JobId,
        msg: parley_enclave::Message,
    },
    /// The sender aborted the job; nothing will be delivered.
    Abort {
        job: JobId,
        reason: String,
    },
    /// The tree head of the receiver's audit log that the sender holds (none yet: `None`),
    /// so the receiver can prove its log extends it.
    Checkpoint {
        held: Option<crate::store::audit::SignedTreeHead>,
    },
    /// The sender's signed tree head and a consistency proof from the size the receiver
    /// holds.
    TreeHead {
        head: crate::store::audit::SignedTreeHead,
        proof: Vec<u8>,
    },
    /// Keep-alive.
    Ping,
    Pong,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub party: String,
    pub manifest_hash: [u8; 32],
    pub unix_time: i64,
    pub nonce: [u8; 32],
}

impl Body {
    /// The frame type name used by the per-peer counters (`share` and `open` for MPC rounds).
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Hello(_) => "hello",
            Body::Attest { .. } => "attest",
            Body::Accept => "accept",
            Body::Refuse { .. } => "refuse",
            Body::Challenge { .. } => "challenge",
            Body::Propose(_) => "propose",
            Body::Approve(_) => "approve",
            Body::Catalog { .. } => "catalog",
            Body::Ready { .. } => "ready",
            Body::Mpc { msg, .. } => msg.kind(),
            Body::Abort { .. } => "abort",
            Body::Checkpoint { .. } => "checkpoint",
            Body::TreeHead { .. } => "tree-head",
            Body::Ping => "ping",
            Body::Pong => "pong",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge { len: usize },
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error(
        "frame of wire version {found}; this node speaks version {WIRE_VERSION} (upgrade the older node)"
    )]
    Version { found: u16 },
}

/// Serialises exactly like [`Frame`], borrowing the body.
#[derive(Serialize)]
struct FrameOut<'a> {
    version: u16,
    body: &'a Body,
}

/// Encode a frame (length prefix included).
pub fn encode(body: &Body) -> Result<Vec<u8>, WireError> {
    let frame = FrameOut {
        version: WIRE_VERSION,
        body,
    };
    let mut out =
        postcard::to_extend(&frame, vec![0u8; 4]).map_err(|e| WireError::Decode(e.to_string()))?;
    let len = out.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLarge { len });
    }
    let len32 = u32::try_from(len).map_err(|_| WireError::TooLarge { len })?;
    out[..4].copy_from_slice(&len32.to_be_bytes());
    Ok(out)
}

/// Decode one frame's payload (without the length prefix).
pub fn decode(payload: &[u8]) -> Result<Body, WireError> {
    if payload.len() > MAX_FRAME_LEN {
        return Err(WireError::TooLarge { len: payload.len() });
    }
    // The version comes first so an old or new peer gets a clear error.
    let (version, _) =
        postcard::take_from_bytes::<u16>(payload).map_err(|e| WireError::Decode(e.to_string()))?;
    if version != WIRE_VERSION {
        return Err(WireError::Version { found: version });
    }
    let (frame, rest): (Frame, &[u8]) =
        postcard::take_from_bytes(payload).map_err(|e| WireError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Decode(format!(
            "{} trailing bytes after the frame",
            rest.len()
        )));
    }
    Ok(frame.body)
}

/// Read one frame; returns the body and the frame's size on the wire.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<(Body, usize), WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(WireError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_LEN {
        return Err(WireError::TooLarge { len });
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok((decode(&buf)?, len + 4))
}

/// Write one already-encoded frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> Result<(), WireError> {
    w.write_all(bytes).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let hello = Body::Hello(Hello {
            party: "a".into(),
            manifest_hash: [3; 32],
            unix_time: 5,
            nonce: [4; 32],
        });
        let bytes = encode(&hello).unwrap();
        match decode(&bytes[4..]).unwrap() {
            Body::Hello(h) => assert_eq!(h.party, "a"),
            other => panic!("{other:?}"),
        }
        let mut wrong_version = bytes[4..].to_vec();
        wrong_version[0] = 9;
        assert!(matches!(
            decode(&wrong_version),
            Err(WireError::Version { found: 9 })
        ));
        let mut trailing = bytes[4..].to_vec();
        trailing.push(0);
        assert!(matches!(decode(&trailing), Err(WireError::Decode(_))));
        assert!(decode(&[]).is_err());
        assert!(decode(&[1, 0, 200]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
