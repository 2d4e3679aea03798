//! The host side of the guest ABIs (see [`crate::abi`]), written once over [`GuestInstance`],
//! a small view of a running instance that each engine implements: detecting the ABI a
//! module speaks, handing it the parameters (or, for the export-call ABI, the arguments the
//! parameters' `args` give, typed by the export's signature), taking its result, and finding
//! the stdio ABI's result line in its output.

use crate::abi;
use crate::protocol::json_type_name;
use crate::runtime::{InitError, RunError};
use serde_json::{Map, Value};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// The exports that are another ABI's entry points: `main` naming one of them never selects
/// the export-call ABI.
const ENTRY_POINTS: [&str; 4] = [
    abi::ALLOC_EXPORT,
    abi::MAIN_EXPORT,
    abi::COMMAND_START_EXPORT,
    abi::REACTOR_INIT_EXPORT,
];

/// The ABI a module speaks, detected from its exports and the action's `main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestAbi {
    /// The `ow-wasm-action` SDK. `reactor` says whether `_initialize` must run first.
    Sdk {
        /// The module exports `_initialize`.
        reactor: bool,
    },
    /// A WASI command: parameters on stdin, result on the last stdout line.
    Stdio,
    /// The export-call ABI: the function `main` names, called with the parameters' `args`.
    ExportCall {
        /// The function and its type.
        export: Arc<NumericExport>,
        /// The module exports `_initialize`, which runs first.
        reactor: bool,
    },
}

impl GuestAbi {
    /// Detects the ABI from a module's exported functions and the action's `main`:
    ///
    /// 1. the SDK ABI when the module exports [`abi::ALLOC_EXPORT`] and [`abi::MAIN_EXPORT`]
    ///    (`main` is not looked at);
    /// 2. else the export-call ABI when `main` names an exported function that is none of the
    ///    entry points (`__ow_alloc`, `__ow_main`, `_start`, `_initialize`); its parameters and
    ///    results must all be numbers, or the module is refused;
    /// 3. else the stdio ABI when the module exports [`abi::COMMAND_START_EXPORT`];
    /// 4. else none: the module is refused, with the functions it does export.
    pub fn detect(functions: &[ExportedFunction], main: &str) -> Result<Self, InitError> {
        let exports = |name: &str| functions.iter().any(|function| function.name == name);
        let reactor = exports(abi::REACTOR_INIT_EXPORT);
        if exports(abi::ALLOC_EXPORT) && exports(abi::MAIN_EXPORT) {
            return Ok(Self::Sdk { reactor });
        }
        if !ENTRY_POINTS.contains(&main)
            && let Some(function) = functions.iter().find(|function| function.name == main)
        {
            return Ok(Self::ExportCall {
                export: Arc::new(NumericExport::of(function)?),
                reactor,
            });
        }
        if exports(abi::COMMAND_START_EXPORT) {
            return Ok(Self::Stdio);
        }
        Err(InitError::NoEntryPoint {
            main: main.to_owned(),
            functions: functions
                .iter()
                .map(|function| function.name.clone())
                .filter(|name| !ENTRY_POINTS.contains(&name.as_str()))
                .collect(),
        })
    }
}

/// A WebAssembly value type, as an engine reports the type of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueType {
    /// A 32-bit integer.
    I32,
    /// A 64-bit integer.
    I64,
    /// A 32-bit float.
    F32,
    /// A 64-bit float.
    F64,
    /// A 128-bit vector.
    V128,
    /// A function reference.
    FuncRef,
    /// An external reference.
    ExternRef,
    /// Another reference type, in the engine's words.
    OtherRef(String),
}

impl ValueType {
    /// The number type this is, if it is one.
    pub fn number(&self) -> Option<NumberType> {
        match self {
            Self::I32 => Some(NumberType::I32),
            Self::I64 => Some(NumberType::I64),
            Self::F32 => Some(NumberType::F32),
            Self::F64 => Some(NumberType::F64),
            Self::V128 | Self::FuncRef | Self::ExternRef | Self::OtherRef(_) => None,
        }
    }
}

impl From<NumberType> for ValueType {
    fn from(number: NumberType) -> Self {
        match number {
            NumberType::I32 => Self::I32,
            NumberType::I64 => Self::I64,
            NumberType::F32 => Self::F32,
            NumberType::F64 => Self::F64,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::I32 => f.write_str("i32"),
            Self::I64 => f.write_str("i64"),
            Self::F32 => f.write_str("f32"),
            Self::F64 => f.write_str("f64"),
            Self::V128 => f.write_str("v128"),
            Self::FuncRef => f.write_str("funcref"),
            Self::ExternRef => f.write_str("externref"),
            Self::OtherRef(name) => f.write_str(name),
        }
    }
}

/// A function's type: its parameter and result types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionType {
    /// The parameter types, in order.
    pub params: Vec<ValueType>,
    /// The result types, in order.
    pub results: Vec<ValueType>,
}

impl fmt::Display for FunctionType {
    /// `(i32, i32) -> (i64)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "({}) -> ({})",
            type_list(&self.params),
            type_list(&self.results)
        )
    }
}

