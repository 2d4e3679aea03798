//! The README's quickstart: builds `ow-executor`, starts `ow-executor standalone` on a free
//! port with a fresh data directory, creates the `add` example action through the OpenWhisk
//! REST API (as `wsk action create --kind wasm:0.1 add add.zip` does), invokes it blocking
//! with `{"param1": 2, "param2": 2}` (as `wsk action invoke --blocking --result` does) and
//! prints the result: `{"result":4}`. It leaves the action's zip at `target/quickstart/add.zip`
//! for trying `wsk` against a server of your own.
//!
//! Run it with `cargo run --release -p ow-executor --example quickstart`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[allow(dead_code)]
#[path = "../tests/all/harness.rs"]
mod harness;

use anyhow::{Context, ensure};
use base64::Engine as _;
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

/// OpenWhisk's well-known guest credentials, which standalone accepts.
const GUEST: &str = ow_executor::standalone::GUEST_KEY;

fn main() -> anyhow::Result<()> {
    let (executor_binary, target_dir) = build_executor()?;
    let data_dir = tempfile::tempdir()?;
    let data = data_dir.path().to_str().context("a UTF-8 temp path")?;
    eprintln!(
        "starting {} standalone --data-dir {data}",
        executor_binary.display()
    );
    let server = harness::Executor::start(
        &executor_binary,
        &["standalone"],
        &["--data-dir", data],
        &[],
    );
    eprintln!(
        "ow-executor standalone serves the OpenWhisk API on {}",
        server.base_url
    );

    let zip = ow_common::code::zip_module("action.wasm", &artifacts::read(artifacts::ADD))?;
    let zip_path = target_dir.join("quickstart").join("add.zip");
    std::fs::create_dir_all(zip_path.parent().context("zip has a directory")?)?;
    std::fs::write(&zip_path, &zip)
        .with_context(|| format!("cannot write {}", zip_path.display()))?;
    let body = json!({"exec": {"kind": "wasm:0.1", "code": base64::engine::general_purpose::STANDARD.encode(&zip)}});
    eprintln!(
        "PUT /api/v1/namespaces/_/actions/add (wsk action create --kind wasm:0.1 add add.zip)"
    );
    let created = server.request(
        "PUT",
        "/api/v1/namespaces/_/actions/add?overwrite=true",
        &serde_json::to_vec(&body)?,
        Some("application/json"),
        Some(GUEST),
    );
    ensure!(
        created.status == 200,
        "creating the action failed: {} {}",
        created.status,
        created.body
    );

    eprintln!(
        "POST /api/v1/namespaces/_/actions/add?blocking=true&result=true (wsk action invoke --blocking --result add -p param1 2 -p param2 2)"
    );
    let invoked = server.request(
        "POST",
        "/api/v1/namespaces/_/actions/add?blocking=true&result=true",
        br#"{"param1": 2, "param2": 2}"#,
        Some("application/json"),
        Some(GUEST),
    );
    ensure!(
        invoked.status == 200,
        "invoking the action failed: {} {}",
        invoked.status,
        invoked.body
    );
    println!("{}", invoked.body);
    eprintln!(
        "\nTo drive your own server with wsk: run `ow-executor standalone`, then\n  \
         wsk property set --apihost 'http://127.0.0.1:3233' --auth '{GUEST}'\n  \
         wsk action create --kind wasm:0.1 add {}\n  \
         wsk action invoke --blocking --result add -p param1 2 -p param2 2",
        zip_path.display()
    );
    Ok(())
}

/// Builds the `ow-executor` binary next to this example (same profile and target directory)
/// and returns its path and the target directory.
fn build_executor() -> anyhow::Result<(PathBuf, PathBuf)> {
    let examples_dir = std::env::current_exe()?
        .parent()
        .context("example has a directory")?
        .to_owned();
    let profile_dir = examples_dir
        .parent()
        .context("examples live in a profile directory")?;
    let release = profile_dir
        .file_name()
        .is_some_and(|name| name == "release");
    let target_dir = profile_dir
        .parent()
        .context("profile directories live in the target directory")?
        .to_owned();
    // The test that runs this example has cargo build the executor already (a nested cargo
    // build would wait for the outer one's lock).
    if let Some(prebuilt) = std::env::var_os("OW_QUICKSTART_EXECUTOR") {
        return Ok((prebuilt.into(), target_dir));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--package", "ow-executor", "--bin", "ow-executor"]);
    if release {
        build.arg("--release");
    }
    eprintln!(
        "building ow-executor{}",
        if release { " (release)" } else { "" }
    );
    let status = build.status().context("cannot run cargo")?;
    ensure!(status.success(), "building ow-executor failed");
    Ok((profile_dir.join("ow-executor"), target_dir))
}
