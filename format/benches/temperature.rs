//! The paper's TemperatureBatch workload (Figures 31–34, Tables 5–6) at 10
//! and 10,000 readings: encoding, and reading with aggregation (average, min
//! and max temperature, latest timestamp), for Karmem and the alternatives,
//! all in one run. Results are written up as ratios in `docs/BENCHMARKS.md`.
//!
//! Run: `cargo bench -p karmem-format --all-features --bench temperature`.
//!
//! Karmem is measured two ways: the top-down builder as generated code uses it
//! (Figure 34: allocate, then fill columns in place) and the schema-driven
//! dynamic `Value` encoder. FlatBuffers uses the `flatbuffers` crate with the
//! table code flatc would generate written out by hand (no flatc here).

#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, unsafe_code,
    reason = "benchmark code: a failed setup step aborts the run, it indexes data it built itself, and the hand-written FlatBuffers tables need `unsafe` as flatc output does"
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flatbuffers::{FlatBufferBuilder, Follow, ForwardsUOffset, Table, Vector, Verifiable, Verifier, WIPOffset};
use karmem_format::layout::Layout;
use karmem_format::{Builder, Limits, Value, validate};

/// `karmem-bridge gen rust fixtures/idl/paper-fig32.km` (Figure 32's
/// structs, the schema below): views and the per-type validator. The test
/// `bench_generated_code_is_current` (format/tests/gen_rust.rs) keeps it so.
#[allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, missing_debug_implementations,
    reason = "generated code, checked by its own tests"
)]
#[path = "temperature_generated.rs"]
mod generated;

use generated::TemperatureBatchView;

const SCHEMA: &str = "
    struct temperature_reading (dynamic) { timestamp: i64; value: f32; }
    struct temperature_batch (dynamic) { readings: []temperature_reading; }
";

#[derive(Clone, Copy, serde::Serialize, serde::Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Reading {
    timestamp: i64,
    value: f32,
}

#[derive(Clone, serde::Serialize, serde::Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Batch {
    readings: Vec<Reading>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Analysis {
    average: f32,
    min: f32,
    max: f32,
    latest: i64,
}

fn analyse(readings: impl Iterator<Item = (i64, f32)>) -> Analysis {
    let (mut sum, mut n, mut min, mut max, mut latest) = (0.0f32, 0u32, f32::INFINITY, f32::NEG_INFINITY, i64::MIN);
    for (t, v) in readings {
        sum += v;
        n += 1;
        min = min.min(v);
        max = max.max(v);
        latest = latest.max(t);
    }
    Analysis { average: if n == 0 { 0.0 } else { sum / n as f32 }, min, max, latest }
}

/// Column-wise aggregation, as SoA readers do it.
fn analyse_columns(timestamps: &[i64], values: &[f32]) -> Analysis {
    let (mut sum, mut min, mut max) = (0.0f32, f32::INFINITY, f32::NEG_INFINITY);
    for &v in values {
        sum += v;
        min = min.min(v);
        max = max.max(v);
    }
    let latest = timestamps.iter().copied().max().unwrap_or(i64::MIN);
    let n = values.len();
    Analysis { average: if n == 0 { 0.0 } else { sum / n as f32 }, min, max, latest }
}

/// Lanes of the several-accumulator aggregations: eight f32 lanes are one
/// 256-bit vector, which LLVM keeps in registers and vectorises.
const LANES: usize = 8;

/// Below this many readings the `-lanes` aggregations run the fused scalar
/// loop: the accumulators cost more to set up and fold than they save.
const SMALL: usize = 2 * LANES;

