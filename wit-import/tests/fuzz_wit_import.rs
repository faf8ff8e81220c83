//! The `wit_import` fuzz target (`fuzz/src/targets/wit_import.rs`) as an
//! ordinary test: the WIT fixtures, mutated with seeded edits and WIT words,
//! through loading, mapping and an overlay (no panics; whatever maps prints
//! as KarmemIDL that loads and is canonical). The same target runs under
//! libFuzzer with `cargo +nightly fuzz run wit_import`.

#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "the fuzz target checks its properties with panics, as under libFuzzer: a panic is a finding"
)]

#[path = "../../fuzz/src/targets/wit_import.rs"]
mod target;
#[path = "../../fuzz/src/mutate.rs"]
mod mutate;

use std::path::{Path, PathBuf};

use mutate::{Rng, mutate};

/// Every `.wit` file under `fixtures/`, with its overlay (after a NUL) when it has one.
fn fixture_inputs() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "wit") {
                let mut input = std::fs::read(&path).unwrap();
                if let Ok(overlay) = std::fs::read(path.with_extension("overlay")) {
                    input.push(0);
                    input.extend(overlay);
                }
                out.push(input);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures"), &mut out);
    out
}

#[test]
fn fixtures_hold_the_properties() {
    let inputs = fixture_inputs();
    assert!(inputs.len() > 20, "expected the WIT fixtures, found {}", inputs.len());
    for input in &inputs {
        target::run(input);
    }
}

#[test]
fn mutated_fixtures_hold_the_properties() {
    let inputs = fixture_inputs();
    let mut rng = Rng::new(0x317);
    for _ in 0..400 {
        let input = rng.pick(&inputs).unwrap();
        target::run(&mutate(&mut rng, input, target::TOKENS));
    }
}

#[test]
fn random_bytes_hold_the_properties() {
    let mut rng = Rng::new(11);
    for _ in 0..200 {
        let len = rng.below(120);
        target::run(&rng.bytes(len));
    }
}

/// `cargo test -p karmem-wit-import --test fuzz_wit_import -- --ignored`
/// writes the fixtures into `fuzz/corpus/wit_import` as libFuzzer's starting corpus.
#[test]
#[ignore = "writes the fuzz seed corpus"]
fn write_seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wit_import");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, input) in fixture_inputs().iter().enumerate() {
        std::fs::write(dir.join(format!("fixture-{i:03}")), input).unwrap();
    }
}

/// Found by the `wit_import` fuzz run: wit-parser accepts an enum listing the
/// same case twice; the mapping now refuses it naming the enum and the case.
#[test]
fn duplicate_enum_case_regression() {
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/wit_import/duplicate-enum-case.wit"),
    )
    .unwrap();
    target::run(&input);
}

/// Found by the `wit_import` fuzz run: wit-parser 0.254.2 panics (an `unwrap`
/// in its resolver) on this input; loading now reports an error instead.
#[test]
fn wit_parser_panic_regression() {
    let input = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/wit_import/wit-parser-unwrap-panic.wit"),
    )
    .unwrap();
    target::run(&input);
}
