//! Compiling a portable module in a process of its own ([`CompilePlace::CompilerProcess`]),
//! the serving process's end of it: `compile` starts the compiler command with the engine's
//! name, writes the module to its stdin and reads the engine's artifact from its stdout. The
//! artifact is then loaded like one read back from the module cache: it is what this
//! executor's own program made, over pipes no one else holds. (The compiler's end is
//! `ow-executor compile`.)
//!
//! Why: a compile runs about 7 MiB of the compiler's code and allocates its working memory by
//! the MiB. In the serving process both stayed resident after the compile (the code pages as
//! long as the process lived): measured with `ow-evaluation memory`, the first container of a
//! 300 KiB module added 12.4 MiB to a Wasmtime executor, 7.3 MiB of it compiler code. A compiler
//! that crashes now fails one `/init`, not every action of the server. The cost is the
//! process's start, 4–5 ms on the development machine, most of it the dynamic loader relocating
//! the executable's 1.1 MiB of read-only data page by page: a tiny module's first `/init` takes
//! 5–6 ms instead of 1, a Rust action's compile (100–200 ms) as long as before.
//!
//! The exit status says whose fault a failure is: [`INVALID_MODULE_EXIT`] with the reason on
//! stderr is the module's (it does not compile); anything else is the executor's, but for the
//! process's [`CompileLimits`]: a module whose compile outlasts the timeout (the process is
//! then killed), or makes the compiler abort on a failed allocation under its memory limit, is
//! too large to compile here, which is the module's fault too. Each compile is bounded so, and
//! the kernel's out-of-memory killer is told to take a compiler before the server; compiles
//! running side by side may each take up to the limit, and [`CompileTurns`] bounds how many
//! run at once. An in-process compile (WAMR's load, or [`CompilePlace::ThisProcess`]) has no
//! such limits.
//!
//! [`CompilePlace::CompilerProcess`]: crate::runtime::CompilePlace::CompilerProcess
//! [`CompilePlace::ThisProcess`]: crate::runtime::CompilePlace::ThisProcess
//! [`CompileLimits`]: crate::runtime::CompileLimits
//! [`CompileTurns`]: crate::runtime::CompileTurns

use crate::runtime::{CompilerCommand, InitError};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Resource, Rlimit, Signal};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::time::Instant;

/// The compiler process's exit status when the module does not compile (sysexits'
/// `EX_DATAERR`); its stderr then holds the reason.
pub const INVALID_MODULE_EXIT: u8 = 65;

/// The environment variable that gives a compiler process the pid of the executor that started
/// it: a compiler that finds another parent (its executor died before it could ask to die with
/// it) stops at once.
pub const PARENT_PID_ENV: &str = "OW_COMPILER_PARENT_PID";

/// The most of a compiler process's stderr that an error quotes: a reason is a line or two,
/// and a crash's backtrace is no answer to send an HTTP client.
const MAX_QUOTED_STDERR: usize = 4096;

/// What Rust's standard library writes before it aborts on a failed allocation: a compiler
/// process that hit its memory limit says it.
const ALLOCATION_FAILED: &str = "memory allocation of ";

/// The most threads one compile uses. Wasmtime and Wasmer compile functions in parallel on a
/// rayon pool, one thread per core unless told otherwise (`RAYON_NUM_THREADS`, which an
/// operator may set for the executor and its compilers): each thread's stack counts against
/// the memory limit (about 2 MiB), so that a limit fit for a 2-core machine refused a 200 KiB
/// module at 48 threads, and a serving executor runs compiles side by side anyway.
const MAX_COMPILE_THREADS: usize = 4;

