//! `karmem-bridge check` and `fmt` through the real binary: exit codes, the
//! rendered diagnostics (the same `.stderr` snapshots the `karmem-idl` library
//! test checks), stdin/stdout as `-`, and in-place formatting.

#![allow(
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/idl")
}

fn bridge(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_karmem-bridge"))
        .args(args)
        .current_dir(fixtures())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run karmem-bridge: {e}"));
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or("").as_bytes())
            .unwrap_or_else(|e| panic!("stdin: {e}"));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("karmem-bridge: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn km_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "km"))
        .collect();
    files.sort();
    files
}

#[test]
fn check_fails_each_bad_case_with_its_snapshot() {
    let cases = km_files(&fixtures().join("fail"));
    assert!(cases.len() >= 25);
    for path in cases {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let arg = format!("fail/{file_name}");
        let out = bridge(&["check", &arg], None);
        assert_eq!(out.status.code(), Some(1), "{arg}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "{arg}: stdout {}", text(&out.stdout));
        let expected = std::fs::read_to_string(path.with_extension("stderr")).unwrap_or_default();
        assert_eq!(text(&out.stderr), expected, "{arg}");
    }
}

#[test]
fn check_accepts_the_corpus_silently() {
    for path in km_files(&fixtures()) {
        let out = bridge(&["check", &path.display().to_string()], None);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty() && out.stderr.is_empty());
    }
}

#[test]
fn check_reads_stdin_and_names_it() {
    let out = bridge(
        &["check", "-"],
        Some("struct a (dynamic) {\n    x: nope;\n}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: unknown type `nope`\n --> <stdin>:2:8\n"),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("2 |     x: nope;\n  |        ^^^^\n"),
        "{stderr}"
    );
    let out = bridge(&["check", "-"], Some("enum e (u8) { a; }"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn missing_file_prints_the_cause_chain() {
    let out = bridge(&["check", "does-not-exist.km"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: failed to read `does-not-exist.km`\n\nCaused by:\n    "),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(bridge(&["check"], None).status.code(), Some(2));
    assert_eq!(bridge(&["no-such-command"], None).status.code(), Some(2));
    assert_eq!(
        bridge(&["fmt", "--check", "-o", "x.km", "constructs.km"], None)
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn fmt_check_passes_formatted_and_fails_unformatted_input() {
    let out = bridge(&["fmt", "--check", "constructs.km"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());

    let out = bridge(&["fmt", "--check", "comments.km"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        text(&out.stderr),
        "error: `comments.km` is not formatted (run `karmem-bridge fmt -w comments.km`)\n"
    );

    let out = bridge(
        &["fmt", "--check", "-"],
        Some("struct  a (inline) { x: u8; }\n"),
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn fmt_prints_canonical_text_to_stdout() {
    let out = bridge(
        &["fmt", "-"],
        Some("// dropped\nflags f{a;/// doc\nb;}\nresource r ;"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "flags f {\n    a;\n    /// doc\n    b;\n}\n\nresource r;\n"
    );

    let canonical = std::fs::read_to_string(fixtures().join("constructs.km")).unwrap_or_default();
    let out = bridge(&["fmt", "constructs.km"], None);
    assert_eq!(text(&out.stdout), canonical);
}

#[test]
fn fmt_reports_syntax_errors_like_check() {
    let out = bridge(&["fmt", "fail/missing-semicolon.km"], None);
    assert_eq!(out.status.code(), Some(1));
    let expected = std::fs::read_to_string(fixtures().join("fail/missing-semicolon.stderr"))
        .unwrap_or_default();
    assert_eq!(text(&out.stderr), expected);
}

#[test]
fn fmt_writes_files_in_place_and_to_outputs() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let input = dir.path().join("in.km");
    std::fs::write(&input, "struct a(dynamic){x:u8;}").unwrap_or_else(|e| panic!("{e}"));
    let output = dir.path().join("out.km");
    let out = bridge(
        &[
            "fmt",
            &input.display().to_string(),
            "-o",
            &output.display().to_string(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let formatted = "struct a (dynamic) {\n    x: u8;\n}\n";
    assert_eq!(
        std::fs::read_to_string(&output).unwrap_or_default(),
        formatted
    );

    let out = bridge(&["fmt", "-w", &input.display().to_string()], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&input).unwrap_or_default(),
        formatted
    );
    let out = bridge(&["fmt", "--check", &input.display().to_string()], None);
    assert_eq!(out.status.code(), Some(0));
}
