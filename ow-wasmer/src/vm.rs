//! The crate's one module with `unsafe` code: where ow-wasmer reaches below Wasmer's safe API.
//!
//! * [`InstanceTunables`]: the memory and table caps of one store. Wasmer asks a store's
//!   engine's `Tunables` to make every memory and table of an instance; these hand it capped
//!   memories, lower every table's maximum to the cap, and remember a refused growth.
//! * [`pooled_memory`]: the linear memories those tunables make, reused from one activation to
//!   the next instead of mapped and unmapped each time.
//! * [`deserialize_trusted`]: loading a precompiled artifact, which is native code.
//! * [`ThreadBound`]: lets the shared host side of the guest ABIs, whose futures are `Send`,
//!   hold a Wasmer store, which is not, on the one thread that store lives on.

#![allow(unsafe_code)]

pub(crate) mod pooled_memory;

use ow_common::host::memory_pool::MemoryPool;
use pooled_memory::PooledMemory;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmer::sys::vm::{
    LinearMemory, MemoryError, MemoryStyle, TableStyle, Trap, VMMemory, VMMemoryDefinition,
    VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, Tunables};
use wasmer::{DeserializeError, Engine, MemoryType, Module, Pages, TableType, WASM_PAGE_SIZE};

/// The most pages a 32-bit linear memory has (4 GiB).
const MAX_PAGES: u64 = 65_536;

/// The bytes of a page.
const PAGE_BYTES: u64 = WASM_PAGE_SIZE as u64;

/// Caps the memories and tables of one store's instances, and says whether the cap refused
/// anything. Memory styles stay Wasmer's defaults: compiled code assumes them.
pub(crate) struct InstanceTunables {
    base: BaseTunables,
    max_pages: Pages,
    max_table_elements: u32,
    capped: Arc<AtomicBool>,
    memory_pool: Arc<MemoryPool>,
}

impl std::fmt::Debug for InstanceTunables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceTunables")
            .field("max_pages", &self.max_pages)
            .field("max_table_elements", &self.max_table_elements)
            .finish_non_exhaustive()
    }
}

impl InstanceTunables {
    /// Tunables capping each memory at `memory_bytes` (whole pages) and each table at
    /// `max_table_elements`, taking memories from `memory_pool`.
    pub(crate) fn new(
        memory_bytes: u64,
        max_table_elements: u32,
        memory_pool: Arc<MemoryPool>,
    ) -> Self {
        let pages = (memory_bytes / PAGE_BYTES).min(MAX_PAGES);
        Self {
            base: BaseTunables::new(),
            max_pages: Pages(u32::try_from(pages).unwrap_or(u32::MAX)),
            max_table_elements,
            capped: Arc::new(AtomicBool::new(false)),
            memory_pool,
        }
    }

    /// Set once the cap refused a memory (its initial size or a growth) or a table's initial
    /// size. Growths of tables the cap refuses are told by the compiled code itself
    /// ([`crate::compiler::table_growth_refused`]).
    pub(crate) fn capped(&self) -> Arc<AtomicBool> {
        self.capped.clone()
    }

    fn check_memory(&self, ty: &MemoryType) -> Result<(), MemoryError> {
        if ty.minimum > self.max_pages {
            self.capped.store(true, Ordering::Relaxed);
            return Err(MemoryError::Generic(format!(
                "the module's memory starts at {} pages, more than the {} pages of the memory limit",
                ty.minimum.0, self.max_pages.0
            )));
        }
        Ok(())
    }

    fn capped_memory(&self, inner: VMMemory) -> VMMemory {
        VMMemory::from_custom(Box::new(CappedMemory {
            inner,
            max_pages: self.max_pages,
            capped: self.capped.clone(),
        }) as Box<dyn LinearMemory + Send + Sync>)
    }

    fn capped_table(&self, ty: &TableType) -> Result<TableType, String> {
        if ty.minimum > self.max_table_elements {
            self.capped.store(true, Ordering::Relaxed);
            return Err(format!(
                "the module's table starts at {} elements, more than the {} a table may hold",
                ty.minimum, self.max_table_elements
            ));
        }
        let mut ty = *ty;
        ty.maximum = Some(ty.maximum.map_or(self.max_table_elements, |max| {
            max.min(self.max_table_elements)
        }));
        Ok(ty)
    }
}

impl Tunables for InstanceTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.check_memory(ty)?;
        let inner = self.base.create_host_memory(ty, style)?;
        Ok(self.capped_memory(inner))
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        self.check_memory(ty)?;
        let inner = if PooledMemory::fits(ty, style) {
            // SAFETY: Wasmer's contract for `vm_definition_location` (a valid, writable
            // definition slot in the instance's VM context, there as long as the instance can
            // use the memory) is the caller's, passed on unchanged.
            let pooled =
                unsafe { PooledMemory::new(self.memory_pool.clone(), ty, vm_definition_location)? };
            VMMemory::from_custom(Box::new(pooled) as Box<dyn LinearMemory + Send + Sync>)
        } else {
            // SAFETY: as above.
            unsafe {
                self.base
                    .create_vm_memory(ty, style, vm_definition_location)?
            }
        };
        Ok(self.capped_memory(inner))
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        let ty = self.capped_table(ty)?;
        self.base.create_host_table(&ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        let ty = self.capped_table(ty)?;
        // SAFETY: as for memories, the definition slot is the caller's, passed on unchanged;
        // lowering the maximum only makes the table refuse growths sooner.
        unsafe {
            self.base
                .create_vm_table(&ty, style, vm_definition_location)
        }
    }
}

