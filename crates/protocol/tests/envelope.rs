//! The protocol-v1.md example as a vector, and strict-parsing errors.

use fio_l2_protocol::envelope::{parse_chain_id, Message};
use fio_l2_protocol::{ErrorCode, PrivateKey, SignedMessage, TimePolicy};
use serde_json::{json, Value};

const EXAMPLE: &str = include_str!("../../../docs/examples/envelope-v1.json");
const CHAIN: &str = "21dcae42c0182200e93f954a074011f9048a7624c6fe81d3c9541a614a88bd1c";
const PACKED: &str = "01116e65775f66756e64735f636f6e74656e740c616c6963654077616c6c65740a626f624077616c6c657400039997a497d964fc1a62885b05a51166a65a90df00492c8d7cf61d6accf54803be00039997a497d964fc1a62885b05a51166a65a90df00492c8d7cf61d6accf54803be00024edfcf9dfe6c0b5c83d1ab3f78d1b39a46ebac6798e08e19761f5ed89ec83c10c086fd6ac013256b00000000000000006c387743496a4b5431457336397741495038506369544f423846303971714447647371305872694957634f6b71705a6539713446774b75335347494c746e4157744a4745546263417164337a58374e4470745055517353315a664550694b364876306e4a794e6278776951633d";

fn example() -> Value {
    serde_json::from_str(EXAMPLE).unwrap()
}

fn parse(v: &Value) -> Result<SignedMessage, fio_l2_protocol::Error> {
    SignedMessage::from_json(serde_json::to_string(v).unwrap().as_bytes())
}

#[test]
fn example_vector() {
    let chain = parse_chain_id(CHAIN).unwrap();
    let s = SignedMessage::from_json(EXAMPLE.as_bytes()).unwrap();
    assert_eq!(hex::encode(s.packed()), PACKED);
    assert_eq!(
        s.id_hex(),
        "083a6cef87797954a9eabb125a4e31da725616e9c24e5b186b7106d902257574"
    );
    assert_eq!(s.pow_bits(), 4);
    s.check_offline(&chain, 1_795_000_000, &TimePolicy::default())
        .unwrap();
    // Re-signing the same message with alice's key gives the same signature (fiojs-deterministic).
    let resigned = s
        .message()
        .clone()
        .sign(&PrivateKey::from_seed("alice"), &chain)
        .unwrap();
    assert_eq!(resigned.signature(), s.signature());
    // An id on input must match.
    let mut v = example();
    v["id"] = json!("083a6cef87797954a9eabb125a4e31da725616e9c24e5b186b7106d902257574");
    parse(&v).unwrap();
    v["id"] = json!("00".repeat(32));
    assert_eq!(parse(&v).unwrap_err().code, ErrorCode::IdMismatch);
}

#[test]
fn time_rules() {
    let s = SignedMessage::from_json(EXAMPLE.as_bytes()).unwrap();
    let chain = parse_chain_id(CHAIN).unwrap();
    let p = TimePolicy::default();
    let created = 1_795_000_000u64;
    let code = |now, p: &TimePolicy| s.check_offline(&chain, now, p).unwrap_err().code;
    assert_eq!(code(created - 301, &p), ErrorCode::CreatedInFuture);
    s.check_offline(&chain, created - 300, &p).unwrap();
    assert_eq!(code(1_797_592_000, &p), ErrorCode::Expired);
    let short = TimePolicy {
        max_clock_skew: 300,
        max_ttl: 3600,
    };
    assert_eq!(code(created, &short), ErrorCode::TtlTooLong);
    // Wrong chain id: the signature does not verify.
    let other = parse_chain_id(&"00".repeat(32)).unwrap();
    assert_eq!(
        s.check_offline(&other, created, &p).unwrap_err().code,
        ErrorCode::SignatureMismatch
    );
}

