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
        let _ = write_block(&mut std::io::stdout().lock(), &logs.stdout);
        let _ = write_block(&mut std::io::stderr().lock(), &logs.stderr);
    }

    fn stderr_line(&self, line: &str) {
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

/// The sentinel line, for a stream the activation wrote nothing to.
const SENTINEL_LINE: [u8; LOG_SENTINEL.len() + 1] = {
    let mut line = [b'\n'; LOG_SENTINEL.len() + 1];
    let mut at = 0;
    while at < LOG_SENTINEL.len() {
        line[at] = LOG_SENTINEL.as_bytes()[at];
        at += 1;
    }
    line
};

/// Writes one stream's block in one write: the captured bytes, a newline if they lack one,
/// the sentinel line. Most activations print nothing: their block is the sentinel line alone,
/// written without building a block.
fn write_block(stream: &mut impl Write, captured: &[u8]) -> std::io::Result<()> {
    if captured.is_empty() {
        return stream.write_all(&SENTINEL_LINE);
    }
    let mut block = Vec::with_capacity(captured.len() + 1 + SENTINEL_LINE.len());
    block.extend_from_slice(captured);
    if !captured.ends_with(b"\n") {
        block.push(b'\n');
    }
    block.extend_from_slice(&SENTINEL_LINE);
    stream.write_all(&block)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`write_block`] writes for `captured`.
    fn written(captured: &[u8]) -> Vec<u8> {
        let mut stream = Vec::new();
        write_block(&mut stream, captured).unwrap();
        stream
    }

    #[test]
    fn blocks_end_with_the_sentinel_on_its_own_line() {
        assert_eq!(written(b""), format!("{LOG_SENTINEL}\n").into_bytes());
        assert_eq!(
            written(b"a\nb"),
            format!("a\nb\n{LOG_SENTINEL}\n").into_bytes()
        );
        assert_eq!(written(b"a\n"), format!("a\n{LOG_SENTINEL}\n").into_bytes());
    }
}
