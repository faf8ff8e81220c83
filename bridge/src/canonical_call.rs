//! Calling a module lowered with `--abi canonical` with WAVE values:
//! `karmem-bridge run MODULE --invoke 'f(1, "x")'`.
//!
//! Owns: the canonical ABI's lowering of argument values into flat core
//! values and the module's memory (spilling to memory past 16 flat
//! parameters), and the lifting of results (through the return area past one
//! flat result), per the specification's `CanonicalABI.md`; finding the
//! export a function is lowered to. The types come from the module's
//! `karmem:idl` section (each interface's `/// wit:` line names its WIT
//! interface; the export is `<wit interface>#<function>`, or the function's
//! bare name for a world-level function), mapped back with
//! `karmem_wit_import::AbiType`.
//!
//! Does not own: the core instance (`karmem_runtime::canonical`), WAVE
//! (`karmem_format::wave`). Resource handles are refused: a handle number
//! typed on the command line means nothing to a fresh instance.

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use karmem_contract::IDL_SECTION;
use karmem_format::Value;
use karmem_format::layout::Layout;
use karmem_idl::Schema;
use karmem_idl::ast::Item;
use karmem_runtime::canonical::{CanonicalInstance, CoreValue};
use karmem_wit_import::{AbiType, FlatType};

/// Spec: at most this many flat parameters; more go through memory.
const MAX_FLAT_PARAMS: usize = 16;
/// Spec: at most this many flat results; more go through memory.
const MAX_FLAT_RESULTS: usize = 1;

/// A function of the module's world the caller can call.
#[derive(Debug, Clone)]
struct Export {
    interface: String,
    function: String,
    /// The core export.
    export: String,
    params: Vec<AbiType>,
    results: Vec<(String, AbiType)>,
    /// What `karmem:canonical-abi` records for it when that is not the
    /// default (`memory`, `cabi_realloc`, UTF-8), which `run` cannot use.
    unsupported: Option<String>,
}

/// A canonical-ABI module, instantiated, with its world's types.
#[derive(Debug)]
pub struct CanonicalCaller {
    instance: CanonicalInstance,
    layout: Arc<Layout>,
    exports: Vec<Export>,
}

impl CanonicalCaller {
    /// Instantiates `bytes`, a module lowered with `--abi canonical`.
    pub fn new(runtime: &karmem_runtime::Runtime, bytes: &[u8]) -> Result<Self> {
        let idl = custom_section(bytes, IDL_SECTION)?.with_context(|| {
            format!("the module has neither the Karmem ABI nor a `{IDL_SECTION}` section: `run` needs the types of its functions")
        })?;
        if idl.trim().is_empty() {
            bail!("the module's `{IDL_SECTION}` section is empty (its WIT could not be mapped to KarmemIDL when it was lowered)");
        }
        let schema = karmem_idl::load(&idl, IDL_SECTION).map_err(|d| anyhow!("the module's `{IDL_SECTION}` section does not resolve:\n{d}"))?;
        let layout = Arc::new(Layout::new(&schema).map_err(|e| anyhow!("the module's schema has no layout: {e}"))?);
        let mut instance = CanonicalInstance::new(runtime, bytes)?;
        let names = instance.export_names();
        let mut exports = exports(&schema, &names)?;
        let boundary = karmem_core_lowering::link::read_canonical_abi(bytes)?;
        for export in &mut exports {
            let Some(entry) = boundary.iter().find(|e| e.kind == "export" && e.name == export.export) else { continue };
            let memory = entry.memory.as_deref().unwrap_or("memory");
            let realloc = entry.realloc.as_deref().unwrap_or("cabi_realloc");
            if memory != "memory" || realloc != "cabi_realloc" || entry.string_encoding != "utf8" {
                export.unsupported = Some(format!(
                    "`{}` passes values in `{memory}` with `{realloc}` and {} strings; `run` calls `--abi canonical` \
                     modules through `memory`, `cabi_realloc` and UTF-8 only",
                    export.export, entry.string_encoding
                ));
            }
        }
        Ok(CanonicalCaller { instance, layout, exports })
    }

