//! Function compatibility for the ABI handshake (docs/ABI.md §5): a function
//! that gained a parameter or result (dynamic argument structs evolve) is
//! accepted in either direction although its type hash changed; a retyped,
//! removed or zero-less parameter, or a breaking change in a record the
//! function reaches, is refused and named. Messages really do cross versions.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod common;

use karmem_format::compat::{Newer, check_function};
use karmem_format::value::{decode, encode};
use karmem_format::{Layout, Limits};

fn schema(source: &str) -> karmem_idl::Schema {
    karmem_idl::load(source, "test.km").unwrap_or_else(|e| panic!("{e}"))
}

const V1: &str = "
    struct job (dynamic) { id: u32; }
    interface api (dynamic, direct) {
        run: fn(j: job, name: []u8 #string) (ok: bool);
        other: fn(x: u32) ();
    }";

const V2: &str = "
    struct job (dynamic) { id: u32; priority: u8; }
    interface api (dynamic, direct) {
        run: fn(j: job, name: []u8 #string, retries: u32) (ok: bool, took: u64);
        other: fn(x: u32) ();
    }";

#[test]
fn an_evolved_function_is_accepted_both_ways_despite_another_hash() {
    let (v1, v2) = (schema(V1), schema(V2));
    let (l1, l2) = (Layout::new(&v1).unwrap(), Layout::new(&v2).unwrap());
    assert_ne!(l1.function_hash("api", "run"), l2.function_hash("api", "run"), "the hash is an identity");

    let guest_newer = check_function(&v1, &v2, "api", "run").expect("host v1, guest v2");
    assert_eq!(guest_newer.newer, Newer::Guest);
    let lines: Vec<String> = guest_newer.changes.iter().map(|c| c.message.clone()).collect();
    assert!(lines.iter().any(|l| l.contains("parameter `retries: u32` appended")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("field `priority` appended")), "{lines:?}");

    let host_newer = check_function(&v2, &v1, "api", "run").expect("host v2, guest v1");
    assert_eq!(host_newer.newer, Newer::Host);

    let same = check_function(&v1, &v2, "api", "other").expect("unchanged");
    assert_eq!(same.newer, Newer::Neither);
    assert!(same.changes.is_empty());
}

#[test]
fn messages_cross_the_two_versions() {
    let (l1, l2) = (common::layout(V1), common::layout(V2));
    let (f1, f2) = (l1.function("api", "run").unwrap(), l2.function("api", "run").unwrap());
    // An old caller's arguments, read by the new callee: `retries` reads as 0.
    let old_args = encode(&l1, f1.params, &common::wave(&l1, f1.params, r#"{j: {id: 7}, name: "a"}"#)).unwrap();
    let read = decode(&l2, f2.params, &old_args, &Limits::default()).unwrap();
    assert_eq!(read, common::wave(&l2, f2.params, r#"{j: {id: 7, priority: 0}, name: "a", retries: 0}"#));
    // The new callee's results, read by the old caller: `took` is skipped.
    let new_results = encode(&l2, f2.results, &common::wave(&l2, f2.results, "{ok: true, took: 99}")).unwrap();
    let read = decode(&l1, f1.results, &new_results, &Limits::default()).unwrap();
    assert_eq!(read, common::wave(&l1, f1.results, "{ok: true}"));
}

#[test]
fn incompatible_functions_are_refused_with_their_breaking_changes() {
    let v1 = schema(V1);
    let cases = [
        // A parameter retyped.
        (V1.replace("name: []u8 #string)", "name: u32)"), "signature of function `run` changed"),
        // A record the function reaches lost a field, while the function gained a parameter.
        (
            V2.replace("id: u32; priority: u8;", "priority: u8;"),
            "field `id` removed",
        ),
        // A parameter appended whose type has no zero value.
        (
            format!("enum e (u8) {{ a = 1; }}\n{}", V1.replace("name: []u8 #string)", "name: []u8 #string, e: e)")),
            "has no zero value",
        ),
    ];
    for (source, needle) in cases {
        let other = schema(&source);
        let error = check_function(&v1, &other, "api", "run").expect_err(needle);
        let text = error.to_string();
        assert!(text.starts_with("function `api.run` is incompatible"), "{text}");
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
        assert!(check_function(&other, &v1, "api", "run").is_err(), "refused both ways: {needle}");
    }
    let error = check_function(&v1, &v1, "api", "gone").expect_err("missing function");
    assert!(error.to_string().contains("function `gone` is missing"), "{error}");
}

#[test]
fn inline_interfaces_do_not_evolve() {
    let a = schema("interface api (inline, direct) { f: fn(x: u32) (); }");
    let b = schema("interface api (inline, direct) { f: fn(x: u32, y: u32) (); }");
    assert!(check_function(&a, &b, "api", "f").is_err());
    assert!(check_function(&b, &a, "api", "f").is_err());
}
