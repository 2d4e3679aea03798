//! Action code decoding: OpenWhisk's base64 transport, a zip (or a bare module) inside, and
//! format sniffing that names what it found.
//!
//! Everything is read in memory with bounded sizes; nothing is extracted to disk, and zip
//! entries whose names climb out of the archive (`../x`, `/etc/x`) are refused outright.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// The largest action code OpenWhisk accepts (48 MB), as base64 text.
pub const MAX_ENCODED_CODE_BYTES: usize = 48 * 1024 * 1024 * 4 / 3 + 4;
/// The largest module taken out of a zip; a larger entry is treated as a zip bomb.
pub const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;
/// The most entries a zip may hold.
pub const MAX_ZIP_ENTRIES: usize = 1024;

/// The most bytes reserved for an unpacked entry on the strength of its declared size alone:
/// a lying header must not make a tiny zip reserve hundreds of megabytes before a byte is read.
const PREALLOCATED_MODULE_BYTES: u64 = 16 * 1024 * 1024;

/// The entry picked when `main` does not name one.
pub const DEFAULT_ENTRY: &str = "action.wasm";

/// How a Wasmer (7.x "universal") serialized artifact begins: this magic, then `WASMER\0\0`,
/// the artifact ABI version and the metadata length.
const WASMER_ARTIFACT_MAGIC: &[u8] = b"wasmer-universal";

/// How the names of a Wasmtime artifact's own ELF sections begin.
const WASMTIME_SECTION_PREFIX: &[u8] = b".wasmtime";

/// How an LZ4 frame begins: the frame format's magic number, little-endian.
const LZ4_FRAME_MAGIC: &[u8] = &[0x04, 0x22, 0x4d, 0x18];

/// What a blob of action code turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModuleFormat {
    /// A portable WebAssembly core module (`\0asm`, version 1).
    CoreModule,
    /// A WebAssembly component (`\0asm`, layer 1).
    Component,
    /// A Wasmtime precompiled artifact (an ELF file with `.wasmtime` sections).
    WasmtimeArtifact,
    /// Any other ELF file: a program built for a machine rather than for WebAssembly.
    NativeProgram,
    /// A Wasmer serialized artifact.
    WasmerArtifact,
    /// A WAMR ahead-of-time module (`\0aot`).
    WamrAot,
    /// A zip archive.
    Zip,
    /// An LZ4 frame (how `ow-precompiler` packs an artifact).
    Lz4Frame,
    /// A gzip stream (a tar.gz, which ow-wasm does not take).
    Gzip,
    /// Text, such as a JavaScript or Python action sent to the wrong kind.
    Text,
    /// Bytes that are none of the above.
    Unknown,
}

impl ModuleFormat {
    /// Names the format from its first bytes.
    pub fn sniff(bytes: &[u8]) -> Self {
        const WASM_MAGIC: &[u8] = b"\0asm";
        if bytes.len() >= 8 && bytes.starts_with(WASM_MAGIC) {
            // Version 1 is a core module; components use version 0x0d with layer 1.
            return match (&bytes[4..6], &bytes[6..8]) {
                (_, [1, 0]) => Self::Component,
                ([1, 0], [0, 0]) => Self::CoreModule,
                _ => Self::Unknown,
            };
        }
        if bytes.starts_with(b"\x7fELF") {
            // Wasmtime names its sections `.wasmtime.engine`, `.wasmtime.info`, … Their names
            // sit in the section name table, which its ELF writer puts at the end of the file:
            // searched from the end, a 550 KiB artifact is told in its last KiB (0.1 µs, not
            // the 17.5 µs of a search from the start).
            if memchr::memmem::rfind(bytes, WASMTIME_SECTION_PREFIX).is_some() {
                Self::WasmtimeArtifact
            } else {
                Self::NativeProgram
            }
        } else if bytes.starts_with(WASMER_ARTIFACT_MAGIC) {
            Self::WasmerArtifact
        } else if bytes.starts_with(b"\0aot") {
            Self::WamrAot
        } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            Self::Zip
        } else if bytes.starts_with(LZ4_FRAME_MAGIC) {
            Self::Lz4Frame
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if !bytes.is_empty()
            && match std::str::from_utf8(&bytes[..bytes.len().min(512)]) {
                Ok(_) => true,
                // A character cut by the 512-byte window is still text.
                Err(e) => e.error_len().is_none() && bytes.len() > 512,
            }
        {
            Self::Text
        } else {
            Self::Unknown
        }
    }

    /// Whether this is something an engine can run (a module or an engine artifact).
    pub fn is_runnable(self) -> bool {
        matches!(
            self,
            Self::CoreModule
                | Self::Component
                | Self::WasmtimeArtifact
                | Self::WasmerArtifact
                | Self::WamrAot
        )
    }
}

impl fmt::Display for ModuleFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CoreModule => "a WebAssembly core module",
            Self::Component => "a WebAssembly component",
            Self::WasmtimeArtifact => "a Wasmtime precompiled artifact",
            Self::NativeProgram => "a native program (an ELF file that is not a Wasmtime artifact)",
            Self::WasmerArtifact => "a Wasmer precompiled artifact",
            Self::WamrAot => "a WAMR AOT module",
            Self::Zip => "a zip archive",
            Self::Lz4Frame => "an LZ4 frame",
            Self::Gzip => "a gzip file",
            Self::Text => "text",
            Self::Unknown => "bytes that are not a WebAssembly module",
        })
    }
}

/// The decoded code of one action: the bytes an engine prepares, their format and their
/// content hash (identical code is compiled once). A clone shares the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct ModuleCode {
    /// The module or artifact bytes.
    pub bytes: Arc<Vec<u8>>,
    /// What [`ModuleFormat::sniff`] found.
    pub format: ModuleFormat,
    /// BLAKE3 of `bytes`.
    pub hash: [u8; 32],
}

impl ModuleCode {
    /// Wraps bytes that are already a module or artifact.
    pub fn new(bytes: Vec<u8>) -> Self {
        let format = ModuleFormat::sniff(&bytes);
        let hash = *blake3::hash(&bytes).as_bytes();
        Self {
            bytes: Arc::new(bytes),
            format,
            hash,
        }
    }
}

impl fmt::Debug for ModuleCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleCode")
            .field("format", &self.format)
            .field("len", &self.bytes.len())
            .field("hash", &blake3::Hash::from_bytes(self.hash).to_hex())
            .finish()
    }
}

/// Why action code could not be decoded. Each message says what was wrong and what to send.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CodeError {
    /// The code field is empty.
    #[error("Missing main/no code to execute.")]
    Missing,
    /// The encoded code exceeds [`MAX_ENCODED_CODE_BYTES`].
    #[error("The action code is {0} bytes, more than the 48 MB an action may have.")]
    TooLarge(usize),
    /// Not valid base64.
    #[error(
        "The action code is not valid base64 ({0}); send the module or its zip base64-encoded."
    )]
    Base64(String),
    /// A zip that cannot be read.
    #[error("The action code is not a readable zip archive: {0}.")]
    Zip(String),
    /// An LZ4 frame (a packed artifact) that cannot be unpacked.
    #[error("The action code holds an LZ4 frame that cannot be unpacked: {0}.")]
    Lz4(String),
    /// A zip entry whose name escapes the archive.
    #[error("The zip entry {0:?} points outside the archive; rebuild the zip with plain names.")]
    UnsafeEntry(String),
    /// Too many entries.
    #[error("The zip holds {0} entries, more than the {MAX_ZIP_ENTRIES} allowed.")]
    TooManyEntries(usize),
    /// An entry larger than [`MAX_MODULE_BYTES`] once uncompressed.
    #[error(
        "The zip entry {name:?} unpacks to more than {MAX_MODULE_BYTES} bytes; refusing it as a zip bomb."
    )]
    EntryTooLarge {
        /// The entry's name.
        name: String,
    },
    /// No entry to run.
    #[error(
        "The zip holds no WebAssembly module (entries: {0}); add a .wasm file, or name it with `main`."
    )]
    NoModule(String),
    /// More than one candidate and nothing to choose between them.
    #[error(
        "The zip holds several modules ({0}); name the one to run with `main`, or call it action.wasm."
    )]
    AmbiguousModule(String),
    /// The chosen bytes are not a module.
    #[error("The action code is {found}, not a WebAssembly module; {hint}")]
    NotAModule {
        /// What was found instead.
        found: ModuleFormat,
        /// What to do about it.
        hint: &'static str,
    },
}

/// Decodes the `code` of an init request into the module to run.
///
/// `code` is base64 of a zip or of a bare module. `main` chooses the zip entry when it names
/// one (`main` or `main.wasm`); otherwise `action.wasm`, otherwise the only runnable entry.
pub fn decode_action_code(code: &str, main: &str) -> Result<ModuleCode, CodeError> {
    let code = code.trim();
    if code.is_empty() {
        return Err(CodeError::Missing);
    }
    if code.len() > MAX_ENCODED_CODE_BYTES {
        return Err(CodeError::TooLarge(code.len()));
    }
    decode_code_bytes(decode_base64(code)?, main)
}

