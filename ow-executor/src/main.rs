//! `ow-executor`: parses arguments, installs diagnostics, builds the engine, pre-caches what
//! `--precache` names and serves; or lists the engines compiled in (`ow-executor engines`); or
//! is the compiler process a serving executor starts for each compile (`ow-executor compile`).

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use ow_common::runtime::WasmRuntime;
use ow_executor::cli::{Cli, Command, LimitArgs, ServingMode};
use ow_executor::engines::EngineKind;
use ow_executor::executor_mode::Executor;
use ow_executor::logs::ProcessStreams;
use ow_executor::metrics::Metrics;
use ow_executor::precache::{Precache, PrecacheProgress, Unwatched};
use ow_executor::runtime::{Container, RuntimeSettings};
use ow_executor::standalone::{Standalone, StandaloneSettings};
use ow_executor::{runtime, server, telemetry};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mode = match cli.command {
        Command::Serve(mode) => mode,
        Command::Engines => {
            #[allow(clippy::print_stdout)]
            {
                println!("{:#}", EngineKind::descriptions());
            }
            return ExitCode::SUCCESS;
        }
        Command::Compile(args) => return args.engine.serve_compiler(),
    };
    let result = telemetry::init(cli.log_file.as_deref()).and_then(|()| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(serve(mode, cli.shutdown_grace))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("ow-executor: {error:#}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn serve(mode: ServingMode, shutdown_grace: Duration) -> anyhow::Result<()> {
    let mut standalone_server = None;
    let metrics = Arc::new(Metrics::default());
    let (engine_args, default_cache_dir) = match &mode {
        ServingMode::Runtime(args) => (&args.engine, None),
        ServingMode::Standalone(args) => (&args.engine, Some(args.default_cache_dir())),
        ServingMode::Executor(args) => (&args.engine, None),
    };
    let precache = engine_args
        .cache
        .precache
        .as_deref()
        .map(Precache::find)
        .transpose()?;
    let engines = engine_args.build(default_cache_dir.as_deref())?;
    // An action container prints nothing of its own.
    let watched = !matches!(mode, ServingMode::Runtime(_));
    let (listener, router) = match mode {
        ServingMode::Runtime(args) => {
            let listener = bind(args.listen)?;
            let settings = runtime_settings("runtime", &args.limits, &metrics);
            let container = Arc::new(Container::new(
                engines.clone(),
                settings,
                Arc::new(ProcessStreams),
            ));
            (listener, runtime::router(container))
        }
        ServingMode::Standalone(args) => {
            let listener = bind(args.listen)?;
            let address = reachable(listener.local_addr()?);
            let settings = StandaloneSettings {
                data_dir: args.data_dir(),
                idle_timeout: args.idle_timeout,
                api_host: format!("http://{address}"),
                metrics: metrics.clone(),
            };
            let standalone = Standalone::open(engines.clone(), settings.clone())?;
            #[allow(clippy::print_stdout)]
            {
                println!("ow-wasm standalone serves the OpenWhisk API on http://{address}");
                println!(
                    "actions and activations are stored in {}",
                    settings.data_dir.display()
                );
                println!(
                    "point wsk at it with:\n  {}",
                    standalone.wsk_property_command()
                );
            }
            standalone_server = Some(standalone.clone());
            (listener, standalone.router())
        }
        ServingMode::Executor(args) => {
            let listener = bind(args.listen)?;
            let port = listener.local_addr()?.port();
            let settings = runtime_settings("executor", &args.limits, &metrics);
            let executor = Executor::new(engines.clone(), settings, Arc::new(ProcessStreams), port);
            (listener, executor.router())
        }
    };
    if let Some(precache) = precache {
        let engine = engines.default_engine();
        if watched {
            precache_on_stderr(&*engine, precache).await;
        } else {
            precache.run(&*engine, &Unwatched).await;
        }
    }
    let router = router.merge(ow_executor::metrics::router(metrics, engines));
    let stopping = Arc::new(std::sync::OnceLock::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown_signal().await;
            let _ = stopping.set(Instant::now());
        }
    };
    server::serve(listener, router, signal)
        .shutdown_grace(shutdown_grace)
        .await
        .context("the server failed")?;
    // Activations accepted with a 202 run on after their request ended: they get what is
    // left of the grace period.
    if let Some(standalone) = standalone_server {
        let spent = stopping.get().map_or(Duration::ZERO, Instant::elapsed);
        standalone
            .finish_activations(shutdown_grace.saturating_sub(spent))
            .await;
    }
    Ok(())
}

/// Pre-caches into `engine` with a progress bar on stderr (drawn only on a terminal), a line
/// for each file skipped and why, and a summary line.
#[allow(clippy::print_stderr)]
async fn precache_on_stderr(engine: &dyn WasmRuntime, precache: Precache) {
    let dir = precache.dir().display().to_string();
    let bar = ProgressBar::new(0).with_prefix("pre-caching").with_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let progress = StderrProgress(bar);
    let report = precache.run(engine, &progress).await;
    progress.0.finish_and_clear();
    eprintln!(
        "ow-executor: pre-cached {} of {} files under {dir}",
        report.cached,
        report.cached + report.refused
    );
    if report.evicted > 0 {
        eprintln!(
            "ow-executor: the memory cache had no room for {} of the pre-cached modules; raise \
             --memory-cache-entries or --memory-cache-bytes to keep them all",
            report.evicted
        );
    }
}

/// Pre-cache progress as a bar, and a line on stderr for every file skipped.
struct StderrProgress(ProgressBar);

impl PrecacheProgress for StderrProgress {
    fn started(&self, files: usize) {
        self.0.set_length(files as u64);
    }

    fn compiling(&self, path: &Path) {
        self.0.set_message(path.display().to_string());
    }

    fn cached(&self, _path: &Path) {
        self.0.inc(1);
    }

    #[allow(clippy::print_stderr)]
    fn refused(&self, path: &Path, why: &str) {
        self.0
            .suspend(|| eprintln!("ow-executor: {} was not pre-cached: {why}", path.display()));
        self.0.inc(1);
    }
}

/// The address clients on this machine reach a listener on: a wildcard listen address
/// (`0.0.0.0`, `::`) is served on loopback too, and is no address to connect to.
fn reachable(mut address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    address
}

fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    server::bind(address).with_context(|| format!("cannot listen on {address}"))
}

/// Settings of runtime containers: the limits flags, and `__OW_API_HOST` as the executor's
/// own environment gives it (the invoker sets it on the container).
fn runtime_settings(
    mode: &'static str,
    limits: &LimitArgs,
    metrics: &Arc<Metrics>,
) -> RuntimeSettings {
    RuntimeSettings {
        mode,
        metrics: metrics.clone(),
        limits: limits.limits(),
        api_host: std::env::var("__OW_API_HOST").ok(),
        recent_code: None,
    }
}

/// Resolves on SIGTERM (how an orchestrator stops a container) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM can be handled");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
