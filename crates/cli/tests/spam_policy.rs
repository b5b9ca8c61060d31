//! Recipient policies and proof of work against a real `fio-l2 node --dev`
//! process: the signed document (valid, forged, by a non-owner, stale, from
//! the future, kept across a restart) and its enforcement (block list by
//! address and by domain, allow list, contacts only, minimum proof of work,
//! largest message); the node-wide minimum proof of work; `fio-l2 send`
//! meeting it (docs/spam.md).

mod common;

use common::*;
use fio_l2_protocol::cipher::{encrypt_content, random_iv, shared_secret};
use serde_json::{json, Value};

fn p(name: &str) -> Party {
    Party::new(name, &format!("{name}@dev"))
}

async fn setup(extra: &[&str]) -> (tempfile::TempDir, Node, reqwest::Client) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"), extra);
    (dir, node, http())
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

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_document_accept_refuse_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut node = Node::start(&data, &[]);
    let c = http();
    let (bob, mallory) = (p("bob"), p("mallory"));
    register(&c, &node.url, &bob).await;
    register(&c, &node.url, &mallory).await;
    let t = now() - 10;
    assert_eq!(get_policy(&c, &node.url, "bob@dev").await.0, 404);

    let doc = policy_doc(
        &bob,
        &bob.key,
        &node.chain_id,
        t,
        &["alice@dev"],
        &["@spam"],
        false,
        8,
        0,
    );
    let (st, v) = put_policy(&c, &node.url, "bob@dev", &doc).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["status"], "accepted");
    let (st, got) = get_policy(&c, &node.url, "bob@dev").await;
    assert_eq!((st, &got), (200, &doc));
    // The same document again: 200 existing.
    let (st, v) = put_policy(&c, &node.url, "bob@dev", &doc).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("existing")), "{v}");

    // Forged: bob's owner_key, signed by mallory.
    let mut forged = policy_doc(
        &bob,
        &mallory.key,
        &node.chain_id,
        t + 5,
        &[],
        &[],
        false,
        0,
        0,
    );
    forged["owner_key"] = json!(bob.pubkey());
    let (st, v) = put_policy(&c, &node.url, "bob@dev", &forged).await;
    assert_eq!((st, code(&v)), (401, "policy_bad_signature"), "{v}");
    // Tampered after signing.
    let mut tampered = policy_doc(&bob, &bob.key, &node.chain_id, t + 5, &[], &[], false, 0, 0);
    tampered["block"] = json!(["alice@dev"]);
    let (st, v) = put_policy(&c, &node.url, "bob@dev", &tampered).await;
    assert_eq!((st, code(&v)), (401, "policy_bad_signature"), "{v}");
    // By a non-owner: mallory signs with her own key for bob's address.
    let other = policy_doc(
        &bob,
        &mallory.key,
        &node.chain_id,
        t + 5,
        &[],
        &[],
        false,
        0,
        0,
    );
    let (st, v) = put_policy(&c, &node.url, "bob@dev", &other).await;
    assert_eq!((st, code(&v)), (403, "policy_not_owner"), "{v}");
    // Stale: older, or the same updated with other content.
    for u in [t - 1, t] {
        let old = policy_doc(&bob, &bob.key, &node.chain_id, u, &[], &[], false, 0, 0);
        let (st, v) = put_policy(&c, &node.url, "bob@dev", &old).await;
        assert_eq!((st, code(&v)), (409, "policy_stale"), "{v}");
    }
    // From the future.
    let fut = policy_doc(
        &bob,
        &bob.key,
        &node.chain_id,
        now() + 3600,
        &[],
        &[],
        false,
        0,
        0,
    );
    let (st, v) = put_policy(&c, &node.url, "bob@dev", &fut).await;
    assert_eq!((st, code(&v)), (422, "policy_from_future"), "{v}");
    // Malformed: unknown field, bad entry, path mismatch, pow too high.
    let mut extra = doc.clone();
    extra["note"] = json!("x");
    assert_eq!(
        code(&put_policy(&c, &node.url, "bob@dev", &extra).await.1),
        "bad_policy"
    );
    let bad_entry = policy_doc(
        &bob,
        &bob.key,
        &node.chain_id,
        t + 6,
        &["Alice@Dev"],
        &[],
        false,
        0,
        0,
    );
    assert_eq!(
        code(&put_policy(&c, &node.url, "bob@dev", &bad_entry).await.1),
        "bad_policy"
    );
    assert_eq!(
        code(&put_policy(&c, &node.url, "mallory@dev", &doc).await.1),
        "bad_policy"
    );
    let pow = policy_doc(
        &bob,
        &bob.key,
        &node.chain_id,
        t + 6,
        &[],
        &[],
        false,
        33,
        0,
    );
    assert_eq!(
        code(&put_policy(&c, &node.url, "bob@dev", &pow).await.1),
        "bad_policy"
    );
    // Nothing refused replaced the stored document.
    assert_eq!(get_policy(&c, &node.url, "bob@dev").await.1, doc);

    // A newer one wins, and survives a restart.
    let newer = policy_doc(
        &bob,
        &bob.key,
        &node.chain_id,
        t + 1,
        &[],
        &["mallory@dev"],
        false,
        0,
        0,
    );
    assert_eq!(put_policy(&c, &node.url, "bob@dev", &newer).await.0, 201);
    node.kill9();
    let node = Node::start(&data, &[]);
    assert_eq!(get_policy(&c, &node.url, "bob@dev").await.1, newer);
    let r = post_msg_ra(&c, &node.url, &signed(&mallory, &bob, "hi", &node.chain_id)).await;
    assert_refused(&r, 403, "blocked_by_recipient");
    assert_eq!(info(&c, &node.url).await["stats"]["spam"]["policies"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_enforcement_block_allow_contacts_pow_size() {
    let (_d, node, c) = setup(&[]).await;
    let (alice, bob, carol, mallory) = (p("alice"), p("bob"), p("carol"), p("mallory"));
    let spammer = Party::new("spammer", "x@spam");
    let friend = Party::new("friend", "friend@spam");
    for x in [&alice, &bob, &carol, &mallory, &spammer, &friend] {
        register(&c, &node.url, x).await;
    }
    let cid = node.chain_id;
    let t = now() - 100;
    // Block mallory and the domain spam (but allow friend@spam); alice is a
    // contact; others need 8 bits of work; at most 200 bytes of content.
    let doc = policy_doc(
        &bob,
        &bob.key,
        &cid,
        t,
        &["alice@dev", "friend@spam"],
        &["mallory@dev", "@spam"],
        false,
        8,
        200,
    );
    assert_eq!(put_policy(&c, &node.url, "bob@dev", &doc).await.0, 201);

    let r = post_msg_ra(&c, &node.url, &signed_pow(&mallory, &bob, "m", &cid, 8)).await;
    assert_refused(&r, 403, "blocked_by_recipient");
    let r = post_msg_ra(&c, &node.url, &signed_pow(&spammer, &bob, "s", &cid, 8)).await;
    assert_refused(&r, 403, "blocked_by_recipient");
    // Allowed: no proof of work needed (address entry beats the domain block).
    let r = post_msg_ra(&c, &node.url, &signed(&friend, &bob, "f", &cid)).await;
    assert_eq!(r.0, 201, "{}", r.1);
    let mut m = message(&alice, &bob, "a");
    while m.pow_bits() != 0 {
        m.nonce += 1;
    }
    let r = post_msg_ra(&c, &node.url, &m.sign(&alice.key, &cid).unwrap()).await;
    assert_eq!(r.0, 201, "{}", r.1);
    // Neutral carol: needs 8 bits.
    let mut m = message(&carol, &bob, "c");
    while m.pow_bits() >= 8 {
        m.nonce += 1;
    }
    let r = post_msg_ra(&c, &node.url, &m.sign(&carol.key, &cid).unwrap()).await;
    assert_refused(&r, 403, "insufficient_pow");
    assert_eq!(r.1["error"]["field"], "nonce");
    let r = post_msg_ra(&c, &node.url, &signed_pow(&carol, &bob, "c", &cid, 8)).await;
    assert_eq!(r.0, 201, "{}", r.1);
    // Largest message: a 400-byte cipher text is refused even from a contact.
    let mut big = message(&alice, &bob, "big");
    let secret = shared_secret(&alice.key, &bob.key.public_key());
    big.content = encrypt_content(
        &secret,
        "new_funds_content",
        &funds(&"x".repeat(300)),
        &random_iv(),
    )
    .unwrap();
    let r = post_msg_ra(&c, &node.url, &big.sign(&alice.key, &cid).unwrap()).await;
    assert_refused(&r, 413, "too_large_for_recipient");
    assert_eq!(health_count(&c, &node.url).await, 3);

    // Contacts only: carol (not listed) is refused, alice is not.
    let doc = policy_doc(&bob, &bob.key, &cid, t + 1, &["alice@dev"], &[], true, 0, 0);
    assert_eq!(put_policy(&c, &node.url, "bob@dev", &doc).await.0, 201);
    let r = post_msg_ra(&c, &node.url, &signed_pow(&carol, &bob, "c2", &cid, 8)).await;
    assert_refused(&r, 403, "recipient_contacts_only");
    let r = post_msg_ra(&c, &node.url, &signed(&alice, &bob, "a2", &cid)).await;
    assert_eq!(r.0, 201, "{}", r.1);
    // Allow by domain.
    let doc = policy_doc(&bob, &bob.key, &cid, t + 2, &["@spam"], &[], true, 0, 0);
    assert_eq!(put_policy(&c, &node.url, "bob@dev", &doc).await.0, 201);
    let r = post_msg_ra(&c, &node.url, &signed(&spammer, &bob, "s2", &cid)).await;
    assert_eq!(r.0, 201, "{}", r.1);
    let r = post_msg_ra(&c, &node.url, &signed(&alice, &bob, "a3", &cid)).await;
    assert_refused(&r, 403, "recipient_contacts_only");
    // Other recipients are not affected by bob's policy.
    let r = post_msg_ra(&c, &node.url, &signed(&mallory, &carol, "m", &cid)).await;
    assert_eq!(r.0, 201, "{}", r.1);
    assert_eq!(health_count(&c, &node.url).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_wide_min_pow_and_cli_send_meets_it() {
    let (dir, node, c) = setup(&["--min-pow-bits", "10"]).await;
    let (alice, bob, carol) = (p("alice"), p("bob"), p("carol"));
    for x in [&alice, &bob, &carol] {
        register(&c, &node.url, x).await;
    }
    let cid = node.chain_id;
    assert_eq!(info(&c, &node.url).await["policy"]["min_pow_bits"], 10);
    let mut m = message(&alice, &bob, "a");
    while m.pow_bits() >= 10 {
        m.nonce += 1;
    }
    let r = post_msg_ra(&c, &node.url, &m.sign(&alice.key, &cid).unwrap()).await;
    assert_refused(&r, 403, "insufficient_pow");
    let r = post_msg_ra(&c, &node.url, &signed_pow(&alice, &bob, "a", &cid, 10)).await;
    assert_eq!(r.0, 201, "{}", r.1);
    // A sender bob allows needs none.
    let doc = policy_doc(
        &bob,
        &bob.key,
        &cid,
        now() - 5,
        &["carol@dev"],
        &[],
        false,
        0,
        0,
    );
    assert_eq!(put_policy(&c, &node.url, "bob@dev", &doc).await.0, 201);
    let mut m = message(&carol, &bob, "c");
    while m.pow_bits() != 0 {
        m.nonce += 1;
    }
    let r = post_msg_ra(&c, &node.url, &m.sign(&carol.key, &cid).unwrap()).await;
    assert_eq!(r.0, 201, "{}", r.1);

    // The CLI finds a nonce for the node's minimum (alice -> carol: no policy),
    // and for a recipient policy asking more (carol's: 12 bits).
    let key_file = dir.path().join("alice.key");
    std::fs::write(&key_file, alice.key.to_wif()).unwrap();
    let send = |to: &str| {
        vec![
            "send".to_string(),
            "--node".into(),
            node.url.clone(),
            "--private-key-file".into(),
            key_file.display().to_string(),
            "--from".into(),
            "alice@dev".into(),
            "--to".into(),
            to.to_string(),
            funds("pow").to_string(),
        ]
    };
    let (ok, out, err) = run_cli_async(send("carol@dev"), vec![]).await;
    assert!(ok, "{out} {err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["http_status"], 201, "{v}");
    assert!(err.contains("proof of work: 10 bits"), "{err}");
    let doc = policy_doc(&carol, &carol.key, &cid, now() - 5, &[], &[], false, 12, 0);
    assert_eq!(put_policy(&c, &node.url, "carol@dev", &doc).await.0, 201);
    let (ok, out, err) = run_cli_async(send("carol@dev"), vec![]).await;
    assert!(ok, "{out} {err}");
    assert!(err.contains("proof of work: 12 bits"), "{err}");
    let ids = inbox_all(&c, &node, &carol).await;
    assert_eq!(ids.len(), 2);
    for e in ids {
        let id = e["envelope"]["id"].as_str().unwrap();
        assert!(id.starts_with("00"), "{id}");
    }
}
