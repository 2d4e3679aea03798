//! The conformance suite every engine is held to, run on WAMR with its gaps, and what is WAMR's
//! own: which imports it links, who runs a reactor's `_initialize`, the memory limit on an
//! initial memory, where linear memories come from, output floods, stdio lent again, and
//! `http`.`get`'s own checks.

use crate::{Wamr, WamrEngine};
use ow_common::code::ModuleCode;
use ow_common::host::abi::GuestAbi;
use ow_common::host::capture::LogCapture;
use ow_common::host::slots::InstanceSlots;
use ow_common::host::{Engine, Execution, GuestStop, LinkedModule};
use ow_common::protocol::sentences;
use ow_common::runtime::{
    ActionConfig, Activation, Completion, EngineConfig, InitError, Limits, PreparedAction,
    RunError, WasmRuntime,
};
use ow_common::testing::{ow_wasm_action_artifacts as artifacts, runtime};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

ow_common::conformance_suite! {
    engine: |config| Arc::new(Wamr::start(config).expect("the engine builds")),
    stops_late: [
        a_wait_in_the_host_stops_at_its_deadline => {
            by_ms: 1000,
            why: "WAMR sleeps in one-second steps and checks for the stop between them",
        },
    ],
    gaps: [
        a_module_cached_on_disk_loads_without_a_compile_and_a_bad_entry_is_compiled_again => {
            why: "WAMR has no serialized form of a loaded module (its AOT format needs \
                  wamrc), so nothing is cached on disk; loading is its whole compile, a few \
                  milliseconds",
            // Compiled, and nothing written.
            fails_with: "compiled and written\n  left: (1, 0)",
        },
        table_growth_counts_against_the_memory_limit => {
            why: "WAMR caps a table at its own size (1024 elements without a declared \
                  maximum), has no API to set the cap and reports no refused table growth",
            // The module traps on the growth WAMR refused, which is not read as the limit.
            fails_with: "left: Err(Trap { trap: \"unreachable\" })",
        },
        sleeping_activations_hold_no_thread => {
            why: "WAMR cannot suspend a call: every sleeping activation holds one of the \
                  engine's at most 512 OS threads (and its five stdio file descriptors) until \
                  it wakes",
            fails_with: "waiting activations held threads",
        },
        waiting_in_http_get_holds_no_thread => {
            why: "WAMR cannot suspend a native: every activation waiting in http.get holds an \
                  OS thread of the engine until its answer comes",
            fails_with: "waiting activations held threads",
        },
    ],
}

fn engine() -> Wamr {
    Wamr::start(&EngineConfig::default()).expect("the engine builds")
}

async fn prepare(
    engine: &Wamr,
    wat: &str,
    config: ActionConfig,
) -> Result<Arc<dyn PreparedAction>, InitError> {
    let wasm = wat::parse_str(wat).expect("the test module is valid WAT");
    engine.prepare(ModuleCode::new(wasm), config).await
}

async fn run(action: &Arc<dyn PreparedAction>, params: Value, time_limit: Duration) -> Completion {
    action
        .run(Activation {
            params,
            env: Vec::new(),
            deadline: Instant::now() + time_limit,
            time_limit,
        })
        .await
}

