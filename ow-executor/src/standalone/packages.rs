//! Packages and package bindings, as OpenWhisk's controller serves them: create, get (with
//! the actions inside), list, update, delete; and the lookup every use of an action goes
//! through, which finds an action in a package (or through a binding, in the package bound)
//! and lays the package's parameters under the action's own.

use super::api::{
    Handled, MAX_ENTITY_BODY_BYTES, QueryMap, Revision, flag, list, not_found, ok, read_body,
};
use super::auth::{Caller, EntityName};
use super::records::{
    self, ActionRecord, Collection, EntityRef, EntitySummary, FullName, KeyValues, PackageRecord,
    SemVer,
};
use super::store::{StoreError, Write};
use super::{RestError, Standalone};
use crate::error::{ApiError, ErrorKind};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::Request;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// The package name OpenWhisk keeps for actions in no package (as web action paths write it).
pub const DEFAULT_PACKAGE: &str = "default";

/// An action as a use of it finds it: its record, with the parameters of its package (and of
/// the binding it was reached through) under its own, and that binding.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The action, its parameters merged.
    pub action: ActionRecord,
    /// The binding it was reached through, `namespace/binding`.
    pub binding: Option<String>,
}

/// Where the actions of a package live, as a path reaches them.
#[derive(Debug)]
pub struct PackageScope {
    /// The package as stored (a binding, if the path named one).
    pub package: PackageRecord,
    /// The namespace field of the actions in it: that of the package bound, for a binding.
    pub actions_path: String,
    /// The package's parameters, a binding's over those of the package it binds.
    pub parameters: KeyValues,
}

impl PackageScope {
    /// The binding the scope was reached through, as activations name it.
    fn binding(&self) -> Option<String> {
        self.package
            .binding
            .as_ref()
            .map(|_| format!("{}/{}", self.package.namespace, self.package.name))
    }
}

impl Standalone {
    /// The package `name` of `namespace`, followed through a binding; None if it, or the
    /// package it binds, does not exist.
    pub fn package_scope(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PackageScope>, StoreError> {
        let Some(package) = self.store.entity::<PackageRecord>(namespace, name)? else {
            return Ok(None);
        };
        let scope = match &package.binding {
            None => PackageScope {
                actions_path: format!("{namespace}/{name}"),
                parameters: package.parameters.clone(),
                package,
            },
            Some(bound) => {
                let Some(target) = self
                    .store
                    .entity::<PackageRecord>(&bound.namespace, &bound.name)?
                else {
                    return Ok(None);
                };
                PackageScope {
                    actions_path: format!("{}/{}", bound.namespace, bound.name),
                    parameters: package.parameters.over(&target.parameters),
                    package,
                }
            }
        };
        Ok(Some(scope))
    }

    /// The action `name` names, with its package's parameters under its own; None if it (or
    /// its package) does not exist.
    pub fn resolve(&self, name: &FullName) -> Result<Option<Resolved>, StoreError> {
        let Some(package) = &name.package else {
            let action = self.store.entity(&name.namespace, &name.name)?;
            return Ok(action.map(|action| Resolved {
                action,
                binding: None,
            }));
        };
        let Some(scope) = self.package_scope(&name.namespace, package)? else {
            return Ok(None);
        };
        let action: Option<ActionRecord> = self.store.entity(&scope.actions_path, &name.name)?;
        Ok(action.map(|mut action| {
            action.parameters = action.parameters.over(&scope.parameters);
            Resolved {
                action,
                binding: scope.binding(),
            }
        }))
    }

    /// The package an action is written into (created, updated, deleted), which must exist
    /// and be no binding.
    pub fn package_to_write(&self, namespace: &str, name: &str) -> Result<(), RestError> {
        let package: PackageRecord = self.store.entity(namespace, name)?.ok_or_else(not_found)?;
        if package.binding.is_some() {
            return Err(
                ApiError::bad_request("Operation not permitted on package binding.").into(),
            );
        }
        Ok(())
    }
}

/// A package as listings show it: without parameters, `binding` false or the package bound.
#[derive(Debug, Serialize)]
struct PackageSummary<'a> {
    #[serde(flatten)]
    entity: EntitySummary<'a>,
    binding: serde_json::Value,
}

/// `GET …/packages?skip=&limit=&count=`.
pub async fn list_packages(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    Query(query): QueryMap,
) -> Handled {
    list(
        &app,
        namespace,
        false,
        &query,
        |packages: &[PackageRecord]| {
            let summaries: Vec<PackageSummary<'_>> = packages
                .iter()
                .map(|package| PackageSummary {
                    entity: EntitySummary::of(package),
                    binding: package.binding.as_ref().map_or(json!(false), |b| json!(b)),
                })
                .collect();
            ok(&summaries)
        },
    )
}

/// An action as a package's answer lists it.
#[derive(Debug, Serialize)]
struct PackageAction<'a> {
    name: &'a str,
    version: SemVer,
    annotations: &'a KeyValues,
}

