//! Receiving side of the round structure: validates each incoming chunk against what the
//! current round expects (sender, kind, size), buffers bounded early arrivals for later
//! rounds, rejects stale and duplicate chunks, and reassembles parts.

use crate::error::MpcError;
use crate::field::Field;
use crate::message::{Chunk, Kind, Message, Packed, SessionId, parts_for};
use crate::secret::SecretVec;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// One payload the current round expects: `elems` elements of `kind` from `from`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expect {
    pub kind: Kind,
    pub from: usize,
    pub elems: usize,
    pub elem_len: usize,
}

struct Slot {
    kind: Kind,
    from: usize,
    elems: usize,
    elem_len: usize,
    parts: u32,
    got: Vec<Option<Packed>>,
    remaining: u32,
}

pub(crate) struct Limits {
    pub chunk_elems: usize,
    pub max_ahead: u32,
    pub max_buffered: usize,
}

pub(crate) struct Inbox {
    me: usize,
    n: usize,
    session: SessionId,
    limits: Limits,
    round: u32,
    slots: Vec<Slot>,
    future: BTreeMap<(u32, Kind, usize, u32), Chunk>,
    future_bytes: Vec<usize>,
}

impl Inbox {
    pub fn new(me: usize, n: usize, session: SessionId, limits: Limits) -> Self {
        Self {
            me,
            n,
            session,
            limits,
            round: 0,
            slots: Vec::new(),
            future: BTreeMap::new(),
            future_bytes: vec![0; n],
        }
    }

    pub fn round(&self) -> u32 {
        self.round
    }

    /// Starts `round` (≥ the current one) with its expectations and places any chunks that
    /// arrived early for it.
    pub fn begin_round(&mut self, round: u32, expects: &[Expect]) -> Result<(), MpcError> {
        if round < self.round || (round == self.round && !self.slots.is_empty()) {
            return Err(MpcError::Misuse("rounds must advance"));
        }
        self.round = round;
        self.slots = expects
            .iter()
            .filter(|e| e.elems > 0)
            .map(|e| {
                let parts = parts_for(e.elems, self.limits.chunk_elems);
                let parts32 = u32::try_from(parts).unwrap_or(u32::MAX);
                Slot {
                    kind: e.kind,
                    from: e.from,
                    elems: e.elems,
                    elem_len: e.elem_len,
                    parts: parts32,
                    got: vec![None; parts],
                    remaining: parts32,
                }
            })
            .collect();
        let early: Vec<_> = self
            .future
            .range((round, Kind::Share, 0, 0)..)
            .map(|(k, _)| *k)
            .collect();
        for key in early {
            if key.0 != round {
                break;
            }
            if let Some(chunk) = self.future.remove(&key) {
                let from = key.2;
                self.future_bytes[from] = self.future_bytes[from].saturating_sub(chunk.data.len());
                self.place(from, key.1, chunk)?;
            }
        }
        Ok(())
    }

    /// Validates and stores one incoming message.
    pub fn accept(&mut self, from: usize, msg: Message) -> Result<(), MpcError> {
        if from >= self.n {
            return Err(MpcError::UnknownParty { from, n: self.n });
        }
        if from == self.me {
            return Err(MpcError::FromSelf { from });
        }
        let (kind, chunk) = msg.into_parts();
        if chunk.session != self.session {
            return Err(MpcError::WrongSession {
                from,
                expected: self.session.short(),
                got: chunk.session.short(),
            });
        }
        if kind == Kind::Abort {
            let bytes = chunk.data.as_bytes();
            let shown = &bytes[..bytes.len().min(crate::message::MAX_ABORT_REASON)];
            let reason: String = String::from_utf8_lossy(shown).escape_debug().collect();
            return Err(MpcError::PeerAborted { from, reason });
        }
        if chunk.round < self.round {
            return Err(MpcError::StaleRound {
                from,
                kind: kind.name(),
                round: chunk.round,
                current: self.round,
            });
        }
        if chunk.round > self.round {
            return self.buffer(from, kind, chunk);
        }
        self.place(from, kind, chunk)
    }

    fn buffer(&mut self, from: usize, kind: Kind, chunk: Chunk) -> Result<(), MpcError> {
        let ahead = chunk.round - self.round;
        if ahead > self.limits.max_ahead {
            return Err(MpcError::TooFarAhead {
                from,
                kind: kind.name(),
                round: chunk.round,
                current: self.round,
                max_ahead: self.limits.max_ahead,
            });
        }
        let key = (chunk.round, kind, from, chunk.part);
        if self.future.contains_key(&key) {
            return Err(MpcError::Duplicate {
                from,
                kind: kind.name(),
                round: chunk.round,
                part: chunk.part,
            });
        }
        let bytes = self.future_bytes[from] + chunk.data.len();
        if bytes > self.limits.max_buffered {
            return Err(MpcError::TooMuchBuffered {
                from,
                bytes,
                limit: self.limits.max_buffered,
            });
        }
        self.future_bytes[from] = bytes;
        self.future.insert(key, chunk);
        Ok(())
    }

