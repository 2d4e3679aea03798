//! The bodies of OpenWhisk's action container protocol (`POST /init`, `POST /run`) and the
//! environment a run puts in front of the action.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// `POST /init` body: `{"value": {...}}`.
///
/// Read it from the body's bytes (`serde_json::from_slice`): the code is then borrowed from
/// them, not copied.
#[derive(Debug, Clone, Deserialize)]
pub struct InitRequest<'a> {
    /// The action to initialise. A body without one (`{}`, or a `null` value) has no code,
    /// which the runtimes refuse as missing code rather than as a malformed body.
    #[serde(default, borrow, deserialize_with = "null_as_default")]
    pub value: InitValue<'a>,
}

/// The `value` of an init request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InitValue<'a> {
    /// Informational action name.
    #[serde(default)]
    pub name: Option<String>,
    /// The entry to run: names a zip entry (`main` or `main.wasm`), and the function the
    /// export-call ABI calls. Defaults to `main`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub main: String,
    /// Whether `code` is base64. Decided by the controller, informational here.
    #[serde(default)]
    pub binary: bool,
    /// The action code, base64 of a zip or a module (hundreds of KiB). Borrowed from the body
    /// unless the JSON string holds an escape, which base64 never needs.
    #[serde(default, borrow, deserialize_with = "borrowed_str_or_null")]
    pub code: Cow<'a, str>,
    /// Environment for every activation of this action. Values should be strings; others
    /// are taken as their JSON text, as the Node.js runtime does.
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Map<String, Value>,
    /// Annotations a Wasm-aware invoker forwards (`dir`, `net_access`).
    #[serde(default)]
    pub annotations: Option<Value>,
}

impl InitValue<'_> {
    /// The init environment as strings.
    pub fn env_strings(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|(key, value)| (key.clone(), json_text(value)))
            .collect()
    }

    /// The entry name to run, `main` when none was given.
    pub fn main_or_default(&self) -> &str {
        if self.main.is_empty() {
            crate::abi::DEFAULT_MAIN
        } else {
            &self.main
        }
    }
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A string, borrowed from the input when it can be; null as the empty string.
fn borrowed_str_or_null<'de, D>(deserializer: D) -> Result<Cow<'de, str>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    deserializer.deserialize_option(CowStr)
}

/// Reads a string borrowed from the input when it can be (it holds no escape), else owned.
/// Read as an option, null is the empty string.
struct CowStr;

impl<'de> serde::de::Visitor<'de> for CowStr {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(""))
    }

    fn visit_some<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text))
    }
}

/// `POST /run` body: the parameters plus the activation's context fields.
///
/// Read it from the body's bytes (`serde_json::from_slice`): the field names are then borrowed
/// from them, and only what the activation keeps is allocated. A body that read refuses is
/// read again as a JSON value by [`RunRequest::from_body`], whose typed error says why.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// The parameters: an object or an array; `{}` when missing or null.
    pub value: Value,
    /// Every other top-level field, as `__OW_<UPPERCASE NAME>` environment variables.
    pub context: BTreeMap<String, String>,
}

/// Why a run body was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RunRequestError {
    /// The body is not a JSON object.
    #[error("The request body must be a JSON object with the parameters in \"value\".")]
    NotAnObject,
    /// `value` is neither object, array nor null.
    #[error("The parameters in \"value\" must be a JSON object or array, not {0}.")]
    BadValue(&'static str),
}

impl RunRequest {
    /// Splits a parsed `/run` body into parameters and `__OW_*` context.
    ///
    /// String fields are taken as they are, numbers and booleans as their JSON text (a
    /// `deadline` may arrive as a number); nulls, objects and arrays carry no context.
    pub fn from_body(body: Value) -> Result<Self, RunRequestError> {
        let Value::Object(fields) = body else {
            return Err(RunRequestError::NotAnObject);
        };
        let mut request = Self::empty();
        for (field, value) in fields {
            request.set(&field, value)?;
        }
        Ok(request)
    }

    /// The activation deadline in epoch milliseconds, when one was sent and is a number.
    pub fn deadline_epoch_millis(&self) -> Option<u64> {
        self.context.get("__OW_DEADLINE")?.trim().parse().ok()
    }

    /// A body without fields: no parameters, no context.
    fn empty() -> Self {
        Self {
            value: Value::Object(Map::new()),
            context: BTreeMap::new(),
        }
    }

    /// Takes the top-level field `field`. A field seen again replaces what it set, as in
    /// `JSON.parse`, where the last of two equal keys wins.
    fn set(&mut self, field: &str, value: Value) -> Result<(), RunRequestError> {
        if field == "value" {
            self.value = match value {
                Value::Null => Value::Object(Map::new()),
                value @ (Value::Object(_) | Value::Array(_)) => value,
                other => return Err(RunRequestError::BadValue(json_type_name(&other))),
            };
            return Ok(());
        }
        let name = context_name(field);
        match value {
            Value::String(text) => self.context.insert(name, text),
            value @ (Value::Number(_) | Value::Bool(_)) => {
                self.context.insert(name, value.to_string())
            }
            Value::Null | Value::Object(_) | Value::Array(_) => self.context.remove(&name),
        };
        Ok(())
    }
}

