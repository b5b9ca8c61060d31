//! HTTP client of the FIO API with failover, retries, limits, caches and
//! single flight (docs/chain.md).
//!
//! Every answer is classified as either *definite* (a 200 of the expected
//! shape, a 400 `invalid_input`, or a 404 with a message the chain is known to
//! give for that endpoint) or an *attempt failure* (anything else: transport
//! error, timeout, 5xx, oversized or malformed body). Attempt failures move on
//! to the next endpoint, then to another round after a backoff; when every
//! attempt failed the caller gets `ChainError::Unavailable`, never a "no".

use crate::cache::{Source, TtlCache};
use crate::error::ChainError;
use crate::name::json_u64;
use crate::time::{now_unix, parse_chain_time};
use crate::wire::*;
use crate::{BoxFuture, Chain, ChainMetrics, Ownership, DOMAIN_GRACE_SECS};
use fio_l2_protocol::address::{domain_of, name_hash_bound, validate_address, validate_domain};
use fio_l2_protocol::PublicKey;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{OnceCell, Semaphore};

/// Client settings. `ClientConfig::new(endpoints)` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// FIO API base URLs (e.g. `https://fio.example.org`), tried in order,
    /// starting from the last one that answered.
    pub endpoints: Vec<String>,
    /// Deadline for one attempt: connect, send, and read the whole body. Default 5 s.
    pub request_timeout: Duration,
    /// Rounds over all endpoints after the first one. Default 2 (so 3 rounds).
    pub retries: u32,
    /// First backoff between rounds; doubles each round up to `backoff_max`,
    /// with jitter (50-100 %). Defaults 200 ms and 2 s.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Largest accepted response body. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most HTTP requests in flight at once, over all callers. Default 16.
    pub max_concurrent_requests: usize,
    /// Lifetime of positive answers (owned, key found, domain expiration). Default 60 s.
    pub positive_ttl: Duration,
    /// Lifetime of negative answers (not owned, domain expired, not found). Default 30 s.
    pub negative_ttl: Duration,
    /// Entries per cache (there are four: owners, domains, encrypt keys,
    /// public addresses). 0 disables caching. Default 10 000.
    pub cache_capacity: usize,
    /// How long after its domain's expiration an address stays usable. Default 30 days.
    pub grace_period: Duration,
}

impl ClientConfig {
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(5),
            retries: 2,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            max_body_bytes: 1 << 20,
            max_concurrent_requests: 16,
            positive_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(30),
            cache_capacity: 10_000,
            grace_period: Duration::from_secs(DOMAIN_GRACE_SECS),
        }
    }
}

/// A definite answer of one endpoint.
enum Answer<T> {
    Ok(T),
    /// 400 `invalid_input`.
    BadRequest(ErrorBody),
    /// 404 with one of the messages the caller declared definite.
    NotFound,
}

/// What we keep about (key, address): facts, not the verdict, so that the
/// grace rule is applied at read time even on a cache hit.
#[derive(Clone, Debug, PartialEq, Eq)]
enum OwnerFacts {
    NotOwned,
    Owned { domain_expiration: u64 },
}

/// A definite answer that may be negative (cached with the negative TTL).
type Definite<T> = Result<T, ChainError>;

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    failed_requests: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    coalesced: AtomicU64,
}

/// The HTTP implementation of [`Chain`]. Cheap to share behind an `Arc`.
pub struct HttpChain {
    cfg: ClientConfig,
    endpoints: Vec<String>,
    http: reqwest::Client,
    preferred: AtomicUsize,
    permits: Semaphore,
    chain_id: OnceCell<[u8; 32]>,
    owners: TtlCache<(PublicKey, String), OwnerFacts, ChainError>,
    domains: TtlCache<String, u64, ChainError>,
    encrypt_keys: TtlCache<String, Definite<PublicKey>, ChainError>,
    pub_addresses: TtlCache<(String, String, String), Definite<String>, ChainError>,
    counters: Counters,
}

