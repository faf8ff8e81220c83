//! Benchmarks of `karmem-runtime`, reported as the ratios docs/BENCHMARKS.md
//! quotes (`## Runtime`):
//!
//! - `fanout_1mib/{shared,copy}/N`: delivering one 1 MiB message to N
//!   consumers (N = 1, 2, 4, 8). `shared`: the message already sits in a
//!   shared region (the producer wrote it once) and each consumer is called
//!   with its offset; `copy`: the host copies the message into each
//!   consumer's private memory, then makes the same call. The consumer's
//!   work is O(1) (it checks the first and last word), so the numbers are
//!   the cost of delivery, not of processing.
//! - `load/{compile,cached}`: `Module::new` against a cache hit (digest check
//!   plus `Module::deserialize_file`) for a synthetic module and, when
//!   present, the fixture `fixtures/components/basics.core.wasm`.
//!
//! Every timed closure also records its per-iteration time, so the ratios
//! printed at the end come from the same run as criterion's report.
//!
//! Run: `cargo bench -p karmem-runtime --bench runtime`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use criterion::{BenchmarkId, Criterion};
use karmem_runtime::{
    Access, CacheOutcome, Guest, GuestOptions, MemoryLayout, RegionPlacement, Runtime,
    RuntimeConfig, SharedRegion,
};

const MESSAGE_LEN: u32 = 1 << 20;
const WINDOW_OFFSET: u32 = 0x10000;
const CONSUMER_COUNTS: [usize; 4] = [1, 2, 4, 8];

const CONSUMER: &str = r#"
(module
  (memory (export "memory") 18)
  (func (export "produce") (param $ptr i32) (param $len i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (i64.store (i32.add (local.get $ptr) (local.get $i)) (i64.extend_i32_u (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $next))))
  ;; O(1) look at the message: first word plus last word.
  (func (export "consume") (param $ptr i32) (param $len i32) (result i64)
    (i64.add (i64.load (local.get $ptr))
             (i64.load (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.const 8))))))
"#;

/// Per-iteration nanoseconds of every measured batch, by benchmark id.
static RECORDS: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

fn timed(id: &str, iters: u64, mut body: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        body();
    }
    let elapsed = start.elapsed();
    if let Ok(mut records) = RECORDS.lock() {
        records
            .entry(id.to_owned())
            .or_default()
            .push(elapsed.as_nanos() as f64 / iters.max(1) as f64);
    }
    elapsed
}

