//! The on-disk compiled-module cache: an engine's serialized modules, so that a restarted
//! executor serves a known action without compiling it again.
//!
//! Entries live in `<cache dir>/<engine>-<fingerprint>/<module hash>.module`, the fingerprint
//! naming the engine's version and configuration, so several engines (and several builds)
//! share one directory without ever reading each other's entries. Each entry is written to a
//! temporary file and renamed into place, and carries a BLAKE3 checksum of what it holds: a
//! truncated, corrupt or foreign entry is dropped and the module compiled again, never loaded.
//! The engine's own compatibility check runs on every entry it loads. The directory must be
//! the executor's own: whoever can write into it can make the executor load native code.

use crate::cache::{CachePolicy, CacheStats, Eviction};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// What an entry file starts with.
const MAGIC: &[u8; 8] = b"OWMODC01";
/// The magic, the payload's length (u64, little-endian) and its BLAKE3 hash.
const HEADER_BYTES: usize = 8 + 8 + 32;
/// The file name suffix of entries.
const SUFFIX: &str = ".module";

/// One engine's directory of the on-disk cache.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    policy: CachePolicy,
    /// Uses of each entry by this process, for LFU.
    uses: Mutex<HashMap<[u8; 32], u64>>,
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    rejected: AtomicU64,
    evictions: AtomicU64,
}

