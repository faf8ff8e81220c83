//! Handle tables as the canonical ABI defines them (issue 17): one table per component
//! instance, shared by every resource type it holds handles of (the resources it defines and
//! the host resources it imports), each entry carrying its type, with lend counts.
//!
//! Each case is a small component (WAT). Valid ones check the specification's handle numbers
//! from inside (a start function traps on a wrong number) and must instantiate on the
//! reference (wasmtime 48's component runtime) and, lowered by `karmem_bridge::lower`, on
//! wasmtime without the component model under `--abi canonical` and `--abi karmem`. Bad ones
//! must trap on the reference with the specification's reason (asserted, so each case names
//! its rule) and trap in both lowerings (a lowered module's checks end in `unreachable`).
//! Host resources run at the canonical boundary only, where the test provides the host.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a broken case fails the test"
)]

#[path = "common/edge.rs"]
mod edge;

use wasmtime::component::{Component, Linker as ComponentLinker, Resource, ResourceType};
use wasmtime::{Config, Engine, Linker, Module, Store};

use karmem_bridge::lower::Abi;

const ABIS: [Abi; 2] = [Abi::Canonical, Abi::Karmem];

fn engine(component_model: bool) -> Engine {
    let mut config = Config::new();
    config.wasm_component_model(component_model).wasm_multi_memory(true);
    Engine::new(&config).unwrap()
}

/// The host resource of the cases that import one.
struct Resource1;

/// The reference: instantiate (with a `host` instance serving `resource1`), then call
/// `export` when given; the error text.
fn reference(wat: &str, export: Option<&str>) -> Result<(), String> {
    let engine = engine(true);
    let component = Component::new(&engine, wat).unwrap();
    let mut store = Store::new(&engine, ());
    let mut linker = ComponentLinker::new(&engine);
    let mut host = linker.instance("host").unwrap();
    host.resource("resource1", ResourceType::host::<Resource1>(), |_, _| Ok(())).unwrap();
    host.func_wrap("[constructor]resource1", |_, (rep,): (u32,)| Ok((Resource::<Resource1>::new_own(rep),)))
        .unwrap();
    host.func_wrap("[method]resource1.take-own", |_, (_, _): (Resource<Resource1>, Resource<Resource1>)| Ok(()))
        .unwrap();
    let run = |store: &mut Store<()>| -> wasmtime::Result<()> {
        let instance = linker.instantiate(&mut *store, &component)?;
        if let Some(name) = export {
            let func = instance.get_func(&mut *store, name).unwrap();
            func.call(&mut *store, &[], &mut [])?;
        }
        Ok(())
    };
    run(&mut store).map_err(|e| format!("{e:?}"))
}

fn lower(wat: &str, abi: Abi) -> Vec<u8> {
    let bytes = wat::parse_str(wat).unwrap();
    let options = karmem_bridge::LowerOptions { abi, ..karmem_bridge::LowerOptions::default() };
    karmem_bridge::lower(&bytes, &options).unwrap_or_else(|e| panic!("lowering: {e:#}")).module
}

/// The host numbers `[constructor]resource1` hands out: far from the guest's 1, 2, 3 so a
/// number that passed through unconverted shows.
const HOST_BASE: i32 = 1000;

