//! HTTP plumbing shared by every mode: the accept loop with graceful shutdown (bounded by a
//! grace period), bounded body reading, the reading of whatever body a route left unread (so
//! that every keep-alive connection stays usable), and JSON answers for unknown routes.

use crate::error::{ApiError, ErrorKind};
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::CONNECTION;
use axum::http::{HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use serde_json::Value;
use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};

/// How long in-flight requests may go on after the shutdown signal, by default: half of the
/// 60 s default action time limit, well inside the 30 s orchestrators usually wait after
/// SIGTERM before they kill.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How much of a body its route did not read (one it ignores, or the rest of one over its
/// limit) is read and dropped before answering, so that a client that sends the whole body
/// before reading (most do) gets to read the answer on a connection it can go on using; past
/// this the answer says `Connection: close` and the connection is closed on the rest.
const MAX_DRAINED_BYTES: u64 = 64 * 1024 * 1024;

/// The most [`read_bounded`] sets aside before the bytes arrive.
const MAX_RESERVED_BYTES: usize = 512 * 1024;

/// How many connections the kernel may hold for us before we accept them. A burst of new
/// connections (the invoker opens one per activation) past the queue is dropped and each
/// client sends its SYN again a second later, so the queue is as long as the kernel allows:
/// Linux caps it at `net.core.somaxconn` (4096 by default since 5.4). Tokio's default is 1024,
/// and 10,000 concurrent activations overflowed it 13,550 times, 1 s late each time.
const LISTEN_BACKLOG: u32 = 65_535;

/// Listens on `address` with the longest accept queue the kernel grants ([`LISTEN_BACKLOG`]).
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As tokio's and std's own bind do on Unix: a restarted server can take its port back
    // while connections of the previous one are still in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Reads a request body of at most `limit` bytes and parses it as JSON.
pub async fn read_json_body(body: Body, limit: usize) -> Result<Value, ApiError> {
    let bytes = read_bounded(body, limit).await?;
    serde_json::from_slice(&bytes).map_err(|e| invalid_json(&e))
}

/// The answer to a request body that is not JSON.
pub fn invalid_json(error: &serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("The request body is not valid JSON: {error}."))
}

/// Reads at most `limit` bytes of `body`; a longer body is refused as soon as it passes the
/// limit (what is left of it is drained by [`with_fallback`]'s layer, not kept).
pub async fn read_bounded(mut body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    // Room for what the request says it sends (its Content-Length), so that a large body is
    // not copied again at every doubling; a claim past MAX_RESERVED_BYTES gets that much, and
    // the buffer grows from there only as the bytes really arrive.
    let announced = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(announced.min(limit).min(MAX_RESERVED_BYTES));
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            ApiError::bad_request(format!("The request body could not be read: {e}."))
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if bytes.len().saturating_add(data.len()) > limit {
            return Err(ApiError::new(
                ErrorKind::TooLarge,
                format!("The request body is larger than the {limit} bytes allowed."),
            ));
        }
        bytes.extend_from_slice(&data);
    }
    Ok(bytes)
}

/// Adds the JSON 404 answer for every path no route claims, and the layer that reads what
/// every route leaves of its request body.
pub fn with_fallback(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DrainUnreadBodyLayer)
}

async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(format!("There is no resource at {}.", uri.path())).into_response()
}

async fn method_not_allowed(uri: Uri) -> Response {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("{} does not accept this method.", uri.path()),
    )
    .into_response()
}

/// Runs the route, then reads and drops whatever of the request body it left unread, before
/// the answer goes out. A body left unread costs the connection: hyper closes it (without
/// saying so) when the rest of the body has not arrived yet, and the client's next request
/// on it fails.
///
/// Written as a plain layer rather than with `axum::middleware::from_fn`, which boxes and
/// clones the rest of the stack for every request: this runs for every `/run`.
#[derive(Debug, Clone, Copy)]
struct DrainUnreadBodyLayer;

impl<S> tower_layer::Layer<S> for DrainUnreadBodyLayer {
    type Service = DrainUnreadBody<S>;

    fn layer(&self, route: S) -> Self::Service {
        DrainUnreadBody { route }
    }
}

/// The service of [`DrainUnreadBodyLayer`] around one route.
#[derive(Debug, Clone)]
struct DrainUnreadBody<S> {
    route: S,
}

