//! The node's error answer: `{"error":{"code","message"}}` with an HTTP status.
//! Codes are stable strings clients match on; see docs/api.md.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use fio_l2_protocol::{Error as ProtocolError, ErrorCode};
use serde_json::json;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub field: Option<String>,
    /// Seconds for a Retry-After header (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn body(&self) -> serde_json::Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(f) = &self.field {
            e["field"] = json!(f);
        }
        json!({ "error": e })
    }
}

/// Protocol errors are client errors: 400, except the ones that say the
/// message is fine but not acceptable now or here (time, signature).
impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        let status = match e.code {
            ErrorCode::SignatureMismatch | ErrorCode::HighSSignature => StatusCode::UNAUTHORIZED,
            ErrorCode::CreatedInFuture
            | ErrorCode::Expired
            | ErrorCode::TtlTooLong
            | ErrorCode::IdMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            code: e.code.as_str().to_string(),
            message: e.message,
            field: e.field,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = s.to_string().parse() {
                r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        r
    }
}
