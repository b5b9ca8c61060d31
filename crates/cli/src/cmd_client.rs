//! Client commands against a relay node: `send`, `inbox`, `ack`.
//! Every message read is verified here too (signature, sender ownership on
//! the chain, decryption): a node is not trusted.

use crate::util::{now_unix, print_json, PrivateKeyArgs};
use clap::Args;
use fio_l2_chain::{ClientConfig, HttpChain, Ownership};
use fio_l2_node::auth::{make_proof_headers, RequestParts};
use fio_l2_protocol::cipher::{decrypt_content_between, encrypt_content, random_iv, shared_secret};
use fio_l2_protocol::envelope::parse_chain_id;
use fio_l2_protocol::{canonical_address, Message, PrivateKey, SignedMessage, TimePolicy};
use serde_json::{json, Value};

#[derive(Args, Clone)]
pub struct NodeTarget {
    /// The relay node's base URL.
    #[arg(long, env = "FIO_L2_NODE", default_value = "http://127.0.0.1:8080")]
    pub node: String,
    /// FIO API base URL for chain look-ups (repeatable) [default: the node's URL, as a --dev node serves one].
    #[arg(long = "fio-api", env = "FIO_L2_FIO_API", value_delimiter = ',')]
    pub fio_api: Vec<String>,
}

#[derive(Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    #[command(flatten)]
    pub key: PrivateKeyArgs,
    /// Sender FIO Address (owned by the private key).
    #[arg(long)]
    pub from: String,
    /// Recipient FIO Address.
    #[arg(long)]
    pub to: String,
    #[arg(long, default_value = "new_funds_content")]
    pub content_type: String,
    /// Time to live, seconds.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    pub ttl: u32,
    /// The content as a JSON object of the content type's fields.
    pub content_json: String,
}

#[derive(Args)]
pub struct InboxArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    #[command(flatten)]
    pub key: PrivateKeyArgs,
    /// The FIO Address whose inbox to read (owned by the private key).
    #[arg(long)]
    pub address: String,
    /// newest or oldest.
    #[arg(long, default_value = "newest")]
    pub order: String,
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// next_cursor of a previous page.
    #[arg(long)]
    pub cursor: Option<u64>,
}

#[derive(Args)]
pub struct AckArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    #[command(flatten)]
    pub key: PrivateKeyArgs,
    #[arg(long)]
    pub address: String,
    /// Message ids to delete.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

struct NodeInfo {
    chain_id: [u8; 32],
    node_id: String,
    policy: TimePolicy,
}

struct Session {
    http: reqwest::Client,
    base: String,
    chain: HttpChain,
    info: NodeInfo,
}

impl Session {
    async fn open(t: &NodeTarget) -> Result<Session, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let base = t.node.trim_end_matches('/').to_string();
        let info: Value = http
            .get(format!("{base}/v1/info"))
            .send()
            .await
            .map_err(|e| format!("node {base} does not answer: {e}"))?
            .json()
            .await
            .map_err(|e| format!("node {base} gave a bad /v1/info: {e}"))?;
        let chain_id = parse_chain_id(info["chain_id"].as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let node_id = info["node_id"]
            .as_str()
            .ok_or("node info lacks node_id")?
            .to_string();
        let lim = &info["limits"];
        let policy = TimePolicy {
            max_clock_skew: lim["max_clock_skew_secs"].as_u64().unwrap_or(300) as u32,
            max_ttl: lim["max_ttl_secs"].as_u64().unwrap_or(30 * 86400) as u32,
        };
        let endpoints = if t.fio_api.is_empty() {
            vec![base.clone()]
        } else {
            t.fio_api.clone()
        };
        let chain = HttpChain::new(ClientConfig::new(endpoints)).map_err(|e| e.to_string())?;
        // The node's chain id must be the chain we check against.
        let api_chain = chain
            .chain_id()
            .await
            .map_err(|e| format!("FIO API: {}", e.message()))?;
        if api_chain != chain_id {
            return Err("the node and the FIO API are on different chains".into());
        }
        Ok(Session {
            http,
            base,
            chain,
            info: NodeInfo {
                chain_id,
                node_id,
                policy,
            },
        })
    }

