//! Invoking an action: merge parameters, take a warm (or cold-prepare) container, wait for a
//! concurrency slot, run, record the activation before answering. An activation answered
//! with 202 before it finished is recorded as pending first, so that a server stopped
//! meanwhile still accounts for it when it starts again.

use super::api::{QueryMap, flag, number};
use super::auth::authorize;
use super::records::{self, ActivationStatus};
use super::{RestError, Standalone, new_id, pool, with_activation_id};
use crate::error::{ApiError, json_response};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Request, StatusCode};
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
    Path((namespace, name)): Path<(String, String)>,
    Query(query): QueryMap,
    headers: HeaderMap,
    request: Request<Body>,
) -> Result<Response, RestError> {
    let received = Instant::now();
    let namespace = authorize(&headers, &namespace)?;
    let blocking = flag(&query, "blocking", false)?;
    let result_only = flag(&query, "result", false)?;
    let wait_ms =
        number(&query, "timeout", MAX_BLOCKING_WAIT_MS, u64::MAX >> 1)?.min(MAX_BLOCKING_WAIT_MS);
    let params = invoke_params(request.into_body()).await?;
    let record = app.store.action(namespace, &name)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "The requested resource does not exist.",
        )
    })?;
    let activation_id = new_id();
    let interrupted = interrupted_record(namespace, &record, &activation_id);
    let task = tokio::spawn({
        let app = app.clone();
        let activation_id = activation_id.clone();
        let running = app.background.started();
        async move {
            let recorded = app
                .activate(namespace, record, params, activation_id, received)
                .await;
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
                failed["response"] = records::response(
                    ActivationStatus::InternalError,
                    &json!({ "error": message }),
                );
                app.store.put_activation(&failed)?;
                Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message).into())
            }
            Ok(Ok(Err(store_error))) => Err(store_error.into()),
            Ok(Ok(Ok(activation))) => {
                let status = match activation["response"]["status"].as_str() {
                    Some("success") => StatusCode::OK,
                    Some("whisk internal error") => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let body = if result_only {
                    activation["response"]["result"].clone()
                } else {
                    activation
                };
                Ok(json_response(status, &body))
            }
        }
    };
    let answer = answer.unwrap_or_else(IntoResponse::into_response);
    Ok(with_activation_id(answer, &activation_id))
}

/// The record kept for an activation that the server stopped before it finished.
fn interrupted_record(namespace: &str, record: &Value, activation_id: &str) -> Value {
    let start = records::epoch_millis(SystemTime::now());
    let result = json!({
        "error": "The activation was interrupted: the server stopped before it finished."
    });
    let mut annotations = records::activation_annotations(namespace, record);
    annotations.push(json!({"key": "timeout", "value": false}));
    records::activation_record(
        namespace,
        record,
        activation_id,
        (start, start),
        records::response(ActivationStatus::InternalError, &result),
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
        namespace: &'static str,
        record: Value,
        invoke_params: Map<String, Value>,
        activation_id: String,
        received: Instant,
    ) -> Result<Value, super::store::StoreError> {
        let start = SystemTime::now();
        let mut annotations = records::activation_annotations(namespace, &record);
        let (status, result, logs, timed_out) = match self.pool.get(namespace, &record).await {
            Err(error) => {
                let result =
                    json!({ "error": format!("The action failed to initialize: {error}") });
                (ActivationStatus::DeveloperError, result, Vec::new(), false)
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
                annotations.push(json!({"key": "waitTime", "value": waited.as_millis() as u64}));
                if let Some(init_time) = init_time {
                    annotations
                        .push(json!({"key": "initTime", "value": init_time.as_millis() as u64}));
                }
                let timeout = Duration::from_millis(warm.limits.timeout);
                let activation = Activation {
                    params: Value::Object(merge_params(&record, invoke_params)),
                    // The run's `__OW_*` values win over init parameters of the same name.
                    env: warm
                        .env
                        .clone()
                        .into_iter()
                        .chain(self.activation_env(
                            namespace,
                            &record,
                            &activation_id,
                            start,
                            timeout,
                        ))
                        .collect::<std::collections::BTreeMap<_, _>>()
                        .into_iter()
                        .collect(),
                    deadline: Instant::now() + timeout,
                    time_limit: timeout,
                };
                let Completion { outcome, logs } = warm.action.run(activation).await;
                let end = SystemTime::now();
                let lines = records::log_lines(&logs, end);
                let timed_out = matches!(outcome, Err(RunError::Timeout { .. }));
                let status = ActivationStatus::of(&outcome);
                let result = outcome.unwrap_or_else(|error| json!({ "error": error.to_string() }));
                (status, result, lines, timed_out)
            }
        };
        annotations.push(json!({"key": "timeout", "value": timed_out}));
        let end = SystemTime::now();
        let start_ms = records::epoch_millis(start);
        let end_ms = records::epoch_millis(end);
        let activation = records::activation_record(
            namespace,
            &record,
            &activation_id,
            (start_ms, end_ms),
            records::response(status, &result),
            logs,
            annotations,
        );
        self.store.put_activation(&activation)?;
        tracing::info!(
            activation_id,
            action = record["name"].as_str().unwrap_or_default(),
            cold = activation["annotations"]
                .as_array()
                .is_some_and(|a| records::lookup(a, "initTime").is_some()),
            duration_ms = end_ms.saturating_sub(start_ms),
            status = status.as_str(),
            "activation finished"
        );
        Ok(activation)
    }

    /// The `__OW_*` environment of one activation.
    fn activation_env(
        &self,
        namespace: &str,
        record: &Value,
        activation_id: &str,
        start: SystemTime,
        timeout: Duration,
    ) -> Vec<(String, String)> {
        let name = record["name"].as_str().unwrap_or_default();
        let mut env = vec![
            ("__OW_API_HOST".to_owned(), self.settings.api_host.clone()),
            ("__OW_NAMESPACE".to_owned(), namespace.to_owned()),
            (
                "__OW_ACTION_NAME".to_owned(),
                format!("/{namespace}/{name}"),
            ),
            (
                "__OW_ACTION_VERSION".to_owned(),
                record["version"].as_str().unwrap_or_default().to_owned(),
            ),
            ("__OW_ACTIVATION_ID".to_owned(), activation_id.to_owned()),
            ("__OW_TRANSACTION_ID".to_owned(), new_id()),
            (
                "__OW_DEADLINE".to_owned(),
                (records::epoch_millis(start) + timeout.as_millis() as u64).to_string(),
            ),
        ];
        if pool::provides_api_key(record) {
            env.push(("__OW_API_KEY".to_owned(), super::GUEST_KEY.to_owned()));
        }
        env
    }
}

/// Bound parameters (except `init: true` ones, which are the init environment) overlaid by
/// the invoke's own.
fn merge_params(record: &Value, invoke_params: Map<String, Value>) -> Map<String, Value> {
    let mut params: Map<String, Value> = record["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["init"] != true)
        .filter_map(|p| Some((p["key"].as_str()?.to_owned(), p["value"].clone())))
        .collect();
    params.extend(invoke_params);
    params
}
