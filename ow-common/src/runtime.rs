//! The engine seam: [`WasmRuntime`] prepares an action once, [`PreparedAction`] runs one
//! activation per call in a fresh instance. Every engine crate implements both; the executor
//! holds prepared actions as `Arc<dyn PreparedAction>` handles.

use crate::cache::{CachePolicy, CacheStats};
use crate::capabilities::Capabilities;
use crate::code::{CodeError, ModuleCode, ModuleFormat};
use crate::protocol::sentences;
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A boxed, sendable future: what the object-safe engine traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// OpenWhisk's default memory limit (256 MB).
pub const DEFAULT_MEMORY_LIMIT_BYTES: u64 = 256 * 1024 * 1024;
/// OpenWhisk's default log limit (10 MB).
pub const DEFAULT_LOG_LIMIT_BYTES: u64 = 10 * 1024 * 1024;
/// OpenWhisk's default time limit (60 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// OpenWhisk's default result size limit (1 MB).
pub const DEFAULT_RESULT_LIMIT_BYTES: u64 = 1024 * 1024;
/// The most elements one table may grow to. Tables count against the memory limit by element
/// count: every engine caps them here, and a refused growth reads as the memory limit.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Per-action limits an engine enforces on every activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Cap on linear memory (and, by element count, tables) of one instance.
    pub memory_bytes: u64,
    /// Cap on the bytes captured from stdout and stderr together; the rest is dropped and a
    /// truncation notice appended.
    pub log_bytes: u64,
    /// Cap on the size of the JSON result. A larger result is refused with OpenWhisk's
    /// sentence, and an engine does not copy it out of the instance.
    pub result_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_LIMIT_BYTES,
            log_bytes: DEFAULT_LOG_LIMIT_BYTES,
            result_bytes: DEFAULT_RESULT_LIMIT_BYTES,
        }
    }
}

/// Everything an engine needs to know about an action besides its code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionConfig {
    /// Host capabilities granted by annotations.
    pub capabilities: Capabilities,
    /// Limits on every activation.
    pub limits: Limits,
    /// The action's `main`: the function the export-call ABI calls, when the module exports
    /// one of that name (see [`GuestAbi::detect`](crate::host::abi::GuestAbi::detect)).
    /// Default [`DEFAULT_MAIN`](crate::abi::DEFAULT_MAIN), as OpenWhisk sends it.
    pub main: String,
}

impl Default for ActionConfig {
    fn default() -> Self {
        Self {
            capabilities: Capabilities::default(),
            limits: Limits::default(),
            main: crate::abi::DEFAULT_MAIN.to_owned(),
        }
    }
}

/// One activation's input.
#[derive(Debug, Clone)]
pub struct Activation {
    /// The parameters (object or array).
    pub params: Value,
    /// The activation's environment: the init `env` overlaid with this run's `__OW_*` values.
    pub env: Vec<(String, String)>,
    /// When the engine must stop the action.
    pub deadline: Instant,
    /// The time limit reported in the timeout sentence.
    pub time_limit: Duration,
}

/// What one activation produced: the action's verdict (a result, which may itself be an
/// application error `{"error": …}`) or why there is none, and the captured logs.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The JSON result (object or array), or the reason the action produced none.
    pub outcome: Result<Value, RunError>,
    /// The activation's captured output.
    pub logs: Logs,
}

impl Completion {
    /// An activation's end. The detail of a failure that the platform's sentence leaves out
    /// (an exit code, a trap) is added to the logs as the last stderr line.
    pub fn new(outcome: Result<Value, RunError>, mut logs: Logs) -> Self {
        if let Some(detail) = outcome.as_ref().err().and_then(RunError::detail) {
            logs.push_stderr_line(&detail);
        }
        Self { outcome, logs }
    }

    /// An activation that ended before the action could run or print anything.
    pub fn failed(error: RunError) -> Self {
        Self {
            outcome: Err(error),
            logs: Logs::default(),
        }
    }
}

/// Captured stdout and stderr of one activation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logs {
    /// Bytes the action wrote to stdout, minus the stdio ABI's result line.
    pub stdout: Vec<u8>,
    /// Bytes the action wrote to stderr.
    pub stderr: Vec<u8>,
    /// When the bytes of both streams were written, in order. An engine may cover fewer
    /// bytes than the streams hold (what it adds at the end, a capped record): the rest count
    /// as written when the activation ended.
    pub writes: Vec<LogWrite>,
}

