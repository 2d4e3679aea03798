//! What an engine's host layer counts for operators, as Prometheus metrics labelled with the
//! engine's name: activations by outcome and their duration, prepares and their duration, the
//! module cache (hits, misses, loads, evictions, entries, bytes) and the instance slots (in
//! use, waiting, total). The executor serves every engine's families at `GET /metrics`.

use crate::runtime::{EngineStats, InitError, RunError};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// Duration buckets from 50 µs to about 13 s: an activation's floor is microseconds, a
/// compile tens of milliseconds, a sleeping action seconds.
fn duration_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.000_05, 4.0, 10).expect("valid buckets")
}

/// One engine's metrics.
pub(crate) struct HostMetrics {
    registry: Registry,
    activations: IntCounterVec,
    activation_seconds: Histogram,
    prepares: IntCounterVec,
    prepare_seconds: Histogram,
    cache_lookups: IntCounterVec,
    compiles: IntCounter,
    cache_rejected: IntCounterVec,
    cache_loads: IntCounterVec,
    cache_evictions: IntCounterVec,
    cache_entries: IntGaugeVec,
    cache_bytes: IntGaugeVec,
    instances_in_use: IntGauge,
    instances_waiting: IntGauge,
    instance_slots: IntGauge,
}

impl HostMetrics {
    /// The metrics of the engine `engine`, all zero.
    pub(crate) fn new(engine: &'static str) -> Self {
        let labels = HashMap::from([("engine".to_owned(), engine.to_owned())]);
        let registry = Registry::new_custom(None, Some(labels)).expect("a valid registry");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid");
            registry.register(Box::new(metric.clone())).expect("unique");
            metric
        };
        let gauge_vec = |name: &str, help: &str, label: &str| {
            let metric = IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid");
            registry.register(Box::new(metric.clone())).expect("unique");
            metric
        };
        let counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).expect("valid");
            registry.register(Box::new(metric.clone())).expect("unique");
            metric
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).expect("valid");
            registry.register(Box::new(metric.clone())).expect("unique");
            metric
        };
        let histogram = |name: &str, help: &str| {
            let opts = HistogramOpts::new(name, help).buckets(duration_buckets());
            let metric = Histogram::with_opts(opts).expect("valid");
            registry.register(Box::new(metric.clone())).expect("unique");
            metric
        };
        Self {
            activations: counter_vec(
                "ow_activations_total",
                "Activations by how they ended.",
                &["outcome"],
            ),
            activation_seconds: histogram(
                "ow_activation_duration_seconds",
                "Activations' duration, waiting for an instance slot included.",
            ),
            prepares: counter_vec(
                "ow_prepares_total",
                "Actions prepared (an init or a cold start), by result.",
                &["result"],
            ),
            prepare_seconds: histogram(
                "ow_prepare_duration_seconds",
                "How long preparing an action took (a compile, or a module found in the cache).",
            ),
            cache_lookups: counter_vec(
                "ow_module_cache_lookups_total",
                "Module cache lookups by tier (memory, disk) and result (hit, miss).",
                &["tier", "result"],
            ),
            compiles: counter(
                "ow_module_compiles_total",
                "Portable modules compiled (not read back from the disk cache).",
            ),
            cache_rejected: counter_vec(
                "ow_module_cache_rejected_total",
                "Cache entries dropped as damaged or refused by the engine.",
                &["tier"],
            ),
            cache_loads: counter_vec(
                "ow_module_cache_loads_total",
                "Modules loaded into memory after a miss, and entries written to disk.",
                &["tier"],
            ),
            cache_evictions: counter_vec(
                "ow_module_cache_evictions_total",
                "Modules the cache policy let go.",
                &["tier"],
            ),
            cache_entries: gauge_vec(
                "ow_module_cache_entries",
                "Modules the cache holds.",
                "tier",
            ),
            cache_bytes: gauge_vec(
                "ow_module_cache_bytes",
                "Bytes of module code the cache holds.",
                "tier",
            ),
            instances_in_use: gauge(
                "ow_instances_in_use",
                "Activations holding an instance slot.",
            ),
            instances_waiting: gauge(
                "ow_instances_waiting",
                "Activations waiting for an instance slot.",
            ),
            instance_slots: gauge("ow_instance_slots", "Instance slots there are."),
            registry,
        }
    }

    /// Counts an activation that ended with `outcome` after `duration`.
    pub(crate) fn activation(&self, outcome: &Result<Value, RunError>, duration: Duration) {
        self.activations
            .with_label_values(&[outcome_label(outcome)])
            .inc();
        self.activation_seconds.observe(duration.as_secs_f64());
    }

    /// Counts a prepare that took `duration`, with how it ended.
    pub(crate) fn prepare(&self, outcome: Result<(), &InitError>, duration: Duration) {
        self.prepares
            .with_label_values(&[prepare_label(outcome)])
            .inc();
        self.prepare_seconds.observe(duration.as_secs_f64());
    }

    /// Every family, the stats-derived ones brought up to `stats` first.
    pub(crate) fn gather(&self, stats: &EngineStats) -> Vec<MetricFamily> {
        for (tier, cache) in [("memory", &stats.memory_cache), ("disk", &stats.disk_cache)] {
            raise_to(
                &self.cache_lookups.with_label_values(&[tier, "hit"]),
                cache.hits,
            );
            raise_to(
                &self.cache_lookups.with_label_values(&[tier, "miss"]),
                cache.misses,
            );
            raise_to(&self.cache_loads.with_label_values(&[tier]), cache.loads);
            raise_to(
                &self.cache_evictions.with_label_values(&[tier]),
                cache.evictions,
            );
            self.cache_entries
                .with_label_values(&[tier])
                .set(i64::try_from(cache.entries).unwrap_or(i64::MAX));
            self.cache_bytes
                .with_label_values(&[tier])
                .set(i64::try_from(cache.bytes).unwrap_or(i64::MAX));
        }
        raise_to(&self.compiles, stats.compiles);
        raise_to(
            &self.cache_rejected.with_label_values(&["disk"]),
            stats.disk_cache_rejected,
        );
        let count = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.instances_in_use.set(count(stats.instances_in_use));
        self.instances_waiting
            .set(count(stats.waiting_for_instance));
        self.instance_slots.set(count(stats.instance_slots));
        self.registry.gather()
    }
}

