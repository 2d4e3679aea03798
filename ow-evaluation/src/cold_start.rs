//! `cold-start`: N concurrent `/init` + first `/run` of distinct containers (the prior art's
//! test), N from 1 to 64, through `runtime` mode (one fresh process per container, as
//! OpenWhisk runs images; the processes are started and listening before the clock starts) and
//! `executor` mode (`POST /start` first, then `/{id}/init` and `/{id}/run`). An executor lives
//! long, as it is deployed: one serves a whole series (an engine and a kind of code, every N),
//! having initialised and run one container of its own before the first round, and each round's
//! containers are destroyed after it. The code is a portable `.wasm` compiled for the first
//! time (distinct bytes per container), a `.wasm` new to the executor but the same for every
//! container of a round (executor mode: an action's first burst, whose containers share one
//! compile), the same `.wasm` already cached by hash (executor mode: the executor's own first
//! container was of that code), or a trusted precompiled zip
//! (`ow-precompiler`, distinct per container; the executor runs with `--trust-precompiled`).
//! Every request is on a new connection, as the invoker sends them.

use crate::actions::{self, Workload};
use crate::executor::Server;
use crate::load::{Request, post};
use crate::plot::{Lines, Scale, Series};
use crate::report::{Report, Table, num};
use crate::stats::Summary;
use crate::{Profile, Setup, progress};
use anyhow::Context;
use indicatif::ProgressBar;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How a container gets its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Code {
    /// Portable `.wasm`, compiled at `/init` (other bytes for every container).
    Wasm,
    /// Portable `.wasm` new to the executor, the same for every container of a round: an
    /// action's first burst (executor mode only).
    WasmShared,
    /// Portable `.wasm` whose hash the executor has compiled already (executor mode only).
    WasmCached,
    /// A precompiled artifact for the engine, trusted.
    Precompiled,
}

impl Code {
    /// The name in tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Wasm => "wasm (first compile)",
            Self::WasmShared => "wasm (first compile, shared by the round)",
            Self::WasmCached => "wasm (cached by hash)",
            Self::Precompiled => "precompiled (trusted)",
        }
    }
}

/// The serving mode a container lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `ow-executor runtime`: one process per container.
    Runtime,
    /// `ow-executor executor`: many containers in one process.
    Executor,
}

impl Mode {
    /// The name in tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Runtime => "runtime",
            Self::Executor => "executor",
        }
    }
}

/// The columns of the `cold-start` table.
pub(crate) const COLUMNS: &[&str] = &[
    "engine",
    "mode",
    "code",
    "module KiB",
    "N",
    "samples",
    "init p50",
    "init p90",
    "init p99",
    "init+run p50",
    "init+run p90",
    "init+run p99",
];

/// Arguments of `cold-start`.
#[derive(Debug, Clone, clap::Args)]
pub struct ColdStartArgs {
    /// The action (a workload name: add, echo, hash, …).
    #[arg(long, default_value = "echo")]
    pub action: String,
    /// Concurrent cold starts [quick: 1,16,64; full: 1,2,4,8,16,32,64].
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// Serving modes.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "runtime,executor"
    )]
    pub modes: Vec<Mode>,
    /// Kinds of code.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "wasm,wasm-shared,wasm-cached,precompiled"
    )]
    pub codes: Vec<Code>,
    /// At least this many cold starts per point (rounds of N are repeated) [quick: 8, full: 64].
    #[arg(long)]
    pub samples: Option<usize>,
    /// Quick or full.
    #[arg(long, value_enum, default_value_t)]
    pub profile: Profile,
}

/// The times of one cold start.
#[derive(Debug, Clone, Copy)]
struct Timing {
    init: Duration,
    init_and_run: Duration,
}

/// `/init` then `/run` on a new connection each, timed from before the `/init`.
async fn cold_start(
    addr: SocketAddr,
    prefix: String,
    init: Request,
    run: Request,
) -> anyhow::Result<Timing> {
    let init = Request {
        path: format!("{prefix}/init"),
        ..init
    };
    let run = Request {
        path: format!("{prefix}/run"),
        ..run
    };
    let started = Instant::now();
    post(addr, &init).await?.ok().context("/init")?;
    let init = started.elapsed();
    post(addr, &run).await?.ok().context("/run")?;
    Ok(Timing {
        init,
        init_and_run: started.elapsed(),
    })
}

