//! Components built by real toolchains (`fixtures/toolchains/<name>/`:
//! componentize-py, C with clang + wasi-libc + wit-bindgen, componentize-js,
//! componentize-qjs), all implementing `fixtures/toolchains/wit/toolchain.wit`.
//!
//! For each directory holding a `component.wasm` and an `invocations` file:
//! 1. the reference runner (wasmtime's component runtime) produces the
//!    transcript kept in `expected` (`BLESS=1` rewrites it);
//! 2. the component lowered with `karmem_bridge::lower`'s default options
//!    (what `karmem-bridge lower` does with no flags) returns the same
//!    values with the same effects (stdout included), invocation by
//!    invocation, on wasmtime with the component model off and on wasmi,
//!    through the Karmem ABI runner of `adapters/tests/abi/karmem_runner.rs`.
//!
//! The toolchains must also agree with each other: every `*-app` gives the
//! same transcript for the invocations they share, and every `*-command`
//! prints the same.

#![allow(clippy::indexing_slicing, reason = "test code: an index out of range is a failed test")]

#[allow(dead_code, reason = "the shared runner has helpers only other tests use")]
#[path = "../../adapters/tests/abi/karmem_runner.rs"]
mod karmem_runner;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use karmem_adapters::abi::World;
use karmem_runner::{Engine, KarmemRunner};
use karmem_tests::fixtures::fixtures_dir;
use karmem_tests::harness::{Outcome, Runner, check_snapshot, compare, render_transcript, run_all};
use karmem_tests::invocation::{Invocation, read_invocations};
use karmem_tests::reference::ReferenceRunner;

/// The toolchain fixtures with a test below; a directory with a
/// `component.wasm` missing here fails `every_toolchain_fixture_is_tested`.
const TESTED: [&str; 7] = ["c-app", "c-command", "js-app", "js-command", "py-app", "py-command", "qjs-app"];

/// Fixtures whose default lowering does not agree yet, with the phrase the
/// first disagreement must contain; each must agree lowered with an edge
/// memory of its own (`--multi-memory`) instead. Shrink this list; never
/// grow it silently.
///
/// Empty since `c-app` agrees by default: Debian 12's wasi-libc (2022)
/// takes every page up to `sbrk(0)` as its heap at its first `malloc`, which
/// `lower` now recognises (docs/ABI.md §10), giving the Karmem edge a
/// partition of its own.
const DEFAULT_NOT_YET: [(&str, &str); 0] = [];

/// Fixtures checked on wasmtime only unless `KARMEM_TOOLCHAINS_WASMI=all`:
/// StarlingMonkey (SpiderMonkey's interpreter, 12 MB) on wasmi as the test
/// profile builds it (unoptimised, see the workspace `Cargo.toml`) took 858 s
/// (js-app) and 280 s (js-command); run with the variable set they agree
/// (checked 2026-12-07).
const WASMTIME_ONLY: [&str; 2] = ["js-app", "js-command"];

fn engines(name: &str) -> Vec<Engine> {
    let all = std::env::var("KARMEM_TOOLCHAINS_WASMI").is_ok_and(|v| v == "all");
    if all || !WASMTIME_ONLY.contains(&name) { vec![Engine::Wasmtime, Engine::Wasmi] } else { vec![Engine::Wasmtime] }
}

fn toolchains_dir() -> PathBuf {
    fixtures_dir().join("toolchains")
}

