//! `ow-precompiler --engine wasmtime|none IN.wasm -o OUT.zip`.

use anyhow::Context;
use clap::Parser;
use ow_precompiler::{Target, package};
use std::path::PathBuf;

/// Packs a WebAssembly module into an ow-wasm action zip.
#[derive(Debug, Parser)]
#[command(name = "ow-precompiler", version, about)]
struct Args {
    /// The engine to precompile for, or `none` to zip the portable module as it is.
    #[arg(long, value_enum)]
    engine: Target,

    /// The module, built for wasm32-wasip1.
    input: PathBuf,

    /// The action zip to write.
    #[arg(short, long)]
    output: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let wasm = std::fs::read(&args.input)
        .with_context(|| format!("cannot read {}", args.input.display()))?;
    let (zip, entry) = package(args.engine, &wasm)
        .with_context(|| format!("cannot package {}", args.input.display()))?;
    std::fs::write(&args.output, &zip)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "wrote {} ({} bytes, {entry})",
            args.output.display(),
            zip.len()
        );
    }
    Ok(())
}