/// Every function of WASI preview 1, with its type: what every action may import.
const WASI_P1_IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "args_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_advise" (func (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_allocate" (func (param i32 i64 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_datasync" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_flags" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_set_rights" (func (param i32 i64 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_times" (func (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pread" (func (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_sync" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_tell" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times" (func (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_readlink" (func (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
  (import "wasi_snapshot_preview1" "proc_raise" (func (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_recv" (func (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_shutdown" (func (param i32 i32) (result i32)))
"#;

/// A command importing `imports` that does nothing.
fn command_importing(imports: &str) -> String {
    format!(r#"(module {imports} (memory (export "memory") 1) (func (export "_start")))"#)
}

#[test]
fn wamr_links_all_of_wasi_preview_1_and_http_get_and_refuses_other_types() {
    use ow_common::host::admission::WASI_P1_FUNCTIONS;
    assert_eq!(
        WASI_P1_IMPORTS.matches("(import").count(),
        WASI_P1_FUNCTIONS.len()
    );
    runtime().block_on(async {
        let engine = engine();
        let http_get = r#"(import "http" "get" (func (param i32 i32) (result i64)))"#;
        let net_access = ActionConfig {
            capabilities: ow_common::capabilities::Capabilities {
                net_access: true,
                ..Default::default()
            },
            ..ActionConfig::default()
        };
        let everything = command_importing(&format!("{WASI_P1_IMPORTS}{http_get}"));
        let action = prepare(&engine, &everything, net_access.clone())
            .await
            .expect("WAMR provides every WASI preview 1 function and http.get");
        let completion = run(&action, json!({}), Duration::from_secs(60)).await;
        assert_eq!(completion.outcome, Err(RunError::NoValidResponse));

        // A name the executor provides, with another type, is refused with the type.
        let wrong_exit = command_importing(
            r#"(import "wasi_snapshot_preview1" "proc_exit" (func (param i64)))"#,
        );
        match prepare(&engine, &wrong_exit, ActionConfig::default()).await {
            Err(InitError::InvalidModule(why)) => assert_eq!(
                why,
                "it imports wasi_snapshot_preview1.proc_exit with the type (i64) -> (), which \
                 is not the type the executor provides"
            ),
            other => panic!("{other:?}"),
        }
        let wrong_get =
            command_importing(r#"(import "http" "get" (func (param i32) (result i64)))"#);
        assert!(matches!(
            prepare(&engine, &wrong_get, net_access).await,
            Err(InitError::InvalidModule(_))
        ));
        // Only functions are provided, whatever the name.
        let global = command_importing(r#"(import "wasi_snapshot_preview1" "fd_write" (global i32))"#);
        match prepare(&engine, &global, ActionConfig::default()).await {
            Err(InitError::InvalidModule(why)) => assert_eq!(
                why,
                "it imports wasi_snapshot_preview1.fd_write as a global, and the executor \
                 provides only functions there"
            ),
            other => panic!("{other:?}"),
        }
        // WAMR links preview 0 and its socket extensions; the executor does not offer them.
        let extensions = command_importing(
            r#"(import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
               (import "wasi_snapshot_preview1" "sock_open" (func (param i32 i32 i32 i32) (result i32)))"#,
        );
        assert_eq!(
            prepare(&engine, &extensions, ActionConfig::default()).await.unwrap_err(),
            InitError::UnknownImports(vec![
                "wasi_unstable.fd_write".to_owned(),
                "wasi_snapshot_preview1.sock_open".to_owned()
            ])
        );
    });
}

/// An SDK reactor counting its `_initialize` calls and answering `{"n": <count>}`.
fn counting_reactor(extra_import: &str) -> String {
    format!(
        r#"(module
          {extra_import}
          (memory (export "memory") 1)
          (global $inits (mut i32) (i32.const 0))
          (data (i32.const 2048) "{{\22n\22:0}}")
          (func (export "_initialize")
            (global.set $inits (i32.add (global.get $inits) (i32.const 1))))
          (func (export "__ow_alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "__ow_main") (param i32 i32) (result i64)
            (i32.store8 (i32.const 2053) (i32.add (i32.const 48) (global.get $inits)))
            (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 7))))"#
    )
}

/// One WASI import, which makes a test module a WASI module to WAMR.
const WASI_IMPORT: &str = r#"(import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))"#;

#[test]
fn a_reactor_is_initialised_once_whether_it_imports_wasi_or_not() {
    runtime().block_on(async {
        let engine = engine();
        // With a WASI import `_initialize` is a start-up call, as WAMR makes it; without, the
        // ABI calls it.
        for import in [WASI_IMPORT, ""] {
            let action = prepare(&engine, &counting_reactor(import), ActionConfig::default())
                .await
                .expect("the reactor prepares");
            for _ in 0..2 {
                let completion = run(&action, json!({}), Duration::from_secs(60)).await;
                assert_eq!(
                    completion.outcome,
                    Ok(json!({"n": 1})),
                    "import: {import:?}"
                );
            }
        }
    });
}

/// An SDK reactor whose start function, `_initialize` and `$extra` each write their digit (1, 2
/// and 3) at the next place of its answer, `{"order":"___"}`: the answer shows which ran, in
/// which order and how often (a fourth write would break the JSON).
fn start_up_recorder(import: &str, extra: &str) -> String {
    format!(
        r#"(module
          {import}
          (memory (export "memory") 1)
          (global $at (mut i32) (i32.const 2058))
          (data (i32.const 2048) "{{\22order\22:\22___\22}}")
          (func $record (param $digit i32)
            (i32.store8 (global.get $at) (local.get $digit))
            (global.set $at (i32.add (global.get $at) (i32.const 1))))
          (func $start (call $record (i32.const 49)))
          (start $start)
          (func (export "_initialize") (call $record (i32.const 50)))
          (func (export "{extra}") (call $record (i32.const 51)))
          (func (export "__ow_alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "__ow_main") (param i32 i32) (result i64)
            (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 15))))"#
    )
}

#[test]
fn start_up_code_runs_once_per_instance_in_wamrs_order_before_the_entry_point() {
    runtime().block_on(async {
        let engine = engine();
        // The start function, then what WAMR would call while instantiating: `_initialize` in
        // a module importing WASI, `__post_instantiate` in any, `__wasm_call_ctors` in one
        // importing no WASI, where the ABI calls `_initialize` after them.
        for (import, extra, order) in [
            (WASI_IMPORT, "__post_instantiate", "123"),
            ("", "__post_instantiate", "132"),
            ("", "__wasm_call_ctors", "132"),
            // Not start-up code here: it never runs.
            (WASI_IMPORT, "__wasm_call_ctors", "12_"),
        ] {
            let module = start_up_recorder(import, extra);
            let action = prepare(&engine, &module, ActionConfig::default())
                .await
                .expect("the module prepares");
            for _ in 0..2 {
                assert_eq!(
                    run(&action, json!({}), Duration::from_secs(60))
                        .await
                        .outcome,
                    Ok(json!({"order": order})),
                    "import: {import:?}, {extra}"
                );
            }
        }
    });
}

#[test]
fn the_start_functions_export_is_not_the_modules_and_a_trap_or_an_exit_there_is_one() {
    runtime().block_on(async {
        let engine = engine();
        let module = r#"(module
          (func $start unreachable)
          (start $start)
          (func (export "add") (param i32 i32) (result i32)
            (i32.add (local.get 0) (local.get 1))))"#;
        let hidden = ActionConfig {
            main: "__ow_wamr_start".to_owned(),
            ..ActionConfig::default()
        };
        assert_eq!(
            prepare(&engine, module, hidden).await.unwrap_err(),
            InitError::NoEntryPoint {
                main: "__ow_wamr_start".to_owned(),
                functions: vec!["add".to_owned()],
            }
        );
        let add = ActionConfig {
            main: "add".to_owned(),
            ..ActionConfig::default()
        };
        let action = prepare(&engine, module, add).await.expect("it prepares");
        let completion = run(&action, json!({"args": [1, 2]}), Duration::from_secs(60)).await;
        assert!(
            matches!(&completion.outcome, Err(RunError::Trap { trap }) if trap == "unreachable"),
            "{completion:?}"
        );
        let exits = r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func $start (call $exit (i32.const 3)))
          (start $start)
          (func (export "_start")))"#;
        let action = prepare(&engine, exits, ActionConfig::default())
            .await
            .expect("it prepares");
        assert_eq!(
            run(&action, json!({}), Duration::from_secs(60))
                .await
                .outcome,
            Err(RunError::Exit { code: 3 })
        );
    });
}

#[test]
fn a_loop_in_any_start_up_export_stops_at_its_deadline() {
    runtime().block_on(async {
        let engine = engine();
        for (import, export) in [
            (WASI_IMPORT, "_initialize"),
            ("", "__post_instantiate"),
            ("", "__wasm_call_ctors"),
        ] {
            let module = format!(
                r#"(module {import}
                  (memory (export "memory") 1)
                  (func (export "{export}") (loop $again (br $again)))
                  (func (export "_start")))"#
            );
            let action = prepare(&engine, &module, ActionConfig::default())
                .await
                .expect("it prepares");
            let completion = run(&action, json!({}), Duration::from_millis(300)).await;
            assert_eq!(
                completion.outcome,
                Err(RunError::Timeout { limit_ms: 300 }),
                "{export}"
            );
        }
        // Each instance was stopped, not left spinning.
        let bound = Instant::now() + Duration::from_secs(30);
        while engine.stats().instances_in_use > 0 {
            assert!(Instant::now() < bound, "an instance still runs");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
}

/// An SDK action with a memory of `pages` that answers its parameters.
fn sdk_echo_with_pages(pages: u32) -> String {
    format!(
        r#"(module
          (memory (export "memory") {pages})
          (func (export "__ow_alloc") (param i32) (result i32) (i32.const 1024))
          (func (export "__ow_main") (param i32 i32) (result i64)
            (i64.or (i64.shl (i64.extend_i32_u (local.get 0)) (i64.const 32))
                    (i64.extend_i32_u (local.get 1)))))"#
    )
}

#[test]
fn an_initial_memory_over_the_limit_is_the_memory_limit() {
    runtime().block_on(async {
        let engine = engine();
        let limits = Limits {
            memory_bytes: 1024 * 1024,
            ..Limits::default()
        };
        let module = &sdk_echo_with_pages(17);
        let config = ActionConfig {
            limits,
            ..ActionConfig::default()
        };
        let action = prepare(&engine, module, config).await.expect("it prepares");
        assert_eq!(
            run(&action, json!({}), Duration::from_secs(60))
                .await
                .outcome,
            Err(RunError::MemoryLimit { limit_mb: 1 })
        );
        // Within the limit it runs.
        let action = prepare(&engine, module, ActionConfig::default())
            .await
            .unwrap();
        assert_eq!(
            run(&action, json!({}), Duration::from_secs(60))
                .await
                .outcome,
            Ok(json!({}))
        );
    });
}

#[test]
fn linear_memories_are_lent_by_the_crates_allocator() {
    runtime().block_on(async {
        let engine = engine();
        let action = prepare(&engine, &sdk_echo_with_pages(2), ActionConfig::default())
            .await
            .expect("it prepares");
        // Other tests lend memories at the same time; the count only grows.
        let before = crate::ffi::linear_memory_lends();
        for _ in 0..3 {
            let completion = run(&action, json!({}), Duration::from_secs(60)).await;
            assert_eq!(completion.outcome, Ok(json!({})));
        }
        assert!(crate::ffi::linear_memory_lends() - before >= 3);
    });
}

/// An SDK action that sets the file status flags of its stdin, stdout and stderr to append and
/// non-blocking (5), checks that they read so, and answers its parameters.
const SETS_OUTPUT_FLAGS: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_fdstat_set_flags" (func $set (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $set_and_check (param $fd i32)
    (if (call $set (local.get $fd) (i32.const 5)) (then unreachable))
    (if (call $get (local.get $fd) (i32.const 64)) (then unreachable))
    (if (i32.ne (i32.load16_u (i32.const 66)) (i32.const 5)) (then unreachable)))
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "__ow_main") (param i32 i32) (result i64)
    (call $set_and_check (i32.const 0))
    (call $set_and_check (i32.const 1))
    (call $set_and_check (i32.const 2))
    (i64.or (i64.shl (i64.extend_i32_u (local.get 0)) (i64.const 32))
            (i64.extend_i32_u (local.get 1)))))"#;

/// An SDK action that answers the file status flags of its stdin, stdout and stderr, each a
/// digit.
const READS_OUTPUT_FLAGS: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 128) "{\"in\":0,\"out\":0,\"err\":0}")
  (func $digit (param $fd i32) (param $at i32)
    (if (call $get (local.get $fd) (i32.const 64)) (then unreachable))
    (i32.store8 (local.get $at)
      (i32.add (i32.const 48) (i32.load16_u (i32.const 66)))))
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "__ow_main") (param i32 i32) (result i64)
    (call $digit (i32.const 0) (i32.const 134))
    (call $digit (i32.const 1) (i32.const 142))
    (call $digit (i32.const 2) (i32.const 150))
    (i64.or (i64.shl (i64.const 128) (i64.const 32)) (i64.const 24))))"#;

