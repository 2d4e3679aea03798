//! `runtime` mode: one action container speaking OpenWhisk's action protocol.
//!
//! `POST /init` prepares the action once; `POST /run` runs one activation in a fresh instance,
//! concurrently with any others. The rules (statuses, sentences, sentinels, the `__OW_*`
//! environment) are those of the official Node.js runtime.

use crate::engines::Engines;
use crate::error::{ApiError, json_response};
use crate::logs::ActivationLogSink;
use crate::metrics::Metrics;
use crate::server::{invalid_json, read_bounded};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::post;
use ow_common::capabilities::Capabilities;
use ow_common::code::{RecentCode, decode_action_code};
use ow_common::limits::ActionLimits;
use ow_common::protocol::{InitRequest, RunRequest, sentences};
use ow_common::runtime::{ActionConfig, Activation, Completion, InitError, Limits, PreparedAction};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The largest `/init` body: 48 MB of code, base64-encoded, plus the JSON around it.
pub const MAX_INIT_BODY_BYTES: usize = 48 * 1024 * 1024 * 4 / 3 + 1024 * 1024;
/// The largest `/run` body: 1 MB of parameters plus the activation context and some margin.
pub const MAX_RUN_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Settings of a runtime-mode container.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Which mode serves the container (`runtime` or `executor`), for the metrics.
    pub mode: &'static str,
    /// Where cold starts are counted.
    pub metrics: Arc<Metrics>,
    /// The action's limits unless a Wasm-aware invoker sends its own (the `limits`
    /// annotation). Their timeout applies when a run carries no usable deadline (none, or
    /// already past); the result is bounded by the memory limit alone.
    pub limits: ActionLimits,
    /// `__OW_API_HOST` as the executor was given it, passed to every activation.
    pub api_host: Option<String>,
    /// Code decoded lately, shared by the containers of one executor, whose `/init`s often
    /// carry the same code. `None` in `runtime` mode: its one container decodes once.
    pub recent_code: Option<Arc<RecentCode>>,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            mode: "runtime",
            metrics: Arc::default(),
            limits: ActionLimits::default(),
            api_host: None,
            recent_code: None,
        }
    }
}

/// Where the container is in its life.
enum Phase {
    /// Waiting for `/init`.
    Uninitialized,
    /// An `/init` is preparing the action.
    Initializing,
    /// Ready to run.
    Ready(Arc<Ready>),
    /// `/init` failed; the container will not run anything.
    Failed,
}

/// A prepared action, the environment its init gave it, and its time limit when a run
/// carries no usable deadline.
struct Ready {
    action: Arc<dyn PreparedAction>,
    env: BTreeMap<String, String>,
    timeout: Duration,
}