impl DiskCache {
    /// The cache of the engine `engine` with configuration `fingerprint` under `root`,
    /// creating its directory.
    pub fn open(
        root: &Path,
        engine: &str,
        fingerprint: &str,
        policy: CachePolicy,
    ) -> io::Result<Self> {
        let dir = root.join(format!("{engine}-{fingerprint}"));
        fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            policy,
            uses: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    /// Where this engine's entries live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the entry of `hash`.
    pub fn entry_path(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}{SUFFIX}",
            blake3::Hash::from_bytes(*hash).to_hex()
        ))
    }

    /// The serialized module of `hash`, if a whole entry with a matching checksum is there.
    /// A damaged entry is removed (and counted as rejected).
    pub fn read(&self, hash: &[u8; 32]) -> Option<Vec<u8>> {
        let path = self.entry_path(hash);
        let Ok(bytes) = fs::read(&path) else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match payload_of(&bytes) {
            Some(payload) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                *self
                    .uses
                    .lock()
                    .expect("uses lock")
                    .entry(*hash)
                    .or_default() += 1;
                // The entry's modification time is its last use, for LRU and the TTL.
                if let Ok(file) = fs::File::options().write(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Some(payload.to_vec())
            }
            None => {
                tracing::warn!(path = %path.display(), "a damaged module cache entry was dropped");
                self.reject(hash);
                None
            }
        }
    }

    /// Drops the entry of `hash`: it is damaged, or the engine refused to load it.
    pub fn reject(&self, hash: &[u8; 32]) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let _ = fs::remove_file(self.entry_path(hash));
    }

    /// Stores the serialized module of `hash` (atomically: a reader sees the whole entry or
    /// none), then lets go what the policy no longer allows.
    pub fn write(&self, hash: &[u8; 32], payload: &[u8]) -> io::Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(&entry_header(payload))?;
        file.write_all(payload)?;
        file.as_file().sync_data()?;
        file.persist(self.entry_path(hash)).map_err(|e| e.error)?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.enforce(hash);
        Ok(())
    }

    /// What the cache holds and did.
    pub fn stats(&self) -> CacheStats {
        let entries = self.entries();
        CacheStats {
            entries: entries.len(),
            bytes: entries.iter().map(|entry| entry.bytes).sum(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            loads: self.writes.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// Entries dropped as damaged or refused by the engine.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Lets go entries past the time to live, then, while over a size limit, the entry the
    /// policy puts first (never `keep`, just written).
    fn enforce(&self, keep: &[u8; 32]) {
        let now = SystemTime::now();
        let mut entries = self.entries();
        let keep_path = self.entry_path(keep);
        let uses = self.uses.lock().expect("uses lock").clone();
        if let Some(ttl) = self.policy.ttl {
            entries.retain(|entry| {
                let fresh = age(now, entry.used) < ttl || entry.path == keep_path;
                if !fresh {
                    self.evict(&entry.path);
                }
                fresh
            });
        }
        // Oldest (or least used) last, so that evicting pops from the end.
        entries.sort_by_key(|entry| {
            let used = uses.get(&entry.hash).copied().unwrap_or(0);
            let order = match self.policy.eviction {
                Eviction::Lru => 0,
                Eviction::Lfu => used,
            };
            std::cmp::Reverse((order, entry.used))
        });
        let mut bytes: u64 = entries.iter().map(|entry| entry.bytes).sum();
        while entries.len() > self.policy.max_entries || bytes > self.policy.max_bytes {
            let Some(position) = entries.iter().rposition(|entry| entry.path != keep_path) else {
                break;
            };
            let victim = entries.remove(position);
            bytes -= victim.bytes;
            self.evict(&victim.path);
        }
    }

    fn evict(&self, path: &Path) {
        if fs::remove_file(path).is_ok() {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every entry file, with its size and last use.
    fn entries(&self) -> Vec<DiskEntry> {
        let Ok(listing) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        listing
            .filter_map(Result::ok)
            .filter_map(|file| {
                let path = file.path();
                let stem = path.file_name()?.to_str()?.strip_suffix(SUFFIX)?;
                let hash = *blake3::Hash::from_hex(stem).ok()?.as_bytes();
                let metadata = file.metadata().ok()?;
                Some(DiskEntry {
                    hash,
                    bytes: metadata.len(),
                    used: metadata.modified().ok()?,
                    path,
                })
            })
            .collect()
    }
}

struct DiskEntry {
    path: PathBuf,
    hash: [u8; 32],
    bytes: u64,
    used: SystemTime,
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// The header of the entry holding `payload`: the magic, its length and its checksum.
pub fn entry_header(payload: &[u8]) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_BYTES);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(blake3::hash(payload).as_bytes());
    header
}

/// The payload of a whole entry whose checksum matches.
fn payload_of(bytes: &[u8]) -> Option<&[u8]> {
    let (header, payload) = bytes.split_at_checked(HEADER_BYTES)?;
    let (magic, rest) = header.split_at(MAGIC.len());
    let (len, checksum) = rest.split_at(8);
    let len = u64::from_le_bytes(len.try_into().ok()?);
    (magic == MAGIC && payload.len() as u64 == len && blake3::hash(payload).as_bytes() == checksum)
        .then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(root: &Path, policy: CachePolicy) -> DiskCache {
        DiskCache::open(root, "engine", "v1", policy).unwrap()
    }

    #[test]
    fn an_entry_reads_back_whole_and_a_damaged_one_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let cache = cache(root.path(), CachePolicy::default());
        assert_eq!(cache.read(&[1; 32]), None);
        cache.write(&[1; 32], b"compiled code").unwrap();
        assert_eq!(cache.read(&[1; 32]).as_deref(), Some(&b"compiled code"[..]));

        let path = cache.entry_path(&[1; 32]);
        for damage in [
            |bytes: &mut Vec<u8>| bytes.truncate(bytes.len() - 1),
            |bytes: &mut Vec<u8>| *bytes.last_mut().unwrap() ^= 1,
            |bytes: &mut Vec<u8>| bytes[0] = b'X',
        ] {
            cache.write(&[1; 32], b"compiled code").unwrap();
            let mut bytes = fs::read(&path).unwrap();
            damage(&mut bytes);
            fs::write(&path, bytes).unwrap();
            assert_eq!(cache.read(&[1; 32]), None);
            assert!(!path.exists(), "the damaged entry is gone");
        }
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, cache.rejected()), (1, 1, 3));
    }

    #[test]
    fn engines_and_configurations_keep_apart() {
        let root = tempfile::tempdir().unwrap();
        let one = DiskCache::open(root.path(), "wasmtime", "a", CachePolicy::default()).unwrap();
        let other = DiskCache::open(root.path(), "wasmer", "a", CachePolicy::default()).unwrap();
        let newer = DiskCache::open(root.path(), "wasmtime", "b", CachePolicy::default()).unwrap();
        one.write(&[7; 32], b"wasmtime code").unwrap();
        assert_eq!(other.read(&[7; 32]), None);
        assert_eq!(newer.read(&[7; 32]), None);
        assert!(one.read(&[7; 32]).is_some());
    }

    #[test]
    fn the_policy_bounds_entries_and_bytes_and_lfu_keeps_the_often_used() {
        let root = tempfile::tempdir().unwrap();
        let by_count = cache(
            root.path(),
            CachePolicy {
                max_entries: 2,
                eviction: Eviction::Lfu,
                ..CachePolicy::default()
            },
        );
        by_count.write(&[1; 32], b"one").unwrap();
        by_count.write(&[2; 32], b"two").unwrap();
        for _ in 0..3 {
            by_count.read(&[1; 32]).unwrap();
        }
        by_count.write(&[3; 32], b"three").unwrap();
        assert!(by_count.read(&[1; 32]).is_some(), "the often used stays");
        assert!(by_count.read(&[2; 32]).is_none(), "the least used went");
        assert!(by_count.read(&[3; 32]).is_some(), "the new one stays");
        assert_eq!(by_count.stats().evictions, 1);

        let root = tempfile::tempdir().unwrap();
        let by_bytes = cache(
            root.path(),
            CachePolicy {
                max_bytes: 2 * (HEADER_BYTES as u64 + 10),
                ..CachePolicy::default()
            },
        );
        for key in 1..=3 {
            by_bytes.write(&[key; 32], &[key; 10]).unwrap();
        }
        assert_eq!(by_bytes.stats().entries, 2);
        assert!(by_bytes.read(&[3; 32]).is_some());
    }
}
