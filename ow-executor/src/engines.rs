//! The engines compiled into this executor and how `--engine` picks one.

use ow_common::runtime::WasmRuntime;
use std::sync::Arc;

#[cfg(not(any(feature = "wasmtime")))]
compile_error!("ow-executor needs at least one engine feature: `wasmtime`");

/// An engine this executor was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// Wasmtime (the default).
    #[cfg(feature = "wasmtime")]
    Wasmtime,
}

impl Default for EngineKind {
    fn default() -> Self {
        #[cfg(feature = "wasmtime")]
        return Self::Wasmtime;
    }
}

/// Activations that may run at once unless `--max-instances` says otherwise.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;

/// Engine settings common to every engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Accept precompiled artifacts.
    pub trust_precompiled: bool,
    /// Activations that may run at once.
    pub max_instances: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            trust_precompiled: false,
            max_instances: DEFAULT_MAX_INSTANCES,
        }
    }
}

/// Builds the chosen engine.
pub fn build(kind: EngineKind, options: &EngineOptions) -> anyhow::Result<Arc<dyn WasmRuntime>> {
    match kind {
        #[cfg(feature = "wasmtime")]
        EngineKind::Wasmtime => {
            let mut config = ow_wasmtime::WasmtimeConfig::default();
            config
                .trust_precompiled(options.trust_precompiled)
                .max_instances(options.max_instances);
            Ok(Arc::new(ow_wasmtime::Wasmtime::new(config)?))
        }
    }
}
