//! WAMR 2.4.3 (its fast interpreter, through `wamrx-sys`) behind ow-wasm's
//! [`WasmRuntime`](ow_common::runtime::WasmRuntime) trait: [`Wamr`] is the shared host layer
//! ([`Host`]) around [`WamrEngine`].
//!
//! What it does:
//!
//! * Each module is loaded (validated and prepared for the interpreter) once per content hash;
//!   every activation gets a fresh instance with its own WASI preview 1 context: `argv`
//!   `["action"]`, the activation's environment, the granted directory at `/data` and nothing
//!   else of the host's file system, stdin holding the parameters (stdio ABI), and stdout and
//!   stderr drained from pipes into the log capture while the guest runs, so the log budget
//!   bounds the executor's memory however much an action prints.
//! * Linear memory is capped at the action's memory limit (`max_memory_pages`); a growth the cap
//!   refuses is noticed, so the trap that follows reads as the memory limit.
//! * Linear memories are pooled: WAMR allocates them through the crate's allocator
//!   (`ffi/allocator.rs`), which lends reservations of `ow-common`'s memory pool, zeroed and
//!   kept when the instance is gone. An activation's stdio pipes go back to the engine once
//!   read empty, for the next activation (see `stdio.rs`).
//! * At its deadline an instance is stopped by `wasm_runtime_terminate`: a loop stops within a
//!   millisecond; a wait in `http`.`get` ends at once. That holds for a module's start-up code
//!   too (its start function, a WASI reactor's `_initialize`, and the other exports WAMR calls
//!   while instantiating): WAMR would run it before there is an instance to stop, so each
//!   module is rewritten once, when it is loaded, for WAMR to find none, and every activation
//!   runs it first, in WAMR's order, once per instance (see `startup.rs`). Reading a module
//!   for it takes some 20 µs for 188 KiB, rewriting one some 50 µs, next to WAMR's load of a
//!   few milliseconds. The module's exports are reported as it wrote them.
//! * Imports are checked at prepare: WASI preview 1 functions, and `http`.`get` for actions
//!   granted `net_access`, each with the type the executor provides; anything else is refused.
//! * Traps are reported in WAMR's words, except an exhausted stack (WAMR's three kinds of
//!   "stack overflow"), which reads as on every engine: `call stack exhausted`.
//!
//! What it does not do:
//!
//! * No suspension: WAMR cannot pause a call, so every activation holds one of the crate's
//!   instance threads from instantiation to teardown, while it computes and while it waits (a
//!   WASI sleep, a blocking read, `http`.`get`). Each activation in flight costs one OS thread
//!   and five file descriptors (stdin, and a pipe each for stdout and stderr), so the engine
//!   runs at most [`MAX_THREAD_BOUND_INSTANCES`] at once (fewer with a lower
//!   `--max-instances`), and later activations wait for a slot until their deadline. The pool
//!   of instance threads grows on demand up to that and shrinks when idle; one thread that
//!   has just finished lingers briefly for the next activation.
//! * stdout and stderr are drained separately, so lines the guest writes to the two streams
//!   within the same moment may be recorded in either order (each stream's own order is kept).
//! * A WASI sleep is stopped up to a second late: WAMR sleeps in one-second steps and checks
//!   for the stop between them.
//! * Tables are not capped by the memory limit: WAMR caps a table without a declared maximum
//!   at its own size (1024 elements, or twice the initial size) and reports no refused growth.
//! * No fuel or instruction metering (not compiled into this WAMR); the deadline is the only
//!   bound on computation.
//! * No precompiled artifacts: WAMR's AOT compiler `wamrc` is not shipped by any registry, so
//!   this executor's WAMR runs portable `.wasm` only ([`precompile`] says so).
//! * No components (core modules only).
//!
//! Process-wide effects: WAMR is initialised once and never torn down; it installs a handler
//! for the real-time signal `SIGRTMIN+3`, which it sends its own threads to interrupt blocking
//! WASI calls (moved off WAMR's default `SIGUSR1`, which Wasmer uses), so nothing else in the
//! process may use that signal; its own log lines are silenced.

#![deny(missing_docs)]

mod ffi;
mod http;
mod instance;
mod startup;
mod stdio;
#[cfg(test)]
mod tests;

pub use instance::WamrLinked;

