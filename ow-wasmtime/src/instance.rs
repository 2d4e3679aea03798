//! One activation's instance: a fresh store (its WASI context built on first use), an instance
//! from the action's `InstancePre`, the host side of the guest ABI over it, and how Wasmtime's
//! errors read as a [`GuestStop`].

use crate::engine::Ticking;
use crate::stdio::CapturePipe;
use ow_common::abi;
use ow_common::host::abi::{GuestInstance, GuestMemory, Number, NumberType, call_abi};
use ow_common::host::capture::LogCapture;
use ow_common::host::{Execution, GuestStop, InstanceEnd, LinkedModule};
use ow_common::runtime::{ActionConfig, LogStream, RunError};
use std::time::Instant;
use wasmtime::{
    Instance, InstancePre, Memory, ResourceLimiter, Store, Trap, TypedFunc, UpdateDeadline, Val,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// The most elements a table may grow to (the pooling allocator reserves this much per table).
pub(crate) use ow_common::runtime::MAX_TABLE_ELEMENTS;

/// What a store holds for one activation.
pub struct ActivationState {
    /// The WASI context, once built (see [`ActivationState::wasi`]).
    wasi: Option<WasiP1Ctx>,
    /// What the WASI context is built from, until it is.
    wasi_setup: Option<WasiSetup>,
    limiter: MemoryLimiter,
}

impl ActivationState {
    /// A state for a store that never runs an action (listing what a linker provides).
    #[cfg(test)]
    pub(crate) fn empty() -> Self {
        Self {
            wasi: None,
            wasi_setup: None,
            limiter: MemoryLimiter {
                memory_bytes: 0,
                capped: false,
            },
        }
    }

    /// The activation's WASI context, built on the guest's first WASI call: an SDK action
    /// that makes none (no output, no clock, no environment) never pays for one (two
    /// random-number generators, clocks, its tables, a copy of the environment).
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        let setup = &mut self.wasi_setup;
        self.wasi.get_or_insert_with(|| {
            setup
                .take()
                .map_or_else(|| WasiCtxBuilder::new().build_p1(), WasiSetup::build)
        })
    }
}

/// What one activation's WASI context is built from: its output capture, its environment
/// and, for the stdio ABI, its parameters on stdin.
struct WasiSetup {
    capture: LogCapture,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
}

impl WasiSetup {
    /// The context's builder, without the preopened directory (opening one can fail).
    fn builder(self) -> WasiCtxBuilder {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(CapturePipe::new(&self.capture, LogStream::Stdout))
            .stderr(CapturePipe::new(&self.capture, LogStream::Stderr))
            .arg("action")
            .envs(&self.env);
        if let Some(stdin) = self.stdin {
            wasi.stdin(MemoryInputPipe::new(stdin));
        }
        wasi
    }

    fn build(self) -> WasiP1Ctx {
        self.builder().build_p1()
    }
}

/// Caps linear memory and tables, and remembers whether the cap refused a growth.
struct MemoryLimiter {
    memory_bytes: usize,
    capped: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory_bytes;
        self.capped |= !allowed;
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
        self.capped |= !allowed;
        Ok(allowed)
    }
}

/// A module linked for one action.
pub struct WasmtimeLinked {
    pub(crate) pre: InstancePre<ActivationState>,
    pub(crate) config: ActionConfig,
    /// Keeps the engine's epoch advancing while an activation runs.
    pub(crate) ticking: Ticking,
}

impl std::fmt::Debug for WasmtimeLinked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmtimeLinked")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LinkedModule for WasmtimeLinked {
    async fn execute(&self, mut execution: Execution) -> InstanceEnd {
        let mut store = match self.new_store(&mut execution) {
            Ok(store) => store,
            Err(error) => {
                return InstanceEnd {
                    result: Err(GuestStop::Refused(error)),
                    memory_capped: false,
                };
            }
        };
        // While the store runs guest code, instantiation included, the epoch must advance.
        let _ticks = self.ticking.activation();
        let run = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let mut guest = WasmtimeGuest {
                store: &mut store,
                instance,
                memory: None,
            };
            call_abi(
                &mut guest,
                &execution.guest_abi,
                &execution.params,
                &execution.args,
                execution.result_limit,
            )
            .await
        };
        // The epoch stops computation at the deadline; this also cuts a wait in the host.
        let result = match tokio::time::timeout_at(execution.deadline.into(), run).await {
            Err(_elapsed) => Err(GuestStop::Interrupted),
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(error)) => Err(stop_of(&error)),
        };
        InstanceEnd {
            result,
            memory_capped: store.data().limiter.capped,
        }
    }
}

impl WasmtimeLinked {
    /// A fresh store for one activation, with what its WASI context is built from (taking
    /// the environment, and a stdio action's parameters, out of `execution`).
    fn new_store(&self, execution: &mut Execution) -> Result<Store<ActivationState>, RunError> {
        let setup = WasiSetup {
            capture: execution.capture.clone(),
            env: std::mem::take(&mut execution.env),
            // The stdio ABI reads its parameters from stdin alone.
            stdin: execution
                .stdin
                .then(|| std::mem::take(&mut execution.params)),
        };
        let (wasi, wasi_setup) = match &self.config.capabilities.dir {
            // Opening the directory may fail: that refuses the activation before it starts.
            Some(dir) => {
                let mut wasi = setup.builder();
                wasi.preopened_dir(dir, abi::PREOPEN_GUEST_PATH, FsPerms::ReadWrite)
                    .map_err(|e| {
                        RunError::Internal(format!("cannot open the dir {}: {e}", dir.display()))
                    })?;
                (Some(wasi.build_p1()), None)
            }
            None => (None, Some(setup)),
        };
        let memory_bytes = usize::try_from(self.config.limits.memory_bytes).unwrap_or(usize::MAX);
        let state = ActivationState {
            wasi,
            wasi_setup,
            limiter: MemoryLimiter {
                memory_bytes,
                capped: false,
            },
        };
        let mut store = Store::new(self.pre.module().engine(), state);
        store.limiter(|state| &mut state.limiter);
        let deadline = execution.deadline;
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
}

/// The guest ABIs' view of a Wasmtime instance.
struct WasmtimeGuest<'a> {
    store: &'a mut Store<ActivationState>,
    instance: Instance,
    memory: Option<Memory>,
}

