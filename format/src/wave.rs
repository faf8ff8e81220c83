//! WAVE text for values: the syntax of `wasmtime run --invoke`.
//!
//! Owns: [`ValueType`], a [`Layout`] type seen through `wasm_wave::wasm::WasmType`,
//! and the `WasmValue` impl of [`Value`], so that `wasm-wave` parses and prints
//! values. IDL names are snake_case; WAVE (like WIT) writes them in kebab-case,
//! so the impls convert. Resource handles appear as `u32`; `[N]T` as a list;
//! a struct whose fields are `_0`, `_1`, … (how WIT tuples map to KarmemIDL,
//! docs/IDL.md "From WIT") as a WAVE tuple `(a, b)`, as wasmtime writes tuples;
//! a `map<K, V>` as a list of (key, value) tuples `[(k, v), ...]` in entry
//! order, because WAVE (wasm-wave 0.254) has no map form.
//!
//! Does not own: the binary format (`value` encodes and decodes).

use std::borrow::Cow;
use std::boxed::Box;
use std::string::{String, ToString};
use std::sync::Arc;
use std::vec::Vec;

use karmem_idl::ast::Prim;
use wasm_wave::wasm::{WasmType, WasmTypeKind, WasmValue, WasmValueError};

use crate::layout::{Kind, Layout, StructInfo, TypeId};
use crate::value::Value;

/// A type of a shared [`Layout`], for parsing WAVE text.
#[derive(Debug, Clone)]
pub struct ValueType {
    pub layout: Arc<Layout>,
    pub id: TypeId,
}

impl ValueType {
    pub fn new(layout: Arc<Layout>, id: TypeId) -> ValueType {
        ValueType { layout, id }
    }

    fn with(&self, id: TypeId) -> ValueType {
        ValueType { layout: self.layout.clone(), id }
    }

    fn kind_of(&self) -> &Kind {
        &self.layout.get(self.id).kind
    }
}

/// Whether field names `names` are `_0`, `_1`, … in order (at least one):
/// the shape of a WIT tuple in KarmemIDL. No WIT field can have these names,
/// and they have no WAVE record form (`-0` is not a label).
pub fn is_tuple_shaped<'a>(names: impl IntoIterator<Item = &'a str>) -> bool {
    let mut count = 0usize;
    for (i, name) in names.into_iter().enumerate() {
        if name.strip_prefix('_') != Some(i.to_string().as_str()) {
            return false;
        }
        count += 1;
    }
    count > 0
}

/// Tuple-shaped structs and map entries (`(key, value)`) are WAVE tuples.
fn is_tuple_struct(s: &StructInfo) -> bool {
    s.map_entry || is_tuple_shaped(s.fields.iter().map(|f| f.name.as_str()))
}

/// A map entry as the tuple value the WAVE writer prints.
fn entry_tuple(key: &Value, value: &Value) -> Value {
    Value::Record(std::vec![("_0".to_string(), key.clone()), ("_1".to_string(), value.clone())])
}

/// `snake_case` to `kebab-case`.
pub fn kebab(name: &str) -> String {
    name.replace('_', "-")
}

/// Parses WAVE `text` as a value of type `ty`.
pub fn parse(ty: &ValueType, text: &str) -> Result<Value, wasm_wave::parser::ParserError> {
    wasm_wave::from_str::<Value>(ty, text)
}

/// Prints `value` as WAVE.
pub fn print(value: &Value) -> Result<String, wasm_wave::writer::WriterError> {
    wasm_wave::to_string(value)
}

