//! The crate's only unsafe code: WAMR's C API (through `wamrx-sys`) behind safe types, the
//! allocator WAMR calls back ([`allocator`]: linear memories from a pool), plus the one
//! `memfd_create` the stdio needs.
//!
//! What WAMR requires, and where it is kept:
//!
//! * The runtime is initialised once per process, with its allocator, and `http`.`get` and the
//!   memory-growth callback are registered then, before any module is loaded
//!   ([`init_runtime`]). It is never torn down: modules and instances may outlive any engine
//!   value.
//! * A loaded module is read-only and may be instantiated from many threads at once; it is
//!   unloaded when dropped, and every [`Instance`] borrows its [`Module`], so no instance
//!   outlives it.
//! * An instance and its execution environment are used by one thread at a time: [`Instance`]
//!   holds raw pointers, so it is neither `Send` nor `Sync` and stays on the worker thread that
//!   made it. The guest ABIs reach it through [`RunningInstance`], which holds nothing: it finds
//!   the instance whose call the *calling* thread runs, so a view moved to another thread finds
//!   none there.
//! * The one call another thread may make on a running instance is `wasm_runtime_terminate`,
//!   and only while the instance exists: [`Kill`] guards it with a lock its instance's owner
//!   clears before tearing the instance down.
//! * A thread that runs WAMR calls `wasm_runtime_init_thread_env` first ([`enter_thread`]).

#![allow(unsafe_code)]

mod allocator;

pub(crate) use allocator::keep_idle;
#[cfg(test)]
pub(crate) use allocator::lends as linear_memory_lends;

use crate::instance::ActivationState;
use ow_common::host::abi::{FunctionType, Number, NumberType, ValueType};
use std::ffi::{CStr, CString, c_char, c_void};
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::{Mutex, OnceLock};
use wamrx_sys as w;

/// How long WAMR's error messages may be (it fills the buffer with `snprintf`).
const ERROR_BUFFER_BYTES: usize = 128;

/// The size of a WebAssembly page.
pub(crate) const WASM_PAGE_BYTES: u64 = 64 * 1024;

/// The exception WAMR raises when the guest called `proc_exit`: WAMR says it only in words.
const PROC_EXIT_EXCEPTION: &str = "Exception: wasi proc exit";

/// The prefix WAMR puts before every exception.
const EXCEPTION_PREFIX: &str = "Exception: ";

/// `http`.`get` as WAMR's registry spells it: two `i32` parameters, an `i64` result.
const HTTP_MODULE: &CStr = c"http";
const HTTP_GET_IMPORT: &CStr = c"get";
const HTTP_GET_SIGNATURE: &CStr = c"(ii)I";

/// Whether the runtime started, decided once per process.
static RUNTIME: OnceLock<Result<(), String>> = OnceLock::new();

/// The signal WAMR sends its own threads to cut a blocking WASI call short (after
/// `wasm_runtime_terminate`). WAMR's default is `SIGUSR1`, which Wasmer's host interrupts use,
/// and both engines may serve in one executor: this real-time signal is used by nothing else
/// in ow-wasm.
fn wakeup_signal() -> std::ffi::c_int {
    libc::SIGRTMIN() + 3
}

unsafe extern "C" {
    /// WAMR's platform layer (`posix_blocking_op.c`, compiled into `libiwasm.a`; not in
    /// `wasm_export.h`, so not bound by `wamrx-sys`): which signal interrupts blocking
    /// operations. Read when the runtime initialises.
    fn os_set_signal_number_for_blocking_op(signo: std::ffi::c_int);
}

/// Initialises WAMR for this process, once: the [`allocator`], the interpreter, a log level
/// that prints nothing (WAMR logs to the process's C stdout, which is the activation log stream
/// in `runtime` mode), `http`.`get` and the memory-growth callback.
pub(crate) fn init_runtime() -> Result<(), String> {
    RUNTIME
        .get_or_init(|| {
            // SAFETY: a plain store into WAMR's platform layer, made before the runtime (which
            // installs the signal's handler) initialises, once.
            unsafe { os_set_signal_number_for_blocking_op(wakeup_signal()) };
            let mut args = w::RuntimeInitArgs {
                mem_alloc_type: w::Alloc_With_Allocator,
                mem_alloc_option: allocator::callbacks(),
                running_mode: w::Mode_Interp,
                ..w::RuntimeInitArgs::default()
            };
            // SAFETY: the first WAMR runtime call of the process (the OnceLock runs this once,
            // and every other entry point of this module needs an engine, which calls this
            // first); `args` is a valid, initialised struct that outlives the call.
            if !unsafe { w::wasm_runtime_full_init(&mut args) } {
                return Err("WAMR's runtime could not be initialised".to_owned());
            }
            // SAFETY: the runtime is initialised; the log level is a plain global set here once.
            unsafe { w::wasm_runtime_set_log_level(w::WASM_LOG_LEVEL_FATAL) };
            register_http_get()?;
            // SAFETY: the callback has the signature WAMR calls it with and never unwinds (see
            // `on_memory_growth_refused`); like the natives, it is set once, before any load.
            unsafe {
                w::wasm_runtime_set_enlarge_mem_error_callback(
                    Some(on_memory_growth_refused),
                    ptr::null_mut(),
                );
            }
            Ok(())
        })
        .clone()
}