/// Action code decoded lately, by the BLAKE3 of its text and of `main`. The invoker sends
/// every new container of an action the same base64 zip; decoding it again (base64, inflate,
/// the module's hash: more than half of the executor's work in an `/init` whose module is
/// cached) is then a lookup. Holds at most `max_bytes` of modules, the least recently used
/// leaving first; a module larger than that is never held.
#[derive(Debug)]
pub struct RecentCode {
    /// Oldest first: `(key, decoded)`.
    entries: Mutex<VecDeque<([u8; 32], ModuleCode)>>,
    max_bytes: usize,
}

impl RecentCode {
    /// What an executor holds by default: a few actions of a few hundred KiB.
    pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;

    /// An empty memo holding at most `max_bytes` of modules.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            entries: Mutex::default(),
            max_bytes,
        }
    }

    /// [`decode_action_code`], or what it gave for the same text and `main` (the same bytes).
    pub fn decode(&self, code: &str, main: &str) -> Result<ModuleCode, CodeError> {
        let text = code.trim();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&(main.len() as u64).to_le_bytes());
        hasher.update(main.as_bytes());
        hasher.update(text.as_bytes());
        let key = *hasher.finalize().as_bytes();
        {
            let mut entries = self.entries.lock().expect("recent code lock");
            if let Some(at) = entries.iter().position(|(seen, _)| *seen == key) {
                let entry = entries.remove(at).expect("the position is in range");
                let decoded = entry.1.clone();
                entries.push_back(entry);
                return Ok(decoded);
            }
        }
        let decoded = decode_action_code(text, main)?;
        if decoded.bytes.len() <= self.max_bytes {
            let mut entries = self.entries.lock().expect("recent code lock");
            // A concurrent decode of the same text may have kept it already.
            if !entries.iter().any(|(seen, _)| *seen == key) {
                entries.push_back((key, decoded.clone()));
            }
            let mut held: usize = entries.iter().map(|(_, code)| code.bytes.len()).sum();
            while held > self.max_bytes {
                let (_, oldest) = entries.pop_front().expect("held bytes are in some entry");
                held -= oldest.bytes.len();
            }
        }
        Ok(decoded)
    }

    /// How many decoded modules are held.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("recent code lock").len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Decodes action code that is already bytes (a zip or a bare module, as a file on disk holds
/// it) into the module to run, choosing a zip's entry as [`decode_action_code`] does. An
/// entry that is an LZ4 frame (as [`zip_artifact`] packs artifacts) is unpacked; a bare frame,
/// outside a zip's CRC-32, is not taken.
pub fn decode_code_bytes(bytes: Vec<u8>, main: &str) -> Result<ModuleCode, CodeError> {
    let module = match ModuleFormat::sniff(&bytes) {
        ModuleFormat::Zip => match read_zip_entry(&bytes, main)? {
            Cow::Borrowed(stored) => unpack_if_lz4(stored)?.unwrap_or_else(|| stored.to_vec()),
            Cow::Owned(read) => unpack_if_lz4(&read)?.unwrap_or(read),
        },
        _ => bytes,
    };
    let module = ModuleCode::new(module);
    check_runnable(module.format)?;
    Ok(module)
}

/// Decodes base64, with or without padding, ignoring line breaks (`base64 -w 76` output):
/// forgiving-base64 as browsers' `atob` reads it (the unused low bits of a last character are
/// ignored, as Node.js's `Buffer.from` ignores them). Action code is the largest thing an `/init`
/// decodes (a precompiled artifact is 300 KiB and more), so it goes through the SIMD decoder,
/// four times faster here than a scalar one; its error says nothing of where the text went
/// wrong, so a failure is explained by [`base64_fault`].
fn decode_base64(code: &str) -> Result<Vec<u8>, CodeError> {
    base64_simd::forgiving_decode_to_vec(code.as_bytes())
        .map_err(|_| CodeError::Base64(base64_fault(code)))
}

/// Where `code`, which failed to decode, stops being base64.
fn base64_fault(code: &str) -> String {
    let in_alphabet = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/');
    let payload = code.trim_end_matches(|c: char| c == '=' || c.is_ascii_whitespace());
    let stray = payload
        .bytes()
        .position(|byte| !in_alphabet(byte) && !byte.is_ascii_whitespace());
    if let Some(offset) = stray {
        // A byte that is not ASCII starts a character: the offset is a character boundary.
        let found = payload[offset..].chars().next().unwrap_or_default();
        return format!("{found:?} at offset {offset} is not in the base64 alphabet");
    }
    let symbols = payload
        .bytes()
        .filter(|byte| !byte.is_ascii_whitespace())
        .count();
    let padding = code.bytes().filter(|byte| *byte == b'=').count();
    if symbols % 4 == 1 {
        format!("{symbols} characters leave one over, which encodes no byte")
    } else if padding > 0 {
        format!("{padding} `=` after {symbols} characters do not pad them to a multiple of 4")
    } else {
        "it does not decode".to_owned()
    }
}

fn check_runnable(format: ModuleFormat) -> Result<(), CodeError> {
    if format.is_runnable() {
        return Ok(());
    }
    let hint = match format {
        ModuleFormat::Gzip => "tar.gz archives are not supported: send a zip or a bare .wasm.",
        ModuleFormat::Zip => "a zip inside a zip is not supported: zip the .wasm itself.",
        ModuleFormat::Lz4Frame => {
            "send the zip `ow-precompiler` wrote, which holds the artifact as an LZ4 frame."
        }
        ModuleFormat::Text => {
            "build the action for wasm32-wasip1 and send the .wasm (or a zip holding it)."
        }
        ModuleFormat::NativeProgram => {
            "build the action for the wasm32-wasip1 target, not for this machine, and send the \
             .wasm (or a zip holding it)."
        }
        _ => "send a .wasm built for wasm32-wasip1, or a zip holding one.",
    };
    Err(CodeError::NotAModule {
        found: format,
        hint,
    })
}

/// Picks the module entry of a zip and reads it, bounded by [`MAX_MODULE_BYTES`]. A stored
/// entry is borrowed from the zip's bytes, after its CRC-32 is checked.
fn read_zip_entry<'zip>(bytes: &'zip [u8], main: &str) -> Result<Cow<'zip, [u8]>, CodeError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| CodeError::Zip(e.to_string()))?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(CodeError::TooManyEntries(archive.len()));
    }
    let mut files = Vec::new();
    for index in 0..archive.len() {
        let entry = archive
            .by_index_raw(index)
            .map_err(|e| CodeError::Zip(e.to_string()))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        // `enclosed_name` strips a leading root or drive (`/etc/x` becomes `etc/x`); refuse those
        // names too, as the module documentation promises.
        let absolute = name.starts_with(['/', '\\'])
            || matches!(name.as_bytes(), [drive, b':', ..] if drive.is_ascii_alphabetic());
        if absolute || entry.enclosed_name().is_none() {
            return Err(CodeError::UnsafeEntry(name));
        }
        if !entry.is_dir() {
            files.push((index, name));
        }
    }
    let by_name = |wanted: &str| files.iter().find(|(_, name)| name == wanted);
    let main_wasm = format!("{main}.wasm");
    let chosen = match by_name(main)
        .or_else(|| by_name(&main_wasm))
        .or_else(|| by_name(DEFAULT_ENTRY))
    {
        Some((index, _)) => *index,
        None => {
            let candidates: Vec<&(usize, String)> = files
                .iter()
                .filter(|(_, name)| looks_like_module(name))
                .collect();
            let names = |list: &[&(usize, String)]| {
                list.iter()
                    .map(|(_, name)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            match candidates.as_slice() {
                [(index, _)] => *index,
                [] => {
                    let all: Vec<&(usize, String)> = files.iter().collect();
                    return Err(CodeError::NoModule(if all.is_empty() {
                        "none".to_owned()
                    } else {
                        names(&all)
                    }));
                }
                several => return Err(CodeError::AmbiguousModule(names(several))),
            }
        }
    };
    let raw = archive
        .by_index_raw(chosen)
        .map_err(|e| CodeError::Zip(e.to_string()))?;
    if raw.size() > MAX_MODULE_BYTES {
        let name = String::from_utf8_lossy(raw.name_raw()).into_owned();
        return Err(CodeError::EntryTooLarge { name });
    }
    if let Some(stored) = stored_in_place(bytes, &raw) {
        return stored.map(Cow::Borrowed);
    }
    if let Some(module) = unpack_zstd_in_one_call(bytes, &raw) {
        return module.map(Cow::Owned);
    }
    drop(raw);
    let entry = archive
        .by_index(chosen)
        .map_err(|e| CodeError::Zip(e.to_string()))?;
    let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
    // The declared size may lie: read at most one byte past the bound to find out.
    let mut module = Vec::with_capacity(entry.size().min(PREALLOCATED_MODULE_BYTES) as usize);
    entry
        .take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut module)
        .map_err(|e| CodeError::Zip(format!("cannot unpack {name:?}: {e}")))?;
    if module.len() as u64 > MAX_MODULE_BYTES {
        return Err(CodeError::EntryTooLarge { name });
    }
    Ok(Cow::Owned(module))
}

