//! A bounded TTL cache with LRU eviction and single-flight loading.
//!
//! - Each entry carries its own deadline (positive and negative answers get
//!   different lifetimes; the caller decides per value).
//! - At capacity the least recently used entry is evicted (a tick-ordered
//!   `BTreeMap` beside the `HashMap`). Approximately: a hit on an entry among
//!   the newest quarter leaves it where it is, so that a hot entry costs one
//!   hash lookup per hit, not two B-tree updates and a key clone (every
//!   admitted message looks its sender up).
//! - Single flight: concurrent misses on one key share one load (a
//!   `tokio::sync::OnceCell` per in-flight key). If the loading caller is
//!   cancelled, a waiting caller takes over the load, so no one waits forever.
//! - Errors are shared with the callers waiting at that moment but never
//!   cached: the next ask tries again.
//! - `invalidate_where` bumps a generation so that a load already in flight
//!   when the invalidation happened does not write its (possibly stale) answer.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How a lookup was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// From the cache.
    Hit,
    /// This caller started the load (or took it over).
    Loaded,
    /// This caller joined a load already in flight.
    Joined,
}

struct Entry<V> {
    value: V,
    deadline: Instant,
    tick: u64,
}

type Flight<V, E> = Arc<OnceCell<Result<V, E>>>;

struct Inner<K, V, E> {
    map: HashMap<K, Entry<V>>,
    lru: BTreeMap<u64, K>,
    tick: u64,
    generation: u64,
    inflight: HashMap<K, Flight<V, E>>,
}

pub struct TtlCache<K, V, E> {
    inner: Mutex<Inner<K, V, E>>,
    capacity: usize,
}

