//! The top-down builder and the zero-copy views, used the way generated code
//! uses them (paper Figure 34): allocate the struct, then its array, then fill
//! the columns in place; read them back as native slices.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "test code: a failed step fails the test"
)]
#![allow(unsafe_code, reason = "exercises `access_unchecked`")]

mod common;

use karmem_format::raw::{self, column_hash};
use karmem_format::value::{decode, encode};
use karmem_format::{Builder, Limits, Message, Value, validate};

const SCHEMA: &str = "
    struct temperature_reading (dynamic) { timestamp: i64; value: f32; }
    struct temperature_batch (dynamic) { readings: []temperature_reading; }
";

#[test]
fn figure_34_top_down_build_matches_the_dynamic_encoder() {
    let layout = common::layout(SCHEMA);
    let batch_ty = common::ty(&layout, "temperature_batch");
    let batch = layout.as_struct(batch_ty).expect("struct");
    let readings = &batch.fields[0];
    let columns = layout.columns(common::ty(&layout, "temperature_reading"));
    let spec: Vec<(u32, u32)> = columns.iter().map(|c| (c.hash, c.size)).collect();

    let data: Vec<(i64, f32)> = (0..10).map(|i| (1_700_000_000 + i * 60, 20.0 + i as f32 / 4.0)).collect();
    let mut b = Builder::with_capacity(4096);
    let root = b.alloc_dynamic_struct(batch.used).expect("root");
    b.set_root(root);
    let mut cols = [0u32; 2];
    b.alloc_soa_array(root + readings.offset, data.len() as u32, data.len() as u32, &spec, &mut cols).expect("array");
    {
        let timestamps = b.column_mut::<i64>(cols[0], data.len() as u32).expect("little-endian, aligned");
        for (t, d) in timestamps.iter_mut().zip(&data) {
            *t = d.0;
        }
    }
    let values = b.column_mut::<f32>(cols[1], data.len() as u32).expect("aligned");
    for (v, d) in values.iter_mut().zip(&data) {
        *v = d.1;
    }
    let bytes = b.finish();

    // Same bytes as the schema-driven encoder.
    let text = format!(
        "{{readings: [{}]}}",
        data.iter().map(|(t, v)| format!("{{timestamp: {t}, value: {v:?}}}")).collect::<Vec<_>>().join(", ")
    );
    let value = common::wave(&layout, batch_ty, &text);
    let reference = encode(&layout, batch_ty, &value).expect("encode");
    assert_eq!(bytes.as_slice(), reference.as_slice());
    validate(&bytes, &layout, batch_ty, &Limits::default()).expect("valid");

    // Zero-copy read with aggregation.
    let msg = Message::new(&bytes).expect("message");
    let root = msg.dynamic_struct(msg.root()).expect("root");
    let slot_at = root.field(readings.offset, raw::SLOT_SIZE).expect("present");
    let soa = msg.slot(slot_at).expect("slot").soa(msg).expect("directory");
    let values = soa.column::<f32>(column_hash(&[1])).expect("in bounds").expect("present");
    let slice = values.as_slice().expect("64-byte aligned column");
    assert_eq!(slice.as_ptr() as usize % 64, 0);
    let sum: f32 = slice.iter().sum();
    assert_eq!(sum, data.iter().map(|d| d.1).sum::<f32>());
    assert!(soa.column::<u16>(0xdead_beef).expect("lookup").is_none());
}

#[test]
fn nested_dynamic_struct_at_offset_zero_is_written_once() {
    // The Karmem Go writer allocated a nested table at field offset 0 twice
    // (it used offset 0 as "not allocated yet"); here it is written once.
    let layout = common::layout(
        "struct atype (dynamic) { int_field: i32; bool_field: bool; }
         struct btype (inline) { a: atype; }",
    );
    let b = common::ty(&layout, "btype");
    let value = common::wave(&layout, b, "{a: {int-field: 42, bool-field: true}}");
    let bytes = encode(&layout, b, &value).expect("encode");
    // header 8 + btype 8 + atype body 16 (header, i32, bool, padding).
    assert_eq!(bytes.len(), 32, "{}", common::hex(&bytes));
    assert_eq!(decode(&layout, b, &bytes, &Limits::default()).expect("decode"), value);
}

