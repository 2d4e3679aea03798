//! The README's main command: the quickstart example deploys and invokes `add` through
//! standalone and prints its result.

use std::path::Path;
use std::process::Command;

#[test]
fn the_quickstart_prints_the_result_of_add() {
    // `cargo test` builds the examples next to the test binaries' directory.
    let test_binary = std::env::current_exe().unwrap();
    let profile_dir = test_binary.parent().and_then(Path::parent).unwrap();
    let quickstart = profile_dir.join("examples").join("quickstart");
    assert!(
        quickstart.is_file(),
        "{} is missing: cargo test builds it",
        quickstart.display()
    );
    let output = Command::new(&quickstart)
        .env("OW_QUICKSTART_EXECUTOR", env!("CARGO_BIN_EXE_ow-executor"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "{\"result\":4}\n",
        "{stderr}"
    );
    assert!(stderr.contains("wsk property set --apihost"), "{stderr}");
    let zip = profile_dir
        .parent()
        .unwrap()
        .join("quickstart")
        .join("add.zip");
    assert!(
        zip.is_file(),
        "the quickstart leaves {} for wsk",
        zip.display()
    );
}
