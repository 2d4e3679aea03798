//! Starts `ow-executor` as a child process, finds its address in its log file, talks HTTP to
//! it and collects what it printed on stdout and stderr. Shared by the integration tests and
//! the quickstart example.

use base64::Engine as _;
use ow_common::protocol::sentences::LOG_SENTINEL;
#[cfg(test)]
use ow_executor::engines::EngineKind;
use serde_json::{Value, json};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running executor, killed when dropped.
pub struct Executor {
    child: Child,
    pub base_url: String,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    _dir: tempfile::TempDir,
    agent: ureq::Agent,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub content_length: Option<usize>,
    /// The `x-openwhisk-activation-id` header.
    pub activation_id: Option<String>,
}

impl Executor {
    /// `ow-executor runtime --engine ENGINE` with extra arguments.
    #[cfg(test)]
    pub fn runtime(engine: EngineKind, args: &[&str]) -> Self {
        Self::runtime_with_env(engine, args, &[])
    }

    /// `ow-executor runtime --engine ENGINE` with extra arguments and environment.
    #[cfg(test)]
    pub fn runtime_with_env(engine: EngineKind, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start(
            Path::new(env!("CARGO_BIN_EXE_ow-executor")),
            &["runtime", "--engine", engine.name()],
            args,
            env,
        )
    }

    /// `ow-executor standalone` storing its data in `data_dir`.
    #[cfg(test)]
    pub fn standalone(data_dir: &Path, args: &[&str]) -> Self {
        let data_dir = data_dir.to_str().expect("UTF-8 temp path");
        let mut all = vec!["--data-dir", data_dir];
        all.extend_from_slice(args);
        Self::start(
            Path::new(env!("CARGO_BIN_EXE_ow-executor")),
            &["standalone"],
            &all,
            &[],
        )
    }

    /// `ow-executor executor --engine ENGINE`.
    #[cfg(test)]
    pub fn executor_mode(engine: EngineKind, args: &[&str]) -> Self {
        Self::start(
            Path::new(env!("CARGO_BIN_EXE_ow-executor")),
            &["executor", "--engine", engine.name()],
            args,
            &[],
        )
    }

    /// Starts the `binary` in `mode`, listening on a free loopback port unless `args` name
    /// a `--listen` address.
    pub fn start(binary: &Path, mode: &[&str], args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_file = dir.path().join("executor.log");
        let mut command = Command::new(binary);
        command.args(mode);
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .arg("--log-file")
            .arg(&log_file)
            .args(args)
            .env_remove("OW_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("ow-executor starts");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let address = wait_for_address(&log_file, &mut child);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Self {
            child,
            base_url: format!("http://{address}"),
            stdout,
            stderr,
            _dir: dir,
            agent,
        }
    }

    /// POSTs raw bytes to `path`, with or without a JSON content type.
    pub fn post_raw(&self, path: &str, body: &[u8], json_content_type: bool) -> Answer {
        let content_type = json_content_type.then_some("application/json");
        self.request("POST", path, body, content_type, None)
    }

    /// Any request; `auth` is `uuid:key` for basic authentication.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        content_type: Option<&str>,
        auth: Option<&str>,
    ) -> Answer {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url));
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(auth) = auth {
            let encoded = base64::engine::general_purpose::STANDARD.encode(auth);
            request = request.header("Authorization", format!("Basic {encoded}"));
        }
        let request = request.body(body.to_vec()).expect("a valid request");
        let mut response = self.agent.run(request).expect("the executor answers");
        let status = response.status().as_u16();
        let activation_id = response
            .headers()
            .get("x-openwhisk-activation-id")
            .and_then(|value| Some(value.to_str().ok()?.to_owned()));
        let content_length = response
            .headers()
            .get("content-length")
            .and_then(|value| value.to_str().ok()?.parse().ok());
        let mut text = String::new();
        response
            .body_mut()
            .as_reader()
            .read_to_string(&mut text)
            .expect("readable body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the answer to {path} is not JSON ({e}): {text:?}"));
        Answer {
            status,
            body,
            content_length,
            activation_id,
        }
    }

    /// POSTs a JSON document.
    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, &serde_json::to_vec(body).unwrap(), true)
    }

    /// Sends `/init` with a module (zipped) and answers.
    pub fn init_module(&self, module: &[u8]) -> Answer {
        self.post("/init", &init_body(&zip(module)))
    }

    /// Sends `/init` with the module at `path` and asserts it succeeded.
    pub fn init_ok(&self, path: &str) {
        let answer = self.init_module(&ow_wasm_action_artifacts::read(path));
        assert_eq!(
            (answer.status, &answer.body),
            (200, &json!({"ok": true})),
            "init of {path}"
        );
    }

    /// Sends `/run` with these parameters.
    pub fn run(&self, params: Value) -> Answer {
        self.post("/run", &json!({ "value": params }))
    }

    /// Kills the process at once (SIGKILL), as a crash would, and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id, for signals and `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as an orchestrator stopping the container does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.pid()
        );
    }

    /// Waits for the process to exit (at most `within`) and returns how it exited.
    pub fn wait_for_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "ow-executor did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The executor's own diagnostics (its `--log-file`) so far.
    pub fn diagnostics(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("executor.log")).unwrap_or_default()
    }

    /// Everything the executor printed on stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Everything the executor printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until each stream holds `count` sentinel lines (the logs are written just before
    /// the answer, but the pipe reader threads may lag) and returns both streams.
    pub fn logs_after(&self, count: usize) -> (String, String) {
        let started = Instant::now();
        loop {
            let (stdout, stderr) = (self.stdout(), self.stderr());
            if sentinels(&stdout) >= count && sentinels(&stderr) >= count {
                return (stdout, stderr);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "expected {count} sentinels on each stream; stdout: {stdout:?}, stderr: {stderr:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many sentinel lines a stream holds.
pub fn sentinels(stream: &str) -> usize {
    stream.lines().filter(|line| *line == LOG_SENTINEL).count()
}

/// The `/init` body for base64 code.
pub fn init_body(code: &[u8]) -> Value {
    json!({"value": {
        "name": "test", "main": "main", "binary": true,
        "code": base64::engine::general_purpose::STANDARD.encode(code)
    }})
}

/// A zip holding `module` as `action.wasm`.
pub fn zip(module: &[u8]) -> Vec<u8> {
    ow_common::code::zip_module("action.wasm", module).unwrap()
}

/// Epoch milliseconds `offset` from now.
pub fn epoch_millis_from_now(offset: Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    (now + offset).as_millis() as u64
}

fn collect(mut stream: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(read) = stream.read(&mut chunk) {
            if read == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..read]);
        }
    });
    buffer
}

fn wait_for_address(log_file: &Path, child: &mut Child) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(log_file).unwrap_or_default();
        if let Some(address) = log.lines().find_map(|line| {
            let rest = line.split("listening on ").nth(1)?;
            Some(rest.split_whitespace().next()?.to_owned())
        }) {
            return address;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ow-executor exited before listening: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ow-executor did not start listening"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
