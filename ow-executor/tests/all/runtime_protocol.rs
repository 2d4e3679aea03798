//! Every rule of the action container protocol (PROTOCOL.md §1) in `runtime` mode.

use crate::gaps::stop_margin;
use crate::harness::{Answer, Executor, epoch_millis_from_now, init_body, sentinels, zip};
use crate::metrics::{sample, scrape};
use ow_common::protocol::sentences::LOG_SENTINEL;
use ow_executor::engines::EngineKind;
use ow_wasm_action_artifacts as artifacts;
use serde_json::json;
use std::time::{Duration, Instant};

fn init_then_run_answers_the_result_with_a_content_length(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::ADD);
    let answer = executor.run(json!({"param1": 2, "param2": 2}));
    assert_eq!((answer.status, &answer.body), (200, &json!({"result": 4})));
    let expected_len = serde_json::to_vec(&answer.body).unwrap().len();
    assert_eq!(answer.content_length, Some(expected_len));
}

fn the_executor_prints_nothing_but_activation_logs_and_sentinels(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::ADD);
    executor.run(json!({"param1": 1, "param2": 2}));
    let (stdout, stderr) = executor.logs_after(1);
    assert_eq!(stdout, format!("{LOG_SENTINEL}\n"));
    assert_eq!(stderr, format!("{LOG_SENTINEL}\n"));
}

fn run_before_init_is_refused(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.run(json!({}));
    assert_eq!(
        (answer.status, &answer.body),
        (403, &json!({"error": "System not initialized."}))
    );
}

fn a_second_init_is_refused_with_a_line_on_stderr_and_no_sentinel(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::ADD);
    let answer = executor.init_module(&artifacts::read(artifacts::ECHO));
    assert_eq!(
        (answer.status, &answer.body),
        (
            403,
            &json!({"error": "Cannot initialize the action more than once."})
        )
    );
    // The first action is still the one that runs.
    let answer = executor.run(json!({"param1": 1, "param2": 1}));
    assert_eq!(answer.body, json!({"result": 2}));
    let (stdout, stderr) = executor.logs_after(1);
    assert!(
        stderr.contains("Cannot initialize the action more than once."),
        "{stderr}"
    );
    assert_eq!((sentinels(&stdout), sentinels(&stderr)), (1, 1));
}

fn a_second_init_is_refused_as_such_whatever_its_fields_hold(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::ADD);
    // Whatever its fields hold: the Node.js runtime looks at none of them.
    for body in [
        json!({"value": {"code": ""}}),
        json!({"value": {"code": 5}}),
        json!({"value": 5}),
        json!({"value": {"code": "AGFzbQ==", "main": 7}}),
    ] {
        let answer = executor.post("/init", &body);
        assert_eq!(
            (answer.status, answer.body),
            (
                403,
                json!({"error": "Cannot initialize the action more than once."})
            ),
            "{body}"
        );
    }
    assert_eq!(
        executor.run(json!({"param1": 1, "param2": 1})).body,
        json!({"result": 2})
    );
}

fn init_without_code_is_refused_and_leaves_the_container_uninitialized(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    for body in [
        // No value at all is no code, as the Node.js runtime answers it.
        json!({}),
        json!({"value": null}),
        json!({"value": {"main": "main"}}),
        json!({"value": {"code": ""}}),
        json!({"value": {"code": null}}),
    ] {
        let answer = executor.post("/init", &body);
        assert_eq!(
            (answer.status, &answer.body),
            (403, &json!({"error": "Missing main/no code to execute."})),
            "{body}"
        );
    }
    executor.init_ok(artifacts::ADD);
}

fn undecodable_code_fails_init_with_502_and_one_sentinel_per_stream(engine: EngineKind) {
    let cases: [(&[u8], &str); 3] = [
        (b"function main() { return {}; }", "text"),
        (
            b"\0asm\x01\0\0\0\x01\x05garbage",
            "not a valid WebAssembly module",
        ),
        (b"\0asm\x0d\0\x01\0", "WebAssembly component"),
    ];
    for (code, expected) in cases {
        let executor = Executor::runtime(engine, &[]);
        let answer = executor.post("/init", &init_body(code));
        assert_eq!(answer.status, 502, "{answer:?}");
        let error = answer.body["error"].as_str().unwrap();
        assert!(
            error.contains(expected),
            "{error:?} should mention {expected:?}"
        );
        let (stdout, stderr) = executor.logs_after(1);
        assert_eq!(
            (stdout.as_str(), stderr.as_str()),
            (&*format!("{LOG_SENTINEL}\n"), &*format!("{LOG_SENTINEL}\n"))
        );
        // A failed container refuses to run.
        assert_eq!(executor.run(json!({})).status, 403);
    }
}

