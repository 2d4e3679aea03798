//! The actions the measurements run and the bodies that carry them: the example modules of
//! `ow-wasm-action-artifacts`, distinct copies of one module (renamed, so the executor's
//! content-hash cache sees new code, precompiled or not), a synthetic large module, and the
//! `/init` and `/run` bodies of OpenWhisk's action protocol.

use crate::Setup;
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// A warm action to load: its module and the parameters of each activation.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Its name in tables (`add`, `hash`, …).
    pub name: &'static str,
    /// Which guest ABI the module speaks (`sdk`, `stdio`).
    pub abi: &'static str,
    /// The path of the module.
    pub module: &'static str,
    /// The path of the same action built with Wasm SIMD, if it has such a build.
    pub simd_module: Option<&'static str>,
    /// The parameters of each activation.
    pub params: Value,
}

impl Workload {
    /// The module an engine runs: the SIMD build where there is one and the engine runs Wasm
    /// SIMD (as the `native` baseline uses the host's SIMD), else the portable one.
    pub fn module_on(&self, runs_wasm_simd: bool) -> &'static str {
        match self.simd_module {
            Some(simd) if runs_wasm_simd => simd,
            _ => self.module,
        }
    }

    /// For a report's notes, if the workload has a SIMD build: which build each engine of
    /// `setup` runs.
    pub fn builds_note(&self, setup: &Setup) -> Option<String> {
        self.simd_module?;
        let (simd, portable): (Vec<&str>, Vec<&str>) = setup
            .engines
            .iter()
            .map(String::as_str)
            .partition(|engine| setup.runs_wasm_simd(engine));
        let mut note = format!("`{}` runs its Wasm SIMD (simd128) build", self.name);
        if !simd.is_empty() {
            note += &format!(" on {}", simd.join(", "));
        }
        note += ", as the native baseline uses the host's SIMD";
        if !portable.is_empty() {
            note += &format!(
                "; its portable build on {}, which runs no Wasm SIMD",
                portable.join(", ")
            );
        }
        Some(note + ".")
    }
}

/// The workload called `name`.
pub fn workload(name: &str) -> anyhow::Result<Workload> {
    Ok(match name {
        "add" => Workload {
            name: "add",
            abi: "sdk",
            module: artifacts::ADD,
            simd_module: None,
            params: json!({"param1": 2, "param2": 2}),
        },
        "echo" => Workload {
            name: "echo",
            abi: "sdk",
            module: artifacts::ECHO,
            simd_module: None,
            params: json!({"payload": "x".repeat(256)}),
        },
        "stdio_add" => Workload {
            name: "stdio_add",
            abi: "stdio",
            module: artifacts::STDIO_ADD,
            simd_module: None,
            params: json!({"param1": 2, "param2": 2}),
        },
        "hash" => Workload {
            name: "hash",
            abi: "sdk",
            module: artifacts::HASH,
            simd_module: Some(artifacts::HASH_SIMD128),
            params: json!({"iterations": 100}),
        },
        "sleep" => Workload {
            name: "sleep",
            abi: "sdk",
            module: artifacts::SLEEP,
            simd_module: None,
            params: json!({"ms": 300}),
        },
        "log" => Workload {
            name: "log",
            abi: "sdk",
            module: artifacts::LOG,
            simd_module: None,
            params: json!({"lines": 5}),
        },
        other => anyhow::bail!(
            "there is no workload {other}; use add, echo, stdio_add, hash, sleep or log"
        ),
    })
}

/// `wasm` named `ow-evaluation-<tag>` in its name section: the same code, other bytes, so
/// another content hash, for the module and for every engine's artifact of it. (A custom
/// section of our own would do for the module, but the engines drop unknown custom sections
/// when they precompile, which left every "distinct" precompiled copy the same artifact.)
pub fn distinct(wasm: &[u8], tag: u64) -> Vec<u8> {
    let name = format!("ow-evaluation-{tag}");
    let mut module_name = leb128(name.len() as u64);
    module_name.extend_from_slice(name.as_bytes());
    let mut named = leb128(4);
    named.extend_from_slice(b"name");
    named.push(0); // the module-name subsection, which comes first
    named.extend(leb128(module_name.len() as u64));
    named.extend(module_name);
    let mut module = wasm[..8].to_vec();
    let mut sections = &wasm[8..];
    let mut renamed = false;
    while let Some((&id, rest)) = sections.split_first() {
        let (size, rest) = read_leb128(rest);
        let (body, next) = rest.split_at(size);
        match name_subsections(id, body) {
            Some(subsections) if !renamed => {
                // Keep the other subsections (function names, …), without the old module name.
                let others = match subsections.split_first() {
                    Some((0, old)) => {
                        let (size, old) = read_leb128(old);
                        &old[size..]
                    }
                    _ => subsections,
                };
                named.extend_from_slice(others);
                renamed = true;
            }
            _ => {
                module.push(id);
                module.extend(leb128(size as u64));
                module.extend_from_slice(body);
            }
        }
        sections = next;
    }
    module.push(0); // custom section
    module.extend(leb128(named.len() as u64));
    module.extend(named);
    module
}

