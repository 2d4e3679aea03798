//! The export-call ABI in every mode: `main` names an exported function of numbers, the
//! parameters' `args` are its arguments, `{"result": …}` its answer; arguments that do not fit
//! are the activation's error, and a `main` naming no callable export fails init.

use crate::harness::{Executor, init_body, zip};
use crate::standalone::{ACTIONS, call, code, invoke};
use ow_common::protocol::sentences::LOG_SENTINEL;
use ow_executor::engines::EngineKind;
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};

/// What a run with three arguments for `add` answers.
const ADD_ARITY: &str = "The export add takes 2 arguments (i32, i32); the parameters' args has 3.";

/// What init answers for a `main` of `sub` on `export_call.wat`.
const NO_SUB: &str = "The module exports neither __ow_main (an ow-wasm-action SDK action), nor \
                      _start (a WASI command reading its parameters from stdin), nor a function \
                      named sub (the action's main, called with the parameters' args); it \
                      exports the functions add, add64, scale, half, divmod, nothing, main. \
                      Build it with pass_json! or as a WASI program, or name the function to \
                      call with main.";

/// An init body for the module at `path`, zipped, with this `main`.
fn init_with_main(path: &str, main: &str) -> Value {
    let mut body = init_body(&zip(&artifacts::read(path)));
    body["value"]["main"] = json!(main);
    body
}

fn runtime_mode_calls_the_export_main_names_with_the_runs_args(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let init = executor.post("/init", &init_with_main(artifacts::wat::EXPORT_CALL, "add"));
    assert_eq!((init.status, init.body), (200, json!({"ok": true})));
    let answer = executor.run(json!({"args": [123_456, 678_910]}));
    assert_eq!(
        (answer.status, answer.body),
        (200, json!({"result": 802_366}))
    );
    let answer = executor.run(json!({"args": [1, 2, 3]}));
    assert_eq!(
        (answer.status, answer.body),
        (200, json!({"error": ADD_ARITY}))
    );
    // The function prints nothing: each activation's logs are the sentinels alone.
    let (stdout, stderr) = executor.logs_after(2);
    let two_sentinels = format!("{LOG_SENTINEL}\n{LOG_SENTINEL}\n");
    assert_eq!((stdout, stderr), (two_sentinels.clone(), two_sentinels));

    // OpenWhisk's default main, "main", names the module's `main`.
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::wat::EXPORT_CALL);
    let answer = executor.run(json!({}));
    assert_eq!((answer.status, answer.body), (200, json!({"result": 42})));
}

fn runtime_mode_refuses_a_main_naming_no_callable_export_at_init(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let init = executor.post("/init", &init_with_main(artifacts::wat::EXPORT_CALL, "sub"));
    assert_eq!((init.status, init.body), (502, json!({"error": NO_SUB})));

    let executor = Executor::runtime(engine, &[]);
    let init = executor.post(
        "/init",
        &init_with_main(artifacts::wat::UNCALLABLE_EXPORT, "takes_ref"),
    );
    assert_eq!(
        (init.status, init.body),
        (
            502,
            json!({"error": "The action's main names the export takes_ref, of type (funcref) -> \
                             (i32); the export-call ABI calls only functions whose parameters \
                             and results are numbers (i32, i64, f32, f64)."})
        )
    );
}

fn executor_mode_containers_call_their_own_exports(engine: EngineKind) {
    let executor = Executor::executor_mode(engine, &[]);
    let start = || {
        let started = executor.post("/start", &json!({}));
        assert_eq!(started.status, 200, "{started:?}");
        started.body["containerId"].as_str().unwrap().to_owned()
    };
    let (divmod, reactor) = (start(), start());
    let inits = [
        (
            &divmod,
            init_with_main(artifacts::wat::EXPORT_CALL, "divmod"),
        ),
        (
            &reactor,
            init_with_main(artifacts::wat::EXPORT_CALL_WASI, "add"),
        ),
    ];
    for (id, body) in inits {
        let init = executor.post(&format!("/{id}/init"), &body);
        assert_eq!((init.status, init.body), (200, json!({"ok": true})));
    }
    let run = |id: &str, args: Value| {
        let answer = executor.post(&format!("/{id}/run"), &json!({"value": {"args": args}}));
        (answer.status, answer.body)
    };
    assert_eq!(
        run(&divmod, json!([7, 2])),
        (200, json!({"result": [3, 1]}))
    );
    // A module importing WASI works too; its _initialize ran once, first.
    assert_eq!(run(&reactor, json!([1, 2])), (200, json!({"result": 1003})));
    assert_eq!(
        run(&divmod, json!([7, "2"])),
        (
            200,
            json!({"error": "The export divmod takes an i32 as argument 2; the parameters' \
                             args[1] is a string, not a number."})
        )
    );
}

fn standalone_mode_invokes_an_action_whose_main_is_an_export(engine: EngineKind) {
    let data = tempfile::tempdir().unwrap();
    let server = Executor::standalone(data.path(), &[]);
    let put = |name: &str, path: &str, main: &str| {
        let body = json!({
            "exec": {"kind": "wasm:0.1", "code": code(path), "main": main},
            "annotations": [{"key": "engine", "value": engine.name()}],
        });
        call(&server, "PUT", &format!("{ACTIONS}/{name}"), Some(&body))
    };
    let created = put("add", artifacts::wat::EXPORT_CALL, "add");
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(created.body["exec"]["main"], "add");
    let answer = invoke(
        &server,
        "add",
        "blocking=true&result=true",
        json!({"args": [123_456, 678_910]}),
    );
    assert_eq!(
        (answer.status, answer.body),
        (200, json!({"result": 802_366}))
    );
    let answer = invoke(&server, "add", "blocking=true", json!({"args": [1, 2, 3]}));
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(answer.body["response"]["status"], "application error");
    assert_eq!(
        answer.body["response"]["result"],
        json!({"error": ADD_ARITY})
    );

    let refused = put("sub", artifacts::wat::EXPORT_CALL, "sub");
    assert_eq!(
        (refused.status, &refused.body["error"]),
        (400, &json!(format!("The action code cannot run: {NO_SUB}")))
    );
}

per_engine!(
    runtime_mode_calls_the_export_main_names_with_the_runs_args,
    runtime_mode_refuses_a_main_naming_no_callable_export_at_init,
    executor_mode_containers_call_their_own_exports,
    standalone_mode_invokes_an_action_whose_main_is_an_export,
);