fn unavailable(m: impl Into<String>) -> ChainError {
    ChainError::Unavailable(m.into())
}

impl HttpChain {
    pub fn new(cfg: ClientConfig) -> Result<Self, ChainError> {
        let endpoints: Vec<String> = cfg
            .endpoints
            .iter()
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .collect();
        for e in &endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ChainError::InvalidInput(format!(
                    "FIO API endpoint must be an http(s) URL: {e}"
                )));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(cfg.request_timeout)
            // A redirect is not an answer; bounded work per attempt.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fio-l2-chain/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ChainError::InvalidInput(format!("cannot build HTTP client: {e}")))?;
        Ok(HttpChain {
            permits: Semaphore::new(cfg.max_concurrent_requests.max(1)),
            owners: TtlCache::new(cfg.cache_capacity),
            domains: TtlCache::new(cfg.cache_capacity),
            encrypt_keys: TtlCache::new(cfg.cache_capacity),
            pub_addresses: TtlCache::new(cfg.cache_capacity),
            endpoints,
            http,
            preferred: AtomicUsize::new(0),
            chain_id: OnceCell::new(),
            counters: Counters::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    pub fn metrics(&self) -> ChainMetrics {
        let c = &self.counters;
        ChainMetrics {
            requests: c.requests.load(Ordering::Relaxed),
            failed_requests: c.failed_requests.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
        }
    }

    fn count(&self, source: Source) {
        let c = &self.counters;
        match source {
            Source::Hit => c.cache_hits.fetch_add(1, Ordering::Relaxed),
            Source::Loaded => c.cache_misses.fetch_add(1, Ordering::Relaxed),
            Source::Joined => {
                c.coalesced.fetch_add(1, Ordering::Relaxed);
                c.cache_misses.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    fn ttl_of<T>(&self, d: &Definite<T>) -> Option<Duration> {
        Some(match d {
            Ok(_) => self.cfg.positive_ttl,
            Err(_) => self.cfg.negative_ttl,
        })
    }

    // ---------------------------------------------------------------- transport

    /// POST `/v1/chain/{name}` with failover and retries. `definite_404` lists
    /// the 404 messages this endpoint gives as a real answer; any other 404
    /// (a proxy's, an unknown endpoint's) counts as an attempt failure.
    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        name: &str,
        body: &B,
        definite_404: &[&str],
    ) -> Result<Answer<T>, ChainError> {
        if self.endpoints.is_empty() {
            return Err(unavailable("no FIO API endpoint configured"));
        }
        let body = serde_json::to_vec(body)
            .map_err(|e| ChainError::InvalidInput(format!("cannot encode request: {e}")))?;
        let n = self.endpoints.len();
        let start = self.preferred.load(Ordering::Relaxed) % n;
        let mut last_error = String::new();
        for round in 0..=self.cfg.retries {
            if round > 0 {
                tokio::time::sleep(self.backoff(round)).await;
            }
            for i in 0..n {
                let idx = (start + i) % n;
                let url = format!("{}/v1/chain/{name}", self.endpoints[idx]);
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                match self.attempt::<T>(&url, &body, definite_404).await {
                    Ok(answer) => {
                        self.preferred.store(idx, Ordering::Relaxed);
                        return Ok(answer);
                    }
                    Err(e) => {
                        self.counters
                            .failed_requests
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(url = %url, error = %e, "FIO API attempt failed");
                        last_error = format!("{url}: {e}");
                    }
                }
            }
        }
        Err(unavailable(format!(
            "no FIO API endpoint answered {name} ({} attempts); last: {last_error}",
            (u64::from(self.cfg.retries) + 1) * n as u64
        )))
    }

    fn backoff(&self, round: u32) -> Duration {
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << (round - 1).min(16));
        let capped = exp.min(self.cfg.backoff_max);
        // Jitter so that many nodes do not retry a recovering endpoint in step.
        let factor: f64 = rand::thread_rng().gen_range(0.5..=1.0);
        capped.mul_f64(factor)
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &[u8],
        definite_404: &[&str],
    ) -> Result<Answer<T>, String> {
        // Wait for a permit outside the deadline: queueing is not the endpoint's fault.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| "client shut down".to_string())?;
        let fut = async {
            let resp = self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec())
                .send()
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let status = resp.status().as_u16();
            let bytes = read_limited(resp, self.cfg.max_body_bytes).await?;
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.cfg.request_timeout, fut)
            .await
            .map_err(|_| format!("timed out after {:?}", self.cfg.request_timeout))??;
        match status {
            200 => serde_json::from_slice::<T>(&bytes)
                .map(Answer::Ok)
                .map_err(|e| format!("malformed 200 answer: {e}")),
            400 => {
                let eb: ErrorBody = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("malformed 400 answer: {e}"))?;
                if eb.kind.as_deref() == Some("invalid_input") && !eb.fields.is_empty() {
                    Ok(Answer::BadRequest(eb))
                } else {
                    Err(format!("unexpected 400 answer: {}", preview(&eb.message)))
                }
            }
            404 => {
                let eb: ErrorBody = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("malformed 404 answer: {e}"))?;
                if definite_404.contains(&eb.message.as_str()) {
                    Ok(Answer::NotFound)
                } else {
                    Err(format!("unexpected 404 answer: {}", preview(&eb.message)))
                }
            }
            s => Err(format!("HTTP status {s}")),
        }
    }

