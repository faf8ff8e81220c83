//! The KarmemIDL syntax tree.
//!
//! Owns: the data types every other crate builds or reads — the parser
//! produces them, the printer prints them, `karmem-wit-import` constructs them
//! and `karmem-format` lays them out (after resolution, see `schema`).
//!
//! Every node that names something carries a byte [`Span`] into its source.
//! Nodes built by code rather than parsed use `Span::DUMMY`. Equality compares
//! spans too; use [`File::without_spans`] to compare trees from different sources.

/// A byte range `[start, end)` in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The span of a node that was not parsed from text.
    pub const DUMMY: Span = Span { start: 0, end: 0 };

    pub fn new(start: u32, end: u32) -> Span {
        Span { start, end }
    }
}

/// A name with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl Ident {
    pub fn new(name: impl Into<String>) -> Ident {
        Ident {
            name: name.into(),
            span: Span::DUMMY,
        }
    }
}

/// Doc comment lines (`/// text`), without the `///` and one leading space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Docs(pub Vec<String>);

impl Docs {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One `.km` file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct File {
    pub package: Option<Package>,
    pub items: Vec<Item>,
}

/// `package ns:name@1.2.3;`
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    /// The full name, e.g. `wasi:cli` or `example`.
    pub name: String,
    /// A semver version, e.g. `0.2.6`.
    pub version: Option<String>,
    pub docs: Docs,
    pub span: Span,
}

/// A top-level declaration.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Struct(StructDef),
    Union(UnionDef),
    Enum(EnumDef),
    Flags(FlagsDef),
    Resource(ResourceDef),
    Interface(InterfaceDef),
}

impl Item {
    pub fn name(&self) -> &Ident {
        match self {
            Item::Struct(d) => &d.name,
            Item::Union(d) => &d.name,
            Item::Enum(d) => &d.name,
            Item::Flags(d) => &d.name,
            Item::Resource(d) => &d.name,
            Item::Interface(d) => &d.name,
        }
    }

    pub fn docs(&self) -> &Docs {
        match self {
            Item::Struct(d) => &d.docs,
            Item::Union(d) => &d.docs,
            Item::Enum(d) => &d.docs,
            Item::Flags(d) => &d.docs,
            Item::Resource(d) => &d.docs,
            Item::Interface(d) => &d.docs,
        }
    }

    pub fn span(&self) -> Span {
        match self {
            Item::Struct(d) => d.span,
            Item::Union(d) => d.span,
            Item::Enum(d) => d.span,
            Item::Flags(d) => d.span,
            Item::Resource(d) => d.span,
            Item::Interface(d) => d.span,
        }
    }
}

/// `inline` structs are laid out in their parent and never evolve;
/// `dynamic` ones carry a size header and may grow at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Evolution {
    Inline,
    Dynamic,
}

/// `struct name (inline|dynamic) { field: type; ... }`
#[derive(Debug, Clone, PartialEq)]
pub struct StructDef {
    pub name: Ident,
    pub evolution: Evolution,
    pub fields: Vec<Field>,
    pub docs: Docs,
    pub span: Span,
}

/// `name: type;` or, for a field added in a later version, `name: type = default;`
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: Ident,
    pub ty: TypeRef,
    /// The value an older writer's message is read as (WireWeaver-style); zero when absent.
    pub default: Option<Literal>,
    pub docs: Docs,
    pub span: Span,
}

/// A literal in a default value or tag.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Integers; negative values only for signed types.
    Int(i128),
    Float(f64),
    Bool(bool),
    Char(char),
    /// A string default for a `#string` array.
    Str(String),
    /// An enum case or flag name.
    Name(Ident),
}

/// Width of a union tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagWidth {
    U8,
    U16,
    U32,
}

impl TagWidth {
    pub fn max(self) -> u64 {
        match self {
            TagWidth::U8 => u8::MAX as u64,
            TagWidth::U16 => u16::MAX as u64,
            TagWidth::U32 => u32::MAX as u64,
        }
    }
}

