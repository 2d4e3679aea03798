//! The records of the REST API, typed with the fields OpenWhisk defines: actions, packages,
//! triggers, rules and activations as the store keeps them and the API answers them, the
//! entity-name rule every one of them follows, and the log line format. The store reads and
//! writes exactly these types, so a mistyped field is an error, never a quiet `""` or `0`.

use crate::error::ApiError;
use ow_common::runtime::{Logs, RunError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub use ow_common::limits::ActionLimits;

/// The only action kind this server runs.
pub const WASM_KIND: &str = "wasm:0.1";

/// The largest result an activation may have: OpenWhisk's invoker, which standalone plays,
/// refuses a longer one with the platform's sentence (an action container does not).
pub const MAX_RESULT_BYTES: u64 = 1024 * 1024;

/// The longest entity name OpenWhisk accepts.
pub const MAX_ENTITY_NAME_CHARS: usize = 256;

/// OpenWhisk's entity-name form (`EntityName.REGEX` of its controller): a word character,
/// then word characters, `@`, spaces, `.`, `&` or `-`, not ending in a space. `\w` is ASCII,
/// as in Java.
static ENTITY_NAME: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"\A(?-u:\w|\w[\w@ .&-]{0,254}[\w@.&-])\z").expect("a valid pattern")
});

/// Checks that `name` is a name OpenWhisk accepts for an action, package, trigger or rule.
pub fn check_entity_name(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if chars > MAX_ENTITY_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "The name of the entity is {chars} characters long, longer than the \
             {MAX_ENTITY_NAME_CHARS} allowed; choose a shorter name."
        )));
    }
    if !ENTITY_NAME.is_match(name) {
        return Err(ApiError::bad_request(
            "The name of the entity contains illegal characters. A name starts with a letter, a \
             digit or '_' and goes on with those, '@', '.', '&', '-' or spaces, and does not end \
             in a space.",
        ));
    }
    Ok(())
}

/// An entity's version, `major.minor.patch`; every update bumps the patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SemVer {
    major: u64,
    minor: u64,
    patch: u64,
}

impl SemVer {
    /// The version of a newly created entity.
    pub const FIRST: Self = Self {
        major: 0,
        minor: 0,
        patch: 1,
    };

    /// The version an update gives: the next patch.
    pub fn bumped(self) -> Self {
        Self {
            patch: self.patch + 1,
            ..self
        }
    }
}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for SemVer {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<Option<u64>> = text.split('.').map(|part| part.parse().ok()).collect();
        match parts[..] {
            [Some(major), Some(minor), Some(patch)] => Ok(Self {
                major,
                minor,
                patch,
            }),
            _ => Err(format!(
                "'{text}' is not a version of the form major.minor.patch"
            )),
        }
    }
}

/// `TryFrom<String>` and `From<$type> for String` through `FromStr` and `Display`: what
/// `#[serde(try_from = "String", into = "String")]` asks of a type written as a string.
macro_rules! string_conversions {
    ($type:ty) => {
        impl TryFrom<String> for $type {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                text.parse()
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> Self {
                value.to_string()
            }
        }
    };
}

string_conversions!(SemVer);

/// One `{"key", "value"}` entry of parameters or annotations; a parameter marked
/// `"init": true` is part of the init environment rather than of every activation's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The name.
    pub key: String,
    /// The value, any JSON.
    #[serde(default)]
    pub value: Value,
    /// Whether the parameter is for the init environment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
}

/// Parameters or annotations: OpenWhisk's list of `{"key", "value"}` entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyValues(pub Vec<KeyValue>);

impl KeyValues {
    /// The value of `key`, if the list has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|entry| entry.key == key)
            .map(|entry| &entry.value)
    }

    /// Sets `key` to `value`, replacing the value it had.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|entry| entry.key == key) {
            Some(entry) => entry.value = value,
            None => self.0.push(KeyValue {
                key: key.to_owned(),
                value,
                init: false,
            }),
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.0.retain(|entry| entry.key != key);
    }

    /// These entries over `base`'s: what `base` holds that these do not name, then these. A
    /// package's parameters are the base of its actions', a package's those of its bindings.
    pub fn over(&self, base: &KeyValues) -> KeyValues {
        let mut merged: Vec<KeyValue> = base
            .0
            .iter()
            .filter(|entry| self.get(&entry.key).is_none())
            .cloned()
            .collect();
        merged.extend(self.0.iter().cloned());
        KeyValues(merged)
    }

    /// The list as JSON, as capabilities and limits are read from annotations.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("key/value lists serialize")
    }
}