fn bad_base64_and_bad_zips_fail_init_with_a_sentence(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.post(
        "/init",
        &json!({"value": {"code": "%%% not base64 %%%", "binary": true}}),
    );
    answer.assert_error(502, "base64");

    let executor = Executor::runtime(engine, &[]);
    let readme = ow_common::code::zip_module("README.md", b"# not a module").unwrap();
    let answer = executor.post("/init", &init_body(&readme));
    answer.assert_error(502, "no WebAssembly module");
}

fn malformed_json_is_a_400_on_both_routes(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    for path in ["/init", "/run"] {
        let answer = executor.post_raw(path, b"{\"value\": ", true);
        answer.assert_error(400, "not valid JSON");
    }
    // A body cut short after a field of the wrong type is still malformed JSON first.
    let answer = executor.post_raw("/init", b"{\"value\": {\"code\": 5}", true);
    answer.assert_error(400, "not valid JSON");
    let answer = executor.post("/init", &json!({"value": {"code": 5}}));
    answer.assert_error(400, "does not match");
    let answer = executor.post("/run", &json!({"value": "a string"}));
    answer.assert_error(400, "must be a JSON object or array, not a string");
    let answer = executor.post("/run", &json!([{"value": {}}]));
    answer.assert_error(400, "must be a JSON object with the parameters");
    // The container is still usable.
    executor.init_ok(artifacts::ADD);
}

fn content_type_is_not_required(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let body = serde_json::to_vec(&init_body(&zip(&artifacts::read(artifacts::ADD)))).unwrap();
    assert_eq!(executor.post_raw("/init", &body, false).status, 200);
    let answer = executor.post_raw("/run", br#"{"value": {"param1": 3, "param2": 4}}"#, false);
    assert_eq!((answer.status, answer.body), (200, json!({"result": 7})));
}

/// The base64 of `add`'s zip, as an `/init` body carries it.
fn add_code() -> String {
    let init = init_body(&zip(&artifacts::read(artifacts::ADD)));
    init["value"]["code"].as_str().unwrap().to_owned()
}

/// Asserts that `body`, the text of an `/init` body for `add`, inits a container that adds.
fn assert_inits_add(engine: EngineKind, body: &str) {
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.post_raw("/init", body.as_bytes(), true);
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = executor.post("/run", &json!({"value": {"param1": 2, "param2": 2}}));
    assert_eq!(answer.body, json!({"result": 4}));
}

fn code_with_escaped_slashes_inits(engine: EngineKind) {
    // Some JSON encoders write every `/` of the base64 as `\/`.
    let code = add_code();
    assert!(code.contains('/'), "the test needs a slash to escape");
    let escaped = code.replace('/', "\\/");
    assert_inits_add(engine, &format!(r#"{{"value": {{"code": "{escaped}"}}}}"#));
}

fn a_field_sent_twice_counts_once_the_last_as_in_json_parse(engine: EngineKind) {
    let code = add_code();
    let body = format!(r#"{{"value": {{"code": "%%% not base64", "code": "{code}"}}}}"#);
    assert_inits_add(engine, &body);
}

fn parameters_and_results_pass_verbatim_objects_and_arrays(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::ECHO);
    let params = json!({"nested": {"list": [1, "two", null, 3.5]}, "unicode": "ünïcødé"});
    assert_eq!(executor.run(params.clone()).body, params);
    let answer = executor.run(json!([1, 2, 3]));
    assert_eq!((answer.status, answer.body), (200, json!([1, 2, 3])));
    // Missing and null parameters both mean {}.
    assert_eq!(executor.post("/run", &json!({})).body, json!({}));
    assert_eq!(
        executor.post("/run", &json!({"value": null})).body,
        json!({})
    );
}

fn an_application_error_is_still_200(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::ERROR);
    let answer = executor.run(json!({"reason": "no such user"}));
    assert_eq!(
        (answer.status, answer.body),
        (200, json!({"error": "no such user"}))
    );
}

fn the_result_is_answered_with_its_keys_in_the_actions_order(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::wat::UNSORTED_RESULT);
    let answer = executor.http(
        "POST",
        "/run",
        &[("Content-Type", "application/json")],
        br#"{"value": {}}"#,
    );
    assert_eq!(
        (answer.status, answer.text()),
        (
            200,
            r#"{"zeta":1,"alpha":[{"b":2,"a":1}],"mid":{"y":1,"x":2}}"#.to_owned()
        )
    );
}

fn a_result_that_is_not_a_dictionary_is_a_502(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::wat::NOT_A_DICTIONARY);
    let answer = executor.run(json!({}));
    assert_eq!(
        (answer.status, answer.body),
        (
            502,
            json!({"error": "The action did not return a dictionary or array."})
        )
    );
    let (stdout, stderr) = executor.logs_after(1);
    assert_eq!((sentinels(&stdout), sentinels(&stderr)), (1, 1));
}

