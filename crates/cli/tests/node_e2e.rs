//! End-to-end tests of a real `fio-l2 node --dev` process over loopback HTTP:
//! send (CLI and Rust-built envelopes), read with owner proofs, decrypt, ack,
//! expiry, paging, idempotence, array submission, live subscription, and the
//! client's verification of what a node serves.

mod common;

use common::*;
use fio_l2_protocol::cipher::{decrypt_content_between, encrypt_content, random_iv, shared_secret};
use fio_l2_protocol::SignedMessage;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn parties() -> (Party, Party) {
    (
        Party::new("alice", "alice@dev"),
        Party::new("bob", "bob@dev"),
    )
}

async fn setup(extra: &[&str]) -> (tempfile::TempDir, Node, reqwest::Client, Party, Party) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"), extra);
    let c = http();
    let (alice, bob) = parties();
    register(&c, &node.url, &alice).await;
    register(&c, &node.url, &bob).await;
    (dir, node, c, alice, bob)
}

fn memo_of(v: &Value) -> &str {
    v["memo"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_send_then_read_decrypt_ack_and_deleted_resend_is_gone() {
    let (dir, node, c, alice, bob) = setup(&[]).await;
    let key_file = dir.path().join("alice.key");
    std::fs::write(&key_file, alice.key.to_wif()).unwrap();

    // 1. Send with the CLI (key from a file).
    let (ok, out, err) = run_cli_async(
        vec![
            "send".into(),
            "--node".into(),
            node.url.clone(),
            "--private-key-file".into(),
            key_file.display().to_string(),
            "--from".into(),
            "alice@dev".into(),
            "--to".into(),
            "Bob@Dev".into(),
            funds("from the cli").to_string(),
        ],
        vec![],
    )
    .await;
    assert!(ok, "send failed: {out} {err}");
    let sent: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(sent["http_status"], 201, "{sent}");
    assert_eq!(sent["status"], "accepted");
    let cli_id = sent["id"].as_str().unwrap().to_string();

    // 2. And one built in Rust.
    let m = signed(&alice, &bob, "from rust", &node.chain_id);
    let (st, v) = post_msg(&c, &node.url, &m).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["id"], m.id_hex());
    assert_eq!(v["status"], "accepted");
    assert_eq!(health_count(&c, &node.url).await, 2);

    // 3. Read with an owner proof and decrypt as bob.
    let page = inbox_page(&c, &node, &bob, "?order=oldest").await;
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{page}");
    assert_eq!(msgs[0]["envelope"]["id"], cli_id.as_str());
    assert_eq!(msgs[1]["envelope"], m.to_json_value(true));
    assert!(msgs[0]["seq"].as_u64().unwrap() < msgs[1]["seq"].as_u64().unwrap());
    let mut memos = vec![];
    for e in msgs {
        let env = SignedMessage::from_json(&serde_json::to_vec(&e["envelope"]).unwrap()).unwrap();
        env.verify_signature(&node.chain_id).unwrap();
        let mm = env.message();
        assert_eq!(mm.sender, "alice@dev");
        assert_eq!(mm.recipient, "bob@dev");
        let content = decrypt_content_between(
            &bob.key,
            &mm.sender_encrypt_key,
            &mm.content_type,
            &mm.content,
        )
        .unwrap();
        assert_eq!(content["amount"], "1.5");
        memos.push(memo_of(&content).to_string());
    }
    assert_eq!(memos, ["from the cli", "from rust"]);

    // 4. The CLI reads and verifies it too.
    let bob_env = vec![("FIO_L2_PRIVATE_KEY".to_string(), bob.key.to_wif())];
    let (ok, out, err) = run_cli_async(
        vec![
            "inbox".into(),
            "--node".into(),
            node.url.clone(),
            "--address".into(),
            "bob@dev".into(),
            "--order".into(),
            "oldest".into(),
        ],
        bob_env.clone(),
    )
    .await;
    assert!(ok, "inbox failed: {out} {err}");
    let listed: Value = serde_json::from_str(out.trim()).unwrap();
    let lm = listed["messages"].as_array().unwrap();
    assert_eq!(lm.len(), 2, "{listed}");
    for (e, memo) in lm.iter().zip(["from the cli", "from rust"]) {
        assert_eq!(e["verified"], true, "{e}");
        assert_eq!(e["problems"], json!([]));
        assert_eq!(e["content"]["memo"], memo);
    }

    // 5. Ack the CLI one with the CLI, the Rust one over HTTP.
    let (ok, out, err) = run_cli_async(
        vec![
            "ack".into(),
            "--node".into(),
            node.url.clone(),
            "--address".into(),
            "bob@dev".into(),
            cli_id.clone(),
        ],
        bob_env,
    )
    .await;
    assert!(ok, "ack failed: {out} {err}");
    let acked: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(acked["deleted"], json!([cli_id]));
    let (st, v) = ack(&c, &node, &bob, &[m.id_hex(), "00".repeat(32)]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["deleted"], json!([m.id_hex()]));
    assert_eq!(v["not_found"], json!(["00".repeat(32)]));
    assert!(inbox_ids(&c, &node, &bob).await.is_empty());
    assert_eq!(health_count(&c, &node.url).await, 0);

    // 6. The same envelope again is refused for good: 410 message_deleted.
    let (st, v) = post_msg(&c, &node.url, &m).await;
    assert_eq!(st, 410, "{v}");
    assert_eq!(v["error"]["code"], "message_deleted");
    let first_cli_env = msgs[0]["envelope"].clone();
    let (st, v) = post_raw(&c, &node.url, serde_json::to_vec(&first_cli_env).unwrap()).await;
    assert_eq!(st, 410, "{v}");
    assert_eq!(v["error"]["code"], "message_deleted");
    assert!(inbox_ids(&c, &node, &bob).await.is_empty());
    assert_eq!(health_count(&c, &node.url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_resend_and_array_submission() {
    let (_dir, node, c, alice, bob) = setup(&[]).await;
    let m = signed(&alice, &bob, "once", &node.chain_id);
    let (st, v) = post_msg(&c, &node.url, &m).await;
    assert_eq!((st, v["status"].as_str()), (201, Some("accepted")), "{v}");
    let (st, v) = post_msg(&c, &node.url, &m).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("existing")), "{v}");
    assert_eq!(v["id"], m.id_hex());
    // With the id field on input (matching) it is the same message too.
    let (st, v) = post_raw(
        &c,
        &node.url,
        serde_json::to_vec(&m.to_json_value(true)).unwrap(),
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("existing")), "{v}");
    assert_eq!(health_count(&c, &node.url).await, 1);
    assert_eq!(inbox_ids(&c, &node, &bob).await, vec![m.id_hex()]);

    // One request, several envelopes, one of them bad: per-element results.
    let a = signed(&alice, &bob, "batch a", &node.chain_id);
    let b = signed(&alice, &bob, "batch b", &node.chain_id);
    let mut bad = signed(&alice, &bob, "batch bad", &node.chain_id).to_json_value(false);
    bad["version"] = json!(2);
    let body = json!([
        a.to_json_value(false),
        m.to_json_value(false),
        bad,
        b.to_json_value(false)
    ]);
    let (st, v) = post_raw(&c, &node.url, serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(st, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 4, "{v}");
    assert_eq!(r[0]["http_status"], 201);
    assert_eq!(r[0]["id"], a.id_hex());
    assert_eq!(r[0]["status"], "accepted");
    assert_eq!(r[1]["http_status"], 200);
    assert_eq!(r[1]["status"], "existing");
    assert_eq!(r[2]["http_status"], 400);
    assert_eq!(r[2]["error"]["code"], "bad_version");
    assert_eq!(r[3]["http_status"], 201);
    assert_eq!(r[3]["id"], b.id_hex());
    assert_eq!(health_count(&c, &node.url).await, 3);
    // Every submission answer says where its time went (Server-Timing).
    let c2 = signed(&alice, &bob, "timed", &node.chain_id);
    let r = c
        .post(format!("{}/v1/messages", node.url))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!([c2.to_json_value(false)])).unwrap())
        .send()
        .await
        .unwrap();
    let timing = r.headers()["server-timing"].to_str().unwrap().to_string();
    let stages: Vec<&str> = timing
        .split(", ")
        .map(|p| {
            let (name, dur) = p.split_once(";dur=").expect("name;dur=ms");
            assert!(dur.parse::<f64>().unwrap() >= 0.0, "{timing}");
            name
        })
        .collect();
    assert_eq!(
        stages,
        ["read", "slot", "verify", "chain", "write"],
        "{timing}"
    );
    let (st, v) = post_msg(&c, &node.url, &c2).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("existing")), "{v}");
    let (st, v) = ack(&c, &node, &bob, &[c2.id_hex()]).await;
    assert_eq!(st, 200, "{v}");
    let ids: HashSet<String> = inbox_ids(&c, &node, &bob).await.into_iter().collect();
    let want: HashSet<String> = [m.id_hex(), a.id_hex(), b.id_hex()].into();
    assert_eq!(ids, want);

    // Another owner cannot delete bob's messages: carol's ack of them finds nothing.
    let carol = Party::new("carol", "carol@dev");
    register(&c, &node.url, &carol).await;
    let (st, v) = ack(&c, &node, &carol, &[m.id_hex()]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["deleted"], json!([]));
    assert_eq!(v["not_found"], json!([m.id_hex()]));
    let ids: HashSet<String> = inbox_ids(&c, &node, &bob).await.into_iter().collect();
    assert_eq!(ids, want);
    assert_eq!(health_count(&c, &node.url).await, 3);
    // Acking twice: the second time it is not found, and it stays deleted.
    let (_, v) = ack(&c, &node, &bob, &[a.id_hex()]).await;
    assert_eq!(v["deleted"], json!([a.id_hex()]));
    let (_, v) = ack(&c, &node, &bob, &[a.id_hex()]).await;
    assert_eq!(v["not_found"], json!([a.id_hex()]));
    let (st, v) = post_msg(&c, &node.url, &a).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (410, Some("message_deleted"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_with_cursor_in_both_orders() {
    let (_dir, node, c, alice, bob) = setup(&[]).await;
    let sent: Vec<SignedMessage> = (0..25)
        .map(|i| signed(&alice, &bob, &format!("page {i}"), &node.chain_id))
        .collect();
    let body: Vec<Value> = sent.iter().map(|m| m.to_json_value(false)).collect();
    let (st, v) = post_raw(&c, &node.url, serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(st, 200, "{v}");
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["http_status"], 201, "{r}");
    }
    let want: HashSet<String> = sent.iter().map(|m| m.id_hex()).collect();

    for order in ["oldest", "newest"] {
        let mut pages: Vec<Vec<(u64, String)>> = vec![];
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(cur) => format!("?order={order}&limit=10&cursor={cur}"),
                None => format!("?order={order}&limit=10"),
            };
            let page = inbox_page(&c, &node, &bob, &q).await;
            let items: Vec<(u64, String)> = page["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["seq"].as_u64().unwrap(),
                        e["envelope"]["id"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            pages.push(items);
            assert!(pages.len() <= 4, "too many pages: {pages:?}");
            match page["next_cursor"].as_str() {
                Some(n) => cursor = Some(n.to_string()),
                None => break,
            }
        }
        let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5], "{order}: {pages:?}");
        let all: Vec<(u64, String)> = pages.concat();
        let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        if order == "newest" {
            sorted.reverse();
        }
        assert_eq!(seqs, sorted, "{order}: pages out of order");
        let ids: HashSet<String> = all.iter().map(|(_, id)| id.clone()).collect();
        assert_eq!(ids.len(), 25, "{order}: pages overlap");
        assert_eq!(ids, want, "{order}: pages incomplete");
        let seq_set: HashSet<u64> = seqs.iter().copied().collect();
        assert_eq!(seq_set.len(), 25);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_leaves_the_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, "purge_interval_secs = 1\n").unwrap();
    let node = Node::start(
        &dir.path().join("node"),
        &["--config", cfg.to_str().unwrap()],
    );
    let c = http();
    let (alice, bob) = parties();
    register(&c, &node.url, &alice).await;
    register(&c, &node.url, &bob).await;

    let t = now32();
    let short = message_at(&alice, &bob, "short", t, t + 6)
        .sign(&alice.key, &node.chain_id)
        .unwrap();
    let long = signed(&alice, &bob, "long", &node.chain_id);
    let (st, v) = post_msg(&c, &node.url, &short).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = post_msg(&c, &node.url, &long).await;
    assert_eq!(st, 201, "{v}");
    let ids = inbox_ids(&c, &node, &bob).await;
    assert!(
        ids.contains(&short.id_hex()),
        "short-lived message not listed"
    );

    // Gone from the inbox once expired; the long-lived one stays.
    poll(30, "expired message to leave the inbox", || async {
        let ids = inbox_ids(&c, &node, &bob).await;
        (!ids.contains(&short.id_hex())).then_some(ids)
    })
    .await;
    assert!(
        now() >= u64::from(t + 6),
        "left the inbox before it expired"
    );
    assert_eq!(inbox_ids(&c, &node, &bob).await, vec![long.id_hex()]);
    // And purged from storage.
    poll(30, "purge of the expired message", || async {
        (health_count(&c, &node.url).await == 1).then_some(())
    })
    .await;
    // An expired envelope is not accepted again.
    let (st, v) = post_msg(&c, &node.url, &short).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["code"], "expired");
}

