//! `standalone` mode: every row of the REST API table (PROTOCOL.md §3), storage across
//! restarts, the warm pool and the error shapes `wsk` and the npm client expect; packages,
//! sequences, web actions, triggers and rules in the submodules.

mod packages;
mod sequences;
mod triggers;
mod web;

use crate::harness::{Answer, Connection, Executor, epoch_millis_from_now};
use base64::Engine as _;
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const GUEST: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";
pub(crate) const ACTIONS: &str = "/api/v1/namespaces/_/actions";
const ACTIVATIONS: &str = "/api/v1/namespaces/_/activations";
const PACKAGES: &str = "/api/v1/namespaces/_/packages";
const TRIGGERS: &str = "/api/v1/namespaces/_/triggers";
const RULES: &str = "/api/v1/namespaces/_/rules";

/// The guest's `Authorization` header.
fn basic_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(GUEST)
    )
}

pub(crate) fn code(path: &str) -> String {
    let zip = ow_common::code::zip_module("action.wasm", &artifacts::read(path)).unwrap();
    base64::engine::general_purpose::STANDARD.encode(zip)
}

pub(crate) fn call(server: &Executor, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    server.request(
        method,
        path,
        &bytes,
        body.map(|_| "application/json"),
        Some(GUEST),
    )
}

pub(crate) fn create(server: &Executor, name: &str, module: &str, extra: Value) -> Answer {
    let mut body = json!({"exec": {"kind": "wasm:0.1", "code": code(module)}});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    call(server, "PUT", &format!("{ACTIONS}/{name}?"), Some(&body))
}

pub(crate) fn invoke(server: &Executor, name: &str, query: &str, params: Value) -> Answer {
    call(
        server,
        "POST",
        &format!("{ACTIONS}/{name}?{query}"),
        Some(&params),
    )
}

