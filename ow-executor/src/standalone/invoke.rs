//! Invoking an action: merge parameters, take a warm (or cold-prepare) container, wait for a
//! concurrency slot, run, record the activation before answering. Every activation runs in a
//! task of its own ([`Standalone::start`]), which an invoke, a web action or a trigger waits
//! for or not; an activation answered with 202 before it finished is recorded as pending
//! first, so that a server stopped meanwhile still accounts for it when it starts again.

use super::api::{QueryMap, flag, not_found, number};
use super::auth::{ActionPath, Caller};
use super::packages::Resolved;
use super::records::{
    ActionExec, ActivationRecord, ActivationResponse, ActivationStatus, epoch_millis, log_lines,
};
use super::store::StoreError;
use super::{RestError, Standalone, new_id, with_activation_id};
use crate::error::{ApiError, ErrorKind, json_response};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use ow_common::runtime::{Activation, Completion, RunError};
use serde_json::{Map, Value, json};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;

/// The largest invoke body: OpenWhisk's 1 MB of parameters.
pub const MAX_INVOKE_BODY_BYTES: usize = 1024 * 1024;
/// The longest a blocking invoke waits before answering 202 with the activation id.
pub const MAX_BLOCKING_WAIT_MS: u64 = 60_000;
/// OpenWhisk's sentence for an invoke that sets a parameter it may not.
pub const PARAMETERS_NOT_ALLOWED: &str =
    "Request defines parameters that are not allowed (e.g., reserved properties).";

/// An activation's recording, as its task ends with it.
pub type Recorded = Result<ActivationRecord, StoreError>;

/// A future of a recording, boxed for the recursion of sequences.
pub type RecordedFuture<'a> = Pin<Box<dyn Future<Output = Recorded> + Send + 'a>>;

/// `POST …/actions/[{package}/]{name}?blocking=&result=&timeout=`.
pub async fn invoke(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    action: ActionPath,
    Query(query): QueryMap,
    request: Request<Body>,
) -> Result<Response, RestError> {
    let received = Instant::now();
    let blocking = flag(&query, "blocking", false)?;
    let result_only = flag(&query, "result", false)?;
    let wait_ms =
        number(&query, "timeout", MAX_BLOCKING_WAIT_MS, u64::MAX >> 1)?.min(MAX_BLOCKING_WAIT_MS);
    let params = invoke_params(request.into_body()).await?;
    let resolved = app
        .resolve(&action.in_namespace(namespace))?
        .ok_or_else(not_found)?;
    check_final(&resolved, &params)?;
    let started = app.start(resolved, params, received);
    let activation_id = started.activation_id.clone();
    let answer = if !blocking {
        started.accepted(&app).map(|()| accepted(&activation_id))
    } else {
        match started.wait(&app, Duration::from_millis(wait_ms)).await {
            Ok(None) => Ok(accepted(&activation_id)),
            Ok(Some(activation)) => {
                let status = activation_status(activation.response.status);
                Ok(if result_only {
                    json_response(status, &activation.response.result)
                } else {
                    json_response(status, &activation)
                })
            }
            Err(error) => Err(error),
        }
    };
    let answer = answer.unwrap_or_else(IntoResponse::into_response);
    Ok(with_activation_id(answer, &activation_id))
}

/// 202 with the activation id: the activation goes on, and the caller polls for it.
fn accepted(activation_id: &str) -> Response {
    json_response(
        StatusCode::ACCEPTED,
        &json!({ "activationId": activation_id }),
    )
}

/// Refuses parameters that set one the action declares final (OpenWhisk's `final`
/// annotation).
pub fn check_final(action: &Resolved, params: &Map<String, Value>) -> Result<(), ApiError> {
    let fixed = action.action.final_parameters();
    if params.keys().any(|key| fixed.contains(&key.as_str())) {
        return Err(ApiError::bad_request(PARAMETERS_NOT_ALLOWED));
    }
    Ok(())
}

/// The status of a blocking invoke's answer: 200 for a success, else that of the error the
/// activation ended with (the answer still carries the record or result).
fn activation_status(status: ActivationStatus) -> StatusCode {
    match status {
        ActivationStatus::Success => StatusCode::OK,
        ActivationStatus::ApplicationError | ActivationStatus::DeveloperError => {
            ErrorKind::ActionFailed.status()
        }
        ActivationStatus::InternalError => ErrorKind::Internal.status(),
    }
}

