//! Web actions over plain HTTP, without credentials: the request as `__ow_*` parameters, the
//! result as the answer (`.http`, `.json`, `.text`, `.html`), `raw-http`, `final`,
//! `require-whisk-auth`, CORS, and the 404 of an action that is not a web action. The echo
//! action answers its parameters, so the request decides the answer.

use super::{ACTIVATIONS, PACKAGES, call, create, put, server};
use crate::harness::{Executor, HttpAnswer};
use base64::Engine as _;
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};

const WEB: &str = "/api/v1/web/guest";

fn web_echo(server: &Executor, name: &str, annotations: Value, parameters: Value) {
    let mut all = vec![json!({"key": "web-export", "value": true})];
    all.extend(annotations.as_array().unwrap().iter().cloned());
    let body = json!({"annotations": all, "parameters": parameters});
    let created = create(server, name, artifacts::ECHO, body);
    assert_eq!(created.status, 200, "{created:?}");
}

fn get(server: &Executor, path: &str) -> HttpAnswer {
    server.http("GET", &format!("{WEB}/{path}"), &[], b"")
}

fn post(server: &Executor, path: &str, content_type: &str, body: &[u8]) -> HttpAnswer {
    server.http(
        "POST",
        &format!("{WEB}/{path}"),
        &[("Content-Type", content_type)],
        body,
    )
}

fn post_json(server: &Executor, path: &str, body: Value) -> HttpAnswer {
    post(
        server,
        path,
        "application/json",
        body.to_string().as_bytes(),
    )
}

#[test]
fn the_request_becomes_the_parameters_of_a_web_action() {
    let (server, _data) = server();
    web_echo(
        &server,
        "echo",
        json!([]),
        json!([{"key": "bound", "value": 1}]),
    );
    let answer = get(&server, "default/echo.json?x=1&y=two");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let params = answer.json();
    assert_eq!(
        (&params["__ow_method"], &params["__ow_path"]),
        (&json!("get"), &json!(""))
    );
    assert_eq!(
        (&params["x"], &params["y"], &params["bound"]),
        (&json!("1"), &json!("two"), &json!(1))
    );
    let host = server.base_url.trim_start_matches("http://");
    assert_eq!(params["__ow_headers"]["host"], host, "{params}");
    assert!(params.get("__ow_user").is_none(), "anonymous: {params}");

    // A JSON body's fields over the query's; the rest of the path is `__ow_path`.
    let answer = post_json(
        &server,
        "default/echo.json/some/path?x=1",
        json!({"x": 2, "a": [1]}),
    );
    let params = answer.json();
    assert_eq!(params["__ow_method"], "post");
    assert_eq!(params["__ow_path"], "/some/path");
    assert_eq!((&params["x"], &params["a"]), (&json!(2), &json!([1])));
    assert_eq!(params["__ow_headers"]["content-type"], "application/json");
    // A form's fields; text as `__ow_body`; bytes as base64 in `__ow_body`.
    let form = post(
        &server,
        "default/echo.json",
        "application/x-www-form-urlencoded",
        b"a=1&b=two+words",
    );
    assert_eq!(
        (&form.json()["a"], &form.json()["b"]),
        (&json!("1"), &json!("two words"))
    );
    let text = post(&server, "default/echo.json", "text/plain", b"plain words");
    assert_eq!(text.json()["__ow_body"], "plain words");
    let bytes = post(
        &server,
        "default/echo.json",
        "application/octet-stream",
        &[0, 159, 1],
    );
    assert_eq!(bytes.json()["__ow_body"], "AJ8B");
    // With credentials, the caller's namespace is `__ow_user`.
    let signed = server.http(
        "GET",
        &format!("{WEB}/default/echo.json"),
        &[("Authorization", &super::basic_auth())],
        b"",
    );
    assert_eq!(signed.json()["__ow_user"], "guest");

    // The activation is recorded, its id in the answer's header.
    let id = answer
        .header("x-openwhisk-activation-id")
        .unwrap()
        .to_owned();
    let record = call(&server, "GET", &format!("{ACTIVATIONS}/{id}"), None);
    assert_eq!(record.body["response"]["result"]["a"], json!([1]));

    // A request may not set the `__ow_*` parameters.
    let refused = get(&server, "default/echo.json?__ow_method=put");
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json()["error"],
        "Request defines parameters that are not allowed (e.g., reserved properties)."
    );
}