fn median(id: &str) -> Option<f64> {
    let records = RECORDS.lock().ok()?;
    let mut values = records.get(id)?.clone();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// `consume(ptr, len) -> i64`, looked up once per consumer.
type Consume = wasmtime::TypedFunc<(i32, i32), i64>;

struct Fanout {
    consumers: Vec<(Guest, Consume)>,
}

impl Fanout {
    fn new(
        runtime: &Runtime,
        module: &karmem_runtime::LoadedModule,
        count: usize,
        shared: Option<&std::sync::Arc<SharedRegion>>,
    ) -> Result<Self> {
        let consumers = (0..count)
            .map(|_| {
                let layout = match shared {
                    Some(region) => MemoryLayout::new(vec![RegionPlacement::new(
                        region,
                        u64::from(WINDOW_OFFSET),
                        Access::Read,
                    )])?,
                    None => MemoryLayout::empty(),
                };
                let mut guest = runtime.instantiate(
                    module,
                    &GuestOptions {
                        layout,
                        ..GuestOptions::default()
                    },
                )?;
                let consume = guest.typed_func::<(i32, i32), i64>("consume")?;
                Ok((guest, consume))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Fanout { consumers })
    }

    fn deliver_shared(&mut self) -> Result<i64> {
        let mut sum = 0i64;
        for (guest, consume) in &mut self.consumers {
            sum = sum.wrapping_add(guest.call_typed(
                "consume",
                consume,
                (WINDOW_OFFSET as i32, MESSAGE_LEN as i32),
            )?);
        }
        Ok(sum)
    }

    fn deliver_copies(&mut self, message: &[u8]) -> Result<i64> {
        let mut sum = 0i64;
        for (guest, consume) in &mut self.consumers {
            guest.write_memory(u64::from(WINDOW_OFFSET), message)?;
            sum = sum.wrapping_add(guest.call_typed(
                "consume",
                consume,
                (WINDOW_OFFSET as i32, MESSAGE_LEN as i32),
            )?);
        }
        Ok(sum)
    }
}

fn bench_fanout(c: &mut Criterion) -> Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let module = runtime.load(&wat::parse_str(CONSUMER)?)?;
    let region = SharedRegion::new("message", MESSAGE_LEN / 0x10000)?;
    // The producer writes the message once, with its own stores.
    let mut producer = runtime.instantiate(
        &module,
        &GuestOptions {
            layout: MemoryLayout::new(vec![RegionPlacement::new(
                &region,
                u64::from(WINDOW_OFFSET),
                Access::ReadWrite,
            )])?,
            ..GuestOptions::default()
        },
    )?;
    producer.call(
        "produce",
        &[
            wasmtime::Val::I32(WINDOW_OFFSET as i32),
            wasmtime::Val::I32(MESSAGE_LEN as i32),
        ],
    )?;
    let mut message = vec![0u8; MESSAGE_LEN as usize];
    producer.read_memory(u64::from(WINDOW_OFFSET), &mut message)?;
    let expected = i64::from(MESSAGE_LEN - 8);

    let mut group = c.benchmark_group("fanout_1mib");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    for count in CONSUMER_COUNTS {
        let mut shared = Fanout::new(&runtime, &module, count, Some(&region))?;
        let mut copied = Fanout::new(&runtime, &module, count, None)?;
        // Both paths deliver the same message.
        anyhow::ensure!(
            shared.deliver_shared()? == expected * count as i64,
            "shared delivery is wrong"
        );
        anyhow::ensure!(
            copied.deliver_copies(&message)? == expected * count as i64,
            "copied delivery is wrong"
        );
        for (guest, _) in &shared.consumers {
            anyhow::ensure!(
                guest.host_bytes_written() == 0,
                "the shared path copied bytes"
            );
        }

        let id = format!("fanout_1mib/shared/{count}");
        group.bench_with_input(BenchmarkId::new("shared", count), &count, |b, _| {
            b.iter_custom(|iters| {
                timed(&id, iters, || {
                    let _ = black_box(shared.deliver_shared());
                })
            })
        });
        let id = format!("fanout_1mib/copy/{count}");
        group.bench_with_input(BenchmarkId::new("copy", count), &count, |b, _| {
            b.iter_custom(|iters| {
                timed(&id, iters, || {
                    let _ = black_box(copied.deliver_copies(&message));
                })
            })
        });
    }
    group.finish();
    Ok(())
}

/// A module with `functions` functions of loops, arithmetic, memory traffic
/// and calls, so compilation does realistic work.
fn synthetic_module(functions: usize) -> Result<Vec<u8>> {
    let mut wat = String::from("(module (memory (export \"memory\") 1)\n");
    for i in 0..functions {
        let callee = if i == 0 {
            String::new()
        } else {
            format!(
                "(local.set $acc (i32.add (local.get $acc) (call $f{} (local.get $acc) (i32.const {i}))))",
                i - 1
            )
        };
        writeln!(
            wat,
            r#"(func $f{i} (export "f{i}") (param $a i32) (param $b i32) (result i32)
  (local $i i32) (local $acc i32)
  (local.set $acc (i32.xor (local.get $a) (i32.const {salt})))
  (block $done (loop $next
    (br_if $done (i32.ge_u (local.get $i) (local.get $b)))
    (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (i32.rotl (local.get $i) (i32.const 3))))
    (i32.store (i32.and (local.get $acc) (i32.const 0xfffc)) (local.get $acc))
    (local.set $acc (i32.xor (local.get $acc) (i32.load (i32.and (i32.shr_u (local.get $acc) (i32.const 7)) (i32.const 0xfffc)))))
    (if (i32.eqz (i32.and (local.get $acc) (i32.const 1)))
      (then (local.set $acc (i32.div_u (local.get $acc) (i32.or (local.get $i) (i32.const 1)))))
      (else (local.set $acc (i32.rem_u (local.get $acc) (i32.const 1000003)))))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $next)))
  {callee}
  (local.get $acc))"#,
            salt = i * 7919
        )?;
    }
    wat.push(')');
    Ok(wat::parse_str(&wat)?)
}

/// The largest core module nested in a component (a wit-bindgen component's
/// main module), as standalone bytes.
fn largest_core_module(component: &[u8]) -> Option<Vec<u8>> {
    let mut largest: Option<&[u8]> = None;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let Ok(wasmparser::Payload::ModuleSection {
            unchecked_range, ..
        }) = payload
        {
            let bytes = component.get(unchecked_range)?;
            if largest.is_none_or(|l| bytes.len() > l.len()) {
                largest = Some(bytes);
            }
        }
    }
    largest.map(<[u8]>::to_vec)
}

