//! Replication between relay nodes (docs/replication.md).
//!
//! - **Push** ([`push`]): every message a client gets accepted here is queued
//!   at once for each peer (bounded queue per peer, batched POSTs, retries with
//!   backoff; a full queue drops, never blocks acceptance: repair heals it).
//! - **Repair** ([`reconcile`]): range-based set reconciliation (negentropy)
//!   over `(created, id)` with each peer: a full pass at start-up and every
//!   `full_interval_secs`, a pass over the recent window every
//!   `sync_interval_ms`; only missing ids are fetched.
//! - **Nothing trusted**: what a peer sends is admitted by
//!   [`crate::admission::admit_many`] exactly as a client's envelope; deletions need
//!   a record signed by the recipient's owner key ([`deletion`]). A peer that
//!   sends invalid data is scored down and refused for a while ([`peers`]).
//! - **Recipient policies** ([`policy_sync`]): pushed to every peer when a
//!   client's PUT stores a new one, repaired from each peer's digest at
//!   start-up and every few minutes; each goes through
//!   [`crate::policy::accept_document`] like a client's PUT.
//! - **Routes** ([`api`]): `POST /v1/peer/messages`, `POST /v1/peer/reconcile`,
//!   `POST /v1/peer/fetch`, `POST /v1/peer/policies`,
//!   `GET /v1/peer/policies/digest`, `POST /v1/peer/policies/fetch`,
//!   `GET /v1/peers`.

pub mod api;
pub mod deletion;
pub mod home;
pub mod peers;
pub mod policy_sync;
pub mod push;
pub mod reconcile;

use crate::admission::Source;
use crate::state::{now_unix, NodeState};
use peers::Peer;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The header a node names itself with on peer routes (its node id).
pub const PEER_HEADER: &str = "x-fio-l2-peer";

/// Replication settings (flags `--peer`, `--public-url`, `--serve-only-home`,
/// `--sync-interval-ms`; TOML keys `peer`, `public_url`, `serve_only_home`,
/// `sync_interval_ms`).
#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// Peer base URLs.
    pub peers: Vec<String>,
    /// This node's own public base URL, as published in owners' `FIOL2`/`NODE`
    /// mappings (home-node mode).
    pub public_url: Option<String>,
    /// Keep only messages whose recipient names this node as a home node.
    pub serve_only_home: bool,
    /// Envelopes waiting per peer for push; beyond it they are dropped (repair heals).
    pub push_queue: usize,
    /// Most envelopes in one push request.
    pub push_batch: usize,
    /// Interval of the recent-window repair pass, milliseconds.
    pub sync_interval_ms: u64,
    /// The recent window: messages created in the last this many seconds.
    pub recent_window_secs: u32,
    /// Interval of the full repair pass, seconds (also run at start-up).
    pub full_interval_secs: u64,
    /// Score at which a peer is refused (decays by half every 10 minutes).
    pub ban_score: f64,
    /// How long a peer past `ban_score` is refused, seconds.
    pub ban_secs: u64,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            peers: vec![],
            public_url: None,
            serve_only_home: false,
            push_queue: 20_000,
            push_batch: 100,
            sync_interval_ms: 2_000,
            recent_window_secs: 900,
            full_interval_secs: 3_600,
            ban_score: 100.0,
            ban_secs: 600,
        }
    }
}

/// Normalizes a base URL: no trailing slash.
pub fn normalize_url(u: &str) -> String {
    u.trim().trim_end_matches('/').to_string()
}

/// How long an id refused on fetch is not fetched again, seconds.
const REFUSED_TTL: u64 = 600;
const REFUSED_MAX: usize = 200_000;

/// The replication state of a node (one per node, in `NodeState::replication`).
pub struct Replicator {
    pub config: ReplicationConfig,
    pub http: reqwest::Client,
    pub peers: Vec<Arc<Peer>>,
    pub deletions: deletion::DeletionStore,
    /// Ids some peer's sync is fetching right now: the others skip them, so a
    /// node that catches up with several peers fetches each message once.
    claims: Mutex<HashSet<[u8; 32]>>,
    /// Ids refused on fetch (expired, deleted, sender no longer owner...), until.
    refused: Mutex<HashMap<[u8; 32], u64>>,
    /// One reconciliation at a time per node: a node catching up learns the
    /// missing ids (and fetches them) from one peer, not from all at once.
    pub sync_lock: tokio::sync::Mutex<()>,
    /// Set while this node runs a full pass (e.g. catching up after a
    /// restart): peers' recent-window passes are then refused (503), since
    /// this node is pulling everything anyway and each of them would only
    /// list the same missing ids again.
    pub full_pass_running: std::sync::atomic::AtomicBool,
    /// Recipient policy push queues and refusals.
    pub policy: policy_sync::PolicySync,
}

impl Replicator {
    pub fn peer_by_node_id(&self, node_id: &str) -> Option<Arc<Peer>> {
        self.peers
            .iter()
            .find(|p| p.node_id().as_deref() == Some(node_id))
            .cloned()
    }

