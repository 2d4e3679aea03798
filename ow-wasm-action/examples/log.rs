//! Writes `lines` (default 1) lines to stdout and to stderr, then returns how many it wrote.

// Printing is what this action is for: its output is its log.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::{Context, Result};
use serde_json::{Value, json};

fn log(params: Value) -> Result<Value> {
    let lines = match &params["lines"] {
        Value::Null => 1,
        value => value
            .as_u64()
            .context("lines must be a non-negative integer")?,
    };
    let message = params["message"].as_str().unwrap_or("hello");
    for line in 0..lines {
        println!("stdout {line}: {message}");
        eprintln!("stderr {line}: {message}");
    }
    Ok(json!({ "lines": lines }))
}

ow_wasm_action::pass_json!(log);