    /// Parses `text` (`f(1, "x")` or `iface.f(...)`), calls the function and
    /// prints its results as WAVE.
    pub fn invoke(&mut self, text: &str) -> Result<String> {
        let open = text.find('(').context("expected a call such as `add(1, 2)`")?;
        let written = text.get(..open).unwrap_or_default().trim();
        let export = self.resolve(written)?.clone();
        let call = format!("{}{}", karmem_format::wave::kebab(&export.function), text.get(open..).unwrap_or_default());
        let parsed = karmem_format::wave::parse_invocation(&self.layout, &export.interface, &call).map_err(|e| anyhow!("{e}"))?;
        let args: Vec<Value> = match parsed.args {
            Value::Record(fields) => fields.into_iter().map(|(_, v)| v).collect(),
            other => vec![other],
        };
        let results = self.call(&export, &args)?;
        let record = Value::Record(export.results.iter().map(|(n, _)| n.clone()).zip(results).collect());
        karmem_format::wave::print_results(&record).map_err(|e| anyhow!("cannot print the results as WAVE: {e}"))
    }

    fn resolve(&self, written: &str) -> Result<&Export> {
        let kebab = karmem_format::wave::kebab;
        let found: Vec<&Export> = self
            .exports
            .iter()
            .filter(|e| {
                let by_name = |name: &str| name == e.function || name == kebab(&e.function);
                match written.rsplit_once('.') {
                    Some((interface, name)) => interface == e.interface && by_name(name),
                    None => by_name(written),
                }
            })
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => bail!("the module exports no function `{written}`"),
            several => bail!(
                "`{written}` is exported by several interfaces ({}): write `interface.{written}`",
                several.iter().map(|e| e.interface.as_str()).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    fn call(&mut self, export: &Export, args: &[Value]) -> Result<Vec<Value>> {
        if let Some(why) = &export.unsupported {
            bail!("{why}");
        }
        let mut flat_types = Vec::new();
        for ty in &export.params {
            flat_types.extend(ty.flatten());
        }
        let mut flat = Vec::new();
        if flat_types.len() > MAX_FLAT_PARAMS {
            let tuple = AbiType::Tuple(export.params.clone());
            let ptr = self.instance.alloc(tuple.align(), tuple.size())?;
            let offsets = tuple.field_offsets();
            for ((value, ty), offset) in args.iter().zip(&export.params).zip(offsets) {
                self.store(value, ty, ptr.wrapping_add(offset))?;
            }
            flat.push(CoreValue::I32(ptr as i32));
        } else {
            for (value, ty) in args.iter().zip(&export.params) {
                self.lower_flat(value, ty, &mut flat)?;
            }
        }
        let returned = self.instance.call(&export.export, &flat)?;
        let result_types: Vec<AbiType> = export.results.iter().map(|(_, t)| t.clone()).collect();
        let flat_results: usize = result_types.iter().map(|t| t.flatten().len()).sum();
        let values = if flat_results > MAX_FLAT_RESULTS {
            let ptr = match returned.first() {
                Some(CoreValue::I32(ptr)) => *ptr as u32,
                _ => bail!("`{}` did not return its results' address", export.export),
            };
            let tuple = AbiType::Tuple(result_types.clone());
            let mut values = Vec::new();
            for (ty, offset) in result_types.iter().zip(tuple.field_offsets()) {
                values.push(self.load(ty, ptr.wrapping_add(offset))?);
            }
            values
        } else {
            let mut iter = returned.iter().copied();
            result_types.iter().map(|t| self.lift_flat(t, &mut iter)).collect::<Result<Vec<_>>>()?
        };
        self.instance.post_return(&export.export, &returned)?;
        Ok(values)
    }

    fn lower_flat(&mut self, value: &Value, ty: &AbiType, out: &mut Vec<CoreValue>) -> Result<()> {
        let i32v = |x: i32| CoreValue::I32(x);
        match (ty, value) {
            (AbiType::Bool, Value::Bool(b)) => out.push(i32v(i32::from(*b))),
            (AbiType::S8, Value::S8(x)) => out.push(i32v(i32::from(*x))),
            (AbiType::U8, Value::U8(x)) => out.push(i32v(i32::from(*x))),
            (AbiType::S16, Value::S16(x)) => out.push(i32v(i32::from(*x))),
            (AbiType::U16, Value::U16(x)) => out.push(i32v(i32::from(*x))),
            (AbiType::S32, Value::S32(x)) => out.push(i32v(*x)),
            (AbiType::U32, Value::U32(x)) => out.push(i32v(*x as i32)),
            (AbiType::S64, Value::S64(x)) => out.push(CoreValue::I64(*x)),
            (AbiType::U64, Value::U64(x)) => out.push(CoreValue::I64(*x as i64)),
            (AbiType::F32, Value::F32(x)) => out.push(CoreValue::F32(*x)),
            (AbiType::F64, Value::F64(x)) => out.push(CoreValue::F64(*x)),
            (AbiType::Char, Value::Char(c)) => out.push(i32v(*c as i32)),
            (AbiType::String, Value::String(s)) => {
                let ptr = self.instance.alloc(1, len32(s.len())?)?;
                self.instance.write(ptr, s.as_bytes())?;
                out.extend([i32v(ptr as i32), i32v(len32(s.len())? as i32)]);
            }
            (AbiType::List(elem), _) => {
                let items = list_items(value)?;
                let ptr = self.store_list(&items, elem)?;
                out.extend([i32v(ptr as i32), i32v(len32(items.len())? as i32)]);
            }
            (AbiType::FixedList(elem, _), Value::List(items)) => {
                for item in items {
                    self.lower_flat(item, elem, out)?;
                }
            }
            (AbiType::Record(_) | AbiType::Tuple(_), _) => {
                for (item, t) in fields(value)?.into_iter().zip(members(ty)) {
                    self.lower_flat(item, t, out)?;
                }
            }
            (AbiType::Flags(names), Value::Flags(set)) => {
                let words = flag_words(names, set)?;
                out.extend(words.into_iter().map(|w| i32v(w as i32)));
            }
            (AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. }, _) => {
                let (index, payload) = case_of(ty, value)?;
                let joined: Vec<FlatType> = ty.flatten().into_iter().skip(1).collect();
                out.push(i32v(index as i32));
                let mut lowered = Vec::new();
                if let (Some(t), Some(v)) = (case_type(ty, index), payload) {
                    self.lower_flat(v, t, &mut lowered)?;
                }
                for (i, want) in joined.iter().enumerate() {
                    out.push(match lowered.get(i) {
                        Some(v) => widen(*v, *want),
                        None => zero(*want),
                    });
                }
            }
            (AbiType::Own(_) | AbiType::Borrow(_), _) => bail!("resource handles cannot be passed from the command line"),
            _ => bail!("the value `{value:?}` does not fit the type {ty:?}"),
        }
        Ok(())
    }

    fn store_list(&mut self, items: &[Value], elem: &AbiType) -> Result<u32> {
        let size = elem.size().checked_mul(len32(items.len())?).context("the list is larger than 4 GiB")?;
        let ptr = self.instance.alloc(elem.align(), size)?;
        for (i, item) in items.iter().enumerate() {
            self.store(item, elem, ptr.wrapping_add(elem.size().wrapping_mul(i as u32)))?;
        }
        Ok(ptr)
    }

    fn store(&mut self, value: &Value, ty: &AbiType, ptr: u32) -> Result<()> {
        match (ty, value) {
            (AbiType::String, Value::String(s)) => {
                let at = self.instance.alloc(1, len32(s.len())?)?;
                self.instance.write(at, s.as_bytes())?;
                self.write_u32s(ptr, &[at, len32(s.len())?])
            }
            (AbiType::List(elem), _) => {
                let items = list_items(value)?;
                let at = self.store_list(&items, elem)?;
                self.write_u32s(ptr, &[at, len32(items.len())?])
            }
            (AbiType::FixedList(elem, _), Value::List(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.store(item, elem, ptr.wrapping_add(elem.size().wrapping_mul(i as u32)))?;
                }
                Ok(())
            }
            (AbiType::Record(_) | AbiType::Tuple(_), _) => {
                for ((item, t), offset) in fields(value)?.into_iter().zip(members(ty)).zip(ty.field_offsets()) {
                    self.store(item, t, ptr.wrapping_add(offset))?;
                }
                Ok(())
            }
            (AbiType::Flags(names), Value::Flags(set)) => {
                let words = flag_words(names, set)?;
                let size = ty.size() as usize;
                let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).take(size).collect();
                self.instance.write(ptr, &bytes)
            }
            (AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. }, _) => {
                let (index, payload) = case_of(ty, value)?;
                let disc = ty.discriminant().map_or(1, |d| d.size());
                let bytes = (index as u32).to_le_bytes();
                self.instance.write(ptr, bytes.get(..disc as usize).unwrap_or_default())?;
                if let (Some(t), Some(v)) = (case_type(ty, index), payload) {
                    self.store(v, t, ptr.wrapping_add(ty.payload_offset()))?;
                }
                Ok(())
            }
            _ => {
                let mut flat = Vec::new();
                self.lower_flat(value, ty, &mut flat)?;
                let bytes: Vec<u8> = match (ty, flat.first()) {
                    (_, Some(CoreValue::I64(x))) => x.to_le_bytes().to_vec(),
                    (_, Some(CoreValue::F32(x))) => x.to_le_bytes().to_vec(),
                    (_, Some(CoreValue::F64(x))) => x.to_le_bytes().to_vec(),
                    (_, Some(CoreValue::I32(x))) => x.to_le_bytes().get(..ty.size() as usize).unwrap_or_default().to_vec(),
                    (_, None) => Vec::new(),
                };
                self.instance.write(ptr, &bytes)
            }
        }
    }

    fn write_u32s(&mut self, ptr: u32, words: &[u32]) -> Result<()> {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.instance.write(ptr, &bytes)
    }

    fn lift_flat(&mut self, ty: &AbiType, iter: &mut dyn Iterator<Item = CoreValue>) -> Result<Value> {
        let next_i32 = |iter: &mut dyn Iterator<Item = CoreValue>| match iter.next() {
            Some(CoreValue::I32(x)) => Ok(x),
            other => Err(anyhow!("expected an i32 result, found {other:?}")),
        };
        Ok(match ty {
            AbiType::S64 | AbiType::U64 => match iter.next() {
                Some(CoreValue::I64(x)) => int_value(ty, x)?,
                other => bail!("expected an i64 result, found {other:?}"),
            },
            AbiType::F32 => match iter.next() {
                Some(CoreValue::F32(x)) => Value::F32(x),
                other => bail!("expected an f32 result, found {other:?}"),
            },
            AbiType::F64 => match iter.next() {
                Some(CoreValue::F64(x)) => Value::F64(x),
                other => bail!("expected an f64 result, found {other:?}"),
            },
            AbiType::String | AbiType::List(_) => {
                let ptr = next_i32(iter)? as u32;
                let len = next_i32(iter)? as u32;
                self.load_sequence(ty, ptr, len)?
            }
            AbiType::FixedList(elem, n) => {
                Value::List((0..*n).map(|_| self.lift_flat(elem, iter)).collect::<Result<Vec<_>>>()?)
            }
            AbiType::Record(_) | AbiType::Tuple(_) => {
                let values = members(ty).into_iter().map(|t| self.lift_flat(t, iter)).collect::<Result<Vec<_>>>()?;
                record(ty, values)
            }
            AbiType::Flags(names) => {
                let count = ty.flatten().len();
                let words = (0..count).map(|_| next_i32(iter).map(|w| w as u32)).collect::<Result<Vec<_>>>()?;
                Value::Flags(set_flags(names, &words))
            }
            AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. } => {
                let index = next_i32(iter)? as u32 as usize;
                let joined: Vec<FlatType> = ty.flatten().into_iter().skip(1).collect();
                let flat: Vec<CoreValue> = joined.iter().map(|_| iter.next()).collect::<Option<Vec<_>>>().context("too few results")?;
                let payload = match case_type(ty, index) {
                    Some(t) => {
                        let wanted = t.flatten();
                        let mut narrowed = flat.iter().zip(&wanted).map(|(v, w)| narrow(*v, *w));
                        Some(self.lift_flat(t, &mut narrowed)?)
                    }
                    None => None,
                };
                variant_value(ty, index, payload)?
            }
            AbiType::Own(_) | AbiType::Borrow(_) => bail!("the function returns a resource handle, which `run` cannot print"),
            _ => {
                let x = next_i32(iter)?;
                int_value(ty, i64::from(x))?
            }
        })
    }

    fn load_sequence(&mut self, ty: &AbiType, ptr: u32, len: u32) -> Result<Value> {
        match ty {
            AbiType::String => {
                let bytes = self.instance.read(ptr, len)?;
                Ok(Value::String(String::from_utf8(bytes).map_err(|_| anyhow!("the function returned a string that is not UTF-8"))?))
            }
            AbiType::List(elem) => {
                let mut items = Vec::new();
                for i in 0..len {
                    items.push(self.load(elem, ptr.wrapping_add(elem.size().wrapping_mul(i)))?);
                }
                Ok(Value::List(items))
            }
            _ => bail!("not a sequence: {ty:?}"),
        }
    }

    fn load(&mut self, ty: &AbiType, ptr: u32) -> Result<Value> {
        let read_uint = |this: &mut Self, at: u32, size: u32| -> Result<u64> {
            let bytes = this.instance.read(at, size)?;
            let mut word = [0u8; 8];
            for (slot, byte) in word.iter_mut().zip(bytes) {
                *slot = byte;
            }
            Ok(u64::from_le_bytes(word))
        };
        Ok(match ty {
            AbiType::String | AbiType::List(_) => {
                let at = read_uint(self, ptr, 4)? as u32;
                let len = read_uint(self, ptr.wrapping_add(4), 4)? as u32;
                self.load_sequence(ty, at, len)?
            }
            AbiType::FixedList(elem, n) => Value::List(
                (0..*n).map(|i| self.load(elem, ptr.wrapping_add(elem.size().wrapping_mul(i)))).collect::<Result<Vec<_>>>()?,
            ),
            AbiType::Record(_) | AbiType::Tuple(_) => {
                let mut values = Vec::new();
                for (t, offset) in members(ty).into_iter().zip(ty.field_offsets()) {
                    values.push(self.load(t, ptr.wrapping_add(offset))?);
                }
                record(ty, values)
            }
            AbiType::Flags(names) => {
                let size = ty.size();
                let mut words = Vec::new();
                let mut at = 0;
                while at < size {
                    words.push(read_uint(self, ptr.wrapping_add(at), (size - at).min(4))? as u32);
                    at += 4;
                }
                Value::Flags(set_flags(names, &words))
            }
            AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. } => {
                let disc = ty.discriminant().map_or(1, |d| d.size());
                let index = read_uint(self, ptr, disc)? as usize;
                let payload = match case_type(ty, index) {
                    Some(t) => Some(self.load(t, ptr.wrapping_add(ty.payload_offset()))?),
                    None => None,
                };
                variant_value(ty, index, payload)?
            }
            AbiType::F32 => Value::F32(f32::from_bits(read_uint(self, ptr, 4)? as u32)),
            AbiType::F64 => Value::F64(f64::from_bits(read_uint(self, ptr, 8)?)),
            AbiType::Own(_) | AbiType::Borrow(_) => bail!("the function returns a resource handle, which `run` cannot print"),
            _ => {
                let raw = read_uint(self, ptr, ty.size())?;
                let signed = match ty {
                    AbiType::S8 => i64::from(raw as u8 as i8),
                    AbiType::S16 => i64::from(raw as u16 as i16),
                    AbiType::S32 => i64::from(raw as u32 as i32),
                    _ => raw as i64,
                };
                int_value(ty, signed)?
            }
        })
    }
}

