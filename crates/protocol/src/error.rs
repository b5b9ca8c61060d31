//! One error type for the whole protocol core: a machine-readable code, the
//! envelope field it concerns (if any) and a human sentence. Node HTTP answers
//! and CLI messages are rendered from it, so codes are part of the API.

use std::fmt;

/// Machine-readable reason. `as_str` is stable: clients match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadJson,
    NotObject,
    MissingField,
    UnknownField,
    DuplicateField,
    WrongType,
    OutOfRange,
    BadVersion,
    BadContentType,
    UnknownContentType,
    BadAddress,
    NonCanonicalAddress,
    BadPublicKey,
    BadPrivateKey,
    BadSignature,
    HighSSignature,
    SignatureMismatch,
    KeyMismatch,
    BadBase64,
    BadCipherText,
    MacMismatch,
    BadPadding,
    BadContent,
    AbiTruncated,
    AbiTrailingBytes,
    AbiBadUtf8,
    IdMismatch,
    CreatedInFuture,
    Expired,
    ExpiresBeforeCreated,
    TtlTooLong,
    BadChainId,
    BadHex,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadJson => "bad_json",
            NotObject => "not_object",
            MissingField => "missing_field",
            UnknownField => "unknown_field",
            DuplicateField => "duplicate_field",
            WrongType => "wrong_type",
            OutOfRange => "out_of_range",
            BadVersion => "bad_version",
            BadContentType => "bad_content_type",
            UnknownContentType => "unknown_content_type",
            BadAddress => "bad_address",
            NonCanonicalAddress => "non_canonical_address",
            BadPublicKey => "bad_public_key",
            BadPrivateKey => "bad_private_key",
            BadSignature => "bad_signature",
            HighSSignature => "high_s_signature",
            SignatureMismatch => "signature_mismatch",
            KeyMismatch => "key_mismatch",
            BadBase64 => "bad_base64",
            BadCipherText => "bad_cipher_text",
            MacMismatch => "mac_mismatch",
            BadPadding => "bad_padding",
            BadContent => "bad_content",
            AbiTruncated => "abi_truncated",
            AbiTrailingBytes => "abi_trailing_bytes",
            AbiBadUtf8 => "abi_bad_utf8",
            IdMismatch => "id_mismatch",
            CreatedInFuture => "created_in_future",
            Expired => "expired",
            ExpiresBeforeCreated => "expires_before_created",
            TtlTooLong => "ttl_too_long",
            BadChainId => "bad_chain_id",
            BadHex => "bad_hex",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    /// The envelope or content field concerned, when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            field: None,
            message: message.into(),
        }
    }

    pub fn field(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        Error {
            code,
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// Attach a field name if none is set yet (used when a generic parser,
    /// e.g. for keys, is applied to a named envelope field).
    pub fn in_field(mut self, field: &str) -> Self {
        if self.field.is_none() {
            self.field = Some(field.to_string());
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({}): {}", self.code.as_str(), field, self.message),
            None => write!(f, "{}: {}", self.code.as_str(), self.message),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
