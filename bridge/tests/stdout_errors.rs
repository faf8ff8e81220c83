//! A stdout that cannot be written (full, or a closed pipe) is an error
//! naming stdout, exit code 1 — not the panic `print!` raises. `/dev/full`
//! fails every write with `ENOSPC`, deterministically.

#![cfg(target_os = "linux")]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, ensure};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Runs `karmem-bridge args` with stdout on `/dev/full`; returns stderr.
fn stderr_with_full_stdout(args: &[&Path]) -> Result<String> {
    let full = File::options().write(true).open("/dev/full").context("failed to open `/dev/full`")?;
    let output = Command::new(env!("CARGO_BIN_EXE_karmem-bridge"))
        .args(args)
        .stdout(full)
        .output()
        .context("failed to run karmem-bridge")?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(output.status.code() == Some(1), "{args:?}: exit {:?}, stderr:\n{stderr}", output.status.code());
    Ok(stderr)
}

#[test]
fn printing_commands_report_a_full_stdout() -> Result<()> {
    let component = fixtures().join("components/basics.p2.wasm");
    let compat = fixtures().join("idl/compat/enum-and-flags");
    let (old, new) = (compat.join("old.km"), compat.join("new.km"));
    let cases: [Vec<&Path>; 3] = [
        vec![Path::new("inspect"), &component],
        vec![Path::new("inspect"), Path::new("--json"), &component],
        vec![Path::new("compat"), &old, &new],
    ];
    for args in &cases {
        let stderr = stderr_with_full_stdout(args)?;
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
        assert_eq!(
            stderr,
            "error: failed to write stdout\n\nCaused by:\n    No space left on device (os error 28)\n",
            "{args:?}"
        );
    }
    Ok(())
}
