//! The load generator: HTTP/1.1 over hyper on tokio, closed loop (each client sends its next
//! request when the last one is answered), with keep-alive connections or a new connection per
//! request (`Connection: close`, as OpenWhisk's invoker talks to an action container).
//!
//! Clients record every completion (when it ended, how long it took, which request of the
//! mix, whether it answered 200); the subcommands cut windows out of those samples. Clients can
//! be added while a run goes on (the concurrency ramp), and a run may be bounded by a count of
//! requests (soak) rather than by time.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How a client uses connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Connection {
    /// One connection per client, reused for every request.
    KeepAlive,
    /// A new connection for every request, closed after the answer (OpenWhisk's invoker).
    PerRequest,
}

impl Connection {
    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::KeepAlive => "keep-alive",
            Self::PerRequest => "new connection",
        }
    }
}

/// One request to send again and again: a POST (or PUT) of a JSON body.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: hyper::Method,
    /// Path and query.
    pub path: String,
    /// The JSON body.
    pub body: Bytes,
    /// An `Authorization` header, if any.
    pub authorization: Option<HeaderValue>,
}

impl Request {
    /// A POST of `body` to `path`.
    pub fn post(path: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: hyper::Method::POST,
            path: path.into(),
            body: Bytes::from(serde_json::to_vec(body).expect("JSON values serialize")),
            authorization: None,
        }
    }

    /// A PUT of `body` to `path`.
    pub fn put(path: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: hyper::Method::PUT,
            ..Self::post(path, body)
        }
    }

    /// The same request with HTTP basic authentication as `user:password`.
    pub fn with_basic_auth(mut self, credentials: &str) -> Self {
        let encoded = ow_common::code::encode_base64(credentials.as_bytes());
        self.authorization =
            Some(HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is ASCII"));
        self
    }
}

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "the answer is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// This answer if its status is 200, else an error that quotes it.
    pub fn ok(self) -> anyhow::Result<Self> {
        anyhow::ensure!(
            self.status == 200,
            "answered {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        Ok(self)
    }
}

/// A client of one server: sends requests one after another over its connection(s).
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    mode: Connection,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client of `addr` that uses connections as `mode` says.
    pub fn new(addr: SocketAddr, mode: Connection) -> Self {
        Self {
            addr,
            mode,
            sender: None,
        }
    }

    /// Sends `request` and reads the whole answer.
    pub async fn send(&mut self, request: &Request) -> anyhow::Result<Answer> {
        let close = self.mode == Connection::PerRequest;
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => connect(self.addr).await?,
        };
        sender.ready().await.context("the connection closed")?;
        let mut builder = hyper::Request::builder()
            .method(request.method.clone())
            .uri(request.path.as_str())
            .header(HOST, "127.0.0.1")
            .header(CONTENT_TYPE, "application/json");
        if close {
            builder = builder.header(CONNECTION, "close");
        }
        if let Some(authorization) = &request.authorization {
            builder = builder.header(AUTHORIZATION, authorization.clone());
        }
        let response = sender
            .send_request(builder.body(Full::new(request.body.clone()))?)
            .await
            .context("the request failed")?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .context("the answer could not be read")?
            .to_bytes();
        if !close {
            self.sender = Some(sender);
        }
        Ok(Answer { status, body })
    }
}

/// Opens a connection and drives it on its own task.
async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request on a new connection.
pub async fn post(addr: SocketAddr, request: &Request) -> anyhow::Result<Answer> {
    Client::new(addr, Connection::PerRequest)
        .send(request)
        .await
}

/// Requests to choose from, each with a weight: one request, or a workload's mix.
#[derive(Debug, Clone)]
pub struct Mix {
    requests: Vec<Request>,
    /// Cumulative weights, the last one 1.
    cumulative: Vec<f64>,
}

impl Mix {
    /// Always `request`.
    pub fn one(request: Request) -> Self {
        Self::weighted(vec![(request, 1.0)])
    }

    /// Each request with a probability proportional to its weight.
    pub fn weighted(requests: Vec<(Request, f64)>) -> Self {
        assert!(!requests.is_empty(), "a mix has a request");
        let total: f64 = requests.iter().map(|(_, weight)| weight).sum();
        let mut sum = 0.0;
        let cumulative = requests
            .iter()
            .map(|(_, weight)| {
                sum += weight / total;
                sum
            })
            .collect();
        Self {
            requests: requests.into_iter().map(|(request, _)| request).collect(),
            cumulative,
        }
    }

    /// The index of a request drawn with its weight's probability, from `u` in [0, 1).
    pub fn index_for(&self, u: f64) -> usize {
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.requests.len() - 1)
    }

    /// The request at `index`.
    pub fn request(&self, index: usize) -> &Request {
        &self.requests[index]
    }

    /// How many requests the mix holds.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether the mix is empty (never: a mix has a request).
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// One completed request.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was answered, since the run started.
    pub end: Duration,
    /// How long it took.
    pub latency: Duration,
    /// Which request of the mix.
    pub kind: usize,
    /// Whether it was answered 200.
    pub ok: bool,
}

/// What the clients of a run share.
#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    mode: Connection,
    mix: Mix,
    started: Instant,
    stop: AtomicBool,
    completed: AtomicU64,
    failed: AtomicU64,
    /// Requests handed out, against `budget`.
    issued: AtomicU64,
    budget: Option<u64>,
    first_error: Mutex<Option<String>>,
}

