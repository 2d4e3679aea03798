//! One activation's instance: made, run and torn down on one of the engine's instance threads
//! (`ow-common`'s thread pool), with its stdio drained and its deadline kept by the
//! activation's future; the host side of the guest ABI over WAMR's calls; and how WAMR's
//! failures read as a [`GuestStop`].

use crate::WamrModule;
use crate::ffi::{
    self, CallFailure, Disarmed, Failure, Instance, InstanceConfig, Kill, RunningInstance,
};
use crate::startup::Startup;
use crate::stdio::{self, GuestStdio, IdleStdio};
use ow_common::abi;
use ow_common::host::abi::{
    GuestAbi, GuestInstance, GuestMemory, Number, NumberType, call_abi, complete_now,
};
use ow_common::host::slots::InstanceSlot;
use ow_common::host::thread_pool::ThreadPool;
use ow_common::host::{Execution, GuestStop, InstanceEnd, LinkedModule, stop_at_deadline};
use ow_common::runtime::{ActionConfig, InitError, RunError};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::runtime::Handle;

/// The interpreter stack (wasm frames and operands) of an instance's calls, allocated for every
/// activation (our WAMR does not clear it: see `vendor/wamrx-sys/VENDORED.md`, so a call
/// touches only the part it reaches); 256 KiB leaves room for deep recursion, and a guest that
/// needs more traps with "wasm operand stack overflow".
pub(crate) const WASM_STACK_BYTES: u32 = 256 * 1024;

/// The native stack of an instance thread: WAMR's own frames and the host functions' (the
/// interpreter keeps wasm frames on [`WASM_STACK_BYTES`]).
pub(crate) const INSTANCE_THREAD_STACK_BYTES: usize = 512 * 1024;

/// The threads an engine runs WAMR on: WAMR cannot suspend a call, so an activation holds its
/// instance thread from instantiation to teardown.
#[derive(Debug)]
pub(crate) struct Threads {
    /// Where instances live, one activation per thread at a time.
    pub(crate) instances: ThreadPool,
    /// Where instances are stopped at their deadline, off the async workers:
    /// `wasm_runtime_terminate` may block for WAMR's 50 ms wake-up pause.
    pub(crate) stoppers: ThreadPool,
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.instances.close();
        self.stoppers.close();
    }
}

impl Threads {
    /// Fires `kill` off the async worker: WAMR may pause in it.
    fn stop(&self, kill: &Arc<Kill>) {
        let job = kill.clone();
        if self.stoppers.submit(Box::new(move || job.fire())).is_err() {
            // No thread to spare: stopping late is worse than blocking this one briefly.
            kill.fire();
        }
    }
}

/// What an action's configuration means for each of its instances, computed once at link.
#[derive(Debug)]
pub(crate) struct ActionSettings {
    net_access: bool,
    memory_limit: u64,
    max_memory_pages: u32,
    /// The granted directory as WAMR maps it, `/data::<host path>`.
    mapped_dirs: Vec<CString>,
}

impl ActionSettings {
    pub(crate) fn new(config: &ActionConfig) -> Result<Self, InitError> {
        let memory_limit = config.limits.memory_bytes;
        // WAMR reads 0 pages as "the module's own maximum": the cap is at least one page.
        let max_memory_pages = u32::try_from(memory_limit / ffi::WASM_PAGE_BYTES)
            .unwrap_or(u32::MAX)
            .max(1);
        let mapped_dirs = match &config.capabilities.dir {
            None => Vec::new(),
            Some(dir) => {
                let mut mapping = format!("{}::", abi::PREOPEN_GUEST_PATH).into_bytes();
                mapping.extend_from_slice(dir.as_os_str().as_bytes());
                vec![CString::new(mapping).map_err(|_| {
                    InitError::Capability(format!(
                        "the dir annotation {} holds a NUL byte",
                        dir.display()
                    ))
                })?]
            }
        };
        Ok(Self {
            net_access: config.capabilities.net_access,
            memory_limit,
            max_memory_pages,
            mapped_dirs,
        })
    }
}

