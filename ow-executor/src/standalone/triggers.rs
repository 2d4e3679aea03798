//! Triggers and rules, as OpenWhisk's controller serves them. A rule links a trigger to an
//! action; its status (active or inactive) lives in the trigger's record, under `rules`, so
//! a rule and its trigger are written together. Firing a trigger (`POST …/triggers/{name}`)
//! invokes the action of every active rule with the trigger's parameters under the fire's,
//! and records the trigger's activation, whose `logs` say what each rule caused: the
//! activation id, or why there is none.

use super::api::{
    Handled, MAX_ENTITY_BODY_BYTES, QueryMap, Revision, flag, list, not_found, ok, read_body,
};
use super::auth::{Caller, EntityName};
use super::invoke::{check_final, invoke_params};
use super::records::{
    self, ActivationRecord, ActivationResponse, ActivationStatus, EntitySummary, FullName,
    KeyValues, QualifiedName, ReducedRule, RuleRecord, RuleStatus, TriggerLimits, TriggerRecord,
    check_entity_name,
};
use super::store::Write;
use super::{RestError, Standalone, new_id, with_activation_id};
use crate::error::{ApiError, json_response};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{Request, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// `GET …/triggers?skip=&limit=&count=`: summaries, without parameters, limits or rules.
pub async fn list_triggers(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    Query(query): QueryMap,
) -> Handled {
    list(
        &app,
        namespace,
        false,
        &query,
        |triggers: &[TriggerRecord]| {
            ok(&triggers.iter().map(EntitySummary::of).collect::<Vec<_>>())
        },
    )
}

/// `GET …/triggers/{name}`.
pub async fn get_trigger(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
) -> Handled {
    let trigger: TriggerRecord = app.store.entity(namespace, &name)?.ok_or_else(not_found)?;
    ok(&trigger)
}

/// The body of a trigger create or update; an update keeps what it leaves out (and the
/// rules on the trigger).
#[derive(Debug, Deserialize)]
struct TriggerPut {
    parameters: Option<KeyValues>,
    limits: Option<TriggerLimits>,
    annotations: Option<KeyValues>,
    publish: Option<bool>,
}

/// `PUT …/triggers/{name}?overwrite=`.
pub async fn put_trigger(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
    Query(query): QueryMap,
    request: Request<Body>,
) -> Handled {
    let overwrite = flag(&query, "overwrite", false)?;
    let put: TriggerPut = read_body(request, MAX_ENTITY_BODY_BYTES).await?;
    let _linking = app.links.lock().await;
    let existing: Option<TriggerRecord> = app.to_replace(namespace, &name, overwrite)?;
    let revision = Revision::of(existing.as_ref(), put.publish, put.annotations);
    let annotations = revision.annotations;
    // Feeds are not served, but a trigger may name one as OpenWhisk checks it.
    if let Some(feed) = annotations.get("feed") {
        let valid = feed.as_str().is_some_and(|feed| {
            let feed = feed.strip_prefix('/').unwrap_or(feed);
            feed.split('/')
                .all(|segment| check_entity_name(segment).is_ok())
        });
        if !valid {
            return Err(ApiError::bad_request("Feed name is not valid").into());
        }
    }
    let record = TriggerRecord {
        namespace: namespace.to_owned(),
        name: name.clone(),
        version: revision.version,
        publish: revision.publish,
        parameters: put
            .parameters
            .or_else(|| existing.as_ref().map(|t| t.parameters.clone()))
            .unwrap_or_default(),
        limits: put.limits.unwrap_or_default(),
        annotations,
        rules: existing.as_ref().and_then(|t| t.rules.clone()),
        updated: revision.updated,
    };
    app.write(&[Write::put(&record, existing.as_ref())])?;
    ok(&record)
}

/// `DELETE …/triggers/{name}`: the trigger goes; its rules stay, linked to nothing.
pub async fn delete_trigger(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
) -> Handled {
    let _linking = app.links.lock().await;
    let trigger: TriggerRecord = app.store.entity(namespace, &name)?.ok_or_else(not_found)?;
    app.store.delete::<TriggerRecord>(namespace, &name)?;
    ok(&trigger)
}

/// What a rule caused when its trigger fired, as the trigger activation's logs hold it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleActivation {
    status_code: u8,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    activation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    rule: String,
    action: String,
}

