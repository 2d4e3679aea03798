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
//! * pages swapped out are given back too: they hold data though they are not resident. A
//!   page neither resident nor swapped out was never touched or was given back already, and
//!   reads zero; giving it back anyway would cost a system call per run of such pages, each
//!   with a TLB shootdown. The kernel's page-table scan (`PAGEMAP_SCAN`, Linux 6.7) names
//!   both kinds of page in one call. Without it, `mincore` names the resident pages only, so
//!   every page it does not name is given back when the system has swap space (asked before
//!   and after `mincore`, so that swap turned on or off in between counts as swap): without
//!   swap space no page is swapped out, as turning swap off brings every page back in;
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
        let runs = match page_scan::runs_holding_data(self.at(0), self.accessible)? {
            Some(runs) => runs,
            None => self.runs_holding_data_by_mincore()?,
        };
        self.zero_runs(&runs)
    }

    /// Zeroes the runs of accessible pages that hold data, all of them.
    fn zero_runs(&mut self, runs: &[Run]) -> io::Result<()> {
        let resident: usize = runs
            .iter()
            .filter(|run| run.resident)
            .map(|run| run.len)
            .sum();
        if resident > MEMORY_KEEP_RESIDENT {
            return self.give_all_pages_back();
        }
        let page = rustix::param::page_size();
        for run in runs {
            let (offset, len) = (run.offset, run.len.min(self.accessible - run.offset));
            if run.resident {
                for page_offset in (offset..offset + len).step_by(page) {
                    self.zero_resident_page(page_offset, page.min(offset + len - page_offset));
                }
            } else {
                self.give_pages_back(offset, len)?;
            }
        }
        self.holds_pages = resident > 0;
        Ok(())
    }

    /// The accessible pages that may hold data, as `mincore` tells them: the resident ones, and
    /// when the system has swap space every other one too (see the module's documentation).
    fn runs_holding_data_by_mincore(&self) -> io::Result<Vec<Run>> {
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
        let swap_space = swap_before || has_swap_space();
        let mut runs = Vec::new();
        let mut start = 0;
        while start < pages {
            let resident = residency[start] & 1 == 1;
            let end = residency[start..]
                .iter()
                .position(|&page| (page & 1 == 1) != resident)
                .map_or(pages, |run| start + run);
            if resident || swap_space {
                runs.push(Run {
                    offset: start * page,
                    len: (end - start) * page,
                    resident,
                });
            }
            start = end;
        }
        Ok(runs)
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

/// Accessible pages that may hold data, from a reservation's start: resident (zeroed in
/// place), or not (swapped out, or may be: given back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    offset: usize,
    len: usize,
    resident: bool,
}

/// The kernel's page-table scan (`ioctl(PAGEMAP_SCAN)` on `/proc/self/pagemap`, Linux 6.7):
/// the runs of pages that are resident or swapped out, in one call over the whole memory,
/// where `mincore` writes a byte for every page and knows nothing of swap. Neither `libc` nor
/// `rustix` binds it yet, hence the kernel's structures here (`linux/fs.h`).
mod page_scan {
    use super::Run;
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::sync::OnceLock;

    /// `PAGE_IS_PRESENT`: the page is in memory.
    const PAGE_IS_PRESENT: u64 = 1 << 3;
    /// `PAGE_IS_SWAPPED`: the page is swapped out.
    const PAGE_IS_SWAPPED: u64 = 1 << 4;
    /// How many runs one call reports at most; a memory with more is scanned again from where
    /// the call stopped.
    const RUNS_PER_CALL: usize = 64;

    /// `struct page_region`.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default)]
    struct PageRegion {
        start: u64,
        end: u64,
        categories: u64,
    }

    /// `struct pm_scan_arg`.
    #[repr(C)]
    #[derive(Debug, Default)]
    struct PmScanArg {
        size: u64,
        flags: u64,
        start: u64,
        end: u64,
        walk_end: u64,
        vec: u64,
        vec_len: u64,
        max_pages: u64,
        category_inverted: u64,
        category_mask: u64,
        category_anyof_mask: u64,
        return_mask: u64,
    }