#[test]
fn strict_json_errors() {
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Mutation, ErrorCode, Option<&str>)> = vec![
        (
            "missing field",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("nonce");
            }),
            ErrorCode::MissingField,
            Some("nonce"),
        ),
        (
            "missing signature",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("signature");
            }),
            ErrorCode::MissingField,
            Some("signature"),
        ),
        (
            "extra field",
            Box::new(|v| {
                v["memo"] = json!("x");
            }),
            ErrorCode::UnknownField,
            Some("memo"),
        ),
        (
            "string version",
            Box::new(|v| {
                v["version"] = json!("1");
            }),
            ErrorCode::WrongType,
            Some("version"),
        ),
        (
            "version 2",
            Box::new(|v| {
                v["version"] = json!(2);
            }),
            ErrorCode::BadVersion,
            Some("version"),
        ),
        (
            "version 300",
            Box::new(|v| {
                v["version"] = json!(300);
            }),
            ErrorCode::BadVersion,
            Some("version"),
        ),
        (
            "float created",
            Box::new(|v| {
                v["created"] = json!(1.5);
            }),
            ErrorCode::WrongType,
            Some("created"),
        ),
        (
            "negative nonce",
            Box::new(|v| {
                v["nonce"] = json!(-1);
            }),
            ErrorCode::OutOfRange,
            Some("nonce"),
        ),
        (
            "nonce 2^53",
            Box::new(|v| {
                v["nonce"] = json!(1u64 << 53);
            }),
            ErrorCode::OutOfRange,
            Some("nonce"),
        ),
        (
            "created > u32",
            Box::new(|v| {
                v["created"] = json!(1u64 << 32);
            }),
            ErrorCode::OutOfRange,
            Some("created"),
        ),
        (
            "expires before created",
            Box::new(|v| {
                v["expires"] = json!(1_795_000_000);
            }),
            ErrorCode::ExpiresBeforeCreated,
            Some("expires"),
        ),
        (
            "uppercase sender",
            Box::new(|v| {
                v["sender"] = json!("Alice@wallet");
            }),
            ErrorCode::NonCanonicalAddress,
            Some("sender"),
        ),
        (
            "bad recipient",
            Box::new(|v| {
                v["recipient"] = json!("bob");
            }),
            ErrorCode::BadAddress,
            Some("recipient"),
        ),
        (
            "bad content type",
            Box::new(|v| {
                v["content_type"] = json!("New Funds");
            }),
            ErrorCode::BadContentType,
            Some("content_type"),
        ),
        (
            "empty content type",
            Box::new(|v| {
                v["content_type"] = json!("");
            }),
            ErrorCode::BadContentType,
            Some("content_type"),
        ),
        (
            "bad key",
            Box::new(|v| {
                v["sender_key"] = json!("FIO1111");
            }),
            ErrorCode::BadPublicKey,
            Some("sender_key"),
        ),
        (
            "key as number",
            Box::new(|v| {
                v["recipient_encrypt_key"] = json!(5);
            }),
            ErrorCode::WrongType,
            Some("recipient_encrypt_key"),
        ),
        (
            "bad base64",
            Box::new(|v| {
                v["content"] = json!("not base64!");
            }),
            ErrorCode::BadBase64,
            Some("content"),
        ),
        (
            "short content",
            Box::new(|v| {
                v["content"] = json!("AAAA");
            }),
            ErrorCode::BadCipherText,
            Some("content"),
        ),
        (
            "bad signature",
            Box::new(|v| {
                v["signature"] = json!("SIG_K1_xyz");
            }),
            ErrorCode::BadSignature,
            Some("signature"),
        ),
        (
            "null field",
            Box::new(|v| {
                v["sender"] = Value::Null;
            }),
            ErrorCode::WrongType,
            Some("sender"),
        ),
    ];
    for (name, mutate, code, field) in cases {
        let mut v = example();
        mutate(&mut v);
        let e = parse(&v).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (code, field), "{name}: {e}");
    }
    let raw = |s: &str| SignedMessage::from_json(s.as_bytes()).unwrap_err().code;
    assert_eq!(raw("{"), ErrorCode::BadJson);
    assert_eq!(raw("[1]"), ErrorCode::NotObject);
    assert_eq!(raw(""), ErrorCode::BadJson);
    let dup = EXAMPLE.replacen("\"nonce\":0", "\"nonce\":0,\"nonce\":1", 1);
    assert_eq!(raw(&dup), ErrorCode::DuplicateField);
    // Non-canonical base64 (trailing bits set) is refused: one message, one encoding.
    let mut v = example();
    let c = v["content"].as_str().unwrap().to_string();
    v["content"] = json!(c.replace("iQc=", "iQd="));
    assert_eq!(parse(&v).unwrap_err().code, ErrorCode::BadBase64);
}

#[test]
fn unsigned_form() {
    let mut v = example();
    v.as_object_mut().unwrap().remove("signature");
    let m = Message::from_json_unsigned(serde_json::to_string(&v).unwrap().as_bytes()).unwrap();
    assert_eq!(hex::encode(m.pack()), PACKED);
    let wrong = m
        .clone()
        .sign(&PrivateKey::from_seed("bob"), &[0; 32])
        .unwrap_err();
    assert_eq!(wrong.code, ErrorCode::KeyMismatch);
    let e = Message::from_json_unsigned(EXAMPLE.as_bytes()).unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownField);
}
