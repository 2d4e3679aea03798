//! Every example action of `ow-wasm-action`, invoked through `ow-executor runtime`. The
//! `foreach_action!` check makes a new example without a test here fail to compile.

use crate::harness::{Executor, init_body, sentinels, zip};
use ow_executor::engines::EngineKind;
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};

macro_rules! assert_test_exists {
    ($name:ident) => {
        #[allow(unused_imports)]
        use self::$name as _;
    };
}
artifacts::foreach_action!(assert_test_exists);

/// Initialises a fresh runtime with `module` and runs it once with `params`.
fn invoke(engine: EngineKind, module: &str, params: Value) -> (u16, Value, Executor) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(module);
    let answer = executor.run(params);
    (answer.status, answer.body, executor)
}

fn add(engine: EngineKind) {
    let (status, body, _) = invoke(engine, artifacts::ADD, json!({"param1": 2, "param2": 2}));
    assert_eq!((status, body), (200, json!({"result": 4})));
    let (status, body, _) = invoke(engine, artifacts::ADD, json!({"param1": 2}));
    assert_eq!(
        (status, body),
        (200, json!({"error": "param2 must be an integer"}))
    );
}

fn echo(engine: EngineKind) {
    let params = json!({"a": [1, {"b": null}], "c": "d"});
    let (status, body, _) = invoke(engine, artifacts::ECHO, params.clone());
    assert_eq!((status, body), (200, params));
}

fn hash(engine: EngineKind) {
    let (status, body, _) = invoke(engine, artifacts::HASH, json!({"iterations": 10}));
    assert_eq!(status, 200);
    let mut buffer = [0u8; 4096];
    for _ in 0..10 {
        let digest = blake3::hash(&buffer);
        buffer[..32].copy_from_slice(digest.as_bytes());
    }
    assert_eq!(
        body,
        json!({"iterations": 10, "hash": blake3::hash(&buffer).to_hex().as_str()})
    );
}

fn prime(engine: EngineKind) {
    let (status, body, _) = invoke(engine, artifacts::PRIME, json!({"n": 1000}));
    assert_eq!((status, body), (200, json!({"n": 1000, "prime": 7919})));
    let (_, body, _) = invoke(engine, artifacts::PRIME, json!({"n": 0}));
    assert_eq!(body, json!({"error": "n must be a positive integer"}));
}

fn clock(engine: EngineKind) {
    let before = crate::harness::epoch_millis_from_now(std::time::Duration::ZERO);
    let (status, body, _) = invoke(engine, artifacts::CLOCK, json!({}));
    let after = crate::harness::epoch_millis_from_now(std::time::Duration::ZERO);
    assert_eq!(status, 200);
    let millis = body["epoch_millis"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&millis),
        "{before} <= {millis} <= {after}"
    );
}

fn random(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::RANDOM);
    let draws: std::collections::HashSet<u64> = (0..4)
        .map(|_| executor.run(json!({})).body["random"].as_u64().unwrap())
        .collect();
    assert_eq!(
        draws.len(),
        4,
        "each activation draws fresh randomness: {draws:?}"
    );
}

fn error(engine: EngineKind) {
    let (status, body, _) = invoke(engine, artifacts::ERROR, json!({}));
    assert_eq!(
        (status, body),
        (200, json!({"error": "this action always fails"}))
    );
}

fn log(engine: EngineKind) {
    let (status, body, executor) =
        invoke(engine, artifacts::LOG, json!({"lines": 3, "message": "hi"}));
    assert_eq!((status, body), (200, json!({"lines": 3})));
    let (stdout, stderr) = executor.logs_after(1);
    assert!(
        stdout.starts_with("stdout 0: hi\nstdout 1: hi\nstdout 2: hi\n"),
        "{stdout}"
    );
    assert!(
        stderr.starts_with("stderr 0: hi\nstderr 1: hi\nstderr 2: hi\n"),
        "{stderr}"
    );
}

fn sleep(engine: EngineKind) {
    let (status, body, _) = invoke(engine, artifacts::SLEEP, json!({"ms": 50}));
    assert_eq!((status, body), (200, json!({"slept_ms": 50})));
}

