//! `ow-precompiler` output, run by `ow-executor runtime --trust-precompiled` on the engine it
//! was made for, and refused without the flag. An engine with no artifacts of its own (WAMR)
//! gets no artifact from the precompiler, and runs the portable zip. The compiler process
//! (`ow-executor compile ENGINE`, which a serving executor starts for each compile) writes
//! artifacts the same executor runs. The precompiler packs artifacts as LZ4 frames; any engine
//! unpacks such an entry, and refuses one that cannot be unpacked, saying why.

use crate::harness::{Executor, init_body, zip};
use clap::ValueEnum;
use ow_common::host::compiler_process::PARENT_PID_ENV;
use ow_executor::engines::EngineKind;
use ow_precompiler::Target;
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;

/// The precompiler target of `engine`, when the precompiler was built with it.
fn target_of(engine: EngineKind) -> Option<Target> {
    Target::from_str(engine.name(), false).ok()
}

/// Whether the precompiler makes artifacts for `engine`: never for an engine without them.
fn precompiles_for(engine: EngineKind) -> bool {
    target_of(engine).is_some_and(Target::can_package)
}

/// The zip the precompiler makes of `add` for `target`.
fn precompile(target: Target) -> anyhow::Result<Vec<u8>> {
    Ok(ow_precompiler::package(target, &artifacts::read(artifacts::ADD))?.0)
}

fn an_artifact_runs_on_its_engine_when_trusted(engine: EngineKind) {
    if engine.artifact().is_none() {
        assert!(
            !precompiles_for(engine),
            "{} has no artifacts",
            engine.name()
        );
        return;
    }
    let target = target_of(engine)
        .expect("the precompiler is built with this engine too (cargo test --all-features)");
    let executor = Executor::runtime(engine, &["--trust-precompiled"]);
    let answer = executor.post("/init", &init_body(&precompile(target).unwrap()));
    assert_eq!((answer.status, answer.body), (200, json!({"ok": true})));
    let answer = executor.run(json!({"param1": 20, "param2": 22}));
    assert_eq!((answer.status, answer.body), (200, json!({"result": 42})));
}