fn type_list<T: fmt::Display>(types: &[T]) -> String {
    types
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An exported function of a module: its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedFunction {
    /// The export's name.
    pub name: String,
    /// Its type.
    pub ty: FunctionType,
}

impl ExportedFunction {
    /// The export `name`, a function taking `params` and returning `results`: how an engine
    /// describes each exported function of a module, its value types mapped to the host's.
    pub fn new(
        name: impl Into<String>,
        params: impl IntoIterator<Item = ValueType>,
        results: impl IntoIterator<Item = ValueType>,
    ) -> Self {
        Self {
            name: name.into(),
            ty: FunctionType {
                params: params.into_iter().collect(),
                results: results.into_iter().collect(),
            },
        }
    }
}

/// The types the export-call ABI passes: WebAssembly's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberType {
    /// A 32-bit integer.
    I32,
    /// A 64-bit integer.
    I64,
    /// A 32-bit float.
    F32,
    /// A 64-bit float.
    F64,
}

impl fmt::Display for NumberType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ValueType::from(*self).fmt(f)
    }
}

/// A WebAssembly number: an argument or result of the export-call ABI.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A 32-bit integer (WebAssembly's are sign-agnostic; read here as signed).
    I32(i32),
    /// A 64-bit integer (read as signed).
    I64(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
}

/// How a float that JSON has no number for (NaN, an infinity) is written, in results and in
/// `args`: as JavaScript's `String(x)` writes it.
const NON_FINITE: [(&str, f64); 3] = [
    ("NaN", f64::NAN),
    ("Infinity", f64::INFINITY),
    ("-Infinity", f64::NEG_INFINITY),
];

impl Number {
    /// The number's type.
    pub fn ty(self) -> NumberType {
        match self {
            Self::I32(_) => NumberType::I32,
            Self::I64(_) => NumberType::I64,
            Self::F32(_) => NumberType::F32,
            Self::F64(_) => NumberType::F64,
        }
    }

    /// The number as a JSON value: integers as they are (signed), floats as the shortest
    /// decimal that reads back as the same float, and NaN and the infinities as the strings
    /// `"NaN"`, `"Infinity"` and `"-Infinity"`.
    pub fn to_json(self) -> Value {
        let float = match self {
            Self::I32(value) => return value.into(),
            Self::I64(value) => return value.into(),
            // The f32's own shortest decimal, not the f64 nearest to it (0.1, not
            // 0.10000000149011612).
            Self::F32(value) if value.is_finite() => {
                value.to_string().parse().expect("a float's decimal parses")
            }
            Self::F32(value) => f64::from(value),
            Self::F64(value) => value,
        };
        match serde_json::Number::from_f64(float) {
            Some(number) => Value::Number(number),
            None => {
                // NON_FINITE's order: NaN, then the infinities.
                let (name, _) = NON_FINITE[match float {
                    nan if nan.is_nan() => 0,
                    positive if positive > 0.0 => 1,
                    _ => 2,
                }];
                Value::String(name.to_owned())
            }
        }
    }
}

/// The function the export-call ABI calls: its name, and its parameters and results, all
/// numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumericExport {
    /// The export's name.
    pub name: String,
    /// The parameter types, in order.
    pub params: Vec<NumberType>,
    /// The result types, in order.
    pub results: Vec<NumberType>,
}

impl NumericExport {
    /// The function, if its parameters and results are all numbers; else the refusal that
    /// names its type.
    pub fn of(function: &ExportedFunction) -> Result<Self, InitError> {
        let numbers = |types: &[ValueType]| -> Option<Vec<NumberType>> {
            types.iter().map(ValueType::number).collect()
        };
        match (numbers(&function.ty.params), numbers(&function.ty.results)) {
            (Some(params), Some(results)) => Ok(Self {
                name: function.name.clone(),
                params,
                results,
            }),
            _ => Err(InitError::UncallableExport {
                export: function.name.clone(),
                ty: function.ty.to_string(),
            }),
        }
    }

    /// The arguments an activation's parameters give the function: their `args` array, one
    /// JSON number per parameter, each fitting its parameter's type. `args` may be left out
    /// when the function takes no arguments.
    ///
    /// An integer parameter takes an integer in its signed or its unsigned range (an `i32`
    /// takes -2147483648 to 4294967295; past 2147483647 the bits are the same as the
    /// negative number's). A float parameter takes any number (an `f32` one within the
    /// `f32` range), and the strings `"NaN"`, `"Infinity"` and `"-Infinity"`.
    pub fn arguments(&self, params: &Value) -> Result<Vec<Number>, ArgumentError> {
        let args = match params.get("args") {
            Some(Value::Array(args)) => args.as_slice(),
            None if self.params.is_empty() => &[],
            None => {
                return Err(ArgumentError::Missing {
                    export: self.name.clone(),
                    takes: self.takes(),
                });
            }
            Some(other) => {
                return Err(ArgumentError::NotAnArray {
                    export: self.name.clone(),
                    takes: self.takes(),
                    found: json_type_name(other).to_owned(),
                });
            }
        };
        if args.len() != self.params.len() {
            return Err(ArgumentError::Arity {
                export: self.name.clone(),
                takes: self.takes(),
                given: args.len(),
            });
        }
        args.iter()
            .zip(&self.params)
            .enumerate()
            .map(|(index, (arg, &ty))| {
                number_of(arg, ty).map_err(|problem| ArgumentError::Unfit {
                    export: self.name.clone(),
                    ty,
                    index,
                    problem,
                })
            })
            .collect()
    }

