//! FIO Chain access for fio-l2 (docs/chain.md).
//!
//! - [`client::HttpChain`]: a caching, single-flight, failover HTTP client of
//!   the FIO API (`/v1/chain/*`), implementing the narrow [`Chain`] trait the
//!   relay node uses.
//! - [`devchain`]: a local server answering the same API subset from a store
//!   in a data directory, plus `/v1/dev/*` endpoints to set up names; embeddable
//!   in-process for a node's dev mode and tests.

pub mod cache;
pub mod client;
pub mod devchain;
pub mod error;
pub mod name;
pub mod time;
pub mod wire;

pub use client::{ClientConfig, HttpChain};
pub use error::ChainError;

use fio_l2_protocol::PublicKey;
use std::future::Future;
use std::pin::Pin;

/// A boxed `Send` future, so that [`Chain`] is object safe (`Arc<dyn Chain>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Seconds after a domain's expiration during which its addresses still work
/// (fio-standards.md section 6): 30 days.
pub const DOMAIN_GRACE_SECS: u64 = 30 * 86_400;

/// Seconds after a domain's expiration after which the domain and its
/// addresses are burned: 90 days.
pub const DOMAIN_BURN_SECS: u64 = 90 * 86_400;

/// The ownership answer for (public key, FIO Address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// The key owns the address and its domain is usable: not expired, or
    /// expired less than the grace period ago (`in_grace`).
    Owned {
        /// Unix seconds of the domain's expiration, as the chain answered.
        domain_expiration: u64,
        in_grace: bool,
    },
    /// The key does not own the address (it may be unregistered or owned by another key).
    NotOwned,
    /// The key owns the address but its domain is past the grace period.
    DomainExpired { domain_expiration: u64 },
}

impl Ownership {
    /// The only answer that lets a message from this key as this address in.
    pub fn is_owned(&self) -> bool {
        matches!(self, Ownership::Owned { .. })
    }

    /// Apply the grace rule at `now`: usable iff `now <= expiration + grace`.
    pub fn from_expiration(domain_expiration: u64, now: u64, grace_secs: u64) -> Self {
        if now <= domain_expiration {
            Ownership::Owned {
                domain_expiration,
                in_grace: false,
            }
        } else if now <= domain_expiration.saturating_add(grace_secs) {
            Ownership::Owned {
                domain_expiration,
                in_grace: true,
            }
        } else {
            Ownership::DomainExpired { domain_expiration }
        }
    }
}

/// Counters of a chain client, for tests, benches and node metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainMetrics {
    /// HTTP attempts sent (each retry and failover counts).
    pub requests: u64,
    /// Attempts that failed (transport error, timeout, 5xx, bad body).
    pub failed_requests: u64,
    /// Lookups answered from a cache.
    pub cache_hits: u64,
    /// Lookups that had to ask the chain (or join an in-flight ask).
    pub cache_misses: u64,
    /// Lookups that joined an identical in-flight ask instead of sending their own.
    pub coalesced: u64,
}

/// The narrow view of the FIO Chain a relay node needs.
pub trait Chain: Send + Sync {
    /// The 32-byte chain id (`get_info`), fetched once then kept.
    fn chain_id(&self) -> BoxFuture<'_, Result<[u8; 32], ChainError>>;

    /// Does `key` own `address` (canonical lowercase) with a usable domain?
    /// `Err(Unavailable)` when the chain could not be asked: never a wrong yes.
    fn check_owner<'a>(
        &'a self,
        key: &'a PublicKey,
        address: &'a str,
    ) -> BoxFuture<'a, Result<Ownership, ChainError>>;

    /// The content-encryption key of `address`: its FIP-39 encrypt key, else
    /// its FIO/FIO public address. `NotFound` when it has neither.
    fn encrypt_key<'a>(&'a self, address: &'a str) -> BoxFuture<'a, Result<PublicKey, ChainError>>;

    /// A public address mapping of `address` (e.g. a node URL under a custom
    /// chain/token code). `NotFound` when there is none. Not cached.
    fn pub_address<'a>(
        &'a self,
        address: &'a str,
        chain_code: &'a str,
        token_code: &'a str,
    ) -> BoxFuture<'a, Result<String, ChainError>>;

    /// Forget cached answers about a key (`FIO...`) or an address (`name@domain`).
    fn invalidate(&self, key_or_address: &str);

    fn metrics(&self) -> ChainMetrics;
}
