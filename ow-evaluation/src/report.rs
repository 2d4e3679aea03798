//! What a subcommand found: tables (written as CSV and JSON, printed as Markdown), the charts
//! it drew and notes for the reader.

use crate::plot::Chart;
use anyhow::Context;
use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One table: named columns, rows of JSON values (numbers, strings, or null for "n/a").
#[derive(Debug, Clone)]
pub struct Table {
    /// The file stem of its CSV (`throughput`, `ramp-burst`).
    pub name: String,
    /// The heading above it.
    pub title: String,
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, as many values as columns each.
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// An empty table. Column names are distinct: they key each row of the JSON output.
    pub fn new(name: &str, title: &str, columns: &[&str]) -> Self {
        for (i, column) in columns.iter().enumerate() {
            assert!(
                !columns[..i].contains(column),
                "the columns of {name} are distinct, but {column:?} is named twice"
            );
        }
        Self {
            name: name.to_owned(),
            title: title.to_owned(),
            columns: columns.iter().map(|&c| c.to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, row: Vec<Value>) {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "a row of {} has one value per column",
            self.name
        );
        self.rows.push(row);
    }

    /// The rows as objects keyed by column.
    pub fn records(&self) -> Vec<Value> {
        self.rows
            .iter()
            .map(|row| {
                let record: Map<String, Value> = self
                    .columns
                    .iter()
                    .cloned()
                    .zip(row.iter().cloned())
                    .collect();
                Value::Object(record)
            })
            .collect()
    }

    /// The table as CSV (RFC 4180 quoting), numbers unrounded.
    pub fn csv(&self) -> String {
        let mut out = String::new();
        let line = |cells: Vec<String>| cells.join(",") + "\n";
        out.push_str(&line(self.columns.iter().map(|c| csv_cell(c)).collect()));
        for row in &self.rows {
            out.push_str(&line(
                row.iter()
                    .map(|value| match value {
                        Value::Null => String::new(),
                        Value::String(text) => csv_cell(text),
                        other => csv_cell(&other.to_string()),
                    })
                    .collect(),
            ));
        }
        out
    }

    /// The table as Markdown, numbers rounded for reading.
    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        let _ = writeln!(out, "| {} |", self.columns.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(self.columns.len()));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(readable).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A value as a reader wants it: numbers with three significant digits or so.
pub fn readable(value: &Value) -> String {
    match value {
        Value::Null => "–".to_owned(),
        Value::String(text) => text.clone(),
        Value::Number(number) if number.is_f64() => {
            let x = number.as_f64().unwrap_or_default();
            let magnitude = x.abs();
            if magnitude >= 100.0 || magnitude == 0.0 {
                format!("{x:.0}")
            } else if magnitude >= 10.0 {
                format!("{x:.1}")
            } else if magnitude >= 1.0 {
                format!("{x:.2}")
            } else {
                format!("{x:.3}")
            }
        }
        other => other.to_string(),
    }
}

/// A number for a table, or null if it is not finite (a ratio to a missing baseline).
pub fn num(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// What a subcommand found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The subcommand.
    pub name: String,
    /// Its tables.
    pub tables: Vec<Table>,
    /// The charts it drew.
    pub charts: Vec<PathBuf>,
    /// Sentences for the reader: what was skipped and why, what the numbers mean.
    pub notes: Vec<String>,
    /// Anything else worth keeping in the JSON (raw series).
    pub extra: Value,
}

impl Report {
    /// An empty report of `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            tables: Vec::new(),
            charts: Vec::new(),
            notes: Vec::new(),
            extra: Value::Null,
        }
    }

    /// Draws `chart` into `dir/file` and lists it among the report's charts.
    pub fn draw(&mut self, dir: &Path, file: &str, chart: &impl Chart) -> anyhow::Result<()> {
        let path = dir.join(file);
        chart.draw(&path)?;
        self.charts.push(path);
        Ok(())
    }

    /// The report as one JSON document.
    pub fn json(&self) -> Value {
        json!({
            "name": self.name,
            "tables": self.tables.iter().map(|table| json!({
                "name": table.name,
                "title": table.title,
                "columns": table.columns,
                "rows": table.records(),
            })).collect::<Vec<_>>(),
            "charts": self.charts,
            "notes": self.notes,
            "extra": self.extra,
        })
    }

    /// Writes `NAME.json` and one CSV per table into `dir`; returns the paths written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut written = Vec::new();
        let json_path = dir.join(format!("{}.json", self.name));
        std::fs::write(&json_path, serde_json::to_vec_pretty(&self.json())?)
            .with_context(|| format!("cannot write {}", json_path.display()))?;
        written.push(json_path);
        for table in &self.tables {
            let path = dir.join(format!("{}.csv", table.name));
            std::fs::write(&path, table.csv())
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }

    /// Every table in Markdown, then the charts and notes.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for table in &self.tables {
            out.push_str(&table.markdown());
            out.push('\n');
        }
        for chart in &self.charts {
            let _ = writeln!(out, "Chart: `{}`", chart.display());
        }
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut table = Table::new("t", "A table", &["engine", "rps", "note"]);
        table.push(vec![json!("wasmtime"), json!(12345.678), json!("a, \"b\"")]);
        table.push(vec![json!("wamr"), json!(0.01234), Value::Null]);
        table
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_it() {
        assert_eq!(
            table().csv(),
            "engine,rps,note\nwasmtime,12345.678,\"a, \"\"b\"\"\"\nwamr,0.01234,\n"
        );
    }

    #[test]
    fn json_rows_are_keyed_by_column() {
        let mut report = Report::new("r");
        report.tables.push(table());
        let json = report.json();
        assert_eq!(json["tables"][0]["name"], "t");
        assert_eq!(json["tables"][0]["rows"][0]["engine"], "wasmtime");
        assert_eq!(json["tables"][0]["rows"][1]["rps"], 0.01234);
        assert_eq!(json["tables"][0]["rows"][1]["note"], Value::Null);
    }

    #[test]
    fn markdown_rounds_numbers_for_reading() {
        let markdown = table().markdown();
        assert!(markdown.starts_with("### A table\n\n| engine | rps | note |\n|---|---|---|\n"));
        assert!(
            markdown.contains("| wasmtime | 12346 | a, \"b\" |"),
            "{markdown}"
        );
        assert!(markdown.contains("| wamr | 0.012 | – |"), "{markdown}");
        assert_eq!(readable(&json!(42)), "42");
        assert_eq!(readable(&json!(4.56789)), "4.57");
        assert_eq!(readable(&json!(45.6789)), "45.7");
    }

    #[test]
    fn files_are_written_per_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut report = Report::new("r");
        report.tables.push(table());
        let written = report.write(dir.path()).unwrap();
        assert_eq!(
            written,
            [dir.path().join("r.json"), dir.path().join("t.csv")]
        );
        let json: Value = serde_json::from_slice(&std::fs::read(&written[0]).unwrap()).unwrap();
        assert_eq!(json["name"], "r");
    }

    #[test]
    #[should_panic(expected = "one value per column")]
    fn a_short_row_is_a_bug() {
        table().push(vec![json!(1)]);
    }

    #[test]
    #[should_panic(expected = "named twice")]
    fn a_column_named_twice_is_a_bug() {
        Table::new("t", "T", &["added MiB", "RSS MiB", "added MiB"]);
    }

    #[test]
    fn a_missing_ratio_is_null() {
        assert_eq!(num(f64::NAN), Value::Null);
        assert_eq!(num(f64::INFINITY), Value::Null);
        assert_eq!(num(0.5), json!(0.5));
    }
}