/// The component lowered under `abi`, on wasmtime without the component model: instantiate,
/// then call the core export `export` when given. At the canonical boundary the `host`
/// imports are served: the constructor numbers its resources from [`HOST_BASE`], a drop of
/// a number it never gave out fails.
fn lowered(wat: &str, abi: Abi, export: Option<&str>) -> Result<(), String> {
    let module = lower(wat, abi);
    if abi == Abi::Karmem {
        return edge::through_the_edge(&module, export);
    }
    let engine = engine(false);
    let module = Module::new(&engine, &module).unwrap();
    let mut store = Store::new(&engine, Vec::<i32>::new());
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("host", "[constructor]resource1", |mut caller: wasmtime::Caller<'_, Vec<i32>>, _rep: i32| {
            let live = caller.data_mut();
            let handle = HOST_BASE + live.len() as i32;
            live.push(handle);
            handle
        })
        .unwrap();
    linker
        .func_wrap("host", "[resource-drop]resource1", |caller: wasmtime::Caller<'_, Vec<i32>>, handle: i32| {
            if caller.data().contains(&handle) { Ok(()) } else { Err(wasmtime::Error::msg("not a host handle")) }
        })
        .unwrap();
    linker.func_wrap("host", "[method]resource1.take-own", |_: i32, _: i32| {}).unwrap();
    let run = |store: &mut Store<Vec<i32>>| -> wasmtime::Result<()> {
        let instance = linker.instantiate(&mut *store, &module)?;
        if let Some(name) = export {
            let func = instance.get_func(&mut *store, name).unwrap();
            func.call(&mut *store, &[], &mut [])?;
        }
        Ok(())
    };
    run(&mut store).map_err(|e| format!("{e:?}"))
}

/// The reference and the lowerings under `abis` all run `wat` (and `export`) to the end.
fn works(wat: &str, export: Option<&str>, abis: &[Abi]) {
    reference(wat, export).unwrap_or_else(|e| panic!("the reference fails: {e}"));
    for abi in abis {
        lowered(wat, *abi, export).unwrap_or_else(|e| panic!("{abi:?}: {e}"));
    }
}

/// The reference traps with `reason`; the lowerings under `abis` trap (`unreachable`).
fn traps(wat: &str, export: Option<&str>, abis: &[Abi], reason: &str) {
    let error = reference(wat, export).expect_err("the reference must trap");
    assert!(error.contains(reason), "the reference traps for another reason: {error}");
    for abi in abis {
        let error = lowered(wat, *abi, export).expect_err(&format!("{abi:?}: the lowered module must trap ({reason})"));
        assert!(error.contains("unreachable"), "{abi:?}: expected the check's trap ({reason}), got: {error}");
    }
}

/// One instance defining two resource types; the start function runs `$BODY` with
/// `new1`/`new2`, `drop1`/`drop2`, `rep1`/`rep2` and traps (`unreachable`) where `(check)` fails.
const TWO_TYPES: &str = r#"
(component
  (type $r1 (resource (rep i32)))
  (type $r2 (resource (rep i32)))
  (core func $new1 (canon resource.new $r1))
  (core func $new2 (canon resource.new $r2))
  (core func $drop1 (canon resource.drop $r1))
  (core func $drop2 (canon resource.drop $r2))
  (core func $rep1 (canon resource.rep $r1))
  (core func $rep2 (canon resource.rep $r2))
  (core module $m
    (import "" "new1" (func $new1 (param i32) (result i32)))
    (import "" "new2" (func $new2 (param i32) (result i32)))
    (import "" "drop1" (func $drop1 (param i32)))
    (import "" "drop2" (func $drop2 (param i32)))
    (import "" "rep1" (func $rep1 (param i32) (result i32)))
    (import "" "rep2" (func $rep2 (param i32) (result i32)))
    (func $start (local $a i32) (local $b i32) (local $c i32)
      $BODY)
    (start $start))
  (core instance (instantiate $m (with "" (instance
    (export "new1" (func $new1)) (export "new2" (func $new2))
    (export "drop1" (func $drop1)) (export "drop2" (func $drop2))
    (export "rep1" (func $rep1)) (export "rep2" (func $rep2))))))
)"#;

fn two_types(body: &str) -> String {
    TWO_TYPES.replace("$BODY", body)
}

#[test]
fn two_resource_types_of_one_instance_share_one_numbering() {
    let body = r#"
      (local.set $a (call $new1 (i32.const 10)))
      (local.set $b (call $new2 (i32.const 20)))
      (local.set $c (call $new1 (i32.const 30)))
      (if (i32.ne (local.get $a) (i32.const 1)) (then unreachable))
      (if (i32.ne (local.get $b) (i32.const 2)) (then unreachable))
      (if (i32.ne (local.get $c) (i32.const 3)) (then unreachable))
      (if (i32.ne (call $rep2 (local.get $b)) (i32.const 20)) (then unreachable))
      ;; a freed index is reused by the next handle, whatever its type
      (call $drop2 (local.get $b))
      (if (i32.ne (call $new1 (i32.const 40)) (i32.const 2)) (then unreachable))
      (if (i32.ne (call $new2 (i32.const 50)) (i32.const 4)) (then unreachable))"#;
    works(&two_types(body), None, &ABIS);
}

