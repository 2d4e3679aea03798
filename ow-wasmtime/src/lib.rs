//! Wasmtime behind ow-wasm's [`WasmRuntime`] trait, the default engine.
//!
//! One [`wasmtime::Engine`] per process with epoch interruption (a ticker thread) and the
//! pooling instance allocator. Each prepared action is an `InstancePre`; identical module bytes
//! are compiled once (by content hash) and shared. Every activation gets a fresh `Store`, a
//! fresh WASI preview 1 context with in-memory stdio, and its own environment.
//!
//! The pooling allocator has a fixed number of instance slots; activations beyond it wait for a
//! slot (until their deadline) instead of failing. Host functions beyond WASI are capabilities:
//! an action granted `net_access` is linked with [`http`]'s `http`.`get`, any other action is
//! refused at preparation if it imports it.

#![deny(missing_docs)]

mod action;
mod artifact;
mod capture;
mod engine;
mod http;
#[cfg(test)]
mod tests;

pub use engine::WasmtimeConfig;

use action::WasmtimeAction;
use ow_common::code::{ModuleCode, ModuleFormat};
use ow_common::guest::GuestAbi;
use ow_common::runtime::{ActionConfig, BoxFuture, InitError, PreparedAction, WasmRuntime};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Semaphore;
use wasmtime::{Engine, Linker, Module};

/// The engine's name, as `--engine` and `ow-precompiler --engine` spell it.
pub const ENGINE_NAME: &str = "wasmtime";

/// The Wasmtime engine: compiles, caches and links actions.
#[derive(Clone)]
pub struct Wasmtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: WasmtimeConfig,
    /// WASI only: what every action may import.
    wasi_only: Host,
    /// WASI and `http`.`get`: for actions granted `net_access`.
    with_net: Host,
    /// One permit per instance slot of the pooling allocator.
    slots: Arc<Semaphore>,
    /// Compiled modules by the BLAKE3 hash of their bytes, for as long as a prepared action
    /// or [`Inner::recent`] holds them.
    modules: Mutex<HashMap<[u8; 32], Weak<Module>>>,
    /// The most recently prepared modules, newest first, at most `config.kept_modules`:
    /// compiled code outlives its actions this long, and no longer.
    recent: Mutex<VecDeque<Arc<Module>>>,
    /// How many modules were compiled or deserialized (not taken from the cache).
    loads: AtomicU64,
    _ticker: engine::EpochTicker,
}

/// A linker and the names it provides.
struct Host {
    linker: Linker<action::ActivationState>,
    /// Every `(module, name)` the linker provides, to name the imports it does not.
    provided: HashSet<(String, String)>,
}

impl Host {
    fn new(engine: &Engine, net_access: bool) -> anyhow::Result<Self> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(
            &mut linker,
            |state: &mut action::ActivationState| &mut state.wasi,
        )
        .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
        if net_access {
            http::add_to_linker(&mut linker)
                .map_err(|e| anyhow::anyhow!("cannot link http.get: {e}"))?;
        }
        let provided = action::provided_imports(engine, &linker);
        Ok(Self { linker, provided })
    }
}

