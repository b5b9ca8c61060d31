//! Spam resistance (docs/spam.md): bounded token-bucket maps per client IP,
//! per sender address, per recipient and per (sender, recipient) pair; a
//! per-IP penalty bucket for expensive failures; in-flight limits; the
//! per-recipient inbox quota; and the admission hooks that apply them
//! together with the recipient's policy (`policy.rs`) and proof of work.
//!
//! Order (cheapest first) and who pays:
//! - before the body is read (`ip_gate`): the IP's penalty bucket (peek), the
//!   IP's request bucket (charged), the global and per-IP in-flight limits;
//! - right after parsing (`precheck`): recipient policy (block list, contacts
//!   only, largest message), proof of work, inbox quota, and a *peek* at the
//!   sender, recipient and pair buckets; nothing is charged yet;
//! - after the signature verifies *and* the chain says the key owns the
//!   sender address (`charge`): the three buckets are charged. Charging only
//!   then means a forger (who can claim any sender address but cannot sign
//!   for its key) can never spend someone else's budget;
//! - a failed signature or ownership check charges the IP's penalty bucket
//!   (`note_failure`), so a flood of forgeries or unregistered names from one
//!   address is cut off before parsing after a small burst.

use crate::error::ApiError;
use crate::state::NodeState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fio_l2_protocol::SignedMessage;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::admission::Source;
use crate::config::Limits;

const SHARDS: usize = 16;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A token bucket per key, in a sharded map of bounded size. A missing key
/// is a full bucket, so `peek` never inserts; only `take` does. When a shard
/// is full, idle buckets (refilled to the brim: they hold no information) are
/// dropped first; if none are idle, arbitrary entries are (which gives those
/// keys a fresh budget: size the cap above the active population).
pub struct BucketMap<K> {
    shards: Vec<Mutex<HashMap<K, Bucket>>>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
    /// Tokens per second.
    rate: f64,
    burst: f64,
    pub evictions: AtomicU64,
}

impl<K: Hash + Eq + Clone> BucketMap<K> {
    /// `per_min` tokens a minute, up to `burst`; `burst == 0` disables the limit.
    pub fn new(per_min: u32, burst: u32, max_entries: usize) -> Self {
        BucketMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            per_shard: max_entries.div_ceil(SHARDS).max(1),
            rate: f64::from(per_min) / 60.0,
            burst: f64::from(burst),
            evictions: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        self.burst > 0.0
    }

    fn shard(&self, k: &K) -> &Mutex<HashMap<K, Bucket>> {
        &self.shards[(self.hasher.hash_one(k) as usize) % SHARDS]
    }

    fn level(&self, b: &Bucket, now: Instant) -> f64 {
        (b.tokens + now.duration_since(b.last).as_secs_f64() * self.rate).min(self.burst)
    }

    /// Seconds until `n` tokens are there (at least 1).
    fn wait_secs(&self, have: f64, n: f64) -> u64 {
        if self.rate <= 0.0 {
            return 3600;
        }
        (((n - have) / self.rate).ceil() as u64).clamp(1, 3600)
    }