/// The subsections of `body` when it is the body of the custom section `name`.
fn name_subsections(id: u8, body: &[u8]) -> Option<&[u8]> {
    if id != 0 {
        return None;
    }
    let (size, rest) = read_leb128(body);
    let (custom_name, subsections) = rest.split_at(size);
    (custom_name == b"name").then_some(subsections)
}

/// An unsigned LEB128 number at the start of `bytes`, and the bytes after it.
fn read_leb128(bytes: &[u8]) -> (usize, &[u8]) {
    let mut value = 0;
    for (at, byte) in bytes.iter().enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * at);
        if byte & 0x80 == 0 {
            return (value, &bytes[at + 1..]);
        }
    }
    panic!("a LEB128 number runs past the end of the module")
}

fn leb128(mut value: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(byte);
            return bytes;
        }
        bytes.push(byte | 0x80);
    }
}

/// An SDK-ABI module of about `size` bytes that answers `{"ok":true}`: functions of integer
/// arithmetic, every one of them in a table, so every engine compiles (or loads) them all.
pub fn large_module(size: usize) -> Vec<u8> {
    // About 5 bytes per (i32.const, i32.add|xor|mul) step, 40 steps per function.
    let functions = (size / 215).max(1);
    let mut wat = String::from(
        "(module\n  (memory (export \"memory\") 1)\n  (data (i32.const 1024) \"{\\22ok\\22:true}\")\n",
    );
    let _ = writeln!(wat, "  (table {functions} funcref)");
    wat.push_str("  (elem (i32.const 0)");
    for f in 0..functions {
        let _ = write!(wat, " $f{f}");
    }
    wat.push_str(")\n");
    wat.push_str(
        "  (func (export \"__ow_alloc\") (param i32) (result i32) (i32.const 2048))\n  \
         (func (export \"__ow_main\") (param i32 i32) (result i64)\n    \
         (drop (call_indirect (param i32) (result i32) (local.get 1) (i32.const 0)))\n    \
         (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 11)))\n",
    );
    for f in 0..functions {
        let _ = write!(wat, "  (func $f{f} (param i32) (result i32) (local.get 0)");
        for step in 0..40u64 {
            let constant = (f as u64 * 40 + step) * 2_654_435_761 % 1_000_003;
            let op = ["i32.add", "i32.xor", "i32.mul"][(step % 3) as usize];
            let _ = write!(wat, " (i32.const {constant}) ({op})");
        }
        wat.push_str(")\n");
    }
    wat.push_str(")\n");
    wat::parse_str(&wat).expect("the generated module is valid WAT")
}

/// `wasm` zipped as an action archive.
pub fn zip(wasm: &[u8]) -> anyhow::Result<Vec<u8>> {
    Ok(ow_common::code::zip_module("action.wasm", wasm)?)
}

/// The `/init` body of an action archive (a zip), as the invoker sends it.
pub fn init_body(archive: &[u8]) -> Value {
    json!({"value": {
        "name": "action",
        "main": "main",
        "binary": true,
        "code": ow_common::code::encode_base64(archive),
        "env": {},
    }})
}

/// The `/run` body of an activation with `params`.
pub fn run_body(params: &Value) -> Value {
    json!({
        "value": params,
        "namespace": "guest",
        "action_name": "/guest/action",
        "action_version": "0.0.1",
        "activation_id": "0123456789abcdef0123456789abcdef",
        "transaction_id": "ow-evaluation",
    })
}

