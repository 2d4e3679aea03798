//! Returning the allocator's free memory to the system after compiles.
//!
//! A compile allocates its intermediate representation by the MiB on the compiling threads and
//! frees nearly all of it when it ends, but glibc's malloc keeps freed pages in its arenas, so
//! each compile would leave the executor's resident memory that much higher for good. Measured
//! with `ow-evaluation memory`: the first container of a 300 KiB module added 25.6 MiB on
//! Wasmtime, 12.3 MiB once the compile's free memory is returned (about 0.5 ms of work after a
//! Wasmtime compile of tens of milliseconds, 40 µs after WAMR's load). Engines with artifacts
//! now compile in a compiler process (see `compiler_process`); reading and loading its artifact
//! still frees buffers the size of the code, and WAMR still loads in this process.
//!
//! This module holds the one unsafe call of `ow-common`.

#![allow(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// Compiles under way in this process, on any engine.
static COMPILING: AtomicUsize = AtomicUsize::new(0);

/// A compile under way. When the last compile under way ends, the allocator's free memory is
/// returned; while others run it is kept, since they would only fault it back in (returning it
/// after each of 16 concurrent compiles made them 3% slower, after the last one costs nothing).
#[derive(Debug)]
pub(super) struct Compiling(());

impl Compiling {
    pub(super) fn start() -> Self {
        COMPILING.fetch_add(1, Ordering::AcqRel);
        Self(())
    }
}

impl Drop for Compiling {
    fn drop(&mut self) {
        if COMPILING.fetch_sub(1, Ordering::AcqRel) == 1 {
            release_free_memory();
        }
    }
}

/// Asks the allocator to return every free page it holds, in every arena, to the system.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes the number of bytes to leave untrimmed at the top of the main
    // heap and touches only the allocator's own state under its own locks; it has no
    // preconditions and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
