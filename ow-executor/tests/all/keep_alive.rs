//! Every route of every mode leaves a keep-alive connection usable, whatever body it ignores,
//! reads in part or refuses: several hundred mixed requests with bodies go over one
//! connection in each mode, and none of them loses it.

use crate::harness::{Connection, Executor, init_body, zip};
use base64::Engine as _;
use ow_executor::engines::EngineKind;
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A body no route of these requests reads: larger than what arrives with the request head,
/// so that a server that does not read it cannot keep the connection.
fn ignored_body() -> Vec<u8> {
    vec![b'x'; 200 * 1024]
}

/// The `/init` body of the `add` action.
fn add_init_body() -> Vec<u8> {
    serde_json::to_vec(&init_body(&zip(&artifacts::read(artifacts::ADD)))).unwrap()
}

#[test]
fn runtime_mode_keeps_one_connection_through_hundreds_of_mixed_requests() {
    let executor = Executor::runtime(EngineKind::default(), &[]);
    let mut connection = Connection::open(&executor);
    let ignored = ignored_body();
    let init = add_init_body();
    let missing_code = connection.send("POST", "/init", &[JSON], b"{}");
    assert_eq!(
        (missing_code.status, missing_code.body),
        (403, json!({"error": "Missing main/no code to execute."}))
    );
    assert_eq!(
        connection
            .send("POST", "/run", &[JSON], br#"{"value": {}}"#)
            .status,
        403
    );
    assert_eq!(connection.send("POST", "/init", &[JSON], &init).status, 200);
    for round in 0..60 {
        let run = format!(r#"{{"value": {{"param1": {round}, "param2": 1}}}}"#);
        let answer = connection.send("POST", "/run", &[JSON], run.as_bytes());
        assert_eq!(
            (answer.status, answer.body),
            (200, json!({"result": round + 1}))
        );
        assert_eq!(connection.send("GET", "/run", &[], &ignored).status, 405);
        assert_eq!(
            connection.send("POST", "/nowhere", &[], &ignored).status,
            404
        );
        assert_eq!(connection.send("POST", "/init", &[JSON], &init).status, 403);
        assert_eq!(connection.send("POST", "/run", &[JSON], b"{").status, 400);
    }
    // A body over the limit is refused, and the rest of it read, not left on the connection.
    let oversized = vec![b' '; 3 * 1024 * 1024];
    assert_eq!(
        connection.send("POST", "/run", &[JSON], &oversized).status,
        413
    );
    let answer = connection.send(
        "POST",
        "/run",
        &[JSON],
        br#"{"value": {"param1": 1, "param2": 0}}"#,
    );
    assert_eq!(answer.body, json!({"result": 1}));
}

#[test]
fn executor_mode_keeps_one_connection_through_hundreds_of_mixed_requests() {
    let executor = Executor::executor_mode(EngineKind::default(), &[]);
    let mut connection = Connection::open(&executor);
    let ignored = ignored_body();
    let init = add_init_body();
    for round in 0..60 {
        // An invoker sends `{}` to /start, which reads nothing.
        let started = connection.send("POST", "/start", &[JSON], b"{}");
        assert_eq!(started.status, 200, "{started:?}");
        let id = started.body["containerId"].as_str().unwrap().to_owned();
        let initialized = connection.send("POST", &format!("/{id}/init"), &[JSON], &init);
        assert_eq!(initialized.status, 200);
        let run = format!(r#"{{"value": {{"param1": {round}, "param2": 2}}}}"#);
        let answer = connection.send("POST", &format!("/{id}/run"), &[JSON], run.as_bytes());
        assert_eq!(answer.body, json!({"result": round + 2}));
        assert_eq!(connection.send("GET", "/start", &[], &ignored).status, 405);
        let destroyed = connection.send("POST", &format!("/{id}/destroy"), &[JSON], &ignored);
        assert_eq!(destroyed.status, 200);
        let gone = connection.send("POST", &format!("/{id}/run"), &[JSON], run.as_bytes());
        assert_eq!(gone.status, 404);
    }
}

#[test]
fn standalone_mode_keeps_one_connection_through_hundreds_of_mixed_requests() {
    let data = tempfile::tempdir().unwrap();
    let server = Executor::standalone(data.path(), &[]);
    let mut connection = Connection::open(&server);
    let ignored = ignored_body();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(ow_executor::standalone::GUEST_KEY)
    );
    let authorized = [JSON, ("Authorization", auth.as_str())];
    let zip = zip(&artifacts::read(artifacts::ADD));
    let code = base64::engine::general_purpose::STANDARD.encode(zip);
    let action = serde_json::to_vec(&json!({"exec": {"kind": "wasm:0.1", "code": code}})).unwrap();
    let actions = "/api/v1/namespaces/_/actions";
    let created = connection.send("PUT", &format!("{actions}/add"), &authorized, &action);
    assert_eq!(created.status, 200, "{created:?}");
    let web_action = serde_json::to_vec(&json!({
        "exec": {"kind": "wasm:0.1", "code": code},
        "annotations": [{"key": "web-export", "value": true}]
    }))
    .unwrap();
    let created = connection.send("PUT", &format!("{actions}/web"), &authorized, &web_action);
    assert_eq!(created.status, 200, "{created:?}");
    let package = "/api/v1/namespaces/_/packages/pkg";
    let trigger = "/api/v1/namespaces/_/triggers/t";
    let rule = "/api/v1/namespaces/_/rules/r";
    let rule_body = br#"{"trigger": "/_/t", "action": "/_/add"}"#;
    for round in 0..50 {
        // Packages, triggers and rules: written, read with a body they ignore, fired.
        let put = |path: &str| format!("{path}?overwrite=true");
        let written = connection.send("PUT", &put(package), &authorized, b"{}");
        assert_eq!(written.status, 200, "{written:?}");
        assert_eq!(
            connection
                .send("GET", package, &authorized, &ignored)
                .status,
            200
        );
        let written = connection.send("PUT", &put(trigger), &authorized, b"{}");
        assert_eq!(written.status, 200, "{written:?}");
        let written = connection.send("PUT", &put(rule), &authorized, rule_body);
        assert_eq!(written.status, 200, "{written:?}");
        assert_eq!(
            connection.send("GET", rule, &authorized, &ignored).status,
            200
        );
        let fired = connection.send("POST", trigger, &authorized, br#"{"param1": 1}"#);
        assert_eq!(fired.status, 202, "{fired:?}");
        let enabled = connection.send("POST", rule, &authorized, br#"{"status": "active"}"#);
        assert_eq!((enabled.status, enabled.body), (200, json!("OK")));
        // A web action, anonymous, its parameters a JSON body's fields.
        let web = "/api/v1/web/guest/default/web.json";
        let params = format!(r#"{{"param1": {round}, "param2": 2}}"#);
        let answer = connection.send("POST", web, &[JSON], params.as_bytes());
        assert_eq!(
            (answer.status, answer.body),
            (200, json!({"result": round + 2}))
        );
        // GETs and DELETEs read no body, whatever the client sends.
        assert_eq!(
            connection
                .send("GET", actions, &authorized, &ignored)
                .status,
            200
        );
        let params = format!(r#"{{"param1": {round}, "param2": 1}}"#);
        let invoked = connection.send(
            "POST",
            &format!("{actions}/add?blocking=true&result=true"),
            &authorized,
            params.as_bytes(),
        );
        assert_eq!(
            (invoked.status, invoked.body),
            (200, json!({"result": round + 1}))
        );
        assert_eq!(connection.send("GET", "/api/v1", &[], &ignored).status, 200);
        let activations = "/api/v1/namespaces/_/activations?limit=1";
        assert_eq!(
            connection
                .send("GET", activations, &authorized, &ignored)
                .status,
            200
        );
        let anonymous = connection.send("GET", &format!("{actions}/add"), &[], &ignored);
        assert_eq!(anonymous.status, 401);
        let missing = connection.send(
            "DELETE",
            &format!("{actions}/missing"),
            &authorized,
            &ignored,
        );
        assert_eq!(missing.status, 404);
        let patch = connection.send("PATCH", &format!("{actions}/add"), &authorized, &ignored);
        assert_eq!(patch.status, 405);
    }
}
