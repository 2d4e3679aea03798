//! `throughput`: closed-loop load on one warm action (`runtime` mode, one container), over
//! keep-alive connections and a new connection per request; requests/s and latency
//! percentiles per engine, for SDK-ABI (`add`, `echo`, CPU-bound `hash`) and stdio-ABI
//! (`stdio_add`) actions. Baselines of the same run: `http-floor` answering each workload's
//! JSON under the same load (the ceiling of any server, and of the load generator, whose own
//! CPU per request is reported too), and for `hash` the `native` and `native-process` servers.

use crate::actions::{self, Workload};
use crate::executor::{self, Server};
use crate::floor::{self, Baseline};
use crate::load::{self, Connection, Load, Mix, Request, Sample};
use crate::plot::Bars;
use crate::report::{Report, Table, num};
use crate::stats::Summary;
use crate::{Profile, Setup, parse_duration, progress};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// Arguments of `throughput`.
#[derive(Debug, Clone, clap::Args)]
pub struct ThroughputArgs {
    /// Workloads, from add, echo, stdio_add, hash, sleep, log.
    #[arg(long, value_delimiter = ',', default_value = "add,echo,stdio_add,hash")]
    pub workloads: Vec<String>,
    /// Concurrent connections (closed-loop clients).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Connection modes.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "keep-alive,per-request"
    )]
    pub modes: Vec<Connection>,
    /// How long each run measures [quick: 2s, full: 10s].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Load before measuring, per run [quick: 0.5s, full: 2s].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Quick or full.
    #[arg(long, value_enum, default_value_t)]
    pub profile: Profile,
}

/// One closed-loop measurement.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Successful requests per second.
    pub rps: f64,
    /// Latencies of the successful requests.
    pub latency: Summary,
    /// Failed requests.
    pub failed: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// CPU time of the load generator per request, µs.
    pub client_cpu_us: f64,
    /// CPU time of the server per request, µs.
    pub server_cpu_us: f64,
    /// The samples of the measured window.
    pub samples: Vec<Sample>,
    /// How long the measured window was, by the load's own clock.
    pub window: Duration,
}

/// Runs `clients` closed-loop clients against `server` for `warmup`, then measures for
/// `duration`.
pub async fn measure(
    server: &Server,
    mode: Connection,
    mix: Mix,
    clients: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let load = Load::start(server.addr, mode, mix, clients, None);
    tokio::time::sleep(warmup).await;
    let from = load.elapsed();
    let (client0, server0) = (executor::cpu_time("self")?, server.cpu_time()?);
    tokio::time::sleep(duration).await;
    let to = load.elapsed();
    let (client1, server1) = (executor::cpu_time("self")?, server.cpu_time()?);
    let finished = load.finish().await?;
    let samples = load::window(&finished.samples, from, to).to_vec();
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
    // No request answered inside the window: no rate per request either.
    let requests = if samples.is_empty() {
        f64::NAN
    } else {
        samples.len() as f64
    };
    Ok(Measured {
        rps: ok.len() as f64 / (to - from).as_secs_f64(),
        latency: Summary::of(ok.iter().map(|s| s.latency)),
        failed: samples.len() - ok.len(),
        first_error: finished.first_error,
        client_cpu_us: (client1 - client0).as_secs_f64() * 1e6 / requests,
        server_cpu_us: (server1 - server0).as_secs_f64() * 1e6 / requests,
        samples,
        window: to - from,
    })
}

/// The columns of the `throughput` table.
pub(crate) const COLUMNS: &[&str] = &[
    "workload",
    "abi",
    "connection",
    "server",
    "requests/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "vs http-floor",
    "vs native",
    "client CPU µs/req",
    "server CPU µs/req",
    "failed",
];

/// A server of one row: an engine or a baseline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Engine(String),
    Baseline(Baseline),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Self::Engine(engine) => engine.clone(),
            Self::Baseline(baseline) => baseline.name().to_owned(),
        }
    }
}

/// Starts the server of `target` ready for `workload`'s `/run`s; returns it, the request to
/// send and the action's answer.
async fn prepare(
    setup: &Setup,
    target: &Target,
    workload: &Workload,
    answer: &Value,
) -> anyhow::Result<(Server, Request)> {
    let run = Request::post("/run", &actions::run_body(&workload.params));
    let server = match target {
        Target::Engine(engine) => {
            let archive = actions::zip(&actions::read(
                workload.module_on(setup.runs_wasm_simd(engine)),
            ))?;
            Server::runtime_with(&setup.executor, engine, &archive, &[]).await?
        }
        Target::Baseline(baseline) => floor::start(setup, *baseline, answer).await?,
    };
    Ok((server, run))
}

