//! Repair: range-based set reconciliation (negentropy, protocol 0x61) with a
//! peer over the items `(created, id)` of a window of `created`, then fetching
//! only the missing ids and admitting them like a client's envelopes.
//!
//! An item is `(created * 2, id)` for a message or a local-only deletion
//! (which must not propagate), and `(created * 2 + 1, !id)` (every bit of the
//! id flipped) for a tombstone with a deletion record: negentropy fingerprints
//! cover ids only, so a deletion must have an id of its own to differ from
//! the message and propagate. Fetching `!id` answers the deletion of `id`.

use super::deletion::DeletionRecord;
use super::peers::{add, penalty, Peer};
use super::{Replicator, PEER_HEADER};
use crate::admission::{admit_many, Source};
use crate::state::{now_unix, NodeState};
use negentropy::{Id, Negentropy, NegentropyStorageVector};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most items one reconciliation session holds; larger windows are split.
pub const MAX_ITEMS: usize = 1_000_000;
/// Negentropy frame size limit (bytes per message each way).
pub const FRAME_LIMIT: u64 = 512 * 1024;
/// Most ids per fetch request.
pub const FETCH_CHUNK: usize = 1_000;
/// Fetch requests (each downloaded, then admitted) in flight with one peer.
const FETCH_PARALLEL: usize = 4;
/// Largest fetch answer read, bytes.
pub const MAX_FETCH_BYTES: usize = 64 << 20;

/// One reconciliation item: (timestamp, id).
pub type Item = (u64, [u8; 32]);
/// A deletion to apply: (id, created, expires).
pub type Tomb = ([u8; 32], u32, u32);

/// The window's items as negentropy wants them, or None if more than `max`.
pub fn local_items(
    state: &NodeState,
    r: &Replicator,
    from: u32,
    to: u32,
    max: usize,
) -> Result<Option<Vec<Item>>, String> {
    let rows = state
        .store
        .range(from, to, max + 1)
        .map_err(|e| e.to_string())?;
    if rows.len() > max {
        return Ok(None);
    }
    let tombs: Vec<[u8; 32]> = rows.iter().filter(|r| r.2).map(|r| r.1).collect();
    let with_record = if tombs.is_empty() {
        vec![]
    } else {
        r.deletions.has_many(&tombs)?
    };
    let recorded: std::collections::HashSet<[u8; 32]> = tombs
        .iter()
        .zip(with_record)
        .filter(|(_, h)| *h)
        .map(|(id, _)| *id)
        .collect();
    Ok(Some(
        rows.into_iter()
            .map(|(c, id, tomb)| {
                if tomb && recorded.contains(&id) {
                    (c as u64 * 2 + 1, deletion_item_id(&id))
                } else {
                    (c as u64 * 2, id)
                }
            })
            .collect(),
    ))
}

/// The reconciliation id of the deletion of `id` (and back).
pub fn deletion_item_id(id: &[u8; 32]) -> [u8; 32] {
    let mut out = *id;
    for b in &mut out {
        *b = !*b;
    }
    out
}

pub fn storage_of(items: &[(u64, [u8; 32])]) -> Result<NegentropyStorageVector, String> {
    let mut s = NegentropyStorageVector::with_capacity(items.len());
    for (ts, id) in items {
        s.insert(*ts, Id::from_byte_array(*id))
            .map_err(|e| e.to_string())?;
    }
    s.seal().map_err(|e| e.to_string())?;
    Ok(s)
}

