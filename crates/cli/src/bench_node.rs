//! `fio-l2 bench node`: in one run, on this machine, (1) the all-core rate of
//! envelope verification alone (parse + checks 1-4), the baseline; (2) durable
//! ingest over HTTP into a real node (single envelopes and arrays of 100),
//! as a ratio of (1); (3) inbox page latency with a large store.

use crate::bench_util::{funds_message, Party};
use fio_l2_node::auth::{make_proof_headers, RequestParts};
use fio_l2_node::config::{Limits, NodeConfig};
use fio_l2_node::storage::NewMessage;
use fio_l2_protocol::{PrivateKey, Signature, SignedMessage, TimePolicy};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct NodeBenchArgs {
    /// Envelopes submitted in each ingest phase.
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Messages stored before measuring inbox latency.
    #[arg(long, default_value_t = 1_000_000)]
    pub fill: usize,
    /// Inbox page requests measured.
    #[arg(long, default_value_t = 2_000)]
    pub pages: usize,
    /// Message store engine: redb or sqlite.
    #[arg(long, default_value = "redb")]
    pub store: String,
    /// Concurrent HTTP clients for single-envelope ingest.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Concurrent HTTP clients for ingest in arrays of 100.
    #[arg(long, default_value_t = 16)]
    pub array_clients: usize,
}

fn progress(label: &str, done: usize, total: usize) {
    use std::io::Write;
    let width = 30;
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    eprint!(
        "\r{label:<28} [{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(width - filled)
    );
    if done >= total {
        eprintln!();
    }
    let _ = std::io::stderr().flush();
}

fn now() -> u32 {
    crate::util::now_unix() as u32
}

fn parties(prefix: &str, n: usize) -> Vec<Party> {
    (0..n)
        .map(|i| {
            Party::new(
                &format!("bench-{prefix}-{i}"),
                &format!("{prefix}{i}@bench"),
            )
        })
        .collect()
}

/// What the inbox reader checks of a page.
#[derive(serde::Deserialize)]
struct PageShape {
    messages: Vec<serde::de::IgnoredAny>,
    next_cursor: Option<String>,
}

/// Signed envelopes from `senders` to `recipients`, made on all cores.
fn sign_many(
    n: usize,
    senders: &[Party],
    recipients: &[Party],
    chain_id: [u8; 32],
) -> Vec<Vec<u8>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let done = AtomicUsize::new(0);
    let created = now();
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let done = &done;
                s.spawn(move || {
                    let mut mine = vec![];
                    for i in (t..n).step_by(threads) {
                        let from = &senders[i % senders.len()];
                        let to = &recipients[(i / senders.len()) % recipients.len()];
                        let m = funds_message(from, &to.address, to.public, i as u64, created);
                        let signed = m.sign(&from.key, &chain_id).expect("valid message");
                        mine.push((
                            i,
                            serde_json::to_vec(&signed.to_json_value(false)).expect("json"),
                        ));
                        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                        if t == 0 && d.is_multiple_of(500) {
                            progress("signing envelopes", d, n);
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<(usize, Vec<u8>)> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("signer"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        out.extend(all.into_iter().map(|(_, j)| j));
    });
    progress("signing envelopes", n, n);
    out
}

/// Baseline: envelopes verified per second on all cores, no I/O.
fn verify_only(envelopes: &[Vec<u8>], chain_id: [u8; 32]) -> f64 {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let policy = TimePolicy::default();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let now = crate::util::now_unix();
                for e in envelopes.iter().skip(t).step_by(threads) {
                    let m = SignedMessage::from_json(e).expect("valid");
                    m.check_offline(&chain_id, now, &policy).expect("valid");
                }
            });
        }
    });
    envelopes.len() as f64 / t0.elapsed().as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The node runs on its own runtime, whose threads are named so that its CPU
/// time can be told from the load generator's (same process, same cores).
/// Idle threads are kept alive so that none exits with uncounted time.
pub fn run(a: NodeBenchArgs) -> Result<(), String> {
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name(name)
            .thread_keep_alive(Duration::from_secs(3600))
            .build()
            .map_err(|e| e.to_string())
    };
    let node_rt = runtime(NODE_THREADS)?;
    let client_rt = runtime("bench-client")?;
    client_rt.block_on(run_async(a, node_rt.handle().clone()))
}

const NODE_THREADS: &str = "l2-node";

/// CPU time used so far by the node's threads (runtime and writer) and by
/// everything else in this process (the load generator, the main thread).
fn cpu_split() -> (Duration, Duration) {
    use crate::bench_util::{process_cpu, threads_cpu};
    // The runtime's threads, the writer and the verification pool.
    let node = threads_cpu(NODE_THREADS) + threads_cpu("fio-l2-");
    (node, process_cpu().saturating_sub(node))
}

