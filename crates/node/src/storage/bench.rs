//! Storage benchmark: the backends side by side on the node's workload, in one
//! run, reported as ratios against a baseline measured in that same run (the
//! machine is shared and noisy, so absolute figures from different runs do not
//! compare; ratios from one interleaved run do).
//!
//! Phases, each repeated `rounds` times with the backends interleaved (the
//! order alternates per round) so drift in machine load hits all of them:
//! 1. durable ingest into a fresh store, with batch sizes `batch_sizes`
//!    (each batch is one fsync'd `put_batch`, as the group-commit writer does);
//! 2. (once per backend) bulk load of `messages` messages over `recipients`
//!    recipients: 10% of them go to 1% "hot" recipients whose inboxes hold more
//!    than a page, the rest spread uniformly; then the loaded store is closed
//!    and opened again (timed);
//! 3. reads on the loaded store: first inbox page (100, newest first) of a hot
//!    recipient, its second page by cursor, the first page of a random
//!    recipient, and `lookup` of a known and an unknown id;
//! 4. purge: each round expires another slice of the loaded messages.
//!
//! Call [`run`]; `cargo run --release -p fio-l2-node --example storage_bench`
//! is the command-line wrapper.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::{open, Backend, NewMessage, Order, Store, StoreError};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Backends to compare; the first is the baseline of every ratio.
    pub backends: Vec<Backend>,
    /// Messages in the loaded store (phase 2).
    pub messages: usize,
    /// Distinct recipients of the loaded store.
    pub recipients: usize,
    /// Bytes of (random) binary per message; real envelopes are ~300-600 bytes.
    pub body_bytes: usize,
    /// Batch sizes of the ingest phase.
    pub batch_sizes: Vec<usize>,
    /// Messages stored per round with batch size 1 (each one an fsync).
    pub single_puts: usize,
    /// Messages stored per round with each batch size above 1.
    pub batched_puts: usize,
    /// Queries per read kind per round.
    pub queries: usize,
    /// Messages a writer thread stores (batches of 64) per round of the mixed
    /// phase, while inbox pages are read.
    pub mixed_puts: usize,
    /// Interleaved repetitions.
    pub rounds: usize,
    /// Where the databases go (a real disk: fsync on tmpfs measures nothing).
    /// Default: a fresh directory under the system temp dir, removed afterwards.
    pub dir: Option<PathBuf>,
    pub seed: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            backends: Backend::ALL.to_vec(),
            messages: 200_000,
            recipients: 10_000,
            body_bytes: 400,
            batch_sizes: vec![1, 64, 256],
            single_puts: 300,
            batched_puts: 16_384,
            queries: 2_000,
            mixed_puts: 8_192,
            rounds: 3,
            dir: None,
            seed: 0x5eed_f012,
        }
    }
}

/// One measured quantity for every backend.
#[derive(Clone, Debug)]
pub struct Metric {
    pub name: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// Per backend: the median over rounds of its value, and the median over
    /// rounds of (its value / the baseline's value in the same round).
    pub values: Vec<(Backend, f64, f64)>,
}

/// The benchmark's result; `Display` prints the table of docs/storage.md.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub options: BenchOptions,
    pub metrics: Vec<Metric>,
    /// Database size on disk after the bulk load, bytes per message.
    pub bytes_per_message: Vec<(Backend, f64)>,
    pub elapsed: Duration,
}

impl BenchReport {
    /// The metric named `name`, if measured.
    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let base = o.backends.first().map(|b| b.name()).unwrap_or("-");
        writeln!(
            f,
            "storage bench: {} messages of {} B over {} recipients, {} rounds, {:.1}s",
            o.messages,
            o.body_bytes,
            o.recipients,
            o.rounds,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "medians over rounds; ratio = median of per-round (backend / {base}); \
             for latencies lower is better, for throughput higher is better"
        )?;
        write!(f, "{:<44} {:>8}", "metric", "unit")?;
        for b in &o.backends {
            write!(f, " {:>12} {:>7}", b.name(), "ratio")?;
        }
        writeln!(f)?;
        for m in &self.metrics {
            write!(f, "{:<44} {:>8}", m.name, m.unit)?;
            for (_, v, r) in &m.values {
                write!(f, " {:>12} {:>7.2}", fmt_num(*v), r)?;
            }
            writeln!(f)?;
        }
        write!(f, "{:<44} {:>8}", "disk after load", "B/msg")?;
        let b0 = self.bytes_per_message.first().map(|x| x.1).unwrap_or(0.0);
        for (_, v) in &self.bytes_per_message {
            let r = if b0 > 0.0 { v / b0 } else { 0.0 };
            write!(f, " {:>12} {:>7.2}", fmt_num(*v), r)?;
        }
        writeln!(f)
    }
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

