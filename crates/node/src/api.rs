//! HTTP routes: thin handlers over admission, storage and auth (docs/api.md).

use crate::admission::{admit_timed, ResultsJson, Source, Timings};
use crate::auth::{self, RequestParts};
use crate::error::ApiError;
use crate::state::{now_unix, NodeState};
use crate::storage::{Order, StoredEntry};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fio_l2_chain::{ChainError, Ownership};
use fio_l2_protocol::validate_address;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

pub fn router(state: Arc<NodeState>) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/v1/info", get(info))
        .route("/v1/openapi.json", get(openapi))
        .route(
            "/v1/messages",
            post(post_messages).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::limits::ip_gate,
            )),
        )
        .route(
            "/v1/policy/{address}",
            get(crate::policy::get_policy)
                .put(crate::policy::put_policy)
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::limits::ip_gate,
                )),
        )
        .route("/v1/inbox/{address}", get(get_inbox))
        .route("/v1/inbox/{address}/ack", post(post_ack))
        .route("/v1/inbox/{address}/events", get(get_events))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn health(State(st): State<Arc<NodeState>>) -> Response {
    let store = st.store.clone();
    match tokio::task::spawn_blocking(move || store.count()).await {
        Ok(Ok(n)) => Json(json!({"status": "ok", "messages": n})).into_response(),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "storage does not answer",
        )
        .into_response(),
    }
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

pub fn info_value(st: &NodeState) -> Value {
    let w = st.writer.stats();
    let l = &st.config.limits;
    let chain = st.chain.metrics();
    json!({
        "software": "fio-l2",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol_versions": [1],
        "chain_id": hex::encode(st.chain_id),
        "node_id": st.node_id,
        "dev": st.config.dev,
        "limits": {
            "max_content_bytes": l.max_content_bytes,
            "max_envelope_bytes": st.max_envelope_bytes(),
            "max_body_bytes": l.max_body_bytes,
            "max_batch": l.max_batch,
            "max_ttl_secs": l.max_ttl_secs,
            "max_clock_skew_secs": l.max_clock_skew_secs,
            "proof_window_secs": l.proof_window_secs,
            "max_page": l.max_page,
            "spam": crate::limits::info_limits(l),
        },
        "policy": {
            "senders": "owners of a registered FIO Address with a usable domain",
            "min_pow_bits": l.min_pow_bits,
            "recipient_policies": "GET /v1/policy/{address}",
        },
        "stats": {
            "accepted": st.counters.accepted.load(std::sync::atomic::Ordering::Relaxed),
            "duplicates": st.counters.duplicates.load(std::sync::atomic::Ordering::Relaxed),
            "refused": st.counters.refused.load(std::sync::atomic::Ordering::Relaxed),
            "chain_requests": chain.requests,
            "chain_cache_hits": chain.cache_hits,
            "spam": st.spam.stats_value(),
            "writer": {
                "commits": w.batches,
                "messages": w.messages,
                "largest_commit": w.largest_batch,
                "failed_commits": w.failed_batches,
                "busy_ms": w.busy_micros / 1000,
            },
        },
    })
}

async fn info(State(st): State<Arc<NodeState>>) -> Json<Value> {
    Json(info_value(&st))
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is larger than max_body_bytes",
        )
    } else {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_body", e.body_text())
    }
}

/// `POST /v1/messages`: one envelope, or a JSON array of them.
async fn post_messages(
    State(st): State<Arc<NodeState>>,
    axum::Extension(crate::limits::ClientIp(client)): axum::Extension<crate::limits::ClientIp>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let source = Source::Client(client);
    let mut t = Timings::default();
    let read_started = std::time::Instant::now();
    let (body, array) = match crate::message_body::read(&st, &headers, body).await {
        Ok(b) => (b.bytes, b.array),
        Err(r) => {
            let weight = r.weight(&st);
            crate::admission::count_weighted_refusal(&st, &source, &r.error, weight);
            return r.error.into_response();
        }
    };
    t.read = read_started.elapsed();
    if !array {
        let mut out = admit_timed(&st, vec![body], &source, &mut t).await;
        let mut r = match out.pop().expect("one outcome per envelope").result {
            Ok(a) => a.into_response(),
            Err(e) => e.into_response(),
        };
        r.headers_mut().insert("server-timing", t.header_value());
        return r;
    }
    let items: Vec<&serde_json::value::RawValue> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("malformed JSON array: {e}"),
            )
            .into_response()
        }
    };
    if items.is_empty() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty_batch",
            "the array holds no envelope",
        )
        .into_response();
    }
    if items.len() > st.config.limits.max_batch {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!(
                "at most {} envelopes per request",
                st.config.limits.max_batch
            ),
        )
        .into_response();
    }
    if let Err(e) = crate::limits::charge_batch(&st, &source, items.len()) {
        st.spam.count_refusal(&e.code);
        return e.into_response();
    }
    // Each element as a slice of the body already read, not a copy.
    let items: Vec<Bytes> = items
        .iter()
        .map(|r| body.slice_ref(r.get().as_bytes()))
        .collect();
    let outcomes = admit_timed(&st, items, &source, &mut t).await;
    let mut results = ResultsJson::with_capacity(outcomes.len());
    for o in &outcomes {
        results.push(&o.result);
    }
    let mut r = results.into_response();
    r.headers_mut().insert("server-timing", t.header_value());
    r
}

