//! Activation safety (issue 3): every hostile or broken action and every bad input ends in a
//! clear error for its own request, and the executor goes on serving the next one.

use crate::harness::{Answer, Executor, init_body, refused_start, zip};
use crate::metrics::{sample, scrape};
use ow_common::code::ModuleFormat;
use ow_common::protocol::sentences::LOG_SENTINEL;
use ow_executor::engines::EngineKind;
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The `error` sentence of an answer.
fn error_of(answer: &Answer) -> &str {
    answer.body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error sentence in {answer:?}"))
}

/// An HTTP client of its own, for requests made from other threads.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// POSTs `body` to `url` and answers the status and the JSON body.
fn post(agent: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .expect("the executor answers");
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .expect("a readable body");
    (status, serde_json::from_str(&text).expect("a JSON answer"))
}

// --- Hostile actions ------------------------------------------------------------------------

fn a_result_over_1_mb_is_answered_whole_as_the_official_runtimes_do(engine: EngineKind) {
    // The invoker, not the container, cuts results at the platform's 1 MB (standalone does).
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::ECHO);
    let params = json!({"text": "x".repeat(1_500_000)});
    let answer = executor.run(params.clone());
    assert_eq!(answer.status, 200, "{:?}", answer.body.get("error"));
    assert_eq!(
        answer.content_length,
        Some(serde_json::to_vec(&params).unwrap().len())
    );
    assert_eq!(answer.body, params);
}

fn a_memory_bomb_is_stopped_at_the_memory_limit_and_the_next_run_succeeds(engine: EngineKind) {
    let executor = Executor::runtime(engine, &["--memory-limit", "128"]);
    executor.init_ok(artifacts::wat::MEMORY_BOMB);
    let answer = executor.run(json!({"bomb": true}));
    assert_eq!(
        (answer.status, answer.body),
        (
            502,
            json!({"error": "The action exceeded its memory limit of 128 MB and was stopped."})
        )
    );
    let answer = executor.run(json!({}));
    assert_eq!((answer.status, answer.body), (200, json!({})));
}

fn a_stack_overflow_is_a_502_with_the_stack_in_the_logs_and_the_next_run_succeeds(
    engine: EngineKind,
) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::wat::STACK_OVERFLOW);
    let answer = executor.run(json!({"recurse": true}));
    assert_eq!(answer.status, 502);
    assert_eq!(
        error_of(&answer),
        "The action did not produce a valid response and exited unexpectedly."
    );
    let answer = executor.run(json!({}));
    assert_eq!((answer.status, answer.body), (200, json!({})));
    let (stdout, stderr) = executor.logs_after(2);
    assert_eq!(
        (
            stdout.matches(LOG_SENTINEL).count(),
            stderr.matches(LOG_SENTINEL).count()
        ),
        (2, 2)
    );
    // The trapped activation's last stderr line says why, in the same words on every engine.
    let trapped = stderr.split(&format!("{LOG_SENTINEL}\n")).next().unwrap();
    assert_eq!(
        trapped.lines().last(),
        Some("The action trapped: call stack exhausted"),
        "{stderr}"
    );
}

fn an_output_flood_is_cut_at_the_log_limit_with_the_truncation_sentence(engine: EngineKind) {
    let executor = Executor::runtime(engine, &["--log-limit", "1"]);
    executor.init_ok(artifacts::LOG);
    let answer = executor.run(json!({"lines": 200_000, "message": "flood"}));
    assert_eq!(
        (answer.status, answer.body),
        (200, json!({"lines": 200_000}))
    );
    let answer = executor.run(json!({"lines": 1, "message": "after"}));
    assert_eq!((answer.status, answer.body), (200, json!({"lines": 1})));

    let (stdout, stderr) = executor.logs_after(2);
    // 200,000 lines on each stream are about 8 MB; 1 MB of them (both streams together) is kept.
    assert!(
        stdout.len() + stderr.len() < 1024 * 1024 + 1024,
        "captured {} + {} bytes",
        stdout.len(),
        stderr.len()
    );
    let sentinel = format!("{LOG_SENTINEL}\n");
    let flood_stderr = stderr.split(&sentinel).next().unwrap();
    assert!(
        flood_stderr.ends_with(
            "\nLogs were truncated because the total bytes size exceeds the limit of 1048576 bytes.\n"
        ),
        "{}",
        &flood_stderr[flood_stderr.len().saturating_sub(200)..]
    );
    assert!(
        stdout.starts_with("stdout 0: flood\n"),
        "{}",
        &stdout[..100]
    );
    // The next activation's logs are whole, each closed by its sentinel.
    assert!(stdout.ends_with(&format!("{sentinel}stdout 0: after\n{sentinel}")));
    assert!(stderr.ends_with(&format!("{sentinel}stderr 0: after\n{sentinel}")));
}

