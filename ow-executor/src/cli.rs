//! Command-line arguments of `ow-executor`. Every flag can also come from an `OW_*`
//! environment variable; everything is validated before a socket is bound.

use crate::engines::{EngineKind, Engines};
use clap::{Args, Parser, Subcommand};
use ow_common::limits::ActionLimits;
use ow_common::runtime::{DEFAULT_MAX_INSTANCES, EngineConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// WebAssembly actions for OpenWhisk.
#[derive(Debug, Parser)]
#[command(name = "ow-executor", version, about)]
pub struct Cli {
    /// What to serve.
    #[command(subcommand)]
    pub command: Command,

    /// Write the executor's own diagnostics to this file (level from OW_LOG, default info).
    /// Without it, diagnostics go to stderr only when OW_LOG is set.
    #[arg(long, global = true, env = "OW_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// How long requests in flight may go on after SIGTERM before the executor exits anyway
    /// (e.g. 30s, 500ms).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration, env = "OW_SHUTDOWN_GRACE")]
    pub shutdown_grace: Duration,
}

/// The serving modes.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One action container speaking OpenWhisk's action protocol (/init, /run), as the
    /// `wasm:0.1` action image. Prints nothing but the action's logs.
    Runtime(RuntimeArgs),

    /// The OpenWhisk REST API on one machine: `wsk` and the openwhisk npm client create and
    /// invoke actions; actions and activations are kept in an embedded database.
    Standalone(StandaloneArgs),

    /// Many action containers in one process for a Wasm-aware invoker (/start,
    /// /{id}/init, /{id}/run, /{id}/destroy).
    Executor(ExecutorArgs),
}

/// Arguments of `ow-executor standalone`.
#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3233", env = "OW_LISTEN")]
    pub listen: SocketAddr,

    /// Where actions and activations are stored [default: $XDG_DATA_HOME/ow-wasm, else
    /// ~/.local/share/ow-wasm].
    #[arg(long, env = "OW_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// How long a prepared action stays warm without activations (e.g. 10m, 30s).
    #[arg(long, default_value = "10m", value_parser = parse_duration, env = "OW_IDLE_TIMEOUT")]
    pub idle_timeout: Duration,

    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl StandaloneArgs {
    /// The data directory, defaulted from the environment.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
            (Some(data_home), _) => PathBuf::from(data_home).join("ow-wasm"),
            (None, Some(home)) => PathBuf::from(home).join(".local/share/ow-wasm"),
            (None, None) => PathBuf::from(".ow-wasm"),
        }
    }
}

/// Arguments of `ow-executor executor`.
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000", env = "OW_LISTEN")]
    pub listen: SocketAddr,

    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,

    /// Limits of every activation.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Arguments of `ow-executor runtime`.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080", env = "OW_LISTEN")]
    pub listen: SocketAddr,

    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineArgs,

    /// Limits of every activation.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Which engine runs the actions and what it trusts.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// The Wasm engine of actions that do not name one with the `engine` annotation.
    #[arg(long, value_enum, default_value_t, env = "OW_ENGINE")]
    pub engine: EngineKind,

    /// Accept precompiled engine artifacts. They are native code: only trust them when every
    /// action comes from a source you trust. Portable .wasm is always accepted.
    #[arg(long, env = "OW_TRUST_PRECOMPILED")]
    pub trust_precompiled: bool,

    /// Activations that may run at once (instance slots the engine reserves); more wait for
    /// a slot until their deadline. Each slot reserves about 4 GiB of address space (not
    /// memory), hence the bound.
    #[arg(long, default_value_t = DEFAULT_MAX_INSTANCES, value_parser = clap::value_parser!(u32).range(1..=20_000), env = "OW_MAX_INSTANCES")]
    pub max_instances: u32,
}

impl EngineArgs {
    /// The engine configuration these flags describe.
    pub fn config(&self) -> EngineConfig {
        let mut config = EngineConfig::default();
        config
            .trust_precompiled(self.trust_precompiled)
            .max_instances(self.max_instances);
        config
    }

    /// The engines these flags describe, the default one built.
    pub fn build(&self) -> anyhow::Result<Arc<Engines>> {
        Ok(Arc::new(Engines::new(self.engine, self.config())?))
    }
}

/// OpenWhisk's per-action limits, with its defaults.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Time limit of an activation whose run carries no usable deadline (e.g. 60s, 500ms).
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "OW_TIMEOUT")]
    pub timeout: Duration,

    /// Memory limit of an activation, in MB.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=512), env = "OW_MEMORY_LIMIT")]
    pub memory_limit: u64,

    /// Log limit of an activation (stdout and stderr together), in MB.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=10), env = "OW_LOG_LIMIT")]
    pub log_limit: u64,
}

impl LimitArgs {
    /// The action limits these flags describe.
    pub fn limits(&self) -> ActionLimits {
        ActionLimits {
            timeout: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            memory: self.memory_limit,
            logs: self.log_limit,
            ..ActionLimits::default()
        }
    }
}

/// Parses `500ms`, `60s`, `5m`, or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 60s or 5m"))?;
    let duration = match unit {
        "" | "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        _ => return Err(format!("{text:?} has an unknown unit; use ms, s or m")),
    };
    if duration.is_zero() {
        return Err("a duration must be greater than zero".to_owned());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
