//! Fuzz target: Karmem message validation and access (`karmem-format`).
//!
//! Input: one byte picking a schema and root type, then the message bytes.
//! Properties:
//! - `validate` never panics, whatever the bytes;
//! - whatever `validate` accepts, the dynamic codec decodes (an absent field
//!   without a default, `NoDefault`, is the one allowed refusal), checked
//!   access reads the same value, and the WAVE printer renders it;
//! - the decoded value encodes again, and that message validates and decodes
//!   to the same value.
//!
//! Owns: the check only; run by `fuzz_targets/format.rs` and
//! `format/tests/fuzz_format.rs`. (The format crate's own `format/fuzz` target
//! checks the first two properties on one schema.)

#![allow(dead_code, clippy::panic)]

use std::sync::OnceLock;

use karmem_format::value::{decode, encode, zero_value};
use karmem_format::{ErrorKind, Layout, Limits, TypeId, access, validate};

/// The schemas messages are checked against: every construct, and the paper's.
const SCHEMAS: &[&str] = &[
    include_str!("../../../fixtures/idl/constructs.km"),
    include_str!("../../../fixtures/idl/paper-fig32.km"),
    include_str!("../../../fixtures/idl/paper-fig35.km"),
    include_str!("../../../fixtures/idl/paper-fig13.km"),
    include_str!("../../../fixtures/idl/paper-fig10.km"),
];

/// Tight enough that hostile inputs stay fast, loose enough for real messages.
pub const LIMITS: Limits = Limits { max_depth: 32, max_visit: 1 << 20, max_columns: 64 };

/// Every (layout, root) pair the first input byte can pick.
pub fn roots() -> &'static [(Layout, TypeId)] {
    static ROOTS: OnceLock<Vec<(Layout, TypeId)>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = Vec::new();
        for source in SCHEMAS {
            let Ok(schema) = karmem_idl::load(source, "schema.km") else { continue };
            let Ok(layout) = Layout::new(&schema) else { continue };
            for (_, id) in layout.named_items() {
                // One layout per root keeps the pair owned; the layouts are small.
                if let Ok(copy) = Layout::new(&schema) {
                    roots.push((copy, id));
                }
            }
        }
        roots
    })
}

/// Checks one input; whether `validate` accepted the message.
pub fn run(data: &[u8]) -> bool {
    let Some((&pick, bytes)) = data.split_first() else { return false };
    let roots = roots();
    let Some((layout, root)) = roots.get(pick as usize % roots.len().max(1)) else { return false };
    check(layout, *root, bytes)
}

/// Checks one message; whether `validate` accepted it.
pub fn check(layout: &Layout, root: TypeId, bytes: &[u8]) -> bool {
    if validate(bytes, layout, root, &LIMITS).is_err() {
        return false;
    }
    let value = match decode(layout, root, bytes, &LIMITS) {
        Ok(value) => value,
        Err(e) if e.kind == ErrorKind::NoDefault => return true,
        Err(e) => panic!("a validated message fails to decode: {e}"),
    };
    let view = match access(bytes, layout, root, &LIMITS) {
        Ok(view) => view,
        Err(e) => panic!("a validated message fails checked access: {e}"),
    };
    match view.to_value() {
        Ok(read) => assert!(read.bit_eq(&value), "access and decode disagree:\n  access {read:?}\n  decode {value:?}"),
        Err(e) if e.kind == ErrorKind::NoDefault => {}
        Err(e) => panic!("a validated message fails to read through access: {e}"),
    }
    let _ = view.to_wave();

    let encoded = match encode(layout, root, &value) {
        Ok(encoded) => encoded,
        Err(e) => panic!("a decoded value does not encode: {e}\n  value {value:?}"),
    };
    if let Err(e) = validate(&encoded, layout, root, &LIMITS) {
        // A message at the limits can grow when re-encoded (defaults written out).
        if matches!(e.kind, ErrorKind::DepthLimit { .. } | ErrorKind::VisitLimit { .. }) {
            return true;
        }
        panic!("a re-encoded message does not validate: {e}\n  value {value:?}");
    }
    match decode(layout, root, &encoded, &LIMITS) {
        Ok(again) => assert!(again.bit_eq(&value), "re-encoding changed the value:\n  before {value:?}\n  after  {again:?}"),
        Err(e) => panic!("a re-encoded message does not decode: {e}"),
    }
    true
}

/// Valid messages to start from: each root's zero value, encoded, with its
/// pick byte in front.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (pick, (layout, root)) in roots().iter().enumerate() {
        let Ok(value) = zero_value(layout, *root, 0, 0) else { continue };
        let Ok(encoded) = encode(layout, *root, &value) else { continue };
        let mut seed = vec![pick as u8];
        seed.extend_from_slice(&encoded);
        seeds.push(seed);
    }
    seeds
}