/// The number of threads of process `pid`, from `/proc`.
fn threads_of(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

fn ten_thousand_sleeping_activations_all_answer_200(engine: EngineKind) {
    const ACTIVATIONS: usize = 10_000;
    const CLIENTS: usize = 50;
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::SLEEP);
    let url = format!("{}/run", executor.base_url);
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (url, answered) = (url.clone(), answered.clone());
            std::thread::spawn(move || {
                let agent = agent();
                for _ in 0..ACTIVATIONS / CLIENTS {
                    let answer = post(&agent, &url, &json!({"value": {"ms": 100}}));
                    assert_eq!(answer, (200, json!({"slept_ms": 100})));
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every activation answers 200");
    }
    assert_eq!(answered.load(Ordering::Relaxed), ACTIVATIONS);
}

/// The most threads the executor may gain over its idle count while any number of activations
/// sleep: an engine that suspends a sleeping activation gains none (the margin is for the
/// runtime's own housekeeping), one whose every sleeping activation holds a thread gains one
/// each. A constant, not a comparison with the client count: tokio's workers, as many as the
/// cores, are all started before the baseline is taken.
const THREADS_SLEEPS_MAY_ADD: usize = 16;

fn sleeping_activations_hold_no_thread_each(engine: EngineKind) {
    const ASLEEP: usize = 200;
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::SLEEP);
    // Whatever a first activation starts is started: the baseline is the idle executor's.
    let answer = executor.run(json!({"ms": 0}));
    assert_eq!((answer.status, answer.body), (200, json!({"slept_ms": 0})));
    let pid = executor.pid();
    let idle = threads_of(pid).expect("the OS tells the executor's threads in /proc");

    let url = format!("{}/run", executor.base_url);
    let clients: Vec<_> = (0..ASLEEP)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || post(&agent(), &url, &json!({"value": {"ms": 3000}})))
        })
        .collect();
    // Sample while they sleep: the most threads, and the most activations asleep at once.
    let (mut most_threads, mut most_asleep) = (idle, 0.0);
    while !clients.iter().all(|client| client.is_finished()) {
        most_threads = most_threads.max(threads_of(pid).unwrap_or(0));
        let scrape = crate::metrics::scrape(&executor);
        let asleep =
            crate::metrics::sample(&scrape, "ow_instances_in_use", &[("engine", engine.name())]);
        most_asleep = f64::max(most_asleep, asleep.unwrap_or(0.0));
        std::thread::sleep(Duration::from_millis(20));
    }
    let gained = most_threads.saturating_sub(idle);
    assert!(
        gained <= THREADS_SLEEPS_MAY_ADD,
        "sleeping activations held threads: the executor gained {gained} threads over its idle \
         {idle} with up to {most_asleep} activations asleep (sleeps may add at most \
         {THREADS_SLEEPS_MAY_ADD})"
    );
    for client in clients {
        assert_eq!(client.join().unwrap(), (200, json!({"slept_ms": 3000})));
    }
    assert_eq!(
        most_asleep, ASLEEP as f64,
        "all {ASLEEP} activations were asleep at once"
    );
}

// --- Capabilities ---------------------------------------------------------------------------

