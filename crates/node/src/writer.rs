//! Group commit: one OS thread owns all message writes.
//!
//! A durable commit costs an fsync (milliseconds on real disks) whether it holds
//! one message or a hundred, so the writer thread takes everything queued (up to
//! `max_batch`), stores it with one [`Store::put_batch`], then answers each
//! submitter. While one fsync runs, the next batch queues up by itself: batches
//! grow with load and a lone message is never delayed by a timer.
//!
//! A submission is a group of messages with one answer: an array's envelopes
//! go in together ([`WriterHandle::try_submit_many`]), so a commit never
//! splits them (the writer would otherwise wake on an array's first message
//! and commit it nearly alone), and the array costs one wake-up, not one per
//! envelope.
//!
//! The queue is bounded in messages: [`WriterHandle::try_submit`] fails at
//! once with [`WriteError::Saturated`] when it is full (the node answers 503),
//! and [`WriterHandle::submit`] waits for room. Memory stays bounded either way.
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

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

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

type Reply = oneshot::Sender<Result<Vec<PutOutcome>, WriteError>>;

/// One submission: its messages, its answer, and its places in the queue
/// (given back when the writer takes it).
struct Job {
    msgs: Vec<NewMessage>,
    reply: Reply,
    _queued: OwnedSemaphorePermit,
}

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
        // Unbounded channel, bounded by the message permits below.
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        let thread_stats = stats.clone();
        let max_batch = max_batch.max(1);
        std::thread::Builder::new()
            .name("fio-l2-writer".into())
            .spawn(move || run(store, rx, max_batch, &thread_stats))?;
        Ok(WriterHandle {
            tx,
            room: Arc::new(Semaphore::new(queue_capacity.max(1))),
            stats,
        })
    }
}

fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    max_batch: usize,
    stats: &WriterStats,
) {
    let mut msgs = Vec::with_capacity(max_batch);
    let mut replies: Vec<(Reply, usize)> = Vec::new();
    // blocking_recv parks this thread until a job comes or all senders are gone.
    while let Some(job) = rx.blocking_recv() {
        take(job, &mut msgs, &mut replies);
        // Whole submissions only: the last one may take the batch past
        // `max_batch` by less than one submission.
        while msgs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => take(job, &mut msgs, &mut replies),
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
            Ok(outcomes) if outcomes.len() == msgs.len() => {
                let mut outcomes = outcomes.into_iter();
                for (r, k) in replies.drain(..) {
                    // A submitter that stopped waiting is fine: its messages are stored.
                    let _ = r.send(Ok(outcomes.by_ref().take(k).collect()));
                }
            }
            Ok(outcomes) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let e = WriteError::Store(format!(
                    "store answered {} outcomes for {} messages",
                    outcomes.len(),
                    msgs.len()
                ));
                for (r, _) in replies.drain(..) {
                    let _ = r.send(Err(e.clone()));
                }
            }
            Err(e) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                let e = WriteError::Store(e.to_string());
                for (r, _) in replies.drain(..) {
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

/// Moves a job's messages into the batch; its queue places are given back.
fn take(job: Job, msgs: &mut Vec<NewMessage>, replies: &mut Vec<(Reply, usize)>) {
    let Job { msgs: m, reply, .. } = job;
    replies.push((reply, m.len()));
    msgs.extend(m);
}

/// A cheap, cloneable handle to the writer thread.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::UnboundedSender<Job>,
    /// Places in the queue, one per message.
    room: Arc<Semaphore>,
    stats: Arc<WriterStats>,
}

/// The answer to a queued submission: resolves once its batch has committed,
/// with one outcome per message in order.
pub struct PendingWrites {
    rx: oneshot::Receiver<Result<Vec<PutOutcome>, WriteError>>,
}

impl Future for PendingWrites {
    type Output = Result<Vec<PutOutcome>, WriteError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(WriteError::Closed)))
    }
}

/// The answer to one queued message.
pub struct PendingWrite(PendingWrites);

impl Future for PendingWrite {
    type Output = Result<PutOutcome, WriteError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| {
            r.and_then(|v| {
                v.into_iter()
                    .next()
                    .ok_or_else(|| WriteError::Store("no outcome".into()))
            })
        })
    }
}

impl WriterHandle {
    /// Queues `msg`, waiting for room if the queue is full, and resolves once it
    /// is durably stored (or refused as `Deleted`, or known as `Existing`).
    pub async fn submit(&self, msg: NewMessage) -> Result<PutOutcome, WriteError> {
        let permit = self
            .room
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WriteError::Closed)?;
        PendingWrite(self.send(vec![msg], permit)?).await
    }

    /// Queues `msg` without waiting: `Err(Saturated)` at once if the queue is
    /// full. Await the returned [`PendingWrite`] for the outcome.
    pub fn try_submit(&self, msg: NewMessage) -> Result<PendingWrite, WriteError> {
        self.try_submit_many(vec![msg]).map(PendingWrite)
    }

    /// Queues `msgs` as one submission (committed together) without waiting:
    /// `Err(Saturated)` at once if the queue has no room for all of them.
    pub fn try_submit_many(&self, msgs: Vec<NewMessage>) -> Result<PendingWrites, WriteError> {
        let n = u32::try_from(msgs.len()).map_err(|_| WriteError::Saturated)?;
        let permit = self
            .room
            .clone()
            .try_acquire_many_owned(n.max(1))
            .map_err(|e| match e {
                tokio::sync::TryAcquireError::NoPermits => WriteError::Saturated,
                tokio::sync::TryAcquireError::Closed => WriteError::Closed,
            })?;
        self.send(msgs, permit)
    }

    fn send(
        &self,
        msgs: Vec<NewMessage>,
        permit: OwnedSemaphorePermit,
    ) -> Result<PendingWrites, WriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                msgs,
                reply,
                _queued: permit,
            })
            .map_err(|_| WriteError::Closed)?;
        Ok(PendingWrites { rx })
    }

    /// Free places (messages) in the queue right now.
    pub fn queue_free(&self) -> usize {
        self.room.available_permits()
    }

    /// The writer's counters.
    pub fn stats(&self) -> WriterStatsSnapshot {
        self.stats.snapshot()
    }
}
