//! The guest code WAMR would run while making an instance, moved into the activation, where the
//! deadline can stop it.
//!
//! WAMR runs a module's start function, and then the exports it treats as start-up code, inside
//! `wasm_runtime_instantiate*` (`execute_post_instantiate_functions` in its
//! `interpreter/wasm_runtime.c`), before there is an instance that `wasm_runtime_terminate` can
//! reach: a loop there would hold its thread and instance slot for good. Those exports, each only
//! when it is a function taking and returning nothing, in the order WAMR calls them:
//!
//! 1. `_initialize`, when the module imports a WASI function (a WASI reactor);
//! 2. `__post_instantiate` (early Emscripten);
//! 3. `__wasm_call_ctors`, when the module imports no WASI function.
//!
//! Nothing else runs guest code before a call: WASI's `_start` is only looked up by
//! `wasm_application_execute_main`, which this crate does not use, and a call
//! (`wasm_runtime_call_wasm*`) runs no start-up code of its own.
//!
//! So the module is rewritten once, when it is loaded: the start section is dropped and its
//! function exported under a name the module does not use, and each of those exports is renamed
//! to such a name, so that WAMR finds nothing to run. [`Startup`] remembers the calls, and the
//! activation makes them, in WAMR's order, in the same stoppable run as the ABI's entry point
//! and before it. What a module sees is unchanged: its start function runs once per instance
//! before anything else, a reactor's `_initialize` once before the entry point, a trap there
//! is a trap (and a `proc_exit` an exit). The exports are reported as the module wrote them
//! ([`Startup::exports`]), for the ABI's detection and the export-call ABI's `main`.

use crate::ffi::{CallFailure, Export, RunningInstance};
use ow_common::abi;
use ow_common::host::admission::WASI_P1_MODULE;
use std::borrow::Cow;
use std::ops::Range;
use wasm_encoder::{ExportKind, ExportSection, RawSection, SectionId};
use wasmparser::{Chunk, CompositeInnerType, ExternalKind, Parser, Payload, TypeRef};

/// What the start function is exported as (with a suffix, should the module use the name).
const START_EXPORT: &str = "__ow_wamr_start";

/// What a start-up export is renamed to: this prefix, then its own name (and a suffix, should
/// the module use the name).
const RENAMED_PREFIX: &str = "__ow_wamr";

/// `__post_instantiate`, which WAMR calls in every module that exports it.
const POST_INSTANTIATE_EXPORT: &str = "__post_instantiate";

/// `__wasm_call_ctors`, which WAMR calls in a module that imports no WASI function.
const CALL_CTORS_EXPORT: &str = "__wasm_call_ctors";

/// A module's start-up calls, which WAMR would make while instantiating it: made instead by
/// [`Startup::run`] on an instance that can be stopped.
#[derive(Debug)]
pub(crate) struct Startup {
    /// In the order WAMR would make them.
    calls: Vec<StartupCall>,
}

/// One start-up call.
#[derive(Debug)]
struct StartupCall {
    /// What the loaded module exports the function as.
    export: String,
    /// The name the module exported it under; none for the start function.
    original: Option<&'static str>,
}

/// A module ready for WAMR's loader, and its start-up calls.
#[derive(Debug)]
pub(crate) struct Deferred<'w> {
    /// The module as WAMR loads it: the original bytes when it has no start-up calls.
    pub(crate) wasm: Cow<'w, [u8]>,
    /// What WAMR would have run while instantiating it.
    pub(crate) startup: Startup,
}

/// Rewrites `wasm` so that WAMR runs none of its code while instantiating it. Fails, saying why,
/// on bytes that are not a core module this parser can read.
pub(crate) fn defer(wasm: &[u8]) -> Result<Deferred<'_>, String> {
    let module = Scanned::of(wasm)?;
    // The names the rewritten module exports, so that no new one is among them.
    let mut taken: Vec<String> = module
        .exports
        .iter()
        .map(|export| export.name.to_owned())
        .collect();
    let mut fresh = |base: String| {
        let name = (1..)
            .map(|n| match n {
                1 => base.clone(),
                n => format!("{base}_{n}"),
            })
            .find(|name| !taken.contains(name))
            .expect("some suffix is free");
        taken.push(name.clone());
        name
    };
    let mut calls = Vec::new();
    let start = module.start.map(|function| {
        let export = fresh(START_EXPORT.to_owned());
        calls.push(StartupCall {
            export: export.clone(),
            original: None,
        });
        (export, function)
    });
    let wamr_calls: [(&'static str, bool); 3] = [
        (abi::REACTOR_INIT_EXPORT, module.imports_wasi),
        (POST_INSTANTIATE_EXPORT, true),
        (CALL_CTORS_EXPORT, !module.imports_wasi),
    ];
    for (name, applies) in wamr_calls {
        if applies && module.exports_unit_function(name) {
            calls.push(StartupCall {
                export: fresh(format!("{RENAMED_PREFIX}{name}")),
                original: Some(name),
            });
        }
    }
    let startup = Startup { calls };
    if startup.calls.is_empty() {
        return Ok(Deferred {
            wasm: Cow::Borrowed(wasm),
            startup,
        });
    }
    let rewritten = module.encode(&startup, start.as_ref())?;
    Ok(Deferred {
        wasm: Cow::Owned(rewritten),
        startup,
    })
}

