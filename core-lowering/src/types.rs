//! Component-level value and function types, as far as lowering needs them.
//!
//! Owns: [`ValTy`] (a component value type with resources resolved to
//! their identity), [`FuncSig`], and canonical-ABI flattening of them
//! (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#flattening>).
//! Leaves the WIT view of types to `wit-import`.

use serde::Serialize;

use crate::graph::ResourceRef;

/// Spec: at most this many flat parameters are passed as core params.
/// <https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#flattening>
pub const MAX_FLAT_PARAMS: usize = 16;
/// Spec: at most this many flat results are returned as core results.
pub const MAX_FLAT_RESULTS: usize = 1;

/// A primitive component value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Prim {
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
}

/// A component value type, resources resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValTy {
    Prim(Prim),
    Record(Vec<ValTy>),
    Variant(Vec<Option<ValTy>>),
    List(Box<ValTy>),
    FixedList(Box<ValTy>, u32),
    Tuple(Vec<ValTy>),
    Flags(usize),
    Enum(usize),
    Option(Box<ValTy>),
    Result(Option<Box<ValTy>>, Option<Box<ValTy>>),
    Own(ResourceRef),
    Borrow(ResourceRef),
    /// A type aliased out of an imported instance whose structure the
    /// instance type does not spell out to us.
    Opaque,
}

/// A component function type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncSig {
    pub params: Vec<(String, ValTy)>,
    pub result: Option<ValTy>,
    pub is_async: bool,
}

/// A core value type in a flattened signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flat {
    I32,
    I64,
    F32,
    F64,
}

impl ValTy {
    /// Does a value of this type live (partly) in linear memory when
    /// passed, i.e. does lifting or lowering it need `memory`?
    pub fn uses_memory(&self) -> bool {
        match self {
            ValTy::Prim(Prim::String) | ValTy::List(_) | ValTy::Opaque => true,
            ValTy::Prim(_) | ValTy::Flags(_) | ValTy::Enum(_) | ValTy::Own(_) | ValTy::Borrow(_) => {
                false
            }
            ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().any(ValTy::uses_memory),
            ValTy::Variant(cases) => cases.iter().flatten().any(ValTy::uses_memory),
            ValTy::FixedList(elem, _) | ValTy::Option(elem) => elem.uses_memory(),
            ValTy::Result(ok, err) => {
                ok.as_deref().is_some_and(ValTy::uses_memory)
                    || err.as_deref().is_some_and(ValTy::uses_memory)
            }
        }
    }

    /// Does this type mention a handle anywhere?
    pub fn has_handles(&self) -> bool {
        match self {
            ValTy::Own(_) | ValTy::Borrow(_) => true,
            ValTy::Prim(_) | ValTy::Flags(_) | ValTy::Enum(_) | ValTy::Opaque => false,
            ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().any(ValTy::has_handles),
            ValTy::Variant(cases) => cases.iter().flatten().any(ValTy::has_handles),
            ValTy::List(elem) | ValTy::FixedList(elem, _) | ValTy::Option(elem) => elem.has_handles(),
            ValTy::Result(ok, err) => {
                ok.as_deref().is_some_and(ValTy::has_handles)
                    || err.as_deref().is_some_and(ValTy::has_handles)
            }
        }
    }

    /// Does a value of this type hold a `borrow<T>` anywhere?
    pub fn has_borrows(&self) -> bool {
        self.borrowed().next().is_some()
    }

    /// Every resource this type borrows, at any depth.
    pub fn borrowed(&self) -> impl Iterator<Item = &ResourceRef> {
        let mut out = Vec::new();
        self.collect_borrows(&mut out);
        out.into_iter()
    }