    // ---------------------------------------------------------------- raw endpoints

    /// `get_info` chain id, fetched once.
    pub async fn chain_id(&self) -> Result<[u8; 32], ChainError> {
        self.chain_id
            .get_or_try_init(|| async {
                match self
                    .call::<_, InfoResponse>("get_info", &serde_json::json!({}), &[])
                    .await?
                {
                    Answer::Ok(info) => {
                        let mut id = [0u8; 32];
                        hex::decode_to_slice(&info.chain_id, &mut id).map_err(|_| {
                            unavailable(format!(
                                "get_info answered a malformed chain_id: {}",
                                preview(&info.chain_id)
                            ))
                        })?;
                        Ok(id)
                    }
                    _ => Err(unavailable("get_info gave an error answer")),
                }
            })
            .await
            .copied()
    }

    /// `get_fio_names`: `None` when the key owns nothing (404 "No FIO names").
    pub async fn fio_names(&self, key: &PublicKey) -> Result<Option<FioNamesResponse>, ChainError> {
        let req = FioNamesRequest {
            fio_public_key: key.to_fio_string(),
        };
        match self.call("get_fio_names", &req, &["No FIO names"]).await? {
            Answer::Ok(names) => Ok(Some(names)),
            Answer::NotFound => Ok(None),
            Answer::BadRequest(eb) => Err(bad_request("get_fio_names", &eb)),
        }
    }

    /// `avail_check`: is a FIO Address or domain registered?
    pub async fn avail_check(&self, fio_name: &str) -> Result<bool, ChainError> {
        let req = AvailCheckRequest {
            fio_name: fio_name.to_string(),
        };
        match self
            .call::<_, AvailCheckResponse>("avail_check", &req, &[])
            .await?
        {
            Answer::Ok(r) if r.is_registered <= 1 => Ok(r.is_registered == 1),
            Answer::Ok(_) => Err(unavailable(
                "avail_check answered is_registered out of range",
            )),
            Answer::BadRequest(eb) => Err(bad_request("avail_check", &eb)),
            Answer::NotFound => Err(unavailable("avail_check: unexpected 404")),
        }
    }