/// Registers `http`.`get` with WAMR's global native registry. Natives resolve when a module is
/// loaded, so every module loaded afterwards links it; actions not granted `net_access` are
/// refused at prepare, and the native checks the grant again.
fn register_http_get() -> Result<(), String> {
    // WAMR keeps these pointers for the life of the process and sorts the array in place: it
    // must be 'static and mutable, so it is leaked, once.
    let symbols: &'static mut [w::NativeSymbol; 1] = Box::leak(Box::new([w::NativeSymbol {
        symbol: HTTP_GET_IMPORT.as_ptr(),
        func_ptr: http_get as *mut c_void,
        signature: HTTP_GET_SIGNATURE.as_ptr(),
        attachment: ptr::null_mut(),
    }]));
    // SAFETY: the runtime is initialised and no module is loaded yet (this runs inside
    // `init_runtime`'s once-only block); the module name and every pointer in `symbols` are
    // 'static, and `http_get` has the plain calling convention of the signature "(ii)I":
    // the execution environment, then two i32s, returning an i64.
    let registered =
        unsafe { w::wasm_runtime_register_natives(HTTP_MODULE.as_ptr(), symbols.as_mut_ptr(), 1) };
    if registered {
        Ok(())
    } else {
        Err("WAMR refused to register http.get".to_owned())
    }
}

/// The native behind `http`.`get`: the host side is [`crate::http::get`].
///
/// # Safety
///
/// Called by WAMR only, as the native of `http`.`get`: on the thread running the guest call,
/// with that call's execution environment.
unsafe extern "C" fn http_get(exec_env: w::wasm_exec_env_t, url_ptr: i32, url_len: i32) -> i64 {
    let running = RunningInstance;
    if !running.is_calling(exec_env) {
        // SAFETY: WAMR calls a native on the thread running the call, with that call's live
        // execution environment; its instance is live for the call.
        unsafe {
            let instance = w::wasm_runtime_get_module_inst(exec_env);
            w::wasm_runtime_set_exception(
                instance,
                c"http.get was called outside an activation".as_ptr(),
            );
        }
        return 0;
    }
    // An unwinding panic must not cross into C: it becomes the guest call's failure.
    let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // The pointers are the guest's u32 addresses, passed as i32.
        crate::http::get(url_ptr as u32, url_len as u32)
    }));
    match answer {
        // The i64 result carries the packed region's bits.
        Ok(Ok(packed)) => packed as i64,
        Ok(Err(NativeFailure::Raised)) => 0,
        Ok(Err(NativeFailure::Refused(sentence))) => {
            running.raise(&sentence);
            0
        }
        Err(_) => {
            running.raise("http.get failed inside the executor");
            0
        }
    }
}

/// Why a native did not answer.
#[derive(Debug)]
pub(crate) enum NativeFailure {
    /// The guest call it made raised an exception, which stays the instance's.
    Raised,
    /// The host refuses: the sentence becomes the instance's exception.
    Refused(String),
}

/// Notes a memory growth that WAMR refused for reaching the instance's maximum.
///
/// # Safety
///
/// Called by WAMR only, as its memory-growth failure callback: on the instance's thread, with
/// the live instance whose growth failed.
unsafe extern "C" fn on_memory_growth_refused(
    inc_page_count: u32,
    current_memory_size: u64,
    _memory_index: u32,
    failure_reason: w::enlarge_memory_error_reason_t,
    instance: w::wasm_module_inst_t,
    _exec_env: w::wasm_exec_env_t,
    _user_data: *mut c_void,
) {
    if failure_reason != w::MAX_SIZE_REACHED {
        return;
    }
    // SAFETY: WAMR calls this on the instance's own thread, during a call on the live
    // instance whose growth failed.
    if let Some(state) = unsafe { state_of(instance) } {
        let wanted = current_memory_size
            .saturating_add(u64::from(inc_page_count).saturating_mul(WASM_PAGE_BYTES));
        state.memory_refused(wanted);
    }
}

/// The activation state an instance was made with.
///
/// # Safety
///
/// `instance` is a live instance, used by this thread. Its custom data is null or the
/// [`ActivationState`] given to [`Instance::new`], which outlives the instance.
unsafe fn state_of<'a>(instance: w::wasm_module_inst_t) -> Option<&'a ActivationState> {
    // SAFETY: the caller guarantees `instance` is live.
    let data = unsafe { w::wasm_runtime_get_custom_data(instance) };
    // SAFETY: every instance of this crate is made with an ActivationState (or nothing) as its
    // custom data, borrowed for longer than the instance lives.
    unsafe { data.cast::<ActivationState>().as_ref() }
}

thread_local! {
    static THREAD_ENV: ThreadEnv = ThreadEnv::new();
}

/// WAMR's per-thread setup, for the life of the thread.
struct ThreadEnv;

impl ThreadEnv {
    fn new() -> Self {
        // SAFETY: the runtime is initialised (threads that run WAMR are started by an engine,
        // which initialised it); this thread calls it once, through the thread-local.
        let ready = unsafe { w::wasm_runtime_init_thread_env() };
        assert!(ready, "WAMR could not set up a worker thread");
        Self
    }
}

impl Drop for ThreadEnv {
    fn drop(&mut self) {
        // SAFETY: this thread called `wasm_runtime_init_thread_env` (in `new`) and is ending.
        unsafe { w::wasm_runtime_destroy_thread_env() };
    }
}

/// Sets up the calling thread for WAMR (once per thread): the first thing each worker does.
pub(crate) fn enter_thread() {
    THREAD_ENV.with(|_| {});
}

