//! Admission of envelopes, in order of cost: size and shape, time window,
//! spam prechecks, known id, signature, chain ownership; then the durable
//! write. Plain functions over `NodeState`, shared by the client API and the
//! peers' push and repair.

use crate::error::ApiError;
use crate::events::InboxEvent;
use crate::state::{now_unix, Counters, NodeState};
use crate::storage::{IdState, NewMessage, PutOutcome};
use crate::writer::WriteError;
use axum::http::StatusCode;
use fio_l2_chain::{ChainError, Ownership};
use fio_l2_protocol::SignedMessage;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where an envelope comes from. Peers' envelopes are validated exactly as
/// clients' are; the source only selects which limits and scores apply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// A client connection, by remote address.
    Client(std::net::IpAddr),
    /// A replication peer, by its configured URL.
    Peer(String),
    /// In-process callers (tests, benchmarks, tools).
    Local,
}

impl Source {
    /// Whose turn it is on the verification threads (fair_queue.rs): this
    /// source, with an IPv6 client taken as its /64 like the per-IP limits.
    pub fn flow(&self) -> Source {
        match self {
            Source::Client(ip) => Source::Client(crate::limits::ip_key(*ip)),
            other => other.clone(),
        }
    }
}

/// The answer for one admitted envelope: 201 new, 200 already stored.
pub struct Admitted {
    pub status: StatusCode,
    pub id: [u8; 32],
}

impl Admitted {
    fn status_word(&self) -> &'static str {
        if self.status == StatusCode::CREATED {
            "accepted"
        } else {
            "existing"
        }
    }

    /// `{"id","status"}`, the answer to a single envelope (written
    /// directly, as [`ResultsJson`] does: hex and fixed words need no escaping).
    pub fn body(&self) -> String {
        format!(
            "{{\"id\":\"{}\",\"status\":\"{}\"}}",
            fio_l2_protocol::hash::to_hex(&self.id),
            self.status_word()
        )
    }

    /// [`Admitted::body`] as a JSON answer with this admission's status.
    pub fn into_response(&self) -> axum::response::Response {
        use axum::response::IntoResponse;
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response()
    }
}

/// The answer to an array: `200 {"results":[...]}`, one element per
/// envelope, each the single envelope's answer with its `http_status`.
/// Accepted envelopes, the common case, are written directly (hex and
/// fixed words need no escaping), not through a `serde_json::Value`.
pub struct ResultsJson(String);

impl ResultsJson {
    pub fn with_capacity(n: usize) -> Self {
        let mut s = String::with_capacity(16 + n * 112);
        s.push_str("{\"results\":[");
        ResultsJson(s)
    }

    pub fn push(&mut self, result: &Result<Admitted, ApiError>) {
        use std::fmt::Write;
        if !self.0.ends_with('[') {
            self.0.push(',');
        }
        match result {
            Ok(a) => {
                let _ = write!(
                    self.0,
                    "{{\"http_status\":{},\"id\":\"{}\",\"status\":\"{}\"}}",
                    a.status.as_u16(),
                    fio_l2_protocol::hash::to_hex(&a.id),
                    a.status_word()
                );
            }
            Err(e) => {
                let mut b = e.body();
                b["http_status"] = json!(e.status.as_u16());
                self.0.push_str(&b.to_string());
            }
        }
    }

    pub fn into_response(mut self) -> axum::response::Response {
        use axum::response::IntoResponse;
        self.0.push_str("]}");
        (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.0,
        )
            .into_response()
    }
}

fn unavailable(code: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, msg).retry_after(5)
}

fn storage_error(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("storage failure: {e}");
    unavailable(
        "storage_unavailable",
        "the node could not reach its storage",
    )
}

/// What [`admit_many`] says about one envelope: its id when it parsed, and
/// the answer.
pub struct Outcome {
    pub id: Option<[u8; 32]>,
    pub result: Result<Admitted, ApiError>,
}

