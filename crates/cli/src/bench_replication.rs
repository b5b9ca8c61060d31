//! `fio-l2 bench replication`: in one run, N node processes of this binary in
//! a full mesh on loopback, one dev chain process: (1) propagation latency
//! from submission at one node to visibility (a live SSE event) at all; (2)
//! bytes per repair round when in step; (3) catch-up of a node that missed
//! many messages: time, and bytes on the wire against the missing envelopes'
//! size. docs/BENCHMARKS.md, "Replication".

use crate::bench_util::Party;
use base64::Engine;
use fio_l2_node::auth::{make_proof_headers, RequestParts};
use fio_l2_protocol::cipher::{encrypt_bytes, BASE64};
use fio_l2_protocol::{Message, SignedMessage};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct ReplicationBenchArgs {
    /// Nodes in the mesh.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Messages the last node misses while it is down.
    #[arg(long, default_value_t = 100_000)]
    pub missing: usize,
    /// Messages whose propagation latency is measured.
    #[arg(long, default_value_t = 300)]
    pub samples: usize,
    /// Repair interval of every node, milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub sync_interval_ms: u64,
    /// Working directory [default: a temporary one].
    #[arg(long)]
    pub data: Option<PathBuf>,
}

struct Proc {
    child: Child,
    url: String,
    node_id: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[String], log: &Path) -> Result<(Proc, Value), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    let out = child.stdout.take().ok_or("no stdout")?;
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("{args:?} did not start: {e} ({line})"))?;
    let url = match v["url"].as_str() {
        Some(u) => u.to_string(),
        None => format!("http://{}", v["listen"].as_str().unwrap_or_default()),
    };
    let node_id = v["node_id"].as_str().unwrap_or_default().to_string();
    Ok((
        Proc {
            child,
            url,
            node_id,
        },
        v,
    ))
}

fn free_port() -> Result<u16, String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port())
}

struct Mesh {
    dir: PathBuf,
    chain_url: String,
    ports: Vec<u16>,
    sync_ms: u64,
}

