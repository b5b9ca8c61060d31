//! The v1 message envelope (docs/protocol-v1.md): ABI packing, id, digest,
//! proof of work, signing, strict JSON, and the offline validity checks 1-4.

use crate::abi::{Reader, Writer};
use crate::address::validate_address;
use crate::cipher::{check_cipher_shape, BASE64};
use crate::error::{Error, ErrorCode, Result};
use crate::hash::{leading_zero_bits, sha256, sha256_parts};
use crate::keys::{PrivateKey, PublicKey};
use crate::signature::Signature;
use base64::Engine;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;
use std::fmt::Write as _;

pub const VERSION: u8 = 1;
/// Largest nonce: JSON numbers must stay exact in every client (2^53 - 1).
pub const MAX_NONCE: u64 = (1 << 53) - 1;
/// Domain separation prefix of the signed digest.
pub const DIGEST_PREFIX: &[u8] = b"FIO-L2";

/// The envelope fields in ABI order; JSON may hold these plus `signature` and `id`.
pub const FIELDS: [&str; 11] = [
    "version",
    "content_type",
    "sender",
    "recipient",
    "sender_key",
    "sender_encrypt_key",
    "recipient_encrypt_key",
    "created",
    "expires",
    "nonce",
    "content",
];

/// An envelope without its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub version: u8,
    pub content_type: String,
    pub sender: String,
    pub recipient: String,
    pub sender_key: PublicKey,
    pub sender_encrypt_key: PublicKey,
    pub recipient_encrypt_key: PublicKey,
    pub created: u32,
    pub expires: u32,
    pub nonce: u64,
    /// Standard base64 of the cipher text, exactly as sent (it is what is signed).
    pub content: String,
}

/// Time rules of validity check 4; a node publishes its values in `/v1/info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimePolicy {
    /// How far in the future `created` may be, in seconds.
    pub max_clock_skew: u32,
    /// How far in the future `expires` may be, in seconds from now (plus the
    /// allowed clock skew).
    pub max_ttl: u32,
}

impl Default for TimePolicy {
    fn default() -> Self {
        TimePolicy {
            max_clock_skew: 300,
            max_ttl: 30 * 24 * 3600,
        }
    }
}

pub fn validate_content_type(t: &str) -> Result<()> {
    let ok = (1..=64).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    if !ok {
        return Err(Error::field(
            ErrorCode::BadContentType,
            "content_type",
            "content_type must be 1 to 64 characters of a-z, 0-9, '_' and '.'",
        ));
    }
    Ok(())
}

/// Decoded length of the content's cipher text, after checking its encoding and shape.
pub fn validate_content(content: &str) -> Result<usize> {
    let bytes = BASE64.decode(content).map_err(|e| {
        Error::field(
            ErrorCode::BadBase64,
            "content",
            format!("content is not standard padded base64: {e}"),
        )
    })?;
    check_cipher_shape(bytes.len()).map_err(|e| e.in_field("content"))?;
    Ok(bytes.len())
}

pub fn parse_chain_id(hex_str: &str) -> Result<[u8; 32]> {
    let v = hex::decode(hex_str.trim())
        .map_err(|_| Error::new(ErrorCode::BadChainId, "chain id must be 64 hex digits"))?;
    v.try_into().map_err(|_| {
        Error::new(
            ErrorCode::BadChainId,
            "chain id must be 32 bytes (64 hex digits)",
        )
    })
}

impl Message {
    /// Range and shape rules of checks 1-2 that need no clock, chain or signature.
    pub fn validate_fields(&self) -> Result<()> {
        if self.version != VERSION {
            return Err(Error::field(
                ErrorCode::BadVersion,
                "version",
                "version must be 1",
            ));
        }
        validate_content_type(&self.content_type)?;
        validate_address(&self.sender).map_err(|e| e.in_field("sender"))?;
        validate_address(&self.recipient).map_err(|e| e.in_field("recipient"))?;
        if self.expires <= self.created {
            return Err(Error::field(
                ErrorCode::ExpiresBeforeCreated,
                "expires",
                "expires must be greater than created",
            ));
        }
        if self.nonce > MAX_NONCE {
            return Err(Error::field(
                ErrorCode::OutOfRange,
                "nonce",
                "nonce must be at most 2^53-1",
            ));
        }
        validate_content(&self.content)?;
        Ok(())
    }

