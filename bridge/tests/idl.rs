//! `karmem-bridge idl` through the real binary: WIT files, package directories
//! and components give the snapshots of `fixtures/wit/` (which the
//! `karmem-wit-import` corpus test owns), the output passes `check` and
//! `fmt --check`, overlay flags apply, and refusals exit 1 naming the item.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, bail};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wit")
}

fn bridge(args: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_karmem-bridge"))
        .args(args)
        .current_dir(corpus())
        .stdin(Stdio::null())
        .output()
        .context("cannot run karmem-bridge")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn expect_snapshot(args: &[&str], snapshot: &str) -> Result<()> {
    let out = bridge(args)?;
    if !out.status.success() {
        bail!("`idl {args:?}` failed: {}", text(&out.stderr));
    }
    let expected = std::fs::read_to_string(corpus().join(snapshot))?;
    if text(&out.stdout) != expected {
        bail!("`idl {args:?}` differs from `{snapshot}`:\n{}", text(&out.stdout));
    }
    Ok(())
}

#[test]
fn wit_file_directory_and_component_match_their_snapshots() -> Result<()> {
    expect_snapshot(&["idl", "resources.wit"], "resources.km")?;
    expect_snapshot(&["idl", "use-packages"], "use-packages.km")?;
    expect_snapshot(&["idl", "wasi-cli-command.wasm"], "wasi-cli-command.km")?;
    expect_snapshot(&["idl", "multiple-worlds.wit", "--world", "second"], "multiple-worlds.km")?;
    expect_snapshot(&["idl", "overlay.wit", "--overlay", "overlay.overlay"], "overlay.km")?;
    Ok(())
}

#[test]
fn output_passes_check_and_fmt() -> Result<()> {
    let path = std::env::temp_dir().join(format!("karmem-idl-test-{}.km", std::process::id()));
    let km = path.to_str().context("temp path is not UTF-8")?;
    let out = bridge(&[
        "idl",
        "mixed.wit",
        "-o",
        km,
        "--pattern",
        "store=singleton",
        "--memory",
        "test:mixed/store.scratch=import:write,export:read,4",
        "--place",
        "store.bucket_set.key=scratch",
    ])?;
    if !out.status.success() {
        bail!("idl failed: {}", text(&out.stderr));
    }
    let written = std::fs::read_to_string(km)?;
    assert!(written.contains("interface store (dynamic, singleton) {\n    scratch: memory (import: write, export: read, 4);"));
    assert!(written.contains("bucket_set: fn(self: borrow<bucket>, key: []u8 #string @ scratch, v: value)"));
    for args in [vec!["check", km], vec!["fmt", "--check", km]] {
        let out = bridge(&args)?;
        if !out.status.success() {
            bail!("`{args:?}` failed on the output: {}", text(&out.stderr));
        }
    }
    std::fs::remove_file(&path)?;
    Ok(())
}

#[test]
fn refusals_exit_1_and_name_the_item() -> Result<()> {
    let cases = [
        (vec!["idl", "fail/stream.wit"], "failed to map field `data` of record `chunked`"),
        (vec!["idl", "fail/async-function.wit"], "async function `compute`"),
        (vec!["idl", "multiple-worlds.wit"], "one must be explicitly chosen"),
        (vec!["idl", "overlay.wit", "--memory", "nope.m=import:read,export:read,1"], "interface `nope`"),
        (vec!["idl", "overlay.wit", "--pattern", "updater=sideways"], "unknown pattern `sideways`"),
        (vec!["idl", "overlay.wit", "--place", "updater.update.input=nowhere"], "has no memory `nowhere`"),
    ];
    for (args, needle) in cases {
        let out = bridge(&args)?;
        let stderr = text(&out.stderr);
        if out.status.code() != Some(1) || !stderr.starts_with("error: ") || !stderr.contains(needle) {
            bail!("`{args:?}`: expected exit 1 mentioning {needle:?}, got {:?}:\n{stderr}", out.status.code());
        }
    }
    Ok(())
}
