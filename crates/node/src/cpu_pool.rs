//! Admission's CPU-bound work (parsing, checks, signatures) runs on its own
//! small pool of OS threads at a lower scheduling priority.
//!
//! Why: the group-commit writer is the node's one serial stage. On a machine
//! whose cores are all busy verifying, a writer thread at the same priority
//! waited for a core more than half of the time it had work (measured with
//! `fio-l2 bench node`), and every message in its batch waited with it. At a
//! higher nice value verification yields to the writer, to the HTTP workers and
//! to inbox reads, and still takes every cycle they leave. `nice` only lowers
//! priority, so no privilege is needed; on other systems than Linux the pool
//! runs at normal priority.
//!
//! Jobs are whole chunks of envelopes (see `admission::offline_stage`), and
//! the threads take them in fair order among clients (fair_queue.rs), not
//! first come, first served: a light client's chunk waits for at most the
//! jobs running now, never behind a heavy client's backlog. The queue is the
//! only place admission work waits, so a thread that finishes a job starts
//! the next at once, without a round trip through the async runtime.

use crate::fair_queue::{FairQueue, Place};
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

type Job = Box<dyn FnOnce() + Send>;

/// How much nicer than the process pool threads run (nice 0 is normal, 19
/// the lowest priority). At +5 a nice-0 thread gets about 3x the CPU share of
/// a pool thread; +10 (about 9x) starved legitimate senders' checks behind an
/// attacker's HTTP traffic in the spam benchmark (docs/BENCHMARKS.md).
pub const POOL_NICE: i32 = 5;

/// A pool of threads taking jobs from a fair queue; flows are `K`.
pub struct CpuPool<K: Hash + Eq + Clone> {
    shared: Arc<Shared<K>>,
}

struct Shared<K: Hash + Eq + Clone> {
    queue: Mutex<Queue<K>>,
    ready: Condvar,
    /// The queue's length, kept under the lock, read without it (the
    /// per-IP gate asks on every submission).
    queued: AtomicUsize,
}

struct Queue<K: Hash + Eq + Clone> {
    jobs: FairQueue<K, Job>,
    closed: bool,
}

impl<K: Hash + Eq + Clone> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, Queue<K>> {
        // Jobs run outside the lock, so a poisoned lock holds a sound queue.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the queue's length after a change (under the lock).
    fn note_len(&self, q: &Queue<K>) {
        self.queued.store(q.jobs.len(), Ordering::Relaxed);
    }
}

/// The job did not run to the end (it panicked, or the pool is gone).
#[derive(Debug)]
pub struct JobLost;

/// A job's place while its caller waits: a caller that gives up (its future
/// is dropped, say by a timeout) takes the job out of the queue at once, so
/// giving up cannot pile up work while every thread is busy. Once the caller
/// has its answer the job is out of the queue already, and this does nothing
/// (no second trip through the lock per job).
struct Queued<'a, K: Hash + Eq + Clone> {
    shared: &'a Shared<K>,
    place: Place,
    answered: bool,
}

impl<K: Hash + Eq + Clone> Drop for Queued<'_, K> {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let gone = {
            let mut q = self.shared.lock();
            let gone = q.jobs.remove(self.place);
            self.shared.note_len(&q);
            gone
        };
        // Dropped outside the lock: the job owns the caller's reply sender.
        drop(gone);
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> CpuPool<K> {
    /// Starts `threads` threads named `fio-l2-verify`, each `nice` steps
    /// nicer than the thread that starts them.
    pub fn start(threads: usize, nice: i32) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: FairQueue::default(),
                closed: false,
            }),
            ready: Condvar::new(),
            queued: AtomicUsize::new(0),
        });
        for _ in 0..threads.max(1) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("fio-l2-verify".into())
                .spawn(move || {
                    lower_priority(nice);
                    while let Some(job) = next_job(&shared) {
                        // A panicking job drops its reply (the caller sees
                        // JobLost); the thread stays.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(CpuPool { shared })
    }

    /// Runs `f`, work of `cost` from `flow`, on the pool when its turn comes
    /// and waits for its result without blocking the async runtime.
    /// Cancel-safe: dropped before its turn, `f` never runs.
    pub async fn run<T, F>(&self, flow: K, cost: u64, f: F) -> Result<T, JobLost>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        let place = {
            let mut q = self.shared.lock();
            if q.closed {
                return Err(JobLost);
            }
            let place = q.jobs.push(flow, cost, job);
            self.shared.note_len(&q);
            place
        };
        self.shared.ready.notify_one();
        let mut queued = Queued {
            shared: &self.shared,
            place,
            answered: false,
        };
        // Answered or lost (a panic, a closed pool), the job has left the queue.
        let r = answer.await;
        queued.answered = true;
        r.map_err(|_| JobLost)
    }

    /// Jobs waiting for a thread now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }
}