#[test]
fn a_handle_used_with_another_resource_type_traps() {
    let reason = "handle index 1 used with the wrong type";
    traps(&two_types("(call $drop2 (call $new1 (i32.const 10)))"), None, &ABIS, reason);
    traps(&two_types("(drop (call $rep2 (call $new1 (i32.const 10))))"), None, &ABIS, reason);
    // A live entry of the right index but the other type.
    let body = "(local.set $a (call $new2 (i32.const 10))) (call $drop2 (call $new1 (i32.const 20)))";
    traps(&two_types(body), None, &ABIS, "handle index 2 used with the wrong type");
    // The neighbours: each handle with its own type.
    works(&two_types("(call $drop1 (call $new1 (i32.const 10))) (call $drop2 (call $new2 (i32.const 10)))"), None, &ABIS);
}

#[test]
fn a_handle_used_after_its_drop_traps() {
    let reason = "unknown handle index 1";
    let body = "(local.set $a (call $new1 (i32.const 10))) (call $drop1 (local.get $a))";
    traps(&two_types(&format!("{body} (call $drop1 (local.get $a))")), None, &ABIS, reason);
    traps(&two_types(&format!("{body} (drop (call $rep1 (local.get $a)))")), None, &ABIS, reason);
    works(&two_types(body), None, &ABIS);
}

/// A component defining a resource, instantiated twice: `alloc` makes a handle and returns
/// its number as a plain `u32`, `dealloc` drops the handle of a number. The start function of
/// a sibling instance runs `$BODY` with `alloc1`/`dealloc1` (instance 1) and `alloc2`/`dealloc2`.
const TWO_INSTANCES: &str = r#"
(component
  (component $inner
    (type $r (resource (rep i32)))
    (core func $new (canon resource.new $r))
    (core func $drop (canon resource.drop $r))
    (core module $m
      (import "" "new" (func $new (param i32) (result i32)))
      (import "" "drop" (func $drop (param i32)))
      (func (export "alloc") (result i32) (call $new (i32.const 7)))
      (func (export "dealloc") (param i32) (call $drop (local.get 0))))
    (core instance $i (instantiate $m (with "" (instance (export "new" (func $new)) (export "drop" (func $drop))))))
    (func (export "alloc") (result u32) (canon lift (core func $i "alloc")))
    (func (export "dealloc") (param "h" u32) (canon lift (core func $i "dealloc")))
  )
  (component $caller
    (import "alloc1" (func $alloc1 (result u32)))
    (import "dealloc1" (func $dealloc1 (param "h" u32)))
    (import "alloc2" (func $alloc2 (result u32)))
    (import "dealloc2" (func $dealloc2 (param "h" u32)))
    (core func $alloc1 (canon lower (func $alloc1)))
    (core func $dealloc1 (canon lower (func $dealloc1)))
    (core func $alloc2 (canon lower (func $alloc2)))
    (core func $dealloc2 (canon lower (func $dealloc2)))
    (core module $m
      (import "" "alloc1" (func $alloc1 (result i32)))
      (import "" "dealloc1" (func $dealloc1 (param i32)))
      (import "" "alloc2" (func $alloc2 (result i32)))
      (import "" "dealloc2" (func $dealloc2 (param i32)))
      (func $start $BODY)
      (start $start))
    (core instance (instantiate $m (with "" (instance
      (export "alloc1" (func $alloc1)) (export "dealloc1" (func $dealloc1))
      (export "alloc2" (func $alloc2)) (export "dealloc2" (func $dealloc2))))))
  )
  (instance $i1 (instantiate $inner))
  (instance $i2 (instantiate $inner))
  (instance (instantiate $caller
    (with "alloc1" (func $i1 "alloc")) (with "dealloc1" (func $i1 "dealloc"))
    (with "alloc2" (func $i2 "alloc")) (with "dealloc2" (func $i2 "dealloc"))))
)"#;