/// Every function of the schema's exported interfaces, with its export.
fn exports(schema: &Schema, names: &[String]) -> Result<Vec<Export>> {
    let mut found = Vec::new();
    for item in schema.items() {
        let Item::Interface(interface) = item else { continue };
        let wit = interface.docs.0.iter().find_map(|line| line.trim().strip_prefix("wit: "));
        let Some(wit) = wit else { continue };
        let wit_interface = if let Some(name) = wit.strip_prefix("export ") {
            Some(name.trim().to_string())
        } else if wit.starts_with("world ") {
            None
        } else {
            continue;
        };
        for function in interface.functions() {
            let kebab = karmem_format::wave::kebab(&function.name.name);
            // World-level functions form an interface named after the world
            // (`wit: export ns:pkg/world`), exported by their bare names.
            let mut candidates: Vec<String> = Vec::new();
            if let Some(prefix) = &wit_interface {
                candidates.extend([format!("{prefix}#{kebab}"), format!("{prefix}#{}", function.name.name)]);
            }
            candidates.extend([kebab.clone(), function.name.name.clone()]);
            let Some(export) = candidates.into_iter().find(|c| names.contains(c)) else { continue };
            let params = function
                .params
                .iter()
                .map(|p| AbiType::from_idl(schema, &p.ty))
                .collect::<Result<Vec<_>>>()?;
            let results = function
                .results
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let name = p.name.as_ref().map_or_else(|| format!("r{i}"), |n| n.name.clone());
                    AbiType::from_idl(schema, &p.ty).map(|t| (name, t))
                })
                .collect::<Result<Vec<_>>>()?;
            found.push(Export {
                interface: interface.name.name.clone(),
                function: function.name.name.clone(),
                export,
                params,
                results,
                unsupported: None,
            });
        }
    }
    Ok(found)
}