#[test]
fn absent_fields_read_through_offset_zero() {
    // A dynamic struct reference of 0 is the empty struct: the header word at
    // offset 0 says `used = 4`, so every field is absent.
    let msg = Message::new(&[]).expect("the empty message");
    let empty = msg.dynamic_struct(0).expect("offset 0");
    assert_eq!(empty.used(), 4);
    assert_eq!(empty.scalar_or::<u32>(4, 77).expect("absent"), 77);
    let layout = common::layout("struct s (dynamic) { a: u32 = 5; b: []u8 #string; }");
    let s = common::ty(&layout, "s");
    assert_eq!(
        decode(&layout, s, &raw::EMPTY_MESSAGE, &Limits::default()).expect("decode"),
        Value::Record(vec![("a".into(), Value::U32(5)), ("b".into(), Value::String(String::new()))])
    );
}

#[test]
fn unaligned_buffers_still_read_but_not_as_slices() {
    let layout = common::layout("struct s (dynamic) { v: []u32; }");
    let s = common::ty(&layout, "s");
    let bytes = encode(&layout, s, &common::wave(&layout, s, "{v: [1, 2, 3]}")).expect("encode");
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let msg = Message::new(&shifted[1..]).expect("message");
    let root = msg.dynamic_struct(msg.root()).expect("root");
    let slot = msg.slot(root.field(4, 12).expect("present")).expect("slot");
    let column = slot.plain::<u32>(msg).expect("in bounds");
    assert_eq!(column.iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(column.as_slice(), None);
    assert_eq!(column.get(3), None);
}

#[test]
fn access_navigates_by_name_checked_and_unchecked() {
    let layout = common::layout(
        "struct reading (dynamic) { timestamp: i64; value: f32; }
         struct batch (dynamic) { name: []u8 #string; readings: []reading; tags: []u16; unit: char = 'C'; }",
    );
    let old = common::layout(
        "struct reading (dynamic) { timestamp: i64; value: f32; }
         struct batch (dynamic) { name: []u8 #string; readings: []reading; }",
    );
    let ty = common::ty(&old, "batch");
    let value = common::wave(&old, ty, r#"{name: "lab", readings: [{timestamp: 1, value: 2.5}, {timestamp: 2, value: 3.5}]}"#);
    let bytes = encode(&old, ty, &value).expect("encode");
    let new_ty = common::ty(&layout, "batch");

    let root = karmem_format::access(&bytes, &layout, new_ty, &Limits::default()).expect("valid");
    let name = root.field("name").expect("read").expect("declared");
    assert_eq!(name.str().expect("utf-8"), "lab");
    let readings = root.field("readings").expect("read").expect("declared");
    assert_eq!(readings.len().expect("len"), 2);
    let values = readings.column::<f32>("value").expect("column").expect("written");
    assert_eq!(values.iter().sum::<f32>(), 6.0);
    assert!(readings.column::<u64>("value").is_err(), "wrong element size is an error");
    // Fields the old writer did not write read as their defaults.
    let unit = root.field("unit").expect("read").expect("declared");
    assert!(unit.is_absent());
    assert_eq!(unit.char().expect("default"), 'C');
    assert_eq!(root.field("tags").expect("read").expect("declared").len().expect("len"), 0);
    assert!(root.field("nope").expect("read").is_none());

    // SAFETY: `bytes` was validated just above by `access`.
    let unchecked = unsafe { karmem_format::access_unchecked(&bytes, &layout, new_ty) }.expect("framing");
    assert_eq!(unchecked.field("name").expect("read").expect("declared").str().expect("str"), "lab");
    assert_eq!(unchecked.to_wave().expect("wave"), root.to_wave().expect("wave"));

    // A view over bytes with invalid UTF-8 that never went through `access`.
    let mut bad = bytes.to_vec();
    let slot = u32::from_le_bytes(bad[12..16].try_into().expect("4")) as usize;
    bad[slot] = 0xFF;
    let view = karmem_format::View::checked(&bad, &layout, new_ty).expect("framing");
    assert!(view.field("name").expect("read").expect("declared").str().is_err());
    assert!(karmem_format::access(&bad, &layout, new_ty, &Limits::default()).is_err());
}
