//! One activation's instance: on a thread of the engine's runtime, a fresh store capped by
//! tunables of its own, a fresh WASI environment and a fresh instance; the host side of the
//! guest ABI over it; and how Wasmer's errors read as a [`GuestStop`].

use crate::compiler::{TABLE_CAP, table_growth_refused};
use crate::stdio::{CaptureFile, StdinBytes};
use crate::stop::{EndOnDrop, Watch};
use crate::vm::{InstanceTunables, ThreadBound};
use crate::{Shared, WasmerModule, http};
use ow_common::abi;
use ow_common::host::abi::{
    GuestInstance, GuestMemory, Number, NumberType, call_abi, complete_now,
};
use ow_common::host::memory_pool::MemoryPool;
use ow_common::host::{Execution, GuestStop, InstanceEnd, LinkedModule, stop_at_deadline};
use ow_common::runtime::{LogStream, RunError};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use wasmer::sys::NativeEngineExt;
use wasmer::sys::vm::TrapCode;
use wasmer::{
    AsStoreRef, Imports, Instance, InstantiationError, Memory, RuntimeError, Store, TypedFunction,
    Value, WasmTypeList,
};
use wasmer_wasix::runtime::Runtime;
use wasmer_wasix::virtual_fs::{FileSystem, MountFileSystem};
use wasmer_wasix::{WasiEnv, WasiError, WasiFunctionEnv, generate_import_object_snapshot1_of};

/// What an action's configuration means for each of its instances, decided once at link.
pub(crate) struct ActionSetup {
    /// The memory limit.
    pub(crate) memory_bytes: u64,
    /// The WASI functions the module imports: its instances are given these and no others,
    /// because every function made costs time at every instantiation, called or not. A module
    /// importing none gets no WASI environment.
    pub(crate) wasi_imports: Vec<String>,
    /// Whether `http`.`get` is linked: the module imports it and the action is granted it.
    pub(crate) http: bool,
    /// The granted directory, mounted at [`abi::PREOPEN_GUEST_PATH`].
    pub(crate) data_dir: Option<Arc<dyn FileSystem + Send + Sync>>,
}

impl ActionSetup {
    /// The WASI functions an instance is given, over `env`: those its module imports.
    pub(crate) fn wasi_functions(&self, store: &mut Store, env: &WasiFunctionEnv) -> Imports {
        generate_import_object_snapshot1_of(store, &env.env, &|name| {
            self.wasi_imports.iter().any(|import| import == name)
        })
    }
}

impl fmt::Debug for ActionSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionSetup")
            .field("memory_bytes", &self.memory_bytes)
            .field("wasi_imports", &self.wasi_imports)
            .field("http", &self.http)
            .field("data_dir", &self.data_dir.is_some())
            .finish()
    }
}

/// A module linked for one action.
pub struct WasmerLinked {
    pub(crate) module: Arc<WasmerModule>,
    pub(crate) action: Arc<ActionSetup>,
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for WasmerLinked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmerLinked")
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

impl LinkedModule for WasmerLinked {
    async fn execute(&self, execution: Execution) -> InstanceEnd {
        let deadline = execution.deadline;
        let watch = Arc::new(Watch::default());
        let job = InstanceJob {
            module: self.module.clone(),
            action: self.action.clone(),
            wasi_runtime: self.shared.wasi_runtime.clone(),
            empty_fs: self.shared.empty_fs.clone(),
            memory_pool: self.shared.memory_pool.clone(),
            watch: watch.clone(),
            _ended: EndOnDrop(watch.clone()),
            execution,
        };
        let threads = &self.shared.threads;
        let ran = async {
            let permit = tokio::select! {
                biased;
                () = watch.stopped() => return stopped_before_running(),
                permit = threads.permit() => permit,
            };
            let ended = match permit {
                Ok(permit) => threads.run(permit, move || job.run()).await,
                Err(error) => Err(error),
            };
            ended.unwrap_or_else(|error| InstanceEnd {
                result: Err(GuestStop::Refused(error)),
                memory_capped: false,
            })
        };
        stop_at_deadline(deadline, ran, || self.shared.stopper.stop(&watch)).await
    }
}

fn stopped_before_running() -> InstanceEnd {
    InstanceEnd {
        result: Err(GuestStop::Interrupted),
        memory_capped: false,
    }
}

/// Everything an instance's thread needs.
struct InstanceJob {
    module: Arc<WasmerModule>,
    action: Arc<ActionSetup>,
    wasi_runtime: Arc<dyn Runtime + Send + Sync>,
    empty_fs: Arc<dyn FileSystem + Send + Sync>,
    memory_pool: Arc<MemoryPool>,
    watch: Arc<Watch>,
    _ended: EndOnDrop,
    execution: Execution,
}

impl InstanceJob {
    /// Makes the instance, runs the activation through its ABI and tears it down, on the
    /// calling thread, which it blocks.
    fn run(mut self) -> InstanceEnd {
        let tunables = InstanceTunables::new(
            self.action.memory_bytes,
            TABLE_CAP,
            self.memory_pool.clone(),
        );
        let capped = tunables.capped();
        let mut engine = self.module.engine.clone();
        engine.set_tunables(tunables);
        let mut store = Store::new(engine);
        let mut instance = None;
        let called = self.instantiate_and_call(&mut store, &mut instance);
        self.watch.end();
        let memory_capped = capped.load(Ordering::Relaxed)
            || instance
                .as_ref()
                .is_some_and(|instance| table_growth_refused(&mut store, instance));
        let result = called.map_err(|error| {
            // However it ended, an instance being stopped was stopped.
            if self.watch.is_stopping() {
                GuestStop::Interrupted
            } else {
                error.into_stop()
            }
        });
        // The instance lives only as long as its slot: drop it first.
        drop(instance);
        drop(store);
        drop(self.execution.slot);
        InstanceEnd {
            result,
            memory_capped,
        }
    }