/// CPU time so far of each group of the node's threads.
fn node_thread_groups() -> [(&'static str, Duration); 4] {
    use crate::bench_util::threads_cpu;
    [
        ("verification pool", threads_cpu("fio-l2-verify")),
        ("writer", threads_cpu("fio-l2-writer")),
        ("store checkpoints", threads_cpu("fio-l2-checkpo")),
        (
            "runtime (HTTP, chain, hand-offs)",
            threads_cpu(NODE_THREADS),
        ),
    ]
}

/// CPU per envelope over a phase, in microseconds: (node, load generator).
fn cpu_per(before: (Duration, Duration), after: (Duration, Duration), n: usize) -> (f64, f64) {
    let us = |a: Duration, b: Duration| (a.saturating_sub(b)).as_secs_f64() * 1e6 / n as f64;
    (us(after.0, before.0), us(after.1, before.1))
}

async fn run_async(a: NodeBenchArgs, node_rt: tokio::runtime::Handle) -> Result<(), String> {
    // The reader owns 1 in 10 filled messages and walks 20 pages of 100.
    let least = 2 * a.messages + 20_000;
    if a.fill < least {
        return Err(format!(
            "--fill must be at least {least} (2 x --messages + 20000)"
        ));
    }
    let dir = std::env::temp_dir().join(format!("fio-l2-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = NodeConfig {
        listen: "127.0.0.1:0".parse().expect("literal"),
        data_dir: dir.clone(),
        fio_api: vec![],
        dev: true,
        limits: Limits {
            write_queue: 100_000,
            ..Limits::default()
        },
        chain_positive_ttl_secs: 3600,
        chain_negative_ttl_secs: 30,
        purge_interval_secs: 3600,
        replication: Default::default(),
        store: a
            .store
            .parse()
            .map_err(|e: fio_l2_node::storage::StoreError| e.to_string())?,
        trusted_proxies: Default::default(),
    };
    let node = node_rt
        .spawn(fio_l2_node::server::start(cfg))
        .await
        .map_err(|e| e.to_string())??;
    let base = node.url();
    let chain_id = node.state.chain_id;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .map_err(|e| e.to_string())?;

    let senders = parties("s", 64);
    let recipients = parties("r", 64);
    for p in senders.iter().chain(recipients.iter()) {
        crate::bench_util::register(&http, &base, p).await?;
    }

    let total = a.messages * 2;
    let envelopes = Arc::new(sign_many(total, &senders, &recipients, chain_id));
    // The baseline is measured before, between and after the two ingest
    // phases, and each phase is compared with the mean of the two around it:
    // the shared machine's speed drifts within a run.
    let baseline = || {
        eprintln!("measuring verify-only rate on all cores…");
        let c0 = crate::bench_util::process_cpu();
        let rate = verify_only(&envelopes, chain_id);
        let cpu_us =
            (crate::bench_util::process_cpu() - c0).as_secs_f64() * 1e6 / envelopes.len() as f64;
        (rate, cpu_us)
    };
    let verify_before = baseline();

    // Single envelopes, `concurrency` clients.
    let next = Arc::new(AtomicUsize::new(0));
    let writer0 = crate::bench_util::threads_sched("fio-l2-writer");
    let cpu0 = cpu_split();
    let t0 = Instant::now();
    let mut tasks = vec![];
    for _ in 0..a.concurrency {
        let (http, envs, next, url) = (
            http.clone(),
            envelopes.clone(),
            next.clone(),
            format!("{base}/v1/messages"),
        );
        let n = a.messages;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<(), String>(());
                }
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(envs[i].clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status().as_u16() != 201 {
                    return Err(format!(
                        "ingest answered {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ));
                }
                // Read to the end, so the connection goes back to the pool.
                r.bytes().await.map_err(|e| e.to_string())?;
                if i % 500 == 0 {
                    progress("ingest, single envelopes", i, n);
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let single_rate = a.messages as f64 / t0.elapsed().as_secs_f64();
    let single_cpu = cpu_per(cpu0, cpu_split(), a.messages);
    let single_secs = t0.elapsed().as_secs_f64();
    progress("ingest, single envelopes", a.messages, a.messages);
    let single_batches = node.state.writer.stats();
    let single_writer = crate::bench_util::threads_sched("fio-l2-writer");
    let verify_between = baseline();

    // Arrays of 100, 4 clients.
    let batches: Vec<Vec<u8>> = envelopes[a.messages..]
        .chunks(100)
        .map(|c| {
            let mut b = b"[".to_vec();
            for (k, e) in c.iter().enumerate() {
                if k > 0 {
                    b.push(b',');
                }
                b.extend_from_slice(e);
            }
            b.push(b']');
            b
        })
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_split();
    let groups0 = node_thread_groups();
    let t0 = Instant::now();
    let mut tasks = vec![];
    for _ in 0..a.array_clients {
        let (http, bs, next, url) = (
            http.clone(),
            batches.clone(),
            next.clone(),
            format!("{base}/v1/messages"),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bs.len() {
                    return Ok::<(), String>(());
                }
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bs[i].clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
                let ok = v["results"]
                    .as_array()
                    .map(|r| r.iter().all(|x| x["http_status"] == 201))
                    .unwrap_or(false);
                if !ok {
                    return Err(format!("batch ingest refused: {v}"));
                }
                progress("ingest, arrays of 100", i + 1, bs.len());
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let batch_rate = a.messages as f64 / t0.elapsed().as_secs_f64();
    let batch_cpu = cpu_per(cpu0, cpu_split(), a.messages);
    let groups = node_thread_groups();
    let batch_groups: Vec<(&str, f64)> = groups
        .iter()
        .zip(&groups0)
        .map(|((name, after), (_, before))| {
            let us = after.saturating_sub(*before).as_secs_f64() * 1e6 / a.messages as f64;
            (*name, us)
        })
        .collect();
    let batch_secs = t0.elapsed().as_secs_f64();
    let all_batches = node.state.writer.stats();
    let all_writer = crate::bench_util::threads_sched("fio-l2-writer");
    let verify_after = baseline();
    let mean = |a: (f64, f64), b: (f64, f64)| ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
    let (verify_single, verify_single_cpu) = mean(verify_before, verify_between);
    let (verify_arrays, verify_arrays_cpu) = mean(verify_between, verify_after);

    // Fill the store to `fill` messages (synthetic: stored directly, not
    // signed; the inbox path does not re-verify what the node stored).
    let reader = &recipients[0];
    let fill = a.fill.saturating_sub(total);
    let store = node.state.store.clone();
    let filler_key = PrivateKey::from_seed("bench-filler");
    let fake_sig = Signature::parse(&filler_key.sign_digest(&[9u8; 32]).to_string())
        .map_err(|e| e.to_string())?;
    let created = now();
    let mut done = 0usize;
    while done < fill {
        let n = (fill - done).min(10_000);
        let mut batch = Vec::with_capacity(n);
        for k in done..done + n {
            // Every 10th message goes to the reader, the rest over 10k recipients.
            let recipient = if k % 10 == 0 {
                reader.address.clone()
            } else {
                format!("f{}@bench", k % 10_000)
            };
            let m = funds_message(
                &senders[k % senders.len()],
                &recipient,
                reader.public,
                (total + k) as u64,
                created,
            );
            let s = SignedMessage::new(m, fake_sig).map_err(|e| e.to_string())?;
            batch.push(NewMessage {
                id: s.id(),
                recipient,
                sender: s.message().sender.clone(),
                created,
                expires: created + 86_400,
                binary: fio_l2_node::stored::encode(&s),
            });
        }
        let st = store.clone();
        tokio::task::spawn_blocking(move || st.put_batch(&batch))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        done += n;
        progress("filling the store", done, fill);
    }
    let stored = {
        let st = store.clone();
        tokio::task::spawn_blocking(move || st.count())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };

    // Inbox pages of 100 for the reader, newest first, each with a fresh
    // proof. The first WARMUP_PAGES are not timed: right after the bulk fill
    // the first hundred or so pages took about 5 ms each in some runs (not
    // the first pass over cold pages: requests 21-99 of one run), and 20
    // such requests are the p99 of 2,000.
    const WARMUP_PAGES: usize = 200;
    let requests = WARMUP_PAGES + a.pages;
    let mut lat = Vec::with_capacity(a.pages);
    let mut cursor: Option<String> = None;
    for i in 0..requests {
        let mut pq = format!("/v1/inbox/{}?order=newest&limit=100", reader.address);
        if let Some(c) = &cursor {
            pq.push_str(&format!("&cursor={c}"));
        }
        let req = RequestParts {
            method: "GET",
            path_and_query: &pq,
            body: b"",
        };
        let headers = make_proof_headers(
            &reader.key,
            &chain_id,
            &node.state.node_id,
            &reader.address,
            crate::util::now_unix(),
            &req,
        );
        let mut rb = http.get(format!("{base}{pq}"));
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        let t = Instant::now();
        let r = rb.send().await.map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.bytes().await.map_err(|e| e.to_string())?;
        if i >= WARMUP_PAGES {
            lat.push(t.elapsed());
        }
        if !status.is_success() {
            return Err(format!(
                "inbox page answered {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
        // Only the count and the cursor: a full `Value` parse of 100
        // messages kept this client's core busy, on a machine whose other
        // core is the node's, and that showed in the node's tail latency.
        let v: PageShape = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        if v.messages.len() != 100 {
            return Err("inbox page did not hold 100 messages".into());
        }
        // Walk 20 pages deep, then start again from the newest.
        cursor = if i % 20 == 19 { None } else { v.next_cursor };
        if i % 100 == 0 {
            progress("inbox pages of 100", i, requests);
        }
    }
    progress("inbox pages of 100", requests, requests);
    lat.sort();
    node_rt
        .spawn(node.stop())
        .await
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "fio-l2 bench node: {cores} cores, {} store, {} envelopes per ingest phase, {stored} messages stored for reads",
        a.store, a.messages
    );
    println!("{:<52} {:>12} {:>8}", "measure", "value", "ratio");
    println!(
        "{:<52} {:>12}",
        "verify only (parse + checks 1-4, all cores), /s",
        format!(
            "{:.0} / {:.0} / {:.0}",
            verify_before.0, verify_between.0, verify_after.0
        )
    );
    println!("{:<52}", "  (before / between / after the ingest phases)");
    println!(
        "{:<52} {:>10.0}/s {:>8.2}",
        format!(
            "ingest over HTTP, single envelopes, {} clients",
            a.concurrency
        ),
        single_rate,
        single_rate / verify_single
    );
    println!(
        "{:<52} {:>10.0}/s {:>8.2}",
        format!(
            "ingest over HTTP, arrays of 100, {} clients",
            a.array_clients
        ),
        batch_rate,
        batch_rate / verify_arrays
    );
    println!("CPU time per envelope (all threads; ratio: verify-only CPU / node CPU)");
    println!(
        "{:<52} {:>12}",
        "verify only, µs (before / between / after)",
        format!(
            "{:.1} / {:.1} / {:.1}",
            verify_before.1, verify_between.1, verify_after.1
        )
    );
    for (label, (node_us, client_us), verify_cpu_us) in [
        ("ingest, single envelopes", single_cpu, verify_single_cpu),
        ("ingest, arrays of 100", batch_cpu, verify_arrays_cpu),
    ] {
        println!(
            "{:<52} {:>9.1} µs {:>8.2}",
            format!("{label}: node"),
            node_us,
            verify_cpu_us / node_us
        );
        println!(
            "{:<52} {:>9.1} µs",
            format!("{label}: load generator"),
            client_us
        );
    }
    for (name, us) in &batch_groups {
        println!("{:<52} {:>9.1} µs", format!("  arrays, node: {name}"), us);
    }
    println!(
        "{:<52} {:>12}",
        "store commits (single phase / arrays phase)",
        format!(
            "{} / {}",
            single_batches.batches,
            all_batches.batches - single_batches.batches
        )
    );
    let busy = |us: u64, secs: f64| us as f64 / 1e6 / secs * 100.0;
    println!(
        "{:<52} {:>12}",
        "writer busy in put_batch (single / arrays phase)",
        format!(
            "{:.0}% / {:.0}%",
            busy(single_batches.busy_micros, single_secs),
            busy(
                all_batches.busy_micros - single_batches.busy_micros,
                batch_secs
            )
        )
    );
    let writer_row = |what: &str, f: fn((Duration, Duration)) -> Duration| {
        let before = f(writer0).as_secs_f64();
        let single = f(single_writer).as_secs_f64() - before;
        let arrays = f(all_writer).as_secs_f64() - before - single;
        println!(
            "{:<52} {:>12}",
            format!("writer thread {what} (single / arrays phase)"),
            format!(
                "{:.0}% / {:.0}%",
                single / single_secs * 100.0,
                arrays / batch_secs * 100.0
            )
        );
    };
    writer_row("on a core", |s| s.0);
    writer_row("runnable, waiting for a core", |s| s.1);
    println!(
        "{:<52} {:>9.3} ms",
        "inbox page (100, newest first) p50",
        ms(percentile(&lat, 0.50))
    );
    println!(
        "{:<52} {:>9.3} ms",
        "inbox page (100, newest first) p99",
        ms(percentile(&lat, 0.99))
    );
    println!(
        "{:<52} {:>9.3} ms",
        "inbox page (100, newest first) max",
        ms(*lat.last().expect("pages > 0"))
    );
    Ok(())
}
