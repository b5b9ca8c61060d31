//! Replication between real `fio-l2 node` processes on loopback, all on one
//! shared `fio-l2 devchain` process (docs/replication.md): any node serves
//! any inbox, a killed node catches up, a partition heals, a forging peer is
//! refused, deletions and expiry converge, a transferred sender is refused.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;

const SYNC: &[&str] = &["--sync-interval-ms", "300"];

fn parties() -> (Party, Party) {
    (
        Party::new("alice", "alice@dev"),
        Party::new("bob", "bob@dev"),
    )
}

async fn chain_setup(dir: &Path) -> (DevChainProc, reqwest::Client, Party, Party) {
    let chain = DevChainProc::start(&dir.join("chain"));
    let c = http();
    let (alice, bob) = parties();
    register(&c, &chain.url, &alice).await;
    register(&c, &chain.url, &bob).await;
    (chain, c, alice, bob)
}

/// `n` nodes in a full mesh on fixed ports (peer URLs known up front).
fn mesh(dir: &Path, chain: &DevChainProc, n: usize, extra: &[&str]) -> (Vec<Node>, Vec<u16>) {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let nodes = (0..n)
        .map(|i| start_in_mesh(dir, chain, &ports, i, extra))
        .collect();
    (nodes, ports)
}

fn start_in_mesh(
    dir: &Path,
    chain: &DevChainProc,
    ports: &[u16],
    i: usize,
    extra: &[&str],
) -> Node {
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, p)| format!("http://127.0.0.1:{p}"))
        .collect();
    let mut args: Vec<&str> = SYNC.to_vec();
    args.extend_from_slice(extra);
    Node::start_peer(
        &dir.join(format!("n{i}")),
        ports[i],
        &chain.url,
        &peers,
        &args,
    )
}

async fn id_set(c: &reqwest::Client, node: &Node, owner: &Party) -> HashSet<String> {
    let ids = inbox_ids(c, node, owner).await;
    let set: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "duplicates in {}'s inbox", node.url);
    set
}

