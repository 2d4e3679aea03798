//! The JSON records of the REST API, shaped like OpenWhisk's: actions as stored and listed,
//! activations as recorded, and the log line format.

use ow_common::runtime::{Logs, RunError};
use serde_json::{Map, Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// The only action kind this server runs.
pub const WASM_KIND: &str = "wasm:0.1";

pub use ow_common::limits::ActionLimits;

/// Checks and normalises a `[{"key", "value"}]` list (parameters or annotations).
pub fn key_value_list(value: Option<&Value>, what: &str) -> Result<Vec<Value>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item.get("key") {
                Some(Value::String(_)) => Ok(item.clone()),
                _ => Err(format!(
                    "Every entry of {what} must be an object with a string \"key\"."
                )),
            })
            .collect(),
        Some(_) => Err(format!(
            "{what} must be a list of {{\"key\", \"value\"}} objects."
        )),
    }
}

/// Looks a key up in a `[{"key", "value"}]` list.
pub fn lookup<'a>(list: &'a [Value], key: &str) -> Option<&'a Value> {
    list.iter()
        .find(|item| item["key"] == key)
        .map(|item| &item["value"])
}

/// Sets or replaces a key in a `[{"key", "value"}]` list.
pub fn upsert(list: &mut Vec<Value>, key: &str, value: Value) {
    match list.iter_mut().find(|item| item["key"] == key) {
        Some(item) => item["value"] = value,
        None => list.push(json!({"key": key, "value": value})),
    }
}

/// The next patch version: `0.0.1` becomes `0.0.2`.
pub fn bump_version(version: &str) -> String {
    let mut parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    parts.resize(3, 0);
    parts[2] += 1;
    format!("{}.{}.{}", parts[0], parts[1], parts[2])
}

/// The summary of an action record that lists and `code=false` show: no code.
pub fn without_code(record: &Value) -> Value {
    let mut record = record.clone();
    if let Some(exec) = record.get_mut("exec").and_then(Value::as_object_mut) {
        exec.remove("code");
    }
    record
}

/// OpenWhisk's activation status, with its `statusCode` in listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationStatus {
    /// The action returned a result without an `error` field.
    Success,
    /// The action returned `{"error": …}`.
    ApplicationError,
    /// The action failed: trap, timeout, bad result, bad code.
    DeveloperError,
    /// The platform failed.
    InternalError,
}

impl ActivationStatus {
    /// The `response.status` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ApplicationError => "application error",
            Self::DeveloperError => "action developer error",
            Self::InternalError => "whisk internal error",
        }
    }

    /// The `statusCode` of activation listings.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::ApplicationError => 1,
            Self::DeveloperError => 2,
            Self::InternalError => 3,
        }
    }

    /// The status of an activation that ended with `outcome`.
    pub fn of(outcome: &Result<Value, RunError>) -> Self {
        match outcome {
            Ok(result) if result.get("error").is_some() => Self::ApplicationError,
            Ok(_) => Self::Success,
            Err(RunError::Internal(_)) => Self::InternalError,
            Err(_) => Self::DeveloperError,
        }
    }
}

/// The annotations every activation record of the stored `action` starts with: its `path`,
/// `kind` and `limits`.
pub fn activation_annotations(namespace: &str, action: &Value) -> Vec<Value> {
    let name = action["name"].as_str().unwrap_or_default();
    vec![
        json!({"key": "path", "value": format!("{namespace}/{name}")}),
        json!({"key": "kind", "value": WASM_KIND}),
        json!({"key": "limits", "value": action["limits"]}),
    ]
}

/// An activation record of the stored `action`, shaped like OpenWhisk's.
pub fn activation_record(
    namespace: &str,
    action: &Value,
    activation_id: &str,
    (start_ms, end_ms): (u64, u64),
    response: Value,
    logs: Vec<String>,
    annotations: Vec<Value>,
) -> Value {
    json!({
        "namespace": namespace,
        "name": action["name"].as_str().unwrap_or_default(),
        "version": action["version"].as_str().unwrap_or_default(),
        "subject": namespace,
        "activationId": activation_id,
        "publish": false,
        "start": start_ms,
        "end": end_ms,
        "duration": end_ms.saturating_sub(start_ms),
        "response": response,
        "logs": logs,
        "annotations": annotations,
    })
}

