//! The one place precompiled native code is loaded: [`deserialize_trusted`].

use ow_common::code::ModuleFormat;
use ow_common::runtime::InitError;
use wasmtime::{Engine, Module};

/// Loads a Wasmtime artifact.
///
/// Only called for bytes the executor trusts, from the three sources that
/// `Engine::load_trusted_artifact` in `ow_common::host` names (the operator's
/// `--trust-precompiled`, the executor's own compiler process, its own checksummed cache): an
/// artifact is native code and a crafted one can do anything the executor can.
pub(crate) fn deserialize_trusted(engine: &Engine, bytes: &[u8]) -> Result<Module, InitError> {
    if Engine::detect_precompiled(bytes).is_none() {
        return Err(InitError::IncompatibleArtifact {
            found: ModuleFormat::WasmtimeArtifact,
            engine: crate::ENGINE_NAME,
            reason: "it is not a Wasmtime module artifact".to_owned(),
        });
    }
    #[allow(unsafe_code)]
    // SAFETY: the bytes come from one of the trusted sources above. Wasmtime itself checks
    // that the artifact was made by this Wasmtime version with a compatible configuration and
    // refuses it otherwise.
    let module = unsafe { Module::deserialize(engine, bytes) };
    module.map_err(|e| InitError::IncompatibleArtifact {
        found: ModuleFormat::WasmtimeArtifact,
        engine: crate::ENGINE_NAME,
        reason: format!("{e:#}"),
    })
}

/// Loads the artifact the compiler engine made of a module a moment ago, in this process (how
/// the engine compiles: see `engine::build_compiler`). The module compiled, so a failure here is
/// the executor's (out of memory for the code, say), not the action's.
pub(crate) fn deserialize_own(engine: &Engine, artifact: &[u8]) -> Result<Module, InitError> {
    #[allow(unsafe_code)]
    // SAFETY: `artifact` is the unmodified output of `Engine::precompile_module` of an engine
    // of this Wasmtime with the code settings of `engine` (both come from `engine::code_config`),
    // which is what `Module::deserialize` requires.
    let module = unsafe { Module::deserialize(engine, artifact) };
    module.map_err(|e| InitError::Engine(format!("the compiled module cannot be loaded: {e:#}")))
}
