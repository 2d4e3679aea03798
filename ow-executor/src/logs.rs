//! Where activation logs go. In `runtime` mode they are the protocol itself: the invoker reads
//! the container's stdout and stderr, one block per activation closed by the sentinel line.

use ow_common::protocol::sentences::LOG_SENTINEL;
use ow_common::runtime::Logs;
use std::io::Write;

/// Receives each activation's logs.
pub trait ActivationLogSink: Send + Sync + 'static {
    /// Writes one activation's stdout and stderr, each closed by the sentinel. Each stream's
    /// block is written at once, so concurrent activations do not interleave.
    fn activation(&self, logs: &Logs);

    /// Writes one line to stderr without a sentinel (the runtime's own protocol complaints,
    /// as the official runtimes do).
    fn stderr_line(&self, line: &str);
}

/// The process's own stdout and stderr, as the invoker reads them.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessStreams;

impl ActivationLogSink for ProcessStreams {
    fn activation(&self, logs: &Logs) {
        // A closed stream (the invoker went away) is not the action's problem; nothing to do.
        let _ = std::io::stdout()
            .lock()
            .write_all(&sentinel_block(&logs.stdout));
        let _ = std::io::stderr()
            .lock()
            .write_all(&sentinel_block(&logs.stderr));
    }

    fn stderr_line(&self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// One stream's block: the captured bytes, a newline if they lack one, the sentinel line.
pub fn sentinel_block(captured: &[u8]) -> Vec<u8> {
    let mut block = Vec::with_capacity(captured.len() + LOG_SENTINEL.len() + 2);
    block.extend_from_slice(captured);
    if !captured.is_empty() && !captured.ends_with(b"\n") {
        block.push(b'\n');
    }
    block.extend_from_slice(LOG_SENTINEL.as_bytes());
    block.push(b'\n');
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_end_with_the_sentinel_on_its_own_line() {
        assert_eq!(
            sentinel_block(b""),
            format!("{LOG_SENTINEL}\n").into_bytes()
        );
        assert_eq!(
            sentinel_block(b"a\nb"),
            format!("a\nb\n{LOG_SENTINEL}\n").into_bytes()
        );
        assert_eq!(
            sentinel_block(b"a\n"),
            format!("a\n{LOG_SENTINEL}\n").into_bytes()
        );
    }
}
