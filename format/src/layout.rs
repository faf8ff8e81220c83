//! The layout engine: a `karmem_idl::Schema` turned into sizes, offsets,
//! SoA columns and hashes (FORMAT.md §4–§8, §11).
//!
//! Owns: [`Layout`], an owned table of every type the schema mentions
//! (named items, anonymous types, the synthetic argument/result structs of
//! every interface function and the synthetic entry struct of every map
//! type), each with its inline size and alignment; struct
//! field offsets; flattened SoA columns with their hash-chain hashes; layout
//! signatures and hashes.
//!
//! Does not own: reading or writing bytes (`validate`, `value`) or checking
//! the schema itself (the resolver in `karmem-idl` does that; this module still
//! refuses what it cannot lay out, e.g. an inline struct that contains itself).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use karmem_idl::Schema;
use karmem_idl::ast::{
    AttrKind, Evolution, HandleKind, IntWidth, Item, Literal, Prim, TagWidth, TypeKind, TypeRef,
};

use crate::raw::{self, align_up};

/// Index of a type in a [`Layout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeId(pub u32);

/// A schema the layout engine cannot lay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutError {
    /// The item, field or function where the problem is.
    pub path: String,
    pub message: String,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot lay out `{}`: {}", self.path, self.message)
    }
}

impl std::error::Error for LayoutError {}

fn err<T>(path: &str, message: impl Into<String>) -> Result<T, LayoutError> {
    Err(LayoutError { path: path.to_string(), message: message.into() })
}

/// A type with its inline size and alignment.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    pub kind: Kind,
    /// Bytes it takes inside a parent (FORMAT.md §1).
    pub size: u32,
    pub align: u32,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Prim(Prim),
    /// `own<R>`, `borrow<R>` or a bare resource name: a u32.
    Handle { resource: String, borrow: bool },
    Enum(EnumInfo),
    Flags(FlagsInfo),
    Struct(StructInfo),
    Union(UnionInfo),
    /// `[]T`: a 12-byte slot. Also `map<K, V>`: an SoA array whose `elem`
    /// is the map's entry struct ([`StructInfo::map_entry`], FORMAT.md §6.5).
    Array { elem: TypeId, form: ArrayForm },
    /// `[]u8 #string` (`utf16 == false`) or `[]u16 #string`.
    String { utf16: bool },
    FixedArray { elem: TypeId, len: u32 },
    Option { some: TypeId, payload_offset: u32 },
    Result { ok: Option<TypeId>, err: Option<TypeId>, payload_offset: u32 },
}

/// How an array's block is laid out (FORMAT.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayForm {
    Plain,
    Soa,
    /// `#bovoa` (`soa == false`) or `#bovos`.
    Bunch { soa: bool },
}

#[derive(Debug, Clone)]
pub struct EnumInfo {
    pub name: String,
    /// Byte width of the representation.
    pub width: u32,
    /// (case name, value) in declaration order.
    pub cases: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
pub struct FlagsInfo {
    pub name: String,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StructInfo {
    pub name: String,
    pub dynamic: bool,
    /// The synthetic inline struct `{ key: K, value: V }` of a `map<K, V>`
    /// (named `<where the map is first met>.entry`): an array of it is that
    /// map, with the same bytes as any SoA array of an inline struct.
    pub map_entry: bool,
    pub fields: Vec<FieldInfo>,
    /// End of the last field: the writer's `used` (≥ 4 for dynamic structs).
    pub used: u32,
    /// Size of the inline bytes (inline struct) or the body (dynamic struct).
    pub body_size: u32,
    /// The flattened SoA columns of an array of this struct (FORMAT.md §6.3).
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Clone)]
pub struct FieldInfo {
    pub name: String,
    pub ty: TypeId,
    /// Offset in the inline bytes (inline struct) or in the body (dynamic struct).
    pub offset: u32,
    pub default: Option<Literal>,
}

#[derive(Debug, Clone)]
pub struct UnionInfo {
    pub name: String,
    pub dynamic: bool,
    /// Byte width of the tag.
    pub tag_width: u32,
    pub cases: Vec<CaseInfo>,
    /// Inline unions: where the payload starts. Dynamic unions: 4.
    pub payload_offset: u32,
    /// Inline unions: the largest case size. Dynamic unions: 4 (the offset).
    pub payload_size: u32,
    /// Two columns: the tags (path `[0]`) and the payloads (path `[1]`).
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Clone)]
pub struct CaseInfo {
    pub name: String,
    pub tag: u64,
    pub ty: Option<TypeId>,
}

/// One column of an SoA array: a leaf of the flattened element.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    /// Field positions from the element struct down to the leaf.
    pub path: Vec<u32>,
    pub hash: u32,
    /// Offset of the leaf in the element's inline bytes (or body).
    pub offset: u32,
    /// Element size of the column.
    pub size: u32,
    pub leaf: Leaf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// A struct field of this type.
    Field(TypeId),
    /// The tag column of a union array.
    UnionTag,
    /// The payload column of a union array.
    UnionPayload,
}