fn a_granted_dir_cannot_be_escaped_by_dot_dot_or_symlinks(engine: EngineKind) {
    const SECRET: &str = "TOP SECRET 4242";
    let root = tempfile::tempdir().unwrap();
    let secret = root.path().join("secret.txt");
    std::fs::write(&secret, SECRET).unwrap();
    let granted = root.path().join("granted");
    std::fs::create_dir(&granted).unwrap();
    std::fs::write(granted.join("inside.txt"), "inside").unwrap();
    std::os::unix::fs::symlink(&secret, granted.join("absolute-link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", granted.join("relative-link")).unwrap();
    std::os::unix::fs::symlink("..", granted.join("parent-link")).unwrap();

    let executor = Executor::runtime(engine, &[]);
    let mut body = init_body(&zip(&artifacts::read(artifacts::FILESYS)));
    body["value"]["annotations"] = json!({"dir": granted});
    assert_eq!(executor.post("/init", &body).status, 200);

    let host_path = secret.to_str().unwrap();
    for path in [
        "/data/../secret.txt",
        "/data/./../secret.txt",
        "../secret.txt",
        "/data/absolute-link",
        "/data/relative-link",
        "/data/parent-link/secret.txt",
        host_path,
    ] {
        let answer = executor.run(json!({"read": path}));
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        let error = error_of(&answer);
        assert!(
            error.starts_with(&format!("cannot read {path}: ")),
            "{path}: {error}"
        );
        assert!(
            !answer.body.to_string().contains(SECRET),
            "{path} escaped the granted dir: {answer:?}"
        );
    }
    let answer = executor.run(json!({"read": "/data/inside.txt"}));
    assert_eq!(
        (answer.status, answer.body),
        (
            200,
            json!({"read": "/data/inside.txt", "content": "inside"})
        )
    );
    let (stdout, stderr) = executor.logs_after(8);
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
}

// --- Bad input ------------------------------------------------------------------------------

/// In one `executor`-mode process: a container whose `/init` gets `code` (the answer is
/// returned), then a fresh container that initialises and runs `add` as if nothing happened.
fn init_then_a_healthy_container(engine: EngineKind, args: &[&str], code: &[u8]) -> Answer {
    let executor = Executor::executor_mode(engine, args);
    let start = || {
        let answer = executor.post("/start", &json!({}));
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["containerId"].as_str().unwrap().to_owned()
    };
    let bad = start();
    let refused = executor.post(&format!("/{bad}/init"), &init_body(code));
    let good = start();
    let add = init_body(&zip(&artifacts::read(artifacts::ADD)));
    assert_eq!(executor.post(&format!("/{good}/init"), &add).status, 200);
    let answer = executor.post(
        &format!("/{good}/run"),
        &json!({"value": {"param1": 1, "param2": 2}}),
    );
    assert_eq!((answer.status, answer.body), (200, json!({"result": 3})));
    refused
}

/// A module that exports `main`, one function of `additions` additions: 3 bytes of code each,
/// and hundreds of bytes each of the compiler's memory (a function of 300,000 took 280 MiB on
/// Wasmtime).
fn one_long_function(additions: usize) -> Vec<u8> {
    fn leb128(mut n: usize, into: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                into.push(byte);
                return;
            }
            into.push(byte | 0x80);
        }
    }
    fn section(id: u8, content: &[u8], into: &mut Vec<u8>) {
        into.push(id);
        leb128(content.len(), into);
        into.extend_from_slice(content);
    }
    // No locals; i32.const 0, then (i32.const 1, i32.add) again and again; end.
    let mut body = vec![0x00, 0x41, 0x00];
    for _ in 0..additions {
        body.extend_from_slice(&[0x41, 0x01, 0x6a]);
    }
    body.push(0x0b);
    let mut code = vec![0x01];
    leb128(body.len(), &mut code);
    code.extend_from_slice(&body);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[0x01, 0x60, 0x00, 0x01, 0x7f], &mut module); // type 0: () -> i32
    section(3, &[0x01, 0x00], &mut module); // function 0 has type 0
    section(7, b"\x01\x04main\x00\x00", &mut module); // export "main": function 0
    section(10, &code, &mut module);
    module
}

