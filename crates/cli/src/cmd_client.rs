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
    /// Proof of work to reach (leading zero bits of the id) [default: what
    /// the node (/v1/info) or the recipient's policy asks of this sender].
    #[arg(long)]
    pub pow_bits: Option<u32>,
    /// Do not deliver to the recipient's home nodes (its FIOL2/NODE mapping); only to --node.
    #[arg(long)]
    pub no_home: bool,
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
        let bits = match a.pow_bits {
            Some(b) => b,
            None => required_pow(&s, &m.sender, &m.recipient).await?,
        };
        let mut m = m;
        if bits > 0 {
            m.nonce = find_nonce(&m, bits)?;
        }
        let signed = m.sign(&key, &s.info.chain_id).map_err(|e| e.to_string())?;
        // Home-node mode: the recipient's published nodes first (docs/replication.md).
        if !a.no_home {
            if let Some(v) = send_home(&s, &signed).await {
                return print_json(&v);
            }
        }
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
        v["node"] = json!(s.base);
        print_json(&v)
    })
}

/// The proof of work `sender` needs for `recipient` at this node: the node's
/// minimum (/v1/info `policy.min_pow_bits`) unless the recipient's policy
/// allows the sender, and at least what that policy asks.
async fn required_pow(s: &Session, sender: &str, recipient: &str) -> Result<u32, String> {
    let info: Value = s
        .http
        .get(format!("{}/v1/info", s.base))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let node_min = info["policy"]["min_pow_bits"].as_u64().unwrap_or(0) as u32;
    let r = s
        .http
        .get(format!("{}/v1/policy/{recipient}", s.base))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status().as_u16() == 404 {
        return Ok(node_min);
    }
    let doc: fio_l2_node::policy::PolicyDoc = r
        .json()
        .await
        .map_err(|e| format!("bad policy of {recipient}: {e}"))?;
    Ok(match doc.decide(sender) {
        fio_l2_node::policy::Decision::Allowed => 0,
        fio_l2_node::policy::Decision::Blocked => {
            eprintln!("warning: {recipient}'s policy blocks {sender}; the node will refuse");
            0
        }
        fio_l2_node::policy::Decision::Neutral => {
            if doc.contacts_only {
                eprintln!("warning: {recipient} accepts only its contacts; the node will refuse");
            }
            node_min.max(doc.min_pow_bits)
        }
    })
}

fn leading_zero_bits(h: &[u8; 32]) -> u32 {
    let mut n = 0;
    for b in h {
        if *b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// A nonce giving `sha256(packed)` at least `bits` leading zero bits, searched
/// on all cores (thread t tries t, t+T, ...), with progress on stderr.
pub fn find_nonce(m: &Message, bits: u32) -> Result<u64, String> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const MAX_NONCE: u64 = (1 << 53) - 1;
    if bits > 64 {
        return Err("at most 64 bits of proof of work".into());
    }
    // The nonce's place in `packed`: where nonce 0 and nonce MAX differ.
    let a = Message {
        nonce: 0,
        ..m.clone()
    }
    .pack();
    let b = Message {
        nonce: u64::MAX,
        ..m.clone()
    }
    .pack();
    let off = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .ok_or("no nonce field")?;
    let (prefix, suffix) = (&a[..off], &a[off + 8..]);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let found = AtomicU64::new(u64::MAX);
    let stop = AtomicBool::new(false);
    let tries = AtomicU64::new(0);
    let start = std::time::Instant::now();
    std::thread::scope(|sc| {
        for t in 0..threads {
            let (found, stop, tries) = (&found, &stop, &tries);
            sc.spawn(move || {
                let mut n = t;
                let mut local = 0u64;
                while n <= MAX_NONCE && !stop.load(Ordering::Relaxed) {
                    let nb = n.to_le_bytes();
                    let h = fio_l2_protocol::hash::sha256_parts(&[prefix, &nb, suffix]);
                    if leading_zero_bits(&h) >= bits {
                        found.fetch_min(n, Ordering::Relaxed);
                        stop.store(true, Ordering::Relaxed);
                    }
                    n += threads;
                    local += 1;
                    if local == 4096 {
                        tries.fetch_add(local, Ordering::Relaxed);
                        local = 0;
                    }
                }
                tries.fetch_add(local, Ordering::Relaxed);
            });
        }
        let mut last = std::time::Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(50));
            if last.elapsed().as_secs_f64() >= 1.0 {
                last = std::time::Instant::now();
                let n = tries.load(Ordering::Relaxed);
                eprint!(
                    "\rproof of work: {bits} bits, {n} tries ({:.0}/s on {threads} threads, ~{:.0} expected)",
                    n as f64 / start.elapsed().as_secs_f64(),
                    2f64.powi(bits as i32)
                );
            }
            if found.load(Ordering::Relaxed) == u64::MAX
                && tries.load(Ordering::Relaxed) > MAX_NONCE
            {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let n = found.load(Ordering::Relaxed);
    if n == u64::MAX {
        return Err(format!("no nonce gives {bits} bits of proof of work"));
    }
    eprintln!(
        "\rproof of work: {bits} bits after {} tries in {:.2?} (nonce {n})",
        tries.load(Ordering::Relaxed),
        start.elapsed()
    );
    Ok(n)
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
        // A deletion record any node can verify, so the deletion replicates
        // (docs/replication.md).
        let deletion = fio_l2_node::replication::deletion::sign(
            &key,
            &s.info.chain_id,
            &address,
            now_unix(),
            &a.ids,
        );
        let body = serde_json::to_vec(&json!({"ids": a.ids, "deletion": deletion}))
            .map_err(|e| e.to_string())?;
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

/// Delivers to the recipient's home nodes (its `FIOL2`/`NODE` public address
/// mapping), in order; the first that accepts wins. None: no mapping, or
/// none accepted (the caller falls back to `--node`).
async fn send_home(s: &Session, signed: &SignedMessage) -> Option<Value> {
    use fio_l2_node::replication::home;
    let recipient = &signed.message().recipient;
    let value = s
        .chain
        .pub_address(recipient, home::CHAIN_CODE, home::TOKEN_CODE)
        .await
        .ok()?;
    for url in home::parse_urls(&value) {
        let r = s
            .http
            .post(format!("{url}/v1/messages"))
            .json(&signed.to_json_value(false))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                let status = r.status().as_u16();
                if let Ok(mut v) = r.json::<Value>().await {
                    v["http_status"] = json!(status);
                    v["node"] = json!(url);
                    return Some(v);
                }
            }
            Ok(r) => eprintln!("home node {url} refused ({}); trying the next", r.status()),
            Err(e) => eprintln!("home node {url} unreachable ({e}); trying the next"),
        }
    }
    None
}
