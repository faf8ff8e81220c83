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

/// `(name, source path, source)` of every corpus schema the code
/// generators are tested on: `fixtures/idl/*.km` and `fixtures/wit/*.km`,
/// sorted, named `idl_<stem>` / `wit_<stem>` with `-` as `_`.
pub fn corpus() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (dir, prefix) in [("fixtures/idl", "idl"), ("fixtures/wit", "wit")] {
        let mut files: Vec<_> = std::fs::read_dir(workspace().join(dir))
            .expect("fixture directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "km"))
            .collect();
        files.sort();
        for p in files {
            let stem = p.file_stem().map(|s| s.to_string_lossy().replace('-', "_")).unwrap_or_default();
            let path = format!("{dir}/{}", p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
            out.push((format!("{prefix}_{stem}"), path, std::fs::read_to_string(&p).expect("corpus schema")));
        }
    }
    out
}
