//! Web actions, as OpenWhisk's controller serves them: an action annotated `web-export: true`
//! answers `/api/v1/web/{namespace}/{package|default}/{action}[.http|.json|.text|.html|.svg]`
//! without credentials. The request becomes the action's parameters (`__ow_method`,
//! `__ow_headers`, `__ow_path`, the query and the body; with `raw-http`, the query as
//! `__ow_query` and the body as `__ow_body`), and the result becomes the HTTP answer: with
//! `.http` (the default), its `statusCode`, `headers` and `body`; with the other extensions,
//! the result (or one of its fields) as that media type. An action that is not a web action is
//! not there (404), as OpenWhisk answers.

use super::auth::authenticate;
use super::invoke::PARAMETERS_NOT_ALLOWED;
use super::packages::{DEFAULT_PACKAGE, Resolved};
use super::records::{ActivationStatus, FullName, check_entity_name};
use super::{GUEST_NAMESPACE, RestError, Standalone, with_activation_id};
use crate::error::{ApiError, ErrorKind, json_response};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest web action request body: OpenWhisk's 1 MB of parameters.
const MAX_WEB_BODY_BYTES: usize = 1024 * 1024;
/// How long a web request waits for its activation (OpenWhisk's blocking wait).
const MAX_WEB_WAIT: Duration = Duration::from_secs(60);
/// The header that carries the secret of an action annotated `require-whisk-auth: "<secret>"`.
const REQUIRE_WHISK_AUTH_HEADER: &str = "x-require-whisk-auth";
/// The parameters that carry the request; a request's own parameters may not set them.
const RESERVED: [&str; 6] = [
    "__ow_method",
    "__ow_headers",
    "__ow_path",
    "__ow_user",
    "__ow_query",
    "__ow_body",
];

/// How a web action's result becomes the answer, by the extension of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extension {
    Http,
    Json,
    Html,
    Svg,
    Text,
}

