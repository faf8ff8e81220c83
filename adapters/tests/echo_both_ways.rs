//! Lowered both ways: random WIT function signatures become an echo
//! component (a core module generated here from the canonical ABI's
//! flattening rules, wrapped by wit-component with its WIT), which is
//! lowered with `--abi canonical` and with `--abi karmem`; its strings are
//! UTF-8, UTF-16 or latin1+utf16, picked at random. Random values
//! go through the component on wasmtime's component runtime (the
//! reference), through the canonical-ABI module (called by the test
//! crate's canonical-ABI host) and through the Karmem-ABI module (called
//! with `karmem-format` messages, on wasmtime and on wasmi, and lowered
//! with a Karmem edge memory, `--multi-memory`, on wasmi); all must
//! return the reference's values, value for value (NaNs without payload).

// Test helpers index data they built themselves (clippy.toml exempts only
// `#[test]` functions).
#![allow(clippy::indexing_slicing, reason = "test code: an index out of range is a failed test")]

#[path = "abi/karmem_runner.rs"]
mod karmem_runner;
#[path = "abi/random.rs"]
mod random;

use anyhow::{Context, Result, anyhow, bail};
use karmem_adapters::abi::World;
use karmem_adapters::abi::flat::{store_flat, val_type};
use karmem_adapters::canon::abi_type;
use karmem_format::layout::Layout;
use karmem_runner::{Engine, KarmemRunner, lower_karmem, lower_karmem_full};
use karmem_tests::canonical_host::CanonicalRunner;
use karmem_tests::harness::{Runner, compare};
use karmem_tests::invocation::parse_invocations;
use karmem_tests::reference::ReferenceRunner;
use random::Rng;
use walrus::{FunctionBuilder, ValType};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Type, Val};

const INTERFACE: &str = "fuzz:echo/api";

/// A memory and a bump `cabi_realloc`: all the echo's core module needs.
const CORE_SCAFFOLD: &str = r#"
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func $realloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $new i32) (result i32)
    (local $ptr i32) (local $end i32)
    global.get $heap local.get $align i32.add i32.const 1 i32.sub
    i32.const 0 local.get $align i32.sub i32.and local.set $ptr
    local.get $ptr local.get $new i32.add local.set $end
    block $ok
      loop $grow
        local.get $end memory.size i32.const 16 i32.shl i32.le_u br_if $ok
        i32.const 1 memory.grow i32.const -1 i32.eq if unreachable end
        br $grow
      end
    end
    local.get $end global.set $heap
    local.get $old if
      local.get $ptr local.get $old
      local.get $new local.get $old_size local.get $new local.get $old_size i32.lt_u select
      memory.copy
    end
    local.get $ptr)
)
"#;

/// Random WIT: named types, then `echo: func(p0: T0, ...) -> R` where `R`
/// is `T0` for one parameter and `tuple<T0, ...>` for more.
struct WitGen<'r> {
    rng: &'r mut Rng,
    defs: Vec<String>,
    named: Vec<String>,
    /// Types begun so far: a type's fields may define types before it is
    /// pushed to `defs`, so names are numbered when a definition starts.
    begun: usize,
}

