//! `fio-l2 bench node`: in one run, on this machine, (1) the all-core rate of
//! envelope verification alone (parse + checks 1-4), the baseline; (2) durable
//! ingest over HTTP into a real node (single envelopes and arrays of 100),
//! as a ratio of (1), and a resend of stored single envelopes, which the node
//! answers before their signature check: what a request costs over HTTP
//! alone, a bound on single envelopes; (3) inbox page latency with a large
//! store.

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
    /// Rounds of (single envelopes, verify only, arrays, verify only) after
    /// a first verify only, then a resend of the first round's single
    /// envelopes and a last verify only; each ingest phase is compared with
    /// the verify-only runs on either side of it, and the median round is
    /// reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
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

pub fn progress(label: &str, done: usize, total: usize) {
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

use crate::bench_ingest::{Phase, Spread, NODE_THREADS};

async fn run_async(a: NodeBenchArgs, node_rt: tokio::runtime::Handle) -> Result<(), String> {
    // The reader owns 1 in 10 filled messages and walks 20 pages of 100.
    let total = 2 * a.messages * a.rounds;
    let least = total + 20_000;
    if a.rounds == 0 || a.messages < 100 {
        return Err("--rounds must be at least 1 and --messages at least 100".into());
    }
    if a.fill < least {
        return Err(format!(
            "--fill must be at least {least} (2 x --messages x --rounds + 20000)"
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

    let envelopes = sign_many(total, &senders, &recipients, chain_id);
    // The baseline is measured before the first ingest phase and after each
    // one, and each phase is compared with the mean of the two around it:
    // the shared machine's speed drifts within a run.
    let sample = &envelopes[..a.messages];
    let baseline = || {
        eprintln!("measuring verify-only rate on all cores…");
        let c0 = crate::bench_util::process_cpu();
        let rate = verify_only(sample, chain_id);
        let cpu_us =
            (crate::bench_util::process_cpu() - c0).as_secs_f64() * 1e6 / sample.len() as f64;
        (rate, cpu_us)
    };
    let steal_ingest = crate::bench_util::cpu_steal();
    let mut verify = vec![baseline()];
    let (mut singles, mut arrays): (Vec<Phase>, Vec<Phase>) = (vec![], vec![]);
    let mut envs = envelopes.chunks(a.messages);
    let mut first_singles = None;
    for round in 1..=a.rounds {
        let chunk = Arc::new(envs.next().expect("sized above").to_vec());
        first_singles.get_or_insert_with(|| chunk.clone());
        let label = format!("single envelopes, round {round}");
        let p = crate::bench_ingest::singles(
            &http,
            &base,
            &node.state,
            chunk,
            a.concurrency,
            201,
            &label,
        )
        .await?;
        singles.push(p);
        verify.push(baseline());
        let chunk = envs.next().expect("sized above");
        let label = format!("arrays of 100, round {round}");
        let p =
            crate::bench_ingest::arrays(&http, &base, &node.state, chunk, a.array_clients, &label)
                .await?;
        arrays.push(p);
        verify.push(baseline());
    }
    // The first round's single envelopes again: the node answers each from
    // its known-id check, so this is what a single submission costs over
    // HTTP without the signature check, the chain and the durable write,
    // a bound on what single envelopes can reach on this machine.
    let resent = crate::bench_ingest::singles(
        &http,
        &base,
        &node.state,
        first_singles.expect("rounds >= 1"),
        a.concurrency,
        200,
        "stored envelopes resent",
    )
    .await?;
    verify.push(baseline());
    drop(envelopes);
    let steal_ingest =
        crate::bench_util::steal_percent(steal_ingest, crate::bench_util::cpu_steal());

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

    let steal_reads = crate::bench_util::cpu_steal();
    // Blocks this thread (the one driving the bench, not a runtime worker)
    // until the reader's own thread is done.
    let (mut lat, mut control) = read_pages(
        base.clone(),
        reader.key.clone(),
        reader.address.clone(),
        chain_id,
        node.state.node_id.clone(),
        a.pages,
    )?;
    let steal_reads = crate::bench_util::steal_percent(steal_reads, crate::bench_util::cpu_steal());
    lat.sort();
    control.sort();
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
        "fio-l2 bench node: {cores} cores, {} store, {} rounds of {} envelopes per ingest phase, {stored} messages stored for reads",
        a.store, a.rounds, a.messages
    );
    println!(
        "CPU taken by the hypervisor (steal): {steal_ingest:.1} % while verifying and ingesting, \
         {steal_reads:.1} % while reading pages"
    );
    println!("{:<52} {:>12} {:>8}", "measure", "value", "ratio");
    let verify_rates = Spread::of(verify.iter().map(|v| v.0));
    println!(
        "{:<52} {:>12}",
        format!(
            "verify only (parse + checks 1-4, all cores), /s, {} runs",
            verify.len()
        ),
        verify_rates.show(0)
    );
    println!("{:<52}", "  (median (lowest-highest), here and below)");
    // Round i's (from 0) single phase ran between verify-only runs 2i and
    // 2i+1, its array phase between 2i+1 and 2i+2.
    let around = |k: usize, f: fn(&(f64, f64)) -> f64| (f(&verify[k]) + f(&verify[k + 1])) / 2.0;
    for (kind, clients, phases, first) in [
        ("single envelopes", a.concurrency, &singles, 0),
        ("arrays of 100", a.array_clients, &arrays, 1),
    ] {
        let rates = Spread::of(phases.iter().map(|p| p.rate));
        let ratios: Vec<f64> = phases
            .iter()
            .enumerate()
            .map(|(i, p)| p.rate / around(2 * i + first, |v| v.0))
            .collect();
        let ratio = Spread::of(ratios.iter().copied());
        println!(
            "{:<52} {:>10.0}/s {:>8.2}",
            format!("ingest over HTTP, {kind}, {clients} clients"),
            rates.median,
            ratio.median
        );
        println!("{:<52} {:>12}", "  ratio to verify only", ratio.show(2));
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!("{:<52} {:>12}", "  ratio in each round", each.join(" "));
    }
    // The resend ran between the last two verify-only runs.
    let last = verify.len() - 2;
    println!(
        "{:<52} {:>10.0}/s {:>8.2}",
        format!(
            "resent stored single envelopes (200), {} clients",
            a.concurrency
        ),
        resent.rate,
        resent.rate / around(last, |v| v.0)
    );
    println!(
        "{:<52}",
        "  (answered from the known-id check: HTTP and parsing, no signature check or write)"
    );
    println!("CPU time per envelope (all threads; ratio: verify-only CPU / node CPU)");
    let verify_cpu = Spread::of(verify.iter().map(|v| v.1));
    println!("{:<52} {:>12}", "verify only, µs", verify_cpu.show(1));
    for (kind, phases, first) in [
        ("single envelopes", &singles, 0),
        ("arrays of 100", &arrays, 1),
    ] {
        let node_us = Spread::of(phases.iter().map(|p| p.node_us));
        let cpu_ratio = Spread::of(
            phases
                .iter()
                .enumerate()
                .map(|(i, p)| around(2 * i + first, |v| v.1) / p.node_us),
        );
        println!(
            "{:<52} {:>9.1} µs {:>8.2}",
            format!("ingest, {kind}: node"),
            node_us.median,
            cpu_ratio.median
        );
        println!(
            "{:<52} {:>9.1} µs",
            format!("ingest, {kind}: load generator"),
            Spread::of(phases.iter().map(|p| p.client_us)).median
        );
    }
    println!(
        "{:<52} {:>9.1} µs",
        "resent single envelopes: node", resent.node_us
    );
    println!(
        "{:<52} {:>9.1} µs",
        "resent single envelopes: load generator", resent.client_us
    );
    // A node whose single envelope cost only the request (the resend) and
    // its verification, with a load generator that cost nothing.
    println!(
        "{:<52} {:>12.2}",
        "  bound for singles: verify / (verify + resend node)",
        verify_cpu.median / (verify_cpu.median + resent.node_us)
    );
    for (i, name) in Phase::group_names().enumerate() {
        println!(
            "{:<52} {:>9.1} µs",
            format!("  arrays, node: {name}"),
            Spread::of(arrays.iter().map(|p| p.groups[i])).median
        );
    }
    let both = |f: fn(&Phase) -> f64, digits: usize, unit: &str| {
        let m = |ps: &[Phase]| Spread::of(ps.iter().map(f)).median;
        format!(
            "{:.d$}{unit} / {:.d$}{unit}",
            m(&singles),
            m(&arrays),
            d = digits
        )
    };
    println!(
        "{:<52} {:>12}",
        "store commits per phase (single / arrays)",
        both(|p| p.commits as f64, 0, "")
    );
    println!(
        "{:<52} {:>12}",
        "writer busy in put_batch (single / arrays phase)",
        both(|p| p.writer_busy * 100.0, 0, "%")
    );
    println!(
        "{:<52} {:>12}",
        "writer thread on a core (single / arrays phase)",
        both(|p| p.writer_on_core * 100.0, 0, "%")
    );
    println!(
        "{:<52} {:>12}",
        "writer thread runnable, waiting for a core (single / arrays phase)",
        both(|p| p.writer_waiting * 100.0, 0, "%")
    );
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
    println!(
        "{:<52} {:>12}",
        "GET /v1/info between the pages, p50 / p99 ms",
        format!(
            "{:.3} / {:.3}",
            ms(percentile(&control, 0.50)),
            ms(percentile(&control, 0.99))
        )
    );
    println!(
        "{:<52}",
        "  (control: a request with no proof, no store and a small answer)"
    );
    Ok(())
}

/// Inbox pages of 100 for `address`, newest first, each with a fresh proof;
/// the latency of each of the last `pages` requests, and of a `GET /v1/info`
/// sent after each of them. That control has no proof, no store read and a
/// small answer: a tail it shares with the pages is the machine's (the
/// hypervisor taking the CPU), not the inbox path's.
///
/// The reader has a one-thread runtime of its own, which also drives its
/// HTTP connection. On the shared runtime the connection ran on another
/// thread than the loop, so every request and answer crossed threads on the
/// client side, and those wake-ups were inside the timed span.
fn read_pages(
    base: String,
    key: PrivateKey,
    address: String,
    chain_id: [u8; 32],
    node_id: String,
    pages: usize,
) -> Result<(Vec<Duration>, Vec<Duration>), String> {
    // The first WARMUP_PAGES are not timed: right after the bulk fill the
    // first hundred or so pages took about 5 ms each in some runs (not the
    // first pass over cold pages: requests 21-99 of one run), and 20 such
    // requests are the p99 of 2,000.
    const WARMUP_PAGES: usize = 200;
    let run = async move {
        let http = reqwest::Client::new();
        let requests = WARMUP_PAGES + pages;
        let mut lat = Vec::with_capacity(pages);
        let mut control = Vec::with_capacity(pages);
        let info = format!("{base}/v1/info");
        let mut cursor: Option<String> = None;
        for i in 0..requests {
            let mut pq = format!("/v1/inbox/{address}?order=newest&limit=100");
            if let Some(c) = &cursor {
                pq.push_str(&format!("&cursor={c}"));
            }
            let req = RequestParts {
                method: "GET",
                path_and_query: &pq,
                body: b"",
            };
            let headers = make_proof_headers(
                &key,
                &chain_id,
                &node_id,
                &address,
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
            // messages kept this client's core busy, on a machine whose
            // other core is the node's, and that showed in the node's tail
            // latency.
            let v: PageShape = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            if v.messages.len() != 100 {
                return Err("inbox page did not hold 100 messages".into());
            }
            // Walk 20 pages deep, then start again from the newest.
            cursor = if i % 20 == 19 { None } else { v.next_cursor };
            let t = Instant::now();
            let r = http.get(&info).send().await.map_err(|e| e.to_string())?;
            let ok = r.status().is_success();
            r.bytes().await.map_err(|e| e.to_string())?;
            if i >= WARMUP_PAGES {
                control.push(t.elapsed());
            }
            if !ok {
                return Err("GET /v1/info failed".into());
            }
            if i % 100 == 0 {
                progress("inbox pages of 100", i, requests);
            }
        }
        progress("inbox pages of 100", requests, requests);
        Ok((lat, control))
    };
    std::thread::Builder::new()
        .name("bench-reader".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(run)
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "the inbox reader panicked".to_string())?
}