    /// Domain expiration (unix seconds) from the `domains` table, looked up by
    /// its name hash. `NotFound` when no such domain.
    async fn load_domain_expiration(&self, domain: &str) -> Result<Definite<u64>, ChainError> {
        let bound = name_hash_bound(domain);
        let req = TableRowsRequest {
            json: true,
            code: "fio.address".into(),
            scope: "fio.address".into(),
            table: "domains".into(),
            lower_bound: bound.clone(),
            upper_bound: bound,
            limit: Some(10),
            key_type: "i128".into(),
            index_position: "4".into(),
            encode_type: "hex".into(),
        };
        match self
            .call::<_, TableRowsResponse>("get_table_rows", &req, &[])
            .await?
        {
            Answer::Ok(t) => {
                // Do not trust the index alone: pick the row that names the domain.
                let row = t
                    .rows
                    .iter()
                    .find(|r| r.get("name").and_then(|n| n.as_str()) == Some(domain));
                match row {
                    None => Ok(Err(ChainError::NotFound(format!("no domain {domain}")))),
                    Some(r) => r
                        .get("expiration")
                        .and_then(json_u64)
                        .map(Ok)
                        .ok_or_else(|| unavailable("domains row has a malformed expiration")),
                }
            }
            Answer::BadRequest(eb) => Err(bad_request("get_table_rows", &eb)),
            Answer::NotFound => Err(unavailable("get_table_rows: unexpected 404")),
        }
    }

    async fn domain_expiration(&self, domain: &str) -> Result<Definite<u64>, ChainError> {
        // Only positive answers are cached here: a missing domain is either a
        // race with a burn or an inconsistent endpoint, and worth asking again.
        let (r, src) = self
            .domains
            .get_or_load(
                domain.to_string(),
                || async {
                    match self.load_domain_expiration(domain).await? {
                        Ok(exp) => Ok(exp),
                        Err(e) => Err(e),
                    }
                },
                |_| Some(self.cfg.positive_ttl),
            )
            .await;
        self.count(src);
        match r {
            Ok(exp) => Ok(Ok(exp)),
            Err(ChainError::NotFound(m)) => Ok(Err(ChainError::NotFound(m))),
            Err(e) => Err(e),
        }
    }

    async fn load_owner_facts(
        &self,
        key: &PublicKey,
        address: &str,
    ) -> Result<OwnerFacts, ChainError> {
        let Some(names) = self.fio_names(key).await? else {
            return Ok(OwnerFacts::NotOwned);
        };
        if !names
            .fio_addresses
            .iter()
            .any(|a| a.fio_address.eq_ignore_ascii_case(address))
        {
            return Ok(OwnerFacts::NotOwned);
        }
        let domain = domain_of(address);
        // The address rows' `expiration` is a constant since FIP-31 (addresses
        // no longer expire); what matters is the domain's. get_fio_names carries
        // it only when this key also owns the domain; otherwise read the table.
        if let Some(d) = names
            .fio_domains
            .iter()
            .find(|d| d.fio_domain.eq_ignore_ascii_case(domain))
        {
            let exp = parse_chain_time(&d.expiration).ok_or_else(|| {
                unavailable(format!(
                    "get_fio_names answered a malformed expiration: {}",
                    preview(&d.expiration)
                ))
            })?;
            return Ok(OwnerFacts::Owned {
                domain_expiration: exp,
            });
        }
        match self.domain_expiration(domain).await? {
            Ok(exp) => Ok(OwnerFacts::Owned {
                domain_expiration: exp,
            }),
            // The key owns an address of a domain the chain does not know:
            // inconsistent (or burned in between). Not a yes.
            Err(_) => Err(unavailable(format!(
                "the chain lists {address} for the key but has no domain {domain}"
            ))),
        }
    }