/// Per-round values of each metric, per backend, before reduction.
struct Collector {
    backends: Vec<Backend>,
    /// (name, unit, higher_is_better, per backend per round)
    rows: Vec<(String, &'static str, bool, Vec<Vec<f64>>)>,
}

impl Collector {
    fn add(&mut self, name: &str, unit: &'static str, hib: bool, backend: Backend, v: f64) {
        let bi = self
            .backends
            .iter()
            .position(|b| *b == backend)
            .unwrap_or(0);
        let row = match self.rows.iter_mut().position(|r| r.0 == name) {
            Some(i) => &mut self.rows[i],
            None => {
                self.rows.push((
                    name.to_owned(),
                    unit,
                    hib,
                    vec![Vec::new(); self.backends.len()],
                ));
                let last = self.rows.len() - 1;
                &mut self.rows[last]
            }
        };
        row.3[bi].push(v);
    }

    fn finish(self) -> Vec<Metric> {
        let backends = self.backends;
        self.rows
            .into_iter()
            .map(|(name, unit, hib, per)| {
                let base = per.first().cloned().unwrap_or_default();
                let values = backends
                    .iter()
                    .zip(&per)
                    .map(|(b, vals)| {
                        let ratios: Vec<f64> = vals
                            .iter()
                            .zip(&base)
                            .map(|(v, b0)| if *b0 > 0.0 { v / b0 } else { f64::NAN })
                            .collect();
                        (*b, median(vals), median(&ratios))
                    })
                    .collect();
                Metric {
                    name,
                    unit,
                    higher_is_better: hib,
                    values,
                }
            })
            .collect()
    }
}

/// Fake-but-realistic messages: random ids and binaries (the store never parses
/// them), FIO-Address-shaped names.
struct Gen {
    rng: StdRng,
    body_bytes: usize,
    recipients: usize,
    /// Eighths of a second: eight messages are created per second.
    created: u64,
}

impl Gen {
    fn recipient_name(i: usize) -> String {
        format!("user{i}@wallet")
    }

    /// 10% of traffic to the first 1% of recipients (the "hot" inboxes).
    fn pick_recipient(&mut self) -> usize {
        let hot = (self.recipients / 100).max(1);
        if self.rng.gen_bool(0.1) {
            self.rng.gen_range(0..hot)
        } else {
            self.rng.gen_range(0..self.recipients)
        }
    }

    fn message(&mut self, expires: u32) -> NewMessage {
        let mut id = [0u8; 32];
        self.rng.fill_bytes(&mut id);
        let mut binary = vec![0u8; self.body_bytes];
        self.rng.fill_bytes(&mut binary);
        let r = self.pick_recipient();
        let s = self.rng.gen_range(0..self.recipients);
        self.created += 1;
        NewMessage {
            id,
            recipient: Self::recipient_name(r),
            sender: Self::recipient_name(s),
            created: u32::try_from(self.created / 8).unwrap_or(u32::MAX),
            expires,
            binary,
        }
    }
}

/// Clock of the benchmark's world: messages are created around it.
const NOW: u32 = 1_800_000_000;
const FAR: u32 = NOW + 30 * 86_400;

fn timed<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<(T, Duration), StoreError> {
    let t = Instant::now();
    let out = f()?;
    Ok((out, t.elapsed()))
}

fn round_order(backends: &[Backend], round: usize) -> Vec<Backend> {
    let mut v = backends.to_vec();
    if round % 2 == 1 {
        v.reverse();
    }
    v
}

fn dir_size(p: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if let Ok(md) = e.metadata() {
                total += if md.is_dir() {
                    dir_size(&e.path())
                } else {
                    md.len()
                };
            }
        }
    }
    total
}

