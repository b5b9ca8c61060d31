//! Verification slots shared fairly among clients (start-time fair queuing).
//!
//! Signature checks are the node's dearest work, so at most
//! `max_concurrent_verifications` run at once. A plain semaphore queues the
//! rest first come, first served: a client with many requests in flight
//! (say, a thousand registered addresses each sending at its limit, all
//! valid) then puts every other client behind all of its requests. Here each
//! client (an IP, /64 for IPv6; a peer; in-process callers) is a flow, and
//! waiting work is served in order of its virtual start time: a flow's next
//! start is the later of the node's virtual time and the end of that flow's
//! previous work, and work costs one per envelope. A light client's request
//! therefore starts at the current virtual time and goes ahead of a heavy
//! client's backlog, and every flow with work waiting gets an equal share of
//! the slots, however many requests it keeps in flight.
//!
//! Memory: one waiter per queued chunk (bounded by the in-flight limits; a
//! waiter that gives up leaves the queue at once),
//! and one number per flow that is ahead of virtual time, capped at
//! [`MAX_FLOWS`]: past it, the history of flows with nothing waiting is
//! forgotten (they start afresh at the current virtual time).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// Most flows whose virtual finish time is remembered.
pub const MAX_FLOWS: usize = 65_536;

/// A fair counting semaphore; see the module docs.
pub struct FairSlots<K: Hash + Eq + Clone> {
    shared: Arc<Shared<K>>,
}

struct Shared<K: Hash + Eq + Clone> {
    inner: Mutex<Inner<K>>,
}

struct Inner<K: Hash + Eq + Clone> {
    free: usize,
    /// The start tag of the work dispatched last.
    vtime: u64,
    seq: u64,
    /// Each flow's virtual finish time, while it may be ahead of `vtime`.
    finish: HashMap<K, u64>,
    /// Waiting work by (start tag, arrival); the flow and cost to rebuild
    /// `finish` after it is forgotten.
    waiting: BTreeMap<(u64, u64), Waiter<K>>,
}

struct Waiter<K: Hash + Eq + Clone> {
    flow: K,
    end: u64,
    tx: oneshot::Sender<Slot<K>>,
}

/// A waiter's place in the queue: a waiter that gives up (its future is
/// dropped, say by a timeout) leaves the queue at once, so giving up cannot
/// pile up entries while every slot is busy. Once served, the entry is gone
/// already and this does nothing.
struct Queued<'a, K: Hash + Eq + Clone> {
    shared: &'a Arc<Shared<K>>,
    key: (u64, u64),
}

impl<K: Hash + Eq + Clone> Drop for Queued<'_, K> {
    fn drop(&mut self) {
        let gone = self.shared.lock().waiting.remove(&self.key);
        // Dropped outside the lock: nothing in it takes the lock, but keep
        // the rule simple.
        drop(gone);
    }
}

/// One slot, given back when dropped.
pub struct Slot<K: Hash + Eq + Clone> {
    shared: Arc<Shared<K>>,
}

/// The slots were dropped while waiting (the node is shutting down).
#[derive(Debug)]
pub struct Closed;

impl<K: Hash + Eq + Clone> FairSlots<K> {
    pub fn new(slots: usize) -> Self {
        FairSlots {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    free: slots.max(1),
                    vtime: 0,
                    seq: 0,
                    finish: HashMap::new(),
                    waiting: BTreeMap::new(),
                }),
            }),
        }
    }

    /// Waits for a slot for work of `cost` (envelopes) from `flow`.
    /// Cancel-safe: a slot handed to a waiter that has gone is given back.
    pub async fn acquire(&self, flow: K, cost: u64) -> Result<Slot<K>, Closed> {
        let (rx, _queued) = {
            let mut g = self.shared.lock();
            let start = g.vtime.max(g.finish.get(&flow).copied().unwrap_or(0));
            let end = start + cost.max(1);
            if g.free > 0 && g.waiting.is_empty() {
                g.free -= 1;
                g.vtime = start;
                g.note_finish(flow, end);
                return Ok(Slot {
                    shared: self.shared.clone(),
                });
            }
            g.note_finish(flow.clone(), end);
            let (tx, rx) = oneshot::channel();
            g.seq += 1;
            let seq = g.seq;
            g.waiting.insert((start, seq), Waiter { flow, end, tx });
            (
                rx,
                Queued {
                    shared: &self.shared,
                    key: (start, seq),
                },
            )
        };
        rx.await.map_err(|_| Closed)
    }

    /// Slots free now (for tests and stats).
    pub fn available(&self) -> usize {
        self.shared.lock().free
    }

    /// Work waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.shared.lock().waiting.len()
    }
}

