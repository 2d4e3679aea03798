//! The compiled-module cache: identical module bytes (by content hash) are compiled or
//! deserialized once and shared by every action that uses them. A module stays while an action
//! holds it, and the most recently prepared ones stay a while longer, so preparing the same
//! code again (a new container after a destroy, an idle action woken up) costs no compile.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Compiled modules of type `M` by the BLAKE3 hash of their bytes.
#[derive(Debug)]
pub struct ModuleCache<M> {
    /// Every module some action or [`ModuleCache::recent`] holds.
    modules: Mutex<HashMap<[u8; 32], Weak<M>>>,
    /// The most recently prepared modules, newest first, at most `kept`.
    recent: Mutex<VecDeque<Arc<M>>>,
    kept: usize,
    /// How many modules were loaded (compiled or deserialized) rather than found.
    loads: AtomicU64,
}

impl<M> ModuleCache<M> {
    /// An empty cache that keeps the `kept` most recently prepared modules after their actions
    /// are gone.
    pub fn new(kept: usize) -> Self {
        Self {
            modules: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
            kept,
            loads: AtomicU64::new(0),
        }
    }

    /// The module of `hash`, from the cache or from `load`. Two loads of new code may race:
    /// the first to finish is the one kept and returned to both.
    pub fn get_or_load<E>(
        &self,
        hash: &[u8; 32],
        load: impl FnOnce() -> Result<M, E>,
    ) -> Result<Arc<M>, E> {
        if let Some(module) = self.lock().get(hash).and_then(Weak::upgrade) {
            return Ok(module);
        }
        let module = load()?;
        self.loads.fetch_add(1, Ordering::Relaxed);
        let mut modules = self.lock();
        modules.retain(|_, module| module.strong_count() > 0);
        Ok(match modules.get(hash).and_then(Weak::upgrade) {
            Some(first) => first,
            None => {
                let module = Arc::new(module);
                modules.insert(*hash, Arc::downgrade(&module));
                module
            }
        })
    }

    /// Makes `module` the most recently prepared one, letting the oldest kept one go. Only
    /// code that prepared is kept: refused code is not.
    pub fn keep_recent(&self, module: &Arc<M>) {
        let mut recent = self.recent.lock().expect("recent modules lock");
        recent.retain(|kept| !Arc::ptr_eq(kept, module));
        recent.push_front(module.clone());
        recent.truncate(self.kept);
    }

    /// How many distinct modules are loaded and held by an action or kept as recent.
    pub fn len(&self) -> usize {
        let mut modules = self.lock();
        modules.retain(|_, module| module.strong_count() > 0);
        modules.len()
    }

    /// Whether no module is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times a module was loaded rather than found in the cache.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Weak<M>>> {
        self.modules.lock().expect("module cache lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(cache: &ModuleCache<String>, key: u8) -> Arc<String> {
        cache
            .get_or_load::<()>(&[key; 32], || Ok(format!("module {key}")))
            .unwrap()
    }

    #[test]
    fn modules_are_shared_while_held_and_the_most_recent_outlive_their_actions() {
        let cache = ModuleCache::new(1);
        let first = load(&cache, 1);
        let second = load(&cache, 1);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!((cache.loads(), cache.len()), (1, 1));
        cache.keep_recent(&first);
        let other = load(&cache, 2);
        cache.keep_recent(&other);
        assert_eq!((cache.loads(), cache.len()), (2, 2));
        drop((first, second, other));
        // Only the most recent (2) outlives its actions.
        assert_eq!(cache.len(), 1);
        load(&cache, 2);
        assert_eq!(cache.loads(), 2, "2 came from the cache");
        load(&cache, 1);
        assert_eq!(cache.loads(), 3, "1 was loaded anew");
    }

    #[test]
    fn a_failed_load_is_not_cached() {
        let cache = ModuleCache::<String>::new(4);
        assert_eq!(cache.get_or_load(&[0; 32], || Err("bad")), Err("bad"));
        assert_eq!((cache.loads(), cache.len()), (0, 0));
    }
}
