//! `ow-evaluation`: load runs against the real `ow-executor` binary, reported as numbers a
//! reader can compare (JSON on stdout, progress on stderr).
//!
//! `soak` drives one `runtime` container with many activations from a few client threads and
//! samples the executor's resident memory as it goes: the memory after warm-up and at the end
//! should match, or something leaks per activation.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use anyhow::{Context, bail, ensure};
use base64::Engine as _;
use clap::{Parser, Subcommand};
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Load runs against ow-executor.
#[derive(Debug, Parser)]
#[command(name = "ow-evaluation", about)]
struct Cli {
    #[command(subcommand)]
    command: Run,

    /// The ow-executor binary [default: next to this one, in the same target directory].
    #[arg(long, global = true)]
    executor: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Run {
    /// Many activations of one action; reports resident memory over time.
    Soak {
        /// How many activations.
        #[arg(long, default_value_t = 100_000)]
        activations: u64,
        /// Concurrent client connections.
        #[arg(long, default_value_t = 8)]
        clients: u64,
        /// Which example action (`add`, `echo`, `log`, `hash`).
        #[arg(long, default_value = "add")]
        action: String,
        /// Activations that count as warm-up, before the baseline memory sample.
        #[arg(long, default_value_t = 10_000)]
        warmup: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let executor = match cli.executor {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the binary has a directory")?
            .join("ow-executor"),
    };
    ensure!(
        executor.is_file(),
        "{} does not exist: build it with `cargo build --release -p ow-executor` or pass --executor",
        executor.display()
    );
    match cli.command {
        Run::Soak {
            activations,
            clients,
            action,
            warmup,
        } => {
            let report = soak(&executor, activations, clients, &action, warmup)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

/// A runtime-mode executor on a free port, killed when dropped.
struct Runtime {
    child: Child,
    url: String,
}

impl Runtime {
    fn start(executor: &PathBuf) -> anyhow::Result<Self> {
        let mut child = Command::new(executor)
            .args(["runtime", "--listen", "127.0.0.1:0"])
            // Only the line that names the port, not one line per activation.
            .env("OW_LOG", "ow_executor::server=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", executor.display()))?;
        // Diagnostics and action logs share stderr here; the first diagnostic names the port,
        // and the rest is drained so the executor never blocks on a full pipe.
        let stderr = child.stderr.take().context("stderr is piped")?;
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let Some(line) = lines.next() else {
                bail!("ow-executor exited before listening")
            };
            if let Some(rest) = line?.split("listening on ").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self {
            child,
            url: format!("http://{address}"),
        })
    }

    fn resident_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("VmRSS is missing from /proc")
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn module_for(action: &str) -> anyhow::Result<(&'static str, Value)> {
    Ok(match action {
        "add" => (artifacts::ADD, json!({"param1": 2, "param2": 2})),
        "echo" => (artifacts::ECHO, json!({"payload": "x".repeat(256)})),
        "log" => (artifacts::LOG, json!({"lines": 5})),
        "hash" => (artifacts::HASH, json!({"iterations": 100})),
        other => bail!("unknown action {other}; use add, echo, log or hash"),
    })
}

fn soak(
    executor: &PathBuf,
    activations: u64,
    clients: u64,
    action: &str,
    warmup: u64,
) -> anyhow::Result<Value> {
    let (module, params) = module_for(action)?;
    let runtime = Runtime::start(executor)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let zip = ow_common::code::zip_module("action.wasm", &artifacts::read(module))?;
    let init = json!({"value": {"code": base64::engine::general_purpose::STANDARD.encode(zip), "binary": true}});
    let status = agent
        .post(format!("{}/init", runtime.url))
        .send_json(&init)?
        .status();
    ensure!(status == 200, "/init answered {status}");

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (done, failed, url) =
                (done.clone(), failed.clone(), format!("{}/run", runtime.url));
            let body = json!({"value": params});
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                while done.fetch_add(1, Ordering::Relaxed) < activations {
                    match agent.post(&url).send_json(&body) {
                        Ok(response) if response.status() == 200 => {}
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    let mut samples = Vec::new();
    let mut baseline = None;
    loop {
        let finished = done.load(Ordering::Relaxed).min(activations);
        let rss = runtime.resident_kib()?;
        samples.push(json!({"activations": finished, "seconds": started.elapsed().as_secs_f64(), "rss_kib": rss}));
        if baseline.is_none() && finished >= warmup {
            baseline = Some(rss);
        }
        eprintln!("{finished}/{activations} activations, RSS {rss} KiB");
        if workers.iter().all(|w| w.is_finished()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    let elapsed = started.elapsed();
    let end = runtime.resident_kib()?;
    let baseline = baseline.unwrap_or(end);
    Ok(json!({
        "action": action,
        "activations": activations,
        "clients": clients,
        "failed": failed.load(Ordering::Relaxed),
        "seconds": elapsed.as_secs_f64(),
        "activations_per_second": activations as f64 / elapsed.as_secs_f64(),
        "rss_after_warmup_kib": baseline,
        "rss_at_end_kib": end,
        "rss_end_over_warmup": end as f64 / baseline as f64,
        "samples": samples,
    }))
}
