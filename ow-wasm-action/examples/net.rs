//! Fetches `url` (default `https://example.com/`) with the `net_access` capability and returns
//! the response body. Initialising it fails unless the action is annotated `net_access: true`.

use anyhow::Result;
use serde_json::{Value, json};

fn net(params: Value) -> Result<Value> {
    let url = params["url"].as_str().unwrap_or("https://example.com/");
    let body = ow_wasm_action::http::http_get(url)?;
    Ok(json!({ "url": url, "body": body }))
}

ow_wasm_action::pass_json!(net);
