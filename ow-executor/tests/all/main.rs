//! Integration tests: the real `ow-executor` binary on `127.0.0.1:0`, driven over HTTP.
//!
//! The tests of the action protocols and of containment take the engine as a parameter, and
//! [`per_engine!`] runs each on every engine compiled in (`cargo test --all-features` runs all
//! three). What an engine truly cannot do is a gap in [`gaps::GAPS`]: still run, expected to
//! fail.

/// Generates, for each named test function `fn name(engine: EngineKind)`, one `#[test]` per
/// engine compiled in: `wasmtime::name`, `wasmer::name`, `wamr::name`.
macro_rules! per_engine {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "wasmtime")]
        mod wasmtime {
            $(
                #[test]
                fn $test() {
                    $crate::gaps::run_on(
                        ow_executor::engines::EngineKind::Wasmtime,
                        module_path!(),
                        stringify!($test),
                        super::$test,
                    );
                }
            )*
        }
        #[cfg(feature = "wasmer")]
        mod wasmer {
            $(
                #[test]
                fn $test() {
                    $crate::gaps::run_on(
                        ow_executor::engines::EngineKind::Wasmer,
                        module_path!(),
                        stringify!($test),
                        super::$test,
                    );
                }
            )*
        }
        #[cfg(feature = "wamr")]
        mod wamr {
            $(
                #[test]
                fn $test() {
                    $crate::gaps::run_on(
                        ow_executor::engines::EngineKind::Wamr,
                        module_path!(),
                        stringify!($test),
                        super::$test,
                    );
                }
            )*
        }
    };
}

mod examples;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod executable;
mod executor_mode;
mod export_call;
mod gaps;
mod harness;
mod keep_alive;
mod metrics;
mod module_cache;
mod npm_client;
mod precompiled;
mod quickstart;
mod runtime_protocol;
mod safety;
mod standalone;
