//! Shared helpers for the integration tests of the `fio-l2` binary: start real
//! node processes (killed on drop, also on panic), register names on their
//! embedded dev chain, build and sign envelopes, make owner proofs, read inboxes.
#![allow(dead_code)]

use fio_l2_node::auth::{make_proof_headers, RequestParts};
use fio_l2_protocol::cipher::{encrypt_content, random_iv, shared_secret};
use fio_l2_protocol::envelope::parse_chain_id;
use fio_l2_protocol::{Message, PrivateKey, SignedMessage};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_fio-l2");

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn now32() -> u32 {
    u32::try_from(now()).unwrap()
}

/// A `fio-l2 node --dev` child process. Dropping it kills it (SIGKILL) and reaps it.
pub struct Node {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub url: String,
    pub chain_id: [u8; 32],
    pub node_id: String,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Node {
    /// Start a dev node on 127.0.0.1:0 with data dir `data`; waits for its ready line.
    pub fn start(data: &Path, extra: &[&str]) -> Node {
        let mut args: Vec<String> = ["node", "--dev", "--listen", "127.0.0.1:0", "--log", "warn"]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::spawn(data, args)
    }

    /// Spawn `fio-l2 <args> --data <data>` with stderr to a log file beside
    /// `data`, and wait for its one-line JSON ready message.
    fn spawn(data: &Path, args: Vec<String>) -> Node {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension(format!(
            "{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(BIN)
            .args(&args)
            .arg("--data")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn fio-l2 node");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let n = out.read_line(&mut line).unwrap_or(0);
        if n == 0 {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node did not print its ready line; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let ready: Value = serde_json::from_str(line.trim()).expect("ready line is JSON");
        Node {
            child,
            _stdout: out,
            url: ready["url"].as_str().unwrap().to_string(),
            chain_id: parse_chain_id(ready["chain_id"].as_str().unwrap()).unwrap(),
            node_id: ready["node_id"].as_str().unwrap().to_string(),
            data: data.to_path_buf(),
            log,
        }
    }

    /// SIGKILL now (no graceful shutdown), and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A FIO Address and the key that owns it.
#[derive(Clone)]
pub struct Party {
    pub key: PrivateKey,
    pub address: String,
}

impl Party {
    pub fn new(seed: &str, address: &str) -> Party {
        Party {
            key: PrivateKey::from_seed(seed),
            address: address.to_string(),
        }
    }
    pub fn pubkey(&self) -> String {
        self.key.public_key().to_fio_string()
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Register `p.address` to `p.key` on the node's dev chain.
pub async fn register(c: &reqwest::Client, url: &str, p: &Party) {
    let r = c
        .post(format!("{url}/v1/dev/register_address"))
        .json(&json!({"address": p.address, "owner_public_key": p.pubkey()}))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let body = r.text().await.unwrap();
    assert!(st.is_success(), "register {}: {st} {body}", p.address);
}

pub fn funds(memo: &str) -> Value {
    json!({"payee_public_address": "0xabc", "amount": "1.5", "chain_code": "ETH",
           "token_code": "ETH", "memo": memo})
}

/// An unsigned, valid new_funds_content message from `from` to `to`.
pub fn message(from: &Party, to: &Party, memo: &str) -> Message {
    let created = now32();
    message_at(from, to, memo, created, created + 3600)
}

pub fn message_at(from: &Party, to: &Party, memo: &str, created: u32, expires: u32) -> Message {
    let rk = to.key.public_key();
    let secret = shared_secret(&from.key, &rk);
    let content =
        encrypt_content(&secret, "new_funds_content", &funds(memo), &random_iv()).unwrap();
    Message {
        version: 1,
        content_type: "new_funds_content".into(),
        sender: from.address.clone(),
        recipient: to.address.clone(),
        sender_key: from.key.public_key(),
        sender_encrypt_key: from.key.public_key(),
        recipient_encrypt_key: rk,
        created,
        expires,
        nonce: 0,
        content,
    }
}

pub fn signed(from: &Party, to: &Party, memo: &str, chain_id: &[u8; 32]) -> SignedMessage {
    message(from, to, memo).sign(&from.key, chain_id).unwrap()
}

/// POST raw bytes to /v1/messages; (status, JSON body or Null).
pub async fn post_raw(c: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    let r = c
        .post(format!("{url}/v1/messages"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn post_msg(c: &reqwest::Client, url: &str, m: &SignedMessage) -> (u16, Value) {
    post_raw(c, url, serde_json::to_vec(&m.to_json_value(false)).unwrap()).await
}

pub fn proof(
    node: &Node,
    key: &PrivateKey,
    address: &str,
    method: &str,
    pq: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    proof_for(
        &node.chain_id,
        &node.node_id,
        key,
        address,
        method,
        pq,
        body,
    )
}

pub fn proof_for(
    chain_id: &[u8; 32],
    node_id: &str,
    key: &PrivateKey,
    address: &str,
    method: &str,
    pq: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    make_proof_headers(
        key,
        chain_id,
        node_id,
        address,
        now(),
        &RequestParts {
            method,
            path_and_query: pq,
            body,
        },
    )
}

/// GET `pq` with the given headers: (status, JSON body or Null).
pub async fn get_with(
    c: &reqwest::Client,
    url: &str,
    pq: &str,
    headers: &[(&str, String)],
) -> (u16, Value) {
    let mut rb = c.get(format!("{url}{pq}"));
    for (k, v) in headers {
        rb = rb.header(*k, v);
    }
    let r = rb.send().await.unwrap();
    let st = r.status().as_u16();
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// GET an inbox page with a fresh owner proof.
pub async fn inbox_page(c: &reqwest::Client, node: &Node, owner: &Party, query: &str) -> Value {
    let pq = format!("/v1/inbox/{}{query}", owner.address);
    let h = proof(node, &owner.key, &owner.address, "GET", &pq, b"");
    let (st, v) = get_with(c, &node.url, &pq, &h).await;
    assert_eq!(st, 200, "inbox {pq}: {v}");
    v
}

/// Every envelope of an inbox (oldest first), following cursors.
pub async fn inbox_all(c: &reqwest::Client, node: &Node, owner: &Party) -> Vec<Value> {
    let mut out = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let q = match &cursor {
            Some(cur) => format!("?order=oldest&limit=200&cursor={cur}"),
            None => "?order=oldest&limit=200".to_string(),
        };
        let page = inbox_page(c, node, owner, &q).await;
        out.extend(page["messages"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => return out,
        }
    }
}

pub async fn inbox_ids(c: &reqwest::Client, node: &Node, owner: &Party) -> Vec<String> {
    inbox_all(c, node, owner)
        .await
        .iter()
        .map(|e| e["envelope"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// POST an ack with a fresh proof.
pub async fn ack(c: &reqwest::Client, node: &Node, owner: &Party, ids: &[String]) -> (u16, Value) {
    let pq = format!("/v1/inbox/{}/ack", owner.address);
    let body = serde_json::to_vec(&json!({ "ids": ids })).unwrap();
    let mut rb = c
        .post(format!("{}{pq}", node.url))
        .header("content-type", "application/json");
    for (k, v) in proof(node, &owner.key, &owner.address, "POST", &pq, &body) {
        rb = rb.header(k, v);
    }
    let r = rb.body(body).send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

pub async fn health_count(c: &reqwest::Client, url: &str) -> u64 {
    let v: Value = c
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["messages"].as_u64().expect("health has messages")
}

/// Run the binary (blocking) with extra environment; (exit ok, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run fio-l2");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `run_cli` off the async runtime.
pub async fn run_cli_async(
    args: Vec<String>,
    env: Vec<(String, String)>,
) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli(&a, &e)
    })
    .await
    .unwrap()
}

/// Poll `f` until it returns Some, or panic after `secs` seconds.
pub async fn poll<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---- spam resistance helpers (crates/cli/tests/spam*.rs) ----

/// Write a node TOML config holding `[limits]` lines; returns its path
/// (start the node with `&["--config", path]`).
pub fn limits_config(dir: &Path, name: &str, limits_toml: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, format!("[limits]\n{limits_toml}\n")).unwrap();
    p
}

/// GET /v1/info.
pub async fn info(c: &reqwest::Client, url: &str) -> Value {
    c.get(format!("{url}/v1/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A client whose connections come from `ip` (any 127.x.y.z on Linux loopback).
pub fn http_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(Some(ip.parse().unwrap()))
        .build()
        .unwrap()
}

/// POST raw bytes to /v1/messages: (status, JSON body or Null, Retry-After).
pub async fn post_raw_ra(
    c: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> (u16, Value, Option<u64>) {
    let r = c
        .post(format!("{url}/v1/messages"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let ra = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = r.text().await.unwrap();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null), ra)
}

pub async fn post_msg_ra(
    c: &reqwest::Client,
    url: &str,
    m: &SignedMessage,
) -> (u16, Value, Option<u64>) {
    post_raw_ra(c, url, serde_json::to_vec(&m.to_json_value(false)).unwrap()).await
}

/// Assert a refusal: status, error code, and (for 429/503) a Retry-After.
pub fn assert_refused(got: &(u16, Value, Option<u64>), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    if status == 429 || status == 503 {
        assert!(got.2.unwrap_or(0) >= 1, "no Retry-After: {:?}", got);
    }
}

/// A message whose id has at least `bits` leading zero bits (nonce search).
pub fn signed_pow(
    from: &Party,
    to: &Party,
    memo: &str,
    chain_id: &[u8; 32],
    bits: u32,
) -> SignedMessage {
    let mut m = message(from, to, memo);
    while m.pow_bits() < bits {
        m.nonce += 1;
    }
    m.sign(&from.key, chain_id).unwrap()
}

/// A message signed by `signer` claiming to be from `from` (a forgery when
/// `signer` does not own `from.address`).
pub fn signed_by(
    from: &Party,
    signer: &PrivateKey,
    to: &Party,
    memo: &str,
    chain_id: &[u8; 32],
) -> SignedMessage {
    let mut m = message(from, to, memo);
    m.sender_key = signer.public_key();
    m.sender_encrypt_key = signer.public_key();
    m.sign(signer, chain_id).unwrap()
}

/// A recipient policy for `owner`, signed by `signer` (the owner, or not).
#[allow(clippy::too_many_arguments)]
pub fn policy_doc(
    owner: &Party,
    signer: &PrivateKey,
    chain_id: &[u8; 32],
    updated: u64,
    allow: &[&str],
    block: &[&str],
    contacts_only: bool,
    min_pow_bits: u32,
    max_content_bytes: u64,
) -> Value {
    let doc = fio_l2_node::policy::PolicyDoc {
        version: 1,
        address: owner.address.clone(),
        owner_key: String::new(),
        updated,
        allow: allow.iter().map(|s| s.to_string()).collect(),
        block: block.iter().map(|s| s.to_string()).collect(),
        contacts_only,
        min_pow_bits,
        max_content_bytes,
        signature: String::new(),
    }
    .sign(signer, chain_id);
    serde_json::to_value(doc).unwrap()
}

/// PUT /v1/policy/{address}: (status, JSON body).
pub async fn put_policy(
    c: &reqwest::Client,
    url: &str,
    address: &str,
    doc: &Value,
) -> (u16, Value) {
    let r = c
        .put(format!("{url}/v1/policy/{address}"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(doc).unwrap())
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

// ---- replication helpers (multi-node on one shared dev chain) ----------------

/// A `fio-l2 devchain` child process. Dropping it kills it.
pub struct DevChainProc {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub url: String,
    pub chain_id: [u8; 32],
}

impl DevChainProc {
    pub fn start(data: &Path) -> DevChainProc {
        std::fs::create_dir_all(data).unwrap();
        let mut child = Command::new(BIN)
            .args(["devchain", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fio-l2 devchain");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let ready: Value = serde_json::from_str(line.trim()).expect("devchain ready line");
        DevChainProc {
            child,
            _stdout: out,
            url: format!("http://{}", ready["listen"].as_str().unwrap()),
            chain_id: parse_chain_id(ready["chain_id"].as_str().unwrap()).unwrap(),
        }
    }
}

impl Drop for DevChainProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound then released; a race is unlikely in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    /// Start a node (not --dev) on a fixed port against the FIO API `fio_api`,
    /// with `--peer` for each of `peers`; waits for its ready line.
    pub fn start_peer(
        data: &Path,
        port: u16,
        fio_api: &str,
        peers: &[String],
        extra: &[&str],
    ) -> Node {
        let mut args: Vec<String> = ["node", "--log", "info", "--fio-api", fio_api, "--listen"]
            .map(String::from)
            .to_vec();
        args.push(format!("127.0.0.1:{port}"));
        for p in peers {
            args.extend(["--peer".to_string(), p.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::spawn(data, args)
    }
}

/// GET /v1/peers of a node.
pub async fn peers_status(c: &reqwest::Client, url: &str) -> Value {
    c.get(format!("{url}/v1/peers"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// POST a JSON array of envelopes; the per-element results.
pub async fn post_batch(c: &reqwest::Client, url: &str, msgs: &[SignedMessage]) -> Vec<Value> {
    let body: Vec<Value> = msgs.iter().map(|m| m.to_json_value(false)).collect();
    let (st, v) = post_raw(c, url, serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(st, 200, "{v}");
    v["results"].as_array().unwrap().clone()
}

/// A TCP proxy on loopback that a test can cut (refuse and drop every
/// connection) and heal.
pub struct CutProxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on `port` (0: any) and forwards to 127.0.0.1:`to`.
    pub async fn start(port: u16, to: u16) -> CutProxy {
        use std::sync::atomic::Ordering;
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = l.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (cut2, conns2) = (cut.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut a, _)) = l.accept().await else {
                    continue;
                };
                if cut2.load(Ordering::SeqCst) {
                    drop(a);
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut b) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                    }
                });
                conns2.lock().unwrap().push(h.abort_handle());
            }
        });
        CutProxy {
            port,
            cut,
            conns,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Refuse new connections and drop the open ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
}

/// A fake peer on loopback: it answers `GET /v1/info` with `node_id` on the
/// chain `chain_id` (so a node configured with it learns its identity) and
/// 404 to everything else. Returns its URL.
pub async fn spawn_fake_peer(node_id: &str, chain_id: &[u8; 32]) -> String {
    let info = json!({"node_id": node_id, "chain_id": hex::encode(chain_id)}).to_string();
    fake_http(vec![("/v1/info".to_string(), info)]).await
}

/// An HTTP server on loopback that answers 200 with a canned JSON body per
/// path prefix, like a (lying) node would, and 404 to everything else.
/// Returns its URL.
pub async fn fake_http(routes: Vec<(String, String)>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let routes = routes.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![];
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = routes
                    .iter()
                    .find(|(p, _)| path.starts_with(p.as_str()))
                    .map(|(_, b)| ("200 OK", b.clone()))
                    .unwrap_or(("404 Not Found", "{}".to_string()));
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}