/// One of an activation's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl LogStream {
    /// `stdout` or `stderr`, as OpenWhisk's log lines name them.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// `len` bytes written to `stream` at `at` (adjacent writes to one stream may be merged, at
/// the time of the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogWrite {
    /// When.
    pub at: SystemTime,
    /// To which stream.
    pub stream: LogStream,
    /// How many bytes.
    pub len: usize,
}

/// One line of an activation's logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When its last byte was written.
    pub at: SystemTime,
    /// Its stream.
    pub stream: LogStream,
    /// The line, without its line ending.
    pub text: String,
}

impl Logs {
    /// Adds a line of the platform's own (a truncation notice, a trap) to the end of stderr,
    /// on a line of its own.
    pub fn push_stderr_line(&mut self, line: &str) {
        if !self.stderr.is_empty() && !self.stderr.ends_with(b"\n") {
            self.stderr.push(b'\n');
        }
        self.stderr.extend_from_slice(line.as_bytes());
        self.stderr.push(b'\n');
    }

    /// The lines of both streams in the order they were completed, as `wsk activation logs`
    /// shows them; bytes [`Logs::writes`] does not cover count as written at `end`, stdout's
    /// before stderr's.
    pub fn lines(&self, end: SystemTime) -> Vec<LogLine> {
        let mut streams = [
            LineSplitter::new(LogStream::Stdout, &self.stdout),
            LineSplitter::new(LogStream::Stderr, &self.stderr),
        ];
        let mut lines = Vec::new();
        for write in &self.writes {
            let splitter = match write.stream {
                LogStream::Stdout => &mut streams[0],
                LogStream::Stderr => &mut streams[1],
            };
            let upto = splitter.written.saturating_add(write.len);
            splitter.complete_lines(upto, write.at, &mut lines);
        }
        for splitter in &mut streams {
            splitter.complete_lines(usize::MAX, end, &mut lines);
            splitter.last_line(end, &mut lines);
        }
        lines
    }
}

/// Cuts one stream into lines as the writes that filled it are replayed.
struct LineSplitter<'a> {
    stream: LogStream,
    bytes: &'a [u8],
    /// How many bytes the replayed writes have covered.
    written: usize,
    /// Where the line not yet ended starts.
    line_start: usize,
}

impl<'a> LineSplitter<'a> {
    fn new(stream: LogStream, bytes: &'a [u8]) -> Self {
        Self {
            stream,
            bytes,
            written: 0,
            line_start: 0,
        }
    }

    /// Emits every line that a newline before `upto` ends, stamped `at`.
    fn complete_lines(&mut self, upto: usize, at: SystemTime, lines: &mut Vec<LogLine>) {
        self.written = upto.min(self.bytes.len());
        while let Some(newline) = self.bytes[self.line_start..self.written]
            .iter()
            .position(|&byte| byte == b'\n')
        {
            let end = self.line_start + newline;
            self.push(self.line_start, end, at, lines);
            self.line_start = end + 1;
        }
    }

    /// Emits the stream's last line when no newline ended it.
    fn last_line(&mut self, at: SystemTime, lines: &mut Vec<LogLine>) {
        if self.line_start < self.bytes.len() {
            self.push(self.line_start, self.bytes.len(), at, lines);
            self.line_start = self.bytes.len();
        }
    }

    fn push(&self, start: usize, end: usize, at: SystemTime, lines: &mut Vec<LogLine>) {
        let text = String::from_utf8_lossy(&self.bytes[start..end]);
        lines.push(LogLine {
            at,
            stream: self.stream,
            text: text.trim_end_matches('\r').to_owned(),
        });
    }
}

/// Engine settings every engine takes. The defaults suit an executor serving one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Accept the engine's precompiled artifacts. They are native code: deserializing
    /// untrusted ones is unsafe, so this is off unless the operator trusts the action source.
    pub trust_precompiled: bool,
    /// How many instances may exist at once: the bound on concurrently running activations.
    /// Activations beyond it wait for a slot, until their deadline. Default 1000.
    pub max_instances: u32,
    /// How many compiled modules the engine keeps in memory, and which go first: modules in
    /// use are always kept.
    pub memory_cache: CachePolicy,
    /// Where compiled modules are kept across restarts, if anywhere. Default none.
    pub disk_cache: Option<DiskCacheConfig>,
    /// Where portable modules are compiled. Default: in this process.
    pub compile_in: CompilePlace,
}

