//! The TypeScript code generator, end to end: the code `gen ts` writes for
//! every schema of the fixture corpus (`fixtures/idl/*.km`,
//! `fixtures/wit/*.km`, `contract/descriptor.km`, plus awkward names and
//! two versions of an evolving schema) type-checks with `tsc --strict`
//! against the JavaScript host's types (`hosts/js`), and on node, for every
//! struct and union of every schema, messages of random values written by
//! the reference encoder (`value::encode`) are read through the generated
//! views (`decodeFoo`: `FooView` getters, SoA columns, union views) and
//! written again through the generated writers (`encodeFoo`) to the bytes
//! the reference encoder writes for what it decodes; the views' values also
//! equal the JavaScript dynamic codec's. Cases: random values, the empty
//! message (every field default), mutated messages that still validate,
//! and each schema version reading the other's messages.
//!
//! Needs node and TypeScript (`scripts/runners.sh --js`, which installs
//! hosts/js's devDependencies); without them the test is skipped with a
//! note, unless `CI` is set.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing,
    reason = "test code: a failed step fails the test, and it indexes data it built itself"
)]

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Command;

use karmem_format::gen_ts::{generate, ts_names};
use karmem_format::layout::{Kind, Layout, TypeId};
use karmem_format::value::{Value, decode, encode};
use karmem_format::{Limits, validate};

use common::random::{self, Rng};

use common::tools::workspace;

/// ["NODE", "TSC"] from `scripts/runners.sh --js`, or None (after a note) when
/// unavailable and CI is unset.
fn js_env() -> Option<(String, String)> {
    common::tools::runners_env("--js", ["NODE", "TSC"], "the gen ts test").map(|[a, b]| (a, b))
}

/// The generators' corpus plus the ABI's descriptor schema.
fn corpus() -> Vec<(String, String, String)> {
    let mut out = common::tools::corpus();
    let descriptor = workspace().join("contract/descriptor.km");
    out.push(("abi_descriptor".into(), "contract/descriptor.km".into(), std::fs::read_to_string(descriptor).unwrap()));
    out
}

/// Names that clash with TypeScript keywords, globals, generated members and
/// the runtime's names.
const AWKWARD_NAMES: &str = "
    flags names { names; type; constructor; to_value; }
    enum error (u8) { none; some; ok; err; case; }
    union result_ (dynamic, u8) { len: u32; type: error; value; case: u8; }
    struct array (inline) { at: u8; length: u8; get: u16; }
    struct list (dynamic) { m: u8; b: u8; constructor: u32; to_value: u8; toValue: u8; }
    struct option_ (dynamic) {
        at: u32; root: []u8 #string; array: array; default: names; new: error; class: list;
        type: []array; msg: result_; used: []result_ #bovoa; len: []array #soa; union_soa: []result_ #soa;
        function: map<[]u8 #string, array>; math: u8; json: []list;
    }
    interface layout (dynamic, direct) { default: fn(class: u8, guest: list) (return: u8); }