#[test]
fn a_handle_of_another_instance_traps() {
    let wat = |body: &str| TWO_INSTANCES.replace("$BODY", body);
    traps(&wat("(call $dealloc2 (call $alloc1))"), None, &ABIS, "unknown handle index 1");
    // Each instance numbers its own handles from 1.
    let valid = r#"
      (if (i32.ne (call $alloc1) (i32.const 1)) (then unreachable))
      (if (i32.ne (call $alloc2) (i32.const 1)) (then unreachable))
      (if (i32.ne (call $alloc1) (i32.const 2)) (then unreachable))
      (call $dealloc2 (i32.const 1))
      (call $dealloc1 (i32.const 2))
      (call $dealloc1 (i32.const 1))"#;
    works(&wat(valid), None, &ABIS);
}

/// A component defining a resource with `[static]t.take(b: borrow<t>, o: own<t>)`, whose core
/// function drops `o`; a sibling instance's start function makes handles and runs `$BODY`.
const LENT_AND_TAKEN: &str = r#"
(component
  (component $a
    (type $t' (resource (rep i32)))
    (export $t "t" (type $t'))
    (core func $new (canon resource.new $t))
    (core func $drop (canon resource.drop $t))
    (core module $m
      (import "" "drop" (func $drop (param i32)))
      (func (export "take") (param i32 i32) (call $drop (local.get 1))))
    (core instance $i (instantiate $m (with "" (instance (export "drop" (func $drop))))))
    (func (export "[constructor]t") (param "x" u32) (result (own $t)) (canon lift (core func $new)))
    (func (export "[static]t.take") (param "b" (borrow $t)) (param "o" (own $t))
      (canon lift (core func $i "take")))
  )
  (instance $a (instantiate $a))
  (component $b
    (import "a" (instance $i
      (export "t" (type $t (sub resource)))
      (export "[constructor]t" (func (param "x" u32) (result (own $t))))
      (export "[static]t.take" (func (param "b" (borrow $t)) (param "o" (own $t))))))
    (alias export $i "[constructor]t" (func $ctor))
    (alias export $i "[static]t.take" (func $take))
    (core func $ctor (canon lower (func $ctor)))
    (core func $take (canon lower (func $take)))
    (core module $m
      (import "" "ctor" (func $ctor (param i32) (result i32)))
      (import "" "take" (func $take (param i32 i32)))
      (func $start (local $x i32) (local $y i32)
        (local.set $x (call $ctor (i32.const 1)))
        (local.set $y (call $ctor (i32.const 2)))
        $BODY)
      (start $start))
    (core instance (instantiate $m (with "" (instance (export "ctor" (func $ctor)) (export "take" (func $take))))))
  )
  (instance (instantiate $b (with "a" (instance $a))))
)"#;

#[test]
fn an_own_handle_passed_on_while_it_is_lent_traps() {
    let wat = |body: &str| LENT_AND_TAKEN.replace("$BODY", body);
    let reason = "cannot remove owned resource while borrowed";
    traps(&wat("(call $take (local.get $x) (local.get $x))"), None, &ABIS, reason);
    // Lending one handle while passing on another is fine.
    works(&wat("(call $take (local.get $x) (local.get $y))"), None, &ABIS);
}

/// A component importing the host resource `resource1`; the start function runs `$BODY`
/// with `ctor`, `drop` and `take-own` (`[method]resource1.take-own(self: borrow, b: own)`).
const HOST_RESOURCE: &str = r#"
(component
  (import "host" (instance $host
    (export "resource1" (type $r (sub resource)))
    (export "[constructor]resource1" (func (param "r" u32) (result (own $r))))
    (export "[method]resource1.take-own" (func (param "self" (borrow $r)) (param "b" (own $r))))))
  (alias export $host "resource1" (type $r))
  (alias export $host "[constructor]resource1" (func $ctor))
  (alias export $host "[method]resource1.take-own" (func $take-own))
  (type $mine (resource (rep i32)))
  (core func $new (canon resource.new $mine))
  (core func $drop (canon resource.drop $r))
  (core func $ctor (canon lower (func $ctor)))
  (core func $take-own (canon lower (func $take-own)))
  (core module $m
    (import "" "new" (func $new (param i32) (result i32)))
    (import "" "drop" (func $drop (param i32)))
    (import "" "ctor" (func $ctor (param i32) (result i32)))
    (import "" "take-own" (func $take-own (param i32 i32)))
    (func (export "f") (local $x i32) (local $y i32)
      $BODY))
  (core instance $i (instantiate $m (with "" (instance
    (export "new" (func $new)) (export "drop" (func $drop))
    (export "ctor" (func $ctor)) (export "take-own" (func $take-own))))))
  (func (export "f") (canon lift (core func $i "f")))
)"#;

#[test]
fn host_handles_live_in_the_instance_table() {
    let wat = |body: &str| HOST_RESOURCE.replace("$BODY", body);
    // The host's handles and the instance's own resources share one numbering.
    let valid = r#"
      (local.set $x (call $ctor (i32.const 100)))
      (if (i32.ne (local.get $x) (i32.const 1)) (then unreachable))
      (if (i32.ne (call $new (i32.const 5)) (i32.const 2)) (then unreachable))
      (local.set $y (call $ctor (i32.const 200)))
      (if (i32.ne (local.get $y) (i32.const 3)) (then unreachable))
      (call $drop (local.get $x))
      (if (i32.ne (call $ctor (i32.const 300)) (i32.const 1)) (then unreachable))
      ;; `b` moves to the host: its index is free again
      (call $take-own (local.get $x) (local.get $y))
      (if (i32.ne (call $ctor (i32.const 400)) (i32.const 3)) (then unreachable))"#;
    works(&wat(valid), Some("f"), &[Abi::Canonical]);
    // Owned host handles: dropped or passed on while lent, of the wrong type, after their drop.
    let cases = [
        (
            "(local.set $x (call $ctor (i32.const 100))) (call $take-own (local.get $x) (local.get $x))",
            "cannot remove owned resource while borrowed",
        ),
        ("(call $drop (call $new (i32.const 5)))", "handle index 1 used with the wrong type"),
        (
            "(local.set $x (call $ctor (i32.const 100))) (call $drop (local.get $x)) (call $drop (local.get $x))",
            "unknown handle index 1",
        ),
        (
            "(local.set $x (call $ctor (i32.const 100))) (local.set $y (call $ctor (i32.const 200))) \
             (call $take-own (local.get $x) (local.get $y)) (call $drop (local.get $y))",
            "unknown handle index 2",
        ),
    ];
    for (body, reason) in cases {
        traps(&wat(body), Some("f"), &[Abi::Canonical], reason);
    }
}

/// Component `$a` defines `t`; its constructor keeps one handle of its own and returns another,
/// `[static]t.take` answers `1000 * handle + rep` with the number it received, then drops it.
/// Component `$c` answers the number of the borrow it is lent (and drops it). `$b`'s start
/// function makes handles and runs `$BODY`.
const HANDLES_MOVE: &str = r#"
(component
  (component $a
    (type $t' (resource (rep i32)))
    (export $t "t" (type $t'))
    (core func $new (canon resource.new $t))
    (core func $rep (canon resource.rep $t))
    (core func $drop (canon resource.drop $t))
    (core module $m
      (import "" "new" (func $new (param i32) (result i32)))
      (import "" "rep" (func $rep (param i32) (result i32)))
      (import "" "drop" (func $drop (param i32)))
      (func (export "ctor") (param i32) (result i32)
        (drop (call $new (i32.const 0)))
        (call $new (local.get 0)))
      (func (export "take") (param i32) (result i32) (local $n i32)
        (local.set $n (i32.add (i32.mul (local.get 0) (i32.const 1000)) (call $rep (local.get 0))))
        (call $drop (local.get 0))
        (local.get $n)))
    (core instance $i (instantiate $m (with "" (instance
      (export "new" (func $new)) (export "rep" (func $rep)) (export "drop" (func $drop))))))
    (func (export "[constructor]t") (param "x" u32) (result (own $t)) (canon lift (core func $i "ctor")))
    (func (export "[static]t.take") (param "o" (own $t)) (result u32) (canon lift (core func $i "take")))
  )
  (instance $a (instantiate $a))
  (component $c
    (import "a" (instance $i (export "t" (type (sub resource)))))
    (alias export $i "t" (type $t))
    (core func $drop (canon resource.drop $t))
    (core module $m
      (import "" "drop" (func $drop (param i32)))
      (func (export "peek") (param i32) (result i32) (call $drop (local.get 0)) (local.get 0)))
    (core instance $ci (instantiate $m (with "" (instance (export "drop" (func $drop))))))
    (func (export "peek") (param "b" (borrow $t)) (result u32) (canon lift (core func $ci "peek")))
  )
  (instance $c (instantiate $c (with "a" (instance $a))))
  (component $b
    (import "a" (instance $i
      (export "t" (type $t (sub resource)))
      (export "[constructor]t" (func (param "x" u32) (result (own $t))))
      (export "[static]t.take" (func (param "o" (own $t)) (result u32)))))
    (alias export $i "t" (type $t))
    (import "c" (instance $ci (export "peek" (func (param "b" (borrow $t)) (result u32)))))
    (alias export $i "[constructor]t" (func $ctor))
    (alias export $i "[static]t.take" (func $take))
    (alias export $ci "peek" (func $peek))
    (core func $ctor (canon lower (func $ctor)))
    (core func $take (canon lower (func $take)))
    (core func $peek (canon lower (func $peek)))
    (core module $m
      (import "" "ctor" (func $ctor (param i32) (result i32)))
      (import "" "take" (func $take (param i32) (result i32)))
      (import "" "peek" (func $peek (param i32) (result i32)))
      (func $start (local $x i32) (local $y i32)
        (local.set $x (call $ctor (i32.const 1)))
        (local.set $y (call $ctor (i32.const 2)))
        $BODY)
      (start $start))
    (core instance (instantiate $m (with "" (instance
      (export "ctor" (func $ctor)) (export "take" (func $take)) (export "peek" (func $peek))))))
  )
  (instance (instantiate $b (with "a" (instance $a)) (with "c" (instance $c))))
)"#;

#[test]
fn handles_passed_across_take_the_receivers_numbers() {
    let wat = |body: &str| HANDLES_MOVE.replace("$BODY", body);
    // `$a` keeps its handles 1 and 2 (one per constructor call) and hands out 2 and 3, which
    // leave its table: `$b` numbers them 1 and 2; `$c` numbers the borrow it is lent 1; an own
    // handle sent back to `$a` gets `$a`'s free index 3; `$b` reuses its freed 1.
    let valid = r#"
      (if (i32.ne (local.get $x) (i32.const 1)) (then unreachable))
      (if (i32.ne (local.get $y) (i32.const 2)) (then unreachable))
      (if (i32.ne (call $peek (local.get $y)) (i32.const 1)) (then unreachable))
      (if (i32.ne (call $take (local.get $x)) (i32.const 3001)) (then unreachable))
      (if (i32.ne (call $ctor (i32.const 3)) (i32.const 1)) (then unreachable))
      (if (i32.ne (call $take (local.get $y)) (i32.const 4002)) (then unreachable))"#;
    works(&wat(valid), None, &ABIS);
    // A handle that moved out of `$b`'s table is gone from it.
    let twice = "(drop (call $take (local.get $x))) (drop (call $take (local.get $x)))";
    traps(&wat(twice), None, &ABIS, "unknown handle index 1");
}
