//! Threads the crate owns and runs WAMR on: a pool that starts a thread when a job finds none
//! idle, up to its maximum, and lets a thread go after it has been idle for a while.
//!
//! WAMR cannot suspend a call, so an activation holds its thread from instantiation to
//! teardown, waits included; the engine's pool of instance threads therefore grows up to the
//! engine's instance slots. A second, small pool stops instances at their deadline
//! (`wasm_runtime_terminate` may block for WAMR's 50 ms wake-up pause), off the async workers.

use std::collections::VecDeque;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a thread waits for a job before it ends.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One unit of work.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// A growing pool of named threads, each set up for WAMR.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: &'static str,
    max_threads: usize,
    stack_bytes: usize,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// Set when the pool's owner is gone: idle threads end at once.
    closed: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &self.queue.len())
            .field("threads", &self.threads)
            .field("idle", &self.idle)
            .field("closed", &self.closed)
            .finish()
    }
}

impl Pool {
    /// A pool of at most `max_threads` threads (at least one) named `name`, each with a native
    /// stack of `stack_bytes`. No thread starts before the first job.
    pub(crate) fn new(name: &'static str, max_threads: usize, stack_bytes: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                name,
                max_threads: max_threads.max(1),
                stack_bytes,
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
        }
    }

    /// Runs `job` on an idle thread, on a new one while the pool is below its maximum, or, at
    /// the maximum, on the first thread to finish its job. Fails only when the OS refuses a
    /// new thread (the job is then dropped).
    pub(crate) fn submit(&self, job: Job) -> io::Result<()> {
        let mut state = self.shared.state.lock().expect("pool lock");
        if state.idle > state.queue.len() || state.threads >= self.shared.max_threads {
            state.queue.push_back(job);
            drop(state);
            self.shared.wake.notify_one();
            return Ok(());
        }
        state.threads += 1;
        drop(state);
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name(self.shared.name.to_owned())
            .stack_size(self.shared.stack_bytes)
            .spawn(move || work(&shared, job));
        match started {
            Ok(_) => Ok(()),
            Err(error) => {
                self.shared.state.lock().expect("pool lock").threads -= 1;
                Err(error)
            }
        }
    }

    /// Lets every thread end once the queue is empty, instead of idling out.
    pub(crate) fn close(&self) {
        self.shared.state.lock().expect("pool lock").closed = true;
        self.shared.wake.notify_all();
    }

    /// How many threads the pool has right now.
    #[cfg(test)]
    pub(crate) fn threads(&self) -> usize {
        self.shared.state.lock().expect("pool lock").threads
    }
}

/// A thread's life: its first job, then whatever is queued, until it idles out.
fn work(shared: &Shared, first: Job) {
    crate::ffi::enter_thread();
    let mut next = Some(first);
    while let Some(job) = next.take() {
        // A panicking job loses its own activation (its answer is dropped), not the thread.
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!(pool = shared.name, "a job on a WAMR thread panicked");
        }
        let mut state = shared.state.lock().expect("pool lock");
        loop {
            if let Some(job) = state.queue.pop_front() {
                next = Some(job);
                break;
            }
            if state.closed {
                state.threads -= 1;
                return;
            }
            state.idle += 1;
            let (woken, waited) = shared
                .wake
                .wait_timeout(state, IDLE_TIMEOUT)
                .expect("pool lock");
            state = woken;
            state.idle -= 1;
            if waited.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_pool_grows_to_its_maximum_and_queues_beyond_it() {
        let pool = Pool::new("ow-wamr-test", 2, 64 * 1024);
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        let (done, finished) = mpsc::channel();
        for n in 0..3 {
            let released = released.clone();
            let done = done.clone();
            pool.submit(Box::new(move || {
                released.lock().unwrap().recv().unwrap();
                done.send(n).unwrap();
            }))
            .unwrap();
        }
        // Two threads hold two jobs; the third job waits for one of them.
        assert_eq!(pool.threads(), 2);
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        let mut ran: Vec<i32> = (0..3).map(|_| finished.recv().unwrap()).collect();
        ran.sort_unstable();
        assert_eq!(ran, [0, 1, 2]);
        assert_eq!(pool.threads(), 2, "idle threads stay for the next jobs");
        pool.close();
        let bound = std::time::Instant::now() + Duration::from_secs(30);
        while pool.threads() > 0 {
            assert!(std::time::Instant::now() < bound, "closed threads end");
            std::thread::yield_now();
        }
    }
}
