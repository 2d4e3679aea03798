//! The baselines served over HTTP, so that they meet the same load generator under the same
//! load as the executor: the hidden `ow-evaluation http-floor-server` subcommand, a plain
//! hyper server (HTTP/1.1, keep-alive, a multi-threaded tokio runtime like the executor's)
//! that reads each request body and answers
//! - `floor`: a fixed JSON document, the action's own answer: the ceiling of any server's
//!   request rate, and of the load generator's;
//! - `native`: the `hash` example run natively in the handler (in process);
//! - `native-process`: the `hash` example as one `ow-native-action` process per request.

use crate::Setup;
use crate::executor::Server;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// What the baseline server does per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Baseline {
    /// Answer a fixed JSON document.
    Floor,
    /// Run the native `hash` in the handler.
    Native,
    /// Run `ow-native-action` per request.
    NativeProcess,
}

impl Baseline {
    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Floor => "http-floor",
            Self::Native => "native",
            Self::NativeProcess => "native-process",
        }
    }
}

/// Arguments of `ow-evaluation http-floor-server`.
#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Where to write the `listening on ADDR` line.
    #[arg(long)]
    pub log_file: PathBuf,
    /// What to answer.
    #[arg(long, value_enum, default_value_t = Baseline::Floor)]
    pub mode: Baseline,
    /// The JSON document `floor` answers.
    #[arg(long, default_value = "{}")]
    pub answer: String,
    /// The `ow-native-action` binary of `native-process`.
    #[arg(long)]
    pub native_action: Option<PathBuf>,
}

struct State {
    mode: Baseline,
    answer: Bytes,
    native_action: PathBuf,
}

/// Serves until killed.
pub async fn serve(args: FloorArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log_file)
        .with_context(|| format!("cannot open {}", args.log_file.display()))?;
    writeln!(log, "listening on {addr}")?;
    let state = Arc::new(State {
        mode: args.mode,
        answer: Bytes::from(args.answer.into_bytes()),
        native_action: args.native_action.unwrap_or_default(),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    let (status, answer) = answer(&state, &body).await;
                    let mut response = Response::new(Full::new(answer));
                    *response.status_mut() = status;
                    response
                        .headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok::<_, hyper::Error>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(state: &State, body: &[u8]) -> (StatusCode, Bytes) {
    match state.mode {
        Baseline::Floor => (StatusCode::OK, state.answer.clone()),
        Baseline::Native => {
            let result = crate::native::hash(crate::native::run_params(body));
            (StatusCode::OK, Bytes::from(result.to_string()))
        }
        Baseline::NativeProcess => match run_process(state, body).await {
            Ok(line) => (StatusCode::OK, line),
            Err(error) => (
                StatusCode::BAD_GATEWAY,
                Bytes::from(serde_json::json!({"error": format!("{error:#}")}).to_string()),
            ),
        },
    }
}

/// Runs the native action on the request's parameters; its last line of stdout.
async fn run_process(state: &State, body: &[u8]) -> anyhow::Result<Bytes> {
    let params = crate::native::run_params(body).to_string();
    let mut child = tokio::process::Command::new(&state.native_action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", state.native_action.display()))?;
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    stdin.write_all(params.as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    anyhow::ensure!(
        output.status.success(),
        "the action exited with {}",
        output.status
    );
    let text = String::from_utf8(output.stdout)?;
    let line = text.lines().last().context("the action printed nothing")?;
    Ok(Bytes::from(line.to_owned()))
}

/// Starts a baseline server as a child process of this binary.
pub async fn start(
    setup: &Setup,
    mode: Baseline,
    answer: &serde_json::Value,
) -> anyhow::Result<Server> {
    let mut command = std::process::Command::new(&setup.evaluation);
    command
        .arg("http-floor-server")
        .arg("--mode")
        .arg(
            clap::ValueEnum::to_possible_value(&mode)
                .expect("every mode has a name")
                .get_name(),
        )
        .arg("--answer")
        .arg(answer.to_string())
        .arg("--native-action")
        .arg(&setup.native_action);
    Server::start(command).await
}