    pub fn pack(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(160 + self.content.len());
        w.u8(self.version);
        w.string(&self.content_type);
        w.string(&self.sender);
        w.string(&self.recipient);
        w.public_key(&self.sender_key);
        w.public_key(&self.sender_encrypt_key);
        w.public_key(&self.recipient_encrypt_key);
        w.u32(self.created);
        w.u32(self.expires);
        w.u64(self.nonce);
        w.string(&self.content);
        w.buf
    }

    /// Inverse of `pack`, with the same field rules as the JSON form.
    pub fn unpack(packed: &[u8]) -> Result<Message> {
        let mut r = Reader::new(packed);
        let m = Message {
            version: r.u8("version")?,
            content_type: r.string("content_type")?,
            sender: r.string("sender")?,
            recipient: r.string("recipient")?,
            sender_key: r.public_key("sender_key")?,
            sender_encrypt_key: r.public_key("sender_encrypt_key")?,
            recipient_encrypt_key: r.public_key("recipient_encrypt_key")?,
            created: r.u32("created")?,
            expires: r.u32("expires")?,
            nonce: r.u64("nonce")?,
            content: r.string("content")?,
        };
        r.finish()?;
        m.validate_fields()?;
        Ok(m)
    }

    /// `sha256(packed)`: the message id; its leading zero bits are the proof of work.
    pub fn id(&self) -> [u8; 32] {
        sha256(&self.pack())
    }

    pub fn pow_bits(&self) -> u32 {
        leading_zero_bits(&self.id())
    }

    /// Sign with the key that owns `sender`; it must be `sender_key`.
    pub fn sign(self, key: &PrivateKey, chain_id: &[u8; 32]) -> Result<SignedMessage> {
        if key.public_key() != self.sender_key {
            return Err(Error::field(
                ErrorCode::KeyMismatch,
                "sender_key",
                "the private key does not belong to sender_key",
            ));
        }
        self.validate_fields()?;
        let packed = self.pack();
        let signature = key.sign_digest(&digest_of(chain_id, &packed));
        Ok(SignedMessage::assemble(self, signature, packed))
    }

    /// Parse the JSON form of an unsigned envelope (no `signature`; `id` optional).
    pub fn from_json_unsigned(json: &[u8]) -> Result<Message> {
        let obj = parse_strict_object(json)?;
        let (m, sig, id, _) = fields_from_object(obj, false)?;
        debug_assert!(sig.is_none());
        if let Some(id) = id {
            check_id(&id, &m.id())?;
        }
        Ok(m)
    }

    fn to_json_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("version".into(), self.version.into());
        m.insert("content_type".into(), self.content_type.clone().into());
        m.insert("sender".into(), self.sender.clone().into());
        m.insert("recipient".into(), self.recipient.clone().into());
        m.insert("sender_key".into(), self.sender_key.to_fio_string().into());
        m.insert(
            "sender_encrypt_key".into(),
            self.sender_encrypt_key.to_fio_string().into(),
        );
        m.insert(
            "recipient_encrypt_key".into(),
            self.recipient_encrypt_key.to_fio_string().into(),
        );
        m.insert("created".into(), self.created.into());
        m.insert("expires".into(), self.expires.into());
        m.insert("nonce".into(), self.nonce.into());
        m.insert("content".into(), self.content.clone().into());
        m
    }

    pub fn to_json_value(&self) -> Value {
        Value::Object(self.to_json_map())
    }
}

/// `sha256("FIO-L2" || chain_id || packed)`: what the sender signs.
pub fn digest_of(chain_id: &[u8; 32], packed: &[u8]) -> [u8; 32] {
    sha256_parts(&[DIGEST_PREFIX, chain_id, packed])
}

/// A signed envelope. Holds its packed bytes and id, computed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedMessage {
    message: Message,
    signature: Signature,
    packed: Vec<u8>,
    id: [u8; 32],
    texts: KeyTexts,
}

/// The canonical text of `sender_key`, `sender_encrypt_key`,
/// `recipient_encrypt_key` and `signature`, kept from parsing when the input
/// already used the canonical form (`FIO...`, `SIG_K1_...`): base58 is a
/// bijection and the checksum was verified, so the input text is exactly what
/// encoding would give, and rendering the JSON again skips four base58
/// encodings (a sixth of a node's ingest cost). Not part of equality.
#[derive(Clone, Debug, Default)]
struct KeyTexts([Option<Box<str>>; 4]);

impl PartialEq for KeyTexts {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for KeyTexts {}

impl SignedMessage {
    fn assemble(message: Message, signature: Signature, packed: Vec<u8>) -> Self {
        let id = sha256(&packed);
        SignedMessage {
            message,
            signature,
            packed,
            id,
            texts: KeyTexts::default(),
        }
    }

