//! The host side of the guest ABIs (see [`crate::abi`]), written once over [`SdkGuest`], a
//! small view of a running instance that each engine implements.

use crate::abi;
use crate::runtime::RunError;
use serde_json::Value;
use std::future::Future;

/// The ABI a module speaks, detected from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestAbi {
    /// The `ow-wasm-action` SDK. `reactor` says whether `_initialize` must run first.
    Sdk {
        /// The module exports `_initialize`.
        reactor: bool,
    },
    /// A WASI command: parameters on stdin, result on the last stdout line.
    Stdio,
}

impl GuestAbi {
    /// Detects the ABI from the names of a module's exported functions.
    pub fn detect<'a>(exports: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let (mut alloc, mut main, mut reactor, mut start) = (false, false, false, false);
        for name in exports {
            match name {
                abi::ALLOC_EXPORT => alloc = true,
                abi::MAIN_EXPORT => main = true,
                abi::REACTOR_INIT_EXPORT => reactor = true,
                abi::COMMAND_START_EXPORT => start = true,
                _ => {}
            }
        }
        if alloc && main {
            Some(Self::Sdk { reactor })
        } else if start {
            Some(Self::Stdio)
        } else {
            None
        }
    }
}

/// A running SDK-ABI instance, as the engine exposes it.
pub trait SdkGuest: Send {
    /// The engine's error (a trap, an exit, a deadline).
    type Error: Send;

    /// Calls the guest allocator.
    fn alloc(&mut self, len: u32) -> impl Future<Output = Result<u32, Self::Error>> + Send;

    /// Calls the guest's main export.
    fn call_main(
        &mut self,
        ptr: u32,
        len: u32,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Copies `bytes` into guest memory at `ptr`.
    fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Copies `len` bytes out of guest memory at `ptr`.
    fn read_memory(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, Self::Error>;
}

/// Runs the SDK ABI: parameters in, the raw result bytes out.
pub async fn call_sdk<G: SdkGuest>(
    guest: &mut G,
    params: &[u8],
    too_large: impl FnOnce() -> G::Error,
) -> Result<Vec<u8>, G::Error> {
    let Ok(len) = u32::try_from(params.len()) else {
        return Err(too_large());
    };
    let ptr = guest.alloc(len).await?;
    guest.write_memory(ptr, params)?;
    let packed = guest.call_main(ptr, len).await?;
    let (result_ptr, result_len) = abi::unpack_region(packed);
    guest.read_memory(result_ptr, result_len)
}

/// Interprets the bytes an action returned as its result: a JSON object or array.
pub fn parse_result(bytes: &[u8]) -> Result<Value, RunError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => Ok(value),
        Ok(_) => Err(RunError::NotADictionary),
        Err(_) => Err(RunError::NoValidResponse),
    }
}

/// The longest result line a stdio-ABI action may print (a result is at most 1 MB; this
/// leaves room for JSON escaping).
pub const MAX_RESULT_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Follows a stdio-ABI action's stdout as it is written and keeps its last non-blank line,
/// the result, even when the logs before it are truncated.
#[derive(Debug, Default, Clone)]
pub struct ResultLine {
    /// The line being written (bytes since the last newline), capped.
    current: Vec<u8>,
    /// The last non-blank line that a newline ended.
    last_complete: Vec<u8>,
}

impl ResultLine {
    /// Feeds bytes written to stdout.
    pub fn push(&mut self, bytes: &[u8]) {
        let mut segments = bytes.split(|&b| b == b'\n');
        if let Some(first) = segments.next() {
            extend_capped(&mut self.current, first);
        }
        for segment in segments {
            let ended = std::mem::take(&mut self.current);
            if !is_blank(&ended) {
                self.last_complete = ended;
            }
            extend_capped(&mut self.current, segment);
        }
    }

