//! `map<K, V>` through the Karmem ABI, both directions, against wasmtime's
//! component runtime as the reference (wasmtime 48 loads map components
//! only with `Config::wasm_component_model_map(true)`, which the shared
//! reference runner of `karmem-tests` does not set, so this test builds its
//! own engine). The canonical ABI passes a map as `list<tuple<k, v>>`; the
//! Karmem side is the SoA array of the map's entry struct (docs/FORMAT.md
//! §6.5). A hand-written canonical-ABI module (`CORE`, the boundary `lower
//! --abi canonical` gives) exports `echo` and `groups`, which return their
//! argument, and `relay`, which passes its map to the imported
//! `store.lookup` and returns what that gives back. It runs as a component
//! on wasmtime, and through `karmem_abi` (directly, with a Karmem edge
//! memory, and after `karmem-core-lowering` lowered the component) on the
//! Karmem-ABI test host; both hosts serve `lookup` alike. Every map must come
//! back with the reference's entries, in order, duplicate keys included.

// Test helpers index data they built themselves (clippy.toml exempts only
// `#[test]` functions).
#![allow(clippy::indexing_slicing, reason = "test code: an index out of range is a failed test")]

#[path = "abi/host.rs"]
mod host;

use anyhow::{Context, Result, bail, ensure};
use host::{Host, rec};
use karmem_format::Value;
use wasmtime::component::{Component, Linker, Val};

const WIT: &str = "package test:maps;

interface store {
  lookup: func(m: map<string, u32>) -> map<string, u32>;
}

interface api {
  echo: func(m: map<string, u32>) -> map<string, u32>;
  relay: func(m: map<string, u32>) -> map<string, u32>;
  groups: func(m: map<u32, list<string>>) -> map<u32, list<string>>;
}

world maps {
  import store;
  export api;
}
";

