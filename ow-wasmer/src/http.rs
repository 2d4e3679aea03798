//! Links the `net_access` capability's `http`.`get` (its host side is
//! [`ow_common::host::http`]) for actions granted it.
//!
//! A Wasmer host function is synchronous (its async host functions cannot be suspended two at
//! a time on one thread with host interrupts on, see the crate docs), so the instance's thread
//! waits for the answer on the runtime handle, until the deadline at the latest and cut short
//! by a stop: on Wasmer, an activation waiting in `http`.`get` holds a thread.

use crate::instance::{GuestError, Stopped, read_guest, write_guest};
use crate::stop::Watch;
use crate::vm::ThreadBound;
use ow_common::abi;
use ow_common::host::abi::GuestMemory;
use ow_common::host::http;
use std::sync::Arc;
use std::time::Instant;
use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, Imports, Instance, Memory, RuntimeError, Store,
    StoreMut, TypedFunction,
};

/// What `http`.`get` knows of its activation.
pub(crate) struct HttpState {
    /// The instance's memory, once it exists.
    memory: Option<Memory>,
    /// The instance's allocator, once it exists.
    alloc: Option<TypedFunction<u32, u32>>,
    watch: Arc<Watch>,
    deadline: Instant,
}

/// Adds `http`.`get` to `imports`.
pub(crate) fn define(
    store: &mut Store,
    imports: &mut Imports,
    watch: Arc<Watch>,
    deadline: Instant,
) -> FunctionEnv<HttpState> {
    let env = FunctionEnv::new(
        store,
        HttpState {
            memory: None,
            alloc: None,
            watch,
            deadline,
        },
    );
    let get = Function::new_typed_with_env(store, &env, get);
    imports.define(abi::HTTP_MODULE, abi::HTTP_GET_IMPORT, get);
    env
}

/// Hands `http`.`get` the instance's memory and allocator, if it exports them.
pub(crate) fn attach(env: &FunctionEnv<HttpState>, store: &mut Store, instance: &Instance) {
    let memory = instance
        .exports
        .get_memory(abi::MEMORY_EXPORT)
        .ok()
        .cloned();
    let alloc = instance
        .exports
        .get_typed_function::<u32, u32>(&*store, abi::ALLOC_EXPORT)
        .ok();
    let state = env.as_mut(store);
    state.memory = memory;
    state.alloc = alloc;
}

/// `http`.`get(url_ptr, url_len)`: the shared host side, waited for on this thread.
fn get(
    mut env: FunctionEnvMut<'_, HttpState>,
    url_ptr: u32,
    url_len: u32,
) -> Result<u64, RuntimeError> {
    let (state, store) = env.data_and_store_mut();
    let Some(memory) = state.memory.clone() else {
        return Err(missing_export(abi::MEMORY_EXPORT));
    };
    let Some(alloc) = state.alloc.clone() else {
        return Err(missing_export(abi::ALLOC_EXPORT));
    };
    let (watch, deadline) = (state.watch.clone(), state.deadline);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Err(RuntimeError::new(
            "http.get was called outside the engine's runtime",
        ));
    };
    let mut guest = CallerGuest {
        store: ThreadBound::new(store),
        memory,
        alloc,
    };
    let answered = runtime.block_on(async {
        tokio::select! {
            biased;
            () = watch.stopped() => None,
            answered = tokio::time::timeout_at(
                deadline.into(),
                http::get(&mut guest, url_ptr, url_len),
            ) => answered.ok(),
        }
    });
    match answered {
        Some(Ok(packed)) => Ok(packed),
        Some(Err(error)) => Err(error.into_runtime_error()),
        // The deadline passed (the stop is on its way) or the stop came.
        None => Err(RuntimeError::user(Box::new(Stopped))),
    }
}

fn missing_export(export: &str) -> RuntimeError {
    RuntimeError::user(Box::new(http::missing_export(export)))
}

/// The memory and allocator of the instance calling `http`.`get`.
struct CallerGuest<'a> {
    store: ThreadBound<StoreMut<'a>>,
    memory: Memory,
    alloc: TypedFunction<u32, u32>,
}

impl GuestMemory for CallerGuest<'_> {
    type Error = GuestError;

    async fn alloc(&mut self, len: u32) -> Result<u32, GuestError> {
        self.alloc
            .call(self.store.get(), len)
            .map_err(GuestError::Wasm)
    }

    fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), GuestError> {
        write_guest(&self.memory, self.store.get_ref(), ptr, bytes)
    }

    fn read_memory(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, GuestError> {
        read_guest(&self.memory, self.store.get_ref(), ptr, len)
    }
}