    /// The activation's result for what the function returned: `{"result": value}` for one
    /// result, `{"result": [values]}` for several, `{}` for none.
    pub fn result(&self, results: &[Number]) -> Value {
        let mut object = Map::new();
        match results {
            [] => {}
            [one] => {
                object.insert("result".to_owned(), one.to_json());
            }
            several => {
                let values = several.iter().map(|number| number.to_json()).collect();
                object.insert("result".to_owned(), Value::Array(values));
            }
        }
        Value::Object(object)
    }

    /// `2 arguments (i32, i32)`, `1 argument (f64)`, `no arguments`.
    fn takes(&self) -> String {
        match self.params.len() {
            0 => "no arguments".to_owned(),
            1 => format!("1 argument ({})", self.params[0]),
            count => format!("{count} arguments ({})", type_list(&self.params)),
        }
    }
}

/// Why an activation's parameters give the export-call ABI's function no arguments: the
/// activation's application error, a sentence that says what the function takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    /// The parameters have no `args`.
    #[error(
        "The export {export} takes {takes}, given as the parameters' args array; the \
         parameters have no args."
    )]
    Missing {
        /// The function.
        export: String,
        /// What it takes.
        takes: String,
    },
    /// `args` is not an array.
    #[error(
        "The export {export} takes {takes}, given as the parameters' args array; args is \
         {found}."
    )]
    NotAnArray {
        /// The function.
        export: String,
        /// What it takes.
        takes: String,
        /// What `args` is instead.
        found: String,
    },
    /// `args` has another length than the function has parameters.
    #[error("The export {export} takes {takes}; the parameters' args has {given}.")]
    Arity {
        /// The function.
        export: String,
        /// What it takes.
        takes: String,
        /// How many `args` has.
        given: usize,
    },
    /// An argument does not fit its parameter's type.
    #[error(
        "The export {export} takes an {ty} as argument {}; the parameters' args[{index}] is \
         {problem}.",
        index + 1
    )]
    Unfit {
        /// The function.
        export: String,
        /// The parameter's type.
        ty: NumberType,
        /// The argument's index in `args`.
        index: usize,
        /// What is wrong with it.
        problem: Unfit,
    },
}

/// What is wrong with an argument, as the end of [`ArgumentError::Unfit`]'s sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    /// It is not a number.
    #[error("{0}, not a number")]
    NotANumber(&'static str),
    /// It has a fraction, for an integer parameter.
    #[error("{0}, not an integer")]
    NotAnInteger(String),
    /// It is outside the type's range.
    #[error("{number}, which does not fit an {ty} ({range})")]
    OutOfRange {
        /// The number as given.
        number: String,
        /// The parameter's type.
        ty: NumberType,
        /// The range the type takes.
        range: String,
    },
}

/// An argument as a number of type `ty`, or what is wrong with it.
fn number_of(arg: &Value, ty: NumberType) -> Result<Number, Unfit> {
    let number = match arg {
        Value::Number(number) => number,
        Value::String(text) if matches!(ty, NumberType::F32 | NumberType::F64) => {
            let (_, special) = NON_FINITE
                .iter()
                .find(|(name, _)| name == text)
                .ok_or(Unfit::NotANumber("a string"))?;
            return Ok(match ty {
                NumberType::F32 => Number::F32(*special as f32),
                _ => Number::F64(*special),
            });
        }
        other => return Err(Unfit::NotANumber(json_type_name(other))),
    };
    // An integer type takes its signed and its unsigned range; `as` keeps the low bits, so
    // the unsigned half reads as the negative number of the same bits (4294967295 is -1).
    match ty {
        NumberType::I32 => integer_within(number, ty, i32::MIN.into(), u32::MAX.into())
            .map(|integer| Number::I32(integer as i32)),
        NumberType::I64 => integer_within(number, ty, i64::MIN.into(), u64::MAX.into())
            .map(|integer| Number::I64(integer as i64)),
        NumberType::F32 => {
            let narrowed = float_of(number) as f32;
            if narrowed.is_infinite() {
                Err(Unfit::OutOfRange {
                    number: number.to_string(),
                    ty,
                    range: format!("at most {:e} either side of 0", f32::MAX),
                })
            } else {
                Ok(Number::F32(narrowed))
            }
        }
        NumberType::F64 => Ok(Number::F64(float_of(number))),
    }
}