impl WasmtimeGuest<'_> {
    fn memory(&mut self) -> wasmtime::Result<Memory> {
        if let Some(memory) = self.memory {
            return Ok(memory);
        }
        let Some(memory) = self
            .instance
            .get_memory(&mut *self.store, abi::MEMORY_EXPORT)
        else {
            wasmtime::bail!(
                "the module exports no memory named `{}`",
                abi::MEMORY_EXPORT
            );
        };
        self.memory = Some(memory);
        Ok(memory)
    }
}

impl GuestMemory for WasmtimeGuest<'_> {
    type Error = wasmtime::Error;

    async fn alloc(&mut self, len: u32) -> wasmtime::Result<u32> {
        let alloc: TypedFunc<u32, u32> = self
            .instance
            .get_typed_func(&mut *self.store, abi::ALLOC_EXPORT)?;
        alloc.call_async(&mut *self.store, len).await
    }

    fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> wasmtime::Result<()> {
        let memory = self.memory()?;
        write_guest(memory, &mut *self.store, ptr, bytes)
    }

    fn read_memory(&mut self, ptr: u32, len: u32) -> wasmtime::Result<Vec<u8>> {
        let memory = self.memory()?;
        read_guest(memory, &*self.store, ptr, len)
    }
}

impl GuestInstance for WasmtimeGuest<'_> {
    async fn call_unit(&mut self, export: &str) -> wasmtime::Result<()> {
        let function: TypedFunc<(), ()> = self.instance.get_typed_func(&mut *self.store, export)?;
        function.call_async(&mut *self.store, ()).await
    }

    async fn call_main(&mut self, ptr: u32, len: u32) -> wasmtime::Result<u64> {
        let main: TypedFunc<(u32, u32), u64> = self
            .instance
            .get_typed_func(&mut *self.store, abi::MAIN_EXPORT)?;
        main.call_async(&mut *self.store, (ptr, len)).await
    }

    async fn call_export(
        &mut self,
        export: &str,
        args: &[Number],
        results: &[NumberType],
    ) -> wasmtime::Result<Vec<Number>> {
        let Some(function) = self.instance.get_func(&mut *self.store, export) else {
            wasmtime::bail!("the module exports no function named `{export}`");
        };
        let args: Vec<Val> = args.iter().map(|&arg| val_of(arg)).collect();
        let mut values = vec![Val::I32(0); results.len()];
        // Wasmtime checks the values against the function's type.
        function
            .call_async(&mut *self.store, &args, &mut values)
            .await?;
        values.iter().map(number_of).collect()
    }
}

/// A number as Wasmtime passes it.
fn val_of(number: Number) -> Val {
    match number {
        Number::I32(value) => Val::I32(value),
        Number::I64(value) => Val::I64(value),
        Number::F32(value) => Val::F32(value.to_bits()),
        Number::F64(value) => Val::F64(value.to_bits()),
    }
}

/// A value Wasmtime returned, as a number.
fn number_of(value: &Val) -> wasmtime::Result<Number> {
    Ok(match value {
        Val::I32(value) => Number::I32(*value),
        Val::I64(value) => Number::I64(*value),
        Val::F32(bits) => Number::F32(f32::from_bits(*bits)),
        Val::F64(bits) => Number::F64(f64::from_bits(*bits)),
        _ => wasmtime::bail!("the function returned a value that is not a number"),
    })
}

/// Copies `bytes` into the guest's memory at `ptr`.
pub(crate) fn write_guest(
    memory: Memory,
    store: impl wasmtime::AsContextMut,
    ptr: u32,
    bytes: &[u8],
) -> wasmtime::Result<()> {
    memory
        .write(store, ptr as usize, bytes)
        .map_err(|_| wasmtime::format_err!("the guest allocator returned a buffer outside memory"))
}

/// Copies `len` bytes out of the guest's memory at `ptr`.
pub(crate) fn read_guest(
    memory: Memory,
    store: impl wasmtime::AsContext,
    ptr: u32,
    len: u32,
) -> wasmtime::Result<Vec<u8>> {
    let mut bytes = vec![0; len as usize];
    memory
        .read(store, ptr as usize, &mut bytes)
        .map_err(|_| wasmtime::format_err!("the guest region lies outside its memory"))?;
    Ok(bytes)
}

/// How a call failed, in the host's terms. Sentinels are downcast, never matched by text.
fn stop_of(error: &wasmtime::Error) -> GuestStop {
    // The ABI's own refusals (a result over the limit) arrive already classified.
    if let Some(refused) = error.downcast_ref::<RunError>() {
        return GuestStop::Refused(refused.clone());
    }
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return GuestStop::Exit(exit.0);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => GuestStop::Interrupted,
        Some(Trap::StackOverflow) => GuestStop::StackExhausted,
        Some(trap) => GuestStop::Trap(trap.to_string()),
        None => GuestStop::Trap(format!("{error:#}")),
    }
}
