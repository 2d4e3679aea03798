//! `GET /metrics` in every mode, read with a real Prometheus text parser: the counters an
//! operator watches move with activations, and every series names its engine.

use crate::harness::{Executor, init_body, zip};
use crate::standalone::{create, invoke};
use ow_executor::engines::EngineKind;
use ow_wasm_action_artifacts as artifacts;
use prometheus_parse::{Scrape, Value};
use serde_json::json;

/// The parsed `/metrics` of `executor`.
pub(crate) fn scrape(executor: &Executor) -> Scrape {
    let answer = executor.http("GET", "/metrics", &[], b"");
    let text = String::from_utf8(answer.body).expect("UTF-8 text");
    assert_eq!(answer.status, 200, "{text}");
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text")
}

/// The value of the sample `metric` whose labels include all of `labels`.
pub(crate) fn sample(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.samples.iter().find_map(|sample| {
        let matches = sample.metric == metric
            && labels
                .iter()
                .all(|(name, value)| sample.labels.get(name) == Some(*value));
        match (&sample.value, matches) {
            (Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value), true) => {
                Some(*value)
            }
            _ => None,
        }
    })
}

/// How many observations a histogram holds.
fn observations(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape.samples.iter().find_map(|sample| {
        let matches = sample.metric == metric
            && labels
                .iter()
                .all(|(name, value)| sample.labels.get(name) == Some(*value));
        match (&sample.value, matches) {
            (Value::Histogram(buckets), true) => buckets.last().map(|bucket| bucket.count),
            _ => None,
        }
    })
}

fn runtime_mode_counts_the_cold_start_activations_by_outcome_and_the_cache(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let name = engine.name();
    let before = scrape(&executor);
    assert_eq!(
        sample(&before, "ow_cold_starts_total", &[("mode", "runtime")]),
        None,
        "nothing started yet"
    );
    executor.init_ok(artifacts::ADD);
    assert_eq!(executor.run(json!({"param1": 1, "param2": 2})).status, 200);
    assert_eq!(executor.run(json!({"param1": 1, "param2": 3})).status, 200);
    // An application error: the action's own {"error": …}.
    assert_eq!(executor.run(json!({"param1": 1})).status, 200);
    let after = scrape(&executor);
    let engine_label = ("engine", name);
    assert_eq!(
        sample(&after, "ow_cold_starts_total", &[("mode", "runtime")]),
        Some(1.0)
    );
    assert_eq!(
        observations(&after, "ow_init_duration_seconds", &[("mode", "runtime")]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "ow_prepares_total",
            &[engine_label, ("result", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "ow_activations_total",
            &[engine_label, ("outcome", "success")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &after,
            "ow_activations_total",
            &[engine_label, ("outcome", "application_error")]
        ),
        Some(1.0)
    );
    assert_eq!(
        observations(&after, "ow_activation_duration_seconds", &[engine_label]),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &after,
            "ow_module_cache_lookups_total",
            &[engine_label, ("tier", "memory"), ("result", "miss")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "ow_module_cache_entries",
            &[engine_label, ("tier", "memory")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, "ow_instances_in_use", &[engine_label]),
        Some(0.0)
    );
    let resident = sample(&after, "process_resident_memory_bytes", &[]).unwrap();
    assert!(resident > 1024.0 * 1024.0, "{resident} bytes resident");
}

fn executor_mode_counts_each_container_and_the_second_prepare_of_one_module_hits_the_cache(
    engine: EngineKind,
) {
    let executor = Executor::executor_mode(engine, &[]);
    let add = init_body(&zip(&artifacts::read(artifacts::ADD)));
    for _ in 0..2 {
        let id = executor.post("/start", &json!({})).body["containerId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(executor.post(&format!("/{id}/init"), &add).status, 200);
        let run = executor.post(
            &format!("/{id}/run"),
            &json!({"value": {"param1": 1, "param2": 1}}),
        );
        assert_eq!(run.body, json!({"result": 2}));
    }
    let after = scrape(&executor);
    let engine_label = ("engine", engine.name());
    assert_eq!(
        sample(&after, "ow_cold_starts_total", &[("mode", "executor")]),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &after,
            "ow_module_cache_lookups_total",
            &[engine_label, ("tier", "memory"), ("result", "hit")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "ow_module_cache_loads_total",
            &[engine_label, ("tier", "memory")]
        ),
        Some(1.0)
    );
}

#[test]
fn one_standalone_server_runs_an_action_on_every_engine_side_by_side() {
    let data = tempfile::tempdir().unwrap();
    let server = Executor::standalone(data.path(), &[]);
    for kind in EngineKind::ALL {
        let name = format!("add-{}", kind.name());
        let annotations = json!({"annotations": [{"key": "engine", "value": kind.name()}]});
        assert_eq!(
            create(&server, &name, artifacts::ADD, annotations).status,
            200
        );
        for _ in 0..2 {
            let answer = invoke(
                &server,
                &name,
                "blocking=true&result=true",
                json!({"param1": 2, "param2": 2}),
            );
            assert_eq!((answer.status, answer.body), (200, json!({"result": 4})));
        }
    }
    let after = scrape(&server);
    let engines = EngineKind::ALL.len() as f64;
    assert_eq!(
        sample(&after, "ow_cold_starts_total", &[("mode", "standalone")]),
        Some(engines),
        "one cold start per action, then warm"
    );
    for kind in EngineKind::ALL {
        assert_eq!(
            sample(
                &after,
                "ow_activations_total",
                &[("engine", kind.name()), ("outcome", "success")]
            ),
            Some(2.0),
            "{} ran its action",
            kind.name()
        );
    }
    // An engine the executor lacks is refused at create with the ones it has.
    let refused = create(
        &server,
        "elsewhere",
        artifacts::ADD,
        json!({"annotations": [{"key": "engine", "value": "v8"}]}),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    let error = refused.body["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "asks for the engine v8, which this executor was not built with; it has {}.",
            EngineKind::names()
        )),
        "{error}"
    );
}

per_engine!(
    runtime_mode_counts_the_cold_start_activations_by_outcome_and_the_cache,
    executor_mode_counts_each_container_and_the_second_prepare_of_one_module_hits_the_cache,
);