fn custom_section(bytes: &[u8], name: &str) -> Result<Option<String>> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.context("failed to read the module")? {
            wasmparser::Payload::Version { encoding: wasmparser::Encoding::Component, .. } => {
                bail!("this is a component, not a lowered module: run `karmem-bridge lower` on it first")
            }
            wasmparser::Payload::CustomSection(section) if section.name() == name => {
                return String::from_utf8(section.data().to_vec())
                    .map(Some)
                    .map_err(|_| anyhow!("section `{name}` is not UTF-8"));
            }
            _ => {}
        }
    }
    Ok(None)
}

fn len32(len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| anyhow!("a value of {len} bytes or elements does not fit a 32-bit memory"))
}

/// A list's elements; a map's entries as the 2-tuples the canonical ABI
/// passes them as.
fn list_items(value: &Value) -> Result<Vec<Value>> {
    match value {
        Value::List(items) => Ok(items.clone()),
        Value::Map(entries) => Ok(entries
            .iter()
            .map(|(k, v)| Value::Record(vec![("_0".to_string(), k.clone()), ("_1".to_string(), v.clone())]))
            .collect()),
        other => bail!("expected a list, found {other:?}"),
    }
}

/// A record's or tuple's values in order.
fn fields(value: &Value) -> Result<Vec<&Value>> {
    match value {
        Value::Record(fields) => Ok(fields.iter().map(|(_, v)| v).collect()),
        other => bail!("expected a record or tuple, found {other:?}"),
    }
}

