//! The Go code generator, end to end: the code generated for every schema of
//! the fixture corpus (`fixtures/idl/*.km`, `fixtures/wit/*.km`,
//! `contract/descriptor.km`) passes `go vet` against the Go host's `karmem`
//! package (`hosts/go`), and for every struct and union of every schema,
//! messages of random values written by the reference encoder
//! (`value::encode`) are read by the generated code and written again to
//! the same bytes — through the typed value types (`DecodeFoo`, `Encode`),
//! through the views (`ViewFoo(..).Value()`), and through the Go dynamic
//! codec over the generated layout (`karmem.DecodeValue`/`EncodeValue`).
//! Also: the empty message (every field default), mutated messages that
//! still validate, and two schema versions reading each other's messages.
//!
//! Needs Go (`scripts/runners.sh --go`); without it the test is skipped
//! with a note, unless `CI` is set.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing,
    reason = "test code: a failed step fails the test, and it indexes data it built itself"
)]

mod common;

use std::fmt::Write as _;
use std::process::Command;

use karmem_format::gen_go::{generate, package_name};
use karmem_format::gen_rust::type_names;
use karmem_format::layout::{Kind, Layout, TypeId};
use karmem_format::value::{Value, decode, encode};
use karmem_format::{Limits, validate};

use common::random::{self, Rng};

use common::tools::workspace;

/// ["GO", "WAZERO"] from `scripts/runners.sh --go`, or None (after a note) when
/// unavailable and CI is unset.
fn go_env() -> Option<(String, String)> {
    common::tools::runners_env("--go", ["GO", "WAZERO"], "the gen go test").map(|[a, b]| (a, b))
}

/// (Go package, source path, source) of every corpus schema.
fn corpus() -> Vec<(String, String, String)> {
    let mut out: Vec<_> =
        common::tools::corpus().into_iter().map(|(name, path, source)| (package_name(&name), path, source)).collect();
    let descriptor = workspace().join("contract/descriptor.km");
    out.push(("abi_descriptor".into(), "contract/descriptor.km".into(), std::fs::read_to_string(descriptor).unwrap()));
    out
}