/// One action container.
pub struct Container {
    engines: Arc<Engines>,
    settings: RuntimeSettings,
    logs: Arc<dyn ActivationLogSink>,
    phase: Mutex<Phase>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("engines", &self.engines)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Container {
    /// A fresh, uninitialised container.
    pub fn new(
        engines: Arc<Engines>,
        settings: RuntimeSettings,
        logs: Arc<dyn ActivationLogSink>,
    ) -> Self {
        Self {
            engines,
            settings,
            logs,
            phase: Mutex::new(Phase::Uninitialized),
        }
    }

    /// Handles the body of `/init`.
    pub async fn init(&self, request: InitRequest<'_>) -> Result<(), ApiError> {
        {
            let mut phase = self.phase.lock().expect("phase lock");
            self.refuse_second_init(&phase)?;
            if request.value.code.trim().is_empty() {
                return Err(ApiError::forbidden(sentences::MISSING_CODE));
            }
            *phase = Phase::Initializing;
        }
        let prepared = self.prepare(&request).await;
        let mut phase = self.phase.lock().expect("phase lock");
        match prepared {
            Ok(ready) => {
                *phase = Phase::Ready(Arc::new(ready));
                Ok(())
            }
            Err(error) => {
                *phase = Phase::Failed;
                drop(phase);
                tracing::info!(action = request.value.name.as_deref(), %error, "init failed");
                // The invoker waits for a sentinel on each stream after a failed init.
                self.logs.activation(&Default::default());
                Err(error.into())
            }
        }
    }

    /// As the Node.js runtime does: a second init is refused before its body is looked at
    /// (any JSON body; one that is not JSON is refused as such first, as its body parser does).
    fn refuse_second_init(&self, phase: &Phase) -> Result<(), ApiError> {
        if matches!(phase, Phase::Uninitialized) {
            return Ok(());
        }
        self.logs.stderr_line(&format!(
            "Internal system error: {}",
            sentences::ALREADY_INITIALIZED
        ));
        Err(ApiError::forbidden(sentences::ALREADY_INITIALIZED))
    }

    /// [`Self::refuse_second_init`] before an init body's fields are read, so that fields of
    /// the wrong type read as a second init; [`Self::init`] checks again under the lock it
    /// changes the phase under, for two inits at once.
    fn refuse_if_initialized(&self) -> Result<(), ApiError> {
        self.refuse_second_init(&self.phase.lock().expect("phase lock"))
    }

    async fn prepare(&self, request: &InitRequest<'_>) -> Result<Ready, InitError> {
        let value = &request.value;
        let main = value.main_or_default();
        let code = match &self.settings.recent_code {
            Some(recent) => recent.decode(&value.code, main)?,
            None => decode_action_code(&value.code, main)?,
        };
        let capabilities = Capabilities::from_annotations(value.annotations.as_ref())
            .map_err(InitError::Capability)?;
        // The executor's flags, unless a Wasm-aware invoker sent the action's own limits.
        let limits = self
            .settings
            .limits
            .with_annotations(value.annotations.as_ref())
            .map_err(InitError::Limits)?;
        let engine_limits = limits.engine_limits();
        let config = ActionConfig {
            capabilities,
            // A container returns whatever its action produced, as the official runtimes do:
            // its memory limit bounds the result, and the invoker, not the container, cuts
            // results at the platform's limit (`standalone` plays the invoker and does).
            limits: Limits {
                result_bytes: engine_limits.memory_bytes,
                ..engine_limits
            },
            main: value.main_or_default().to_owned(),
        };
        let engine = self.engines.for_action(value.annotations.as_ref())?;
        let started = Instant::now();
        let action = engine.prepare(code, config).await?;
        let init = started.elapsed();
        self.settings.metrics.cold_start(self.settings.mode, init);
        tracing::info!(
            action = value.name.as_deref(),
            prepare_us = init.as_micros() as u64,
            "action initialized"
        );
        Ok(Ready {
            action,
            env: value.env_strings(),
            timeout: limits.time_limit(),
        })
    }

    /// Handles the body of `/run`: one activation. The logs are written before returning.
    pub async fn run(&self, request: RunRequest) -> Result<serde_json::Value, ApiError> {
        let ready = match &*self.phase.lock().expect("phase lock") {
            Phase::Ready(ready) => ready.clone(),
            Phase::Uninitialized => return Err(ApiError::forbidden(sentences::NOT_INITIALIZED)),
            Phase::Initializing => {
                return Err(ApiError::forbidden("System not ready, status is starting."));
            }
            Phase::Failed => {
                return Err(ApiError::forbidden("System not ready, status is stopped."));
            }
        };
        let (deadline, time_limit) = deadline(&request, ready.timeout);
        let mut env = ready.env.clone();
        if let Some(api_host) = &self.settings.api_host {
            env.insert("__OW_API_HOST".to_owned(), api_host.clone());
        }
        env.extend(request.context);
        // Only the executor's own diagnostics name it, and they are off unless asked for.
        let activation_id = tracing::enabled!(tracing::Level::INFO)
            .then(|| env.get("__OW_ACTIVATION_ID").cloned())
            .flatten()
            .unwrap_or_default();
        tracing::debug!(activation_id, "activation started");
        let activation = Activation {
            params: request.value,
            env: env.into_iter().collect(),
            deadline,
            time_limit,
        };
        let started = Instant::now();
        let Completion { outcome, logs } = ready.action.run(activation).await;
        self.logs.activation(&logs);
        tracing::info!(
            activation_id,
            run_us = started.elapsed().as_micros() as u64,
            ok = outcome.is_ok(),
            "activation finished"
        );
        Ok(outcome?)
    }
}

/// The activation's deadline and time limit: from the run's `deadline` when it is in the
/// future, else (none sent, or clock skew) the action's `timeout` from now.
fn deadline(request: &RunRequest, timeout: Duration) -> (Instant, Duration) {
    let now = Instant::now();
    let now_epoch_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    match request.deadline_epoch_millis() {
        Some(deadline_ms) if deadline_ms > now_epoch_ms => {
            let remaining = Duration::from_millis(deadline_ms - now_epoch_ms);
            (now + remaining, remaining)
        }
        _ => (now + timeout, timeout),
    }
}

/// The routes of `runtime` mode.
pub fn router(container: Arc<Container>) -> Router {
    Router::new()
        .route("/init", post(init_handler))
        .route("/run", post(run_handler))
        .with_state(container)
}

async fn init_handler(State(container): State<Arc<Container>>, request: Request<Body>) -> Response {
    answer_init(&container, request.into_body()).await
}

async fn run_handler(State(container): State<Arc<Container>>, request: Request<Body>) -> Response {
    answer_run(&container, request.into_body()).await
}

/// Answers an `/init` body for `container`: `{"ok": true}` or the error.
pub async fn answer_init(container: &Container, body: Body) -> Response {
    let outcome = async {
        let body = read_bounded(body, MAX_INIT_BODY_BYTES).await?;
        let request = init_request(&body, container)?;
        container.init(request).await
    };
    match outcome.await {
        Ok(()) => json_response(StatusCode::OK, &json!({ "ok": true })),
        Err(error) => axum::response::IntoResponse::into_response(error),
    }
}

/// Reads an `/init` body: its code, hundreds of KiB, is borrowed, not copied. A JSON body
/// whose fields do not fit is a second init, not a bad request, once `container` has had one.
fn init_request<'a>(body: &'a [u8], container: &Container) -> Result<InitRequest<'a>, ApiError> {
    read_protocol_body(body, |value| {
        container.refuse_if_initialized()?;
        InitRequest::deserialize(value).map_err(|e| {
            ApiError::bad_request(format!(
                "The init body does not match {{\"value\": {{\"code\", \"main\", \"env\"}}}}: {e}"
            ))
        })
    })
}

