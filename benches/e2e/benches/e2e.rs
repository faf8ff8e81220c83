//! The end-to-end benchmark (issue 9): every path at N = 10 and 10,000 in one
//! criterion run, after checking every path's result against the host's
//! reference. `cargo bench -p karmem-bench-e2e`; at the end it prints the
//! ratios against path (a) from the medians of this run (the table in
//! docs/BENCHMARKS.md, `## End to end`), and the module sizes.
//!
//! What each timed iteration includes is in the module docs of
//! `karmem_bench_e2e::{component, lowered, native, json}`; in short:
//! (a) lower the list + call + lift; (b) encode + copy in + call + copy the
//! result out + decode; (c) call on a message already in the shared region +
//! copy the result out + decode; (c+enc) the same plus encoding the message
//! into the region; (d) serialise JSON + copy in + parse and aggregate in the
//! guest + read back; (e) (c) on each of 8 consumers of one region.

use std::time::Duration;

use anyhow::Result;
use criterion::{BenchmarkId, Criterion, black_box};
use karmem_bench_e2e::{
    FANOUT_CONSUMERS, SIZES, check, component::ComponentPath, guest_bytes, json::JsonPath, lowered::LoweredPath,
    native::NativePath, readings, reference,
};
use karmem_runtime::{Runtime, RuntimeConfig};

struct Paths {
    a: ComponentPath,
    b: LoweredPath,
    c: NativePath,
    d: JsonPath,
    e: NativePath,
    sizes: Vec<(&'static str, usize)>,
}

fn setup() -> Result<Paths> {
    // The bulk-memory rewrite lets the Karmem-native guest take a read-only
    // window; the same runtime serves (b), (c), (d) and (e).
    let runtime = Runtime::new(RuntimeConfig { rewrite_bulk_memory: true, ..RuntimeConfig::default() })?;
    let component = guest_bytes("temperature-component.wasm")?;
    let lowered = karmem_bench_e2e::lowered::lower(&component)?;
    let karmem = guest_bytes("temperature-karmem.wasm")?;
    let json = guest_bytes("temperature-json.wasm")?;
    let sizes = vec![
        ("(a) component", component.len()),
        ("(b) lowered", lowered.len()),
        ("(c) karmem-native", karmem.len()),
        ("(d) json", json.len()),
    ];
    Ok(Paths {
        a: ComponentPath::new(&component)?,
        b: LoweredPath::new(&runtime, &lowered, 1 << 20)?,
        c: NativePath::new(&runtime, &karmem, 1)?,
        d: JsonPath::new(&runtime, &json)?,
        e: NativePath::new(&runtime, &karmem, FANOUT_CONSUMERS)?,
        sizes,
    })
}

/// Sets every path's data to `n` readings and checks every result.
fn prepare(p: &mut Paths, n: usize) -> Result<()> {
    let data = readings(n);
    let want = reference(&data);
    p.a.set_readings(&data);
    p.b.set_readings(&data);
    p.c.share(&data)?;
    p.d.set_readings(&data);
    p.e.share(&data)?;
    check("a", n, p.a.analyze()?, want)?;
    check("b", n, p.b.analyze()?, want)?;
    check("c", n, p.c.analyze(0)?, want)?;
    check("d", n, p.d.analyze()?, want)?;
    for k in 0..p.e.consumers() {
        check("e", n, p.e.analyze(k)?, want)?;
    }
    Ok(())
}

fn or_exit<T>(what: &str, r: Result<T>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            eprintln!("e2e bench: {what}: {e:#}");
            std::process::exit(1);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut p = or_exit("setup", setup());
    let mut group = c.benchmark_group("e2e");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for n in SIZES {
        or_exit("correctness check", prepare(&mut p, n));
        let data = readings(n);
        group.bench_function(BenchmarkId::new("a_component", n), |b| {
            b.iter(|| black_box(or_exit("a", p.a.analyze())))
        });
        group.bench_function(BenchmarkId::new("b_lowered", n), |b| {
            b.iter(|| black_box(or_exit("b", p.b.analyze())))
        });
        group.bench_function(BenchmarkId::new("c_native", n), |b| {
            b.iter(|| black_box(or_exit("c", p.c.analyze(0))))
        });
        group.bench_function(BenchmarkId::new("c_native_with_encode", n), |b| {
            b.iter(|| {
                or_exit("c+encode", p.c.share(&data));
                black_box(or_exit("c+encode", p.c.analyze(0)))
            })
        });
        group.bench_function(BenchmarkId::new("d_json", n), |b| {
            b.iter(|| black_box(or_exit("d", p.d.analyze())))
        });
        group.bench_function(BenchmarkId::new("e_fanout8", n), |b| {
            b.iter(|| {
                for k in 0..FANOUT_CONSUMERS {
                    black_box(or_exit("e", p.e.analyze(k)));
                }
            })
        });
    }
    group.finish();
    print_summary(&p.sizes);
}

/// Medians from criterion's files of this run (`target/criterion/e2e/*/new`).
fn median_ns(id: &str, n: usize) -> Option<f64> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = dir.join("criterion/e2e").join(id).join(n.to_string()).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("median")?.get("point_estimate")?.as_f64()
}

fn print_summary(sizes: &[(&str, usize)]) {
    println!("\n## e2e summary (medians of this run)");
    for n in SIZES {
        let get = |id| median_ns(id, n);
        let Some(a) = get("a_component") else {
            println!("n = {n}: no median for a_component (filtered out?)");
            continue;
        };
        println!("n = {n}:");
        println!("| path | ns per call | ratio to (a) |");
        println!("|---|---:|---:|");
        for (id, label, per) in [
            ("a_component", "(a) component model", 1.0),
            ("b_lowered", "(b) lowered, Karmem ABI", 1.0),
            ("c_native", "(c) Karmem-native, shared", 1.0),
            ("c_native_with_encode", "(c) + host encode", 1.0),
            ("d_json", "(d) JSON", 1.0),
            ("e_fanout8", "(e) fanout, all 8 consumers", 1.0),
            ("e_fanout8", "(e) fanout, per consumer", FANOUT_CONSUMERS as f64),
        ] {
            if let Some(t) = get(id) {
                let t = t / per;
                println!("| {label} | {t:.0} | {:.3} |", t / a);
            }
        }
        if let (Some(b), Some(c), Some(e)) = (get("b_lowered"), get("c_native"), get("e_fanout8")) {
            let e1 = e / FANOUT_CONSUMERS as f64;
            println!(
                "goals: (a)/(c) = {:.1}x (want >= 10 at 10,000); (b)/(a) = {:.2} (want <= 1.5); (e) per consumer / (c) = {:.2} (want < 1.2)",
                a / c,
                b / a,
                e1 / c
            );
        }
    }
    println!("module sizes:");
    for (label, bytes) in sizes {
        println!("- {label}: {bytes} bytes");
    }
}

criterion::criterion_group!(benches, bench);
criterion::criterion_main!(benches);
