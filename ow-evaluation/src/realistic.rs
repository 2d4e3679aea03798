//! `realistic`: the prior art's trace-shaped workload, in `standalone` mode through the
//! OpenWhisk REST API (guest key, blocking invocations with `result=true`): 90% of requests
//! to 2 hot actions, 10% to 60 rare ones, half of each CPU-bound (`hash`) and half I/O-bound
//! (`sleep`). Every action has its own code (distinct bytes), and a short idle timeout lets
//! rare actions go cold between their calls, as they would on a real platform. Closed loop;
//! latency percentiles per class and an ECDF chart.
//!
//! Every action is created with a concurrency limit as high as the clients. Standalone holds an
//! action to its limit across all its activations (one slot per action), where OpenWhisk would
//! run each activation of a limit-1 action in a container of its own; at OpenWhisk's default
//! of 1, a hot `sleep` action answered one request per 100 ms and its latency was the queue
//! (p50 1.6 s with 16 clients), not the runtime's.

use crate::actions;
use crate::executor::Server;
use crate::load::{Client, Connection, Mix, Request};
use crate::plot::{Lines, Scale, Series};
use crate::report::{Report, Table, num};
use crate::stats::{Summary, ecdf};
use crate::throughput::measure;
use crate::{Profile, Setup, parse_duration, progress};
use anyhow::Context;
use ow_common::limits::CONCURRENCY_RANGE;
use serde_json::{Value, json};
use std::time::Duration;

/// OpenWhisk's well-known guest key (PROTOCOL.md).
pub const GUEST_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";

/// Arguments of `realistic`.
#[derive(Debug, Clone, clap::Args)]
pub struct RealisticArgs {
    /// Concurrent clients (closed loop) [quick: 16, full: 32].
    #[arg(long)]
    pub clients: Option<usize>,
    /// How long the load runs [quick: 15s, full: 120s].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Hot actions.
    #[arg(long, default_value_t = 2)]
    pub hot: usize,
    /// Rare actions.
    #[arg(long, default_value_t = 60)]
    pub rare: usize,
    /// The share of requests that go to the hot actions.
    #[arg(long, default_value_t = 0.9)]
    pub hot_share: f64,
    /// How long an action stays warm without activations (the standalone flag).
    #[arg(long, default_value = "5s")]
    pub idle_timeout: String,
    /// Each action's concurrency limit (1 to 500) [default: as many as the clients].
    #[arg(long, value_parser = clap::value_parser!(u64).range(CONCURRENCY_RANGE))]
    pub concurrency: Option<u64>,
    /// Quick or full.
    #[arg(long, value_enum, default_value_t)]
    pub profile: Profile,
}

/// An action of the workload: its class and whether it is CPU-bound.
#[derive(Debug, Clone)]
pub struct Action {
    /// Its name.
    pub name: String,
    /// Hot (most requests) or rare.
    pub hot: bool,
    /// CPU-bound (`hash`) or I/O-bound (`sleep`).
    pub cpu: bool,
}

/// The actions: `hot` then `rare`, alternately CPU- and I/O-bound within each class.
pub fn actions(hot: usize, rare: usize) -> Vec<Action> {
    let class = |hot: bool, count: usize| {
        (0..count).map(move |i| Action {
            name: format!(
                "{}-{}-{i}",
                if hot { "hot" } else { "rare" },
                if i % 2 == 0 { "cpu" } else { "io" }
            ),
            hot,
            cpu: i % 2 == 0,
        })
    };
    class(true, hot).chain(class(false, rare)).collect()
}

/// The weight of each action: `hot_share` split over the hot ones, the rest over the rare.
pub fn weights(actions: &[Action], hot_share: f64) -> Vec<f64> {
    let hot = actions.iter().filter(|a| a.hot).count().max(1) as f64;
    let rare = actions.iter().filter(|a| !a.hot).count().max(1) as f64;
    actions
        .iter()
        .map(|a| {
            if a.hot {
                hot_share / hot
            } else {
                (1.0 - hot_share) / rare
            }
        })
        .collect()
}

