//! One activation's stdio as WAMR needs it: real file descriptors.
//!
//! stdin is an in-memory file holding the parameters (the stdio ABI). When it has nothing to
//! hold (the SDK and export-call ABIs), it is a pipe whose writing end is already closed, so a
//! read ends at once: cheaper than an empty in-memory file, which costs a shared-memory inode,
//! and lent again like the output pipes (below). No two activations share a stdin at once: a
//! guest can set an open file's flags, and another activation must not see them.
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
//! and both their ends, with an empty stdin, go back to the engine's [`IdleStdio`] for the
//! next activation: making and closing three pipes, and adding two to and removing them from
//! the reactor, was about half of a WAMR activation's work on the async workers. A guest can
//! change one thing of its stdio that outlives it, the file status flags
//! (`fd_fdstat_set_flags`: append, non-blocking), so those are cleared before the descriptors
//! are lent again, when the guest's module imports that function. Pipes that are not kept
//! close their reading ends before the writing ends: the other way round, each close of a
//! writing end would wake the reactor with an end of file, and the reactor the activation's
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

/// The one WASI function that changes an open file's status flags (append, non-blocking).
pub(crate) const SET_FLAGS_IMPORT: &str = "fd_fdstat_set_flags";

/// How much one drain step reads at most (on the async worker's stack, not per activation).
const DRAIN_CHUNK_BYTES: usize = 16 * 1024;

/// How many activations' stdio an engine keeps idle (five descriptors each): as many as the
/// warm linear memories (`ow_common::host::memory_pool::WARM_RESERVATIONS`), for the same
/// steady load.
const IDLE_STDIO: usize = ow_common::host::memory_pool::WARM_RESERVATIONS;

/// The descriptors WAMR gives the guest as fds 0, 1 and 2. Dropping them closes the pipes'
/// writing ends.
#[derive(Debug)]
pub(crate) struct GuestStdio {
    stdin: Stdin,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// What the guest reads as stdin.
#[derive(Debug)]
enum Stdin {
    /// The reading end of a pipe whose writing end is closed: a read ends at once. Lent again,
    /// like the output pipes.
    Empty(OwnedFd),
    /// An in-memory file holding the parameters, closed after the activation.
    Params(OwnedFd),
}

impl GuestStdio {
    /// stdin, stdout and stderr, for WAMR.
    pub(crate) fn fds(&self) -> [BorrowedFd<'_>; 3] {
        let (Stdin::Empty(stdin) | Stdin::Params(stdin)) = &self.stdin;
        [stdin.as_fd(), self.stdout.as_fd(), self.stderr.as_fd()]
    }
}

/// The host's ends of the output pipes.
#[derive(Debug)]
pub(crate) struct OutputDrains {
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    /// The runtime whose reactor the reading ends are registered with.
    runtime: Id,
    /// An empty stdin kept for the next activation while this one reads its parameters.
    spare_stdin: Option<OwnedFd>,
}

/// One activation's stdio between activations: both ends of two empty output pipes, and an
/// empty stdin if there is one.
#[derive(Debug)]
struct IdleSet {
    drains: OutputDrains,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// An engine's idle stdio, the sets given back last on top.
#[derive(Debug, Default)]
pub(crate) struct IdleStdio {
    idle: Mutex<Vec<IdleSet>>,
}

impl IdleStdio {
    /// An idle set registered with the current runtime's reactor, if there is one.
    fn take(&self) -> Option<IdleSet> {
        let set = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        // Only another runtime's (a test's, say) are left behind: they are closed.
        (set.drains.runtime == Handle::current().id()).then_some(set)
    }

    /// Keeps an activation's stdio for the next when `drain_until` has read the output pipes
    /// empty (`read_empty`): the file status flags on the guest's ends cleared if the guest
    /// could set them (`may_set_flags`: its module imports [`SET_FLAGS_IMPORT`]; three system
    /// calls saved per activation of any other), a stdin holding parameters closed.
    /// Descriptors not read empty, whose flags cannot be cleared, or that there is no room
    /// for, are closed, reading ends first.
    pub(crate) fn give_back(
        &self,
        mut drains: OutputDrains,
        guest: GuestStdio,
        read_empty: bool,
        may_set_flags: bool,
    ) {
        if !read_empty {
            drop(drains);
            drop(guest);
            return;
        }
        let GuestStdio {
            stdin,
            stdout,
            stderr,
        } = guest;
        let clear = |end: &OwnedFd| {
            !may_set_flags || rustix::fs::fcntl_setfl(end, rustix::fs::OFlags::empty()).is_ok()
        };
        match stdin {
            Stdin::Empty(stdin) => drains.spare_stdin = clear(&stdin).then_some(stdin),
            Stdin::Params(stdin) => drop(stdin),
        }
        let cleared = clear(&stdout) && clear(&stderr);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if cleared && idle.len() < IDLE_STDIO {
            idle.push(IdleSet {
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

/// Opens one activation's stdio, with `stdin` as the guest's stdin, from a set of `idle` or
/// new descriptors. Must be called inside the tokio runtime that will drain the output.
pub(crate) fn open(stdin: &[u8], idle: &IdleStdio) -> io::Result<(GuestStdio, OutputDrains)> {
    let IdleSet {
        mut drains,
        stdout,
        stderr,
    } = match idle.take() {
        Some(set) => set,
        None => {
            let (stdout_drain, stdout) = output_pipe()?;
            let (stderr_drain, stderr) = output_pipe()?;
            IdleSet {
                drains: OutputDrains {
                    stdout: stdout_drain,
                    stderr: stderr_drain,
                    runtime: Handle::current().id(),
                    spare_stdin: None,
                },
                stdout,
                stderr,
            }
        }
    };
    let stdin = if stdin.is_empty() {
        match drains.spare_stdin.take() {
            Some(empty) => Stdin::Empty(empty),
            None => {
                // The writing end closes here: reads see end of file.
                let (reader, _writer) = io::pipe()?;
                Stdin::Empty(reader.into())
            }
        }
    } else {
        Stdin::Params(ffi::memfd_with(stdin)?)
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
