//! The malformed-input corpus (`fixtures/malformed/`) through the
//! `karmem-bridge` binary, one case per file, like wasm-tools' `tests/cli`.
//!
//! A case is a `.wat`, `.wasm`, `.km`, `.wit`, `.cli` or `.bin` (a Karmem message) file. Its command line
//! is a `RUN:` line in the file's first lines, or in `NAME.run` beside it for
//! binary inputs; `EXIT: N` sets the expected exit code (default 1; clap's
//! usage errors are 2). In the command line `%` is the case file, `{out}` an
//! output path in a fresh temporary directory, `{copy}` a copy of the case
//! file there, `{tmp}` that directory. The command runs in
//! `fixtures/malformed/`.
//!
//! Every case must: exit with its code, print nothing on stdout, print an
//! `error:` (or, for a usage error, clap's usage) on stderr equal to `NAME.stderr` (temporary paths shown as
//! `$TMP`; `BLESS=1` rewrites the snapshots), never panic, and lose nothing:
//! run once with `{out}` absent (it must stay absent) and once with `{out}`
//! holding other bytes (they must stay), leaving no other file behind; a
//! `{copy}` must keep its bytes.

#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CASE_EXTENSIONS: &[&str] = &["wat", "wasm", "km", "wit", "cli", "bin"];
const EXISTING: &[u8] = b"an existing output the failed run must not touch\n";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/malformed")
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| CASE_EXTENSIONS.contains(&e)))
        .collect();
    cases.sort();
    cases
}

#[derive(Debug)]
struct Spec {
    args: Vec<String>,
    exit: i32,
}

/// The `RUN:` and `EXIT:` lines of a case (or of its `.run` file).
fn spec(case: &Path) -> Spec {
    let run_file = PathBuf::from(format!("{}.run", case.display()));
    let bytes = std::fs::read(if run_file.exists() { &run_file } else { case }).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let mut args = None;
    let mut exit = 1;
    for line in text.lines().take(5) {
        if let Some((_, rest)) = line.split_once("RUN:") {
            args = Some(rest.split_whitespace().map(str::to_string).collect());
        } else if let Some((_, rest)) = line.split_once("EXIT:") {
            exit = rest.trim().parse().unwrap();
        }
    }
    let args = args.unwrap_or_else(|| panic!("`{}` has no `RUN:` line", case.display()));
    Spec { args, exit }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs one case; `existing` puts other bytes at `{out}` first. Checks that
/// nothing was lost or left behind and returns what the command printed.
fn run(case: &Path, spec: &Spec, existing: bool, problems: &mut Vec<String>) -> Outcome {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let copy = tmp.path().join(&name);
    let uses_out = spec.args.iter().any(|a| a.contains("{out}"));
    let uses_copy = spec.args.iter().any(|a| a.contains("{copy}"));
    if existing && uses_out {
        std::fs::write(&out, EXISTING).unwrap();
    }
    let original = std::fs::read(case).unwrap();
    if uses_copy {
        std::fs::write(&copy, &original).unwrap();
    }
    let args: Vec<String> = spec
        .args
        .iter()
        .map(|a| {
            if a == "%" {
                return name.clone();
            }
            a.replace("{out}", &out.display().to_string())
                .replace("{copy}", &copy.display().to_string())
                .replace("{tmp}", &tmp.path().display().to_string())
        })
        .collect();
    let output = Command::new(env!("CARGO_BIN_EXE_karmem-bridge"))
        .args(&args)
        .current_dir(corpus_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();

    // Nothing lost, nothing left behind.
    let mut left: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    let mut expected = Vec::new();
    if existing && uses_out {
        expected.push("out".to_string());
        if std::fs::read(&out).ok().as_deref() != Some(EXISTING) {
            problems.push(format!("{name}: the existing output was changed"));
        }
    }
    if uses_copy {
        expected.push(name.clone());
        if std::fs::read(&copy).ok() != Some(original) {
            problems.push(format!("{name}: the input rewritten in place was changed"));
        }
    }
    expected.sort();
    if left != expected {
        problems.push(format!("{name}: files left in the output directory: {left:?}, expected {expected:?}"));
    }

    let tmp_path = tmp.path().display().to_string();
    Outcome {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: without_command_list(&String::from_utf8_lossy(&output.stderr).replace(&tmp_path, "$TMP")),
    }
}

/// clap's help lists every subcommand; that list grows as commands land, so
/// snapshots keep only its heading.
fn without_command_list(stderr: &str) -> String {
    let mut out = String::new();
    let mut in_list = false;
    for line in stderr.lines() {
        if line == "Commands:" {
            in_list = true;
            out.push_str("Commands: (left out)\n");
            continue;
        }
        if in_list && !line.is_empty() {
            continue;
        }
        in_list = false;
        out.push_str(line);
        out.push('\n');
    }
    if !stderr.ends_with('\n') {
        out.pop();
    }
    out
}

#[test]
fn malformed_inputs_fail_cleanly() {
    let bless = std::env::var_os("BLESS").is_some();
    let cases = cases();
    assert!(cases.len() >= 50, "the corpus has {} cases, fewer than 50", cases.len());
    let mut problems = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let spec = spec(case);
        let first = run(case, &spec, false, &mut problems);
        let second = run(case, &spec, true, &mut problems);
        for outcome in [&first, &second] {
            if outcome.code != Some(spec.exit) {
                problems.push(format!("{name}: exit code {:?}, expected {}\n{}", outcome.code, spec.exit, outcome.stderr));
            }
            if !outcome.stdout.is_empty() {
                problems.push(format!("{name}: printed on stdout:\n{}", outcome.stdout));
            }
            if outcome.stderr.contains("panicked") || outcome.stderr.contains("RUST_BACKTRACE") {
                problems.push(format!("{name}: panicked:\n{}", outcome.stderr));
            }
            // clap answers a bare `karmem-bridge` with its help (exit 2).
            let usage = spec.exit == 2 && outcome.stderr.contains("Usage:");
            if !usage && !outcome.stderr.lines().any(|l| l.starts_with("error:")) {
                problems.push(format!("{name}: no `error:` line on stderr:\n{}", outcome.stderr));
            }
        }
        if first.stderr != second.stderr {
            problems.push(format!("{name}: stderr depends on whether the output existed"));
        }
        let snapshot = PathBuf::from(format!("{}.stderr", case.display()));
        if bless {
            std::fs::write(&snapshot, &first.stderr).unwrap();
        } else {
            let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
            if expected != first.stderr {
                problems.push(format!(
                    "{name}: stderr differs from `{}` (BLESS=1 rewrites)\n--- expected\n{expected}--- actual\n{}",
                    snapshot.display(),
                    first.stderr
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{} problems:\n\n{}", problems.len(), problems.join("\n\n"));
}

/// Every snapshot belongs to a case (a renamed case leaves no stale one).
#[test]
fn no_stale_snapshots() {
    let cases = cases();
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for suffix in [".stderr", ".run"] {
            if let Some(case) = name.strip_suffix(suffix) {
                assert!(cases.iter().any(|c| c.file_name().unwrap() == case), "`{name}` has no case `{case}`");
            }
        }
    }
}
