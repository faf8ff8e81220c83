//! Linking separately lowered components (docs/RUNTIME.md, "Which
//! exporter"): small components built here from a core module and its WIT
//! (as wit-bindgen would), lowered with `karmem_bridge::lower`, then linked
//! by the runtime's `Composition` and by `karmem-bridge run --link/--plug`.
//!
//! - a resource handle the importer drops is dropped by the exporter
//!   instance that made it (the exporter's destructor counts);
//! - a layer (imports and exports `t:p/api`) serves the outside importer and
//!   is served by the module below it, never by itself; a module the layer
//!   imports from is served from below too;
//! - two modules that fit one import equally are an error naming both, and a
//!   plug settles it;
//! - interfaces match by WIT identity: `u:p/api` does not serve `t:p/api`
//!   although both are `api` in KarmemIDL;
//! - a world-level import wired to an export of another name is served only
//!   when plugged.

#![allow(clippy::expect_used, reason = "test helpers: a temporary directory or a child process that cannot be set up fails the test")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, anyhow};
use karmem_format::Value;
use karmem_runtime::compose::{Composition, ModuleId};
use karmem_runtime::invoke::{Session, SessionOptions};
use karmem_runtime::{Runtime, RuntimeConfig};

const OTHER_WIT: &str = "package u:p;\ninterface api { f: func(x: u32) -> u32; }\n";

const WIT: &str = r#"
package t:p;

interface things {
    resource thing {
        constructor(v: u32);
        value: func() -> u32;
    }
    dropped: func() -> u32;
}

interface api {
    f: func(x: u32) -> u32;
}

world provider { export things; }
world consumer {
    import things;
    export run: func(v: u32) -> u32;
}
world leaf { export api; }
world layer { import api; export api; }
world runner {
    import api;
    export run: func(x: u32) -> u32;
}
world other-leaf { export u:p/api; }
world top-importer {
    import toplevel-import: func(x: u32) -> u32;
    export run: func(x: u32) -> u32;
}
world top-exporter { export toplevel-export: func(x: u32) -> u32; }
world mid-layer {
    import api;
    import toplevel-import: func(x: u32) -> u32;
    export api;
}
world top-user {
    import api;
    export toplevel-export: func(x: u32) -> u32;
}
"#;

/// Exports `t:p/things`: a thing's rep is its value; the destructor counts.
const PROVIDER: &str = r#"(module
  (import "[export]t:p/things" "[resource-new]thing" (func $new (param i32) (result i32)))
  (global $dropped (mut i32) (i32.const 0))
  (memory (export "memory") 1)
  (func (export "t:p/things#[constructor]thing") (param i32) (result i32) (call $new (local.get 0)))
  (func (export "t:p/things#[method]thing.value") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 10)))
  (func (export "t:p/things#dropped") (result i32) (global.get $dropped))
  (func (export "t:p/things#[dtor]thing") (param i32)
    (global.set $dropped (i32.add (global.get $dropped) (i32.const 1)))))"#;

/// `run(v)`: makes a thing, reads it, drops it; `value * 1000 + dropped()`.
const CONSUMER: &str = r#"(module
  (import "t:p/things" "[constructor]thing" (func $make (param i32) (result i32)))
  (import "t:p/things" "[method]thing.value" (func $value (param i32) (result i32)))
  (import "t:p/things" "[resource-drop]thing" (func $drop (param i32)))
  (import "t:p/things" "dropped" (func $dropped (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (param $v i32) (result i32)
    (local $h i32) (local $r i32)
    (local.set $h (call $make (local.get $v)))
    (local.set $r (call $value (local.get $h)))
    (call $drop (local.get $h))
    (i32.add (i32.mul (local.get $r) (i32.const 1000)) (call $dropped))))"#;

/// `f(x) = x + 1`.
const LEAF: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "t:p/api#f") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1))))"#;

/// `f(x) = 1000 + x` (another leaf, told apart by its results).
const LEAF_2: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "t:p/api#f") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1000))))"#;

