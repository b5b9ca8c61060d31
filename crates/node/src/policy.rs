//! Recipient policies (docs/spam.md, "Recipient policy"): a small JSON
//! document signed by the key that owns the recipient's FIO Address, saying
//! whom the recipient accepts messages from. Any node accepts it (`PUT
//! /v1/policy/{address}`), serves it publicly (`GET`, so senders learn the
//! proof of work they need), stores it durably (one file per address under
//! `<data>/policies/`), and enforces it at admission (`limits::precheck`).
//! Replication calls [`accept_document`], which validates exactly as the PUT;
//! a document newly accepted from a client is pushed to every peer, and
//! peers repair from each other's digests (`replication/policy_sync.rs`).
//!
//! The signed text is the UTF-8 string of these lines joined by `\n`:
//!
//! ```text
//! FIO-L2-POLICY
//! 1                                  (version)
//! <chain id, 64 lowercase hex>
//! <address>
//! <owner_key, FIO...>
//! <updated, unix seconds>
//! <allow entries joined by ",">      (as in the document, in order; empty if none)
//! <block entries joined by ",">
//! <contacts_only: 1 or 0>
//! <min_pow_bits>
//! <max_content_bytes>                (0: no limit beyond the node's)
//! ```
//!
//! and `signature` is `SIG_K1_...` of `sha256(text)` by `owner_key`.

use crate::error::ApiError;
use crate::state::{now_unix, NodeState};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fio_l2_chain::{ChainError, Ownership};
use fio_l2_protocol::address::{domain_of, validate_domain};
use fio_l2_protocol::hash::sha256;
use fio_l2_protocol::{validate_address, PrivateKey, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// Largest policy document, bytes.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Most entries in each of `allow` and `block`.
pub const MAX_ENTRIES: usize = 1000;
/// Highest `min_pow_bits` a policy may ask for.
pub const MAX_POW_BITS: u32 = 32;

/// The document, as on the wire (every field required, no other allowed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    pub version: u8,
    pub address: String,
    pub owner_key: String,
    pub updated: u64,
    pub allow: Vec<String>,
    pub block: Vec<String>,
    pub contacts_only: bool,
    pub min_pow_bits: u32,
    pub max_content_bytes: u64,
    pub signature: String,
}

impl PolicyDoc {
    /// The exact text whose sha256 the owner signs (see the module docs).
    pub fn signing_text(&self, chain_id: &[u8; 32]) -> String {
        [
            "FIO-L2-POLICY".to_string(),
            self.version.to_string(),
            hex::encode(chain_id),
            self.address.clone(),
            self.owner_key.clone(),
            self.updated.to_string(),
            self.allow.join(","),
            self.block.join(","),
            if self.contacts_only { "1" } else { "0" }.to_string(),
            self.min_pow_bits.to_string(),
            self.max_content_bytes.to_string(),
        ]
        .join("\n")
    }

    pub fn digest(&self, chain_id: &[u8; 32]) -> [u8; 32] {
        sha256(self.signing_text(chain_id).as_bytes())
    }

    /// What this policy says about `sender` (same rule as the node's).
    pub fn decide(&self, sender: &str) -> Decision {
        Compiled::new(self.clone()).decide(sender)
    }

    /// Proof of work this policy asks of `sender` (ignoring the node's own minimum).
    pub fn pow_bits_for(&self, sender: &str) -> u32 {
        match self.decide(sender) {
            Decision::Allowed => 0,
            _ => self.min_pow_bits,
        }
    }

    /// Client side: fill `owner_key` and `signature` with `key`.
    pub fn sign(mut self, key: &PrivateKey, chain_id: &[u8; 32]) -> PolicyDoc {
        self.owner_key = key.public_key().to_fio_string();
        self.signature = key.sign_digest(&self.digest(chain_id)).to_string();
        self
    }
}

/// What a policy says about one sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Blocked,
    Neutral,
}

/// A stored policy with its lists as sets.
pub struct Compiled {
    pub doc: PolicyDoc,
    allow: HashSet<String>,
    block: HashSet<String>,
}

impl Compiled {
    fn new(doc: PolicyDoc) -> Compiled {
        Compiled {
            allow: doc.allow.iter().cloned().collect(),
            block: doc.block.iter().cloned().collect(),
            doc,
        }
    }