impl Startup {
    /// No start-up calls: what a native's view of its instance knows of them.
    pub(crate) fn none() -> &'static Self {
        static NONE: Startup = Startup { calls: Vec::new() };
        &NONE
    }

    /// Makes the start-up calls on the instance running on this thread, in order.
    pub(crate) fn run(&self) -> Result<(), CallFailure> {
        for call in &self.calls {
            RunningInstance.call(&call.export, &[], &[])?;
        }
        Ok(())
    }

    /// Whether [`Startup::run`] calls the module's export `name` (so no one else must).
    pub(crate) fn calls(&self, name: &str) -> bool {
        self.calls.iter().any(|call| call.original == Some(name))
    }

    /// What the loaded module exports the module's export `name` as.
    pub(crate) fn export_name<'n>(&'n self, name: &'n str) -> &'n str {
        self.calls
            .iter()
            .find(|call| call.original == Some(name))
            .map_or(name, |call| &call.export)
    }

    /// The module's exports as it wrote them, from the loaded module's: without the start
    /// function's export, and with each renamed export under its own name.
    pub(crate) fn exports(&self, loaded: Vec<Export>) -> Vec<Export> {
        loaded
            .into_iter()
            .filter_map(|mut export| {
                match self.calls.iter().find(|call| call.export == export.name) {
                    None => {}
                    Some(StartupCall { original: None, .. }) => return None,
                    Some(StartupCall {
                        original: Some(original),
                        ..
                    }) => export.name = (*original).to_owned(),
                }
                Some(export)
            })
            .collect()
    }
}

/// What the rewrite needs to know of a module, read in one pass.
struct Scanned<'w> {
    wasm: &'w [u8],
    /// Every section, in order: its id and the range of its contents.
    sections: Vec<(u8, Range<usize>)>,
    /// Whether each type (by index) is a function type taking and returning nothing.
    unit_types: Vec<bool>,
    /// Each function's type index, imported functions first.
    function_types: Vec<u32>,
    /// Whether it imports a function from WASI (either version), as WAMR decides it.
    imports_wasi: bool,
    exports: Vec<wasmparser::Export<'w>>,
    /// The start function.
    start: Option<u32>,
}

impl<'w> Scanned<'w> {
    /// Reads `wasm`, or says why it cannot.
    fn of(wasm: &'w [u8]) -> Result<Self, String> {
        if !Parser::is_core_wasm(wasm) {
            return Err("it does not start with a core WebAssembly module's header".to_owned());
        }
        Self::read(wasm).map_err(|error| error.to_string())
    }