/// A module linked for one action.
pub struct WamrLinked {
    pub(crate) module: Arc<WamrModule>,
    pub(crate) settings: Arc<ActionSettings>,
    pub(crate) threads: Arc<Threads>,
    pub(crate) idle_stdio: Arc<IdleStdio>,
}

impl std::fmt::Debug for WamrLinked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WamrLinked")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl LinkedModule for WamrLinked {
    async fn execute(&self, execution: Execution) -> InstanceEnd {
        let Execution {
            guest_abi,
            result_limit,
            params,
            stdin,
            args,
            env,
            capture,
            deadline,
            slot,
        } = execution;
        let stdin_bytes: &[u8] = if stdin { &params } else { &[] };
        let (stdio, drains) = match stdio::open(stdin_bytes, &self.idle_stdio) {
            Ok(opened) => opened,
            Err(error) => {
                return refused(RunError::Internal(format!(
                    "cannot open the action's stdio: {error}"
                )));
            }
        };
        let kill = Arc::new(Kill::default());
        let job = InstanceJob {
            module: self.module.clone(),
            settings: self.settings.clone(),
            guest_abi,
            params,
            args,
            result_limit,
            env,
            stdio,
            kill: kill.clone(),
            runtime: Handle::current(),
            slot,
        };
        let answered = match self.threads.instances.spawn(move || job.run()) {
            Ok(answered) => answered,
            Err(error) => {
                return refused(RunError::Internal(format!(
                    "cannot start a thread for a WAMR instance: {error}"
                )));
            }
        };
        let ran = drains.drain_until(&capture, answered);
        match stop_at_deadline(deadline, ran, || self.threads.stop(&kill)).await {
            (Ok((end, stdio)), read_empty) => {
                self.idle_stdio
                    .give_back(drains, stdio, read_empty, self.module.sets_fd_flags());
                end
            }
            (Err(_), _) => refused(RunError::Internal(
                "the WAMR instance thread ended without an answer".to_owned(),
            )),
        }
    }
}

fn refused(error: RunError) -> InstanceEnd {
    InstanceEnd {
        result: Err(GuestStop::Refused(error)),
        memory_capped: false,
    }
}

/// What an instance's natives and callbacks know of their activation (WAMR's custom data).
#[derive(Debug)]
pub(crate) struct ActivationState {
    net_access: bool,
    memory_limit: u64,
    memory_capped: AtomicBool,
    runtime: Handle,
    kill: Arc<Kill>,
}

impl ActivationState {
    /// A state for an instance a test makes by hand.
    #[cfg(test)]
    pub(crate) fn detached(runtime: Handle, kill: Arc<Kill>) -> Self {
        Self {
            net_access: false,
            memory_limit: u64::MAX,
            memory_capped: AtomicBool::new(false),
            runtime,
            kill,
        }
    }

    /// Whether the action was granted `http`.`get`.
    pub(crate) fn net_access(&self) -> bool {
        self.net_access
    }

    /// The activation's tokio runtime, for the host sides that wait.
    pub(crate) fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// The activation's kill switch.
    pub(crate) fn kill(&self) -> &Kill {
        &self.kill
    }

    /// WAMR refused to grow memory to `wanted` bytes: the memory limit did, if over it (the
    /// module's own declared maximum is not the limit).
    pub(crate) fn memory_refused(&self, wanted: u64) {
        if wanted > self.memory_limit {
            self.memory_capped.store(true, Ordering::Relaxed);
        }
    }
}

/// Everything an instance needs on its thread, owned by the job.
struct InstanceJob {
    module: Arc<WamrModule>,
    settings: Arc<ActionSettings>,
    guest_abi: GuestAbi,
    params: Vec<u8>,
    args: Vec<Number>,
    result_limit: u64,
    env: Vec<(String, String)>,
    stdio: GuestStdio,
    kill: Arc<Kill>,
    runtime: Handle,
    /// Released when the job ends, after the instance is gone.
    slot: InstanceSlot,
}