/// The per-peer repair loop: learn the peer's identity, a full pass, then a
/// recent-window pass every `sync_interval_ms` and a full one every
/// `full_interval_secs`.
pub async fn run(r: Arc<Replicator>, state: Arc<NodeState>, peer: Arc<Peer>) {
    // 1. Identity (and same chain).
    loop {
        match identify(&r, &state, &peer).await {
            Ok(true) => break,
            Ok(false) => return,
            Err(e) => {
                peer.set_reachable(false, Some(e));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let interval = Duration::from_millis(r.config.sync_interval_ms.max(50));
    let mut last_full: Option<Instant> = None;
    loop {
        if !peer.banned() {
            let full = !matches!(last_full,
                Some(t) if t.elapsed() < Duration::from_secs(r.config.full_interval_secs));
            let from = if full {
                0
            } else {
                (now_unix() as u32).saturating_sub(r.config.recent_window_secs)
            };
            let guard = r.sync_lock.lock().await;
            let started = Instant::now();
            r.full_pass_running
                .store(full, std::sync::atomic::Ordering::Relaxed);
            let res = sync_window(&r, &state, &peer, from, u32::MAX, full).await;
            r.full_pass_running
                .store(false, std::sync::atomic::Ordering::Relaxed);
            drop(guard);
            match res {
                Ok((need, have, got)) => {
                    peer.down.store(false, std::sync::atomic::Ordering::Relaxed);
                    let now = now_unix();
                    peer.update(|s| {
                        s.reachable = true;
                        s.last_error = None;
                        s.last_sync = Some(now);
                        s.last_sync_ms = started.elapsed().as_millis() as u64;
                        s.behind = need.saturating_sub(got);
                        s.ahead = have;
                        s.progress = None;
                        if full {
                            s.last_full_sync = Some(now);
                        }
                    });
                    if full {
                        last_full = Some(Instant::now());
                        tracing::info!(
                            "full sync with {}: {need} missing here, {got} obtained, {have} missing there, {} ms",
                            peer.url,
                            started.elapsed().as_millis()
                        );
                    } else if need > 0 {
                        tracing::info!(
                            "sync with {}: {need} missing here, {got} obtained, {} ms",
                            peer.url,
                            started.elapsed().as_millis()
                        );
                    }
                }
                Err(e) => {
                    tracing::debug!("sync with {} failed: {e}", peer.url);
                    peer.set_reachable(false, Some(e));
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Reads the peer's `/v1/info`: Ok(false) if it is this node or another chain.
async fn identify(r: &Replicator, state: &NodeState, peer: &Peer) -> Result<bool, String> {
    let v: Value = r
        .http
        .get(format!("{}/v1/info", peer.url))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("info: {e}"))?
        .json()
        .await
        .map_err(|e| format!("info: {e}"))?;
    let id = v["node_id"].as_str().ok_or("info without node_id")?;
    if v["chain_id"].as_str() != Some(hex::encode(state.chain_id).as_str()) {
        tracing::error!(
            "peer {} is on another chain ({}); not replicating with it",
            peer.url,
            v["chain_id"]
        );
        peer.set_reachable(true, Some("on another chain".into()));
        return Ok(false);
    }
    if id == state.node_id {
        tracing::warn!("peer {} is this node; ignored", peer.url);
        peer.set_reachable(true, Some("this node".into()));
        return Ok(false);
    }
    peer.set_node_id(id.to_string());
    peer.set_reachable(true, None);
    Ok(true)
}

/// Reconciles `[from, to)` with the peer (split in halves while too large),
/// fetching what is missing here. Returns (ids missing here, ids missing
/// there, ids obtained).
pub async fn sync_window(
    r: &Arc<Replicator>,
    state: &Arc<NodeState>,
    peer: &Arc<Peer>,
    from: u32,
    to: u32,
    report: bool,
) -> Result<(u64, u64, u64), String> {
    let mut windows = vec![(from, to)];
    let (mut need_total, mut have_total, mut got_total) = (0u64, 0u64, 0u64);
    while let Some((a, b)) = windows.pop() {
        match sync_one(r, state, peer, a, b, report).await? {
            Some((n, h, g)) => {
                need_total += n;
                have_total += h;
                got_total += g;
            }
            None if b - a > 1 => {
                let mid = a + (b - a) / 2;
                windows.push((mid, b));
                windows.push((a, mid));
            }
            None => return Err(format!("more than {MAX_ITEMS} items created at {a}")),
        }
    }
    Ok((need_total, have_total, got_total))
}

/// One negentropy session; None when the window holds too many items.
async fn sync_one(
    r: &Arc<Replicator>,
    state: &Arc<NodeState>,
    peer: &Arc<Peer>,
    from: u32,
    to: u32,
    report: bool,
) -> Result<Option<(u64, u64, u64)>, String> {
    let (st, r2) = (state.clone(), r.clone());
    let items = tokio::task::spawn_blocking(move || local_items(&st, &r2, from, to, MAX_ITEMS))
        .await
        .map_err(|e| e.to_string())??;
    let Some(items) = items else { return Ok(None) };
    let storage = storage_of(&items)?;
    drop(items);
    let mut neg = Negentropy::owned(storage, FRAME_LIMIT).map_err(|e| e.to_string())?;
    let mut msg = neg.initiate().map_err(|e| e.to_string())?;
    let (mut need_n, mut have_n, mut got_n, mut refused_n) = (0u64, 0u64, 0u64, 0u64);
    let node_id = peer.node_id().unwrap_or_default();
    loop {
        add(&peer.counters.rounds, 1);
        add(&peer.counters.bytes_out, msg.len() as u64);
        let resp = r
            .http
            .post(format!(
                "{}/v1/peer/reconcile?from={from}&to={to}",
                peer.url
            ))
            .header(PEER_HEADER, &state.node_id)
            .header("content-type", "application/octet-stream")
            .body(msg)
            .send()
            .await
            .map_err(|e| format!("reconcile: {e}"))?;
        let status = resp.status();
        if status.as_u16() == 413 {
            return Ok(None);
        }
        let body = read_limited(resp, FRAME_LIMIT as usize * 2 + 1024).await?;
        add(&peer.counters.bytes_in, body.len() as u64);
        if !status.is_success() {
            return Err(format!(
                "reconcile: {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        let (mut have, mut need) = (vec![], vec![]);
        let next = match neg.reconcile_with_ids(&body, &mut have, &mut need) {
            Ok(n) => n,
            Err(e) => {
                let reason = format!("bad reconcile answer: {e}");
                peer.penalize(10.0, &reason, r.config.ban_score, r.config.ban_secs);
                return Err(reason);
            }
        };
        have_n += have.len() as u64;
        need_n += need.len() as u64;
        let need: Vec<[u8; 32]> = need.iter().map(|id| id.to_bytes()).collect();
        // Up to FETCH_PARALLEL chunks at once, each downloaded then
        // admitted: downloads overlap admissions, and admissions of several
        // chunks keep every core verifying while one waits for its commit.
        let mut tasks = tokio::task::JoinSet::new();
        let mut failed = None;
        for chunk in need.chunks(FETCH_CHUNK) {
            while tasks.len() >= FETCH_PARALLEL {
                let done = tasks.join_next().await.expect("tasks are running");
                tally(done, &mut got_n, &mut refused_n, &mut failed);
                if report {
                    peer.update(|s| s.progress = Some((got_n, need_n)));
                }
            }
            if failed.is_some() {
                break;
            }
            let (claimed, skipped) = r.claim(chunk);
            refused_n += skipped;
            if claimed.is_empty() {
                continue;
            }
            let (r2, st2, p2) = (r.clone(), state.clone(), peer.clone());
            tasks.spawn(async move {
                let res = match download(&r2, &st2, &p2, &claimed).await {
                    Ok(ans) => Ok(admit_answer(&r2, &st2, &p2, ans, &claimed).await),
                    Err(e) => Err(e),
                };
                r2.release(&claimed);
                res
            });
        }
        while let Some(done) = tasks.join_next().await {
            tally(done, &mut got_n, &mut refused_n, &mut failed);
        }
        if report {
            peer.update(|s| s.progress = Some((got_n, need_n)));
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let _ = &node_id;
        match next {
            Some(m) => msg = m,
            None => break,
        }
    }
    // Refused ids are not "behind": they are never coming.
    Ok(Some((need_n.saturating_sub(refused_n), have_n, got_n)))
}

/// Adds one finished fetch-and-admit task's (obtained, refused) counts, or
/// keeps its error.
fn tally(
    done: Result<Result<(u64, u64), String>, tokio::task::JoinError>,
    got: &mut u64,
    refused: &mut u64,
    failed: &mut Option<String>,
) {
    match done.unwrap_or_else(|e| Err(e.to_string())) {
        Ok((g, x)) => {
            *got += g;
            *refused += x;
        }
        Err(e) => *failed = Some(e),
    }
}

async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().unwrap_or(0) as usize > max {
        return Err(format!("answer larger than {max} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > max {
            return Err(format!("answer larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchAnswer {
    pub messages: Vec<Box<RawValue>>,
    #[serde(default)]
    pub deletions: Vec<DeletionItem>,
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionItem {
    pub id: String,
    pub created: u32,
    pub expires: u32,
    pub record: DeletionRecord,
}

/// Downloads the (claimed) `ids` from the peer.
async fn download(
    r: &Arc<Replicator>,
    state: &Arc<NodeState>,
    peer: &Arc<Peer>,
    ids: &[[u8; 32]],
) -> Result<FetchAnswer, String> {
    let body: Vec<u8> = ids.iter().flat_map(|id| id.iter().copied()).collect();
    add(&peer.counters.bytes_out, body.len() as u64);
    let resp = r
        .http
        .post(format!("{}/v1/peer/fetch", peer.url))
        .header(PEER_HEADER, &state.node_id)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("fetch: {e}"))?;
    let status = resp.status();
    let bytes = read_limited(resp, MAX_FETCH_BYTES).await?;
    add(&peer.counters.bytes_in, bytes.len() as u64);
    if !status.is_success() {
        return Err(format!("fetch: {status}"));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let reason = format!("malformed fetch answer: {e}");
        peer.penalize(10.0, &reason, r.config.ban_score, r.config.ban_secs);
        reason
    })
}

/// Admits what the peer answered for `ids`; returns how many were stored
/// or applied here, and how many were refused.
async fn admit_answer(
    r: &Arc<Replicator>,
    state: &Arc<NodeState>,
    peer: &Arc<Peer>,
    ans: FetchAnswer,
    ids: &[[u8; 32]],
) -> (u64, u64) {
    let asked: std::collections::HashSet<[u8; 32]> = ids.iter().copied().collect();
    let source = Source::Peer(peer.url.clone());
    let items: Vec<String> = ans
        .messages
        .into_iter()
        .map(|r| Box::<str>::from(r).into())
        .collect();
    let (mut got, mut refused) = (0u64, 0u64);
    for outcome in admit_many(state, items, &source).await {
        let (id, res) = (outcome.id, outcome.result);
        if let Some(id) = id {
            if !asked.contains(&id) {
                peer.penalize(
                    1.0,
                    "fetch answer holds an id that was not asked for",
                    r.config.ban_score,
                    r.config.ban_secs,
                );
            }
        }
        match res {
            Ok(a) => {
                // Stored now, or meanwhile (e.g. by a push): either way here.
                got += 1;
                if a.status.as_u16() == 201 {
                    add(&peer.counters.fetched, 1);
                }
            }
            Err(e) => {
                // Forgeries are not remembered by id (the signature is not
                // part of it: the genuine message may come from elsewhere).
                let w = penalty(&e);
                let mut first = true;
                if let (Some(id), false) = (id, e.status.is_server_error() || w >= 10.0) {
                    refused += 1;
                    first = r.refuse(id);
                }
                if w > 0.0 && first {
                    let reason = format!(
                        "fetched message {} refused: {} {}: {}",
                        id.map(hex::encode).unwrap_or_default(),
                        e.status.as_u16(),
                        e.code,
                        e.message
                    );
                    peer.penalize(w, &reason, r.config.ban_score, r.config.ban_secs);
                }
            }
        }
    }
    got += apply_deletions(r, state, peer, ans.deletions, &asked).await;
    (got, refused)
}

/// Applies deletions a peer served, each checked on its own (record
/// signature, the key owns the address now, ids in the record, message
/// addressed to that address if stored here). Returns how many applied.
pub async fn apply_deletions(
    r: &Arc<Replicator>,
    state: &Arc<NodeState>,
    peer: &Peer,
    items: Vec<DeletionItem>,
    asked: &std::collections::HashSet<[u8; 32]>,
) -> u64 {
    let pen = |reason: String| peer.penalize(10.0, &reason, r.config.ban_score, r.config.ban_secs);
    // Group by record, so each record is verified once.
    let mut by_record: HashMap<String, (DeletionRecord, Vec<Tomb>)> = HashMap::new();
    let now = now_unix();
    let lim = &state.config.limits;
    let latest_expiry = (now + lim.max_ttl_secs as u64 + lim.max_clock_skew_secs as u64)
        .min(u32::MAX as u64) as u32;
    for it in items {
        let Some(id) = hex::decode(&it.id)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
        else {
            pen("deletion item with a bad id".into());
            continue;
        };
        if !asked.contains(&deletion_item_id(&id)) {
            pen("deletion item not asked for".into());
            continue;
        }
        if !it.record.ids.contains(&it.id) {
            pen(format!("deletion of {} not covered by its record", it.id));
            continue;
        }
        if it.expires <= now as u32 {
            continue;
        }
        let key = serde_json::to_string(&it.record).unwrap_or_default();
        by_record
            .entry(key)
            .or_insert_with(|| (it.record.clone(), vec![]))
            .1
            .push((id, it.created, it.expires.min(latest_expiry)));
    }
    let mut applied = 0u64;
    for (json, (rec, items)) in by_record {
        if let Err(e) = rec.verify_offline(&state.chain_id, now, lim.max_clock_skew_secs as u64) {
            pen(format!("deletion record refused: {} {}", e.code, e.message));
            continue;
        }
        if let Err(e) = rec.check_owner(state).await {
            if e.status.is_server_error() {
                continue;
            }
            // The address may have changed owner since: light.
            peer.penalize(
                1.0,
                &format!("deletion record refused: {} {}", e.code, e.message),
                r.config.ban_score,
                r.config.ban_secs,
            );
            continue;
        }
        let (st, address, its) = (state.clone(), rec.address.clone(), items.clone());
        let done = tokio::task::spawn_blocking(move || st.store.put_tombstones(&address, &its))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let done = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot apply deletions: {e}");
                continue;
            }
        };
        let mut keep = vec![];
        for (item, ok) in items.iter().zip(done) {
            if ok {
                keep.push(*item);
            } else {
                pen(format!(
                    "deletion of {} by {}: the message is addressed to someone else",
                    hex::encode(item.0),
                    rec.address
                ));
            }
        }
        if keep.is_empty() {
            continue;
        }
        applied += keep.len() as u64;
        let r2 = r.clone();
        let res = tokio::task::spawn_blocking(move || r2.deletions.put(&json, &keep)).await;
        if let Ok(Err(e)) = res {
            tracing::warn!("cannot keep a deletion record: {e}");
        }
    }
    applied
}