/// Every `fixtures/toolchains/<name>/` with a `component.wasm`, by name.
fn built_fixtures() -> Result<Vec<String>> {
    let dir = toolchains_dir();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing `{}`", dir.display()))? {
        let path = entry?.path();
        if path.join("component.wasm").is_file()
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Runs the checks above on `fixtures/toolchains/<name>/`, on a thread with
/// a large stack (the lowered modules are big).
fn check(name: &'static str) -> Result<()> {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || check_fixture(name))?
        .join()
        .map_err(|_| anyhow::anyhow!("the `{name}` thread panicked"))?
}

fn check_fixture(name: &str) -> Result<()> {
    let dir = toolchains_dir().join(name);
    let component = dir.join("component.wasm");
    let bytes = std::fs::read(&component).with_context(|| format!("reading `{}`", component.display()))?;
    let calls = read_invocations(&dir.join("invocations"))?;
    ensure!(!calls.is_empty(), "`{name}/invocations` has no invocation");

    let started = Instant::now();
    // StarlingMonkey imports `wasi:http`, which the reference does not serve: it traps if called
    let mut reference = ReferenceRunner::new(&bytes)
        .and_then(ReferenceRunner::trapping_unknown_imports)
        .with_context(|| format!("loading `{name}` on the reference"))?;
    let runs = run_all(&mut reference, &calls).with_context(|| format!("running `{name}` on the reference"))?;
    check_snapshot(&dir.join("expected"), &render_transcript(&runs)).with_context(|| format!("`{name}`"))?;
    let reference_time = started.elapsed();

    let not_yet = DEFAULT_NOT_YET.iter().find(|(n, _)| *n == name);
    let outcome = lower_and_compare(name, &bytes, &runs, false);
    match (outcome, not_yet) {
        (Ok(how), None) => eprintln!("{name}: reference {reference_time:.1?}; {how}"),
        (Ok(_), Some(_)) => bail!("`{name}` agrees lowered by default now: take it off `DEFAULT_NOT_YET`"),
        (Err(e), Some((_, phrase))) => {
            let message = format!("{e:#}");
            ensure!(message.contains(phrase), "`{name}` disagrees, but not with `{phrase}`: {message}");
            let how = lower_and_compare(name, &bytes, &runs, true)?;
            eprintln!("{name}: reference {reference_time:.1?}; default not yet ({phrase}); {how}");
        }
        (Err(e), None) => return Err(e),
    }
    Ok(())
}

/// Lowers `bytes` with `karmem_bridge::lower`'s defaults (or with
/// `--multi-memory`) and compares every run with the reference's outcome
/// on wasmtime and wasmi; says how it went and how long it took.
fn lower_and_compare(
    name: &str,
    bytes: &[u8],
    runs: &[(&Invocation, Outcome)],
    multi_memory: bool,
) -> Result<String> {
    let how = if multi_memory { " with --multi-memory" } else { "" };
    let started = Instant::now();
    let options = karmem_bridge::LowerOptions { multi_memory, ..karmem_bridge::LowerOptions::default() };
    let lowered = karmem_bridge::lower(bytes, &options).with_context(|| format!("lowering `{name}`{how}"))?;
    let lowering_time = started.elapsed();
    let mut features = wasmparser::WasmFeatures::default();
    features.set(wasmparser::WasmFeatures::MULTI_MEMORY, multi_memory);
    wasmparser::Validator::new_with_features(features)
        .validate_all(&lowered.module)
        .with_context(|| format!("validating lowered `{name}`{how}"))?;

    let started = Instant::now();
    let world = World::from_component(bytes)?;
    let mut compared = 0;
    let mut times = Vec::new();
    for engine in engines(name) {
        let loading = Instant::now();
        let mut candidate = KarmemRunner::from_lowered(engine, bytes, world.clone(), &lowered.module)
            .with_context(|| format!("loading the lowered `{name}`{how} on {engine:?}"))?;
        let loaded = loading.elapsed();
        let mut slowest = (std::time::Duration::ZERO, 0);
        for (invocation, expected) in runs {
            let at = || format!("{name}{how} on {engine:?}: line {}: `{}`", invocation.line, invocation.text);
            let call = Instant::now();
            let actual = candidate.invoke(invocation).with_context(at)?;
            slowest = slowest.max((call.elapsed(), invocation.line));
            compare(expected, &actual).with_context(at)?;
            compared += 1;
        }
        times.push(format!(
            "{engine:?}: loaded in {loaded:.1?}, calls in {:.1?} (slowest line {}, {:.1?})",
            loading.elapsed() - loaded,
            slowest.1,
            slowest.0
        ));
    }
    Ok(format!(
        "lowered{how} ({} bytes, WASI {:?}, warnings {:?}, notes {:?}) in {lowering_time:.1?}; {compared} invocations agree on \
         wasmtime and wasmi in {:.1?} ({})",
        lowered.module.len(),
        lowered.wasi,
        lowered.warnings,
        lowered.notes,
        started.elapsed(),
        times.join("; ")
    ))
}

#[test]
fn every_toolchain_fixture_is_tested() -> Result<()> {
    let built = built_fixtures()?;
    let untested: Vec<&String> = built.iter().filter(|n| !TESTED.contains(&n.as_str())).collect();
    ensure!(untested.is_empty(), "toolchain fixtures without a test in tests/tests/toolchains.rs: {untested:?}");
    for name in TESTED {
        ensure!(built.iter().any(|n| n == name), "`fixtures/toolchains/{name}/component.wasm` is missing");
        let dir = toolchains_dir().join(name);
        for file in ["invocations", "expected", "build.sh"] {
            ensure!(dir.join(file).is_file(), "`fixtures/toolchains/{name}/{file}` is missing");
        }
    }
    Ok(())
}

/// The blocks of a transcript (`expected`), by invocation line.
fn transcript_blocks(text: &str) -> BTreeMap<String, String> {
    let mut blocks: BTreeMap<String, String> = BTreeMap::new();
    let mut current = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("  ") {
            if let Some(key) = &current {
                let block = blocks.entry(String::clone(key)).or_default();
                block.push_str(rest);
                block.push('\n');
            }
        } else {
            current = Some(line.to_owned());
            blocks.entry(line.to_owned()).or_default();
        }
    }
    blocks
}

/// Every `*-<kind>` fixture with an `expected` transcript agrees with the
/// others on the invocations they share (and shares at least one).
fn toolchains_agree(kind: &str) -> Result<()> {
    let mut seen: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    for name in built_fixtures()?.into_iter().filter(|n| n.ends_with(&format!("-{kind}"))) {
        let path = toolchains_dir().join(&name).join("expected");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let blocks = transcript_blocks(&text);
        for (other, other_blocks) in &seen {
            let mut shared = 0;
            for (invocation, block) in &blocks {
                if let Some(other_block) = other_blocks.get(invocation) {
                    ensure!(
                        block == other_block,
                        "`{name}` and `{other}` disagree on `{invocation}`:\n{name}:\n{block}{other}:\n{other_block}"
                    );
                    shared += 1;
                }
            }
            ensure!(shared > 0, "`{name}` and `{other}` share no invocation");
        }
        seen.push((name, blocks));
    }
    ensure!(seen.len() >= 2, "fewer than two `*-{kind}` toolchain fixtures: {:?}", seen.iter().map(|s| &s.0).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn every_toolchains_app_gives_the_same_transcript() -> Result<()> {
    toolchains_agree("app")
}

#[test]
fn every_toolchains_command_prints_the_same() -> Result<()> {
    toolchains_agree("command")
}

#[test]
fn py_app() -> Result<()> {
    check("py-app")
}

#[test]
fn py_command() -> Result<()> {
    check("py-command")
}

#[test]
fn c_app() -> Result<()> {
    check("c-app")
}

#[test]
fn c_command() -> Result<()> {
    check("c-command")
}

#[test]
fn js_app() -> Result<()> {
    check("js-app")
}

#[test]
fn js_command() -> Result<()> {
    check("js-command")
}

#[test]
fn qjs_app() -> Result<()> {
    check("qjs-app")
}
