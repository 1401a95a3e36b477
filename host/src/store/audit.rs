//! The audit log: an append-only RFC 6962 Merkle log (via `ct-merkle`) of every
//! security-relevant event, persisted in the node's store, with tree heads signed by the
//! node's identity key and exchanged with peers.
//!
//! An entry is `{seq, time, event, detail}`; its leaf is the RFC 8785 canonical JSON of the
//! entry, and details never carry input values. A tree head names the log (`log_id`, a
//! random id per log generation), its size and root, and the node's budget-ledger counter
//! and spend, so a peer holding an older head notices a node that comes back with an older
//! store (fewer entries, a smaller counter, or a log that is not an extension of the one it
//! saw). `parley node recover` starts a new generation whose first entry records the lost
//! range; its heads name the head they supersede (`recovered`).
//!
//! Verification of an exported log needs only this module's functions and the node's public
//! identity key: [`verify_export`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, RootHash};
use parley_attestation::canonical::{self, Domain};
use parley_attestation::hexbytes::{Ed25519Key, HexBytes};
use ring::rand::SecureRandom;
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

type H = sha2_011::Sha256;

/// One logged event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub seq: u64,
    /// Unix seconds.
    pub time: i64,
    pub event: String,
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// The Merkle leaf: canonical JSON.
    pub fn leaf(&self) -> Vec<u8> {
        canonical::jcs(self).unwrap_or_default()
    }
}

/// The head of the log generation a recovered log supersedes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousLog {
    pub log_id: HexBytes<16>,
    pub generation: u64,
    pub size: u64,
    pub root: HexBytes<32>,
    pub ledger_counter: u64,
}

/// What a node signs about its log and ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHead {
    pub party: String,
    pub log_id: HexBytes<16>,
    pub generation: u64,
    pub size: u64,
    pub root: HexBytes<32>,
    /// Number of budget-ledger entries.
    pub ledger_counter: u64,
    /// Total spent per dataset (decimal strings).
    pub spent: BTreeMap<String, String>,
    /// Unix seconds.
    pub time: i64,
    /// Travels in postcard frames too: always serialised (no `skip_serializing_if`).
    #[serde(default)]
    pub recovered: Option<PreviousLog>,
}

impl TreeHead {
    pub fn to_be_signed(&self) -> Vec<u8> {
        canonical::to_be_signed(Domain::TreeHead, self).unwrap_or_default()
    }
    pub fn as_previous(&self) -> PreviousLog {
        PreviousLog {
            log_id: self.log_id,
            generation: self.generation,
            size: self.size,
            root: self.root,
            ledger_counter: self.ledger_counter,
        }
    }
}

/// A tree head with its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTreeHead {
    pub head: TreeHead,
    pub signature: HexBytes<64>,
}

impl SignedTreeHead {
    pub fn verify(&self, key: &Ed25519Key) -> bool {
        canonical::verify_ed25519(&key.0, Domain::TreeHead, &self.head, &self.signature.0)
    }
}

/// The in-memory Merkle tree of the current log generation, mirrored in the store.
pub struct AuditLog {
    tree: MemoryBackedTree<H, Vec<u8>>,
    log_id: [u8; 16],
    generation: u64,
    /// Sequence number of this generation's first entry.
    first_seq: u64,
    next_seq: u64,
    /// The head this generation supersedes, from its first (`recovery`) entry.
    recovered: Option<PreviousLog>,
}

/// The superseded head a generation's first entry records, if it is a recovery record.
fn superseded(first: Option<&AuditEntry>) -> Option<PreviousLog> {
    let e = first.filter(|e| e.event == "recovery")?;
    superseded_by(&e.detail)
}

fn superseded_by(recovery: &serde_json::Value) -> Option<PreviousLog> {
    serde_json::from_value(recovery.get("record")?.get("previous")?.clone()).ok()
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AuditLog(gen {}, {} entries)",
            self.generation,
            self.tree.len()
        )
    }
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    // An all-zero id on RNG failure is still unique enough per store; the log stays valid.
    let _ = ring::rand::SystemRandom::new().fill(&mut id);
    id
}

