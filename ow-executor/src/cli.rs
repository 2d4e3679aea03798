//! Command-line arguments of `ow-executor`. Every flag can also come from an `OW_*`
//! environment variable; everything is validated before a socket is bound.

use crate::engines::{EngineKind, Engines};
use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};
use ow_common::cache::{CachePolicy, Eviction};
use ow_common::host::compiler_process;
use ow_common::limits::ActionLimits;
use ow_common::runtime::{
    CompileLimits, CompilePlace, CompileTurns, CompilerCommand, DEFAULT_MAX_INSTANCES,
    DiskCacheConfig, EngineConfig,
};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
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

/// What to do: serve in one of the serving modes, or say what this build holds.
#[derive(Debug, Subcommand)]
// Parsed once per process: the serving modes' flags are larger than the other commands', and
// boxing them would only make every match on them harder to read.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Serve in one of the serving modes.
    #[command(flatten)]
    Serve(ServingMode),

    /// Prints the engines compiled into this executor, the default first, as a JSON array:
    /// each one's name, whether it loads precompiled artifacts and whether it runs Wasm SIMD.
    Engines,

    /// The compiler process a serving executor starts for each compile: reads a portable
    /// module on stdin and writes the engine's artifact on stdout (exit status 65 and the
    /// reason on stderr when the module does not compile).
    #[command(hide = true)]
    Compile(CompileArgs),
}

/// Arguments of `ow-executor compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The engine to compile for.
    #[arg(value_enum)]
    pub engine: EngineKind,
}

/// The serving modes.
#[derive(Debug, Subcommand)]
pub enum ServingMode {
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
    /// Where compiled modules are kept unless `--cache-dir` says otherwise.
    pub fn default_cache_dir(&self) -> PathBuf {
        self.data_dir().join("module-cache")
    }

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

    /// The compiled-module caches.
    #[command(flatten)]
    pub cache: CacheArgs,

    /// What a compile may take.
    #[command(flatten)]
    pub compile_limits: CompileLimitArgs,
}

impl EngineArgs {
    /// The engine configuration these flags describe; compiled modules are kept on disk in
    /// `--cache-dir`, else in `default_cache_dir` (standalone's), else nowhere; never with
    /// `--no-disk-cache`.
    pub fn config(&self, default_cache_dir: Option<&Path>) -> EngineConfig {
        let cache = &self.cache;
        let disk_cache = cache
            .cache_dir
            .as_deref()
            .or(default_cache_dir)
            .filter(|_| !cache.no_disk_cache)
            .map(|dir| DiskCacheConfig {
                dir: dir.to_owned(),
                policy: cache.disk_policy(),
            });
        let mut config = EngineConfig::default();
        config
            .trust_precompiled(self.trust_precompiled)
            .max_instances(self.max_instances)
            .memory_cache(cache.memory_policy())
            .disk_cache(disk_cache)
            .compile_in(CompilePlace::CompilerProcess(compiler_command(
                self.compile_limits.limits(),
                self.compile_limits.turns(),
            )));
        config
    }

    /// The engines these flags describe, the default one built (which creates the cache
    /// directory, so a directory the executor cannot use stops it before it serves). An
    /// executor that cannot find its own program to start compiler processes with, or cannot
    /// give them `--compile-memory`, stops here too, rather than answer every compile with a
    /// 500.
    pub fn build(&self, default_cache_dir: Option<&Path>) -> anyhow::Result<Arc<Engines>> {
        let config = self.config(default_cache_dir);
        if let CompilePlace::CompilerProcess(compiler) = &config.compile_in {
            std::fs::metadata(&compiler.program).map_err(|e| {
                anyhow::anyhow!(
                    "cannot find this executor's own program ({}) to start compiler processes \
                     with: {e}",
                    compiler.program.display()
                )
            })?;
            if let Some(most) = compiler_process::hard_memory_limit()
                && most < compiler.limits.memory
            {
                anyhow::bail!(
                    "--compile-memory {} is more than this executor can give a compiler \
                     process: its own hard data limit (RLIMIT_DATA) is {}; lower \
                     --compile-memory or raise the limit",
                    ByteSize(compiler.limits.memory),
                    ByteSize(most)
                );
            }
        }
        Ok(Arc::new(Engines::new(self.engine, config)?))
    }
}

/// This executor's own program as the compiler process: `ow-executor compile ENGINE`, started
/// as `/proc/self/exe`, the running program itself even if its file has been replaced since
/// it started, so that compiler and server are always the same build. (The executor runs on
/// Linux only: its compiler processes' limits are Linux's too.)
fn compiler_command(limits: CompileLimits, turns: CompileTurns) -> CompilerCommand {
    CompilerCommand {
        limits,
        turns,
        ..CompilerCommand::new("/proc/self/exe", vec!["compile".to_owned()])
    }
}

