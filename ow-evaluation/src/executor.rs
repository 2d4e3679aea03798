//! Server processes under test: `ow-executor` in one of its modes, or the `http-floor`
//! baseline. Each binds 127.0.0.1:0 and names its address in its log file (`listening on
//! ADDR`); each is killed when its handle is dropped. Also the `/proc` readings the reports
//! need: resident memory and CPU time of a process.

use crate::load::{Request, post};
use anyhow::{Context, bail, ensure};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server process, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `ow-executor MODE --engine ENGINE --listen 127.0.0.1:0 ARGS…`.
    pub async fn executor(
        binary: &Path,
        mode: &str,
        engine: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command.args([mode, "--engine", engine, "--listen", "127.0.0.1:0"]);
        command.args(args);
        Self::start(command).await
    }

    /// Starts `command` with `--log-file` and waits until its log names the address.
    ///
    /// Only the line that names the port is logged (`OW_LOG`), not one line per activation;
    /// stdout and stderr (action logs in `runtime` mode) are discarded.
    pub async fn start(mut command: Command) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot make a temporary directory")?;
        let log_file = dir.path().join("server.log");
        command
            .arg("--log-file")
            .arg(&log_file)
            .env("OW_LOG", "ow_executor::server=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let program = PathBuf::from(command.get_program());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let started = Instant::now();
        let addr = loop {
            let log = std::fs::read_to_string(&log_file).unwrap_or_default();
            if let Some(addr) = listening_address(&log) {
                break addr;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening: {}",
                    program.display(),
                    log.trim()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                bail!(
                    "{} did not listen within {START_TIMEOUT:?}",
                    program.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        Ok(Self {
            child,
            addr,
            _dir: dir,
        })
    }

    /// `ow-executor runtime --engine ENGINE ARGS…` with the action `archive` initialised.
    pub async fn runtime_with(
        binary: &Path,
        engine: &str,
        archive: &[u8],
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let server = Self::executor(binary, "runtime", engine, args).await?;
        let init = Request::post("/init", &crate::actions::init_body(archive));
        post(server.addr, &init)
            .await?
            .ok()
            .with_context(|| format!("{engine} did not initialise the action"))?;
        Ok(server)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.pid())
    }

    /// Resident memory, KiB, and how much of it is file-backed.
    pub fn resident(&self) -> anyhow::Result<Resident> {
        resident(self.pid())
    }

    /// CPU time spent so far, user and system, all threads.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time(&self.pid().to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the first `listening on ADDR` line of a log.
pub fn listening_address(log: &str) -> Option<SocketAddr> {
    log.lines().find_map(|line| {
        line.split("listening on ")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// The `VmRSS` of process `pid`, KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    Ok(resident(pid)?.total_kib)
}

/// A process's resident memory, KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    /// All of it (`VmRSS`).
    pub total_kib: u64,
    /// The part that is pages of files (`RssFile`): the executable's and its libraries' own
    /// code and read-only data. Counted in RSS, but clean, shared by every process that maps
    /// the same file, and the first the kernel drops under pressure.
    pub file_kib: u64,
}

/// The resident memory of `/proc/{pid}`.
pub fn resident(pid: u32) -> anyhow::Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{name} is missing from /proc/{pid}/status"))
    };
    Ok(Resident {
        total_kib: field("VmRSS:")?,
        file_kib: field("RssFile:")?,
    })
}

/// CPU time (user + system, every thread, and children it waited for) of `/proc/{pid}`,
/// where `pid` may be `self`.
pub fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // The command name (field 2) may hold spaces: fields are counted after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("/proc stat has a command name")?
        .1
        .split_whitespace()
        .collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .context("/proc stat has CPU times")
    };
    // utime, stime, cutime and cstime are fields 14 to 17, 11 to 14 past the state; Linux
    // counts them in USER_HZ, 100 per second on every architecture it exposes to user space.
    Ok(Duration::from_millis(
        (ticks(11)? + ticks(12)? + ticks(13)? + ticks(14)?) * 10,
    ))
}

/// An engine compiled into the executor under test, as `ow-executor engines` describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CompiledEngine {
    /// Its name, as `--engine` spells it.
    pub name: String,
    /// Whether it runs Wasm SIMD (`simd128`) code.
    pub wasm_simd: bool,
}

/// The engines compiled into `binary`, the default first, as `ow-executor engines` lists them.
pub fn compiled_engines(binary: &Path) -> anyhow::Result<Vec<CompiledEngine>> {
    let output = Command::new(binary)
        .arg("engines")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    ensure!(
        output.status.success(),
        "`{} engines` failed ({}): {}",
        binary.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let engines: Vec<CompiledEngine> = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("`{} engines` printed no list of engines", binary.display()))?;
    ensure!(
        !engines.is_empty(),
        "`{} engines` listed none",
        binary.display()
    );
    Ok(engines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_comes_from_the_listening_line() {
        let log = "2025-01-01T00:00:00Z  INFO ow_executor::server: listening on 127.0.0.1:4242 address=127.0.0.1:4242\n";
        assert_eq!(
            listening_address(log),
            Some("127.0.0.1:4242".parse().unwrap())
        );
        assert_eq!(listening_address("starting\n"), None);
    }

    #[test]
    fn engines_come_from_the_executors_engine_list() {
        // A binary that fails, or prints no list, is no executor to measure.
        assert!(compiled_engines(Path::new("/bin/false")).is_err());
        assert!(compiled_engines(Path::new("/bin/true")).is_err());
        let listed = r#"[{"name": "wasmtime", "precompiled": true, "wasm_simd": true},
                         {"name": "wamr", "precompiled": false, "wasm_simd": false}]"#;
        let engines: Vec<CompiledEngine> = serde_json::from_str(listed).unwrap();
        assert_eq!(
            engines,
            [
                CompiledEngine {
                    name: "wasmtime".into(),
                    wasm_simd: true
                },
                CompiledEngine {
                    name: "wamr".into(),
                    wasm_simd: false
                },
            ]
        );
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let resident = resident(std::process::id()).unwrap();
        // This test binary's own code is resident and file-backed.
        assert!(resident.file_kib > 0, "{resident:?}");
        assert!(resident.file_kib < resident.total_kib, "{resident:?}");
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(cpu_time("self").is_ok());
    }
}
