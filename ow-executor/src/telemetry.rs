//! The executor's own diagnostics. They never mix with activation logs: in `runtime` mode the
//! invoker reads stdout and stderr as the action's logs, so diagnostics appear only when the
//! operator asks (`OW_LOG=info`, or `--log-file`).

use std::path::Path;
use tracing_subscriber::EnvFilter;

/// Installs the tracing subscriber if diagnostics were asked for.
pub fn init(log_file: Option<&Path>) -> anyhow::Result<()> {
    let level = std::env::var("OW_LOG").ok();
    if level.is_none() && log_file.is_none() {
        return Ok(());
    }
    let filter = EnvFilter::try_new(level.as_deref().unwrap_or("info"))
        .map_err(|e| anyhow::anyhow!("OW_LOG is not a valid filter: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open the log file {}: {e}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}