/// A linear memory that refuses to grow past the cap, and says so.
#[derive(Debug)]
struct CappedMemory {
    inner: VMMemory,
    max_pages: Pages,
    capped: Arc<AtomicBool>,
}

impl CappedMemory {
    fn refuse(&self, attempted_delta: Pages) -> MemoryError {
        self.capped.store(true, Ordering::Relaxed);
        MemoryError::CouldNotGrow {
            current: self.inner.size(),
            attempted_delta,
        }
    }
}

impl LinearMemory for CappedMemory {
    fn ty(&self) -> MemoryType {
        self.inner.ty()
    }

    fn size(&self) -> Pages {
        self.inner.size()
    }

    fn style(&self) -> MemoryStyle {
        self.inner.style()
    }

    fn grow(&mut self, delta: Pages) -> Result<Pages, MemoryError> {
        if u64::from(self.inner.size().0) + u64::from(delta.0) > u64::from(self.max_pages.0) {
            return Err(self.refuse(delta));
        }
        self.inner.grow(delta)
    }

    fn grow_at_least(&mut self, min_size: u64) -> Result<(), MemoryError> {
        if min_size > u64::from(self.max_pages.0) * PAGE_BYTES {
            return Err(self.refuse(Pages(0)));
        }
        self.inner.grow_at_least(min_size)
    }

    fn reset(&mut self) -> Result<(), MemoryError> {
        self.inner.reset()
    }

    fn vmmemory(&self) -> NonNull<VMMemoryDefinition> {
        self.inner.vmmemory()
    }

    fn try_clone(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::Generic(
            "a capped memory belongs to one instance and is not cloned".to_owned(),
        ))
    }

    unsafe fn initialize_with_data(&self, start: usize, data: &[u8]) -> Result<(), Trap> {
        // SAFETY: the caller's contract (Wasmer initializing a data segment of this memory)
        // is passed on to the memory this one wraps.
        unsafe { self.inner.initialize_with_data(start, data) }
    }

    fn copy(&self) -> Result<Box<dyn LinearMemory + Send + Sync + 'static>, MemoryError> {
        Err(MemoryError::Generic(
            "a capped memory belongs to one instance and is not copied".to_owned(),
        ))
    }

    unsafe fn do_wait(
        &mut self,
        dst: u32,
        expected: wasmer::sys::vm::ExpectedValue,
        timeout: Option<Duration>,
    ) -> Result<u32, wasmer::sys::vm::WaiterError> {
        // SAFETY: the caller's contract for `memory.atomic.wait` is passed on unchanged.
        unsafe { self.inner.do_wait(dst, expected, timeout) }
    }

    fn do_notify(&mut self, dst: u32, count: u32) -> u32 {
        self.inner.do_notify(dst, count)
    }
}

/// Loads a Wasmer artifact into `engine`, which the module must keep alive (its code lives
/// in the engine).
///
/// Only called for bytes the executor trusts, from the three sources that
/// `Engine::load_trusted_artifact` in `ow_common::host` names (the operator's
/// `--trust-precompiled`, the executor's own compiler process, its own checksummed cache): an
/// artifact is native code and a crafted one can do anything the executor can. What can be
/// checked was, before this:
/// [`crate::artifact`] read the header (Wasmer's magic, artifact version and length) and
/// validated the layout of the whole archive (rkyv's bytecheck, which Wasmer's in-memory
/// `Module::deserialize` skips), and copied it to a 16-byte-aligned buffer as rkyv needs.
/// Wasmer then checks the CPU features the code was compiled for.
pub(crate) fn deserialize_trusted(
    engine: &Engine,
    artifact: bytes::Bytes,
) -> Result<Module, DeserializeError> {
    // SAFETY: from one of the trusted sources above, and its layout validated; the buffer is owned
    // by the module from here on.
    unsafe { Module::deserialize(engine, artifact) }
}

/// A value that stays on the thread it was made on, marked `Send` so that the host side of the
/// guest ABIs (whose futures must be `Send`, for engines that run them on async workers) can
/// hold a Wasmer store.
///
/// Every `ThreadBound` lives in a local of an instance's thread and dies there: the futures
/// holding one are driven to their end on that thread (by `complete_now` or by the runtime
/// handle's `block_on`), never spawned, so the value never actually crosses threads.
pub(crate) struct ThreadBound<T>(T);

impl<T> ThreadBound<T> {
    /// Wraps a value of the current thread. It must not leave this thread (see above).
    pub(crate) fn new(value: T) -> Self {
        Self(value)
    }

    pub(crate) fn get(&mut self) -> &mut T {
        &mut self.0
    }

    pub(crate) fn get_ref(&self) -> &T {
        &self.0
    }
}

// SAFETY: a `ThreadBound` is only made (crate-private) for a value used and dropped on the
// thread it was made on; see the type's documentation.
unsafe impl<T> Send for ThreadBound<T> {}
