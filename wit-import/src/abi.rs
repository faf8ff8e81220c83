//! KarmemIDL types back to component-model types, with their canonical ABI
//! shape: flat core types, size and alignment.
//!
//! Owns: [`AbiType`], the component-model type an IDL type stands for, built
//! from a resolved schema ([`AbiType::from_idl`]) or straight from WIT
//! ([`AbiType::from_wit`]); and the canonical ABI's `alignment`, `elem_size`
//! and `flatten` over it, written from the spec
//! (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md>,
//! sections "Alignment", "Element Size", "Flattening"). The adapters transcode
//! between this shape and the Karmem format; the structure test checks that a
//! WIT type survives WIT -> IDL -> `AbiType` whole.
//!
//! The inverse of the mapping in `convert`: `[]u8 #string` (and `[]u16 #string`)
//! is `string`; inline structs are tuples, dynamic structs records; unions are
//! variants whose case index is the case's position; enums and flags count
//! their cases in declaration order; a bare resource name is `own`. A
//! `map<K, V>` is `List(Tuple([K, V]))` from either side: the canonical ABI
//! passes a map exactly as that list (flat `(ptr, len)`, elements laid out
//! as the tuple), so it needs no shape of its own here.
//!
//! Does not own: Karmem's own layout (`karmem-format`).

use anyhow::{Context as _, Result, anyhow, bail};
use karmem_idl::Schema;
use karmem_idl::ast::{AttrKind, Evolution, HandleKind, Item, Prim, TypeKind, TypeRef};
use wit_parser::{Handle, Resolve, Type, TypeDefKind, TypeId};

use crate::arena;
use crate::names::ident;

/// A component-model value type, as the canonical ABI sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AbiType {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    List(Box<AbiType>),
    FixedList(Box<AbiType>, u32),
    /// Fields with their (IDL) names.
    Record(Vec<(String, AbiType)>),
    Tuple(Vec<AbiType>),
    /// Cases with their (IDL) names; the discriminant is the position.
    Variant(Vec<(String, Option<AbiType>)>),
    Enum(Vec<String>),
    Flags(Vec<String>),
    Option(Box<AbiType>),
    Result { ok: Option<Box<AbiType>>, err: Option<Box<AbiType>> },
    /// An owned handle to the named resource.
    Own(String),
    /// A borrowed handle to the named resource.
    Borrow(String),
}

/// A core wasm value type in a flattened signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlatType {
    I32,
    I64,
    F32,
    F64,
}

/// Nesting deeper than this is refused (the IDL allows recursive dynamic
/// structs; the component model has no recursive types).
const MAX_DEPTH: usize = 100;

impl AbiType {
    /// The component-model type a KarmemIDL type stands for.
    pub fn from_idl(schema: &Schema, ty: &TypeRef) -> Result<AbiType> {
        from_idl(schema, ty, 0)
    }

    /// The component-model type of a WIT type, with names as `convert` spells
    /// them; `resource_name` gives the IDL name of a resource.
    pub fn from_wit(resolve: &Resolve, ty: &Type, resource_name: &dyn Fn(TypeId) -> String) -> Result<AbiType> {
        from_wit(resolve, ty, resource_name, 0)
    }