/// The kinds of imports and exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExternKind {
    Function,
    Table,
    Memory,
    Global,
}

impl ExternKind {
    fn of(kind: w::wasm_import_export_kind_t) -> Self {
        match kind {
            w::WASM_IMPORT_EXPORT_KIND_FUNC => Self::Function,
            w::WASM_IMPORT_EXPORT_KIND_TABLE => Self::Table,
            w::WASM_IMPORT_EXPORT_KIND_MEMORY => Self::Memory,
            _ => Self::Global,
        }
    }

    /// The word for it in a sentence.
    pub(crate) fn noun(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Table => "table",
            Self::Memory => "memory",
            Self::Global => "global",
        }
    }
}

/// One import of a loaded module.
#[derive(Debug, Clone)]
pub(crate) struct Import {
    pub(crate) module: String,
    pub(crate) name: String,
    pub(crate) kind: ExternKind,
    /// Whether WAMR resolved it against a native of the same name and type.
    pub(crate) linked: bool,
    /// A function import's type.
    pub(crate) signature: Option<FunctionType>,
}

/// One export of a loaded module.
#[derive(Debug, Clone)]
pub(crate) struct Export {
    pub(crate) name: String,
    /// The export's type when it is a function (none for a table, memory or global).
    pub(crate) signature: Option<FunctionType>,
}

/// A loaded (validated, prepared for the interpreter) module.
pub(crate) struct Module {
    raw: w::wasm_module_t,
}

// SAFETY: WAMR never writes to a loaded module after `wasm_runtime_load_ex` returns: natives
// resolve while loading, and instantiating only reads the module (the spike instantiated one
// module from 4 threads, 300 times each, with no wrong result). The module's buffer was copied
// (`wasm_binary_freeable`), so it points into nothing of ours. The one mutation, unloading, is
// `Drop`, which needs the last owner, and every instance borrows the module.
unsafe impl Send for Module {}
// SAFETY: as above: every method takes `&self` and only reads the module.
unsafe impl Sync for Module {}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").finish_non_exhaustive()
    }
}

impl Module {
    /// Validates and loads a portable module, or says what WAMR found wrong with it.
    pub(crate) fn load(mut bytes: Vec<u8>) -> Result<Self, String> {
        let size = u32::try_from(bytes.len())
            .map_err(|_| format!("it is {} bytes, more than WAMR loads", bytes.len()))?;
        // WAMR rewrites the buffer while loading; with `wasm_binary_freeable` it copies what it
        // keeps, so the buffer is freed when this function returns.
        let mut name = *b"\0";
        let args = w::LoadArgs {
            name: name.as_mut_ptr().cast(),
            clone_wasm_binary: false,
            wasm_binary_freeable: true,
            no_resolve: false,
        };
        let mut error = [0 as c_char; ERROR_BUFFER_BYTES];
        // SAFETY: the runtime is initialised (a `Module` is only loaded through an engine);
        // `bytes` is a writable buffer of `size` bytes that WAMR may rewrite and does not keep
        // (`wasm_binary_freeable`); `args`, `name` and `error` outlive the call.
        let raw = unsafe {
            w::wasm_runtime_load_ex(
                bytes.as_mut_ptr(),
                size,
                &args,
                error.as_mut_ptr(),
                ERROR_BUFFER_BYTES as u32,
            )
        };
        if raw.is_null() {
            return Err(message_in(&error));
        }
        let module = Self { raw };
        // SAFETY: `raw` is the module just loaded.
        let freeable = unsafe { w::wasm_runtime_is_underlying_binary_freeable(raw) };
        if !freeable {
            return Err("WAMR kept pointers into the module's buffer".to_owned());
        }
        drop(bytes);
        Ok(module)
    }

    /// The module's exports.
    pub(crate) fn exports(&self) -> Vec<Export> {
        // SAFETY: `self.raw` is a loaded module.
        let count = unsafe { w::wasm_runtime_get_export_count(self.raw) };
        (0..count.max(0))
            .map(|index| {
                // SAFETY: an all-zero export is a valid value of this plain C struct (null
                // pointers, kind 0) for WAMR to fill in.
                let mut export: w::wasm_export_t = unsafe { std::mem::zeroed() };
                // SAFETY: `index` is below the module's export count; `export` is writable.
                unsafe { w::wasm_runtime_get_export_type(self.raw, index, &mut export) };
                let function = ExternKind::of(export.kind) == ExternKind::Function;
                let signature = function.then(|| {
                    // SAFETY: for a function export WAMR sets the union's `func_type`, a type
                    // the module owns.
                    unsafe { signature_of(export.u.func_type) }
                });
                Export {
                    // SAFETY: WAMR filled in the name, a NUL-terminated string the module owns.
                    name: unsafe { owned_string(export.name) },
                    signature,
                }
            })
            .collect()
    }

