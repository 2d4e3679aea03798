//! Progress bars on stderr (hidden when stderr is not a terminal), one per measurement that
//! takes more than a few seconds.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `steps` steps, prefixed with what is being measured.
pub fn bar(what: &str, steps: u64) -> ProgressBar {
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}