/// Runs the benchmark (a few minutes with the defaults) and returns the report.
/// `progress` gets a line per step.
pub fn run(opts: BenchOptions, mut progress: impl FnMut(&str)) -> Result<BenchReport, StoreError> {
    let started = Instant::now();
    if opts.backends.is_empty() {
        return Err(StoreError::Invalid("no backend to benchmark".into()));
    }
    let rounds = opts.rounds.max(1);
    let (root, remove_root) = match &opts.dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            (
                std::env::temp_dir().join(format!(
                    "fio-l2-storage-bench-{}-{nanos}",
                    std::process::id()
                )),
                true,
            )
        }
    };
    std::fs::create_dir_all(&root)?;
    let result = run_in(&opts, rounds, &root, &mut progress);
    if remove_root {
        let _ = std::fs::remove_dir_all(&root);
    }
    let (metrics, bytes_per_message) = result?;
    Ok(BenchReport {
        options: opts,
        metrics,
        bytes_per_message,
        elapsed: started.elapsed(),
    })
}

type RunOut = (Vec<Metric>, Vec<(Backend, f64)>);

fn run_in(
    opts: &BenchOptions,
    rounds: usize,
    root: &std::path::Path,
    progress: &mut dyn FnMut(&str),
) -> Result<RunOut, StoreError> {
    let mut col = Collector {
        backends: opts.backends.clone(),
        rows: Vec::new(),
    };
    let mut gen = Gen {
        rng: StdRng::seed_from_u64(opts.seed),
        body_bytes: opts.body_bytes,
        recipients: opts.recipients.max(1),
        created: (u64::from(NOW) - 86_400) * 8,
    };

    // 1. Durable ingest into fresh stores.
    for round in 0..rounds {
        for backend in round_order(&opts.backends, round) {
            let dir = root.join(format!("ingest-{}-{round}", backend.name()));
            let store = open(backend, &dir)?;
            for &bs in &opts.batch_sizes {
                let bs = bs.max(1);
                let total = if bs == 1 {
                    opts.single_puts
                } else {
                    opts.batched_puts
                };
                let batches: Vec<Vec<NewMessage>> = (0..total.div_ceil(bs))
                    .map(|_| (0..bs).map(|_| gen.message(FAR)).collect())
                    .collect();
                let n: usize = batches.iter().map(Vec::len).sum();
                let (_, d) = timed(|| {
                    for b in &batches {
                        store.put_batch(b)?;
                    }
                    Ok(())
                })?;
                let rate = n as f64 / d.as_secs_f64();
                col.add(&format!("ingest batch {bs}"), "msg/s", true, backend, rate);
                progress(&format!(
                    "round {round} {backend}: ingest batch {bs}: {rate:.0} msg/s"
                ));
            }
            drop(store);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    // 2. Bulk load. Half the messages expire in `rounds` slices (purged in
    // phase 4), half far in the future. Same messages for every backend.
    let load_batch = 1_000;
    let mut loaded: Vec<(Backend, Arc<dyn Store>)> = Vec::new();
    let mut known_ids: Vec<[u8; 32]> = Vec::new();
    let mut bytes_per_message = Vec::new();
    {
        let mut msgs = Vec::with_capacity(opts.messages);
        for i in 0..opts.messages {
            let expires = if i % 2 == 0 {
                NOW + 1 + (i / 2 % rounds) as u32
            } else {
                FAR
            };
            msgs.push(gen.message(expires));
        }
        known_ids.extend(msgs.iter().step_by(7).map(|m| m.id));
        for backend in &opts.backends {
            let dir = root.join(format!("loaded-{}", backend.name()));
            let store = open(*backend, &dir)?;
            let (_, d) = timed(|| {
                for chunk in msgs.chunks(load_batch) {
                    store.put_batch(chunk)?;
                }
                Ok(())
            })?;
            let rate = msgs.len() as f64 / d.as_secs_f64();
            // Once per backend, so no rounds: the ratio is of this one run.
            col.add("bulk load, batch 1000", "msg/s", true, *backend, rate);
            progress(&format!(
                "{backend}: loaded {} messages, {rate:.0} msg/s",
                msgs.len()
            ));
            let bpm = dir_size(&dir) as f64 / msgs.len().max(1) as f64;
            bytes_per_message.push((*backend, bpm));
            // Opening what was loaded: redb rebuilds its id map from a scan.
            drop(store);
            let (store, d) = timed(|| open(*backend, &dir))?;
            col.add(
                "open the loaded store",
                "ms",
                false,
                *backend,
                d.as_secs_f64() * 1e3,
            );
            loaded.push((*backend, store));
        }
    }

    // 3. Reads, then 4. purge, interleaved per round.
    let hot = (opts.recipients / 100).max(1);
    for round in 0..rounds {
        let queries: Vec<Query> = (0..opts.queries)
            .map(|_| {
                let mut unknown = [0u8; 32];
                gen.rng.fill_bytes(&mut unknown);
                let known = if known_ids.is_empty() {
                    unknown
                } else {
                    known_ids[gen.rng.gen_range(0..known_ids.len())]
                };
                (
                    gen.rng.gen_range(0..hot),
                    gen.rng.gen_range(0..opts.recipients.max(1)),
                    known,
                    unknown,
                )
            })
            .collect();
        let mixed: Vec<Vec<NewMessage>> = (0..opts.mixed_puts.div_ceil(64))
            .map(|_| (0..64).map(|_| gen.message(FAR)).collect())
            .collect();
        for backend in round_order(&opts.backends, round) {
            let store = match loaded.iter().find(|(b, _)| *b == backend) {
                Some((_, s)) => s.clone(),
                None => continue,
            };
            // Reads see the clock before this round's purge slice expires.
            let now = NOW + round as u32;
            let mut hot1 = Vec::new();
            let mut hot2 = Vec::new();
            let mut any1 = Vec::new();
            let mut look_k = Vec::new();
            let mut look_u = Vec::new();
            let mut rows = 0usize;
            for (h, r, known, unknown) in &queries {
                let name = Gen::recipient_name(*h);
                let (page, d) =
                    timed(|| store.list_inbox(&name, None, 100, Order::NewestFirst, now))?;
                hot1.push(d.as_secs_f64() * 1e6);
                rows += page.len();
                let cursor = page.last().map(|e| e.seq);
                let (page2, d) =
                    timed(|| store.list_inbox(&name, cursor, 100, Order::NewestFirst, now))?;
                hot2.push(d.as_secs_f64() * 1e6);
                rows += page2.len();
                let name = Gen::recipient_name(*r);
                let (page, d) =
                    timed(|| store.list_inbox(&name, None, 100, Order::NewestFirst, now))?;
                any1.push(d.as_secs_f64() * 1e6);
                rows += page.len();
                let (_, d) = timed(|| store.lookup(known))?;
                look_k.push(d.as_secs_f64() * 1e6);
                let (_, d) = timed(|| store.lookup(unknown))?;
                look_u.push(d.as_secs_f64() * 1e6);
            }
            for (label, samples) in [
                ("hot inbox page 1 (100, newest first)", &mut hot1),
                ("hot inbox page 2 (cursor)", &mut hot2),
                ("random inbox page 1", &mut any1),
                ("lookup known id", &mut look_k),
                ("lookup unknown id", &mut look_u),
            ] {
                let p50 = percentile(samples, 0.5);
                let p99 = percentile(samples, 0.99);
                col.add(&format!("{label} p50"), "us", false, backend, p50);
                col.add(&format!("{label} p99"), "us", false, backend, p99);
            }
            progress(&format!(
                "round {round} {backend}: reads done ({rows} rows returned)"
            ));

            // 3b. Mixed: a writer thread ingests while this thread reads pages, as
            // on a live node (WAL readers vs. MVCC snapshots under a writer).
            let (write_rate, mut mixed_hot, mut mixed_any) =
                mixed_phase(&store, &mixed, &queries, now)?;
            col.add(
                "mixed: ingest batch 64 while reading",
                "msg/s",
                true,
                backend,
                write_rate,
            );
            for (label, samples) in [
                ("mixed: hot inbox page 1", &mut mixed_hot),
                ("mixed: random inbox page 1", &mut mixed_any),
            ] {
                let p50 = percentile(samples, 0.5);
                let p99 = percentile(samples, 0.99);
                col.add(&format!("{label} p50"), "us", false, backend, p50);
                col.add(&format!("{label} p99"), "us", false, backend, p99);
            }
            progress(&format!(
                "round {round} {backend}: mixed: {write_rate:.0} msg/s written, {} pages read",
                mixed_hot.len() + mixed_any.len()
            ));

            // 3c. Acks: recipients delete what they read, 64 ids per call (one
            // durable transaction each, leaving tombstones).
            let mut deleted = 0usize;
            let mut del_time = Duration::ZERO;
            for (h, _, _, _) in queries.iter().take((opts.queries / 20).max(1)) {
                let name = Gen::recipient_name(*h);
                let page = store.list_inbox(&name, None, 64, Order::OldestFirst, now)?;
                let ids: Vec<[u8; 32]> = page.iter().map(|e| e.id).collect();
                if ids.is_empty() {
                    continue;
                }
                let (res, d) = timed(|| store.delete(&name, &ids))?;
                deleted += res.iter().filter(|x| **x).count();
                del_time += d;
            }
            let del_rate = deleted as f64 / del_time.as_secs_f64().max(1e-9);
            col.add(
                "ack delete, 64 ids per call",
                "msg/s",
                true,
                backend,
                del_rate,
            );

            // 4. Purge this round's slice (a quarter to a sixth of the store).
            let before = store.count()?;
            let (removed, d) = timed(|| store.purge_expired(NOW + 1 + round as u32))?;
            let rate = removed as f64 / d.as_secs_f64();
            col.add("purge expired", "msg/s", true, backend, rate);
            progress(&format!(
                "round {round} {backend}: purged {removed} of {before}, {rate:.0} msg/s"
            ));
        }
    }
    Ok((col.finish(), bytes_per_message))
}

type Query = (usize, usize, [u8; 32], [u8; 32]);

/// Returns (write msg/s, hot page latencies us, random page latencies us).
fn mixed_phase(
    store: &Arc<dyn Store>,
    batches: &[Vec<NewMessage>],
    queries: &[Query],
    now: u32,
) -> Result<(f64, Vec<f64>, Vec<f64>), StoreError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    let mut hot = Vec::new();
    let mut any = Vec::new();
    let written = std::thread::scope(|sc| {
        let writer = sc.spawn(|| {
            let t = Instant::now();
            let mut n = 0usize;
            let mut res = Ok(());
            for b in batches {
                if let Err(e) = store.put_batch(b) {
                    res = Err(e);
                    break;
                }
                n += b.len();
            }
            done.store(true, Ordering::Release);
            res.map(|()| n as f64 / t.elapsed().as_secs_f64())
        });
        let mut read_res = Ok(());
        'outer: while !done.load(Ordering::Acquire) {
            for (h, r, _, _) in queries {
                if done.load(Ordering::Acquire) {
                    break 'outer;
                }
                for (who, into) in [(*h, &mut hot), (*r, &mut any)] {
                    let name = Gen::recipient_name(who);
                    match timed(|| store.list_inbox(&name, None, 100, Order::NewestFirst, now)) {
                        Ok((_, d)) => into.push(d.as_secs_f64() * 1e6),
                        Err(e) => {
                            read_res = Err(e);
                            break 'outer;
                        }
                    }
                }
            }
            if queries.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let w = writer
            .join()
            .unwrap_or_else(|_| Err(StoreError::Backend("bench writer thread panicked".into())));
        read_res.and(w)
    })?;
    Ok((written, hot, any))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_run_reports_every_metric_for_every_backend() {
        let opts = BenchOptions {
            messages: 600,
            recipients: 50,
            body_bytes: 64,
            batch_sizes: vec![1, 8],
            single_puts: 5,
            batched_puts: 40,
            queries: 10,
            mixed_puts: 64,
            rounds: 2,
            ..BenchOptions::default()
        };
        let report = run(opts, |_| {}).expect("bench runs");
        assert!(report.metric("ingest batch 8").is_some());
        assert!(report.metric("purge expired").is_some());
        assert!(report.metric("open the loaded store").is_some());
        for m in &report.metrics {
            assert_eq!(m.values.len(), 2, "{}", m.name);
            // The baseline's ratio to itself is 1.
            assert!((m.values[0].2 - 1.0).abs() < 1e-9, "{}", m.name);
        }
        let text = report.to_string();
        assert!(text.contains("redb") && text.contains("sqlite"));
    }
}
