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
//! what is left in both pipes without waiting for an end of file. The pipes are then empty,
//! and both their ends go back to the engine's [`IdleOutputs`] for the next activation: making
//! and closing two pipes, and adding them to and removing them from the reactor, was about
//! half of a WAMR activation's work on the async workers. A guest can change one thing of its
//! stdout and stderr that outlives it, their file status flags (`fd_fdstat_set_flags`: append,
//! non-blocking), so those are cleared before the pipes are lent again. Pipes that are not
//! kept close their reading ends before the writing ends: the other way round, each close of
//! a writing end would wake the reactor with an end of file, and the reactor the activation's
//! task, for nothing.
//!
//! Should the activation be abandoned while the guest still writes, the read ends close with
//! the future, and the guest's writes fail (`EPIPE`: Rust programs, the executor included,
//! ignore `SIGPIPE`) until the guest is stopped.

use crate::ffi;
use ow_common::host::capture::LogCapture;
use ow_common::runtime::LogStream;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, PoisonError};
use tokio::net::unix::pipe;
use tokio::runtime::{Handle, Id};

/// How much one drain step reads at most (on the async worker's stack, not per activation).
const DRAIN_CHUNK_BYTES: usize = 16 * 1024;

/// How many activations' output pipes an engine keeps idle (four descriptors each): as many as
/// the warm linear memories (`ow_common::host::memory_pool::WARM_RESERVATIONS`), for the same
/// steady load.
const IDLE_OUTPUTS: usize = ow_common::host::memory_pool::WARM_RESERVATIONS;

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
    /// The runtime whose reactor the reading ends are registered with.
    runtime: Id,
}

/// Both ends of an activation's two output pipes, empty, between activations.
#[derive(Debug)]
struct Outputs {
    drains: OutputDrains,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// An engine's idle output pipes, the ones given back last on top.
#[derive(Debug, Default)]
pub(crate) struct IdleOutputs {
    idle: Mutex<Vec<Outputs>>,
}

impl IdleOutputs {
    /// Idle pipes registered with the current runtime's reactor, if there are any.
    fn take(&self) -> Option<Outputs> {
        let outputs = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        // Only another runtime's (a test's, say) are left behind: they are closed.
        (outputs.drains.runtime == Handle::current().id()).then_some(outputs)
    }

    /// Keeps an activation's output pipes for the next, once `drain_until` has read them empty:
    /// the guest's file status flags on them cleared, its stdin closed. Pipes that cannot be
    /// cleared, or that there is no room for, are closed, reading ends first.
    pub(crate) fn give_back(&self, drains: OutputDrains, guest: GuestStdio) {
        let GuestStdio {
            stdin,
            stdout,
            stderr,
        } = guest;
        drop(stdin);
        let cleared = [&stdout, &stderr]
            .into_iter()
            .all(|end| rustix::fs::fcntl_setfl(end, rustix::fs::OFlags::empty()).is_ok());
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if cleared && idle.len() < IDLE_OUTPUTS {
            idle.push(Outputs {
                drains,
                stdout,
                stderr,
            });
            return;
        }
        drop(idle);
        drop(drains);
    }
}

/// Opens one activation's stdio, with `stdin` as the guest's stdin, and output pipes from
/// `idle` or new ones. Must be called inside the tokio runtime that will drain the output.
pub(crate) fn open(stdin: &[u8], idle: &IdleOutputs) -> io::Result<(GuestStdio, OutputDrains)> {
    let stdin = if stdin.is_empty() {
        // The writing end closes here: reads see end of file.
        let (reader, _writer) = io::pipe()?;
        reader.into()
    } else {
        ffi::memfd_with(stdin)?
    };
    let Outputs {
        drains,
        stdout,
        stderr,
    } = match idle.take() {
        Some(outputs) => outputs,
        None => {
            let (stdout_drain, stdout) = output_pipe()?;
            let (stderr_drain, stderr) = output_pipe()?;
            Outputs {
                drains: OutputDrains {
                    stdout: stdout_drain,
                    stderr: stderr_drain,
                    runtime: Handle::current().id(),
                },
                stdout,
                stderr,
            }
        }
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
    /// returns the answer, and whether both pipes were read to empty (so they can be lent
    /// again).
    pub(crate) async fn drain_until<T>(
        &self,
        capture: &LogCapture,
        answered: impl Future<Output = T>,
    ) -> (T, bool) {
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
        let stdout_empty = read_rest(&self.stdout, LogStream::Stdout, capture);
        let stderr_empty = read_rest(&self.stderr, LogStream::Stderr, capture);
        (answer, stdout_empty && stderr_empty)
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
/// no readiness event for. Says whether it stopped at an empty pipe (`EAGAIN`: the reading
/// end is non-blocking), not at an end of file or an error.
fn read_rest(pipe: &pipe::Receiver, stream: LogStream, capture: &LogCapture) -> bool {
    let mut chunk = [0; DRAIN_CHUNK_BYTES];
    loop {
        match rustix::io::read(pipe, &mut chunk) {
            Ok(0) => return false,
            Ok(read) => capture.write(stream, &chunk[..read]),
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return true,
            Err(_) => return false,
        }
    }
}
