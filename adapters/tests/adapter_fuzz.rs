//! Adapter fuzz test: for random KarmemIDL signatures, an echo function
//! with the canonical ABI boundary (generated here from the canonical ABI's
//! flattening rules, independently of the adapters' export path) gets the
//! Karmem ABI; the module must validate, and random values sent through the
//! Karmem ABI must come back unchanged (NaNs compared without payload).
//! The echo covers flat and spilled parameters, flat and return-area
//! results, and every type the random schemas hold.

// Test helpers index data they built themselves (clippy.toml exempts only
// `#[test]` functions).
#![allow(clippy::indexing_slicing, reason = "test code: an index out of range is a failed test")]

#[path = "abi/canonical.rs"]
mod canonical;
#[path = "abi/harness.rs"]
mod harness;
#[path = "abi/host.rs"]
mod host;
#[path = "abi/random.rs"]
mod random;

use anyhow::{Context, Result, anyhow, ensure};
use karmem_adapters::abi::flat::{flat_locals, load_flat, store_flat, val_type};
use karmem_adapters::abi::{FunctionBinding, InterfaceBinding, Options, World, karmem_abi};
use karmem_adapters::canon::abi_type;
use karmem_format::Value;
use karmem_format::layout::Layout;
use karmem_wit_import::Side;
use proptest::prelude::*;
use random::Rng;
use walrus::{FunctionBuilder, ValType};

/// The canonical-ABI echo of `root`: `echo(x: root) -> root`, exported as
/// `echo`, in the transcoder harness's scaffold (memory, `cabi_realloc`).
fn echo_module(layout: &Layout) -> Result<Vec<u8>> {
    let root = layout.named("root").context("root")?;
    let shape = abi_type(layout, root)?;
    let flat = shape.flatten();
    let scaffold = wat::parse_str(harness::SCAFFOLD)?;
    let mut module = walrus::Module::from_buffer(&scaffold).map_err(|e| anyhow!("{e:#}"))?;
    let memory = module.memories.iter().next().map(|m| m.id()).context("memory")?;
    let alloc = module.exports.get_func("alloc").map_err(|e| anyhow!("{e:#}"))?;
    let spill_params = flat.len() > 16;
    let params: Vec<ValType> = if spill_params { vec![ValType::I32] } else { flat.iter().map(|t| val_type(*t)).collect() };
    let results: Vec<ValType> = if flat.len() > 1 { vec![ValType::I32] } else { params.clone() };
    let args: Vec<_> = params.iter().map(|t| module.locals.add(*t)).collect();
    let mut f = FunctionBuilder::new(&mut module.types, &params, &results);
    let seq = f.func_body_id();
    if spill_params {
        // the parameter tuple (one `root`) already has the result's layout
        f.instr_seq(seq).local_get(args[0]);
    } else if flat.len() > 1 {
        let area = module.locals.add(ValType::I32);
        f.instr_seq(seq).i32_const(shape.size().max(1) as i32).i32_const(shape.align() as i32).call(alloc).local_set(area);
        store_flat(&mut f, seq, &mut module.locals, memory, &shape, area, 0, &args);
        // and back, through load_flat, to check the pair agrees
        let again = flat_locals(&mut module.locals, &shape);
        load_flat(&mut f, seq, &mut module.locals, memory, &shape, area, 0, &again);
        store_flat(&mut f, seq, &mut module.locals, memory, &shape, area, 0, &again);
        f.instr_seq(seq).local_get(area);
    } else {
        for arg in &args {
            f.instr_seq(seq).local_get(*arg);
        }
    }
    let echo = f.finish(args, &mut module.funcs);
    module.exports.add("echo", echo);
    Ok(module.emit_wasm())
}

fn echo_world(source: &str) -> Result<World> {
    let text = format!("{source}\ninterface fuzz (dynamic, direct) {{ echo: fn(x: root) (ret: root); }}\n");
    let schema = karmem_idl::load(&text, "fuzz.km").map_err(|d| anyhow!("{d}"))?;
    Ok(World {
        schema,
        idl: text,
        interfaces: vec![InterfaceBinding {
            name: "fuzz".into(),
            side: Side::Export,
            wit_name: String::new(),
            wit: Default::default(),
            resources: Vec::new(),
            core_module: String::new(),
            functions: vec![FunctionBinding { name: "echo".into(), core_name: "echo".into() }],
        }],
    })
}

fn fuzz_case(seed: u64) -> Result<()> {
    let mut rng = Rng::new(seed);
    let source = random::schema(&mut rng, 4);
    let world = echo_world(&source).with_context(|| source.clone())?;
    let layout = Layout::new(&world.schema).map_err(|e| anyhow!("{e}"))?;
    let canonical = echo_module(&layout).with_context(|| source.clone())?;
    wasmparser::Validator::new().validate_all(&canonical).context("the echo module does not validate")?;
    let bytes = karmem_abi(&canonical, &world, &Options::default()).with_context(|| source.clone())?;
    wasmparser::Validator::new().validate_all(&bytes).context("the adapted module does not validate")?;
    let mut host = host::Host::from_bytes(world, bytes, Box::new(|_, _, _| anyhow::bail!("no imports")))?;
    host.init()?;
    let root = layout.named("root").context("root")?;
    for _ in 0..3 {
        let value = random::value(&mut rng, &layout, root, 0);
        let out = host
            .call("fuzz", "echo", Value::Record(vec![("x".into(), value.clone())]))
            .with_context(|| format!("{source}\n{value:?}"))?;
        let want = Value::Record(vec![("ret".into(), value.clone())]);
        ensure!(canonical::same(&out, &want), "echo changed the value\n{source}\n  got  {out:?}\n  want {want:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn random_signatures_validate_and_echo(seed in any::<u64>()) {
        if let Err(error) = fuzz_case(seed) {
            prop_assert!(false, "seed {seed}: {error:#}");
        }
    }
}