#[test]
fn stdio_lent_again_does_not_keep_the_last_guests_flags() {
    runtime().block_on(async {
        let engine = engine();
        let sets = prepare(&engine, SETS_OUTPUT_FLAGS, ActionConfig::default())
            .await
            .expect("it prepares");
        let reads = prepare(&engine, READS_OUTPUT_FLAGS, ActionConfig::default())
            .await
            .expect("it prepares");
        let first = run(&reads, json!({}), Duration::from_secs(60)).await;
        assert_eq!(first.outcome, Ok(json!({"in": 0, "out": 0, "err": 0})));
        let set = run(&sets, json!({}), Duration::from_secs(60)).await;
        assert_eq!(set.outcome, Ok(json!({})));
        // The engine lends the stdio given back last: the one the flags were set on.
        let after = run(&reads, json!({}), Duration::from_secs(60)).await;
        assert_eq!(after.outcome, Ok(json!({"in": 0, "out": 0, "err": 0})));
    });
}

#[test]
fn only_a_module_importing_fd_fdstat_set_flags_can_set_its_stdio_flags() {
    let engine = engine();
    let wamr: &WamrEngine = engine.engine();
    let sets_fd_flags = |wat: &str| {
        let wasm = wat::parse_str(wat).expect("the test module is valid WAT");
        wamr.compile(&wasm).expect("it loads").sets_fd_flags()
    };
    assert!(sets_fd_flags(SETS_OUTPUT_FLAGS));
    assert!(!sets_fd_flags(READS_OUTPUT_FLAGS));
}

