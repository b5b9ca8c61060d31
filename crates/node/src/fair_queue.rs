//! Start-time fair queuing as a plain data structure: the order in which the
//! verification threads (cpu_pool.rs) take admission work.
//!
//! Signature checks are the node's dearest work. A first-come, first-served
//! queue puts every other client behind all the requests of a client with
//! many in flight (say, a thousand registered addresses each sending at its
//! limit, all valid). Here each client (an IP, /64 for IPv6; a peer;
//! in-process callers) is a flow, and queued work is served in order of its
//! virtual start time: a flow's next start is the later of the queue's
//! virtual time and the end of that flow's previous work, and work costs one
//! per envelope. A light client's work therefore starts at the current
//! virtual time and goes ahead of a heavy client's backlog, and every flow
//! with work queued gets an equal share of the threads, however many
//! requests it keeps in flight.
//!
//! Memory: one entry per queued job (bounded by the in-flight limits; a job
//! whose caller gives up is removed at once), and one number per flow that
//! is ahead of virtual time, capped at [`MAX_FLOWS`]: past it, the history of
//! flows with nothing queued is forgotten (they start afresh at the current
//! virtual time).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

/// Most flows whose virtual finish time is remembered.
pub const MAX_FLOWS: usize = 65_536;

/// A queued item's place: (start tag, arrival). Unique for the queue's life.
pub type Place = (u64, u64);

pub struct FairQueue<K: Hash + Eq + Clone, T> {
    /// The start tag of the item taken last.
    vtime: u64,
    seq: u64,
    /// Each flow's virtual finish time, while it may be ahead of `vtime`.
    finish: HashMap<K, u64>,
    /// Queued items by place, with their flow and end tag (to rebuild
    /// `finish` after it is forgotten).
    queued: BTreeMap<Place, (K, u64, T)>,
}

impl<K: Hash + Eq + Clone, T> Default for FairQueue<K, T> {
    fn default() -> Self {
        FairQueue {
            vtime: 0,
            seq: 0,
            finish: HashMap::new(),
            queued: BTreeMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, T> FairQueue<K, T> {
    /// Queues `item`, work of `cost` (envelopes) from `flow`.
    pub fn push(&mut self, flow: K, cost: u64, item: T) -> Place {
        let start = self.vtime.max(self.finish.get(&flow).copied().unwrap_or(0));
        let end = start + cost.max(1);
        self.note_finish(flow.clone(), end);
        self.seq += 1;
        let place = (start, self.seq);
        self.queued.insert(place, (flow, end, item));
        place
    }

    /// The item whose turn it is.
    pub fn pop(&mut self) -> Option<T> {
        let ((start, _), (_, _, item)) = self.queued.pop_first()?;
        self.vtime = self.vtime.max(start);
        Some(item)
    }

    /// Takes a queued item out of turn (its caller gave up); None if it was
    /// taken already.
    pub fn remove(&mut self, place: Place) -> Option<T> {
        self.queued.remove(&place).map(|(_, _, item)| item)
    }

    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Flows whose finish time is remembered (for tests of the bound).
    #[cfg(test)]
    fn remembered_flows(&self) -> usize {
        self.finish.len()
    }

    fn note_finish(&mut self, flow: K, end: u64) {
        if self.finish.len() >= MAX_FLOWS && !self.finish.contains_key(&flow) {
            let vtime = self.vtime;
            self.finish.retain(|_, f| *f > vtime);
            if self.finish.len() >= MAX_FLOWS / 2 {
                // Still full of flows ahead of virtual time: keep only what
                // queued work needs.
                self.finish.clear();
                for (flow, end, _) in self.queued.values() {
                    let f = self.finish.entry(flow.clone()).or_insert(0);
                    *f = (*f).max(*end);
                }
            }
        }
        self.finish.insert(flow, end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Queues `arrivals` (flow, cost) in order, then takes them all.
    fn served_order<K: Hash + Eq + Clone>(
        q: &mut FairQueue<K, K>,
        arrivals: &[(K, u64)],
    ) -> Vec<K> {
        for (flow, cost) in arrivals {
            q.push(flow.clone(), *cost, flow.clone());
        }
        std::iter::from_fn(|| q.pop()).collect()
    }

    #[test]
    fn a_light_flow_goes_ahead_of_a_heavy_backlog() {
        let mut q = FairQueue::default();
        // The heavy flow's first job is running already.
        q.push("heavy", 1, "heavy");
        assert_eq!(q.pop(), Some("heavy"));
        let order = served_order(
            &mut q,
            &[
                ("heavy", 1),
                ("heavy", 1),
                ("heavy", 1),
                ("heavy", 1),
                ("light", 1),
            ],
        );
        assert_eq!(order.len(), 5);
        let light_at = order.iter().position(|f| *f == "light").unwrap();
        assert!(light_at <= 1, "served {order:?}");
        assert!(q.is_empty());
    }

    #[test]
    fn flows_with_backlogs_alternate_by_cost() {
        let mut q = FairQueue::default();
        // a: three jobs of cost 2; b: six of cost 1 -> equal shares by cost.
        let mut arrivals = vec![("a", 2); 3];
        arrivals.extend(vec![("b", 1); 6]);
        let order = served_order(&mut q, &arrivals);
        let a_at: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, f)| **f == "a")
            .map(|(i, _)| i)
            .collect();
        // a's jobs are spread through b's, not all before or after them.
        assert_eq!(a_at.len(), 3);
        assert!(a_at[0] <= 1 && a_at[2] <= 7, "served {order:?}");
        assert!(a_at[1] >= 2, "served {order:?}");
    }

    #[test]
    fn a_removed_item_is_never_served() {
        let mut q = FairQueue::default();
        let a = q.push(1u32, 1, "a");
        q.push(2, 1, "b");
        assert_eq!(q.remove(a), Some("a"));
        assert_eq!(q.remove(a), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn remembered_flows_stay_bounded() {
        let mut q = FairQueue::default();
        for i in 0..(MAX_FLOWS as u64 * 2) {
            q.push(i, 1, ());
            q.pop();
        }
        assert!(q.remembered_flows() <= MAX_FLOWS);
        // With every flow still queued the bound holds too.
        let mut q = FairQueue::default();
        for i in 0..(MAX_FLOWS as u64 + 10) {
            q.push(i, 1, ());
        }
        assert!(q.remembered_flows() <= MAX_FLOWS + 10);
        assert_eq!(q.len(), MAX_FLOWS + 10);
    }
}
