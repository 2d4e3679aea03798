//! Linear memories reused from one activation to the next, for engines whose own memories are
//! mapped and unmapped per instance (Wasmer and WAMR; Wasmtime pools its own).
//!
//! Left to itself, such an engine maps fresh memory for every instance, faults in each page
//! the instance touches (data segments first), and unmaps it all when the instance is dropped.
//! The unmap sends a TLB shootdown to every other core running the process; together this was
//! about two fifths of a Wasmer activation and four fifths of a WAMR instance's time under
//! load. Here an instance's memory is a [`Reservation`] taken from the engine's
//! [`MemoryPool`], and given back when the instance is dropped, with every byte it held
//! zeroed:
//!
//! * pages the activation touched, up to [`MEMORY_KEEP_RESIDENT`] bytes of them, are zeroed in
//!   place and stay in memory, so the next activation faults nothing in and nothing is
//!   unmapped;
//! * past that, the memory's pages are given back to the kernel (`MADV_DONTNEED`), as the
//!   engine would, which also bounds what an idle reservation keeps;
//! * pages the kernel does not report as resident are given back too when the system has swap
//!   space: a page swapped out holds data though it is not resident. Without swap space, no
//!   page is swapped out (turning swap off brings every page back in), so a page not resident
//!   was never touched or was given back already, and reads zero. Giving it back anyway would
//!   cost a system call per run of such pages, each with a TLB shootdown. Whether there is
//!   swap space is asked before and after the pages' residency, so that swap turned on or off
//!   in between counts as swap;
//! * only the [`WARM_RESERVATIONS`] given back last keep pages: when one more comes back, the
//!   one that many places below it gives its pages back. A burst of activations therefore
//!   leaves no more memory resident than a steady load of that many does, and a steady load
//!   of at most that many at once, taking the reservations given back last, neither faults
//!   nor gives back any page.
//!
//! A reservation is accessible up to the size its user sets and no further, so memory an
//! earlier activation grew faults as any access past the memory does, and reads zero when it
//! is made accessible again. The engine crates adapt a reservation to their engine's memory
//! interface (`ow-wasmer`'s `PooledMemory`, `ow-wamr`'s allocator callbacks).
//!
//! With `ow-common`'s heap trim, this is where its `unsafe` code lives: mapping, protecting
//! and zeroing memory that no Rust reference covers.

#![allow(unsafe_code)]

use super::MEMORY_KEEP_RESIDENT;
use rustix::mm::{Advice, MapFlags, MprotectFlags, ProtFlags};
use std::ffi::c_void;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many idle reservations, the ones given back last, keep the pages their activations
/// touched (each at most [`MEMORY_KEEP_RESIDENT`]): as many as the connections of a
/// typical load (the evaluation's keep-alive runs use 32).
pub const WARM_RESERVATIONS: usize = 32;

/// An engine's idle reservations, each holding zeroes only.
#[derive(Debug)]
pub struct MemoryPool {
    idle: Mutex<Vec<Reservation>>,
    /// The bytes of each reservation: what the engine's largest memory needs, with any guard
    /// its code relies on.
    reservation_bytes: usize,
    /// The most reservations kept idle: as many as instances that run at once, so a steady
    /// load maps nothing. One given back past this is unmapped.
    max_idle: AtomicUsize,
}

