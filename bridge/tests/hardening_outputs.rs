//! Nothing lost: every subcommand that writes a file (`fmt -o`, `fmt -w`,
//! `idl -o`, `lower -o`, `gen rust -o`) replaces it atomically — a temporary
//! file beside it, then a rename, so the output is a new inode and no
//! temporary file is left — and a failed run leaves an existing output as it
//! was. (The malformed corpus, `tests/malformed.rs`, checks the failure side
//! for every case; this checks the success side and a failure per command.)

#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn bridge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_karmem-bridge")).args(args).output().unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// A command writing `{out}`: run where `{out}` already exists; it must be
/// replaced by a new file (a rename, not a rewrite in place) with new bytes,
/// leaving nothing else in the directory.
fn replaces_atomically(args: &[&str], out_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(out_name);
    std::fs::write(&out, b"old contents\n").unwrap();
    let before = std::fs::metadata(&out).unwrap().ino();
    let out_arg = out.display().to_string();
    let args: Vec<&str> = args.iter().map(|a| if *a == "{out}" { out_arg.as_str() } else { a }).collect();
    let output = bridge(&args);
    assert!(output.status.success(), "{args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    let after = std::fs::metadata(&out).unwrap().ino();
    assert_ne!(before, after, "{args:?} rewrote the output in place instead of renaming a new file over it");
    assert_ne!(std::fs::read(&out).unwrap(), b"old contents\n", "{args:?} did not write");
    assert_eq!(names_in(dir.path()), vec![out_name.to_string()], "{args:?} left files behind");
}

/// A failing command writing `{out}` leaves the existing bytes (and inode).
fn failure_leaves_output(args: &[&str], out_name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(out_name);
    std::fs::write(&out, b"keep me\n").unwrap();
    let before = std::fs::metadata(&out).unwrap().ino();
    let out_arg = out.display().to_string();
    let args: Vec<&str> = args.iter().map(|a| if *a == "{out}" { out_arg.as_str() } else { a }).collect();
    let output = bridge(&args);
    assert_eq!(output.status.code(), Some(1), "{args:?}:\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me\n", "{args:?} changed the existing output");
    assert_eq!(std::fs::metadata(&out).unwrap().ino(), before, "{args:?} replaced the existing output");
    assert_eq!(names_in(dir.path()), vec![out_name.to_string()], "{args:?} left files behind");
}

#[test]
fn fmt_output_is_replaced_atomically() {
    let input = fixtures().join("idl/constructs.km").display().to_string();
    replaces_atomically(&["fmt", &input, "-o", "{out}"], "out.km");
    failure_leaves_output(&["fmt", &fixtures().join("malformed/idl-fmt-syntax-error.km").display().to_string(), "-o", "{out}"], "out.km");
}

#[test]
fn fmt_write_replaces_the_input_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("messy.km");
    std::fs::write(&file, "struct   s (dynamic) { x: u8; }\n").unwrap();
    let before = std::fs::metadata(&file).unwrap().ino();
    let output = bridge(&["fmt", "-w", &file.display().to_string()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_ne!(std::fs::metadata(&file).unwrap().ino(), before, "`fmt -w` rewrote the file in place");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "struct s (dynamic) {\n    x: u8;\n}\n");
    assert_eq!(names_in(dir.path()), vec!["messy.km".to_string()]);
}

#[test]
fn idl_output_is_replaced_atomically() {
    let input = fixtures().join("wit/records.wit");
    let input = if input.exists() { input } else { fixtures().join("wit/enums.wit") };
    replaces_atomically(&["idl", &input.display().to_string(), "-o", "{out}"], "out.km");
    failure_leaves_output(&["idl", &fixtures().join("malformed/wit-async.wit").display().to_string(), "-o", "{out}"], "out.km");
}

#[test]
fn lower_output_is_replaced_atomically() {
    let input = fixtures().join("lowering/scalar-export/component.wat").display().to_string();
    replaces_atomically(&["lower", &input, "-o", "{out}"], "out.wasm");
    replaces_atomically(&["lower", &input, "--wat", "-o", "{out}"], "out.wat");
    failure_leaves_output(&["lower", &fixtures().join("malformed/unsupported-stream.wat").display().to_string(), "-o", "{out}"], "out.wasm");
}

#[test]
fn gen_output_is_replaced_atomically() {
    let input = fixtures().join("idl/paper-fig32.km").display().to_string();
    replaces_atomically(&["gen", "rust", &input, "-o", "{out}"], "out.rs");
    failure_leaves_output(&["gen", "rust", &fixtures().join("malformed/idl-gen-unresolved.km").display().to_string(), "-o", "{out}"], "out.rs");
}

/// The output directory gains no temporary file even when the final rename
/// fails (the output path is a directory).
#[test]
fn a_failed_rename_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("out.km")).unwrap();
    let input = fixtures().join("idl/paper-fig01.km").display().to_string();
    let output = bridge(&["fmt", &input, "-o", &dir.path().join("out.km").display().to_string()]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(names_in(dir.path()), vec!["out.km".to_string()]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("out.km`"), "the error names the output");
}