";

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
         struct reading (dynamic) { id: u32; value: f32; unit: []u8 #string = \"C\"; at: point; level: level = high; scale: f32 = 1.1; big: i64 = -7; }
         struct batch (dynamic) { name: []u8 #string; readings: []reading; tags: []([]u8 #string); note: option<[]u8 #string>; count: u64 = 9; }
         interface api (dynamic, direct) { send: fn(b: batch, retries: u8) (ok: bool, took: u64); }",
    ),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `v` with every NaN quieted (`canonical`: made the canonical NaN). A
/// JavaScript engine may quiet a signalling NaN it loads, or drop its payload.
fn nans(v: Value, canonical: bool) -> Value {
    let boxed = |b: Option<Box<Value>>| b.map(|x| Box::new(nans(*x, canonical)));
    match v {
        Value::F32(x) if x.is_nan() => Value::F32(if canonical { f32::NAN } else { f32::from_bits(x.to_bits() | 0x0040_0000) }),
        Value::F64(x) if x.is_nan() => {
            Value::F64(if canonical { f64::NAN } else { f64::from_bits(x.to_bits() | 0x0008_0000_0000_0000) })
        }
        Value::List(items) => Value::List(items.into_iter().map(|x| nans(x, canonical)).collect()),
        Value::Record(fields) => Value::Record(fields.into_iter().map(|(n, x)| (n, nans(x, canonical))).collect()),
        Value::Variant(n, p) => Value::Variant(n, boxed(p)),
        Value::Option(p) => Value::Option(boxed(p)),
        Value::Result(r) => Value::Result(r.map(boxed).map_err(boxed)),
        Value::Map(entries) => Value::Map(entries.into_iter().map(|(k, x)| (nans(k, canonical), nans(x, canonical))).collect()),
        other => other,
    }
}

fn type_name(layout: &Layout, ty: TypeId) -> Option<String> {
    match &layout.get(ty).kind {
        Kind::Struct(s) => Some(s.name.clone()),
        Kind::Union(u) => Some(u.name.clone()),
        _ => None,
    }
}

const DRIVER_MAIN: &str = r#"
const hexOf = (b) => Buffer.from(b).toString("hex");

// The paper's Figure 32 written top-down (builder, SoA columns as typed
// arrays) gives the bytes of the value writer; the views read it back.
{
  const fig = await import("./out/gen/idl_paper_fig32.js");
  const b = new Builder();
  const batch = fig.TemperatureBatchBuilder.newRoot(b);
  const readings = batch.allocReadings(3);
  readings.timestampArray().set([10n, 20n, 30n]);
  readings.setValue(0, 1.5).setValue(1, 2.5).setValue(2, 3.5);
  const built = b.finish();
  const value = { readings: [10n, 20n, 30n].map((timestamp, i) => ({ timestamp, value: [1.5, 2.5, 3.5][i] })) };
  const view = fig.TemperatureBatchView.root(built);
  const sum = [...view.readings.valueArray()].reduce((a, x) => a + x, 0);
  const ok = hexOf(built) === hexOf(fig.encodeTemperatureBatch(value)) && sum === 7.5 && view.readings.get(2).timestamp === 30n &&
    view.readings.timestampColumn().get(1) === 20n && fig.AnalysisResultView.root(new Uint8Array(0)).min_temperature === 0;
  console.log(`fig32 ${ok ? "ok" : "differs"} ${hexOf(built)}`);
}

const lines = readFileSync(process.argv[2], "utf8").trim().split("\n");
const out = [];
for (const line of lines) {
  const [id, key, input] = line.split(" ");
  const [module, name] = key.split(".");
  const m = modules[module];
  const bytes = input === "-" ? new Uint8Array(0) : new Uint8Array(Buffer.from(input, "hex"));
  try {
    const value = m[`decode${name}`](bytes);
    const again = m[`encode${name}`](value);
    const viewed = JSON.stringify(toJson(value));
    const dynamic = JSON.stringify(toJson(decode(m.layout, m[`${name}Type`], bytes)));
    out.push(`${id} ${hexOf(again)} ${viewed === dynamic ? "same" : `differs ${viewed} ${dynamic}`}`);
  } catch (e) {
    out.push(`${id} error ${String(e?.stack ?? e)}`.replaceAll("\n", " "));
  }
}
console.log(out.join("\n"));
"#;

#[test]
fn generated_ts_type_checks_for_the_corpus_and_round_trips() {
    let Some((node, tsc)) = js_env() else { return };
    let root = workspace().join("target/gen-ts-check");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("gen")).unwrap();
    std::fs::create_dir_all(root.join("node_modules")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(workspace().join("hosts/js"), root.join("node_modules/karmem-host")).unwrap();
    std::fs::write(root.join("package.json"), "{\"type\": \"module\", \"private\": true}\n").unwrap();
    std::fs::write(
        root.join("tsconfig.json"),
        r#"{"compilerOptions": {"strict": true, "target": "es2022", "module": "nodenext", "moduleResolution": "nodenext",
  "lib": ["es2022", "dom"], "types": [], "rootDir": ".", "outDir": "out", "noEmitOnError": true, "skipLibCheck": false},
 "include": ["gen/*.ts"]}"#,
    )
    .unwrap();

    let mut imports = String::new();
    let mut table = String::new();
    let mut data = String::new();
    // (case id, the reference bytes; the same with NaNs quieted, made canonical)
    let mut expected: Vec<(String, [String; 3])> = Vec::new();
    let add_case = |key: &str, input: &[u8], (layout, ty): (&Layout, TypeId), data: &mut String, expected: &mut Vec<(String, [String; 3])>| {
        let id = format!("c{}", expected.len());
        let read = decode(layout, ty, input, &Limits::default()).unwrap();
        let want = encode(layout, ty, &read).unwrap();
        let quiet = encode(layout, ty, &nans(read.clone(), false)).unwrap();
        let canonical = encode(layout, ty, &nans(read, true)).unwrap();
        let input = if input.is_empty() { "-".to_string() } else { hex(input) };
        let _ = writeln!(data, "{id} {key} {input}");
        expected.push((id, [hex(&want), hex(&quiet), hex(&canonical)]));
    };

    let mut sources = corpus();
    sources.push(("extra_awkward_names".into(), "awkward-names.km".into(), AWKWARD_NAMES.into()));
    for (name, src) in EVOLUTION {
        sources.push((name.into(), format!("{name}.km"), src.into()));
    }
    let mut layouts = Vec::new();
    let mut mutated = 0usize;
    for (n, (module, path, source)) in sources.iter().enumerate() {
        let layout = common::layout(source);
        std::fs::write(root.join("gen").join(format!("{module}.ts")), generate(&layout, path, "karmem-host")).unwrap();
        let _ = writeln!(imports, "import * as m{n} from \"./out/gen/{module}.js\";");
        let _ = writeln!(table, "  {module}: m{n},");
        let names = ts_names(&layout);
        let mut rng = Rng(0x5eed ^ module.len() as u64);
        for i in 0..layout.len() {
            let ty = TypeId(i as u32);
            if !matches!(layout.get(ty).kind, Kind::Struct(_) | Kind::Union(_)) {
                continue;
            }
            let name = &names[&ty];
            let key = format!("{module}.{name}");
            if layout.is_dynamic_struct(ty) && decode(&layout, ty, &[], &Limits::default()).is_ok() {
                add_case(&key, &[], (&layout, ty), &mut data, &mut expected);
            }
            for _ in 0..2 {
                let value = random::value(&layout, ty, &mut rng, 0);
                let bytes = encode(&layout, ty, &value).unwrap_or_else(|e| panic!("{module}: reference encode: {e}"));
                add_case(&key, &bytes, (&layout, ty), &mut data, &mut expected);
                for _ in 0..8 {
                    let mut m = bytes.to_vec();
                    let at = 8 + rng.below(m.len().saturating_sub(8).max(1) as u64) as usize;
                    if let Some(byte) = m.get_mut(at) {
                        *byte ^= 1 << rng.below(8);
                    }
                    if validate(&m, &layout, ty, &Limits::default()).is_err() || decode(&layout, ty, &m, &Limits::default()).is_err() {
                        continue;
                    }
                    mutated += 1;
                    add_case(&key, &m, (&layout, ty), &mut data, &mut expected);
                    break;
                }
            }
        }
        layouts.push((module.clone(), layout));
    }
    // Evolution: each version's views read the other's messages as the
    // reference decoder does (unknown fields and columns skipped, absent ones
    // defaulted), and its writers write what the reference writes.
    let versions: Vec<_> = layouts.iter().filter(|(m, _)| m.starts_with("evo_")).cloned().collect();
    let mut rng = Rng(0xE7011);
    let mut evolution = 0;
    for (w, r) in [(0, 1), (1, 0)] {
        let (_, wl) = &versions[w];
        let (rm, rl) = &versions[r];
        let reader_names = ts_names(rl);
        for i in 0..wl.len() {
            let ty = TypeId(i as u32);
            let Some(name) = type_name(wl, ty) else { continue };
            let Some(rty) = (0..rl.len()).map(|j| TypeId(j as u32)).find(|&t| type_name(rl, t).as_deref() == Some(name.as_str())) else {
                continue;
            };
            for _ in 0..6 {
                let value = random::value(wl, ty, &mut rng, 0);
                let bytes = encode(wl, ty, &value).unwrap();
                if decode(rl, rty, &bytes, &Limits::default()).is_err() {
                    continue;
                }
                evolution += 1;
                add_case(&format!("{rm}.{}", reader_names[&rty]), &bytes, (rl, rty), &mut data, &mut expected);
            }
        }
    }
    assert!(mutated > 100, "only {mutated} mutated messages validated");
    assert!(evolution >= 20, "only {evolution} evolution cases");

    let driver = format!(
        "// Round trips through generated TypeScript (written by format/tests/gen_ts.rs).\n\
         import {{ readFileSync }} from \"node:fs\";\nimport {{ Buffer }} from \"node:buffer\";\n\
         import {{ Builder, decode, toJson }} from \"karmem-host\";\n{imports}\n\
         const modules = {{\n{table}}};\n{DRIVER_MAIN}"
    );
    std::fs::write(root.join("driver.mjs"), driver).unwrap();
    std::fs::write(root.join("cases.txt"), &data).unwrap();
    let wanted: String = expected.iter().map(|(id, w)| format!("{id} {}\n", w[0])).collect();
    std::fs::write(root.join("expected.txt"), wanted).unwrap();

    let checked = Command::new(&node).arg(&tsc).arg("-p").arg(&root).current_dir(&root).output().expect("run tsc");
    assert!(
        checked.status.success(),
        "tsc --strict rejects the generated code:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let ran = Command::new(&node).arg("driver.mjs").arg("cases.txt").current_dir(&root).output().expect("run node");
    assert!(ran.status.success(), "the driver failed:\n{}", String::from_utf8_lossy(&ran.stderr));
    let stdout = String::from_utf8_lossy(&ran.stdout).to_string();
    let first = stdout.lines().next().unwrap_or("");
    assert!(first.starts_with("fig32 ok "), "the Figure 32 builder check failed: {first}");
    // The builder's bytes decode (reference decoder) to the value it wrote.
    let built: Vec<u8> = {
        let h = first.trim_start_matches("fig32 ok ");
        (0..h.len() / 2).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap()).collect()
    };
    let fig32 = &layouts.iter().find(|(m, _)| m == "idl_paper_fig32").expect("paper-fig32.km").1;
    let batch = common::ty(fig32, "temperature_batch");
    assert_eq!(
        decode(fig32, batch, &built, &Limits::default()).unwrap(),
        common::wave(fig32, batch, "{readings: [{timestamp: 10, value: 1.5}, {timestamp: 20, value: 2.5}, {timestamp: 30, value: 3.5}]}")
    );
    let got: HashMap<&str, &str> = stdout.lines().skip(1).filter_map(|l| l.split_once(' ')).collect();
    let keys: HashMap<&str, &str> = data.lines().filter_map(|l| {
        let mut p = l.split(' ');
        Some((p.next()?, p.next()?))
    }).collect();
    let mut failures = Vec::new();
    for (id, wants) in &expected {
        let line = got.get(id.as_str()).copied().unwrap_or("<no output>");
        let ok = wants.iter().any(|w| line == format!("{w} same"));
        if !ok {
            failures.push(format!("{id} ({}): expected {} same\n      got {line}", keys.get(id.as_str()).unwrap_or(&""), wants[0]));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), expected.len(), failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n"));
    assert!(expected.len() > 300, "only {} cases", expected.len());
    eprintln!("gen ts: {} cases round-trip ({mutated} mutated, {evolution} across versions)", expected.len());
}
