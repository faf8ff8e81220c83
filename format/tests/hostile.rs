//! Must-show: random and mutated bytes never make `validate` panic, and a
//! message `validate` accepts always decodes. Also the specific attacks the
//! limits exist for: overlapping and cyclic offsets, giant lengths, deep nesting.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing,
    reason = "test code: a failed step fails the test, and it indexes data it built itself"
)]

mod common;

use std::sync::Arc;

use common::random::{self as gen_random, Rng};
use karmem_format::layout::Layout;
use karmem_format::value::{decode, encode};
use karmem_format::{ErrorKind, Limits, validate};

fn random_layout(rng: &mut Rng) -> Option<Arc<Layout>> {
    let file = gen_random::schema(rng);
    let schema = karmem_idl::resolve(file).ok()?;
    Layout::new(&schema).ok().map(Arc::new)
}

/// Validation accepted `bytes`: decoding must then succeed (or report an
/// absent field without default), never fail on structure.
fn check_consistent(layout: &Layout, root: karmem_format::TypeId, bytes: &[u8], limits: &Limits) {
    if validate(bytes, layout, root, limits).is_ok() {
        match decode(layout, root, bytes, limits) {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NoDefault => {}
            Err(e) => panic!("validated message fails to decode: {e}"),
        }
    }
}

#[test]
fn mutated_messages_never_panic() {
    let limits = Limits { max_depth: 32, max_visit: 1 << 20, max_columns: 64 };
    let mut rng = Rng(0x5EED);
    let mut accepted = 0;
    for _ in 0..400 {
        let Some(layout) = random_layout(&mut rng) else { continue };
        let Some(root) = layout.named("root") else { continue };
        let value = gen_random::value(&layout, root, &mut rng, 0);
        let Ok(bytes) = encode(&layout, root, &value) else { continue };
        for _ in 0..40 {
            let mut m = bytes.to_vec();
            for _ in 0..1 + rng.below(4) {
                if m.is_empty() {
                    break;
                }
                let at = rng.below(m.len() as u64) as usize;
                match rng.below(6) {
                    0 => m[at] ^= 1 << rng.below(8),
                    1 => m[at] = rng.next() as u8,
                    2 => {
                        let at = at & !3;
                        let word = match rng.below(4) {
                            0 => 0u32,
                            1 => u32::MAX,
                            2 => rng.below(m.len() as u64 + 128) as u32,
                            _ => rng.next() as u32,
                        };
                        if at + 4 <= m.len() {
                            m[at..at + 4].copy_from_slice(&word.to_le_bytes());
                        }
                    }
                    3 => m.truncate(at),
                    4 => m.extend((0..rng.below(100)).map(|_| rng.next() as u8)),
                    _ => {
                        // Point an offset-looking word at another object.
                        let at = at & !3;
                        let target = (rng.below(m.len() as u64 / 8 + 1) * 8) as u32;
                        if at + 4 <= m.len() {
                            m[at..at + 4].copy_from_slice(&target.to_le_bytes());
                        }
                    }
                }
            }
            if validate(&m, &layout, root, &limits).is_ok() {
                accepted += 1;
            }
            check_consistent(&layout, root, &m, &limits);
        }
    }
    // Mutations that only touch values or padding keep the message valid.
    assert!(accepted > 0, "no mutated message was accepted; the test is not exercising decode");
}

#[test]
fn random_bytes_never_panic() {
    let limits = Limits::default();
    let mut rng = Rng(0xB17E5);
    for _ in 0..200 {
        let Some(layout) = random_layout(&mut rng) else { continue };
        let Some(root) = layout.named("root") else { continue };
        for _ in 0..40 {
            let len = rng.below(600) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 8 && rng.chance(80) {
                bytes[..4].copy_from_slice(&0x0Cu32.to_le_bytes());
                // A root offset that is at least in range and aligned.
                let root_at = (rng.below(len as u64 / 8) * 8) as u32;
                bytes[4..8].copy_from_slice(&root_at.to_le_bytes());
            }
            check_consistent(&layout, root, &bytes, &limits);
        }
    }
}

fn batch() -> Arc<Layout> {
    common::layout(
        "struct node (dynamic) { value: u32; next: []node; }
         struct batch (dynamic) { a: []u32; b: []u32; }",
    )
}

fn put(bytes: &mut [u8], at: usize, word: u32) {
    bytes[at..at + 4].copy_from_slice(&word.to_le_bytes());
}

#[test]
fn overlapping_arrays_are_rejected() {
    let layout = batch();
    let ty = common::ty(&layout, "batch");
    let value = common::wave(&layout, ty, "{a: [1, 2], b: [3]}");
    let mut bytes = encode(&layout, ty, &value).expect("encode").to_vec();
    validate(&bytes, &layout, ty, &Limits::default()).expect("valid before the attack");
    // Slot `b` (at body + 16) aimed at `a`'s block.
    let a_block = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    put(&mut bytes, 8 + 16, a_block);
    let err = validate(&bytes, &layout, ty, &Limits::default()).expect_err("aliasing");
    assert!(matches!(err.kind, ErrorKind::Overlap { .. }), "{err}");
}