/// Root and size of a tree over `leaves`.
pub fn root_of(leaves: &[Vec<u8>]) -> [u8; 32] {
    let mut t: MemoryBackedTree<H, Vec<u8>> = MemoryBackedTree::new();
    for l in leaves {
        t.push(l.clone());
    }
    t.root().as_bytes().as_slice().try_into().unwrap_or([0; 32])
}

/// Whether `proof` shows the tree (old_size, old_root) is a prefix of (new_size, new_root).
pub fn verify_consistency(
    old_size: u64,
    old_root: &[u8; 32],
    new_size: u64,
    new_root: &[u8; 32],
    proof: &[u8],
) -> bool {
    if old_size == 0 {
        return true;
    }
    if old_size == new_size {
        return old_root == new_root;
    }
    let (Ok(old), Ok(new)) = (
        ct_merkle::digest::Output::<H>::try_from(old_root.as_slice()),
        ct_merkle::digest::Output::<H>::try_from(new_root.as_slice()),
    ) else {
        return false;
    };
    let Ok(p) = ConsistencyProof::<H>::try_from_bytes(proof.to_vec()) else {
        return false;
    };
    RootHash::<H>::new(new, new_size)
        .verify_consistency(&RootHash::new(old, old_size), &p)
        .is_ok()
}

impl AuditLog {
    /// Load the current generation from the store (creating the log on first use).
    pub fn open(store: &Store) -> Result<Self, StoreError> {
        let state = store.read(|c| {
            c.query_row(
                "SELECT log_id, generation, first_seq FROM log_state WHERE id = 0",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| store.sql_error(e))
        })?;
        let (log_id, generation, first_seq) = match state {
            Some((id, g, f)) => {
                let id: HexBytes<16> = id
                    .parse()
                    .map_err(|e: String| store.corrupt(format!("log id: {e}")))?;
                (id.0, g as u64, f as u64)
            }
            None => {
                let id = random_id();
                store.transaction(|tx| {
                    tx.execute(
                        "INSERT INTO log_state (id, log_id, generation, first_seq) VALUES (0, ?1, 1, 0)",
                        params![hex::encode(id)],
                    )
                    .map_err(|e| store.sql_error(e))?;
                    Ok(())
                })?;
                (id, 1, 0)
            }
        };
        let entries = load_entries(store, first_seq)?;
        let mut tree = MemoryBackedTree::new();
        let mut next_seq = first_seq;
        for e in &entries {
            if e.seq != next_seq {
                return Err(store.corrupt(format!(
                    "audit entry {} follows {}: the log has a gap",
                    e.seq, next_seq
                )));
            }
            tree.push(e.leaf());
            next_seq += 1;
        }
        Ok(AuditLog {
            tree,
            log_id,
            generation,
            first_seq,
            next_seq,
            recovered: superseded(entries.first()),
        })
    }

    pub fn size(&self) -> u64 {
        self.tree.len()
    }

    pub fn root(&self) -> [u8; 32] {
        self.tree
            .root()
            .as_bytes()
            .as_slice()
            .try_into()
            .unwrap_or([0; 32])
    }

