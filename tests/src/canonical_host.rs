//! A canonical-ABI host for lowered modules on wasmtime with the component
//! model off.
//!
//! Owns: [`CanonicalRunner`], a [`Runner`] that calls the exports of a
//! module lowered with `--abi canonical` by doing the canonical ABI itself
//! (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md>):
//! argument values are lowered into flat params or linear memory (through
//! the module's `cabi_realloc`), results are lifted back and
//! `cabi_post_*` runs after. The original component supplies the types.
//! Host imports named by interface are served here: `karmem:fixtures/host`
//! `log` and `next-id`, recorded as effects exactly as the reference
//! runner records them; other imports trap when called. Resource handles
//! and WASI are left to the adapters' runners.

use std::sync::OnceLock;

use anyhow::{Context, Result, bail, ensure};
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Component, Type, Val};
use wasmtime::{
    AsContextMut, Caller, Config, Engine, Extern, Instance, Linker, Memory, Module, Store,
    TypedFunc, Val as CoreVal, ValType as CoreType,
};

use crate::harness::{Completion, Effect, Outcome, Runner};
use crate::invocation::{Action, Arg, Invocation};
use crate::value::Value;

/// Spec: at most this many flat params; more go through memory.
const MAX_FLAT_PARAMS: usize = 16;
/// Spec: at most this many flat results; more go through memory.
const MAX_FLAT_RESULTS: usize = 1;

/// Engine with the component model off: the lowered module is plain wasm.
fn core_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.wasm_component_model(false);
        Engine::new(&config).unwrap_or_else(|_| Engine::default())
    })
}

/// Which memory, realloc and string encoding a boundary function uses, from
/// the lowered module's `karmem:canonical-abi` section.
#[derive(Debug, Clone)]
struct Boundary {
    memory: String,
    realloc: String,
    encoding: String,
}

impl Default for Boundary {
    fn default() -> Self {
        Boundary { memory: "memory".into(), realloc: "cabi_realloc".into(), encoding: "utf8".into() }
    }
}