/// Polls until every node serves exactly `want` in `owner`'s inbox.
async fn converge(
    c: &reqwest::Client,
    nodes: &[&Node],
    owner: &Party,
    want: &HashSet<String>,
    secs: u64,
) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    for n in nodes {
        loop {
            let got = id_set(c, n, owner).await;
            if got == *want {
                break;
            }
            if std::time::Instant::now() > deadline {
                let mut report = String::new();
                for m in nodes {
                    let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    report.push_str(&format!(
                        "\n{} has {} of {}; peers: {}\nlog tail: {:?}",
                        m.url,
                        id_set(c, m, owner).await.intersection(want).count(),
                        want.len(),
                        peers_status(c, &m.url).await,
                        tail
                    ));
                }
                panic!("{} did not converge:{report}", n.url);
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_any_inbox_with_four_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, c, alice, bob) = chain_setup(dir.path()).await;
    let (nodes, _) = mesh(dir.path(), &chain, 4, &[]);
    // Wait until every node knows its peers, then send to each node.
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
    let mut want = HashSet::new();
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..5 {
            let m = signed(&alice, &bob, &format!("n{i} m{k}"), &chain.chain_id);
            let (st, v) = post_msg(&c, &n.url, &m).await;
            assert_eq!(st, 201, "{v}");
            want.insert(m.id_hex());
        }
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    converge(&c, &refs, &bob, &want, 30).await;
    // Status: every peer reachable, synced, nothing behind, nobody penalized.
    for n in &nodes {
        poll(10, "peers in step", || async {
            let v = peers_status(&c, &n.url).await;
            let ps = v["peers"].as_array().unwrap().clone();
            let ok = ps.len() == 3
                && ps.iter().all(|p| {
                    p["reachable"] == true
                        && p["last_sync"].is_u64()
                        && p["behind"] == 0
                        && p["banned"] == false
                        && p["refused_from_peer"] == 0
                });
            ok.then_some(())
        })
        .await;
    }
    // Pushed, not only repaired: some pushes were counted.
    let v = peers_status(&c, &nodes[0].url).await;
    let pushed: u64 = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pushed"].as_u64().unwrap())
        .sum();
    assert!(pushed >= 5, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_catches_up_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, c, alice, bob) = chain_setup(dir.path()).await;
    let (mut nodes, ports) = mesh(dir.path(), &chain, 3, &[]);
    let first = signed(&alice, &bob, "before", &chain.chain_id);
    assert_eq!(post_msg(&c, &nodes[0].url, &first).await.0, 201);
    let mut want: HashSet<String> = [first.id_hex()].into();
    let all: Vec<&Node> = nodes.iter().collect();
    converge(&c, &all, &bob, &want, 30).await;

    nodes[2].kill9();
    // 2,000 messages while node 2 is down, half at each live node.
    for batch in 0..20 {
        let msgs: Vec<_> = (0..100)
            .map(|k| signed(&alice, &bob, &format!("b{batch} k{k}"), &chain.chain_id))
            .collect();
        let results = post_batch(&c, &nodes[batch % 2].url, &msgs).await;
        for (m, r) in msgs.iter().zip(results) {
            assert_eq!(r["http_status"], 201, "{r}");
            want.insert(m.id_hex());
        }
    }
    assert_eq!(want.len(), 2001);
    let restarted = start_in_mesh(dir.path(), &chain, &ports, 2, &[]);
    nodes[2] = restarted;
    let all: Vec<&Node> = nodes.iter().collect();
    converge(&c, &all, &bob, &want, 60).await;
    assert_eq!(health_count(&c, &nodes[2].url).await, 2001);
    // The catch-up is reported: the restarted node completes a full pass with
    // both peers. Convergence may come from one peer first; the other can
    // refuse briefly (`unknown_peer`) until it has re-read this node's
    // identity, so wait for both.
    let v = poll(20, "a full sync with both peers", || async {
        let v = peers_status(&c, &nodes[2].url).await;
        let ps = v["peers"].as_array().unwrap().clone();
        ps.iter().all(|p| p["last_full_sync"].is_u64()).then_some(v)
    })
    .await;
    // Obtained by repair (fetched) or by pushes still being retried when it
    // came back (received); nothing behind.
    let obtained: u64 = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["fetched"].as_u64().unwrap() + p["received"].as_u64().unwrap())
        .sum();
    assert!(obtained >= 2000, "{v}");
    poll(10, "nothing behind", || async {
        let v = peers_status(&c, &nodes[2].url).await;
        let ps = v["peers"].as_array().unwrap().clone();
        ps.iter().all(|p| p["behind"] == 0).then_some(())
    })
    .await;
    let log = std::fs::read_to_string(&nodes[2].log).unwrap();
    assert!(log.contains("full sync with"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heals_and_all_converge() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, c, alice, bob) = chain_setup(dir.path()).await;
    // Every directed link i -> j goes through its own cuttable proxy.
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut proxies = std::collections::HashMap::new();
    for i in 0..3 {
        for (j, port) in ports.iter().enumerate() {
            if i != j {
                proxies.insert((i, j), CutProxy::start(0, *port).await);
            }
        }
    }
    let nodes: Vec<Node> = (0..3)
        .map(|i| {
            let peers: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| proxies[&(i, j)].url())
                .collect();
            Node::start_peer(
                &dir.path().join(format!("n{i}")),
                ports[i],
                &chain.url,
                &peers,
                SYNC,
            )
        })
        .collect();
    // Cut {0,1} | {2}.
    for (&(i, j), p) in &proxies {
        if (i == 2) != (j == 2) {
            p.cut();
        }
    }
    let mut left = HashSet::new();
    let mut right = HashSet::new();
    for k in 0..30 {
        let m = signed(&alice, &bob, &format!("left {k}"), &chain.chain_id);
        assert_eq!(post_msg(&c, &nodes[k % 2].url, &m).await.0, 201);
        left.insert(m.id_hex());
        let m = signed(&alice, &bob, &format!("right {k}"), &chain.chain_id);
        assert_eq!(post_msg(&c, &nodes[2].url, &m).await.0, 201);
        right.insert(m.id_hex());
    }
    converge(&c, &[&nodes[0], &nodes[1]], &bob, &left, 30).await;
    converge(&c, &[&nodes[2]], &bob, &right, 30).await;
    // Still apart after several repair rounds.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(id_set(&c, &nodes[2], &bob).await, right);
    let v = peers_status(&c, &nodes[2].url).await;
    assert!(
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["reachable"] == false),
        "{v}"
    );
    // Heal: everyone gets everything.
    for p in proxies.values() {
        p.heal();
    }
    let all: HashSet<String> = left.union(&right).cloned().collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    converge(&c, &refs, &bob, &all, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forging_peer_is_refused_scored_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, c, alice, bob) = chain_setup(dir.path()).await;
    // A fake peer that answers /v1/info (same chain) and nothing else useful.
    let fake_id = "f".repeat(32);
    let fake_url = spawn_fake_peer(&fake_id, &chain.chain_id).await;
    let node = Node::start_peer(
        &dir.path().join("n0"),
        free_port(),
        &chain.url,
        std::slice::from_ref(&fake_url),
        SYNC,
    );
    let push = |body: Vec<u8>| {
        let (c, url, id) = (c.clone(), node.url.clone(), fake_id.clone());
        async move {
            let r = c
                .post(format!("{url}/v1/peer/messages"))
                .header("x-fio-l2-peer", id)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // An honest message from the peer is accepted (once the node knows it).
    let good = signed(&alice, &bob, "relayed", &chain.chain_id);
    let body = serde_json::to_vec(&json!([good.to_json_value(false)])).unwrap();
    poll(20, "peer identified", || {
        let b = body.clone();
        let push = &push;
        async move { (push(b).await.0 == 200).then_some(()) }
    })
    .await;
    assert_eq!(inbox_ids(&c, &node, &bob).await, vec![good.id_hex()]);
    // Forged: content changed after signing.
    let mut forged = vec![];
    for k in 0..10 {
        let m = signed(&alice, &bob, &format!("forged {k}"), &chain.chain_id);
        let other = signed(&alice, &bob, &format!("other {k}"), &chain.chain_id);
        let mut v = m.to_json_value(false);
        v["content"] = other.to_json_value(false)["content"].clone();
        forged.push(v);
    }
    let (st, v) = push(serde_json::to_vec(&forged).unwrap()).await;
    assert_eq!(st, 200, "{v}");
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["http_status"], 401, "{r}");
        assert_eq!(r["error"]["code"], "signature_mismatch");
    }
    // Nothing forged stored; the peer is now refused.
    assert_eq!(inbox_ids(&c, &node, &bob).await, vec![good.id_hex()]);
    let (st, v) = push(body.clone()).await;
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["error"]["code"], "peer_refused");
    let s = peers_status(&c, &node.url).await;
    let p = &s["peers"][0];
    assert_eq!(p["banned"], true, "{s}");
    assert!(p["score"].as_f64().unwrap() >= 100.0, "{s}");
    assert!(
        p["last_penalty"]
            .as_str()
            .unwrap()
            .contains("signature_mismatch"),
        "{s}"
    );
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(log.contains("sent invalid data"), "{log}");
    assert!(log.contains("refused for 600 s"), "{log}");
}

