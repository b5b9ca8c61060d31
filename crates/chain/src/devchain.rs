//! A local FIO dev chain: the `/v1/chain/*` subset fio-l2 uses, answered from
//! a JSON store in a data directory, plus `/v1/dev/*` endpoints to set names
//! up (docs/chain.md). Answers, including errors, follow nodeos' shapes and
//! messages. Nothing here signs, charges fees or produces blocks.
//!
//! Embedding: `let server = devchain::serve(addr, dir).await?;` then point an
//! [`crate::HttpChain`] at `server.url()`; or mount [`router`] yourself.

use crate::name::{name_to_u64, u64_json};
use crate::time::{format_chain_time, now_unix};
use crate::wire::*;
use crate::DOMAIN_BURN_SECS;
use axum::body::Bytes;
use axum::extract::{Path as AxPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fio_l2_protocol::address::{validate_address, validate_domain};
use fio_l2_protocol::PublicKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

const STORE_FILE: &str = "devchain.json";
/// A domain lasts one year from registration (fio-standards.md section 6).
const DOMAIN_TERM_SECS: u64 = 365 * 86_400;
/// Bundled transactions a new address gets (the chain's default bundle).
const DEFAULT_BUNDLE: u64 = 100;
/// Cap on rows per get_table_rows answer (`more` tells there are more).
const MAX_TABLE_ROWS: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPubAddr {
    pub token_code: String,
    pub chain_code: String,
    pub public_address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DomainRecord {
    pub id: u64,
    pub name: String,
    pub owner_public_key: String,
    pub is_public: bool,
    /// Unix seconds.
    pub expiration: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddressRecord {
    pub id: u64,
    pub name: String,
    pub domain: String,
    pub owner_public_key: String,
    pub addresses: Vec<TokenPubAddr>,
    pub bundleeligiblecountdown: u64,
    /// FIP-39 `FIO_REQUEST_CONTENT_ENCRYPTION_PUB_KEY`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_public_key: Option<String>,
}

/// Everything the dev chain knows; persisted as one JSON file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Store {
    /// 64 hex characters, random once per data dir.
    pub chain_id: String,
    /// Unix seconds when the data dir was created (block numbers count from it).
    pub genesis: u64,
    pub next_id: u64,
    pub domains: BTreeMap<String, DomainRecord>,
    pub addresses: BTreeMap<String, AddressRecord>,
    /// accountmap: actor -> public key (every key that ever received a name).
    pub accounts: BTreeMap<String, String>,
}

impl Store {
    fn new() -> Self {
        let mut id = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        Store {
            chain_id: hex::encode(id),
            genesis: now_unix(),
            next_id: 0,
            domains: BTreeMap::new(),
            addresses: BTreeMap::new(),
            accounts: BTreeMap::new(),
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Burn domains 90 days past expiration, with their addresses (the chain
    /// does this through `burnexpired`; we do it lazily on access).
    fn burn_expired(&mut self, now: u64) -> bool {
        let burned: Vec<String> = self
            .domains
            .values()
            .filter(|d| now > d.expiration.saturating_add(DOMAIN_BURN_SECS))
            .map(|d| d.name.clone())
            .collect();
        for d in &burned {
            self.domains.remove(d);
            self.addresses.retain(|_, a| a.domain != *d);
        }
        !burned.is_empty()
    }

    fn bind_account(&mut self, key: &PublicKey) {
        self.accounts.insert(key.actor(), key.to_fio_string());
    }
}

/// An error answer: HTTP status plus the chain-shaped body.
#[derive(Clone, Debug)]
pub struct DevError {
    pub status: StatusCode,
    pub body: Value,
}

impl DevError {
    fn invalid(name: &str, value: &str, error: &str) -> Self {
        DevError {
            status: StatusCode::BAD_REQUEST,
            body: serde_json::to_value(ErrorBody::invalid_input(name, value, error))
                .unwrap_or(Value::Null),
        }
    }

    fn not_found(message: &str) -> Self {
        DevError {
            status: StatusCode::NOT_FOUND,
            body: json!({ "message": message }),
        }
    }

    /// nodeos' answer to a body it cannot parse or cast.
    fn parse_error(what: &str) -> Self {
        DevError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({
                "code": 500,
                "message": "Internal Service Error",
                "error": {"code": 4, "name": "parse_error_exception", "what": "Parse Error",
                          "details": [{"message": what}]}
            }),
        }
    }

    fn internal(what: &str) -> Self {
        DevError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: json!({"code": 500, "message": "Internal Service Error",
                         "error": {"code": 0, "name": "exception", "what": what, "details": []}}),
        }
    }
}

impl std::fmt::Display for DevError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.body)
    }
}

