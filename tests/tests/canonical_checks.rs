//! The canonical ABI's checks in lowered modules (issue 17): bad values and bad calls between
//! the parts of a component trap in the lowered module where the component model traps.
//!
//! Each case is a small component (WAT) that the component model rejects at run time. The
//! reference, wasmtime 48's component runtime, must trap with the specification's reason (the
//! message is asserted, so each case documents which rule it is about); the component lowered
//! by `karmem_bridge::lower` under `--abi canonical` and `--abi karmem` must trap at the same
//! step on wasmtime with the component model off (a lowered module's checks end in
//! `unreachable`: the reason is the case's). Valid neighbours of each case must keep working.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a broken case fails the test"
)]

#[path = "common/edge.rs"]
mod edge;

use wasmtime::component::{Component, Linker as ComponentLinker, Val};
use wasmtime::{Config, Engine, Linker, Module, Store};

fn component_engine() -> Engine {
    let mut config = Config::new();
    config.wasm_component_model(true).wasm_multi_memory(true);
    Engine::new(&config).unwrap()
}

fn core_engine() -> Engine {
    let mut config = Config::new();
    config.wasm_multi_memory(true);
    Engine::new(&config).unwrap()
}

/// Instantiate the component on the reference and call `export` (when given); the error text.
fn reference(wat: &str, export: Option<&str>) -> Result<(), String> {
    let engine = component_engine();
    let component = Component::new(&engine, wat).unwrap();
    let mut store = Store::new(&engine, ());
    let linker = ComponentLinker::new(&engine);
    let run = |store: &mut Store<()>| -> anyhow::Result<()> {
        let instance = linker.instantiate(&mut *store, &component)?;
        if let Some(name) = export {
            let func = instance.get_func(&mut *store, name).unwrap();
            let mut results = vec![Val::Bool(false); func.ty(&*store).results().len()];
            func.call(&mut *store, &[], &mut results)?;
        }
        Ok(())
    };
    run(&mut store).map_err(|e| format!("{e:?}"))
}

/// The component lowered under `abi`; at the canonical boundary, memories that cannot share one
/// take `--multi-memory` (the documented remedy, as the conformance runner does).
fn lower(wat: &str, abi: karmem_bridge::lower::Abi) -> Vec<u8> {
    let bytes = wat::parse_str(wat).unwrap();
    let options = karmem_bridge::LowerOptions { abi, ..karmem_bridge::LowerOptions::default() };
    match karmem_bridge::lower(&bytes, &options) {
        Ok(lowered) => lowered.module,
        Err(e) if abi == karmem_bridge::lower::Abi::Canonical && format!("{e:#}").contains("in one memory") => {
            let options = karmem_bridge::LowerOptions { multi_memory: true, ..options };
            karmem_bridge::lower(&bytes, &options).unwrap_or_else(|e| panic!("lowering: {e:#}")).module
        }
        Err(e) => panic!("lowering: {e:#}"),
    }
}

/// Lower the component under `abi` and run it on wasmtime without the component model:
/// instantiate, then call the core export `export` (no parameters) when given.
fn lowered(wat: &str, abi: karmem_bridge::lower::Abi, export: Option<&str>) -> Result<(), String> {
    let module = lower(wat, abi);
    if abi == karmem_bridge::lower::Abi::Karmem {
        return edge::through_the_edge(&module, export);
    }
    let engine = core_engine();
    let module = Module::new(&engine, &module).unwrap();
    let mut store = Store::new(&engine, ());
    let linker = Linker::new(&engine);
    let run = |store: &mut Store<()>| -> anyhow::Result<()> {
        let instance = linker.instantiate(&mut *store, &module)?;
        if let Some(name) = export {
            let func = instance.get_func(&mut *store, name).unwrap();
            let mut results = vec![wasmtime::Val::I32(0); func.ty(&*store).results().len()];
            func.call(&mut *store, &[], &mut results)?;
        }
        Ok(())
    };
    run(&mut store).map_err(|e| format!("{e:?}"))
}

const ABIS: [karmem_bridge::lower::Abi; 2] = [karmem_bridge::lower::Abi::Canonical, karmem_bridge::lower::Abi::Karmem];

/// The reference traps with `reason`; both lowerings trap (`unreachable`).
fn traps_on_both(wat: &str, export: Option<&str>, core_export: Option<&str>, reason: &str) {
    let error = reference(wat, export).expect_err("the reference must trap");
    assert!(error.contains(reason), "the reference traps for another reason: {error}");
    for abi in ABIS {
        let error = lowered(wat, abi, core_export).expect_err(&format!("{abi:?}: the lowered module must trap ({reason})"));
        assert!(error.contains("unreachable"), "{abi:?}: expected the check's trap ({reason}), got: {error}");
    }
}