impl MemoryPool {
    /// A pool of reservations of `reservation_bytes` each, keeping at most `max_idle` idle.
    pub fn new(reservation_bytes: usize, max_idle: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            reservation_bytes,
            max_idle: AtomicUsize::new(max_idle),
        }
    }

    /// Keeps at least `max_idle` reservations idle from now on: for a pool shared by engines
    /// of different sizes in one process.
    pub fn keep_at_least(&self, max_idle: usize) {
        self.max_idle.fetch_max(max_idle, Ordering::Relaxed);
    }

    /// An idle reservation, the one given back last (its pages are the likeliest to be in
    /// memory and in the caches), or a new one. It holds zeroes only, and is accessible as far
    /// as its last user left it (a new one: not at all) until its user says how much
    /// ([`Reservation::set_accessible`]).
    pub fn take(&self) -> io::Result<Reservation> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(reservation) => Ok(reservation),
            None => Reservation::new(self.reservation_bytes),
        }
    }

    /// Zeroes a reservation and keeps it for the next instance; one that the pool has no room
    /// for (checked first, so it is not zeroed for nothing), or that cannot be zeroed, is
    /// unmapped.
    pub fn give_back(&self, mut reservation: Reservation) {
        let max_idle = self.max_idle.load(Ordering::Relaxed);
        if self.idle() >= max_idle {
            return;
        }
        if let Err(error) = reservation.zero() {
            tracing::warn!("unmapping a linear memory that could not be zeroed: {error}");
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < max_idle {
            idle.push(reservation);
            // At most once per reservation that falls out of the warm ones, under the lock
            // so that the order stays the pool's.
            if let Some(cooling) = idle.len().checked_sub(WARM_RESERVATIONS + 1)
                && let Err(error) = idle[cooling].give_all_pages_back()
            {
                tracing::warn!("an idle linear memory keeps its pages: {error}");
            }
        }
    }

    /// How many reservations are idle.
    pub fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One private anonymous mapping, inaccessible past its first [`accessible`] bytes. Owned by
/// the pool or by one memory, never both; unmapped when dropped.
///
/// [`accessible`]: Reservation::accessible
#[derive(Debug)]
pub struct Reservation {
    base: NonNull<u8>,
    bytes: usize,
    accessible: usize,
    /// Whether pages of it may be resident (it was zeroed in place, not given back whole).
    holds_pages: bool,
}

// SAFETY: a reservation is a mapping the process owns; whoever holds the value is the only
// user of its pages (an instance's memory while the instance lives, else the pool), on
// whatever thread that is.
unsafe impl Send for Reservation {}

impl Reservation {
    fn new(bytes: usize) -> io::Result<Self> {
        // SAFETY: a new anonymous mapping at an address the kernel picks overlaps nothing.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                bytes,
                ProtFlags::empty(),
                MapFlags::PRIVATE,
            )
        }
        .map_err(|e| io::Error::other(format!("cannot reserve a linear memory: {e}")))?;
        let reservation = Self {
            base: NonNull::new(base.cast()).expect("mmap returns no null mapping"),
            bytes,
            accessible: 0,
            holds_pages: false,
        };
        // Pages stay 4 KiB: zeroing what an activation touched then zeroes 4 KiB pages, not
        // whole 2 MiB huge pages. Only advice: a kernel without it still works.
        // SAFETY: the range is this reservation's own mapping.
        let _ = unsafe { rustix::mm::madvise(reservation.at(0), bytes, Advice::LinuxNoHugepage) };
        Ok(reservation)
    }

    /// Where the reservation starts: the memory's byte 0.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// How many bytes from the base are readable and writable.
    pub fn accessible(&self) -> usize {
        self.accessible
    }

    /// The address `offset` bytes into the reservation.
    fn at(&self, offset: usize) -> *mut c_void {
        debug_assert!(offset <= self.bytes);
        self.base.as_ptr().wrapping_add(offset).cast()
    }

    /// Makes the first `bytes` readable and writable and the rest inaccessible. Bytes made
    /// inaccessible are given back to the kernel, so they read zero when made accessible
    /// again. Fails for more bytes than the reservation holds.
    pub fn set_accessible(&mut self, bytes: usize) -> io::Result<()> {
        let resize = |e| io::Error::other(format!("cannot resize a linear memory: {e}"));
        if bytes > self.bytes {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "a linear memory of {bytes} bytes does not fit its reservation of {}",
                    self.bytes
                ),
            ));
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
            .map_err(resize)?;
        } else if bytes < self.accessible {
            let len = self.accessible - bytes;
            // SAFETY: as above; no reference into these pages is held (the memory they belong
            // to is being set up or has been dropped).
            unsafe {
                rustix::mm::madvise(self.at(bytes), len, Advice::LinuxDontNeed).map_err(resize)?;
                rustix::mm::mprotect(self.at(bytes), len, MprotectFlags::empty())
                    .map_err(resize)?;
            }
        }
        self.accessible = bytes;
        self.holds_pages |= self.accessible > 0;
        Ok(())
    }

    /// Zeroes every accessible byte (see the module's documentation for how).
    fn zero(&mut self) -> io::Result<()> {
        if self.accessible == 0 {
            return Ok(());
        }
        let page = rustix::param::page_size();
        let pages = self.accessible.div_ceil(page);
        // Made for each call, not kept: an idle reservation would otherwise hold a byte per
        // page of the largest memory it ever had.
        let mut residency = vec![0u8; pages];
        // Asked on both sides of `mincore`, so that swap turned on or off meanwhile counts.
        let swap_before = has_swap_space();
        // SAFETY: the range is this reservation's accessible pages, and the vector holds one
        // byte per page, as `mincore` writes.
        let found = unsafe { libc::mincore(self.at(0), self.accessible, residency.as_mut_ptr()) };
        if found != 0 {
            return Err(io::Error::last_os_error());
        }
        let resident = residency.iter().filter(|&&page| page & 1 == 1).count();
        if resident * page > MEMORY_KEEP_RESIDENT {
            return self.give_all_pages_back();
        }
        let swap_space = swap_before || has_swap_space();
        let mut start = 0;
        while start < pages {
            let in_memory = residency[start] & 1 == 1;
            let end = residency[start..]
                .iter()
                .position(|&page| (page & 1 == 1) != in_memory)
                .map_or(pages, |run| start + run);
            let (offset, len) = (
                start * page,
                (end * page).min(self.accessible) - start * page,
            );
            if in_memory {
                for page_offset in (offset..offset + len).step_by(page) {
                    self.zero_resident_page(page_offset, page.min(offset + len - page_offset));
                }
            } else if swap_space {
                self.give_pages_back(offset, len)?;
            }
            start = end;
        }
        self.holds_pages = resident > 0;
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

    /// Gives every accessible page back to the kernel, if any may be resident.
    fn give_all_pages_back(&mut self) -> io::Result<()> {
        if self.holds_pages {
            self.give_pages_back(0, self.accessible)?;
            self.holds_pages = false;
        }
        Ok(())
    }

    /// Gives pages back to the kernel: they read zero when next touched.
    fn give_pages_back(&self, offset: usize, len: usize) -> io::Result<()> {
        // SAFETY: the range lies inside this reservation; nothing refers to its pages.
        unsafe { rustix::mm::madvise(self.at(offset), len, Advice::LinuxDontNeed) }
            .map_err(io::Error::from)
    }
}

