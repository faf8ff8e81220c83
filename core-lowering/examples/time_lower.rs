//! Time `lower` on one component: `cargo run --release -p karmem-core-lowering
//! --example time_lower -- FILE.wasm [RUNS]`. Prints the input size, the
//! output size and the best and median wall time of RUNS runs (default 5).
//! A measurement tool, not a test: nothing here asserts a time.

use std::time::Instant;

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().context("usage: time_lower FILE.wasm [RUNS]")?;
    let runs: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(5).max(1);
    let bytes = std::fs::read(&path).with_context(|| format!("failed to read `{path}`"))?;
    let mut times = Vec::new();
    let mut out_len = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let out = karmem_core_lowering::lower(&bytes, &karmem_core_lowering::Options::default())?;
        times.push(start.elapsed().as_secs_f64());
        out_len = out.len();
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    let best = times.first().copied().unwrap_or_default();
    println!("{path}: {} bytes in, {out_len} bytes out, best {best:.3} s, median {median:.3} s over {runs} runs", bytes.len());
    Ok(())
}