/// A component whose start function calls a function its own instance lifted.
const START_REENTERS_ITS_INSTANCE: &str = r#"
(component
  (core module $m (func (export "")))
  (core instance $m (instantiate $m))
  (func $f1 (canon lift (core func $m "")))
  (core func $f2 (canon lower (func $f1)))
  (core module $m2
    (import "" "" (func $f))
    (func $start call $f)
    (start $start))
  (core instance (instantiate $m2 (with "" (instance (export "" (func $f2))))))
)"#;

/// A component lifts a function and a component instantiated inside it lowers and calls it
/// from its start function: the callee's instance (the parent) is on the stack.
const CHILD_ENTERS_ITS_PARENT: &str = r#"
(component
  (core module $m (func (export "")))
  (core instance $m (instantiate $m))
  (func $f1 (canon lift (core func $m "")))
  (component $child
    (import "f" (func $f))
    (core func $f2 (canon lower (func $f)))
    (core module $m2
      (import "" "" (func $f))
      (func $start call $f)
      (start $start))
    (core instance (instantiate $m2 (with "" (instance (export "" (func $f2))))))
  )
  (instance (instantiate $child (with "f" (func $f1))))
)"#;

/// Two sibling instances: the second calls the first from its start function, which is allowed.
const SIBLING_CALL_AT_START: &str = r#"
(component
  (component $callee
    (core module $m (func (export "")))
    (core instance $m (instantiate $m))
    (func (export "f") (canon lift (core func $m "")))
  )
  (component $caller
    (import "f" (func $f))
    (core func $f2 (canon lower (func $f)))
    (core module $m2
      (import "" "" (func $f))
      (func $start call $f)
      (start $start))
    (core instance (instantiate $m2 (with "" (instance (export "" (func $f2))))))
  )
  (instance $a (instantiate $callee))
  (instance (instantiate $caller (with "f" (func $a "f"))))
)"#;

#[test]
fn a_start_function_entering_its_own_instance_traps() {
    traps_on_both(START_REENTERS_ITS_INSTANCE, None, None, "cannot enter component instance");
}

#[test]
fn a_child_entering_the_instance_it_is_nested_in_traps() {
    traps_on_both(CHILD_ENTERS_ITS_PARENT, None, None, "cannot enter component instance");
}

#[test]
fn a_sibling_call_at_start_is_allowed() {
    reference(SIBLING_CALL_AT_START, None).unwrap();
    for abi in ABIS {
        lowered(SIBLING_CALL_AT_START, abi, None).unwrap_or_else(|e| panic!("{abi:?}: {e}"));
    }
}

/// A copying adapter between two components (`--multi-memory` or partitions): the caller
/// passes a UTF-8 string to a UTF-16 callee whose `realloc` returns an aligned block first and
/// an odd address when the adapter shrinks it.
const MISALIGNED_SHRINK: &str = r#"
(component
  (component $c
    (core module $m
      (func (export "") (param i32 i32) unreachable)
      (func (export "realloc") (param $old_ptr i32) (param i32 i32 i32) (result i32)
        (if (result i32) (i32.eqz (local.get $old_ptr)) (then (i32.const 2)) (else (i32.const 3))))
      (memory (export "memory") 1))
    (core instance $m (instantiate $m))
    (func (export "a") (param "a" string)
      (canon lift (core func $m "") (realloc (core func $m "realloc")) (memory (core memory $m "memory"))
        string-encoding=utf16)))
  (component $c2
    (import "a" (func $f (param "a" string)))
    (core module $libc (memory (export "memory") 1) (data (memory 0) (i32.const 0) "\c3\a0\c3\a0"))
    (core instance $libc (instantiate $libc))
    (core func $f (canon lower (func $f) string-encoding=utf8 (memory (core memory $libc "memory"))))
    (core module $m
      (import "" "" (func $f (param i32 i32)))
      (func (export "f") (call $f (i32.const 0) (i32.const 4))))
    (core instance $m (instantiate $m (with "" (instance (export "" (func $f))))))
    (func (export "f") (canon lift (core func $m "f"))))
  (instance $c (instantiate $c))
  (instance $c2 (instantiate $c2 (with "a" (func $c "a"))))
  (export "f" (func $c2 "f"))
)"#;