/// Where portable modules are compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CompilePlace {
    /// In the serving process, on a blocking thread (what a library or a test that has no
    /// compiler program does).
    #[default]
    ThisProcess,
    /// In a process of its own for each compile (see `host::compiler_process`), for engines
    /// with artifacts; an engine without any compiles in this process. The serving process
    /// then never runs the compiler: its code and working memory stay out of the server's
    /// resident memory, and a compiler that crashes fails one `/init`, not the server.
    CompilerProcess(CompilerCommand),
}

/// The command that starts a compiler process: `program`, then `args`, then the engine's name.
/// It reads a portable module on stdin and writes the engine's artifact on stdout, within
/// `limits`, when `turns` gives it its turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments before the engine's name.
    pub args: Vec<String>,
    /// How long and how much memory one compile may take.
    pub limits: CompileLimits,
    /// How many compiler processes may run at once. Every engine given a clone of this
    /// command shares the count.
    pub turns: CompileTurns,
}

impl CompilerCommand {
    /// `program` with `args`, within the default [`CompileLimits`] and [`CompileTurns`].
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            program: program.into(),
            args,
            limits: CompileLimits::default(),
            turns: CompileTurns::default(),
        }
    }
}

/// The bound on compiler processes running at once, shared by its clones: a compile waits for
/// its turn, in the order the compiles asked, before its process starts.
///
/// Why: each compile may take its whole [`CompileLimits::memory`], so without a bound a burst
/// of new modules could ask the machine for that much times the burst (64 first `/init`s at
/// once started 64 compilers), and compilers beyond the cores only share them: the burst ends
/// no sooner, but every compile in it ends late. With the bound, the memory compiles take is at
/// most `most` times the limit, and the first compiles asked for end first.
#[derive(Debug, Clone)]
pub struct CompileTurns {
    most: usize,
    queue: Arc<TurnQueue>,
}

/// The tickets of [`CompileTurns`]: ticket `n` (counting from 0, in the order compiles asked)
/// may run once `n < finished + most`, so at most `most` run and none overtakes another.
#[derive(Debug, Default)]
struct TurnQueue {
    tickets: std::sync::Mutex<Tickets>,
    turn_ended: std::sync::Condvar,
}

#[derive(Debug, Default)]
struct Tickets {
    issued: u64,
    finished: u64,
}

impl CompileTurns {
    /// At most `most` compiler processes at once (at least one).
    pub fn new(most: usize) -> Self {
        Self {
            most: most.max(1),
            queue: Arc::default(),
        }
    }

    /// How many compiler processes may run at once.
    pub fn most(&self) -> usize {
        self.most
    }

    /// Waits for this compile's turn, blocking the thread, and calls `waiting` first if the
    /// turn is not there yet; the turn ends when the returned value is dropped.
    pub fn wait(&self, waiting: impl FnOnce()) -> CompileTurn<'_> {
        let queue = &self.queue;
        let mut tickets = queue.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = tickets.issued;
        tickets.issued += 1;
        if ticket >= tickets.finished + self.most as u64 {
            waiting();
        }
        while ticket >= tickets.finished + self.most as u64 {
            tickets = queue
                .turn_ended
                .wait(tickets)
                .unwrap_or_else(|e| e.into_inner());
        }
        CompileTurn { queue }
    }

    /// Compiles waiting for their turn now.
    #[cfg(test)]
    fn waiting(&self) -> u64 {
        let tickets = self.queue.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let may_run = tickets.finished + self.most as u64;
        tickets.issued.saturating_sub(may_run)
    }
}

impl Default for CompileTurns {
    /// One compiler process per core: a compile spreads its functions over the cores, but its
    /// serial parts (reading the module, writing the artifact) leave them to another compile;
    /// more at once would only share them.
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl PartialEq for CompileTurns {
    /// Two bounds are the same setting when they allow as many compiles at once.
    fn eq(&self, other: &Self) -> bool {
        self.most == other.most
    }
}

impl Eq for CompileTurns {}

/// A compile's turn, from [`CompileTurns::wait`]; dropping it lets the next compile run.
#[derive(Debug)]
pub struct CompileTurn<'a> {
    queue: &'a TurnQueue,
}