impl WitGen<'_> {
    fn ty(&mut self, depth: u32) -> String {
        const PRIMS: [&str; 13] =
            ["u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "f32", "f64", "bool", "char", "string"];
        let choice = if depth == 0 { self.rng.below(3) } else { self.rng.below(14) };
        match choice {
            0 | 1 => (*self.rng.pick(&PRIMS)).to_string(),
            2 if !self.named.is_empty() => self.rng.pick(&self.named).clone(),
            3 | 4 => format!("list<{}>", self.ty(depth - 1)),
            5 | 6 => format!("option<{}>", self.ty(depth - 1)),
            7 => match self.rng.below(4) {
                0 => format!("result<{}, {}>", self.ty(depth - 1), self.ty(depth - 1)),
                1 => format!("result<{}>", self.ty(depth - 1)),
                2 => format!("result<_, {}>", self.ty(depth - 1)),
                _ => "result".to_string(),
            },
            8 => {
                let n = 1 + self.rng.below(3);
                let items: Vec<String> = (0..n).map(|_| self.ty(depth - 1)).collect();
                format!("tuple<{}>", items.join(", "))
            }
            9 => self.define(depth),
            _ => (*self.rng.pick(&PRIMS)).to_string(),
        }
    }

    /// Defines a record, variant, enum or flags type; returns its name.
    fn define(&mut self, depth: u32) -> String {
        let index = self.begun;
        self.begun += 1;
        let (name, body) = match self.rng.below(4) {
            0 => {
                let name = format!("rec{index}");
                let n = 1 + self.rng.below(4);
                let fields: Vec<String> = (0..n).map(|i| format!("f{i}: {}", self.ty(depth.saturating_sub(1)))).collect();
                (name.clone(), format!("record {name} {{ {} }}", fields.join(", ")))
            }
            1 => {
                let name = format!("var{index}");
                let n = 1 + self.rng.below(4);
                let cases: Vec<String> = (0..n)
                    .map(|i| {
                        if self.rng.chance(30) {
                            format!("c{i}")
                        } else {
                            format!("c{i}({})", self.ty(depth.saturating_sub(1)))
                        }
                    })
                    .collect();
                (name.clone(), format!("variant {name} {{ {} }}", cases.join(", ")))
            }
            2 => {
                let name = format!("en{index}");
                let n = 1 + self.rng.below(5);
                let cases: Vec<String> = (0..n).map(|i| format!("e{i}")).collect();
                (name.clone(), format!("enum {name} {{ {} }}", cases.join(", ")))
            }
            _ => {
                let name = format!("fl{index}");
                // the component model allows at most 32 flags
                let n = 1 + self.rng.below(32);
                let flags: Vec<String> = (0..n).map(|i| format!("g{i}")).collect();
                (name.clone(), format!("flags {name} {{ {} }}", flags.join(", ")))
            }
        };
        self.defs.push(body);
        self.named.push(name.clone());
        name
    }
}

/// The WIT package text and the number of parameters of `echo`.
fn random_wit(rng: &mut Rng) -> (String, usize) {
    let mut generator = WitGen { rng, defs: Vec::new(), named: Vec::new(), begun: 0 };
    for _ in 0..generator.rng.below(3) {
        generator.define(2);
    }
    let params: Vec<String> = (0..1 + generator.rng.below(5)).map(|_| generator.ty(3)).collect();
    let result = match params.as_slice() {
        [one] => one.clone(),
        many => format!("tuple<{}>", many.join(", ")),
    };
    let list: Vec<String> = params.iter().enumerate().map(|(i, t)| format!("p{i}: {t}")).collect();
    let text = format!(
        "package fuzz:echo;\ninterface api {{\n  {}\n  echo: func({}) -> {result};\n}}\nworld echo {{ export api; }}\n",
        generator.defs.join("\n  "),
        list.join(", ")
    );
    (text, params.len())
}

/// The echo component of `wit`: a core module whose `echo` returns its
/// arguments, lifted by wit-component with `encoding` (the echo only moves
/// pointers, so it works in every string encoding).
fn echo_component(wit: &str, encoding: wit_component::StringEncoding) -> Result<(Vec<u8>, World)> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("echo.wit", wit)?;
    let world_id = resolve.select_world(&[package], Some("echo"))?;
    let world = World::from_wit(&resolve, world_id)?;
    let layout = Layout::new(&world.schema).map_err(|e| anyhow!("{e}"))?;
    let iface = world.interfaces.first().context("no interface")?;
    let binding = iface.functions.first().context("no function")?;
    let fl = layout.function(&iface.name, &binding.name).context("no layout for `echo`")?;
    let params = abi_type(&layout, fl.params)?;
    let flat = params.flatten();

    let scaffold = wat::parse_str(CORE_SCAFFOLD)?;
    let mut module = walrus::Module::from_buffer(&scaffold).map_err(|e| anyhow!("{e:#}"))?;
    let memory = module.memories.iter().next().map(|m| m.id()).context("memory")?;
    let realloc = module.exports.get_func("cabi_realloc").map_err(|e| anyhow!("{e:#}"))?;
    let spill_params = flat.len() > 16;
    let spill_results = flat.len() > 1;
    let wants: Vec<ValType> = if spill_params { vec![ValType::I32] } else { flat.iter().map(|t| val_type(*t)).collect() };
    let results: Vec<ValType> = if spill_results { vec![ValType::I32] } else { wants.clone() };
    let args: Vec<_> = wants.iter().map(|t| module.locals.add(*t)).collect();
    let mut f = FunctionBuilder::new(&mut module.types, &wants, &results);
    let seq = f.func_body_id();
    match args.as_slice() {
        // the parameters in memory already have the results' layout
        [area] if spill_params => {
            f.instr_seq(seq).local_get(*area);
        }
        _ if spill_results => {
            let area = module.locals.add(ValType::I32);
            f.instr_seq(seq)
                .i32_const(0)
                .i32_const(0)
                .i32_const(params.align() as i32)
                .i32_const(params.size().max(1) as i32)
                .call(realloc)
                .local_set(area);
            store_flat(&mut f, seq, &mut module.locals, memory, &params, area, 0, &args);
            f.instr_seq(seq).local_get(area);
        }
        _ => {
            for arg in &args {
                f.instr_seq(seq).local_get(*arg);
            }
        }
    }
    let echo = f.finish(args, &mut module.funcs);
    module.exports.add(&format!("{INTERFACE}#echo"), echo);
    let mut core = module.emit_wasm();
    wit_component::embed_component_metadata(&mut core, &resolve, world_id, encoding)?;
    let component = wit_component::ComponentEncoder::default().module(&core)?.validate(true).encode()?;
    Ok((component, world))
}