/// The argument and result structs of one interface function (FORMAT.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionLayout {
    pub params: TypeId,
    pub results: TypeId,
}

/// Every type of a schema, laid out.
#[derive(Debug, Clone)]
pub struct Layout {
    types: Vec<TypeInfo>,
    by_name: HashMap<String, TypeId>,
    functions: HashMap<String, FunctionLayout>,
    /// Per type, what validation charges for its zero value (`zero_cost`).
    zero_costs: Vec<u64>,
}

/// The memo behind [`Layout::zero_cost`].
#[derive(Debug, Clone, Copy)]
enum ZeroCost {
    Unknown,
    /// Being computed: a type whose zero value contains itself, which no
    /// reader can build; it counts 0 there.
    Open,
    Known(u64),
}

struct ZeroCosts<'l> {
    layout: &'l Layout,
    memo: Vec<ZeroCost>,
}

impl ZeroCosts<'_> {
    fn all(layout: &Layout) -> Vec<u64> {
        let mut z = ZeroCosts { layout, memo: vec![ZeroCost::Unknown; layout.len()] };
        (0..layout.len()).map(|i| z.cost(TypeId(i as u32))).collect()
    }

    fn absent_field(&mut self, f: &FieldInfo) -> u64 {
        match f.default {
            Some(_) => u64::from(self.layout.get(f.ty).size),
            None => self.cost(f.ty),
        }
    }

    fn cost(&mut self, ty: TypeId) -> u64 {
        let index = ty.0 as usize;
        match self.memo.get(index) {
            Some(ZeroCost::Known(cost)) => return *cost,
            Some(ZeroCost::Open) | None => return 0,
            Some(ZeroCost::Unknown) => {}
        }
        if let Some(slot) = self.memo.get_mut(index) {
            *slot = ZeroCost::Open;
        }
        let layout = self.layout;
        let info = layout.get(ty);
        let own = u64::from(info.size.max(1));
        let cost = match &info.kind {
            Kind::Struct(s) => {
                let mut sum = if s.dynamic { u64::from(s.body_size.max(4)) } else { 0 };
                for f in &s.fields {
                    let one = if s.dynamic { self.absent_field(f) } else { self.cost(f.ty) };
                    sum = sum.saturating_add(one);
                }
                sum.max(own)
            }
            Kind::FixedArray { elem, len } => self.cost(*elem).saturating_mul(u64::from(*len)).max(own),
            Kind::Union(u) => {
                let payload = u.cases.iter().find(|c| c.tag == 0).and_then(|c| c.ty);
                own.saturating_add(payload.map_or(0, |t| self.cost(t)))
            }
            Kind::Result { ok: Some(t), .. } => own.saturating_add(self.cost(*t)),
            _ => own,
        };
        if let Some(slot) = self.memo.get_mut(index) {
            *slot = ZeroCost::Known(cost);
        }
        cost
    }
}

/// A placeholder while the table is being built.
const PENDING: Kind = Kind::Prim(Prim::U8);

/// What [`Layout::get`] returns for an id that is not in the layout.
static UNKNOWN_TYPE: TypeInfo = TypeInfo {
    kind: Kind::Struct(StructInfo {
        name: String::new(),
        dynamic: false,
        map_entry: false,
        fields: Vec::new(),
        used: 0,
        body_size: 0,
        columns: Vec::new(),
    }),
    size: 0,
    align: 1,
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Todo,
    Busy,
    Done,
}

struct Builder<'s> {
    schema: &'s Schema,
    types: Vec<TypeInfo>,
    state: Vec<State>,
    by_name: HashMap<String, TypeId>,
    /// Anonymous types, deduplicated by shape.
    interned: HashMap<String, TypeId>,
    /// Map entry structs by (key, value) type: one per map type, named
    /// after the first place it is met.
    map_entries: HashMap<(TypeId, TypeId), TypeId>,
}

impl Layout {
    /// Lays out every item and interface function of `schema`.
    pub fn new(schema: &Schema) -> Result<Layout, LayoutError> {
        let mut b = Builder {
            schema,
            types: Vec::new(),
            state: Vec::new(),
            by_name: HashMap::new(),
            interned: HashMap::new(),
            map_entries: HashMap::new(),
        };
        // Pass 1: one id per named item, so that references can be interned.
        for item in schema.items() {
            if matches!(item, Item::Interface(_)) {
                continue;
            }
            let id = b.push(PENDING);
            b.by_name.insert(item.name().name.clone(), id);
        }
        // Pass 2: kinds.
        for item in schema.items() {
            let name = item.name().name.clone();
            let Some(&id) = b.by_name.get(&name) else { continue };
            let kind = b.item_kind(item)?;
            b.info_mut(id)?.kind = kind;
        }
        let mut functions = HashMap::new();
        for item in schema.items() {
            let Item::Interface(iface) = item else { continue };
            for f in iface.functions() {
                let path = format!("{}.{}", iface.name.name, f.name.name);
                let params = b.argument_struct(&path, "params", "arg", &f.params)?;
                let results = b.argument_struct(&path, "results", "ret", &f.results)?;
                functions.insert(path, FunctionLayout { params, results });
            }
        }
        // Pass 3: sizes, offsets and columns of everything.
        for i in 0..b.types.len() {
            b.compute(TypeId(i as u32))?;
        }
        for i in 0..b.types.len() {
            b.complete_bodies(TypeId(i as u32))?;
        }
        for i in 0..b.types.len() {
            b.columns(TypeId(i as u32))?;
        }
        let mut layout = Layout { types: b.types, by_name: b.by_name, functions, zero_costs: Vec::new() };
        layout.zero_costs = ZeroCosts::all(&layout);
        Ok(layout)
    }

