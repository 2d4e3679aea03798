//! The compiled-module caches as an operator sees them, through `/metrics` and stderr: a
//! restart serves known actions without compiling, a damaged cache file is compiled again
//! rather than loaded, `--precache` turns first cold starts into cache hits and names the
//! files it skips, and the cache flags choose what is kept.

use crate::harness::{Executor, init_body, refused_start, zip};
use crate::metrics::{sample, scrape};
use crate::standalone::{annotation, create, invoke};
use ow_common::testing::disk_cache_entries;
use ow_executor::engines::EngineKind;
use ow_wasm_action_artifacts as artifacts;
use prometheus_parse::Scrape;
use serde_json::json;
use std::path::PathBuf;

/// The engine's count of `metric` with `labels` (besides its engine label).
fn count(scrape: &Scrape, engine: EngineKind, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("engine", engine.name())];
    all.extend_from_slice(labels);
    sample(scrape, metric, &all).unwrap_or_else(|| panic!("{metric} {all:?} is served"))
}

fn compiles(scrape: &Scrape, engine: EngineKind) -> f64 {
    count(scrape, engine, "ow_module_compiles_total", &[])
}

fn memory(scrape: &Scrape, engine: EngineKind, metric: &str) -> f64 {
    count(scrape, engine, metric, &[("tier", "memory")])
}

fn memory_hits(scrape: &Scrape, engine: EngineKind) -> f64 {
    let hit = [("tier", "memory"), ("result", "hit")];
    count(scrape, engine, "ow_module_cache_lookups_total", &hit)
}

/// A cold start in executor mode: a container is started, initialized with `module`, run,
/// and destroyed (so that nothing holds its module any more).
fn cold_start(executor: &Executor, module: &str) {
    let id = executor.post("/start", &json!({})).body["containerId"]
        .as_str()
        .expect("a container id")
        .to_owned();
    let init = executor.post(
        &format!("/{id}/init"),
        &init_body(&zip(&artifacts::read(module))),
    );
    assert_eq!(init.status, 200, "init of {module}: {:?}", init.body);
    let run = executor.post(&format!("/{id}/run"), &json!({"value": {}}));
    assert_eq!(run.status, 200, "run of {module}: {:?}", run.body);
    let destroyed = executor.post(&format!("/{id}/destroy"), &json!({}));
    assert_eq!(destroyed.status, 200);
}

/// The result of a blocking invoke of standalone's `add` action.
fn sum(server: &Executor, a: i64, b: i64) -> serde_json::Value {
    let params = json!({"param1": a, "param2": b});
    invoke(server, "add", "blocking=true&result=true", params).body
}

fn a_standalone_restart_invokes_a_known_action_without_compiling(engine: EngineKind) {
    let data = tempfile::tempdir().unwrap();
    let engine_flag = ["--engine", engine.name()];
    let mut first = Executor::standalone(data.path(), &engine_flag);
    assert_eq!(create(&first, "add", artifacts::ADD, json!({})).status, 200);
    assert_eq!(sum(&first, 1, 2), json!({"result": 3}));
    assert_eq!(
        compiles(&scrape(&first), engine),
        1.0,
        "create compiled add"
    );
    first.kill();

    let second = Executor::standalone(data.path(), &engine_flag);
    assert_eq!(sum(&second, 2, 2), json!({"result": 4}));
    let after = scrape(&second);
    assert_eq!(
        sample(&after, "ow_cold_starts_total", &[("mode", "standalone")]),
        Some(1.0),
        "the invoke was a cold start"
    );
    assert_eq!(
        compiles(&after, engine),
        0.0,
        "the restart compiled nothing"
    );
    let disk_hit = [("tier", "disk"), ("result", "hit")];
    assert_eq!(
        count(&after, engine, "ow_module_cache_lookups_total", &disk_hit),
        1.0
    );
    assert!(
        !disk_cache_entries(&data.path().join("module-cache")).is_empty(),
        "standalone keeps its module cache in its data directory"
    );
}

/// `--no-disk-cache`: standalone keeps compiled modules in memory only, so a restart compiles
/// again and nothing is written under its data directory.
#[test]
fn without_a_disk_cache_a_standalone_restart_compiles_again_and_writes_nothing() {
    // The engine standalone runs by default, the first built in (Wasmtime, whenever it is):
    // naming it rather than Wasmtime keeps this test compiling in single-engine builds.
    let engine = EngineKind::default();
    let flags = ["--no-disk-cache"];
    let data = tempfile::tempdir().unwrap();
    let mut first = Executor::standalone(data.path(), &flags);
    assert_eq!(create(&first, "add", artifacts::ADD, json!({})).status, 200);
    assert_eq!(sum(&first, 1, 2), json!({"result": 3}));
    first.kill();
    let second = Executor::standalone(data.path(), &flags);
    assert_eq!(sum(&second, 2, 2), json!({"result": 4}));
    assert_eq!(
        compiles(&scrape(&second), engine),
        1.0,
        "the restart compiled add again"
    );
    assert!(
        !data.path().join("module-cache").exists(),
        "standalone wrote a module cache although told not to"
    );
}