    /// Would `n` tokens be available? Never inserts. Err(seconds to wait).
    pub fn peek(&self, k: &K, n: f64) -> Result<(), u64> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let shard = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        let have = shard.get(k).map_or(self.burst, |b| self.level(b, now));
        if have >= n {
            Ok(())
        } else {
            Err(self.wait_secs(have, n))
        }
    }

    /// Takes `n` tokens, or none. Err(seconds to wait).
    pub fn take(&self, k: &K, n: f64) -> Result<(), u64> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let mut shard = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = shard.get_mut(k) {
            let have = self.level(b, now);
            if have < n {
                return Err(self.wait_secs(have, n));
            }
            *b = Bucket {
                tokens: have - n,
                last: now,
            };
            return Ok(());
        }
        if self.burst < n {
            return Err(self.wait_secs(self.burst, n));
        }
        if shard.len() >= self.per_shard {
            self.make_room(&mut shard, now);
        }
        shard.insert(
            k.clone(),
            Bucket {
                tokens: self.burst - n,
                last: now,
            },
        );
        Ok(())
    }

    /// Takes up to `n` tokens, never failing (penalties): the level may reach 0.
    pub fn drain(&self, k: &K, n: f64) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let mut shard = self.shard(k).lock().unwrap_or_else(|p| p.into_inner());
        if !shard.contains_key(k) && shard.len() >= self.per_shard {
            self.make_room(&mut shard, now);
        }
        let level = shard.get(k).map_or(self.burst, |b| self.level(b, now));
        shard.insert(
            k.clone(),
            Bucket {
                tokens: (level - n).max(0.0),
                last: now,
            },
        );
    }

    fn make_room(&self, shard: &mut HashMap<K, Bucket>, now: Instant) {
        let before = shard.len();
        shard.retain(|_, b| self.level(b, now) < self.burst);
        if shard.len() >= self.per_shard {
            // No idle bucket to drop: drop an eighth, in hash order (arbitrary).
            let excess = shard.len() + 1 - self.per_shard * 7 / 8;
            let victims: Vec<K> = shard.keys().take(excess).cloned().collect();
            for v in victims {
                shard.remove(&v);
            }
        }
        self.evictions
            .fetch_add((before - shard.len()) as u64, Ordering::Relaxed);
    }

    /// Entries held (at most the configured cap, rounded up to the shard count).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn cap(&self) -> usize {
        self.per_shard * SHARDS
    }
}

/// The key an IP is limited by: IPv4 addresses alone, IPv6 by /64 (one
/// subscriber usually holds a whole /64).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Cached per-recipient message counts for the inbox quota: recounted from
/// the store at most every `REFRESH` seconds, incremented on each charge in
/// between. Bounded; a dropped entry is only recounted.
struct InboxCounts {
    map: Mutex<HashMap<String, (u64, Instant)>>,
    cap: usize,
}

const INBOX_REFRESH_SECS: u64 = 30;

/// Refusal counters by code, for /v1/info and the attack benchmark.
#[derive(Default)]
pub struct SpamCounters {
    pub by_code: Mutex<HashMap<&'static str, u64>>,
}

/// Everything spam resistance keeps in memory.
pub struct SpamState {
    pub ip_requests: BucketMap<IpAddr>,
    pub ip_failures: BucketMap<IpAddr>,
    pub sender: BucketMap<String>,
    pub recipient: BucketMap<String>,
    pub pair: BucketMap<(String, String)>,
    inbox: InboxCounts,
    inflight: Arc<tokio::sync::Semaphore>,
    inflight_ip: IpCounts,
    pub policies: Arc<crate::policy::PolicyStore>,
    pub counters: SpamCounters,
    pub tarpit: crate::tarpit::Tarpit,
}

impl SpamState {
    pub fn new(l: &Limits, data_dir: &std::path::Path) -> Result<SpamState, String> {
        let n = l.rate_limit_entries;
        Ok(SpamState {
            ip_requests: BucketMap::new(l.ip_requests_per_min, l.ip_requests_burst, n),
            ip_failures: BucketMap::new(l.ip_failures_per_min, l.ip_failures_burst, n),
            sender: BucketMap::new(l.sender_per_min, l.sender_burst, n),
            recipient: BucketMap::new(l.recipient_per_min, l.recipient_burst, n),
            pair: BucketMap::new(l.pair_per_min, l.pair_burst, n),
            inbox: InboxCounts {
                map: Mutex::new(HashMap::new()),
                cap: n.max(16),
            },
            inflight: Arc::new(tokio::sync::Semaphore::new(
                l.max_inflight_submissions.max(1),
            )),
            inflight_ip: IpCounts::default(),
            policies: Arc::new(crate::policy::PolicyStore::open(
                &data_dir.join("policies"),
                l.max_policies,
            )?),
            counters: SpamCounters::default(),
            tarpit: crate::tarpit::Tarpit::new(l.tarpit_ms, l.tarpit_per_ip, l.tarpit_max),
        })
    }

