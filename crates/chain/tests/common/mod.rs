//! Helpers shared by the integration tests: a dev chain on loopback, a client
//! with short timeouts, raw JSON posts, and small hostile HTTP servers.
#![allow(dead_code)]

use fio_l2_chain::devchain::{self, DevChainServer};
use fio_l2_chain::{ClientConfig, HttpChain};
use fio_l2_protocol::{PrivateKey, PublicKey};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn key(seed: &str) -> PublicKey {
    PrivateKey::from_seed(seed).public_key()
}

pub async fn start_devchain() -> (DevChainServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = devchain::serve("127.0.0.1:0".parse().expect("addr"), dir.path())
        .await
        .expect("devchain starts");
    (server, dir)
}

/// Client config for tests: short timeout, one retry, tiny backoff.
pub fn test_config(urls: &[String]) -> ClientConfig {
    let mut c = ClientConfig::new(urls.iter().cloned());
    c.request_timeout = Duration::from_millis(1500);
    c.retries = 1;
    c.backoff_base = Duration::from_millis(10);
    c.backoff_max = Duration::from_millis(20);
    c
}

pub fn client(urls: &[String]) -> HttpChain {
    HttpChain::new(test_config(urls)).expect("client")
}

/// POST JSON, return (status, parsed body).
pub async fn post(url: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

/// A dev action through the HTTP dev API; panics unless 200.
pub async fn dev(server: &DevChainServer, action: &str, body: Value) -> Value {
    let (status, v) = post(&format!("{}/v1/dev/{action}", server.url()), body).await;
    assert_eq!(status, 200, "dev/{action}: {v}");
    v
}

pub fn count(server: &DevChainServer, endpoint: &str) -> u64 {
    server.chain.stats().get(endpoint).copied().unwrap_or(0)
}

/// A loopback URL where nothing listens (bound, then released).
pub async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// What a hostile server does with each request.
#[derive(Clone, Debug)]
pub enum Hostile {
    /// Answer this status, content type and body, after an optional delay.
    Fixed {
        status: u16,
        content_type: &'static str,
        body: String,
        delay: Duration,
    },
    /// 200 without length, then bytes forever (until the client hangs up).
    Endless,
    /// Declare a huge Content-Length, send a little.
    HugeDeclared,
    /// 200, then one byte every 100 ms.
    SlowDrip,
    /// Accept, read, never answer.
    Hang,
    /// (path suffix, status, body): the first whose suffix the request path
    /// ends with; anything else gets nodeos' 404 "Not Found".
    ByPath(Vec<(&'static str, u16, String)>),
}

pub struct HostileServer {
    pub url: String,
    pub hits: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl HostileServer {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn fixed(status: u16, body: &str) -> Hostile {
    Hostile::Fixed {
        status,
        content_type: "application/json",
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

/// Read one request (headers and a Content-Length body) so the client is
/// not reset before it has sent everything.
async fn read_request(s: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return String::new(),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= pos + 4 + len {
                return head.lines().next().unwrap_or("").to_string();
            }
        }
        if buf.len() > 1 << 20 {
            return String::new();
        }
    }
}

/// A raw-TCP HTTP/1.1 server on loopback that misbehaves as told. Each
/// connection serves one request then closes; every loop is bounded.
pub async fn hostile(behaviour: Hostile) -> HostileServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let hits = Arc::new(AtomicU64::new(0));
    let hits2 = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let b = behaviour.clone();
            let hits = hits2.clone();
            tokio::spawn(async move {
                let request_line = read_request(&mut s).await;
                hits.fetch_add(1, Ordering::SeqCst);
                let b = match b {
                    Hostile::ByPath(routes) => {
                        let path = request_line
                            .split_whitespace()
                            .nth(1)
                            .unwrap_or("")
                            .to_string();
                        let (status, body) = routes
                            .iter()
                            .find(|(suffix, _, _)| path.ends_with(suffix))
                            .map(|(_, st, b)| (*st, b.clone()))
                            .unwrap_or((404, r#"{"code":404,"message":"Not Found"}"#.to_string()));
                        Hostile::Fixed {
                            status,
                            content_type: "application/json",
                            body,
                            delay: Duration::ZERO,
                        }
                    }
                    other => other,
                };
                match b {
                    Hostile::Fixed {
                        status,
                        content_type,
                        body,
                        delay,
                    } => {
                        tokio::time::sleep(delay).await;
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(head.as_bytes()).await;
                        let _ = s.write_all(body.as_bytes()).await;
                    }
                    Hostile::Endless => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"fio_addresses\":[")
                            .await;
                        let chunk = "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",".repeat(2000);
                        // Bounded: 64 MiB at most, stops as soon as the client hangs up.
                        for _ in 0..1000 {
                            if s.write_all(chunk.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    }
                    Hostile::HugeDeclared => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000000000\r\n\r\n{\"fio_")
                            .await;
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    Hostile::SlowDrip => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
                            .await;
                        for _ in 0..300 {
                            if s.write_all(b" ").await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    Hostile::Hang => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    Hostile::ByPath(_) => {}
                }
            });
        }
    });
    HostileServer {
        url: format!("http://{addr}"),
        hits,
        task,
    }
}
