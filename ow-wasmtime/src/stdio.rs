//! Wasmtime's WASI stdout and stderr for one activation: pipes that hand every write to the
//! activation's [`LogCapture`](ow_common::host::capture::LogCapture) through the host's
//! [`CaptureWriter`].

use ow_common::host::capture::{CaptureWriter, LogCapture};
use ow_common::runtime::LogStream;
use tokio::io::AsyncWrite;
use wasmtime_wasi::async_trait;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// The most a single write may hand over at once.
const WRITE_PERMIT: usize = 64 * 1024;

/// One stream's writing end, handed to WASI.
#[derive(Debug, Clone)]
pub(crate) struct CapturePipe {
    writer: CaptureWriter,
}

impl CapturePipe {
    pub(crate) fn new(capture: &LogCapture, stream: LogStream) -> Self {
        Self {
            writer: CaptureWriter::new(capture, stream),
        }
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer.clone())
    }
}

#[async_trait]
impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.writer.capture(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}
