//! Starts `ow-executor` as a child process, finds its address in its log file, talks HTTP to
//! it and collects what it printed on stdout and stderr. Shared by the integration tests and
//! the quickstart example.

use base64::Engine as _;
use ow_common::protocol::sentences::LOG_SENTINEL;
#[cfg(test)]
use ow_executor::engines::EngineKind;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
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

impl Answer {
    /// Asserts that this is an error answer of `status` whose sentence mentions `words`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, words: &str) {
        let error = self.body["error"].as_str().unwrap_or_default();
        assert!(
            self.status == status && error.contains(words),
            "expected a {status} mentioning {words:?}, got {self:?}"
        );
    }
}

/// An HTTP answer as it came: for web actions, whose answers are not always JSON.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    /// The headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {self:?}"))
    }
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

    /// Runs `ow-executor standalone` on `data_dir`, expecting it to refuse to start; returns
    /// what it printed on stderr.
    #[cfg(test)]
    pub fn standalone_refused(data_dir: &Path) -> String {
        refused_start(
            Command::new(env!("CARGO_BIN_EXE_ow-executor"))
                .args(["standalone", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(data_dir),
        )
    }

    /// `ow-executor executor --engine ENGINE`.
    #[cfg(test)]
    pub fn executor_mode(engine: EngineKind, args: &[&str]) -> Self {
        Self::executor_mode_with_env(engine, args, &[])
    }

    /// `ow-executor executor --engine ENGINE`, with `env` added to its environment.
    #[cfg(test)]
    pub fn executor_mode_with_env(engine: EngineKind, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start(
            Path::new(env!("CARGO_BIN_EXE_ow-executor")),
            &["executor", "--engine", engine.name()],
            args,
            env,
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

    /// Any request with these headers; the answer as it came.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpAnswer {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(body.to_vec()).expect("a valid request");
        let mut response = self.agent.run(request).expect("the executor answers");
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let mut body = Vec::new();
        response
            .body_mut()
            .as_reader()
            .read_to_end(&mut body)
            .expect("readable body");
        HttpAnswer {
            status: response.status().as_u16(),
            headers,
            body,
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

    /// Executor mode: one container per body of `inits`, each holding the `add` example,
    /// started, initialised and run all at once, the `n`th with `n` and 1; asserts that every
    /// one answers `n + 1`.
    pub fn add_in_containers_at_once(self: &Arc<Self>, inits: Vec<Value>) {
        let containers: Vec<_> = inits
            .into_iter()
            .enumerate()
            .map(|(n, init)| {
                let executor = self.clone();
                std::thread::spawn(move || {
                    let started = executor.post("/start", &json!({}));
                    assert_eq!(started.status, 200, "{started:?}");
                    let id = started.body["containerId"]
                        .as_str()
                        .expect("a container id");
                    let initialised = executor.post(&format!("/{id}/init"), &init);
                    assert_eq!(initialised.status, 200, "{initialised:?}");
                    let params = json!({"value": {"param1": n, "param2": 1}});
                    executor.post(&format!("/{id}/run"), &params)
                })
            })
            .collect();
        for (n, container) in containers.into_iter().enumerate() {
            let answer = container.join().expect("the container answers");
            assert_eq!(
                (answer.status, answer.body),
                (200, json!({"result": n + 1}))
            );
        }
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

    /// Waits (at most 30 s) until the diagnostics contain `line`: the event a test waits on,
    /// rather than a fixed sleep.
    pub fn wait_for_diagnostic(&self, line: &str) {
        self.wait_until_printed("the diagnostics", Self::diagnostics, line, 30);
    }

    /// Waits (at most 10 s) until the executor has printed `text` on stdout.
    pub fn wait_for_stdout(&self, text: &str) {
        self.wait_until_printed("stdout", Self::stdout, text, 10);
    }

    /// Polls `read` until it contains `text`, failing the test after `limit_s` seconds.
    fn wait_until_printed(&self, what: &str, read: fn(&Self) -> String, text: &str, limit_s: u64) {
        let started = Instant::now();
        while !read(self).contains(text) {
            assert!(
                started.elapsed() < Duration::from_secs(limit_s),
                "no {text:?} in {what} within {limit_s} s: {}",
                read(self)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything the executor printed on stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Everything the executor printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits until stderr holds `text` (the pipe reader thread may lag behind what the
    /// executor wrote) and returns all of stderr.
    pub fn stderr_once_it_holds(&self, text: &str) -> String {
        let started = Instant::now();
        loop {
            let stderr = self.stderr();
            if stderr.contains(text) {
                return stderr;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "expected {text:?} on stderr; it holds {stderr:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
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

/// One keep-alive connection to an executor, on which requests go one after the other, for
/// tests that the connection stays usable whatever the requests carry.
pub struct Connection {
    stream: TcpStream,
    /// Bytes read past the last answer.
    buffered: Vec<u8>,
    /// How many answers came on this connection.
    answers: usize,
}

/// An answer read off a [`Connection`].
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// The headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    /// The body as JSON, or as a string when it is not JSON.
    pub body: Value,
}

impl RawAnswer {
    /// The value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Connection {
    /// Opens a connection to `executor`.
    pub fn open(executor: &Executor) -> Self {
        let address = executor.base_url.trim_start_matches("http://");
        let stream = TcpStream::connect(address).expect("the executor accepts a connection");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        Self {
            stream,
            buffered: Vec::new(),
            answers: 0,
        }
    }

    /// Sends a request with `headers` and `body` and reads its answer. Panics if the server
    /// closes the connection, or says it will.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawAnswer {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let sent = self.stream.write_all(&bytes);
        assert!(
            sent.is_ok(),
            "{method} {path}: the connection was lost after {} answers: {sent:?}",
            self.answers
        );
        let answer = self.read_answer(&format!("{method} {path}"));
        self.answers += 1;
        assert_ne!(
            answer.header("connection"),
            Some("close"),
            "{method} {path}: the server closes the connection after {} answers",
            self.answers
        );
        answer
    }

    fn read_answer(&mut self, request: &str) -> RawAnswer {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = response
                .parse(&self.buffered)
                .expect("a well-formed HTTP answer")
            {
                let status = response.code.expect("a status");
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|header| {
                        let value = String::from_utf8_lossy(header.value).into_owned();
                        (header.name.to_ascii_lowercase(), value)
                    })
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(name, _)| name == "content-length")
                    .map(|(_, value)| value.parse().expect("a numeric Content-Length"))
                    .unwrap_or_else(|| panic!("{request}: the answer has no Content-Length"));
                self.fill(head_len + length, request);
                let body_bytes: Vec<u8> = self.buffered.drain(..head_len + length).collect();
                // A body that is no JSON (a rule's plain `OK`) is kept as a string.
                let body_bytes = &body_bytes[head_len..];
                let body = serde_json::from_slice(body_bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(body_bytes).into_owned())
                });
                return RawAnswer {
                    status,
                    headers,
                    body,
                };
            }
            let before = self.buffered.len();
            self.fill(before + 1, request);
        }
    }

    /// Reads until `len` bytes are buffered.
    fn fill(&mut self, len: usize, request: &str) {
        let mut chunk = [0u8; 64 * 1024];
        while self.buffered.len() < len {
            let read = self.stream.read(&mut chunk).unwrap_or(0);
            assert!(
                read > 0,
                "{request}: the server closed the connection after {} answers",
                self.answers
            );
            self.buffered.extend_from_slice(&chunk[..read]);
        }
    }
}

/// Runs `command`, a start of `ow-executor` (without `OW_LOG`, so that only its own sentence
/// reaches stderr), expecting it to refuse to start; returns what it printed on stderr.
pub fn refused_start(command: &mut Command) -> String {
    let output = command
        .env_remove("OW_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("ow-executor runs");
    assert!(!output.status.success(), "it started: {output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
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