/// A closed-loop run of clients against one server.
#[derive(Debug)]
pub struct Load {
    shared: Arc<Shared>,
    clients: Vec<JoinHandle<Vec<Sample>>>,
}

/// The samples of a finished run.
#[derive(Debug)]
pub struct Finished {
    /// Every completion, in order of `end`.
    pub samples: Vec<Sample>,
    /// The first failure, as a sentence.
    pub first_error: Option<String>,
}

impl Load {
    /// Starts `clients` clients of `addr` (inside a tokio runtime); with a `budget`, the run
    /// ends after that many requests.
    pub fn start(
        addr: SocketAddr,
        mode: Connection,
        mix: Mix,
        clients: usize,
        budget: Option<u64>,
    ) -> Self {
        let mut load = Self {
            shared: Arc::new(Shared {
                addr,
                mode,
                mix,
                started: Instant::now(),
                stop: AtomicBool::new(false),
                completed: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                issued: AtomicU64::new(0),
                budget,
                first_error: Mutex::new(None),
            }),
            clients: Vec::new(),
        };
        for _ in 0..clients {
            load.add_client();
        }
        load
    }

    /// Adds one client.
    pub fn add_client(&mut self) {
        let shared = self.shared.clone();
        let seed = self.clients.len() as u64;
        self.clients
            .push(tokio::spawn(async move { run_client(shared, seed).await }));
    }

    /// How many clients run.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Requests answered so far (failed ones included).
    pub fn completed(&self) -> u64 {
        self.shared.completed.load(Ordering::Relaxed)
    }

    /// Requests that failed so far.
    pub fn failed(&self) -> u64 {
        self.shared.failed.load(Ordering::Relaxed)
    }

    /// Whether every client has stopped (a bounded run spent its budget).
    pub fn is_done(&self) -> bool {
        self.clients.iter().all(JoinHandle::is_finished)
    }

    /// Stops the clients once their current requests are answered, and collects the samples.
    pub async fn finish(self) -> anyhow::Result<Finished> {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for client in self.clients {
            samples.extend(client.await.context("a client panicked")?);
        }
        samples.sort_by_key(|sample| sample.end);
        let first_error = self
            .shared
            .first_error
            .lock()
            .expect("not poisoned")
            .clone();
        Ok(Finished {
            samples,
            first_error,
        })
    }
}

async fn run_client(shared: Arc<Shared>, seed: u64) -> Vec<Sample> {
    let mut client = Client::new(shared.addr, shared.mode);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut samples = Vec::with_capacity(4096);
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(budget) = shared.budget
            && shared.issued.fetch_add(1, Ordering::Relaxed) >= budget
        {
            break;
        }
        let kind = shared.mix.index_for(rng.f64());
        let sent = Instant::now();
        let result = client.send(shared.mix.request(kind)).await;
        let end = Instant::now();
        let ok = matches!(&result, Ok(answer) if answer.status == 200);
        if !ok {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = shared.first_error.lock().expect("not poisoned");
            if first.is_none() {
                *first = Some(match result {
                    Ok(answer) => format!(
                        "answered {}: {}",
                        answer.status,
                        String::from_utf8_lossy(&answer.body)
                    ),
                    Err(error) => format!("{error:#}"),
                });
            }
        }
        shared.completed.fetch_add(1, Ordering::Relaxed);
        samples.push(Sample {
            end: end - shared.started,
            latency: end - sent,
            kind,
            ok,
        });
        if !ok {
            // A server that refuses connections is not hammered in a tight loop.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    samples
}

/// The samples that ended inside `[from, to)`.
pub fn window(samples: &[Sample], from: Duration, to: Duration) -> &[Sample] {
    let start = samples.partition_point(|sample| sample.end < from);
    let end = samples.partition_point(|sample| sample.end < to);
    &samples[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str) -> Request {
        Request::post(path, &serde_json::json!({}))
    }

    #[test]
    fn a_mix_draws_each_request_with_its_weight() {
        let mix = Mix::weighted(vec![(request("/a"), 9.0), (request("/b"), 1.0)]);
        assert_eq!(mix.index_for(0.0), 0);
        assert_eq!(mix.index_for(0.899), 0);
        assert_eq!(mix.index_for(0.9), 1);
        assert_eq!(mix.index_for(0.999_999), 1);
        let mut rng = fastrand::Rng::with_seed(7);
        let draws = 100_000;
        let b = (0..draws).filter(|_| mix.index_for(rng.f64()) == 1).count();
        let share = b as f64 / draws as f64;
        assert!((share - 0.1).abs() < 0.01, "{share}");
    }

    #[test]
    fn one_request_is_always_drawn() {
        let mix = Mix::one(request("/run"));
        assert_eq!(mix.len(), 1);
        assert_eq!(mix.index_for(0.5), 0);
        assert_eq!(mix.request(0).path, "/run");
    }

    #[test]
    fn a_window_keeps_the_samples_that_ended_inside_it() {
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                end: Duration::from_millis(i * 100),
                latency: Duration::from_millis(1),
                kind: 0,
                ok: true,
            })
            .collect();
        let inside = window(
            &samples,
            Duration::from_millis(200),
            Duration::from_millis(500),
        );
        let ends: Vec<u128> = inside.iter().map(|s| s.end.as_millis()).collect();
        assert_eq!(ends, [200, 300, 400]);
    }

    #[test]
    fn basic_auth_is_base64_of_the_credentials() {
        let request = request("/").with_basic_auth("user:pass");
        assert_eq!(request.authorization.unwrap(), "Basic dXNlcjpwYXNz");
    }
}
