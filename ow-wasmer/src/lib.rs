//! Wasmer behind ow-wasm's [`WasmRuntime`](ow_common::runtime::WasmRuntime) trait:
//! [`Wasmer`] is the shared host layer ([`Host`]) around [`WasmerEngine`], which is Wasmer 7.4.2
//! with Cranelift and WASI preview 1 from wasmer-wasix 0.704.2.
//!
//! What it does:
//!
//! * Each module is compiled once per content hash (by the host's cache) into a Wasmer engine
//!   of its own, which lives exactly as long as the module: a Wasmer engine frees compiled code
//!   only when it is dropped, so a shared one would keep every module ever loaded.
//! * Every activation gets a fresh store, WASI environment and instance, made, run and dropped
//!   on one of the engine's instance threads, in its own tokio runtime: stdout and stderr
//!   captured, stdin the parameters for a WASI command, argv `["action"]`, the activation's
//!   environment and nothing of the host's, and a root holding only the granted `dir`, at
//!   `/data`.
//! * Per-activation WASI setup is cut to what a preview-1 action uses. Measured here, Wasmer's
//!   usual path, `WasiEnvBuilder::instantiate`, cost 330-440 µs per activation (about 330 µs
//!   even with one shared runtime), ten times Wasmtime's: it defines, in each new store, a host
//!   function for every import of five WASI versions (`wasi`, `wasi_unstable`,
//!   `wasi_snapshot_preview1`, `wasix_32v1`, `wasix_64v1`), probes for dynamic linking and runs
//!   the runtime's import and instance hooks. The engine builds only the `WasiEnv`, defines
//!   preview 1's imports alone (and none for a module that imports no WASI), instantiates with
//!   `Instance::new` and initialises the environment: a warm activation costs about 150 µs end
//!   to end.
//! * The deadline, and dropping the activation, stop the instance: Wasmer's host interrupt for
//!   wasm code, a WASI kill for a guest asleep in WASI, a notice for a wait in `http`.`get`.
//! * Memory is capped per store by custom tunables, tables at
//!   [`MAX_TABLE_ELEMENTS`](ow_common::runtime::MAX_TABLE_ELEMENTS) elements, and a refused
//!   growth of either reads as the memory limit. Wasmer reports no refused `table.grow`: a
//!   compiler middleware makes the compiled code record one.
//! * Linear memories are pooled: an instance's memory is an 8 GiB reservation of the engine's
//!   [`MemoryPool`] (shared with WAMR's, see [`pooled_memory`](vm::pooled_memory)), zeroed and
//!   kept when the instance is dropped, so a warm
//!   activation maps and unmaps nothing and faults in no page the last one touched.
//! * `http`.`get` for actions granted `net_access`.
//! * Precompiled artifacts ([`precompile`]) load when the operator trusts them, after their
//!   header and layout are checked.
//!
//! What it does not:
//!
//! * An activation that waits (a WASI sleep, `http`.`get`) holds its thread: a Wasmer store is
//!   not `Send` and its calls block, and Wasmer's async host functions cannot be suspended two
//!   at a time on one thread with host interrupts on (`InterruptInstallGuard dropped out of
//!   order`). So the engine has at most 512 instance slots (fewer with a lower
//!   `--max-instances`), and later activations wait for one until their deadline.
//! * Copy-on-write memory images: each instance copies its data segments into its memory.
//! * Components, and WASIX: core modules importing WASI preview 1 only.
//! * Portable artifacts: one compiled here needs the CPU features of the machine that made it.
//! * Room for another user of SIGUSR1 in the process: Wasmer's host interrupt takes it.

#![deny(missing_docs)]

mod artifact;
mod compiler;
mod http;
mod instance;
mod stdio;
mod stop;
#[cfg(test)]
mod tests;
mod threads;
mod vm;