    pub fn count_refusal(&self, code: &str) {
        const KNOWN: &[&str] = &[
            "ip_rate_limited",
            "ip_penalized",
            "ip_concurrency_limited",
            "sender_rate_limited",
            "recipient_rate_limited",
            "pair_rate_limited",
            "inbox_full",
            "blocked_by_recipient",
            "recipient_contacts_only",
            "too_large_for_recipient",
            "insufficient_pow",
            "saturated",
            "signature_mismatch",
            "high_s_signature",
            "bad_signature",
            "sender_not_owner",
            "sender_not_registered",
            "sender_domain_expired",
            "too_large",
            "content_too_large",
            "chain_unavailable",
        ];
        let key = KNOWN
            .iter()
            .find(|k| **k == code)
            .copied()
            .unwrap_or("other");
        let mut m = self
            .counters
            .by_code
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(key).or_insert(0) += 1;
    }

    /// `stats.spam` in /v1/info: entries per map (each bounded by its cap),
    /// evictions, refusals by code.
    pub fn stats_value(&self) -> Value {
        let refusals = self
            .counters
            .by_code
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let map = |m_len: usize, cap: usize, ev: &AtomicU64| json!({"entries": m_len, "cap": cap, "evictions": ev.load(Ordering::Relaxed)});
        json!({
            "buckets": {
                "ip_requests": map(self.ip_requests.len(), self.ip_requests.cap(), &self.ip_requests.evictions),
                "ip_failures": map(self.ip_failures.len(), self.ip_failures.cap(), &self.ip_failures.evictions),
                "sender": map(self.sender.len(), self.sender.cap(), &self.sender.evictions),
                "recipient": map(self.recipient.len(), self.recipient.cap(), &self.recipient.evictions),
                "pair": map(self.pair.len(), self.pair.cap(), &self.pair.evictions),
            },
            "inbox_counts": self.inbox.map.lock().unwrap_or_else(|p| p.into_inner()).len(),
            "inflight_ips": self.inflight_ip.len(),
            "policies": self.policies.len(),
            "refusals": refusals,
            "tarpit": self.tarpit.stats_value(),
        })
    }
}

/// The limits published under `limits` in /v1/info.
pub fn info_limits(l: &Limits) -> Value {
    json!({
        "ip_requests_per_min": l.ip_requests_per_min,
        "ip_requests_burst": l.ip_requests_burst,
        "ip_failures_per_min": l.ip_failures_per_min,
        "ip_failures_burst": l.ip_failures_burst,
        "limit_loopback": l.limit_loopback,
        "sender_per_min": l.sender_per_min,
        "sender_burst": l.sender_burst,
        "recipient_per_min": l.recipient_per_min,
        "recipient_burst": l.recipient_burst,
        "pair_per_min": l.pair_per_min,
        "pair_burst": l.pair_burst,
        "inbox_quota": l.inbox_quota,
        "min_pow_bits": l.min_pow_bits,
        "rate_limit_entries": l.rate_limit_entries,
        "max_inflight_submissions": l.max_inflight_submissions,
        "max_inflight_per_ip": l.max_inflight_per_ip,
        "busy_queued_checks": l.busy_queued_checks,
        "busy_inflight_per_ip": l.busy_inflight_per_ip,
        "max_policies": l.max_policies,
        "tarpit_ms": l.tarpit_ms,
        "tarpit_per_ip": l.tarpit_per_ip,
        "tarpit_max": l.tarpit_max,
    })
}

pub fn too_many(code: &str, msg: impl Into<String>, secs: u64) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, msg).retry_after(secs)
}

/// The IP a request is limited by, or None when it is exempt (loopback,
/// unless `limit_loopback`).
pub fn limited_ip(l: &Limits, ip: IpAddr) -> Option<IpAddr> {
    let ip = ip_key(ip);
    (l.limit_loopback || !ip.is_loopback()).then_some(ip)
}

/// How many of something each client IP holds at once (submissions in
/// flight, refusals held by the tarpit), each under a cap. An IP holding
/// nothing has no entry, so the map is as large as the IPs holding something.
#[derive(Default)]
pub struct IpCounts(Mutex<HashMap<IpAddr, usize>>);

impl IpCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One more for `ip`, unless it holds `cap` already.
    pub fn try_add(&self, ip: IpAddr, cap: usize) -> bool {
        let mut m = self.lock();
        let n = m.get(&ip).copied().unwrap_or(0);
        if n >= cap {
            return false;
        }
        m.insert(ip, n + 1);
        true
    }

    /// One fewer for `ip` (after a successful `try_add`).
    pub fn remove(&self, ip: IpAddr) {
        let mut m = self.lock();
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    /// IPs holding something now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Releases the in-flight slots of one request when dropped.
struct InflightGuard<'a> {
    st: &'a SpamState,
    ip: Option<IpAddr>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            self.st.inflight_ip.remove(ip);
        }
    }
}

