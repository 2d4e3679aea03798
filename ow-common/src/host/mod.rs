//! The host layer every engine shares. An engine crate implements [`Engine`] (compile or
//! deserialize a module, describe its exports and imports, link it, and run one fresh instance
//! of it through [`abi::GuestInstance`]); [`Host`] wraps it into a [`WasmRuntime`] with
//! everything that is not the engine's own business:
//!
//! * which code is admitted and how it is loaded ([`admission`]),
//! * the compiled-module cache by content hash ([`modules`]),
//! * the instance slots bounding activations at once ([`slots`]),
//! * the activation flow: a slot until the deadline, log capture with its budget
//!   ([`capture`]), the stdio result line, `proc_exit(0)`, how a stop reads as an error,
//! * the host side of every guest ABI ([`abi`]) and of `http`.`get` ([`http`]),
//! * where a portable module is compiled: here, or in a compiler process ([`compiler_process`]),
//! * returning a compile's freed memory to the system (`heap`),
//! * linear memories reused across activations, for engines that map their own ([`memory_pool`]),
//! * threads for instances that cannot leave the thread they started on ([`thread_pool`]).

pub mod abi;
pub mod admission;
pub mod capture;
pub mod compiler_process;
pub mod disk_cache;
mod heap;
pub mod http;
pub mod memory_pool;
mod metrics;
pub mod modules;
pub mod slots;
pub mod thread_pool;

use crate::code::{ModuleCode, ModuleFormat};
use crate::runtime::{
    ActionConfig, Activation, BoxFuture, CompilePlace, Completion, EngineConfig, EngineStats,
    InitError, PreparedAction, RunError, WasmRuntime,
};
use abi::{ExportedFunction, GuestAbi, Number};
use admission::Load;
use anyhow::Context as _;
use capture::LogCapture;
use disk_cache::DiskCache;
use metrics::HostMetrics;
use modules::ModuleCache;
use slots::{InstanceSlot, InstanceSlots};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long after its deadline an activation whose instance has not stopped is answered
/// anyway (as a timeout). Engines stop instances at the deadline themselves; this bounds an
/// instance that is inside a host call the engine cannot cut short.
pub const STOP_GRACE: Duration = Duration::from_millis(50);

/// The most instances an engine whose every instance holds an OS thread (and its stdio
/// descriptors) runs at once, whatever `--max-instances` says: past it, threads and open
/// files run out before activations do. Such an engine returns it from
/// [`Engine::instance_limit`], so later activations wait for a slot. (Tokio's default bound on
/// blocking threads, where Wasmer's instances once ran.)
pub const MAX_THREAD_BOUND_INSTANCES: u32 = 512;

/// How many bytes of an engine's pooled linear memory stay resident when its instance is
/// dropped: the pages an activation touched, up to this much, are zeroed (or put back to the
/// module's image) in place instead of being given back to the kernel with `madvise`. Giving
/// pages back costs a TLB shootdown (an interrupt to every other core running the process) on
/// the way out, and a page fault (plus, for an image page, another shootdown for its
/// copy-on-write) at the next activation's first touch; a warm SDK action touches tens of
/// pages. Past this much the memory's pages are given back as before, which also bounds what
/// an idle pooled memory keeps. Wasmtime's pool and [`memory_pool`] (Wasmer's and WAMR's)
/// both keep this much.
pub const MEMORY_KEEP_RESIDENT: usize = 1024 * 1024;

