//! Prepare and activation costs of the Wasmtime engine on the example actions.
//!
//! * `prepare/compile`: a cold `/init` of new code (a custom section makes every iteration's
//!   bytes distinct, so the content-hash cache never hits).
//! * `prepare/cached`: `/init` of code the engine has compiled before.
//! * `activate`: one warm activation, fresh instance included.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ow_common::code::ModuleCode;
use ow_common::runtime::{ActionConfig, Activation, EngineConfig, WasmRuntime};
use ow_wasm_action_artifacts as artifacts;
use ow_wasmtime::Wasmtime;
use serde_json::json;
use std::time::{Duration, Instant};

/// Appends a custom section holding `counter`, which changes the bytes but not the behaviour.
fn distinct_copy(wasm: &[u8], counter: u64) -> Vec<u8> {
    let name = b"ow-bench";
    let payload = counter.to_le_bytes();
    let mut module = wasm.to_vec();
    module.push(0); // custom section id
    module.push((1 + name.len() + payload.len()) as u8); // section size (fits one LEB byte)
    module.push(name.len() as u8);
    module.extend_from_slice(name);
    module.extend_from_slice(&payload);
    module
}

fn activation(params: serde_json::Value) -> Activation {
    Activation {
        params,
        env: Vec::new(),
        deadline: Instant::now() + Duration::from_secs(60),
        time_limit: Duration::from_secs(60),
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = Wasmtime::start(&EngineConfig::default()).unwrap();
    let add = artifacts::read(artifacts::ADD);

    let mut prepare = c.benchmark_group("prepare");
    prepare.sample_size(20);
    let mut counter = 0;
    prepare.bench_function(BenchmarkId::new("wasmtime-compile", "add"), |b| {
        b.to_async(&runtime).iter(|| {
            counter += 1;
            let code = ModuleCode::new(distinct_copy(&add, counter));
            let engine = &engine;
            async move { engine.prepare(code, ActionConfig::default()).await.unwrap() }
        });
    });
    prepare.bench_function(BenchmarkId::new("wasmtime-cached", "add"), |b| {
        b.to_async(&runtime).iter(|| {
            let code = ModuleCode::new(add.clone());
            let engine = &engine;
            async move { engine.prepare(code, ActionConfig::default()).await.unwrap() }
        });
    });
    prepare.finish();

    let mut activate = c.benchmark_group("activate");
    for (name, path, params) in [
        ("add", artifacts::ADD, json!({"param1": 2, "param2": 2})),
        ("echo", artifacts::ECHO, json!({})),
        (
            "stdio_add",
            artifacts::STDIO_ADD,
            json!({"param1": 2, "param2": 2}),
        ),
    ] {
        let action = runtime
            .block_on(engine.prepare(
                ModuleCode::new(artifacts::read(path)),
                ActionConfig::default(),
            ))
            .unwrap();
        activate.bench_function(BenchmarkId::new("wasmtime", name), |b| {
            b.to_async(&runtime).iter(|| {
                let activation = activation(params.clone());
                let action = &action;
                async move {
                    let completion = action.run(activation).await;
                    assert!(completion.outcome.is_ok(), "{:?}", completion.outcome);
                }
            });
        });
    }
    activate.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