/// A module whose compile needs more memory than `--compile-memory` fails its own `/init` as
/// the module's fault, naming the limit; the compiler process is stopped and the next
/// container's init compiles, in the turn the refused compile gave back. WAMR loads modules in
/// the serving process, without the limit.
fn a_module_past_the_compile_memory_limit_fails_its_init_and_the_next_init_succeeds(
    engine: EngineKind,
) {
    let huge = one_long_function(400_000);
    // One compile at a time: the next init's compile needs the turn the refused one had.
    let args = ["--compile-memory", "128MiB", "--max-compiles", "1"];
    let refused = init_then_a_healthy_container(engine, &args, &huge);
    assert_refused_past_a_compile_limit(
        engine,
        &refused,
        "The action code needs more memory to compile than this executor's limit of 128 MiB.",
    );
}

/// A compile that outlasts `--compile-timeout` fails its `/init` as the module's fault, naming
/// the limit, and is counted as such for the operator. (No compiler process starts within a
/// millisecond.) WAMR loads modules in the serving process, without the limit.
fn a_compile_past_the_compile_timeout_fails_its_init(engine: EngineKind) {
    let executor = Executor::runtime(engine, &["--compile-timeout", "1ms"]);
    let answer = executor.post("/init", &init_body(&artifacts::read(artifacts::ADD)));
    assert_refused_past_a_compile_limit(
        engine,
        &answer,
        "The action code did not compile within this executor's limit of 1 milliseconds.",
    );
    let result = if engine.artifact().is_some() {
        "compile_limit"
    } else {
        "ok"
    };
    let prepares = &[("engine", engine.name()), ("result", result)];
    assert_eq!(
        sample(&scrape(&executor), "ow_prepares_total", prepares),
        Some(1.0)
    );
}

/// With `--max-compiles 1`, compiles of distinct modules sent at once wait for their turn
/// (the executor says so in its diagnostics) and every one of them compiles and runs. WAMR
/// loads modules in the serving process, without turns.
fn compiles_past_max_compiles_wait_their_turn_and_all_succeed(engine: EngineKind) {
    let executor = Arc::new(Executor::executor_mode_with_env(
        engine,
        &["--max-compiles", "1"],
        &[("OW_LOG", "info,ow_common=debug")],
    ));
    let add = artifacts::read(artifacts::ADD);
    // A custom section at the end makes each module distinct, so each is compiled.
    let distinct = (0..3u8).map(|n| {
        let mut module = add.clone();
        module.extend_from_slice(&[0x00, 0x03, 0x01, b'n', n]);
        init_body(&zip(&module))
    });
    executor.add_in_containers_at_once(distinct.collect());
    if engine.artifact().is_some() {
        executor.wait_for_diagnostic(
            "a compile waits for its turn (at most 1 compiler process at once)",
        );
    }
}

/// `answer` to an `/init` past a compile limit is a 502 that says `sentence`, on an engine that
/// compiles in a compiler process; WAMR loads modules in the serving process, without the
/// limits, so there the `/init` succeeds.
fn assert_refused_past_a_compile_limit(engine: EngineKind, answer: &Answer, sentence: &str) {
    if engine.artifact().is_none() {
        assert_eq!(answer.status, 200, "{answer:?}");
    } else {
        assert_eq!((answer.status, error_of(answer)), (502, sentence));
    }
}

/// A `--compile-memory` the executor cannot give its compiler processes (more than its own
/// hard data limit) stops it at start, rather than fail every compile.
#[test]
fn a_compile_memory_limit_the_executor_cannot_give_stops_the_start_with_a_sentence() {
    // dash's `ulimit -d` sets the soft and the hard limit, in KiB.
    let stderr = refused_start(std::process::Command::new("/bin/sh").args([
        "-c",
        "ulimit -d 1048576 && exec \"$0\" executor --listen 127.0.0.1:0 --compile-memory 2GiB",
        env!("CARGO_BIN_EXE_ow-executor"),
    ]));
    assert!(
        stderr.starts_with(
            "ow-executor: --compile-memory 2GiB is more than this executor can give a compiler \
             process: its own hard data limit (RLIMIT_DATA) is 1GiB; lower --compile-memory or \
             raise the limit"
        ),
        "{stderr}"
    );
}