/// What an engine crate provides: its own compile, link and instance types. Everything else
/// an activation needs is [`Host`]'s.
pub trait Engine: Send + Sync + Sized + 'static {
    /// Compiled code, shared by every action of the same bytes.
    type Module: Send + Sync + 'static;
    /// A module linked for one action's configuration, ready to instantiate.
    type Linked: LinkedModule;

    /// The engine's name, as `--engine` and `ow-precompiler --engine` spell it.
    const NAME: &'static str;
    /// The format of this engine's precompiled artifacts, when it has any.
    const ARTIFACT: Option<ModuleFormat>;
    /// Whether the engine runs Wasm SIMD (`simd128`) code; one that does not refuses such
    /// code at prepare. The conformance suite holds the engine to what this says.
    const WASM_SIMD: bool;

    /// Builds the engine. Called once per process.
    fn new(config: &EngineConfig) -> anyhow::Result<Self>;

    /// Validates and compiles a portable core module, in this process.
    fn compile(&self, wasm: &[u8]) -> Result<Self::Module, InitError>;

    /// Validates and compiles a portable core module to an artifact
    /// [`Engine::load_trusted_artifact`] loads, without an engine built: what a compiler
    /// process does (`ow-executor compile`) and `ow-precompiler` writes. A module that
    /// does not compile is [`InitError::InvalidModule`]. An engine without artifacts refuses.
    fn compile_artifact(wasm: &[u8]) -> Result<Vec<u8>, InitError>;

    /// Loads one of the engine's own precompiled artifacts. Only called for bytes the
    /// executor trusts: an artifact the operator vouched for (`--trust-precompiled`), what
    /// its own compiler process made ([`compiler_process`]), or what [`Engine::serialize`]
    /// made, read back from the executor's own cache directory with its checksum intact. An
    /// artifact is native code.
    fn load_trusted_artifact(&self, artifact: &[u8]) -> Result<Self::Module, InitError>;

    /// The module as an artifact [`Engine::load_trusted_artifact`] loads, for the on-disk
    /// cache; `None` for an engine without artifacts.
    fn serialize(&self, module: &Self::Module) -> Option<Vec<u8>>;

    /// Names the engine's version and configuration: artifacts made under one fingerprint
    /// are loaded only under the same one.
    fn fingerprint(&self) -> String;

    /// The module's exported functions and its imports.
    fn interface(&self, module: &Self::Module) -> ModuleInterface;

    /// Links the module for one action, granted what `config` grants. For a module already
    /// in memory and no granted directory, this runs on an async worker: it must not block.
    fn link(
        &self,
        module: &Arc<Self::Module>,
        guest_abi: &GuestAbi,
        config: &ActionConfig,
    ) -> Result<Self::Linked, InitError>;

    /// The most instances the engine runs at once, when that bounds the configured instance
    /// slots (an engine whose every instance holds a thread): the host makes no more slots, so
    /// activations beyond it wait for a slot, and the stats say so. `None`, the default: the
    /// configured slots.
    fn instance_limit(&self) -> Option<u32> {
        None
    }
}

/// A short, stable name for a configuration an engine hashes ([`Engine::fingerprint`]): the
/// same value gives the same name in every run of one build.
pub fn fingerprint_of(configuration: impl std::hash::Hash) -> String {
    use std::hash::{BuildHasher, BuildHasherDefault};
    let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(configuration);
    format!("{hash:016x}")
}

/// A linked module: each [`LinkedModule::execute`] is one fresh instance.
pub trait LinkedModule: Send + Sync + 'static {
    /// Instantiates the module and runs one activation through its ABI (with
    /// [`abi::call_abi`]), writing its output to `execution.capture`.
    ///
    /// The engine stops the instance at `execution.deadline` (a stop reads as
    /// [`GuestStop::Interrupted`]); dropping the future stops it too. The instance may live
    /// only as long as `execution.slot`.
    fn execute(&self, execution: Execution) -> impl Future<Output = InstanceEnd> + Send;
}

/// A module's exported functions and imports, as the host's checks need them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleInterface {
    /// The exported functions, with their types.
    pub functions: Vec<ExportedFunction>,
    /// The `(module, name)` of every import.
    pub imports: Vec<(String, String)>,
}

impl ModuleInterface {
    /// The interface of a module with these exported functions and these `(module, name)`
    /// imports.
    pub fn new<M: Into<String>, N: Into<String>>(
        functions: impl IntoIterator<Item = ExportedFunction>,
        imports: impl IntoIterator<Item = (M, N)>,
    ) -> Self {
        Self {
            functions: functions.into_iter().collect(),
            imports: imports
                .into_iter()
                .map(|(module, name)| (module.into(), name.into()))
                .collect(),
        }
    }
}

