//! `standalone` mode: the OpenWhisk REST API that `wsk` and the `openwhisk` npm client drive
//! (actions, invocations and activations; packages and sequences; web actions; triggers and
//! rules), on one machine, with every entity and activation in an embedded SQLite database and
//! prepared actions kept warm in memory. Not served: feeds, the API gateway, namespaces other
//! than the guest's.

mod api;
mod auth;
mod invoke;
mod packages;
pub mod pool;
pub mod records;
mod sequences;
pub mod store;
mod triggers;
mod web;

use crate::engines::Engines;
use crate::error::ApiError;
use crate::metrics::Metrics;
use axum::Router;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get};
use pool::WarmPool;
use records::Collection;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use store::Store;

pub use auth::{GUEST_KEY, GUEST_NAMESPACE};

/// Settings of the standalone server.
#[derive(Debug, Clone)]
pub struct StandaloneSettings {
    /// Where the database lives.
    pub data_dir: PathBuf,
    /// How long a prepared action stays warm without activations.
    pub idle_timeout: Duration,
    /// The URL actions see as `__OW_API_HOST`.
    pub api_host: String,
    /// Where cold starts are counted.
    pub metrics: Arc<Metrics>,
}

/// The standalone controller: store, warm pool and engine.
pub struct Standalone {
    store: Store,
    pool: Arc<WarmPool>,
    settings: StandaloneSettings,
    background: Background,
    writes: EntityLocks,
    /// Held by every write of a trigger or a rule: a rule's status lives in its trigger's
    /// record, so writes of either read and write both.
    links: tokio::sync::Mutex<()>,
}

/// One lock per entity, held by every write of it (create, update, delete) from reading what
/// is stored to storing what replaces it, so that the writes of one entity happen one after
/// the other: 50 parallel `PUT ?overwrite=true` of a new name are one create and 49 updates,
/// never a "resource already exists".
#[derive(Debug, Default)]
struct EntityLocks(Mutex<HashMap<EntityKey, Weak<tokio::sync::Mutex<()>>>>);

/// An entity: its collection, namespace and name.
type EntityKey = (Collection, String, String);