    /// From a message whose fields are valid and a signature (not yet verified).
    pub fn new(message: Message, signature: Signature) -> Result<Self> {
        message.validate_fields()?;
        let packed = message.pack();
        Ok(Self::assemble(message, signature, packed))
    }

    /// Strict JSON parsing: checks 1-2 (every field, right types and ranges,
    /// nothing else, canonical addresses) and that an `id`, if given, matches.
    /// The signature is parsed but not verified: see `check_offline`.
    pub fn from_json(json: &[u8]) -> Result<SignedMessage> {
        let obj = parse_strict_object(json)?;
        let (m, sig, id, texts) = fields_from_object(obj, true)?;
        let sig = sig.expect("required when signed");
        let packed = m.pack();
        let mut signed = Self::assemble(m, sig, packed);
        signed.texts = texts;
        if let Some(id) = id {
            check_id(&id, &signed.id)?;
        }
        Ok(signed)
    }

    pub fn message(&self) -> &Message {
        &self.message
    }
    pub fn signature(&self) -> &Signature {
        &self.signature
    }
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }
    pub fn id(&self) -> [u8; 32] {
        self.id
    }
    pub fn id_hex(&self) -> String {
        crate::hash::to_hex(&self.id)
    }
    pub fn pow_bits(&self) -> u32 {
        leading_zero_bits(&self.id)
    }
    pub fn digest(&self, chain_id: &[u8; 32]) -> [u8; 32] {
        digest_of(chain_id, &self.packed)
    }

    /// Check 3: the signature is low-S and made by `sender_key` over the digest.
    pub fn verify_signature(&self, chain_id: &[u8; 32]) -> Result<()> {
        self.signature
            .verify(&self.digest(chain_id), &self.message.sender_key)
            .map_err(|e| e.in_field("signature"))
    }

    /// Check 4 at time `now` (unix seconds).
    pub fn check_time(&self, now: u64, policy: &TimePolicy) -> Result<()> {
        let created = u64::from(self.message.created);
        let expires = u64::from(self.message.expires);
        if created > now + u64::from(policy.max_clock_skew) {
            return Err(Error::field(
                ErrorCode::CreatedInFuture,
                "created",
                format!(
                    "created is more than {} s in the future",
                    policy.max_clock_skew
                ),
            ));
        }
        if expires <= now {
            return Err(Error::field(
                ErrorCode::Expired,
                "expires",
                "the message has expired",
            ));
        }
        // The sender's clock may run ahead by the allowed skew, as for `created`.
        if expires > now + u64::from(policy.max_ttl) + u64::from(policy.max_clock_skew) {
            return Err(Error::field(
                ErrorCode::TtlTooLong,
                "expires",
                format!(
                    "expires is more than the longest time to live ({} s) from now",
                    policy.max_ttl
                ),
            ));
        }
        Ok(())
    }

    /// Checks 1-4, cheapest first (1-2 held since parsing; time; signature).
    pub fn check_offline(&self, chain_id: &[u8; 32], now: u64, policy: &TimePolicy) -> Result<()> {
        self.check_time(now, policy)?;
        self.verify_signature(chain_id)
    }

    /// The JSON form; `with_id` adds the `id` field (as a node's answer may).
    pub fn to_json_value(&self, with_id: bool) -> Value {
        let mut m = self.message.to_json_map();
        m.insert("signature".into(), self.signature.to_string().into());
        if with_id {
            m.insert("id".into(), self.id_hex().into());
        }
        Value::Object(m)
    }