/// Runs `module` twice: both runs must be a 502 with the platform's sentence. Returns the
/// executor's stdout and stderr after both.
fn two_runs_without_a_valid_response(engine: EngineKind, module: &str) -> (String, String) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(module);
    for _ in 0..2 {
        let answer = executor.run(json!({}));
        assert_eq!(
            (answer.status, answer.body),
            (
                502,
                json!({"error": "The action did not produce a valid response and exited unexpectedly."})
            )
        );
    }
    let (stdout, stderr) = executor.logs_after(2);
    assert_eq!((sentinels(&stdout), sentinels(&stderr)), (2, 2));
    (stdout, stderr)
}

fn a_trap_is_a_502_with_the_platform_sentence_and_the_trap_in_the_logs(engine: EngineKind) {
    let (_, stderr) = two_runs_without_a_valid_response(engine, artifacts::wat::UNREACHABLE);
    // Each activation's last stderr line is the trap's detail, in the engine's words.
    let blocks: Vec<&str> = stderr
        .split_terminator(&format!("{LOG_SENTINEL}\n"))
        .collect();
    assert_eq!(blocks.len(), 2, "{stderr}");
    for block in blocks {
        let last = block.lines().last().unwrap_or_default();
        assert!(last.starts_with("The action trapped: "), "{stderr}");
    }
}

fn an_exit_with_a_code_is_a_502_with_the_code_in_the_logs(engine: EngineKind) {
    let (stdout, stderr) = two_runs_without_a_valid_response(engine, artifacts::wat::EXIT_CODE);
    // A command that failed answered nothing: its last stdout line is a log like the others.
    assert_eq!(stdout.matches("config missing\n").count(), 2, "{stdout}");
    assert_eq!(
        stderr.matches("The action exited with code 3.\n").count(),
        2,
        "{stderr}"
    );
}

fn modules_that_cannot_run_here_are_refused_at_init_with_what_is_wrong(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.init_module(&artifacts::read(artifacts::wat::UNKNOWN_IMPORT));
    answer.assert_error(502, "env.launch_missiles");

    let executor = Executor::runtime(engine, &[]);
    let answer = executor.init_module(&artifacts::read(artifacts::wat::NO_ENTRY_POINT));
    answer.assert_error(502, "__ow_main");
}

fn logs_go_to_their_stream_before_the_sentinels_after_every_activation(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::LOG);
    executor.run(json!({"lines": 2, "message": "first"}));
    executor.run(json!({"lines": 1, "message": "second"}));
    let (stdout, stderr) = executor.logs_after(2);
    assert_eq!(
        stdout,
        format!(
            "stdout 0: first\nstdout 1: first\n{LOG_SENTINEL}\nstdout 0: second\n{LOG_SENTINEL}\n"
        )
    );
    assert_eq!(
        stderr,
        format!(
            "stderr 0: first\nstderr 1: first\n{LOG_SENTINEL}\nstderr 0: second\n{LOG_SENTINEL}\n"
        )
    );
}

fn concurrent_activations_run_at_once_and_keep_their_log_blocks_whole(engine: EngineKind) {
    let executor = std::sync::Arc::new(Executor::runtime(engine, &[]));
    executor.init_ok(artifacts::LOG);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let executor = executor.clone();
            std::thread::spawn(move || {
                let answer =
                    executor.run(json!({"lines": 50, "message": format!("activation {i}")}));
                assert_eq!(answer.status, 200);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let (stdout, _) = executor.logs_after(8);
    // Each block between sentinels comes from one activation only.
    for block in stdout
        .split(&format!("{LOG_SENTINEL}\n"))
        .filter(|b| !b.is_empty())
    {
        let first = block.lines().next().unwrap();
        let owner = first.split(": ").nth(1).unwrap();
        assert!(
            block.lines().all(|line| line.ends_with(owner)),
            "interleaved block: {block}"
        );
        assert_eq!(block.lines().count(), 50);
    }
}

fn sleeping_activations_overlap_instead_of_queueing(engine: EngineKind) {
    let executor = std::sync::Arc::new(Executor::runtime(engine, &[]));
    executor.init_ok(artifacts::SLEEP);
    let started = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let executor = executor.clone();
            std::thread::spawn(move || executor.run(json!({"ms": 1000})).status)
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 200);
    }
    // Served one after another they would take 8 s; overlapping, about 1 s.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );
}

