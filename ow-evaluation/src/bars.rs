//! The performance bars ow-wasm is held to, read off the tables the other subcommands measured
//! in the same run (`all` prints it with them): for each bar and engine, the figure, what it is
//! held against (a baseline measured beside it, or the bar's own value), the ratio and the
//! verdict. A figure measured at a smaller size than its bar's (the quick profile's burst) is
//! missed if it is past the bar already, and otherwise gets no verdict but says at what size
//! it was measured. The no-op activation bar is criterion's (`cargo bench -p ow-executor
//! --bench activation`), not here.

use crate::cold_start::{Code, Mode};
use crate::floor::Baseline;
use crate::load::Connection;
use crate::report::{Report, Table, num, readable};
use crate::{memory, ramp};
use anyhow::Context;
use serde_json::{Value, json};

/// The columns of the `bars` table.
const COLUMNS: &[&str] = &[
    "bar",
    "engine",
    "measured",
    "figure",
    "held against",
    "ratio",
    "verdict",
];

/// How a figure is held to its bar.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// At least this fraction of a baseline's figure, measured in the same run.
    FractionOf(f64),
    /// At most this much, in the figure's unit.
    AtMost(f64),
}

/// One table of a run, with its rows found by the values of some columns.
struct Lookup<'a> {
    table: &'a Table,
}

impl<'a> Lookup<'a> {
    /// The table called `name` in `reports`, if one was measured.
    fn find(reports: &'a [Report], name: &str) -> Option<Self> {
        reports
            .iter()
            .flat_map(|report| &report.tables)
            .find(|table| table.name == name)
            .map(|table| Self { table })
    }

    /// Where `column` is in each row.
    fn column(&self, column: &str) -> anyhow::Result<usize> {
        self.table
            .columns
            .iter()
            .position(|c| c == column)
            .with_context(|| format!("the {} table has no column {column:?}", self.table.name))
    }

    /// The rows whose `column` holds `value`, for every pair of `conditions`.
    fn rows(&self, conditions: &[(&str, Value)]) -> anyhow::Result<Vec<&'a [Value]>> {
        let conditions = conditions
            .iter()
            .map(|(column, value)| Ok((self.column(column)?, value)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(self
            .table
            .rows
            .iter()
            .filter(|row| conditions.iter().all(|(at, value)| row[*at] == **value))
            .map(Vec::as_slice)
            .collect())
    }

    /// The one row matching `conditions`, if any.
    fn row(&self, conditions: &[(&str, Value)]) -> anyhow::Result<Option<&'a [Value]>> {
        Ok(self.rows(conditions)?.first().copied())
    }

    /// `column` of `row` as a number; `None` when the table has no figure there.
    fn number(&self, row: &[Value], column: &str) -> anyhow::Result<Option<f64>> {
        Ok(row[self.column(column)?].as_f64())
    }
}

/// One figure held to its bar.
struct Figure<'a> {
    bar: &'a str,
    engine: &'a str,
    /// What the figure is, with its unit.
    measured: String,
    value: Option<f64>,
    need: Need,
    /// What a `FractionOf` figure is held against: its name and figure.
    baseline: Option<(&'a str, Option<f64>)>,
    /// The size the figure was measured at, when that is less than the bar's.
    short_of: Option<String>,
    /// Requests that failed while it was measured: a figure with failures meets no bar.
    failed: u64,
}

impl<'a> Figure<'a> {
    /// A figure held to `need`, measured at the bar's size and without failures until told.
    fn new(
        bar: &'a str,
        engine: &'a str,
        measured: String,
        value: Option<f64>,
        need: Need,
    ) -> Self {
        Self {
            bar,
            engine,
            measured,
            value,
            need,
            baseline: None,
            short_of: None,
            failed: 0,
        }
    }

    /// A figure that must stay at or below `limit`, in its own unit.
    fn at_most(
        bar: &'a str,
        engine: &'a str,
        measured: String,
        value: Option<f64>,
        limit: f64,
    ) -> Self {
        Self::new(bar, engine, measured, value, Need::AtMost(limit))
    }

