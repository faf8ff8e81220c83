//! Core exceptions at the component boundary (issue 17): an exception a component throws and
//! does not catch never reaches another component; it traps at the boundary
//! ("uncaught exception propagated out of component"), docs/LOWERING.md "Exceptions at the
//! component boundary".
//!
//! Each case is two components: `$A` lets an exception escape (from the called function, its
//! `realloc`, its `post-return`, a resource destructor), `$B` calls `$A` inside a `try_table`
//! whose `catch_all` returns 1. The reference (wasmtime 48's component runtime) traps; the
//! component lowered under `--abi canonical` and `--abi karmem` must trap too on wasmtime with
//! the component model off. Were the exception to leak into `$B`, its handler would run and
//! `run` would return normally: so "it traps" is the whole check.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a broken case fails the test"
)]

#[path = "common/edge.rs"]
mod edge;

use karmem_bridge::lower::Abi;
use wasmtime::component::{Component, Linker as ComponentLinker, Val};
use wasmtime::{Config, Engine, Linker, Module, Store};

const ABIS: [Abi; 2] = [Abi::Canonical, Abi::Karmem];

/// What wasmtime's component runtime says when an exception leaves a component.
const UNCAUGHT: &str = "uncaught exception propagated out of component";
/// What wasmtime says when an exception reaches the host (it does not trap there).
const THROWN: &str = "thrown Wasm exception";

fn component_engine() -> Engine {
    let mut config = Config::new();
    config.wasm_component_model(true).wasm_multi_memory(true).wasm_exceptions(true);
    Engine::new(&config).unwrap()
}

fn core_engine() -> Engine {
    let mut config = Config::new();
    config.wasm_multi_memory(true).wasm_exceptions(true);
    Engine::new(&config).unwrap()
}

/// Instantiate the component on the reference and call `export` (no parameters) when given:
/// its results, or the error text.
fn reference(wat: &str, export: Option<&str>) -> Result<Vec<Val>, String> {
    let engine = component_engine();
    let component = Component::new(&engine, wat).unwrap();
    let mut store = Store::new(&engine, ());
    let linker = ComponentLinker::new(&engine);
    let run = |store: &mut Store<()>| -> anyhow::Result<Vec<Val>> {
        let instance = linker.instantiate(&mut *store, &component)?;
        let Some(name) = export else { return Ok(Vec::new()) };
        let func = instance.get_func(&mut *store, name).unwrap();
        let mut results = vec![Val::Bool(false); func.ty(&*store).results().len()];
        func.call(&mut *store, &[], &mut results)?;
        Ok(results)
    };
    run(&mut store).map_err(|e| format!("{e:?}"))
}

/// The component lowered under `abi` (WASI as `lower` picks by default); at the canonical
/// boundary, memories that cannot share one take `--multi-memory` (the documented remedy).
fn lower(wat: &str, abi: Abi) -> Vec<u8> {
    let bytes = wat::parse_str(wat).unwrap();
    let options = karmem_bridge::LowerOptions { abi, ..karmem_bridge::LowerOptions::default() };
    match karmem_bridge::lower(&bytes, &options) {
        Ok(lowered) => lowered.module,
        Err(e) if abi == Abi::Canonical && format!("{e:#}").contains("in one memory") => {
            let options = karmem_bridge::LowerOptions { multi_memory: true, ..options };
            karmem_bridge::lower(&bytes, &options).unwrap_or_else(|e| panic!("lowering: {e:#}")).module
        }
        Err(e) => panic!("lowering: {e:#}"),
    }
}

/// Lower under `abi` and run on wasmtime without the component model: instantiate, then call
/// `export` (no parameters) when given. At the canonical boundary its results; through the
/// Karmem edge none.
fn lowered(wat: &str, abi: Abi, export: Option<&str>) -> Result<Vec<wasmtime::Val>, String> {
    let module = lower(wat, abi);
    if abi == Abi::Karmem {
        return edge::through_the_edge(&module, export).map(|()| Vec::new());
    }
    let engine = core_engine();
    let module = Module::new(&engine, &module).unwrap();
    let mut store = Store::new(&engine, ());
    let linker = Linker::new(&engine);
    let run = |store: &mut Store<()>| -> anyhow::Result<Vec<wasmtime::Val>> {
        let instance = linker.instantiate(&mut *store, &module)?;
        let Some(name) = export else { return Ok(Vec::new()) };
        let func = instance.get_func(&mut *store, name).unwrap();
        let mut results = vec![wasmtime::Val::I32(0); func.ty(&*store).results().len()];
        func.call(&mut *store, &[], &mut results)?;
        Ok(results)
    };
    run(&mut store).map_err(|e| format!("{e:?}"))
}

