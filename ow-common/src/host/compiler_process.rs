//! Compiling a portable module in a process of its own ([`CompilePlace::CompilerProcess`]),
//! the serving process's end of it: [`compile`] starts the compiler command with the engine's
//! name, writes the module to its stdin and reads the engine's artifact from its stdout. The
//! artifact is then loaded like one read back from the module cache: it is what this
//! executor's own program made, over pipes no one else holds. (The compiler's end is
//! `ow-executor compile`.)
//!
//! Why: a compile runs about 7 MiB of the compiler's code and allocates its working memory by
//! the MiB. In the serving process both stayed resident after the compile (the code pages as
//! long as the process lived): measured with `ow-evaluation memory`, the first container of a
//! 300 KiB module added 12.4 MiB to a Wasmtime executor, 7.3 MiB of it compiler code. A compiler
//! that crashes or runs out of memory now fails one `/init`, not every action of the server.
//! The cost is the process's start, 4–5 ms on the development machine, most of it the dynamic
//! loader relocating the executable's 1.1 MiB of read-only data page by page: a tiny module's
//! first `/init` takes 5–6 ms instead of 1, a Rust action's compile (100–200 ms) as long as
//! before.
//!
//! The exit status says whose fault a failure is: [`INVALID_MODULE_EXIT`] with the reason on
//! stderr is the module's (it does not compile); anything else is the executor's.
//!
//! [`CompilePlace::CompilerProcess`]: crate::runtime::CompilePlace::CompilerProcess

use crate::runtime::{CompilerCommand, InitError};
use std::io::Write;
use std::process::{Command, Stdio};

/// The compiler process's exit status when the module does not compile (sysexits'
/// `EX_DATAERR`); its stderr then holds the reason.
pub const INVALID_MODULE_EXIT: u8 = 65;

/// The most of a compiler process's stderr that an error quotes: a reason is a line or two,
/// and a crash's backtrace is no answer to send an HTTP client.
const MAX_QUOTED_STDERR: usize = 4096;

/// Compiles `wasm` for the engine `engine` in a compiler process started with `command`, and
/// returns the artifact it wrote.
pub(super) fn compile(
    command: &CompilerCommand,
    engine: &str,
    wasm: &[u8],
) -> Result<Vec<u8>, InitError> {
    let process = described(command, engine);
    let mut child = Command::new(&command.program)
        .args(&command.args)
        .arg(engine)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            InitError::Engine(format!("cannot start the compiler process {process}: {e}"))
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // The module goes in while the artifact comes out, so that neither pipe fills up and
    // stalls both processes. A compiler that dies early breaks the pipe: its exit status
    // says why, so the write's own error is only reported when the compiler succeeded.
    let (written, output) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(wasm));
        let output = child.wait_with_output();
        (writer.join().expect("the writer does not panic"), output)
    });
    let output = output
        .map_err(|e| InitError::Engine(format!("the compiler process {process} was lost: {e}")))?;
    let stderr = quoted(&output.stderr);
    if output.status.code() == Some(i32::from(INVALID_MODULE_EXIT)) {
        return Err(InitError::InvalidModule(
            stderr.unwrap_or_else(|| "the compiler gave no reason".to_owned()),
        ));
    }
    if !output.status.success() {
        let said = stderr.map_or_else(String::new, |said| format!(": {said}"));
        return Err(InitError::Engine(format!(
            "the compiler process {process} failed ({}){said}",
            output.status
        )));
    }
    if let Err(e) = written {
        return Err(InitError::Engine(format!(
            "the module could not be written to the compiler process {process}: {e}"
        )));
    }
    if output.stdout.is_empty() {
        return Err(InitError::Engine(format!(
            "the compiler process {process} wrote no artifact"
        )));
    }
    Ok(output.stdout)
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

    /// A compiler command that runs `script` in a shell, with the module on its stdin and the
    /// engine's name as `$1`.
    fn shell(script: &str) -> CompilerCommand {
        CompilerCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".to_owned(), script.to_owned(), "compiler".to_owned()],
        }
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
    fn a_compiler_program_that_cannot_start_is_named() {
        let command = CompilerCommand {
            program: "/nonexistent/ow-compiler".into(),
            args: Vec::new(),
        };
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
