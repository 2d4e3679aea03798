//! How much a compiled-module cache keeps ([`CachePolicy`]) and what it did ([`CacheStats`]):
//! the settings an operator gives every engine's caches, in memory and on disk.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which unused entries a full cache lets go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eviction {
    /// The least recently used.
    #[default]
    Lru,
    /// The least often used (the least recently used among equals).
    Lfu,
}

impl FromStr for Eviction {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "lru" => Ok(Self::Lru),
            "lfu" => Ok(Self::Lfu),
            _ => Err(format!("{text:?} is no cache policy; use lru or lfu")),
        }
    }
}

impl fmt::Display for Eviction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lru => "lru",
            Self::Lfu => "lfu",
        })
    }
}

/// How much a cache keeps. Entries in use are never evicted, whatever the limits say. The
/// defaults are the in-memory cache's; [`CachePolicy::on_disk`] gives the on-disk cache's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// The most entries kept. Default 128 (on disk 1024).
    pub max_entries: usize,
    /// The most bytes kept (of module code). Default 1 GiB (on disk 4 GiB).
    pub max_bytes: u64,
    /// How long an unused entry is kept after its last use; `None` keeps it until the size
    /// limits need its room. Default none.
    pub ttl: Option<Duration>,
    /// Which unused entries go first. Default LRU.
    pub eviction: Eviction,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            max_entries: 128,
            max_bytes: 1024 * 1024 * 1024,
            ttl: None,
            eviction: Eviction::Lru,
        }
    }
}

impl CachePolicy {
    /// The on-disk cache's defaults: an entry there costs a file rather than memory, so it
    /// keeps more, enough that a restart finds every action of a busy machine compiled.
    pub fn on_disk() -> Self {
        Self {
            max_entries: 1024,
            max_bytes: 4 * 1024 * 1024 * 1024,
            ..Self::default()
        }
    }
}

/// What a cache did so far, for operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries held now.
    pub entries: usize,
    /// Bytes of module code held now.
    pub bytes: u64,
    /// Lookups that found their module.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Modules loaded (compiled or deserialized) after a miss.
    pub loads: u64,
    /// Entries let go by the policy.
    pub evictions: u64,
}
