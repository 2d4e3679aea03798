//! Packs a WebAssembly module into an ow-wasm action zip, portable or precompiled for an
//! engine so that an executor started with `--trust-precompiled` skips compilation.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use anyhow::bail;
use ow_common::code::{ModuleFormat, zip_artifact, zip_module};

#[cfg(not(any(feature = "wasmtime", feature = "wasmer", feature = "wamr")))]
compile_error!("ow-precompiler needs at least one engine feature: `wasmtime`, `wasmer` or `wamr`");

/// What to put in the zip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The portable module as it is: any engine compiles it at init.
    None,
    /// A Wasmtime artifact, loaded by `ow-executor --engine wasmtime --trust-precompiled`.
    #[cfg(feature = "wasmtime")]
    Wasmtime,
    /// A Wasmer artifact, loaded by `ow-executor --engine wasmer --trust-precompiled`.
    #[cfg(feature = "wasmer")]
    Wasmer,
    /// WAMR ahead-of-time code: refused, since making it needs `wamrc`, which no package
    /// registry ships; WAMR runs the portable module (`none`).
    #[cfg(feature = "wamr")]
    Wamr,
}

impl Target {
    /// Whether packaging for this target can succeed: every target but an engine that has no
    /// precompiler of its own (WAMR).
    pub fn can_package(self) -> bool {
        match self {
            #[cfg(feature = "wamr")]
            Self::Wamr => false,
            _ => true,
        }
    }
}

/// Builds the action zip for `wasm`, returning it and the name of its entry.
pub fn package(target: Target, wasm: &[u8]) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let found = ModuleFormat::sniff(wasm);
    if found != ModuleFormat::CoreModule {
        bail!("the input is {found}, not a WebAssembly core module");
    }
    let (entry, artifact) = match target {
        Target::None => return Ok((zip_module("action.wasm", wasm)?, "action.wasm")),
        #[cfg(feature = "wasmtime")]
        Target::Wasmtime => (
            "action.cwasm.lz4",
            ow_wasmtime::precompile(wasm)
                .map_err(|e| e.context("Wasmtime cannot compile the module"))?,
        ),
        #[cfg(feature = "wasmer")]
        Target::Wasmer => (
            "action.wasmu.lz4",
            ow_wasmer::precompile(wasm)
                .map_err(|e| e.context("Wasmer cannot compile the module"))?,
        ),
        #[cfg(feature = "wamr")]
        Target::Wamr => ("action.aot", ow_wamr::precompile(wasm)?),
    };
    Ok((zip_artifact(entry, &artifact)?, entry))
}