/// Everything one instance needs.
#[derive(Debug)]
pub struct Execution {
    /// The ABI the module speaks.
    pub guest_abi: GuestAbi,
    /// The largest result the SDK ABI may return, in bytes.
    pub result_limit: u64,
    /// The activation's parameters as JSON: the SDK ABI copies them into the instance, the
    /// stdio ABI reads them on stdin (empty for the export-call ABI, which takes `args`).
    pub params: Vec<u8>,
    /// Whether the parameters are stdin (the stdio ABI).
    pub stdin: bool,
    /// The export-call ABI's arguments, of its function's parameter types (none for the
    /// other ABIs).
    pub args: Vec<Number>,
    /// The activation's environment.
    pub env: Vec<(String, String)>,
    /// Where stdout and stderr go.
    pub capture: LogCapture,
    /// When the instance must be stopped.
    pub deadline: Instant,
    /// The slot the instance stands in, released when it is dropped.
    pub slot: InstanceSlot,
}

/// How one instance ended: the SDK result bytes (nothing for the stdio ABI), or why it
/// stopped.
#[derive(Debug)]
pub struct InstanceEnd {
    /// The result bytes, or the stop.
    pub result: Result<Vec<u8>, GuestStop>,
    /// Whether the memory cap refused a growth of memory or a table during the run.
    pub memory_capped: bool,
}

/// Why an instance stopped before finishing, in terms every engine can say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestStop {
    /// The guest called `proc_exit` with this code.
    Exit(i32),
    /// The engine stopped it at its deadline.
    Interrupted,
    /// It trapped; the engine's description.
    Trap(String),
    /// It trapped for exhausting its call stack (unbounded recursion): a class every engine
    /// recognises in its own terms, reported in the platform's words
    /// ([`sentences::STACK_EXHAUSTED`](crate::protocol::sentences::STACK_EXHAUSTED)).
    StackExhausted,
    /// The host refused it (the ABI's own checks, or an executor failure).
    Refused(RunError),
}

impl InstanceEnd {
    /// What the activation's error is, given the action's memory limit and time limit: a
    /// trap after the memory cap refused a growth is the memory limit, not the trap.
    fn into_outcome(self, memory_limit_bytes: u64, limit_ms: u64) -> Result<Vec<u8>, RunError> {
        let limit_mb = memory_limit_bytes / (1024 * 1024);
        self.result.map_err(|stop| match stop {
            GuestStop::Refused(error) => error,
            GuestStop::Exit(code) => RunError::Exit { code },
            GuestStop::Interrupted => RunError::Timeout { limit_ms },
            GuestStop::Trap(_) if self.memory_capped => RunError::MemoryLimit { limit_mb },
            GuestStop::Trap(trap) => RunError::Trap { trap },
            GuestStop::StackExhausted => RunError::Trap {
                trap: crate::protocol::sentences::STACK_EXHAUSTED.to_owned(),
            },
        })
    }
}

/// Runs `job` (an instance on a thread of its own) to its end, calling `stop` at `deadline`
/// if it is still running then, or as soon as this future is dropped before the job ended:
/// how an engine whose calls block a thread meets [`LinkedModule::execute`]'s contract.
pub async fn stop_at_deadline<T>(
    deadline: Instant,
    job: impl Future<Output = T>,
    stop: impl Fn(),
) -> T {
    let mut guard = StopOnDrop(Some(&stop));
    let mut job = std::pin::pin!(job);
    let ended = tokio::select! {
        ended = &mut job => ended,
        () = tokio::time::sleep_until(deadline.into()) => {
            stop();
            job.await
        }
    };
    guard.0 = None;
    ended
}

struct StopOnDrop<'a, F: Fn()>(Option<&'a F>);

impl<F: Fn()> Drop for StopOnDrop<'_, F> {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            stop();
        }
    }
}

/// An engine wrapped in the shared host layer: the [`WasmRuntime`] an executor holds.
pub struct Host<E: Engine> {
    inner: Arc<HostInner<E>>,
}

