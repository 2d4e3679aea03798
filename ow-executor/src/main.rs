//! `ow-executor`: parses arguments, installs diagnostics, builds the engine and serves.

use anyhow::Context;
use clap::Parser;
use ow_executor::cli::{Cli, Command, LimitArgs};
use ow_executor::executor_mode::Executor;
use ow_executor::logs::ProcessStreams;
use ow_executor::metrics::Metrics;
use ow_executor::runtime::{Container, RuntimeSettings};
use ow_executor::standalone::{Standalone, StandaloneSettings};
use ow_executor::{runtime, server, telemetry};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = telemetry::init(cli.log_file.as_deref()).and_then(|()| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(serve(cli.command, cli.shutdown_grace))
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

async fn serve(command: Command, shutdown_grace: Duration) -> anyhow::Result<()> {
    let mut standalone_server = None;
    let metrics = Arc::new(Metrics::default());
    let (listener, router, engines) = match command {
        Command::Runtime(args) => {
            let engines = args.engine.build()?;
            let listener = bind(args.listen).await?;
            let settings = runtime_settings("runtime", &args.limits, &metrics);
            let container = Arc::new(Container::new(
                engines.clone(),
                settings,
                Arc::new(ProcessStreams),
            ));
            (listener, runtime::router(container), engines)
        }
        Command::Standalone(args) => {
            let engines = args.engine.build()?;
            let listener = bind(args.listen).await?;
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
            (listener, standalone.router(), engines)
        }
        Command::Executor(args) => {
            let engines = args.engine.build()?;
            let listener = bind(args.listen).await?;
            let port = listener.local_addr()?.port();
            let settings = runtime_settings("executor", &args.limits, &metrics);
            let executor = Executor::new(engines.clone(), settings, Arc::new(ProcessStreams), port);
            (listener, executor.router(), engines)
        }
    };
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

async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
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
