//! The `format` fuzz target (`fuzz/src/targets/format.rs`) as an ordinary
//! test: seeded random and mutated messages against the fixture schemas
//! (validate never panics; what it accepts decodes, reads through checked
//! access alike, and re-encodes to the same value). The same target runs
//! under libFuzzer with `cargo +nightly fuzz run format`.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "the fuzz target checks its properties with panics, as under libFuzzer: a panic is a finding"
)]

#[path = "../../fuzz/src/targets/format.rs"]
mod target;
#[path = "../../fuzz/src/mutate.rs"]
mod mutate;

use std::path::Path;

use mutate::{Rng, mutate};

#[test]
fn every_fixture_root_has_a_seed_that_round_trips() {
    assert!(target::roots().len() > 20, "expected the fixture schemas' roots, found {}", target::roots().len());
    let seeds = target::seeds();
    assert!(seeds.len() > 10, "only {} roots have an encodable zero value", seeds.len());
    for seed in &seeds {
        assert!(target::run(seed), "a seed does not validate: {seed:?}");
    }
}

#[test]
fn mutated_messages_hold_the_properties() {
    let seeds = target::seeds();
    let mut rng = Rng::new(0xf0_2a47);
    let mut accepted = 0;
    for _ in 0..600 {
        let seed = rng.pick(&seeds).unwrap();
        let (pick, message) = seed.split_first().unwrap();
        let mut input = vec![*pick];
        input.extend(mutate(&mut rng, message, &[]));
        accepted += usize::from(target::run(&input));
    }
    // Enough mutants must get past validation for the later checks to matter.
    assert!(accepted > 50, "only {accepted} of 600 mutated messages validated");
}

#[test]
fn random_bytes_hold_the_properties() {
    let mut rng = Rng::new(3);
    for _ in 0..400 {
        let len = rng.below(160);
        target::run(&rng.bytes(len));
    }
}

/// `cargo test -p karmem-format --features schema --test fuzz_format -- --ignored`
/// writes the seeds into `fuzz/corpus/format` as libFuzzer's starting corpus.
#[test]
#[ignore = "writes the fuzz seed corpus"]
fn write_seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/format");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, seed) in target::seeds().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed).unwrap();
    }
}
