//! The engines compiled into this executor, the one list of them, and how an action gets its
//! engine: `--engine` picks the default, an action's `engine` annotation may pick another.
//! Engines other than the default are built the first time an action asks for one.

use ow_common::capabilities::annotation_pairs;
use ow_common::code::ModuleFormat;
use ow_common::host::Engine;
use ow_common::runtime::{EngineConfig, InitError, WasmRuntime};
use serde_json::Value;
use std::sync::{Arc, OnceLock};

#[cfg(not(any(feature = "wasmtime", feature = "wasmer", feature = "wamr")))]
compile_error!("ow-executor needs at least one engine feature: `wasmtime`, `wasmer` or `wamr`");

/// An engine this executor was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum EngineKind {
    /// Wasmtime (the default): compiled with Cranelift, pooled instances, async host calls.
    #[cfg(feature = "wasmtime")]
    Wasmtime,
    /// Wasmer: compiled with Cranelift.
    #[cfg(feature = "wasmer")]
    Wasmer,
    /// WAMR: the fast interpreter, no compile step.
    #[cfg(feature = "wamr")]
    Wamr,
}

impl Default for EngineKind {
    fn default() -> Self {
        Self::ALL[0]
    }
}

impl EngineKind {
    /// Every engine compiled in, the default first.
    pub const ALL: &'static [Self] = &[
        #[cfg(feature = "wasmtime")]
        Self::Wasmtime,
        #[cfg(feature = "wasmer")]
        Self::Wasmer,
        #[cfg(feature = "wamr")]
        Self::Wamr,
    ];

    /// The engine's name, as `--engine` and the `engine` annotation spell it.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "wasmtime")]
            Self::Wasmtime => ow_wasmtime::ENGINE_NAME,
            #[cfg(feature = "wasmer")]
            Self::Wasmer => ow_wasmer::ENGINE_NAME,
            #[cfg(feature = "wamr")]
            Self::Wamr => ow_wamr::ENGINE_NAME,
        }
    }

    /// The format of the engine's precompiled artifacts, if it has any.
    pub fn artifact(self) -> Option<ModuleFormat> {
        match self {
            #[cfg(feature = "wasmtime")]
            Self::Wasmtime => <ow_wasmtime::WasmtimeEngine as Engine>::ARTIFACT,
            #[cfg(feature = "wasmer")]
            Self::Wasmer => <ow_wasmer::WasmerEngine as Engine>::ARTIFACT,
            #[cfg(feature = "wamr")]
            Self::Wamr => <ow_wamr::WamrEngine as Engine>::ARTIFACT,
        }
    }

    /// Whether the engine runs Wasm SIMD (`simd128`) code.
    pub fn runs_wasm_simd(self) -> bool {
        match self {
            #[cfg(feature = "wasmtime")]
            Self::Wasmtime => <ow_wasmtime::WasmtimeEngine as Engine>::WASM_SIMD,
            #[cfg(feature = "wasmer")]
            Self::Wasmer => <ow_wasmer::WasmerEngine as Engine>::WASM_SIMD,
            #[cfg(feature = "wamr")]
            Self::Wamr => <ow_wamr::WamrEngine as Engine>::WASM_SIMD,
        }
    }

    /// What `ow-executor engines` prints of every engine compiled in, the default first.
    pub fn descriptions() -> Value {
        Value::Array(
            Self::ALL
                .iter()
                .map(|kind| {
                    serde_json::json!({
                        "name": kind.name(),
                        "precompiled": kind.artifact().is_some(),
                        "wasm_simd": kind.runs_wasm_simd(),
                    })
                })
                .collect(),
        )
    }

    /// The engine called `name`, if it is compiled in.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
    }

    /// Builds the engine.
    pub fn build(self, config: &EngineConfig) -> anyhow::Result<Arc<dyn WasmRuntime>> {
        Ok(match self {
            #[cfg(feature = "wasmtime")]
            Self::Wasmtime => Arc::new(ow_wasmtime::Wasmtime::start(config)?),
            #[cfg(feature = "wasmer")]
            Self::Wasmer => Arc::new(ow_wasmer::Wasmer::start(config)?),
            #[cfg(feature = "wamr")]
            Self::Wamr => Arc::new(ow_wamr::Wamr::start(config)?),
        })
    }

    /// Serves as this engine's compiler process (`ow-executor compile ENGINE`).
    pub fn serve_compiler(self) -> std::process::ExitCode {
        use crate::compiler_process::serve;
        match self {
            #[cfg(feature = "wasmtime")]
            Self::Wasmtime => serve::<ow_wasmtime::WasmtimeEngine>(),
            #[cfg(feature = "wasmer")]
            Self::Wasmer => serve::<ow_wasmer::WasmerEngine>(),
            #[cfg(feature = "wamr")]
            Self::Wamr => serve::<ow_wamr::WamrEngine>(),
        }
    }

    /// The names of every engine compiled in, for sentences.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|kind| kind.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The engines of one executor: the default, built at start, and the others on demand.