/// What one compile of a portable module may take. Wasmtime and Wasmer compile in a compiler
/// process of their own, which is stopped at either limit; WAMR loads modules in the serving
/// process, without these limits.
#[derive(Debug, Args)]
#[command(next_help_heading = "Compiles")]
pub struct CompileLimitArgs {
    /// How long one module may take to compile (e.g. 60s, 5m). A module that takes longer
    /// fails its /init (or its create, in standalone) as too large to compile here.
    #[arg(long, default_value = "5m", value_parser = parse_duration, env = "OW_COMPILE_TIMEOUT")]
    pub compile_timeout: Duration,

    /// The most memory one module's compile may allocate (e.g. 512MiB, 4GiB), its threads'
    /// stacks included (at most 4 threads, about 2 MiB each). A module that needs more fails
    /// its /init (or its create, in standalone) as too large to compile here.
    #[arg(long, default_value_t = ByteSize(CompileLimits::default().memory), env = "OW_COMPILE_MEMORY")]
    pub compile_memory: ByteSize,

    /// Compiler processes that may run at once, for every engine together; more compiles wait
    /// their turn, in the order they came. The memory compiles take is at most this many times
    /// --compile-memory [default: the number of cores].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024), env = "OW_MAX_COMPILES")]
    pub max_compiles: Option<u32>,
}

impl CompileLimitArgs {
    /// The limits these flags describe.
    pub fn limits(&self) -> CompileLimits {
        CompileLimits {
            timeout: self.compile_timeout,
            memory: self.compile_memory.0,
        }
    }

    /// The bound on compiles at once these flags describe.
    pub fn turns(&self) -> CompileTurns {
        match self.max_compiles {
            Some(most) => CompileTurns::new(most as usize),
            None => CompileTurns::default(),
        }
    }
}

/// Where compiled modules are kept, how many, for how long, and which are compiled at start.
/// Modules that prepared actions use are always kept, whatever the limits say.
#[derive(Debug, Args)]
#[command(next_help_heading = "Module cache")]
pub struct CacheArgs {
    /// Keep compiled modules in this directory, so that a restarted executor does not compile
    /// them again [default: standalone: <data-dir>/module-cache; runtime and executor: none].
    /// Whoever can write into it can make the executor run native code: give it a directory
    /// only the executor can write.
    #[arg(long, env = "OW_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Keep compiled modules in memory only, not on disk: standalone then writes no module
    /// cache under its data directory (runtime and executor mode keep none unless given
    /// `--cache-dir`).
    #[arg(long, conflicts_with = "cache_dir", env = "OW_NO_DISK_CACHE")]
    pub no_disk_cache: bool,

    /// Before serving, compile every .wasm file and every zip holding a module under this
    /// directory and its subdirectories, so that their first cold start is a cache hit.
    /// Files that cannot be compiled are named, with the reason, and skipped.
    #[arg(long, env = "OW_PRECACHE")]
    pub precache: Option<PathBuf>,

    /// The most compiled modules kept in memory.
    #[arg(long, default_value_t = CachePolicy::default().max_entries, value_parser = RangedU64ValueParser::<usize>::new().range(1..), env = "OW_MEMORY_CACHE_ENTRIES")]
    pub memory_cache_entries: usize,

    /// The most module code kept in memory, in bytes (e.g. 512MiB, 2GiB).
    #[arg(long, default_value_t = ByteSize(CachePolicy::default().max_bytes), env = "OW_MEMORY_CACHE_BYTES")]
    pub memory_cache_bytes: ByteSize,

    /// Which unused modules a full memory cache lets go first: lru (the least recently used)
    /// or lfu (the least often used).
    #[arg(long, default_value_t = Eviction::default(), env = "OW_MEMORY_CACHE_POLICY")]
    pub memory_cache_policy: Eviction,

    /// How long an unused module stays in memory after its last use (e.g. 30m, 24h)
    /// [default: until the size limits need its room].
    #[arg(long, value_parser = parse_duration, env = "OW_MEMORY_CACHE_TTL")]
    pub memory_cache_ttl: Option<Duration>,

    /// The most compiled modules kept in the cache directory.
    #[arg(long, default_value_t = CachePolicy::on_disk().max_entries, value_parser = RangedU64ValueParser::<usize>::new().range(1..), env = "OW_DISK_CACHE_ENTRIES")]
    pub disk_cache_entries: usize,

    /// The most bytes of compiled modules kept in the cache directory (e.g. 512MiB, 10GiB).
    #[arg(long, default_value_t = ByteSize(CachePolicy::on_disk().max_bytes), env = "OW_DISK_CACHE_BYTES")]
    pub disk_cache_bytes: ByteSize,

