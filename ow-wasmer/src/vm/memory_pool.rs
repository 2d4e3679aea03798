//! Linear memories reused from one activation to the next.
//!
//! Left to itself, Wasmer maps a fresh 8 GiB reservation for every instance's memory, faults
//! in each page the instance touches (data segments first), and unmaps it all when the
//! instance is dropped. The unmap sends a TLB shootdown to every other core running the
//! process; together this was about two fifths of a Wasmer activation. Here an instance's
//! memory is a [`Reservation`] taken from the engine's [`MemoryPool`], and given back when
//! the instance is dropped, with every byte it held zeroed:
//!
//! * pages the activation touched, up to [`MEMORY_KEEP_RESIDENT`] bytes of them, are zeroed
//!   in place and stay in memory, so the next activation faults nothing in and nothing is
//!   unmapped;
//! * past that, the memory's pages are given back to the kernel (`MADV_DONTNEED`), as Wasmer
//!   would, which also bounds what an idle reservation keeps;
//! * pages the kernel does not report as resident are given back too: a page swapped out
//!   holds data though it is not resident.
//!
//! The next instance's memory is made accessible up to its own initial size and no further,
//! so memory an earlier activation grew traps as any out-of-bounds access does.
//!
//! Only memories of Wasmer's static style are pooled: compiled code relies on their bound and
//! guard (it checks no bounds), and every reservation has exactly that layout.

use super::PAGE_BYTES;
use ow_common::host::MEMORY_KEEP_RESIDENT;
use rustix::mm::{Advice, MapFlags, MprotectFlags, ProtFlags};
use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};
use wasmer::sys::vm::{LinearMemory, MemoryError, MemoryStyle, VMMemoryDefinition};
use wasmer::{MemoryType, Pages};

/// The bytes of a reservation: the 4 GiB a 32-bit memory addresses, then the guard Wasmer's
/// compiled code relies on for a static memory.
const RESERVATION_BYTES: usize = (MemoryStyle::static_bound().0 as usize) * (PAGE_BYTES as usize)
    + MemoryStyle::static_offset_guard_size() as usize;

/// The engine's idle reservations, each holding zeroes only.
#[derive(Debug)]
pub(crate) struct MemoryPool {
    idle: Mutex<Vec<Reservation>>,
    /// The most reservations kept idle: as many as instances that run at once, so a steady
    /// load maps nothing. One given back past this is unmapped.
    max_idle: usize,
}

impl MemoryPool {
    pub(crate) fn new(max_idle: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// An idle reservation, the one given back last (its pages are the likeliest to be in
    /// memory and in the caches), or a new one.
    fn take(&self) -> Result<Reservation, MemoryError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(reservation) => Ok(reservation),
            None => Reservation::new(),
        }
    }

    /// Zeroes a reservation and keeps it for the next instance; one that the pool has no room
    /// for (checked first, so it is not zeroed for nothing), or that cannot be zeroed, is
    /// unmapped.
    fn give_back(&self, mut reservation: Reservation) {
        if self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
            >= self.max_idle
        {
            return;
        }
        if let Err(error) = reservation.zero() {
            tracing::warn!("unmapping a Wasmer memory that could not be zeroed: {error}");
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(reservation);
        }
    }

    /// How many reservations are idle.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One mapping of [`RESERVATION_BYTES`], inaccessible past its first `accessible` bytes. Owned
/// by the pool or by one memory, never both; unmapped when dropped.
#[derive(Debug)]
struct Reservation {
    base: NonNull<u8>,
    accessible: usize,
}

// SAFETY: a reservation is a mapping the process owns; whoever holds the value is the only
// user of its pages (an instance's memory while the instance lives, else the pool), on
// whatever thread that is.
unsafe impl Send for Reservation {}

