//! Fuzz target: the adapter round trip (`karmem-adapters`' value transcoders).
//!
//! Input: one byte picking a schema root and a string encoding, then a
//! Karmem message. For each root the generated reader (message -> canonical
//! ABI memory) and writer (canonical memory -> message) run in wasmi on a
//! small bump-allocator scaffold. Properties, for every message that
//! `karmem_format::validate` accepts and the dynamic codec decodes:
//! - the reader does not trap (the guest accepts what the format accepts;
//!   it checks less, never more — `docs/ABI.md` §7);
//! - the writer turns the canonical value back into a message that validates
//!   and decodes to the same value (NaNs compared as NaNs: the writer
//!   canonicalises them).
//!
//! Owns: the check only; run by `fuzz_targets/adapters.rs` and
//! `adapters/tests/fuzz_adapters.rs`.

#![allow(dead_code, clippy::panic)]

use std::sync::OnceLock;

use anyhow::{Context as _, Result, anyhow};
use karmem_adapters::canon::{StringEncoding, abi_type};
use karmem_adapters::transcode::{Env, TranscodeOptions, Transcoder};
use karmem_format::value::{decode, encode, zero_value};
use karmem_format::{ErrorKind, Layout, Limits, TypeId, Value, validate};

const SCHEMAS: &[&str] = &[
    include_str!("../../../fixtures/idl/constructs.km"),
    include_str!("../../../fixtures/idl/paper-fig32.km"),
    include_str!("../../../fixtures/idl/paper-fig35.km"),
];

pub const LIMITS: Limits = Limits { max_depth: 32, max_visit: 1 << 16, max_columns: 64 };

/// The limits the rebuilt message is checked with. Rebuilding may make a
/// message larger than the one read: an SoA column the message leaves out
/// reads as zero values (docs/FORMAT.md §6.3), so 300 bytes can stand for a
/// list of thousands of records, which the writer spells out column by
/// column. Depth cannot grow; the visit budget must.
pub const REBUILT_LIMITS: Limits = Limits { max_visit: 1 << 30, ..LIMITS };

const ENCODINGS: [StringEncoding; 3] = [StringEncoding::Utf8, StringEncoding::Utf16, StringEncoding::Latin1Utf16];

/// Memory, a bump allocator (`alloc`, also behind `cabi_realloc`) and a no-op `free`.
const SCAFFOLD: &str = r#"
(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 64))
  (func $alloc (export "alloc") (param $size i32) (param $align i32) (result i32)
    (local $at i32) (local $end i32)
    (local.set $at (i32.and (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
                            (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $at) (local.get $size)))
    (block $fits
      (loop $grow
        (br_if $fits (i32.le_u (local.get $end) (i32.shl (memory.size) (i32.const 16))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
        (br $grow)))
    (global.set $next (local.get $end))
    (local.get $at))
  (func (export "free") (param i32 i32 i32))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (call $alloc (local.get $size) (local.get $align)))
    (if (local.get $old)
      (then (memory.copy (local.get $at) (local.get $old)
              (select (local.get $old_size) (local.get $size) (i32.lt_u (local.get $old_size) (local.get $size))))))
    (local.get $at)))
"#;

/// One root type with its transcoder module, compiled, per string encoding.
pub struct Root {
    pub layout: Layout,
    pub root: TypeId,
    pub name: String,
    modules: Vec<(StringEncoding, wasmi::Module)>,
}

fn engine() -> &'static wasmi::Engine {
    static ENGINE: OnceLock<wasmi::Engine> = OnceLock::new();
    ENGINE.get_or_init(wasmi::Engine::default)
}

/// Every root of the fixture schemas that the transcoder generator supports
/// (it refuses bunch arrays).
pub fn roots() -> &'static [Root] {
    static ROOTS: OnceLock<Vec<Root>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = Vec::new();
        for source in SCHEMAS {
            let Ok(schema) = karmem_idl::load(source, "schema.km") else { continue };
            let Ok(names) = Layout::new(&schema).map(|l| {
                l.named_items().into_iter().map(|(n, id)| (n.to_string(), id)).collect::<Vec<_>>()
            }) else {
                continue;
            };
            for (name, root) in names {
                let Ok(layout) = Layout::new(&schema) else { continue };
                let mut modules = Vec::new();
                for encoding in ENCODINGS {
                    let Ok(wasm) = build(&layout, root, encoding) else { break };
                    let Ok(module) = wasmi::Module::new(engine(), &wasm[..]) else { break };
                    modules.push((encoding, module));
                }
                if modules.len() == ENCODINGS.len() {
                    roots.push(Root { layout, root, name, modules });
                }
            }
        }
        roots
    })
}

/// The scaffold plus the generated `read`, `write` and `init` for `root`.
fn build(layout: &Layout, root: TypeId, encoding: StringEncoding) -> Result<Vec<u8>> {
    let scaffold = wat::parse_str(SCAFFOLD)?;
    let mut module = walrus::Module::from_buffer(&scaffold).map_err(|e| anyhow!("{e:#}"))?;
    let memory = module.memories.iter().next().map(|m| m.id()).context("no memory")?;
    let func = |name: &str| module.exports.get_func(name).map_err(|e| anyhow!("{e:#}"));
    let env = Env { memory, realloc: func("cabi_realloc")?, alloc: func("alloc")?, free: func("free")? };
    let options = TranscodeOptions { string_encoding: encoding, ..TranscodeOptions::default() };
    let mut transcoder = Transcoder::new(&mut module, layout, env, options);
    let read = transcoder.message_reader(root)?;
    let write = transcoder.message_writer(root)?;
    let init = transcoder.finish();
    module.exports.add("read", read);
    module.exports.add("write", write);
    module.exports.add("init", init);
    Ok(module.emit_wasm())
}

