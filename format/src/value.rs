//! The schema-driven dynamic value codec.
//!
//! Owns: [`Value`], a run-time value of any KarmemIDL type, and the encoder and
//! decoder between values and messages for a [`Layout`] type — including the
//! argument and result messages of interface functions. The encoder is the
//! reference top-down writer: objects are allocated depth-first in field order,
//! parents before children (FORMAT.md's golden vectors are its output).
//!
//! Does not own: validation (`validate`, which `decode` runs first) or WAVE
//! text (`wave`).

use std::boxed::Box;
use std::collections::HashMap;
use std::fmt;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use karmem_idl::ast::{Literal, Prim};

use crate::builder::{AlignedBuf, Builder, TooLarge};
use crate::error::{Error, ErrorKind};
use crate::layout::{ArrayForm, ColumnInfo, Kind, Layout, Leaf, StructInfo, TypeId, UnionInfo};
use crate::raw;
use crate::validate::{Limits, validate};
use crate::view::{Message, Slot};

/// A value of a KarmemIDL type. Names are the IDL's (snake_case); WAVE text
/// shows them in kebab-case. Resource handles are `U32`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    S8(i8),
    S16(i16),
    S32(i32),
    S64(i64),
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    F32(f32),
    F64(f64),
    Char(char),
    /// A `#string` array.
    String(String),
    /// `[]T` or `[N]T`.
    List(Vec<Value>),
    /// A struct: every field of the type, in declaration order.
    Record(Vec<(String, Value)>),
    /// A union case and its payload.
    Variant(String, Option<Box<Value>>),
    Enum(String),
    Option(Option<Box<Value>>),
    Result(Result<Option<Box<Value>>, Option<Box<Value>>>),
    /// The names of the flags that are set, in declaration order.
    Flags(Vec<String>),
    /// A `map<K, V>`: (key, value) entries in the sender's order, duplicate
    /// keys included (FORMAT.md §6.5).
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// A record field by name.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Equality that compares floats by bits (so NaN equals the same NaN).
    pub fn bit_eq(&self, other: &Value) -> bool {
        use Value::*;
        let opt = |a: &core::option::Option<Box<Value>>, b: &core::option::Option<Box<Value>>| match (a, b) {
            (Some(a), Some(b)) => a.bit_eq(b),
            (None, None) => true,
            _ => false,
        };
        match (self, other) {
            (F32(a), F32(b)) => a.to_bits() == b.to_bits(),
            (F64(a), F64(b)) => a.to_bits() == b.to_bits(),
            (List(a), List(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| a.bit_eq(b)),
            (Map(a), Map(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka.bit_eq(kb) && va.bit_eq(vb))
            }
            (Record(a), Record(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|((na, a), (nb, b))| na == nb && a.bit_eq(b))
            }
            (Variant(na, a), Variant(nb, b)) => na == nb && opt(a, b),
            (Option(a), Option(b)) => opt(a, b),
            (Result(Ok(a)), Result(Ok(b))) | (Result(Err(a)), Result(Err(b))) => opt(a, b),
            _ => self == other,
        }
    }
}

/// A value that does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodeError {
    /// Where in the value: field names and indices, e.g. `.readings[3].value`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "cannot encode value: {}", self.message)
        } else {
            write!(f, "cannot encode value at `{}`: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for EncodeError {}

impl From<TooLarge> for EncodeError {
    fn from(_: TooLarge) -> EncodeError {
        EncodeError { path: String::new(), message: "message would exceed 4 GiB".into() }
    }
}

/// Encodes `value` as a message whose root has type `ty`.
pub fn encode(layout: &Layout, ty: TypeId, value: &Value) -> Result<AlignedBuf, EncodeError> {
    let mut enc = Encoder { layout, b: Builder::new(), path: Vec::new() };
    let root = enc.out_of_line(ty, value)?;
    enc.b.set_root(root);
    Ok(enc.b.finish())
}

/// Validates `bytes` with `limits`, then decodes the root as type `ty`.
pub fn decode(layout: &Layout, ty: TypeId, bytes: &[u8], limits: &Limits) -> Result<Value, Error> {
    validate(bytes, layout, ty, limits)?;
    let msg = Message::new(bytes)?;
    Decoder { layout, msg, depth: 0, max_depth: limits.max_depth }.out_of_line(ty, msg.root())
}

/// One case of a bunch array: its tag, payload type and values (`None` without payload).
type BunchGroup<'v> = (u64, Option<TypeId>, Vec<Option<&'v Value>>);

/// Decodes the value of type `ty` whose out-of-line form is at `at` (for
/// views into an already validated message).
pub fn decode_at(layout: &Layout, ty: TypeId, msg: Message<'_>, at: u32) -> Result<Value, Error> {
    let limits = Limits::default();
    Decoder { layout, msg, depth: 0, max_depth: limits.max_depth }.out_of_line(ty, at)
}

struct Encoder<'l> {
    layout: &'l Layout,
    b: Builder,
    path: Vec<String>,
}

