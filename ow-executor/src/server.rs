//! HTTP plumbing shared by every mode: the accept loop with graceful shutdown, bounded body
//! reading, and JSON answers for unknown routes.

use crate::error::{ApiError, json_response};
use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Reads a request body of at most `limit` bytes and parses it as JSON.
pub async fn read_json_body(body: Body, limit: usize) -> Result<Value, ApiError> {
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body is larger than the {limit} bytes allowed."),
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}.")))
}

/// Adds the JSON 404 answer for every path no route claims.
pub fn with_fallback(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are bounded per route by `read_json_body`.
        .layer(axum::extract::DefaultBodyLimit::disable())
}

async fn not_found(uri: Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("There is no resource at {}.", uri.path()),
    )
    .into_response()
}

async fn method_not_allowed(uri: Uri) -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({ "error": format!("{} does not accept this method.", uri.path()) }),
    )
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address: SocketAddr = listener.local_addr()?;
    tracing::info!(%address, "listening on {address}");
    axum::serve(listener, with_fallback(router))
        .with_graceful_shutdown(shutdown)
        .await
}
