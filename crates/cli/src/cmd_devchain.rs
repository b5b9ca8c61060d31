//! `fio-l2 devchain`: run a local FIO dev chain, or drive a running one's
//! `/v1/dev/*` endpoints (docs/chain.md). JSON on stdout, errors as `Err`.

use clap::{Args, Subcommand};
use fio_l2_chain::devchain;
use fio_l2_chain::{ClientConfig, HttpChain, Ownership};
use fio_l2_protocol::PublicKey;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

const DEFAULT_API: &str = "http://127.0.0.1:8889";

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevchainArgs {
    #[command(subcommand)]
    command: Option<DevchainCommand>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the ready line tells which).
    #[arg(long, default_value = "127.0.0.1:8889")]
    listen: SocketAddr,
    /// Data directory holding devchain.json (created if missing).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct Api {
    /// Base URL of the dev chain.
    #[arg(long, env = "FIO_L2_DEVCHAIN_API", default_value = DEFAULT_API)]
    api: String,
}

#[derive(Subcommand)]
enum DevchainCommand {
    /// Serve the dev chain (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Register a FIO Address for a public key (its domain too, if new).
    Register {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        address: String,
        /// Owner public key (FIO...).
        #[arg(long)]
        key: String,
    },
    /// Register a domain for a public key.
    RegisterDomain {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        domain: String,
        #[arg(long)]
        key: String,
        /// Make the domain private (others cannot register addresses on the real chain).
        #[arg(long)]
        private: bool,
        /// Expiration, unix seconds (default: one year from now).
        #[arg(long)]
        expiration: Option<u64>,
    },
    /// Set (or, without --key, remove) the FIP-39 encrypt key of an address.
    EncryptKey {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        address: String,
        #[arg(long)]
        key: Option<String>,
    },
    /// Map chain/token codes of an address to a public address (empty removes).
    SetPubAddress {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        address: String,
        #[arg(long)]
        chain_code: String,
        #[arg(long)]
        token_code: String,
        #[arg(long)]
        public_address: String,
    },
    /// Transfer an address to another public key.
    Transfer {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        address: String,
        /// New owner public key (FIO...).
        #[arg(long)]
        to: String,
    },
    /// Set a domain's expiration: N days ago, or an exact unix time.
    ExpireDomain {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        domain: String,
        #[arg(long, conflicts_with = "at")]
        days_ago: Option<u64>,
        #[arg(long)]
        at: Option<u64>,
    },
    /// Requests served per endpoint.
    Stats {
        #[command(flatten)]
        api: Api,
    },
    /// Ask any FIO API (dev or real) whether a key owns an address, as a relay would.
    Owner {
        #[command(flatten)]
        api: Api,
        #[arg(long)]
        address: String,
        #[arg(long)]
        key: String,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))
}

fn key_string(s: &str) -> Result<String, String> {
    PublicKey::parse(s.trim())
        .map(|k| k.to_fio_string())
        .map_err(|e| e.to_string())
}

pub fn run(args: DevchainArgs) -> Result<(), String> {
    let rt = runtime()?;
    match args.command {
        None => rt.block_on(serve(args.serve)),
        Some(DevchainCommand::Serve(s)) => rt.block_on(serve(s)),
        Some(cmd) => rt.block_on(action(cmd)),
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let data = args
        .data
        .ok_or("devchain needs --data DIR (where devchain.json lives)")?;
    let server = devchain::serve(args.listen, &data)
        .await
        .map_err(|e| format!("cannot start dev chain: {e}"))?;
    crate::util::print_json(&json!({
        "listen": server.addr.to_string(),
        "chain_id": server.chain.chain_id_hex(),
        "data": data.display().to_string(),
    }))?;
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // Serve until interrupted (SIGTERM/SIGKILL end the process anyway).
    match tokio::signal::ctrl_c().await {
        Ok(()) => server.shutdown().await,
        Err(_) => server.wait().await,
    }
    Ok(())
}

async fn dev_post(api: &str, action: &str, body: Value) -> Result<Value, String> {
    let url = format!("{}/v1/dev/{action}", api.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let v: Value = resp
        .json()
        .await
        .map_err(|e| format!("{url}: bad answer: {e}"))?;
    if !status.is_success() {
        return Err(format!("{url}: HTTP {}: {v}", status.as_u16()));
    }
    Ok(v)
}

async fn action(cmd: DevchainCommand) -> Result<(), String> {
    let v = match cmd {
        DevchainCommand::Serve(_) => return Err("unreachable".into()),
        DevchainCommand::Register { api, address, key } => {
            let body = json!({"address": address, "owner_public_key": key_string(&key)?});
            dev_post(&api.api, "register_address", body).await?
        }
        DevchainCommand::RegisterDomain {
            api,
            domain,
            key,
            private,
            expiration,
        } => {
            let body = json!({"domain": domain, "owner_public_key": key_string(&key)?,
                              "is_public": !private, "expiration": expiration});
            dev_post(&api.api, "register_domain", body).await?
        }
        DevchainCommand::EncryptKey { api, address, key } => {
            let key = key.as_deref().map(key_string).transpose()?;
            let body = json!({"address": address, "encrypt_public_key": key.unwrap_or_default()});
            dev_post(&api.api, "set_encrypt_key", body).await?
        }
        DevchainCommand::SetPubAddress {
            api,
            address,
            chain_code,
            token_code,
            public_address,
        } => {
            let body = json!({"address": address, "chain_code": chain_code,
                              "token_code": token_code, "public_address": public_address});
            dev_post(&api.api, "set_pub_address", body).await?
        }
        DevchainCommand::Transfer { api, address, to } => {
            let body = json!({"address": address, "new_owner_public_key": key_string(&to)?});
            dev_post(&api.api, "transfer_address", body).await?
        }
        DevchainCommand::ExpireDomain {
            api,
            domain,
            days_ago,
            at,
        } => {
            let body = json!({"domain": domain, "days_ago": days_ago, "expiration": at});
            dev_post(&api.api, "expire_domain", body).await?
        }
        DevchainCommand::Stats { api } => {
            let url = format!("{}/v1/dev/stats", api.api.trim_end_matches('/'));
            reqwest::get(&url)
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .json()
                .await
                .map_err(|e| format!("{url}: bad answer: {e}"))?
        }
        DevchainCommand::Owner { api, address, key } => {
            let key = PublicKey::parse(key.trim()).map_err(|e| e.to_string())?;
            let address =
                fio_l2_protocol::canonical_address(&address).map_err(|e| e.to_string())?;
            let chain = HttpChain::new(ClientConfig::new([api.api])).map_err(|e| e.to_string())?;
            let own = chain
                .check_owner(&key, &address)
                .await
                .map_err(|e| e.to_string())?;
            let (status, exp, grace) = match own {
                Ownership::Owned {
                    domain_expiration,
                    in_grace,
                } => ("owned", Some(domain_expiration), in_grace),
                Ownership::NotOwned => ("not_owned", None, false),
                Ownership::DomainExpired { domain_expiration } => {
                    ("domain_expired", Some(domain_expiration), false)
                }
            };
            json!({"address": address, "key": key.to_fio_string(), "actor": key.actor(),
                   "ownership": status, "domain_expiration": exp, "in_grace": grace})
        }
    };
    crate::util::print_json(&v)
}
