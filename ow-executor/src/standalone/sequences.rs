//! Sequences (`exec.kind: "sequence"`), as OpenWhisk's controller runs them: each component
//! is invoked with the previous one's result, every component activation is recorded (its
//! `cause` the sequence's), and the sequence's own record carries the last result, the sum
//! of the components' durations and their activation ids as its `logs`. A result with an
//! `error` field stops the sequence there. Create and update check that every component
//! exists, that the sequence does not reach itself, and that it runs at most 50 actions.

use super::RestError;
use super::Standalone;
use super::invoke::RecordedFuture;
use super::packages::Resolved;
use super::records::{
    ActionExec, ActionRecord, ActivationRecord, ActivationResponse, ActivationStatus, FullName,
    KeyValue, KeyValues, SEQUENCE_KIND, SequenceExec, epoch_millis,
};
use crate::error::ApiError;
use serde_json::{Map, Value, json};
use std::time::{Instant, SystemTime};

/// The most actions one invoke of a sequence runs, nested sequences' included (OpenWhisk's
/// `actionSequenceMaxLimit`).
pub const MAX_SEQUENCE_ACTIONS: usize = 50;

const TOO_LONG: &str = "Too many actions in the sequence.";
const NO_COMPONENT: &str = "No component specified for the sequence.";
const CYCLIC: &str = "Sequence may not refer to itself.";
const COMPONENT_MISSING: &str = "Sequence component does not exist.";

/// The parameters OpenWhisk stores for a sequence: its components, as `_actions`.
pub fn sequence_parameters(sequence: &SequenceExec) -> KeyValues {
    let components: Vec<String> = sequence
        .components
        .iter()
        .map(FullName::to_string)
        .collect();
    KeyValues(vec![KeyValue {
        key: "_actions".to_owned(),
        value: json!(components),
        init: false,
    }])
}

/// What one invoke of a (topmost) sequence may still run: actions, and sequences nested in
/// one another (which a cycle, made by deleting and recreating components, could otherwise
/// nest without end).
#[derive(Debug, Default)]
pub struct SequenceBudget {
    actions: usize,
    depth: usize,
}

impl Standalone {
    /// Checks the components of the sequence `sequence` at create or update: each exists, none
    /// reaches the sequence itself, and all together run at most [`MAX_SEQUENCE_ACTIONS`].
    pub fn check_sequence(
        &self,
        sequence: &FullName,
        components: &[FullName],
    ) -> Result<(), RestError> {
        if components.is_empty() {
            return Err(ApiError::bad_request(NO_COMPONENT).into());
        }
        if self.count_actions(sequence, components, 0)? > MAX_SEQUENCE_ACTIONS {
            return Err(ApiError::bad_request(TOO_LONG).into());
        }
        Ok(())
    }

    /// How many actions `components` run, nested sequences inlined.
    fn count_actions(
        &self,
        sequence: &FullName,
        components: &[FullName],
        depth: usize,
    ) -> Result<usize, RestError> {
        if components.len() > MAX_SEQUENCE_ACTIONS || depth > MAX_SEQUENCE_ACTIONS {
            return Err(ApiError::bad_request(TOO_LONG).into());
        }
        let mut count = 0;
        for component in components {
            let resolved = self
                .resolve(component)?
                .ok_or_else(|| ApiError::bad_request(COMPONENT_MISSING))?;
            if resolved.action.full_name() == *sequence {
                return Err(ApiError::bad_request(CYCLIC).into());
            }
            count += match &resolved.action.exec {
                ActionExec::Wasm(_) => 1,
                ActionExec::Sequence(inner) => {
                    self.count_actions(sequence, &inner.components, depth + 1)?
                }
            };
        }
        Ok(count)
    }