/// Column-wise aggregation with [`LANES`] independent accumulators per
/// statistic, as SoA readers write it so the compiler can use SIMD (no
/// dependency from one element to the next). Sums in another order than
/// [`analyse`]: the same result on this data (quarter steps, exact in f32).
fn analyse_columns_lanes(timestamps: &[i64], values: &[f32]) -> Analysis {
    if values.len() < SMALL {
        return analyse(timestamps.iter().copied().zip(values.iter().copied()));
    }
    let mut sum = [0.0f32; LANES];
    let mut min = [f32::INFINITY; LANES];
    let mut max = [f32::NEG_INFINITY; LANES];
    let (chunks, rest) = values.as_chunks::<LANES>();
    // One pass per statistic: each loop is one vector operation per chunk
    // (fused, LLVM shuffles the three accumulators instead; measured 2x).
    for chunk in chunks {
        for l in 0..LANES {
            sum[l] += chunk[l];
        }
    }
    for chunk in chunks {
        for l in 0..LANES {
            min[l] = if chunk[l] < min[l] { chunk[l] } else { min[l] };
        }
    }
    for chunk in chunks {
        for l in 0..LANES {
            max[l] = if chunk[l] > max[l] { chunk[l] } else { max[l] };
        }
    }
    for (l, &v) in rest.iter().enumerate() {
        sum[l] += v;
        min[l] = min[l].min(v);
        max[l] = max[l].max(v);
    }
    let mut latest = [i64::MIN; LANES];
    let (ts, ts_rest) = timestamps.as_chunks::<LANES>();
    for chunk in ts {
        for l in 0..LANES {
            latest[l] = latest[l].max(chunk[l]);
        }
    }
    for (l, &t) in ts_rest.iter().enumerate() {
        latest[l] = latest[l].max(t);
    }
    Lanes { sum, min, max, latest }.combine(values.len())
}

/// The same several-accumulator aggregation over records (AoS formats):
/// lane `l` takes every `LANES`-th record.
fn analyse_records_lanes<R>(records: &[R], get: impl Fn(&R) -> (i64, f32)) -> Analysis {
    if records.len() < SMALL {
        return analyse(records.iter().map(get));
    }
    let mut sum = [0.0f32; LANES];
    let mut min = [f32::INFINITY; LANES];
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut latest = [i64::MIN; LANES];
    let (chunks, rest) = records.as_chunks::<LANES>();
    for chunk in chunks {
        for l in 0..LANES {
            let (t, v) = get(&chunk[l]);
            sum[l] += v;
            min[l] = if v < min[l] { v } else { min[l] };
            max[l] = if v > max[l] { v } else { max[l] };
            latest[l] = latest[l].max(t);
        }
    }
    for (l, r) in rest.iter().enumerate() {
        let (t, v) = get(r);
        sum[l] += v;
        min[l] = min[l].min(v);
        max[l] = max[l].max(v);
        latest[l] = latest[l].max(t);
    }
    Lanes { sum, min, max, latest }.combine(records.len())
}

/// The per-lane accumulators of the `-lanes` aggregations.
struct Lanes {
    sum: [f32; LANES],
    min: [f32; LANES],
    max: [f32; LANES],
    latest: [i64; LANES],
}

impl Lanes {
    /// The lanes folded into one result over `n` readings.
    fn combine(self, n: usize) -> Analysis {
        let total: f32 = self.sum.iter().sum();
        Analysis {
            average: if n == 0 { 0.0 } else { total / n as f32 },
            min: self.min.iter().copied().fold(f32::INFINITY, f32::min),
            max: self.max.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            latest: self.latest.iter().copied().max().unwrap_or(i64::MIN),
        }
    }
}

fn data(n: usize) -> Batch {
    Batch {
        readings: (0..n)
            .map(|i| Reading { timestamp: 1_700_000_000 + i as i64 * 60, value: 15.0 + (i % 97) as f32 * 0.25 })
            .collect(),
    }
}

// ---- Karmem: the generated-code path (Figure 34) ----

struct KarmemCodec {
    root_used: u32,
    readings_at: u32,
    columns: [(u32, u32); 2],
}

impl KarmemCodec {
    fn new(layout: &Layout) -> KarmemCodec {
        let batch = layout.as_struct(layout.named("temperature_batch").unwrap()).unwrap();
        let cols = layout.columns(layout.named("temperature_reading").unwrap());
        KarmemCodec {
            root_used: batch.used,
            readings_at: batch.fields[0].offset,
            columns: [(cols[0].hash, cols[0].size), (cols[1].hash, cols[1].size)],
        }
    }

