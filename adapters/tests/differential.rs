//! Must-show: every fixture component — each guest in every variant it is
//! built as (`core`, `p2`, `p1-reactor`, `p1-command`) — lowered the way
//! `karmem-bridge lower` does by default (`--abi karmem`, `--wasi shim`) and
//! called through `karmem-format`'s `Value` codec returns what the reference
//! runner (wasmtime's component runtime) returns, invocation by invocation,
//! value for value, with the same host-observed effects (host imports,
//! stdout, stderr, files), on two core runtimes: wasmtime with the
//! component model off and wasmi. The host serves the fixtures' own imports
//! over the Karmem ABI and WASI through each runtime's preview1
//! implementation. A wasip1 component whose adapter the default drops is
//! also compared lowered with the adapter kept (`--wasi shim`), and every
//! component lowered with a Karmem edge memory (`--multi-memory`), on wasmi.
//! Compositions of guests (`components/composed/`) are compared lowered into
//! one memory of partitions.

// Test helpers index data they built themselves (clippy.toml exempts only
// `#[test]` functions).
#![allow(clippy::indexing_slicing, reason = "test code: an index out of range is a failed test")]

#[path = "abi/karmem_runner.rs"]
mod karmem_runner;

use anyhow::{Context, Result, bail, ensure};
use karmem_adapters::wasi::WasiMode;
use karmem_runner::{Engine, KarmemRunner, lower_karmem, lower_karmem_full, lower_karmem_with};
use karmem_tests::fixtures::{component_fixtures, composed_fixtures, invocations};
use karmem_tests::harness::{Runner, compare};
use karmem_tests::reference::ReferenceRunner;