impl<K, V, E> TtlCache<K, V, E>
where
    K: Eq + Hash + Clone,
    V: Clone,
    E: Clone,
{
    /// `capacity` 0 disables caching (single flight still applies).
    pub fn new(capacity: usize) -> Self {
        TtlCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                lru: BTreeMap::new(),
                tick: 0,
                generation: 0,
                inflight: HashMap::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V, E>> {
        // A panic while holding the lock cannot leave the maps inconsistent in
        // a way that matters more than losing the cache, so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh cached value, refreshing its LRU position.
    pub fn get(&self, key: &K) -> Option<V> {
        let mut g = self.lock();
        self.get_locked(&mut g, key, Instant::now())
    }

    fn get_locked(&self, g: &mut Inner<K, V, E>, key: &K, now: Instant) -> Option<V> {
        let (old_tick, fresh) = match g.map.get(key) {
            Some(e) => (e.tick, e.deadline > now),
            None => return None,
        };
        if !fresh {
            g.lru.remove(&old_tick);
            g.map.remove(key);
            return None;
        }
        // Fewer than a quarter of the entries can be newer than this one
        // (each tick made at most one): it is nowhere near eviction.
        if g.tick - old_tick < (self.capacity / 4) as u64 {
            return g.map.get(key).map(|e| e.value.clone());
        }
        g.lru.remove(&old_tick);
        g.tick += 1;
        let tick = g.tick;
        g.lru.insert(tick, key.clone());
        let e = g.map.get_mut(key)?;
        e.tick = tick;
        Some(e.value.clone())
    }

    pub fn insert(&self, key: K, value: V, ttl: Duration) {
        let mut g = self.lock();
        self.insert_locked(&mut g, key, value, ttl);
    }

    fn insert_locked(&self, g: &mut Inner<K, V, E>, key: K, value: V, ttl: Duration) {
        if self.capacity == 0 || ttl.is_zero() {
            return;
        }
        if let Some(old) = g.map.remove(&key) {
            g.lru.remove(&old.tick);
        }
        while g.map.len() >= self.capacity {
            let Some((_, victim)) = g.lru.pop_first() else {
                break;
            };
            g.map.remove(&victim);
        }
        g.tick += 1;
        let tick = g.tick;
        let deadline = Instant::now()
            .checked_add(ttl)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        g.lru.insert(tick, key.clone());
        g.map.insert(
            key,
            Entry {
                value,
                deadline,
                tick,
            },
        );
    }

    /// Remove every entry (and forget every in-flight load) whose key matches.
    pub fn invalidate_where(&self, pred: impl Fn(&K) -> bool) {
        let mut g = self.lock();
        g.generation += 1;
        let doomed: Vec<(K, u64)> = g
            .map
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(k, e)| (k.clone(), e.tick))
            .collect();
        for (k, tick) in doomed {
            g.map.remove(&k);
            g.lru.remove(&tick);
        }
        g.inflight.retain(|k, _| !pred(k));
    }

    pub fn clear(&self) {
        self.invalidate_where(|_| true);
    }

    /// The cached value, or the result of `load` shared among concurrent
    /// callers. `ttl_of` decides how long a successful value is kept
    /// (`None`: not cached).
    pub async fn get_or_load<F, Fut>(
        &self,
        key: K,
        load: F,
        ttl_of: impl FnOnce(&V) -> Option<Duration>,
    ) -> (Result<V, E>, Source)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        let (flight, joined, generation) = {
            let mut g = self.lock();
            if let Some(v) = self.get_locked(&mut g, &key, Instant::now()) {
                return (Ok(v), Source::Hit);
            }
            let generation = g.generation;
            match g.inflight.get(&key) {
                Some(f) => (f.clone(), true, generation),
                None => {
                    let f: Flight<V, E> = Arc::new(OnceCell::new());
                    g.inflight.insert(key.clone(), f.clone());
                    (f, false, generation)
                }
            }
        };
        let mut ran = false;
        let result = flight
            .get_or_init(|| async {
                ran = true;
                let r = load().await;
                let mut g = self.lock();
                if let Ok(v) = &r {
                    if g.generation == generation {
                        if let Some(ttl) = ttl_of(v) {
                            self.insert_locked(&mut g, key.clone(), v.clone(), ttl);
                        }
                    }
                }
                // Only remove the flight we served: after an invalidation a
                // newer flight for the same key may already be registered.
                if g.inflight
                    .get(&key)
                    .is_some_and(|f| Arc::ptr_eq(f, &flight))
                {
                    g.inflight.remove(&key);
                }
                r
            })
            .await
            .clone();
        let source = if ran || !joined {
            Source::Loaded
        } else {
            Source::Joined
        };
        (result, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn lru_eviction_and_ttl() {
        let c: TtlCache<u32, u32, ()> = TtlCache::new(2);
        c.insert(1, 10, Duration::from_secs(60));
        c.insert(2, 20, Duration::from_secs(60));
        assert_eq!(c.get(&1), Some(10)); // 1 is now most recent
        c.insert(3, 30, Duration::from_secs(60)); // evicts 2
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some(10));
        assert_eq!(c.get(&3), Some(30));
        assert_eq!(c.len(), 2);
        c.insert(4, 40, Duration::from_nanos(1));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.get(&4), None);
        c.invalidate_where(|k| *k == 1);
        assert_eq!(c.get(&1), None);
        assert_eq!(c.get(&3), Some(30));
    }

    #[test]
    fn a_hit_on_an_older_entry_still_saves_it_from_eviction() {
        let c: TtlCache<u32, u32, ()> = TtlCache::new(8);
        for k in 1..=8 {
            c.insert(k, k * 10, Duration::from_secs(60));
        }
        // 1 is the oldest, far out of the newest quarter: the hit promotes it.
        assert_eq!(c.get(&1), Some(10));
        c.insert(9, 90, Duration::from_secs(60)); // evicts 2
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some(10));
        // Hits on the newest entries leave the order alone; the oldest go first.
        for _ in 0..3 {
            assert_eq!(c.get(&9), Some(90));
        }
        c.insert(10, 100, Duration::from_secs(60)); // evicts 3
        assert_eq!(c.get(&3), None);
        assert_eq!(c.len(), 8);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let c: TtlCache<u32, u32, ()> = TtlCache::new(0);
        c.insert(1, 1, Duration::from_secs(1));
        assert!(c.is_empty());
    }

    #[tokio::test]
    async fn single_flight_and_errors_not_cached() {
        let c: Arc<TtlCache<u32, u32, String>> = Arc::new(TtlCache::new(10));
        let loads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, loads, gate) = (c.clone(), loads.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_load(
                    7,
                    || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok::<_, String>(70)
                    },
                    |_| Some(Duration::from_secs(60)),
                )
                .await
            }));
        }
        // Let every task reach the cache before releasing the one load.
        while loads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        gate.notify_waiters();
        gate.notify_one();
        for t in tasks {
            assert_eq!(t.await.map(|r| r.0).ok(), Some(Ok(70)));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        let (r, _) = c
            .get_or_load(8, || async { Err::<u32, _>("down".to_string()) }, |_| None)
            .await;
        assert!(r.is_err());
        let (r, s) = c
            .get_or_load(
                8,
                || async { Ok::<u32, String>(80) },
                |_| Some(Duration::from_secs(1)),
            )
            .await;
        assert_eq!((r, s), (Ok(80), Source::Loaded));
        let (r, s) = c
            .get_or_load(
                8,
                || async { Ok::<u32, String>(81) },
                |_| Some(Duration::from_secs(1)),
            )
            .await;
        assert_eq!((r, s), (Ok(80), Source::Hit));
    }
}