/// Ack through the CLI (which signs a deletion record).
async fn cli_ack(node: &Node, chain: &DevChainProc, owner: &Party, ids: &[String]) -> Value {
    let mut args = vec![
        "ack".to_string(),
        "--node".into(),
        node.url.clone(),
        "--fio-api".into(),
        chain.url.clone(),
        "--address".into(),
        owner.address.clone(),
    ];
    args.extend(ids.iter().cloned());
    let (ok, out, err) = run_cli_async(
        args,
        vec![("FIO_L2_PRIVATE_KEY".into(), owner.key.to_wif())],
    )
    .await;
    assert!(ok, "ack failed: {out} {err}");
    serde_json::from_str(out.trim()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_expiry_converge_without_resurrection() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, c, alice, bob) = chain_setup(dir.path()).await;
    let (nodes, _) = mesh(dir.path(), &chain, 3, &[]);
    let msgs: Vec<_> = (0..4)
        .map(|k| signed(&alice, &bob, &format!("m{k}"), &chain.chain_id))
        .collect();
    for m in &msgs {
        assert_eq!(post_msg(&c, &nodes[0].url, m).await.0, 201);
    }
    let short = message_at(&alice, &bob, "short", now32(), now32() + 8)
        .sign(&alice.key, &chain.chain_id)
        .unwrap();
    assert_eq!(post_msg(&c, &nodes[0].url, &short).await.0, 201);
    let mut want: HashSet<String> = msgs.iter().map(|m| m.id_hex()).collect();
    want.insert(short.id_hex());
    let refs: Vec<&Node> = nodes.iter().collect();
    converge(&c, &refs, &bob, &want, 30).await;

    // m0, m1 acked at node 1 with a deletion record (the CLI signs one).
    let del = vec![msgs[0].id_hex(), msgs[1].id_hex()];
    let v = cli_ack(&nodes[1], &chain, &bob, &del).await;
    assert_eq!(v["deleted"].as_array().unwrap().len(), 2, "{v}");
    // m2 acked at node 2 without a record: a local deletion only.
    let (st, v) = ack(&c, &nodes[2], &bob, &[msgs[2].id_hex()]).await;
    assert_eq!(st, 200, "{v}");
    // Expiry: the short message is gone everywhere.
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    for k in [0, 1] {
        want.remove(&del[k]);
    }
    want.remove(&short.id_hex());
    converge(&c, &[&nodes[0], &nodes[1]], &bob, &want, 30).await;
    let mut want2 = want.clone();
    want2.remove(&msgs[2].id_hex());
    converge(&c, &[&nodes[2]], &bob, &want2, 30).await;
    // Several repair rounds later, nothing came back anywhere.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(id_set(&c, &nodes[0], &bob).await, want);
    assert_eq!(id_set(&c, &nodes[1], &bob).await, want);
    assert_eq!(id_set(&c, &nodes[2], &bob).await, want2);
    // A resend of a deleted message is refused by every node.
    for n in &nodes {
        let (st, v) = post_msg(&c, &n.url, &msgs[0]).await;
        assert_eq!(st, 410, "{} {v}", n.url);
        let (st, _) = post_msg(&c, &n.url, &short).await;
        assert_eq!(st, 422);
    }
    // No honest peer was penalized for any of this.
    for n in &nodes {
        let v = peers_status(&c, &n.url).await;
        for p in v["peers"].as_array().unwrap() {
            assert_eq!(p["refused_from_peer"], 0, "{v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_deletion_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, c, alice, bob) = chain_setup(dir.path()).await;
    let (nodes, _) = mesh(dir.path(), &chain, 1, &[]);
    let m = signed(&alice, &bob, "keep", &chain.chain_id);
    assert_eq!(post_msg(&c, &nodes[0].url, &m).await.0, 201);
    // A record signed by alice (not bob's owner) for bob's address: refused,
    // and the ack changes nothing.
    let ids = vec![m.id_hex()];
    let rec = fio_l2_node::replication::deletion::sign(
        &alice.key,
        &chain.chain_id,
        "bob@dev",
        now(),
        &ids,
    );
    let pq = "/v1/inbox/bob@dev/ack";
    let body = serde_json::to_vec(&json!({"ids": ids, "deletion": rec})).unwrap();
    let mut rb = c
        .post(format!("{}{pq}", nodes[0].url))
        .header("content-type", "application/json");
    for (k, v) in proof(&nodes[0], &bob.key, "bob@dev", "POST", pq, &body) {
        rb = rb.header(k, v);
    }
    let r = rb.body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "deletion_not_owner", "{v}");
    assert_eq!(inbox_ids(&c, &nodes[0], &bob).await, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_transferred_before_a_peer_checks_is_refused_there() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, c, alice, bob) = chain_setup(dir.path()).await;
    let cfg = dir.path().join("ttl.toml");
    std::fs::write(
        &cfg,
        "chain_positive_ttl_secs = 1\nchain_negative_ttl_secs = 1\n",
    )
    .unwrap();
    let cfg_s = cfg.display().to_string();
    let extra = ["--config", cfg_s.as_str()];
    let (mut nodes, ports) = mesh(dir.path(), &chain, 2, &extra);
    nodes[1].kill9();
    let m = signed(&alice, &bob, "before the transfer", &chain.chain_id);
    assert_eq!(post_msg(&c, &nodes[0].url, &m).await.0, 201);
    // alice@dev changes owner; then node 1 comes back and repairs from node 0.
    let r = c
        .post(format!("{}/v1/dev/transfer_address", chain.url))
        .json(&json!({"address": "alice@dev", "new_owner_public_key": Party::new("carol", "x@dev").pubkey()}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    nodes[1] = start_in_mesh(dir.path(), &chain, &ports, 1, &extra);
    poll(20, "a full sync", || async {
        let v = peers_status(&c, &nodes[1].url).await;
        v["peers"][0]["last_full_sync"].is_u64().then_some(())
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    // Refused at node 1, still served by node 0 (which accepted it before).
    assert!(inbox_ids(&c, &nodes[1], &bob).await.is_empty());
    assert_eq!(inbox_ids(&c, &nodes[0], &bob).await, vec![m.id_hex()]);
    // Counted lightly (an honest race), fetched once, not again every round.
    let v = peers_status(&c, &nodes[1].url).await;
    let p = &v["peers"][0];
    assert_eq!(p["banned"], false, "{v}");
    assert!(p["score"].as_f64().unwrap() <= 1.0, "{v}");
    assert!(
        p["last_penalty"]
            .as_str()
            .unwrap()
            .contains("sender_not_owner"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_node_first_and_serve_only_home() {
    let dir = tempfile::tempdir().unwrap();
    let (chain, c, alice, bob) = chain_setup(dir.path()).await;
    let carol = Party::new("carol", "carol@dev");
    register(&c, &chain.url, &carol).await;
    let plain = Node::start_peer(&dir.path().join("plain"), free_port(), &chain.url, &[], &[]);
    let home_port = free_port();
    let home_url = format!("http://127.0.0.1:{home_port}");
    let home = Node::start_peer(
        &dir.path().join("home"),
        home_port,
        &chain.url,
        &[],
        &["--public-url", &format!("{home_url}/"), "--serve-only-home"],
    );
    // bob publishes his home node (FIOL2/NODE).
    let r = c
        .post(format!("{}/v1/dev/set_pub_address", chain.url))
        .json(
            &json!({"address": "bob@dev", "chain_code": "FIOL2", "token_code": "NODE",
                      "public_address": format!("http://127.0.0.1:1,{home_url}")}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    // `fio-l2 send --node plain` delivers at bob's home node (after an unreachable first one).
    let (ok, out, err) = run_cli_async(
        vec![
            "send".into(),
            "--node".into(),
            plain.url.clone(),
            "--fio-api".into(),
            chain.url.clone(),
            "--from".into(),
            "alice@dev".into(),
            "--to".into(),
            "bob@dev".into(),
            funds("home").to_string(),
        ],
        vec![("FIO_L2_PRIVATE_KEY".into(), alice.key.to_wif())],
    )
    .await;
    assert!(ok, "{out} {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["node"], home_url.as_str(), "{v}");
    assert_eq!(v["http_status"], 201);
    assert_eq!(
        inbox_ids(&c, &home, &bob).await,
        vec![v["id"].as_str().unwrap().to_string()]
    );
    assert!(inbox_ids(&c, &plain, &bob).await.is_empty());
    // The home-only node refuses a recipient that does not name it.
    let m = signed(&alice, &carol, "not here", &chain.chain_id);
    let (st, v) = post_msg(&c, &home.url, &m).await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"]["code"], "not_home_node");
    // Carol has no home node: the CLI falls back to --node.
    let (ok, out, err) = run_cli_async(
        vec![
            "send".into(),
            "--node".into(),
            plain.url.clone(),
            "--fio-api".into(),
            chain.url.clone(),
            "--from".into(),
            "alice@dev".into(),
            "--to".into(),
            "carol@dev".into(),
            funds("plain").to_string(),
        ],
        vec![("FIO_L2_PRIVATE_KEY".into(), alice.key.to_wif())],
    )
    .await;
    assert!(ok, "{out} {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["node"], plain.url.as_str(), "{v}");
}
