//! `memory`: resident memory (`VmRSS`) of the executor (executor mode): idle; added by warm
//! containers (`/start`, `/init`, one `/run`) of a small (a few hundred bytes of WAT), a
//! medium (`echo`, a Rust SDK action) and a large (a generated 300 KiB module) module; and
//! for N containers of one module against N containers of N distinct modules (the large
//! module's bytes, each under its own name, so each is compiled and kept apart).
//! Beside each figure, the part of it that is file-backed (`RssFile`): pages of the executable
//! itself, first run by a compile, clean and shared with every process running the same file.

use crate::actions;
use crate::executor::{Resident, Server};
use crate::load::{Client, Connection, Request};
use crate::plot::{Lines, Scale, Series};
use crate::report::{Report, Table, num};
use crate::{Profile, Setup, progress};
use anyhow::Context;
use ow_wasm_action_artifacts as artifacts;
use serde_json::{Value, json};
use std::time::Duration;

/// Arguments of `memory`.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    /// Containers per module size for the per-container figures [quick: 20, full: 100].
    #[arg(long)]
    pub containers: Option<usize>,
    /// Container counts of the one-module and distinct-modules series (the distinct ones up to
    /// `max_distinct`) [default: 1,10,100,1000, up to the bar's 1,000 in either profile].
    #[arg(long, value_delimiter = ',')]
    pub counts: Vec<usize>,
    /// The largest count of distinct modules (each is compiled) [quick: 100, full: 1000].
    #[arg(long)]
    pub max_distinct: Option<usize>,
    /// Size of the large module, KiB.
    #[arg(long, default_value_t = 300)]
    pub large_kib: usize,
    /// Quick or full.
    #[arg(long, value_enum, default_value_t)]
    pub profile: Profile,
}

/// The columns of the `memory` table.
pub(crate) const COLUMNS: &[&str] = &[
    "engine",
    "measurement",
    "module",
    "module KiB",
    "containers",
    "RSS MiB",
    "RSS file-backed MiB",
    "added MiB",
    "added file-backed MiB",
    "added KiB per container",
];

/// The `measurement` of the idle executor's row.
pub(crate) const IDLE: &str = "idle executor";

/// The `measurement` of the rows of N containers of the one large module.
pub(crate) const ONE_MODULE: &str = "N containers of one module";

/// An executor and a client of it that adds warm containers.
struct Containers {
    server: Server,
    client: Client,
    count: usize,
}

impl Containers {
    async fn start(setup: &Setup, engine: &str) -> anyhow::Result<Self> {
        let server = Server::executor(&setup.executor, "executor", engine, &[]).await?;
        let client = Client::new(server.addr, Connection::KeepAlive);
        Ok(Self {
            server,
            client,
            count: 0,
        })
    }

    /// Adds a container of `module`, initialised and run once.
    async fn add(&mut self, archive: &[u8]) -> anyhow::Result<()> {
        let started = self
            .client
            .send(&Request::post("/start", &json!({})))
            .await?
            .ok()?
            .json()?;
        let id = started["containerId"]
            .as_str()
            .context("/start answered no containerId")?;
        self.client
            .send(&Request::post(
                format!("/{id}/init"),
                &actions::init_body(archive),
            ))
            .await?
            .ok()
            .context("/init")?;
        self.client
            .send(&Request::post(
                format!("/{id}/run"),
                &actions::run_body(&json!({})),
            ))
            .await?
            .ok()
            .context("/run")?;
        self.count += 1;
        Ok(())
    }