    fn collect_borrows<'a>(&'a self, out: &mut Vec<&'a ResourceRef>) {
        match self {
            ValTy::Borrow(r) => out.push(r),
            ValTy::Own(_) | ValTy::Prim(_) | ValTy::Flags(_) | ValTy::Enum(_) | ValTy::Opaque => {}
            ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().for_each(|f| f.collect_borrows(out)),
            ValTy::Variant(cases) => cases.iter().flatten().for_each(|c| c.collect_borrows(out)),
            ValTy::List(elem) | ValTy::FixedList(elem, _) | ValTy::Option(elem) => elem.collect_borrows(out),
            ValTy::Result(ok, err) => {
                if let Some(ok) = ok {
                    ok.collect_borrows(out);
                }
                if let Some(err) = err {
                    err.collect_borrows(out);
                }
            }
        }
    }

    /// How many flat values this type lowers to, counted without building
    /// them and saturating at `cap + 1`: enough to compare with
    /// [`MAX_FLAT_PARAMS`] or [`MAX_FLAT_RESULTS`]. A fixed-size list of
    /// fixed-size lists can stand for 2^32 flat values, and [`Self::flatten`]
    /// would push every one of them.
    pub fn flat_len_capped(&self, cap: usize) -> usize {
        let over = cap.saturating_add(1);
        let count = match self {
            ValTy::Prim(Prim::String) | ValTy::List(_) | ValTy::Opaque => 2,
            ValTy::Prim(_) | ValTy::Enum(_) | ValTy::Own(_) | ValTy::Borrow(_) => 1,
            ValTy::FixedList(elem, n) => elem.flat_len_capped(cap).saturating_mul(*n as usize),
            ValTy::Record(fields) | ValTy::Tuple(fields) => {
                let mut sum = 0usize;
                for field in fields {
                    sum = sum.saturating_add(field.flat_len_capped(cap));
                    if sum > cap {
                        break;
                    }
                }
                sum
            }
            ValTy::Flags(n) => n.div_ceil(32),
            ValTy::Option(elem) => 1 + elem.flat_len_capped(cap),
            ValTy::Result(ok, err) => {
                let ok = ok.as_deref().map_or(0, |t| t.flat_len_capped(cap));
                let err = err.as_deref().map_or(0, |t| t.flat_len_capped(cap));
                1 + ok.max(err)
            }
            ValTy::Variant(cases) => 1 + cases.iter().flatten().map(|t| t.flat_len_capped(cap)).max().unwrap_or(0),
        };
        count.min(over)
    }

    /// Append this type's flattening to `out`.
    pub fn flatten(&self, out: &mut Vec<Flat>) {
        match self {
            ValTy::Prim(p) => match p {
                Prim::S64 | Prim::U64 => out.push(Flat::I64),
                Prim::F32 => out.push(Flat::F32),
                Prim::F64 => out.push(Flat::F64),
                Prim::String => out.extend([Flat::I32, Flat::I32]),
                _ => out.push(Flat::I32),
            },
            ValTy::List(_) | ValTy::Opaque => out.extend([Flat::I32, Flat::I32]),
            ValTy::FixedList(elem, n) => {
                for _ in 0..*n {
                    elem.flatten(out);
                }
            }
            ValTy::Record(fields) | ValTy::Tuple(fields) => {
                for f in fields {
                    f.flatten(out);
                }
            }
            ValTy::Flags(n) => {
                for _ in 0..n.div_ceil(32).max(if *n == 0 { 0 } else { 1 }) {
                    out.push(Flat::I32);
                }
            }
            ValTy::Enum(_) | ValTy::Own(_) | ValTy::Borrow(_) => out.push(Flat::I32),
            ValTy::Option(elem) => flatten_variant([Some(&**elem)].into_iter(), out),
            ValTy::Result(ok, err) => flatten_variant([ok.as_deref(), err.as_deref()].into_iter(), out),
            ValTy::Variant(cases) => flatten_variant(cases.iter().map(Option::as_ref), out),
        }
    }
}

fn flatten_variant<'t>(cases: impl Iterator<Item = Option<&'t ValTy>>, out: &mut Vec<Flat>) {
    out.push(Flat::I32);
    let mut joined: Vec<Flat> = Vec::new();
    for case in cases.flatten() {
        let mut flat = Vec::new();
        case.flatten(&mut flat);
        for (i, f) in flat.into_iter().enumerate() {
            match joined.get_mut(i) {
                Some(slot) => *slot = join(*slot, f),
                None => joined.push(f),
            }
        }
    }
    out.extend(joined);
}