/// `GET …/packages/{name}`: the package (a binding with the bound package's parameters under
/// its own) and the actions in it.
pub async fn get_package(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
) -> Handled {
    let scope = app.package_scope(namespace, &name)?.ok_or_else(not_found)?;
    let actions: Vec<ActionRecord> =
        app.store
            .entities(&scope.actions_path, false, 0, u64::MAX >> 1)?;
    let mut answer = serde_json::to_value(PackageRecord {
        parameters: scope.parameters,
        ..scope.package
    })
    .expect("records serialize");
    answer["actions"] = json!(
        actions
            .iter()
            .map(|action| PackageAction {
                name: &action.name,
                version: action.version,
                annotations: &action.annotations,
            })
            .collect::<Vec<_>>()
    );
    // Feeds are not served: none is ever listed.
    answer["feeds"] = json!([]);
    ok(&answer)
}

/// The body of a package create or update; an update keeps what it leaves out.
#[derive(Debug, Deserialize)]
struct PackagePut {
    binding: Option<BindingPut>,
    parameters: Option<KeyValues>,
    annotations: Option<KeyValues>,
    publish: Option<bool>,
}

/// The package a binding names; `{}` (or none) means the package is no binding.
#[derive(Debug, Deserialize)]
struct BindingPut {
    namespace: Option<String>,
    name: Option<String>,
}

/// `PUT …/packages/{name}?overwrite=`: create, or update with `overwrite=true`.
pub async fn put_package(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
    Query(query): QueryMap,
    request: Request<Body>,
) -> Handled {
    let overwrite = flag(&query, "overwrite", false)?;
    if name == DEFAULT_PACKAGE {
        return Err(ApiError::bad_request(format!("Package name '{name}' is reserved.")).into());
    }
    let put: PackagePut = read_body(request, MAX_ENTITY_BODY_BYTES).await?;
    let binding = put
        .binding
        .as_ref()
        .map(|b| binding_of(b, namespace))
        .transpose()?
        .flatten();
    let _writing = app
        .writes
        .lock(Collection::Packages, namespace, &name)
        .await;
    let existing: Option<PackageRecord> = app.to_replace(namespace, &name, overwrite)?;
    if let Some(binding) = &binding {
        if existing
            .as_ref()
            .is_some_and(|package| package.binding.is_none())
        {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                "Resource is a package and cannot be converted into a binding.",
            )
            .into());
        }
        check_binding(&app, binding)?;
    }
    let binding = binding.or_else(|| existing.as_ref().and_then(|p| p.binding.clone()));
    let Revision {
        version,
        publish,
        mut annotations,
        updated,
    } = Revision::of(existing.as_ref(), put.publish, put.annotations);
    // The `binding` annotation is the controller's, for clients that list packages.
    annotations.remove("binding");
    if let Some(binding) = &binding {
        annotations.set("binding", json!(binding));
    }
    let record = PackageRecord {
        namespace: namespace.to_owned(),
        name: name.clone(),
        version,
        publish,
        binding,
        parameters: put
            .parameters
            .or_else(|| existing.as_ref().map(|package| package.parameters.clone()))
            .unwrap_or_default(),
        annotations,
        updated,
    };
    app.write(&[Write::put(&record, existing.as_ref())])?;
    ok(&record)
}

/// The package a binding names, `_` resolved; `{}` is no binding.
fn binding_of(binding: &BindingPut, namespace: &str) -> Result<Option<EntityRef>, ApiError> {
    match (&binding.namespace, &binding.name) {
        (None, None) => Ok(None),
        (Some(bound_namespace), Some(name)) => {
            records::check_entity_name(name)?;
            let bound_namespace = match bound_namespace.as_str() {
                "_" => namespace.to_owned(),
                other => other.to_owned(),
            };
            Ok(Some(EntityRef {
                namespace: bound_namespace,
                name: name.clone(),
            }))
        }
        _ => Err(ApiError::bad_request(
            "The request content was malformed: a binding names the namespace and the name of \
             the package it binds.",
        )),
    }
}

/// A binding must name a package that exists and is no binding itself.
fn check_binding(app: &Standalone, binding: &EntityRef) -> Result<(), RestError> {
    let bound: Option<PackageRecord> = app.store.entity(&binding.namespace, &binding.name)?;
    match bound {
        None => {
            Err(ApiError::bad_request("Binding references a package that does not exist.").into())
        }
        Some(package) if package.binding.is_some() => {
            Err(ApiError::bad_request("Cannot bind to another package binding.").into())
        }
        Some(_) => Ok(()),
    }
}

/// `DELETE …/packages/{name}`: a binding at once, a package once no action is left in it.
pub async fn delete_package(
    State(app): State<Arc<Standalone>>,
    Caller { namespace }: Caller,
    EntityName(name): EntityName,
) -> Handled {
    let _writing = app
        .writes
        .lock(Collection::Packages, namespace, &name)
        .await;
    let package: PackageRecord = app.store.entity(namespace, &name)?.ok_or_else(not_found)?;
    if package.binding.is_none() {
        let actions = app
            .store
            .count::<ActionRecord>(&format!("{namespace}/{name}"), false)?;
        if actions > 0 {
            let entities = if actions == 1 { "entity" } else { "entities" };
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("Package not empty (contains {actions} {entities})"),
            )
            .into());
        }
    }
    app.store.delete::<PackageRecord>(namespace, &name)?;
    ok(&package)
}
