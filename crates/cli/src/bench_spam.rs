//! `fio-l2 bench spam`: attacks against a real node process (`fio-l2 node
//! --dev`, started here) while one legitimate sender keeps sending at a
//! steady rate. Per phase: the legitimate sender's delivery rate and p50/p99
//! latency against a quiet baseline measured in the same run, the node's CPU
//! time per refused message by refusal code (/proc/<pid>/stat), and the chain
//! API requests the phase caused. docs/spam.md has the model; the figures go
//! in docs/BENCHMARKS.md.

use crate::bench_util::{funds_message, Party};
use fio_l2_protocol::SignedMessage;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct SpamBenchArgs {
    /// Messages from one owned address (the figure is 1,000,000).
    #[arg(long, default_value_t = 50_000)]
    pub flood: usize,
    /// Distinct pre-signed envelopes the flood cycles through (the rest are resends).
    #[arg(long, default_value_t = 5_000)]
    pub flood_distinct: usize,
    /// Unregistered sender names (each its own key), one message each.
    #[arg(long, default_value_t = 10_000)]
    pub unregistered: usize,
    /// Owned addresses, each sending `per_owned` messages (its burst and then some).
    #[arg(long, default_value_t = 1_000)]
    pub owned: usize,
    #[arg(long, default_value_t = 8)]
    pub per_owned: usize,
    /// Oversize bodies (200 KB each). 20,000 at 2,000/s is 10 s, as long as
    /// the bad-signature phase: the legitimate p99 then rests on about 1,000
    /// messages, not 300 (its third-worst).
    #[arg(long, default_value_t = 20_000)]
    pub oversize: usize,
    /// Envelopes with bad signatures.
    #[arg(long, default_value_t = 20_000)]
    pub badsig: usize,
    /// Legitimate messages per second (enough that a phase's p99 is not
    /// just its third-slowest message).
    #[arg(long, default_value_t = 100)]
    pub legit_rate: u32,
    /// Seconds of each quiet baseline (one before the attacks, one after).
    #[arg(long, default_value_t = 6)]
    pub baseline_secs: u64,
    /// Concurrent attack requests.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Cap on attack messages per second, all workers together (0: as fast
    /// as the node answers; on one machine the attacker then competes with
    /// the node for the same cores).
    #[arg(long, default_value_t = 0)]
    pub attack_rate: u32,
    /// Longest an attack phase runs, seconds: a node that holds its refusals
    /// (its tarpit) slows the attacker, and the phase then ends with fewer
    /// messages sent than asked (the table shows how many).
    #[arg(long, default_value_t = 60)]
    pub max_phase_secs: u64,
    /// Distinct loopback source addresses the attacker uses (127.0.1.x).
    #[arg(long, default_value_t = 16)]
    pub attack_ips: usize,
    /// Per-sender burst and rate (per minute) of the node under attack.
    #[arg(long, default_value_t = 5)]
    pub sender_burst: u32,
    #[arg(long, default_value_t = 60)]
    pub sender_per_min: u32,
    /// The node's per-IP request burst (`ip_requests_burst`; its default
    /// when not given).
    #[arg(long)]
    pub ip_requests_burst: Option<u32>,
}

struct NodeProc {
    child: Child,
    url: String,
    chain_id: [u8; 32],
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, seconds.
fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn start_node(dir: &std::path::Path, a: &SpamBenchArgs) -> Result<NodeProc, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let cfg = dir.join("node.toml");
    std::fs::write(
        &cfg,
        format!(
            "chain_positive_ttl_secs = 3600\n[limits]\nlimit_loopback = true\nsender_burst = {}\nsender_per_min = {}\nwrite_queue = 100000\n{}",
            a.sender_burst,
            a.sender_per_min,
            a.ip_requests_burst
                .map_or(String::new(), |b| format!("ip_requests_burst = {b}\n"))
        ),
    )
    .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["node", "--dev", "--listen", "127.0.0.1:0", "--log", "error"])
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the node: {e}"))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let ready: Value =
        serde_json::from_str(line.trim()).map_err(|e| format!("node ready line: {e}: {line}"))?;
    let chain_id =
        fio_l2_protocol::envelope::parse_chain_id(ready["chain_id"].as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
    Ok(NodeProc {
        url: ready["url"].as_str().unwrap_or_default().to_string(),
        chain_id,
        child,
    })
}

fn party(seed: &str, address: &str) -> Party {
    Party::new(seed, address)
}

