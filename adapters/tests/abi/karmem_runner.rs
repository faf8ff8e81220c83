//! A differential-harness runner for modules lowered with the Karmem ABI:
//! every call is an argument message built with `karmem-format`'s `Value`
//! codec (from the invocation's WAVE text), and every result a message
//! decoded (validated) by it. Host imports (`karmem:fixtures/host`: `log`,
//! `next-id`, the `tally` resource) are served over the Karmem ABI and
//! recorded as effects exactly as the reference runner records them.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use karmem_adapters::abi::{Options, World, karmem_abi};
use karmem_format::layout::{Kind, Layout, TypeId};
use karmem_format::wave::kebab;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Type as CType, Val as CVal};
use karmem_format::{Limits, Value};
use karmem_tests::harness::{Completion, Effect, Outcome, Runner};
use karmem_tests::invocation::{Action, Arg, Invocation};
use karmem_tests::value::Value as TValue;
use karmem_wit_import::Side;
use wasmtime::{Caller, Engine, Extern, FuncType, Instance, Linker, Memory, Module, Store, Val, ValType};

#[derive(Default)]
struct HostData {
    layout: Option<Arc<Layout>>,
    /// (IDL interface, IDL function) -> (WIT interface, WIT function).
    names: HashMap<(String, String), (String, String)>,
    effects: Vec<Effect>,
    next_id: u32,
    next_handle: u32,
    tallies: HashMap<u32, u64>,
}

pub struct KarmemRunner {
    layout: Arc<Layout>,
    world: World,
    module: Module,
    linker: Linker<HostData>,
    names: HashMap<(String, String), (String, String)>,
    store: Store<HostData>,
    instance: Instance,
    memory: Memory,
    /// Handles bound by invocations.
    handles: HashMap<String, u32>,
    /// Parameter types of the component's exports by core name, for
    /// parsing WAVE arguments as the reference runner does.
    param_types: HashMap<String, Vec<CType>>,
    /// A trap leaves the instance unusable (docs/ABI.md, section 7): the
    /// next invocation gets a fresh one, as in the reference runner.
    trapped: bool,
}

/// Lowers `component` with `--abi canonical`, then applies the Karmem ABI.
pub fn lower_karmem(component: &[u8]) -> Result<(World, Vec<u8>)> {
    let canonical = karmem_core_lowering::lower(component, &karmem_core_lowering::Options::default())?;
    let world = World::from_component(component)?;
    let bytes = karmem_abi(&canonical, &world, &Options::default())?;
    Ok((world, bytes))
}

impl KarmemRunner {
    #[allow(dead_code)]
    pub fn new(engine: &Engine, component: &[u8]) -> Result<KarmemRunner> {
        let (world, bytes) = lower_karmem(component)?;
        KarmemRunner::from_lowered(engine, component, world, &bytes)
    }