    fn read(wasm: &'w [u8]) -> wasmparser::Result<Self> {
        let mut module = Self {
            wasm,
            sections: Vec::new(),
            unit_types: Vec::new(),
            function_types: Vec::new(),
            imports_wasi: false,
            exports: Vec::new(),
            start: None,
        };
        let mut parser = Parser::new(0);
        let mut at = 0;
        loop {
            // All of it is there: the parser fails rather than ask for more.
            let Chunk::Parsed { consumed, payload } = parser.parse(&wasm[at..], true)? else {
                unreachable!("a parser at the end of its input needs no more of it")
            };
            at += consumed;
            if let Some(section) = payload.as_section() {
                module.sections.push(section);
            }
            match payload {
                // The functions' bodies are copied, never read (unless the section is cut
                // short: the parser reads on to say where).
                Payload::CodeSectionStart { size, range, .. } if range.end <= wasm.len() => {
                    parser.skip_section();
                    at += size as usize;
                }
                Payload::End(_) => break,
                Payload::TypeSection(types) => {
                    for group in types {
                        module.unit_types.extend(group?.into_types().map(|ty| {
                            matches!(&ty.composite_type.inner, CompositeInnerType::Func(f)
                                if f.params().is_empty() && f.results().is_empty())
                        }));
                    }
                }
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        let import = import?;
                        if let TypeRef::Func(ty) | TypeRef::FuncExact(ty) = import.ty {
                            module.function_types.push(ty);
                            module.imports_wasi |=
                                matches!(import.module, WASI_P1_MODULE | "wasi_unstable");
                        }
                    }
                }
                Payload::FunctionSection(functions) => {
                    for ty in functions {
                        module.function_types.push(ty?);
                    }
                }
                Payload::ExportSection(exports) => {
                    for export in exports {
                        module.exports.push(export?);
                    }
                }
                Payload::StartSection { func, .. } => module.start = Some(func),
                _ => {}
            }
        }
        Ok(module)
    }

    /// Whether the module exports `name` as a function taking and returning nothing: what WAMR
    /// calls while instantiating.
    fn exports_unit_function(&self, name: &str) -> bool {
        self.exports.iter().any(|export| {
            export.name == name
                && export.kind == ExternalKind::Func
                && self
                    .function_types
                    .get(export.index as usize)
                    .and_then(|&ty| self.unit_types.get(ty as usize))
                    .is_some_and(|&unit| unit)
        })
    }

    /// The module without its start section, exporting its start function as `start` names it
    /// and each renamed export of `startup` under its new name. Every other section is copied
    /// as it is.
    fn encode(&self, startup: &Startup, start: Option<&(String, u32)>) -> Result<Vec<u8>, String> {
        let mut exports = ExportSection::new();
        for export in &self.exports {
            let kind = match export.kind {
                ExternalKind::Func => ExportKind::Func,
                ExternalKind::Table => ExportKind::Table,
                ExternalKind::Memory => ExportKind::Memory,
                ExternalKind::Global => ExportKind::Global,
                ExternalKind::Tag => ExportKind::Tag,
                ExternalKind::FuncExact => {
                    return Err(format!(
                        "its export `{}` is an exact function, which WAMR does not support",
                        export.name
                    ));
                }
            };
            let renamed = match export.kind {
                ExternalKind::Func => startup.export_name(export.name),
                _ => export.name,
            };
            exports.export(renamed, kind, export.index);
        }
        if let Some((name, function)) = start {
            exports.export(name, ExportKind::Func, *function);
        }
        let (export_id, start_id) = (SectionId::Export as u8, SectionId::Start as u8);
        let mut encoded = wasm_encoder::Module::new();
        let mut exported = false;
        for (id, range) in &self.sections {
            let id = *id;
            if id == export_id || id == start_id {
                // The export section comes just before the start section: a module that has
                // none gets it there.
                if !exported {
                    encoded.section(&exports);
                    exported = true;
                }
            } else {
                encoded.section(&RawSection {
                    id,
                    data: &self.wasm[range.clone()],
                });
            }
        }
        Ok(encoded.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffi;

    /// `wat` deferred: the rewritten module (none if it is loaded as it is) and its calls.
    fn defer_wat(wat: &str) -> (Option<Vec<u8>>, Startup) {
        let wasm = wat::parse_str(wat).expect("the test module is valid WAT");
        let Deferred { wasm, startup } = defer(&wasm).expect("the module parses");
        let rewritten = match wasm {
            Cow::Borrowed(_) => None,
            Cow::Owned(rewritten) => Some(rewritten),
        };
        (rewritten, startup)
    }

    /// The start function and export names of a module, after WAMR checked it loads.
    fn loaded(wasm: &[u8]) -> (Option<u32>, Vec<String>) {
        ffi::init_runtime().expect("WAMR starts");
        ffi::Module::load(wasm.to_vec()).expect("WAMR loads the rewritten module");
        let module = Scanned::of(wasm).expect("it parses");
        let names = module.exports.iter().map(|e| e.name.to_owned()).collect();
        (module.start, names)
    }

    fn originals(startup: &Startup) -> Vec<Option<&'static str>> {
        startup.calls.iter().map(|call| call.original).collect()
    }

    const WASI_IMPORT: &str =
        r#"(import "wasi_snapshot_preview1" "sched_yield" (func (result i32)))"#;

    #[test]
    fn a_module_with_nothing_wamr_runs_while_instantiating_is_loaded_as_it_is() {
        for wat in [
            // A command and an SDK module.
            format!(r#"(module {WASI_IMPORT} (func (export "_start")))"#),
            r#"(module (memory (export "memory") 1)
                 (func (export "__ow_alloc") (param i32) (result i32) (i32.const 0))
                 (func (export "__ow_main") (param i32 i32) (result i64) (i64.const 0)))"#
                .to_owned(),
            // WAMR calls `_initialize` only in a module importing WASI, `__wasm_call_ctors` only
            // in one that does not, and neither unless it takes and returns nothing.
            r#"(module (func (export "_initialize")))"#.to_owned(),
            format!(r#"(module {WASI_IMPORT} (func (export "__wasm_call_ctors")))"#),
            format!(r#"(module {WASI_IMPORT} (func (export "_initialize") (param i32)))"#),
            r#"(module (func (export "__post_instantiate") (result i32) (i32.const 0)))"#
                .to_owned(),
            // A global of the name is no function.
            r#"(module (global (export "__post_instantiate") i32 (i32.const 0)))"#.to_owned(),
        ] {
            let (rewritten, startup) = defer_wat(&wat);
            assert!(rewritten.is_none(), "{wat}");
            assert!(startup.calls.is_empty(), "{wat}");
        }
    }

    #[test]
    fn the_start_function_and_wamrs_start_up_exports_move_to_unused_names_in_wamrs_order() {
        let (rewritten, startup) = defer_wat(&format!(
            r#"(module {WASI_IMPORT}
              (memory (export "memory") 1)
              (func $start)
              (start $start)
              (func (export "__post_instantiate"))
              (func (export "_initialize"))
              (func (export "__wasm_call_ctors"))
              (func (export "__ow_wamr_start")))"#
        ));
        let (start, exports) = loaded(&rewritten.expect("it is rewritten"));
        assert_eq!(start, None);
        assert_eq!(
            exports,
            [
                "memory",
                "__ow_wamr__post_instantiate",
                "__ow_wamr_initialize",
                // Not called: the module imports WASI.
                "__wasm_call_ctors",
                // The module's own, which the start function's export does not take.
                "__ow_wamr_start",
                "__ow_wamr_start_2",
            ]
        );
        // The start function first, then in WAMR's order (not the exports').
        assert_eq!(
            originals(&startup),
            [None, Some("_initialize"), Some("__post_instantiate")]
        );
        assert!(startup.calls("_initialize"));
        assert!(!startup.calls("__wasm_call_ctors"));
        assert_eq!(
            startup.export_name("__post_instantiate"),
            "__ow_wamr__post_instantiate"
        );
        assert_eq!(startup.export_name("__ow_wamr_start"), "__ow_wamr_start");
        // The module's exports as it wrote them.
        let reported = startup.exports(
            exports
                .into_iter()
                .map(|name| ffi::Export {
                    name,
                    signature: None,
                })
                .collect(),
        );
        let names: Vec<_> = reported.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "memory",
                "__post_instantiate",
                "_initialize",
                "__wasm_call_ctors",
                "__ow_wamr_start"
            ]
        );
    }

    #[test]
    fn a_module_exporting_nothing_gets_an_export_section_for_its_start_function() {
        let wat = r#"(module
          (func $start)
          (table 1 funcref)
          (elem (i32.const 0) $start)
          (start $start)
          (data "x")
          (@custom "kept" "bytes"))"#;
        let (rewritten, startup) = defer_wat(wat);
        let rewritten = rewritten.expect("it is rewritten");
        let (start, exports) = loaded(&rewritten);
        assert_eq!(start, None);
        assert_eq!(exports, ["__ow_wamr_start"]);
        assert_eq!(originals(&startup), [None]);
        // Every other section is copied as it is, in its place.
        let others = |wasm: &[u8]| {
            let module = Scanned::of(wasm).expect("it parses");
            module
                .sections
                .iter()
                .filter(|(id, _)| ![SectionId::Export as u8, SectionId::Start as u8].contains(id))
                .map(|(id, range)| (*id, wasm[range.clone()].to_vec()))
                .collect::<Vec<_>>()
        };
        let original = wat::parse_str(wat).expect("the test module is valid WAT");
        assert_eq!(others(&rewritten), others(&original));
    }

    #[test]
    fn bytes_that_are_no_core_module_are_refused() {
        assert!(defer(b"not wasm").is_err());
        assert!(defer(b"\0asm\x0d\0\x01\0").is_err(), "a component");
        // A truncated section, and a truncated code section.
        assert!(defer(b"\0asm\x01\0\0\0\x01\x05\x01").is_err());
        assert!(defer(b"\0asm\x01\0\0\0\x0a\x7f\x01\x02\x00\x0b").is_err());
    }
}