/// The parameter types of the component's `echo`.
fn echo_params(component: &[u8]) -> Result<Vec<Type>> {
    let engine = karmem_tests::reference::engine();
    let component = wasmtime::component::Component::new(engine, component).map_err(anyhow::Error::from)?;
    for (name, item) in component.component_type().exports(engine) {
        if let (true, ComponentItem::ComponentInstance(instance)) = (name.starts_with(INTERFACE), item.ty) {
            for (function, item) in instance.exports(engine) {
                if let (true, ComponentItem::ComponentFunc(f)) = (function == "echo", item.ty) {
                    return Ok(f.params().map(|(_, t)| t).collect());
                }
            }
        }
    }
    bail!("the component exports no `{INTERFACE}#echo`")
}

/// A random value of a component type.
fn value(rng: &mut Rng, ty: &Type, depth: u32) -> Result<Val> {
    let len = |rng: &mut Rng| if depth > 3 { rng.below(2) } else { rng.below(5) } as usize;
    Ok(match ty {
        Type::Bool => Val::Bool(rng.chance(50)),
        Type::S8 => Val::S8(rng.next() as i8),
        Type::U8 => Val::U8(rng.next() as u8),
        Type::S16 => Val::S16(rng.next() as i16),
        Type::U16 => Val::U16(rng.next() as u16),
        Type::S32 => Val::S32(rng.next() as i32),
        Type::U32 => Val::U32(rng.next() as u32),
        Type::S64 => Val::S64(rng.next() as i64),
        Type::U64 => Val::U64(rng.next()),
        Type::Float32 => Val::Float32(*rng.pick(&[0.0, -0.0, 1.5, f32::NAN, f32::INFINITY, f32::MIN_POSITIVE, -3.25e7])),
        Type::Float64 => Val::Float64(*rng.pick(&[0.0, -0.0, 2.5, f64::NAN, f64::NEG_INFINITY, f64::MAX, 1e-300])),
        Type::Char => Val::Char(*rng.pick(&['a', '\0', 'é', '\u{FFFD}', '😀', '\u{10FFFF}', '"', '\\'])),
        Type::String => Val::String(random::string(rng)),
        Type::List(list) => {
            let n = len(rng);
            Val::List((0..n).map(|_| value(rng, &list.ty(), depth + 1)).collect::<Result<_>>()?)
        }
        Type::Record(record) => Val::Record(
            record.fields().map(|f| Ok((f.name.to_string(), value(rng, &f.ty, depth + 1)?))).collect::<Result<_>>()?,
        ),
        Type::Tuple(tuple) => Val::Tuple(tuple.types().map(|t| value(rng, &t, depth + 1)).collect::<Result<_>>()?),
        Type::Variant(variant) => {
            let cases: Vec<_> = variant.cases().collect();
            let case = rng.pick(&cases);
            let payload = case.ty.as_ref().map(|t| value(rng, t, depth + 1)).transpose()?;
            Val::Variant(case.name.to_string(), payload.map(Box::new))
        }
        Type::Enum(e) => {
            let names: Vec<&str> = e.names().collect();
            Val::Enum(rng.pick(&names).to_string())
        }
        Type::Option(option) => {
            Val::Option(if rng.chance(60) { Some(Box::new(value(rng, &option.ty(), depth + 1)?)) } else { None })
        }
        Type::Result(result) => {
            let side = |rng: &mut Rng, t: Option<Type>| -> Result<Option<Box<Val>>> {
                Ok(t.map(|t| value(rng, &t, depth + 1)).transpose()?.map(Box::new))
            };
            if rng.chance(50) { Val::Result(Ok(side(rng, result.ok())?)) } else { Val::Result(Err(side(rng, result.err())?)) }
        }
        Type::Flags(flags) => Val::Flags(flags.names().filter(|_| rng.chance(40)).map(str::to_string).collect()),
        other => bail!("no random values of {other:?}"),
    })
}

