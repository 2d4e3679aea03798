//! The README's quickstart: builds `ow-executor`, starts `ow-executor runtime` on a free port,
//! sends `/init` with the `add` example action and `/run` with `{"param1": 2, "param2": 2}`,
//! and prints the answer: `{"result":4}`.
//!
//! Run it with `cargo run --release -p ow-executor --example quickstart`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[allow(dead_code)]
#[path = "../tests/all/harness.rs"]
mod harness;

use anyhow::{Context, ensure};
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;

fn main() -> anyhow::Result<()> {
    let executor_binary = build_executor()?;
    eprintln!("starting {} runtime", executor_binary.display());
    let executor = harness::Executor::start(&executor_binary, &["runtime"], &[], &[]);
    eprintln!("ow-executor runtime listens on {}", executor.base_url);

    eprintln!("POST /init with the add action ({})", artifacts::ADD);
    let init = executor.init_module(&artifacts::read(artifacts::ADD));
    ensure!(
        init.status == 200,
        "/init failed: {} {}",
        init.status,
        init.body
    );

    eprintln!("POST /run with {{\"param1\": 2, \"param2\": 2}}");
    let run = executor.run(json!({"param1": 2, "param2": 2}));
    ensure!(
        run.status == 200,
        "/run failed: {} {}",
        run.status,
        run.body
    );
    println!("{}", run.body);
    Ok(())
}

/// Builds the `ow-executor` binary next to this example (same profile and target directory)
/// and returns its path.
fn build_executor() -> anyhow::Result<PathBuf> {
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
    Ok(profile_dir.join("ow-executor"))
}