    /// Bytes a reader materialises for the zero value of `ty`, as
    /// validation charges them (FORMAT.md §9, `max_visit`): at least one
    /// per value, its size, with dynamic structs expanded to their fields'
    /// absent costs and fixed arrays to `len` of their element's. A type
    /// whose zero value contains itself (through dynamic structs) counts 0
    /// where it recurs. Computed once per layout, in type order.
    pub fn zero_cost(&self, ty: TypeId) -> u64 {
        self.zero_costs.get(ty.0 as usize).copied().unwrap_or(0)
    }

    /// What reading a dynamic struct's absent field `f` materialises: its
    /// default (its size) or its zero value.
    pub fn absent_field_cost(&self, f: &FieldInfo) -> u64 {
        match f.default {
            Some(_) => u64::from(self.get(f.ty).size),
            None => self.zero_cost(f.ty),
        }
    }

    /// What validation charges per element for an SoA column the message
    /// leaves out (it reads as zero values).
    pub fn missing_column_cost(&self, c: &ColumnInfo) -> u64 {
        match c.leaf {
            Leaf::Field(t) => self.zero_cost(t).max(u64::from(c.size)),
            Leaf::UnionTag | Leaf::UnionPayload => u64::from(c.size.max(1)),
        }
    }

    /// Whether values of `ty` can be invalid or have children: validation
    /// skips the others.
    pub fn needs_walk(&self, ty: TypeId) -> bool {
        match &self.get(ty).kind {
            Kind::Prim(p) => matches!(p, Prim::Bool | Prim::Char),
            Kind::Handle { .. } => false,
            Kind::Flags(f) => f.flags.len() % 8 != 0,
            Kind::Struct(s) if !s.dynamic => s.fields.iter().any(|f| self.needs_walk(f.ty)),
            Kind::FixedArray { elem, len } => *len > 0 && self.needs_walk(*elem),
            _ => true,
        }
    }

    /// The type `id`. Ids come from this layout; an id from another layout
    /// that is out of range reads as an empty inline struct (size 0).
    pub fn get(&self, id: TypeId) -> &TypeInfo {
        self.types.get(id.0 as usize).unwrap_or(&UNKNOWN_TYPE)
    }

    /// The named item `name` (struct, union, enum, flags or resource).
    pub fn named(&self, name: &str) -> Option<TypeId> {
        self.by_name.get(name).copied()
    }

    /// The named items (structs, unions, enums, flags, resources) in declaration order.
    pub fn named_items(&self) -> Vec<(&str, TypeId)> {
        let mut items: Vec<(&str, TypeId)> = self.by_name.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        items.sort_by_key(|(_, id)| *id);
        items
    }

    /// The argument/result structs of `interface.function`.
    pub fn function(&self, interface: &str, function: &str) -> Option<FunctionLayout> {
        self.functions.get(&format!("{interface}.{function}")).copied()
    }

