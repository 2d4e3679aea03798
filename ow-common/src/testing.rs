//! The conformance suite every engine is held to: one set of cases over any [`WasmRuntime`],
//! run by each engine crate with [`conformance_suite!`](crate::conformance_suite).
//!
//! A case an engine truly cannot pass is a *gap*: named in that engine's invocation of the
//! macro with the reason and the failure it expects, and still run. A gap must fail, and for
//! its documented reason only: one that passes, or fails otherwise, fails the suite, so the
//! list stays true.

use crate::cache::CachePolicy;
use crate::capabilities::Capabilities;
use crate::code::{ModuleCode, ModuleFormat};
use crate::protocol::sentences;
use crate::runtime::{
    ActionConfig, Activation, BoxFuture, CompilePlace, CompilerCommand, Completion,
    DiskCacheConfig, EngineConfig, InitError, Limits, PreparedAction, RunError, WasmRuntime,
};
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use ow_wasm_action_artifacts;

/// Builds an engine with a configuration: what an engine crate gives the suite.
pub type EngineFactory = fn(&EngineConfig) -> Arc<dyn WasmRuntime>;

/// A case an engine cannot pass, why, and how it fails.
#[derive(Debug, Clone, Copy)]
pub struct Gap {
    /// The case's name.
    pub case: &'static str,
    /// Why the engine cannot pass it.
    pub why: &'static str,
    /// Part of the panic message the case fails with on this engine: the failure that `why`
    /// explains. Failing with any other message fails the suite.
    pub fails_with: &'static str,
}

/// How long after its deadline an engine has to have stopped an instance (its slot released)
/// that was still running then: generous for a loaded two-core machine, for this is the
/// safety a user sees (a runaway action stops), not a performance figure. An engine may be
/// given more for a case, with its reason ([`LateStop`]).
pub const STOP_MARGIN: Duration = Duration::from_millis(250);

/// A case in which an engine may stop an instance later than [`STOP_MARGIN`] after its
/// deadline, by how much, and why: a documented allowance, not a gap (the instance stops).
#[derive(Debug, Clone, Copy)]
pub struct LateStop {
    /// The case's name.
    pub case: &'static str,
    /// How much later than [`STOP_MARGIN`] it may stop.
    pub by: Duration,
    /// Why the engine stops it late.
    pub why: &'static str,
}

/// What a case is given: the engine under test, and how long after a deadline the engine
/// has to have stopped an instance in this case.
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    /// Builds the engine.
    pub factory: EngineFactory,
    /// [`STOP_MARGIN`], plus the engine's [`LateStop`] allowance for the case.
    pub stop_margin: Duration,
}

/// One case: given the engine under test, panics when the engine misbehaves.
pub type Case = fn(Subject) -> BoxFuture<'static, ()>;

/// A fresh tokio runtime with two workers (what a small CI machine has), time and I/O: what
/// every case runs on, and what an engine crate's own async tests use.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the test runtime starts")
}

/// The cases that count the process's threads. Each runs in a process of its own (the test
/// binary run again for that case alone), so that no other test's threads, started or ended
/// meanwhile, are counted: the count is the case's own.
const RUN_ALONE: &[&str] = &[
    "sleeping_activations_hold_no_thread",
    "waiting_in_http_get_holds_no_thread",
];

/// Set in the process that runs a [`RUN_ALONE`] case alone, to that case's name.
const ALONE_VAR: &str = "OW_CONFORMANCE_CASE_ALONE";

/// The engine's gaps and late-stop allowances, as its invocation of
/// [`conformance_suite!`](crate::conformance_suite) lists them.
#[derive(Debug, Clone, Copy)]
pub struct Exceptions {
    /// The cases it cannot pass.
    pub gaps: &'static [Gap],
    /// The cases in which it may stop an instance late.
    pub late_stops: &'static [LateStop],
}

/// Runs one case of the test module `module` on a fresh two-worker runtime, in a process of
/// its own when it counts threads. A gap must fail as it says; anything else must pass.
pub fn run_case(
    module: &str,
    name: &str,
    exceptions: Exceptions,
    factory: EngineFactory,
    case: Case,
) {
    if RUN_ALONE.contains(&name) && std::env::var(ALONE_VAR).as_deref() != Ok(name) {
        return run_alone(module, name);
    }
    let late_by = exceptions
        .late_stops
        .iter()
        .find(|late| late.case == name)
        .map_or(Duration::ZERO, |late| late.by);
    let subject = Subject {
        factory,
        stop_margin: STOP_MARGIN + late_by,
    };
    let gaps = exceptions.gaps;
    let runtime = runtime();
    let outcome = runtime.block_on(async { tokio::spawn(case(subject)).await });
    // Blocking work a failed case left behind is not waited for.
    runtime.shutdown_background();
    match (gaps.iter().find(|gap| gap.case == name), outcome) {
        (None, Ok(())) => {}
        (None, Err(failure)) => std::panic::resume_unwind(failure.into_panic()),
        (Some(gap), Err(failure)) if failure.is_panic() => {
            let payload = failure.into_panic();
            let message = panic_message(&*payload);
            assert!(
                message.contains(gap.fails_with),
                "{name} is listed as a gap of this engine ({}) failing with {:?}, but it failed \
                 otherwise: {message}",
                gap.why,
                gap.fails_with
            );
        }
        (Some(gap), Err(failure)) => panic!(
            "{name} is listed as a gap of this engine ({}), but it did not run to its end: \
             {failure}",
            gap.why
        ),
        (Some(gap), Ok(())) => panic!(
            "{name} is listed as a gap of this engine ({}), but it passed: remove the gap",
            gap.why
        ),
    }
}

/// Runs the test of case `name` in `module` (`ow_wamr::tests`) alone in a new process of the
/// same test binary, which applies the gaps, and fails as it fails.
fn run_alone(module: &str, name: &str) {
    let test = match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_owned(),
    };
    let binary = std::env::current_exe().expect("the test binary knows its path");
    let output = std::process::Command::new(binary)
        .args([test.as_str(), "--exact", "--test-threads=1"])
        .env(ALONE_VAR, name)
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{test}, run alone in a process of its own, did not pass ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// The message a panic carries (`panic!` and the `assert` macros make a string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(a panic without a message)")
}