impl Drop for CompileTurn<'_> {
    fn drop(&mut self) {
        let mut tickets = self.queue.tickets.lock().unwrap_or_else(|e| e.into_inner());
        tickets.finished += 1;
        drop(tickets);
        self.queue.turn_ended.notify_all();
    }
}

/// What one compile in a compiler process may take. Past either limit the compile fails as the
/// module's fault ([`InitError::CompileTimeout`], [`InitError::CompileMemory`]): a module that
/// needs that much is too large for this executor.
///
/// The defaults leave room for the largest module OpenWhisk takes (48 MB of action code). On
/// the development machine (2 cores), a 27 MB module of 8,000 functions compiled in 31 s on
/// Wasmtime and 37 s on Wasmer, with 205 and 300 MiB resident at most; a Rust action of 200 KiB
/// in 0.14 s with 22 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileLimits {
    /// The compiler process is stopped (its whole process group) once it has run this long.
    pub timeout: Duration,
    /// The most memory the compiler process may allocate, in bytes: its data limit
    /// (`RLIMIT_DATA`, which counts heap and anonymous mappings, thread stacks among them, not
    /// the program's code). A compile uses at most 4 threads, about 2 MiB of stack each.
    pub memory: u64,
}

impl Default for CompileLimits {
    /// Five minutes, OpenWhisk's longest action timeout; 2 GiB of memory.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5 * 60),
            memory: 2 << 30,
        }
    }
}

/// The on-disk compiled-module cache: a directory the executor owns, and how much it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCacheConfig {
    /// The directory (each engine keeps its entries in a subdirectory of its own).
    pub dir: PathBuf,
    /// How much it keeps.
    pub policy: CachePolicy,
}

/// Activations that may run at once unless configured otherwise.
pub const DEFAULT_MAX_INSTANCES: u32 = 1000;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            trust_precompiled: false,
            max_instances: DEFAULT_MAX_INSTANCES,
            memory_cache: CachePolicy::default(),
            disk_cache: None,
            compile_in: CompilePlace::ThisProcess,
        }
    }
}

impl EngineConfig {
    /// Sets [`EngineConfig::trust_precompiled`].
    pub fn trust_precompiled(&mut self, trust: bool) -> &mut Self {
        self.trust_precompiled = trust;
        self
    }

    /// Sets [`EngineConfig::max_instances`].
    pub fn max_instances(&mut self, count: u32) -> &mut Self {
        self.max_instances = count;
        self
    }

    /// Sets [`EngineConfig::disk_cache`].
    pub fn disk_cache(&mut self, cache: Option<DiskCacheConfig>) -> &mut Self {
        self.disk_cache = cache;
        self
    }

    /// Sets [`EngineConfig::compile_in`].
    pub fn compile_in(&mut self, place: CompilePlace) -> &mut Self {
        self.compile_in = place;
        self
    }

    /// Sets [`EngineConfig::memory_cache`].
    pub fn memory_cache(&mut self, policy: CachePolicy) -> &mut Self {
        self.memory_cache = policy;
        self
    }
}

/// What an engine is doing, for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Distinct modules compiled and held in memory (in use or kept by the cache policy).
    pub cached_modules: usize,
    /// How many times a module was compiled or deserialized rather than found in memory.
    pub module_loads: u64,
    /// How many portable modules were compiled (not read back from the disk cache).
    pub compiles: u64,
    /// The in-memory module cache.
    pub memory_cache: CacheStats,
    /// The on-disk module cache (all zero when there is none). Its `loads` are entries
    /// written.
    pub disk_cache: CacheStats,
    /// Disk cache entries dropped as damaged or refused by the engine.
    pub disk_cache_rejected: u64,
    /// Activations holding an instance slot right now.
    pub instances_in_use: usize,
    /// How many instance slots there are.
    pub instance_slots: usize,
    /// Activations waiting for an instance slot right now.
    pub waiting_for_instance: usize,
}