/// The in-place read: each field is taken as it comes, by the same rule as
/// [`RunRequest::from_body`], its name borrowed from the body.
impl<'de> Deserialize<'de> for RunRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;

        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = RunRequest;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut fields: A,
            ) -> Result<RunRequest, A::Error> {
                let mut request = RunRequest::empty();
                while let Some(FieldName(field)) = fields.next_key()? {
                    let value = fields.next_value()?;
                    request
                        .set(&field, value)
                        .map_err(serde::de::Error::custom)?;
                }
                Ok(request)
            }
        }

        deserializer.deserialize_map(Fields)
    }
}

/// A field name, borrowed from the input unless it holds an escape.
struct FieldName<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(CowStr).map(FieldName)
    }
}

/// A string as it is, anything else as its JSON text.
fn json_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The environment name of a context field: `__OW_` and the name in capitals, as the Node.js
/// runtime writes it (`toUpperCase`, Unicode-aware). Built in one allocation: this runs for
/// every field of every `/run`, and the Unicode case tables are read only for a name that is
/// not ASCII.
fn context_name(field: &str) -> String {
    let mut name = String::with_capacity("__OW_".len() + field.len());
    name.push_str("__OW_");
    if field.is_ascii() {
        name.push_str(field);
        name.make_ascii_uppercase();
    } else {
        name.extend(field.chars().flat_map(char::to_uppercase));
    }
    name
}

/// The JSON type of a value, for error sentences.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The sentences of the official runtimes and the OpenWhisk platform, used verbatim.
pub mod sentences {
    /// `/init` without code.
    pub const MISSING_CODE: &str = "Missing main/no code to execute.";
    /// A second `/init`.
    pub const ALREADY_INITIALIZED: &str = "Cannot initialize the action more than once.";
    /// `/run` before `/init`.
    pub const NOT_INITIALIZED: &str = "System not initialized.";
    /// A result that is neither object nor array.
    pub const NOT_A_DICTIONARY: &str = "The action did not return a dictionary or array.";
    /// No usable result.
    pub const NO_VALID_RESPONSE: &str =
        "The action did not produce a valid response and exited unexpectedly.";
    /// A trap that exhausted the guest's call stack, in the same words on every engine (the
    /// trap's detail line reads `The action trapped: call stack exhausted`).
    pub const STACK_EXHAUSTED: &str = "call stack exhausted";
    /// The line that closes every activation's logs on each stream.
    pub const LOG_SENTINEL: &str = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX";

    /// The sentence for a result of `size` bytes over the limit of `limit` bytes.
    pub fn result_too_large(size: u64, limit: u64) -> String {
        format!(
            "The action produced a response that exceeded the allowed length: {size} > {limit} bytes."
        )
    }

    /// The sentence that closes logs cut at the limit of `limit` bytes.
    pub fn logs_truncated(limit: u64) -> String {
        format!(
            "Logs were truncated because the total bytes size exceeds the limit of {limit} bytes."
        )
    }