    /// The module's imports, with whether WAMR linked each.
    pub(crate) fn imports(&self) -> Vec<Import> {
        // SAFETY: `self.raw` is a loaded module.
        let count = unsafe { w::wasm_runtime_get_import_count(self.raw) };
        (0..count.max(0))
            .map(|index| {
                // SAFETY: an all-zero import is a valid value of this plain C struct.
                let mut import: w::wasm_import_t = unsafe { std::mem::zeroed() };
                // SAFETY: `index` is below the module's import count; `import` is writable.
                unsafe { w::wasm_runtime_get_import_type(self.raw, index, &mut import) };
                let kind = ExternKind::of(import.kind);
                let signature = (kind == ExternKind::Function).then(|| {
                    // SAFETY: for a function import WAMR sets the union's `func_type`, a type
                    // the module owns.
                    unsafe { signature_of(import.u.func_type) }
                });
                Import {
                    // SAFETY: both names are NUL-terminated strings the module owns.
                    module: unsafe { owned_string(import.module_name) },
                    // SAFETY: as above.
                    name: unsafe { owned_string(import.name) },
                    kind,
                    linked: import.linked,
                    signature,
                }
            })
            .collect()
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // SAFETY: every instance borrows its module, so none is left; nothing else refers to
        // `self.raw`.
        unsafe { w::wasm_runtime_unload(self.raw) };
    }
}

/// A function type of a loaded module.
///
/// # Safety
///
/// `func_type` is a function type of a loaded module.
unsafe fn signature_of(func_type: w::wasm_func_type_t) -> FunctionType {
    // SAFETY: the caller guarantees the type is valid; the indices stay below its counts.
    unsafe {
        FunctionType {
            params: (0..w::wasm_func_type_get_param_count(func_type))
                .map(|i| value_type(w::wasm_func_type_get_param_valkind(func_type, i)))
                .collect(),
            results: (0..w::wasm_func_type_get_result_count(func_type))
                .map(|i| value_type(w::wasm_func_type_get_result_valkind(func_type, i)))
                .collect(),
        }
    }
}

/// Copies a C string WAMR owns.
///
/// # Safety
///
/// `text` is null or a NUL-terminated string valid for the call.
unsafe fn owned_string(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// The message WAMR wrote into an error buffer.
fn message_in(buffer: &[c_char]) -> String {
    let bytes: Vec<u8> = buffer
        .iter()
        .take_while(|&&c| c != 0)
        // A C char is a byte.
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).trim_end().to_owned()
}

/// A WAMR value kind in the host's terms.
fn value_type(kind: w::wasm_valkind_t) -> ValueType {
    match u32::from(kind) {
        w::WASM_I32 => ValueType::I32,
        w::WASM_I64 => ValueType::I64,
        w::WASM_F32 => ValueType::F32,
        w::WASM_F64 => ValueType::F64,
        w::WASM_V128 => ValueType::V128,
        w::WASM_EXTERNREF => ValueType::ExternRef,
        w::WASM_FUNCREF => ValueType::FuncRef,
        other => ValueType::OtherRef(format!("the value kind {other}")),
    }
}

/// A number as WAMR passes it.
fn raw_value(number: Number) -> w::wasm_val_t {
    let (kind, of) = match number {
        Number::I32(i32_) => (w::WASM_I32, w::wasm_val_t__bindgen_ty_1 { i32_ }),
        Number::I64(i64_) => (w::WASM_I64, w::wasm_val_t__bindgen_ty_1 { i64_ }),
        Number::F32(f32_) => (w::WASM_F32, w::wasm_val_t__bindgen_ty_1 { f32_ }),
        Number::F64(f64_) => (w::WASM_F64, w::wasm_val_t__bindgen_ty_1 { f64_ }),
    };
    w::wasm_val_t {
        kind: kind as w::wasm_valkind_t,
        _paddings: [0; 7],
        of,
    }
}

/// The number WAMR returned in a cell of type `ty`.
///
/// # Safety
///
/// WAMR wrote a value of type `ty` into the cell (the function's result type is `ty`).
unsafe fn number_in(cell: &w::wasm_val_t, ty: NumberType) -> Number {
    // SAFETY: the caller guarantees which union field WAMR wrote.
    unsafe {
        match ty {
            NumberType::I32 => Number::I32(cell.of.i32_),
            NumberType::I64 => Number::I64(cell.of.i64_),
            NumberType::F32 => Number::F32(cell.of.f32_),
            NumberType::F64 => Number::F64(cell.of.f64_),
        }
    }
}

/// Why a guest call did not return.
#[derive(Debug)]
pub(crate) enum CallFailure {
    /// The export is missing or of another type: the sentence says which.
    Unusable(String),
    /// The call raised an exception (a trap, `proc_exit`, a stop), which the instance keeps.
    Raised,
}

/// What an instance is made with, besides its module, its state and its stdio.
#[derive(Debug)]
pub(crate) struct InstanceConfig<'c> {
    /// WASI's `argv`.
    pub(crate) args: &'c [CString],
    /// WASI's environment, as `NAME=value`.
    pub(crate) env: &'c [CString],
    /// Preopened directories, as `guest::host`.
    pub(crate) mapped_dirs: &'c [CString],
    /// The most pages linear memory may grow to.
    pub(crate) max_memory_pages: u32,
    /// The interpreter's stack (frames and operands) for each call.
    pub(crate) stack_bytes: u32,
}

/// One live instance and its execution environment, owned: torn down when dropped. It borrows
/// its module, its activation state and its stdio file descriptors, which WAMR uses for as long
/// as it lives.
pub(crate) struct Instance<'a> {
    raw: w::wasm_module_inst_t,
    exec_env: w::wasm_exec_env_t,
    _borrows: PhantomData<(&'a Module, &'a ActivationState, BorrowedFd<'a>)>,
}

impl std::fmt::Debug for Instance<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