impl std::error::Error for DevError {}

impl IntoResponse for DevError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

struct Shared {
    dir: PathBuf,
    store: Mutex<Store>,
    stats: Mutex<BTreeMap<String, u64>>,
}

/// A dev chain over a data directory. Clones share state.
#[derive(Clone)]
pub struct DevChain {
    shared: Arc<Shared>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn parse_key(field: &str, s: &str) -> Result<PublicKey, DevError> {
    PublicKey::parse(s).map_err(|_| DevError::invalid(field, s, "Invalid FIO Public Key"))
}

impl DevChain {
    /// Open (or create) the dev chain stored in `data_dir`.
    pub fn open(data_dir: impl AsRef<Path>) -> std::io::Result<DevChain> {
        let dir = data_dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(STORE_FILE);
        let store = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Store>(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = Store::new();
                write_atomic(&dir, &s)?;
                s
            }
            Err(e) => return Err(e),
        };
        let mut id = [0u8; 32];
        if hex::decode_to_slice(&store.chain_id, &mut id).is_err() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "devchain.json: chain_id is not 64 hex characters",
            ));
        }
        Ok(DevChain {
            shared: Arc::new(Shared {
                dir,
                store: Mutex::new(store),
                stats: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn chain_id_hex(&self) -> String {
        lock(&self.shared.store).chain_id.clone()
    }

    pub fn chain_id(&self) -> [u8; 32] {
        let mut id = [0u8; 32];
        // Checked at open; a failure here would mean memory corruption.
        let _ = hex::decode_to_slice(self.chain_id_hex(), &mut id);
        id
    }

    /// A copy of the whole store.
    pub fn snapshot(&self) -> Store {
        lock(&self.shared.store).clone()
    }

    /// Requests served per endpoint name (`get_fio_names`, `dev/register_address`, ...).
    pub fn stats(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.stats).clone()
    }

    pub fn reset_stats(&self) {
        lock(&self.shared.stats).clear();
    }

    fn count(&self, endpoint: &str) {
        *lock(&self.shared.stats)
            .entry(endpoint.to_string())
            .or_insert(0) += 1;
    }

    /// Read the store (after burning what is due; persisted if anything burned).
    fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> Result<T, DevError> {
        let mut s = lock(&self.shared.store);
        if s.burn_expired(now_unix()) {
            write_atomic(&self.shared.dir, &s).map_err(|e| DevError::internal(&e.to_string()))?;
        }
        Ok(f(&s))
    }

    /// Change the store and persist it before answering. Changes are made on a
    /// copy, so a failed write leaves memory and disk in agreement.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, DevError>) -> Result<T, DevError> {
        let mut s = lock(&self.shared.store);
        let mut next = s.clone();
        next.burn_expired(now_unix());
        let out = f(&mut next)?;
        write_atomic(&self.shared.dir, &next).map_err(|e| DevError::internal(&e.to_string()))?;
        *s = next;
        Ok(out)
    }

    // ------------------------------------------------------------- dev actions

    /// Register a domain for `owner`; `expiration` defaults to one year from now.
    pub fn register_domain(
        &self,
        domain: &str,
        owner: &PublicKey,
        is_public: bool,
        expiration: Option<u64>,
    ) -> Result<DomainRecord, DevError> {
        let domain = domain.trim().to_ascii_lowercase();
        validate_domain(&domain)
            .map_err(|_| DevError::invalid("fio_domain", &domain, "Invalid FIO domain"))?;
        self.write(|s| {
            if s.domains.contains_key(&domain) {
                return Err(DevError::invalid(
                    "fio_name",
                    &domain,
                    "FIO domain already registered",
                ));
            }
            let rec = DomainRecord {
                id: s.take_id(),
                name: domain.clone(),
                owner_public_key: owner.to_fio_string(),
                is_public,
                expiration: expiration.unwrap_or_else(|| now_unix() + DOMAIN_TERM_SECS),
            };
            s.domains.insert(domain.clone(), rec.clone());
            s.bind_account(owner);
            Ok(rec)
        })
    }

    /// Register `address` for `owner`, registering its domain (public, owned
    /// by `owner`) if needed, and map FIO/FIO to `owner` as `regaddress` does.
    /// Returns the record and whether the domain was registered too.
    pub fn register_address(
        &self,
        address: &str,
        owner: &PublicKey,
    ) -> Result<(AddressRecord, bool), DevError> {
        let address = address.trim().to_ascii_lowercase();
        validate_address(&address)
            .map_err(|_| DevError::invalid("fio_address", &address, "Invalid FIO Address"))?;
        let domain = fio_l2_protocol::address::domain_of(&address).to_string();
        self.write(|s| {
            if s.addresses.contains_key(&address) {
                return Err(DevError::invalid(
                    "fio_address",
                    &address,
                    "FIO address already registered",
                ));
            }
            let mut new_domain = false;
            match s.domains.get(&domain) {
                Some(d) if now_unix() > d.expiration => {
                    return Err(DevError::invalid(
                        "fio_address",
                        &address,
                        "FIO Domain expired",
                    ))
                }
                Some(_) => {}
                None => {
                    let rec = DomainRecord {
                        id: s.take_id(),
                        name: domain.clone(),
                        owner_public_key: owner.to_fio_string(),
                        is_public: true,
                        expiration: now_unix() + DOMAIN_TERM_SECS,
                    };
                    s.domains.insert(domain.clone(), rec);
                    new_domain = true;
                }
            }
            let rec = AddressRecord {
                id: s.take_id(),
                name: address.clone(),
                domain: domain.clone(),
                owner_public_key: owner.to_fio_string(),
                addresses: vec![TokenPubAddr {
                    token_code: "FIO".into(),
                    chain_code: "FIO".into(),
                    public_address: owner.to_fio_string(),
                }],
                bundleeligiblecountdown: DEFAULT_BUNDLE,
                encrypt_public_key: None,
            };
            s.addresses.insert(address.clone(), rec.clone());
            s.bind_account(owner);
            Ok((rec, new_domain))
        })
    }

    fn with_address<T>(
        &self,
        address: &str,
        f: impl FnOnce(&mut AddressRecord) -> Result<T, DevError>,
    ) -> Result<T, DevError> {
        let address = address.trim().to_ascii_lowercase();
        validate_address(&address)
            .map_err(|_| DevError::invalid("fio_address", &address, "Invalid FIO Address"))?;
        self.write(|s| match s.addresses.get_mut(&address) {
            Some(rec) => f(rec),
            None => Err(DevError::invalid(
                "fio_address",
                &address,
                "FIO address not registered",
            )),
        })
    }

    /// Set (or with `None` remove) the FIP-39 encrypt key of `address`.
    pub fn set_encrypt_key(&self, address: &str, key: Option<&PublicKey>) -> Result<(), DevError> {
        self.with_address(address, |rec| {
            rec.encrypt_public_key = key.map(|k| k.to_fio_string());
            Ok(())
        })
    }

    /// Map `chain_code`/`token_code` of `address` to `public_address`
    /// (`addaddress`); an empty `public_address` removes the mapping.
    pub fn set_pub_address(
        &self,
        address: &str,
        chain_code: &str,
        token_code: &str,
        public_address: &str,
    ) -> Result<(), DevError> {
        if !code_ok(chain_code) {
            return Err(DevError::invalid(
                "chain_code",
                chain_code,
                "Invalid Chain Code",
            ));
        }
        if !(token_code == "*" || code_ok(token_code)) {
            return Err(DevError::invalid(
                "token_code",
                token_code,
                "Invalid Token Code",
            ));
        }
        if public_address.len() > 128 || public_address.chars().any(char::is_whitespace) {
            return Err(DevError::invalid(
                "public_address",
                public_address,
                "Invalid Public Address",
            ));
        }
        let (chain_code, token_code) = (
            chain_code.to_ascii_uppercase(),
            token_code.to_ascii_uppercase(),
        );
        self.with_address(address, |rec| {
            rec.addresses.retain(|t| {
                !(t.chain_code.eq_ignore_ascii_case(&chain_code)
                    && t.token_code.eq_ignore_ascii_case(&token_code))
            });
            if !public_address.is_empty() {
                rec.addresses.push(TokenPubAddr {
                    token_code,
                    chain_code,
                    public_address: public_address.to_string(),
                });
            }
            Ok(())
        })
    }

    /// `xferaddress`: the new key owns the address; its public addresses are
    /// replaced by FIO/FIO -> new key, and its encrypt key is cleared.
    pub fn transfer_address(&self, address: &str, new_owner: &PublicKey) -> Result<(), DevError> {
        self.with_address(address, |rec| {
            rec.owner_public_key = new_owner.to_fio_string();
            rec.addresses = vec![TokenPubAddr {
                token_code: "FIO".into(),
                chain_code: "FIO".into(),
                public_address: new_owner.to_fio_string(),
            }];
            rec.encrypt_public_key = None;
            Ok(())
        })?;
        self.write(|s| {
            s.bind_account(new_owner);
            Ok(())
        })
    }

    /// Set a domain's expiration (unix seconds), e.g. in the past to test the
    /// grace period. More than 90 days in the past burns it on next access.
    pub fn set_domain_expiration(&self, domain: &str, expiration: u64) -> Result<(), DevError> {
        let domain = domain.trim().to_ascii_lowercase();
        self.write(|s| match s.domains.get_mut(&domain) {
            Some(d) => {
                d.expiration = expiration;
                Ok(())
            }
            None => Err(DevError::invalid(
                "fio_domain",
                &domain,
                "FIO Domain not registered",
            )),
        })
    }

    // ------------------------------------------------------------- chain API

    fn get_info(&self) -> Result<Value, DevError> {
        self.read(|s| {
            let now = now_unix();
            // One block per half second since genesis, like the real chain.
            let head = now.saturating_sub(s.genesis) * 2 + 1;
            let block_id = |n: u64| format!("{n:08x}{}", &s.chain_id[8..]);
            json!({
                "server_version": "fiol2dev",
                "chain_id": s.chain_id,
                "head_block_num": head,
                "last_irreversible_block_num": head.saturating_sub(1),
                "last_irreversible_block_id": block_id(head.saturating_sub(1)),
                "head_block_id": block_id(head),
                "head_block_time": format!("{}.{}", format_chain_time(now), "500"),
                "head_block_producer": "devchain",
                "virtual_block_cpu_limit": 200_000_000u64,
                "virtual_block_net_limit": 1_048_576_000u64,
                "block_cpu_limit": 199_900u64,
                "block_net_limit": 1_048_576u64,
                "server_version_string": concat!("fio-l2-devchain-", env!("CARGO_PKG_VERSION")),
                "fork_db_head_block_num": head,
                "fork_db_head_block_id": block_id(head),
            })
        })
    }

    fn get_fio_names(&self, req: &Value) -> Result<Value, DevError> {
        let key_s = str_field(req, "fio_public_key")?;
        let key = parse_key("fio_public_key", &key_s)?;
        let key_s = key.to_fio_string();
        self.read(|s| {
            let fio_addresses: Vec<FioAddressRecord> = s
                .addresses
                .values()
                .filter(|a| a.owner_public_key == key_s)
                .map(|a| FioAddressRecord {
                    fio_address: a.name.clone(),
                    expiration: ADDRESS_EXPIRATION.into(),
                    remaining_bundled_tx: a.bundleeligiblecountdown,
                })
                .collect();
            let fio_domains: Vec<FioDomainRecord> = s
                .domains
                .values()
                .filter(|d| d.owner_public_key == key_s)
                .map(|d| FioDomainRecord {
                    fio_domain: d.name.clone(),
                    expiration: format_chain_time(d.expiration),
                    is_public: u8::from(d.is_public),
                })
                .collect();
            if fio_addresses.is_empty() && fio_domains.is_empty() {
                return Err(DevError::not_found("No FIO names"));
            }
            Ok(json!(FioNamesResponse {
                fio_domains,
                fio_addresses
            }))
        })?
    }

    fn get_pub_address(&self, req: &Value) -> Result<Value, DevError> {
        let raw = str_field(req, "fio_address")?;
        let token_code = str_field(req, "token_code")?;
        let chain_code = str_field(req, "chain_code")?;
        let addr = raw.to_ascii_lowercase();
        if !name_format_ok(&addr) || !addr.contains('@') || addr.starts_with('@') {
            return Err(DevError::invalid(
                "fio_address",
                &addr,
                "Invalid FIO Address",
            ));
        }
        if !(token_code == "*" || code_ok(&token_code)) {
            return Err(DevError::invalid(
                "token_code",
                &token_code,
                "Invalid Token Code",
            ));
        }
        if !code_ok(&chain_code) {
            return Err(DevError::invalid(
                "chain_code",
                &chain_code,
                "Invalid Chain Code",
            ));
        }
        self.read(|s| {
            let domain = fio_l2_protocol::address::domain_of(&addr);
            let d = s
                .domains
                .get(domain)
                .ok_or_else(|| DevError::not_found("Public address not found"))?;
            if now_unix() > d.expiration {
                return Err(DevError::invalid(
                    "fio_address",
                    &raw,
                    "Invalid FIO Address",
                ));
            }
            let a = s
                .addresses
                .get(&addr)
                .ok_or_else(|| DevError::not_found("Public address not found"))?;
            lookup_pub_address(&a.addresses, &chain_code, &token_code)
                .map(|p| json!({ "public_address": p }))
                .ok_or_else(|| DevError::not_found("Public address not found"))
        })?
    }

    fn get_encrypt_key(&self, req: &Value) -> Result<Value, DevError> {
        let raw = str_field(req, "fio_address")?;
        let addr = raw.to_ascii_lowercase();
        if !name_format_ok(&addr) {
            return Err(DevError::invalid(
                "fio_address",
                &addr,
                "Invalid FIO Address",
            ));
        }
        self.read(|s| {
            let a = s
                .addresses
                .get(&addr)
                .ok_or_else(|| DevError::invalid("fio_address", &addr, "No such FIO address"))?;
            // As on the chain: a set encrypt key is answered even when the
            // domain has expired; only the FIO/FIO fallback checks expiration.
            if let Some(k) = &a.encrypt_public_key {
                return Ok(json!({ "encrypt_public_key": k }));
            }
            let d = s
                .domains
                .get(&a.domain)
                .ok_or_else(|| DevError::not_found("Public address not found"))?;
            if now_unix() > d.expiration {
                return Err(DevError::invalid(
                    "fio_address",
                    &raw,
                    "Invalid FIO Address",
                ));
            }
            lookup_pub_address(&a.addresses, "FIO", "FIO")
                .map(|p| json!({ "encrypt_public_key": p }))
                .ok_or_else(|| DevError::not_found("Public address not found"))
        })?
    }

    fn avail_check(&self, req: &Value) -> Result<Value, DevError> {
        let raw = str_field(req, "fio_name")?;
        let name = raw.to_ascii_lowercase();
        if !name_format_ok(&name) {
            return Err(DevError::invalid("fio_name", &name, "Invalid FIO Name"));
        }
        self.read(|s| {
            let registered = match name.split_once('@') {
                Some((n, _)) if !n.is_empty() => s.addresses.contains_key(&name),
                Some((_, d)) => s.domains.contains_key(d),
                None => s.domains.contains_key(&name),
            };
            json!({ "is_registered": u8::from(registered) })
        })
    }

    fn get_actor(&self, req: &Value) -> Result<Value, DevError> {
        let key_s = str_field(req, "fio_public_key")?;
        let key = parse_key("fio_public_key", &key_s)?;
        Ok(json!({ "actor": key.actor() }))
    }

    fn get_account_fio_public_key(&self, req: &Value) -> Result<Value, DevError> {
        let account = str_field(req, "account")?;
        let valid = account.len() <= 12
            && account
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'1'..=b'5' | b'.'))
            && !account.ends_with('.');
        if !valid {
            return Err(DevError::invalid(
                "account",
                &account,
                "Invalid FIO Account format",
            ));
        }
        self.read(|s| {
            s.accounts
                .get(&account)
                .map(|k| json!({ "fio_public_key": k }))
                .ok_or_else(|| DevError::not_found("Account not found"))
        })?
    }

    fn get_table_rows(&self, req: &Value) -> Result<Value, DevError> {
        let q: TableRowsRequest = serde_json::from_value(req.clone())
            .map_err(|e| DevError::parse_error(&e.to_string()))?;
        if q.code != "fio.address" {
            return Err(DevError::internal(&format!(
                "fail to retrieve table: the dev chain only serves fio.address tables, not {}",
                q.code
            )));
        }
        let lower = parse_bound(&q.lower_bound)?;
        let upper = parse_bound(&q.upper_bound)?;
        let limit = q.limit.unwrap_or(10).clamp(1, MAX_TABLE_ROWS as u32) as usize;
        let index = match q.index_position.as_str() {
            "" | "1" | "primary" | "first" => 1,
            "2" | "secondary" | "second" => 2,
            "3" | "tertiary" | "third" => 3,
            "4" | "fourth" => 4,
            "5" | "fifth" => 5,
            other => {
                return Err(DevError::internal(&format!(
                    "Invalid index position: {other}"
                )))
            }
        };
        let table = q.table.clone();
        self.read(|s| {
            // (sort key, row) for the chosen index; bounds filter on the key.
            let mut rows: Vec<(u128, Value)> = match table.as_str() {
                "fionames" => s
                    .addresses
                    .values()
                    .map(|a| {
                        let owner = owner_u64(s, &a.owner_public_key);
                        let key = match index {
                            1 => u128::from(a.id),
                            2 => hash128(&a.domain),
                            3 => u128::from(u32::MAX),
                            4 => u128::from(owner),
                            _ => hash128(&a.name),
                        };
                        (key, fioname_row(a, owner))
                    })
                    .collect(),
                "domains" => s
                    .domains
                    .values()
                    .filter_map(|d| {
                        let account = owner_u64(s, &d.owner_public_key);
                        let key = match index {
                            1 => u128::from(d.id),
                            2 => u128::from(account),
                            3 => u128::from(d.expiration),
                            4 => hash128(&d.name),
                            _ => return None,
                        };
                        Some((key, domain_row(d, account)))
                    })
                    .collect(),
                other => {
                    return Err(DevError::internal(&format!(
                        "Table {other} is not specified in the ABI (the dev chain serves fionames and domains)"
                    )))
                }
            };
            if q.scope != "fio.address" {
                rows.clear();
            }
            rows.retain(|(k, _)| {
                !matches!(lower, Some(l) if *k < l) && !matches!(upper, Some(u) if *k > u)
            });
            rows.sort_by_key(|(k, _)| *k);
            let more = rows.len() > limit;
            rows.truncate(limit);
            Ok(json!({
                "rows": rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
                "more": more
            }))
        })?
    }
}

