//! Handlers of the actions and activations resources (everything but invoke).

use super::auth::{GUEST_NAMESPACE, authorize};
use super::records::{self, ActionLimits, WASM_KIND};
use super::store::ActivationQuery;
use super::{RestError, Standalone};
use crate::error::{ApiError, json_response};
use crate::server::read_json_body;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use ow_common::code::{CodeError, decode_action_code};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// The largest action create/update body: 48 MB of code as base64, plus the JSON around it.
pub const MAX_ACTION_BODY_BYTES: usize = 48 * 1024 * 1024 * 4 / 3 + 1024 * 1024;

/// The query string of a request, with a bare `?` accepted.
pub type QueryMap = Query<HashMap<String, String>>;

type Handled = Result<Response, RestError>;

fn ok(body: &Value) -> Handled {
    Ok(json_response(StatusCode::OK, body))
}

fn not_found() -> RestError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "The requested resource does not exist.",
    )
    .into()
}

/// A boolean query parameter: `true`/`false`, absent means `default`.
pub fn flag(query: &HashMap<String, String>, key: &str, default: bool) -> Result<bool, RestError> {
    match query.get(key).map(String::as_str) {
        None | Some("") => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "The value of '{key}' must be true or false, not '{other}'."
        ))
        .into()),
    }
}

/// A number query parameter, at most `max`.
pub fn number(
    query: &HashMap<String, String>,
    key: &str,
    default: u64,
    max: u64,
) -> Result<u64, RestError> {
    let Some(text) = query.get(key).filter(|text| !text.is_empty()) else {
        return Ok(default);
    };
    match text.parse::<u64>() {
        Ok(value) if value <= max => Ok(value),
        _ => Err(ApiError::bad_request(format!(
            "The value of '{key}' must be a whole number no greater than {max}, not '{text}'."
        ))
        .into()),
    }
}

/// The `limit` of a listing: 30 by default, at most 200, and 0 meaning the most.
fn list_limit(query: &HashMap<String, String>) -> Result<u64, RestError> {
    match number(query, "limit", 30, 200)? {
        0 => Ok(200),
        limit => Ok(limit),
    }
}

/// Any other path under `/api/v1`: 401 without valid credentials, else 404, both in the API's
/// error shape.
pub async fn unknown_path(headers: HeaderMap) -> Handled {
    authorize(&headers, "_")?;
    Err(not_found())
}

/// A method a resource of the API does not take: 405 in the API's error shape.
pub async fn unknown_method(headers: HeaderMap) -> Handled {
    authorize(&headers, "_")?;
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "The requested method is not allowed for this resource.",
    )
    .into())
}

/// `GET /api/v1`: what this server is.
pub async fn info(State(app): State<Arc<Standalone>>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "description": "ow-wasm standalone: WebAssembly actions with the OpenWhisk REST API",
            "api_paths": ["/api/v1"],
            "api_host": app.settings.api_host,
            "runtimes": {"wasm": [{"kind": WASM_KIND, "default": true}]},
        }),
    )
}

/// `GET /api/v1/namespaces`.
pub async fn namespaces(headers: HeaderMap) -> Handled {
    authorize(&headers, "_")?;
    ok(&json!([GUEST_NAMESPACE]))
}

/// `GET …/actions?skip=&limit=&count=`.
pub async fn list_actions(
    State(app): State<Arc<Standalone>>,
    Path(namespace): Path<String>,
    Query(query): QueryMap,
    headers: HeaderMap,
) -> Handled {
    let namespace = authorize(&headers, &namespace)?;
    if flag(&query, "count", false)? {
        return ok(&json!({"actions": app.store.count_actions(namespace)?}));
    }
    let skip = number(&query, "skip", 0, u64::MAX >> 1)?;
    let limit = list_limit(&query)?;
    let actions = app.store.actions(namespace, skip, limit)?;
    ok(&Value::Array(
        actions.iter().map(records::without_code).collect(),
    ))
}

/// `GET …/actions/{name}?code=`.
pub async fn get_action(
    State(app): State<Arc<Standalone>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): QueryMap,
    headers: HeaderMap,
) -> Handled {
    let namespace = authorize(&headers, &namespace)?;
    let with_code = flag(&query, "code", true)?;
    let record = app.store.action(namespace, &name)?.ok_or_else(not_found)?;
    ok(&if with_code {
        record
    } else {
        records::without_code(&record)
    })
}

