//! CPU-bound work: hashes a 4 KiB buffer with BLAKE3 `iterations` times (default 1000),
//! feeding each digest into the next round.

use anyhow::{Context, Result};
use serde_json::{Value, json};

fn hash(params: Value) -> Result<Value> {
    let iterations = match &params["iterations"] {
        Value::Null => 1000,
        value => value
            .as_u64()
            .context("iterations must be a non-negative integer")?,
    };
    let mut buffer = [0u8; 4096];
    for _ in 0..iterations {
        let digest = blake3::hash(&buffer);
        buffer[..32].copy_from_slice(digest.as_bytes());
    }
    let digest = blake3::hash(&buffer);
    Ok(json!({ "iterations": iterations, "hash": digest.to_hex().as_str() }))
}

ow_wasm_action::pass_json!(hash);
