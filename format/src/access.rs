//! Schema-driven zero-copy access to a message, checked or unchecked (rkyv's
//! pairing): [`access`] validates the whole message first; the unsafe
//! [`access_unchecked`] trusts the caller that it was validated.
//!
//! Owns: [`View`], a position in a message with its type, navigable by field
//! name and index. Every read stays bounds-checked either way; a trusted view
//! skips re-checking values — `char` and `bool` bit patterns and UTF-8 — which
//! is what makes `access_unchecked` unsafe.
//!
//! Does not own: the byte rules (`view`, `validate`) or whole values (`value`).

use std::string::String;

use karmem_idl::ast::Prim;

use crate::error::{Error, ErrorKind, Result};
use crate::layout::{ArrayForm, Kind, Layout, Leaf, TypeId};
use crate::raw::{self, Scalar};
use crate::validate::{Limits, validate};
use crate::value::{self, Value};
use crate::view::{Column, Message};

/// A value of type `ty` somewhere in a message.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    layout: &'a Layout,
    msg: Message<'a>,
    ty: TypeId,
    place: Place<'a>,
    trusted: bool,
}

#[derive(Debug, Clone, Copy)]
enum Place<'a> {
    /// The value's inline bytes start here (for a dynamic struct: its body).
    At(u32),
    /// A field the writer did not write: it reads as this default (or zero).
    Absent(Option<&'a karmem_idl::ast::Literal>),
}

/// Validates `bytes` as a message whose root is `ty`, then views its root.
pub fn access<'a>(bytes: &'a [u8], layout: &'a Layout, ty: TypeId, limits: &Limits) -> Result<View<'a>> {
    validate(bytes, layout, ty, limits)?;
    let msg = Message::new(bytes)?;
    Ok(View { layout, msg, ty, place: Place::At(msg.root()), trusted: true })
}

/// Views the root of `bytes` without validating it.
///
/// # Safety
/// `bytes` must have passed [`validate`] for `layout` and `ty` (with any
/// limits). Reads stay bounds-checked, but `char`, `bool` and strings are
/// produced without re-checking their bit patterns; on bytes that were not
/// validated that is undefined behaviour.
pub unsafe fn access_unchecked<'a>(bytes: &'a [u8], layout: &'a Layout, ty: TypeId) -> Result<View<'a>> {
    let msg = Message::new(bytes)?;
    Ok(View { layout, msg, ty, place: Place::At(msg.root()), trusted: true })
}