use ffi::ExternKind;
use instance::{ActionSettings, INSTANCE_THREAD_STACK_BYTES, Threads};
use ow_common::code::ModuleFormat;
use ow_common::host::abi::{ExportedFunction, GuestAbi};
use ow_common::host::admission::WASI_P1_MODULE;
use ow_common::host::thread_pool::{INSTANCE_THREAD_LINGER, ThreadPool, ThreadPoolSettings};
use ow_common::host::{Engine, Host, MAX_THREAD_BOUND_INSTANCES, ModuleInterface};
use ow_common::runtime::{ActionConfig, EngineConfig, InitError};
use startup::Startup;
use std::sync::Arc;
use std::time::Duration;
use stdio::IdleStdio;

/// The engine's name, as `--engine` and `ow-precompiler --engine` spell it.
pub const ENGINE_NAME: &str = "wamr";

/// WAMR in the shared host layer: what an executor holds.
pub type Wamr = Host<WamrEngine>;

/// How many threads at most stop instances at once (each stop is brief).
const STOPPER_THREADS: usize = 4;

/// The native stack of a stopper thread.
const STOPPER_THREAD_STACK_BYTES: usize = 128 * 1024;

/// The WAMR engine: loads and links actions and runs their instances on its own threads.
pub struct WamrEngine {
    threads: Arc<Threads>,
    /// Stdio descriptors kept from one activation to the next.
    idle_stdio: Arc<IdleStdio>,
}

impl std::fmt::Debug for WamrEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WamrEngine")
            .field("threads", &self.threads)
            .field("idle_stdio", &self.idle_stdio)
            .finish()
    }
}

/// A loaded module and what prepare needs to know of it.
pub struct WamrModule {
    /// Loaded with its start-up code moved out of instantiation.
    loaded: ffi::Module,
    /// The exports as the module wrote them (not as WAMR loaded them).
    exports: Vec<ffi::Export>,
    imports: Vec<ffi::Import>,
    /// What each activation runs before the ABI's entry point, where WAMR would have run it
    /// while instantiating.
    startup: Startup,
}

impl WamrModule {
    /// Whether its instances can change the file status flags of their stdio: only WASI's
    /// `fd_fdstat_set_flags` does, and a module that does not import it cannot call it.
    fn sets_fd_flags(&self) -> bool {
        self.imports
            .iter()
            .any(|import| import.module == WASI_P1_MODULE && import.name == stdio::SET_FLAGS_IMPORT)
    }
}

impl std::fmt::Debug for WamrModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WamrModule")
            .field("exports", &self.exports)
            .field("imports", &self.imports)
            .finish_non_exhaustive()
    }
}

impl Engine for WamrEngine {
    type Module = WamrModule;
    type Linked = WamrLinked;

    const NAME: &'static str = ENGINE_NAME;
    const ARTIFACT: Option<ModuleFormat> = None;
    /// The fast interpreter runs Wasm SIMD only with the SIMDe library, which WAMR's build
    /// fetches from GitHub: `wamrx-sys` builds it without, and it refuses such code at load.
    const WASM_SIMD: bool = false;

    fn new(config: &EngineConfig) -> anyhow::Result<Self> {
        ffi::init_runtime().map_err(|e| anyhow::anyhow!("cannot start WAMR: {e}"))?;
        let instances = config.max_instances.min(MAX_THREAD_BOUND_INSTANCES) as usize;
        ffi::keep_idle(instances);
        Ok(Self {
            threads: Arc::new(Threads {
                instances: ThreadPool::new(ThreadPoolSettings {
                    name: "ow-wamr-instance",
                    max_threads: instances,
                    stack_bytes: INSTANCE_THREAD_STACK_BYTES,
                    linger: INSTANCE_THREAD_LINGER,
                    on_start: ffi::enter_thread,
                }),
                // Stops are rare and no client waits for one: their threads sleep at once.
                stoppers: ThreadPool::new(ThreadPoolSettings {
                    name: "ow-wamr-stopper",
                    max_threads: STOPPER_THREADS,
                    stack_bytes: STOPPER_THREAD_STACK_BYTES,
                    linger: Duration::ZERO,
                    on_start: ffi::enter_thread,
                }),
            }),
            idle_stdio: Arc::default(),
        })
    }

