//! Recipient policies replicate between real `fio-l2 node` processes on one
//! shared `fio-l2 devchain` (docs/replication.md, "Recipient policies"): a
//! policy PUT at one node is pushed to its peers and enforced there; a node
//! that was down gets it by repair; a peer's forged policy is refused and
//! scores the peer; an older policy never replaces a newer one.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

const SYNC: &[&str] = &["--sync-interval-ms", "300"];

fn p(name: &str) -> Party {
    Party::new(name, &format!("{name}@dev"))
}

fn start_in_mesh(dir: &Path, chain: &DevChainProc, ports: &[u16], i: usize) -> Node {
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, p)| format!("http://127.0.0.1:{p}"))
        .collect();
    Node::start_peer(
        &dir.join(format!("n{i}")),
        ports[i],
        &chain.url,
        &peers,
        SYNC,
    )
}

async fn get_policy(c: &reqwest::Client, url: &str, address: &str) -> (u16, Value) {
    let r = c
        .get(format!("{url}/v1/policy/{address}"))
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// The status of the peer `peer_url` at node `url`.
async fn peer_entry(c: &reqwest::Client, url: &str, peer_url: &str) -> Value {
    let v = peers_status(c, url).await;
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["url"] == peer_url)
        .cloned()
        .unwrap_or_else(|| panic!("{peer_url} not a peer of {url}: {v}"))
}

