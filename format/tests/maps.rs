//! Maps (FORMAT.md §6.5): a `map<K, V>` is stored exactly like the SoA
//! array of its inline entry struct `{ key: K; value: V; }` — same bytes,
//! same layout hash, same validation; entries keep the sender's order,
//! duplicate keys included; WAVE writes a map as a list of `(key, value)`
//! tuples; malformed map messages are rejected, not decoded.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing,
    reason = "test code: a failed step fails the test, and it indexes data it built itself"
)]

mod common;

use karmem_format::layout::{ArrayForm, Kind};
use karmem_format::value::{Value, decode, encode, zero_value};
use karmem_format::wave::{self, ValueType};
use karmem_format::{ErrorKind, Limits, validate};

const SCHEMA: &str = "
    struct pair (inline) { _0: u16; _1: []u8 #string; }
    struct config (dynamic) {
        counts: map<[]u8 #string, u32>;
        groups: map<u32, []([]u8 #string)>;
        pairs: map<char, pair>;
    }
    // The same bytes, written as arrays of entry structs.
    struct counts_entry (inline) { key: []u8 #string; value: u32; }
    struct groups_entry (inline) { key: u32; value: []([]u8 #string); }
    struct pairs_entry (inline) { key: char; value: pair; }
    struct config_as_arrays (dynamic) {
        counts: []counts_entry;
        groups: []groups_entry;
        pairs: []pairs_entry;
    }
";

const MAPS: &str = r#"{counts: [("b", 2), ("a", 1), ("b", 3)], groups: [(7, ["x", "yz"]), (0, [])], pairs: [('k', (1, "one"))]}"#;
const ARRAYS: &str = r#"{counts: [{key: "b", value: 2}, {key: "a", value: 1}, {key: "b", value: 3}], groups: [{key: 7, value: ["x", "yz"]}, {key: 0, value: []}], pairs: [{key: 'k', value: (1, "one")}]}"#;

#[test]
fn a_map_is_the_soa_array_of_its_entry_struct() {
    let layout = common::layout(SCHEMA);
    let config = common::ty(&layout, "config");
    let arrays = common::ty(&layout, "config_as_arrays");
    let maps = common::wave(&layout, config, MAPS);
    let as_arrays = common::wave(&layout, arrays, ARRAYS);
    let bytes = encode(&layout, config, &maps).unwrap();
    assert_eq!(bytes.as_slice(), encode(&layout, arrays, &as_arrays).unwrap().as_slice(), "same bytes");
    // Each side reads the other's message.
    assert_eq!(decode(&layout, arrays, &bytes, &Limits::default()).unwrap(), as_arrays);
    // Same layout signature and hash: a reader relies on nothing else.
    let (Some(map_struct), Some(array_struct)) = (layout.as_struct(config), layout.as_struct(arrays)) else {
        panic!("structs")
    };
    for (m, a) in map_struct.fields.iter().zip(&array_struct.fields) {
        assert_eq!(layout.signature(m.ty), layout.signature(a.ty), "{}", m.name);
        assert!(layout.signature(m.ty).starts_with("[]soa(struct{"), "maps are SoA: {}", layout.signature(m.ty));
        let Kind::Array { elem, form } = &layout.get(m.ty).kind else { panic!("a map is an array") };
        assert_eq!(*form, ArrayForm::Soa);
        assert!(layout.is_map_entry(*elem));
        assert_eq!(layout.columns(*elem).len(), layout.columns(match &layout.get(a.ty).kind {
            Kind::Array { elem, .. } => *elem,
            _ => panic!("array"),
        }).len());
    }
    // The tuple value is flattened like any inline struct element: key, value._0, value._1.
    let pairs = layout.map_types(map_struct.fields[2].ty).expect("a map");
    assert!(layout.as_struct(pairs.1).is_some());
    let Kind::Array { elem, .. } = &layout.get(map_struct.fields[2].ty).kind else { panic!() };
    let paths: Vec<Vec<u32>> = layout.columns(*elem).iter().map(|c| c.path.clone()).collect();
    assert_eq!(paths, vec![vec![0], vec![1, 0], vec![1, 1]]);
}

#[test]
fn entries_keep_their_order_and_duplicates() {
    let layout = common::layout(SCHEMA);
    let config = common::ty(&layout, "config");
    let value = common::wave(&layout, config, MAPS);
    let Some(Value::Map(counts)) = value.field("counts") else { panic!("a map value: {value:?}") };
    let keys: Vec<&Value> = counts.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [&Value::String("b".into()), &Value::String("a".into()), &Value::String("b".into())]);
    let bytes = encode(&layout, config, &value).unwrap();
    let back = decode(&layout, config, &bytes, &Limits::default()).unwrap();
    assert_eq!(back, value, "decoded in the sender's order, duplicates kept");
    assert_eq!(wave::print(&back).unwrap(), MAPS, "WAVE: a list of (key, value) tuples");
    // An absent map reads as the empty map.
    let empty = decode(&layout, config, &[], &Limits::default()).unwrap();
    assert_eq!(empty.field("counts"), Some(&Value::Map(Vec::new())));
    let counts_ty = layout.as_struct(config).unwrap().fields[0].ty;
    assert_eq!(zero_value(&layout, counts_ty, 0, 0).unwrap(), Value::Map(Vec::new()));
}

#[test]
fn maps_and_lists_are_not_interchangeable_values() {
    let layout = common::layout(SCHEMA);
    let config = common::ty(&layout, "config");
    let arrays = common::ty(&layout, "config_as_arrays");
    let as_arrays = common::wave(&layout, arrays, ARRAYS);
    // A list of records is not a map value, and a map is not a list value.
    let Value::Record(fields) = &as_arrays else { panic!() };
    let err = encode(&layout, config, &Value::Record(fields.clone())).unwrap_err();
    assert!(err.message.contains("found a list"), "{err}");
    let maps = common::wave(&layout, config, MAPS);
    let Value::Record(fields) = &maps else { panic!() };
    let err = encode(&layout, arrays, &Value::Record(fields.clone())).unwrap_err();
    assert!(err.message.contains("found a map"), "{err}");
    // A key or value of the wrong type names the entry.
    let bad = Value::Record(vec![
        ("counts".into(), Value::Map(vec![(Value::String("a".into()), Value::U32(1)), (Value::U32(2), Value::U32(2))])),
        ("groups".into(), Value::Map(Vec::new())),
        ("pairs".into(), Value::Map(Vec::new())),
    ]);
    let err = encode(&layout, config, &bad).unwrap_err();
    assert_eq!(err.path, ".counts[1].key", "{err}");
    // WAVE: an entry is a 2-tuple.
    let ty = ValueType::new(layout.clone(), config);
    assert!(wave::parse(&ty, r#"{counts: [("a", 1, 2)], groups: [], pairs: []}"#).is_err());
    assert!(wave::parse(&ty, r#"{counts: [{key: "a", value: 1}], groups: [], pairs: []}"#).is_err());
}

/// Byte offset of the `counts` slot in the body of `config` (header at +0).
const COUNTS_SLOT: usize = 4;

#[test]
fn malformed_maps_are_rejected() {
    let layout = common::layout(SCHEMA);
    let config = common::ty(&layout, "config");
    let value = common::wave(&layout, config, r#"{counts: [("ab", 1), ("c", 2)], groups: [], pairs: []}"#);
    let good = encode(&layout, config, &value).unwrap().as_slice().to_vec();
    validate(&good, &layout, config, &Limits::default()).unwrap();
    let root = u32::from_le_bytes(good[4..8].try_into().unwrap()) as usize;
    let slot = root + COUNTS_SLOT;
    let dir = u32::from_le_bytes(good[slot..slot + 4].try_into().unwrap()) as usize;
    assert_eq!(u32::from_le_bytes(good[dir..dir + 4].try_into().unwrap()), 2, "two columns: key and value");
    let key_column = u32::from_le_bytes(good[dir + 12..dir + 16].try_into().unwrap()) as usize;
    let first_key = u32::from_le_bytes(good[key_column..key_column + 4].try_into().unwrap()) as usize;

    let check = |what: &str, mutate: &dyn Fn(&mut Vec<u8>), expect: &dyn Fn(&ErrorKind) -> bool| {
        let mut bytes = good.clone();
        mutate(&mut bytes);
        let err = validate(&bytes, &layout, config, &Limits::default()).expect_err(what);
        assert!(expect(&err.kind), "{what}: {err}");
        assert!(decode(&layout, config, &bytes, &Limits::default()).is_err(), "{what}: decode validates first");
    };
    let put = |bytes: &mut Vec<u8>, at: usize, v: u32| bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    check("length past capacity", &|b| put(b, slot + 4, 3), &|k| matches!(k, ErrorKind::LengthExceedsCapacity { .. }));
    check("directory out of bounds", &|b| put(b, slot, 0x10_0000), &|k| matches!(k, ErrorKind::OutOfBounds { .. }));
    check("misaligned directory", &|b| put(b, slot, dir as u32 + 4), &|k| {
        matches!(k, ErrorKind::Misaligned { .. } | ErrorKind::TooManyColumns { .. })
    });
    check("a key column twice", &|b| put(b, dir + 8, u32::from_le_bytes(b[dir + 4..dir + 8].try_into().unwrap())), &|k| {
        matches!(k, ErrorKind::DuplicateColumn { .. })
    });
    check("a key that is not UTF-8", &|b| b[first_key] = 0xff, &|k| matches!(k, ErrorKind::InvalidUtf8));
    check("a key string out of bounds", &|b| put(b, key_column + 4, 0x7fff_ffff), &|k| {
        matches!(k, ErrorKind::OutOfBounds { .. } | ErrorKind::LengthExceedsCapacity { .. })
    });
}
