//! Outbound HTTP for actions granted the `net_access` annotation, through the host's
//! `http`.`get` import. An action that calls it without the grant is refused when it is
//! initialised, naming the import.

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

/// GETs `url` (`http://` or `https://`) and returns the response body.
///
/// The activation waits without holding a host thread. An `Err` says why there is no
/// response: a URL the host refuses, or an answer the SDK cannot read.
pub fn http_get(url: &str) -> Result<String> {
    let answer = get_answer(url)?;
    let answer: Value =
        serde_json::from_slice(&answer).context("http.get answered with no JSON")?;
    if let Some(error) = answer["error"].as_str() {
        return Err(anyhow!("{error}"));
    }
    answer["body"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("http.get answered without a body: {answer}"))
}

#[cfg(target_family = "wasm")]
fn get_answer(url: &str) -> Result<Vec<u8>> {
    Ok(crate::abi::http_get_answer(url))
}

/// Outside a Wasm guest there is no executor to ask.
#[cfg(not(target_family = "wasm"))]
fn get_answer(url: &str) -> Result<Vec<u8>> {
    Err(anyhow!(
        "cannot get {url}: http.get exists only inside an ow-wasm executor (build for wasm32-wasip1)"
    ))
}
