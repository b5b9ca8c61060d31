//! The ingest phases of `fio-l2 bench node`: single envelopes and arrays of
//! 100 sent over HTTP to a node running in this process, each measured for
//! rate, CPU per envelope (the node's threads apart from the load
//! generator's) and the writer's behaviour; and the summary of several
//! rounds (median, lowest, highest), since one short phase on a shared
//! machine can land anywhere in a wide band.

use crate::bench_util::{process_cpu, threads_cpu, threads_sched};
use fio_l2_node::state::NodeState;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The node's runtime threads are named this (bench_node.rs builds them).
pub const NODE_THREADS: &str = "l2-node";

/// Node thread groups whose CPU time is reported apart.
const GROUPS: [(&str, &str); 4] = [
    ("verification pool", "fio-l2-verify"),
    ("writer", "fio-l2-writer"),
    ("store checkpoints", "fio-l2-checkpo"),
    ("runtime (HTTP, chain, hand-offs)", NODE_THREADS),
];

/// What one ingest phase measured.
#[derive(Clone, Debug)]
pub struct Phase {
    /// Envelopes accepted per second.
    pub rate: f64,
    /// CPU µs per envelope: the node's threads, everything else (the load
    /// generator).
    pub node_us: f64,
    pub client_us: f64,
    /// CPU µs per envelope of each of [`GROUPS`].
    pub groups: [f64; 4],
    /// Store commits (`put_batch` calls).
    pub commits: u64,
    /// Share of the phase the writer spent in `put_batch`, on a core, and
    /// runnable but waiting for one.
    pub writer_busy: f64,
    pub writer_on_core: f64,
    pub writer_waiting: f64,
}

impl Phase {
    pub fn group_names() -> impl Iterator<Item = &'static str> {
        GROUPS.iter().map(|(name, _)| *name)
    }
}

/// Counters read before and after a phase.
struct Marks {
    at: Instant,
    node: Duration,
    all: Duration,
    groups: [Duration; 4],
    writer: (Duration, Duration),
    commits: u64,
    busy_micros: u64,
}

impl Marks {
    fn now(state: &NodeState) -> Self {
        let stats = state.writer.stats();
        Marks {
            at: Instant::now(),
            // The runtime's threads, the writer, checkpoints and the pool.
            node: threads_cpu(NODE_THREADS) + threads_cpu("fio-l2-"),
            all: process_cpu(),
            groups: GROUPS.map(|(_, prefix)| threads_cpu(prefix)),
            writer: threads_sched("fio-l2-writer"),
            commits: stats.batches,
            busy_micros: stats.busy_micros,
        }
    }

    fn phase_since(before: &Marks, state: &NodeState, n: usize) -> Phase {
        let after = Marks::now(state);
        let secs = after.at.duration_since(before.at).as_secs_f64();
        let us = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() * 1e6 / n as f64;
        let share = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() / secs;
        let node_us = us(after.node, before.node);
        Phase {
            rate: n as f64 / secs,
            node_us,
            client_us: us(after.all, before.all) - node_us,
            groups: std::array::from_fn(|i| us(after.groups[i], before.groups[i])),
            commits: after.commits - before.commits,
            writer_busy: (after.busy_micros - before.busy_micros) as f64 / 1e6 / secs,
            writer_on_core: share(after.writer.0, before.writer.0),
            writer_waiting: share(after.writer.1, before.writer.1),
        }
    }
}

/// POSTs each of `bodies` to the node's `/v1/messages` from `clients`
/// concurrent clients, which take them in turn, and hands each answer to
/// `check` with the body's index.
async fn post_all<C, Fut>(
    http: &reqwest::Client,
    base: &str,
    bodies: Arc<Vec<Vec<u8>>>,
    clients: usize,
    check: C,
) -> Result<(), String>
where
    C: Fn(usize, reqwest::Response) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/v1/messages");
    let mut tasks = vec![];
    for _ in 0..clients {
        let (http, bodies, next, url, check) = (
            http.clone(),
            bodies.clone(),
            next.clone(),
            url.clone(),
            check.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return Ok::<(), String>(());
                }
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                check(i, r).await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Sends `envelopes` one per request from `clients` concurrent clients;
/// each must be answered `expect`: 201 for new envelopes, 200 for a resend
/// of stored ones (which the node answers from its known-id check, before
/// the signature, the chain and the writer).
pub async fn singles(
    http: &reqwest::Client,
    base: &str,
    state: &NodeState,
    envelopes: Arc<Vec<Vec<u8>>>,
    clients: usize,
    expect: u16,
    label: &str,
) -> Result<Phase, String> {
    let n = envelopes.len();
    let marks = Marks::now(state);
    let progress_label = label.to_string();
    post_all(http, base, envelopes, clients, move |i, r| {
        let label = progress_label.clone();
        async move {
            if r.status().as_u16() != expect {
                return Err(format!(
                    "ingest answered {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ));
            }
            // Read to the end, so the connection goes back to the pool.
            r.bytes().await.map_err(|e| e.to_string())?;
            if i % 500 == 0 {
                crate::bench_node::progress(&label, i, n);
            }
            Ok(())
        }
    })
    .await?;
    let phase = Marks::phase_since(&marks, state, n);
    crate::bench_node::progress(label, n, n);
    Ok(phase)
}

/// Sends `envelopes` in arrays of 100 from `clients` concurrent clients;
/// every element must be answered 201.
pub async fn arrays(
    http: &reqwest::Client,
    base: &str,
    state: &NodeState,
    envelopes: &[Vec<u8>],
    clients: usize,
    label: &str,
) -> Result<Phase, String> {
    let batches: Arc<Vec<Vec<u8>>> = Arc::new(
        envelopes
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
            .collect(),
    );
    let sizes: Arc<Vec<usize>> = Arc::new(envelopes.chunks(100).map(|c| c.len()).collect());
    let marks = Marks::now(state);
    let progress_label = label.to_string();
    post_all(http, base, batches, clients, move |i, r| {
        let (label, sizes) = (progress_label.clone(), sizes.clone());
        async move {
            // Only each result's status: a full `serde_json::Value` of
            // 100 results is load-generator CPU taken from the node.
            let body = r.bytes().await.map_err(|e| e.to_string())?;
            let ok = serde_json::from_slice::<ArrayAnswer>(&body)
                .map(|v| {
                    v.results.len() == sizes[i] && v.results.iter().all(|x| x.http_status == 201)
                })
                .unwrap_or(false);
            if !ok {
                return Err(format!(
                    "batch ingest refused: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            crate::bench_node::progress(&label, i + 1, sizes.len());
            Ok(())
        }
    })
    .await?;
    Ok(Marks::phase_since(&marks, state, envelopes.len()))
}

/// What the load generator reads of an array's answer.
#[derive(serde::Deserialize)]
struct ArrayAnswer {
    results: Vec<ResultStatus>,
}

#[derive(serde::Deserialize)]
struct ResultStatus {
    http_status: u16,
}

/// Median, lowest and highest of some measurements.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut v: Vec<f64> = values.into_iter().collect();
        assert!(!v.is_empty(), "a spread of nothing");
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[v.len() - 1],
        }
    }

    /// `0.58 (0.54-0.61)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}-{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn spread_takes_the_middle_value_or_the_mean_of_the_two_middle_ones() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of([4.0, 1.0, 3.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert_eq!(Spread::of([0.5]).show(2), "0.50 (0.50-0.50)");
    }
}