impl Reservation {
    fn new() -> Result<Self, MemoryError> {
        // SAFETY: a new anonymous mapping at an address the kernel picks overlaps nothing.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                RESERVATION_BYTES,
                ProtFlags::empty(),
                MapFlags::PRIVATE,
            )
        }
        .map_err(|e| MemoryError::Region(format!("cannot reserve a linear memory: {e}")))?;
        let reservation = Self {
            base: NonNull::new(base.cast()).expect("mmap returns no null mapping"),
            accessible: 0,
        };
        // Pages stay 4 KiB: zeroing what an activation touched then zeroes 4 KiB pages, not
        // whole 2 MiB huge pages. Only advice: a kernel without it still works.
        // SAFETY: the range is this reservation's own mapping.
        let _ = unsafe {
            rustix::mm::madvise(
                reservation.at(0),
                RESERVATION_BYTES,
                Advice::LinuxNoHugepage,
            )
        };
        Ok(reservation)
    }

    /// The address `offset` bytes into the reservation.
    fn at(&self, offset: usize) -> *mut c_void {
        debug_assert!(offset <= RESERVATION_BYTES);
        self.base.as_ptr().wrapping_add(offset).cast()
    }

    /// Makes the first `bytes` readable and writable and the rest inaccessible. Bytes made
    /// inaccessible are given back to the kernel, so they read zero when made accessible
    /// again.
    fn set_accessible(&mut self, bytes: usize) -> Result<(), MemoryError> {
        let region = |e| MemoryError::Region(format!("cannot resize a linear memory: {e}"));
        if bytes > RESERVATION_BYTES {
            return Err(MemoryError::Region(format!(
                "a linear memory of {bytes} bytes does not fit its reservation"
            )));
        }
        if bytes > self.accessible {
            // SAFETY: the range lies inside this reservation, which nothing else maps.
            unsafe {
                rustix::mm::mprotect(
                    self.at(self.accessible),
                    bytes - self.accessible,
                    MprotectFlags::READ | MprotectFlags::WRITE,
                )
            }
            .map_err(region)?;
        } else if bytes < self.accessible {
            let len = self.accessible - bytes;
            // SAFETY: as above; no reference into these pages is held (the memory they belong
            // to is being set up or has been dropped).
            unsafe {
                rustix::mm::madvise(self.at(bytes), len, Advice::LinuxDontNeed).map_err(region)?;
                rustix::mm::mprotect(self.at(bytes), len, MprotectFlags::empty())
                    .map_err(region)?;
            }
        }
        self.accessible = bytes;
        Ok(())
    }

    /// Zeroes every accessible byte (see the module's documentation for how).
    fn zero(&mut self) -> Result<(), MemoryError> {
        fn region(error: impl std::fmt::Display) -> MemoryError {
            MemoryError::Region(format!("cannot zero a linear memory: {error}"))
        }
        if self.accessible == 0 {
            return Ok(());
        }
        let page = rustix::param::page_size();
        let pages = self.accessible / page;
        // Made for each call, not kept: an idle reservation would otherwise hold a byte per
        // page of the largest memory it ever had.
        let mut residency = vec![0u8; pages];
        // SAFETY: the range is this reservation's accessible pages, and the vector holds one
        // byte per page, as `mincore` writes.
        let found = unsafe { libc::mincore(self.at(0), self.accessible, residency.as_mut_ptr()) };
        if found != 0 {
            return Err(region(std::io::Error::last_os_error()));
        }
        let resident = residency.iter().filter(|&&page| page & 1 == 1).count();
        if resident * page > MEMORY_KEEP_RESIDENT {
            return self.give_pages_back(0, self.accessible).map_err(region);
        }
        let mut start = 0;
        while start < pages {
            let in_memory = residency[start] & 1 == 1;
            let end = residency[start..]
                .iter()
                .position(|&page| (page & 1 == 1) != in_memory)
                .map_or(pages, |run| start + run);
            if in_memory {
                for index in start..end {
                    self.zero_resident_page(index * page, page);
                }
            } else {
                self.give_pages_back(start * page, (end - start) * page)
                    .map_err(region)?;
            }
            start = end;
        }
        Ok(())
    }

    /// Writes zeroes over one accessible page that is in memory, unless it reads zero already:
    /// a page only ever read is the kernel's shared zero page, and writing it would give it a
    /// page of its own.
    fn zero_resident_page(&mut self, offset: usize, len: usize) {
        // SAFETY: the page is accessible and belongs to this reservation, which no instance
        // uses while it is being zeroed; nothing else refers to it.
        let bytes = unsafe { std::slice::from_raw_parts_mut(self.at(offset).cast::<u8>(), len) };
        // Whole 64-byte chunks, each folded without a branch, so the check is vectorised.
        let written = bytes
            .chunks(64)
            .any(|chunk| chunk.iter().fold(0, |any, &byte| any | byte) != 0);
        if written {
            bytes.fill(0);
        }
    }

    /// Gives pages back to the kernel: they read zero when next touched.
    fn give_pages_back(&self, offset: usize, len: usize) -> rustix::io::Result<()> {
        // SAFETY: the range lies inside this reservation; nothing refers to its pages.
        unsafe { rustix::mm::madvise(self.at(offset), len, Advice::LinuxDontNeed) }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the mapping is this reservation's own and nothing refers to it any more.
        if let Err(error) = unsafe { rustix::mm::munmap(self.at(0), RESERVATION_BYTES) } {
            tracing::warn!("cannot unmap a Wasmer memory's reservation: {error}");
        }
    }
}

