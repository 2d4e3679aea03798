//! Packages and bindings: bound parameters under the action's and the invoke's, actions in a
//! package (`pkg/action`), listings, and the refusals OpenWhisk's controller answers.

use super::{ACTIONS, ACTIVATIONS, PACKAGES, annotation, call, create, invoke, put, server};
use crate::harness::Answer;
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};

fn put_package(server: &crate::harness::Executor, name: &str, body: Value) -> Answer {
    put(server, PACKAGES, name, body)
}

fn names(answer: &Answer) -> Vec<String> {
    answer
        .body
        .as_array()
        .unwrap_or_else(|| panic!("a list: {answer:?}"))
        .iter()
        .map(|entity| {
            format!(
                "{}/{}",
                entity["namespace"].as_str().unwrap(),
                entity["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn a_package_s_parameters_lie_under_its_actions_and_the_invoke_s() {
    let (server, _data) = server();
    let created = put_package(
        &server,
        "utils",
        json!({"parameters": [{"key": "a", "value": 1}, {"key": "b", "value": 1}]}),
    );
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(
        (
            &created.body["name"],
            &created.body["version"],
            &created.body["binding"]
        ),
        (&json!("utils"), &json!("0.0.1"), &json!({}))
    );
    let again = put_package(&server, "utils", json!({}));
    assert_eq!(
        (again.status, &again.body["error"]),
        (409, &json!("resource already exists"))
    );

    let echo = create(
        &server,
        "utils/echo",
        artifacts::ECHO,
        json!({"parameters": [{"key": "b", "value": 2}]}),
    );
    assert_eq!(echo.status, 200, "{echo:?}");
    assert_eq!(echo.body["namespace"], "guest/utils");
    assert_eq!(
        create(&server, "top", artifacts::ECHO, json!({})).status,
        200
    );

    // The invoke's parameters over the action's over the package's.
    let answer = invoke(
        &server,
        "utils/echo",
        "blocking=true",
        json!({"c": 3, "a": 0}),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let record = answer.body;
    assert_eq!(
        record["response"]["result"],
        json!({"a": 0, "b": 2, "c": 3})
    );
    assert_eq!(
        (&record["namespace"], &record["name"]),
        (&json!("guest"), &json!("echo"))
    );
    assert_eq!(
        annotation(&record, "path"),
        Some(&json!("guest/utils/echo"))
    );
    let merged = call(&server, "GET", &format!("{ACTIONS}/utils/echo"), None);
    assert_eq!(
        merged.body["parameters"],
        json!([{"key": "a", "value": 1}, {"key": "b", "value": 2}])
    );

    // `wsk action list utils`, `wsk action list` (every package's actions too), `wsk package
    // get utils`, `wsk package list`.
    let in_package = call(&server, "GET", &format!("{ACTIONS}/utils/"), None);
    assert_eq!(names(&in_package), ["guest/utils/echo"]);
    let all = call(&server, "GET", ACTIONS, None);
    assert_eq!(names(&all), ["guest/top", "guest/utils/echo"]);
    assert_eq!(
        call(&server, "GET", &format!("{ACTIONS}?count=true"), None).body,
        json!({"actions": 2})
    );
    let package = call(&server, "GET", &format!("{PACKAGES}/utils"), None).body;
    assert_eq!(package["actions"][0]["name"], "echo");
    assert_eq!(package["actions"][0]["version"], "0.0.1");
    assert_eq!(package["feeds"], json!([]));
    let listed = call(&server, "GET", PACKAGES, None);
    assert_eq!(names(&listed), ["guest/utils"]);
    assert_eq!(listed.body[0]["binding"], false);
    assert!(listed.body[0].get("parameters").is_none(), "{listed:?}");

    // Activations of a packaged action are listed as `package/name`.
    invoke(&server, "top", "blocking=true", json!({}));
    let by_name = |name: &str| {
        call(&server, "GET", &format!("{ACTIVATIONS}?name={name}"), None)
            .body
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(
        (by_name("utils/echo"), by_name("echo"), by_name("top")),
        (1, 0, 1)
    );
    let bad_filter = call(&server, "GET", &format!("{ACTIVATIONS}?name=a/b/c"), None);
    assert_eq!(bad_filter.status, 400);
    assert_eq!(
        bad_filter.body["error"],
        "The query parameter 'name' was malformed:\nParameter may be a 'simple' name or 'package-name/simple' name: a/b/c"
    );

    // An update keeps what it leaves out and bumps the version.
    let updated = call(
        &server,
        "PUT",
        &format!("{PACKAGES}/utils?overwrite=true"),
        Some(&json!({"annotations": [{"key": "description", "value": "tools"}]})),
    );
    assert_eq!(updated.body["version"], "0.0.2");
    assert_eq!(updated.body["parameters"][0]["key"], "a");
}

#[test]
fn a_binding_lays_its_parameters_over_the_package_it_binds() {
    let (server, _data) = server();
    put_package(
        &server,
        "utils",
        json!({"parameters": [{"key": "a", "value": 1}, {"key": "b", "value": 1}]}),
    );
    create(&server, "utils/echo", artifacts::ECHO, json!({}));
    let bound = put_package(
        &server,
        "mine",
        json!({"binding": {"namespace": "_", "name": "utils"}, "parameters": [{"key": "a", "value": 10}]}),
    );
    assert_eq!(bound.status, 200, "{bound:?}");
    let binding = json!({"namespace": "guest", "name": "utils"});
    assert_eq!(bound.body["binding"], binding);
    assert_eq!(annotation(&bound.body, "binding"), Some(&binding));

    let record = invoke(&server, "mine/echo", "blocking=true", json!({"c": 3})).body;
    assert_eq!(
        record["response"]["result"],
        json!({"a": 10, "b": 1, "c": 3})
    );
    assert_eq!(
        annotation(&record, "path"),
        Some(&json!("guest/utils/echo"))
    );
    assert_eq!(annotation(&record, "binding"), Some(&json!("guest/mine")));
    let by_binding = call(
        &server,
        "GET",
        &format!("{ACTIVATIONS}?name=mine/echo"),
        None,
    );
    assert_eq!(by_binding.body.as_array().unwrap().len(), 1);

    let got = call(&server, "GET", &format!("{PACKAGES}/mine"), None).body;
    assert_eq!(
        got["parameters"],
        json!([{"key": "b", "value": 1}, {"key": "a", "value": 10}])
    );
    assert_eq!(got["actions"][0]["name"], "echo");
    let through = call(&server, "GET", &format!("{ACTIONS}/mine/"), None);
    assert_eq!(names(&through), ["guest/utils/echo"]);
    let listed = call(&server, "GET", PACKAGES, None).body;
    assert_eq!(listed[0]["binding"], binding, "{listed}");

    // Writes through a binding, bindings of bindings or of nothing, a package made a
    // binding, the reserved name: each refused with OpenWhisk's sentence.
    let refusals = [
        (
            create(&server, "mine/other", artifacts::ECHO, json!({})),
            400,
            "Operation not permitted on package binding.",
        ),
        (
            call(&server, "DELETE", &format!("{ACTIONS}/mine/echo"), None),
            400,
            "Operation not permitted on package binding.",
        ),
        (
            put_package(
                &server,
                "again",
                json!({"binding": {"namespace": "guest", "name": "mine"}}),
            ),
            400,
            "Cannot bind to another package binding.",
        ),
        (
            put_package(
                &server,
                "none",
                json!({"binding": {"namespace": "_", "name": "nothing"}}),
            ),
            400,
            "Binding references a package that does not exist.",
        ),
        (
            call(
                &server,
                "PUT",
                &format!("{PACKAGES}/utils?overwrite=true"),
                Some(&json!({"binding": {"namespace": "_", "name": "mine"}})),
            ),
            409,
            "Resource is a package and cannot be converted into a binding.",
        ),
        (
            put_package(&server, "default", json!({})),
            400,
            "Package name 'default' is reserved.",
        ),
        (
            create(&server, "nothing/echo", artifacts::ECHO, json!({})),
            404,
            "The requested resource does not exist.",
        ),
        (
            invoke(&server, "nothing/echo", "blocking=true", json!({})),
            404,
            "The requested resource does not exist.",
        ),
    ];
    for (answer, status, error) in refusals {
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (status, Some(error)),
            "{answer:?}"
        );
    }
    assert_eq!(
        names(&call(&server, "GET", PACKAGES, None)),
        ["guest/mine", "guest/utils"]
    );

    // A package goes once its actions are gone; a binding at once.
    let not_empty = call(&server, "DELETE", &format!("{PACKAGES}/utils"), None);
    assert_eq!(
        (not_empty.status, &not_empty.body["error"]),
        (409, &json!("Package not empty (contains 1 entity)"))
    );
    let unbound = call(&server, "DELETE", &format!("{PACKAGES}/mine"), None);
    assert_eq!(
        (unbound.status, &unbound.body["name"]),
        (200, &json!("mine"))
    );
    assert_eq!(
        call(&server, "DELETE", &format!("{ACTIONS}/utils/echo"), None).status,
        200
    );
    let deleted = call(&server, "DELETE", &format!("{PACKAGES}/utils"), None);
    assert_eq!(
        (deleted.status, &deleted.body["name"]),
        (200, &json!("utils"))
    );
    assert_eq!(
        call(&server, "GET", &format!("{PACKAGES}/utils"), None).status,
        404
    );
    assert_eq!(call(&server, "GET", PACKAGES, None).body, json!([]));
}

#[test]
fn final_parameters_may_not_be_set_by_an_invoke() {
    let (server, _data) = server();
    let body = json!({
        "parameters": [{"key": "fixed", "value": 1}, {"key": "open", "value": null}],
        "annotations": [{"key": "final", "value": true}]
    });
    create(&server, "echo", artifacts::ECHO, body);
    let refused = invoke(&server, "echo", "blocking=true", json!({"fixed": 2}));
    assert_eq!(
        (refused.status, refused.body["error"].as_str()),
        (
            400,
            Some("Request defines parameters that are not allowed (e.g., reserved properties).")
        )
    );
    // A parameter bound to null is not final.
    let answer = invoke(
        &server,
        "echo",
        "blocking=true&result=true",
        json!({"open": 3}),
    );
    assert_eq!(
        (answer.status, answer.body),
        (200, json!({"fixed": 1, "open": 3}))
    );
}

#[test]
fn packages_and_their_actions_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut first = crate::harness::Executor::standalone(data.path(), &[]);
    put_package(
        &first,
        "utils",
        json!({"parameters": [{"key": "a", "value": 1}]}),
    );
    create(
        &first,
        "utils/add",
        artifacts::ADD,
        json!({"parameters": [{"key": "param1", "value": 2}]}),
    );
    first.kill();
    let second = crate::harness::Executor::standalone(data.path(), &[]);
    let answer = invoke(
        &second,
        "utils/add",
        "blocking=true&result=true",
        json!({"param2": 3}),
    );
    assert_eq!((answer.status, answer.body), (200, json!({"result": 5})));
}