/// Expands to one `#[test]` per conformance case, run against the engine `engine` builds.
///
/// ```text
/// ow_common::conformance_suite! {
///     engine: |config| std::sync::Arc::new(MyEngine::start(config).unwrap()),
///     // Optional.
///     stops_late: [
///         a_wait_in_the_host_stops_at_its_deadline => {
///             by_ms: 1000,
///             why: "the engine checks for the stop once a second",
///         },
///     ],
///     gaps: [
///         table_growth_counts_against_the_memory_limit => {
///             why: "the engine cannot cap tables",
///             fails_with: "left: Err(Trap {",
///         },
///     ],
/// }
/// ```
#[macro_export]
macro_rules! conformance_suite {
    (
        engine: $factory:expr,
        $(stops_late: [
            $($late:ident => { by_ms: $by_ms:expr, why: $late_why:expr $(,)? }),* $(,)?
        ],)?
        gaps: [$($gap:ident => { why: $why:expr, fails_with: $fails_with:expr $(,)? }),* $(,)?]
        $(,)?
    ) => {
        /// The cases this engine cannot pass, why and the failure each shows; the cases in
        /// which it may stop an instance late, by how much and why.
        const CONFORMANCE_EXCEPTIONS: $crate::testing::Exceptions = $crate::testing::Exceptions {
            gaps: &[$(
                $crate::testing::Gap { case: stringify!($gap), why: $why, fails_with: $fails_with }
            ),*],
            late_stops: &[$($(
                $crate::testing::LateStop {
                    case: stringify!($late),
                    by: ::std::time::Duration::from_millis($by_ms),
                    why: $late_why,
                }
            ),*)?],
        };
        $crate::conformance_suite!(@cases ($factory)
            sdk_actions_answer_objects_and_arrays_verbatim,
            stdio_actions_read_stdin_and_answer_on_their_last_stdout_line,
            an_sdk_action_reads_an_empty_stdin_to_its_end_at_once,
            wasm_simd_code_runs_where_the_engine_says_it_does,
            an_exported_function_is_called_with_the_parameters_args,
            args_that_do_not_fit_the_export_are_an_error_naming_what_it_takes,
            a_main_naming_no_callable_export_is_refused_at_prepare,
            every_activation_gets_a_fresh_instance,
            memory_an_activation_wrote_or_grew_is_gone_in_the_next,
            the_environment_and_ow_context_reach_each_activation,
            logs_are_captured_per_stream_and_cut_at_the_log_limit,
            an_application_error_is_a_result,
            a_result_that_is_not_a_dictionary_is_refused,
            results_over_the_limit_are_refused_by_their_length,
            a_trap_is_the_platform_sentence_with_the_trap_in_the_logs,
            an_exit_without_a_result_names_its_code_in_the_logs,
            a_spinning_loop_stops_at_its_deadline,
            a_loop_in_the_start_function_stops_at_its_deadline,
            a_wait_in_the_host_stops_at_its_deadline,
            memory_growth_stops_at_the_memory_limit,
            table_growth_counts_against_the_memory_limit,
            a_stack_overflow_is_a_trap_and_the_next_run_succeeds,
            a_granted_dir_is_all_an_action_can_reach,
            http_get_is_linked_only_for_actions_granted_net_access,
            imports_nobody_provides_are_named_at_prepare,
            code_that_cannot_run_is_refused_at_prepare_with_what_is_wrong,
            activations_beyond_the_instance_slots_wait_for_one_until_their_deadline,
            sleeping_activations_hold_no_thread,
            waiting_in_http_get_holds_no_thread,
            identical_code_is_loaded_once_and_kept_while_used_or_recent,
            a_module_cached_on_disk_loads_without_a_compile_and_a_bad_entry_is_compiled_again,
            precached_code_is_a_memory_cache_hit_at_prepare,
            a_compiler_process_compiles_for_an_engine_with_artifacts,
        );
    };
    (@cases ($factory:expr) $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run_case(
                    module_path!(),
                    stringify!($case),
                    CONFORMANCE_EXCEPTIONS,
                    $factory,
                    |subject| Box::pin($crate::testing::cases::$case(subject)),
                );
            }
        )*
    };
}

const MIB: u64 = 1024 * 1024;

/// What the cases share.
mod helpers {
    use super::*;

    pub fn engine(subject: Subject) -> Arc<dyn WasmRuntime> {
        (subject.factory)(&EngineConfig::default())
    }

