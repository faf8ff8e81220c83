//! Deterministic input generation for the fuzz targets' ordinary tests: a
//! seeded generator and a few byte-level mutators (libFuzzer does its own
//! mutation in real runs; this is only so `cargo test` exercises each target
//! the same way every time).
//!
//! Owns: nothing but these helpers. Compiled into the `karmem-fuzz` crate and,
//! through `#[path]`, into each crate's `tests/*fuzz*.rs`.

#![allow(dead_code)]

/// splitmix64: small, fast, and the same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is `0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len()))
    }
}

/// Bytes that make interesting integers when they land in a length or offset.
const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x40, 0x10];

/// `input` with one to four random edits; `tokens` are spliced in by some.
pub fn mutate(rng: &mut Rng, input: &[u8], tokens: &[&[u8]]) -> Vec<u8> {
    let mut out = input.to_vec();
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let at = rng.below(len);
                if let Some(b) = out.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 if len > 0 => {
                let at = rng.below(len);
                let value = INTERESTING.get(rng.below(INTERESTING.len())).copied().unwrap_or(0);
                if let Some(b) = out.get_mut(at) {
                    *b = value;
                }
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at..end);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                let copy: Vec<u8> = out.get(at..end).map(<[u8]>::to_vec).unwrap_or_default();
                let to = rng.below(len + 1);
                out.splice(to..to, copy);
            }
            4 if !tokens.is_empty() => {
                let token = tokens.get(rng.below(tokens.len())).copied().unwrap_or(b"");
                let to = rng.below(len + 1);
                out.splice(to..to, token.iter().copied());
            }
            5 if len > 0 => out.truncate(rng.below(len)),
            6 if len > 4 => {
                // A little-endian u32 that is huge, zero or just past the end.
                let at = rng.below(len - 3);
                let word = match rng.below(3) {
                    0 => u32::MAX,
                    1 => len as u32,
                    _ => rng.next_u64() as u32,
                };
                if let Some(slot) = out.get_mut(at..at + 4) {
                    slot.copy_from_slice(&word.to_le_bytes());
                }
            }
            _ => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(8);
                let extra = rng.bytes(count);
                out.splice(at..at, extra);
            }
        }
    }
    out
}
