//! The `adapters` fuzz target (`fuzz/src/targets/adapters.rs`) as an ordinary
//! test: seeded mutations of valid messages for the fixture schemas' roots,
//! in all three string encodings, through the generated reader and writer
//! (run in wasmi). Whatever the format accepts must go round unchanged. The
//! same target runs under libFuzzer with `cargo +nightly fuzz run adapters`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code: a failed step fails the test")]

#[path = "../../fuzz/src/targets/adapters.rs"]
mod target;
#[path = "../../fuzz/src/mutate.rs"]
mod mutate;

use std::path::Path;

use mutate::{Rng, mutate};

#[test]
fn zero_values_go_round() {
    assert!(target::roots().len() > 10, "only {} roots have transcoders", target::roots().len());
    let seeds = target::seeds();
    assert!(seeds.len() > 30, "only {} seeds", seeds.len());
    for seed in &seeds {
        assert!(target::run(seed), "a seed did not go round: {seed:?}");
    }
}

#[test]
fn mutated_messages_go_round() {
    let seeds = target::seeds();
    let mut rng = Rng::new(0xada_9732);
    let mut round = 0;
    for _ in 0..300 {
        let seed = rng.pick(&seeds).unwrap();
        let (pick, message) = seed.split_first().unwrap();
        let mut input = vec![*pick];
        input.extend(mutate(&mut rng, message, &[]));
        round += usize::from(target::run(&input));
    }
    assert!(round > 20, "only {round} of 300 mutated messages validated");
}

/// Found by the 2026-12-06 run: a 300-byte message whose SoA leaves its
/// columns out reads as 10,240 zero records; the rebuilt message spells
/// them out and exceeded the read limits (the oracle checks it with
/// `REBUILT_LIMITS` since). The validator now charges absent columns as if
/// they were stored (FORMAT.md §9), so at the target's limits the message
/// is refused before the transcoders see it; either way nothing may panic.
/// docs/HARDENING.md §3.
#[test]
fn a_message_with_absent_columns_is_refused_at_the_targets_limits() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/adapters/absent-columns-amplify.bin");
    let input = std::fs::read(path).unwrap();
    assert!(!target::run(&input), "the amplifying message passed the target's limits");
}

/// `cargo test -p karmem-adapters --test fuzz_adapters -- --ignored` writes
/// the seeds into `fuzz/corpus/adapters` as libFuzzer's starting corpus.
#[test]
#[ignore = "writes the fuzz seed corpus"]
fn write_seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/adapters");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, seed) in target::seeds().iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), seed).unwrap();
    }
}
