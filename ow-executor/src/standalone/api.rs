//! Handlers of the actions and activations resources (everything but invoke), and what the
//! handlers of every resource share: query flags and numbers, body parsing, the 404 and 405
//! answers.

use super::auth::{ActionPath, ActivationId, Caller, EntityName, GUEST_NAMESPACE, authorize};
use super::records::{
    self, ActionExec, ActionLimits, ActionRecord, ActivationRecord, CodeExec, Collection, Entity,
    FullName, KeyValues, SEQUENCE_KIND, SemVer, SequenceExec, WASM_KIND,
};
use super::sequences::sequence_parameters;
use super::store::{ActivationQuery, Write};
use super::{RestError, Standalone};
use crate::error::{ApiError, ErrorKind, Preparing, json_response};
use crate::server::read_json_body;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Request, StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

/// The largest action create/update body: 48 MB of code as base64, plus the JSON around it.
pub const MAX_ACTION_BODY_BYTES: usize = 48 * 1024 * 1024 * 4 / 3 + 1024 * 1024;

/// The longest action code OpenWhisk takes: 48 MB, counted as the bytes of the code string.
pub const MAX_EXEC_BYTES: usize = 48 * 1024 * 1024;

/// The query string of a request, with a bare `?` accepted.
pub type QueryMap = Query<HashMap<String, String>>;

/// What a handler answers.
pub type Handled = Result<Response, RestError>;

/// A 200 with `body`.
pub fn ok(body: &(impl serde::Serialize + ?Sized)) -> Handled {
    Ok(json_response(StatusCode::OK, body))
}

/// The answer for anything that is not there.
pub fn not_found() -> RestError {
    ApiError::not_found("The requested resource does not exist.").into()
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
pub fn list_limit(query: &HashMap<String, String>) -> Result<u64, RestError> {
    match number(query, "limit", 30, 200)? {
        0 => Ok(200),
        limit => Ok(limit),
    }
}

impl Standalone {
    /// Reads what a create or update of `path`/`name` replaces, if anything; without
    /// `overwrite` there must be nothing (409). Call it holding the entity's write lock.
    pub fn to_replace<E: Entity>(
        &self,
        path: &str,
        name: &str,
        overwrite: bool,
    ) -> Result<Option<E>, RestError> {
        let existing = self.store.entity(path, name)?;
        if existing.is_some() && !overwrite {
            return Err(ApiError::new(ErrorKind::Conflict, "resource already exists").into());
        }
        Ok(existing)
    }

    /// Makes the writes of a request, all or none. The store writes only over what the
    /// request read; with the writes of one entity taking turns, only a write from outside
    /// this server can have come between, which is a 409.
    pub fn write(&self, writes: &[Write]) -> Result<(), RestError> {
        if self.store.write(writes)? {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::Conflict,
                "Concurrent modification to resource detected.",
            )
            .into())
        }
    }
}

/// What every create or update of an entity sets alike: the first version or the next of the
/// one stored, `publish` and the annotations as given or else as stored, and the time.
#[derive(Debug)]
pub struct Revision {
    /// The version.
    pub version: SemVer,
    /// Whether it is shared.
    pub publish: bool,
    /// Its annotations.
    pub annotations: KeyValues,
    /// When it is written.
    pub updated: u64,
}

impl Revision {
    /// The revision that replaces `existing` (none for a create) with what a request gave.
    pub fn of<E: Entity>(
        existing: Option<&E>,
        publish: Option<bool>,
        annotations: Option<KeyValues>,
    ) -> Self {
        Self {
            version: existing.map_or(SemVer::FIRST, |entity| entity.version().bumped()),
            publish: publish.or(existing.map(Entity::publish)).unwrap_or(false),
            annotations: annotations
                .or_else(|| existing.map(|entity| entity.annotations().clone()))
                .unwrap_or_default(),
            updated: records::epoch_millis(SystemTime::now()),
        }
    }
}

/// The largest body of a package, trigger or rule create, or of a rule's status: parameters
/// and annotations, as many as an invoke's.
pub const MAX_ENTITY_BODY_BYTES: usize = 1024 * 1024;

/// Reads a request's JSON body of at most `limit` bytes as `T`.
pub async fn read_body<T: DeserializeOwned>(
    request: Request<Body>,
    limit: usize,
) -> Result<T, RestError> {
    let body = read_json_body(request.into_body(), limit).await?;
    Ok(parse_body(body)?)
}