impl WasmType for ValueType {
    fn kind(&self) -> WasmTypeKind {
        match self.kind_of() {
            Kind::Prim(p) => match p {
                Prim::U8 => WasmTypeKind::U8,
                Prim::U16 => WasmTypeKind::U16,
                Prim::U32 => WasmTypeKind::U32,
                Prim::U64 => WasmTypeKind::U64,
                Prim::I8 => WasmTypeKind::S8,
                Prim::I16 => WasmTypeKind::S16,
                Prim::I32 => WasmTypeKind::S32,
                Prim::I64 => WasmTypeKind::S64,
                Prim::F32 => WasmTypeKind::F32,
                Prim::F64 => WasmTypeKind::F64,
                Prim::Bool => WasmTypeKind::Bool,
                Prim::Char => WasmTypeKind::Char,
            },
            Kind::Handle { .. } => WasmTypeKind::U32,
            Kind::Enum(_) => WasmTypeKind::Enum,
            Kind::Flags(_) => WasmTypeKind::Flags,
            Kind::Struct(s) if is_tuple_struct(s) => WasmTypeKind::Tuple,
            Kind::Struct(_) => WasmTypeKind::Record,
            Kind::Union(_) => WasmTypeKind::Variant,
            Kind::Array { .. } | Kind::FixedArray { .. } => WasmTypeKind::List,
            Kind::String { .. } => WasmTypeKind::String,
            Kind::Option { .. } => WasmTypeKind::Option,
            Kind::Result { .. } => WasmTypeKind::Result,
        }
    }

    fn list_element_type(&self) -> Option<Self> {
        match self.kind_of() {
            Kind::Array { elem, .. } | Kind::FixedArray { elem, .. } => Some(self.with(*elem)),
            _ => None,
        }
    }

