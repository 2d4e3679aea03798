//! The conformance suite every engine is held to, run on Wasmer with its two gaps, and what is
//! Wasmer's own: the imports it provides, and its precompiled artifacts.

use crate::{Wasmer, WasmerEngine, artifact, http, precompile, stop::Watch};
use ow_common::code::{ModuleCode, ModuleFormat};
use ow_common::host::Engine;
use ow_common::host::abi::GuestAbi;
use ow_common::host::admission::{WASI_P1_FUNCTIONS, WASI_P1_MODULE};
use ow_common::runtime::{ActionConfig, Activation, EngineConfig, InitError, WasmRuntime};
use ow_common::testing::{ow_wasm_action_artifacts as artifacts, runtime};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmer::{Imports, Store};
use wasmer_wasix::{WasiEnv, WasiFunctionEnv, generate_import_object_snapshot1_of};

ow_common::conformance_suite! {
    engine: |config| Arc::new(Wasmer::start(config).expect("the engine builds")),
    gaps: [
        sleeping_activations_hold_no_thread => {
            why: "a Wasmer store is not Send and its calls block: each sleeping instance holds \
                  one of the engine's at most 512 threads",
            fails_with: "waiting activations held threads",
        },
        waiting_in_http_get_holds_no_thread => {
            why: "a Wasmer host function blocks its instance's thread (async ones cannot be \
                  suspended two to a thread with host interrupts on): each waiting instance \
                  holds a thread",
            fails_with: "waiting activations held threads",
        },
    ],
}

impl WasmerEngine {
    /// A WASI environment in `store` with nothing in it. Call inside the engine's runtime.
    fn empty_wasi_env(&self, store: &mut Store) -> WasiFunctionEnv {
        let env = WasiEnv::builder("action")
            .runtime(self.shared.wasi_runtime.clone())
            .fs(self.shared.empty_fs.clone())
            .build()
            .expect("a WASI environment builds");
        WasiFunctionEnv::new(store, env)
    }

    /// Every `(module, name)` pair an instance of a module importing all of WASI is given, with
    /// or without `http`.`get`.
    fn provided_imports(&self, net_access: bool) -> HashSet<(String, String)> {
        let _context = self.shared.threads.handle().enter();
        let mut store = Store::new(crate::compiler::module_engine());
        let env = self.empty_wasi_env(&mut store);
        let mut imports: Imports =
            generate_import_object_snapshot1_of(&mut store, &env.env, &|_| true);
        if net_access {
            http::define(
                &mut store,
                &mut imports,
                Arc::new(Watch::default()),
                Instant::now(),
            );
        }
        imports
            .iter()
            .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
            .collect()
    }
}

#[test]
fn every_admitted_import_is_provided_and_http_get_only_where_granted() {
    let wasmer = Wasmer::start(&EngineConfig::default()).expect("the engine builds");
    let wasi: HashSet<(String, String)> = WASI_P1_FUNCTIONS
        .iter()
        .map(|name| (WASI_P1_MODULE.to_owned(), (*name).to_owned()))
        .collect();
    let provided = wasmer.engine().provided_imports(false);
    let missing: Vec<_> = wasi.difference(&provided).collect();
    assert!(missing.is_empty(), "admitted but not provided: {missing:?}");
    let http_get = ("http".to_owned(), "get".to_owned());
    assert!(!provided.contains(&http_get));
    assert!(wasmer.engine().provided_imports(true).contains(&http_get));
}

#[test]
fn an_instance_is_given_the_wasi_functions_its_module_imports_and_no_others() {
    let wasmer = Wasmer::start(&EngineConfig::default()).expect("the engine builds");
    let engine = wasmer.engine();
    let module = Arc::new(
        engine
            .compile(&artifacts::read(artifacts::ADD))
            .expect("add compiles"),
    );
    let imported: HashSet<(String, String)> = engine
        .interface(&module)
        .imports
        .into_iter()
        .filter(|(module, _)| module == WASI_P1_MODULE)
        .collect();
    assert!(imported.contains(&(WASI_P1_MODULE.to_owned(), "fd_write".to_owned())));
    assert!(imported.len() < WASI_P1_FUNCTIONS.len());
    let linked = engine
        .link(
            &module,
            &GuestAbi::Sdk { reactor: false },
            &ActionConfig::default(),
        )
        .expect("add links");

    let _context = engine.shared.threads.handle().enter();
    let mut store = Store::new(crate::compiler::module_engine());
    let env = engine.empty_wasi_env(&mut store);
    let given: HashSet<(String, String)> = linked
        .action
        .wasi_functions(&mut store, &env)
        .iter()
        .map(|(module, name, _)| (module.to_owned(), name.to_owned()))
        .collect();
    assert_eq!(given, imported);
}

async fn run_once(engine: &dyn WasmRuntime, code: Vec<u8>) -> Result<serde_json::Value, String> {
    let action = engine
        .prepare(ModuleCode::new(code), ActionConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    let activation = Activation {
        params: json!({"param1": 2, "param2": 3}),
        env: Vec::new(),
        deadline: Instant::now() + Duration::from_secs(60),
        time_limit: Duration::from_secs(60),
    };
    action
        .run(activation)
        .await
        .outcome
        .map_err(|e| e.to_string())
}

#[test]
fn a_precompiled_artifact_runs_when_trusted_and_a_broken_one_is_refused_with_why() {
    let artifact = precompile(&artifacts::read(artifacts::ADD)).expect("add precompiles");
    assert_eq!(ModuleFormat::sniff(&artifact), ModuleFormat::WasmerArtifact);
    assert_eq!(&artifact[16..24], b"WASMER\0\0");
    assert_eq!(
        u32::from_le_bytes(artifact[24..28].try_into().unwrap()),
        artifact::FORMAT_VERSION
    );
    runtime().block_on(async {
        let mut config = EngineConfig::default();
        config.trust_precompiled(true);
        let trusting = Wasmer::start(&config).expect("the engine builds");
        assert_eq!(
            run_once(&trusting, artifact.clone()).await,
            Ok(json!({"result": 5}))
        );
        // The bytes of a zip entry or a request body start anywhere: a copy at an odd
        // address loads the same.
        let mut shifted = vec![0u8; artifact.len() + 1];
        shifted[1..].copy_from_slice(&artifact);
        assert_eq!(
            run_once(&trusting, shifted[1..].to_vec()).await,
            Ok(json!({"result": 5}))
        );

        let mut truncated = artifact.clone();
        truncated.truncate(artifact.len() / 2);
        let refused = run_once(&trusting, truncated).await.unwrap_err();
        assert!(refused.contains("it is truncated"), "{refused}");
        // The archive's root sits at its end: garbage there fails the layout check.
        let mut corrupt = artifact.clone();
        let end = corrupt.len();
        corrupt[end - 16..].fill(0xff);
        let refused = run_once(&trusting, corrupt).await.unwrap_err();
        assert!(
            refused.contains("its compiled code is corrupt"),
            "{refused}"
        );
        let mut other_version = artifact.clone();
        other_version[24] = 23;
        let refused = run_once(&trusting, other_version).await.unwrap_err();
        assert!(refused.contains("artifact format 23"), "{refused}");

        // Untrusted, the same artifact is refused before Wasmer sees it.
        let untrusting = Wasmer::start(&EngineConfig::default()).expect("the engine builds");
        let refused = untrusting
            .prepare(ModuleCode::new(artifact), ActionConfig::default())
            .await
            .unwrap_err();
        assert!(
            matches!(refused, InitError::UntrustedArtifact { .. }),
            "{refused:?}"
        );
    });
}
