//! Adds `param1` and `param2`: `{"param1": 2, "param2": 2}` gives `{"result": 4}`.

use anyhow::{Context, Result};
use serde_json::{Value, json};

fn add(params: Value) -> Result<Value> {
    let a = params["param1"]
        .as_i64()
        .context("param1 must be an integer")?;
    let b = params["param2"]
        .as_i64()
        .context("param2 must be an integer")?;
    Ok(json!({ "result": a + b }))
}

ow_wasm_action::pass_json!(add);