    fn encode(&self, b: &mut Builder, batch: &Batch) {
        b.reset();
        let n = batch.readings.len() as u32;
        let root = b.alloc_dynamic_struct(self.root_used).unwrap();
        b.set_root(root);
        let mut cols = [0u32; 2];
        b.alloc_soa_array_to_fill(root + self.readings_at, n, n, &self.columns, &mut cols).unwrap();
        let ts = b.column_mut::<i64>(cols[0], n).unwrap();
        for (t, r) in ts.iter_mut().zip(&batch.readings) {
            *t = r.timestamp;
        }
        let vs = b.column_mut::<f32>(cols[1], n).unwrap();
        for (v, r) in vs.iter_mut().zip(&batch.readings) {
            *v = r.value;
        }
    }

    /// Bounds-checked zero-copy read of one message through the generated
    /// views (no whole-message walk): the two columns as native slices.
    fn columns<'b>(&self, bytes: &'b [u8]) -> (&'b [i64], &'b [f32]) {
        let soa = TemperatureBatchView::root(bytes).unwrap().readings().unwrap();
        let ts = soa.timestamp().unwrap().unwrap();
        let vs = soa.value().unwrap().unwrap();
        (ts.as_slice().unwrap(), vs.as_slice().unwrap())
    }

    /// The columns aggregated by the scalar loop.
    fn read(&self, bytes: &[u8]) -> Analysis {
        let (ts, vs) = self.columns(bytes);
        analyse_columns(ts, vs)
    }

    /// The columns aggregated with several accumulators.
    fn read_lanes(&self, bytes: &[u8]) -> Analysis {
        let (ts, vs) = self.columns(bytes);
        analyse_columns_lanes(ts, vs)
    }
}

// ---- FlatBuffers: what flatc generates for Figure 31, by hand ----

const VT_TIMESTAMP: u16 = 4;
const VT_VALUE: u16 = 6;
const VT_READINGS: u16 = 4;

#[derive(Clone, Copy)]
struct FbReading<'a>(Table<'a>);
#[derive(Clone, Copy)]
struct FbBatch<'a>(Table<'a>);

impl<'a> Follow<'a> for FbReading<'a> {
    type Inner = FbReading<'a>;
    unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
        FbReading(unsafe { Table::new(buf, loc) })
    }
}
impl<'a> Follow<'a> for FbBatch<'a> {
    type Inner = FbBatch<'a>;
    unsafe fn follow(buf: &'a [u8], loc: usize) -> Self::Inner {
        FbBatch(unsafe { Table::new(buf, loc) })
    }
}
impl Verifiable for FbReading<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), flatbuffers::InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<i64>("timestamp", VT_TIMESTAMP, false)?
            .visit_field::<f32>("value", VT_VALUE, false)?
            .finish();
        Ok(())
    }
}
impl Verifiable for FbBatch<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), flatbuffers::InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<ForwardsUOffset<Vector<'_, ForwardsUOffset<FbReading<'_>>>>>("readings", VT_READINGS, false)?
            .finish();
        Ok(())
    }
}
impl<'a> FbReading<'a> {
    fn timestamp(&self) -> i64 {
        // SAFETY: the buffer was verified (or built by us) with this schema.
        unsafe { self.0.get::<i64>(VT_TIMESTAMP, Some(0)) }.unwrap_or(0)
    }
    fn value(&self) -> f32 {
        // SAFETY: as above.
        unsafe { self.0.get::<f32>(VT_VALUE, Some(0.0)) }.unwrap_or(0.0)
    }
}
impl<'a> FbBatch<'a> {
    fn readings(&self) -> Option<Vector<'a, ForwardsUOffset<FbReading<'a>>>> {
        // SAFETY: as above.
        unsafe { self.0.get::<ForwardsUOffset<Vector<'a, ForwardsUOffset<FbReading<'a>>>>>(VT_READINGS, None) }
    }
}

