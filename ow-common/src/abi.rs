//! The guest ABIs, defined once for the SDK (guest side) and every engine (host side).
//!
//! Three ABIs are detected per module by its exports and the action's `main`:
//!
//! * **SDK** (`ow-wasm-action`'s `pass_json!`): the module exports [`ALLOC_EXPORT`] and
//!   [`MAIN_EXPORT`]. The host asks the guest for a buffer, copies the JSON parameters into it,
//!   and calls main, which returns the guest region holding the JSON result, packed by
//!   [`pack_region`]. A reactor module's [`REACTOR_INIT_EXPORT`] is called first when present.
//! * **stdio** (any WASI command, no SDK): the module exports [`COMMAND_START_EXPORT`]. The
//!   parameters are one JSON document on stdin; the result is the last line written to stdout;
//!   every other stdout line and all of stderr are the activation's logs.
//! * **export call** (any module, WASI or not): `main` names an exported function whose
//!   parameters and results are all numbers (`i32`, `i64`, `f32`, `f64`), and which is none of
//!   the entry points above. The parameters' `args` array holds its arguments; the result is
//!   `{"result": value}` for one result, `{"result": [values]}` for several, `{}` for none. A
//!   reactor's [`REACTOR_INIT_EXPORT`] is called first when present. The SDK ABI wins over it
//!   (an SDK module ignores `main`); it wins over the stdio ABI.
//!
//! Host functions beyond WASI are capabilities, linked only for actions granted them:
//!
//! * **`http`.`get`** ([`HTTP_MODULE`], [`HTTP_GET_IMPORT`]), granted by the `net_access`
//!   annotation: `fn(url_ptr: u32, url_len: u32) -> u64`. The guest passes a UTF-8 URL; the
//!   host answers with a JSON document it writes into a buffer it obtains from
//!   [`ALLOC_EXPORT`] (ownership passes to the guest) and returns packed by [`pack_region`]:
//!   `{"status": <HTTP status>, "body": "<response body>"}`, or `{"error": "<sentence>"}` when
//!   there is no response. An activation waiting in it holds no host thread.

/// `fn(len: u32) -> u32`: allocates `len` bytes in the guest and returns their address.
pub const ALLOC_EXPORT: &str = "__ow_alloc";

/// `fn(ptr: u32, len: u32) -> u64`: runs the action on the JSON parameters at `ptr..ptr+len`
/// and returns the region of its JSON result, packed by [`pack_region`].
pub const MAIN_EXPORT: &str = "__ow_main";

/// The WASI reactor initialiser, called once before [`MAIN_EXPORT`] when the module has it.
pub const REACTOR_INIT_EXPORT: &str = "_initialize";

/// The WASI command entry point of a stdio-ABI module.
pub const COMMAND_START_EXPORT: &str = "_start";

/// What `main` is when an action names none, as OpenWhisk sends it: the export the
/// export-call ABI calls, when the module has a function of that name.
pub const DEFAULT_MAIN: &str = "main";

/// Where an action granted a directory (the `dir` annotation) sees it.
pub const PREOPEN_GUEST_PATH: &str = "/data";

/// The import module of the `net_access` capability's host functions.
pub const HTTP_MODULE: &str = "http";

/// `http`.`get`: `fn(url_ptr: u32, url_len: u32) -> u64`, see the module documentation.
pub const HTTP_GET_IMPORT: &str = "get";

/// The linear memory every ABI reads and writes.
pub const MEMORY_EXPORT: &str = "memory";

/// Packs a guest memory region into the `u64` that [`MAIN_EXPORT`] returns: address in the
/// high half, length in the low half.
pub const fn pack_region(ptr: u32, len: u32) -> u64 {
    ((ptr as u64) << 32) | len as u64
}

/// Splits what [`MAIN_EXPORT`] returned into `(ptr, len)`.
pub const fn unpack_region(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_round_trip() {
        for (ptr, len) in [(0, 0), (1, 2), (u32::MAX, 7), (65536, u32::MAX)] {
            assert_eq!(unpack_region(pack_region(ptr, len)), (ptr, len));
        }
    }
}
