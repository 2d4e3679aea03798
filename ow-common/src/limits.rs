//! An action's limits as OpenWhisk states them (`{"timeout", "memory", "logs", "concurrency"}`,
//! with its defaults and ranges), read from an action record or from the `limits` annotation
//! a Wasm-aware invoker sends, and turned into what an engine enforces.

use crate::capabilities::annotation_pairs;
use crate::runtime::Limits;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// How many activations of one action may run at once, as OpenWhisk bounds its `concurrency`
/// limit.
pub const CONCURRENCY_RANGE: std::ops::RangeInclusive<u64> = 1..=500;

/// An action's limits, with OpenWhisk's defaults and ranges; as JSON, OpenWhisk's
/// `{"timeout", "memory", "logs", "concurrency"}` with every field present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionLimits {
    /// Milliseconds, 100 – 300 000.
    pub timeout: u64,
    /// MB, 128 – 512.
    pub memory: u64,
    /// MB, 0 – 10.
    pub logs: u64,
    /// Concurrent activations, 1 – 500.
    pub concurrency: u64,
}

impl Default for ActionLimits {
    fn default() -> Self {
        Self {
            timeout: 60_000,
            memory: 256,
            logs: 10,
            concurrency: 1,
        }
    }
}

impl ActionLimits {
    /// Overlays the limits given in a request on `self`, checking OpenWhisk's ranges.
    pub fn merged(mut self, given: Option<&Value>) -> Result<Self, String> {
        let Some(given) = given.filter(|v| !v.is_null()) else {
            return Ok(self);
        };
        let Some(given) = given.as_object() else {
            return Err("limits must be an object".to_owned());
        };
        for (key, value) in given {
            let (field, range) = match key.as_str() {
                "timeout" => (&mut self.timeout, 100..=300_000),
                "memory" => (&mut self.memory, 128..=512),
                "logs" => (&mut self.logs, 0..=10),
                "concurrency" => (&mut self.concurrency, CONCURRENCY_RANGE),
                _ => continue,
            };
            match value.as_u64() {
                Some(number) if range.contains(&number) => *field = number,
                _ => {
                    return Err(format!(
                        "The {key} limit must be an integer between {} and {}, not {value}.",
                        range.start(),
                        range.end()
                    ));
                }
            }
        }
        Ok(self)
    }

    /// The limits an engine enforces for these. The result cap is OpenWhisk's 1 MB, the
    /// platform's limit that its invoker applies; an action container, which returns results
    /// whole, widens it.
    pub fn engine_limits(self) -> Limits {
        Limits {
            memory_bytes: self.memory * 1024 * 1024,
            log_bytes: self.logs * 1024 * 1024,
            ..Limits::default()
        }
    }

    /// The time limit.
    pub fn time_limit(self) -> Duration {
        Duration::from_millis(self.timeout)
    }

    /// Overlays the `limits` annotation, if the annotations carry one, on `self`.
    pub fn with_annotations(self, annotations: Option<&Value>) -> Result<Self, String> {
        let given = annotation_pairs(annotations)?
            .into_iter()
            .find_map(|(key, value)| (key == "limits").then_some(value));
        self.merged(given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_limits_annotation_overlays_the_base_in_either_annotation_form() {
        let base = ActionLimits::default();
        let object = json!({"limits": {"memory": 128, "timeout": 500}, "dir": null});
        let list = json!([{"key": "limits", "value": {"memory": 128, "timeout": 500}}]);
        for annotations in [object, list] {
            let limits = base.with_annotations(Some(&annotations)).unwrap();
            assert_eq!((limits.memory, limits.timeout, limits.logs), (128, 500, 10));
            assert_eq!(limits.engine_limits().memory_bytes, 128 * 1024 * 1024);
            assert_eq!(limits.time_limit(), Duration::from_millis(500));
        }
        assert_eq!(base.with_annotations(None).unwrap(), base);
    }

    #[test]
    fn limits_outside_openwhisk_ranges_are_refused_with_the_range() {
        let error = ActionLimits::default()
            .with_annotations(Some(&json!({"limits": {"memory": 4096}})))
            .unwrap_err();
        assert_eq!(
            error,
            "The memory limit must be an integer between 128 and 512, not 4096."
        );
    }
}