    fn instantiate_and_call(
        &mut self,
        store: &mut Store,
        instance: &mut Option<Instance>,
    ) -> Result<Vec<u8>, GuestError> {
        let params = std::mem::take(&mut self.execution.params);
        let (params, stdin) = if self.execution.stdin {
            (Vec::new(), params)
        } else {
            (params, Vec::new())
        };
        let execution = &self.execution;
        let mut imports = Imports::new();
        let mut wasi = None;
        if !self.action.wasi_imports.is_empty() {
            let env = self.wasi_env(stdin).map_err(|e| {
                GuestError::Refused(RunError::Internal(format!(
                    "cannot set up WASI for the action: {e}"
                )))
            })?;
            let env = WasiFunctionEnv::new(store, env);
            imports = self.action.wasi_functions(store, &env);
            wasi = Some(env);
        }
        let http = self
            .action
            .http
            .then(|| http::define(store, &mut imports, self.watch.clone(), execution.deadline));
        let process = wasi.as_ref().map(|env| env.data(&*store).process.clone());
        if !self.watch.register(store.interrupter(), process) {
            return Err(GuestError::Stopped);
        }
        let made = Instance::new(store, &self.module.module, &imports)
            .map_err(GuestError::of_instantiation)?;
        let instance = instance.insert(made);
        if let Some(env) = &mut wasi {
            env.initialize(store, instance.clone())
                .map_err(|e| GuestError::Trap(format!("WASI cannot use the instance: {e}")))?;
        }
        if let Some(http) = &http {
            http::attach(http, store, instance);
        }
        let mut guest = WasmerGuest {
            store: ThreadBound::new(store),
            instance,
            memory: None,
            watch: &self.watch,
        };
        complete_now(call_abi(
            &mut guest,
            &execution.guest_abi,
            &params,
            &execution.args,
            execution.result_limit,
        ))
    }