impl Encoder<'_> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, EncodeError> {
        Err(EncodeError { path: self.path.concat(), message: message.into() })
    }

    fn mismatch<T>(&self, ty: TypeId, value: &Value) -> Result<T, EncodeError> {
        let expected = self.layout.signature(ty);
        let found = match value {
            Value::Record(_) => "a record".to_string(),
            Value::List(_) => "a list".to_string(),
            Value::Map(_) => "a map".to_string(),
            other => {
                let s = format!("{other:?}");
                s.chars().take(40).collect()
            }
        };
        self.fail(format!("expected a value of type `{expected}`, found {found}"))
    }

    /// Writes the out-of-line form of `value` and returns its offset.
    fn out_of_line(&mut self, ty: TypeId, value: &Value) -> Result<u32, EncodeError> {
        if let Some(s) = self.layout.as_struct(ty)
            && s.dynamic
        {
            return self.dynamic_struct(s, value);
        }
        let size = self.layout.get(ty).size;
        let at = self.b.alloc_object(size as u64)?;
        if size == 0 {
            // Nothing to write, but the value must still fit its type.
            return self.check_zero_sized(ty, value).map(|()| 0);
        }
        self.inline(ty, at, value)?;
        Ok(at)
    }

    fn check_zero_sized(&mut self, ty: TypeId, value: &Value) -> Result<(), EncodeError> {
        // Writing into a scratch builder validates the value without touching ours.
        let mut scratch = Encoder { layout: self.layout, b: Builder::new(), path: self.path.clone() };
        let at = scratch.b.alloc_object(8)?;
        scratch.inline(ty, at, value)
    }

    fn dynamic_struct(&mut self, s: &StructInfo, value: &Value) -> Result<u32, EncodeError> {
        let at = self.b.alloc_dynamic_struct(s.used)?;
        self.fields(s, at, value)?;
        Ok(at)
    }

    fn fields(&mut self, s: &StructInfo, at: u32, value: &Value) -> Result<(), EncodeError> {
        let Value::Record(values) = value else {
            return self.fail(format!("expected a record for struct `{}`", s.name));
        };
        if values.len() != s.fields.len() {
            return self.fail(format!(
                "struct `{}` has {} fields, the record has {}",
                s.name,
                s.fields.len(),
                values.len()
            ));
        }
        for (f, (name, v)) in s.fields.iter().zip(values) {
            if *name != f.name {
                return self.fail(format!("expected field `{}`, found `{name}`", f.name));
            }
            self.path.push(format!(".{name}"));
            self.inline(f.ty, at + f.offset, v)?;
            self.path.pop();
        }
        Ok(())
    }

    /// Writes `value`'s inline bytes at `at` (already allocated), allocating its children.
    fn inline(&mut self, ty: TypeId, at: u32, value: &Value) -> Result<(), EncodeError> {
        let layout = self.layout;
        let info = layout.get(ty);
        match (&info.kind, value) {
            (Kind::Prim(p), v) => self.prim(*p, at, v, ty)?,
            (Kind::Handle { .. }, Value::U32(h)) => self.b.put(at, *h),
            (Kind::Enum(e), Value::Enum(name)) => match e.cases.iter().find(|c| c.0 == *name) {
                Some(&(_, v)) => self.b.put_uint(at, e.width, v),
                None => return self.fail(format!("`{name}` is not a case of enum `{}`", e.name)),
            },
            (Kind::Flags(f), Value::Flags(names)) => {
                let mut bits = vec![0u8; info.size as usize];
                for name in names {
                    let Some(i) = f.flags.iter().position(|n| n == name) else {
                        return self.fail(format!("`{name}` is not a flag of `{}`", f.name));
                    };
                    if let Some(byte) = bits.get_mut(i / 8) {
                        *byte |= 1 << (i % 8);
                    }
                }
                self.b.bytes_mut(at, bits.len()).copy_from_slice(&bits);
            }
            (Kind::Struct(s), v) if s.dynamic => {
                let off = self.dynamic_struct(s, v)?;
                self.b.put(at, off);
            }
            (Kind::Struct(s), v) => self.fields(s, at, v)?,
            (Kind::Union(u), Value::Variant(name, payload)) => {
                self.union(u, at, name, payload.as_deref())?;
            }
            (Kind::String { utf16 }, Value::String(text)) => {
                if *utf16 {
                    let units: Vec<u16> = text.encode_utf16().collect();
                    let n = self.len32(units.len())?;
                    let block = self.b.alloc_plain_array(at, 2, n, n)?;
                    for (i, u) in units.iter().enumerate() {
                        self.b.put(block + 2 * i as u32, *u);
                    }
                } else {
                    let n = self.len32(text.len())?;
                    let block = self.b.alloc_plain_array(at, 1, n, n)?;
                    if n > 0 {
                        self.b.bytes_mut(block, text.len()).copy_from_slice(text.as_bytes());
                    }
                }
            }
            (Kind::Array { elem, .. }, Value::Map(entries)) if layout.is_map_entry(*elem) => {
                self.map(*elem, at, entries)?
            }
            (Kind::Array { elem, form }, Value::List(items)) if !layout.is_map_entry(*elem) => {
                self.array(*elem, *form, at, items)?
            }
            (Kind::FixedArray { elem, len }, Value::List(items)) => {
                if items.len() != *len as usize {
                    return self.fail(format!("expected {len} elements, found {}", items.len()));
                }
                let size = layout.get(*elem).size;
                for (i, item) in items.iter().enumerate() {
                    self.path.push(format!("[{i}]"));
                    self.inline(*elem, at + i as u32 * size, item)?;
                    self.path.pop();
                }
            }
            (Kind::Option { some, payload_offset }, Value::Option(v)) => match v {
                None => self.b.put(at, 0u8),
                Some(v) => {
                    self.b.put(at, 1u8);
                    self.inline(*some, at + payload_offset, v)?;
                }
            },
            (Kind::Result { ok, err, payload_offset }, Value::Result(r)) => {
                let (disc, ty, payload) = match r {
                    Ok(v) => (0u8, ok, v),
                    Err(v) => (1u8, err, v),
                };
                self.b.put(at, disc);
                match (ty, payload) {
                    (Some(t), Some(v)) => self.inline(*t, at + payload_offset, v)?,
                    (None, None) => {}
                    (Some(_), None) => return self.fail("result case needs a payload"),
                    (None, Some(_)) => return self.fail("result case has no payload"),
                }
            }
            _ => return self.mismatch(ty, value),
        }
        Ok(())
    }

    fn len32(&self, n: usize) -> Result<u32, EncodeError> {
        match u32::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => self.fail("array longer than 2^32 - 1 elements"),
        }
    }

    fn prim(&mut self, p: Prim, at: u32, v: &Value, ty: TypeId) -> Result<(), EncodeError> {
        match (p, v) {
            (Prim::U8, Value::U8(x)) => self.b.put(at, *x),
            (Prim::U16, Value::U16(x)) => self.b.put(at, *x),
            (Prim::U32, Value::U32(x)) => self.b.put(at, *x),
            (Prim::U64, Value::U64(x)) => self.b.put(at, *x),
            (Prim::I8, Value::S8(x)) => self.b.put(at, *x),
            (Prim::I16, Value::S16(x)) => self.b.put(at, *x),
            (Prim::I32, Value::S32(x)) => self.b.put(at, *x),
            (Prim::I64, Value::S64(x)) => self.b.put(at, *x),
            (Prim::F32, Value::F32(x)) => self.b.put(at, *x),
            (Prim::F64, Value::F64(x)) => self.b.put(at, *x),
            (Prim::Bool, Value::Bool(x)) => self.b.put(at, *x as u8),
            (Prim::Char, Value::Char(x)) => self.b.put(at, *x as u32),
            _ => return self.mismatch(ty, v),
        }
        Ok(())
    }

    fn case<'u>(&self, u: &'u UnionInfo, name: &str) -> Result<&'u crate::layout::CaseInfo, EncodeError> {
        match u.cases.iter().find(|c| c.name == name) {
            Some(c) => Ok(c),
            None => self.fail(format!("`{name}` is not a case of union `{}`", u.name)),
        }
    }

    /// Writes a union's tag at `tag_at` and its payload (inline at
    /// `payload_at`, or the out-of-line offset there for a dynamic union).
    fn union_parts(
        &mut self,
        u: &UnionInfo,
        tag_at: u32,
        payload_at: u32,
        name: &str,
        payload: Option<&Value>,
    ) -> Result<(), EncodeError> {
        let case = self.case(u, name)?;
        let (tag, case_ty) = (case.tag, case.ty);
        self.b.put_uint(tag_at, u.tag_width, tag);
        self.path.push(format!("#{name}"));
        match (case_ty, payload) {
            (None, None) => {}
            (Some(t), Some(v)) if u.dynamic => {
                let off = self.out_of_line(t, v)?;
                self.b.put(payload_at, off);
            }
            (Some(t), Some(v)) => self.inline(t, payload_at, v)?,
            (Some(_), None) => return self.fail(format!("case `{name}` needs a payload")),
            (None, Some(_)) => return self.fail(format!("case `{name}` has no payload")),
        }
        self.path.pop();
        Ok(())
    }

    fn union(&mut self, u: &UnionInfo, at: u32, name: &str, payload: Option<&Value>) -> Result<(), EncodeError> {
        self.union_parts(u, at, at + u.payload_offset, name, payload)
    }

    fn array(&mut self, elem: TypeId, form: ArrayForm, at: u32, items: &[Value]) -> Result<(), EncodeError> {
        let layout = self.layout;
        let n = self.len32(items.len())?;
        match form {
            ArrayForm::Plain => {
                let size = layout.get(elem).size;
                let block = self.b.alloc_plain_array(at, size, n, n)?;
                for (i, item) in items.iter().enumerate() {
                    self.path.push(format!("[{i}]"));
                    self.inline(elem, block + i as u32 * size, item)?;
                    self.path.pop();
                }
            }
            ArrayForm::Soa => {
                let columns = layout.columns(elem);
                let spec: Vec<(u32, u32)> = columns.iter().map(|c| (c.hash, c.size)).collect();
                let mut offsets = vec![0u32; columns.len()];
                self.b.alloc_soa_array(at, n, n, &spec, &mut offsets)?;
                for (i, item) in items.iter().enumerate() {
                    self.path.push(format!("[{i}]"));
                    self.soa_element(elem, columns, &offsets, i as u32, item)?;
                    self.path.pop();
                }
            }
            ArrayForm::Bunch { soa } => {
                let Kind::Union(u) = &layout.get(elem).kind else {
                    return self.fail("a bunch array needs union elements");
                };
                // Group by case, in increasing tag order, keeping insertion order.
                let mut groups: Vec<BunchGroup<'_>> = Vec::new();
                let mut sorted: Vec<&crate::layout::CaseInfo> = u.cases.iter().collect();
                sorted.sort_by_key(|c| c.tag);
                for c in sorted {
                    let mut members = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let Value::Variant(name, payload) = item else {
                            self.path.push(format!("[{i}]"));
                            return self.mismatch(elem, item);
                        };
                        if *name == c.name {
                            match (c.ty, payload) {
                                (Some(_), Some(p)) => members.push(Some(&**p)),
                                (None, None) => members.push(None),
                                _ => {
                                    self.path.push(format!("[{i}]"));
                                    return self.fail(format!("case `{name}` payload does not match"));
                                }
                            }
                        } else {
                            self.case(u, name)?;
                        }
                    }
                    if !members.is_empty() {
                        groups.push((c.tag, c.ty, members));
                    }
                }
                let m = groups.len() as u64;
                if n == 0 {
                    // No values, no table (FORMAT.md §3: extent 0, offset 0).
                    self.b.put_slot(at, Slot::default());
                    return Ok(());
                }
                let table = self.b.alloc_block(raw::BUNCH_HEADER_SIZE as u64 + raw::BUNCH_ENTRY_SIZE as u64 * m)?;
                self.b.put_slot(at, Slot { offset: table, length: n, capacity: n });
                self.b.put(table, m as u32);
                for (j, (tag, ty, members)) in groups.iter().enumerate() {
                    let entry = table + raw::BUNCH_HEADER_SIZE + raw::BUNCH_ENTRY_SIZE * j as u32;
                    self.b.put(entry, *tag as u32);
                    let count = members.len() as u32;
                    match ty {
                        None => self.b.put_slot(entry + 4, Slot { offset: 0, length: count, capacity: count }),
                        Some(t) => {
                            let is_struct = layout.as_struct(*t).is_some();
                            let form = if soa && is_struct { ArrayForm::Soa } else { ArrayForm::Plain };
                            let owned: Vec<Value> = members.iter().flatten().map(|v| (*v).clone()).collect();
                            self.array(*t, form, entry + 4, &owned)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes a map's entries at the slot `at`: the SoA array of its entry
    /// struct `entry` (FORMAT.md §6.5), in the order given.
    fn map(&mut self, entry: TypeId, at: u32, entries: &[(Value, Value)]) -> Result<(), EncodeError> {
        let layout = self.layout;
        let Some((key_ty, value_ty)) = layout.as_struct(entry).and_then(crate::layout::map_entry_types) else {
            return self.fail("a map needs its entry struct");
        };
        let n = self.len32(entries.len())?;
        let columns = layout.columns(entry);
        let spec: Vec<(u32, u32)> = columns.iter().map(|c| (c.hash, c.size)).collect();
        let mut offsets = vec![0u32; columns.len()];
        self.b.alloc_soa_array(at, n, n, &spec, &mut offsets)?;
        for (i, (key, value)) in entries.iter().enumerate() {
            self.path.push(format!("[{i}]"));
            if !layout.is_dynamic_struct(value_ty) {
                self.check_record(value_ty, value)?;
            }
            for (c, &col) in columns.iter().zip(&offsets) {
                let Leaf::Field(leaf_ty) = c.leaf else { continue };
                let leaf = match c.path.split_first() {
                    Some((0, rest)) => leaf_value(layout, key_ty, key, rest),
                    Some((_, rest)) => leaf_value(layout, value_ty, value, rest),
                    None => None,
                };
                let Some(v) = leaf else {
                    return self.fail("map entry does not match its types");
                };
                self.path.push(if c.path.first() == Some(&0) { ".key" } else { ".value" }.to_string());
                self.inline(leaf_ty, col + i as u32 * c.size, v)?;
                self.path.pop();
            }
            self.path.pop();
        }
        Ok(())
    }

    fn soa_element(
        &mut self,
        elem: TypeId,
        columns: &[ColumnInfo],
        offsets: &[u32],
        i: u32,
        item: &Value,
    ) -> Result<(), EncodeError> {
        let layout = self.layout;
        match &layout.get(elem).kind {
            Kind::Union(u) => {
                let Value::Variant(name, payload) = item else {
                    return self.mismatch(elem, item);
                };
                let (tag_col, payload_col) = match (offsets.first(), offsets.get(1)) {
                    (Some(a), Some(b)) => (*a, *b),
                    _ => return self.fail("union columns missing"),
                };
                self.union_parts(u, tag_col + i * u.tag_width, payload_col + i * u.payload_size, name, payload.as_deref())
            }
            Kind::Struct(_) => {
                // Check the record's shape once, then scatter its leaves.
                self.check_record(elem, item)?;
                for (c, &col) in columns.iter().zip(offsets) {
                    let Leaf::Field(leaf_ty) = c.leaf else { continue };
                    let Some(v) = leaf_value(layout, elem, item, &c.path) else {
                        return self.fail("record does not match its struct");
                    };
                    self.inline(leaf_ty, col + i * c.size, v)?;
                }
                Ok(())
            }
            _ => self.mismatch(elem, item),
        }
    }

    fn check_record(&self, ty: TypeId, value: &Value) -> Result<(), EncodeError> {
        let Some(s) = self.layout.as_struct(ty) else { return Ok(()) };
        let Value::Record(fields) = value else {
            return self.fail(format!("expected a record for struct `{}`", s.name));
        };
        if fields.len() != s.fields.len() || fields.iter().zip(&s.fields).any(|((n, _), f)| *n != f.name) {
            return self.fail(format!("record fields do not match struct `{}`", s.name));
        }
        for (f, (_, v)) in s.fields.iter().zip(fields) {
            if !self.layout.is_dynamic_struct(f.ty) {
                self.check_record(f.ty, v)?;
            }
        }
        Ok(())
    }
}

/// The value at `path` inside a (nested) record of struct type `ty`.
fn leaf_value<'v>(layout: &Layout, ty: TypeId, value: &'v Value, path: &[u32]) -> Option<&'v Value> {
    let Some((&first, rest)) = path.split_first() else { return Some(value) };
    let s = layout.as_struct(ty)?;
    let field = s.fields.get(first as usize)?;
    let Value::Record(fields) = value else { return None };
    let (_, v) = fields.get(first as usize)?;
    leaf_value(layout, field.ty, v, rest)
}

struct Decoder<'l, 'm> {
    layout: &'l Layout,
    msg: Message<'m>,
    depth: u32,
    max_depth: u32,
}

impl Decoder<'_, '_> {
    fn deeper(&mut self, at: u32) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(Error::new(ErrorKind::DepthLimit { depth: self.depth }, at));
        }
        Ok(())
    }

    fn out_of_line(&mut self, ty: TypeId, at: u32) -> Result<Value, Error> {
        self.deeper(at)?;
        let v = match self.layout.as_struct(ty) {
            Some(s) if s.dynamic => self.dynamic_struct(s, at),
            _ => self.inline(ty, at),
        };
        self.depth -= 1;
        v
    }

    fn dynamic_struct(&mut self, s: &StructInfo, at: u32) -> Result<Value, Error> {
        let body = self.msg.dynamic_struct(at)?;
        let mut fields = Vec::with_capacity(s.fields.len());
        for f in &s.fields {
            let size = self.layout.get(f.ty).size;
            let v = match body.field(f.offset, size) {
                Some(abs) => self.inline(f.ty, abs)?,
                None => default_value(self.layout, f.ty, f.default.as_ref(), at)?,
            };
            fields.push((f.name.clone(), v));
        }
        Ok(Value::Record(fields))
    }

    fn inline(&mut self, ty: TypeId, at: u32) -> Result<Value, Error> {
        let layout = self.layout;
        let info = layout.get(ty);
        let msg = self.msg;
        Ok(match &info.kind {
            Kind::Prim(p) => match p {
                Prim::U8 => Value::U8(msg.scalar(at)?),
                Prim::U16 => Value::U16(msg.scalar(at)?),
                Prim::U32 => Value::U32(msg.scalar(at)?),
                Prim::U64 => Value::U64(msg.scalar(at)?),
                Prim::I8 => Value::S8(msg.scalar(at)?),
                Prim::I16 => Value::S16(msg.scalar(at)?),
                Prim::I32 => Value::S32(msg.scalar(at)?),
                Prim::I64 => Value::S64(msg.scalar(at)?),
                Prim::F32 => Value::F32(msg.scalar(at)?),
                Prim::F64 => Value::F64(msg.scalar(at)?),
                Prim::Bool => Value::Bool(msg.bool(at)?),
                Prim::Char => Value::Char(msg.char(at)?),
            },
            Kind::Handle { .. } => Value::U32(msg.scalar(at)?),
            Kind::Enum(e) => {
                let v = msg.uint(at, e.width)?;
                match e.cases.iter().find(|c| c.1 == v) {
                    Some(c) => Value::Enum(c.0.clone()),
                    None => return Err(Error::new(ErrorKind::InvalidEnum { value: v }, at)),
                }
            }
            Kind::Flags(f) => {
                let bytes = msg.slice(at, info.size as u64)?;
                let set = f
                    .flags
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bytes.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0))
                    .map(|(_, n)| n.clone())
                    .collect();
                Value::Flags(set)
            }
            Kind::Struct(s) if s.dynamic => {
                let off: u32 = msg.scalar(at)?;
                self.deeper(at)?;
                let v = self.dynamic_struct(s, off)?;
                self.depth -= 1;
                v
            }
            Kind::Struct(s) => {
                let mut fields = Vec::with_capacity(s.fields.len());
                for f in &s.fields {
                    fields.push((f.name.clone(), self.inline(f.ty, at + f.offset)?));
                }
                Value::Record(fields)
            }
            Kind::Union(u) => {
                let tag = msg.uint(at, u.tag_width)?;
                self.union_parts(u, tag, at, at + u.payload_offset)?
            }
            Kind::String { utf16 } => {
                let slot = msg.slot(at)?;
                if *utf16 {
                    let bytes = msg.slice(slot.offset, slot.length as u64 * 2)?;
                    let units = bytes.chunks_exact(2).map(<u16 as raw::Scalar>::from_le_slice);
                    let text: Result<String, _> = char::decode_utf16(units).collect();
                    Value::String(text.map_err(|_| Error::new(ErrorKind::InvalidUtf16, slot.offset))?)
                } else {
                    let bytes = msg.slice(slot.offset, slot.length as u64)?;
                    let text = core::str::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidUtf8, slot.offset))?;
                    Value::String(text.to_string())
                }
            }
            Kind::Array { elem, form } => {
                let slot = msg.slot(at)?;
                self.deeper(at)?;
                let v = self.array(*elem, *form, slot)?;
                self.depth -= 1;
                if layout.is_map_entry(*elem) { Value::Map(v.into_iter().map(entry_pair).collect()) } else { Value::List(v) }
            }
            Kind::FixedArray { elem, len } => {
                let size = layout.get(*elem).size;
                let mut items = Vec::with_capacity((*len as usize).min(1 << 16));
                for i in 0..*len {
                    items.push(self.inline(*elem, at + i * size)?);
                }
                Value::List(items)
            }
            Kind::Option { some, payload_offset } => match msg.scalar::<u8>(at)? {
                0 => Value::Option(None),
                1 => Value::Option(Some(Box::new(self.inline(*some, at + payload_offset)?))),
                value => return Err(Error::new(ErrorKind::InvalidDiscriminant { value }, at)),
            },
            Kind::Result { ok, err, payload_offset } => {
                let disc = msg.scalar::<u8>(at)?;
                let ty = match disc {
                    0 => ok,
                    1 => err,
                    value => return Err(Error::new(ErrorKind::InvalidDiscriminant { value }, at)),
                };
                let payload = match ty {
                    Some(t) => Some(Box::new(self.inline(*t, at + payload_offset)?)),
                    None => None,
                };
                Value::Result(if disc == 0 { Ok(payload) } else { Err(payload) })
            }
        })
    }

    /// A union value from its tag and the position of its payload (inline
    /// bytes, or the payload offset of a dynamic union).
    fn union_parts(&mut self, u: &UnionInfo, tag: u64, tag_at: u32, payload_at: u32) -> Result<Value, Error> {
        let Some(case) = u.cases.iter().find(|c| c.tag == tag) else {
            return Err(Error::new(ErrorKind::UnknownTag { tag: tag as u32 }, tag_at));
        };
        let payload = match case.ty {
            None => None,
            Some(t) if u.dynamic => {
                let off: u32 = self.msg.scalar(payload_at)?;
                let v = if off == 0 && !self.layout.is_dynamic_struct(t) {
                    // A 0-byte payload is not stored.
                    zero_value(self.layout, t, payload_at, 0)?
                } else {
                    self.out_of_line(t, off)?
                };
                Some(Box::new(v))
            }
            Some(t) => Some(Box::new(self.inline(t, payload_at)?)),
        };
        Ok(Value::Variant(case.name.clone(), payload))
    }

    fn array(&mut self, elem: TypeId, form: ArrayForm, slot: Slot) -> Result<Vec<Value>, Error> {
        let layout = self.layout;
        match form {
            ArrayForm::Plain => {
                let size = layout.get(elem).size;
                let mut items = Vec::with_capacity((slot.length as usize).min(1 << 16));
                for i in 0..slot.length {
                    let at = if size == 0 { 0 } else { slot.offset + i * size };
                    items.push(self.inline(elem, at)?);
                }
                Ok(items)
            }
            ArrayForm::Soa => self.soa(elem, slot),
            ArrayForm::Bunch { soa } => {
                let Kind::Union(u) = &layout.get(elem).kind else { return Ok(Vec::new()) };
                if slot.length == 0 {
                    return Ok(Vec::new());
                }
                let m: u32 = self.msg.scalar(slot.offset)?;
                let mut items = Vec::new();
                for j in 0..m {
                    let entry = slot.offset + raw::BUNCH_HEADER_SIZE + raw::BUNCH_ENTRY_SIZE * j;
                    let tag: u32 = self.msg.scalar(entry)?;
                    let inner = self.msg.slot(entry + 4)?;
                    let Some(case) = u.cases.iter().find(|c| c.tag == tag as u64) else {
                        return Err(Error::new(ErrorKind::UnknownTag { tag }, entry));
                    };
                    match case.ty {
                        None => {
                            for _ in 0..inner.length {
                                items.push(Value::Variant(case.name.clone(), None));
                            }
                        }
                        Some(t) => {
                            let form = if soa && layout.as_struct(t).is_some() { ArrayForm::Soa } else { ArrayForm::Plain };
                            for v in self.array(t, form, inner)? {
                                items.push(Value::Variant(case.name.clone(), Some(Box::new(v))));
                            }
                        }
                    }
                }
                Ok(items)
            }
        }
    }

    fn soa(&mut self, elem: TypeId, slot: Slot) -> Result<Vec<Value>, Error> {
        let layout = self.layout;
        let soa = slot.soa(self.msg)?;
        let columns = layout.columns(elem);
        let mut found = Vec::with_capacity(columns.len());
        for c in columns {
            found.push(if slot.length == 0 { None } else { soa.find(c.hash)? });
        }
        match &layout.get(elem).kind {
            Kind::Union(u) => {
                let (Some(Some(tags)), Some(Some(payloads))) = (found.first(), found.get(1)) else {
                    if slot.length == 0 {
                        return Ok(Vec::new());
                    }
                    return Err(Error::new(ErrorKind::BadOffset { expected_zero: false }, slot.offset));
                };
                let mut items = Vec::with_capacity((slot.length as usize).min(1 << 16));
                for i in 0..slot.length {
                    let tag_at = tags + i * u.tag_width;
                    let tag = self.msg.uint(tag_at, u.tag_width)?;
                    items.push(self.union_parts(u, tag, tag_at, payloads + i * u.payload_size)?);
                }
                Ok(items)
            }
            Kind::Struct(s) => {
                // Decode column by column, then assemble the records.
                let mut leaves: HashMap<Vec<u32>, std::vec::IntoIter<Value>> = HashMap::new();
                for (c, off) in columns.iter().zip(&found) {
                    let (Leaf::Field(leaf_ty), Some(off)) = (c.leaf, off) else { continue };
                    let mut values = Vec::with_capacity((slot.length as usize).min(1 << 16));
                    for i in 0..slot.length {
                        let at = if c.size == 0 { 0 } else { off + i * c.size };
                        values.push(self.inline(leaf_ty, at)?);
                    }
                    leaves.insert(c.path.clone(), values.into_iter());
                }
                let mut items = Vec::with_capacity((slot.length as usize).min(1 << 16));
                for _ in 0..slot.length {
                    items.push(self.assemble(s, &mut Vec::new(), &mut leaves, slot.offset)?);
                }
                Ok(items)
            }
            _ => Ok(Vec::new()),
        }
    }

    fn assemble(
        &mut self,
        s: &StructInfo,
        path: &mut Vec<u32>,
        leaves: &mut HashMap<Vec<u32>, std::vec::IntoIter<Value>>,
        at: u32,
    ) -> Result<Value, Error> {
        let mut fields = Vec::with_capacity(s.fields.len());
        for (pos, f) in s.fields.iter().enumerate() {
            path.push(pos as u32);
            let v = match self.layout.as_struct(f.ty) {
                Some(inner) if !inner.dynamic => self.assemble(inner, path, leaves, at)?,
                _ => match leaves.get_mut(path.as_slice()).and_then(|it| it.next()) {
                    Some(v) => v,
                    // Top-level fields take their declared default; nested leaves are zero.
                    None if path.len() == 1 => default_value(self.layout, f.ty, f.default.as_ref(), at)?,
                    None => zero_value(self.layout, f.ty, at, 0)?,
                },
            };
            path.pop();
            fields.push((f.name.clone(), v));
        }
        Ok(Value::Record(fields))
    }
}