fn fb_encode<'b>(fbb: &'b mut FlatBufferBuilder<'static>, batch: &Batch, offsets: &mut Vec<WIPOffset<flatbuffers::TableFinishedWIPOffset>>) -> &'b [u8] {
    fbb.reset();
    offsets.clear();
    for r in &batch.readings {
        let start = fbb.start_table();
        fbb.push_slot::<i64>(VT_TIMESTAMP, r.timestamp, 0);
        fbb.push_slot::<f32>(VT_VALUE, r.value, 0.0);
        offsets.push(fbb.end_table(start));
    }
    let readings = fbb.create_vector(offsets);
    let start = fbb.start_table();
    fbb.push_slot_always(VT_READINGS, readings);
    let root = fbb.end_table(start);
    fbb.finish(root, None);
    fbb.finished_data()
}

fn fb_read(bytes: &[u8]) -> Analysis {
    let batch = flatbuffers::root::<FbBatch>(bytes).unwrap();
    let readings = batch.readings().unwrap();
    analyse(readings.iter().map(|r| (r.timestamp(), r.value())))
}

fn bench(c: &mut Criterion) {
    let schema = karmem_idl::resolve(karmem_idl::parse(SCHEMA).unwrap()).unwrap();
    let layout = Arc::new(Layout::new(&schema).unwrap());
    let batch_ty = layout.named("temperature_batch").unwrap();
    let codec = KarmemCodec::new(&layout);

    for n in [10usize, 10_000] {
        let batch = data(n);
        let expected = analyse(batch.readings.iter().map(|r| (r.timestamp, r.value)));
        let value = Value::Record(vec![(
            "readings".into(),
            Value::List(
                batch
                    .readings
                    .iter()
                    .map(|r| {
                        Value::Record(vec![
                            ("timestamp".into(), Value::S64(r.timestamp)),
                            ("value".into(), Value::F32(r.value)),
                        ])
                    })
                    .collect(),
            ),
        )]);

        // Encoded forms, checked once for agreement.
        let mut kb = Builder::with_capacity(64 + n * 16);
        codec.encode(&mut kb, &batch);
        let karmem = kb.as_bytes().to_vec();
        let karmem_aligned = karmem_format::AlignedBuf::from_bytes(&karmem);
        assert_eq!(karmem_format::value::encode(&layout, batch_ty, &value).unwrap().as_slice(), &karmem[..]);
        assert_eq!(codec.read(&karmem_aligned), expected);
        assert_eq!(TemperatureBatchView::validate(&karmem_aligned, &Limits::DEFAULT), Ok(()));
        assert_eq!(validate(&karmem_aligned, &layout, batch_ty, &Limits::default()), Ok(()));
        assert_eq!(codec.read_lanes(&karmem_aligned), expected);
        assert_eq!(analyse_records_lanes(&batch.readings, |r| (r.timestamp, r.value)), expected);
        let mut fbb = FlatBufferBuilder::with_capacity(64 + n * 32);
        let mut fb_offsets = Vec::with_capacity(n);
        let flat = fb_encode(&mut fbb, &batch, &mut fb_offsets).to_vec();
        assert_eq!(fb_read(&flat), expected);
        let rk = rkyv::to_bytes::<rkyv::rancor::Error>(&batch).unwrap();
        let json = serde_json::to_vec(&batch).unwrap();
        let post = postcard::to_allocvec(&batch).unwrap();

        let mut g = c.benchmark_group(format!("encode/{n}"));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("karmem", |b| b.iter(|| codec.encode(&mut kb, black_box(&batch))));
        g.bench_function("karmem-dynamic-value", |b| {
            b.iter(|| karmem_format::value::encode(&layout, batch_ty, black_box(&value)).unwrap())
        });
        g.bench_function("flatbuffers", |b| b.iter(|| fb_encode(&mut fbb, black_box(&batch), &mut fb_offsets).len()));
        let mut rk_buf = rkyv::util::AlignedVec::<16>::with_capacity(rk.len());
        g.bench_function("rkyv", |b| {
            b.iter(|| {
                rk_buf.clear();
                rk_buf = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(black_box(&batch), std::mem::take(&mut rk_buf)).unwrap();
            })
        });
        let mut json_buf = Vec::with_capacity(json.len());
        g.bench_function("serde_json", |b| {
            b.iter(|| {
                json_buf.clear();
                serde_json::to_writer(&mut json_buf, black_box(&batch)).unwrap();
            })
        });
        let mut post_buf = vec![0u8; post.len() + 64];
        g.bench_function("postcard", |b| b.iter(|| postcard::to_slice(black_box(&batch), &mut post_buf).unwrap().len()));
        let mut copy = vec![0u8; karmem.len()];
        g.bench_function("memcpy", |b| b.iter(|| copy.copy_from_slice(black_box(&karmem))));
        g.finish();

        let mut g = c.benchmark_group(format!("read/{n}"));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("karmem", |b| b.iter(|| codec.read(black_box(&karmem_aligned))));
        // `-validated`: the validator `gen rust` generates for the root type;
        // `-validated-dynamic`: the schema-driven one walking the `Layout`.
        g.bench_function("karmem-validated", |b| {
            b.iter(|| {
                TemperatureBatchView::validate(black_box(&karmem_aligned), &Limits::DEFAULT).unwrap();
                codec.read(&karmem_aligned)
            })
        });
        g.bench_function("karmem-validated-dynamic", |b| {
            b.iter(|| {
                validate(black_box(&karmem_aligned), &layout, batch_ty, &Limits::default()).unwrap();
                codec.read(&karmem_aligned)
            })
        });
        g.bench_function("karmem-lanes", |b| b.iter(|| codec.read_lanes(black_box(&karmem_aligned))));
        g.bench_function("karmem-lanes-validated", |b| {
            b.iter(|| {
                TemperatureBatchView::validate(black_box(&karmem_aligned), &Limits::DEFAULT).unwrap();
                codec.read_lanes(&karmem_aligned)
            })
        });
        g.bench_function("karmem-lanes-validated-dynamic", |b| {
            b.iter(|| {
                validate(black_box(&karmem_aligned), &layout, batch_ty, &Limits::default()).unwrap();
                codec.read_lanes(&karmem_aligned)
            })
        });
        let mut flat_aligned = rkyv::util::AlignedVec::<16>::new();
        flat_aligned.extend_from_slice(&flat);
        g.bench_function("flatbuffers", |b| b.iter(|| fb_read(black_box(&flat_aligned))));
        g.bench_function("rkyv", |b| {
            b.iter(|| {
                let a = rkyv::access::<ArchivedBatch, rkyv::rancor::Error>(black_box(&rk)).unwrap();
                analyse(a.readings.iter().map(|r| (r.timestamp.to_native(), r.value.to_native())))
            })
        });
        g.bench_function("rkyv-lanes", |b| {
            b.iter(|| {
                let a = rkyv::access::<ArchivedBatch, rkyv::rancor::Error>(black_box(&rk)).unwrap();
                analyse_records_lanes(a.readings.as_slice(), |r| (r.timestamp.to_native(), r.value.to_native()))
            })
        });
        g.bench_function("serde_json", |b| {
            b.iter(|| {
                let v: Batch = serde_json::from_slice(black_box(&json)).unwrap();
                analyse(v.readings.iter().map(|r| (r.timestamp, r.value)))
            })
        });
        g.bench_function("postcard", |b| {
            b.iter(|| {
                let v: Batch = postcard::from_bytes(black_box(&post)).unwrap();
                analyse(v.readings.iter().map(|r| (r.timestamp, r.value)))
            })
        });
        g.bench_function("native-struct", |b| {
            b.iter(|| analyse(black_box(&batch).readings.iter().map(|r| (r.timestamp, r.value))))
        });
        g.bench_function("native-struct-lanes", |b| {
            b.iter(|| analyse_records_lanes(&black_box(&batch).readings, |r| (r.timestamp, r.value)))
        });
        g.finish();
    }
}

