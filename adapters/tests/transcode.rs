//! Differential tests of the value transcoders: a value encoded by
//! `karmem-format`'s `Value` codec, decoded by the generated wasm into
//! canonical-ABI memory and read back per the canonical ABI (in Rust) must be
//! the same value; and a value written to canonical memory, encoded by the
//! generated wasm and decoded (validated) by the format crate must be too.
//! Fixed cases cover each construct and the traps; a property test covers
//! random schemas and values in all three string encodings.

// Test helpers index data they built themselves (clippy.toml exempts only
// `#[test]` functions).
#![allow(clippy::indexing_slicing, reason = "test code: an index out of range is a failed test")]

#[path = "abi/canonical.rs"]
mod canonical;
#[path = "abi/harness.rs"]
mod harness;
#[path = "abi/random.rs"]
mod random;

use anyhow::{Context, Result, anyhow, ensure};
use harness::Runner;
use karmem_adapters::canon::StringEncoding;
use karmem_format::Value;
use karmem_format::layout::{Layout, TypeId};
use proptest::prelude::*;
use random::Rng;
use wasmtime::Engine;

const ENCODINGS: [StringEncoding; 3] = [StringEncoding::Utf8, StringEncoding::Utf16, StringEncoding::Latin1Utf16];

fn layout_of(source: &str) -> Result<Layout> {
    let schema = karmem_idl::load(source, "test.km").map_err(|d| anyhow!("{d}"))?;
    Ok(Layout::new(&schema)?)
}

fn root_of(layout: &Layout) -> Result<TypeId> {
    layout.named("root").context("no `root`")
}

/// The transcoders of `root` with messages and values in one memory, and
/// with messages in a memory of their own (a Karmem edge memory).
fn builds(layout: &Layout, root: TypeId, encoding: StringEncoding) -> Result<[(&'static str, Vec<u8>); 2]> {
    Ok([
        ("one memory", harness::build(layout, root, encoding)?),
        ("edge memory", harness::build_split(layout, root, encoding)?),
    ])
}

/// Both directions for `value` of `root`, in every string encoding, in one
/// memory and across two.
fn round_trip(source: &str, value: &Value) -> Result<()> {
    let engine = Engine::default();
    let layout = layout_of(source)?;
    let root = root_of(&layout)?;
    for encoding in ENCODINGS {
        for (memories, wasm) in builds(&layout, root, encoding)? {
            let mut runner = Runner::new(&engine, &wasm, encoding)?;
            let read = runner.karmem_to_canonical(&layout, root, value).context("karmem -> canonical")?;
            ensure!(
                canonical::same(&read, value),
                "{encoding:?}, {memories}: karmem -> canonical:\n  got  {read:?}\n  want {value:?}"
            );
            ensure!(canonical::nans_canonical(&read), "NaN not canonical: {read:?}");
            let (written, _) = runner.canonical_to_karmem(&layout, root, value).context("canonical -> karmem")?;
            ensure!(
                canonical::same(&written, value),
                "{encoding:?}, {memories}: canonical -> karmem:\n  got  {written:?}\n  want {value:?}"
            );
            ensure!(canonical::nans_canonical(&written), "NaN not canonical: {written:?}");
        }
    }
    Ok(())
}

/// A named way to damage a message.
type Corruption<'a> = (&'a str, Box<dyn Fn(&mut Vec<u8>) + 'a>);

fn rec(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(n, v)| (n.to_string(), v)).collect())
}

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

#[test]
fn primitives_and_nans() -> Result<()> {
    let source = "struct root (dynamic) { a: u8; b: i16; c: u32; d: i64; e: f32; f: f64; g: bool; h: char; i: own<r>; }
                  resource r;";
    let value = rec(vec![
        ("a", Value::U8(200)),
        ("b", Value::S16(-2)),
        ("c", Value::U32(0xdead_beef)),
        ("d", Value::S64(i64::MIN)),
        ("e", Value::F32(f32::from_bits(0xffc0_0001))),
        ("f", Value::F64(-0.0)),
        ("g", Value::Bool(true)),
        ("h", Value::Char('😀')),
        ("i", Value::U32(7)),
    ]);
    round_trip(source, &value)
}