/// A JSON number as an integer in `min..=max`, or what is wrong with it.
fn integer_within(
    number: &serde_json::Number,
    ty: NumberType,
    min: i128,
    max: i128,
) -> Result<i128, Unfit> {
    let integer = if let Some(value) = number.as_i64() {
        Some(i128::from(value))
    } else if let Some(value) = number.as_u64() {
        Some(i128::from(value))
    } else {
        let value = float_of(number);
        if value.fract() != 0.0 {
            return Err(Unfit::NotAnInteger(number.to_string()));
        }
        // Within ±2^64 an integral f64 converts exactly; past it, no 64-bit type holds it.
        (value.abs() < 18_446_744_073_709_551_616.0).then_some(value as i128)
    };
    integer
        .filter(|integer| (min..=max).contains(integer))
        .ok_or_else(|| Unfit::OutOfRange {
            number: number.to_string(),
            ty,
            range: format!("{min} to {max}"),
        })
}

fn float_of(number: &serde_json::Number) -> f64 {
    number.as_f64().expect("a JSON number is an f64")
}

/// A running instance's memory and allocator, as the engine exposes them: what every host
/// side that hands the guest bytes needs (the SDK ABI, `http`.`get`).
pub trait GuestMemory: Send {
    /// The engine's error (a trap, an exit, a deadline). It also carries the ABI's own
    /// refusals, such as a result over the limit, for the engine to tell apart.
    type Error: Send + From<RunError>;

    /// Calls the guest allocator ([`abi::ALLOC_EXPORT`]).
    fn alloc(&mut self, len: u32) -> impl Future<Output = Result<u32, Self::Error>> + Send;

    /// Copies `bytes` into guest memory at `ptr`.
    fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), Self::Error>;

    /// Copies `len` bytes out of guest memory at `ptr`.
    fn read_memory(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, Self::Error>;
}

/// A fresh instance, as the engine exposes it to the host side of the guest ABIs.
pub trait GuestInstance: GuestMemory {
    /// Calls an export that takes and returns nothing (`_start`, `_initialize`).
    fn call_unit(&mut self, export: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Calls the SDK's main export ([`abi::MAIN_EXPORT`]).
    fn call_main(
        &mut self,
        ptr: u32,
        len: u32,
    ) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Calls the export-call ABI's function `export` with `args` (of its parameter types, as
    /// [`GuestAbi::detect`] found them) and returns its results, of the types `results`.
    fn call_export(
        &mut self,
        export: &str,
        args: &[Number],
        results: &[NumberType],
    ) -> impl Future<Output = Result<Vec<Number>, Self::Error>> + Send;
}

/// Runs one activation through the module's ABI. For the SDK ABI, returns the raw result
/// bytes; for the export-call ABI, the JSON result of calling its function with `args` (see
/// [`NumericExport::arguments`]); for the stdio ABI nothing, since the result is the last line
/// of stdout (and the parameters were its stdin).
pub async fn call_abi<G: GuestInstance>(
    guest: &mut G,
    guest_abi: &GuestAbi,
    params: &[u8],
    args: &[Number],
    result_limit: u64,
) -> Result<Vec<u8>, G::Error> {
    match guest_abi {
        GuestAbi::Stdio => {
            guest.call_unit(abi::COMMAND_START_EXPORT).await?;
            Ok(Vec::new())
        }
        GuestAbi::Sdk { reactor } => {
            if *reactor {
                guest.call_unit(abi::REACTOR_INIT_EXPORT).await?;
            }
            call_sdk(guest, params, result_limit).await
        }
        GuestAbi::ExportCall { export, reactor } => {
            if *reactor {
                guest.call_unit(abi::REACTOR_INIT_EXPORT).await?;
            }
            let results = guest
                .call_export(&export.name, args, &export.results)
                .await?;
            Ok(serde_json::to_vec(&export.result(&results)).expect("JSON values serialize"))
        }
    }
}

/// Runs the SDK ABI: parameters in, the raw result bytes out.
///
/// A result longer than `result_limit` bytes is refused with [`RunError::ResultTooLarge`]
/// before a byte of it is copied out of the instance, so a guest returning a huge region costs
/// the host nothing.
pub async fn call_sdk<G: GuestInstance>(
    guest: &mut G,
    params: &[u8],
    result_limit: u64,
) -> Result<Vec<u8>, G::Error> {
    let Ok(len) = u32::try_from(params.len()) else {
        return Err(RunError::Internal(format!(
            "the parameters are {} bytes, more than the 4 GiB a guest can address",
            params.len()
        ))
        .into());
    };
    let ptr = guest.alloc(len).await?;
    guest.write_memory(ptr, params)?;
    let packed = guest.call_main(ptr, len).await?;
    let (result_ptr, result_len) = abi::unpack_region(packed);
    if u64::from(result_len) > result_limit {
        return Err(RunError::ResultTooLarge {
            size: result_len.into(),
            limit: result_limit,
        }
        .into());
    }
    guest.read_memory(result_ptr, result_len)
}

/// Drives to its end a future that never waits: the host side of an ABI over an engine whose
/// calls are synchronous (every [`GuestInstance`] method of such an engine is ready at once).
///
/// # Panics
///
/// If the future waits, which is a bug in the engine's [`GuestInstance`].
pub fn complete_now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a synchronous engine's guest call waited"),
    }
}