    pub fn log_id(&self) -> [u8; 16] {
        self.log_id
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Append `event` in one transaction with `extra` (the state change it records).
    pub fn append(
        &mut self,
        store: &Store,
        event: &str,
        detail: serde_json::Value,
        extra: impl FnOnce(&Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let entry = AuditEntry {
            seq: self.next_seq,
            time: crate::util::unix_now(),
            event: event.to_owned(),
            detail,
        };
        let leaf = entry.leaf();
        store.transaction(|tx| {
            extra(tx)?;
            tx.execute(
                "INSERT INTO audit (seq, entry) VALUES (?1, ?2)",
                params![entry.seq as i64, leaf],
            )
            .map_err(|e| store.sql_error(e))?;
            Ok(())
        })?;
        self.tree.push(leaf);
        self.next_seq += 1;
        Ok(entry.seq)
    }

    /// A consistency proof from the first `old_size` entries to the whole log; `None` when
    /// `old_size` is not a prefix size of this log.
    pub fn consistency_proof(&self, old_size: u64) -> Option<Vec<u8>> {
        let len = self.tree.len();
        if old_size == 0 || old_size > len {
            return None;
        }
        let additions = usize::try_from(len - old_size).ok()?;
        Some(self.tree.prove_consistency(additions).as_bytes().to_vec())
    }

    /// Start a new generation after a restore from backup: its first entry records the
    /// superseded head (signed by the operator) and the lost range.
    pub fn start_generation(
        &mut self,
        store: &Store,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let id = random_id();
        let generation = self.generation + 1;
        let first = self.next_seq;
        store.transaction(|tx| {
            tx.execute(
                "UPDATE log_state SET log_id = ?1, generation = ?2, first_seq = ?3 WHERE id = 0",
                params![hex::encode(id), generation as i64, first as i64],
            )
            .map_err(|e| store.sql_error(e))?;
            Ok(())
        })?;
        self.tree = MemoryBackedTree::new();
        self.log_id = id;
        self.generation = generation;
        self.first_seq = first;
        self.recovered = superseded_by(&detail);
        self.append(store, "recovery", detail, |_| Ok(()))?;
        Ok(())
    }

    /// This generation's entries, from the store.
    pub fn entries(&self, store: &Store) -> Result<Vec<AuditEntry>, StoreError> {
        load_entries(store, self.first_seq)
    }
}

fn load_entries(store: &Store, from: u64) -> Result<Vec<AuditEntry>, StoreError> {
    store.read(|c| {
        let mut stmt = c
            .prepare("SELECT entry FROM audit WHERE seq >= ?1 ORDER BY seq")
            .map_err(|e| store.sql_error(e))?;
        let rows = stmt
            .query_map(params![from as i64], |r| r.get::<_, Vec<u8>>(0))
            .map_err(|e| store.sql_error(e))?;
        let mut out = Vec::new();
        for r in rows {
            let bytes = r.map_err(|e| store.sql_error(e))?;
            out.push(
                serde_json::from_slice(&bytes)
                    .map_err(|e| store.corrupt(format!("audit entry: {e}")))?,
            );
        }
        Ok(out)
    })
}

/// The store and the log together: how the node records what it does.
pub struct Journal {
    pub store: Arc<Store>,
    log: Mutex<AuditLog>,
    pub party: String,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Journal({})", self.party)
    }
}

impl Journal {
    /// The latest tree head of `party`'s log that this node holds (received from that
    /// peer and checked); `None` if it never held one or the stored copy does not parse.
    pub fn held_head(&self, party: &str) -> Option<SignedTreeHead> {
        let store = &self.store;
        store
            .read(|c| {
                c.query_row(
                    "SELECT head FROM peer_heads WHERE peer = ?1",
                    params![party],
                    |r| r.get::<_, String>(0),
                )
                .optional()
                .map_err(|e| store.sql_error(e))
            })
            .ok()
            .flatten()
            .and_then(|h| serde_json::from_str(&h).ok())
    }