/// An instance's linear memory over a pooled reservation, which goes back to the pool when
/// the memory is dropped.
#[derive(Debug)]
pub(crate) struct PooledMemory {
    /// Always present until the memory is dropped.
    reservation: Option<Reservation>,
    pool: Arc<MemoryPool>,
    ty: MemoryType,
    size: Pages,
    /// Where the instance's compiled code reads the memory's base and length.
    definition: NonNull<VMMemoryDefinition>,
}

// SAFETY: the definition pointer is into the instance's own context, owned by the store that
// also owns this memory; like Wasmer's own memories, this one moves between threads only with
// its store, and only `&mut self` writes through the pointer.
unsafe impl Send for PooledMemory {}
// SAFETY: `&self` methods only read the pointer.
unsafe impl Sync for PooledMemory {}

impl PooledMemory {
    /// Whether a memory of this type and style can be pooled: unshared, of the static style.
    pub(crate) fn fits(ty: &MemoryType, style: &MemoryStyle) -> bool {
        !ty.shared && *style == MemoryStyle::Static
    }

    /// A memory of `ty` (which [`PooledMemory::fits`]), its definition written to `definition`.
    ///
    /// # Safety
    ///
    /// `definition` is a valid, writable memory definition in the instance's context, as
    /// Wasmer passes to `Tunables::create_vm_memory`, there as long as the instance can use the
    /// memory (only growing it writes there; dropping it does not).
    pub(crate) unsafe fn new(
        pool: Arc<MemoryPool>,
        ty: &MemoryType,
        definition: NonNull<VMMemoryDefinition>,
    ) -> Result<Self, MemoryError> {
        let mut reservation = pool.take()?;
        if let Err(error) = reservation.set_accessible(bytes_of(ty.minimum)) {
            pool.give_back(reservation);
            return Err(error);
        }
        let mut memory = Self {
            reservation: Some(reservation),
            pool,
            ty: *ty,
            size: ty.minimum,
            definition,
        };
        memory.publish();
        Ok(memory)
    }

    fn reservation(&self) -> &Reservation {
        self.reservation
            .as_ref()
            .expect("a pooled memory holds its reservation until dropped")
    }

    /// Tells the compiled code the memory's base and length.
    fn publish(&mut self) {
        let definition = VMMemoryDefinition {
            base: self.reservation().base.as_ptr(),
            current_length: bytes_of(self.size),
        };
        // SAFETY: `new`'s contract: the definition is valid and writable while this lives.
        unsafe { self.definition.write(definition) };
    }
}

/// The bytes of `pages` wasm pages.
fn bytes_of(pages: Pages) -> usize {
    pages.0 as usize * PAGE_BYTES as usize
}

impl LinearMemory for PooledMemory {
    fn ty(&self) -> MemoryType {
        MemoryType {
            minimum: self.size,
            ..self.ty
        }
    }

    fn size(&self) -> Pages {
        self.size
    }

    fn style(&self) -> MemoryStyle {
        MemoryStyle::Static
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        let previous = self.size;
        if delta.0 == 0 {
            return Ok(previous);
        }
        let refused = MemoryError::CouldNotGrow {
            current: previous,
            attempted_delta: delta,
        };
        let Some(new) = previous.checked_add(delta) else {
            return Err(refused);
        };
        if new > Pages::max_value() || self.ty.maximum.is_some_and(|maximum| new > maximum) {
            return Err(refused);
        }
        self.reservation
            .as_mut()
            .expect("a pooled memory holds its reservation until dropped")
            .set_accessible(bytes_of(new))?;
        self.size = new;
        self.publish();
        Ok(previous)
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        let current = bytes_of(self.size) as u64;
        if current < min_size {
            let pages = (min_size - current).div_ceil(PAGE_BYTES);
            let pages = u32::try_from(pages).map_err(|_| MemoryError::CouldNotGrow {
                current: self.size,
                attempted_delta: Pages::max_value(),
            })?;
            self.grow(Pages(pages))?;
        }
        Ok(())
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.definition
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::MemoryNotShared)
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::Generic(
            "a pooled memory belongs to one instance and is not copied".to_owned(),
        ))
    }
}