fn artifacts_of_other_engines_are_refused_naming_them_and_the_precompiler(engine: EngineKind) {
    let cases: [(ModuleFormat, &[u8], &str); 3] = [
        (
            ModuleFormat::WasmtimeArtifact,
            b"\x7fELF\x02\x01\x01\0.wasmtime.engine\0",
            "action.cwasm",
        ),
        (
            ModuleFormat::WasmerArtifact,
            b"wasmer-universalWASMER\0\0\x18\0\0\0\x01\x02\x03",
            "action.wasmu",
        ),
        (
            ModuleFormat::WamrAot,
            b"\0aot\x03\0\0\0\x01\x02\x03\x04",
            "action.aot",
        ),
    ];
    for (format, bytes, entry) in cases {
        if Some(format) == engine.artifact() {
            continue;
        }
        let code = ow_common::code::zip_module(entry, bytes).unwrap();
        let answer = init_then_a_healthy_container(engine, &["--trust-precompiled"], &code);
        assert_eq!(answer.status, 502, "{answer:?}");
        let error = error_of(&answer);
        let name = engine.name();
        let expected = match engine.artifact() {
            Some(_) => format!(
                "The action code is {format} that this executor's {name} cannot load (it was \
                 made for another engine); rebuild it with `ow-precompiler --engine {name} \
                 action.wasm -o action.zip`, or send the portable .wasm."
            ),
            None => format!(
                "The action code is {format}, and this executor's {name} runs portable modules \
                 only; send the .wasm."
            ),
        };
        assert_eq!(error, expected);
    }
}

#[cfg(feature = "wasmtime")]
#[test]
fn a_wasmtime_artifact_of_another_version_is_refused_as_incompatible() {
    let engine = EngineKind::Wasmtime;
    let mut artifact = ow_wasmtime::precompile(&artifacts::read(artifacts::ADD)).unwrap();
    // The artifact's first section, `.wasmtime.engine`, right after the 64-byte ELF header,
    // opens with a format byte (0) and the length-prefixed Wasmtime version that made it
    // ("48"). Claim a version of the same length made of other digits.
    assert_eq!(artifact[64], 0, "the engine section follows the ELF header");
    let len = usize::from(artifact[65]);
    let version = &mut artifact[66..66 + len];
    assert!(
        !version.is_empty() && version.iter().all(u8::is_ascii_digit),
        "the engine section names a Wasmtime version: {version:?}"
    );
    for digit in version.iter_mut() {
        *digit = if *digit == b'9' { b'8' } else { b'9' };
    }
    let claimed = String::from_utf8(version.to_vec()).unwrap();
    let code = ow_common::code::zip_module("action.cwasm", &artifact).unwrap();
    let answer = init_then_a_healthy_container(engine, &["--trust-precompiled"], &code);
    assert_eq!(answer.status, 502, "{answer:?}");
    let error = error_of(&answer);
    assert!(
        error.starts_with(
            "The action code is a Wasmtime precompiled artifact that this executor's wasmtime \
             cannot load ("
        ) && error.contains(&format!("incompatible version '{claimed}'"))
            && error.contains("ow-precompiler --engine wasmtime"),
        "{error}"
    );
}

fn a_truncated_module_is_refused_as_invalid(engine: EngineKind) {
    let module = artifacts::read(artifacts::ADD);
    for code in [
        module[..module.len() / 2].to_vec(),
        zip(&module[..module.len() / 2]),
    ] {
        let answer = init_then_a_healthy_container(engine, &[], &code);
        assert_eq!(answer.status, 502, "{answer:?}");
        assert!(
            error_of(&answer).starts_with("The action code is not a valid WebAssembly module: "),
            "{answer:?}"
        );
    }
}

fn a_zip_bomb_is_refused_without_unpacking_it(engine: EngineKind) {
    const MIB: usize = 1024 * 1024;
    // 257 MiB of zeros, one past the largest module an entry may unpack to, deflate to
    // a few hundred KiB.
    let bomb = ow_common::code::zip_module("action.wasm", &vec![0; 257 * MIB]).unwrap();
    assert!(bomb.len() < MIB, "{} bytes", bomb.len());
    let answer = init_then_a_healthy_container(engine, &[], &bomb);
    assert_eq!(
        (answer.status, error_of(&answer)),
        (
            502,
            "The zip entry \"action.wasm\" unpacks to more than 268435456 bytes; refusing it as a zip bomb."
        )
    );
}

