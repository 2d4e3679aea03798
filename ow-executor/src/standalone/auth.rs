//! Basic authentication with OpenWhisk's well-known guest key, and namespace resolution.

use crate::error::ApiError;
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use base64::Engine as _;

/// The guest credentials every OpenWhisk standalone install knows (`uuid:key`).
pub const GUEST_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";

/// The guest's namespace.
pub const GUEST_NAMESPACE: &str = "guest";

/// Checks the request's credentials and resolves the namespace in its path (`_` is the
/// caller's own). Returns the namespace.
pub fn authorize(headers: &HeaderMap, namespace: &str) -> Result<&'static str, ApiError> {
    let Some(header) = headers.get(AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "The resource requires authentication, which was not supplied with the request",
        ));
    };
    let supplied = header
        .to_str()
        .ok()
        .and_then(|value| {
            value
                .strip_prefix("Basic ")
                .or_else(|| value.strip_prefix("basic "))
        })
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        });
    if supplied.as_deref() != Some(GUEST_KEY.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "The supplied authentication is invalid",
        ));
    }
    match namespace {
        "_" | GUEST_NAMESPACE => Ok(GUEST_NAMESPACE),
        other => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("The supplied authentication is not authorized to access '{other}'."),
        )),
    }
}