    /// An address entry decides before a domain entry; at the same level,
    /// block beats allow.
    pub fn decide(&self, sender: &str) -> Decision {
        if self.block.contains(sender) {
            return Decision::Blocked;
        }
        if self.allow.contains(sender) {
            return Decision::Allowed;
        }
        let dom = format!("@{}", domain_of(sender));
        if self.block.contains(&dom) {
            return Decision::Blocked;
        }
        if self.allow.contains(&dom) {
            return Decision::Allowed;
        }
        Decision::Neutral
    }
}

/// Policies in memory, each also in `<dir>/<address>.json` (written
/// atomically and fsync'd before a PUT is answered). Ordered by address, so
/// peers can page through the digest.
pub struct PolicyStore {
    dir: PathBuf,
    map: RwLock<BTreeMap<String, Arc<Compiled>>>,
    max: usize,
    write: Mutex<()>,
}

impl PolicyStore {
    pub fn open(dir: &FsPath, max: usize) -> Result<PolicyStore, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut map = BTreeMap::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<PolicyDoc>(&b).map_err(|e| e.to_string()));
            match parsed {
                Ok(doc) => {
                    map.insert(doc.address.clone(), Arc::new(Compiled::new(doc)));
                }
                Err(err) => tracing::warn!("skipping policy file {}: {err}", path.display()),
            }
        }
        Ok(PolicyStore {
            dir: dir.to_path_buf(),
            map: RwLock::new(map),
            max,
            write: Mutex::new(()),
        })
    }

    pub fn get(&self, address: &str) -> Option<Arc<Compiled>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(address)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored document (for replication to push to peers).
    pub fn all(&self) -> Vec<PolicyDoc> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|c| c.doc.clone())
            .collect()
    }

    /// `(address, updated)` of up to `limit` documents whose address sorts
    /// after `after` (all if None), in address order (the replication digest).
    pub fn digest_page(&self, after: Option<&str>, limit: usize) -> Vec<(String, u64)> {
        use std::ops::Bound;
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        map.range::<str, _>((lower, Bound::Unbounded))
            .take(limit)
            .map(|(a, c)| (a.clone(), c.doc.updated))
            .collect()
    }

    /// Stores `doc` unless a document with a later or equal `updated` is
    /// there (checked again under the write lock). Blocking (fsync).
    fn put(&self, doc: PolicyDoc) -> Result<PutResult, ApiError> {
        let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cur) = self.get(&doc.address) {
            if cur.doc == doc {
                return Ok(PutResult::Existing);
            }
            if cur.doc.updated >= doc.updated {
                return Err(stale(cur.doc.updated));
            }
        } else if self.len() >= self.max {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "policy_store_full",
                "this node holds its maximum number of policies",
            )
            .retry_after(3600));
        }
        let bytes = serde_json::to_vec(&doc).map_err(|e| internal(e.to_string()))?;
        let path = self.dir.join(format!("{}.json", doc.address));
        let tmp = self.dir.join(format!("{}.json.tmp", doc.address));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            tracing::error!("cannot store policy {}: {e}", path.display());
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the node could not store the policy",
            )
            .retry_after(5)
        })?;
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(doc.address.clone(), Arc::new(Compiled::new(doc)));
        Ok(PutResult::Stored)
    }
}

enum PutResult {
    Stored,
    Existing,
}

fn internal(m: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", m)
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_policy", m)
}

fn stale(current: u64) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "policy_stale",
        format!("a policy with updated {current} is stored; send a later updated"),
    )
}

fn check_entry(e: &str) -> Result<(), ApiError> {
    let ok = match e.strip_prefix('@') {
        Some(dom) => validate_domain(dom).is_ok() && dom == dom.to_ascii_lowercase(),
        None => validate_address(e).is_ok(),
    };
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "not a canonical FIO Address or @domain: {:?}",
            e.chars().take(80).collect::<String>()
        )))
    }
}