/// The kind of a sequence action.
pub const SEQUENCE_KIND: &str = "sequence";

/// The `exec` of an action: code an engine runs, or a sequence of other actions, told apart
/// by `kind` as OpenWhisk writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum ActionExec {
    /// A Wasm module, [`WASM_KIND`].
    #[serde(rename = "wasm:0.1")]
    Wasm(CodeExec),
    /// A sequence, [`SEQUENCE_KIND`].
    #[serde(rename = "sequence")]
    Sequence(SequenceExec),
}

impl ActionExec {
    /// The `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Wasm(_) => WASM_KIND,
            Self::Sequence(_) => SEQUENCE_KIND,
        }
    }
}

/// The code of a Wasm action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeExec {
    /// The base64 of a zip or a module; absent in listings and `code=false` answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Whether `code` is base64 (always, for Wasm).
    pub binary: bool,
    /// The entry to run in a zip with several modules, and the function the export-call ABI
    /// calls.
    pub main: String,
}

/// The actions a sequence runs, one after the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceExec {
    /// The components, each by its fully qualified name.
    pub components: Vec<FullName>,
}

/// An action as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Bumped by every update.
    pub version: SemVer,
    /// Whether it is shared.
    pub publish: bool,
    /// Its kind and code.
    pub exec: ActionExec,
    /// Bound parameters.
    pub parameters: KeyValues,
    /// Time, memory, log and concurrency limits.
    pub limits: ActionLimits,
    /// Annotations, `exec` and `provide-api-key` among them.
    pub annotations: KeyValues,
    /// When it was last written, in epoch milliseconds.
    pub updated: u64,
}

impl ActionRecord {
    /// The record without its code, as listings and `code=false` show it.
    pub fn without_code(&self) -> Self {
        let mut summary = self.clone();
        if let ActionExec::Wasm(code) = &mut summary.exec {
            code.code = None;
        }
        summary
    }

    /// Its fully qualified name: its namespace field is the namespace, or the namespace and
    /// the package it is in (`guest/utils`).
    pub fn full_name(&self) -> FullName {
        FullName::in_path(&self.namespace, &self.name)
    }

    /// The namespace it belongs to, without its package.
    pub fn root_namespace(&self) -> &str {
        root_of(&self.namespace)
    }

    /// Whether the action asked for its API key (`provide-api-key` annotation).
    pub fn provides_api_key(&self) -> bool {
        self.annotations.get("provide-api-key") == Some(&Value::Bool(true))
    }

    /// The parameters an invoke may not set: with the `final` annotation, every parameter
    /// bound to a value (OpenWhisk's immutable parameters); else none.
    pub fn final_parameters(&self) -> Vec<&str> {
        if self.annotations.get("final") != Some(&Value::Bool(true)) {
            return Vec::new();
        }
        self.parameters
            .0
            .iter()
            .filter(|parameter| !parameter.value.is_null())
            .map(|parameter| parameter.key.as_str())
            .collect()
    }

    /// The parameters marked `init: true`: the init environment, as strings.
    pub fn init_env(&self) -> BTreeMap<String, String> {
        self.parameters
            .0
            .iter()
            .filter(|parameter| parameter.init)
            .map(|parameter| {
                let value = match &parameter.value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (parameter.key.clone(), value)
            })
            .collect()
    }

    /// The bound parameters (except `init: true` ones) overlaid by an invoke's own.
    pub fn merged_params(&self, invoke_params: Map<String, Value>) -> Map<String, Value> {
        let mut params: Map<String, Value> = self
            .parameters
            .0
            .iter()
            .filter(|parameter| !parameter.init)
            .map(|parameter| (parameter.key.clone(), parameter.value.clone()))
            .collect();
        params.extend(invoke_params);
        params
    }