impl Extension {
    const ALL: [(&'static str, Self); 5] = [
        (".http", Self::Http),
        (".json", Self::Json),
        (".html", Self::Html),
        (".svg", Self::Svg),
        (".text", Self::Text),
    ];

    /// The action name and extension of the last path segment; without a known extension,
    /// the segment is the name and the extension `.http`.
    fn split(segment: &str) -> (&str, Self) {
        Self::ALL
            .iter()
            .find_map(|(suffix, extension)| {
                segment.strip_suffix(suffix).map(|name| (name, *extension))
            })
            .unwrap_or((segment, Self::Http))
    }
}

/// `ANY /api/v1/web/{namespace}/{package}/{action}[/{*path}]`.
pub async fn web_action(
    State(app): State<Arc<Standalone>>,
    Path(segments): Path<HashMap<String, String>>,
    request: Request<Body>,
) -> Response {
    let received = Instant::now();
    let segment = |key: &str| segments.get(key).map_or("", String::as_str);
    let (name, extension) = Extension::split(segment("action"));
    let path = match segments.get("path") {
        Some(path) => format!("/{path}"),
        None => String::new(),
    };
    let namespace = segment("namespace");
    let package = segment("package");
    let (parts, body) = request.into_parts();
    let action = match web_action_named(&app, namespace, package, name) {
        Ok(Some(action)) => action,
        Ok(None) => {
            let missing = ApiError::not_found("The requested resource does not exist.");
            return RestError::from(missing).into_response();
        }
        // A store that fails says so, as for every other request.
        Err(error) => return RestError::from(error).into_response(),
    };
    let annotations = &action.action.annotations;
    let delegates_cors = annotations.get("web-custom-options") != Some(&Value::Bool(true));
    let answer = if delegates_cors && parts.method == Method::OPTIONS {
        Ok(Response::new(Body::empty()))
    } else {
        let request = WebRequest {
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            path,
            query: parts.uri.query().unwrap_or("").to_owned(),
        };
        run(&app, action, request, body, extension, received).await
    };
    let mut answer = answer.unwrap_or_else(IntoResponse::into_response);
    if delegates_cors {
        add_cors_headers(answer.headers_mut(), &parts.headers);
    }
    answer
}

/// The web action a path names: an action of the guest's, exported; None for anything else.
fn web_action_named(
    app: &Standalone,
    namespace: &str,
    package: &str,
    name: &str,
) -> Result<Option<Resolved>, super::store::StoreError> {
    let valid = [namespace, package, name]
        .iter()
        .all(|segment| check_entity_name(segment).is_ok());
    if !valid || namespace != GUEST_NAMESPACE {
        return Ok(None);
    }
    let full = FullName {
        namespace: namespace.to_owned(),
        package: (package != DEFAULT_PACKAGE).then(|| package.to_owned()),
        name: name.to_owned(),
    };
    let exported =
        |action: &Resolved| action.action.annotations.get("web-export") == Some(&Value::Bool(true));
    Ok(app.resolve(&full)?.filter(exported))
}

/// What of the HTTP request the action gets.
struct WebRequest {
    method: Method,
    headers: HeaderMap,
    path: String,
    query: String,
}

/// Checks the action's `require-whisk-auth`, turns the request into parameters, runs the
/// action and answers its result.
async fn run(
    app: &Arc<Standalone>,
    action: Resolved,
    request: WebRequest,
    body: Body,
    extension: Extension,
    received: Instant,
) -> Result<Response, RestError> {
    let user = authenticate(&request.headers)
        .is_ok()
        .then_some(GUEST_NAMESPACE);
    if !authorized(&action.action.annotations, &request.headers, user.is_some()) {
        return Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "Authentication is possible but has failed or not yet been provided.",
        )
        .into());
    }
    let raw = action.action.annotations.get("raw-http") == Some(&Value::Bool(true));
    let bytes = crate::server::read_bounded(body, MAX_WEB_BODY_BYTES).await?;
    let body = request_body(&request.headers, bytes, raw)?;
    let query = query_params(&request.query)?;
    if !raw {
        let fixed = action.action.final_parameters();
        let body_keys = match &body {
            Some(Value::Object(fields)) => fields.keys().collect(),
            _ => Vec::new(),
        };
        let overrides = query
            .keys()
            .chain(body_keys)
            .any(|key| RESERVED.contains(&key.as_str()) || fixed.contains(&key.as_str()));
        if overrides {
            return Err(ApiError::bad_request(PARAMETERS_NOT_ALLOWED).into());
        }
    }
    let params = action_params(&request, user, query, body, raw);
    let started = app.start(action, params, received);
    let activation_id = started.activation_id.clone();
    let Some(activation) = started.wait(app, MAX_WEB_WAIT).await? else {
        let not_ready = ApiError::new(ErrorKind::NotReady, "Response not yet ready.");
        return Ok(with_activation_id(
            RestError::from(not_ready).into_response(),
            &activation_id,
        ));
    };
    let projected = match activation.response.status {
        ActivationStatus::Success => Some(&activation.response.result),
        // An application error answers its `error` field.
        ActivationStatus::ApplicationError => activation.response.result.get("error"),
        ActivationStatus::DeveloperError | ActivationStatus::InternalError => {
            return Err(
                ApiError::bad_request("There was an error processing your request.").into(),
            );
        }
    };
    let answer = match projected {
        Some(result) => answer_result(result, extension)?,
        None => return Err(property_not_found()),
    };
    Ok(with_activation_id(answer, &activation_id))
}

/// Whether the request may run an action annotated `require-whisk-auth`: one whose value is a
/// secret needs it in `X-Require-Whisk-Auth`; `true` needs the caller's credentials.
fn authorized(annotations: &super::records::KeyValues, headers: &HeaderMap, user: bool) -> bool {
    let secret = |expected: String| {
        headers
            .get(REQUIRE_WHISK_AUTH_HEADER)
            .is_some_and(|value| value.as_bytes() == expected.as_bytes())
    };
    match annotations.get("require-whisk-auth") {
        None => true,
        Some(Value::String(expected)) => secret(expected.clone()),
        Some(Value::Number(expected)) => secret(expected.to_string()),
        Some(Value::Bool(true)) => user,
        Some(_) => false,
    }
}