/// `f(x) = inner f(x) * 10`.
const LAYER: &str = r#"(module
  (import "t:p/api" "f" (func $f (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "t:p/api#f") (param i32) (result i32) (i32.mul (call $f (local.get 0)) (i32.const 10))))"#;

/// `run(x) = f(x)`.
const RUNNER: &str = r#"(module
  (import "t:p/api" "f" (func $f (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (param i32) (result i32) (call $f (local.get 0))))"#;

/// Exports `u:p/api`: `f(x) = x + 7`.
const OTHER_LEAF: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "u:p/api#f") (param i32) (result i32) (i32.add (local.get 0) (i32.const 7))))"#;

/// `run(x) = toplevel-import(x) + 100`.
const TOP_IMPORTER: &str = r#"(module
  (import "$root" "toplevel-import" (func $g (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (param i32) (result i32) (i32.add (call $g (local.get 0)) (i32.const 100))))"#;

/// `toplevel-export(x) = x * 3`.
const TOP_EXPORTER: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "toplevel-export") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 3))))"#;

/// `f(x) = inner f(x) * 10 + toplevel-import(x)`.
const MID_LAYER: &str = r#"(module
  (import "t:p/api" "f" (func $f (param i32) (result i32)))
  (import "$root" "toplevel-import" (func $g (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "t:p/api#f") (param i32) (result i32)
    (i32.add (i32.mul (call $f (local.get 0)) (i32.const 10)) (call $g (local.get 0)))))"#;

/// `toplevel-export(x) = f(x)`.
const TOP_USER: &str = r#"(module
  (import "t:p/api" "f" (func $f (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "toplevel-export") (param i32) (result i32) (call $f (local.get 0))))"#;

/// The component of `core` (WAT) targeting `world` of [`WIT`], lowered.
fn lowered(world: &str, core: &str) -> Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    resolve.push_str("other.wit", OTHER_WIT)?;
    let package = resolve.push_str("test.wit", WIT)?;
    let world = resolve.select_world(&[package], Some(world))?;
    let mut module = wat::parse_str(core)?;
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)?;
    let component = wit_component::ComponentEncoder::default().module(&module)?.validate(true).encode()?;
    Ok(karmem_bridge::lower(&component, &karmem_bridge::LowerOptions::default())?.module)
}

/// Every guest of this file, lowered once.
fn guests() -> &'static [(&'static str, Vec<u8>)] {
    static GUESTS: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    GUESTS.get_or_init(|| {
        [
            ("provider", "provider", PROVIDER),
            ("consumer", "consumer", CONSUMER),
            ("leaf", "leaf", LEAF),
            ("leaf-2", "leaf", LEAF_2),
            ("layer", "layer", LAYER),
            ("layer-2", "layer", LAYER),
            ("runner", "runner", RUNNER),
            ("other-leaf", "other-leaf", OTHER_LEAF),
            ("top-importer", "top-importer", TOP_IMPORTER),
            ("top-exporter", "top-exporter", TOP_EXPORTER),
            ("mid-layer", "mid-layer", MID_LAYER),
            ("top-user", "top-user", TOP_USER),
        ]
        .into_iter()
        .map(|(name, world, core)| (name, lowered(world, core).map_err(|e| format!("{name}: {e:#}")).expect("lower a test guest")))
        .collect()
    })
}

fn guest(name: &str) -> &'static [u8] {
    guests().iter().find(|(n, _)| *n == name).map(|(_, bytes)| bytes.as_slice()).expect("a test guest")
}

/// The guests written to one directory (shared by this binary's CLI runs).
fn files() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, bytes) in guests() {
            std::fs::write(dir.path().join(format!("{name}.wasm")), bytes).expect("write a guest");
        }
        dir
    })
    .path()
}

fn file(name: &str) -> PathBuf {
    files().join(format!("{name}.wasm"))
}

fn runtime() -> Result<Arc<Runtime>> {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = CACHE.get_or_init(|| tempfile::tempdir().expect("cache tempdir"));
    Ok(Arc::new(Runtime::new(RuntimeConfig { cache_dir: Some(dir.path().to_path_buf()), ..RuntimeConfig::default() })?))
}