/// One read path of the interleaved comparison.
type ReadPath<'a> = Box<dyn Fn() -> Analysis + 'a>;

/// Per-call times of the read paths measured interleaved: `ROUNDS` rounds,
/// each timing `CALLS` calls of every path in turn, so that load from other
/// processes lands on all paths alike. Prints min and median per path and
/// the ratios to rkyv. Runs with no filter or a filter naming `interleaved`
/// (`cargo bench -p karmem-format --features schema --bench temperature -- interleaved`).
fn interleaved(_: &mut Criterion) {
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !(filters.is_empty() || filters.iter().any(|f| f.contains("interleaved"))) {
        return;
    }
    let schema = karmem_idl::resolve(karmem_idl::parse(SCHEMA).unwrap()).unwrap();
    let layout = Arc::new(Layout::new(&schema).unwrap());
    let batch_ty = layout.named("temperature_batch").unwrap();
    let codec = KarmemCodec::new(&layout);
    for (n, rounds, calls) in [(10usize, 400usize, 200usize), (10_000, 200, 2)] {
        let batch = data(n);
        let mut kb = Builder::with_capacity(64 + n * 16);
        codec.encode(&mut kb, &batch);
        let karmem = karmem_format::AlignedBuf::from_bytes(kb.as_bytes());
        let rk = rkyv::to_bytes::<rkyv::rancor::Error>(&batch).unwrap();
        let (ts_only, vs_only) = codec.columns(&karmem);
        let paths: Vec<(&str, ReadPath<'_>)> = vec![
            ("rkyv", Box::new(|| {
                let a = rkyv::access::<ArchivedBatch, rkyv::rancor::Error>(black_box(&rk)).unwrap();
                analyse(a.readings.iter().map(|r| (r.timestamp.to_native(), r.value.to_native())))
            })),
            ("rkyv-lanes", Box::new(|| {
                let a = rkyv::access::<ArchivedBatch, rkyv::rancor::Error>(black_box(&rk)).unwrap();
                analyse_records_lanes(a.readings.as_slice(), |r| (r.timestamp.to_native(), r.value.to_native()))
            })),
            ("karmem", Box::new(|| codec.read(black_box(&karmem)))),
            ("karmem-lanes", Box::new(|| codec.read_lanes(black_box(&karmem)))),
            ("karmem-lanes-validated", Box::new(|| {
                TemperatureBatchView::validate(black_box(&karmem), &Limits::DEFAULT).unwrap();
                codec.read_lanes(&karmem)
            })),
            ("karmem-lanes-validated-dynamic", Box::new(|| {
                validate(black_box(&karmem), &layout, batch_ty, &Limits::default()).unwrap();
                codec.read_lanes(&karmem)
            })),
            ("karmem-views-only", Box::new(|| {
                let (ts, vs) = codec.columns(black_box(&karmem));
                Analysis { average: 0.0, min: 0.0, max: 0.0, latest: (ts.len() + vs.len()) as i64 }
            })),
            ("lanes-aggregation-only", Box::new(|| analyse_columns_lanes(black_box(ts_only), black_box(vs_only)))),
            ("validate-generated", Box::new(|| {
                TemperatureBatchView::validate(black_box(&karmem), &Limits::DEFAULT).unwrap();
                Analysis { average: 0.0, min: 0.0, max: 0.0, latest: 0 }
            })),
            ("validate-dynamic", Box::new(|| {
                validate(black_box(&karmem), &layout, batch_ty, &Limits::default()).unwrap();
                Analysis { average: 0.0, min: 0.0, max: 0.0, latest: 0 }
            })),
        ];
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); paths.len()];
        for _ in 0..rounds {
            for (k, (_, f)) in paths.iter().enumerate() {
                let start = std::time::Instant::now();
                for _ in 0..calls {
                    black_box(f());
                }
                times[k].push(start.elapsed().as_secs_f64() * 1e9 / calls as f64);
            }
        }
        let stats: Vec<(f64, f64)> = times
            .iter_mut()
            .map(|t| {
                t.sort_by(f64::total_cmp);
                (t[0], t[t.len() / 2])
            })
            .collect();
        let (rk_min, rk_med) = stats[0];
        println!("interleaved read/{n}: {rounds} rounds x {calls} calls; ns per call min / median; ratio to rkyv min / median");
        for ((name, _), (min, med)) in paths.iter().zip(&stats) {
            println!("  {name:<32} {min:>10.1} / {med:>10.1}   {:.2}x / {:.2}x", min / rk_min, med / rk_med);
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(20);
    targets = bench, interleaved
}
criterion_main!(benches);
