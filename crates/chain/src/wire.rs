//! JSON shapes of the FIO API subset we use (fio-standards.md section 7),
//! shared by the client (which parses them strictly) and the dev chain
//! (which produces them). Field names and types follow nodeos' chain_plugin.

use serde::{Deserialize, Serialize};

/// The constant expiration nodeos prints for every address since FIP-31
/// (addresses no longer expire): 2^32-1 seconds.
pub const ADDRESS_EXPIRATION: &str = "2106-02-07T06:28:15";

/// The generic sentence of every 400 `invalid_input` answer.
pub const INVALID_INPUT_MESSAGE: &str =
    "An invalid request was sent in, please check the nested errors for details.";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FioNamesRequest {
    pub fio_public_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FioDomainRecord {
    pub fio_domain: String,
    pub expiration: String,
    /// `uint8` on the chain: 0 or 1.
    pub is_public: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FioAddressRecord {
    pub fio_address: String,
    pub expiration: String,
    pub remaining_bundled_tx: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FioNamesResponse {
    pub fio_domains: Vec<FioDomainRecord>,
    pub fio_addresses: Vec<FioAddressRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PubAddressRequest {
    pub fio_address: String,
    pub chain_code: String,
    pub token_code: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PubAddressResponse {
    pub public_address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncryptKeyRequest {
    pub fio_address: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncryptKeyResponse {
    pub encrypt_public_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AvailCheckRequest {
    pub fio_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AvailCheckResponse {
    pub is_registered: u8,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActorRequest {
    pub fio_public_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActorResponse {
    pub actor: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountKeyRequest {
    pub account: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountKeyResponse {
    pub fio_public_key: String,
}

/// `get_info` answer; we read only `chain_id`, the rest is for realism.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InfoResponse {
    pub chain_id: String,
    #[serde(default)]
    pub head_block_num: u64,
    #[serde(default)]
    pub head_block_time: String,
}

/// `get_table_rows` request (the fields we honour).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TableRowsRequest {
    #[serde(default)]
    pub json: bool,
    pub code: String,
    pub scope: String,
    pub table: String,
    #[serde(default)]
    pub lower_bound: String,
    #[serde(default)]
    pub upper_bound: String,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub key_type: String,
    #[serde(default)]
    pub index_position: String,
    #[serde(default)]
    pub encode_type: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableRowsResponse {
    pub rows: Vec<serde_json::Value>,
    pub more: bool,
}

/// One `fields` entry of a 400 answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorField {
    pub name: String,
    pub value: String,
    pub error: String,
}

/// The chain's error bodies: 400 has `type`, `message`, `fields`; 404 only `message`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<ErrorField>,
}

impl ErrorBody {
    pub fn invalid_input(name: &str, value: &str, error: &str) -> Self {
        ErrorBody {
            kind: Some("invalid_input".into()),
            message: INVALID_INPUT_MESSAGE.into(),
            fields: vec![ErrorField {
                name: name.into(),
                value: value.into(),
                error: error.into(),
            }],
        }
    }

    pub fn not_found(message: &str) -> Self {
        ErrorBody {
            kind: None,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// The first field error, where 400 answers put the actual reason.
    pub fn field_error(&self) -> Option<&str> {
        self.fields.first().map(|f| f.error.as_str())
    }
}