impl<'a> Instance<'a> {
    /// Instantiates `module` on this thread, or says why WAMR could not. WAMR runs the module's
    /// start-up code while instantiating: a module loaded by the engine has none left (see
    /// `crate::startup`), so no guest code runs here.
    pub(crate) fn new(
        module: &'a Module,
        config: &InstanceConfig<'_>,
        state: &'a ActivationState,
        [stdin, stdout, stderr]: [BorrowedFd<'a>; 3],
    ) -> Result<Self, String> {
        let mut argv: Vec<*mut c_char> = config
            .args
            .iter()
            .map(|arg| arg.as_ptr().cast_mut())
            .collect();
        let mut envp: Vec<*const c_char> = config.env.iter().map(|var| var.as_ptr()).collect();
        let mut dirs: Vec<*const c_char> =
            config.mapped_dirs.iter().map(|dir| dir.as_ptr()).collect();
        let too_many = |what: &str| format!("too many {what} for WAMR");
        let argc = i32::try_from(argv.len()).map_err(|_| too_many("arguments"))?;
        let env_count = u32::try_from(envp.len()).map_err(|_| too_many("variables"))?;
        let dir_count = u32::try_from(dirs.len()).map_err(|_| too_many("directories"))?;
        let mut args: *mut w::InstantiationArgs2 = ptr::null_mut();
        // SAFETY: `args` is writable; WAMR allocates the arguments object into it.
        if !unsafe { w::wasm_runtime_instantiation_args_create(&mut args) } {
            return Err("WAMR could not allocate its instantiation arguments".to_owned());
        }
        let mut error = [0 as c_char; ERROR_BUFFER_BYTES];
        // SAFETY: `args` is the object just created; the setters only store the pointers given,
        // and every string and pointer array here outlives `wasm_runtime_instantiate_ex2`,
        // which copies what it keeps; the custom data is `state`, which outlives the instance
        // (`'a`), as do the three file descriptors, which WAMR never closes; `module` is loaded.
        // The arguments object is destroyed once the instance is made.
        let raw = unsafe {
            w::wasm_runtime_instantiation_args_set_default_stack_size(args, config.stack_bytes);
            w::wasm_runtime_instantiation_args_set_host_managed_heap_size(args, 0);
            w::wasm_runtime_instantiation_args_set_max_memory_pages(args, config.max_memory_pages);
            w::wasm_runtime_instantiation_args_set_custom_data(
                args,
                ptr::from_ref(state).cast_mut().cast(),
            );
            w::wasm_runtime_instantiation_args_set_wasi_arg(args, argv.as_mut_ptr(), argc);
            w::wasm_runtime_instantiation_args_set_wasi_env(args, envp.as_mut_ptr(), env_count);
            w::wasm_runtime_instantiation_args_set_wasi_dir(
                args,
                ptr::null_mut(),
                0,
                dirs.as_mut_ptr(),
                dir_count,
            );
            w::wasm_runtime_instantiation_args_set_wasi_stdio(
                args,
                stdin.as_raw_fd().into(),
                stdout.as_raw_fd().into(),
                stderr.as_raw_fd().into(),
            );
            let raw = w::wasm_runtime_instantiate_ex2(
                module.raw,
                args,
                error.as_mut_ptr(),
                ERROR_BUFFER_BYTES as u32,
            );
            w::wasm_runtime_instantiation_args_destroy(args);
            raw
        };
        if raw.is_null() {
            return Err(message_in(&error));
        }
        // SAFETY: `raw` is the live instance just made, on this thread.
        let exec_env = unsafe { w::wasm_runtime_create_exec_env(raw, config.stack_bytes) };
        if exec_env.is_null() {
            // SAFETY: `raw` is live and nothing else refers to it.
            unsafe { w::wasm_runtime_deinstantiate(raw) };
            return Err("WAMR could not allocate an execution environment".to_owned());
        }
        Ok(Self {
            raw,
            exec_env,
            _borrows: PhantomData,
        })
    }

    /// Runs `run` (the instance's calls) as this thread's [`RunningInstance`], with `kill`
    /// able to stop the instance meanwhile (at once, if it fired already).
    pub(crate) fn run_armed<R>(&mut self, kill: &Kill, run: impl FnOnce() -> R) -> (R, Disarmed) {
        {
            let mut armed = kill.armed.lock().expect("kill lock");
            if armed.fired {
                // SAFETY: the instance is alive (borrowed here) and this is its thread.
                unsafe { w::wasm_runtime_terminate(self.raw) };
            }
            armed.instance = Some(InstancePtr(self.raw));
        }
        /// Undoes both, even if `run` panics, before the instance can be dropped.
        struct Restore<'k> {
            kill: &'k Kill,
            previous: Option<Running>,
        }
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                RUNNING.set(self.previous);
                self.kill.armed.lock().expect("kill lock").instance = None;
            }
        }
        let restore = Restore {
            kill,
            previous: RUNNING.replace(Some(Running {
                instance: self.raw,
                exec_env: self.exec_env,
            })),
        };
        let ran = run();
        drop(restore);
        let fired = kill.armed.lock().expect("kill lock").fired;
        (ran, Disarmed { fired })
    }

    /// How many bytes of linear memory the instance has (0 without a memory).
    pub(crate) fn memory_bytes(&self) -> u64 {
        // SAFETY: `self.raw` is live and used by this thread.
        let memory = unsafe { w::wasm_runtime_get_default_memory(self.raw) };
        // SAFETY: as above; `memory` is null or the instance's memory.
        unsafe { memory_size(memory) }
    }

    /// How the instance's last call failed, in WAMR's words: the guest's exit code if it
    /// called `proc_exit`, else the exception without WAMR's `Exception: ` prefix. Read only
    /// once no [`Kill`] can fire on it.
    pub(crate) fn failure(&self, _disarmed: &Disarmed) -> Failure {
        // SAFETY: `self.raw` is live; the exception buffer lives in it, and no other thread
        // writes it any more (`Disarmed` proves the kill switch is off).
        let exception = unsafe { owned_string(w::wasm_runtime_get_exception(self.raw)) };
        if exception == PROC_EXIT_EXCEPTION {
            // SAFETY: `self.raw` is live.
            let code = unsafe { w::wasm_runtime_get_wasi_exit_code(self.raw) };
            // WASI exit codes are u32; the platform reports them as i32 as Wasmtime does.
            return Failure::Exit(code as i32);
        }
        match exception.strip_prefix(EXCEPTION_PREFIX) {
            Some(trap) => Failure::Trap(trap.to_owned()),
            None if exception.is_empty() => {
                Failure::Trap("WAMR failed the call without saying why".to_owned())
            }
            None => Failure::Trap(exception),
        }
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        // SAFETY: both are live and used by this thread only; the execution environment is
        // destroyed before its instance, as WAMR requires. No `Kill` is armed on the instance:
        // `run_armed` borrows it and disarms before returning.
        unsafe {
            w::wasm_runtime_destroy_exec_env(self.exec_env);
            w::wasm_runtime_deinstantiate(self.raw);
        }
    }
}