/// Admits envelopes (a client's array, a peer's push or fetch answer), one
/// outcome each, in order. The checks that need no network (size, shape,
/// time, spam prechecks, known id, signature) run on the blocking pool in one
/// task per core-sized chunk, not one per envelope; the chain checks run
/// concurrently; then every survivor is handed to the group-commit writer
/// before any reply is awaited, so they share commits.
pub async fn admit_many<B>(state: &Arc<NodeState>, items: Vec<B>, source: &Source) -> Vec<Outcome>
where
    B: AsRef<[u8]> + Send + 'static,
{
    admit_timed(state, items, source, &mut Timings::default()).await
}

/// Where a submission's time went (each stage's slowest chunk), for the
/// `Server-Timing` answer header: operators and benchmarks can tell queueing
/// for a verification thread from verifying, the chain and the durable write.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    pub read: Duration,
    pub slot: Duration,
    pub verify: Duration,
    pub chain: Duration,
    pub write: Duration,
}

impl Timings {
    /// `read;dur=0.104, slot;dur=0.000, ...` in milliseconds, with integer
    /// formatting (five float formats took about 3 µs a request).
    pub fn header_value(&self) -> axum::http::HeaderValue {
        use std::fmt::Write;
        let mut v = String::with_capacity(96);
        for (i, (name, d)) in [
            ("read", self.read),
            ("slot", self.slot),
            ("verify", self.verify),
            ("chain", self.chain),
            ("write", self.write),
        ]
        .into_iter()
        .enumerate()
        {
            let us = d.as_micros();
            let sep = if i == 0 { "" } else { ", " };
            // Writing to a String cannot fail.
            let _ = write!(v, "{sep}{name};dur={}.{:03}", us / 1000, us % 1000);
        }
        axum::http::HeaderValue::from_str(&v).expect("ascii")
    }
}