pub(crate) fn annotation<'a>(record: &'a Value, key: &str) -> Option<&'a Value> {
    record["annotations"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

/// Creates (or, with `?overwrite=true` in `name`, updates) a package, trigger or rule.
fn put(server: &Executor, collection: &str, name: &str, body: Value) -> Answer {
    call(server, "PUT", &format!("{collection}/{name}?"), Some(&body))
}

/// The recorded activation `id`.
fn activation(server: &Executor, id: &str) -> Value {
    let answer = call(server, "GET", &format!("{ACTIVATIONS}/{id}"), None);
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

/// Polls until the activation is recorded.
fn wait_for_activation(server: &Executor, id: &str) -> Value {
    let started = Instant::now();
    loop {
        let answer = call(server, "GET", &format!("{ACTIVATIONS}/{id}"), None);
        if answer.status == 200 {
            return answer.body;
        }
        assert_eq!(answer.status, 404, "{answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "activation {id} never recorded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An error body's `code`: a request id of 32 hexadecimal digits, as OpenWhisk's.
fn assert_request_id(code: &Value) {
    let id = code
        .as_str()
        .unwrap_or_else(|| panic!("error bodies carry a request id: {code}"));
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
}

fn server() -> (Executor, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    (Executor::standalone(data.path(), &[]), data)
}

#[test]
fn requests_without_or_with_wrong_credentials_are_refused() {
    let (server, _data) = server();
    let missing = server.request("GET", ACTIONS, b"", None, None);
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.body["error"],
        "The resource requires authentication, which was not supplied with the request"
    );
    assert_request_id(&missing.body["code"]);
    let wrong = server.request(
        "GET",
        ACTIONS,
        b"",
        None,
        Some("23bc46b1-71f6-4ed5-8c54-816aa4f8c502:wrong"),
    );
    assert_eq!(
        (wrong.status, &wrong.body["error"]),
        (401, &json!("The supplied authentication is invalid"))
    );
    // The scheme is read in any case, and every 401 says which scheme to use.
    let mut connection = Connection::open(&server);
    let encoded = base64::engine::general_purpose::STANDARD.encode(GUEST);
    for scheme in ["BASIC", "basic", "Basic"] {
        let authorization = format!("{scheme} {encoded}");
        let answer = connection.send("GET", ACTIONS, &[("Authorization", &authorization)], b"");
        assert_eq!((answer.status, answer.body), (200, json!([])), "{scheme}");
    }
    for authorization in [None, Some("Basic d3Jvbmc6a2V5"), Some("Bearer token")] {
        let headers: Vec<(&str, &str)> = authorization
            .map(|value| ("Authorization", value))
            .into_iter()
            .collect();
        let refused = connection.send("GET", ACTIONS, &headers, b"");
        assert_eq!(refused.status, 401, "{authorization:?}");
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Basic realm=\"whisk rest service\""),
            "{authorization:?}"
        );
    }
    let other_namespace = call(&server, "GET", "/api/v1/namespaces/someone/actions", None);
    assert_eq!(other_namespace.status, 403);
    let guest = call(&server, "GET", "/api/v1/namespaces/guest/actions", None);
    assert_eq!((guest.status, guest.body), (200, json!([])));
}

#[test]
fn create_get_update_and_delete_an_action() {
    let (server, _data) = server();
    let before = epoch_millis_from_now(Duration::ZERO);
    let created = create(&server, "add", artifacts::ADD, json!({}));
    let after = epoch_millis_from_now(Duration::ZERO);
    assert_eq!(created.status, 200, "{created:?}");
    let record = created.body;
    assert_eq!(record["namespace"], "guest");
    assert_eq!(record["name"], "add");
    assert_eq!(record["version"], "0.0.1");
    assert_eq!(record["publish"], false);
    assert_eq!(record["exec"]["kind"], "wasm:0.1");
    assert_eq!(record["exec"]["binary"], true);
    assert_eq!(
        record["limits"],
        json!({"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1})
    );
    assert_eq!(annotation(&record, "exec"), Some(&json!("wasm:0.1")));
    assert_eq!(annotation(&record, "provide-api-key"), Some(&json!(false)));
    let updated = record["updated"].as_u64().unwrap();
    assert!((before..=after).contains(&updated), "written at {updated}");

    let again = create(&server, "add", artifacts::ADD, json!({}));
    assert_eq!(
        (again.status, &again.body["error"]),
        (409, &json!("resource already exists"))
    );

    let updated = call(
        &server,
        "PUT",
        &format!("{ACTIONS}/add?overwrite=true"),
        Some(
            &json!({"exec": {"kind": "wasm:0.1", "code": code(artifacts::ECHO)}, "limits": {"timeout": 1000}}),
        ),
    );
    assert_eq!(
        (updated.status, &updated.body["version"]),
        (200, &json!("0.0.2"))
    );
    assert_eq!(updated.body["limits"]["timeout"], 1000);
    // The update replaced the code: the action now echoes.
    let answer = invoke(
        &server,
        "add",
        "blocking=true&result=true",
        json!({"param1": 1}),
    );
    assert_eq!((answer.status, answer.body), (200, json!({"param1": 1})));

    let with_code = call(&server, "GET", &format!("{ACTIONS}/add?code=true"), None);
    assert_eq!(with_code.body["exec"]["code"], code(artifacts::ECHO));
    let without_code = call(&server, "GET", &format!("{ACTIONS}/add?code=false"), None);
    assert_eq!(without_code.status, 200);
    assert!(without_code.body["exec"].get("code").is_none());

    // An update whose code cannot run is refused and leaves the action as it was.
    let refused = call(
        &server,
        "PUT",
        &format!("{ACTIONS}/add?overwrite=true"),
        Some(&json!({"exec": {"kind": "wasm:0.1", "code": code(artifacts::wat::NO_ENTRY_POINT)}})),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    let kept = call(&server, "GET", &format!("{ACTIONS}/add"), None);
    assert_eq!(kept.body["version"], "0.0.2");
    let answer = invoke(
        &server,
        "add",
        "blocking=true&result=true",
        json!({"kept": true}),
    );
    assert_eq!((answer.status, answer.body), (200, json!({"kept": true})));

    let deleted = call(&server, "DELETE", &format!("{ACTIONS}/add"), None);
    assert_eq!(
        (deleted.status, &deleted.body["name"]),
        (200, &json!("add"))
    );
    assert_eq!(
        deleted.body["exec"], with_code.body["exec"],
        "the whole record"
    );
    for (method, path) in [
        ("GET", format!("{ACTIONS}/add")),
        ("DELETE", format!("{ACTIONS}/add")),
        ("POST", format!("{ACTIONS}/add?blocking=true")),
    ] {
        let gone = call(&server, method, &path, None);
        assert_eq!(
            (gone.status, &gone.body["error"]),
            (404, &json!("The requested resource does not exist.")),
            "{method} {path}"
        );
    }
}

#[test]
fn bad_actions_are_refused_with_a_sentence() {
    let (server, _data) = server();
    let body = json!({"exec": {"kind": "nodejs:20", "code": "function main() {}"}});
    let answer = call(&server, "PUT", &format!("{ACTIONS}/js"), Some(&body));
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body["error"],
        "The kind 'nodejs:20' is not supported here; this server runs these kinds: wasm:0.1, sequence."
    );

    let text = base64::engine::general_purpose::STANDARD.encode("function main() {}");
    let body = json!({"exec": {"kind": "wasm:0.1", "code": text}});
    let answer = call(&server, "PUT", &format!("{ACTIONS}/text"), Some(&body));
    assert_eq!(answer.status, 400);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("text, not a WebAssembly module"),
        "{:?}",
        answer.body
    );

    let unknown_import = create(
        &server,
        "imports",
        artifacts::wat::UNKNOWN_IMPORT,
        json!({}),
    );
    assert_eq!(unknown_import.status, 400);
    assert!(
        unknown_import.body["error"]
            .as_str()
            .unwrap()
            .contains("env.launch_missiles")
    );

    let bad_limits = create(
        &server,
        "limits",
        artifacts::ADD,
        json!({"limits": {"memory": 4096}}),
    );
    assert_eq!(bad_limits.status, 400);
    assert_eq!(
        bad_limits.body["error"],
        "The memory limit must be an integer between 128 and 512, not 4096."
    );

    let no_exec = call(
        &server,
        "PUT",
        &format!("{ACTIONS}/empty"),
        Some(&json!({})),
    );
    assert_eq!(no_exec.status, 400);
    // Nothing half-created.
    assert_eq!(call(&server, "GET", ACTIONS, None).body, json!([]));
}

/// An engine that cannot start when an action asks for it is the server's failure, a 500,
/// not the action's: here its module cache directory cannot be made, because a file stands
/// where the cache's root should be.
#[cfg(any(feature = "wasmer", feature = "wamr"))]
#[test]
fn an_engine_that_cannot_start_at_create_is_a_500_and_nothing_is_stored() {
    use ow_executor::engines::EngineKind;
    let (server, data) = server();
    let other = EngineKind::ALL
        .iter()
        .copied()
        .find(|kind| *kind != EngineKind::default())
        .expect("a second engine is compiled in");
    let cache = data.path().join("module-cache");
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::write(&cache, "not a directory").unwrap();
    let annotations = json!({"annotations": [{"key": "engine", "value": other.name()}]});
    let answer = create(&server, "add", artifacts::ADD, annotations);
    assert_eq!(answer.status, 500, "{answer:?}");
    let error = answer.body["error"].as_str().unwrap();
    let expected = format!(
        "The executor could not prepare the action: cannot start {}: cannot open the module \
         cache directory {}",
        other.name(),
        cache.display()
    );
    assert!(error.starts_with(&expected), "{error}");
    assert_request_id(&answer.body["code"]);
    assert_eq!(call(&server, "GET", ACTIONS, None).body, json!([]));
}

#[test]
fn actions_list_by_name_with_skip_and_limit() {
    let (server, _data) = server();
    for name in ["c", "a", "b"] {
        assert_eq!(
            create(&server, name, artifacts::ECHO, json!({})).status,
            200
        );
    }
    let names = |answer: Answer| -> Vec<String> {
        answer
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(call(&server, "GET", ACTIONS, None)), ["a", "b", "c"]);
    assert_eq!(
        names(call(
            &server,
            "GET",
            &format!("{ACTIONS}?skip=1&limit=1"),
            None
        )),
        ["b"]
    );
    let listed = call(&server, "GET", ACTIONS, None).body;
    assert!(
        listed[0]["exec"].get("code").is_none(),
        "lists carry no code"
    );
    assert_eq!(
        call(&server, "GET", &format!("{ACTIONS}?limit=201"), None).status,
        400
    );
    assert_eq!(
        call(
            &server,
            "GET",
            &format!("{ACTIONS}?count=true&limit=1"),
            None
        )
        .body,
        json!({"actions": 3})
    );
}

#[test]
fn blocking_invoke_answers_the_activation_record() {
    let (server, _data) = server();
    create(&server, "add", artifacts::ADD, json!({}));
    let answer = invoke(
        &server,
        "add",
        "blocking=true&result=false",
        json!({"param1": 2, "param2": 2}),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let record = answer.body;
    assert_eq!(
        record["response"],
        json!({"result": {"result": 4}, "size": 12, "status": "success", "success": true})
    );
    assert_eq!(
        answer.activation_id.as_deref(),
        record["activationId"].as_str()
    );
    assert_eq!(record["activationId"].as_str().unwrap().len(), 32);
    assert_eq!(
        (record["namespace"].as_str(), record["name"].as_str()),
        (Some("guest"), Some("add"))
    );
    assert_eq!(
        (record["subject"].as_str(), record["version"].as_str()),
        (Some("guest"), Some("0.0.1"))
    );
    assert_eq!(
        record["duration"].as_u64().unwrap(),
        record["end"].as_u64().unwrap() - record["start"].as_u64().unwrap()
    );
    assert_eq!(annotation(&record, "path"), Some(&json!("guest/add")));
    assert_eq!(annotation(&record, "kind"), Some(&json!("wasm:0.1")));
    assert_eq!(annotation(&record, "timeout"), Some(&json!(false)));
    assert_eq!(annotation(&record, "limits").unwrap()["timeout"], 60000);
    assert!(annotation(&record, "waitTime").unwrap().is_u64());
    // Create validated the code, but the first activation of a version is its cold start.
    assert!(
        annotation(&record, "initTime").unwrap().is_u64(),
        "{record}"
    );

    let result_only = invoke(
        &server,
        "add",
        "blocking=true&result=true",
        json!({"param1": 5, "param2": 6}),
    );
    assert_eq!(
        (result_only.status, result_only.body),
        (200, json!({"result": 11}))
    );
    // The answer names its activation, recorded with that result.
    let id = result_only.activation_id.unwrap();
    assert_eq!(
        activation(&server, &id)["response"]["result"],
        json!({"result": 11})
    );
    let warm = invoke(&server, "add", "blocking=true", json!({})).body;
    assert_eq!(annotation(&warm, "initTime"), None, "then warm: {warm}");
    // An update is a new version, whose first activation is cold again.
    let update = json!({"limits": {"timeout": 5000}});
    let updated = call(
        &server,
        "PUT",
        &format!("{ACTIONS}/add?overwrite=true"),
        Some(&update),
    );
    assert_eq!(updated.body["version"], "0.0.2");
    let cold = invoke(&server, "add", "blocking=true", json!({})).body;
    assert_eq!(cold["version"], "0.0.2");
    assert!(annotation(&cold, "initTime").is_some(), "{cold}");
}

#[test]
fn non_blocking_invoke_answers_202_and_the_activation_is_recorded() {
    let (server, _data) = server();
    create(&server, "add", artifacts::ADD, json!({}));
    // The npm client's shape: no query at all beyond blocking.
    let answer = invoke(&server, "add", "", json!({"param1": 1, "param2": 2}));
    assert_eq!(answer.status, 202);
    let id = answer.body["activationId"].as_str().unwrap().to_owned();
    assert_eq!(answer.activation_id.as_deref(), Some(id.as_str()));
    let record = wait_for_activation(&server, &id);
    assert_eq!(record["response"]["result"], json!({"result": 3}));
    let result = call(&server, "GET", &format!("{ACTIVATIONS}/{id}/result"), None);
    assert_eq!(
        result.body,
        json!({"result": {"result": 3}, "size": 12, "status": "success", "success": true})
    );
}

#[test]
fn a_blocking_invoke_that_outlives_its_timeout_answers_202_and_finishes_later() {
    let (server, _data) = server();
    create(&server, "sleep", artifacts::SLEEP, json!({}));
    let answer = invoke(
        &server,
        "sleep",
        "blocking=true&timeout=200",
        json!({"ms": 1500}),
    );
    assert_eq!(answer.status, 202, "{answer:?}");
    let id = answer.body["activationId"].as_str().unwrap().to_owned();
    assert_eq!(answer.activation_id.as_deref(), Some(id.as_str()));
    let record = wait_for_activation(&server, &id);
    assert_eq!(record["response"]["result"], json!({"slept_ms": 1500}));
}

#[test]
fn application_and_developer_errors_are_502_with_the_record() {
    let (server, _data) = server();
    create(&server, "fail", artifacts::ERROR, json!({}));
    let answer = invoke(
        &server,
        "fail",
        "blocking=true",
        json!({"reason": "bad input"}),
    );
    assert_eq!(answer.status, 502);
    assert_eq!(answer.body["response"]["status"], "application error");
    assert_eq!(answer.body["response"]["success"], false);
    assert_eq!(
        answer.body["response"]["result"],
        json!({"error": "bad input"})
    );
    let result_only = invoke(&server, "fail", "blocking=true&result=true", json!({}));
    assert_eq!(
        (result_only.status, result_only.body),
        (502, json!({"error": "this action always fails"}))
    );

    create(
        &server,
        "spin",
        artifacts::wat::LOOP_FOREVER,
        json!({"limits": {"timeout": 300}}),
    );
    let answer = invoke(&server, "spin", "blocking=true", json!({}));
    assert_eq!(answer.status, 502);
    assert_eq!(answer.body["response"]["status"], "action developer error");
    assert_eq!(
        answer.body["response"]["result"],
        json!({"error": "The action exceeded its time limits of 300 milliseconds."})
    );
    assert_eq!(annotation(&answer.body, "timeout"), Some(&json!(true)));
}

#[test]
fn logs_and_activations_are_listed_like_openwhisk() {
    let (server, _data) = server();
    create(&server, "log", artifacts::LOG, json!({}));
    create(&server, "add", artifacts::ADD, json!({}));
    let first = invoke(
        &server,
        "log",
        "blocking=true",
        json!({"lines": 2, "message": "hi"}),
    )
    .body;
    let second = invoke(
        &server,
        "add",
        "blocking=true",
        json!({"param1": 1, "param2": 1}),
    )
    .body;

    let logs = call(
        &server,
        "GET",
        &format!(
            "{ACTIVATIONS}/{}/logs",
            first["activationId"].as_str().unwrap()
        ),
        None,
    );
    let lines: Vec<&str> = logs.body["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for line in &lines {
        // `2026-11-23T01:40:11.123456789Z stdout: …`: the time padded to 30 characters.
        let (time, rest) = line.split_at(30);
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
        assert!(
            rest.starts_with(" stdout: ") || rest.starts_with(" stderr: "),
            "{line}"
        );
    }
    // In the order the action wrote them, each stamped when it was written.
    let texts: Vec<&str> = lines.iter().map(|line| &line[31..]).collect();
    assert_eq!(
        texts,
        [
            "stdout: stdout 0: hi",
            "stderr: stderr 0: hi",
            "stdout: stdout 1: hi",
            "stderr: stderr 1: hi"
        ]
    );
    let mut times: Vec<&str> = lines.iter().map(|line| &line[..30]).collect();
    assert!(times.is_sorted(), "{lines:?}");
    times.dedup();
    assert!(times.len() > 1, "each line has its own time: {lines:?}");

    let all = call(&server, "GET", ACTIVATIONS, None).body;
    let ids: Vec<&Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["activationId"])
        .collect();
    assert_eq!(
        ids,
        [&second["activationId"], &first["activationId"]],
        "newest first"
    );
    assert!(
        all[0].get("response").is_none() && all[0]["statusCode"] == 0,
        "summaries: {all}"
    );
    let docs = call(&server, "GET", &format!("{ACTIVATIONS}?docs=true"), None).body;
    assert_eq!(docs[0]["response"]["result"], json!({"result": 2}));
    let by_name = call(&server, "GET", &format!("{ACTIVATIONS}?name=log"), None).body;
    assert_eq!(by_name.as_array().unwrap().len(), 1);
    let counted = |query: &str| {
        call(
            &server,
            "GET",
            &format!("{ACTIVATIONS}?count=true&{query}"),
            None,
        )
        .body
    };
    assert_eq!(
        counted("limit=1"),
        json!({"activations": all.as_array().unwrap().len()})
    );
    assert_eq!(counted("name=log"), json!({"activations": 1}));
    let paged = call(
        &server,
        "GET",
        &format!("{ACTIVATIONS}?skip=1&limit=1"),
        None,
    )
    .body;
    assert_eq!(paged[0]["activationId"], first["activationId"]);
    let since = second["start"].as_u64().unwrap();
    let recent = call(
        &server,
        "GET",
        &format!("{ACTIVATIONS}?since={since}"),
        None,
    )
    .body;
    assert!(
        recent
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["start"].as_u64().unwrap() >= since)
    );
    let upto = first["start"].as_u64().unwrap();
    let older = call(&server, "GET", &format!("{ACTIVATIONS}?upto={upto}"), None).body;
    assert!(
        older
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["activationId"] == first["activationId"])
    );
    assert!(
        older
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["start"].as_u64().unwrap() <= upto)
    );
    let missing = call(
        &server,
        "GET",
        &format!("{ACTIVATIONS}/00000000000000000000000000000000"),
        None,
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn bound_parameters_merge_under_invoke_parameters_and_init_ones_become_env() {
    let (server, _data) = server();
    let parameters = json!({"parameters": [
        {"key": "param1", "value": 10},
        {"key": "param2", "value": 20},
        {"key": "SECRET_TOKEN", "value": "s3cret", "init": true}
    ]});
    create(&server, "add", artifacts::ADD, parameters.clone());
    let answer = invoke(
        &server,
        "add",
        "blocking=true&result=true",
        json!({"param2": 5}),
    );
    assert_eq!(answer.body, json!({"result": 15}));

    create(&server, "env", artifacts::ENV, parameters);
    let env = invoke(&server, "env", "blocking=true&result=true", json!({})).body;
    assert_eq!(env["SECRET_TOKEN"], "s3cret");
    assert_eq!(env["__OW_ACTION_NAME"], "/guest/env");
    assert_eq!(env["__OW_NAMESPACE"], "guest");
    assert_eq!(env["__OW_API_HOST"], server.base_url);
    assert!(
        env.get("__OW_API_KEY").is_none(),
        "no api key unless the action asks for one"
    );
}

#[test]
fn actions_and_activations_survive_a_killed_process() {
    let data = tempfile::tempdir().unwrap();
    let mut first = Executor::standalone(data.path(), &[]);
    create(&first, "add", artifacts::ADD, json!({}));
    let id = invoke(
        &first,
        "add",
        "blocking=true",
        json!({"param1": 1, "param2": 1}),
    )
    .body["activationId"]
        .clone();
    first.kill();

    let second = Executor::standalone(data.path(), &[]);
    let action = call(&second, "GET", &format!("{ACTIONS}/add"), None);
    assert_eq!(
        (action.status, &action.body["version"]),
        (200, &json!("0.0.1"))
    );
    let activation = call(
        &second,
        "GET",
        &format!("{ACTIVATIONS}/{}", id.as_str().unwrap()),
        None,
    );
    assert_eq!(activation.body["response"]["result"], json!({"result": 2}));
    // Nothing is warm after a restart: the first invoke is a cold start.
    let record = invoke(
        &second,
        "add",
        "blocking=true",
        json!({"param1": 2, "param2": 2}),
    )
    .body;
    assert_eq!(record["response"]["result"], json!({"result": 4}));
    assert!(
        annotation(&record, "initTime").unwrap().is_u64(),
        "{record}"
    );
    let again = invoke(
        &second,
        "add",
        "blocking=true",
        json!({"param1": 2, "param2": 2}),
    )
    .body;
    assert_eq!(
        annotation(&again, "initTime"),
        None,
        "the second invoke is warm"
    );
}

#[test]
fn idle_containers_are_dropped_and_prepared_again() {
    let data = tempfile::tempdir().unwrap();
    let server = Executor::standalone(data.path(), &["--idle-timeout", "200ms"]);
    create(&server, "add", artifacts::ADD, json!({}));
    let add = || {
        invoke(
            &server,
            "add",
            "blocking=true",
            json!({"param1": 1, "param2": 1}),
        )
        .body
    };
    let first = add();
    assert!(annotation(&first, "initTime").is_some(), "{first}");
    server.wait_for_diagnostic("dropped idle containers");
    let record = add();
    assert_eq!(record["response"]["result"], json!({"result": 2}));
    assert!(
        annotation(&record, "initTime").is_some(),
        "the container dropped as idle is prepared again: {record}"
    );
}

/// Invokes the `sleep` action twice at once, blocking, for 500 ms each; the two records.
fn two_sleeps_at_once(server: Executor) -> Vec<Value> {
    let server = std::sync::Arc::new(server);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                invoke(&server, "sleep", "blocking=true", json!({"ms": 500})).body
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Of two 500 ms activations under a concurrency limit of 1, one ran at once and the other
/// waited for it to finish.
fn assert_one_waited_for_the_other(records: &[Value]) {
    let waits: Vec<u64> = records
        .iter()
        .map(|record| annotation(record, "waitTime").unwrap().as_u64().unwrap())
        .collect();
    assert!(waits.iter().any(|&w| w >= 400), "waitTime {waits:?}");
}

#[test]
fn the_concurrency_limit_queues_activations_of_one_action() {
    let (server, _data) = server();
    create(
        &server,
        "sleep",
        artifacts::SLEEP,
        json!({"limits": {"concurrency": 1}}),
    );
    assert_one_waited_for_the_other(&two_sleeps_at_once(server));
}

#[test]
fn the_api_answers_a_bare_question_mark_and_unknown_paths_in_json() {
    let (server, _data) = server();
    assert_eq!(
        call(&server, "GET", &format!("{ACTIONS}?"), None).status,
        200
    );
    let info = server.request("GET", "/api/v1", b"", None, None);
    assert_eq!(info.status, 200);
    assert_eq!(info.body["runtimes"]["wasm"][0]["kind"], "wasm:0.1");
    let unknown = call(&server, "GET", "/api/v1/namespaces/_/feeds", None);
    assert_eq!(
        (unknown.status, &unknown.body["error"]),
        (404, &json!("The requested resource does not exist."))
    );
    assert_request_id(&unknown.body["code"]);
    let anonymous = server.request("GET", "/api/v1/namespaces/_/feeds", b"", None, None);
    assert_eq!(
        (anonymous.status, &anonymous.body["error"]),
        (
            401,
            &json!("The resource requires authentication, which was not supplied with the request")
        )
    );
    let wrong_method = call(&server, "PATCH", &format!("{ACTIONS}/add"), None);
    assert_eq!(wrong_method.status, 405, "{wrong_method:?}");
    assert_request_id(&wrong_method.body["code"]);
    for (path, what) in [
        (format!("{ACTIVATIONS}/{}", "0".repeat(32)), "activation"),
        (format!("{ACTIVATIONS}/{}/logs", "0".repeat(32)), "logs"),
        (format!("{ACTIVATIONS}/{}/result", "0".repeat(32)), "result"),
    ] {
        let missing = call(&server, "GET", &path, None);
        assert_eq!(
            (missing.status, &missing.body["error"]),
            (404, &json!("The requested resource does not exist.")),
            "{what}"
        );
    }
}

#[test]
fn oversized_bodies_are_refused_with_413_and_a_sentence() {
    let (server, _data) = server();
    create(&server, "add", artifacts::ADD, json!({}));
    let params = json!({"blob": "x".repeat(1024 * 1024)});
    let answer = invoke(&server, "add", "blocking=true", params);
    assert_eq!(answer.status, 413);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("bytes allowed"),
        "{:?}",
        answer.body
    );
    let code = "A".repeat(66 * 1024 * 1024);
    let body = json!({"exec": {"kind": "wasm:0.1", "code": code}});
    let answer = call(&server, "PUT", &format!("{ACTIONS}/huge"), Some(&body));
    assert_eq!(answer.status, 413);
    // OpenWhisk counts the code string: one byte over 48 MB is refused with its sentence.
    const MAX_CODE: usize = 48 * 1024 * 1024;
    let body = json!({"exec": {"kind": "wasm:0.1", "code": "A".repeat(MAX_CODE + 1)}});
    let answer = call(&server, "PUT", &format!("{ACTIONS}/huge"), Some(&body));
    assert_eq!(answer.status, 413, "{:?}", answer.body);
    let error = answer.body["error"].as_str().unwrap();
    assert!(
        error.starts_with("exec larger than allowed: 50331649 > 50331648 bytes."),
        "{error}"
    );
    // 48 MB exactly is within the limit (and then refused as no module).
    let body = json!({"exec": {"kind": "wasm:0.1", "code": "A".repeat(MAX_CODE)}});
    let answer = call(&server, "PUT", &format!("{ACTIONS}/huge"), Some(&body));
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    // The server goes on serving.
    let answer = invoke(
        &server,
        "add",
        "blocking=true&result=true",
        json!({"param1": 1, "param2": 1}),
    );
    assert_eq!(answer.body, json!({"result": 2}));
}

#[test]
fn startup_prints_the_wsk_command_that_points_at_this_server() {
    let (server, _data) = server();
    let expected = format!(
        "wsk property set --apihost '{}' --auth '{GUEST}'",
        server.base_url
    );
    server.wait_for_stdout(&expected);
}

#[test]
fn the_concurrency_limit_holds_when_two_invokes_find_the_action_cold() {
    let data = tempfile::tempdir().unwrap();
    let server = Executor::standalone(data.path(), &["--idle-timeout", "200ms"]);
    create(
        &server,
        "sleep",
        artifacts::SLEEP,
        json!({"limits": {"concurrency": 1}}),
    );
    // Warm once, then dropped as idle.
    let warmed = invoke(&server, "sleep", "blocking=true", json!({"ms": 0}));
    assert_eq!(warmed.body["response"]["result"], json!({"slept_ms": 0}));
    server.wait_for_diagnostic("dropped idle containers");
    let records = two_sleeps_at_once(server);
    let cold = records
        .iter()
        .filter(|record| annotation(record, "initTime").is_some())
        .count();
    assert_eq!(cold, 1, "prepared once: {records:?}");
    assert_one_waited_for_the_other(&records);
}

#[test]
fn an_accepted_activation_cut_off_by_a_crash_is_recorded_as_interrupted() {
    let data = tempfile::tempdir().unwrap();
    let mut first = Executor::standalone(data.path(), &[]);
    create(&first, "sleep", artifacts::SLEEP, json!({}));
    let accepted = invoke(&first, "sleep", "blocking=false", json!({"ms": 30000}));
    assert_eq!(accepted.status, 202);
    let id = accepted.body["activationId"].as_str().unwrap().to_owned();
    first.kill();

    let second = Executor::standalone(data.path(), &[]);
    let record = call(&second, "GET", &format!("{ACTIVATIONS}/{id}"), None);
    assert_eq!(record.status, 200, "{record:?}");
    assert_eq!(record.body["name"], "sleep");
    assert_eq!(record.body["response"]["status"], "whisk internal error");
    assert_eq!(
        record.body["response"]["result"],
        json!({"error": "The activation was interrupted: the server stopped before it finished."})
    );
}

#[test]
fn sigterm_lets_accepted_activations_finish_and_records_them() {
    let data = tempfile::tempdir().unwrap();
    let mut first = Executor::standalone(data.path(), &[]);
    create(&first, "sleep", artifacts::SLEEP, json!({}));
    let accepted = invoke(&first, "sleep", "blocking=false", json!({"ms": 1000}));
    let id = accepted.body["activationId"].as_str().unwrap().to_owned();
    first.terminate();
    assert!(first.wait_for_exit(Duration::from_secs(20)).success());

    let second = Executor::standalone(data.path(), &[]);
    let record = call(&second, "GET", &format!("{ACTIVATIONS}/{id}"), None);
    assert_eq!(
        (record.status, &record.body["response"]["result"]),
        (200, &json!({"slept_ms": 1000})),
        "{record:?}"
    );
}

#[test]
fn a_wildcard_listen_address_is_advertised_as_loopback() {
    let data = tempfile::tempdir().unwrap();
    let server = Executor::standalone(data.path(), &["--listen", "0.0.0.0:0"]);
    let port = server.base_url.rsplit(':').next().unwrap().to_owned();
    let expected = format!("--apihost 'http://127.0.0.1:{port}'");
    server.wait_for_stdout(&expected);
}

#[test]
fn a_result_over_1_mb_is_refused_with_the_platform_sentence() {
    let (server, _data) = server();
    // 100 MB of its own memory as the result: refused by its length, never copied out.
    create(&server, "big", artifacts::wat::BIG_RESULT, json!({}));
    let answer = invoke(&server, "big", "blocking=true", json!({"big": true}));
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(
        answer.body["response"]["status"], "action developer error",
        "{answer:?}"
    );
    assert_eq!(
        answer.body["response"]["result"],
        json!({"error": "The action produced a response that exceeded the allowed length: 104857600 > 1048576 bytes."})
    );
    let small = invoke(&server, "big", "blocking=true&result=true", json!({}));
    assert_eq!((small.status, small.body), (200, json!({})));
    // Bound and invoke parameters of 600 KB each, echoed: just over the limit, by its size.
    let half = "x".repeat(600 * 1024);
    let bound = json!({"parameters": [{"key": "a", "value": half}]});
    assert_eq!(create(&server, "echo", artifacts::ECHO, bound).status, 200);
    let size = serde_json::to_vec(&json!({"a": half, "b": half}))
        .unwrap()
        .len();
    let answer = invoke(
        &server,
        "echo",
        "blocking=true&result=true",
        json!({"b": half}),
    );
    assert_eq!(
        (answer.status, answer.body),
        (
            502,
            json!({"error": format!("The action produced a response that exceeded the allowed length: {size} > 1048576 bytes.")})
        )
    );
}

/// Names OpenWhisk refuses, URL-encoded: a slash, a NUL, a quote, a leading dash, letters
/// outside ASCII, a trailing space, and one character too many.
fn names_outside_openwhisk_form() -> [String; 7] {
    [
        "a%2Fb",
        "a%00b",
        "a'b",
        "-a",
        "%C3%BCn%C3%AF%E2%98%83",
        "a%20",
        &"a".repeat(257),
    ]
    .map(str::to_owned)
}

#[test]
fn entity_names_outside_openwhisk_form_are_refused_and_nothing_is_stored() {
    let (server, _data) = server();
    for encoded in &names_outside_openwhisk_form() {
        let put = create(&server, encoded, artifacts::ADD, json!({}));
        assert_eq!(put.status, 400, "{encoded}: {put:?}");
        let error = put.body["error"].as_str().unwrap();
        assert!(error.starts_with("The name of the entity "), "{error}");
        for (method, path) in [
            ("GET", format!("{ACTIONS}/{encoded}")),
            ("DELETE", format!("{ACTIONS}/{encoded}")),
            ("POST", format!("{ACTIONS}/{encoded}?blocking=true")),
        ] {
            assert_eq!(
                call(&server, method, &path, None).status,
                400,
                "{method} {path}"
            );
        }
    }
    assert_eq!(call(&server, "GET", ACTIONS, None).body, json!([]));
    // Credentials are checked before the name.
    let anonymous = server.request("GET", &format!("{ACTIONS}/a%2Fb"), b"", None, None);
    assert_eq!(anonymous.status, 401);
    let longest = "b".repeat(256);
    for name in ["a%20b@c.d-e", "x@", "_", &longest] {
        let created = create(&server, name, artifacts::ADD, json!({}));
        assert_eq!(created.status, 200, "{name}: {created:?}");
    }
    let names: Vec<Value> = call(&server, "GET", ACTIONS, None)
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|action| action["name"].clone())
        .collect();
    assert!(names.contains(&json!("a b@c.d-e")), "{names:?}");
}

#[test]
fn package_trigger_and_rule_names_outside_openwhisk_form_are_refused_and_nothing_is_stored() {
    let (server, _data) = server();
    // Each collection with a body its PUT takes and the other methods its entities take
    // (firing a trigger, enabling a rule).
    let collections = [
        (PACKAGES, json!({}), &["GET", "DELETE"][..]),
        (TRIGGERS, json!({}), &["GET", "DELETE", "POST"]),
        (
            RULES,
            json!({"trigger": "/_/t", "action": "/_/a"}),
            &["GET", "DELETE", "POST"],
        ),
    ];
    for (collection, body, methods) in collections {
        for encoded in &names_outside_openwhisk_form() {
            let path = format!("{collection}/{encoded}");
            let put = call(
                &server,
                "PUT",
                &format!("{path}?overwrite=true"),
                Some(&body),
            );
            assert_eq!(put.status, 400, "PUT {path}: {put:?}");
            let error = put.body["error"].as_str().unwrap();
            assert!(error.starts_with("The name of the entity "), "{error}");
            for method in methods {
                let answer = call(&server, method, &path, Some(&json!({})));
                assert_eq!(answer.status, 400, "{method} {path}: {answer:?}");
            }
        }
        assert_eq!(
            call(&server, "GET", collection, None).body,
            json!([]),
            "{collection}"
        );
    }
}

#[test]
fn parallel_overwrites_of_a_new_name_all_succeed_one_version_each() {
    let (server, _data) = server();
    let server = std::sync::Arc::new(server);
    let body = json!({"exec": {"kind": "wasm:0.1", "code": code(artifacts::ADD)}});
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (server, body) = (server.clone(), body.clone());
            std::thread::spawn(move || {
                call(
                    &server,
                    "PUT",
                    &format!("{ACTIONS}/racy?overwrite=true"),
                    Some(&body),
                )
            })
        })
        .collect();
    let mut versions: Vec<String> = threads
        .into_iter()
        .map(|thread| {
            let answer = thread.join().unwrap();
            assert_eq!(answer.status, 200, "{answer:?}");
            answer.body["version"].as_str().unwrap().to_owned()
        })
        .collect();
    versions.sort_by_key(|version| version.rsplit('.').next().unwrap().parse::<u32>().unwrap());
    let expected: Vec<String> = (1..=50).map(|patch| format!("0.0.{patch}")).collect();
    assert_eq!(
        versions, expected,
        "one create, then one update after another"
    );
    let stored = call(&server, "GET", &format!("{ACTIONS}/racy"), None);
    assert_eq!(stored.body["version"], "0.0.50");
}