/// Compiles `wasm` for the engine `engine` in a compiler process started with `command`, and
/// returns the artifact it wrote.
///
/// The process starts when `command.turns` gives this compile its turn, which lasts until the
/// process has ended. It runs in a process group of its own, with its memory limited before
/// the module is written to it; at its timeout the whole group is killed, so nothing it
/// started keeps the pipes open.
pub(super) fn compile(
    command: &CompilerCommand,
    engine: &str,
    wasm: &[u8],
) -> Result<Vec<u8>, InitError> {
    let _turn = command.turns.wait(|| {
        let most = command.turns.most();
        let processes = if most == 1 { "process" } else { "processes" };
        tracing::debug!(
            engine,
            "a compile waits for its turn (at most {most} compiler {processes} at once)"
        );
    });
    let process = described(command, engine);
    let limits = command.limits;
    let mut starting = Command::new(&command.program);
    starting
        .args(&command.args)
        .arg(engine)
        .process_group(0)
        .env(PARENT_PID_ENV, std::process::id().to_string())
        // A backtrace printed under the memory limit needs memory itself: a compiler that
        // panicked there waited on a lock until its deadline instead of exiting.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        starting.env(
            "RAYON_NUM_THREADS",
            cores.min(MAX_COMPILE_THREADS).to_string(),
        );
    }
    let mut child = starting.spawn().map_err(|e| {
        InitError::Engine(format!("cannot start the compiler process {process}: {e}"))
    })?;
    let deadline = Instant::now() + limits.timeout;
    let group = Pid::from_child(&child);
    let stop = || {
        // The group is the child's pid, which stays ours until the child is waited for (it
        // is only waited for below), so this cannot reach another process.
        let _ = rustix::process::kill_process_group(group, Signal::KILL);
    };
    let failed = |child: &mut std::process::Child, message: String| {
        stop();
        let _ = child.wait();
        InitError::Engine(message)
    };
    // The limit is in place before the process is given anything to compile. Set this way,
    // after the start, it lets the standard library start the process with `posix_spawn`,
    // far cheaper than `fork` for a server holding many instances' memory.
    let memory = Rlimit {
        current: Some(limits.memory),
        maximum: Some(limits.memory),
    };
    if let Err(e) = rustix::process::prlimit(Some(group), Resource::Data, memory) {
        let message = format!(
            "cannot limit the memory of the compiler process {process} to {} bytes: {e}",
            limits.memory
        );
        return Err(failed(&mut child, message));
    }
    // Should the machine run short of memory all the same, the kernel kills a compiler first.
    if let Err(e) = std::fs::write(format!("/proc/{}/oom_score_adj", child.id()), "1000") {
        tracing::warn!(%e, "a compiler process could not be made the out-of-memory killer's first choice");
    }
    // Its end is watched with its output, so that the deadline holds to the end.
    let ended = match rustix::process::pidfd_open(group, PidfdFlags::empty()) {
        Ok(ended) => ended,
        Err(e) => {
            let message =
                format!("cannot watch for the end of the compiler process {process}: {e}");
            return Err(failed(&mut child, message));
        }
    };
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    // The module goes in while the artifact and the reasons come out, so that no pipe fills
    // up and stalls both processes. A compiler that dies early breaks the pipe: its exit
    // status says why, so the write's own error is only reported when the compiler succeeded.
    let (written, outputs) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(wasm));
        let outputs = read_until(stdout, stderr, &ended, deadline);
        if !matches!(outputs, Ok(Some(_))) {
            // Past its deadline, or its outputs unreadable: nothing more is wanted of it, and
            // the writer must not wait on it.
            stop();
        }
        (writer.join().expect("the writer does not panic"), outputs)
    });
    let status = child.wait();
    let lost = |e: std::io::Error| {
        InitError::Engine(format!("the compiler process {process} was lost: {e}"))
    };
    let Some((artifact, said)) = outputs.map_err(lost)? else {
        return Err(InitError::CompileTimeout(limits.timeout));
    };
    let status = status.map_err(lost)?;
    if status.code() == Some(i32::from(INVALID_MODULE_EXIT)) {
        return Err(InitError::InvalidModule(
            quoted(&said).unwrap_or_else(|| "the compiler gave no reason".to_owned()),
        ));
    }
    if status.signal().is_some() && String::from_utf8_lossy(&said).contains(ALLOCATION_FAILED) {
        return Err(InitError::CompileMemory(limits.memory));
    }
    if !status.success() {
        let said = quoted(&said).map_or_else(String::new, |said| format!(": {said}"));
        return Err(InitError::Engine(format!(
            "the compiler process {process} failed ({status}){said}"
        )));
    }
    if let Err(e) = written {
        return Err(InitError::Engine(format!(
            "the module could not be written to the compiler process {process}: {e}"
        )));
    }
    if artifact.is_empty() {
        return Err(InitError::Engine(format!(
            "the compiler process {process} wrote no artifact"
        )));
    }
    Ok(artifact)
}

