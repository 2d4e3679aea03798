//! The warm-container pool of standalone mode: one prepared action per action version, reused
//! by every warm start, dropped after an idle time, prepared again by the first activation of
//! a new version. The first activation of every version is a cold start and reports its init
//! time, even though create already prepared the code once to validate it (which leaves the
//! compiled module in the engine's cache, so the cold start is cheap). Each action has one
//! slot: concurrent cold starts of it prepare once, a new version with the same limit keeps
//! the permits, and no entry whose permits are held is dropped, so the concurrency limit
//! holds across cold starts.

use crate::engines::Engines;
use crate::metrics::Metrics;
use crate::standalone::records::{
    ActionExec, ActionLimits, ActionRecord, MAX_RESULT_BYTES, SemVer,
};
use ow_common::capabilities::Capabilities;
use ow_common::code::{CodeError, decode_action_code};
use ow_common::runtime::{ActionConfig, InitError, Limits, PreparedAction};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A prepared action version, ready for warm starts.
pub struct Warm {
    /// The version it was prepared from.
    pub version: SemVer,
    /// The prepared action.
    pub action: Arc<dyn PreparedAction>,
    /// One permit per concurrent activation the action's limit allows.
    pub permits: Arc<Semaphore>,
    /// The action's limits.
    pub limits: ActionLimits,
    last_used: Mutex<Instant>,
}

impl std::fmt::Debug for Warm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warm")
            .field("version", &self.version)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Warm {
    fn touch(&self) {
        *self.last_used.lock().expect("last-used lock") = Instant::now();
    }

    /// This entry with the permits of the entry it replaces when the concurrency limit is the
    /// same, so that activations of the old entry still count against the limit.
    fn keeping_permits_of(mut self, replaced: Option<&Warm>) -> Self {
        if let Some(replaced) =
            replaced.filter(|old| old.limits.concurrency == self.limits.concurrency)
        {
            self.permits = replaced.permits.clone();
        }
        self
    }
}

/// One action's place in the pool: its warm entry, if any, behind an async lock that a cold
/// start holds while it prepares, so that the activations arriving meanwhile wait for it.
#[derive(Default)]
struct Slot {
    warm: tokio::sync::Mutex<Option<Arc<Warm>>>,
}