/// [`admit_many`], noting each stage's time in `t`.
pub async fn admit_timed<B>(
    state: &Arc<NodeState>,
    items: Vec<B>,
    source: &Source,
    t: &mut Timings,
) -> Vec<Outcome>
where
    B: AsRef<[u8]> + Send + 'static,
{
    let (offline, slot, verify) = offline_stage(state, items, source).await;
    (t.slot, t.verify) = (slot, verify);
    let chain_started = Instant::now();
    // Chain ownership and the charged limits, concurrently (cached lookups,
    // single-flight in the client).
    let chained = futures_util::future::join_all(offline.into_iter().map(|(id, r)| async move {
        let r = match r {
            Ok(Offline::Checked(msg, ticket)) => chain_stage(state, &msg, source, &ticket)
                .await
                .map(|()| Offline::Checked(msg, ticket)),
            other => other,
        };
        (id, r)
    }))
    .await;
    t.chain = chain_started.elapsed();
    let write_started = Instant::now();
    // Durable write: every survivor in one submission (one commit holds
    // them all), then the answers.
    let mut results: Vec<Option<Result<Admitted, ApiError>>> = Vec::with_capacity(chained.len());
    let mut ids = Vec::with_capacity(chained.len());
    let (mut writing, mut batch) = (Vec::new(), Vec::new());
    for (i, (id, r)) in chained.into_iter().enumerate() {
        ids.push(id);
        results.push(match r {
            Ok(Offline::Known(a)) => Some(Ok(a)),
            Ok(Offline::Checked(msg, _)) => {
                let (new, json) = to_store(&msg);
                batch.push(new);
                writing.push((i, msg, json));
                None
            }
            Err(e) => Some(Err(e)),
        });
    }
    if !batch.is_empty() {
        let written = match state.writer.try_submit_many(batch) {
            Ok(pending) => pending.await,
            Err(e) => Err(e),
        };
        match written {
            Ok(outcomes) => {
                for ((i, msg, json), o) in writing.into_iter().zip(outcomes) {
                    results[i] = Some(finish(state, &msg, &json, o, source));
                }
            }
            Err(e) => {
                let e = to_api(e);
                for (i, _, _) in writing {
                    results[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(results.len());
    for (id, result) in ids.into_iter().zip(results) {
        let result = result.unwrap_or_else(|| Err(storage_error(WriteError::Closed)));
        count(state, source, &result);
        out.push(Outcome { id, result });
    }
    t.write = write_started.elapsed();
    out
}

fn count(state: &NodeState, source: &Source, r: &Result<Admitted, ApiError>) {
    match r {
        Ok(a) if a.status == StatusCode::CREATED => Counters::bump(&state.counters.accepted),
        Ok(_) => Counters::bump(&state.counters.duplicates),
        Err(e) => count_refusal(state, source, e),
    }
}

/// Counts a refusal (node and spam counters, the client's failure score).
pub fn count_refusal(state: &NodeState, source: &Source, e: &ApiError) {
    count_weighted_refusal(state, source, e, 1.0);
}

/// [`count_refusal`] for a refusal that cost the node more than one check:
/// `weight` failures on the client's score (an oversize body: one per
/// envelope limit's worth of bytes read).
pub fn count_weighted_refusal(state: &NodeState, source: &Source, e: &ApiError, weight: f64) {
    Counters::bump(&state.counters.refused);
    state.spam.count_refusal(&e.code);
    crate::limits::note_failure(state, source, &e.code, weight);
}

/// After the offline checks: a message to take further, or the answer
/// already (stored before).
enum Offline {
    Checked(Box<SignedMessage>, crate::limits::Ticket),
    Known(Admitted),
}

type OfflineResult = (Option<[u8; 32]>, Result<Offline, ApiError>);

/// Checks 1-4 and the spam prechecks of every item on the CPU pool, split
/// into at most `max_concurrent_verifications` chunks that run in parallel
/// when threads are free. Also the longest any chunk waited for its turn,
/// and then for its checks.
async fn offline_stage<B>(
    state: &Arc<NodeState>,
    items: Vec<B>,
    source: &Source,
) -> (Vec<OfflineResult>, Duration, Duration)
where
    B: AsRef<[u8]> + Send + 'static,
{
    let n = items.len();
    let chunks = state
        .config
        .limits
        .max_concurrent_verifications
        .clamp(1, n.max(1));
    let per = n.div_ceil(chunks).max(1);
    let mut iter = items.into_iter();
    let mut tasks = Vec::with_capacity(chunks);
    loop {
        let chunk: Vec<B> = iter.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        let (st, src) = (state.clone(), source.clone());
        tasks.push(async move {
            let len = chunk.len();
            let queued = Instant::now();
            let st2 = st.clone();
            let job = st.cpu.run(src.flow(), len as u64, move || {
                let started = Instant::now();
                let r = offline_checks(&st2, &chunk, &src);
                (r, started, started.elapsed())
            });
            match tokio::time::timeout(Duration::from_secs(10), job).await {
                Ok(Ok((r, started, took))) => (r, started - queued, took),
                Ok(Err(_)) => {
                    let r = refuse_all(len, || {
                        ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            "admission checks failed unexpectedly",
                        )
                    });
                    (r, queued.elapsed(), Duration::ZERO)
                }
                // Not started (or not done) in 10 s: dropping the job took
                // it out of the queue.
                Err(_) => {
                    let r = refuse_all(len, || {
                        unavailable("saturated", "the node is saturated; retry later")
                    });
                    (r, queued.elapsed(), Duration::ZERO)
                }
            }
        });
    }
    let (mut out, mut slot, mut verify) = (Vec::with_capacity(n), Duration::ZERO, Duration::ZERO);
    for (r, w, v) in futures_util::future::join_all(tasks).await {
        out.extend(r);
        (slot, verify) = (slot.max(w), verify.max(v));
    }
    (out, slot, verify)
}

fn refuse_all(n: usize, e: impl Fn() -> ApiError) -> Vec<OfflineResult> {
    (0..n).map(|_| (None, Err(e()))).collect()
}

/// Checks 1-4 of a chunk of envelopes in order of cost, with the spam
/// prechecks (limits.rs: recipient policy, proof of work, a peek at the rate
/// buckets) before the known-id lookup (one store read for the chunk) and the
/// signature. Blocking (store read, crypto).
fn offline_checks<B: AsRef<[u8]>>(
    state: &NodeState,
    chunk: &[B],
    source: &Source,
) -> Vec<OfflineResult> {
    let staged: Vec<_> = chunk
        .iter()
        .map(|b| cheap_checks(state, b.as_ref(), source))
        .collect();
    // 3. Known id: the same packed message is the same message, whatever
    // its signature.
    let ids: Vec<[u8; 32]> = staged
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|(m, _)| m.id()))
        .collect();
    let mut known = match state.store.lookup_many(&ids) {
        Ok(k) => Ok(k.into_iter()),
        Err(e) => Err(e.to_string()),
    };
    staged
        .into_iter()
        .map(|(id, r)| {
            let r = r.and_then(|(msg, ticket)| {
                match &mut known {
                    Err(e) => return Err(storage_error(e)),
                    Ok(k) => match k.next().flatten() {
                        Some(IdState::Stored { .. }) => return Ok(Offline::Known(existing(&msg))),
                        Some(IdState::Deleted { .. }) => return Err(deleted()),
                        None => {}
                    },
                }
                // 4. The signature.
                msg.verify_signature(&state.chain_id)?;
                Ok(Offline::Checked(Box::new(msg), ticket))
            });
            (id, r)
        })
        .collect()
}

/// An envelope past the cheap checks, with its id when it parsed.
type Staged = (
    Option<[u8; 32]>,
    Result<(SignedMessage, crate::limits::Ticket), ApiError>,
);

/// Checks 1, 2 and the spam prechecks of one envelope.
fn cheap_checks(state: &NodeState, bytes: &[u8], source: &Source) -> Staged {
    let limits = &state.config.limits;
    // 1. Size and shape.
    if bytes.len() > state.max_envelope_bytes() {
        let e = crate::message_body::envelope_too_large(state.max_envelope_bytes());
        return (None, Err(e));
    }
    let msg = match SignedMessage::from_json(bytes) {
        Ok(m) => m,
        Err(e) => return (None, Err(e.into())),
    };
    let id = Some(msg.id());
    let r = (|| {
        if crate::limits::decoded_len(&msg.message().content) > limits.max_content_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "content_too_large",
                format!(
                    "content may have at most {} bytes of cipher text",
                    limits.max_content_bytes
                ),
            ));
        }
        // 2. Time window.
        msg.check_time(now_unix(), &state.time_policy())?;
        // 2b. Spam checks needing no crypto.
        crate::limits::precheck(state, &msg, source)
    })();
    (id, r.map(|ticket| (msg, ticket)))
}

