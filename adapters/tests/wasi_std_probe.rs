//! A real Rust std program (`tests/wasi/std_probe`, built here for
//! `wasm32-wasip2`) lowered, linked with the shim, and run on wasmtime with
//! the component model off, wasmi and node: the same stdout, stderr, files
//! and exit code as the component on wasmtime's component runtime. Rust std
//! reaches WASI through wasi-libc, so this covers the calls ordinary
//! programs make (sleep through pollables, `read_dir`, `rename`, append,
//! metadata, stdin at end of file, `process::exit`).
//!
//! Skipped, with a note, when the `wasm32-wasip2` target is not installed.

#[path = "wasi/hosts.rs"]
mod hosts;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, ensure};
use hosts::Invocation;
use karmem_adapters::wasi::{WasiMode, add_command_start_to_bytes, link_preview2_shim};

fn target_installed() -> Result<bool> {
    let output = Command::new("rustc").args(["--print", "sysroot"]).output().context("failed to run rustc")?;
    let sysroot = PathBuf::from(String::from_utf8(output.stdout)?.trim());
    Ok(sysroot.join("lib/rustlib/wasm32-wasip2").exists())
}

fn build_probe() -> Result<Vec<u8>> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasi/std_probe/Cargo.toml");
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasi-std-probe");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--offline", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .context("failed to run cargo for the std probe")?;
    ensure!(status.success(), "building the std probe failed");
    let wasm = target_dir.join("wasm32-wasip2/release/wasi-std-probe.wasm");
    std::fs::read(&wasm).with_context(|| format!("failed to read {}", wasm.display()))
}

#[test]
fn rust_std_program_runs_the_same_on_preview1_hosts() -> Result<()> {
    if !target_installed()? {
        eprintln!("the wasm32-wasip2 target is not installed: skipped");
        return Ok(());
    }
    let component = build_probe()?;
    let merged = karmem_core_lowering::lower(&component, &karmem_core_lowering::Options::default())?;
    let (linked, _) = link_preview2_shim(&merged, WasiMode::Shim)?;
    let lowered = add_command_start_to_bytes(&linked)?;
    let invocation = Invocation {
        args: vec!["probe".into(), "a b".into()],
        env: vec![("B".into(), "2".into()), ("A".into(), "1=x".into())],
        files: Vec::new(),
    };
    let reference = hosts::run_component(&component, &invocation, None)?;
    ensure!(reference.stdout.contains("hash 1"), "the reference did not finish: {reference:?}");
    assert_eq!(reference.exit_code, Some(1), "`process::exit(3)` is `exit(err)` in WASI 0.2");
    assert_eq!(hosts::run_wasmtime(&lowered, &invocation)?, reference, "wasmtime (preview1)");
    assert_eq!(hosts::run_wasmi(&lowered, &invocation)?, reference, "wasmi");
    match hosts::run_node(&lowered, &invocation)? {
        Some(outcome) => assert_eq!(outcome, reference, "node"),
        None => eprintln!("node is not installed: the node host was skipped"),
    }
    Ok(())
}
