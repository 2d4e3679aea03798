//! Wasmer's precompiled artifacts: what [`serialize`] makes for `ow-precompiler --engine
//! wasmer`, and how [`load`] reads one back when the operator trusts precompiled code.
//!
//! The format, as Wasmer 7.4.2's `Module::serialize` writes it:
//!
//! | bytes | what |
//! |---|---|
//! | 0..16 | `wasmer-universal` |
//! | 16..24 | `WASMER\0\0` |
//! | 24..28 | the artifact format version, u32 little-endian ([`FORMAT_VERSION`], 24) |
//! | 28..32 | the payload length, u32 little-endian |
//! | 32.. | the payload: an rkyv archive of the compiled module, its code and the CPU features it was compiled for |
//!
//! Nothing records the Wasmer release, the target or the compiler: Wasmer checks the format
//! version and that this host has the CPU features the code needs (artifacts are compiled
//! for the CPU of the machine that made them), nothing else.

use crate::compiler::{self, module_engine};
use crate::{ENGINE_NAME, WasmerModule, vm};
use bytes::{Bytes, BytesMut};
use ow_common::code::ModuleFormat;
use ow_common::runtime::InitError;
use wasmer_compiler::serialize::SerializableModule;
use wasmer_types::MetadataHeader;

/// How an artifact begins.
const MAGIC: &[u8; 16] = b"wasmer-universal";

/// What follows the magic: the start of Wasmer's metadata header.
const METADATA_MAGIC: &[u8; 8] = b"WASMER\0\0";

/// The artifact format version this engine reads.
pub(crate) const FORMAT_VERSION: u32 = MetadataHeader::CURRENT_VERSION;

/// Where the payload starts.
const PAYLOAD_OFFSET: usize = MAGIC.len() + MetadataHeader::LEN;

/// Compiles `wasm` and serializes it as an artifact: the module's fault if it does not
/// compile (in the words of an in-process compile), the executor's if it cannot be serialized.
pub(crate) fn serialize(wasm: &[u8]) -> Result<Vec<u8>, InitError> {
    let (module, _engine) = compiler::compile(wasm)?;
    let artifact = module
        .serialize()
        .map_err(|e| InitError::Engine(format!("cannot serialize the compiled module: {e}")))?;
    Ok(artifact.to_vec())
}

/// Loads an artifact into an engine of its own, after checking everything about it that
/// can be checked.
pub(crate) fn load(bytes: &[u8]) -> Result<WasmerModule, InitError> {
    let payload_len = payload_len(bytes).map_err(refused)?;
    let aligned = aligned_copy(bytes);
    let payload = &aligned[PAYLOAD_OFFSET..PAYLOAD_OFFSET + payload_len];
    SerializableModule::archive_from_slice_checked(payload)
        .map_err(|e| refused(format!("its compiled code is corrupt: {e}")))?;
    let engine = module_engine();
    let module = vm::deserialize_trusted(&engine, aligned).map_err(|e| refused(e.to_string()))?;
    Ok(WasmerModule::new(module, engine))
}

/// The payload length the header announces, once the header is this engine's and the payload
/// is all there; else why not, as a clause.
fn payload_len(bytes: &[u8]) -> Result<usize, String> {
    if !bytes.starts_with(MAGIC) {
        return Err("it does not begin with `wasmer-universal`".to_owned());
    }
    let Some(header) = bytes.get(MAGIC.len()..PAYLOAD_OFFSET) else {
        return Err("it ends inside its header".to_owned());
    };
    if &header[..8] != METADATA_MAGIC {
        return Err("its header was not written by Wasmer".to_owned());
    }
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(format!(
            "it is in Wasmer's artifact format {version}, and this executor's Wasmer {} reads \
             format {FORMAT_VERSION}",
            wasmer_types::VERSION
        ));
    }
    let announced = word(12) as usize;
    let present = bytes.len() - PAYLOAD_OFFSET;
    if announced > present {
        return Err(format!(
            "it is truncated: its header announces {announced} bytes of compiled code, and \
             {present} follow"
        ));
    }
    Ok(announced)
}

/// A copy of `bytes` that starts on a 16-byte boundary, as Wasmer's header and rkyv's archive
/// need (a slice of a larger buffer may start anywhere).
fn aligned_copy(bytes: &[u8]) -> Bytes {
    let mut buffer = BytesMut::zeroed(bytes.len() + MetadataHeader::ALIGN);
    let offset = buffer.as_ptr().align_offset(MetadataHeader::ALIGN);
    buffer[offset..offset + bytes.len()].copy_from_slice(bytes);
    // Freezing keeps the allocation, so the slice keeps its alignment (which the layout check
    // and Wasmer both verify).
    buffer.freeze().slice(offset..offset + bytes.len())
}

fn refused(reason: String) -> InitError {
    InitError::IncompatibleArtifact {
        found: ModuleFormat::WasmerArtifact,
        engine: ENGINE_NAME,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, len: u32) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(METADATA_MAGIC);
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes
    }

    #[test]
    fn a_header_is_read_and_what_is_wrong_with_it_is_said() {
        let mut whole = header(FORMAT_VERSION, 4);
        whole.extend_from_slice(&[0; 4]);
        assert_eq!(payload_len(&whole), Ok(4));
        assert_eq!(
            payload_len(&header(23, 0)).unwrap_err(),
            format!(
                "it is in Wasmer's artifact format 23, and this executor's Wasmer {} reads \
                 format 24",
                wasmer_types::VERSION
            )
        );
        assert_eq!(
            payload_len(&header(FORMAT_VERSION, 100)).unwrap_err(),
            "it is truncated: its header announces 100 bytes of compiled code, and 0 follow"
        );
        assert_eq!(
            payload_len(&whole[..20]).unwrap_err(),
            "it ends inside its header"
        );
        let mut foreign = whole.clone();
        foreign[16] = b'X';
        assert_eq!(
            payload_len(&foreign).unwrap_err(),
            "its header was not written by Wasmer"
        );
    }

    #[test]
    fn copies_are_aligned_whatever_the_source() {
        let source = [7u8; 100];
        for start in 0..4 {
            let copy = aligned_copy(&source[start..]);
            assert_eq!(copy.as_ptr() as usize % MetadataHeader::ALIGN, 0);
            assert_eq!(&copy[..], &source[start..]);
        }
    }
}
