//! Sequences: each component gets the previous result, one activation per component plus the
//! sequence's own (its `logs` the component ids), the first error stops it, and create and
//! update refuse what OpenWhisk refuses.

use super::{
    ACTIONS, ACTIVATIONS, PACKAGES, activation, annotation, call, create, invoke, put, server,
    wait_for_activation,
};
use crate::harness::{Answer, Executor};
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};

fn put_sequence(server: &Executor, name: &str, components: &[&str], overwrite: bool) -> Answer {
    let body = json!({"exec": {"kind": "sequence", "components": components}});
    call(
        server,
        "PUT",
        &format!("{ACTIONS}/{name}?overwrite={overwrite}"),
        Some(&body),
    )
}

/// The activation a sequence's logs name.
fn component(server: &Executor, id: &Value) -> Value {
    activation(server, id.as_str().unwrap())
}

#[test]
fn a_sequence_passes_each_result_on_and_records_every_activation() {
    let (server, _data) = server();
    create(&server, "add", artifacts::ADD, json!({}));
    put(
        &server,
        PACKAGES,
        "utils",
        json!({"parameters": [{"key": "tag", "value": "pkg"}]}),
    );
    create(&server, "utils/echo", artifacts::ECHO, json!({}));
    let created = put_sequence(&server, "seq", &["/_/add", "/_/utils/echo"], false);
    assert_eq!(created.status, 200, "{created:?}");
    let components = json!(["/guest/add", "/guest/utils/echo"]);
    assert_eq!(
        created.body["exec"],
        json!({"kind": "sequence", "components": components})
    );
    assert_eq!(
        created.body["parameters"],
        json!([{"key": "_actions", "value": components}])
    );
    assert_eq!(annotation(&created.body, "exec"), Some(&json!("sequence")));

    let answer = invoke(
        &server,
        "seq",
        "blocking=true",
        json!({"param1": 2, "param2": 2}),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let record = answer.body;
    assert_eq!(
        record["response"]["result"],
        json!({"result": 4, "tag": "pkg"})
    );
    assert_eq!(record["name"], "seq");
    assert_eq!(annotation(&record, "topmost"), Some(&json!(true)));
    assert_eq!(annotation(&record, "kind"), Some(&json!("sequence")));
    assert_eq!(annotation(&record, "path"), Some(&json!("guest/seq")));
    assert_eq!(annotation(&record, "limits").unwrap()["memory"], 256);
    assert!(record.get("cause").is_none(), "{record}");
    let ids = record["logs"].as_array().unwrap();
    assert_eq!(ids.len(), 2, "{record}");
    let add = component(&server, &ids[0]);
    let echo = component(&server, &ids[1]);
    assert_eq!(add["response"]["result"], json!({"result": 4}));
    assert_eq!(echo["name"], "echo");
    assert_eq!(annotation(&echo, "path"), Some(&json!("guest/utils/echo")));
    for component in [&add, &echo] {
        assert_eq!(component["cause"], record["activationId"], "{component}");
    }
    let durations = add["duration"].as_u64().unwrap() + echo["duration"].as_u64().unwrap();
    assert_eq!(record["duration"].as_u64(), Some(durations));
    // Three activations listed; the sequence's summary is listed under its name.
    let listed = call(&server, "GET", ACTIVATIONS, None).body;
    assert_eq!(listed.as_array().unwrap().len(), 3);
    let by_name = call(&server, "GET", &format!("{ACTIVATIONS}?name=seq"), None).body;
    assert_eq!(by_name[0]["activationId"], record["activationId"]);

    // `result=true` answers the last result; a non-blocking invoke is 202 and recorded.
    let result = invoke(
        &server,
        "seq",
        "blocking=true&result=true",
        json!({"param1": 1, "param2": 1}),
    );
    assert_eq!(
        (result.status, result.body),
        (200, json!({"result": 2, "tag": "pkg"}))
    );
    let accepted = invoke(&server, "seq", "", json!({"param1": 5, "param2": 5}));
    assert_eq!(accepted.status, 202);
    let id = accepted.body["activationId"].as_str().unwrap().to_owned();
    assert_eq!(accepted.activation_id.as_deref(), Some(id.as_str()));
    let later = wait_for_activation(&server, &id);
    assert_eq!(
        later["response"]["result"],
        json!({"result": 10, "tag": "pkg"})
    );
}

#[test]
fn the_first_error_stops_a_sequence() {
    let (server, _data) = server();
    create(&server, "add", artifacts::ADD, json!({}));
    create(&server, "fail", artifacts::ERROR, json!({}));
    create(&server, "echo", artifacts::ECHO, json!({}));
    put_sequence(&server, "seq", &["/_/add", "/_/fail", "/_/echo"], false);
    let answer = invoke(
        &server,
        "seq",
        "blocking=true",
        json!({"param1": 1, "param2": 1}),
    );
    assert_eq!(answer.status, 502, "{answer:?}");
    let record = answer.body;
    assert_eq!(record["response"]["status"], "application error");
    assert_eq!(
        record["response"]["result"],
        json!({"error": "this action always fails"})
    );
    assert_eq!(
        record["logs"].as_array().unwrap().len(),
        2,
        "echo never ran: {record}"
    );
    assert_eq!(
        call(&server, "GET", &format!("{ACTIVATIONS}?name=echo"), None).body,
        json!([])
    );

    // A component deleted since the sequence was made ends it with OpenWhisk's sentence.
    call(&server, "DELETE", &format!("{ACTIONS}/fail"), None);
    let record = invoke(
        &server,
        "seq",
        "blocking=true",
        json!({"param1": 1, "param2": 1}),
    )
    .body;
    assert_eq!(
        record["response"]["result"],
        json!({"error": "Sequence component does not exist."})
    );
    assert_eq!(record["logs"].as_array().unwrap().len(), 1);
}

#[test]
fn a_sequence_in_a_sequence_is_recorded_as_caused_by_it() {
    let (server, _data) = server();
    create(&server, "add", artifacts::ADD, json!({}));
    create(&server, "echo", artifacts::ECHO, json!({}));
    put_sequence(&server, "inner", &["/_/add"], false);
    let outer = put_sequence(&server, "outer", &["/guest/inner", "/_/echo"], false);
    assert_eq!(outer.status, 200, "{outer:?}");
    let record = invoke(
        &server,
        "outer",
        "blocking=true",
        json!({"param1": 3, "param2": 4}),
    )
    .body;
    assert_eq!(record["response"]["result"], json!({"result": 7}));
    let ids = record["logs"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    let inner = component(&server, &ids[0]);
    assert_eq!(inner["name"], "inner");
    assert_eq!(inner["cause"], record["activationId"]);
    assert_eq!(annotation(&inner, "topmost"), Some(&json!(false)));
    assert_eq!(annotation(&inner, "causedBy"), Some(&json!("sequence")));
    let add = component(&server, &inner["logs"][0]);
    assert_eq!(add["cause"], inner["activationId"]);
}

#[test]
fn sequences_that_cannot_run_are_refused_at_create() {
    let (server, _data) = server();
    create(&server, "add", artifacts::ADD, json!({}));
    let many: Vec<&str> = vec!["/_/add"; 51];
    put_sequence(&server, "inner", &["/_/add"], false);
    let deep: Vec<&str> = vec!["/_/inner"; 26];
    for (components, error) in [
        (vec![], "No component specified for the sequence."),
        (vec!["/_/missing"], "Sequence component does not exist."),
        (vec!["/_/nothing/add"], "Sequence component does not exist."),
        (vec!["/someone/add"], "Sequence component does not exist."),
        (many, "Too many actions in the sequence."),
        // 26 of a sequence of one are fine; the count is of actions, inlined.
        (deep[..25].to_vec(), ""),
    ] {
        let answer = put_sequence(&server, "seq", &components, true);
        if error.is_empty() {
            assert_eq!(answer.status, 200, "{answer:?}");
        } else {
            assert_eq!(
                (answer.status, answer.body["error"].as_str()),
                (400, Some(error)),
                "{components:?}"
            );
        }
    }
    put_sequence(&server, "pair", &["/_/inner", "/_/inner"], false);
    let inlined: Vec<&str> = vec!["/_/pair"; 26];
    let answer = put_sequence(&server, "seq", &inlined, true);
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (400, Some("Too many actions in the sequence."))
    );
    // A sequence may not reach itself, directly or through another.
    let answer = put_sequence(&server, "inner", &["/_/add", "/_/inner"], true);
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (400, Some("Sequence may not refer to itself."))
    );
    let answer = put_sequence(&server, "inner", &["/_/pair"], true);
    assert_eq!(answer.body["error"], "Sequence may not refer to itself.");
    let answer = put_sequence(&server, "seq", &["add"], false);
    assert_eq!(answer.status, 400);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap()
            .contains("must contain at least the namespace and the name of the entity"),
        "{answer:?}"
    );
    // Made a Wasm action again, a sequence keeps none of its `_actions`.
    let body = json!({"exec": {"kind": "wasm:0.1", "code": super::code(artifacts::ECHO)}});
    let answer = call(
        &server,
        "PUT",
        &format!("{ACTIONS}/inner?overwrite=true"),
        Some(&body),
    );
    assert_eq!(answer.body["parameters"], json!([]), "{answer:?}");
    let echoed = invoke(
        &server,
        "inner",
        "blocking=true&result=true",
        json!({"x": 1}),
    );
    assert_eq!(echoed.body, json!({"x": 1}));
}