/// An engine: turns action code into a prepared, instantiable action.
pub trait WasmRuntime: Send + Sync + 'static {
    /// The engine's name, as `--engine` spells it.
    fn name(&self) -> &'static str;

    /// Whether the engine runs Wasm SIMD (`simd128`) code; one that does not refuses it at
    /// prepare.
    fn runs_wasm_simd(&self) -> bool;

    /// The format of the engine's precompiled artifacts, if it has any: what a compiler
    /// process writes for it ([`CompilePlace::CompilerProcess`]).
    fn artifact_format(&self) -> Option<ModuleFormat>;

    /// What the engine is doing right now.
    fn stats(&self) -> EngineStats;

    /// The engine's Prometheus metric families, labelled with its name.
    fn metrics(&self) -> Vec<prometheus::proto::MetricFamily>;

    /// Validates and compiles (or deserializes) the code, links it against the host functions
    /// the configuration grants and pre-instantiates it. Identical code is compiled once.
    fn prepare(
        &self,
        code: ModuleCode,
        config: ActionConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn PreparedAction>, InitError>>;

    /// Compiles (or deserializes) the code into the engine's module caches, in memory and on
    /// disk when there is a disk cache, without preparing an action: the first prepare of the
    /// same code is then a cache hit. The code is admitted as [`WasmRuntime::prepare`] admits
    /// it (precompiled artifacts only when trusted, never another engine's); what an action's
    /// capabilities decide (its imports, its directory) is checked at prepare. The module
    /// stays as long as the memory cache's policy keeps it.
    fn precache(&self, code: ModuleCode) -> BoxFuture<'_, Result<(), InitError>>;
}

/// A prepared action. Each [`run`](PreparedAction::run) is one activation in a fresh
/// instance; runs may overlap. Dropping the last handle frees the action.
pub trait PreparedAction: Send + Sync + fmt::Debug {
    /// Runs one activation to completion, within its deadline.
    fn run(&self, activation: Activation) -> BoxFuture<'_, Completion>;
}

/// Why an action could not be prepared. Every message says what to do about it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InitError {
    /// The code could not be decoded.
    #[error(transparent)]
    Code(#[from] CodeError),
    /// A precompiled artifact arrived and the operator does not trust precompiled code.
    #[error(
        "The action code is {found}, and this executor runs precompiled code only when started \
         with --trust-precompiled; send the portable .wasm instead."
    )]
    UntrustedArtifact {
        /// What was found.
        found: ModuleFormat,
    },
    /// A precompiled artifact for another engine, engine version or configuration.
    #[error(
        "The action code is {found} that this executor's {engine} cannot load ({reason}); \
         rebuild it with `ow-precompiler --engine {engine} action.wasm -o action.zip`, or send \
         the portable .wasm."
    )]
    IncompatibleArtifact {
        /// What was found.
        found: ModuleFormat,
        /// The engine that refused it.
        engine: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A precompiled artifact, for an engine that runs portable modules only.
    #[error(
        "The action code is {found}, and this executor's {engine} runs portable modules only; \
         send the .wasm."
    )]
    PortableOnly {
        /// What was found.
        found: ModuleFormat,
        /// The engine that refused it.
        engine: &'static str,
    },
    /// A format this engine does not run (a component, for now).
    #[error(
        "The action code is {found}; this executor runs WebAssembly core modules built for \
         wasm32-wasip1."
    )]
    UnsupportedFormat {
        /// What was found.
        found: ModuleFormat,
    },
    /// Not valid WebAssembly.
    #[error("The action code is not a valid WebAssembly module: {0}")]
    InvalidModule(String),
    /// The module imports functions the executor does not provide.
    #[error(
        "The action imports {} that this executor does not provide: {}. Actions may import \
         WASI preview 1 (wasi_snapshot_preview1), and http.get when granted net_access.",
        if .0.len() == 1 { "a function" } else { "functions" },
        .0.join(", ")
    )]
    UnknownImports(Vec<String>),
    /// The module speaks no guest ABI.
    #[error(
        "The module exports neither __ow_main (an ow-wasm-action SDK action), nor _start (a WASI \
         command reading its parameters from stdin), nor a function named {main} (the action's \
         main, called with the parameters' args); {}. Build it with pass_json! or as a WASI \
         program, or name the function to call with main.",
        exported_functions(.functions)
    )]
    NoEntryPoint {
        /// The action's `main`.
        main: String,
        /// The functions the module exports, but for the other ABIs' entry points.
        functions: Vec<String>,
    },
    /// The action's `main` names an export whose type is not numbers only.
    #[error(
        "The action's main names the export {export}, of type {ty}; the export-call ABI calls \
         only functions whose parameters and results are numbers (i32, i64, f32, f64)."
    )]
    UncallableExport {
        /// The export.
        export: String,
        /// Its type, as `(externref) -> (i32)`.
        ty: String,
    },
    /// A capability could not be granted (a `dir` that does not exist, say).
    #[error("The action's capabilities cannot be granted: {0}")]
    Capability(String),
    /// The `limits` annotation is not one OpenWhisk would accept.
    #[error("The action's limits cannot be applied: {0}")]
    Limits(String),
    /// The action's `engine` annotation names an engine this executor does not have.
    #[error(
        "The action asks for the engine {asked}, which this executor was not built with; it \
         has {available}."
    )]
    UnavailableEngine {
        /// What the annotation asked for.
        asked: String,
        /// The engines compiled in.
        available: String,
    },
    /// Compiling the module took longer than the executor's [`CompileLimits::timeout`].
    #[error(
        "The action code did not compile within this executor's limit of {} milliseconds.",
        .0.as_millis()
    )]
    CompileTimeout(Duration),
    /// Compiling the module needed more memory than the executor's [`CompileLimits::memory`].
    #[error(
        "The action code needs more memory to compile than this executor's limit of {}.",
        memory_amount(*.0)
    )]
    CompileMemory(u64),
    /// The engine failed for a reason that is not the action's fault.
    #[error("The executor could not prepare the action: {0}")]
    Engine(String),
}

