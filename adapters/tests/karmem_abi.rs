//! The Karmem ABI end to end on a hand-written canonical-ABI module
//! (`abi/demo.wat`, the boundary `lower --abi canonical` gives the component
//! of `abi/demo.wit`): `karmem_abi` turns it into a Karmem-ABI module, and a
//! host written from docs/ABI.md alone drives it with messages from
//! `karmem-format`'s `Value` codec, serving the imported interface the same
//! way.

// Test helpers index data they built themselves (clippy.toml exempts only
// `#[test]` functions).
#![allow(clippy::indexing_slicing, reason = "test code: an index out of range is a failed test")]

#[path = "abi/host.rs"]
mod host;

use anyhow::{Context, Result, ensure};
use host::{Host, rec, s};
use karmem_format::Value;

fn demo() -> Result<Host> {
    demo_with(false)
}

/// The demo, with the Karmem edge in a memory of its own when `edge`.
fn demo_with(edge: bool) -> Result<Host> {
    let wit = include_str!("abi/demo.wit");
    let canonical = wat::parse_str(include_str!("abi/demo.wat"))?;
    let options = karmem_adapters::abi::Options { edge_memory: edge, ..Default::default() };
    Host::with_options(wit, &canonical, &options, |iface, function, args| match (iface, function) {
        (_, "log") => {
            let text = match args.field("msg") {
                Some(Value::String(t)) => t.clone(),
                other => anyhow::bail!("log got {other:?}"),
            };
            Ok((rec(vec![]), Some(text)))
        }
        (_, "get_name") => Ok((rec(vec![("ret", s("wasm"))]), None)),
        other => anyhow::bail!("unexpected import {other:?}"),
    })
}

#[test]
fn init_descriptors_and_sections() -> Result<()> {
    let mut host = demo()?;
    let counts = host.init()?;
    ensure!(counts == (1 << 32) | 1, "KarmemInit returned {counts:#x}");
    let export = host.descriptor("KarmemExport", 0)?;
    ensure!(export.field("name") == Some(&s("api")), "{export:?}");
    let Some(Value::List(functions)) = export.field("functions") else { anyhow::bail!("no functions") };
    let names: Vec<_> = functions.iter().filter_map(|f| f.field("name")).collect();
    ensure!(names.len() == 6 && names[0] == &s("add") && names[5] == &s("maybe"), "{names:?}");
    for (i, f) in functions.iter().enumerate() {
        ensure!(f.field("id") == Some(&Value::U32(i as u32)), "ids follow the export order: {f:?}");
        let name = match f.field("name") {
            Some(Value::String(n)) => n.clone(),
            _ => String::new(),
        };
        let hash = host.layout.function_hash("api", &name).context("hash")?;
        ensure!(f.field("type_hash") == Some(&Value::U64(hash)), "type hash of {name}");
    }
    // the WIT identity (ABI 0.2)
    for (field, want) in
        [("package", "demo:app@1.0.0"), ("wit_package", "demo:app"), ("wit_interface", "api"), ("wit_version", "1.0.0")]
    {
        ensure!(export.field(field) == Some(&s(want)), "`{field}` of {export:?}");
    }
    let import = host.descriptor("KarmemImport", 0)?;
    ensure!(import.field("name") == Some(&s("host")), "{import:?}");
    ensure!(import.field("wit_interface") == Some(&s("host")), "{import:?}");
    ensure!(host.descriptor("KarmemExport", 1).is_err(), "an out-of-range descriptor index traps");
    // a second KarmemInit traps
    ensure!(host.init().is_err(), "KarmemInit twice must trap");
    let sections = host.custom_sections();
    use karmem_adapters::abi::{ABI_SECTION, ABI_VERSION, IDL_SECTION};
    ensure!(sections.iter().any(|(n, d)| n == ABI_SECTION && d == ABI_VERSION.as_bytes()), "{ABI_SECTION} section");
    ensure!(sections.iter().any(|(n, d)| n == IDL_SECTION && String::from_utf8_lossy(d).contains("interface api")));
    ensure!(sections.iter().any(|(n, d)| n == "producers" && String::from_utf8_lossy(d).contains("karmem-bridge")));
    ensure!(host.exports().iter().all(|e| !e.contains('#') && e != "cabi_realloc"), "canonical exports remain: {:?}", host.exports());
    Ok(())
}