/// `DELETE …/actions/{name}`.
pub async fn delete_action(
    State(app): State<Arc<Standalone>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Handled {
    let namespace = authorize(&headers, &namespace)?;
    let record = app.store.action(namespace, &name)?.ok_or_else(not_found)?;
    app.store.delete_action(namespace, &name)?;
    app.pool.evict(namespace, &name);
    ok(&record)
}

/// `PUT …/actions/{name}?overwrite=`: create, or update with `overwrite=true`.
pub async fn put_action(
    State(app): State<Arc<Standalone>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): QueryMap,
    headers: HeaderMap,
    request: Request<Body>,
) -> Handled {
    let namespace = authorize(&headers, &namespace)?;
    let overwrite = flag(&query, "overwrite", false)?;
    let body = read_json_body(request.into_body(), MAX_ACTION_BODY_BYTES).await?;
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "The request content was malformed: the action must be a JSON object.",
        )
        .into());
    }
    let existing = app.store.action(namespace, &name)?;
    if existing.is_some() && !overwrite {
        return Err(already_exists());
    }
    let record = action_record(namespace, &name, &body, existing.as_ref())?;
    // Prepare now: bad code is refused at create, and the first invoke starts warm.
    let warm =
        app.pool.prepare(&record).await.map_err(|error| {
            ApiError::bad_request(format!("The action code cannot run: {error}"))
        })?;
    // Another create or update of this action may have landed while this one prepared: the
    // store writes only over what this request read, so one of two racing writes wins.
    let stored = match &existing {
        None => app.store.create_action(namespace, &name, &record)?,
        Some(read) => app.store.update_action(namespace, &name, &record, read)?,
    };
    if !stored {
        return Err(match existing {
            None => already_exists(),
            Some(_) => ApiError::new(
                StatusCode::CONFLICT,
                "Concurrent modification to resource detected.",
            )
            .into(),
        });
    }
    app.pool.install(namespace, &name, warm).await;
    ok(&record)
}

fn already_exists() -> RestError {
    ApiError::new(StatusCode::CONFLICT, "resource already exists").into()
}

