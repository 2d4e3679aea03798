//! `soak`: many activations of one warm action (`runtime` mode) from a few keep-alive
//! clients, sampling the executor's resident memory as it goes: the memory after warm-up and
//! at the end should match, or something leaks per activation.

use crate::actions;
use crate::executor::Server;
use crate::load::{Connection, Load, Mix, Request};
use crate::plot::{Lines, Scale, Series};
use crate::report::{Report, Table, num};
use crate::{Setup, progress};
use serde_json::json;
use std::time::Duration;

/// Arguments of `soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How many activations.
    #[arg(long, default_value_t = 100_000)]
    pub activations: u64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Which example action (`add`, `echo`, `log`, `hash`).
    #[arg(long, default_value = "add")]
    pub action: String,
    /// Activations that count as warm-up, before the baseline memory sample.
    #[arg(long, default_value_t = 10_000)]
    pub warmup: u64,
}

/// Runs `soak` on each engine.
pub async fn run(setup: &Setup, args: &SoakArgs) -> anyhow::Result<Report> {
    let mut workload = actions::workload(&args.action)?;
    if workload.name == "hash" {
        workload.params = json!({"iterations": 100});
    }
    let run = Request::post("/run", &actions::run_body(&workload.params));
    let mut report = Report::new("soak");
    let mut table = Table::new(
        "soak",
        &format!(
            "Soak: {} activations of `{}` from {} keep-alive clients (runtime mode)",
            args.activations, workload.name, args.clients
        ),
        &[
            "engine",
            "activations/s",
            "failed",
            "RSS after warm-up KiB",
            "RSS at end KiB",
            "end / warm-up",
        ],
    );
    let mut series = Vec::new();
    let mut extra = Vec::new();
    for engine in &setup.engines {
        let archive = actions::zip(&actions::read(
            workload.module_on(setup.runs_wasm_simd(engine)),
        ))?;
        let server = Server::runtime_with(&setup.executor, engine, &archive, &[]).await?;
        let bar = progress::bar(engine, args.activations);
        let load = Load::start(
            server.addr,
            Connection::KeepAlive,
            Mix::one(run.clone()),
            args.clients,
            Some(args.activations),
        );
        let mut samples = Vec::new();
        let mut baseline = None;
        loop {
            let finished = load.completed().min(args.activations);
            let rss = server.rss_kib()?;
            samples.push(json!({"activations": finished, "seconds": load.elapsed().as_secs_f64(), "rss_kib": rss}));
            if baseline.is_none() && finished >= args.warmup {
                baseline = Some(rss);
            }
            bar.set_position(finished);
            bar.set_message(format!("RSS {rss} KiB"));
            if load.is_done() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bar.finish_and_clear();
        let failed = load.failed();
        let finished = load.finish().await?;
        // When the last activation ended, not when the progress loop last looked.
        let elapsed = finished
            .samples
            .iter()
            .map(|sample| sample.end)
            .max()
            .unwrap_or_default();
        if let Some(error) = finished.first_error {
            report.notes.push(format!(
                "{engine}: {failed} activations failed, the first: {error}"
            ));
        }
        let end = server.rss_kib()?;
        let baseline = baseline.unwrap_or(end);
        let rate = args.activations as f64 / elapsed.as_secs_f64();
        table.push(vec![
            json!(engine),
            num(rate),
            json!(failed),
            json!(baseline),
            json!(end),
            num(end as f64 / baseline as f64),
        ]);
        series.push(Series::new(
            engine.clone(),
            samples
                .iter()
                .map(|s| {
                    (
                        s["activations"].as_f64().unwrap_or_default(),
                        s["rss_kib"].as_f64().unwrap_or_default() / 1024.0,
                    )
                })
                .collect(),
        ));
        extra.push(json!({
            "engine": engine,
            "action": workload.name,
            "activations": args.activations,
            "clients": args.clients,
            "failed": failed,
            "seconds": elapsed.as_secs_f64(),
            "activations_per_second": rate,
            "rss_after_warmup_kib": baseline,
            "rss_at_end_kib": end,
            "rss_end_over_warmup": end as f64 / baseline as f64,
            "samples": samples,
        }));
    }
    report.tables.push(table);
    report.extra = json!(extra);
    report.draw(
        &setup.out_dir,
        "soak.png",
        &Lines {
            title: format!("Soak: executor RSS over {} activations", args.activations),
            x_label: "activations".into(),
            y_label: "RSS MiB".into(),
            scale: Scale::Linear,
            series,
        },
    )?;
    Ok(report)
}