/// A composition of the named guests, in order.
fn compose(names: &[&str]) -> Result<(Composition, Vec<ModuleId>)> {
    let composition = Composition::new(runtime()?);
    let ids = names
        .iter()
        .map(|name| composition.add(name, guest(name), SessionOptions::default()))
        .collect::<Result<Vec<_>>>()?;
    Ok((composition, ids))
}

/// Calls `interface.function(x: u32)` and returns its `u32`.
fn call(session: &mut Session, interface: &str, function: &str, argument: &str, x: u32) -> Result<u32> {
    let args = Value::Record(vec![(argument.to_string(), Value::U32(x))]);
    match session.invoke(interface, function, &args)?.field("ret") {
        Some(Value::U32(value)) => Ok(*value),
        other => Err(anyhow!("expected `ret: u32`, got {other:?}")),
    }
}

/// The names of the modules serving `importer`'s imports, in plan order.
fn served_by(composition: &Composition, importer: ModuleId) -> Result<Vec<String>> {
    composition
        .links(importer)?
        .iter()
        .flat_map(|link| link.exporters.iter().map(|(id, _)| composition.name_of(*id).context("a name")))
        .collect()
}

fn bridge() -> Command {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_karmem-bridge"));
    command.env("KARMEM_CACHE_DIR", CACHE.get_or_init(|| tempfile::tempdir().expect("cache tempdir")).path());
    command
}

