//! The host side of the guest ABIs (see [`crate::abi`]), written once over [`GuestInstance`],
//! a small view of a running instance that each engine implements: detecting the ABI a
//! module speaks, handing it the parameters, taking its result, and finding the stdio ABI's
//! result line in its output.

use crate::abi;
use crate::runtime::RunError;
use serde_json::Value;
use std::future::Future;
use std::task::{Context, Poll, Waker};

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

/// A running instance's memory and allocator, as the engine exposes them: what every host
/// side that hands the guest bytes needs (the SDK ABI, `http`.`get`).
pub trait GuestMemory: Send {
    /// The engine's error (a trap, an exit, a deadline). It also carries the ABI's own
    /// refusals, such as a result over the limit, for the engine to tell apart.
    type Error: Send + From<RunError>;

    /// Calls the guest allocator ([`abi::ALLOC_EXPORT`]).
    fn alloc(&mut self, len: u32) -> impl Future<Output = Result<u32, Self::Error>> + Send;

    /// Copies `bytes` into guest memory at `ptr`.
    fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Copies `len` bytes out of guest memory at `ptr`.
    fn read_memory(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, Self::Error>;
}

/// A fresh instance, as the engine exposes it to the host side of the guest ABIs.
pub trait GuestInstance: GuestMemory {
    /// Calls an export that takes and returns nothing (`_start`, `_initialize`).
    fn call_unit(&mut self, export: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Calls the SDK's main export ([`abi::MAIN_EXPORT`]).
    fn call_main(
        &mut self,
        ptr: u32,
        len: u32,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;
}

/// Runs one activation through the module's ABI. For the SDK ABI, returns the raw result
/// bytes; for the stdio ABI nothing, since the result is the last line of stdout (and the
/// parameters were its stdin).
pub async fn call_abi<G: GuestInstance>(
    guest: &mut G,
    guest_abi: GuestAbi,
    params: &[u8],
    result_limit: u64,
) -> Result<Vec<u8>, G::Error> {
    match guest_abi {
        GuestAbi::Stdio => {
            guest.call_unit(abi::COMMAND_START_EXPORT).await?;
            Ok(Vec::new())
        }
        GuestAbi::Sdk { reactor } => {
            if reactor {
                guest.call_unit(abi::REACTOR_INIT_EXPORT).await?;
            }
            call_sdk(guest, params, result_limit).await
        }
    }
}

/// Runs the SDK ABI: parameters in, the raw result bytes out.
///
/// A result longer than `result_limit` bytes is refused with [`RunError::ResultTooLarge`]
/// before a byte of it is copied out of the instance, so a guest returning a huge region costs
/// the host nothing.
pub async fn call_sdk<G: GuestInstance>(
    guest: &mut G,
    params: &[u8],
    result_limit: u64,
) -> Result<Vec<u8>, G::Error> {
    let Ok(len) = u32::try_from(params.len()) else {
        return Err(RunError::Internal(format!(
            "the parameters are {} bytes, more than the 4 GiB a guest can address",
            params.len()
        ))
        .into());
    };
    let ptr = guest.alloc(len).await?;
    guest.write_memory(ptr, params)?;
    let packed = guest.call_main(ptr, len).await?;
    let (result_ptr, result_len) = abi::unpack_region(packed);
    if u64::from(result_len) > result_limit {
        return Err(RunError::ResultTooLarge {
            size: result_len.into(),
            limit: result_limit,
        }
        .into());
    }
    guest.read_memory(result_ptr, result_len)
}

/// Drives to its end a future that never waits: the host side of an ABI over an engine whose
/// calls are synchronous (every [`GuestInstance`] method of such an engine is ready at once).
///
/// # Panics
///
/// If the future waits, which is a bug in the engine's [`GuestInstance`].
pub fn complete_now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a synchronous engine's guest call waited"),
    }
}

/// Interprets the bytes an action returned as its result: a JSON object or array.
pub fn parse_result(bytes: &[u8]) -> Result<Value, RunError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => Ok(value),
        Ok(_) => Err(RunError::NotADictionary),
        Err(_) => Err(RunError::NoValidResponse),
    }
}