/// Check 5 (chain ownership), the home-node rule, then the charged limits.
async fn chain_stage(
    state: &NodeState,
    msg: &SignedMessage,
    source: &Source,
    ticket: &crate::limits::Ticket,
) -> Result<(), ApiError> {
    check_sender(state, msg).await?;
    crate::replication::home::check_recipient(state, &msg.message().recipient).await?;
    // The sender is proven: inbox quota, then charge its buckets.
    crate::limits::charge(state, msg, source, ticket).await
}

fn to_api(e: WriteError) -> ApiError {
    match e {
        WriteError::Saturated => {
            unavailable("saturated", "the node's write queue is full; retry later")
        }
        other => storage_error(other),
    }
}

/// A checked message as the store keeps it. Its JSON is rendered once: the
/// stored form is also what peers and subscribers get.
fn to_store(msg: &SignedMessage) -> (NewMessage, Arc<str>) {
    let m = msg.message();
    let json: Arc<str> = msg.to_json_string(true).into();
    let new = NewMessage {
        id: msg.id(),
        recipient: m.recipient.clone(),
        sender: m.sender.clone(),
        created: m.created,
        expires: m.expires,
        binary: json.as_bytes().to_vec(),
    };
    (new, json)
}

/// After the commit: tells peers and subscribers of a new message.
fn finish(
    state: &NodeState,
    msg: &SignedMessage,
    json: &Arc<str>,
    outcome: PutOutcome,
    source: &Source,
) -> Result<Admitted, ApiError> {
    match outcome {
        PutOutcome::Inserted { seq } => {
            let recipient = &msg.message().recipient;
            crate::replication::on_inserted(state, json, source);
            state.hub.publish(recipient, || InboxEvent {
                seq,
                json: crate::stored::event_json(seq, json),
            });
            Ok(Admitted {
                status: StatusCode::CREATED,
                id: msg.id(),
            })
        }
        PutOutcome::Existing { .. } => Ok(existing(msg)),
        PutOutcome::Deleted => Err(deleted()),
    }
}

