//! The guest SDK for ow-wasm actions.
//!
//! Write an action as a plain Rust function over JSON and export it with [`pass_json!`]:
//!
//! ```no_run
//! use serde_json::{Value, json};
//!
//! fn add(params: Value) -> Result<Value, anyhow::Error> {
//!     let a = params["param1"].as_i64().ok_or_else(|| anyhow::anyhow!("param1 is missing"))?;
//!     let b = params["param2"].as_i64().ok_or_else(|| anyhow::anyhow!("param2 is missing"))?;
//!     Ok(json!({ "result": a + b }))
//! }
//!
//! ow_wasm_action::pass_json!(add);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip1`, zip the `.wasm` and create the action with
//! `wsk action create --kind wasm:0.1 add add.zip`. An `Err` becomes the application error
//! `{"error": "<message>"}`. Anything the action prints to stdout or stderr is its log.
//!
//! Actions whose annotations grant `net_access` may fetch URLs with [`http::http_get`].

#![deny(missing_docs)]

pub mod abi;
pub mod http;

pub use anyhow;
pub use serde_json;
