//! Recipient policies between peers (docs/replication.md, "Recipient
//! policies"; the document itself: docs/spam.md, `crate::policy`).
//!
//! - **Push**: a document a client got accepted here (`PUT
//!   /v1/policy/{address}` answered 201) is queued at once for every peer:
//!   one bounded queue per peer ([`POLICY_QUEUE`] documents; `try_send`, so
//!   the PUT never waits; a full queue drops and repair heals). One task per
//!   peer sends `POST {peer}/v1/peer/policies` (a JSON array of at most
//!   [`MAX_POLICY_BATCH`] documents) with the retries of
//!   [`super::push::post_retrying`], then drops the batch.
//! - **Receive**: every document a peer sends (pushed or fetched) goes
//!   through [`crate::policy::accept_document`], exactly as a client's PUT.
//!   Stale or already held is no fault of the peer; a malformed or forged
//!   document, or one whose key does not own the address, scores it down.
//!   Documents from peers are not pushed on (full mesh, like messages).
//! - **Repair**: once the peer is identified, and then every
//!   [`POLICY_SYNC_SECS`], page through its digest (`GET
//!   /v1/peer/policies/digest`: `(address, updated)` in address order) and
//!   fetch (`POST /v1/peer/policies/fetch`) only documents newer than the
//!   one held here.

use super::api::{body_error, peer_array};
use super::peers::{add, Peer};
use super::push::{post_retrying, Posted};
use super::{calling_peer, Replicator, PEER_HEADER};
use crate::error::ApiError;
use crate::policy::{accept_document, parse_document, PolicyDoc, MAX_POLICY_BYTES};
use crate::state::{now_unix, NodeState};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Most documents in one push, and in one fetch.
pub const MAX_POLICY_BATCH: usize = 64;
/// Largest body of a push or a fetch answer.
pub const MAX_POLICY_BODY: usize = MAX_POLICY_BATCH * (MAX_POLICY_BYTES + 8) + 1024;
/// Largest `POST /v1/peer/policies/fetch` request (64 addresses).
const MAX_FETCH_REQUEST: usize = 16 * 1024;
/// Documents waiting per peer for push; beyond it they are dropped (repair heals).
pub const POLICY_QUEUE: usize = 256;
/// Interval of the policy repair pass with each peer, seconds (also run as
/// soon as the peer is identified at start-up).
pub const POLICY_SYNC_SECS: u64 = 300;
/// Most `(address, updated)` pairs in one digest page.
pub const DIGEST_PAGE: usize = 10_000;
/// Largest digest page read (10,000 entries of at most ~90 bytes).
const MAX_DIGEST_BYTES: usize = 2 << 20;
/// How long a document refused for a reason other than forgery is not
/// fetched again (and not penalized again), seconds.
const REFUSED_TTL: u64 = 600;
const REFUSED_MAX: usize = 10_000;

/// The peer routes for policies (merged beside [`super::api::router`]).
pub fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route(
            "/v1/peer/policies",
            post(peer_policies).layer(DefaultBodyLimit::max(MAX_POLICY_BODY)),
        )
        .route("/v1/peer/policies/digest", get(peer_policy_digest))
        .route(
            "/v1/peer/policies/fetch",
            post(peer_policy_fetch).layer(DefaultBodyLimit::max(MAX_FETCH_REQUEST)),
        )
        .with_state(state)
}

fn err(status: StatusCode, code: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(status, code, msg)
}

/// Per-node policy replication state (in `Replicator::policy`).
pub struct PolicySync {
    /// Push queues, in the order of `Replicator::peers`.
    queues: Vec<mpsc::Sender<Arc<str>>>,
    /// `(address, updated)` refused lately (not owner, from the future), until.
    refused: Mutex<HashMap<(String, u64), u64>>,
}

impl PolicySync {
    /// One push queue per peer; the receivers go to [`run_push`], in order.
    pub fn new(peers: usize) -> (PolicySync, Vec<mpsc::Receiver<Arc<str>>>) {
        let (queues, rxs) = (0..peers).map(|_| mpsc::channel(POLICY_QUEUE)).unzip();
        (
            PolicySync {
                queues,
                refused: Mutex::new(HashMap::new()),
            },
            rxs,
        )
    }

    fn recently_refused(&self, address: &str, updated: u64) -> bool {
        let m = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        matches!(m.get(&(address.to_string(), updated)), Some(u) if *u > now_unix())
    }

