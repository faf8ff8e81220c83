//! Lowered fixture components against the reference runner.
//!
//! Every component under `fixtures/components/` and every WAT component
//! under `fixtures/wat/` must lower and validate. Components without WASI
//! imports (those the canonical host can serve) are also run: each
//! invocation goes through the reference runner (wasmtime's component
//! runtime) and through the lowered module on wasmtime core with the
//! component model off, driven by the canonical-ABI host, and the outcomes
//! must agree value for value.

use anyhow::{Context, Result, bail};
use karmem_core_lowering::{Options, lower};
use karmem_tests::canonical_host::CanonicalRunner;
use karmem_tests::fixtures::{component_fixtures, invocations, wat_fixtures};
use karmem_tests::harness::{Runner, compare};
use karmem_tests::reference::ReferenceRunner;

fn validate(bytes: &[u8]) -> Result<()> {
    validate_with(bytes, false)
}

fn validate_with(bytes: &[u8], multi_memory: bool) -> Result<()> {
    let mut features = wasmparser::WasmFeatures::default();
    features.set(wasmparser::WasmFeatures::MULTI_MEMORY, multi_memory);
    wasmparser::Validator::new_with_features(features)
        .validate_all(bytes)
        .context("the lowered module does not validate")?;
    Ok(())
}

#[test]
fn every_fixture_component_lowers_and_validates() -> Result<()> {
    let fixtures = component_fixtures()?;
    assert!(!fixtures.is_empty(), "no fixture components found");
    for fixture in fixtures {
        let bytes = std::fs::read(&fixture.path)?;
        let lowered = lower(&bytes, &Options::default())
            .with_context(|| format!("lowering `{}`", fixture.path.display()))?;
        validate(&lowered).with_context(|| format!("`{}`", fixture.path.display()))?;
    }
    Ok(())
}

/// WAT fixtures that need what lowering does not do yet, with the phrase
/// their refusal must contain. Shrink this list; never grow it silently.
const NOT_YET: [(&str, &str); 0] = [];

/// WAT fixtures whose instances own separate memories: refused by default
/// (the message names both ways out), lowered with `--multi-memory`.
const MULTI_MEMORY: [&str; 6] =
    ["churn", "compact-strings", "composed", "deep-copy", "resources-across-memories", "string-reallocs"];

fn options_for(name: &str) -> Options {
    Options { multi_memory: MULTI_MEMORY.contains(&name), ..Options::default() }
}

#[test]
fn every_wat_fixture_component_lowers_and_validates() -> Result<()> {
    if !karmem_tests::fixtures::fixtures_dir().join("wat").exists() {
        return Ok(());
    }
    for (name, path) in wat_fixtures()? {
        let bytes = wat::parse_file(&path)?;
        if !wasmparser::Parser::is_component(&bytes) {
            continue;
        }
        let options = options_for(&name);
        if options.multi_memory {
            let refused = lower(&bytes, &Options::default()).err().map(|e| format!("{e:#}")).unwrap_or_default();
            if !(refused.contains("--multi-memory") && refused.contains("compose them through the runtime")) {
                bail!("`{name}` without --multi-memory must be refused naming both options, got: {refused}");
            }
        }
        let result = lower(&bytes, &options);
        match (result, NOT_YET.iter().find(|(n, _)| *n == name)) {
            (Ok(lowered), None) => {
                validate_with(&lowered, options.multi_memory).with_context(|| format!("`{name}`"))?
            }
            (Ok(_), Some(_)) => bail!("`{name}` lowers now: take it off `NOT_YET`"),
            (Err(e), Some((_, phrase))) => {
                let message = format!("{e:#}");
                if !message.contains(phrase) {
                    bail!("`{name}` is refused, but not for `{phrase}`: {message}");
                }
            }
            (Err(e), None) => return Err(e.context(format!("lowering `{name}`"))),
        }
    }
    Ok(())
}

/// Does the lowered module import anything the canonical host cannot serve?
fn needs_wasi(lowered: &[u8]) -> Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(lowered) {
        if let wasmparser::Payload::ImportSection(reader) = payload? {
            for import in reader.into_imports() {
                if import?.module.starts_with("wasi:") {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// Debug builds of the runtimes recurse deeply while compiling; run the
/// comparison on a thread with room for that.
#[test]
fn lowered_exports_agree_with_the_reference() -> Result<()> {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(compare_all)?
        .join()
        .map_err(|_| anyhow::anyhow!("the comparison thread panicked"))?
}

fn compare_all() -> Result<()> {
    let mut compared = 0;
    let mut inputs: Vec<(String, String, Vec<u8>, Options)> = Vec::new();
    for fixture in component_fixtures()? {
        let bytes = std::fs::read(&fixture.path)?;
        inputs.push((fixture.path.display().to_string(), fixture.guest.clone(), bytes, Options::default()));
    }
    if karmem_tests::fixtures::fixtures_dir().join("wat").exists() {
        for (name, path) in wat_fixtures()? {
            let has_calls = karmem_tests::fixtures::fixtures_dir().join(format!("{name}.invocations")).exists();
            if NOT_YET.iter().any(|(n, _)| *n == name) || !has_calls {
                continue;
            }
            let options = options_for(&name);
            inputs.push((path.display().to_string(), name.clone(), wat::parse_file(&path)?, options));
        }
    }
    for (label, calls_name, bytes, options) in inputs {
        let lowered = lower(&bytes, &options).with_context(|| format!("lowering `{label}`"))?;
        if needs_wasi(&lowered)? {
            continue;
        }
        let calls = invocations(&calls_name)?;
        let mut reference = ReferenceRunner::new(&bytes)?;
        let mut candidate = CanonicalRunner::new(&bytes, &lowered)
            .with_context(|| format!("loading the lowered `{label}`"))?;
        for invocation in &calls {
            let expected = reference.invoke(invocation)?;
            let actual = candidate
                .invoke(invocation)
                .with_context(|| format!("{label}: line {}", invocation.line))?;
            compare(&expected, &actual)
                .with_context(|| format!("{label}: line {}: `{}`", invocation.line, invocation.text))?;
            compared += 1;
        }
    }
    if compared == 0 {
        bail!("no invocation was compared: no fixture component without WASI imports");
    }
    Ok(())
}
