//! The Rust code generator behind `karmem-bridge gen rust`.
//!
//! Owns: turning a [`Layout`] into Rust source with typed, zero-copy views
//! (`FooView`) and top-down builders (`FooBuilder`) for every struct, Rust
//! enums for IDL enums, SoA column accessors (`FooSoa`, `FooSoaBuilder`) and
//! the column hashes as constants. The output depends only on
//! `karmem-format` with `default-features = false, features = ["alloc"]`,
//! so it builds for `no_std` targets such as `wasm32-unknown-unknown`.
//!
//! Typed accessors cover scalars, enums, flags (up to 32), handles, strings,
//! arrays of scalars, SoA and AoS arrays of structs, and nested structs. For
//! other field types (unions, options, results, fixed arrays, arrays of
//! arrays, bunches) the view offers `<field>_offset()`, the absolute offset of
//! the field's inline bytes, for the caller to read with `karmem_format::view`;
//! the builder offers the same offset to write at. This is stated in the
//! generated doc comments rather than hidden.
//!
//! Does not own: the layout (`layout`), or generators for other languages.

use std::fmt::Write as _;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use karmem_idl::ast::{Literal, Prim};

use crate::layout::{ArrayForm, Kind, Layout, Leaf, StructInfo, TypeId};

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for", "if", "impl", "in",
    "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super",
    "trait", "true", "type", "unsafe", "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box",
    "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// A field or method name: `wide-name` -> `wide_name`, keywords escaped.
fn snake(name: &str) -> String {
    let s: String = name.chars().map(|c| if c == '-' || c == '.' { '_' } else { c }).collect();
    if KEYWORDS.contains(&s.as_str()) { format!("r#{s}") } else { s }
}

/// A type name: `temperature_reading` -> `TemperatureReading`.
fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in name.chars() {
        if c == '_' || c == '-' || c == '.' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'T');
    }
    out
}

/// `foo` + `_suffix` as an identifier (the raw prefix of keywords is dropped).
fn suffixed(name: &str, suffix: &str) -> String {
    format!("{}{suffix}", snake(name).trim_start_matches("r#"))
}

fn rust_prim(p: Prim) -> &'static str {
    match p {
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

fn uint(width: u32) -> &'static str {
    match width {
        1 => "u8",
        2 => "u16",
        4 => "u32",
        _ => "u64",
    }
}

/// A numeric prim that can be a `Column<T>`/`&[T]` (not bool/char).
fn pod(p: Prim) -> bool {
    !matches!(p, Prim::Bool | Prim::Char)
}

/// A Rust literal for a field's default (or its zero).
fn default_literal(p: Prim, lit: Option<&Literal>) -> String {
    let ty = rust_prim(p);
    match (p, lit) {
        (Prim::Bool, Some(Literal::Bool(b))) => b.to_string(),
        (Prim::Bool, _) => "false".into(),
        (Prim::Char, Some(Literal::Char(c))) => format!("'\\u{{{:x}}}'", *c as u32),
        (Prim::Char, _) => "'\\0'".into(),
        (Prim::F32 | Prim::F64, Some(Literal::Float(f))) => format!("{f:?}_{ty}"),
        (_, Some(Literal::Int(i))) => format!("{i}_{ty}"),
        (Prim::F32 | Prim::F64, _) => format!("0.0_{ty}"),
        _ => format!("0_{ty}"),
    }
}

/// Generates Rust source for every struct and enum of `layout`.
pub fn generate(layout: &Layout, source_name: &str) -> String {
    let mut g = Gen { layout, out: String::new() };
    g.header(source_name);
    for (_, id) in layout.named_items() {
        match &layout.get(id).kind {
            Kind::Enum(_) => g.enumeration(id),
            Kind::Struct(s) => {
                g.view(s);
                g.builder(s);
            }
            _ => {}
        }
    }
    // Argument and result structs of interface functions (FORMAT.md §10).
    let mut functions: Vec<(&str, crate::layout::FunctionLayout)> = layout.functions().collect();
    functions.sort_by_key(|(name, _)| *name);
    for (_, f) in functions {
        for id in [f.params, f.results] {
            if let Some(s) = layout.as_struct(id) {
                g.view(s);
                g.builder(s);
            }
        }
    }
    // SoA helpers for every struct used as SoA elements.
    let mut soa_elems = Vec::new();
    for i in 0..layout.len() {
        if let Kind::Array { elem, form: ArrayForm::Soa } = &layout.get(TypeId(i as u32)).kind
            && layout.as_struct(*elem).is_some()
            && !soa_elems.contains(elem)
        {
            soa_elems.push(*elem);
        }
    }
    for elem in soa_elems {
        g.soa(elem);
    }
    g.out
}

