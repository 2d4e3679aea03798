//! Triggers and rules: firing invokes the action of every active rule with the trigger's
//! parameters under the fire's, the trigger's activation records what each rule caused,
//! rules are enabled and disabled, and create, update and delete answer as OpenWhisk does.

use super::{
    ACTIONS, ACTIVATIONS, PACKAGES, RULES, TRIGGERS, activation, call, create, put, server,
    wait_for_activation,
};
use crate::harness::{Executor, HttpAnswer};
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};

/// Fires a trigger; the answer may be a 204 without a body.
fn fire(server: &Executor, trigger: &str, params: Value) -> HttpAnswer {
    server.http(
        "POST",
        &format!("{TRIGGERS}/{trigger}"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &super::basic_auth()),
        ],
        params.to_string().as_bytes(),
    )
}

/// Enables or disables a rule; OpenWhisk answers a plain `OK`.
fn set_status(server: &Executor, rule: &str, status: &str) {
    let body = json!({"status": status}).to_string();
    let answer = server.http(
        "POST",
        &format!("{RULES}/{rule}"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &super::basic_auth()),
        ],
        body.as_bytes(),
    );
    assert_eq!(
        (answer.status, answer.text()),
        (200, "OK".to_owned()),
        "{answer:?}"
    );
}

/// The trigger activation `id`, and what each rule caused, by rule.
fn trigger_activation(server: &Executor, id: &str) -> (Value, Vec<Value>) {
    let record = activation(server, id);
    let caused = record["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| serde_json::from_str(line.as_str().unwrap()).unwrap())
        .collect();
    (record, caused)
}

fn fired(server: &Executor, trigger: &str, params: Value) -> (Value, Vec<Value>) {
    let answer = fire(server, trigger, params);
    assert_eq!(answer.status, 202, "{answer:?}");
    let id = answer.json()["activationId"].as_str().unwrap().to_owned();
    assert_eq!(
        answer.header("x-openwhisk-activation-id"),
        Some(id.as_str())
    );
    trigger_activation(server, &id)
}

#[test]
fn a_fired_trigger_invokes_the_action_of_every_active_rule() {
    let (server, _data) = server();
    create(&server, "echo", artifacts::ECHO, json!({}));
    put(
        &server,
        PACKAGES,
        "utils",
        json!({"parameters": [{"key": "pkg", "value": true}]}),
    );
    create(&server, "utils/echo", artifacts::ECHO, json!({}));
    let parameters = json!([{"key": "from", "value": "trigger"}, {"key": "x", "value": 1}]);
    let trigger = put(&server, TRIGGERS, "t", json!({"parameters": parameters}));
    assert_eq!(trigger.status, 200, "{trigger:?}");
    assert_eq!(
        (
            &trigger.body["name"],
            &trigger.body["version"],
            &trigger.body["limits"]
        ),
        (&json!("t"), &json!("0.0.1"), &json!({}))
    );
    let again = put(&server, TRIGGERS, "t", json!({}));
    assert_eq!(
        (again.status, &again.body["error"]),
        (409, &json!("resource already exists"))
    );

    // Without an active rule, a fire does nothing and records nothing.
    let idle = fire(&server, "t", json!({}));
    assert_eq!((idle.status, idle.body.len()), (204, 0), "{idle:?}");
    assert_eq!(call(&server, "GET", ACTIVATIONS, None).body, json!([]));

    let rule = put(
        &server,
        RULES,
        "r",
        json!({"trigger": "/_/t", "action": "/_/echo"}),
    );
    assert_eq!(rule.status, 200, "{rule:?}");
    assert_eq!(rule.body["status"], "active");
    assert_eq!(rule.body["trigger"], json!({"path": "guest", "name": "t"}));
    assert_eq!(
        rule.body["action"],
        json!({"path": "guest", "name": "echo"})
    );
    let packaged = put(
        &server,
        RULES,
        "r2",
        json!({"trigger": {"path": "_", "name": "t"}, "action": "/guest/utils/echo"}),
    );
    assert_eq!(
        packaged.body["action"],
        json!({"path": "guest/utils", "name": "echo"})
    );
    let linked = call(&server, "GET", &format!("{TRIGGERS}/t"), None).body;
    assert_eq!(
        linked["rules"]["guest/r"],
        json!({"action": {"path": "guest", "name": "echo"}, "status": "active"})
    );

    // The fire's parameters over the trigger's; one activation per rule.
    let (record, caused) = fired(&server, "t", json!({"x": 2}));
    assert_eq!((&record["name"], &record["end"]), (&json!("t"), &json!(0)));
    assert_eq!(record["response"]["result"], json!({"x": 2}));
    assert_eq!(caused.len(), 2, "{record}");
    assert_eq!(
        (
            &caused[0]["rule"],
            &caused[0]["action"],
            &caused[0]["statusCode"],
            &caused[0]["success"]
        ),
        (
            &json!("guest/r"),
            &json!("guest/echo"),
            &json!(0),
            &json!(true)
        )
    );
    assert_eq!(caused[1]["action"], "guest/utils/echo");
    let echoed = wait_for_activation(&server, caused[0]["activationId"].as_str().unwrap());
    assert_eq!(
        echoed["response"]["result"],
        json!({"from": "trigger", "x": 2})
    );
    let packaged = wait_for_activation(&server, caused[1]["activationId"].as_str().unwrap());
    assert_eq!(
        packaged["response"]["result"],
        json!({"from": "trigger", "x": 2, "pkg": true})
    );
    // Listed as OpenWhisk lists a trigger's activation: no end, no status.
    let listed = call(&server, "GET", &format!("{ACTIVATIONS}?name=t"), None).body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        listed[0].get("end").is_none() && listed[0].get("statusCode").is_none(),
        "{listed}"
    );

    // A disabled rule is logged, not run; with none active, nothing happens.
    set_status(&server, "r2", "inactive");
    let status = call(&server, "GET", &format!("{RULES}/r2"), None).body["status"].clone();
    assert_eq!(status, "inactive");
    let (_, caused) = fired(&server, "t", json!({}));
    assert_eq!(
        caused[1],
        json!({"statusCode": 1, "success": false, "rule": "guest/r2", "action": "guest/utils/echo",
               "error": "Rule 'guest/r2' is inactive, action 'guest/utils/echo' was not activated."})
    );
    set_status(&server, "r", "inactive");
    set_status(&server, "r", "inactive");
    assert_eq!(fire(&server, "t", json!({})).status, 204);
    set_status(&server, "r", "active");

    // An action gone since is logged with the sentence its invoke would answer.
    call(&server, "DELETE", &format!("{ACTIONS}/echo"), None);
    let (_, caused) = fired(&server, "t", json!({}));
    assert_eq!(caused[0]["error"], "The requested resource does not exist.");
    assert_eq!(caused[0]["statusCode"], 1);
}