    fn proof(
        &self,
        key: &PrivateKey,
        address: &str,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> reqwest::header::HeaderMap {
        let req = RequestParts {
            method,
            path_and_query,
            body,
        };
        let mut h = reqwest::header::HeaderMap::new();
        for (name, value) in make_proof_headers(
            key,
            &self.info.chain_id,
            &self.info.node_id,
            address,
            now_unix(),
            &req,
        ) {
            h.insert(name, value.parse().expect("proof header values are ASCII"));
        }
        h
    }
}

fn rt() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

async fn answer(r: reqwest::Response) -> Result<Value, String> {
    let status = r.status();
    let v: Value = r
        .json()
        .await
        .map_err(|e| format!("bad answer ({status}): {e}"))?;
    if !status.is_success() {
        return Err(format!("node refused ({status}): {}", v["error"]));
    }
    Ok(v)
}

pub fn send(a: SendArgs) -> Result<(), String> {
    let key = a.key.load()?;
    rt()?.block_on(async {
        let s = Session::open(&a.target).await?;
        let sender = canonical_address(&a.from).map_err(|e| e.to_string())?;
        let recipient = canonical_address(&a.to).map_err(|e| e.to_string())?;
        let recipient_key = s
            .chain
            .encrypt_key(&recipient)
            .await
            .map_err(|e| format!("{recipient}: {}", e.message()))?;
        let content: Value = serde_json::from_str(&a.content_json)
            .map_err(|e| format!("content is not JSON: {e}"))?;
        let secret = shared_secret(&key, &recipient_key);
        let created = u32::try_from(now_unix()).map_err(|_| "clock past 2106")?;
        let m = Message {
            version: 1,
            content_type: a.content_type.clone(),
            sender,
            recipient,
            sender_key: key.public_key(),
            sender_encrypt_key: key.public_key(),
            recipient_encrypt_key: recipient_key,
            created,
            expires: created.saturating_add(a.ttl),
            nonce: 0,
            content: encrypt_content(&secret, &a.content_type, &content, &random_iv())
                .map_err(|e| e.to_string())?,
        };
        let signed = m.sign(&key, &s.info.chain_id).map_err(|e| e.to_string())?;
        let r = s
            .http
            .post(format!("{}/v1/messages", s.base))
            .json(&signed.to_json_value(false))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let mut v = answer(r).await?;
        v["http_status"] = json!(status);
        print_json(&v)
    })
}

/// Verify one inbox entry as a wallet must: nothing from the node is trusted.
async fn open_entry(s: &Session, key: &PrivateKey, address: &str, entry: &Value) -> Value {
    let mut problems: Vec<String> = vec![];
    let env = &entry["envelope"];
    let parsed = serde_json::to_vec(env)
        .map_err(|e| e.to_string())
        .and_then(|b| SignedMessage::from_json(&b).map_err(|e| e.to_string()));
    let msg = match parsed {
        Ok(m) => m,
        Err(e) => {
            return json!({"seq": entry["seq"], "id": env["id"], "verified": false, "problems": [format!("malformed envelope: {e}")], "content": null});
        }
    };
    let m = msg.message();
    if let Err(e) = msg.verify_signature(&s.info.chain_id) {
        problems.push(format!("forged: {e}"));
    }
    if m.recipient != address {
        problems.push(format!("addressed to {}, not {address}", m.recipient));
    }
    if let Err(e) = msg.check_time(
        now_unix(),
        &TimePolicy {
            max_ttl: u32::MAX,
            ..s.info.policy
        },
    ) {
        problems.push(format!("time: {e}"));
    }
    match s.chain.check_owner(&m.sender_key, &m.sender).await {
        Ok(Ownership::Owned { .. }) => {}
        Ok(other) => problems.push(format!("sender_key does not own {} ({other:?})", m.sender)),
        Err(e) => problems.push(format!(
            "could not check {} on the chain: {}",
            m.sender,
            e.message()
        )),
    }
    let content = if problems.is_empty() {
        match decrypt_content_between(key, &m.sender_encrypt_key, &m.content_type, &m.content) {
            Ok(c) => c,
            Err(e) => {
                problems.push(format!("cannot decrypt: {e}"));
                Value::Null
            }
        }
    } else {
        Value::Null
    };
    json!({
        "seq": entry["seq"], "id": msg.id_hex(), "verified": problems.is_empty(), "problems": problems,
        "sender": m.sender, "recipient": m.recipient, "content_type": m.content_type,
        "created": m.created, "expires": m.expires, "pow_bits": msg.pow_bits(), "content": content,
    })
}

pub fn inbox(a: InboxArgs) -> Result<(), String> {
    let key = a.key.load()?;
    rt()?.block_on(async {
        let s = Session::open(&a.target).await?;
        let address = canonical_address(&a.address).map_err(|e| e.to_string())?;
        let mut pq = format!("/v1/inbox/{address}?order={}&limit={}", a.order, a.limit);
        if let Some(c) = a.cursor {
            pq.push_str(&format!("&cursor={c}"));
        }
        let headers = s.proof(&key, &address, "GET", &pq, b"");
        let r = s
            .http
            .get(format!("{}{pq}", s.base))
            .headers(headers)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let page = answer(r).await?;
        let mut out = vec![];
        for entry in page["messages"].as_array().cloned().unwrap_or_default() {
            out.push(open_entry(&s, &key, &address, &entry).await);
        }
        print_json(
            &json!({"address": address, "messages": out, "next_cursor": page["next_cursor"]}),
        )
    })
}

pub fn ack(a: AckArgs) -> Result<(), String> {
    let key = a.key.load()?;
    rt()?.block_on(async {
        let s = Session::open(&a.target).await?;
        let address = canonical_address(&a.address).map_err(|e| e.to_string())?;
        let pq = format!("/v1/inbox/{address}/ack");
        let body = serde_json::to_vec(&json!({"ids": a.ids})).map_err(|e| e.to_string())?;
        let headers = s.proof(&key, &address, "POST", &pq, &body);
        let r = s
            .http
            .post(format!("{}{pq}", s.base))
            .headers(headers)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        print_json(&answer(r).await?)
    })
}