impl EntityLocks {
    /// Waits for the lock of one entity.
    async fn lock(
        &self,
        collection: Collection,
        namespace: &str,
        name: &str,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.0.lock().expect("entity locks lock");
            // Only entities being written hold a lock; forget the others.
            locks.retain(|_, lock| lock.strong_count() > 0);
            let key = (collection, namespace.to_owned(), name.to_owned());
            match locks.get(&key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// Counts the activations running, each in a task of its own that no request may be waiting
/// for (non-blocking invokes, blocking ones past their wait), so that shutdown can wait for
/// them.
#[derive(Debug)]
struct Background(tokio::sync::watch::Sender<usize>);

/// One running activation of [`Background`]; dropping it counts the activation finished.
struct Running(tokio::sync::watch::Sender<usize>);

impl Background {
    fn started(&self) -> Running {
        self.0.send_modify(|running| *running += 1);
        Running(self.0.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|running| *running -= 1);
    }
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standalone")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Standalone {
    /// Opens the store and builds the pool. Call from within a tokio runtime (the pool's
    /// idle reaper is a task).
    pub fn open(engines: Arc<Engines>, settings: StandaloneSettings) -> anyhow::Result<Arc<Self>> {
        let store = Store::open(&settings.data_dir)?;
        let pool = Arc::new(WarmPool::new(
            engines,
            settings.idle_timeout,
            settings.metrics.clone(),
        ));
        pool.spawn_reaper();
        Ok(Arc::new(Self {
            store,
            pool,
            settings,
            background: Background(tokio::sync::watch::Sender::new(0)),
            writes: EntityLocks::default(),
            links: tokio::sync::Mutex::new(()),
        }))
    }

    /// Waits, for at most `bound`, until no activation runs. Call after the server stopped
    /// taking requests; an activation still running after `bound` stays recorded as pending
    /// and is recorded as interrupted when the store is next opened. True if none was left.
    pub async fn finish_activations(&self, bound: Duration) -> bool {
        let mut running = self.background.0.subscribe();
        let all_done = running.wait_for(|running| *running == 0);
        let finished = matches!(tokio::time::timeout(bound, all_done).await, Ok(Ok(_)));
        if !finished {
            tracing::warn!(
                running = *running.borrow(),
                "activations still running at shutdown are left pending"
            );
        }
        finished
    }

    /// The routes of the REST API.
    pub fn router(self: &Arc<Self>) -> Router {
        let resource = |methods: MethodRouter<Arc<Self>>| methods.fallback(api::unknown_method);
        let action = get(api::get_action)
            .put(api::put_action)
            .delete(api::delete_action)
            .post(invoke::invoke);
        Router::new()
            .route("/api/v1", resource(get(api::info)))
            .route("/api/v1/namespaces", resource(get(api::namespaces)))
            .route(
                "/api/v1/namespaces/{namespace}/actions",
                resource(get(api::list_actions)),
            )
            .route(
                "/api/v1/namespaces/{namespace}/actions/{name}",
                resource(action.clone()),
            )
            .route(
                "/api/v1/namespaces/{namespace}/actions/{name}/",
                resource(get(api::list_package_actions)),
            )
            .route(
                "/api/v1/namespaces/{namespace}/actions/{package}/{name}",
                resource(action),
            )
            .route(
                "/api/v1/namespaces/{namespace}/packages",
                resource(get(packages::list_packages)),
            )
            .route(
                "/api/v1/namespaces/{namespace}/packages/{name}",
                resource(
                    get(packages::get_package)
                        .put(packages::put_package)
                        .delete(packages::delete_package),
                ),
            )
            .route(
                "/api/v1/namespaces/{namespace}/triggers",
                resource(get(triggers::list_triggers)),
            )
            .route(
                "/api/v1/namespaces/{namespace}/triggers/{name}",
                resource(
                    get(triggers::get_trigger)
                        .put(triggers::put_trigger)
                        .delete(triggers::delete_trigger)
                        .post(triggers::fire_trigger),
                ),
            )
            .route(
                "/api/v1/namespaces/{namespace}/rules",
                resource(get(triggers::list_rules)),
            )
            .route(
                "/api/v1/namespaces/{namespace}/rules/{name}",
                resource(
                    get(triggers::get_rule)
                        .put(triggers::put_rule)
                        .delete(triggers::delete_rule)
                        .post(triggers::set_rule_status),
                ),
            )
            .route(
                "/api/v1/namespaces/{namespace}/activations",
                resource(get(api::list_activations)),
            )
            .route(
                "/api/v1/namespaces/{namespace}/activations/{id}",
                resource(get(api::get_activation)),
            )
            .route(
                "/api/v1/namespaces/{namespace}/activations/{id}/logs",
                resource(get(api::activation_logs)),
            )
            .route(
                "/api/v1/namespaces/{namespace}/activations/{id}/result",
                resource(get(api::activation_result)),
            )
            // Web actions answer anyone: no credentials.
            .route(
                "/api/v1/web/{namespace}/{package}/{action}",
                any(web::web_action),
            )
            .route(
                "/api/v1/web/{namespace}/{package}/{action}/{*path}",
                any(web::web_action),
            )
            .route("/api/v1/{*rest}", any(api::unknown_path))
            .with_state(self.clone())
    }

    /// The `wsk` command that points the CLI at this server.
    pub fn wsk_property_command(&self) -> String {
        format!(
            "wsk property set --apihost '{}' --auth '{}'",
            self.settings.api_host, GUEST_KEY
        )
    }
}

/// A fresh id for error bodies and activations: 32 hex digits.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut hasher = blake3::Hasher::new();
    hasher
        .update(&count.to_le_bytes())
        .update(&nanos.to_le_bytes())
        .update(&std::process::id().to_le_bytes());
    hasher.finalize().to_hex()[..32].to_owned()
}

/// An error of the REST API, answered as `{"error": "<sentence>", "code": "<request id>"}`.
#[derive(Debug)]
pub struct RestError(ApiError);

impl From<ApiError> for RestError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<store::StoreError> for RestError {
    fn from(error: store::StoreError) -> Self {
        tracing::error!(%error, "store failure");
        Self(ApiError::internal(error.to_string()))
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        self.0
            .response_with(&json!({ "error": self.0.message, "code": new_id() }))
    }
}

/// Adds the `x-openwhisk-activation-id` header that every invoke answer carries.
fn with_activation_id(mut response: Response, id: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(id) {
        response
            .headers_mut()
            .insert("x-openwhisk-activation-id", value);
    }
    response
}
