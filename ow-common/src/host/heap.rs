//! Returning the allocator's free memory to the system after a compile.
//!
//! A compile allocates its intermediate representation by the MiB on the compiling threads and
//! frees nearly all of it when it ends, but glibc's malloc keeps freed pages in its arenas, so
//! each compile would leave the executor's resident memory that much higher for good. Measured
//! with `ow-evaluation memory`: the first container of a 300 KiB module added 25.6 MiB on
//! Wasmtime, 12.1 MiB once the compile's free memory is returned. It costs about 0.5 ms after a
//! Wasmtime compile of a 188 KiB module (itself tens of milliseconds), 40 µs after WAMR's load.
//!
//! This module holds the one unsafe call of `ow-common`.

#![allow(unsafe_code)]

/// Asks the allocator to return every free page it holds, in every arena, to the system.
pub(super) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes the number of bytes to leave untrimmed at the top of the main
    // heap and touches only the allocator's own state under its own locks; it has no
    // preconditions and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
