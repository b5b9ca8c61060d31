//! Property tests: round trips and tamper detection over random inputs.

use fio_l2_protocol::cipher::{
    decrypt_bytes, decrypt_content, encrypt_bytes, encrypt_content, shared_secret,
};
use fio_l2_protocol::content::CONTENT_TYPES;
use fio_l2_protocol::envelope::Message;
use fio_l2_protocol::{PrivateKey, PublicKey, Signature, SignedMessage, TimePolicy};
use proptest::prelude::*;
use serde_json::{Map, Value};

const CHAIN_ID: [u8; 32] = [0x21; 32];

fn key_strategy() -> impl Strategy<Value = PrivateKey> {
    any::<[u8; 32]>().prop_filter_map("valid scalar", |d| PrivateKey::from_bytes(&d).ok())
}

fn address_strategy() -> impl Strategy<Value = String> {
    (
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?",
        "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?",
    )
        .prop_map(|(n, d)| format!("{n}@{d}"))
}

fn message_strategy() -> impl Strategy<Value = (PrivateKey, Message)> {
    (
        key_strategy(),
        key_strategy(),
        address_strategy(),
        address_strategy(),
        1u32..2_000_000_000,
        1u32..1_000_000,
        0u64..(1 << 53),
        proptest::collection::vec(any::<u8>(), 1..200),
        "[a-z0-9_.]{1,64}",
    )
        .prop_map(
            |(sk, rk, sender, recipient, created, ttl, nonce, plain, ctype)| {
                let secret = shared_secret(&sk, &rk.public_key());
                let content = base64_of(&encrypt_bytes(&secret, &plain, &[7u8; 16]));
                let m = Message {
                    version: 1,
                    content_type: ctype,
                    sender,
                    recipient,
                    sender_key: sk.public_key(),
                    sender_encrypt_key: sk.public_key(),
                    recipient_encrypt_key: rk.public_key(),
                    created,
                    expires: created + ttl,
                    nonce,
                    content,
                };
                (sk, m)
            },
        )
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    fio_l2_protocol::cipher::BASE64.encode(b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_verify_recover(key in key_strategy(), digest in any::<[u8; 32]>()) {
        let sig = key.sign_digest(&digest);
        prop_assert!(sig.is_canonical());
        prop_assert!(sig.verify(&digest, &key.public_key()).is_ok());
        prop_assert_eq!(sig.recover(&digest).unwrap(), key.public_key());
        let reparsed = Signature::parse(&sig.to_string()).unwrap();
        prop_assert_eq!(reparsed, sig);
        // Deterministic: the same key and digest give the same signature.
        prop_assert_eq!(key.sign_digest(&digest), sig);
    }

    #[test]
    fn key_strings_round_trip(key in key_strategy()) {
        prop_assert_eq!(PrivateKey::parse(&key.to_wif()).unwrap(), key.clone());
        let p = key.public_key();
        prop_assert_eq!(PublicKey::parse(&p.to_fio_string()).unwrap(), p);
        prop_assert_eq!(PublicKey::parse(&p.to_k1_string()).unwrap(), p);
        prop_assert_eq!(p.actor().len(), 12);
    }

    #[test]
    fn cipher_round_trip(a in key_strategy(), b in key_strategy(), plain in proptest::collection::vec(any::<u8>(), 0..300), iv in any::<[u8; 16]>()) {
        let s = shared_secret(&a, &b.public_key());
        prop_assert_eq!(s, shared_secret(&b, &a.public_key()));
        let c = encrypt_bytes(&s, &plain, &iv);
        prop_assert_eq!(decrypt_bytes(&s, &c).unwrap(), plain);
    }

    #[test]
    fn content_round_trip(type_index in 0usize..2, values in proptest::collection::vec(proptest::option::of("\\PC{0,40}"), 10)) {
        // Types 0 and 1 (new_funds, record_obt_data) have no rules beyond shape
        // except OBT status, which is set to a legal value below.
        let t = &CONTENT_TYPES[type_index];
        let mut obj = Map::new();
        for ((name, kind), v) in t.fields.iter().zip(values.iter()) {
            let v = match (kind, v) {
                (_, _) if *name == "status" => Value::String("requested".into()),
                (fio_l2_protocol::content::FieldKind::String, v) => Value::String(v.clone().unwrap_or_default()),
                (_, Some(s)) => Value::String(s.clone()),
                (_, None) => Value::Null,
            };
            obj.insert((*name).to_string(), v);
        }
        let v = Value::Object(obj);
        let s = [3u8; 64];
        let b64 = encrypt_content(&s, t.name, &v, &[1u8; 16]).unwrap();
        prop_assert_eq!(decrypt_content(&s, t.name, &b64).unwrap(), v);
    }

    #[test]
    fn envelope_round_trips((key, m) in message_strategy()) {
        prop_assert_eq!(Message::unpack(&m.pack()).unwrap(), m.clone());
        let signed = m.clone().sign(&key, &CHAIN_ID).unwrap();
        let json = serde_json::to_vec(&signed.to_json_value(true)).unwrap();
        let parsed = SignedMessage::from_json(&json).unwrap();
        prop_assert_eq!(&parsed, &signed);
        prop_assert!(parsed.verify_signature(&CHAIN_ID).is_ok());
        prop_assert_eq!(SignedMessage::from_binary(&signed.to_binary()).unwrap(), signed.clone());
        let unsigned = serde_json::to_vec(&m.to_json_value()).unwrap();
        prop_assert_eq!(Message::from_json_unsigned(&unsigned).unwrap(), m);
        // The signature is bound to the chain id.
        prop_assert!(signed.verify_signature(&[0x22; 32]).is_err());
    }

    /// The direct JSON writer (with texts kept from parsing, or rendered)
    /// gives exactly the bytes of the `Value` form, for FIO and PUB_K1 input.
    #[test]
    fn json_string_is_the_value_form((key, m) in message_strategy(), with_id in any::<bool>()) {
        let signed = m.sign(&key, &CHAIN_ID).unwrap();
        let want = serde_json::to_string(&signed.to_json_value(with_id)).unwrap();
        prop_assert_eq!(&signed.to_json_string(with_id), &want);
        let parsed = SignedMessage::from_json(want.as_bytes()).unwrap();
        prop_assert_eq!(&parsed.to_json_string(with_id), &want);
        // The same envelope with its keys in the PUB_K1_ form: canonical output.
        let mut v = signed.to_json_value(false);
        let m2 = signed.message();
        v["sender_key"] = m2.sender_key.to_k1_string().into();
        v["recipient_encrypt_key"] = m2.recipient_encrypt_key.to_k1_string().into();
        let k1 = SignedMessage::from_json(&serde_json::to_vec(&v).unwrap()).unwrap();
        prop_assert_eq!(&k1.to_json_string(with_id), &want);
    }

    #[test]
    fn any_flipped_bit_fails((key, m) in message_strategy(), bit_seed in any::<u64>()) {
        let signed = m.sign(&key, &CHAIN_ID).unwrap();
        let bin = signed.to_binary();
        let bit = (bit_seed % (bin.len() as u64 * 8)) as usize;
        let mut bad = bin.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let outcome = SignedMessage::from_binary(&bad).and_then(|s| {
            let now = u64::from(s.message().created);
            s.check_offline(&CHAIN_ID, now, &TimePolicy { max_clock_skew: 0, max_ttl: u32::MAX })
        });
        prop_assert!(outcome.is_err(), "flipping bit {} still verified", bit);
    }
}

#[test]
fn every_bit_of_the_example_envelope_matters() {
    // Exhaustive over the protocol-v1.md example: every single-bit flip of its
    // binary form fails parsing or verification.
    let json = include_str!("../../../docs/examples/envelope-v1.json");
    let chain_id = fio_l2_protocol::envelope::parse_chain_id(
        "21dcae42c0182200e93f954a074011f9048a7624c6fe81d3c9541a614a88bd1c",
    )
    .unwrap();
    let signed = SignedMessage::from_json(json.as_bytes()).unwrap();
    let policy = TimePolicy {
        max_clock_skew: 0,
        max_ttl: u32::MAX,
    };
    let now = u64::from(signed.message().created);
    signed.check_offline(&chain_id, now, &policy).unwrap();
    let bin = signed.to_binary();
    for bit in 0..bin.len() * 8 {
        let mut bad = bin.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let r =
            SignedMessage::from_binary(&bad).and_then(|s| s.check_offline(&chain_id, now, &policy));
        assert!(r.is_err(), "bit {bit} flip verified");
    }
}