/// Parses and checks the form of a document (no signature, no chain).
pub fn parse_document(bytes: &[u8]) -> Result<PolicyDoc, ApiError> {
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a policy may have at most {MAX_POLICY_BYTES} bytes"),
        ));
    }
    let doc: PolicyDoc =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("malformed policy: {e}")))?;
    if doc.version != 1 {
        return Err(bad("version must be 1"));
    }
    validate_address(&doc.address).map_err(|e| bad(format!("address: {}", e.message)))?;
    if !doc.owner_key.starts_with("FIO") || PublicKey::parse(&doc.owner_key).is_err() {
        return Err(bad("owner_key must be a FIO... public key"));
    }
    if doc.allow.len() > MAX_ENTRIES || doc.block.len() > MAX_ENTRIES {
        return Err(bad(format!("at most {MAX_ENTRIES} entries per list")));
    }
    for e in doc.allow.iter().chain(doc.block.iter()) {
        check_entry(e)?;
    }
    if doc.min_pow_bits > MAX_POW_BITS {
        return Err(bad(format!("min_pow_bits may be at most {MAX_POW_BITS}")));
    }
    if doc.updated > u64::from(u32::MAX) {
        return Err(bad("updated must be unix seconds"));
    }
    Signature::parse(&doc.signature).map_err(|e| bad(format!("signature: {}", e.message)))?;
    Ok(doc)
}

/// Validates a policy document exactly as `PUT /v1/policy/{address}` does
/// (form, time, staleness, signature, ownership on the chain) and stores it.
/// For replication: call it with a peer's document; the answer is the one
/// the PUT would give: 201 stored, 200 already stored, or the error.
pub async fn accept_document(
    st: &NodeState,
    bytes: &[u8],
) -> Result<(StatusCode, Value), ApiError> {
    let doc = parse_document(bytes)?;
    let skew = u64::from(st.config.limits.max_clock_skew_secs);
    if doc.updated > now_unix() + skew {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_from_future",
            "updated is later than the node's clock allows",
        ));
    }
    let policies = &st.spam.policies;
    if let Some(cur) = policies.get(&doc.address) {
        if cur.doc == doc {
            return Ok((StatusCode::OK, answer(&doc, "existing")));
        }
        if cur.doc.updated >= doc.updated {
            return Err(stale(cur.doc.updated));
        }
    }
    let key = PublicKey::parse(&doc.owner_key).map_err(|e| bad(e.message))?;
    let sig = Signature::parse(&doc.signature).map_err(|e| bad(e.message))?;
    if sig.verify(&doc.digest(&st.chain_id), &key).is_err() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "policy_bad_signature",
            "the signature does not match the document and owner_key",
        ));
    }
    match st.chain.check_owner(&key, &doc.address).await {
        Ok(Ownership::Owned { .. }) => {}
        Err(ChainError::Unavailable(_)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "chain_unavailable",
                "the FIO Chain cannot be reached to check the owner",
            )
            .retry_after(5))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "policy_not_owner",
                format!("owner_key does not own {}", doc.address),
            ))
        }
    }
    let store = st.spam.policies.clone();
    let d = doc.clone();
    let r = tokio::task::spawn_blocking(move || store.put(d))
        .await
        .map_err(|e| internal(e.to_string()))??;
    Ok(match r {
        PutResult::Stored => (StatusCode::CREATED, answer(&doc, "accepted")),
        PutResult::Existing => (StatusCode::OK, answer(&doc, "existing")),
    })
}

fn answer(doc: &PolicyDoc, status: &str) -> Value {
    json!({"address": doc.address, "updated": doc.updated, "status": status})
}

/// `GET /v1/policy/{address}`: the stored document, public.
pub async fn get_policy(State(st): State<Arc<NodeState>>, Path(address): Path<String>) -> Response {
    if let Err(e) = validate_address(&address) {
        return ApiError::from(e).into_response();
    }
    match st.spam.policies.get(&address) {
        Some(c) => Json(&c.doc).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "no_policy",
            format!("{address} has no policy on this node"),
        )
        .into_response(),
    }
}

