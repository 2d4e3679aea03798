//! The one place an error becomes an HTTP status and a `{"error": "<sentence>"}` body: every
//! error of every mode is an [`ApiError`] of some [`ErrorKind`], and [`ErrorKind::status`] is
//! the only mapping from what went wrong to a status code.

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ow_common::code::CodeError;
use ow_common::runtime::{InitError, RunError};
use serde::Serialize;
use serde_json::{Value, json};

/// The challenge a 401 carries, as OpenWhisk's controller sends it.
const BASIC_CHALLENGE: &str = "Basic realm=\"whisk rest service\"";

/// What went wrong, as far as the answer's status is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Accepted, but what answers it is not ready yet (a web action still running).
    NotReady,
    /// The request itself is malformed or names something invalid.
    BadRequest,
    /// No credentials, or wrong ones.
    Unauthenticated,
    /// Not allowed: another namespace, or not in the container's state.
    Forbidden,
    /// Nothing is there.
    NotFound,
    /// The resource does not take this method.
    MethodNotAllowed,
    /// The resource exists already, or changed meanwhile.
    Conflict,
    /// The body, or the code in it, is over its limit.
    TooLarge,
    /// The action failed: bad code, a trap, a timeout, no valid result.
    ActionFailed,
    /// The server itself failed.
    Internal,
}

impl ErrorKind {
    /// The HTTP status of an error of this kind: the only place that decides one.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NotReady => StatusCode::ACCEPTED,
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ActionFailed => StatusCode::BAD_GATEWAY,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error answer: what kind of error, and the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What went wrong, which decides the status.
    pub kind: ErrorKind,
    /// The sentence put in the `error` field.
    pub message: String,
}

impl ApiError {
    /// An error of any kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// The request is not allowed (in the container's state, or for these credentials).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// There is nothing at what the request names.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// The action failed (bad code, trap, timeout, no valid result).
    pub fn action_failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ActionFailed, message)
    }

    /// The server failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The answer for this error with `body`: its status, and the challenge a 401 carries.
    pub fn response_with(&self, body: &Value) -> Response {
        let mut response = json_response(self.status(), body);
        if self.kind == ErrorKind::Unauthenticated {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
        }
        response
    }
}

/// Who learns that an action could not be prepared: it decides the status of the action's
/// own faults. The executor's own failure is a 500 for either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preparing {
    /// The action container protocol's `/init` (`runtime` and `executor` modes), answered with
    /// the official runtimes' statuses: 403 without code, 413 for too much, else 502.
    Init,
    /// A create or update of an action (`standalone`, playing the controller): the code is
    /// the request's, so its faults are a 400.
    Create,
}

impl ApiError {
    /// The answer when an action could not be prepared for `preparing`.
    pub fn not_prepared(error: InitError, preparing: Preparing) -> Self {
        let kind = match (&error, preparing) {
            (InitError::Engine(_), _) => ErrorKind::Internal,
            (InitError::Code(CodeError::TooLarge(_)), _) => ErrorKind::TooLarge,
            (InitError::Code(CodeError::Missing), Preparing::Init) => ErrorKind::Forbidden,
            (_, Preparing::Init) => ErrorKind::ActionFailed,
            (_, Preparing::Create) => ErrorKind::BadRequest,
        };
        let message = match kind {
            ErrorKind::BadRequest => format!("The action code cannot run: {error}"),
            _ => error.to_string(),
        };
        Self::new(kind, message)
    }
}

impl From<InitError> for ApiError {
    fn from(error: InitError) -> Self {
        Self::not_prepared(error, Preparing::Init)
    }
}

impl From<RunError> for ApiError {
    fn from(error: RunError) -> Self {
        Self::action_failed(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.response_with(&json!({ "error": self.message }))
    }
}

/// A JSON answer with an exact `Content-Length` (the invoker treats a chunked answer as none).
pub fn json_response(status: StatusCode, body: &(impl Serialize + ?Sized)) -> Response {
    let bytes = serde_json::to_vec(body).expect("answers serialize");
    let mut response = Response::new(axum::body::Body::from(bytes));
    *response.status_mut() = status;
    // A static header value: every `/run` answers through here.
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_401_carries_the_basic_challenge_and_other_errors_none() {
        let refused = ApiError::new(ErrorKind::Unauthenticated, "no").into_response();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.headers().get(WWW_AUTHENTICATE).unwrap(),
            BASIC_CHALLENGE
        );
        let missing = ApiError::not_found("gone").into_response();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(missing.headers().get(WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn init_errors_take_the_official_runtimes_statuses() {
        let status = |error: InitError| ApiError::from(error).status();
        assert_eq!(
            status(InitError::Code(CodeError::Missing)),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(InitError::Code(CodeError::TooLarge(1))),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(InitError::InvalidModule("x".into())),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status(InitError::Engine("x".into())),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn code_refused_at_create_is_the_request_s_fault_and_an_engine_failure_the_server_s() {
        let refused = |error: InitError| {
            let refused = ApiError::not_prepared(error, Preparing::Create);
            (refused.status(), refused.message)
        };
        assert_eq!(
            refused(InitError::InvalidModule("x".into())),
            (
                StatusCode::BAD_REQUEST,
                "The action code cannot run: The action code is not a valid WebAssembly \
                 module: x"
                    .to_owned()
            )
        );
        assert_eq!(
            refused(InitError::Code(CodeError::Missing)).0,
            StatusCode::BAD_REQUEST
        );
        // A module too large to compile within the executor's limits is the request's too.
        assert_eq!(
            refused(InitError::CompileMemory(2 << 30)),
            (
                StatusCode::BAD_REQUEST,
                "The action code cannot run: The action code needs more memory to compile than \
                 this executor's limit of 2048 MiB."
                    .to_owned()
            )
        );
        assert_eq!(
            refused(InitError::CompileTimeout(std::time::Duration::from_secs(
                300
            )))
            .0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            refused(InitError::Engine("cannot start wamr".into())),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The executor could not prepare the action: cannot start wamr".to_owned()
            )
        );
    }
}