/// Blocks until a job's turn comes; None once the pool is closed.
fn next_job<K: Hash + Eq + Clone>(shared: &Shared<K>) -> Option<Job> {
    let mut q = shared.lock();
    loop {
        if q.closed {
            return None;
        }
        if let Some(job) = q.jobs.pop() {
            shared.note_len(&q);
            return Some(job);
        }
        q = shared.ready.wait(q).unwrap_or_else(|p| p.into_inner());
    }
}

impl<K: Hash + Eq + Clone> Drop for CpuPool<K> {
    /// The threads end; jobs still queued are dropped (their callers see
    /// JobLost).
    fn drop(&mut self) {
        let jobs = {
            let mut q = self.shared.lock();
            q.closed = true;
            let jobs = std::mem::take(&mut q.jobs);
            self.shared.note_len(&q);
            jobs
        };
        drop(jobs);
        self.shared.ready.notify_all();
    }
}

/// Lowers the calling thread's priority by `nice` (Linux; elsewhere a no-op).
#[cfg(target_os = "linux")]
pub fn lower_priority(nice: i32) {
    // On Linux the nice value belongs to the thread, named by its tid; a new
    // thread starts with its creator's. Only raising it needs no privilege.
    // SAFETY: plain syscalls on the calling thread, no memory passed.
    let r = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let base = libc::getpriority(libc::PRIO_PROCESS, tid);
        libc::setpriority(libc::PRIO_PROCESS, tid, (base + nice).min(19))
    };
    if r != 0 {
        tracing::warn!(
            "could not lower a thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lower_priority(_nice: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panicking_one() {
        let pool = CpuPool::start(2, POOL_NICE).unwrap();
        assert_eq!(pool.run(0u32, 1, || 6 * 7).await.unwrap(), 42);
        assert!(pool.run(0, 1, || -> u32 { panic!("boom") }).await.is_err());
        let all = futures_util::future::join_all(
            (0..20u64).map(|i| pool.run(i as u32 % 3, 1, move || i * i)),
        )
        .await;
        let got: Vec<u64> = all.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
    }

    /// A one-thread pool whose thread is busy until the returned sender
    /// is dropped.
    async fn busy_pool() -> (Arc<CpuPool<&'static str>>, std::sync::mpsc::Sender<()>) {
        let pool = Arc::new(CpuPool::start(1, 0).unwrap());
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (started, on_start) = tokio::sync::oneshot::channel();
        let p = pool.clone();
        tokio::spawn(async move {
            p.run("busy", 1, move || {
                let _ = started.send(());
                let _ = held.recv();
            })
            .await
        });
        on_start.await.unwrap();
        (pool, hold)
    }

    #[tokio::test]
    async fn a_light_flow_goes_ahead_of_a_heavy_backlog() {
        let (pool, hold) = busy_pool().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for flow in ["heavy", "heavy", "heavy", "heavy", "light"] {
            let (p, order) = (pool.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                p.run(flow, 1, move || order.lock().unwrap().push(flow))
                    .await
            }));
            // Queued in this order.
            while pool.queued() < waiters.len() {
                tokio::task::yield_now().await;
            }
        }
        drop(hold);
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 5);
        let light_at = order.iter().position(|f| *f == "light").unwrap();
        assert!(light_at <= 1, "ran {order:?}");
    }

    #[tokio::test]
    async fn a_job_whose_caller_gives_up_never_runs() {
        let (pool, hold) = busy_pool().await;
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = ran.clone();
        let gone = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            pool.run("gone", 1, move || {
                r.store(true, std::sync::atomic::Ordering::SeqCst)
            }),
        )
        .await;
        assert!(gone.is_err());
        assert_eq!(pool.queued(), 0, "it left the queue when it gave up");
        drop(hold);
        assert_eq!(pool.run("next", 1, || 7).await.unwrap(), 7);
        assert!(!ran.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn pool_threads_run_at_the_lower_priority() {
        let own = || unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        };
        let base = own();
        let pool = CpuPool::start(1, POOL_NICE).unwrap();
        let nice = pool.run((), 1, own).await.unwrap();
        assert_eq!(nice, (base + POOL_NICE).min(19), "base {base}");
    }
}