/// A decoded map entry as a (key, value) pair. `soa` assembles every entry
/// as the two-field record `{key, value}` of its entry struct, so the
/// fallbacks (an empty record) are never taken.
fn entry_pair(record: Value) -> (Value, Value) {
    let Value::Record(fields) = record else { return (record, Value::Record(Vec::new())) };
    let mut fields = fields.into_iter().map(|(_, v)| v);
    let key = fields.next().unwrap_or(Value::Record(Vec::new()));
    let value = fields.next().unwrap_or(Value::Record(Vec::new()));
    (key, value)
}

/// The value of an absent field: its default literal, or its type's zero value (FORMAT.md §7).
pub fn default_value(layout: &Layout, ty: TypeId, default: Option<&Literal>, at: u32) -> Result<Value, Error> {
    match default {
        Some(lit) => literal_value(layout, ty, lit).ok_or(Error::new(ErrorKind::NoDefault, at)),
        None => zero_value(layout, ty, at, 0),
    }
}

/// What all-zero bytes of type `ty` decode to, if that is a valid value.
pub fn zero_value(layout: &Layout, ty: TypeId, at: u32, depth: u32) -> Result<Value, Error> {
    if depth > 64 {
        return Err(Error::new(ErrorKind::DepthLimit { depth }, at));
    }
    let no_default = Error::new(ErrorKind::NoDefault, at);
    Ok(match &layout.get(ty).kind {
        Kind::Prim(p) => match p {
            Prim::U8 => Value::U8(0),
            Prim::U16 => Value::U16(0),
            Prim::U32 => Value::U32(0),
            Prim::U64 => Value::U64(0),
            Prim::I8 => Value::S8(0),
            Prim::I16 => Value::S16(0),
            Prim::I32 => Value::S32(0),
            Prim::I64 => Value::S64(0),
            Prim::F32 => Value::F32(0.0),
            Prim::F64 => Value::F64(0.0),
            Prim::Bool => Value::Bool(false),
            Prim::Char => Value::Char('\0'),
        },
        Kind::Handle { .. } => Value::U32(0),
        Kind::Enum(e) => match e.cases.iter().find(|c| c.1 == 0) {
            Some(c) => Value::Enum(c.0.clone()),
            None => return Err(no_default),
        },
        Kind::Flags(_) => Value::Flags(Vec::new()),
        Kind::Struct(s) => {
            let mut fields = Vec::with_capacity(s.fields.len());
            for f in &s.fields {
                let v = if s.dynamic {
                    match &f.default {
                        Some(lit) => literal_value(layout, f.ty, lit).ok_or(no_default)?,
                        None => zero_value(layout, f.ty, at, depth + 1)?,
                    }
                } else {
                    zero_value(layout, f.ty, at, depth + 1)?
                };
                fields.push((f.name.clone(), v));
            }
            Value::Record(fields)
        }
        Kind::Union(u) => {
            let Some(case) = u.cases.iter().find(|c| c.tag == 0) else { return Err(no_default) };
            let payload = match case.ty {
                None => None,
                Some(t) if u.dynamic && layout.out_of_line_size(t) > 0 && !layout.is_dynamic_struct(t) => {
                    return Err(no_default);
                }
                Some(t) => Some(Box::new(zero_value(layout, t, at, depth + 1)?)),
            };
            Value::Variant(case.name.clone(), payload)
        }
        Kind::String { .. } => Value::String(String::new()),
        Kind::Array { elem, .. } if layout.is_map_entry(*elem) => Value::Map(Vec::new()),
        Kind::Array { .. } => Value::List(Vec::new()),
        Kind::FixedArray { elem, len } => {
            let zero = zero_value(layout, *elem, at, depth + 1)?;
            Value::List(vec![zero; *len as usize])
        }
        Kind::Option { .. } => Value::Option(None),
        Kind::Result { ok, .. } => Value::Result(Ok(match ok {
            Some(t) => Some(Box::new(zero_value(layout, *t, at, depth + 1)?)),
            None => None,
        })),
    })
}