/// The client address of a request that passed [`ip_gate`] (behind a
/// trusted proxy, the one its `X-Forwarded-For` names).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

/// Middleware on submission routes, before the body is read: the IP's penalty
/// bucket, its request bucket, then the in-flight limits (global: 503
/// `saturated`; per IP: 429 `ip_concurrency_limited`).
pub async fn ip_gate(State(st): State<Arc<NodeState>>, mut req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| st.config.trusted_proxies.client_ip(c.0.ip(), req.headers()));
    if let Some(ip) = ip {
        // The handler charges the same client (`ClientIp`), resolved once.
        req.extensions_mut().insert(ClientIp(ip));
    }
    let limited = ip.and_then(|ip| limited_ip(&st.config.limits, ip));
    match gate_checks(&st, limited) {
        Ok(guard) => {
            let r = next.run(req).await;
            drop(guard);
            r
        }
        Err(e) => {
            st.spam.count_refusal(&e.code);
            crate::state::Counters::bump(&st.counters.refused);
            // Every refusal here but `saturated` is the IP's own doing.
            let own = e.status == StatusCode::TOO_MANY_REQUESTS;
            if let Some(ip) = limited {
                if let Some(slot) = own
                    .then(|| st.spam.tarpit.hold(ip, e.retry_after.unwrap_or(1)))
                    .flatten()
                {
                    slot.wait().await;
                }
            }
            e.into_response()
        }
    }
}

/// `ip`: the client as the limits see it (`limited_ip`), None if exempt.
fn gate_checks(st: &NodeState, ip: Option<IpAddr>) -> Result<InflightGuard<'_>, ApiError> {
    let l = &st.config.limits;
    let sp = &st.spam;
    if let Some(ip) = ip {
        sp.ip_failures.peek(&ip, 1.0).map_err(|s| {
            too_many(
                "ip_penalized",
                "too many failed requests (bad signatures, unregistered senders, oversize bodies) from this address",
                s,
            )
        })?;
        sp.ip_requests
            .take(&ip, 1.0)
            .map_err(|s| too_many("ip_rate_limited", "too many requests from this address", s))?;
    }
    let permit = sp.inflight.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "saturated",
            "the node has too many submissions in flight; retry later",
        )
        .retry_after(1)
    })?;
    if let Some(ip) = ip {
        let cap = inflight_cap_per_ip(l, st.cpu.queued());
        if !sp.inflight_ip.try_add(ip, cap) {
            let msg = if cap < l.max_inflight_per_ip {
                format!("the node is busy: at most {cap} submission(s) in flight per address until it catches up")
            } else {
                "too many concurrent submissions from this address".to_string()
            };
            return Err(too_many("ip_concurrency_limited", msg, 1));
        }
    }
    Ok(InflightGuard {
        st: sp,
        ip,
        _permit: permit,
    })
}

/// Most submissions one IP may have in flight now, with `queued` chunks
/// waiting for a verification thread. While the node is busy, the clients
/// with the most requests in flight are shed first: one at a time each
/// (an array is one) keeps every IP in, and a closed-loop flood from a few
/// IPs loses most of its concurrency (its excess held by the tarpit).
pub fn inflight_cap_per_ip(l: &Limits, queued: usize) -> usize {
    if l.busy_inflight_per_ip > 0 && queued >= l.busy_queued_checks {
        l.busy_inflight_per_ip.min(l.max_inflight_per_ip)
    } else {
        l.max_inflight_per_ip
    }
}

