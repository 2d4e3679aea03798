//! Integration tests: the real `ow-executor` binary on `127.0.0.1:0`, driven over HTTP.

mod examples;
mod harness;
mod precompiled;
mod runtime_protocol;