/// The code of a series' containers: every container gets its own archive, except that
/// `WasmCached` ones all get the same, and `WasmShared` ones the same within a round.
struct Codes<'a> {
    base: &'a [u8],
    /// Distinct precompiled archives, each given out once.
    precompiled: std::slice::Iter<'a, Vec<u8>>,
    next_tag: u64,
    /// The archive of `base` itself, zipped once: a round of 64 deflates of `echo` took 0.2 s.
    cached: Option<Vec<u8>>,
}

impl<'a> Codes<'a> {
    fn new(base: &'a [u8], precompiled: &'a [Vec<u8>]) -> Self {
        Self {
            base,
            precompiled: precompiled.iter(),
            next_tag: 0,
            cached: None,
        }
    }

    /// The next container's archive.
    fn next(&mut self, code: Code) -> anyhow::Result<Vec<u8>> {
        match code {
            Code::Wasm | Code::WasmShared => {
                self.next_tag += 1;
                actions::zip(&actions::distinct(self.base, self.next_tag))
            }
            Code::WasmCached => match &self.cached {
                Some(archive) => Ok(archive.clone()),
                None => Ok(self.cached.insert(actions::zip(self.base)?).clone()),
            },
            Code::Precompiled => self
                .precompiled
                .next()
                .cloned()
                .context("fewer precompiled archives than containers"),
        }
    }

    /// Archives for one round: `n` containers' code.
    fn round(&mut self, code: Code, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
        if code == Code::WasmShared {
            return Ok(vec![self.next(code)?; n]);
        }
        (0..n).map(|_| self.next(code)).collect()
    }
}

/// The flags an executor needs to accept `code`.
fn trust_flags(code: Code) -> &'static [&'static str] {
    if code == Code::Precompiled {
        &["--trust-precompiled"]
    } else {
        &[]
    }
}

/// An executor (executor mode) that serves a whole series, with one container of `warm_up`
/// initialised and run first: what a deployed executor has done before any measured cold start
/// (and, for `WasmCached`, what puts the code's module in its cache).
async fn series_executor(
    setup: &Setup,
    engine: &str,
    code: Code,
    warm_up: &[u8],
    workload: &Workload,
) -> anyhow::Result<Server> {
    let server = Server::executor(&setup.executor, "executor", engine, trust_flags(code)).await?;
    let id = start_container(server.addr).await?;
    let init = Request::post("", &actions::init_body(warm_up));
    let run = Request::post("", &actions::run_body(&workload.params));
    cold_start(server.addr, format!("/{id}"), init, run)
        .await
        .context("the executor's first container")?;
    Ok(server)
}

/// One round: `archives.len()` concurrent cold starts, in fresh `runtime` processes or in
/// `executor`, whose containers are destroyed afterwards.
async fn round(
    setup: &Setup,
    engine: &str,
    code: Code,
    archives: Vec<Vec<u8>>,
    workload: &Workload,
    executor: Option<&Server>,
) -> anyhow::Result<Vec<Timing>> {
    let run = Request::post("", &actions::run_body(&workload.params));
    let mut servers = Vec::new();
    let mut starts = Vec::new();
    match executor {
        None => {
            let mut pending = JoinSet::new();
            for _ in 0..archives.len() {
                let (binary, engine) = (setup.executor.clone(), engine.to_owned());
                pending.spawn(async move {
                    Server::executor(&binary, "runtime", &engine, trust_flags(code)).await
                });
            }
            while let Some(server) = pending.join_next().await {
                let server = server??;
                starts.push((server.addr, String::new()));
                servers.push(server);
            }
        }
        Some(server) => {
            for _ in 0..archives.len() {
                starts.push((
                    server.addr,
                    format!("/{}", start_container(server.addr).await?),
                ));
            }
        }
    }
    // Executor-mode containers outlive the round unless destroyed; runtime processes stop
    // with their `Server`.
    let to_destroy = if executor.is_some() {
        starts.clone()
    } else {
        Vec::new()
    };
    // Every body is encoded before the first cold start begins: encoding one (base64 and JSON
    // of the archive, a few tenths of a millisecond at 188 KiB) while the round's earlier cold
    // starts run would take a core from the executor they measure.
    let inits: Vec<Request> = archives
        .iter()
        .map(|archive| Request::post("", &actions::init_body(archive)))
        .collect();
    let mut pending = JoinSet::new();
    for ((addr, prefix), init) in starts.into_iter().zip(inits) {
        pending.spawn(cold_start(addr, prefix, init, run.clone()));
    }
    let mut timings = Vec::new();
    while let Some(timing) = pending.join_next().await {
        timings.push(timing??);
    }
    for (addr, prefix) in to_destroy {
        let destroy = Request::post(format!("{prefix}/destroy"), &json!({}));
        post(addr, &destroy).await?.ok().context("/destroy")?;
    }
    drop(servers);
    Ok(timings)
}

