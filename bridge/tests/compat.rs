//! `karmem-bridge compat OLD NEW` through the real binary: the report on stdout
//! equals the library's snapshot, exit 1 with a count when anything breaks.

#![allow(
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/idl/compat")
}

fn compat(case: &str) -> Output {
    let dir = compat_dir().join(case);
    Command::new(env!("CARGO_BIN_EXE_karmem-bridge"))
        .args(["compat", "old.km", "new.km"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run karmem-bridge: {e}"))
}

fn expected(case: &str) -> String {
    std::fs::read_to_string(compat_dir().join(case).join("expected.txt")).unwrap_or_default()
}

#[test]
fn safe_evolution_passes() {
    for case in ["paper-fig08-to-fig10", "safe-additions"] {
        let out = compat(case);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected(case));
        assert!(out.stderr.is_empty());
    }
}

#[test]
fn breaking_changes_are_listed_and_fail() {
    let out = compat("union-tags");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected("union-tags"));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: 3 breaking changes from `old.km` to `new.km`\n"
    );
    let out = compat("field-removed-and-retyped");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("breaking: struct `reading`: field `unit` removed\n")
    );
}

#[test]
fn invalid_schemas_are_diagnosed_first() {
    let out = Command::new(env!("CARGO_BIN_EXE_karmem-bridge"))
        .args(["compat", "../fail/unknown-type.km", "../constructs.km"])
        .current_dir(compat_dir())
        .output()
        .unwrap_or_else(|e| panic!("cannot run karmem-bridge: {e}"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("error: unknown type `pont`\n --> ../fail/unknown-type.km:3:9\n")
    );
}

#[test]
fn appended_parameters_are_safe_and_the_rest_of_a_signature_is_not() {
    let out = compat("function-evolution");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, expected("function-evolution"));
    for line in [
        "safe: interface `api`: parameter `times: u8` appended to function `greet`\n",
        "safe: interface `api`: result `count: u32` appended to function `greet`\n",
        "breaking: interface `api`: signature of function `shrink` changed from `(u32, u32) -> ()` to `(u32) -> ()`\n",
        "breaking: interface `frozen`: signature of function `ping` changed",
    ] {
        assert!(stdout.contains(line), "`{line}` missing from:\n{stdout}");
    }
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: 3 breaking changes from `old.km` to `new.km`\n"
    );
}