    fn record_fields(&self) -> Box<dyn Iterator<Item = (Cow<'_, str>, Self)> + '_> {
        match self.kind_of() {
            Kind::Struct(s) => Box::new(s.fields.iter().map(|f| (Cow::Owned(kebab(&f.name)), self.with(f.ty)))),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn tuple_element_types(&self) -> Box<dyn Iterator<Item = Self> + '_> {
        match self.kind_of() {
            Kind::Struct(s) if is_tuple_struct(s) => Box::new(s.fields.iter().map(|f| self.with(f.ty))),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn variant_cases(&self) -> Box<dyn Iterator<Item = (Cow<'_, str>, Option<Self>)> + '_> {
        match self.kind_of() {
            Kind::Union(u) => Box::new(u.cases.iter().map(|c| (Cow::Owned(kebab(&c.name)), c.ty.map(|t| self.with(t))))),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn enum_cases(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        match self.kind_of() {
            Kind::Enum(e) => Box::new(e.cases.iter().map(|c| Cow::Owned(kebab(&c.0)))),
            _ => Box::new(std::iter::empty()),
        }
    }

    fn option_some_type(&self) -> Option<Self> {
        match self.kind_of() {
            Kind::Option { some, .. } => Some(self.with(*some)),
            _ => None,
        }
    }

    fn result_types(&self) -> Option<(Option<Self>, Option<Self>)> {
        match self.kind_of() {
            Kind::Result { ok, err, .. } => Some((ok.map(|t| self.with(t)), err.map(|t| self.with(t)))),
            _ => None,
        }
    }

    fn flags_names(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        match self.kind_of() {
            Kind::Flags(f) => Box::new(f.flags.iter().map(|n| Cow::Owned(kebab(n)))),
            _ => Box::new(std::iter::empty()),
        }
    }
}

fn wrong(ty: &ValueType, what: &str) -> WasmValueError {
    WasmValueError::WrongTypeKind { kind: ty.kind(), ty: what.to_string() }
}

/// The IDL name (snake_case) among `names` whose kebab form is `kebab_name`.
fn find_name<'a>(names: impl IntoIterator<Item = &'a String>, kebab_name: &str) -> Option<String> {
    names.into_iter().find(|n| kebab(n) == kebab_name).cloned()
}

impl WasmValue for Value {
    type Type = ValueType;

    fn kind(&self) -> WasmTypeKind {
        match self {
            Value::Bool(_) => WasmTypeKind::Bool,
            Value::S8(_) => WasmTypeKind::S8,
            Value::S16(_) => WasmTypeKind::S16,
            Value::S32(_) => WasmTypeKind::S32,
            Value::S64(_) => WasmTypeKind::S64,
            Value::U8(_) => WasmTypeKind::U8,
            Value::U16(_) => WasmTypeKind::U16,
            Value::U32(_) => WasmTypeKind::U32,
            Value::U64(_) => WasmTypeKind::U64,
            Value::F32(_) => WasmTypeKind::F32,
            Value::F64(_) => WasmTypeKind::F64,
            Value::Char(_) => WasmTypeKind::Char,
            Value::String(_) => WasmTypeKind::String,
            Value::List(_) | Value::Map(_) => WasmTypeKind::List,
            Value::Record(fields) if is_tuple_shaped(fields.iter().map(|(n, _)| n.as_str())) => WasmTypeKind::Tuple,
            Value::Record(_) => WasmTypeKind::Record,
            Value::Variant(..) => WasmTypeKind::Variant,
            Value::Enum(_) => WasmTypeKind::Enum,
            Value::Option(_) => WasmTypeKind::Option,
            Value::Result(_) => WasmTypeKind::Result,
            Value::Flags(_) => WasmTypeKind::Flags,
        }
    }

    fn make_bool(val: bool) -> Self {
        Value::Bool(val)
    }
    fn make_s8(val: i8) -> Self {
        Value::S8(val)
    }
    fn make_s16(val: i16) -> Self {
        Value::S16(val)
    }
    fn make_s32(val: i32) -> Self {
        Value::S32(val)
    }
    fn make_s64(val: i64) -> Self {
        Value::S64(val)
    }
    fn make_u8(val: u8) -> Self {
        Value::U8(val)
    }
    fn make_u16(val: u16) -> Self {
        Value::U16(val)
    }
    fn make_u32(val: u32) -> Self {
        Value::U32(val)
    }
    fn make_u64(val: u64) -> Self {
        Value::U64(val)
    }
    fn make_f32(val: f32) -> Self {
        Value::F32(val)
    }
    fn make_f64(val: f64) -> Self {
        Value::F64(val)
    }
    fn make_char(val: char) -> Self {
        Value::Char(val)
    }
    fn make_string(val: Cow<str>) -> Self {
        Value::String(val.into_owned())
    }

    fn make_list(ty: &Self::Type, vals: impl IntoIterator<Item = Self>) -> Result<Self, WasmValueError> {
        let items: Vec<Value> = vals.into_iter().collect();
        if let Kind::FixedArray { len, .. } = ty.kind_of()
            && items.len() != *len as usize
        {
            return Err(WasmValueError::Other(std::format!("expected {len} elements, found {}", items.len())));
        }
        if ty.layout.map_types(ty.id).is_some() {
            // Each item is a `(key, value)` tuple: a record of the entry struct.
            let mut entries = Vec::with_capacity(items.len());
            for item in items {
                let Value::Record(fields) = item else { return Err(wrong(ty, "map")) };
                let mut fields = fields.into_iter().map(|(_, v)| v);
                match (fields.next(), fields.next(), fields.next()) {
                    (Some(key), Some(value), None) => entries.push((key, value)),
                    _ => return Err(wrong(ty, "map")),
                }
            }
            return Ok(Value::Map(entries));
        }
        Ok(Value::List(items))
    }

    fn make_record<'a>(
        ty: &Self::Type,
        fields: impl IntoIterator<Item = (&'a str, Self)>,
    ) -> Result<Self, WasmValueError> {
        let Kind::Struct(s) = ty.kind_of() else { return Err(wrong(ty, "record")) };
        let mut slots: Vec<Option<Value>> = std::vec![None; s.fields.len()];
        for (name, v) in fields {
            let Some(i) = s.fields.iter().position(|f| kebab(&f.name) == name) else {
                return Err(WasmValueError::UnknownField(name.to_string()));
            };
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(v);
            }
        }
        let mut out = Vec::with_capacity(s.fields.len());
        for (f, v) in s.fields.iter().zip(slots) {
            match v {
                Some(v) => out.push((f.name.clone(), v)),
                None => return Err(WasmValueError::MissingField(kebab(&f.name))),
            }
        }
        Ok(Value::Record(out))
    }

    fn make_tuple(ty: &Self::Type, vals: impl IntoIterator<Item = Self>) -> Result<Self, WasmValueError> {
        let Kind::Struct(s) = ty.kind_of() else { return Err(wrong(ty, "tuple")) };
        let values: Vec<Value> = vals.into_iter().collect();
        if values.len() != s.fields.len() {
            return Err(WasmValueError::Other(std::format!(
                "expected a tuple of {} values, found {}",
                s.fields.len(),
                values.len()
            )));
        }
        Ok(Value::Record(s.fields.iter().map(|f| f.name.clone()).zip(values).collect()))
    }

    fn make_variant(ty: &Self::Type, case: &str, val: Option<Self>) -> Result<Self, WasmValueError> {
        let Kind::Union(u) = ty.kind_of() else { return Err(wrong(ty, "variant")) };
        let Some(name) = find_name(u.cases.iter().map(|c| &c.name), case) else {
            return Err(WasmValueError::UnknownCase(case.to_string()));
        };
        Ok(Value::Variant(name, val.map(Box::new)))
    }

    fn make_enum(ty: &Self::Type, case: &str) -> Result<Self, WasmValueError> {
        let Kind::Enum(e) = ty.kind_of() else { return Err(wrong(ty, "enum")) };
        match find_name(e.cases.iter().map(|c| &c.0), case) {
            Some(name) => Ok(Value::Enum(name)),
            None => Err(WasmValueError::UnknownCase(case.to_string())),
        }
    }

    fn make_option(_ty: &Self::Type, val: Option<Self>) -> Result<Self, WasmValueError> {
        Ok(Value::Option(val.map(Box::new)))
    }

    fn make_result(_ty: &Self::Type, val: Result<Option<Self>, Option<Self>>) -> Result<Self, WasmValueError> {
        Ok(Value::Result(match val {
            Ok(v) => Ok(v.map(Box::new)),
            Err(e) => Err(e.map(Box::new)),
        }))
    }

    fn make_flags<'a>(ty: &Self::Type, names: impl IntoIterator<Item = &'a str>) -> Result<Self, WasmValueError> {
        let Kind::Flags(f) = ty.kind_of() else { return Err(wrong(ty, "flags")) };
        let mut set = std::vec![false; f.flags.len()];
        for name in names {
            let Some(i) = f.flags.iter().position(|n| kebab(n) == name) else {
                return Err(WasmValueError::UnknownCase(name.to_string()));
            };
            if let Some(s) = set.get_mut(i) {
                *s = true;
            }
        }
        Ok(Value::Flags(f.flags.iter().zip(set).filter(|(_, s)| *s).map(|(n, _)| n.clone()).collect()))
    }

    // The writer calls these only for values of the matching kind (it
    // dispatches on `kind()` first), so the fallbacks are never reached.
    fn unwrap_bool(&self) -> bool {
        matches!(self, Value::Bool(true))
    }
    fn unwrap_s8(&self) -> i8 {
        if let Value::S8(v) = self { *v } else { 0 }
    }
    fn unwrap_s16(&self) -> i16 {
        if let Value::S16(v) = self { *v } else { 0 }
    }
    fn unwrap_s32(&self) -> i32 {
        if let Value::S32(v) = self { *v } else { 0 }
    }
    fn unwrap_s64(&self) -> i64 {
        if let Value::S64(v) = self { *v } else { 0 }
    }
    fn unwrap_u8(&self) -> u8 {
        if let Value::U8(v) = self { *v } else { 0 }
    }
    fn unwrap_u16(&self) -> u16 {
        if let Value::U16(v) = self { *v } else { 0 }
    }
    fn unwrap_u32(&self) -> u32 {
        if let Value::U32(v) = self { *v } else { 0 }
    }
    fn unwrap_u64(&self) -> u64 {
        if let Value::U64(v) = self { *v } else { 0 }
    }
    fn unwrap_f32(&self) -> f32 {
        if let Value::F32(v) = self { *v } else { 0.0 }
    }
    fn unwrap_f64(&self) -> f64 {
        if let Value::F64(v) = self { *v } else { 0.0 }
    }
    fn unwrap_char(&self) -> char {
        if let Value::Char(v) = self { *v } else { '\0' }
    }
    fn unwrap_string(&self) -> Cow<'_, str> {
        if let Value::String(v) = self { Cow::Borrowed(v) } else { Cow::Borrowed("") }
    }
    fn unwrap_list(&self) -> Box<dyn Iterator<Item = Cow<'_, Self>> + '_> {
        match self {
            Value::List(items) => Box::new(items.iter().map(Cow::Borrowed)),
            Value::Map(entries) => Box::new(entries.iter().map(|(k, v)| Cow::Owned(entry_tuple(k, v)))),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn unwrap_record(&self) -> Box<dyn Iterator<Item = (Cow<'_, str>, Cow<'_, Self>)> + '_> {
        match self {
            Value::Record(fields) => Box::new(fields.iter().map(|(n, v)| (Cow::Owned(kebab(n)), Cow::Borrowed(v)))),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn unwrap_tuple(&self) -> Box<dyn Iterator<Item = Cow<'_, Self>> + '_> {
        match self {
            Value::Record(fields) => Box::new(fields.iter().map(|(_, v)| Cow::Borrowed(v))),
            _ => Box::new(std::iter::empty()),
        }
    }
    fn unwrap_variant(&self) -> (Cow<'_, str>, Option<Cow<'_, Self>>) {
        match self {
            Value::Variant(name, payload) => (Cow::Owned(kebab(name)), payload.as_deref().map(Cow::Borrowed)),
            _ => (Cow::Borrowed(""), None),
        }
    }
    fn unwrap_enum(&self) -> Cow<'_, str> {
        match self {
            Value::Enum(name) => Cow::Owned(kebab(name)),
            _ => Cow::Borrowed(""),
        }
    }
    fn unwrap_option(&self) -> Option<Cow<'_, Self>> {
        match self {
            Value::Option(v) => v.as_deref().map(Cow::Borrowed),
            _ => None,
        }
    }
    fn unwrap_result(&self) -> Result<Option<Cow<'_, Self>>, Option<Cow<'_, Self>>> {
        match self {
            Value::Result(Ok(v)) => Ok(v.as_deref().map(Cow::Borrowed)),
            Value::Result(Err(e)) => Err(e.as_deref().map(Cow::Borrowed)),
            _ => Ok(None),
        }
    }
    fn unwrap_flags(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        match self {
            Value::Flags(names) => Box::new(names.iter().map(|n| Cow::Owned(kebab(n)))),
            _ => Box::new(std::iter::empty()),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match print(self) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{self:?}"),
        }
    }
}

/// A function call written as for `wasmtime run --invoke`, e.g. `greet("x", 2)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The function's IDL name (as written, kebab-case converted back if needed).
    pub function: String,
    /// The argument struct (FORMAT.md §10): a record of the parameters.
    pub args: Value,
}

/// Parses `text` as a call of a function of `interface`: the name, then
/// positional WAVE arguments typed by the function's parameters. Names are
/// matched as written or in kebab-case (`get_count` and `get-count`).
pub fn parse_invocation(layout: &Arc<Layout>, interface: &str, text: &str) -> Result<Invocation, String> {
    let call = wasm_wave::untyped::UntypedFuncCall::parse(text).map_err(|e| std::format!("invalid invocation `{text}`: {e}"))?;
    let written = call.name();
    let function = layout
        .functions()
        .filter_map(|(path, _)| path.strip_prefix(interface)?.strip_prefix('.'))
        .find(|f| *f == written || kebab(f) == written)
        .map(|f| f.to_string())
        .ok_or_else(|| std::format!("interface `{interface}` has no function `{written}`"))?;
    let f = layout
        .function(interface, &function)
        .ok_or_else(|| std::format!("interface `{interface}` has no function `{written}`"))?;
    let Kind::Struct(s) = &layout.get(f.params).kind else {
        return Err("argument struct is not a struct".to_string());
    };
    let types: Vec<ValueType> = s.fields.iter().map(|p| ValueType::new(layout.clone(), p.ty)).collect();
    let values: Vec<Value> = call.to_wasm_params::<Value>(types.iter()).map_err(|e| std::format!("invalid arguments to `{function}`: {e}"))?;
    let args = Value::Record(s.fields.iter().map(|p| p.name.clone()).zip(values).collect());
    Ok(Invocation { function, args })
}

/// Prints a result struct the way `wasmtime run --invoke` prints results:
/// each result's WAVE text, comma-separated (nothing for no results).
pub fn print_results(results: &Value) -> Result<String, wasm_wave::writer::WriterError> {
    match results {
        Value::Record(fields) => {
            let mut parts = Vec::with_capacity(fields.len());
            for (_, v) in fields {
                parts.push(print(v)?);
            }
            Ok(parts.join(", "))
        }
        other => print(other),
    }
}
