//! The one place an error becomes an HTTP status and a `{"error": "<sentence>"}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ow_common::runtime::{InitError, RunError};
use serde_json::{Value, json};

/// An error answer: a status and the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The sentence put in the `error` field.
    pub message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 403: the request is not allowed in the container's state.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 502: the action failed (bad code, trap, timeout, no valid result).
    pub fn action_failed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, message)
    }
}

impl From<InitError> for ApiError {
    fn from(error: InitError) -> Self {
        match error {
            InitError::Code(ow_common::code::CodeError::Missing) => {
                Self::forbidden(error.to_string())
            }
            InitError::Code(ow_common::code::CodeError::TooLarge(_)) => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string())
            }
            other => Self::action_failed(other.to_string()),
        }
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> Self {
        Self::action_failed(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &json!({ "error": self.message }))
    }
}

/// A JSON answer with an exact `Content-Length` (the invoker treats a chunked answer as none).
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("JSON values serialize");
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}
