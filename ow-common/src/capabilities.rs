//! What an action may touch beyond its own memory, granted by annotations and denied by default.

use serde_json::Value;
use std::path::PathBuf;

/// Host capabilities granted to one action. The default grants nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// A host directory preopened for the action at [`crate::abi::PREOPEN_GUEST_PATH`]
    /// (the `dir` annotation). Nothing outside it is reachable.
    pub dir: Option<PathBuf>,
    /// Whether the action may call the `http`.`get` import (the `net_access` annotation).
    pub net_access: bool,
}

impl Capabilities {
    /// Reads the capabilities from an action's annotations, given either as an object
    /// (`{"dir": "/tmp/x", "net_access": true}`, as a Wasm-aware invoker sends them) or as
    /// OpenWhisk's list of `{"key", "value"}` pairs. Unknown annotations are ignored: OpenWhisk
    /// attaches many that are not capabilities.
    pub fn from_annotations(annotations: Option<&Value>) -> Result<Self, String> {
        let mut capabilities = Self::default();
        for (key, value) in annotation_pairs(annotations)? {
            match key {
                "dir" => match value {
                    Value::Null => {}
                    Value::String(dir) if !dir.is_empty() => {
                        capabilities.dir = Some(PathBuf::from(dir));
                    }
                    _ => return Err(format!("the dir annotation must be a path, not {value}")),
                },
                "net_access" => {
                    capabilities.net_access = value.as_bool().ok_or_else(|| {
                        format!("the net_access annotation must be true or false, not {value}")
                    })?;
                }
                _ => {}
            }
        }
        Ok(capabilities)
    }
}

/// The `(key, value)` pairs of annotations given either as an object (as a Wasm-aware invoker
/// sends them) or as OpenWhisk's list of `{"key", "value"}` pairs; none when absent.
pub fn annotation_pairs(annotations: Option<&Value>) -> Result<Vec<(&str, &Value)>, String> {
    match annotations {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        Some(Value::Array(list)) => Ok(list
            .iter()
            .filter_map(|pair| Some((pair.get("key")?.as_str()?, pair.get("value")?)))
            .collect()),
        Some(other) => Err(format!(
            "annotations must be an object or a list of key/value pairs, not {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nothing_is_granted_by_default() {
        assert_eq!(
            Capabilities::from_annotations(None).unwrap(),
            Capabilities::default()
        );
        assert_eq!(
            Capabilities::from_annotations(Some(&json!([{"key": "exec", "value": "wasm:0.1"}])))
                .unwrap(),
            Capabilities::default()
        );
    }

    #[test]
    fn object_and_pair_list_forms_agree() {
        let object = json!({"dir": "/tmp/action", "net_access": true});
        let pairs =
            json!([{"key": "dir", "value": "/tmp/action"}, {"key": "net_access", "value": true}]);
        let expected = Capabilities {
            dir: Some("/tmp/action".into()),
            net_access: true,
        };
        assert_eq!(
            Capabilities::from_annotations(Some(&object)).unwrap(),
            expected
        );
        assert_eq!(
            Capabilities::from_annotations(Some(&pairs)).unwrap(),
            expected
        );
    }

    #[test]
    fn malformed_capabilities_are_refused() {
        let error =
            Capabilities::from_annotations(Some(&json!({"net_access": "yes"}))).unwrap_err();
        assert!(error.contains("net_access"), "{error}");
        let error = Capabilities::from_annotations(Some(&json!({"dir": 7}))).unwrap_err();
        assert!(error.contains("dir"), "{error}");
        assert!(Capabilities::from_annotations(Some(&json!("x"))).is_err());
    }
}