/// The reference traps with [`UNCAUGHT`]; both lowerings trap at the boundary (`unreachable`),
/// which neither a leaked exception reaching `$B`'s handler (a normal return) nor one reaching
/// the host (wasmtime's [`THROWN`] error) would be.
fn traps_at_the_boundary(wat: &str, export: Option<&str>) {
    let error = reference(wat, export).expect_err("the reference must trap");
    assert!(error.contains(UNCAUGHT), "the reference traps for another reason: {error}");
    lowered_traps(wat, export);
}

/// At the host boundary the reference hands the exception to the host ([`THROWN`]); the
/// lowered module traps instead (see [`a_host_forwarding_an_error_cannot_rethrow_it`]).
fn traps_at_the_host(wat: &str, export: Option<&str>) {
    let error = reference(wat, export).expect_err("the reference must fail");
    assert!(error.contains(THROWN), "the reference fails for another reason: {error}");
    lowered_traps(wat, export);
}

fn lowered_traps(wat: &str, export: Option<&str>) {
    for abi in ABIS {
        let error = match lowered(wat, abi, export) {
            Ok(results) => panic!("{abi:?}: the exception reached the caller's handler (results {results:?})"),
            Err(e) => e,
        };
        assert!(error.contains("unreachable"), "{abi:?}: expected the boundary's trap, got: {error}");
    }
}

/// `$B`'s core module: `run` calls the import `f` (with `args`) inside a `try_table`; it returns
/// 0 when `f` returns and 1 when its `catch_all` caught an exception from `f`.
fn caller(import: &str, args: &str) -> String {
    format!(
        r#"(core module $m
      (import "" "f" (func $f {import}))
      (func (export "run") (result i32)
        (block $caught
          (try_table (catch_all $caught)
            (call $f {args}))
          (return (i32.const 0)))
        i32.const 1))"#
    )
}

/// `$A` (given) exports `f` of WIT type `f_ty`; `$B` (built with `b_core`) calls it.
fn pair(a: &str, f_ty: &str, b_libc: &str, b_core: &str, lower_options: &str) -> String {
    format!(
        r#"(component
  {a}
  (component $B
    (import "f" (func $f {f_ty}))
    {b_libc}
    (core func $f-core (canon lower (func $f) {lower_options}))
    {b_core}
    (core instance $i (instantiate $m
      (with "" (instance (export "f" (func $f-core))))))
    (func (export "run") (result u32) (canon lift (core func $i "run"))))
  (instance $a (instantiate $A))
  (instance $b (instantiate $B (with "f" (func $a "f"))))
  (export "run" (func $b "run"))
)"#
    )
}

/// `$A`'s `f` throws and does not catch.
fn callee_throws() -> String {
    let a = r#"(component $A
    (core module $m
      (tag $t)
      (func (export "f") (throw $t)))
    (core instance $i (instantiate $m))
    (func (export "f") (canon lift (core func $i "f"))))"#;
    pair(a, "", "", &caller("", ""), "")
}

/// `$A`'s `f` throws and catches it itself: nothing crosses, `run` returns 0.
fn callee_catches() -> String {
    let a = r#"(component $A
    (core module $m
      (tag $t)
      (func $throw (throw $t))
      (func (export "f")
        (block $caught
          (try_table (catch_all $caught)
            (call $throw)))))
    (core instance $i (instantiate $m))
    (func (export "f") (canon lift (core func $i "f"))))"#;
    pair(a, "", "", &caller("", ""), "")
}

/// `$A`'s `realloc` throws while the copying adapter lowers a string into `$A`'s memory.
fn realloc_throws() -> String {
    let a = r#"(component $A
    (core module $m
      (tag $t)
      (memory (export "memory") 1)
      (func (export "realloc") (param i32 i32 i32 i32) (result i32) (throw $t))
      (func (export "f") (param i32 i32)))
    (core instance $i (instantiate $m))
    (func (export "f") (param "s" string)
      (canon lift (core func $i "f") (memory (core memory $i "memory")) (realloc (core func $i "realloc")))))"#;
    let libc = r#"(core module $libc
      (memory (export "memory") 1)
      (data (i32.const 16) "hello"))
    (core instance $libc (instantiate $libc))"#;
    pair(
        a,
        r#"(param "s" string)"#,
        libc,
        &caller("(param i32 i32)", "(i32.const 16) (i32.const 5)"),
        r#"(memory (core memory $libc "memory"))"#,
    )
}

