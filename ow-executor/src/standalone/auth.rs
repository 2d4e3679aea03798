//! Basic authentication with OpenWhisk's well-known guest key, namespace resolution, and the
//! extractors that do both before a handler runs: [`Caller`] for every route under a
//! namespace, [`EntityName`] for the entity a path names.

use super::RestError;
use super::records::{FullName, check_entity_name};
use crate::error::{ApiError, ErrorKind};
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header::AUTHORIZATION};
use base64::Engine as _;
use std::collections::HashMap;

/// The guest credentials every OpenWhisk standalone install knows (`uuid:key`).
pub const GUEST_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";

/// The guest's namespace.
pub const GUEST_NAMESPACE: &str = "guest";

/// Checks the request's credentials: `Authorization: Basic base64(uuid:key)`, the scheme in
/// any case, as HTTP has it.
pub fn authenticate(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(header) = headers.get(AUTHORIZATION) else {
        return Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "The resource requires authentication, which was not supplied with the request",
        ));
    };
    let supplied = header
        .to_str()
        .ok()
        .and_then(|value| value.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, encoded)| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
        });
    if supplied.as_deref() != Some(GUEST_KEY.as_bytes()) {
        return Err(ApiError::new(
            ErrorKind::Unauthenticated,
            "The supplied authentication is invalid",
        ));
    }
    Ok(())
}

/// Resolves the namespace a path names (`_` is the caller's own).
pub fn resolve_namespace(namespace: &str) -> Result<&'static str, ApiError> {
    match namespace {
        "_" | GUEST_NAMESPACE => Ok(GUEST_NAMESPACE),
        other => Err(ApiError::forbidden(format!(
            "The supplied authentication is not authorized to access '{other}'."
        ))),
    }
}

/// Checks the request's credentials and resolves the namespace in its path. Returns the
/// namespace.
pub fn authorize(headers: &HeaderMap, namespace: &str) -> Result<&'static str, ApiError> {
    authenticate(headers)?;
    resolve_namespace(namespace)
}

/// The parameters of a request's path, percent-decoded; one that is not UTF-8 is a 400 in the
/// API's error shape.
async fn path_parameters(parts: &mut Parts) -> Result<HashMap<String, String>, RestError> {
    let Path(parameters) = Path::<HashMap<String, String>>::from_request_parts(parts, &())
        .await
        .map_err(|rejection| {
            ApiError::bad_request(format!("The request path cannot be read: {rejection}."))
        })?;
    Ok(parameters)
}

/// One parameter of a request's path, percent-decoded.
async fn path_parameter(parts: &mut Parts, key: &str) -> Result<String, RestError> {
    Ok(path_parameters(parts)
        .await?
        .remove(key)
        .expect("the route names the parameter"))
}

/// The caller of a route under `/namespaces/{namespace}`, authenticated, with the namespace of
/// the path resolved.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The namespace the request works in.
    pub namespace: &'static str,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, RestError> {
        // Credentials first: a caller without them learns nothing about the path.
        authenticate(&parts.headers)?;
        let namespace = resolve_namespace(&path_parameter(parts, "namespace").await?)?;
        Ok(Self { namespace })
    }
}

/// The name of the entity a path names, checked to be one OpenWhisk accepts (list it after
/// [`Caller`], so that credentials are checked first).
#[derive(Debug, Clone)]
pub struct EntityName(pub String);

impl<S: Send + Sync> FromRequestParts<S> for EntityName {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, RestError> {
        let name = path_parameter(parts, "name").await?;
        check_entity_name(&name)?;
        Ok(Self(name))
    }
}

/// The action a path names: `…/actions/{name}`, or `…/actions/{package}/{name}` for an
/// action in a package, each name checked to be one OpenWhisk accepts (list it after
/// [`Caller`]).
#[derive(Debug, Clone)]
pub struct ActionPath {
    /// The package, if the path names one.
    pub package: Option<String>,
    /// The action's name.
    pub name: String,
}

impl ActionPath {
    /// The action's fully qualified name in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> FullName {
        FullName {
            namespace: namespace.to_owned(),
            package: self.package.clone(),
            name: self.name.clone(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ActionPath {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, RestError> {
        let mut parameters = path_parameters(parts).await?;
        let package = parameters.remove("package");
        let name = parameters
            .remove("name")
            .expect("the route names the parameter");
        for name in package.iter().chain([&name]) {
            check_entity_name(name)?;
        }
        Ok(Self { package, name })
    }
}

/// The activation id a path names.
#[derive(Debug, Clone)]
pub struct ActivationId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ActivationId {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, RestError> {
        Ok(Self(path_parameter(parts, "id").await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        headers
    }

    #[test]
    fn the_scheme_is_read_in_any_case() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(GUEST_KEY);
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            assert_eq!(
                authenticate(&headers(&format!("{scheme} {encoded}"))),
                Ok(()),
                "{scheme}"
            );
        }
        for wrong in [
            format!("Bearer {encoded}"),
            format!("Basic{encoded}"),
            encoded,
        ] {
            let refused = authenticate(&headers(&wrong)).unwrap_err();
            assert_eq!(refused.kind, ErrorKind::Unauthenticated, "{wrong}");
        }
    }
}
