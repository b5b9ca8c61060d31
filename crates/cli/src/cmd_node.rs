//! `fio-l2 node`: run a relay node. Flags win over environment variables
//! (`FIO_L2_*`), which win over the TOML file given with `--config`.

use clap::Args;
use fio_l2_node::config::{FileConfig, Limits, NodeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct NodeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FIO_L2_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (messages, node id, dev chain) [default: ./fio-l2-data].
    #[arg(long, env = "FIO_L2_DATA")]
    pub data: Option<PathBuf>,
    /// FIO API base URL (repeatable; tried in order with failover).
    #[arg(long = "fio-api", env = "FIO_L2_FIO_API", value_delimiter = ',')]
    pub fio_api: Vec<String>,
    /// Embed a dev chain, served under this node's /v1/chain and /v1/dev; no --fio-api needed.
    #[arg(long, env = "FIO_L2_DEV")]
    pub dev: bool,
    /// TOML config file (keys: listen, data, fio_api, dev, trusted_proxies, [limits], chain_*_ttl_secs, purge_interval_secs).
    #[arg(long, env = "FIO_L2_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest content cipher text, bytes.
    #[arg(long)]
    pub max_content_bytes: Option<usize>,
    /// Longest time to live, seconds.
    #[arg(long)]
    pub max_ttl: Option<u32>,
    /// Allowed clock skew, seconds.
    #[arg(long)]
    pub max_clock_skew: Option<u32>,
    /// Node-wide proof of work (leading zero bits) for senders a recipient has not allowed.
    #[arg(long)]
    pub min_pow_bits: Option<u32>,
    /// Apply per-IP limits to loopback clients too (docs/spam.md).
    #[arg(long)]
    pub limit_loopback: bool,
    /// Reverse proxy (address or network, repeatable) whose X-Forwarded-For
    /// names the client for the per-IP limits (TOML `trusted_proxies = [...]`).
    #[arg(
        long = "trusted-proxy",
        env = "FIO_L2_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<String>,
    /// Replication peer base URL (repeatable; TOML `peer = [...]`); docs/replication.md.
    #[arg(long = "peer", env = "FIO_L2_PEER", value_delimiter = ',')]
    pub peer: Vec<String>,
    /// This node's public base URL, as owners publish it in their FIOL2/NODE mapping.
    #[arg(long, env = "FIO_L2_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Keep only messages for addresses whose FIOL2/NODE mapping names --public-url.
    #[arg(long)]
    pub serve_only_home: bool,
    /// Interval of the recent-window repair pass with each peer, milliseconds [default: 2000].
    #[arg(long)]
    pub sync_interval_ms: Option<u64>,
    /// Message store engine: redb (default) or sqlite (docs/storage.md).
    #[arg(long, env = "FIO_L2_STORE")]
    pub store: Option<String>,
    /// Log filter (error, warn, info, debug).
    #[arg(long, env = "FIO_L2_LOG", default_value = "info")]
    pub log: String,
}

pub fn config_from(a: &NodeArgs) -> Result<NodeConfig, String> {
    let file = match &a.config {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let mut limits = file.limits.clone().unwrap_or_default();
    if let Some(v) = a.max_content_bytes {
        limits.max_content_bytes = v;
    }
    if let Some(v) = a.max_ttl {
        limits.max_ttl_secs = v;
    }
    if let Some(v) = a.max_clock_skew {
        limits.max_clock_skew_secs = v;
    }
    if let Some(v) = a.min_pow_bits {
        limits.min_pow_bits = v;
    }
    if a.limit_loopback {
        limits.limit_loopback = true;
    }
    let _: &Limits = &limits;
    let replication = replication_config(a, &file);
    let trusted_proxies =
        fio_l2_node::client_ip::TrustedProxies::parse(if a.trusted_proxy.is_empty() {
            file.trusted_proxies.as_deref().unwrap_or_default()
        } else {
            &a.trusted_proxy
        })?;
    let cfg = NodeConfig {
        listen: a
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("literal")),
        data_dir: a
            .data
            .clone()
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from("fio-l2-data")),
        fio_api: if a.fio_api.is_empty() {
            file.fio_api.unwrap_or_default()
        } else {
            a.fio_api.clone()
        },
        dev: a.dev || file.dev.unwrap_or(false),
        limits,
        chain_positive_ttl_secs: file.chain_positive_ttl_secs.unwrap_or(60),
        chain_negative_ttl_secs: file.chain_negative_ttl_secs.unwrap_or(30),
        purge_interval_secs: file.purge_interval_secs.unwrap_or(60),
        replication,
        store: match a.store.as_deref().or(file.store.as_deref()) {
            Some(name) => name
                .parse()
                .map_err(|e: fio_l2_node::storage::StoreError| e.to_string())?,
            None => fio_l2_node::storage::DEFAULT_BACKEND,
        },
        trusted_proxies,
    };
    cfg.validate()?;
    Ok(cfg)
}

pub fn run(a: NodeArgs) -> Result<(), String> {
    let cfg = config_from(&a)?;
    init_logging(&a.log);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let node = fio_l2_node::server::start(cfg).await?;
        // One machine-readable line when ready, for scripts and tests.
        println!(
            "{}",
            serde_json::json!({"listen": node.addr.to_string(), "url": node.url(),
                "chain_id": hex::encode(node.state.chain_id), "node_id": node.state.node_id})
        );
        node.wait().await;
        Ok(())
    })
}

fn init_logging(filter: &str) {
    let level = match filter {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn replication_config(
    a: &NodeArgs,
    file: &FileConfig,
) -> fio_l2_node::replication::ReplicationConfig {
    let mut r = fio_l2_node::replication::ReplicationConfig {
        peers: if a.peer.is_empty() {
            file.peer.clone().unwrap_or_default()
        } else {
            a.peer.clone()
        },
        public_url: a.public_url.clone().or(file.public_url.clone()),
        serve_only_home: a.serve_only_home || file.serve_only_home.unwrap_or(false),
        ..Default::default()
    };
    if let Some(ms) = a.sync_interval_ms.or(file.sync_interval_ms) {
        r.sync_interval_ms = ms;
    }
    r
}