impl Mesh {
    fn start_node(&self, i: usize) -> Result<Proc, String> {
        let mut args: Vec<String> = [
            "node",
            "--log",
            "warn",
            "--fio-api",
            &self.chain_url,
            "--listen",
            &format!("127.0.0.1:{}", self.ports[i]),
            "--sync-interval-ms",
            &self.sync_ms.to_string(),
            "--data",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(self.dir.join(format!("n{i}")).display().to_string());
        for (j, p) in self.ports.iter().enumerate() {
            if j != i {
                args.push("--peer".into());
                args.push(format!("http://127.0.0.1:{p}"));
            }
        }
        Ok(spawn(&args, &self.dir.join(format!("n{i}.log")))?.0)
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[k].as_secs_f64() * 1000.0
}

async fn get_json(c: &reqwest::Client, url: &str) -> Result<Value, String> {
    c.get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

async fn health(c: &reqwest::Client, url: &str) -> u64 {
    get_json(c, &format!("{url}/health"))
        .await
        .ok()
        .and_then(|v| v["messages"].as_u64())
        .unwrap_or(0)
}

/// Sum of body bytes (in + out) and repair rounds over the peers of `url`
/// whose URL is in `only` (all if empty).
async fn wire(c: &reqwest::Client, url: &str, only: &[String]) -> (u64, u64) {
    let v = get_json(c, &format!("{url}/v1/peers"))
        .await
        .unwrap_or(Value::Null);
    let mut bytes = 0;
    let mut rounds = 0;
    for p in v["peers"].as_array().cloned().unwrap_or_default() {
        let u = p["url"].as_str().unwrap_or_default().to_string();
        if only.is_empty() || only.contains(&u) {
            bytes += p["bytes_in"].as_u64().unwrap_or(0) + p["bytes_out"].as_u64().unwrap_or(0);
            rounds += p["repair_rounds"].as_u64().unwrap_or(0);
        }
    }
    (bytes, rounds)
}

/// `n` signed messages from senders to recipients (round robin), nonce-varied.
fn sign_many(
    senders: &[Party],
    recipients: &[Party],
    content: &str,
    chain_id: &[u8; 32],
    n: usize,
    nonce_base: u64,
) -> Vec<SignedMessage> {
    let created = crate::util::now_unix() as u32;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| {
                            let from = &senders[i % senders.len()];
                            let to = &recipients[(i / senders.len()) % recipients.len()];
                            Message {
                                version: 1,
                                content_type: "new_funds_content".into(),
                                sender: from.address.clone(),
                                recipient: to.address.clone(),
                                sender_key: from.public,
                                sender_encrypt_key: from.public,
                                recipient_encrypt_key: to.public,
                                created,
                                expires: created + 3 * 86_400,
                                nonce: nonce_base + i as u64,
                                content: content.to_string(),
                            }
                            .sign(&from.key, chain_id)
                            .expect("valid message")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("signer thread"))
            .collect()
    })
}

pub fn run(a: ReplicationBenchArgs) -> Result<(), String> {
    if a.nodes < 2 {
        return Err("at least 2 nodes".into());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(run_async(a))
}

async fn run_async(a: ReplicationBenchArgs) -> Result<(), String> {
    let tmp = tempfile_dir(&a.data)?;
    let dir = tmp.0.clone();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    // Chain, parties.
    let chain_args: Vec<String> = ["devchain", "--listen", "127.0.0.1:0", "--data"]
        .iter()
        .map(|s| s.to_string())
        .chain([dir.join("chain").display().to_string()])
        .collect();
    let (_chain, ready) = spawn(&chain_args, &dir.join("chain.log"))?;
    let chain_url = format!("http://{}", ready["listen"].as_str().unwrap_or_default());
    let chain_id =
        fio_l2_protocol::envelope::parse_chain_id(ready["chain_id"].as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
    let mk = |p: &str, n: usize| -> Vec<Party> {
        (0..n)
            .map(|i| Party::new(&format!("bench-repl-{p}-{i}"), &format!("{p}{i}@bench")))
            .collect()
    };
    // Spread over many senders and recipients, so per-sender/recipient rate
    // limits (docs/spam.md) are not what is measured.
    let senders = mk("s", 100);
    let recipients = mk("r", 20);
    for p in senders.iter().chain(&recipients) {
        crate::bench_util::register(&c, &chain_url, p).await?;
    }
    let content = BASE64.encode(encrypt_bytes(&[7u8; 64], &[1u8; 300], &[2u8; 16]));

    // Nodes.
    let mesh = Mesh {
        dir: dir.clone(),
        chain_url: chain_url.clone(),
        ports: (0..a.nodes)
            .map(|_| free_port())
            .collect::<Result<_, _>>()?,
        sync_ms: a.sync_interval_ms,
    };
    let mut nodes: Vec<Proc> = (0..a.nodes)
        .map(|i| mesh.start_node(i))
        .collect::<Result<_, _>>()?;
    // Wait until every node has identified every peer.
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in &nodes {
        loop {
            let v = get_json(&c, &format!("{}/v1/peers", n.url))
                .await
                .unwrap_or(Value::Null);
            let ok = v["peers"].as_array().is_some_and(|ps| {
                ps.iter()
                    .all(|p| p["node_id"].is_string() && p["last_sync"].is_u64())
            });
            if ok {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not identify its peers: {v}", n.url));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eprintln!("{} nodes up, full mesh", a.nodes);

    // 1. Propagation latency: live events at every node for one recipient.
    let watched = &recipients[0];
    let arrivals: Arc<Mutex<HashMap<String, Vec<Option<Instant>>>>> = Default::default();
    let sse = reqwest::Client::new();
    let mut subs = vec![];
    for (k, n) in nodes.iter().enumerate() {
        let pq = format!("/v1/inbox/{}/events", watched.address);
        let headers = make_proof_headers(
            &watched.key,
            &chain_id,
            &n.node_id,
            &watched.address,
            crate::util::now_unix(),
            &RequestParts {
                method: "GET",
                path_and_query: &pq,
                body: b"",
            },
        );
        let mut rb = sse.get(format!("{}{pq}", n.url));
        for (h, v) in headers {
            rb = rb.header(h, v);
        }
        let mut resp = rb.send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("subscribe at {}: {}", n.url, resp.status()));
        }
        let (arr, total) = (arrivals.clone(), a.nodes);
        subs.push(tokio::spawn(async move {
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                let at = Instant::now();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let ev: String = buf.drain(..end + 2).collect();
                    for line in ev.lines() {
                        let Some(data) = line.strip_prefix("data:") else {
                            continue;
                        };
                        let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
                            continue;
                        };
                        if let Some(id) = v["envelope"]["id"].as_str() {
                            let mut m = arr.lock().unwrap_or_else(|p| p.into_inner());
                            let e = m.entry(id.to_string()).or_insert_with(|| vec![None; total]);
                            e[k].get_or_insert(at);
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lat_msgs = sign_many(
        &senders[..10],
        std::slice::from_ref(watched),
        &content,
        &chain_id,
        a.samples,
        1 << 40,
    );
    let mut sent: Vec<(String, Instant)> = vec![];
    let mut accept = vec![];
    for (i, m) in lat_msgs.iter().enumerate() {
        let origin = &nodes[i % a.nodes];
        let t0 = Instant::now();
        let r = c
            .post(format!("{}/v1/messages", origin.url))
            .json(&m.to_json_value(false))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status().as_u16() != 201 {
            return Err(format!("submit: {} {:?}", r.status(), r.text().await));
        }
        accept.push(t0.elapsed());
        sent.push((m.id_hex(), t0));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lat = vec![];
    let mut missing_events = 0;
    {
        let m = arrivals.lock().unwrap_or_else(|p| p.into_inner());
        for (id, t0) in &sent {
            match m
                .get(id)
                .map(|v| v.iter().copied().collect::<Option<Vec<_>>>())
            {
                Some(Some(ts)) => lat.push(
                    ts.iter()
                        .map(|t| t.duration_since(*t0))
                        .max()
                        .unwrap_or_default(),
                ),
                _ => missing_events += 1,
            }
        }
    }
    for s in subs {
        s.abort();
    }
    lat.sort();
    accept.sort();
    eprintln!(
        "propagation: p50 {:.1} ms, p99 {:.1} ms ({} samples, {missing_events} not seen everywhere within 2 s)",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len()
    );

    // 2. Repair traffic when in step.
    tokio::time::sleep(Duration::from_millis(a.sync_interval_ms * 2)).await;
    let (b0, r0) = wire(&c, &nodes[0].url, &[]).await;
    tokio::time::sleep(Duration::from_millis(a.sync_interval_ms * 5)).await;
    let (b1, r1) = wire(&c, &nodes[0].url, &[]).await;
    let per_round = (b1 - b0) as f64 / (r1 - r0).max(1) as f64;
    eprintln!(
        "in step: {per_round:.0} bytes per repair round ({} rounds)",
        r1 - r0
    );

    // 3. Catch-up: the last node misses `missing` messages.
    let last = a.nodes - 1;
    let last_url = nodes[last].url.clone();
    let base = health(&c, &nodes[0].url).await;
    drop(nodes.pop());
    eprintln!("node {last} killed; signing {} messages", a.missing);
    let msgs = sign_many(&senders, &recipients, &content, &chain_id, a.missing, 0);
    let missing_bytes: u64 = msgs
        .iter()
        .map(|m| m.to_json_value(false).to_string().len() as u64)
        .sum();
    let t_ingest = Instant::now();
    let live = nodes.len();
    let chunks: Vec<Vec<Value>> = msgs
        .chunks(100)
        .map(|ch| ch.iter().map(|m| m.to_json_value(false)).collect())
        .collect();
    let chunks = Arc::new(Mutex::new(
        chunks.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let mut workers = vec![];
    for _ in 0..4 {
        let (c, chunks) = (c.clone(), chunks.clone());
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        workers.push(tokio::spawn(async move {
            loop {
                let next = chunks.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((k, body)) = next else {
                    return Ok::<(), String>(());
                };
                loop {
                    let r = c
                        .post(format!("{}/v1/messages", urls[k % urls.len()]))
                        .json(&body)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let v: Value = r.json().await.map_err(|e| e.to_string())?;
                    let retry = v["results"].as_array().is_none_or(|rs| {
                        rs.iter().any(|x| {
                            x["http_status"].as_u64().unwrap_or(0) >= 500 || x["http_status"] == 429
                        })
                    });
                    if !retry {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    let want = base + a.missing as u64;
    for n in &nodes {
        while health(&c, &n.url).await < want {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "{} messages accepted and replicated to {live} nodes in {:.1} s",
        a.missing,
        t_ingest.elapsed().as_secs_f64()
    );
    let only = vec![last_url.clone()];
    let mut before = 0;
    for n in &nodes {
        before += wire(&c, &n.url, &only).await.0;
    }
    let t0 = Instant::now();
    let restarted = mesh.start_node(last)?;
    let t_ready = t0.elapsed();
    let mut last_print = Instant::now();
    loop {
        let have = health(&c, &restarted.url).await;
        if have >= want {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(2) {
            eprintln!("  catching up: {have}/{want}");
            last_print = Instant::now();
        }
        if t0.elapsed() > Duration::from_secs(600) {
            return Err(format!("no catch-up in 600 s ({have}/{want})"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let catch_up = t0.elapsed();
    let writer = get_json(&c, &format!("{}/v1/info", restarted.url)).await?;
    let writer = &writer["stats"]["writer"];
    eprintln!(
        "restarted node's writer: {} commits, largest {}, busy {:.1} s of {:.1} s",
        writer["commits"],
        writer["largest_commit"],
        writer["busy_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
        catch_up.as_secs_f64()
    );
    let mut after = 0;
    for n in &nodes {
        after += wire(&c, &n.url, &only).await.0;
    }
    let own = wire(&c, &restarted.url, &[]).await.0;
    let wire_bytes = own + (after - before);
    eprintln!(
        "catch-up wire bytes: {own} by the restarted node's requests, {} by its peers' requests",
        after - before
    );
    let ratio = wire_bytes as f64 / missing_bytes as f64;
    println!("| metric | value | target |");
    println!("|---|---:|---:|");
    println!(
        "| propagation, submit at one node to a live event at all {} (p50 / p99, {} samples) | {:.1} / {:.1} ms | p99 <= 200 ms |",
        a.nodes,
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    println!(
        "| acceptance at the first node (p50 / p99) | {:.1} / {:.1} ms | |",
        pct(&accept, 0.5),
        pct(&accept, 0.99)
    );
    println!("| repair traffic when in step | {per_round:.0} bytes per round | |");
    println!(
        "| catch-up of {} missed messages (restart to all stored; process ready after {:.2} s) | {:.1} s | < 10 s |",
        a.missing,
        t_ready.as_secs_f64(),
        catch_up.as_secs_f64()
    );
    println!(
        "| bytes on the wire for it / missing envelopes' JSON ({wire_bytes} / {missing_bytes}) | {ratio:.3} | <= 1.2 |"
    );
    drop(restarted);
    drop(nodes);
    Ok(())
}

/// The working directory and, for a temporary one, its guard.
fn tempfile_dir(data: &Option<PathBuf>) -> Result<(PathBuf, Option<TempDir>), String> {
    match data {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
            Ok((d.clone(), None))
        }
        None => {
            let t = TempDir::new()?;
            Ok((t.0.clone(), Some(t)))
        }
    }
}

/// A directory removed on drop (the binary has no tempfile dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let mut b = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
        let p = std::env::temp_dir().join(format!("fio-l2-bench-repl-{}", hex::encode(b)));
        std::fs::create_dir_all(&p).map_err(|e| e.to_string())?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