#[test]
fn an_http_result_is_the_answer() {
    let (server, _data) = server();
    web_echo(&server, "page", json!([]), json!([]));
    // A status and a text body; text/html unless the headers say otherwise.
    let answer = get(
        &server,
        "default/page?statusCode=201&body=%3Cb%3Ehi%3C%2Fb%3E",
    );
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("text/html; charset=UTF-8")
    );
    assert_eq!(answer.text(), "<b>hi</b>");
    let typed = post_json(
        &server,
        "default/page.http",
        json!({"headers": {"Content-Type": "text/plain", "X-Custom": ["a", 1, true]}, "body": "plain"}),
    );
    assert_eq!(typed.status, 200);
    assert_eq!(
        typed.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    let custom: Vec<&str> = typed
        .headers
        .iter()
        .filter(|(name, _)| name == "x-custom")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(custom, ["a", "1", "true"]);
    assert_eq!(typed.text(), "plain");
    // A binary type's body is base64; a JSON body is JSON; no body is 204.
    let png = post_json(
        &server,
        "default/page",
        json!({"headers": {"content-type": "image/png"}, "body": "iVBORw0KGgo="}),
    );
    assert_eq!(
        (png.status, png.header("content-type")),
        (200, Some("image/png"))
    );
    assert_eq!(png.body, b"\x89PNG\r\n\x1a\n");
    let json_body = post_json(
        &server,
        "default/page",
        json!({"body": {"k": "v"}, "statusCode": 202}),
    );
    assert_eq!(
        (json_body.status, json_body.json()),
        (202, json!({"k": "v"}))
    );
    assert_eq!(json_body.header("content-type"), Some("application/json"));
    let nothing = get(&server, "default/page");
    assert_eq!((nothing.status, nothing.body.len()), (204, 0));
    assert!(nothing.header("content-type").is_none(), "{nothing:?}");
    // An application error answers its `error` field.
    let failed = post_json(
        &server,
        "default/page",
        json!({"error": {"statusCode": 409, "body": "taken"}}),
    );
    assert_eq!((failed.status, failed.text()), (409, "taken".to_owned()));
    // What is no HTTP answer is refused with OpenWhisk's sentences.
    for (result, error) in [
        (
            json!({"statusCode": "many"}),
            "Response is not valid 'message/http'.",
        ),
        (
            json!({"headers": "x"}),
            "Response is not valid 'message/http'.",
        ),
        (
            json!({"headers": {"content-type": "text/plain"}, "body": {"k": 1}}),
            "Response type in header did not match generated content type.",
        ),
        (
            json!({"headers": {"content-type": "image/png"}, "body": "not base64!"}),
            "Response type in header did not match generated content type.",
        ),
    ] {
        let answer = post_json(&server, "default/page", result.clone());
        assert_eq!(answer.status, 400, "{result}: {answer:?}");
        assert_eq!(answer.json()["error"], error, "{result}");
    }
}

#[test]
fn extensions_choose_what_of_the_result_is_answered() {
    let (server, _data) = server();
    web_echo(&server, "echo", json!([]), json!([]));
    let text = get(&server, "default/echo.text?text=hello");
    assert_eq!((text.status, text.text()), (200, "hello".to_owned()));
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    let html = get(&server, "default/echo.html?html=%3Cp%3Ex%3C%2Fp%3E");
    assert_eq!((html.status, html.text()), (200, "<p>x</p>".to_owned()));
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=UTF-8")
    );
    let missing = get(&server, "default/echo.text");
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json()["error"],
        "Response does not include requested property."
    );
    let not_html = get(&server, "default/echo.html");
    assert_eq!(
        not_html.json()["error"],
        "Response is not valid 'text/html'."
    );

    // In a package, as `package/action`.
    put(&server, PACKAGES, "utils", json!({}));
    web_echo(&server, "utils/echo", json!([]), json!([]));
    let packaged = get(&server, "utils/echo.json?in=package");
    assert_eq!(
        (packaged.status, &packaged.json()["in"]),
        (200, &json!("package"))
    );
}

