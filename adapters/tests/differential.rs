//! Must-show: fixture components lowered with the Karmem ABI and called
//! through `karmem-format`'s `Value` codec return what the reference runner
//! (wasmtime's component runtime) returns, invocation by invocation, with
//! the same host-observed effects; the host serves the fixtures' imports
//! over the Karmem ABI. Components that import WASI are left to the WASI
//! shim's tests (as in `tests/tests/lowering.rs`). Every fixture component,
//! WASI or not, must get a Karmem-ABI module that validates.

#[path = "abi/karmem_runner.rs"]
mod karmem_runner;

use anyhow::{Context, Result, bail};
use karmem_runner::{KarmemRunner, lower_karmem};
use karmem_tests::fixtures::{component_fixtures, invocations};
use karmem_tests::harness::{Runner, compare};
use karmem_tests::reference::ReferenceRunner;

fn imports_wasi(bytes: &[u8]) -> Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::ImportSection(reader) = payload? {
            for import in reader.into_imports() {
                let import = import?;
                if import.module.starts_with("wasi") {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

#[test]
fn every_fixture_component_gets_a_karmem_abi_module() -> Result<()> {
    let fixtures = component_fixtures()?;
    assert!(!fixtures.is_empty(), "no fixture components");
    for fixture in fixtures {
        let bytes = std::fs::read(&fixture.path)?;
        let (_, lowered) = lower_karmem(&bytes).with_context(|| format!("`{}`", fixture.path.display()))?;
        wasmparser::Validator::new().validate_all(&lowered)?;
    }
    Ok(())
}

#[test]
fn karmem_abi_agrees_with_the_reference() -> Result<()> {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(compare_all)?
        .join()
        .map_err(|_| anyhow::anyhow!("the comparison thread panicked"))?
}

fn compare_all() -> Result<()> {
    let engine = wasmtime::Engine::default();
    let mut compared = 0;
    let mut guests = Vec::new();
    for fixture in component_fixtures()? {
        let bytes = std::fs::read(&fixture.path)?;
        let canonical = karmem_core_lowering::lower(&bytes, &karmem_core_lowering::Options::default())?;
        if imports_wasi(&canonical)? {
            continue;
        }
        let (world, lowered) = lower_karmem(&bytes)?;
        guests.push(fixture.guest.clone());
        let calls = invocations(&fixture.guest)?;
        let mut reference = ReferenceRunner::new(&bytes)?;
        let mut candidate = KarmemRunner::from_lowered(&engine, &bytes, world, &lowered)
            .with_context(|| format!("loading the Karmem-ABI `{}`", fixture.path.display()))?;
        for invocation in &calls {
            let expected = reference.invoke(invocation)?;
            let actual = candidate
                .invoke(invocation)
                .with_context(|| format!("{}: line {}: `{}`", fixture.path.display(), invocation.line, invocation.text))?;
            compare(&expected, &actual).with_context(|| {
                format!("{}: line {}: `{}`", fixture.path.display(), invocation.line, invocation.text)
            })?;
            compared += 1;
        }
    }
    if compared == 0 {
        bail!("no invocation was compared");
    }
    eprintln!("compared {compared} invocations of {guests:?}");
    Ok(())
}