    /// Resident memory once the executor has settled.
    async fn rss(&self) -> anyhow::Result<Resident> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.server.resident()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The memory columns of a row: the RSS `now` and its file-backed part; then, `since` an
/// earlier reading, what was added, its file-backed part, and that per container of `per`.
fn memory_columns(now: Resident, since: Option<(Resident, usize)>) -> Vec<Value> {
    let mut columns = vec![num(mib(now.total_kib)), num(mib(now.file_kib))];
    match since {
        Some((before, per)) => {
            let added = now.total_kib.saturating_sub(before.total_kib);
            let added_file = now.file_kib.saturating_sub(before.file_kib);
            columns.extend([
                num(mib(added)),
                num(mib(added_file)),
                num(added as f64 / per as f64),
            ]);
        }
        None => columns.extend([Value::Null, Value::Null, Value::Null]),
    }
    columns
}

/// A row of the memory table: what was measured, then [`memory_columns`].
fn row(
    engine: &str,
    measurement: &str,
    module: Option<(&str, usize)>,
    containers: usize,
    memory: Vec<Value>,
) -> Vec<Value> {
    let (name, kib) = match module {
        Some((name, bytes)) => (json!(name), num(bytes as f64 / 1024.0)),
        None => (Value::Null, Value::Null),
    };
    let mut row = vec![
        json!(engine),
        json!(measurement),
        name,
        kib,
        json!(containers),
    ];
    row.extend(memory);
    row
}

/// Runs `memory`.
pub async fn run(setup: &Setup, args: &MemoryArgs) -> anyhow::Result<Report> {
    let p = args.profile;
    let per_size = args.containers.unwrap_or(p.pick(20, 100)).max(2);
    let counts = if args.counts.is_empty() {
        // Containers of one module are cheap to add (one compile): both profiles reach the
        // bar's 1,000.
        vec![1, 10, 100, 1000]
    } else {
        args.counts.clone()
    };
    let max_distinct = args.max_distinct.unwrap_or(p.pick(100, 1000));
    let large = actions::large_module(args.large_kib * 1024);
    let modules: Vec<(&str, Vec<u8>)> = vec![
        ("small (WAT)", actions::read(artifacts::wat::FRESH_INSTANCE)),
        ("medium (echo)", actions::read(artifacts::ECHO)),
        ("large (generated)", large.clone()),
    ];
    let mut report = Report::new("memory");
    let mut table = Table::new(
        "memory",
        "Resident memory of the executor (executor mode, warm containers: /start, /init, one /run)",
        COLUMNS,
    );
    let steps = setup.engines.len() as u64
        * (1 + modules.len() as u64 * per_size as u64
            + counts.iter().max().copied().unwrap_or(0) as u64
            + counts
                .iter()
                .filter(|&&c| c <= max_distinct)
                .max()
                .copied()
                .unwrap_or(0) as u64);
    let bar = progress::bar("memory", steps);
    let mut series = Vec::new();
    for engine in &setup.engines {
        bar.set_message(format!("{engine}: idle"));
        let idle = Containers::start(setup, engine).await?;
        let idle_rss = idle.rss().await?;
        drop(idle);
        bar.inc(1);
        table.push(row(engine, IDLE, None, 0, memory_columns(idle_rss, None)));
        for (name, module) in &modules {
            bar.set_message(format!(
                "{engine}: {per_size} containers of the {name} module"
            ));
            let archive = actions::zip(module)?;
            let mut containers = Containers::start(setup, engine).await?;
            let before = containers.rss().await?;
            containers.add(&archive).await?;
            bar.inc(1);
            let first = containers.rss().await?;
            for _ in 1..per_size {
                containers.add(&archive).await?;
                bar.inc(1);
            }
            let all = containers.rss().await?;
            let module = Some((*name, module.len()));
            table.push(row(
                engine,
                "first container",
                module,
                1,
                memory_columns(first, Some((before, 1))),
            ));
            table.push(row(
                engine,
                "each further container",
                module,
                per_size,
                memory_columns(all, Some((first, per_size - 1))),
            ));
        }
        for distinct in [false, true] {
            let label = if distinct {
                "N containers of N modules"
            } else {
                ONE_MODULE
            };
            bar.set_message(format!("{engine}: {label}"));
            let mut containers = Containers::start(setup, engine).await?;
            let before = containers.rss().await?;
            let one = actions::zip(&large)?;
            let mut points = vec![(0.0, mib(before.total_kib))];
            for &count in &counts {
                if distinct && count > max_distinct {
                    break;
                }
                while containers.count < count {
                    let archive = if distinct {
                        actions::zip(&actions::distinct(&large, containers.count as u64))?
                    } else {
                        one.clone()
                    };
                    containers.add(&archive).await?;
                    bar.inc(1);
                }
                let rss = containers.rss().await?;
                table.push(row(
                    engine,
                    label,
                    Some(("large (generated)", large.len())),
                    count,
                    memory_columns(rss, Some((before, count))),
                ));
                points.push((count as f64, mib(rss.total_kib)));
            }
            series.push(Series::new(
                format!(
                    "{engine}, {}",
                    if distinct {
                        "distinct modules"
                    } else {
                        "one module"
                    }
                ),
                points,
            ));
        }
    }
    bar.finish_and_clear();
    report.tables.push(table);
    report.draw(
        &setup.out_dir,
        "memory.png",
        &Lines {
            title: format!(
                "Executor RSS by warm containers ({} KiB module)",
                large.len() / 1024
            ),
            x_label: "containers".into(),
            y_label: "RSS MiB".into(),
            scale: Scale::Linear,
            series,
        },
    )?;
    Ok(report)
}
