//! Handles inside compound values crossing between component instances (issue 17): a
//! `list<own<r>>`, a record holding a `borrow<r>` (flat and inside a list), and an
//! `option<own<r>>` result, passed between components that each own a memory (so the lowering
//! copies them between memories). Each handle must be lifted from the sender's table and
//! lowered into the receiver's (CanonicalABI.md `lift_own`/`lower_own`,
//! `lift_borrow`/`lower_borrow`): the receiver sees its own numbers, the sender's old number is
//! gone, a borrow ends with the call.
//!
//! Also: an own handle passed by the host to an export of an instance that does not define
//! the resource, and host resources passed between two components.
//!
//! Each case runs the same composition on the reference (wasmtime 48's component runtime) and,
//! lowered by `karmem_bridge::lower`, on wasmtime without the component model under
//! `--abi canonical` and `--abi karmem`. The numbers are checked from inside: the caller's start
//! function traps (`unreachable`) on a number other than the one written in the case, so a case
//! that passes on the reference and on both lowerings agrees value for value. Bad cases must
//! trap on the reference with the specification's reason and trap in both lowerings.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a broken case fails the test"
)]

#[path = "common/edge.rs"]
mod edge;

use karmem_bridge::lower::Abi;
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{Config, Engine, Linker, Module, Store};

const ABIS: [Abi; 2] = [Abi::Canonical, Abi::Karmem];

fn engine(component_model: bool) -> Engine {
    let mut config = Config::new();
    config.wasm_component_model(component_model).wasm_multi_memory(true);
    Engine::new(&config).unwrap()
}

/// The reference: instantiate on wasmtime's component runtime; the error text.
fn reference(wat: &str) -> Result<(), String> {
    let engine = engine(true);
    let component = Component::new(&engine, wat).unwrap();
    let mut store = Store::new(&engine, ());
    let linker = ComponentLinker::new(&engine);
    linker.instantiate(&mut store, &component).map(|_| ()).map_err(|e| format!("{e:?}"))
}

/// The composition lowered under `abi`, instantiated on wasmtime without the component model:
/// with the three memories kept (`--multi-memory`) and in one memory (the default), which
/// must end the same way.
fn lowered(wat: &str, abi: Abi) -> Result<(), String> {
    let bytes = wat::parse_str(wat).unwrap();
    let mut ends = Vec::new();
    for multi_memory in [true, false] {
        let options = karmem_bridge::LowerOptions { abi, multi_memory, ..karmem_bridge::LowerOptions::default() };
        let module = karmem_bridge::lower(&bytes, &options).unwrap_or_else(|e| panic!("lowering: {e:#}")).module;
        ends.push(if abi == Abi::Karmem {
            edge::through_the_edge(&module, None)
        } else {
            let engine = engine(false);
            let module = Module::new(&engine, &module).unwrap();
            let mut store = Store::new(&engine, ());
            Linker::new(&engine).instantiate(&mut store, &module).map(|_| ()).map_err(|e| format!("{e:?}"))
        });
    }
    let one_memory = ends.pop().unwrap();
    let multi_memory = ends.pop().unwrap();
    assert_eq!(multi_memory.is_ok(), one_memory.is_ok(), "{abi:?}: {multi_memory:?} with --multi-memory, {one_memory:?} in one memory");
    multi_memory
}

fn works(wat: &str) {
    reference(wat).unwrap_or_else(|e| panic!("the reference fails: {e}"));
    for abi in ABIS {
        lowered(wat, abi).unwrap_or_else(|e| panic!("{abi:?}: {e}"));
    }
}

fn traps(wat: &str, reason: &str) {
    let error = reference(wat).expect_err("the reference must trap");
    assert!(error.contains(reason), "the reference traps for another reason: {error}");
    for abi in ABIS {
        let error = lowered(wat, abi).expect_err(&format!("{abi:?}: the lowered module must trap ({reason})"));
        assert!(error.contains("unreachable"), "{abi:?}: expected the check's trap ({reason}), got: {error}");
    }
}