/// The i128 index value of a name: the first 16 bytes of sha1(name) read
/// little-endian (the chain's `string_to_uint128_hash`). Its bound string is
/// `name_hash_bound` (big-endian hex of this number).
fn hash128(name: &str) -> u128 {
    let h = fio_l2_protocol::hash::sha1(name.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    u128::from_le_bytes(b)
}

/// nodeos renders a `uint128` column as `0x` + its 16 bytes in memory order.
fn hash_json(v: u128) -> String {
    format!("0x{}", hex::encode(v.to_le_bytes()))
}

fn owner_u64(_s: &Store, key: &str) -> u64 {
    PublicKey::parse(key)
        .ok()
        .and_then(|k| name_to_u64(&k.actor()))
        .unwrap_or(0)
}

fn fioname_row(a: &AddressRecord, owner: u64) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "namehash": hash_json(hash128(&a.name)),
        "domain": a.domain,
        "domainhash": hash_json(hash128(&a.domain)),
        "expiration": u32::MAX,
        "owner_account": u64_json(owner),
        "addresses": a.addresses,
        "bundleeligiblecountdown": a.bundleeligiblecountdown,
    })
}

fn domain_row(d: &DomainRecord, account: u64) -> Value {
    json!({
        "id": d.id,
        "name": d.name,
        "domainhash": hash_json(hash128(&d.name)),
        "account": u64_json(account),
        "is_public": u8::from(d.is_public),
        "expiration": d.expiration,
    })
}

