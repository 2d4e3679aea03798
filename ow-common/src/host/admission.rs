//! What an engine may prepare, decided once for every engine: which code formats it takes
//! (portable modules always, its own precompiled artifacts only when trusted, another engine's
//! never), which imports an action may have (WASI preview 1, and `http`.`get` when granted
//! `net_access`), and whether a granted directory exists.

use crate::abi;
use crate::capabilities::Capabilities;
use crate::code::ModuleFormat;
use crate::runtime::InitError;

/// The functions of WASI preview 1 (`wasi_snapshot_preview1`), which every engine provides.
pub const WASI_P1_FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_shutdown",
];

/// The import module of WASI preview 1.
pub const WASI_P1_MODULE: &str = "wasi_snapshot_preview1";

/// How an engine gets a module out of admitted code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Compile the portable module.
    Compile,
    /// Deserialize the engine's own artifact, which the operator trusts.
    TrustedArtifact,
}

/// Decides how an engine named `engine`, whose own artifacts are `own_artifact` (if it has
/// any), loads code of `format`.
pub fn admit(
    format: ModuleFormat,
    engine: &'static str,
    own_artifact: Option<ModuleFormat>,
    trust_precompiled: bool,
) -> Result<Load, InitError> {
    match format {
        ModuleFormat::CoreModule => Ok(Load::Compile),
        found if Some(found) == own_artifact => {
            if trust_precompiled {
                Ok(Load::TrustedArtifact)
            } else {
                Err(InitError::UntrustedArtifact { found })
            }
        }
        found @ (ModuleFormat::WasmtimeArtifact
        | ModuleFormat::WasmerArtifact
        | ModuleFormat::WamrAot) => Err(match own_artifact {
            Some(_) => InitError::IncompatibleArtifact {
                found,
                engine,
                reason: "it was made for another engine".to_owned(),
            },
            None => InitError::PortableOnly { found, engine },
        }),
        found => Err(InitError::UnsupportedFormat { found }),
    }
}

/// Whether an action with `capabilities` may import `module`.`name`.
pub fn is_provided(module: &str, name: &str, capabilities: &Capabilities) -> bool {
    match module {
        WASI_P1_MODULE => WASI_P1_FUNCTIONS.contains(&name),
        abi::HTTP_MODULE => capabilities.net_access && name == abi::HTTP_GET_IMPORT,
        _ => false,
    }
}

/// Refuses a module importing anything the action is not granted, naming every such import.
pub fn check_imports<'a>(
    imports: impl IntoIterator<Item = (&'a str, &'a str)>,
    capabilities: &Capabilities,
) -> Result<(), InitError> {
    let unknown: Vec<String> = imports
        .into_iter()
        .filter(|(module, name)| !is_provided(module, name, capabilities))
        .map(|(module, name)| format!("{module}.{name}"))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(InitError::UnknownImports(unknown))
    }
}

/// Refuses a `dir` capability that names no directory on this host.
pub fn check_dir(capabilities: &Capabilities) -> Result<(), InitError> {
    match capabilities.dir.as_ref().filter(|dir| !dir.is_dir()) {
        Some(dir) => Err(InitError::Capability(format!(
            "the dir annotation names {}, which is not a directory on the executor's host",
            dir.display()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_modules_always_load_and_artifacts_only_for_their_engine_when_trusted() {
        let own = Some(ModuleFormat::WasmtimeArtifact);
        let admit_here = |format, trust| admit(format, "wasmtime", own, trust);
        assert_eq!(
            admit_here(ModuleFormat::CoreModule, false),
            Ok(Load::Compile)
        );
        assert_eq!(
            admit_here(ModuleFormat::WasmtimeArtifact, true),
            Ok(Load::TrustedArtifact)
        );
        assert!(matches!(
            admit_here(ModuleFormat::WasmtimeArtifact, false),
            Err(InitError::UntrustedArtifact { .. })
        ));
        let other = admit_here(ModuleFormat::WasmerArtifact, true).unwrap_err();
        assert_eq!(
            other.to_string(),
            "The action code is a Wasmer precompiled artifact that this executor's wasmtime \
             cannot load (it was made for another engine); rebuild it with `ow-precompiler \
             --engine wasmtime action.wasm -o action.zip`, or send the portable .wasm."
        );
        assert!(matches!(
            admit_here(ModuleFormat::Component, true),
            Err(InitError::UnsupportedFormat { .. })
        ));
        // An engine without artifacts of its own says so, and names no precompiler command.
        let none = admit(ModuleFormat::WamrAot, "wamr", None, true).unwrap_err();
        assert_eq!(
            none.to_string(),
            "The action code is a WAMR AOT module, and this executor's wamr runs portable \
             modules only; send the .wasm."
        );
    }

    #[test]
    fn imports_beyond_wasi_need_their_capability() {
        let nothing = Capabilities::default();
        let net = Capabilities {
            net_access: true,
            ..Capabilities::default()
        };
        let imports = [("wasi_snapshot_preview1", "fd_write"), ("http", "get")];
        assert_eq!(check_imports(imports, &net), Ok(()));
        match check_imports(imports, &nothing) {
            Err(InitError::UnknownImports(names)) => assert_eq!(names, ["http.get"]),
            other => panic!("{other:?}"),
        }
        match check_imports([("env", "f"), ("wasi_snapshot_preview1", "nope")], &net) {
            Err(InitError::UnknownImports(names)) => {
                assert_eq!(names, ["env.f", "wasi_snapshot_preview1.nope"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(WASI_P1_FUNCTIONS.len(), 46);
    }
}
