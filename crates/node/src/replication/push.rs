//! Push: one task per peer drains its bounded queue into batched
//! `POST {peer}/v1/peer/messages` requests (JSON array of envelopes, at most
//! `push_batch` and ~900 KiB), retrying with backoff; a batch that still
//! fails is dropped (repair heals it). Acceptance never waits for this.

use super::peers::{add, Peer};
use super::{Replicator, PEER_HEADER};
use crate::state::NodeState;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const MAX_BATCH_BYTES: usize = 900 * 1024;
pub const MAX_ATTEMPTS: u32 = 6;

pub async fn run(
    r: Arc<Replicator>,
    state: Arc<NodeState>,
    peer: Arc<Peer>,
    mut rx: mpsc::Receiver<Arc<str>>,
) {
    let mut carry: Option<Arc<str>> = None;
    loop {
        let first = match carry.take() {
            Some(x) => x,
            None => match rx.recv().await {
                Some(x) => x,
                None => return,
            },
        };
        let mut bytes = first.len() + 2;
        let mut batch = vec![first];
        while batch.len() < r.config.push_batch.max(1) {
            match rx.try_recv() {
                Ok(x) => {
                    if bytes + x.len() + 1 > MAX_BATCH_BYTES {
                        carry = Some(x);
                        break;
                    }
                    bytes += x.len() + 1;
                    batch.push(x);
                }
                Err(_) => break,
            }
        }
        if !send_batch(&r, &state, &peer, &batch).await {
            // Given up on this peer for now: drop what is queued (repair will
            // bring it up to date) and queue nothing until repair reaches it.
            peer.down.store(true, std::sync::atomic::Ordering::Relaxed);
            let mut n = carry.take().map_or(0, |_| 1);
            while rx.try_recv().is_ok() {
                n += 1;
            }
            add(&peer.counters.push_dropped, n);
        }
    }
}

/// False when the batch was dropped because the peer cannot be reached.
async fn send_batch(r: &Replicator, state: &NodeState, peer: &Peer, batch: &[Arc<str>]) -> bool {
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
    match post_retrying(r, state, peer, "/v1/peer/messages", body, "push").await {
        Posted::Ok(text) => {
            add(&peer.counters.pushed, n);
            // Refusals are the peer's business (it logs them); count only.
            if let Ok(v) = serde_json::from_slice::<Value>(&text) {
                let refused = v["results"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|x| x["http_status"].as_u64().unwrap_or(0) >= 400)
                            .count()
                    })
                    .unwrap_or(0);
                if refused > 0 {
                    tracing::debug!("peer {} refused {refused} pushed envelopes", peer.url);
                }
            }
            true
        }
        Posted::Banned | Posted::Refused => {
            add(&peer.counters.push_dropped, n);
            true
        }
        Posted::GaveUp => {
            add(&peer.counters.push_dropped, n);
            false
        }
    }
}

/// How [`post_retrying`] ended.
pub enum Posted {
    /// A 2xx answer; its body.
    Ok(Vec<u8>),
    /// The peer is refused here (score): nothing was sent.
    Banned,
    /// A 4xx answer other than 403/429: sending again would not help.
    Refused,
    /// Unreachable, 403 (not identified yet), 429 or 5xx through every attempt.
    GaveUp,
}

/// POSTs a JSON `body` to `{peer}{path}` as this node (`X-FIO-L2-Peer`),
/// retrying with exponential backoff (0.2 s to 6.4 s, [`MAX_ATTEMPTS`]
/// attempts) while the peer cannot be reached, has not identified this node
/// yet (403), refuses it for now (429) or fails (5xx). Keeps the peer's
/// reachability, last error and byte counters; `what` prefixes errors.
/// Shared by message push and policy push.
pub async fn post_retrying(
    r: &Replicator,
    state: &NodeState,
    peer: &Peer,
    path: &str,
    body: String,
    what: &str,
) -> Posted {
    let mut attempt = 0u32;
    loop {
        if peer.banned() {
            return Posted::Banned;
        }
        attempt += 1;
        add(&peer.counters.bytes_out, body.len() as u64);
        let res = r
            .http
            .post(format!("{}{path}", peer.url))
            .header(PEER_HEADER, &state.node_id)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let retry = match res {
            Ok(resp) => {
                let status = resp.status();
                let text = resp.bytes().await.unwrap_or_default();
                add(&peer.counters.bytes_in, text.len() as u64);
                if status.is_success() {
                    peer.set_reachable(true, None);
                    return Posted::Ok(text.to_vec());
                }
                let msg = format!(
                    "{what}: {status}: {}",
                    String::from_utf8_lossy(&text[..text.len().min(200)])
                );
                peer.set_reachable(true, Some(msg.clone()));
                // 403 unknown_peer: the peer has not identified us yet; 429: it
                // refuses us for now; 5xx: try again. Other 4xx: never.
                status.as_u16() == 403 || status.as_u16() == 429 || status.is_server_error()
            }
            Err(e) => {
                peer.set_reachable(false, Some(format!("{what}: {e}")));
                true
            }
        };
        if !retry {
            return Posted::Refused;
        }
        if attempt >= MAX_ATTEMPTS {
            return Posted::GaveUp;
        }
        let backoff = Duration::from_millis(100u64 << attempt.min(7));
        tokio::time::sleep(backoff.min(Duration::from_secs(10))).await;
    }
}
