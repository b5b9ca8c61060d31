//! Group commit: one OS thread owns all message writes.
//!
//! A durable commit costs an fsync (milliseconds on real disks) whether it holds
//! one message or a hundred, so the writer thread takes everything queued (up to
//! `max_batch`), stores it with one [`Store::put_batch`], then answers each
//! submitter. While one fsync runs, the next batch queues up by itself: batches
//! grow with load and a lone message is never delayed by a timer.
//!
//! The queue is bounded: [`WriterHandle::try_submit`] fails at once with
//! [`WriteError::Saturated`] when it is full (the node answers 503), and
//! [`WriterHandle::submit`] waits for room. Memory stays bounded either way.
//!
//! The thread runs its own OS thread rather than a tokio task because
//! `put_batch` blocks on fsync. It stops when every handle has been dropped and
//! the queue is drained.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};

use crate::storage::{NewMessage, PutOutcome, Store};

/// Why a write did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The queue is full: try again later (HTTP 503).
    Saturated,
    /// The writer thread is gone (node shutting down).
    Closed,
    /// The store failed the batch this message was in; nothing of it was stored.
    Store(String),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Saturated => f.write_str("write queue full"),
            WriteError::Closed => f.write_str("writer stopped"),
            WriteError::Store(m) => write!(f, "store failed: {m}"),
        }
    }
}

impl std::error::Error for WriteError {}

type Reply = oneshot::Sender<Result<PutOutcome, WriteError>>;

/// Counters of the writer thread, for metrics and tests.
#[derive(Default, Debug)]
pub struct WriterStats {
    batches: AtomicU64,
    messages: AtomicU64,
    largest_batch: AtomicU64,
    failed_batches: AtomicU64,
    busy_micros: AtomicU64,
}

/// A copy of [`WriterStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStatsSnapshot {
    /// Commits (`put_batch` calls), successful or not.
    pub batches: u64,
    /// Messages passed to `put_batch`.
    pub messages: u64,
    /// Most messages in one commit.
    pub largest_batch: u64,
    /// Commits that returned an error.
    pub failed_batches: u64,
    /// Wall time spent inside `put_batch` and `after_batch` (writing, syncing,
    /// checkpoints), microseconds.
    pub busy_micros: u64,
}

impl WriterStats {
    pub fn snapshot(&self) -> WriterStatsSnapshot {
        WriterStatsSnapshot {
            batches: self.batches.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            largest_batch: self.largest_batch.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            busy_micros: self.busy_micros.load(Ordering::Relaxed),
        }
    }
}

/// Spawns the writer thread; see the module docs.
pub struct GroupCommitWriter;

impl GroupCommitWriter {
    /// Starts the writer thread over `store`. `queue_capacity` bounds the
    /// messages waiting (not counting the batch being committed); `max_batch`
    /// bounds one commit. Both are at least 1.
    pub fn spawn(
        store: Arc<dyn Store>,
        queue_capacity: usize,
        max_batch: usize,
    ) -> std::io::Result<WriterHandle> {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let max_batch = max_batch.max(1);
        std::thread::Builder::new()
            .name("fio-l2-writer".into())
            .spawn(move || run(store, rx, max_batch, &thread_stats))?;
        Ok(WriterHandle { tx, stats })
    }
}

fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<(NewMessage, Reply)>,
    max_batch: usize,
    stats: &WriterStats,
) {
    let mut msgs = Vec::with_capacity(max_batch);
    let mut replies = Vec::with_capacity(max_batch);
    // blocking_recv parks this thread until a message comes or all senders are gone.
    while let Some((m, r)) = rx.blocking_recv() {
        msgs.push(m);
        replies.push(r);
        while msgs.len() < max_batch {
            match rx.try_recv() {
                Ok((m, r)) => {
                    msgs.push(m);
                    replies.push(r);
                }
                Err(_) => break,
            }
        }
        let n = msgs.len() as u64;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.messages.fetch_add(n, Ordering::Relaxed);
        stats.largest_batch.fetch_max(n, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let result = store.put_batch(&msgs);
        stats
            .busy_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok(outcomes) if outcomes.len() == replies.len() => {
                for (r, o) in replies.drain(..).zip(outcomes) {
                    // A submitter that stopped waiting is fine: its message is stored.
                    let _ = r.send(Ok(o));
                }
            }
            Ok(outcomes) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let e = WriteError::Store(format!(
                    "store answered {} outcomes for {} messages",
                    outcomes.len(),
                    replies.len()
                ));
                for r in replies.drain(..) {
                    let _ = r.send(Err(e.clone()));
                }
            }
            Err(e) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let e = WriteError::Store(e.to_string());
                for r in replies.drain(..) {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
        msgs.clear();
        // Submitters have their answers; now the backend's deferred work.
        let started = std::time::Instant::now();
        if let Err(e) = store.after_batch() {
            tracing::warn!("store maintenance after a batch failed: {e}");
        }
        stats
            .busy_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// A cheap, cloneable handle to the writer thread.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<(NewMessage, Reply)>,
    stats: Arc<WriterStats>,
}

/// The answer to a queued message: resolves once its batch has committed.
pub struct PendingWrite {
    rx: oneshot::Receiver<Result<PutOutcome, WriteError>>,
}

impl Future for PendingWrite {
    type Output = Result<PutOutcome, WriteError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(WriteError::Closed)))
    }
}

impl WriterHandle {
    /// Queues `msg`, waiting for room if the queue is full, and resolves once it
    /// is durably stored (or refused as `Deleted`, or known as `Existing`).
    pub async fn submit(&self, msg: NewMessage) -> Result<PutOutcome, WriteError> {
        let (rtx, rrx) = oneshot::channel();
        self.tx
            .send((msg, rtx))
            .await
            .map_err(|_| WriteError::Closed)?;
        PendingWrite { rx: rrx }.await
    }

    /// Queues `msg` without waiting: `Err(Saturated)` at once if the queue is
    /// full. Await the returned [`PendingWrite`] for the outcome.
    pub fn try_submit(&self, msg: NewMessage) -> Result<PendingWrite, WriteError> {
        let (rtx, rrx) = oneshot::channel();
        self.tx.try_send((msg, rtx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WriteError::Saturated,
            mpsc::error::TrySendError::Closed(_) => WriteError::Closed,
        })?;
        Ok(PendingWrite { rx: rrx })
    }

    /// Free places in the queue right now.
    pub fn queue_free(&self) -> usize {
        self.tx.capacity()
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStatsSnapshot {
        self.stats.snapshot()
    }
}
