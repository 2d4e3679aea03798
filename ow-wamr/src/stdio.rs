//! One activation's stdio as WAMR needs it: real file descriptors.
//!
//! stdin is an in-memory file holding the parameters (the stdio ABI). When it has nothing to
//! hold (the SDK and export-call ABIs), it is a pipe whose writing end is already closed, so a
//! read ends at once: three cheap system calls, where an empty in-memory file costs a
//! shared-memory inode. Each activation gets its own stdin, never one shared: a guest can set
//! an open file's flags, and another activation must not see them.
//!
//! stdout and stderr are pipes: WAMR writes each guest `fd_write` straight into one (it buffers
//! nothing), and the activation's future drains both into its [`LogCapture`] while the guest
//! runs. The capture keeps what fits the log budget and drops the rest, so a guest flooding its
//! output costs the executor a pipe buffer (64 KiB) per stream, never memory that grows with
//! the flood; a guest that writes faster than the drain reads waits in `writev`, which the
//! deadline interrupts. (An in-memory file for stdout would keep every byte until the
//! activation ends.)
//!
//! Once the instance's thread answers, the guest has written all it will: the future reads
//! what is left in both pipes without waiting for an end of file, and closes its reading ends
//! before the guest's writing ends, which come back with the answer. Were the writing ends
//! closed first (on the instance's thread), each close would wake the reactor with an end of
//! file, and the reactor the activation's task: two cross-thread wake-ups per activation for
//! nothing the activation needs.
//!
//! Should the activation be abandoned while the guest still writes, the read ends close with
//! the future, and the guest's writes fail (`EPIPE`: Rust programs, the executor included,
//! ignore `SIGPIPE`) until the guest is stopped.

use crate::ffi;
use ow_common::host::capture::LogCapture;
use ow_common::runtime::LogStream;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use tokio::net::unix::pipe;

/// How much one drain step reads at most (on the async worker's stack, not per activation).
const DRAIN_CHUNK_BYTES: usize = 16 * 1024;

/// The descriptors WAMR gives the guest as fds 0, 1 and 2. Dropping them closes the pipes'
/// writing ends.
#[derive(Debug)]
pub(crate) struct GuestStdio {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

impl GuestStdio {
    /// stdin, stdout and stderr, for WAMR.
    pub(crate) fn fds(&self) -> [BorrowedFd<'_>; 3] {
        [self.stdin.as_fd(), self.stdout.as_fd(), self.stderr.as_fd()]
    }
}

/// The host's ends of the output pipes.
#[derive(Debug)]
pub(crate) struct OutputDrains {
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
}

/// Opens one activation's stdio, with `stdin` as the guest's stdin. Must be called inside the
/// tokio runtime that will drain the output.
pub(crate) fn open(stdin: &[u8]) -> io::Result<(GuestStdio, OutputDrains)> {
    let stdin = if stdin.is_empty() {
        // The writing end closes here: reads see end of file.
        let (reader, _writer) = io::pipe()?;
        reader.into()
    } else {
        ffi::memfd_with(stdin)?
    };
    let (stdout_drain, stdout) = output_pipe()?;
    let (stderr_drain, stderr) = output_pipe()?;
    let drains = OutputDrains {
        stdout: stdout_drain,
        stderr: stderr_drain,
    };
    let guest = GuestStdio {
        stdin,
        stdout,
        stderr,
    };
    Ok((guest, drains))
}

/// One output pipe: the host's reading end, registered with tokio, and the guest's writing end.
/// Only the reading end is non-blocking: a guest writing to a full pipe waits in `writev`.
fn output_pipe() -> io::Result<(pipe::Receiver, OwnedFd)> {
    let (reader, writer) = io::pipe()?;
    // A new pipe's reading end has no other status flag to keep (it is read-only, and
    // `O_CLOEXEC` is a descriptor flag), so one `fcntl` sets it where tokio's checked
    // constructor would take three system calls to inspect and set it.
    rustix::fs::fcntl_setfl(&reader, rustix::fs::OFlags::NONBLOCK)?;
    let drain = pipe::Receiver::from_owned_fd_unchecked(reader.into())?;
    Ok((drain, writer.into()))
}

impl OutputDrains {
    /// Hands everything the guest writes to `capture` until `answered` (the instance's thread
    /// answering, once the instance is gone) is ready, then what is left in the pipes, and
    /// returns the answer. The pipes close here, before the writing ends the answer may carry.
    pub(crate) async fn drain_until<T>(
        self,
        capture: &LogCapture,
        answered: impl Future<Output = T>,
    ) -> T {
        let mut answered = std::pin::pin!(answered);
        let answer = tokio::select! {
            biased;
            answer = &mut answered => answer,
            // Both writing ends closed before the answer came: nothing more can be written.
            ((), ()) = async {
                tokio::join!(
                    drain(&self.stdout, LogStream::Stdout, capture),
                    drain(&self.stderr, LogStream::Stderr, capture)
                )
            } => answered.await,
        };
        read_rest(&self.stdout, LogStream::Stdout, capture);
        read_rest(&self.stderr, LogStream::Stderr, capture);
        answer
    }
}

async fn drain(pipe: &pipe::Receiver, stream: LogStream, capture: &LogCapture) {
    loop {
        if pipe.readable().await.is_err() {
            return;
        }
        // Read all that is there before waiting again; the buffer lives only for this step.
        let mut chunk = [0; DRAIN_CHUNK_BYTES];
        loop {
            match pipe.try_read(&mut chunk) {
                Ok(0) => return,
                Ok(read) => capture.write(stream, &chunk[..read]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// Reads what `pipe` holds now, without waiting: once the guest is gone, all it wrote is in the
/// pipe. Reads the descriptor itself, as tokio's `try_read` would not read a pipe it has seen
/// no readiness event for.
fn read_rest(pipe: &pipe::Receiver, stream: LogStream, capture: &LogCapture) {
    let mut chunk = [0; DRAIN_CHUNK_BYTES];
    loop {
        match rustix::io::read(pipe, &mut chunk) {
            Ok(0) => return,
            Ok(read) => capture.write(stream, &chunk[..read]),
            Err(rustix::io::Errno::INTR) => {}
            // `EAGAIN`: the pipe is empty (its reading end is non-blocking).
            Err(_) => return,
        }
    }
}
