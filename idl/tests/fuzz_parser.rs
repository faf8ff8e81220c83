//! The `idl` fuzz target (`fuzz/src/targets/idl.rs`) as an ordinary test:
//! seeded random text and mutated fixture files through the parser, resolver
//! and printer (no panics, `fmt` idempotent, formatting keeps the schema).
//! The same target runs under libFuzzer with `cargo +nightly fuzz run idl`.

#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "the fuzz target checks its properties with panics, as under libFuzzer: a panic is a finding"
)]

#[path = "../../fuzz/src/targets/idl.rs"]
mod target;
#[path = "../../fuzz/src/mutate.rs"]
mod mutate;

use std::path::{Path, PathBuf};

use mutate::{Rng, mutate};

fn fixture_sources() -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "km") {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures"), &mut out);
    out
}

#[test]
fn fixtures_hold_the_properties() {
    let fixtures = fixture_sources();
    assert!(fixtures.len() > 10, "expected the IDL fixtures, found {}", fixtures.len());
    for (_, bytes) in &fixtures {
        target::run(bytes);
    }
}

#[test]
fn mutated_fixtures_hold_the_properties() {
    let fixtures = fixture_sources();
    let mut rng = Rng::new(0x1d1_f022);
    for _ in 0..600 {
        let (_, bytes) = rng.pick(&fixtures).unwrap();
        let input = mutate(&mut rng, bytes, target::TOKENS);
        target::run(&input);
    }
}

#[test]
fn random_token_soup_holds_the_properties() {
    let mut rng = Rng::new(7);
    for _ in 0..300 {
        let mut input = Vec::new();
        for _ in 0..rng.below(40) {
            input.extend_from_slice(rng.pick(target::TOKENS).unwrap());
            if rng.below(3) == 0 {
                input.push(b' ');
            }
        }
        target::run(&input);
    }
}

#[test]
fn random_bytes_hold_the_properties() {
    let mut rng = Rng::new(99);
    for _ in 0..300 {
        let len = rng.below(200);
        target::run(&rng.bytes(len));
    }
}

/// `cargo test -p karmem-idl --test fuzz_parser -- --ignored` writes the
/// fixtures into `fuzz/corpus/idl` as libFuzzer's starting corpus.
#[test]
#[ignore = "writes the fuzz seed corpus"]
fn write_seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/idl");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (_, bytes)) in fixture_sources().iter().enumerate() {
        std::fs::write(dir.join(format!("fixture-{i:03}")), bytes).unwrap();
    }
}

/// Found by this target: `compat` compared named defaults with their spans,
/// so a comment added above a field reported a breaking default change.
#[test]
fn a_named_default_moved_by_a_comment_is_not_a_change() {
    let old = "enum level (u8) {\n    low = 1;\n}\n\nstruct s (dynamic) {\n    l: level = low;\n}\n";
    let new = format!("// A comment moves every span.\n{old}");
    let old = karmem_idl::load(old, "old.km").unwrap();
    let new = karmem_idl::load(&new, "new.km").unwrap();
    assert_eq!(karmem_idl::compat::compare(&old, &new), vec![]);
}
