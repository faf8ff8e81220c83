//! What one memory of partitions costs (docs/LOWERING.md, "One memory:
//! partitions"), on the memory-heavy composition `fixtures/wat/churn.wat`:
//! two components, each sweeping 1 MiB of its own memory per round.
//!
//! - `component`: wasmtime's component runtime (the reference);
//! - `multi-memory`: lowered with `--multi-memory` (each instance keeps its
//!   own memory: no checks), on wasmtime with the component model off;
//! - `one-memory`: lowered by default: the worker's memory (the larger
//!   initial one) is the last partition, whose accesses cost nothing extra,
//!   the driver's is checked;
//! - `one-memory-worker-checked`: the worker given a quota, so the
//!   driver's partition is last and the worker's accesses are checked.
//!
//! `churn/*` calls the worker alone (so `one-memory` against
//! `one-memory-worker-checked` is the cost of the bounds checks on every
//! access), `run/*` the driver, which sweeps its own memory and then calls
//! the worker. After criterion, an interleaved
//! comparison (every path once per round) prints min and median ratios that
//! load on a shared machine cannot skew. Ratios are written up in docs/BENCHMARKS.md.

use std::hint::black_box;

use anyhow::{Context as _, Result};
use criterion::{Criterion, criterion_group, criterion_main};
use karmem_bridge::LowerOptions;
use karmem_format::Value;
use karmem_runtime::invoke::{Session, SessionOptions};
use karmem_runtime::{Runtime, RuntimeConfig};
use wasmtime::component::{Component, Linker, TypedFunc};

const ROUNDS: u32 = 4;

fn component() -> Result<Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/wat/churn.wat");
    wat::parse_file(path).context("failed to assemble fixtures/wat/churn.wat")
}

/// The owner name of the worker's memory, as `--memory-quota` takes it.
const WORKER: &str = "root/instance 0/core instance 0 (root/component 0/module 0)";

fn lowered(component: &[u8], multi_memory: bool, worker_checked: bool) -> Result<Vec<u8>> {
    let mut options = LowerOptions { multi_memory, ..LowerOptions::default() };
    if worker_checked {
        options.memory_quotas.insert(WORKER.to_string(), 64 << 20);
    }
    Ok(karmem_bridge::lower(component, &options)?.module)
}

struct Lowered {
    session: Session,
}

impl Lowered {
    fn new(runtime: &Runtime, bytes: &[u8]) -> Result<Self> {
        let mut session = Session::new(runtime, bytes, &SessionOptions::default())?;
        // the first call grows both memories to their working size
        session.invoke("root", "run", &rounds(1))?;
        Ok(Lowered { session })
    }

    fn call(&mut self, function: &str) -> Result<Value> {
        self.session.invoke("root", function, &rounds(ROUNDS))
    }
}

fn rounds(n: u32) -> Value {
    Value::Record(vec![("rounds".to_string(), Value::U32(n))])
}

struct Reference {
    store: wasmtime::Store<()>,
    run: TypedFunc<(u32,), (u32,)>,
    churn: TypedFunc<(u32,), (u32,)>,
}

impl Reference {
    fn new(bytes: &[u8]) -> Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config)?;
        let component = Component::new(&engine, bytes)?;
        let linker = Linker::<()>::new(&engine);
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &component)?;
        let run = instance.get_typed_func::<(u32,), (u32,)>(&mut store, "run")?;
        let churn = instance.get_typed_func::<(u32,), (u32,)>(&mut store, "churn")?;
        let mut reference = Reference { store, run, churn };
        reference.call("run", 1)?;
        Ok(reference)
    }

    fn call(&mut self, function: &str, rounds: u32) -> Result<u32> {
        let f = if function == "run" { self.run } else { self.churn };
        let (out,) = f.call(&mut self.store, (rounds,))?;
        Ok(out)
    }
}

fn bench(c: &mut Criterion) {
    if let Err(e) = run_benches(c) {
        eprintln!("churn benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

fn run_benches(c: &mut Criterion) -> Result<()> {
    let bytes = component()?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let mut reference = Reference::new(&bytes)?;
    let mut paths = vec![
        ("multi-memory", Lowered::new(&runtime, &lowered(&bytes, true, false)?)?),
        ("one-memory", Lowered::new(&runtime, &lowered(&bytes, false, false)?)?),
        ("one-memory-worker-checked", Lowered::new(&runtime, &lowered(&bytes, false, true)?)?),
    ];
    // Values are checked against the reference by the differential tests
    // (adapters/tests/differential.rs); memory keeps changing between calls,
    // so the checksums here differ call by call.
    for function in ["churn", "run"] {
        let mut group = c.benchmark_group(function);
        group.sample_size(20);
        group.bench_function("component", |b| b.iter(|| black_box(reference.call(function, ROUNDS))));
        for (name, path) in &mut paths {
            group.bench_function(*name, |b| b.iter(|| black_box(path.call(function))));
        }
        group.finish();
    }
    interleaved(&mut reference, &mut paths)
}

/// Rounds of the interleaved comparison: each round calls every path once.
const INTERLEAVED_ROUNDS: usize = 200;

/// Criterion measures one path after another, so load that comes and goes
/// (other jobs on a shared machine) lands on some paths and not others.
/// Here every round calls each path once, in turn, and the minimum and the
/// median per path are printed with their ratios to multi-memory: the
/// minimum is the least disturbed call, what the code costs.
fn interleaved(reference: &mut Reference, paths: &mut [(&str, Lowered)]) -> Result<()> {
    for function in ["churn", "run"] {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); paths.len() + 1];
        for _ in 0..INTERLEAVED_ROUNDS {
            let start = std::time::Instant::now();
            black_box(reference.call(function, ROUNDS)?);
            if let Some(t) = times.first_mut() {
                t.push(start.elapsed().as_secs_f64());
            }
            for (i, (_, path)) in paths.iter_mut().enumerate() {
                let start = std::time::Instant::now();
                black_box(path.call(function)?);
                if let Some(t) = times.get_mut(i + 1) {
                    t.push(start.elapsed().as_secs_f64());
                }
            }
        }
        let names: Vec<&str> = std::iter::once("component").chain(paths.iter().map(|(n, _)| *n)).collect();
        let stats: Vec<(f64, f64)> = times
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                (t.first().copied().unwrap_or(f64::NAN), t.get(t.len() / 2).copied().unwrap_or(f64::NAN))
            })
            .collect();
        let (multi_min, multi_median) = names
            .iter()
            .position(|n| *n == "multi-memory")
            .and_then(|i| stats.get(i).copied())
            .unwrap_or((f64::NAN, f64::NAN));
        println!("interleaved {function}({ROUNDS}), {INTERLEAVED_ROUNDS} rounds: min / median, ratio to multi-memory");
        for (name, (min, median)) in names.iter().zip(&stats) {
            println!(
                "  {name:<28} {:>8.3} ms / {:>8.3} ms   {:.3}x / {:.3}x",
                min * 1e3,
                median * 1e3,
                min / multi_min,
                median / multi_median
            );
        }
    }
    Ok(())
}

criterion_group!(benches, bench);
criterion_main!(benches);
