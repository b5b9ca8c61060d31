//! Admission of one envelope, in order of cost: size and shape, time window,
//! known id, signature, chain ownership; then the durable write. Plain
//! functions over `NodeState`, so HTTP handlers (and peers, later) share them.

use crate::error::ApiError;
use crate::events::InboxEvent;
use crate::state::{now_unix, Counters, NodeState};
use crate::storage::{IdState, NewMessage, PutOutcome};
use crate::writer::WriteError;
use axum::http::StatusCode;
use fio_l2_chain::{ChainError, Ownership};
use fio_l2_protocol::SignedMessage;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// Where an envelope comes from. Peers' envelopes are validated exactly as
/// clients' are; the source only selects which limits and scores apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A client connection, by remote address.
    Client(std::net::IpAddr),
    /// A replication peer, by its configured URL.
    Peer(String),
    /// In-process callers (tests, benchmarks, tools).
    Local,
}

/// The answer for one admitted envelope: 201 new, 200 already stored.
pub struct Admitted {
    pub status: StatusCode,
    pub body: Value,
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

/// Decoded length of standard padded base64 text (already validated).
fn decoded_len(b64: &str) -> usize {
    let pad = b64.bytes().rev().take_while(|b| *b == b'=').count();
    b64.len() / 4 * 3 - pad
}

pub async fn admit(
    state: &Arc<NodeState>,
    bytes: &[u8],
    source: &Source,
) -> Result<Admitted, ApiError> {
    let r = admit_inner(state, bytes, source).await;
    match &r {
        Ok(a) if a.status == StatusCode::CREATED => Counters::bump(&state.counters.accepted),
        Ok(_) => Counters::bump(&state.counters.duplicates),
        Err(e) => {
            Counters::bump(&state.counters.refused);
            state.spam.count_refusal(&e.code);
            crate::limits::note_failure(state, source, &e.code);
        }
    }
    r
}

async fn admit_inner(
    state: &Arc<NodeState>,
    bytes: &[u8],
    source: &Source,
) -> Result<Admitted, ApiError> {
    let limits = &state.config.limits;
    // 1. Size and shape.
    if bytes.len() > state.max_envelope_bytes() {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "an envelope may have at most {} bytes",
                state.max_envelope_bytes()
            ),
        ));
    }
    let msg = SignedMessage::from_json(bytes)?;
    let m = msg.message();
    if decoded_len(&m.content) > limits.max_content_bytes {
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
    // 2b. Spam checks needing no crypto (limits.rs): recipient policy, proof
    // of work, a peek at the rate buckets (charged after 5).
    let ticket = crate::limits::precheck(state, &msg, source).await?;
    // 3-4. Known id (the same packed message is the same message, whatever
    // its signature), then the signature: one trip to the blocking pool, a
    // bounded number at once.
    let _slot = tokio::time::timeout(Duration::from_secs(10), state.verify_slots.acquire())
        .await
        .map_err(|_| unavailable("saturated", "the node is saturated; retry later"))?
        .map_err(|_| unavailable("shutting_down", "the node is shutting down"))?;
    let (store, chain_id) = (state.store.clone(), state.chain_id);
    let checked = tokio::task::spawn_blocking(move || match store.lookup(&msg.id()) {
        Err(e) => Err(storage_error(e)),
        Ok(Some(IdState::Stored { .. })) => Ok(Err(existing(&msg))),
        Ok(Some(IdState::Deleted { .. })) => Err(deleted()),
        Ok(None) => msg
            .verify_signature(&chain_id)
            .map(|_| Ok(msg))
            .map_err(ApiError::from),
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))??;
    drop(_slot);
    let msg = match checked {
        Ok(msg) => msg,
        Err(already) => return Ok(already),
    };
    // 5. Chain ownership (cached, single-flight in the client).
    check_sender(state, &msg).await?;
    crate::replication::home::check_recipient(state, &msg.message().recipient).await?;
    // 5b. The sender is proven: inbox quota, then charge its buckets (limits.rs).
    crate::limits::charge(state, &msg, source, &ticket).await?;
    // 6. Durable write, group-committed.
    // Rendered once: the stored form is also what peers and subscribers get.
    let m = msg.message();
    let json: Arc<str> = String::from_utf8(crate::stored::encode(&msg))
        .expect("serde_json writes UTF-8")
        .into();
    let new = NewMessage {
        id: msg.id(),
        recipient: m.recipient.clone(),
        sender: m.sender.clone(),
        created: m.created,
        expires: m.expires,
        binary: json.as_bytes().to_vec(),
    };
    let to_api = |e: WriteError| match e {
        WriteError::Saturated => {
            unavailable("saturated", "the node's write queue is full; retry later")
        }
        other => storage_error(other),
    };
    let outcome = state
        .writer
        .try_submit(new)
        .map_err(to_api)?
        .await
        .map_err(to_api)?;
    match outcome {
        PutOutcome::Inserted { seq } => {
            crate::replication::on_inserted(state, &json, source);
            state.hub.publish(&m.recipient, || InboxEvent {
                seq,
                json: crate::stored::event_json(seq, &json),
            });
            Ok(Admitted {
                status: StatusCode::CREATED,
                body: json!({"id": msg.id_hex(), "status": "accepted"}),
            })
        }
        PutOutcome::Existing { .. } => Ok(existing(&msg)),
        PutOutcome::Deleted => Err(deleted()),
    }
}

fn existing(msg: &SignedMessage) -> Admitted {
    Admitted {
        status: StatusCode::OK,
        body: json!({"id": msg.id_hex(), "status": "existing"}),
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
