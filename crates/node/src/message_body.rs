//! Reading a `POST /v1/messages` body. As soon as its first byte shows a
//! single envelope (not a JSON array), that envelope's own limit applies: an
//! oversize envelope is never held in memory beyond it. Its remaining bytes
//! (at most `max_body_bytes` in all) are read and dropped before the 413, so
//! that a client still sending gets the answer instead of a reset
//! connection; a body over `max_body_bytes` is refused at once.

use crate::error::ApiError;
use crate::state::NodeState;
use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_LENGTH;
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;

/// Most bytes reserved up front from a declared Content-Length (the rest
/// grows as bytes arrive, so a false length reserves nothing much).
const RESERVE_AT_MOST: u64 = 64 * 1024;

/// 413 `too_large` for one envelope over `limit` bytes (also admission's
/// answer for a peer's envelope).
pub fn envelope_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("an envelope may have at most {limit} bytes"),
    )
}

fn too_large(single: bool, limit: usize) -> ApiError {
    if single {
        return envelope_too_large(limit);
    }
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "the request body is larger than max_body_bytes",
    )
}

/// A body read whole.
pub struct MessagesBody {
    pub bytes: Bytes,
    /// Its first non-blank byte is `[`: an array of envelopes, not one.
    pub array: bool,
}

/// A body refused, and how many of its bytes the node read.
pub struct Refused {
    pub error: ApiError,
    pub bytes_read: usize,
}

impl Refused {
    /// Failures to charge the client: one per started `max_envelope_bytes`
    /// read, so the penalty box bounds the bytes an address makes the node
    /// read, not just its requests.
    pub fn weight(&self, st: &NodeState) -> f64 {
        self.bytes_read.div_ceil(st.max_envelope_bytes()).max(1) as f64
    }
}

/// The whole body, or a 413 `too_large` once it is known to be over its
/// limit (read on, without keeping, up to `max_body_bytes`), or a 400
/// `bad_body` when it cannot be read.
pub async fn read(
    st: &NodeState,
    headers: &HeaderMap,
    body: Body,
) -> Result<MessagesBody, Refused> {
    let mut seen = 0usize;
    read_counting(st, headers, body, &mut seen)
        .await
        .map_err(|error| Refused {
            error,
            bytes_read: seen,
        })
}

async fn read_counting(
    st: &NodeState,
    headers: &HeaderMap,
    body: Body,
    seen: &mut usize,
) -> Result<MessagesBody, ApiError> {
    let whole = st.config.limits.max_body_bytes;
    let declared: Option<u64> = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok());
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(RESERVE_AT_MOST) as usize);
    // The first non-blank byte, once seen.
    let mut first: Option<u8> = None;
    // The body's limit: max_body_bytes, or a single envelope's once the
    // first byte shows one.
    let mut cap = (whole, false);
    let over =
        |seen: usize, (c, _): (usize, bool)| seen > c || declared.is_some_and(|n| n > c as u64);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("the request body could not be read: {e}"),
            )
        })?;
        *seen += chunk.len();
        if *seen > whole {
            // Read no further.
            return Err(too_large(cap.1, cap.0));
        }
        if over(*seen, cap) {
            // Refused already: read on, keep nothing.
            buf = Vec::new();
            continue;
        }
        buf.extend_from_slice(&chunk);
        if first.is_none() {
            // Earlier chunks were all blank: look at this one only.
            first = chunk.iter().copied().find(|b| !b.is_ascii_whitespace());
            if first.is_some_and(|b| b != b'[') {
                cap = (st.max_envelope_bytes().min(whole), true);
            }
        }
    }
    if over(*seen, cap) {
        return Err(too_large(cap.1, cap.0));
    }
    Ok(MessagesBody {
        bytes: Bytes::from(buf),
        array: first == Some(b'['),
    })
}
