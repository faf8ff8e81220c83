//! The Rust code generator, end to end: the code generated for every schema
//! of the fixture corpus (`fixtures/idl/*.km` and `fixtures/wit/*.km`)
//! compiles against `karmem-format` without std (and for
//! `wasm32-unknown-unknown` when that target is installed); and for every
//! struct and union of every schema, random values round-trip through it:
//! the generated value types write exactly the bytes the reference encoder
//! (`value::encode`) writes, and the generated views read the reference
//! bytes back to the same value (compared as `typed::Dump` text); and every
//! dynamic struct's view reads the empty message as the defaults the
//! dynamic decoder reads (declared defaults of every kind, zero values); a
//! mutated message that still validates reads the same through both; and
//! two versions of a schema read each other's messages through their
//! generated code (old reader, new writer and the other way round).
//! Hand-written drivers also exercise the builders of the paper's Figure 32
//! and the map builders and views of `constructs.km`.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing,
    reason = "test code: a failed step fails the test, and it indexes data it built itself"
)]

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::Arc;

use karmem_format::gen_rust::{camel, field_name, generate, type_names};
use karmem_format::layout::{ArrayForm, Kind, Layout, TypeId};
use karmem_format::value::{Value, decode, encode};
use karmem_format::{Limits, validate};

use common::random::{self, Rng};

use common::tools::{corpus, workspace};

/// Names that clash with Rust keywords, generated methods and the types
/// generated code uses.
const AWKWARD_NAMES: &str = "
    flags names { names; type; self; at; }
    enum error (u8) { none; some; ok; err; }
    union result_ (dynamic, u8) { len: u32; type: error; is_empty; bunch; }
    struct self (inline) { at: u8; root: u8; len: u16; }
    struct option_ (dynamic) {
        at: u32; root: []u8 #string; absent: self; present: names; new: error;
        type: []self; msg: result_; used: []result_ #bovoa; len: []self #soa; array: []result_ #soa;
    }
";