fn now() -> u32 {
    crate::util::now_unix() as u32
}

fn envelope(from: &Party, to: &Party, nonce: u64, chain_id: &[u8; 32]) -> SignedMessage {
    funds_message(from, &to.address, to.public, nonce, now())
        .sign(&from.key, chain_id)
        .expect("valid message")
}

fn json_bytes(m: &SignedMessage) -> Vec<u8> {
    serde_json::to_vec(&m.to_json_value(false)).expect("json")
}

/// Bodies made on all cores by `f(i)`.
fn make_bodies(n: usize, f: impl Fn(usize) -> Vec<u8> + Sync) -> Vec<Vec<u8>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut out: Vec<(usize, Vec<u8>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let f = &f;
                s.spawn(move || {
                    (t..n)
                        .step_by(threads)
                        .map(|i| (i, f(i)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("signer"))
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, b)| b).collect()
}

async fn info(http: &reqwest::Client, url: &str) -> Value {
    match http.get(format!("{url}/v1/info")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn dev_chain_total(http: &reqwest::Client, url: &str) -> u64 {
    match http.get(format!("{url}/v1/dev/stats")).send().await {
        Ok(r) => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["chain_total"].as_u64())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

#[derive(Default)]
struct Legit {
    sent: usize,
    delivered: usize,
    refused: BTreeMap<String, usize>,
    latencies: Vec<Duration>,
    /// Per delivered message: its latency and the node's `Server-Timing`
    /// stages (read, slot, verify, chain, write), ms.
    stages: Vec<(Duration, [f64; 5])>,
}

/// The node's `Server-Timing` answer header as (read, slot, verify, chain,
/// write) in ms; missing ones are 0.
fn server_timing(h: &reqwest::header::HeaderMap) -> [f64; 5] {
    let mut out = [0.0; 5];
    let v = h
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for part in v.split(',') {
        let Some((name, dur)) = part.trim().split_once(";dur=") else {
            continue;
        };
        let i = ["read", "slot", "verify", "chain", "write"]
            .iter()
            .position(|n| *n == name);
        if let (Some(i), Ok(d)) = (i, dur.parse::<f64>()) {
            out[i] = d;
        }
    }
    out
}

/// The mean stages of the slowest tenth of `l`'s messages, and the rest of
/// their latency (HTTP, scheduling, the client), ms.
fn slow_tenth(l: &Legit) -> Option<String> {
    let mut v = l.stages.clone();
    if v.len() < 10 {
        return None;
    }
    v.sort_by_key(|(d, _)| std::cmp::Reverse(*d));
    let slow = &v[..v.len() / 10];
    let n = slow.len() as f64;
    let mut mean = [0.0; 5];
    let mut outside = 0.0;
    for (d, st) in slow {
        for (m, x) in mean.iter_mut().zip(st) {
            *m += x / n;
        }
        outside += (ms(*d) - st.iter().sum::<f64>()) / n;
    }
    Some(format!(
        "slowest 10% of legit: node read {:.2}, slot wait {:.2}, checks {:.2}, chain {:.2}, write {:.2}, outside the handler {:.2} ms",
        mean[0], mean[1], mean[2], mean[3], mean[4], outside
    ))
}

/// The legitimate senders, round-robin: one fresh envelope every 1/rate s
/// until `stop` (each sender stays under its own rate limit).
async fn legit_sender(
    url: String,
    senders: Vec<Party>,
    to: Party,
    chain_id: [u8; 32],
    rate: u32,
    stop: Arc<AtomicBool>,
    nonce_base: u64,
) -> Legit {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(Some("127.0.0.1".parse().expect("ip")))
        .build()
        .expect("client");
    let mut out = Legit::default();
    let every = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut next = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let (f, t) = (senders[i as usize % senders.len()].clone(), to.clone());
        let body = tokio::task::spawn_blocking(move || {
            json_bytes(&envelope(&f, &t, nonce_base + i, &chain_id))
        })
        .await
        .expect("sign");
        i += 1;
        let t0 = Instant::now();
        out.sent += 1;
        let r = http
            .post(format!("{url}/v1/messages"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) if r.status().as_u16() == 201 => {
                let stages = server_timing(r.headers());
                let _ = r.bytes().await;
                out.latencies.push(t0.elapsed());
                out.stages.push((t0.elapsed(), stages));
                out.delivered += 1;
            }
            Ok(r) => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let code = v["error"]["code"].as_str().unwrap_or("?").to_string();
                *out.refused.entry(code).or_insert(0) += 1;
            }
            Err(e) => *out.refused.entry(format!("transport: {e}")).or_insert(0) += 1,
        }
    }
    out
}

/// Sends `bodies` with `concurrency` workers spread over source IPs; counts
/// answers by status/code.
async fn attack(
    url: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    total: usize,
    concurrency: usize,
    clients: &[reqwest::Client],
    rate: u32,
    max_secs: u64,
) -> (BTreeMap<String, usize>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(max_secs);
    let counts = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let t0 = Instant::now();
    let mut tasks = vec![];
    for w in 0..concurrency {
        let (next, counts, bodies) = (next.clone(), counts.clone(), bodies.clone());
        let http = clients[w % clients.len()].clone();
        let url = format!("{url}/v1/messages");
        let every =
            (rate > 0).then(|| Duration::from_secs_f64(concurrency as f64 / f64::from(rate)));
        tasks.push(tokio::spawn(async move {
            let mut due = Instant::now()
                + every.map_or(Duration::ZERO, |e| e * w as u32 / concurrency as u32);
            loop {
                if let Some(e) = every {
                    tokio::time::sleep_until(due.into()).await;
                    due += e;
                }
                if Instant::now() >= deadline {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let body = bodies[i % bodies.len()].clone();
                let key = match http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let st = r.status().as_u16();
                        let v: Value = r.json().await.unwrap_or(Value::Null);
                        match v["error"]["code"].as_str() {
                            Some(c) => format!("{st} {c}"),
                            None => format!("{st}"),
                        }
                    }
                    Err(_) => "transport error".to_string(),
                };
                *counts.lock().expect("counts").entry(key).or_insert(0) += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let c = counts.lock().expect("counts").clone();
    (c, t0.elapsed())
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How much lower the attacker's threads run than the node and the
/// legitimate sender. The attacker stands for other machines: its own CPU
/// (signing aside, building requests and reading answers) should not be
/// taken from the node it attacks. The kernel's share of its traffic still is.
const ATTACKER_NICE: i32 = 10;

pub fn run(a: SpamBenchArgs) -> Result<(), String> {
    // Attack workers and their connections run on this runtime's threads.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(|| fio_l2_node::cpu_pool::lower_priority(ATTACKER_NICE))
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run_async(a))
}

/// Runs `fut` (the legitimate sender) on a thread and runtime of its own,
/// at normal priority, so that its latencies never include waiting behind
/// attack tasks in a shared runtime.
fn on_own_runtime<F>(fut: F) -> std::thread::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("legit sender runtime")
            .block_on(fut)
    })
}

struct PhaseResult {
    name: String,
    attack_sent: usize,
    attack_secs: f64,
    answers: BTreeMap<String, usize>,
    legit: Legit,
    cpu: f64,
    chain: u64,
    dev_chain: u64,
}

async fn run_async(a: SpamBenchArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("fio-l2-bench-spam-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = start_node(&dir, &a)?;
    let pid = node.child.id();
    let url = node.url.clone();
    let cid = node.chain_id;
    let http = reqwest::Client::new();

    // Legitimate senders: enough that each stays at half its rate limit.
    let per_sender = f64::from(a.sender_per_min) / 60.0 / 2.0;
    let n_legit = ((f64::from(a.legit_rate) / per_sender).ceil() as usize).max(1);
    let legit: Vec<Party> = (0..n_legit)
        .map(|i| party(&format!("bench-legit-{i}"), &format!("l{i}@legit")))
        .collect();
    let carol = party("bench-legit-carol", "carol@legit");
    let mallory = party("bench-flood-mallory", "mallory@spam");
    let victims: Vec<Party> = (0..10)
        .map(|i| party(&format!("bench-victim-{i}"), &format!("victim{i}@dev")))
        .collect();
    eprintln!(
        "registering {} addresses…",
        2 + n_legit + victims.len() + a.owned
    );
    for p in [&carol, &mallory]
        .into_iter()
        .chain(victims.iter())
        .chain(legit.iter())
    {
        crate::bench_util::register(&http, &url, p).await?;
    }
    let owned: Vec<Party> = (0..a.owned)
        .map(|i| party(&format!("bench-owned-{i}"), &format!("o{i}@owned")))
        .collect();
    for (i, p) in owned.iter().enumerate() {
        crate::bench_util::register(&http, &url, p).await?;
        if i % 100 == 99 {
            eprint!("\r  {} owned addresses registered", i + 1);
        }
    }
    eprintln!();

    eprintln!("signing attack envelopes…");
    let flood = Arc::new(make_bodies(a.flood_distinct.min(a.flood).max(1), |i| {
        json_bytes(&envelope(
            &mallory,
            &victims[i % victims.len()],
            i as u64,
            &cid,
        ))
    }));
    let unregistered = Arc::new(make_bodies(a.unregistered.max(1), |i| {
        let ghost = party(&format!("bench-ghost-{i}"), &format!("ghost{i}@nowhere"));
        json_bytes(&envelope(&ghost, &victims[i % victims.len()], 0, &cid))
    }));
    let per = a.per_owned.max(1);
    let owned_bodies = Arc::new(make_bodies((a.owned * per).max(1), |i| {
        // Round-robin over senders, so every one sends at its limit at once.
        let s = &owned[i % owned.len().max(1)];
        json_bytes(&envelope(
            s,
            &victims[(i / owned.len().max(1)) % victims.len()],
            i as u64,
            &cid,
        ))
    }));
    let oversize = Arc::new(vec![{
        let mut v = json_bytes(&envelope(&mallory, &victims[0], 0, &cid));
        v.truncate(v.len() - 1);
        v.extend_from_slice(b",\"pad\":\"");
        v.extend(std::iter::repeat_n(b'A', 200_000));
        v.extend_from_slice(b"\"}");
        v
    }]);
    let badsig = Arc::new(make_bodies(2_000.min(a.badsig).max(1), |i| {
        let m = envelope(
            &mallory,
            &victims[i % victims.len()],
            1_000_000 + i as u64,
            &cid,
        );
        let other = envelope(&mallory, &victims[0], 9_999_999, &cid);
        let mut v = m.to_json_value(false);
        v["signature"] = json!(other.signature().to_string());
        serde_json::to_vec(&v).expect("json")
    }));

    let clients: Vec<reqwest::Client> = (0..a.attack_ips.max(1))
        .map(|i| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .local_address(Some(
                    format!("127.0.1.{}", 1 + i % 250).parse().expect("ip"),
                ))
                .build()
                .expect("client")
        })
        .collect();

    type Attack = (&'static str, Arc<Vec<Vec<u8>>>, usize);
    let phases: Vec<Option<Attack>> = vec![
        None,
        Some(("flood from one owned address", flood, a.flood)),
        Some(("unregistered names", unregistered, a.unregistered)),
        Some((
            "owned addresses at their limit",
            owned_bodies,
            a.owned * per,
        )),
        Some(("oversize bodies (200 KB)", oversize, a.oversize)),
        Some(("bad signatures", badsig, a.badsig)),
        None,
    ];
    let mut results = vec![];
    for (k, phase) in phases.into_iter().enumerate() {
        let quiet = if k == 0 {
            "baseline (quiet, before)"
        } else {
            "baseline (quiet, after)"
        };
        let name = phase.as_ref().map_or(quiet, |p| p.0).to_string();
        eprintln!("phase: {name}…");
        let stop = Arc::new(AtomicBool::new(false));
        let (i0, d0, c0) = (
            info(&http, &url).await,
            dev_chain_total(&http, &url).await,
            cpu_secs(pid),
        );
        let legit = on_own_runtime(legit_sender(
            url.clone(),
            legit.clone(),
            carol.clone(),
            cid,
            a.legit_rate,
            stop.clone(),
            (k as u64) << 32,
        ));
        let (answers, took, sent) = match phase {
            None => {
                tokio::time::sleep(Duration::from_secs(a.baseline_secs)).await;
                (BTreeMap::new(), Duration::from_secs(a.baseline_secs), 0)
            }
            Some((_, bodies, n)) => {
                let t0 = Instant::now();
                let (c, d) = attack(
                    &url,
                    bodies,
                    n,
                    a.concurrency,
                    &clients,
                    a.attack_rate,
                    a.max_phase_secs,
                )
                .await;
                // Requests made (fewer than `n` when the phase hit its time limit).
                let n = c.values().sum();
                // At least a few seconds of legitimate traffic per phase.
                let min = Duration::from_secs(3);
                if t0.elapsed() < min {
                    tokio::time::sleep(min - t0.elapsed()).await;
                }
                (c, d, n)
            }
        };
        stop.store(true, Ordering::Relaxed);
        let legit = tokio::task::spawn_blocking(move || legit.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "the legitimate sender panicked".to_string())?;
        let (i1, d1, c1) = (
            info(&http, &url).await,
            dev_chain_total(&http, &url).await,
            cpu_secs(pid),
        );
        let chain = i1["stats"]["chain_requests"].as_u64().unwrap_or(0)
            - i0["stats"]["chain_requests"].as_u64().unwrap_or(0);
        results.push(PhaseResult {
            name,
            attack_sent: sent,
            attack_secs: took.as_secs_f64(),
            answers,
            legit,
            cpu: c1 - c0,
            chain,
            dev_chain: d1.saturating_sub(d0),
        });
        // Let the node settle between phases.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Report. The baseline pools both quiet phases: the machine's speed
    // drifts during a run, and twice the samples steady its p99.
    let quiet: Vec<&PhaseResult> = results.iter().filter(|r| r.attack_sent == 0).collect();
    let mut bl: Vec<Duration> = quiet
        .iter()
        .flat_map(|r| r.legit.latencies.iter().copied())
        .collect();
    let (b50, b99) = (percentile(&mut bl, 0.5), percentile(&mut bl, 0.99));
    let base_cpu_rate = quiet.iter().map(|r| r.cpu).sum::<f64>()
        / quiet.iter().map(|r| r.attack_secs).sum::<f64>().max(0.001);
    println!("fio-l2 bench spam: node pid {pid}, legit {} msg/s from 127.0.0.1 ({n_legit} senders -> carol@legit), attacker on {} loopback IPs x {} concurrent requests (rate cap {}/s, 0 = none); node sender_burst {} sender_per_min {} ip_requests_burst {}", a.legit_rate, a.attack_ips, a.concurrency, a.attack_rate, a.sender_burst, a.sender_per_min, a.ip_requests_burst.map_or("default".to_string(), |b| b.to_string()));
    println!(
        "{:<32} {:>8} {:>8} {:>9} {:>10} {:>10} {:>8} {:>9} {:>10} {:>10}",
        "phase",
        "attack",
        "att/s",
        "legit ok",
        "p50 ms",
        "p99 ms",
        "p99/base",
        "node cpu",
        "us/att.msg",
        "chain req"
    );
    let mut all_ok = true;
    for r in &results {
        let mut l = r.legit.latencies.clone();
        let (p50, p99) = (percentile(&mut l, 0.5), percentile(&mut l, 0.99));
        let refused: usize = r
            .answers
            .iter()
            .filter(|(k, _)| !k.starts_with("201") && !k.starts_with("200"))
            .map(|(_, n)| n)
            .sum();
        let net_cpu = (r.cpu - base_cpu_rate * r.attack_secs).max(0.0);
        let per_refusal = if refused > 0 {
            format!("{:.1}", net_cpu / r.attack_sent as f64 * 1e6)
        } else {
            "-".into()
        };
        all_ok &= r.legit.delivered == r.legit.sent;
        println!(
            "{:<32} {:>8} {:>8.0} {:>4}/{:<4} {:>10.2} {:>10.2} {:>8.2} {:>8.2}s {:>10} {:>4}/{:<5}",
            r.name,
            r.attack_sent,
            r.attack_sent as f64 / r.attack_secs.max(0.001),
            r.legit.delivered,
            r.legit.sent,
            ms(p50),
            ms(p99),
            if b99.is_zero() { 0.0 } else { p99.as_secs_f64() / b99.as_secs_f64() },
            r.cpu,
            per_refusal,
            r.chain,
            r.dev_chain,
        );
        if !r.answers.is_empty() {
            let parts: Vec<String> = r.answers.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            println!("    answers: {}", parts.join(", "));
        }
        if let Some(line) = slow_tenth(&r.legit) {
            println!("    {line}");
        }
        if !r.legit.refused.is_empty() {
            println!("    LEGIT REFUSED: {:?}", r.legit.refused);
        }
    }
    println!(
        "baseline (both quiet phases pooled) p50 {:.2} ms, p99 {:.2} ms; node CPU in the baseline {:.3} s/s (subtracted; us/att.msg = the rest / attack messages, each phase refused for the reasons listed); chain req = node chain-client requests / dev-chain requests",
        ms(b50),
        ms(b99),
        base_cpu_rate
    );
    let fin = info(&http, &url).await;
    println!(
        "rate-limit maps at the end: {}",
        fin["stats"]["spam"]["buckets"]
    );
    println!(
        "legitimate delivery: {}",
        if all_ok { "100%" } else { "INCOMPLETE" }
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