/// `POST …/triggers/{name}`: fire. With no active rule, 204 and nothing recorded; else 202
/// with the id of the trigger's activation.
pub async fn fire_trigger(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
    request: Request<Body>,
) -> Result<Response, RestError> {
    let received = Instant::now();
    let payload = invoke_params(request.into_body()).await?;
    let trigger: TriggerRecord = app.store.entity(namespace, &name)?.ok_or_else(not_found)?;
    let rules = trigger.rules.clone().unwrap_or_default();
    if !rules.values().any(|rule| rule.status == RuleStatus::Active) {
        let mut answer = Response::new(Body::empty());
        *answer.status_mut() = StatusCode::NO_CONTENT;
        return Ok(answer);
    }
    let mut args: Map<String, Value> = trigger
        .parameters
        .0
        .iter()
        .map(|parameter| (parameter.key.clone(), parameter.value.clone()))
        .collect();
    args.extend(payload.clone());
    let mut logs = Vec::new();
    for (rule, link) in &rules {
        let action = FullName::from(&link.action);
        let caused = app.activate_rule(rule, link.status, &action, args.clone(), received);
        let (status, activation_id, error) = match caused {
            Ok(id) => (ActivationStatus::Success, Some(id), None),
            Err((status, error)) => (status, None, Some(error)),
        };
        let entry = RuleActivation {
            status_code: status.code(),
            success: status == ActivationStatus::Success,
            activation_id,
            error,
            rule: rule.clone(),
            action: action.without_slash(),
        };
        logs.push(serde_json::to_string(&entry).expect("logs serialize"));
    }
    let activation_id = new_id();
    let activation = ActivationRecord {
        namespace: namespace.to_owned(),
        name: trigger.name.clone(),
        version: trigger.version,
        subject: namespace.to_owned(),
        activation_id: activation_id.clone(),
        publish: false,
        start: records::epoch_millis(SystemTime::now()),
        // A trigger's activation has no end, as OpenWhisk records it.
        end: 0,
        duration: None,
        cause: None,
        response: ActivationResponse::new(ActivationStatus::Success, Value::Object(payload)),
        logs,
        annotations: KeyValues::default(),
    };
    app.store.put_activation(&activation)?;
    let answer = json_response(
        StatusCode::ACCEPTED,
        &json!({ "activationId": activation_id }),
    );
    Ok(with_activation_id(answer, &activation_id))
}

impl Standalone {
    /// Starts the activation a fired rule causes; its id, or the status and sentence of why
    /// there is none.
    fn activate_rule(
        self: &Arc<Self>,
        rule: &str,
        status: RuleStatus,
        action: &FullName,
        args: Map<String, Value>,
        received: Instant,
    ) -> Result<String, (ActivationStatus, String)> {
        let failed = |status, error: &dyn std::fmt::Display| Err((status, error.to_string()));
        if status == RuleStatus::Inactive {
            let action = action.without_slash();
            return failed(
                ActivationStatus::ApplicationError,
                &format!("Rule '{rule}' is inactive, action '{action}' was not activated."),
            );
        }
        let resolved = match self.resolve(action) {
            Ok(Some(resolved)) => resolved,
            Ok(None) => {
                return failed(
                    ActivationStatus::ApplicationError,
                    &"The requested resource does not exist.",
                );
            }
            Err(error) => return failed(ActivationStatus::InternalError, &error),
        };
        if let Err(error) = check_final(&resolved, &args) {
            return failed(ActivationStatus::ApplicationError, &error);
        }
        let started = self.start(resolved, args, received);
        match started.accepted(self) {
            Ok(()) => Ok(started.activation_id),
            Err(_) => failed(
                ActivationStatus::InternalError,
                &"The activation could not be recorded.",
            ),
        }
    }
}

/// A rule as answered: the record with its status (from its trigger).
#[derive(Debug, Serialize)]
struct RuleAnswer<'a> {
    #[serde(flatten)]
    rule: &'a RuleRecord,
    status: RuleStatus,
}