    /// The JSON text of [`to_json_value`](Self::to_json_value), byte for
    /// byte, written directly (no intermediate map) and reusing the key and
    /// signature text kept from parsing.
    pub fn to_json_string(&self, with_id: bool) -> String {
        let m = &self.message;
        let mut out = String::with_capacity(560 + m.content.len());
        let t = &self.texts.0;
        let text = |i: usize, render: &dyn Fn() -> String| -> std::borrow::Cow<'_, str> {
            match &t[i] {
                Some(s) => std::borrow::Cow::Borrowed(&**s),
                None => std::borrow::Cow::Owned(render()),
            }
        };
        // Writing to a String cannot fail.
        let _ = write!(out, "{{\"version\":{}", m.version);
        push_field_str(&mut out, "content_type", &m.content_type);
        push_field_str(&mut out, "sender", &m.sender);
        push_field_str(&mut out, "recipient", &m.recipient);
        let sender_key = text(0, &|| m.sender_key.to_fio_string());
        push_field_str(&mut out, "sender_key", &sender_key);
        let sek = text(1, &|| m.sender_encrypt_key.to_fio_string());
        push_field_str(&mut out, "sender_encrypt_key", &sek);
        let rek = text(2, &|| m.recipient_encrypt_key.to_fio_string());
        push_field_str(&mut out, "recipient_encrypt_key", &rek);
        for (name, n) in [
            ("created", u64::from(m.created)),
            ("expires", u64::from(m.expires)),
            ("nonce", m.nonce),
        ] {
            let _ = write!(out, ",\"{name}\":{n}");
        }
        push_field_str(&mut out, "content", &m.content);
        let sig = text(3, &|| self.signature.to_string());
        push_field_str(&mut out, "signature", &sig);
        if with_id {
            push_field_str(&mut out, "id", &self.id_hex());
        }
        out.push('}');
        out
    }

    /// Compact binary form for storage and peer transfer: `packed || sig65`.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.packed.len() + 65);
        out.extend_from_slice(&self.packed);
        out.extend_from_slice(&self.signature.to_bytes());
        out
    }

    pub fn from_binary(bytes: &[u8]) -> Result<SignedMessage> {
        if bytes.len() < 65 {
            return Err(Error::new(
                ErrorCode::AbiTruncated,
                "binary message shorter than a signature",
            ));
        }
        let (packed, sig) = bytes.split_at(bytes.len() - 65);
        let signature = Signature::from_bytes(sig.try_into().expect("65"))?;
        let message = Message::unpack(packed)?;
        Ok(Self::assemble(message, signature, packed.to_vec()))
    }
}

/// `,"name":"value"` for a field of a signed message. No escaping: every
/// such field is plain printable ASCII by construction (content_type and
/// the addresses pass `validate_fields`, content is checked base64, keys
/// and the signature are base58 texts that parsed, the id is hex), and a
/// signed message is only ever built after those checks. Skipping the scan
/// saves a pass over kilobytes of content for every stored message.
fn push_field_str(out: &mut String, name: &str, value: &str) {
    debug_assert!(is_plain_ascii(value.as_bytes()), "{name} needs escaping");
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":\"");
    out.push_str(value);
    out.push('"');
}

/// True when no byte of `s` needs a JSON escape: printable ASCII, no quote,
/// no backslash. Debug builds (every test) check each rendered field with it.
fn is_plain_ascii(s: &[u8]) -> bool {
    s.chunks(32).all(|chunk| {
        chunk.iter().fold(true, |ok, &b| {
            ok & (0x20..0x7f).contains(&b) & (b != b'"') & (b != b'\\')
        })
    })
}

fn check_id(given: &str, actual: &[u8; 32]) -> Result<()> {
    if given != crate::hash::to_hex(actual) {
        return Err(Error::field(
            ErrorCode::IdMismatch,
            "id",
            "id does not match sha256 of the packed message",
        ));
    }
    Ok(())
}

/// A JSON object whose keys are unique (serde_json would keep the last of
/// duplicates silently; two parsers disagreeing on a signed message is a hazard).
struct StrictObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<StrictObject, A::Error> {
                let mut out: Vec<(String, Value)> = Vec::with_capacity(13);
                while let Some(k) = map.next_key::<String>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(serde::de::Error::custom(format!("duplicate field {k:?}")));
                    }
                    if out.len() >= 64 {
                        return Err(serde::de::Error::custom("too many fields"));
                    }
                    out.push((k, map.next_value()?));
                }
                Ok(StrictObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn parse_strict_object(json: &[u8]) -> Result<Vec<(String, Value)>> {
    match serde_json::from_slice::<StrictObject>(json) {
        Ok(o) => Ok(o.0),
        Err(e) => {
            let msg = e.to_string();
            if msg.starts_with("duplicate field") {
                Err(Error::new(ErrorCode::DuplicateField, msg))
            } else if e.is_data() {
                Err(Error::new(
                    ErrorCode::NotObject,
                    "the envelope must be a JSON object",
                ))
            } else {
                Err(Error::new(
                    ErrorCode::BadJson,
                    format!("malformed JSON: {msg}"),
                ))
            }
        }
    }
}

fn wrong_type(field: &str, what: &str) -> Error {
    Error::field(
        ErrorCode::WrongType,
        field,
        format!("{field} must be {what}"),
    )
}

fn get_str(v: Value, field: &str) -> Result<String> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(wrong_type(field, "a string")),
    }
}