/// The pool.
pub struct WarmPool {
    engines: Arc<Engines>,
    metrics: Arc<Metrics>,
    idle_timeout: Duration,
    slots: Mutex<HashMap<(String, String), Arc<Slot>>>,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl WarmPool {
    /// An empty pool over `engines`, counting its cold starts in `metrics`.
    pub fn new(engines: Arc<Engines>, idle_timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            engines,
            metrics,
            idle_timeout,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The warm entry for the stored action `record`, preparing it (a cold start) when the
    /// pool holds none for its version. Returns the prepare time on a cold start.
    pub async fn get(
        &self,
        record: &ActionRecord,
    ) -> Result<(Arc<Warm>, Option<Duration>), InitError> {
        let slot = self.slot(&record.namespace, &record.name);
        let mut current = slot.warm.lock().await;
        if let Some(warm) = current
            .as_ref()
            .filter(|warm| warm.version == record.version)
        {
            warm.touch();
            return Ok((warm.clone(), None));
        }
        let started = Instant::now();
        let warm = Arc::new(
            self.prepare(record)
                .await?
                .keeping_permits_of(current.as_deref()),
        );
        let init_time = started.elapsed();
        self.metrics.cold_start("standalone", init_time);
        *current = Some(warm.clone());
        Ok((warm, Some(init_time)))
    }

    /// The slot of an action, made on first use.
    fn slot(&self, namespace: &str, name: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("pool lock")
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default()
            .clone()
    }

    /// Prepares an action version from its stored record. Create and update call it to
    /// validate the code and drop the result: the version's first activation prepares it again
    /// from the engine's module cache, and that cold start is the one it reports.
    pub async fn prepare(&self, record: &ActionRecord) -> Result<Warm, InitError> {
        let ActionExec::Wasm(exec) = &record.exec else {
            return Err(CodeError::Missing.into()); // a sequence runs no code of its own
        };
        let code = exec.code.as_deref().ok_or(CodeError::Missing)?;
        let code = decode_action_code(code, &exec.main)?;
        let limits = record.limits;
        let annotations = record.annotations.to_json();
        let capabilities =
            Capabilities::from_annotations(Some(&annotations)).map_err(InitError::Capability)?;
        let engine = self.engines.for_action(Some(&annotations))?;
        let config = ActionConfig {
            capabilities,
            // Standalone plays OpenWhisk's invoker, which cuts results at the platform limit.
            limits: Limits {
                result_bytes: MAX_RESULT_BYTES,
                ..limits.engine_limits()
            },
            main: exec.main.clone(),
        };
        let action = engine.prepare(code, config).await?;
        Ok(Warm {
            version: record.version,
            action,
            permits: Arc::new(Semaphore::new(limits.concurrency as usize)),
            limits,
            last_used: Mutex::new(Instant::now()),
        })
    }

    /// Forgets an action (deleted).
    pub fn evict(&self, namespace: &str, name: &str) {
        self.slots
            .lock()
            .expect("pool lock")
            .remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// How many action versions are warm.
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .expect("pool lock")
            .values()
            .filter(|slot| slot.warm.try_lock().map_or(true, |warm| warm.is_some()))
            .count()
    }

    /// Whether nothing is warm.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries idle for longer than the idle timeout. An entry an activation still holds
    /// (one that runs longer than the idle timeout), whose permits an activation of an older
    /// version holds, or that is being prepared is kept.
    pub fn drop_idle(&self) -> usize {
        let now = Instant::now();
        let mut slots = self.slots.lock().expect("pool lock");
        let mut dropped = 0;
        slots.retain(|_, slot| {
            let Ok(mut current) = slot.warm.try_lock() else {
                return true; // a cold start is preparing it
            };
            // Idle: no activation holds the entry or (an older version's) permits, and none
            // came for the idle timeout.
            let idle = current.as_ref().is_some_and(|warm| {
                Arc::strong_count(warm) == 1
                    && warm.permits.available_permits() == warm.limits.concurrency as usize
                    && now.duration_since(*warm.last_used.lock().expect("last-used lock"))
                        >= self.idle_timeout
            });
            if idle {
                *current = None;
                dropped += 1;
            }
            // A slot whose permits nobody holds any more can go with its entry.
            current.is_some() || Arc::strong_count(slot) > 1
        });
        dropped
    }

    /// Runs [`WarmPool::drop_idle`] periodically until the pool is dropped.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let pool = Arc::downgrade(self);
        let period =
            (self.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                let Some(pool) = pool.upgrade() else { break };
                let dropped = pool.drop_idle();
                if dropped > 0 {
                    tracing::info!(dropped, warm = pool.len(), "dropped idle containers");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ow_wasm_action_artifacts as artifacts;
    use serde_json::json;

    fn sleep_action(version: &str) -> ActionRecord {
        let zip =
            ow_common::code::zip_module("action.wasm", &artifacts::read(artifacts::SLEEP)).unwrap();
        let code = base64::engine::general_purpose::STANDARD.encode(zip);
        serde_json::from_value(json!({
            "namespace": "guest", "name": "sleep", "version": version, "publish": false,
            "exec": {"kind": "wasm:0.1", "code": code, "binary": true, "main": "main"},
            "parameters": [], "annotations": [], "updated": 1,
            "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn an_entry_is_not_dropped_while_an_older_version_holds_its_permit() {
        let engines = crate::engines::Engines::new(Default::default(), Default::default()).unwrap();
        let pool = WarmPool::new(Arc::new(engines), Duration::ZERO, Arc::default());
        let (first, cold) = pool.get(&sleep_action("0.0.1")).await.unwrap();
        assert!(cold.is_some());
        // An activation of 0.0.1 runs while the action is updated to 0.0.2.
        let running = first.permits.clone().acquire_owned().await.unwrap();
        let (current, cold) = pool.get(&sleep_action("0.0.2")).await.unwrap();
        assert!(cold.is_some(), "a new version starts cold");
        assert!(
            Arc::ptr_eq(&current.permits, &first.permits),
            "same limit, same permits"
        );
        let (again, cold) = pool.get(&sleep_action("0.0.2")).await.unwrap();
        assert!(cold.is_none(), "then warm");
        drop((first, current, again));

        assert_eq!(
            pool.drop_idle(),
            0,
            "0.0.1's activation still holds the one permit"
        );
        drop(running);
        assert_eq!(pool.drop_idle(), 1);
        assert!(pool.is_empty());
    }
}