#[test]
fn rules_and_triggers_are_created_listed_and_deleted_as_openwhisk_does() {
    let (server, _data) = server();
    create(&server, "echo", artifacts::ECHO, json!({}));
    put(&server, TRIGGERS, "t", json!({}));
    put(&server, TRIGGERS, "u", json!({}));
    for (body, error) in [
        (
            json!({"trigger": "/_/nope", "action": "/_/echo"}),
            "trigger /guest/nope does not exist",
        ),
        (
            json!({"trigger": "/_/t", "action": "/_/nope"}),
            "action /guest/nope does not exist",
        ),
        (
            json!({"trigger": "/_/t"}),
            "rule requires a valid trigger and a valid action",
        ),
    ] {
        let answer = put(&server, RULES, "r", body.clone());
        assert_eq!(
            (answer.status, answer.body["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
    }
    assert_eq!(call(&server, "GET", RULES, None).body, json!([]));
    put(
        &server,
        RULES,
        "r",
        json!({"trigger": "/_/t", "action": "/_/echo"}),
    );
    let bad = call(
        &server,
        "POST",
        &format!("{RULES}/r"),
        Some(&json!({"status": "on"})),
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["error"]
            .as_str()
            .unwrap()
            .contains("'on' is not a recognized rule state"),
        "{bad:?}"
    );

    // Moved to another trigger, a rule keeps its status and leaves the first.
    set_status(&server, "r", "inactive");
    let moved = call(
        &server,
        "PUT",
        &format!("{RULES}/r?overwrite=true"),
        Some(&json!({"trigger": "/_/u"})),
    );
    assert_eq!(moved.status, 200, "{moved:?}");
    assert_eq!(
        (&moved.body["version"], &moved.body["status"]),
        (&json!("0.0.2"), &json!("inactive"))
    );
    assert!(
        call(&server, "GET", &format!("{TRIGGERS}/t"), None)
            .body
            .get("rules")
            .is_none()
    );
    let on_u = call(&server, "GET", &format!("{TRIGGERS}/u"), None).body;
    assert_eq!(on_u["rules"]["guest/r"]["status"], "inactive");

    let listed = call(&server, "GET", RULES, None).body;
    assert_eq!(listed[0]["name"], "r");
    assert!(listed[0].get("status").is_none(), "{listed}");
    let triggers = call(&server, "GET", TRIGGERS, None).body;
    let names: Vec<&str> = triggers
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["t", "u"]);
    assert_eq!(
        call(&server, "GET", &format!("{RULES}?count=true"), None).body,
        json!({"rules": 1})
    );

    // A trigger deleted leaves its rules, which then cannot be enabled.
    let deleted = call(&server, "DELETE", &format!("{TRIGGERS}/u"), None);
    assert_eq!((deleted.status, &deleted.body["name"]), (200, &json!("u")));
    let orphan = call(&server, "GET", &format!("{RULES}/r"), None).body;
    assert_eq!(orphan["status"], "inactive");
    let enable = call(
        &server,
        "POST",
        &format!("{RULES}/r"),
        Some(&json!({"status": "active"})),
    );
    assert_eq!(
        (enable.status, enable.body["error"].as_str()),
        (
            404,
            Some("Only rules with existing triggers can be activated")
        )
    );
    let gone = call(&server, "DELETE", &format!("{RULES}/r"), None);
    assert_eq!(
        (gone.status, &gone.body["status"]),
        (200, &json!("inactive"))
    );
    for path in [
        format!("{RULES}/r"),
        format!("{TRIGGERS}/u"),
        format!("{TRIGGERS}/nope"),
    ] {
        assert_eq!(call(&server, "GET", &path, None).status, 404, "{path}");
    }
    assert_eq!(fire(&server, "nope", json!({})).status, 404);
}

#[test]
fn triggers_and_rules_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut first = Executor::standalone(data.path(), &[]);
    create(&first, "echo", artifacts::ECHO, json!({}));
    put(
        &first,
        TRIGGERS,
        "t",
        json!({"parameters": [{"key": "k", "value": "v"}]}),
    );
    put(
        &first,
        RULES,
        "on",
        json!({"trigger": "/_/t", "action": "/_/echo"}),
    );
    put(
        &first,
        RULES,
        "off",
        json!({"trigger": "/_/t", "action": "/_/echo"}),
    );
    set_status(&first, "off", "inactive");
    first.kill();
    let second = Executor::standalone(data.path(), &[]);
    let (_, caused) = fired(&second, "t", json!({}));
    let by_rule: Vec<(&str, bool)> = caused
        .iter()
        .map(|c| (c["rule"].as_str().unwrap(), c["success"].as_bool().unwrap()))
        .collect();
    assert_eq!(by_rule, [("guest/off", false), ("guest/on", true)]);
    let echoed = wait_for_activation(&second, caused[1]["activationId"].as_str().unwrap());
    assert_eq!(echoed["response"]["result"], json!({"k": "v"}));
}
