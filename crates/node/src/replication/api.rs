//! Peer-facing routes (docs/replication.md):
//!
//! - `POST /v1/peer/messages`: a JSON array of envelopes pushed by a peer;
//!   each is admitted exactly like a client's; answer as `/v1/messages`.
//! - `POST /v1/peer/reconcile?from=F&to=T`: one negentropy message in
//!   (`application/octet-stream`), the answer out, over the window `[F, T)`.
//! - `POST /v1/peer/fetch` with `{"ids":[...]}`: the stored envelopes and
//!   the deletion records (with tombstones) of those ids.
//! - `GET /v1/peers`: each peer's status.
//!
//! Peer routes require the header `X-FIO-L2-Peer: <node id>` naming a
//! configured peer whose identity this node has learned (`403 unknown_peer`
//! otherwise) and not refused for its score (`429 peer_refused`).

use super::peers::{add, penalty, Peer};
use super::reconcile::{local_items, storage_of, FETCH_CHUNK, FRAME_LIMIT, MAX_ITEMS};
use super::{calling_peer, Replicator};
use crate::admission::{admit_many, ResultsJson, Source};
use crate::error::ApiError;
use crate::state::NodeState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use negentropy::Negentropy;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most envelopes in one push.
pub const MAX_PUSH: usize = 1_000;
/// Largest negentropy message accepted.
const MAX_RECONCILE_BODY: usize = 1 << 20;
/// Fetch answers stop growing past this many bytes (the rest is fetched next round).
const FETCH_ANSWER_BUDGET: usize = 16 << 20;

pub fn router(state: Arc<NodeState>) -> Router {
    let limit = state
        .config
        .limits
        .max_body_bytes
        .max(MAX_RECONCILE_BODY)
        .max(FETCH_CHUNK * 70 + 1024);
    Router::new()
        .route("/v1/peers", get(peers))
        .route("/v1/peer/messages", post(peer_messages))
        .route("/v1/peer/reconcile", post(peer_reconcile))
        .route("/v1/peer/fetch", post(peer_fetch))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

fn err(status: StatusCode, code: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(status, code, msg)
}

/// A peer request's body could not be read: too large, or broken.
pub(super) fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is too large",
        )
    } else {
        err(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
    }
}

/// `GET /v1/peers`.
async fn peers(State(st): State<Arc<NodeState>>) -> Json<Value> {
    let list: Vec<Value> = super::get(&st)
        .map(|r| r.peers.iter().map(|p| p.status_json()).collect())
        .unwrap_or_default();
    let cfg = &st.config.replication;
    Json(json!({
        "node_id": st.node_id,
        "public_url": cfg.public_url,
        "serve_only_home": cfg.serve_only_home,
        "peers": list,
    }))
}

/// A peer's pushed JSON array of at most `max` `what`s. Malformed JSON
/// scores the peer down (it never comes from an honest node); too many
/// items is refused without a score.
pub(super) fn peer_array(
    r: &Replicator,
    peer: &Peer,
    body: &[u8],
    max: usize,
    what: &str,
    context: &str,
) -> Result<Vec<Box<serde_json::value::RawValue>>, ApiError> {
    let items: Vec<Box<serde_json::value::RawValue>> =
        serde_json::from_slice(body).map_err(|e| {
            let e = err(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("expected a JSON array of {what}: {e}"),
            );
            peer.penalize(
                10.0,
                &format!("{context}: {}", e.message),
                r.config.ban_score,
                r.config.ban_secs,
            );
            e
        })?;
    if items.len() > max {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("at most {max} {what} per push"),
        ));
    }
    Ok(items)
}