/// All that a compiler process writes on `stdout` and `stderr`, read until both end and the
/// process has ended (`ended`, its pidfd, is readable), or `None` if `deadline` comes first.
/// Both outputs are read as they come, in this thread, so that neither pipe fills up and
/// stalls the process.
fn read_until(
    stdout: ChildStdout,
    stderr: ChildStderr,
    ended: &OwnedFd,
    deadline: Instant,
) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let pipes = [
        File::from(OwnedFd::from(stdout)),
        File::from(OwnedFd::from(stderr)),
    ];
    let mut read = [Vec::new(), Vec::new()];
    let mut pipe_ended = [false; 2];
    let mut process_ended = false;
    let mut chunk = vec![0; 64 << 10];
    while pipe_ended.contains(&false) || !process_ended {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let open: Vec<usize> = (0..pipes.len()).filter(|&i| !pipe_ended[i]).collect();
        let mut polled: Vec<PollFd<'_>> = open
            .iter()
            .map(|&i| PollFd::new(&pipes[i], PollFlags::IN))
            .collect();
        if !process_ended {
            polled.push(PollFd::new(ended, PollFlags::IN));
        }
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        match rustix::event::poll(&mut polled, Some(&timeout)) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = polled.iter().map(|fd| !fd.revents().is_empty()).collect();
        if !process_ended && ready[open.len()] {
            process_ended = true;
        }
        for (&i, _) in open.iter().zip(&ready).filter(|(_, ready)| **ready) {
            // Ready: one read returns what is there without waiting, 0 at the end.
            match (&pipes[i]).read(&mut chunk) {
                Ok(0) => pipe_ended[i] = true,
                Ok(n) => read[i].extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    let [artifact, said] = read;
    Ok(Some((artifact, said)))
}

/// This process's own hard data limit (`RLIMIT_DATA`), if it has one: a compiler process it
/// starts cannot be given a larger [`CompileLimits::memory`], and every compile would fail.
///
/// [`CompileLimits::memory`]: crate::runtime::CompileLimits::memory
pub fn hard_memory_limit() -> Option<u64> {
    rustix::process::getrlimit(Resource::Data).maximum
}

/// The compiler process as its messages name it: the command line it is started with.
fn described(command: &CompilerCommand, engine: &str) -> String {
    let mut words = vec![command.program.display().to_string()];
    words.extend(command.args.iter().cloned());
    words.push(engine.to_owned());
    format!("`{}`", words.join(" "))
}

/// What a compiler process said on stderr, trimmed and cut at [`MAX_QUOTED_STDERR`]; `None`
/// if nothing.
fn quoted(stderr: &[u8]) -> Option<String> {
    let said = String::from_utf8_lossy(stderr);
    let said = said.trim();
    if said.is_empty() {
        return None;
    }
    if said.len() <= MAX_QUOTED_STDERR {
        return Some(said.to_owned());
    }
    let cut = said.floor_char_boundary(MAX_QUOTED_STDERR);
    Some(format!(
        "{} [cut at {MAX_QUOTED_STDERR} bytes]",
        &said[..cut]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{CompileLimits, CompileTurns};
    use std::time::Duration;

    /// A compiler command that runs `script` in a shell, with the module on its stdin and the
    /// engine's name as `$1`.
    fn shell(script: &str) -> CompilerCommand {
        CompilerCommand::new(
            "/bin/sh",
            vec!["-c".to_owned(), script.to_owned(), "compiler".to_owned()],
        )
    }

    #[test]
    fn the_artifact_is_what_the_compiler_process_writes_for_the_engine_it_is_given() {
        let artifact = compile(
            &shell(r#"printf '%s:' "$1"; cat"#),
            "wasmtime",
            b"module bytes",
        );
        assert_eq!(artifact.unwrap(), b"wasmtime:module bytes");
    }

    #[test]
    fn a_module_that_does_not_compile_is_the_modules_fault_with_the_compilers_reason() {
        let script = "cat >/dev/null; echo 'unknown opcode 0xff at offset 42' >&2; exit 65";
        match compile(&shell(script), "wasmtime", b"\0asm") {
            Err(InitError::InvalidModule(reason)) => {
                assert_eq!(reason, "unknown opcode 0xff at offset 42");
            }
            other => panic!("expected an invalid module, got {other:?}"),
        }
        let silent = compile(&shell("cat >/dev/null; exit 65"), "wasmtime", b"\0asm");
        assert_eq!(
            silent.err(),
            Some(InitError::InvalidModule(
                "the compiler gave no reason".to_owned()
            ))
        );
    }

    #[test]
    fn a_compiler_process_that_fails_otherwise_is_the_executors_fault() {
        for (script, words) in [
            (
                "echo 'out of memory' >&2; exit 1",
                "(exit status: 1): out of memory",
            ),
            ("kill -9 $$", "(signal: 9 (SIGKILL))"),
            ("cat >/dev/null", "wrote no artifact"),
        ] {
            match compile(&shell(script), "wasmtime", &[0; 1 << 20]) {
                Err(InitError::Engine(message)) => {
                    assert!(message.contains(words), "{script}: {message}");
                    assert!(message.contains("`/bin/sh -c "), "{script}: {message}");
                    assert!(
                        message.contains(" compiler wasmtime`"),
                        "{script}: {message}"
                    );
                    assert!(!message.ends_with(": "), "{script}: {message}");
                }
                other => panic!("{script}: expected an engine error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_long_story_on_stderr_is_cut() {
        let script = "cat >/dev/null; head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1";
        match compile(&shell(script), "wasmtime", b"\0asm") {
            Err(InitError::Engine(message)) => {
                assert!(message.len() < 5000, "{} bytes", message.len());
                assert!(message.ends_with("xxx [cut at 4096 bytes]"), "{message}");
            }
            other => panic!("expected an engine error, got {other:?}"),
        }
    }

    #[test]
    fn compiler_processes_past_the_bound_wait_for_their_turn_and_all_compile() {
        let running = tempfile::tempdir().expect("a temporary directory");
        // Each compiler marks itself running, lets the others start, and answers with how many
        // it saw running.
        let script = format!(
            "cat >/dev/null; touch '{dir}/'$$; sleep 0.2; ls '{dir}' | wc -l; rm '{dir}/'$$",
            dir = running.path().display()
        );
        let command = CompilerCommand {
            turns: CompileTurns::new(2),
            ..shell(&script)
        };
        let seen: Vec<usize> = std::thread::scope(|scope| {
            let compiles: Vec<_> = (0..6)
                .map(|_| scope.spawn(|| compile(&command, "wasmtime", b"\0asm")))
                .collect();
            compiles
                .into_iter()
                .map(|compile| {
                    let artifact = compile.join().expect("no panic").expect("it compiles");
                    let text = String::from_utf8(artifact).expect("a count");
                    text.trim().parse().expect("a count")
                })
                .collect()
        });
        assert!(
            seen.iter().all(|&count| (1..=2).contains(&count)),
            "{seen:?}"
        );
    }

    /// [`shell`] within `limits`.
    fn shell_within(script: &str, limits: CompileLimits) -> CompilerCommand {
        CompilerCommand {
            limits,
            ..shell(script)
        }
    }

    #[test]
    fn a_compiler_process_past_its_timeout_is_stopped_with_all_it_started() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let started = dir.path().join("started");
        // A process the compiler started, with the pipes closed so that only the group's
        // stop ends it; then the compiler itself hangs.
        let script = format!(
            "sleep 60 >/dev/null 2>&1 & echo $! > '{}'; exec sleep 60",
            started.display()
        );
        let limits = CompileLimits {
            timeout: Duration::from_secs(2),
            ..CompileLimits::default()
        };
        let compiled = compile(&shell_within(&script, limits), "wasmtime", b"\0asm");
        assert_eq!(
            compiled.err(),
            Some(InitError::CompileTimeout(limits.timeout))
        );
        let pid = std::fs::read_to_string(&started).expect("the compiler started a process");
        // Gone, or killed and not yet reaped by whoever inherited it. A killed process may take
        // a moment to finish dying on a loaded machine; one that was not killed sleeps on.
        let running = || {
            let state = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
            state.is_ok_and(|stat| {
                let after_name = &stat[stat.rfind(')').expect("stat names the command") + 1..];
                !after_name.trim_start().starts_with('Z')
            })
        };
        let given_up = std::time::Instant::now() + Duration::from_secs(20);
        while running() {
            assert!(
                std::time::Instant::now() < given_up,
                "process {} outlived its compiler's stop",
                pid.trim()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_compiler_process_knows_its_executor_and_prints_no_backtrace_and_dies_first() {
        let script = "cat >/dev/null; echo \"$OW_COMPILER_PARENT_PID ${RUST_BACKTRACE-none} \
                      ${RUST_LIB_BACKTRACE-none} $RAYON_NUM_THREADS $(cat /proc/self/oom_score_adj)\"";
        let said = compile(&shell(script), "wasmtime", b"\0asm").expect("it answers");
        let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            cores.min(MAX_COMPILE_THREADS).to_string()
        });
        assert_eq!(
            String::from_utf8(said).unwrap(),
            format!("{} none none {threads} 1000\n", std::process::id())
        );
    }

    #[test]
    fn a_compiler_process_may_allocate_no_more_than_its_memory_limit() {
        let limits = CompileLimits {
            memory: 64 << 20,
            ..CompileLimits::default()
        };
        // The shell's `ulimit -d` is the data limit in KiB.
        let script = "cat >/dev/null; ulimit -d";
        let artifact = compile(&shell_within(script, limits), "wasmtime", b"\0asm");
        assert_eq!(artifact.unwrap(), b"65536\n");
    }

    #[test]
    fn a_compiler_process_that_aborts_on_a_failed_allocation_ran_out_of_memory() {
        let limits = CompileLimits {
            memory: 64 << 20,
            ..CompileLimits::default()
        };
        let script = "cat >/dev/null; echo 'memory allocation of 819216 bytes failed' >&2; \
                      kill -ABRT $$";
        let compiled = compile(&shell_within(script, limits), "wasmer", b"\0asm");
        assert_eq!(compiled.err(), Some(InitError::CompileMemory(64 << 20)));
        // The same words on a plain failure are no verdict on memory.
        let exited = "cat >/dev/null; echo 'memory allocation of 8 bytes failed' >&2; exit 1";
        let compiled = compile(&shell_within(exited, limits), "wasmer", b"\0asm");
        assert!(
            matches!(compiled, Err(InitError::Engine(_))),
            "{compiled:?}"
        );
    }

    #[test]
    fn a_compiler_program_that_cannot_start_is_named() {
        let command = CompilerCommand::new("/nonexistent/ow-compiler", Vec::new());
        match compile(&command, "wasmtime", b"\0asm") {
            Err(InitError::Engine(message)) => {
                assert!(
                    message.contains(
                        "cannot start the compiler process `/nonexistent/ow-compiler wasmtime`"
                    ),
                    "{message}"
                );
            }
            other => panic!("expected an engine error, got {other:?}"),
        }
    }
}