#[test]
fn calls_through_every_shape() -> Result<()> {
    calls_through_every_shape_with(false)
}

/// The same with a Karmem edge memory: messages, `KarmemAlloc` and the
/// scratch area in `KarmemMemory`, values in the guest's `memory`.
#[test]
fn calls_through_every_shape_with_an_edge_memory() -> Result<()> {
    calls_through_every_shape_with(true)
}

fn calls_through_every_shape_with(edge: bool) -> Result<()> {
    let mut host = demo_with(edge)?;
    ensure!(host.exports().iter().any(|e| e == "memory"), "`memory` stays exported");
    ensure!(host.exports().iter().any(|e| e == "KarmemMemory") == edge, "{:?}", host.exports());
    host.init()?;
    // flat params, flat result
    let out = host.call("api", "add", rec(vec![("a", Value::U32(40)), ("b", Value::U32(2))]))?;
    ensure!(out == rec(vec![("ret", Value::U32(42))]), "add: {out:?}");
    // string in, string out through a return area, with post-return
    let out = host.call("api", "echo", rec(vec![("s", s("h\u{e9}llo \u{1F600}"))]))?;
    ensure!(out == rec(vec![("ret", s("h\u{e9}llo \u{1F600}"))]), "echo: {out:?}");
    ensure!(host.call_raw_i32("posts")? == 1, "post-return ran once");
    // list<record> (an SoA array in Karmem) in, f64 out
    let reading = |at: i64, value: f32, name: &str| {
        rec(vec![("at", Value::S64(at)), ("value", Value::F32(value)), ("name", s(name))])
    };
    let items = Value::List(vec![reading(1, 0.5, "ab"), reading(2, 1.5, "c"), reading(-3, 2.0, "")]);
    let out = host.call("api", "sum", rec(vec![("items", items)]))?;
    // sum of values + ats + name lengths
    ensure!(out == rec(vec![("ret", Value::F64(4.0 + 0.0 + 3.0))]), "sum: {out:?}");
    // 17 params: spilled to a params area allocated with cabi_realloc
    let args: Vec<(String, Value)> = (0..17).map(|i| (format!("a{i}"), Value::U8(i as u8 + 1))).collect();
    let out = host.call("api", "many", Value::Record(args))?;
    ensure!(out == rec(vec![("ret", Value::U64(153))]), "many: {out:?}");
    // option in, result out
    let out = host.call("api", "maybe", rec(vec![("x", Value::Option(Some(Box::new(Value::U32(21)))))]))?;
    ensure!(out == rec(vec![("ret", Value::Result(Ok(Some(Box::new(Value::U32(42))))))]), "maybe: {out:?}");
    let out = host.call("api", "maybe", rec(vec![("x", Value::Option(None))]))?;
    ensure!(out == rec(vec![("ret", Value::Result(Err(Some(Box::new(s("none"))))))]), "maybe: {out:?}");
    // the same through KarmemCall
    let out = host.call_by_id(0, "api", "add", rec(vec![("a", Value::U32(1)), ("b", Value::U32(2))]))?;
    ensure!(out == rec(vec![("ret", Value::U32(3))]), "KarmemCall add: {out:?}");
    ensure!(host.call_by_id(6, "api", "add", rec(vec![])).is_err(), "an unknown function id traps");
    Ok(())
}

#[test]
fn imports_go_through_the_host() -> Result<()> {
    imports_go_through_the_host_with(false)
}

/// The same with a Karmem edge memory; `KarmemAlloc` never grows the
/// guest's `memory` then (2000 calls, each freeing the host's buffer).
#[test]
fn imports_go_through_the_host_with_an_edge_memory() -> Result<()> {
    imports_go_through_the_host_with(true)
}