/// The media type of a `Content-Type`, lowercased, without its parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// JSON, or a JSON-based type (`…+json`).
fn is_json(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

/// Whether a media type's content is bytes rather than text (which OpenWhisk then carries as
/// base64).
fn is_binary(media_type: &str) -> bool {
    let textual = media_type.starts_with("text/")
        || is_json(media_type)
        || media_type.ends_with("+xml")
        || matches!(
            media_type,
            "application/javascript"
                | "application/xml"
                | "application/x-www-form-urlencoded"
                | "application/ecmascript"
        );
    !textual
}

/// The request body as the action gets it: none when empty; a JSON body parsed and a form's
/// fields as an object (unless `raw`); text as a string; anything else, and JSON when
/// `raw`, as base64.
fn request_body(headers: &HeaderMap, bytes: Vec<u8>, raw: bool) -> Result<Option<Value>, ApiError> {
    if bytes.is_empty() {
        return Ok(raw.then(|| json!("")));
    }
    // A body without a type is bytes, as HTTP has it.
    let media = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map_or_else(|| "application/octet-stream".to_owned(), media_type);
    if !raw && is_json(&media) {
        return serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            ApiError::bad_request(format!("The request content was malformed:\n{error}"))
        });
    }
    if !raw && media == "application/x-www-form-urlencoded" {
        let fields: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&bytes).map_err(|error| {
                ApiError::bad_request(format!("The request content was malformed:\n{error}"))
            })?;
        return Ok(Some(Value::Object(
            fields.into_iter().map(|(k, v)| (k, json!(v))).collect(),
        )));
    }
    if is_binary(&media) || media == "application/json" {
        return Ok(Some(json!(
            base64::engine::general_purpose::STANDARD.encode(&bytes)
        )));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some(json!(text))),
        Err(_) => Err(ApiError::bad_request(format!(
            "Content type '{media}' is not supported."
        ))),
    }
}

/// The query's parameters, each a string; the last of a repeated one counts.
fn query_params(query: &str) -> Result<Map<String, Value>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|error| {
        ApiError::bad_request(format!("The request query cannot be read: {error}."))
    })?;
    Ok(pairs.into_iter().map(|(k, v)| (k, json!(v))).collect())
}

/// The action's parameters: the request's context, then the query's, then the body's (an
/// object's fields, else the body as `__ow_body`); with `raw`, the query as `__ow_query` and
/// the body as `__ow_body`.
fn action_params(
    request: &WebRequest,
    user: Option<&str>,
    query: Map<String, Value>,
    body: Option<Value>,
    raw: bool,
) -> Map<String, Value> {
    let headers: Map<String, Value> = request
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), json!(value))
        })
        .collect();
    let mut params = Map::new();
    params.insert(
        "__ow_method".to_owned(),
        json!(request.method.as_str().to_ascii_lowercase()),
    );
    params.insert("__ow_headers".to_owned(), Value::Object(headers));
    params.insert("__ow_path".to_owned(), json!(request.path));
    if let Some(user) = user {
        params.insert("__ow_user".to_owned(), json!(user));
    }
    if raw {
        params.insert("__ow_query".to_owned(), json!(request.query));
    } else {
        params.extend(query);
    }
    match body {
        Some(Value::Object(fields)) if !raw => params.extend(fields),
        Some(body) => {
            params.insert("__ow_body".to_owned(), body);
        }
        None => {}
    }
    params
}

/// `Response is not valid '<media type>'.`
fn invalid_media(media_type: &str) -> RestError {
    ApiError::bad_request(format!("Response is not valid '{media_type}'.")).into()
}

