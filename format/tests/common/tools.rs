//! The workspace root and the external tools `scripts/runners.sh` provides
//! (node and TypeScript, Go), for the tests of generated code.

#![allow(clippy::expect_used, clippy::panic, reason = "test code: a missing tool under CI fails the test")]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// The values of `keys` that `scripts/runners.sh <flag>` prints as
/// `KEY=value` lines, or None (after a note naming `what` is skipped) when
/// one is missing and CI is unset; under CI a missing one fails the test.
pub fn runners_env<const N: usize>(flag: &str, keys: [&str; N], what: &str) -> Option<[String; N]> {
    let out = Command::new("bash").arg(workspace().join("scripts/runners.sh")).arg(flag).output().expect("run runners.sh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "runners.sh {flag} failed:\n{stderr}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    let values: Vec<String> = keys.iter().filter_map(|k| get(k)).collect();
    match <[String; N]>::try_from(values) {
        Ok(values) => Some(values),
        Err(_) if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
            panic!("CI is set but {keys:?} from runners.sh {flag} are unavailable:\n{stderr}")
        }
        Err(_) => {
            eprintln!("note: {keys:?} from runners.sh {flag} are unavailable, {what} is skipped:\n{stderr}");
            None
        }
    }
}