/// Polls until a fresh message from `from` to `to` is refused at `url` with
/// 403 `blocked_by_recipient`; panics (with the node's log) after `secs`.
async fn wait_blocked(
    c: &reqwest::Client,
    node: &Node,
    chain_id: &[u8; 32],
    from: &Party,
    to: &Party,
    secs: u64,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut k = 0;
    loop {
        k += 1;
        let m = signed(from, to, &format!("probe {k}"), chain_id);
        let (st, v) = post_msg(c, &node.url, &m).await;
        if st == 403 && v["error"]["code"] == "blocked_by_recipient" {
            return;
        }
        // Before the policy arrives the probe is accepted (or refused for
        // another reason worth seeing).
        assert!(st == 201 || st == 200, "unexpected answer {st}: {v}");
        if std::time::Instant::now() > deadline {
            panic!(
                "{} does not enforce the policy after {secs} s; peers: {}\nlog: {}",
                node.url,
                peers_status(c, &node.url).await,
                std::fs::read_to_string(&node.log).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_put_at_one_node_is_enforced_at_peers_and_repaired_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let chain = DevChainProc::start(&dir.path().join("chain"));
    let c = http();
    let (bob, mallory) = (p("bob"), p("mallory"));
    register(&c, &chain.url, &bob).await;
    register(&c, &chain.url, &mallory).await;
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| start_in_mesh(dir.path(), &chain, &ports, i))
        .collect();
    for n in &nodes {
        poll(20, "peers identified", || async {
            let v = peers_status(&c, &n.url).await;
            let ok = v["peers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["node_id"].is_string());
            ok.then_some(())
        })
        .await;
    }
    // Node 2 is down while bob publishes his policy at node 0.
    nodes[2].kill9();
    let doc = policy_doc(
        &bob,
        &bob.key,
        &chain.chain_id,
        now() - 10,
        &[],
        &["mallory@dev"],
        false,
        0,
        0,
    );
    let (st, v) = put_policy(&c, &nodes[0].url, "bob@dev", &doc).await;
    assert_eq!(st, 201, "{v}");

    // (a) Node 1 enforces it: pushed there, not only repaired.
    wait_blocked(&c, &nodes[1], &chain.chain_id, &mallory, &bob, 20).await;
    assert_eq!(
        get_policy(&c, &nodes[1].url, "bob@dev").await,
        (200, doc.clone())
    );
    let to1 = peer_entry(&c, &nodes[0].url, &format!("http://127.0.0.1:{}", ports[1])).await;
    assert!(to1["policies"]["pushed"].as_u64().unwrap() >= 1, "{to1}");

    // (b) Node 0 gives up pushing to the stopped node 2 (so what node 2 gets
    // after its restart comes from repair), then node 2 restarts.
    let url2 = format!("http://127.0.0.1:{}", ports[2]);
    poll(30, "the push to the stopped node dropped", || async {
        let e = peer_entry(&c, &nodes[0].url, &url2).await;
        (e["policies"]["push_dropped"].as_u64().unwrap_or(0) >= 1).then_some(())
    })
    .await;
    nodes[2] = start_in_mesh(dir.path(), &chain, &ports, 2);
    wait_blocked(&c, &nodes[2], &chain.chain_id, &mallory, &bob, 30).await;
    assert_eq!(
        get_policy(&c, &nodes[2].url, "bob@dev").await,
        (200, doc.clone())
    );
    let v = peers_status(&c, &nodes[2].url).await;
    let ps = v["peers"].as_array().unwrap();
    let stored: u64 = ps
        .iter()
        .map(|p| p["policies"]["stored"].as_u64().unwrap())
        .sum();
    let received: u64 = ps
        .iter()
        .map(|p| p["policies"]["received"].as_u64().unwrap())
        .sum();
    assert_eq!((stored, received), (1, 0), "{v}");
    // Nobody was penalized for any of it.
    for n in &nodes {
        let v = peers_status(&c, &n.url).await;
        for p in v["peers"].as_array().unwrap() {
            assert_eq!(p["refused_from_peer"], 0, "{v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_policies_are_checked_forgeries_scored_and_older_never_replaces_newer() {
    let dir = tempfile::tempdir().unwrap();
    let chain = DevChainProc::start(&dir.path().join("chain"));
    let c = http();
    let (bob, mallory) = (p("bob"), p("mallory"));
    register(&c, &chain.url, &bob).await;
    register(&c, &chain.url, &mallory).await;
    // A fake peer that answers /v1/info (same chain) and 404 otherwise.
    let fake_id = "e".repeat(32);
    let fake_url = spawn_fake_peer(&fake_id, &chain.chain_id).await;
    let node = Node::start_peer(
        &dir.path().join("n0"),
        free_port(),
        &chain.url,
        std::slice::from_ref(&fake_url),
        SYNC,
    );
    let push = |docs: Vec<Value>| {
        let (c, url, id) = (c.clone(), node.url.clone(), fake_id.clone());
        async move {
            let r = c
                .post(format!("{url}/v1/peer/policies"))
                .header("x-fio-l2-peer", id)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&docs).unwrap())
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let t = now() - 100;
    let mk = |updated: u64, block: &[&str]| {
        policy_doc(
            &bob,
            &bob.key,
            &chain.chain_id,
            updated,
            &[],
            block,
            false,
            0,
            0,
        )
    };
    let newer = mk(t + 10, &["mallory@dev"]);
    let older = mk(t, &[]);
    // An honest newer document is stored (once the node knows the peer).
    let v = poll(20, "peer identified", || {
        let push = &push;
        let newer = newer.clone();
        async move {
            let (st, v) = push(vec![newer]).await;
            (st == 200).then_some(v)
        }
    })
    .await;
    assert_eq!(v["results"][0]["http_status"], 201, "{v}");
    assert_eq!(v["results"][0]["status"], "accepted", "{v}");

    // (d) The older one pushed afterwards: stale, no fault of the peer.
    let (st, v) = push(vec![older, newer.clone()]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["results"][0]["http_status"], 409, "{v}");
    assert_eq!(v["results"][0]["error"]["code"], "policy_stale", "{v}");
    assert_eq!(v["results"][1]["http_status"], 200, "{v}");
    assert_eq!(v["results"][1]["status"], "existing", "{v}");
    assert_eq!(
        get_policy(&c, &node.url, "bob@dev").await,
        (200, newer.clone())
    );
    let e = peer_entry(&c, &node.url, &fake_url).await;
    assert_eq!(e["refused_from_peer"], 0, "{e}");
    assert_eq!(e["policies"]["received"], 3, "{e}");
    assert_eq!(e["policies"]["stored"], 1, "{e}");

    // (c) Forged: bob's owner_key and a later time, signed by mallory.
    let mut forged = policy_doc(
        &bob,
        &mallory.key,
        &chain.chain_id,
        t + 20,
        &[],
        &[],
        false,
        0,
        0,
    );
    forged["owner_key"] = json!(bob.pubkey());
    let (st, v) = push(vec![forged]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["results"][0]["http_status"], 401, "{v}");
    assert_eq!(
        v["results"][0]["error"]["code"], "policy_bad_signature",
        "{v}"
    );
    assert_eq!(
        get_policy(&c, &node.url, "bob@dev").await,
        (200, newer.clone())
    );
    // Mallory is still blocked: the forgery changed nothing.
    let m = signed(&mallory, &bob, "still blocked", &chain.chain_id);
    let (st, v) = post_msg(&c, &node.url, &m).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (403, Some("blocked_by_recipient"))
    );
    // The peer is scored for it.
    let e = peer_entry(&c, &node.url, &fake_url).await;
    assert_eq!(e["refused_from_peer"], 1, "{e}");
    assert!(e["score"].as_f64().unwrap() >= 9.0, "{e}");
    assert!(
        e["last_penalty"]
            .as_str()
            .unwrap()
            .contains("policy_bad_signature"),
        "{e}"
    );
    // Malformed pushes are refused as a whole and scored too.
    let r = c
        .post(format!("{}/v1/peer/policies", node.url))
        .header("x-fio-l2-peer", fake_id.clone())
        .header("content-type", "application/json")
        .body("{\"not\":\"an array\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let e = peer_entry(&c, &node.url, &fake_url).await;
    assert_eq!(e["refused_from_peer"], 2, "{e}");
    // Without a known peer id: refused before anything is read.
    let r = c
        .post(format!("{}/v1/peer/policies", node.url))
        .header("x-fio-l2-peer", "nobody")
        .header("content-type", "application/json")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // The digest and fetch routes serve what is held.
    let r: Value = c
        .get(format!("{}/v1/peer/policies/digest", node.url))
        .header("x-fio-l2-peer", fake_id.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"policies": [["bob@dev", t + 10]], "next": null}));
    let r: Value = c
        .get(format!(
            "{}/v1/peer/policies/digest?after=bob@dev",
            node.url
        ))
        .header("x-fio-l2-peer", fake_id.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({"policies": [], "next": null}));
    let r: Value = c
        .post(format!("{}/v1/peer/policies/fetch", node.url))
        .header("x-fio-l2-peer", fake_id.clone())
        .json(&json!({"addresses": ["bob@dev", "nobody@dev"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r, json!({ "policies": [newer] }));
}