fn property_not_found() -> RestError {
    ApiError::not_found("Response does not include requested property.").into()
}

fn content_type_mismatch() -> RestError {
    ApiError::bad_request("Response type in header did not match generated content type.").into()
}

/// An answer of `status` with a body of `content_type`.
fn answer(status: StatusCode, content_type: &str, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// The answer of a result, by extension.
fn answer_result(result: &Value, extension: Extension) -> Result<Response, RestError> {
    let field = |names: [&str; 2]| match result {
        Value::Object(fields) => names.iter().find_map(|name| fields.get(*name)),
        other => Some(other),
    };
    match extension {
        Extension::Http => http_answer(result),
        Extension::Json => match result {
            Value::Object(_) | Value::Array(_) => Ok(json_response(StatusCode::OK, result)),
            _ => Err(invalid_media("application/json")),
        },
        Extension::Html => match field(["body", "html"]) {
            Some(Value::String(html)) => Ok(answer(
                StatusCode::OK,
                "text/html; charset=UTF-8",
                html.clone(),
            )),
            _ => Err(invalid_media("text/html")),
        },
        Extension::Svg => match field(["body", "svg"]) {
            Some(Value::String(svg)) => Ok(answer(StatusCode::OK, "image/svg+xml", svg.clone())),
            _ => Err(invalid_media("image/svg+xml")),
        },
        Extension::Text => {
            let text = match field(["body", "text"]) {
                Some(Value::String(text)) => text.clone(),
                Some(value @ (Value::Object(_) | Value::Array(_))) => {
                    serde_json::to_string_pretty(value).expect("JSON prints")
                }
                Some(scalar) => scalar.to_string(),
                None => return Err(property_not_found()),
            };
            Ok(answer(StatusCode::OK, "text/plain; charset=UTF-8", text))
        }
    }
}

/// The answer a `.http` result describes: `statusCode` (200, or 204 without a body),
/// `headers`, and `body`: a string is the content (base64 for a binary `Content-Type`,
/// `text/html` when none is given), other JSON is a JSON answer.
fn http_answer(result: &Value) -> Result<Response, RestError> {
    let invalid = || invalid_media("message/http");
    let Value::Object(fields) = result else {
        return Err(invalid());
    };
    let mut headers = Vec::new();
    match fields.get("headers") {
        None => {}
        Some(Value::Object(given)) => {
            for (name, value) in given {
                header_values(name, value, &mut headers).ok_or_else(invalid)?;
            }
        }
        Some(_) => return Err(invalid()),
    }
    let status = match fields.get("statusCode") {
        None => None,
        Some(Value::Number(code)) => Some(code.as_u64().ok_or_else(invalid)?),
        Some(Value::String(code)) => Some(code.parse::<u64>().map_err(|_| invalid())?),
        Some(_) => return Err(invalid()),
    };
    let status = status
        .map(|code| {
            u16::try_from(code)
                .ok()
                .and_then(|code| StatusCode::from_u16(code).ok())
                .filter(|code| code.canonical_reason().is_some())
                .ok_or_else(invalid)
        })
        .transpose()?;
    let (content_type, others): (Vec<_>, Vec<_>) = headers
        .into_iter()
        .partition(|(name, _): &(HeaderName, HeaderValue)| *name == CONTENT_TYPE);
    let content_type = content_type
        .last()
        .map(|(_, value)| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let mut response = match fields.get("body") {
        None | Some(Value::Null) => empty(status),
        Some(Value::String(text)) if text.is_empty() => empty(status),
        Some(Value::String(text)) => {
            text_answer(status.unwrap_or(StatusCode::OK), content_type, text)?
        }
        Some(json) => json_answer(status.unwrap_or(StatusCode::OK), content_type, json)?,
    };
    for (name, value) in others {
        response.headers_mut().append(name, value);
    }
    Ok(response)
}

/// The header entries of one `headers` field: a string, number or boolean, or an array of
/// them (one entry each); None if it is none of those or not a valid header.
fn header_values(
    name: &str,
    value: &Value,
    into: &mut Vec<(HeaderName, HeaderValue)>,
) -> Option<()> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Array(values) => {
            return values
                .iter()
                .try_for_each(|value| header_values(name, value, into));
        }
        _ => return None,
    };
    let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
    into.push((name, HeaderValue::from_str(&text).ok()?));
    Some(())
}

