//! Returning the allocator's free memory to the system after compiles, and after bursts of
//! activations.
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
//! A burst of activations does the same: each holds its engine's per-instance data (WAMR's
//! execution environment with its 256 KiB interpreter stack, WASI contexts, buffers) on the
//! allocator's per-thread arenas, which keep it when the burst is over. Measured after 1,000
//! concurrent `sleep` activations: a WAMR executor held 181 MiB, 36 MiB once its free memory
//! was returned; Wasmtime 65 and 47 MiB. So when the last activation of a burst larger than the
//! pools keep warm ends, the free memory is returned too.
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

/// More activations at once than this make a burst: as many as the memory pools keep warm
/// ([`WARM_RESERVATIONS`]), so a steady load the pools serve never trims.
///
/// [`WARM_RESERVATIONS`]: super::memory_pool::WARM_RESERVATIONS
const BURST: usize = super::memory_pool::WARM_RESERVATIONS;

/// Instances in flight in this process, on any engine.
static INSTANCES: InFlight = InFlight::new();

/// An instance in flight, for as long as its activation holds its slot. When the last of a
/// burst ends (more than [`BURST`] were in flight since the last time), the allocator's free
/// memory is returned.
#[derive(Debug)]
pub(super) struct InstanceInFlight(());

impl InstanceInFlight {
    pub(super) fn start() -> Self {
        INSTANCES.start();
        Self(())
    }
}

impl Drop for InstanceInFlight {
    fn drop(&mut self) {
        if INSTANCES.end() {
            release_free_memory();
        }
    }
}

/// A count of things in flight and the most at once since it last fell to zero after a burst.
#[derive(Debug)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl InFlight {
    const fn new() -> Self {
        Self {
            now: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
        }
    }

    fn start(&self) {
        let now = self.now.fetch_add(1, Ordering::AcqRel) + 1;
        self.most.fetch_max(now, Ordering::AcqRel);
    }

    /// Counts one end; whether it ended a burst: none is left in flight, and more than
    /// [`BURST`] were at once since the last burst ended.
    fn end(&self) -> bool {
        // The load first: a steady load falls to zero often, and reading the peak leaves its
        // cache line shared where a swap would write it every time.
        self.now.fetch_sub(1, Ordering::AcqRel) == 1
            && self.most.load(Ordering::Acquire) > BURST
            && self.most.swap(0, Ordering::AcqRel) > BURST
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_end_of_a_burst_larger_than_the_warm_set_returns_memory() {
        let in_flight = InFlight::new();
        // A steady load of the warm set's size, ending: no burst.
        for _ in 0..BURST {
            in_flight.start();
        }
        let ends: Vec<bool> = (0..BURST).map(|_| in_flight.end()).collect();
        assert!(!ends.contains(&true), "{BURST} at once is no burst");
        // One more at once is: only the last end says so, once.
        for _ in 0..=BURST {
            in_flight.start();
        }
        let ends: Vec<bool> = (0..=BURST).map(|_| in_flight.end()).collect();
        assert_eq!(ends.iter().filter(|&&ended| ended).count(), 1);
        assert_eq!(ends.last(), Some(&true));
        // What follows is measured afresh.
        in_flight.start();
        assert!(!in_flight.end(), "one activation after a burst is no burst");
    }
}