    /// Refuses: WAMR's artifacts are made by its AOT compiler.
    fn compile_artifact(_wasm: &[u8]) -> Result<Vec<u8>, InitError> {
        Err(InitError::Engine(
            "WAMR precompiles with its AOT compiler wamrc, which no package registry ships, so \
             this executor's WAMR runs portable .wasm only: send the .wasm itself, or zip it \
             with `ow-precompiler --engine none action.wasm -o action.zip`."
                .to_owned(),
        ))
    }

    fn compile(&self, wasm: &[u8]) -> Result<WamrModule, InitError> {
        let deferred = match startup::defer(wasm) {
            Ok(deferred) => deferred,
            Err(why) => {
                // WAMR's own words for a module it refuses as well; one it would load is
                // refused all the same, since its start-up code could not be made stoppable.
                ffi::Module::load(wasm.to_vec()).map_err(InitError::InvalidModule)?;
                return Err(InitError::InvalidModule(format!(
                    "it cannot be parsed: {why}"
                )));
            }
        };
        let loaded =
            ffi::Module::load(deferred.wasm.into_owned()).map_err(InitError::InvalidModule)?;
        Ok(WamrModule {
            exports: deferred.startup.exports(loaded.exports()),
            imports: loaded.imports(),
            startup: deferred.startup,
            loaded,
        })
    }

    fn load_trusted_artifact(&self, _artifact: &[u8]) -> Result<WamrModule, InitError> {
        Err(InitError::IncompatibleArtifact {
            found: ModuleFormat::WamrAot,
            engine: ENGINE_NAME,
            reason: "this WAMR has no AOT loader".to_owned(),
        })
    }

    /// WAMR has no serialized form of a loaded module (its AOT format needs `wamrc`): its
    /// modules are never cached on disk, and loading one is its whole compile.
    fn serialize(&self, _module: &WamrModule) -> Option<Vec<u8>> {
        None
    }

    fn fingerprint(&self) -> String {
        ow_common::host::fingerprint_of("wamr 2.4.3 fast interpreter")
    }

    fn interface(&self, module: &WamrModule) -> ModuleInterface {
        ModuleInterface {
            functions: module
                .exports
                .iter()
                .filter_map(|export| {
                    Some(ExportedFunction {
                        name: export.name.clone(),
                        ty: export.signature.clone()?,
                    })
                })
                .collect(),
            imports: module
                .imports
                .iter()
                .map(|import| (import.module.clone(), import.name.clone()))
                .collect(),
        }
    }

    fn link(
        &self,
        module: &Arc<WamrModule>,
        _guest_abi: &GuestAbi,
        config: &ActionConfig,
    ) -> Result<WamrLinked, InitError> {
        // The host allowed every import's name; WAMR says whether it provides it with that type.
        check_linked(&module.imports)?;
        Ok(WamrLinked {
            module: module.clone(),
            settings: Arc::new(ActionSettings::new(config)?),
            threads: self.threads.clone(),
            idle_stdio: self.idle_stdio.clone(),
        })
    }

    fn instance_limit(&self) -> Option<u32> {
        // Each instance holds a thread: no more slots than threads, so that a waiting
        // activation waits for a slot rather than holding one with no thread to run on.
        Some(MAX_THREAD_BOUND_INSTANCES)
    }
}

/// Refuses an import WAMR did not link: a function of another type than the one provided, or
/// anything that is not a function (the executor provides functions only).
fn check_linked(imports: &[ffi::Import]) -> Result<(), InitError> {
    for import in imports {
        let name = format!("{}.{}", import.module, import.name);
        if import.kind != ExternKind::Function {
            return Err(InitError::InvalidModule(format!(
                "it imports {name} as a {}, and the executor provides only functions there",
                import.kind.noun()
            )));
        }
        if !import.linked {
            return Err(InitError::InvalidModule(format!(
                "it imports {name} with the type {}, which is not the type the executor \
                 provides",
                import
                    .signature
                    .as_ref()
                    .map_or_else(|| "(?)".to_owned(), ToString::to_string)
            )));
        }
    }
    Ok(())
}

/// Would compile a portable module to a WAMR AOT artifact; refuses, because that needs WAMR's
/// compiler.
pub fn precompile(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    WamrEngine::compile_artifact(wasm).map_err(|e| anyhow::anyhow!(e.reason()))
}