struct Gen<'l> {
    layout: &'l Layout,
    out: String,
}

/// How a field is accessed in generated code.
enum Access {
    Scalar(Prim),
    Enum { name: String, width: u32 },
    Flags { width: u32 },
    Handle,
    Utf8,
    Utf16,
    ScalarArray(Prim),
    Soa(TypeId),
    Aos(TypeId),
    Inline(TypeId),
    Dynamic(TypeId),
    Raw,
}

impl Gen<'_> {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn header(&mut self, source: &str) {
        let _ = writeln!(
            self.out,
            "// Generated by `karmem-bridge gen rust` from `{source}`. Do not edit.\n\
             //\n\
             // Views read a message zero-copy with a bounds check on every access;\n\
             // builders write one top-down (FORMAT.md). Needs `karmem-format` with\n\
             // `default-features = false, features = [\"alloc\"]`; works in `no_std`.\n\
             #![allow(dead_code, unused_imports, clippy::all)]\n\n\
             use karmem_format::builder::{{Builder, TooLarge}};\n\
             use karmem_format::raw;\n\
             use karmem_format::view::{{Column, Message, Slot, Soa}};\n\
             use karmem_format::{{Error, ErrorKind}};\n"
        );
    }

    fn access(&self, ty: TypeId) -> Access {
        let layout = self.layout;
        match &layout.get(ty).kind {
            Kind::Prim(p) => Access::Scalar(*p),
            Kind::Enum(e) => Access::Enum { name: camel(&e.name), width: e.width },
            Kind::Flags(_) if layout.get(ty).size <= 4 => Access::Flags { width: layout.get(ty).size },
            Kind::Handle { .. } => Access::Handle,
            Kind::String { utf16: false } => Access::Utf8,
            Kind::String { utf16: true } => Access::Utf16,
            Kind::Array { elem, form: ArrayForm::Plain } => match &layout.get(*elem).kind {
                Kind::Prim(p) if pod(*p) => Access::ScalarArray(*p),
                Kind::Struct(_) => Access::Aos(*elem),
                _ => Access::Raw,
            },
            Kind::Array { elem, form: ArrayForm::Soa } if layout.as_struct(*elem).is_some() => Access::Soa(*elem),
            Kind::Struct(s) if s.dynamic => Access::Dynamic(ty),
            Kind::Struct(_) => Access::Inline(ty),
            _ => Access::Raw,
        }
    }

    fn struct_name(&self, ty: TypeId) -> String {
        self.layout.as_struct(ty).map(|s| camel(&s.name)).unwrap_or_else(|| "Unknown".into())
    }

    fn enumeration(&mut self, id: TypeId) {
        let Kind::Enum(e) = &self.layout.get(id).kind else { return };
        let name = camel(&e.name);
        let repr = uint(e.width);
        let _ = writeln!(self.out, "/// IDL enum `{}`.\n#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]\n#[repr({repr})]\npub enum {name} {{", e.name);
        for (case, value) in &e.cases {
            let _ = writeln!(self.out, "    {} = {value},", camel(case));
        }
        let _ = writeln!(self.out, "}}\n\nimpl {name} {{\n    pub fn from_repr(v: {repr}) -> Option<{name}> {{\n        match v {{");
        for (case, value) in &e.cases {
            let _ = writeln!(self.out, "            {value} => Some({name}::{}),", camel(case));
        }
        let _ = writeln!(self.out, "            _ => None,\n        }}\n    }}\n}}\n");
    }

    fn view(&mut self, s: &StructInfo) {
        let name = camel(&s.name);
        let kind = if s.dynamic { "dynamic" } else { "inline" };
        let _ = writeln!(
            self.out,
            "/// A view of IDL struct `{}` ({kind}).\n#[derive(Debug, Clone, Copy)]\npub struct {name}View<'a> {{\n    msg: Message<'a>,\n    at: u32,\n    used: u64,\n}}\n",
            s.name
        );
        let _ = writeln!(self.out, "impl<'a> {name}View<'a> {{");
        if s.dynamic {
            let _ = writeln!(
                self.out,
                "    /// The struct whose body is at `at` (0: the empty struct, every field default).\n    pub fn at(msg: Message<'a>, at: u32) -> Result<Self, Error> {{\n        let body = msg.dynamic_struct(at)?;\n        Ok(Self {{ msg, at, used: body.used() }})\n    }}\n"
            );
        } else {
            let _ = writeln!(
                self.out,
                "    pub const SIZE: u32 = {};\n\n    /// The struct whose inline bytes are at `at`.\n    pub fn at(msg: Message<'a>, at: u32) -> Result<Self, Error> {{\n        msg.slice(at, Self::SIZE as u64)?;\n        Ok(Self {{ msg, at, used: Self::SIZE as u64 }})\n    }}\n\n    /// A field its writer did not write: every field reads as its default.\n    pub fn absent(msg: Message<'a>) -> Self {{\n        Self {{ msg, at: 0, used: 0 }}\n    }}\n",
                s.body_size
            );
        }
        self.line(
            "    /// The root of a message.\n    pub fn root(bytes: &'a [u8]) -> Result<Self, Error> {\n        let msg = Message::new(bytes)?;\n        Self::at(msg, msg.root())\n    }\n\n    #[inline]\n    fn present(&self, offset: u32, size: u32) -> Option<u32> {\n        (offset as u64 + size as u64 <= self.used).then_some(self.at + offset)\n    }\n",
        );
        for f in &s.fields {
            let size = self.layout.get(f.ty).size;
            let m = snake(&f.name);
            let off = f.offset;
            let doc = format!("    /// Field `{}`.", f.name);
            self.line(&doc);
            match self.access(f.ty) {
                Access::Scalar(p) => {
                    let ty = rust_prim(p);
                    let read = match p {
                        Prim::Bool => "self.msg.bool(p)".to_string(),
                        Prim::Char => "self.msg.char(p)".to_string(),
                        _ => format!("self.msg.scalar::<{ty}>(p)"),
                    };
                    let default = default_literal(p, f.default.as_ref());
                    let _ = writeln!(
                        self.out,
                        "    pub fn {m}(&self) -> Result<{ty}, Error> {{\n        match self.present({off}, {size}) {{\n            Some(p) => {read},\n            None => Ok({default}),\n        }}\n    }}\n"
                    );
                }
                Access::Enum { name: e, width } => {
                    let repr = uint(width);
                    let default = match &f.default {
                        Some(Literal::Name(n)) => format!("Some({e}::{})", camel(&n.name)),
                        _ => format!("{e}::from_repr(0)"),
                    };
                    let _ = writeln!(
                        self.out,
                        "    pub fn {m}(&self) -> Result<{e}, Error> {{\n        match self.present({off}, {size}) {{\n            Some(p) => {{\n                let v = self.msg.scalar::<{repr}>(p)?;\n                {e}::from_repr(v).ok_or(Error::new(ErrorKind::InvalidEnum {{ value: v as u64 }}, p))\n            }}\n            None => {default}.ok_or(Error::new(ErrorKind::NoDefault, self.at)),\n        }}\n    }}\n"
                    );
                }
                Access::Flags { width } => {
                    let (ty, read) = match width {
                        0 => ("u8", "Ok(0)".to_string()),
                        w => (uint(w), format!("self.msg.scalar::<{}>(p)", uint(w))),
                    };
                    let _ = writeln!(
                        self.out,
                        "    /// Bit `i` is flag `i` in declaration order.\n    pub fn {m}(&self) -> Result<{ty}, Error> {{\n        match self.present({off}, {size}) {{\n            Some(p) => {{ let _ = p; {read} }}\n            None => Ok(0),\n        }}\n    }}\n"
                    );
                }
                Access::Handle => {
                    let _ = writeln!(
                        self.out,
                        "    /// A resource handle.\n    pub fn {m}(&self) -> Result<u32, Error> {{\n        match self.present({off}, 4) {{\n            Some(p) => self.msg.scalar::<u32>(p),\n            None => Ok(0),\n        }}\n    }}\n"
                    );
                }
                Access::Utf8 => {
                    let default = match &f.default {
                        Some(Literal::Str(t)) => format!("{t:?}"),
                        _ => "\"\"".into(),
                    };
                    let _ = writeln!(
                        self.out,
                        "    pub fn {m}(&self) -> Result<&'a str, Error> {{\n        match self.present({off}, 12) {{\n            Some(p) => {{\n                let slot = self.msg.slot(p)?;\n                let bytes = slot.plain_bytes(self.msg, 1)?;\n                core::str::from_utf8(bytes).map_err(|_| Error::new(ErrorKind::InvalidUtf8, slot.offset))\n            }}\n            None => Ok({default}),\n        }}\n    }}\n"
                    );
                }
                Access::Utf16 | Access::ScalarArray(_) => {
                    let t = match self.access(f.ty) {
                        Access::ScalarArray(p) => rust_prim(p),
                        _ => "u16",
                    };
                    let _ = writeln!(
                        self.out,
                        "    pub fn {m}(&self) -> Result<Column<'a, {t}>, Error> {{\n        match self.present({off}, 12) {{\n            Some(p) => self.msg.slot(p)?.plain::<{t}>(self.msg),\n            None => Column::new(self.msg, 0, 0),\n        }}\n    }}\n"
                    );
                }
                Access::Soa(elem) => {
                    let e = self.struct_name(elem);
                    let _ = writeln!(
                        self.out,
                        "    pub fn {m}(&self) -> Result<{e}Soa<'a>, Error> {{\n        let slot = match self.present({off}, 12) {{\n            Some(p) => self.msg.slot(p)?,\n            None => Slot::default(),\n        }};\n        Ok({e}Soa {{ soa: slot.soa(self.msg)? }})\n    }}\n"
                    );
                }
                Access::Aos(elem) => {
                    let e = self.struct_name(elem);
                    let esize = self.layout.get(elem).size;
                    let len_m = suffixed(&f.name, "_len");
                    let get_m = suffixed(&f.name, "_get");
                    let _ = writeln!(
                        self.out,
                        "    pub fn {len_m}(&self) -> Result<u32, Error> {{\n        match self.present({off}, 12) {{\n            Some(p) => Ok(self.msg.slot(p)?.length),\n            None => Ok(0),\n        }}\n    }}\n\n    /// Element `i`, or `None` past the end.\n    pub fn {get_m}(&self, i: u32) -> Result<Option<{e}View<'a>>, Error> {{\n        let Some(p) = self.present({off}, 12) else {{ return Ok(None) }};\n        let slot = self.msg.slot(p)?;\n        if i >= slot.length {{\n            return Ok(None);\n        }}\n        let at = raw::offset_add(slot.offset, i as u64 * {esize})?;"
                    );
                    if self.layout.is_dynamic_struct(elem) {
                        let _ = writeln!(self.out, "        let body = self.msg.scalar::<u32>(at)?;\n        {e}View::at(self.msg, body).map(Some)\n    }}\n");
                    } else {
                        let _ = writeln!(self.out, "        {e}View::at(self.msg, at).map(Some)\n    }}\n");
                    }
                }
                Access::Inline(t) => {
                    let e = self.struct_name(t);
                    let _ = writeln!(
                        self.out,
                        "    pub fn {m}(&self) -> Result<{e}View<'a>, Error> {{\n        match self.present({off}, {size}) {{\n            Some(p) => {e}View::at(self.msg, p),\n            None => Ok({e}View::absent(self.msg)),\n        }}\n    }}\n"
                    );
                }
                Access::Dynamic(t) => {
                    let e = self.struct_name(t);
                    let _ = writeln!(
                        self.out,
                        "    pub fn {m}(&self) -> Result<{e}View<'a>, Error> {{\n        let body = match self.present({off}, 4) {{\n            Some(p) => self.msg.scalar::<u32>(p)?,\n            None => 0,\n        }};\n        {e}View::at(self.msg, body)\n    }}\n"
                    );
                }
                Access::Raw => {
                    let m = suffixed(&f.name, "_offset");
                    let sig = self.layout.signature(f.ty);
                    let _ = writeln!(
                        self.out,
                        "    /// No typed accessor is generated for `{sig}`: this is the absolute\n    /// offset of the field's inline bytes, or `None` when it is absent.\n    pub fn {m}(&self) -> Option<u32> {{\n        self.present({off}, {size})\n    }}\n"
                    );
                }
            }
        }
        self.line("}\n");
    }

    fn builder(&mut self, s: &StructInfo) {
        let name = camel(&s.name);
        let _ = writeln!(
            self.out,
            "/// Writes IDL struct `{}` top-down into a [`Builder`].\n#[derive(Debug, Clone, Copy)]\npub struct {name}Builder {{\n    /// Offset of the struct's body (dynamic) or inline bytes.\n    pub at: u32,\n}}\n\nimpl {name}Builder {{",
            s.name
        );
        if s.dynamic {
            let _ = writeln!(
                self.out,
                "    /// Bytes this version of the struct uses, header included.\n    pub const USED: u32 = {};\n\n    /// Allocates the struct's body.\n    pub fn new(b: &mut Builder) -> Result<Self, TooLarge> {{\n        Ok(Self {{ at: b.alloc_dynamic_struct(Self::USED)? }})\n    }}\n",
                s.used
            );
        } else {
            let _ = writeln!(
                self.out,
                "    pub const SIZE: u32 = {};\n\n    /// Allocates the struct as an object of its own (a root or payload).\n    pub fn new(b: &mut Builder) -> Result<Self, TooLarge> {{\n        Ok(Self {{ at: b.alloc_object(Self::SIZE as u64)? }})\n    }}\n",
                s.body_size
            );
        }
        self.line(
            "    /// Allocates the struct as the root of the message.\n    pub fn new_root(b: &mut Builder) -> Result<Self, TooLarge> {\n        let s = Self::new(b)?;\n        b.set_root(s.at);\n        Ok(s)\n    }\n",
        );
        for f in &s.fields {
            let off = f.offset;
            let set = suffixed(&f.name, "").replace("r#", "");
            let _ = writeln!(self.out, "    /// Field `{}`.", f.name);
            match self.access(f.ty) {
                Access::Scalar(p) => {
                    let ty = rust_prim(p);
                    let value = match p {
                        Prim::Bool => "v as u8",
                        Prim::Char => "v as u32",
                        _ => "v",
                    };
                    let _ = writeln!(self.out, "    pub fn set_{set}(&self, b: &mut Builder, v: {ty}) {{\n        b.put(self.at + {off}, {value});\n    }}\n");
                }
                Access::Enum { name: e, width } => {
                    let repr = uint(width);
                    let _ = writeln!(self.out, "    pub fn set_{set}(&self, b: &mut Builder, v: {e}) {{\n        b.put(self.at + {off}, v as {repr});\n    }}\n");
                }
                Access::Flags { width } if width > 0 => {
                    let ty = uint(width);
                    let _ = writeln!(self.out, "    pub fn set_{set}(&self, b: &mut Builder, bits: {ty}) {{\n        b.put(self.at + {off}, bits);\n    }}\n");
                }
                Access::Flags { .. } => self.line("    // (no flags declared: nothing to set)\n"),
                Access::Handle => {
                    let _ = writeln!(self.out, "    pub fn set_{set}(&self, b: &mut Builder, handle: u32) {{\n        b.put(self.at + {off}, handle);\n    }}\n");
                }
                Access::Utf8 => {
                    let _ = writeln!(
                        self.out,
                        "    pub fn set_{set}(&self, b: &mut Builder, text: &str) -> Result<(), TooLarge> {{\n        let n = u32::try_from(text.len()).map_err(|_| TooLarge)?;\n        let block = b.alloc_plain_array(self.at + {off}, 1, n, n)?;\n        if n > 0 {{\n            b.bytes_mut(block, text.len()).copy_from_slice(text.as_bytes());\n        }}\n        Ok(())\n    }}\n"
                    );
                }
                Access::Utf16 | Access::ScalarArray(_) => {
                    let (t, size) = match self.access(f.ty) {
                        Access::ScalarArray(p) => (rust_prim(p), p.size()),
                        _ => ("u16", 2),
                    };
                    let _ = writeln!(
                        self.out,
                        "    /// Allocates `len` elements (capacity `capacity`) and returns the block offset.\n    pub fn alloc_{set}(&self, b: &mut Builder, len: u32, capacity: u32) -> Result<u32, TooLarge> {{\n        b.alloc_plain_array(self.at + {off}, {size}, len, capacity)\n    }}\n\n    pub fn set_{set}(&self, b: &mut Builder, values: &[{t}]) -> Result<(), TooLarge> {{\n        let n = u32::try_from(values.len()).map_err(|_| TooLarge)?;\n        let block = self.alloc_{set}(b, n, n)?;\n        for (i, v) in values.iter().enumerate() {{\n            b.put(block + i as u32 * {size}, *v);\n        }}\n        Ok(())\n    }}\n"
                    );
                }
                Access::Soa(elem) => {
                    let e = self.struct_name(elem);
                    let _ = writeln!(
                        self.out,
                        "    /// Allocates the column directory and columns for `len` elements (zeroed).\n    pub fn alloc_{set}(&self, b: &mut Builder, len: u32, capacity: u32) -> Result<{e}SoaBuilder, TooLarge> {{\n        let mut columns = [0u32; {e}Soa::<'static>::COLUMNS.len()];\n        b.alloc_soa_array(self.at + {off}, len, capacity, &{e}Soa::<'static>::COLUMNS, &mut columns)?;\n        Ok({e}SoaBuilder {{ columns, len }})\n    }}\n\n    /// Like `alloc_{set}`, for a writer that fills all `len` elements of every\n    /// column: those are not zeroed first (on a reused builder they hold the\n    /// previous message's bytes until written).\n    pub fn alloc_{set}_to_fill(&self, b: &mut Builder, len: u32, capacity: u32) -> Result<{e}SoaBuilder, TooLarge> {{\n        let mut columns = [0u32; {e}Soa::<'static>::COLUMNS.len()];\n        b.alloc_soa_array_to_fill(self.at + {off}, len, capacity, &{e}Soa::<'static>::COLUMNS, &mut columns)?;\n        Ok({e}SoaBuilder {{ columns, len }})\n    }}\n"
                    );
                }
                Access::Aos(elem) => {
                    let e = self.struct_name(elem);
                    let esize = self.layout.get(elem).size;
                    if self.layout.is_dynamic_struct(elem) {
                        let _ = writeln!(
                            self.out,
                            "    /// Allocates `len` elements (offsets to bodies); then `new_{set}_at` each.\n    pub fn alloc_{set}(&self, b: &mut Builder, len: u32) -> Result<u32, TooLarge> {{\n        b.alloc_plain_array(self.at + {off}, 4, len, len)\n    }}\n\n    /// Allocates element `i`'s body in the block from `alloc_{set}`.\n    pub fn new_{set}_at(&self, b: &mut Builder, block: u32, i: u32) -> Result<{e}Builder, TooLarge> {{\n        let e = {e}Builder::new(b)?;\n        b.put(block + 4 * i, e.at);\n        Ok(e)\n    }}\n"
                        );
                    } else {
                        let _ = writeln!(
                            self.out,
                            "    /// Allocates `len` elements; element `i` is `{e}Builder {{ at: block + i * {esize} }}`.\n    pub fn alloc_{set}(&self, b: &mut Builder, len: u32) -> Result<u32, TooLarge> {{\n        b.alloc_plain_array(self.at + {off}, {esize}, len, len)\n    }}\n\n    pub fn {set}_at(&self, block: u32, i: u32) -> {e}Builder {{\n        {e}Builder {{ at: block + i * {esize} }}\n    }}\n"
                        );
                    }
                }
                Access::Inline(t) => {
                    let e = self.struct_name(t);
                    let m = snake(&f.name);
                    let _ = writeln!(self.out, "    pub fn {m}(&self) -> {e}Builder {{\n        {e}Builder {{ at: self.at + {off} }}\n    }}\n");
                }
                Access::Dynamic(t) => {
                    let e = self.struct_name(t);
                    let _ = writeln!(
                        self.out,
                        "    /// Allocates the nested struct and links it.\n    pub fn new_{set}(&self, b: &mut Builder) -> Result<{e}Builder, TooLarge> {{\n        let e = {e}Builder::new(b)?;\n        b.put(self.at + {off}, e.at);\n        Ok(e)\n    }}\n"
                    );
                }
                Access::Raw => {
                    let _ = writeln!(
                        self.out,
                        "    /// No typed setter is generated for this type: the absolute offset\n    /// of the field's inline bytes, to write with `Builder::put`.\n    pub fn {set}_offset(&self) -> u32 {{\n        self.at + {off}\n    }}\n"
                    );
                }
            }
        }
        self.line("}\n");
    }

    fn soa(&mut self, elem: TypeId) {
        let Some(s) = self.layout.as_struct(elem) else { return };
        let name = camel(&s.name);
        let columns = self.layout.columns(elem).to_vec();
        let _ = writeln!(
            self.out,
            "/// An SoA array of `{}`: one column per flattened leaf (FORMAT.md §6.3).\n#[derive(Debug, Clone, Copy)]\npub struct {name}Soa<'a> {{\n    soa: Soa<'a>,\n}}\n\nimpl<'a> {name}Soa<'a> {{\n    /// (hash, element size) of every column, in flattening order.\n    pub const COLUMNS: [(u32, u32); {}] = [",
            s.name,
            columns.len()
        );
        for c in &columns {
            let _ = writeln!(self.out, "        ({:#010x}, {}), // path {:?}", c.hash, c.size, c.path);
        }
        self.line("    ];\n\n    pub fn len(&self) -> u32 {\n        self.soa.len()\n    }\n\n    pub fn is_empty(&self) -> bool {\n        self.soa.is_empty()\n    }\n");
        let mut builder = String::new();
        for c in &columns {
            let Leaf::Field(t) = c.leaf else { continue };
            let Kind::Prim(p) = self.layout.get(t).kind else { continue };
            let m = self.leaf_name(elem, &c.path);
            let hash = c.hash;
            if pod(p) {
                let ty = rust_prim(p);
                let _ = writeln!(
                    self.out,
                    "    /// Column `{m}`; `None` if the writer did not write it (its elements read as default).\n    pub fn {m}(&self) -> Result<Option<Column<'a, {ty}>>, Error> {{\n        self.soa.column::<{ty}>({hash:#010x})\n    }}\n"
                );
                let _ = writeln!(
                    builder,
                    "    /// Column `{m}` to fill in place (`None` on big-endian hosts: use `set_{m}`).\n    pub fn {m}_mut<'b>(&self, b: &'b mut Builder) -> Option<&'b mut [{ty}]> {{\n        b.column_mut::<{ty}>(self.columns[{idx}], self.len)\n    }}\n\n    pub fn set_{m}(&self, b: &mut Builder, i: u32, v: {ty}) {{\n        b.put(self.columns[{idx}] + i * {size}, v);\n    }}\n",
                    idx = columns.iter().position(|x| x.hash == hash).unwrap_or(0),
                    size = c.size
                );
            } else {
                let value = if p == Prim::Bool { "v as u8" } else { "v as u32" };
                let _ = writeln!(
                    builder,
                    "    pub fn set_{m}(&self, b: &mut Builder, i: u32, v: {}) {{\n        b.put(self.columns[{idx}] + i * {size}, {value});\n    }}\n",
                    rust_prim(p),
                    idx = columns.iter().position(|x| x.hash == hash).unwrap_or(0),
                    size = c.size
                );
            }
        }
        self.line("}\n");
        let _ = writeln!(
            self.out,
            "/// The columns of a freshly allocated SoA array of `{}`.\n#[derive(Debug, Clone, Copy)]\npub struct {name}SoaBuilder {{\n    /// Column offsets, in the order of `{name}Soa::COLUMNS`.\n    pub columns: [u32; {}],\n    pub len: u32,\n}}\n\nimpl {name}SoaBuilder {{\n{builder}}}\n",
            s.name,
            columns.len()
        );
    }

    /// A method name for a flattened leaf: field names joined by `_`.
    fn leaf_name(&self, elem: TypeId, path: &[u32]) -> String {
        let mut names = vec![];
        let mut ty = elem;
        for &p in path {
            let Some(s) = self.layout.as_struct(ty) else { break };
            let Some(f) = s.fields.get(p as usize) else { break };
            names.push(snake(&f.name).trim_start_matches("r#").to_string());
            ty = f.ty;
        }
        let joined = names.join("_");
        if KEYWORDS.contains(&joined.as_str()) { format!("r#{joined}") } else { joined }
    }
}
