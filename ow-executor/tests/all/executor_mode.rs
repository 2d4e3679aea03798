//! `executor` mode: many containers in one process (PROTOCOL.md §2).

use crate::harness::{Executor, init_body, zip};
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;

#[test]
fn containers_start_initialize_run_and_destroy_independently() {
    let executor = Executor::executor_mode(&[]);
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