impl<'a> View<'a> {
    /// An untrusted view: every value is re-checked as it is read.
    pub fn checked(bytes: &'a [u8], layout: &'a Layout, ty: TypeId) -> Result<View<'a>> {
        let msg = Message::new(bytes)?;
        Ok(View { layout, msg, ty, place: Place::At(msg.root()), trusted: false })
    }

    pub fn ty(&self) -> TypeId {
        self.ty
    }

    /// Whether this is a field the writer did not write.
    pub fn is_absent(&self) -> bool {
        matches!(self.place, Place::Absent(_))
    }

    fn with(&self, ty: TypeId, place: Place<'a>) -> View<'a> {
        View { ty, place, ..*self }
    }

    fn at(&self) -> Option<u32> {
        match self.place {
            Place::At(at) => Some(at),
            Place::Absent(_) => None,
        }
    }

    fn mismatch(&self) -> Error {
        Error::new(ErrorKind::WrongElementSize { expected: 0, found: self.layout.get(self.ty).size }, self.at().unwrap_or(0))
    }

    /// Field `name` of a struct (dereferencing a dynamic struct reference).
    pub fn field(&self, name: &str) -> Result<Option<View<'a>>> {
        let Some(s) = self.layout.as_struct(self.ty) else { return Ok(None) };
        let Some(f) = s.fields.iter().find(|f| f.name == name) else { return Ok(None) };
        let Some(at) = self.at() else {
            return Ok(Some(self.with(f.ty, Place::Absent(f.default.as_ref()))));
        };
        if !s.dynamic {
            return Ok(Some(self.with(f.ty, self.deref(f.ty, at + f.offset)?)));
        }
        let body = self.msg.dynamic_struct(at)?;
        let size = self.layout.get(f.ty).size;
        Ok(Some(match body.field(f.offset, size) {
            Some(abs) => self.with(f.ty, self.deref(f.ty, abs)?),
            None => self.with(f.ty, Place::Absent(f.default.as_ref())),
        }))
    }

    /// Where the value of `ty` whose inline bytes are at `abs` lives.
    fn deref(&self, ty: TypeId, abs: u32) -> Result<Place<'a>> {
        if self.layout.is_dynamic_struct(ty) {
            Ok(Place::At(self.msg.scalar::<u32>(abs)?))
        } else {
            Ok(Place::At(abs))
        }
    }

    /// Number of elements of an array, fixed array or string (in code units).
    pub fn len(&self) -> Result<u32> {
        let Some(at) = self.at() else { return Ok(0) };
        match &self.layout.get(self.ty).kind {
            Kind::Array { .. } | Kind::String { .. } => Ok(self.msg.slot(at)?.length),
            Kind::FixedArray { len, .. } => Ok(*len),
            _ => Err(self.mismatch()),
        }
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Element `i` of a fixed array or a plain (AoS) array; `None` past the end.
    pub fn get(&self, i: u32) -> Result<Option<View<'a>>> {
        let Some(at) = self.at() else { return Ok(None) };
        let (elem, base, len) = match &self.layout.get(self.ty).kind {
            Kind::FixedArray { elem, len } => (*elem, at, *len),
            Kind::Array { elem, form: ArrayForm::Plain } => {
                let slot = self.msg.slot(at)?;
                (*elem, slot.offset, slot.length)
            }
            _ => return Err(self.mismatch()),
        };
        if i >= len {
            return Ok(None);
        }
        let size = self.layout.get(elem).size;
        let abs = raw::offset_add(base, i as u64 * size as u64)?;
        Ok(Some(self.with(elem, self.deref(elem, abs)?)))
    }

    /// A top-level scalar field of an SoA array of structs, as a column
    /// (`&[T]`-able); `None` if the writer did not write that column.
    pub fn column<T: Scalar + raw::sealed::Pod>(&self, field: &str) -> Result<Option<Column<'a, T>>> {
        let Some(at) = self.at() else { return Ok(None) };
        let Kind::Array { elem, form: ArrayForm::Soa } = &self.layout.get(self.ty).kind else {
            return Err(self.mismatch());
        };
        let Some(s) = self.layout.as_struct(*elem) else { return Err(self.mismatch()) };
        let Some(pos) = s.fields.iter().position(|f| f.name == field) else { return Ok(None) };
        let Some(c) = self.layout.columns(*elem).iter().find(|c| c.path == [pos as u32]) else { return Ok(None) };
        if !matches!(c.leaf, Leaf::Field(_)) || c.size != T::SIZE {
            return Err(Error::new(ErrorKind::WrongElementSize { expected: T::SIZE, found: c.size }, at));
        }
        let slot = self.msg.slot(at)?;
        slot.soa(self.msg)?.column::<T>(c.hash)
    }

    /// A number (`u8`…`f64`, handles as `u32`, enums as their integer type).
    pub fn scalar<T: Scalar>(&self) -> Result<T> {
        let size = self.layout.get(self.ty).size;
        if size != T::SIZE {
            return Err(Error::new(ErrorKind::WrongElementSize { expected: T::SIZE, found: size }, self.at().unwrap_or(0)));
        }
        match self.place {
            Place::At(at) => self.msg.scalar(at),
            Place::Absent(_) => {
                // Numbers' defaults: encode the default value and read it back.
                let v = self.to_value()?;
                let mut bytes = [0u8; 8];
                match v {
                    Value::U8(x) => bytes[0] = x,
                    Value::S8(x) => bytes[0] = x as u8,
                    Value::U16(x) => bytes[..2].copy_from_slice(&x.to_le_bytes()),
                    Value::S16(x) => bytes[..2].copy_from_slice(&x.to_le_bytes()),
                    Value::U32(x) => bytes[..4].copy_from_slice(&x.to_le_bytes()),
                    Value::S32(x) => bytes[..4].copy_from_slice(&x.to_le_bytes()),
                    Value::F32(x) => bytes[..4].copy_from_slice(&x.to_le_bytes()),
                    Value::U64(x) => bytes.copy_from_slice(&x.to_le_bytes()),
                    Value::S64(x) => bytes.copy_from_slice(&x.to_le_bytes()),
                    Value::F64(x) => bytes.copy_from_slice(&x.to_le_bytes()),
                    _ => {}
                }
                Ok(T::from_le_slice(&bytes))
            }
        }
    }

    pub fn bool(&self) -> Result<bool> {
        match (self.place, self.trusted) {
            (Place::At(at), true) => Ok(self.msg.scalar::<u8>(at)? != 0),
            (Place::At(at), false) => self.msg.bool(at),
            (Place::Absent(_), _) => Ok(matches!(self.to_value()?, Value::Bool(true))),
        }
    }

    pub fn char(&self) -> Result<char> {
        match (self.place, self.trusted) {
            (Place::At(at), true) => {
                let v: u32 = self.msg.scalar(at)?;
                // SAFETY: a trusted view comes from `access` (validated, so every
                // `char` in the message is a scalar value) or from
                // `access_unchecked`, whose caller promises the same.
                Ok(unsafe { char::from_u32_unchecked(v) })
            }
            (Place::At(at), false) => self.msg.char(at),
            (Place::Absent(_), _) => match self.to_value()? {
                Value::Char(c) => Ok(c),
                _ => Ok('\0'),
            },
        }
    }

    /// A `[]u8 #string` without copying.
    pub fn str(&self) -> Result<&'a str> {
        let Some(at) = self.at() else { return Ok("") };
        if !matches!(self.layout.get(self.ty).kind, Kind::String { utf16: false }) {
            return Err(self.mismatch());
        }
        let slot = self.msg.slot(at)?;
        let bytes = self.msg.slice(slot.offset, slot.length as u64)?;
        if self.trusted {
            // SAFETY: validated messages hold UTF-8 in every `[]u8 #string`
            // (FORMAT.md §9 rule 4); `access_unchecked`'s caller promises the
            // message was validated.
            Ok(unsafe { core::str::from_utf8_unchecked(bytes) })
        } else {
            core::str::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidUtf8, slot.offset))
        }
    }

    /// The whole value here, decoded.
    pub fn to_value(&self) -> Result<Value> {
        match self.place {
            Place::Absent(default) => value::default_value(self.layout, self.ty, default, 0),
            Place::At(at) => value::decode_at(self.layout, self.ty, self.msg, at),
        }
    }

    /// The value here as text (WAVE).
    pub fn to_wave(&self) -> Result<String> {
        Ok(std::format!("{}", self.to_value()?))
    }

    /// Whether the value is of a primitive type `p`.
    pub fn is_prim(&self, p: Prim) -> bool {
        matches!(self.layout.get(self.ty).kind, Kind::Prim(q) if q == p)
    }
}