impl<S> tower_service::Service<Request> for DrainUnreadBody<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.route.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (parts, body) = request.into_parts();
        let returned = Arc::new(Mutex::new(None));
        let body = ReturnedOnDrop {
            body: Some(body),
            returned: returned.clone(),
        };
        let answered = self.route.call(Request::from_parts(parts, Body::new(body)));
        Box::pin(async move {
            let mut response = answered.await?;
            let unread = returned.lock().expect("unread body lock").take();
            if let Some(unread) = unread
                && !drain(unread, MAX_DRAINED_BYTES).await
            {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

/// Reads `body` to its end, dropping it, unless it holds more than `bound` bytes or fails.
/// True if it was read to its end.
async fn drain(mut body: Body, bound: u64) -> bool {
    let mut drained = 0u64;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(frame) = frame else {
            return false;
        };
        if let Some(data) = frame.data_ref() {
            drained = drained.saturating_add(data.len() as u64);
            if drained > bound {
                return false;
            }
        }
    }
    true
}

/// A request body that, dropped before its end, hands itself back to
/// [`DrainUnreadBody`] instead of being dropped with the connection's unread bytes.
struct ReturnedOnDrop {
    body: Option<Body>,
    returned: Arc<Mutex<Option<Body>>>,
}

impl HttpBody for ReturnedOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            self.body = None; // read to its end: nothing to hand back
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for ReturnedOnDrop {
    fn drop(&mut self) {
        if let Some(body) = self.body.take().filter(|body| !body.is_end_stream()) {
            *self.returned.lock().expect("unread body lock") = Some(body);
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves (SIGTERM, say). Then it stops
/// accepting connections and lets the requests in flight finish, for at most
/// [`DEFAULT_SHUTDOWN_GRACE`] or what [`Serve::shutdown_grace`] sets; whatever still runs after
/// that is dropped, and the server returns. Await the result to serve.
pub fn serve<S>(listener: TcpListener, router: Router, shutdown: S) -> Serve<S>
where
    S: Future<Output = ()> + Send + 'static,
{
    Serve {
        listener,
        router,
        shutdown,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
    }
}

/// A server to await, made by [`serve`].
#[must_use = "a server serves nothing until it is awaited"]
pub struct Serve<S> {
    listener: TcpListener,
    router: Router,
    shutdown: S,
    shutdown_grace: Duration,
}

impl<S> Serve<S> {
    /// How long requests in flight may go on after the shutdown signal.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }
}

impl<S> std::fmt::Debug for Serve<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish_non_exhaustive()
    }
}

impl<S> IntoFuture for Serve<S>
where
    S: Future<Output = ()> + Send + 'static,
{
    type Output = std::io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<S> Serve<S>
where
    S: Future<Output = ()> + Send + 'static,
{
    async fn run(self) -> std::io::Result<()> {
        let Self {
            listener,
            router,
            shutdown,
            shutdown_grace,
        } = self;
        let address: SocketAddr = listener.local_addr()?;
        tracing::info!(%address, "listening on {address}");
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            tracing::info!(
                grace_ms = shutdown_grace.as_millis() as u64,
                "stopped accepting connections; finishing the requests in flight"
            );
            // The receiver is gone only when the server already stopped.
            let _ = signalled.send(());
        };
        // Served as a `Router`, axum converts every route (`with_state(())`: a map and a boxed
        // service per route) on every connection, and the invoker opens one per activation.
        // Converted once here, a connection costs a clone of an `Arc`.
        let app: Router = with_fallback(router).with_state(());
        let server = axum::serve(listener, app.into_make_service())
            .with_graceful_shutdown(shutdown)
            .into_future();
        let grace_over = async move {
            if on_signal.await.is_err() {
                // The server stopped without a signal; it is the branch that ends the select.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(shutdown_grace).await;
        };
        tokio::select! {
            served = server => served,
            () = grace_over => {
                tracing::warn!(
                    grace_ms = shutdown_grace.as_millis() as u64,
                    "requests were still in flight when the shutdown grace ran out; dropping them"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{Notify, oneshot};

    /// A server whose `/slow` answers after `delay`; `started` is notified when a request
    /// arrives. Returns its address, the shutdown trigger and the serving task.
    async fn slow_server(
        delay: Duration,
        grace: Duration,
    ) -> (
        SocketAddr,
        oneshot::Sender<()>,
        Arc<Notify>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let started = Arc::new(Notify::new());
        let router = Router::new().route(
            "/slow",
            post({
                let started = started.clone();
                move || async move {
                    started.notify_one();
                    tokio::time::sleep(delay).await;
                    "done"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = tokio::spawn(
            serve(listener, router, shutdown)
                .shutdown_grace(grace)
                .into_future(),
        );
        (address, stop, started, server)
    }

    /// Sends `POST /slow` and reads until the server closes the connection.
    async fn request_slow(address: SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST /slow HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        // A reset connection reads as what arrived before it.
        let _ = stream.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_request_in_flight_at_shutdown_is_answered_before_serve_returns() {
        let (address, stop, started, server) =
            slow_server(Duration::from_millis(300), Duration::from_secs(30)).await;
        let client = tokio::spawn(request_slow(address));
        started.notified().await;
        stop.send(()).unwrap();
        let answer = client.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        server.await.unwrap().unwrap();
        // Nothing listens any more.
        assert!(tokio::net::TcpStream::connect(address).await.is_err());
    }

    #[tokio::test]
    async fn a_request_outliving_the_grace_is_dropped_and_serve_returns() {
        let (address, stop, started, server) =
            slow_server(Duration::from_secs(3600), Duration::from_millis(100)).await;
        let client = tokio::spawn(request_slow(address));
        started.notified().await;
        stop.send(()).unwrap();
        let served = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("serve returns once the grace is over");
        served.unwrap().unwrap();
        drop(client);
    }

    #[tokio::test]
    async fn the_accept_queue_holds_a_burst_past_tokios_default_of_1024() {
        // Connections the kernel queues complete their handshake before anyone accepts
        // them; one past the queue is dropped and its SYN sent again a second later, then
        // again, so with tokio's 1024 the connects past it never finish while nobody accepts.
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let burst = 1100;
        assert!(
            somaxconn >= burst,
            "net.core.somaxconn is {somaxconn} (Linux 5.4 and later default to 4096): no queue \
             past tokio's 1024 to test"
        );
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let connects: Vec<_> = (0..burst)
            .map(|_| tokio::spawn(tokio::net::TcpStream::connect(address)))
            .collect();
        let mut connected = Vec::with_capacity(burst);
        for connect in connects {
            let stream = tokio::time::timeout(Duration::from_secs(30), connect)
                .await
                .expect("a queued connect completes without an accept")
                .unwrap();
            connected.push(stream.unwrap());
        }
        assert_eq!(connected.len(), burst);
        drop(listener);
    }
}