fn run(main: &str, links: &[&str], extra: &[&str], call: &str) -> Output {
    let mut command = bridge();
    command.arg("run").arg(file(main));
    for link in links {
        command.arg("--link").arg(file(link));
    }
    command.args(extra).arg("--invoke").arg(call).output().expect("run karmem-bridge")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn stderr(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_resource_drop_reaches_the_exporter_that_made_the_handle() -> Result<()> {
    let (composition, ids) = compose(&["consumer", "provider"])?;
    let consumer = ids.first().copied().context("consumer")?;
    let mut first = composition.instantiate(consumer)?;
    // 4 * 10 from the provider's `value`, and its destructor ran once.
    assert_eq!(call(&mut first, "root", "run", "v", 4)?, 40_001);
    assert_eq!(call(&mut first, "root", "run", "v", 5)?, 50_002, "the same provider instance counts both drops");
    // Direct: another importer has a provider of its own.
    let mut second = composition.instantiate(consumer)?;
    assert_eq!(call(&mut second, "root", "run", "v", 6)?, 60_001);

    assert_eq!(stdout(&run("consumer", &["provider"], &[], "run(4)")), "40001");
    Ok(())
}

#[test]
fn a_layer_is_served_by_the_module_below_it_not_by_itself() -> Result<()> {
    for order in [["runner", "layer", "leaf"], ["runner", "leaf", "layer"]] {
        let (composition, ids) = compose(&order)?;
        let (runner, layer) = (ids[0], if order[1] == "layer" { ids[1] } else { ids[2] });
        assert_eq!(served_by(&composition, runner)?, ["layer"], "{order:?}");
        assert_eq!(served_by(&composition, layer)?, ["leaf"], "{order:?}");
        let mut session = composition.instantiate(runner)?;
        assert_eq!(call(&mut session, "root", "run", "x", 4)?, 50, "runner -> layer -> leaf: (4 + 1) * 10");
        // The layer instantiated on its own: its import goes to the leaf.
        let mut layer = composition.instantiate(layer)?;
        assert_eq!(call(&mut layer, "api_export", "f", "x", 2)?, 30);
    }
    assert_eq!(stdout(&run("runner", &["leaf", "layer"], &[], "run(4)")), "50");
    Ok(())
}

/// As in wit-bindgen's `resource-import-and-export`: the layer's
/// world-level import is plugged to a module that imports the layered
/// interface itself. That module cannot be served by the layer (a cycle),
/// so it is served from below, like the layer.
#[test]
fn a_module_the_layer_imports_from_is_served_from_below() -> Result<()> {
    let (composition, ids) = compose(&["runner", "mid-layer", "leaf", "top-user"])?;
    composition.plug(ids[1], "toplevel-import", ids[3], "toplevel-export")?;
    assert_eq!(served_by(&composition, ids[0])?, ["mid-layer"]);
    assert_eq!(served_by(&composition, ids[1])?, ["leaf", "top-user"]);
    assert_eq!(served_by(&composition, ids[3])?, ["leaf"]);
    // (4 + 1) * 10 + (4 + 1)
    assert_eq!(call(&mut composition.instantiate(ids[0])?, "root", "run", "x", 4)?, 55);
    let plug = ["--plug", "mid-layer:toplevel-import=top-user:toplevel-export"];
    assert_eq!(stdout(&run("runner", &["mid-layer", "leaf", "top-user"], &plug, "run(4)")), "55");
    Ok(())
}

#[test]
fn two_modules_that_fit_one_import_equally_are_an_ambiguous_link() -> Result<()> {
    let (composition, ids) = compose(&["runner", "leaf", "leaf-2"])?;
    let error = format!("{:#}", composition.instantiate(ids[0]).err().context("an ambiguous link")?);
    assert!(
        error.contains("`runner`'s import `t:p/api` (`api`) is ambiguous: it fits `leaf` (its `api`), `leaf-2` (its `api`)"),
        "{error}"
    );
    // A plug settles it.
    composition.plug(ids[0], "t:p/api", ids[2], "t:p/api")?;
    assert_eq!(call(&mut composition.instantiate(ids[0])?, "root", "run", "x", 1)?, 1001);

    // Two layers: which wraps which is unknown.
    let (composition, ids) = compose(&["runner", "layer", "layer-2", "leaf"])?;
    let error = format!("{:#}", composition.instantiate(ids[0]).err().context("two layers")?);
    assert!(error.contains("`layer` and `layer-2` import it too, so which wraps which is unknown"), "{error}");

    let error = stderr(&run("runner", &["leaf", "leaf-2"], &[], "run(1)"));
    assert!(error.contains("is ambiguous: it fits"), "{error}");
    assert_eq!(stdout(&run("runner", &["leaf", "leaf-2"], &["--plug", "runner:t:p/api=leaf"], "run(1)")), "2");
    Ok(())
}

#[test]
fn interfaces_are_matched_by_wit_identity_not_by_short_name() -> Result<()> {
    // `u:p/api` and `t:p/api` are both `api` in KarmemIDL.
    let (composition, ids) = compose(&["runner", "other-leaf"])?;
    assert!(served_by(&composition, ids[0])?.is_empty());
    let error = format!("{:#}", call(&mut composition.instantiate(ids[0])?, "root", "run", "x", 1).err().context("unserved")?);
    assert!(error.contains("import `karmem:api`/`f` is not served"), "{error}");
    // Explicitly, the shapes being equal, one serves the other.
    composition.plug(ids[0], "t:p/api", ids[1], "u:p/api")?;
    assert_eq!(call(&mut composition.instantiate(ids[0])?, "root", "run", "x", 1)?, 8);
    Ok(())
}

#[test]
fn a_world_level_import_is_served_by_another_name_only_when_plugged() -> Result<()> {
    let out = run("top-importer", &["top-exporter"], &[], "run(2)");
    assert!(stderr(&out).contains("import `karmem:root_imports`/`toplevel_import` is not served"));
    let plug = ["--plug", "top-importer:toplevel-import=top-exporter:toplevel-export"];
    assert_eq!(stdout(&run("top-importer", &["top-exporter"], &plug, "run(2)")), "106");

    // Plugs name what exists, of one kind.
    let wrong = run("top-importer", &["top-exporter"], &["--plug", "top-importer:toplevel-import=top-exporter:nothing"], "run(2)");
    let error = stderr(&wrong);
    assert!(error.contains("top-exporter.wasm` exports no interface or world-level function `nothing` (it exports function `toplevel-export`)"), "{error}");
    let (composition, ids) = compose(&["top-importer", "top-exporter", "leaf"])?;
    let error = format!("{:#}", composition.plug(ids[0], "toplevel-import", ids[2], "t:p/api").err().context("kinds")?);
    assert!(error.contains("one is an interface, the other a world-level function"), "{error}");
    Ok(())
}
