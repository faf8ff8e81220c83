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

use std::path::Path;

use anyhow::{Context, Result, ensure};
use hosts::{CoreGuest, Invocation, Outcome, Step};
use karmem_adapters::wasi::{WasiMode, finish_for_preview1, link_preview2_shim_with};

fn fixture(name: &str) -> Result<Option<Vec<u8>>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/components").join(name);
    if !path.exists() {
        eprintln!("fixture {} is not built: skipped", path.display());
        return Ok(None);
    }
    Ok(Some(std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?))
}

/// Component -> one core module that imports only preview1.
///
/// Every WASI 0.2 import must allocate through the realloc its `canon lower`
/// names. In a wasip2 component that is the main module's `cabi_realloc`; in
/// a wasip1 component every WASI 0.2 import is the adapter's, with the
/// adapter's `cabi_import_realloc`. `lower` does not report the realloc per
/// import yet; it exports the reallocs of exports first and those of imports
/// after them, so the adapter's is its last `cabi_realloc*` export. This
/// test relies on that until the lowering passes `realloc_of` itself.
fn lower_and_link(component: &[u8]) -> Result<Vec<u8>> {
    let merged = karmem_core_lowering::lower(component, &karmem_core_lowering::Options::default())?;
    let realloc = realloc_for_wasi_imports(component, &merged)?;
    Ok(link_preview2_shim_with(&merged, WasiMode::Shim, &|_, _| realloc.clone())?.0)
}

fn realloc_for_wasi_imports(component: &[u8], merged: &[u8]) -> Result<String> {
    Ok(if has_preview1_adapter(component)? {
        let mut reallocs = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(merged) {
            if let wasmparser::Payload::ExportSection(section) = payload? {
                for export in section {
                    let export = export?;
                    if export.name.starts_with("cabi_realloc") {
                        reallocs.push(export.name.to_string());
                    }
                }
            }
        }
        reallocs.pop().context("the lowered wasip1 component exports no realloc")?
    } else {
        "cabi_realloc".to_string()
    })
}

fn has_preview1_adapter(component: &[u8]) -> Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::ModuleSection { unchecked_range, .. } = payload? {
            let module = component.get(unchecked_range).context("module range")?;
            if karmem_adapters::wasi::recognize_preview1_adapter(module)?.is_some() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Component -> one core module that imports only preview1 and exports
/// `_start`, through the one-call API the lowering uses.
fn lower_for_preview1(component: &[u8]) -> Result<Vec<u8>> {
    let merged = karmem_core_lowering::lower(component, &karmem_core_lowering::Options::default())?;
    let realloc = realloc_for_wasi_imports(component, &merged)?;
    let finished = finish_for_preview1(&merged, WasiMode::Shim, &|_, _| realloc.clone())?;
    ensure!(finished.is_command, "a command component must get `_start`");
    Ok(finished.module)
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

fn check_command(name: &str) -> Result<()> {
    let Some(component) = fixture(name)? else {
        return Ok(());
    };
    let lowered = lower_for_preview1(&component).with_context(|| format!("failed to lower `{name}`"))?;
    for (case, invocation) in invocations() {
        let reference = hosts::run_component(&component, &invocation, None)?;
        assert!(reference.exit_code.is_some(), "{name}, {case}: the reference trapped: {reference:?}");
        let check = |host: &str, outcome: Outcome| {
            assert_eq!(outcome, reference, "{name}, {case}: {host} differs from the component runtime");
        };
        check("wasmtime (preview1)", hosts::run_wasmtime(&lowered, &invocation)?);
        check("wasmi", hosts::run_wasmi(&lowered, &invocation)?);
        match hosts::run_node(&lowered, &invocation)? {
            Some(outcome) => check("node", outcome),
            None => eprintln!("node is not installed: the node host was skipped"),
        }
    }
    Ok(())
}

#[test]
fn wasip2_command_runs_the_same_on_preview1_hosts() -> Result<()> {
    check_command("command.p2.wasm")
}

/// The wasip1 build carries the preview1 adapter; lowered with the default
/// merge, the adapter's WASI 0.2 calls go through the shim as well
/// (`--wasi preview1`, which drops the adapter, is the lowering's to wire).
#[test]
fn wasip1_adapted_command_runs_the_same_on_preview1_hosts() -> Result<()> {
    check_command("command.p1-command.wasm")
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
    check_reactor("wasi-reactor.p2.wasm")
}

/// The wasip1 build: the adapter's WASI 0.2 calls go through the shim.
#[test]
fn wasip1_adapted_reactor_answers_the_same_on_preview1_hosts() -> Result<()> {
    check_reactor("wasi-reactor.p1-reactor.wasm")
}

fn check_reactor(name: &str) -> Result<()> {
    let Some(component) = fixture(name)? else {
        return Ok(());
    };
    let lowered = lower_and_link(&component)?;
    let invocation = Invocation {
        args: ["reactor", "x y"].map(String::from).to_vec(),
        env: vec![("GREETING".to_string(), "hallo".to_string())],
        files: Vec::new(),
    };
    let reference = hosts::run_component(&component, &invocation, Some(&component_probe))?;
    assert!(reference.transcript.len() == 12, "the reference stopped early: {reference:?}");
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
    use karmem_adapters::wasi::recognize_preview1_adapter;
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