/// The module bytes at `path`.
pub fn read(path: &str) -> Vec<u8> {
    artifacts::read(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_copies_are_other_code_for_the_cache_and_once_precompiled() {
        let add = read(artifacts::ADD);
        let (a, b) = (distinct(&add, 1), distinct(&add, 2));
        assert_ne!(a, b);
        for module in [&a, &b] {
            assert_eq!(
                ow_common::code::ModuleFormat::sniff(module),
                ow_common::code::ModuleFormat::CoreModule
            );
        }
        // Precompiling drops unknown custom sections but keeps the module's name, which
        // Wasmtime reads from the name section: the copies stay two artifacts.
        let tiny = wat::parse_str("(module)").unwrap();
        let artifact = |tag| {
            ow_precompiler::package(ow_precompiler::Target::Wasmtime, &distinct(&tiny, tag))
                .unwrap()
                .0
        };
        assert_ne!(artifact(1), artifact(2));
    }

    #[test]
    fn a_distinct_copy_renames_the_module_and_keeps_its_other_names() {
        let contains =
            |module: &[u8], text: &[u8]| module.windows(text.len()).any(|window| window == text);
        let named = wat::parse_str("(module $old (func $kept))").unwrap();
        assert!(contains(&named, b"old") && contains(&named, b"kept"));
        let renamed = distinct(&named, 300);
        assert!(contains(&renamed, b"ow-evaluation-300"));
        assert!(!contains(&renamed, b"old"));
        assert!(contains(&renamed, b"kept"));
        // A module without a name section gets one, with the name alone.
        let tiny = wat::parse_str("(module)").unwrap();
        let mut expected = tiny.clone();
        expected.extend([0, 25, 4]);
        expected.extend(b"name");
        expected.extend([0, 18, 17]);
        expected.extend(b"ow-evaluation-300");
        assert_eq!(distinct(&tiny, 300), expected);
    }

    #[test]
    fn leb128_encodes_seven_bits_a_byte() {
        assert_eq!(leb128(0), [0]);
        assert_eq!(leb128(127), [127]);
        assert_eq!(leb128(128), [0x80, 1]);
        assert_eq!(leb128(300), [0xac, 2]);
    }

    #[test]
    fn the_large_module_is_about_the_size_asked() {
        let module = large_module(300 * 1024);
        let size = module.len();
        assert!(
            (200 * 1024..450 * 1024).contains(&size),
            "{size} bytes for 300 KiB"
        );
        assert!(large_module(1).len() < 2048);
    }

    #[test]
    fn bodies_follow_the_action_protocol() {
        let init = init_body(b"PK");
        assert_eq!(init["value"]["binary"], true);
        assert_eq!(init["value"]["code"], "UEs=");
        assert_eq!(run_body(&json!({"a": 1}))["value"], json!({"a": 1}));
    }

    #[test]
    fn every_workload_names_a_built_module() {
        for name in ["add", "echo", "stdio_add", "hash", "sleep", "log"] {
            let workload = workload(name).unwrap();
            assert!(std::path::Path::new(workload.module).is_file(), "{name}");
            if let Some(simd) = workload.simd_module {
                assert!(std::path::Path::new(simd).is_file(), "{name}");
            }
        }
        assert!(workload("nope").is_err());
    }

    #[test]
    fn hash_runs_its_simd_build_on_engines_that_run_simd() {
        let hash = workload("hash").unwrap();
        assert_eq!(hash.module_on(true), artifacts::HASH_SIMD128);
        assert_eq!(hash.module_on(false), artifacts::HASH);
        let add = workload("add").unwrap();
        assert_eq!(add.module_on(true), artifacts::ADD);
        assert_eq!(add.module_on(false), artifacts::ADD);
        let setup = Setup {
            executor: "ow-executor".into(),
            engines: vec!["wasmtime".into(), "wasmer".into(), "wamr".into()],
            wasm_simd_engines: vec!["wasmtime".into(), "wasmer".into()],
            evaluation: "ow-evaluation".into(),
            native_action: "ow-native-action".into(),
            out_dir: "out".into(),
        };
        assert_eq!(
            hash.builds_note(&setup).unwrap(),
            "`hash` runs its Wasm SIMD (simd128) build on wasmtime, wasmer, as the native \
             baseline uses the host's SIMD; its portable build on wamr, which runs no Wasm SIMD."
        );
        assert_eq!(add.builds_note(&setup), None);
    }
}