/// The record kept for an activation that the server stopped before it finished.
fn interrupted_record(action: &Resolved, activation_id: &str) -> ActivationRecord {
    let start = epoch_millis(SystemTime::now());
    let result = json!({
        "error": "The activation was interrupted: the server stopped before it finished."
    });
    let mut annotations = action.activation_annotations();
    annotations.set("timeout", json!(false));
    ActivationRecord::new(
        &action.action,
        activation_id,
        (start, start),
        ActivationResponse::new(ActivationStatus::InternalError, result),
        Vec::new(),
        annotations,
    )
}

/// The invoke body: a JSON object of parameters; empty means none.
pub async fn invoke_params(body: Body) -> Result<Map<String, Value>, RestError> {
    let bytes = crate::server::read_bounded(body, MAX_INVOKE_BODY_BYTES).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(params)) => Ok(params),
        Ok(_) => Err(ApiError::bad_request(
            "The request content was malformed: parameters must be a JSON object.",
        )
        .into()),
        Err(e) => {
            Err(ApiError::bad_request(format!("The request content was malformed: {e}.")).into())
        }
    }
}

/// An activation running in its task.
#[derive(Debug)]
pub struct Started {
    /// Its id.
    pub activation_id: String,
    /// What is recorded should the server stop before it finishes.
    interrupted: ActivationRecord,
    task: JoinHandle<Recorded>,
}

impl Started {
    /// Tells the caller about the activation before it finished: records it as pending.
    pub fn accepted(&self, app: &Standalone) -> Result<(), RestError> {
        app.store.put_pending(&self.interrupted)?;
        Ok(())
    }

    /// Waits for the activation for at most `bound`: its record, or None (and the activation
    /// recorded as pending) if it runs longer.
    pub async fn wait(
        mut self,
        app: &Standalone,
        bound: Duration,
    ) -> Result<Option<ActivationRecord>, RestError> {
        match tokio::time::timeout(bound, &mut self.task).await {
            Err(_elapsed) => self.accepted(app).map(|()| None),
            Ok(Err(join_error)) => {
                // Record it, so that the id the answer carries leads somewhere.
                let message = format!("The activation failed inside the server: {join_error}");
                let mut failed = self.interrupted;
                failed.response = ActivationResponse::new(
                    ActivationStatus::InternalError,
                    json!({ "error": message }),
                );
                app.store.put_activation(&failed)?;
                Err(ApiError::internal(message).into())
            }
            Ok(Ok(recorded)) => Ok(Some(recorded?)),
        }
    }
}

impl Resolved {
    /// The annotations every activation record of this action starts with: its `path`,
    /// `kind` and `limits`, and the `binding` it was reached through.
    pub fn activation_annotations(&self) -> super::records::KeyValues {
        let mut annotations = self.action.activation_annotations();
        if let Some(binding) = &self.binding {
            annotations.set("binding", json!(binding));
        }
        annotations
    }
}

impl Standalone {
    /// Starts an activation of `action` with `params` (the action's own parameters go under
    /// them) in a task of its own, which shutdown waits for.
    pub fn start(
        self: &Arc<Self>,
        action: Resolved,
        params: Map<String, Value>,
        received: Instant,
    ) -> Started {
        let activation_id = new_id();
        let interrupted = interrupted_record(&action, &activation_id);
        let task = tokio::spawn({
            let app = self.clone();
            let activation_id = activation_id.clone();
            let running = app.background.started();
            async move {
                let recorded = app.run(action, params, activation_id, None, received).await;
                // A non-blocking caller is gone: a store failure must at least reach the log.
                if let Err(error) = &recorded {
                    tracing::error!(%error, "an activation could not be recorded");
                }
                drop(running);
                recorded
            }
        });
        Started {
            activation_id,
            interrupted,
            task,
        }
    }