/// The same shape with `$ARG` as the caller's list pointer and `$REALLOC` as the callee's
/// `realloc` result, for a `list<u32>` of one element.
const LIST_COPY: &str = r#"
(component
  (component $c
    (core module $m
      (func (export "") (param i32 i32))
      (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const $REALLOC))
      (memory (export "memory") 1))
    (core instance $m (instantiate $m))
    (func (export "a") (param "a" (list u32))
      (canon lift (core func $m "") (realloc (core func $m "realloc")) (memory (core memory $m "memory")))))
  (component $c2
    (import "a" (func $f (param "a" (list u32))))
    (core module $libc (memory (export "memory") 1))
    (core instance $libc (instantiate $libc))
    (core func $f (canon lower (func $f) (memory (core memory $libc "memory"))))
    (core module $m
      (import "" "" (func $f (param i32 i32)))
      (func (export "f") (call $f (i32.const $ARG) (i32.const 1))))
    (core instance $m (instantiate $m (with "" (instance (export "" (func $f))))))
    (func (export "f") (canon lift (core func $m "f"))))
  (instance $c (instantiate $c))
  (instance $c2 (instantiate $c2 (with "a" (func $c "a"))))
  (export "f" (func $c2 "f"))
)"#;

fn list_copy(arg: u32, realloc: u32) -> String {
    LIST_COPY.replace("$ARG", &arg.to_string()).replace("$REALLOC", &realloc.to_string())
}

#[test]
fn a_misaligned_realloc_result_when_a_string_shrinks_traps() {
    traps_on_both(MISALIGNED_SHRINK, Some("f"), Some("f"), "unaligned pointer");
}

#[test]
fn a_misaligned_list_pointer_or_realloc_result_traps() {
    // Aligned both ways: the copy goes through.
    let fine = list_copy(8, 16);
    reference(&fine, Some("f")).unwrap();
    for abi in ABIS {
        lowered(&fine, abi, Some("f")).unwrap_or_else(|e| panic!("{abi:?}: {e}"));
    }
    // The caller's list pointer, then the callee's allocation, off by two.
    traps_on_both(&list_copy(6, 16), Some("f"), Some("f"), "unaligned pointer");
    traps_on_both(&list_copy(8, 18), Some("f"), Some("f"), "unaligned pointer");
}

/// Exports returning a string at an odd address: the UTF-16 one and the latin1+UTF-16 one
/// must trap when the result is lifted (by the host at the canonical boundary, by the Karmem
/// adapter at the Karmem edge); the UTF-8 one is fine.
const ODD_STRING_RESULT: &str = r#"
(component
  (core module $m
    (memory (export "m") 1)
    (func (export "f") (result i32)
      (i32.store (i32.const 4) (i32.const 1))
      (i32.store (i32.const 8) (i32.const 0))
      i32.const 4))
  (core instance $m (instantiate $m))
  (func (export "f1") (result string)
    (canon lift (core func $m "f") (memory (core memory $m "m")) string-encoding=utf16))
  (func (export "f2") (result string)
    (canon lift (core func $m "f") (memory (core memory $m "m")) string-encoding=latin1+utf16))
  (func (export "f3") (result string)
    (canon lift (core func $m "f") (memory (core memory $m "m")) string-encoding=utf8))
)"#;

#[test]
fn a_utf16_string_at_an_odd_address_traps_when_lifted() {
    use karmem_tests::harness::{Completion, Runner};
    use karmem_tests::invocation::{Action, Call, Invocation};
    let component = wat::parse_str(ODD_STRING_RESULT).unwrap();
    for (export, odd) in [("f1", true), ("f2", true), ("f3", false)] {
        let reference = reference(ODD_STRING_RESULT, Some(export));
        // Canonical boundary: the host lifts the result.
        let lowered = lower(ODD_STRING_RESULT, karmem_bridge::lower::Abi::Canonical);
        let mut runner = karmem_tests::canonical_host::CanonicalRunner::new(&component, &lowered).unwrap();
        let call = Call { bind: None, interface: None, function: export.to_owned(), args: Vec::new() };
        let invocation = Invocation { line: 0, text: export.to_owned(), action: Action::Call(call) };
        let canonical = match runner.invoke(&invocation) {
            Ok(outcome) => match outcome.completion {
                Completion::Returned(_) => Ok(()),
                other => Err(format!("{other:?}")),
            },
            Err(e) => Err(format!("{e:#}")),
        };
        // Karmem edge: the adapter lifts it.
        let karmem = lowered_run(export);
        if odd {
            let error = reference.expect_err("the reference must trap");
            assert!(error.contains("string pointer not aligned to 2"), "{export}: the reference: {error}");
            let error = canonical.expect_err("the canonical host must refuse the result");
            assert!(error.contains("string pointer not aligned to 2"), "{export}: canonical: {error}");
            let error = karmem.expect_err("the Karmem adapter must trap");
            assert!(error.contains("unreachable"), "{export}: karmem: {error}");
        } else {
            reference.unwrap();
            canonical.unwrap();
            karmem.unwrap();
        }
    }
}

