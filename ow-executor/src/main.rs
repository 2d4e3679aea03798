//! `ow-executor`: parses arguments, installs diagnostics, builds the engine and serves.

use anyhow::Context;
use clap::Parser;
use ow_executor::cli::{Cli, Command};
use ow_executor::executor_mode::Executor;
use ow_executor::logs::ProcessStreams;
use ow_executor::runtime::{Container, RuntimeSettings};
use ow_executor::standalone::{Standalone, StandaloneSettings};
use ow_executor::{engines, runtime, server, telemetry};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = telemetry::init(cli.log_file.as_deref()).and_then(|()| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(serve(cli.command))
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

async fn serve(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Runtime(args) => {
            let engine = engines::build(args.engine.engine, &args.engine.options())?;
            let settings = RuntimeSettings {
                timeout: args.limits.timeout,
                limits: args.limits.limits(),
                api_host: std::env::var("__OW_API_HOST").ok(),
            };
            let container = Arc::new(Container::new(engine, settings, Arc::new(ProcessStreams)));
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            server::serve(listener, runtime::router(container), shutdown_signal())
                .await
                .context("the server failed")
        }
        Command::Standalone(args) => {
            let engine = engines::build(args.engine.engine, &args.engine.options())?;
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let address = listener.local_addr()?;
            let settings = StandaloneSettings {
                data_dir: args.data_dir(),
                idle_timeout: args.idle_timeout,
                api_host: format!("http://{address}"),
            };
            let standalone = Standalone::open(engine, settings.clone())?;
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
            server::serve(listener, standalone.router(), shutdown_signal())
                .await
                .context("the server failed")
        }
        Command::Executor(args) => {
            let engine = engines::build(args.engine.engine, &args.engine.options())?;
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            let settings = RuntimeSettings {
                timeout: args.limits.timeout,
                limits: args.limits.limits(),
                api_host: std::env::var("__OW_API_HOST").ok(),
            };
            let port = listener.local_addr()?.port();
            let executor = Executor::new(engine, settings, Arc::new(ProcessStreams), port);
            server::serve(listener, executor.router(), shutdown_signal())
                .await
                .context("the server failed")
        }
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