struct HostInner<E: Engine> {
    engine: E,
    config: EngineConfig,
    metrics: Arc<HostMetrics>,
    disk: Option<DiskCache>,
    /// Portable modules compiled (not read back from the disk cache).
    compiles: AtomicU64,
    modules: ModuleCache<LoadedModule<E::Module>, InitError>,
    slots: InstanceSlots,
}

/// A loaded module and what the checks need of it, computed once per load.
struct LoadedModule<M> {
    module: Arc<M>,
    interface: ModuleInterface,
}

impl<E: Engine> Clone for Host<E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<E: Engine> fmt::Debug for Host<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Host")
            .field("engine", &E::NAME)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl<E: Engine> Host<E> {
    /// Builds the engine and the host layer around it.
    pub fn start(config: &EngineConfig) -> anyhow::Result<Self> {
        let engine = E::new(config)?;
        let slots = engine
            .instance_limit()
            .map_or(config.max_instances, |limit| {
                limit.min(config.max_instances)
            });
        let disk = match &config.disk_cache {
            None => None,
            Some(disk) => Some(
                DiskCache::open(&disk.dir, E::NAME, &engine.fingerprint(), disk.policy)
                    .with_context(|| {
                        format!(
                            "cannot open the module cache directory {}",
                            disk.dir.display()
                        )
                    })?,
            ),
        };
        Ok(Self {
            inner: Arc::new(HostInner {
                engine,
                disk,
                compiles: AtomicU64::new(0),
                config: config.clone(),
                metrics: Arc::new(HostMetrics::new(E::NAME)),
                modules: ModuleCache::new(config.memory_cache),
                slots: InstanceSlots::new(slots as usize),
            }),
        })
    }

    /// The engine itself.
    pub fn engine(&self) -> &E {
        &self.inner.engine
    }

    fn load(&self, code: &ModuleCode) -> Result<LoadedModule<E::Module>, InitError> {
        let engine = &self.inner.engine;
        let load = admission::admit(
            code.format,
            E::NAME,
            E::ARTIFACT,
            self.inner.config.trust_precompiled,
        )?;
        let module = match load {
            Load::Compile => self.compile(code)?,
            Load::TrustedArtifact => engine.load_trusted_artifact(&code.bytes)?,
        };
        let interface = engine.interface(&module);
        Ok(LoadedModule {
            module: Arc::new(module),
            interface,
        })
    }

    /// The compiled module of portable code: read back from the disk cache when a good entry
    /// is there, else compiled (and written to the disk cache).
    fn compile(&self, code: &ModuleCode) -> Result<E::Module, InitError> {
        let inner = &self.inner;
        let engine = &inner.engine;
        if let Some(disk) = &inner.disk
            && let Some(artifact) = disk.read(&code.hash)
        {
            match engine.load_trusted_artifact(&artifact) {
                Ok(module) => return Ok(module),
                Err(error) => {
                    tracing::warn!(engine = E::NAME, %error, "a module cache entry was refused");
                    disk.reject(&code.hash);
                }
            }
        }
        let (module, artifact) = {
            let _compiling = heap::Compiling::start();
            match &inner.config.compile_in {
                CompilePlace::CompilerProcess(command) if E::ARTIFACT.is_some() => {
                    let artifact = compiler_process::compile(command, E::NAME, &code.bytes)?;
                    let module = engine.load_trusted_artifact(&artifact).map_err(|e| {
                        let reason = match e {
                            InitError::IncompatibleArtifact { reason, .. } => reason,
                            other => other.to_string(),
                        };
                        InitError::Engine(format!(
                            "the compiler process's artifact cannot be loaded: {reason}"
                        ))
                    })?;
                    (module, Some(artifact))
                }
                _ => (engine.compile(&code.bytes)?, None),
            }
        };
        inner.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(disk) = &inner.disk
            && let Some(artifact) = artifact.or_else(|| engine.serialize(&module))
            && let Err(error) = disk.write(&code.hash, &artifact)
        {
            tracing::warn!(
                engine = E::NAME,
                dir = %disk.dir().display(),
                %error,
                "a compiled module could not be written to the module cache"
            );
        }
        Ok(module)
    }

    fn prepare_blocking(
        &self,
        code: &ModuleCode,
        config: ActionConfig,
    ) -> Result<Arc<dyn PreparedAction>, InitError> {
        let inner = &self.inner;
        let size = code.bytes.len() as u64;
        let loaded = inner
            .modules
            .get_or_load(&code.hash, size, || self.load(code))?;
        self.action(&code.hash, loaded, config)
    }

    /// The action over a loaded module (of `hash`): checked and linked.
    fn action(
        &self,
        hash: &[u8; 32],
        loaded: Arc<LoadedModule<E::Module>>,
        config: ActionConfig,
    ) -> Result<Arc<dyn PreparedAction>, InitError> {
        let inner = &self.inner;
        let (guest_abi, linked) = self.check_and_link(&loaded, &config).inspect_err(|_| {
            // Refused code is not worth its place in the cache.
            inner.modules.forget_unused(hash);
        })?;
        Ok(Arc::new(HostedAction::<E> {
            linked,
            guest_abi,
            config,
            slots: inner.slots.clone(),
            metrics: inner.metrics.clone(),
            _loaded: loaded,
        }))
    }

    /// The checks every action passes (an ABI, only granted imports, a real `dir`), then the
    /// engine's link.
    fn check_and_link(
        &self,
        loaded: &LoadedModule<E::Module>,
        config: &ActionConfig,
    ) -> Result<(GuestAbi, E::Linked), InitError> {
        let guest_abi = GuestAbi::detect(&loaded.interface.functions, &config.main)?;
        let imports = loaded.interface.imports.iter();
        admission::check_imports(
            imports.map(|(module, name)| (module.as_str(), name.as_str())),
            &config.capabilities,
        )?;
        admission::check_dir(&config.capabilities)?;
        let linked = self.inner.engine.link(&loaded.module, &guest_abi, config)?;
        Ok((guest_abi, linked))
    }
}

