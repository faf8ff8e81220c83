//! `karmem-bridge gen rust` through the real binary: output file and stdout,
//! and a clear error for a schema that does not resolve. (That the generated
//! code compiles and round-trips is tested in `karmem-format`'s `gen_rust` test.)

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/idl")
}

fn bridge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_karmem-bridge"))
        .args(args)
        .current_dir(fixtures())
        .output()
        .unwrap_or_else(|e| panic!("cannot run karmem-bridge: {e}"))
}

#[test]
fn gen_rust_writes_views_and_builders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("fig32.rs");
    let run = bridge(&["gen", "rust", "paper-fig32.km", "-o", out.to_str().expect("utf-8 path")]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let code = std::fs::read_to_string(&out).expect("output written");
    for needle in ["pub struct TemperatureBatchView", "pub struct TemperatureBatchBuilder", "pub fn alloc_readings", "0x4b95f515"] {
        assert!(code.contains(needle), "generated code lacks `{needle}`");
    }
    let stdout = bridge(&["gen", "rust", "paper-fig32.km"]);
    assert!(stdout.status.success());
    assert_eq!(String::from_utf8_lossy(&stdout.stdout), code, "stdout and -o agree");
}

#[test]
fn gen_rust_reports_schema_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.km");
    std::fs::write(&bad, "struct s (dynamic) { a: nope; }").expect("write");
    let run = bridge(&["gen", "rust", bad.to_str().expect("utf-8 path")]);
    assert_eq!(run.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&run.stderr).contains("nope"), "{}", String::from_utf8_lossy(&run.stderr));
}
