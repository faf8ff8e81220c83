//! Where `lower`'s time goes on one component: `cargo run --release -p
//! karmem-core-lowering --example phase_times -- FILE.wasm`. Prints the wall
//! time of each phase (best of 3). A measurement tool, not a test.

use std::time::Instant;

use anyhow::{Context, Result};
use karmem_core_lowering::{inline, link, merge, parse, Options};

fn main() -> Result<()> {
    let path = std::env::args().nth(1).context("usage: phase_times FILE.wasm")?;
    let bytes = std::fs::read(&path).with_context(|| format!("failed to read `{path}`"))?;
    let options = Options::default();
    let mut best = [f64::MAX; 5];
    for _ in 0..3 {
        let mut t = Instant::now();
        let mut lap = |slot: usize, best: &mut [f64; 5]| {
            let e = t.elapsed().as_secs_f64();
            if let Some(b) = best.get_mut(slot) {
                *b = b.min(e);
            }
            t = Instant::now();
        };
        let parsed = parse::parse(&bytes)?;
        lap(0, &mut best);
        let (graph, infos) = inline::Inliner::new(&parsed).run()?;
        lap(1, &mut best);
        let merged = merge::merge(&parsed, &graph, &infos, &options)?;
        lap(2, &mut best);
        let (out, _) = link::link(&merged, &graph, "")?;
        lap(3, &mut best);
        wasmparser::Validator::new_with_features(karmem_core_lowering::output_features(&options)).validate_all(&out)?;
        lap(4, &mut best);
    }
    for (name, b) in ["parse+validate", "inline", "merge", "link", "validate output"].iter().zip(best) {
        println!("{name:>16}: {b:.3} s");
    }
    Ok(())
}