/// Interprets the bytes an action returned as its result: a JSON object or array.
pub fn parse_result(bytes: &[u8]) -> Result<Value, RunError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => Ok(value),
        Ok(_) => Err(RunError::NotADictionary),
        Err(_) => Err(RunError::NoValidResponse),
    }
}

/// Follows a stdio-ABI action's stdout as it is written and keeps its last non-blank line,
/// the result, even when the logs before it are truncated. A line is kept up to the result
/// limit (and one byte for a `\r`); past it only its length is counted, which is all the
/// host needs to refuse it.
#[derive(Debug, Clone)]
pub struct ResultLine {
    /// The most bytes of a line kept.
    cap: usize,
    /// The line being written (bytes since the last newline), capped.
    current: Vec<u8>,
    /// How long the line being written really is, past the cap.
    current_len: usize,
    /// Where the line being written starts in the stream.
    current_start: usize,
    /// The last non-blank line that a newline ended.
    last_complete: Vec<u8>,
    /// How long that line really was.
    last_complete_len: usize,
    /// Where that line starts in the stream.
    last_complete_start: usize,
    /// How many bytes were written in all.
    written: usize,
}

impl ResultLine {
    /// A tracker for results of at most `result_limit` bytes.
    pub fn new(result_limit: u64) -> Self {
        Self {
            cap: usize::try_from(result_limit.saturating_add(1)).unwrap_or(usize::MAX),
            current: Vec::new(),
            current_len: 0,
            current_start: 0,
            last_complete: Vec::new(),
            last_complete_len: 0,
            last_complete_start: 0,
            written: 0,
        }
    }

    /// Feeds bytes written to stdout.
    pub fn push(&mut self, bytes: &[u8]) {
        let base = self.written;
        self.written = self.written.saturating_add(bytes.len());
        let mut segments = bytes.split(|&b| b == b'\n');
        // Where the next segment starts within `bytes`: just past a newline.
        let mut next_start = 0;
        if let Some(first) = segments.next() {
            extend_capped(&mut self.current, first, self.cap);
            self.current_len = self.current_len.saturating_add(first.len());
            next_start = first.len() + 1;
        }
        for segment in segments {
            let ended = std::mem::take(&mut self.current);
            let ended_len = std::mem::replace(&mut self.current_len, segment.len());
            let ended_start = std::mem::replace(&mut self.current_start, base + next_start);
            if !is_blank(&ended) {
                self.last_complete = ended;
                self.last_complete_len = ended_len;
                self.last_complete_start = ended_start;
            }
            extend_capped(&mut self.current, segment, self.cap);
            next_start += segment.len() + 1;
        }
    }

    /// The length in bytes of the result line (without its line ending), including what was
    /// written past the cap and not kept.
    pub fn line_len(&self) -> Option<usize> {
        let (kept, len) = if !is_blank(&self.current) {
            (&self.current, self.current_len)
        } else if !is_blank(&self.last_complete) {
            (&self.last_complete, self.last_complete_len)
        } else {
            return None;
        };
        Some(if len > kept.len() {
            len
        } else {
            trim_line(kept).len()
        })
    }

    /// The result line: the unfinished last line if it has content, else the last complete one.
    pub fn line(&self) -> Option<&[u8]> {
        if !is_blank(&self.current) {
            Some(trim_line(&self.current))
        } else if !is_blank(&self.last_complete) {
            Some(trim_line(&self.last_complete))
        } else {
            None
        }
    }

    /// How many bytes of the stream come before the result line: the logs. The whole stream
    /// when there is no result line.
    pub fn logs_len(&self) -> usize {
        if !is_blank(&self.current) {
            self.current_start
        } else if !is_blank(&self.last_complete) {
            self.last_complete_start
        } else {
            self.written
        }
    }
}

