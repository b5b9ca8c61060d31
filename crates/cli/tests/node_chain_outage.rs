//! A node whose FIO API goes away refuses what it cannot check (503
//! `chain_unavailable`, Retry-After, nothing stored) and accepts again once
//! the chain is back. Separate processes: a `fio-l2 devchain` and a node
//! pointed at it with `--fio-api`.

mod common;

use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_fio-l2");

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawn the binary and read its one-line JSON ready message.
fn spawn_ready(args: &[&str]) -> (Proc, Value) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fio-l2");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready =
        serde_json::from_str(line.trim()).unwrap_or_else(|_| panic!("ready line, got {line:?}"));
    (Proc(child), ready)
}

#[tokio::test]
async fn chain_outage_refuses_with_503_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let chain_dir = dir.path().join("chain");
    let chain_dir_s = chain_dir.to_str().unwrap();
    let (chain, ready) =
        spawn_ready(&["devchain", "--listen", "127.0.0.1:0", "--data", chain_dir_s]);
    let chain_listen = ready["listen"].as_str().unwrap().to_string();
    let chain_url = format!("http://{chain_listen}");
    let c = http();
    let (alice, bob, carol) = (
        Party::new("alice", "alice@dev"),
        Party::new("bob", "bob@dev"),
        Party::new("carol", "carol@dev"),
    );
    for p in [&alice, &bob, &carol] {
        register(&c, &chain_url, p).await;
    }

    let node_dir = dir.path().join("node");
    let (_node, ready) = spawn_ready(&[
        "node",
        "--listen",
        "127.0.0.1:0",
        "--data",
        node_dir.to_str().unwrap(),
        "--fio-api",
        &chain_url,
        "--log",
        "error",
    ]);
    let url = ready["url"].as_str().unwrap().to_string();
    let chain_id =
        fio_l2_protocol::envelope::parse_chain_id(ready["chain_id"].as_str().unwrap()).unwrap();

    let (status, _) = post_msg(
        &c,
        &url,
        &signed(&alice, &bob, "before the outage", &chain_id),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(health_count(&c, &url).await, 1);

    // The chain goes away.
    drop(chain);
    let carol_msg = signed(&carol, &bob, "during the outage", &chain_id);
    let body = serde_json::to_vec(&carol_msg.to_json_value(false)).unwrap();
    let r = c
        .post(format!("{url}/v1/messages"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(
        r.headers().get("retry-after").is_some(),
        "503 carries Retry-After"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "chain_unavailable");
    assert_eq!(
        health_count(&c, &url).await,
        1,
        "nothing accepted unchecked"
    );

    // Reads need the chain too (ownership of the inbox): refused the same way.
    let pq = format!("/v1/inbox/{}", carol.address);
    let node_id = info(&c, &url).await["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    let headers = proof_for(
        &chain_id,
        &node_id,
        &carol.key,
        &carol.address,
        "GET",
        &pq,
        b"",
    );
    let (s, v) = get_with(&c, &url, &pq, &headers).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (503, Some("chain_unavailable"))
    );

    // The chain comes back on the same address: carol's message is accepted.
    let (_chain2, _) = spawn_ready(&["devchain", "--listen", &chain_listen, "--data", chain_dir_s]);
    let (status, v) = post_msg(&c, &url, &carol_msg).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(health_count(&c, &url).await, 2);
}