    /// All functions, as `interface.function`.
    pub fn functions(&self) -> impl Iterator<Item = (&str, FunctionLayout)> {
        self.functions.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The struct behind `id`, if it is one.
    pub fn as_struct(&self, id: TypeId) -> Option<&StructInfo> {
        match &self.get(id).kind {
            Kind::Struct(s) => Some(s),
            _ => None,
        }
    }

    /// Whether `id` is a dynamic struct (stored out of line).
    pub fn is_dynamic_struct(&self, id: TypeId) -> bool {
        self.as_struct(id).is_some_and(|s| s.dynamic)
    }

    /// Whether `id` is the entry struct of a map type.
    pub fn is_map_entry(&self, id: TypeId) -> bool {
        self.as_struct(id).is_some_and(|s| s.map_entry)
    }

    /// The key and value types of `id` when it is a `map<K, V>` (an array
    /// of a map entry struct, FORMAT.md §6.5).
    pub fn map_types(&self, id: TypeId) -> Option<(TypeId, TypeId)> {
        let Kind::Array { elem, .. } = &self.get(id).kind else { return None };
        map_entry_types(self.as_struct(*elem)?)
    }

    /// Size of the out-of-line form of `id` (FORMAT.md §3).
    pub fn out_of_line_size(&self, id: TypeId) -> u32 {
        match &self.get(id).kind {
            Kind::Struct(s) if s.dynamic => s.body_size,
            _ => self.get(id).size,
        }
    }

    /// The SoA columns of an array whose elements are `elem`.
    pub fn columns(&self, elem: TypeId) -> &[ColumnInfo] {
        match &self.get(elem).kind {
            Kind::Struct(s) => &s.columns,
            Kind::Union(u) => &u.columns,
            _ => &[],
        }
    }

    /// The layout signature of `id` (FORMAT.md §11).
    pub fn signature(&self, id: TypeId) -> String {
        let mut out = String::new();
        let mut stack = Vec::new();
        self.sign(id, &mut stack, &mut out);
        out
    }

    /// The layout hash of `id`: FNV-1a 64 of its signature (FORMAT.md §11).
    pub fn layout_hash(&self, id: TypeId) -> u64 {
        raw::fnv1a64(self.signature(id).as_bytes())
    }

    /// The function type hash of `interface.function` (FORMAT.md §11): an
    /// identity of the function's wire shape (equal hashes, same layout of
    /// every parameter and result), not its compatibility rule — a function
    /// that gained a parameter has another hash yet still talks to its older
    /// peer; [`crate::compat::check_function`] decides that from the schemas.
    pub fn function_hash(&self, interface: &str, function: &str) -> Option<u64> {
        let f = self.function(interface, function)?;
        let list = |id: TypeId| -> String {
            let fields = self.as_struct(id).map(|s| s.fields.as_slice()).unwrap_or(&[]);
            fields.iter().map(|f| self.signature(f.ty)).collect::<Vec<_>>().join(",")
        };
        let sig = format!("fn({})->({})", list(f.params), list(f.results));
        Some(raw::fnv1a64(sig.as_bytes()))
    }

    fn sign(&self, id: TypeId, stack: &mut Vec<TypeId>, out: &mut String) {
        if let Some(depth) = stack.iter().rev().position(|&t| t == id) {
            out.push_str(&format!("rec({})", depth + 1));
            return;
        }
        stack.push(id);
        match &self.get(id).kind {
            Kind::Prim(p) => out.push_str(p.keyword()),
            Kind::Handle { .. } => out.push_str("handle"),
            Kind::Enum(e) => {
                let mut values: Vec<u64> = e.cases.iter().map(|c| c.1).collect();
                values.sort_unstable();
                let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                out.push_str(&format!("enum(u{}:{})", e.width * 8, values.join(",")));
            }
            Kind::Flags(f) => out.push_str(&format!("flags({})", f.flags.len())),
            Kind::Struct(s) if s.dynamic => out.push_str("dynamic"),
            Kind::Struct(s) => {
                out.push_str("struct{");
                for (i, f) in s.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.sign(f.ty, stack, out);
                }
                out.push('}');
            }
            Kind::Union(u) if u.dynamic => out.push_str(&format!("dynunion(u{})", u.tag_width * 8)),
            Kind::Union(u) => {
                out.push_str(&format!("union(u{};", u.tag_width * 8));
                for (i, c) in u.cases.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("{}:", c.tag));
                    match c.ty {
                        Some(t) => self.sign(t, stack, out),
                        None => out.push('_'),
                    }
                }
                out.push(')');
            }
            Kind::Array { elem, form } => {
                let form = match (form, &self.get(*elem).kind) {
                    (ArrayForm::Soa, _) => "soa",
                    (ArrayForm::Bunch { soa: false }, _) => "bovoa",
                    (ArrayForm::Bunch { soa: true }, _) => "bovos",
                    (ArrayForm::Plain, Kind::Struct(_) | Kind::Union(_)) => "aos",
                    (ArrayForm::Plain, _) => "",
                };
                out.push_str(&format!("[]{form}("));
                self.sign(*elem, stack, out);
                out.push(')');
            }
            Kind::String { utf16 } => out.push_str(if *utf16 { "[]string(u16)" } else { "[]string(u8)" }),
            Kind::FixedArray { elem, len } => {
                out.push_str(&format!("[{len}]("));
                self.sign(*elem, stack, out);
                out.push(')');
            }
            Kind::Option { some, .. } => {
                out.push_str("option(");
                self.sign(*some, stack, out);
                out.push(')');
            }
            Kind::Result { ok, err, .. } => {
                out.push_str("result(");
                match ok {
                    Some(t) => self.sign(*t, stack, out),
                    None => out.push('_'),
                }
                out.push(',');
                match err {
                    Some(t) => self.sign(*t, stack, out),
                    None => out.push('_'),
                }
                out.push(')');
            }
        }
        stack.pop();
    }
}

fn int_width(w: IntWidth) -> u32 {
    match w {
        IntWidth::U8 => 1,
        IntWidth::U16 => 2,
        IntWidth::U32 => 4,
        IntWidth::U64 => 8,
    }
}

fn tag_width(w: TagWidth) -> u32 {
    match w {
        TagWidth::U8 => 1,
        TagWidth::U16 => 2,
        TagWidth::U32 => 4,
    }
}

