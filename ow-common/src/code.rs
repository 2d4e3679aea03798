//! Action code decoding: OpenWhisk's base64 transport, a zip (or a bare module) inside, and
//! format sniffing that names what it found.
//!
//! Everything is read in memory with bounded sizes; nothing is extracted to disk, and zip
//! entries whose names climb out of the archive (`../x`, `/etc/x`) are refused outright.

use base64::Engine as _;
use std::fmt;
use std::io::Read;

/// The largest action code OpenWhisk accepts (48 MB), as base64 text.
pub const MAX_ENCODED_CODE_BYTES: usize = 48 * 1024 * 1024 * 4 / 3 + 4;
/// The largest module taken out of a zip; a larger entry is treated as a zip bomb.
pub const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;
/// The most entries a zip may hold.
pub const MAX_ZIP_ENTRIES: usize = 1024;
/// The entry picked when `main` does not name one.
pub const DEFAULT_ENTRY: &str = "action.wasm";

/// What a blob of action code turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModuleFormat {
    /// A portable WebAssembly core module (`\0asm`, version 1).
    CoreModule,
    /// A WebAssembly component (`\0asm`, layer 1).
    Component,
    /// A Wasmtime precompiled artifact (an ELF file).
    WasmtimeArtifact,
    /// A Wasmer serialized artifact.
    WasmerArtifact,
    /// A WAMR ahead-of-time module (`\0aot`).
    WamrAot,
    /// A zip archive.
    Zip,
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
            Self::WasmtimeArtifact
        } else if bytes.starts_with(b"\0wasmer") || bytes.starts_with(b"wasmer-") {
            Self::WasmerArtifact
        } else if bytes.starts_with(b"\0aot") {
            Self::WamrAot
        } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            Self::Zip
        } else if bytes.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if !bytes.is_empty() && std::str::from_utf8(&bytes[..bytes.len().min(512)]).is_ok() {
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
            Self::WasmerArtifact => "a Wasmer precompiled artifact",
            Self::WamrAot => "a WAMR AOT module",
            Self::Zip => "a zip archive",
            Self::Gzip => "a gzip file",
            Self::Text => "text",
            Self::Unknown => "bytes that are not a WebAssembly module",
        })
    }
}

/// The decoded code of one action: the bytes an engine prepares, their format and their
/// content hash (identical code is compiled once).
#[derive(Clone, PartialEq, Eq)]
pub struct ModuleCode {
    /// The module or artifact bytes.
    pub bytes: Vec<u8>,
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
            bytes,
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
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
    let bytes = decode_base64(code)?;
    let format = ModuleFormat::sniff(&bytes);
    match format {
        ModuleFormat::Zip => {
            let entry = read_zip_entry(&bytes, main)?;
            let module = ModuleCode::new(entry);
            check_runnable(module.format)?;
            Ok(module)
        }
        _ => {
            check_runnable(format)?;
            Ok(ModuleCode::new(bytes))
        }
    }
}

/// Decodes base64, with or without padding, ignoring line breaks (`base64 -w 76` output).
fn decode_base64(code: &str) -> Result<Vec<u8>, CodeError> {
    let compact: String = code.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(compact.as_bytes())
        .map_err(|e| CodeError::Base64(e.to_string()))
}

fn check_runnable(format: ModuleFormat) -> Result<(), CodeError> {
    if format.is_runnable() {
        return Ok(());
    }
    let hint = match format {
        ModuleFormat::Gzip => "tar.gz archives are not supported: send a zip or a bare .wasm.",
        ModuleFormat::Zip => "a zip inside a zip is not supported: zip the .wasm itself.",
        ModuleFormat::Text => {
            "build the action for wasm32-wasip1 and send the .wasm (or a zip holding it)."
        }
        _ => "send a .wasm built for wasm32-wasip1, or a zip holding one.",
    };
    Err(CodeError::NotAModule {
        found: format,
        hint,
    })
}

/// Picks the module entry of a zip and reads it, bounded by [`MAX_MODULE_BYTES`].
fn read_zip_entry(bytes: &[u8], main: &str) -> Result<Vec<u8>, CodeError> {
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
        if entry.enclosed_name().is_none() {
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
    let entry = archive
        .by_index(chosen)
        .map_err(|e| CodeError::Zip(e.to_string()))?;
    let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
    if entry.size() > MAX_MODULE_BYTES {
        return Err(CodeError::EntryTooLarge { name });
    }
    // The declared size may lie: read at most one byte past the bound to find out.
    let mut module = Vec::with_capacity(entry.size() as usize);
    entry
        .take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut module)
        .map_err(|e| CodeError::Zip(format!("cannot unpack {name:?}: {e}")))?;
    if module.len() as u64 > MAX_MODULE_BYTES {
        return Err(CodeError::EntryTooLarge { name });
    }
    Ok(module)
}

fn looks_like_module(name: &str) -> bool {
    [".wasm", ".cwasm", ".wasmu", ".aot"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Packs a module (or artifact) into the zip an action is created from, under `entry_name`.
pub fn zip_module(entry_name: &str, bytes: &[u8]) -> Result<Vec<u8>, CodeError> {
    use std::io::Write as _;
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(bytes.len() as u64 >= u32::MAX as u64);
    let zip_error = |e: zip::result::ZipError| CodeError::Zip(e.to_string());
    writer.start_file(entry_name, options).map_err(zip_error)?;
    writer
        .write_all(bytes)
        .map_err(|e| CodeError::Zip(e.to_string()))?;
    Ok(writer.finish().map_err(zip_error)?.into_inner())
}

/// Encodes bytes the way OpenWhisk transports binary code.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