#[test]
fn a_second_server_on_the_data_directory_refuses_and_the_first_keeps_its_records() {
    let data = tempfile::tempdir().unwrap();
    let first = Executor::standalone(data.path(), &[]);
    create(&first, "sleep", artifacts::SLEEP, json!({}));
    let accepted = invoke(&first, "sleep", "blocking=false", json!({"ms": 1000}));
    assert_eq!(accepted.status, 202);
    let id = accepted.body["activationId"].as_str().unwrap().to_owned();
    let refused = Executor::standalone_refused(data.path());
    assert!(
        refused.contains(&format!(
            "is in use by another ow-executor standalone server (pid {})",
            first.pid()
        )),
        "{refused}"
    );
    // The second server marked nothing interrupted: the activation finishes as it ran.
    let record = wait_for_activation(&first, &id);
    assert_eq!(record["response"]["status"], "success", "{record}");
    assert_eq!(record["response"]["result"], json!({"slept_ms": 1000}));
}

#[test]
fn a_database_deleted_under_the_server_fails_every_request_loudly() {
    let data = tempfile::tempdir().unwrap();
    let server = Executor::standalone(data.path(), &[]);
    assert_eq!(
        create(&server, "add", artifacts::ADD, json!({})).status,
        200
    );
    std::fs::remove_file(data.path().join("ow-wasm.sqlite")).unwrap();
    let expected = format!(
        "The database {} was deleted while the server was running",
        data.path().join("ow-wasm.sqlite").display()
    );
    for answer in [
        create(&server, "echo", artifacts::ECHO, json!({})),
        invoke(&server, "add", "blocking=true", json!({})),
        call(&server, "GET", ACTIONS, None),
    ] {
        assert_eq!(answer.status, 500, "{answer:?}");
        let error = answer.body["error"].as_str().unwrap();
        assert!(error.starts_with(&expected), "{error}");
    }
}
