//! The real `openwhisk` npm client against `ow-executor standalone`: create, invoke (blocking,
//! result, non-blocking), logs, list, delete; packages and a binding, a sequence, a web action
//! over plain HTTP, a trigger fired through a rule; then a restart on the same data, after
//! which all of them still answer. `.ci/run` installs the client with npm.

use crate::harness::Executor;
use ow_wasm_action_artifacts as artifacts;
use std::path::Path;
use std::process::Command;

const GUEST: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";

/// Runs one phase of `e2e.mjs` against `server`; asserts that its `passed` checks passed.
fn run_phase(server: &Executor, data: &Path, phase: &str, passed: usize) {
    let npm_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm");
    assert!(
        npm_dir.join("node_modules/openwhisk").is_dir(),
        "the openwhisk npm client is not installed: run `npm ci --prefix {}` (as .ci/run does)",
        npm_dir.display()
    );
    let zip_of = |name: &str, path: &str| {
        let file = data.join(name);
        let zip = ow_common::code::zip_module("action.wasm", &artifacts::read(path)).unwrap();
        std::fs::write(&file, zip).unwrap();
        file
    };
    let output = Command::new("node")
        .arg(npm_dir.join("e2e.mjs"))
        .current_dir(&npm_dir)
        .env("OW_APIHOST", &server.base_url)
        .env("OW_AUTH", GUEST)
        .env("OW_PHASE", phase)
        .env("ADD_ZIP", zip_of("add.zip", artifacts::ADD))
        .env("LOG_ZIP", zip_of("log.zip", artifacts::LOG))
        .env("ECHO_ZIP", zip_of("echo.zip", artifacts::ECHO))
        .output()
        .expect("node runs (install Node.js)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the npm client test failed ({phase}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains(&format!("{passed} passed, 0 failed")),
        "{phase}: {stdout}"
    );
}

#[test]
fn the_openwhisk_npm_client_drives_standalone_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let zips = tempfile::tempdir().unwrap();
    let mut first = Executor::standalone(data.path(), &[]);
    run_phase(&first, zips.path(), "before", 13);
    // Killed, as a crash would: what was answered was stored.
    first.kill();
    let second = Executor::standalone(data.path(), &[]);
    run_phase(&second, zips.path(), "after", 5);
}