/// Parses a request body as `T`; what does not fit is a 400 that names the field.
pub fn parse_body<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(body).map_err(|error| {
        ApiError::bad_request(format!("The request content was malformed: {error}."))
    })
}

/// Any other path under `/api/v1`: 401 without valid credentials, else 404, both in the API's
/// error shape. Web paths take no credentials: one that names no action is a 404.
pub async fn unknown_path(uri: Uri, headers: HeaderMap) -> Handled {
    if !uri.path().starts_with("/api/v1/web/") {
        authorize(&headers, "_")?;
    }
    Err(not_found())
}

/// A method a resource of the API does not take: 405 in the API's error shape.
pub async fn unknown_method(headers: HeaderMap) -> Handled {
    authorize(&headers, "_")?;
    Err(ApiError::new(
        ErrorKind::MethodNotAllowed,
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

/// A listing of the entities of `path` (a namespace, or `namespace/package`; with
/// `with_packages`, a namespace's packages' too), as `?skip=&limit=&count=` ask: how many,
/// or what `answer` makes of them.
pub fn list<E: Entity>(
    app: &Standalone,
    path: &str,
    with_packages: bool,
    query: &HashMap<String, String>,
    answer: impl FnOnce(&[E]) -> Handled,
) -> Handled {
    if flag(query, "count", false)? {
        let count = app.store.count::<E>(path, with_packages)?;
        let mut counted = serde_json::Map::new();
        counted.insert(E::COLLECTION.name().to_owned(), json!(count));
        return ok(&counted);
    }
    let skip = number(query, "skip", 0, u64::MAX >> 1)?;
    let limit = list_limit(query)?;
    answer(&app.store.entities::<E>(path, with_packages, skip, limit)?)
}

/// Actions as listings show them: without their code.
fn action_summaries(actions: &[ActionRecord]) -> Handled {
    ok(&actions
        .iter()
        .map(ActionRecord::without_code)
        .collect::<Vec<_>>())
}

/// `GET …/actions?skip=&limit=&count=`: the actions of the namespace, those in its packages
/// included, as OpenWhisk lists them.
pub async fn list_actions(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    Query(query): QueryMap,
) -> Handled {
    list(&app, namespace, true, &query, action_summaries)
}

/// `GET …/actions/{package}/?skip=&limit=&count=`: the actions of a package (of the package
/// bound, for a binding).
pub async fn list_package_actions(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(package): EntityName,
    Query(query): QueryMap,
) -> Handled {
    let scope = app
        .package_scope(namespace, &package)?
        .ok_or_else(not_found)?;
    list(&app, &scope.actions_path, false, &query, action_summaries)
}

/// `GET …/actions/[{package}/]{name}?code=`: the action, its package's parameters under its
/// own.
pub async fn get_action(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    action: ActionPath,
    Query(query): QueryMap,
) -> Handled {
    let with_code = flag(&query, "code", true)?;
    let record = app
        .resolve(&action.in_namespace(namespace))?
        .ok_or_else(not_found)?
        .action;
    ok(&if with_code {
        record
    } else {
        record.without_code()
    })
}

/// Takes the write locks of an action: its package's first, if it is in one, which must
/// exist and be no binding (so that a package is not deleted while an action is written
/// into it); then its own. Returns the action's namespace field and the guards.
async fn lock_action(
    app: &Standalone,
    namespace: &str,
    action: &ActionPath,
) -> Result<(String, Vec<tokio::sync::OwnedMutexGuard<()>>), RestError> {
    let mut guards = Vec::new();
    let path = match &action.package {
        None => namespace.to_owned(),
        Some(package) => {
            guards.push(
                app.writes
                    .lock(Collection::Packages, namespace, package)
                    .await,
            );
            app.package_to_write(namespace, package)?;
            format!("{namespace}/{package}")
        }
    };
    guards.push(
        app.writes
            .lock(Collection::Actions, &path, &action.name)
            .await,
    );
    Ok((path, guards))
}

/// `DELETE …/actions/[{package}/]{name}`.
pub async fn delete_action(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    action: ActionPath,
) -> Handled {
    let (path, _writing) = lock_action(&app, namespace, &action).await?;
    let record: ActionRecord = app
        .store
        .entity(&path, &action.name)?
        .ok_or_else(not_found)?;
    app.store.delete::<ActionRecord>(&path, &action.name)?;
    app.pool.evict(&path, &action.name);
    ok(&record)
}

/// The body of an action create or update. Every field may be left out; an update keeps
/// what it leaves out.
#[derive(Debug, Deserialize)]
struct ActionPut {
    exec: Option<ExecPut>,
    parameters: Option<KeyValues>,
    annotations: Option<KeyValues>,
    limits: Option<Value>,
    publish: Option<bool>,
}

/// The `exec` of an action create or update.
#[derive(Debug, Deserialize)]
struct ExecPut {
    #[serde(default)]
    kind: String,
    code: Option<String>,
    main: Option<String>,
    components: Option<Vec<String>>,
}

/// `PUT …/actions/[{package}/]{name}?overwrite=`: create, or update with `overwrite=true`.
pub async fn put_action(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    action: ActionPath,
    Query(query): QueryMap,
    request: Request<Body>,
) -> Handled {
    let overwrite = flag(&query, "overwrite", false)?;
    let body = read_json_body(request.into_body(), MAX_ACTION_BODY_BYTES).await?;
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "The request content was malformed: the action must be a JSON object.",
        )
        .into());
    }
    let mut put: ActionPut = parse_body(body)?;
    let exec = put
        .exec
        .take()
        .map(|exec| exec_of(exec, namespace))
        .transpose()?;
    // Reading what is stored and writing what replaces it is one step for this action.
    let (path, _writing) = lock_action(&app, namespace, &action).await?;
    let existing: Option<ActionRecord> = app.to_replace(&path, &action.name, overwrite)?;
    let record = action_record(&path, &action.name, put, exec, existing.as_ref())?;
    match &record.exec {
        // Bad code is refused at create. The prepared action is dropped: the compiled module
        // stays in the engine's cache, and the version's first activation is its cold start.
        ActionExec::Wasm(_) => {
            app.pool
                .prepare(&record)
                .await
                .map_err(|error| ApiError::not_prepared(error, Preparing::Create))?;
        }
        ActionExec::Sequence(sequence) => {
            app.check_sequence(&record.full_name(), &sequence.components)?
        }
    }
    app.write(&[Write::put(&record, existing.as_ref())])?;
    ok(&record)
}