/// `POST /v1/peer/messages`: a peer's push.
async fn peer_messages(
    State(st): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (r, peer) = calling_peer(&st, &headers)?;
    let body = body.map_err(body_error)?;
    let items = peer_array(&r, &peer, &body, MAX_PUSH, "envelopes", "push")?;
    add(&peer.counters.received, items.len() as u64);
    let source = Source::Peer(peer.url.clone());
    let items: Vec<String> = items
        .into_iter()
        .map(|r| Box::<str>::from(r).into())
        .collect();
    let outcomes = admit_many(&st, items, &source).await;
    let mut out = ResultsJson::with_capacity(outcomes.len());
    for o in outcomes {
        match &o.result {
            Ok(_) => {}
            Err(e) => {
                let w = penalty(e);
                let mut first = true;
                if let (Some(id), false) = (o.id, e.status.is_server_error() || w >= 10.0) {
                    first = r.refuse(id);
                }
                if w > 0.0 && (first || o.id.is_none()) {
                    let id =
                        o.id.map(hex::encode)
                            .unwrap_or_else(|| "(unparsable)".into());
                    let reason = format!(
                        "pushed message {id} refused: {} {}: {}",
                        e.status.as_u16(),
                        e.code,
                        e.message
                    );
                    peer.penalize(w, &reason, r.config.ban_score, r.config.ban_secs);
                }
            }
        }
        out.push(&o.result);
    }
    Ok(out.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    from: u32,
    to: u32,
}

/// `POST /v1/peer/reconcile?from=F&to=T`: one negentropy round (server side,
/// stateless: every message carries its ranges).
async fn peer_reconcile(
    State(st): State<Arc<NodeState>>,
    headers: HeaderMap,
    q: Result<Query<Window>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (r, peer) = calling_peer(&st, &headers)?;
    let Query(w) = q.map_err(|e| err(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    // A full pass here: a peer's recent pass (from > 0) would only list the
    // ids this node is already fetching. Full passes are always served.
    if w.from > 0
        && r.full_pass_running
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        return Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            "catching_up",
            "this node is running a full pass; try later",
        )
        .retry_after(2));
    }
    let body = body.map_err(body_error)?;
    if body.len() > MAX_RECONCILE_BODY {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "negentropy message too large",
        ));
    }
    let (st2, r2) = (st.clone(), r.clone());
    let answer = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ApiError> {
        let items = local_items(&st2, &r2, w.from, w.to, MAX_ITEMS)
            .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", e))?
            .ok_or_else(|| {
                err(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "range_too_large",
                    format!("more than {MAX_ITEMS} items in the window; split it"),
                )
            })?;
        let storage = storage_of(&items)
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
        let mut neg = Negentropy::owned(storage, FRAME_LIMIT)
            .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
        neg.reconcile(&body)
            .map_err(|e| err(StatusCode::BAD_REQUEST, "bad_reconcile", e.to_string()))
    })
    .await
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    match answer {
        Ok(bytes) => Ok((
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response()),
        Err(e) => {
            if e.code == "bad_reconcile" {
                peer.penalize(
                    10.0,
                    &format!("reconcile: {}", e.message),
                    r.config.ban_score,
                    r.config.ban_secs,
                );
            }
            Err(e)
        }
    }
}

/// `POST /v1/peer/fetch` with the ids as one binary body (`application/
/// octet-stream`, 32 bytes each, at most 1000): answers
/// `{"messages":[envelope...], "deletions":[{"id","created","expires","record"}]}`;
/// ids it does not hold (or past the answer budget) are simply absent.
async fn peer_fetch(
    State(st): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (r, _peer) = calling_peer(&st, &headers)?;
    let body = body.map_err(body_error)?;
    if body.is_empty() || body.len() % 32 != 0 || body.len() / 32 > FETCH_CHUNK {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "bad_ids",
            format!("the body must be 1..{FETCH_CHUNK} ids of 32 bytes"),
        ));
    }
    let ids: Vec<[u8; 32]> = body
        .chunks_exact(32)
        .map(|c| <[u8; 32]>::try_from(c).unwrap_or([0; 32]))
        .collect();
    let (st2, r2) = (st.clone(), r.clone());
    let out = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let mut out = String::with_capacity(64 * 1024);
        out.push_str("{\"messages\":[");
        let mut first = true;
        let mut tombs = vec![];
        for id in &ids {
            if out.len() > FETCH_ANSWER_BUDGET {
                break;
            }
            match st2.store.get(id).map_err(|e| e.to_string())? {
                Some(e) => {
                    // Stored as canonical JSON with id (copied as is; the
                    // receiver checks everything), or as packed binary.
                    let text = match std::str::from_utf8(&e.binary) {
                        Ok(t) if t.starts_with('{') && t.ends_with('}') => strip_id(t),
                        _ => match fio_l2_protocol::SignedMessage::from_binary(&e.binary) {
                            Ok(m) => m.to_json_value(false).to_string(),
                            Err(_) => continue,
                        },
                    };
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(&text);
                }
                None => tombs.push(*id),
            }
        }
        out.push_str("],\"deletions\":[");
        let mut first = true;
        for id in &tombs {
            let id = &super::reconcile::deletion_item_id(id);
            if let Some((created, expires, rec)) = r2.deletions.get(id)? {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&format!(
                    "{{\"id\":\"{}\",\"created\":{created},\"expires\":{expires},\"record\":{rec}}}",
                    hex::encode(id)
                ));
            }
        }
        out.push_str("]}");
        Ok(out)
    })
    .await
    .map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable", e))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

/// Stored JSON ends with `,"id":"<64 hex>"}`; peers compute the id, so it
/// is not sent.
fn strip_id(t: &str) -> String {
    const TAIL: usize = 7 + 64 + 2;
    match t.len().checked_sub(TAIL) {
        Some(at) if t.is_char_boundary(at) && t[at..].starts_with(",\"id\":\"") => {
            format!("{}}}", &t[..at])
        }
        _ => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn strip_id() {
        let id = "a".repeat(64);
        assert_eq!(
            super::strip_id(&format!("{{\"x\":1,\"id\":\"{id}\"}}")),
            "{\"x\":1}"
        );
        assert_eq!(super::strip_id("{\"x\":1}"), "{\"x\":1}");
    }
}