fn the_first_invoke_after_create_is_a_cold_start_that_finds_its_module_compiled(
    engine: EngineKind,
) {
    let data = tempfile::tempdir().unwrap();
    let server = Executor::standalone(data.path(), &["--engine", engine.name()]);
    assert_eq!(
        create(&server, "add", artifacts::ADD, json!({})).status,
        200
    );
    let created = scrape(&server);
    assert_eq!(compiles(&created, engine), 1.0, "create compiled add");
    assert_eq!(memory_hits(&created, engine), 0.0);

    let record = invoke(
        &server,
        "add",
        "blocking=true",
        json!({"param1": 1, "param2": 2}),
    )
    .body;
    assert_eq!(record["response"]["result"], json!({"result": 3}));
    assert!(
        annotation(&record, "initTime").is_some(),
        "the first invoke is the version's cold start: {record}"
    );
    let invoked = scrape(&server);
    assert_eq!(
        sample(&invoked, "ow_cold_starts_total", &[("mode", "standalone")]),
        Some(1.0)
    );
    assert_eq!(
        (compiles(&invoked, engine), memory_hits(&invoked, engine)),
        (1.0, 1.0),
        "the cold start found the module create compiled"
    );
}

fn a_corrupted_cache_file_is_compiled_again_not_loaded(engine: EngineKind) {
    let cache = tempfile::tempdir().unwrap();
    let cache_flag = ["--cache-dir", cache.path().to_str().unwrap()];
    Executor::runtime(engine, &cache_flag).init_ok(artifacts::ADD);
    let files = disk_cache_entries(cache.path());
    let [entry] = files.as_slice() else {
        panic!("one module cached on disk: {files:?}");
    };
    let mut corrupted = std::fs::read(entry).unwrap();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    std::fs::write(entry, &corrupted).unwrap();

    let restarted = Executor::runtime(engine, &cache_flag);
    restarted.init_ok(artifacts::ADD);
    let answer = restarted.run(json!({"param1": 20, "param2": 22}));
    assert_eq!((answer.status, answer.body), (200, json!({"result": 42})));
    let after = scrape(&restarted);
    let disk = [("tier", "disk")];
    assert_eq!(
        count(&after, engine, "ow_module_cache_rejected_total", &disk),
        1.0
    );
    assert_eq!(compiles(&after, engine), 1.0, "compiled again");
    let rewritten = std::fs::read(entry).expect("the entry is written anew");
    assert_ne!(rewritten, corrupted);
}

/// A directory to pre-cache: `add.wasm`, `team/echo.zip`, a broken module and a text file.
fn precache_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let team = dir.path().join("team");
    std::fs::create_dir(&team).unwrap();
    std::fs::write(dir.path().join("add.wasm"), artifacts::read(artifacts::ADD)).unwrap();
    std::fs::write(
        team.join("echo.zip"),
        zip(&artifacts::read(artifacts::ECHO)),
    )
    .unwrap();
    let broken = team.join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x01\0\0\0 is not a module").unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a module").unwrap();
    (dir, broken)
}

fn precached_modules_are_memory_hits_and_a_bad_file_is_named(engine: EngineKind) {
    let (dir, broken) = precache_dir();
    let dir_text = dir.path().to_str().unwrap();
    let executor = Executor::executor_mode(engine, &["--precache", dir_text]);
    let summary = format!("ow-executor: pre-cached 2 of 3 files under {dir_text}");
    let stderr = executor.stderr_once_it_holds(&summary);
    let refused = format!(
        "ow-executor: {} was not pre-cached: The action code is not a valid WebAssembly module",
        broken.display()
    );
    assert_eq!(
        stderr
            .lines()
            .filter(|line| line.starts_with(&refused))
            .count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("README.txt"), "{stderr}");
    let before = scrape(&executor);
    assert_eq!(memory(&before, engine, "ow_module_cache_entries"), 2.0);
    assert_eq!(memory_hits(&before, engine), 0.0);

    cold_start(&executor, artifacts::ADD);
    cold_start(&executor, artifacts::ECHO);
    let after = scrape(&executor);
    assert_eq!(
        memory_hits(&after, engine),
        2.0,
        "both first inits were hits"
    );
    assert_eq!(
        memory(&after, engine, "ow_module_cache_loads_total"),
        2.0,
        "nothing loaded after the start"
    );
}