impl InstanceJob {
    /// Makes the instance, runs the activation through its ABI and tears it down; gives back
    /// the guest's stdio with how the activation ended, for the activation's future to lend
    /// again or close after its own ends of the pipes (see [`crate::stdio`]).
    fn run(self) -> (InstanceEnd, GuestStdio) {
        let state = ActivationState {
            net_access: self.settings.net_access,
            memory_limit: self.settings.memory_limit,
            memory_capped: AtomicBool::new(false),
            runtime: self.runtime.clone(),
            kill: self.kill.clone(),
        };
        let result = self.instantiate_and_run(&state);
        let end = InstanceEnd {
            result,
            memory_capped: state.memory_capped.load(Ordering::Relaxed),
        };
        // The instance is gone (it borrowed `state`): the slot is free.
        let Self { stdio, slot, .. } = self;
        drop(slot);
        (end, stdio)
    }

    fn instantiate_and_run(&self, state: &ActivationState) -> Result<Vec<u8>, GuestStop> {
        let args = [CString::new("action").expect("no NUL")];
        let env = self
            .env
            .iter()
            .map(|(name, value)| CString::new(format!("{name}={value}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                GuestStop::Refused(RunError::Internal(
                    "an environment variable holds a NUL byte, which WASI cannot pass".to_owned(),
                ))
            })?;
        let config = InstanceConfig {
            args: &args,
            env: &env,
            mapped_dirs: &self.settings.mapped_dirs,
            max_memory_pages: self.settings.max_memory_pages,
            stack_bytes: WASM_STACK_BYTES,
        };
        let mut instance = Instance::new(&self.module.loaded, &config, state, self.stdio.fds())
            .map_err(instantiation_failed)?;
        // WAMR does not refuse an initial memory above the cap; the limit does.
        let initial_memory = instance.memory_bytes();
        if initial_memory > self.settings.memory_limit {
            state.memory_refused(initial_memory);
            return Err(GuestStop::Trap(format!(
                "the module's initial memory of {initial_memory} bytes is more than the \
                 action's memory limit"
            )));
        }
        let startup = &self.module.startup;
        let mut guest = WamrGuest { startup };
        let (result, disarmed) = instance.run_armed(&self.kill, || {
            // What WAMR would have run while instantiating, now that the deadline can stop it.
            startup.run()?;
            complete_now(call_abi(
                &mut guest,
                &self.guest_abi,
                &self.params,
                &self.args,
                self.result_limit,
            ))
        });
        result.map_err(|error| stop_of(error, &instance, &disarmed))
    }
}

/// How a failed instantiation reads. No guest code runs in it (its start-up code runs in the
/// activation, see [`crate::startup`]), but should WAMR raise an exception there all the same,
/// it reads as a trap; anything else is the executor's failure.
fn instantiation_failed(message: String) -> GuestStop {
    // WAMR says it only in words: "WASM module instantiate failed: Exception: unreachable".
    match message.split_once("Exception: ") {
        Some((_, trap)) => GuestStop::Trap(trap.to_owned()),
        None => GuestStop::Refused(RunError::Internal(format!(
            "WAMR could not instantiate the module: {message}"
        ))),
    }
}

/// How a call failed, in the host's terms, once the kill switch is off.
fn stop_of(error: CallError, instance: &Instance<'_>, disarmed: &Disarmed) -> GuestStop {
    match error {
        CallError::Refused(refused) => GuestStop::Refused(refused),
        CallError::Trap(trap) => GuestStop::Trap(trap),
        // Stopped by us: whatever WAMR says (it says "terminated by user").
        CallError::Raised if disarmed.fired() => GuestStop::Interrupted,
        CallError::Raised => match instance.failure(disarmed) {
            Failure::Exit(code) => GuestStop::Exit(code),
            Failure::Trap(trap) => trapped(trap),
        },
    }
}

