//! `ow-evaluation`: parses arguments, finds the binaries, runs a subcommand on a tokio
//! runtime, prints its tables as Markdown and writes CSV, JSON and charts under
//! `target/evaluation/`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::{Context, ensure};
use clap::{Parser, Subcommand};
use ow_evaluation::cold_start::ColdStartArgs;
use ow_evaluation::floor::FloorArgs;
use ow_evaluation::memory::MemoryArgs;
use ow_evaluation::ramp::RampArgs;
use ow_evaluation::realistic::RealisticArgs;
use ow_evaluation::soak::SoakArgs;
use ow_evaluation::throughput::ThroughputArgs;
use ow_evaluation::{Profile, Setup, executor, report::Report};
use std::path::{Path, PathBuf};

/// Measurements of ow-wasm against baselines in the same run, every engine side by side.
#[derive(Debug, Parser)]
#[command(name = "ow-evaluation", about)]
struct Cli {
    #[command(subcommand)]
    command: Run,

    /// The ow-executor binary [default: next to this one, in the same target directory].
    #[arg(long, global = true)]
    executor: Option<PathBuf>,

    /// Engines to measure, each compiled into the executor [default: every one compiled in].
    #[arg(long, global = true, value_delimiter = ',')]
    engines: Vec<String>,

    /// Where CSV, JSON and PNG files go [default: target/evaluation].
    #[arg(long, global = true)]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Run {
    /// N concurrent /init + first /run, runtime and executor mode, portable and precompiled.
    ColdStart(ColdStartArgs),
    /// Requests/s and latency on one warm action, keep-alive and a new connection per request.
    Throughput(ThroughputArgs),
    /// Adds clients until throughput plateaus: CPU-bound, I/O-bound and mixed; a burst.
    Ramp(RampArgs),
    /// 90% of requests to 2 hot actions, 10% to 60 rare ones, in standalone mode.
    Realistic(RealisticArgs),
    /// Resident memory: idle, per warm container, N containers of one and of N modules.
    Memory(MemoryArgs),
    /// Many activations of one action; resident memory over time.
    Soak(SoakArgs),
    /// Every measurement above, quick profile by default (`just bench`).
    All {
        /// Quick (under 10 minutes on 2 cores) or full.
        #[arg(long, value_enum, default_value_t = Profile::Quick)]
        profile: Profile,
    },
    /// The http-floor and native baselines' server (started by the measurements).
    #[command(hide = true)]
    HttpFloorServer(FloorArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Run::HttpFloorServer(args) = cli.command {
        return runtime.block_on(ow_evaluation::floor::serve(args));
    }
    let setup = setup(&cli)?;
    eprintln!(
        "ow-evaluation: {} with {}; results in {}",
        setup.executor.display(),
        setup.engines.join(", "),
        setup.out_dir.display()
    );
    let reports: Vec<Report> = runtime.block_on(async {
        Ok::<_, anyhow::Error>(match &cli.command {
            Run::ColdStart(args) => vec![ow_evaluation::cold_start::run(&setup, args).await?],
            Run::Throughput(args) => vec![ow_evaluation::throughput::run(&setup, args).await?],
            Run::Ramp(args) => vec![ow_evaluation::ramp::run(&setup, args).await?],
            Run::Realistic(args) => vec![ow_evaluation::realistic::run(&setup, args).await?],
            Run::Memory(args) => vec![ow_evaluation::memory::run(&setup, args).await?],
            Run::Soak(args) => vec![ow_evaluation::soak::run(&setup, args).await?],
            Run::All { profile } => ow_evaluation::all::run(&setup, *profile).await?,
            Run::HttpFloorServer(_) => unreachable!("served above"),
        })
    })?;
    for report in &reports {
        report.write(&setup.out_dir)?;
        println!("{}", report.markdown());
    }
    if reports.len() > 1 {
        let summary = ow_evaluation::all::summary(&reports);
        let path = setup.out_dir.join("summary.md");
        std::fs::write(&path, summary)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("ow-evaluation: every table is in {}", path.display());
    }
    Ok(())
}

/// The binaries, engines and output directory, checked before anything runs.
fn setup(cli: &Cli) -> anyhow::Result<Setup> {
    let evaluation = std::env::current_exe()?;
    let bin_dir = evaluation
        .parent()
        .context("the binary has a directory")?
        .to_owned();
    let executor = cli
        .executor
        .clone()
        .unwrap_or_else(|| bin_dir.join("ow-executor"));
    ensure!(
        executor.is_file(),
        "{} does not exist: build it with `cargo build --release -p ow-executor --all-features` or pass --executor",
        executor.display()
    );
    let native_action = bin_dir.join("ow-native-action");
    ensure!(
        native_action.is_file(),
        "{} does not exist: build it with `cargo build --release -p ow-evaluation`",
        native_action.display()
    );
    let compiled = executor::compiled_engines(&executor)?;
    let names: Vec<String> = compiled.iter().map(|engine| engine.name.clone()).collect();
    let engines = if cli.engines.is_empty() {
        names
    } else {
        for engine in &cli.engines {
            ensure!(
                names.contains(engine),
                "{} has no engine {engine}; it has {}",
                executor.display(),
                names.join(", ")
            );
        }
        cli.engines.clone()
    };
    let wasm_simd_engines = compiled
        .into_iter()
        .filter(|engine| engine.wasm_simd && engines.contains(&engine.name))
        .map(|engine| engine.name)
        .collect();
    let out_dir = cli.out.clone().unwrap_or_else(|| default_out_dir(&bin_dir));
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    Ok(Setup {
        executor,
        engines,
        wasm_simd_engines,
        evaluation,
        native_action,
        out_dir,
    })
}

/// `target/evaluation` when this binary lives in `target/<profile>/`, else `./evaluation`.
fn default_out_dir(bin_dir: &Path) -> PathBuf {
    match bin_dir.parent() {
        Some(target) if target.join("CACHEDIR.TAG").is_file() => target.join("evaluation"),
        _ => PathBuf::from("evaluation"),
    }
}