/// `$A`'s `post-return` throws after `f` returned.
fn post_return_throws() -> String {
    let a = r#"(component $A
    (core module $m
      (tag $t)
      (func (export "f"))
      (func (export "post-f") (throw $t)))
    (core instance $i (instantiate $m))
    (func (export "f") (canon lift (core func $i "f") (post-return (core func $i "post-f")))))"#;
    pair(a, "", "", &caller("", ""), "")
}

/// `$B` drops a resource `$A` defines, whose destructor throws: `resource.drop` is a boundary
/// too. (The destructor lives in a module of its own, instantiated before the resource type
/// that names it.)
const DESTRUCTOR_THROWS: &str = r#"(component
  (component $A
    (core module $d
      (tag $t)
      (func (export "dtor") (param i32) (throw $t)))
    (core instance $d (instantiate $d))
    (type $r (resource (rep i32) (dtor (core func $d "dtor"))))
    (core func $r.new (canon resource.new $r))
    (core module $a
      (import "" "new" (func $new (param i32) (result i32)))
      (func (export "make") (result i32) (call $new (i32.const 7))))
    (core instance $a (instantiate $a (with "" (instance (export "new" (func $r.new))))))
    (export $r' "r" (type $r))
    (func (export "make") (result (own $r')) (canon lift (core func $a "make"))))
  (component $B
    (import "a" (instance $a
      (export "r" (type $r (sub resource)))
      (export "make" (func (result (own $r))))))
    (core func $make (canon lower (func $a "make")))
    (alias export $a "r" (type $r))
    (core func $drop (canon resource.drop $r))
    (core module $b
      (import "" "make" (func $make (result i32)))
      (import "" "drop" (func $drop (param i32)))
      (func (export "run") (result i32)
        (block $caught
          (try_table (catch_all $caught)
            (call $drop (call $make)))
          (return (i32.const 0)))
        i32.const 1))
    (core instance $b (instantiate $b
      (with "" (instance (export "make" (func $make)) (export "drop" (func $drop))))))
    (func (export "run") (result u32) (canon lift (core func $b "run"))))
  (instance $a (instantiate $A))
  (instance $b (instantiate $B (with "a" (instance $a))))
  (export "run" (func $b "run"))
)"#;

/// One component whose export throws: at the host boundary, a trap too.
const EXPORT_THROWS: &str = r#"(component
  (core module $m
    (tag $t)
    (func (export "f") (throw $t))
    (func (export "g") (result i32) i32.const 5))
  (core instance $i (instantiate $m))
  (func (export "f") (canon lift (core func $i "f")))
  (func (export "g") (result u32) (canon lift (core func $i "g")))
)"#;

/// A start function that throws: instantiation traps.
const START_THROWS: &str = r#"(component
  (core module $m
    (tag $t)
    (func $start (throw $t))
    (start $start)
    (func (export "g") (result i32) i32.const 5))
  (core instance $i (instantiate $m))
  (func (export "g") (result u32) (canon lift (core func $i "g")))
)"#;

#[test]
fn an_exception_the_callee_does_not_catch_traps_at_the_call() {
    traps_at_the_boundary(&callee_throws(), Some("run"));
}

#[test]
fn an_exception_from_the_callees_realloc_traps() {
    traps_at_the_boundary(&realloc_throws(), Some("run"));
}

#[test]
fn an_exception_from_the_callees_post_return_traps() {
    traps_at_the_boundary(&post_return_throws(), Some("run"));
}

#[test]
fn an_exception_from_another_components_destructor_traps() {
    traps_at_the_boundary(DESTRUCTOR_THROWS, Some("run"));
}

#[test]
fn an_exception_caught_inside_the_component_never_crosses() {
    let wat = callee_catches();
    let results = reference(&wat, Some("run")).unwrap();
    assert_eq!(results, [Val::U32(0)]);
    let results = lowered(&wat, Abi::Canonical, Some("run")).unwrap();
    assert_eq!(results.first().and_then(wasmtime::Val::i32), Some(0));
    lowered(&wat, Abi::Karmem, Some("run")).unwrap();
}

#[test]
fn an_exception_leaving_through_an_export_or_start_function_traps() {
    traps_at_the_host(EXPORT_THROWS, Some("f"));
    traps_at_the_host(START_THROWS, None);
    // The other export of the module with the throwing one still answers.
    let results = lowered(EXPORT_THROWS, Abi::Canonical, Some("g")).unwrap();
    assert_eq!(results.first().and_then(wasmtime::Val::i32), Some(5));
    lowered(EXPORT_THROWS, Abi::Karmem, Some("g")).unwrap();
}

/// A composition without exception tags lowers to a module that needs no exception handling:
/// the boundary's `try_table`s are only added to modules that can throw.
#[test]
fn a_module_without_tags_needs_no_exception_handling() {
    let wat = callee_throws().replace("(tag $t)", "").replace("(throw $t)", "nop").replace(
        r#"(block $caught
          (try_table (catch_all $caught)
            (call $f ))
          (return (i32.const 0)))"#,
        "(call $f) (return (i32.const 0))",
    );
    assert!(!wat.contains("try_table"), "the case still uses exception handling: {wat}");
    let mut features = wasmparser::WasmFeatures::default();
    features.remove(wasmparser::WasmFeatures::EXCEPTIONS);
    features.insert(wasmparser::WasmFeatures::MULTI_MEMORY);
    for abi in ABIS {
        let module = lower(&wat, abi);
        wasmparser::Validator::new_with_features(features)
            .validate_all(&module)
            .unwrap_or_else(|e| panic!("{abi:?}: the output uses a feature beyond the input's: {e}"));
    }
    let results = lowered(&wat, Abi::Canonical, Some("run")).unwrap();
    assert_eq!(results.first().and_then(wasmtime::Val::i32), Some(0));
}

/// A component with exception tags that imports WASI 0.2 lowers through the default WASI
/// path (the preview2 shim linked into the module, `wasi_link`): the tags stay tags, the
/// module imports only preview1, the import is served, and an escaping exception still traps.
const WASI_WITH_TAGS: &str = r#"(component
  (import "wasi:random/random@0.2.0" (instance $random
    (export "get-random-bytes" (func (param "len" u64) (result (list u8))))))
  (core module $libc
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 1024))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (global.get $next)
      (global.set $next (i32.add (global.get $next) (local.get 3)))))
  (core instance $libc (instantiate $libc))
  (core func $bytes (canon lower (func $random "get-random-bytes")
    (memory (core memory $libc "memory")) (realloc (core func $libc "cabi_realloc"))))
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "wasi:random/random@0.2.0" "get-random-bytes" (func $bytes (param i64 i32)))
    (tag $t (param i32))
    ;; eight random bytes; their count goes through a thrown and caught exception
    (func (export "run") (result i32)
      (block $caught (result i32)
        (try_table (catch $t $caught)
          (call $bytes (i64.const 8) (i32.const 16))
          (throw $t (i32.load (i32.const 20))))
        unreachable))
    (func (export "escape") (throw $t (i32.const 0))))
  (core instance $i (instantiate $m
    (with "libc" (instance $libc))
    (with "wasi:random/random@0.2.0" (instance (export "get-random-bytes" (func $bytes))))))
  (func (export "run") (result u32) (canon lift (core func $i "run")))
  (func (export "escape") (canon lift (core func $i "escape")))
)"#;

