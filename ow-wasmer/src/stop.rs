//! Stopping instances, at their deadline or when their activation is dropped. An instance runs
//! on a thread of its own and its calls block, so it is stopped from outside, three ways:
//!
//! * Wasmer's host interrupt (a signal to the instance's thread) traps wasm code. Wasmer says an
//!   interrupt can be missed (one sent just before a call starts), so the [`Stopper`] repeats
//!   it every [`RETRY`] until the instance's calls are over.
//! * An interrupt is only noted while the guest is inside a host call: a WASI kill signal to
//!   the instance's WASI process ends a blocking WASI sleep (`poll_oneoff`) at once.
//! * `http`.`get` waits on the [`Watch`] itself.
//!
//! The instance's thread also checks [`Watch::is_stopping`] before each call into the guest,
//! so a stop that came between calls (or before the instance existed) is not lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmer::Interrupter;
use wasmer_wasix::WasiProcess;
use wasmer_wasix::types::wasi::Signal;

/// How often a stopping instance is interrupted again until it has stopped.
const RETRY: Duration = Duration::from_millis(5);

/// One activation's stop switch, shared by its future and its instance's thread.
#[derive(Default)]
pub(crate) struct Watch {
    stopping: AtomicBool,
    ended: AtomicBool,
    running: Mutex<Option<Running>>,
    stopped: tokio::sync::Notify,
}

/// What stops a running instance.
struct Running {
    interrupter: Interrupter,
    process: Option<WasiProcess>,
    killed: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("stopping", &self.is_stopping())
            .field("ended", &self.ended.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// Whether the activation is being stopped.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Resolves once the activation is being stopped.
    pub(crate) async fn stopped(&self) {
        let notified = self.stopped.notified();
        let mut notified = std::pin::pin!(notified);
        notified.as_mut().enable();
        if !self.is_stopping() {
            notified.await;
        }
    }

    /// Tells the watch how to stop the instance about to run. Returns `false` when the
    /// activation is being stopped already: then the instance must not run.
    pub(crate) fn register(&self, interrupter: Interrupter, process: Option<WasiProcess>) -> bool {
        *self.running.lock().expect("watch lock") = Some(Running {
            interrupter,
            process,
            killed: false,
        });
        !self.is_stopping()
    }

    /// Tells the watch that the instance's calls are over: it needs stopping no more.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Release);
        self.running.lock().expect("watch lock").take();
    }

    fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Interrupts the instance (and kills its WASI process, once) if it is running.
    fn poke(&self) {
        if let Some(running) = self.running.lock().expect("watch lock").as_mut() {
            if !running.killed {
                running.killed = true;
                if let Some(process) = &running.process {
                    process.signal_process(Signal::Sigkill);
                }
            }
            running.interrupter.interrupt();
        }
    }
}

/// Ends its watch when dropped: however an instance's job ends (run, never started, or
/// unwound by a panic), the stopper lets go of it.
#[derive(Debug)]
pub(crate) struct EndOnDrop(pub(crate) Arc<Watch>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The thread that stops instances, one per engine.
#[derive(Debug)]
pub(crate) struct Stopper {
    shared: Arc<StopperShared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct StopperShared {
    queue: Mutex<StopQueue>,
    woken: Condvar,
}

#[derive(Debug, Default)]
struct StopQueue {
    stopping: Vec<Arc<Watch>>,
    closed: bool,
}

impl Stopper {
    /// Starts the stopping thread.
    pub(crate) fn start() -> std::io::Result<Self> {
        let shared = Arc::new(StopperShared::default());
        let thread = std::thread::Builder::new()
            .name("ow-wasmer-stopper".to_owned())
            .spawn({
                let shared = shared.clone();
                move || shared.run()
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Stops the activation `watch` belongs to, if it was not being stopped already. Returns
    /// at once: the instance stops soon after.
    pub(crate) fn stop(&self, watch: &Arc<Watch>) {
        if watch.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        watch.stopped.notify_waiters();
        if watch.has_ended() {
            return;
        }
        watch.poke();
        let mut queue = self.shared.queue.lock().expect("stopper lock");
        queue.stopping.push(watch.clone());
        self.shared.woken.notify_one();
    }
}

impl StopperShared {
    fn run(&self) {
        let mut queue = self.queue.lock().expect("stopper lock");
        while !queue.closed {
            queue.stopping.retain(|watch| !watch.has_ended());
            for watch in &queue.stopping {
                watch.poke();
            }
            queue = if queue.stopping.is_empty() {
                self.woken.wait(queue).expect("stopper lock")
            } else {
                self.woken
                    .wait_timeout(queue, RETRY)
                    .expect("stopper lock")
                    .0
            };
        }
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.shared.queue.lock().expect("stopper lock").closed = true;
        self.shared.woken.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
