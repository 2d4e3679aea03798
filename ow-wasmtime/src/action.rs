//! One prepared action ([`WasmtimeAction`]) and how it runs an activation: a fresh store and
//! WASI context, instantiate from the `InstancePre`, call through the module's ABI, classify
//! how it ended. An activation first takes one of the engine's instance slots, waiting for one
//! (until its deadline) when all are in use.

use crate::capture::Capture;
use ow_common::abi;
use ow_common::guest::{self, GuestAbi, SdkGuest};
use ow_common::runtime::{
    ActionConfig, Activation, BoxFuture, Completion, PreparedAction, RunError,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use wasmtime::{
    Engine, InstancePre, Linker, Memory, Module, ResourceLimiter, Store, Trap, TypedFunc,
    UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// The most elements a table may grow to (the pooling allocator reserves this much per table).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// What a store holds for one activation.
pub(crate) struct ActivationState {
    pub(crate) wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// Caps linear memory and tables, and remembers whether the cap was what stopped a growth.
struct MemoryLimiter {
    memory_bytes: usize,
    exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes;
        self.exceeded |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables count against the memory limit: a refused growth reads as that limit.
        let allowed = desired <= MAX_TABLE_ELEMENTS;
        self.exceeded |= !allowed;
        Ok(allowed)
    }
}

/// Every `(module, name)` pair the linker provides.
pub(crate) fn provided_imports(
    engine: &Engine,
    linker: &Linker<ActivationState>,
) -> HashSet<(String, String)> {
    let state = ActivationState {
        wasi: WasiCtxBuilder::new().build_p1(),
        limiter: MemoryLimiter {
            memory_bytes: 0,
            exceeded: false,
        },
    };
    let mut store = Store::new(engine, state);
    linker
        .iter(&mut store)
        .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
        .collect()
}

/// An action ready to instantiate.
pub(crate) struct WasmtimeAction {
    pre: InstancePre<ActivationState>,
    /// Keeps the module's entry in the engine's cache alive while this action is prepared.
    _cached: Arc<Module>,
    abi: GuestAbi,
    config: ActionConfig,
    /// The engine's instance slots, shared by every action.
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for WasmtimeAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmtimeAction")
            .field("abi", &self.abi)
            .field("config", &self.config)
            .finish()
    }
}

impl WasmtimeAction {
    pub(crate) fn new(
        pre: InstancePre<ActivationState>,
        cached: Arc<Module>,
        abi: GuestAbi,
        config: ActionConfig,
        slots: Arc<Semaphore>,
    ) -> Self {
        Self {
            pre,
            _cached: cached,
            abi,
            config,
            slots,
        }
    }

    async fn activate(&self, activation: Activation) -> Completion {
        let limit_ms = u64::try_from(activation.time_limit.as_millis()).unwrap_or(u64::MAX);
        // Held until the store (and so the instance) is gone, so the slot is free for the next.
        let slot = tokio::time::timeout_at(activation.deadline.into(), self.slots.acquire()).await;
        let _slot = match slot {
            Ok(Ok(permit)) => permit,
            Err(_elapsed) => return Completion::failed(RunError::Timeout { limit_ms }),
            Ok(Err(closed)) => {
                return Completion::failed(RunError::Internal(format!(
                    "the engine's instance slots are gone: {closed}"
                )));
            }
        };
        let capture = Capture::new(self.config.limits.log_bytes);
        let stdio = self.abi == GuestAbi::Stdio;
        let params = serde_json::to_vec(&activation.params).expect("JSON values serialize");
        let outcome = match self.new_store(&activation, &capture, stdio.then_some(&params)) {
            Err(error) => Err(error),
            Ok(mut store) => {
                let run = self.call(&mut store, &params);
                let ended = tokio::time::timeout_at(activation.deadline.into(), run).await;
                let memory_exceeded = store.data().limiter.exceeded;
                match ended {
                    Err(_elapsed) => Err(RunError::Timeout { limit_ms }),
                    Ok(Ok(result)) => Ok(result),
                    Ok(Err(error)) => Err(classify(
                        &error,
                        limit_ms,
                        memory_exceeded.then_some(&self.config),
                    )),
                }
            }
        };
        // A WASI command that finished answers on its last stdout line; one that failed
        // answered nothing, and every line it printed is a log.
        let answered_on_stdout =
            stdio && matches!(outcome, Ok(_) | Err(RunError::Exit { code: 0 }));
        let (logs, result_line) = capture.finish(answered_on_stdout);
        let outcome = match (outcome, self.abi) {
            (Ok(bytes), GuestAbi::Sdk { .. }) => guest::parse_result(&bytes),
            // A WASI command that finished (or exited 0) answers on its last stdout line.
            (Ok(_), GuestAbi::Stdio) | (Err(RunError::Exit { code: 0 }), GuestAbi::Stdio) => {
                let limit = self.config.limits.result_bytes;
                match result_line {
                    None => Err(RunError::NoValidResponse),
                    Some((_, len)) if len as u64 > limit => Err(RunError::ResultTooLarge {
                        size: len as u64,
                        limit,
                    }),
                    Some((line, _)) => guest::parse_result(&line),
                }
            }
            (Err(RunError::Exit { code: 0 }), GuestAbi::Sdk { .. }) => {
                Err(RunError::NoValidResponse)
            }
            (Err(error), _) => Err(error),
        };
        Completion::new(outcome, logs)
    }

    /// A fresh store and WASI context for one activation.
    fn new_store(
        &self,
        activation: &Activation,
        capture: &Capture,
        stdin: Option<&Vec<u8>>,
    ) -> Result<Store<ActivationState>, RunError> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(capture.stdout())
            .stderr(capture.stderr())
            .arg("action")
            .envs(&activation.env);
        if let Some(stdin) = stdin {
            wasi.stdin(MemoryInputPipe::new(stdin.clone()));
        }
        if let Some(dir) = &self.config.capabilities.dir {
            wasi.preopened_dir(dir, abi::PREOPEN_GUEST_PATH, FsPerms::ReadWrite)
                .map_err(|e| {
                    RunError::Internal(format!("cannot open the dir {}: {e}", dir.display()))
                })?;
        }
        let memory_bytes = usize::try_from(self.config.limits.memory_bytes).unwrap_or(usize::MAX);
        let state = ActivationState {
            wasi: wasi.build_p1(),
            limiter: MemoryLimiter {
                memory_bytes,
                exceeded: false,
            },
        };
        let mut store = Store::new(self.pre.module().engine(), state);
        store.limiter(|state| &mut state.limiter);
        let deadline = activation.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Let other activations use this worker thread, then check again next tick.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(store)
    }

    /// Instantiates and calls the module through its ABI. For the SDK ABI, returns the result
    /// bytes; for the stdio ABI, nothing (the result is on stdout).
    async fn call(
        &self,
        store: &mut Store<ActivationState>,
        params: &[u8],
    ) -> wasmtime::Result<Vec<u8>> {
        let instance = self.pre.instantiate_async(&mut *store).await?;
        match self.abi {
            GuestAbi::Stdio => {
                let start =
                    instance.get_typed_func::<(), ()>(&mut *store, abi::COMMAND_START_EXPORT)?;
                start.call_async(&mut *store, ()).await?;
                Ok(Vec::new())
            }
            GuestAbi::Sdk { reactor } => {
                if reactor {
                    let init =
                        instance.get_typed_func::<(), ()>(&mut *store, abi::REACTOR_INIT_EXPORT)?;
                    init.call_async(&mut *store, ()).await?;
                }
                let Some(memory) = instance.get_memory(&mut *store, abi::MEMORY_EXPORT) else {
                    wasmtime::bail!(
                        "the module exports no memory named `{}`",
                        abi::MEMORY_EXPORT
                    );
                };
                let mut guest = WasmtimeGuest {
                    alloc: instance.get_typed_func(&mut *store, abi::ALLOC_EXPORT)?,
                    main: instance.get_typed_func(&mut *store, abi::MAIN_EXPORT)?,
                    memory,
                    store,
                };
                guest::call_sdk(&mut guest, params, self.config.limits.result_bytes).await
            }
        }
    }
}

