//! `ramp`: the concurrency ramp. One executor-mode process holds a `hash` (CPU-bound) and a
//! `sleep` 300 ms (I/O-bound) container; keep-alive clients are added every interval until
//! throughput plateaus (no step beating the best by 5% for 3 steps) or the client limit is
//! reached, for `hash` alone, `sleep` alone and a half-and-half mix. Then a burst: B
//! concurrent `sleep` activations at once, each on its own connection, and the wall time
//! until the last one answers, with the executor's CPU, its peak resident memory over the
//! burst and what it still holds a second after; twice on one fresh executor, because the
//! first burst also pays for everything the process touches for the first time (instance
//! slots, fiber stacks, its own heap) and the second shows what a burst costs an executor
//! that has seen one.

use crate::actions::{self, Workload};
use crate::executor::{self, Server};
use crate::load::{self, Client, Connection, Load, Mix, Request, post};
use crate::plot::{Lines, Scale, Series};
use crate::report::{Report, Table, num};
use crate::stats::{Plateau, Summary};
use crate::{Profile, Setup, parse_duration, progress};
use anyhow::Context;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Arguments of `ramp`.
#[derive(Debug, Clone, clap::Args)]
pub struct RampArgs {
    /// Workloads: hash (CPU-bound), sleep (I/O-bound), mixed (half of each).
    #[arg(long, value_delimiter = ',', default_value = "hash,sleep,mixed")]
    pub workloads: Vec<String>,
    /// How long each client count runs [quick: 1s, full: 3s].
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Clients added per interval for `hash` [quick: 2, full: 1].
    #[arg(long)]
    pub step: Option<usize>,
    /// Clients added per interval for `sleep` and `mixed` [quick: 32, full: 16].
    #[arg(long)]
    pub io_step: Option<usize>,
    /// The most clients for `hash` [quick: 24, full: 64].
    #[arg(long)]
    pub max_clients: Option<usize>,
    /// The most clients for `sleep` and `mixed` [quick: 512, full: 2048].
    #[arg(long)]
    pub io_max_clients: Option<usize>,
    /// Concurrent `sleep` activations of the burst (0: none) [quick: 1000, full: 10000].
    #[arg(long)]
    pub burst: Option<usize>,
    /// Quick or full.
    #[arg(long, value_enum, default_value_t)]
    pub profile: Profile,
}

/// One client count of a ramp.
#[derive(Debug, Clone, Copy)]
struct Step {
    clients: usize,
    rps: f64,
    latency: Summary,
}

/// A container of `workload` in the executor at `addr`, whose engine runs Wasm SIMD or not:
/// the request of one activation.
async fn container(
    addr: SocketAddr,
    runs_wasm_simd: bool,
    workload: &Workload,
) -> anyhow::Result<Request> {
    let mut client = Client::new(addr, Connection::KeepAlive);
    let id = client
        .send(&Request::post("/start", &json!({})))
        .await?
        .ok()?
        .json()?["containerId"]
        .as_str()
        .context("/start answered no containerId")?
        .to_owned();
    let archive = actions::zip(&actions::read(workload.module_on(runs_wasm_simd)))?;
    client
        .send(&Request::post(
            format!("/{id}/init"),
            &actions::init_body(&archive),
        ))
        .await?
        .ok()
        .with_context(|| format!("/init of {}", workload.name))?;
    Ok(Request::post(
        format!("/{id}/run"),
        &actions::run_body(&workload.params),
    ))
}