use instance::ActionSetup;
pub use instance::WasmerLinked;
use ow_common::abi;
use ow_common::code::ModuleFormat;
use ow_common::host::abi::{ExportedFunction, GuestAbi, ValueType};
use ow_common::host::admission::WASI_P1_MODULE;
use ow_common::host::memory_pool::MemoryPool;
use ow_common::host::{Engine, Host, ModuleInterface};
use ow_common::runtime::{ActionConfig, EngineConfig, InitError};
use std::sync::Arc;
use stop::Stopper;
use threads::InstanceThreads;
use wasmer::{ExternType, Module};
use wasmer_types::ModuleHash;
use wasmer_wasix::PluggableRuntime;
use wasmer_wasix::runtime::Runtime;
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::virtual_fs::{EmptyFileSystem, FileSystem, host_fs};

/// The engine's name, as `--engine` and `ow-precompiler --engine` spell it.
pub const ENGINE_NAME: &str = "wasmer";

/// Wasmer in the shared host layer: what an executor holds.
pub type Wasmer = Host<WasmerEngine>;

/// The Wasmer engine: compiles and links actions and runs their instances.
pub struct WasmerEngine {
    shared: Arc<Shared>,
}

/// What every instance of an engine shares.
pub(crate) struct Shared {
    /// Where instances run.
    pub(crate) threads: InstanceThreads,
    /// Who stops them.
    pub(crate) stopper: Stopper,
    /// WASI's view of the engine's runtime (its task manager).
    pub(crate) wasi_runtime: Arc<dyn Runtime + Send + Sync>,
    /// The root of an action granted no directory.
    pub(crate) empty_fs: Arc<dyn FileSystem + Send + Sync>,
    /// Instances' linear memories, reused.
    pub(crate) memory_pool: Arc<MemoryPool>,
}

impl std::fmt::Debug for WasmerEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmerEngine")
            .field("instance_threads", &self.shared.threads.instance_threads())
            .finish_non_exhaustive()
    }
}

/// A compiled module and the Wasmer engine holding its code. The module is declared first, so
/// it goes before its engine.
pub struct WasmerModule {
    module: Module,
    engine: wasmer::Engine,
    /// What its instances' WASI environments name the module by. wasmer-wasix keys its journal
    /// and module cache by this hash, neither of which ow-wasm uses, and draws a random one
    /// (a `getrandom` call) for every environment built without one; one drawn per module
    /// serves as well.
    wasi_hash: ModuleHash,
}

impl WasmerModule {
    pub(crate) fn new(module: Module, engine: wasmer::Engine) -> Self {
        Self {
            module,
            engine,
            wasi_hash: ModuleHash::random(),
        }
    }

    fn imports(&self, module: &str, name: &str) -> bool {
        self.module
            .imports()
            .any(|import| import.module() == module && import.name() == name)
    }

    /// The names of the functions the module imports from `module`.
    fn imported_functions(&self, module: &str) -> Vec<String> {
        self.module
            .imports()
            .functions()
            .filter(|import| import.module() == module)
            .map(|import| import.name().to_owned())
            .collect()
    }
}

impl std::fmt::Debug for WasmerModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmerModule").finish_non_exhaustive()
    }
}

impl Engine for WasmerEngine {
    type Module = WasmerModule;
    type Linked = WasmerLinked;

    const NAME: &'static str = ENGINE_NAME;
    const ARTIFACT: Option<ModuleFormat> = Some(ModuleFormat::WasmerArtifact);
    const WASM_SIMD: bool = true;

    fn new(config: &EngineConfig) -> anyhow::Result<Self> {
        let threads = InstanceThreads::start(config.max_instances as usize)
            .map_err(|e| anyhow::anyhow!("cannot start the Wasmer engine's runtime: {e}"))?;
        let stopper = Stopper::start()
            .map_err(|e| anyhow::anyhow!("cannot start the Wasmer engine's stopper thread: {e}"))?;
        let wasi_runtime = {
            let _context = threads.handle().enter();
            PluggableRuntime::new(Arc::new(TokioTaskManager::new(threads.handle().clone())))
        };
        let memory_pool = Arc::new(vm::pooled_memory::memory_pool(threads.instance_threads()));
        Ok(Self {
            shared: Arc::new(Shared {
                threads,
                stopper,
                wasi_runtime: Arc::new(wasi_runtime),
                empty_fs: Arc::new(EmptyFileSystem::default()),
                memory_pool,
            }),
        })
    }