impl PreparedAction for WasmtimeAction {
    fn run(&self, activation: Activation) -> BoxFuture<'_, Completion> {
        Box::pin(self.activate(activation))
    }
}

/// The SDK ABI's view of a Wasmtime instance.
struct WasmtimeGuest<'a> {
    store: &'a mut Store<ActivationState>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    main: TypedFunc<(u32, u32), u64>,
}

impl SdkGuest for WasmtimeGuest<'_> {
    type Error = wasmtime::Error;

    async fn alloc(&mut self, len: u32) -> wasmtime::Result<u32> {
        self.alloc.call_async(&mut *self.store, len).await
    }

    async fn call_main(&mut self, ptr: u32, len: u32) -> wasmtime::Result<u64> {
        self.main.call_async(&mut *self.store, (ptr, len)).await
    }

    fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> wasmtime::Result<()> {
        self.memory
            .write(&mut *self.store, ptr as usize, bytes)
            .map_err(|_| {
                wasmtime::format_err!("the guest allocator returned a buffer outside memory")
            })
    }

    fn read_memory(&mut self, ptr: u32, len: u32) -> wasmtime::Result<Vec<u8>> {
        let mut bytes = vec![0; len as usize];
        self.memory
            .read(&*self.store, ptr as usize, &mut bytes)
            .map_err(|_| {
                wasmtime::format_err!("the action returned a result outside its memory")
            })?;
        Ok(bytes)
    }
}

/// Turns how a call failed into the activation's error. Sentinels are downcast, never matched
/// by their text.
fn classify(
    error: &wasmtime::Error,
    limit_ms: u64,
    memory_limit: Option<&ActionConfig>,
) -> RunError {
    // The ABI's own refusals (a result over the limit) arrive already classified.
    if let Some(run_error) = error.downcast_ref::<RunError>() {
        return run_error.clone();
    }
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return RunError::Exit { code: exit.0 };
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        if *trap == Trap::Interrupt {
            return RunError::Timeout { limit_ms };
        }
        if let Some(config) = memory_limit {
            return RunError::MemoryLimit {
                limit_mb: config.limits.memory_bytes / (1024 * 1024),
            };
        }
        return RunError::Trap {
            trap: trap.to_string(),
        };
    }
    if let Some(config) = memory_limit {
        return RunError::MemoryLimit {
            limit_mb: config.limits.memory_bytes / (1024 * 1024),
        };
    }
    RunError::Trap {
        trap: format!("{error:#}"),
    }
}
