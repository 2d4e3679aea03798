//! In-memory stdout/stderr for one activation, sharing one byte budget (the action's log
//! limit). Writes past the budget are accepted and dropped, so a flood of output neither fails
//! the action nor grows the executor's memory; the stdio ABI's result line is tracked apart so
//! it survives truncated logs. Each engine hands [`LogCapture::write`] what its WASI stdout and
//! stderr receive, directly or through a [`CaptureWriter`] where its WASI wants an
//! [`AsyncWrite`].

use crate::host::abi::ResultLine;
use crate::protocol::sentences;
use crate::runtime::{LogStream, LogWrite, Logs};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::io::AsyncWrite;

/// Both streams of one activation. Clones share the capture.
#[derive(Debug, Clone)]
pub struct LogCapture {
    shared: Arc<Mutex<Captured>>,
}

#[derive(Debug)]
struct Captured {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    remaining: usize,
    limit: usize,
    /// Whether the budget dropped bytes of stdout (perhaps only of the stdio result line).
    stdout_dropped: bool,
    /// Whether the budget dropped bytes of stderr.
    stderr_dropped: bool,
    result_line: ResultLine,
    /// When the kept bytes were written, at most [`MAX_LOG_WRITES`] records (later bytes
    /// count as written at the end). A write that continues an unfinished line of the same
    /// stream joins the previous record.
    writes: Vec<LogWrite>,
    /// Whether the last recorded write left a line unfinished.
    line_open: bool,
    /// Whether the logs were taken.
    finished: bool,
}

/// The most write records one activation keeps: a bound on their memory however an action
/// alternates its two streams.
const MAX_LOG_WRITES: usize = 64 * 1024;

impl LogCapture {
    /// An empty capture whose streams share a budget of `log_limit` bytes, keeping a stdio
    /// result line of up to `result_limit` bytes apart from it.
    pub fn new(log_limit: u64, result_limit: u64) -> Self {
        let limit = usize::try_from(log_limit).unwrap_or(usize::MAX);
        Self {
            shared: Arc::new(Mutex::new(Captured {
                stdout: Vec::new(),
                stderr: Vec::new(),
                remaining: limit,
                limit,
                stdout_dropped: false,
                stderr_dropped: false,
                result_line: ResultLine::new(result_limit),
                writes: Vec::new(),
                line_open: false,
                finished: false,
            })),
        }
    }

    /// Takes `bytes` written to `stream`: what fits the budget is kept, the rest dropped (and
    /// noted for the truncation sentence). After [`LogCapture::finish`], writes are dropped.
    pub fn write(&self, stream: LogStream, bytes: &[u8]) {
        let mut captured = self.shared.lock().expect("capture lock");
        let captured = &mut *captured;
        let kept = bytes.len().min(captured.remaining);
        captured.remaining -= kept;
        let dropped = kept < bytes.len();
        if kept > 0 {
            let ends_line = bytes[kept - 1] == b'\n';
            captured.record_write(stream, kept, ends_line);
        }
        match stream {
            LogStream::Stdout => {
                captured.stdout.extend_from_slice(&bytes[..kept]);
                captured.stdout_dropped |= dropped;
                if !captured.finished {
                    captured.result_line.push(bytes);
                }
            }
            LogStream::Stderr => {
                captured.stderr.extend_from_slice(&bytes[..kept]);
                captured.stderr_dropped |= dropped;
            }
        }
    }

    /// Takes the logs; with `stdio_result`, also splits the result line off stdout and returns
    /// it (as far as it was kept) with its full length.
    pub fn finish(&self, stdio_result: bool) -> (Logs, Option<(Vec<u8>, usize)>) {
        let mut captured = self.shared.lock().expect("capture lock");
        // An instance still unwinding after its deadline may write on: that is dropped.
        captured.finished = true;
        captured.remaining = 0;
        let mut stdout = std::mem::take(&mut captured.stdout);
        let mut result = None;
        let stdout_logs_lost = if stdio_result {
            // The result line is not a log: only bytes before it count as lost logs.
            let logs_len = captured.result_line.logs_len();
            result = captured
                .result_line
                .line()
                .map(<[u8]>::to_vec)
                .zip(captured.result_line.line_len());
            let lost = logs_len > stdout.len();
            stdout.truncate(logs_len);
            lost
        } else {
            captured.stdout_dropped
        };
        let mut logs = Logs {
            stdout,
            stderr: std::mem::take(&mut captured.stderr),
            writes: std::mem::take(&mut captured.writes),
        };
        if captured.stderr_dropped || stdout_logs_lost {
            logs.push_stderr_line(&sentences::logs_truncated(captured.limit as u64));
        }
        (logs, result)
    }
}

/// One stream of a [`LogCapture`] as an [`AsyncWrite`]: every write is taken at once (the
/// capture keeps what fits the budget and drops the rest), so every poll is ready.
#[derive(Debug, Clone)]
pub struct CaptureWriter {
    capture: LogCapture,
    stream: LogStream,
}