    /// Runs one activation of `action` (a sequence runs its components) and records it;
    /// `cause` is the activation of the sequence it is a component of.
    pub fn run<'a>(
        &'a self,
        action: Resolved,
        params: Map<String, Value>,
        activation_id: String,
        cause: Option<String>,
        received: Instant,
    ) -> RecordedFuture<'a> {
        Box::pin(async move {
            if let ActionExec::Sequence(_) = &action.action.exec {
                let mut budget = super::sequences::SequenceBudget::default();
                return self
                    .run_sequence(action, params, activation_id, cause, &mut budget)
                    .await;
            }
            self.activate(action, params, activation_id, cause, received)
                .await
        })
    }

    /// Runs one activation of the Wasm action `action` and records it.
    pub async fn activate(
        &self,
        action: Resolved,
        invoke_params: Map<String, Value>,
        activation_id: String,
        cause: Option<String>,
        received: Instant,
    ) -> Recorded {
        let start = SystemTime::now();
        let mut annotations = action.activation_annotations();
        let record = action.action;
        let (response, logs, timed_out) = match self.pool.get(&record).await {
            Err(error) => {
                let result =
                    json!({ "error": format!("The action failed to initialize: {error}") });
                let response = ActivationResponse::new(ActivationStatus::DeveloperError, result);
                (response, Vec::new(), false)
            }
            Ok((warm, init_time)) => {
                let _permit = warm
                    .permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("permits are never closed");
                let waited = received
                    .elapsed()
                    .saturating_sub(init_time.unwrap_or_default());
                annotations.set("waitTime", json!(waited.as_millis() as u64));
                if let Some(init_time) = init_time {
                    annotations.set("initTime", json!(init_time.as_millis() as u64));
                }
                let timeout = Duration::from_millis(warm.limits.timeout);
                let activation = Activation {
                    params: Value::Object(record.merged_params(invoke_params)),
                    // The run's `__OW_*` values win over init parameters of the same name.
                    env: record
                        .init_env()
                        .into_iter()
                        .chain(self.activation_env(&record, &activation_id, start, timeout))
                        .collect::<std::collections::BTreeMap<_, _>>()
                        .into_iter()
                        .collect(),
                    deadline: Instant::now() + timeout,
                    time_limit: timeout,
                };
                let Completion { outcome, logs } = warm.action.run(activation).await;
                let lines = log_lines(&logs, SystemTime::now());
                let timed_out = matches!(outcome, Err(RunError::Timeout { .. }));
                (ActivationResponse::of(outcome), lines, timed_out)
            }
        };
        annotations.set("timeout", json!(timed_out));
        let cold = annotations.get("initTime").is_some();
        let (start_ms, end_ms) = (epoch_millis(start), epoch_millis(SystemTime::now()));
        let mut activation = ActivationRecord::new(
            &record,
            &activation_id,
            (start_ms, end_ms),
            response,
            logs,
            annotations,
        );
        activation.cause = cause;
        self.store.put_activation(&activation)?;
        tracing::info!(
            activation_id,
            action = %record.full_name(),
            cold,
            duration_ms = end_ms.saturating_sub(start_ms),
            status = activation.response.status.as_str(),
            "activation finished"
        );
        Ok(activation)
    }

    /// The `__OW_*` environment of one activation.
    fn activation_env(
        &self,
        record: &super::records::ActionRecord,
        activation_id: &str,
        start: SystemTime,
        timeout: Duration,
    ) -> Vec<(String, String)> {
        let mut env = vec![
            ("__OW_API_HOST".to_owned(), self.settings.api_host.clone()),
            (
                "__OW_NAMESPACE".to_owned(),
                record.root_namespace().to_owned(),
            ),
            (
                "__OW_ACTION_NAME".to_owned(),
                record.full_name().to_string(),
            ),
            ("__OW_ACTION_VERSION".to_owned(), record.version.to_string()),
            ("__OW_ACTIVATION_ID".to_owned(), activation_id.to_owned()),
            ("__OW_TRANSACTION_ID".to_owned(), new_id()),
            (
                "__OW_DEADLINE".to_owned(),
                (epoch_millis(start) + timeout.as_millis() as u64).to_string(),
            ),
        ];
        if record.provides_api_key() {
            env.push(("__OW_API_KEY".to_owned(), super::GUEST_KEY.to_owned()));
        }
        env
    }
}