#[test]
fn offsets_into_the_header_and_cycles_are_rejected() {
    let layout = batch();
    let node = common::ty(&layout, "node");
    // A node whose child array's SoA directory is aimed at the node itself.
    let value = common::wave(&layout, node, "{value: 1, next: [{value: 2, next: []}]}");
    let mut bytes = encode(&layout, node, &value).expect("encode").to_vec();
    put(&mut bytes, 8 + 8, 8);
    assert!(validate(&bytes, &layout, node, &Limits::default()).is_err());
    // The root aimed into the message header.
    let mut bytes = encode(&layout, node, &value).expect("encode").to_vec();
    put(&mut bytes, 4, 4);
    assert!(validate(&bytes, &layout, node, &Limits::default()).is_err());
}

#[test]
fn giant_lengths_are_rejected() {
    let layout = batch();
    let ty = common::ty(&layout, "batch");
    let value = common::wave(&layout, ty, "{a: [1], b: []}");
    let mut bytes = encode(&layout, ty, &value).expect("encode").to_vec();
    put(&mut bytes, 8 + 8, u32::MAX); // length
    put(&mut bytes, 8 + 12, u32::MAX); // capacity
    let err = validate(&bytes, &layout, ty, &Limits::default()).expect_err("giant");
    assert!(matches!(err.kind, ErrorKind::OutOfBounds { .. } | ErrorKind::VisitLimit { .. }), "{err}");
}

#[test]
fn deep_nesting_hits_the_depth_limit() {
    let layout = batch();
    let node = common::ty(&layout, "node");
    let mut text = String::from("{value: 0, next: []}");
    for i in 0..40 {
        text = format!("{{value: {i}, next: [{text}]}}");
    }
    let value = common::wave(&layout, node, &text);
    let bytes = encode(&layout, node, &value).expect("encode");
    validate(&bytes, &layout, node, &Limits::default()).expect("40 levels fit the default limit");
    let tight = Limits { max_depth: 20, ..Limits::default() };
    let err = validate(&bytes, &layout, node, &tight).expect_err("too deep");
    assert!(matches!(err.kind, ErrorKind::DepthLimit { .. }), "{err}");
    let small = Limits { max_visit: 1000, ..Limits::default() };
    let err = validate(&bytes, &layout, node, &small).expect_err("too much");
    assert!(matches!(err.kind, ErrorKind::VisitLimit { .. }), "{err}");
}

/// An SoA array whose directory lists no column reads every element as zero
/// values: 128 bytes can claim millions of elements. Validation charges the
/// columns it leaves out as if they were stored, so the visit limit holds.
#[test]
fn absent_soa_columns_count_against_the_visit_limit() {
    let schema = karmem_idl::load(
        "struct point (inline) { x: u32; y: u32; }\nstruct shape (dynamic) { points: []point; }\n",
        "absent.km",
    )
    .unwrap();
    let layout = Layout::new(&schema).unwrap();
    let root = layout.named("shape").unwrap();
    let message = |length: u32| {
        let mut m = vec![0u8; 0x80];
        put(&mut m, 0, 0x0C);
        put(&mut m, 4, 8);
        put(&mut m, 8, 2 << 3); // a 16-byte body, all used: header and the slot
        put(&mut m, 12, 0x40); // the SoA directory
        put(&mut m, 16, length);
        put(&mut m, 20, length);
        put(&mut m, 0x40, 0); // no columns
        m
    };
    let limits = Limits { max_visit: 1 << 20, ..Limits::default() };
    // 1,000 points of two u32 columns: 8,000 bytes and 1,000 elements, in budget
    let small = decode(&layout, root, &message(1000), &limits).unwrap();
    assert_eq!(small.field("points").map(|p| matches!(p, karmem_format::Value::List(l) if l.len() == 1000)), Some(true));
    // 200,000 points: 1.6 MB of zero columns, over the 1 MiB budget
    let err = validate(&message(200_000), &layout, root, &limits).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::VisitLimit { .. }), "{err}");
}

/// Offsets of 0 are empty structs, stored in no bytes: every field reads as
/// its zero value, and a field that is a dynamic struct with a fixed array
/// expands to it. Validation charges the whole zero value, nested, so 4 KB
/// of offsets cannot stand for 32 MB of zeros.
#[test]
fn zero_values_of_nested_dynamic_structs_count_against_the_visit_limit() {
    let schema = karmem_idl::load(
        "struct big (dynamic) { cells: [4096]u64; }\n\
         struct inner (dynamic) { b: big; }\n\
         struct outer (dynamic) { items: []inner #aos; }\n",
        "zeros.km",
    )
    .unwrap();
    let layout = Layout::new(&schema).unwrap();
    let root = layout.named("outer").unwrap();
    let message = |length: u32| {
        let block = (4 * length as usize).next_multiple_of(64);
        let mut m = vec![0u8; 0x40 + block];
        put(&mut m, 0, 0x0C);
        put(&mut m, 4, 8);
        put(&mut m, 8, 2 << 3); // a 16-byte body: header and the slot
        put(&mut m, 12, 0x40); // the block of offsets, all 0
        put(&mut m, 16, length);
        put(&mut m, 20, length);
        m
    };
    let limits = Limits { max_visit: 1 << 20, ..Limits::default() };
    // 8 empty structs: 8 × 32 KB of zeros, in budget
    assert!(validate(&message(8), &layout, root, &limits).is_ok());
    // 1,000: 32 MB of zeros from 4 KB of offsets
    let err = validate(&message(1000), &layout, root, &limits).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::VisitLimit { .. }), "{err}");
}