    /// Which modules a full cache directory lets go first: lru (the least recently used) or
    /// lfu (the least often used since the executor started).
    #[arg(long, default_value_t = Eviction::default(), env = "OW_DISK_CACHE_POLICY")]
    pub disk_cache_policy: Eviction,

    /// How long a module stays in the cache directory after its last use (e.g. 24h, 720h)
    /// [default: until the size limits need its room].
    #[arg(long, value_parser = parse_duration, env = "OW_DISK_CACHE_TTL")]
    pub disk_cache_ttl: Option<Duration>,
}

impl CacheArgs {
    /// The in-memory cache's policy.
    pub fn memory_policy(&self) -> CachePolicy {
        CachePolicy {
            max_entries: self.memory_cache_entries,
            max_bytes: self.memory_cache_bytes.0,
            ttl: self.memory_cache_ttl,
            eviction: self.memory_cache_policy,
        }
    }

    /// The on-disk cache's policy.
    pub fn disk_policy(&self) -> CachePolicy {
        CachePolicy {
            max_entries: self.disk_cache_entries,
            max_bytes: self.disk_cache_bytes.0,
            ttl: self.disk_cache_ttl,
            eviction: self.disk_cache_policy,
        }
    }
}

/// A number of bytes, written with an optional unit: `B`, binary `KiB` `MiB` `GiB` `TiB`
/// (also `K` `M` `G` `T`), or decimal `kB` `MB` `GB` `TB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// The units [`ByteSize`] reads, largest first within each kind; the binary ones are also
/// how it is written back.
const BYTE_UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("T", 1 << 40),
    ("G", 1 << 30),
    ("M", 1 << 20),
    ("K", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("kB", 1_000),
    ("B", 1),
    ("", 1),
];

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (number, unit) = number_and_unit(text, "a size such as 512MiB, 2GiB or 1000000")?;
        let unit = unit.trim();
        let &(_, scale) = BYTE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .ok_or_else(|| {
                format!("{text:?} has an unknown unit; use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB")
            })?;
        match number.checked_mul(scale) {
            Some(0) => Err("a size must be greater than zero".to_owned()),
            Some(bytes) => Ok(Self(bytes)),
            None => Err(format!("{text:?} is more bytes than can be counted")),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binary = &BYTE_UNITS[..4];
        match binary
            .iter()
            .find(|&&(_, scale)| self.0 >= scale && self.0.is_multiple_of(scale))
        {
            Some((unit, scale)) => write!(f, "{}{unit}", self.0 / scale),
            None => write!(f, "{}B", self.0),
        }
    }
}

/// OpenWhisk's per-action limits, with its defaults.
#[derive(Debug, Args)]
#[command(next_help_heading = "Activation limits")]
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

/// Splits `512MiB` into `512` and `MiB`; `what` names, for the error, what `text` should be.
fn number_and_unit<'a>(text: &'a str, what: &str) -> Result<(u64, &'a str), String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number = number
        .parse()
        .map_err(|_| format!("{text:?} is not {what}"))?;
    Ok((number, unit))
}