fn a_run_body_over_the_limit_is_a_413_and_the_next_run_succeeds(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::ADD);
    let answer = executor.run(json!({"padding": "x".repeat(3 * 1024 * 1024)}));
    assert_eq!(
        (answer.status, answer.body),
        (
            413,
            json!({"error": "The request body is larger than the 2097152 bytes allowed."})
        )
    );
    let answer = executor.run(json!({"param1": 20, "param2": 22}));
    assert_eq!((answer.status, answer.body), (200, json!({"result": 42})));
}

// --- Shutdown -------------------------------------------------------------------------------

fn sigterm_lets_the_activation_in_flight_finish_then_exits_0(engine: EngineKind) {
    let mut executor = Executor::runtime_with_env(engine, &[], &[("OW_LOG", "ow_executor=debug")]);
    executor.init_ok(artifacts::SLEEP);
    let url = format!("{}/run", executor.base_url);
    let in_flight =
        std::thread::spawn(move || post(&agent(), &url, &json!({"value": {"ms": 1000}})));
    executor.wait_for_diagnostic("activation started");
    executor.terminate();
    assert_eq!(in_flight.join().unwrap(), (200, json!({"slept_ms": 1000})));
    let status = executor.wait_for_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{status}");
    let (stdout, stderr) = executor.logs_after(1);
    assert_eq!(
        (stdout.as_str(), stderr.as_str()),
        (&*format!("{LOG_SENTINEL}\n"), &*format!("{LOG_SENTINEL}\n"))
    );
}

fn max_instances_bounds_activations_in_flight_and_the_rest_wait_until_their_deadline(
    engine: EngineKind,
) {
    let executor = Arc::new(Executor::runtime_with_env(
        engine,
        &["--max-instances", "1"],
        &[("OW_LOG", "info,ow_common=debug")],
    ));
    executor.init_ok(artifacts::SLEEP);
    let holder = {
        let executor = executor.clone();
        std::thread::spawn(move || executor.run(json!({"ms": 3000})))
    };
    // Wait until the holder has taken the one slot.
    executor.wait_for_diagnostic("instance slot taken");
    let deadline = crate::harness::epoch_millis_from_now(Duration::from_millis(500));
    let waiting = executor.post("/run", &json!({"value": {"ms": 0}, "deadline": deadline}));
    assert_eq!(waiting.status, 502, "{waiting:?}");
    assert!(
        error_of(&waiting).starts_with("The action exceeded its time limits of"),
        "{waiting:?}"
    );
    let held = holder.join().unwrap();
    assert_eq!((held.status, held.body), (200, json!({"slept_ms": 3000})));
    let answer = executor.run(json!({"ms": 0}));
    assert_eq!((answer.status, answer.body), (200, json!({"slept_ms": 0})));
}

per_engine!(
    a_result_over_1_mb_is_answered_whole_as_the_official_runtimes_do,
    a_memory_bomb_is_stopped_at_the_memory_limit_and_the_next_run_succeeds,
    a_stack_overflow_is_a_502_with_the_stack_in_the_logs_and_the_next_run_succeeds,
    an_output_flood_is_cut_at_the_log_limit_with_the_truncation_sentence,
    ten_thousand_sleeping_activations_all_answer_200,
    sleeping_activations_hold_no_thread_each,
    a_granted_dir_cannot_be_escaped_by_dot_dot_or_symlinks,
    artifacts_of_other_engines_are_refused_naming_them_and_the_precompiler,
    a_truncated_module_is_refused_as_invalid,
    a_module_past_the_compile_memory_limit_fails_its_init_and_the_next_init_succeeds,
    a_compile_past_the_compile_timeout_fails_its_init,
    compiles_past_max_compiles_wait_their_turn_and_all_succeed,
    a_zip_bomb_is_refused_without_unpacking_it,
    a_run_body_over_the_limit_is_a_413_and_the_next_run_succeeds,
    sigterm_lets_the_activation_in_flight_finish_then_exits_0,
    max_instances_bounds_activations_in_flight_and_the_rest_wait_until_their_deadline,
);
