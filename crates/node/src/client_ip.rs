//! The client address the per-IP limits count, behind trusted reverse
//! proxies. A request whose TCP peer is a configured proxy is charged to the
//! address that proxy names in `X-Forwarded-For`: the list is read from the
//! right (each proxy appends the address it saw), skipping trusted proxies,
//! and the first address that is not one is the client. Anyone can send the
//! header, so it is read only from trusted peers, and only up to the first
//! untrusted entry (entries left of it were written by the client itself).

use axum::http::HeaderMap;
use std::net::IpAddr;

/// Addresses and networks (`10.0.0.0/8`, `fd00::/8`) of trusted proxies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

/// At most this many `X-Forwarded-For` entries are looked at (a chain of
/// proxies is short; the rest is ignored, as if untrusted).
const MAX_HOPS: usize = 16;

impl TrustedProxies {
    /// Parses `addr` or `addr/prefix` entries; a clear error for a bad one.
    pub fn parse(entries: &[String]) -> Result<TrustedProxies, String> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let bad = |why: &str| format!("trusted proxy {e:?}: {why}");
            let (addr, prefix) = match e.trim().split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (e.trim(), None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| bad("not an IP address or network"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| bad(&format!("prefix must be 0-{max}")))?,
                None => max,
            };
            out.push((ip, prefix));
        }
        Ok(TrustedProxies(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0
            .iter()
            .any(|(net, prefix)| in_network(ip, *net, *prefix))
    }

    /// The client address of a request from TCP peer `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        // From the right: the last header line's last entry first.
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.rsplit(','));
        for entry in entries.take(MAX_HOPS) {
            let Some(ip) = parse_entry(entry) else {
                // Garbage: charge the proxy that passed it on.
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address counts as its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let (ip, net) = (canonical(ip), canonical(net));
    let (a, b, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let prefix = u32::from(prefix).min(bits);
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    (a >> shift) == (b >> shift)
}

/// `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]` or `1.2.3.4:5678`.
fn parse_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse::<IpAddr>().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_accepts_addresses_and_networks_and_refuses_garbage() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
        assert!(p.contains(ip("127.0.0.1")));
        assert!(!p.contains(ip("127.0.0.2")));
        assert!(p.contains(ip("10.200.3.4")));
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(p.contains(ip("fd12::1")));
        assert!(p.contains(ip("::ffff:10.1.2.3")));
        for bad in ["nope", "10.0.0.0/33", "::/129", "1.2.3.4/x", ""] {
            let e = TrustedProxies::parse(&[bad.to_string()]).unwrap_err();
            assert!(e.contains("trusted proxy"), "{e}");
        }
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let p = proxies(&["127.0.0.1"]);
        let h = xff(&["203.0.113.5"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.5"));
        assert_eq!(p.client_ip(ip("198.51.100.9"), &h), ip("198.51.100.9"));
        assert_eq!(
            TrustedProxies::default().client_ip(ip("127.0.0.1"), &h),
            ip("127.0.0.1")
        );
        // No header: the proxy itself.
        assert_eq!(
            p.client_ip(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn read_from_the_right_skipping_trusted_hops_and_ignoring_forged_left_entries() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        // The client forged "1.1.1.1"; the edge proxy appended the real address.
        let h = xff(&["1.1.1.1, 203.0.113.5, 10.0.0.2"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.5"));
        // The same split over several header lines.
        let h = xff(&["1.1.1.1", "203.0.113.5", "10.0.0.2"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.5"));
        // Ports and brackets.
        let h = xff(&["[2001:db8::7]", "10.0.0.2:4711"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("2001:db8::7"));
        // Garbage right of the client: charged to the last trusted hop.
        let h = xff(&["203.0.113.5, junk, 10.0.0.2"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("10.0.0.2"));
        // Only trusted hops: the leftmost.
        let h = xff(&["10.0.0.3, 10.0.0.2"]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("10.0.0.3"));
    }
}