/// Follows a stdio-ABI action's stdout as it is written and keeps its last non-blank line,
/// the result, even when the logs before it are truncated. A line is kept up to the result
/// limit (and one byte for a `\r`); past it only its length is counted, which is all the
/// host needs to refuse it.
#[derive(Debug, Clone)]
pub struct ResultLine {
    /// The most bytes of a line kept.
    cap: usize,
    /// The line being written (bytes since the last newline), capped.
    current: Vec<u8>,
    /// How long the line being written really is, past the cap.
    current_len: usize,
    /// Where the line being written starts in the stream.
    current_start: usize,
    /// The last non-blank line that a newline ended.
    last_complete: Vec<u8>,
    /// How long that line really was.
    last_complete_len: usize,
    /// Where that line starts in the stream.
    last_complete_start: usize,
    /// How many bytes were written in all.
    written: usize,
}

impl ResultLine {
    /// A tracker for results of at most `result_limit` bytes.
    pub fn new(result_limit: u64) -> Self {
        Self {
            cap: usize::try_from(result_limit.saturating_add(1)).unwrap_or(usize::MAX),
            current: Vec::new(),
            current_len: 0,
            current_start: 0,
            last_complete: Vec::new(),
            last_complete_len: 0,
            last_complete_start: 0,
            written: 0,
        }
    }

    /// Feeds bytes written to stdout.
    pub fn push(&mut self, bytes: &[u8]) {
        let base = self.written;
        self.written = self.written.saturating_add(bytes.len());
        let mut segments = bytes.split(|&b| b == b'\n');
        // Where the next segment starts within `bytes`: just past a newline.
        let mut next_start = 0;
        if let Some(first) = segments.next() {
            extend_capped(&mut self.current, first, self.cap);
            self.current_len = self.current_len.saturating_add(first.len());
            next_start = first.len() + 1;
        }
        for segment in segments {
            let ended = std::mem::take(&mut self.current);
            let ended_len = std::mem::replace(&mut self.current_len, segment.len());
            let ended_start = std::mem::replace(&mut self.current_start, base + next_start);
            if !is_blank(&ended) {
                self.last_complete = ended;
                self.last_complete_len = ended_len;
                self.last_complete_start = ended_start;
            }
            extend_capped(&mut self.current, segment, self.cap);
            next_start += segment.len() + 1;
        }
    }