/// Three components, each with a memory of its own and a bump `realloc`:
///
/// - `$a` defines `r`. `[constructor]r(x)` makes a handle of rep `x`; `consume(l)` answers the
///   handle numbers it received folded as `n * 100 + h` and drops them; `make(x)` answers
///   `none` for 0, else a new handle; `peek(rec)` and `peek-list(l)` answer the rep(s) lent
///   (a borrow lent to the defining component arrives as the rep); `adopt(o, s)` answers the
///   number of the handle in `some` (0 for `none`) and drops it; `named(s)` makes a handle
///   whose rep is the string's length.
/// - `$c` imports `r`. `hold(l)` keeps the handles and answers their numbers folded;
///   `give(h)` hands its handle `h` back as `some(h)`; `drop-held(h)` drops its handle `h`;
///   `take-opt(o)` keeps the handle in `some` and answers its number (0 for `none`: a call
///   without a copy, as nothing in it uses memory);
///   `look(rec)` answers the number of the borrow it is lent and drops it, `look-keep(rec)`
///   does not drop it; `look-list(l)` answers the borrows' numbers folded and drops them.
/// - `$b`'s start function runs `$BODY` with all of these (`drop` is its `resource.drop`;
///   lists and records are written at 256, results read at 512).
const COMPOSITION: &str = r#"
(component
  (component $a
    (type $r' (resource (rep i32)))
    (export $r "r" (type $r'))
    (type $rec' (record (field "n" u32) (field "b" (borrow $r))))
    (export $rec "rec" (type $rec'))
    (core func $new (canon resource.new $r))
    (core func $drop (canon resource.drop $r))
    (core module $m
      (import "" "new" (func $new (param i32) (result i32)))
      (import "" "drop" (func $drop (param i32)))
      (import "libc" "mem" (memory 1))
      (func (export "ctor") (param i32) (result i32) (call $new (local.get 0)))
      (func (export "consume") (param $p i32) (param $n i32) (result i32) (local $acc i32) (local $h i32)
        (block $done (loop $next
          (br_if $done (i32.eqz (local.get $n)))
          (local.set $h (i32.load (local.get $p)))
          (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 100)) (local.get $h)))
          (call $drop (local.get $h))
          (local.set $p (i32.add (local.get $p) (i32.const 4)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $next)))
        (local.get $acc))
      (func (export "make") (param $x i32) (result i32)
        (if (i32.eqz (local.get $x))
          (then (i32.store8 (i32.const 16) (i32.const 0)))
          (else (i32.store8 (i32.const 16) (i32.const 1)) (i32.store (i32.const 20) (call $new (local.get $x)))))
        (i32.const 16))
      (func (export "peek") (param i32 i32) (result i32) (local.get 1))
      (func (export "adopt") (param $some i32) (param $h i32) (param i32 i32) (result i32)
        (if (result i32) (local.get $some)
          (then (call $drop (local.get $h)) (local.get $h))
          (else (i32.const 0))))
      (func (export "named") (param i32 i32) (result i32) (call $new (local.get 1)))
      (func (export "peek-list") (param $p i32) (param $n i32) (result i32) (local $acc i32)
        (block $done (loop $next
          (br_if $done (i32.eqz (local.get $n)))
          (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 100)) (i32.load offset=4 (local.get $p))))
          (local.set $p (i32.add (local.get $p) (i32.const 8)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $next)))
        (local.get $acc)))
    $LIBC
    (core instance $libc (instantiate $libc))
    (core instance $i (instantiate $m
      (with "" (instance (export "new" (func $new)) (export "drop" (func $drop))))
      (with "libc" (instance $libc))))
    (alias core export $libc "mem" (core memory $mem))
    (alias core export $libc "realloc" (core func $realloc))
    (func (export "[constructor]r") (param "x" u32) (result (own $r)) (canon lift (core func $i "ctor")))
    (func (export "consume") (param "l" (list (own $r))) (result u32)
      (canon lift (core func $i "consume") (memory $mem) (realloc $realloc)))
    (func (export "make") (param "x" u32) (result (option (own $r))) (canon lift (core func $i "make") (memory $mem)))
    (func (export "peek") (param "x" $rec) (result u32) (canon lift (core func $i "peek")))
    (func (export "adopt") (param "o" (option (own $r))) (param "s" string) (result u32)
      (canon lift (core func $i "adopt") (memory $mem) (realloc $realloc)))
    (func (export "named") (param "s" string) (result (own $r))
      (canon lift (core func $i "named") (memory $mem) (realloc $realloc)))
    (func (export "peek-list") (param "l" (list $rec)) (result u32)
      (canon lift (core func $i "peek-list") (memory $mem) (realloc $realloc)))
  )
  (instance $a (instantiate $a))
  (component $c
    (import "a" (instance $ai (export "r" (type (sub resource)))))
    (alias export $ai "r" (type $r))
    (type $rec' (record (field "n" u32) (field "b" (borrow $r))))
    (export $rec "rec" (type $rec'))
    (core func $drop (canon resource.drop $r))
    (core module $m
      (import "" "drop" (func $drop (param i32)))
      (import "libc" "mem" (memory 1))
      (func $fold (param $p i32) (param $n i32) (param $stride i32) (param $offset i32) (param $drop i32)
        (result i32) (local $acc i32) (local $h i32)
        (block $done (loop $next
          (br_if $done (i32.eqz (local.get $n)))
          (local.set $h (i32.load (i32.add (local.get $p) (local.get $offset))))
          (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 100)) (local.get $h)))
          (if (local.get $drop) (then (call $drop (local.get $h))))
          (local.set $p (i32.add (local.get $p) (local.get $stride)))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br $next)))
        (local.get $acc))
      (func (export "hold") (param i32 i32) (result i32)
        (call $fold (local.get 0) (local.get 1) (i32.const 4) (i32.const 0) (i32.const 0)))
      (func (export "give") (param i32) (result i32)
        (i32.store8 (i32.const 16) (i32.const 1))
        (i32.store (i32.const 20) (local.get 0))
        (i32.const 16))
      (func (export "drop-held") (param i32) (call $drop (local.get 0)))
      (func (export "take-opt") (param i32 i32) (result i32) (select (local.get 1) (i32.const 0) (local.get 0)))
      (func (export "look") (param i32 i32) (result i32) (call $drop (local.get 1)) (local.get 1))
      (func (export "look-keep") (param i32 i32) (result i32) (local.get 1))
      (func (export "look-list") (param i32 i32) (result i32)
        (call $fold (local.get 0) (local.get 1) (i32.const 8) (i32.const 4) (i32.const 1))))
    $LIBC
    (core instance $libc (instantiate $libc))
    (core instance $i (instantiate $m
      (with "" (instance (export "drop" (func $drop))))
      (with "libc" (instance $libc))))
    (alias core export $libc "mem" (core memory $mem))
    (alias core export $libc "realloc" (core func $realloc))
    (func (export "hold") (param "l" (list (own $r))) (result u32)
      (canon lift (core func $i "hold") (memory $mem) (realloc $realloc)))
    (func (export "give") (param "h" u32) (result (option (own $r))) (canon lift (core func $i "give") (memory $mem)))
    (func (export "drop-held") (param "h" u32) (canon lift (core func $i "drop-held")))
    (func (export "take-opt") (param "o" (option (own $r))) (result u32) (canon lift (core func $i "take-opt")))
    (func (export "look") (param "x" $rec) (result u32) (canon lift (core func $i "look")))
    (func (export "look-keep") (param "x" $rec) (result u32) (canon lift (core func $i "look-keep")))
    (func (export "look-list") (param "l" (list $rec)) (result u32)
      (canon lift (core func $i "look-list") (memory $mem) (realloc $realloc)))
  )
  (instance $c (instantiate $c (with "a" (instance $a))))
  (component $b
    (import "a" (instance $ai
      (export "r" (type $r (sub resource)))
      (type $rec' (record (field "n" u32) (field "b" (borrow $r))))
      (export "rec" (type $rec (eq $rec')))
      (export "[constructor]r" (func (param "x" u32) (result (own $r))))
      (export "consume" (func (param "l" (list (own $r))) (result u32)))
      (export "make" (func (param "x" u32) (result (option (own $r)))))
      (export "peek" (func (param "x" $rec) (result u32)))
      (export "adopt" (func (param "o" (option (own $r))) (param "s" string) (result u32)))
      (export "named" (func (param "s" string) (result (own $r))))
      (export "peek-list" (func (param "l" (list $rec)) (result u32)))))
    (alias export $ai "r" (type $r))
    (alias export $ai "rec" (type $rec))
    (import "c" (instance $ci
      (export "hold" (func (param "l" (list (own $r))) (result u32)))
      (export "give" (func (param "h" u32) (result (option (own $r)))))
      (export "drop-held" (func (param "h" u32)))
      (export "take-opt" (func (param "o" (option (own $r))) (result u32)))
      (export "look" (func (param "x" $rec) (result u32)))
      (export "look-keep" (func (param "x" $rec) (result u32)))
      (export "look-list" (func (param "l" (list $rec)) (result u32)))))
    $LIBC
    (core instance $libc (instantiate $libc))
    (alias core export $libc "mem" (core memory $mem))
    (core func $ctor (canon lower (func $ai "[constructor]r")))
    (core func $consume (canon lower (func $ai "consume") (memory $mem)))
    (core func $make (canon lower (func $ai "make") (memory $mem)))
    (core func $peek (canon lower (func $ai "peek")))
    (core func $adopt (canon lower (func $ai "adopt") (memory $mem)))
    (core func $named (canon lower (func $ai "named") (memory $mem)))
    (core func $peek-list (canon lower (func $ai "peek-list") (memory $mem)))
    (core func $hold (canon lower (func $ci "hold") (memory $mem)))
    (core func $give (canon lower (func $ci "give") (memory $mem)))
    (core func $drop-held (canon lower (func $ci "drop-held")))
    (core func $take-opt (canon lower (func $ci "take-opt")))
    (core func $look (canon lower (func $ci "look")))
    (core func $look-keep (canon lower (func $ci "look-keep")))
    (core func $look-list (canon lower (func $ci "look-list") (memory $mem)))
    (core func $drop (canon resource.drop $r))
    (core module $m
      (import "" "ctor" (func $ctor (param i32) (result i32)))
      (import "" "consume" (func $consume (param i32 i32) (result i32)))
      (import "" "make" (func $make (param i32 i32)))
      (import "" "peek" (func $peek (param i32 i32) (result i32)))
      (import "" "adopt" (func $adopt (param i32 i32 i32 i32) (result i32)))
      (import "" "named" (func $named (param i32 i32) (result i32)))
      (import "" "peek-list" (func $peek-list (param i32 i32) (result i32)))
      (import "" "hold" (func $hold (param i32 i32) (result i32)))
      (import "" "give" (func $give (param i32 i32)))
      (import "" "drop-held" (func $drop-held (param i32)))
      (import "" "take-opt" (func $take-opt (param i32 i32) (result i32)))
      (import "" "look" (func $look (param i32 i32) (result i32)))
      (import "" "look-keep" (func $look-keep (param i32 i32) (result i32)))
      (import "" "look-list" (func $look-list (param i32 i32) (result i32)))
      (import "" "drop" (func $drop (param i32)))
      (import "libc" "mem" (memory 1))
      ;; `(call $expect actual wanted)`: trap unless equal.
      (func $expect (param i32 i32) (if (i32.ne (local.get 0) (local.get 1)) (then unreachable)))
      ;; The handle of `some(h)` written at 512 (trap on `none`).
      (func $some (result i32) (call $expect (i32.load8_u (i32.const 512)) (i32.const 1)) (i32.load (i32.const 516)))
      (func $list2 (param i32 i32) (result i32 i32)
        (i32.store (i32.const 256) (local.get 0)) (i32.store (i32.const 260) (local.get 1))
        (i32.const 256) (i32.const 2))
      (func $recs2 (param i32 i32) (result i32 i32)
        (i32.store (i32.const 256) (i32.const 7)) (i32.store (i32.const 260) (local.get 0))
        (i32.store (i32.const 264) (i32.const 8)) (i32.store (i32.const 268) (local.get 1))
        (i32.const 256) (i32.const 2))
      (func $start (local $x i32) (local $y i32) (local $z i32) (local $w i32)
        (local.set $x (call $ctor (i32.const 10)))
        (local.set $y (call $ctor (i32.const 20)))
        (local.set $z (call $ctor (i32.const 30)))
        $BODY)
      (start $start)
      (func (export "probe") (param i32 i32)))
    (core instance $bi (instantiate $m
      (with "" (instance
        (export "ctor" (func $ctor)) (export "consume" (func $consume)) (export "make" (func $make))
        (export "peek" (func $peek)) (export "adopt" (func $adopt)) (export "named" (func $named))
        (export "peek-list" (func $peek-list)) (export "hold" (func $hold))
        (export "give" (func $give)) (export "drop-held" (func $drop-held)) (export "take-opt" (func $take-opt)) (export "look" (func $look))
        (export "look-keep" (func $look-keep)) (export "look-list" (func $look-list)) (export "drop" (func $drop))))
      (with "libc" (instance $libc))))
    (alias core export $libc "realloc" (core func $realloc))
    (func (export "probe") (param "s" string) (canon lift (core func $bi "probe") (memory $mem) (realloc $realloc)))
  )
  (instance $b (instantiate $b (with "a" (instance $a)) (with "c" (instance $c))))
  (export "probe" (func $b "probe"))
)"#;

/// Each component's memory and bump `realloc`.
const LIBC: &str = r#"(core module $libc
      (memory (export "mem") 1)
      (global $next (mut i32) (i32.const 1024))
      (func (export "realloc") (param i32 i32 i32 i32) (result i32) (local $p i32)
        (local.set $p (i32.and (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
                               (i32.sub (i32.const 0) (local.get 2))))
        (global.set $next (i32.add (local.get $p) (local.get 3)))
        (local.get $p)))"#;

fn case(body: &str) -> String {
    COMPOSITION.replace("$LIBC", LIBC).replace("$BODY", body)
}

#[test]
fn a_list_of_own_handles_moves_into_the_receivers_table() {
    // `$b` holds 1, 2, 3 (`$a` lent each out of its own table). `consume` receives them as
    // `$a`'s 1 and 2; `$b`'s freed 2 is reused first. `$c` numbers what it holds from 1, and
    // the handle it gives back takes `$b`'s free 2 again.
    let body = r#"
      (call $expect (local.get $x) (i32.const 1))
      (call $expect (local.get $z) (i32.const 3))
      (call $expect (call $consume (call $list2 (local.get $x) (local.get $y))) (i32.const 102))
      (local.set $w (call $ctor (i32.const 40)))
      (call $expect (local.get $w) (i32.const 2))
      (call $expect (call $hold (call $list2 (local.get $z) (local.get $w))) (i32.const 102))
      (call $give (i32.const 2) (i32.const 512))
      (call $expect (call $some) (i32.const 2))
      ;; each side drops through its own number
      (call $drop (i32.const 2))
      (call $drop-held (i32.const 1))"#;
    works(&case(body));
}

#[test]
fn the_senders_old_number_is_gone() {
    let reason = "unknown handle index 1";
    traps(&case("(drop (call $consume (call $list2 (local.get $x) (local.get $y)))) (call $drop (local.get $x))"), reason);
    // Sent back to the defining component: gone from `$b` as well.
    let twice = "(drop (call $hold (call $list2 (local.get $x) (local.get $y)))) \
                 (drop (call $consume (call $list2 (local.get $z) (local.get $x))))";
    traps(&case(twice), reason);
    // `$c` gave its handle 2 away: its old number is gone from its table.
    let given = "(drop (call $hold (call $list2 (local.get $x) (local.get $y)))) \
                 (call $give (i32.const 2) (i32.const 512)) (call $drop-held (i32.const 2))";
    traps(&case(given), "unknown handle index 2");
}

#[test]
fn an_option_of_an_own_handle_comes_back_in_the_callers_numbering() {
    // `make` creates `$a`'s handle 1 and lifts it out; `$b` numbers it 4, then 5.
    let body = r#"
      (call $make (i32.const 60) (i32.const 512))
      (call $expect (call $some) (i32.const 4))
      (call $make (i32.const 0) (i32.const 512))
      (call $expect (i32.load8_u (i32.const 512)) (i32.const 0))
      (call $make (i32.const 70) (i32.const 512))
      (call $expect (call $some) (i32.const 5))
      (call $drop (i32.const 4))
      (call $drop (i32.const 5))"#;
    works(&case(body));
    traps(&case("(call $make (i32.const 60) (i32.const 512)) (call $drop (i32.const 4)) (call $drop (i32.const 4))"), "unknown handle index 4");
}

#[test]
fn an_own_handle_in_a_flat_option_and_a_flat_own_result_move_too() {
    // With a string beside them, both calls copy between memories. `adopt` receives `$a`'s 1
    // (its table is empty again after each constructor); `named` makes `$a`'s 1, which `$b`
    // numbers 2 (the index `adopt` freed); its rep is the string's length.
    let body = r#"
      (call $expect (call $adopt (i32.const 1) (local.get $y) (i32.const 384) (i32.const 3)) (i32.const 1))
      (call $expect (call $adopt (i32.const 0) (i32.const 0) (i32.const 384) (i32.const 3)) (i32.const 0))
      (call $expect (call $named (i32.const 384) (i32.const 3)) (i32.const 2))
      (call $expect (call $peek (i32.const 0) (i32.const 2)) (i32.const 3))
      (call $drop (i32.const 2))"#;
    works(&case(body));
    // Without a copy (nothing in `take-opt` uses memory): `$c` numbers it 1, `$b`'s 2 is gone.
    let plain = r#"
      (call $expect (call $take-opt (i32.const 0) (i32.const 0)) (i32.const 0))
      (call $expect (call $take-opt (i32.const 1) (local.get $y)) (i32.const 1))
      (call $drop-held (i32.const 1))"#;
    works(&case(plain));
    traps(&case("(drop (call $take-opt (i32.const 1) (local.get $y))) (call $drop (local.get $y))"), "unknown handle index 2");
    traps(&case("(drop (call $adopt (i32.const 1) (local.get $y) (i32.const 384) (i32.const 3))) (call $drop (local.get $y))"), "unknown handle index 2");
}

#[test]
fn a_borrow_inside_a_record_ends_with_the_call() {
    // To the defining component a borrow arrives as the rep; to `$c` as a borrow entry of its
    // own table (its first free number), which it drops before returning. After each call the
    // loan is over: the own handle can be dropped.
    let body = r#"
      (call $expect (call $peek (i32.const 7) (local.get $y)) (i32.const 20))
      (call $expect (call $look (i32.const 7) (local.get $y)) (i32.const 1))
      (call $expect (call $peek-list (call $recs2 (local.get $x) (local.get $z))) (i32.const 1030))
      (call $expect (call $look-list (call $recs2 (local.get $x) (local.get $z))) (i32.const 102))
      (call $drop (local.get $y))
      (call $drop (local.get $x))
      (call $drop (local.get $z))"#;
    works(&case(body));
    // `$c` keeps the borrow past the end of the call.
    traps(&case("(drop (call $look-keep (i32.const 7) (local.get $y)))"), "borrow handles still remain at the end of the call");
    // A borrow lent in a list is not an own handle to pass on: the loan is still going...
    // ... and a borrow entry's number is `$c`'s, not `$b`'s: `$b`'s 2 is gone once dropped.
    traps(&case("(call $drop (local.get $y)) (drop (call $look (i32.const 7) (local.get $y)))"), "unknown handle index 2");
}

/// `$a` defines `r`; its `make(x)` keeps one handle of its own and returns another. `$c` (which
/// does not define `r`) exports `keep(h: own<r>)`, answering the number `h` has in its table,
/// and `toss(n)`, dropping its handle `n`. The root exports all three: the host's handles of
/// `r` are `$a`'s, and `keep` moves one into `$c`'s table.
const FOREIGN_EXPORT: &str = r#"
(component
  (component $a
    (type $r' (resource (rep i32)))
    (export $r "r" (type $r'))
    (core func $new (canon resource.new $r))
    (core module $m
      (import "" "new" (func $new (param i32) (result i32)))
      (func (export "make") (param i32) (result i32) (drop (call $new (i32.const 0))) (call $new (local.get 0))))
    (core instance $i (instantiate $m (with "" (instance (export "new" (func $new))))))
    (func (export "make") (param "x" u32) (result (own $r)) (canon lift (core func $i "make"))))
  (instance $a (instantiate $a))
  (component $c
    (import "a" (instance $ai (export "r" (type (sub resource)))))
    (alias export $ai "r" (type $r))
    (core func $drop (canon resource.drop $r))
    (core module $m
      (import "" "drop" (func $drop (param i32)))
      (func (export "keep") (param i32) (result i32) (local.get 0))
      (func (export "toss") (param i32) (call $drop (local.get 0))))
    (core instance $i (instantiate $m (with "" (instance (export "drop" (func $drop))))))
    (func (export "keep") (param "h" (own $r)) (result u32) (canon lift (core func $i "keep")))
    (func (export "toss") (param "n" u32) (canon lift (core func $i "toss"))))
  (instance $c (instantiate $c (with "a" (instance $a))))
  (export $r "r" (type $a "r"))
  (export "make" (func $a "make") (func (param "x" u32) (result (own $r))))
  (export "keep" (func $c "keep") (func (param "h" (own $r)) (result u32)))
  (export "toss" (func $c "toss"))
)"#;

#[test]
fn an_own_handle_passed_to_another_instances_export_takes_its_number() {
    // keep(make(5)), keep(make(6)), toss(1), keep(make(7)): `$c` numbers them 1, 2, then its
    // freed 1 again.
    let expected = [1u32, 2, 1];
    let reference = engine(true);
    let component = Component::new(&reference, FOREIGN_EXPORT).unwrap();
    let mut store = Store::new(&reference, ());
    let instance = ComponentLinker::new(&reference).instantiate(&mut store, &component).unwrap();
    let make = instance.get_typed_func::<(u32,), (wasmtime::component::ResourceAny,)>(&mut store, "make").unwrap();
    let keep = instance.get_typed_func::<(wasmtime::component::ResourceAny,), (u32,)>(&mut store, "keep").unwrap();
    let toss = instance.get_typed_func::<(u32,), ()>(&mut store, "toss").unwrap();
    let mut seen = Vec::new();
    for (i, x) in [5u32, 6, 7].into_iter().enumerate() {
        if i == 2 {
            toss.call(&mut store, (1,)).unwrap();
            }
        let (h,) = make.call(&mut store, (x,)).unwrap();
        let (n,) = keep.call(&mut store, (h,)).unwrap();
        seen.push(n);
    }
    assert_eq!(seen, expected, "the reference");

    let bytes = wat::parse_str(FOREIGN_EXPORT).unwrap();
    let options = karmem_bridge::LowerOptions { abi: Abi::Canonical, ..karmem_bridge::LowerOptions::default() };
    let module = karmem_bridge::lower(&bytes, &options).unwrap_or_else(|e| panic!("lowering: {e:#}")).module;
    let engine = engine(false);
    let module = Module::new(&engine, &module).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::new(&engine).instantiate(&mut store, &module).unwrap();
    let make = instance.get_typed_func::<i32, i32>(&mut store, "make").unwrap();
    let keep = instance.get_typed_func::<i32, i32>(&mut store, "keep").unwrap();
    let toss = instance.get_typed_func::<i32, ()>(&mut store, "toss").unwrap();
    let mut seen = Vec::new();
    for (i, x) in [5, 6, 7].into_iter().enumerate() {
        if i == 2 {
            toss.call(&mut store, 1).unwrap();
        }
        let h = make.call(&mut store, x).unwrap();
        seen.push(keep.call(&mut store, h).unwrap() as u32);
    }
    assert_eq!(seen, expected, "lowered");
    // The host's handle moved out of `$a`'s table: passing it again traps.
    let h = make.call(&mut store, 8).unwrap();
    keep.call(&mut store, h).unwrap();
    let error = keep.call(&mut store, h).expect_err("a handle passed on twice must trap");
    assert!(format!("{error:?}").contains("unreachable"), "{error:?}");
}

/// The host resource `resource1`, imported by `$p` and `$q`. `$p`'s `give(x)` constructs two
/// host resources, keeps the first and returns the second; `pass(h)` answers the number `h`
/// has in `$p`'s table. `$q`'s exported `run` runs `$BODY` with `give`, `pass` and `drop`.
const HOST_BETWEEN: &str = r#"
(component
  (import "host" (instance $host
    (export "resource1" (type $r (sub resource)))
    (export "[constructor]resource1" (func (param "r" u32) (result (own $r))))))
  (component $p
    (import "host" (instance $h
      (export "resource1" (type $r (sub resource)))
      (export "[constructor]resource1" (func (param "r" u32) (result (own $r))))))
    (alias export $h "resource1" (type $r))
    (alias export $h "[constructor]resource1" (func $ctor))
    (core func $ctor (canon lower (func $ctor)))
    (core module $m
      (import "" "ctor" (func $ctor (param i32) (result i32)))
      (func (export "give") (param i32) (result i32) (drop (call $ctor (i32.const 0))) (call $ctor (local.get 0)))
      (func (export "pass") (param i32) (result i32) (local.get 0)))
    (core instance $i (instantiate $m (with "" (instance (export "ctor" (func $ctor))))))
    (func (export "give") (param "x" u32) (result (own $r)) (canon lift (core func $i "give")))
    (func (export "pass") (param "h" (own $r)) (result u32) (canon lift (core func $i "pass"))))
  (instance $p (instantiate $p (with "host" (instance $host))))
  (component $q
    (import "host" (instance $h (export "resource1" (type $r (sub resource)))))
    (alias export $h "resource1" (type $r))
    (import "p" (instance $pi
      (export "give" (func (param "x" u32) (result (own $r))))
      (export "pass" (func (param "h" (own $r)) (result u32)))))
    (core func $give (canon lower (func $pi "give")))
    (core func $pass (canon lower (func $pi "pass")))
    (core func $drop (canon resource.drop $r))
    (core module $m
      (import "" "give" (func $give (param i32) (result i32)))
      (import "" "pass" (func $pass (param i32) (result i32)))
      (import "" "drop" (func $drop (param i32)))
      (func $expect (param i32 i32) (if (i32.ne (local.get 0) (local.get 1)) (then unreachable)))
      (func (export "run") (local $a i32) (local $b i32)
        (local.set $a (call $give (i32.const 5)))
        (local.set $b (call $give (i32.const 6)))
        $BODY))
    (core instance $i (instantiate $m (with "" (instance
      (export "give" (func $give)) (export "pass" (func $pass)) (export "drop" (func $drop))))))
    (func (export "run") (canon lift (core func $i "run"))))
  (instance $q (instantiate $q (with "host" (instance $host)) (with "p" (instance $p))))
  (export "run" (func $q "run"))
)"#;

/// The host resource of [`HOST_BETWEEN`].
struct Resource1;

/// [`HOST_BETWEEN`] with `body`, its `run` called on the reference (wasmtime serving
/// `resource1`) and lowered under `--abi canonical` (the host numbering its resources from
/// 1000 and refusing to drop a number it never gave out): each one's error text.
fn host_between(body: &str) -> [Result<(), String>; 2] {
    use wasmtime::component::{Resource, ResourceType};
    let wat = HOST_BETWEEN.replace("$BODY", body);
    let reference = engine(true);
    let component = Component::new(&reference, &wat).unwrap();
    let mut store = Store::new(&reference, ());
    let mut linker = ComponentLinker::new(&reference);
    let mut host = linker.instance("host").unwrap();
    host.resource("resource1", ResourceType::host::<Resource1>(), |_, _| Ok(())).unwrap();
    host.func_wrap("[constructor]resource1", |_, (rep,): (u32,)| Ok((Resource::<Resource1>::new_own(rep),))).unwrap();
    let on_reference = (|| -> wasmtime::Result<()> {
        let instance = linker.instantiate(&mut store, &component)?;
        instance.get_typed_func::<(), ()>(&mut store, "run")?.call(&mut store, ())
    })()
    .map_err(|e| format!("{e:?}"));

    let bytes = wat::parse_str(&wat).unwrap();
    let options = karmem_bridge::LowerOptions { abi: Abi::Canonical, ..karmem_bridge::LowerOptions::default() };
    let module = karmem_bridge::lower(&bytes, &options).unwrap_or_else(|e| panic!("lowering: {e:#}")).module;
    let core = engine(false);
    let module = Module::new(&core, &module).unwrap();
    let mut store = Store::new(&core, Vec::<i32>::new());
    let mut linker = Linker::new(&core);
    linker
        .func_wrap("host", "[constructor]resource1", |mut caller: wasmtime::Caller<'_, Vec<i32>>, _: i32| {
            let live = caller.data_mut();
            let handle = 1000 + live.len() as i32;
            live.push(handle);
            handle
        })
        .unwrap();
    linker
        .func_wrap("host", "[resource-drop]resource1", |caller: wasmtime::Caller<'_, Vec<i32>>, handle: i32| {
            if caller.data().contains(&handle) { Ok(()) } else { Err(wasmtime::Error::msg("not a host handle")) }
        })
        .unwrap();
    let lowered = (|| -> wasmtime::Result<()> {
        let instance = linker.instantiate(&mut store, &module)?;
        instance.get_typed_func::<(), ()>(&mut store, "run")?.call(&mut store, ())
    })()
    .map_err(|e| format!("{e:?}"));
    [on_reference, lowered]
}

#[test]
fn host_handles_passed_between_components_take_the_receivers_numbers() {
    // `$p` keeps its 1 and 2 and hands out 2 then 3 (its freed 2 reused): `$q` numbers them 1
    // and 2; passed back, `$a` takes `$p`'s free 3; `$q` drops its 2 (the host's number goes
    // to the host).
    let valid = r#"
      (call $expect (local.get $a) (i32.const 1))
      (call $expect (local.get $b) (i32.const 2))
      (call $expect (call $pass (local.get $a)) (i32.const 3))
      (call $drop (local.get $b))"#;
    for (side, outcome) in ["reference", "lowered"].into_iter().zip(host_between(valid)) {
        outcome.unwrap_or_else(|e| panic!("{side}: {e}"));
    }
    // `$a` left `$q`'s table when it was passed.
    let [reference, lowered] = host_between("(drop (call $pass (local.get $a))) (call $drop (local.get $a))");
    let reference = reference.expect_err("the reference must trap");
    assert!(reference.contains("unknown handle index 1"), "the reference traps for another reason: {reference}");
    let lowered = lowered.expect_err("the lowered module must trap");
    assert!(lowered.contains("unreachable"), "lowered: {lowered}");
}
