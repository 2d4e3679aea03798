//! Returns the activation's environment: the `__OW_*` context of the run and the init `env`.

use anyhow::Result;
use serde_json::{Map, Value};

fn env(_params: Value) -> Result<Value> {
    let vars: Map<String, Value> = std::env::vars()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok(Value::Object(vars))
}

ow_wasm_action::pass_json!(env);