#[test]
fn runtime_mode_precaches_in_silence() {
    let engine = EngineKind::default();
    let (dir, _broken) = precache_dir();
    let executor = Executor::runtime(engine, &["--precache", dir.path().to_str().unwrap()]);
    executor.init_ok(artifacts::ADD);
    let answer = executor.run(json!({"param1": 1, "param2": 1}));
    assert_eq!(answer.body, json!({"result": 2}));
    assert_eq!(memory_hits(&scrape(&executor), engine), 1.0);
    let (stdout, stderr) = executor.logs_after(1);
    assert!(
        !stderr.contains("pre-cache") && !stdout.contains("pre-cache"),
        "runtime mode prints only the action's logs; stderr: {stderr:?}"
    );
    assert!(
        executor.diagnostics().contains("broken.wasm"),
        "the skipped file is in the diagnostics"
    );
}

#[test]
fn a_precache_directory_that_cannot_be_read_stops_the_start_with_a_sentence() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("modules");
    let stderr = refused_start(
        std::process::Command::new(env!("CARGO_BIN_EXE_ow-executor"))
            .args(["executor", "--listen", "127.0.0.1:0", "--precache"])
            .arg(&missing),
    );
    assert!(
        stderr.starts_with(&format!(
            "ow-executor: --precache {} is not a directory the executor can read; give it a \
             directory of .wasm files and action zips",
            missing.display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_memory_cache_policy_flag_chooses_which_module_goes() {
    let engine = EngineKind::default();
    // add is used three times, then echo once, more recently; a third module needs room.
    for (policy, add_kept) in [("lru", false), ("lfu", true)] {
        let executor = Executor::executor_mode(
            engine,
            &[
                "--memory-cache-entries",
                "2",
                "--memory-cache-policy",
                policy,
            ],
        );
        for module in [
            artifacts::ADD,
            artifacts::ADD,
            artifacts::ADD,
            artifacts::ECHO,
            artifacts::ENV,
        ] {
            cold_start(&executor, module);
        }
        let full = scrape(&executor);
        assert_eq!(memory(&full, engine, "ow_module_cache_entries"), 2.0);
        assert_eq!(
            memory(&full, engine, "ow_module_cache_evictions_total"),
            1.0
        );
        let hits = memory_hits(&full, engine);
        cold_start(&executor, artifacts::ADD);
        assert_eq!(
            memory_hits(&scrape(&executor), engine) - hits,
            if add_kept { 1.0 } else { 0.0 },
            "{policy}: add was {}",
            if add_kept { "kept" } else { "let go" }
        );
    }
}

#[test]
fn precaching_more_than_the_memory_cache_keeps_says_so() {
    let engine = EngineKind::default();
    let (dir, _broken) = precache_dir();
    let executor = Executor::executor_mode(
        engine,
        &[
            "--precache",
            dir.path().to_str().unwrap(),
            "--memory-cache-entries",
            "1",
        ],
    );
    executor.stderr_once_it_holds(
        "ow-executor: the memory cache had no room for 1 of the pre-cached modules; raise \
         --memory-cache-entries or --memory-cache-bytes to keep them all",
    );
    let after = scrape(&executor);
    assert_eq!(memory(&after, engine, "ow_module_cache_entries"), 1.0);
    assert_eq!(
        memory(&after, engine, "ow_module_cache_evictions_total"),
        1.0
    );
}

/// Containers of the same new code initialised at once (as when an action gets its first burst
/// of traffic) share one compile: the first compiles, the others wait for its module, and
/// every one of them runs.
fn containers_of_the_same_new_code_initialised_at_once_compile_it_once(engine: EngineKind) {
    let executor = std::sync::Arc::new(Executor::executor_mode(engine, &[]));
    let body = init_body(&zip(&artifacts::read(artifacts::ADD)));
    executor.add_in_containers_at_once(vec![body; 4]);
    assert_eq!(compiles(&scrape(&executor), engine), 1.0);
}

per_engine!(
    containers_of_the_same_new_code_initialised_at_once_compile_it_once,
    a_standalone_restart_invokes_a_known_action_without_compiling,
    the_first_invoke_after_create_is_a_cold_start_that_finds_its_module_compiled,
    a_corrupted_cache_file_is_compiled_again_not_loaded,
    precached_modules_are_memory_hits_and_a_bad_file_is_named,
);
