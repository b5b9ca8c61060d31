//! One configured peer: its push queue, identity (learned from its
//! `/v1/info`), sync progress, and its score. A peer that sends invalid data
//! is scored per refusal; past `ban_score` it is refused for `ban_secs`.

use crate::error::ApiError;
use crate::state::now_unix;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Score halves every this many seconds.
const SCORE_HALF_LIFE: f64 = 600.0;

#[derive(Default, Debug, Clone)]
pub struct PeerStatus {
    pub node_id: Option<String>,
    pub reachable: bool,
    pub last_error: Option<String>,
    /// Unix seconds of the end of the last successful repair pass.
    pub last_sync: Option<u64>,
    pub last_sync_ms: u64,
    pub last_full_sync: Option<u64>,
    /// Ids the peer had and this node lacked at the last pass, not (yet) obtained.
    pub behind: u64,
    /// Ids this node had and the peer lacked at the last pass.
    pub ahead: u64,
    pub score: f64,
    pub score_at: u64,
    pub banned_until: u64,
    pub last_penalty: Option<String>,
    /// Full catch-up progress of the running pass: (fetched, needed).
    pub progress: Option<(u64, u64)>,
}

#[derive(Default, Debug)]
pub struct PeerCounters {
    pub pushed: AtomicU64,
    pub push_dropped: AtomicU64,
    pub fetched: AtomicU64,
    pub received: AtomicU64,
    pub refused_from: AtomicU64,
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub rounds: AtomicU64,
    /// Recipient policies (replication/policy_sync.rs): documents pushed to
    /// the peer, dropped after the retries, received in its pushes, and
    /// stored here from its pushes or from repair.
    pub policies_pushed: AtomicU64,
    pub policies_push_dropped: AtomicU64,
    pub policies_received: AtomicU64,
    pub policies_stored: AtomicU64,
    /// Policy repair passes completed with the peer.
    pub policy_syncs: AtomicU64,
}

pub struct Peer {
    pub url: String,
    /// Set when a push batch failed for good: nothing is queued for the peer
    /// until a repair round with it succeeds again (repair brings it up to
    /// date; queuing meanwhile would only send those messages twice).
    pub down: std::sync::atomic::AtomicBool,
    tx: mpsc::Sender<Arc<str>>,
    pub status: Mutex<PeerStatus>,
    pub counters: PeerCounters,
}

pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Peer {
    pub fn new(url: String, queue: usize) -> (Peer, mpsc::Receiver<Arc<str>>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        (
            Peer {
                url,
                down: std::sync::atomic::AtomicBool::new(false),
                tx,
                status: Mutex::new(PeerStatus::default()),
                counters: PeerCounters::default(),
            },
            rx,
        )
    }

    fn st(&self) -> std::sync::MutexGuard<'_, PeerStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn node_id(&self) -> Option<String> {
        self.st().node_id.clone()
    }

    pub fn set_node_id(&self, id: String) {
        self.st().node_id = Some(id);
    }

    /// Queue one envelope (JSON) for push; never waits.
    pub fn enqueue(&self, json: Arc<str>) {
        if self.down.load(Ordering::Relaxed) || self.banned() || self.tx.try_send(json).is_err() {
            add(&self.counters.push_dropped, 1);
        }
    }

    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn banned(&self) -> bool {
        self.st().banned_until > now_unix()
    }

    pub fn set_reachable(&self, ok: bool, error: Option<String>) {
        let mut s = self.st();
        s.reachable = ok;
        if error.is_some() || ok {
            s.last_error = error;
        }
    }

    pub fn update(&self, f: impl FnOnce(&mut PeerStatus)) {
        f(&mut self.st());
    }

    /// Adds `weight` to the peer's (decaying) score; past `ban_score` the
    /// peer is refused for `ban_secs`. Logged with the reason.
    pub fn penalize(&self, weight: f64, reason: &str, ban_score: f64, ban_secs: u64) {
        if weight <= 0.0 {
            return;
        }
        add(&self.counters.refused_from, 1);
        let now = now_unix();
        let mut s = self.st();
        let dt = now.saturating_sub(s.score_at) as f64;
        s.score = s.score * 0.5f64.powf(dt / SCORE_HALF_LIFE) + weight;
        s.score_at = now;
        s.last_penalty = Some(reason.to_string());
        tracing::warn!(
            "peer {} sent invalid data (score now {:.0}): {reason}",
            self.url,
            s.score
        );
        if s.score >= ban_score && s.banned_until <= now {
            s.banned_until = now + ban_secs;
            tracing::warn!(
                "peer {} refused for {ban_secs} s: score {:.0} >= {ban_score:.0}; last: {reason}",
                self.url,
                s.score
            );
        }
    }

    pub fn status_json(&self) -> Value {
        let s = self.st().clone();
        let now = now_unix();
        let c = &self.counters;
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let score = s.score * 0.5f64.powf(now.saturating_sub(s.score_at) as f64 / SCORE_HALF_LIFE);
        json!({
            "url": self.url,
            "node_id": s.node_id,
            "reachable": s.reachable,
            "last_error": s.last_error,
            "last_sync": s.last_sync,
            "last_sync_ago_secs": s.last_sync.map(|t| now.saturating_sub(t)),
            "last_sync_ms": s.last_sync_ms,
            "last_full_sync": s.last_full_sync,
            "behind": s.behind,
            "ahead": s.ahead,
            "progress": s.progress.map(|(done, of)| json!({"fetched": done, "needed": of})),
            "push_queue": self.queued(),
            "pushed": ld(&c.pushed),
            "push_dropped": ld(&c.push_dropped),
            "fetched": ld(&c.fetched),
            "received": ld(&c.received),
            "refused_from_peer": ld(&c.refused_from),
            "bytes_out": ld(&c.bytes_out),
            "bytes_in": ld(&c.bytes_in),
            "repair_rounds": ld(&c.rounds),
            "score": (score * 10.0).round() / 10.0,
            "banned": s.banned_until > now,
            "banned_until": (s.banned_until > now).then_some(s.banned_until),
            "last_penalty": s.last_penalty,
            "policies": {
                "pushed": ld(&c.policies_pushed),
                "push_dropped": ld(&c.policies_push_dropped),
                "received": ld(&c.policies_received),
                "stored": ld(&c.policies_stored),
                "syncs": ld(&c.policy_syncs),
            },
        })
    }
}

/// How much a refusal of a peer's envelope weighs: 10 for forgeries and
/// malformed data (nothing an honest peer relays: it validated the same
/// envelope), 1 for chain answers that may have changed since the peer
/// checked (an address transferred), 2 for clock-skew refusals, and 0 for
/// everything else (deleted or expired meanwhile, this node's own policies,
/// quotas and unavailability).
pub fn penalty(e: &ApiError) -> f64 {
    match e.code.as_str() {
        "bad_json"
        | "not_object"
        | "missing_field"
        | "unknown_field"
        | "duplicate_field"
        | "wrong_type"
        | "out_of_range"
        | "bad_version"
        | "bad_content_type"
        | "bad_address"
        | "non_canonical_address"
        | "bad_public_key"
        | "bad_signature"
        | "bad_base64"
        | "bad_cipher_text"
        | "expires_before_created"
        | "signature_mismatch"
        | "high_s_signature"
        | "id_mismatch"
        | "too_large"
        | "content_too_large" => 10.0,
        "sender_not_owner" | "sender_not_registered" | "sender_domain_expired" => 1.0,
        "created_in_future" | "ttl_too_long" => 2.0,
        _ => 0.0,
    }
}