impl CaptureWriter {
    /// Writes to `stream` of `capture`.
    pub fn new(capture: &LogCapture, stream: LogStream) -> Self {
        Self {
            capture: capture.clone(),
            stream,
        }
    }

    /// Takes `bytes` at once, as [`LogCapture::write`] does: for an engine whose WASI writes
    /// synchronously.
    pub fn capture(&self, bytes: &[u8]) {
        self.capture.write(self.stream, bytes);
    }
}

impl AsyncWrite for CaptureWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.capture(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Captured {
    fn record_write(&mut self, stream: LogStream, len: usize, ends_line: bool) {
        if self.writes.len() >= MAX_LOG_WRITES {
            return; // the rest counts as written at the end
        }
        let at = SystemTime::now();
        let line_open = std::mem::replace(&mut self.line_open, !ends_line);
        match self.writes.last_mut() {
            Some(last) if last.stream == stream && line_open => {
                last.len += len;
                last.at = at;
            }
            _ => self.writes.push(LogWrite { at, stream, len }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(limit: u64, stdout: &[&[u8]], stdio_result: bool) -> (Logs, Option<Vec<u8>>) {
        let capture = LogCapture::new(limit, 1024);
        for bytes in stdout {
            capture.write(LogStream::Stdout, bytes);
        }
        let (logs, result) = capture.finish(stdio_result);
        (logs, result.map(|(line, _)| line))
    }

    #[test]
    fn the_stdio_result_line_is_not_a_log_and_never_reads_as_truncated_logs() {
        let (logs, result) = captured(0, &[b"{\"a\":1}\n"], true);
        assert_eq!(result.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!((logs.stdout, logs.stderr), (Vec::new(), Vec::new()));

        // The limit falls inside the result line: the logs before it are whole.
        let (logs, result) = captured(6, &[b"log 1\n", b"{\"a\":1}"], true);
        assert_eq!(result.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(
            (logs.stdout, logs.stderr),
            (b"log 1\n".to_vec(), Vec::new())
        );
    }

    #[test]
    fn logs_cut_before_the_result_line_end_with_the_truncation_sentence() {
        let (logs, result) = captured(3, &[b"log 1\n", b"{}"], true);
        assert_eq!(result.as_deref(), Some(&b"{}"[..]));
        assert_eq!(logs.stdout, b"log");
        assert_eq!(
            String::from_utf8(logs.stderr).unwrap(),
            format!("{}\n", sentences::logs_truncated(3))
        );
        // Without the stdio ABI every byte of stdout is a log.
        let (logs, _) = captured(3, &[b"{}\n"], false);
        assert_eq!(logs.stdout, b"{}\n");
        let (logs, _) = captured(2, &[b"{}\n"], false);
        assert_eq!(logs.stdout, b"{}");
        assert!(!logs.stderr.is_empty());
    }

    #[tokio::test]
    async fn a_capture_writer_takes_every_write_whole_and_the_budget_keeps_what_fits() {
        use tokio::io::AsyncWriteExt;
        let capture = LogCapture::new(8, 1024);
        let mut stdout = CaptureWriter::new(&capture, LogStream::Stdout);
        let mut stderr = CaptureWriter::new(&capture, LogStream::Stderr);
        stdout.write_all(b"out 1\n").await.unwrap();
        assert_eq!(stderr.write(b"err 1\n").await.unwrap(), 6, "taken whole");
        stderr.flush().await.unwrap();
        let (logs, _) = capture.finish(false);
        assert_eq!(text(&logs.stdout), "out 1\n");
        assert_eq!(
            text(&logs.stderr),
            format!("er\n{}\n", sentences::logs_truncated(8))
        );
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn writes_are_recorded_in_order_and_an_unfinished_line_joins_its_record() {
        let capture = LogCapture::new(1024, 1024);
        capture.write(LogStream::Stdout, b"out ");
        capture.write(LogStream::Stdout, b"1\n");
        capture.write(LogStream::Stderr, b"err 1\n");
        capture.write(LogStream::Stdout, b"out 2\n");
        capture.write(LogStream::Stdout, b"out 3\n");
        let (logs, _) = capture.finish(false);
        let records: Vec<(LogStream, usize)> = logs
            .writes
            .iter()
            .map(|write| (write.stream, write.len))
            .collect();
        assert_eq!(
            records,
            [
                (LogStream::Stdout, 6),
                (LogStream::Stderr, 6),
                (LogStream::Stdout, 6),
                (LogStream::Stdout, 6)
            ]
        );
        let texts: Vec<String> = logs
            .lines(SystemTime::now())
            .into_iter()
            .map(|line| line.text)
            .collect();
        assert_eq!(texts, ["out 1", "err 1", "out 2", "out 3"]);
    }
}
