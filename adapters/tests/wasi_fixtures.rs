//! End to end over the fixtures' WASI command components: each is lowered
//! (`karmem_core_lowering::lower`, canonical boundary), linked with the
//! preview2 shim, given `_start`, and run on wasmtime with the component
//! model off, on wasmi and on node. Stdout, stderr, the files left in the
//! preopened directory and the exit code must equal those of the original
//! component on wasmtime's component runtime.
//!
//! The fixture binaries come from `fixtures/build.sh`; a missing one is
//! reported and skipped so a partial checkout still tests the rest.

#[path = "wasi/hosts.rs"]
mod hosts;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use hosts::{CoreGuest, Invocation, Outcome, Step};
use karmem_adapters::wasi::{WasiMode, finish_for_preview1, link_preview2_shim_with, recognize_preview1_adapter};
use karmem_core_lowering::preview1::AdapterShape;

fn fixture(name: &str) -> Result<Option<Vec<u8>>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/components").join(name);
    if !path.exists() {
        eprintln!("fixture {} is not built: skipped", path.display());
        return Ok(None);
    }
    Ok(Some(std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?))
}

/// Component -> one core module that imports only preview1, through the
/// shim (`--wasi shim`).
///
/// Every WASI 0.2 import allocates through the realloc its `canon lower`
/// names: in a wasip2 component the main module's `cabi_realloc`, in a
/// wasip1 component the adapter's `cabi_import_realloc`. The lowering records
/// which one per import in `karmem:canonical-abi`; this reads it back.
fn lower_and_link(component: &[u8]) -> Result<Vec<u8>> {
    let merged = karmem_core_lowering::lower(component, &karmem_core_lowering::Options::default())?;
    let reallocs = import_reallocs(&merged)?;
    Ok(link_preview2_shim_with(&merged, WasiMode::Shim, &|module, field| realloc_of(&reallocs, module, field))?.0)
}

/// `module#field` -> the realloc export of that import's `canon lower`.
fn import_reallocs(lowered: &[u8]) -> Result<BTreeMap<String, String>> {
    Ok(karmem_core_lowering::link::read_canonical_abi(lowered)?
        .into_iter()
        .filter(|entry| entry.kind == "import")
        .filter_map(|entry| Some((entry.name, entry.realloc?)))
        .collect())
}

fn realloc_of(reallocs: &BTreeMap<String, String>, module: &str, field: &str) -> String {
    reallocs.get(&format!("{module}#{field}")).cloned().unwrap_or_else(|| "cabi_realloc".to_string())
}

/// `karmem-adapters`' recogniser in the lowering's terms.
fn adapter_shape(module: &[u8]) -> Result<Option<AdapterShape>> {
    Ok(recognize_preview1_adapter(module)?.map(|adapter| AdapterShape {
        preview1_exports: adapter.preview1_exports,
        run_export: adapter.run_export,
    }))
}

/// How a test lowers a component for preview1 hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lowering {
    /// `--wasi shim`: the shim serves every WASI 0.2 import (a wasip1
    /// component's adapter stays, and its WASI 0.2 calls go to the shim).
    Shim,
    /// `--wasi preview1`: the adapter is dropped; the main module's own
    /// preview1 imports are the output's.
    Preview1,
}

/// Component -> one core module that imports only preview1 (and exports
/// `_start` for a command), through the APIs `karmem-bridge lower` uses.
fn lower_for_preview1(component: &[u8], how: Lowering) -> Result<(Vec<u8>, bool)> {
    let options = karmem_core_lowering::Options::default();
    let (merged, mode) = match how {
        Lowering::Shim => (karmem_core_lowering::lower(component, &options)?, WasiMode::Shim),
        Lowering::Preview1 => {
            let (lowered, report) =
                karmem_core_lowering::lower_dropping_preview1_adapter(component, &options, &adapter_shape)?
                    .context("no preview1 adapter to drop")?;
            ensure!(report.wasi_imports_left.is_empty(), "WASI 0.2 imports left: {report:?}");
            (lowered, WasiMode::Preview1)
        }
    };
    let reallocs = import_reallocs(&merged)?;
    let finished = finish_for_preview1(&merged, mode, &|module, field| realloc_of(&reallocs, module, field))?;
    if how == Lowering::Preview1 {
        ensure!(finished.report.shimmed.is_empty(), "nothing may be shimmed: {:?}", finished.report);
    }
    Ok((finished.module, finished.is_command))
}