/// The canonical-ABI boundary of the component: a map parameter is
/// `(ptr, len)` of `(key, value)` tuples, a map result goes through a return
/// area holding `(ptr, len)`.
const CORE: &str = r#"
(module
  (import "test:maps/store" "lookup" (func $lookup (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  ;; the return area
  (global $ret i32 (i32.const 256))
  (func $realloc (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $new i32) (result i32)
    (local $ptr i32)
    global.get $heap local.get $align i32.add i32.const 1 i32.sub
    i32.const 0 local.get $align i32.sub i32.and local.set $ptr
    local.get $ptr local.get $new i32.add global.set $heap
    block $ok
      loop $grow
        global.get $heap memory.size i32.const 16 i32.shl i32.le_u br_if $ok
        i32.const 1 memory.grow drop
        br $grow
      end
    end
    local.get $old if
      local.get $ptr local.get $old
      local.get $new local.get $old_size local.get $new local.get $old_size i32.lt_u select
      memory.copy
    end
    local.get $ptr)
  (func $echo (export "test:maps/api#echo") (param i32 i32) (result i32)
    global.get $ret local.get 0 i32.store
    global.get $ret local.get 1 i32.store offset=4
    global.get $ret)
  (func (export "test:maps/api#groups") (param i32 i32) (result i32)
    local.get 0 local.get 1 call $echo)
  (func (export "test:maps/api#relay") (param i32 i32) (result i32)
    local.get 0 local.get 1 global.get $ret call $lookup
    global.get $ret)
)
"#;

/// What both hosts' `store.lookup` returns for `entries`: the entries in
/// reverse order, keys suffixed with `!`, values plus 1000 (wrapping).
fn lookup(entries: &[(String, u32)]) -> Vec<(String, u32)> {
    entries.iter().rev().map(|(k, v)| (format!("{k}!"), v.wrapping_add(1000))).collect()
}

fn component() -> Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("maps.wit", WIT)?;
    let world = resolve.select_world(&[package], Some("maps"))?;
    let mut core = wat::parse_str(CORE)?;
    wit_component::embed_component_metadata(&mut core, &resolve, world, wit_component::StringEncoding::UTF8)?;
    wit_component::ComponentEncoder::default().module(&core)?.validate(true).encode()
}

// ---- the two value worlds ----------------------------------------------

fn string_u32_val(entries: &[(String, u32)]) -> Val {
    Val::Map(entries.iter().map(|(k, v)| (Val::String(k.clone()), Val::U32(*v))).collect())
}

fn string_u32_value(entries: &[(String, u32)]) -> Value {
    Value::Map(entries.iter().map(|(k, v)| (Value::String(k.clone()), Value::U32(*v))).collect())
}

fn groups_val(entries: &[(u32, Vec<String>)]) -> Val {
    let list = |items: &[String]| Val::List(items.iter().map(|s| Val::String(s.clone())).collect());
    Val::Map(entries.iter().map(|(k, v)| (Val::U32(*k), list(v))).collect())
}

fn groups_value(entries: &[(u32, Vec<String>)]) -> Value {
    let list = |items: &[String]| Value::List(items.iter().map(|s| Value::String(s.clone())).collect());
    Value::Map(entries.iter().map(|(k, v)| (Value::U32(*k), list(v))).collect())
}

/// A reference value as a `karmem-format` value (strings, u32s, lists, maps).
fn from_val(val: &Val) -> Result<Value> {
    Ok(match val {
        Val::String(s) => Value::String(s.clone()),
        Val::U32(n) => Value::U32(*n),
        Val::List(items) => Value::List(items.iter().map(from_val).collect::<Result<_>>()?),
        Val::Map(entries) => {
            Value::Map(entries.iter().map(|(k, v)| Ok((from_val(k)?, from_val(v)?))).collect::<Result<_>>()?)
        }
        other => bail!("unexpected reference value {other:?}"),
    })
}

fn string_u32_entries(value: &Value) -> Result<Vec<(String, u32)>> {
    let Value::Map(entries) = value else { bail!("not a map: {value:?}") };
    entries
        .iter()
        .map(|entry| match entry {
            (Value::String(k), Value::U32(v)) => Ok((k.clone(), *v)),
            other => bail!("not a (string, u32) entry: {other:?}"),
        })
        .collect()
}

// ---- the reference: wasmtime's component runtime --------------------------

struct Reference {
    store: wasmtime::Store<()>,
    instance: wasmtime::component::Instance,
}

impl Reference {
    fn new(component: &[u8]) -> Result<Reference> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model_map(true);
        let engine = wasmtime::Engine::new(&config).map_err(anyhow::Error::from)?;
        let component = Component::new(&engine, component).map_err(anyhow::Error::from)?;
        let mut linker: Linker<()> = Linker::new(&engine);
        linker
            .instance("test:maps/store")
            .map_err(anyhow::Error::from)?
            .func_new("lookup", |_, _, params, results| {
                let entries = match params {
                    [Val::Map(entries)] => entries
                        .iter()
                        .map(|entry| match entry {
                            (Val::String(k), Val::U32(v)) => Ok((k.clone(), *v)),
                            other => Err(wasmtime::format_err!("not a (string, u32) entry: {other:?}")),
                        })
                        .collect::<wasmtime::Result<Vec<_>>>()?,
                    other => wasmtime::bail!("lookup got {other:?}"),
                };
                match results {
                    [slot] => *slot = string_u32_val(&lookup(&entries)),
                    _ => wasmtime::bail!("lookup has one result"),
                }
                Ok(())
            })
            .map_err(anyhow::Error::from)?;
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = linker.instantiate(&mut store, &component).map_err(anyhow::Error::from)?;
        Ok(Reference { store, instance })
    }

    fn call(&mut self, function: &str, arg: Val) -> Result<Val> {
        let api = self
            .instance
            .get_export_index(&mut self.store, None, "test:maps/api")
            .context("no `test:maps/api` export")?;
        let index = self
            .instance
            .get_export_index(&mut self.store, Some(&api), function)
            .with_context(|| format!("no `{function}`"))?;
        let func = self.instance.get_func(&mut self.store, index).with_context(|| format!("`{function}` is not a function"))?;
        let mut results = [Val::Bool(false)];
        func.call(&mut self.store, &[arg], &mut results).map_err(anyhow::Error::from)?;
        let [result] = results;
        Ok(result)
    }
}

// ---- the Karmem side --------------------------------------------------------

/// The Karmem-ABI host over `canonical` (a canonical-ABI boundary module),
/// serving `store.lookup` like the reference.
fn karmem_host(canonical: &[u8], edge_memory: bool) -> Result<Host> {
    let options = karmem_adapters::abi::Options { edge_memory, ..Default::default() };
    let mut host = Host::with_options(WIT, canonical, &options, |iface, function, args| match (iface, function) {
        ("store", "lookup") => {
            let entries = string_u32_entries(args.field("m").context("no argument `m`")?)?;
            Ok((rec(vec![("ret", string_u32_value(&lookup(&entries)))]), None))
        }
        other => bail!("unexpected import {other:?}"),
    })?;
    host.init()?;
    Ok(host)
}

fn karmem_call(host: &mut Host, function: &str, arg: Value) -> Result<Value> {
    let out = host.call("api", function, rec(vec![("m", arg)]))?;
    out.field("ret").cloned().with_context(|| format!("`{function}` returned no `ret`: {out:?}"))
}

fn words(n: usize) -> Vec<(String, u32)> {
    (0..n).map(|i| (format!("k{}", i % 7), i as u32 * 3)).collect()
}

#[test]
fn maps_cross_the_karmem_abi_as_the_component_runtime_passes_them() -> Result<()> {
    let component = component()?;
    let lowered = karmem_core_lowering::lower(&component, &karmem_core_lowering::Options::default())
        .context("lowering the map component")?;
    let canonical = wat::parse_str(CORE)?;
    let mut reference = Reference::new(&component)?;
    let mut hosts = vec![
        ("the canonical module", karmem_host(&canonical, false)?),
        ("the canonical module with an edge memory", karmem_host(&canonical, true)?),
        ("the lowered component", karmem_host(&lowered, false)?),
    ];

    let string_maps: Vec<Vec<(String, u32)>> = vec![
        Vec::new(),
        vec![("b".into(), 2), ("a".into(), 1), ("b".into(), 3)],
        vec![(String::new(), 0), ("h\u{e9}llo \u{1F600}".into(), u32::MAX), ("z".repeat(300), 7)],
        words(200),
    ];
    let mut compared = 0;
    for entries in &string_maps {
        for function in ["echo", "relay"] {
            let expected = from_val(&reference.call(function, string_u32_val(entries))?)?;
            let want = if function == "echo" { entries.clone() } else { lookup(entries) };
            ensure!(expected == string_u32_value(&want), "the reference's `{function}` gave {expected:?}");
            for (name, host) in &mut hosts {
                let actual = karmem_call(host, function, string_u32_value(entries)).with_context(|| format!("{name}: `{function}`"))?;
                ensure!(actual == expected, "{name}: `{function}` gave {actual:?}, the reference {expected:?}");
                compared += 1;
            }
        }
    }
    let s = |items: &[&str]| items.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let group_maps: Vec<Vec<(u32, Vec<String>)>> = vec![
        Vec::new(),
        vec![(7, s(&["x", "yz"])), (0, Vec::new()), (7, s(&["dup"]))],
        (0..40).map(|i| (i % 5, (0..i % 4).map(|j| format!("{i}.{j}")).collect())).collect(),
    ];
    for entries in &group_maps {
        let expected = from_val(&reference.call("groups", groups_val(entries))?)?;
        ensure!(expected == groups_value(entries), "the reference's `groups` gave {expected:?}");
        for (name, host) in &mut hosts {
            let actual = karmem_call(host, "groups", groups_value(entries)).with_context(|| format!("{name}: `groups`"))?;
            ensure!(actual == expected, "{name}: `groups` gave {actual:?}, the reference {expected:?}");
            compared += 1;
        }
    }
    ensure!(compared == (string_maps.len() * 2 + group_maps.len()) * hosts.len(), "only {compared} calls compared");
    Ok(())
}

/// A map message whose key column holds invalid UTF-8 is refused by the
/// export adapter (a trap), not handed to the guest.
#[test]
fn a_malformed_map_message_traps() -> Result<()> {
    let canonical = wat::parse_str(CORE)?;
    let mut host = karmem_host(&canonical, false)?;
    let arg = rec(vec![("m", string_u32_value(&[("ab".into(), 1)]))]);
    let mut message = host.encode_params("api", "echo", &arg)?;
    let at = message.windows(2).position(|w| w == b"ab").context("the key bytes")?;
    message[at] = 0xff;
    ensure!(host.call_bytes("api.echo", &message).is_err(), "invalid UTF-8 in a map key must trap");
    // The intact message still goes through.
    let good = host.encode_params("api", "echo", &arg)?;
    let out = host.call_bytes("api.echo", &good)?;
    ensure!(out.field("ret") == arg.field("m"), "{out:?}");
    Ok(())
}

