//! `karmem-bridge gen rust` through the real binary: output file and stdout,
//! typed accessors for unions, options, results, fixed arrays and bunches,
//! and a clear error for a schema that does not resolve. (That the generated
//! code compiles and round-trips is tested in `karmem-format`'s `gen_rust` test.)

#![allow(
    clippy::panic, clippy::unwrap_used, clippy::expect_used,
    reason = "test code: a failed step fails the test"
)]

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
    for needle in [
        "pub struct TemperatureBatchView",
        "pub struct TemperatureBatchBuilder",
        "pub struct TemperatureBatch<'v>",
        "pub fn alloc_readings",
        "0x4b95f515",
    ] {
        assert!(code.contains(needle), "generated code lacks `{needle}`");
    }
    let stdout = bridge(&["gen", "rust", "paper-fig32.km"]);
    assert!(stdout.status.success());
    assert_eq!(String::from_utf8_lossy(&stdout.stdout), code, "stdout and -o agree");
}

#[test]
fn every_construct_gets_a_typed_accessor() {
    let run = bridge(&["gen", "rust", "constructs.km"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let code = String::from_utf8_lossy(&run.stdout);
    for needle in [
        // A union view is an enum of variant views; its value type an enum.
        "pub enum ShapeView<'a> {",
        "    Circle(PointView<'a>),",
        "    Square(::karmem_format::typed::Fixed<'a, PointView<'a>, 4>),",
        "pub enum Shape {",
        // Options, results, fixed arrays, arrays of arrays, bunches.
        "pub fn maybe(&self) -> ::core::result::Result<::core::option::Option<u32>, ::karmem_format::Error>",
        "pub fn full(&self) -> ::core::result::Result<::core::result::Result<u32, &'a str>, ::karmem_format::Error>",
        "pub fn grid(&self) -> ::core::result::Result<::karmem_format::typed::Fixed<'a, ::karmem_format::typed::Fixed<'a, i32, 3>, 3>, ::karmem_format::Error>",
        "pub fn matrix(&self) -> ::core::result::Result<::karmem_format::typed::List<'a, ::karmem_format::view::Column<'a, f32>>, ::karmem_format::Error>",
        "pub fn events_bovoa(&self) -> ::core::result::Result<EventBovoa<'a>, ::karmem_format::Error>",
        "pub fn events_bovos(&self) -> ::core::result::Result<EventBovos<'a>, ::karmem_format::Error>",
        "pub fn shapes_soa(&self) -> ::core::result::Result<::karmem_format::typed::UnionSoa<'a, ShapeView<'a>>, ::karmem_format::Error>",
        "pub fn set_events_bovoa(&self, b: &mut ::karmem_format::Builder, v: &[Event])",
    ] {
        assert!(code.contains(needle), "generated code lacks `{needle}`");
    }
    assert!(!code.contains("_offset(&self)"), "no field falls back to a raw offset");
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