/// A minimal reader of a Server-Sent Events response.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

#[derive(Debug)]
struct SseEvent {
    event: String,
    id: Option<u64>,
    data: Value,
}

impl Sse {
    async fn open(c: &reqwest::Client, node: &Node, owner: &Party, query: &str) -> Sse {
        Self::open_with(c, node, owner, query, &[]).await
    }

    async fn open_with(
        c: &reqwest::Client,
        node: &Node,
        owner: &Party,
        query: &str,
        extra: &[(&str, &str)],
    ) -> Sse {
        let pq = format!("/v1/inbox/{}/events{query}", owner.address);
        let mut rb = c.get(format!("{}{pq}", node.url));
        for (k, v) in extra {
            rb = rb.header(*k, *v);
        }
        for (k, v) in proof(node, &owner.key, &owner.address, "GET", &pq, b"") {
            rb = rb.header(k, v);
        }
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next event that is not a comment (keep-alive), within `secs`.
    async fn next(&mut self, secs: u64) -> SseEvent {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            while let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf[..pos].to_string();
                self.buf.drain(..pos + 2);
                let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                        any = true;
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any {
                    return SseEvent {
                        event,
                        id,
                        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
                    };
                }
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .expect("timed out waiting for an SSE event");
            let chunk = tokio::time::timeout(left, self.resp.chunk())
                .await
                .expect("timed out waiting for an SSE event")
                .expect("SSE stream error")
                .expect("SSE stream ended");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_subscription_and_since_replay() {
    let (_dir, node, c, alice, bob) = setup(&[]).await;
    let mut before = vec![];
    for i in 0..3 {
        let m = signed(&alice, &bob, &format!("before {i}"), &node.chain_id);
        assert_eq!(post_msg(&c, &node.url, &m).await.0, 201);
        before.push(m);
    }
    let page = inbox_page(&c, &node, &bob, "?order=oldest").await;
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 3);

    // Live: a subscription without `since` gets only what comes after it opened.
    let mut live = Sse::open(&c, &node, &bob, "").await;
    let m4 = signed(&alice, &bob, "live 4", &node.chain_id);
    assert_eq!(post_msg(&c, &node.url, &m4).await.0, 201);
    let ev = live.next(20).await;
    assert_eq!(ev.event, "message", "{ev:?}");
    assert_eq!(ev.data["envelope"], m4.to_json_value(true), "{ev:?}");
    let seq4 = ev.data["seq"].as_u64().unwrap();
    assert_eq!(ev.id, Some(seq4));
    assert!(seq4 > seqs[2]);
    // A message for someone else is not delivered to bob's stream.
    let carol = Party::new("carol", "carol@dev");
    register(&c, &node.url, &carol).await;
    let to_carol = signed(&alice, &carol, "not bob's", &node.chain_id);
    assert_eq!(post_msg(&c, &node.url, &to_carol).await.0, 201);
    let m5 = signed(&alice, &bob, "live 5", &node.chain_id);
    assert_eq!(post_msg(&c, &node.url, &m5).await.0, 201);
    let ev = live.next(20).await;
    assert_eq!(ev.data["envelope"]["id"], m5.id_hex(), "{ev:?}");

    // Replay: since = the first seq gives the 2nd, 3rd, 4th, 5th, then live.
    let mut replay = Sse::open(&c, &node, &bob, &format!("?since={}", seqs[0])).await;
    let mut got = vec![];
    for _ in 0..4 {
        let ev = replay.next(20).await;
        assert_eq!(ev.event, "message", "{ev:?}");
        got.push(ev.data["envelope"]["id"].as_str().unwrap().to_string());
    }
    let want = vec![
        before[1].id_hex(),
        before[2].id_hex(),
        m4.id_hex(),
        m5.id_hex(),
    ];
    assert_eq!(got, want);
    let m6 = signed(&alice, &bob, "live 6", &node.chain_id);
    assert_eq!(post_msg(&c, &node.url, &m6).await.0, 201);
    let ev = replay.next(20).await;
    assert_eq!(ev.data["envelope"]["id"], m6.id_hex(), "{ev:?}");
    // The first stream sees it too, exactly once after m5.
    let ev = live.next(20).await;
    assert_eq!(ev.data["envelope"]["id"], m6.id_hex(), "{ev:?}");

    // Reconnect with Last-Event-ID: what came after that seq, in order.
    let last = seqs[1].to_string();
    let mut again = Sse::open_with(&c, &node, &bob, "", &[("last-event-id", &last)]).await;
    let mut got = vec![];
    for _ in 0..4 {
        let ev = again.next(20).await;
        got.push(ev.data["envelope"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        got,
        [before[2].id_hex(), m4.id_hex(), m5.id_hex(), m6.id_hex()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_inbox_flags_a_forged_message_from_a_lying_node() {
    let (_dir, node, c, alice, bob) = setup(&[]).await;
    let info: Value = c
        .get(format!("{}/v1/info", node.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let genuine = signed(&alice, &bob, "genuine", &node.chain_id);
    // Same message, other content: the signature no longer covers it.
    let victim = signed(&alice, &bob, "original", &node.chain_id);
    let mut forged = victim.to_json_value(false);
    let secret = shared_secret(&alice.key, &bob.key.public_key());
    forged["content"] = json!(encrypt_content(
        &secret,
        "new_funds_content",
        &funds("pay the attacker"),
        &random_iv()
    )
    .unwrap());
    // Addressed to someone else, genuinely signed.
    let carol = Party::new("carol", "carol@dev");
    let misrouted = signed(&alice, &carol, "for carol", &node.chain_id);
    let page = json!({"messages": [
        {"seq": 1, "envelope": genuine.to_json_value(true)},
        {"seq": 2, "envelope": forged},
        {"seq": 3, "envelope": misrouted.to_json_value(true)},
    ], "next_cursor": null});
    let fake = fake_http(vec![
        ("/v1/info".into(), info.to_string()),
        ("/v1/inbox/bob@dev".into(), page.to_string()),
    ])
    .await;

    let (ok, out, err) = run_cli_async(
        vec![
            "inbox".into(),
            "--node".into(),
            fake,
            "--fio-api".into(),
            node.url.clone(),
            "--address".into(),
            "bob@dev".into(),
        ],
        vec![("FIO_L2_PRIVATE_KEY".into(), bob.key.to_wif())],
    )
    .await;
    assert!(ok, "inbox failed: {out} {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let m = v["messages"].as_array().unwrap();
    assert_eq!(m.len(), 3, "{v}");
    assert_eq!(m[0]["verified"], true, "{}", m[0]);
    assert_eq!(m[0]["content"]["memo"], "genuine");

    assert_eq!(m[1]["verified"], false, "{}", m[1]);
    assert!(m[1]["content"].is_null(), "{}", m[1]);
    let problems = m[1]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().contains("forged")),
        "{}",
        m[1]
    );

    assert_eq!(m[2]["verified"], false, "{}", m[2]);
    assert!(m[2]["content"].is_null(), "{}", m[2]);
    assert!(
        m[2]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("addressed to carol@dev")),
        "{}",
        m[2]
    );
}

/// docs/api.md: with `?since=SEQ` "stored messages after SEQ come first (up to
/// `max_page`), then live ones, without gaps or repeats". When more than
/// `max_page` messages are stored after SEQ, the node sends the first
/// `max_page` and then only live ones: the rest are skipped silently (no
/// `lagged` event either), so a reconnecting wallet loses messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_replay_longer_than_max_page_has_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(&cfg, "[limits]\nmax_page = 5\n").unwrap();
    let node = Node::start(
        &dir.path().join("node"),
        &["--config", cfg.to_str().unwrap()],
    );
    let c = http();
    let (alice, bob) = parties();
    register(&c, &node.url, &alice).await;
    register(&c, &node.url, &bob).await;
    let mut want = vec![];
    for i in 0..8 {
        let m = signed(&alice, &bob, &format!("backlog {i}"), &node.chain_id);
        assert_eq!(post_msg(&c, &node.url, &m).await.0, 201);
        want.push(m.id_hex());
    }
    let mut sub = Sse::open(&c, &node, &bob, "?since=0").await;
    let live = signed(&alice, &bob, "live", &node.chain_id);
    assert_eq!(post_msg(&c, &node.url, &live).await.0, 201);
    want.push(live.id_hex());
    let mut got = vec![];
    while got.last() != Some(&live.id_hex()) && got.len() < want.len() {
        let ev = sub.next(20).await;
        assert_eq!(ev.event, "message", "{ev:?}");
        got.push(ev.data["envelope"]["id"].as_str().unwrap().to_string());
    }
    assert_eq!(
        got, want,
        "events skipped between the backlog and live delivery"
    );
}
