//! How the `ow-executor` executable itself is linked (`build.rs`): on Linux with glibc.

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