fn bench_load(c: &mut Criterion) -> Result<Vec<String>> {
    let cache_dir = tempfile::tempdir()?;
    let compiler = Runtime::new(RuntimeConfig::default())?;
    let cached = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache_dir.path().to_owned()),
        ..RuntimeConfig::default()
    })?;
    let mut inputs = vec![("synthetic-400".to_owned(), synthetic_module(400)?)];
    // A real Rust guest: the main core module of a committed fixture component.
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/components/command.p2.wasm");
    match std::fs::read(&fixture)
        .ok()
        .and_then(|c| largest_core_module(&c))
    {
        Some(bytes) => inputs.push(("command.p2-main".to_owned(), bytes)),
        None => eprintln!(
            "note: `{}` not found or has no core module; skipped",
            fixture.display()
        ),
    }
    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let mut names = Vec::new();
    for (name, bytes) in inputs {
        if let Err(e) = cached.load(&bytes) {
            // A fixture that does not compile here is skipped, not fatal.
            eprintln!("note: `{name}` does not compile here, skipped: {e:#}");
            continue;
        }
        let outcome = cached.load(&bytes)?.cache_outcome().clone();
        anyhow::ensure!(
            outcome == CacheOutcome::Hit,
            "`{name}` is not served from the cache: {outcome:?}"
        );
        let id = format!("load/compile/{name}");
        group.bench_with_input(BenchmarkId::new("compile", &name), &bytes, |b, bytes| {
            b.iter_custom(|iters| {
                timed(&id, iters, || {
                    let _ = black_box(compiler.compile(bytes));
                })
            })
        });
        let id = format!("load/cached/{name}");
        group.bench_with_input(BenchmarkId::new("cached", &name), &bytes, |b, bytes| {
            b.iter_custom(|iters| {
                timed(&id, iters, || {
                    let _ = black_box(cached.load(bytes));
                })
            })
        });
        names.push(format!("{name} ({} KiB)", bytes.len() / 1024));
    }
    group.finish();
    Ok(names)
}

/// What the bulk-memory rewrite costs: a 1 MiB `memory.copy` (and fill) as
/// wasmtime's libcall against the rewrite (probes, then the same libcall).
/// After criterion's sequential groups, an interleaved run (each round one
/// call of each variant) gives min and median per call, so load that comes
/// and goes on a shared machine lands on both alike.
fn bench_bulk_rewrite(c: &mut Criterion) -> Result<Vec<String>> {
    let bytes = wat::parse_str(
        r#"(module (memory (export "memory") 40)
             (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))
             (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2))))"#,
    )?;
    let mut group = c.benchmark_group("bulk_1mib");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    let mut variants = Vec::new();
    for (variant, rewrite_bulk_memory) in [("native", false), ("rewritten", true)] {
        let runtime = Runtime::new(RuntimeConfig {
            rewrite_bulk_memory,
            ..RuntimeConfig::default()
        })?;
        let module = runtime.load(&bytes)?;
        anyhow::ensure!(module.facts().bulk_sites.is_empty() == rewrite_bulk_memory);
        let mut guest = runtime.instantiate(&module, &GuestOptions::default())?;
        let copy = guest.typed_func::<(i32, i32, i32), ()>("copy")?;
        let fill = guest.typed_func::<(i32, i32, i32), ()>("fill")?;
        for (op, func) in [("copy", &copy), ("fill", &fill)] {
            let args = bulk_args(op);
            let id = format!("bulk_1mib/{op}/{variant}");
            group.bench_function(BenchmarkId::new(op, variant), |b| {
                b.iter_custom(|iters| {
                    timed(&id, iters, || {
                        let _ = black_box(guest.call_typed(op, func, args));
                    })
                })
            });
        }
        variants.push((guest, copy, fill));
    }
    group.finish();

    const ROUNDS: usize = 2000;
    let mut lines = Vec::new();
    for op in ["copy", "fill"] {
        let args = bulk_args(op);
        let mut times = [Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS)];
        for _ in 0..ROUNDS {
            for ((guest, copy, fill), t) in variants.iter_mut().zip(times.iter_mut()) {
                let func = if op == "copy" { &*copy } else { &*fill };
                let start = Instant::now();
                let _ = black_box(guest.call_typed(op, func, args));
                t.push(start.elapsed().as_nanos() as f64);
            }
        }
        let [native, rewritten] = times.map(|mut t| {
            t.sort_by(f64::total_cmp);
            (
                t.first().copied().unwrap_or(f64::NAN),
                t.get(t.len() / 2).copied().unwrap_or(f64::NAN),
            )
        });
        lines.push(format!(
            "- 1 MiB `memory.{op}`, interleaved ({ROUNDS} rounds), min / median: native {:.1} / {:.1} µs, rewritten {:.1} / {:.1} µs: **{:.3}× / {:.3}×** (goal ≤ 1.1×)",
            native.0 / 1e3,
            native.1 / 1e3,
            rewritten.0 / 1e3,
            rewritten.1 / 1e3,
            rewritten.0 / native.0,
            rewritten.1 / native.1
        ));
    }
    Ok(lines)
}