/// Builds the stored record of a create (no `existing`) or update, validating every field
/// but the code. A sequence's parameters are its components (`_actions`), as OpenWhisk
/// keeps them; any others it is given are dropped.
fn action_record(
    path: &str,
    name: &str,
    put: ActionPut,
    exec: Option<ActionExec>,
    existing: Option<&ActionRecord>,
) -> Result<ActionRecord, ApiError> {
    let was_sequence =
        existing.is_some_and(|record| matches!(record.exec, ActionExec::Sequence(_)));
    let parameters = match &exec {
        Some(ActionExec::Sequence(sequence)) => sequence_parameters(sequence),
        Some(ActionExec::Wasm(_)) if was_sequence => put.parameters.unwrap_or_default(),
        None if was_sequence => existing
            .map(|record| record.parameters.clone())
            .unwrap_or_default(),
        _ => put
            .parameters
            .or_else(|| existing.map(|record| record.parameters.clone()))
            .unwrap_or_default(),
    };
    let Some(exec) = exec.or_else(|| existing.map(|record| record.exec.clone())) else {
        return Err(ApiError::bad_request(
            "The request content was malformed: exec is required to create an action.",
        ));
    };
    let Revision {
        version,
        publish,
        mut annotations,
        updated,
    } = Revision::of(existing, put.publish, put.annotations);
    annotations.set("exec", json!(exec.kind()));
    if annotations.get("provide-api-key").is_none() {
        annotations.set("provide-api-key", json!(false));
    }
    ow_common::capabilities::Capabilities::from_annotations(Some(&annotations.to_json()))
        .map_err(ApiError::bad_request)?;
    let limits = existing
        .map_or_else(ActionLimits::default, |record| record.limits)
        .merged(put.limits.as_ref())
        .map_err(ApiError::bad_request)?;
    Ok(ActionRecord {
        namespace: path.to_owned(),
        name: name.to_owned(),
        version,
        publish,
        exec,
        parameters,
        limits,
        annotations,
        updated,
    })
}