fn lowered_run(export: &str) -> Result<(), String> {
    lowered(ODD_STRING_RESULT, karmem_bridge::lower::Abi::Karmem, Some(export))
}

/// Two components sharing no memory, the second calling the first from its start function
/// (a direct call in the lowered module): `$VALUE` as the callee's result of type `$TYPE`,
/// and the same value as the caller's argument to a function taking `$TYPE`.
const DIRECT_CALL: &str = r#"
(component
  (type $t $TYPE)
  (component $producer
    (import "t" (type $t' (eq $t)))
    (core module $core
      (func (export "get") (result i32) (i32.const $VALUE))
      (func (export "take") $TAKE))
    (core instance $inst (instantiate $core))
    (func (export "$FUNC") $SIG (canon lift (core func $inst "$FUNC"))))
  (component $consumer
    (import "t" (type $t' (eq $t)))
    (import "f" (func $f $SIG))
    (core func $lowered (canon lower (func $f)))
    (core module $core
      (import "" "f" (func $f $CORE))
      (func $start $CALL)
      (start $start))
    (core instance (instantiate $core (with "" (instance (export "f" (func $lowered)))))))
  (instance $prod (instantiate $producer (with "t" (type $t))))
  (instance (instantiate $consumer (with "t" (type $t)) (with "f" (func $prod "$FUNC"))))
)"#;

fn direct_call(ty: &str, value: i32, as_result: bool) -> String {
    // A variant with a payload takes two flat values (the payload here is 0).
    let two = ty.contains("u32") || ty.contains("u8");
    let (sig, core, call, func) = match (as_result, two) {
        (true, _) => ("(result $t')", "(param) (result i32)", "(drop (call $f))", "get"),
        (false, false) => ("(param \"v\" $t')", "(param i32)", "(call $f (i32.const $VALUE))", "take"),
        (false, true) => ("(param \"v\" $t')", "(param i32 i32)", "(call $f (i32.const $VALUE) (i32.const 0))", "take"),
    };
    DIRECT_CALL
        .replace("$SIG", sig)
        .replace("$CORE", core)
        .replace("$TAKE", if two { "(param i32 i32)" } else { "(param i32)" })
        .replace("$CALL", call)
        .replace("$FUNC", func)
        .replace("$TYPE", ty)
        .replace("$VALUE", &value.to_string())
}

#[test]
fn invalid_values_between_two_components_trap() {
    let cases: [(&str, i32, &str); 6] = [
        ("(enum \"a\" \"b\" \"c\")", 3, "invalid variant discriminant"),
        ("(variant (case \"a\") (case \"b\" u32))", 2, "invalid variant discriminant"),
        ("(option u8)", 2, "invalid variant discriminant"),
        ("(result)", 2, "invalid variant discriminant"),
        ("char", 0xd800, "invalid `char` bit pattern"),
        ("char", 0x11_0000, "invalid `char` bit pattern"),
    ];
    for (ty, value, reason) in cases {
        // A variant with a payload takes two flat values: a result of it goes through memory.
        let results: &[bool] = if ty.contains("u32") || ty.contains("u8") { &[false] } else { &[true, false] };
        for &as_result in results {
            let wat = direct_call(ty, value, as_result);
            let error = reference(&wat, None).expect_err("the reference must trap");
            assert!(error.contains(reason), "{ty} = {value}: the reference traps for another reason: {error}");
            for abi in ABIS {
                let error = lowered(&wat, abi, None)
                    .expect_err(&format!("{abi:?}: {ty} = {value} (result: {as_result}) must trap: {reason}"));
                assert!(error.contains("unreachable"), "{abi:?}: {ty} = {value}: {error}");
            }
        }
    }
    // The largest valid values pass.
    for (ty, value) in [("(enum \"a\" \"b\" \"c\")", 2), ("char", 0x10_ffff), ("char", 0xe000), ("(result)", 1)] {
        for as_result in [true, false] {
            let wat = direct_call(ty, value, as_result);
            reference(&wat, None).unwrap();
            for abi in ABIS {
                lowered(&wat, abi, None).unwrap_or_else(|e| panic!("{abi:?}: {ty} = {value}: {e}"));
            }
        }
    }
}