/// How an instance's call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The guest called `proc_exit` with this code.
    Exit(i32),
    /// Anything else, in WAMR's words.
    Trap(String),
}

/// The instance whose call this thread is running, and its execution environment.
#[derive(Debug, Clone, Copy)]
struct Running {
    instance: w::wasm_module_inst_t,
    exec_env: w::wasm_exec_env_t,
}

thread_local! {
    /// Set by [`Instance::run_armed`] for as long as the instance's calls run on this thread.
    static RUNNING: std::cell::Cell<Option<Running>> = const { std::cell::Cell::new(None) };
}

/// The guest ABIs' and the natives' way to the instance whose call the calling thread runs
/// (inside [`Instance::run_armed`]). It holds nothing: on a thread that runs no instance,
/// every method fails, so moving it between threads can reach no instance from the wrong one.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RunningInstance;

/// What [`RunningInstance`] says on a thread that runs no instance.
const NOT_RUNNING: &str = "no WAMR instance runs on this thread";

impl RunningInstance {
    fn running(self) -> Option<Running> {
        RUNNING.get()
    }

    /// Whether WAMR is calling a native of the running instance with `exec_env`.
    fn is_calling(self, exec_env: w::wasm_exec_env_t) -> bool {
        self.running()
            .is_some_and(|running| running.exec_env == exec_env)
    }

    /// Runs `use_state` with the activation state the running instance was made with.
    pub(crate) fn with_state<R>(self, use_state: impl FnOnce(&ActivationState) -> R) -> Option<R> {
        let running = self.running()?;
        // SAFETY: a running instance is alive and used by this thread: `run_armed` borrows it
        // mutably for as long as it is set; the state it was made with outlives it, and the
        // reference does not escape `use_state`.
        let state = unsafe { state_of(running.instance) }?;
        Some(use_state(state))
    }

    /// Calls the export `name` with `params`, expecting results of the types `results`. The
    /// export's type must be exactly that.
    pub(crate) fn call(
        self,
        name: &str,
        params: &[Number],
        results: &[NumberType],
    ) -> Result<Vec<Number>, CallFailure> {
        let running = self
            .running()
            .ok_or_else(|| CallFailure::Unusable(NOT_RUNNING.to_owned()))?;
        let instance = running.instance;
        let c_name = CString::new(name)
            .map_err(|_| CallFailure::Unusable(format!("there is no export named {name:?}")))?;
        // SAFETY: the running instance is live and used by this thread (see `with_state`);
        // the name is NUL-terminated.
        let function = unsafe { w::wasm_runtime_lookup_function(instance, c_name.as_ptr()) };
        if function.is_null() {
            return Err(CallFailure::Unusable(format!(
                "the module exports no function named `{name}`"
            )));
        }
        // SAFETY: `function` belongs to the live instance; the buffers hold exactly as many
        // kinds as the counts WAMR reports.
        let actual = unsafe {
            let mut params = vec![0; w::wasm_func_get_param_count(function, instance) as usize];
            let mut results = vec![0; w::wasm_func_get_result_count(function, instance) as usize];
            w::wasm_func_get_param_types(function, instance, params.as_mut_ptr());
            w::wasm_func_get_result_types(function, instance, results.as_mut_ptr());
            FunctionType {
                params: params.into_iter().map(value_type).collect(),
                results: results.into_iter().map(value_type).collect(),
            }
        };
        let wanted = FunctionType {
            params: params.iter().map(|p| p.ty().into()).collect(),
            results: results.iter().map(|&ty| ty.into()).collect(),
        };
        if actual != wanted {
            return Err(CallFailure::Unusable(format!(
                "the export `{name}` has the type {actual}, not {wanted}"
            )));
        }
        let mut args: Vec<w::wasm_val_t> = params.iter().map(|&p| raw_value(p)).collect();
        let mut cells: Vec<w::wasm_val_t> =
            results.iter().map(|_| raw_value(Number::I64(0))).collect();
        // SAFETY: the instance and its execution environment are live and used by this thread
        // only (a native calling back in runs on the same thread); the function's type was
        // checked above to be exactly the kinds of `args` and of `results`, and `cells` holds a
        // cell for each result, so WAMR copies each value into a cell of its type.
        let returned = unsafe {
            w::wasm_runtime_call_wasm_a(
                running.exec_env,
                function,
                cells.len() as u32,
                cells.as_mut_ptr(),
                args.len() as u32,
                args.as_mut_ptr(),
            )
        };
        if !returned {
            return Err(CallFailure::Raised);
        }
        Ok(cells
            .iter()
            .zip(results)
            // SAFETY: each result's type was checked to be `ty`, so WAMR wrote that field.
            .map(|(cell, &ty)| unsafe { number_in(cell, ty) })
            .collect())
    }