#[test]
fn a_flood_of_output_is_drained_and_dropped_past_the_log_limit() {
    // 512 writes of 64 KiB (32 MiB) of `x` lines, then the result line.
    let flood = r#"(module
      (import "wasi_snapshot_preview1" "fd_write"
        (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 3)
      (data (i32.const 0) "\00\00\01\00\00\00\01\00")
      (data (i32.const 16) "\00\00\02\00\0c\00\00\00")
      (data (i32.const 131072) "{\22ok\22:true}\0a")
      (func (export "_start") (local $left i32)
        (memory.fill (i32.const 65536) (i32.const 120) (i32.const 65536))
        (i32.store8 (i32.const 131071) (i32.const 10))
        (local.set $left (i32.const 512))
        (loop $again
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
          (local.set $left (i32.sub (local.get $left) (i32.const 1)))
          (br_if $again (local.get $left)))
        (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 8)))))"#;
    runtime().block_on(async {
        let engine = engine();
        let limits = Limits {
            log_bytes: 1000,
            ..Limits::default()
        };
        let config = ActionConfig {
            limits,
            ..ActionConfig::default()
        };
        let action = prepare(&engine, flood, config).await.expect("it prepares");
        let completion = run(&action, json!({}), Duration::from_secs(60)).await;
        assert_eq!(completion.outcome, Ok(json!({"ok": true})));
        assert_eq!(completion.logs.stdout, vec![b'x'; 1000]);
        assert_eq!(
            String::from_utf8(completion.logs.stderr).unwrap(),
            format!("{}\n", sentences::logs_truncated(1000))
        );
    });
}

