//! The `hash` example compiled natively as a blackbox action: the parameters as one JSON
//! document on stdin (empty means `{}`), the result as the last line of stdout. The
//! `native-process` baseline runs one of these per request, as OpenWhisk's Docker skeleton
//! runs its executable per activation.

use std::io::{Read, Write};

fn main() -> anyhow::Result<()> {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input)?;
    let params = ow_evaluation::native::run_params(&input);
    let result = ow_evaluation::native::hash(params);
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &result)?;
    stdout.write_all(b"\n")?;
    Ok(())
}
