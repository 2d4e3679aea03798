//! `memory`: resident memory (`VmRSS`) of the executor (executor mode): idle; added by warm
//! containers (`/start`, `/init`, one `/run`) of a small (a few hundred bytes of WAT), a
//! medium (`echo`, a Rust SDK action) and a large (a generated 300 KiB module) module; and
//! for N containers of one module against N containers of N distinct modules (the large
//! module's bytes, each with its own custom section, so each is compiled and kept apart).

use crate::actions;
use crate::executor::Server;
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
    /// Container counts of the one-module and distinct-modules series [quick: 1,10,100,300;
    /// full: 1,10,100,1000].
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

    /// Resident memory once the executor has settled, KiB.
    async fn rss(&self) -> anyhow::Result<u64> {
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.server.rss_kib()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Runs `memory`.
pub async fn run(setup: &Setup, args: &MemoryArgs) -> anyhow::Result<Report> {
    let p = args.profile;
    let per_size = args.containers.unwrap_or(p.pick(20, 100)).max(2);
    let counts = if args.counts.is_empty() {
        p.pick(vec![1, 10, 100, 300], vec![1, 10, 100, 1000])
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
        &[
            "engine",
            "measurement",
            "module",
            "module KiB",
            "containers",
            "RSS MiB",
            "added MiB",
            "added KiB per container",
        ],
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
        table.push(vec![
            json!(engine),
            json!("idle executor"),
            Value::Null,
            Value::Null,
            json!(0),
            num(mib(idle_rss)),
            Value::Null,
            Value::Null,
        ]);
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
            let kib = module.len() as f64 / 1024.0;
            let added = first.saturating_sub(before);
            table.push(vec![
                json!(engine),
                json!("first container"),
                json!(name),
                num(kib),
                json!(1),
                num(mib(first)),
                num(mib(added)),
                num(added as f64),
            ]);
            let further = all.saturating_sub(first);
            table.push(vec![
                json!(engine),
                json!("each further container"),
                json!(name),
                num(kib),
                json!(per_size),
                num(mib(all)),
                num(mib(further)),
                num(further as f64 / (per_size - 1) as f64),
            ]);
        }
        for distinct in [false, true] {
            let label = if distinct {
                "N containers of N modules"
            } else {
                "N containers of one module"
            };
            bar.set_message(format!("{engine}: {label}"));
            let mut containers = Containers::start(setup, engine).await?;
            let before = containers.rss().await?;
            let one = actions::zip(&large)?;
            let mut points = vec![(0.0, mib(before))];
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
                let added = rss.saturating_sub(before);
                table.push(vec![
                    json!(engine),
                    json!(label),
                    json!("large (generated)"),
                    num(large.len() as f64 / 1024.0),
                    json!(count),
                    num(mib(rss)),
                    num(mib(added)),
                    num(added as f64 / count as f64),
                ]);
                points.push((count as f64, mib(rss)));
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