    pub fn from_lowered(engine: &Engine, component: &[u8], world: World, bytes: &[u8]) -> Result<KarmemRunner> {
        let param_types = export_param_types(component)?;
        let layout = Arc::new(Layout::new(&world.schema).map_err(|e| anyhow!("{e}"))?);
        let module = Module::new(engine, bytes)?;
        let mut linker: Linker<HostData> = Linker::new(engine);
        let mut names = HashMap::new();
        for iface in world.interfaces.iter().filter(|i| i.side == Side::Import) {
            for f in &iface.functions {
                names.insert((iface.name.clone(), f.name.clone()), (iface.core_module.clone(), f.core_name.clone()));
            }
        }
        for import in module.imports() {
            let (m, name) = (import.module().to_string(), import.name().to_string());
            let Some(ty) = import.ty().func().cloned() else { bail!("import `{m}`/`{name}` is not a function") };
            let iface = m.strip_prefix("karmem:").unwrap_or(&m).to_string();
            if name.starts_with("[resource-drop]") {
                linker.func_new(&m, &name, ty, move |mut caller, params, _| {
                    let handle = match params {
                        [Val::I32(h)] => *h as u32,
                        _ => return Err(wasmtime::Error::msg("bad drop")),
                    };
                    let data = caller.data_mut();
                    let total = data.tallies.remove(&handle).unwrap_or_default();
                    data.effects.push(Effect::Host(format!("drop tally({total})")));
                    Ok(())
                })?;
                continue;
            }
            let want = FuncType::new(engine, [ValType::I32, ValType::I32], [ValType::I64]);
            if !FuncType::eq(&ty, &want) {
                bail!("import `{m}`/`{name}` does not have the Karmem ABI's type");
            }
            let field = name.clone();
            linker.func_new(&m, &name, ty, move |mut caller, params, results| {
                match serve(&mut caller, &iface, &field, params) {
                    Ok(buffer) => {
                        results[0] = Val::I64(buffer);
                        Ok(())
                    }
                    Err(error) => Err(wasmtime::Error::msg(format!("{error:#}"))),
                }
            })?;
        }
        let (store, instance, memory) = instantiate(engine, &linker, &module, &layout, &names)?;
        Ok(KarmemRunner {
            layout,
            world,
            module,
            linker,
            names,
            store,
            instance,
            memory,
            handles: HashMap::new(),
            param_types,
            trapped: false,
        })
    }

    fn restart_after_trap(&mut self) -> Result<()> {
        if self.trapped {
            let engine = self.store.engine().clone();
            let (store, instance, memory) = instantiate(&engine, &self.linker, &self.module, &self.layout, &self.names)?;
            (self.store, self.instance, self.memory) = (store, instance, memory);
            self.handles.clear();
            self.trapped = false;
        }
        Ok(())
    }

    /// The IDL (interface, function) of a call's `interface#function`.
    fn resolve(&self, interface: Option<&str>, function: &str) -> Result<(String, String, String)> {
        for iface in self.world.interfaces.iter().filter(|i| i.side == Side::Export) {
            for f in &iface.functions {
                let matches = match interface {
                    None => f.core_name == function,
                    Some(i) => {
                        f.core_name == format!("{i}#{function}")
                            || (f.core_name.starts_with(&format!("{i}@")) && f.core_name.ends_with(&format!("#{function}")))
                    }
                };
                if matches {
                    return Ok((iface.name.clone(), f.name.clone(), f.core_name.clone()));
                }
            }
        }
        bail!("no export for `{}#{function}`", interface.unwrap_or(""))
    }

