//! Always fails: shows that an `Err` becomes the application error `{"error": "<message>"}`.

use anyhow::{Result, bail};
use serde_json::Value;

fn error(params: Value) -> Result<Value> {
    let reason = params["reason"]
        .as_str()
        .unwrap_or("this action always fails");
    bail!("{reason}")
}

ow_wasm_action::pass_json!(error);