/// A default literal as a value of type `ty`, if it fits.
pub fn literal_value(layout: &Layout, ty: TypeId, lit: &Literal) -> Option<Value> {
    Some(match (&layout.get(ty).kind, lit) {
        (Kind::Prim(p), Literal::Int(i)) => match p {
            Prim::U8 => Value::U8(u8::try_from(*i).ok()?),
            Prim::U16 => Value::U16(u16::try_from(*i).ok()?),
            Prim::U32 => Value::U32(u32::try_from(*i).ok()?),
            Prim::U64 => Value::U64(u64::try_from(*i).ok()?),
            Prim::I8 => Value::S8(i8::try_from(*i).ok()?),
            Prim::I16 => Value::S16(i16::try_from(*i).ok()?),
            Prim::I32 => Value::S32(i32::try_from(*i).ok()?),
            Prim::I64 => Value::S64(i64::try_from(*i).ok()?),
            Prim::F32 => Value::F32(*i as f32),
            Prim::F64 => Value::F64(*i as f64),
            Prim::Bool | Prim::Char => return None,
        },
        (Kind::Prim(Prim::F32), Literal::Float(f)) => Value::F32(*f as f32),
        (Kind::Prim(Prim::F64), Literal::Float(f)) => Value::F64(*f),
        (Kind::Prim(Prim::Bool), Literal::Bool(b)) => Value::Bool(*b),
        (Kind::Prim(Prim::Char), Literal::Char(c)) => Value::Char(*c),
        (Kind::Handle { .. }, Literal::Int(i)) => Value::U32(u32::try_from(*i).ok()?),
        (Kind::String { .. }, Literal::Str(s)) => Value::String(s.clone()),
        (Kind::Enum(e), Literal::Name(n)) => Value::Enum(e.cases.iter().find(|c| c.0 == n.name)?.0.clone()),
        (Kind::Flags(f), Literal::Name(n)) => Value::Flags(vec![f.flags.iter().find(|x| **x == n.name)?.clone()]),
        (Kind::Union(u), Literal::Name(n)) => {
            let case = u.cases.iter().find(|c| c.name == n.name && c.ty.is_none())?;
            Value::Variant(case.name.clone(), None)
        }
        _ => return None,
    })
}

/// Encodes the argument message of `interface.function` (FORMAT.md §10).
pub fn encode_params(layout: &Layout, interface: &str, function: &str, args: &Value) -> Result<AlignedBuf, EncodeError> {
    match layout.function(interface, function) {
        Some(f) => encode(layout, f.params, args),
        None => Err(EncodeError { path: String::new(), message: format!("no function `{interface}.{function}`") }),
    }
}