/// `union name (dynamic|inline, u8|u16|u32) { case: type = tag; bare = tag; }`
#[derive(Debug, Clone, PartialEq)]
pub struct UnionDef {
    pub name: Ident,
    pub evolution: Evolution,
    pub tag: TagWidth,
    pub cases: Vec<UnionCase>,
    pub docs: Docs,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnionCase {
    pub name: Ident,
    /// `None` for a payload-less case.
    pub ty: Option<TypeRef>,
    /// Explicit tag; implicit tags count up from the previous one (from 1, 0 means "unset").
    pub tag: Option<u64>,
    pub docs: Docs,
    pub span: Span,
}

/// Representation width of an enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntWidth {
    U8,
    U16,
    U32,
    U64,
}

impl IntWidth {
    pub fn max(self) -> u64 {
        match self {
            IntWidth::U8 => u8::MAX as u64,
            IntWidth::U16 => u16::MAX as u64,
            IntWidth::U32 => u32::MAX as u64,
            IntWidth::U64 => u64::MAX,
        }
    }
}

/// `enum name (u8) { a; b = 5; }`
#[derive(Debug, Clone, PartialEq)]
pub struct EnumDef {
    pub name: Ident,
    pub repr: IntWidth,
    pub cases: Vec<EnumCase>,
    pub docs: Docs,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnumCase {
    pub name: Ident,
    /// Explicit value; implicit values count up from the previous one (from 0).
    pub value: Option<u64>,
    pub docs: Docs,
    pub span: Span,
}

/// `flags name { read; write; }` — a bit set of any size.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagsDef {
    pub name: Ident,
    pub flags: Vec<FlagCase>,
    pub docs: Docs,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlagCase {
    pub name: Ident,
    pub docs: Docs,
    pub span: Span,
}

/// `resource name;` — an opaque handle type (a u32 index on the wire).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDef {
    pub name: Ident,
    pub docs: Docs,
    pub span: Span,
}

/// Communication pattern of an interface (paper §4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    Direct,
    Fanout,
    /// Written `singleton` (the paper's Figure 35 also writes `single`).
    Singleton,
    Pool,
}

/// `interface name (dynamic, pattern) { memories and functions }`
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceDef {
    pub name: Ident,
    pub evolution: Evolution,
    pub pattern: Pattern,
    /// Members in source order.
    pub members: Vec<Member>,
    pub docs: Docs,
    pub span: Span,
}

impl InterfaceDef {
    pub fn memories(&self) -> impl Iterator<Item = &MemoryDef> {
        self.members.iter().filter_map(|m| match m {
            Member::Memory(m) => Some(m),
            Member::Function(_) => None,
        })
    }

    pub fn functions(&self) -> impl Iterator<Item = &FunctionDef> {
        self.members.iter().filter_map(|m| match m {
            Member::Function(f) => Some(f),
            Member::Memory(_) => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Member {
    Memory(MemoryDef),
    Function(FunctionDef),
}

/// Access a side of an interface has to a shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    None,
    Read,
    Write,
}

/// `shared: memory (import: write, export: read, 64);` — size in 64 KiB pages.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryDef {
    pub name: Ident,
    pub import: Access,
    pub export: Access,
    pub pages: u32,
    pub docs: Docs,
    pub span: Span,
}

/// Which of the paper's two function syntaxes was written; the printer keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FnSyntax {
    /// `f: fn(a: T @ mem) (r: T @ out);`
    Named,
    /// `f: (T @ mem) -> (T @ out);`
    Arrow,
}

/// A function of an interface.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDef {
    pub name: Ident,
    pub syntax: FnSyntax,
    pub params: Vec<Param>,
    pub results: Vec<Param>,
    pub docs: Docs,
    pub span: Span,
}

/// A parameter or result: `name: type @ memory`. Names are absent in the arrow syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: Option<Ident>,
    pub ty: TypeRef,
    /// The interface memory the value must live in.
    pub memory: Option<Ident>,
    pub span: Span,
}

/// A type as written, with its postfix attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeRef {
    pub kind: TypeKind,
    pub attrs: Vec<Attr>,
    pub span: Span,
}