/// Two versions of a schema: the new one appends fields (with defaults of
/// several kinds), SoA columns, an enum case and function parameters.
const EVOLUTION: [(&str, &str); 2] = [
    (
        "evo_old",
        "enum level (u8) { low; high; }
         struct reading (dynamic) { id: u32; value: f32; }
         struct batch (dynamic) { name: []u8 #string; readings: []reading; tags: []([]u8 #string); }
         interface api (dynamic, direct) { send: fn(b: batch) (ok: bool); }",
    ),
    (
        "evo_new",
        "enum level (u8) { low; high; max; }
         struct point (inline) { x: f32; y: f32; }
         struct reading (dynamic) { id: u32; value: f32; unit: []u8 #string = \"C\"; at: point; level: level = high; }
         struct batch (dynamic) { name: []u8 #string; readings: []reading; tags: []([]u8 #string); note: option<[]u8 #string>; count: u64 = 9; }
         interface api (dynamic, direct) { send: fn(b: batch, retries: u8) (ok: bool, took: u64); }",
    ),
];

/// The name of a struct or union type, to match types across versions.
fn type_name(layout: &Layout, ty: TypeId) -> Option<String> {
    match &layout.get(ty).kind {
        Kind::Struct(s) => Some(s.name.clone()),
        Kind::Union(u) => Some(u.name.clone()),
        _ => None,
    }
}

const FIG32_DRIVER: &str = r#"
fn fig32_builders() {
    use karmem_format::builder::Builder;
    use karmem_gen_check::idl_paper_fig32::*;

    let mut b = Builder::new();
    let batch = TemperatureBatchBuilder::new_root(&mut b).unwrap();
    let readings = batch.alloc_readings(&mut b, 3, 3).unwrap();
    readings.timestamp_mut(&mut b).unwrap().copy_from_slice(&[10, 20, 30]);
    for (i, v) in [1.5f32, 2.5, 3.5].iter().enumerate() {
        readings.set_value(&mut b, i as u32, *v);
    }
    let bytes = b.finish();

    let view = TemperatureBatchView::root(&bytes).unwrap();
    let soa = view.readings().unwrap();
    assert_eq!(soa.len(), 3);
    let values = soa.value().unwrap().unwrap();
    assert_eq!(values.as_slice().unwrap().iter().sum::<f32>(), 7.5);
    let stamps = soa.timestamp().unwrap().unwrap();
    assert_eq!(stamps.iter().max(), Some(30));

    let mut a = Builder::new();
    let r = AnalysisResultBuilder::new_root(&mut a).unwrap();
    r.set_average_temperature(&mut a, 2.5);
    r.set_max_temperature(&mut a, 3.5);
    let result = a.finish();
    let rv = AnalysisResultView::root(&result).unwrap();
    assert_eq!((rv.average_temperature().unwrap(), rv.min_temperature().unwrap()), (2.5, 0.0));

    // The same batch from a value type.
    let value = TemperatureBatch {
        readings: karmem_format::typed::SoaOf(&[
            TemperatureReading { timestamp: 10, value: 1.5 },
            TemperatureReading { timestamp: 20, value: 2.5 },
            TemperatureReading { timestamp: 30, value: 3.5 },
        ]),
    };
    let encoded = karmem_format::typed::encode(&value).unwrap();
    assert_eq!(&encoded[..], &bytes[..], "value type and builder write the same bytes");
    println!("fig32 {}", hex(&bytes));
}
"#;

/// A map's builders and views (FORMAT.md §6.5): entries pushed in order,
/// duplicates kept, read back by index and in order; an inline-struct value
/// read as a row from its columns.
const MAPS_DRIVER: &str = r#"
fn maps_api() {
    use karmem_format::builder::Builder;
    use karmem_gen_check::idl_constructs::*;

    let mut b = Builder::new();
    let maps = MapsBuilder::new_root(&mut b).unwrap();
    let mut counts = maps.new_counts(&mut b, 3).unwrap();
    assert!(counts.push(&mut b, "b", 2).unwrap());
    assert!(counts.push(&mut b, "a", 1).unwrap());
    assert!(counts.push(&mut b, "b", 3).unwrap());
    assert!(!counts.push(&mut b, "c", 4).unwrap(), "a full map takes no more entries");
    let mut by_id = maps.new_by_id(&mut b, 4).unwrap();
    assert!(by_id.push(&mut b, 7, Point { x: 1.5, y: -2.0 }).unwrap());
    let bytes = b.finish();

    let view = MapsView::root(&bytes).unwrap();
    let counts = view.counts().unwrap();
    let entries: Vec<(&str, u32)> = counts.iter().map(|e| e.unwrap()).collect();
    assert_eq!(entries, [("b", 2), ("a", 1), ("b", 3)]);
    assert_eq!(counts.get(1).unwrap(), Some(("a", 1)));
    assert!(counts.get(3).unwrap().is_none());
    let by_id = view.by_id().unwrap();
    assert_eq!(by_id.len(), 1, "the length follows the pushes, not the capacity");
    let (id, point) = by_id.get(0).unwrap().unwrap();
    assert_eq!((id, point.x().unwrap(), point.y().unwrap()), (7, 1.5, -2.0));
    assert_eq!(view.nested().unwrap().len(), 0);
    println!("maps {}", hex(&bytes));
}
"#;

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Rust expression of the generated value type for `value`.
struct Exprs<'l> {
    layout: &'l Layout,
    names: HashMap<TypeId, String>,
    module: String,
}

impl Exprs<'_> {
    fn path(&self, ty: TypeId) -> String {
        format!("karmem_gen_check::{}::{}", self.module, self.names[&ty])
    }

    fn expr(&self, ty: TypeId, value: &Value) -> String {
        let layout = self.layout;
        match (&layout.get(ty).kind, value) {
            (_, Value::Bool(v)) => v.to_string(),
            (_, Value::U8(v)) => format!("{v}u8"),
            (_, Value::U16(v)) => format!("{v}u16"),
            (_, Value::U32(v)) => format!("{v}u32"),
            (_, Value::U64(v)) => format!("{v}u64"),
            (_, Value::S8(v)) => format!("({}u8 as i8)", *v as u8),
            (_, Value::S16(v)) => format!("({}u16 as i16)", *v as u16),
            (_, Value::S32(v)) => format!("({}u32 as i32)", *v as u32),
            (_, Value::S64(v)) => format!("({}u64 as i64)", *v as u64),
            (_, Value::F32(v)) => format!("f32::from_bits({:#x})", v.to_bits()),
            (_, Value::F64(v)) => format!("f64::from_bits({:#x})", v.to_bits()),
            (_, Value::Char(c)) => format!("'\\u{{{:x}}}'", *c as u32),
            (Kind::String { utf16: true }, Value::String(s)) => {
                format!("&[{}]", s.encode_utf16().map(|u| format!("{u}u16")).collect::<Vec<_>>().join(", "))
            }
            (_, Value::String(s)) => format!("{s:?}"),
            (Kind::Enum(_), Value::Enum(case)) => format!("{}::{}", self.path(ty), camel(case)),
            (Kind::Flags(f), Value::Flags(set)) => {
                let size = layout.get(ty).size;
                let bit = |i: usize| set.contains(&f.flags[i]);
                if size <= 4 {
                    let bits: u64 = (0..f.flags.len()).filter(|&i| bit(i)).map(|i| 1u64 << i).sum();
                    format!("{}({bits})", self.path(ty))
                } else {
                    let mut words = vec![0u32; size as usize / 4];
                    for i in (0..f.flags.len()).filter(|&i| bit(i)) {
                        words[i / 32] |= 1 << (i % 32);
                    }
                    format!("{}({words:?})", self.path(ty))
                }
            }
            (Kind::Struct(s), Value::Record(fields)) => {
                let parts: Vec<String> = s
                    .fields
                    .iter()
                    .zip(fields)
                    .map(|(f, (_, v))| format!("{}: {}", field_name(&f.name), self.expr(f.ty, v)))
                    .collect();
                format!("{} {{ {} }}", self.path(ty), parts.join(", "))
            }
            (Kind::Union(u), Value::Variant(case, payload)) => {
                let c = u.cases.iter().find(|c| c.name == *case).expect("case");
                match (c.ty, payload) {
                    (Some(t), Some(p)) => format!("{}::{}({})", self.path(ty), camel(case), self.expr(t, p)),
                    _ => format!("{}::{}", self.path(ty), camel(case)),
                }
            }
            (Kind::Array { elem, .. }, Value::Map(entries)) => {
                let (k, v) = layout.map_types(ty).expect("a map type");
                let items: Vec<String> = entries
                    .iter()
                    .map(|(key, value)| format!("{} {{ key: {}, value: {} }}", self.path(*elem), self.expr(k, key), self.expr(v, value)))
                    .collect();
                format!("karmem_format::typed::SoaOf(&[{}])", items.join(", "))
            }
            (Kind::Array { elem, form }, Value::List(items)) => {
                let items: Vec<String> = items.iter().map(|v| self.expr(*elem, v)).collect();
                let slice = format!("&[{}]", items.join(", "));
                match form {
                    ArrayForm::Plain => slice,
                    ArrayForm::Soa => format!("karmem_format::typed::SoaOf({slice})"),
                    ArrayForm::Bunch { .. } => format!("karmem_format::typed::BunchOf({slice})"),
                }
            }
            (Kind::FixedArray { elem, .. }, Value::List(items)) => {
                format!("[{}]", items.iter().map(|v| self.expr(*elem, v)).collect::<Vec<_>>().join(", "))
            }
            (Kind::Option { some, .. }, Value::Option(v)) => match v {
                Some(v) => format!("::core::option::Option::Some({})", self.expr(*some, v)),
                None => "::core::option::Option::None".into(),
            },
            (Kind::Result { ok, err, .. }, Value::Result(r)) => {
                let side = |t: Option<TypeId>, v: &Option<Box<Value>>| match (t, v) {
                    (Some(t), Some(v)) => self.expr(t, v),
                    _ => "()".into(),
                };
                match r {
                    Ok(v) => format!("::core::result::Result::Ok({})", side(*ok, v)),
                    Err(v) => format!("::core::result::Result::Err({})", side(*err, v)),
                }
            }
            (kind, v) => panic!("no expression for {v:?} of {kind:?}"),
        }
    }
}

/// The `typed::Dump` text of `value` as the generated views print it.
fn dump(layout: &Layout, ty: TypeId, value: &Value) -> String {
    let mut out = String::new();
    dump_into(layout, ty, value, &mut out);
    out
}

fn dump_into(layout: &Layout, ty: TypeId, value: &Value, out: &mut String) {
    let list = |items: &[Value], elem: TypeId, out: &mut String| {
        out.push('[');
        for (i, v) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            dump_into(layout, elem, v, out);
        }
        out.push(']');
    };
    match (&layout.get(ty).kind, value) {
        (_, Value::Bool(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::U8(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::U16(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::U32(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::U64(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::S8(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::S16(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::S32(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::S64(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::F32(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::F64(v)) => write!(out, "{v:?}").unwrap(),
        (_, Value::Char(v)) => write!(out, "{v:?}").unwrap(),
        (Kind::String { utf16: true }, Value::String(s)) => {
            out.push('"');
            for c in s.chars() {
                write!(out, "{}", c.escape_debug()).unwrap();
            }
            out.push('"');
        }
        (_, Value::String(s)) => write!(out, "{s:?}").unwrap(),
        (_, Value::Enum(case)) => out.push_str(case),
        (_, Value::Flags(set)) => write!(out, "{{{}}}", set.join(", ")).unwrap(),
        (Kind::Struct(s), Value::Record(fields)) => {
            out.push('{');
            for (i, (f, (_, v))) in s.fields.iter().zip(fields).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write!(out, "{}: ", f.name).unwrap();
                dump_into(layout, f.ty, v, out);
            }
            out.push('}');
        }
        (Kind::Union(u), Value::Variant(case, payload)) => {
            out.push_str(case);
            let c = u.cases.iter().find(|c| c.name == *case).expect("case");
            if let (Some(t), Some(p)) = (c.ty, payload) {
                out.push('(');
                dump_into(layout, t, p, out);
                out.push(')');
            }
        }
        (Kind::Array { elem, .. } | Kind::FixedArray { elem, .. }, Value::List(items)) => list(items, *elem, out),
        // A map reads as the SoA array of its entry struct.
        (Kind::Array { .. }, Value::Map(entries)) => {
            let (k, v) = layout.map_types(ty).expect("a map type");
            out.push('[');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str("{key: ");
                dump_into(layout, k, key, out);
                out.push_str(", value: ");
                dump_into(layout, v, value, out);
                out.push('}');
            }
            out.push(']');
        }
        (Kind::Option { some, .. }, Value::Option(v)) => match v {
            None => out.push_str("none"),
            Some(v) => {
                out.push_str("some(");
                dump_into(layout, *some, v, out);
                out.push(')');
            }
        },
        (Kind::Result { ok, err, .. }, Value::Result(r)) => {
            let (name, t, v) = match r {
                Ok(v) => ("ok", *ok, v),
                Err(v) => ("err", *err, v),
            };
            out.push_str(name);
            if let (Some(t), Some(v)) = (t, v) {
                let inner = dump(layout, t, v);
                if !inner.is_empty() {
                    write!(out, "({inner})").unwrap();
                }
            }
        }
        (kind, v) => panic!("no dump for {v:?} of {kind:?}"),
    }
}


/// The limits the generated validators are compared under: the defaults,
/// and tight ones that make the depth, visit and column limits trip.
const VALIDATE_LIMITS: [(u32, u64, u32); 4] = [(64, 1 << 28, 1024), (2, 1 << 28, 1024), (64, 300, 1024), (64, 1 << 28, 1)];

fn limits_of(i: usize) -> Limits {
    let (max_depth, max_visit, max_columns) = VALIDATE_LIMITS[i];
    Limits { max_depth, max_visit, max_columns }
}

/// Corrupted copies of a valid message: truncated, words set to offsets
/// past the end, huge lengths, misaligned offsets (a word plus 1..7),
/// other words and flipped bits; each changes one thing.
fn corruptions(bytes: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let len = bytes.len();
    for cut in [0, 4, 8, len / 2, len.saturating_sub(1), len.saturating_sub(64)] {
        if cut < len {
            out.push(bytes[..cut].to_vec());
        }
    }
    let words = len / 4;
    if words <= 1 {
        return out;
    }
    for _ in 0..24 {
        let w = 1 + rng.below(words as u64 - 1) as usize;
        let at = 4 * w;
        let old = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        // a word copied from the one before (duplicate hashes and tags),
        // or two words swapped (directories out of hash order)
        if rng.chance(20) && at + 8 <= len {
            let mut m = bytes.to_vec();
            if rng.chance(50) {
                m.copy_within(at - 4..at, at);
            } else {
                let (a, b) = (bytes[at..at + 4].to_vec(), bytes[at + 4..at + 8].to_vec());
                m[at..at + 4].copy_from_slice(&b);
                m[at + 4..at + 8].copy_from_slice(&a);
            }
            if m != bytes {
                out.push(m);
            }
            continue;
        }
        let new = match rng.below(10) {
            0 => len as u32,
            1 => len as u32 + 64,
            2 => u32::MAX,
            3 => 0x8000_0000 | old,
            4 => old.wrapping_add(1 + rng.below(7) as u32),
            5 => old.wrapping_add(64),
            6 => old.wrapping_sub(64),
            7 => 0,
            8 => old ^ (1 << rng.below(32)),
            _ => old.wrapping_mul(1 + rng.below(1000) as u32),
        };
        if new != old {
            let mut m = bytes.to_vec();
            m[at..at + 4].copy_from_slice(&new.to_le_bytes());
            out.push(m);
        }
    }
    out
}

#[test]
fn generated_code_compiles_for_the_corpus_and_round_trips() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace().join("target/gen-rust-check");
    let src = root.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(src.join("bin")).unwrap();
    let mut lib = String::from("//! Generated code for every fixture schema.\n#![no_std]\nextern crate alloc;\n");
    let mut driver = String::from(
        "//! Round trips through the generated code (written by format/tests/gen_rust.rs).\n\
         #![allow(unused_parens, clippy::all)]\n\
         use core::fmt::Write as _;\n\n\
         fn hex(bytes: &[u8]) -> String {\n    bytes.iter().map(|b| format!(\"{b:02x}\")).collect()\n}\n\n\
         fn show<T: karmem_format::typed::Dump>(r: Result<T, karmem_format::Error>) -> String {\n    let mut s = String::new();\n    let _ = karmem_format::typed::dump_result(&mut s, &r);\n    s\n}\n",
    );
    driver.push_str(FIG32_DRIVER);
    driver.push_str(MAPS_DRIVER);
    let mut calls = String::new();
    let mut expected: Vec<String> = Vec::new();
    let mut cases = 0;
    let mut mutated = 0;
    let mut validators: Vec<String> = Vec::new();
    let mut validate_cases: Vec<(String, String)> = Vec::new();
    let mut sources = corpus();
    sources.push(("extra_awkward_names".into(), "awkward-names.km".into(), AWKWARD_NAMES.into()));
    for (module, path, source) in sources {
        let layout: Arc<Layout> = common::layout(&source);
        std::fs::write(src.join(format!("{module}.rs")), generate(&layout, &path)).unwrap();
        lib.push_str(&format!("pub mod {module};\n"));
        let exprs = Exprs { layout: &layout, names: type_names(&layout), module: module.clone() };
        let mut rng = Rng(0x5eed ^ module.len() as u64);
        // The generated validator of every struct against the dynamic one,
        // over valid messages and corrupted ones, under several limits.
        for i in 0..layout.len() {
            let ty = TypeId(i as u32);
            if layout.as_struct(ty).is_none() {
                continue;
            }
            let index = validators.len();
            validators.push(format!("karmem_gen_check::{module}::{}View::validate", exprs.names[&ty]));
            let mut messages = vec![Vec::new(), karmem_format::raw::EMPTY_MESSAGE.to_vec()];
            for _ in 0..3 {
                let value = random::value(&layout, ty, &mut rng, 0);
                let bytes = encode(&layout, ty, &value).unwrap_or_else(|e| panic!("{module}: reference encode: {e}"));
                messages.extend(corruptions(&bytes, &mut rng));
                messages.push(bytes.to_vec());
            }
            for m in messages {
                let l = rng.below(VALIDATE_LIMITS.len() as u64) as usize;
                let want = format!("{:?}", validate(&m, &layout, ty, &limits_of(l)));
                validate_cases.push((format!("{index} {l} {}", hex_of(&m)), want));
            }
        }
        for i in 0..layout.len() {
            let ty = TypeId(i as u32);
            if !matches!(layout.get(ty).kind, Kind::Struct(_) | Kind::Union(_)) {
                continue;
            }
            // The empty message: every field of a dynamic struct reads as its
            // declared default or zero value (FORMAT.md §5.2, §7).
            if layout.is_dynamic_struct(ty)
                && let Ok(empty) = decode(&layout, ty, &[], &Limits::default())
            {
                let id = format!("c{cases}");
                cases += 1;
                let view = format!("karmem_gen_check::{module}::{}View", exprs.names[&ty]);
                let _ = writeln!(
                    driver,
                    "fn {id}() {{\n    println!(\"{id} empty {{}}\", show(karmem_format::typed::root::<{view}>(&[])));\n}}\n"
                );
                let _ = writeln!(calls, "    {id}();");
                expected.push(format!("{id} empty {}", dump(&layout, ty, &empty)));
            }
            for _ in 0..2 {
                let value = random::value(&layout, ty, &mut rng, 0);
                let bytes = encode(&layout, ty, &value).unwrap_or_else(|e| panic!("{module}: reference encode: {e}"));
                let back = decode(&layout, ty, &bytes, &Limits::default()).expect("reference decode");
                let id = format!("c{cases}");
                cases += 1;
                let view = format!("karmem_gen_check::{module}::{}View", exprs.names[&ty]);
                let _ = writeln!(
                    driver,
                    "fn {id}() {{\n    let written = karmem_format::typed::encode(&{}).unwrap();\n    println!(\"{id} write {{}}\", hex(&written));\n    let bytes = karmem_format::AlignedBuf::from_bytes(&{:?});\n    println!(\"{id} read {{}}\", show(karmem_format::typed::root::<{view}>(&bytes)));\n}}\n",
                    exprs.expr(ty, &value),
                    &bytes[..]
                );
                let _ = writeln!(calls, "    {id}();");
                expected.push(format!("{id} write {}", hex_of(&bytes)));
                expected.push(format!("{id} read {}", dump(&layout, ty, &back)));
                // A mutated message that still validates (non-canonical but
                // valid bytes: other numbers, tags, lengths within bounds):
                // the views read what the dynamic decoder reads.
                for _ in 0..8 {
                    let mut m = bytes.to_vec();
                    let at = 8 + rng.below(m.len().saturating_sub(8).max(1) as u64) as usize;
                    if let Some(byte) = m.get_mut(at) {
                        *byte ^= 1 << rng.below(8);
                    }
                    if validate(&m, &layout, ty, &Limits::default()).is_err() {
                        continue;
                    }
                    let Ok(read) = decode(&layout, ty, &m, &Limits::default()) else { continue };
                    let id = format!("c{cases}");
                    cases += 1;
                    mutated += 1;
                    let _ = writeln!(
                        driver,
                        "fn {id}() {{\n    let bytes = karmem_format::AlignedBuf::from_bytes(&{:?});\n    println!(\"{id} mutated {{}}\", show(karmem_format::typed::root::<{view}>(&bytes)));\n}}\n",
                        &m[..]
                    );
                    let _ = writeln!(calls, "    {id}();");
                    expected.push(format!("{id} mutated {}", dump(&layout, ty, &read)));
                    break;
                }
            }
        }
    }
    assert!(mutated > 100, "only {mutated} mutated messages validated");
    // Evolution through generated code: each version's views read the
    // other version's messages as the dynamic decoder does (FORMAT.md §5.2,
    // §6.3): unknown fields and columns skipped, absent ones defaulted.
    let versions: Vec<(String, Arc<Layout>)> = EVOLUTION.iter().map(|(m, src)| (m.to_string(), common::layout(src))).collect();
    for (module, layout) in &versions {
        std::fs::write(src.join(format!("{module}.rs")), generate(layout, &format!("{module}.km"))).unwrap();
        lib.push_str(&format!("pub mod {module};\n"));
    }
    let mut rng = Rng(0xE7011);
    let mut evolution_cases = 0;
    for (writer, reader) in [(0, 1), (1, 0)] {
        let (wm, wl) = &versions[writer];
        let (rm, rl) = &versions[reader];
        let exprs = Exprs { layout: wl, names: type_names(wl), module: wm.clone() };
        let reader_names = type_names(rl);
        for i in 0..wl.len() {
            let ty = TypeId(i as u32);
            let Some(name) = type_name(wl, ty) else { continue };
            let Some(rty) = (0..rl.len()).map(|j| TypeId(j as u32)).find(|&t| type_name(rl, t).as_deref() == Some(name.as_str())) else {
                continue;
            };
            for _ in 0..6 {
                let value = random::value(wl, ty, &mut rng, 0);
                let bytes = encode(wl, ty, &value).unwrap();
                // A newer enum case is an error for an older reader: not an evolution.
                let Ok(read) = decode(rl, rty, &bytes, &Limits::default()) else { continue };
                let id = format!("c{cases}");
                cases += 1;
                evolution_cases += 1;
                let view = format!("karmem_gen_check::{rm}::{}View", reader_names[&rty]);
                let _ = writeln!(
                    driver,
                    "fn {id}() {{\n    let written = karmem_format::typed::encode(&{}).unwrap();\n    println!(\"{id} evolved {{}}\", show(karmem_format::typed::root::<{view}>(&written)));\n}}\n",
                    exprs.expr(ty, &value)
                );
                let _ = writeln!(calls, "    {id}();");
                expected.push(format!("{id} evolved {}", dump(rl, rty, &read)));
            }
        }
    }
    assert!(evolution_cases >= 20, "only {evolution_cases} evolution cases");
    let _ = writeln!(driver, "fn main() {{\n    fig32_builders();\n    maps_api();\n{calls}}}");
    std::fs::write(src.join("lib.rs"), lib).unwrap();
    std::fs::write(src.join("bin/roundtrip.rs"), driver).unwrap();
    let mut vdriver = String::from(
        "//! The generated validators over the cases of format/tests/gen_rust.rs: one\n\
         //! line `validator limits hex` in, the result's `Debug` text out.\n\
         use std::io::BufRead as _;\n\n\
         type Validate = fn(&[u8], &karmem_format::Limits) -> Result<(), karmem_format::Error>;\n\n\
         const VALIDATORS: &[Validate] = &[\n",
    );
    for v in &validators {
        let _ = writeln!(vdriver, "    {v},");
    }
    let _ = writeln!(vdriver, "];\n\nconst LIMITS: [(u32, u64, u32); {}] = {VALIDATE_LIMITS:?};\n", VALIDATE_LIMITS.len());
    vdriver.push_str(
        "fn main() {\n\
         \x20   for line in std::io::stdin().lock().lines() {\n\
         \x20       let line = line.unwrap();\n\
         \x20       let mut parts = line.split(' ');\n\
         \x20       let v: usize = parts.next().unwrap().parse().unwrap();\n\
         \x20       let l: usize = parts.next().unwrap().parse().unwrap();\n\
         \x20       let hex = parts.next().unwrap_or(\"\");\n\
         \x20       let bytes: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();\n\
         \x20       let (max_depth, max_visit, max_columns) = LIMITS[l];\n\
         \x20       let limits = karmem_format::Limits { max_depth, max_visit, max_columns };\n\
         \x20       println!(\"{:?}\", VALIDATORS[v](&bytes, &limits));\n\
         \x20   }\n\
         }\n",
    );
    std::fs::write(src.join("bin/validate.rs"), vdriver).unwrap();
    let input: String = validate_cases.iter().map(|(line, _)| format!("{line}\n")).collect();
    std::fs::write(root.join("validate-cases.txt"), input).unwrap();
    let format_dir = workspace().join("format");
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[package]\nname = \"karmem-gen-check\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nkarmem-format = {{ path = {:?}, default-features = false, features = [\"alloc\"] }}\n\n\
             [profile.dev]\ndebug = false\n\n[workspace]\n",
            format_dir.display().to_string()
        ),
    )
    .unwrap();

    let run = |args: &[&str]| {
        let out = Command::new(&cargo)
            .args(args)
            .arg("--offline")
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", root.join("target"))
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo");
        assert!(out.status.success(), "cargo {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    run(&["build", "--lib"]);
    let wasm = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if wasm.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown")) {
        run(&["build", "--lib", "--target", "wasm32-unknown-unknown"]);
    } else {
        eprintln!("wasm32-unknown-unknown is not installed: the no_std wasm build is skipped");
    }
    // Generated and dynamic validators agree on every case.
    let out = Command::new(&cargo)
        .args(["run", "--quiet", "--offline", "--bin", "validate"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("RUSTFLAGS")
        .stdin(std::fs::File::open(root.join("validate-cases.txt")).unwrap())
        .output()
        .expect("run the validate driver");
    assert!(out.status.success(), "validate driver failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let got = String::from_utf8_lossy(&out.stdout).to_string();
    let got: Vec<&str> = got.lines().collect();
    assert_eq!(got.len(), validate_cases.len(), "one line per validate case");
    let mut failures = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    let mut valid = 0;
    for (g, (case, want)) in got.iter().zip(&validate_cases) {
        if *g != want.as_str() {
            failures.push(format!("  case {case}\n  generated: {g}\n  dynamic:   {want}"));
        }
        match want.split_once("kind: ") {
            Some((_, kind)) => {
                kinds.insert(kind.split([' ', ',', '}']).next().unwrap_or_default().to_string());
            }
            None => valid += 1,
        }
    }
    assert!(failures.is_empty(), "{} of {} validate cases differ:\n{}", failures.len(), validate_cases.len(), failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n"));
    // The cases reach many rules: valid messages and most kinds of error.
    assert!(valid > 200, "only {valid} valid cases");
    assert!(kinds.len() >= 10, "only these errors were reached: {kinds:?}");
    eprintln!("{} validate cases agree ({valid} valid; errors: {kinds:?})", validate_cases.len());

    let stdout = run(&["run", "--quiet", "--bin", "roundtrip"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("fig32 ")), "{stdout}");
    assert!(lines.get(1).is_some_and(|l| l.starts_with("maps ")), "{stdout}");
    let got: Vec<&str> = lines.iter().skip(2).copied().collect();
    assert_eq!(got.len(), expected.len(), "one line per expectation");
    let mut failures = Vec::new();
    for (g, e) in got.iter().zip(&expected) {
        if *g != e.as_str() {
            failures.push(format!("  got:      {g}\n  expected: {e}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} lines differ:\n{}", failures.len(), expected.len(), failures.join("\n"));
    assert!(cases > 100, "only {cases} cases");

    // The Figure 32 builders' bytes decode to the value they wrote.
    let hex = lines[0].trim_start_matches("fig32 ");
    let bytes: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    let source = corpus().into_iter().find(|(n, _, _)| n == "idl_paper_fig32").expect("paper-fig32.km").2;
    let layout = common::layout(&source);
    let ty = common::ty(&layout, "temperature_batch");
    let value = decode(&layout, ty, &bytes, &Limits::default()).expect("generated builder output decodes");
    let expected = common::wave(
        &layout,
        ty,
        "{readings: [{timestamp: 10, value: 1.5}, {timestamp: 20, value: 2.5}, {timestamp: 30, value: 3.5}]}",
    );
    assert_eq!(value, expected);

    // The map builders' bytes decode to the entries they pushed, in order.
    let hex = lines[1].trim_start_matches("maps ");
    let bytes: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
    let source = corpus().into_iter().find(|(n, _, _)| n == "idl_constructs").expect("constructs.km").2;
    let layout = common::layout(&source);
    let ty = common::ty(&layout, "maps");
    let value = decode(&layout, ty, &bytes, &Limits::default()).expect("generated map builder output decodes");
    let expected = common::wave(
        &layout,
        ty,
        r#"{counts: [("b", 2), ("a", 1), ("b", 3)], by-id: [(7, {x: 1.5, y: -2.0})], nested: [], wide-keys: []}"#,
    );
    assert_eq!(value, expected);
}

/// The TemperatureBatch bench reads through code generated from
/// `fixtures/idl/paper-fig32.km` (`format/benches/temperature_generated.rs`):
/// it is what the generator writes now. `BLESS=1` rewrites it.
#[test]
fn bench_generated_code_is_current() {
    let source = corpus().into_iter().find(|(n, _, _)| n == "idl_paper_fig32").expect("paper-fig32.km").2;
    let code = generate(&common::layout(&source), "fixtures/idl/paper-fig32.km");
    let path = workspace().join("format/benches/temperature_generated.rs");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &code).unwrap();
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(got == code, "`{}` is stale: run this test with BLESS=1", path.display());
}