fn members(ty: &AbiType) -> Vec<&AbiType> {
    match ty {
        AbiType::Record(fields) => fields.iter().map(|(_, t)| t).collect(),
        AbiType::Tuple(types) => types.iter().collect(),
        _ => Vec::new(),
    }
}

fn record(ty: &AbiType, values: Vec<Value>) -> Value {
    let names: Vec<String> = match ty {
        AbiType::Record(fields) => fields.iter().map(|(n, _)| n.clone()).collect(),
        // how WIT tuples map to KarmemIDL structs; WAVE prints them as tuples
        _ => (0..values.len()).map(|i| format!("_{i}")).collect(),
    };
    Value::Record(names.into_iter().zip(values).collect())
}

fn flag_words(names: &[String], set: &[String]) -> Result<Vec<u32>> {
    let mut words = vec![0u32; names.len().div_ceil(32)];
    for flag in set {
        let index = names.iter().position(|n| n == flag).with_context(|| format!("no flag `{flag}`"))?;
        if let Some(word) = words.get_mut(index / 32) {
            *word |= 1 << (index % 32);
        }
    }
    Ok(words)
}

fn set_flags(names: &[String], words: &[u32]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| words.get(i / 32).is_some_and(|w| w & (1 << (i % 32)) != 0))
        .map(|(_, n)| n.clone())
        .collect()
}

