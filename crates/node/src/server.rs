//! Starting a node: storage, durable writer, chain access (or the embedded
//! dev chain), background purge, and the HTTP server.

use crate::api;
use crate::auth::ReplayGuard;
use crate::config::NodeConfig;
use crate::events::Hub;
use crate::state::{now_unix, Counters, NodeState};
use crate::storage;
use crate::writer::GroupCommitWriter;
use axum::serve::ListenerExt;
use fio_l2_chain::devchain::{self, DevChain};
use fio_l2_chain::{Chain, ClientConfig, HttpChain};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A node serving in this process.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub state: Arc<NodeState>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningNode {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serve until the process is asked to stop (Ctrl-C or SIGTERM).
    pub async fn wait(mut self) {
        shutdown_signal().await;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The node's random identity, made once and kept in the data dir.
fn node_id(dir: &Path) -> Result<String, String> {
    let path = dir.join("node_id");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(s);
        }
        return Err(format!(
            "{} is corrupt; remove it to make a new node id",
            path.display()
        ));
    }
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    let id = hex::encode(b);
    let tmp = dir.join("node_id.tmp");
    std::fs::write(&tmp, &id)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}

/// Most messages in one durable commit.
pub const COMMIT_MAX: usize = 8_192;

pub async fn start(config: NodeConfig) -> Result<RunningNode, String> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
    let node_id = node_id(&config.data_dir)?;
    for other in [storage::Backend::Redb, storage::Backend::Sqlite] {
        if other != config.store
            && config.data_dir.join(other.file_name()).exists()
            && !config.data_dir.join(config.store.file_name()).exists()
        {
            return Err(format!(
                "{} holds a {} store; start with --store {}",
                config.data_dir.display(),
                other.name(),
                other.name()
            ));
        }
    }
    let store = storage::open(config.store, &config.data_dir).map_err(|e| e.to_string())?;
    // Large commits: a commit's cost is mostly pages rewritten (the id index
    // takes random inserts), and one commit shares a page among more inserts.
    let writer = GroupCommitWriter::spawn(store.clone(), config.limits.write_queue, COMMIT_MAX)
        .map_err(|e| format!("cannot start the writer thread: {e}"))?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let (endpoints, dev_chain) = if config.dev {
        let dc = DevChain::open(config.data_dir.join("devchain"))
            .map_err(|e| format!("dev chain: {e}"))?;
        (vec![format!("http://{addr}")], Some(dc))
    } else {
        (config.fio_api.clone(), None)
    };
    let mut cc = ClientConfig::new(endpoints);
    cc.positive_ttl = Duration::from_secs(config.chain_positive_ttl_secs);
    cc.negative_ttl = Duration::from_secs(config.chain_negative_ttl_secs);
    let chain: Arc<dyn Chain> = Arc::new(HttpChain::new(cc).map_err(|e| e.to_string())?);

    let chain_id = match &dev_chain {
        Some(dc) => dc.chain_id(),
        None => loop {
            match chain.chain_id().await {
                Ok(id) => break id,
                Err(e) => {
                    tracing::warn!("waiting for the FIO Chain (get_info): {e:?}");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        },
    };

    let limits = config.limits.clone();
    let state = Arc::new(NodeState {
        chain_id,
        node_id,
        store: store.clone(),
        writer,
        chain,
        hub: Hub::new(256),
        replay: ReplayGuard::new(200_000),
        cpu: crate::cpu_pool::CpuPool::start(
            std::thread::available_parallelism().map_or(2, |n| n.get()),
            crate::cpu_pool::POOL_NICE,
        )
        .map_err(|e| format!("starting the verification threads: {e}"))?,
        subscription_slots: Arc::new(Semaphore::new(limits.max_subscriptions)),
        counters: Counters::default(),
        replication: Default::default(),
        spam: crate::limits::SpamState::new(&config.limits, &config.data_dir)?,
        config,
    });

    crate::replication::start(&state)?;
    let mut app = api::router(state.clone())
        .merge(crate::replication::api::router(state.clone()))
        .merge(crate::replication::policy_sync::router(state.clone()));
    if let Some(dc) = dev_chain {
        app = app.merge(devchain::router(dc));
    }

    // Purge expired messages and tombstones in the background.
    let purge_store = store.clone();
    let every = Duration::from_secs(state.config.purge_interval_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let s = purge_store.clone();
            match tokio::task::spawn_blocking(move || s.purge_expired(now_unix() as u32)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!("purged {n} expired messages"),
                Ok(Err(e)) => tracing::warn!("purge failed: {e}"),
                _ => {}
            }
        }
    });

    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let r = axum::serve(
            listener.tap_io(|tcp| {
                // Answers and SSE events are small writes: send them at once.
                let _ = tcp.set_nodelay(true);
            }),
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = rx.await;
        })
        .await;
        if let Err(e) = r {
            tracing::error!("server error: {e}");
        }
    });
    tracing::info!(
        "fio-l2 node listening on http://{addr} (chain {})",
        hex::encode(chain_id)
    );
    Ok(RunningNode {
        addr,
        state,
        shutdown: Some(tx),
        task,
    })
}