#[test]
fn only_web_actions_of_the_guest_are_there() {
    let (server, _data) = server();
    create(&server, "private", artifacts::ECHO, json!({}));
    web_echo(&server, "echo", json!([]), json!([]));
    for path in [
        format!("{WEB}/default/private.json"),
        format!("{WEB}/default/missing.json"),
        format!("{WEB}/nothing/echo.json"),
        "/api/v1/web/someone/default/echo.json".to_owned(),
        "/api/v1/web/guest/default".to_owned(),
    ] {
        let answer = server.http("GET", &path, &[], b"");
        assert_eq!(answer.status, 404, "{path}: {answer:?}");
        assert_eq!(
            answer.json()["error"],
            "The requested resource does not exist.",
            "{path}"
        );
    }
}

#[test]
fn raw_http_actions_get_the_query_and_body_as_they_came() {
    let (server, _data) = server();
    web_echo(
        &server,
        "raw",
        json!([{"key": "raw-http", "value": true}]),
        json!([]),
    );
    let answer = post(&server, "default/raw.json?q=1&r=%20", "text/plain", b"a=b");
    let params = answer.json();
    assert_eq!(params["__ow_query"], "q=1&r=%20");
    assert_eq!(params["__ow_body"], "a=b");
    assert!(params.get("q").is_none(), "{params}");
    // JSON is not parsed but carried as base64; an empty body is "".
    let json_body = post_json(&server, "default/raw.json", json!({"a": 1}));
    let expected = base64::engine::general_purpose::STANDARD.encode(br#"{"a":1}"#);
    assert_eq!(json_body.json()["__ow_body"], expected);
    assert_eq!(get(&server, "default/raw.json").json()["__ow_body"], "");
    // Reserved names are no conflict when the query is not spread.
    assert_eq!(get(&server, "default/raw.json?__ow_method=x").status, 200);
}

#[test]
fn final_secret_and_cors_annotations_hold_for_web_requests() {
    let (server, _data) = server();
    web_echo(
        &server,
        "fixed",
        json!([{"key": "final", "value": true}]),
        json!([{"key": "who", "value": "me"}]),
    );
    let refused = get(&server, "default/fixed.json?who=you");
    assert_eq!(refused.status, 400, "{refused:?}");
    assert_eq!(
        get(&server, "default/fixed.json?other=1").json()["who"],
        "me"
    );

    web_echo(
        &server,
        "secret",
        json!([{"key": "require-whisk-auth", "value": "s3cret"}]),
        json!([]),
    );
    assert_eq!(get(&server, "default/secret.json").status, 401);
    let wrong = server.http(
        "GET",
        &format!("{WEB}/default/secret.json"),
        &[("X-Require-Whisk-Auth", "guess")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let right = server.http(
        "GET",
        &format!("{WEB}/default/secret.json"),
        &[("X-Require-Whisk-Auth", "s3cret")],
        b"",
    );
    assert_eq!(right.status, 200, "{right:?}");

    // OpenWhisk answers OPTIONS and adds CORS headers, unless the action answers them.
    let options = server.http(
        "OPTIONS",
        &format!("{WEB}/default/fixed.json"),
        &[("Access-Control-Request-Headers", "X-Mine")],
        b"",
    );
    assert_eq!((options.status, options.body.len()), (200, 0));
    assert_eq!(options.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        options.header("access-control-allow-headers"),
        Some("X-Mine")
    );
    assert_eq!(
        get(&server, "default/fixed.json").header("access-control-allow-origin"),
        Some("*")
    );
    web_echo(
        &server,
        "custom",
        json!([{"key": "web-custom-options", "value": true}]),
        json!([]),
    );
    let own = server.http("OPTIONS", &format!("{WEB}/default/custom.json"), &[], b"");
    assert_eq!(
        (own.status, &own.json()["__ow_method"]),
        (200, &json!("options"))
    );
    assert!(
        own.header("access-control-allow-origin").is_none(),
        "{own:?}"
    );
}