impl Drop for PooledMemory {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            self.pool.give_back(reservation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memory of `pages` over `pool`, its definition in `slot`.
    fn memory(pool: &Arc<MemoryPool>, pages: u32, slot: &mut VMMemoryDefinition) -> PooledMemory {
        let ty = MemoryType::new(pages, None, false);
        // SAFETY: `slot` outlives the memory in each test.
        unsafe { PooledMemory::new(pool.clone(), &ty, NonNull::from(slot)) }.unwrap()
    }

    fn empty_definition() -> VMMemoryDefinition {
        VMMemoryDefinition {
            base: std::ptr::null_mut(),
            current_length: 0,
        }
    }

    /// Reads the byte at `offset` of a pooled memory through its definition.
    fn byte_at(definition: &VMMemoryDefinition, offset: usize) -> u8 {
        assert!(offset < definition.current_length);
        // SAFETY: inside the memory's accessible length.
        unsafe { definition.base.add(offset).read() }
    }

    fn write_at(definition: &VMMemoryDefinition, offset: usize, value: u8) {
        assert!(offset < definition.current_length);
        // SAFETY: inside the memory's accessible length.
        unsafe { definition.base.add(offset).write(value) }
    }

    #[test]
    fn a_reservation_comes_back_zeroed_and_is_reused() {
        let pool = Arc::new(MemoryPool::new(4));
        let mut slot = empty_definition();
        let first = memory(&pool, 2, &mut slot);
        let base = slot.base;
        write_at(&slot, 0, 7);
        write_at(&slot, 70_000, 9);
        drop(first);
        assert_eq!(pool.idle(), 1);

        let mut slot = empty_definition();
        let second = memory(&pool, 2, &mut slot);
        assert_eq!(slot.base, base, "the idle reservation is reused");
        assert_eq!(slot.current_length, 2 * PAGE_BYTES as usize);
        assert_eq!(byte_at(&slot, 0), 0);
        assert_eq!(byte_at(&slot, 70_000), 0);
        drop(second);
    }

    #[test]
    fn growth_is_published_and_bounded_by_the_maximum() {
        let pool = Arc::new(MemoryPool::new(4));
        let mut slot = empty_definition();
        let ty = MemoryType::new(1, Some(3), false);
        // SAFETY: `slot` outlives the memory.
        let mut grown =
            unsafe { PooledMemory::new(pool.clone(), &ty, NonNull::from(&mut slot)) }.unwrap();
        assert_eq!(grown.grow(Pages(2)).unwrap(), Pages(1));
        assert_eq!(grown.size(), Pages(3));
        assert_eq!(slot.current_length, 3 * PAGE_BYTES as usize);
        write_at(&slot, 3 * PAGE_BYTES as usize - 1, 5);
        assert!(grown.grow(Pages(1)).is_err(), "past the declared maximum");
        drop(grown);

        // The next memory starts at its own minimum, and what was grown reads zero when grown
        // again.
        let mut slot = empty_definition();
        let mut next = memory(&pool, 1, &mut slot);
        assert_eq!(slot.current_length, PAGE_BYTES as usize);
        next.grow(Pages(2)).unwrap();
        assert_eq!(byte_at(&slot, 3 * PAGE_BYTES as usize - 1), 0);
    }

    #[test]
    fn a_memory_that_touched_more_than_is_kept_resident_is_still_zeroed() {
        let pool = Arc::new(MemoryPool::new(4));
        let pages = u32::try_from(2 * MEMORY_KEEP_RESIDENT as u64 / PAGE_BYTES).unwrap();
        let mut slot = empty_definition();
        let big = memory(&pool, pages, &mut slot);
        for offset in (0..slot.current_length).step_by(4096) {
            write_at(&slot, offset, 1);
        }
        drop(big);
        let mut slot = empty_definition();
        let _again = memory(&pool, pages, &mut slot);
        for offset in (0..slot.current_length).step_by(4096) {
            assert_eq!(byte_at(&slot, offset), 0, "at {offset}");
        }
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_bound() {
        let pool = Arc::new(MemoryPool::new(1));
        let (mut a, mut b) = (empty_definition(), empty_definition());
        let first = memory(&pool, 1, &mut a);
        let second = memory(&pool, 1, &mut b);
        drop(first);
        drop(second);
        assert_eq!(pool.idle(), 1);
    }
}