/// A stored (uncompressed) entry's bytes, in place in the zip and checked against its CRC-32:
/// a packed artifact is unpacked straight from them. `None` when the entry is compressed, or
/// its data is not plainly known, for the streaming reader to handle.
fn stored_in_place<'zip, R: std::io::Read>(
    zip: &'zip [u8],
    entry: &zip::read::ZipFile<'_, R>,
) -> Option<Result<&'zip [u8], CodeError>> {
    if entry.compression() != zip::CompressionMethod::Stored
        || entry.encrypted()
        || entry.size() != entry.compressed_size()
    {
        return None;
    }
    let stored = raw_entry_data(zip, entry)?;
    if crc32fast::hash(stored) != entry.crc32() {
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        return Some(Err(CodeError::Zip(format!(
            "cannot read {name:?}: its contents do not match the CRC-32 the zip records"
        ))));
    }
    Some(Ok(stored))
}

/// A Zstandard entry (a precompiled artifact, as `ow-precompiler` packed them before
/// [`zip_artifact`] wrote LZ4 frames) unpacked in one call,
/// straight from the zip's bytes into a buffer of the entry's size, and checked against its
/// CRC-32. The streaming reader would unpack into a window buffer and copy out of it: twice the
/// fresh memory, whose page faults were a third of a precompiled `/init` in a new process.
/// `None` when the entry is not Zstandard, or its data or size is not plainly known, for the
/// streaming reader to handle.
fn unpack_zstd_in_one_call<R: std::io::Read>(
    zip: &[u8],
    entry: &zip::read::ZipFile<'_, R>,
) -> Option<Result<Vec<u8>, CodeError>> {
    if entry.compression() != zip::CompressionMethod::Zstd
        || entry.encrypted()
        || entry.size() > PREALLOCATED_MODULE_BYTES
    {
        return None;
    }
    let frames = raw_entry_data(zip, entry)?;
    let name = || String::from_utf8_lossy(entry.name_raw()).into_owned();
    // The declared size bounds the output: a header that understates it fails here, one
    // that overstates it fails the CRC or the length check below.
    let module = match zstd::bulk::decompress(frames, entry.size() as usize) {
        Ok(module) => module,
        Err(e) => {
            return Some(Err(CodeError::Zip(format!(
                "cannot unpack {:?}: {e}",
                name()
            ))));
        }
    };
    if module.len() as u64 != entry.size() || crc32fast::hash(&module) != entry.crc32() {
        return Some(Err(CodeError::Zip(format!(
            "cannot unpack {:?}: its contents do not match the size and CRC-32 the zip records",
            name()
        ))));
    }
    Some(Ok(module))
}

/// An entry's data as the zip holds it (compressed or not), in place; `None` when where it
/// lies is not plainly known.
fn raw_entry_data<'zip, R: std::io::Read>(
    zip: &'zip [u8],
    entry: &zip::read::ZipFile<'_, R>,
) -> Option<&'zip [u8]> {
    let start = usize::try_from(entry.data_start()?).ok()?;
    let end = start.checked_add(usize::try_from(entry.compressed_size()).ok()?)?;
    zip.get(start..end)
}

/// `bytes` unpacked when they are an LZ4 frame; `None` when they are something else.
fn unpack_if_lz4(bytes: &[u8]) -> Result<Option<Vec<u8>>, CodeError> {
    if ModuleFormat::sniff(bytes) == ModuleFormat::Lz4Frame {
        unpack_lz4_frame(bytes).map(Some)
    } else {
        Ok(None)
    }
}

/// Unpacks an LZ4 frame, at most [`MAX_MODULE_BYTES`]. A frame of independent blocks that
/// records its content size, as [`zip_artifact`] writes them, unpacks block by block straight
/// into a buffer of that size: the streaming decoder unpacks into a window and copies out of
/// it, which took a 566 KB Wasmtime artifact 0.39 ms here against 0.13 ms. Any other frame
/// (the `lz4` tool links its blocks by default) goes through the streaming decoder.
fn unpack_lz4_frame(frame: &[u8]) -> Result<Vec<u8>, CodeError> {
    let header = Lz4FrameHeader::parse(frame)?;
    match header.content_size {
        Some(size) if header.independent_blocks => unpack_lz4_blocks(frame, &header, size),
        _ => {
            let mut module = Vec::new();
            lz4::Decoder::new(frame)
                .and_then(|decoder| decoder.take(MAX_MODULE_BYTES + 1).read_to_end(&mut module))
                .map_err(|e| CodeError::Lz4(e.to_string()))?;
            if module.len() as u64 > MAX_MODULE_BYTES {
                return Err(lz4_too_large());
            }
            Ok(module)
        }
    }
}

fn lz4_too_large() -> CodeError {
    CodeError::Lz4(format!(
        "it unpacks to more than {MAX_MODULE_BYTES} bytes; refusing it as a zip bomb"
    ))
}

/// What the start of an LZ4 frame says about the blocks that follow it.
struct Lz4FrameHeader {
    /// Where the first block begins.
    blocks_start: usize,
    /// The most bytes one block unpacks to.
    block_max: usize,
    /// Whether each block unpacks on its own, without the ones before it.
    independent_blocks: bool,
    /// Whether each block is followed by a 4-byte checksum.
    block_checksums: bool,
    /// Whether the frame ends with a 4-byte checksum of its content.
    content_checksum: bool,
    /// How many bytes the frame unpacks to, when it says.
    content_size: Option<u64>,
}

impl Lz4FrameHeader {
    /// Reads the frame descriptor (LZ4 frame format 1.6.x, section "Frame Descriptor").
    fn parse(frame: &[u8]) -> Result<Self, CodeError> {
        let truncated = || CodeError::Lz4("its header is cut short".to_owned());
        let (&flags, &block_descriptor) = (
            frame.get(4).ok_or_else(truncated)?,
            frame.get(5).ok_or_else(truncated)?,
        );
        if flags >> 6 != 1 {
            return Err(CodeError::Lz4(format!(
                "it is of frame format version {}, not 1",
                flags >> 6
            )));
        }
        if flags & 0x01 != 0 {
            return Err(CodeError::Lz4("it needs a dictionary".to_owned()));
        }
        let block_max = match (block_descriptor >> 4) & 0x07 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            other => {
                return Err(CodeError::Lz4(format!(
                    "its block size code {other} is none of 4 to 7"
                )));
            }
        };
        let content_size = if flags & 0x08 != 0 {
            let bytes = frame.get(6..14).ok_or_else(truncated)?;
            Some(u64::from_le_bytes(bytes.try_into().expect("eight bytes")))
        } else {
            None
        };
        // The descriptor ends with one byte of header checksum.
        let blocks_start = if content_size.is_some() { 15 } else { 7 };
        if frame.len() < blocks_start {
            return Err(truncated());
        }
        Ok(Self {
            blocks_start,
            block_max,
            independent_blocks: flags & 0x20 != 0,
            block_checksums: flags & 0x10 != 0,
            content_checksum: flags & 0x04 != 0,
            content_size,
        })
    }
}

/// Unpacks a frame of independent blocks into a buffer of its recorded `size`. Its checksums,
/// if it has any, are not verified: a zip's CRC-32 has covered the frame already.
fn unpack_lz4_blocks(
    frame: &[u8],
    header: &Lz4FrameHeader,
    size: u64,
) -> Result<Vec<u8>, CodeError> {
    if size > MAX_MODULE_BYTES {
        return Err(lz4_too_large());
    }
    let cut_short = || CodeError::Lz4("its blocks are cut short".to_owned());
    // Zeroed pages are mapped lazily: a header claiming more than its blocks hold costs
    // address space, not memory, until the length check below refuses it.
    let mut module = vec![0; size as usize];
    let mut written = 0;
    let mut at = header.blocks_start;
    loop {
        let word = frame.get(at..at + 4).ok_or_else(cut_short)?;
        let word = u32::from_le_bytes(word.try_into().expect("four bytes"));
        at += 4;
        if word == 0 {
            break; // the end mark
        }
        let len = (word & 0x7fff_ffff) as usize;
        let data = frame.get(at..at + len).ok_or_else(cut_short)?;
        at += len + if header.block_checksums { 4 } else { 0 };
        let room_len = (module.len() - written).min(header.block_max);
        let room = &mut module[written..written + room_len];
        written += if word & 0x8000_0000 != 0 {
            // Stored as it is: the block did not compress.
            room.get_mut(..len)
                .ok_or_else(|| lz4_larger(size))?
                .copy_from_slice(data);
            len
        } else {
            let capacity = i32::try_from(room.len()).expect("a block is at most 4 MiB");
            lz4::block::decompress_to_buffer(data, Some(capacity), room)
                .map_err(|e| CodeError::Lz4(format!("a block of it is not valid LZ4 ({e})")))?
        };
    }
    let end = at + if header.content_checksum { 4 } else { 0 };
    if end > frame.len() {
        return Err(cut_short());
    }
    if written as u64 != size {
        return Err(CodeError::Lz4(format!(
            "its blocks unpack to {written} bytes, not the {size} its header records"
        )));
    }
    if end != frame.len() {
        return Err(CodeError::Lz4(format!(
            "{} bytes follow its end",
            frame.len() - end
        )));
    }
    Ok(module)
}

fn lz4_larger(size: u64) -> CodeError {
    CodeError::Lz4(format!(
        "its blocks unpack to more than the {size} bytes its header records"
    ))
}

