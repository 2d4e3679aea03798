//! The `native` baseline: the `hash` example's own source file, compiled for the host.
//!
//! `ow-wasm-action/examples/hash.rs` is included as a module (`#[path]`), so there is one copy
//! of the logic. Its last line, `ow_wasm_action::pass_json!(hash)`, resolves here (the crate
//! root says `extern crate self as ow_wasm_action`) to a native `pass_json!` that exposes the
//! handler as a plain Rust function instead of the Wasm ABI's exports. The same `blake3`
//! and `serde_json` versions as the guest come from the workspace. Two baselines use it: in
//! process (the `http-floor-server --mode native` handler calls [`hash`]) and as one process
//! per request (`ow-native-action`, what a Docker blackbox action runs, without Docker).

use serde_json::{Value, json};

#[path = "../../ow-wasm-action/examples/hash.rs"]
mod hash_example;

/// The SDK's `pass_json!` for a native build: `native_main` calls the handler.
#[doc(hidden)]
#[macro_export]
macro_rules! pass_json {
    ($handler:path) => {
        /// The example's handler, called natively.
        pub fn native_main(params: serde_json::Value) -> anyhow::Result<serde_json::Value> {
            $handler(params)
        }
    };
}

/// Runs the `hash` example on `params`; an error is the application error the SDK would
/// answer (`{"error": …}`).
pub fn hash(params: Value) -> Value {
    hash_example::native_main(params)
        .unwrap_or_else(|error| json!({ "error": format!("{error:#}") }))
}

/// The parameters of a `/run` body (its `value`), or the body itself if it has none.
pub fn run_params(body: &[u8]) -> Value {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut object)) if object.contains_key("value") => {
            object.remove("value").unwrap_or_default()
        }
        Ok(other) => other,
        Err(_) => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_native_hash_is_the_examples_hash() {
        // One round over the 4 KiB zero buffer, then the final hash, as the example does.
        let mut buffer = [0u8; 4096];
        let digest = blake3::hash(&buffer);
        buffer[..32].copy_from_slice(digest.as_bytes());
        let expected = blake3::hash(&buffer).to_hex().to_string();
        assert_eq!(
            hash(json!({"iterations": 1})),
            json!({"iterations": 1, "hash": expected})
        );
        assert_eq!(hash(json!({}))["iterations"], 1000);
    }

    #[test]
    fn a_bad_parameter_is_an_application_error() {
        let answer = hash(json!({"iterations": -1}));
        assert_eq!(answer["error"], "iterations must be a non-negative integer");
    }

    #[test]
    fn run_bodies_carry_their_parameters_in_value() {
        assert_eq!(
            run_params(br#"{"value": {"iterations": 3}}"#),
            json!({"iterations": 3})
        );
        assert_eq!(
            run_params(br#"{"iterations": 3}"#),
            json!({"iterations": 3})
        );
        assert_eq!(run_params(b""), json!({}));
    }
}