fn join(a: Flat, b: Flat) -> Flat {
    if a == b {
        return a;
    }
    match (a, b) {
        (Flat::I32, Flat::F32) | (Flat::F32, Flat::I32) => Flat::I32,
        _ => Flat::I64,
    }
}

impl FuncSig {
    /// The flat parameter list, or `None` when the parameters are passed
    /// through memory (more than [`MAX_FLAT_PARAMS`]).
    pub fn flat_params(&self) -> Option<Vec<Flat>> {
        let mut count = 0usize;
        for (_, ty) in &self.params {
            count = count.saturating_add(ty.flat_len_capped(MAX_FLAT_PARAMS));
        }
        if count > MAX_FLAT_PARAMS {
            return None;
        }
        let mut out = Vec::new();
        for (_, ty) in &self.params {
            ty.flatten(&mut out);
        }
        (out.len() <= MAX_FLAT_PARAMS).then_some(out)
    }

    /// Does calling this function need a linear memory on either side?
    pub fn uses_memory(&self) -> bool {
        let results = self.result.as_ref().map_or(0, |r| r.flat_len_capped(MAX_FLAT_RESULTS));
        self.params.iter().any(|(_, t)| t.uses_memory())
            || self.result.as_ref().is_some_and(ValTy::uses_memory)
            || self.flat_params().is_none()
            || results > MAX_FLAT_RESULTS
    }
}

/// Where the payload of a variant-like type sits in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantLayout {
    /// Bytes of the discriminant (1, 2 or 4).
    pub tag_size: u32,
    /// Offset of the payload from the start of the value.
    pub payload_offset: u32,
}

fn align_to(n: u32, align: u32) -> u32 {
    n.div_ceil(align.max(1)) * align.max(1)
}

impl ValTy {
    /// The cases of a variant-like type (variant, option, result, enum),
    /// or `None` for other types.
    pub fn cases(&self) -> Option<Vec<Option<&ValTy>>> {
        Some(match self {
            ValTy::Variant(cases) => cases.iter().map(Option::as_ref).collect(),
            ValTy::Option(t) => vec![None, Some(&**t)],
            ValTy::Result(ok, err) => vec![ok.as_deref(), err.as_deref()],
            ValTy::Enum(n) => vec![None; *n],
            _ => return None,
        })
    }

    /// Canonical-ABI size and alignment in linear memory
    /// (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#size>),
    /// or `None` for opaque types.
    pub fn layout(&self) -> Option<(u32, u32)> {
        Some(match self {
            ValTy::Prim(Prim::String) | ValTy::List(_) => (8, 4),
            ValTy::Own(_) | ValTy::Borrow(_) => (4, 4),
            ValTy::Opaque => return None,
            ValTy::FixedList(elem, n) => {
                let (size, align) = elem.layout()?;
                (size.checked_mul(*n)?, align)
            }
            ValTy::Record(fields) | ValTy::Tuple(fields) => {
                let (mut size, mut align) = (0u32, 1u32);
                for f in fields {
                    let (s, a) = f.layout()?;
                    size = align_to(size, a) + s;
                    align = align.max(a);
                }
                (align_to(size, align), align)
            }
            ValTy::Variant(_) | ValTy::Option(_) | ValTy::Result(..) | ValTy::Enum(_) => {
                let v = self.variant_layout()?;
                let (mut size, mut align) = (0u32, v.tag_size);
                for case in self.cases()?.into_iter().flatten() {
                    let (s, a) = case.layout()?;
                    size = size.max(s);
                    align = align.max(a);
                }
                (align_to(v.payload_offset + size, align), align)
            }
            other => other.plain_layout()?,
        })
    }