#[test]
fn a_component_with_tags_and_wasi_imports_lowers_through_the_wasi_shim() {
    let reference_error = reference_with_wasi(WASI_WITH_TAGS, "escape").expect_err("the reference must fail");
    assert!(reference_error.contains(THROWN), "the reference fails for another reason: {reference_error}");
    let results = reference_with_wasi(WASI_WITH_TAGS, "run").unwrap();
    assert_eq!(results, [Val::U32(8)]);
    for abi in ABIS {
        let module = lower(WASI_WITH_TAGS, abi);
        let parsed = wasmparser::Parser::new(0).parse_all(&module).collect::<Result<Vec<_>, _>>().unwrap();
        let tags: u32 = parsed
            .iter()
            .map(|p| match p {
                wasmparser::Payload::TagSection(s) => s.count(),
                _ => 0,
            })
            .sum();
        assert_eq!(tags, 1, "{abi:?}: the tag must survive the link");
        let import_modules: Vec<String> = parsed
            .iter()
            .filter_map(|p| match p {
                wasmparser::Payload::ImportSection(s) => Some(s.clone().into_imports()),
                _ => None,
            })
            .flatten()
            .map(|i| i.unwrap().module.to_string())
            .filter(|m| !m.starts_with("karmem"))
            .collect();
        assert!(
            import_modules.iter().all(|m| m == "wasi_snapshot_preview1"),
            "{abi:?}: WASI 0.2 imports left: {import_modules:?}"
        );
    }
    let module = lower(WASI_WITH_TAGS, Abi::Canonical);
    assert_eq!(run_with_wasi(&module, "run").unwrap().first().and_then(wasmtime::Val::i32), Some(8));
    let error = run_with_wasi(&module, "escape").expect_err("the escaping exception must trap");
    assert!(error.contains("unreachable"), "expected the boundary's trap, got: {error}");
}