/// A table bound: empty (none), `0x`-hex, or decimal.
fn parse_bound(b: &str) -> Result<Option<u128>, DevError> {
    let b = b.trim();
    if b.is_empty() {
        return Ok(None);
    }
    let parsed = match b.strip_prefix("0x").or_else(|| b.strip_prefix("0X")) {
        Some(h) if !h.is_empty() && h.len() <= 32 => u128::from_str_radix(h, 16).ok(),
        Some(_) => None,
        None => b
            .parse::<u128>()
            .ok()
            .or_else(|| name_to_u64(b).map(u128::from)),
    };
    parsed
        .map(Some)
        .ok_or_else(|| DevError::parse_error(&format!("Couldn't convert bound {b}")))
}

/// The chain's pick: exact chain/token match, else the chain's `*` token.
fn lookup_pub_address(list: &[TokenPubAddr], chain: &str, token: &str) -> Option<String> {
    let exact = list.iter().find(|t| {
        t.chain_code.eq_ignore_ascii_case(chain) && t.token_code.eq_ignore_ascii_case(token)
    });
    let any = || {
        list.iter()
            .find(|t| t.chain_code.eq_ignore_ascii_case(chain) && t.token_code == "*")
    };
    exact.or_else(any).map(|t| t.public_address.clone())
}

