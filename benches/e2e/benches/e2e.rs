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
//! copy the result out + decode; (c+enc) the same plus building the message
//! in place in the region (and, for comparison, encoding it on the heap and
//! copying it in with one `pwrite`); (d) serialise JSON + copy in + parse and aggregate in the
//! guest + read back; (e) (c) on each of 8 consumers of one region.
//!
//! Before and after: with `KARMEM_BENCH_BASELINE=DIR`,
//! `DIR/temperature-component.wasm` is the same component lowered by another
//! build of karmem-bridge (`scripts/bench-baseline.sh REV` makes it); it runs
//! as path (b0) beside (b), and the summary prints (b) / (b0), plus an
//! interleaved comparison of the two (each round calls both; min and median).

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
    /// (b) as lowered by the baseline build, when one is given.
    b0: Option<LoweredPath>,
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
        b0: match std::env::var_os("KARMEM_BENCH_BASELINE") {
            Some(dir) => {
                let path = std::path::Path::new(&dir).join("temperature-component.wasm");
                let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                Some(LoweredPath::new(&runtime, &bytes, 1 << 20)?)
            }
            None => None,
        },
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
    if let Some(b0) = &mut p.b0 {
        b0.set_readings(&data);
        check("b0", n, b0.analyze()?, want)?;
    }
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
        if let Some(b0) = &mut p.b0 {
            group.bench_function(BenchmarkId::new("b0_lowered_baseline", n), |b| {
                b.iter(|| black_box(or_exit("b0", b0.analyze())))
            });
        }
        group.bench_function(BenchmarkId::new("c_native", n), |b| {
            b.iter(|| black_box(or_exit("c", p.c.analyze(0))))
        });
        group.bench_function(BenchmarkId::new("c_native_with_encode", n), |b| {
            b.iter(|| {
                or_exit("c+encode", p.c.build_in_place(&data));
                black_box(or_exit("c+encode", p.c.analyze(0)))
            })
        });
        group.bench_function(BenchmarkId::new("c_native_with_encode_and_write", n), |b| {
            b.iter(|| {
                or_exit("c+encode+write", p.c.share(&data));
                black_box(or_exit("c+encode+write", p.c.analyze(0)))
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
    or_exit("interleaved", interleaved(&mut p));
}

/// Rounds of the interleaved comparisons; each round times
/// [`CALLS_PER_ROUND`] calls of one path, then as many of the other.
const INTERLEAVED_ROUNDS: usize = 200;
const CALLS_PER_ROUND: usize = 20;

/// Min and median ns per call of `first` and `second`, timed in turn for
/// [`INTERLEAVED_ROUNDS`] rounds, so load that comes and goes on a shared
/// machine lands on both alike.
fn in_turn(
    mut first: impl FnMut() -> Result<()>,
    mut second: impl FnMut() -> Result<()>,
) -> Result<((f64, f64), (f64, f64))> {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..INTERLEAVED_ROUNDS {
        for (f, times) in [(&mut first as &mut dyn FnMut() -> Result<()>, &mut a), (&mut second, &mut b)] {
            let start = std::time::Instant::now();
            for _ in 0..CALLS_PER_ROUND {
                f()?;
            }
            times.push(start.elapsed().as_secs_f64() * 1e9 / CALLS_PER_ROUND as f64);
        }
    }
    let stat = |t: &mut Vec<f64>| {
        t.sort_by(f64::total_cmp);
        (t.first().copied().unwrap_or(f64::NAN), t.get(t.len() / 2).copied().unwrap_or(f64::NAN))
    };
    Ok((stat(&mut a), stat(&mut b)))
}

/// (c) against (c) + host encode in place, and (b) against the baseline's
/// (b0) when one is given: interleaved, min / median ns per call.
fn interleaved(p: &mut Paths) -> Result<()> {
    println!("\n## interleaved comparisons ({INTERLEAVED_ROUNDS} rounds of {CALLS_PER_ROUND} calls): min / median ns per call");
    for n in SIZES {
        let data = readings(n);
        p.c.build_in_place(&data)?;
        let c = std::cell::RefCell::new(&mut p.c);
        let ((c_min, c_med), (e_min, e_med)) = in_turn(
            || c.borrow_mut().analyze(0).map(|r| { black_box(r); }),
            || {
                let mut c = c.borrow_mut();
                c.build_in_place(&data)?;
                c.analyze(0).map(|r| { black_box(r); })
            },
        )?;
        println!(
            "n = {n}: (c) {c_min:.0} / {c_med:.0}, (c) + host encode in place {e_min:.0} / {e_med:.0}: {:.3}x / {:.3}x (want <= {})",
            e_min / c_min,
            e_med / c_med,
            if n == 10 { "1.5" } else { "2" }
        );
        if let Some(b0) = &mut p.b0 {
            p.b.set_readings(&data);
            b0.set_readings(&data);
            let b = &mut p.b;
            let ((c_min, c_med), (b_min, b_med)) =
                in_turn(|| b.analyze().map(|r| { black_box(r); }), || b0.analyze().map(|r| { black_box(r); }))?;
            println!(
                "n = {n}: (b) {c_min:.0} / {c_med:.0}, (b0) baseline {b_min:.0} / {b_med:.0}: (b)/(b0) {:.3}x / {:.3}x",
                c_min / b_min,
                c_med / b_med
            );
        }
    }
    Ok(())
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
            ("b0_lowered_baseline", "(b0) lowered by the baseline build", 1.0),
            ("c_native", "(c) Karmem-native, shared", 1.0),
            ("c_native_with_encode", "(c) + host encode in place", 1.0),
            ("c_native_with_encode_and_write", "(c) + host encode, copied in (pwrite)", 1.0),
            ("d_json", "(d) JSON", 1.0),
            ("e_fanout8", "(e) fanout, all 8 consumers", 1.0),
            ("e_fanout8", "(e) fanout, per consumer", FANOUT_CONSUMERS as f64),
        ] {
            if let Some(t) = get(id) {
                let t = t / per;
                println!("| {label} | {t:.0} | {:.3} |", t / a);
            }
        }
        if let (Some(c), Some(ce)) = (get("c_native"), get("c_native_with_encode")) {
            println!("goal: (c) + host encode / (c) = {:.2} (want <= 1.5 at 10, <= 2 at 10,000)", ce / c);
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
