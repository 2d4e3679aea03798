//! Paths of the example actions and test modules, built for `wasm32-wasip1` by this crate's
//! build script during `cargo test`. Test-only: nothing here ships.

#![forbid(unsafe_code)]
#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// Reads a built module.
pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read test module {path}: {e}"))
}
