//! `--precache DIR`: compiles the modules of a directory into an engine's caches at start,
//! before the executor serves, so that the first cold start of each is a cache hit rather
//! than a compile. Every `.wasm` file and every zip (holding a module, chosen as an action's
//! zip entry is) under the directory and its subdirectories is taken; a file that cannot be
//! read, decoded or compiled is reported with the reason and skipped, and the executor serves
//! all the same.

use anyhow::Context as _;
use ow_common::abi::DEFAULT_MAIN;
use ow_common::code::decode_code_bytes;
use ow_common::runtime::WasmRuntime;
use std::fs;
use std::path::{Path, PathBuf};

/// The extensions of the files pre-caching takes (compared without case).
const EXTENSIONS: &[&str] = &["wasm", "zip"];

/// The files of a pre-cache directory, found before anything is compiled.
#[derive(Debug)]
pub struct Precache {
    dir: PathBuf,
    files: Vec<PathBuf>,
    /// Subdirectories that could not be listed, and why.
    unreadable: Vec<(PathBuf, String)>,
}

/// What a pre-cache run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrecacheReport {
    /// Files compiled (or found already cached) into the engine's caches.
    pub cached: usize,
    /// Files (and subdirectories) skipped because they could not be read or compiled.
    pub refused: usize,
    /// Pre-cached modules the memory cache let go again for want of room.
    pub evicted: u64,
}

/// Hears about each file as a pre-cache run goes; every method does nothing by default.
pub trait PrecacheProgress {
    /// The run starts, with this many files (and unreadable subdirectories) to go through.
    fn started(&self, _files: usize) {}
    /// The module of `path` is being compiled.
    fn compiling(&self, _path: &Path) {}
    /// The module of `path` is in the engine's caches.
    fn cached(&self, _path: &Path) {}
    /// `path` was skipped; `why` is a sentence.
    fn refused(&self, _path: &Path, _why: &str) {}
}

/// A run nobody watches (runtime mode prints nothing of its own); what it skips still goes
/// to the executor's diagnostics.
#[derive(Debug)]
pub struct Unwatched;

impl PrecacheProgress for Unwatched {}

impl Precache {
    /// Lists the `.wasm` files and zips under `dir`, in name order. Fails, with a sentence,
    /// only when `dir` itself is no directory the executor can read.
    pub fn find(dir: &Path) -> anyhow::Result<Self> {
        let top = fs::read_dir(dir).with_context(|| {
            format!(
                "--precache {} is not a directory the executor can read; give it a directory of \
                 .wasm files and action zips",
                dir.display()
            )
        })?;
        let mut precache = Self {
            dir: dir.to_owned(),
            files: Vec::new(),
            unreadable: Vec::new(),
        };
        let mut listings = vec![(dir.to_owned(), Ok(top))];
        while let Some((listed, listing)) = listings.pop() {
            let listing = match listing {
                Ok(listing) => listing,
                Err(error) => {
                    let why = format!("The directory cannot be listed: {error}.");
                    precache.unreadable.push((listed, why));
                    continue;
                }
            };
            for entry in listing.filter_map(Result::ok) {
                let path = entry.path();
                // A symlink to a directory is not followed: it could lead back up the tree.
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    let listing = fs::read_dir(&path);
                    listings.push((path, listing));
                } else if wanted(&path) && path.is_file() {
                    precache.files.push(path);
                }
            }
        }
        precache.files.sort();
        precache.unreadable.sort();
        Ok(precache)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Compiles every file into `engine`'s caches, one after the other (a compile already
    /// uses every core), telling `progress` about each.
    pub async fn run(
        self,
        engine: &dyn WasmRuntime,
        progress: &dyn PrecacheProgress,
    ) -> PrecacheReport {
        let mut report = PrecacheReport::default();
        let evictions_before = engine.stats().memory_cache.evictions;
        progress.started(self.files.len() + self.unreadable.len());
        let mut refuse = |path: &Path, why: &str| {
            tracing::warn!(path = %path.display(), why, "a module was not pre-cached");
            progress.refused(path, why);
            report.refused += 1;
        };
        for (dir, why) in &self.unreadable {
            refuse(dir, why);
        }
        let mut cached = 0;
        for path in &self.files {
            progress.compiling(path);
            match precache_file(engine, path).await {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "pre-cached");
                    progress.cached(path);
                    cached += 1;
                }
                Err(why) => refuse(path, &why),
            }
        }
        report.cached = cached;
        report.evicted = engine.stats().memory_cache.evictions - evictions_before;
        tracing::info!(
            dir = %self.dir.display(),
            cached = report.cached,
            refused = report.refused,
            evicted = report.evicted,
            "pre-cached"
        );
        report
    }
}

/// Whether `path` names a file pre-caching takes.
fn wanted(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            EXTENSIONS
                .iter()
                .any(|wanted| wanted.eq_ignore_ascii_case(extension))
        })
}

/// Reads, decodes and compiles one file; why not, as a sentence.
async fn precache_file(engine: &dyn WasmRuntime, path: &Path) -> Result<(), String> {
    // Read in place: nothing is served yet that the read could hold up.
    let bytes = fs::read(path).map_err(|error| format!("The file cannot be read: {error}."))?;
    // A zip's module is the entry an action with OpenWhisk's default `main` would run.
    let code = decode_code_bytes(bytes, DEFAULT_MAIN).map_err(|error| error.to_string())?;
    engine
        .precache(code)
        .await
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_and_zips_are_found_in_every_subdirectory_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("team/nested")).unwrap();
        for file in [
            "a.wasm",
            "notes.txt",
            "team/b.ZIP",
            "team/nested/c.wasm",
            "team/nested/c.wasm.bak",
        ] {
            fs::write(root.join(file), b"").unwrap();
        }
        fs::create_dir(root.join("looks-like.wasm")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root, root.join("team/loop")).unwrap();
        let found = Precache::find(root).unwrap();
        let relative: Vec<&Path> = found
            .files
            .iter()
            .map(|file| file.strip_prefix(root).unwrap())
            .collect();
        assert_eq!(
            relative,
            [
                Path::new("a.wasm"),
                Path::new("team/b.ZIP"),
                Path::new("team/nested/c.wasm")
            ]
        );
        assert!(found.unreadable.is_empty());

        let missing = Precache::find(&root.join("missing")).unwrap_err();
        let sentence = format!("{missing:#}");
        assert!(
            sentence.starts_with(&format!(
                "--precache {} is not a directory the executor can read",
                root.join("missing").display()
            )),
            "{sentence}"
        );
        assert!(
            Precache::find(&root.join("a.wasm")).is_err(),
            "a file is no directory"
        );
    }
}
