//! Reads the WASI wall clock: `{"epoch_millis": …}`.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

fn clock(_params: Value) -> Result<Value> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?;
    Ok(json!({ "epoch_millis": now.as_millis() as u64 }))
}

ow_wasm_action::pass_json!(clock);