impl<E: Engine> WasmRuntime for Host<E> {
    fn name(&self) -> &'static str {
        E::NAME
    }

    fn runs_wasm_simd(&self) -> bool {
        E::WASM_SIMD
    }

    fn artifact_format(&self) -> Option<ModuleFormat> {
        E::ARTIFACT
    }

    fn prepare(
        &self,
        code: ModuleCode,
        config: ActionConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn PreparedAction>, InitError>> {
        let host = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let metrics = host.inner.metrics.clone();
            // A module already in memory is only checked and linked, microseconds of work,
            // done here: a trip to the blocking pool would cost more (two thread switches).
            // A granted directory is looked at on the disk during the link: that goes there.
            let cached = match &config.capabilities.dir {
                None => host.inner.modules.get(&code.hash),
                Some(_) => None,
            };
            let prepared = match cached {
                Some(loaded) => host.action(&code.hash, loaded, config),
                None => off_the_workers(move || host.prepare_blocking(&code, config)).await,
            };
            metrics.prepare(prepared.as_ref().map(|_| ()), started.elapsed());
            prepared
        })
    }

    fn precache(&self, code: ModuleCode) -> BoxFuture<'_, Result<(), InitError>> {
        let host = self.clone();
        Box::pin(off_the_workers(move || {
            let size = code.bytes.len() as u64;
            host.inner
                .modules
                .get_or_load(&code.hash, size, || host.load(&code))
                .map(drop)
        }))
    }

    fn stats(&self) -> EngineStats {
        let inner = &self.inner;
        let cache = inner.modules.stats();
        EngineStats {
            cached_modules: cache.entries,
            module_loads: cache.loads,
            compiles: inner.compiles.load(Ordering::Relaxed),
            memory_cache: cache,
            disk_cache: inner
                .disk
                .as_ref()
                .map(DiskCache::stats)
                .unwrap_or_default(),
            disk_cache_rejected: inner.disk.as_ref().map_or(0, DiskCache::rejected),
            instances_in_use: inner.slots.in_use(),
            instance_slots: inner.slots.total(),
            waiting_for_instance: inner.slots.waiting(),
        }
    }

    fn metrics(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.inner.metrics.gather(&self.stats())
    }
}