/// The case index and payload of a variant-like value.
fn case_of<'v>(ty: &AbiType, value: &'v Value) -> Result<(usize, Option<&'v Value>)> {
    Ok(match (ty, value) {
        (AbiType::Variant(cases), Value::Variant(name, payload)) => {
            let index = cases.iter().position(|(n, _)| n == name).with_context(|| format!("no case `{name}`"))?;
            (index, payload.as_deref())
        }
        (AbiType::Enum(cases), Value::Enum(name)) => {
            (cases.iter().position(|n| n == name).with_context(|| format!("no case `{name}`"))?, None)
        }
        (AbiType::Option(_), Value::Option(v)) => (usize::from(v.is_some()), v.as_deref()),
        (AbiType::Result { .. }, Value::Result(Ok(v))) => (0, v.as_deref()),
        (AbiType::Result { .. }, Value::Result(Err(v))) => (1, v.as_deref()),
        _ => bail!("the value `{value:?}` does not fit the type {ty:?}"),
    })
}

fn case_type(ty: &AbiType, index: usize) -> Option<&AbiType> {
    match ty {
        AbiType::Variant(cases) => cases.get(index)?.1.as_ref(),
        AbiType::Option(t) => (index == 1).then_some(&**t),
        AbiType::Result { ok, err } => match index {
            0 => ok.as_deref(),
            1 => err.as_deref(),
            _ => None,
        },
        _ => None,
    }
}