    /// Runs `access` on the exported memory the ABIs use (its base and size in bytes, looked up
    /// anew each time because growing it may move it), if there is one.
    fn with_memory<R>(self, access: impl FnOnce(*mut u8, u64) -> R) -> Option<R> {
        let running = self.running()?;
        let name = CString::new(ow_common::abi::MEMORY_EXPORT).expect("no NUL in the name");
        // SAFETY: the running instance is live and used by this thread; the name is
        // NUL-terminated.
        let memory = unsafe { w::wasm_runtime_lookup_memory(running.instance, name.as_ptr()) };
        if memory.is_null() {
            return None;
        }
        // SAFETY: `memory` is the live instance's memory.
        let base = unsafe { w::wasm_memory_get_base_address(memory) }.cast::<u8>();
        // SAFETY: as above.
        let size = unsafe { memory_size(memory) };
        (!base.is_null()).then(|| access(base, size))
    }

    /// Copies `len` bytes of guest memory at `ptr`, if they lie inside it.
    pub(crate) fn read_memory(self, ptr: u32, len: u32) -> Option<Vec<u8>> {
        self.with_memory(|base, size| {
            if u64::from(ptr) + u64::from(len) > size {
                return None;
            }
            // SAFETY: `ptr..ptr + len` lies inside the memory's current size, mapped at `base`;
            // no guest code runs while this thread copies (the instance runs on this thread).
            let bytes = unsafe { std::slice::from_raw_parts(base.add(ptr as usize), len as usize) };
            Some(bytes.to_vec())
        })
        .flatten()
    }

    /// Copies `bytes` into guest memory at `ptr`; false if they do not fit inside it.
    pub(crate) fn write_memory(self, ptr: u32, bytes: &[u8]) -> bool {
        self.with_memory(|base, size| {
            if u64::from(ptr) + bytes.len() as u64 > size {
                return false;
            }
            // SAFETY: as in `read_memory`; guest memory never overlaps a host buffer.
            unsafe {
                ptr::copy_nonoverlapping(bytes.as_ptr(), base.add(ptr as usize), bytes.len())
            };
            true
        })
        .unwrap_or(false)
    }

    /// Makes the call in progress fail with `sentence` (a native's refusal), unless it already
    /// failed.
    pub(crate) fn raise(self, sentence: &str) {
        let Some(running) = self.running() else {
            return;
        };
        // SAFETY: the running instance is live and used by this thread.
        if !unsafe { w::wasm_runtime_get_exception(running.instance) }.is_null() {
            return;
        }
        let sentence = CString::new(sentence.replace('\0', " ")).expect("NULs were replaced");
        // SAFETY: as above; WAMR copies the string (under its lock, as a concurrent terminate
        // does).
        unsafe { w::wasm_runtime_set_exception(running.instance, sentence.as_ptr()) };
    }
}

/// The size in bytes of a memory.
///
/// # Safety
///
/// `memory` is null or the memory of a live instance.
unsafe fn memory_size(memory: w::wasm_memory_inst_t) -> u64 {
    if memory.is_null() {
        return 0;
    }
    // SAFETY: the caller guarantees a live memory.
    let (pages, page_bytes) = unsafe {
        (
            w::wasm_memory_get_cur_page_count(memory),
            w::wasm_memory_get_bytes_per_page(memory),
        )
    };
    pages.saturating_mul(page_bytes)
}

/// The switch that stops one activation's instance from another thread (at its deadline, or
/// when its activation is abandoned). It may fire before the instance exists, while it runs,
/// or after it is gone; it reaches the instance only while [`Instance::run_armed`] runs.
#[derive(Debug, Default)]
pub(crate) struct Kill {
    armed: Mutex<Armed>,
    /// Wakes a native waiting on the host's behalf (`http`.`get`) when the switch fires.
    fired: tokio::sync::watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Armed {
    /// The instance, while it may be stopped.
    instance: Option<InstancePtr>,
    /// Whether the switch fired.
    fired: bool,
}

#[derive(Debug)]
struct InstancePtr(w::wasm_module_inst_t);

// SAFETY: the pointer crosses threads only to be passed to `wasm_runtime_terminate`, the one
// WAMR call made for being called from another thread while the instance runs; `Kill` holds it
// only while the instance is alive (see `Instance::run_armed`).
unsafe impl Send for InstancePtr {}

/// Proof that a [`Kill`] can no longer reach its instance: only [`Instance::run_armed`] makes
/// one.
#[derive(Debug)]
pub(crate) struct Disarmed {
    fired: bool,
}

impl Disarmed {
    /// Whether the switch fired before it was disarmed.
    pub(crate) fn fired(&self) -> bool {
        self.fired
    }
}

impl Kill {
    /// Stops the instance (now, or as soon as it is armed). May take WAMR up to 50 ms when the
    /// guest is inside a blocking WASI call, so it is not called on an async worker.
    pub(crate) fn fire(&self) {
        let mut armed = self.armed.lock().expect("kill lock");
        armed.fired = true;
        self.fired.send_replace(true);
        if let Some(instance) = &armed.instance {
            // SAFETY: an armed instance is alive: `Instance::run_armed` sets it while it borrows
            // the instance and clears it, under this lock, before returning.
            unsafe { w::wasm_runtime_terminate(instance.0) };
        }
    }