impl<K: Hash + Eq + Clone> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: Hash + Eq + Clone> Inner<K> {
    fn note_finish(&mut self, flow: K, end: u64) {
        if self.finish.len() >= MAX_FLOWS && !self.finish.contains_key(&flow) {
            let vtime = self.vtime;
            self.finish.retain(|_, f| *f > vtime);
            if self.finish.len() >= MAX_FLOWS / 2 {
                // Still full of flows ahead of virtual time: keep only what
                // waiting work needs.
                self.finish.clear();
                for w in self.waiting.values() {
                    let f = self.finish.entry(w.flow.clone()).or_insert(0);
                    *f = (*f).max(w.end);
                }
            }
        }
        self.finish.insert(flow, end);
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let shared = self.shared.clone();
        let mut g = shared.lock();
        while let Some(((start, _), w)) = g.waiting.pop_first() {
            g.vtime = g.vtime.max(start);
            let slot = Slot {
                shared: shared.clone(),
            };
            match w.tx.send(slot) {
                Ok(()) => return,
                // The waiter gave up: do not let this slot's drop re-enter.
                Err(slot) => std::mem::forget(slot),
            }
        }
        g.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> std::task::Poll<F::Output> {
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut *f).poll(cx)))
            .await
    }

    /// Order in which queued work gets its slot: each waiter is registered
    /// in arrival order, then each drops its slot as soon as it has it.
    async fn served_order<K: Hash + Eq + Clone + Copy + Send + 'static>(
        slots: &FairSlots<K>,
        arrivals: &[(K, u64)],
    ) -> Vec<K> {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for &(flow, cost) in arrivals {
            let mut fut = Box::pin(slots.acquire(flow, cost));
            assert!(poll_once(&mut fut).await.is_pending());
            let order = order.clone();
            waiters.push(async move {
                let slot = fut.await.unwrap();
                order.lock().unwrap().push(flow);
                drop(slot);
            });
        }
        futures_util::future::join_all(waiters).await;
        let v = order.lock().unwrap().clone();
        v
    }

    #[tokio::test]
    async fn a_light_flow_goes_ahead_of_a_heavy_backlog() {
        let slots = FairSlots::new(1);
        let busy = slots.acquire("heavy", 1).await.unwrap();
        let arrivals = [
            ("heavy", 1),
            ("heavy", 1),
            ("heavy", 1),
            ("heavy", 1),
            ("light", 1),
        ];
        let order = {
            let mut f = Box::pin(served_order(&slots, &arrivals));
            assert!(poll_once(&mut f).await.is_pending());
            drop(busy);
            f.await
        };
        assert_eq!(order.len(), 5);
        let light_at = order.iter().position(|f| *f == "light").unwrap();
        assert!(light_at <= 1, "served {order:?}");
        assert_eq!(slots.available(), 1);
        assert_eq!(slots.waiting(), 0);
    }

    #[tokio::test]
    async fn flows_with_backlogs_alternate_by_cost() {
        let slots = FairSlots::new(1);
        let busy = slots.acquire("x", 1).await.unwrap();
        // a: three jobs of cost 2; b: six of cost 1 -> equal shares by cost.
        let mut arrivals = vec![("a", 2); 3];
        arrivals.extend(vec![("b", 1); 6]);
        let order = {
            let mut f = Box::pin(served_order(&slots, &arrivals));
            assert!(poll_once(&mut f).await.is_pending());
            drop(busy);
            f.await
        };
        let a_done: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, f)| **f == "a")
            .map(|(i, _)| i)
            .collect();
        // a's jobs are spread through b's, not all before or after them.
        assert_eq!(a_done.len(), 3);
        assert!(a_done[0] <= 1 && a_done[2] <= 7, "served {order:?}");
        assert!(a_done[1] >= 2, "served {order:?}");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_lose_the_slot() {
        let slots = FairSlots::new(1);
        let busy = slots.acquire(1u32, 1).await.unwrap();
        let gone = tokio::time::timeout(Duration::from_millis(20), slots.acquire(2, 1)).await;
        assert!(gone.is_err());
        // It left the queue when it gave up.
        assert_eq!(slots.waiting(), 0);
        // Served and then dropped before it looked: the slot comes back too.
        let mut late = Box::pin(slots.acquire(4, 1));
        assert!(poll_once(&mut late).await.is_pending());
        assert_eq!(slots.waiting(), 1);
        drop(busy);
        assert_eq!((slots.available(), slots.waiting()), (0, 0));
        drop(late);
        assert_eq!(slots.available(), 1);
        assert_eq!(slots.waiting(), 0);
        let again = slots.acquire(3, 1).await.unwrap();
        assert_eq!(slots.available(), 0);
        drop(again);
        assert_eq!(slots.available(), 1);
    }

    #[test]
    fn remembered_flows_stay_bounded() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let slots = FairSlots::new(4);
            for i in 0..(MAX_FLOWS as u64 * 2) {
                drop(slots.acquire(i, 1).await.unwrap());
            }
            assert!(slots.shared.lock().finish.len() <= MAX_FLOWS);
        });
    }
}
