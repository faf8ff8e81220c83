//! Call overhead of a lowered component with the Karmem ABI against the same
//! component in wasmtime's component runtime, for a scalar call
//! (`basics.add`), a string call (`basics.shout`) and a `list<record>` call
//! (`basics.relabel`) of the `basics` fixture (`fixtures/components/
//! basics.core.wasm`, no WASI).
//!
//! What is measured, per call:
//! - component: `TypedFunc::call` with Rust values in and out
//!   (wasmtime lowers the arguments and lifts the results into Rust values);
//! - Karmem: copy a pre-encoded argument message into a guest buffer
//!   allocated once with `KarmemAlloc`, call `basics.<fn>(ptr, len)`, and
//!   take the result message as a byte slice of guest memory (a host reads it
//!   in place through `karmem-format`'s views; decoding to owned values is
//!   not part of the ABI's overhead).
//!
//! Both run on one `Engine` with the default configuration. Results are
//! written up as ratios in docs/BENCHMARKS.md; nothing here asserts timings.
//!
//! Before and after: with `KARMEM_BENCH_BASELINE=DIR`, `DIR/basics.core.wasm`
//! is a lowering of the same component made by another build of
//! karmem-bridge (`karmem-bridge lower --abi karmem`, e.g. a commit before a
//! change); it runs beside the current lowering in every group, and an
//! interleaved comparison (each round calls both once) prints min and median
//! per call with the ratio current / baseline. `scripts/bench-baseline.sh`
//! makes such a directory from a git revision.

#![allow(
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark: a failed setup aborts the run, and it slices only buffers it sized itself"
)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use karmem_adapters::abi::{Options, World, karmem_abi};
use karmem_format::Value;
use karmem_format::layout::Layout;
use wasmtime::component::{Component, ComponentType, Lift, Linker as CLinker, Lower};
use wasmtime::{Engine, Instance, Linker, Memory, Module, Store, TypedFunc};

#[derive(ComponentType, Lift, Lower, Clone, Debug)]
#[component(record)]
struct Point {
    x: i32,
    y: i32,
    label: String,
}