fn an_artifact_is_refused_without_trust(engine: EngineKind) {
    let Some(format) = engine.artifact() else {
        assert!(
            !precompiles_for(engine),
            "{} has no artifacts",
            engine.name()
        );
        return;
    };
    let executor = Executor::runtime(engine, &[]);
    let target = target_of(engine)
        .expect("the precompiler is built with this engine too (cargo test --all-features)");
    let code = precompile(target).unwrap();
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

/// Runs `ow-executor compile ENGINE` with `module` on its stdin.
fn compiler_process(engine: EngineKind, module: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_ow-executor"))
        .args(["compile", engine.name()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the compiler process starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(module).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A compiler process dies with the process that started it: one whose executor is gone is
/// killed, not left compiling with no one to answer and no one to stop it at its deadline.
/// One that finds its executor gone already refuses to compile.
#[test]
fn a_compiler_process_dies_with_the_process_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let sleeper = dir.path().join("sleeper");
    // The shell starts a compiler, naming itself as its executor, whose stdin a `sleep` keeps
    // open; waits until the compiler blocks reading it (past its start: `wchan` says
    // `pipe_read`, or after 10 s where the kernel does not say); and exits. A compiler still
    // alive when the `sleep` ends would read an empty module and refuse it on stderr, which
    // only the compiler holds.
    let script = format!(
        "{{ sh -c 'echo $$ > \"$1\"; exec sleep 30' sh '{}'; }} 2>/dev/null \
            | {PARENT}=$$ \"$0\" compile \"$1\" >/dev/null & compiler=$!
        tries=0
        until grep -qs pipe_read /proc/$compiler/wchan || [ $tries -ge 1000 ]; do
            tries=$((tries + 1)); sleep 0.01
        done",
        sleeper.display(),
        PARENT = PARENT_PID_ENV,
    );
    let output = std::process::Command::new("/bin/sh")
        .args(["-c", &script, env!("CARGO_BIN_EXE_ow-executor")])
        .arg(EngineKind::default().name())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the shell runs");
    if let Ok(pid) = std::fs::read_to_string(&sleeper) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "",
        "the compiler outlived the process that started it"
    );
    // Started for an executor that is not its parent (one that died and left it to another).
    let mut orphan = std::process::Command::new(env!("CARGO_BIN_EXE_ow-executor"));
    orphan
        .args(["compile", EngineKind::default().name()])
        .env(PARENT_PID_ENV, "1");
    let refused = orphan.output().expect("the compiler runs");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim_end(),
        "the executor that started this compiler is gone"
    );
}

fn the_compiler_process_writes_an_artifact_its_engine_runs(engine: EngineKind) {
    let compiled = compiler_process(engine, &artifacts::read(artifacts::ADD));
    let stderr = String::from_utf8_lossy(&compiled.stderr);
    let Some(format) = engine.artifact() else {
        assert_eq!(compiled.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("wamrc"), "{stderr}");
        assert!(compiled.stdout.is_empty());
        return;
    };
    assert!(compiled.status.success(), "{stderr}");
    assert_eq!(
        ow_common::code::ModuleFormat::sniff(&compiled.stdout),
        format,
        "{} wrote its own artifact",
        engine.name()
    );
    let executor = Executor::runtime(engine, &["--trust-precompiled"]);
    let answer = executor.post("/init", &init_body(&zip(&compiled.stdout)));
    assert_eq!((answer.status, answer.body), (200, json!({"ok": true})));
    let answer = executor.run(json!({"param1": 20, "param2": 22}));
    assert_eq!((answer.status, answer.body), (200, json!({"result": 42})));
}

/// A module that does not compile is the module's fault: the status a serving executor reads
/// as such, and the engine's reason. The same reason reaches the user of a serving executor.
fn a_module_the_compiler_process_refuses_is_refused_with_its_reason(engine: EngineKind) {
    let not_wasm = b"\0asm\x01\0\0\0\x01\xff";
    let compiled = compiler_process(engine, not_wasm);
    let stderr = String::from_utf8_lossy(&compiled.stderr);
    if engine.artifact().is_none() {
        assert_eq!(compiled.status.code(), Some(1), "{stderr}");
        return;
    }
    assert_eq!(
        compiled.status.code(),
        Some(ow_common::host::compiler_process::INVALID_MODULE_EXIT.into()),
        "{stderr}"
    );
    assert!(compiled.stdout.is_empty());
    let reason = stderr.trim_end();
    assert!(!reason.is_empty());
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.post("/init", &init_body(&zip(not_wasm)));
    assert_eq!(
        (answer.status, answer.body),
        (
            502,
            json!({"error": format!(
                "The action code is not a valid WebAssembly module: {reason}"
            )})
        )
    );
}

/// The LZ4 frame of the only entry of a zip `zip_artifact` wrote: a stored entry, read as it is.
fn frame_of(zip: &[u8]) -> Vec<u8> {
    use std::io::Read as _;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut frame = Vec::new();
    archive
        .by_index(0)
        .unwrap()
        .read_to_end(&mut frame)
        .unwrap();
    frame
}

fn an_lz4_packed_module_runs_and_a_lying_frame_is_refused_saying_how(engine: EngineKind) {
    let add = artifacts::read(artifacts::ADD);
    let packed = ow_common::code::zip_artifact("action.wasm.lz4", &add).unwrap();
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.post("/init", &init_body(&packed));
    assert_eq!((answer.status, answer.body), (200, json!({"ok": true})));
    assert_eq!(
        executor.run(json!({"param1": 20, "param2": 22})).body,
        json!({"result": 42})
    );

    // The frame claims one byte more than its blocks hold; the zip's CRC-32 matches it.
    let mut lying = frame_of(&packed);
    assert_eq!(&lying[..4], b"\x04\x22\x4d\x18", "an LZ4 frame");
    let claimed = add.len() as u64 + 1;
    lying[6..14].copy_from_slice(&claimed.to_le_bytes());
    let code = ow_common::code::zip_module("action.wasm.lz4", &lying).unwrap();
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.post("/init", &init_body(&code));
    assert_eq!(
        (answer.status, answer.body),
        (
            502,
            json!({"error": format!(
                "The action code holds an LZ4 frame that cannot be unpacked: its blocks unpack \
                 to {} bytes, not the {claimed} its header records.",
                add.len()
            )})
        )
    );
}

per_engine!(
    an_lz4_packed_module_runs_and_a_lying_frame_is_refused_saying_how,
    the_compiler_process_writes_an_artifact_its_engine_runs,
    a_module_the_compiler_process_refuses_is_refused_with_its_reason,
    an_artifact_runs_on_its_engine_when_trusted,
    an_artifact_is_refused_without_trust,
    a_portable_zip_from_the_precompiler_runs_anywhere,
);
