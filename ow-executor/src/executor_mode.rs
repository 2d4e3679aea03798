//! `executor` mode: many action containers in one process, for a Wasm-aware invoker
//! (PROTOCOL.md §2). `POST /start` makes a container; `/{id}/init`, `/{id}/run` and
//! `/{id}/destroy` speak the runtime protocol to it. Each container is a [`Container`], the
//! same code `runtime` mode serves.

use crate::engines::Engines;
use crate::error::{ApiError, json_response};
use crate::logs::ActivationLogSink;
use crate::runtime::{Container, RuntimeSettings, answer_init, answer_run};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ow_common::code::RecentCode;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The container table of executor mode.
pub struct Executor {
    engines: Arc<Engines>,
    settings: RuntimeSettings,
    logs: Arc<dyn ActivationLogSink>,
    port: u16,
    next_id: AtomicU64,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor whose containers are reached on `port` (its own). Unless `settings` bring
    /// their own, its containers share one [`RecentCode`]: their `/init`s often carry the
    /// same code.
    pub fn new(
        engines: Arc<Engines>,
        mut settings: RuntimeSettings,
        logs: Arc<dyn ActivationLogSink>,
        port: u16,
    ) -> Arc<Self> {
        settings
            .recent_code
            .get_or_insert_with(|| Arc::new(RecentCode::new(RecentCode::DEFAULT_MAX_BYTES)));
        Arc::new(Self {
            engines,
            settings,
            logs,
            port,
            next_id: AtomicU64::new(1),
            containers: Mutex::new(HashMap::new()),
        })
    }

    /// The routes of executor mode.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/start", post(start))
            .route("/{container}/init", post(init))
            .route("/{container}/run", post(run))
            .route("/{container}/destroy", post(destroy))
            .with_state(self.clone())
    }

    fn container(&self, id: &str) -> Result<Arc<Container>, ApiError> {
        self.containers
            .lock()
            .expect("container table lock")
            .get(id)
            .cloned()
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "There is no container {id}; start one with POST /start."
                ))
            })
    }

    /// How many containers exist.
    pub fn len(&self) -> usize {
        self.containers.lock().expect("container table lock").len()
    }

    /// Whether no container exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn start(State(executor): State<Arc<Executor>>) -> Response {
    let id = format!("wasm-{}", executor.next_id.fetch_add(1, Ordering::Relaxed));
    let container = Container::new(
        executor.engines.clone(),
        executor.settings.clone(),
        executor.logs.clone(),
    );
    executor
        .containers
        .lock()
        .expect("container table lock")
        .insert(id.clone(), Arc::new(container));
    json_response(
        StatusCode::OK,
        &json!({ "containerId": id, "port": executor.port }),
    )
}

async fn init(
    State(executor): State<Arc<Executor>>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Response {
    match executor.container(&id) {
        Ok(container) => answer_init(&container, request.into_body()).await,
        Err(error) => error.into_response(),
    }
}

async fn run(
    State(executor): State<Arc<Executor>>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Response {
    match executor.container(&id) {
        Ok(container) => answer_run(&container, request.into_body()).await,
        Err(error) => error.into_response(),
    }
}

async fn destroy(State(executor): State<Arc<Executor>>, Path(id): Path<String>) -> Response {
    match executor
        .containers
        .lock()
        .expect("container table lock")
        .remove(&id)
    {
        // In-flight runs hold their own handle; the instance pool frees it when they end.
        Some(_) => json_response(StatusCode::OK, &json!({ "ok": true })),
        None => ApiError::not_found(format!("There is no container {id}.")).into_response(),
    }
}
