//! The tarpit: a client IP refused for its own conduct (over its request
//! rate, in the penalty box, too many submissions in flight) gets its `429`
//! after a delay instead of at once.
//!
//! Why: refusing is cheap (no body read, no parsing), but not free. Each
//! refused request still costs an HTTP exchange on the node's runtime
//! (about 40 µs of CPU here), so a client that ignores `Retry-After` and
//! resends as fast as it is answered could keep a core busy with refusals
//! alone and stretch every other client's latency. Holding its answer makes
//! such a client wait: with `c` requests in flight it sends about `c` per
//! delay, whatever its speed. A client that honours `Retry-After` never
//! waits here, because it is not refused.
//!
//! Bounds: a held answer keeps its connection and a sleeping task, nothing
//! else (the body is not read). At most `per_ip` answers are held per client
//! IP and `max` in all; beyond either, the refusal is answered at once as
//! before, so the tarpit can neither grow memory without bound nor be filled
//! by one address to let others through unslowed. The delay is never longer
//! than the `Retry-After` it comes with.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::limits::IpCounts;

pub struct Tarpit {
    delay: Duration,
    per_ip: usize,
    max: usize,
    /// Places in all, and held per IP.
    places: Semaphore,
    by_ip: IpCounts,
    /// Answers held, since start.
    delayed: AtomicU64,
    /// Refusals answered at once because the tarpit was full.
    full: AtomicU64,
}

/// One held answer; its places are given back when dropped.
pub struct Slot<'a> {
    tarpit: &'a Tarpit,
    ip: IpAddr,
    delay: Duration,
    _place: SemaphorePermit<'a>,
}

impl Slot<'_> {
    /// Waits out this answer's delay.
    pub async fn wait(self) {
        tokio::time::sleep(self.delay).await;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.tarpit.by_ip.remove(self.ip);
    }
}

impl Tarpit {
    /// `delay_ms` 0 switches the tarpit off.
    pub fn new(delay_ms: u32, per_ip: usize, max: usize) -> Tarpit {
        let max = max.min(Semaphore::MAX_PERMITS);
        Tarpit {
            delay: Duration::from_millis(u64::from(delay_ms)),
            per_ip,
            max,
            places: Semaphore::new(max),
            by_ip: IpCounts::default(),
            delayed: AtomicU64::new(0),
            full: AtomicU64::new(0),
        }
    }

    /// A place to hold the refusal of `ip` that carries `retry_after_secs`,
    /// or None: tarpit off, or full for this IP or in all (answer at once).
    pub fn hold(&self, ip: IpAddr, retry_after_secs: u64) -> Option<Slot<'_>> {
        if self.delay.is_zero() || self.per_ip == 0 || self.max == 0 {
            return None;
        }
        let place = self.places.try_acquire().ok();
        let Some(place) = place.filter(|_| self.by_ip.try_add(ip, self.per_ip)) else {
            self.full.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.delayed.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            tarpit: self,
            ip,
            delay: self.delay.min(Duration::from_secs(retry_after_secs.max(1))),
            _place: place,
        })
    }

    /// `stats.spam.tarpit` in /v1/info.
    pub fn stats_value(&self) -> Value {
        json!({
            "held": self.max - self.places.available_permits(),
            "held_ips": self.by_ip.len(),
            "delayed": self.delayed.load(Ordering::Relaxed),
            "full": self.full.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn places_are_bounded_per_ip_and_in_all_and_given_back() {
        let t = Tarpit::new(500, 2, 3);
        let a1 = t.hold(ip(1), 5).expect("first");
        let a2 = t.hold(ip(1), 5).expect("second");
        assert!(t.hold(ip(1), 5).is_none(), "per-IP cap");
        let b1 = t.hold(ip(2), 5).expect("another IP");
        assert!(t.hold(ip(3), 5).is_none(), "total cap");
        assert_eq!(t.stats_value()["held"], 3);
        assert_eq!(t.stats_value()["full"], 2);
        drop(a1);
        let a3 = t.hold(ip(1), 5).expect("a place came back");
        drop((a2, a3, b1));
        let s = t.stats_value();
        assert_eq!(
            (s["held"].as_u64(), s["held_ips"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(s["delayed"], 4);
    }

    #[test]
    fn the_delay_never_exceeds_retry_after_and_zero_is_off() {
        let t = Tarpit::new(5_000, 8, 8);
        assert_eq!(t.hold(ip(1), 2).unwrap().delay, Duration::from_secs(2));
        assert_eq!(t.hold(ip(1), 60).unwrap().delay, Duration::from_secs(5));
        assert!(Tarpit::new(0, 8, 8).hold(ip(1), 5).is_none());
        assert!(Tarpit::new(100, 0, 8).hold(ip(1), 5).is_none());
    }
}