fn class_name(hot: bool, cpu: bool) -> &'static str {
    match (hot, cpu) {
        (true, true) => "hot, CPU-bound",
        (true, false) => "hot, I/O-bound",
        (false, true) => "rare, CPU-bound",
        (false, false) => "rare, I/O-bound",
    }
}

/// Creates the actions in standalone, whose engine runs Wasm SIMD or not; the requests that
/// invoke them.
async fn create(
    server: &Server,
    runs_wasm_simd: bool,
    actions: &[Action],
    concurrency: u64,
) -> anyhow::Result<Vec<Request>> {
    let hash = actions::read(actions::workload("hash")?.module_on(runs_wasm_simd));
    let sleep = actions::read(actions::workload("sleep")?.module);
    let mut client = Client::new(server.addr, Connection::KeepAlive);
    let mut requests = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let module = actions::distinct(if action.cpu { &hash } else { &sleep }, i as u64);
        let body = json!({
            "exec": {"kind": "wasm:0.1", "code": ow_common::code::encode_base64(&actions::zip(&module)?), "binary": true, "main": "main"},
            "limits": {"concurrency": concurrency},
        });
        let put = Request::put(
            format!(
                "/api/v1/namespaces/_/actions/{}?overwrite=true",
                action.name
            ),
            &body,
        )
        .with_basic_auth(GUEST_KEY);
        client
            .send(&put)
            .await?
            .ok()
            .with_context(|| format!("creating {}", action.name))?;
        let params: Value = if action.cpu {
            json!({"iterations": 100})
        } else {
            json!({"ms": 100})
        };
        requests.push(
            Request::post(
                format!(
                    "/api/v1/namespaces/_/actions/{}?blocking=true&result=true",
                    action.name
                ),
                &params,
            )
            .with_basic_auth(GUEST_KEY),
        );
    }
    Ok(requests)
}