    /// The annotations every activation record of this action starts with: its `path`,
    /// `kind` and `limits`.
    pub fn activation_annotations(&self) -> KeyValues {
        let mut annotations = KeyValues::default();
        annotations.set("path", json!(format!("{}/{}", self.namespace, self.name)));
        annotations.set("kind", json!(self.exec.kind()));
        annotations.set("limits", json!(self.limits));
        annotations
    }
}

/// The namespace of a path: `guest` of `guest/utils`.
pub fn root_of(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// An entity by its fully qualified name, `/namespace/package/name` or `/namespace/name`, as
/// sequences name their components and rules their trigger and action.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FullName {
    /// The namespace.
    pub namespace: String,
    /// The package it is in, if any.
    pub package: Option<String>,
    /// Its name.
    pub name: String,
}

impl FullName {
    /// The entity `name` in `path`, a namespace or `namespace/package`.
    pub fn in_path(path: &str, name: &str) -> Self {
        let (namespace, package) = match path.split_once('/') {
            Some((namespace, package)) => (namespace, Some(package.to_owned())),
            None => (path, None),
        };
        Self {
            namespace: namespace.to_owned(),
            package,
            name: name.to_owned(),
        }
    }

    /// Reads a fully qualified name as a request writes it, the namespace `_` meaning
    /// `own_namespace`.
    pub fn resolve(text: &str, own_namespace: &str) -> Result<Self, ApiError> {
        let mut full: Self = text.parse().map_err(ApiError::bad_request)?;
        if full.namespace == "_" {
            full.namespace = own_namespace.to_owned();
        }
        Ok(full)
    }

    /// The namespace and package: what the namespace field of a record in it holds.
    pub fn path(&self) -> String {
        match &self.package {
            Some(package) => format!("{}/{package}", self.namespace),
            None => self.namespace.clone(),
        }
    }

    /// `namespace/package/name`, as activations and trigger logs write it.
    pub fn without_slash(&self) -> String {
        format!("{}/{}", self.path(), self.name)
    }
}

impl fmt::Display for FullName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.without_slash())
    }
}

impl FromStr for FullName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let segments: Vec<&str> = text.strip_prefix('/').unwrap_or(text).split('/').collect();
        let malformed = |why: &str| {
            format!(
                "'{text}' is not a fully qualified name: The fully qualified name of the entity \
                 must contain at least the namespace and the name of the entity{why}."
            )
        };
        if segments.len() > 3 {
            return Err(malformed(", and at most a package between them"));
        }
        for segment in &segments {
            if *segment != "_" && check_entity_name(segment).is_err() {
                return Err(malformed(&format!(
                    ", each a valid entity name, which '{segment}' is not"
                )));
            }
        }
        match segments[..] {
            [namespace, name] => Ok(Self::in_path(namespace, name)),
            [namespace, package, name] => {
                Ok(Self::in_path(&format!("{namespace}/{package}"), name))
            }
            _ => Err(malformed("")),
        }
    }
}

string_conversions!(FullName);

impl From<&FullName> for QualifiedName {
    fn from(full: &FullName) -> Self {
        Self {
            path: full.path(),
            name: full.name.clone(),
        }
    }
}

impl From<&QualifiedName> for FullName {
    fn from(qualified: &QualifiedName) -> Self {
        Self::in_path(&qualified.path, &qualified.name)
    }
}

/// Another entity named by its namespace and name, as a package binding names its package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

/// A fully qualified entity name as rules and triggers hold it: `{"path", "name"}`, where the
/// path is the namespace, or the namespace and package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualifiedName {
    /// The namespace, or `namespace/package`.
    pub path: String,
    /// The name.
    pub name: String,
}

/// A package as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageRecord {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Bumped by every update.
    pub version: SemVer,
    /// Whether it is shared.
    pub publish: bool,
    /// The package this one is a binding of; `{}` when it is none.
    #[serde(with = "empty_object_as_none")]
    pub binding: Option<EntityRef>,
    /// Parameters bound for every action of the package.
    pub parameters: KeyValues,
    /// Annotations.
    pub annotations: KeyValues,
    /// When it was last written, in epoch milliseconds.
    pub updated: u64,
}

