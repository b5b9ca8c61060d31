//! Everything a request handler needs, shared behind one `Arc`.

use crate::auth::ReplayGuard;
use crate::config::NodeConfig;
use crate::events::Hub;
use crate::storage::Store;
use crate::writer::WriterHandle;
use fio_l2_chain::Chain;
use fio_l2_protocol::TimePolicy;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub struct NodeState {
    pub config: NodeConfig,
    pub chain_id: [u8; 32],
    /// This node's identity in owner proofs; random, persisted in the data dir.
    pub node_id: String,
    pub store: Arc<dyn Store>,
    pub writer: WriterHandle,
    pub chain: Arc<dyn Chain>,
    pub hub: Hub,
    pub replay: ReplayGuard,
    /// Admission's CPU work, at a lower priority than the writer, taken in
    /// fair order among clients (cpu_pool.rs, fair_queue.rs).
    pub cpu: crate::cpu_pool::CpuPool<crate::admission::Source>,
    /// Bounds live subscriptions.
    pub subscription_slots: Arc<Semaphore>,
    pub counters: Counters,
    /// Replication (peers, push, repair), set once at start.
    pub replication: std::sync::OnceLock<Arc<crate::replication::Replicator>>,
    /// Rate limits, in-flight limits, inbox quota and recipient policies (limits.rs).
    pub spam: crate::limits::SpamState,
}

#[derive(Default)]
pub struct Counters {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub refused: AtomicU64,
}

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl NodeState {
    /// Runs a blocking store call off the runtime's workers; a store failure
    /// is a 503 `storage_unavailable` (logged), never a panic.
    ///
    /// On a multi-thread runtime the call runs on this thread
    /// (`block_in_place`, which hands this worker's other tasks to another
    /// thread) instead of on the blocking pool: the request's path then has
    /// no wake-up of a pool thread and none back. Inbox pages in the node
    /// benchmark: median 0.48-0.51 against 0.50-0.53 ms, three runs each,
    /// alternating (docs/BENCHMARKS.md). A current-thread runtime (some
    /// tests) cannot do that, so it keeps the pool.
    pub async fn store_call<T, F>(&self, f: F) -> Result<T, crate::error::ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, crate::storage::StoreError> + Send + 'static,
    {
        use axum::http::StatusCode;
        let store = self.store.clone();
        let multi = tokio::runtime::Handle::try_current()
            .map(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
            .unwrap_or(false);
        let joined = if multi {
            Ok(tokio::task::block_in_place(|| f(store.as_ref())))
        } else {
            tokio::task::spawn_blocking(move || f(store.as_ref())).await
        };
        match joined {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                tracing::error!("storage failure: {e}");
                Err(crate::error::ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the node could not reach its storage",
                )
                .retry_after(5))
            }
            Err(e) => Err(crate::error::ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                e.to_string(),
            )),
        }
    }

    pub fn time_policy(&self) -> TimePolicy {
        TimePolicy {
            max_clock_skew: self.config.limits.max_clock_skew_secs,
            max_ttl: self.config.limits.max_ttl_secs,
        }
    }

    /// Largest single envelope body: base64 of the largest content plus room
    /// for the other fields.
    pub fn max_envelope_bytes(&self) -> usize {
        self.config.limits.max_content_bytes.div_ceil(3) * 4 + 2048
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