/// The status of `rule`: the trigger's link's, inactive without one.
fn status_of(app: &Standalone, rule: &RuleRecord) -> Result<RuleStatus, RestError> {
    let trigger: Option<TriggerRecord> =
        app.store.entity(&rule.trigger.path, &rule.trigger.name)?;
    let key = rule_key(rule);
    Ok(trigger
        .and_then(|trigger| trigger.rules?.remove(&key))
        .map_or(RuleStatus::Inactive, |link| link.status))
}

/// How a trigger's `rules` name a rule: `namespace/rule`.
fn rule_key(rule: &RuleRecord) -> String {
    format!("{}/{}", rule.namespace, rule.name)
}

/// `GET …/rules?skip=&limit=&count=`: the records, without status, as OpenWhisk lists them.
pub async fn list_rules(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    Query(query): QueryMap,
) -> Handled {
    list(&app, namespace, false, &query, |rules: &[RuleRecord]| {
        ok(rules)
    })
}

/// `GET …/rules/{name}`: the rule with its status.
pub async fn get_rule(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
) -> Handled {
    let rule: RuleRecord = app.store.entity(namespace, &name)?.ok_or_else(not_found)?;
    let status = status_of(&app, &rule)?;
    ok(&RuleAnswer {
        rule: &rule,
        status,
    })
}

/// A trigger or action a rule names: `/namespace/name` (`_` the caller's), or
/// `{"path", "name"}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NamePut {
    Text(String),
    Qualified(QualifiedName),
}

impl NamePut {
    fn resolve(&self, namespace: &str) -> Result<FullName, ApiError> {
        match self {
            Self::Text(text) => FullName::resolve(text, namespace),
            Self::Qualified(qualified) => {
                let full = FullName::from(qualified).to_string();
                FullName::resolve(&full, namespace)
            }
        }
    }
}

/// The body of a rule create or update; the status is not set this way.
#[derive(Debug, Deserialize)]
struct RulePut {
    trigger: Option<NamePut>,
    action: Option<NamePut>,
    annotations: Option<KeyValues>,
    publish: Option<bool>,
}

/// `PUT …/rules/{name}?overwrite=`: a new rule is active; an update keeps the status.
pub async fn put_rule(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
    Query(query): QueryMap,
    request: Request<Body>,
) -> Handled {
    let overwrite = flag(&query, "overwrite", false)?;
    let put: RulePut = read_body(request, MAX_ENTITY_BODY_BYTES).await?;
    let resolve = |name: &Option<NamePut>| name.as_ref().map(|n| n.resolve(namespace)).transpose();
    let (trigger_name, action_name) = (resolve(&put.trigger)?, resolve(&put.action)?);
    let _linking = app.links.lock().await;
    let existing: Option<RuleRecord> = app.to_replace(namespace, &name, overwrite)?;
    let (trigger_name, action_name) = match (&existing, trigger_name, action_name) {
        (Some(rule), trigger, action) => (
            trigger.unwrap_or_else(|| FullName::from(&rule.trigger)),
            action.unwrap_or_else(|| FullName::from(&rule.action)),
        ),
        (None, Some(trigger), Some(action)) => (trigger, action),
        (None, _, _) => {
            return Err(
                ApiError::bad_request("rule requires a valid trigger and a valid action").into(),
            );
        }
    };
    let trigger: TriggerRecord = app
        .store
        .entity(&trigger_name.path(), &trigger_name.name)?
        .ok_or_else(|| ApiError::bad_request(format!("trigger {trigger_name} does not exist")))?;
    if app.resolve(&action_name)?.is_none() {
        return Err(ApiError::bad_request(format!("action {action_name} does not exist")).into());
    }
    let status = match &existing {
        Some(rule) => status_of(&app, rule)?,
        None => RuleStatus::Active,
    };
    let revision = Revision::of(existing.as_ref(), put.publish, put.annotations);
    let record = RuleRecord {
        namespace: namespace.to_owned(),
        name: name.clone(),
        version: revision.version,
        publish: revision.publish,
        trigger: QualifiedName::from(&trigger_name),
        action: QualifiedName::from(&action_name),
        annotations: revision.annotations,
        updated: revision.updated,
    };
    let mut writes = vec![Write::put(&record, existing.as_ref())];
    // The rule leaves the trigger it was on, if that is another one.
    let key = rule_key(&record);
    let old_trigger = existing
        .as_ref()
        .filter(|rule| rule.trigger != record.trigger)
        .map(|rule| {
            app.store
                .entity::<TriggerRecord>(&rule.trigger.path, &rule.trigger.name)
        })
        .transpose()?
        .flatten();
    if let Some(old) = &old_trigger {
        writes.push(Write::update(&unlinked(old, &key), old));
    }
    let link = ReducedRule {
        action: record.action.clone(),
        status,
    };
    writes.push(Write::update(&linked(&trigger, &key, link), &trigger));
    app.write(&writes)?;
    ok(&RuleAnswer {
        rule: &record,
        status,
    })
}