    /// The activation's WASI environment: its own environment variables, argv `["action"]`,
    /// stdio captured, and a root holding nothing but the granted directory at `/data`.
    fn wasi_env(&self, stdin: Vec<u8>) -> Result<WasiEnv, String> {
        let execution = &self.execution;
        let builder = WasiEnv::builder("action")
            .envs(execution.env.iter().map(|(key, value)| (key, value)))
            .runtime(self.wasi_runtime.clone())
            .stdin(Box::new(StdinBytes::new(stdin)))
            .stdout(Box::new(CaptureFile::new(
                &execution.capture,
                LogStream::Stdout,
            )))
            .stderr(Box::new(CaptureFile::new(
                &execution.capture,
                LogStream::Stderr,
            )));
        let mut builder = match &self.action.data_dir {
            Some(dir) => {
                let root = MountFileSystem::new();
                root.mount(abi::PREOPEN_GUEST_PATH, dir.clone())
                    .map_err(|e| format!("cannot mount {}: {e}", abi::PREOPEN_GUEST_PATH))?;
                builder
                    .mount_fs(root)
                    .map_dir(abi::PREOPEN_GUEST_PATH, abi::PREOPEN_GUEST_PATH)
                    .map_err(|e| e.to_string())?
            }
            None => builder.fs(self.empty_fs.clone()),
        };
        builder.set_module_hash(self.module.wasi_hash);
        builder.build().map_err(|e| e.to_string())
    }
}

/// Why a call into an instance, or the host side around it, failed.
#[derive(Debug)]
pub(crate) enum GuestError {
    /// A call into the instance failed: a trap, an exit, an interrupt, or a host function's
    /// error.
    Wasm(RuntimeError),
    /// The host refused the activation (the ABI's own checks).
    Refused(RunError),
    /// What the guest did wrong outside its own code (a bad export, a region outside memory),
    /// reading as a trap.
    Trap(String),
    /// The activation is being stopped.
    Stopped,
}

impl From<RunError> for GuestError {
    fn from(error: RunError) -> Self {
        Self::Refused(error)
    }
}

impl GuestError {
    fn of_instantiation(error: InstantiationError) -> Self {
        match error {
            // The start function ran and failed.
            InstantiationError::Start(error) => Self::Wasm(error),
            // A memory or table over the cap fails here, with the cap's flag set.
            other => Self::Trap(format!("the module cannot be instantiated: {other}")),
        }
    }

    /// The error as a host function returns it to Wasmer, for the guest call to fail with.
    pub(crate) fn into_runtime_error(self) -> RuntimeError {
        match self {
            Self::Wasm(error) => error,
            Self::Refused(error) => RuntimeError::user(Box::new(error)),
            Self::Trap(trap) => RuntimeError::new(trap),
            Self::Stopped => RuntimeError::user(Box::new(Stopped)),
        }
    }

    /// How the instance stopped, in the host's terms. Sentinels are downcast, never matched
    /// by text.
    fn into_stop(self) -> GuestStop {
        let error = match self {
            Self::Wasm(error) => error,
            Self::Refused(error) => return GuestStop::Refused(error),
            Self::Trap(trap) => return GuestStop::Trap(trap),
            Self::Stopped => return GuestStop::Interrupted,
        };
        // Errors of our own host functions come back through the guest's call.
        if let Some(refused) = error.downcast_ref::<RunError>() {
            return GuestStop::Refused(refused.clone());
        }
        if error.downcast_ref::<Stopped>().is_some() {
            return GuestStop::Interrupted;
        }
        if let Some(WasiError::Exit(code)) = error.downcast_ref::<WasiError>() {
            return GuestStop::Exit(code.raw());
        }
        match error.clone().to_trap() {
            Some(TrapCode::HostInterrupt) => GuestStop::Interrupted,
            Some(TrapCode::StackOverflow) => GuestStop::StackExhausted,
            Some(code) => GuestStop::Trap(format!("wasm trap: {}", code.message())),
            None => GuestStop::Trap(error.message()),
        }
    }
}

/// The error of a host function cut short because its activation is being stopped.
#[derive(Debug)]
pub(crate) struct Stopped;

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the activation was stopped")
    }
}

impl std::error::Error for Stopped {}

/// The guest ABIs' view of a Wasmer instance.
struct WasmerGuest<'a> {
    store: ThreadBound<&'a mut Store>,
    instance: &'a Instance,
    memory: Option<Memory>,
    watch: &'a Watch,
}

impl WasmerGuest<'_> {
    fn store(&self) -> &Store {
        self.store.get_ref()
    }

    /// Refuses to enter the guest once the activation is being stopped: an interrupt only
    /// stops a guest that is running.
    fn entering(&self) -> Result<(), GuestError> {
        if self.watch.is_stopping() {
            Err(GuestError::Stopped)
        } else {
            Ok(())
        }
    }

    fn function<Args: WasmTypeList, Rets: WasmTypeList>(
        &self,
        name: &str,
    ) -> Result<TypedFunction<Args, Rets>, GuestError> {
        self.instance
            .exports
            .get_typed_function(self.store(), name)
            .map_err(|e| uncallable(name, &e))
    }

    fn memory(&mut self) -> Result<Memory, GuestError> {
        if let Some(memory) = &self.memory {
            return Ok(memory.clone());
        }
        let memory = self
            .instance
            .exports
            .get_memory(abi::MEMORY_EXPORT)
            .map_err(|_| {
                GuestError::Trap(format!(
                    "the module exports no memory named `{}`",
                    abi::MEMORY_EXPORT
                ))
            })?
            .clone();
        self.memory = Some(memory.clone());
        Ok(memory)
    }
}

