//! `ow-executor compile ENGINE`: the compiler process a serving executor starts for each
//! compile of a portable module (the serving end is `ow_common::host::compiler_process`). It
//! reads the module on stdin, writes the engine's artifact on stdout and exits; a module that
//! does not compile exits with [`INVALID_MODULE_EXIT`] and the engine's reason on stderr, any
//! other failure with status 1 and what went wrong.

use ow_common::host::Engine;
use ow_common::host::compiler_process::INVALID_MODULE_EXIT;
use ow_common::runtime::InitError;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Compiles the module on stdin for `E` and writes the artifact on stdout.
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