    /// Canonical ABI `alignment`, in bytes.
    pub fn align(&self) -> u32 {
        match self {
            AbiType::Bool | AbiType::S8 | AbiType::U8 => 1,
            AbiType::S16 | AbiType::U16 => 2,
            AbiType::S32 | AbiType::U32 | AbiType::F32 | AbiType::Char => 4,
            AbiType::S64 | AbiType::U64 | AbiType::F64 => 8,
            AbiType::String | AbiType::List(_) => 4,
            AbiType::FixedList(elem, _) => elem.align(),
            AbiType::Record(fields) => fields.iter().map(|(_, t)| t.align()).max().unwrap_or(1),
            AbiType::Tuple(types) => types.iter().map(AbiType::align).max().unwrap_or(1),
            AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. } => {
                let (disc, cases) = self.variant_parts();
                cases.iter().flatten().map(|t| t.align()).fold(disc.size(), u32::max)
            }
            AbiType::Flags(names) => flags_size_align(names.len()).1,
            AbiType::Own(_) | AbiType::Borrow(_) => 4,
        }
    }

    /// Canonical ABI `elem_size`, in bytes.
    pub fn size(&self) -> u32 {
        match self {
            AbiType::Bool | AbiType::S8 | AbiType::U8 => 1,
            AbiType::S16 | AbiType::U16 => 2,
            AbiType::S32 | AbiType::U32 | AbiType::F32 | AbiType::Char => 4,
            AbiType::S64 | AbiType::U64 | AbiType::F64 => 8,
            AbiType::String | AbiType::List(_) => 8,
            AbiType::FixedList(elem, n) => elem.size().saturating_mul(*n),
            AbiType::Record(fields) => record_size(fields.iter().map(|(_, t)| t)),
            AbiType::Tuple(types) => record_size(types.iter()),
            AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. } => {
                let (disc, cases) = self.variant_parts();
                let case_align = cases.iter().flatten().map(|t| t.align()).max().unwrap_or(1);
                let case_size = cases.iter().flatten().map(|t| t.size()).max().unwrap_or(0);
                let size = align_to(disc.size(), case_align).saturating_add(case_size);
                align_to(size, self.align())
            }
            AbiType::Flags(names) => flags_size_align(names.len()).0,
            AbiType::Own(_) | AbiType::Borrow(_) => 4,
        }
    }

    /// Byte offsets of a record's or tuple's fields (empty for other types).
    pub fn field_offsets(&self) -> Vec<u32> {
        let types: Vec<&AbiType> = match self {
            AbiType::Record(fields) => fields.iter().map(|(_, t)| t).collect(),
            AbiType::Tuple(types) => types.iter().collect(),
            _ => return Vec::new(),
        };
        let mut offset = 0u32;
        types
            .into_iter()
            .map(|t| {
                let at = align_to(offset, t.align());
                offset = at.saturating_add(t.size());
                at
            })
            .collect()
    }

    /// The byte offset of a variant-like type's payload (0 for other types).
    pub fn payload_offset(&self) -> u32 {
        match self {
            AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. } => {
                let (disc, cases) = self.variant_parts();
                let case_align = cases.iter().flatten().map(|t| t.align()).max().unwrap_or(1);
                align_to(disc.size(), case_align)
            }
            _ => 0,
        }
    }

    /// The discriminant of a variant, enum, option or result.
    pub fn discriminant(&self) -> Option<Discriminant> {
        match self {
            AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. } => {
                Some(self.variant_parts().0)
            }
            _ => None,
        }
    }

    /// Canonical ABI `flatten_type`: the core values this type lowers to.
    /// A fixed-size list of fixed-size lists can stand for 2^32 of them; ask
    /// [`AbiType::flat_len_capped`] first when only the count matters.
    pub fn flatten(&self) -> Vec<FlatType> {
        let mut out = Vec::new();
        self.push_flat(&mut out);
        out
    }

    /// `flatten().len()`, counted without building the list and saturating
    /// at `cap + 1`: enough to compare with `MAX_FLAT_PARAMS` or
    /// `MAX_FLAT_RESULTS` in time and memory that do not grow with the count.
    pub fn flat_len_capped(&self, cap: usize) -> usize {
        let over = cap.saturating_add(1);
        let count = match self {
            AbiType::String | AbiType::List(_) => 2,
            AbiType::FixedList(elem, n) => elem.flat_len_capped(cap).saturating_mul(*n as usize),
            AbiType::Record(fields) => sum_capped(fields.iter().map(|(_, t)| t), cap),
            AbiType::Tuple(types) => sum_capped(types.iter(), cap),
            AbiType::Flags(names) => flags_i32_count(names.len()),
            AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. } => {
                let (_, cases) = self.variant_parts();
                let payload = cases.iter().flatten().map(|t| t.flat_len_capped(cap)).max().unwrap_or(0);
                payload.saturating_add(1)
            }
            _ => 1,
        };
        count.min(over)
    }

    fn push_flat(&self, out: &mut Vec<FlatType>) {
        match self {
            AbiType::Bool
            | AbiType::S8
            | AbiType::U8
            | AbiType::S16
            | AbiType::U16
            | AbiType::S32
            | AbiType::U32
            | AbiType::Char
            | AbiType::Own(_)
            | AbiType::Borrow(_) => out.push(FlatType::I32),
            AbiType::S64 | AbiType::U64 => out.push(FlatType::I64),
            AbiType::F32 => out.push(FlatType::F32),
            AbiType::F64 => out.push(FlatType::F64),
            AbiType::String | AbiType::List(_) => out.extend([FlatType::I32, FlatType::I32]),
            AbiType::FixedList(elem, n) => {
                let one = elem.flatten();
                for _ in 0..*n {
                    out.extend_from_slice(&one);
                }
            }
            AbiType::Record(fields) => fields.iter().for_each(|(_, t)| t.push_flat(out)),
            AbiType::Tuple(types) => types.iter().for_each(|t| t.push_flat(out)),
            AbiType::Flags(names) => {
                out.extend(std::iter::repeat_n(FlatType::I32, flags_i32_count(names.len())));
            }
            AbiType::Variant(_) | AbiType::Enum(_) | AbiType::Option(_) | AbiType::Result { .. } => {
                let (_, cases) = self.variant_parts();
                let mut joined: Vec<FlatType> = Vec::new();
                for case in cases.iter().flatten() {
                    for (i, flat) in case.flatten().into_iter().enumerate() {
                        match joined.get_mut(i) {
                            Some(slot) => *slot = join(*slot, flat),
                            None => joined.push(flat),
                        }
                    }
                }
                out.push(FlatType::I32);
                out.extend(joined);
            }
        }
    }

    /// The discriminant and the case payloads of a variant-like type.
    fn variant_parts(&self) -> (Discriminant, Vec<Option<&AbiType>>) {
        match self {
            AbiType::Variant(cases) => {
                (Discriminant::for_cases(cases.len()), cases.iter().map(|(_, t)| t.as_ref()).collect())
            }
            AbiType::Enum(names) => (Discriminant::for_cases(names.len()), Vec::new()),
            AbiType::Option(t) => (Discriminant::U8, vec![None, Some(t)]),
            AbiType::Result { ok, err } => (Discriminant::U8, vec![ok.as_deref(), err.as_deref()]),
            _ => (Discriminant::U8, Vec::new()),
        }
    }
}

