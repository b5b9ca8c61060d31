//! Spam resistance against a real `fio-l2 node --dev` process: every rate
//! limit and quota refuses with 429, its own code and a Retry-After, and
//! stores nothing; forged messages cannot spend a sender's budget; the
//! per-IP penalty box; the rate-limit maps stay bounded under many distinct
//! IPs and senders (docs/spam.md).

mod common;

use common::*;
use serde_json::json;

async fn setup(limits: &str) -> (tempfile::TempDir, Node, reqwest::Client) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = limits_config(dir.path(), "node", limits);
    let node = Node::start(
        &dir.path().join("node"),
        &["--config", cfg.to_str().unwrap()],
    );
    (dir, node, http())
}

fn p(name: &str) -> Party {
    Party::new(name, &format!("{name}@dev"))
}

/// A valid message from `c`'s address is refused before it is read: the
/// address spent its penalty budget.
async fn assert_penalized(c: &reqwest::Client, url: &str, m: &fio_l2_protocol::SignedMessage) {
    let r = post_msg_ra(c, url, m).await;
    assert_refused(&r, 429, "ip_penalized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_bucket_refuses_and_forgeries_do_not_spend_it() {
    let (_d, node, c) = setup("sender_burst = 3\nsender_per_min = 1").await;
    let (alice, bob, mallory) = (p("alice"), p("bob"), p("mallory"));
    for x in [&alice, &bob, &mallory] {
        register(&c, &node.url, x).await;
    }
    // Forgeries claiming alice (signed by mallory's key): refused, no charge.
    for i in 0..6 {
        let f = signed_by(
            &alice,
            &mallory.key,
            &bob,
            &format!("forged {i}"),
            &node.chain_id,
        );
        let r = post_msg_ra(&c, &node.url, &f).await;
        assert_refused(&r, 403, "sender_not_owner");
    }
    for i in 0..3 {
        let m = signed(&alice, &bob, &format!("m{i}"), &node.chain_id);
        let r = post_msg_ra(&c, &node.url, &m).await;
        assert_eq!(r.0, 201, "{}", r.1);
    }
    let m = signed(&alice, &bob, "one too many", &node.chain_id);
    let r = post_msg_ra(&c, &node.url, &m).await;
    assert_refused(&r, 429, "sender_rate_limited");
    assert!(r.2.unwrap() >= 30, "retry-after {:?}", r.2);
    assert_eq!(health_count(&c, &node.url).await, 3);
    // Another sender is not affected.
    let m = signed(&mallory, &bob, "mallory's own", &node.chain_id);
    assert_eq!(post_msg_ra(&c, &node.url, &m).await.0, 201);
    let i = info(&c, &node.url).await;
    assert_eq!(i["limits"]["spam"]["sender_burst"], 3, "{i}");
    assert!(
        i["stats"]["spam"]["refusals"]["sender_rate_limited"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_and_recipient_limits_each_have_their_code() {
    let (_d, node, c) =
        setup("pair_burst = 2\npair_per_min = 1\nrecipient_burst = 4\nrecipient_per_min = 1").await;
    let (alice, bob, carol, dave, erin) = (p("alice"), p("bob"), p("carol"), p("dave"), p("erin"));
    for x in [&alice, &bob, &carol, &dave, &erin] {
        register(&c, &node.url, x).await;
    }
    // Pair: alice -> bob twice, then refused; alice -> carol still fine.
    for i in 0..2 {
        let m = signed(&alice, &bob, &format!("a{i}"), &node.chain_id);
        assert_eq!(post_msg_ra(&c, &node.url, &m).await.0, 201);
    }
    let r = post_msg_ra(&c, &node.url, &signed(&alice, &bob, "a2", &node.chain_id)).await;
    assert_refused(&r, 429, "pair_rate_limited");
    let m = signed(&alice, &carol, "to carol", &node.chain_id);
    assert_eq!(post_msg_ra(&c, &node.url, &m).await.0, 201);
    // Recipient: bob has had 2; carol and dave bring it to 4; erin is refused.
    for (i, s) in [&carol, &dave].iter().enumerate() {
        let m = signed(s, &bob, &format!("r{i}"), &node.chain_id);
        assert_eq!(post_msg_ra(&c, &node.url, &m).await.0, 201);
    }
    let r = post_msg_ra(&c, &node.url, &signed(&erin, &bob, "r", &node.chain_id)).await;
    assert_refused(&r, 429, "recipient_rate_limited");
    assert_eq!(health_count(&c, &node.url).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_quota_refuses_with_its_own_code() {
    let (_d, node, c) = setup("inbox_quota = 3").await;
    let (alice, bob, carol) = (p("alice"), p("bob"), p("carol"));
    for x in [&alice, &bob, &carol] {
        register(&c, &node.url, x).await;
    }
    for i in 0..3 {
        let m = signed(&alice, &carol, &format!("q{i}"), &node.chain_id);
        assert_eq!(post_msg_ra(&c, &node.url, &m).await.0, 201);
    }
    let r = post_msg_ra(&c, &node.url, &signed(&bob, &carol, "q3", &node.chain_id)).await;
    assert_refused(&r, 429, "inbox_full");
    // Other inboxes are not affected.
    let r = post_msg_ra(&c, &node.url, &signed(&carol, &bob, "hi", &node.chain_id)).await;
    assert_eq!(r.0, 201, "{}", r.1);
    assert_eq!(health_count(&c, &node.url).await, 4);
    assert_eq!(inbox_ids(&c, &node, &carol).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_request_bucket_batches_and_penalty_box() {
    let (_d, node, c) = setup(
        "limit_loopback = true\nip_requests_burst = 6\nip_requests_per_min = 1\nip_failures_burst = 2\nip_failures_per_min = 1",
    )
    .await;
    let (alice, bob, mallory) = (p("alice"), p("bob"), p("mallory"));
    for x in [&alice, &bob, &mallory] {
        register(&c, &node.url, x).await;
    }
    // 127.0.0.2: a batch of 4 costs 4 requests; then one more is fine, two are not.
    let c2 = http_from("127.0.0.2");
    let batch: Vec<_> = (0..4)
        .map(|i| signed(&alice, &bob, &format!("b{i}"), &node.chain_id).to_json_value(false))
        .collect();
    let r = post_raw_ra(&c2, &node.url, serde_json::to_vec(&json!(batch)).unwrap()).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert!(r.1["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["http_status"] == 201));
    let r = post_msg_ra(&c2, &node.url, &signed(&alice, &bob, "5th", &node.chain_id)).await;
    assert_eq!(r.0, 201, "{}", r.1);
    let batch: Vec<_> = (0..2)
        .map(|i| signed(&alice, &bob, &format!("c{i}"), &node.chain_id).to_json_value(false))
        .collect();
    let r = post_raw_ra(&c2, &node.url, serde_json::to_vec(&json!(batch)).unwrap()).await;
    assert_refused(&r, 429, "ip_rate_limited");
    let r = post_msg_ra(&c2, &node.url, &signed(&alice, &bob, "7th", &node.chain_id)).await;
    assert_refused(&r, 429, "ip_rate_limited");
    assert_eq!(health_count(&c, &node.url).await, 5);

    // 127.0.0.3: two bad signatures, then even a valid message is refused
    // before it is read.
    let c3 = http_from("127.0.0.3");
    let ab = (&alice, &bob, &node.chain_id);
    forgeries_penalize(&c3, &c3, &node.url, ab, ["x0", "x1"], "good").await;
    // Unregistered senders count as failures too (127.0.0.4).
    let c4 = http_from("127.0.0.4");
    let ghost = p("ghost");
    for _ in 0..2 {
        let r = post_msg_ra(&c4, &node.url, &signed(&ghost, &bob, "boo", &node.chain_id)).await;
        assert_refused(&r, 403, "sender_not_registered");
    }
    assert_penalized(
        &c4,
        &node.url,
        &signed(&mallory, &bob, "ok", &node.chain_id),
    )
    .await;
    // Oversize bodies count as failures too, one per envelope limit's
    // worth of bytes read (127.0.0.6): a single 200 KB body, over two
    // limits, uses up the burst of 2.
    let c6 = http_from("127.0.0.6");
    let mut v = signed(&alice, &bob, "big", &node.chain_id).to_json_value(false);
    v["pad"] = json!("A".repeat(200_000));
    let r = post_raw_ra(&c6, &node.url, serde_json::to_vec(&v).unwrap()).await;
    assert_refused(&r, 413, "too_large");
    assert_penalized(
        &c6,
        &node.url,
        &signed(&mallory, &bob, "ok6", &node.chain_id),
    )
    .await;
    // A clean address is unaffected.
    let c5 = http_from("127.0.0.5");
    let r = post_msg_ra(
        &c5,
        &node.url,
        &signed(&mallory, &bob, "ok", &node.chain_id),
    )
    .await;
    assert_eq!(r.0, 201, "{}", r.1);
    assert_eq!(health_count(&c, &node.url).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_maps_stay_bounded_under_many_ips_and_senders() {
    let (_d, node, c) = setup("limit_loopback = true\nrate_limit_entries = 64").await;
    let bob = p("bob");
    register(&c, &node.url, &bob).await;
    // 400 distinct client IPs, one (refused: unregistered sender) request each.
    let ghost = p("ghost");
    let body = serde_json::to_vec(&signed(&ghost, &bob, "x", &node.chain_id).to_json_value(false))
        .unwrap();
    let mut tasks = vec![];
    for chunk in 0..8u32 {
        let (url, body) = (node.url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..50u32 {
                let n = chunk * 50 + k;
                let ip = format!("127.0.{}.{}", 1 + n / 200, 1 + n % 200);
                let r = post_raw_ra(&http_from(&ip), &url, body.clone()).await;
                assert!(r.0 == 403, "{ip}: {:?}", r);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // 120 distinct owned senders, one accepted message each.
    let senders: Vec<Party> = (0..120).map(|i| p(&format!("s{i}"))).collect();
    for s in &senders {
        register(&c, &node.url, s).await;
    }
    for s in &senders {
        let r = post_msg_ra(&c, &node.url, &signed(s, &bob, "hi", &node.chain_id)).await;
        assert_eq!(r.0, 201, "{}", r.1);
    }
    let i = info(&c, &node.url).await;
    let b = &i["stats"]["spam"]["buckets"];
    for name in ["ip_requests", "ip_failures", "sender", "pair"] {
        let (n, cap) = (
            b[name]["entries"].as_u64().unwrap(),
            b[name]["cap"].as_u64().unwrap(),
        );
        assert!(cap <= 64 + 16, "{name}: cap {cap}");
        assert!(n <= cap, "{name}: {n} entries > cap {cap}: {b}");
    }
    assert!(b["ip_requests"]["evictions"].as_u64().unwrap() > 0, "{b}");
    assert!(b["sender"]["evictions"].as_u64().unwrap() > 0, "{b}");
    assert_eq!(health_count(&c, &node.url).await, 120);
}

async fn wait_inflight_ips(c: &reqwest::Client, url: &str, n: u64) {
    poll(10, "slow requests to hold their slots", || async {
        let i = info(c, url).await;
        (i["stats"]["spam"]["inflight_ips"].as_u64() == Some(n)).then_some(())
    })
    .await
}

/// Opens a submission whose body never completes: it holds an in-flight slot.
async fn hold_slot(url: &str, from_ip: &str) -> tokio::net::TcpStream {
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from_ip}:0").parse().unwrap()).unwrap();
    let mut s = sock.connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(
        format!(
            "POST /v1/messages HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"version\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.flush().await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limits_per_ip_429_and_node_wide_503() {
    let (_d, node, c) =
        setup("limit_loopback = true\nmax_inflight_per_ip = 1\nmax_inflight_submissions = 2").await;
    let (alice, bob) = (p("alice"), p("bob"));
    register(&c, &node.url, &alice).await;
    register(&c, &node.url, &bob).await;
    let m = signed(&alice, &bob, "x", &node.chain_id);
    // One slow request from 127.0.0.2 holds its IP's only slot.
    let _h1 = hold_slot(&node.url, "127.0.0.2").await;
    wait_inflight_ips(&c, &node.url, 1).await;
    let c2 = http_from("127.0.0.2");
    let r = post_msg_ra(&c2, &node.url, &m).await;
    assert_refused(&r, 429, "ip_concurrency_limited");
    // A second slow one from 127.0.0.3 fills the node: everyone gets 503.
    let _h2 = hold_slot(&node.url, "127.0.0.3").await;
    wait_inflight_ips(&c, &node.url, 2).await;
    let c4 = http_from("127.0.0.4");
    let r = post_msg_ra(&c4, &node.url, &m).await;
    assert_refused(&r, 503, "saturated");
    assert_eq!(health_count(&c, &node.url).await, 0);
    // Slots come back when the slow clients go away.
    drop((_h1, _h2));
    let r = poll(10, "slots to be released", || async {
        let r = post_msg_ra(&c4, &node.url, &m).await;
        (r.0 == 201).then_some(r)
    })
    .await;
    assert_eq!(r.1["status"], "accepted");
}

/// While the node is busy (here always: `busy_queued_checks = 0`) each IP
/// may have one submission in flight; other IPs still get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_node_takes_one_submission_at_a_time_per_ip() {
    let (_d, node, c) = setup(
        "limit_loopback = true\nmax_inflight_per_ip = 8\nbusy_queued_checks = 0\nbusy_inflight_per_ip = 1\ntarpit_ms = 0",
    )
    .await;
    let (alice, bob) = (p("alice"), p("bob"));
    register(&c, &node.url, &alice).await;
    register(&c, &node.url, &bob).await;
    let info = info(&c, &node.url).await;
    assert_eq!(info["limits"]["spam"]["busy_inflight_per_ip"], 1);
    assert_eq!(info["limits"]["spam"]["busy_queued_checks"], 0);
    let m = signed(&alice, &bob, "x", &node.chain_id);
    let _held = hold_slot(&node.url, "127.0.0.2").await;
    wait_inflight_ips(&c, &node.url, 1).await;
    let r = post_msg_ra(&http_from("127.0.0.2"), &node.url, &m).await;
    assert_refused(&r, 429, "ip_concurrency_limited");
    assert!(
        r.1["error"]["message"].as_str().unwrap().contains("busy"),
        "{}",
        r.1
    );
    assert_eq!(health_count(&c, &node.url).await, 0);
    // Another IP with nothing in flight is admitted.
    let r = post_msg_ra(&http_from("127.0.0.3"), &node.url, &m).await;
    assert_eq!(r.0, 201, "{}", r.1);
    // And so is the first IP once its slow request is gone.
    drop(_held);
    let m2 = signed(&alice, &bob, "y", &node.chain_id);
    let c2 = http_from("127.0.0.2");
    poll(10, "the slow request to end", || async {
        (post_msg_ra(&c2, &node.url, &m2).await.0 == 201).then_some(())
    })
    .await;
}

/// Refusals an IP earned are answered after the tarpit's delay, at most
/// `tarpit_per_ip` at a time per IP and `tarpit_max` in all; the rest at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarpit_holds_refusals_within_its_bounds() {
    let (_d, node, c) = setup(
        "limit_loopback = true\nip_requests_burst = 1\nip_requests_per_min = 1\ntarpit_ms = 3000\ntarpit_per_ip = 2\ntarpit_max = 3",
    )
    .await;
    let (alice, bob) = (p("alice"), p("bob"));
    register(&c, &node.url, &alice).await;
    register(&c, &node.url, &bob).await;
    let (c2, c3) = (http_from("127.0.0.2"), http_from("127.0.0.3"));
    let m = |tag: &str| signed(&alice, &bob, tag, &node.chain_id);
    for (cl, tag) in [(&c2, "two"), (&c3, "three")] {
        assert_eq!(post_msg_ra(cl, &node.url, &m(tag)).await.0, 201);
    }
    // Over its rate: the answer comes after the delay (Retry-After is 60 s).
    let t0 = std::time::Instant::now();
    let r = post_msg_ra(&c2, &node.url, &m("late")).await;
    assert_refused(&r, 429, "ip_rate_limited");
    assert!(
        t0.elapsed() >= std::time::Duration::from_millis(2990),
        "{:?}",
        t0.elapsed()
    );
    let tarpit = |i: &serde_json::Value| {
        let t = &i["stats"]["spam"]["tarpit"];
        (t["delayed"].as_u64().unwrap(), t["full"].as_u64().unwrap())
    };
    assert_eq!(tarpit(&info(&c, &node.url).await), (1, 0));
    // Six at once, four from .2 and two from .3: three are held (two per IP
    // at most), three are answered at once; all are refused.
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..6 {
        let cl = if i < 4 { c2.clone() } else { c3.clone() };
        let (url, m) = (node.url.clone(), m(&format!("burst {i}")));
        sends.spawn(async move { post_msg_ra(&cl, &url, &m).await });
    }
    while let Some(r) = sends.join_next().await {
        assert_refused(&r.unwrap(), 429, "ip_rate_limited");
    }
    let i = info(&c, &node.url).await;
    assert_eq!(tarpit(&i), (4, 3), "{}", i["stats"]["spam"]["tarpit"]);
    assert_eq!(i["stats"]["spam"]["tarpit"]["held"], 0);
    assert_eq!(i["limits"]["spam"]["tarpit_ms"], 3000);
    assert_eq!(health_count(&c, &node.url).await, 2);
}

/// A client at `local_ip` whose requests carry `X-Forwarded-For: xff`.
fn http_via(local_ip: &str, xff: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-forwarded-for", xff.parse().unwrap());
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .local_address(Some(local_ip.parse().unwrap()))
        .default_headers(h)
        .build()
        .unwrap()
}

/// A message from `from` carrying the signature of another message.
fn forged_body(from: &Party, to: &Party, memo: &str, chain_id: &[u8; 32]) -> Vec<u8> {
    let mut v = signed(from, to, memo, chain_id).to_json_value(false);
    let other = signed(from, to, "other", chain_id);
    v["signature"] = json!(other.signature().to_string());
    serde_json::to_vec(&v).unwrap()
}

/// Two messages from `from` with forged signatures (memos `forged`), sent
/// by `forger`, are refused as bad signatures; then even a valid message
/// (memo `good`) from `then` is refused before it is read: that address
/// spent its penalty budget.
async fn forgeries_penalize(
    forger: &reqwest::Client,
    then: &reqwest::Client,
    url: &str,
    (from, to, chain_id): (&Party, &Party, &[u8; 32]),
    forged: [&str; 2],
    good: &str,
) {
    for memo in forged {
        let body = forged_body(from, to, memo, chain_id);
        assert_refused(
            &post_raw_ra(forger, url, body).await,
            401,
            "signature_mismatch",
        );
    }
    assert_penalized(then, url, &signed(from, to, good, chain_id)).await;
}

/// Behind a trusted proxy (127.0.0.7) the per-IP limits count the client it
/// names in X-Forwarded-For; from any other peer the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_forwarded_clients_are_limited_apart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("node.toml");
    std::fs::write(
        &cfg,
        "trusted_proxies = [\"127.0.0.7\"]\n[limits]\nlimit_loopback = true\nip_failures_burst = 2\nip_failures_per_min = 1\n",
    )
    .unwrap();
    let node = Node::start(
        &dir.path().join("node"),
        &["--config", cfg.to_str().unwrap()],
    );
    let c = http();
    let (alice, bob) = (p("alice"), p("bob"));
    for x in [&alice, &bob] {
        register(&c, &node.url, x).await;
    }
    let ab = (&alice, &bob, &node.chain_id);
    // Two forgeries through the proxy from 203.0.113.5 put that client, not
    // the proxy, in the penalty box.
    let via5 = http_via("127.0.0.7", "198.51.100.1, 203.0.113.5");
    forgeries_penalize(&via5, &via5, &node.url, ab, ["f0", "f1"], "p5").await;
    // Accepted: from another forwarded client, and from an untrusted peer
    // whose header names the penalized one (it cannot borrow an identity).
    for (via, tag) in [
        (http_via("127.0.0.7", "203.0.113.6"), "p6"),
        (http_via("127.0.0.8", "203.0.113.5"), "s1"),
    ] {
        let r = post_msg_ra(&via, &node.url, &signed(&alice, &bob, tag, &node.chain_id)).await;
        assert_eq!(r.0, 201, "{}", r.1);
    }
    // Nor shed one: its forgeries count against its own address.
    let shed = http_via("127.0.0.8", "203.0.113.9");
    let own = http_from("127.0.0.8");
    forgeries_penalize(&shed, &own, &node.url, ab, ["g0", "g1"], "s2").await;
    assert_eq!(health_count(&c, &node.url).await, 2);
}

/// Starts `fio-l2 node --dev` on a fresh data dir with `extra` arguments,
/// expecting it to refuse to start; its stderr. A node that starts anyway
/// fails the test (after 30 s) instead of hanging it.
fn refused_at_startup(extra: &[&std::ffi::OsStr]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["node", "--dev", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("node"))
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the node started with {extra:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!dir.path().join("node").exists(), "nothing created");
    err
}

#[test]
fn a_bad_trusted_proxy_is_refused_at_startup() {
    let err = refused_at_startup(&["--trusted-proxy".as_ref(), "10.0.0.0/33".as_ref()]);
    assert!(
        err.contains("trusted proxy \"10.0.0.0/33\": prefix must be 0-32"),
        "{err}"
    );
}

#[test]
fn limits_the_node_cannot_honour_are_refused_at_startup() {
    for (limits, want) in [
        ("tarpit_ms = 60001", "tarpit_ms must be at most 60000"),
        (
            "write_queue = 50\nmax_batch = 100",
            "write_queue must be at least max_batch",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("node.toml");
        std::fs::write(&cfg, format!("[limits]\n{limits}\n")).unwrap();
        let err = refused_at_startup(&["--config".as_ref(), cfg.as_os_str()]);
        assert!(err.contains(want), "{limits}: {err}");
    }
}
