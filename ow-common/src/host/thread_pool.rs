//! Threads for engines whose instances cannot leave the thread they started on (Wasmer's
//! stores, WAMR's calls, which cannot be suspended): a pool that starts a thread when a job
//! finds none idle, up to its maximum, and lets a thread go after it has been idle for a while.
//! An activation holds its thread from instantiation to teardown, waits included, so an
//! engine's pool of instance threads grows up to its instance slots.
//!
//! A pool may let one thread linger after its job: it keeps looking for the next job for a
//! moment before it sleeps, giving up its core at each look to any thread that can run. On an
//! idle machine the next activation then finds a thread awake, rather than one whose core has
//! halted and must be woken; under load the looks cost little, since another thread runs
//! between them. Measured against sleeping at once (two alternating criterion runs, three
//! alternating keep-alive `throughput` runs of 32 connections, a 2-core VM), with
//! [`INSTANCE_THREAD_LINGER`]:
//!
//! | | Wasmer | WAMR |
//! |---|---|---|
//! | criterion `noop` | 42–85 → 37–38 µs | 85–121 → 52–55 µs |
//! | criterion `add` | 150–166 → 137–157 µs | 101–141 → 96–104 µs |
//! | keep-alive `add` | 7,211–8,949 → 8,944–10,294 requests/s | 10,230–12,937 → 10,965–13,085 |
//!
//! A linger of 100 µs caught a `noop`'s next job as well, but not an `add`'s, whose round trip
//! is longer: it burnt its 100 µs and slept anyway, and criterion's `add` got slower. Spinning
//! instead of giving up the core cost a keep-alive `add` a sixth of its requests/s.

use std::collections::VecDeque;
use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a thread waits for a job before it ends.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an engine's instance thread looks for the next activation after its own before it
/// sleeps: longer than the round trip of a client that sends its next request as soon as it
/// has the answer (50–200 µs for criterion's `noop` to `stdio_add` on this project's 2-core
/// machine).
pub const INSTANCE_THREAD_LINGER: Duration = Duration::from_micros(400);

/// One unit of work.
pub type Job = Box<dyn FnOnce() + Send>;

/// A growing pool of named threads.
#[derive(Debug, Clone)]
pub struct ThreadPool {
    shared: Arc<Shared>,
}

/// What a [`ThreadPool`] is made of.
#[derive(Debug, Clone, Copy)]
pub struct ThreadPoolSettings {
    /// The threads' name.
    pub name: &'static str,
    /// The most threads at once (at least one is allowed).
    pub max_threads: usize,
    /// Each thread's native stack.
    pub stack_bytes: usize,
    /// How long one thread lingers after its job (see the module's documentation); zero: every
    /// thread sleeps at once.
    pub linger: Duration,
    /// What each thread runs first, to set itself up for the engine.
    pub on_start: fn(),
}

#[derive(Debug)]
struct Shared {
    settings: ThreadPoolSettings,
    state: Mutex<State>,
    wake: Condvar,
    /// The queue's length, written under the lock, for the lingering thread to watch without it.
    queued: AtomicUsize,
    /// [`State::closed`], for the lingering thread to watch.
    closed: AtomicBool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    threads: usize,
    /// Threads without a job: the lingering one and those asleep.
    idle: usize,
    /// Whether a thread lingers now (at most one does).
    lingering: bool,
    /// Set when the pool's owner is gone: idle threads end at once.
    closed: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &self.queue.len())
            .field("threads", &self.threads)
            .field("idle", &self.idle)
            .field("lingering", &self.lingering)
            .field("closed", &self.closed)
            .finish()
    }
}

impl ThreadPool {
    /// A pool as `settings` say. No thread starts before the first job.
    pub fn new(settings: ThreadPoolSettings) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings: ThreadPoolSettings {
                    max_threads: settings.max_threads.max(1),
                    ..settings
                },
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
                queued: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Runs `job` on an idle thread, on a new one while the pool is below its maximum, or, at
    /// the maximum, on the first thread to finish its job. Fails only when the OS refuses a
    /// new thread (the job is then dropped).
    pub fn submit(&self, job: Job) -> io::Result<()> {
        let mut state = self.shared.state.lock().expect("pool lock");
        if state.idle > state.queue.len() || state.threads >= self.shared.settings.max_threads {
            state.queue.push_back(job);
            self.shared
                .queued
                .store(state.queue.len(), Ordering::Release);
            // A lingering thread takes the first job queued; any beyond it need a sleeper.
            let sleeper_needed = !state.lingering || state.queue.len() > 1;
            drop(state);
            if sleeper_needed {
                self.shared.wake.notify_one();
            }
            return Ok(());
        }
        state.threads += 1;
        drop(state);
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name(self.shared.settings.name.to_owned())
            .stack_size(self.shared.settings.stack_bytes)
            .spawn(move || work(&shared, job));
        match started {
            Ok(_) => Ok(()),
            Err(error) => {
                self.shared.state.lock().expect("pool lock").threads -= 1;
                Err(error)
            }
        }
    }