/// Reads a `/run` body: its field names are borrowed, and only what the activation keeps is
/// allocated.
fn run_request(body: &[u8]) -> Result<RunRequest, ApiError> {
    read_protocol_body(body, |value| {
        RunRequest::from_body(value).map_err(|e| ApiError::bad_request(e.to_string()))
    })
}

/// Reads a body of the action protocol in place, its strings borrowed from `body`. A body
/// that read refuses is read again as a JSON value, as the official runtimes read it, and
/// `through_value` takes it from there: so a body that is not JSON is answered as such
/// whatever field comes first, a field of the wrong type is named, and a key sent twice
/// counts once, the last (as `JSON.parse` does), where a derived in-place read refuses it.
fn read_protocol_body<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    through_value: impl FnOnce(Value) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    if let Ok(request) = serde_json::from_slice(body) {
        return Ok(request);
    }
    let value = serde_json::from_slice(body).map_err(|e| invalid_json(&e))?;
    through_value(value)
}

/// Answers a `/run` body for `container`: the result or the error.
pub async fn answer_run(container: &Container, body: Body) -> Response {
    let outcome = async {
        let body = read_bounded(body, MAX_RUN_BODY_BYTES).await?;
        container.run(run_request(&body)?).await
    };
    match outcome.await {
        Ok(result) => json_response(StatusCode::OK, &result),
        Err(error) => axum::response::IntoResponse::into_response(error),
    }
}
