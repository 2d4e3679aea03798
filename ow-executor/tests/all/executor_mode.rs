//! `executor` mode: many containers in one process (PROTOCOL.md §2).

use crate::harness::{Executor, init_body, zip};
use ow_executor::engines::EngineKind;
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;

fn containers_start_initialize_run_and_destroy_independently(engine: EngineKind) {
    let executor = Executor::executor_mode(engine, &[]);
    let port: u64 = executor
        .base_url
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let first = executor.post("/start", &json!({}));
    let second = executor.post("/start", &json!({}));
    assert_eq!(first.status, 200);
    assert_eq!(first.body["port"], port);
    let (a, b) = (
        first.body["containerId"].as_str().unwrap(),
        second.body["containerId"].as_str().unwrap(),
    );
    assert_ne!(a, b);

    let add = init_body(&zip(&artifacts::read(artifacts::ADD)));
    let echo = init_body(&zip(&artifacts::read(artifacts::ECHO)));
    assert_eq!(executor.post(&format!("/{a}/init"), &add).status, 200);
    let mut with_annotations = echo.clone();
    with_annotations["value"]["annotations"] = json!({"net_access": false});
    assert_eq!(
        executor
            .post(&format!("/{b}/init"), &with_annotations)
            .status,
        200
    );
    let again = executor.post(&format!("/{a}/init"), &echo);
    assert_eq!(
        (again.status, again.body),
        (
            403,
            json!({"error": "Cannot initialize the action more than once."})
        )
    );

    let run = |id: &str| {
        executor.post(
            &format!("/{id}/run"),
            &json!({"value": {"param1": 2, "param2": 3}}),
        )
    };
    assert_eq!(run(a).body, json!({"result": 5}));
    assert_eq!(run(b).body, json!({"param1": 2, "param2": 3}));

    assert_eq!(
        executor.post(&format!("/{a}/destroy"), &json!({})).status,
        200
    );
    assert_eq!(run(a).status, 404);
    assert_eq!(
        run(b).status,
        200,
        "destroying one container leaves the others"
    );
    assert_eq!(executor.post("/nope/init", &add).status, 404);
}

fn start(executor: &Executor) -> String {
    let started = executor.post("/start", &json!({}));
    assert_eq!(started.status, 200, "{started:?}");
    started.body["containerId"].as_str().unwrap().to_owned()
}

fn annotations_in_the_init_value_grant_capabilities_and_set_limits(engine: EngineKind) {
    let executor = Executor::executor_mode(engine, &[]);
    let networked = start(&executor);
    let mut body = init_body(&zip(&artifacts::read(artifacts::NET)));
    body["value"]["annotations"] = json!({"net_access": true});
    assert_eq!(
        executor.post(&format!("/{networked}/init"), &body).status,
        200
    );
    let answer = executor.post(
        &format!("/{networked}/run"),
        &json!({"value": {"url": "https://openwhisk.apache.org/"}}),
    );
    assert_eq!(
        (answer.status, &answer.body["url"]),
        (200, &json!("https://openwhisk.apache.org/"))
    );

    // The action's own time limit replaces the executor's 60 s when a run sends no deadline.
    let limited = start(&executor);
    let mut body = init_body(&zip(&artifacts::read(artifacts::SLEEP)));
    body["value"]["annotations"] = json!({"limits": {"timeout": 300}});
    assert_eq!(
        executor.post(&format!("/{limited}/init"), &body).status,
        200
    );
    let answer = executor.post(&format!("/{limited}/run"), &json!({"value": {"ms": 5000}}));
    assert_eq!(
        (answer.status, answer.body),
        (
            502,
            json!({"error": "The action exceeded its time limits of 300 milliseconds."})
        )
    );

    let refused = start(&executor);
    let mut body = init_body(&zip(&artifacts::read(artifacts::ADD)));
    body["value"]["annotations"] = json!({"limits": {"memory": 4096}});
    let answer = executor.post(&format!("/{refused}/init"), &body);
    assert_eq!(answer.status, 502);
    assert_eq!(
        answer.body["error"],
        "The action's limits cannot be applied: The memory limit must be an integer between 128 \
         and 512, not 4096."
    );
}

fn a_container_refuses_runs_before_init_and_unknown_ones_are_404(engine: EngineKind) {
    let executor = Executor::executor_mode(engine, &[]);
    let id = start(&executor);
    let answer = executor.post(&format!("/{id}/run"), &json!({"value": {}}));
    assert_eq!(
        (answer.status, answer.body),
        (403, json!({"error": "System not initialized."}))
    );
    assert_eq!(executor.post("/nope/destroy", &json!({})).status, 404);
    assert_eq!(
        executor.post("/nope/run", &json!({"value": {}})).status,
        404
    );
}

fn a_container_answers_a_result_over_1_mb_whole(engine: EngineKind) {
    let executor = Executor::executor_mode(engine, &[]);
    let id = start(&executor);
    let echo = init_body(&zip(&artifacts::read(artifacts::ECHO)));
    assert_eq!(executor.post(&format!("/{id}/init"), &echo).status, 200);
    let params = json!({"text": "x".repeat(1_500_000)});
    let answer = executor.post(&format!("/{id}/run"), &json!({ "value": params }));
    assert_eq!(answer.status, 200, "{:?}", answer.body.get("error"));
    assert_eq!(
        answer.content_length,
        Some(serde_json::to_vec(&params).unwrap().len())
    );
    assert_eq!(answer.body, params);
}

per_engine!(
    containers_start_initialize_run_and_destroy_independently,
    annotations_in_the_init_value_grant_capabilities_and_set_limits,
    a_container_refuses_runs_before_init_and_unknown_ones_are_404,
    a_container_answers_a_result_over_1_mb_whole,
);
