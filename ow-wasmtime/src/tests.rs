//! The conformance suite every engine is held to, run on Wasmtime (no gaps), and what is
//! Wasmtime's own: its linkers.

use crate::Wasmtime;
use ow_common::runtime::EngineConfig;
use std::sync::Arc;

ow_common::conformance_suite! {
    engine: |config| Arc::new(Wasmtime::start(config).expect("the engine builds")),
    gaps: [],
}

#[test]
fn the_linkers_provide_exactly_wasi_preview_1_and_http_get_where_granted() {
    use ow_common::host::admission::{WASI_P1_FUNCTIONS, WASI_P1_MODULE};
    let engine = Wasmtime::start(&EngineConfig::default()).expect("the engine builds");
    let wasi: std::collections::HashSet<(String, String)> = WASI_P1_FUNCTIONS
        .iter()
        .map(|name| (WASI_P1_MODULE.to_owned(), (*name).to_owned()))
        .collect();
    assert_eq!(engine.engine().provided_imports(false), wasi);
    let mut with_net = wasi;
    with_net.insert(("http".to_owned(), "get".to_owned()));
    assert_eq!(engine.engine().provided_imports(true), with_net);
}

#[test]
fn a_module_compiled_at_init_is_what_the_precompiler_makes_of_it() {
    use ow_common::host::Engine as _;
    let engine = Wasmtime::start(&EngineConfig::default()).expect("the engine builds");
    use ow_common::testing::ow_wasm_action_artifacts as artifacts;
    let wasm = artifacts::read(artifacts::ADD);
    let compiled = engine.engine().compile(&wasm).expect("add compiles");
    assert_eq!(
        engine.engine().serialize(&compiled),
        Some(crate::precompile(&wasm).expect("add precompiles")),
        "compiling apart loads the same code an executor trusting artifacts would load"
    );
}

#[test]
fn the_epoch_ticker_waits_while_no_activation_runs() {
    let engine = Wasmtime::start(&EngineConfig::default()).expect("the engine builds");
    let ticker = &engine.engine().ticker;
    let waits_again = |why: &str| {
        // Only a guard against a hang: the thread notices within a tick.
        let given_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ticker.is_waiting() {
            assert!(std::time::Instant::now() < given_up, "{why}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    };
    waits_again("an engine that ran nothing keeps ticking");
    let first = ticker.ticking().activation();
    assert!(
        !ticker.is_waiting(),
        "a starting activation wakes the ticker"
    );
    let second = ticker.ticking().activation();
    drop(first);
    assert!(
        !ticker.is_waiting(),
        "the ticker ticks while any activation runs"
    );
    drop(second);
    waits_again("the ticker goes on ticking after the last activation ended");
}
