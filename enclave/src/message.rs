//! Wire messages between parties: what the host frames (with `postcard`) and carries over the
//! attested sessions. Owns the message enum, its packed payloads and chunking rules; it does
//! not own framing, versioning or transport, which belong to the host.
//!
//! Every payload is a [`Chunk`]: the job's [`SessionId`], a round number, a part index and
//! count (a round's payload to one peer is split into parts of at most
//! `max_chunk_elems` field elements), and the elements packed as canonical bytes.

use crate::error::MpcError;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Identifies one job (or key-setup session): all its messages carry it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    /// A short hex prefix for errors and logs.
    pub fn short(&self) -> String {
        self.0[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl core::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SessionId({}…)", self.short())
    }
}

/// Packed field elements (or key material): serialised as one byte string, never one serde
/// value per element. `Debug` shows only the length; the bytes are zeroized on drop.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Packed(Vec<u8>);

impl Packed {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Mutable bytes (fault injection in tests and the `cheat` feature).
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Packed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for Packed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Packed[{} bytes, redacted]", self.0.len())
    }
}

impl Serialize for Packed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Packed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Packed;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Packed, E> {
                Ok(Packed(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Packed, E> {
                Ok(Packed(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Packed, A::Error> {
                // Self-describing formats (JSON) may present bytes as a sequence.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Packed(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// One part of a round's payload from one party to another.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Chunk {
    /// The job this belongs to.
    pub session: SessionId,
    /// Protocol round (a counter of communication steps within the job).
    pub round: u32,
    /// Index of this part, `< parts`.
    pub part: u32,
    /// Number of parts of this (kind, round) payload.
    pub parts: u32,
    /// Packed canonical field elements.
    pub data: Packed,
}

/// What a message carries; also the host's per-peer frame counter key ([`Message::kind`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[non_exhaustive]
pub enum Kind {
    /// A dealer's input shares.
    Share,
    /// Shares opened all-to-all.
    Open,
    /// Degree-reduction subshares in a multiplication.
    Reshare,
    /// PRSS key dealing (key setup).
    KeyDeal,
    /// PRSS key hash echo (key setup).
    KeyEcho,
    /// A party's commitment to its input buffer.
    Commit,
    /// A party aborted the job and says why.
    Abort,
    /// A party's shares of outputs addressed to the recipient (only recipients get them).
    Output,
}

impl Kind {
    /// Stable name for counters and errors.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Share => "share",
            Kind::Open => "open",
            Kind::Reshare => "reshare",
            Kind::KeyDeal => "key-deal",
            Kind::KeyEcho => "key-echo",
            Kind::Commit => "commit",
            Kind::Abort => "abort",
            Kind::Output => "output",
        }
    }
}

/// A protocol message. Serialise with `postcard` (or any serde format); variants are only
/// ever appended, so the encoding of existing variants is stable.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// A dealer's input shares for the recipient (kind `"share"`).
    Share(Chunk),
    /// The sender's shares of values opened to all (kind `"open"`).
    Open(Chunk),
    /// Multiplication subshares (kind `"reshare"`).
    Reshare(Chunk),
    /// PRSS set keys dealt to a set member: entries of set mask ‖ 32-byte key
    /// (kind `"key-deal"`).
    KeyDeal(Chunk),
    /// PRSS key echo: entries of set mask ‖ SHA-256 of the key (kind `"key-echo"`).
    KeyEcho(Chunk),
    /// The sender's 32-byte commitment to its input buffer (kind `"commit"`).
    Commit(Chunk),
    /// The sender aborted the job; `data` holds its reason as UTF-8 (at most
    /// [`MAX_ABORT_REASON`] bytes; kind `"abort"`). Receivers abort too, quoting it.
    Abort(Chunk),
    /// The sender's shares of the outputs addressed to the recipient (kind `"output"`).
    Output(Chunk),
}

impl Message {
    /// Builds a message of `kind`.
    pub fn new(kind: Kind, chunk: Chunk) -> Self {
        match kind {
            Kind::Share => Message::Share(chunk),
            Kind::Open => Message::Open(chunk),
            Kind::Reshare => Message::Reshare(chunk),
            Kind::KeyDeal => Message::KeyDeal(chunk),
            Kind::KeyEcho => Message::KeyEcho(chunk),
            Kind::Commit => Message::Commit(chunk),
            Kind::Abort => Message::Abort(chunk),
            Kind::Output => Message::Output(chunk),
        }
    }
    /// The message kind.
    pub fn kind_enum(&self) -> Kind {
        match self {
            Message::Share(_) => Kind::Share,
            Message::Open(_) => Kind::Open,
            Message::Reshare(_) => Kind::Reshare,
            Message::KeyDeal(_) => Kind::KeyDeal,
            Message::KeyEcho(_) => Kind::KeyEcho,
            Message::Commit(_) => Kind::Commit,
            Message::Abort(_) => Kind::Abort,
            Message::Output(_) => Kind::Output,
        }
    }
    /// Stable kind name for per-peer frame counters: `"share"`, `"open"`, `"reshare"`,
    /// `"key-deal"`, `"key-echo"`, `"commit"`, `"abort"`, `"output"`.
    pub fn kind(&self) -> &'static str {
        self.kind_enum().name()
    }
    /// The payload.
    pub fn chunk(&self) -> &Chunk {
        match self {
            Message::Share(c)
            | Message::Open(c)
            | Message::Reshare(c)
            | Message::KeyDeal(c)
            | Message::KeyEcho(c)
            | Message::Commit(c)
            | Message::Abort(c)
            | Message::Output(c) => c,
        }
    }
    /// The payload, mutably (fault injection).
    pub fn chunk_mut(&mut self) -> &mut Chunk {
        match self {
            Message::Share(c)
            | Message::Open(c)
            | Message::Reshare(c)
            | Message::KeyDeal(c)
            | Message::KeyEcho(c)
            | Message::Commit(c)
            | Message::Abort(c)
            | Message::Output(c) => c,
        }
    }
    fn into_chunk(self) -> Chunk {
        match self {
            Message::Share(c)
            | Message::Open(c)
            | Message::Reshare(c)
            | Message::KeyDeal(c)
            | Message::KeyEcho(c)
            | Message::Commit(c)
            | Message::Abort(c)
            | Message::Output(c) => c,
        }
    }
    /// Splits into kind and payload.
    pub fn into_parts(self) -> (Kind, Chunk) {
        let kind = self.kind_enum();
        (kind, self.into_chunk())
    }
}

/// A message to send to party `to`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Outgoing {
    /// Recipient party index.
    pub to: usize,
    /// The message.
    pub msg: Message,
}

/// Longest abort reason sent or quoted, in bytes.
pub const MAX_ABORT_REASON: usize = 1024;

/// Abort notices to every other party, carrying `reason` (truncated): sent so that peers stop
/// waiting and learn which check failed.
pub(crate) fn abort_notices(
    session: SessionId,
    me: usize,
    n: usize,
    reason: &MpcError,
) -> Vec<Outgoing> {
    let mut text = reason.to_string();
    if text.len() > MAX_ABORT_REASON {
        let mut cut = MAX_ABORT_REASON;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    (0..n)
        .filter(|&j| j != me)
        .map(|to| Outgoing {
            to,
            msg: Message::Abort(Chunk {
                session,
                round: 0,
                part: 0,
                parts: 1,
                data: Packed::new(text.clone().into_bytes()),
            }),
        })
        .collect()
}

/// Encodes a stream of field elements into the parts of one payload to one peer, splitting at
/// `chunk_elems` elements without an intermediate buffer.
pub(crate) struct PartWriter {
    header: Header,
    chunk_elems: usize,
    elem_len: usize,
    remaining: usize,
    parts: Vec<Vec<u8>>,
    in_part: usize,
}

impl PartWriter {
    /// A writer for a payload of exactly `total` elements of `elem_len` bytes.
    pub fn new(header: Header, total: usize, elem_len: usize, chunk_elems: usize) -> Self {
        Self {
            header,
            chunk_elems,
            elem_len,
            remaining: total,
            parts: Vec::with_capacity(parts_for(total, chunk_elems)),
            in_part: chunk_elems,
        }
    }

    /// Appends elements.
    pub fn extend<F: crate::field::Field>(&mut self, mut xs: &[F]) {
        while !xs.is_empty() {
            if self.in_part == self.chunk_elems {
                let cap = self.chunk_elems.min(self.remaining) * self.elem_len;
                self.parts.push(Vec::with_capacity(cap));
                self.in_part = 0;
            }
            let n = (self.chunk_elems - self.in_part).min(xs.len());
            if let Some(part) = self.parts.last_mut() {
                F::encode_extend(&xs[..n], part);
            }
            self.in_part += n;
            self.remaining = self.remaining.saturating_sub(n);
            xs = &xs[n..];
        }
    }

    /// Appends raw bytes (whole elements of `elem_len` bytes, e.g. a commitment).
    pub fn extend_raw(&mut self, bytes: &[u8]) {
        for e in bytes.chunks(self.elem_len) {
            if self.in_part == self.chunk_elems {
                let cap = self.chunk_elems.min(self.remaining) * self.elem_len;
                self.parts.push(Vec::with_capacity(cap));
                self.in_part = 0;
            }
            if let Some(part) = self.parts.last_mut() {
                part.extend_from_slice(e);
            }
            self.in_part += 1;
            self.remaining = self.remaining.saturating_sub(1);
        }
    }

    /// The messages for `to`, copying the parts (for payloads sent to several peers).
    pub fn messages_to(&self, to: usize, out: &mut Vec<Outgoing>) {
        let parts = u32::try_from(self.parts.len()).unwrap_or(u32::MAX);
        for (part, data) in self.parts.iter().enumerate() {
            let chunk = Chunk {
                session: self.header.session,
                round: self.header.round,
                part: u32::try_from(part).unwrap_or(u32::MAX),
                parts,
                data: Packed::new(data.clone()),
            };
            out.push(Outgoing {
                to,
                msg: Message::new(self.header.kind, chunk),
            });
        }
    }

    /// The messages for `to`, moving the parts.
    pub fn finish(mut self, to: usize, out: &mut Vec<Outgoing>) {
        let parts = u32::try_from(self.parts.len()).unwrap_or(u32::MAX);
        for (part, data) in core::mem::take(&mut self.parts).into_iter().enumerate() {
            let chunk = Chunk {
                session: self.header.session,
                round: self.header.round,
                part: u32::try_from(part).unwrap_or(u32::MAX),
                parts,
                data: Packed::new(data),
            };
            out.push(Outgoing {
                to,
                msg: Message::new(self.header.kind, chunk),
            });
        }
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        for p in &mut self.parts {
            p.zeroize();
        }
    }
}

/// Number of parts a payload of `elems` elements is split into (0 for an empty payload).
pub(crate) fn parts_for(elems: usize, chunk_elems: usize) -> usize {
    elems.div_ceil(chunk_elems)
}

/// Where a payload goes: kind, job and round.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub kind: Kind,
    pub session: SessionId,
    pub round: u32,
}

/// Splits packed bytes of `elem_len`-byte elements into chunked messages to `to`.
pub(crate) fn chunked(
    header: Header,
    to: usize,
    bytes: &[u8],
    elem_len: usize,
    chunk_elems: usize,
    out: &mut Vec<Outgoing>,
) {
    let Header {
        kind,
        session,
        round,
    } = header;
    let step = chunk_elems * elem_len;
    let parts = bytes.len().div_ceil(step);
    for (part, data) in bytes.chunks(step).enumerate() {
        let chunk = Chunk {
            session,
            round,
            // Part counts are bounded by the payload size over a ≥ 1-element chunk; the
            // config caps payloads well below 2^32 chunks.
            part: u32::try_from(part).unwrap_or(u32::MAX),
            parts: u32::try_from(parts).unwrap_or(u32::MAX),
            data: Packed::new(data.to_vec()),
        };
        out.push(Outgoing {
            to,
            msg: Message::new(kind, chunk),
        });
    }
}
