//! `ow-evaluation`: measurements of ow-wasm against the real `ow-executor` binary, with the
//! baselines that make numbers from a noisy shared machine mean something measured in the
//! same invocation: `http-floor` (a plain hyper server answering the same JSON) and `native`
//! (the `hash` example compiled natively, in-process and as one process per request).
//!
//! One module per subcommand (`cold_start`, `throughput`, `ramp`, `realistic`, `memory`,
//! `soak`, `all`), the performance bars `all` reads off their tables (`bars`), over shared
//! parts: the executor process (`executor`), the load generator
//! (`load`), the baselines (`floor`, `native`), the actions and their bodies (`actions`),
//! statistics (`stats`), tables (`report`) and charts (`plot`). The library never prints:
//! each subcommand returns a [`report::Report`] that the binary prints and writes.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

// The `hash` example is compiled natively from its own source file (see `native`): its
// `ow_wasm_action::pass_json!(hash)` line resolves to this crate's native `pass_json!`.
extern crate self as ow_wasm_action;

pub mod actions;
pub mod all;
pub mod bars;
pub mod cold_start;
pub mod executor;
pub mod floor;
pub mod load;
pub mod memory;
pub mod native;
pub mod plot;
pub mod progress;
pub mod ramp;
pub mod realistic;
pub mod report;
pub mod soak;
pub mod stats;
pub mod throughput;

use std::path::PathBuf;

/// What every subcommand is given: where the binaries are, which engines to measure, and
/// where the results go.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The `ow-executor` binary under test.
    pub executor: PathBuf,
    /// The engines to measure, each compiled into `executor`.
    pub engines: Vec<String>,
    /// Those of `engines` that run Wasm SIMD, as `ow-executor engines` says.
    pub wasm_simd_engines: Vec<String>,
    /// This binary (`ow-evaluation`), which serves the `http-floor` baseline.
    pub evaluation: PathBuf,
    /// The `ow-native-action` binary of the `native-process` baseline.
    pub native_action: PathBuf,
    /// Where CSV, JSON and PNG files go (`target/evaluation`).
    pub out_dir: PathBuf,
}

impl Setup {
    /// Whether `engine` runs Wasm SIMD code.
    pub fn runs_wasm_simd(&self, engine: &str) -> bool {
        self.wasm_simd_engines.iter().any(|simd| simd == engine)
    }
}

/// How long and how wide each subcommand measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// Short runs and few sizes: every subcommand of `all` in under 10 minutes on 2 cores.
    Quick,
    /// Long runs and every size the issue names.
    #[default]
    Full,
}

impl Profile {
    /// `quick` or `full`, as this profile says.
    pub fn pick<T>(self, quick: T, full: T) -> T {
        match self {
            Self::Quick => quick,
            Self::Full => full,
        }
    }
}

/// Parses `500ms`, `3s`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 3s or 2m"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1e3,
        "m" => number * 60.0,
        _ => return Err(format!("{text:?} has an unknown unit; use ms, s or m")),
    };
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn profiles_pick_their_value() {
        assert_eq!(Profile::Quick.pick(1, 2), 1);
        assert_eq!(Profile::Full.pick(1, 2), 2);
    }
}