/// Whether a rule fires its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    /// Firing the trigger invokes the action.
    Active,
    /// The rule is kept but does nothing.
    Inactive,
}

/// A rule as its trigger holds it: the action it invokes and whether it is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReducedRule {
    /// The action the rule invokes.
    pub action: QualifiedName,
    /// Whether it is active.
    pub status: RuleStatus,
}

/// A trigger's limits: OpenWhisk has none yet, and writes `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerLimits {}

/// A trigger as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRecord {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Bumped by every update.
    pub version: SemVer,
    /// Whether it is shared.
    pub publish: bool,
    /// Parameters every firing carries.
    pub parameters: KeyValues,
    /// Its limits (none).
    #[serde(default)]
    pub limits: TriggerLimits,
    /// Annotations.
    pub annotations: KeyValues,
    /// The rules on it, by their fully qualified name (`namespace/rule`); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<BTreeMap<String, ReducedRule>>,
    /// When it was last written, in epoch milliseconds.
    pub updated: u64,
}

/// A rule as stored: which trigger fires which action. Its status lives on the trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleRecord {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Bumped by every update.
    pub version: SemVer,
    /// Whether it is shared.
    pub publish: bool,
    /// The trigger that fires it.
    pub trigger: QualifiedName,
    /// The action it invokes.
    pub action: QualifiedName,
    /// Annotations.
    pub annotations: KeyValues,
    /// When it was last written, in epoch milliseconds.
    pub updated: u64,
}

/// `{}` for none, as OpenWhisk writes a package that is no binding.
mod empty_object_as_none {
    use super::EntityRef;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Binding {
        Some(EntityRef),
        None(NoBinding),
    }

    /// `{}` and nothing else: a mistyped binding is an error, not no binding.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoBinding {}

    pub fn serialize<S: Serializer>(
        binding: &Option<EntityRef>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match binding {
            Some(binding) => binding.serialize(serializer),
            None => serde_json::Map::new().serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<EntityRef>, D::Error> {
        Ok(match Binding::deserialize(deserializer)? {
            Binding::Some(binding) => Some(binding),
            Binding::None(NoBinding {}) => None,
        })
    }
}

/// The collections of entities, each a table of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    /// Actions.
    Actions,
    /// Packages.
    Packages,
    /// Triggers.
    Triggers,
    /// Rules.
    Rules,
}

impl Collection {
    /// Every collection.
    pub const ALL: [Self; 4] = [Self::Actions, Self::Packages, Self::Triggers, Self::Rules];

    /// Its name in paths and its table in the store.
    pub fn name(self) -> &'static str {
        match self {
            Self::Actions => "actions",
            Self::Packages => "packages",
            Self::Triggers => "triggers",
            Self::Rules => "rules",
        }
    }

    /// What one entity of it is called in sentences.
    pub fn singular(self) -> &'static str {
        match self {
            Self::Actions => "action",
            Self::Packages => "package",
            Self::Triggers => "trigger",
            Self::Rules => "rule",
        }
    }
}

/// A record of one of the entity collections, as the store keeps it.
pub trait Entity: Serialize + serde::de::DeserializeOwned {
    /// The collection it belongs to.
    const COLLECTION: Collection;
    /// Its namespace.
    fn namespace(&self) -> &str;
    /// Its name.
    fn name(&self) -> &str;
    /// Its version.
    fn version(&self) -> SemVer;
    /// When it was last written.
    fn updated(&self) -> u64;
    /// Whether it is shared.
    fn publish(&self) -> bool;
    /// Its annotations.
    fn annotations(&self) -> &KeyValues;
}

/// An entity as OpenWhisk's listings show it (its views' summary): without parameters,
/// code, limits or links.
#[derive(Debug, Serialize)]
pub struct EntitySummary<'a> {
    namespace: &'a str,
    name: &'a str,
    version: SemVer,
    publish: bool,
    annotations: &'a KeyValues,
    updated: u64,
}