    pub fn open(store: Arc<Store>, party: &str) -> Result<Self, StoreError> {
        let log = AuditLog::open(&store)?;
        Ok(Journal {
            store,
            log: Mutex::new(log),
            party: party.to_owned(),
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, AuditLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record an event.
    pub fn record(&self, event: &str, detail: serde_json::Value) -> Result<u64, StoreError> {
        self.record_with(event, detail, |_| Ok(()))
    }

    /// Record an event in one transaction with the state change it describes.
    pub fn record_with(
        &self,
        event: &str,
        detail: serde_json::Value,
        extra: impl FnOnce(&Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut log = self.log();
        log.append(&self.store, event, detail, extra)
    }

    /// The ledger counter and spend per dataset.
    pub fn ledger(&self) -> Result<(u64, BTreeMap<String, String>), StoreError> {
        self.store.read(|c| {
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM ledger", [], |r| r.get(0))
                .map_err(|e| self.store.sql_error(e))?;
            let mut stmt = c
                .prepare(
                    "SELECT dataset, amount FROM ledger WHERE kind IN ('spend', 'recovered-spend')",
                )
                .map_err(|e| self.store.sql_error(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(|e| self.store.sql_error(e))?;
            // Amounts are ρ (zCDP) as exact decimals.
            let mut spent: BTreeMap<String, parley_enclave::decimal::Decimal> = BTreeMap::new();
            for r in rows {
                let (d, a) = r.map_err(|e| self.store.sql_error(e))?;
                let a: parley_enclave::decimal::Decimal = a
                    .parse()
                    .map_err(|_| self.store.corrupt(format!("ledger amount {a:?}")))?;
                let e = spent.entry(d).or_default();
                *e = e
                    .checked_add(a)
                    .ok_or_else(|| self.store.corrupt("ledger spend overflows".to_owned()))?;
            }
            Ok((
                n as u64,
                spent.into_iter().map(|(k, v)| (k, v.to_string())).collect(),
            ))
        })
    }

    /// The current head, unsigned.
    pub fn head(&self) -> Result<TreeHead, StoreError> {
        let (ledger_counter, spent) = self.ledger()?;
        let log = self.log();
        let recovered = log.recovered.clone();
        Ok(TreeHead {
            party: self.party.clone(),
            log_id: HexBytes(log.log_id()),
            generation: log.generation(),
            size: log.size(),
            root: HexBytes(log.root()),
            ledger_counter,
            spent,
            time: crate::util::unix_now(),
            recovered,
        })
    }

    pub fn consistency_proof(&self, old_size: u64) -> Option<Vec<u8>> {
        self.log().consistency_proof(old_size)
    }

    pub fn size(&self) -> u64 {
        self.log().size()
    }

    pub fn entries(&self) -> Result<Vec<AuditEntry>, StoreError> {
        let log = self.log();
        log.entries(&self.store)
    }

    /// Begin a new generation (recovery); see [`AuditLog::start_generation`].
    pub fn start_generation(&self, detail: serde_json::Value) -> Result<(), StoreError> {
        self.log().start_generation(&self.store, detail)
    }
}

/// An exported log: the current generation's entries and a signed head over them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditExport {
    pub format: u32,
    pub party: String,
    pub identity_key: Ed25519Key,
    pub entries: Vec<AuditEntry>,
    pub head: SignedTreeHead,
}

/// The outcome of checking an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportCheck {
    /// Entries, head and (if given) the peer-held checkpoint agree.
    Valid {
        size: u64,
    },
    Invalid(String),
}

/// Check an exported log: the head's signature under `key`, contiguous sequence numbers,
/// the root over the entries, and — given a tree head a peer holds — that the log extends
/// it (or explicitly supersedes it after a recovery).
pub fn verify_export(
    export: &AuditExport,
    key: &Ed25519Key,
    checkpoint: Option<&SignedTreeHead>,
) -> ExportCheck {
    let bad = |m: String| ExportCheck::Invalid(m);
    if !export.head.verify(key) {
        return bad(format!("the tree head is not signed by {key}"));
    }
    let h = &export.head.head;
    if h.size != export.entries.len() as u64 {
        return bad(format!(
            "the tree head covers {} entries but the export has {}",
            h.size,
            export.entries.len()
        ));
    }
    for w in export.entries.windows(2) {
        if w[1].seq != w[0].seq + 1 {
            return bad(format!(
                "entry {} follows entry {}: entries were removed or reordered",
                w[1].seq, w[0].seq
            ));
        }
    }
    let leaves: Vec<Vec<u8>> = export.entries.iter().map(AuditEntry::leaf).collect();
    if root_of(&leaves) != h.root.0 {
        return bad("the entries do not hash to the signed root: an entry was altered, removed or reordered".into());
    }
    if let Some(cp) = checkpoint {
        if !cp.verify(key) {
            return bad(format!("the checkpoint is not signed by {key}"));
        }
        let c = &cp.head;
        if c.log_id == h.log_id {
            if c.size > h.size {
                return bad(format!(
                    "a peer holds a tree head of size {} but the log has {}: it was truncated",
                    c.size, h.size
                ));
            }
            let prefix = usize::try_from(c.size)
                .unwrap_or(usize::MAX)
                .min(leaves.len());
            if root_of(&leaves[..prefix]) != c.root.0 {
                return bad(format!(
                    "the first {} entries do not hash to the root a peer holds: the log was rewritten (truncated and re-signed)",
                    c.size
                ));
            }
        } else {
            match &h.recovered {
                Some(p)
                    if p.log_id == c.log_id
                        && p.size >= c.size
                        && p.ledger_counter >= c.ledger_counter => {}
                _ => {
                    return bad(
                        "a peer holds a head of another log that this log does not acknowledge superseding: the log was replaced".into(),
                    );
                }
            }
        }
    }
    ExportCheck::Valid { size: h.size }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn signer() -> (Ed25519KeyPair, Ed25519Key) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let pk = Ed25519Key(kp.public_key().as_ref().try_into().unwrap());
        (kp, pk)
    }

    fn sign(kp: &Ed25519KeyPair, head: TreeHead) -> SignedTreeHead {
        let sig = kp.sign(&head.to_be_signed());
        SignedTreeHead {
            head,
            signature: HexBytes(sig.as_ref().try_into().unwrap()),
        }
    }

    fn journal(dir: &std::path::Path) -> Journal {
        Journal::open(Arc::new(Store::open(&dir.join("db")).unwrap()), "p").unwrap()
    }

    #[test]
    fn log_persists_and_proves_consistency() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        for i in 0..5 {
            j.record("test", serde_json::json!({ "i": i })).unwrap();
        }
        let h5 = j.head().unwrap();
        for i in 5..13 {
            j.record("test", serde_json::json!({ "i": i })).unwrap();
        }
        drop(j);
        let j = journal(dir.path());
        let h13 = j.head().unwrap();
        assert_eq!(h13.size, 13);
        let proof = j.consistency_proof(5).unwrap();
        assert!(verify_consistency(5, &h5.root.0, 13, &h13.root.0, &proof));
        assert!(!verify_consistency(5, &[7; 32], 13, &h13.root.0, &proof));
        assert_eq!(j.consistency_proof(14), None);
    }

    #[test]
    fn export_verification_catches_each_kind_of_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let j = journal(dir.path());
        for i in 0..10 {
            j.record("test", serde_json::json!({ "i": i })).unwrap();
        }
        let (kp, pk) = signer();
        let checkpoint = sign(&kp, j.head().unwrap());
        for i in 10..12 {
            j.record("test", serde_json::json!({ "i": i })).unwrap();
        }
        let export = AuditExport {
            format: 1,
            party: "p".into(),
            identity_key: pk,
            entries: j.entries().unwrap(),
            head: sign(&kp, j.head().unwrap()),
        };
        assert_eq!(
            verify_export(&export, &pk, Some(&checkpoint)),
            ExportCheck::Valid { size: 12 }
        );

        let mut altered = export.clone();
        altered.entries[3].detail = serde_json::json!({ "i": 99 });
        assert!(
            matches!(verify_export(&altered, &pk, None), ExportCheck::Invalid(m) if m.contains("altered"))
        );
        let mut removed = export.clone();
        removed.entries.remove(4);
        assert!(matches!(
            verify_export(&removed, &pk, None),
            ExportCheck::Invalid(_)
        ));
        let mut reordered = export.clone();
        reordered.entries.swap(2, 3);
        assert!(matches!(
            verify_export(&reordered, &pk, None),
            ExportCheck::Invalid(_)
        ));

        // Truncated to 8 entries, rewritten and re-signed: consistent on its own, but it
        // contradicts the head of size 10 the peer holds.
        let mut entries = export.entries[..8].to_vec();
        entries.push(AuditEntry {
            seq: 8,
            time: 0,
            event: "forged".into(),
            detail: serde_json::json!({}),
        });
        entries.push(AuditEntry {
            seq: 9,
            time: 0,
            event: "forged".into(),
            detail: serde_json::json!({}),
        });
        let leaves: Vec<Vec<u8>> = entries.iter().map(AuditEntry::leaf).collect();
        let mut head = export.head.head.clone();
        head.size = 10;
        head.root = HexBytes(root_of(&leaves));
        let rewritten = AuditExport {
            entries,
            head: sign(&kp, head),
            ..export.clone()
        };
        assert_eq!(
            verify_export(&rewritten, &pk, None),
            ExportCheck::Valid { size: 10 }
        );
        assert!(
            matches!(verify_export(&rewritten, &pk, Some(&checkpoint)), ExportCheck::Invalid(m) if m.contains("rewritten"))
        );
        // Another key's head is refused.
        let (_, other) = signer();
        assert!(matches!(
            verify_export(&export, &other, None),
            ExportCheck::Invalid(_)
        ));
    }
}