    pub fn engine_with(
        subject: Subject,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Arc<dyn WasmRuntime> {
        let mut config = EngineConfig::default();
        configure(&mut config);
        (subject.factory)(&config)
    }

    pub async fn prepare(
        engine: &dyn WasmRuntime,
        wasm: Vec<u8>,
        config: ActionConfig,
    ) -> Result<Arc<dyn PreparedAction>, InitError> {
        engine.prepare(ModuleCode::new(wasm), config).await
    }

    pub async fn prepare_ok(
        engine: &dyn WasmRuntime,
        path: &str,
        config: ActionConfig,
    ) -> Arc<dyn PreparedAction> {
        prepare(engine, artifacts::read(path), config)
            .await
            .unwrap_or_else(|e| panic!("{path} prepares: {e}"))
    }

    pub fn activation(params: Value, time_limit: Duration) -> Activation {
        Activation {
            params,
            env: Vec::new(),
            deadline: Instant::now() + time_limit,
            time_limit,
        }
    }

    pub async fn run(action: &Arc<dyn PreparedAction>, params: Value) -> Completion {
        action
            .run(activation(params, Duration::from_secs(60)))
            .await
    }

    pub fn with_limits(limits: Limits) -> ActionConfig {
        ActionConfig {
            limits,
            ..ActionConfig::default()
        }
    }

    pub fn granted(capabilities: Capabilities) -> ActionConfig {
        ActionConfig {
            capabilities,
            ..ActionConfig::default()
        }
    }

    pub fn with_main(main: &str) -> ActionConfig {
        ActionConfig {
            main: main.to_owned(),
            ..ActionConfig::default()
        }
    }

    pub fn net_access() -> ActionConfig {
        granted(Capabilities {
            net_access: true,
            ..Capabilities::default()
        })
    }

    pub fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// The last line of an activation's stderr: where the platform puts its own detail.
    pub fn last_stderr_line(completion: &Completion) -> String {
        text(&completion.logs.stderr)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (bounded) until no activation holds an instance: the engine really stopped
    /// what it was running, rather than answering and leaving it running.
    pub async fn until_no_instance_is_in_use(engine: &dyn WasmRuntime) {
        let bound = Instant::now() + Duration::from_secs(30);
        while engine.stats().instances_in_use > 0 {
            assert!(
                Instant::now() < bound,
                "an instance still runs 30 s after its activation was answered"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The most threads the process may gain while any number of activations wait: an engine
    /// that suspends a waiting activation gains none (the margin is for the runtime's own
    /// housekeeping), one whose every waiting activation holds a thread gains one each. A
    /// constant, not the core count: the case runs alone in its process on two workers.
    pub const THREADS_WAITS_MAY_ADD: usize = 16;

    /// Waits until no activation holds an instance, failing if one still does `margin` after
    /// `deadline`: the engine really stopped what ran, near its deadline, rather than
    /// answering and leaving it running.
    pub async fn stopped_near(engine: &dyn WasmRuntime, deadline: Instant, margin: Duration) {
        loop {
            // The time first: an instance seen in use was in use at least that late.
            let late = Instant::now().saturating_duration_since(deadline);
            if engine.stats().instances_in_use == 0 {
                return;
            }
            assert!(
                late <= margin,
                "the instance still held its slot {} ms after its deadline; it must have stopped \
                 within {} ms",
                late.as_millis(),
                margin.as_millis()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Runs `action` with `params` and a 300 ms time limit that it outlasts: the run ends in
    /// the timeout, and the instance is gone within the engine's margin of the deadline.
    pub async fn runs_into_its_deadline(
        engine: &dyn WasmRuntime,
        subject: Subject,
        action: &dyn PreparedAction,
        params: Value,
    ) -> Completion {
        let activation = activation(params, Duration::from_millis(300));
        let deadline = activation.deadline;
        let completion = action.run(activation).await;
        assert_eq!(completion.outcome, Err(RunError::Timeout { limit_ms: 300 }));
        stopped_near(engine, deadline, subject.stop_margin).await;
        completion
    }

    /// How many threads this process has (Linux tells in `/proc/self/status`).
    fn os_threads() -> usize {
        let status = std::fs::read_to_string("/proc/self/status")
            .expect("the OS tells the process's threads in /proc/self/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|threads| threads.trim().parse().ok())
            .expect("/proc/self/status counts the process's threads")
    }

    /// Runs `count` activations of `action` at once, each with `params`, until all hold an
    /// instance at the same moment, then asserts that each ends with `outcome`. Fails as soon
    /// as the process has gained more than [`THREADS_WAITS_MAY_ADD`] threads over its count
    /// before they started (waiting activations must hold no thread), or if one finishes
    /// before all are in flight.
    pub async fn all_in_flight_holding_no_thread(
        engine: &dyn WasmRuntime,
        action: &Arc<dyn PreparedAction>,
        count: usize,
        params: Value,
        outcome: Result<Value, RunError>,
    ) {
        let baseline = os_threads();
        let runs: Vec<_> = (0..count)
            .map(|_| {
                let action = action.clone();
                let params = params.clone();
                tokio::spawn(async move {
                    action
                        .run(activation(params, Duration::from_secs(120)))
                        .await
                        .outcome
                })
            })
            .collect();
        let mut most = 0;
        loop {
            let in_flight = engine.stats().instances_in_use;
            most = most.max(in_flight);
            let gained = os_threads().saturating_sub(baseline);
            assert!(
                gained <= THREADS_WAITS_MAY_ADD,
                "waiting activations held threads: the process gained {gained} threads with \
                 {in_flight} of {count} activations in flight (waits may add at most \
                 {THREADS_WAITS_MAY_ADD})"
            );
            if most == count {
                break;
            }
            assert!(
                !runs.iter().any(|run| run.is_finished()),
                "an activation finished while only {most} of {count} were in flight at once"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for run in runs {
            assert_eq!(run.await.unwrap(), outcome);
        }
    }
}

/// The cases, one `async fn` each, named for the behaviour they hold an engine to.
pub mod cases {
    use super::helpers::*;
    use super::*;

    /// SDK ABI: the parameters arrive as JSON and the result leaves as JSON, objects and
    /// arrays alike.
    pub async fn sdk_actions_answer_objects_and_arrays_verbatim(subject: Subject) {
        let engine = engine(subject);
        let echo = prepare_ok(&*engine, artifacts::ECHO, ActionConfig::default()).await;
        for params in [
            json!({"text": "héllo", "n": [1, 2.5, null, {"deep": true}]}),
            json!([1, "two", {"three": 3}]),
            json!({}),
        ] {
            assert_eq!(run(&echo, params.clone()).await.outcome, Ok(params));
        }
        let add = prepare_ok(&*engine, artifacts::ADD, ActionConfig::default()).await;
        assert_eq!(
            run(&add, json!({"param1": 2, "param2": 2})).await.outcome,
            Ok(json!({"result": 4}))
        );
        // Keys stay in the action's order, at every depth, as `JSON.stringify` keeps them.
        let unsorted = prepare_ok(
            &*engine,
            artifacts::wat::UNSORTED_RESULT,
            ActionConfig::default(),
        )
        .await;
        let outcome = run(&unsorted, json!({})).await.outcome.expect("a result");
        assert_eq!(
            serde_json::to_string(&outcome).expect("a result serializes"),
            r#"{"zeta":1,"alpha":[{"b":2,"a":1}],"mid":{"y":1,"x":2}}"#
        );
    }

    /// Wasm SIMD (`simd128`, part of Wasm 2.0) is what the engine says of it
    /// ([`WasmRuntime::runs_wasm_simd`], which `ow-executor engines` reports): an engine that
    /// runs it answers with the `hash` example built with BLAKE3's SIMD code what the portable
    /// build answers; one that does not refuses that build at prepare, naming SIMD. Either way
    /// the SIMD build must really hold SIMD code, or the refusal would not come.
    pub async fn wasm_simd_code_runs_where_the_engine_says_it_does(subject: Subject) {
        let engine = engine(subject);
        let portable = prepare_ok(&*engine, artifacts::HASH, ActionConfig::default()).await;
        let expected = run(&portable, json!({"iterations": 3})).await.outcome;
        assert!(
            expected
                .as_ref()
                .is_ok_and(|answer| answer["hash"].is_string()),
            "{expected:?}"
        );
        let simd = prepare(
            &*engine,
            artifacts::read(artifacts::HASH_SIMD128),
            ActionConfig::default(),
        )
        .await
        .map_err(|error| error.to_string());
        if engine.runs_wasm_simd() {
            let simd = simd.expect("the SIMD build prepares");
            assert_eq!(run(&simd, json!({"iterations": 3})).await.outcome, expected);
        } else {
            let refusal = simd.expect_err("an engine without Wasm SIMD refuses SIMD code");
            assert!(refusal.to_lowercase().contains("simd"), "{refusal}");
        }
    }

    /// stdio ABI: JSON parameters on stdin (none means `{}`), the result is the last stdout
    /// line, and every other line of either stream is a log.
    pub async fn stdio_actions_read_stdin_and_answer_on_their_last_stdout_line(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(&*engine, artifacts::STDIO_ADD, ActionConfig::default()).await;
        let completion = run(&action, json!({"param1": 2, "param2": 2})).await;
        assert_eq!(completion.outcome, Ok(json!({"result": 4})));
        assert_eq!(text(&completion.logs.stdout), "adding 2 and 2\n");
        assert_eq!(text(&completion.logs.stderr), "a line on stderr\n");
        let completion = run(&action, json!({})).await;
        assert_eq!(completion.outcome, Ok(json!({"result": 0})));
    }

    /// SDK ABI: the parameters come through `__ow_alloc`, so stdin holds nothing, and a guest
    /// reading it sees the end at once, neither an error nor a wait.
    pub async fn an_sdk_action_reads_an_empty_stdin_to_its_end_at_once(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::EMPTY_STDIN,
            ActionConfig::default(),
        )
        .await;
        for _ in 0..2 {
            let completion = run(&action, json!({"param1": 2})).await;
            assert_eq!(completion.outcome, Ok(json!({"stdin": "empty"})));
        }
    }

    /// Export-call ABI: `main` names a function of numbers, the parameters' `args` are its
    /// arguments, and its result is `{"result": …}` (an array for several results, `{}` for
    /// none). Modules without imports work, and so do WASI reactors, whose `_initialize` runs
    /// first, once, and whose output is the activation's logs.
    pub async fn an_exported_function_is_called_with_the_parameters_args(subject: Subject) {
        let engine = engine(subject);
        let answer = |main: &'static str, params: Value| {
            let engine = engine.clone();
            async move {
                let action =
                    prepare_ok(&*engine, artifacts::wat::EXPORT_CALL, with_main(main)).await;
                run(&action, params).await.outcome
            }
        };
        let cases = [
            (
                "add",
                json!({"args": [123_456, 678_910]}),
                json!({"result": 802_366}),
            ),
            // i32s wrap, and are read as signed.
            (
                "add",
                json!({"args": [2_147_483_647, 1]}),
                json!({"result": -2_147_483_648_i64}),
            ),
            (
                "add",
                json!({"args": [4_294_967_295_u32, 0]}),
                json!({"result": -1}),
            ),
            // Past 2^53, where a float would round.
            (
                "add64",
                json!({"args": [9_007_199_254_740_993_i64, 2]}),
                json!({"result": 9_007_199_254_740_995_i64}),
            ),
            ("scale", json!({"args": [0.5, 3]}), json!({"result": 1.5})),
            ("half", json!({"args": [0.2]}), json!({"result": 0.1})),
            (
                "half",
                json!({"args": ["-Infinity"]}),
                json!({"result": "-Infinity"}),
            ),
            (
                "divmod",
                json!({"args": [-7, 2]}),
                json!({"result": [-3, -1]}),
            ),
            ("nothing", json!({}), json!({})),
            ("nothing", json!({"args": [], "other": true}), json!({})),
            // The main OpenWhisk sends when an action names none.
            (crate::abi::DEFAULT_MAIN, json!({}), json!({"result": 42})),
        ];
        for (main, params, result) in cases {
            assert_eq!(
                answer(main, params.clone()).await,
                Ok(result),
                "{main} with {params}"
            );
        }
        // A trap is a trap, as with any ABI.
        let divmod = prepare_ok(&*engine, artifacts::wat::EXPORT_CALL, with_main("divmod")).await;
        let completion = run(&divmod, json!({"args": [1, 0]})).await;
        assert!(
            matches!(completion.outcome, Err(RunError::Trap { .. })),
            "{:?}",
            completion.outcome
        );
        assert!(last_stderr_line(&completion).starts_with("The action trapped: "));

        let reactor =
            prepare_ok(&*engine, artifacts::wat::EXPORT_CALL_WASI, with_main("add")).await;
        for _ in 0..2 {
            let completion = run(&reactor, json!({"args": [1, 2]})).await;
            assert_eq!(completion.outcome, Ok(json!({"result": 1003})));
            assert_eq!(text(&completion.logs.stdout), "adding\n");
            assert_eq!(text(&completion.logs.stderr), "");
        }
    }

    /// Export-call ABI: `args` that do not fit the function are the activation's error (its
    /// result is `{"error": …}`), a sentence that says what the function takes.
    pub async fn args_that_do_not_fit_the_export_are_an_error_naming_what_it_takes(
        subject: Subject,
    ) {
        let engine = engine(subject);
        let add = prepare_ok(&*engine, artifacts::wat::EXPORT_CALL, with_main("add")).await;
        let cases = [
            (
                json!({"args": [1, 2, 3]}),
                "The export add takes 2 arguments (i32, i32); the parameters' args has 3.",
            ),
            (
                json!({"param1": 1, "param2": 2}),
                "The export add takes 2 arguments (i32, i32), given as the parameters' args \
                 array; the parameters have no args.",
            ),
            (
                json!({"args": {"a": 1}}),
                "The export add takes 2 arguments (i32, i32), given as the parameters' args \
                 array; args is an object.",
            ),
            (
                json!({"args": [1, "2"]}),
                "The export add takes an i32 as argument 2; the parameters' args[1] is a string, \
                 not a number.",
            ),
            (
                json!({"args": [1.5, 2]}),
                "The export add takes an i32 as argument 1; the parameters' args[0] is 1.5, not \
                 an integer.",
            ),
            (
                json!({"args": [1, 4_294_967_296_u64]}),
                "The export add takes an i32 as argument 2; the parameters' args[1] is \
                 4294967296, which does not fit an i32 (-2147483648 to 4294967295).",
            ),
        ];
        for (params, sentence) in cases {
            let completion = run(&add, params).await;
            assert_eq!(completion.outcome, Ok(json!({"error": sentence})));
            assert_eq!(completion.logs, Default::default());
        }
        let nothing = prepare_ok(&*engine, artifacts::wat::EXPORT_CALL, with_main("nothing")).await;
        assert_eq!(
            run(&nothing, json!({"args": [1]})).await.outcome,
            Ok(
                json!({"error": "The export nothing takes no arguments; the parameters' args has 1."})
            )
        );
    }

    /// Export-call ABI: a `main` naming no exported function, or one whose type is not numbers
    /// only, is refused at prepare with what the module does export. SDK modules and WASI
    /// commands keep their ABI whatever `main` names.
    pub async fn a_main_naming_no_callable_export_is_refused_at_prepare(subject: Subject) {
        let engine = engine(subject);
        let missing = prepare(
            &*engine,
            artifacts::read(artifacts::wat::EXPORT_CALL),
            with_main("sub"),
        )
        .await
        .unwrap_err();
        assert_eq!(
            missing.to_string(),
            "The module exports neither __ow_main (an ow-wasm-action SDK action), nor _start (a \
             WASI command reading its parameters from stdin), nor a function named sub (the \
             action's main, called with the parameters' args); it exports the functions add, \
             add64, scale, half, divmod, nothing, main. Build it with pass_json! or as a WASI \
             program, or name the function to call with main."
        );
        for (main, ty) in [
            ("takes_ref", "(funcref) -> (i32)"),
            ("returns_ref", "() -> (funcref)"),
        ] {
            let refused = prepare(
                &*engine,
                artifacts::read(artifacts::wat::UNCALLABLE_EXPORT),
                with_main(main),
            )
            .await
            .unwrap_err();
            assert_eq!(
                refused,
                InitError::UncallableExport {
                    export: main.to_owned(),
                    ty: ty.to_owned()
                }
            );
            assert_eq!(
                refused.to_string(),
                format!(
                    "The action's main names the export {main}, of type {ty}; the export-call \
                     ABI calls only functions whose parameters and results are numbers (i32, \
                     i64, f32, f64)."
                )
            );
        }
        let echo = prepare_ok(&*engine, artifacts::ECHO, with_main("sub")).await;
        assert_eq!(
            run(&echo, json!({"a": 1})).await.outcome,
            Ok(json!({"a": 1}))
        );
        let stdio = prepare_ok(&*engine, artifacts::STDIO_ADD, with_main("sub")).await;
        assert_eq!(
            run(&stdio, json!({"param1": 1, "param2": 2})).await.outcome,
            Ok(json!({"result": 3}))
        );
    }

    /// State never leaks from one activation to the next: each has an instance of its own.
    pub async fn every_activation_gets_a_fresh_instance(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::FRESH_INSTANCE,
            ActionConfig::default(),
        )
        .await;
        for _ in 0..3 {
            assert_eq!(run(&action, json!({})).await.outcome, Ok(json!({"n": 1})));
        }
    }

    /// Nothing an activation did to its memory reaches the next, however the engine reuses
    /// memory: bytes it wrote read zero, the memory starts at its declared size, and pages it
    /// grew are out of bounds (a load from them traps).
    pub async fn memory_an_activation_wrote_or_grew_is_gone_in_the_next(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::MEMORY_REUSE,
            ActionConfig::default(),
        )
        .await;
        for _ in 0..3 {
            assert_eq!(run(&action, json!({})).await.outcome, Ok(json!({})));
            let probe = run(&action, json!({"probe": "past the declared page"})).await;
            assert!(
                matches!(probe.outcome, Err(RunError::Trap { .. })),
                "{:?}",
                probe.outcome
            );
            assert!(
                last_stderr_line(&probe).contains("out of bounds"),
                "{:?}",
                probe.logs
            );
        }
    }

    /// The activation's environment (the init `env` and the run's `__OW_*` context) is the
    /// action's, per activation: two activations at once each see their own.
    pub async fn the_environment_and_ow_context_reach_each_activation(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(&*engine, artifacts::ENV, ActionConfig::default()).await;
        let runs: Vec<_> = ["first", "second"]
            .into_iter()
            .map(|id| {
                let action = action.clone();
                tokio::spawn(async move {
                    let mut activation = activation(json!({}), Duration::from_secs(60));
                    activation.env = vec![
                        ("__OW_ACTIVATION_ID".to_owned(), id.to_owned()),
                        ("__OW_NAMESPACE".to_owned(), "guest".to_owned()),
                        ("INIT_VAR".to_owned(), "from init".to_owned()),
                    ];
                    (id, action.run(activation).await.outcome)
                })
            })
            .collect();
        for run in runs {
            let (id, outcome) = run.await.unwrap();
            let vars = outcome.unwrap();
            assert_eq!(vars["__OW_ACTIVATION_ID"], id);
            assert_eq!(vars["__OW_NAMESPACE"], "guest");
            assert_eq!(vars["INIT_VAR"], "from init");
            // Nothing of the host's own environment leaks in.
            assert_eq!(vars.get("PATH"), None, "{vars}");
        }
    }

    /// Each stream's lines are the action's; past the log limit the rest is dropped and the
    /// platform's truncation sentence closes stderr, while the result is unharmed.
    pub async fn logs_are_captured_per_stream_and_cut_at_the_log_limit(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(&*engine, artifacts::LOG, ActionConfig::default()).await;
        let completion = run(&action, json!({"lines": 2, "message": "hi"})).await;
        assert_eq!(completion.outcome, Ok(json!({"lines": 2})));
        assert_eq!(
            text(&completion.logs.stdout),
            "stdout 0: hi\nstdout 1: hi\n"
        );
        assert_eq!(
            text(&completion.logs.stderr),
            "stderr 0: hi\nstderr 1: hi\n"
        );

        let limits = Limits {
            log_bytes: 100,
            ..Limits::default()
        };
        let action = prepare_ok(&*engine, artifacts::LOG, with_limits(limits)).await;
        let completion = run(&action, json!({"lines": 1000})).await;
        assert_eq!(completion.outcome, Ok(json!({"lines": 1000})));
        let kept = completion.logs.stdout.len() + completion.logs.stderr.len();
        let notice = sentences::logs_truncated(100);
        assert!(kept <= 100 + notice.len() + 2, "kept {kept} bytes");
        assert_eq!(last_stderr_line(&completion), notice);
    }

    /// An action's own error is its result (`{"error": …}`), not an executor error.
    pub async fn an_application_error_is_a_result(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(&*engine, artifacts::ERROR, ActionConfig::default()).await;
        assert_eq!(
            run(&action, json!({"reason": "no"})).await.outcome,
            Ok(json!({"error": "no"}))
        );
    }

    /// A result that is neither object nor array gets the platform's sentence.
    pub async fn a_result_that_is_not_a_dictionary_is_refused(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::NOT_A_DICTIONARY,
            ActionConfig::default(),
        )
        .await;
        let outcome = run(&action, json!({})).await.outcome;
        assert_eq!(outcome, Err(RunError::NotADictionary));
        assert_eq!(
            outcome.unwrap_err().to_string(),
            sentences::NOT_A_DICTIONARY
        );
    }

    /// A result over the limit is refused by its length (an SDK result is not even copied out
    /// of the instance), on either ABI, with the limit the action was given.
    pub async fn results_over_the_limit_are_refused_by_their_length(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::BIG_RESULT,
            with_limits(Limits::default()),
        )
        .await;
        let outcome = run(&action, json!({"big": true})).await.outcome;
        assert_eq!(
            outcome,
            Err(RunError::ResultTooLarge {
                size: 100 * MIB,
                limit: MIB
            })
        );
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "The action produced a response that exceeded the allowed length: 104857600 > \
             1048576 bytes."
        );
        assert_eq!(run(&action, json!({})).await.outcome, Ok(json!({})));

        let limits = Limits {
            result_bytes: 1000,
            ..Limits::default()
        };
        let echo = prepare_ok(&*engine, artifacts::ECHO, with_limits(limits)).await;
        let big = json!({"text": "x".repeat(2000)});
        let size = serde_json::to_vec(&big).unwrap().len() as u64;
        assert_eq!(
            run(&echo, big).await.outcome,
            Err(RunError::ResultTooLarge { size, limit: 1000 })
        );
        let small = json!({"text": "x"});
        assert_eq!(run(&echo, small.clone()).await.outcome, Ok(small));

        let stdio = prepare_ok(
            &*engine,
            artifacts::wat::BIG_STDIO_RESULT,
            ActionConfig::default(),
        )
        .await;
        assert_eq!(
            run(&stdio, json!({})).await.outcome,
            Err(RunError::ResultTooLarge {
                size: 2 * MIB,
                limit: MIB
            })
        );
    }

    /// A trap answers with the platform's sentence; the trap itself (in the engine's words)
    /// is the last stderr line, and the action serves the next activation.
    pub async fn a_trap_is_the_platform_sentence_with_the_trap_in_the_logs(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::UNREACHABLE,
            ActionConfig::default(),
        )
        .await;
        for _ in 0..2 {
            let completion = run(&action, json!({})).await;
            let error = completion.outcome.clone().unwrap_err();
            assert!(matches!(error, RunError::Trap { .. }), "{error:?}");
            assert_eq!(error.to_string(), sentences::NO_VALID_RESPONSE);
            assert!(
                last_stderr_line(&completion).starts_with("The action trapped: "),
                "{:?}",
                completion.logs
            );
        }
    }

    /// A command that exits with a code before answering: the platform's sentence, the code
    /// in the logs, and every stdout line it printed kept as a log.
    pub async fn an_exit_without_a_result_names_its_code_in_the_logs(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(&*engine, artifacts::wat::EXIT_CODE, ActionConfig::default()).await;
        let completion = run(&action, json!({})).await;
        assert_eq!(completion.outcome, Err(RunError::Exit { code: 3 }));
        assert_eq!(text(&completion.logs.stdout), "config missing\n");
        assert_eq!(
            last_stderr_line(&completion),
            "The action exited with code 3."
        );
    }

    /// A loop that never yields is stopped at its deadline with the timeout sentence, and its
    /// instance is really gone, near the deadline.
    pub async fn a_spinning_loop_stops_at_its_deadline(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::LOOP_FOREVER,
            ActionConfig::default(),
        )
        .await;
        let completion = runs_into_its_deadline(&*engine, subject, &*action, json!({})).await;
        assert_eq!(
            completion.outcome.unwrap_err().to_string(),
            "The action exceeded its time limits of 300 milliseconds."
        );
        let echo = prepare_ok(&*engine, artifacts::ECHO, ActionConfig::default()).await;
        assert_eq!(
            run(&echo, json!({"a": 1})).await.outcome,
            Ok(json!({"a": 1}))
        );
    }

    /// A loop in the module's start function, which runs while the instance is made, is
    /// stopped at the deadline like any other.
    pub async fn a_loop_in_the_start_function_stops_at_its_deadline(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::START_LOOP,
            ActionConfig::default(),
        )
        .await;
        runs_into_its_deadline(&*engine, subject, &*action, json!({})).await;
    }

    /// An action waiting in the host (a WASI sleep) is stopped at its deadline too.
    pub async fn a_wait_in_the_host_stops_at_its_deadline(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(&*engine, artifacts::SLEEP, ActionConfig::default()).await;
        runs_into_its_deadline(&*engine, subject, &*action, json!({"ms": 600_000})).await;
    }

    /// Growing memory past the limit is refused, and the trap that follows reads as the
    /// memory limit; a Rust action whose allocation fails likewise. The next run succeeds.
    pub async fn memory_growth_stops_at_the_memory_limit(subject: Subject) {
        let engine = engine(subject);
        let limits = Limits {
            memory_bytes: 128 * MIB,
            ..Limits::default()
        };
        let bomb = prepare_ok(&*engine, artifacts::wat::MEMORY_BOMB, with_limits(limits)).await;
        for _ in 0..2 {
            assert_eq!(
                run(&bomb, json!({"bomb": true})).await.outcome,
                Err(RunError::MemoryLimit { limit_mb: 128 })
            );
        }
        assert_eq!(run(&bomb, json!({})).await.outcome, Ok(json!({})));
        let alloc = prepare_ok(&*engine, artifacts::ALLOC, with_limits(limits)).await;
        assert_eq!(
            run(&alloc, json!({"mb": 200})).await.outcome,
            Err(RunError::MemoryLimit { limit_mb: 128 })
        );
        assert_eq!(
            run(&alloc, json!({"mb": 8})).await.outcome.unwrap()["allocated_mb"],
            8
        );
    }

    /// Tables are capped too, and a refused table growth reads as the memory limit.
    pub async fn table_growth_counts_against_the_memory_limit(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::TABLE_BOMB,
            ActionConfig::default(),
        )
        .await;
        assert_eq!(
            run(&action, json!({})).await.outcome,
            Err(RunError::MemoryLimit { limit_mb: 256 })
        );
    }