    /// `PAGEMAP_SCAN`: `_IOWR('f', 16, struct pm_scan_arg)` (cast at each call to the C
    /// library's type of request: glibc's is unsigned, musl's signed).
    const PAGEMAP_SCAN: libc::c_ulong = (3 << 30)
        | ((std::mem::size_of::<PmScanArg>() as libc::c_ulong) << 16)
        | ((b'f' as libc::c_ulong) << 8)
        | 16;

    /// The process's page map, opened once; none where this kernel cannot scan it (before
    /// Linux 6.7, or `/proc` not mounted), found out by the first scan.
    static PAGEMAP: OnceLock<Option<File>> = OnceLock::new();

    /// The runs of `len` bytes from `start` that hold data, with offsets from `start`; `None`
    /// where the kernel has no such scan.
    pub(super) fn runs_holding_data(
        start: *mut std::ffi::c_void,
        len: usize,
    ) -> io::Result<Option<Vec<Run>>> {
        let pagemap = PAGEMAP.get_or_init(|| {
            let file = File::open("/proc/self/pagemap").ok()?;
            // An empty scan says whether the kernel knows the request.
            let mut probe = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                ..PmScanArg::default()
            };
            // SAFETY: an empty range, no output vector; `probe` is the argument the request
            // takes, alive for the call.
            let known =
                unsafe { libc::ioctl(file.as_raw_fd(), PAGEMAP_SCAN as _, &mut probe) } >= 0;
            known.then_some(file)
        });
        let Some(pagemap) = pagemap else {
            return Ok(None);
        };
        let base = start as u64;
        let end = base + len as u64;
        let mut regions = [PageRegion::default(); RUNS_PER_CALL];
        let mut runs = Vec::new();
        let mut from = base;
        while from < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                start: from,
                end,
                vec: regions.as_mut_ptr() as u64,
                vec_len: RUNS_PER_CALL as u64,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                ..PmScanArg::default()
            };
            // SAFETY: the range is the caller's mapping; the kernel writes at most `vec_len`
            // regions into `regions`, which outlives the call, and reads only the page tables.
            let found = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            let found = usize::try_from(found).map_err(|_| io::Error::last_os_error())?;
            for region in &regions[..found] {
                runs.push(Run {
                    offset: (region.start - base) as usize,
                    len: (region.end - region.start) as usize,
                    resident: region.categories & PAGE_IS_PRESENT != 0,
                });
            }
            // Where the walk stopped: the end, or where the regions ran out.
            if arg.walk_end <= from {
                return Err(io::Error::other("the page-table scan made no progress"));
            }
            from = arg.walk_end;
        }
        Ok(Some(runs))
    }
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
    fn the_page_scan_finds_the_resident_pages_mincore_finds() {
        let page = rustix::param::page_size();
        let pool = MemoryPool::new(RESERVATION, 4);
        let mut reservation = taken(&pool, 2 * WASM_PAGE);
        for touched in [0, 5, 6, 20] {
            write_at(&mut reservation, touched * page, 1);
        }
        let scanned =
            page_scan::runs_holding_data(reservation.at(0), reservation.accessible()).unwrap();
        let by_mincore = reservation.runs_holding_data_by_mincore().unwrap();
        let resident = |runs: &[Run]| -> Vec<(usize, usize)> {
            runs.iter()
                .filter(|run| run.resident)
                .map(|run| (run.offset, run.len))
                .collect()
        };
        let expected = vec![(0, page), (5 * page, 2 * page), (20 * page, page)];
        assert_eq!(resident(&by_mincore), expected);
        // Before Linux 6.7 the kernel has no such scan, and `mincore` alone serves.
        if let Some(scanned) = scanned {
            assert_eq!(resident(&scanned), expected);
        }
    }

    #[test]
    fn a_reservation_is_zeroed_by_what_mincore_finds_where_pages_cannot_be_scanned() {
        let pool = MemoryPool::new(RESERVATION, 4);
        let mut reservation = taken(&pool, 2 * WASM_PAGE);
        write_at(&mut reservation, 0, 7);
        write_at(&mut reservation, 70_000, 9);
        let runs = reservation.runs_holding_data_by_mincore().unwrap();
        reservation.zero_runs(&runs).unwrap();
        assert_eq!(byte_at(&reservation, 0), 0);
        assert_eq!(byte_at(&reservation, 70_000), 0);
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