    /// Ownership of `address` by `key` (see [`Chain::check_owner`]).
    pub async fn check_owner(
        &self,
        key: &PublicKey,
        address: &str,
    ) -> Result<Ownership, ChainError> {
        validate_address(address).map_err(|e| ChainError::InvalidInput(e.to_string()))?;
        let (r, src) = self
            .owners
            .get_or_load(
                (*key, address.to_string()),
                || self.load_owner_facts(key, address),
                |f| {
                    Some(match f {
                        OwnerFacts::Owned { .. } => self.cfg.positive_ttl,
                        OwnerFacts::NotOwned => self.cfg.negative_ttl,
                    })
                },
            )
            .await;
        self.count(src);
        Ok(match r? {
            OwnerFacts::NotOwned => Ownership::NotOwned,
            OwnerFacts::Owned { domain_expiration } => Ownership::from_expiration(
                domain_expiration,
                now_unix(),
                self.cfg.grace_period.as_secs(),
            ),
        })
    }

    async fn load_pub_address(
        &self,
        address: &str,
        chain_code: &str,
        token_code: &str,
    ) -> Result<Definite<String>, ChainError> {
        let req = PubAddressRequest {
            fio_address: address.to_string(),
            chain_code: chain_code.to_string(),
            token_code: token_code.to_string(),
        };
        match self
            .call::<_, PubAddressResponse>("get_pub_address", &req, &["Public address not found"])
            .await?
        {
            Answer::Ok(r) if r.public_address.is_empty() => Ok(Err(ChainError::NotFound(format!(
                "{address} has no {chain_code}/{token_code} public address"
            )))),
            Answer::Ok(r) => Ok(Ok(r.public_address)),
            Answer::NotFound => Ok(Err(ChainError::NotFound(format!(
                "{address} has no {chain_code}/{token_code} public address"
            )))),
            Answer::BadRequest(eb) => Ok(Err(address_error(address, &eb))),
        }
    }

    /// A public address mapping of `address` (cached).
    pub async fn pub_address(
        &self,
        address: &str,
        chain_code: &str,
        token_code: &str,
    ) -> Result<String, ChainError> {
        validate_address(address).map_err(|e| ChainError::InvalidInput(e.to_string()))?;
        if !code_ok(chain_code) || !(token_code == "*" || code_ok(token_code)) {
            return Err(ChainError::InvalidInput(format!(
                "invalid chain/token code: {}/{}",
                preview(chain_code),
                preview(token_code)
            )));
        }
        let key = (
            address.to_string(),
            chain_code.to_ascii_uppercase(),
            token_code.to_ascii_uppercase(),
        );
        let (r, src) = self
            .pub_addresses
            .get_or_load(
                key,
                || self.load_pub_address(address, chain_code, token_code),
                |d| self.ttl_of(d),
            )
            .await;
        self.count(src);
        r?
    }

