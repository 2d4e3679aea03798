//! The engine's containment of hostile actions, its instance slots and its capabilities,
//! driven directly through the `WasmRuntime` trait.

use crate::{Wasmtime, WasmtimeConfig};
use ow_common::capabilities::Capabilities;
use ow_common::code::ModuleCode;
use ow_common::runtime::{
    ActionConfig, Activation, InitError, Limits, PreparedAction, RunError, WasmRuntime,
};
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

fn engine(max_instances: u32) -> Wasmtime {
    let mut config = WasmtimeConfig::default();
    config.max_instances(max_instances);
    Wasmtime::new(config).expect("the engine builds")
}

async fn prepare(
    engine: &Wasmtime,
    wasm: Vec<u8>,
    config: ActionConfig,
) -> Result<Arc<dyn PreparedAction>, InitError> {
    engine.prepare(ModuleCode::new(wasm), config).await
}

async fn prepare_ok(
    engine: &Wasmtime,
    path: &str,
    config: ActionConfig,
) -> Arc<dyn PreparedAction> {
    prepare(engine, artifacts::read(path), config)
        .await
        .unwrap_or_else(|e| panic!("{path} prepares: {e}"))
}

fn activation(params: Value, time_limit: Duration) -> Activation {
    Activation {
        params,
        env: Vec::new(),
        deadline: Instant::now() + time_limit,
        time_limit,
    }
}

fn with_limits(limits: Limits) -> ActionConfig {
    ActionConfig {
        limits,
        ..ActionConfig::default()
    }
}