    /// Runs `job` as [`submit`](Self::submit) does, and gives the receiver of its result: it
    /// closes without a value if the job panicked.
    pub fn spawn<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<oneshot::Receiver<T>> {
        let (answer, answered) = oneshot::channel();
        self.submit(Box::new(move || {
            let _ = answer.send(job());
        }))?;
        Ok(answered)
    }

    /// Lets every thread end once the queue is empty, instead of idling out.
    pub fn close(&self) {
        self.shared.state.lock().expect("pool lock").closed = true;
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_all();
    }

    /// How many threads the pool has right now.
    #[cfg(test)]
    fn threads(&self) -> usize {
        self.shared.state.lock().expect("pool lock").threads
    }

    /// How many threads are without a job right now, and whether one of them lingers.
    #[cfg(test)]
    fn idle(&self) -> (usize, bool) {
        let state = self.shared.state.lock().expect("pool lock");
        (state.idle, state.lingering)
    }
}

/// A thread's life: its first job, then whatever is queued, until it idles out.
fn work(shared: &Shared, first: Job) {
    (shared.settings.on_start)();
    let mut next = Some(first);
    while let Some(job) = next.take() {
        // A panicking job loses its own activation (its answer is dropped), not the thread.
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!(
                pool = shared.settings.name,
                "a job on a pool thread panicked"
            );
        }
        let mut state = shared.state.lock().expect("pool lock");
        let mut lingered = false;
        loop {
            if let Some(job) = state.queue.pop_front() {
                shared.queued.store(state.queue.len(), Ordering::Release);
                next = Some(job);
                break;
            }
            if state.closed {
                state.threads -= 1;
                return;
            }
            if !lingered && !state.lingering && !shared.settings.linger.is_zero() {
                lingered = true;
                state.idle += 1;
                state.lingering = true;
                drop(state);
                linger(shared);
                state = shared.state.lock().expect("pool lock");
                state.idle -= 1;
                state.lingering = false;
                continue;
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

/// Looks for a queued job until one is, the pool is closed or the pool's linger time is over,
/// giving up the core at each look.
fn linger(shared: &Shared) {
    let until = Instant::now() + shared.settings.linger;
    while shared.queued.load(Ordering::Acquire) == 0
        && !shared.closed.load(Ordering::Acquire)
        && Instant::now() < until
    {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn test_pool(max_threads: usize, linger: Duration) -> ThreadPool {
        ThreadPool::new(ThreadPoolSettings {
            name: "ow-test-pool",
            max_threads,
            stack_bytes: 64 * 1024,
            linger,
            on_start: || {},
        })
    }

    #[test]
    fn a_pool_grows_to_its_maximum_and_queues_beyond_it() {
        let pool = test_pool(2, Duration::ZERO);
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
        wait_until("closed threads end", || pool.threads() == 0);
    }

    /// Waits until `done` holds, failing after 30 s.
    fn wait_until(what: &str, done: impl Fn() -> bool) {
        let bound = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < bound, "{what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn jobs_queued_while_a_thread_lingers_reach_the_sleeping_threads_too() {
        // Lingering for far longer than the test takes: one thread lingers, one sleeps.
        let pool = test_pool(3, Duration::from_secs(120));
        let (done, finished) = mpsc::channel();
        // Two jobs that wait for each other: two threads.
        let both_running = Arc::new(std::sync::Barrier::new(2));
        for n in 0..2 {
            let done = done.clone();
            let both_running = both_running.clone();
            pool.submit(Box::new(move || {
                both_running.wait();
                done.send(n).unwrap();
            }))
            .unwrap();
        }
        for _ in 0..2 {
            finished.recv().unwrap();
        }
        wait_until("one thread lingers and the other sleeps", || {
            pool.idle() == (2, true)
        });
        assert_eq!(pool.threads(), 2);

        // The first job holds the lingering thread (or the sleeper); the second must still run.
        let (release, released) = mpsc::channel::<()>();
        pool.submit(Box::new(move || released.recv().unwrap()))
            .unwrap();
        let done_second = done.clone();
        pool.submit(Box::new(move || done_second.send(2).unwrap()))
            .unwrap();
        assert_eq!(
            finished.recv_timeout(Duration::from_secs(30)),
            Ok(2),
            "the second job runs while the first blocks"
        );
        assert_eq!(pool.threads(), 2, "two idle threads took both jobs");
        release.send(()).unwrap();
        pool.close();
        wait_until("closed threads end", || pool.threads() == 0);
    }
}