impl GuestMemory for WasmerGuest<'_> {
    type Error = GuestError;

    async fn alloc(&mut self, len: u32) -> Result<u32, GuestError> {
        self.entering()?;
        let alloc: TypedFunction<u32, u32> = self.function(abi::ALLOC_EXPORT)?;
        alloc
            .call(&mut **self.store.get(), len)
            .map_err(GuestError::Wasm)
    }

    fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), GuestError> {
        let memory = self.memory()?;
        write_guest(&memory, self.store(), ptr, bytes)
    }

    fn read_memory(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, GuestError> {
        let memory = self.memory()?;
        read_guest(&memory, self.store(), ptr, len)
    }
}

impl GuestInstance for WasmerGuest<'_> {
    async fn call_unit(&mut self, export: &str) -> Result<(), GuestError> {
        self.entering()?;
        let function: TypedFunction<(), ()> = self.function(export)?;
        function
            .call(&mut **self.store.get())
            .map_err(GuestError::Wasm)
    }

    async fn call_main(&mut self, ptr: u32, len: u32) -> Result<u64, GuestError> {
        self.entering()?;
        let main: TypedFunction<(u32, u32), u64> = self.function(abi::MAIN_EXPORT)?;
        main.call(&mut **self.store.get(), ptr, len)
            .map_err(GuestError::Wasm)
    }

    async fn call_export(
        &mut self,
        export: &str,
        args: &[Number],
        _results: &[NumberType],
    ) -> Result<Vec<Number>, GuestError> {
        self.entering()?;
        let function = self
            .instance
            .exports
            .get_function(export)
            .map_err(|e| uncallable(export, &e))?;
        let args: Vec<Value> = args.iter().map(|&arg| value_of(arg)).collect();
        // Wasmer checks the values against the function's type.
        let values = function
            .call(&mut **self.store.get(), &args)
            .map_err(GuestError::Wasm)?;
        values.iter().map(number_of).collect()
    }
}

/// The module's export `name` cannot be called, for the reason `error`.
fn uncallable(name: &str, error: &wasmer::ExportError) -> GuestError {
    GuestError::Trap(format!(
        "the module's `{name}` export cannot be called: {error}"
    ))
}

/// A number as Wasmer passes it.
fn value_of(number: Number) -> Value {
    match number {
        Number::I32(value) => Value::I32(value),
        Number::I64(value) => Value::I64(value),
        Number::F32(value) => Value::F32(value),
        Number::F64(value) => Value::F64(value),
    }
}

/// A value Wasmer returned, as a number.
fn number_of(value: &Value) -> Result<Number, GuestError> {
    match value {
        Value::I32(value) => Ok(Number::I32(*value)),
        Value::I64(value) => Ok(Number::I64(*value)),
        Value::F32(value) => Ok(Number::F32(*value)),
        Value::F64(value) => Ok(Number::F64(*value)),
        _ => Err(GuestError::Trap(
            "the function returned a value that is not a number".to_owned(),
        )),
    }
}

/// Copies `bytes` into the guest's memory at `ptr`.
pub(crate) fn write_guest(
    memory: &Memory,
    store: &impl AsStoreRef,
    ptr: u32,
    bytes: &[u8],
) -> Result<(), GuestError> {
    memory
        .view(store)
        .write(u64::from(ptr), bytes)
        .map_err(|_| {
            GuestError::Trap("the guest allocator returned a buffer outside memory".to_owned())
        })
}

/// Copies `len` bytes out of the guest's memory at `ptr`.
pub(crate) fn read_guest(
    memory: &Memory,
    store: &impl AsStoreRef,
    ptr: u32,
    len: u32,
) -> Result<Vec<u8>, GuestError> {
    let mut bytes = vec![0; len as usize];
    memory
        .view(store)
        .read(u64::from(ptr), &mut bytes)
        .map_err(|_| GuestError::Trap("the guest region lies outside its memory".to_owned()))?;
    Ok(bytes)
}