/// Builds the stored record of a create (no `existing`) or update, validating every field.
fn action_record(
    namespace: &str,
    name: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, ApiError> {
    if name.is_empty() || name.len() > 256 || name.starts_with(['.', ' ']) {
        return Err(ApiError::bad_request(format!(
            "'{name}' is not a valid action name."
        )));
    }
    let exec = match (body.get("exec").filter(|e| !e.is_null()), existing) {
        (Some(exec), _) => exec_of(exec)?,
        (None, Some(existing)) => existing["exec"].clone(),
        (None, None) => {
            return Err(ApiError::bad_request(
                "The request content was malformed: exec is required to create an action.",
            ));
        }
    };
    other_fields_of(namespace, name, body, existing, exec).map_err(ApiError::bad_request)
}

/// The rest of [`action_record`], once `exec` is settled.
fn other_fields_of(
    namespace: &str,
    name: &str,
    body: &Value,
    existing: Option<&Value>,
    exec: Value,
) -> Result<Value, String> {
    let kept = |key: &str| existing.map_or(Value::Null, |record| record[key].clone());
    let parameters = match body.get("parameters") {
        Some(given) => records::key_value_list(Some(given), "parameters")?,
        None => records::key_value_list(Some(&kept("parameters")), "parameters")?,
    };
    let mut annotations = match body.get("annotations") {
        Some(given) => records::key_value_list(Some(given), "annotations")?,
        None => records::key_value_list(Some(&kept("annotations")), "annotations")?,
    };
    records::upsert(&mut annotations, "exec", json!(WASM_KIND));
    if records::lookup(&annotations, "provide-api-key").is_none() {
        annotations.push(json!({"key": "provide-api-key", "value": false}));
    }
    ow_common::capabilities::Capabilities::from_annotations(Some(&Value::Array(
        annotations.clone(),
    )))?;
    let base_limits = existing.map_or_else(ActionLimits::default, |record| {
        ActionLimits::from_json(&record["limits"])
    });
    let limits = base_limits.merged(body.get("limits"))?;
    let version = existing.map_or_else(
        || "0.0.1".to_owned(),
        |record| records::bump_version(record["version"].as_str().unwrap_or("0.0.0")),
    );
    Ok(json!({
        "namespace": namespace,
        "name": name,
        "version": version,
        "publish": body.get("publish").and_then(Value::as_bool).unwrap_or(false),
        "exec": exec,
        "parameters": parameters,
        "limits": limits.to_json(),
        "annotations": annotations,
        "updated": records::epoch_millis(SystemTime::now()),
    }))
}

/// Checks an `exec`: the kind must be ours, and the code must decode to something runnable
/// (code over the size limit is a 413, anything else wrong a 400).
fn exec_of(exec: &Value) -> Result<Value, ApiError> {
    let kind = exec["kind"].as_str().unwrap_or_default();
    if kind != WASM_KIND {
        return Err(ApiError::bad_request(format!(
            "The kind '{kind}' is not supported here; this server runs these kinds: {WASM_KIND}."
        )));
    }
    let Some(code) = exec["code"].as_str().filter(|code| !code.trim().is_empty()) else {
        return Err(ApiError::bad_request(
            "The action has no code: exec.code must hold the base64 of a .wasm or a zip.",
        ));
    };
    let main = exec["main"]
        .as_str()
        .filter(|main| !main.is_empty())
        .unwrap_or("main");
    decode_action_code(code, main).map_err(|error| match error {
        CodeError::TooLarge(_) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
        other => ApiError::bad_request(other.to_string()),
    })?;
    Ok(json!({"kind": WASM_KIND, "code": code, "binary": true, "main": main}))
}

/// `GET …/activations?name=&skip=&limit=&since=&upto=&docs=&count=`.
pub async fn list_activations(
    State(app): State<Arc<Standalone>>,
    Path(namespace): Path<String>,
    Query(query): QueryMap,
    headers: HeaderMap,
) -> Handled {
    let namespace = authorize(&headers, &namespace)?;
    let docs = flag(&query, "docs", false)?;
    let since = query
        .contains_key("since")
        .then(|| number(&query, "since", 0, u64::MAX >> 1))
        .transpose()?;
    let upto = query
        .contains_key("upto")
        .then(|| number(&query, "upto", 0, u64::MAX >> 1))
        .transpose()?;
    let filter = ActivationQuery {
        // `wsk activation list pkg/name` sends the path; keep the action's own name.
        name: query
            .get("name")
            .filter(|n| !n.is_empty())
            .map(|n| n.rsplit('/').next().unwrap_or(n).to_owned()),
        since,
        upto,
        skip: number(&query, "skip", 0, u64::MAX >> 1)?,
        limit: list_limit(&query)?,
    };
    if flag(&query, "count", false)? {
        let count = app.store.count_activations(namespace, &filter)?;
        return ok(&json!({ "activations": count }));
    }
    let activations = app.store.activations(namespace, &filter)?;
    let shown = activations.iter().map(|record| {
        if docs {
            record.clone()
        } else {
            records::activation_summary(record)
        }
    });
    ok(&Value::Array(shown.collect()))
}

async fn activation(
    app: &Standalone,
    namespace: &str,
    id: &str,
    headers: &HeaderMap,
) -> Result<Value, RestError> {
    let namespace = authorize(headers, namespace)?;
    app.store.activation(namespace, id)?.ok_or_else(not_found)
}

/// `GET …/activations/{id}`.
pub async fn get_activation(
    State(app): State<Arc<Standalone>>,
    Path((namespace, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Handled {
    ok(&activation(&app, &namespace, &id, &headers).await?)
}

/// `GET …/activations/{id}/logs`.
pub async fn activation_logs(
    State(app): State<Arc<Standalone>>,
    Path((namespace, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Handled {
    let record = activation(&app, &namespace, &id, &headers).await?;
    ok(&json!({ "logs": record["logs"] }))
}

/// `GET …/activations/{id}/result`.
pub async fn activation_result(
    State(app): State<Arc<Standalone>>,
    Path((namespace, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Handled {
    let record = activation(&app, &namespace, &id, &headers).await?;
    ok(&record["response"])
}