/// The integer type a variant's case index is stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Discriminant {
    U8,
    U16,
    U32,
}

impl Discriminant {
    /// Canonical ABI `discriminant_type`.
    pub fn for_cases(cases: usize) -> Discriminant {
        match cases.saturating_sub(1) {
            n if n <= u8::MAX as usize => Discriminant::U8,
            n if n <= u16::MAX as usize => Discriminant::U16,
            _ => Discriminant::U32,
        }
    }

    pub fn size(self) -> u32 {
        match self {
            Discriminant::U8 => 1,
            Discriminant::U16 => 2,
            Discriminant::U32 => 4,
        }
    }
}

fn align_to(value: u32, align: u32) -> u32 {
    let align = align.max(1);
    value.div_ceil(align).saturating_mul(align)
}

fn record_size<'a>(types: impl Iterator<Item = &'a AbiType> + Clone) -> u32 {
    let align = types.clone().map(AbiType::align).max().unwrap_or(1);
    let mut size = 0u32;
    for t in types {
        size = align_to(size, t.align()).saturating_add(t.size());
    }
    align_to(size, align)
}

/// (size, align) of a flags value with `n` flags. Zero flags follow wit-parser
/// (size 0, align 4); WIT itself does not allow them.
fn flags_size_align(n: usize) -> (u32, u32) {
    match n {
        0 => (0, 4),
        1..=8 => (1, 1),
        9..=16 => (2, 2),
        _ => (u32::try_from(flags_i32_count(n)).unwrap_or(u32::MAX).saturating_mul(4), 4),
    }
}

/// The flat lengths of `types` added up, stopping once past `cap`.
fn sum_capped<'a>(types: impl Iterator<Item = &'a AbiType>, cap: usize) -> usize {
    let mut sum = 0usize;
    for t in types {
        sum = sum.saturating_add(t.flat_len_capped(cap));
        if sum > cap {
            break;
        }
    }
    sum
}

fn flags_i32_count(n: usize) -> usize {
    n.div_ceil(32)
}

/// Canonical ABI `join`.
fn join(a: FlatType, b: FlatType) -> FlatType {
    match (a, b) {
        _ if a == b => a,
        (FlatType::I32, FlatType::F32) | (FlatType::F32, FlatType::I32) => FlatType::I32,
        _ => FlatType::I64,
    }
}