fn invocations() -> Vec<(&'static str, Invocation)> {
    let base = Invocation {
        args: ["command", "first", "second arg"].map(String::from).to_vec(),
        env: vec![("GREETING".to_string(), "hallo".to_string())],
        files: Vec::new(),
    };
    let with_input = Invocation {
        files: vec![("input.txt".to_string(), b"Lowered, then run on preview1.\n".to_vec())],
        ..base.clone()
    };
    let without_env = Invocation { env: Vec::new(), ..with_input.clone() };
    vec![("input present", with_input), ("input missing", base), ("no GREETING", without_env)]
}

fn check_command(name: &str, how: Lowering) -> Result<()> {
    let Some(component) = fixture(name)? else {
        return Ok(());
    };
    let (lowered, is_command) =
        lower_for_preview1(&component, how).with_context(|| format!("failed to lower `{name}`"))?;
    ensure!(is_command, "{name}: a command component must export `_start`");
    for (case, invocation) in invocations() {
        let reference = hosts::run_component(&component, &invocation, None)?;
        assert!(reference.exit_code.is_some(), "{name}, {case}: the reference trapped: {reference:?}");
        // Exit codes too: every build exits as the component runtime reports
        // (docs/LOWERING.md, "Exit codes").
        let check = |host: &str, outcome: Outcome| {
            assert_eq!(outcome, reference, "{name}, {case}: {host} differs from the component runtime");
        };
        check("wasmtime (preview1)", hosts::run_wasmtime(&lowered, &invocation)?);
        check("wasmi", hosts::run_wasmi(&lowered, &invocation)?);
        let node = hosts::run_node(&lowered, &invocation)?;
        match &node {
            Some(outcome) => check("node", outcome.clone()),
            None => eprintln!("node is not installed: the node host was skipped"),
        }
        // The script checks by itself too, as a user would run it: against
        // the reference.
        let mut expected = reference.clone();
        if let Some((ok, report)) = hosts::node_check_outcome(&lowered, &invocation, &expected)? {
            assert!(ok, "{name}, {case}: node-wasi-check.mjs reported: {report}");
        }
        if case == "input present" {
            expected.stdout.push('!');
            let wrong = hosts::node_check_outcome(&lowered, &invocation, &expected)?;
            assert!(!wrong.is_some_and(|(ok, _)| ok), "{name}: a different stdout must be reported");
        }
    }
    Ok(())
}

#[test]
fn wasip2_command_runs_the_same_on_preview1_hosts() -> Result<()> {
    check_command("command.p2.wasm", Lowering::Shim)
}

/// The wasip1 build under `--wasi shim`: the adapter stays, and its WASI 0.2
/// calls go through the shim.
#[test]
fn wasip1_adapted_command_runs_the_same_through_the_shim() -> Result<()> {
    check_command("command.p1-command.wasm", Lowering::Shim)
}

/// The wasip1 build under `--wasi preview1` (its default): the adapter is
/// dropped and the main module calls the host's preview1 directly.
#[test]
fn wasip1_adapted_command_runs_the_same_without_its_adapter() -> Result<()> {
    check_command("command.p1-command.wasm", Lowering::Preview1)
}

const PROBE: &str = "karmem:fixtures/wasi-probe";
const WRITTEN: &str = "written by the reactor";

/// A call into the lowered reactor; a stop (exit or trap) ends the driver.
macro_rules! call {
    ($guest:expr, $name:expr, $args:expr) => {
        match $guest.call(&$name, $args)? {
            hosts::Step::Returned(value) => value.unwrap_or(0),
            stop @ hosts::Step::Stopped(_) => return Ok(stop),
        }
    };
}

fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

fn export(name: &str) -> String {
    format!("{PROBE}#{name}")
}

fn load_u32(guest: &mut dyn CoreGuest, ptr: i32) -> Result<i32> {
    let bytes = guest.read(ptr as u32, 4)?;
    Ok(i32::from_le_bytes(bytes.try_into().map_err(|_| anyhow::anyhow!("short read"))?))
}

fn load_string(guest: &mut dyn CoreGuest, ptr_at: i32) -> Result<String> {
    let ptr = load_u32(guest, ptr_at)?;
    let len = load_u32(guest, ptr_at + 4)?;
    Ok(String::from_utf8(guest.read(ptr as u32, len as u32)?)?)
}

/// The reactor script on a lowered module, canonical ABI by hand.
fn core_probe(guest: &mut dyn CoreGuest, notes: &mut Vec<String>) -> Result<Step> {
    // Strings go into guest memory through its `cabi_realloc`.
    macro_rules! string {
        ($text:expr) => {{
            let text: &str = $text;
            let ptr = call!(guest, "cabi_realloc", &[0, 0, 1, text.len() as i32]);
            guest.write(ptr as u32, text.as_bytes())?;
            [ptr, text.len() as i32]
        }};
    }
    let line = string!("hello from the reactor");
    call!(guest, export("print"), &line);
    notes.push("print -> ()".into());
    let line = string!("a warning");
    call!(guest, export("warn"), &line);
    notes.push("warn -> ()".into());
    for name in ["GREETING", "MISSING"] {
        let arg = string!(name);
        let ret = call!(guest, export("env-var"), &arg);
        let value = match guest.read(ret as u32, 1)?.first() {
            Some(1) => format!("some({})", quoted(&load_string(guest, ret + 4)?)),
            _ => "none".to_string(),
        };
        call!(guest, format!("cabi_post_{}", export("env-var")), &[ret]);
        notes.push(format!("env-var({}) -> {value}", quoted(name)));
    }
    let ret = call!(guest, export("args"), &[]);
    let (list, count) = (load_u32(guest, ret)?, load_u32(guest, ret + 4)?);
    let mut args = Vec::new();
    for index in 0..count {
        args.push(quoted(&load_string(guest, list + 8 * index)?));
    }
    call!(guest, format!("cabi_post_{}", export("args")), &[ret]);
    notes.push(format!("args -> [{}]", args.join(", ")));
    for name in ["wall-clock-plausible", "monotonic-ordered"] {
        let value = call!(guest, export(name), &[]);
        notes.push(format!("{name} -> {}", value != 0));
    }
    let ret = call!(guest, export("random-draws"), &[32]);
    let filled = load_u32(guest, ret)?;
    let differ = guest.read(ret as u32 + 4, 1)?.first().copied().unwrap_or(0) != 0;
    notes.push(format!("random-draws(32) -> ({filled}, {differ})"));
    let (path, contents) = (string!("/sandbox/out.txt"), string!(WRITTEN));
    let ret = call!(guest, export("write-file"), &[path[0], path[1], contents[0], contents[1]]);
    let written = match guest.read(ret as u32, 1)?.first() {
        Some(0) => "ok".to_string(),
        _ => format!("err({})", quoted(&load_string(guest, ret + 4)?)),
    };
    call!(guest, format!("cabi_post_{}", export("write-file")), &[ret]);
    notes.push(format!("write-file(\"/sandbox/out.txt\") -> {written}"));
    for name in ["/sandbox/out.txt", "/sandbox/missing.txt"] {
        let path = string!(name);
        let ret = call!(guest, export("read-file"), &path);
        let tag = if guest.read(ret as u32, 1)?.first() == Some(&0) { "ok" } else { "err" };
        let text = load_string(guest, ret + 4)?;
        call!(guest, format!("cabi_post_{}", export("read-file")), &[ret]);
        notes.push(format!("read-file({}) -> {tag}({})", quoted(name), quoted(&text)));
    }
    notes.push("exit-with(3)".into());
    call!(guest, export("exit-with"), &[3]);
    Ok(Step::Returned(None))
}

