//! `all`: every measurement in one invocation, each with the same profile (`quick` for
//! `just bench`, `full` for `just bench-full`), then a summary: the performance bars first
//! (see [`crate::bars`]), every table, and how long each part took.

use crate::report::{Report, Table, num};
use crate::{Profile, Setup};
use clap::{Args, FromArgMatches, ValueEnum};
use serde_json::json;
use std::time::Instant;

/// A subcommand's arguments as its command line would give them, with `profile` and `extra`.
fn args<T: Args + FromArgMatches>(profile: Option<Profile>, extra: &[&str]) -> anyhow::Result<T> {
    let mut line = vec!["all".to_owned()];
    if let Some(profile) = profile {
        let name = profile
            .to_possible_value()
            .expect("every profile has a name");
        line.extend(["--profile".to_owned(), name.get_name().to_owned()]);
    }
    line.extend(extra.iter().map(|&arg| arg.to_owned()));
    let matches = T::augment_args(clap::Command::new("all")).try_get_matches_from(line)?;
    Ok(T::from_arg_matches(&matches)?)
}

/// Runs every subcommand with `profile`.
pub async fn run(setup: &Setup, profile: Profile) -> anyhow::Result<Vec<Report>> {
    let started = Instant::now();
    let mut reports = Vec::new();
    let mut times = Table::new(
        "all",
        &format!(
            "How long each part took ({} profile)",
            profile.to_possible_value().expect("named").get_name()
        ),
        &["subcommand", "seconds"],
    );
    macro_rules! part {
        ($name:literal, $module:ident, $extra:expr) => {{
            let part = Instant::now();
            let report = crate::$module::run(setup, &args(Some(profile), $extra)?).await?;
            report.write(&setup.out_dir)?;
            times.push(vec![json!($name), num(part.elapsed().as_secs_f64())]);
            reports.push(report);
        }};
    }
    part!("cold-start", cold_start, &[]);
    part!("throughput", throughput, &[]);
    part!("ramp", ramp, &[]);
    part!("realistic", realistic, &[]);
    part!("memory", memory, &[]);
    let soak: crate::soak::SoakArgs = match profile {
        Profile::Quick => args(None, &["--activations", "20000", "--warmup", "2000"])?,
        Profile::Full => args(None, &[])?,
    };
    let part = Instant::now();
    reports.push(crate::soak::run(setup, &soak).await?);
    times.push(vec![json!("soak"), num(part.elapsed().as_secs_f64())]);
    times.push(vec![json!("all"), num(started.elapsed().as_secs_f64())]);
    let mut all = Report::new("all");
    all.tables.push(times);
    all.notes.push(format!(
        "Executor {}, engines {}.",
        setup.executor.display(),
        setup.engines.join(", ")
    ));
    reports.push(all);
    let mut bars = Report::new("bars");
    bars.tables
        .push(crate::bars::table(&reports, &setup.engines)?);
    bars.notes.push(
        "The no-op activation bar (instantiate, run and drop in at most 10 µs, median) is \
         criterion's: `cargo bench -p ow-executor --bench activation`, which `just bench` runs \
         after this."
            .to_owned(),
    );
    reports.insert(0, bars);
    Ok(reports)
}

/// Every report's Markdown, one after the other.
pub fn summary(reports: &[Report]) -> String {
    let mut out = String::from("# ow-evaluation results\n\n");
    for report in reports {
        out.push_str(&format!("## {}\n\n", report.name));
        out.push_str(&report.markdown());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommand_arguments_come_from_their_own_parser() {
        let quick: crate::throughput::ThroughputArgs = args(Some(Profile::Quick), &[]).unwrap();
        assert_eq!(quick.profile, Profile::Quick);
        assert_eq!(quick.connections, 32);
        assert_eq!(quick.workloads, ["add", "echo", "stdio_add", "hash"]);
        let soak: crate::soak::SoakArgs = args(None, &["--activations", "5"]).unwrap();
        assert_eq!(soak.activations, 5);
        assert_eq!(soak.warmup, 10_000);
    }
}
