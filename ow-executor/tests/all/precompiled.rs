//! `ow-precompiler` output, run by `ow-executor runtime --trust-precompiled` on the engine it
//! was made for, and refused without the flag. An engine with no artifacts of its own (WAMR)
//! gets no artifact from the precompiler, and runs the portable zip.

use crate::harness::{Executor, init_body};
use clap::ValueEnum;
use ow_executor::engines::EngineKind;
use ow_precompiler::Target;
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;

/// The precompiler target of `engine`.
fn target_of(engine: EngineKind) -> Target {
    Target::from_str(engine.name(), false).expect("every engine is a precompiler target")
}

/// The zip the precompiler makes of `add` for `target`.
fn precompile(target: Target) -> anyhow::Result<Vec<u8>> {
    Ok(ow_precompiler::package(target, &artifacts::read(artifacts::ADD))?.0)
}

fn an_artifact_runs_on_its_engine_when_trusted(engine: EngineKind) {
    let packaged = precompile(target_of(engine));
    if engine.artifact().is_none() {
        let error = format!("{:#}", packaged.unwrap_err());
        assert!(error.contains("wamrc"), "{error}");
        return;
    }
    let executor = Executor::runtime(engine, &["--trust-precompiled"]);
    let answer = executor.post("/init", &init_body(&packaged.unwrap()));
    assert_eq!((answer.status, answer.body), (200, json!({"ok": true})));
    let answer = executor.run(json!({"param1": 20, "param2": 22}));
    assert_eq!((answer.status, answer.body), (200, json!({"result": 42})));
}

fn an_artifact_is_refused_without_trust(engine: EngineKind) {
    let Some(format) = engine.artifact() else {
        assert!(!target_of(engine).can_package());
        return;
    };
    let executor = Executor::runtime(engine, &[]);
    let code = precompile(target_of(engine)).unwrap();
    let answer = executor.post("/init", &init_body(&code));
    assert_eq!(
        (answer.status, answer.body),
        (
            502,
            json!({"error": format!(
                "The action code is {format}, and this executor runs precompiled code only \
                 when started with --trust-precompiled; send the portable .wasm instead."
            )})
        )
    );
}

fn a_portable_zip_from_the_precompiler_runs_anywhere(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.post("/init", &init_body(&precompile(Target::None).unwrap()));
    assert_eq!(answer.status, 200);
    assert_eq!(
        executor.run(json!({"param1": 1, "param2": 1})).body,
        json!({"result": 2})
    );
}

per_engine!(
    an_artifact_runs_on_its_engine_when_trusted,
    an_artifact_is_refused_without_trust,
    a_portable_zip_from_the_precompiler_runs_anywhere,
);