/// Validates the path address and the owner proof, then asks the chain.
async fn authorize(
    st: &NodeState,
    address: &str,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    validate_address(address).map_err(ApiError::from)?;
    let proof = auth::parse_headers(headers)?;
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(uri.path());
    let req = RequestParts {
        method: method.as_str(),
        path_and_query,
        body,
    };
    let check = auth::ProofCheck {
        chain_id: &st.chain_id,
        node_id: &st.node_id,
        window: st.config.limits.proof_window_secs,
        replay: &st.replay,
    };
    check.verify(&proof, address, now_unix(), &req)?;
    match st.chain.check_owner(&proof.key, address).await {
        Ok(Ownership::Owned { .. }) => Ok(()),
        Ok(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_owner",
            format!("the proof's key does not own {address}"),
        )),
        Err(ChainError::Unavailable(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "chain_unavailable",
            "the FIO Chain cannot be reached to check ownership",
        )
        .retry_after(5)),
        Err(e) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not_owner",
            e.message().to_string(),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InboxQuery {
    order: Option<String>,
    limit: Option<usize>,
    cursor: Option<u64>,
}

fn parse_order(o: Option<&str>) -> Result<Order, ApiError> {
    match o.unwrap_or("newest") {
        "newest" => Ok(Order::NewestFirst),
        "oldest" => Ok(Order::OldestFirst),
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("order must be newest or oldest, not {other:?}"),
        )),
    }
}

/// Appends `{"seq":N,"envelope":{...}}` to `out`, spliced from the stored
/// JSON (see `stored`).
fn push_entry_json(out: &mut String, e: &StoredEntry) -> Result<(), ApiError> {
    let text = crate::stored::json_text(&e.binary).ok_or_else(|| {
        tracing::error!("stored message {} is not stored JSON", hex::encode(e.id));
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "corrupt_message",
            "a stored message does not decode",
        )
    })?;
    crate::stored::push_event_json(out, e.seq, text);
    Ok(())
}

/// `GET /v1/inbox/{address}?order=newest|oldest&limit=N&cursor=SEQ` (owner proof).
async fn get_inbox(
    State(st): State<Arc<NodeState>>,
    Path(address): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<InboxQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let order = parse_order(q.order.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > st.config.limits.max_page {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit must be 1..{}", st.config.limits.max_page),
        ));
    }
    authorize(&st, &address, &method, &uri, &headers, b"").await?;
    let now = now_unix() as u32;
    let entries = st
        .store_call(move |s| s.list_inbox(&address, q.cursor, limit, order, now))
        .await?;
    let mut body =
        String::with_capacity(entries.iter().map(|e| e.binary.len() + 32).sum::<usize>() + 64);
    body.push_str("{\"messages\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        push_entry_json(&mut body, e)?;
    }
    body.push_str("],\"next_cursor\":");
    match entries.last().filter(|_| entries.len() == limit) {
        Some(last) => body.push_str(&format!("\"{}\"}}", last.seq)),
        None => body.push_str("null}"),
    }
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    ids: Vec<String>,
    /// Optional network-verifiable deletion record (docs/replication.md).
    deletion: Option<crate::replication::deletion::DeletionRecord>,
}

