//! What a node reports about itself: per-peer frame counters by message type and the
//! latest attestation verdict about each peer. Read over the admin socket, logged and
//! written to `status.json` at shutdown.

use std::collections::BTreeMap;
use std::sync::Mutex;

use parley_attestation::appraise::Verdict;
use parley_attestation::ratls::VerdictSink;
use serde::{Deserialize, Serialize};

/// Frames and bytes one way, for one message type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub frames: u64,
    pub bytes: u64,
}

/// Counters for one peer: message type → tally, per direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCounters {
    pub sent: BTreeMap<String, Tally>,
    pub received: BTreeMap<String, Tally>,
}

impl PeerCounters {
    pub fn sent_total(&self) -> Tally {
        total(&self.sent)
    }
    pub fn received_total(&self) -> Tally {
        total(&self.received)
    }
    /// Frames of the MPC share-carrying types, both ways.
    pub fn share_frames(&self) -> u64 {
        let is_share = |k: &String| SHARE_KINDS.contains(&k.as_str());
        self.sent
            .iter()
            .chain(&self.received)
            .filter(|(k, _)| is_share(k))
            .map(|(_, t)| t.frames)
            .sum()
    }
}

/// Frame types that carry shares or share-derived values.
pub const SHARE_KINDS: &[&str] = &["share", "open", "mul", "check", "reshare", "coin", "prss"];

fn total(m: &BTreeMap<String, Tally>) -> Tally {
    m.values().fold(Tally::default(), |a, t| Tally {
        frames: a.frames + t.frames,
        bytes: a.bytes + t.bytes,
    })
}

/// Thread-safe counters for all peers.
#[derive(Debug, Default)]
pub struct Counters(Mutex<BTreeMap<String, PeerCounters>>);

impl Counters {
    pub fn sent(&self, peer: &str, kind: &str, bytes: usize) {
        self.bump(peer, kind, bytes, true);
    }
    pub fn received(&self, peer: &str, kind: &str, bytes: usize) {
        self.bump(peer, kind, bytes, false);
    }
    fn bump(&self, peer: &str, kind: &str, bytes: usize, sent: bool) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let pc = g.entry(peer.to_owned()).or_default();
        let t = if sent {
            pc.sent.entry(kind.to_owned()).or_default()
        } else {
            pc.received.entry(kind.to_owned()).or_default()
        };
        t.frames += 1;
        t.bytes += bytes as u64;
    }
    pub fn snapshot(&self) -> BTreeMap<String, PeerCounters> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The latest verdict about a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub verdict: Verdict,
    pub accepted: bool,
    /// How many times this peer has been appraised since start.
    pub appraisals: u64,
}

/// Keeps each peer's latest gate-1 verdict (the node service's store replaces this later).
#[derive(Debug, Default)]
pub struct VerdictStore(Mutex<BTreeMap<String, VerdictRecord>>);

impl VerdictStore {
    pub fn snapshot(&self) -> BTreeMap<String, VerdictRecord> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    pub fn get(&self, peer: &str) -> Option<VerdictRecord> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .cloned()
    }
}

impl VerdictSink for VerdictStore {
    fn record(&self, peer: &str, verdict: &Verdict, accepted: bool) {
        let level = if accepted {
            tracing::Level::INFO
        } else {
            tracing::Level::WARN
        };
        if level == tracing::Level::INFO {
            tracing::info!(peer, status = %verdict.status, accepted, reasons = %verdict.summary(), "appraised peer");
        } else {
            tracing::warn!(peer, status = %verdict.status, accepted, reasons = %verdict.summary(), "refused peer");
        }
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = g.get(peer).map_or(0, |r| r.appraisals);
        g.insert(
            peer.to_owned(),
            VerdictRecord {
                verdict: verdict.clone(),
                accepted,
                appraisals: n + 1,
            },
        );
    }
}