    /// Claims the ids not claimed by another sync and not recently refused;
    /// also answers how many were skipped as recently refused.
    fn claim(&self, ids: &[[u8; 32]]) -> (Vec<[u8; 32]>, u64) {
        let now = now_unix();
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let mut skipped = 0;
        let mut out = vec![];
        for id in ids {
            if matches!(refused.get(id), Some(until) if *until > now) {
                skipped += 1;
            } else if claims.insert(*id) {
                out.push(*id);
            }
        }
        (out, skipped)
    }

    fn release(&self, ids: &[[u8; 32]]) {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            claims.remove(id);
        }
    }

    /// Remembers that `id` was refused; true if it was not already.
    pub fn refuse(&self, id: [u8; 32]) -> bool {
        let now = now_unix();
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(refused.get(&id), Some(until) if *until > now) {
            return false;
        }
        if refused.len() >= REFUSED_MAX {
            let now = now_unix();
            refused.retain(|_, until| *until > now);
            if refused.len() >= REFUSED_MAX {
                refused.clear();
            }
        }
        refused.insert(id, now + REFUSED_TTL);
        true
    }
}

/// The node's replicator, once started.
pub fn get(state: &NodeState) -> Option<&Arc<Replicator>> {
    state.replication.get()
}

/// The calling peer of a peer route, from `X-FIO-L2-Peer`: a configured peer
/// this node has identified (`403 unknown_peer`, `Retry-After: 1`, if not)
/// and does not refuse for its score (`429 peer_refused`). Same rule as the
/// routes in [`api`] (which keep a private copy for now).
pub fn calling_peer(
    st: &NodeState,
    headers: &axum::http::HeaderMap,
) -> Result<(Arc<Replicator>, Arc<Peer>), crate::error::ApiError> {
    use crate::error::ApiError;
    use axum::http::StatusCode;
    let r = get(st)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "replication_off",
                "replication is not running",
            )
        })?
        .clone();
    let id = headers
        .get(PEER_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let peer = r.peer_by_node_id(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "unknown_peer",
            "X-FIO-L2-Peer does not name a configured peer (yet)",
        )
        .retry_after(1)
    })?;
    if peer.banned() {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "peer_refused",
            "this peer sent invalid data and is refused for a while",
        )
        .retry_after(60));
    }
    Ok((r, peer))
}

/// Admission hook: a message was durably inserted. Client messages are
/// queued for every peer at once; messages from peers are not forwarded
/// (peers form a full mesh; repair covers the rest). `json` is the message's
/// stored form (canonical JSON with its id, which peers check).
pub fn on_inserted(state: &NodeState, json: &Arc<str>, source: &Source) {
    if matches!(source, Source::Peer(_)) {
        return;
    }
    let Some(r) = get(state) else { return };
    if r.peers.is_empty() {
        return;
    }
    for p in &r.peers {
        p.enqueue(json.clone());
    }
}

/// Starts replication for a node: opens the deletion-record store, then one
/// push task and one repair task per peer, and the record purge.
pub fn start(state: &Arc<NodeState>) -> Result<(), String> {
    let config = state.config.replication.clone();
    let deletions = deletion::DeletionStore::open(&state.config.data_dir.join("replication.redb"))?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(3))
        .pool_max_idle_per_host(4)
        .build()
        .map_err(|e| e.to_string())?;
    let mut peers = vec![];
    let mut receivers = vec![];
    for url in &config.peers {
        let url = normalize_url(url);
        if url.is_empty() || peers.iter().any(|p: &Arc<Peer>| p.url == url) {
            continue;
        }
        let (peer, rx) = Peer::new(url, config.push_queue);
        receivers.push(rx);
        peers.push(Arc::new(peer));
    }
    let (policy, policy_receivers) = policy_sync::PolicySync::new(peers.len());
    let r = Arc::new(Replicator {
        config,
        http,
        peers,
        deletions,
        claims: Mutex::new(HashSet::new()),
        refused: Mutex::new(HashMap::new()),
        sync_lock: tokio::sync::Mutex::new(()),
        full_pass_running: std::sync::atomic::AtomicBool::new(false),
        policy,
    });
    state
        .replication
        .set(r.clone())
        .map_err(|_| "replication started twice".to_string())?;
    for ((peer, rx), prx) in r.peers.iter().zip(receivers).zip(policy_receivers) {
        tokio::spawn(push::run(r.clone(), state.clone(), peer.clone(), rx));
        tokio::spawn(reconcile::run(r.clone(), state.clone(), peer.clone()));
        tokio::spawn(policy_sync::run_push(
            r.clone(),
            state.clone(),
            peer.clone(),
            prx,
        ));
        tokio::spawn(policy_sync::run_repair(
            r.clone(),
            state.clone(),
            peer.clone(),
        ));
    }
    // Deletion records live as long as their tombstones.
    let (r2, every) = (
        r.clone(),
        Duration::from_secs(state.config.purge_interval_secs.max(1)),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let r3 = r2.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = r3.deletions.purge(now_unix() as u32) {
                    tracing::warn!("deletion record purge failed: {e}");
                }
            })
            .await;
        }
    });
    if !r.peers.is_empty() {
        tracing::info!(
            "replication with {} peer(s): {}",
            r.peers.len(),
            r.peers
                .iter()
                .map(|p| p.url.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
