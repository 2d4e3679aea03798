//! `ow-precompiler` output, run by `ow-executor runtime --trust-precompiled`, and refused
//! without the flag.

use crate::harness::{Executor, init_body};
use ow_precompiler::Target;
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;

fn precompile(target: Target) -> Vec<u8> {
    ow_precompiler::package(target, &artifacts::read(artifacts::ADD))
        .unwrap()
        .0
}

#[test]
fn a_wasmtime_artifact_runs_when_trusted() {
    let executor = Executor::runtime(&["--trust-precompiled"]);
    let answer = executor.post("/init", &init_body(&precompile(Target::Wasmtime)));
    assert_eq!((answer.status, answer.body), (200, json!({"ok": true})));
    let answer = executor.run(json!({"param1": 20, "param2": 22}));
    assert_eq!((answer.status, answer.body), (200, json!({"result": 42})));
}

#[test]
fn a_wasmtime_artifact_is_refused_without_trust() {
    let executor = Executor::runtime(&[]);
    let answer = executor.post("/init", &init_body(&precompile(Target::Wasmtime)));
    assert_eq!(answer.status, 502);
    let error = answer.body["error"].as_str().unwrap();
    assert!(
        error.contains("Wasmtime precompiled artifact") && error.contains("--trust-precompiled"),
        "{error}"
    );
}

#[test]
fn a_portable_zip_from_the_precompiler_runs_anywhere() {
    let executor = Executor::runtime(&[]);
    let answer = executor.post("/init", &init_body(&precompile(Target::None)));
    assert_eq!(answer.status, 200);
    assert_eq!(
        executor.run(json!({"param1": 1, "param2": 1})).body,
        json!({"result": 2})
    );
}