    fn compile(&self, wasm: &[u8]) -> Result<WasmerModule, InitError> {
        let (module, engine) = compiler::compile(wasm)?;
        Ok(WasmerModule::new(module, engine))
    }

    fn compile_artifact(wasm: &[u8]) -> Result<Vec<u8>, InitError> {
        artifact::serialize(wasm)
    }

    fn load_trusted_artifact(&self, artifact: &[u8]) -> Result<WasmerModule, InitError> {
        artifact::load(artifact)
    }

    fn serialize(&self, module: &WasmerModule) -> Option<Vec<u8>> {
        module
            .module
            .serialize()
            .ok()
            .map(|artifact| artifact.to_vec())
    }

    fn fingerprint(&self) -> String {
        // Artifacts record only their format version (and the CPU features they need, which
        // loading checks): the release and the format name the compatible ones.
        ow_common::host::fingerprint_of(("wasmer 7.4.2", artifact::FORMAT_VERSION))
    }

    fn interface(&self, module: &WasmerModule) -> ModuleInterface {
        let functions = module
            .module
            .exports()
            .filter_map(|export| match export.ty() {
                ExternType::Function(ty) => {
                    let params = ty.params().iter().map(value_type);
                    let results = ty.results().iter().map(value_type);
                    Some(ExportedFunction::new(export.name(), params, results))
                }
                _ => None,
            });
        // Wasmer's import types own their names.
        let imports = module
            .module
            .imports()
            .map(|import| (import.module().to_owned(), import.name().to_owned()));
        ModuleInterface::new(functions, imports)
    }

    fn link(
        &self,
        module: &Arc<WasmerModule>,
        _guest_abi: &GuestAbi,
        config: &ActionConfig,
    ) -> Result<WasmerLinked, InitError> {
        let capabilities = &config.capabilities;
        let data_dir = match &capabilities.dir {
            None => None,
            Some(dir) => {
                // Rooted at the directory once per action: it is canonicalized here.
                let dir_fs = host_fs::FileSystem::new(self.shared.threads.handle().clone(), dir)
                    .map_err(|e| {
                        InitError::Capability(format!(
                            "the dir annotation names {}, which cannot be opened: {e}",
                            dir.display()
                        ))
                    })?;
                Some(Arc::new(dir_fs) as Arc<dyn FileSystem + Send + Sync>)
            }
        };
        let action = ActionSetup {
            memory_bytes: config.limits.memory_bytes,
            wasi_imports: module.imported_functions(WASI_P1_MODULE),
            http: capabilities.net_access && module.imports(abi::HTTP_MODULE, abi::HTTP_GET_IMPORT),
            data_dir,
        };
        Ok(WasmerLinked {
            module: module.clone(),
            action: Arc::new(action),
            shared: self.shared.clone(),
        })
    }

    fn instance_limit(&self) -> Option<u32> {
        // Each instance holds a thread: no more slots than threads, so that a waiting
        // activation waits for a slot rather than holding one with no instance.
        u32::try_from(self.shared.threads.instance_threads()).ok()
    }
}

/// A Wasmer value type in the host's terms.
fn value_type(ty: &wasmer::Type) -> ValueType {
    match ty {
        wasmer::Type::I32 => ValueType::I32,
        wasmer::Type::I64 => ValueType::I64,
        wasmer::Type::F32 => ValueType::F32,
        wasmer::Type::F64 => ValueType::F64,
        wasmer::Type::V128 => ValueType::V128,
        wasmer::Type::ExternRef => ValueType::ExternRef,
        wasmer::Type::FuncRef => ValueType::FuncRef,
        wasmer::Type::ExceptionRef => ValueType::OtherRef("exnref".to_owned()),
    }
}

/// Compiles a portable module to a Wasmer artifact that an executor started with
/// `--trust-precompiled` loads without compiling. The artifact begins with
/// `wasmer-universal`, then `WASMER\0\0` and Wasmer's artifact format version (24) as a
/// little-endian u32; it runs only on hosts with the CPU features of the one that made it.
pub fn precompile(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    WasmerEngine::compile_artifact(wasm).map_err(|e| anyhow::anyhow!(e.reason()))
}