/// A trap in WAMR's words, as the host classes it. WAMR names an exhausted stack only in
/// words: "native stack overflow", "wasm operand stack overflow" or, for the guest's own
/// stack in linear memory, "wasm auxiliary stack overflow".
fn trapped(trap: String) -> GuestStop {
    if trap.ends_with("stack overflow") {
        GuestStop::StackExhausted
    } else {
        GuestStop::Trap(trap)
    }
}

/// Why a call on the guest did not return a value.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The host side of the ABI refused (a result over the limit).
    Refused(RunError),
    /// The host found the guest unusable: the sentence says how.
    Trap(String),
    /// WAMR raised an exception in the instance, read once the call is over.
    Raised,
}

impl From<RunError> for CallError {
    fn from(error: RunError) -> Self {
        Self::Refused(error)
    }
}

impl From<CallFailure> for CallError {
    fn from(failure: CallFailure) -> Self {
        match failure {
            CallFailure::Unusable(sentence) => Self::Trap(sentence),
            CallFailure::Raised => Self::Raised,
        }
    }
}

/// The guest ABIs' view of the WAMR instance running on the calling thread. Every call is
/// synchronous: each future is ready at once (driven by [`complete_now`]).
#[derive(Debug)]
pub(crate) struct WamrGuest<'m> {
    /// The module's start-up calls, which the activation made before the ABI's: they name
    /// the exports that were renamed, and `_initialize` when it is among them.
    startup: &'m Startup,
}

impl WamrGuest<'static> {
    /// The view a native uses of the instance calling it (to reach its memory and allocator).
    pub(crate) fn calling_native() -> Self {
        Self {
            startup: Startup::none(),
        }
    }
}

impl GuestMemory for WamrGuest<'_> {
    type Error = CallError;

    async fn alloc(&mut self, len: u32) -> Result<u32, CallError> {
        // The ABI's u32s cross as the i32s WebAssembly has.
        match RunningInstance.call(
            abi::ALLOC_EXPORT,
            &[Number::I32(len as i32)],
            &[NumberType::I32],
        )?[..]
        {
            [Number::I32(ptr)] => Ok(ptr as u32),
            _ => unreachable!("the type was checked to return one i32"),
        }
    }

    fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), CallError> {
        if RunningInstance.write_memory(ptr, bytes) {
            Ok(())
        } else {
            Err(CallError::Trap(
                "the guest allocator returned a buffer outside memory".to_owned(),
            ))
        }
    }

    fn read_memory(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, CallError> {
        RunningInstance
            .read_memory(ptr, len)
            .ok_or_else(|| CallError::Trap("the guest region lies outside its memory".to_owned()))
    }
}

impl GuestInstance for WamrGuest<'_> {
    /// Calls `_start`, or `_initialize` — except when `_initialize` is among the start-up calls
    /// (as WAMR makes it in a module importing WASI), which the activation already made:
    /// calling it again would initialise the reactor twice, so then this does nothing.
    async fn call_unit(&mut self, export: &str) -> Result<(), CallError> {
        if self.startup.calls(export) {
            return Ok(());
        }
        RunningInstance.call(export, &[], &[])?;
        Ok(())
    }

    async fn call_main(&mut self, ptr: u32, len: u32) -> Result<u64, CallError> {
        let params = [Number::I32(ptr as i32), Number::I32(len as i32)];
        match RunningInstance.call(abi::MAIN_EXPORT, &params, &[NumberType::I64])?[..] {
            // The packed region's bits.
            [Number::I64(packed)] => Ok(packed as u64),
            _ => unreachable!("the type was checked to return one i64"),
        }
    }

    async fn call_export(
        &mut self,
        export: &str,
        args: &[Number],
        results: &[NumberType],
    ) -> Result<Vec<Number>, CallError> {
        Ok(RunningInstance.call(self.startup.export_name(export), args, results)?)
    }
}
