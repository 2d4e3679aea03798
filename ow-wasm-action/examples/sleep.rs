//! Sleeps for `ms` milliseconds (default 100): an I/O-bound action that should hold no thread.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::time::Duration;

fn sleep(params: Value) -> Result<Value> {
    let ms = match &params["ms"] {
        Value::Null => 100,
        value => value
            .as_u64()
            .context("ms must be a non-negative integer")?,
    };
    std::thread::sleep(Duration::from_millis(ms));
    Ok(json!({ "slept_ms": ms }))
}

ow_wasm_action::pass_json!(sleep);