pub struct Engines {
    default: EngineKind,
    config: EngineConfig,
    built: Vec<(EngineKind, OnceLock<Arc<dyn WasmRuntime>>)>,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field("default", &self.default)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Engines {
    /// The engines, with `default` built now (so a bad configuration fails at start).
    pub fn new(default: EngineKind, config: EngineConfig) -> anyhow::Result<Self> {
        let engines = Self {
            default,
            config,
            built: EngineKind::ALL
                .iter()
                .map(|&kind| (kind, OnceLock::new()))
                .collect(),
        };
        engines.get(default)?;
        Ok(engines)
    }

    /// The default engine.
    pub fn default_engine(&self) -> Arc<dyn WasmRuntime> {
        self.get(self.default)
            .expect("the default engine was built at start")
    }

    /// The engine of `kind`, built on first use.
    pub fn get(&self, kind: EngineKind) -> anyhow::Result<Arc<dyn WasmRuntime>> {
        let (_, cell) = self
            .built
            .iter()
            .find(|(built, _)| *built == kind)
            .expect("every compiled-in engine has a cell");
        if let Some(engine) = cell.get() {
            return Ok(engine.clone());
        }
        let engine = kind.build(&self.config)?;
        // Two first uses may race; both get the one kept.
        Ok(cell.get_or_init(|| engine).clone())
    }

    /// Every engine started so far.
    pub fn started(&self) -> Vec<Arc<dyn WasmRuntime>> {
        self.built
            .iter()
            .filter_map(|(_, cell)| cell.get().cloned())
            .collect()
    }

    /// The engine an action runs on: the one its `engine` annotation names, else the default.
    pub fn for_action(
        &self,
        annotations: Option<&Value>,
    ) -> Result<Arc<dyn WasmRuntime>, InitError> {
        let kind = match engine_annotation(annotations)? {
            None => self.default,
            Some(name) => EngineKind::named(name).ok_or_else(|| InitError::UnavailableEngine {
                asked: name.to_owned(),
                available: EngineKind::names(),
            })?,
        };
        self.get(kind)
            .map_err(|e| InitError::Engine(format!("cannot start {}: {e:#}", kind.name())))
    }
}

/// The engine an action's annotations name, if any.
pub fn engine_annotation(annotations: Option<&Value>) -> Result<Option<&str>, InitError> {
    let pairs = annotation_pairs(annotations).map_err(InitError::Capability)?;
    match pairs.into_iter().find(|(key, _)| *key == "engine") {
        None | Some((_, Value::Null)) => Ok(None),
        Some((_, Value::String(name))) => Ok(Some(name)),
        Some((_, other)) => Err(InitError::UnavailableEngine {
            asked: other.to_string(),
            available: EngineKind::names(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_engine_annotation_picks_a_compiled_in_engine_or_names_those_there_are() {
        let engines = Engines::new(EngineKind::default(), EngineConfig::default()).unwrap();
        for kind in EngineKind::ALL {
            let annotations = json!([{"key": "engine", "value": kind.name().to_uppercase()}]);
            let engine = engines.for_action(Some(&annotations)).unwrap();
            assert_eq!(engine.name(), kind.name());
        }
        assert_eq!(
            engines.for_action(None).unwrap().name(),
            EngineKind::default().name()
        );
        let Err(error) = engines.for_action(Some(&json!({"engine": "v8"}))) else {
            panic!("v8 is no engine of this executor");
        };
        assert_eq!(
            error.to_string(),
            format!(
                "The action asks for the engine v8, which this executor was not built with; \
                 it has {}.",
                EngineKind::names()
            )
        );
    }
}