fn extend_capped(buffer: &mut Vec<u8>, bytes: &[u8], cap: usize) {
    let room = cap.saturating_sub(buffer.len());
    buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn trim_line(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A guest whose main returns a fixed region and that counts the bytes read out of it.
    struct FakeGuest {
        result: u64,
        bytes_read: u64,
    }

    impl GuestMemory for FakeGuest {
        type Error = RunError;

        async fn alloc(&mut self, _len: u32) -> Result<u32, RunError> {
            Ok(64)
        }

        fn write_memory(&mut self, _ptr: u32, _bytes: &[u8]) -> Result<(), RunError> {
            Ok(())
        }

        fn read_memory(&mut self, _ptr: u32, len: u32) -> Result<Vec<u8>, RunError> {
            self.bytes_read += u64::from(len);
            Ok(b"{}".repeat(len as usize / 2))
        }
    }

    impl GuestInstance for FakeGuest {
        async fn call_unit(&mut self, _export: &str) -> Result<(), RunError> {
            Ok(())
        }

        async fn call_main(&mut self, _ptr: u32, _len: u32) -> Result<u64, RunError> {
            Ok(self.result)
        }

        async fn call_export(
            &mut self,
            _export: &str,
            args: &[Number],
            _results: &[NumberType],
        ) -> Result<Vec<Number>, RunError> {
            // Answers its arguments, as an identity function would.
            Ok(args.to_vec())
        }
    }

    #[test]
    fn a_result_over_the_limit_is_refused_without_being_copied() {
        const MIB: u32 = 1024 * 1024;
        let mut guest = FakeGuest {
            result: abi::pack_region(4096, 100 * MIB),
            bytes_read: 0,
        };
        let outcome = complete_now(call_sdk(&mut guest, b"{}", MIB.into()));
        assert_eq!(
            outcome,
            Err(RunError::ResultTooLarge {
                size: (100 * MIB).into(),
                limit: MIB.into()
            })
        );
        assert_eq!(guest.bytes_read, 0, "nothing is copied out");
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "The action produced a response that exceeded the allowed length: 104857600 > \
             1048576 bytes."
        );
        // A result of exactly the limit is read.
        let mut guest = FakeGuest {
            result: abi::pack_region(4096, MIB),
            bytes_read: 0,
        };
        assert_eq!(
            complete_now(call_sdk(&mut guest, b"{}", MIB.into())).map(|bytes| bytes.len()),
            Ok(MIB as usize)
        );
        assert_eq!(guest.bytes_read, u64::from(MIB));
    }

    fn unit(name: &str) -> ExportedFunction {
        function(name, &[], &[])
    }

    fn function(name: &str, params: &[ValueType], results: &[ValueType]) -> ExportedFunction {
        ExportedFunction {
            name: name.to_owned(),
            ty: FunctionType {
                params: params.to_vec(),
                results: results.to_vec(),
            },
        }
    }

    fn export(params: &[NumberType], results: &[NumberType]) -> NumericExport {
        NumericExport {
            name: "f".to_owned(),
            params: params.to_vec(),
            results: results.to_vec(),
        }
    }

    fn export_call(export: NumericExport, reactor: bool) -> GuestAbi {
        GuestAbi::ExportCall {
            export: Arc::new(export),
            reactor,
        }
    }

    #[test]
    fn sdk_wins_over_start_and_reactor_is_noticed() {
        let sdk = [unit("__ow_alloc"), unit("__ow_main"), unit("_start")];
        assert_eq!(
            GuestAbi::detect(&sdk, "main"),
            Ok(GuestAbi::Sdk { reactor: false })
        );
        let reactor = [unit("_initialize"), unit("__ow_main"), unit("__ow_alloc")];
        assert_eq!(
            GuestAbi::detect(&reactor, "main"),
            Ok(GuestAbi::Sdk { reactor: true })
        );
        assert_eq!(
            GuestAbi::detect(&[unit("_start")], "main"),
            Ok(GuestAbi::Stdio)
        );
        assert_eq!(
            GuestAbi::detect(&[unit("__ow_main")], "main"),
            Err(InitError::NoEntryPoint {
                main: "main".to_owned(),
                functions: Vec::new()
            })
        );
    }

    #[test]
    fn main_naming_a_function_selects_the_export_call_abi_unless_the_module_is_an_sdk_one() {
        use ValueType::{ExternRef, I32, I64};
        let add = function("add", &[I32, I32], &[I64]);
        let numeric = export(&[NumberType::I32, NumberType::I32], &[NumberType::I64]);
        let numeric = NumericExport {
            name: "add".to_owned(),
            ..numeric
        };
        assert_eq!(
            GuestAbi::detect(std::slice::from_ref(&add), "add"),
            Ok(export_call(numeric.clone(), false))
        );
        // Over a WASI command's _start, and with a reactor's _initialize to run first.
        assert_eq!(
            GuestAbi::detect(&[unit("_start"), add.clone()], "add"),
            Ok(export_call(numeric.clone(), false))
        );
        assert_eq!(
            GuestAbi::detect(&[unit("_initialize"), add.clone()], "add"),
            Ok(export_call(numeric, true))
        );
        // An SDK module ignores main; main naming an entry point is no export call.
        let sdk = [unit("__ow_alloc"), unit("__ow_main"), add.clone()];
        assert_eq!(
            GuestAbi::detect(&sdk, "add"),
            Ok(GuestAbi::Sdk { reactor: false })
        );
        assert_eq!(
            GuestAbi::detect(&[unit("_start"), add.clone()], "_start"),
            Ok(GuestAbi::Stdio)
        );
        // A command whose main names nothing is a command.
        assert_eq!(
            GuestAbi::detect(&[unit("_start"), add.clone()], "main"),
            Ok(GuestAbi::Stdio)
        );
        assert_eq!(
            GuestAbi::detect(&[add.clone(), unit("_initialize")], "nope"),
            Err(InitError::NoEntryPoint {
                main: "nope".to_owned(),
                functions: vec!["add".to_owned()]
            })
        );
        let refs = function("refs", &[ExternRef], &[I32]);
        let refused = GuestAbi::detect(&[refs], "refs").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "The action's main names the export refs, of type (externref) -> (i32); the \
             export-call ABI calls only functions whose parameters and results are numbers \
             (i32, i64, f32, f64)."
        );
    }

    #[test]
    fn args_become_numbers_of_the_parameter_types() {
        use NumberType::{F32, F64, I32, I64};
        let all = export(&[I32, I64, F32, F64], &[]);
        assert_eq!(
            all.arguments(&json!({"args": [-1, 9_007_199_254_740_993_i64, 0.1, 2]})),
            Ok(vec![
                Number::I32(-1),
                Number::I64(9_007_199_254_740_993),
                Number::F32(0.1),
                Number::F64(2.0)
            ])
        );
        // The unsigned half of an integer type keeps its bits; an integral float is an integer.
        assert_eq!(
            all.arguments(&json!({"args": [4_294_967_295_u32, u64::MAX, "NaN", "-Infinity"]}))
                .map(|args| format!("{args:?}")),
            Ok("[I32(-1), I64(-1), F32(NaN), F64(-inf)]".to_owned())
        );
        assert_eq!(
            all.arguments(&json!({"args": [3.0, -4.0, 1, 1]})),
            Ok(vec![
                Number::I32(3),
                Number::I64(-4),
                Number::F32(1.0),
                Number::F64(1.0)
            ])
        );
        // No args for no parameters.
        assert_eq!(export(&[], &[]).arguments(&json!({})), Ok(vec![]));
        assert_eq!(export(&[], &[]).arguments(&json!({"args": []})), Ok(vec![]));
    }

    #[test]
    fn args_that_do_not_fit_say_what_the_export_takes() {
        use NumberType::{F32, F64, I32, I64};
        let refusal = |export: &NumericExport, params: Value| {
            export.arguments(&params).unwrap_err().to_string()
        };
        let add = NumericExport {
            name: "add".to_owned(),
            ..export(&[I32, I32], &[I32])
        };
        assert_eq!(
            refusal(&add, json!({"args": [1, 2, 3]})),
            "The export add takes 2 arguments (i32, i32); the parameters' args has 3."
        );
        assert_eq!(
            refusal(&add, json!({"param1": 1})),
            "The export add takes 2 arguments (i32, i32), given as the parameters' args array; \
             the parameters have no args."
        );
        assert_eq!(
            refusal(&add, json!([1, 2])),
            "The export add takes 2 arguments (i32, i32), given as the parameters' args array; \
             the parameters have no args."
        );
        assert_eq!(
            refusal(&add, json!({"args": "1 2"})),
            "The export add takes 2 arguments (i32, i32), given as the parameters' args array; \
             args is a string."
        );
        assert_eq!(
            refusal(&add, json!({"args": [1, "2"]})),
            "The export add takes an i32 as argument 2; the parameters' args[1] is a string, \
             not a number."
        );
        assert_eq!(
            refusal(&add, json!({"args": [null, 2]})),
            "The export add takes an i32 as argument 1; the parameters' args[0] is null, not a \
             number."
        );
        assert_eq!(
            refusal(&add, json!({"args": [2.5, 2]})),
            "The export add takes an i32 as argument 1; the parameters' args[0] is 2.5, not an \
             integer."
        );
        assert_eq!(
            refusal(&add, json!({"args": [1, 4_294_967_296_u64]})),
            "The export add takes an i32 as argument 2; the parameters' args[1] is 4294967296, \
             which does not fit an i32 (-2147483648 to 4294967295)."
        );
        assert_eq!(
            refusal(&add, json!({"args": [-2_147_483_649_i64, 0]})),
            "The export add takes an i32 as argument 1; the parameters' args[0] is -2147483649, \
             which does not fit an i32 (-2147483648 to 4294967295)."
        );
        let wide = export(&[I64], &[]);
        assert_eq!(
            refusal(&wide, json!({"args": [1e20]})),
            "The export f takes an i64 as argument 1; the parameters' args[0] is 1e+20, which \
             does not fit an i64 (-9223372036854775808 to 18446744073709551615)."
        );
        let single = export(&[F32], &[]);
        assert_eq!(
            refusal(&single, json!({"args": [1e39]})),
            "The export f takes an f32 as argument 1; the parameters' args[0] is 1e+39, which \
             does not fit an f32 (at most 3.4028235e38 either side of 0)."
        );
        assert_eq!(
            refusal(&export(&[F64], &[]), json!({"args": ["1.5"]})),
            "The export f takes an f64 as argument 1; the parameters' args[0] is a string, not \
             a number."
        );
        assert_eq!(
            refusal(&export(&[], &[]), json!({"args": [1]})),
            "The export f takes no arguments; the parameters' args has 1."
        );
        assert_eq!(
            refusal(&export(&[I64], &[]), json!({"args": {}})),
            "The export f takes 1 argument (i64), given as the parameters' args array; args is \
             an object."
        );
    }

    #[test]
    fn results_are_one_value_an_array_of_several_or_nothing() {
        let result = |results: &[Number]| export(&[], &[]).result(results);
        assert_eq!(result(&[]), json!({}));
        assert_eq!(result(&[Number::I32(802_366)]), json!({"result": 802_366}));
        assert_eq!(
            result(&[Number::I32(-1), Number::I64(i64::MIN)]),
            json!({"result": [-1, i64::MIN]})
        );
        assert_eq!(
            result(&[Number::F32(0.1), Number::F64(0.1), Number::F64(2.0)]),
            json!({"result": [0.1, 0.1, 2.0]})
        );
        assert_eq!(
            result(&[
                Number::F32(f32::NAN),
                Number::F64(f64::INFINITY),
                Number::F32(f32::NEG_INFINITY)
            ]),
            json!({"result": ["NaN", "Infinity", "-Infinity"]})
        );
    }

    #[test]
    fn an_export_call_passes_its_args_and_answers_its_results() {
        let mut guest = FakeGuest {
            result: 0,
            bytes_read: 0,
        };
        let abi = export_call(export(&[NumberType::I32], &[NumberType::I32]), true);
        let answer = complete_now(call_abi(&mut guest, &abi, b"", &[Number::I32(7)], 0));
        assert_eq!(
            answer.map(|bytes| text(&bytes)),
            Ok(r#"{"result":7}"#.to_owned())
        );
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn results_must_be_objects_or_arrays() {
        assert_eq!(parse_result(br#"{"a":1}"#), Ok(json!({"a": 1})));
        assert_eq!(parse_result(b"[1,2]"), Ok(json!([1, 2])));
        assert_eq!(parse_result(b"42"), Err(RunError::NotADictionary));
        assert_eq!(parse_result(b"\"x\""), Err(RunError::NotADictionary));
        assert_eq!(parse_result(b"not json"), Err(RunError::NoValidResponse));
        assert_eq!(parse_result(b""), Err(RunError::NoValidResponse));
    }

    fn result_line_of(chunks: &[&[u8]]) -> (Option<Vec<u8>>, Vec<u8>) {
        let mut tracker = ResultLine::new(1024 * 1024);
        let mut stdout = Vec::new();
        for chunk in chunks {
            tracker.push(chunk);
            stdout.extend_from_slice(chunk);
        }
        (
            tracker.line().map(<[u8]>::to_vec),
            stdout[..tracker.logs_len()].to_vec(),
        )
    }

    #[test]
    fn the_last_non_blank_line_is_the_result_and_the_rest_are_logs() {
        let (line, logs) = result_line_of(&[b"log 1\nlog 2\n{\"r\":1}\n"]);
        assert_eq!(line.as_deref(), Some(&b"{\"r\":1}"[..]));
        assert_eq!(logs, b"log 1\nlog 2\n");
        let (line, logs) = result_line_of(&[b"{\"r\":", b"1}"]);
        assert_eq!(line.as_deref(), Some(&b"{\"r\":1}"[..]));
        assert_eq!(logs, b"");
        let (line, logs) = result_line_of(&[b"a\n{}\n", b"\n\n"]);
        assert_eq!(line.as_deref(), Some(&b"{}"[..]));
        assert_eq!(logs, b"a\n");
        let (line, logs) = result_line_of(&[b"", b"\n\n"]);
        assert_eq!(line, None);
        assert_eq!(logs, b"\n\n");
    }

    #[test]
    fn the_result_line_length_counts_what_the_cap_dropped() {
        const LIMIT: u64 = 4 * 1024 * 1024;
        let mut tracker = ResultLine::new(LIMIT);
        tracker.push(b"log\n{\"a\":1}\r\n");
        assert_eq!(tracker.line_len(), Some(7));
        let mut tracker = ResultLine::new(LIMIT);
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..6 {
            tracker.push(&chunk);
        }
        assert_eq!(
            tracker.line().map(<[u8]>::len),
            Some(LIMIT as usize + 1),
            "a byte past the limit is kept, no more"
        );
        assert_eq!(tracker.line_len(), Some(6 * 1024 * 1024));
        tracker.push(b"\n\n");
        assert_eq!(tracker.line_len(), Some(6 * 1024 * 1024));
        tracker.push(b"{}");
        assert_eq!(tracker.line_len(), Some(2));
        assert_eq!(ResultLine::new(LIMIT).line_len(), None);
        // A line of exactly the limit, ended by \r\n, is kept whole.
        let mut tracker = ResultLine::new(4);
        tracker.push(b"[12]\r\n");
        assert_eq!(
            (tracker.line(), tracker.line_len()),
            (Some(&b"[12]"[..]), Some(4))
        );
    }

    #[test]
    fn a_result_line_survives_without_the_logs_before_it() {
        let mut tracker = ResultLine::new(1024 * 1024);
        for _ in 0..1000 {
            tracker.push(b"a log line that is dropped\n");
        }
        tracker.push(b"{\"ok\":true}\r\n");
        assert_eq!(tracker.line(), Some(&b"{\"ok\":true}"[..]));
        // The logs are everything before it, however little of them a capture kept.
        assert_eq!(
            tracker.logs_len(),
            1000 * b"a log line that is dropped\n".len()
        );
    }
}
