//! The compiled-module cache: identical module bytes (by content hash) are compiled or
//! deserialized once and shared by every action that uses them. A module stays while an action
//! holds it; the others stay as long as the cache's [`CachePolicy`] lets them (a size in
//! entries and bytes, a time to live, and which go first when the cache is full), so
//! preparing the same code again (a new container after a destroy, an idle action woken up)
//! costs no compile. Prepares of the same new code at once share one load: the first loads,
//! the others wait for its module (or its error) rather than compile the same bytes again.

pub use crate::cache::{CachePolicy, CacheStats, Eviction};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

struct Entry<M> {
    module: Arc<M>,
    bytes: u64,
    last_used: Instant,
    uses: u64,
}

impl<M> Entry<M> {
    /// Whether an action holds the module (the cache's own reference aside).
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.module) > 1
    }
}

/// A load under way, which the prepares of the same code that come meanwhile wait for.
struct Flight<M, E> {
    landing: Mutex<Landing<M, E>>,
    landed: Condvar,
}

enum Landing<M, E> {
    /// The load runs.
    Flying,
    /// It ended so: the waiters take this.
    Done(Result<Arc<M>, E>),
    /// Its loader went away without an outcome (it panicked): a waiter loads it itself.
    Abandoned,
}

impl<M, E: Clone> Flight<M, E> {
    fn new() -> Self {
        Self {
            landing: Mutex::new(Landing::Flying),
            landed: Condvar::new(),
        }
    }

    fn land(&self, landing: Landing<M, E>) {
        *self.landing.lock().unwrap_or_else(PoisonError::into_inner) = landing;
        self.landed.notify_all();
    }

    /// The load's outcome, once it has one; `None` when it was abandoned.
    fn wait(&self) -> Option<Result<Arc<M>, E>> {
        let mut landing = self.landing.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*landing {
                Landing::Flying => {}
                Landing::Done(outcome) => return Some(outcome.clone()),
                Landing::Abandoned => return None,
            }
            landing = self
                .landed
                .wait(landing)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// The loads under way, by the hash of their code.
type Flights<M, E> = Mutex<HashMap<[u8; 32], Arc<Flight<M, E>>>>;

/// The loader's hold on its [`Flight`]: on every way out, the flight leaves the loads under
/// way, and its waiters are given the outcome, or told it was abandoned.
struct Loading<'a, M, E: Clone> {
    flights: &'a Flights<M, E>,
    hash: [u8; 32],
    flight: Arc<Flight<M, E>>,
    outcome: Option<Result<Arc<M>, E>>,
}

impl<M, E: Clone> Drop for Loading<'_, M, E> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        flights.remove(&self.hash);
        drop(flights);
        self.flight.land(match self.outcome.take() {
            Some(outcome) => Landing::Done(outcome),
            None => Landing::Abandoned,
        });
    }
}

/// Compiled modules of type `M` by the BLAKE3 hash of their bytes; `E` is why a load fails.
pub struct ModuleCache<M, E> {
    entries: Mutex<HashMap<[u8; 32], Entry<M>>>,
    flights: Flights<M, E>,
    policy: CachePolicy,
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    evictions: AtomicU64,
}

