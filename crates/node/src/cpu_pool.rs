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
//! Jobs are whole chunks of envelopes (see `admission::offline_stage`), so the
//! queue sees a few jobs per request; the callers bound how many wait
//! (`NodeState::verify_slots`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// How much nicer than the process pool threads run (nice 0 is normal, 19
/// the lowest priority). At +5 a nice-0 thread gets about 3x the CPU share of
/// a pool thread; +10 (about 9x) starved legitimate senders' checks behind an
/// attacker's HTTP traffic in the spam benchmark (docs/BENCHMARKS.md).
pub const POOL_NICE: i32 = 5;

pub struct CpuPool {
    tx: Mutex<mpsc::Sender<Job>>,
}

/// The job did not run to the end (it panicked, or the pool is gone).
#[derive(Debug)]
pub struct JobLost;

impl CpuPool {
    /// Starts `threads` threads named `fio-l2-verify`, each `nice` steps
    /// nicer than the thread that starts them.
    pub fn start(threads: usize, nice: i32) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name("fio-l2-verify".into())
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        // The lock is held only while taking a job.
                        let job = match rx.lock().map(|r| r.recv()) {
                            Ok(Ok(job)) => job,
                            _ => return,
                        };
                        // A panicking job drops its reply (the caller sees
                        // JobLost); the thread stays.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(CpuPool { tx: Mutex::new(tx) })
    }

    /// Runs `f` on the pool and waits for its result without blocking the
    /// async runtime.
    pub async fn run<T, F>(&self, f: F) -> Result<T, JobLost>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(f());
        });
        self.tx
            .lock()
            .map_err(|_| JobLost)?
            .send(job)
            .map_err(|_| JobLost)?;
        answer.await.map_err(|_| JobLost)
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
        assert_eq!(pool.run(|| 6 * 7).await.unwrap(), 42);
        assert!(pool.run(|| -> u32 { panic!("boom") }).await.is_err());
        let all = futures_util::future::join_all((0..20u64).map(|i| pool.run(move || i * i))).await;
        let got: Vec<u64> = all.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, (0..20u64).map(|i| i * i).collect::<Vec<_>>());
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
        let nice = pool.run(own).await.unwrap();
        assert_eq!(nice, (base + POOL_NICE).min(19), "base {base}");
    }
}
