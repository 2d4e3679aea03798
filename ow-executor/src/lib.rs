//! The ow-wasm executor: OpenWhisk's action protocols served over Wasm engines.
//!
//! `runtime` mode ([`runtime`]) is the standard action container an unmodified OpenWhisk
//! invoker drives: `POST /init` once, then `POST /run` many times. `standalone` mode
//! ([`standalone`]) is the OpenWhisk REST API on one machine; `executor` mode
//! ([`executor_mode`]) hosts many runtime containers for a Wasm-aware invoker. The HTTP plumbing
//! ([`server`]), the one place errors become statuses ([`error`]) and the activation log
//! channel ([`logs`]) are shared by every mode, as are `--precache` ([`precache`]) and the
//! compiler process every mode starts to compile a portable module ([`compiler_process`]).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
pub mod compiler_process;
pub mod engines;
pub mod error;
pub mod executor_mode;
pub mod logs;
pub mod metrics;
pub mod precache;
pub mod runtime;
pub mod server;
pub mod standalone;
pub mod telemetry;