/// The same script on the original component, through typed calls.
fn component_probe(
    store: &mut wasmtime::Store<hosts::ComponentHost>,
    instance: &wasmtime::component::Instance,
    notes: &mut Vec<String>,
) -> Result<Step> {
    use wasmtime::component::{ComponentNamedList, Lift, Lower};
    fn typed<P: ComponentNamedList + Lower, R: ComponentNamedList + Lift>(
        store: &mut wasmtime::Store<hosts::ComponentHost>,
        instance: &wasmtime::component::Instance,
        name: &str,
    ) -> Result<wasmtime::component::TypedFunc<P, R>> {
        let interface = instance.get_export_index(&mut *store, None, PROBE).context("no probe interface")?;
        let index = instance.get_export_index(&mut *store, Some(&interface), name).context("no probe function")?;
        instance.get_typed_func::<P, R>(&mut *store, &index).map_err(|e| anyhow::anyhow!("{e:?}"))
    }
    macro_rules! invoke {
        ($name:expr, $params:ty, $results:ty, $args:expr) => {
            match typed::<$params, $results>(store, instance, $name)?.call(&mut *store, $args) {
                Ok(results) => results,
                Err(error) => return Ok(Step::Stopped(hosts::stopped(&error))),
            }
        };
    }
    invoke!("print", (&str,), (), ("hello from the reactor",));
    notes.push("print -> ()".into());
    invoke!("warn", (&str,), (), ("a warning",));
    notes.push("warn -> ()".into());
    for name in ["GREETING", "MISSING"] {
        let (value,) = invoke!("env-var", (&str,), (Option<String>,), (name,));
        let value = value.map_or("none".to_string(), |text| format!("some({})", quoted(&text)));
        notes.push(format!("env-var({}) -> {value}", quoted(name)));
    }
    let (args,) = invoke!("args", (), (Vec<String>,), ());
    notes.push(format!("args -> [{}]", args.iter().map(|arg| quoted(arg)).collect::<Vec<_>>().join(", ")));
    for name in ["wall-clock-plausible", "monotonic-ordered"] {
        let (value,) = invoke!(name, (), (bool,), ());
        notes.push(format!("{name} -> {value}"));
    }
    let ((filled, differ),) = invoke!("random-draws", (u32,), ((u32, bool),), (32,));
    notes.push(format!("random-draws(32) -> ({filled}, {differ})"));
    let (written,) = invoke!("write-file", (&str, &str), (Result<(), String>,), ("/sandbox/out.txt", WRITTEN));
    let written = written.map_or_else(|error| format!("err({})", quoted(&error)), |()| "ok".to_string());
    notes.push(format!("write-file(\"/sandbox/out.txt\") -> {written}"));
    for name in ["/sandbox/out.txt", "/sandbox/missing.txt"] {
        let (read,) = invoke!("read-file", (&str,), (Result<String, String>,), (name,));
        let shown = match read {
            Ok(text) => format!("ok({})", quoted(&text)),
            Err(error) => format!("err({})", quoted(&error)),
        };
        notes.push(format!("read-file({}) -> {shown}", quoted(name)));
    }
    notes.push("exit-with(3)".into());
    invoke!("exit-with", (u8,), (), (3,));
    Ok(Step::Returned(None))
}

/// The WASI reactor fixture: stdout, stderr, env, args, clocks, random,
/// files and the exit code of `exit-with`, on the reference and three hosts.
#[test]
fn wasip2_reactor_answers_the_same_on_preview1_hosts() -> Result<()> {
    check_reactor("wasi-reactor.p2.wasm", Lowering::Shim)
}

/// The wasip1 build under `--wasi shim`: the adapter's WASI 0.2 calls go
/// through the shim, with the adapter's own realloc.
#[test]
fn wasip1_adapted_reactor_answers_the_same_through_the_shim() -> Result<()> {
    check_reactor("wasi-reactor.p1-reactor.wasm", Lowering::Shim)
}