/// `(dst, src or value, len)` of the 1 MiB bulk benchmark.
fn bulk_args(op: &str) -> (i32, i32, i32) {
    if op == "copy" {
        (0x10000, 0x120000, MESSAGE_LEN as i32)
    } else {
        (0x10000, 0x5a, MESSAGE_LEN as i32)
    }
}

fn summary(load_inputs: &[String], bulk_lines: &[String]) -> Result<String> {
    let mut out = String::new();
    let get = |id: &str| median(id).with_context(|| format!("no measurements for `{id}`"));
    // A filtered run (`cargo bench ... -- bulk`) measured only some groups.
    if median("fanout_1mib/shared/1").is_some() {
        writeln!(
            out,
            "| consumers | shared: ns per delivery round | copy: ns per delivery round |"
        )?;
        writeln!(out, "|---:|---:|---:|")?;
        for count in CONSUMER_COUNTS {
            writeln!(
                out,
                "| {count} | {:.0} | {:.0} |",
                get(&format!("fanout_1mib/shared/{count}"))?,
                get(&format!("fanout_1mib/copy/{count}"))?
            )?;
        }
        let shared_extra = (get("fanout_1mib/shared/8")? - get("fanout_1mib/shared/1")?) / 7.0;
        let copy_extra = (get("fanout_1mib/copy/8")? - get("fanout_1mib/copy/1")?) / 7.0;
        let one_copy = get("fanout_1mib/copy/1")? - get("fanout_1mib/shared/1")?;
        writeln!(out)?;
        writeln!(
            out,
            "- extra consumer, shared: {shared_extra:.0} ns; extra consumer, copy: {copy_extra:.0} ns; one 1 MiB copy: {one_copy:.0} ns"
        )?;
        writeln!(
            out,
            "- **extra shared consumer / one copy: {:.3}%** (goal < 2%); against the copy path's extra consumer: {:.3}%",
            100.0 * shared_extra / one_copy,
            100.0 * shared_extra / copy_extra
        )?;
    }
    for input in load_inputs {
        let name = input.split(' ').next().unwrap_or(input);
        let (Some(compile), Some(cached)) = (
            median(&format!("load/compile/{name}")),
            median(&format!("load/cached/{name}")),
        ) else {
            continue;
        };
        writeln!(
            out,
            "- load `{input}`: compile {:.2} ms, cached {:.1} µs, **{:.0}× faster** (goal ≥ 20×)",
            compile / 1e6,
            cached / 1e3,
            compile / cached
        )?;
    }
    for op in ["copy", "fill"] {
        let (Some(native), Some(rewritten)) = (
            median(&format!("bulk_1mib/{op}/native")),
            median(&format!("bulk_1mib/{op}/rewritten")),
        ) else {
            continue;
        };
        writeln!(
            out,
            "- 1 MiB `memory.{op}`, criterion medians: native {:.1} µs, rewritten {:.1} µs ({:.3}×)",
            native / 1e3,
            rewritten / 1e3,
            rewritten / native
        )?;
    }
    for line in bulk_lines {
        writeln!(out, "{line}")?;
    }
    Ok(out)
}

fn main() -> Result<()> {
    let mut criterion = Criterion::default().configure_from_args();
    bench_fanout(&mut criterion)?;
    let load_inputs = bench_load(&mut criterion)?;
    let bulk_lines = bench_bulk_rewrite(&mut criterion)?;
    criterion.final_summary();
    // `cargo test --benches` runs each benchmark once: no ratios then.
    if RECORDS
        .lock()
        .map(|r| r.values().all(|v| v.len() > 3))
        .unwrap_or(false)
    {
        println!("\n## karmem-runtime summary (medians of per-iteration times)\n");
        println!("{}", summary(&load_inputs, &bulk_lines)?);
    }
    Ok(())
}