fn imports_go_through_the_host_with(edge: bool) -> Result<()> {
    let mut host = demo_with(edge)?;
    let guest_before = host.guest_memory_size()?;
    host.init()?;
    let out = host.call("api", "greet", rec(vec![("greeting", s("hi there"))]))?;
    ensure!(out == rec(vec![("ret", s("wasm"))]), "greet: {out:?}");
    ensure!(host.log() == ["hi there".to_string()], "log: {:?}", host.log());
    // many calls: buffers are freed and reused, memory does not grow per call
    let before = host.memory_size();
    for i in 0..2000 {
        let out = host.call("api", "greet", rec(vec![("greeting", s(&format!("call {i}")))]))?;
        ensure!(out == rec(vec![("ret", s("wasm"))]));
    }
    ensure!(host.memory_size() <= before + (1 << 20), "memory grew from {before} to {}", host.memory_size());
    if edge {
        ensure!(host.guest_memory_size()? == guest_before, "KarmemAlloc grew the guest's memory");
    }
    Ok(())
}

#[test]
fn bad_argument_messages_trap() -> Result<()> {
    let mut host = demo()?;
    host.init()?;
    // a string whose bytes are not UTF-8
    let mut message = host.encode_params("api", "echo", &rec(vec![("s", s("abc"))]))?;
    let at = message.iter().rposition(|b| *b == b'a').context("string bytes")?;
    message[at] = 0xFF;
    ensure!(host.call_bytes("api.echo", &message).is_err(), "invalid UTF-8 traps");
    let mut host = demo()?;
    host.init()?;
    ensure!(host.call_bytes("api.add", &[1, 2, 3, 4, 5, 6, 7, 8]).is_err(), "a bad header traps");
    // the empty buffer is the empty message: every parameter reads as zero
    let mut host = demo()?;
    host.init()?;
    ensure!(host.call_bytes("api.add", &[])? == rec(vec![("ret", Value::U32(0))]));
    Ok(())
}

/// Interface memories: regions reserved at init and named in the
/// descriptor; an argument message placed in the `input` region is read in
/// place; a result placed `@ output` is written inside that region.
#[test]
fn interface_memories_are_regions() -> Result<()> {
    use karmem_adapters::abi::{FunctionBinding, InterfaceBinding, Options, World, karmem_abi};
    let idl = "package demo:mem@1.0.0;
        interface api (dynamic, direct) {
            input: memory (import: write, export: read, 1);
            output: memory (import: read, export: write, 2);
            echo: fn(s: []u8 #string @ input) (ret: []u8 #string @ output);
        }";
    let canonical = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (global $heap (mut i32) (i32.const 4096))
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
              (local $p i32)
              global.get $heap local.get 2 i32.add i32.const 1 i32.sub i32.const 0 local.get 2 i32.sub i32.and
              local.tee $p local.get 3 i32.add global.set $heap local.get $p)
            (func (export "echo") (param i32 i32) (result i32)
              i32.const 256 local.get 0 i32.store
              i32.const 256 local.get 1 i32.store offset=4
              i32.const 256))"#,
    )?;
    let schema = karmem_idl::load(idl, "mem.km").map_err(|d| anyhow::anyhow!("{d}"))?;
    let world = World {
        schema,
        idl: idl.to_string(),
        interfaces: vec![InterfaceBinding {
            name: "api".into(),
            side: karmem_wit_import::Side::Export,
            wit_name: String::new(),
            wit: Default::default(),
            resources: Vec::new(),
            core_module: String::new(),
            functions: vec![FunctionBinding { name: "echo".into(), core_name: "echo".into() }],
        }],
    };
    // an edge memory would hold the regions apart from the guest: refused
    let edge = Options { edge_memory: true, ..Options::default() };
    let refused = karmem_abi(&canonical, &world, &edge).err().map(|e| format!("{e:#}")).unwrap_or_default();
    ensure!(
        refused.contains("`api`") && refused.contains("`input`") && refused.contains("without `--multi-memory`"),
        "{refused}"
    );
    let bytes = karmem_abi(&canonical, &world, &Options::default())?;
    let mut host = host::Host::from_bytes(world, bytes, Box::new(|_, _, _| anyhow::bail!("no imports")))?;
    host.init()?;
    let descriptor = host.descriptor("KarmemExport", 0)?;
    let Some(Value::List(memories)) = descriptor.field("memories") else { anyhow::bail!("no memories") };
    let region = |name: &str| -> Result<(u32, u32, u8)> {
        let m = memories.iter().find(|m| m.field("name") == Some(&s(name))).context("memory")?;
        match (m.field("offset"), m.field("pages"), m.field("access")) {
            (Some(Value::U32(o)), Some(Value::U32(p)), Some(Value::U8(a))) => Ok((*o, *p, *a)),
            other => anyhow::bail!("{other:?}"),
        }
    };
    let (input, input_pages, input_access) = region("input")?;
    let (output, output_pages, output_access) = region("output")?;
    ensure!(input % 65536 == 0 && output % 65536 == 0 && input != 0 && output != 0, "{input:#x} {output:#x}");
    ensure!((input_pages, input_access, output_pages, output_access) == (1, 1, 2, 2), "pages and this guest's access");
    ensure!(input.abs_diff(output) >= 65536, "regions overlap");
    ensure!((host.memory_size() as u64) >= u64::from(output) + 2 * 65536, "regions inside memory");
    let message = host.encode_params("api", "echo", &rec(vec![("s", s("in place"))]))?;
    let (out, at) = host.call_at("api.echo", &message, input)?;
    ensure!(out == rec(vec![("ret", s("in place"))]), "{out:?}");
    ensure!(at >= output as usize && at < output as usize + 2 * 65536, "result at {at:#x}, region at {output:#x}");
    Ok(())
}

