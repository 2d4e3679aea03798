//! Smoke runs of the real binary against the `ow-executor` built beside it, with tiny
//! parameters: each subcommand writes its CSV, JSON and chart, with a row for every engine and
//! baseline. Numbers are not checked (timings belong in the reports, never in tests).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `ow-evaluation ARGS…` writing into `out`; its stdout.
fn evaluate(out: &Path, args: &[&str]) -> String {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_ow-evaluation"));
    let executor = binary.with_file_name("ow-executor");
    assert!(
        executor.is_file(),
        "{} is missing: build it first (`cargo build -p ow-executor`, or `cargo test --workspace`)",
        executor.display()
    );
    let output = Command::new(&binary)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("ow-evaluation runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "ow-evaluation {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn csv(out: &Path, name: &str) -> Vec<Vec<String>> {
    let text =
        std::fs::read_to_string(out.join(format!("{name}.csv"))).expect("the CSV is written");
    text.lines()
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect()
}

fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..4], b"\x89PNG", "{}", path.display());
}

#[test]
fn cold_start_reports_every_engine() {
    let out = tempfile::tempdir().unwrap();
    let stdout = evaluate(
        out.path(),
        &[
            "cold-start",
            "--concurrency",
            "1,2",
            "--samples",
            "1",
            "--modes",
            "executor",
            "--codes",
            "wasm-cached",
            "--action",
            "add",
        ],
    );
    assert!(
        stdout.contains("| engine | mode | code | module KiB | N |"),
        "{stdout}"
    );
    let rows = csv(out.path(), "cold-start");
    assert_eq!(rows[0][..5], ["engine", "mode", "code", "module KiB", "N"]);
    assert!(rows.len() >= 3, "a row per engine and N: {rows:?}");
    assert!(
        rows[1..]
            .iter()
            .all(|row| row[1] == "executor" && row[2] == "wasm (cached by hash)")
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("cold-start.json")).unwrap())
            .unwrap();
    assert_eq!(json["tables"][0]["rows"][0]["mode"], "executor");
    assert_png(&out.path().join("cold-start.png"));
}

#[test]
fn throughput_measures_the_floor_in_the_same_run() {
    let out = tempfile::tempdir().unwrap();
    evaluate(
        out.path(),
        &[
            "throughput",
            "--workloads",
            "add",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--connections",
            "2",
            "--modes",
            "keep-alive",
        ],
    );
    let rows = csv(out.path(), "throughput");
    let servers: Vec<&str> = rows[1..].iter().map(|row| row[3].as_str()).collect();
    assert!(servers.contains(&"wasmtime"), "{servers:?}");
    assert_eq!(servers.last(), Some(&"http-floor"));
    let floor = rows.last().unwrap();
    assert_eq!(floor[8], "1.0", "the floor is its own baseline: {floor:?}");
    assert_eq!(floor[12], "0", "no request to the floor failed: {floor:?}");
    assert_png(&out.path().join("throughput.png"));
}

#[test]
fn ramp_bursts_twice_on_one_executor_and_says_what_each_burst_cost_it() {
    let out = tempfile::tempdir().unwrap();
    evaluate(
        out.path(),
        &[
            "ramp",
            "--workloads",
            "sleep",
            "--io-step",
            "1",
            "--io-max-clients",
            "1",
            "--interval",
            "100ms",
            "--burst",
            "20",
        ],
    );
    let rows = csv(out.path(), "ramp-burst");
    // The columns read below.
    let header = &rows[0];
    assert_eq!(header[..3], ["engine", "burst", "activations"]);
    assert_eq!(
        header[6..],
        [
            "server CPU s",
            "RSS before MiB",
            "peak RSS MiB",
            "RSS after MiB",
            "failed"
        ]
    );
    let bursts = &rows[1..];
    assert!(
        !bursts.is_empty() && bursts.len().is_multiple_of(2),
        "{bursts:?}"
    );
    for pair in bursts.chunks(2) {
        assert_eq!(pair[0][0], pair[1][0], "both bursts of an engine: {pair:?}");
        assert_eq!(pair[0][1], "first (fresh executor)");
        assert_eq!(pair[1][1], "second (same executor)");
        for burst in pair {
            assert_eq!(burst[2], "20");
            assert_eq!(burst[10], "0", "no activation failed: {burst:?}");
            let cpu: f64 = burst[6].parse().expect("server CPU is a number");
            assert!(cpu >= 0.0, "{burst:?}");
            for (column, what) in [(7, "before"), (8, "at the peak"), (9, "after")] {
                let rss: f64 = burst[column].parse().expect("RSS is a number");
                assert!(
                    rss > 1.0,
                    "the executor holds more than 1 MiB {what}: {burst:?}"
                );
            }
        }
    }
}
