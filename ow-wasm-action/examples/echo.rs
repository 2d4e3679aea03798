//! Returns its parameters unchanged: the smallest possible action, for measuring overhead.

use anyhow::Result;
use serde_json::Value;

fn echo(params: Value) -> Result<Value> {
    Ok(params)
}

ow_wasm_action::pass_json!(echo);