/// An answer without content: the given status, else 204.
fn empty(status: Option<StatusCode>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status.unwrap_or(StatusCode::NO_CONTENT);
    response
}

/// A string body of `content_type` (`text/html` if none): decoded from base64 when the type
/// is binary (or JSON written as base64), else the text, in UTF-8.
fn text_answer(
    status: StatusCode,
    content_type: Option<String>,
    text: &str,
) -> Result<Response, RestError> {
    let content_type = content_type.unwrap_or_else(|| "text/html".to_owned());
    let media = media_type(&content_type);
    if !media.contains('/') || media.starts_with('/') || media.ends_with('/') {
        return Err(ApiError::bad_request("Response did not specify a known content-type.").into());
    }
    let decoded = || base64::engine::general_purpose::STANDARD.decode(text.trim());
    if is_json(&media) {
        return Ok(match decoded() {
            // Kept for the web actions written before OpenWhisk took JSON bodies as JSON.
            Ok(bytes) if !text.trim().is_empty() => answer(status, &content_type, bytes),
            _ => answer(status, &content_type, text.to_owned()),
        });
    }
    if is_binary(&media) {
        let bytes = decoded().map_err(|_| content_type_mismatch())?;
        return Ok(answer(status, &content_type, bytes));
    }
    let content_type = if content_type.to_ascii_lowercase().contains("charset") {
        content_type
    } else {
        format!("{content_type}; charset=UTF-8")
    };
    Ok(answer(status, &content_type, text.to_owned()))
}

/// A JSON body: `application/json` unless another JSON type is given; any other type does
/// not fit JSON.
fn json_answer(
    status: StatusCode,
    content_type: Option<String>,
    json: &Value,
) -> Result<Response, RestError> {
    match content_type {
        None => Ok(json_response(status, json)),
        Some(content_type) if media_type(&content_type) == "application/json" => {
            Ok(json_response(status, json))
        }
        Some(content_type) if is_json(&media_type(&content_type)) => {
            let pretty = serde_json::to_string_pretty(json).expect("JSON prints");
            Ok(answer(status, &media_type(&content_type), pretty))
        }
        Some(_) => Err(content_type_mismatch()),
    }
}

/// The CORS headers OpenWhisk adds to a web action's answers, unless the action answers
/// `OPTIONS` itself (`web-custom-options`).
fn add_cors_headers(headers: &mut HeaderMap, request: &HeaderMap) {
    let allow_headers = request
        .get("access-control-request-headers")
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_static(
                "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent",
            )
        });
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"),
    );
    headers.insert("access-control-allow-headers", allow_headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_split_off_the_action_name_and_http_is_the_default() {
        assert_eq!(Extension::split("echo.json"), ("echo", Extension::Json));
        assert_eq!(Extension::split("echo.text"), ("echo", Extension::Text));
        assert_eq!(Extension::split("echo"), ("echo", Extension::Http));
        assert_eq!(Extension::split("echo.v2"), ("echo.v2", Extension::Http));
    }

    #[test]
    fn textual_media_types_are_told_from_binary_ones() {
        for textual in [
            "text/plain",
            "application/json",
            "application/ld+json",
            "image/svg+xml",
        ] {
            assert!(!is_binary(textual), "{textual}");
        }
        for binary in ["image/png", "application/octet-stream", "application/pdf"] {
            assert!(is_binary(binary), "{binary}");
        }
        assert_eq!(media_type("Text/HTML; charset=utf-8"), "text/html");
    }
}