fn existing(msg: &SignedMessage) -> Admitted {
    Admitted {
        status: StatusCode::OK,
        id: msg.id(),
    }
}

fn deleted() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "message_deleted",
        "the recipient deleted this message; it is not accepted again",
    )
}

/// Check 5: the actor of `sender_key` owns `sender`, its domain usable.
pub async fn check_sender(state: &NodeState, msg: &SignedMessage) -> Result<(), ApiError> {
    let m = msg.message();
    let forbidden = |code: &str, text: String| ApiError::new(StatusCode::FORBIDDEN, code, text);
    match state.chain.check_owner(&m.sender_key, &m.sender).await {
        Ok(Ownership::Owned { .. }) => Ok(()),
        Ok(Ownership::DomainExpired { .. }) => Err(forbidden(
            "sender_domain_expired",
            format!("the domain of {} is past its grace period", m.sender),
        )),
        Ok(Ownership::NotOwned) => {
            // Tell "nobody has it" from "someone else has it"; only on this
            // refusal path, and the answer is cached like the first.
            match state.chain.pub_address(&m.sender, "FIO", "FIO").await {
                Err(ChainError::NotFound(_)) | Err(ChainError::InvalidInput(_)) => Err(forbidden(
                    "sender_not_registered",
                    format!("{} is not a registered FIO Address", m.sender),
                )),
                _ => Err(forbidden(
                    "sender_not_owner",
                    format!("sender_key does not own {} on the FIO Chain", m.sender),
                )),
            }
        }
        Err(ChainError::Unavailable(e)) => {
            tracing::warn!("chain unavailable during admission: {e}");
            Err(unavailable(
                "chain_unavailable",
                "the FIO Chain cannot be reached; nothing is accepted unchecked",
            ))
        }
        Err(ChainError::DomainExpired(_)) => Err(forbidden(
            "sender_domain_expired",
            format!("the domain of {} has expired", m.sender),
        )),
        Err(e) => Err(forbidden(
            "sender_not_registered",
            format!("{}: {}", m.sender, e.message()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{Admitted, Timings};
    use axum::http::StatusCode;
    use std::time::Duration;

    #[test]
    fn server_timing_is_in_milliseconds_to_the_microsecond() {
        let t = Timings {
            read: Duration::from_nanos(104_400),
            slot: Duration::ZERO,
            verify: Duration::from_micros(1_250),
            chain: Duration::from_secs(12),
            write: Duration::from_micros(7),
        };
        assert_eq!(
            t.header_value().to_str().unwrap(),
            "read;dur=0.104, slot;dur=0.000, verify;dur=1.250, chain;dur=12000.000, write;dur=0.007"
        );
    }

    #[test]
    fn a_single_answer_is_the_id_and_status_as_json() {
        let a = Admitted {
            status: StatusCode::CREATED,
            id: [0xab; 32],
        };
        let v: serde_json::Value = serde_json::from_str(&a.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": "ab".repeat(32), "status": "accepted"})
        );
        let e = Admitted {
            status: StatusCode::OK,
            id: [1; 32],
        };
        assert!(e.body().ends_with(r#""status":"existing"}"#));
    }
}