    /// The result line: the unfinished last line if it has content, else the last complete one.
    pub fn line(&self) -> Option<&[u8]> {
        if !is_blank(&self.current) {
            Some(trim_line(&self.current))
        } else if !is_blank(&self.last_complete) {
            Some(trim_line(&self.last_complete))
        } else {
            None
        }
    }

    /// Removes the result line from the end of the captured stdout, leaving the logs.
    pub fn strip_from<'a>(&self, stdout: &'a [u8]) -> &'a [u8] {
        let Some(line) = self.line() else {
            return stdout;
        };
        let trimmed = trim_line(stdout);
        match trimmed.strip_suffix(line) {
            Some(logs) => logs,
            None => stdout,
        }
    }
}

fn extend_capped(buffer: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_RESULT_LINE_BYTES.saturating_sub(buffer.len());
    buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn trim_line(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sdk_wins_over_start_and_reactor_is_noticed() {
        assert_eq!(
            GuestAbi::detect(["__ow_alloc", "__ow_main", "_start"]),
            Some(GuestAbi::Sdk { reactor: false })
        );
        assert_eq!(
            GuestAbi::detect(["_initialize", "__ow_main", "__ow_alloc", "memory"]),
            Some(GuestAbi::Sdk { reactor: true })
        );
        assert_eq!(
            GuestAbi::detect(["_start", "memory"]),
            Some(GuestAbi::Stdio)
        );
        assert_eq!(GuestAbi::detect(["__ow_main", "memory"]), None);
    }

    #[test]
    fn results_must_be_objects_or_arrays() {
        assert_eq!(parse_result(br#"{"a":1}"#), Ok(json!({"a": 1})));
        assert_eq!(parse_result(b"[1,2]"), Ok(json!([1, 2])));
        assert_eq!(parse_result(b"42"), Err(RunError::NotADictionary));
        assert_eq!(parse_result(b"\"x\""), Err(RunError::NotADictionary));
        assert_eq!(parse_result(b"not json"), Err(RunError::NoValidResponse));
        assert_eq!(parse_result(b""), Err(RunError::NoValidResponse));
    }

    fn result_line_of(chunks: &[&[u8]]) -> (Option<Vec<u8>>, Vec<u8>) {
        let mut tracker = ResultLine::default();
        let mut stdout = Vec::new();
        for chunk in chunks {
            tracker.push(chunk);
            stdout.extend_from_slice(chunk);
        }
        (
            tracker.line().map(<[u8]>::to_vec),
            tracker.strip_from(&stdout).to_vec(),
        )
    }

    #[test]
    fn the_last_non_blank_line_is_the_result_and_the_rest_are_logs() {
        let (line, logs) = result_line_of(&[b"log 1\nlog 2\n{\"r\":1}\n"]);
        assert_eq!(line.as_deref(), Some(&b"{\"r\":1}"[..]));
        assert_eq!(logs, b"log 1\nlog 2\n");
        let (line, logs) = result_line_of(&[b"{\"r\":", b"1}"]);
        assert_eq!(line.as_deref(), Some(&b"{\"r\":1}"[..]));
        assert_eq!(logs, b"");
        let (line, logs) = result_line_of(&[b"a\n{}\n", b"\n\n"]);
        assert_eq!(line.as_deref(), Some(&b"{}"[..]));
        assert_eq!(logs, b"a\n");
        let (line, logs) = result_line_of(&[b"", b"\n\n"]);
        assert_eq!(line, None);
        assert_eq!(logs, b"\n\n");
    }

    #[test]
    fn a_result_line_survives_without_the_logs_before_it() {
        let mut tracker = ResultLine::default();
        for _ in 0..1000 {
            tracker.push(b"a log line that is dropped\n");
        }
        tracker.push(b"{\"ok\":true}\r\n");
        assert_eq!(tracker.line(), Some(&b"{\"ok\":true}"[..]));
        // Captured logs that were cut before the result line keep everything they hold.
        assert_eq!(tracker.strip_from(b"a log line"), b"a log line");
    }
}