fn looks_like_module(name: &str) -> bool {
    let name = name.strip_suffix(".lz4").unwrap_or(name);
    [".wasm", ".cwasm", ".wasmu", ".aot"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Packs a portable module into the zip an action is created from, under `entry_name`.
/// Deflated, so that any unzip tool can open it.
pub fn zip_module(entry_name: &str, bytes: &[u8]) -> Result<Vec<u8>, CodeError> {
    zip_entry(
        entry_name,
        bytes,
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated),
    )
}

/// Packs an engine's precompiled artifact into the zip an action is created from, under
/// `entry_name` (`action.cwasm.lz4`, say): an LZ4 frame, stored in the zip as it is. Machine code
/// unpacks slowly: deflate took 2.4 ms for a 566 KB Wasmtime artifact here, Zstandard 0.48 ms,
/// the largest single cost of its `/init`, and LZ4 0.13 ms, in a zip 19% larger than
/// Zstandard's. Only ow-wasm loads artifacts, so nothing is lost by leaving the common zip
/// methods; `unzip -p action.zip | lz4 -d` gives the artifact back.
pub fn zip_artifact(entry_name: &str, bytes: &[u8]) -> Result<Vec<u8>, CodeError> {
    use std::io::Write as _;
    let lz4_error = |e: std::io::Error| CodeError::Lz4(e.to_string());
    // Independent blocks that record the content size are what unpacks in one pass.
    let mut encoder = lz4::EncoderBuilder::new()
        .level(ARTIFACT_LZ4_LEVEL)
        .block_size(lz4::BlockSize::Max4MB)
        .block_mode(lz4::BlockMode::Independent)
        .content_size(bytes.len() as u64)
        .build(Vec::with_capacity(bytes.len() / 2))
        .map_err(lz4_error)?;
    encoder.write_all(bytes).map_err(lz4_error)?;
    let (frame, finished) = encoder.finish();
    finished.map_err(lz4_error)?;
    zip_entry(
        entry_name,
        &frame,
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored),
    )
}

/// LZ4's level for artifacts, one of its high-compression levels: at 9 a 566 KB Wasmtime
/// artifact packs to 248 KB (the fast level: 306 KB; the highest, 12: 248 KB, more slowly),
/// and unpacks as fast as at any level.
const ARTIFACT_LZ4_LEVEL: u32 = 9;

fn zip_entry(
    entry_name: &str,
    bytes: &[u8],
    options: zip::write::SimpleFileOptions,
) -> Result<Vec<u8>, CodeError> {
    use std::io::Write as _;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = options.large_file(bytes.len() as u64 >= u32::MAX as u64);
    let zip_error = |e: zip::result::ZipError| CodeError::Zip(e.to_string());
    writer.start_file(entry_name, options).map_err(zip_error)?;
    writer
        .write_all(bytes)
        .map_err(|e| CodeError::Zip(e.to_string()))?;
    Ok(writer.finish().map_err(zip_error)?.into_inner())
}

