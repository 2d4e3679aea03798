//! Wasmtime behind ow-wasm's [`WasmRuntime`](ow_common::runtime::WasmRuntime) trait, the
//! default engine: [`Wasmtime`] is the shared host layer ([`Host`]) around [`WasmtimeEngine`].
//!
//! What it does: one [`wasmtime::Engine`] per process with the pooling instance allocator and
//! copy-on-write memory images (on Linux 6.7 and later, the pages an activation wrote are reset
//! in place for the next instance rather than given back to the kernel); each prepared action
//! is an `InstancePre`; every activation gets a fresh `Store` and, on its first WASI call, a
//! WASI preview 1 context with in-memory stdio and its own environment. Deadlines stop computation by epoch interruption (a ticker thread) and cut
//! waits in the host (WASI sleeps, `http`.`get`) by dropping the activation's future, so no
//! activation holds a thread while it waits. Memory and tables are capped by a resource
//! limiter. Precompiled Wasmtime artifacts load when the operator trusts them.
//!
//! What it does not: components (core modules only), and the pooling allocator bounds
//! instances at once to its slots (`--max-instances`), each reserving address space.

#![deny(missing_docs)]

mod artifact;
mod engine;
mod http;
mod instance;
mod stdio;
#[cfg(test)]
mod tests;

use instance::{ActivationState, WasmtimeLinked};
use ow_common::code::ModuleFormat;
use ow_common::host::abi::{ExportedFunction, GuestAbi, ValueType};
use ow_common::host::{Engine, Host, ModuleInterface};
use ow_common::runtime::{ActionConfig, EngineConfig, InitError};
use std::sync::Arc;
use wasmtime::{Linker, Module};

/// The engine's name, as `--engine` and `ow-precompiler --engine` spell it.
pub const ENGINE_NAME: &str = "wasmtime";

/// Wasmtime in the shared host layer: what an executor holds.
pub type Wasmtime = Host<WasmtimeEngine>;

/// The Wasmtime engine: compiles and links actions and runs their instances.
pub struct WasmtimeEngine {
    engine: wasmtime::Engine,
    /// WASI only: what every action may import.
    wasi_only: Linker<ActivationState>,
    /// WASI and `http`.`get`: for actions granted `net_access`.
    with_net: Linker<ActivationState>,
    ticker: engine::EpochTicker,
}

impl std::fmt::Debug for WasmtimeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmtimeEngine").finish_non_exhaustive()
    }
}

fn linker(engine: &wasmtime::Engine, net_access: bool) -> anyhow::Result<Linker<ActivationState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, ActivationState::wasi)
        .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
    if net_access {
        http::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link http.get: {e}"))?;
    }
    Ok(linker)
}

impl WasmtimeEngine {
    /// Every `(module, name)` pair the linker for `net_access` provides.
    #[cfg(test)]
    fn provided_imports(&self, net_access: bool) -> std::collections::HashSet<(String, String)> {
        let linker = if net_access {
            &self.with_net
        } else {
            &self.wasi_only
        };
        let mut store = wasmtime::Store::new(&self.engine, ActivationState::empty());
        linker
            .iter(&mut store)
            .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
            .collect()
    }
}

impl Engine for WasmtimeEngine {
    type Module = Module;
    type Linked = WasmtimeLinked;

    const NAME: &'static str = ENGINE_NAME;
    const ARTIFACT: Option<ModuleFormat> = Some(ModuleFormat::WasmtimeArtifact);
    const WASM_SIMD: bool = true;

    fn new(config: &EngineConfig) -> anyhow::Result<Self> {
        let engine = engine::build_engine(config)?;
        Ok(Self {
            wasi_only: linker(&engine, false)?,
            with_net: linker(&engine, true)?,
            ticker: engine::EpochTicker::start(&engine),
            engine,
        })
    }

    fn compile(&self, wasm: &[u8]) -> Result<Module, InitError> {
        // Compiled apart and loaded as the artifact it is: see `engine::build_compiler`.
        artifact::deserialize_own(&self.engine, &Self::compile_artifact(wasm)?)
    }

    /// Compiles `wasm` with a compiler engine of its own (see `engine::build_compiler`): the
    /// module's fault if it does not compile, the executor's if the compiler cannot be built.
    fn compile_artifact(wasm: &[u8]) -> Result<Vec<u8>, InitError> {
        let compiler = engine::build_compiler().map_err(|e| InitError::Engine(format!("{e:#}")))?;
        compiler
            .precompile_module(wasm)
            .map_err(|e| InitError::InvalidModule(format!("{e:#}")))
    }

    fn load_trusted_artifact(&self, artifact: &[u8]) -> Result<Module, InitError> {
        artifact::deserialize_trusted(&self.engine, artifact)
    }

    fn serialize(&self, module: &Module) -> Option<Vec<u8>> {
        module.serialize().ok()
    }

    fn fingerprint(&self) -> String {
        // Wasmtime's own compatibility hash: its version, target and compile settings.
        ow_common::host::fingerprint_of(self.engine.precompile_compatibility_hash())
    }

    fn interface(&self, module: &Module) -> ModuleInterface {
        let functions = module.exports().filter_map(|export| {
            let ty = export.ty().func()?.clone();
            let params = ty.params().map(|ty| value_type(&ty));
            let results = ty.results().map(|ty| value_type(&ty));
            Some(ExportedFunction::new(export.name(), params, results))
        });
        let imports = module
            .imports()
            .map(|import| (import.module(), import.name()));
        ModuleInterface::new(functions, imports)
    }

    fn link(
        &self,
        module: &Arc<Module>,
        _guest_abi: &GuestAbi,
        config: &ActionConfig,
    ) -> Result<WasmtimeLinked, InitError> {
        let linker = if config.capabilities.net_access {
            &self.with_net
        } else {
            &self.wasi_only
        };
        let pre = linker
            .instantiate_pre(module)
            .map_err(|e| InitError::InvalidModule(format!("{e:#}")))?;
        Ok(WasmtimeLinked {
            pre,
            config: config.clone(),
            ticking: self.ticker.ticking(),
        })
    }
}

/// A Wasmtime value type in the host's terms.
fn value_type(ty: &wasmtime::ValType) -> ValueType {
    use wasmtime::{HeapType, ValType};
    match ty {
        ValType::I32 => ValueType::I32,
        ValType::I64 => ValueType::I64,
        ValType::F32 => ValueType::F32,
        ValType::F64 => ValueType::F64,
        ValType::V128 => ValueType::V128,
        ValType::Ref(reference) => match reference.heap_type() {
            HeapType::Func if reference.is_nullable() => ValueType::FuncRef,
            HeapType::Extern if reference.is_nullable() => ValueType::ExternRef,
            _ => ValueType::OtherRef(reference.to_string()),
        },
    }
}

/// Compiles a portable module to a Wasmtime artifact that an executor started with
/// `--trust-precompiled` loads without compiling.
pub fn precompile(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    WasmtimeEngine::compile_artifact(wasm).map_err(|e| anyhow::anyhow!(e.reason()))
}
