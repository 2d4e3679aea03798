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

# Every measurement of ow-evaluation (cold start, throughput, ramp, realistic mix, memory,
# soak) on every engine compiled in, with the http-floor and native baselines measured in the
# same run, quick profile (under 10 minutes on 2 cores), then the criterion floor of each
# engine. Tables print as Markdown; CSV, JSON and PNG charts go to target/evaluation/.
# (One build of both binaries, so their shared dependencies are compiled once.)
bench:
    cargo build --release --all-features -p ow-executor -p ow-evaluation
    target/release/ow-evaluation all --profile quick
    cargo bench --all-features -p ow-executor --bench activation -- --quick

# The same with the full profile: long runs, every concurrency level and size of issue 9.
bench-full:
    cargo build --release --all-features -p ow-executor -p ow-evaluation
    target/release/ow-evaluation all --profile full
    cargo bench --all-features -p ow-executor --bench activation

# Serve one action container on :8080 as the `wasm:0.1` image would.
runtime *ARGS:
    cargo run --release -p ow-executor -- runtime {{ARGS}}
