//! Content types: the ABI structs that are serialized, then encrypted, into an
//! envelope's `content`. Table-driven, so the JSON <-> ABI mapping is one
//! piece of code for every type. Documented field by field in docs/content-types.md.

use crate::abi::{Reader, Writer};
use crate::error::{Error, ErrorCode, Result};
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// ABI `string`: required.
    String,
    /// ABI `string?`: may be absent or null in JSON.
    OptString,
}

#[derive(Debug)]
pub struct ContentType {
    pub name: &'static str,
    pub fields: &'static [(&'static str, FieldKind)],
    /// Rules beyond the ABI shape, checked when content is built (never when
    /// a received message is decoded: we show what the sender sent).
    check: fn(&Map<String, Value>) -> Result<()>,
}

use FieldKind::{OptString as O, String as S};

pub const NEW_FUNDS: &str = "new_funds_content";
pub const RECORD_OBT_DATA: &str = "record_obt_data_content";
pub const SIGN_REQUEST: &str = "sign_request_content";
pub const ADDRESS_REQUEST: &str = "pub_address_request_content";
pub const TEXT_MESSAGE: &str = "text_message_content";

pub const OBT_STATUSES: &[&str] = &["requested", "rejected", "sent_to_blockchain", "cancelled"];

pub static CONTENT_TYPES: &[ContentType] = &[
    ContentType {
        name: NEW_FUNDS,
        fields: &[
            ("payee_public_address", S),
            ("amount", S),
            ("chain_code", S),
            ("token_code", S),
            ("memo", O),
            ("hash", O),
            ("offline_url", O),
        ],
        check: no_check,
    },
    ContentType {
        name: RECORD_OBT_DATA,
        fields: &[
            ("payer_public_address", S),
            ("payee_public_address", S),
            ("amount", S),
            ("chain_code", S),
            ("token_code", S),
            ("status", S),
            ("obt_id", S),
            ("memo", O),
            ("hash", O),
            ("offline_url", O),
        ],
        check: check_obt_status,
    },
    ContentType {
        name: SIGN_REQUEST,
        fields: &[
            ("chain_code", S),
            ("smart_contract_address", O),
            ("action", O),
            ("action_params", O),
            ("transaction", O),
            ("user_description", S),
            ("offline_url", O),
        ],
        check: check_sign_request,
    },
    ContentType {
        name: ADDRESS_REQUEST,
        fields: &[("chain_code", S), ("token_code", S), ("memo", O)],
        check: no_check,
    },
    ContentType {
        name: TEXT_MESSAGE,
        fields: &[("body", S), ("subject", O), ("reply_to", O)],
        check: check_text_message,
    },
];

