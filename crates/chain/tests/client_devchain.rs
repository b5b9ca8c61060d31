//! The HTTP client against the dev chain, over real HTTP on loopback.

mod common;

use common::*;
use fio_l2_chain::devchain::DevChain;
use fio_l2_chain::{Chain, ChainError, HttpChain, Ownership};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_yes_and_no() {
    let (dc, _dir) = start_devchain().await;
    let (alice, bob) = (key("alice"), key("bob"));
    let v = dev(
        &dc,
        "register_address",
        json!({"address": "alice@dev", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    assert_eq!(v["domain_registered"], json!(true));
    let c = client(&[dc.url()]);

    let own = c.check_owner(&alice, "alice@dev").await.expect("answer");
    assert!(
        matches!(
            own,
            Ownership::Owned {
                in_grace: false,
                ..
            }
        ),
        "{own:?}"
    );
    // Another key: no. A key with no names at all (404 "No FIO names"): no.
    assert_eq!(
        c.check_owner(&bob, "alice@dev").await,
        Ok(Ownership::NotOwned)
    );
    assert_eq!(
        c.check_owner(&key("nobody"), "x@dev").await,
        Ok(Ownership::NotOwned)
    );
    // Unregistered address for a key that owns other names: no.
    assert_eq!(
        c.check_owner(&alice, "other@dev").await,
        Ok(Ownership::NotOwned)
    );
    // Non-canonical or invalid input is refused locally, without asking.
    let before = count(&dc, "get_fio_names");
    assert!(matches!(
        c.check_owner(&alice, "Alice@dev").await,
        Err(ChainError::InvalidInput(_))
    ));
    assert!(matches!(
        c.check_owner(&alice, "nope").await,
        Err(ChainError::InvalidInput(_))
    ));
    assert_eq!(count(&dc, "get_fio_names"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_owned_by_someone_else_is_read_from_the_table() {
    let (dc, _dir) = start_devchain().await;
    let (alice, carol) = (key("alice"), key("carol"));
    dev(
        &dc,
        "register_domain",
        json!({"domain": "wallet", "owner_public_key": carol.to_fio_string()}),
    )
    .await;
    dev(
        &dc,
        "register_address",
        json!({"address": "alice@wallet", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    let c = client(&[dc.url()]);
    let own = c.check_owner(&alice, "alice@wallet").await.expect("answer");
    assert!(own.is_owned(), "{own:?}");
    assert_eq!(count(&dc, "get_table_rows"), 1);
    // The domain owner does not own the address.
    assert_eq!(
        c.check_owner(&carol, "alice@wallet").await,
        Ok(Ownership::NotOwned)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_is_seen_after_invalidation_and_after_ttl() {
    let (dc, _dir) = start_devchain().await;
    let (alice, bob) = (key("alice"), key("bob"));
    dev(
        &dc,
        "register_address",
        json!({"address": "alice@dev", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    let c = client(&[dc.url()]);
    assert!(c
        .check_owner(&alice, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    assert_eq!(
        c.check_owner(&bob, "alice@dev").await,
        Ok(Ownership::NotOwned)
    );

    dev(
        &dc,
        "transfer_address",
        json!({"address": "alice@dev", "new_owner_public_key": bob.to_fio_string()}),
    )
    .await;
    // Cached answers stand until invalidated or expired (documented).
    assert!(c
        .check_owner(&alice, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    c.invalidate("alice@dev");
    assert_eq!(
        c.check_owner(&alice, "alice@dev").await,
        Ok(Ownership::NotOwned)
    );
    assert!(c
        .check_owner(&bob, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    // The transfer moved FIO/FIO to the new owner.
    assert_eq!(c.encrypt_key("alice@dev").await, Ok(bob));

    // Without invalidation: a short-lived cache picks the transfer back up.
    let mut cfg = test_config(&[dc.url()]);
    cfg.positive_ttl = Duration::from_millis(200);
    cfg.negative_ttl = Duration::from_millis(200);
    let c2 = HttpChain::new(cfg).expect("client");
    assert!(c2
        .check_owner(&bob, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    assert_eq!(
        c2.check_owner(&alice, "alice@dev").await,
        Ok(Ownership::NotOwned)
    );
    dev(
        &dc,
        "transfer_address",
        json!({"address": "alice@dev", "new_owner_public_key": alice.to_fio_string()}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(c2
        .check_owner(&alice, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    assert_eq!(
        c2.check_owner(&bob, "alice@dev").await,
        Ok(Ownership::NotOwned)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_domain_grace_and_burn() {
    let (dc, _dir) = start_devchain().await;
    let alice = key("alice");
    dev(
        &dc,
        "register_address",
        json!({"address": "alice@dev", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    let c = client(&[dc.url()]);

    dev(
        &dc,
        "expire_domain",
        json!({"domain": "dev", "days_ago": 10}),
    )
    .await;
    let own = c.check_owner(&alice, "alice@dev").await.expect("answer");
    assert!(
        matches!(own, Ownership::Owned { in_grace: true, .. }),
        "{own:?}"
    );
    // The chain itself refuses to resolve addresses of an expired domain.
    assert!(matches!(
        c.encrypt_key("alice@dev").await,
        Err(ChainError::DomainExpired(_))
    ));

    dev(
        &dc,
        "expire_domain",
        json!({"domain": "dev", "days_ago": 31}),
    )
    .await;
    c.invalidate("dev");
    let own = c.check_owner(&alice, "alice@dev").await.expect("answer");
    assert!(matches!(own, Ownership::DomainExpired { .. }), "{own:?}");
    assert!(!own.is_owned());

    dev(
        &dc,
        "expire_domain",
        json!({"domain": "dev", "days_ago": 91}),
    )
    .await;
    c.invalidate("dev");
    // Burned: the key owns nothing any more.
    assert_eq!(
        c.check_owner(&alice, "alice@dev").await,
        Ok(Ownership::NotOwned)
    );
    let (st, v) = post(
        &format!("{}/v1/chain/avail_check", dc.url()),
        json!({"fio_name": "alice@dev"}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"is_registered": 0})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_key_and_fallback() {
    let (dc, _dir) = start_devchain().await;
    let (alice, enc) = (key("alice"), key("alice-encrypt"));
    dev(
        &dc,
        "register_address",
        json!({"address": "alice@dev", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    let c = client(&[dc.url()]);
    // No FIP-39 key: the FIO/FIO mapping (the owner's key).
    assert_eq!(c.encrypt_key("alice@dev").await, Ok(alice));

    dev(
        &dc,
        "set_encrypt_key",
        json!({"address": "alice@dev", "encrypt_public_key": enc.to_fio_string()}),
    )
    .await;
    c.invalidate("alice@dev");
    assert_eq!(c.encrypt_key("alice@dev").await, Ok(enc));

    // Neither key: a definite NotFound.
    dev(
        &dc,
        "set_encrypt_key",
        json!({"address": "alice@dev", "encrypt_public_key": ""}),
    )
    .await;
    dev(
        &dc,
        "set_pub_address",
        json!({"address": "alice@dev", "chain_code": "FIO",
        "token_code": "FIO", "public_address": ""}),
    )
    .await;
    c.invalidate("alice@dev");
    assert!(matches!(
        c.encrypt_key("alice@dev").await,
        Err(ChainError::NotFound(_))
    ));
    // Not registered at all.
    assert!(matches!(
        c.encrypt_key("ghost@dev").await,
        Err(ChainError::NotFound(_))
    ));
    // A mapping that is not a key is not a key.
    dev(
        &dc,
        "set_pub_address",
        json!({"address": "alice@dev", "chain_code": "FIO",
        "token_code": "FIO", "public_address": "not-a-key"}),
    )
    .await;
    c.invalidate("alice@dev");
    assert!(matches!(
        c.encrypt_key("alice@dev").await,
        Err(ChainError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_key_falls_back_to_pub_address() {
    let alice = key("alice");
    let pub_ok = format!(r#"{{"public_address":"{}"}}"#, alice.to_fio_string());
    // A chain without FIP-39: get_encrypt_key is an unknown endpoint (nodeos 404 "Not Found").
    let old = hostile(Hostile::ByPath(vec![(
        "/get_pub_address",
        200,
        pub_ok.clone(),
    )]))
    .await;
    assert_eq!(
        client(std::slice::from_ref(&old.url))
            .encrypt_key("alice@dev")
            .await,
        Ok(alice)
    );
    // An endpoint answering an empty encrypt key: fall back as well.
    let empty = hostile(Hostile::ByPath(vec![
        (
            "/get_encrypt_key",
            200,
            r#"{"encrypt_public_key":""}"#.to_string(),
        ),
        ("/get_pub_address", 200, pub_ok),
    ]))
    .await;
    assert_eq!(
        client(std::slice::from_ref(&empty.url))
            .encrypt_key("alice@dev")
            .await,
        Ok(alice)
    );
    // Fallback also gets an unknown 404: that is not a definite answer.
    let none = hostile(Hostile::ByPath(vec![])).await;
    let r = client(std::slice::from_ref(&none.url))
        .encrypt_key("alice@dev")
        .await;
    assert!(matches!(r, Err(ChainError::Unavailable(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_address_mapping() {
    let (dc, _dir) = start_devchain().await;
    let alice = key("alice");
    dev(
        &dc,
        "register_address",
        json!({"address": "alice@dev", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    dev(
        &dc,
        "set_pub_address",
        json!({"address": "alice@dev", "chain_code": "FIOL2",
        "token_code": "NODE", "public_address": "https://relay.example/"}),
    )
    .await;
    let chain: Arc<dyn Chain> = Arc::new(client(&[dc.url()]));
    assert_eq!(
        chain.pub_address("alice@dev", "FIOL2", "NODE").await,
        Ok("https://relay.example/".to_string())
    );
    assert!(matches!(
        chain.pub_address("alice@dev", "BTC", "BTC").await,
        Err(ChainError::NotFound(_))
    ));
    assert!(matches!(
        chain.pub_address("alice@dev", "B C", "BTC").await,
        Err(ChainError::InvalidInput(_))
    ));
    assert_eq!(
        chain.pub_address("alice@dev", "FIO", "FIO").await,
        Ok(alice.to_fio_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_id_matches_and_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = {
        let s = fio_l2_chain::devchain::serve("127.0.0.1:0".parse().expect("addr"), dir.path())
            .await
            .expect("serve");
        let c = client(&[s.url()]);
        let id = c.chain_id().await.expect("chain id");
        assert_eq!(id, s.chain.chain_id());
        assert_eq!(c.chain_id().await, Ok(id));
        assert_eq!(count(&s, "get_info"), 1, "chain id is fetched once");
        s.shutdown().await;
        id
    };
    let again = DevChain::open(dir.path()).expect("reopen");
    assert_eq!(again.chain_id(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_second_endpoint() {
    let (dc, _dir) = start_devchain().await;
    let alice = key("alice");
    dev(
        &dc,
        "register_address",
        json!({"address": "alice@dev", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    let c = client(&[dead_url().await, dc.url()]);
    assert!(c
        .check_owner(&alice, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    let m = c.metrics();
    assert!(m.failed_requests >= 1 && m.requests >= 2, "{m:?}");
    // The endpoint that answered is preferred next time: no new failure.
    c.invalidate_all();
    assert!(c
        .check_owner(&alice, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    assert_eq!(c.metrics().failed_requests, m.failed_requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_endpoint_is_unavailable_not_no() {
    let c = client(&[dead_url().await]);
    let r = c.check_owner(&key("alice"), "alice@dev").await;
    assert!(matches!(r, Err(ChainError::Unavailable(_))), "{r:?}");
    assert!(r.err().is_some_and(|e| e.is_unavailable()));
    // Retries: one round plus one retry.
    assert_eq!(c.metrics().requests, 2);
    assert!(matches!(
        c.chain_id().await,
        Err(ChainError::Unavailable(_))
    ));
    // Errors are not cached: a later ask asks again.
    let _ = c.check_owner(&key("alice"), "alice@dev").await;
    assert_eq!(c.metrics().requests, 6);
    let none = HttpChain::new(test_config(&[])).expect("client");
    assert!(matches!(
        none.encrypt_key("a@b").await,
        Err(ChainError::Unavailable(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_and_expiry() {
    let (dc, _dir) = start_devchain().await;
    let alice = key("alice");
    dev(
        &dc,
        "register_address",
        json!({"address": "alice@dev", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    let mut cfg = test_config(&[dc.url()]);
    // Generous lifetimes so a loaded machine cannot expire them between
    // back-to-back asks; the sleeps below outlast them.
    cfg.positive_ttl = Duration::from_millis(1500);
    cfg.negative_ttl = Duration::from_millis(500);
    let c = HttpChain::new(cfg).expect("client");

    for _ in 0..3 {
        assert!(c
            .check_owner(&alice, "alice@dev")
            .await
            .expect("answer")
            .is_owned());
    }
    assert_eq!(count(&dc, "get_fio_names"), 1);
    assert_eq!(c.metrics().cache_hits, 2);
    // Negative answers have their own (here shorter) lifetime.
    let bob = key("bob");
    assert_eq!(
        c.check_owner(&bob, "alice@dev").await,
        Ok(Ownership::NotOwned)
    );
    assert_eq!(
        c.check_owner(&bob, "alice@dev").await,
        Ok(Ownership::NotOwned)
    );
    assert_eq!(count(&dc, "get_fio_names"), 2);
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(
        c.check_owner(&bob, "alice@dev").await,
        Ok(Ownership::NotOwned)
    );
    assert_eq!(count(&dc, "get_fio_names"), 3);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(c
        .check_owner(&alice, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    assert_eq!(count(&dc, "get_fio_names"), 4);
    // Invalidate by key.
    c.invalidate(&alice.to_fio_string());
    assert!(c
        .check_owner(&alice, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    assert_eq!(count(&dc, "get_fio_names"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_against_devchain() {
    let (dc, _dir) = start_devchain().await;
    let alice = key("alice");
    dev(
        &dc,
        "register_address",
        json!({"address": "alice@dev", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    let c = Arc::new(client(&[dc.url()]));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.check_owner(&alice, "alice@dev").await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.expect("task").expect("answer").is_owned());
    }
    assert_eq!(count(&dc, "get_fio_names"), 1);
    // The dev chain's HTTP stats endpoint says the same.
    let v = reqwest::get(format!("{}/v1/dev/stats", dc.url()))
        .await
        .expect("stats")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(v["requests"]["get_fio_names"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_without_cache() {
    // A slow endpoint and no cache: only single flight can make this one request.
    let alice = key("alice");
    let body = r#"{"fio_domains":[{"fio_domain":"dev","expiration":"2999-01-01T00:00:00","is_public":1}],
        "fio_addresses":[{"fio_address":"alice@dev","expiration":"2106-02-07T06:28:15","remaining_bundled_tx":100}]}"#;
    let slow = hostile(Hostile::Fixed {
        status: 200,
        content_type: "application/json",
        body: body.to_string(),
        delay: Duration::from_millis(400),
    })
    .await;
    let mut cfg = test_config(std::slice::from_ref(&slow.url));
    cfg.cache_capacity = 0;
    let c = Arc::new(HttpChain::new(cfg).expect("client"));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.check_owner(&alice, "alice@dev").await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.expect("task").expect("answer").is_owned());
    }
    assert_eq!(slow.hits(), 1);
    assert_eq!(c.metrics().coalesced, 15);
}