    fn place(&mut self, from: usize, kind: Kind, chunk: Chunk) -> Result<(), MpcError> {
        let round = self.round;
        let chunk_elems = self.limits.chunk_elems;
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.kind == kind && s.from == from)
        else {
            let expected: Vec<String> = self
                .slots
                .iter()
                .filter(|s| s.from == from)
                .map(|s| format!("{} ({} elements)", s.kind.name(), s.elems))
                .collect();
            let expected = if expected.is_empty() {
                format!("nothing from party {from}")
            } else {
                expected.join(", ")
            };
            return Err(MpcError::Unexpected {
                from,
                kind: kind.name(),
                round,
                expected,
            });
        };
        if chunk.parts != slot.parts || chunk.part >= chunk.parts {
            return Err(MpcError::BadChunking {
                from,
                kind: kind.name(),
                round,
                part: chunk.part,
                parts: chunk.parts,
                expected_parts: slot.parts,
            });
        }
        let part = chunk.part as usize;
        if slot.got.get(part).is_none_or(Option::is_some) {
            return Err(MpcError::Duplicate {
                from,
                kind: kind.name(),
                round,
                part: chunk.part,
            });
        }
        let elem_len = slot.elem_len;
        let start = part * chunk_elems;
        let elems = chunk_elems.min(slot.elems - start);
        let expected = elems * elem_len;
        if chunk.data.len() != expected {
            return Err(MpcError::WrongLength {
                from,
                kind: kind.name(),
                round,
                part: chunk.part,
                expected,
                got: chunk.data.len(),
            });
        }
        slot.got[part] = Some(chunk.data);
        slot.remaining -= 1;
        Ok(())
    }

    /// Whether every expected payload of the current round is complete.
    pub fn complete(&self) -> bool {
        self.slots.iter().all(|s| s.remaining == 0)
    }

    /// Removes a complete payload of the current round (`None` if none was expected).
    pub fn take_payload(&mut self, kind: Kind, from: usize) -> Result<Option<Payload>, MpcError> {
        let Some(idx) = self
            .slots
            .iter()
            .position(|s| s.kind == kind && s.from == from)
        else {
            return Ok(None);
        };
        let slot = self.slots.swap_remove(idx);
        if slot.remaining != 0 {
            return Err(MpcError::Misuse("payload taken before it was complete"));
        }
        let parts = slot.got.into_iter().flatten().collect();
        Ok(Some(Payload {
            from,
            kind,
            round: self.round,
            elem_len: slot.elem_len,
            parts,
            part: 0,
            offset: 0,
            element: 0,
        }))
    }

    /// Removes a complete payload of the current round as raw bytes (empty if none was
    /// expected).
    pub fn take_bytes(&mut self, kind: Kind, from: usize) -> Result<Zeroizing<Vec<u8>>, MpcError> {
        let mut out = Zeroizing::new(Vec::new());
        if let Some(p) = self.take_payload(kind, from)? {
            for part in &p.parts {
                out.extend_from_slice(part.as_bytes());
            }
        }
        Ok(out)
    }

    /// Removes and decodes a complete payload of the current round. An expectation of zero
    /// elements yields an empty vector.
    pub fn take<F: Field>(&mut self, kind: Kind, from: usize) -> Result<SecretVec<F>, MpcError> {
        let Some(mut p) = self.take_payload(kind, from)? else {
            return Ok(SecretVec::zeros(0));
        };
        let total: usize = p.parts.iter().map(|b| b.len() / F::ENCODED_LEN).sum();
        let mut out = SecretVec::zeros(total);
        p.decode_into(out.as_mut_slice())?;
        Ok(out)
    }
}

/// A complete payload from one peer: its parts in order, read sequentially.
pub(crate) struct Payload {
    from: usize,
    kind: Kind,
    round: u32,
    elem_len: usize,
    parts: Vec<Packed>,
    part: usize,
    offset: usize,
    element: usize,
}

impl Payload {
    fn read<F: Field>(
        &mut self,
        out: &mut [F],
        mut f: impl FnMut(&[u8], &mut [F]) -> Result<(), (usize, crate::field::FieldError)>,
    ) -> Result<(), MpcError> {
        debug_assert_eq!(self.elem_len, F::ENCODED_LEN);
        let mut done = 0;
        while done < out.len() {
            let Some(part) = self.parts.get(self.part) else {
                return Err(MpcError::Misuse("payload shorter than its expectation"));
            };
            let bytes = &part.as_bytes()[self.offset..];
            let n = (bytes.len() / F::ENCODED_LEN).min(out.len() - done);
            f(&bytes[..n * F::ENCODED_LEN], &mut out[done..done + n]).map_err(|(i, error)| {
                MpcError::BadElement {
                    from: self.from,
                    kind: self.kind.name(),
                    round: self.round,
                    element: self.element + i,
                    error,
                }
            })?;
            done += n;
            self.element += n;
            self.offset += n * F::ENCODED_LEN;
            if self.offset == part.len() {
                self.part += 1;
                self.offset = 0;
            }
        }
        Ok(())
    }

    /// Decodes the next `out.len()` elements into `out`.
    pub fn decode_into<F: Field>(&mut self, out: &mut [F]) -> Result<(), MpcError> {
        self.read(out, F::decode_into)
    }

    /// Decodes the next `acc.len()` elements and adds them into `acc`.
    pub fn add_into<F: Field>(&mut self, acc: &mut [F]) -> Result<(), MpcError> {
        self.read(acc, F::decode_add)
    }
}