impl InitError {
    /// What went wrong, as a tool other than the executor says it (the compiler process,
    /// `ow-precompiler`): an engine failure without the sentence that blames the executor,
    /// anything else as a user reads it.
    pub fn reason(&self) -> String {
        match self {
            Self::Engine(reason) => reason.clone(),
            other => other.to_string(),
        }
    }
}

/// `512 MiB`, or `1000 bytes` when not a whole number of MiB, for [`InitError::CompileMemory`].
fn memory_amount(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// `it exports the functions a, b` (at most ten named), for [`InitError::NoEntryPoint`].
fn exported_functions(functions: &[String]) -> String {
    const NAMED: usize = 10;
    match functions {
        [] => "it exports no other function".to_owned(),
        [one] => format!("it exports the function {one}"),
        _ if functions.len() <= NAMED => {
            format!("it exports the functions {}", functions.join(", "))
        }
        _ => format!(
            "it exports the functions {} and {} more",
            functions[..NAMED].join(", "),
            functions.len() - NAMED
        ),
    }
}

/// Why an activation produced no result.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RunError {
    /// The deadline passed.
    #[error("{}", sentences::time_limit_exceeded(*.limit_ms))]
    Timeout {
        /// The time limit in milliseconds.
        limit_ms: u64,
    },
    /// The result is JSON but neither object nor array.
    #[error("{}", sentences::NOT_A_DICTIONARY)]
    NotADictionary,
    /// The action ended without a result (no output line, or one that is not JSON).
    #[error("{}", sentences::NO_VALID_RESPONSE)]
    NoValidResponse,
    /// The action exited with a non-zero code before giving a result. The code goes to the
    /// logs ([`RunError::detail`]); the error is the platform's sentence.
    #[error("{}", sentences::NO_VALID_RESPONSE)]
    Exit {
        /// The exit code passed to `proc_exit`.
        code: i32,
    },
    /// The action trapped. The trap goes to the logs ([`RunError::detail`]); the error is the
    /// platform's sentence.
    #[error("{}", sentences::NO_VALID_RESPONSE)]
    Trap {
        /// The engine's description of the trap.
        trap: String,
    },
    /// The result is larger than the limit.
    #[error("{}", sentences::result_too_large(*.size, *.limit))]
    ResultTooLarge {
        /// The result's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The action grew its memory past the limit.
    #[error("The action exceeded its memory limit of {limit_mb} MB and was stopped.")]
    MemoryLimit {
        /// The limit in megabytes.
        limit_mb: u64,
    },
    /// The executor failed, not the action.
    #[error("The executor failed to run the action: {0}")]
    Internal(String),
}

impl RunError {
    /// What the error's sentence leaves out, for the activation's logs: the exit code of an
    /// exit, the engine's words for a trap.
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::Exit { code } => Some(format!("The action exited with code {code}.")),
            Self::Trap { trap } => Some(format!("The action trapped: {trap}")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn write(seconds: u64, stream: LogStream, len: usize) -> LogWrite {
        LogWrite {
            at: at(seconds),
            stream,
            len,
        }
    }

    fn line(seconds: u64, stream: LogStream, text: &str) -> LogLine {
        LogLine {
            at: at(seconds),
            stream,
            text: text.to_owned(),
        }
    }

    #[test]
    fn log_lines_interleave_the_streams_in_the_order_they_were_completed() {
        use LogStream::{Stderr, Stdout};
        let logs = Logs {
            stdout: b"out 1\nout 2 begins ".to_vec(),
            stderr: b"err 1\r\nerr 2\n".to_vec(),
            writes: vec![
                write(1, Stdout, 6),
                write(2, Stderr, 7),
                write(3, Stdout, 4),
                write(4, Stderr, 6),
            ],
        };
        assert_eq!(
            logs.lines(at(9)),
            vec![
                line(1, Stdout, "out 1"),
                line(2, Stderr, "err 1"),
                line(4, Stderr, "err 2"),
                // Unfinished, partly written after the record: the end's time.
                line(9, Stdout, "out 2 begins "),
            ]
        );
    }

    #[test]
    fn bytes_no_write_covers_are_lines_of_the_end() {
        use LogStream::{Stderr, Stdout};
        let logs = Logs {
            stdout: b"a\nb\n".to_vec(),
            stderr: b"The action trapped: unreachable\n".to_vec(),
            writes: vec![write(1, Stdout, 2)],
        };
        assert_eq!(
            logs.lines(at(5)),
            vec![
                line(1, Stdout, "a"),
                line(5, Stdout, "b"),
                line(5, Stderr, "The action trapped: unreachable"),
            ]
        );
        // A write record longer than what was kept (a stdio result line cut off) is clamped.
        let logs = Logs {
            stdout: b"log\n".to_vec(),
            stderr: Vec::new(),
            writes: vec![write(1, Stdout, 100)],
        };
        assert_eq!(logs.lines(at(5)), vec![line(1, Stdout, "log")]);
    }

    /// Blocks until `turns` has `count` compiles waiting.
    fn until_waiting(turns: &CompileTurns, count: u64) {
        while turns.waiting() != count {
            std::thread::yield_now();
        }
    }

    #[test]
    fn compiles_past_the_bound_wait_and_take_their_turns_in_the_order_they_asked() {
        let turns = CompileTurns::new(2);
        let first = turns.wait(|| panic!("the first runs at once"));
        let second = turns.wait(|| panic!("so does the second"));
        let (ran, order) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            for name in ["third", "fourth"] {
                let (asking, ran) = (turns.clone(), ran.clone());
                let queued = turns.waiting() + 1;
                scope.spawn(move || {
                    let _turn = asking.wait(|| ());
                    ran.send(name).expect("the test listens");
                });
                until_waiting(&turns, queued);
            }
            assert_eq!(order.try_recv().ok(), None, "both wait while two run");
            drop(second);
            assert_eq!(
                order.recv().ok(),
                Some("third"),
                "the first to ask goes first"
            );
            drop(first);
            assert_eq!(order.recv().ok(), Some("fourth"));
        });
        assert_eq!(turns.waiting(), 0);
    }

    #[test]
    fn a_bound_of_none_still_runs_one_compile_and_clones_share_the_count() {
        let turns = CompileTurns::new(0);
        assert_eq!(turns.most(), 1);
        let running = turns.wait(|| ());
        let other = turns.clone();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| drop(other.wait(|| ())));
            until_waiting(&turns, 1);
            drop(running);
            waiter.join().expect("the waiting compile gets its turn");
        });
        assert_eq!(CompileTurns::new(3), CompileTurns::new(3));
        assert_ne!(CompileTurns::new(3), CompileTurns::new(4));
    }
}
