//! Hostile FIO API endpoints: every bad answer is an error (Unavailable),
//! never a panic, a hang, unbounded memory, or a wrong yes.

mod common;

use common::*;
use fio_l2_chain::{ChainError, HttpChain, Ownership};
use std::time::Duration;

fn short_client(url: &str) -> HttpChain {
    let mut cfg = test_config(&[url.to_string()]);
    cfg.request_timeout = Duration::from_millis(500);
    cfg.retries = 0;
    cfg.max_body_bytes = 64 * 1024;
    HttpChain::new(cfg).expect("client")
}

async fn expect_unavailable(behaviour: Hostile) {
    let what = format!("{behaviour:?}");
    let server = hostile(behaviour).await;
    let c = short_client(&server.url);
    let r = c.check_owner(&key("alice"), "alice@dev").await;
    assert!(
        matches!(r, Err(ChainError::Unavailable(_))),
        "{}: {r:?}",
        &what[..what.len().min(80)]
    );
    assert!(server.hits() >= 1, "the server was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_json() {
    expect_unavailable(fixed(200, "this is not json {")).await;
    expect_unavailable(fixed(200, "")).await;
    expect_unavailable(fixed(200, &"[".repeat(10_000))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types() {
    expect_unavailable(fixed(200, r#"{"fio_domains":"x","fio_addresses":5}"#)).await;
    expect_unavailable(fixed(200, r#"[1,2,3]"#)).await;
    expect_unavailable(fixed(
        200,
        r#"{"fio_domains":[],"fio_addresses":[{"fio_address":7,"expiration":"","remaining_bundled_tx":1}]}"#,
    ))
    .await;
    // Right shape, nonsense date: no yes without a readable domain expiration.
    expect_unavailable(fixed(
        200,
        r#"{"fio_domains":[{"fio_domain":"dev","expiration":"soon","is_public":1}],
            "fio_addresses":[{"fio_address":"alice@dev","expiration":"2106-02-07T06:28:15","remaining_bundled_tx":1}]}"#,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_foreign_404s() {
    expect_unavailable(fixed(
        500,
        r#"{"code":500,"message":"Internal Service Error"}"#,
    ))
    .await;
    expect_unavailable(fixed(503, "")).await;
    expect_unavailable(Hostile::Fixed {
        status: 404,
        content_type: "text/html",
        body: "<html>not here</html>".into(),
        delay: Duration::ZERO,
    })
    .await;
    // A 404 with another message is not "No FIO names".
    expect_unavailable(fixed(404, r#"{"message":"Something else"}"#)).await;
    expect_unavailable(fixed(302, "")).await;
    expect_unavailable(fixed(400, r#"{"message":"no type, no fields"}"#)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_404_is_a_definite_no() {
    let server = hostile(fixed(404, r#"{"message":"No FIO names"}"#)).await;
    let c = short_client(&server.url);
    assert_eq!(
        c.check_owner(&key("alice"), "alice@dev").await,
        Ok(Ownership::NotOwned)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies() {
    expect_unavailable(Hostile::Endless).await;
    expect_unavailable(Hostile::HugeDeclared).await;
    // A valid-looking body just over the limit.
    let big = format!(
        r#"{{"fio_domains":[],"fio_addresses":[],"pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    expect_unavailable(fixed(200, &big)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_drip_and_hang_time_out() {
    expect_unavailable(Hostile::SlowDrip).await;
    expect_unavailable(Hostile::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_endpoint_fails_over() {
    let (dc, _dir) = start_devchain().await;
    let alice = key("alice");
    dev(
        &dc,
        "register_address",
        serde_json::json!({"address": "alice@dev", "owner_public_key": alice.to_fio_string()}),
    )
    .await;
    let slow = hostile(Hostile::Hang).await;
    let mut cfg = test_config(&[slow.url.clone(), dc.url()]);
    cfg.request_timeout = Duration::from_millis(300);
    let c = HttpChain::new(cfg).expect("client");
    assert!(c
        .check_owner(&alice, "alice@dev")
        .await
        .expect("answer")
        .is_owned());
    assert_eq!(slow.hits(), 1);
    assert!(c.metrics().failed_requests >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_domain_table_is_not_a_yes() {
    // get_fio_names lists the address but not its domain; the domain table
    // has no matching row: inconsistent, so no yes.
    let names = r#"{"fio_domains":[],"fio_addresses":[{"fio_address":"alice@dev","expiration":"2106-02-07T06:28:15","remaining_bundled_tx":1}]}"#;
    let server = hostile(Hostile::ByPath(vec![
        ("/get_fio_names", 200, names.to_string()),
        (
            "/get_table_rows",
            200,
            r#"{"rows":[{"name":"other","expiration":4000000000}],"more":false}"#.to_string(),
        ),
    ]))
    .await;
    let c = short_client(&server.url);
    let r = c.check_owner(&key("alice"), "alice@dev").await;
    assert!(matches!(r, Err(ChainError::Unavailable(_))), "{r:?}");
}