/// Raises a counter kept elsewhere (the cache's own) to its current value.
fn raise_to(counter: &IntCounter, value: u64) {
    counter.inc_by(value.saturating_sub(counter.get()));
}

/// The `result` label of a prepare: `ok`; `refused`, the action's fault; `compile_limit`, a
/// module too large to compile within the executor's limits (the action's fault too, but the
/// operator's limits to weigh); `failed`, the executor's own failure.
fn prepare_label(outcome: Result<(), &InitError>) -> &'static str {
    match outcome {
        Ok(()) => "ok",
        Err(InitError::CompileTimeout(_) | InitError::CompileMemory(_)) => "compile_limit",
        Err(InitError::Engine(_)) => "failed",
        Err(_) => "refused",
    }
}

/// The `outcome` label of an activation.
fn outcome_label(outcome: &Result<Value, RunError>) -> &'static str {
    match outcome {
        Ok(result) if result.get("error").is_some() => "application_error",
        Ok(_) => "success",
        Err(RunError::Timeout { .. }) => "timeout",
        Err(RunError::MemoryLimit { .. }) => "memory_limit",
        Err(RunError::Trap { .. }) => "trap",
        Err(RunError::Exit { .. }) => "exit",
        Err(RunError::NotADictionary) => "not_a_dictionary",
        Err(RunError::NoValidResponse) => "no_valid_response",
        Err(RunError::ResultTooLarge { .. }) => "result_too_large",
        Err(RunError::Internal(_)) => "internal_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The value of the metric `name` that carries every label of `labels`.
    fn value_of(families: &[MetricFamily], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = families.iter().find(|family| family.name() == name)?;
        family.get_metric().iter().find_map(|metric| {
            let has = |(key, value): &(&str, &str)| {
                metric
                    .get_label()
                    .iter()
                    .any(|pair| pair.name() == *key && pair.value() == *value)
            };
            labels
                .iter()
                .all(has)
                .then(|| metric.get_counter().get_value() + metric.get_gauge().get_value())
        })
    }

    #[test]
    fn counters_move_with_activations_and_stats_carry_the_engine_label() {
        let metrics = HostMetrics::new("test-engine");
        metrics.activation(&Ok(json!({"ok": 1})), Duration::from_micros(30));
        metrics.activation(&Ok(json!({"error": "no"})), Duration::from_micros(30));
        metrics.activation(
            &Err(RunError::Timeout { limit_ms: 5 }),
            Duration::from_millis(5),
        );
        metrics.prepare(Ok(()), Duration::from_millis(80));
        metrics.prepare(
            Err(&InitError::InvalidModule("no".to_owned())),
            Duration::from_millis(1),
        );
        metrics.prepare(
            Err(&InitError::CompileTimeout(Duration::from_secs(1))),
            Duration::from_secs(1),
        );
        metrics.prepare(
            Err(&InitError::Engine("lost".to_owned())),
            Duration::from_millis(1),
        );
        let mut stats = EngineStats {
            instances_in_use: 3,
            instance_slots: 10,
            ..EngineStats::default()
        };
        stats.memory_cache.hits = 4;
        stats.disk_cache.hits = 2;
        stats.compiles = 5;
        let families = metrics.gather(&stats);
        let activations = "ow_activations_total";
        assert_eq!(
            value_of(&families, activations, &[("outcome", "success")]),
            Some(1.0)
        );
        assert_eq!(
            value_of(&families, activations, &[("outcome", "application_error")]),
            Some(1.0)
        );
        assert_eq!(
            value_of(&families, activations, &[("outcome", "timeout")]),
            Some(1.0)
        );
        for result in ["ok", "refused", "compile_limit", "failed"] {
            assert_eq!(
                value_of(&families, "ow_prepares_total", &[("result", result)]),
                Some(1.0),
                "{result}"
            );
        }
        assert_eq!(
            value_of(
                &families,
                "ow_module_cache_lookups_total",
                &[("tier", "memory"), ("result", "hit")]
            ),
            Some(4.0)
        );
        assert_eq!(
            value_of(
                &families,
                "ow_module_cache_lookups_total",
                &[("tier", "disk"), ("result", "hit")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value_of(
                &families,
                "ow_module_compiles_total",
                &[("engine", "test-engine")]
            ),
            Some(5.0)
        );
        assert_eq!(
            value_of(
                &families,
                "ow_instances_in_use",
                &[("engine", "test-engine")]
            ),
            Some(3.0)
        );
        // The cache's counters are raised, never counted twice.
        stats.memory_cache.hits = 6;
        let families = metrics.gather(&stats);
        assert_eq!(
            value_of(
                &families,
                "ow_module_cache_lookups_total",
                &[("tier", "memory"), ("result", "hit")]
            ),
            Some(6.0)
        );
    }
}