/// `POST /v1/inbox/{address}/ack` with `{"ids":[...]}` (owner proof covering the body).
async fn post_ack(
    State(st): State<Arc<NodeState>>,
    Path(address): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let ack: AckBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("expected {{\"ids\":[...]}}: {e}"),
        )
    })?;
    if ack.ids.is_empty() || ack.ids.len() > st.config.limits.max_page {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_ids",
            format!("ids must hold 1..{} message ids", st.config.limits.max_page),
        ));
    }
    let ids = ack
        .ids
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .filter(|_| h.bytes().all(|b| !b.is_ascii_uppercase()))
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_ids",
                        format!(
                            "not a message id: {:?}",
                            h.chars().take(70).collect::<String>()
                        ),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    authorize(&st, &address, &method, &uri, &headers, &body).await?;
    let record =
        crate::replication::deletion::prepare_ack(&st, &address, &ack.ids, ack.deletion.as_ref())
            .await?;
    let (addr, ids2) = (address.clone(), ids.clone());
    let done = st.store_call(move |s| s.delete(&addr, &ids2)).await?;
    let gone: Vec<[u8; 32]> = ids
        .iter()
        .zip(&done)
        .filter(|(_, ok)| **ok)
        .map(|(id, _)| *id)
        .collect();
    crate::replication::deletion::after_ack(&st, record, &gone).await;
    let (mut deleted, mut not_found) = (vec![], vec![]);
    for (id, ok) in ids.iter().zip(done) {
        if ok {
            deleted.push(hex::encode(id))
        } else {
            not_found.push(hex::encode(id))
        }
    }
    Ok(Json(json!({"deleted": deleted, "not_found": not_found})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    since: Option<u64>,
}

/// `GET /v1/inbox/{address}/events[?since=SEQ]` (owner proof): Server-Sent
/// Events. With `since` (or Last-Event-ID), every stored message after that
/// seq comes first, page by page, then each newly accepted one as it is
/// committed: no gap, no repeat.
async fn get_events(
    State(st): State<Arc<NodeState>>,
    Path(address): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    authorize(&st, &address, &method, &uri, &headers, b"").await?;
    let permit = st
        .subscription_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_subscriptions",
                "the node has no room for another subscription",
            )
            .retry_after(30)
        })?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    // Subscribe before reading any backlog, so nothing falls between the two.
    let sub = Subscription {
        rx: st.hub.subscribe(&address),
        st,
        address,
        backlog_from: q.since.or(last_event_id),
        high_water: 0,
        pending: std::collections::VecDeque::new(),
        ended: false,
        _permit: permit,
    };
    Ok(Sse::new(stream::unfold(sub, Subscription::next)).keep_alive(KeepAlive::default()))
}

struct Subscription {
    st: Arc<NodeState>,
    address: String,
    rx: tokio::sync::broadcast::Receiver<Arc<crate::events::InboxEvent>>,
    /// While Some: still reading stored messages after this seq.
    backlog_from: Option<u64>,
    /// Highest seq read from the store. Seqs are assigned in commit order, so
    /// every live event at or below it was already sent from the backlog.
    high_water: u64,
    pending: std::collections::VecDeque<Event>,
    ended: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Subscription {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some((Ok(e), self));
            }
            if self.ended {
                return None;
            }
            if let Some(from) = self.backlog_from {
                let (store, addr, limit) = (
                    self.st.store.clone(),
                    self.address.clone(),
                    self.st.config.limits.max_page,
                );
                let now = now_unix() as u32;
                let page = tokio::task::spawn_blocking(move || {
                    store.list_inbox(&addr, Some(from), limit, Order::OldestFirst, now)
                })
                .await;
                let page = match page {
                    Ok(Ok(p)) => p,
                    _ => {
                        // Tell the client, then end the stream; it reconnects with Last-Event-ID.
                        self.ended = true;
                        let e = Event::default()
                            .event("error")
                            .data(json!({"code": "storage_unavailable"}).to_string());
                        return Some((Ok(e), self));
                    }
                };
                self.backlog_from = if page.len() < limit {
                    None
                } else {
                    page.last().map(|e| e.seq)
                };
                for e in &page {
                    self.high_water = self.high_water.max(e.seq);
                    let mut v = String::with_capacity(e.binary.len() + 40);
                    match push_entry_json(&mut v, e) {
                        Ok(()) => self.pending.push_back(
                            Event::default()
                                .event("message")
                                .id(e.seq.to_string())
                                .data(v),
                        ),
                        Err(_) => continue,
                    }
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(ev) if ev.seq <= self.high_water => continue,
                Ok(ev) => {
                    let e = Event::default()
                        .event("message")
                        .id(ev.seq.to_string())
                        .data(ev.json.clone());
                    return Some((Ok(e), self));
                }
                Err(RecvError::Lagged(n)) => {
                    let e = Event::default()
                        .event("lagged")
                        .data(json!({"missed": n}).to_string());
                    return Some((Ok(e), self));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
