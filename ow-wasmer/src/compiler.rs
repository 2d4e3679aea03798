//! How modules are compiled: a Wasmer engine of their own (Cranelift), and a middleware that
//! lets compiled code tell the host when the table cap refused a growth.
//!
//! One engine per module, not one per process: a Wasmer engine never frees the code it
//! compiled or loaded until the engine itself goes, and it holds one lock for a whole compile
//! that every host-function creation also takes. With an engine per module, freeing a module
//! from the cache frees its code, and a compile stalls no running activation.
//!
//! Tables are capped by lowering their maximum (see [`crate::vm::InstanceTunables`]), so a
//! refused `table.grow` is the plain -1 of the Wasm spec, which Wasmer reports nowhere. The
//! [`TableGrowthWatch`] middleware adds two globals to each module whose tables the cap binds
//! and, after every `table.grow` on such a table, sets the exported one when the growth
//! returned -1.

use ow_common::runtime::{InitError, MAX_TABLE_ELEMENTS};
use std::sync::{Arc, Mutex};
use wasmer::sys::wasmparser::Operator;
use wasmer::sys::{
    CompilerConfig, Cranelift, EngineBuilder, FunctionMiddleware, MiddlewareReaderState,
    ModuleMiddleware,
};
use wasmer::{
    AsStoreMut, Engine, ExportIndex, GlobalInit, GlobalType, Instance, LocalFunctionIndex,
    ModuleInfo, Mutability, Type, Value,
};
use wasmer_types::entity::EntityRef;
use wasmer_types::{CompileError, GlobalIndex, MiddlewareError};

/// The most elements a table may hold, as Wasmer counts them.
pub(crate) const TABLE_CAP: u32 = {
    assert!(MAX_TABLE_ELEMENTS <= u32::MAX as usize);
    MAX_TABLE_ELEMENTS as u32
};

/// The global through which an instance says that the cap refused a growth of one of its
/// tables (1) or not (0).
pub(crate) const TABLE_GROWTH_REFUSED_EXPORT: &str = "__ow_wasmer_table_growth_refused";

/// Compiles `wasm` in an engine of its own: a module that does not compile is the module's
/// fault, in Wasmer's words; a compiler short of resources (memory for the code it made) is
/// the executor's.
pub(crate) fn compile(wasm: &[u8]) -> Result<(wasmer::Module, Engine), InitError> {
    let engine = module_engine();
    match wasmer::Module::from_binary(&engine, wasm) {
        Ok(module) => Ok((module, engine)),
        Err(CompileError::Resource(reason)) => Err(InitError::Engine(format!(
            "the compiler ran out of resources: {reason}"
        ))),
        Err(refused) => Err(InitError::InvalidModule(refused.to_string())),
    }
}

/// A new engine for one module: Cranelift for the host CPU, with the table-growth watch.
/// Artifacts are only compatible with engines built this way, which is why
/// [`crate::precompile`] uses it too.
pub(crate) fn module_engine() -> Engine {
    let mut cranelift = Cranelift::new();
    cranelift.push_middleware(Arc::new(TableGrowthWatch::default()));
    Engine::from(EngineBuilder::new(cranelift))
}

/// Whether the cap refused a growth of one of `instance`'s tables.
pub(crate) fn table_growth_refused(store: &mut impl AsStoreMut, instance: &Instance) -> bool {
    instance
        .exports
        .get_global(TABLE_GROWTH_REFUSED_EXPORT)
        .is_ok_and(|refused| refused.get(store) == Value::I32(1))
}

/// Instruments `table.grow` on the tables the cap binds. One per compile: it remembers the
/// globals it added to the module being compiled.
#[derive(Debug, Default)]
pub(crate) struct TableGrowthWatch {
    watched: Mutex<Option<Arc<Watched>>>,
}

/// What the function middlewares of one module need.
#[derive(Debug)]
struct Watched {
    /// Whether the cap binds each table: its declared maximum is above the cap, or absent.
    capped_tables: Vec<bool>,
    /// Holds the result of the last `table.grow` while it is compared with -1.
    last_result: u32,
    /// The exported flag.
    refused: u32,
}

impl ModuleMiddleware for TableGrowthWatch {
    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let capped_tables: Vec<bool> = info
            .tables
            .values()
            .map(|table| table.maximum.is_none_or(|max| max > TABLE_CAP))
            .collect();
        let watched = if capped_tables.contains(&true)
            && !info.exports.contains_key(TABLE_GROWTH_REFUSED_EXPORT)
        {
            let mut add_global = || {
                let index = info
                    .globals
                    .push(GlobalType::new(Type::I32, Mutability::Var));
                info.global_initializers.push(GlobalInit::I32Const(0));
                index
            };
            let last_result = add_global();
            let refused = add_global();
            info.exports.insert(
                TABLE_GROWTH_REFUSED_EXPORT.to_owned(),
                ExportIndex::Global(refused),
            );
            let index = |global: GlobalIndex| {
                u32::try_from(global.index()).map_err(|_| {
                    MiddlewareError::new("TableGrowthWatch", "the module has too many globals")
                })
            };
            Some(Arc::new(Watched {
                capped_tables,
                last_result: index(last_result)?,
                refused: index(refused)?,
            }))
        } else {
            None
        };
        *self.watched.lock().expect("table watch lock") = watched;
        Ok(())
    }

    fn generate_function_middleware<'a>(
        &self,
        _: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        Box::new(FunctionTableGrowthWatch {
            watched: self.watched.lock().expect("table watch lock").clone(),
        })
    }
}

/// [`TableGrowthWatch`] for one function.
#[derive(Debug)]
struct FunctionTableGrowthWatch {
    watched: Option<Arc<Watched>>,
}

impl<'a> FunctionMiddleware<'a> for FunctionTableGrowthWatch {
    fn feed(
        &mut self,
        operator: Operator<'a>,
        state: &mut MiddlewareReaderState<'a>,
    ) -> Result<(), MiddlewareError> {
        let Some(watched) = &self.watched else {
            state.push_operator(operator);
            return Ok(());
        };
        match operator {
            Operator::TableGrow { table }
                if watched.capped_tables.get(table as usize) == Some(&true) =>
            {
                let (last, refused) = (watched.last_result, watched.refused);
                // result → last; refused |= (last == -1); result again.
                state.extend([
                    Operator::TableGrow { table },
                    Operator::GlobalSet { global_index: last },
                    Operator::GlobalGet { global_index: last },
                    Operator::I32Const { value: -1 },
                    Operator::I32Eq,
                    Operator::GlobalGet {
                        global_index: refused,
                    },
                    Operator::I32Or,
                    Operator::GlobalSet {
                        global_index: refused,
                    },
                    Operator::GlobalGet { global_index: last },
                ]);
            }
            operator => state.push_operator(operator),
        }
        Ok(())
    }
}