/// `validateFioNameFormat`: a domain alone, or name@domain.
fn name_format_ok(n: &str) -> bool {
    match n.split_once('@') {
        Some((name, _)) if !name.is_empty() => validate_address(n).is_ok(),
        Some((_, d)) => validate_domain(d).is_ok(),
        None => validate_domain(n).is_ok(),
    }
}

fn code_ok(c: &str) -> bool {
    (1..=10).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'$')
}

/// A string field as nodeos reads it: missing or null is empty; any other
/// type is a cast error (500).
fn str_field(v: &Value, name: &str) -> Result<String, DevError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(DevError::parse_error(&format!("Bad Cast: field {name}"))),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, DevError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| DevError::parse_error(&e.to_string()))?;
    if !v.is_object() {
        return Err(DevError::parse_error("Bad Cast: body is not an object"));
    }
    Ok(v)
}

/// Write the store: temp file, fsync, rename over, fsync the directory, so a
/// crash leaves either the old or the new file, never a torn one.
fn write_atomic(dir: &Path, store: &Store) -> std::io::Result<()> {
    let data = serde_json::to_vec_pretty(store).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{STORE_FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(STORE_FILE))?;
    // Directory fsync makes the rename durable; not possible on every platform.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

// ----------------------------------------------------------------- HTTP

async fn chain_endpoint(
    State(dc): State<DevChain>,
    AxPath(endpoint): AxPath<String>,
    body: Bytes,
) -> Response {
    dc.count(&endpoint);
    let result = parse_body(&body).and_then(|req| match endpoint.as_str() {
        "get_info" => dc.get_info(),
        "get_fio_names" => dc.get_fio_names(&req),
        "get_pub_address" => dc.get_pub_address(&req),
        "get_encrypt_key" => dc.get_encrypt_key(&req),
        "avail_check" => dc.avail_check(&req),
        "get_actor" => dc.get_actor(&req),
        "get_account_fio_public_key" => dc.get_account_fio_public_key(&req),
        "get_table_rows" => dc.get_table_rows(&req),
        // nodeos' answer to an endpoint it does not have.
        _ => Err(DevError {
            status: StatusCode::NOT_FOUND,
            body: json!({"code": 404, "message": "Not Found",
                         "error": {"code": 0, "name": "exception", "what": "unknown",
                                   "details": [{"message": "Unknown Endpoint"}]}}),
        }),
    });
    match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct RegisterDomainBody {
    domain: String,
    owner_public_key: String,
    #[serde(default = "yes")]
    is_public: bool,
    #[serde(default)]
    expiration: Option<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct RegisterAddressBody {
    address: String,
    owner_public_key: String,
}

#[derive(Deserialize)]
struct EncryptKeyBody {
    address: String,
    /// Empty or absent removes the key.
    #[serde(default)]
    encrypt_public_key: Option<String>,
}

#[derive(Deserialize)]
struct PubAddressBody {
    address: String,
    chain_code: String,
    token_code: String,
    public_address: String,
}

#[derive(Deserialize)]
struct TransferBody {
    address: String,
    new_owner_public_key: String,
}

#[derive(Deserialize)]
struct ExpireBody {
    domain: String,
    #[serde(default)]
    expiration: Option<u64>,
    #[serde(default)]
    days_ago: Option<u64>,
}

fn dev_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, DevError> {
    serde_json::from_slice(body)
        .map_err(|e| DevError::invalid("body", "", &format!("Invalid JSON body: {e}")))
}

fn dev_action(dc: &DevChain, action: &str, body: &Bytes) -> Result<Value, DevError> {
    match action {
        "register_domain" => {
            let b: RegisterDomainBody = dev_body(body)?;
            let owner = parse_key("owner_public_key", &b.owner_public_key)?;
            let rec = dc.register_domain(&b.domain, &owner, b.is_public, b.expiration)?;
            Ok(json!({"status": "OK", "domain": rec}))
        }
        "register_address" => {
            let b: RegisterAddressBody = dev_body(body)?;
            let owner = parse_key("owner_public_key", &b.owner_public_key)?;
            let (rec, domain_registered) = dc.register_address(&b.address, &owner)?;
            Ok(
                json!({"status": "OK", "address": rec, "actor": owner.actor(),
                      "domain_registered": domain_registered}),
            )
        }
        "set_encrypt_key" => {
            let b: EncryptKeyBody = dev_body(body)?;
            let key = match b.encrypt_public_key.as_deref() {
                None | Some("") => None,
                Some(k) => Some(parse_key("encrypt_public_key", k)?),
            };
            dc.set_encrypt_key(&b.address, key.as_ref())?;
            Ok(json!({"status": "OK"}))
        }
        "set_pub_address" => {
            let b: PubAddressBody = dev_body(body)?;
            dc.set_pub_address(&b.address, &b.chain_code, &b.token_code, &b.public_address)?;
            Ok(json!({"status": "OK"}))
        }
        "transfer_address" => {
            let b: TransferBody = dev_body(body)?;
            let owner = parse_key("new_owner_public_key", &b.new_owner_public_key)?;
            dc.transfer_address(&b.address, &owner)?;
            Ok(json!({"status": "OK", "actor": owner.actor()}))
        }
        "expire_domain" => {
            let b: ExpireBody = dev_body(body)?;
            let exp = match (b.expiration, b.days_ago) {
                (Some(e), None) => e,
                (None, Some(d)) => now_unix().saturating_sub(d.saturating_mul(86_400)),
                (None, None) => now_unix().saturating_sub(1),
                (Some(_), Some(_)) => {
                    return Err(DevError::invalid(
                        "expiration",
                        "",
                        "give expiration or days_ago, not both",
                    ))
                }
            };
            dc.set_domain_expiration(&b.domain, exp)?;
            Ok(json!({"status": "OK", "expiration": exp,
                      "expiration_time": format_chain_time(exp)}))
        }
        "stats_reset" => {
            dc.reset_stats();
            Ok(json!({"status": "OK"}))
        }
        _ => Err(DevError::not_found("Unknown dev endpoint")),
    }
}

async fn dev_post(
    State(dc): State<DevChain>,
    AxPath(action): AxPath<String>,
    body: Bytes,
) -> Response {
    if action != "stats_reset" {
        dc.count(&format!("dev/{action}"));
    }
    match dev_action(&dc, &action, &body) {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn dev_stats(State(dc): State<DevChain>) -> Response {
    let stats = dc.stats();
    let total: u64 = stats
        .iter()
        .filter(|(k, _)| !k.starts_with("dev/"))
        .map(|(_, v)| *v)
        .sum();
    Json(json!({"requests": stats, "chain_total": total})).into_response()
}

async fn dev_state(State(dc): State<DevChain>) -> Response {
    Json(dc.snapshot()).into_response()
}

/// The dev chain's HTTP routes (`/v1/chain/*` and `/v1/dev/*`).
pub fn router(chain: DevChain) -> Router {
    Router::new()
        .route(
            "/v1/chain/{endpoint}",
            post(chain_endpoint).get(chain_endpoint),
        )
        .route("/v1/dev/stats", get(dev_stats))
        .route("/v1/dev/state", get(dev_state))
        .route("/v1/dev/{action}", post(dev_post))
        .with_state(chain)
}

/// A running dev chain server. Dropping it stops the server too.
pub struct DevChainServer {
    pub addr: SocketAddr,
    pub chain: DevChain,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl DevChainServer {
    /// `http://addr`, the base URL for [`crate::ClientConfig`].
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop accepting, finish in-flight requests, and wait for the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    /// Wait until the server stops (it runs until shutdown or an I/O error).
    pub async fn wait(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for DevChainServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Open the dev chain in `data_dir` and serve it on `listen` (port 0 picks a
/// free port; see `addr`). Must be called inside a tokio runtime.
pub async fn serve(
    listen: SocketAddr,
    data_dir: impl AsRef<Path>,
) -> std::io::Result<DevChainServer> {
    let chain = DevChain::open(data_dir)?;
    serve_chain(listen, chain).await
}

/// Serve an already opened dev chain on `listen`.
pub async fn serve_chain(listen: SocketAddr, chain: DevChain) -> std::io::Result<DevChainServer> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(chain.clone());
    let handle = tokio::spawn(async move {
        let shutdown = async {
            let _ = rx.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "dev chain server stopped");
        }
    });
    Ok(DevChainServer {
        addr,
        chain,
        shutdown: Some(tx),
        handle: Some(handle),
    })
}