/// Runs `realistic`.
pub async fn run(setup: &Setup, args: &RealisticArgs) -> anyhow::Result<Report> {
    let clients = args.clients.unwrap_or(args.profile.pick(16, 32));
    // Clients beyond the highest limit wait for it, as they would for OpenWhisk's.
    let concurrency = args
        .concurrency
        .unwrap_or((clients as u64).min(*CONCURRENCY_RANGE.end()));
    let duration = args.duration.unwrap_or(
        args.profile
            .pick(Duration::from_secs(15), Duration::from_secs(120)),
    );
    let actions = actions(args.hot, args.rare);
    let weights = weights(&actions, args.hot_share);
    let mut report = Report::new("realistic");
    let mut table = Table::new(
        "realistic",
        &format!(
            "Realistic mix (standalone mode, {clients} clients, {} s): {:.0}% of requests to {} hot actions, the rest to {} rare ones; hash 100 iterations or sleep 100 ms; idle timeout {}; concurrency limit {concurrency} per action",
            duration.as_secs_f64(),
            args.hot_share * 100.0,
            args.hot,
            args.rare,
            args.idle_timeout
        ),
        &[
            "engine",
            "class",
            "requests",
            "requests/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms",
            "failed",
        ],
    );
    let mut series = Vec::new();
    for engine in &setup.engines {
        let data = tempfile::tempdir()?;
        let data_dir = data.path().to_str().context("a UTF-8 temporary path")?;
        let server = Server::executor(
            &setup.executor,
            "standalone",
            engine,
            &["--data-dir", data_dir, "--idle-timeout", &args.idle_timeout],
        )
        .await?;
        let requests = create(&server, setup.runs_wasm_simd(engine), &actions, concurrency).await?;
        let mix = Mix::weighted(requests.into_iter().zip(weights.iter().copied()).collect());
        let bar = progress::bar(&format!("realistic {engine}"), duration.as_secs());
        let ticker = {
            let bar = bar.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    bar.inc(1);
                }
            })
        };
        let measured = measure(
            &server,
            Connection::KeepAlive,
            mix,
            clients,
            Duration::ZERO,
            duration,
        )
        .await;
        ticker.abort();
        bar.finish_and_clear();
        let measured = measured?;
        if let Some(error) = &measured.first_error {
            report.notes.push(format!(
                "{engine}: {} requests failed, the first: {error}",
                measured.failed
            ));
        }
        // The window the samples are from, not the one asked for: sleeps oversleep.
        let seconds = measured.window.as_secs_f64();
        // Every request, then each class (hot or rare, CPU- or I/O-bound).
        let classes = [
            None,
            Some((true, true)),
            Some((true, false)),
            Some((false, true)),
            Some((false, false)),
        ];
        for class in classes {
            let name = class.map_or("all", |(hot, cpu)| class_name(hot, cpu));
            let belongs = |a: &Action| class.is_none_or(|(hot, cpu)| a.hot == hot && a.cpu == cpu);
            let samples: Vec<_> = measured
                .samples
                .iter()
                .filter(|s| belongs(&actions[s.kind]))
                .collect();
            let ok: Vec<_> = samples.iter().filter(|s| s.ok).collect();
            let latency = Summary::of(ok.iter().map(|s| s.latency));
            table.push(vec![
                json!(engine),
                json!(name),
                json!(samples.len()),
                num(ok.len() as f64 / seconds),
                num(latency.p50),
                num(latency.p90),
                num(latency.p99),
                num(latency.max),
                json!(samples.len() - ok.len()),
            ]);
        }
        for hot in [true, false] {
            let mut ms: Vec<f64> = measured
                .samples
                .iter()
                .filter(|s| s.ok && actions[s.kind].hot == hot)
                .map(|s| s.latency.as_secs_f64() * 1e3)
                .collect();
            ms.sort_by(f64::total_cmp);
            series.push(Series::new(
                format!("{engine}, {}", if hot { "hot" } else { "rare" }),
                ecdf(&ms, 200),
            ));
        }
    }
    report
        .notes
        .extend(actions::workload("hash")?.builds_note(setup));
    report.tables.push(table);
    report.draw(
        &setup.out_dir,
        "realistic.png",
        &Lines {
            title: "Realistic mix: latency ECDF".into(),
            x_label: "latency ms (log scale)".into(),
            y_label: "fraction of requests at most this slow".into(),
            scale: Scale::LogX,
            series,
        },
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_two_hot_and_sixty_rare_half_cpu_bound() {
        let actions = actions(2, 60);
        assert_eq!(actions.len(), 62);
        assert_eq!(actions.iter().filter(|a| a.hot).count(), 2);
        assert_eq!(actions.iter().filter(|a| a.hot && a.cpu).count(), 1);
        assert_eq!(actions.iter().filter(|a| !a.hot && a.cpu).count(), 30);
        assert_eq!(actions[0].name, "hot-cpu-0");
        assert_eq!(actions[3].name, "rare-io-1");
        let weights = weights(&actions, 0.9);
        let hot: f64 = weights
            .iter()
            .zip(&actions)
            .filter(|(_, a)| a.hot)
            .map(|(w, _)| w)
            .sum();
        let total: f64 = weights.iter().sum();
        assert!((hot - 0.9).abs() < 1e-9 && (total - 1.0).abs() < 1e-9);
        assert!((weights[2] - 0.1 / 60.0).abs() < 1e-12);
    }

    #[test]
    fn drawn_requests_follow_the_weights() {
        let actions = actions(2, 60);
        let requests = actions
            .iter()
            .map(|a| Request::post(format!("/{}", a.name), &json!({})))
            .zip(weights(&actions, 0.9))
            .collect();
        let mix = Mix::weighted(requests);
        let mut rng = fastrand::Rng::with_seed(1);
        let draws = 200_000;
        let mut rare = 0;
        let mut seen = [false; 62];
        for _ in 0..draws {
            let i = mix.index_for(rng.f64());
            seen[i] = true;
            rare += usize::from(!actions[i].hot);
        }
        let share = rare as f64 / draws as f64;
        assert!((share - 0.1).abs() < 0.005, "{share}");
        assert!(seen.iter().all(|&s| s), "every rare action is drawn");
    }
}
