//! The `ow-precompiler` command line: what it writes and how it refuses bad input.

use ow_common::code::{ModuleFormat, decode_action_code, encode_base64};
use std::process::Command;

fn precompiler() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ow-precompiler"))
}

#[test]
fn writes_a_zip_the_executor_can_decode_for_each_target() {
    let dir = tempfile::tempdir().unwrap();
    let targets = [
        ("none", ModuleFormat::CoreModule),
        #[cfg(feature = "wasmtime")]
        ("wasmtime", ModuleFormat::WasmtimeArtifact),
        #[cfg(feature = "wasmer")]
        ("wasmer", ModuleFormat::WasmerArtifact),
    ];
    for (engine, format) in targets {
        let output = dir.path().join(format!("{engine}.zip"));
        let result = precompiler()
            .args(["--engine", engine, ow_wasm_action_artifacts::ADD, "-o"])
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert!(String::from_utf8_lossy(&result.stdout).starts_with("wrote "));
        let zip = std::fs::read(&output).unwrap();
        let code = decode_action_code(&encode_base64(&zip), "main").unwrap();
        assert_eq!(code.format, format, "{engine}");
    }
}

#[test]
fn refuses_input_that_is_not_a_module() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("action.js");
    std::fs::write(&input, "function main() {}").unwrap();
    let result = precompiler()
        .args(["--engine", "none"])
        .arg(&input)
        .arg("-o")
        .arg(dir.path().join("out.zip"))
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("text, not a WebAssembly core module"),
        "{stderr}"
    );
    assert!(!dir.path().join("out.zip").exists());
}

#[cfg(feature = "wamr")]
#[test]
fn refuses_wamr_aot_naming_the_compiler_no_registry_ships() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.zip");
    let result = precompiler()
        .args(["--engine", "wamr", ow_wasm_action_artifacts::ADD, "-o"])
        .arg(&output)
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("wamrc, which no package registry ships")
            && stderr.contains("ow-precompiler --engine none"),
        "{stderr}"
    );
    assert!(!output.exists());
}