#[test]
fn strings_in_every_encoding() -> Result<()> {
    let source = "struct root (dynamic) { a: []u8 #string; b: []u16 #string; c: []([]u8 #string); }";
    for text in ["", "hello, world! long ascii run", "caf\u{e9} \u{ff}", "\u{1F600} astral \u{10FFFF}", "\u{800}\u{FFFD}"] {
        let value = rec(vec![("a", s(text)), ("b", s(text)), ("c", Value::List(vec![s(text), s("x")]))]);
        round_trip(source, &value)?;
    }
    Ok(())
}

#[test]
fn lists_soa_aos_and_bulk() -> Result<()> {
    let source = "
        struct point (inline) { x: f32; y: f32; tag: u8; }
        struct reading (dynamic) { at: i64; value: f32; name: []u8 #string; pos: point; }
        struct root (dynamic) {
            bytes: []u8; words: []u32; points: []point; points_aos: []point #aos;
            readings: []reading; nested: [][]u16; fixed: [3]u64; fixed_points: [5]point;
        }";
    let point = |x: f32| rec(vec![("x", Value::F32(x)), ("y", Value::F32(-x)), ("tag", Value::U8(x as u8))]);
    let reading = |i: i64| {
        rec(vec![("at", Value::S64(i)), ("value", Value::F32(i as f32)), ("name", s("r")), ("pos", point(i as f32))])
    };
    let value = rec(vec![
        ("bytes", Value::List((0..70).map(Value::U8).collect())),
        ("words", Value::List((0..9).map(Value::U32).collect())),
        ("points", Value::List((0..3).map(|i| point(i as f32)).collect())),
        ("points_aos", Value::List((0..2).map(|i| point(i as f32)).collect())),
        ("readings", Value::List((0..4).map(reading).collect())),
        ("nested", Value::List(vec![Value::List(vec![Value::U16(1)]), Value::List(vec![])])),
        ("fixed", Value::List(vec![Value::U64(1), Value::U64(2), Value::U64(3)])),
        ("fixed_points", Value::List((0..5).map(|i| point(i as f32)).collect())),
    ]);
    round_trip(source, &value)
}

/// Maps (FORMAT.md §6.5): the SoA array of the entry struct on the Karmem
/// side, `list<tuple<k, v>>` on the canonical side; order and repeated keys
/// kept; a tuple value flattened into columns; maps inside maps.
#[test]
fn maps_keep_order_and_repeated_keys() -> Result<()> {
    let source = "
        struct pair (inline) { _0: u8; _1: []u8 #string; }
        struct root (dynamic) {
            counts: map<[]u8 #string, u32>; groups: map<u32, []([]u8 #string)>;
            pairs: map<char, pair>; nested: map<i16, map<bool, f64>>; empty: map<u64, u8>;
        }";
    let map = |entries: Vec<(Value, Value)>| Value::Map(entries);
    let pair = |n: u8, t: &str| rec(vec![("_0", Value::U8(n)), ("_1", s(t))]);
    let value = rec(vec![
        ("counts", map(vec![(s("b"), Value::U32(2)), (s("\u{e9}t\u{e9}"), Value::U32(1)), (s("b"), Value::U32(3))])),
        ("groups", map(vec![(Value::U32(7), Value::List(vec![s("x"), s("yz")])), (Value::U32(0), Value::List(vec![]))])),
        ("pairs", map(vec![('k', pair(1, "one")), ('\u{1F600}', pair(2, ""))].into_iter().map(|(k, v)| (Value::Char(k), v)).collect())),
        ("nested", map(vec![(Value::S16(-1), map(vec![(Value::Bool(true), Value::F64(0.5)), (Value::Bool(true), Value::F64(-0.0))]))])),
        ("empty", map(vec![])),
    ]);
    round_trip(source, &value)
}

#[test]
fn unions_enums_flags_options_results() -> Result<()> {
    let source = "
        struct pair (inline) { a: u16; b: u64; }
        struct body (dynamic) { n: u32; }
        union shape (inline, u16) { dot; line: pair = 5; }
        union event (dynamic, u32) { moved: pair = 10; clicked: u32; named: []u8 #string; b: body; closed = 100; }
        enum color (u8) { red; green; blue = 7; }
        enum wide (u64) { big = 18446744073709551615; small = 1; }
        flags many { f0; f1; f2; f3; f4; f5; f6; f7; f8; f9; f10; f11; f12; f13; f14; f15; f16; f17; f18;
                     f19; f20; f21; f22; f23; f24; f25; f26; f27; f28; f29; f30; f31; f32; f33; }
        struct root (dynamic) {
            s: shape; e: []event; es: []event #soa; ss: []shape #soa; c: color; w: wide; f: many;
            o: option<option<[]u8 #string>>; r: result<u8, color>; r2: result; r3: result<_, event>;
        }";
    let pair = rec(vec![("a", Value::U16(3)), ("b", Value::U64(u64::MAX))]);
    let events = Value::List(vec![
        Value::Variant("moved".into(), Some(Box::new(pair.clone()))),
        Value::Variant("clicked".into(), Some(Box::new(Value::U32(9)))),
        Value::Variant("named".into(), Some(Box::new(s("n\u{e9}")))),
        Value::Variant("b".into(), Some(Box::new(rec(vec![("n", Value::U32(4))])))),
        Value::Variant("closed".into(), None),
    ]);
    let value = rec(vec![
        ("s", Value::Variant("line".into(), Some(Box::new(pair.clone())))),
        ("e", events.clone()),
        ("es", events),
        ("ss", Value::List(vec![Value::Variant("dot".into(), None), Value::Variant("line".into(), Some(Box::new(pair)))])),
        ("c", Value::Enum("blue".into())),
        ("w", Value::Enum("big".into())),
        ("f", Value::Flags(vec!["f0".into(), "f31".into(), "f33".into()])),
        ("o", Value::Option(Some(Box::new(Value::Option(Some(Box::new(s("deep")))))))),
        ("r", Value::Result(Err(Some(Box::new(Value::Enum("green".into())))))),
        ("r2", Value::Result(Ok(None))),
        ("r3", Value::Result(Err(Some(Box::new(Value::Variant("closed".into(), None)))))),
    ]);
    round_trip(source, &value)
}

#[test]
fn inline_root_and_empty_message() -> Result<()> {
    round_trip("struct root (inline) { a: u32; b: [2]char; }", &rec(vec![
        ("a", Value::U32(1)),
        ("b", Value::List(vec![Value::Char('a'), Value::Char('\u{10000}')])),
    ]))?;
    // the zero-length buffer is the empty message: every field absent
    let engine = Engine::default();
    let layout = layout_of("struct root (dynamic) { a: u32; s: []u8 #string; o: option<u8>; }")?;
    let root = root_of(&layout)?;
    let wasm = harness::build(&layout, root, StringEncoding::Utf8)?;
    let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
    let dst = runner.read_bytes(&layout, root, &[])?;
    let got = canonical::read(runner_mem(&mut runner), &layout, root, dst, StringEncoding::Utf8)?;
    let want = rec(vec![("a", Value::U32(0)), ("s", s("")), ("o", Value::Option(None))]);
    ensure!(canonical::same(&got, &want), "empty message read as {got:?}");
    Ok(())
}

fn runner_mem(runner: &mut Runner) -> &mut [u8] {
    canonical::Guest::mem(runner)
}

#[test]
fn evolution_reads_defaults_and_skips_unknown_columns() -> Result<()> {
    // written by v1, read by v2 which added fields with defaults
    let v1 = "struct item (dynamic) { a: u32; }
              struct root (dynamic) { x: u16; items: []item; }";
    let v2 = "enum mode (u8) { off; on; }
              struct item (dynamic) { a: u32; b: f64 = 0.5; m: mode = on; }
              struct root (dynamic) { x: u16; items: []item; y: i32 = -3; z: char = 'q'; w: []u8 #string; }";
    let old = layout_of(v1)?;
    let old_root = root_of(&old)?;
    let item = |a: u32| rec(vec![("a", Value::U32(a))]);
    let message = karmem_format::value::encode(
        &old,
        old_root,
        &rec(vec![("x", Value::U16(5)), ("items", Value::List(vec![item(1), item(2)]))]),
    )?;
    let new = layout_of(v2)?;
    let new_root = root_of(&new)?;
    let engine = Engine::default();
    let wasm = harness::build(&new, new_root, StringEncoding::Utf8)?;
    let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
    let dst = runner.read_bytes(&new, new_root, message.as_slice())?;
    let got = canonical::read(runner_mem(&mut runner), &new, new_root, dst, StringEncoding::Utf8)?;
    let new_item = |a: u32| rec(vec![("a", Value::U32(a)), ("b", Value::F64(0.5)), ("m", Value::Enum("on".into()))]);
    let want = rec(vec![
        ("x", Value::U16(5)),
        ("items", Value::List(vec![new_item(1), new_item(2)])),
        ("y", Value::S32(-3)),
        ("z", Value::Char('q')),
        ("w", s("")),
    ]);
    ensure!(canonical::same(&got, &want), "v1 message read by v2:\n  got  {got:?}\n  want {want:?}");
    // and a v2 message read by v1 skips what it does not know
    let message = karmem_format::value::encode(&new, new_root, &want)?;
    let wasm = harness::build(&old, old_root, StringEncoding::Utf8)?;
    let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
    let dst = runner.read_bytes(&old, old_root, message.as_slice())?;
    let got = canonical::read(runner_mem(&mut runner), &old, old_root, dst, StringEncoding::Utf8)?;
    let want = rec(vec![("x", Value::U16(5)), ("items", Value::List(vec![item(1), item(2)]))]);
    ensure!(canonical::same(&got, &want), "v2 message read by v1: {got:?}");
    Ok(())
}

/// Corrupts one valid message in a few ways; each must trap.
#[test]
fn bad_messages_trap() -> Result<()> {
    let source = "enum color (u8) { red; green; }
                  struct root (dynamic) { c: char; e: color; b: bool; s: []u8 #string; l: []u32; }";
    let layout = layout_of(source)?;
    let root = root_of(&layout)?;
    let value = rec(vec![
        ("c", Value::Char('x')),
        ("e", Value::Enum("green".into())),
        ("b", Value::Bool(true)),
        ("s", s("hi")),
        ("l", Value::List(vec![Value::U32(1)])),
    ]);
    let good = karmem_format::value::encode(&layout, root, &value)?.as_slice().to_vec();
    let engine = Engine::default();
    let wasm = harness::build(&layout, root, StringEncoding::Utf8)?;
    let body = u32::from_le_bytes(good[4..8].try_into()?) as usize;
    let field = |name: &str| -> Result<usize> {
        let s = layout.as_struct(root).context("struct")?;
        Ok(body + s.fields.iter().find(|f| f.name == name).context("field")?.offset as usize)
    };
    let slot_offset = |at: usize| u32::from_le_bytes(good[at..at + 4].try_into().unwrap_or_default()) as usize;
    let corruptions: Vec<Corruption<'_>> = vec![
        ("surrogate char", Box::new(|m: &mut Vec<u8>| m[field("c").unwrap_or(0)..][..4].copy_from_slice(&0xD800u32.to_le_bytes()))),
        ("char past U+10FFFF", Box::new(|m: &mut Vec<u8>| m[field("c").unwrap_or(0)..][..4].copy_from_slice(&0x110000u32.to_le_bytes()))),
        ("undeclared enum value", Box::new(|m: &mut Vec<u8>| m[field("e").unwrap_or(0)] = 2)),
        ("bool 2", Box::new(|m: &mut Vec<u8>| m[field("b").unwrap_or(0)] = 2)),
        ("invalid utf-8", Box::new(|m: &mut Vec<u8>| {
            let at = slot_offset(field("s").unwrap_or(0));
            m[at] = 0xC0;
        })),
        ("length past capacity", Box::new(|m: &mut Vec<u8>| m[field("l").unwrap_or(0) + 4] = 9)),
        ("array offset out of bounds", Box::new(|m: &mut Vec<u8>| {
            let at = field("l").unwrap_or(0);
            m[at..at + 4].copy_from_slice(&0x0010_0000u32.to_le_bytes());
        })),
        ("misaligned array block", Box::new(|m: &mut Vec<u8>| m[field("l").unwrap_or(0)] += 4)),
        ("root out of bounds", Box::new(|m: &mut Vec<u8>| m[4..8].copy_from_slice(&0xFFFF_FFF8u32.to_le_bytes()))),
        ("bad header word", Box::new(|m: &mut Vec<u8>| m[0] = 0x0D)),
        ("struct size past the end", Box::new(move |m: &mut Vec<u8>| m[body..body + 4].copy_from_slice(&(0xFFFu32 << 3).to_le_bytes()))),
        ("truncated", Box::new(|m: &mut Vec<u8>| m.truncate(6))),
    ];
    // the good message reads
    Runner::new(&engine, &wasm, StringEncoding::Utf8)?.read_bytes(&layout, root, &good)?;
    for (what, corrupt) in corruptions {
        let mut bad = good.clone();
        corrupt(&mut bad);
        let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
        let outcome = runner.read_bytes(&layout, root, &bad);
        ensure!(outcome.is_err(), "{what}: the reader accepted a corrupt message");
        let trap = outcome.err().map(|e| e.downcast_ref::<wasmtime::Trap>().copied());
        ensure!(trap == Some(Some(wasmtime::Trap::UnreachableCodeReached)), "{what}: expected a trap, got {trap:?}");
    }
    Ok(())
}

/// Canonical values the canonical ABI's lifting rejects trap in the writer.
#[test]
fn bad_canonical_values_trap() -> Result<()> {
    let layout = layout_of("enum color (u8) { red; green; } struct root (inline) { c: char; e: color; }")?;
    let root = root_of(&layout)?;
    let engine = Engine::default();
    let wasm = harness::build(&layout, root, StringEncoding::Utf8)?;
    for (what, bytes) in [("surrogate", [0x00, 0xD8, 0, 0, 0, 0, 0, 0]), ("enum index 2", [0x61, 0, 0, 0, 2, 0, 0, 0])] {
        let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
        let src = canonical::Guest::alloc(&mut runner, 8, 4)?;
        runner_mem(&mut runner)[src as usize..src as usize + 8].copy_from_slice(&bytes);
        let value = rec(vec![("c", Value::Char('a')), ("e", Value::Enum("red".into()))]);
        let _ = value;
        ensure!(write_raw(&mut runner, src).is_err(), "{what}: the writer accepted it");
    }
    Ok(())
}

fn write_raw(runner: &mut Runner, src: u32) -> Result<u64> {
    runner.write_raw(src)
}

fn random_case(seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let source = random::schema(&mut rng, 5);
    let layout = match karmem_idl::load(&source, "random.km") {
        Ok(schema) => Layout::new(&schema).map_err(|e| anyhow!("{e}\n{source}"))?,
        Err(diagnostics) => return Err(anyhow!("random schema does not resolve: {diagnostics}\n{source}")),
    };
    let root = root_of(&layout)?;
    let encoding = ENCODINGS[rng.below(3) as usize];
    let engine = Engine::default();
    let values: Vec<Value> = (0..4).map(|_| random::value(&mut rng, &layout, root, 0)).collect();
    for (memories, wasm) in builds(&layout, root, encoding).with_context(|| source.clone())? {
        let mut runner = Runner::new(&engine, &wasm, encoding)?;
        for value in &values {
            let read = runner.karmem_to_canonical(&layout, root, value).with_context(|| format!("{source}\n{value:?}"))?;
            ensure!(
                canonical::same(&read, value),
                "{encoding:?}, {memories}: karmem -> canonical\n{source}\n  got  {read:?}\n  want {value:?}"
            );
            let (written, _) =
                runner.canonical_to_karmem(&layout, root, value).with_context(|| format!("{source}\n{value:?}"))?;
            ensure!(
                canonical::same(&written, value),
                "{encoding:?}, {memories}: canonical -> karmem\n{source}\n  got  {written:?}\n  want {value:?}"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn random_types_and_values_round_trip(seed in any::<u64>()) {
        if let Err(error) = random_case(seed) {
            prop_assert!(false, "seed {seed}: {error:#}");
        }
    }
}

const BUNCH_SCHEMA: &str = "
    struct point_xy (inline) { x: f32; y: f32; }
    struct body (dynamic) { n: u32; name: []u8 #string; }
    union any_point (dynamic, u8) { point_2d: point_xy = 1; nothing = 7; }
    union event (inline, u16) { moved: point_xy = 3; named: []u8 #string = 4; b: body = 9; closed = 2; tick: u64 = 20; }
    struct root (dynamic) {
        bunch: []any_point #bovoa; soa_bunch: []any_point #bovos;
        events: []event #bovoa; soa_events: []event #bovos; empty: []event #bovos;
    }";

fn variant(case: &str, payload: Option<Value>) -> Value {
    Value::Variant(case.into(), payload.map(Box::new))
}

fn point_value(x: f32) -> Value {
    rec(vec![("x", Value::F32(x)), ("y", Value::F32(x * 2.0))])
}

/// The same values, in the order a bunch keeps: grouped by case, cases in
/// tag order, insertion order inside a case.
fn events_grouped() -> Value {
    Value::List(vec![
        variant("closed", None),
        variant("closed", None),
        variant("moved", Some(point_value(1.0))),
        variant("moved", Some(point_value(-3.5))),
        variant("named", Some(s("caf\u{e9} \u{1F600}"))),
        variant("b", Some(rec(vec![("n", Value::U32(7)), ("name", s("seven"))]))),
        variant("tick", Some(Value::U64(u64::MAX))),
    ])
}

#[test]
fn bunch_arrays_go_round_in_both_directions() -> Result<()> {
    let points = Value::List(vec![
        variant("point_2d", Some(point_value(3.0))),
        variant("point_2d", Some(point_value(f32::NAN))),
        variant("nothing", None),
        variant("nothing", None),
    ]);
    let value = rec(vec![
        ("bunch", points.clone()),
        ("soa_bunch", points),
        ("events", events_grouped()),
        ("soa_events", events_grouped()),
        ("empty", Value::List(Vec::new())),
    ]);
    round_trip(BUNCH_SCHEMA, &value)?;
    // one case only, and only payload-less values
    let value = rec(vec![
        ("bunch", Value::List(vec![variant("nothing", None); 3])),
        ("soa_bunch", Value::List(vec![variant("point_2d", Some(point_value(0.5)))])),
        ("events", Value::List(vec![variant("tick", Some(Value::U64(1)))])),
        ("soa_events", Value::List(vec![variant("b", Some(rec(vec![("n", Value::U32(1)), ("name", s(""))])))])),
        ("empty", Value::List(Vec::new())),
    ]);
    round_trip(BUNCH_SCHEMA, &value)
}

/// Values in any order come out grouped, exactly as `karmem-format`'s own
/// decoder returns what its encoder wrote.
#[test]
fn bunch_arrays_group_like_the_format_codec() -> Result<()> {
    let layout = layout_of(BUNCH_SCHEMA)?;
    let root = root_of(&layout)?;
    let mixed = Value::List(vec![
        variant("tick", Some(Value::U64(5))),
        variant("moved", Some(point_value(1.0))),
        variant("closed", None),
        variant("b", Some(rec(vec![("n", Value::U32(2)), ("name", s("x"))]))),
        variant("moved", Some(point_value(2.0))),
        variant("closed", None),
        variant("tick", Some(Value::U64(6))),
    ]);
    let value = rec(vec![
        ("bunch", Value::List(vec![variant("nothing", None), variant("point_2d", Some(point_value(9.0)))])),
        ("soa_bunch", Value::List(Vec::new())),
        ("events", mixed.clone()),
        ("soa_events", mixed),
        ("empty", Value::List(Vec::new())),
    ]);
    let message = karmem_format::value::encode(&layout, root, &value)?;
    let want = karmem_format::value::decode(&layout, root, message.as_slice(), &karmem_format::Limits::default())?;
    ensure!(!canonical::same(&want, &value), "the format codec kept the insertion order; the test proves nothing");
    let engine = Engine::default();
    for encoding in ENCODINGS {
        for (memories, wasm) in builds(&layout, root, encoding)? {
            let mut runner = Runner::new(&engine, &wasm, encoding)?;
            let read = runner.karmem_to_canonical(&layout, root, &value)?;
            ensure!(canonical::same(&read, &want), "{encoding:?}, {memories}: karmem -> canonical:\n  got  {read:?}\n  want {want:?}");
            let (written, _) = runner.canonical_to_karmem(&layout, root, &value)?;
            ensure!(canonical::same(&written, &want), "{encoding:?}, {memories}: canonical -> karmem:\n  got  {written:?}\n  want {want:?}");
        }
    }
    Ok(())
}

/// The bunch example of FORMAT.md §8, byte for byte, read by the adapter.
#[test]
fn bunch_golden_message_of_the_format_spec_reads() -> Result<()> {
    let layout = layout_of(
        "struct point_xy (inline) { x: f32; y: f32; }
         union any_point (dynamic, u8) { point_2d: point_xy = 1; nothing = 7; }
         struct root (dynamic) { pos: []any_point #soa; bunch: []any_point #bovoa; }",
    )?;
    let root = root_of(&layout)?;
    let mut message = vec![0u8; 448];
    let mut put = |at: usize, words: &[u32]| {
        for (i, w) in words.iter().enumerate() {
            message[at + 4 * i..at + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
    };
    put(0x00, &[0x0c, 0x08]);
    put(0x08, &[0x24, 0x40, 2, 2, 0x140, 3, 3]);
    put(0x40, &[2, 0x4b95f515, 0xfb69b604, 0x80, 0xc0]);
    put(0x80, &[0x0701]);
    put(0xc0, &[0x100, 0]);
    put(0x100, &[1.0f32.to_bits(), 2.0f32.to_bits()]);
    put(0x140, &[2, 0, 1, 0x180, 1, 1, 7, 0, 2, 2]);
    put(0x180, &[3.0f32.to_bits(), 4.0f32.to_bits()]);
    let engine = Engine::default();
    let wasm = harness::build(&layout, root, StringEncoding::Utf8)?;
    let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
    let dst = runner.read_bytes(&layout, root, &message)?;
    let got = canonical::read(runner_mem(&mut runner), &layout, root, dst, StringEncoding::Utf8)?;
    let xy = |x: f32, y: f32| rec(vec![("x", Value::F32(x)), ("y", Value::F32(y))]);
    let want = rec(vec![
        ("pos", Value::List(vec![variant("point_2d", Some(xy(1.0, 2.0))), variant("nothing", None)])),
        (
            "bunch",
            Value::List(vec![variant("point_2d", Some(xy(3.0, 4.0))), variant("nothing", None), variant("nothing", None)]),
        ),
    ]);
    ensure!(canonical::same(&got, &want), "FORMAT.md §8 example read as {got:?}");
    Ok(())
}

/// Corrupt bunch tables trap.
#[test]
fn bad_bunch_tables_trap() -> Result<()> {
    let layout = layout_of(BUNCH_SCHEMA)?;
    let root = root_of(&layout)?;
    let value = rec(vec![
        ("bunch", Value::List(Vec::new())),
        ("soa_bunch", Value::List(Vec::new())),
        ("events", events_grouped()),
        ("soa_events", Value::List(Vec::new())),
        ("empty", Value::List(Vec::new())),
    ]);
    let good = karmem_format::value::encode(&layout, root, &value)?.as_slice().to_vec();
    let word = |m: &[u8], at: usize| u32::from_le_bytes(m.get(at..at + 4).and_then(|b| b.try_into().ok()).unwrap_or_default());
    let body = word(&good, 4) as usize;
    let slot = body + layout.as_struct(root).context("root")?.fields.iter().find(|f| f.name == "events").context("events")?.offset as usize;
    let table = word(&good, slot) as usize;
    ensure!(word(&good, table) == 5, "expected 5 entries (closed, moved, named, b, tick)");
    let entry = |j: usize| table + 8 + 16 * j;
    let corruptions: Vec<Corruption<'_>> = vec![
        ("capacity != length", Box::new(move |m: &mut Vec<u8>| m[slot + 8] += 1)),
        ("tags not increasing", Box::new(move |m: &mut Vec<u8>| m[entry(1)] = 2)),
        ("undeclared tag", Box::new(move |m: &mut Vec<u8>| m[entry(4)] = 21)),
        // an entry: tag, then its slot (offset, length, capacity)
        ("entry lengths sum too high", Box::new(move |m: &mut Vec<u8>| m[entry(0) + 8] += 1)),
        ("entry lengths sum too low", Box::new(move |m: &mut Vec<u8>| {
            m[entry(0) + 8] -= 1;
            m[entry(0) + 12] -= 1;
        })),
        ("entry length past capacity", Box::new(move |m: &mut Vec<u8>| {
            m[entry(1) + 8] += 1;
            m[entry(0) + 8] -= 1;
        })),
        ("storage for payload-less values", Box::new(move |m: &mut Vec<u8>| m[entry(0) + 5] = 1)),
        ("table past the end", Box::new(move |m: &mut Vec<u8>| m[table..table + 4].copy_from_slice(&0x1000_0000u32.to_le_bytes()))),
        ("misaligned table", Box::new(move |m: &mut Vec<u8>| m[slot] += 8)),
        ("entry block out of bounds", Box::new(move |m: &mut Vec<u8>| {
            let at = entry(1) + 4;
            m[at..at + 4].copy_from_slice(&0x0100_0000u32.to_le_bytes());
        })),
    ];
    let engine = Engine::default();
    let wasm = harness::build(&layout, root, StringEncoding::Utf8)?;
    Runner::new(&engine, &wasm, StringEncoding::Utf8)?.read_bytes(&layout, root, &good)?;
    for (what, corrupt) in corruptions {
        let mut bad = good.clone();
        corrupt(&mut bad);
        let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
        let outcome = runner.read_bytes(&layout, root, &bad);
        ensure!(outcome.is_err(), "{what}: the reader accepted a corrupt bunch table");
        let trap = outcome.err().map(|e| e.downcast_ref::<wasmtime::Trap>().copied());
        ensure!(trap == Some(Some(wasmtime::Trap::UnreachableCodeReached)), "{what}: expected a trap, got {trap:?}");
    }
    Ok(())
}

/// A message whose SoA array claims `length` items but has no columns:
/// every item reads as its default, so the message stays 128 bytes.
fn columnless_message(length: u32) -> Vec<u8> {
    let mut m = vec![0u8; 128];
    for (at, word) in [(0usize, 0x0Cu32), (4, 8), (8, 0x10), (12, 64), (16, length), (20, length), (64, 0)] {
        m[at..at + 4].copy_from_slice(&u32::to_le_bytes(word));
    }
    m
}

const COLUMNLESS_SCHEMA: &str = "struct item (inline) { a: u64; b: u64; } struct root (dynamic) { items: []item; }";

/// docs/ABI.md §7: a small hostile message cannot make the reader allocate
/// without bound; the reader traps before it allocates past the limit.
#[test]
fn decode_limit_stops_amplification() -> Result<()> {
    let layout = layout_of(COLUMNLESS_SCHEMA)?;
    let root = root_of(&layout)?;
    let engine = Engine::default();
    let wasm = harness::build(&layout, root, StringEncoding::Utf8)?;
    // 2^24 items of 16 bytes: 256 MiB from 128 bytes
    let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
    let before = runner_mem(&mut runner).len();
    let outcome = runner.read_bytes(&layout, root, &columnless_message(1 << 24));
    let trap = outcome.err().map(|e| e.downcast_ref::<wasmtime::Trap>().copied());
    ensure!(trap == Some(Some(wasmtime::Trap::UnreachableCodeReached)), "expected a trap, got {trap:?}");
    let after = runner_mem(&mut runner).len();
    ensure!(after - before < 1 << 20, "the reader grew memory by {} bytes before trapping", after - before);
    // within the limit the same shape reads (every item its default)
    let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
    let dst = runner.read_bytes(&layout, root, &columnless_message(1000))?;
    let got = canonical::read(runner_mem(&mut runner), &layout, root, dst, StringEncoding::Utf8)?;
    let zero = rec(vec![("a", Value::U64(0)), ("b", Value::U64(0))]);
    ensure!(canonical::same(&got, &rec(vec![("items", Value::List(vec![zero; 1000]))])), "defaults not read");
    Ok(())
}

/// The limit is `base + per_byte × message length`, counted in canonical
/// bytes (at least one per list element; strings at their worst case).
#[test]
fn decode_limit_is_base_plus_per_byte() -> Result<()> {
    let layout = layout_of(COLUMNLESS_SCHEMA)?;
    let root = root_of(&layout)?;
    let engine = Engine::default();
    let options = |base, per_byte| karmem_adapters::transcode::TranscodeOptions {
        decode_limit: karmem_adapters::transcode::DecodeLimit { base, per_byte },
        ..Default::default()
    };
    // 128-byte message: the limit is base + 256; 100 items take 1600 bytes
    for (base, fits) in [(1344, true), (1343, false)] {
        let wasm = harness::build_with(&layout, root, options(base, 2))?;
        let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
        let outcome = runner.read_bytes(&layout, root, &columnless_message(100));
        ensure!(outcome.is_ok() == fits, "base {base}: expected fits = {fits}, got {outcome:?}");
    }
    // strings: a 300-byte UTF-8 string for a UTF-8 guest takes 300 bytes
    let layout = layout_of("struct root (dynamic) { s: []u8 #string; }")?;
    let root = root_of(&layout)?;
    let text = "x".repeat(300);
    let message = karmem_format::value::encode(&layout, root, &rec(vec![("s", s(&text))]))?.as_slice().to_vec();
    for (base, fits) in [(300, true), (299, false)] {
        let wasm = harness::build_with(&layout, root, options(base, 0))?;
        let mut runner = Runner::new(&engine, &wasm, StringEncoding::Utf8)?;
        let outcome = runner.read_bytes(&layout, root, &message);
        ensure!(outcome.is_ok() == fits, "string, base {base}: expected fits = {fits}, got {outcome:?}");
    }
    Ok(())
}
