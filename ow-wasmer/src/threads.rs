//! Where instances run. A Wasmer store cannot move between threads and its calls block, so
//! each activation runs from start to end on one thread: a blocking thread of the engine's own
//! tokio runtime. That runtime is also the context WASI needs: its sleeps are timers of the
//! runtime's one worker, and host-directory I/O (`tokio::fs`) runs on its blocking pool.
//!
//! The engine's own runtime, rather than the executor's blocking pool, so that waiting
//! instances never starve the executor's other blocking work. The engine asks the host for no
//! more instance slots than [`InstanceThreads::instance_threads`], and a semaphore of as many
//! permits keeps instances off the last [`IO_THREADS`] threads of the pool (a slot is freed a
//! moment before its thread is), which stay for the file I/O of the instances running.

use ow_common::runtime::RunError;
use std::sync::Arc;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most instances that run at once, whatever the instance slots allow: each holds a
/// thread (and reserves 8 GiB of address space).
pub(crate) const MAX_INSTANCE_THREADS: usize = ow_common::host::MAX_THREAD_BOUND_INSTANCES as usize;

/// Blocking threads kept for host-directory I/O beyond those instances hold.
const IO_THREADS: usize = 64;

/// The engine's runtime and the permits to run an instance on it.
#[derive(Debug)]
pub(crate) struct InstanceThreads {
    runtime: Option<Runtime>,
    permits: Arc<Semaphore>,
    instance_threads: usize,
}

impl InstanceThreads {
    /// A runtime for up to `instance_threads` instances at once (at most
    /// [`MAX_INSTANCE_THREADS`]).
    pub(crate) fn start(instance_threads: usize) -> std::io::Result<Self> {
        let instance_threads = instance_threads.clamp(1, MAX_INSTANCE_THREADS);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(instance_threads + IO_THREADS)
            .thread_name("ow-wasmer")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            permits: Arc::new(Semaphore::new(instance_threads)),
            instance_threads,
        })
    }

    /// How many instances may run at once.
    pub(crate) fn instance_threads(&self) -> usize {
        self.instance_threads
    }

    /// The runtime's handle.
    pub(crate) fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives until the engine is dropped")
            .handle()
    }

    /// Waits until an instance may run.
    pub(crate) async fn permit(&self) -> Result<OwnedSemaphorePermit, RunError> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| RunError::Internal("the Wasmer engine is shutting down".to_owned()))
    }

    /// Runs `job` on a thread of its own, holding `permit` until it ends, and waits for it.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, RunError> {
        let ran = self.handle().spawn_blocking(move || {
            let ended = job();
            drop(permit);
            ended
        });
        ran.await
            .map_err(|e| RunError::Internal(format!("a Wasmer instance thread failed: {e}")))
    }
}

impl Drop for InstanceThreads {
    fn drop(&mut self) {
        // Dropping a runtime waits for its tasks, which async code may not do: instances
        // still running end on their own (they were told to stop).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