fn get_uint(v: &Value, field: &str, max: u64) -> Result<u64> {
    let n = match v {
        Value::Number(n) => n,
        _ => return Err(wrong_type(field, "an integer (JSON number)")),
    };
    match n.as_u64() {
        Some(x) if x <= max => Ok(x),
        Some(_) => Err(Error::field(
            ErrorCode::OutOfRange,
            field,
            format!("{field} must be at most {max}"),
        )),
        None if n.is_i64() => Err(Error::field(
            ErrorCode::OutOfRange,
            field,
            format!("{field} must not be negative"),
        )),
        None => Err(wrong_type(
            field,
            "an integer, without fraction or exponent",
        )),
    }
}

/// The key and, when the text was in the canonical `FIO...` form, the text.
fn get_key(v: Value, field: &str, text: &mut Option<Box<str>>) -> Result<PublicKey> {
    let s = get_str(v, field)?;
    let key = PublicKey::parse(&s).map_err(|e| e.in_field(field))?;
    if s.starts_with("FIO") {
        *text = Some(s.into_boxed_str());
    }
    Ok(key)
}

type Parsed = (Message, Option<Signature>, Option<String>, KeyTexts);

fn fields_from_object(obj: Vec<(String, Value)>, signed: bool) -> Result<Parsed> {
    let mut slots: [Option<Value>; 11] = Default::default();
    let mut signature = None;
    let mut id = None;
    for (k, v) in obj {
        if let Some(i) = FIELDS.iter().position(|f| *f == k) {
            slots[i] = Some(v);
        } else if k == "signature" && signed {
            signature = Some(v);
        } else if k == "id" {
            id = Some(v);
        } else {
            let why = if k == "signature" {
                "an unsigned envelope must not carry a signature".to_string()
            } else {
                format!("unknown field {k:?}: nothing unsigned is stored or relayed")
            };
            return Err(Error::field(ErrorCode::UnknownField, &k, why));
        }
    }
    for (i, f) in FIELDS.iter().enumerate() {
        if slots[i].is_none() {
            return Err(Error::field(
                ErrorCode::MissingField,
                f,
                format!("{f} is required"),
            ));
        }
    }
    if signed && signature.is_none() {
        return Err(Error::field(
            ErrorCode::MissingField,
            "signature",
            "signature is required",
        ));
    }
    let mut take = |i: usize| slots[i].take().expect("checked present");
    let mut texts = KeyTexts::default();
    let [t_sender_key, t_sek, t_rek, t_sig] = &mut texts.0;
    let version = get_uint(&take(0), "version", u64::from(u8::MAX)).map_err(|e| {
        if e.code == ErrorCode::OutOfRange {
            Error::field(ErrorCode::BadVersion, "version", "version must be 1")
        } else {
            e
        }
    })?;
    let m = Message {
        version: version as u8,
        content_type: get_str(take(1), "content_type")?,
        sender: get_str(take(2), "sender")?,
        recipient: get_str(take(3), "recipient")?,
        sender_key: get_key(take(4), "sender_key", t_sender_key)?,
        sender_encrypt_key: get_key(take(5), "sender_encrypt_key", t_sek)?,
        recipient_encrypt_key: get_key(take(6), "recipient_encrypt_key", t_rek)?,
        created: get_uint(&take(7), "created", u64::from(u32::MAX))? as u32,
        expires: get_uint(&take(8), "expires", u64::from(u32::MAX))? as u32,
        nonce: get_uint(&take(9), "nonce", MAX_NONCE)?,
        content: get_str(take(10), "content")?,
    };
    m.validate_fields()?;
    let signature = match signature {
        Some(v) => {
            let s = get_str(v, "signature")?;
            let sig = Signature::parse(&s).map_err(|e| e.in_field("signature"))?;
            *t_sig = Some(s.into_boxed_str());
            Some(sig)
        }
        None => None,
    };
    let id = match id {
        Some(v) => Some(get_str(v, "id")?),
        None => None,
    };
    Ok((m, signature, id, texts))
}

#[cfg(test)]
mod tests {
    use super::is_plain_ascii;

    #[test]
    fn plain_ascii_finds_a_byte_needing_escape_anywhere() {
        let naive = |s: &[u8]| {
            s.iter()
                .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        };
        let base = vec![b'A'; 100];
        assert!(is_plain_ascii(&base));
        assert!(is_plain_ascii(b""));
        for at in [0, 31, 32, 33, 63, 64, 99] {
            for bad in [b'"', b'\\', 0x1f, 0x7f, 0xc3, b'\n'] {
                let mut s = base.clone();
                s[at] = bad;
                assert!(!is_plain_ascii(&s), "byte {bad:#x} at {at}");
                assert_eq!(is_plain_ascii(&s), naive(&s));
            }
        }
    }
}