impl TypeRef {
    pub fn new(kind: TypeKind) -> TypeRef {
        TypeRef {
            kind,
            attrs: Vec::new(),
            span: Span::DUMMY,
        }
    }

    pub fn with_attr(mut self, kind: AttrKind) -> TypeRef {
        self.attrs.push(Attr {
            kind,
            span: Span::DUMMY,
        });
        self
    }

    pub fn has_attr(&self, kind: AttrKind) -> bool {
        self.attrs.iter().any(|a| a.kind == kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prim {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Bool,
    /// A Unicode scalar value, stored as u32.
    Char,
}

impl Prim {
    pub fn keyword(self) -> &'static str {
        match self {
            Prim::U8 => "u8",
            Prim::U16 => "u16",
            Prim::U32 => "u32",
            Prim::U64 => "u64",
            Prim::I8 => "i8",
            Prim::I16 => "i16",
            Prim::I32 => "i32",
            Prim::I64 => "i64",
            Prim::F32 => "f32",
            Prim::F64 => "f64",
            Prim::Bool => "bool",
            Prim::Char => "char",
        }
    }

    /// Size in bytes, which is also its alignment.
    pub fn size(self) -> u32 {
        match self {
            Prim::U8 | Prim::I8 | Prim::Bool => 1,
            Prim::U16 | Prim::I16 => 2,
            Prim::U32 | Prim::I32 | Prim::F32 | Prim::Char => 4,
            Prim::U64 | Prim::I64 | Prim::F64 => 8,
        }
    }

    pub const ALL: [Prim; 12] = [
        Prim::U8,
        Prim::U16,
        Prim::U32,
        Prim::U64,
        Prim::I8,
        Prim::I16,
        Prim::I32,
        Prim::I64,
        Prim::F32,
        Prim::F64,
        Prim::Bool,
        Prim::Char,
    ];
}

/// Whether a handle owns its resource or borrows it for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandleKind {
    Own,
    Borrow,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypeKind {
    Prim(Prim),
    /// A struct, union, enum, flags or resource (a resource name alone means `own<R>`).
    Named(Ident),
    /// `[]T` — length and capacity, elements 64-byte aligned.
    Array(Box<TypeRef>),
    /// `[N]T`
    FixedArray(Box<TypeRef>, u32),
    /// `option<T>`
    Option(Box<TypeRef>),
    /// `result<T, E>`, `result<T>`, `result<_, E>`, `result`
    Result {
        ok: Option<Box<TypeRef>>,
        err: Option<Box<TypeRef>>,
    },
    /// `own<R>` / `borrow<R>`
    Handle(HandleKind, Ident),
    /// `map<K, V>`: entries in the sender's order, stored like `[]E` for the
    /// inline struct `E { key: K; value: V; }` (docs/FORMAT.md §6.5). `K` is
    /// a component-model map key: an integer, `bool`, `char` or a `#string`.
    Map {
        key: Box<TypeRef>,
        value: Box<TypeRef>,
    },
}

/// Postfix attributes: `[]point #aos`, `[]u8 #string`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrKind {
    /// Struct-of-arrays: the default for arrays of structs.
    Soa,
    /// Array-of-structs.
    Aos,
    /// Bunch of values of arrays (arrays of unions).
    Bovoa,
    /// Bunch of values of structs (arrays of unions).
    Bovos,
    /// `[]u8` as UTF-8 or `[]u16` as UTF-16 text.
    String,
}

impl AttrKind {
    pub fn keyword(self) -> &'static str {
        match self {
            AttrKind::Soa => "soa",
            AttrKind::Aos => "aos",
            AttrKind::Bovoa => "bovoa",
            AttrKind::Bovos => "bovos",
            AttrKind::String => "string",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attr {
    pub kind: AttrKind,
    pub span: Span,
}

impl UnionDef {
    /// The tag of every case in order: explicit tags as written, implicit ones
    /// one more than the previous case's (the first implicit tag is 1).
    /// Saturates at `u64::MAX`; the resolver rejects tags that do not fit.
    pub fn effective_tags(&self) -> Vec<u64> {
        let mut next = 1u64;
        self.cases
            .iter()
            .map(|c| {
                let tag = c.tag.unwrap_or(next);
                next = tag.saturating_add(1);
                tag
            })
            .collect()
    }
}

impl EnumDef {
    /// The value of every case in order: explicit values as written, implicit
    /// ones one more than the previous case's (the first implicit value is 0).
    /// Saturates at `u64::MAX`; the resolver rejects values that do not fit.
    pub fn effective_values(&self) -> Vec<u64> {
        let mut next = Some(0u64);
        self.cases
            .iter()
            .map(|c| {
                let value = c.value.or(next).unwrap_or(u64::MAX);
                next = value.checked_add(1);
                value
            })
            .collect()
    }
}

impl File {
    /// A copy with every span set to [`Span::DUMMY`], for comparing trees
    /// parsed from different text (or built by code).
    pub fn without_spans(&self) -> File {
        let mut file = self.clone();
        file.clear_spans();
        file
    }

    fn clear_spans(&mut self) {
        if let Some(p) = &mut self.package {
            p.span = Span::DUMMY;
        }
        for item in &mut self.items {
            match item {
                Item::Struct(s) => {
                    s.span = Span::DUMMY;
                    s.name.span = Span::DUMMY;
                    for f in &mut s.fields {
                        f.span = Span::DUMMY;
                        f.name.span = Span::DUMMY;
                        f.ty.clear_spans();
                        if let Some(Literal::Name(id)) = &mut f.default {
                            id.span = Span::DUMMY;
                        }
                    }
                }
                Item::Union(u) => {
                    u.span = Span::DUMMY;
                    u.name.span = Span::DUMMY;
                    for c in &mut u.cases {
                        c.span = Span::DUMMY;
                        c.name.span = Span::DUMMY;
                        if let Some(ty) = &mut c.ty {
                            ty.clear_spans();
                        }
                    }
                }
                Item::Enum(e) => {
                    e.span = Span::DUMMY;
                    e.name.span = Span::DUMMY;
                    for c in &mut e.cases {
                        c.span = Span::DUMMY;
                        c.name.span = Span::DUMMY;
                    }
                }
                Item::Flags(f) => {
                    f.span = Span::DUMMY;
                    f.name.span = Span::DUMMY;
                    for c in &mut f.flags {
                        c.span = Span::DUMMY;
                        c.name.span = Span::DUMMY;
                    }
                }
                Item::Resource(r) => {
                    r.span = Span::DUMMY;
                    r.name.span = Span::DUMMY;
                }
                Item::Interface(i) => {
                    i.span = Span::DUMMY;
                    i.name.span = Span::DUMMY;
                    for m in &mut i.members {
                        match m {
                            Member::Memory(m) => {
                                m.span = Span::DUMMY;
                                m.name.span = Span::DUMMY;
                            }
                            Member::Function(f) => {
                                f.span = Span::DUMMY;
                                f.name.span = Span::DUMMY;
                                for p in f.params.iter_mut().chain(f.results.iter_mut()) {
                                    p.span = Span::DUMMY;
                                    p.ty.clear_spans();
                                    for id in p.name.iter_mut().chain(p.memory.iter_mut()) {
                                        id.span = Span::DUMMY;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

impl TypeRef {
    fn clear_spans(&mut self) {
        self.span = Span::DUMMY;
        for attr in &mut self.attrs {
            attr.span = Span::DUMMY;
        }
        match &mut self.kind {
            TypeKind::Prim(_) => {}
            TypeKind::Named(id) | TypeKind::Handle(_, id) => id.span = Span::DUMMY,
            TypeKind::Array(elem) | TypeKind::FixedArray(elem, _) | TypeKind::Option(elem) => {
                elem.clear_spans()
            }
            TypeKind::Result { ok, err } => {
                for t in ok.iter_mut().chain(err.iter_mut()) {
                    t.clear_spans();
                }
            }
            TypeKind::Map { key, value } => {
                key.clear_spans();
                value.clear_spans();
            }
        }
    }
}