    fn call(&mut self, call: &karmem_tests::invocation::Call) -> Result<Completion> {
        let (iface, function, core_name) = self.resolve(call.interface.as_deref(), &call.function)?;
        let types = self.param_types.get(&core_name).cloned().context("component parameter types")?;
        let fl = self.layout.function(&iface, &function).context("layout")?;
        let params = self.layout.as_struct(fl.params).context("params")?.fields.clone();
        if params.len() != call.args.len() {
            bail!("`{function}` takes {} arguments, found {}", params.len(), call.args.len());
        }
        let mut fields = Vec::new();
        for ((field, arg), ty) in params.iter().zip(&call.args).zip(&types) {
            let value = match arg {
                Arg::Wave(text) => {
                    let val = match (ty, karmem_tests::invocation::parse_string_literal(text)) {
                        (CType::String, Some(text)) => CVal::String(text),
                        _ => CVal::from_wave(ty, text).map_err(|e| anyhow!("parsing `{text}`: {e}"))?,
                    };
                    from_val(&self.layout, field.ty, &val)?
                }
                Arg::Handle(name) => Value::U32(*self.handles.get(name).with_context(|| format!("no handle `${name}`"))?),
            };
            fields.push((field.name.clone(), value));
        }
        let message = karmem_format::value::encode(&self.layout, fl.params, &Value::Record(fields))
            .map_err(|e| anyhow!("{e}"))?;
        let message = message.as_slice().to_vec();
        let alloc = self.instance.get_typed_func::<(i32, i32), i32>(&mut self.store, "KarmemAlloc")?;
        let free = self.instance.get_typed_func::<(i32, i32, i32), ()>(&mut self.store, "KarmemFree")?;
        let entry = self.instance.get_typed_func::<(i32, i32), i64>(&mut self.store, &format!("{iface}.{function}"))?;
        let ptr = alloc.call(&mut self.store, (message.len() as i32, 64))?;
        let at = ptr as u32 as usize;
        self.memory.data_mut(&mut self.store)[at..at + message.len()].copy_from_slice(&message);
        let packed = match entry.call(&mut self.store, (ptr, message.len() as i32)) {
            Ok(p) => p as u64,
            Err(error) => {
                self.trapped = true;
                return Ok(Completion::Trapped(format!("{error:#}")));
            }
        };
        free.call(&mut self.store, (ptr, message.len() as i32, 64))?;
        let (rptr, rlen) = ((packed & 0xFFFF_FFFF) as usize, (packed >> 32) as usize);
        let bytes = self.memory.data(&self.store).get(rptr..rptr + rlen).context("result buffer")?.to_vec();
        let result = karmem_format::value::decode(&self.layout, fl.results, &bytes, &Limits::default())
            .map_err(|e| anyhow!("invalid result message: {e}"))?;
        let result_fields = self.layout.as_struct(fl.results).context("results")?.fields.clone();
        let mut values = Vec::new();
        let mut bound = false;
        if let Value::Record(got) = result {
            for (field, (_, value)) in result_fields.iter().zip(got) {
                let layout = self.layout.clone();
                values.push(to_test_value(&layout, field.ty, &value, &mut |handle, borrow| match &call.bind {
                    Some(name) if !bound => {
                        bound = true;
                        self.handles.insert(name.clone(), handle);
                        format!("${name}")
                    }
                    _ => if borrow { "borrow" } else { "own" }.to_string(),
                }));
            }
        }
        Ok(Completion::Returned(values))
    }

    /// Drops a bound own handle through the module's `[resource-drop]` export.
    fn drop_handle(&mut self, name: &str) -> Result<Completion> {
        let handle = self.handles.remove(name).with_context(|| format!("no handle `${name}`"))?;
        let module = self.instance.module(&self.store).clone();
        let drops: Vec<String> =
            module.exports().map(|e| e.name().to_string()).filter(|n| n.contains("[resource-drop]")).collect();
        let [drop] = drops.as_slice() else { bail!("cannot tell which resource `${name}` is: drops {drops:?}") };
        let f = self.instance.get_typed_func::<i32, ()>(&mut self.store, drop)?;
        Ok(match f.call(&mut self.store, handle as i32) {
            Ok(()) => Completion::Returned(Vec::new()),
            Err(error) => {
                self.trapped = true;
                Completion::Trapped(format!("{error:#}"))
            }
        })
    }
}

impl Runner for KarmemRunner {
    fn invoke(&mut self, invocation: &Invocation) -> Result<Outcome> {
        self.restart_after_trap()?;
        let completion = match &invocation.action {
            Action::Call(call) => self.call(call)?,
            Action::Drop(name) => self.drop_handle(name)?,
        };
        let effects = std::mem::take(&mut self.store.data_mut().effects);
        Ok(Outcome { completion, effects })
    }
}

/// A fresh instance, initialised with `KarmemInit`.
fn instantiate(
    engine: &Engine,
    linker: &Linker<HostData>,
    module: &Module,
    layout: &Arc<Layout>,
    names: &HashMap<(String, String), (String, String)>,
) -> Result<(Store<HostData>, Instance, Memory)> {
    let data = HostData { layout: Some(layout.clone()), names: names.clone(), next_handle: 1, ..HostData::default() };
    let mut store = Store::new(engine, data);
    let instance = linker.instantiate(&mut store, module)?;
    let memory = instance.get_memory(&mut store, "memory").context("memory")?;
    instance.get_typed_func::<(), i64>(&mut store, "KarmemInit")?.call(&mut store, ())?;
    Ok((store, instance, memory))
}

