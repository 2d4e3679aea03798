//! Packs every example action of the SDK into zips ready for `wsk action create`: `NAME.zip`
//! holds the portable module, `NAME.ENGINE.zip` the artifact of each engine compiled into
//! this precompiler that precompiles. The modules themselves are built for `wasm32-wasip1` by
//! `ow-wasm-action-artifacts` when this example is compiled.
//!
//! `cargo run --release -p ow-precompiler --all-features --example pack_examples [-- DIR]`
//! (default DIR: `target/examples`), or `just examples`.

#![allow(clippy::print_stdout)]

use anyhow::Context;
use clap::ValueEnum;
use ow_precompiler::{Target, package};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/examples".to_owned()),
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // An engine without a precompiler (WAMR) runs the portable zips; say so once.
    let (targets, refused): (Vec<Target>, Vec<Target>) = Target::value_variants()
        .iter()
        .partition(|target| target.can_package());
    for target in refused {
        let error = package(target, b"\0asm\x01\0\0\0").unwrap_err();
        println!("no zips for {}: {error:#}", name_of(target));
    }
    for (name, path) in ow_wasm_action_artifacts::EXAMPLES {
        let wasm = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
        for &target in &targets {
            let file = match target {
                Target::None => format!("{name}.zip"),
                engine => format!("{name}.{}.zip", name_of(engine)),
            };
            let (zip, _) =
                package(target, &wasm).with_context(|| format!("cannot package {name}"))?;
            let out = dir.join(&file);
            std::fs::write(&out, &zip)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} ({} bytes)", out.display(), zip.len());
        }
    }
    Ok(())
}

/// The target's name, as `--engine` spells it.
fn name_of(target: Target) -> String {
    target
        .to_possible_value()
        .expect("no target is skipped")
        .get_name()
        .to_owned()
}
