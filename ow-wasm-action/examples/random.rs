//! Draws a random 64-bit number from the WASI random source: `{"random": …}`.
//!
//! The standard library seeds `RandomState` from the host's `random_get`, so no crate is needed.

use anyhow::Result;
use serde_json::{Value, json};
use std::hash::{BuildHasher, RandomState};

fn random(_params: Value) -> Result<Value> {
    let value = RandomState::new().hash_one(0u8);
    Ok(json!({ "random": value }))
}

ow_wasm_action::pass_json!(random);
