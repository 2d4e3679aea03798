//! What every ow-wasm crate shares: the OpenWhisk protocol types, action code decoding, the
//! engine seam ([`runtime::WasmRuntime`]), the guest ABI and the errors that cross crates.
//!
//! Features: without `host` only [`abi`] is built, so the guest SDK can share the ABI's names
//! while compiling for `wasm32-wasip1`. `engine` adds [`host`], the host layer every engine
//! crate builds on (it needs tokio); `testing` adds [`testing`], the conformance suite every
//! engine crate runs.

#![deny(missing_docs)]
// The one exception, a single allocator call, is `host::heap`.
#![deny(unsafe_code)]

pub mod abi;

#[cfg(feature = "host")]
pub mod cache;
#[cfg(feature = "host")]
pub mod capabilities;
#[cfg(feature = "host")]
pub mod code;
#[cfg(feature = "engine")]
pub mod host;
#[cfg(feature = "host")]
pub mod limits;
#[cfg(feature = "host")]
pub mod protocol;
#[cfg(feature = "host")]
pub mod runtime;
#[cfg(feature = "testing")]
pub mod testing;
