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

/// The latest verdict about a peer at one gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRecord {
    /// 1: the evidence in the peer's certificate; 2: fresh evidence bound to the session.
    pub gate: u8,
    pub verdict: Verdict,
    pub accepted: bool,
    /// Unix seconds when it was reached.
    pub at: i64,
    /// How many times this peer has been appraised at this gate since start.
    pub appraisals: u64,
}

/// The verdict sink: each peer's latest verdict per gate in memory, and every verdict in
/// the node's store with an audit entry.
#[derive(Debug)]
pub struct VerdictStore {
    latest: Mutex<BTreeMap<(String, u8), VerdictRecord>>,
    journal: Option<std::sync::Arc<crate::store::audit::Journal>>,
}

impl VerdictStore {
    /// Keep verdicts in memory, and in `journal` when given.
    pub fn new(journal: Option<std::sync::Arc<crate::store::audit::Journal>>) -> Self {
        VerdictStore {
            latest: Mutex::new(BTreeMap::new()),
            journal,
        }
    }

    /// Latest verdict per peer and gate.
    pub fn snapshot(&self) -> BTreeMap<(String, u8), VerdictRecord> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn get(&self, peer: &str, gate: u8) -> Option<VerdictRecord> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(peer.to_owned(), gate))
            .cloned()
    }
}

impl VerdictSink for VerdictStore {
    fn record_gate(&self, peer: &str, gate: u8, verdict: &Verdict, accepted: bool) {
        if accepted {
            tracing::info!(peer, gate, status = %verdict.status, reasons = %verdict.summary(), "appraised peer");
        } else {
            tracing::warn!(peer, gate, status = %verdict.status, reasons = %verdict.summary(), "refused peer");
        }
        let at = crate::util::unix_now();
        let rec = {
            let mut g = self.latest.lock().unwrap_or_else(|p| p.into_inner());
            let key = (peer.to_owned(), gate);
            let n = g.get(&key).map_or(0, |r| r.appraisals);
            let rec = VerdictRecord {
                gate,
                verdict: verdict.clone(),
                accepted,
                at,
                appraisals: n + 1,
            };
            g.insert(key, rec.clone());
            rec
        };
        if let Some(j) = &self.journal {
            let codes: Vec<&str> = verdict.reasons.iter().map(|r| r.code.as_str()).collect();
            let detail = serde_json::json!({
                "peer": peer, "gate": gate, "status": verdict.status, "accepted": accepted, "reasons": codes,
                "policy": verdict.policy_hash,
            });
            let json = serde_json::to_string(&rec).unwrap_or_default();
            let result = j.record_with("verdict", detail, |tx| {
                tx.execute(
                    "INSERT INTO verdicts (peer, gate, accepted, record, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![peer, gate, accepted, json, at],
                )
                .map_err(|e| j.store.sql_error(e))?;
                Ok(())
            });
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot record a verdict in the store");
            }
        }
    }
}