    /// The discriminant size and payload offset of a variant-like type.
    pub fn variant_layout(&self) -> Option<VariantLayout> {
        let cases = self.cases()?;
        let tag_size = match cases.len() {
            0..=256 => 1,
            257..=65536 => 2,
            _ => 4,
        };
        let mut align = 1;
        for case in cases.into_iter().flatten() {
            align = align.max(case.layout()?.1);
        }
        Some(VariantLayout { tag_size, payload_offset: align_to(tag_size, align) })
    }

    /// Does a value of this type hold pointers into linear memory?
    pub fn has_pointers(&self) -> bool {
        self.uses_memory()
    }

    /// The parts of a value of this type in memory that `wanted` selects,
    /// for code that walks values to fix them up (deep copies, borrowed
    /// handles made reps): the fields of a record, tuple or fixed-size list
    /// at their offsets, or the cases of a variant-like type with its
    /// discriminant size and payload offset. `None` for other types or an
    /// unknown layout.
    pub fn parts_in_memory(&self, wanted: impl Fn(&ValTy) -> bool) -> Option<Parts<'_>> {
        Some(match self {
            ValTy::Record(fields) | ValTy::Tuple(fields) => {
                let mut offset = 0u32;
                let mut out = Vec::new();
                for f in fields {
                    let (s, a) = f.layout()?;
                    offset = align_to(offset, a);
                    if wanted(f) {
                        out.push((offset, f));
                    }
                    offset += s;
                }
                Parts::Fields(out)
            }
            ValTy::FixedList(elem, n) => {
                let (s, _) = elem.layout()?;
                Parts::Fields(if wanted(elem) { (0..*n).map(|i| (i * s, &**elem)).collect() } else { Vec::new() })
            }
            ValTy::Variant(_) | ValTy::Option(_) | ValTy::Result(..) => {
                let v = self.variant_layout()?;
                let cases = self
                    .cases()?
                    .into_iter()
                    .enumerate()
                    .filter_map(|(c, case)| case.filter(|t| wanted(t)).map(|t| (c as u32, t)))
                    .collect();
                Parts::Cases { tag_size: v.tag_size, payload_offset: v.payload_offset, cases }
            }
            _ => return None,
        })
    }
}

/// See [`ValTy::parts_in_memory`].
#[derive(Debug)]
pub enum Parts<'a> {
    /// (offset, type) of each selected field.
    Fields(Vec<(u32, &'a ValTy)>),
    /// The discriminant's size, the payload's offset, and (case index,
    /// payload type) of each selected case.
    Cases { tag_size: u32, payload_offset: u32, cases: Vec<(u32, &'a ValTy)> },
}

impl ValTy {
    /// Size and alignment in memory of a value without pointers or handles
    /// (scalars, and records, tuples, enums and flags of them), else `None`.
    pub fn plain_layout(&self) -> Option<(u32, u32)> {
        Some(match self {
            ValTy::Prim(p) => match p {
                Prim::Bool | Prim::S8 | Prim::U8 => (1, 1),
                Prim::S16 | Prim::U16 => (2, 2),
                Prim::S32 | Prim::U32 | Prim::F32 | Prim::Char => (4, 4),
                Prim::S64 | Prim::U64 | Prim::F64 => (8, 8),
                Prim::String => return None,
            },
            ValTy::Record(fields) | ValTy::Tuple(fields) => {
                let (mut size, mut align) = (0u32, 1u32);
                for f in fields {
                    let (s, a) = f.plain_layout()?;
                    size = size.div_ceil(a) * a + s;
                    align = align.max(a);
                }
                (size.div_ceil(align) * align, align)
            }
            ValTy::Enum(n) => match n {
                0..=256 => (1, 1),
                257..=65536 => (2, 2),
                _ => (4, 4),
            },
            ValTy::Flags(n) => match n {
                0 => (0, 1),
                1..=8 => (1, 1),
                9..=16 => (2, 2),
                n => (4 * n.div_ceil(32) as u32, 4),
            },
            _ => return None,
        })
    }
}