/// Polls the executor's `/metrics` until no activation of `engine` holds an instance, failing
/// if one still does [`stop_margin`] after `deadline`: the instance really stopped near its
/// deadline, rather than the executor answering and leaving it running.
fn stopped_near(executor: &Executor, engine: EngineKind, deadline: Instant) {
    let (margin, allowance) = stop_margin(engine);
    loop {
        // The time first: an instance seen in use was in use at least that late.
        let late = Instant::now().saturating_duration_since(deadline);
        let in_use = sample(
            &scrape(executor),
            "ow_instances_in_use",
            &[("engine", engine.name())],
        );
        if in_use == Some(0.0) {
            return;
        }
        assert!(
            late <= margin,
            "an instance still ran {} ms after its deadline ({in_use:?} in use); it must have \
             stopped within {} ms{}",
            late.as_millis(),
            margin.as_millis(),
            allowance.map_or(String::new(), |why| format!(" ({why})"))
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The time limit a timeout answer names: a 502 with the platform's sentence.
fn timed_out_after(answer: &Answer) -> u64 {
    assert_eq!(answer.status, 502, "{answer:?}");
    let error = answer.body["error"].as_str().unwrap();
    let limit = error
        .strip_prefix("The action exceeded its time limits of ")
        .and_then(|rest| rest.strip_suffix(" milliseconds."))
        .unwrap_or_else(|| panic!("not the timeout sentence: {error}"));
    limit.parse().expect("a number of milliseconds")
}

fn the_deadline_stops_a_runaway_loop_and_the_executor_keeps_serving(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::wat::LOOP_FOREVER);
    // The deadline as a string, as the invoker sends it, then as a number; the same
    // container serves (and stops) the second activation as it did the first.
    for as_string in [true, false] {
        let deadline = Instant::now() + Duration::from_millis(500);
        let epoch_deadline = epoch_millis_from_now(Duration::from_millis(500));
        let sent = match as_string {
            true => json!(epoch_deadline.to_string()),
            false => json!(epoch_deadline),
        };
        let answer = executor.post("/run", &json!({"value": {}, "deadline": sent}));
        let limit = timed_out_after(&answer);
        assert!((300..=500).contains(&limit), "limit {limit}");
        stopped_near(&executor, engine, deadline);
    }
    let (stdout, stderr) = executor.logs_after(2);
    assert_eq!((sentinels(&stdout), sentinels(&stderr)), (2, 2));
}

fn the_deadline_also_stops_an_action_waiting_in_the_host(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    executor.init_ok(artifacts::SLEEP);
    let deadline = Instant::now() + Duration::from_millis(300);
    let epoch_deadline = epoch_millis_from_now(Duration::from_millis(300));
    let answer = executor.post(
        "/run",
        &json!({"value": {"ms": 30000}, "deadline": epoch_deadline}),
    );
    timed_out_after(&answer);
    stopped_near(&executor, engine, deadline);
    let answer = executor.run(json!({"ms": 1}));
    assert_eq!((answer.status, answer.body), (200, json!({"slept_ms": 1})));
}

fn a_deadline_in_the_past_falls_back_to_the_configured_timeout(engine: EngineKind) {
    let executor = Executor::runtime(engine, &["--timeout", "1s"]);
    executor.init_ok(artifacts::ADD);
    let answer = executor.post(
        "/run",
        &json!({"value": {"param1": 1, "param2": 1}, "deadline": "123"}),
    );
    assert_eq!((answer.status, answer.body), (200, json!({"result": 2})));

    let executor = Executor::runtime(engine, &["--timeout", "1s"]);
    executor.init_ok(artifacts::wat::LOOP_FOREVER);
    let answer = executor.post("/run", &json!({"value": {}, "deadline": "123"}));
    assert_eq!(
        (answer.status, answer.body),
        (
            502,
            json!({"error": "The action exceeded its time limits of 1000 milliseconds."})
        )
    );
}

fn each_activation_sees_its_own_ow_context_and_the_init_env(engine: EngineKind) {
    let executor = Executor::runtime_with_env(
        engine,
        &[],
        &[
            ("__OW_API_HOST", "http://openwhisk.example:3233"),
            ("EXECUTOR_SECRET", "leaked"),
        ],
    );
    let mut body = init_body(&zip(&artifacts::read(artifacts::ENV)));
    body["value"]["env"] = json!({"GREETING": "hello", "__OW_NAMESPACE": "from-init"});
    assert_eq!(executor.post("/init", &body).status, 200);
    for id in ["a1", "b2"] {
        let deadline = epoch_millis_from_now(Duration::from_secs(60)).to_string();
        let answer = executor.post(
            "/run",
            &json!({
                "value": {}, "namespace": "guest", "action_name": "/guest/env",
                "action_version": "0.0.1", "activation_id": id, "transaction_id": "tx",
                "deadline": deadline, "api_key": "uuid:key"
            }),
        );
        let env = answer.body;
        assert_eq!(env["__OW_ACTIVATION_ID"], id);
        assert_eq!(
            env["__OW_NAMESPACE"], "guest",
            "the run's context wins over init env"
        );
        assert_eq!(env["__OW_ACTION_NAME"], "/guest/env");
        assert_eq!(env["__OW_ACTION_VERSION"], "0.0.1");
        assert_eq!(env["__OW_TRANSACTION_ID"], "tx");
        assert_eq!(env["__OW_API_KEY"], "uuid:key");
        assert_eq!(
            env["__OW_DEADLINE"], deadline,
            "the deadline as it was sent"
        );
        assert_eq!(env["__OW_API_HOST"], "http://openwhisk.example:3233");
        assert_eq!(env["GREETING"], "hello");
        assert!(
            env.get("EXECUTOR_SECRET").is_none(),
            "the executor's environment leaked: {env}"
        );
    }
    // Context is per activation: a run without an api_key does not see the last one's.
    let env = executor.run(json!({})).body;
    assert!(env.get("__OW_API_KEY").is_none(), "{env}");
    assert!(env.get("__OW_ACTIVATION_ID").is_none(), "{env}");
    // A field sent twice counts once, the last, as JSON.parse keeps it: a null sent last
    // takes the context away. A name with an escape counts as the name it spells.
    let body = br#"{"value": "not parameters", "activation_id": "first", "activation_id": "last",
        "api_key": "uuid:key", "api_key": null, "action_\u006eame": "/guest/escaped",
        "value": {}}"#;
    let answer = executor.post_raw("/run", body, true);
    assert_eq!(answer.status, 200, "{answer:?}");
    let env = answer.body;
    assert_eq!(env["__OW_ACTIVATION_ID"], "last");
    assert!(env.get("__OW_API_KEY").is_none(), "{env}");
    assert_eq!(env["__OW_ACTION_NAME"], "/guest/escaped");
}

fn unknown_routes_answer_json(engine: EngineKind) {
    let executor = Executor::runtime(engine, &[]);
    let answer = executor.post("/nope", &json!({}));
    assert_eq!(
        (answer.status, answer.body),
        (404, json!({"error": "There is no resource at /nope."}))
    );
}

per_engine!(
    init_then_run_answers_the_result_with_a_content_length,
    the_executor_prints_nothing_but_activation_logs_and_sentinels,
    run_before_init_is_refused,
    a_second_init_is_refused_with_a_line_on_stderr_and_no_sentinel,
    a_second_init_is_refused_as_such_whatever_its_fields_hold,
    init_without_code_is_refused_and_leaves_the_container_uninitialized,
    undecodable_code_fails_init_with_502_and_one_sentinel_per_stream,
    bad_base64_and_bad_zips_fail_init_with_a_sentence,
    malformed_json_is_a_400_on_both_routes,
    content_type_is_not_required,
    code_with_escaped_slashes_inits,
    a_field_sent_twice_counts_once_the_last_as_in_json_parse,
    parameters_and_results_pass_verbatim_objects_and_arrays,
    an_application_error_is_still_200,
    the_result_is_answered_with_its_keys_in_the_actions_order,
    a_result_that_is_not_a_dictionary_is_a_502,
    a_trap_is_a_502_with_the_platform_sentence_and_the_trap_in_the_logs,
    an_exit_with_a_code_is_a_502_with_the_code_in_the_logs,
    modules_that_cannot_run_here_are_refused_at_init_with_what_is_wrong,
    logs_go_to_their_stream_before_the_sentinels_after_every_activation,
    concurrent_activations_run_at_once_and_keep_their_log_blocks_whole,
    sleeping_activations_overlap_instead_of_queueing,
    the_deadline_stops_a_runaway_loop_and_the_executor_keeps_serving,
    the_deadline_also_stops_an_action_waiting_in_the_host,
    a_deadline_in_the_past_falls_back_to_the_configured_timeout,
    each_activation_sees_its_own_ow_context_and_the_init_env,
    unknown_routes_answer_json,
);