/// docs/ABI.md §7, the decode limit, at an export: an argument message of
/// 128 bytes whose `list<reading>` claims 2^24 items with no SoA columns
/// (each would read as its default: 384 MiB of canonical records) traps
/// before the guest allocates them; the same shape within the limit runs.
#[test]
fn hostile_argument_message_hits_the_decode_limit() -> Result<()> {
    let message = |length: u32| {
        let mut m = vec![0u8; 128];
        for (at, word) in [(0usize, 0x0Cu32), (4, 8), (8, 0x10), (12, 64), (16, length), (20, length), (64, 0)] {
            m[at..at + 4].copy_from_slice(&word.to_le_bytes());
        }
        m
    };
    let mut host = demo()?;
    host.init()?;
    let before = host.memory_size();
    let outcome = host.call_bytes("api.sum", &message(1 << 24));
    let trap = outcome.as_ref().err().and_then(|e| e.downcast_ref::<wasmtime::Trap>().copied());
    ensure!(trap == Some(wasmtime::Trap::UnreachableCodeReached), "expected the limit's trap, got {outcome:?}");
    let grown = host.memory_size() - before;
    ensure!(grown < 4 << 20, "the guest grew its memory by {grown} bytes before trapping");
    let mut host = demo()?;
    host.init()?;
    let sum = host.call_bytes("api.sum", &message(1000))?;
    ensure!(sum == rec(vec![("ret", Value::F64(0.0))]), "{sum:?}");
    Ok(())
}

/// An interface that only defines types (imported implicitly because an
/// export uses them) has nothing to call: no descriptor (docs/ABI.md §5),
/// though its types are in `karmem:idl`.
#[test]
fn types_only_interfaces_have_no_descriptor() -> Result<()> {
    let wit = r#"package demo:shapes@0.3.0;
interface shared { record point { x: u32 } }
interface api {
  use shared.{point};
  norm: func(p: point) -> u32;
}
world app { export api; }
"#;
    let canonical = wat::parse_str(
        r#"(module
          (memory (export "memory") 1)
          (func (export "demo:shapes/api@0.3.0#norm") (param i32) (result i32) local.get 0)
          (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024))"#,
    )?;
    let mut host = Host::new(wit, &canonical, |iface, function, _| anyhow::bail!("unexpected import {iface}.{function}"))?;
    let counts = host.init()?;
    ensure!(counts == 1, "KarmemInit returned {counts:#x}: one export, no import");
    let export = host.descriptor("KarmemExport", 0)?;
    ensure!(export.field("name") == Some(&s("api")), "{export:?}");
    ensure!(host.descriptor("KarmemImport", 0).is_err(), "`shared` got a descriptor");
    let sections = host.custom_sections();
    ensure!(sections.iter().any(|(n, d)| n == karmem_adapters::abi::IDL_SECTION && String::from_utf8_lossy(d).contains("struct point")));
    let out = host.call("api", "norm", rec(vec![("p", rec(vec![("x", Value::U32(7))]))]))?;
    ensure!(out.field("ret") == Some(&Value::U32(7)), "{out:?}");
    Ok(())
}
