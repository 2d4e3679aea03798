//! CPU-bound work: the `n`-th prime (1-based, default 1000) by trial division.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

fn prime(params: Value) -> Result<Value> {
    let n = match &params["n"] {
        Value::Null => 1000,
        value => value.as_u64().context("n must be a positive integer")?,
    };
    ensure!(n >= 1, "n must be a positive integer");
    let mut found = 0;
    let mut candidate = 1u64;
    while found < n {
        candidate += 1;
        if is_prime(candidate) {
            found += 1;
        }
    }
    Ok(json!({ "n": n, "prime": candidate }))
}

fn is_prime(candidate: u64) -> bool {
    (2..)
        .take_while(|divisor| divisor * divisor <= candidate)
        .all(|divisor| !candidate.is_multiple_of(divisor))
}

ow_wasm_action::pass_json!(prime);
