//! Links the `net_access` capability's `http`.`get` (its host side is
//! [`ow_common::host::http`]) for actions granted it. Wasmtime suspends the async host call,
//! so an activation waiting for its answer holds no thread.

use crate::instance::{ActivationState, read_guest, write_guest};
use ow_common::abi;
use ow_common::host::abi::GuestMemory;
use ow_common::host::http;
use wasmtime::{Caller, Extern, Linker, Memory, TypedFunc};

/// Adds `http`.`get` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ActivationState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        abi::HTTP_MODULE,
        abi::HTTP_GET_IMPORT,
        |mut caller: Caller<'_, ActivationState>, (url_ptr, url_len): (u32, u32)| {
            Box::new(async move {
                let mut guest = CallerGuest::new(&mut caller)?;
                http::get(&mut guest, url_ptr, url_len).await
            })
        },
    )?;
    Ok(())
}

/// The memory and allocator of the instance calling a host function.
struct CallerGuest<'a, 'b> {
    caller: &'a mut Caller<'b, ActivationState>,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
}

impl<'a, 'b> CallerGuest<'a, 'b> {
    fn new(caller: &'a mut Caller<'b, ActivationState>) -> wasmtime::Result<Self> {
        let Some(Extern::Memory(memory)) = caller.get_export(abi::MEMORY_EXPORT) else {
            return Err(http::missing_export(abi::MEMORY_EXPORT).into());
        };
        let Some(Extern::Func(alloc)) = caller.get_export(abi::ALLOC_EXPORT) else {
            return Err(http::missing_export(abi::ALLOC_EXPORT).into());
        };
        let alloc = alloc.typed::<u32, u32>(&*caller)?;
        Ok(Self {
            caller,
            memory,
            alloc,
        })
    }
}

impl GuestMemory for CallerGuest<'_, '_> {
    type Error = wasmtime::Error;

    async fn alloc(&mut self, len: u32) -> wasmtime::Result<u32> {
        self.alloc.call_async(&mut *self.caller, len).await
    }

    fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> wasmtime::Result<()> {
        write_guest(self.memory, &mut *self.caller, ptr, bytes)
    }

    fn read_memory(&mut self, ptr: u32, len: u32) -> wasmtime::Result<Vec<u8>> {
        read_guest(self.memory, &*self.caller, ptr, len)
    }
}
