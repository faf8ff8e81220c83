//! The `lowering` fuzz target (`fuzz/src/targets/lowering.rs`) as an ordinary
//! test: wasm-smith modules (seeded random bytes) shaped like small WIT worlds
//! and wrapped as components, and fixture components with seeded byte edits,
//! through `lower`, `inspect` and the WIT reader (no panics, no internal
//! errors). The same target runs under libFuzzer with
//! `cargo +nightly fuzz run lowering`.

#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "the fuzz target checks its properties with panics, as under libFuzzer: a panic is a finding"
)]

#[path = "../../fuzz/src/targets/lowering.rs"]
mod target;
#[path = "../../fuzz/src/mutate.rs"]
mod mutate;

use std::path::Path;

use mutate::Rng;
use target::Outcome;

#[test]
fn fixtures_lower() {
    for fixture in target::fixtures() {
        target::check(fixture);
    }
}

#[test]
fn smith_modules_wrapped_as_components() {
    let mut rng = Rng::new(0x5317);
    let mut lowered = 0;
    for i in 0..300u32 {
        // Even first bytes pick a world shape; the rest drives wasm-smith.
        let mut input = vec![(i as u8 % 2) * 2];
        let len = 64 + rng.below(2048);
        input.extend(rng.bytes(len));
        if target::run(&input) == Outcome::Lowered {
            lowered += 1;
        }
    }
    assert!(lowered > 30, "only {lowered} of 300 generated components lowered");
}

#[test]
fn mutated_fixture_components() {
    let mut rng = Rng::new(0xf1c5);
    let fixtures = target::fixtures().len() as u32;
    let mut refused = 0;
    for i in 0..300u32 {
        // Odd first bytes pick a fixture; each 5 bytes after are one edit.
        let mut input = vec![(((i % fixtures) * 2) + 1) as u8];
        for _ in 0..1 + rng.below(4) {
            input.extend((rng.next_u64() as u32).to_le_bytes());
            input.push(rng.next_u64() as u8);
        }
        if target::run(&input) == Outcome::Refused {
            refused += 1;
        }
    }
    assert!(refused > 0, "no edit made a fixture invalid");
}

/// `cargo test -p karmem-core-lowering --test fuzz_lowering -- --ignored`
/// writes seeds into `fuzz/corpus/lowering`: each fixture unedited, and some
/// generated inputs that lower.
#[test]
#[ignore = "writes the fuzz seed corpus"]
fn write_seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/lowering");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..target::fixtures().len() {
        std::fs::write(dir.join(format!("fixture-{i:03}")), [(i * 2 + 1) as u8]).unwrap();
    }
    let mut rng = Rng::new(0x5eed);
    let mut written = 0;
    while written < 16 {
        let mut input = vec![(written % 2 * 2) as u8];
        let len = 256 + rng.below(2048);
        input.extend(rng.bytes(len));
        if target::run(&input) == Outcome::Lowered {
            std::fs::write(dir.join(format!("smith-{written:03}")), &input).unwrap();
            written += 1;
        }
    }
}