/// Parses `500ms`, `60s`, `5m`, `24h`, or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = number_and_unit(text, "a duration such as 500ms, 60s or 5m")?;
    let duration = match unit {
        "" | "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        _ => return Err(format!("{text:?} has an unknown unit; use ms, s, m or h")),
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
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes_parse_with_units_and_print_back() {
        assert_eq!("512MiB".parse(), Ok(ByteSize(512 << 20)));
        assert_eq!("2g".parse(), Ok(ByteSize(2 << 30)));
        assert_eq!("1kB".parse(), Ok(ByteSize(1000)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert!("0MiB".parse::<ByteSize>().is_err());
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("much".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        assert_eq!(ByteSize(1536 << 20).to_string(), "1536MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn engines_is_a_command_of_its_own_and_the_modes_serve() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(args)
                .expect("the command parses")
                .command
        };
        assert!(matches!(
            parse(&["ow-executor", "engines"]),
            Command::Engines
        ));
        assert!(matches!(
            parse(&["ow-executor", "runtime"]),
            Command::Serve(ServingMode::Runtime(_))
        ));
        assert!(
            Cli::try_parse_from(["ow-executor", "engines", "--listen", "127.0.0.1:0"]).is_err()
        );
    }

    #[test]
    fn the_cache_flags_reach_the_engine_configuration() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).expect("the flags parse").command;
        let Command::Serve(ServingMode::Standalone(standalone)) = parse(&[
            "ow-executor",
            "standalone",
            "--data-dir",
            "/srv/ow",
            "--memory-cache-entries",
            "1",
            "--memory-cache-policy",
            "lfu",
            "--disk-cache-bytes",
            "512MiB",
            "--disk-cache-ttl",
            "24h",
        ]) else {
            panic!("standalone parses as standalone");
        };
        let config = standalone
            .engine
            .config(Some(&standalone.default_cache_dir()));
        assert_eq!(
            config.memory_cache,
            CachePolicy {
                max_entries: 1,
                eviction: Eviction::Lfu,
                ..CachePolicy::default()
            }
        );
        assert_eq!(
            config.disk_cache,
            Some(DiskCacheConfig {
                dir: PathBuf::from("/srv/ow/module-cache"),
                policy: CachePolicy {
                    max_bytes: 512 << 20,
                    ttl: Some(Duration::from_secs(86_400)),
                    ..CachePolicy::on_disk()
                },
            })
        );

        let Command::Serve(ServingMode::Runtime(runtime)) = parse(&["ow-executor", "runtime"])
        else {
            panic!("runtime parses as runtime");
        };
        let config = runtime.engine.config(None);
        assert_eq!(config.memory_cache, CachePolicy::default());
        assert_eq!(
            config.disk_cache, None,
            "runtime mode caches in memory only"
        );
        let Command::Serve(ServingMode::Executor(executor)) =
            parse(&["ow-executor", "executor", "--cache-dir", "/c"])
        else {
            panic!("executor parses as executor");
        };
        let dir = executor.engine.config(None).disk_cache.map(|disk| disk.dir);
        assert_eq!(dir, Some(PathBuf::from("/c")));
        let Command::Serve(ServingMode::Standalone(standalone)) =
            parse(&["ow-executor", "standalone", "--no-disk-cache"])
        else {
            panic!("standalone parses as standalone");
        };
        let config = standalone
            .engine
            .config(Some(&standalone.default_cache_dir()));
        assert_eq!(config.disk_cache, None, "--no-disk-cache keeps none");
        for refused in [
            &["ow-executor", "runtime", "--memory-cache-entries", "0"][..],
            &["ow-executor", "runtime", "--disk-cache-policy", "arc"],
            &["ow-executor", "runtime", "--memory-cache-bytes", "lots"],
            &[
                "ow-executor",
                "standalone",
                "--no-disk-cache",
                "--cache-dir",
                "/c",
            ],
        ] {
            assert!(Cli::try_parse_from(refused).is_err(), "{refused:?}");
        }
    }

    /// Every serving mode compiles in this executor's own program, run as `compile ENGINE`
    /// (the subcommand is tested with the executable), and says so in its configuration.
    #[test]
    #[cfg(target_os = "linux")]
    fn every_serving_mode_compiles_in_a_compiler_process_of_its_own_program() {
        let compiler = CompilePlace::CompilerProcess(CompilerCommand::new(
            "/proc/self/exe",
            vec!["compile".to_owned()],
        ));
        for mode in ["runtime", "executor", "standalone"] {
            let Command::Serve(serving) = Cli::try_parse_from(["ow-executor", mode])
                .expect("the mode parses")
                .command
            else {
                panic!("{mode} is a serving mode");
            };
            let engine = match &serving {
                ServingMode::Runtime(args) => &args.engine,
                ServingMode::Executor(args) => &args.engine,
                ServingMode::Standalone(args) => &args.engine,
            };
            assert_eq!(engine.config(None).compile_in, compiler, "{mode}");
        }
        let default = EngineKind::default();
        let parsed = Cli::try_parse_from(["ow-executor", "compile", default.name()]);
        let Command::Compile(compile) = parsed.expect("compile parses").command else {
            panic!("compile parses as compile");
        };
        assert_eq!(compile.engine, default);
    }

    #[test]
    fn the_compile_flags_limit_every_compiler_process() {
        let compiler = executor_compiler(&[
            "--compile-timeout",
            "90s",
            "--compile-memory",
            "512MiB",
            "--max-compiles",
            "3",
        ]);
        assert_eq!(
            compiler.limits,
            CompileLimits {
                timeout: Duration::from_secs(90),
                memory: 512 << 20,
            }
        );
        assert_eq!(compiler.turns.most(), 3);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            executor_compiler(&[]).turns.most(),
            cores,
            "one compile per core unless told"
        );
        for refused in ["0", "1025", "many"] {
            let parsed =
                Cli::try_parse_from(["ow-executor", "executor", "--max-compiles", refused]);
            assert!(parsed.is_err(), "--max-compiles {refused}");
        }
    }

    /// The compiler command of `ow-executor executor` with `flags`.
    fn executor_compiler(flags: &[&str]) -> CompilerCommand {
        let parsed = Cli::try_parse_from(["ow-executor", "executor"].iter().chain(flags));
        let Command::Serve(ServingMode::Executor(args)) = parsed.expect("it parses").command else {
            panic!("executor parses as executor");
        };
        let CompilePlace::CompilerProcess(compiler) = args.engine.config(None).compile_in else {
            panic!("the executor compiles in compiler processes");
        };
        compiler
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