fn component_bytes() -> Vec<u8> {
    let path = karmem_tests::fixtures::fixtures_dir().join("components/basics.core.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

struct Karmem {
    store: Store<()>,
    memory: Memory,
    instance: Instance,
    layout: Layout,
    buffer: i32,
}

impl Karmem {
    /// The component lowered by this build.
    fn new(engine: &Engine, component: &[u8]) -> Karmem {
        let canonical = karmem_core_lowering::lower(component, &karmem_core_lowering::Options::default())
            .unwrap_or_else(|e| panic!("lowering: {e:#}"));
        let world = World::from_component(component).unwrap_or_else(|e| panic!("world: {e:#}"));
        let bytes = karmem_abi(&canonical, &world, &Options::default()).unwrap_or_else(|e| panic!("adapters: {e:#}"));
        Karmem::from_lowered(engine, &world, &bytes)
    }

    /// A lowering of the component whose world is `world`, made elsewhere
    /// (the baseline build).
    fn from_lowered(engine: &Engine, world: &World, bytes: &[u8]) -> Karmem {
        let layout = Layout::new(&world.schema).unwrap_or_else(|e| panic!("layout: {e}"));
        let module = Module::new(engine, bytes).unwrap_or_else(|e| panic!("compile: {e:#}"));
        let mut linker: Linker<()> = Linker::new(engine);
        linker
            .func_wrap("karmem:host", "log", |_: i32, _: i32| -> i64 { 0 })
            .unwrap_or_else(|e| panic!("{e:#}"));
        let mut store = Store::new(engine, ());
        let instance = linker.instantiate(&mut store, &module).unwrap_or_else(|e| panic!("{e:#}"));
        let memory = instance.get_memory(&mut store, "memory").unwrap_or_else(|| panic!("memory"));
        let init: TypedFunc<(), i64> = instance.get_typed_func(&mut store, "KarmemInit").unwrap_or_else(|e| panic!("{e:#}"));
        init.call(&mut store, ()).unwrap_or_else(|e| panic!("{e:#}"));
        let alloc: TypedFunc<(i32, i32), i32> =
            instance.get_typed_func(&mut store, "KarmemAlloc").unwrap_or_else(|e| panic!("{e:#}"));
        let buffer = alloc.call(&mut store, (1 << 16, 64)).unwrap_or_else(|e| panic!("{e:#}"));
        Karmem { store, memory, instance, layout, buffer }
    }

    fn message(&self, function: &str, args: Vec<(&str, Value)>) -> Vec<u8> {
        let args = Value::Record(args.into_iter().map(|(n, v)| (n.to_string(), v)).collect());
        karmem_format::value::encode_params(&self.layout, "basics", function, &args)
            .unwrap_or_else(|e| panic!("{e}"))
            .as_slice()
            .to_vec()
    }

    fn entry(&mut self, function: &str) -> TypedFunc<(i32, i32), i64> {
        self.instance
            .get_typed_func(&mut self.store, &format!("basics.{function}"))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// One call: message in, result message located.
    fn call(&mut self, entry: &TypedFunc<(i32, i32), i64>, message: &[u8]) -> usize {
        let at = self.buffer as usize;
        self.memory.data_mut(&mut self.store)[at..at + message.len()].copy_from_slice(message);
        let packed = entry.call(&mut self.store, (self.buffer, message.len() as i32)).unwrap_or_else(|e| panic!("{e:#}")) as u64;
        let (ptr, len) = ((packed & 0xFFFF_FFFF) as usize, (packed >> 32) as usize);
        let result = &self.memory.data(&self.store)[ptr..ptr + len];
        black_box(result).len()
    }
}

fn points(n: i32) -> Vec<Point> {
    (0..n).map(|i| Point { x: i, y: -i, label: format!("p{i}") }).collect()
}

fn point_values(n: i32) -> Value {
    Value::List(
        (0..n)
            .map(|i| {
                Value::Record(vec![
                    ("x".into(), Value::S32(i)),
                    ("y".into(), Value::S32(-i)),
                    ("label".into(), Value::String(format!("p{i}"))),
                ])
            })
            .collect(),
    )
}

fn bench(c: &mut Criterion) {
    let engine = Engine::default();
    let bytes = component_bytes();

    let component = Component::new(&engine, &bytes).unwrap_or_else(|e| panic!("{e:#}"));
    let mut clinker: CLinker<()> = CLinker::new(&engine);
    clinker
        .instance("karmem:fixtures/host")
        .and_then(|mut host| host.func_wrap("log", |_, (_line,): (String,)| Ok(())))
        .unwrap_or_else(|e| panic!("{e:#}"));
    clinker.define_unknown_imports_as_traps(&component).unwrap_or_else(|e| panic!("{e:#}"));
    let mut cstore = Store::new(&engine, ());
    let cinstance = clinker.instantiate(&mut cstore, &component).unwrap_or_else(|e| panic!("{e:#}"));
    let iface = cinstance.get_export_index(&mut cstore, None, "karmem:fixtures/basics").unwrap_or_else(|| panic!("basics"));
    let func = |store: &mut Store<()>, name: &str| {
        let index = cinstance.get_export_index(&mut *store, Some(&iface), name).unwrap_or_else(|| panic!("{name}"));
        cinstance.get_func(&mut *store, index).unwrap_or_else(|| panic!("{name}"))
    };
    let add = func(&mut cstore, "add").typed::<(u32, u32), (u32,)>(&cstore).unwrap_or_else(|e| panic!("{e:#}"));
    let shout = func(&mut cstore, "shout").typed::<(&str,), (String,)>(&cstore).unwrap_or_else(|e| panic!("{e:#}"));
    let relabel =
        func(&mut cstore, "relabel").typed::<(&[Point], &str), (Vec<Point>,)>(&cstore).unwrap_or_else(|e| panic!("{e:#}"));

    let mut karmem = Karmem::new(&engine, &bytes);
    let k_add = karmem.entry("add");
    let k_shout = karmem.entry("shout");
    let k_relabel = karmem.entry("relabel");
    let mut baseline = std::env::var_os("KARMEM_BENCH_BASELINE").map(|dir| {
        let path = std::path::Path::new(&dir).join("basics.core.wasm");
        let lowered = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let world = World::from_component(&bytes).unwrap_or_else(|e| panic!("world: {e:#}"));
        let mut base = Karmem::from_lowered(&engine, &world, &lowered);
        let entries = [base.entry("add"), base.entry("shout"), base.entry("relabel")];
        (base, entries)
    });
    let text = "grüße, world — a string of some length for the transcoders";
    let add_msg = karmem.message("add", vec![("a", Value::U32(40)), ("b", Value::U32(2))]);
    let shout_msg = karmem.message("shout", vec![("text", Value::String(text.into()))]);
    let list = points(64);
    let relabel_msg =
        karmem.message("relabel", vec![("points", point_values(64)), ("suffix", Value::String("-x".into()))]);

    let mut group = c.benchmark_group("scalar add(u32, u32) -> u32");
    group.bench_function("component", |b| {
        b.iter(|| {
            add.call(&mut cstore, (black_box(40), 2)).unwrap_or_else(|e| panic!("{e:#}"))
        })
    });
    group.bench_function("karmem", |b| b.iter(|| karmem.call(&k_add, black_box(&add_msg))));
    if let Some((base, [entry, _, _])) = &mut baseline {
        group.bench_function("karmem (baseline)", |b| b.iter(|| base.call(entry, black_box(&add_msg))));
    }
    group.finish();

    let mut group = c.benchmark_group("string shout(string) -> string");
    group.bench_function("component", |b| {
        b.iter(|| {
            shout.call(&mut cstore, (black_box(text),)).unwrap_or_else(|e| panic!("{e:#}"))
        })
    });
    group.bench_function("karmem", |b| b.iter(|| karmem.call(&k_shout, black_box(&shout_msg))));
    if let Some((base, [_, entry, _])) = &mut baseline {
        group.bench_function("karmem (baseline)", |b| b.iter(|| base.call(entry, black_box(&shout_msg))));
    }
    group.finish();

    let mut group = c.benchmark_group("list<record> relabel(64 points, string) -> list<record>");
    group.bench_function("component", |b| {
        b.iter(|| {
            relabel.call(&mut cstore, (black_box(&list), "-x")).unwrap_or_else(|e| panic!("{e:#}"))
        })
    });
    group.bench_function("karmem", |b| b.iter(|| karmem.call(&k_relabel, black_box(&relabel_msg))));
    if let Some((base, [_, _, entry])) = &mut baseline {
        group.bench_function("karmem (baseline)", |b| b.iter(|| base.call(entry, black_box(&relabel_msg))));
    }
    group.finish();

    if let Some((base, [b_add, b_shout, b_relabel])) = &mut baseline {
        println!("interleaved, {INTERLEAVED_ROUNDS} rounds of {CALLS_PER_ROUND} calls each: min / median ns per call, current / baseline");
        let calls = [
            ("add", &k_add, &*b_add, &add_msg),
            ("shout", &k_shout, &*b_shout, &shout_msg),
            ("relabel", &k_relabel, &*b_relabel, &relabel_msg),
        ];
        for (name, current_entry, base_entry, message) in calls {
            let mut current = Vec::with_capacity(INTERLEAVED_ROUNDS);
            let mut before = Vec::with_capacity(INTERLEAVED_ROUNDS);
            for _ in 0..INTERLEAVED_ROUNDS {
                current.push(per_call(|| karmem.call(current_entry, black_box(message))));
                before.push(per_call(|| base.call(base_entry, black_box(message))));
            }
            let (c_min, c_median) = min_median(&mut current);
            let (b_min, b_median) = min_median(&mut before);
            println!(
                "  {name:<8} current {c_min:>9.1} / {c_median:>9.1}   baseline {b_min:>9.1} / {b_median:>9.1}   {:.3}x / {:.3}x",
                c_min / b_min,
                c_median / b_median
            );
        }
    }
}

/// Rounds of the interleaved comparison; each times [`CALLS_PER_ROUND`] calls
/// of the current lowering, then as many of the baseline.
const INTERLEAVED_ROUNDS: usize = 300;
const CALLS_PER_ROUND: usize = 200;

/// Nanoseconds per call over [`CALLS_PER_ROUND`] calls.
fn per_call(mut call: impl FnMut() -> usize) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..CALLS_PER_ROUND {
        black_box(call());
    }
    start.elapsed().as_secs_f64() * 1e9 / CALLS_PER_ROUND as f64
}

fn min_median(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    (times.first().copied().unwrap_or(f64::NAN), times.get(times.len() / 2).copied().unwrap_or(f64::NAN))
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