/// The wasip1 build under `--wasi preview1`: no adapter, the main module's
/// preview1 imports go straight to the host.
#[test]
fn wasip1_adapted_reactor_answers_the_same_without_its_adapter() -> Result<()> {
    check_reactor("wasi-reactor.p1-reactor.wasm", Lowering::Preview1)
}

fn check_reactor(name: &str, how: Lowering) -> Result<()> {
    let Some(component) = fixture(name)? else {
        return Ok(());
    };
    let lowered = match how {
        Lowering::Shim => lower_and_link(&component)?,
        Lowering::Preview1 => lower_for_preview1(&component, how)?.0,
    };
    let invocation = Invocation {
        args: ["reactor", "x y"].map(String::from).to_vec(),
        env: vec![("GREETING".to_string(), "hallo".to_string())],
        files: Vec::new(),
    };
    let reference = hosts::run_component(&component, &invocation, Some(&component_probe))?;
    assert!(reference.transcript.len() == 12, "the reference stopped early: {reference:?}");
    // `exit-with(3)` is `std::process::exit(3)`: 1 on the component runtime,
    // and from every build lowered either way (docs/LOWERING.md, "Exit codes").
    assert_eq!(reference.exit_code, Some(1), "{name}: the component runtime's exit code");
    let check = |host: &str, outcome: Outcome| {
        assert_eq!(outcome, reference, "{name}: {host} differs from the component runtime");
    };
    check("wasmtime (preview1)", hosts::run_wasmtime_entry(&lowered, &invocation, hosts::Entry::Reactor(&core_probe))?);
    check("wasmi", hosts::run_wasmi_entry(&lowered, &invocation, hosts::Entry::Reactor(&core_probe))?);
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasi/wasi_probe_driver.mjs");
    match hosts::run_node_entry(&lowered, &invocation, Some(&driver))? {
        Some(outcome) => check("node", outcome),
        None => eprintln!("node is not installed: the node host was skipped"),
    }
    Ok(())
}

/// The real preview1 adapter inside a wasip1 component is the one module
/// recognised, and it is the command adapter (it exports `run`).
#[test]
fn preview1_adapter_of_a_fixture_is_recognised() -> Result<()> {
    for (name, command) in [("command.p1-command.wasm", true), ("wasi-reactor.p1-reactor.wasm", false), ("command.p2.wasm", false)] {
        let Some(component) = fixture(name)? else {
            continue;
        };
        let mut found = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&component) {
            if let wasmparser::Payload::ModuleSection { unchecked_range, .. } = payload? {
                let module = component.get(unchecked_range).context("module range")?;
                if let Some(adapter) = recognize_preview1_adapter(module)? {
                    found.push(adapter);
                }
            }
        }
        let expected = usize::from(name.contains(".p1-"));
        assert_eq!(found.len(), expected, "{name}: {found:?}");
        if let Some(adapter) = found.first() {
            assert!(adapter.preview1_exports.iter().any(|export| export == "fd_write"), "{name}: {adapter:?}");
            assert_eq!(adapter.run_export.is_some(), command, "{name}: {adapter:?}");
        }
    }
    Ok(())
}

/// Counts of one core module: (imports as `module#field`, exports, defined
/// globals, defined functions, `karmem:canonical-abi` import entries).
type Shape = (Vec<String>, Vec<String>, u32, u32, usize);

fn shape(module: &[u8]) -> Result<Shape> {
    let (mut imports, mut exports, mut globals, mut funcs) = (Vec::new(), Vec::new(), 0, 0);
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload? {
            wasmparser::Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import?;
                    imports.push(format!("{}#{}", import.module, import.name));
                }
            }
            wasmparser::Payload::ExportSection(section) => {
                for export in section {
                    exports.push(export?.name.to_string());
                }
            }
            wasmparser::Payload::GlobalSection(section) => globals += section.count(),
            wasmparser::Payload::FunctionSection(section) => funcs += section.count(),
            _ => {}
        }
    }
    let boundary_imports = karmem_core_lowering::link::read_canonical_abi(module)?
        .iter()
        .filter(|entry| entry.kind == "import")
        .count();
    Ok((imports, exports, globals, funcs, boundary_imports))
}