    /// The length in bytes of the result line (without its line ending), including what was
    /// written past the cap and not kept.
    pub fn line_len(&self) -> Option<usize> {
        let (kept, len) = if !is_blank(&self.current) {
            (&self.current, self.current_len)
        } else if !is_blank(&self.last_complete) {
            (&self.last_complete, self.last_complete_len)
        } else {
            return None;
        };
        Some(if len > kept.len() {
            len
        } else {
            trim_line(kept).len()
        })
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

    /// How many bytes of the stream come before the result line: the logs. The whole stream
    /// when there is no result line.
    pub fn logs_len(&self) -> usize {
        if !is_blank(&self.current) {
            self.current_start
        } else if !is_blank(&self.last_complete) {
            self.last_complete_start
        } else {
            self.written
        }
    }
}

fn extend_capped(buffer: &mut Vec<u8>, bytes: &[u8], cap: usize) {
    let room = cap.saturating_sub(buffer.len());
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

    /// A guest whose main returns a fixed region and that counts the bytes read out of it.
    struct FakeGuest {
        result: u64,
        bytes_read: u64,
    }

    impl GuestMemory for FakeGuest {
        type Error = RunError;

        async fn alloc(&mut self, _len: u32) -> Result<u32, RunError> {
            Ok(64)
        }

        fn write_memory(&mut self, _ptr: u32, _bytes: &[u8]) -> Result<(), RunError> {
            Ok(())
        }

        fn read_memory(&mut self, _ptr: u32, len: u32) -> Result<Vec<u8>, RunError> {
            self.bytes_read += u64::from(len);
            Ok(b"{}".repeat(len as usize / 2))
        }
    }

    impl GuestInstance for FakeGuest {
        async fn call_unit(&mut self, _export: &str) -> Result<(), RunError> {
            Ok(())
        }

        async fn call_main(&mut self, _ptr: u32, _len: u32) -> Result<u64, RunError> {
            Ok(self.result)
        }
    }

    #[test]
    fn a_result_over_the_limit_is_refused_without_being_copied() {
        const MIB: u32 = 1024 * 1024;
        let mut guest = FakeGuest {
            result: abi::pack_region(4096, 100 * MIB),
            bytes_read: 0,
        };
        let outcome = complete_now(call_sdk(&mut guest, b"{}", MIB.into()));
        assert_eq!(
            outcome,
            Err(RunError::ResultTooLarge {
                size: (100 * MIB).into(),
                limit: MIB.into()
            })
        );
        assert_eq!(guest.bytes_read, 0, "nothing is copied out");
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "The action produced a response that exceeded the allowed length: 104857600 > \
             1048576 bytes."
        );
        // A result of exactly the limit is read.
        let mut guest = FakeGuest {
            result: abi::pack_region(4096, MIB),
            bytes_read: 0,
        };
        assert_eq!(
            complete_now(call_sdk(&mut guest, b"{}", MIB.into())).map(|bytes| bytes.len()),
            Ok(MIB as usize)
        );
        assert_eq!(guest.bytes_read, u64::from(MIB));
    }

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
        let mut tracker = ResultLine::new(1024 * 1024);
        let mut stdout = Vec::new();
        for chunk in chunks {
            tracker.push(chunk);
            stdout.extend_from_slice(chunk);
        }
        (
            tracker.line().map(<[u8]>::to_vec),
            stdout[..tracker.logs_len()].to_vec(),
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
    fn the_result_line_length_counts_what_the_cap_dropped() {
        const LIMIT: u64 = 4 * 1024 * 1024;
        let mut tracker = ResultLine::new(LIMIT);
        tracker.push(b"log\n{\"a\":1}\r\n");
        assert_eq!(tracker.line_len(), Some(7));
        let mut tracker = ResultLine::new(LIMIT);
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..6 {
            tracker.push(&chunk);
        }
        assert_eq!(
            tracker.line().map(<[u8]>::len),
            Some(LIMIT as usize + 1),
            "a byte past the limit is kept, no more"
        );
        assert_eq!(tracker.line_len(), Some(6 * 1024 * 1024));
        tracker.push(b"\n\n");
        assert_eq!(tracker.line_len(), Some(6 * 1024 * 1024));
        tracker.push(b"{}");
        assert_eq!(tracker.line_len(), Some(2));
        assert_eq!(ResultLine::new(LIMIT).line_len(), None);
        // A line of exactly the limit, ended by \r\n, is kept whole.
        let mut tracker = ResultLine::new(4);
        tracker.push(b"[12]\r\n");
        assert_eq!(
            (tracker.line(), tracker.line_len()),
            (Some(&b"[12]"[..]), Some(4))
        );
    }

    #[test]
    fn a_result_line_survives_without_the_logs_before_it() {
        let mut tracker = ResultLine::new(1024 * 1024);
        for _ in 0..1000 {
            tracker.push(b"a log line that is dropped\n");
        }
        tracker.push(b"{\"ok\":true}\r\n");
        assert_eq!(tracker.line(), Some(&b"{\"ok\":true}"[..]));
        // The logs are everything before it, however little of them a capture kept.
        assert_eq!(
            tracker.logs_len(),
            1000 * b"a log line that is dropped\n".len()
        );
    }
}