/// `PUT /v1/policy/{address}` with the signed document as the body.
pub async fn put_policy(
    State(st): State<Arc<NodeState>>,
    Path(address): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
                .into_response()
        }
    };
    let r = async {
        let doc = parse_document(&body)?;
        if doc.address != address {
            return Err(bad("the document's address is not the path's"));
        }
        let (status, v) = accept_document(&st, &body).await?;
        if status == StatusCode::CREATED {
            // New here, from a client: every peer gets it now, in the background.
            crate::replication::policy_sync::on_client_accept(&st, &doc);
        }
        Ok((status, v))
    }
    .await;
    match r {
        Ok((status, v)) => (status, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_text_is_the_documented_lines_and_signature_verifies() {
        let key = PrivateKey::from_seed("bob");
        let doc = PolicyDoc {
            version: 1,
            address: "bob@dev".into(),
            owner_key: String::new(),
            updated: 1_795_000_000,
            allow: vec!["alice@dev".into(), "@wallet".into()],
            block: vec![],
            contacts_only: true,
            min_pow_bits: 12,
            max_content_bytes: 4096,
            signature: String::new(),
        }
        .sign(&key, &[0x21; 32]);
        let want = format!(
            "FIO-L2-POLICY\n1\n{}\nbob@dev\n{}\n1795000000\nalice@dev,@wallet\n\n1\n12\n4096",
            "21".repeat(32),
            key.public_key().to_fio_string()
        );
        assert_eq!(doc.signing_text(&[0x21; 32]), want);
        let sig = Signature::parse(&doc.signature).unwrap();
        sig.verify(&sha256(want.as_bytes()), &key.public_key())
            .unwrap();
        let bytes = serde_json::to_vec(&doc).unwrap();
        assert_eq!(parse_document(&bytes).unwrap(), doc);
        assert_eq!(doc.decide("alice@dev"), Decision::Allowed);
        assert_eq!(doc.decide("x@wallet"), Decision::Allowed);
        assert_eq!(doc.decide("x@dev"), Decision::Neutral);
    }

    #[test]
    fn digest_pages_in_address_order_and_newer_replaces_older() {
        let dir = tempfile::tempdir().unwrap();
        let store = PolicyStore::open(dir.path(), 10).unwrap();
        let doc = |address: &str, updated: u64| PolicyDoc {
            version: 1,
            address: address.into(),
            owner_key: String::new(),
            updated,
            allow: vec![],
            block: vec![],
            contacts_only: false,
            min_pow_bits: 0,
            max_content_bytes: 0,
            signature: String::new(),
        };
        for (a, u) in [("carol@dev", 3), ("alice@dev", 1), ("bob@dev", 2)] {
            assert!(matches!(store.put(doc(a, u)).unwrap(), PutResult::Stored));
        }
        assert!(matches!(
            store.put(doc("bob@dev", 2)).unwrap(),
            PutResult::Existing
        ));
        assert!(matches!(store.put(doc("bob@dev", 1)), Err(e) if e.code == "policy_stale"));
        assert!(matches!(
            store.put(doc("bob@dev", 5)).unwrap(),
            PutResult::Stored
        ));
        let pairs = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(a, u)| (a.to_string(), *u)).collect()
        };
        assert_eq!(
            store.digest_page(None, 2),
            pairs(&[("alice@dev", 1), ("bob@dev", 5)])
        );
        assert_eq!(
            store.digest_page(Some("bob@dev"), 2),
            pairs(&[("carol@dev", 3)])
        );
        assert_eq!(store.digest_page(Some("carol@dev"), 2), vec![]);
        // Kept across a reopen, in the same order.
        let again = PolicyStore::open(dir.path(), 10).unwrap();
        assert_eq!(again.digest_page(None, 10), store.digest_page(None, 10));
    }

    #[test]
    fn address_entry_beats_domain_entry_and_block_beats_allow() {
        let c = Compiled::new(PolicyDoc {
            version: 1,
            address: "bob@dev".into(),
            owner_key: String::new(),
            updated: 0,
            allow: vec!["friend@spam".into(), "@dev".into(), "x@dev".into()],
            block: vec!["@spam".into(), "x@dev".into()],
            contacts_only: false,
            min_pow_bits: 0,
            max_content_bytes: 0,
            signature: String::new(),
        });
        assert_eq!(c.decide("friend@spam"), Decision::Allowed);
        assert_eq!(c.decide("other@spam"), Decision::Blocked);
        assert_eq!(c.decide("x@dev"), Decision::Blocked);
        assert_eq!(c.decide("y@dev"), Decision::Allowed);
        assert_eq!(c.decide("z@else"), Decision::Neutral);
    }
}
