//! `ow-executor compile ENGINE`: the compiler process a serving executor starts for each
//! compile of a portable module (the serving end is `ow_common::host::compiler_process`). It
//! reads the module on stdin, writes the engine's artifact on stdout and exits; a module that
//! does not compile exits with [`INVALID_MODULE_EXIT`] and the engine's reason on stderr, any
//! other failure with status 1 and what went wrong. It dies with the thread of the executor
//! that started it, which waits for it to the end: a compiler whose executor is gone has no
//! one to answer, and no one left to stop it at its deadline.

use ow_common::host::Engine;
use ow_common::host::compiler_process::{INVALID_MODULE_EXIT, PARENT_PID_ENV};
use ow_common::runtime::InitError;
use rustix::process::Signal;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Asks for SIGKILL when the executor's thread that started this process ends. An executor
/// that died before this (it is no longer the parent named in [`PARENT_PID_ENV`]) is an
/// error at once. Started by hand, without that variable, there is no executor to die with.
fn die_with_the_executor() -> Result<(), InitError> {
    let Some(parent) = std::env::var_os(PARENT_PID_ENV) else {
        return Ok(());
    };
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| InitError::Engine(format!("cannot die with the executor: {e}")))?;
    let parent_now = rustix::process::getppid().map_or(0, |pid| pid.as_raw_nonzero().get());
    if parent.to_str() != Some(parent_now.to_string().as_str()) {
        return Err(InitError::Engine(
            "the executor that started this compiler is gone".to_owned(),
        ));
    }
    Ok(())
}

/// Compiles the module on stdin for `E` and writes the artifact on stdout.
pub fn serve<E: Engine>() -> ExitCode {
    let mut wasm = Vec::new();
    let compiled = die_with_the_executor()
        .and_then(|()| {
            std::io::stdin()
                .lock()
                .read_to_end(&mut wasm)
                .map_err(|e| InitError::Engine(format!("cannot read the module from stdin: {e}")))
        })
        .and_then(|_| E::compile_artifact(&wasm));
    let (status, written) = match compiled {
        Ok(artifact) => {
            let mut stdout = std::io::stdout().lock();
            let written = stdout.write_all(&artifact).and_then(|()| stdout.flush());
            (ExitCode::SUCCESS, written)
        }
        // The serving end words it as the module's fault; the reason alone goes back.
        Err(InitError::InvalidModule(reason)) => (
            ExitCode::from(INVALID_MODULE_EXIT),
            writeln!(std::io::stderr(), "{reason}"),
        ),
        Err(error) => (
            ExitCode::FAILURE,
            writeln!(std::io::stderr(), "{}", error.reason()),
        ),
    };
    match written {
        Ok(()) => status,
        Err(_) => ExitCode::FAILURE,
    }
}