/// Names that clash with Go's keywords, predeclared names and generated methods.
const AWKWARD_NAMES: &str = "
    flags names { names; type; func; encode; }
    enum error (u8) { none; some; ok; err; string; }
    union result_ (dynamic, u8) { len: u32; type: error; tag; encode; }
    struct value (inline) { at: u8; value: u8; encode: u16; present: u8; }
    struct option_ (dynamic) {
        at: u32; root: []u8 #string; value: value; value_view: names; new: error; tag: u8;
        type: []value; msg: result_; used: []result_ #bovoa; len: []value #soa; array: []result_ #soa;
        func: map<[]u8 #string, value>; write_root: u8; m: u8;
    }
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
         struct reading (dynamic) { id: u32; value: f32; unit: []u8 #string = \"C\"; at: point; level: level = high; }
         struct batch (dynamic) { name: []u8 #string; readings: []reading; tags: []([]u8 #string); note: option<[]u8 #string>; count: u64 = 9; }
         interface api (dynamic, direct) { send: fn(b: batch, retries: u8) (ok: bool, took: u64); }",
    ),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `v` with every NaN made the canonical NaN.
fn canonical_nans(v: Value) -> Value {
    let boxed = |b: Option<Box<Value>>| b.map(|x| Box::new(canonical_nans(*x)));
    match v {
        Value::F32(x) if x.is_nan() => Value::F32(f32::NAN),
        Value::F64(x) if x.is_nan() => Value::F64(f64::NAN),
        Value::List(items) => Value::List(items.into_iter().map(canonical_nans).collect()),
        Value::Record(fields) => Value::Record(fields.into_iter().map(|(n, x)| (n, canonical_nans(x))).collect()),
        Value::Variant(n, p) => Value::Variant(n, boxed(p)),
        Value::Option(p) => Value::Option(boxed(p)),
        Value::Result(r) => Value::Result(r.map(boxed).map_err(boxed)),
        Value::Map(entries) => Value::Map(entries.into_iter().map(|(k, x)| (canonical_nans(k), canonical_nans(x))).collect()),
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

/// The driver's table entry for (package, type): typed and dynamic round trips.
fn driver_entry(pkg: &str, name: &str, id: TypeId, is_struct: bool) -> String {
    let view = if is_struct {
        format!("\n\t\tfunc(b []byte) ([]byte, error) {{\n\t\t\tv, err := {pkg}.View{name}(b)\n\t\t\tif err != nil {{\n\t\t\t\treturn nil, err\n\t\t\t}}\n\t\t\tx, err := v.Value()\n\t\t\tif err != nil {{\n\t\t\t\treturn nil, err\n\t\t\t}}\n\t\t\treturn x.Encode()\n\t\t}},")
    } else {
        "\n\t\tnil,".to_string()
    };
    format!(
        "\t\"{pkg}.{name}\": {{\n\t\tfunc(b []byte) ([]byte, error) {{\n\t\t\tv, err := {pkg}.Decode{name}(b)\n\t\t\tif err != nil {{\n\t\t\t\treturn nil, err\n\t\t\t}}\n\t\t\treturn v.Encode()\n\t\t}},{view}\n\t\tfunc(b []byte) ([]byte, error) {{\n\t\t\tv, err := karmem.DecodeValue({pkg}.KarmemLayout, {}, b, nil)\n\t\t\tif err != nil {{\n\t\t\t\treturn nil, err\n\t\t\t}}\n\t\t\treturn karmem.EncodeValue({pkg}.KarmemLayout, {}, v, nil)\n\t\t}},\n\t}},\n",
        id.0, id.0
    )
}

const DRIVER_MAIN: &str = r#"
func main() {
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.Fields(line)
		id, key, input := parts[0], parts[1], parts[2]
		if input == "-" {
			input = ""
		}
		bytes, _ := hex.DecodeString(input)
		paths := table[key]
		for i, f := range paths {
			if f == nil {
				continue
			}
			out, err := f(bytes)
			if err != nil {
				fmt.Printf("%s %d error %v\n", id, i, err)
			} else {
				fmt.Printf("%s %d %x\n", id, i, out)
			}
		}
	}
}
"#;

/// Go code committed in hosts/go must be what `gen go` writes now: the
/// descriptor reader of the host (ABI.md §5, `contract/descriptor.km`) and
/// the examples' generated packages.
#[test]
fn the_go_hosts_generated_code_is_up_to_date() {
    for (km, go, package) in [
        ("contract/descriptor.km", "hosts/go/internal/abi/descriptor.go", "abi"),
        ("hosts/go/examples/basics/basics.km", "hosts/go/examples/basics/basics.go", "basics"),
        ("hosts/go/examples/temperature/temperature.km", "hosts/go/examples/temperature/temperature.go", "temperature"),
    ] {
        let source = std::fs::read_to_string(workspace().join(km)).unwrap();
        let want = generate(&common::layout(&source), km, package).unwrap();
        let have = std::fs::read_to_string(workspace().join(go)).unwrap_or_default();
        assert!(have == want, "{go} is stale: regenerate it with `karmem-bridge gen go {km} -o {go} --package {package}`");
    }
}

/// A type that would contain itself by value in Go is refused, named.
#[test]
fn recursive_types_are_refused_by_name() {
    for (source, name) in [
        ("union expr (dynamic, u8) { lit: u32; neg: expr; }", "expr"),
        ("struct pair (dynamic) { a: node; } struct node (dynamic) { p: pair; }", "pair"),
    ] {
        let err = generate(&common::layout(source), "rec.km", "rec").unwrap_err();
        assert!(err.0.contains(&format!("`{name}`")), "{err}");
    }
    // Recursion through an option or an array is fine.
    let ok = common::layout("struct node (dynamic) { next: option<node>; kids: []node; }");
    assert!(generate(&ok, "rec.km", "rec").is_ok());
}

#[test]
fn generated_go_vets_for_the_corpus_and_round_trips() {
    let Some((go, wazero)) = go_env() else { return };
    let root = workspace().join("target/gen-go-check");
    let _ = std::fs::remove_dir_all(root.join("gen"));
    std::fs::create_dir_all(root.join("gen")).unwrap();
    std::fs::create_dir_all(root.join("driver")).unwrap();
    let hosts = workspace().join("hosts/go");
    std::fs::write(
        root.join("go.mod"),
        format!(
            "module gencheck\n\ngo 1.22\n\nrequire karmem-bridge/hosts/go v0.0.0\n\nreplace karmem-bridge/hosts/go => {}\n\nreplace github.com/tetratelabs/wazero => {wazero}\n",
            hosts.display()
        ),
    )
    .unwrap();

    let mut imports = String::new();
    let mut table = String::new();
    let mut data = String::new();
    // (case id, expected bytes of the typed paths, of the dynamic path, struct?)
    let mut expected: Vec<(String, String, String, bool)> = Vec::new();
    let mut cases = 0usize;
    let mut mutated = 0usize;
    // The dynamic codec's JSON-like values carry NaN as "nan" (any NaN), so its
    // bytes are the reference's with canonical NaNs (ABI.md §9).
    let mut add_case = |key: &str, input: &[u8], (layout, ty): (&Layout, TypeId), is_struct: bool, data: &mut String, expected: &mut Vec<(String, String, String, bool)>| {
        let id = format!("c{cases}");
        cases += 1;
        let read = decode(layout, ty, input, &Limits::default()).unwrap();
        let want = encode(layout, ty, &read).unwrap();
        let want_dynamic = encode(layout, ty, &canonical_nans(read)).unwrap();
        let input = if input.is_empty() { "-".to_string() } else { hex(input) };
        let _ = writeln!(data, "{id} {key} {input}");
        expected.push((id, hex(&want), hex(&want_dynamic), is_struct));
    };

    let mut sources = corpus();
    sources.push(("extra_awkward_names".into(), "awkward-names.km".into(), AWKWARD_NAMES.into()));
    for (name, src) in EVOLUTION {
        sources.push((name.into(), format!("{name}.km"), src.into()));
    }
    let mut layouts = Vec::new();
    for (pkg, path, source) in &sources {
        let layout = common::layout(source);
        std::fs::create_dir_all(root.join("gen").join(pkg)).unwrap();
        std::fs::write(root.join("gen").join(pkg).join(format!("{pkg}.go")), generate(&layout, path, pkg).unwrap()).unwrap();
        let _ = writeln!(imports, "\t\"gencheck/gen/{pkg}\"");
        let _ = writeln!(table, "\t\"{pkg}.layout\": {{func([]byte) ([]byte, error) {{ _ = {pkg}.KarmemLayout; return nil, nil }}}},");
        let names = type_names(&layout);
        let mut rng = Rng(0x5eed ^ pkg.len() as u64);
        for i in 0..layout.len() {
            let ty = TypeId(i as u32);
            let is_struct = layout.as_struct(ty).is_some();
            if !matches!(layout.get(ty).kind, Kind::Struct(_) | Kind::Union(_)) {
                continue;
            }
            let key = format!("{pkg}.{}", names[&ty]);
            table.push_str(&driver_entry(pkg, &names[&ty], ty, is_struct));
            if layout.is_dynamic_struct(ty) && decode(&layout, ty, &[], &Limits::default()).is_ok() {
                add_case(&key, &[], (&layout, ty), is_struct, &mut data, &mut expected);
            }
            for _ in 0..2 {
                let value = random::value(&layout, ty, &mut rng, 0);
                let bytes = encode(&layout, ty, &value).unwrap_or_else(|e| panic!("{pkg}: reference encode: {e}"));
                add_case(&key, &bytes, (&layout, ty), is_struct, &mut data, &mut expected);
                for _ in 0..8 {
                    let mut m = bytes.to_vec();
                    let at = 8 + rng.below(m.len().saturating_sub(8).max(1) as u64) as usize;
                    if let Some(byte) = m.get_mut(at) {
                        *byte ^= 1 << rng.below(8);
                    }
                    if validate(&m, &layout, ty, &Limits::default()).is_err() {
                        continue;
                    }
                    if decode(&layout, ty, &m, &Limits::default()).is_err() {
                        continue;
                    }
                    mutated += 1;
                    add_case(&key, &m, (&layout, ty), is_struct, &mut data, &mut expected);
                    break;
                }
            }
        }
        layouts.push((pkg.clone(), layout));
    }
    // Evolution: each version's generated code reads the other's messages as
    // the dynamic decoder does, and writes what the reference writes.
    let versions: Vec<_> = layouts.iter().filter(|(p, _)| p.starts_with("evo_")).cloned().collect();
    let mut rng = Rng(0xE7011);
    let mut evolution = 0;
    for (w, r) in [(0, 1), (1, 0)] {
        let (_, wl) = &versions[w];
        let (rp, rl) = &versions[r];
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
                if decode(rl, rty, &bytes, &Limits::default()).is_err() {
                    continue;
                }
                evolution += 1;
                add_case(&format!("{rp}.{}", reader_names[&rty]), &bytes, (rl, rty), rl.as_struct(rty).is_some(), &mut data, &mut expected);
            }
        }
    }
    assert!(mutated > 100, "only {mutated} mutated messages validated");
    assert!(evolution >= 20, "only {evolution} evolution cases");

    let driver = format!(
        "// Round trips through generated Go code (written by format/tests/gen_go.rs).\npackage main\n\nimport (\n\t\"encoding/hex\"\n\t\"fmt\"\n\t\"os\"\n\t\"strings\"\n\n\t\"karmem-bridge/hosts/go/karmem\"\n{imports})\n\n\
         // Per type: typed decode/encode, view/encode (structs), dynamic decode/encode.\nvar table = map[string][]func([]byte) ([]byte, error){{\n{table}}}\n{DRIVER_MAIN}"
    );
    std::fs::write(root.join("driver/main.go"), driver).unwrap();
    std::fs::write(root.join("cases.txt"), &data).unwrap();

    let go_cmd = |args: &[&str]| {
        let cache = workspace().join("target/go-cache");
        let out = Command::new(&go)
            .args(args)
            .current_dir(&root)
            .env("GOFLAGS", "-mod=mod")
            .env("GOPROXY", "off")
            .env("GOSUMDB", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOWORK", "off")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", cache.join("build"))
            .env("GOPATH", cache.join("path"))
            .output()
            .expect("run go");
        assert!(out.status.success(), "go {args:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    go_cmd(&["vet", "./..."]);
    let stdout = go_cmd(&["run", "./driver", "cases.txt"]);

    let mut got: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for line in stdout.lines() {
        let (id, rest) = line.split_once(' ').unwrap();
        got.entry(id.to_string()).or_default().push(rest.to_string());
    }
    let mut failures = Vec::new();
    for (id, want, want_dynamic, is_struct) in &expected {
        let mut wanted = vec![format!("0 {want}")];
        if *is_struct {
            wanted.push(format!("1 {want}"));
        }
        wanted.push(format!("2 {want_dynamic}"));
        let lines = got.get(id).cloned().unwrap_or_default();
        if lines != wanted {
            failures.push(format!("{id}: expected {wanted:?}\n      got {lines:?}"));
        }
    }
    let ids: std::collections::HashMap<&str, &str> = data.lines().filter_map(|l| {
        let mut p = l.split(' ');
        Some((p.next()?, p.next()?))
    }).collect();
    let report: Vec<String> = failures.iter().take(20).map(|f| format!("{} ({})", f, ids.get(f.split(':').next().unwrap_or("")).unwrap_or(&""))).collect();
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), expected.len(), report.join("\n"));
    assert!(expected.len() > 300, "only {} cases", expected.len());
}