impl<'a> EntitySummary<'a> {
    /// The summary of `entity`.
    pub fn of(entity: &'a impl Entity) -> Self {
        Self {
            namespace: entity.namespace(),
            name: entity.name(),
            version: entity.version(),
            publish: entity.publish(),
            annotations: entity.annotations(),
            updated: entity.updated(),
        }
    }
}

macro_rules! entity {
    ($record:ty, $collection:expr) => {
        impl Entity for $record {
            const COLLECTION: Collection = $collection;
            fn namespace(&self) -> &str {
                &self.namespace
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn version(&self) -> SemVer {
                self.version
            }
            fn updated(&self) -> u64 {
                self.updated
            }
            fn publish(&self) -> bool {
                self.publish
            }
            fn annotations(&self) -> &KeyValues {
                &self.annotations
            }
        }
    };
}

entity!(ActionRecord, Collection::Actions);
entity!(PackageRecord, Collection::Packages);
entity!(TriggerRecord, Collection::Triggers);
entity!(RuleRecord, Collection::Rules);

/// OpenWhisk's activation status, with its `statusCode` in listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
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
    /// Every status, by its `statusCode`.
    const ALL: [Self; 4] = [
        Self::Success,
        Self::ApplicationError,
        Self::DeveloperError,
        Self::InternalError,
    ];

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
        Self::ALL
            .iter()
            .position(|status| *status == self)
            .expect("every status is listed") as u8
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

impl From<ActivationStatus> for &'static str {
    fn from(status: ActivationStatus) -> Self {
        status.as_str()
    }
}

impl TryFrom<String> for ActivationStatus {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| format!("'{text}' is not an activation status"))
    }
}

/// The `response` of an activation record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationResponse {
    /// The result, or `{"error": …}`.
    pub result: Value,
    /// The result's size in bytes, as JSON.
    pub size: u64,
    /// How the activation ended.
    pub status: ActivationStatus,
    /// Whether it succeeded.
    pub success: bool,
}

impl ActivationResponse {
    /// The response of an activation that ended with `status` and `result`.
    pub fn new(status: ActivationStatus, result: Value) -> Self {
        let size = serde_json::to_vec(&result).map_or(0, |bytes| bytes.len() as u64);
        Self {
            result,
            size,
            status,
            success: status == ActivationStatus::Success,
        }
    }

    /// The response of an activation whose outcome is `outcome`.
    pub fn of(outcome: Result<Value, RunError>) -> Self {
        let status = ActivationStatus::of(&outcome);
        Self::new(
            status,
            outcome.unwrap_or_else(|error| json!({ "error": error.to_string() })),
        )
    }
}

/// An activation record, shaped like OpenWhisk's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationRecord {
    /// The namespace it ran in.
    pub namespace: String,
    /// The action's name.
    pub name: String,
    /// The action's version.
    pub version: SemVer,
    /// Who invoked it.
    pub subject: String,
    /// Its id, 32 hex digits.
    pub activation_id: String,
    /// Always false.
    pub publish: bool,
    /// When it started, in epoch milliseconds.
    pub start: u64,
    /// When it ended, in epoch milliseconds.
    pub end: u64,
    /// `end - start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    /// The activation that caused this one (a sequence's, a trigger's), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// How it ended.
    pub response: ActivationResponse,
    /// Its log lines.
    pub logs: Vec<String>,
    /// `path`, `kind`, `limits`, `timeout`, `waitTime` and, on a cold start, `initTime`.
    pub annotations: KeyValues,
}

impl ActivationRecord {
    /// A record of an activation of `action` that ran from `start_ms` to `end_ms`, in the
    /// namespace of the action (without its package).
    pub fn new(
        action: &ActionRecord,
        activation_id: &str,
        (start_ms, end_ms): (u64, u64),
        response: ActivationResponse,
        logs: Vec<String>,
        annotations: KeyValues,
    ) -> Self {
        let namespace = action.root_namespace();
        Self {
            namespace: namespace.to_owned(),
            name: action.name.clone(),
            version: action.version,
            subject: namespace.to_owned(),
            activation_id: activation_id.to_owned(),
            publish: false,
            start: start_ms,
            end: end_ms,
            duration: Some(end_ms.saturating_sub(start_ms)),
            cause: None,
            response,
            logs,
            annotations,
        }
    }

