//! The canonical-ABI side of a Karmem type: its component-model shape and
//! the canonical options the transcoders honour.
//!
//! Owns: [`abi_type`], which gives a laid-out Karmem type
//! (`karmem_format::layout`) its canonical ABI shape ([`AbiType`], whose
//! size, alignment and flattening `karmem-wit-import` implements from the
//! spec), following the same mapping as `AbiType::from_idl`: `#string`
//! arrays are `string`, inline structs tuples, dynamic structs records,
//! unions variants whose discriminant is the case position, enums and flags
//! by declaration order, handles `own`/`borrow`. A `map<K, V>` is laid out as
//! the SoA array of its inline entry struct (FORMAT.md §6.5), so it comes out
//! as `list<tuple<K, V>>` — exactly how the canonical ABI passes a map — and
//! the transcoders move maps with the code of lists of tuples. Also
//! [`StringEncoding`], the `string-encoding` canonical option.
//!
//! Does not own: Karmem's byte layout (`karmem-format`) or the spec's
//! size/alignment/flattening rules (`karmem_wit_import::abi`).

use anyhow::{Result, bail};
use karmem_format::layout::{Kind, Layout, TypeId};
use karmem_idl::ast::Prim;
pub use karmem_wit_import::{AbiType, FlatType};

/// Nesting deeper than this has no canonical shape (Karmem allows recursion
/// through arrays and dynamic structs; the component model does not).
const MAX_DEPTH: u32 = 100;

/// The canonical ABI `string-encoding` option of the guest's lifts and lowers
/// (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#canonopt-validation>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StringEncoding {
    /// `string-encoding=utf8`: `(ptr, byte length)`.
    #[default]
    Utf8,
    /// `string-encoding=utf16`: `(ptr, code unit count)`, little-endian units.
    Utf16,
    /// `string-encoding=latin1+utf16`: `(ptr, tagged length)`; bit 31 of the
    /// length set means UTF-16 code units, clear means Latin-1 bytes.
    Latin1Utf16,
}

/// Bit 31 of a `latin1+utf16` string length: the string is UTF-16.
pub const UTF16_TAG: u32 = 1 << 31;

/// The canonical shape of `id`.
pub fn abi_type(layout: &Layout, id: TypeId) -> Result<AbiType> {
    shape(layout, id, 0)
}

fn shape(layout: &Layout, id: TypeId, depth: u32) -> Result<AbiType> {
    if depth > MAX_DEPTH {
        bail!("type nesting deeper than {MAX_DEPTH} (a recursive type?) has no canonical ABI shape");
    }
    let inner = |t: TypeId| shape(layout, t, depth + 1);
    Ok(match &layout.get(id).kind {
        Kind::Prim(p) => prim(*p),
        Kind::Handle { resource, borrow: false } => AbiType::Own(resource.clone()),
        Kind::Handle { resource, borrow: true } => AbiType::Borrow(resource.clone()),
        Kind::Enum(e) => AbiType::Enum(e.cases.iter().map(|(name, _)| name.clone()).collect()),
        Kind::Flags(f) => AbiType::Flags(f.flags.clone()),
        Kind::Struct(s) if s.dynamic => {
            AbiType::Record(s.fields.iter().map(|f| Ok((f.name.clone(), inner(f.ty)?))).collect::<Result<_>>()?)
        }
        Kind::Struct(s) => AbiType::Tuple(s.fields.iter().map(|f| inner(f.ty)).collect::<Result<_>>()?),
        Kind::Union(u) => AbiType::Variant(
            u.cases.iter().map(|c| Ok((c.name.clone(), c.ty.map(inner).transpose()?))).collect::<Result<_>>()?,
        ),
        Kind::Array { elem, .. } => AbiType::List(Box::new(inner(*elem)?)),
        Kind::String { .. } => AbiType::String,
        Kind::FixedArray { elem, len } => AbiType::FixedList(Box::new(inner(*elem)?), *len),
        Kind::Option { some, .. } => AbiType::Option(Box::new(inner(*some)?)),
        Kind::Result { ok, err, .. } => AbiType::Result {
            ok: ok.map(inner).transpose()?.map(Box::new),
            err: err.map(inner).transpose()?.map(Box::new),
        },
    })
}

fn prim(p: Prim) -> AbiType {
    match p {
        Prim::U8 => AbiType::U8,
        Prim::U16 => AbiType::U16,
        Prim::U32 => AbiType::U32,
        Prim::U64 => AbiType::U64,
        Prim::I8 => AbiType::S8,
        Prim::I16 => AbiType::S16,
        Prim::I32 => AbiType::S32,
        Prim::I64 => AbiType::S64,
        Prim::F32 => AbiType::F32,
        Prim::F64 => AbiType::F64,
        Prim::Bool => AbiType::Bool,
        Prim::Char => AbiType::Char,
    }
}

/// Byte offsets of the fields of a record or tuple, or of the elements of a
/// fixed list (empty for other shapes).
pub fn member_offsets(ty: &AbiType) -> Vec<u32> {
    match ty {
        AbiType::FixedList(elem, n) => (0..*n).map(|i| i.saturating_mul(elem.size())).collect(),
        _ => ty.field_offsets(),
    }
}
