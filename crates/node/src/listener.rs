//! The node's TCP listener. A connection from an address in the penalty box
//! (limits.rs: too many bad signatures, unregistered senders or oversize
//! bodies) is answered at accept with a fixed `429 ip_penalized` and
//! closed, before hyper reads or parses anything. Such a client's next
//! request would be refused anyway; answering it through hyper cost the
//! node as much as reading its body did, because the client's body was
//! already on its way (a flood of 200 KB bodies: ~180 µs of node CPU each).
//! Requests on connections opened before the penalty still meet the same
//! check in `limits::ip_gate`.

use crate::limits::{limited_ip, penalty_box};
use crate::state::NodeState;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

pub struct GatedListener {
    inner: TcpListener,
    state: Arc<NodeState>,
}

impl GatedListener {
    pub fn new(inner: TcpListener, state: Arc<NodeState>) -> Self {
        GatedListener { inner, state }
    }
}

impl axum::serve::Listener for GatedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            // axum's accept: retries, and waits out running out of files.
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let st = &self.state;
            let refusal = limited_ip(&st.config.limits, addr.ip())
                .and_then(|ip| penalty_box(&st.spam, ip).err());
            let Some(e) = refusal else {
                return (stream, addr);
            };
            st.spam.count_refusal(&e.code);
            // One non-blocking write; a client that cannot take 300 bytes
            // now gets only the close.
            let _ = stream.try_write(&raw_response(&e));
            drop(stream);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The HTTP/1.1 bytes of an error answer that closes the connection.
fn raw_response(e: &crate::error::ApiError) -> Vec<u8> {
    let body = e.body().to_string();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        e.status.as_u16(),
        e.status.canonical_reason().unwrap_or(""),
        body.len()
    );
    if let Some(s) = e.retry_after {
        head.push_str(&format!("retry-after: {s}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_response_is_a_complete_http_answer() {
        let e = crate::limits::too_many("ip_penalized", "slow down", 7);
        let raw = String::from_utf8(super::raw_response(&e)).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head.contains("\r\nretry-after: 7"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "ip_penalized");
    }
}
