//! The typed reads generated code is built on (`karmem_format::typed`):
//! they agree with the dynamic decoder on valid messages, and random or
//! mutated bytes make them return errors, never panic or read out of bounds.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing,
    reason = "test code: a failed step fails the test, and it indexes data it built itself"
)]

mod common;

use common::random::Rng;
use karmem_format::typed::{self, Fixed, List, Read, Utf16};
use karmem_format::view::{Column, Message};
use karmem_format::{AlignedBuf, Builder};

type Nested<'a> = List<'a, List<'a, Option<Result<&'a str, u16>>>>;

/// Reads everything a root of the shape below holds, through typed reads.
fn read_all(bytes: &[u8]) -> String {
    let mut out = String::new();
    let Ok(msg) = Message::new(bytes) else { return out };
    let root = msg.root();
    let fields: [(&str, u32); 4] = [("nested", 0), ("fixed", 16), ("units", 48), ("column", 60)];
    for (name, off) in fields {
        let Some(at) = root.checked_add(off) else { continue };
        out.push_str(name);
        out.push_str(": ");
        let _ = match name {
            "nested" => typed::dump_result(&mut out, &<Nested<'_>>::read(msg, at)),
            "fixed" => typed::dump_result(&mut out, &<Fixed<'_, Option<u64>, 2>>::read(msg, at)),
            "units" => typed::dump_result(&mut out, &<Utf16<'_>>::read(msg, at)),
            _ => typed::dump_result(&mut out, &<Column<'_, f32>>::read(msg, at)),
        };
        out.push('\n');
    }
    out
}

/// Writes a root with the same shape through typed writes.
fn write_sample() -> AlignedBuf {
    use typed::Write;
    let mut b = Builder::new();
    let root = b.alloc_object(72).unwrap();
    b.set_root(root);
    let nested: &[&[Option<Result<&str, u16>>]] = &[&[Some(Ok("hé")), None], &[Some(Err(7))]];
    nested.write(&mut b, root).unwrap();
    [Some(1u64), None].write(&mut b, root + 16).unwrap();
    let units: &[u16] = &"a𝄞".encode_utf16().collect::<Vec<_>>();
    units.write(&mut b, root + 48).unwrap();
    let column: &[f32] = &[1.5, -2.0];
    column.write(&mut b, root + 60).unwrap();
    b.finish()
}

#[test]
fn typed_writes_read_back() {
    let bytes = write_sample();
    let text = read_all(&bytes);
    assert_eq!(
        text,
        "nested: [[some(ok(\"hé\")), none], [some(err(7))]]\nfixed: [some(1), none]\nunits: \"a𝄞\"\ncolumn: [1.5, -2.0]\n"
    );
    // Options of u64 are 16 bytes: the fixed array at +16 spans 32 bytes.
    assert_eq!(<Option<u64> as Read<'_>>::SIZE, 16);
    assert_eq!(<Result<u8, u32> as Read<'_>>::SIZE, 8);
    assert_eq!(<Result<u8, u32> as typed::Write>::SIZE, 8);
}

#[test]
fn random_and_mutated_bytes_are_errors_not_panics() {
    let mut rng = Rng(0xBAD5EED);
    let sample = write_sample().to_vec();
    for round in 0..3000 {
        let bytes: Vec<u8> = if round % 3 == 0 {
            (0..rng.below(300)).map(|_| rng.next() as u8).collect()
        } else {
            let mut m = sample.clone();
            for _ in 0..1 + rng.below(6) {
                let at = rng.below(m.len() as u64) as usize;
                m[at] = match rng.below(3) {
                    0 => m[at] ^ (1 << rng.below(8)),
                    1 => 0xFF,
                    _ => rng.next() as u8,
                };
            }
            m
        };
        let mut with_header = bytes.clone();
        if with_header.len() >= 8 {
            with_header[..4].copy_from_slice(&0x0Cu32.to_le_bytes());
        }
        // Any outcome but a panic is fine; a read never leaves the buffer.
        let _ = read_all(&bytes);
        let _ = read_all(&with_header);
    }
}
