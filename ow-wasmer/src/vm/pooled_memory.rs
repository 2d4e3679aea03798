//! A Wasmer linear memory over a reservation of the engine's [`MemoryPool`] (`ow-common`'s
//! shared pool: see there for how a reservation is reused and zeroed). Wasmer would map a
//! fresh 8 GiB reservation per instance and unmap it at the end.
//!
//! The memory is accessible up to its own size and no further, so memory an earlier
//! activation grew traps as any out-of-bounds access does. Only memories of Wasmer's static
//! style are pooled: compiled code relies on their bound and guard (it checks no bounds), and
//! every reservation has exactly that layout ([`RESERVATION_BYTES`]).

use super::PAGE_BYTES;
use ow_common::host::memory_pool::{MemoryPool, Reservation};
use std::ptr::NonNull;
use std::sync::Arc;
use wasmer::sys::vm::{LinearMemory, MemoryError, MemoryStyle, VMMemoryDefinition};
use wasmer::{MemoryType, Pages};

/// The bytes of a reservation: the 4 GiB a 32-bit memory addresses, then the guard Wasmer's
/// compiled code relies on for a static memory.
pub(crate) const RESERVATION_BYTES: usize = (MemoryStyle::static_bound().0 as usize)
    * (PAGE_BYTES as usize)
    + MemoryStyle::static_offset_guard_size() as usize;

/// A pool of Wasmer memories' reservations, keeping as many idle as `max_idle` instances.
pub(crate) fn memory_pool(max_idle: usize) -> MemoryPool {
    MemoryPool::new(RESERVATION_BYTES, max_idle)
}

/// A reservation that could not be taken or resized, in Wasmer's terms.
fn region(error: std::io::Error) -> MemoryError {
    MemoryError::Region(error.to_string())
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
        let mut reservation = pool.take().map_err(region)?;
        if let Err(error) = reservation.set_accessible(bytes_of(ty.minimum)) {
            pool.give_back(reservation);
            return Err(region(error));
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
            base: self.reservation().base().as_ptr(),
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
            .set_accessible(bytes_of(new))
            .map_err(region)?;
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
    fn growth_is_published_and_bounded_by_the_maximum() {
        let pool = Arc::new(memory_pool(4));
        let mut slot = empty_definition();
        let ty = MemoryType::new(1, Some(3), false);
        // SAFETY: `slot` outlives the memory.
        let mut grown =
            unsafe { PooledMemory::new(pool.clone(), &ty, NonNull::from(&mut slot)) }.unwrap();
        assert_eq!(slot.current_length, PAGE_BYTES as usize);
        assert_eq!(grown.grow(Pages(2)).unwrap(), Pages(1));
        assert_eq!(grown.size(), Pages(3));
        assert_eq!(slot.current_length, 3 * PAGE_BYTES as usize);
        write_at(&slot, 3 * PAGE_BYTES as usize - 1, 5);
        assert!(grown.grow(Pages(1)).is_err(), "past the declared maximum");
        let base = slot.base;
        drop(grown);
        assert_eq!(pool.idle(), 1, "the reservation went back to the pool");

        // The next memory takes the same reservation at its own minimum, and what was grown
        // reads zero when grown again.
        let mut slot = empty_definition();
        let ty = MemoryType::new(1, None, false);
        // SAFETY: `slot` outlives the memory.
        let mut next =
            unsafe { PooledMemory::new(pool.clone(), &ty, NonNull::from(&mut slot)) }.unwrap();
        assert_eq!(slot.base, base);
        assert_eq!(slot.current_length, PAGE_BYTES as usize);
        next.grow(Pages(2)).unwrap();
        assert_eq!(byte_at(&slot, 3 * PAGE_BYTES as usize - 1), 0);
    }
}
