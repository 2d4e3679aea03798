//! The guest side of the SDK ABI described in `ow_common::abi`.
//!
//! The host calls the exported allocator for a parameter buffer, writes the JSON parameters
//! into it, then calls the exported main function. Buffers are handed over by ownership
//! (`Box<[u8]>` turned into a raw region and back), so no global state is needed: the instance
//! is thrown away after one activation.
#![allow(unsafe_code)]

use serde_json::Value;

pub use ow_common::abi::{ALLOC_EXPORT, MAIN_EXPORT, pack_region};

/// Exports `handler` as the action's entry point.
///
/// `handler` is a `fn(serde_json::Value) -> Result<serde_json::Value, anyhow::Error>`. The
/// macro generates the two exports of the SDK ABI; use it once per module.
#[macro_export]
macro_rules! pass_json {
    ($handler:path) => {
        /// The SDK ABI's allocator: a buffer of `len` bytes for the host to fill.
        #[allow(unsafe_code)]
        #[unsafe(export_name = "__ow_alloc")]
        pub extern "C" fn __ow_alloc(len: u32) -> u32 {
            $crate::abi::alloc(len)
        }

        /// The SDK ABI's entry point: parameters in, packed result region out.
        #[allow(unsafe_code)]
        #[unsafe(export_name = "__ow_main")]
        pub extern "C" fn __ow_main(ptr: u32, len: u32) -> u64 {
            // SAFETY: the host passes back exactly the region `__ow_alloc` handed out.
            unsafe { $crate::abi::run_json(ptr, len, $handler) }
        }
    };
}

/// Allocates a zeroed buffer of `len` bytes and gives up ownership of it to the host.
pub fn alloc(len: u32) -> u32 {
    let buffer = vec![0u8; len as usize].into_boxed_slice();
    Box::into_raw(buffer) as *mut u8 as usize as u32
}

/// Takes back the parameter buffer, runs `handler` and hands the JSON result to the host.
///
/// # Safety
///
/// `ptr` and `len` must describe a buffer returned by [`alloc`] that has not been taken back.
pub unsafe fn run_json(
    ptr: u32,
    len: u32,
    handler: fn(Value) -> Result<Value, anyhow::Error>,
) -> u64 {
    let slice = std::ptr::slice_from_raw_parts_mut(ptr as usize as *mut u8, len as usize);
    // SAFETY: the caller guarantees this is the box `alloc` leaked, with the same length.
    let params = unsafe { Box::from_raw(slice) };
    let result = match serde_json::from_slice::<Value>(&params) {
        Ok(params) => handler(params).unwrap_or_else(|error| error_value(&error)),
        Err(error) => error_value(&anyhow::anyhow!("the parameters are not JSON: {error}")),
    };
    drop(params);
    let bytes = serde_json::to_vec(&result)
        .unwrap_or_else(|_| br#"{"error":"the result could not be serialized"}"#.to_vec());
    let len = bytes.len() as u32;
    let ptr = Box::into_raw(bytes.into_boxed_slice()) as *mut u8 as usize as u32;
    pack_region(ptr, len)
}

/// Calls the host's `http`.`get` with `url` and takes ownership of the JSON answer it wrote
/// into a buffer it obtained from [`alloc`] (see `ow_common::abi`).
#[cfg(target_family = "wasm")]
pub fn http_get_answer(url: &str) -> Vec<u8> {
    // The module name is `ow_common::abi::HTTP_MODULE` and the name `HTTP_GET_IMPORT`; the
    // attribute takes only literals.
    #[link(wasm_import_module = "http")]
    unsafe extern "C" {
        #[link_name = "get"]
        fn http_get(url_ptr: u32, url_len: u32) -> u64;
    }
    // SAFETY: the host reads `url.len()` bytes at `url.as_ptr()`, which `url` keeps alive for
    // the call, and writes only into the buffer it asks `__ow_alloc` for.
    let packed = unsafe { http_get(url.as_ptr() as usize as u32, url.len() as u32) };
    let (ptr, len) = ow_common::abi::unpack_region(packed);
    let slice = std::ptr::slice_from_raw_parts_mut(ptr as usize as *mut u8, len as usize);
    // SAFETY: the host returns the region `__ow_alloc` leaked for exactly `len` bytes, and hands
    // its ownership over: nothing else will take it back.
    unsafe { Box::from_raw(slice) }.into_vec()
}

/// The application error an `Err` from the handler becomes.
fn error_value(error: &anyhow::Error) -> Value {
    serde_json::json!({ "error": format!("{error:#}") })
}