impl<M, E: Clone> fmt::Debug for ModuleCache<M, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleCache")
            .field("policy", &self.policy)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M, E: Clone> ModuleCache<M, E> {
    /// An empty cache keeping what `policy` allows.
    pub fn new(policy: CachePolicy) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            policy,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The module of `hash` (made of `bytes` bytes of code), from the cache, from the load of
    /// the same code under way (its module or its error), or from `load`.
    pub fn get_or_load(
        &self,
        hash: &[u8; 32],
        bytes: u64,
        load: impl FnOnce() -> Result<M, E>,
    ) -> Result<Arc<M>, E> {
        let mut load = Some(load);
        loop {
            if let Some(module) = self.get(hash) {
                return Ok(module);
            }
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(flight) = flights.get(hash).cloned() {
                drop(flights);
                match flight.wait() {
                    Some(Ok(module)) => {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        // Counted as used, as the cache's own copy when it is still there.
                        return Ok(self.touch(hash, Instant::now()).unwrap_or(module));
                    }
                    Some(Err(error)) => return Err(error),
                    // Its loader panicked: try again, loading it here if no one else does.
                    None => continue,
                }
            }
            // A load that ended between the look into the cache and this one left its module
            // in the cache before it left the flights.
            if let Some(module) = self.touch(hash, Instant::now()) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(module);
            }
            let flight = Arc::new(Flight::new());
            flights.insert(*hash, flight.clone());
            drop(flights);
            let mut loading = Loading {
                flights: &self.flights,
                hash: *hash,
                flight,
                outcome: None,
            };
            let load = load
                .take()
                .expect("a cache loads the code at most once per call");
            let outcome = self.load(hash, bytes, load);
            loading.outcome = Some(outcome.clone());
            return outcome;
        }
    }

    /// Loads the module of `hash` and keeps it.
    fn load(
        &self,
        hash: &[u8; 32],
        bytes: u64,
        load: impl FnOnce() -> Result<M, E>,
    ) -> Result<Arc<M>, E> {
        let now = Instant::now();
        self.misses.fetch_add(1, Ordering::Relaxed);
        let module = Arc::new(load()?);
        self.loads.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.lock();
        let entry = entries.entry(*hash).or_insert(Entry {
            module,
            bytes,
            last_used: now,
            uses: 0,
        });
        entry.uses += 1;
        let module = entry.module.clone();
        let evicted = self.enforce(&mut entries, now);
        drop(entries);
        drop(evicted);
        Ok(module)
    }

    /// The module of `hash` if the cache holds it, counted as a hit (a miss is counted by the
    /// [`get_or_load`](Self::get_or_load) that follows).
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<M>> {
        let module = self.touch(hash, Instant::now())?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(module)
    }

    /// Lets the module of `hash` go at once unless an action holds it: code that was loaded
    /// but refused is not worth a place.
    pub fn forget_unused(&self, hash: &[u8; 32]) {
        let mut entries = self.lock();
        let forgotten = if entries.get(hash).is_some_and(|entry| !entry.in_use()) {
            entries.remove(hash)
        } else {
            None
        };
        drop(entries);
        drop(forgotten);
    }

    /// The cached module of `hash`, counted as used now.
    fn touch(&self, hash: &[u8; 32], now: Instant) -> Option<Arc<M>> {
        let mut entries = self.lock();
        let entry = entries.get_mut(hash)?;
        entry.last_used = now;
        entry.uses += 1;
        Some(entry.module.clone())
    }

    /// What the cache holds and did, after letting go what the policy no longer allows.
    pub fn stats(&self) -> CacheStats {
        let mut entries = self.lock();
        let evicted = self.enforce(&mut entries, Instant::now());
        let stats = CacheStats {
            entries: entries.len(),
            bytes: entries.values().map(|entry| entry.bytes).sum(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        };
        drop(entries);
        drop(evicted);
        stats
    }

    /// Takes out unused entries that outlived the time to live, then, while the cache is over
    /// a size limit, the unused entry the eviction order puts first. The caller drops what
    /// this returns after it releases the lock: dropping a module unmaps its code (about
    /// 30 µs for `echo`'s Wasmtime artifact), which other prepares' lookups need not wait for.
    #[must_use = "the evicted entries are to be dropped after the lock is released"]
    fn enforce(&self, entries: &mut HashMap<[u8; 32], Entry<M>>, now: Instant) -> Vec<Entry<M>> {
        let mut evicted = Vec::new();
        if let Some(ttl) = self.policy.ttl {
            let expired = entries.extract_if(|_, entry| {
                !entry.in_use() && now.duration_since(entry.last_used) >= ttl
            });
            evicted.extend(expired.map(|(_, entry)| entry));
        }
        loop {
            let bytes: u64 = entries.values().map(|entry| entry.bytes).sum();
            if entries.len() <= self.policy.max_entries && bytes <= self.policy.max_bytes {
                break;
            }
            let victim = entries
                .iter()
                .filter(|(_, entry)| !entry.in_use())
                .min_by_key(|(_, entry)| match self.policy.eviction {
                    Eviction::Lru => (0, entry.last_used),
                    Eviction::Lfu => (entry.uses, entry.last_used),
                })
                .map(|(hash, _)| *hash);
            match victim {
                Some(hash) => evicted.extend(entries.remove(&hash)),
                // Everything left is in use.
                None => break,
            }
        }
        self.evictions
            .fetch_add(evicted.len() as u64, Ordering::Relaxed);
        evicted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry<M>>> {
        self.entries.lock().expect("module cache lock")
    }

    /// How many prepares wait for the load of `hash` under way (`None`: no load is).
    #[cfg(test)]
    fn waiting_for(&self, hash: &[u8; 32]) -> Option<usize> {
        let flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        // The flights' own reference and the loader's are not waiters.
        flights
            .get(hash)
            .map(|flight| Arc::strong_count(flight) - 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cache(policy: CachePolicy) -> ModuleCache<String, &'static str> {
        ModuleCache::new(policy)
    }

    fn load(cache: &ModuleCache<String, &'static str>, key: u8) -> Arc<String> {
        cache
            .get_or_load(&[key; 32], 100, || Ok(format!("module {key}")))
            .unwrap()
    }

    fn keys(cache: &ModuleCache<String, &'static str>) -> Vec<u8> {
        let mut keys: Vec<u8> = cache.lock().keys().map(|hash| hash[0]).collect();
        keys.sort_unstable();
        keys
    }

    /// A module that records, when it is dropped, whether its cache's lock was free.
    struct Probe {
        cache: std::sync::Weak<ModuleCache<Probe, &'static str>>,
        dropped_unlocked: Arc<Mutex<Vec<bool>>>,
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            if let Some(cache) = self.cache.upgrade() {
                let unlocked = cache.entries.try_lock().is_ok();
                self.dropped_unlocked.lock().unwrap().push(unlocked);
            }
        }
    }

    /// `key`'s module loaded into `cache` as a [`Probe`] reporting to `dropped_unlocked`, and
    /// let go by its action.
    fn load_probe(
        cache: &Arc<ModuleCache<Probe, &'static str>>,
        key: u8,
        dropped_unlocked: &Arc<Mutex<Vec<bool>>>,
    ) {
        let probe = Probe {
            cache: Arc::downgrade(cache),
            dropped_unlocked: dropped_unlocked.clone(),
        };
        drop(cache.get_or_load(&[key; 32], 100, || Ok(probe)).unwrap());
    }

    #[test]
    fn modules_let_go_are_dropped_after_the_lock_is_released() {
        let dropped_unlocked = Arc::new(Mutex::new(Vec::new()));
        let sized = Arc::new(ModuleCache::new(CachePolicy {
            max_entries: 1,
            ..CachePolicy::default()
        }));
        // Evicted by a load over the size limit.
        load_probe(&sized, 1, &dropped_unlocked);
        load_probe(&sized, 2, &dropped_unlocked);
        assert_eq!(*dropped_unlocked.lock().unwrap(), [true]);
        // Forgotten.
        sized.forget_unused(&[2; 32]);
        assert_eq!(*dropped_unlocked.lock().unwrap(), [true, true]);
        // Expired, found so by the stats.
        let expiring = Arc::new(ModuleCache::new(CachePolicy {
            ttl: Some(Duration::ZERO),
            ..CachePolicy::default()
        }));
        load_probe(&expiring, 3, &dropped_unlocked);
        assert_eq!(expiring.stats().entries, 0);
        assert_eq!(*dropped_unlocked.lock().unwrap(), [true, true, true]);
    }

    #[test]
    fn modules_are_shared_and_those_in_use_are_never_evicted() {
        let cache = cache(CachePolicy {
            max_entries: 1,
            ..CachePolicy::default()
        });
        let first = load(&cache, 1);
        let second = load(&cache, 1);
        assert!(Arc::ptr_eq(&first, &second));
        let other = load(&cache, 2);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 2, 2));
        assert_eq!(stats.bytes, 200, "both in use, over the limit");
        drop((first, second));
        // 1 is unused now, and the cache is over its one entry.
        assert_eq!(keys(&cache), [1, 2]);
        assert_eq!(cache.stats().entries, 1);
        assert_eq!((keys(&cache), cache.stats().evictions), (vec![2], 1));
        drop(other);
        load(&cache, 2);
        assert_eq!(cache.stats().misses, 2, "2 came from the cache");
    }

    #[test]
    fn a_full_cache_lets_go_the_least_recently_or_least_often_used() {
        for (eviction, survivor) in [(Eviction::Lru, 1), (Eviction::Lfu, 2)] {
            let cache = cache(CachePolicy {
                max_entries: 2,
                eviction,
                ..CachePolicy::default()
            });
            // 2 is used three times, then 1 once, most recently.
            for key in [2, 2, 2, 1] {
                load(&cache, key);
            }
            load(&cache, 3);
            assert_eq!(keys(&cache), {
                let mut kept = vec![survivor, 3];
                kept.sort_unstable();
                kept
            });
        }
    }

    #[test]
    fn the_byte_limit_and_the_time_to_live_let_unused_entries_go() {
        let by_size = cache(CachePolicy {
            max_bytes: 250,
            ..CachePolicy::default()
        });
        for key in [1, 2, 3] {
            load(&by_size, key);
        }
        assert_eq!((keys(&by_size), by_size.stats().bytes), (vec![2, 3], 200));

        let cache = cache(CachePolicy {
            ttl: Some(Duration::ZERO),
            ..CachePolicy::default()
        });
        let held = load(&cache, 1);
        load(&cache, 2);
        assert_eq!(cache.stats().entries, 1);
        assert_eq!(
            keys(&cache),
            [1],
            "only the module in use outlives a zero time to live"
        );
        drop(held);
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn a_failed_load_is_not_cached_and_refused_code_can_be_forgotten() {
        let cache = cache(CachePolicy::default());
        assert_eq!(cache.get_or_load(&[0; 32], 1, || Err("bad")), Err("bad"));
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.misses, stats.loads), (0, 1, 0));
        let held = load(&cache, 1);
        load(&cache, 2);
        cache.forget_unused(&[1; 32]);
        cache.forget_unused(&[2; 32]);
        assert_eq!(keys(&cache), [1], "a module in use stays");
        drop(held);
    }

    /// Starts a load of `key` on `scope` that ends with `outcome` once `release` says so, then
    /// `followers` more prepares of the same code, and waits until they all wait for the
    /// first; returns the threads, the first one's first.
    fn flight<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        cache: &'scope ModuleCache<String, &'static str>,
        loads: &'scope AtomicU64,
        release: std::sync::mpsc::Receiver<()>,
        outcome: fn() -> Result<String, &'static str>,
        followers: usize,
    ) -> Vec<std::thread::ScopedJoinHandle<'scope, Result<Arc<String>, &'static str>>> {
        let hash = [7; 32];
        let mut threads = vec![scope.spawn(move || {
            cache.get_or_load(&hash, 100, || {
                loads.fetch_add(1, Ordering::Relaxed);
                release.recv().expect("the test releases the load");
                outcome()
            })
        })];
        while cache.waiting_for(&hash).is_none() {
            std::thread::yield_now();
        }
        for _ in 0..followers {
            threads.push(scope.spawn(move || {
                cache.get_or_load(&hash, 100, || {
                    loads.fetch_add(1, Ordering::Relaxed);
                    Ok("loaded again".to_owned())
                })
            }));
        }
        while cache.waiting_for(&hash) != Some(followers) {
            std::thread::yield_now();
        }
        threads
    }

    #[test]
    fn prepares_of_the_same_new_code_at_once_share_one_load() {
        let cache = cache(CachePolicy::default());
        let loads = AtomicU64::new(0);
        let (release, released) = std::sync::mpsc::channel();
        let modules: Vec<Arc<String>> = std::thread::scope(|scope| {
            let threads = flight(scope, &cache, &loads, released, || Ok("module 7".into()), 3);
            release.send(()).expect("the loader listens");
            threads
                .into_iter()
                .map(|thread| thread.join().expect("no panic").expect("loaded"))
                .collect()
        });
        assert_eq!(loads.load(Ordering::Relaxed), 1, "one load for all four");
        assert!(
            modules
                .iter()
                .all(|module| Arc::ptr_eq(module, &modules[0]))
        );
        assert_eq!(*modules[0], "module 7");
        let stats = cache.stats();
        assert_eq!((stats.misses, stats.loads, stats.hits), (1, 1, 3));
        assert_eq!(cache.waiting_for(&[7; 32]), None, "no load is under way");
    }

    #[test]
    fn prepares_waiting_for_a_load_that_fails_get_its_error_without_loading() {
        let cache = cache(CachePolicy::default());
        let loads = AtomicU64::new(0);
        let (release, released) = std::sync::mpsc::channel();
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let threads = flight(scope, &cache, &loads, released, || Err("too large"), 2);
            release.send(()).expect("the loader listens");
            threads
                .into_iter()
                .map(|thread| thread.join().expect("no panic"))
                .collect()
        });
        assert_eq!(
            outcomes,
            [Err("too large"), Err("too large"), Err("too large")]
        );
        assert_eq!(loads.load(Ordering::Relaxed), 1);
        assert_eq!(cache.stats().entries, 0, "a failed load is not cached");
    }

    #[test]
    fn when_a_loader_panics_one_waiting_prepare_loads_the_code_itself() {
        let cache = cache(CachePolicy::default());
        let loads = AtomicU64::new(0);
        let (release, released) = std::sync::mpsc::channel();
        let (panicked, followers) = std::thread::scope(|scope| {
            let mut threads = flight(scope, &cache, &loads, released, || panic!("a bug"), 2);
            release.send(()).expect("the loader listens");
            let followers: Vec<_> = threads
                .split_off(1)
                .into_iter()
                .map(|thread| thread.join().expect("no panic").expect("loaded"))
                .collect();
            (threads.remove(0).join().is_err(), followers)
        });
        assert!(panicked);
        assert_eq!(
            loads.load(Ordering::Relaxed),
            2,
            "the panicked load and one more"
        );
        assert!(Arc::ptr_eq(&followers[0], &followers[1]));
        assert_eq!(*followers[0], "loaded again");
    }

    #[test]
    fn policies_parse_from_their_flag_names() {
        assert_eq!("LRU".parse(), Ok(Eviction::Lru));
        assert_eq!("lfu".parse(), Ok(Eviction::Lfu));
        assert!("arc".parse::<Eviction>().is_err());
    }
}