    /// A figure that must reach `fraction` of `baseline`'s (its name and figure, measured in
    /// the same run).
    fn fraction_of(
        bar: &'a str,
        engine: &'a str,
        measured: String,
        value: Option<f64>,
        fraction: f64,
        baseline: (&'a str, Option<f64>),
    ) -> Self {
        Self {
            baseline: Some(baseline),
            ..Self::new(bar, engine, measured, value, Need::FractionOf(fraction))
        }
    }

    /// Notes how many requests failed while the figure was measured (a table's `failed`).
    fn failing(self, failed: Option<f64>) -> Self {
        Self {
            failed: failed.unwrap_or_default() as u64,
            ..self
        }
    }

    /// Notes that the figure was measured at `size` of `unit` where the bar is at `bar_size`,
    /// when that is less.
    fn measured_at(self, size: f64, bar_size: f64, unit: &str) -> Self {
        Self {
            short_of: (size < bar_size).then(|| format!("{size} {unit}")),
            ..self
        }
    }

    /// The figure's row of the bars table.
    fn row(self) -> Vec<Value> {
        let (held_against, ratio, met) = match (self.need, self.value, self.baseline) {
            (Need::FractionOf(fraction), Some(value), Some((name, Some(base)))) if base > 0.0 => {
                let ratio = value / base;
                (
                    format!("{name}: {}", readable(&num(base))),
                    Some(ratio),
                    Some(ratio >= fraction),
                )
            }
            (Need::FractionOf(_), _, baseline) => (
                baseline.map_or("no baseline".to_owned(), |(name, _)| {
                    format!("{name}: not measured")
                }),
                None,
                None,
            ),
            (Need::AtMost(limit), value, _) => (
                format!("the bar: {}", readable(&num(limit))),
                value.map(|value| value / limit),
                value.map(|value| value <= limit),
            ),
        };
        // Past the bar at a smaller size is past it at the bar's: more activations take no
        // less time, more containers no less memory.
        let verdict = match (self.short_of, met) {
            // A burst that ends early because requests failed is fast for nothing.
            (_, Some(_)) if self.failed > 0 => format!("missed: {} requests failed", self.failed),
            (Some(size), Some(false)) => format!("missed, already at {size}"),
            (Some(size), Some(true)) => format!("no verdict: measured at {size}"),
            (None, Some(true)) => "met".to_owned(),
            (None, Some(false)) => "missed".to_owned(),
            (_, None) => "not measured".to_owned(),
        };
        vec![
            json!(self.bar),
            json!(self.engine),
            json!(self.measured),
            self.value.map_or(Value::Null, num),
            json!(held_against),
            ratio.map_or(Value::Null, num),
            json!(verdict),
        ]
    }
}

/// The bars table for `engines`, from the tables in `reports`. Bars whose subcommand did not
/// run are left out; a table that lacks a column the bars read is an error.
pub fn table(reports: &[Report], engines: &[String]) -> anyhow::Result<Table> {
    let mut bars = Table::new(
        "bars",
        "The performance bars: each figure against its baseline in this run, or the bar",
        COLUMNS,
    );
    if let Some(throughput) = Lookup::find(reports, "throughput") {
        let keep_alive = json!(Connection::KeepAlive.name());
        const KEEP_ALIVE_BAR: &str = "warm /run over keep-alive: at least 0.70 of http-floor";
        // Both guest ABIs: the issue measured its 18% on the stdio ABI.
        for (bar, workload, baseline, fraction) in [
            (KEEP_ALIVE_BAR, "add", Baseline::Floor, 0.70),
            (KEEP_ALIVE_BAR, "stdio_add", Baseline::Floor, 0.70),
            (
                "hash: at least 0.85 of native in-process",
                "hash",
                Baseline::Native,
                0.85,
            ),
        ] {
            let at = |server: &str| {
                throughput.row(&[
                    ("workload", json!(workload)),
                    ("connection", keep_alive.clone()),
                    ("server", json!(server)),
                ])
            };
            let base = match at(baseline.name())? {
                Some(row) => throughput.number(row, "requests/s")?,
                None => None,
            };
            for engine in engines {
                let (figure, failed) = match at(engine)? {
                    Some(row) => (
                        throughput.number(row, "requests/s")?,
                        throughput.number(row, "failed")?,
                    ),
                    None => (None, None),
                };
                let measured = format!("`{workload}`, keep-alive, requests/s");
                bars.push(
                    Figure::fraction_of(
                        bar,
                        engine,
                        measured,
                        figure,
                        fraction,
                        (baseline.name(), base),
                    )
                    .failing(failed)
                    .row(),
                );
            }
        }
    }
    if let Some(cold) = Lookup::find(reports, "cold-start") {
        // The bar's precompiled action is of 300 KiB; `cold-start` measures its `--action`.
        const PRECOMPILED_KIB: f64 = 300.0;
        let kinds = [
            (Mode::Executor, Code::WasmCached),
            (Mode::Executor, Code::Precompiled),
            (Mode::Runtime, Code::Precompiled),
        ];
        for (bar, n, column, limit) in [
            ("/init: median at most 1 ms", 1, "init p50", 1.0),
            (
                "64 concurrent cold starts: p99 at most 10 ms",
                64,
                "init+run p99",
                10.0,
            ),
        ] {
            for engine in engines {
                for (mode, code) in kinds {
                    let Some(row) = cold.row(&[
                        ("engine", json!(engine)),
                        ("mode", json!(mode.name())),
                        ("code", json!(code.name())),
                        ("N", json!(n)),
                    ])?
                    else {
                        continue;
                    };
                    let samples = cold.number(row, "samples")?.unwrap_or_default();
                    let module_kib = cold.number(row, "module KiB")?.unwrap_or_default();
                    // Nearest rank: the p99 of 64 cold starts is the slowest of them.
                    let measured = format!(
                        "{}, {}, {module_kib} KiB, N = {n}, {column} ms of {samples} cold starts",
                        mode.name(),
                        code.name()
                    );
                    let value = cold.number(row, column)?;
                    let figure = Figure::at_most(bar, engine, measured, value, limit);
                    let figure = if code == Code::Precompiled {
                        figure.measured_at(module_kib, PRECOMPILED_KIB, "KiB")
                    } else {
                        figure
                    };
                    bars.push(figure.row());
                }
            }
        }
    }
    if let Some(burst) = Lookup::find(reports, "ramp-burst") {
        const BAR: &str = "10,000 concurrent `sleep` 300 ms activations: done within 1.5 s";
        const ACTIVATIONS: f64 = 10_000.0;
        for engine in engines {
            for which in ramp::BURSTS {
                let Some(row) = burst.row(&[("engine", json!(engine)), ("burst", json!(which))])?
                else {
                    continue;
                };
                let activations = burst.number(row, "activations")?.unwrap_or_default();
                let wall = burst.number(row, "wall s")?;
                bars.push(
                    Figure::at_most(BAR, engine, format!("{which} burst, wall s"), wall, 1.5)
                        .measured_at(activations, ACTIVATIONS, "activations")
                        .failing(burst.number(row, "failed")?)
                        .row(),
                );
            }
        }
    }
    if let Some(memory) = Lookup::find(reports, "memory") {
        for engine in engines {
            let Some(idle) = memory.row(&[
                ("engine", json!(engine)),
                ("measurement", json!(memory::IDLE)),
            ])?
            else {
                continue;
            };
            let rss = memory.number(idle, "RSS MiB")?;
            let bar = "idle executor: at most 5 MiB";
            bars.push(Figure::at_most(bar, engine, "RSS MiB".to_owned(), rss, 5.0).row());
        }
        const BAR: &str = "1,000 warm containers of one 300 KiB module: add at most 10 MiB";
        const CONTAINERS: f64 = 1_000.0;
        for engine in engines {
            let mut most = None;
            for row in memory.rows(&[
                ("engine", json!(engine)),
                ("measurement", json!(memory::ONE_MODULE)),
            ])? {
                let containers = memory.number(row, "containers")?.unwrap_or_default();
                if most.is_none_or(|(count, _)| containers > count) {
                    most = Some((containers, row));
                }
            }
            let Some((containers, row)) = most else {
                continue;
            };
            let added = memory.number(row, "added MiB")?;
            let measured = format!("{containers} containers, added MiB");
            bars.push(
                Figure::at_most(BAR, engine, measured, added, 10.0)
                    .measured_at(containers, CONTAINERS, "containers")
                    .row(),
            );
        }
    }
    Ok(bars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cold_start, throughput};

    /// A table of the real columns `columns`, with `rows` given as `(column, value)` pairs
    /// (columns not given are null).
    fn table(name: &str, columns: &[&str], rows: &[Vec<(&str, Value)>]) -> Table {
        let mut table = Table::new(name, name, columns);
        for given in rows {
            table.push(
                columns
                    .iter()
                    .map(|column| {
                        given
                            .iter()
                            .find(|(c, _)| c == column)
                            .map_or(Value::Null, |(_, value)| value.clone())
                    })
                    .collect(),
            );
        }
        table
    }

    /// The bars table of a run that measured `tables`, for [`engines`].
    fn bars_of(tables: Vec<Table>) -> anyhow::Result<Table> {
        let mut report = Report::new("test");
        report.tables = tables;
        super::table(&[report], &engines())
    }

    /// The `(measured, figure, ratio, verdict)` of each row for `engine` under `bar`.
    fn verdicts(bars: &Table, bar: &str, engine: &str) -> Vec<(String, Value, Value, String)> {
        bars.rows
            .iter()
            .filter(|row| row[0] == json!(bar) && row[1] == json!(engine))
            .map(|row| {
                (
                    row[2].as_str().unwrap().to_owned(),
                    row[3].clone(),
                    row[5].clone(),
                    row[6].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn engines() -> Vec<String> {
        vec!["wasmtime".to_owned(), "wamr".to_owned()]
    }

    #[test]
    fn throughput_bars_are_ratios_to_the_baseline_of_the_same_run() {
        let row = |workload: &str, connection: Connection, server: &str, rps: f64| {
            vec![
                ("workload", json!(workload)),
                ("connection", json!(connection.name())),
                ("server", json!(server)),
                ("requests/s", json!(rps)),
            ]
        };
        let failing = |mut row: Vec<(&'static str, Value)>, failed: u64| {
            row.push(("failed", json!(failed)));
            row
        };
        let rows = [
            row("add", Connection::KeepAlive, "wasmtime", 75_000.0),
            row("add", Connection::KeepAlive, "wamr", 20_000.0),
            row("add", Connection::PerRequest, "wamr", 99_000.0),
            row("add", Connection::KeepAlive, "http-floor", 100_000.0),
            failing(
                row("stdio_add", Connection::KeepAlive, "wasmtime", 90_000.0),
                3,
            ),
            row("stdio_add", Connection::KeepAlive, "http-floor", 100_000.0),
            row("hash", Connection::KeepAlive, "wasmtime", 800.0),
            row("hash", Connection::KeepAlive, "native", 1_000.0),
        ];
        let bars = bars_of(vec![table("throughput", throughput::COLUMNS, &rows)]).unwrap();
        let floor_bar = "warm /run over keep-alive: at least 0.70 of http-floor";
        let add = "`add`, keep-alive, requests/s".to_owned();
        let stdio_add = "`stdio_add`, keep-alive, requests/s".to_owned();
        assert_eq!(
            verdicts(&bars, floor_bar, "wasmtime"),
            [
                (add.clone(), json!(75_000.0), json!(0.75), "met".to_owned()),
                (
                    stdio_add.clone(),
                    json!(90_000.0),
                    json!(0.9),
                    "missed: 3 requests failed".to_owned()
                )
            ],
            "a rate with failed requests meets no bar"
        );
        assert_eq!(
            verdicts(&bars, floor_bar, "wamr"),
            [
                (add, json!(20_000.0), json!(0.2), "missed".to_owned()),
                (
                    stdio_add,
                    Value::Null,
                    Value::Null,
                    "not measured".to_owned()
                )
            ]
        );
        let hash_bar = "hash: at least 0.85 of native in-process";
        assert_eq!(
            verdicts(&bars, hash_bar, "wasmtime")[0].3,
            "missed",
            "0.8 of native"
        );
        // WAMR ran no `hash`: the bar is not measured, not met.
        let wamr_hash = verdicts(&bars, hash_bar, "wamr");
        assert_eq!(wamr_hash[0].1, Value::Null);
        assert_eq!(wamr_hash[0].3, "not measured");
    }

    #[test]
    fn cold_start_bars_read_the_median_at_one_and_the_p99_at_sixty_four() {
        let row = |code: Code, kib: u64, n: u64, p50: f64, p99: f64| {
            vec![
                ("engine", json!("wasmtime")),
                ("mode", json!(Mode::Executor.name())),
                ("code", json!(code.name())),
                ("module KiB", json!(kib)),
                ("N", json!(n)),
                ("samples", json!(n.max(8))),
                ("init p50", json!(p50)),
                ("init+run p99", json!(p99)),
            ]
        };
        let rows = [
            row(Code::WasmCached, 188, 1, 0.4, 0.9),
            row(Code::WasmCached, 188, 64, 5.0, 12.0),
            row(Code::Precompiled, 188, 1, 3.0, 4.0),
            row(Code::Wasm, 188, 1, 120.0, 130.0),
            row(Code::Precompiled, 300, 64, 3.0, 9.0),
        ];
        let bars = bars_of(vec![table("cold-start", cold_start::COLUMNS, &rows)]).unwrap();
        let init = verdicts(&bars, "/init: median at most 1 ms", "wasmtime");
        assert_eq!(
            init.iter()
                .map(|(measured, _, ratio, verdict)| (measured.as_str(), ratio, verdict.as_str()))
                .collect::<Vec<_>>(),
            [
                (
                    "executor, wasm (cached by hash), 188 KiB, N = 1, init p50 ms of 8 cold starts",
                    &json!(0.4),
                    "met"
                ),
                (
                    "executor, precompiled (trusted), 188 KiB, N = 1, init p50 ms of 8 cold starts",
                    &json!(3.0),
                    "missed, already at 188 KiB"
                ),
            ],
            "a first compile is no bar's; a kind not measured has no row; the precompiled \
             action is held to the bar's 300 KiB"
        );
        let concurrent = verdicts(
            &bars,
            "64 concurrent cold starts: p99 at most 10 ms",
            "wasmtime",
        );
        assert_eq!(
            concurrent
                .iter()
                .map(|(_, _, ratio, verdict)| (ratio, verdict.as_str()))
                .collect::<Vec<_>>(),
            [(&json!(1.2), "missed"), (&json!(0.9), "met")]
        );
    }

    #[test]
    fn a_figure_measured_short_of_the_bars_size_gets_no_verdict() {
        let burst = |engine: &str, which: usize, activations: u64, wall: f64, failed: u64| {
            vec![
                ("engine", json!(engine)),
                ("burst", json!(ramp::BURSTS[which])),
                ("activations", json!(activations)),
                ("wall s", json!(wall)),
                ("failed", json!(failed)),
            ]
        };
        let bursts = [
            burst("wasmtime", 0, 1000, 0.4, 0),
            burst("wasmtime", 1, 10_000, 1.6, 0),
            burst("wamr", 0, 2000, 1.7, 0),
            burst("wamr", 1, 10_000, 0.2, 9_000),
        ];
        let memory_rows = [
            vec![
                ("engine", json!("wasmtime")),
                ("measurement", json!(memory::IDLE)),
                ("RSS MiB", json!(4.0)),
            ],
            vec![
                ("engine", json!("wasmtime")),
                ("measurement", json!(memory::ONE_MODULE)),
                ("containers", json!(10)),
                ("added MiB", json!(12.0)),
            ],
            vec![
                ("engine", json!("wasmtime")),
                ("measurement", json!(memory::ONE_MODULE)),
                ("containers", json!(300)),
                ("added MiB", json!(9.0)),
            ],
        ];
        let bars = bars_of(vec![
            table("ramp-burst", ramp::BURST_COLUMNS, &bursts),
            table("memory", memory::COLUMNS, &memory_rows),
        ])
        .unwrap();
        let burst = verdicts(
            &bars,
            "10,000 concurrent `sleep` 300 ms activations: done within 1.5 s",
            "wasmtime",
        );
        assert_eq!(burst[0].3, "no verdict: measured at 1000 activations");
        assert_eq!(burst[1].3, "missed");
        let wamr = verdicts(
            &bars,
            "10,000 concurrent `sleep` 300 ms activations: done within 1.5 s",
            "wamr",
        );
        assert_eq!(wamr[0].3, "missed, already at 2000 activations");
        assert_eq!(
            wamr[1].3, "missed: 9000 requests failed",
            "a burst is not done in time because most of it failed fast"
        );
        assert_eq!(
            verdicts(&bars, "idle executor: at most 5 MiB", "wasmtime")[0].3,
            "met"
        );
        let containers = verdicts(
            &bars,
            "1,000 warm containers of one 300 KiB module: add at most 10 MiB",
            "wasmtime",
        );
        assert_eq!(
            containers,
            [(
                "300 containers, added MiB".to_owned(),
                json!(9.0),
                json!(0.9),
                "no verdict: measured at 300 containers".to_owned()
            )],
            "the largest count measured, and no verdict below the bar's"
        );
    }

    #[test]
    fn a_table_without_a_column_the_bars_read_is_an_error() {
        let error = bars_of(vec![table(
            "memory",
            &["engine", "measurement"],
            &[vec![
                ("engine", json!("wasmtime")),
                ("measurement", json!(memory::IDLE)),
            ]],
        )])
        .unwrap_err();
        assert!(
            error.to_string().contains("the memory table has no column"),
            "{error:#}"
        );
    }
}