    /// Waits until the switch fires.
    pub(crate) async fn fired(&self) {
        let mut fired = self.fired.subscribe();
        // The sender lives in `self`, so the channel stays open.
        let _ = fired.wait_for(|fired| *fired).await;
    }
}

/// An anonymous in-memory file holding `bytes`, read from its start: an activation's stdin.
pub(crate) fn memfd_with(bytes: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated string; memfd_create returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(c"ow-wamr-stdin".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(fd);
    io::Write::write_all(&mut file, bytes)?;
    io::Seek::rewind(&mut file)?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::sync::Arc;
    use std::time::Duration;

    /// A command that writes 1 MiB to stdout in one call.
    const LOUD: &str = r#"(module
      (import "wasi_snapshot_preview1" "fd_write"
        (func $fd_write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 20)
      (data (i32.const 0) "\00\00\01\00\00\00\10\00")
      (func (export "_start")
        (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

    /// How many bytes wait to be read in the pipe `reader` reads.
    fn unread_bytes(reader: &impl AsRawFd) -> usize {
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer, which points at `unread`; the
        // descriptor is open for as long as `reader` is borrowed.
        let status = unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &mut unread) };
        assert_eq!(status, 0, "FIONREAD: {}", io::Error::last_os_error());
        usize::try_from(unread).expect("a count")
    }

    /// How many bytes the pipe `reader` reads holds at most.
    fn pipe_capacity(reader: &impl AsRawFd) -> usize {
        // SAFETY: F_GETPIPE_SZ reads the size of the descriptor's pipe and writes nothing; the
        // descriptor is open for as long as `reader` is borrowed.
        let size = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_GETPIPE_SZ) };
        usize::try_from(size)
            .unwrap_or_else(|_| panic!("F_GETPIPE_SZ: {}", io::Error::last_os_error()))
    }

    #[test]
    fn a_guest_blocked_writing_a_full_pipe_is_stopped_by_its_kill_switch() {
        init_runtime().expect("WAMR starts");
        enter_thread();
        let wasm = wat::parse_str(LOUD).expect("valid WAT");
        let module = Module::load(wasm).expect("it loads");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let kill = Arc::new(Kill::default());
        let state = ActivationState::detached(runtime.handle().clone(), kill.clone());
        let stdin = memfd_with(b"").expect("a memfd");
        // Nobody reads stdout: the guest blocks once the pipe is full.
        let (mut stdout_reader, stdout) = io::pipe().expect("a pipe");
        let (_stderr_reader, stderr) = io::pipe().expect("a pipe");
        let config = InstanceConfig {
            args: &[],
            env: &[],
            mapped_dirs: &[],
            max_memory_pages: 20,
            stack_bytes: 64 * 1024,
        };
        let stdio = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
        let mut instance = Instance::new(&module, &config, &state, stdio).expect("instantiates");
        let probe = stdout_reader.try_clone().expect("a second read end");
        let stopper = std::thread::spawn({
            let kill = kill.clone();
            move || {
                // Once its pipe is full, the guest waits in `writev`.
                let bound = std::time::Instant::now() + Duration::from_secs(20);
                while unread_bytes(&probe) < pipe_capacity(&probe) {
                    assert!(
                        std::time::Instant::now() < bound,
                        "the guest did not fill its stdout pipe in 20 s"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                kill.fire();
            }
        });
        // Should the signal not reach the guest, empty the pipe after a while, so that the test
        // fails instead of hanging.
        let (stopped, unblock_now) = std::sync::mpsc::channel::<()>();
        let unblock = std::thread::spawn(move || {
            let unblocked = unblock_now.recv_timeout(Duration::from_secs(20)).is_err();
            let _ = io::copy(&mut stdout_reader, &mut io::sink());
            unblocked
        });
        let (called, disarmed) =
            instance.run_armed(&kill, || RunningInstance.call("_start", &[], &[]));
        let _ = stopped.send(());
        stopper.join().expect("the stopper ends");
        assert!(matches!(called, Err(CallFailure::Raised)), "{called:?}");
        assert!(disarmed.fired());
        assert_eq!(
            instance.failure(&disarmed),
            Failure::Trap("terminated by user".to_owned())
        );
        drop(instance);
        drop((stdout, stderr));
        assert!(
            !unblock.join().expect("the unblocker ends"),
            "the guest went on only once its pipe was emptied"
        );
    }

    #[test]
    fn the_c_names_are_the_abi_names() {
        assert_eq!(HTTP_MODULE.to_str(), Ok(ow_common::abi::HTTP_MODULE));
        assert_eq!(
            HTTP_GET_IMPORT.to_str(),
            Ok(ow_common::abi::HTTP_GET_IMPORT)
        );
    }
}