    /// The name listings filter it by (`?name=`), as OpenWhisk's activation view keys it:
    /// `package/name` for an action in a package (the binding's package when it ran through
    /// a binding), else the name.
    pub fn listed_name(&self) -> String {
        let segments = |key| -> Vec<&str> {
            self.annotations
                .get(key)
                .and_then(Value::as_str)
                .map_or_else(Vec::new, |path| path.split('/').collect())
        };
        match (&segments("binding")[..], &segments("path")[..]) {
            ([_, package], _) | (_, [_, package, _]) => format!("{package}/{}", self.name),
            _ => self.name.clone(),
        }
    }

    /// The summary that listings show without `docs=true`.
    pub fn summary(&self) -> ActivationSummary<'_> {
        // A trigger's activation has no end; its summary shows neither end nor status.
        let ended = self.end != 0;
        ActivationSummary {
            namespace: &self.namespace,
            name: &self.name,
            version: self.version,
            subject: &self.subject,
            activation_id: &self.activation_id,
            start: self.start,
            end: ended.then_some(self.end),
            duration: self.duration,
            cause: self.cause.as_deref(),
            annotations: &self.annotations,
            publish: self.publish,
            status_code: ended.then(|| self.response.status.code()),
        }
    }
}

/// An activation as listings show it: the record without response and logs, with the
/// status as its code.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivationSummary<'a> {
    namespace: &'a str,
    name: &'a str,
    version: SemVer,
    subject: &'a str,
    activation_id: &'a str,
    start: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<&'a str>,
    annotations: &'a KeyValues,
    publish: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u8>,
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
    fn versions_bump_their_patch_and_garbage_is_no_version() {
        let version: SemVer = "1.2.9".parse().unwrap();
        assert_eq!(version.bumped().to_string(), "1.2.10");
        assert_eq!(SemVer::FIRST.bumped().to_string(), "0.0.2");
        for garbage in ["garbage", "1.2", "1.2.3.4", "1.x.3", ""] {
            assert!(garbage.parse::<SemVer>().is_err(), "{garbage}");
        }
        assert!(serde_json::from_value::<SemVer>(json!("0.0.x")).is_err());
        assert_eq!(serde_json::to_value(SemVer::FIRST).unwrap(), json!("0.0.1"));
    }

    #[test]
    fn statuses_follow_the_outcome_and_read_back_from_their_text() {
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
        for status in ActivationStatus::ALL {
            let text = serde_json::to_value(status).unwrap();
            assert_eq!(text, json!(status.as_str()));
            assert_eq!(
                serde_json::from_value::<ActivationStatus>(text).unwrap(),
                status
            );
        }
        assert_eq!(ActivationStatus::InternalError.code(), 3);
        assert!(serde_json::from_value::<ActivationStatus>(json!("fine")).is_err());
    }

    #[test]
    fn entity_names_follow_openwhisk() {
        let longest = format!("a{}", "b".repeat(MAX_ENTITY_NAME_CHARS - 1));
        for name in [
            "a", "_", "9", "hello", "a b", "a@b", "a.b-c", "x@", "a&b", "a.", "a-", &longest,
        ] {
            assert_eq!(check_entity_name(name), Ok(()), "{name:?}");
        }
        let too_long = format!("{longest}c");
        for name in [
            "", "-a", ".a", " a", "@a", "a ", "a/b", "a\0b", "a'b", "ünï☃", "a\nb", "a%b",
            &too_long,
        ] {
            let error = check_entity_name(name).unwrap_err();
            assert_eq!(
                error.status(),
                axum::http::StatusCode::BAD_REQUEST,
                "{name:?}"
            );
        }
        assert!(
            check_entity_name(&too_long)
                .unwrap_err()
                .message
                .contains("257 characters")
        );
    }

    #[test]
    fn records_of_every_collection_read_back_as_openwhisk_writes_them() {
        let package = json!({"namespace": "guest", "name": "utils", "version": "0.0.1",
            "publish": false, "binding": {}, "parameters": [{"key": "a", "value": 1}],
            "annotations": [], "updated": 1});
        let record: PackageRecord = serde_json::from_value(package.clone()).unwrap();
        assert_eq!(record.binding, None);
        assert_eq!(serde_json::to_value(&record).unwrap(), package);
        let binding = json!({"namespace": "guest", "name": "mine", "version": "0.0.2",
            "publish": false, "binding": {"namespace": "whisk.system", "name": "utils"},
            "parameters": [], "annotations": [], "updated": 2});
        let record: PackageRecord = serde_json::from_value(binding.clone()).unwrap();
        assert_eq!(
            record.binding.as_ref().map(|b| b.name.as_str()),
            Some("utils")
        );
        assert_eq!(serde_json::to_value(&record).unwrap(), binding);

        let trigger = json!({"namespace": "guest", "name": "t", "version": "0.0.1",
            "publish": false, "parameters": [], "limits": {}, "annotations": [],
            "rules": {"guest/r": {"action": {"path": "guest", "name": "a"}, "status": "active"}},
            "updated": 3});
        let record: TriggerRecord = serde_json::from_value(trigger.clone()).unwrap();
        assert_eq!(
            record.rules.as_ref().unwrap()["guest/r"].status,
            RuleStatus::Active
        );
        assert_eq!(serde_json::to_value(&record).unwrap(), trigger);

        let rule = json!({"namespace": "guest", "name": "r", "version": "0.0.1",
            "publish": false, "trigger": {"path": "guest", "name": "t"},
            "action": {"path": "guest/pkg", "name": "a"}, "annotations": [], "updated": 4});
        let record: RuleRecord = serde_json::from_value(rule.clone()).unwrap();
        assert_eq!(serde_json::to_value(&record).unwrap(), rule);

        // A mistyped field is an error, not a default.
        let mut broken = rule;
        broken["updated"] = json!("yesterday");
        assert!(serde_json::from_value::<RuleRecord>(broken).is_err());
    }

    #[test]
    fn full_names_read_as_openwhisk_writes_them() {
        let name = FullName::resolve("/_/utils/echo", "guest").unwrap();
        assert_eq!(name.to_string(), "/guest/utils/echo");
        assert_eq!(name.path(), "guest/utils");
        assert_eq!(name.without_slash(), "guest/utils/echo");
        assert_eq!(FullName::in_path("guest/utils", "echo"), name);
        let plain: FullName = "guest/add".parse().unwrap();
        assert_eq!((plain.package, plain.name.as_str()), (None, "add"));
        for malformed in ["add", "/add", "/a/b/c/d", "/guest/a b ", "", "/guest/"] {
            let error = FullName::resolve(malformed, "guest").unwrap_err();
            assert!(
                error
                    .message
                    .contains("must contain at least the namespace and the name"),
                "{malformed}: {error}"
            );
        }
        let qualified = QualifiedName::from(&name);
        assert_eq!(
            (qualified.path.as_str(), qualified.name.as_str()),
            ("guest/utils", "echo")
        );
        assert_eq!(FullName::from(&qualified), name);
    }

    #[test]
    fn a_package_s_parameters_lie_under_its_actions_and_sequences_keep_their_components() {
        let package: KeyValues =
            serde_json::from_value(json!([{"key": "a", "value": 1}, {"key": "b", "value": 1}]))
                .unwrap();
        let action: KeyValues =
            serde_json::from_value(json!([{"key": "b", "value": 2}, {"key": "c", "value": 2}]))
                .unwrap();
        assert_eq!(
            action.over(&package).to_json(),
            json!([{"key": "a", "value": 1}, {"key": "b", "value": 2}, {"key": "c", "value": 2}])
        );
        let sequence = json!({"kind": "sequence", "components": ["/guest/a", "/guest/utils/b"]});
        let exec: ActionExec = serde_json::from_value(sequence.clone()).unwrap();
        assert_eq!(exec.kind(), SEQUENCE_KIND);
        assert_eq!(serde_json::to_value(&exec).unwrap(), sequence);
        assert!(serde_json::from_value::<ActionExec>(json!({"kind": "nodejs:20"})).is_err());
        assert!(
            serde_json::from_value::<ActionExec>(json!({"kind": "sequence", "components": ["a"]}))
                .is_err()
        );
    }

    #[test]
    fn a_package_is_a_binding_or_says_it_is_none_with_an_empty_object() {
        let record = |binding: Value| {
            serde_json::from_value::<PackageRecord>(json!({
                "namespace": "guest", "name": "utils", "version": "0.0.1", "publish": false,
                "binding": binding, "parameters": [], "annotations": [], "updated": 1
            }))
        };
        let package = |binding: Value| record(binding).map(|package| package.binding);
        assert_eq!(package(json!({})).unwrap(), None);
        assert_eq!(
            package(json!({"namespace": "guest", "name": "lib"})).unwrap(),
            Some(EntityRef {
                namespace: "guest".to_owned(),
                name: "lib".to_owned()
            })
        );
        // A mistyped binding is no package record, never a package that is no binding.
        assert!(package(json!({"namespce": "guest", "name": "lib"})).is_err());
        assert!(package(json!({"name": "lib"})).is_err());
        assert!(package(json!(null)).is_err());
        // And no binding is written as `{}`.
        let stored = serde_json::to_value(record(json!({})).unwrap()).unwrap();
        assert_eq!(stored["binding"], json!({}));
    }

    #[test]
    fn activations_are_listed_by_package_and_name() {
        let action = |path: &str| -> ActionRecord {
            serde_json::from_value(json!({
                "namespace": path, "name": "echo", "version": "0.0.1", "publish": false,
                "exec": {"kind": WASM_KIND, "code": "AA==", "binary": true, "main": "main"},
                "parameters": [], "annotations": [], "updated": 1,
                "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
            }))
            .unwrap()
        };
        let activation = |action: &ActionRecord, binding: Option<&str>| {
            let mut annotations = action.activation_annotations();
            if let Some(binding) = binding {
                annotations.set("binding", json!(binding));
            }
            ActivationRecord::new(
                action,
                "id",
                (1, 2),
                ActivationResponse::new(ActivationStatus::Success, json!({})),
                Vec::new(),
                annotations,
            )
        };
        let plain = activation(&action("guest"), None);
        assert_eq!(
            (plain.namespace.as_str(), plain.listed_name()),
            ("guest", "echo".into())
        );
        let packaged = activation(&action("guest/utils"), None);
        assert_eq!(
            packaged.namespace, "guest",
            "the namespace, not the package"
        );
        assert_eq!(packaged.listed_name(), "utils/echo");
        let bound = activation(&action("guest/utils"), Some("guest/mine"));
        assert_eq!(bound.listed_name(), "mine/echo");
    }

    #[test]
    fn init_parameters_are_the_init_environment_and_the_rest_merge_under_the_invoke() {
        let action: ActionRecord = serde_json::from_value(json!({
            "namespace": "guest", "name": "env", "version": "0.0.1", "publish": false,
            "exec": {"kind": WASM_KIND, "code": "AA==", "binary": true, "main": "main"},
            "parameters": [{"key": "TOKEN", "value": "s3cret", "init": true},
                           {"key": "n", "value": 1}, {"key": "m", "value": 2}],
            "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1},
            "annotations": [{"key": "provide-api-key", "value": true}], "updated": 1
        }))
        .unwrap();
        assert_eq!(action.init_env()["TOKEN"], "s3cret");
        let mut invoke = Map::new();
        invoke.insert("m".to_owned(), json!(3));
        assert_eq!(
            Value::Object(action.merged_params(invoke)),
            json!({"n": 1, "m": 3})
        );
        assert!(action.provides_api_key());
        assert!(matches!(
            action.without_code().exec,
            ActionExec::Wasm(CodeExec { code: None, .. })
        ));
        assert!(
            serde_json::to_value(action.without_code()).unwrap()["exec"]
                .get("code")
                .is_none()
        );
    }
}
