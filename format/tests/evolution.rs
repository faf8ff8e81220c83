//! Evolution of dynamic structs and interfaces (FORMAT.md §5.2, §6.3, §11):
//! old readers skip what newer writers add, new readers default what older
//! writers lack, and a change to an inline struct is detected by its hash.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod common;

use karmem_format::value::{decode, encode};
use karmem_format::{Limits, Value, validate};

const V1: &str = "
    struct temperature_reading (dynamic) { timestamp: i64; value: f32; }
    struct temperature_batch (dynamic) { readings: []temperature_reading; }
    struct example (dynamic) { field_1: u32; }
";

const V2: &str = "
    struct temperature_reading (dynamic) {
        timestamp: i64;
        value: f32;
        sensor: u16 = 7;
        label: []u8 #string;
        calibrated: bool = true;
    }
    struct temperature_batch (dynamic) {
        readings: []temperature_reading;
        note: []u8 #string = \"none\";
        scale: f64 = 1.5;
    }
    struct example (dynamic) { field_1: u32; field_2: u32; field_3: u16 = 9; }
";

fn roundtrip(writer: &str, reader: &str, ty: &str, text: &str) -> Value {
    let w = common::layout(writer);
    let r = common::layout(reader);
    let wt = common::ty(&w, ty);
    let rt = common::ty(&r, ty);
    let bytes = encode(&w, wt, &common::wave(&w, wt, text)).expect("encode");
    validate(&bytes, &r, rt, &Limits::default()).expect("the other version validates it");
    decode(&r, rt, &bytes, &Limits::default()).expect("the other version decodes it")
}

#[test]
fn old_reader_skips_new_fields_and_columns() {
    let v = roundtrip(
        V2,
        V1,
        "temperature_batch",
        r#"{readings: [{timestamp: 10, value: 1.5, sensor: 3, label: "a", calibrated: false},
                       {timestamp: 20, value: 2.5, sensor: 4, label: "b", calibrated: true}],
            note: "hello", scale: 2.0}"#,
    );
    let r = common::layout(V1);
    let expected = common::wave(
        &r,
        common::ty(&r, "temperature_batch"),
        "{readings: [{timestamp: 10, value: 1.5}, {timestamp: 20, value: 2.5}]}",
    );
    assert_eq!(v, expected);

    let v = roundtrip(V2, V1, "example", "{field-1: 1, field-2: 2, field-3: 3}");
    assert_eq!(v, Value::Record(vec![("field_1".into(), Value::U32(1))]));
}

#[test]
fn new_reader_defaults_fields_and_columns_an_old_writer_lacks() {
    let v = roundtrip(
        V1,
        V2,
        "temperature_batch",
        "{readings: [{timestamp: 10, value: 1.5}, {timestamp: 20, value: 2.5}]}",
    );
    let r = common::layout(V2);
    let expected = common::wave(
        &r,
        common::ty(&r, "temperature_batch"),
        r#"{readings: [{timestamp: 10, value: 1.5, sensor: 7, label: "", calibrated: true},
                       {timestamp: 20, value: 2.5, sensor: 7, label: "", calibrated: true}],
            note: "none", scale: 1.5}"#,
    );
    assert_eq!(v, expected);

    // Paper Figures 8 -> 10: field_2 has no default (zero), field_3 has 9.
    let v = roundtrip(V1, V2, "example", "{field-1: 1}");
    let r = common::layout(V2);
    assert_eq!(v, common::wave(&r, common::ty(&r, "example"), "{field-1: 1, field-2: 0, field-3: 9}"));
}

#[test]
fn an_absent_field_without_zero_value_needs_a_default() {
    let old = "struct s (dynamic) { a: u8; }";
    let new = "enum mode (u8) { fast = 1; slow = 2; }
               struct s (dynamic) { a: u8; m: mode; }";
    let w = common::layout(old);
    let r = common::layout(new);
    let bytes = encode(&w, common::ty(&w, "s"), &common::wave(&w, common::ty(&w, "s"), "{a: 1}")).expect("encode");
    let err = decode(&r, common::ty(&r, "s"), &bytes, &Limits::default()).expect_err("no zero value");
    assert_eq!(err.kind, karmem_format::ErrorKind::NoDefault);
    let with_default = "enum mode (u8) { fast = 1; slow = 2; }
                        struct s (dynamic) { a: u8; m: mode = slow; }";
    let r = common::layout(with_default);
    let v = decode(&r, common::ty(&r, "s"), &bytes, &Limits::default()).expect("default applies");
    assert_eq!(v.field("m"), Some(&Value::Enum("slow".into())));
}