    /// Runs the sequence `sequence` on `input` and records its activation `activation_id`;
    /// `cause` is the enclosing sequence's activation, for a nested one.
    pub fn run_sequence<'a>(
        &'a self,
        sequence: Resolved,
        input: Map<String, Value>,
        activation_id: String,
        cause: Option<String>,
        budget: &'a mut SequenceBudget,
    ) -> RecordedFuture<'a> {
        Box::pin(async move {
            let start = SystemTime::now();
            let record = sequence.action;
            let ActionExec::Sequence(exec) = &record.exec else {
                unreachable!("run_sequence runs sequences")
            };
            budget.depth += 1;
            let mut run = ComponentRuns::default();
            let mut input = input;
            // Until a component runs, the sequence's result is its input.
            let mut response =
                ActivationResponse::new(ActivationStatus::Success, Value::Object(input.clone()));
            for component in &exec.components {
                if budget.actions >= MAX_SEQUENCE_ACTIONS || budget.depth > MAX_SEQUENCE_ACTIONS {
                    response = application_error(TOO_LONG);
                    break;
                }
                let Some(component) = self.resolve(component)? else {
                    response = application_error(COMPONENT_MISSING);
                    break;
                };
                let id = super::new_id();
                let cause = Some(activation_id.clone());
                let activation = match &component.action.exec {
                    ActionExec::Wasm(_) => {
                        budget.actions += 1;
                        self.activate(component, input, id, cause, Instant::now())
                            .await?
                    }
                    ActionExec::Sequence(_) => {
                        self.run_sequence(component, input, id, cause, budget)
                            .await?
                    }
                };
                run.add(&activation);
                response = activation.response;
                let result = match &response.result {
                    Value::Object(result) if result.contains_key("error") => break,
                    Value::Object(result) => result.clone(),
                    // An array cannot be the next component's parameters.
                    _ => {
                        response = ActivationResponse::new(
                            ActivationStatus::InternalError,
                            json!({ "error": "Sequence failed." }),
                        );
                        break;
                    }
                };
                input = result;
            }
            budget.depth -= 1;
            let activation = sequence_record(
                &record,
                activation_id,
                cause,
                (epoch_millis(start), epoch_millis(SystemTime::now())),
                response,
                run,
            );
            self.store.put_activation(&activation)?;
            tracing::info!(
                activation_id = activation.activation_id,
                sequence = %record.full_name(),
                components = activation.logs.len(),
                status = activation.response.status.as_str(),
                "sequence finished"
            );
            Ok(activation)
        })
    }
}

/// What the components of one sequence activation ran.
#[derive(Debug, Default)]
struct ComponentRuns {
    ids: Vec<String>,
    duration: u64,
    max_memory: Option<u64>,
}

impl ComponentRuns {
    fn add(&mut self, activation: &ActivationRecord) {
        self.ids.push(activation.activation_id.clone());
        self.duration += activation
            .duration
            .unwrap_or(activation.end.saturating_sub(activation.start));
        let memory = activation
            .annotations
            .get("limits")
            .and_then(|limits| limits["memory"].as_u64());
        self.max_memory = self.max_memory.max(memory);
    }
}

/// A sequence's failure as OpenWhisk records it: an application error.
fn application_error(message: &str) -> ActivationResponse {
    ActivationResponse::new(
        ActivationStatus::ApplicationError,
        json!({ "error": message }),
    )
}

/// The record of a sequence's activation: the last component's response, the components'
/// activation ids as its logs, the sum of their durations; annotated `topmost`, `path`,
/// `kind`, `causedBy` when nested and `limits` with the most memory a component had.
fn sequence_record(
    sequence: &ActionRecord,
    activation_id: String,
    cause: Option<String>,
    (start, end): (u64, u64),
    response: ActivationResponse,
    run: ComponentRuns,
) -> ActivationRecord {
    let mut annotations = KeyValues::default();
    annotations.set("topmost", json!(cause.is_none()));
    annotations.set(
        "path",
        json!(format!("{}/{}", sequence.namespace, sequence.name)),
    );
    annotations.set("kind", json!(SEQUENCE_KIND));
    if cause.is_some() {
        annotations.set("causedBy", json!(SEQUENCE_KIND));
    }
    if let Some(memory) = run.max_memory {
        let limits = &sequence.limits;
        annotations.set(
            "limits",
            json!({"timeout": limits.timeout, "memory": memory, "logs": limits.logs}),
        );
    }
    let mut record = ActivationRecord::new(
        sequence,
        &activation_id,
        (start, end),
        response,
        run.ids,
        annotations,
    );
    record.duration = Some(run.duration);
    record.cause = cause;
    record
}
