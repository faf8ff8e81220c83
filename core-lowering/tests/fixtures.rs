//! Snapshot tests over `fixtures/lowering/<case>/`: each `component.wat` is
//! lowered and compared with `lowered.wat` (success) or `error.txt`
//! (refusal). `BLESS=1` rewrites the expected files. A file `flags` in a
//! case folder may hold `--multi-memory`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use karmem_core_lowering::{Options, lower, to_wat};

fn cases() -> Result<Vec<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/lowering");
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(&root).with_context(|| format!("reading `{}`", root.display()))? {
        let path = entry?.path();
        if path.join("component.wat").exists() || path.join("component.wasm").exists() {
            cases.push(path);
        }
    }
    cases.sort();
    Ok(cases)
}

fn input(case: &Path) -> Result<Vec<u8>> {
    let wasm = case.join("component.wasm");
    if wasm.exists() {
        return Ok(std::fs::read(wasm)?);
    }
    Ok(wat::parse_file(case.join("component.wat"))?)
}

fn check(expected_path: &Path, actual: &str, bless: bool) -> Result<()> {
    if bless {
        std::fs::write(expected_path, actual)?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(expected_path)
        .with_context(|| format!("missing `{}` (run with BLESS=1)", expected_path.display()))?;
    if expected != actual {
        bail!("`{}` differs from the actual output:\n{actual}", expected_path.display());
    }
    Ok(())
}

#[test]
fn lowering_fixtures() -> Result<()> {
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for case in cases()? {
        let flags = std::fs::read_to_string(case.join("flags")).unwrap_or_default();
        let options = Options { multi_memory: flags.contains("--multi-memory"), ..Options::default() };
        let result = (|| -> Result<()> {
            let bytes = input(&case)?;
            match lower(&bytes, &options) {
                Ok(lowered) => {
                    // Deterministic: a second run gives the same bytes.
                    let again = lower(&bytes, &options)?;
                    if again != lowered {
                        bail!("lowering twice gave different bytes");
                    }
                    let _ = std::fs::remove_file(case.join("error.txt"));
                    // Large inputs keep no text snapshot (noted by `no-snapshot`).
                    if !case.join("no-snapshot").exists() {
                        check(&case.join("lowered.wat"), &to_wat(&lowered)?, bless)?;
                    }
                }
                Err(e) => {
                    // Only a case that exists to be refused may be blessed
                    // into an error: a new failure elsewhere is a failure.
                    let refusal_case = case.file_name().is_some_and(|n| n.to_string_lossy().contains("refuse"));
                    if !(case.join("error.txt").exists() || (bless && refusal_case)) {
                        bail!("lowering failed: {e:?}");
                    }
                    check(&case.join("error.txt"), &format!("{e:#}\n"), bless)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            failures.push(format!("{}: {e:#}", case.display()));
        }
    }
    if !failures.is_empty() {
        bail!("{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}

/// wit-component's shim/fixup indirection is resolved in real components:
/// every Rust `wasm32-wasip2` fixture has shims, all of them resolve, and
/// no shim function (a body that only forwards to `call_indirect`)
/// survives into the output.
#[test]
fn shims_of_real_components_resolve() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/components");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if !path.to_string_lossy().ends_with(".p2.wasm") {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let (lowered, stats) = karmem_core_lowering::lower_with_stats(&bytes, &Options::default())?;
        if stats.shims_resolved == 0 {
            bail!("`{}`: no shim resolved", path.display());
        }
        for payload in wasmparser::Parser::new(0).parse_all(&lowered) {
            if let wasmparser::Payload::CodeSectionEntry(body) = payload? {
                let mut ops = body.get_operators_reader()?;
                let mut all = Vec::new();
                while !ops.eof() {
                    all.push(ops.read()?);
                }
                use wasmparser::Operator as Op;
                let shim = match all.as_slice() {
                    [gets @ .., Op::I32Const { .. }, Op::CallIndirect { .. }, Op::End] => gets
                        .iter()
                        .enumerate()
                        .all(|(i, op)| matches!(op, Op::LocalGet { local_index } if *local_index as usize == i)),
                    _ => false,
                };
                if shim {
                    bail!("`{}`: a shim survived", path.display());
                }
            }
        }
        checked += 1;
    }
    if checked == 0 {
        bail!("no `*.p2.wasm` fixture components found in `{}`", dir.display());
    }
    Ok(())
}

/// componentize-py places its data with `__memory_base + offset` global
/// initialisers (extended-const); once `__memory_base` is a known constant
/// the lowering folds them, so the output loads on engines without
/// extended-const (node 20).
#[test]
fn folded_global_initialisers_need_no_extended_const() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/lowering/componentize-py/component.wasm");
    let bytes = std::fs::read(&path)?;
    let without = wasmparser::WasmFeatures::default()
        - wasmparser::WasmFeatures::EXTENDED_CONST;
    let mut component_features = without;
    component_features.insert(wasmparser::WasmFeatures::COMPONENT_MODEL);
    if wasmparser::Validator::new_with_features(component_features).validate_all(&bytes).is_ok() {
        bail!("the input no longer uses extended-const: this test checks nothing");
    }
    let lowered = lower(&bytes, &Options::default())?;
    wasmparser::Validator::new_with_features(without)
        .validate_all(&lowered)
        .map_err(|e| anyhow::anyhow!("the output needs a feature it should not: {e}"))?;
    Ok(())
}
