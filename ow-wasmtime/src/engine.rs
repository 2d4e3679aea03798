//! The process-wide Wasmtime engine: its configuration and the epoch ticker that lets
//! activations be interrupted at their deadline.

use ow_common::host::MEMORY_KEEP_RESIDENT;
use ow_common::runtime::EngineConfig;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the engine's epoch advances: the granularity of deadline checks and the longest
/// a compute-bound activation runs before yielding its async worker to others.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// The largest linear memory any action may be granted (OpenWhisk's maximum memory limit).
pub(crate) const MAX_MEMORY_BYTES: usize = 512 * 1024 * 1024;

/// How many bytes of a pooled table stay resident when its instance is dropped, as
/// [`MEMORY_KEEP_RESIDENT`] for memories: a lazily initialised table writes its first page on the
/// first indirect call.
pub(crate) const TABLE_KEEP_RESIDENT: usize = 64 * 1024;

/// Builds the serving engine: [`code_config`] and the instance pool.
pub(crate) fn build_engine(config: &EngineConfig) -> anyhow::Result<Engine> {
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_core_instances(config.max_instances)
        .total_memories(config.max_instances)
        .total_tables(config.max_instances)
        .total_stacks(config.max_instances)
        .max_memory_size(MAX_MEMORY_BYTES)
        .table_elements(crate::instance::MAX_TABLE_ELEMENTS);
    // Without the ioctl (Linux before 6.7) keeping pages resident would mean a `memset` of the
    // first bytes of every memory on every drop, written or not: there, pages are given back.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pooling
            .pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT);
    }
    let mut wasmtime_config = code_config();
    wasmtime_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&wasmtime_config)
        .map_err(|e| anyhow::anyhow!("cannot build the Wasmtime engine: {e:#}"))
}

/// Builds an engine that only compiles: the serving engine's code settings, so its artifacts
/// load into any engine [`build_engine`] makes, without the instance pool (how instances are
/// allocated is no part of an artifact), so it reserves no address space. An engine keeps the
/// compiler's working memory of each compile (Cranelift's contexts, sized by the largest
/// function it compiled) for its next one; compiling with an engine of its own that is
/// dropped afterwards gives that memory back: 0.7–2 MiB of an executor's resident memory after
/// its first compile, for under 1% of a compile's time (building this engine and loading its
/// artifact, about a millisecond against 130–150 ms of Cranelift for `echo`).
pub(crate) fn build_compiler() -> anyhow::Result<Engine> {
    Engine::new(&code_config())
        .map_err(|e| anyhow::anyhow!("cannot build the Wasmtime compiler: {e:#}"))
}

/// The settings compiled code depends on, shared by the serving engine and the compiler: an
/// artifact loads only into an engine whose settings match the one that made it.
pub(crate) fn code_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true).memory_init_cow(true);
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread while an activation
/// runs, until dropped. With none running the thread waits: an idle executor (or an idle
/// `runtime` container, one process per container) wakes no core 500 times a second.
pub(crate) struct EpochTicker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

/// What the activations and the ticker's thread share.
#[derive(Debug, Default)]
struct TickerShared {
    state: Mutex<TickerState>,
    woken: Condvar,
}

#[derive(Debug, Default)]
struct TickerState {
    /// Activations running now.
    running: usize,
    /// Whether the thread waits for one (and must be woken when one starts).
    waiting: bool,
    /// Whether the ticker was dropped.
    stopped: bool,
}

/// Lets activations keep the epoch advancing: see [`Ticking::activation`].
#[derive(Debug, Clone)]
pub(crate) struct Ticking(Arc<TickerShared>);

/// Keeps the epoch advancing until dropped: held by a running activation.
#[derive(Debug)]
pub(crate) struct ActivationTicks(Arc<TickerShared>);

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> Self {
        let shared = Arc::new(TickerShared::default());
        let engine = engine.weak();
        let thread = std::thread::Builder::new()
            .name("ow-wasmtime-epoch".to_owned())
            .spawn({
                let shared = shared.clone();
                move || shared.run(|| engine.upgrade().map(|engine| engine.increment_epoch()))
            })
            .expect("the OS can start the epoch ticker thread");
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// What activations hold to keep the epoch advancing.
    pub(crate) fn ticking(&self) -> Ticking {
        Ticking(self.shared.clone())
    }

    /// Whether the thread waits for an activation, ticking not.
    #[cfg(test)]
    pub(crate) fn is_waiting(&self) -> bool {
        self.shared.lock().waiting
    }
}

impl Ticking {
    /// The epoch advances from now until the returned guard is dropped (and as long as any
    /// other activation holds one).
    pub(crate) fn activation(&self) -> ActivationTicks {
        let mut state = self.0.lock();
        state.running += 1;
        if state.waiting {
            state.waiting = false;
            self.0.woken.notify_one();
        }
        ActivationTicks(self.0.clone())
    }
}

impl Drop for ActivationTicks {
    fn drop(&mut self) {
        self.0.lock().running -= 1;
    }
}

impl TickerShared {
    fn lock(&self) -> MutexGuard<'_, TickerState> {
        self.state.lock().expect("epoch ticker lock")
    }

    /// The ticker thread: ticks every [`EPOCH_TICK`] while an activation runs, waits while
    /// none does, and ends when the ticker or the engine (`tick` returns `None`) is gone.
    fn run(&self, tick: impl Fn() -> Option<()>) {
        let mut state = self.lock();
        while !state.stopped {
            if state.running == 0 {
                state.waiting = true;
                state = self
                    .woken
                    .wait_while(state, |state| state.waiting && !state.stopped)
                    .expect("epoch ticker lock");
                continue;
            }
            drop(state);
            std::thread::sleep(EPOCH_TICK);
            if tick().is_none() {
                return;
            }
            state = self.lock();
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.woken.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