/// The reference with WASI 0.2 (`wasmtime_wasi::p2`).
fn reference_with_wasi(wat: &str, export: &str) -> Result<Vec<Val>, String> {
    struct Host {
        wasi: wasmtime_wasi::WasiCtx,
        table: wasmtime::component::ResourceTable,
    }
    impl wasmtime_wasi::WasiView for Host {
        fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
            wasmtime_wasi::WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
        }
    }
    let engine = component_engine();
    let component = Component::new(&engine, wat).unwrap();
    let host = Host { wasi: wasmtime_wasi::WasiCtxBuilder::new().build(), table: Default::default() };
    let mut store = Store::new(&engine, host);
    let mut linker = ComponentLinker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let run = |store: &mut Store<Host>| -> anyhow::Result<Vec<Val>> {
        let instance = linker.instantiate(&mut *store, &component)?;
        let func = instance.get_func(&mut *store, export).unwrap();
        let mut results = vec![Val::Bool(false); func.ty(&*store).results().len()];
        func.call(&mut *store, &[], &mut results)?;
        Ok(results)
    };
    run(&mut store).map_err(|e| format!("{e:?}"))
}

/// A canonical-ABI lowered module on wasmtime with WASI preview1 (`wasmtime_wasi::p1`).
fn run_with_wasi(module: &[u8], export: &str) -> Result<Vec<wasmtime::Val>, String> {
    let engine = core_engine();
    let module = Module::new(&engine, module).unwrap();
    let mut linker: Linker<wasmtime_wasi::p1::WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
    let mut store = Store::new(&engine, wasmtime_wasi::WasiCtxBuilder::new().build_p1());
    let run = |store: &mut Store<wasmtime_wasi::p1::WasiP1Ctx>| -> anyhow::Result<Vec<wasmtime::Val>> {
        let instance = linker.instantiate(&mut *store, &module)?;
        let func = instance.get_func(&mut *store, export).unwrap();
        let mut results = vec![wasmtime::Val::I32(0); func.ty(&*store).results().len()];
        func.call(&mut *store, &[], &mut results)?;
        Ok(results)
    };
    run(&mut store).map_err(|e| format!("{e:?}"))
}

/// Why the host boundary traps rather than letting the exception through as wasmtime's
/// component runtime does: a host function that forwards the error of a call into a module
/// (as a host linking two modules does) makes wasmtime rethrow a thrown exception into the
/// module that called the host function, where a `catch_all` catches it. A trap is never
/// rethrown. `$X` calls the host inside a `try_table` and returns 1 when it caught something.
#[test]
fn a_host_forwarding_an_error_cannot_rethrow_it() {
    const X: &str = r#"(module
      (import "host" "f" (func $f))
      (func (export "run") (result i32)
        (block $caught
          (try_table (catch_all $caught)
            (call $f))
          (return (i32.const 0)))
        i32.const 1))"#;
    /// `X.run`, its import served by a host function that calls `f` of `callee` and forwards
    /// its error.
    fn through_the_host(callee: &[u8]) -> Result<i32, String> {
        let engine = core_engine();
        let mut store = Store::new(&engine, ());
        let callee = Module::new(&engine, callee).unwrap();
        let callee = Linker::new(&engine).instantiate(&mut store, &callee).unwrap();
        let f = callee.get_typed_func::<(), ()>(&mut store, "f").unwrap();
        let mut linker = Linker::new(&engine);
        linker.func_wrap("host", "f", move |mut caller: wasmtime::Caller<'_, ()>| f.call(&mut caller, ())).unwrap();
        let x = Module::new(&engine, X).unwrap();
        let x = linker.instantiate(&mut store, &x).unwrap();
        let run = x.get_typed_func::<(), i32>(&mut store, "run").unwrap();
        run.call(&mut store, ()).map_err(|e| format!("{e:?}"))
    }
    // A plain core module that throws: the exception reaches `$X`'s handler.
    let plain = wat::parse_str(r#"(module (tag $t) (func (export "f") (throw $t)))"#).unwrap();
    assert_eq!(through_the_host(&plain), Ok(1));
    // The same function lowered from a component: it traps, and the trap stays a trap.
    let lowered = lower(EXPORT_THROWS, Abi::Canonical);
    let error = through_the_host(&lowered).expect_err("the lowered module must trap");
    assert!(error.contains("unreachable"), "expected the boundary's trap, got: {error}");
}