    /// Remembers a refusal; true if it was not remembered already.
    fn refuse(&self, address: &str, updated: u64) -> bool {
        let now = now_unix();
        let mut m = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        let key = (address.to_string(), updated);
        if matches!(m.get(&key), Some(u) if *u > now) {
            return false;
        }
        if m.len() >= REFUSED_MAX {
            m.retain(|_, u| *u > now);
            if m.len() >= REFUSED_MAX {
                m.clear();
            }
        }
        m.insert(key, now + REFUSED_TTL);
        true
    }
}

/// `PUT /v1/policy/{address}` hook: `doc` was newly stored from a client.
/// Queues it for every peer; never waits.
pub fn on_client_accept(state: &NodeState, doc: &PolicyDoc) {
    let Some(r) = super::get(state) else { return };
    if r.peers.is_empty() {
        return;
    }
    let Ok(json) = serde_json::to_string(doc) else {
        return;
    };
    let json: Arc<str> = json.into();
    for (peer, tx) in r.peers.iter().zip(&r.policy.queues) {
        if peer.banned() || tx.try_send(json.clone()).is_err() {
            add(&peer.counters.policies_push_dropped, 1);
        }
    }
}

/// The push task of one peer: drains its queue in batches.
pub async fn run_push(
    r: Arc<Replicator>,
    state: Arc<NodeState>,
    peer: Arc<Peer>,
    mut rx: mpsc::Receiver<Arc<str>>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_POLICY_BATCH {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let mut body = String::with_capacity(batch.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
        body.push('[');
        for (i, b) in batch.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(b);
        }
        body.push(']');
        let n = batch.len() as u64;
        match post_retrying(&r, &state, &peer, "/v1/peer/policies", body, "policy push").await {
            Posted::Ok(text) => {
                add(&peer.counters.policies_pushed, n);
                if let Ok(v) = serde_json::from_slice::<Value>(&text) {
                    for x in v["results"].as_array().into_iter().flatten() {
                        if x["http_status"].as_u64().unwrap_or(0) >= 400 {
                            tracing::debug!("peer {} refused a pushed policy: {x}", peer.url);
                        }
                    }
                }
            }
            Posted::Banned | Posted::Refused | Posted::GaveUp => {
                add(&peer.counters.policies_push_dropped, n);
                tracing::debug!("policy push to {}: {n} document(s) dropped", peer.url);
            }
        }
    }
}

/// How much a refusal of a peer's policy document weighs (see
/// `peers::penalty` for envelopes): 10 for malformed or forged documents
/// (nothing an honest peer holds: it validated the same document), 1 for
/// `policy_not_owner` (the address may have changed owner since the peer
/// checked), 2 for `policy_from_future` (clock skew), 0 otherwise (stale,
/// this node's limits, unavailability).
pub fn policy_penalty(e: &ApiError) -> f64 {
    match e.code.as_str() {
        "bad_json" | "bad_policy" | "too_large" | "policy_bad_signature" => 10.0,
        "policy_not_owner" => 1.0,
        "policy_from_future" => 2.0,
        _ => 0.0,
    }
}

/// One document from `peer` through [`accept_document`]: the per-document
/// result (`http_status` added), scoring the peer for invalid documents.
async fn accept_from_peer(
    state: &NodeState,
    r: &Replicator,
    peer: &Peer,
    bytes: &[u8],
    how: &str,
) -> Value {
    match accept_document(state, bytes).await {
        Ok((status, mut v)) => {
            if status == StatusCode::CREATED {
                add(&peer.counters.policies_stored, 1);
            }
            v["http_status"] = json!(status.as_u16());
            v
        }
        Err(e) => {
            let w = policy_penalty(&e);
            let parsed = parse_document(bytes).ok();
            // Forgeries are not remembered (the genuine document with the
            // same address and time may come from elsewhere); other
            // refusals are, so repair neither fetches nor scores them again.
            let mut first = true;
            if let (Some(d), false) = (&parsed, e.status.is_server_error() || w >= 10.0) {
                first = r.policy.refuse(&d.address, d.updated);
            }
            if w > 0.0 && first {
                let what = parsed
                    .as_ref()
                    .map(|d| format!("{} (updated {})", d.address, d.updated))
                    .unwrap_or_else(|| "(unparsable)".into());
                let reason = format!(
                    "{how} policy {what} refused: {} {}: {}",
                    e.status.as_u16(),
                    e.code,
                    e.message
                );
                peer.penalize(w, &reason, r.config.ban_score, r.config.ban_secs);
            }
            let mut b = e.body();
            b["http_status"] = json!(e.status.as_u16());
            b
        }
    }
}

