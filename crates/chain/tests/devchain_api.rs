//! The dev chain's answers, including errors, have the real chain's shapes.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_api_shapes() {
    let (dc, _dir) = start_devchain().await;
    let base = format!("{}/v1/chain", dc.url());
    let alice = key("alice");
    let ak = alice.to_fio_string();

    let (st, v) = post(
        &format!("{base}/get_fio_names"),
        json!({"fio_public_key": ak}),
    )
    .await;
    assert_eq!((st, v), (404, json!({"message": "No FIO names"})));
    let (st, v) = post(
        &format!("{base}/get_fio_names"),
        json!({"fio_public_key": "FIOxyz"}),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        v,
        json!({"type": "invalid_input",
               "message": "An invalid request was sent in, please check the nested errors for details.",
               "fields": [{"name": "fio_public_key", "value": "FIOxyz", "error": "Invalid FIO Public Key"}]})
    );

    dev(
        &dc,
        "register_address",
        json!({"address": "test@fiotestnet", "owner_public_key": ak}),
    )
    .await;
    let (st, v) = post(
        &format!("{base}/get_fio_names"),
        json!({"fio_public_key": ak}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        v["fio_addresses"][0],
        json!({"fio_address": "test@fiotestnet", "expiration": "2106-02-07T06:28:15", "remaining_bundled_tx": 100})
    );
    assert_eq!(v["fio_domains"][0]["fio_domain"], json!("fiotestnet"));
    assert_eq!(v["fio_domains"][0]["is_public"], json!(1));
    assert!(v["fio_domains"][0]["expiration"]
        .as_str()
        .is_some_and(|s| s.len() == 19));

    let (st, v) = post(
        &format!("{base}/get_pub_address"),
        json!({"fio_address": "bad..@x", "chain_code": "FIO", "token_code": "FIO"}),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["fields"][0],
        json!({"name": "fio_address", "value": "bad..@x", "error": "Invalid FIO Address"})
    );
    let (st, v) = post(
        &format!("{base}/get_pub_address"),
        json!({"fio_address": "TEST@fiotestnet", "chain_code": "FIO", "token_code": "FIO"}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"public_address": ak})));
    let (st, v) = post(
        &format!("{base}/get_pub_address"),
        json!({"fio_address": "test@fiotestnet", "chain_code": "BTC", "token_code": "BTC"}),
    )
    .await;
    assert_eq!(
        (st, v),
        (404, json!({"message": "Public address not found"}))
    );
    let (st, v) = post(
        &format!("{base}/get_encrypt_key"),
        json!({"fio_address": "nobody@fiotestnet"}),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(v["fields"][0]["error"], json!("No such FIO address"));
    let (st, v) = post(
        &format!("{base}/get_encrypt_key"),
        json!({"fio_address": "test@fiotestnet"}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"encrypt_public_key": ak})));

    let (st, v) = post(
        &format!("{base}/avail_check"),
        json!({"fio_name": "test@fiotestnet"}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"is_registered": 1})));
    let (st, v) = post(
        &format!("{base}/avail_check"),
        json!({"fio_name": "fiotestnet"}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"is_registered": 1})));
    let (st, v) = post(&format!("{base}/avail_check"), json!({"fio_name": "-x"})).await;
    assert_eq!(st, 400);
    assert_eq!(v["fields"][0]["error"], json!("Invalid FIO Name"));

    let (st, v) = post(&format!("{base}/get_actor"), json!({"fio_public_key": ak})).await;
    assert_eq!((st, v), (200, json!({"actor": alice.actor()})));
    let (st, v) = post(
        &format!("{base}/get_account_fio_public_key"),
        json!({"account": alice.actor()}),
    )
    .await;
    assert_eq!((st, v), (200, json!({"fio_public_key": ak})));
    let (st, v) = post(
        &format!("{base}/get_account_fio_public_key"),
        json!({"account": "aaaaaaaaaaaa"}),
    )
    .await;
    assert_eq!((st, v), (404, json!({"message": "Account not found"})));

    // fionames by name hash, with the bound of fio-standards.md section 7.
    let (st, v) = post(&format!("{base}/get_table_rows"), json!({
        "json": true, "code": "fio.address", "scope": "fio.address", "table": "fionames",
        "lower_bound": "0xeb0816aeb936141ebec9a4a76c64df58", "upper_bound": "0xeb0816aeb936141ebec9a4a76c64df58",
        "key_type": "i128", "index_position": "5", "limit": 1})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["more"], json!(false));
    let row = &v["rows"][0];
    assert_eq!(row["name"], json!("test@fiotestnet"));
    assert_eq!(row["domain"], json!("fiotestnet"));
    assert_eq!(
        row["addresses"][0],
        json!({"token_code": "FIO", "chain_code": "FIO", "public_address": ak})
    );
    let owner = fio_l2_chain::name::name_to_u64(&alice.actor()).expect("actor");
    assert_eq!(row["owner_account"], fio_l2_chain::name::u64_json(owner));
    // Another name's bound finds nothing.
    let (_, v) = post(
        &format!("{base}/get_table_rows"),
        json!({
        "json": true, "code": "fio.address", "scope": "fio.address", "table": "fionames",
        "lower_bound": "0x01", "upper_bound": "0x01", "key_type": "i128", "index_position": "5"}),
    )
    .await;
    assert_eq!(v["rows"], json!([]));

    // Garbage bodies get nodeos' 500 parse error, not a crash.
    let resp = reqwest::Client::new()
        .post(format!("{base}/get_fio_names"))
        .body("{nope")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 500);
    let (st, _) = post(&format!("{base}/no_such_endpoint"), json!({})).await;
    assert_eq!(st, 404);
    let (st, v) = post(&format!("{base}/get_info"), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(v["chain_id"], json!(dc.chain.chain_id_hex()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_endpoint_errors_and_persistence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let alice = key("alice").to_fio_string();
    {
        let dc = fio_l2_chain::devchain::serve("127.0.0.1:0".parse().expect("addr"), dir.path())
            .await
            .expect("serve");
        dev(
            &dc,
            "register_address",
            json!({"address": "alice@dev", "owner_public_key": alice}),
        )
        .await;
        let url = format!("{}/v1/dev/register_address", dc.url());
        let (st, v) = post(
            &url,
            json!({"address": "alice@dev", "owner_public_key": alice}),
        )
        .await;
        assert_eq!(st, 400);
        assert_eq!(
            v["fields"][0]["error"],
            json!("FIO address already registered")
        );
        let (st, _) = post(
            &url,
            json!({"address": "x@dev", "owner_public_key": "FIO1"}),
        )
        .await;
        assert_eq!(st, 400);
        let (st, _) = post(&url, json!({"address": 5})).await;
        assert_eq!(st, 400);
        let (st, v) = post(
            &format!("{}/v1/dev/transfer_address", dc.url()),
            json!({"address": "ghost@dev", "new_owner_public_key": alice}),
        )
        .await;
        assert_eq!(st, 400, "{v}");
        dc.shutdown().await;
    }
    // Reopened from disk: the registration survived.
    let again = fio_l2_chain::devchain::DevChain::open(dir.path()).expect("open");
    assert!(again.snapshot().addresses.contains_key("alice@dev"));
    assert!(!dir.path().join("devchain.json.tmp").exists());
}
