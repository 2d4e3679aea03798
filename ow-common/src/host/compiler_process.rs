//! Compiling a portable module in a process of its own ([`CompilePlace::CompilerProcess`]):
//! both ends of it. The serving process starts the compiler command with the engine's name,
//! writes the module to its stdin and reads the engine's artifact from its stdout
//! ([`compile`]); the compiler process ([`serve`]) compiles and exits. The artifact is then
//! loaded like one read back from the module cache: it is what this executor's own program
//! made, over pipes no one else holds.
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

use super::Engine;
use crate::runtime::{CompilerCommand, InitError};
use std::io::{Read, Write};
use std::process::{Command, ExitCode, Stdio};

/// The compiler process's exit status when the module does not compile (sysexits'
/// `EX_DATAERR`); its stderr then holds the reason.
pub const INVALID_MODULE_EXIT: u8 = 65;

/// Compiles `wasm` for the engine `engine` in a compiler process started with `command`, and
/// returns the artifact it wrote.
pub(super) fn compile(
    command: &CompilerCommand,
    engine: &str,
    wasm: &[u8],
) -> Result<Vec<u8>, InitError> {
    let program = command.program.display();
    let mut child = Command::new(&command.program)
        .args(&command.args)
        .arg(engine)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            InitError::Engine(format!("cannot start the compiler process {program}: {e}"))
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
        .map_err(|e| InitError::Engine(format!("the compiler process {program} was lost: {e}")))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim_end();
    if output.status.code() == Some(i32::from(INVALID_MODULE_EXIT)) {
        return Err(InitError::InvalidModule(stderr.to_owned()));
    }
    if !output.status.success() {
        return Err(InitError::Engine(format!(
            "the compiler process {program} failed ({}): {stderr}",
            output.status
        )));
    }
    if let Err(e) = written {
        return Err(InitError::Engine(format!(
            "the module could not be written to the compiler process {program}: {e}"
        )));
    }
    if output.stdout.is_empty() {
        return Err(InitError::Engine(format!(
            "the compiler process {program} wrote no artifact"
        )));
    }
    Ok(output.stdout)
}

/// The compiler process: reads a portable module on stdin, writes `E`'s artifact of it on
/// stdout, and exits with [`INVALID_MODULE_EXIT`] and the reason on stderr when the module does
/// not compile.
pub fn serve<E: Engine>() -> ExitCode {
    let mut wasm = Vec::new();
    let compiled = std::io::stdin()
        .lock()
        .read_to_end(&mut wasm)
        .map_err(|e| InitError::Engine(format!("cannot read the module from stdin: {e}")))
        .and_then(|_| E::compile_artifact(&wasm));
    let (status, written) = match compiled {
        Ok(artifact) => {
            let mut stdout = std::io::stdout().lock();
            let written = stdout.write_all(&artifact).and_then(|()| stdout.flush());
            (ExitCode::SUCCESS, written)
        }
        Err(InitError::InvalidModule(reason)) => (
            ExitCode::from(INVALID_MODULE_EXIT),
            writeln!(std::io::stderr(), "{reason}"),
        ),
        Err(error) => (ExitCode::FAILURE, writeln!(std::io::stderr(), "{error}")),
    };
    match written {
        Ok(()) => status,
        Err(_) => ExitCode::FAILURE,
    }
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
    }

    #[test]
    fn a_compiler_process_that_fails_otherwise_is_the_executors_fault() {
        for (script, words) in [
            ("echo 'out of memory' >&2; exit 1", "exit status: 1"),
            ("kill -9 $$", "signal: 9"),
            ("cat >/dev/null", "wrote no artifact"),
        ] {
            match compile(&shell(script), "wasmtime", &[0; 1 << 20]) {
                Err(InitError::Engine(message)) => {
                    assert!(message.contains(words), "{script}: {message}");
                    assert!(message.contains("/bin/sh"), "{script}: {message}");
                }
                other => panic!("{script}: expected an engine error, got {other:?}"),
            }
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
                    message.contains("cannot start the compiler process /nonexistent/ow-compiler"),
                    "{message}"
                );
            }
            other => panic!("expected an engine error, got {other:?}"),
        }
    }
}