    /// Unbounded recursion is a trap, not a crash of the executor, and every engine says the
    /// same of it: the call stack was exhausted.
    pub async fn a_stack_overflow_is_a_trap_and_the_next_run_succeeds(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(
            &*engine,
            artifacts::wat::STACK_OVERFLOW,
            ActionConfig::default(),
        )
        .await;
        let completion = run(&action, json!({"recurse": true})).await;
        assert_eq!(
            completion.outcome,
            Err(RunError::Trap {
                trap: sentences::STACK_EXHAUSTED.to_owned()
            })
        );
        assert_eq!(
            last_stderr_line(&completion),
            "The action trapped: call stack exhausted"
        );
        assert_eq!(run(&action, json!({})).await.outcome, Ok(json!({})));
    }

    /// A granted directory is the action's `/data`, read and write; nothing outside it is
    /// reachable, by `..`, by an absolute path or by a symlink pointing out.
    pub async fn a_granted_dir_is_all_an_action_can_reach(subject: Subject) {
        let engine = engine(subject);
        let granted_dir = tempfile::tempdir().expect("a temporary directory");
        let outside = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path(), granted_dir.path().join("out")).unwrap();
        let action = prepare_ok(
            &*engine,
            artifacts::FILESYS,
            granted(Capabilities {
                dir: Some(granted_dir.path().to_owned()),
                ..Capabilities::default()
            }),
        )
        .await;
        let written = run(&action, json!({"file": "a.txt", "content": "hi"})).await;
        let mut expected_entries = vec!["a.txt"];
        if cfg!(unix) {
            expected_entries.push("out");
        }
        assert_eq!(
            written.outcome,
            Ok(json!({"content": "hi", "entries": expected_entries}))
        );
        assert_eq!(
            std::fs::read_to_string(granted_dir.path().join("a.txt")).unwrap(),
            "hi"
        );
        let secret = outside.path().join("secret.txt");
        let escapes = [
            format!("/data/../{}", secret.display()),
            secret.display().to_string(),
            "/data/out/secret.txt".to_owned(),
            "/etc/passwd".to_owned(),
        ];
        // Each is refused with one of WASI's refusals (engines pick different ones for the
        // same path), in the action's own sentence.
        let refused = |outcome: Result<Value, RunError>, doing: &str| {
            let refusals = [
                "Operation not permitted (os error 63)",
                "No such file or directory (os error 44)",
                "Capabilities insufficient (os error 76)",
            ];
            let expected =
                refusals.map(|refusal| Ok(json!({"error": format!("{doing}: {refusal}")})));
            assert!(expected.contains(&outcome), "{doing}: {outcome:?}");
        };
        for path in escapes {
            let outcome = run(&action, json!({"read": path})).await.outcome;
            refused(outcome, &format!("cannot read {path}"));
        }
        // Without the capability there is no /data at all.
        let ungranted = prepare_ok(&*engine, artifacts::FILESYS, ActionConfig::default()).await;
        let outcome = run(&ungranted, json!({})).await.outcome;
        refused(outcome, "cannot write /data/hello.txt");
        // A directory that does not exist is refused at prepare.
        let missing = granted(Capabilities {
            dir: Some(granted_dir.path().join("missing")),
            ..Capabilities::default()
        });
        let refused = prepare(&*engine, artifacts::read(artifacts::FILESYS), missing)
            .await
            .unwrap_err();
        assert!(matches!(refused, InitError::Capability(_)), "{refused:?}");
    }

    /// `http`.`get` exists only for actions granted `net_access`; it answers with the
    /// simulated response, and refuses what is not an http(s) URL with a sentence.
    pub async fn http_get_is_linked_only_for_actions_granted_net_access(subject: Subject) {
        let engine = engine(subject);
        let refused = prepare(
            &*engine,
            artifacts::read(artifacts::NET),
            ActionConfig::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            refused,
            InitError::UnknownImports(vec!["http.get".to_owned()])
        );
        let action = prepare_ok(&*engine, artifacts::NET, net_access()).await;
        let answer = run(&action, json!({"url": "https://example.com/a"}))
            .await
            .outcome
            .unwrap();
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"url": "https://example.com/a", "simulated": true})
        );
        assert_eq!(
            run(&action, json!({"url": "ftp://example.com/"}))
                .await
                .outcome,
            Ok(json!({
                "error": "http.get takes an http:// or https:// URL, not \"ftp://example.com/\"."
            }))
        );
    }

    /// A module importing what no executor provides is refused, naming the import.
    pub async fn imports_nobody_provides_are_named_at_prepare(subject: Subject) {
        let engine = engine(subject);
        let refused = prepare(
            &*engine,
            artifacts::read(artifacts::wat::UNKNOWN_IMPORT),
            ActionConfig::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            refused,
            InitError::UnknownImports(vec!["env.launch_missiles".to_owned()])
        );
    }

    /// Code that is no runnable module is refused at prepare with what is wrong with it.
    pub async fn code_that_cannot_run_is_refused_at_prepare_with_what_is_wrong(subject: Subject) {
        let engine = engine(subject);
        let no_entry = prepare(
            &*engine,
            artifacts::read(artifacts::wat::NO_ENTRY_POINT),
            ActionConfig::default(),
        )
        .await;
        assert_eq!(
            no_entry.unwrap_err(),
            InitError::NoEntryPoint {
                main: crate::abi::DEFAULT_MAIN.to_owned(),
                functions: vec!["something_else".to_owned()]
            }
        );
        let mut truncated = artifacts::read(artifacts::ADD);
        truncated.truncate(truncated.len() / 2);
        let invalid = prepare(&*engine, truncated, ActionConfig::default()).await;
        assert!(
            matches!(invalid, Err(InitError::InvalidModule(_))),
            "{invalid:?}"
        );
        let component = prepare(
            &*engine,
            artifacts::read(artifacts::wat::COMPONENT),
            ActionConfig::default(),
        )
        .await;
        assert_eq!(
            component.unwrap_err(),
            InitError::UnsupportedFormat {
                found: ModuleFormat::Component
            }
        );
        // An artifact of an engine that is not this one, even trusted.
        let trusting = engine_with(subject, |config| {
            config.trust_precompiled(true);
        });
        let name = trusting.name();
        for (format, header) in [
            (
                ModuleFormat::WasmtimeArtifact,
                &b"\x7fELF....\x00.wasmtime.engine"[..],
            ),
            (
                ModuleFormat::WasmerArtifact,
                b"wasmer-universalWASMER\0\0\x18\0\0\0",
            ),
            (ModuleFormat::WamrAot, b"\0aot\x03\0\0\0"),
        ] {
            let mut bytes = header.to_vec();
            bytes.resize(256, 0);
            let code = ModuleCode::new(bytes);
            assert_eq!(code.format, format, "the sniffer names {format:?}");
            match trusting.prepare(code, ActionConfig::default()).await {
                // This engine's own format is refused for being malformed, not foreign.
                Err(
                    InitError::IncompatibleArtifact { engine, .. }
                    | InitError::PortableOnly { engine, .. },
                ) => assert_eq!(engine, name),
                other => panic!("{format:?} on {name}: {other:?}"),
            }
        }
    }

    /// Activations beyond the instance slots wait for a free one rather than fail, until
    /// their deadline, which ends the wait with the timeout sentence.
    pub async fn activations_beyond_the_instance_slots_wait_for_one_until_their_deadline(
        subject: Subject,
    ) {
        let engine = engine_with(subject, |config| {
            config.max_instances(2);
        });
        let action = prepare_ok(&*engine, artifacts::SLEEP, ActionConfig::default()).await;
        let runs: Vec<_> = (0..12)
            .map(|_| {
                let action = action.clone();
                tokio::spawn(async move { run(&action, json!({"ms": 20})).await.outcome })
            })
            .collect();
        for run in runs {
            assert_eq!(run.await.unwrap(), Ok(json!({"slept_ms": 20})));
        }

        let engine = engine_with(subject, |config| {
            config.max_instances(1);
        });
        let action = prepare_ok(&*engine, artifacts::SLEEP, ActionConfig::default()).await;
        let holder = tokio::spawn({
            let action = action.clone();
            async move { run(&action, json!({"ms": 1500})).await.outcome }
        });
        let bound = Instant::now() + Duration::from_secs(30);
        while engine.stats().instances_in_use == 0 {
            assert!(
                Instant::now() < bound,
                "the holder took no instance slot in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let waiting = action
            .run(activation(json!({"ms": 1}), Duration::from_millis(200)))
            .await;
        assert_eq!(waiting.outcome, Err(RunError::Timeout { limit_ms: 200 }));
        assert_eq!(holder.await.unwrap(), Ok(json!({"slept_ms": 1500})));
        assert_eq!(engine.stats().waiting_for_instance, 0);
        assert_eq!(
            run(&action, json!({"ms": 1})).await.outcome,
            Ok(json!({"slept_ms": 1}))
        );
    }

    /// 10,000 activations asleep in WASI at the same moment on two worker threads, and the
    /// process gains no thread for them: a sleeping activation holds no thread.
    pub async fn sleeping_activations_hold_no_thread(subject: Subject) {
        let engine = engine_with(subject, |config| {
            config.max_instances(10_000);
        });
        let action = prepare_ok(&*engine, artifacts::SLEEP, ActionConfig::default()).await;
        all_in_flight_holding_no_thread(
            &*engine,
            &action,
            10_000,
            json!({"ms": 5000}),
            Ok(json!({"slept_ms": 5000})),
        )
        .await;
        until_no_instance_is_in_use(&*engine).await;
    }

    /// 100 activations waiting in `http`.`get` at the same moment on two worker threads, and
    /// the process gains no thread for them: waiting in the host holds no thread. (Fewer
    /// than for sleeps: all must be in flight within the 300 ms the simulated request takes.)
    pub async fn waiting_in_http_get_holds_no_thread(subject: Subject) {
        let engine = engine(subject);
        let action = prepare_ok(&*engine, artifacts::NET, net_access()).await;
        let url = "https://example.com/";
        let body = json!({"url": url, "simulated": true}).to_string();
        all_in_flight_holding_no_thread(
            &*engine,
            &action,
            100,
            json!({}),
            Ok(json!({"url": url, "body": body})),
        )
        .await;
    }

    /// Identical code is loaded once while an action uses it; the most recent modules
    /// outlive their actions, older ones are freed.
    pub async fn identical_code_is_loaded_once_and_kept_while_used_or_recent(subject: Subject) {
        let engine = engine_with(subject, |config| {
            config.memory_cache(crate::cache::CachePolicy {
                max_entries: 1,
                ..crate::cache::CachePolicy::default()
            });
        });
        let loads_and_cached = || {
            let stats = engine.stats();
            (stats.module_loads, stats.cached_modules)
        };
        let first = prepare_ok(&*engine, artifacts::ADD, ActionConfig::default()).await;
        let second = prepare_ok(&*engine, artifacts::ADD, with_limits(Limits::default())).await;
        assert_eq!(loads_and_cached(), (1, 1));
        let other = prepare_ok(&*engine, artifacts::ECHO, ActionConfig::default()).await;
        assert_eq!(loads_and_cached(), (2, 2));
        drop(first);
        assert_eq!(
            run(&second, json!({"param1": 1, "param2": 2}))
                .await
                .outcome,
            Ok(json!({"result": 3})),
            "still prepared"
        );
        drop((second, other));
        // Only the most recent (echo) outlives its actions; add's compiled code is freed.
        assert_eq!(engine.stats().cached_modules, 1);
        let _echo = prepare_ok(&*engine, artifacts::ECHO, ActionConfig::default()).await;
        assert_eq!(engine.stats().module_loads, 2, "echo came from the cache");
        let _add = prepare_ok(&*engine, artifacts::ADD, ActionConfig::default()).await;
        assert_eq!(engine.stats().module_loads, 3, "add was loaded anew");
    }

    /// With a cache directory, a compiled module outlives its engine: the next engine (a
    /// restarted executor) loads it without compiling. A damaged entry, or a whole entry the
    /// engine refuses (foreign bytes), is never run: it is dropped, the module compiled again
    /// and the entry written anew.
    pub async fn a_module_cached_on_disk_loads_without_a_compile_and_a_bad_entry_is_compiled_again(
        subject: Subject,
    ) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let restarted = || {
            engine_with(subject, |config| {
                config.disk_cache(Some(DiskCacheConfig {
                    dir: dir.path().to_owned(),
                    policy: CachePolicy::default(),
                }));
            })
        };
        let prepared_and_ran = |engine: Arc<dyn WasmRuntime>| async move {
            let add = prepare_ok(&*engine, artifacts::ADD, ActionConfig::default()).await;
            assert_eq!(
                run(&add, json!({"param1": 2, "param2": 3})).await.outcome,
                Ok(json!({"result": 5}))
            );
            engine.stats()
        };
        let first = prepared_and_ran(restarted()).await;
        assert_eq!(
            (first.compiles, first.disk_cache.loads),
            (1, 1),
            "compiled and written"
        );
        let second = prepared_and_ran(restarted()).await;
        assert_eq!(
            (second.compiles, second.disk_cache.hits),
            (0, 1),
            "read back"
        );

        let entry = only_entry(dir.path());
        let mut bytes = std::fs::read(&entry).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&entry, &bytes).unwrap();
        let damaged = prepared_and_ran(restarted()).await;
        assert_eq!((damaged.compiles, damaged.disk_cache_rejected), (1, 1));

        let garbage = vec![0x5a; 4096];
        let mut foreign = crate::host::disk_cache::entry_header(&garbage);
        foreign.extend_from_slice(&garbage);
        std::fs::write(&entry, foreign).unwrap();
        let refused = prepared_and_ran(restarted()).await;
        assert_eq!((refused.compiles, refused.disk_cache_rejected), (1, 1));
        let healed = prepared_and_ran(restarted()).await;
        assert_eq!(
            (healed.compiles, healed.disk_cache.hits),
            (0, 1),
            "written anew"
        );
    }

    /// Pre-cached code is compiled before an action asks for it, so the first prepare of it
    /// finds it in memory. Pre-caching admits code exactly as prepare does: what prepare
    /// refuses for its code (not a module, a component, a precompiled artifact that is
    /// untrusted or another engine's) pre-caching refuses with the same error, caching
    /// nothing.
    pub async fn precached_code_is_a_memory_cache_hit_at_prepare(subject: Subject) {
        let engine = engine(subject);
        engine
            .precache(ModuleCode::new(artifacts::read(artifacts::ADD)))
            .await
            .expect("add pre-caches");
        let cache = engine.stats().memory_cache;
        assert_eq!((cache.entries, cache.loads, cache.hits), (1, 1, 0));
        let add = prepare_ok(&*engine, artifacts::ADD, ActionConfig::default()).await;
        assert_eq!(
            run(&add, json!({"param1": 1, "param2": 2})).await.outcome,
            Ok(json!({"result": 3}))
        );
        let cache = engine.stats().memory_cache;
        assert_eq!(
            (cache.loads, cache.hits),
            (1, 1),
            "prepare found the pre-cached module"
        );

        let mut truncated = artifacts::read(artifacts::ECHO);
        truncated.truncate(truncated.len() / 2);
        let refused = [
            truncated,
            artifacts::read(artifacts::wat::COMPONENT),
            b"\x7fELF....\x00.wasmtime.engine".to_vec(),
            b"wasmer-universalWASMER\0\0\x18\0\0\0".to_vec(),
            b"\0aot\x03\0\0\0".to_vec(),
        ];
        for mut bytes in refused {
            bytes.resize(bytes.len().max(256), 0);
            let precached = engine.precache(ModuleCode::new(bytes.clone())).await;
            let prepared = prepare(&*engine, bytes, ActionConfig::default()).await;
            let (Err(precache_error), Err(prepare_error)) = (precached, prepared) else {
                panic!("code that prepare refuses is refused by precache too");
            };
            assert_eq!(precache_error, prepare_error);
        }
        assert_eq!(
            engine.stats().memory_cache.entries,
            1,
            "nothing more cached"
        );
    }

    /// Compiles in a compiler process: an engine with artifacts loads what the process wrote
    /// and runs it, and keeps those very bytes in its disk cache, so that a restart compiles
    /// nothing; a module the process refuses is the module's fault, in the process's words; an
    /// artifact that does not load is the executor's; neither leaves a cache entry. An engine
    /// without artifacts compiles in its own process and starts none. (The compiler here is a
    /// shell script that answers with an artifact the engine wrote to a disk cache of its own,
    /// or fails; the executor's real one, `ow-executor compile`, is tested with the executor.)
    pub async fn a_compiler_process_compiles_for_an_engine_with_artifacts(subject: Subject) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let served = tempfile::tempdir().expect("a temporary directory");
        let started = dir.path().join("started");
        let compiling_with = |answer: &str| {
            // The script notes the engine it was started for, reads the module, answers.
            let script = format!(
                "echo \"$1\" > '{}'; cat >/dev/null; {answer}",
                started.display()
            );
            engine_with(subject, |config| {
                config
                    .compile_in(CompilePlace::CompilerProcess(CompilerCommand::new(
                        "/bin/sh",
                        vec!["-c".to_owned(), script, "compiler".to_owned()],
                    )))
                    .disk_cache(Some(DiskCacheConfig {
                        dir: served.path().to_owned(),
                        policy: CachePolicy::default(),
                    }));
            })
        };
        let started_for = || std::fs::read_to_string(&started).ok();
        let add = || artifacts::read(artifacts::ADD);

        let refusing = compiling_with("echo 'no, says the compiler' >&2; exit 65");
        let refused = prepare(&*refusing, add(), ActionConfig::default()).await;
        if refusing.artifact_format().is_none() {
            assert!(refused.is_ok(), "compiled in this process: {refused:?}");
            assert_eq!(started_for(), None, "no compiler process was started");
            return;
        }
        assert_eq!(started_for(), Some(format!("{}\n", refusing.name())));
        assert_eq!(
            refused.err(),
            Some(InitError::InvalidModule("no, says the compiler".to_owned()))
        );
        assert_eq!(disk_cache_entries(served.path()).len(), 0, "nothing cached");

        let echoing = compiling_with("printf 'not an artifact'");
        match prepare(&*echoing, add(), ActionConfig::default()).await {
            Err(InitError::Engine(message)) => assert!(
                message.contains("the compiler process's artifact cannot be loaded"),
                "{message}"
            ),
            other => panic!("expected the executor's error, got {other:?}"),
        }
        assert_eq!(disk_cache_entries(served.path()).len(), 0, "nothing cached");

        // A real artifact of add, as the engine writes it to a disk cache of its own.
        let cache = tempfile::tempdir().expect("a temporary directory");
        let writing = engine_with(subject, |config| {
            config.disk_cache(Some(DiskCacheConfig {
                dir: cache.path().to_owned(),
                policy: CachePolicy::default(),
            }));
        });
        prepare_ok(&*writing, artifacts::ADD, ActionConfig::default()).await;
        let header = crate::host::disk_cache::entry_header(&[]).len();
        let artifact = std::fs::read(only_entry(cache.path())).unwrap()[header..].to_vec();
        let artifact_file = dir.path().join("add.artifact");
        std::fs::write(&artifact_file, &artifact).unwrap();

        // Prepares and runs add on `engine`: how many compiles that took.
        let compiles_to_add = |engine: Arc<dyn WasmRuntime>| async move {
            let action = prepare_ok(&*engine, artifacts::ADD, ActionConfig::default()).await;
            let sum = run(&action, json!({"param1": 4, "param2": 5})).await;
            assert_eq!(sum.outcome, Ok(json!({"result": 9})));
            engine.stats().compiles
        };
        let compiling = compiling_with(&format!("cat '{}'", artifact_file.display()));
        assert_eq!(compiles_to_add(compiling).await, 1);
        let entry = std::fs::read(only_entry(served.path())).unwrap();
        assert!(
            entry[header..] == artifact[..],
            "the cache keeps what the compiler process wrote"
        );

        // A restart reads it back: no compile, no compiler process.
        std::fs::remove_file(&started).unwrap();
        assert_eq!(compiles_to_add(compiling_with("exit 65")).await, 0);
        assert_eq!(started_for(), None, "no compiler process was started");
    }
}

/// Every entry file under a disk cache directory, whatever the engine (none if the directory
/// does not exist).
pub fn disk_cache_entries(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(engine_dirs) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    engine_dirs
        .flat_map(|engine_dir| std::fs::read_dir(engine_dir.unwrap().path()).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "module"))
        .collect()
}

/// The one entry file under a disk cache directory.
fn only_entry(root: &std::path::Path) -> std::path::PathBuf {
    let entries = disk_cache_entries(root);
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries.into_iter().next().unwrap()
}