#[test]
fn interface_functions_evolve_by_appending_parameters() {
    let old = "interface api (dynamic, direct) { put: fn(key: []u8 #string) (ok: bool); }";
    let new = "interface api (dynamic, direct) { put: fn(key: []u8 #string, ttl: u32) (ok: bool, version: u64); }";
    let (o, n) = (common::layout(old), common::layout(new));
    let (of, nf) = (o.function("api", "put").expect("old put"), n.function("api", "put").expect("new put"));
    // New caller, old callee: the extra argument is skipped.
    let bytes = encode(&n, nf.params, &common::wave(&n, nf.params, r#"{key: "k", ttl: 5}"#)).expect("encode");
    let v = decode(&o, of.params, &bytes, &Limits::default()).expect("old callee reads it");
    assert_eq!(v, common::wave(&o, of.params, r#"{key: "k"}"#));
    // Old callee's result, new caller: `version` reads as 0.
    let bytes = encode(&o, of.results, &common::wave(&o, of.results, "{ok: true}")).expect("encode");
    let v = decode(&n, nf.results, &bytes, &Limits::default()).expect("new caller reads it");
    assert_eq!(v, common::wave(&n, nf.results, "{ok: true, version: 0}"));
    // The empty message is a valid argument struct for both.
    assert!(decode(&n, nf.params, &[], &Limits::default()).is_ok());
}

#[test]
fn a_changed_inline_struct_is_detected_by_its_hash() {
    let v1 = "struct point (inline) { x: f32; y: f32; }
              struct shape (dynamic) { origin: point; }
              interface draw (dynamic, direct) { at: fn(p: point) (); }";
    let v2 = "struct point (inline) { x: f32; y: f32; z: f32; }
              struct shape (dynamic) { origin: point; }
              interface draw (dynamic, direct) { at: fn(p: point) (); }";
    let renamed = "struct point (inline) { a: f32; b: f32; }
              struct shape (dynamic) { origin: point; extra: u8; }
              interface draw (dynamic, direct) { at: fn(p: point) (); }";
    let (a, b, c) = (common::layout(v1), common::layout(v2), common::layout(renamed));
    let hash = |l: &karmem_format::Layout, t: &str| l.layout_hash(common::ty(l, t));
    assert_ne!(hash(&a, "point"), hash(&b, "point"), "adding a field to an inline struct changes its layout");
    assert_ne!(a.function_hash("draw", "at"), b.function_hash("draw", "at"));
    // Renaming fields is not a layout change; a dynamic struct may grow.
    assert_eq!(hash(&a, "point"), hash(&c, "point"));
    assert_eq!(hash(&a, "shape"), hash(&c, "shape"));
    assert_eq!(a.function_hash("draw", "at"), c.function_hash("draw", "at"));
    assert_eq!(a.signature(common::ty(&a, "point")), "struct{f32,f32}");
}

#[test]
fn column_hashes_are_stable_across_unrelated_changes() {
    let a = common::layout(
        "struct inner (inline) { p: u8; q: u16; }
         struct e (dynamic) { a: u32; b: inner; }",
    );
    let b = common::layout(
        "struct other (dynamic) { z: u64; }
         struct inner (inline) { p: u8; q: u16; }
         struct e (dynamic) { a: u32; b: inner; c: other; }",
    );
    let cols = |l: &karmem_format::Layout| -> Vec<(Vec<u32>, u32)> {
        l.columns(common::ty(l, "e")).iter().map(|c| (c.path.clone(), c.hash)).collect()
    };
    let (ca, cb) = (cols(&a), cols(&b));
    assert_eq!(ca.len(), 3, "a, b.p, b.q");
    assert_eq!(&cb[..3], &ca[..], "existing columns keep their hashes");
    assert_eq!(cb[3].0, vec![2]);
    assert_eq!(ca[1].1, karmem_format::raw::column_hash(&[1, 0]));
}

#[test]
fn invocations_parse_like_wasmtime_invoke() {
    let layout = common::layout(
        "interface greeter (dynamic, direct) {
             greet: fn(name: []u8 #string, times: u8) (r: []u8 #string);
             get_count: fn() (n: u32, m: option<u8>);
         }",
    );
    let call = karmem_format::wave::parse_invocation(&layout, "greeter", r#"greet("x", 2)"#).expect("parses");
    assert_eq!(call.function, "greet");
    assert_eq!(call.args, Value::Record(vec![("name".into(), Value::String("x".into())), ("times".into(), Value::U8(2))]));
    let call = karmem_format::wave::parse_invocation(&layout, "greeter", "get-count()").expect("kebab name");
    assert_eq!(call.function, "get_count");
    assert!(karmem_format::wave::parse_invocation(&layout, "greeter", "greet(1)").is_err());
    assert!(karmem_format::wave::parse_invocation(&layout, "greeter", "nope()").is_err());
    let f = layout.function("greeter", "get_count").expect("fn");
    let results = common::wave(&layout, f.results, "{n: 3, m: some(1)}");
    assert_eq!(karmem_format::wave::print_results(&results).expect("print"), "3, some(1)");
}
