# ow-wasm tasks. `just` is optional: each recipe is one plain command you can also type.

# Build the executor and an example action, deploy and invoke it: prints {"result":4}.
quickstart:
    cargo run --release -p ow-executor --example quickstart

# The whole test suite on every engine, as CI runs it.
test:
    cargo test --workspace --all-features --locked

# Formatting and lints, as CI checks them.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

# Every example action as a zip for `wsk action create`, portable and precompiled per engine,
# in target/examples.
examples:
    cargo run --release -p ow-precompiler --all-features --example pack_examples -- target/examples

# Criterion benchmarks of the Wasmtime engine (prepare, warm activation).
bench:
    cargo bench -p ow-wasmtime --bench activation

# Serve one action container on :8080 as the `wasm:0.1` image would.
runtime *ARGS:
    cargo run --release -p ow-executor -- runtime {{ARGS}}