/// The `response` object of an activation record.
pub fn response(status: ActivationStatus, result: &Value) -> Value {
    let size = serde_json::to_vec(result).map_or(0, |bytes| bytes.len());
    json!({
        "result": result,
        "size": size,
        "status": status.as_str(),
        "success": status == ActivationStatus::Success,
    })
}

/// The summary of an activation record that listings show without `docs=true`.
pub fn activation_summary(record: &Value) -> Value {
    let mut summary = Map::new();
    for key in [
        "namespace",
        "name",
        "version",
        "subject",
        "activationId",
        "start",
        "end",
        "duration",
        "annotations",
        "publish",
    ] {
        if let Some(value) = record.get(key) {
            summary.insert(key.to_owned(), value.clone());
        }
    }
    let status = record["response"]["status"].as_str().unwrap_or_default();
    let code = [
        ActivationStatus::Success,
        ActivationStatus::ApplicationError,
        ActivationStatus::DeveloperError,
        ActivationStatus::InternalError,
    ]
    .into_iter()
    .find(|s| s.as_str() == status)
    .map_or(3, ActivationStatus::code);
    summary.insert("statusCode".to_owned(), json!(code));
    Value::Object(summary)
}

/// An activation's logs as OpenWhisk stores them, in the order they were written:
/// `<time padded to 30> <stream>: <line>`.
pub fn log_lines(logs: &Logs, end: SystemTime) -> Vec<String> {
    logs.lines(end)
        .into_iter()
        .map(|line| {
            let stamp = iso8601_nanos(line.at);
            format!("{stamp:<30} {}: {}", line.stream.name(), line.text)
        })
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn epoch_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// `2026-11-23T01:40:11.123456789Z`.
pub fn iso8601_nanos(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        since.subsec_nanos()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_iso8601_with_nanoseconds() {
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(iso8601_nanos(time), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(iso8601_nanos(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601_nanos(leap_day), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn log_lines_carry_time_and_stream() {
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let logs = Logs {
            stdout: b"one\ntwo\n".to_vec(),
            stderr: b"three\n".to_vec(),
            writes: Vec::new(),
        };
        assert_eq!(
            log_lines(&logs, time),
            vec![
                "2023-11-14T22:13:20.000000005Z stdout: one",
                "2023-11-14T22:13:20.000000005Z stdout: two",
                "2023-11-14T22:13:20.000000005Z stderr: three"
            ]
        );
    }

    #[test]
    fn limits_are_checked_against_openwhisk_ranges() {
        let limits = ActionLimits::default()
            .merged(Some(&json!({"timeout": 1000, "memory": 128})))
            .unwrap();
        assert_eq!(
            (limits.timeout, limits.memory, limits.logs),
            (1000, 128, 10)
        );
        let error = ActionLimits::default()
            .merged(Some(&json!({"memory": 4096})))
            .unwrap_err();
        assert_eq!(
            error,
            "The memory limit must be an integer between 128 and 512, not 4096."
        );
        assert!(
            ActionLimits::default()
                .merged(Some(&json!({"timeout": 50})))
                .is_err()
        );
    }

    #[test]
    fn versions_bump_their_patch() {
        assert_eq!(bump_version("0.0.1"), "0.0.2");
        assert_eq!(bump_version("1.2.9"), "1.2.10");
        assert_eq!(bump_version("garbage"), "0.0.1");
    }

    #[test]
    fn statuses_follow_the_outcome() {
        assert_eq!(
            ActivationStatus::of(&Ok(json!({"a": 1}))),
            ActivationStatus::Success
        );
        assert_eq!(
            ActivationStatus::of(&Ok(json!({"error": "x"}))),
            ActivationStatus::ApplicationError
        );
        assert_eq!(
            ActivationStatus::of(&Err(RunError::NoValidResponse)),
            ActivationStatus::DeveloperError
        );
        assert_eq!(
            ActivationStatus::of(&Err(RunError::Internal("x".into()))),
            ActivationStatus::InternalError
        );
    }
}
