//! Every fixture through the reference runner (wasmtime's component
//! runtime): each variant of each guest runs `fixtures/<guest>.invocations`,
//! and its transcript must match `fixtures/<guest>.expected` (`BLESS=1`
//! rewrites it from the first variant). The variants of a guest must also
//! agree with each other under `harness::compare`.

use anyhow::{Context, Result, bail, ensure};
use karmem_tests::fixtures::{
    ComponentFixture, component_fixtures, composed_fixtures, expected_path, guest_variants,
    invocations, wat_fixtures,
};
use karmem_tests::harness::{check_snapshot, compare, render_transcript, run_all};
use karmem_tests::reference::ReferenceRunner;

/// The guests with a test below; a built guest missing here fails
/// `every_built_guest_is_tested`.
const GUESTS: [&str; 6] = [
    "basics",
    "types",
    "resources",
    "edges",
    "wasi-reactor",
    "command",
];

/// The compositions of guests (`fixtures/components/composed/`) with a test
/// below; one missing here fails `every_composition_is_tested`.
const COMPOSED: [&str; 2] = ["consumer-provider", "consumer-quiet-provider"];

fn check_guest(guest: &str) -> Result<()> {
    let variants = guest_variants(guest)?;
    ensure!(
        !variants.is_empty(),
        "no components built for the guest `{guest}` in fixtures/components"
    );
    check_variants(guest, &variants)
}

fn check_composed(name: &str) -> Result<()> {
    let variants: Vec<_> = composed_fixtures()?
        .into_iter()
        .filter(|f| f.guest == name)
        .collect();
    ensure!(
        !variants.is_empty(),
        "no composition `{name}` built in fixtures/components/composed"
    );
    check_variants(name, &variants)
}

/// Runs `<guest>.invocations` on each variant: each must match
/// `<guest>.expected` and agree with the first.
fn check_variants(guest: &str, variants: &[ComponentFixture]) -> Result<()> {
    let invocations = invocations(guest)?;
    let mut first = None;
    for fixture in variants {
        let name = format!("{guest}.{}", fixture.variant);
        let mut runner = ReferenceRunner::from_file(&fixture.path)?;
        let runs =
            run_all(&mut runner, &invocations).with_context(|| format!("running `{name}`"))?;
        check_snapshot(&expected_path(guest), &render_transcript(&runs))
            .with_context(|| format!("`{name}`"))?;
        let outcomes: Vec<_> = runs
            .into_iter()
            .map(|(invocation, outcome)| (invocation.clone(), outcome))
            .collect();
        match &first {
            None => first = Some((fixture.variant.clone(), outcomes)),
            Some((first_variant, reference)) => {
                for ((invocation, expected), (_, actual)) in reference.iter().zip(&outcomes) {
                    compare(expected, actual).with_context(|| {
                        format!(
                            "line {}: `{name}` disagrees with `{guest}.{first_variant}`",
                            invocation.line
                        )
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// The WAT fixtures with a test below.
const WAT_FIXTURES: [&str; 13] = [
    "borrows",
    "churn",
    "compact-strings",
    "composed",
    "deep-copy",
    "latin1-utf16-strings",
    "multi-instance",
    "nested",
    "no-realloc",
    "resource-import",
    "resources-across-memories",
    "string-reallocs",
    "utf16-strings",
];

/// Compiles `fixtures/wat/<name>.wat` and checks its transcript.
fn check_wat(name: &str) -> Result<()> {
    let path = karmem_tests::fixtures::fixtures_dir()
        .join("wat")
        .join(format!("{name}.wat"));
    let bytes =
        wat::parse_file(&path).with_context(|| format!("compiling `{}`", path.display()))?;
    let mut runner = ReferenceRunner::new(&bytes).with_context(|| format!("loading `{name}`"))?;
    let invocations = invocations(name)?;
    let runs = run_all(&mut runner, &invocations).with_context(|| format!("running `{name}`"))?;
    check_snapshot(&expected_path(name), &render_transcript(&runs))
}

#[test]
fn every_wat_fixture_is_tested() -> Result<()> {
    let untested: Vec<String> = wat_fixtures()?
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !WAT_FIXTURES.contains(&name.as_str()))
        .collect();
    if !untested.is_empty() {
        bail!(
            "WAT fixtures without a test in tests/tests/reference.rs: {}",
            untested.join(", ")
        );
    }
    Ok(())
}

#[test]
fn every_built_guest_is_tested() -> Result<()> {
    let mut untested: Vec<String> = component_fixtures()?
        .into_iter()
        .map(|f| f.guest)
        .filter(|g| !GUESTS.contains(&g.as_str()))
        .collect();
    untested.dedup();
    if !untested.is_empty() {
        bail!(
            "guests without a test in tests/tests/reference.rs: {}",
            untested.join(", ")
        );
    }
    Ok(())
}

#[test]
fn every_composition_is_tested() -> Result<()> {
    let mut untested: Vec<String> = composed_fixtures()?
        .into_iter()
        .map(|f| f.guest)
        .filter(|g| !COMPOSED.contains(&g.as_str()))
        .collect();
    untested.dedup();
    if !untested.is_empty() {
        bail!(
            "compositions without a test in tests/tests/reference.rs: {}",
            untested.join(", ")
        );
    }
    Ok(())
}

#[test]
fn composed_consumer_provider() -> Result<()> {
    check_composed("consumer-provider")
}

#[test]
fn composed_consumer_quiet_provider() -> Result<()> {
    check_composed("consumer-quiet-provider")
}

#[test]
fn basics() -> Result<()> {
    check_guest("basics")
}

#[test]
fn types() -> Result<()> {
    check_guest("types")
}

#[test]
fn resources() -> Result<()> {
    check_guest("resources")
}

#[test]
fn edges() -> Result<()> {
    check_guest("edges")
}

#[test]
fn wasi_reactor() -> Result<()> {
    check_guest("wasi-reactor")
}

#[test]
fn command() -> Result<()> {
    check_guest("command")
}

#[test]
fn wat_borrows() -> Result<()> {
    check_wat("borrows")
}

#[test]
fn wat_compact_strings() -> Result<()> {
    check_wat("compact-strings")
}

#[test]
fn wat_churn() -> Result<()> {
    check_wat("churn")
}

#[test]
fn wat_composed() -> Result<()> {
    check_wat("composed")
}

#[test]
fn wat_deep_copy() -> Result<()> {
    check_wat("deep-copy")
}

#[test]
fn wat_latin1_utf16_strings() -> Result<()> {
    check_wat("latin1-utf16-strings")
}

#[test]
fn wat_multi_instance() -> Result<()> {
    check_wat("multi-instance")
}

#[test]
fn wat_nested() -> Result<()> {
    check_wat("nested")
}

#[test]
fn wat_no_realloc() -> Result<()> {
    check_wat("no-realloc")
}

#[test]
fn wat_resource_import() -> Result<()> {
    check_wat("resource-import")
}

#[test]
fn wat_resources_across_memories() -> Result<()> {
    check_wat("resources-across-memories")
}

#[test]
fn wat_string_reallocs() -> Result<()> {
    check_wat("string-reallocs")
}

#[test]
fn wat_utf16_strings() -> Result<()> {
    check_wat("utf16-strings")
}