    /// The timeout sentence for a limit of `limit_ms` milliseconds.
    pub fn time_limit_exceeded(limit_ms: u64) -> String {
        format!("The action exceeded its time limits of {limit_ms} milliseconds.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn run_fields_become_ow_environment() {
        let request = RunRequest::from_body(json!({
            "value": {"param1": 2},
            "namespace": "guest",
            "action_name": "/guest/add",
            "activation_id": "abc",
            "deadline": 1700000060000u64,
            "api_key": "uuid:key",
            "straße": "x",
            "ignored": {"nested": true}
        }))
        .unwrap();
        assert_eq!(request.value, json!({"param1": 2}));
        assert_eq!(request.context["__OW_NAMESPACE"], "guest");
        assert_eq!(request.context["__OW_ACTION_NAME"], "/guest/add");
        assert_eq!(request.context["__OW_ACTIVATION_ID"], "abc");
        assert_eq!(request.context["__OW_API_KEY"], "uuid:key");
        assert_eq!(request.context["__OW_STRASSE"], "x");
        assert_eq!(request.deadline_epoch_millis(), Some(1_700_000_060_000));
        assert!(!request.context.contains_key("__OW_IGNORED"));
        assert!(!request.context.contains_key("__OW_VALUE"));
    }

    #[test]
    fn missing_or_null_value_means_empty_parameters() {
        assert_eq!(RunRequest::from_body(json!({})).unwrap().value, json!({}));
        assert_eq!(
            RunRequest::from_body(json!({"value": null})).unwrap().value,
            json!({})
        );
        assert_eq!(
            RunRequest::from_body(json!({"value": [1, 2]}))
                .unwrap()
                .value,
            json!([1, 2])
        );
    }

    #[test]
    fn malformed_run_bodies_are_refused() {
        assert_eq!(
            RunRequest::from_body(json!([1])),
            Err(RunRequestError::NotAnObject)
        );
        assert_eq!(
            RunRequest::from_body(json!({"value": "x"})),
            Err(RunRequestError::BadValue("a string"))
        );
    }

    /// A run body read in place, as the executor reads it first.
    fn run_in_place(body: &str) -> Result<RunRequest, serde_json::Error> {
        serde_json::from_str(body)
    }

    /// The same body read as a JSON value, as the executor reads it when the first read fails.
    fn run_through_value(body: &str) -> Result<RunRequest, RunRequestError> {
        RunRequest::from_body(serde_json::from_str(body).unwrap())
    }

    #[test]
    fn a_run_body_reads_the_same_in_place_as_through_a_value() {
        for body in [
            r#"{"value": {"param1": 2}, "namespace": "guest", "deadline": 1700000060000}"#,
            r#"{"value": [1, {"a": null}], "flag": true, "ratio": 1.5, "big": 1e3}"#,
            r#"{"straße": "x", "ignored": {"nested": [1]}, "none": null, "list": []}"#,
            r#"{"value": null, "esc\u0061ped": "a\"quote\u00e9"}"#,
            r#"{}"#,
        ] {
            assert_eq!(
                run_in_place(body).unwrap(),
                run_through_value(body).unwrap(),
                "{body}"
            );
        }
        let request = run_in_place(r#"{"esc\u0061ped": "a\"b", "big": 1e3}"#).unwrap();
        assert_eq!(request.context["__OW_ESCAPED"], "a\"b");
        assert_eq!(request.context["__OW_BIG"], "1000.0");
    }

    #[test]
    fn a_run_field_sent_twice_counts_once_the_last() {
        let body = r#"{"value": {"a": 1}, "value": {"b": 2}, "namespace": "first",
            "namespace": "last", "api_key": "uuid:key", "api_key": null}"#;
        for request in [
            run_in_place(body).unwrap(),
            run_through_value(body).unwrap(),
        ] {
            assert_eq!(request.value, json!({"b": 2}));
            assert_eq!(request.context["__OW_NAMESPACE"], "last");
            assert!(!request.context.contains_key("__OW_API_KEY"));
        }
        // A first value the in-place read refuses sends the body through a value, where the
        // last one counts too.
        let body = r#"{"value": "x", "value": {"b": 2}}"#;
        assert!(run_in_place(body).is_err());
        assert_eq!(run_through_value(body).unwrap().value, json!({"b": 2}));
    }

    #[test]
    fn a_run_body_refused_in_place_is_refused_through_a_value_with_the_reason() {
        for (body, reason) in [
            (r#"[1]"#, RunRequestError::NotAnObject),
            (r#""text""#, RunRequestError::NotAnObject),
            (r#"{"value": "x"}"#, RunRequestError::BadValue("a string")),
            (
                r#"{"value": 5, "namespace": "guest"}"#,
                RunRequestError::BadValue("a number"),
            ),
        ] {
            assert!(run_in_place(body).is_err(), "{body}");
            assert_eq!(run_through_value(body), Err(reason), "{body}");
        }
    }

    /// An init body as the executor reads it: from its bytes.
    fn init_request(body: &[u8]) -> InitRequest<'_> {
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn init_defaults_fill_missing_and_null_fields() {
        let body = br#"{"value": {"code": "AA==", "env": null, "main": null}}"#;
        let request = init_request(body);
        assert_eq!(request.value.main_or_default(), "main");
        assert!(request.value.env_strings().is_empty());
        let request = init_request(br#"{"value": {"env": {"A": "x", "N": 3}}}"#);
        let env = request.value.env_strings();
        assert_eq!((env["A"].as_str(), env["N"].as_str()), ("x", "3"));
        for body in [
            &br#"{"value": {}}"#[..],
            br#"{}"#,
            br#"{"value": null}"#,
            br#"{"value": {"code": null}}"#,
        ] {
            assert!(init_request(body).value.code.is_empty());
        }
    }

    #[test]
    fn init_code_is_borrowed_from_the_body_unless_escaped() {
        let body = br#"{"value": {"code": "AGFzbQ=="}}"#;
        let code = init_request(body).value.code;
        assert!(matches!(code, Cow::Borrowed("AGFzbQ==")), "{code:?}");
        // Some JSON encoders escape the slashes of base64.
        let body = br#"{"value": {"code": "a\/b+c="}}"#;
        let code = init_request(body).value.code;
        assert!(
            matches!(&code, Cow::Owned(text) if text == "a/b+c="),
            "{code:?}"
        );
        let error = serde_json::from_slice::<InitRequest<'_>>(br#"{"value": {"code": 5}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("invalid type: integer `5`, expected a string"),
            "{error}"
        );
    }
}
