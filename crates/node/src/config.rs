//! Node settings: command-line flags, environment variables (`FIO_L2_*`) and
//! a TOML file, in that order of precedence. Limits are published in `/v1/info`.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Limits a client can rely on; all published in `/v1/info`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest decoded cipher text in `content`, bytes.
    pub max_content_bytes: usize,
    /// Largest request body, bytes (an array of envelopes included).
    pub max_body_bytes: usize,
    /// Most envelopes in one array submission.
    pub max_batch: usize,
    /// Longest time to live: `expires` at most this many seconds from now.
    pub max_ttl_secs: u32,
    /// Allowed clock skew for `created` (and `expires`), seconds.
    pub max_clock_skew_secs: u32,
    /// How far a read proof's time may be from the node's clock, seconds.
    pub proof_window_secs: u32,
    /// Most messages in one inbox page.
    pub max_page: usize,
    /// Most envelopes waiting for the durable writer; beyond it, 503.
    pub write_queue: usize,
    /// Most chunks one submission's checks are split into, to run in
    /// parallel on the verification threads (one per core), which take the
    /// chunks of all submissions in fair order among clients (cpu_pool.rs).
    pub max_concurrent_verifications: usize,
    /// Most live (SSE) subscriptions at once.
    pub max_subscriptions: usize,
    // Spam resistance (docs/spam.md). Rates are tokens per minute; a burst
    // of 0 disables that limit.
    /// Submission requests (envelopes, in arrays) per client IP (IPv6: /64).
    pub ip_requests_per_min: u32,
    pub ip_requests_burst: u32,
    /// Failed signatures / unowned senders per client IP before it is cut off.
    pub ip_failures_per_min: u32,
    pub ip_failures_burst: u32,
    /// Apply the per-IP limits to loopback clients too (off: a reverse proxy
    /// on the same host would make every client one IP).
    pub limit_loopback: bool,
    /// Accepted messages per sender address.
    pub sender_per_min: u32,
    pub sender_burst: u32,
    /// Accepted messages per recipient (senders it allows are exempt).
    pub recipient_per_min: u32,
    pub recipient_burst: u32,
    /// Accepted messages per (sender, recipient).
    pub pair_per_min: u32,
    pub pair_burst: u32,
    /// Most messages stored for one recipient; 0: no quota.
    pub inbox_quota: u64,
    /// Node-wide proof of work for senders the recipient has not allowed.
    pub min_pow_bits: u32,
    /// Most entries in each rate-limit map (idle ones are evicted first).
    pub rate_limit_entries: usize,
    /// Most submission requests in flight at once (beyond: 503 saturated).
    pub max_inflight_submissions: usize,
    /// Most submission requests in flight per client IP (beyond: 429).
    pub max_inflight_per_ip: usize,
    /// The node is busy while at least this many chunks of envelopes wait
    /// for a verification thread (its CPU is the bottleneck).
    pub busy_queued_checks: usize,
    /// Most submission requests in flight per client IP while the node is
    /// busy (beyond: 429 `ip_concurrency_limited`, held by the tarpit); 0:
    /// no such limit. Sheds the clients that keep the most requests in
    /// flight first (docs/spam.md).
    pub busy_inflight_per_ip: usize,
    /// Most recipient policies stored.
    pub max_policies: usize,
    /// A client IP refused for its own conduct gets its 429 after this many
    /// milliseconds (at most its Retry-After); 0: at once (tarpit.rs).
    pub tarpit_ms: u32,
    /// Most refusals held per client IP, and in all; beyond, answered at once.
    pub tarpit_per_ip: usize,
    pub tarpit_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_content_bytes: 64 * 1024,
            max_body_bytes: 1024 * 1024,
            max_batch: 100,
            max_ttl_secs: 30 * 24 * 3600,
            max_clock_skew_secs: 300,
            proof_window_secs: 120,
            max_page: 500,
            write_queue: 10_000,
            max_concurrent_verifications: std::thread::available_parallelism()
                .map(|n| n.get() * 4)
                .unwrap_or(8),
            max_subscriptions: 10_000,
            ip_requests_per_min: 6_000,
            ip_requests_burst: 1_000,
            ip_failures_per_min: 600,
            ip_failures_burst: 100,
            limit_loopback: false,
            sender_per_min: 3_000,
            sender_burst: 5_000,
            recipient_per_min: 12_000,
            recipient_burst: 20_000,
            pair_per_min: 1_200,
            pair_burst: 3_000,
            inbox_quota: 100_000,
            min_pow_bits: 0,
            rate_limit_entries: 100_000,
            max_inflight_submissions: 1_024,
            max_inflight_per_ip: 64,
            busy_queued_checks: std::thread::available_parallelism()
                .map(|n| n.get() * 2)
                .unwrap_or(4),
            busy_inflight_per_ip: 1,
            max_policies: 1_000_000,
            tarpit_ms: 1_000,
            tarpit_per_ip: 64,
            tarpit_max: 4_096,
        }
    }
}

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// FIO API base URLs; empty in dev mode.
    pub fio_api: Vec<String>,
    /// Embed a dev chain (served under this node's own `/v1/chain` and `/v1/dev`).
    pub dev: bool,
    pub limits: Limits,
    /// Chain cache lifetimes, seconds (see docs/chain.md).
    pub chain_positive_ttl_secs: u64,
    pub chain_negative_ttl_secs: u64,
    /// How often expired messages are purged, seconds.
    pub purge_interval_secs: u64,
    /// Peers, push, repair, home-node mode (docs/replication.md).
    pub replication: crate::replication::ReplicationConfig,
    /// Message store engine (docs/storage.md); a data dir keeps the one it was made with.
    pub store: crate::storage::Backend,
    /// Reverse proxies whose `X-Forwarded-For` names the client the per-IP
    /// limits count (docs/spam.md). Not published.
    pub trusted_proxies: crate::client_ip::TrustedProxies,
}