fn from_idl(schema: &Schema, ty: &TypeRef, depth: usize) -> Result<AbiType> {
    if depth > MAX_DEPTH {
        bail!("type nesting deeper than {MAX_DEPTH} (a recursive struct?) has no canonical ABI shape");
    }
    let inner = |t: &TypeRef| from_idl(schema, t, depth + 1);
    Ok(match &ty.kind {
        TypeKind::Prim(p) => match p {
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
        },
        TypeKind::Array(elem) => {
            let text = matches!(elem.kind, TypeKind::Prim(Prim::U8 | Prim::U16));
            if text && ty.has_attr(AttrKind::String) {
                AbiType::String
            } else {
                AbiType::List(Box::new(inner(elem)?))
            }
        }
        TypeKind::FixedArray(elem, n) => AbiType::FixedList(Box::new(inner(elem)?), *n),
        TypeKind::Map { key, value } => map_shape(inner(key)?, inner(value)?),
        TypeKind::Option(t) => AbiType::Option(Box::new(inner(t)?)),
        TypeKind::Result { ok, err } => AbiType::Result {
            ok: ok.as_deref().map(inner).transpose()?.map(Box::new),
            err: err.as_deref().map(inner).transpose()?.map(Box::new),
        },
        TypeKind::Handle(kind, name) => {
            match schema.get(&name.name) {
                Some(Item::Resource(_)) => {}
                _ => bail!("`{}` is not a resource", name.name),
            }
            match kind {
                HandleKind::Own => AbiType::Own(name.name.clone()),
                HandleKind::Borrow => AbiType::Borrow(name.name.clone()),
            }
        }
        TypeKind::Named(name) => {
            let item = schema.get(&name.name).ok_or_else(|| anyhow!("unknown type `{}`", name.name))?;
            match item {
                Item::Struct(s) => {
                    let fields: Result<Vec<(String, AbiType)>> =
                        s.fields.iter().map(|f| Ok((f.name.name.clone(), inner(&f.ty)?))).collect();
                    match s.evolution {
                        Evolution::Inline => AbiType::Tuple(fields?.into_iter().map(|(_, t)| t).collect()),
                        Evolution::Dynamic => AbiType::Record(fields?),
                    }
                }
                Item::Union(u) => AbiType::Variant(
                    u.cases
                        .iter()
                        .map(|c| Ok((c.name.name.clone(), c.ty.as_ref().map(inner).transpose()?)))
                        .collect::<Result<_>>()?,
                ),
                Item::Enum(e) => AbiType::Enum(e.cases.iter().map(|c| c.name.name.clone()).collect()),
                Item::Flags(f) => AbiType::Flags(f.flags.iter().map(|c| c.name.name.clone()).collect()),
                Item::Resource(r) => AbiType::Own(r.name.name.clone()),
                Item::Interface(i) => bail!("interface `{}` is not a value type", i.name.name),
            }
        }
    })
}

fn from_wit(resolve: &Resolve, ty: &Type, resource_name: &dyn Fn(TypeId) -> String, depth: usize) -> Result<AbiType> {
    if depth > MAX_DEPTH {
        bail!("WIT type nesting deeper than {MAX_DEPTH}");
    }
    let inner = |t: &Type| from_wit(resolve, t, resource_name, depth + 1);
    Ok(match ty {
        Type::Bool => AbiType::Bool,
        Type::U8 => AbiType::U8,
        Type::U16 => AbiType::U16,
        Type::U32 => AbiType::U32,
        Type::U64 => AbiType::U64,
        Type::S8 => AbiType::S8,
        Type::S16 => AbiType::S16,
        Type::S32 => AbiType::S32,
        Type::S64 => AbiType::S64,
        Type::F32 => AbiType::F32,
        Type::F64 => AbiType::F64,
        Type::Char => AbiType::Char,
        Type::String => AbiType::String,
        Type::ErrorContext => bail!("`error-context` has no shape here yet"),
        // `get`, not `arena`: the type comes from `AbiType::from_wit`'s caller.
        Type::Id(id) => match &resolve.types.get(*id).context("the type is not a type of this WIT `Resolve`")?.kind {
            TypeDefKind::Type(t) => inner(t)?,
            TypeDefKind::Record(r) => {
                AbiType::Record(r.fields.iter().map(|f| Ok((ident(&f.name), inner(&f.ty)?))).collect::<Result<_>>()?)
            }
            TypeDefKind::Tuple(t) => AbiType::Tuple(t.types.iter().map(inner).collect::<Result<_>>()?),
            TypeDefKind::Variant(v) => AbiType::Variant(
                v.cases
                    .iter()
                    .map(|c| Ok((ident(&c.name), c.ty.as_ref().map(inner).transpose()?)))
                    .collect::<Result<_>>()?,
            ),
            TypeDefKind::Enum(e) => AbiType::Enum(e.cases.iter().map(|c| ident(&c.name)).collect()),
            TypeDefKind::Flags(f) => AbiType::Flags(f.flags.iter().map(|c| ident(&c.name)).collect()),
            TypeDefKind::Option(t) => AbiType::Option(Box::new(inner(t)?)),
            TypeDefKind::Result(r) => AbiType::Result {
                ok: r.ok.as_ref().map(inner).transpose()?.map(Box::new),
                err: r.err.as_ref().map(inner).transpose()?.map(Box::new),
            },
            TypeDefKind::List(t) => AbiType::List(Box::new(inner(t)?)),
            TypeDefKind::FixedLengthList(t, n) => AbiType::FixedList(Box::new(inner(t)?), *n),
            TypeDefKind::Map(k, v) => map_shape(inner(k)?, inner(v)?),
            TypeDefKind::Resource => AbiType::Own(resource_name(root_resource(resolve, *id))),
            TypeDefKind::Handle(Handle::Own(r)) => AbiType::Own(resource_name(root_resource(resolve, *r))),
            TypeDefKind::Handle(Handle::Borrow(r)) => AbiType::Borrow(resource_name(root_resource(resolve, *r))),
            other => bail!("`{}` has no shape here yet", other.as_str()),
        },
    })
}

