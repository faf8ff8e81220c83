//! WAVE text for values: tuple-shaped structs (WIT tuples, fields `_0`, `_1`,
//! …) read and print as WAVE tuples `(a, b)`, exactly as `wasm-wave`'s own
//! value type (what wasmtime's `--invoke` uses) reads and prints the same
//! text; records keep the record syntax; bad arity is an error.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod common;

use karmem_format::value::{Value, decode, encode};
use karmem_format::wave::{ValueType, is_tuple_shaped, parse, print};
use karmem_format::{Layout, Limits};

/// Parses `text` with wasm-wave's own value type built from the same type,
/// and prints it back: the reference our printer must match.
fn reference(ty: &ValueType, text: &str) -> String {
    let wave_ty = wasm_wave::value::Type::from_wasm_type(ty).expect("type converts");
    let value: wasm_wave::value::Value = wasm_wave::from_str(&wave_ty, text).expect("reference parses");
    wasm_wave::to_string(&value).expect("reference prints")
}

#[test]
fn tuple_shaped_structs_read_and_print_as_tuples() {
    let schema = "
        struct pair (inline) { _0: u32; _1: []u8 #string; }
        struct nested (inline) { _0: pair; _1: option<f32>; }
        struct dyn_tuple (dynamic) { _0: i8; }
        struct holder (dynamic) { p: pair; list: []nested; d: dyn_tuple; label: []u8 #string; }
    ";
    let layout = common::layout(schema);
    let holder = common::ty(&layout, "holder");
    let ty = ValueType::new(layout.clone(), holder);
    let text = r#"{p: (7, "seven"), list: [((1, "a"), some(1.5)), ((2, ""), none)], d: (-1), label: "x"}"#;
    let value = parse(&ty, text).expect("tuple syntax parses");
    let printed = print(&value).expect("prints");
    assert_eq!(printed, text);
    assert_eq!(printed, reference(&ty, text), "same text as wasm-wave's own values");

    // Through the binary format and back.
    let bytes = encode(&layout, holder, &value).expect("encode");
    let back = decode(&layout, holder, &bytes, &Limits::default()).expect("decode");
    assert_eq!(back, value);
    assert_eq!(print(&back).expect("prints"), text);

    // The tuple is the struct's record value with its `_i` names.
    let Value::Record(fields) = &value else { panic!("a record") };
    assert_eq!(fields[0].1, Value::Record(vec![("_0".into(), Value::U32(7)), ("_1".into(), Value::String("seven".into()))]));
}

#[test]
fn tuple_arity_and_syntax_are_checked() {
    let layout = common::layout("struct pair (inline) { _0: u32; _1: bool; }");
    let ty = ValueType::new(layout.clone(), common::ty(&layout, "pair"));
    assert!(parse(&ty, "(1, true)").is_ok());
    for bad in ["(1)", "(1, true, 3)", "{_0: 1, _1: true}", "()", "(true, 1)"] {
        assert!(parse(&ty, bad).is_err(), "`{bad}` is refused");
    }
}

#[test]
fn records_keep_record_syntax() {
    let layout: std::sync::Arc<Layout> = common::layout("struct point (inline) { x: f32; y_pos: f32; }");
    let ty = ValueType::new(layout.clone(), common::ty(&layout, "point"));
    let value = parse(&ty, "{x: 1.0, y-pos: 2.5}").expect("record parses");
    assert_eq!(print(&value).expect("prints"), "{x: 1, y-pos: 2.5}");
    assert_eq!(print(&value).expect("prints"), reference(&ty, "{x: 1.0, y-pos: 2.5}"));
    assert!(parse(&ty, "(1.0, 2.5)").is_err(), "a record is not a tuple");
}

#[test]
fn tuple_shape_is_names_in_order() {
    assert!(is_tuple_shaped(["_0"]));
    assert!(is_tuple_shaped(["_0", "_1", "_2"]));
    assert!(!is_tuple_shaped([]));
    assert!(!is_tuple_shaped(["_1", "_0"]));
    assert!(!is_tuple_shaped(["_0", "x"]));
    assert!(!is_tuple_shaped(["_00"]));
    // Out of order `_i` names are neither a tuple nor a WAVE record (`-1` is no label).
    let layout = common::layout("struct swapped (inline) { _1: u8; _0: u8; }");
    let ty = ValueType::new(layout.clone(), common::ty(&layout, "swapped"));
    assert!(parse(&ty, "(1, 2)").is_err());
}