/// Checks one input; whether the message went all the way round.
pub fn run(data: &[u8]) -> bool {
    let Some((&pick, message)) = data.split_first() else { return false };
    let roots = roots();
    let Some(root) = roots.get(pick as usize % roots.len().max(1)) else { return false };
    let Some((_, module)) = root.modules.get(pick as usize / roots.len().max(1) % ENCODINGS.len()) else {
        return false;
    };
    check(root, module, message)
}

fn check(root: &Root, module: &wasmi::Module, message: &[u8]) -> bool {
    let (layout, ty) = (&root.layout, root.root);
    if validate(message, layout, ty, &LIMITS).is_err() {
        return false;
    }
    let value = match decode(layout, ty, message, &LIMITS) {
        Ok(value) => value,
        Err(e) if e.kind == ErrorKind::NoDefault => return false,
        Err(e) => panic!("a validated message fails to decode: {e}"),
    };
    let written = match round_trip(layout, ty, module, message) {
        Ok(written) => written,
        Err(e) => panic!("`{}`: the transcoders fail on a message the format accepts: {e:#}\n  value {value:?}", root.name),
    };
    if let Err(e) = validate(&written, layout, ty, &REBUILT_LIMITS) {
        panic!("`{}`: the message the writer built does not validate: {e}\n  value {value:?}", root.name);
    }
    match decode(layout, ty, &written, &REBUILT_LIMITS) {
        Ok(again) => assert!(
            canonical_nans(&again).bit_eq(&canonical_nans(&value)),
            "`{}`: the round trip changed the value:\n  before {value:?}\n  after  {again:?}",
            root.name
        ),
        Err(e) => panic!("`{}`: the message the writer built does not decode: {e}", root.name),
    }
    true
}

/// Message -> `read` -> canonical memory -> `write` -> message, in a fresh instance.
fn round_trip(layout: &Layout, root: TypeId, module: &wasmi::Module, message: &[u8]) -> Result<Vec<u8>> {
    let mut store = wasmi::Store::new(engine(), ());
    let linker = wasmi::Linker::<()>::new(engine());
    let instance = linker.instantiate_and_start(&mut store, module)?;
    let memory = instance.get_memory(&store, "memory").context("no memory")?;
    let alloc = instance.get_typed_func::<(i32, i32), i32>(&store, "alloc")?;
    let read = instance.get_typed_func::<(i32, i32, i32), ()>(&store, "read")?;
    let write = instance.get_typed_func::<i32, i64>(&store, "write")?;
    instance.get_typed_func::<(), ()>(&store, "init")?.call(&mut store, ())?;

    let len = i32::try_from(message.len())?;
    let at = alloc.call(&mut store, (len.max(1), 64))?;
    memory.write(&mut store, at as u32 as usize, message)?;
    let shape = abi_type(layout, root)?;
    let dst = alloc.call(&mut store, (shape.size().max(1) as i32, shape.align() as i32))?;
    read.call(&mut store, (at, len, dst)).context("the reader trapped")?;
    let packed = write.call(&mut store, dst).context("the writer trapped")? as u64;
    let (ptr, out_len) = ((packed & 0xffff_ffff) as usize, (packed >> 32) as usize);
    let mut out = vec![0; out_len];
    memory.read(&store, ptr, &mut out).map_err(|e| anyhow!("the written message is out of bounds: {e}"))?;
    Ok(out)
}

/// `value` with every NaN replaced by the canonical one.
fn canonical_nans(value: &Value) -> Value {
    let boxed = |v: &Option<Box<Value>>| v.as_ref().map(|v| Box::new(canonical_nans(v)));
    match value {
        Value::F32(f) if f.is_nan() => Value::F32(f32::from_bits(0x7fc0_0000)),
        Value::F64(f) if f.is_nan() => Value::F64(f64::from_bits(0x7ff8_0000_0000_0000)),
        Value::List(items) => Value::List(items.iter().map(canonical_nans).collect()),
        Value::Record(fields) => Value::Record(fields.iter().map(|(n, v)| (n.clone(), canonical_nans(v))).collect()),
        Value::Variant(case, payload) => Value::Variant(case.clone(), boxed(payload)),
        Value::Option(inner) => Value::Option(boxed(inner)),
        Value::Result(Ok(ok)) => Value::Result(Ok(boxed(ok))),
        Value::Result(Err(err)) => Value::Result(Err(boxed(err))),
        other => other.clone(),
    }
}

/// Valid messages to start from: each root's zero value, once per encoding.
pub fn seeds() -> Vec<Vec<u8>> {
    let roots = roots();
    let mut seeds = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        let Ok(value) = zero_value(&root.layout, root.root, 0, 0) else { continue };
        let Ok(message) = encode(&root.layout, root.root, &value) else { continue };
        for e in 0..ENCODINGS.len() {
            let mut seed = vec![(i + e * roots.len()) as u8];
            seed.extend_from_slice(&message);
            seeds.push(seed);
        }
    }
    seeds
}
