//! Integration tests: the real `ow-executor` binary on `127.0.0.1:0`, driven over HTTP.

mod examples;
mod executor_mode;
mod harness;
mod keep_alive;
mod npm_client;
mod precompiled;
mod quickstart;
mod runtime_protocol;
mod safety;
mod standalone;
