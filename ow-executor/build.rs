//! Links the `ow-executor` binary with packed relative relocations (`DT_RELR`) on Linux.
//!
//! The executable is position-independent (so it keeps address-space randomisation), and a PIE
//! carries one 24-byte `R_X86_64_RELATIVE` record per absolute pointer in its data: about
//! 1.7 MB here, which the dynamic loader reads at every start and which then stays resident in
//! every executor (one process per container in `runtime` mode). Packed, the same relocations
//! take a few kilobytes. GNU ld (2.38 and later) and lld pack them only when the C library
//! supports it (glibc 2.36 and later); older linkers warn and ignore the flag.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
