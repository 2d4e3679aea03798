//! Builds every example action of `ow-wasm-action` for `wasm32-wasip1` (and `hash` once more
//! with Wasm SIMD) and every `.wat` test module, then generates one constant per module path and
//! the `foreach_action!` macro.
//!
//! The guest build is a nested `cargo build` into its own target directory, so the host build's
//! flags (coverage, sanitizers) never leak into the guests and no manual step is needed.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const GUEST_TARGET: &str = "wasm32-wasip1";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let sdk_dir = manifest_dir
        .parent()
        .expect("artifacts live inside ow-wasm-action");
    let workspace_dir = sdk_dir
        .parent()
        .expect("ow-wasm-action lives in the workspace");

    let examples = example_names(&sdk_dir.join("examples"));
    let guest_dir = build_examples(
        workspace_dir,
        &out_dir.join("guest-target"),
        &["--examples"],
    );
    // The same `hash`, with BLAKE3's Wasm SIMD code in place of its portable code: what a user
    // who builds with `simd128` gets, and the fair match for the native build, which uses the
    // host's SIMD.
    let simd_dir = build_examples(
        workspace_dir,
        &out_dir.join("guest-target-simd128"),
        &["--example", "hash", "--features", "blake3/wasm32_simd"],
    );
    let wat_modules = build_wat_modules(&manifest_dir.join("wat"), &out_dir);

    let mut generated = String::new();
    for name in &examples {
        let doc = format!("The `{name}` example action, built for `{GUEST_TARGET}`.");
        emit_module(&mut generated, &guest_dir, name, &name.to_uppercase(), &doc);
    }
    emit_module(
        &mut generated,
        &simd_dir,
        "hash",
        "HASH_SIMD128",
        "The `hash` example built with BLAKE3's Wasm SIMD (`simd128`) code: same answers as \
         [`HASH`], for engines that run Wasm SIMD.",
    );
    generated.push_str(
        "\n/// Every example action, `(name, path)`.\npub const EXAMPLES: &[(&str, &str)] = &[\n",
    );
    for name in &examples {
        writeln!(generated, "    ({name:?}, {}),", name.to_uppercase()).unwrap();
    }
    generated.push_str("];\n");
    generated.push_str("\n/// Test modules written in WebAssembly text, one per hostile or odd case.\npub mod wat {\n");
    for (name, path) in &wat_modules {
        writeln!(
            generated,
            "    /// `wat/{name}.wat`, compiled.\n    pub const {}: &str = {:?};",
            name.to_uppercase(),
            path.display().to_string()
        )
        .unwrap();
    }
    generated.push_str("}\n\n");
    generated.push_str(
        "/// Calls `$mac!(name)` for every example action, so a test suite can require a test \
         per example.\n#[macro_export]\nmacro_rules! foreach_action {\n    ($mac:ident) => {\n",
    );
    for name in &examples {
        writeln!(generated, "        $mac!({name});").unwrap();
    }
    generated.push_str("    };\n}\n");
    fs::write(out_dir.join("artifacts.rs"), generated).expect("OUT_DIR is writable");

    for watched in ["examples", "src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", sdk_dir.join(watched).display());
    }
    for watched in ["src", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace_dir.join("ow-common").join(watched).display()
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("wat").display()
    );
}

/// Every `examples/*.rs` of the SDK, sorted.
fn example_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Runs a nested guest build of the examples `selection` names into `target_dir`; returns the
/// directory holding the example modules.
fn build_examples(workspace_dir: &Path, target_dir: &Path, selection: &[&str]) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace_dir)
        .args(["build", "--release", "--package", "ow-wasm-action"])
        .args(selection)
        .arg(format!("--target={GUEST_TARGET}"))
        .arg("--target-dir")
        .arg(target_dir)
        // Small modules without debug info, whatever the workspace's release profile says.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    // The host build's flags (coverage, sanitizers, a wrapper) are not the guests' business.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the guest build: {e}"));
    assert!(
        status.success(),
        "the guest build failed ({status}); is the {GUEST_TARGET} target installed? \
         (`rustup target add {GUEST_TARGET}`)"
    );
    target_dir
        .join(GUEST_TARGET)
        .join("release")
        .join("examples")
}

/// Appends to `generated` the constant `constant`, documented by `doc`: the path of example
/// `name` as built into `dir`, whose sources cargo then watches.
fn emit_module(generated: &mut String, dir: &Path, name: &str, constant: &str, doc: &str) {
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.is_file(), "cargo did not produce {}", path.display());
    emit_dep_info(&dir.join(format!("{name}.d")));
    writeln!(
        generated,
        "/// {doc}\npub const {constant}: &str = {:?};",
        path.display().to_string()
    )
    .unwrap();
}

/// Tells cargo to rerun this script when any source file a guest was built from changes.
fn emit_dep_info(dep_file: &Path) {
    let Ok(contents) = fs::read_to_string(dep_file) else {
        return;
    };
    for line in contents.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        // Paths are space separated; a space inside a path is escaped as `\ `.
        let deps = deps.replace("\\ ", "\u{0}");
        for dep in deps.split_whitespace() {
            println!("cargo:rerun-if-changed={}", dep.replace('\u{0}', " "));
        }
    }
}

/// Compiles every `wat/*.wat` to `OUT_DIR/wat/*.wasm`; returns `(name, path)` pairs, sorted.
fn build_wat_modules(dir: &Path, out_dir: &Path) -> Vec<(String, PathBuf)> {
    let wasm_dir = out_dir.join("wat");
    fs::create_dir_all(&wasm_dir).expect("OUT_DIR is writable");
    let mut modules = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
    {
        let path = entry.expect("readable directory entry").path();
        if path.extension().is_none_or(|ext| ext != "wat") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let wasm = wat::parse_file(&path)
            .unwrap_or_else(|e| panic!("{} is not valid WAT: {e}", path.display()));
        let wasm_path = wasm_dir.join(format!("{name}.wasm"));
        fs::write(&wasm_path, wasm).expect("OUT_DIR is writable");
        println!("cargo:rerun-if-changed={}", path.display());
        modules.push((name, wasm_path));
    }
    modules.sort();
    modules
}