    async fn load_encrypt_key(&self, address: &str) -> Result<Definite<PublicKey>, ChainError> {
        let req = EncryptKeyRequest {
            fio_address: address.to_string(),
        };
        // "Public address not found": neither an encrypt key nor FIO/FIO.
        // "Not Found": nodeos without FIP-39 (unknown endpoint) - fall back.
        let answer = self
            .call::<_, EncryptKeyResponse>(
                "get_encrypt_key",
                &req,
                &["Public address not found", "Not Found"],
            )
            .await?;
        let published = match answer {
            Answer::Ok(r) if !r.encrypt_public_key.is_empty() => r.encrypt_public_key,
            Answer::BadRequest(eb) => return Ok(Err(address_error(address, &eb))),
            // No encrypt key: do what the chain does, use the FIO/FIO mapping.
            Answer::Ok(_) | Answer::NotFound => {
                match self.load_pub_address(address, "FIO", "FIO").await? {
                    Ok(k) => k,
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        Ok(PublicKey::parse(&published).map_err(|_| {
            ChainError::NotFound(format!(
                "{address} publishes an encryption key that is not a valid FIO public key"
            ))
        }))
    }

    /// The encryption key of `address` (cached).
    pub async fn encrypt_key(&self, address: &str) -> Result<PublicKey, ChainError> {
        validate_address(address).map_err(|e| ChainError::InvalidInput(e.to_string()))?;
        let (r, src) = self
            .encrypt_keys
            .get_or_load(
                address.to_string(),
                || self.load_encrypt_key(address),
                |d| self.ttl_of(d),
            )
            .await;
        self.count(src);
        r?
    }

    /// Forget cached answers about a key (`FIO...`/`PUB_K1_...`), an address
    /// (`name@domain`) or a domain. Unknown strings forget nothing.
    pub fn invalidate(&self, key_or_address: &str) {
        let s = key_or_address.trim().to_ascii_lowercase();
        if s.contains('@') {
            self.owners.invalidate_where(|(_, a)| *a == s);
            self.encrypt_keys.invalidate_where(|a| *a == s);
            self.pub_addresses.invalidate_where(|(a, _, _)| *a == s);
        } else if let Ok(key) = PublicKey::parse(key_or_address.trim()) {
            self.owners.invalidate_where(|(k, _)| *k == key);
        } else if validate_domain(&s).is_ok() {
            self.domains.invalidate_where(|d| *d == s);
            self.owners.invalidate_where(|(_, a)| domain_of(a) == s);
            self.encrypt_keys.invalidate_where(|a| domain_of(a) == s);
            self.pub_addresses
                .invalidate_where(|(a, _, _)| domain_of(a) == s);
        }
    }

    /// Forget everything cached.
    pub fn invalidate_all(&self) {
        self.owners.clear();
        self.domains.clear();
        self.encrypt_keys.clear();
        self.pub_addresses.clear();
    }
}

impl Chain for HttpChain {
    fn chain_id(&self) -> BoxFuture<'_, Result<[u8; 32], ChainError>> {
        Box::pin(HttpChain::chain_id(self))
    }

    fn check_owner<'a>(
        &'a self,
        key: &'a PublicKey,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Ownership, ChainError>> {
        Box::pin(HttpChain::check_owner(self, key, address))
    }

    fn encrypt_key<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<PublicKey, ChainError>> {
        Box::pin(HttpChain::encrypt_key(self, address))
    }

    fn pub_address<'a>(
        &'a self,
        address: &'a str,
        chain_code: &'a str,
        token_code: &'a str,
    ) -> BoxFuture<'a, Result<String, ChainError>> {
        Box::pin(HttpChain::pub_address(
            self, address, chain_code, token_code,
        ))
    }

    fn invalidate(&self, key_or_address: &str) {
        HttpChain::invalidate(self, key_or_address)
    }

    fn metrics(&self) -> ChainMetrics {
        HttpChain::metrics(self)
    }
}

/// Read a body up to `max` bytes, chunk by chunk, so a huge or endless body
/// costs at most `max` bytes of memory.
async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if let Some(len) = resp.content_length() {
        if len > max as u64 {
            return Err(format!("body of {len} bytes exceeds the {max}-byte limit"));
        }
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading body failed: {e}"))?
    {
        if buf.len() + chunk.len() > max {
            return Err(format!("body exceeds the {max}-byte limit"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Chain and token codes as the chain checks them: 1-10 of `A-Za-z0-9$`.
fn code_ok(c: &str) -> bool {
    (1..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'$')
}

fn bad_request(endpoint: &str, eb: &ErrorBody) -> ChainError {
    ChainError::InvalidInput(format!(
        "{endpoint}: {}",
        preview(eb.field_error().unwrap_or(&eb.message))
    ))
}

/// Map a 400 about an address we already validated locally: "Invalid FIO
/// Address" then means its domain has expired (the chain's check), "No such
/// FIO address" that it is not registered.
fn address_error(address: &str, eb: &ErrorBody) -> ChainError {
    match eb.field_error() {
        Some("Invalid FIO Address") => {
            ChainError::DomainExpired(format!("the domain of {address} has expired"))
        }
        Some("No such FIO address") => ChainError::NotFound(format!("{address} is not registered")),
        _ => bad_request("FIO API", eb),
    }
}

/// A bounded, printable excerpt of text that came from the network.
fn preview(s: &str) -> String {
    let mut out: String = s.chars().take(80).filter(|c| !c.is_control()).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}