/// `POST /start` in executor mode: the new container's id.
async fn start_container(addr: SocketAddr) -> anyhow::Result<String> {
    let answer = post(addr, &Request::post("/start", &json!({})))
        .await?
        .ok()?
        .json()?;
    answer["containerId"]
        .as_str()
        .map(str::to_owned)
        .context("/start answered no containerId")
}

/// Runs `cold-start`.
pub async fn run(setup: &Setup, args: &ColdStartArgs) -> anyhow::Result<Report> {
    let workload = actions::workload(&args.action)?;
    let levels = if args.concurrency.is_empty() {
        args.profile
            .pick(vec![1, 16, 64], vec![1, 2, 4, 8, 16, 32, 64])
    } else {
        args.concurrency.clone()
    };
    let min_samples = args.samples.unwrap_or(args.profile.pick(8, 64));
    let base = actions::read(workload.module);
    // A distinct archive per container of a series, and one for its executor's first.
    let containers_per_series: usize = 1 + levels
        .iter()
        .map(|&n| min_samples.div_ceil(n).max(1) * n)
        .sum::<usize>();
    let mut report = Report::new("cold-start");
    let mut plan = Vec::new();
    for engine in &setup.engines {
        for &mode in &args.modes {
            for &code in &args.codes {
                if matches!(code, Code::WasmCached | Code::WasmShared) && mode == Mode::Runtime {
                    continue; // a fresh process has nothing cached and shares no compile
                }
                plan.push((engine.clone(), mode, code));
            }
        }
    }
    let bar = progress::bar("cold-start", (plan.len() * levels.len()) as u64);
    let mut table = Table::new(
        "cold-start",
        &format!(
            "Cold start of `{}` ({} KiB .wasm): N concurrent /init + first /run, ms",
            workload.name,
            base.len() / 1024
        ),
        COLUMNS,
    );
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut precompiled_by_engine: Vec<(String, Option<Vec<Vec<u8>>>)> = Vec::new();
    for (engine, mode, code) in plan {
        let precompiled = if code == Code::Precompiled {
            if !precompiled_by_engine.iter().any(|(e, _)| *e == engine) {
                let packaged = precompile(&engine, &base, containers_per_series, &bar);
                if let Err(error) = &packaged {
                    report
                        .notes
                        .push(format!("{engine}, precompiled: skipped: {error:#}"));
                }
                precompiled_by_engine.push((engine.clone(), packaged.ok()));
            }
            match &precompiled_by_engine
                .iter()
                .find(|(e, _)| *e == engine)
                .expect("just added")
                .1
            {
                Some(archives) => archives.clone(),
                None => {
                    bar.inc(levels.len() as u64);
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        let mut codes = Codes::new(&base, &precompiled);
        let series_name = format!("{engine}, {}, {}", mode.name(), code.name());
        let executor = match mode {
            Mode::Runtime => None,
            Mode::Executor => {
                bar.set_message(format!("{series_name}, starting the executor"));
                let warm_up = codes.next(code)?;
                match series_executor(setup, &engine, code, &warm_up, &workload).await {
                    Ok(server) => Some(server),
                    Err(error) => {
                        report.notes.push(format!("{series_name}: {error:#}"));
                        bar.inc(levels.len() as u64);
                        continue;
                    }
                }
            }
        };
        let (mut p50, mut p99) = (Vec::new(), Vec::new());
        for &n in &levels {
            bar.set_message(format!("{series_name}, N={n}"));
            let rounds = min_samples.div_ceil(n).max(1);
            let mut timings = Vec::new();
            let mut failure = None;
            for _ in 0..rounds {
                let archives = codes.round(code, n)?;
                match round(setup, &engine, code, archives, &workload, executor.as_ref()).await {
                    Ok(round) => timings.extend(round),
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            bar.inc(1);
            if let Some(error) = failure {
                report
                    .notes
                    .push(format!("{series_name}, N={n}: {error:#}"));
                continue;
            }
            let init = Summary::of(timings.iter().map(|t| t.init));
            let both = Summary::of(timings.iter().map(|t| t.init_and_run));
            table.push(vec![
                json!(engine),
                json!(mode.name()),
                json!(code.name()),
                json!(base.len() / 1024),
                json!(n),
                json!(init.count),
                num(init.p50),
                num(init.p90),
                num(init.p99),
                num(both.p50),
                num(both.p90),
                num(both.p99),
            ]);
            p50.push((n as f64, both.p50));
            p99.push((n as f64, both.p99));
        }
        p50s.push(Series::new(series_name.clone(), p50));
        p99s.push(Series::new(series_name, p99));
    }
    bar.finish_and_clear();
    report.tables.push(table);
    for (series, stat, file) in [
        (p50s, "median", "cold-start.png"),
        (p99s, "p99", "cold-start-p99.png"),
    ] {
        report.draw(
            &setup.out_dir,
            file,
            &Lines {
                title: format!("Cold start (/init + first /run), {stat}, by concurrency"),
                x_label: "concurrent cold starts N (log scale)".into(),
                y_label: format!("{stat} ms (log scale)"),
                scale: Scale::LogBoth,
                series,
            },
        )?;
    }
    Ok(report)
}

/// `count` precompiled zips of distinct copies of `wasm` for `engine`, each counted on `bar`'s
/// message as it is made: hundreds of compiles of `echo` take a minute or more.
fn precompile(
    engine: &str,
    wasm: &[u8],
    count: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Vec<u8>>> {
    use clap::ValueEnum as _;
    anyhow::ensure!(
        engine != "wamr",
        "WAMR has no precompiler (no registry ships wamrc): it runs the portable module"
    );
    let target = ow_precompiler::Target::from_str(engine, true).map_err(|_| {
        anyhow::anyhow!(
            "this ow-evaluation cannot precompile for {engine}: build it with `--features {engine}`"
        )
    })?;
    (0..count)
        .map(|i| {
            bar.set_message(format!(
                "precompiling module {} of {count} for {engine}",
                i + 1
            ));
            Ok(ow_precompiler::package(target, &actions::distinct(wasm, 1_000_000 + i as u64))?.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_of_a_series_gets_its_own_code_except_shared_and_cached_ones() {
        let base = actions::read(actions::workload("add").unwrap().module);
        let precompiled = vec![b"first".to_vec(), b"second".to_vec()];
        let mut codes = Codes::new(&base, &precompiled);
        let portable = codes.round(Code::Wasm, 3).unwrap();
        assert_ne!(portable[0], portable[1]);
        assert_ne!(portable[1], portable[2]);
        assert_ne!(portable[0], codes.next(Code::Wasm).unwrap());
        let shared = codes.round(Code::WasmShared, 2).unwrap();
        assert_eq!(shared[0], shared[1], "one new module for the round");
        assert_ne!(shared[0], codes.round(Code::WasmShared, 1).unwrap()[0]);
        assert!(!portable.contains(&shared[0]));
        let cached = codes.round(Code::WasmCached, 2).unwrap();
        assert_eq!(cached[0], cached[1]);
        assert_eq!(cached[0], actions::zip(&base).unwrap());
        assert_eq!(codes.round(Code::Precompiled, 2).unwrap(), precompiled);
        let exhausted = codes.next(Code::Precompiled).unwrap_err();
        assert!(
            exhausted.to_string().contains("fewer precompiled archives"),
            "{exhausted:#}"
        );
    }
}