/// Serves one import call over the Karmem ABI.
fn serve(caller: &mut Caller<'_, HostData>, iface: &str, function: &str, params: &[Val]) -> Result<i64> {
    let (ptr, len) = match params {
        [Val::I32(p), Val::I32(l)] => (*p as u32 as usize, *l as u32 as usize),
        _ => bail!("bad import arguments"),
    };
    let memory = caller.get_export("memory").and_then(Extern::into_memory).context("memory")?;
    let message = memory.data(&*caller).get(ptr..ptr + len).context("argument buffer")?.to_vec();
    let layout = caller.data().layout.clone().context("layout")?;
    let fl = layout.function(iface, function).context("function layout")?;
    let args = karmem_format::value::decode(&layout, fl.params, &message, &Limits::default())
        .map_err(|e| anyhow!("invalid argument message from the guest: {e}"))?;
    let (wit_iface, wit_fn) = caller.data().names.get(&(iface.to_string(), function.to_string())).cloned().context("names")?;
    let arg_fields = layout.as_struct(fl.params).context("params")?.fields.clone();
    let Value::Record(arg_values) = &args else { bail!("arguments are not a record") };
    let arg_text: Vec<String> = arg_fields
        .iter()
        .zip(arg_values)
        .map(|(f, (_, v))| to_test_value(&layout, f.ty, v, &mut |_, _| "handle".to_string()).to_wave())
        .collect();
    let data = caller.data_mut();
    let result: Option<Value> = match (wit_fn.as_str(), arg_values.as_slice()) {
        ("log", _) => None,
        ("next-id", []) => {
            data.next_id += 1;
            Some(Value::U32(data.next_id))
        }
        ("lines", [(_, Value::U32(count)), (_, Value::String(prefix))]) => {
            Some(Value::List((0..*count).map(|i| Value::String(format!("{prefix}{i}"))).collect()))
        }
        ("[constructor]tally", [(_, Value::U64(start))]) => Some(Value::U32(new_tally(data, *start))),
        ("[static]tally.named", [(_, Value::String(name))]) => Some(Value::U32(new_tally(data, name.len() as u64))),
        ("[method]tally.add", [(_, Value::U32(handle)), (_, Value::U64(amount))]) => {
            let total = data.tallies.get_mut(handle).context("unknown tally")?;
            *total = total.wrapping_add(*amount);
            Some(Value::U64(*total))
        }
        // functions without results are only recorded, as in the reference
        _ if layout.as_struct(fl.results).is_some_and(|r| r.fields.is_empty()) => None,
        (other, _) => bail!("no host implementation for `{other}`"),
    };
    let mut record = format!("{wit_iface}#{wit_fn}({})", arg_text.join(", "));
    let result_fields = layout.as_struct(fl.results).context("results")?.fields.clone();
    let out = match (&result, result_fields.first()) {
        (Some(value), Some(field)) => {
            record.push_str(" -> ");
            record.push_str(&to_test_value(&layout, field.ty, value, &mut |_, _| "handle".to_string()).to_wave());
            let message = Value::Record(vec![(field.name.clone(), value.clone())]);
            karmem_format::value::encode(&layout, fl.results, &message).map_err(|e| anyhow!("{e}"))?.as_slice().to_vec()
        }
        _ => Vec::new(),
    };
    caller.data_mut().effects.push(Effect::Host(record));
    if out.is_empty() {
        return Ok(0);
    }
    let alloc = caller.get_export("KarmemAlloc").and_then(Extern::into_func).context("KarmemAlloc")?;
    let alloc = alloc.typed::<(i32, i32), i32>(&mut *caller)?;
    let at = alloc.call(&mut *caller, (out.len() as i32, 64))? as u32 as usize;
    memory.data_mut(&mut *caller)[at..at + out.len()].copy_from_slice(&out);
    Ok(((out.len() as i64) << 32) | at as i64)
}

