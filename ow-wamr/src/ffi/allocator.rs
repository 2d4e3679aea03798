//! WAMR's allocator: linear memories from a pool, everything else from the C heap.
//!
//! WAMR maps a fresh linear memory for every instance, faults in its data segments and the
//! pages the guest touches, and unmaps it when the instance is torn down, with a TLB shootdown
//! to the other cores; under load that was four fifths of an instance's time. Built with
//! `alloc-with-usage` (our vendored `wamrx-sys`), WAMR tells its allocator callbacks which
//! allocations are linear memories, so these callbacks lend each one a reservation of the
//! process's [`MemoryPool`] (`ow-common`'s, shared with ow-wasmer), zeroed and kept when the
//! instance is gone. Runtime data goes to `malloc`, as WAMR's system allocator would.
//!
//! WAMR checks every linear-memory access against the memory's size in software (this build
//! has no hardware bound check), so a reservation needs no guard: it is the 4 GiB a 32-bit
//! memory can grow to, accessible up to the memory's current size. Growing a memory makes
//! more of its reservation accessible, in place.
//!
//! The allocator is WAMR's, so it is the process's: one pool, which keeps idle as many
//! reservations as the largest engine runs instances ([`keep_idle`]).

use super::w;
use ow_common::host::memory_pool::{MemoryPool, Reservation};
use std::collections::HashMap;
use std::ffi::{c_int, c_uint, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

/// `mem_alloc_usage_t`'s `Alloc_For_LinearMemory` (`wasm_export.h`; `wamrx-sys` binds no
/// type that names it). Every other usage is WAMR's runtime data.
const ALLOC_FOR_LINEAR_MEMORY: c_int = 1;

/// The most a 32-bit linear memory holds: 65,536 pages of 64 KiB.
const RESERVATION_BYTES: usize = 1 << 32;

/// The pool and the reservations lent out of it.
static LINEAR_MEMORIES: LazyLock<LinearMemories> =
    LazyLock::new(|| LinearMemories::new(RESERVATION_BYTES));

struct LinearMemories {
    pool: MemoryPool,
    /// The reservations WAMR holds as linear memories, by base address: the one name WAMR
    /// gives a memory when it grows or frees it.
    lent: Mutex<HashMap<usize, Reservation>>,
    /// How many memories were ever lent.
    lends: AtomicU64,
}

impl LinearMemories {
    /// Memories of at most `reservation_bytes`, none kept idle until [`keep_idle`] says.
    fn new(reservation_bytes: usize) -> Self {
        Self {
            pool: MemoryPool::new(reservation_bytes, 0),
            lent: Mutex::new(HashMap::new()),
            lends: AtomicU64::new(0),
        }
    }

    fn lent(&self) -> MutexGuard<'_, HashMap<usize, Reservation>> {
        self.lent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A zeroed memory of `bytes`, or null.
    fn allocate(&self, bytes: usize) -> *mut c_void {
        let mut reservation = match self.pool.take() {
            Ok(reservation) => reservation,
            Err(error) => {
                tracing::warn!(
                    "WAMR asked for a linear memory and none could be reserved: {error}"
                );
                return ptr::null_mut();
            }
        };
        if let Err(error) = reservation.set_accessible(bytes) {
            tracing::warn!("WAMR asked for a linear memory of {bytes} bytes: {error}");
            self.pool.give_back(reservation);
            return ptr::null_mut();
        }
        let base = reservation.base().as_ptr();
        self.lent().insert(base as usize, reservation);
        self.lends.fetch_add(1, Ordering::Relaxed);
        base.cast()
    }

    /// Resizes the memory at `base` in place to `bytes` (bytes added read zero); null when
    /// that fails, the memory then unchanged.
    fn resize(&self, base: *mut c_void, bytes: usize) -> *mut c_void {
        let mut lent = self.lent();
        let Some(reservation) = lent.get_mut(&(base as usize)) else {
            tracing::error!("WAMR resized a linear memory this allocator did not lend");
            return ptr::null_mut();
        };
        match reservation.set_accessible(bytes) {
            Ok(()) => base,
            Err(error) => {
                tracing::warn!("WAMR could not grow a linear memory to {bytes} bytes: {error}");
                ptr::null_mut()
            }
        }
    }

    /// Takes back the memory at `base`: zeroed into the pool, or unmapped.
    fn free(&self, base: *mut c_void) {
        let reservation = self.lent().remove(&(base as usize));
        match reservation {
            Some(reservation) => self.pool.give_back(reservation),
            None => tracing::error!("WAMR freed a linear memory this allocator did not lend"),
        }
    }
}

/// Keeps at least `instances` reservations idle: an engine that runs that many instances at
/// once then maps no memory under a steady load.
pub(crate) fn keep_idle(instances: usize) {
    LINEAR_MEMORIES.pool.keep_at_least(instances);
}

/// How many linear memories WAMR was ever lent: a count that only grows, so a test can tell
/// that its activations' memories came from here while other tests run.
#[cfg(test)]
pub(crate) fn lends() -> u64 {
    LINEAR_MEMORIES.lends.load(Ordering::Relaxed)
}

/// The callbacks for `Alloc_With_Allocator`, with the signatures WAMR calls them with when
/// built with `WAMR_BUILD_ALLOC_WITH_USAGE` (and without `WASM_MEM_ALLOC_WITH_USER_DATA`).
pub(super) fn callbacks() -> w::MemAllocOption {
    w::MemAllocOption {
        allocator: w::MemAllocOption__bindgen_ty_2 {
            malloc_func: allocate as *mut c_void,
            realloc_func: reallocate as *mut c_void,
            free_func: free as *mut c_void,
            user_data: ptr::null_mut(),
        },
    }
}

/// `malloc_func(usage, size)`.
extern "C" fn allocate(usage: c_int, size: c_uint) -> *mut c_void {
    if usage == ALLOC_FOR_LINEAR_MEMORY {
        return LINEAR_MEMORIES.allocate(size as usize);
    }
    // SAFETY: plain `malloc`; WAMR owns the result and gives it back through `free` below.
    unsafe { libc::malloc(size as usize) }
}

/// `realloc_func(usage, full_size_mmaped, ptr, size)`. `full_size_mmaped` is only set with a
/// hardware bound check or shared memory, neither built here.
extern "C" fn reallocate(
    usage: c_int,
    _full_size_mmaped: bool,
    old: *mut c_void,
    size: c_uint,
) -> *mut c_void {
    if usage == ALLOC_FOR_LINEAR_MEMORY {
        if old.is_null() {
            // A memory of no initial pages, growing for the first time.
            return LINEAR_MEMORIES.allocate(size as usize);
        }
        return LINEAR_MEMORIES.resize(old, size as usize);
    }
    // SAFETY: `old` is null or came from `allocate`'s `malloc` or an earlier `realloc`, and
    // WAMR does not use it after this call.
    unsafe { libc::realloc(old, size as usize) }
}

/// `free_func(usage, ptr)`.
extern "C" fn free(usage: c_int, memory: *mut c_void) {
    if usage == ALLOC_FOR_LINEAR_MEMORY {
        LINEAR_MEMORIES.free(memory);
        return;
    }
    // SAFETY: `memory` came from `malloc` or `realloc` above, and WAMR frees it once.
    unsafe { libc::free(memory) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM_PAGE: usize = 64 * 1024;

    fn memories() -> LinearMemories {
        let memories = LinearMemories::new(16 * WASM_PAGE);
        memories.pool.keep_at_least(2);
        memories
    }

    /// The byte at `offset` of the memory at `base`.
    fn byte(base: *mut c_void, offset: usize) -> *mut u8 {
        base.cast::<u8>().wrapping_add(offset)
    }

    #[test]
    fn a_freed_memory_is_lent_again_zeroed() {
        let memories = memories();
        let first = memories.allocate(2 * WASM_PAGE);
        assert!(!first.is_null());
        // SAFETY: inside the two pages just lent.
        unsafe { byte(first, WASM_PAGE + 3).write(42) };
        memories.free(first);
        assert_eq!(memories.pool.idle(), 1);

        let second = memories.allocate(2 * WASM_PAGE);
        assert_eq!(second, first, "the idle reservation is lent again");
        // SAFETY: as above.
        assert_eq!(unsafe { byte(second, WASM_PAGE + 3).read() }, 0);
        assert_eq!(memories.lends.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_memory_grows_in_place_and_reads_zero_where_it_grew() {
        let memories = memories();
        let base = memories.allocate(WASM_PAGE);
        assert_eq!(memories.resize(base, 3 * WASM_PAGE), base);
        // SAFETY: inside the three pages the memory now has.
        assert_eq!(unsafe { byte(base, 3 * WASM_PAGE - 1).read() }, 0);
        assert!(
            memories.resize(base, 17 * WASM_PAGE).is_null(),
            "past the reservation"
        );
        assert_eq!(
            memories.lent()[&(base as usize)].accessible(),
            3 * WASM_PAGE
        );
        memories.free(base);
    }

    #[test]
    fn a_memory_too_large_or_unknown_is_refused_and_nothing_is_lent() {
        let memories = memories();
        assert!(memories.allocate(17 * WASM_PAGE).is_null());
        assert!(memories.lent().is_empty());
        let stranger = 4096 as *mut c_void;
        assert!(memories.resize(stranger, WASM_PAGE).is_null());
        memories.free(stranger);
        assert_eq!(memories.pool.idle(), 1, "the refused reservation went back");
    }
}
