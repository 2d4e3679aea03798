//! Where instances run. A Wasmer store cannot move between threads and its calls block, so
//! each activation runs from start to end on one thread of the engine's instance threads
//! (`ow-common`'s thread pool, one of which lingers for the next activation). The engine's own
//! tokio runtime is the context WASI needs: its sleeps are timers of the runtime's one worker,
//! and host-directory I/O (`tokio::fs`) runs on its blocking pool; each job enters it.
//!
//! The engine asks the host for no more instance slots than
//! [`InstanceThreads::instance_threads`], and a semaphore of as many permits bounds the
//! instances running (a permit is freed a moment before its thread is).

use ow_common::host::thread_pool::{INSTANCE_THREAD_LINGER, ThreadPool, ThreadPoolSettings};
use ow_common::runtime::RunError;
use std::sync::Arc;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most instances that run at once, whatever the instance slots allow: each holds a
/// thread (and reserves 8 GiB of address space).
pub(crate) const MAX_INSTANCE_THREADS: usize = ow_common::host::MAX_THREAD_BOUND_INSTANCES as usize;

/// Blocking threads of the runtime, for the host-directory I/O of the instances running.
const IO_THREADS: usize = 64;

/// The native stack of an instance thread (tokio's default for its blocking threads, where
/// instances ran before; Wasmer runs guest code on stacks of its own).
const INSTANCE_THREAD_STACK_BYTES: usize = 2 * 1024 * 1024;

/// The engine's runtime, its instance threads and the permits to run an instance on them.
#[derive(Debug)]
pub(crate) struct InstanceThreads {
    runtime: Option<Runtime>,
    threads: ThreadPool,
    permits: Arc<Semaphore>,
    instance_threads: usize,
}

impl InstanceThreads {
    /// A runtime and threads for up to `instance_threads` instances at once (at most
    /// [`MAX_INSTANCE_THREADS`]).
    pub(crate) fn start(instance_threads: usize) -> std::io::Result<Self> {
        let instance_threads = instance_threads.clamp(1, MAX_INSTANCE_THREADS);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(IO_THREADS)
            .thread_name("ow-wasmer")
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
            threads: ThreadPool::new(ThreadPoolSettings {
                name: "ow-wasmer-instance",
                max_threads: instance_threads,
                stack_bytes: INSTANCE_THREAD_STACK_BYTES,
                linger: INSTANCE_THREAD_LINGER,
                on_start: || {},
            }),
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

    /// Runs `job` on an instance thread, in the runtime's context, holding `permit` until it
    /// ends, and waits for it.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, RunError> {
        let runtime = self.handle().clone();
        let answered = self
            .threads
            .spawn(move || {
                let _context = runtime.enter();
                let ended = job();
                drop(permit);
                ended
            })
            .map_err(|e| {
                RunError::Internal(format!("cannot start a thread for a Wasmer instance: {e}"))
            })?;
        answered
            .await
            .map_err(|_| RunError::Internal("a Wasmer instance thread failed".to_owned()))
    }
}

impl Drop for InstanceThreads {
    fn drop(&mut self) {
        self.threads.close();
        // Dropping a runtime waits for its tasks, which async code may not do: instances
        // still running end on their own (they were told to stop).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
