//! Wasmer behind ow-wasm's engine seam (being written).