fn filesys(engine: EngineKind) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("existing.txt"), "x").unwrap();
    let executor = Executor::runtime(engine, &[]);
    let mut body = init_body(&zip(&artifacts::read(artifacts::FILESYS)));
    body["value"]["annotations"] = json!({"dir": dir.path()});
    assert_eq!(executor.post("/init", &body).status, 200);
    let answer = executor.run(json!({"file": "note.txt", "content": "written by wasm"}));
    assert_eq!(
        (answer.status, answer.body),
        (
            200,
            json!({"content": "written by wasm", "entries": ["existing.txt", "note.txt"]})
        )
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("note.txt")).unwrap(),
        "written by wasm"
    );

    // Without the annotation there is no filesystem at all.
    let (status, body, _) = invoke(engine, artifacts::FILESYS, json!({}));
    assert_eq!(status, 200);
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("cannot write /data/hello.txt"), "{error}");
}

fn stdio_add(engine: EngineKind) {
    let (status, body, executor) = invoke(
        engine,
        artifacts::STDIO_ADD,
        json!({"param1": 2, "param2": 3}),
    );
    assert_eq!((status, body), (200, json!({"result": 5})));
    let (stdout, stderr) = executor.logs_after(1);
    let sentinel = ow_common::protocol::sentences::LOG_SENTINEL;
    // The result line is the answer, not a log line.
    assert_eq!(stdout, format!("adding 2 and 3\n{sentinel}\n"));
    assert_eq!(stderr, format!("a line on stderr\n{sentinel}\n"));
    assert_eq!(sentinels(&stdout), 1);
}

fn env(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let mut body = init_body(&zip(&artifacts::read(artifacts::ENV)));
    body["value"]["env"] = json!({"GREETING": "hello"});
    assert_eq!(executor.post("/init", &body).status, 200);
    let answer = executor.post(
        "/run",
        &json!({"value": {}, "activation_id": "a1", "namespace": "guest"}),
    );
    // Exactly the init env and the run's context: nothing of the executor's environment.
    assert_eq!(
        (answer.status, answer.body),
        (
            200,
            json!({"GREETING": "hello", "__OW_ACTIVATION_ID": "a1", "__OW_NAMESPACE": "guest"})
        )
    );
}

fn net(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let mut body = init_body(&zip(&artifacts::read(artifacts::NET)));
    body["value"]["annotations"] = json!({"net_access": true});
    assert_eq!(executor.post("/init", &body).status, 200);
    let answer = executor.run(json!({"url": "https://openwhisk.apache.org/"}));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["url"], "https://openwhisk.apache.org/");
    let response: Value = serde_json::from_str(answer.body["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        response,
        json!({"url": "https://openwhisk.apache.org/", "simulated": true})
    );
    let answer = executor.run(json!({"url": "file:///etc/passwd"}));
    assert_eq!(
        (answer.status, answer.body),
        (
            200,
            json!({"error": "http.get takes an http:// or https:// URL, not \"file:///etc/passwd\"."})
        )
    );

    // Without the annotation the import is not there, and init says which one is missing.
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.init_module(&artifacts::read(artifacts::NET));
    assert_eq!(answer.status, 502);
    assert_eq!(
        answer.body["error"],
        "The action imports a function that this executor does not provide: http.get. Actions \
         may import WASI preview 1 (wasi_snapshot_preview1), and http.get when granted net_access."
    );
}

fn alloc(engine: EngineKind) {
    let executor = Executor::runtime(engine, &["--memory-limit", "128"]);
    executor.init_ok(artifacts::ALLOC);
    let answer = executor.run(json!({"mb": 16}));
    assert_eq!(
        (answer.status, answer.body),
        (200, json!({"allocated_mb": 16, "pages_touched": 4096}))
    );
    // More than the memory limit: the allocation fails and the action aborts.
    let answer = executor.run(json!({"mb": 200}));
    assert_eq!(
        (answer.status, answer.body),
        (
            502,
            json!({"error": "The action exceeded its memory limit of 128 MB and was stopped."})
        )
    );
    let (_, stderr) = executor.logs_after(2);
    assert!(
        stderr.contains("memory allocation of 209715200 bytes failed"),
        "{stderr}"
    );
    let answer = executor.run(json!({"mb": 1}));
    assert_eq!(answer.status, 200);
}

per_engine!(
    add, echo, hash, prime, clock, random, error, log, sleep, filesys, stdio_add, env, net, alloc,
);