/// Encodes bytes the way OpenWhisk transports binary code.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// The smallest valid core module.
    fn core_module() -> Vec<u8> {
        wat::parse_str("(module)").expect("valid WAT")
    }

    /// A module whose 64 KiB of data compress well, so a zip of it really holds compressed data.
    fn compressible_module() -> Vec<u8> {
        let data = "0123456789abcdef".repeat(4096);
        wat::parse_str(format!(
            r#"(module (memory 1) (data (i32.const 0) "{data}"))"#
        ))
        .expect("valid WAT")
    }

    /// A core module that differs from [`core_module`], to tell entries apart.
    fn other_module() -> Vec<u8> {
        wat::parse_str(r#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#)
            .expect("valid WAT")
    }

    fn options() -> zip::write::SimpleFileOptions {
        zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
    }

    /// Builds a zip holding `entries`, each `(name, contents)`, in order.
    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            writer.start_file(*name, options()).expect("start entry");
            writer.write_all(bytes).expect("write entry");
        }
        writer.finish().expect("finish zip").into_inner()
    }

    fn decode(bytes: &[u8], main: &str) -> Result<ModuleCode, CodeError> {
        decode_action_code(&encode_base64(bytes), main)
    }

    // --- Recently decoded code -------------------------------------------------------------

    #[test]
    fn recent_code_gives_what_decoding_gives_and_tells_entries_apart_by_main() {
        let zip = encode_base64(&zip_of(&[
            ("first.wasm", &core_module()),
            ("second.wasm", &other_module()),
        ]));
        let recent = RecentCode::new(RecentCode::DEFAULT_MAX_BYTES);
        for _ in 0..2 {
            // The second round is answered from what the first kept.
            assert_eq!(
                recent.decode(&zip, "first").unwrap(),
                decode_action_code(&zip, "first").unwrap()
            );
            assert_eq!(
                recent.decode(&zip, "second").unwrap(),
                decode_action_code(&zip, "second").unwrap()
            );
            assert_eq!(recent.len(), 2);
        }
        // What is answered from memory shares the bytes decoded first.
        let (once, again) = (recent.decode(&zip, "first"), recent.decode(&zip, "first"));
        assert!(Arc::ptr_eq(&once.unwrap().bytes, &again.unwrap().bytes));
        // The same text with line breaks is the same code.
        let wrapped = format!("{zip}\n");
        assert_eq!(
            *recent.decode(&wrapped, "first").unwrap().bytes,
            core_module()
        );
        assert_eq!(recent.len(), 2);
    }

    #[test]
    fn recent_code_keeps_no_refusal_and_holds_at_most_its_bytes() {
        // Three distinct modules of the same size; the memo holds two.
        let modules: Vec<String> = (0..3)
            .map(|tag| {
                let module = wat::parse_str(format!(r#"(module (func (export "f{tag}")))"#));
                encode_base64(&module.expect("valid WAT"))
            })
            .collect();
        let size = decode_action_code(&modules[0], "main").unwrap().bytes.len();
        let recent = RecentCode::new(2 * size);
        assert_eq!(
            recent.decode("not base64!", "main").map(drop),
            decode_action_code("not base64!", "main").map(drop)
        );
        assert!(recent.is_empty());
        let _ = recent.decode(&modules[0], "main");
        let _ = recent.decode(&modules[1], "main");
        let _ = recent.decode(&modules[0], "main"); // now the most recent
        let _ = recent.decode(&modules[2], "main");
        assert_eq!(recent.len(), 2);
        let held: Vec<Vec<u8>> = recent
            .entries
            .lock()
            .unwrap()
            .iter()
            .map(|(_, code)| code.bytes.to_vec())
            .collect();
        let bytes = |text: &str| decode_action_code(text, "main").unwrap().bytes.to_vec();
        assert_eq!(held, [bytes(&modules[0]), bytes(&modules[2])]);
        // A module larger than the whole memo is decoded and not held.
        let small = RecentCode::new(4);
        assert_eq!(
            *small.decode(&modules[0], "main").unwrap().bytes,
            bytes(&modules[0])
        );
        assert!(small.is_empty());
    }

    // --- Bare modules and base64 -------------------------------------------------------

    #[test]
    fn bare_core_module_decodes_with_blake3_hash() {
        let module = core_module();
        let code = decode(&module, "main").expect("decodes");
        assert_eq!(*code.bytes, module);
        assert_eq!(code.format, ModuleFormat::CoreModule);
        assert_eq!(code.hash, *blake3::hash(&module).as_bytes());
    }

    #[test]
    fn identical_bytes_give_identical_hash_and_different_bytes_do_not() {
        let first = decode(&core_module(), "main").expect("decodes");
        let second = decode(&core_module(), "main").expect("decodes");
        let other = decode(&other_module(), "main").expect("decodes");
        assert_eq!(first.hash, second.hash);
        assert_eq!(first, second);
        assert_ne!(first.hash, other.hash);
    }

    #[test]
    fn bare_module_and_zipped_module_share_a_hash() {
        let module = other_module();
        let bare = decode(&module, "main").expect("decodes");
        let zipped = decode(&zip_of(&[("action.wasm", &module)]), "main").expect("decodes");
        assert_eq!(bare.hash, zipped.hash);
        assert_eq!(bare.bytes, zipped.bytes);
    }

    #[test]
    fn base64_with_line_breaks_and_no_padding_decodes() {
        // A module of a few hundred bytes whose length is not a multiple of 3, so that its
        // base64 spans several lines and needs padding.
        let module = (200..)
            .map(|len| {
                let data = "x".repeat(len);
                wat::parse_str(format!(
                    r#"(module (memory 1) (data (i32.const 0) "{data}"))"#
                ))
                .expect("valid WAT")
            })
            .find(|module| module.len() % 3 != 0)
            .expect("some length needs padding");
        let encoded = encode_base64(&module);
        assert!(
            encoded.ends_with('='),
            "the test module should need padding: {encoded}"
        );
        let unpadded = encoded.trim_end_matches('=');
        // Wrap like `base64 -w 76`, with CRLF line ends and surrounding blank space.
        let wrapped: Vec<String> = unpadded
            .as_bytes()
            .chunks(76)
            .map(|line| String::from_utf8(line.to_vec()).expect("ascii"))
            .collect();
        assert!(
            wrapped.len() > 1,
            "the test module should span several lines"
        );
        let code = format!("\n  {}\r\n", wrapped.join("\r\n"));
        let decoded = decode_action_code(&code, "main").expect("decodes");
        assert_eq!(*decoded.bytes, module);
        assert_eq!(decoded.format, ModuleFormat::CoreModule);
    }

    #[test]
    fn padded_base64_with_trailing_newline_decodes() {
        let module = core_module();
        let code = format!("{}\n", encode_base64(&module));
        assert_eq!(
            *decode_action_code(&code, "main").expect("decodes").bytes,
            module
        );
    }

    #[test]
    fn bare_component_is_accepted() {
        let component = b"\0asm\x0d\0\x01\0".to_vec();
        let code = decode(&component, "main").expect("decodes");
        assert_eq!(code.format, ModuleFormat::Component);
    }

    #[test]
    fn bare_wasmtime_artifact_is_accepted() {
        let artifact = b"\x7fELF\x02\x01\x01\0sections: .wasmtime.engine".to_vec();
        let code = decode(&artifact, "main").expect("decodes");
        assert_eq!(code.format, ModuleFormat::WasmtimeArtifact);
        assert_eq!(*code.bytes, artifact);
    }

    // --- Zip entry selection -----------------------------------------------------------

    #[test]
    fn zip_with_single_module_under_any_name_decodes() {
        let module = other_module();
        let zip = zip_of(&[("whatever.wasm", &module)]);
        let code = decode(&zip, "main").expect("decodes");
        assert_eq!(*code.bytes, module);
        assert_eq!(code.format, ModuleFormat::CoreModule);
        assert_eq!(code.hash, *blake3::hash(&module).as_bytes());
    }

    #[test]
    fn zip_with_action_wasm_among_other_files_picks_it() {
        let module = other_module();
        let zip = zip_of(&[("README.md", b"# my action\n"), ("action.wasm", &module)]);
        assert_eq!(*decode(&zip, "main").expect("decodes").bytes, module);
    }

    #[test]
    fn zip_prefers_action_wasm_over_other_modules() {
        let module = other_module();
        let zip = zip_of(&[("helper.wasm", &core_module()), ("action.wasm", &module)]);
        assert_eq!(*decode(&zip, "main").expect("decodes").bytes, module);
    }

    #[test]
    fn zip_entry_is_chosen_by_main_without_extension() {
        let add = other_module();
        let zip = zip_of(&[
            ("sub.wasm", &core_module()),
            ("add.wasm", &add),
            ("action.wasm", &core_module()),
        ]);
        assert_eq!(*decode(&zip, "add").expect("decodes").bytes, add);
    }

    #[test]
    fn zip_entry_is_chosen_by_main_exact_name() {
        let add = other_module();
        let zip = zip_of(&[("sub.wasm", &core_module()), ("add.wasm", &add)]);
        assert_eq!(*decode(&zip, "add.wasm").expect("decodes").bytes, add);
    }

    #[test]
    fn zip_entry_is_chosen_by_main_with_a_path() {
        let add = other_module();
        let zip = zip_of(&[("build/sub.wasm", &core_module()), ("build/add.wasm", &add)]);
        assert_eq!(*decode(&zip, "build/add").expect("decodes").bytes, add);
    }

    #[test]
    fn zip_main_naming_no_entry_falls_back_to_action_wasm() {
        let module = other_module();
        let zip = zip_of(&[("helper.wasm", &core_module()), ("action.wasm", &module)]);
        assert_eq!(*decode(&zip, "missing").expect("decodes").bytes, module);
    }

    #[test]
    fn zip_with_module_in_subdirectory_as_only_module_decodes() {
        let module = other_module();
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        writer
            .add_directory("build/", options())
            .expect("add directory");
        writer
            .start_file("build/add.wasm", options())
            .expect("start entry");
        writer.write_all(&module).expect("write entry");
        writer
            .start_file("build/notes.txt", options())
            .expect("start entry");
        writer.write_all(b"not a module").expect("write entry");
        let zip = writer.finish().expect("finish").into_inner();
        assert_eq!(*decode(&zip, "main").expect("decodes").bytes, module);
    }

    #[test]
    fn zip_with_stored_entry_decodes() {
        let module = other_module();
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        writer
            .start_file("action.wasm", stored)
            .expect("start entry");
        writer.write_all(&module).expect("write entry");
        let zip = writer.finish().expect("finish").into_inner();
        assert_eq!(*decode(&zip, "main").expect("decodes").bytes, module);
    }

    #[test]
    fn zip_module_round_trips_through_decode() {
        let module = other_module();
        let zip = zip_module("action.wasm", &module).expect("zips");
        assert_eq!(ModuleFormat::sniff(&zip), ModuleFormat::Zip);
        let code = decode_action_code(&encode_base64(&zip), "main").expect("decodes");
        assert_eq!(*code.bytes, module);
        assert_eq!(code.format, ModuleFormat::CoreModule);
        assert_eq!(code.hash, *blake3::hash(&module).as_bytes());
    }

    /// The compression method of the zip's only entry.
    fn method_of(zip: &[u8]) -> zip::CompressionMethod {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
        archive.by_index_raw(0).expect("an entry").compression()
    }

    #[test]
    fn modules_are_deflated_and_artifacts_stored_as_lz4_frames() {
        let module = other_module();
        assert_eq!(
            method_of(&zip_module("action.wasm", &module).expect("zips")),
            zip::CompressionMethod::Deflated
        );
        let zip = zip_artifact("action.cwasm.lz4", &module).expect("zips");
        assert_eq!(method_of(&zip), zip::CompressionMethod::Stored);
        let data = &zip[only_entry_data(&zip)];
        assert_eq!(ModuleFormat::sniff(data), ModuleFormat::Lz4Frame);
    }

    #[test]
    fn zip_artifact_round_trips_through_decode() {
        let artifact = compressible_module();
        let zip = zip_artifact("action.cwasm.lz4", &artifact).expect("zips");
        assert!(zip.len() < artifact.len() / 4, "{} bytes", zip.len());
        let code = decode_action_code(&encode_base64(&zip), "main").expect("decodes");
        assert_eq!(*code.bytes, artifact);
        assert_eq!(code.hash, *blake3::hash(&artifact).as_bytes());
    }

    /// Where the data of a zip's only entry lies in it, and how many bytes it takes there.
    fn only_entry_data(zip: &[u8]) -> std::ops::Range<usize> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
        let entry = archive.by_index_raw(0).expect("an entry");
        let start = entry.data_start().expect("known") as usize;
        start..start + entry.compressed_size() as usize
    }

    /// `bytes` as an LZ4 frame built by `configure`.
    fn lz4_frame(
        bytes: &[u8],
        configure: impl FnOnce(&mut lz4::EncoderBuilder) -> &mut lz4::EncoderBuilder,
    ) -> Vec<u8> {
        use std::io::Write as _;
        let mut builder = lz4::EncoderBuilder::new();
        let mut encoder = configure(&mut builder)
            .build(Vec::new())
            .expect("an encoder");
        encoder.write_all(bytes).expect("compresses");
        let (frame, finished) = encoder.finish();
        finished.expect("finishes");
        frame
    }

    /// `bytes` as an LZ4 frame built by `configure`, in a zip entry stored as it is.
    fn zip_of_lz4_frame(
        bytes: &[u8],
        configure: impl FnOnce(&mut lz4::EncoderBuilder) -> &mut lz4::EncoderBuilder,
    ) -> Vec<u8> {
        zip_entry(
            "action.cwasm.lz4",
            &lz4_frame(bytes, configure),
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .expect("zips")
    }

    /// A module of `len` bytes and more: 64 KiB blocks of it that compress, and some that do
    /// not (LZ4 stores those as they are).
    fn large_module(len: usize) -> Vec<u8> {
        let mut noise = 0x2545_f491_u32;
        let data: String = (0..len)
            .map(|at| {
                if (at / 65536) % 2 == 0 {
                    char::from(b'a' + (at % 7) as u8)
                } else {
                    // xorshift: no match for LZ4 to find.
                    noise ^= noise << 13;
                    noise ^= noise >> 17;
                    noise ^= noise << 5;
                    char::from(b'a' + (noise % 26) as u8)
                }
            })
            .collect();
        wat::parse_str(format!(
            r#"(module (memory 8) (data (i32.const 0) "{data}"))"#
        ))
        .expect("valid WAT")
    }

    #[test]
    fn lz4_frames_of_many_blocks_unpack_whether_compressed_or_stored_linked_or_not() {
        let module = large_module(400_000);
        let independent = zip_of_lz4_frame(&module, |builder| {
            builder
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .block_checksum(lz4::liblz4::BlockChecksum::BlockChecksumEnabled)
                .content_size(module.len() as u64)
        });
        // What the `lz4` tool writes: linked blocks, a content checksum, no content size.
        let linked = zip_of_lz4_frame(&module, |builder| {
            builder
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Linked)
                .checksum(lz4::ContentChecksum::ChecksumEnabled)
        });
        for zip in [independent, linked] {
            let code = decode(&zip, "main").expect("decodes");
            assert_eq!(*code.bytes, module);
            assert_eq!(code.format, ModuleFormat::CoreModule);
        }
    }

    /// `frame` with the content size its header records replaced by `size` (and the header
    /// checksum left as it is: ow-wasm does not read it).
    fn claiming_size(frame: &[u8], size: u64) -> Vec<u8> {
        let mut claimed = frame.to_vec();
        claimed[6..14].copy_from_slice(&size.to_le_bytes());
        claimed
    }

    #[test]
    fn lz4_frames_that_lie_or_are_cut_are_refused_saying_how() {
        let module = large_module(200_000);
        let zip = zip_artifact("action.cwasm.lz4", &module).expect("zips");
        let frame = zip[only_entry_data(&zip)].to_vec();
        assert_eq!(unpack_lz4_frame(&frame), Ok(module.clone()));
        let size = module.len() as u64;
        let refusal = |frame: &[u8]| match unpack_lz4_frame(frame) {
            Err(CodeError::Lz4(message)) => message,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refusal(&claiming_size(&frame, size + 1)),
            format!(
                "its blocks unpack to {size} bytes, not the {} its header records",
                size + 1
            )
        );
        let short = refusal(&claiming_size(&frame, size - 1));
        assert!(
            short.starts_with("a block of it is not valid LZ4 ("),
            "{short}"
        );
        assert_eq!(
            refusal(&claiming_size(&frame, MAX_MODULE_BYTES + 1)),
            format!("it unpacks to more than {MAX_MODULE_BYTES} bytes; refusing it as a zip bomb")
        );
        assert_eq!(
            refusal(&frame[..frame.len() - 5]),
            "its blocks are cut short"
        );
        assert_eq!(refusal(&frame[..10]), "its header is cut short");
        let checksummed = lz4_frame(&module, |builder| {
            builder
                .block_mode(lz4::BlockMode::Independent)
                .content_size(size)
                .checksum(lz4::ContentChecksum::ChecksumEnabled)
        });
        assert_eq!(unpack_lz4_frame(&checksummed), Ok(module.clone()));
        assert_eq!(
            refusal(&checksummed[..checksummed.len() - 2]),
            "its blocks are cut short"
        );
        let mut trailing = frame.clone();
        trailing.extend_from_slice(b"more");
        assert_eq!(refusal(&trailing), "4 bytes follow its end");
        let mut other_version = frame.clone();
        other_version[4] = (other_version[4] & 0x3f) | 0x80;
        assert_eq!(
            refusal(&other_version),
            "it is of frame format version 2, not 1"
        );
    }

    #[test]
    fn a_bare_lz4_frame_is_refused_for_the_zip_that_holds_it() {
        let zip = zip_artifact("action.cwasm.lz4", &core_module()).expect("zips");
        let frame = &zip[only_entry_data(&zip)];
        let error = decode(frame, "main").expect_err("a bare frame");
        assert_eq!(
            error.to_string(),
            "The action code is an LZ4 frame, not a WebAssembly module; send the zip \
             `ow-precompiler` wrote, which holds the artifact as an LZ4 frame."
        );
    }

    /// The only entry of `zip`, unpacked by [`unpack_zstd_in_one_call`].
    fn unpacked_in_one_call(zip: &[u8]) -> Option<Result<Vec<u8>, CodeError>> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
        let entry = archive.by_index_raw(0).expect("an entry");
        unpack_zstd_in_one_call(zip, &entry)
    }

    #[test]
    fn zstandard_artifacts_of_earlier_precompilers_unpack_in_one_call_and_modules_stream() {
        let module = other_module();
        let artifact = zip_entry(
            "action.cwasm",
            &module,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Zstd),
        )
        .expect("zips");
        assert_eq!(unpacked_in_one_call(&artifact), Some(Ok(module.clone())));
        assert_eq!(*decode(&artifact, "main").expect("decodes").bytes, module);
        let portable = zip_module("action.wasm", &module).expect("zips");
        assert_eq!(unpacked_in_one_call(&portable), None);
    }

    #[test]
    fn a_corrupt_artifact_is_a_zip_error_not_other_bytes() {
        let artifact = compressible_module();
        let mut zip = zip_artifact("action.cwasm.lz4", &artifact).expect("zips");
        // Every byte of the compressed data in turn: none may decode to something else.
        for at in only_entry_data(&zip) {
            zip[at] ^= 0x55;
            match decode(&zip, "main") {
                Err(CodeError::Zip(message)) => {
                    assert!(message.contains("action.cwasm"), "{message}")
                }
                Ok(code) => assert_eq!(*code.bytes, artifact, "byte {at} changed the module"),
                Err(other) => panic!("byte {at}: {other:?}"),
            }
            zip[at] ^= 0x55;
        }
    }

    #[test]
    fn zip_module_under_another_name_round_trips() {
        let module = core_module();
        let zip = zip_module("main.wasm", &module).expect("zips");
        assert_eq!(*decode(&zip, "main").expect("decodes").bytes, module);
    }

    // --- Errors ------------------------------------------------------------------------

    #[test]
    fn empty_code_is_missing() {
        assert_eq!(decode_action_code("", "main"), Err(CodeError::Missing));
    }

    #[test]
    fn whitespace_code_is_missing() {
        let err = decode_action_code(" \n\t\r\n ", "main").unwrap_err();
        assert_eq!(err, CodeError::Missing);
        assert_eq!(err.to_string(), "Missing main/no code to execute.");
    }

    #[test]
    fn invalid_base64_is_a_base64_error() {
        let err = decode_action_code("this is not base64!", "main").unwrap_err();
        assert!(matches!(err, CodeError::Base64(_)), "{err:?}");
        assert!(err.to_string().contains("not valid base64"), "{err}");
    }

    #[test]
    fn base64_of_the_wrong_alphabet_is_a_base64_error() {
        // URL-safe characters are not part of the standard alphabet OpenWhisk uses.
        let err = decode_action_code("AGFzbQEAAAA-_", "main").unwrap_err();
        assert_eq!(
            err,
            CodeError::Base64("'-' at offset 11 is not in the base64 alphabet".to_owned())
        );
    }

    #[test]
    fn a_base64_error_says_where_the_text_goes_wrong() {
        let fault = |code: &str| match decode_action_code(code, "main") {
            Err(CodeError::Base64(fault)) => fault,
            other => panic!("{code:?} should not decode: {other:?}"),
        };
        // Line breaks are skipped, and offsets count them.
        assert_eq!(
            fault("AGFz\nbQ=A"),
            "'=' at offset 7 is not in the base64 alphabet"
        );
        assert_eq!(
            fault("AGFz€bQ=="),
            "'€' at offset 4 is not in the base64 alphabet"
        );
        assert_eq!(
            fault("AGFzbQEAA"),
            "9 characters leave one over, which encodes no byte"
        );
        assert_eq!(
            fault("AGFzbQ="),
            "1 `=` after 6 characters do not pad them to a multiple of 4"
        );
        assert_eq!(
            fault("AGFzbQ==="),
            "3 `=` after 6 characters do not pad them to a multiple of 4"
        );
        // Padding closes a group of four; it cannot add one.
        assert_eq!(
            fault("AGFzbQEA=="),
            "2 `=` after 8 characters do not pad them to a multiple of 4"
        );
        assert!(
            CodeError::Base64(fault("AGFzbQ="))
                .to_string()
                .starts_with("The action code is not valid base64 (1 `=` after 6 characters"),
        );
    }

    #[test]
    fn the_unused_low_bits_of_a_last_base64_character_are_ignored() {
        // `B` holds one bit past the byte `AB` encodes; Node.js's runtime decodes it too.
        assert_eq!(decode_base64("AB"), Ok(vec![0]));
        assert_eq!(decode_base64("QUJD\nRA"), Ok(b"ABCD".to_vec()));
    }

    #[test]
    fn encoded_code_decodes_back_whatever_its_length() {
        // Every remainder of a length by 3, and lengths past the SIMD decoder's blocks.
        for len in (0..70).chain([4095, 4096, 4097, 300 * 1024 + 1]) {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let text = encode_base64(&bytes);
            assert_eq!(
                decode_base64(&text).expect("decodes"),
                bytes,
                "length {len}"
            );
            let unpadded = text.trim_end_matches('=');
            assert_eq!(
                decode_base64(unpadded).expect("decodes"),
                bytes,
                "length {len}"
            );
        }
    }

    #[test]
    fn code_longer_than_the_limit_is_too_large() {
        let code = "A".repeat(MAX_ENCODED_CODE_BYTES + 1);
        let err = decode_action_code(&code, "main").unwrap_err();
        assert_eq!(err, CodeError::TooLarge(MAX_ENCODED_CODE_BYTES + 1));
        assert!(err.to_string().contains("48 MB"), "{err}");
    }

    #[test]
    fn zip_with_two_modules_and_no_choice_is_ambiguous() {
        let zip = zip_of(&[("add.wasm", &core_module()), ("sub.wasm", &other_module())]);
        let err = decode(&zip, "main").unwrap_err();
        assert_eq!(
            err,
            CodeError::AmbiguousModule("add.wasm, sub.wasm".to_owned())
        );
        let message = err.to_string();
        assert!(
            message.contains("add.wasm") && message.contains("sub.wasm"),
            "{message}"
        );
        assert!(message.contains("main"), "{message}");
    }

    #[test]
    fn zip_with_only_a_readme_has_no_module() {
        let zip = zip_of(&[("README.md", b"# nothing to run\n")]);
        let err = decode(&zip, "main").unwrap_err();
        assert_eq!(err, CodeError::NoModule("README.md".to_owned()));
        assert!(err.to_string().contains("no WebAssembly module"), "{err}");
    }

    #[test]
    fn empty_zip_has_no_module() {
        let zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()))
            .finish()
            .expect("finish")
            .into_inner();
        assert_eq!(ModuleFormat::sniff(&zip), ModuleFormat::Zip);
        assert_eq!(
            decode(&zip, "main"),
            Err(CodeError::NoModule("none".to_owned()))
        );
    }

    #[test]
    fn zip_with_only_directories_has_no_module() {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        writer
            .add_directory("build/", options())
            .expect("add directory");
        let zip = writer.finish().expect("finish").into_inner();
        assert_eq!(
            decode(&zip, "main"),
            Err(CodeError::NoModule("none".to_owned()))
        );
    }

    #[test]
    fn zip_entry_climbing_out_is_unsafe() {
        let zip = zip_of(&[("../evil.wasm", &core_module())]);
        let err = decode(&zip, "main").unwrap_err();
        assert_eq!(err, CodeError::UnsafeEntry("../evil.wasm".to_owned()));
        assert!(err.to_string().contains("outside the archive"), "{err}");
    }

    #[test]
    fn zip_entry_with_absolute_path_is_unsafe() {
        let zip = zip_of(&[("/abs.wasm", &core_module())]);
        // The writer keeps the name as given.
        assert!(zip.windows(9).any(|window| window == b"/abs.wasm"));
        assert_eq!(
            decode(&zip, "main"),
            Err(CodeError::UnsafeEntry("/abs.wasm".to_owned()))
        );
    }

    #[test]
    fn zip_entry_with_windows_absolute_or_parent_path_is_unsafe() {
        for name in ["\\abs.wasm", "C:/abs.wasm", "c:\\abs.wasm", "..\\evil.wasm"] {
            let zip = zip_of(&[(name, &core_module())]);
            assert_eq!(
                decode(&zip, "main"),
                Err(CodeError::UnsafeEntry(name.to_owned())),
                "{name}"
            );
        }
    }

    #[test]
    fn zip_entry_with_harmless_dots_is_accepted() {
        let module = other_module();
        let zip = zip_of(&[("./build/../action.wasm", &module), ("notes..txt", b"x")]);
        assert_eq!(*decode(&zip, "main").expect("decodes").bytes, module);
    }

    #[test]
    fn unsafe_entry_is_refused_even_when_another_entry_is_chosen() {
        let zip = zip_of(&[("action.wasm", &core_module()), ("a/../../evil.txt", b"x")]);
        assert_eq!(
            decode(&zip, "main"),
            Err(CodeError::UnsafeEntry("a/../../evil.txt".to_owned()))
        );
    }

    #[test]
    fn truncated_zip_is_a_zip_error() {
        let zip = zip_of(&[
            ("action.wasm", &other_module()),
            ("README.md", b"# readme\n"),
        ]);
        let truncated = &zip[..zip.len() / 2];
        assert!(truncated.starts_with(b"PK\x03\x04"));
        let err = decode(truncated, "main").unwrap_err();
        assert!(matches!(err, CodeError::Zip(_)), "{err:?}");
        assert!(
            err.to_string().contains("not a readable zip archive"),
            "{err}"
        );
    }

    #[test]
    fn zip_with_too_many_entries_is_refused() {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for index in 0..=MAX_ZIP_ENTRIES {
            writer
                .start_file(format!("f{index}.txt"), stored)
                .expect("start entry");
        }
        let zip = writer.finish().expect("finish").into_inner();
        assert_eq!(
            decode(&zip, "main"),
            Err(CodeError::TooManyEntries(MAX_ZIP_ENTRIES + 1))
        );
    }

    #[test]
    fn base64_text_is_not_a_module() {
        let err = decode(b"function main() {}", "main").unwrap_err();
        assert!(
            matches!(
                err,
                CodeError::NotAModule {
                    found: ModuleFormat::Text,
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with("The action code is text, not a WebAssembly module"),
            "{message}"
        );
        assert!(message.contains("wasm32-wasip1"), "{message}");
    }

    #[test]
    fn gzip_is_not_a_module() {
        let err = decode(&[0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03], "main").unwrap_err();
        assert!(
            matches!(
                err,
                CodeError::NotAModule {
                    found: ModuleFormat::Gzip,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("tar.gz"), "{err}");
    }

    #[test]
    fn random_binary_is_not_a_module() {
        let bytes = [0xde, 0xad, 0xbe, 0xef, 0xff, 0xfe, 0x00, 0x80, 0x13, 0x37];
        let err = decode(&bytes, "main").unwrap_err();
        assert!(
            matches!(
                err,
                CodeError::NotAModule {
                    found: ModuleFormat::Unknown,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn wasm_magic_with_unknown_version_is_not_a_module() {
        let err = decode(b"\0asm\x02\0\0\0", "main").unwrap_err();
        assert!(
            matches!(
                err,
                CodeError::NotAModule {
                    found: ModuleFormat::Unknown,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn zip_inside_a_zip_is_not_a_module() {
        let inner = zip_of(&[("action.wasm", &core_module())]);
        let outer = zip_of(&[("action.wasm", &inner)]);
        let err = decode(&outer, "main").unwrap_err();
        assert!(
            matches!(
                err,
                CodeError::NotAModule {
                    found: ModuleFormat::Zip,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("zip inside a zip"), "{err}");
    }

    #[test]
    fn inner_zip_named_dot_zip_is_no_module() {
        let inner = zip_of(&[("action.wasm", &core_module())]);
        let outer = zip_of(&[("action.zip", &inner)]);
        assert_eq!(
            decode(&outer, "main"),
            Err(CodeError::NoModule("action.zip".to_owned()))
        );
    }

    #[test]
    fn zip_holding_text_as_action_wasm_is_not_a_module() {
        let zip = zip_of(&[("action.wasm", b"console.log('hello')\n")]);
        let err = decode(&zip, "main").unwrap_err();
        assert!(
            matches!(
                err,
                CodeError::NotAModule {
                    found: ModuleFormat::Text,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// Overwrites the uncompressed size of the (single) entry of `zip`, in both its local
    /// header and its central directory record, with `size`.
    fn lie_about_size(zip: &mut [u8], size: u32) {
        assert!(zip.starts_with(b"PK\x03\x04"));
        zip[22..26].copy_from_slice(&size.to_le_bytes());
        // The end of central directory record is the last 22 bytes (no archive comment).
        let eocd = zip.len() - 22;
        assert_eq!(&zip[eocd..eocd + 4], b"PK\x05\x06");
        let central = u32::from_le_bytes(zip[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
        assert_eq!(&zip[central..central + 4], b"PK\x01\x02");
        zip[central + 24..central + 28].copy_from_slice(&size.to_le_bytes());
    }

    #[test]
    fn zip_entry_larger_than_its_declared_size_is_refused() {
        let mut zip = zip_of(&[("action.wasm", &[0u8; 4096])]);
        lie_about_size(&mut zip, 16);
        let err = decode(&zip, "main").unwrap_err();
        assert!(
            matches!(&err, CodeError::Zip(m) if m.contains("action.wasm")),
            "{err:?}"
        );
    }

    #[test]
    fn zip_bomb_is_entry_too_large() {
        const MIB: usize = 1024 * 1024;
        let chunk = vec![0u8; MIB];
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        writer
            .start_file("action.wasm", options())
            .expect("start entry");
        let total = MAX_MODULE_BYTES as usize + MIB;
        for _ in 0..total / MIB {
            writer.write_all(&chunk).expect("write chunk");
        }
        let zip = writer.finish().expect("finish").into_inner();
        assert!(
            zip.len() < MIB,
            "the bomb should compress well: {} bytes",
            zip.len()
        );
        let err = decode(&zip, "main").unwrap_err();
        assert_eq!(
            err,
            CodeError::EntryTooLarge {
                name: "action.wasm".to_owned()
            }
        );
        assert!(err.to_string().contains("zip bomb"), "{err}");
    }

    // --- Sniffing ----------------------------------------------------------------------

    #[test]
    fn sniff_core_module() {
        assert_eq!(
            ModuleFormat::sniff(&core_module()),
            ModuleFormat::CoreModule
        );
        assert_eq!(
            ModuleFormat::sniff(b"\0asm\x01\0\0\0"),
            ModuleFormat::CoreModule
        );
    }

    #[test]
    fn sniff_component() {
        assert_eq!(
            ModuleFormat::sniff(b"\0asm\x0d\0\x01\0"),
            ModuleFormat::Component
        );
    }

    #[test]
    fn sniff_short_wasm_header_is_not_a_module() {
        // Too short to carry a version: neither a module nor valid text.
        assert_ne!(ModuleFormat::sniff(b"\0asm\x01"), ModuleFormat::CoreModule);
        assert_ne!(ModuleFormat::sniff(b"\0asm\x01"), ModuleFormat::Component);
    }

    #[test]
    fn sniff_elf_with_wasmtime_sections_is_a_wasmtime_artifact_and_other_elf_a_program() {
        assert_eq!(
            ModuleFormat::sniff(b"\x7fELF\x02\x01\x01\0.text\0.wasmtime.engine\0"),
            ModuleFormat::WasmtimeArtifact
        );
        assert_eq!(
            ModuleFormat::sniff(b"\x7fELF\x02\x01\x01\0.text\0.data\0"),
            ModuleFormat::NativeProgram
        );
    }

    #[test]
    fn a_native_program_is_not_a_module_and_the_error_says_what_to_build() {
        let err = decode(b"\x7fELF\x02\x01\x01\0.text\0", "main").unwrap_err();
        assert_eq!(
            err.to_string(),
            "The action code is a native program (an ELF file that is not a Wasmtime artifact), \
             not a WebAssembly module; build the action for the wasm32-wasip1 target, not for \
             this machine, and send the .wasm (or a zip holding it)."
        );
    }

    #[test]
    fn sniff_wasmer_artifact() {
        assert_eq!(
            ModuleFormat::sniff(b"wasmer-universalWASMER\0\0\x18\0\0\0"),
            ModuleFormat::WasmerArtifact
        );
        // A prefix of the magic is not an artifact.
        assert_ne!(
            ModuleFormat::sniff(b"wasmer-"),
            ModuleFormat::WasmerArtifact
        );
    }

    #[test]
    fn sniff_wamr_aot() {
        assert_eq!(
            ModuleFormat::sniff(b"\0aot\x03\0\0\0"),
            ModuleFormat::WamrAot
        );
    }

    #[test]
    fn sniff_zip_including_empty_zip() {
        assert_eq!(ModuleFormat::sniff(b"PK\x03\x04rest"), ModuleFormat::Zip);
        assert_eq!(ModuleFormat::sniff(b"PK\x05\x06rest"), ModuleFormat::Zip);
    }

    #[test]
    fn sniff_gzip() {
        assert_eq!(ModuleFormat::sniff(&[0x1f, 0x8b, 0x08]), ModuleFormat::Gzip);
    }

    #[test]
    fn sniff_text_and_unknown() {
        assert_eq!(
            ModuleFormat::sniff(b"def main(args):\n"),
            ModuleFormat::Text
        );
        assert_eq!(
            ModuleFormat::sniff("// é ü 日本\n".as_bytes()),
            ModuleFormat::Text
        );
        assert_eq!(ModuleFormat::sniff(&[]), ModuleFormat::Unknown);
        assert_eq!(
            ModuleFormat::sniff(&[0xff, 0xfe, 0xfd]),
            ModuleFormat::Unknown
        );
    }

    #[test]
    fn sniff_long_text_only_looks_at_its_start() {
        let mut text = "x".repeat(600).into_bytes();
        text.extend_from_slice(&[0xff, 0xfe]);
        assert_eq!(ModuleFormat::sniff(&text), ModuleFormat::Text);
    }

    #[test]
    fn sniff_text_with_a_character_cut_by_the_window_is_text() {
        // 511 ASCII bytes, then a two-byte character straddling the 512-byte window.
        let text = format!("{}é and more text after it", "x".repeat(511));
        assert_eq!(ModuleFormat::sniff(text.as_bytes()), ModuleFormat::Text);
        // A three-byte character cut after one and after two bytes.
        for pad in [510, 511] {
            let text = format!("{}€ and more text after it", "x".repeat(pad));
            assert_eq!(
                ModuleFormat::sniff(text.as_bytes()),
                ModuleFormat::Text,
                "pad {pad}"
            );
        }
    }

    #[test]
    fn sniff_short_input_ending_in_a_cut_character_is_unknown() {
        // The whole input is in the window, so a cut character really is invalid UTF-8.
        let mut bytes = b"abc".to_vec();
        bytes.push(0xc3);
        assert_eq!(ModuleFormat::sniff(&bytes), ModuleFormat::Unknown);
    }

    #[test]
    fn runnable_formats() {
        for format in [
            ModuleFormat::CoreModule,
            ModuleFormat::Component,
            ModuleFormat::WasmtimeArtifact,
            ModuleFormat::WasmerArtifact,
            ModuleFormat::WamrAot,
        ] {
            assert!(format.is_runnable(), "{format:?}");
        }
        for format in [
            ModuleFormat::Zip,
            ModuleFormat::Gzip,
            ModuleFormat::Text,
            ModuleFormat::Unknown,
        ] {
            assert!(!format.is_runnable(), "{format:?}");
        }
    }

    #[test]
    fn format_display_names_the_format() {
        assert_eq!(
            ModuleFormat::CoreModule.to_string(),
            "a WebAssembly core module"
        );
        assert_eq!(
            ModuleFormat::Component.to_string(),
            "a WebAssembly component"
        );
        assert_eq!(
            ModuleFormat::WasmtimeArtifact.to_string(),
            "a Wasmtime precompiled artifact"
        );
        assert_eq!(ModuleFormat::WamrAot.to_string(), "a WAMR AOT module");
        assert_eq!(ModuleFormat::Gzip.to_string(), "a gzip file");
        assert_eq!(ModuleFormat::Text.to_string(), "text");
        assert_eq!(
            ModuleFormat::Unknown.to_string(),
            "bytes that are not a WebAssembly module"
        );
    }

    #[test]
    fn module_code_debug_shows_format_length_and_hex_hash() {
        let module = core_module();
        let debug = format!("{:?}", ModuleCode::new(module.clone()));
        assert!(debug.contains("CoreModule"), "{debug}");
        assert!(debug.contains(&format!("len: {}", module.len())), "{debug}");
        assert!(
            debug.contains(blake3::hash(&module).to_hex().as_str()),
            "{debug}"
        );
    }
}

/// Property tests: whatever arrives as action code or as an `/init` body, decoding ends in a
/// module or a typed error, never a panic.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::protocol::InitRequest;
    use proptest::prelude::*;
    use std::io::Write as _;

    /// Bounded so the suite stays within seconds in a debug build.
    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 2000,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Decodes and checks what came out: a runnable module whose hash is that of its bytes,
    /// or an error that reads as a sentence.
    fn check(code: &str, main: &str) {
        match decode_action_code(code, main) {
            Ok(module) => {
                assert!(module.format.is_runnable(), "{module:?}");
                assert_eq!(module.format, ModuleFormat::sniff(&module.bytes));
                assert_eq!(module.hash, *blake3::hash(&module.bytes).as_bytes());
            }
            Err(error) => {
                let sentence = error.to_string();
                assert!(
                    sentence.len() > 10 && sentence.ends_with(['.', ')']),
                    "{error:?} reads {sentence:?}"
                );
            }
        }
    }

    /// Bytes that start like something decoding cares about, then anything.
    fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
        let prefixes: Vec<&'static [u8]> = vec![
            b"",
            b"\0asm\x01\0\0\0",
            b"\0asm\x0d\0\x01\0",
            b"\x7fELF",
            b"wasmer-universal",
            b"\0aot",
            b"PK\x03\x04",
            b"PK\x05\x06",
            b"\x1f\x8b",
        ];
        (
            prop::sample::select(prefixes),
            prop::collection::vec(any::<u8>(), 0..512),
        )
            .prop_map(|(prefix, rest)| [prefix, rest.as_slice()].concat())
    }

    /// Zip entry names, hostile ones included.
    fn entry_name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "action.wasm",
                "main.wasm",
                "main",
                "lib/a.wasm",
                "../evil.wasm",
                "/etc/passwd",
                "C:\\x.wasm",
                "dir/",
                "a.aot",
                "README.md",
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ]
    }

    /// A zip of up to four entries, then possibly damaged: a span of it overwritten.
    fn zip_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec((entry_name(), interesting_bytes(), any::<bool>()), 0..4),
            prop::option::of((
                any::<prop::sample::Index>(),
                prop::collection::vec(any::<u8>(), 1..16),
            )),
        )
            .prop_map(|(entries, damage)| {
                let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
                for (name, bytes, stored) in entries {
                    let method = if stored {
                        zip::CompressionMethod::Stored
                    } else {
                        zip::CompressionMethod::Deflated
                    };
                    let options =
                        zip::write::SimpleFileOptions::default().compression_method(method);
                    // Names the writer itself refuses are not what this property is about.
                    if writer.start_file(name, options).is_ok() {
                        writer.write_all(&bytes).expect("in-memory write");
                    }
                }
                let mut zip = writer.finish().expect("in-memory zip").into_inner();
                if let Some((at, patch)) = damage {
                    let start = at.index(zip.len());
                    let end = (start + patch.len()).min(zip.len());
                    zip[start..end].copy_from_slice(&patch[..end - start]);
                }
                zip
            })
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_strings_decode_or_are_refused(code in any::<String>(), main in any::<String>()) {
            check(&code, &main);
        }

        #[test]
        fn arbitrary_bytes_decode_or_are_refused(bytes in interesting_bytes(), main in entry_name()) {
            check(&encode_base64(&bytes), &main);
        }

        #[test]
        fn arbitrary_zips_decode_or_are_refused(zip in zip_bytes(), main in entry_name()) {
            check(&encode_base64(&zip), &main);
        }

        #[test]
        fn arbitrary_init_bodies_parse_and_decode_or_are_refused(
            body in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..256),
                (zip_bytes(), any::<Option<String>>(), any::<bool>()).prop_map(|(zip, main, binary)| {
                    serde_json::to_vec(&serde_json::json!({"value": {
                        "code": encode_base64(&zip), "main": main, "binary": binary,
                        "env": {"A": "x"}, "annotations": {"dir": null}
                    }}))
                    .expect("JSON values serialize")
                }),
                any::<String>().prop_map(|text| format!(r#"{{"value": {{"code": {text:?}}}}}"#).into_bytes()),
            ]
        ) {
            if let Ok(request) = serde_json::from_slice::<InitRequest<'_>>(&body) {
                let value = request.value;
                let _ = value.env_strings();
                if !value.code.trim().is_empty() {
                    check(&value.code, value.main_or_default());
                }
            }
        }
    }
}