/// An array of `n` envelopes costs `n` requests: the gate charged one.
pub fn charge_batch(st: &NodeState, source: &Source, n: usize) -> Result<(), ApiError> {
    if let Source::Client(ip) = source {
        if let Some(ip) = limited_ip(&st.config.limits, *ip) {
            if n > 1 {
                st.spam.ip_requests.take(&ip, (n - 1) as f64).map_err(|s| {
                    too_many(
                        "ip_rate_limited",
                        "too many requests (envelopes) from this address",
                        s,
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// What `precheck` decided, for `charge`.
pub struct Ticket {
    /// The recipient allowed this sender: no recipient bucket, no PoW.
    allowed: bool,
}

/// Decoded length of standard padded base64 text (already validated).
pub(crate) fn decoded_len(b64: &str) -> usize {
    let pad = b64.bytes().rev().take_while(|b| *b == b'=').count();
    (b64.len() / 4 * 3).saturating_sub(pad)
}

fn rate_limited(which: &str, what: &str, secs: u64) -> ApiError {
    too_many(
        which,
        format!("{what} is over its rate limit; retry in {secs} s"),
        secs,
    )
}

/// After parsing, before any signature or chain work: the recipient's policy,
/// proof of work, and a peek at the buckets (nothing charged).
pub fn precheck(st: &NodeState, msg: &SignedMessage, source: &Source) -> Result<Ticket, ApiError> {
    let m = msg.message();
    let l = &st.config.limits;
    let policy = st.spam.policies.get(&m.recipient);
    let decision = policy
        .as_ref()
        .map_or(crate::policy::Decision::Neutral, |p| p.decide(&m.sender));
    let allowed = decision == crate::policy::Decision::Allowed;
    if let Some(p) = &policy {
        let forbidden = |code: &str, text: String| ApiError::new(StatusCode::FORBIDDEN, code, text);
        match decision {
            crate::policy::Decision::Blocked => {
                return Err(forbidden(
                    "blocked_by_recipient",
                    format!("{} does not accept messages from {}", m.recipient, m.sender),
                ))
            }
            crate::policy::Decision::Neutral if p.doc.contacts_only => {
                return Err(forbidden(
                    "recipient_contacts_only",
                    format!("{} accepts messages only from its allow list", m.recipient),
                ))
            }
            _ => {}
        }
        let max = p.doc.max_content_bytes;
        if max > 0 && decoded_len(&m.content) > max as usize {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large_for_recipient",
                format!(
                    "{} accepts at most {max} bytes of content cipher text",
                    m.recipient
                ),
            ));
        }
    }
    if !allowed {
        let need = policy
            .as_ref()
            .map_or(0, |p| p.doc.min_pow_bits)
            .max(l.min_pow_bits);
        let have = msg.pow_bits();
        if have < need {
            let mut e = ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_pow",
                format!(
                    "this message needs {need} leading zero bits of sha256(packed) (it has {have}); vary nonce"
                ),
            );
            e.field = Some("nonce".into());
            return Err(e);
        }
    }
    if matches!(source, Source::Client(_)) {
        let sp = &st.spam;
        sp.sender
            .peek(&m.sender, 1.0)
            .map_err(|s| rate_limited("sender_rate_limited", &m.sender, s))?;
        sp.pair
            .peek(&(m.sender.clone(), m.recipient.clone()), 1.0)
            .map_err(|s| rate_limited("pair_rate_limited", "this sender-recipient pair", s))?;
        if !allowed {
            sp.recipient
                .peek(&m.recipient, 1.0)
                .map_err(|s| rate_limited("recipient_rate_limited", &m.recipient, s))?;
        }
    }
    Ok(Ticket { allowed })
}

/// After the signature verified and the chain confirmed the sender: the
/// inbox quota (a storage read on a cache miss, so not spent on forgeries or
/// over-limit senders), then charge the buckets and count the message. Only a
/// race past `precheck`'s peek can fail a bucket here, after an earlier one
/// was charged.
pub async fn charge(
    st: &NodeState,
    msg: &SignedMessage,
    source: &Source,
    t: &Ticket,
) -> Result<(), ApiError> {
    let m = msg.message();
    let l = &st.config.limits;
    if l.inbox_quota > 0 {
        let n = st.spam.inbox_count(st, &m.recipient).await?;
        if n >= l.inbox_quota {
            return Err(too_many(
                "inbox_full",
                format!(
                    "the inbox of {} holds its quota of {} messages",
                    m.recipient, l.inbox_quota
                ),
                60,
            ));
        }
    }
    if matches!(source, Source::Client(_)) {
        let sp = &st.spam;
        let pair = (m.sender.clone(), m.recipient.clone());
        if !t.allowed {
            sp.recipient
                .take(&m.recipient, 1.0)
                .map_err(|s| rate_limited("recipient_rate_limited", &m.recipient, s))?;
        }
        if let Err(s) = sp.pair.take(&pair, 1.0) {
            return Err(rate_limited(
                "pair_rate_limited",
                "this sender-recipient pair",
                s,
            ));
        }
        if let Err(s) = sp.sender.take(&m.sender, 1.0) {
            return Err(rate_limited("sender_rate_limited", &m.sender, s));
        }
    }
    st.spam.inbox_add(&m.recipient);
    Ok(())
}

/// An expensive failure (bad signature, sender not owner/registered, an
/// oversize body) from `source`: drains `weight` from the IP's penalty bucket.
pub fn note_failure(st: &NodeState, source: &Source, code: &str, weight: f64) {
    const PENALIZED: &[&str] = &[
        "signature_mismatch",
        "high_s_signature",
        "sender_not_owner",
        "sender_not_registered",
        "sender_domain_expired",
        // Oversize bodies: the node read them to find out.
        "too_large",
    ];
    if !PENALIZED.contains(&code) {
        return;
    }
    if let Source::Client(ip) = source {
        if let Some(ip) = limited_ip(&st.config.limits, *ip) {
            st.spam.ip_failures.drain(&ip, weight);
        }
    }
}

impl SpamState {
    async fn inbox_count(&self, st: &NodeState, recipient: &str) -> Result<u64, ApiError> {
        let now = Instant::now();
        if let Some((n, at)) = self
            .inbox
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(recipient)
        {
            if now.duration_since(*at).as_secs() < INBOX_REFRESH_SECS {
                return Ok(*n);
            }
        }
        let store = st.store.clone();
        let r = recipient.to_string();
        let n = tokio::task::spawn_blocking(move || store.inbox_count(&r))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?
            .map_err(|e| {
                tracing::error!("storage failure: {e}");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the node could not reach its storage",
                )
                .retry_after(5)
            })?;
        let mut m = self.inbox.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= self.inbox.cap && !m.contains_key(recipient) {
            m.retain(|_, (_, at)| now.duration_since(*at).as_secs() < INBOX_REFRESH_SECS);
            if m.len() >= self.inbox.cap {
                m.clear();
            }
        }
        m.insert(recipient.to_string(), (n, now));
        Ok(n)
    }

    fn inbox_add(&self, recipient: &str) {
        let mut m = self.inbox.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, _)) = m.get_mut(recipient) {
            *n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_after_burst_and_stays_bounded() {
        let m: BucketMap<u32> = BucketMap::new(60, 3, 160);
        for _ in 0..3 {
            assert!(m.peek(&1, 1.0).is_ok());
            m.take(&1, 1.0).unwrap();
        }
        assert!(m.peek(&1, 1.0).is_err());
        assert!(m.take(&1, 1.0).is_err());
        for k in 0..100_000u32 {
            let _ = m.take(&k, 1.0);
        }
        assert!(m.len() <= m.cap(), "{} > {}", m.len(), m.cap());
        assert!(m.evictions.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn disabled_bucket_never_refuses() {
        let m: BucketMap<u32> = BucketMap::new(0, 0, 10);
        for _ in 0..100 {
            m.take(&1, 1.0).unwrap();
        }
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn busy_node_allows_fewer_submissions_in_flight_per_ip() {
        let l = Limits {
            max_inflight_per_ip: 64,
            busy_queued_checks: 4,
            busy_inflight_per_ip: 1,
            ..Limits::default()
        };
        assert_eq!(inflight_cap_per_ip(&l, 0), 64);
        assert_eq!(inflight_cap_per_ip(&l, 3), 64);
        assert_eq!(inflight_cap_per_ip(&l, 4), 1);
        assert_eq!(inflight_cap_per_ip(&l, 1000), 1);
        // 0: no busy limit; never above the usual cap.
        let off = Limits {
            busy_inflight_per_ip: 0,
            ..l.clone()
        };
        assert_eq!(inflight_cap_per_ip(&off, 1000), 64);
        let high = Limits {
            busy_inflight_per_ip: 100,
            ..l
        };
        assert_eq!(inflight_cap_per_ip(&high, 1000), 64);
    }

    #[test]
    fn ipv6_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
    }
}
