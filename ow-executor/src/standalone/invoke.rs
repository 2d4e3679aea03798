//! Invoking an action: merge parameters, take a warm (or cold-prepare) container, wait for a
//! concurrency slot, run, record the activation before answering. An activation answered
//! with 202 before it finished is recorded as pending first, so that a server stopped
//! meanwhile still accounts for it when it starts again.

use super::api::{QueryMap, flag, not_found, number};
use super::auth::{Caller, EntityName};
use super::records::{
    ActionRecord, ActivationRecord, ActivationResponse, ActivationStatus, epoch_millis, log_lines,
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
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The largest invoke body: OpenWhisk's 1 MB of parameters.
pub const MAX_INVOKE_BODY_BYTES: usize = 1024 * 1024;
/// The longest a blocking invoke waits before answering 202 with the activation id.
pub const MAX_BLOCKING_WAIT_MS: u64 = 60_000;

/// `POST …/actions/{name}?blocking=&result=&timeout=`.
pub async fn invoke(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
    Query(query): QueryMap,
    request: Request<Body>,
) -> Result<Response, RestError> {
    let received = Instant::now();
    let blocking = flag(&query, "blocking", false)?;
    let result_only = flag(&query, "result", false)?;
    let wait_ms =
        number(&query, "timeout", MAX_BLOCKING_WAIT_MS, u64::MAX >> 1)?.min(MAX_BLOCKING_WAIT_MS);
    let params = invoke_params(request.into_body()).await?;
    let record: ActionRecord = app.store.entity(namespace, &name)?.ok_or_else(not_found)?;
    let activation_id = new_id();
    let interrupted = interrupted_record(&record, &activation_id);
    let task = tokio::spawn({
        let app = app.clone();
        let activation_id = activation_id.clone();
        let running = app.background.started();
        async move {
            let recorded = app.activate(record, params, activation_id, received).await;
            // A non-blocking caller is gone: a store failure must at least reach the log.
            if let Err(error) = &recorded {
                tracing::error!(%error, "an activation could not be recorded");
            }
            drop(running);
            recorded
        }
    });
    let accepted = || -> Result<Response, RestError> {
        app.store.put_pending(&interrupted)?;
        Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({ "activationId": activation_id }),
        ))
    };
    let answer = if !blocking {
        accepted()
    } else {
        match tokio::time::timeout(Duration::from_millis(wait_ms), task).await {
            // The activation goes on and is recorded; the caller polls for it by id.
            Err(_elapsed) => accepted(),
            Ok(Err(join_error)) => {
                // Record it, so that the id this answer carries leads somewhere.
                let message = format!("The activation failed inside the server: {join_error}");
                let mut failed = interrupted;
                failed.response = ActivationResponse::new(
                    ActivationStatus::InternalError,
                    json!({ "error": message }),
                );
                app.store.put_activation(&failed)?;
                Err(ApiError::internal(message).into())
            }
            Ok(Ok(Err(store_error))) => Err(store_error.into()),
            Ok(Ok(Ok(activation))) => {
                let status = activation_status(activation.response.status);
                Ok(if result_only {
                    json_response(status, &activation.response.result)
                } else {
                    json_response(status, &activation)
                })
            }
        }
    };
    let answer = answer.unwrap_or_else(IntoResponse::into_response);
    Ok(with_activation_id(answer, &activation_id))
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
fn interrupted_record(action: &ActionRecord, activation_id: &str) -> ActivationRecord {
    let start = epoch_millis(SystemTime::now());
    let result = json!({
        "error": "The activation was interrupted: the server stopped before it finished."
    });
    let mut annotations = action.activation_annotations();
    annotations.set("timeout", json!(false));
    ActivationRecord::new(
        action,
        activation_id,
        (start, start),
        ActivationResponse::new(ActivationStatus::InternalError, result),
        Vec::new(),
        annotations,
    )
}

/// The invoke body: a JSON object of parameters; empty means none.
async fn invoke_params(body: Body) -> Result<Map<String, Value>, RestError> {
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

impl Standalone {
    /// Runs one activation of the stored action `record` and records it.
    async fn activate(
        &self,
        record: ActionRecord,
        invoke_params: Map<String, Value>,
        activation_id: String,
        received: Instant,
    ) -> Result<ActivationRecord, StoreError> {
        let start = SystemTime::now();
        let mut annotations = record.activation_annotations();
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
                    env: warm
                        .env
                        .clone()
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
        let activation = ActivationRecord::new(
            &record,
            &activation_id,
            (start_ms, end_ms),
            response,
            logs,
            annotations,
        );
        self.store.put_activation(&activation)?;
        tracing::info!(
            activation_id,
            action = record.name,
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
        record: &ActionRecord,
        activation_id: &str,
        start: SystemTime,
        timeout: Duration,
    ) -> Vec<(String, String)> {
        let mut env = vec![
            ("__OW_API_HOST".to_owned(), self.settings.api_host.clone()),
            ("__OW_NAMESPACE".to_owned(), record.namespace.clone()),
            (
                "__OW_ACTION_NAME".to_owned(),
                format!("/{}/{}", record.namespace, record.name),
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
