//! What an engine truly cannot do, named with the reason and the failure it shows: each listed
//! test still runs on that engine and must fail there, for that reason only, so a gap that
//! closes, or a test that breaks otherwise, is noticed.

use ow_common::testing::STOP_MARGIN;
use ow_executor::engines::EngineKind;
use std::cell::RefCell;
use std::time::Duration;

/// One test an engine cannot pass.
pub struct Gap {
    /// The engine.
    pub engine: &'static str,
    /// The test, as `file::name`.
    pub test: &'static str,
    /// Why.
    pub why: &'static str,
    /// Part of the panic message the test fails with on that engine: the failure `why`
    /// explains. Failing with any other message fails the test.
    pub fails_with: &'static str,
}

/// Every gap of every engine.
pub const GAPS: &[Gap] = &[
    Gap {
        engine: "wasmer",
        test: "safety::sleeping_activations_hold_no_thread_each",
        why: "a Wasmer store is not Send and its calls block: every sleeping activation holds \
              one of the engine's threads",
        fails_with: "sleeping activations held threads",
    },
    Gap {
        engine: "wamr",
        test: "safety::sleeping_activations_hold_no_thread_each",
        why: "WAMR cannot suspend a call: every sleeping activation holds one of its threads",
        fails_with: "sleeping activations held threads",
    },
    Gap {
        engine: "wamr",
        test: "module_cache::a_standalone_restart_invokes_a_known_action_without_compiling",
        why: "WAMR has no serialized form of a loaded module (its AOT format needs wamrc): \
              nothing is kept on disk, so a restart loads every module again (a few ms each)",
        fails_with: "the restart compiled nothing\n  left: 1.0",
    },
    Gap {
        engine: "wamr",
        test: "module_cache::a_corrupted_cache_file_is_compiled_again_not_loaded",
        why: "WAMR writes no cache files to corrupt: it has no serialized form of a module",
        fails_with: "one module cached on disk: []",
    },
];

/// A test in which an engine may stop an instance later than [`STOP_MARGIN`] after its
/// deadline: a documented allowance, not a gap (the instance stops).
pub struct LateStop {
    /// The engine.
    pub engine: &'static str,
    /// The test, as `file::name`.
    pub test: &'static str,
    /// How much later than [`STOP_MARGIN`].
    pub by: Duration,
    /// Why.
    pub why: &'static str,
}

/// Every late-stop allowance of every engine.
pub const LATE_STOPS: &[LateStop] = &[LateStop {
    engine: "wamr",
    test: "runtime_protocol::the_deadline_also_stops_an_action_waiting_in_the_host",
    by: Duration::from_secs(1),
    why: "WAMR sleeps in one-second steps and checks for the stop between them",
}];

thread_local! {
    /// The test [`run_on`] runs on this thread, as `file::name`.
    static RUNNING: RefCell<String> = const { RefCell::new(String::new()) };
}

/// How long after its deadline the test running on this thread must have stopped an instance
/// on `engine`: [`STOP_MARGIN`], plus the engine's allowance for the test, whose reason is
/// the second value.
pub fn stop_margin(engine: EngineKind) -> (Duration, Option<&'static str>) {
    RUNNING.with_borrow(|test| {
        match LATE_STOPS
            .iter()
            .find(|late| late.engine == engine.name() && late.test == *test)
        {
            Some(late) => (STOP_MARGIN + late.by, Some(late.why)),
            None => (STOP_MARGIN, None),
        }
    })
}

/// Runs `test` on `engine`: a gap must fail as it says, anything else must pass.
pub fn run_on(engine: EngineKind, module: &str, name: &str, test: fn(EngineKind)) {
    // `all::safety::wamr` → `safety::name`.
    let file = module.split("::").nth(1).unwrap_or(module);
    let qualified = format!("{file}::{name}");
    RUNNING.set(qualified.clone());
    let gap = GAPS
        .iter()
        .find(|gap| gap.engine == engine.name() && gap.test == qualified);
    let outcome = std::panic::catch_unwind(|| test(engine));
    match (gap, outcome) {
        (None, Ok(())) => {}
        (None, Err(failure)) => std::panic::resume_unwind(failure),
        (Some(gap), Err(failure)) => {
            let message = ow_common::testing::panic_message(&*failure);
            assert!(
                message.contains(gap.fails_with),
                "{qualified} is a gap of {} ({}) failing with {:?}, but it failed otherwise: \
                 {message}",
                engine.name(),
                gap.why,
                gap.fails_with
            );
        }
        (Some(gap), Ok(())) => panic!(
            "{qualified} is a gap of {} ({}), but it passed: remove the gap",
            engine.name(),
            gap.why
        ),
    }
}
