//! Network-verifiable deletions (docs/replication.md, "Deletions").
//!
//! A deletion record is signed by the recipient's owner key:
//!
//! ```text
//! {"address":"bob@dev","ids":["<64 hex>",...],"time":T,"key":"FIO...","signature":"SIG_K1_..."}
//! signature = SIG_K1 of sha256(text), text = "FIO-L2-DELETE\n" + chain_id hex + "\n"
//!             + address + "\n" + T + "\n" + ids joined by ","
//! ```
//!
//! Any node checks it alone (signature by `key`, `key` owns `address` on the
//! chain) before applying it; the record is kept beside the tombstone
//! (`replication.redb`) and served to peers with it.

use crate::error::ApiError;
use crate::state::{now_unix, NodeState};
use axum::http::StatusCode;
use fio_l2_chain::{ChainError, Ownership};
use fio_l2_protocol::hash::sha256;
use fio_l2_protocol::{canonical_address, PrivateKey, PublicKey, Signature};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Most ids one record may delete (the node's `max_page` bounds an ack too).
pub const MAX_RECORD_IDS: usize = 500;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeletionRecord {
    pub address: String,
    pub ids: Vec<String>,
    pub time: u64,
    pub key: String,
    pub signature: String,
}

/// The signed text (see the module docs).
pub fn signing_text(chain_id: &[u8; 32], address: &str, time: u64, ids: &[String]) -> String {
    format!(
        "FIO-L2-DELETE\n{}\n{address}\n{time}\n{}",
        hex::encode(chain_id),
        ids.join(",")
    )
}

/// Makes a record (what `fio-l2 ack` sends).
pub fn sign(
    key: &PrivateKey,
    chain_id: &[u8; 32],
    address: &str,
    time: u64,
    ids: &[String],
) -> DeletionRecord {
    let digest = sha256(signing_text(chain_id, address, time, ids).as_bytes());
    DeletionRecord {
        address: address.to_string(),
        ids: ids.to_vec(),
        time,
        key: key.public_key().to_fio_string(),
        signature: key.sign_digest(&digest).to_string(),
    }
}

fn bad(status: StatusCode, code: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(status, code, msg)
}

impl DeletionRecord {
    /// Checks everything but the chain: shape, ids, time, signature. Returns the ids.
    pub fn verify_offline(
        &self,
        chain_id: &[u8; 32],
        now: u64,
        skew: u64,
    ) -> Result<Vec<[u8; 32]>, ApiError> {
        let e400 = |m: String| bad(StatusCode::BAD_REQUEST, "bad_deletion", m);
        if canonical_address(&self.address).ok().as_deref() != Some(self.address.as_str()) {
            return Err(e400(
                "deletion.address is not a canonical FIO Address".into(),
            ));
        }
        if self.ids.is_empty() || self.ids.len() > MAX_RECORD_IDS {
            return Err(e400(format!(
                "deletion.ids must hold 1..{MAX_RECORD_IDS} ids"
            )));
        }
        let mut ids = Vec::with_capacity(self.ids.len());
        for h in &self.ids {
            let id = (h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then(|| hex::decode(h).ok())
                .flatten()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| e400("deletion.ids: not a lowercase message id".into()))?;
            ids.push(id);
        }
        if self.time > now + skew {
            return Err(e400("deletion.time is in the future".into()));
        }
        let key = PublicKey::parse(&self.key).map_err(|e| e400(format!("deletion.key: {e}")))?;
        let sig = Signature::parse(&self.signature)
            .map_err(|e| e400(format!("deletion.signature: {e}")))?;
        let digest = sha256(signing_text(chain_id, &self.address, self.time, &self.ids).as_bytes());
        sig.verify(&digest, &key).map_err(|_| {
            bad(
                StatusCode::UNAUTHORIZED,
                "deletion_bad_signature",
                "the deletion record's signature does not verify",
            )
        })?;
        Ok(ids)
    }

    /// The record's key must own its address now.
    pub async fn check_owner(&self, state: &NodeState) -> Result<(), ApiError> {
        let key = PublicKey::parse(&self.key)
            .map_err(|e| bad(StatusCode::BAD_REQUEST, "bad_deletion", e.to_string()))?;
        match state.chain.check_owner(&key, &self.address).await {
            Ok(Ownership::Owned { .. }) => Ok(()),
            Ok(_) => Err(bad(
                StatusCode::FORBIDDEN,
                "deletion_not_owner",
                format!("the deletion key does not own {}", self.address),
            )),
            Err(ChainError::Unavailable(_)) => Err(bad(
                StatusCode::SERVICE_UNAVAILABLE,
                "chain_unavailable",
                "the FIO Chain cannot be reached to check the deletion",
            )
            .retry_after(5)),
            Err(e) => Err(bad(
                StatusCode::FORBIDDEN,
                "deletion_not_owner",
                e.message().to_string(),
            )),
        }
    }
}

/// A checked ack deletion record, with `(id, created, expires)` of the ids
/// stored here for the address.
pub struct PreparedAck {
    json: String,
    items: Vec<([u8; 32], u32, u32)>,
}

/// Ack hook, before the delete: with a `deletion` record in the ack body,
/// check it (same ids, same address, signature, ownership). Nothing changes
/// when it fails.
pub async fn prepare_ack(
    state: &NodeState,
    address: &str,
    ack_ids: &[String],
    record: Option<&DeletionRecord>,
) -> Result<Option<PreparedAck>, ApiError> {
    let Some(rec) = record else { return Ok(None) };
    if rec.address != address || rec.ids != ack_ids {
        return Err(bad(
            StatusCode::BAD_REQUEST,
            "bad_deletion",
            "the deletion record must name the same address and the same ids as the ack",
        ));
    }
    let ids = rec.verify_offline(
        &state.chain_id,
        now_unix(),
        state.config.limits.max_clock_skew_secs as u64,
    )?;
    rec.check_owner(state).await?;
    let store = state.store.clone();
    let items = tokio::task::spawn_blocking(move || {
        ids.iter()
            .filter_map(|id| store.get(id).ok().flatten())
            .map(|e| (e.id, e.created, e.expires))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let json = serde_json::to_string(rec).unwrap_or_default();
    Ok(Some(PreparedAck { json, items }))
}

/// Ack hook, after the delete: keep the record for the ids deleted now.
pub async fn after_ack(state: &NodeState, prepared: Option<PreparedAck>, deleted: &[[u8; 32]]) {
    let (Some(p), Some(r)) = (prepared, super::get(state)) else {
        return;
    };
    let items: Vec<_> = p
        .items
        .into_iter()
        .filter(|(id, _, _)| deleted.contains(id))
        .collect();
    if items.is_empty() {
        return;
    }
    let r = r.clone();
    let res = tokio::task::spawn_blocking(move || r.deletions.put(&p.json, &items)).await;
    if let Ok(Err(e)) | Err(e) = res.map_err(|e| e.to_string()) {
        tracing::warn!("cannot keep a deletion record: {e}");
    }
}

// ---- the record store ---------------------------------------------------------

/// id -> created(4) expires(4) record hash(32)
const DELS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("deletions");
/// record hash -> expires(4) record JSON
const RECS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("deletion_records");

/// Deletion records beside the message store's tombstones (a redb file of its own).
pub struct DeletionStore {
    db: Database,
}

fn be(e: impl std::fmt::Display) -> String {
    format!("deletion store: {e}")
}

impl DeletionStore {
    pub fn open(path: &Path) -> Result<DeletionStore, String> {
        let db = Database::create(path).map_err(be)?;
        let tx = db.begin_write().map_err(be)?;
        tx.open_table(DELS).map_err(be)?;
        tx.open_table(RECS).map_err(be)?;
        tx.commit().map_err(be)?;
        Ok(DeletionStore { db })
    }

    /// Keeps `json` as the record of each `(id, created, expires)`.
    pub fn put(&self, json: &str, items: &[([u8; 32], u32, u32)]) -> Result<(), String> {
        let hash = sha256(json.as_bytes());
        let max_exp = items.iter().map(|i| i.2).max().unwrap_or(0);
        let mut tx = self.db.begin_write().map_err(be)?;
        tx.set_durability(Durability::Immediate).map_err(be)?;
        {
            let mut recs = tx.open_table(RECS).map_err(be)?;
            let old = recs.get(&hash).map_err(be)?.and_then(|g| {
                g.value()
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            });
            let mut v = Vec::with_capacity(4 + json.len());
            v.extend_from_slice(&max_exp.max(old.unwrap_or(0)).to_le_bytes());
            v.extend_from_slice(json.as_bytes());
            recs.insert(&hash, v.as_slice()).map_err(be)?;
            let mut dels = tx.open_table(DELS).map_err(be)?;
            for (id, created, expires) in items {
                let mut d = Vec::with_capacity(40);
                d.extend_from_slice(&created.to_le_bytes());
                d.extend_from_slice(&expires.to_le_bytes());
                d.extend_from_slice(&hash);
                dels.insert(id, d.as_slice()).map_err(be)?;
            }
        }
        tx.commit().map_err(be)
    }

    pub fn has(&self, id: &[u8; 32]) -> Result<bool, String> {
        let tx = self.db.begin_read().map_err(be)?;
        let dels = tx.open_table(DELS).map_err(be)?;
        Ok(dels.get(id).map_err(be)?.is_some())
    }

    /// Which of `ids` have a record (one read transaction).
    pub fn has_many(&self, ids: &[[u8; 32]]) -> Result<Vec<bool>, String> {
        let tx = self.db.begin_read().map_err(be)?;
        let dels = tx.open_table(DELS).map_err(be)?;
        ids.iter()
            .map(|id| Ok(dels.get(id).map_err(be)?.is_some()))
            .collect()
    }

    /// `(created, expires, record JSON)` of an id's deletion.
    pub fn get(&self, id: &[u8; 32]) -> Result<Option<(u32, u32, String)>, String> {
        let tx = self.db.begin_read().map_err(be)?;
        let dels = tx.open_table(DELS).map_err(be)?;
        let Some(d) = dels.get(id).map_err(be)? else {
            return Ok(None);
        };
        let d = d.value().to_vec();
        if d.len() != 40 {
            return Err(be("corrupt deletion entry"));
        }
        let created = u32::from_le_bytes(d[0..4].try_into().unwrap_or([0; 4]));
        let expires = u32::from_le_bytes(d[4..8].try_into().unwrap_or([0; 4]));
        let hash: [u8; 32] = d[8..40].try_into().map_err(be)?;
        let recs = tx.open_table(RECS).map_err(be)?;
        let Some(r) = recs.get(&hash).map_err(be)? else {
            return Ok(None);
        };
        let json = String::from_utf8(r.value().get(4..).unwrap_or_default().to_vec())
            .map_err(|_| be("record not UTF-8"))?;
        Ok(Some((created, expires, json)))
    }

    /// Drops entries and records whose expiry has passed.
    pub fn purge(&self, now: u32) -> Result<u64, String> {
        let mut tx = self.db.begin_write().map_err(be)?;
        tx.set_durability(Durability::Immediate).map_err(be)?;
        let mut n = 0u64;
        {
            let mut dels = tx.open_table(DELS).map_err(be)?;
            let mut due = vec![];
            for item in dels.iter().map_err(be)? {
                let (k, v) = item.map_err(be)?;
                let exp = v
                    .value()
                    .get(4..8)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
                    .unwrap_or(0);
                if exp <= now {
                    due.push(*k.value());
                }
            }
            for id in &due {
                dels.remove(id).map_err(be)?;
            }
            n += due.len() as u64;
            let mut recs = tx.open_table(RECS).map_err(be)?;
            let mut due = vec![];
            for item in recs.iter().map_err(be)? {
                let (k, v) = item.map_err(be)?;
                let exp = v
                    .value()
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
                    .unwrap_or(0);
                if exp <= now {
                    due.push(*k.value());
                }
            }
            for h in &due {
                recs.remove(h).map_err(be)?;
            }
        }
        if n == 0 {
            tx.abort().map_err(be)?;
        } else {
            tx.commit().map_err(be)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_signs_and_verifies() {
        let k = PrivateKey::from_seed("bob");
        let chain = [7u8; 32];
        let ids = vec![hex::encode([1u8; 32]), hex::encode([2u8; 32])];
        let r = sign(&k, &chain, "bob@dev", 1000, &ids);
        assert_eq!(r.verify_offline(&chain, 1000, 0).unwrap().len(), 2);
        assert!(r.verify_offline(&[8u8; 32], 1000, 0).is_err());
        assert!(r.verify_offline(&chain, 900, 10).is_err());
        let mut t = r.clone();
        t.ids.pop();
        assert_eq!(
            t.verify_offline(&chain, 1000, 0).unwrap_err().code,
            "deletion_bad_signature"
        );
        let mut t = r.clone();
        t.address = "carol@dev".into();
        assert!(t.verify_offline(&chain, 1000, 0).is_err());
    }

    #[test]
    fn store_keeps_and_purges() {
        let d = tempfile::tempdir().unwrap();
        let s = DeletionStore::open(&d.path().join("r.redb")).unwrap();
        s.put("{\"a\":1}", &[([1; 32], 10, 100), ([2; 32], 11, 200)])
            .unwrap();
        assert!(s.has(&[1; 32]).unwrap());
        assert_eq!(s.has_many(&[[1; 32], [3; 32]]).unwrap(), vec![true, false]);
        assert_eq!(
            s.get(&[2; 32]).unwrap(),
            Some((11, 200, "{\"a\":1}".to_string()))
        );
        assert_eq!(s.purge(150).unwrap(), 1);
        assert!(!s.has(&[1; 32]).unwrap());
        assert!(s.get(&[2; 32]).unwrap().is_some());
        assert_eq!(s.purge(200).unwrap(), 1);
        assert_eq!(s.get(&[2; 32]).unwrap(), None);
    }
}