fn variant_value(ty: &AbiType, index: usize, payload: Option<Value>) -> Result<Value> {
    let boxed = payload.map(Box::new);
    Ok(match ty {
        AbiType::Variant(cases) => {
            let (name, _) = cases.get(index).with_context(|| format!("discriminant {index} out of range"))?;
            Value::Variant(name.clone(), boxed)
        }
        AbiType::Enum(cases) => Value::Enum(cases.get(index).with_context(|| format!("discriminant {index} out of range"))?.clone()),
        AbiType::Option(_) => match index {
            0 => Value::Option(None),
            1 => Value::Option(boxed),
            _ => bail!("discriminant {index} out of range"),
        },
        AbiType::Result { .. } => match index {
            0 => Value::Result(Ok(boxed)),
            1 => Value::Result(Err(boxed)),
            _ => bail!("discriminant {index} out of range"),
        },
        _ => bail!("not a variant: {ty:?}"),
    })
}

fn int_value(ty: &AbiType, x: i64) -> Result<Value> {
    Ok(match ty {
        AbiType::Bool => Value::Bool(x != 0),
        AbiType::S8 => Value::S8(x as i8),
        AbiType::U8 => Value::U8(x as u8),
        AbiType::S16 => Value::S16(x as i16),
        AbiType::U16 => Value::U16(x as u16),
        AbiType::S32 => Value::S32(x as i32),
        AbiType::U32 => Value::U32(x as u32),
        AbiType::S64 => Value::S64(x),
        AbiType::U64 => Value::U64(x as u64),
        AbiType::Char => Value::Char(char::from_u32(x as u32).with_context(|| format!("{x:#x} is not a char"))?),
        _ => bail!("not an integer type: {ty:?}"),
    })
}

fn zero(t: FlatType) -> CoreValue {
    match t {
        FlatType::I32 => CoreValue::I32(0),
        FlatType::I64 => CoreValue::I64(0),
        FlatType::F32 => CoreValue::F32(0.0),
        FlatType::F64 => CoreValue::F64(0.0),
    }
}

/// A case's flat value in a joined slot (spec: `lower_flat_variant`).
fn widen(v: CoreValue, to: FlatType) -> CoreValue {
    match (v, to) {
        (CoreValue::I32(x), FlatType::I64) => CoreValue::I64(i64::from(x as u32)),
        (CoreValue::F32(x), FlatType::I32) => CoreValue::I32(x.to_bits() as i32),
        (CoreValue::F32(x), FlatType::I64) => CoreValue::I64(i64::from(x.to_bits())),
        (CoreValue::F64(x), FlatType::I64) => CoreValue::I64(x.to_bits() as i64),
        (v, _) => v,
    }
}

/// A joined slot back to a case's flat type (spec: `lift_flat_variant`).
fn narrow(v: CoreValue, to: FlatType) -> CoreValue {
    match (v, to) {
        (CoreValue::I64(x), FlatType::I32) => CoreValue::I32(x as i32),
        (CoreValue::I32(x), FlatType::F32) => CoreValue::F32(f32::from_bits(x as u32)),
        (CoreValue::I64(x), FlatType::F32) => CoreValue::F32(f32::from_bits(x as u32)),
        (CoreValue::I64(x), FlatType::F64) => CoreValue::F64(f64::from_bits(x as u64)),
        (v, _) => v,
    }
}