/// The TOML file's shape: every key optional; flags and environment win.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub fio_api: Option<Vec<String>>,
    pub dev: Option<bool>,
    pub limits: Option<Limits>,
    pub chain_positive_ttl_secs: Option<u64>,
    pub chain_negative_ttl_secs: Option<u64>,
    pub purge_interval_secs: Option<u64>,
    /// `redb` (default) or `sqlite`.
    pub store: Option<String>,
    /// Peers (used by replication; accepted here so one file serves both).
    pub peer: Option<Vec<String>>,
    /// This node's public base URL (home-node mode; docs/replication.md).
    pub public_url: Option<String>,
    /// Keep only messages for addresses naming this node as home.
    pub serve_only_home: Option<bool>,
    /// Interval of the recent-window repair pass, milliseconds.
    pub sync_interval_ms: Option<u64>,
    /// Reverse proxies (addresses or networks) trusted for `X-Forwarded-For`.
    pub trusted_proxies: Option<Vec<String>>,
}

impl FileConfig {
    pub fn load(path: &std::path::Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("bad config {}: {e}", path.display()))
    }
}

impl NodeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.dev && self.fio_api.is_empty() {
            return Err(
                "give at least one --fio-api URL, or --dev for an embedded dev chain".into(),
            );
        }
        let l = &self.limits;
        if l.max_batch == 0
            || l.max_page == 0
            || l.write_queue == 0
            || l.max_concurrent_verifications == 0
        {
            return Err("limits must be positive".into());
        }
        if l.rate_limit_entries == 0
            || l.max_inflight_submissions == 0
            || l.max_inflight_per_ip == 0
        {
            return Err("rate_limit_entries and max_inflight_* must be positive".into());
        }
        if l.write_queue < l.max_batch {
            // An array is queued whole for the writer.
            return Err("write_queue must be at least max_batch".into());
        }
        if l.tarpit_ms > 60_000 {
            return Err("tarpit_ms must be at most 60000".into());
        }
        if l.min_pow_bits > 64 {
            return Err("min_pow_bits must be at most 64".into());
        }
        if l.max_body_bytes < 1024 {
            return Err("max_body_bytes must be at least 1024".into());
        }
        Ok(())
    }
}