/// Inline size and alignment of a flags type with `n` flags (FORMAT.md §4).
pub fn flags_size(n: usize) -> (u32, u32) {
    match n {
        0 => (0, 1),
        1..=8 => (1, 1),
        9..=16 => (2, 2),
        _ => (4 * n.div_ceil(32) as u32, 4),
    }
}

impl Builder<'_> {
    fn push(&mut self, kind: Kind) -> TypeId {
        let id = TypeId(self.types.len() as u32);
        self.types.push(TypeInfo { kind, size: 0, align: 1 });
        self.state.push(State::Todo);
        id
    }

    fn item_kind(&mut self, item: &Item) -> Result<Kind, LayoutError> {
        let name = item.name().name.clone();
        Ok(match item {
            Item::Struct(s) => {
                let mut fields = Vec::new();
                for f in &s.fields {
                    let path = format!("{name}.{}", f.name.name);
                    let ty = self.intern(&f.ty, &path)?;
                    fields.push(FieldInfo {
                        name: f.name.name.clone(),
                        ty,
                        offset: 0,
                        default: f.default.clone(),
                    });
                }
                Kind::Struct(StructInfo {
                    name,
                    dynamic: s.evolution == Evolution::Dynamic,
                    map_entry: false,
                    fields,
                    used: 0,
                    body_size: 0,
                    columns: Vec::new(),
                })
            }
            Item::Union(u) => {
                let mut cases = Vec::new();
                let mut next = 1u64;
                let mut seen = HashSet::new();
                for c in &u.cases {
                    let path = format!("{name}.{}", c.name.name);
                    let tag = c.tag.unwrap_or(next);
                    next = tag.wrapping_add(1);
                    if tag > u.tag.max() || !seen.insert(tag) {
                        return err(&path, format!("tag {tag} is reused or too wide"));
                    }
                    let ty = match &c.ty {
                        Some(t) => Some(self.intern(t, &path)?),
                        None => None,
                    };
                    cases.push(CaseInfo { name: c.name.name.clone(), tag, ty });
                }
                Kind::Union(UnionInfo {
                    name,
                    dynamic: u.evolution == Evolution::Dynamic,
                    tag_width: tag_width(u.tag),
                    cases,
                    payload_offset: 0,
                    payload_size: 0,
                    columns: Vec::new(),
                })
            }
            Item::Enum(e) => {
                let mut cases = Vec::new();
                let mut next = 0u64;
                for c in &e.cases {
                    let value = c.value.unwrap_or(next);
                    next = value.wrapping_add(1);
                    if value > e.repr.max() {
                        return err(&format!("{name}.{}", c.name.name), "value too wide");
                    }
                    cases.push((c.name.name.clone(), value));
                }
                Kind::Enum(EnumInfo { name, width: int_width(e.repr), cases })
            }
            Item::Flags(f) => {
                Kind::Flags(FlagsInfo { name, flags: f.flags.iter().map(|c| c.name.name.clone()).collect() })
            }
            Item::Resource(_) => Kind::Handle { resource: name, borrow: false },
            Item::Interface(_) => return err(&name, "an interface is not a type"),
        })
    }

    fn argument_struct(
        &mut self,
        path: &str,
        which: &str,
        prefix: &str,
        params: &[karmem_idl::ast::Param],
    ) -> Result<TypeId, LayoutError> {
        let mut fields = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let name = match &p.name {
                Some(n) => n.name.clone(),
                None => format!("{prefix}{i}"),
            };
            let ty = self.intern(&p.ty, &format!("{path}.{name}"))?;
            fields.push(FieldInfo { name, ty, offset: 0, default: None });
        }
        Ok(self.push(Kind::Struct(StructInfo {
            name: format!("{path}.{which}"),
            dynamic: true,
            map_entry: false,
            fields,
            used: 0,
            body_size: 0,
            columns: Vec::new(),
        })))
    }

    /// The id of a type reference, creating anonymous types as needed.
    fn intern(&mut self, ty: &TypeRef, path: &str) -> Result<TypeId, LayoutError> {
        let attr = |k| ty.has_attr(k);
        let kind = match &ty.kind {
            TypeKind::Prim(p) => Kind::Prim(*p),
            TypeKind::Named(id) => {
                return match self.by_name.get(&id.name) {
                    Some(&t) => Ok(t),
                    None => err(path, format!("unknown type `{}`", id.name)),
                };
            }
            TypeKind::Handle(kind, id) => {
                if !self.by_name.contains_key(&id.name) {
                    return err(path, format!("unknown resource `{}`", id.name));
                }
                Kind::Handle { resource: id.name.clone(), borrow: *kind == HandleKind::Borrow }
            }
            TypeKind::Array(elem) => {
                let string = attr(AttrKind::String);
                match (&elem.kind, string) {
                    (TypeKind::Prim(Prim::U8), true) => Kind::String { utf16: false },
                    (TypeKind::Prim(Prim::U16), true) => Kind::String { utf16: true },
                    (_, true) => return err(path, "`#string` needs `[]u8` or `[]u16`"),
                    _ => {
                        let e = self.intern(elem, path)?;
                        let is_struct = matches!(self.named_kind(elem), Some(NamedKind::Struct));
                        let is_union = matches!(self.named_kind(elem), Some(NamedKind::Union));
                        let form = if attr(AttrKind::Bovoa) || attr(AttrKind::Bovos) {
                            if !is_union {
                                return err(path, "`#bovoa`/`#bovos` need an array of unions");
                            }
                            ArrayForm::Bunch { soa: attr(AttrKind::Bovos) }
                        } else if attr(AttrKind::Aos) {
                            if !is_struct && !is_union {
                                return err(path, "`#aos` needs an array of structs or unions");
                            }
                            ArrayForm::Plain
                        } else if attr(AttrKind::Soa) {
                            if !is_struct && !is_union {
                                return err(path, "`#soa` needs an array of structs or unions");
                            }
                            ArrayForm::Soa
                        } else if is_struct {
                            ArrayForm::Soa
                        } else {
                            ArrayForm::Plain
                        };
                        Kind::Array { elem: e, form }
                    }
                }
            }
            TypeKind::FixedArray(elem, len) => {
                Kind::FixedArray { elem: self.intern(elem, path)?, len: *len }
            }
            TypeKind::Option(some) => Kind::Option { some: self.intern(some, path)?, payload_offset: 0 },
            TypeKind::Result { ok, err: e } => {
                let ok = match ok {
                    Some(t) => Some(self.intern(t, path)?),
                    None => None,
                };
                let e = match e {
                    Some(t) => Some(self.intern(t, path)?),
                    None => None,
                };
                Kind::Result { ok, err: e, payload_offset: 0 }
            }
            TypeKind::Map { key, value } => {
                if !ty.attrs.is_empty() {
                    return err(path, "a map takes no attributes");
                }
                let key = self.intern(key, &format!("{path}.key"))?;
                let value = self.intern(value, &format!("{path}.value"))?;
                Kind::Array { elem: self.map_entry(key, value, path), form: ArrayForm::Soa }
            }
        };
        let key = format!("{kind:?}");
        if let Some(&id) = self.interned.get(&key) {
            return Ok(id);
        }
        let id = self.push(kind);
        self.interned.insert(key, id);
        Ok(id)
    }

    /// The entry struct `{ key: K, value: V }` of `map<K, V>` (FORMAT.md
    /// §6.5), created the first time the map type is met, at `path`.
    fn map_entry(&mut self, key: TypeId, value: TypeId, path: &str) -> TypeId {
        if let Some(&id) = self.map_entries.get(&(key, value)) {
            return id;
        }
        let field = |name: &str, ty| FieldInfo { name: name.to_string(), ty, offset: 0, default: None };
        let id = self.push(Kind::Struct(StructInfo {
            name: format!("{path}.entry"),
            dynamic: false,
            map_entry: true,
            fields: vec![field("key", key), field("value", value)],
            used: 0,
            body_size: 0,
            columns: Vec::new(),
        }));
        self.map_entries.insert((key, value), id);
        id
    }

    fn named_kind(&self, ty: &TypeRef) -> Option<NamedKind> {
        match &ty.kind {
            TypeKind::Named(id) => match self.schema.get(&id.name)? {
                Item::Struct(_) => Some(NamedKind::Struct),
                Item::Union(_) => Some(NamedKind::Union),
                _ => Some(NamedKind::Other),
            },
            _ => None,
        }
    }

    fn info(&self, id: TypeId) -> Result<&TypeInfo, LayoutError> {
        match self.types.get(id.0 as usize) {
            Some(info) => Ok(info),
            None => err(&format!("type #{}", id.0), "no such type in this layout"),
        }
    }

    fn info_mut(&mut self, id: TypeId) -> Result<&mut TypeInfo, LayoutError> {
        match self.types.get_mut(id.0 as usize) {
            Some(info) => Ok(info),
            None => err(&format!("type #{}", id.0), "no such type in this layout"),
        }
    }

    /// How an error names type `id`: an item by its name, an anonymous type
    /// by its KarmemIDL spelling (`[65536]u8`, `option<point>`).
    fn name_of(&self, id: TypeId) -> String {
        match self.types.get(id.0 as usize) {
            Some(info) => self.spell(&info.kind, 0),
            None => format!("type #{}", id.0),
        }
    }

    /// The KarmemIDL spelling of `kind` (without array attributes). Anonymous
    /// types nest without bound (a 5,000-deep array parses), so below
    /// `MAX_SPELL_DEPTH` levels the rest is `..`.
    fn spell(&self, kind: &Kind, depth: usize) -> String {
        const MAX_SPELL_DEPTH: usize = 8;
        let inner = |id: TypeId| match self.types.get(id.0 as usize) {
            _ if depth >= MAX_SPELL_DEPTH => "..".to_string(),
            Some(info) => self.spell(&info.kind, depth + 1),
            None => format!("type #{}", id.0),
        };
        // An element that carries an attribute is written in parentheses.
        let element = |id: TypeId| {
            let spelled = inner(id);
            if spelled.contains(' ') { format!("({spelled})") } else { spelled }
        };
        match kind {
            Kind::Struct(s) => s.name.clone(),
            Kind::Union(u) => u.name.clone(),
            Kind::Enum(e) => e.name.clone(),
            Kind::Flags(f) => f.name.clone(),
            Kind::Prim(p) => p.keyword().to_string(),
            Kind::Handle { resource, borrow: true } => format!("borrow<{resource}>"),
            Kind::Handle { resource, borrow: false } => resource.clone(),
            Kind::String { utf16: false } => "[]u8 #string".to_string(),
            Kind::String { utf16: true } => "[]u16 #string".to_string(),
            Kind::Array { elem, .. } => {
                let map = match self.types.get(elem.0 as usize).map(|e| &e.kind) {
                    Some(Kind::Struct(entry)) => map_entry_types(entry),
                    _ => None,
                };
                match map {
                    Some((k, v)) => format!("map<{}, {}>", inner(k), inner(v)),
                    None => format!("[]{}", element(*elem)),
                }
            }
            Kind::FixedArray { elem, len } => format!("[{len}]{}", element(*elem)),
            Kind::Option { some, .. } => format!("option<{}>", inner(*some)),
            Kind::Result { ok: None, err: None, .. } => "result".to_string(),
            Kind::Result { ok: Some(ok), err: None, .. } => format!("result<{}>", inner(*ok)),
            Kind::Result { ok, err: Some(err), .. } => {
                let ok = ok.map_or_else(|| "_".to_string(), inner);
                format!("result<{ok}, {}>", inner(*err))
            }
        }
    }

    /// Computes inline size and alignment of `id` (recursing through inline parts).
    fn compute(&mut self, id: TypeId) -> Result<(u32, u32), LayoutError> {
        let state = self.state.get(id.0 as usize).copied();
        match state {
            Some(State::Done) => {
                let info = self.info(id)?;
                return Ok((info.size, info.align));
            }
            Some(State::Busy) => {
                return err(&self.name_of(id), "type contains itself inline (use a dynamic struct or an array)");
            }
            Some(State::Todo) => {}
            None => return err(&self.name_of(id), "no such type in this layout"),
        }
        self.set_state(id, State::Busy);
        let mut kind = std::mem::replace(&mut self.info_mut(id)?.kind, PENDING);
        let result = self.compute_kind(&mut kind);
        let info = self.info_mut(id)?;
        info.kind = kind;
        let (size, align) = result?;
        info.size = size;
        info.align = align;
        self.set_state(id, State::Done);
        Ok((size, align))
    }

    fn set_state(&mut self, id: TypeId, state: State) {
        if let Some(s) = self.state.get_mut(id.0 as usize) {
            *s = state;
        }
    }

    fn compute_kind(&mut self, kind: &mut Kind) -> Result<(u32, u32), LayoutError> {
        // `kind` is out of `self.types` while it is computed, so it is spelled here.
        let spelled = self.spell(kind, 0);
        let too_big = || LayoutError { path: spelled.clone(), message: "larger than 4 GiB".into() };
        Ok(match kind {
            Kind::Prim(p) => (p.size(), p.size()),
            Kind::Handle { .. } => (4, 4),
            Kind::Enum(e) => (e.width, e.width),
            Kind::Flags(f) => flags_size(f.flags.len()),
            Kind::Array { .. } | Kind::String { .. } => (raw::SLOT_SIZE, 4),
            Kind::FixedArray { elem, len } => {
                let (size, align) = self.compute(*elem)?;
                let total = size as u64 * *len as u64;
                let total = u32::try_from(total).map_err(|_| too_big())?;
                (total, align)
            }
            Kind::Option { some, payload_offset } => {
                let (size, align) = self.compute(*some)?;
                *payload_offset = align_up(1, align as u64) as u32;
                let total = align_up(*payload_offset as u64 + size as u64, align as u64);
                (u32::try_from(total).map_err(|_| too_big())?, align.max(1))
            }
            Kind::Result { ok, err: e, payload_offset } => {
                let (ok_size, ok_align) = match ok {
                    Some(t) => self.compute(*t)?,
                    None => (0, 1),
                };
                let (err_size, err_align) = match e {
                    Some(t) => self.compute(*t)?,
                    None => (0, 1),
                };
                let align = ok_align.max(err_align);
                *payload_offset = align_up(1, align as u64) as u32;
                let total = align_up(*payload_offset as u64 + ok_size.max(err_size) as u64, align as u64);
                (u32::try_from(total).map_err(|_| too_big())?, align)
            }
            Kind::Struct(s) if s.dynamic => (4, 4),
            Kind::Struct(s) => {
                let (used, size) = self.lay_out_fields(s, 0)?;
                s.used = used;
                s.body_size = size;
                (size, 8)
            }
            Kind::Union(u) if u.dynamic => {
                u.payload_offset = 4;
                u.payload_size = 4;
                (raw::DYNAMIC_UNION_SIZE, 4)
            }
            Kind::Union(u) => {
                let mut max_size = 0u32;
                let mut max_align = 1u32;
                for c in &u.cases {
                    if let Some(t) = c.ty {
                        let (size, align) = self.compute(t)?;
                        max_size = max_size.max(size);
                        max_align = max_align.max(align);
                    }
                }
                u.payload_offset = align_up(u.tag_width as u64, max_align as u64) as u32;
                let align = max_align.max(u.tag_width);
                let total = align_up(u.payload_offset as u64 + max_size as u64, align as u64);
                u.payload_size = (total - u.payload_offset as u64) as u32;
                (u32::try_from(total).map_err(|_| too_big())?, align)
            }
        })
    }

    /// C layout of `s.fields` from `start`; returns (used, size rounded to 8).
    fn lay_out_fields(&mut self, s: &mut StructInfo, start: u32) -> Result<(u32, u32), LayoutError> {
        let mut at = start as u64;
        for f in &mut s.fields {
            let (size, align) = self.compute(f.ty)?;
            at = align_up(at, align as u64);
            f.offset = u32::try_from(at).map_err(|_| LayoutError {
                path: format!("{}.{}", s.name, f.name),
                message: "struct larger than 4 GiB".into(),
            })?;
            at += size as u64;
        }
        let size = align_up(at, 8);
        if size > u32::MAX as u64 / 2 {
            return err(&s.name, "struct larger than 2 GiB");
        }
        Ok((at as u32, size as u32))
    }

    /// Lays out dynamic struct bodies and dynamic union cases (not inline parts).
    fn complete_bodies(&mut self, id: TypeId) -> Result<(), LayoutError> {
        let mut kind = std::mem::replace(&mut self.info_mut(id)?.kind, PENDING);
        let result = match &mut kind {
            Kind::Struct(s) if s.dynamic => self.lay_out_fields(s, raw::DYNAMIC_FIELDS_START).map(|(used, size)| {
                s.used = used;
                s.body_size = size;
            }),
            Kind::Union(u) if u.dynamic => {
                let mut r = Ok(());
                for c in &u.cases {
                    if let Some(t) = c.ty
                        && let Err(e) = self.compute(t)
                    {
                        r = Err(e);
                    }
                }
                r
            }
            _ => Ok(()),
        };
        self.info_mut(id)?.kind = kind;
        result
    }

    /// Flattens structs into SoA columns (FORMAT.md §6.3) and unions into two.
    fn columns(&mut self, id: TypeId) -> Result<(), LayoutError> {
        let columns = match &self.info(id)?.kind {
            Kind::Struct(s) => {
                let mut out = Vec::new();
                self.flatten(s, &mut vec![], raw::COLUMN_HASH_SEED, 0, &mut out);
                let mut seen = HashSet::new();
                for c in &out {
                    if !seen.insert(c.hash) {
                        return err(&s.name, format!("two columns share the hash {:#010x}", c.hash));
                    }
                }
                out
            }
            Kind::Union(u) => vec![
                ColumnInfo {
                    path: vec![0],
                    hash: raw::column_hash(&[0]),
                    offset: 0,
                    size: u.tag_width,
                    leaf: Leaf::UnionTag,
                },
                ColumnInfo {
                    path: vec![1],
                    hash: raw::column_hash(&[1]),
                    offset: u.payload_offset,
                    size: u.payload_size,
                    leaf: Leaf::UnionPayload,
                },
            ],
            _ => return Ok(()),
        };
        match &mut self.info_mut(id)?.kind {
            Kind::Struct(s) => s.columns = columns,
            Kind::Union(u) => u.columns = columns,
            _ => {}
        }
        Ok(())
    }

    fn flatten(&self, s: &StructInfo, path: &mut Vec<u32>, hash: u32, base: u32, out: &mut Vec<ColumnInfo>) {
        for (pos, f) in s.fields.iter().enumerate() {
            let pos = pos as u32;
            path.push(pos);
            let h = raw::column_hash_step(hash, pos);
            let Some(info) = self.types.get(f.ty.0 as usize) else {
                path.pop();
                continue;
            };
            match &info.kind {
                Kind::Struct(inner) if !inner.dynamic => {
                    self.flatten(inner, path, h, base + f.offset, out);
                }
                _ => out.push(ColumnInfo {
                    path: path.clone(),
                    hash: h,
                    offset: base + f.offset,
                    size: info.size,
                    leaf: Leaf::Field(f.ty),
                }),
            }
            path.pop();
        }
    }
}

/// The key and value types of a map entry struct (`None` for other structs).
pub fn map_entry_types(s: &StructInfo) -> Option<(TypeId, TypeId)> {
    match (s.map_entry, s.fields.as_slice()) {
        (true, [key, value]) => Some((key.ty, value.ty)),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum NamedKind {
    Struct,
    Union,
    Other,
}
