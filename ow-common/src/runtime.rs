//! The engine seam: [`WasmRuntime`] prepares an action once, [`PreparedAction`] runs one
//! activation per call in a fresh instance. Every engine crate implements both; the executor
//! holds prepared actions as `Arc<dyn PreparedAction>` handles.

use crate::capabilities::Capabilities;
use crate::code::{CodeError, ModuleCode, ModuleFormat};
use crate::protocol::sentences;
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionConfig {
    /// Host capabilities granted by annotations.
    pub capabilities: Capabilities,
    /// Limits on every activation.
    pub limits: Limits,
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
            if !logs.stderr.is_empty() && !logs.stderr.ends_with(b"\n") {
                logs.stderr.push(b'\n');
            }
            logs.stderr.extend_from_slice(detail.as_bytes());
            logs.stderr.push(b'\n');
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
}

/// An engine: turns action code into a prepared, instantiable action.
pub trait WasmRuntime: Send + Sync + 'static {
    /// The engine's name, as `--engine` spells it.
    fn name(&self) -> &'static str;

    /// Validates and compiles (or deserializes) the code, links it against the host functions
    /// the configuration grants and pre-instantiates it. Identical code is compiled once.
    fn prepare(
        &self,
        code: ModuleCode,
        config: ActionConfig,
    ) -> BoxFuture<'_, Result<Arc<dyn PreparedAction>, InitError>>;
}

/// A prepared action. Each [`run`](PreparedAction::run) is one activation in a fresh
/// instance; runs may overlap. Dropping the last handle frees the action.
pub trait PreparedAction: Send + Sync + fmt::Debug {
    /// Runs one activation to completion, within its deadline.
    fn run(&self, activation: Activation) -> BoxFuture<'_, Completion>;
}

/// Why an action could not be prepared. Every message says what to do about it.
#[derive(Debug, thiserror::Error)]
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
    /// The module speaks neither guest ABI.
    #[error(
        "The module exports neither __ow_main (an ow-wasm-action SDK action) nor _start (a WASI \
         command reading its parameters from stdin); build it with pass_json! or as a WASI \
         program."
    )]
    NoEntryPoint,
    /// A capability could not be granted (a `dir` that does not exist, say).
    #[error("The action's capabilities cannot be granted: {0}")]
    Capability(String),
    /// The `limits` annotation is not one OpenWhisk would accept.
    #[error("The action's limits cannot be applied: {0}")]
    Limits(String),
    /// The engine failed for a reason that is not the action's fault.
    #[error("The executor could not prepare the action: {0}")]
    Engine(String),
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