/// `--wasi preview1` keeps the main module and nothing of the adapter: the
/// output imports only `wasi_snapshot_preview1` (exactly the main module's
/// preview1 imports), has the main module's globals and no more functions
/// (plus one start function at most), exports no realloc of the adapter, and
/// its `karmem:canonical-abi` section names no import.
#[test]
fn dropping_the_adapter_leaves_only_the_main_module() -> Result<()> {
    for name in ["command.p1-command.wasm", "wasi-reactor.p1-reactor.wasm"] {
        let Some(component) = fixture(name)? else {
            continue;
        };
        // The main module: the one importing `wasi_snapshot_preview1` that is not the adapter.
        let mut main = None;
        for payload in wasmparser::Parser::new(0).parse_all(&component) {
            if let wasmparser::Payload::ModuleSection { unchecked_range, .. } = payload? {
                let module = component.get(unchecked_range).context("module range")?;
                let (imports, ..) = shape(module)?;
                let preview1 = imports.iter().any(|import| import.starts_with("wasi_snapshot_preview1#"));
                if preview1 && recognize_preview1_adapter(module)?.is_none() {
                    main = Some(shape(module)?);
                }
            }
        }
        let (main_imports, _, main_globals, main_funcs, _) = main.context("no main module")?;
        let (lowered, is_command) = lower_for_preview1(&component, Lowering::Preview1)?;
        let (imports, exports, globals, funcs, boundary_imports) = shape(&lowered)?;
        let mut expected: Vec<String> =
            main_imports.into_iter().filter(|import| import.starts_with("wasi_snapshot_preview1#")).collect();
        expected.sort();
        let mut sorted = imports.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "{name}: the output must import exactly the main module's preview1 functions");
        assert_eq!(globals, main_globals, "{name}: the adapter's globals must be gone");
        assert!(funcs <= main_funcs + 1, "{name}: {funcs} functions, the main module has {main_funcs}");
        assert!(exports.iter().any(|export| export == "memory"), "{name}: {exports:?}");
        assert!(!exports.iter().any(|export| export.starts_with("cabi_realloc1")), "{name}: {exports:?}");
        assert!(!exports.iter().any(|export| export.starts_with("wasi:")), "{name}: {exports:?}");
        assert_eq!(exports.iter().any(|export| export == "_start"), is_command, "{name}: {exports:?}");
        assert_eq!(is_command, name.starts_with("command"), "{name}");
        assert_eq!(boundary_imports, 0, "{name}: no canonical-ABI import is left");
    }
    Ok(())
}

/// The shim path takes each WASI 0.2 import's realloc from the lowering's
/// `karmem:canonical-abi` section: in the wasip1 reactor (adapter kept) every
/// one is the adapter's realloc, which is not the main module's
/// `cabi_realloc`; in the wasip2 reactor every one is `cabi_realloc`.
#[test]
fn wasi_imports_name_their_realloc() -> Result<()> {
    for (name, adapter) in [("wasi-reactor.p1-reactor.wasm", true), ("wasi-reactor.p2.wasm", false)] {
        let Some(component) = fixture(name)? else {
            continue;
        };
        let merged = karmem_core_lowering::lower(&component, &karmem_core_lowering::Options::default())?;
        let reallocs = import_reallocs(&merged)?;
        let wasi: Vec<(&String, &String)> = reallocs.iter().filter(|(import, _)| import.starts_with("wasi:")).collect();
        assert!(!wasi.is_empty(), "{name}: no WASI import names a realloc");
        for (import, realloc) in wasi {
            assert_eq!(realloc != "cabi_realloc", adapter, "{name}: `{import}` allocates with `{realloc}`");
        }
    }
    Ok(())
}