#[test]
fn every_fixture_component_gets_a_karmem_abi_module() -> Result<()> {
    let fixtures = component_fixtures()?;
    assert!(!fixtures.is_empty(), "no fixture components");
    for fixture in fixtures {
        let bytes = std::fs::read(&fixture.path)?;
        let (_, lowered) = lower_karmem(&bytes).with_context(|| format!("`{}`", fixture.path.display()))?;
        wasmparser::Validator::new().validate_all(&lowered)?;
        // only preview1 WASI and Karmem ABI imports are left
        for payload in wasmparser::Parser::new(0).parse_all(&lowered) {
            if let wasmparser::Payload::ImportSection(reader) = payload? {
                for import in reader.into_imports() {
                    let import = import?;
                    ensure!(
                        import.module == "wasi_snapshot_preview1" || import.module.starts_with("karmem:"),
                        "`{}` imports `{}`/`{}`",
                        fixture.path.display(),
                        import.module,
                        import.name
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn karmem_abi_agrees_with_the_reference_on_wasmtime_and_wasmi() -> Result<()> {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(compare_all)?
        .join()
        .map_err(|_| anyhow::anyhow!("the comparison thread panicked"))?
}

fn compare_all() -> Result<()> {
    let mut compared = 0;
    let mut variants = Vec::new();
    for fixture in component_fixtures()? {
        let bytes = std::fs::read(&fixture.path)?;
        let name = fixture.path.display().to_string();
        let calls = invocations(&fixture.guest)?;
        let mut reference = ReferenceRunner::new(&bytes)?;
        let mut expected = Vec::with_capacity(calls.len());
        for invocation in &calls {
            expected.push(reference.invoke(invocation)?);
        }
        let (world, lowered, mode) = lower_karmem_full(&bytes, false, false).with_context(|| format!("lowering `{name}`"))?;
        // wasi-libc's dlmalloc reads `memory.size` only through `sbrk(0)`,
        // which returns it: no allocator warning for these guests
        ensure!(lowered.warnings.is_empty(), "`{name}` warns: {:?}", lowered.warnings);
        let mut lowerings = vec![(world, lowered.module, mode)];
        if mode == WasiMode::Preview1 {
            // and with the adapter kept (`--wasi shim`), the other way to lower it
            lowerings.push(lower_karmem_with(&bytes, true).with_context(|| format!("lowering `{name}` (shim)"))?);
        }
        // and with the Karmem edge in a memory of its own (`--multi-memory`),
        // on wasmi (the cheaper runtime to instantiate)
        let (edge_world, edge, edge_mode) =
            lower_karmem_full(&bytes, false, true).with_context(|| format!("lowering `{name}` (edge memory)"))?;
        let edge = (edge_world, edge.module, edge_mode);
        let runs = lowerings
            .iter()
            .flat_map(|l| [(l, Engine::Wasmtime, false), (l, Engine::Wasmi, false)])
            .chain([(&edge, Engine::Wasmi, true)]);
        for ((world, lowered, mode), engine, with_edge) in runs {
            let (world, lowered, mode) = (world, lowered, *mode);
            let how = if with_edge { format!("{mode}, edge memory") } else { mode.to_string() };
            let mut candidate = KarmemRunner::from_lowered(engine, &bytes, world.clone(), lowered)
                .with_context(|| format!("loading the Karmem-ABI `{name}` on {engine:?}"))?;
            for (invocation, expected) in calls.iter().zip(&expected) {
                let at = || format!("{name} ({how}) on {engine:?}: line {}: `{}`", invocation.line, invocation.text);
                // Exit codes included: every build exits as the component
                // runtime reports (docs/LOWERING.md, "Exit codes").
                let actual = candidate.invoke(invocation).with_context(at)?;
                compare(expected, &actual).with_context(at)?;
                compared += 1;
            }
        }
        let hows: Vec<String> = lowerings.iter().map(|l| l.2.to_string()).chain([format!("{edge_mode} with an edge memory")]).collect();
        variants.push(format!("{}.{} ({})", fixture.guest, fixture.variant, hows.join(", ")));
    }
    for guest in ["basics", "edges", "resources", "types", "wasi-reactor"] {
        for variant in ["p2", "p1-reactor"] {
            let name = format!("{guest}.{variant}");
            ensure!(variants.iter().any(|v| v.starts_with(&format!("{name} "))), "`{name}` was not compared");
        }
    }
    if compared == 0 {
        bail!("no invocation was compared");
    }
    eprintln!("compared {compared} invocations (both runtimes) of {variants:?}");
    Ok(())
}

/// Compositions of guests (`fixtures/components/composed/`, built by
/// `wasm-tools compose`), whose instances own separate memories and each
/// import WASI: lowered like [`SEPARATE_MEMORIES`] with `--multi-memory`,
/// then every memory made a partition of one (`karmem_partition::one_memory`,
/// what `lower` does by default), and compared on both runtimes. The
/// multi-memory module itself runs only if a preview1 host can serve it:
/// WASI into a memory other than `memory` is imported as
/// `wasi_snapshot_preview1!memory<k>` (docs/LOWERING.md, "The same import in
/// several memories"), which only the partition pass resolves.
const COMPOSED: [&str; 2] = ["consumer-provider", "consumer-quiet-provider"];

/// Compositions that do not agree yet, with what their first disagreement
/// must say. Shrink this list; never grow it silently.
const COMPOSED_NOT_YET: [(&str, &str); 0] = [];

#[test]
fn compositions_agree_with_the_reference_on_wasmtime_and_wasmi() -> Result<()> {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(compare_composed)?
        .join()
        .map_err(|_| anyhow::anyhow!("the comparison thread panicked"))?
}

fn compare_composed() -> Result<()> {
    let mut compared = 0;
    let mut hows = Vec::new();
    for fixture in composed_fixtures()? {
        let name = format!("{}.{}", fixture.guest, fixture.variant);
        let not_yet = COMPOSED_NOT_YET.iter().find(|(n, _)| *n == fixture.guest);
        match (compare_composition(&fixture.path, &fixture.guest, &mut compared), not_yet) {
            (Ok(how), None) => hows.push(format!("{name}: {how}")),
            (Ok(_), Some(_)) => bail!("`{name}` agrees now: take it off `COMPOSED_NOT_YET`"),
            (Err(e), Some((_, phrase))) => {
                let message = format!("{e:#}");
                ensure!(message.contains(phrase), "`{name}` disagrees, but not with `{phrase}`: {message}");
                hows.push(format!("{name}: not yet"));
            }
            (Err(e), None) => return Err(e),
        }
    }
    for name in COMPOSED {
        ensure!(hows.iter().any(|h| h.starts_with(&format!("{name}."))), "`{name}` was not compared");
    }
    eprintln!("compared {compared} invocations (both runtimes) of {hows:?}");
    Ok(())
}

/// Compares one composition; says how it was lowered.
fn compare_composition(path: &std::path::Path, guest: &str, compared: &mut usize) -> Result<&'static str> {
    let bytes = std::fs::read(path)?;
    let name = path.display().to_string();
    let calls = invocations(guest)?;
    let mut reference = ReferenceRunner::new(&bytes)?;
    let mut expected = Vec::with_capacity(calls.len());
    for invocation in &calls {
        expected.push(reference.invoke(invocation)?);
    }
    let refused = lower_karmem(&bytes).err().map(|e| format!("{e:#}")).unwrap_or_default();
    ensure!(
        refused.contains("own separate memories") && refused.contains("--multi-memory"),
        "`{name}` in one memory must be refused naming `--multi-memory`, got: {refused}"
    );
    let (world, lowered, _) =
        lower_karmem_full(&bytes, false, true).with_context(|| format!("lowering `{name}` (multi-memory)"))?;
    ensure!(lowered.warnings.is_empty(), "`{name}` with an edge memory warns: {:?}", lowered.warnings);
    let one = karmem_partition::one_memory(&lowered.module, &karmem_partition::Quotas::new())
        .with_context(|| format!("partitioning `{name}`"))?;
    let mut modules = vec![("one memory", &one)];
    let how = if preview1_in_other_memories(&lowered.module)? {
        "one memory"
    } else {
        modules.push(("multi-memory", &lowered.module));
        "one memory, multi-memory"
    };
    for (how, module) in modules {
        for engine in [Engine::Wasmtime, Engine::Wasmi] {
            let mut candidate = KarmemRunner::from_lowered(engine, &bytes, world.clone(), module)
                .with_context(|| format!("loading the Karmem-ABI `{name}` ({how}) on {engine:?}"))?;
            for (invocation, expected) in calls.iter().zip(&expected) {
                let at = || format!("{name} ({how}) on {engine:?}: line {}: `{}`", invocation.line, invocation.text);
                let actual = candidate.invoke(invocation).with_context(at)?;
                compare(expected, &actual).with_context(at)?;
                *compared += 1;
            }
        }
    }
    Ok(how)
}

/// Does `module` import preview1 into a memory other than `memory`
/// (`wasi_snapshot_preview1!memory<k>`), which no preview1 host serves?
fn preview1_in_other_memories(module: &[u8]) -> Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ImportSection(reader) = payload? {
            for import in reader.into_imports() {
                if karmem_partition::preview1_memory_of(import?.module).is_some_and(|memory| memory.is_some()) {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// WAT fixtures whose instances own separate memories: the canonical
/// lowering refuses them unless asked to keep the memories apart; with the
/// Karmem edge in a memory of its own they are compared as a multi-memory
/// module (`--multi-memory`) and with every memory a partition of one
/// (`karmem_partition::one_memory`, what `lower` does by default).
const SEPARATE_MEMORIES: [&str; 6] =
    ["churn", "compact-strings", "composed", "deep-copy", "resources-across-memories", "string-reallocs"];

/// WAT fixtures whose bump allocators take every page up to `memory.size`
/// as their own and reset in a post-return: sharing their memory with
/// `KarmemAlloc` hands its pages out (docs/ABI.md §10), so the adapters
/// warn when asked for one shared memory, and they are compared with an
/// edge memory of their own: as a multi-memory module and as partitions of
/// one memory (what `lower` does for them by default).
const BUMP_ALLOCATORS: [&str; 2] = ["latin1-utf16-strings", "utf16-strings"];

/// The hand-written WAT components of `fixtures/wat` (string encodings
/// UTF-16 and latin1+utf16, nested components, several instances and
/// memories, borrows, resource imports, a module without `cabi_realloc`)
/// agree the same way, every invocation; those that need one are lowered
/// with `--multi-memory` (a Karmem edge memory).
#[test]
fn wat_fixtures_agree_with_the_reference_on_wasmtime_and_wasmi() -> Result<()> {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(compare_wat)?
        .join()
        .map_err(|_| anyhow::anyhow!("the comparison thread panicked"))?
}

fn compare_wat() -> Result<()> {
    let mut compared = 0;
    let (mut names, mut edge) = (Vec::new(), Vec::new());
    for (name, path) in karmem_tests::fixtures::wat_fixtures()? {
        let has_calls = karmem_tests::fixtures::fixtures_dir().join(format!("{name}.invocations")).exists();
        if !has_calls {
            continue;
        }
        let bytes = wat::parse_file(&path)?;
        let separate = SEPARATE_MEMORIES.contains(&name.as_str());
        let bump = BUMP_ALLOCATORS.contains(&name.as_str());
        if separate {
            let refused = lower_karmem(&bytes).err().map(|e| format!("{e:#}")).unwrap_or_default();
            ensure!(
                refused.contains("own separate memories") && refused.contains("--multi-memory"),
                "`{name}` in one memory must be refused naming `--multi-memory`, got: {refused}"
            );
        }
        if bump {
            let (_, single, _) = lower_karmem_full(&bytes, false, false).with_context(|| format!("lowering `{name}`"))?;
            ensure!(
                single.warnings.iter().any(|w| w.contains("memory.size") && w.contains("--multi-memory")),
                "`{name}` in one memory must warn about its allocator, got {:?}",
                single.warnings
            );
        }
        let multi_memory = separate || bump;
        let (world, lowered, _) =
            lower_karmem_full(&bytes, false, multi_memory).with_context(|| format!("lowering `{name}`"))?;
        if multi_memory {
            ensure!(lowered.warnings.is_empty(), "`{name}` with an edge memory warns: {:?}", lowered.warnings);
            edge.push(name.clone());
        }
        let calls = invocations(&name)?;
        let mut reference = ReferenceRunner::new(&bytes)?;
        let mut expected = Vec::with_capacity(calls.len());
        for invocation in &calls {
            expected.push(reference.invoke(invocation)?);
        }
        let mut modules = vec![("", lowered.module.clone())];
        // In one memory of partitions (what `lower` does by default for
        // both: a bump allocator's guest gets the edge its own partition).
        if multi_memory {
            let one = karmem_partition::one_memory(&lowered.module, &karmem_partition::Quotas::new())
                .with_context(|| format!("partitioning `{name}`"))?;
            modules.push((" in one memory", one));
        }
        for (how, module) in &modules {
            for engine in [Engine::Wasmtime, Engine::Wasmi] {
                let mut candidate = KarmemRunner::from_lowered(engine, &bytes, world.clone(), module)
                    .with_context(|| format!("loading the Karmem-ABI `{name}`{how} on {engine:?}"))?;
                for (invocation, expected) in calls.iter().zip(&expected) {
                    let at =
                        || format!("{name}{how} on {engine:?}: line {}: `{}`", invocation.line, invocation.text);
                    let actual = candidate.invoke(invocation).with_context(at)?;
                    compare(expected, &actual).with_context(at)?;
                    compared += 1;
                }
            }
        }
        names.push(name);
    }
    for name in SEPARATE_MEMORIES.iter().chain(&BUMP_ALLOCATORS) {
        ensure!(edge.iter().any(|e| e == name), "`{name}` was not compared with an edge memory");
    }
    ensure!(names.len() >= 10, "only {names:?} were compared");
    eprintln!("compared {compared} invocations (both runtimes) of {names:?}; with an edge memory: {edge:?}");
    Ok(())
}