impl std::fmt::Debug for Wasmtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wasmtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Wasmtime {
    /// Builds the engine, its linkers and its epoch ticker.
    pub fn new(config: WasmtimeConfig) -> anyhow::Result<Self> {
        let engine = engine::build_engine(&config)?;
        let wasi_only = Host::new(&engine, false)?;
        let with_net = Host::new(&engine, true)?;
        let slots = Arc::new(Semaphore::new(config.max_instances as usize));
        let ticker = engine::EpochTicker::start(&engine);
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                config,
                wasi_only,
                with_net,
                slots,
                modules: Mutex::new(HashMap::new()),
                recent: Mutex::new(VecDeque::new()),
                loads: AtomicU64::new(0),
                _ticker: ticker,
            }),
        })
    }

    /// How many distinct modules are compiled and in use by a prepared action.
    pub fn cached_modules(&self) -> usize {
        let mut modules = self.inner.modules.lock().expect("module cache lock");
        modules.retain(|_, module| module.strong_count() > 0);
        modules.len()
    }

    /// How many activations hold an instance slot right now.
    pub fn instances_in_use(&self) -> usize {
        self.inner.config.max_instances as usize - self.inner.slots.available_permits()
    }

    /// How many times a module was compiled or deserialized rather than taken from the cache.
    pub fn module_loads(&self) -> u64 {
        self.inner.loads.load(Ordering::Relaxed)
    }

    /// Compiles (or deserializes) the code, or takes it from the cache.
    fn module(&self, code: &ModuleCode) -> Result<Arc<Module>, InitError> {
        let cached = self
            .inner
            .modules
            .lock()
            .expect("module cache lock")
            .get(&code.hash)
            .and_then(Weak::upgrade);
        if let Some(module) = cached {
            return Ok(module);
        }
        let module = match code.format {
            ModuleFormat::CoreModule => Module::new(&self.inner.engine, &code.bytes)
                .map_err(|e| InitError::InvalidModule(format!("{e:#}")))?,
            ModuleFormat::WasmtimeArtifact => {
                if !self.inner.config.trust_precompiled {
                    return Err(InitError::UntrustedArtifact { found: code.format });
                }
                artifact::deserialize_trusted(&self.inner.engine, &code.bytes)?
            }
            ModuleFormat::WasmerArtifact | ModuleFormat::WamrAot => {
                return Err(InitError::IncompatibleArtifact {
                    found: code.format,
                    engine: ENGINE_NAME,
                    reason: "it was made for another engine".to_owned(),
                });
            }
            found => return Err(InitError::UnsupportedFormat { found }),
        };
        self.inner.loads.fetch_add(1, Ordering::Relaxed);
        let mut modules = self.inner.modules.lock().expect("module cache lock");
        modules.retain(|_, module| module.strong_count() > 0);
        // Two prepares of new code may race: the first to finish is the one kept.
        let module = match modules.get(&code.hash).and_then(Weak::upgrade) {
            Some(first) => first,
            None => {
                let module = Arc::new(module);
                modules.insert(code.hash, Arc::downgrade(&module));
                module
            }
        };
        Ok(module)
    }

    /// Makes `module` the most recently prepared one, letting the oldest kept one go.
    fn keep_recent(&self, module: &Arc<Module>) {
        let mut recent = self.inner.recent.lock().expect("recent modules lock");
        recent.retain(|kept| !Arc::ptr_eq(kept, module));
        recent.push_front(module.clone());
        recent.truncate(self.inner.config.kept_modules);
    }

    fn prepare_blocking(
        &self,
        code: ModuleCode,
        config: ActionConfig,
    ) -> Result<Arc<dyn PreparedAction>, InitError> {
        let module = self.module(&code)?;
        let abi = GuestAbi::detect(
            module
                .exports()
                .filter_map(|export| export.ty().func().is_some().then(|| export.name())),
        )
        .ok_or(InitError::NoEntryPoint)?;
        let host = if config.capabilities.net_access {
            &self.inner.with_net
        } else {
            &self.inner.wasi_only
        };
        let unknown: Vec<String> = module
            .imports()
            .filter(|import| {
                let key = (import.module().to_owned(), import.name().to_owned());
                !host.provided.contains(&key)
            })
            .map(|import| format!("{}.{}", import.module(), import.name()))
            .collect();
        if !unknown.is_empty() {
            return Err(InitError::UnknownImports(unknown));
        }
        let pre = host
            .linker
            .instantiate_pre(&module)
            .map_err(|e| InitError::InvalidModule(format!("{e:#}")))?;
        if let Some(dir) = config.capabilities.dir.as_ref().filter(|dir| !dir.is_dir()) {
            return Err(InitError::Capability(format!(
                "the dir annotation names {}, which is not a directory on the executor's host",
                dir.display()
            )));
        }
        // Only code that prepared counts as recent: refused code is not kept compiled.
        self.keep_recent(&module);
        Ok(Arc::new(WasmtimeAction::new(
            pre,
            module,
            abi,
            config,
            self.inner.slots.clone(),
        )))
    }
}

impl WasmRuntime for Wasmtime {
    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn prepare(
        &self,
        code: ModuleCode,
        config: ActionConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn PreparedAction>, InitError>> {
        let this = self.clone();
        Box::pin(async move {
            // Compilation is CPU-bound: keep it off the async workers.
            tokio::task::spawn_blocking(move || this.prepare_blocking(code, config))
                .await
                .map_err(|e| InitError::Engine(format!("the compile task failed: {e}")))?
        })
    }
}

/// Compiles a portable module to a Wasmtime artifact that an executor started with
/// `--trust-precompiled` loads without compiling.
pub fn precompile(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    let engine = engine::build_engine(&WasmtimeConfig::default())?;
    engine
        .precompile_module(wasm)
        .map_err(|e| anyhow::anyhow!("{e:#}"))
}