/// Ramps clients of `mix` up by `step` every `interval` until a plateau or `max` clients.
async fn ramp(
    addr: SocketAddr,
    mix: Mix,
    step: usize,
    max: usize,
    interval: Duration,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<(Vec<Step>, bool, Option<String>)> {
    let mut load = Load::start(addr, Connection::KeepAlive, mix, step, None);
    let mut plateau = Plateau::new(0.05, 3);
    let mut windows = Vec::new();
    let plateaued = loop {
        let (from, before) = (load.elapsed(), load.completed());
        tokio::time::sleep(interval).await;
        let (to, after) = (load.elapsed(), load.completed());
        windows.push((load.clients(), from, to));
        bar.set_message(format!("{} clients", load.clients()));
        bar.inc(1);
        // Samples stay with the clients until the end: the counter gives the step's rate.
        if plateau.push((after - before) as f64 / (to - from).as_secs_f64()) {
            break true;
        }
        if load.clients() + step > max {
            break false;
        }
        for _ in 0..step {
            load.add_client();
        }
    };
    let finished = load.finish().await?;
    let steps = windows
        .iter()
        .map(|&(clients, from, to)| {
            let inside = load::window(&finished.samples, from, to);
            let ok = inside.iter().filter(|s| s.ok);
            Step {
                clients,
                rps: inside.iter().filter(|s| s.ok).count() as f64 / (to - from).as_secs_f64(),
                latency: Summary::of(ok.map(|s| s.latency)),
            }
        })
        .collect();
    Ok((steps, plateaued, finished.first_error))
}

/// The columns of the `ramp-burst` table.
pub(crate) const BURST_COLUMNS: &[&str] = &[
    "engine",
    "burst",
    "activations",
    "wall s",
    "p50 ms",
    "p99 ms",
    "server CPU s",
    "RSS before MiB",
    "peak RSS MiB",
    "RSS after MiB",
    "failed",
];

/// How long after a burst's last answer its executor's memory is read again: by then the
/// burst's instances, connections and tasks are gone, and what stays is what the executor
/// keeps for the next burst (pooled memories, cached buffers).
const SETTLE: Duration = Duration::from_secs(1);

/// The `burst` of its two rows per engine: a fresh executor's, then the same executor's.
pub(crate) const BURSTS: [&str; 2] = ["first (fresh executor)", "second (same executor)"];

/// What one burst measured.
struct Burst {
    wall: Duration,
    latency: Summary,
    failed: usize,
    /// CPU the executor spent from the first request to the last answer.
    server_cpu: Duration,
    /// The executor's `VmRSS` before the first request, KiB.
    rss_before_kib: u64,
    /// The executor's largest `VmRSS` seen meanwhile, KiB: sampled about every 10 ms (the
    /// sampler is one task among the burst's), so a shorter peak can be missed.
    peak_rss_kib: u64,
    /// The executor's `VmRSS` [`SETTLE`] after the last answer, KiB.
    rss_after_kib: u64,
}

/// B concurrent activations, each on a new connection, against the executor `server`: wall
/// time, latencies, and what the burst cost the executor in CPU and memory, during it and
/// once it is over.
async fn burst(server: &Server, run: &Request, count: usize) -> anyhow::Result<Burst> {
    let addr = server.addr;
    let pid = server.pid();
    let rss_before_kib = server.rss_kib()?;
    let cpu_before = server.cpu_time()?;
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(executor::rss_kib(pid)?);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            anyhow::Ok(peak.max(executor::rss_kib(pid)?))
        }
    });
    let started = Instant::now();
    let mut pending = JoinSet::new();
    for _ in 0..count {
        let run = run.clone();
        pending.spawn(async move {
            let sent = Instant::now();
            let answer = post(addr, &run).await;
            (sent.elapsed(), matches!(answer, Ok(a) if a.status == 200))
        });
    }
    let mut latencies = Vec::with_capacity(count);
    let mut failed = 0;
    while let Some(done) = pending.join_next().await {
        let (latency, ok) = done?;
        if ok {
            latencies.push(latency);
        } else {
            failed += 1;
        }
    }
    let wall = started.elapsed();
    let server_cpu = server.cpu_time()?.saturating_sub(cpu_before);
    sampling.store(false, Ordering::Relaxed);
    let peak_rss_kib = sampler.await??;
    tokio::time::sleep(SETTLE).await;
    Ok(Burst {
        wall,
        latency: Summary::of(latencies),
        failed,
        server_cpu,
        rss_before_kib,
        peak_rss_kib,
        rss_after_kib: server.rss_kib()?,
    })
}

