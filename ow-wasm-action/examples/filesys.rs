//! Writes `content` to `file` in the directory granted by the `dir` annotation (seen by the
//! action as `/data`), reads it back, and lists the directory.
//!
//! With `read`, it only reads that path (any path the action names, inside the granted
//! directory or not) and returns its content, or the error that reading it gave.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::path::Path;

const DIR: &str = "/data";

fn filesys(params: Value) -> Result<Value> {
    if let Some(path) = params["read"].as_str() {
        let content =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        return Ok(json!({ "read": path, "content": content }));
    }
    let file = params["file"].as_str().unwrap_or("hello.txt");
    ensure!(
        !file.contains('/'),
        "file must be a plain file name, not a path"
    );
    let content = params["content"].as_str().unwrap_or("hello from ow-wasm");
    let path = Path::new(DIR).join(file);
    std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
    let read_back = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut entries = std::fs::read_dir(DIR)
        .with_context(|| format!("cannot list {DIR}"))?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<String>>>()?;
    entries.sort();
    Ok(json!({ "content": read_back, "entries": entries }))
}

ow_wasm_action::pass_json!(filesys);
