//! `GET /metrics` in every mode: Prometheus text with the executor's own metrics (cold starts
//! and their init time by mode, resident memory) and every started engine's (activations,
//! prepares, module cache, instance slots; see `ow_common::host`), families merged by name.

use crate::engines::Engines;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::proto::MetricFamily;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The executor's own metrics.
pub struct Metrics {
    registry: Registry,
    cold_starts: IntCounterVec,
    init_seconds: HistogramVec,
    resident_bytes: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let cold_starts = IntCounterVec::new(
            Opts::new(
                "ow_cold_starts_total",
                "Activations that had to prepare their action first, by serving mode.",
            ),
            &["mode"],
        )
        .expect("valid");
        let init_seconds = HistogramVec::new(
            HistogramOpts::new(
                "ow_init_duration_seconds",
                "How long a cold start took to prepare its action, by serving mode.",
            )
            .buckets(prometheus::exponential_buckets(0.000_05, 4.0, 10).expect("valid")),
            &["mode"],
        )
        .expect("valid");
        let resident_bytes = IntGauge::new(
            "process_resident_memory_bytes",
            "Resident memory of the executor process.",
        )
        .expect("valid");
        for collector in [
            Box::new(cold_starts.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(init_seconds.clone()),
            Box::new(resident_bytes.clone()),
        ] {
            registry.register(collector).expect("unique");
        }
        Self {
            registry,
            cold_starts,
            init_seconds,
            resident_bytes,
        }
    }
}

impl Metrics {
    /// Counts a cold start in `mode` (`runtime`, `executor`, `standalone`) that prepared its
    /// action in `init`.
    pub fn cold_start(&self, mode: &str, init: Duration) {
        self.cold_starts.with_label_values(&[mode]).inc();
        self.init_histogram(mode).observe(init.as_secs_f64());
    }

    fn init_histogram(&self, mode: &str) -> Histogram {
        self.init_seconds.with_label_values(&[mode])
    }

    /// The Prometheus text of the executor's metrics and every started engine's.
    pub fn render(&self, engines: &Engines) -> String {
        if let Some(bytes) = resident_bytes() {
            self.resident_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
        let engine_families = engines.started().into_iter().flat_map(|e| e.metrics());
        for family in self.registry.gather().into_iter().chain(engine_families) {
            match families.get_mut(family.name()) {
                // The same family from several engines: one family, each engine's series.
                Some(merged) => merged
                    .mut_metric()
                    .extend(family.get_metric().iter().cloned()),
                None => {
                    families.insert(family.name().to_owned(), family);
                }
            }
        }
        let families: Vec<MetricFamily> = families.into_values().collect();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .expect("metric families encode as text")
    }
}

/// The process's resident memory, from `/proc/self/status` (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The `/metrics` route, to merge into a mode's router.
pub fn router(metrics: Arc<Metrics>, engines: Arc<Engines>) -> Router {
    Router::new()
        .route("/metrics", get(serve))
        .with_state((metrics, engines))
}

async fn serve(State((metrics, engines)): State<(Arc<Metrics>, Arc<Engines>)>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(&engines),
    )
        .into_response()
}