fn echo_case(seed: u64) -> Result<usize> {
    let mut rng = Rng::new(seed);
    let (wit, _) = random_wit(&mut rng);
    if std::env::var_os("ECHO_SHOW_WIT").is_some() {
        eprintln!("{wit}");
    }
    let encoding = *rng.pick(&[
        wit_component::StringEncoding::UTF8,
        wit_component::StringEncoding::UTF16,
        wit_component::StringEncoding::CompactUTF16,
    ]);
    echo_wit(&wit, encoding, &mut rng)
}

/// Three random calls of the echo of `wit`, on the reference and the three
/// lowered runners; returns the number of comparisons.
fn echo_wit(wit: &str, encoding: wit_component::StringEncoding, rng: &mut Rng) -> Result<usize> {
    let wit = format!("{wit}// string-encoding: {encoding:?}\n");
    let (component, _) = echo_component(&wit, encoding).with_context(|| wit.clone())?;
    let canonical = karmem_core_lowering::lower(&component, &karmem_core_lowering::Options::default())
        .with_context(|| format!("--abi canonical\n{wit}"))?;
    let (world, karmem) = lower_karmem(&component).with_context(|| format!("--abi karmem\n{wit}"))?;
    let (_, edge, _) =
        lower_karmem_full(&component, false, true).with_context(|| format!("--abi karmem --multi-memory\n{wit}"))?;
    let types = echo_params(&component)?;
    let mut reference = ReferenceRunner::new(&component)?;
    let mut both: Vec<(&str, Box<dyn Runner>)> = vec![
        ("canonical", Box::new(CanonicalRunner::new(&component, &canonical)?)),
        ("karmem on wasmtime", Box::new(KarmemRunner::from_lowered(Engine::Wasmtime, &component, world.clone(), &karmem)?)),
        ("karmem on wasmi", Box::new(KarmemRunner::from_lowered(Engine::Wasmi, &component, world.clone(), &karmem)?)),
        (
            "karmem with an edge memory on wasmi",
            Box::new(KarmemRunner::from_lowered(Engine::Wasmi, &component, world, &edge.module)?),
        ),
    ];
    let mut compared = 0;
    for _ in 0..3 {
        let args: Vec<String> =
            types.iter().map(|t| value(rng, t, 0)?.to_wave().map_err(anyhow::Error::from)).collect::<Result<_>>()?;
        let text = format!("{INTERFACE}#echo({})", args.join(", "));
        let invocations = parse_invocations(&text).with_context(|| text.clone())?;
        let invocation = invocations.first().context("no invocation")?;
        let expected = reference.invoke(invocation)?;
        for (name, runner) in &mut both {
            let actual = runner.invoke(invocation).with_context(|| format!("{name}: {text}\n{wit}"))?;
            compare(&expected, &actual).with_context(|| format!("{name}: {text}\n{wit}"))?;
            compared += 1;
        }
    }
    Ok(compared)
}

const CASES: usize = 80;

#[test]
fn random_signatures_echo_through_both_lowerings() -> Result<()> {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| -> Result<()> {
            let mut compared = 0;
            let mut seeds = Rng::new(0x0ec4_0b07);
            for _ in 0..CASES {
                let seed = seeds.next();
                compared += echo_case(seed).with_context(|| format!("seed {seed:#x}"))?;
            }
            eprintln!("{compared} echoes compared");
            anyhow::ensure!(compared == CASES * 3 * 4, "only {compared} echoes were compared");
            Ok(())
        })?
        .join()
        .map_err(|_| anyhow!("the echo thread panicked"))?
}

/// More than 16 flat parameters travel in memory (`MAX_FLAT_PARAMS`), and
/// the results through a return area, on every path.
#[test]
fn spilled_parameters_echo_through_both_lowerings() -> Result<()> {
    let wit = "package fuzz:echo;
        interface api {
          record wide { a: u64, b: f32, c: string, d: list<u8>, e: option<char>, f: tuple<s8, s16, s32, s64> }
          echo: func(p0: wide, p1: wide, p2: result<wide, string>) -> tuple<wide, wide, result<wide, string>>;
        }
        world echo { export api; }";
    let mut rng = Rng::new(0x5b111);
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || echo_wit(wit, wit_component::StringEncoding::CompactUTF16, &mut rng).map(|n| assert_eq!(n, 12)))?
        .join()
        .map_err(|_| anyhow!("the echo thread panicked"))?
}