#[test]
fn http_get_stops_at_the_deadline_and_its_native_checks_the_grant_itself() {
    runtime().block_on(async {
        let engine = engine();
        let net_access = ActionConfig {
            capabilities: ow_common::capabilities::Capabilities {
                net_access: true,
                ..Default::default()
            },
            ..ActionConfig::default()
        };
        let wasm = artifacts::read(artifacts::NET);
        let action = engine
            .prepare(ModuleCode::new(wasm.clone()), net_access)
            .await
            .expect("net prepares with net_access");
        let completion = run(&action, json!({}), Duration::from_millis(100)).await;
        assert_eq!(completion.outcome, Err(RunError::Timeout { limit_ms: 100 }));

        // Linked past the host's import check, without the grant: the native refuses.
        let wamr: &WamrEngine = engine.engine();
        let module = Arc::new(wamr.compile(&wasm).expect("net loads"));
        let guest_abi = GuestAbi::Sdk { reactor: false };
        let linked = wamr
            .link(&module, &guest_abi, &ActionConfig::default())
            .expect("it links");
        let slots = InstanceSlots::new(1);
        let deadline = Instant::now() + Duration::from_secs(60);
        let end = linked
            .execute(Execution {
                guest_abi,
                result_limit: 1024 * 1024,
                params: b"{}".to_vec(),
                stdin: false,
                args: Vec::new(),
                env: Vec::new(),
                capture: LogCapture::new(1024, 1024 * 1024),
                deadline,
                slot: slots.acquire_until(deadline).await.expect("a free slot"),
            })
            .await;
        assert_eq!(
            end.result,
            Err(GuestStop::Trap(
                "http.get is not granted to this action: it needs the net_access annotation"
                    .to_owned()
            ))
        );
    });
}

#[test]
fn precompiling_for_wamr_is_refused_with_what_to_send_instead() {
    let refused = crate::precompile(b"\0asm\x01\0\0\0")
        .unwrap_err()
        .to_string();
    assert!(refused.contains("wamrc"), "{refused}");
    assert!(
        refused.contains("ow-precompiler --engine none"),
        "{refused}"
    );
}