/// Whether the system has swap space now.
fn has_swap_space() -> bool {
    rustix::system::sysinfo().totalswap > 0
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the mapping is this reservation's own and nothing refers to it any more.
        if let Err(error) = unsafe { rustix::mm::munmap(self.at(0), self.bytes) } {
            tracing::warn!("cannot unmap a linear memory's reservation: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM_PAGE: usize = 64 * 1024;
    /// Room for 64 wasm pages: enough for every test, small enough to map many.
    const RESERVATION: usize = 64 * WASM_PAGE;

    fn taken(pool: &MemoryPool, bytes: usize) -> Reservation {
        let mut reservation = pool.take().unwrap();
        reservation.set_accessible(bytes).unwrap();
        reservation
    }

    fn byte_at(reservation: &Reservation, offset: usize) -> u8 {
        assert!(offset < reservation.accessible());
        // SAFETY: inside the accessible bytes.
        unsafe { reservation.base().as_ptr().add(offset).read() }
    }

    fn write_at(reservation: &mut Reservation, offset: usize, value: u8) {
        assert!(offset < reservation.accessible());
        // SAFETY: inside the accessible bytes, of a reservation held mutably.
        unsafe { reservation.base().as_ptr().add(offset).write(value) }
    }

    #[test]
    fn a_reservation_comes_back_zeroed_and_is_reused() {
        let pool = MemoryPool::new(RESERVATION, 4);
        let mut first = taken(&pool, 2 * WASM_PAGE);
        let base = first.base();
        write_at(&mut first, 0, 7);
        write_at(&mut first, 70_000, 9);
        pool.give_back(first);
        assert_eq!(pool.idle(), 1);

        let second = taken(&pool, 2 * WASM_PAGE);
        assert_eq!(second.base(), base, "the idle reservation is reused");
        assert_eq!(byte_at(&second, 0), 0);
        assert_eq!(byte_at(&second, 70_000), 0);
    }

    #[test]
    fn bytes_made_inaccessible_read_zero_when_accessible_again() {
        let pool = MemoryPool::new(RESERVATION, 4);
        let mut grown = taken(&pool, WASM_PAGE);
        grown.set_accessible(3 * WASM_PAGE).unwrap();
        write_at(&mut grown, 3 * WASM_PAGE - 1, 5);
        pool.give_back(grown);

        let mut next = taken(&pool, WASM_PAGE);
        assert_eq!(next.accessible(), WASM_PAGE);
        next.set_accessible(3 * WASM_PAGE).unwrap();
        assert_eq!(byte_at(&next, 3 * WASM_PAGE - 1), 0);
    }

    #[test]
    fn a_memory_larger_than_its_reservation_is_refused() {
        let pool = MemoryPool::new(RESERVATION, 4);
        let mut reservation = pool.take().unwrap();
        let error = reservation
            .set_accessible(RESERVATION + WASM_PAGE)
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::OutOfMemory);
        assert_eq!(reservation.accessible(), 0);
    }

    #[test]
    fn a_memory_that_touched_more_than_is_kept_resident_is_still_zeroed() {
        let bytes = 2 * MEMORY_KEEP_RESIDENT;
        let pool = MemoryPool::new(bytes, 4);
        let mut big = taken(&pool, bytes);
        for offset in (0..bytes).step_by(4096) {
            write_at(&mut big, offset, 1);
        }
        pool.give_back(big);
        let again = taken(&pool, bytes);
        for offset in (0..bytes).step_by(4096) {
            assert_eq!(byte_at(&again, offset), 0, "at {offset}");
        }
    }

    /// How many of the reservation's accessible pages are resident.
    fn resident_pages(reservation: &Reservation) -> usize {
        let page = rustix::param::page_size();
        let mut residency = vec![0u8; reservation.accessible().div_ceil(page)];
        // SAFETY: the reservation's accessible pages, one byte per page.
        let found = unsafe {
            libc::mincore(
                reservation.at(0),
                reservation.accessible(),
                residency.as_mut_ptr(),
            )
        };
        assert_eq!(found, 0);
        residency.iter().filter(|&&page| page & 1 == 1).count()
    }

    #[test]
    fn only_the_reservations_given_back_last_keep_their_pages() {
        let pool = MemoryPool::new(RESERVATION, WARM_RESERVATIONS + 8);
        let mut burst: Vec<_> = (0..WARM_RESERVATIONS + 2)
            .map(|_| taken(&pool, WASM_PAGE))
            .collect();
        for reservation in &mut burst {
            write_at(reservation, 0, 1);
        }
        for reservation in burst {
            pool.give_back(reservation);
        }
        let idle = pool.idle.lock().unwrap();
        let resident: Vec<_> = idle.iter().map(resident_pages).collect();
        assert_eq!(resident[..2], [0, 0], "the first two given back cooled");
        assert!(
            resident[2..].iter().all(|&pages| pages > 0),
            "the last {WARM_RESERVATIONS} kept their pages: {resident:?}"
        );
    }

    #[test]
    fn the_pool_keeps_no_more_than_its_bound_until_raised() {
        let pool = MemoryPool::new(RESERVATION, 1);
        let (first, second) = (taken(&pool, WASM_PAGE), taken(&pool, WASM_PAGE));
        pool.give_back(first);
        pool.give_back(second);
        assert_eq!(pool.idle(), 1);

        pool.keep_at_least(2);
        let (first, second) = (taken(&pool, WASM_PAGE), taken(&pool, WASM_PAGE));
        pool.give_back(first);
        pool.give_back(second);
        assert_eq!(pool.idle(), 2);
    }
}