/// `trigger` with `rule` linked as `link`.
fn linked(trigger: &TriggerRecord, rule: &str, link: ReducedRule) -> TriggerRecord {
    let mut rules = trigger.rules.clone().unwrap_or_default();
    rules.insert(rule.to_owned(), link);
    TriggerRecord {
        rules: Some(rules),
        updated: records::epoch_millis(SystemTime::now()),
        ..trigger.clone()
    }
}

/// `trigger` without `rule`.
fn unlinked(trigger: &TriggerRecord, rule: &str) -> TriggerRecord {
    let mut rules = trigger.rules.clone().unwrap_or_default();
    rules.remove(rule);
    TriggerRecord {
        rules: (!rules.is_empty()).then_some(rules),
        updated: records::epoch_millis(SystemTime::now()),
        ..trigger.clone()
    }
}

/// `DELETE …/rules/{name}`: the rule leaves its trigger and goes; answered inactive.
pub async fn delete_rule(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
) -> Handled {
    let _linking = app.links.lock().await;
    let rule: RuleRecord = app.store.entity(namespace, &name)?.ok_or_else(not_found)?;
    let mut writes = vec![Write::delete::<RuleRecord>(namespace, &name)];
    let trigger: Option<TriggerRecord> =
        app.store.entity(&rule.trigger.path, &rule.trigger.name)?;
    if let Some(trigger) = &trigger {
        writes.push(Write::update(&unlinked(trigger, &rule_key(&rule)), trigger));
    }
    app.write(&writes)?;
    ok(&RuleAnswer {
        rule: &rule,
        status: RuleStatus::Inactive,
    })
}

/// The body of a rule's enable or disable.
#[derive(Debug, Deserialize)]
struct StatusPut {
    status: Value,
}

/// `POST …/rules/{name}` with `{"status": "active"|"inactive"}`: enable or disable. 200
/// `OK` (text, as OpenWhisk answers it) when the rule has the status asked for.
pub async fn set_rule_status(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
    request: Request<Body>,
) -> Handled {
    let put: StatusPut = read_body(request, MAX_ENTITY_BODY_BYTES).await?;
    let status = match put.status.as_str() {
        Some("active") => RuleStatus::Active,
        Some("inactive") => RuleStatus::Inactive,
        _ => {
            let given = put
                .status
                .as_str()
                .map_or_else(|| put.status.to_string(), str::to_owned);
            return Err(ApiError::bad_request(format!(
                "The request content was malformed:\n'{given}' is not a recognized rule state, \
                 must be one of ['active', 'inactive']"
            ))
            .into());
        }
    };
    let _linking = app.links.lock().await;
    let rule: RuleRecord = app.store.entity(namespace, &name)?.ok_or_else(not_found)?;
    let trigger: TriggerRecord = app
        .store
        .entity(&rule.trigger.path, &rule.trigger.name)?
        .ok_or_else(|| ApiError::not_found("Only rules with existing triggers can be activated"))?;
    let key = rule_key(&rule);
    let current = trigger
        .rules
        .as_ref()
        .and_then(|rules| rules.get(&key))
        .map_or(RuleStatus::Inactive, |link| link.status);
    if current != status {
        let link = ReducedRule {
            action: rule.action.clone(),
            status,
        };
        app.write(&[Write::update(&linked(&trigger, &key, link), &trigger)])?;
    }
    Ok(([(CONTENT_TYPE, "text/plain; charset=UTF-8")], "OK").into_response())
}