/// Runs a compile (CPU-bound) on tokio's blocking threads, off the async workers.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, InitError> + Send + 'static,
) -> Result<T, InitError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| InitError::Engine(format!("the compile task failed: {e}")))
        .and_then(|done| done)
}

/// A prepared action: a linked module, the ABI it speaks and its configuration.
struct HostedAction<E: Engine> {
    linked: E::Linked,
    guest_abi: GuestAbi,
    config: ActionConfig,
    slots: InstanceSlots,
    metrics: Arc<HostMetrics>,
    /// Keeps the module's cache entry alive while this action is prepared.
    _loaded: Arc<LoadedModule<E::Module>>,
}

impl<E: Engine> fmt::Debug for HostedAction<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostedAction")
            .field("engine", &E::NAME)
            .field("abi", &self.guest_abi)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<E: Engine> PreparedAction for HostedAction<E> {
    fn run(&self, activation: Activation) -> BoxFuture<'_, Completion> {
        Box::pin(async move {
            let started = Instant::now();
            let completion = self.activate(activation).await;
            self.metrics
                .activation(&completion.outcome, started.elapsed());
            completion
        })
    }
}

impl<E: Engine> HostedAction<E> {
    /// One activation end to end: a slot, a fresh instance, its result and its logs.
    async fn activate(&self, activation: Activation) -> Completion {
        let limits = &self.config.limits;
        let limit_ms = u64::try_from(activation.time_limit.as_millis()).unwrap_or(u64::MAX);
        let deadline = activation.deadline;
        // Arguments that do not fit the export are the caller's mistake, answered as the
        // action's own error before any instance is made.
        let (params, args) = match &self.guest_abi {
            GuestAbi::ExportCall { export, .. } => match export.arguments(&activation.params) {
                Ok(args) => (Vec::new(), args),
                Err(refusal) => {
                    let refusal = serde_json::json!({ "error": refusal.to_string() });
                    return Completion::new(Ok(refusal), Default::default());
                }
            },
            _ => (
                serde_json::to_vec(&activation.params).expect("JSON values serialize"),
                Vec::new(),
            ),
        };
        let Some(slot) = self.slots.acquire_until(deadline).await else {
            return Completion::failed(RunError::Timeout { limit_ms });
        };
        tracing::debug!(engine = E::NAME, "instance slot taken");
        let capture = LogCapture::new(limits.log_bytes, limits.result_bytes);
        let stdio = self.guest_abi == GuestAbi::Stdio;
        let execution = Execution {
            guest_abi: self.guest_abi.clone(),
            result_limit: limits.result_bytes,
            params,
            stdin: stdio,
            args,
            env: activation.env,
            capture: capture.clone(),
            deadline,
            slot,
        };
        let ended = tokio::time::timeout_at(
            (deadline + STOP_GRACE).into(),
            self.linked.execute(execution),
        )
        .await;
        let outcome = match ended {
            Ok(end) => end.into_outcome(limits.memory_bytes, limit_ms),
            Err(_elapsed) => Err(RunError::Timeout { limit_ms }),
        };
        // A WASI command that finished (or exited 0) answers on its last stdout line; one that
        // failed answered nothing, and every line it printed is a log.
        let answered_on_stdout =
            stdio && matches!(outcome, Ok(_) | Err(RunError::Exit { code: 0 }));
        let (logs, result_line) = capture.finish(answered_on_stdout);
        let outcome = match outcome {
            Ok(_) | Err(RunError::Exit { code: 0 }) if answered_on_stdout => match result_line {
                None => Err(RunError::NoValidResponse),
                Some((_, len)) if len as u64 > limits.result_bytes => {
                    Err(RunError::ResultTooLarge {
                        size: len as u64,
                        limit: limits.result_bytes,
                    })
                }
                Some((line, _)) => abi::parse_result(&line),
            },
            Ok(bytes) => abi::parse_result(&bytes),
            // An SDK action must return its result; exiting, even with 0, is no answer.
            Err(RunError::Exit { code: 0 }) => Err(RunError::NoValidResponse),
            Err(error) => Err(error),
        };
        Completion::new(outcome, logs)
    }
}