pub fn content_type(name: &str) -> Result<&'static ContentType> {
    CONTENT_TYPES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownContentType,
                format!(
                    "unknown content type {name:?}; known: {}",
                    CONTENT_TYPES
                        .iter()
                        .map(|t| t.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
}

fn no_check(_: &Map<String, Value>) -> Result<()> {
    Ok(())
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn check_obt_status(m: &Map<String, Value>) -> Result<()> {
    let status = str_of(m, "status").unwrap_or_default();
    if !OBT_STATUSES.contains(&status) {
        return Err(Error::field(
            ErrorCode::BadContent,
            "status",
            format!("status must be one of {}", OBT_STATUSES.join(", ")),
        ));
    }
    Ok(())
}

fn check_sign_request(m: &Map<String, Value>) -> Result<()> {
    let has = |k| str_of(m, k).is_some_and(|s| !s.is_empty());
    let by_action = has("smart_contract_address") && has("action");
    if by_action == has("transaction") {
        return Err(Error::new(
            ErrorCode::BadContent,
            "a sign request names either a transaction, or a smart_contract_address and action (not both)",
        ));
    }
    if let Some(params) = str_of(m, "action_params") {
        serde_json::from_str::<Value>(params).map_err(|_| {
            Error::field(
                ErrorCode::BadContent,
                "action_params",
                "action_params must be JSON text",
            )
        })?;
    }
    Ok(())
}

fn check_text_message(m: &Map<String, Value>) -> Result<()> {
    if let Some(reply_to) = str_of(m, "reply_to") {
        if reply_to.len() != 64
            || !reply_to
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(Error::field(
                ErrorCode::BadContent,
                "reply_to",
                "reply_to must be a message id (64 lowercase hex digits)",
            ));
        }
    }
    Ok(())
}

impl ContentType {
    /// JSON object -> ABI bytes, strictly: every required field a string,
    /// optional ones string/null/absent, no other fields, and the type's rules.
    pub fn pack_json(&self, value: &Value) -> Result<Vec<u8>> {
        let obj = value
            .as_object()
            .ok_or_else(|| Error::new(ErrorCode::NotObject, "content must be a JSON object"))?;
        for key in obj.keys() {
            if !self.fields.iter().any(|(name, _)| name == key) {
                return Err(Error::field(
                    ErrorCode::UnknownField,
                    key,
                    format!("{} has no field {key:?}", self.name),
                ));
            }
        }
        let mut w = Writer::with_capacity(128);
        for (name, kind) in self.fields {
            match (kind, obj.get(*name)) {
                (_, Some(Value::String(s))) if *kind == S => w.string(s),
                (_, Some(Value::String(s))) => w.opt_string(Some(s)),
                (FieldKind::OptString, None | Some(Value::Null)) => w.opt_string(None),
                (FieldKind::String, None) => {
                    return Err(Error::field(
                        ErrorCode::MissingField,
                        name,
                        format!("{name} is required"),
                    ))
                }
                (_, Some(_)) => {
                    return Err(Error::field(
                        ErrorCode::WrongType,
                        name,
                        format!("{name} must be a string"),
                    ))
                }
            }
        }
        (self.check)(obj)?;
        Ok(w.buf)
    }

    /// ABI bytes -> JSON object (null optionals as null), strictly: no bytes left over.
    pub fn unpack_json(&self, bytes: &[u8]) -> Result<Value> {
        let mut r = Reader::new(bytes);
        let mut obj = Map::new();
        for (name, kind) in self.fields {
            let v = match kind {
                FieldKind::String => Value::String(r.string(name)?),
                FieldKind::OptString => r.opt_string(name)?.map_or(Value::Null, Value::String),
            };
            obj.insert((*name).to_string(), v);
        }
        r.finish()?;
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_funds_vector() {
        let t = content_type(NEW_FUNDS).unwrap();
        let v = json!({"payee_public_address":"purse.alice","amount":"1","chain_code":"FIO","token_code":"FIO"});
        let packed = t.pack_json(&v).unwrap();
        assert_eq!(
            hex::encode_upper(&packed),
            "0B70757273652E616C69636501310346494F0346494F000000"
        );
        let back = t.unpack_json(&packed).unwrap();
        assert_eq!(back["amount"], "1");
        assert_eq!(back["memo"], Value::Null);
    }

    #[test]
    fn strictness() {
        let t = content_type(NEW_FUNDS).unwrap();
        let e = t.pack_json(&json!({"amount":"1"})).unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::MissingField, Some("payee_public_address"))
        );
        let e = t
            .pack_json(&json!({"payee_public_address":"p","amount":1,"chain_code":"FIO","token_code":"FIO"}))
            .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::WrongType, Some("amount"))
        );
        let e = t
            .pack_json(&json!({"payee_public_address":"p","amount":"1","chain_code":"FIO","token_code":"FIO","x":"y"}))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownField);
        let packed = t.pack_json(&json!({"payee_public_address":"p","amount":"1","chain_code":"FIO","token_code":"FIO"})).unwrap();
        let mut longer = packed.clone();
        longer.push(0);
        assert_eq!(
            t.unpack_json(&longer).unwrap_err().code,
            ErrorCode::AbiTrailingBytes
        );
        assert_eq!(
            t.unpack_json(&packed[..packed.len() - 1]).unwrap_err().code,
            ErrorCode::AbiTruncated
        );
        assert_eq!(
            content_type("nope").unwrap_err().code,
            ErrorCode::UnknownContentType
        );
    }

    #[test]
    fn type_rules() {
        let obt = content_type(RECORD_OBT_DATA).unwrap();
        let mut v = json!({"payer_public_address":"a","payee_public_address":"b","amount":"1","chain_code":"BTC",
            "token_code":"BTC","status":"sent_to_blockchain","obt_id":"tx"});
        obt.pack_json(&v).unwrap();
        v["status"] = json!("paid");
        assert_eq!(
            obt.pack_json(&v).unwrap_err().field.as_deref(),
            Some("status")
        );

        let sr = content_type(SIGN_REQUEST).unwrap();
        sr.pack_json(
            &json!({"chain_code":"ETH","smart_contract_address":"0xabc","action":"transfer",
            "action_params":"{\"to\":\"0x1\"}","user_description":"pay"}),
        )
        .unwrap();
        sr.pack_json(&json!({"chain_code":"ETH","transaction":"f86c","user_description":"pay"}))
            .unwrap();
        assert!(sr
            .pack_json(&json!({"chain_code":"ETH","user_description":"pay"}))
            .is_err());
        assert!(sr.pack_json(&json!({"chain_code":"ETH","transaction":"f8","smart_contract_address":"0x","action":"a","user_description":"d"})).is_err());
        assert!(sr.pack_json(&json!({"chain_code":"ETH","smart_contract_address":"0x","action":"a","action_params":"{","user_description":"d"})).is_err());

        let tm = content_type(TEXT_MESSAGE).unwrap();
        tm.pack_json(&json!({"body":"hi"})).unwrap();
        assert!(tm
            .pack_json(&json!({"body":"hi","reply_to":"xyz"}))
            .is_err());
    }
}