/// Runs `ramp`.
pub async fn run(setup: &Setup, args: &RampArgs) -> anyhow::Result<Report> {
    let p = args.profile;
    let interval = args
        .interval
        .unwrap_or(p.pick(Duration::from_secs(1), Duration::from_secs(3)));
    let step = args.step.unwrap_or(p.pick(2, 1));
    let io_step = args.io_step.unwrap_or(p.pick(32, 16));
    let max_clients = args.max_clients.unwrap_or(p.pick(24, 64));
    let io_max_clients = args.io_max_clients.unwrap_or(p.pick(512, 2048));
    let burst_size = args.burst.unwrap_or(p.pick(1000, 10_000));
    let hash = actions::workload("hash")?;
    let sleep = actions::workload("sleep")?;
    let mut report = Report::new("ramp");
    let mut summary = Table::new(
        "ramp",
        &format!(
            "Concurrency ramp (executor mode, keep-alive): clients added every {} s until throughput plateaus",
            interval.as_secs_f64()
        ),
        &[
            "workload",
            "engine",
            "plateau",
            "peak requests/s",
            "clients at peak",
            "p50 ms at peak",
            "p99 ms at peak",
            "most clients",
        ],
    );
    let mut steps_table = Table::new(
        "ramp-steps",
        "Concurrency ramp, every step",
        &[
            "workload",
            "engine",
            "clients",
            "requests/s",
            "p50 ms",
            "p99 ms",
        ],
    );
    let mut bursts = Table::new(
        "ramp-burst",
        &format!(
            "Burst: {burst_size} concurrent `sleep` 300 ms activations, each on a new connection (executor mode)"
        ),
        BURST_COLUMNS,
    );
    let mut charts: Vec<(String, Vec<Series>)> = args
        .workloads
        .iter()
        .map(|w| (w.clone(), Vec::new()))
        .collect();
    for engine in &setup.engines {
        let server = Server::executor(&setup.executor, "executor", engine, &[]).await?;
        let hash_run = container(server.addr, setup.runs_wasm_simd(engine), &hash).await?;
        let sleep_run = container(server.addr, setup.runs_wasm_simd(engine), &sleep).await?;
        for (workload, series) in &mut charts {
            let (mix, step, max) = match workload.as_str() {
                "hash" => (Mix::one(hash_run.clone()), step, max_clients),
                "sleep" => (Mix::one(sleep_run.clone()), io_step, io_max_clients),
                "mixed" => (
                    Mix::weighted(vec![(hash_run.clone(), 1.0), (sleep_run.clone(), 1.0)]),
                    io_step,
                    io_max_clients,
                ),
                other => {
                    anyhow::bail!("there is no ramp workload {other}; use hash, sleep or mixed")
                }
            };
            let bar = progress::bar(&format!("{workload} {engine}"), (max / step) as u64);
            bar.enable_steady_tick(Duration::from_millis(200));
            let ramped = ramp(server.addr, mix, step, max, interval, &bar).await;
            bar.finish_and_clear();
            let (steps, plateaued, first_error) = ramped?;
            if let Some(error) = first_error {
                report.notes.push(format!(
                    "ramp {workload} on {engine}: a request failed: {error}"
                ));
            }
            for s in &steps {
                steps_table.push(vec![
                    json!(workload),
                    json!(engine),
                    json!(s.clients),
                    num(s.rps),
                    num(s.latency.p50),
                    num(s.latency.p99),
                ]);
            }
            let peak = steps
                .iter()
                .max_by(|a, b| a.rps.total_cmp(&b.rps))
                .copied()
                .context("a ramp has a step")?;
            summary.push(vec![
                json!(workload),
                json!(engine),
                json!(if plateaued {
                    "yes"
                } else {
                    "no (client limit)"
                }),
                num(peak.rps),
                json!(peak.clients),
                num(peak.latency.p50),
                num(peak.latency.p99),
                json!(steps.last().map_or(0, |s| s.clients)),
            ]);
            series.push(Series::new(
                engine.clone(),
                steps.iter().map(|s| (s.clients as f64, s.rps)).collect(),
            ));
        }
        drop(server);
        if burst_size > 0 {
            let spinner = progress::bar(&format!("burst {engine}"), 1);
            spinner.set_message(format!("{burst_size} concurrent sleeps"));
            spinner.enable_steady_tick(Duration::from_millis(200));
            let slots = burst_size.clamp(1000, 20_000).to_string();
            let server = Server::executor(
                &setup.executor,
                "executor",
                engine,
                &["--max-instances", &slots],
            )
            .await?;
            let run = container(server.addr, setup.runs_wasm_simd(engine), &sleep).await?;
            for round in BURSTS {
                let measured = burst(&server, &run, burst_size).await?;
                bursts.push(vec![
                    json!(engine),
                    json!(round),
                    json!(burst_size),
                    num(measured.wall.as_secs_f64()),
                    num(measured.latency.p50),
                    num(measured.latency.p99),
                    num(measured.server_cpu.as_secs_f64()),
                    num(measured.rss_before_kib as f64 / 1024.0),
                    num(measured.peak_rss_kib as f64 / 1024.0),
                    num(measured.rss_after_kib as f64 / 1024.0),
                    json!(measured.failed),
                ]);
            }
            spinner.finish_and_clear();
        }
    }
    if args.workloads.iter().any(|w| w == "hash" || w == "mixed") {
        report.notes.extend(hash.builds_note(setup));
    }
    report.tables.push(summary);
    if burst_size > 0 {
        report.tables.push(bursts);
    }
    report.tables.push(steps_table);
    for (workload, series) in charts {
        report.draw(
            &setup.out_dir,
            &format!("ramp-{workload}.png"),
            &Lines {
                title: format!("Concurrency ramp: {workload}"),
                x_label: "clients".into(),
                y_label: "requests/s".into(),
                scale: Scale::Linear,
                series,
            },
        )?;
    }
    Ok(report)
}