/// `map<K, V>` as the canonical ABI passes it: `list<tuple<K, V>>`.
fn map_shape(key: AbiType, value: AbiType) -> AbiType {
    AbiType::List(Box::new(AbiType::Tuple(vec![key, value])))
}

/// Follows `use` aliases to the resource itself (at most as many steps as there are types).
fn root_resource(resolve: &Resolve, mut id: TypeId) -> TypeId {
    for _ in 0..resolve.types.len() {
        match &arena::type_def(resolve, id).kind {
            TypeDefKind::Type(Type::Id(next)) => id = *next,
            _ => break,
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_layout_follows_the_spec() {
        // result<u64, u8>: u8 discriminant, payload at 8, size 16, flat [i32, i64].
        let t = AbiType::Result { ok: Some(Box::new(AbiType::U64)), err: Some(Box::new(AbiType::U8)) };
        assert_eq!((t.size(), t.align(), t.payload_offset()), (16, 8, 8));
        assert_eq!(t.flatten(), [FlatType::I32, FlatType::I64]);
        // option<f32> joined with nothing stays f32.
        let o = AbiType::Option(Box::new(AbiType::F32));
        assert_eq!(o.flatten(), [FlatType::I32, FlatType::F32]);
        // variant { a(f32), b(u32) } joins f32 and i32 to i32.
        let v = AbiType::Variant(vec![("a".into(), Some(AbiType::F32)), ("b".into(), Some(AbiType::U32))]);
        assert_eq!(v.flatten(), [FlatType::I32, FlatType::I32]);
    }

    #[test]
    fn capped_flat_length_agrees_with_flatten() {
        let record = AbiType::Record(vec![("a".into(), AbiType::U8), ("b".into(), AbiType::String)]);
        let types = [
            AbiType::U64,
            AbiType::String,
            AbiType::FixedList(Box::new(record.clone()), 5),
            AbiType::Tuple(vec![record.clone(), AbiType::F32]),
            AbiType::Variant(vec![("x".into(), Some(record.clone())), ("y".into(), None)]),
            AbiType::Result { ok: Some(Box::new(AbiType::F64)), err: None },
            AbiType::Enum(vec!["a".into(), "b".into()]),
            AbiType::Flags((0..40).map(|i| format!("f{i}")).collect()),
        ];
        for t in &types {
            assert_eq!(t.flat_len_capped(usize::MAX - 1), t.flatten().len(), "{t:?}");
            assert_eq!(t.flat_len_capped(2), t.flatten().len().min(3), "{t:?}");
        }
        // 2^32 flat values, counted without building them.
        let inner = AbiType::FixedList(Box::new(AbiType::U8), 65_536);
        let huge = AbiType::FixedList(Box::new(inner), 65_536);
        assert_eq!(huge.flat_len_capped(16), 17);
    }

    #[test]
    fn flags_sizes() {
        let flags = |n: usize| AbiType::Flags((0..n).map(|i| format!("f{i}")).collect());
        assert_eq!((flags(8).size(), flags(9).size(), flags(33).size()), (1, 2, 8));
        assert_eq!(flags(65).flatten().len(), 3);
    }
}
