//! Packs a WebAssembly module into an ow-wasm action zip, portable or precompiled for an
//! engine so that an executor started with `--trust-precompiled` skips compilation.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use anyhow::{Context, bail};
use ow_common::code::{ModuleFormat, zip_module};

#[cfg(not(any(feature = "wasmtime")))]
compile_error!("ow-precompiler needs at least one engine feature: `wasmtime`");

/// What to put in the zip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// The portable module as it is: any engine compiles it at init.
    None,
    /// A Wasmtime artifact, loaded by `ow-executor --engine wasmtime --trust-precompiled`.
    #[cfg(feature = "wasmtime")]
    Wasmtime,
}

/// Builds the action zip for `wasm`, returning it and the name of its entry.
pub fn package(target: Target, wasm: &[u8]) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let found = ModuleFormat::sniff(wasm);
    if found != ModuleFormat::CoreModule {
        bail!("the input is {found}, not a WebAssembly core module");
    }
    let (entry, bytes) = match target {
        Target::None => ("action.wasm", wasm.to_vec()),
        #[cfg(feature = "wasmtime")]
        Target::Wasmtime => (
            "action.cwasm",
            ow_wasmtime::precompile(wasm).context("Wasmtime cannot compile the module")?,
        ),
    };
    Ok((zip_module(entry, &bytes)?, entry))
}
