//! Bad inputs to a real node: every named case asserts the exact HTTP status
//! and `error.code`, and that nothing was stored or deleted (the `/health`
//! message count and the recipient's inbox are unchanged after each case).

mod common;

use base64::Engine;
use common::*;
use fio_l2_node::auth::{make_proof_headers, RequestParts, H_KEY, H_NONCE, H_TIME};
use fio_l2_protocol::{PrivateKey, Signature};
use serde_json::{json, Value};

/// One HTTP request of a case.
#[derive(Clone)]
struct Req {
    method: &'static str,
    pq: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

struct Case {
    name: &'static str,
    req: Req,
    /// Send the same request once first and expect 200 (for replays).
    send_first: bool,
    status: u16,
    code: &'static str,
}

fn post_body(body: Vec<u8>) -> Req {
    Req {
        method: "POST",
        pq: "/v1/messages".into(),
        headers: vec![],
        body: Some(body),
    }
}

fn json_body(v: &Value) -> Req {
    post_body(serde_json::to_vec(v).unwrap())
}

fn owned(h: Vec<(&'static str, String)>) -> Vec<(String, String)> {
    h.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn set_header(h: &mut [(String, String)], name: &str, value: &str) {
    let slot = h
        .iter_mut()
        .find(|(k, _)| k == name)
        .expect("header present");
    slot.1 = value.to_string();
}

async fn send(c: &reqwest::Client, url: &str, r: &Req) -> (u16, Value) {
    let full = format!("{url}{}", r.pq);
    let mut rb = match r.method {
        "GET" => c.get(full),
        _ => c.post(full).header("content-type", "application/json"),
    };
    for (k, v) in &r.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    if let Some(b) = &r.body {
        rb = rb.body(b.clone());
    }
    let resp = rb.send().await.unwrap();
    let st = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        st,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// n - s over secp256k1's group order, big-endian 32 bytes.
fn negate_s(s: &[u8]) -> [u8; 32] {
    const N: [u8; 32] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0xFE, 0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36,
        0x41, 0x41,
    ];
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0);
    out
}

/// The same signature with S replaced by n - S and the recovery parity
/// flipped: still a valid ECDSA signature of the same key, but high-S.
fn high_s(sig: &str) -> String {
    let b = Signature::parse(sig).unwrap().to_bytes();
    let mut out = b;
    out[33..].copy_from_slice(&negate_s(&b[33..]));
    let recid = (b[0] - 27) & 3;
    out[0] = 27 + 4 + (recid ^ 1);
    Signature::from_bytes(out).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_with_exact_codes_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"), &["--max-content-bytes", "1024"]);
    let other = Node::start(&dir.path().join("other"), &[]);
    assert_ne!(node.node_id, other.node_id);
    let c = http();
    let alice = Party::new("alice", "alice@dev");
    let bob = Party::new("bob", "bob@dev");
    let carol = Party::new("carol", "carol@dev");
    let dave = Party::new("dave", "dave@olddom");
    let eve = Party::new("eve", "eve@burnt");
    for p in [&alice, &bob, &carol, &dave, &eve] {
        register(&c, &node.url, p).await;
    }
    // olddom: past its 30-day grace period; burnt: past 90 days, burned by the chain.
    for (domain, days) in [("olddom", 40), ("burnt", 400)] {
        let r = c
            .post(format!("{}/v1/dev/expire_domain", node.url))
            .json(&json!({"domain": domain, "days_ago": days}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "expire_domain: {}", r.status());
    }

    // A baseline: two messages in bob's inbox.
    let kept: Vec<String> = {
        let mut ids = vec![];
        for i in 0..2 {
            let m = signed(&alice, &bob, &format!("kept {i}"), &node.chain_id);
            let (st, v) = post_msg(&c, &node.url, &m).await;
            assert_eq!(st, 201, "{v}");
            ids.push(m.id_hex());
        }
        ids
    };
    let base_count = health_count(&c, &node.url).await;
    assert_eq!(base_count, 2);
    let base_inbox = inbox_ids(&c, &node, &bob).await;
    assert_eq!(base_inbox, kept);

    let chain = node.chain_id;
    let good = || signed(&alice, &bob, "bad input case", &chain).to_json_value(false);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = good();
        f(&mut v);
        json_body(&v)
    };
    let t = now32();
    // Sign `m` with any key (not necessarily its sender_key).
    let sign_as = |key: &PrivateKey, m: fio_l2_protocol::Message| {
        let packed = m.pack();
        let digest = fio_l2_protocol::envelope::digest_of(&chain, &packed);
        let sig = key.sign_digest(&digest);
        let mut v = m.to_json_value();
        v["signature"] = json!(sig.to_string());
        json_body(&v)
    };
    let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);

    // Owner proofs for bob's inbox.
    let inbox_pq = "/v1/inbox/bob@dev?order=oldest".to_string();
    let get = |pq: &str, headers: Vec<(String, String)>| Req {
        method: "GET",
        pq: pq.to_string(),
        headers,
        body: None,
    };
    let bob_proof = |pq: &str| {
        owned(
            proof(&node, &bob.key, "bob@dev", "GET", pq, b"")
                .into_iter()
                .collect(),
        )
    };
    let proof_at = |key: &PrivateKey, node_id: &str, address: &str, pq: &str, time: u64| {
        owned(make_proof_headers(
            key,
            &chain,
            node_id,
            address,
            time,
            &RequestParts {
                method: "GET",
                path_and_query: pq,
                body: b"",
            },
        ))
    };
    let ack_pq = "/v1/inbox/bob@dev/ack".to_string();
    let ack_req = |body: &[u8], proof_body: &[u8]| Req {
        method: "POST",
        pq: ack_pq.clone(),
        headers: owned(proof(
            &node, &bob.key, "bob@dev", "POST", &ack_pq, proof_body,
        )),
        body: Some(body.to_vec()),
    };
    let ack_ids = |ids: Value| serde_json::to_vec(&json!({ "ids": ids })).unwrap();

    let case = |name, req, status, code| Case {
        name,
        req,
        send_first: false,
        status,
        code,
    };
    let mut cases: Vec<Case> = vec![
        // --- Shape (check 1) ---
        case(
            "malformed_json",
            post_body(br#"{"version":1,"content_type":"#.to_vec()),
            400,
            "bad_json",
        ),
        case(
            "not_an_object_number",
            post_body(b"42".to_vec()),
            400,
            "not_object",
        ),
        case(
            "not_an_object_string",
            post_body(br#""hello""#.to_vec()),
            400,
            "not_object",
        ),
        case(
            "missing_field_nonce",
            with(&|v| {
                v.as_object_mut().unwrap().remove("nonce");
            }),
            400,
            "missing_field",
        ),
        case(
            "missing_signature",
            with(&|v| {
                v.as_object_mut().unwrap().remove("signature");
            }),
            400,
            "missing_field",
        ),
        case(
            "extra_field",
            with(&|v| v["note"] = json!("unsigned")),
            400,
            "unknown_field",
        ),
        case(
            "duplicate_field",
            {
                let text = serde_json::to_string(&good()).unwrap();
                post_body(format!("{{\"nonce\":0,{}", &text[1..]).into_bytes())
            },
            400,
            "duplicate_field",
        ),
        case(
            "string_version",
            with(&|v| v["version"] = json!("1")),
            400,
            "wrong_type",
        ),
        case(
            "float_created",
            with(&|v| v["created"] = json!(f64::from(now32()) + 0.5)),
            400,
            "wrong_type",
        ),
        case(
            "string_nonce",
            with(&|v| v["nonce"] = json!("0")),
            400,
            "wrong_type",
        ),
        case(
            "number_recipient",
            with(&|v| v["recipient"] = json!(42)),
            400,
            "wrong_type",
        ),
        case(
            "negative_nonce",
            with(&|v| v["nonce"] = json!(-1)),
            400,
            "out_of_range",
        ),
        case(
            "nonce_over_2_53_minus_1",
            with(&|v| v["nonce"] = json!(1u64 << 53)),
            400,
            "out_of_range",
        ),
        case(
            "created_over_u32",
            with(&|v| v["created"] = json!(1u64 << 32)),
            400,
            "out_of_range",
        ),
        case(
            "version_2",
            with(&|v| v["version"] = json!(2)),
            400,
            "bad_version",
        ),
        case(
            "version_256",
            with(&|v| v["version"] = json!(256)),
            400,
            "bad_version",
        ),
        case(
            "empty_content_type",
            with(&|v| v["content_type"] = json!("")),
            400,
            "bad_content_type",
        ),
        case(
            "uppercase_content_type",
            with(&|v| v["content_type"] = json!("New_funds_content")),
            400,
            "bad_content_type",
        ),
        case(
            "uppercase_sender",
            with(&|v| v["sender"] = json!("Alice@dev")),
            400,
            "non_canonical_address",
        ),
        case(
            "uppercase_recipient",
            with(&|v| v["recipient"] = json!("bob@DEV")),
            400,
            "non_canonical_address",
        ),
        case(
            "address_without_domain",
            with(&|v| v["recipient"] = json!("bob")),
            400,
            "bad_address",
        ),
        case(
            "bad_public_key",
            with(&|v| {
                v["sender_key"] = json!("FIO1111111111111111111111111111111111111111111111111")
            }),
            400,
            "bad_public_key",
        ),
        case(
            "bad_signature_string",
            with(&|v| v["signature"] = json!("SIG_K1_notasignature")),
            400,
            "bad_signature",
        ),
        case(
            "bad_base64",
            with(&|v| v["content"] = json!("!!not base64!!")),
            400,
            "bad_base64",
        ),
        case(
            "content_too_short",
            with(&|v| v["content"] = json!(b64(48))),
            400,
            "bad_cipher_text",
        ),
        case(
            "content_bad_block_shape",
            with(&|v| v["content"] = json!(b64(70))),
            400,
            "bad_cipher_text",
        ),
        case(
            "expires_not_after_created",
            with(&|v| v["expires"] = v["created"].clone()),
            400,
            "expires_before_created",
        ),
        case(
            "id_mismatch",
            with(&|v| v["id"] = json!("00".repeat(32))),
            422,
            "id_mismatch",
        ),
        // --- Sizes ---
        case(
            "oversize_body",
            {
                let mut b = br#"{"version":1,"content_type":""#.to_vec();
                b.extend(std::iter::repeat_n(b'a', 1_100_000));
                b.extend_from_slice(b"\"}");
                post_body(b)
            },
            413,
            "too_large",
        ),
        case(
            "oversize_envelope",
            with(&|v| v["content"] = json!(b64(4000 + 48))),
            413,
            "too_large",
        ),
        case(
            "oversize_content",
            with(&|v| v["content"] = json!(b64(1024 + 16 + 48))),
            413,
            "content_too_large",
        ),
        // --- Signature (check 3) ---
        case(
            "high_s_signature",
            with(&|v| {
                let s = v["signature"].as_str().unwrap().to_string();
                v["signature"] = json!(high_s(&s));
            }),
            401,
            "high_s_signature",
        ),
        case(
            "signed_by_another_key",
            sign_as(&carol.key, message(&alice, &bob, "x")),
            401,
            "signature_mismatch",
        ),
        case(
            "signed_over_another_chain_id",
            {
                let m = message(&alice, &bob, "other chain")
                    .sign(&alice.key, &[7u8; 32])
                    .unwrap();
                json_body(&m.to_json_value(false))
            },
            401,
            "signature_mismatch",
        ),
        case(
            "tampered_after_signing",
            with(&|v| v["nonce"] = json!(1)),
            401,
            "signature_mismatch",
        ),
        // --- Time (check 4) ---
        case(
            "created_in_future",
            {
                let m = message_at(&alice, &bob, "future", t + 3600, t + 7200);
                json_body(&m.sign(&alice.key, &chain).unwrap().to_json_value(false))
            },
            422,
            "created_in_future",
        ),
        case(
            "expires_in_past",
            {
                let m = message_at(&alice, &bob, "past", t - 100, t - 10);
                json_body(&m.sign(&alice.key, &chain).unwrap().to_json_value(false))
            },
            422,
            "expired",
        ),
        case(
            "ttl_too_long",
            {
                let m = message_at(&alice, &bob, "long", t, t + 31 * 86400 + 600);
                json_body(&m.sign(&alice.key, &chain).unwrap().to_json_value(false))
            },
            422,
            "ttl_too_long",
        ),
        // --- Chain (check 5) ---
        case(
            "sender_not_owner",
            {
                // carol signs as herself, but claims alice@dev.
                let mut m = message(&alice, &bob, "impostor");
                m.sender_key = carol.key.public_key();
                m.sender_encrypt_key = carol.key.public_key();
                json_body(&m.sign(&carol.key, &chain).unwrap().to_json_value(false))
            },
            403,
            "sender_not_owner",
        ),
        case(
            "sender_not_registered",
            {
                let nobody = Party::new("alice", "nobody@dev");
                json_body(&signed(&nobody, &bob, "ghost", &chain).to_json_value(false))
            },
            403,
            "sender_not_registered",
        ),
        case(
            "sender_domain_expired",
            json_body(&signed(&dave, &bob, "old", &chain).to_json_value(false)),
            403,
            "sender_domain_expired",
        ),
        case(
            "sender_domain_burned",
            json_body(&signed(&eve, &bob, "burnt", &chain).to_json_value(false)),
            403,
            "sender_not_registered",
        ),
        // --- Batches ---
        case(
            "empty_array",
            post_body(b" [ ]".to_vec()),
            400,
            "empty_batch",
        ),
        case(
            "batch_over_max",
            post_body(format!("[{}{{}}]", "{},".repeat(100)).into_bytes()),
            413,
            "batch_too_large",
        ),
        case(
            "malformed_array",
            post_body(br#"[{"version":1},"#.to_vec()),
            400,
            "bad_json",
        ),
        // --- Reads: owner proof ---
        case(
            "inbox_missing_proof",
            get(&inbox_pq, vec![]),
            401,
            "proof_missing",
        ),
        case(
            "inbox_partial_proof",
            {
                let mut h = bob_proof(&inbox_pq);
                h.retain(|(k, _)| k != H_NONCE);
                get(&inbox_pq, h)
            },
            401,
            "proof_missing",
        ),
        case(
            "inbox_malformed_proof_time",
            {
                let mut h = bob_proof(&inbox_pq);
                set_header(&mut h, H_TIME, "soon");
                get(&inbox_pq, h)
            },
            401,
            "proof_malformed",
        ),
        case(
            "inbox_malformed_proof_nonce",
            {
                let mut h = bob_proof(&inbox_pq);
                set_header(&mut h, H_NONCE, "xyz");
                get(&inbox_pq, h)
            },
            401,
            "proof_malformed",
        ),
        case(
            "inbox_malformed_proof_key",
            {
                let mut h = bob_proof(&inbox_pq);
                set_header(&mut h, H_KEY, "FIOnotakey");
                get(&inbox_pq, h)
            },
            401,
            "proof_malformed",
        ),
        case(
            "inbox_forged_proof",
            {
                // Signed by carol, claiming bob's key.
                let mut h = owned(proof(&node, &carol.key, "bob@dev", "GET", &inbox_pq, b""));
                set_header(&mut h, H_KEY, &bob.pubkey());
                get(&inbox_pq, h)
            },
            401,
            "proof_bad_signature",
        ),
        case(
            "inbox_proof_for_another_query",
            get("/v1/inbox/bob@dev?order=newest", bob_proof(&inbox_pq)),
            401,
            "proof_bad_signature",
        ),
        case(
            "inbox_foreign_node_proof",
            get(
                &inbox_pq,
                proof_at(&bob.key, &other.node_id, "bob@dev", &inbox_pq, now()),
            ),
            401,
            "proof_wrong_node",
        ),
        case(
            "inbox_expired_proof_time",
            get(
                &inbox_pq,
                proof_at(&bob.key, &node.node_id, "bob@dev", &inbox_pq, now() - 3600),
            ),
            401,
            "proof_expired",
        ),
        case(
            "inbox_future_proof_time",
            get(
                &inbox_pq,
                proof_at(&bob.key, &node.node_id, "bob@dev", &inbox_pq, now() + 3600),
            ),
            401,
            "proof_expired",
        ),
        case(
            "inbox_proof_for_another_address",
            get(
                &inbox_pq,
                proof_at(&alice.key, &node.node_id, "alice@dev", &inbox_pq, now()),
            ),
            401,
            "proof_address_mismatch",
        ),
        case(
            "inbox_proof_by_non_owner",
            get(
                &inbox_pq,
                proof_at(&carol.key, &node.node_id, "bob@dev", &inbox_pq, now()),
            ),
            403,
            "not_owner",
        ),
        case(
            "inbox_uppercase_address",
            {
                let pq = "/v1/inbox/Bob@dev";
                get(pq, owned(proof(&node, &bob.key, "Bob@dev", "GET", pq, b"")))
            },
            400,
            "non_canonical_address",
        ),
        // --- Reads: query ---
        case(
            "inbox_limit_zero",
            get(
                "/v1/inbox/bob@dev?limit=0",
                bob_proof("/v1/inbox/bob@dev?limit=0"),
            ),
            400,
            "bad_query",
        ),
        case(
            "inbox_limit_over_max_page",
            get(
                "/v1/inbox/bob@dev?limit=501",
                bob_proof("/v1/inbox/bob@dev?limit=501"),
            ),
            400,
            "bad_query",
        ),
        case(
            "inbox_order_sideways",
            get(
                "/v1/inbox/bob@dev?order=sideways",
                bob_proof("/v1/inbox/bob@dev?order=sideways"),
            ),
            400,
            "bad_query",
        ),
        case(
            "inbox_cursor_not_a_number",
            get(
                "/v1/inbox/bob@dev?cursor=abc",
                bob_proof("/v1/inbox/bob@dev?cursor=abc"),
            ),
            400,
            "bad_query",
        ),
        case(
            "inbox_unknown_query_param",
            get(
                "/v1/inbox/bob@dev?foo=1",
                bob_proof("/v1/inbox/bob@dev?foo=1"),
            ),
            400,
            "bad_query",
        ),
        case(
            "events_missing_proof",
            get("/v1/inbox/bob@dev/events", vec![]),
            401,
            "proof_missing",
        ),
        case(
            "events_since_not_a_number",
            get(
                "/v1/inbox/bob@dev/events?since=x",
                bob_proof("/v1/inbox/bob@dev/events?since=x"),
            ),
            400,
            "bad_query",
        ),
        case(
            "events_proof_by_non_owner",
            {
                let pq = "/v1/inbox/bob@dev/events";
                get(
                    pq,
                    proof_at(&carol.key, &node.node_id, "bob@dev", pq, now()),
                )
            },
            403,
            "not_owner",
        ),
        // --- Acks ---
        case(
            "ack_ids_not_hex",
            {
                let b = ack_ids(json!(["xyz"]));
                ack_req(&b, &b)
            },
            400,
            "bad_ids",
        ),
        case(
            "ack_ids_empty",
            {
                let b = ack_ids(json!([]));
                ack_req(&b, &b)
            },
            400,
            "bad_ids",
        ),
        case(
            "ack_id_uppercase_hex",
            {
                let b = ack_ids(json!([kept[0].to_uppercase()]));
                ack_req(&b, &b)
            },
            400,
            "bad_ids",
        ),
        case(
            "ack_id_short",
            {
                let b = ack_ids(json!([&kept[0][..62]]));
                ack_req(&b, &b)
            },
            400,
            "bad_ids",
        ),
        case(
            "ack_body_not_json",
            ack_req(b"ids=1", b"ids=1"),
            400,
            "bad_json",
        ),
        case(
            "ack_body_extra_field",
            {
                let b = serde_json::to_vec(&json!({"ids": [kept[0]], "all": true})).unwrap();
                ack_req(&b, &b)
            },
            400,
            "bad_json",
        ),
        case(
            "ack_proof_over_another_body",
            {
                let signed_body = ack_ids(json!([kept[1]]));
                ack_req(&ack_ids(json!([kept[0]])), &signed_body)
            },
            401,
            "proof_bad_signature",
        ),
        case(
            "ack_missing_proof",
            Req {
                method: "POST",
                pq: ack_pq.clone(),
                headers: vec![],
                body: Some(ack_ids(json!([kept[0]]))),
            },
            401,
            "proof_missing",
        ),
        case(
            "ack_proof_by_non_owner",
            {
                let b = ack_ids(json!([kept[0]]));
                let mut r = ack_req(&b, &b);
                r.headers = owned(proof(&node, &carol.key, "bob@dev", "POST", &ack_pq, &b));
                r
            },
            403,
            "not_owner",
        ),
    ];
    cases.push(Case {
        name: "inbox_replayed_proof",
        req: get(&inbox_pq, bob_proof(&inbox_pq)),
        send_first: true,
        status: 401,
        code: "proof_replayed",
    });

    let mut names = std::collections::HashSet::new();
    let mut failures = vec![];
    for case in &cases {
        assert!(names.insert(case.name), "duplicate case name {}", case.name);
        if case.send_first {
            let (st, v) = send(&c, &node.url, &case.req).await;
            assert_eq!(st, 200, "{}: first use: {v}", case.name);
        }
        let (st, v) = send(&c, &node.url, &case.req).await;
        let code = v["error"]["code"].as_str().unwrap_or("<none>");
        if st != case.status || code != case.code {
            failures.push(format!(
                "{}: expected ({}, {}), got ({st}, {code}): {}",
                case.name,
                case.status,
                case.code,
                v.to_string().chars().take(300).collect::<String>()
            ));
        }
        let count = health_count(&c, &node.url).await;
        if count != base_count {
            failures.push(format!(
                "{}: stored count changed {base_count} -> {count}",
                case.name
            ));
        }
        let ids = inbox_ids(&c, &node, &bob).await;
        if ids != base_inbox {
            failures.push(format!("{}: bob's inbox changed: {ids:?}", case.name));
        }
    }
    eprintln!("{} named bad-input cases run", cases.len());
    for (i, case) in cases.iter().enumerate() {
        eprintln!("{:3} {:40} {} {}", i + 1, case.name, case.status, case.code);
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
    assert!(cases.len() >= 30);
    // The node refused them all without storing; a good one still goes in.
    let m = signed(&alice, &bob, "after the storm", &chain);
    assert_eq!(post_msg(&c, &node.url, &m).await.0, 201);
    assert_eq!(health_count(&c, &node.url).await, base_count + 1);
}
