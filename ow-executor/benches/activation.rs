//! The engine floor, every engine compiled in side by side (`BenchmarkId::new(engine, …)`):
//!
//! * `prepare/compile`: a cold `/init` of new code (a custom section makes every iteration's
//!   bytes distinct, so the content-hash cache never hits).
//! * `prepare/cached`: `/init` of code the engine has loaded before.
//! * `prepare/artifact`: `/init` of the engine's own trusted precompiled artifact (engines that
//!   have artifacts).
//! * `activate`: one warm activation, fresh instance included, per guest ABI: the no-op SDK
//!   module (the floor), `add` and `echo` (the SDK with Rust's WASI start-up), `stdio_add`
//!   (a WASI command).
//!
//! `cargo bench -p ow-executor --all-features --bench activation`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ow_common::code::{ModuleCode, decode_action_code, encode_base64};
use ow_common::runtime::{ActionConfig, Activation, EngineConfig, WasmRuntime};
use ow_executor::engines::EngineKind;
use ow_precompiler::Target;
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;
use std::sync::Arc;
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

/// The engine's own artifact of `wasm`, when it has artifacts.
fn artifact(kind: EngineKind, wasm: &[u8]) -> Option<ModuleCode> {
    kind.artifact()?;
    // Every engine with artifacts is benchmarked with one: the features forward to the
    // precompiler, so a missing target is a build mistake, not a row to leave out.
    let target = <Target as clap::ValueEnum>::from_str(kind.name(), false)
        .unwrap_or_else(|_| panic!("ow-precompiler is built without {}", kind.name()));
    let (zip, _) = ow_precompiler::package(target, wasm).expect("the precompiler packages add");
    Some(decode_action_code(&encode_base64(&zip), "main").expect("the artifact zip decodes"))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Engines may take the runtime's handle as they start.
    let _entered = runtime.enter();
    let mut config = EngineConfig::default();
    config.trust_precompiled(true);
    let engines: Vec<(EngineKind, Arc<dyn WasmRuntime>)> = EngineKind::ALL
        .iter()
        .map(|&kind| (kind, kind.build(&config).expect("the engine builds")))
        .collect();
    let add = artifacts::read(artifacts::ADD);

    let mut prepare = c.benchmark_group("prepare");
    prepare.sample_size(20);
    for (kind, engine) in &engines {
        let mut counter = 0;
        prepare.bench_function(BenchmarkId::new(kind.name(), "compile/add"), |b| {
            b.to_async(&runtime).iter(|| {
                counter += 1;
                let code = ModuleCode::new(distinct_copy(&add, counter));
                async { engine.prepare(code, ActionConfig::default()).await.unwrap() }
            });
        });
        prepare.bench_function(BenchmarkId::new(kind.name(), "cached/add"), |b| {
            b.to_async(&runtime).iter(|| {
                let code = ModuleCode::new(add.clone());
                async { engine.prepare(code, ActionConfig::default()).await.unwrap() }
            });
        });
        if let Some(artifact) = artifact(*kind, &add) {
            let mut counter = 0;
            prepare.bench_function(BenchmarkId::new(kind.name(), "artifact/add"), |b| {
                b.to_async(&runtime).iter(|| {
                    // A distinct hash each time, so the artifact is loaded, not found.
                    counter += 1;
                    let mut code = artifact.clone();
                    code.hash[..8].copy_from_slice(&u64::to_le_bytes(counter));
                    async { engine.prepare(code, ActionConfig::default()).await.unwrap() }
                });
            });
        }
    }
    prepare.finish();

    let mut activate = c.benchmark_group("activate");
    for (kind, engine) in &engines {
        for (name, path, params) in [
            ("noop", artifacts::wat::NOOP, json!({})),
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
            activate.bench_function(BenchmarkId::new(kind.name(), name), |b| {
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
    }
    activate.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