/// Checks an `exec`: the kind must be one this server runs; Wasm code must be present and at
/// most 48 MB (over that, a 413), a sequence's components fully qualified names. Whether the
/// code runs is for the engine to say, whether the components exist for the store.
fn exec_of(exec: ExecPut, namespace: &str) -> Result<ActionExec, ApiError> {
    match exec.kind.as_str() {
        WASM_KIND => {}
        SEQUENCE_KIND => {
            let components = exec
                .components
                .unwrap_or_default()
                .iter()
                .map(|component| FullName::resolve(component, namespace))
                .collect::<Result<_, _>>()?;
            return Ok(ActionExec::Sequence(SequenceExec { components }));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "The kind '{other}' is not supported here; this server runs these kinds: \
                 {WASM_KIND}, {SEQUENCE_KIND}."
            )));
        }
    }
    let Some(code) = exec.code.filter(|code| !code.trim().is_empty()) else {
        return Err(ApiError::bad_request(
            "The action has no code: exec.code must hold the base64 of a .wasm or a zip.",
        ));
    };
    if code.len() > MAX_EXEC_BYTES {
        return Err(ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "exec larger than allowed: {} > {MAX_EXEC_BYTES} bytes. The code (the base64 of \
                 the action's zip or .wasm) may be at most 48 MB.",
                code.len()
            ),
        ));
    }
    let main = exec
        .main
        .filter(|main| !main.is_empty())
        .unwrap_or_else(|| ow_common::abi::DEFAULT_MAIN.to_owned());
    Ok(ActionExec::Wasm(CodeExec {
        code: Some(code),
        binary: true,
        main,
    }))
}

/// `GET …/activations?name=&skip=&limit=&since=&upto=&docs=&count=`, newest first. `name` is an
/// action's name, or `package/name` for an action in a package, as OpenWhisk filters them.
pub async fn list_activations(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    Query(query): QueryMap,
) -> Handled {
    let docs = flag(&query, "docs", false)?;
    let count = flag(&query, "count", false)?;
    if count && docs {
        return Err(
            ApiError::bad_request("The parameter 'docs' is not permitted with 'count'.").into(),
        );
    }
    let filter = ActivationQuery {
        name: name_filter(&query)?,
        since: epoch_millis(&query, "since")?,
        upto: epoch_millis(&query, "upto")?,
        skip: number(&query, "skip", 0, u64::MAX >> 1)?,
        limit: list_limit(&query)?,
    };
    if count {
        let count = app.store.count_activations(namespace, &filter)?;
        return ok(&json!({ "activations": count }));
    }
    let activations = app.store.activations(namespace, &filter)?;
    if docs {
        ok(&activations)
    } else {
        let summaries: Vec<_> = activations.iter().map(ActivationRecord::summary).collect();
        ok(&summaries)
    }
}

/// The sentence of a query parameter that does not read, as OpenWhisk's controller words it.
fn malformed_query(key: &str, why: String) -> RestError {
    ApiError::bad_request(format!("The query parameter '{key}' was malformed:\n{why}")).into()
}

/// The `name` filter of an activation listing: `name` or `package/name`.
fn name_filter(query: &HashMap<String, String>) -> Result<Option<String>, RestError> {
    let Some(name) = query.get("name").filter(|name| !name.trim().is_empty()) else {
        return Ok(None);
    };
    let segments: Vec<&str> = name.split('/').collect();
    if segments.len() > 2
        || segments
            .iter()
            .any(|segment| records::check_entity_name(segment).is_err())
    {
        return Err(malformed_query(
            "name",
            format!("Parameter may be a 'simple' name or 'package-name/simple' name: {name}"),
        ));
    }
    Ok(Some(name.clone()))
}

/// `since` or `upto`: epoch milliseconds.
fn epoch_millis(query: &HashMap<String, String>, key: &str) -> Result<Option<u64>, RestError> {
    query
        .get(key)
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                malformed_query(
                    key,
                    format!("Parameter is not a valid value for epoch seconds: {text}"),
                )
            })
        })
        .transpose()
}

fn activation(app: &Standalone, namespace: &str, id: &str) -> Result<ActivationRecord, RestError> {
    app.store.activation(namespace, id)?.ok_or_else(not_found)
}

/// `GET …/activations/{id}`.
pub async fn get_activation(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    ActivationId(id): ActivationId,
) -> Handled {
    ok(&activation(&app, namespace, &id)?)
}

/// `GET …/activations/{id}/logs`.
pub async fn activation_logs(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    ActivationId(id): ActivationId,
) -> Handled {
    let record = activation(&app, namespace, &id)?;
    ok(&json!({ "logs": record.logs }))
}

/// `GET …/activations/{id}/result`.
pub async fn activation_result(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    ActivationId(id): ActivationId,
) -> Handled {
    ok(&activation(&app, namespace, &id)?.response)
}