/// `POST /v1/peer/policies`: a peer's push, a JSON array of documents.
/// Answers `{"results":[...]}` in order, each as the PUT would answer, with
/// `http_status`.
pub async fn peer_policies(
    State(st): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (r, peer) = calling_peer(&st, &headers)?;
    let body = body.map_err(body_error)?;
    let items = peer_array(
        &r,
        &peer,
        &body,
        MAX_POLICY_BATCH,
        "policy documents",
        "policy push",
    )?;
    add(&peer.counters.policies_received, items.len() as u64);
    let mut out = Vec::with_capacity(items.len());
    for raw in &items {
        out.push(accept_from_peer(&st, &r, &peer, raw.get().as_bytes(), "pushed").await);
    }
    Ok((StatusCode::OK, Json(json!({ "results": out }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestQuery {
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/peer/policies/digest?after=A&limit=N`: `{"policies":[[address,
/// updated],...],"next":A|null}`, in address order, addresses after `A`, at
/// most `N` (default and maximum [`DIGEST_PAGE`]); `next` is the last
/// address when the page is full (ask again with `after=next`), else null.
pub async fn peer_policy_digest(
    State(st): State<Arc<NodeState>>,
    headers: HeaderMap,
    q: Result<Query<DigestQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    calling_peer(&st, &headers)?;
    let Query(q) = q.map_err(|e| err(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(DIGEST_PAGE).clamp(1, DIGEST_PAGE);
    let page = st.spam.policies.digest_page(q.after.as_deref(), limit);
    let next = (page.len() == limit).then(|| page[page.len() - 1].0.clone());
    Ok(Json(json!({ "policies": page, "next": next })).into_response())
}

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    addresses: Vec<String>,
}

/// `POST /v1/peer/policies/fetch` with `{"addresses":[...]}` (1 to
/// [`MAX_POLICY_BATCH`]): `{"policies":[document,...]}`; addresses without a
/// document here are absent.
pub async fn peer_policy_fetch(
    State(st): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    calling_peer(&st, &headers)?;
    let body = body.map_err(body_error)?;
    let req: FetchRequest = serde_json::from_slice(&body)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "bad_json", e.to_string()))?;
    if req.addresses.is_empty() || req.addresses.len() > MAX_POLICY_BATCH {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "bad_addresses",
            format!("1 to {MAX_POLICY_BATCH} addresses per fetch"),
        ));
    }
    let docs: Vec<PolicyDoc> = req
        .addresses
        .iter()
        .filter_map(|a| st.spam.policies.get(a).map(|c| c.doc.clone()))
        .collect();
    Ok(Json(json!({ "policies": docs })).into_response())
}

/// The repair task of one peer: waits for its identity (learned by the
/// message repair loop), then a pass at once and every [`POLICY_SYNC_SECS`];
/// a failed pass is retried after 1 s, doubling to 60 s.
pub async fn run_repair(r: Arc<Replicator>, state: Arc<NodeState>, peer: Arc<Peer>) {
    while peer.node_id().is_none() {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        if peer.banned() {
            tokio::time::sleep(Duration::from_secs(30)).await;
            continue;
        }
        match sync_once(&r, &state, &peer).await {
            Ok((listed, wanted, stored)) => {
                add(&peer.counters.policy_syncs, 1);
                if wanted > 0 {
                    tracing::info!(
                        "policy sync with {}: {listed} listed, {wanted} newer there, {stored} stored",
                        peer.url
                    );
                }
                backoff = Duration::from_secs(1);
                tokio::time::sleep(Duration::from_secs(POLICY_SYNC_SECS)).await;
            }
            Err(e) => {
                tracing::debug!("policy sync with {} failed: {e}", peer.url);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestPage {
    policies: Vec<(String, u64)>,
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchAnswer {
    policies: Vec<Box<RawValue>>,
}

/// One repair pass: (documents listed by the peer, newer there than here,
/// stored here).
async fn sync_once(
    r: &Arc<Replicator>,
    state: &Arc<NodeState>,
    peer: &Arc<Peer>,
) -> Result<(u64, u64, u64), String> {
    let pen = |reason: String| {
        peer.penalize(10.0, &reason, r.config.ban_score, r.config.ban_secs);
        reason
    };
    let latest = now_unix() + u64::from(state.config.limits.max_clock_skew_secs);
    // A digest longer than this node could ever hold is not honest.
    let cap = (state.config.limits.max_policies + DIGEST_PAGE) as u64;
    let (mut listed, mut wanted_n, mut stored) = (0u64, 0u64, 0u64);
    let mut after: Option<String> = None;
    loop {
        let mut req = r
            .http
            .get(format!("{}/v1/peer/policies/digest", peer.url))
            .header(PEER_HEADER, &state.node_id)
            .query(&[("limit", DIGEST_PAGE.to_string())]);
        if let Some(a) = &after {
            req = req.query(&[("after", a)]);
        }
        let bytes = read_ok(req, peer, MAX_DIGEST_BYTES, "policy digest").await?;
        let page: DigestPage = serde_json::from_slice(&bytes)
            .map_err(|e| pen(format!("malformed policy digest: {e}")))?;
        // Strictly increasing addresses after `after`, at most a page, and
        // `next` (if any) the last one: so the pass always ends.
        let mut prev = after.clone();
        for (a, _) in &page.policies {
            if prev.as_deref().is_some_and(|p| a.as_str() <= p) {
                return Err(pen("policy digest out of order".into()));
            }
            prev = Some(a.clone());
        }
        if page.policies.len() > DIGEST_PAGE
            || (page.next.is_some() && page.next != prev)
            || (page.next.is_some() && page.policies.is_empty())
        {
            return Err(pen("malformed policy digest page".into()));
        }
        listed += page.policies.len() as u64;
        if listed > cap {
            return Err(pen(format!("policy digest longer than {cap}")));
        }
        let wanted: Vec<String> = page
            .policies
            .iter()
            .filter(|(a, u)| {
                *u <= latest
                    && !r.policy.recently_refused(a, *u)
                    && !matches!(state.spam.policies.get(a), Some(c) if c.doc.updated >= *u)
            })
            .map(|(a, _)| a.clone())
            .collect();
        wanted_n += wanted.len() as u64;
        for chunk in wanted.chunks(MAX_POLICY_BATCH) {
            let body = serde_json::to_string(&FetchRequest {
                addresses: chunk.to_vec(),
            })
            .map_err(|e| e.to_string())?;
            add(&peer.counters.bytes_out, body.len() as u64);
            let req = r
                .http
                .post(format!("{}/v1/peer/policies/fetch", peer.url))
                .header(PEER_HEADER, &state.node_id)
                .header("content-type", "application/json")
                .body(body);
            let bytes = read_ok(req, peer, MAX_POLICY_BODY, "policy fetch").await?;
            let ans: FetchAnswer = serde_json::from_slice(&bytes)
                .map_err(|e| pen(format!("malformed policy fetch answer: {e}")))?;
            if ans.policies.len() > chunk.len() {
                return Err(pen("policy fetch answer longer than asked".into()));
            }
            for raw in &ans.policies {
                let raw = raw.get().as_bytes();
                if let Ok(d) = parse_document(raw) {
                    if !chunk.contains(&d.address) {
                        peer.penalize(
                            1.0,
                            "policy fetch answer holds an address that was not asked for",
                            r.config.ban_score,
                            r.config.ban_secs,
                        );
                        continue;
                    }
                }
                let v = accept_from_peer(state, r, peer, raw, "fetched").await;
                if v["http_status"] == 201 {
                    stored += 1;
                }
            }
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok((listed, wanted_n, stored)),
        }
    }
}

/// Sends `req`; the body of a 2xx answer, at most `max` bytes.
async fn read_ok(
    req: reqwest::RequestBuilder,
    peer: &Peer,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, String> {
    let mut resp = req.send().await.map_err(|e| format!("{what}: {e}"))?;
    let status = resp.status();
    if resp.content_length().unwrap_or(0) as usize > max {
        return Err(format!("{what}: answer larger than {max} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{what}: {e}"))? {
        if out.len() + chunk.len() > max {
            return Err(format!("{what}: answer larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    add(&peer.counters.bytes_in, out.len() as u64);
    if !status.is_success() {
        return Err(format!(
            "{what}: {status}: {}",
            String::from_utf8_lossy(&out[..out.len().min(200)])
        ));
    }
    Ok(out)
}