fn net_access() -> ActionConfig {
    ActionConfig {
        capabilities: Capabilities {
            net_access: true,
            ..Capabilities::default()
        },
        ..ActionConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activations_beyond_the_instance_slots_wait_for_one() {
    let engine = engine(2);
    let action = prepare_ok(&engine, artifacts::SLEEP, ActionConfig::default()).await;
    let runs: Vec<_> = (0..12)
        .map(|_| {
            let action = action.clone();
            tokio::spawn(async move {
                action
                    .run(activation(json!({"ms": 20}), Duration::from_secs(60)))
                    .await
                    .outcome
            })
        })
        .collect();
    for run in runs {
        assert_eq!(run.await.unwrap(), Ok(json!({"slept_ms": 20})));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_slot_ends_at_the_deadline_with_the_timeout_sentence() {
    let engine = engine(1);
    let action = prepare_ok(&engine, artifacts::SLEEP, ActionConfig::default()).await;
    let holder = tokio::spawn({
        let action = action.clone();
        async move {
            action
                .run(activation(json!({"ms": 1500}), Duration::from_secs(60)))
                .await
                .outcome
        }
    });
    // Wait until the holder has taken the only slot.
    while engine.inner.slots.available_permits() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waiting = action
        .run(activation(json!({"ms": 1}), Duration::from_millis(200)))
        .await;
    assert_eq!(waiting.outcome, Err(RunError::Timeout { limit_ms: 200 }));
    assert_eq!(
        waiting.outcome.unwrap_err().to_string(),
        "The action exceeded its time limits of 200 milliseconds."
    );
    assert_eq!(holder.await.unwrap(), Ok(json!({"slept_ms": 1500})));
    // The slot is free again.
    let next = action
        .run(activation(json!({"ms": 1}), Duration::from_secs(60)))
        .await;
    assert_eq!(next.outcome, Ok(json!({"slept_ms": 1})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sleeping_activations_are_all_in_flight_at_once() {
    // 10,000 slots, two worker threads, no thread per activation: every activation is asleep
    // in the host at the same moment.
    let engine = engine(10_000);
    let action = prepare_ok(&engine, artifacts::SLEEP, ActionConfig::default()).await;
    let runs: Vec<_> = (0..10_000)
        .map(|_| {
            let action = action.clone();
            tokio::spawn(async move {
                action
                    .run(activation(json!({"ms": 5000}), Duration::from_secs(120)))
                    .await
                    .outcome
            })
        })
        .collect();
    let mut most_in_use = 0;
    while most_in_use < 10_000 && !runs.iter().all(|run| run.is_finished()) {
        most_in_use = most_in_use.max(engine.instances_in_use());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(most_in_use, 10_000, "all 10,000 held a slot at once");
    for run in runs {
        assert_eq!(run.await.unwrap(), Ok(json!({"slept_ms": 5000})));
    }
    assert_eq!(engine.instances_in_use(), 0);
}

#[tokio::test]
async fn a_huge_sdk_result_is_refused_by_its_length() {
    let engine = engine(4);
    let limits = Limits {
        memory_bytes: 256 * MIB,
        ..Limits::default()
    };
    let action = prepare_ok(&engine, artifacts::wat::BIG_RESULT, with_limits(limits)).await;
    let completion = action
        .run(activation(json!({"big": true}), Duration::from_secs(60)))
        .await;
    assert_eq!(
        completion.outcome,
        Err(RunError::ResultTooLarge {
            size: 100 * MIB,
            limit: MIB
        })
    );
    let completion = action
        .run(activation(json!({}), Duration::from_secs(60)))
        .await;
    assert_eq!(completion.outcome, Ok(json!({})));
    // A smaller limit is the one named.
    let limits = Limits {
        memory_bytes: 256 * MIB,
        result_bytes: 1000,
        ..Limits::default()
    };
    let action = prepare_ok(&engine, artifacts::ECHO, with_limits(limits)).await;
    let big = json!({"text": "x".repeat(2000)});
    let size = serde_json::to_vec(&big).unwrap().len() as u64;
    let completion = action.run(activation(big, Duration::from_secs(60))).await;
    assert_eq!(
        completion.outcome,
        Err(RunError::ResultTooLarge { size, limit: 1000 })
    );
    let small = json!({"text": "x"});
    let completion = action
        .run(activation(small.clone(), Duration::from_secs(60)))
        .await;
    assert_eq!(completion.outcome, Ok(small));
}

#[tokio::test]
async fn a_huge_stdio_result_line_is_refused_by_its_length() {
    // Prints 2 MiB of 'x' as its only line.
    let wat = r#"
        (module
          (import "wasi_snapshot_preview1" "fd_write"
            (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 40)
          (func (export "_start")
            (memory.fill (i32.const 65536) (i32.const 120) (i32.const 2097152))
            (i32.store (i32.const 0) (i32.const 65536))
            (i32.store (i32.const 4) (i32.const 2097152))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
    "#;
    let engine = engine(4);
    let action = prepare(
        &engine,
        wat::parse_str(wat).unwrap(),
        ActionConfig::default(),
    )
    .await
    .unwrap();
    let completion = action
        .run(activation(json!({}), Duration::from_secs(60)))
        .await;
    assert_eq!(
        completion.outcome,
        Err(RunError::ResultTooLarge {
            size: 2 * MIB,
            limit: MIB
        })
    );
}

#[tokio::test]
async fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    let engine = engine(4);
    let limits = Limits {
        memory_bytes: 128 * MIB,
        ..Limits::default()
    };
    let action = prepare_ok(&engine, artifacts::wat::MEMORY_BOMB, with_limits(limits)).await;
    for _ in 0..2 {
        let completion = action
            .run(activation(json!({"bomb": true}), Duration::from_secs(60)))
            .await;
        assert_eq!(
            completion.outcome,
            Err(RunError::MemoryLimit { limit_mb: 128 })
        );
    }
    let completion = action
        .run(activation(json!({}), Duration::from_secs(60)))
        .await;
    assert_eq!(completion.outcome, Ok(json!({})));
    // A Rust action whose allocation fails aborts; that is the memory limit too.
    let action = prepare_ok(&engine, artifacts::ALLOC, with_limits(limits)).await;
    let completion = action
        .run(activation(json!({"mb": 200}), Duration::from_secs(60)))
        .await;
    assert_eq!(
        completion.outcome,
        Err(RunError::MemoryLimit { limit_mb: 128 })
    );
    let completion = action
        .run(activation(json!({"mb": 8}), Duration::from_secs(60)))
        .await;
    assert_eq!(completion.outcome.unwrap()["allocated_mb"], 8);
}

#[tokio::test]
async fn a_stack_overflow_is_a_trap_that_names_the_stack() {
    let engine = engine(4);
    let action = prepare_ok(
        &engine,
        artifacts::wat::STACK_OVERFLOW,
        ActionConfig::default(),
    )
    .await;
    let completion = action
        .run(activation(
            json!({"recurse": true}),
            Duration::from_secs(60),
        ))
        .await;
    let error = completion.outcome.unwrap_err();
    assert!(
        matches!(&error, RunError::Trap { trap } if trap.contains("call stack exhausted")),
        "{error:?}"
    );
    let completion = action
        .run(activation(json!({}), Duration::from_secs(60)))
        .await;
    assert_eq!(completion.outcome, Ok(json!({})));
}

#[tokio::test]
async fn http_get_is_linked_only_for_actions_granted_net_access() {
    let engine = engine(4);
    let refused = prepare(
        &engine,
        artifacts::read(artifacts::NET),
        ActionConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&refused, InitError::UnknownImports(names) if names == &["http.get"]),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("http.get"), "{refused}");

    let action = prepare_ok(&engine, artifacts::NET, net_access()).await;
    let completion = action
        .run(activation(
            json!({"url": "https://example.com/a"}),
            Duration::from_secs(60),
        ))
        .await;
    let body = completion.outcome.unwrap()["body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"url": "https://example.com/a", "simulated": true})
    );
    let completion = action
        .run(activation(
            json!({"url": "ftp://example.com/"}),
            Duration::from_secs(60),
        ))
        .await;
    assert_eq!(
        completion.outcome,
        Ok(
            json!({"error": "http.get takes an http:// or https:// URL, not \"ftp://example.com/\"."})
        )
    );
}

#[test]
fn waiting_in_http_get_holds_no_thread() {
    // One thread runs everything: were the wait blocking, 100 activations would take 30 s.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = engine(200);
        let action = prepare_ok(&engine, artifacts::NET, net_access()).await;
        let started = Instant::now();
        let runs: Vec<_> = (0..100)
            .map(|_| {
                let action = action.clone();
                tokio::spawn(async move {
                    action
                        .run(activation(json!({}), Duration::from_secs(60)))
                        .await
                        .outcome
                })
            })
            .collect();
        for run in runs {
            assert!(run.await.unwrap().is_ok());
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "took {:?}",
            started.elapsed()
        );
    });
}

#[tokio::test]
async fn identical_code_is_compiled_once_and_kept_while_used_or_recent() {
    let mut config = WasmtimeConfig::default();
    config.kept_modules(1);
    let engine = Wasmtime::new(config).expect("the engine builds");
    let first = prepare_ok(&engine, artifacts::ADD, ActionConfig::default()).await;
    let second = prepare_ok(&engine, artifacts::ADD, with_limits(Limits::default())).await;
    assert_eq!((engine.module_loads(), engine.cached_modules()), (1, 1));
    let other = prepare_ok(&engine, artifacts::ECHO, ActionConfig::default()).await;
    assert_eq!((engine.module_loads(), engine.cached_modules()), (2, 2));

    drop(first);
    let answer = second
        .run(activation(
            json!({"param1": 1, "param2": 2}),
            Duration::from_secs(5),
        ))
        .await;
    assert_eq!(answer.outcome, Ok(json!({"result": 3})), "still prepared");
    drop((second, other));
    // Only the most recent (echo) outlives its actions; add's compiled code is freed.
    assert_eq!(engine.cached_modules(), 1);
    let _echo = prepare_ok(&engine, artifacts::ECHO, ActionConfig::default()).await;
    assert_eq!(engine.module_loads(), 2, "echo came from the cache");
    let _add = prepare_ok(&engine, artifacts::ADD, ActionConfig::default()).await;
    assert_eq!(engine.module_loads(), 3, "add was compiled anew");
}

#[tokio::test]
async fn a_table_bomb_is_stopped_at_the_table_cap_as_the_memory_limit() {
    let engine = engine(10);
    let action = prepare_ok(&engine, artifacts::wat::TABLE_BOMB, ActionConfig::default()).await;
    let completion = action
        .run(activation(json!({}), Duration::from_secs(60)))
        .await;
    assert_eq!(
        completion.outcome,
        Err(RunError::MemoryLimit { limit_mb: 256 })
    );
}