/// `kind:name` -> options, read from the lowered module.
fn boundaries(lowered: &[u8]) -> Result<std::collections::HashMap<String, Boundary>> {
    let mut out = std::collections::HashMap::new();
    for payload in wasmparser::Parser::new(0).parse_all(lowered) {
        if let wasmparser::Payload::CustomSection(reader) = payload? {
            if reader.name() != "karmem:canonical-abi" {
                continue;
            }
            let entries: Vec<serde_json::Value> = serde_json::from_slice(reader.data())?;
            for e in entries {
                let text = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_string);
                let key = format!("{}:{}", text("kind").unwrap_or_default(), text("name").unwrap_or_default());
                let default = Boundary::default();
                out.insert(
                    key,
                    Boundary {
                        memory: text("memory").unwrap_or(default.memory),
                        realloc: text("realloc").unwrap_or(default.realloc),
                        encoding: text("string-encoding").unwrap_or(default.encoding),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Store data: effects and the host's counters.
#[derive(Debug, Default)]
struct HostData {
    effects: Vec<Effect>,
    next_id: u32,
    next_rep: u32,
    /// Live host `tally` resources: handle -> total.
    tallies: std::collections::BTreeMap<u32, u64>,
    /// Live `resource1` handles of the wast `host` instance: handle -> rep.
    wast_resources: std::collections::BTreeMap<u32, u32>,
    /// `resource1` destructor runs, and the rep of the last one.
    wast_drops: u32,
    wast_last_drop: u32,
}

/// One function of the component, with its interface for naming.
#[derive(Debug, Clone)]
struct Signature {
    params: Vec<(String, Type)>,
    results: Vec<Type>,
}

fn signature(func: &ComponentFunc) -> Signature {
    Signature {
        params: func.params().map(|(n, t)| (n.to_string(), t)).collect(),
        results: func.results().collect(),
    }
}

/// Runs a lowered module's exports through the canonical ABI.
pub struct CanonicalRunner {
    module: Module,
    linker: Linker<HostData>,
    store: Store<HostData>,
    instance: Instance,
    /// Exported functions by flat name (`iface#fn`).
    exports: Vec<(String, Signature)>,
    /// Exported resource types and the lowered module's drop export for each.
    resources: Vec<(wasmtime::component::ResourceType, String)>,
    /// Per-function memory, realloc and encoding.
    boundaries: std::collections::HashMap<String, Boundary>,
    /// Handles bound by invocations: name -> (handle, drop export).
    handles: std::collections::HashMap<String, (u32, String)>,
}

impl std::fmt::Debug for CanonicalRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanonicalRunner").finish_non_exhaustive()
    }
}

impl CanonicalRunner {
    /// `component` supplies the types; `lowered` is what runs.
    pub fn new(component: &[u8], lowered: &[u8]) -> Result<Self> {
        Self::with_typing_engine(crate::reference::engine(), component, lowered)
    }

    /// [`CanonicalRunner::new`] with the engine that compiles `component` for
    /// its types (one with the wasm features the component needs).
    pub fn with_typing_engine(typing_engine: &Engine, component: &[u8], lowered: &[u8]) -> Result<Self> {
        let component = Component::new(typing_engine, component).map_err(anyhow::Error::from)?;
        let ty = component.component_type();
        let mut exports = Vec::new();
        let mut resources = Vec::new();
        for (name, item) in ty.exports(typing_engine) {
            match item.ty {
                ComponentItem::ComponentFunc(f) => exports.push((name.to_string(), signature(&f))),
                ComponentItem::ComponentInstance(i) => {
                    for (fname, item) in i.exports(typing_engine) {
                        match item.ty {
                            ComponentItem::ComponentFunc(f) => {
                                exports.push((format!("{name}#{fname}"), signature(&f)))
                            }
                            ComponentItem::Resource(rt) => {
                                resources.push((rt, format!("{name}#[resource-drop]{fname}")))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let mut imports = Vec::new();
        for (name, item) in ty.imports(typing_engine) {
            match item.ty {
                ComponentItem::ComponentFunc(f) => {
                    imports.push(("$root".to_string(), name.to_string(), signature(&f)))
                }
                ComponentItem::ComponentInstance(i) => instance_imports(typing_engine, name, &i, &mut imports),
                _ => {}
            }
        }

        let engine = core_engine();
        let module = Module::new(engine, lowered)
            .map_err(anyhow::Error::from)
            .context("compiling the lowered module")?;
        let mut linker: Linker<HostData> = Linker::new(engine);
        let import_boundaries = boundaries(lowered)?;
        for import in module.imports() {
            let (iface, field) = (import.module().to_string(), import.name().to_string());
            let Some(func_ty) = import.ty().func().cloned() else {
                bail!("the lowered module imports `{iface}` `{field}`, which is not a function");
            };
            let sig = imports
                .iter()
                .find(|(i, f, _)| *i == iface && *f == field)
                .map(|(_, _, s)| s.clone());
            let qualified = if iface == "$root" {
                field.clone()
            } else {
                format!("{iface}#{field}")
            };
            let sig = sig.or_else(|| {
                field.starts_with("[resource-drop]").then(|| Signature {
                    params: vec![("self".to_string(), Type::U32)],
                    results: Vec::new(),
                })
            });
            let served = sig.filter(|_| is_served(&iface, &field));
            let boundary = import_boundaries.get(&format!("import:{iface}#{field}")).cloned().unwrap_or_default();
            linker
                .func_new(
                    &iface,
                    &field,
                    func_ty,
                    move |mut caller: Caller<'_, HostData>, args, results| {
                        let Some(sig) = &served else {
                            return Err(wasmtime::Error::msg(format!(
                                "the canonical host does not provide `{qualified}`"
                            )));
                        };
                        serve(&mut caller, &qualified, sig, &boundary, args, results)
                            .map_err(wasmtime::Error::from_anyhow)
                    },
                )
                .map_err(anyhow::Error::from)?;
        }
        let (store, instance) = instantiate(&linker, &module)?;
        Ok(CanonicalRunner {
            module,
            linker,
            store,
            instance,
            exports,
            resources,
            handles: std::collections::HashMap::new(),
            boundaries: boundaries(lowered)?,
        })
    }

    fn call(&mut self, name: &str, args: &[Arg], bind: Option<&str>) -> Result<Completion> {
        let sig = self
            .exports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .with_context(|| format!("the component exports no function `{name}`"))?;
        if sig.params.len() != args.len() {
            bail!(
                "`{name}` takes {} arguments, found {}",
                sig.params.len(),
                args.len()
            );
        }
        let mut values = Vec::new();
        for ((pname, ty), arg) in sig.params.iter().zip(args) {
            match arg {
                Arg::Wave(text) => values.push(
                    Val::from_wave(ty, text)
                        .map_err(anyhow::Error::from)
                        .with_context(|| format!("parsing the argument `{pname}`"))?,
                ),
                Arg::Handle(handle) => values.push(Val::U32(
                    self.handles
                        .get(handle)
                        .map(|(h, _)| *h)
                        .with_context(|| format!("no handle bound to `${handle}`"))?,
                )),
            }
        }
        let func = self
            .instance
            .get_func(&mut self.store, name)
            .with_context(|| format!("the lowered module exports no `{name}`"))?;
        let boundary = self.boundaries.get(&format!("export:{name}")).cloned().unwrap_or_default();
        let memory = self.instance.get_memory(&mut self.store, &boundary.memory);
        let realloc = self
            .instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut self.store, &boundary.realloc)
            .ok();
        let mut cx = Cx {
            store: self.store.as_context_mut(),
            memory,
            realloc,
            encoding: boundary.encoding.clone(),
        };

        // Lower the arguments.
        let param_types: Vec<Type> = sig.params.iter().map(|(_, t)| t.clone()).collect();
        let mut flat_types = Vec::new();
        for t in &param_types {
            flatten(t, &mut flat_types)?;
        }
        let mut flat = Vec::new();
        if flat_types.len() > MAX_FLAT_PARAMS {
            let (size, align) = tuple_layout(&param_types)?;
            let ptr = cx.alloc(size, align)?;
            store_tuple(&mut cx, &param_types, &values, ptr)?;
            flat.push(CoreVal::I32(ptr as i32));
        } else {
            for (v, t) in values.iter().zip(&param_types) {
                lower_flat(&mut cx, v, t, &mut flat)?;
            }
        }
        let result_count = func.ty(&cx.store).results().len();
        let mut raw = vec![CoreVal::I32(0); result_count];
        if let Err(error) = func.call(&mut cx.store, &flat, &mut raw) {
            return Ok(Completion::Trapped(format!("{error:#}")));
        }
        // Lift the results.
        let mut result_flat = Vec::new();
        for t in &sig.results {
            flatten(t, &mut result_flat)?;
        }
        let results = if result_flat.len() > MAX_FLAT_RESULTS {
            let ptr = core_i32(raw.first())? as u32;
            load_tuple(&mut cx, &sig.results, ptr)?
        } else {
            let mut iter = raw.iter().cloned();
            sig.results
                .iter()
                .map(|t| lift_flat(&mut cx, t, &mut iter))
                .collect::<Result<Vec<_>>>()?
        };
        let post = format!("cabi_post_{name}");
        if let Some(post) = self.instance.get_func(&mut cx.store, &post)
            && let Err(error) = post.call(&mut cx.store, &raw, &mut [])
        {
            return Ok(Completion::Trapped(format!("{error:#}")));
        }
        let mut bound = None;
        let values = results
            .iter()
            .zip(&sig.results)
            .map(|(v, t)| {
                to_value(v, t, &mut |h, own| match bind {
                    Some(b) if bound.is_none() => {
                        bound = Some(h);
                        format!("${b}")
                    }
                    _ => if own { "own" } else { "borrow" }.to_string(),
                })
            })
            .collect();
        if let (Some(b), Some(h)) = (bind, bound) {
            // The drop export of the bound handle's resource.
            let drop = sig
                .results
                .iter()
                .find_map(|t| match t {
                    Type::Own(rt) => self.resources.iter().find(|(r, _)| r == rt).map(|(_, d)| d.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            self.handles.insert(b.to_string(), (h, drop));
        }
        Ok(Completion::Returned(values))
    }
}

fn instantiate(linker: &Linker<HostData>, module: &Module) -> Result<(Store<HostData>, Instance)> {
    let mut store = Store::new(core_engine(), HostData::default());
    let instance = linker
        .instantiate(&mut store, module)
        .map_err(anyhow::Error::from)
        .context("instantiating the lowered module")?;
    Ok((store, instance))
}

impl Runner for CanonicalRunner {
    fn invoke(&mut self, invocation: &Invocation) -> Result<Outcome> {
        let completion = match &invocation.action {
            Action::Call(call) => self.call(&call.qualified_name(), &call.args, call.bind.as_deref())?,
            Action::Drop(name) => {
                let (handle, drop) = self
                    .handles
                    .remove(name)
                    .with_context(|| format!("no handle bound to `${name}`"))?;
                let func = self
                    .instance
                    .get_func(&mut self.store, &drop)
                    .with_context(|| format!("the lowered module exports no `{drop}`"))?;
                match func.call(&mut self.store, &[CoreVal::I32(handle as i32)], &mut []) {
                    Ok(()) => Completion::Returned(Vec::new()),
                    Err(error) => Completion::Trapped(format!("{error:#}")),
                }
            }
        };
        let effects = std::mem::take(&mut self.store.data_mut().effects);
        // Like the reference runner: an instance that trapped or exited is
        // not used again; the next invocation gets a fresh one.
        if !matches!(completion, Completion::Returned(_)) {
            let (store, instance) = instantiate(&self.linker, &self.module)?;
            self.store = store;
            self.instance = instance;
        }
        Ok(Outcome {
            completion,
            effects,
        })
    }
}

/// The functions of the imported instance `path`, at any depth: a function of
/// a nested instance is imported as `("outer#nested", "name")`, the lowering's
/// names for it.
fn instance_imports(
    engine: &Engine,
    path: &str,
    instance: &wasmtime::component::types::ComponentInstance,
    imports: &mut Vec<(String, String, Signature)>,
) {
    for (fname, item) in instance.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(f) => imports.push((path.to_string(), fname.to_string(), signature(&f))),
            ComponentItem::ComponentInstance(nested) => {
                instance_imports(engine, &format!("{path}#{fname}"), &nested, imports);
            }
            _ => {}
        }
    }
}

fn unversioned(interface: &str) -> &str {
    interface
        .split_once('@')
        .map_or(interface, |(name, _)| name)
}

fn is_served(interface: &str, name: &str) -> bool {
    is_wast_host(interface, name) || unversioned(interface) == crate::host::HOST_INTERFACE
        && matches!(
            name,
            "log"
                | "emit"
                | "next-id"
                | "lines"
                | "[constructor]tally"
                | "[method]tally.add"
                | "[static]tally.named"
                | "[resource-drop]tally"
        )
}

/// The host items wasmtime's wast runner gives component scripts (its
/// `link_component_spectest`), the synchronous ones: `host-return-two` at the
/// root and, in the instance `host`, `return-three`, `return-hi` and the
/// resource `resource1` (constructor, `assert`, `simple`, `take-borrow`,
/// `take-own`, `drops`, `last-drop`, drop), and `return-four` in the instance
/// `nested` of `host`.
fn is_wast_host(interface: &str, name: &str) -> bool {
    (interface == "$root" && name == "host-return-two")
        || (interface == "host#nested" && name == "return-four")
        || (interface == "host"
            && matches!(
                name,
                "return-three"
                    | "return-hi"
                    | "[constructor]resource1"
                    | "[static]resource1.assert"
                    | "[static]resource1.last-drop"
                    | "[static]resource1.drops"
                    | "[method]resource1.simple"
                    | "[method]resource1.take-borrow"
                    | "[method]resource1.take-own"
                    | "[resource-drop]resource1"
            ))
}

/// Serves a wast `host` item (see [`is_wast_host`]): `Some(result)` when
/// `function` is one. `resource1` handles are the host's own numbers; an
/// `own` passed in is consumed without running the destructor, as wasmtime
/// does for host resources.
fn serve_wast_host(data: &mut HostData, function: &str, values: &[Val], types: &[Type]) -> Result<Option<Option<Val>>> {
    let rep_of = |data: &HostData, h: u32| data.wast_resources.get(&h).copied().with_context(|| format!("unknown resource1 handle {h}"));
    let owned = |i: usize| matches!(types.get(i), Some(Type::Own(_)));
    let result = match (function, values) {
        ("host-return-two", []) => Some(Val::U32(2)),
        ("return-three", []) => Some(Val::U32(3)),
        ("return-four", []) => Some(Val::U32(4)),
        ("return-hi", []) => Some(Val::String("hi".into())),
        ("[constructor]resource1", [Val::U32(rep)]) => {
            data.next_rep += 1;
            data.wast_resources.insert(data.next_rep, *rep);
            Some(Val::U32(data.next_rep))
        }
        ("[static]resource1.assert" | "[method]resource1.simple", [Val::U32(h), Val::U32(rep)]) => {
            if rep_of(data, *h)? != *rep {
                bail!("resource1 handle {h} does not hold rep {rep}");
            }
            if function == "[method]resource1.simple" && owned(0) {
                bail!("resource1.simple takes a borrow");
            }
            if owned(0) {
                data.wast_resources.remove(h);
            }
            None
        }
        ("[method]resource1.take-borrow" | "[method]resource1.take-own", [Val::U32(a), Val::U32(b)]) => {
            rep_of(data, *a)?;
            rep_of(data, *b)?;
            if owned(1) {
                data.wast_resources.remove(b);
            }
            None
        }
        ("[static]resource1.drops", []) => Some(Val::U32(data.wast_drops)),
        ("[static]resource1.last-drop", []) => Some(Val::U32(data.wast_last_drop)),
        ("[resource-drop]resource1", [Val::U32(h)]) => {
            let rep = data.wast_resources.remove(h).with_context(|| format!("dropping unknown resource1 handle {h}"))?;
            data.wast_drops += 1;
            data.wast_last_drop = rep;
            None
        }
        _ => return Ok(None),
    };
    Ok(Some(result))
}

/// A lifted value as the harness sees it; handles (carried as `u32` here)
/// are labelled by `label`.
fn to_value(val: &Val, ty: &Type, label: &mut dyn FnMut(u32, bool) -> String) -> Value {
    let boxed = |v: &Option<Box<Val>>, t: Option<Type>, label: &mut dyn FnMut(u32, bool) -> String| match (v, t) {
        (Some(v), Some(t)) => Some(Box::new(to_value(v, &t, label))),
        _ => None,
    };
    match (val, ty) {
        (Val::U32(h), Type::Own(_)) => Value::Handle(label(*h, true)),
        (Val::U32(h), Type::Borrow(_)) => Value::Handle(label(*h, false)),
        (Val::List(items), Type::List(l)) => {
            Value::List(items.iter().map(|v| to_value(v, &l.ty(), label)).collect())
        }
        (Val::Record(fields), Type::Record(r)) => Value::Record(
            fields.iter().zip(r.fields()).map(|((n, v), f)| (n.clone(), to_value(v, &f.ty, label))).collect(),
        ),
        (Val::Tuple(vs), Type::Tuple(t)) => {
            Value::Tuple(vs.iter().zip(t.types()).map(|(v, t)| to_value(v, &t, label)).collect())
        }
        (Val::Option(o), Type::Option(t)) => Value::Option(boxed(o, Some(t.ty()), label)),
        (Val::Result(Ok(v)), Type::Result(t)) => Value::Result(Ok(boxed(v, t.ok(), label))),
        (Val::Result(Err(v)), Type::Result(t)) => Value::Result(Err(boxed(v, t.err(), label))),
        (Val::Variant(name, payload), Type::Variant(v)) => {
            let case_ty = v.cases().find(|c| c.name == name).and_then(|c| c.ty);
            Value::Variant(name.clone(), boxed(payload, case_ty, label))
        }
        (val, _) => crate::reference::value_from_val(val, &mut |_| "handle".to_string()),
    }
}

/// Serve a host import: lift the arguments, record the call, lower the result.
fn serve(
    caller: &mut Caller<'_, HostData>,
    qualified: &str,
    sig: &Signature,
    boundary: &Boundary,
    args: &[CoreVal],
    results: &mut [CoreVal],
) -> Result<()> {
    let memory = match caller.get_export(&boundary.memory) {
        Some(Extern::Memory(m)) => Some(m),
        _ => None,
    };
    let realloc = match caller.get_export(&boundary.realloc) {
        Some(Extern::Func(f)) => f.typed::<(i32, i32, i32, i32), i32>(&caller).ok(),
        _ => None,
    };
    let mut cx = Cx {
        store: caller.as_context_mut(),
        memory,
        realloc,
        encoding: boundary.encoding.clone(),
    };
    let param_types: Vec<Type> = sig.params.iter().map(|(_, t)| t.clone()).collect();
    let mut flat_types = Vec::new();
    for t in &param_types {
        flatten(t, &mut flat_types)?;
    }
    let values = if flat_types.len() > MAX_FLAT_PARAMS {
        load_tuple(&mut cx, &param_types, core_i32(args.first())? as u32)?
    } else {
        let mut iter = args.iter().cloned();
        param_types
            .iter()
            .map(|t| lift_flat(&mut cx, t, &mut iter))
            .collect::<Result<Vec<_>>>()?
    };
    let function = qualified.rsplit('#').next().unwrap_or("");
    let data = cx.store.data_mut();
    let new_tally = |data: &mut HostData, start: u64| {
        data.next_rep += 1;
        data.tallies.insert(data.next_rep, start);
        Val::U32(data.next_rep)
    };
    let wast_host = if is_wast_host(qualified.rsplit_once('#').map_or("$root", |(i, _)| i), function) {
        serve_wast_host(data, function, &values, &param_types)?
    } else {
        None
    };
    let result = match (function, values.as_slice()) {
        _ if wast_host.is_some() => wast_host.flatten(),
        ("next-id", _) => {
            data.next_id += 1;
            Some(Val::U32(data.next_id))
        }
        ("lines", [Val::U32(count), Val::String(prefix)]) => Some(Val::List(
            (0..*count).map(|index| Val::String(format!("{prefix}{index}"))).collect(),
        )),
        ("[constructor]tally", [Val::U64(start)]) => Some(new_tally(data, *start)),
        ("[static]tally.named", [Val::String(name)]) => Some(new_tally(data, name.len() as u64)),
        ("[method]tally.add", [Val::U32(h), Val::U64(n)]) => {
            let total = data.tallies.get_mut(h).with_context(|| format!("unknown tally {h}"))?;
            *total = total.wrapping_add(*n);
            Some(Val::U64(*total))
        }
        ("[resource-drop]tally", [Val::U32(h)]) => {
            let total = data.tallies.remove(h).with_context(|| format!("dropping unknown tally {h}"))?;
            data.effects.push(Effect::Host(format!("drop tally({total})")));
            return Ok(());
        }
        _ => None,
    };
    let describe = |v: &Val, t: &Type| to_value(v, t, &mut |_, _| "handle".to_string()).to_wave();
    let arg_text = values
        .iter()
        .zip(&param_types)
        .map(|(v, t)| describe(v, t))
        .collect::<Vec<_>>()
        .join(", ");
    let mut record = format!("{qualified}({arg_text})");
    if let (Some(r), Some(t)) = (&result, sig.results.first()) {
        record.push_str(" -> ");
        record.push_str(&describe(r, t));
    }
    cx.store.data_mut().effects.push(Effect::Host(record));
    if let (Some(value), Some(ty)) = (result, sig.results.first()) {
        let mut flat = Vec::new();
        flatten(ty, &mut flat)?;
        if flat.len() > MAX_FLAT_RESULTS {
            let ptr = core_i32(args.last())? as u32;
            store(&mut cx, &value, ty, ptr)?;
        } else {
            let mut out = Vec::new();
            lower_flat(&mut cx, &value, ty, &mut out)?;
            for (slot, v) in results.iter_mut().zip(out) {
                *slot = v;
            }
        }
    }
    Ok(())
}

/// Memory access and allocation for one call.
struct Cx<'a> {
    store: wasmtime::StoreContextMut<'a, HostData>,
    memory: Option<Memory>,
    realloc: Option<TypedFunc<(i32, i32, i32, i32), i32>>,
    /// `utf8`, `utf16` or `latin1+utf16`.
    encoding: String,
}

impl Cx<'_> {
    fn memory(&self) -> Result<Memory> {
        self.memory
            .context("the lowered module exports no `memory`")
    }
    fn alloc(&mut self, size: u32, align: u32) -> Result<u32> {
        let realloc = self
            .realloc
            .clone()
            .context("the lowered module exports no `cabi_realloc`")?;
        let ptr = realloc
            .call(&mut self.store, (0, 0, align as i32, size as i32))
            .map_err(anyhow::Error::from)
            .context("`cabi_realloc` failed")?;
        let ptr = ptr as u32;
        // The canonical ABI's checks on a realloc result.
        ensure!(align == 0 || ptr.is_multiple_of(align), "realloc return: unaligned pointer {ptr} (alignment {align})");
        let end = u64::from(ptr) + u64::from(size);
        ensure!(end <= self.memory()?.data_size(&self.store) as u64, "realloc return: beyond end of memory");
        Ok(ptr)
    }
    fn read(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>> {
        let memory = self.memory()?;
        let data = memory.data(&self.store);
        let start = ptr as usize;
        let end = start
            .checked_add(len as usize)
            .context("address overflow")?;
        Ok(data.get(start..end).context("read out of bounds")?.to_vec())
    }
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        let memory = self.memory()?;
        memory
            .write(&mut self.store, ptr as usize, bytes)
            .map_err(|_| anyhow::anyhow!("write out of bounds"))
    }
}

/// A string as UTF-16 little-endian bytes, its alignment and its length in
/// code units.
fn utf16_bytes(s: &str) -> (Vec<u8>, u32, u32) {
    let units: Vec<u16> = s.encode_utf16().collect();
    let bytes = units.iter().flat_map(|u| u.to_le_bytes()).collect();
    (bytes, 2, units.len() as u32)
}

fn core_i32(v: Option<&CoreVal>) -> Result<i32> {
    match v {
        Some(CoreVal::I32(x)) => Ok(*x),
        other => bail!("expected an i32, found {other:?}"),
    }
}

fn align_to(x: u32, align: u32) -> u32 {
    x.div_ceil(align) * align
}

fn discriminant_size(cases: usize) -> u32 {
    match cases {
        0..=256 => 1,
        257..=65536 => 2,
        _ => 4,
    }
}

/// Size and alignment of a type in memory.
fn layout(ty: &Type) -> Result<(u32, u32)> {
    Ok(match ty {
        Type::Bool | Type::S8 | Type::U8 => (1, 1),
        Type::S16 | Type::U16 => (2, 2),
        Type::S32 | Type::U32 | Type::Float32 | Type::Char | Type::Own(_) | Type::Borrow(_) => {
            (4, 4)
        }
        Type::S64 | Type::U64 | Type::Float64 => (8, 8),
        Type::String | Type::List(_) => (8, 4),
        Type::Record(r) => tuple_layout(&r.fields().map(|f| f.ty).collect::<Vec<_>>())?,
        Type::Tuple(t) => tuple_layout(&t.types().collect::<Vec<_>>())?,
        Type::Variant(v) => variant_layout(&v.cases().map(|c| c.ty).collect::<Vec<_>>())?,
        Type::Enum(e) => variant_layout(&vec![None; e.names().len()])?,
        Type::Option(o) => variant_layout(&[None, Some(o.ty())])?,
        Type::Result(r) => variant_layout(&[r.ok(), r.err()])?,
        Type::Flags(f) => match f.names().len() {
            0 => (0, 1),
            1..=8 => (1, 1),
            9..=16 => (2, 2),
            n => (4 * n.div_ceil(32) as u32, 4),
        },
        other => bail!("the canonical host does not support {other:?} yet"),
    })
}

fn tuple_layout(types: &[Type]) -> Result<(u32, u32)> {
    let (mut size, mut align) = (0, 1);
    for t in types {
        let (s, a) = layout(t)?;
        size = align_to(size, a) + s;
        align = align.max(a);
    }
    Ok((align_to(size, align), align))
}

fn variant_layout(cases: &[Option<Type>]) -> Result<(u32, u32)> {
    let disc = discriminant_size(cases.len());
    let (mut payload, mut align) = (0, disc);
    for t in cases.iter().flatten() {
        let (s, a) = layout(t)?;
        payload = payload.max(s);
        align = align.max(a);
    }
    Ok((align_to(align_to(disc, align) + payload, align), align))
}

fn payload_offset(cases: &[Option<Type>]) -> Result<u32> {
    let disc = discriminant_size(cases.len());
    let mut align = disc;
    for t in cases.iter().flatten() {
        align = align.max(layout(t)?.1);
    }
    Ok(align_to(disc, align))
}

fn flatten(ty: &Type, out: &mut Vec<CoreType>) -> Result<()> {
    match ty {
        Type::S64 | Type::U64 => out.push(CoreType::I64),
        Type::Float32 => out.push(CoreType::F32),
        Type::Float64 => out.push(CoreType::F64),
        Type::String | Type::List(_) => out.extend([CoreType::I32, CoreType::I32]),
        Type::Record(r) => {
            for f in r.fields() {
                flatten(&f.ty, out)?;
            }
        }
        Type::Tuple(t) => {
            for t in t.types() {
                flatten(&t, out)?;
            }
        }
        Type::Flags(f) => out.extend(std::iter::repeat_n(
            CoreType::I32,
            f.names().len().div_ceil(32),
        )),
        Type::Variant(v) => flatten_variant(&v.cases().map(|c| c.ty).collect::<Vec<_>>(), out)?,
        Type::Enum(_) => out.push(CoreType::I32),
        Type::Option(o) => flatten_variant(&[None, Some(o.ty())], out)?,
        Type::Result(r) => flatten_variant(&[r.ok(), r.err()], out)?,
        Type::Bool
        | Type::S8
        | Type::U8
        | Type::S16
        | Type::U16
        | Type::S32
        | Type::U32
        | Type::Char
        | Type::Own(_)
        | Type::Borrow(_) => out.push(CoreType::I32),
        other => bail!("the canonical host does not support {other:?} yet"),
    }
    Ok(())
}

fn joined_payload(cases: &[Option<Type>]) -> Result<Vec<CoreType>> {
    let mut joined: Vec<CoreType> = Vec::new();
    for t in cases.iter().flatten() {
        let mut flat = Vec::new();
        flatten(t, &mut flat)?;
        for (i, f) in flat.into_iter().enumerate() {
            match joined.get_mut(i) {
                Some(slot) => *slot = join(slot, &f),
                None => joined.push(f),
            }
        }
    }
    Ok(joined)
}

fn flatten_variant(cases: &[Option<Type>], out: &mut Vec<CoreType>) -> Result<()> {
    out.push(CoreType::I32);
    out.extend(joined_payload(cases)?);
    Ok(())
}

fn join(a: &CoreType, b: &CoreType) -> CoreType {
    match (a, b) {
        (CoreType::I32, CoreType::I32) => CoreType::I32,
        (CoreType::F32, CoreType::F32) => CoreType::F32,
        (CoreType::F64, CoreType::F64) => CoreType::F64,
        (CoreType::I32, CoreType::F32) | (CoreType::F32, CoreType::I32) => CoreType::I32,
        _ => CoreType::I64,
    }
}

fn zero(t: &CoreType) -> CoreVal {
    match t {
        CoreType::I64 => CoreVal::I64(0),
        CoreType::F32 => CoreVal::F32(0),
        CoreType::F64 => CoreVal::F64(0),
        _ => CoreVal::I32(0),
    }
}

/// Coerce a case's flat value to the joined type.
fn widen(v: CoreVal, to: &CoreType) -> CoreVal {
    match (v, to) {
        (CoreVal::F32(bits), CoreType::I32) => CoreVal::I32(bits as i32),
        (CoreVal::I32(x), CoreType::I64) => CoreVal::I64(i64::from(x as u32)),
        (CoreVal::F32(bits), CoreType::I64) => CoreVal::I64(i64::from(bits)),
        (CoreVal::F64(bits), CoreType::I64) => CoreVal::I64(bits as i64),
        (v, _) => v,
    }
}

/// Coerce a joined flat value back to a case's type.
fn narrow(v: CoreVal, to: &CoreType) -> CoreVal {
    match (v, to) {
        (CoreVal::I32(x), CoreType::F32) => CoreVal::F32(x as u32),
        (CoreVal::I64(x), CoreType::I32) => CoreVal::I32(x as i32),
        (CoreVal::I64(x), CoreType::F32) => CoreVal::F32(x as u32),
        (CoreVal::I64(x), CoreType::F64) => CoreVal::F64(x as u64),
        (v, _) => v,
    }
}

fn case_index(names: impl Iterator<Item = String>, wanted: &str) -> Result<usize> {
    names
        .enumerate()
        .find(|(_, n)| n == wanted)
        .map(|(i, _)| i)
        .with_context(|| format!("no case `{wanted}`"))
}

fn lower_variant(
    cx: &mut Cx<'_>,
    cases: &[Option<Type>],
    index: usize,
    payload: Option<&Val>,
    out: &mut Vec<CoreVal>,
) -> Result<()> {
    out.push(CoreVal::I32(index as i32));
    let joined = joined_payload(cases)?;
    let mut flat = Vec::new();
    if let (Some(v), Some(Some(t))) = (payload, cases.get(index)) {
        lower_flat(cx, v, t, &mut flat)?;
    }
    for (i, t) in joined.iter().enumerate() {
        out.push(match flat.get(i) {
            Some(v) => widen(*v, t),
            None => zero(t),
        });
    }
    Ok(())
}

fn lower_flat(cx: &mut Cx<'_>, v: &Val, ty: &Type, out: &mut Vec<CoreVal>) -> Result<()> {
    match (v, ty) {
        (Val::Bool(b), _) => out.push(CoreVal::I32(i32::from(*b))),
        (Val::S8(x), _) => out.push(CoreVal::I32(i32::from(*x))),
        (Val::U8(x), _) => out.push(CoreVal::I32(i32::from(*x))),
        (Val::S16(x), _) => out.push(CoreVal::I32(i32::from(*x))),
        (Val::U16(x), _) => out.push(CoreVal::I32(i32::from(*x))),
        (Val::S32(x), _) => out.push(CoreVal::I32(*x)),
        (Val::U32(x), _) => out.push(CoreVal::I32(*x as i32)),
        (Val::S64(x), _) => out.push(CoreVal::I64(*x)),
        (Val::U64(x), _) => out.push(CoreVal::I64(*x as i64)),
        (Val::Float32(x), _) => out.push(CoreVal::F32(x.to_bits())),
        (Val::Float64(x), _) => out.push(CoreVal::F64(x.to_bits())),
        (Val::Char(c), _) => out.push(CoreVal::I32(*c as i32)),
        (Val::String(s), _) => {
            let latin1 = s.chars().all(|c| (c as u32) < 256);
            let (bytes, align, len) = match cx.encoding.as_str() {
                "utf16" => utf16_bytes(s),
                "latin1+utf16" if latin1 => {
                    let bytes: Vec<u8> = s.chars().map(|c| c as u8).collect();
                    let len = bytes.len() as u32;
                    (bytes, 2, len)
                }
                "latin1+utf16" => {
                    let (bytes, align, len) = utf16_bytes(s);
                    (bytes, align, len | (1 << 31))
                }
                _ => (s.as_bytes().to_vec(), 1, s.len() as u32),
            };
            let ptr = cx.alloc(bytes.len() as u32, align)?;
            cx.write(ptr, &bytes)?;
            out.extend([CoreVal::I32(ptr as i32), CoreVal::I32(len as i32)]);
        }
        (Val::List(items), Type::List(l)) => {
            let elem = l.ty();
            let (size, align) = layout(&elem)?;
            let ptr = cx.alloc(size * items.len() as u32, align)?;
            for (i, item) in items.iter().enumerate() {
                store(cx, item, &elem, ptr + size * i as u32)?;
            }
            out.extend([CoreVal::I32(ptr as i32), CoreVal::I32(items.len() as i32)]);
        }
        (Val::Record(fields), Type::Record(r)) => {
            for ((_, v), f) in fields.iter().zip(r.fields()) {
                lower_flat(cx, v, &f.ty, out)?;
            }
        }
        (Val::Tuple(vs), Type::Tuple(t)) => {
            for (v, t) in vs.iter().zip(t.types()) {
                lower_flat(cx, v, &t, out)?;
            }
        }
        (Val::Flags(set), Type::Flags(f)) => {
            let names: Vec<&str> = f.names().collect();
            let mut words = vec![0u32; names.len().div_ceil(32)];
            for (i, n) in names.iter().enumerate() {
                if set.iter().any(|s| s == n)
                    && let Some(w) = words.get_mut(i / 32)
                {
                    *w |= 1 << (i % 32);
                }
            }
            out.extend(words.into_iter().map(|w| CoreVal::I32(w as i32)));
        }
        (Val::Enum(name), Type::Enum(e)) => out
            .push(CoreVal::I32(
                case_index(e.names().map(str::to_string), name)? as i32,
            )),
        (Val::Variant(name, payload), Type::Variant(v)) => {
            let cases: Vec<Option<Type>> = v.cases().map(|c| c.ty).collect();
            let index = case_index(v.cases().map(|c| c.name.to_string()), name)?;
            lower_variant(cx, &cases, index, payload.as_deref(), out)?;
        }
        (Val::Option(o), Type::Option(t)) => {
            let cases = [None, Some(t.ty())];
            lower_variant(cx, &cases, usize::from(o.is_some()), o.as_deref(), out)?;
        }
        (Val::Result(r), Type::Result(t)) => {
            let cases = [t.ok(), t.err()];
            match r {
                Ok(p) => lower_variant(cx, &cases, 0, p.as_deref(), out)?,
                Err(p) => lower_variant(cx, &cases, 1, p.as_deref(), out)?,
            }
        }
        (v, t) => bail!("cannot lower {v:?} as {t:?}"),
    }
    Ok(())
}

fn next(iter: &mut impl Iterator<Item = CoreVal>) -> Result<CoreVal> {
    iter.next().context("too few flat values")
}

fn flat_i32(iter: &mut impl Iterator<Item = CoreVal>) -> Result<i32> {
    match next(iter)? {
        CoreVal::I32(x) => Ok(x),
        other => bail!("expected an i32, found {other:?}"),
    }
}

fn lift_variant_payload(
    cx: &mut Cx<'_>,
    cases: &[Option<Type>],
    index: usize,
    iter: &mut impl Iterator<Item = CoreVal>,
) -> Result<Option<Box<Val>>> {
    let joined = joined_payload(cases)?;
    let values: Vec<CoreVal> = (0..joined.len())
        .map(|_| next(iter))
        .collect::<Result<_>>()?;
    let Some(Some(t)) = cases.get(index) else {
        return Ok(None);
    };
    let mut flat = Vec::new();
    flatten(t, &mut flat)?;
    let narrowed: Vec<CoreVal> = values
        .into_iter()
        .zip(&flat)
        .map(|(v, t)| narrow(v, t))
        .collect();
    let mut inner = narrowed.into_iter();
    Ok(Some(Box::new(lift_flat(cx, t, &mut inner)?)))
}

fn lift_flat(cx: &mut Cx<'_>, ty: &Type, iter: &mut impl Iterator<Item = CoreVal>) -> Result<Val> {
    Ok(match ty {
        Type::Bool => Val::Bool(flat_i32(iter)? != 0),
        Type::S8 => Val::S8(flat_i32(iter)? as i8),
        Type::U8 => Val::U8(flat_i32(iter)? as u8),
        Type::S16 => Val::S16(flat_i32(iter)? as i16),
        Type::U16 => Val::U16(flat_i32(iter)? as u16),
        Type::S32 => Val::S32(flat_i32(iter)?),
        Type::U32 => Val::U32(flat_i32(iter)? as u32),
        Type::S64 | Type::U64 => match next(iter)? {
            CoreVal::I64(x) if matches!(ty, Type::S64) => Val::S64(x),
            CoreVal::I64(x) => Val::U64(x as u64),
            other => bail!("expected an i64, found {other:?}"),
        },
        Type::Float32 => match next(iter)? {
            CoreVal::F32(bits) => Val::Float32(f32::from_bits(bits)),
            other => bail!("expected an f32, found {other:?}"),
        },
        Type::Float64 => match next(iter)? {
            CoreVal::F64(bits) => Val::Float64(f64::from_bits(bits)),
            other => bail!("expected an f64, found {other:?}"),
        },
        Type::Char => Val::Char(char::from_u32(flat_i32(iter)? as u32).context("invalid char")?),
        Type::Own(_) | Type::Borrow(_) => Val::U32(flat_i32(iter)? as u32),
        Type::String | Type::List(_) => {
            let ptr = flat_i32(iter)? as u32;
            let len = flat_i32(iter)? as u32;
            load_sequence(cx, ty, ptr, len)?
        }
        Type::Record(r) => Val::Record(
            r.fields()
                .map(|f| Ok((f.name.to_string(), lift_flat(cx, &f.ty, iter)?)))
                .collect::<Result<_>>()?,
        ),
        Type::Tuple(t) => Val::Tuple(
            t.types()
                .map(|t| lift_flat(cx, &t, iter))
                .collect::<Result<_>>()?,
        ),
        Type::Flags(f) => {
            let names: Vec<String> = f.names().map(str::to_string).collect();
            let words: Vec<u32> = (0..names.len().div_ceil(32))
                .map(|_| flat_i32(iter).map(|w| w as u32))
                .collect::<Result<_>>()?;
            Val::Flags(flags_from_words(&names, &words))
        }
        Type::Enum(e) => {
            let i = flat_i32(iter)? as usize;
            Val::Enum(
                e.names()
                    .nth(i)
                    .context("enum case out of range")?
                    .to_string(),
            )
        }
        Type::Variant(v) => {
            let cases: Vec<Option<Type>> = v.cases().map(|c| c.ty).collect();
            let i = flat_i32(iter)? as usize;
            let name = v
                .cases()
                .nth(i)
                .context("variant case out of range")?
                .name
                .to_string();
            Val::Variant(name, lift_variant_payload(cx, &cases, i, iter)?)
        }
        Type::Option(o) => {
            let cases = [None, Some(o.ty())];
            let i = flat_i32(iter)? as usize;
            Val::Option(lift_variant_payload(cx, &cases, i, iter)?)
        }
        Type::Result(r) => {
            let cases = [r.ok(), r.err()];
            let i = flat_i32(iter)? as usize;
            let payload = lift_variant_payload(cx, &cases, i, iter)?;
            Val::Result(if i == 0 { Ok(payload) } else { Err(payload) })
        }
        other => bail!("the canonical host does not support {other:?} yet"),
    })
}

fn flags_from_words(names: &[String], words: &[u32]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| words.get(i / 32).is_some_and(|w| w & (1 << (i % 32)) != 0))
        .map(|(_, n)| n.clone())
        .collect()
}

fn load_sequence(cx: &mut Cx<'_>, ty: &Type, ptr: u32, len: u32) -> Result<Val> {
    match ty {
        Type::String => {
            // UTF-16 and latin1+UTF-16 strings are 2-aligned (canonical ABI, `load_string_from_range`).
            ensure!(cx.encoding == "utf8" || ptr.is_multiple_of(2), "string pointer not aligned to 2");
            let utf16 = |cx: &mut Cx<'_>, units: u32| -> Result<Val> {
                let bytes = cx.read(ptr, units * 2)?;
                let units: Vec<u16> = bytes.as_chunks::<2>().0.iter().map(|&c| u16::from_le_bytes(c)).collect();
                Ok(Val::String(String::from_utf16(&units).context("invalid UTF-16 in a string")?))
            };
            match cx.encoding.as_str() {
                "utf16" => utf16(cx, len),
                "latin1+utf16" if len & (1 << 31) != 0 => utf16(cx, len & !(1 << 31)),
                "latin1+utf16" => Ok(Val::String(cx.read(ptr, len)?.into_iter().map(char::from).collect())),
                _ => {
                    let bytes = cx.read(ptr, len)?;
                    Ok(Val::String(String::from_utf8(bytes).context("invalid UTF-8 in a string")?))
                }
            }
        }
        Type::List(l) => {
            let elem = l.ty();
            let (size, align) = layout(&elem)?;
            ensure!(align == 0 || ptr.is_multiple_of(align), "list pointer not aligned to {align}");
            let items = (0..len)
                .map(|i| load(cx, &elem, ptr + i * size))
                .collect::<Result<_>>()?;
            Ok(Val::List(items))
        }
        other => bail!("{other:?} is not a sequence"),
    }
}

fn read_uint(cx: &mut Cx<'_>, ptr: u32, size: u32) -> Result<u64> {
    let bytes = cx.read(ptr, size)?;
    let mut buf = [0u8; 8];
    buf.get_mut(..bytes.len())
        .context("integer too wide")?
        .copy_from_slice(&bytes);
    Ok(u64::from_le_bytes(buf))
}

fn load(cx: &mut Cx<'_>, ty: &Type, ptr: u32) -> Result<Val> {
    Ok(match ty {
        Type::Bool => Val::Bool(read_uint(cx, ptr, 1)? != 0),
        Type::S8 => Val::S8(read_uint(cx, ptr, 1)? as i8),
        Type::U8 => Val::U8(read_uint(cx, ptr, 1)? as u8),
        Type::S16 => Val::S16(read_uint(cx, ptr, 2)? as i16),
        Type::U16 => Val::U16(read_uint(cx, ptr, 2)? as u16),
        Type::S32 => Val::S32(read_uint(cx, ptr, 4)? as i32),
        Type::U32 => Val::U32(read_uint(cx, ptr, 4)? as u32),
        Type::S64 => Val::S64(read_uint(cx, ptr, 8)? as i64),
        Type::U64 => Val::U64(read_uint(cx, ptr, 8)?),
        Type::Float32 => Val::Float32(f32::from_bits(read_uint(cx, ptr, 4)? as u32)),
        Type::Float64 => Val::Float64(f64::from_bits(read_uint(cx, ptr, 8)?)),
        Type::Char => {
            Val::Char(char::from_u32(read_uint(cx, ptr, 4)? as u32).context("invalid char")?)
        }
        Type::Own(_) | Type::Borrow(_) => Val::U32(read_uint(cx, ptr, 4)? as u32),
        Type::String | Type::List(_) => {
            let p = read_uint(cx, ptr, 4)? as u32;
            let len = read_uint(cx, ptr + 4, 4)? as u32;
            load_sequence(cx, ty, p, len)?
        }
        Type::Record(r) => {
            let types: Vec<Type> = r.fields().map(|f| f.ty).collect();
            let values = load_tuple(cx, &types, ptr)?;
            Val::Record(r.fields().map(|f| f.name.to_string()).zip(values).collect())
        }
        Type::Tuple(t) => Val::Tuple(load_tuple(cx, &t.types().collect::<Vec<_>>(), ptr)?),
        Type::Flags(f) => {
            let names: Vec<String> = f.names().map(str::to_string).collect();
            let (size, _) = layout(ty)?;
            let words = if size <= 4 {
                vec![read_uint(cx, ptr, size.max(1))? as u32]
            } else {
                (0..size / 4)
                    .map(|i| read_uint(cx, ptr + 4 * i, 4).map(|w| w as u32))
                    .collect::<Result<_>>()?
            };
            Val::Flags(flags_from_words(&names, &words))
        }
        Type::Enum(e) => {
            let i = read_uint(cx, ptr, discriminant_size(e.names().len()))? as usize;
            Val::Enum(
                e.names()
                    .nth(i)
                    .context("enum case out of range")?
                    .to_string(),
            )
        }
        Type::Variant(v) => {
            let cases: Vec<Option<Type>> = v.cases().map(|c| c.ty).collect();
            let (i, payload) = load_variant(cx, &cases, ptr)?;
            Val::Variant(
                v.cases()
                    .nth(i)
                    .context("variant case out of range")?
                    .name
                    .to_string(),
                payload,
            )
        }
        Type::Option(o) => Val::Option(load_variant(cx, &[None, Some(o.ty())], ptr)?.1),
        Type::Result(r) => {
            let (i, payload) = load_variant(cx, &[r.ok(), r.err()], ptr)?;
            Val::Result(if i == 0 { Ok(payload) } else { Err(payload) })
        }
        other => bail!("the canonical host does not support {other:?} yet"),
    })
}

fn load_variant(
    cx: &mut Cx<'_>,
    cases: &[Option<Type>],
    ptr: u32,
) -> Result<(usize, Option<Box<Val>>)> {
    let i = read_uint(cx, ptr, discriminant_size(cases.len()))? as usize;
    let offset = payload_offset(cases)?;
    let payload = match cases.get(i) {
        Some(Some(t)) => Some(Box::new(load(cx, t, ptr + offset)?)),
        Some(None) => None,
        None => bail!("variant case {i} out of range"),
    };
    Ok((i, payload))
}

fn load_tuple(cx: &mut Cx<'_>, types: &[Type], ptr: u32) -> Result<Vec<Val>> {
    let mut offset = 0;
    let mut out = Vec::new();
    for t in types {
        let (size, align) = layout(t)?;
        offset = align_to(offset, align);
        out.push(load(cx, t, ptr + offset)?);
        offset += size;
    }
    Ok(out)
}

fn store_tuple(cx: &mut Cx<'_>, types: &[Type], values: &[Val], ptr: u32) -> Result<()> {
    let mut offset = 0;
    for (t, v) in types.iter().zip(values) {
        let (size, align) = layout(t)?;
        offset = align_to(offset, align);
        store(cx, v, t, ptr + offset)?;
        offset += size;
    }
    Ok(())
}

fn store_variant(
    cx: &mut Cx<'_>,
    cases: &[Option<Type>],
    index: usize,
    payload: Option<&Val>,
    ptr: u32,
) -> Result<()> {
    let disc = discriminant_size(cases.len());
    let index_bytes = (index as u32).to_le_bytes();
    let written = index_bytes.get(..disc as usize).context("a discriminant wider than 4 bytes")?;
    cx.write(ptr, written)?;
    if let (Some(v), Some(Some(t))) = (payload, cases.get(index)) {
        store(cx, v, t, ptr + payload_offset(cases)?)?;
    }
    Ok(())
}

fn store(cx: &mut Cx<'_>, v: &Val, ty: &Type, ptr: u32) -> Result<()> {
    match (v, ty) {
        (Val::Bool(b), _) => cx.write(ptr, &[u8::from(*b)]),
        (Val::S8(x), _) => cx.write(ptr, &x.to_le_bytes()),
        (Val::U8(x), _) => cx.write(ptr, &x.to_le_bytes()),
        (Val::S16(x), _) => cx.write(ptr, &x.to_le_bytes()),
        (Val::U16(x), _) => cx.write(ptr, &x.to_le_bytes()),
        (Val::S32(x), _) => cx.write(ptr, &x.to_le_bytes()),
        (Val::U32(x), _) => cx.write(ptr, &x.to_le_bytes()),
        (Val::S64(x), _) => cx.write(ptr, &x.to_le_bytes()),
        (Val::U64(x), _) => cx.write(ptr, &x.to_le_bytes()),
        (Val::Float32(x), _) => cx.write(ptr, &x.to_bits().to_le_bytes()),
        (Val::Float64(x), _) => cx.write(ptr, &x.to_bits().to_le_bytes()),
        (Val::Char(c), _) => cx.write(ptr, &(*c as u32).to_le_bytes()),
        (Val::String(_) | Val::List(_), _) => {
            let mut flat = Vec::new();
            lower_flat(cx, v, ty, &mut flat)?;
            let (p, len) = match flat.as_slice() {
                [CoreVal::I32(p), CoreVal::I32(len)] => (*p, *len),
                _ => bail!("a sequence lowered to unexpected values"),
            };
            cx.write(ptr, &p.to_le_bytes())?;
            cx.write(ptr + 4, &len.to_le_bytes())
        }
        (Val::Record(fields), Type::Record(r)) => {
            let types: Vec<Type> = r.fields().map(|f| f.ty).collect();
            let values: Vec<Val> = fields.iter().map(|(_, v)| v.clone()).collect();
            store_tuple(cx, &types, &values, ptr)
        }
        (Val::Tuple(vs), Type::Tuple(t)) => {
            store_tuple(cx, &t.types().collect::<Vec<_>>(), vs, ptr)
        }
        (Val::Flags(_), Type::Flags(_)) => {
            let mut flat = Vec::new();
            lower_flat(cx, v, ty, &mut flat)?;
            let (size, _) = layout(ty)?;
            let mut bytes = Vec::new();
            for w in flat {
                if let CoreVal::I32(w) = w {
                    bytes.extend_from_slice(&w.to_le_bytes());
                }
            }
            bytes.truncate(size as usize);
            cx.write(ptr, &bytes)
        }
        (Val::Enum(name), Type::Enum(e)) => {
            let cases = vec![None; e.names().len()];
            store_variant(
                cx,
                &cases,
                case_index(e.names().map(str::to_string), name)?,
                None,
                ptr,
            )
        }
        (Val::Variant(name, payload), Type::Variant(v)) => {
            let cases: Vec<Option<Type>> = v.cases().map(|c| c.ty).collect();
            let index = case_index(v.cases().map(|c| c.name.to_string()), name)?;
            store_variant(cx, &cases, index, payload.as_deref(), ptr)
        }
        (Val::Option(o), Type::Option(t)) => store_variant(
            cx,
            &[None, Some(t.ty())],
            usize::from(o.is_some()),
            o.as_deref(),
            ptr,
        ),
        (Val::Result(r), Type::Result(t)) => {
            let cases = [t.ok(), t.err()];
            match r {
                Ok(p) => store_variant(cx, &cases, 0, p.as_deref(), ptr),
                Err(p) => store_variant(cx, &cases, 1, p.as_deref(), ptr),
            }
        }
        (v, t) => bail!("cannot store {v:?} as {t:?}"),
    }
}