fn new_tally(data: &mut HostData, start: u64) -> u32 {
    let handle = data.next_handle;
    data.next_handle += 1;
    data.tallies.insert(handle, start);
    handle
}

/// The parameter types of every exported function, by core name.
fn export_param_types(component: &[u8]) -> Result<HashMap<String, Vec<CType>>> {
    let engine = karmem_tests::reference::engine();
    let component = wasmtime::component::Component::new(engine, component).map_err(anyhow::Error::from)?;
    let mut out = HashMap::new();
    let params = |f: &wasmtime::component::types::ComponentFunc| f.params().map(|(_, t)| t).collect::<Vec<_>>();
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(f) => {
                out.insert(name.to_string(), params(&f));
            }
            ComponentItem::ComponentInstance(i) => {
                for (fname, item) in i.exports(engine) {
                    if let ComponentItem::ComponentFunc(f) = item.ty {
                        out.insert(format!("{name}#{fname}"), params(&f));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A component value (parsed by wasmtime) as a format `Value` of type `ty`.
fn from_val(layout: &Layout, ty: TypeId, val: &CVal) -> Result<Value> {
    let inner = |t: TypeId, v: &CVal| from_val(layout, t, v);
    Ok(match (&layout.get(ty).kind, val) {
        (_, CVal::Bool(b)) => Value::Bool(*b),
        (_, CVal::S8(x)) => Value::S8(*x),
        (_, CVal::S16(x)) => Value::S16(*x),
        (_, CVal::S32(x)) => Value::S32(*x),
        (_, CVal::S64(x)) => Value::S64(*x),
        (_, CVal::U8(x)) => Value::U8(*x),
        (_, CVal::U16(x)) => Value::U16(*x),
        (_, CVal::U32(x)) => Value::U32(*x),
        (_, CVal::U64(x)) => Value::U64(*x),
        (_, CVal::Float32(x)) => Value::F32(*x),
        (_, CVal::Float64(x)) => Value::F64(*x),
        (_, CVal::Char(c)) => Value::Char(*c),
        (_, CVal::String(t)) => Value::String(t.clone()),
        (Kind::Array { elem, .. } | Kind::FixedArray { elem, .. }, CVal::List(items) | CVal::FixedLengthList(items)) => {
            Value::List(items.iter().map(|v| inner(*elem, v)).collect::<Result<_>>()?)
        }
        (Kind::Struct(s), CVal::Record(fields)) => Value::Record(
            s.fields.iter().zip(fields).map(|(f, (_, v))| Ok((f.name.clone(), inner(f.ty, v)?))).collect::<Result<_>>()?,
        ),
        (Kind::Struct(s), CVal::Tuple(items)) => Value::Record(
            s.fields.iter().zip(items).map(|(f, v)| Ok((f.name.clone(), inner(f.ty, v)?))).collect::<Result<_>>()?,
        ),
        (Kind::Union(u), CVal::Variant(name, payload)) => {
            let case = u.cases.iter().find(|c| kebab(&c.name) == *name).context("variant case")?;
            let payload = match (case.ty, payload) {
                (Some(t), Some(p)) => Some(Box::new(inner(t, p)?)),
                _ => None,
            };
            Value::Variant(case.name.clone(), payload)
        }
        (Kind::Enum(e), CVal::Enum(name)) => {
            Value::Enum(e.cases.iter().find(|(c, _)| kebab(c) == *name).context("enum case")?.0.clone())
        }
        (Kind::Flags(f), CVal::Flags(set)) => {
            Value::Flags(f.flags.iter().filter(|n| set.contains(&kebab(n))).cloned().collect())
        }
        (Kind::Option { some, .. }, CVal::Option(v)) => {
            Value::Option(v.as_ref().map(|v| inner(*some, v)).transpose()?.map(Box::new))
        }
        (Kind::Result { ok, err, .. }, CVal::Result(r)) => {
            let side = |t: &Option<TypeId>, v: &Option<Box<CVal>>| -> Result<Option<Box<Value>>> {
                Ok(match (t, v) {
                    (Some(t), Some(v)) => Some(Box::new(inner(*t, v)?)),
                    _ => None,
                })
            };
            match r {
                Ok(v) => Value::Result(Ok(side(ok, v)?)),
                Err(v) => Value::Result(Err(side(err, v)?)),
            }
        }
        (kind, val) => bail!("cannot convert {val:?} to {kind:?}"),
    })
}

/// A format `Value` of type `ty` as the harness's component value.
fn to_test_value(layout: &Layout, ty: TypeId, value: &Value, handle: &mut dyn FnMut(u32, bool) -> String) -> TValue {
    let mut inner = |t: TypeId, v: &Value| to_test_value(layout, t, v, handle);
    match (&layout.get(ty).kind, value) {
        (Kind::Handle { borrow, .. }, Value::U32(h)) => TValue::Handle(handle(*h, *borrow)),
        (Kind::Struct(s), Value::Record(fields)) if !s.dynamic => {
            TValue::Tuple(s.fields.iter().zip(fields).map(|(f, (_, v))| inner(f.ty, v)).collect())
        }
        (Kind::Struct(s), Value::Record(fields)) => {
            TValue::Record(s.fields.iter().zip(fields).map(|(f, (n, v))| (kebab(n), inner(f.ty, v))).collect())
        }
        (Kind::Union(u), Value::Variant(name, payload)) => {
            let case = u.cases.iter().find(|c| c.name == *name);
            let payload = match (case.and_then(|c| c.ty), payload) {
                (Some(t), Some(p)) => Some(Box::new(inner(t, p))),
                _ => None,
            };
            TValue::Variant(kebab(name), payload)
        }
        (Kind::Array { elem, .. } | Kind::FixedArray { elem, .. }, Value::List(items)) => {
            TValue::List(items.iter().map(|v| inner(*elem, v)).collect())
        }
        (Kind::Option { some, .. }, Value::Option(v)) => TValue::Option(v.as_ref().map(|v| Box::new(inner(*some, v)))),
        (Kind::Result { ok, err, .. }, Value::Result(r)) => {
            let side = |t: &Option<TypeId>, v: &Option<Box<Value>>, inner: &mut dyn FnMut(TypeId, &Value) -> TValue| match (t, v) {
                (Some(t), Some(v)) => Some(Box::new(inner(*t, v))),
                _ => None,
            };
            match r {
                Ok(v) => TValue::Result(Ok(side(ok, v, &mut inner))),
                Err(v) => TValue::Result(Err(side(err, v, &mut inner))),
            }
        }
        (_, v) => scalar(v),
    }
}

fn scalar(value: &Value) -> TValue {
    match value {
        Value::Bool(b) => TValue::Bool(*b),
        Value::S8(x) => TValue::S8(*x),
        Value::S16(x) => TValue::S16(*x),
        Value::S32(x) => TValue::S32(*x),
        Value::S64(x) => TValue::S64(*x),
        Value::U8(x) => TValue::U8(*x),
        Value::U16(x) => TValue::U16(*x),
        Value::U32(x) => TValue::U32(*x),
        Value::U64(x) => TValue::U64(*x),
        Value::F32(x) => TValue::F32(*x),
        Value::F64(x) => TValue::F64(*x),
        Value::Char(c) => TValue::Char(*c),
        Value::String(s) => TValue::String(s.clone()),
        Value::Enum(e) => TValue::Enum(kebab(e)),
        Value::Flags(f) => TValue::Flags(f.iter().map(|n| kebab(n)).collect()),
        other => TValue::String(format!("<unconverted {other:?}>")),
    }
}
