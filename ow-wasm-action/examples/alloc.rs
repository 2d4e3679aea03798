//! Allocates and fills `mb` MiB (default 1) on the heap, then returns how much it held. Asked
//! for more than the action's memory limit, the allocation fails and the action aborts, as any
//! Rust program does when it runs out of memory.

use anyhow::{Context, Result};
use serde_json::{Value, json};

fn alloc(params: Value) -> Result<Value> {
    let mb = match &params["mb"] {
        Value::Null => 1,
        value => value
            .as_u64()
            .context("mb must be a non-negative integer")?,
    };
    let len = usize::try_from(mb * 1024 * 1024).context("mb is too large for this target")?;
    let buffer = vec![1u8; len];
    let sum: u64 = buffer.iter().step_by(4096).map(|&b| u64::from(b)).sum();
    Ok(json!({ "allocated_mb": mb, "pages_touched": sum }))
}

ow_wasm_action::pass_json!(alloc);