/// Runs `throughput`.
pub async fn run(setup: &Setup, args: &ThroughputArgs) -> anyhow::Result<Report> {
    let duration = args.duration.unwrap_or(
        args.profile
            .pick(Duration::from_secs(2), Duration::from_secs(10)),
    );
    let warmup = args.warmup.unwrap_or(
        args.profile
            .pick(Duration::from_millis(500), Duration::from_secs(2)),
    );
    let workloads: Vec<Workload> = args
        .workloads
        .iter()
        .map(|name| actions::workload(name))
        .collect::<anyhow::Result<_>>()?;
    let mut plan: Vec<(Workload, Target)> = Vec::new();
    for workload in &workloads {
        for engine in &setup.engines {
            plan.push((workload.clone(), Target::Engine(engine.clone())));
        }
        plan.push((workload.clone(), Target::Baseline(Baseline::Floor)));
        if workload.name == "hash" {
            plan.push((workload.clone(), Target::Baseline(Baseline::Native)));
            plan.push((workload.clone(), Target::Baseline(Baseline::NativeProcess)));
        }
    }
    let bar = progress::bar("throughput", (plan.len() * args.modes.len()) as u64);
    let mut report = Report::new("throughput");
    let mut results: Vec<(Workload, Target, Connection, Measured)> = Vec::new();
    // The action's own answer, which the floor answers too: the native one for `hash`, else
    // the first engine's.
    let mut answers: HashMap<&str, Value> = HashMap::new();
    for (workload, target) in &plan {
        let answer = match answers.get(workload.name) {
            Some(answer) => answer.clone(),
            None if workload.name == "hash" => crate::native::hash(workload.params.clone()),
            None => json!({}),
        };
        let prepared = prepare(setup, target, workload, &answer).await;
        let (server, run) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                report
                    .notes
                    .push(format!("{} on {}: {error:#}", workload.name, target.name()));
                bar.inc(args.modes.len() as u64);
                continue;
            }
        };
        if let Target::Engine(_) = target
            && let Ok(first) = load::post(server.addr, &run).await.and_then(|a| a.json())
        {
            answers.entry(workload.name).or_insert(first);
        }
        for &mode in &args.modes {
            bar.set_message(format!(
                "{} on {} ({})",
                workload.name,
                target.name(),
                mode.name()
            ));
            let measured = measure(
                &server,
                mode,
                Mix::one(run.clone()),
                args.connections,
                warmup,
                duration,
            )
            .await?;
            if let Some(error) = &measured.first_error {
                report.notes.push(format!(
                    "{} on {} ({}): {} requests failed, the first: {error}",
                    workload.name,
                    target.name(),
                    mode.name(),
                    measured.failed
                ));
            }
            results.push((workload.clone(), target.clone(), mode, measured));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let rate = |workload: &str, target: &Target, mode: Connection| {
        results
            .iter()
            .find(|(w, t, m, _)| w.name == workload && t == target && *m == mode)
            .map(|(_, _, _, measured)| measured.rps)
    };
    let mut table = Table::new(
        "throughput",
        &format!(
            "Throughput: closed loop, {} connections, {} s per run (runtime mode, one warm container)",
            args.connections,
            duration.as_secs_f64()
        ),
        COLUMNS,
    );
    for (workload, target, mode, measured) in &results {
        let floor = rate(workload.name, &Target::Baseline(Baseline::Floor), *mode);
        let native = rate(workload.name, &Target::Baseline(Baseline::Native), *mode);
        table.push(vec![
            json!(workload.name),
            json!(workload.abi),
            json!(mode.name()),
            json!(target.name()),
            num(measured.rps),
            num(measured.latency.p50),
            num(measured.latency.p90),
            num(measured.latency.p99),
            num(floor.map_or(f64::NAN, |floor| measured.rps / floor)),
            num(native.map_or(f64::NAN, |native| measured.rps / native)),
            num(measured.client_cpu_us),
            num(measured.server_cpu_us),
            json!(measured.failed),
        ]);
    }
    for (_, target, mode, measured) in &results {
        if *target == Target::Baseline(Baseline::Floor) && *mode == Connection::KeepAlive {
            report.notes.push(format!(
                "Load generator ceiling ({}): {:.0} requests/s against http-floor, spending {:.1} µs of CPU per request itself and the floor server {:.1} µs.",
                mode.name(),
                measured.rps,
                measured.client_cpu_us,
                measured.server_cpu_us
            ));
            break;
        }
    }
    report
        .notes
        .extend(workloads.iter().filter_map(|w| w.builds_note(setup)));
    report.tables.push(table);

    let mut categories: Vec<(String, Connection)> = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    for (workload, target, mode, _) in &results {
        if !categories.contains(&(workload.name.to_owned(), *mode)) {
            categories.push((workload.name.to_owned(), *mode));
        }
        if !targets.contains(target) {
            targets.push(target.clone());
        }
    }
    report.draw(
        &setup.out_dir,
        "throughput.png",
        &Bars {
            title: "Requests/s on one warm action (log scale)".into(),
            y_label: "requests/s".into(),
            categories: categories
                .iter()
                .map(|(workload, mode)| match mode {
                    Connection::KeepAlive => format!("{workload}, keep-alive"),
                    Connection::PerRequest => format!("{workload}, new conn."),
                })
                .collect(),
            series: targets
                .iter()
                .map(|target| {
                    let values = categories
                        .iter()
                        .map(|(workload, mode)| rate(workload, target, *mode))
                        .collect();
                    (target.name(), values)
                })
                .collect(),
        },
    )?;
    Ok(report)
}
