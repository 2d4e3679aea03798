//! The `ow-executor` executable itself: how it is linked (`build.rs`: on Linux with glibc) and
//! what `ow-executor engines` says of the engines compiled in.

use object::Endianness;
use object::elf::{DT_RELR, DynamicTag, PT_DYNAMIC};
use object::read::elf::{Dyn, ElfFile64, ProgramHeader};

/// The tags of the executable's dynamic section.
fn dynamic_tags(data: &[u8]) -> Vec<DynamicTag> {
    let elf = ElfFile64::<Endianness>::parse(data).expect("the executor is an ELF64 file");
    let endian = elf.endian();
    let mut tags = Vec::new();
    for header in elf.elf_program_headers() {
        if header.p_type(endian) != PT_DYNAMIC {
            continue;
        }
        let entries = header
            .dynamic(endian, data)
            .expect("a readable dynamic segment")
            .expect("PT_DYNAMIC is a dynamic segment");
        tags.extend(entries.iter().map(|entry| entry.d_tag(endian)));
    }
    tags
}

/// Packed relative relocations keep the loader's 1.7 MB of `R_X86_64_RELATIVE` records out of
/// every executor process (see `build.rs`). Needs GNU ld 2.38 or lld, and glibc 2.36: what
/// Debian 12 ships.
#[test]
fn relative_relocations_are_packed() {
    let path = env!("CARGO_BIN_EXE_ow-executor");
    let data = std::fs::read(path).expect("the executor binary is readable");
    let tags = dynamic_tags(&data);
    assert!(
        tags.contains(&DT_RELR),
        "{path} has no DT_RELR entry: its relative relocations are not packed (an older \
         linker or C library, or build.rs no longer passes -z pack-relative-relocs)"
    );
}

/// `ow-executor engines` lists every engine compiled in, the default first, with what the
/// evaluation and operators ask of it: whether it loads precompiled artifacts and whether it
/// runs Wasm SIMD (which the conformance suite holds each engine to).
#[test]
fn engines_lists_every_engine_compiled_in_with_what_it_runs() {
    use ow_executor::engines::EngineKind;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ow-executor"))
        .arg("engines")
        .output()
        .expect("the executor runs");
    assert!(output.status.success(), "{output:?}");
    let listed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("`engines` prints JSON");
    let listed = listed.as_array().expect("a JSON array");
    let names: Vec<&str> = listed.iter().filter_map(|e| e["name"].as_str()).collect();
    let compiled: Vec<&str> = EngineKind::ALL.iter().map(|kind| kind.name()).collect();
    assert_eq!(
        names, compiled,
        "every engine compiled in, the default first"
    );
    for engine in listed {
        let expected = match engine["name"].as_str() {
            Some("wasmtime") => (true, true),
            Some("wasmer") => (true, true),
            Some("wamr") => (false, false),
            other => panic!("an engine nobody expected: {other:?}"),
        };
        assert_eq!(
            (
                engine["precompiled"].as_bool(),
                engine["wasm_simd"].as_bool()
            ),
            (Some(expected.0), Some(expected.1)),
            "{engine}"
        );
    }
}
