//! The Rust code generator behind `karmem-bridge gen rust`.
//!
//! Owns: turning a [`Layout`] into Rust source over `karmem_format::typed`:
//! for every struct a zero-copy view (`FooView`), a top-down builder
//! (`FooBuilder`) and a value type (`Foo`, written with
//! `karmem_format::typed::encode`); for every union a view enum of variant
//! views (`FooView::Case(..)`) and a value enum (`Foo::Case(..)`); Rust enums
//! for IDL enums; a bits newtype per flags item; SoA column accessors
//! (`FooSoa`, `FooSoaBuilder`) for every struct used as SoA elements, and
//! per-case accessors for bunches (`FooBovoa`, `FooBovos`). A `map<K, V>` is
//! the SoA array of its entry struct (FORMAT.md §6.5), so its view is the
//! entry's `FooSoa` with `get(i)` / `iter()` giving `(key, value)` views (an
//! inline-struct value as a `FooRow`, read from its columns), and its
//! builders are `FooMapBuilder` (`push` entries in order) besides the SoA
//! ones. Options, results,
//! fixed arrays, plain arrays and arrays of arrays map to `Option`, `Result`,
//! `typed::Fixed`, `typed::List` / `view::Column` (scalars, as `&[T]`
//! slices), so every field of every type has a typed accessor and setter.
//! Every view also implements `typed::Dump`, a plain text the tests compare
//! with the dynamic decoder. Every struct's view has `validate` and
//! `root_validated`: whole-message validation generated per type
//! (`gen_rust/validate.rs`), equal to the dynamic `validate`.
//!
//! The output refers to everything outside itself by absolute path
//! (`::core::…`, `::karmem_format::…`), so IDL names such as `option`,
//! `result` or `error` cannot shadow what it uses. It depends only on
//! `karmem-format` with `default-features = false, features = ["alloc"]`,
//! so it builds for `no_std` targets such as `wasm32-unknown-unknown`.
//!
//! Does not own: the layout (`layout`), the typed primitives (`typed`), or
//! generators for other languages.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use karmem_idl::ast::{Literal, Prim};

use crate::layout::{ArrayForm, Kind, Layout, Leaf, StructInfo, TypeId, UnionInfo};

mod validate;

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for", "if", "impl", "in",
    "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super",
    "trait", "true", "type", "unsafe", "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box",
    "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Identifiers that cannot be raw (`r#self` is not allowed).
const NOT_RAW: &[&str] = &["self", "Self", "super", "crate", "_"];

/// A field or method name: `wide-name` -> `wide_name`, keywords escaped.
pub fn field_name(name: &str) -> String {
    let s: String = name.chars().map(|c| if c == '-' || c == '.' { '_' } else { c }).collect();
    if NOT_RAW.contains(&s.as_str()) {
        format!("{s}_")
    } else if KEYWORDS.contains(&s.as_str()) {
        format!("r#{s}")
    } else {
        s
    }
}

/// A type or variant name: `temperature_reading` -> `TemperatureReading`.
pub fn camel(name: &str) -> String {
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
    if out == "Self" {
        out.push('_');
    }
    out
}

/// `foo` + `suffix` as an identifier (no raw prefix needed once suffixed).
fn suffixed(name: &str, suffix: &str) -> String {
    let base = field_name(name);
    let base = base.trim_start_matches("r#");
    let out = format!("{base}{suffix}");
    if KEYWORDS.contains(&out.as_str()) { format!("r#{out}") } else { out }
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

const KF: &str = "::karmem_format";
const RES: &str = "::core::result::Result";
const OPT: &str = "::core::option::Option";
const ERR: &str = "::karmem_format::Error";

/// The Rust names the generator gives a layout's named types (structs,
/// unions, enums, flags): unique, in CamelCase. The view of `T` is `TView`,
/// its builder `TBuilder`, its SoA accessor `TSoa`.
pub fn type_names(layout: &Layout) -> HashMap<TypeId, String> {
    let mut names = HashMap::new();
    let mut taken: Vec<String> = Vec::new();
    for i in 0..layout.len() {
        let id = TypeId(i as u32);
        let name = match &layout.get(id).kind {
            Kind::Struct(s) => &s.name,
            Kind::Union(u) => &u.name,
            Kind::Enum(e) => &e.name,
            Kind::Flags(f) => &f.name,
            _ => continue,
        };
        let base = camel(name);
        let mut candidate = base.clone();
        let mut n = 2;
        while taken.contains(&candidate) {
            candidate = format!("{base}{n}");
            n += 1;
        }
        taken.push(candidate.clone());
        names.insert(id, candidate);
    }
    names
}

/// Generates Rust source for every type of `layout`.
pub fn generate(layout: &Layout, source_name: &str) -> String {
    let mut g = Gen { layout, out: String::new(), names: type_names(layout), lt: HashMap::new(), read_lt: HashMap::new() };
    g.header(source_name);
    let mut soa_elems = Vec::new();
    let mut bunches = Vec::new();
    for i in 0..layout.len() {
        let id = TypeId(i as u32);
        match &layout.get(id).kind {
            Kind::Enum(_) => g.enumeration(id),
            Kind::Flags(_) => g.flags(id),
            Kind::Struct(s) => {
                g.view(id, s);
                g.builder(id, s);
                g.value_struct(id, s);
            }
            Kind::Union(u) => {
                g.union_view(id, u);
                g.union_value(id, u);
            }
            Kind::Array { elem, form: ArrayForm::Soa }
                if layout.as_struct(*elem).is_some() && !soa_elems.contains(elem) =>
            {
                soa_elems.push(*elem);
            }
            Kind::Array { elem, form: ArrayForm::Bunch { soa } } if !bunches.contains(&(*elem, *soa)) => {
                bunches.push((*elem, *soa));
            }
            _ => {}
        }
    }
    // `#bovos` arrays of struct payloads are SoA arrays too.
    for &(elem, soa) in &bunches {
        if let (true, Kind::Union(u)) = (soa, &layout.get(elem).kind) {
            for c in &u.cases {
                if let Some(t) = c.ty
                    && layout.as_struct(t).is_some()
                    && !soa_elems.contains(&t)
                {
                    soa_elems.push(t);
                }
            }
        }
    }
    soa_elems.sort();
    // Inline-struct map values are read from their columns as rows.
    let mut rows = Vec::new();
    for &elem in &soa_elems {
        if let Some((_, value)) = layout.as_struct(elem).and_then(crate::layout::map_entry_types) {
            row_structs(layout, value, &mut rows);
        }
    }
    rows.sort();
    for elem in soa_elems {
        g.soa(elem);
    }
    for id in rows {
        g.row(id);
    }
    bunches.sort_by_key(|b| (b.0, b.1));
    for (elem, soa) in bunches {
        g.bunch(elem, soa);
    }
    // Per-type validators (FORMAT.md §9) for every struct, as a root.
    let views: Vec<(TypeId, String)> = (0..layout.len())
        .map(|i| TypeId(i as u32))
        .filter(|&id| layout.as_struct(id).is_some())
        .map(|id| (id, format!("{}View", g.name(id))))
        .collect();
    g.out.push_str(&validate::generate(layout, &views));
    g.out
}

struct Gen<'l> {
    layout: &'l Layout,
    out: String,
    names: HashMap<TypeId, String>,
    /// Whether a type's value (write) form borrows (`'v`).
    lt: HashMap<TypeId, bool>,
    /// Whether a type's view (read) form borrows the message (`'a`).
    read_lt: HashMap<TypeId, bool>,
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
             // Views (`FooView`) read a message zero-copy with a bounds check on every\n\
             // access; builders (`FooBuilder`) and value types (`Foo`, written with\n\
             // `karmem_format::typed::encode`) write one top-down (FORMAT.md). Needs\n\
             // `karmem-format` with `default-features = false, features = [\"alloc\"]`;\n\
             // works in `no_std`.\n\
             #![allow(dead_code, unused_imports, unused_variables, unused_parens, unused_assignments, unreachable_patterns, non_camel_case_types, non_snake_case, non_upper_case_globals, clippy::all)]\n"
        );
    }

    fn name(&self, id: TypeId) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| "Unknown".into())
    }

    /// Whether `id`'s value type needs the `'v` lifetime.
    fn needs_lt(&mut self, id: TypeId) -> bool {
        if let Some(&known) = self.lt.get(&id) {
            return known;
        }
        self.lt.insert(id, false); // cycles go through arrays, which borrow anyway
        let layout = self.layout;
        let result = match &layout.get(id).kind {
            Kind::Prim(_) | Kind::Handle { .. } | Kind::Enum(_) | Kind::Flags(_) => false,
            Kind::String { .. } | Kind::Array { .. } => true,
            Kind::FixedArray { elem, .. } => self.needs_lt(*elem),
            Kind::Option { some, .. } => self.needs_lt(*some),
            Kind::Result { ok, err, .. } => {
                let a = ok.is_some_and(|t| self.needs_lt(t));
                let b = err.is_some_and(|t| self.needs_lt(t));
                a || b
            }
            Kind::Struct(s) => s.fields.iter().map(|f| f.ty).collect::<Vec<_>>().into_iter().any(|t| self.needs_lt(t)),
            Kind::Union(u) => u.cases.iter().filter_map(|c| c.ty).collect::<Vec<_>>().into_iter().any(|t| self.needs_lt(t)),
        };
        self.lt.insert(id, result);
        result
    }

    /// Whether `id`'s view type needs the `'a` lifetime.
    fn read_needs_lt(&mut self, id: TypeId) -> bool {
        if let Some(&known) = self.read_lt.get(&id) {
            return known;
        }
        self.read_lt.insert(id, true); // recursion goes through views, which borrow
        let layout = self.layout;
        let result = match &layout.get(id).kind {
            Kind::Prim(_) | Kind::Handle { .. } | Kind::Enum(_) | Kind::Flags(_) => false,
            Kind::Option { some, .. } => self.read_needs_lt(*some),
            Kind::Result { ok, err, .. } => {
                let a = ok.is_some_and(|t| self.read_needs_lt(t));
                let b = err.is_some_and(|t| self.read_needs_lt(t));
                a || b
            }
            Kind::Union(u) => u.cases.iter().filter_map(|c| c.ty).collect::<Vec<_>>().into_iter().any(|t| self.read_needs_lt(t)),
            _ => true,
        };
        self.read_lt.insert(id, result);
        result
    }

    /// The view (read) type of `id`, with lifetime `'a`.
    fn read_ty(&mut self, id: TypeId) -> String {
        let layout = self.layout;
        match &layout.get(id).kind {
            Kind::Prim(p) => rust_prim(*p).into(),
            Kind::Handle { .. } => "u32".into(),
            Kind::Enum(_) | Kind::Flags(_) => self.name(id),
            Kind::String { utf16: false } => "&'a str".into(),
            Kind::String { utf16: true } => format!("{KF}::typed::Utf16<'a>"),
            Kind::Array { elem, form } => match (form, &layout.get(*elem).kind) {
                (ArrayForm::Plain, Kind::Prim(p)) if pod(*p) => format!("{KF}::view::Column<'a, {}>", rust_prim(*p)),
                (ArrayForm::Plain, _) => format!("{KF}::typed::List<'a, {}>", self.read_ty(*elem)),
                (ArrayForm::Soa, Kind::Struct(_)) => format!("{}Soa<'a>", self.name(*elem)),
                (ArrayForm::Soa, _) => format!("{KF}::typed::UnionSoa<'a, {}>", self.read_ty(*elem)),
                (ArrayForm::Bunch { soa }, _) => {
                    format!("{}{}<'a>", self.name(*elem), if *soa { "Bovos" } else { "Bovoa" })
                }
            },
            Kind::FixedArray { elem, len } => format!("{KF}::typed::Fixed<'a, {}, {len}>", self.read_ty(*elem)),
            Kind::Option { some, .. } => format!("{OPT}<{}>", self.read_ty(*some)),
            Kind::Result { ok, err, .. } => {
                let ok = ok.map_or("()".into(), |t| self.read_ty(t));
                let err = err.map_or("()".into(), |t| self.read_ty(t));
                format!("{RES}<{ok}, {err}>")
            }
            Kind::Struct(_) => format!("{}View<'a>", self.name(id)),
            Kind::Union(_) => {
                if self.read_needs_lt(id) {
                    format!("{}View<'a>", self.name(id))
                } else {
                    format!("{}View", self.name(id))
                }
            }
        }
    }

    /// The value (write) type of `id`, borrowing for `lt` (`'v` or `'_`).
    fn write_ty(&mut self, id: TypeId, lt: &str) -> String {
        let layout = self.layout;
        match &layout.get(id).kind {
            Kind::Prim(p) => rust_prim(*p).into(),
            Kind::Handle { .. } => "u32".into(),
            Kind::Enum(_) | Kind::Flags(_) => self.name(id),
            Kind::String { utf16: false } => format!("&{lt} str"),
            Kind::String { utf16: true } => format!("&{lt} [u16]"),
            Kind::Array { elem, form } => {
                let e = self.write_ty(*elem, lt);
                match form {
                    ArrayForm::Plain => format!("&{lt} [{e}]"),
                    ArrayForm::Soa => format!("{KF}::typed::SoaOf<{lt}, {e}>"),
                    ArrayForm::Bunch { soa } => format!("{KF}::typed::BunchOf<{lt}, {e}, {soa}>"),
                }
            }
            Kind::FixedArray { elem, len } => format!("[{}; {len}]", self.write_ty(*elem, lt)),
            Kind::Option { some, .. } => format!("{OPT}<{}>", self.write_ty(*some, lt)),
            Kind::Result { ok, err, .. } => {
                let ok = ok.map_or("()".into(), |t| self.write_ty(t, lt));
                let err = err.map_or("()".into(), |t| self.write_ty(t, lt));
                format!("{RES}<{ok}, {err}>")
            }
            Kind::Struct(_) | Kind::Union(_) => {
                if self.needs_lt(id) {
                    format!("{}<{lt}>", self.name(id))
                } else {
                    self.name(id)
                }
            }
        }
    }

    /// `<'a>` after a view's name when it has the lifetime.
    fn view_generics(&mut self, id: TypeId) -> &'static str {
        if self.read_needs_lt(id) { "<'a>" } else { "" }
    }

    fn value_generics(&mut self, id: TypeId) -> &'static str {
        if self.needs_lt(id) { "<'v>" } else { "" }
    }

    /// An expression of the value an absent field of type `ty` reads as:
    /// its declared default, else its zero value (FORMAT.md §7).
    fn default_expr(&mut self, ty: TypeId, default: Option<&Literal>, msg: &str) -> String {
        let layout = self.layout;
        let r = self.read_ty(ty);
        let zero = format!("<{r} as {KF}::typed::Read<'a>>::zero({msg})");
        let Some(lit) = default else { return zero };
        match (&layout.get(ty).kind, lit) {
            (Kind::Prim(Prim::Bool), Literal::Bool(b)) => format!("Ok({b})"),
            (Kind::Prim(Prim::Char), Literal::Char(c)) => format!("Ok('\\u{{{:x}}}')", *c as u32),
            (Kind::Prim(p @ (Prim::F32 | Prim::F64)), Literal::Float(f)) => {
                format!("Ok({}::from_bits({:#x}))", rust_prim(*p), if *p == Prim::F32 { (*f as f32).to_bits() as u64 } else { f.to_bits() })
            }
            (Kind::Prim(p @ (Prim::F32 | Prim::F64)), Literal::Int(i)) => format!("Ok({i}_{})", rust_prim(*p)).replace("_f", ".0_f"),
            (Kind::Prim(p), Literal::Int(i)) => format!("Ok({i}_{})", rust_prim(*p)),
            (Kind::String { utf16: false }, Literal::Str(t)) => format!("Ok({t:?})"),
            (Kind::Enum(_), Literal::Name(n)) => format!("Ok({}::{})", self.name(ty), camel(&n.name)),
            (Kind::Flags(f), Literal::Name(n)) if f.flags.contains(&n.name) => {
                format!("Ok({}::{})", self.name(ty), flag_const(&n.name))
            }
            (Kind::Union(u), Literal::Name(n)) if u.cases.iter().any(|c| c.name == n.name && c.ty.is_none()) => {
                format!("Ok({}View::{})", self.name(ty), camel(&n.name))
            }
            _ => zero,
        }
    }

    fn enumeration(&mut self, id: TypeId) {
        let Kind::Enum(e) = &self.layout.get(id).kind else { return };
        let name = self.name(id);
        let repr = uint(e.width);
        let w = e.width;
        let _ = writeln!(self.out, "/// IDL enum `{}`.\n#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]\n#[repr({repr})]\npub enum {name} {{", e.name);
        for (case, value) in &e.cases {
            let _ = writeln!(self.out, "    {} = {value},", camel(case));
        }
        let _ = writeln!(self.out, "}}\n\nimpl {name} {{\n    pub fn from_repr(v: {repr}) -> {OPT}<{name}> {{\n        match v {{");
        for (case, value) in &e.cases {
            let _ = writeln!(self.out, "            {value} => {OPT}::Some({name}::{}),", camel(case));
        }
        let _ = writeln!(self.out, "            _ => {OPT}::None,\n        }}\n    }}\n\n    /// The case's IDL name.\n    pub fn name(self) -> &'static str {{\n        match self {{");
        for (case, _) in &e.cases {
            let _ = writeln!(self.out, "            {name}::{} => {case:?},", camel(case));
        }
        let _ = writeln!(
            self.out,
            "        }}\n    }}\n}}\n\n\
             impl<'a> {KF}::typed::Read<'a> for {name} {{\n    const SIZE: u32 = {w};\n    const ALIGN: u32 = {w};\n    fn read(msg: {KF}::view::Message<'a>, at: u32) -> {RES}<Self, {ERR}> {{\n        let v = msg.scalar::<{repr}>(at)?;\n        {name}::from_repr(v).ok_or({ERR}::new({KF}::ErrorKind::InvalidEnum {{ value: v as u64 }}, at))\n    }}\n    fn zero(msg: {KF}::view::Message<'a>) -> {RES}<Self, {ERR}> {{\n        {name}::from_repr(0).ok_or({ERR}::new({KF}::ErrorKind::NoDefault, 0))\n    }}\n}}\n\n\
             impl {KF}::typed::Write for {name} {{\n    const SIZE: u32 = {w};\n    const ALIGN: u32 = {w};\n    fn write(&self, b: &mut {KF}::Builder, at: u32) -> {RES}<(), {KF}::builder::TooLarge> {{\n        b.put(at, *self as {repr});\n        Ok(())\n    }}\n}}\n\n\
             impl {KF}::typed::Dump for {name} {{\n    fn dump(&self, out: &mut dyn ::core::fmt::Write) -> ::core::fmt::Result {{\n        out.write_str(self.name())\n    }}\n}}\n"
        );
    }

    fn flags(&mut self, id: TypeId) {
        let Kind::Flags(f) = &self.layout.get(id).kind else { return };
        let info = self.layout.get(id);
        let name = self.name(id);
        let size = info.size;
        let (repr, words) = match size {
            0 | 1 => ("u8".to_string(), 0),
            2 => ("u16".into(), 0),
            4 => ("u32".into(), 0),
            n => (format!("[u32; {}]", n / 4), n / 4),
        };
        let _ = writeln!(
            self.out,
            "/// IDL flags `{}`: bit `i` is flag `i` in declaration order.\n#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]\npub struct {name}(pub {repr});\n\nimpl {name} {{",
            f.name
        );
        for (i, flag) in f.flags.iter().enumerate() {
            let value = if words == 0 {
                format!("{name}(1 << {i})")
            } else {
                let mut ws = vec!["0".to_string(); words as usize];
                if let Some(w) = ws.get_mut(i / 32) {
                    *w = format!("1 << {}", i % 32);
                }
                format!("{name}([{}])", ws.join(", "))
            };
            let _ = writeln!(self.out, "    pub const {}: {name} = {value};", flag_const(flag));
        }
        let _ = writeln!(
            self.out,
            "    /// Flag names in declaration order.\n    pub fn flag_names() -> [&'static str; {}] {{\n        {:?}\n    }}\n",
            f.flags.len(),
            f.flags
        );
        let (read, write, has, valid) = if words == 0 {
            let mask: u64 = if f.flags.len() >= 64 { u64::MAX } else { (1u64 << f.flags.len()) - 1 };
            let read = if size == 0 { "0".to_string() } else { format!("msg.scalar::<{repr}>(at)?") };
            let write = if size == 0 { String::new() } else { "b.put(at, self.0);".into() };
            (read, write, "(self.0 >> i) & 1 == 1".to_string(), format!("(bits as u64) & !{mask:#x}u64 == 0"))
        } else {
            let mut read = String::from("{ let mut w = [0u32; ");
            let _ = write!(read, "{words}]; for (i, x) in w.iter_mut().enumerate() {{ *x = msg.scalar::<u32>(at + 4 * i as u32)?; }} w }}");
            let last = f.flags.len() % 32;
            let last_mask: u64 = if last == 0 { 0xFFFF_FFFF } else { (1u64 << last) - 1 };
            (
                read,
                "for (i, x) in self.0.iter().enumerate() { b.put(at + 4 * i as u32, *x); }".into(),
                "self.0.get(i / 32).is_some_and(|w| (w >> (i % 32)) & 1 == 1)".into(),
                format!("bits.last().is_none_or(|w| (*w as u64) & !{last_mask:#x}u64 == 0)"),
            )
        };
        let _ = writeln!(
            self.out,
            "    /// Whether flag `i` (declaration order) is set.\n    pub fn has(&self, i: usize) -> bool {{\n        {has}\n    }}\n}}\n\n\
             impl<'a> {KF}::typed::Read<'a> for {name} {{\n    const SIZE: u32 = {size};\n    const ALIGN: u32 = {align};\n    fn read(msg: {KF}::view::Message<'a>, at: u32) -> {RES}<Self, {ERR}> {{\n        let bits: {repr} = {read};\n        if !({valid}) {{\n            return Err({ERR}::new({KF}::ErrorKind::InvalidFlags, at));\n        }}\n        Ok({name}(bits))\n    }}\n    fn zero(_: {KF}::view::Message<'a>) -> {RES}<Self, {ERR}> {{\n        Ok({name}::default())\n    }}\n}}\n\n\
             impl {KF}::typed::Write for {name} {{\n    const SIZE: u32 = {size};\n    const ALIGN: u32 = {align};\n    fn write(&self, b: &mut {KF}::Builder, at: u32) -> {RES}<(), {KF}::builder::TooLarge> {{\n        {write}\n        Ok(())\n    }}\n}}\n\n\
             impl {KF}::typed::Dump for {name} {{\n    fn dump(&self, out: &mut dyn ::core::fmt::Write) -> ::core::fmt::Result {{\n        out.write_char('{{')?;\n        let mut first = true;\n        for (i, n) in Self::flag_names().iter().enumerate() {{\n            if self.has(i) {{\n                if !first {{\n                    out.write_str(\", \")?;\n                }}\n                first = false;\n                out.write_str(n)?;\n            }}\n        }}\n        out.write_char('}}')\n    }}\n}}\n",
            align = info.align,
        );
    }

    fn view(&mut self, id: TypeId, s: &StructInfo) {
        let name = self.name(id);
        let kind = if s.dynamic { "dynamic" } else { "inline" };
        let _ = writeln!(
            self.out,
            "/// A view of IDL struct `{}` ({kind}).\n#[derive(Debug, Clone, Copy)]\npub struct {name}View<'a> {{\n    msg: {KF}::view::Message<'a>,\n    at: u32,\n    used: u64,\n}}\n",
            s.name
        );
        let _ = writeln!(self.out, "impl<'a> {name}View<'a> {{");
        if s.dynamic {
            let _ = writeln!(
                self.out,
                "    /// The struct whose body is at `at` (0: the empty struct, every field default).\n    #[inline]\n    pub fn at(msg: {KF}::view::Message<'a>, at: u32) -> {RES}<Self, {ERR}> {{\n        let body = msg.dynamic_struct(at)?;\n        Ok(Self {{ msg, at, used: body.used() }})\n    }}\n"
            );
        } else {
            let _ = writeln!(
                self.out,
                "    pub const SIZE: u32 = {};\n\n    /// The struct whose inline bytes are at `at`.\n    pub fn at(msg: {KF}::view::Message<'a>, at: u32) -> {RES}<Self, {ERR}> {{\n        msg.slice(at, Self::SIZE as u64)?;\n        Ok(Self {{ msg, at, used: Self::SIZE as u64 }})\n    }}\n\n    /// A field its writer did not write: every field reads as its default.\n    pub fn absent(msg: {KF}::view::Message<'a>) -> Self {{\n        Self {{ msg, at: 0, used: 0 }}\n    }}\n",
                s.body_size
            );
        }
        let _ = writeln!(
            self.out,
            "    /// The root of a message.\n    #[inline]\n    pub fn root(bytes: &'a [u8]) -> {RES}<Self, {ERR}> {{\n        {KF}::typed::root(bytes)\n    }}\n\n    #[inline]\n    fn present(&self, offset: u32, size: u32) -> {OPT}<u32> {{\n        (offset as u64 + size as u64 <= self.used).then_some(self.at + offset)\n    }}\n"
        );
        for f in &s.fields {
            let size = self.layout.get(f.ty).size;
            let m = method_name(&f.name, VIEW_METHODS);
            let off = f.offset;
            let r = self.read_ty(f.ty);
            let default = self.default_expr(f.ty, f.default.as_ref(), "self.msg");
            let _ = writeln!(
                self.out,
                "    /// Field `{}`.\n    #[inline]\n    pub fn {m}(&self) -> {RES}<{r}, {ERR}> {{\n        match self.present({off}, {size}) {{\n            {OPT}::Some(p) => <{r} as {KF}::typed::Read<'a>>::read(self.msg, p),\n            {OPT}::None => {default},\n        }}\n    }}\n",
                f.name
            );
        }
        self.line("}\n");
        // Read: a dynamic struct's inline form is the offset of its body.
        let (size, align, read, object, zero) = if s.dynamic {
            (
                4,
                4,
                "let body = msg.scalar::<u32>(at)?;\n        Self::at(msg, body)".to_string(),
                "\n    #[inline]\n    fn read_object(msg: ::karmem_format::view::Message<'a>, at: u32) -> ::core::result::Result<Self, ::karmem_format::Error> {\n        Self::at(msg, at)\n    }".to_string(),
                "Self::at(msg, 0)".to_string(),
            )
        } else {
            (s.body_size, 8, "Self::at(msg, at)".into(), String::new(), "Ok(Self::absent(msg))".into())
        };
        let _ = writeln!(
            self.out,
            "impl<'a> {KF}::typed::Read<'a> for {name}View<'a> {{\n    const SIZE: u32 = {size};\n    const ALIGN: u32 = {align};\n    #[inline]\n    fn read(msg: {KF}::view::Message<'a>, at: u32) -> {RES}<Self, {ERR}> {{\n        {read}\n    }}{object}\n    fn zero(msg: {KF}::view::Message<'a>) -> {RES}<Self, {ERR}> {{\n        {zero}\n    }}\n}}\n"
        );
        let _ = writeln!(self.out, "impl<'a> {KF}::typed::Dump for {name}View<'a> {{\n    fn dump(&self, out: &mut dyn ::core::fmt::Write) -> ::core::fmt::Result {{\n        out.write_char('{{')?;");
        for (i, f) in s.fields.iter().enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            let _ = writeln!(
                self.out,
                "        out.write_str(\"{sep}{}: \")?;\n        {KF}::typed::dump_result(out, &self.{}())?;",
                f.name,
                method_name(&f.name, VIEW_METHODS)
            );
        }
        self.line("        out.write_char('}')\n    }\n}\n");
    }

    fn builder(&mut self, id: TypeId, s: &StructInfo) {
        let name = self.name(id);
        let _ = writeln!(
            self.out,
            "/// Writes IDL struct `{}` top-down into a [`{KF}::Builder`].\n#[derive(Debug, Clone, Copy)]\npub struct {name}Builder {{\n    /// Offset of the struct's body (dynamic) or inline bytes.\n    pub at: u32,\n}}\n\nimpl {name}Builder {{",
            s.name
        );
        if s.dynamic {
            let _ = writeln!(
                self.out,
                "    /// Bytes this version of the struct uses, header included.\n    pub const USED: u32 = {};\n\n    /// Allocates the struct's body.\n    pub fn new(b: &mut {KF}::Builder) -> {RES}<Self, {KF}::builder::TooLarge> {{\n        Ok(Self {{ at: b.alloc_dynamic_struct(Self::USED)? }})\n    }}\n",
                s.used
            );
        } else {
            let _ = writeln!(
                self.out,
                "    pub const SIZE: u32 = {};\n\n    /// Allocates the struct as an object of its own (a root or payload).\n    pub fn new(b: &mut {KF}::Builder) -> {RES}<Self, {KF}::builder::TooLarge> {{\n        Ok(Self {{ at: b.alloc_object(Self::SIZE as u64)? }})\n    }}\n",
                s.body_size
            );
        }
        let _ = writeln!(
            self.out,
            "    /// Allocates the struct as the root of the message.\n    pub fn new_root(b: &mut {KF}::Builder) -> {RES}<Self, {KF}::builder::TooLarge> {{\n        let s = Self::new(b)?;\n        b.set_root(s.at);\n        Ok(s)\n    }}\n"
        );
        let layout = self.layout;
        for f in &s.fields {
            let off = f.offset;
            let set = suffixed(&f.name, "");
            let set = set.trim_start_matches("r#");
            let _ = writeln!(self.out, "    /// Field `{}`.", f.name);
            match &layout.get(f.ty).kind {
                Kind::Prim(p) => {
                    let ty = rust_prim(*p);
                    let value = match p {
                        Prim::Bool => "v as u8",
                        Prim::Char => "v as u32",
                        _ => "v",
                    };
                    let _ = writeln!(self.out, "    pub fn set_{set}(&self, b: &mut {KF}::Builder, v: {ty}) {{\n        b.put(self.at + {off}, {value});\n    }}\n");
                    continue;
                }
                Kind::Enum(e) => {
                    let (e_name, repr) = (self.name(f.ty), uint(e.width));
                    let _ = writeln!(self.out, "    pub fn set_{set}(&self, b: &mut {KF}::Builder, v: {e_name}) {{\n        b.put(self.at + {off}, v as {repr});\n    }}\n");
                    continue;
                }
                Kind::Handle { .. } => {
                    let _ = writeln!(self.out, "    pub fn set_{set}(&self, b: &mut {KF}::Builder, handle: u32) {{\n        b.put(self.at + {off}, handle);\n    }}\n");
                    continue;
                }
                Kind::Array { elem, form: ArrayForm::Plain } => {
                    let (esize, is_dyn) = (layout.get(*elem).size, layout.is_dynamic_struct(*elem));
                    let _ = writeln!(
                        self.out,
                        "    /// Allocates `len` elements (capacity `capacity`, zeroed) and returns the\n    /// block offset; element `i` is at `block + i * {esize}`.\n    pub fn alloc_{set}(&self, b: &mut {KF}::Builder, len: u32, capacity: u32) -> {RES}<u32, {KF}::builder::TooLarge> {{\n        b.alloc_plain_array(self.at + {off}, {esize}, len, capacity)\n    }}\n"
                    );
                    if layout.as_struct(*elem).is_some() {
                        let e = self.name(*elem);
                        if is_dyn {
                            let _ = writeln!(
                                self.out,
                                "    /// Allocates element `i`'s body in the block from `alloc_{set}`.\n    pub fn new_{set}_at(&self, b: &mut {KF}::Builder, block: u32, i: u32) -> {RES}<{e}Builder, {KF}::builder::TooLarge> {{\n        let e = {e}Builder::new(b)?;\n        b.put(block + 4 * i, e.at);\n        Ok(e)\n    }}\n"
                            );
                        } else {
                            let _ = writeln!(
                                self.out,
                                "    pub fn {set}_at(&self, block: u32, i: u32) -> {e}Builder {{\n        {e}Builder {{ at: block + i * {esize} }}\n    }}\n"
                            );
                        }
                    }
                }
                Kind::String { .. } => {}
                Kind::Array { elem, form: ArrayForm::Soa } if layout.as_struct(*elem).is_some() => {
                    let e = self.name(*elem);
                    let _ = writeln!(
                        self.out,
                        "    /// Allocates the column directory and columns for `len` elements (zeroed).\n    pub fn alloc_{set}(&self, b: &mut {KF}::Builder, len: u32, capacity: u32) -> {RES}<{e}SoaBuilder, {KF}::builder::TooLarge> {{\n        let mut columns = [0u32; {e}Soa::<'static>::COLUMNS.len()];\n        b.alloc_soa_array(self.at + {off}, len, capacity, &{e}Soa::<'static>::COLUMNS, &mut columns)?;\n        Ok({e}SoaBuilder {{ columns, len }})\n    }}\n\n    /// Like `alloc_{set}`, for a writer that fills all `len` elements of every\n    /// column: those are not zeroed first (on a reused builder they hold the\n    /// previous message's bytes until written).\n    pub fn alloc_{set}_to_fill(&self, b: &mut {KF}::Builder, len: u32, capacity: u32) -> {RES}<{e}SoaBuilder, {KF}::builder::TooLarge> {{\n        let mut columns = [0u32; {e}Soa::<'static>::COLUMNS.len()];\n        b.alloc_soa_array_to_fill(self.at + {off}, len, capacity, &{e}Soa::<'static>::COLUMNS, &mut columns)?;\n        Ok({e}SoaBuilder {{ columns, len }})\n    }}\n"
                    );
                    if layout.is_map_entry(*elem) {
                        let _ = writeln!(
                            self.out,
                            "    /// Allocates map `{}` with room for `capacity` entries and none yet;\n    /// `push` appends them in order.\n    pub fn new_{set}(&self, b: &mut {KF}::Builder, capacity: u32) -> {RES}<{e}MapBuilder, {KF}::builder::TooLarge> {{\n        let mut columns = [0u32; {e}Soa::<'static>::COLUMNS.len()];\n        b.alloc_soa_array(self.at + {off}, 0, capacity, &{e}Soa::<'static>::COLUMNS, &mut columns)?;\n        Ok({e}MapBuilder {{ slot: self.at + {off}, columns, len: 0, capacity }})\n    }}\n",
                            f.name
                        );
                    }
                }
                Kind::Struct(inner) if !inner.dynamic => {
                    let e = self.name(f.ty);
                    let m = method_name(&f.name, BUILDER_METHODS);
                    let _ = writeln!(self.out, "    pub fn {m}(&self) -> {e}Builder {{\n        {e}Builder {{ at: self.at + {off} }}\n    }}\n");
                }
                Kind::Struct(_) => {
                    let e = self.name(f.ty);
                    let _ = writeln!(
                        self.out,
                        "    /// Allocates the nested struct and links it.\n    pub fn new_{set}(&self, b: &mut {KF}::Builder) -> {RES}<{e}Builder, {KF}::builder::TooLarge> {{\n        let e = {e}Builder::new(b)?;\n        b.put(self.at + {off}, e.at);\n        Ok(e)\n    }}\n"
                    );
                }
                _ => {}
            }
            // Every field: write a whole value.
            let (param, wrap) = match &layout.get(f.ty).kind {
                Kind::Array { elem, form: ArrayForm::Soa } => (format!("&[{}]", self.write_ty(*elem, "'_")), format!("{KF}::typed::SoaOf(v)")),
                Kind::Array { elem, form: ArrayForm::Bunch { soa } } => {
                    (format!("&[{}]", self.write_ty(*elem, "'_")), format!("{KF}::typed::BunchOf::<_, {soa}>(v)"))
                }
                _ => (self.write_ty(f.ty, "'_"), "v".to_string()),
            };
            let _ = writeln!(
                self.out,
                "    /// Writes a whole value (allocating what it points to).\n    pub fn set_{set}(&self, b: &mut {KF}::Builder, v: {param}) -> {RES}<(), {KF}::builder::TooLarge> {{\n        {KF}::typed::Write::write(&{wrap}, b, self.at + {off})\n    }}\n"
            );
        }
        self.line("}\n");
    }

    fn value_struct(&mut self, id: TypeId, s: &StructInfo) {
        let name = self.name(id);
        let generics = self.value_generics(id);
        let _ = writeln!(
            self.out,
            "/// A value of IDL struct `{}`, written with `karmem_format::typed::encode`\n/// or a builder's `set_*`.\n#[derive(Debug, Clone, Copy, PartialEq)]\npub struct {name}{generics} {{",
            s.name
        );
        for f in &s.fields {
            let ty = self.write_ty(f.ty, "'v");
            let _ = writeln!(self.out, "    pub {}: {ty},", field_name(&f.name));
        }
        self.line("}\n");
        let mut fields = String::new();
        for f in &s.fields {
            let _ = writeln!(fields, "        {KF}::typed::Write::write(&self.{}, b, at + {})?;", field_name(&f.name), f.offset);
        }
        let (size, align, write, object) = if s.dynamic {
            (
                4,
                4,
                format!("let body = {KF}::typed::Write::write_object(self, b)?;\n        b.put(at, body);\n        Ok(())"),
                format!(
                    "\n    fn write_object(&self, b: &mut {KF}::Builder) -> {RES}<u32, {KF}::builder::TooLarge> {{\n        let at = b.alloc_dynamic_struct({})?;\n        self.write_fields(b, at)?;\n        Ok(at)\n    }}",
                    s.used
                ),
            )
        } else {
            (s.body_size, 8, "self.write_fields(b, at)".to_string(), String::new())
        };
        let _ = writeln!(
            self.out,
            "impl{generics} {name}{generics} {{\n    fn write_fields(&self, b: &mut {KF}::Builder, at: u32) -> {RES}<(), {KF}::builder::TooLarge> {{\n{fields}        Ok(())\n    }}\n}}\n\n\
             impl{generics} {KF}::typed::Write for {name}{generics} {{\n    const SIZE: u32 = {size};\n    const ALIGN: u32 = {align};\n    fn write(&self, b: &mut {KF}::Builder, at: u32) -> {RES}<(), {KF}::builder::TooLarge> {{\n        {write}\n    }}{object}\n}}\n"
        );
        // As an SoA element: one column per flattened leaf.
        let columns = self.layout.columns(id).to_vec();
        let mut writes = String::new();
        let mut list = String::new();
        for (j, c) in columns.iter().enumerate() {
            let access = self.leaf_access(id, &c.path);
            let _ = writeln!(
                writes,
                "        {KF}::typed::Write::write(&self.{access}, b, {KF}::typed::column(columns, {j}) + i * {})?;",
                c.size
            );
            let _ = write!(list, "({:#010x}, {}), ", c.hash, c.size);
        }
        let _ = writeln!(
            self.out,
            "impl{generics} {KF}::typed::SoaElement for {name}{generics} {{\n    const COLUMNS: &'static [(u32, u32)] = &[{list}];\n    fn write_columns(&self, b: &mut {KF}::Builder, columns: &[u32], i: u32) -> {RES}<(), {KF}::builder::TooLarge> {{\n{writes}        Ok(())\n    }}\n}}\n"
        );
    }

    fn union_view(&mut self, id: TypeId, u: &UnionInfo) {
        let name = self.name(id);
        let g = self.view_generics(id);
        let kind = if u.dynamic { "dynamic" } else { "inline" };
        let _ = writeln!(self.out, "/// A view of IDL union `{}` ({kind}): one variant per case.\n#[derive(Debug, Clone, Copy)]\npub enum {name}View{g} {{", u.name);
        for c in &u.cases {
            match c.ty {
                Some(t) => {
                    let r = self.read_ty(t);
                    let _ = writeln!(self.out, "    /// Case `{}` (tag {}).\n    {}({r}),", c.name, c.tag, camel(&c.name));
                }
                None => {
                    let _ = writeln!(self.out, "    /// Case `{}` (tag {}).\n    {},", c.name, c.tag, camel(&c.name));
                }
            }
        }
        self.line("}\n");
        let mut arms = String::new();
        let mut dump = String::new();
        for c in &u.cases {
            let v = camel(&c.name);
            match c.ty {
                Some(t) => {
                    let r = self.read_ty(t);
                    let read = if u.dynamic {
                        format!("<{r} as {KF}::typed::Read<'a>>::read_object(msg, msg.scalar::<u32>(payload_at)?)")
                    } else {
                        format!("<{r} as {KF}::typed::Read<'a>>::read(msg, payload_at)")
                    };
                    let _ = writeln!(arms, "            {} => Ok({name}View::{v}({read}?)),", c.tag);
                    let _ = writeln!(dump, "            {name}View::{v}(p) => {{\n                out.write_str(\"{}(\")?;\n                {KF}::typed::Dump::dump(p, out)?;\n                out.write_char(')')\n            }}", c.name);
                }
                None => {
                    let _ = writeln!(arms, "            {} => Ok({name}View::{v}),", c.tag);
                    let _ = writeln!(dump, "            {name}View::{v} => out.write_str(\"{}\"),", c.name);
                }
            }
        }
        let (size, align) = (self.layout.get(id).size, self.layout.get(id).align);
        let _ = writeln!(
            self.out,
            "impl<'a> {KF}::typed::Union<'a> for {name}View{g} {{\n    const TAG_WIDTH: u32 = {tw};\n    const PAYLOAD_OFFSET: u32 = {po};\n    const PAYLOAD_SIZE: u32 = {ps};\n    fn from_parts(msg: {KF}::view::Message<'a>, tag: u32, payload_at: u32) -> {RES}<Self, {ERR}> {{\n        match tag {{\n{arms}            _ => Err({ERR}::new({KF}::ErrorKind::UnknownTag {{ tag }}, payload_at)),\n        }}\n    }}\n}}\n\n\
             impl<'a> {KF}::typed::Read<'a> for {name}View{g} {{\n    const SIZE: u32 = {size};\n    const ALIGN: u32 = {align};\n    fn read(msg: {KF}::view::Message<'a>, at: u32) -> {RES}<Self, {ERR}> {{\n        {KF}::typed::read_union(msg, at)\n    }}\n    fn zero(_: {KF}::view::Message<'a>) -> {RES}<Self, {ERR}> {{\n        Err({ERR}::new({KF}::ErrorKind::NoDefault, 0))\n    }}\n}}\n\n\
             impl{gi} {KF}::typed::Dump for {name}View{g} {{\n    fn dump(&self, out: &mut dyn ::core::fmt::Write) -> ::core::fmt::Result {{\n        match self {{\n{dump}        }}\n    }}\n}}\n",
            tw = u.tag_width,
            po = u.payload_offset,
            ps = u.payload_size,
            gi = if g.is_empty() { "" } else { "<'a>" },
        );
    }

    fn union_value(&mut self, id: TypeId, u: &UnionInfo) {
        let name = self.name(id);
        let g = self.value_generics(id);
        let _ = writeln!(self.out, "/// A value of IDL union `{}`.\n#[derive(Debug, Clone, Copy, PartialEq)]\npub enum {name}{g} {{", u.name);
        for c in &u.cases {
            match c.ty {
                Some(t) => {
                    let w = self.write_ty(t, "'v");
                    let _ = writeln!(self.out, "    {}({w}),", camel(&c.name));
                }
                None => {
                    let _ = writeln!(self.out, "    {},", camel(&c.name));
                }
            }
        }
        self.line("}\n");
        let tw = u.tag_width;
        let mut tags = String::new();
        let mut parts = String::new();
        for c in &u.cases {
            let v = camel(&c.name);
            match c.ty {
                Some(_) => {
                    let _ = writeln!(tags, "            {name}::{v}(_) => {},", c.tag);
                    let write = if u.dynamic {
                        format!("let off = {KF}::typed::Write::write_object(p, b)?;\n                b.put(payload_at, off);")
                    } else {
                        format!("{KF}::typed::Write::write(p, b, payload_at)?;")
                    };
                    let _ = writeln!(parts, "            {name}::{v}(p) => {{\n                {write}\n            }}");
                }
                None => {
                    let _ = writeln!(tags, "            {name}::{v} => {},", c.tag);
                    let _ = writeln!(parts, "            {name}::{v} => {{}}");
                }
            }
        }
        // Bunch writer: one array per case with values, in tag order.
        let mut sorted: Vec<&crate::layout::CaseInfo> = u.cases.iter().collect();
        sorted.sort_by_key(|c| c.tag);
        let k = sorted.len();
        let mut bunch = String::new();
        for (idx, c) in sorted.iter().enumerate() {
            let v = camel(&c.name);
            let _ = writeln!(bunch, "        if let {OPT}::Some(&count) = counts.get({idx}) && count > 0 {{\n            let entry = {KF}::typed::bunch_entry(table, j);\n            j += 1;\n            b.put(entry, {}u32);", c.tag);
            match c.ty {
                None => {
                    let _ = writeln!(bunch, "            b.put_slot(entry + 4, {KF}::view::Slot {{ offset: 0, length: count, capacity: count }});");
                }
                Some(t) => {
                    let w = self.write_ty(t, "'_");
                    let plain = format!(
                        "let block = b.alloc_plain_array(entry + 4, <{w} as {KF}::typed::Write>::SIZE, count, count)?;\n                let mut i = 0u32;\n                for value in values {{\n                    if let {name}::{v}(p) = value {{\n                        {KF}::typed::Write::write(p, b, block + i * <{w} as {KF}::typed::Write>::SIZE)?;\n                        i += 1;\n                    }}\n                }}"
                    );
                    if self.layout.as_struct(t).is_some() {
                        let _ = writeln!(
                            bunch,
                            "            if soa {{\n                let columns = {KF}::typed::alloc_soa_columns::<{w}>(b, entry + 4, count)?;\n                let mut i = 0u32;\n                for value in values {{\n                    if let {name}::{v}(p) = value {{\n                        {KF}::typed::SoaElement::write_columns(p, b, &columns, i)?;\n                        i += 1;\n                    }}\n                }}\n            }} else {{\n                {plain}\n            }}"
                        );
                    } else {
                        let _ = writeln!(bunch, "            {{\n                {plain}\n            }}");
                    }
                }
            }
            bunch.push_str("        }\n");
        }
        let mut index = String::new();
        for (idx, c) in sorted.iter().enumerate() {
            let pat = if c.ty.is_some() { "(_)" } else { "" };
            let _ = writeln!(index, "                {name}::{}{pat} => {idx},", camel(&c.name));
        }
        let (size, align) = (self.layout.get(id).size, self.layout.get(id).align);
        let _ = writeln!(
            self.out,
            "impl{g} {name}{g} {{\n    /// The case's tag.\n    pub fn tag(&self) -> u32 {{\n        match self {{\n{tags}        }}\n    }}\n\n    fn write_parts(&self, b: &mut {KF}::Builder, tag_at: u32, payload_at: u32) -> {RES}<(), {KF}::builder::TooLarge> {{\n        b.put_uint(tag_at, {tw}, self.tag() as u64);\n        match self {{\n{parts}        }}\n        Ok(())\n    }}\n}}\n\n\
             impl{g} {KF}::typed::Write for {name}{g} {{\n    const SIZE: u32 = {size};\n    const ALIGN: u32 = {align};\n    fn write(&self, b: &mut {KF}::Builder, at: u32) -> {RES}<(), {KF}::builder::TooLarge> {{\n        self.write_parts(b, at, at + {po})\n    }}\n}}\n\n\
             impl{g} {KF}::typed::SoaElement for {name}{g} {{\n    const COLUMNS: &'static [(u32, u32)] = &[({h0:#010x}, {tw}), ({h1:#010x}, {ps})];\n    fn write_columns(&self, b: &mut {KF}::Builder, columns: &[u32], i: u32) -> {RES}<(), {KF}::builder::TooLarge> {{\n        self.write_parts(b, {KF}::typed::column(columns, 0) + i * {tw}, {KF}::typed::column(columns, 1) + i * {ps})\n    }}\n}}\n\n\
             impl{g} {KF}::typed::BunchElement for {name}{g} {{\n    fn write_bunch(values: &[Self], b: &mut {KF}::Builder, at: u32, soa: bool) -> {RES}<(), {KF}::builder::TooLarge> {{\n        let n = u32::try_from(values.len()).map_err(|_| {KF}::builder::TooLarge)?;\n        let mut counts = [0u32; {k}];\n        for value in values {{\n            let case = match value {{\n{index}            }};\n            if let {OPT}::Some(c) = counts.get_mut(case) {{\n                *c += 1;\n            }}\n        }}\n        let entries = counts.iter().filter(|c| **c > 0).count() as u32;\n        let table = {KF}::typed::alloc_bunch(b, at, entries, n)?;\n        let mut j = 0u32;\n{bunch}        Ok(())\n    }}\n}}\n",
            po = u.payload_offset,
            ps = u.payload_size,
            h0 = crate::raw::column_hash(&[0]),
            h1 = crate::raw::column_hash(&[1]),
        );
    }

    fn soa(&mut self, elem: TypeId) {
        let Some(s) = self.layout.as_struct(elem) else { return };
        let s = s.clone();
        let name = self.name(elem);
        let columns = self.layout.columns(elem).to_vec();
        let _ = writeln!(
            self.out,
            "/// An SoA array of `{}`: one column per flattened leaf (FORMAT.md §6.3).\n#[derive(Debug, Clone, Copy)]\npub struct {name}Soa<'a> {{\n    msg: {KF}::view::Message<'a>,\n    soa: {KF}::view::Soa<'a>,\n}}\n\nimpl<'a> {name}Soa<'a> {{\n    /// (hash, element size) of every column, in flattening order.\n    pub const COLUMNS: [(u32, u32); {}] = [",
            s.name,
            columns.len()
        );
        for c in &columns {
            let _ = writeln!(self.out, "        ({:#010x}, {}), // path {:?}", c.hash, c.size, c.path);
        }
        self.line("    ];\n\n    pub fn len(&self) -> u32 {\n        self.soa.len()\n    }\n\n    pub fn is_empty(&self) -> bool {\n        self.soa.is_empty()\n    }\n");
        let mut builder = String::new();
        let mut leaf_methods: Vec<(Vec<u32>, String, TypeId)> = Vec::new();
        for (idx, c) in columns.iter().enumerate() {
            let Leaf::Field(t) = c.leaf else { continue };
            let m = self.leaf_name(elem, &c.path);
            let m = if SOA_METHODS.contains(&m.as_str()) { format!("{m}_") } else { m };
            let hash = c.hash;
            let size = c.size;
            leaf_methods.push((c.path.clone(), m.clone(), t));
            match self.layout.get(t).kind {
                Kind::Prim(p) if pod(p) => {
                    let ty = rust_prim(p);
                    let _ = writeln!(
                        self.out,
                        "    /// Column `{m}`; `None` if the writer did not write it (its elements read as default).\n    #[inline]\n    pub fn {m}(&self) -> {RES}<{OPT}<{KF}::view::Column<'a, {ty}>>, {ERR}> {{\n        self.soa.column::<{ty}>({hash:#010x})\n    }}\n"
                    );
                    let _ = writeln!(
                        builder,
                        "    /// Column `{m}` to fill in place (`None` on big-endian hosts: use `set_{m}`).\n    pub fn {m}_mut<'b>(&self, b: &'b mut {KF}::Builder) -> {OPT}<&'b mut [{ty}]> {{\n        b.column_mut::<{ty}>({KF}::typed::column(&self.columns, {idx}), self.len)\n    }}\n"
                    );
                }
                _ => {
                    let r = self.read_ty(t);
                    let _ = writeln!(
                        self.out,
                        "    /// Column `{m}`; `None` if the writer did not write it (its elements read as default).\n    pub fn {m}(&self) -> {RES}<{OPT}<{KF}::typed::List<'a, {r}>>, {ERR}> {{\n        match self.soa.find({hash:#010x})? {{\n            {OPT}::Some(offset) => {KF}::typed::List::new(self.msg, offset, self.soa.len()).map({OPT}::Some),\n            {OPT}::None => Ok({OPT}::None),\n        }}\n    }}\n"
                    );
                }
            }
            let w = self.write_ty(t, "'_");
            let set = m.trim_start_matches("r#");
            // Scalars cannot fail to write; anything that allocates can.
            let infallible = matches!(
                self.layout.get(t).kind,
                Kind::Prim(_) | Kind::Enum(_) | Kind::Handle { .. } | Kind::Flags(_)
            ) && self.layout.get(t).size <= 8;
            if infallible {
                let _ = writeln!(
                    builder,
                    "    pub fn set_{set}(&self, b: &mut {KF}::Builder, i: u32, v: {w}) {{\n        let _ = {KF}::typed::Write::write(&v, b, {KF}::typed::column(&self.columns, {idx}) + i * {size});\n    }}\n"
                );
            } else {
                let _ = writeln!(
                    builder,
                    "    pub fn set_{set}(&self, b: &mut {KF}::Builder, i: u32, v: {w}) -> {RES}<(), {KF}::builder::TooLarge> {{\n        {KF}::typed::Write::write(&v, b, {KF}::typed::column(&self.columns, {idx}) + i * {size})\n    }}\n"
                );
            }
        }
        if let Some((key, value)) = crate::layout::map_entry_types(&s) {
            self.map_methods(key, value);
        }
        // Element `i` as a dump (nested records rebuilt from the leaves).
        let mut dump = String::new();
        self.soa_dump(elem, &[], &leaf_methods, &mut dump);
        let _ = writeln!(
            self.out,
            "    fn dump_element(&self, i: u32, out: &mut dyn ::core::fmt::Write) -> ::core::fmt::Result {{\n{dump}        Ok(())\n    }}\n}}\n\n\
             impl<'a> {KF}::typed::Read<'a> for {name}Soa<'a> {{\n    const SIZE: u32 = 12;\n    const ALIGN: u32 = 4;\n    #[inline]\n    fn read(msg: {KF}::view::Message<'a>, at: u32) -> {RES}<Self, {ERR}> {{\n        Ok(Self {{ msg, soa: msg.slot(at)?.soa(msg)? }})\n    }}\n    fn zero(msg: {KF}::view::Message<'a>) -> {RES}<Self, {ERR}> {{\n        Ok(Self {{ msg, soa: {KF}::view::Soa::at(msg, {KF}::view::Slot::default())? }})\n    }}\n}}\n\n\
             impl<'a> {KF}::typed::FromSlot<'a> for {name}Soa<'a> {{\n    fn from_slot(msg: {KF}::view::Message<'a>, slot: {KF}::view::Slot) -> {RES}<Self, {ERR}> {{\n        Ok(Self {{ msg, soa: slot.soa(msg)? }})\n    }}\n}}\n\n\
             impl<'a> {KF}::typed::DumpItems for {name}Soa<'a> {{\n    fn item_count(&self) -> u32 {{\n        self.len()\n    }}\n    fn dump_item(&self, i: u32, out: &mut dyn ::core::fmt::Write) -> ::core::fmt::Result {{\n        self.dump_element(i, out)\n    }}\n}}\n\n\
             impl<'a> {KF}::typed::Dump for {name}Soa<'a> {{\n    fn dump(&self, out: &mut dyn ::core::fmt::Write) -> ::core::fmt::Result {{\n        out.write_char('[')?;\n        for i in 0..self.len() {{\n            if i > 0 {{\n                out.write_str(\", \")?;\n            }}\n            self.dump_element(i, out)?;\n        }}\n        out.write_char(']')\n    }}\n}}\n"
        );
        let _ = writeln!(
            self.out,
            "/// The columns of a freshly allocated SoA array of `{}`.\n#[derive(Debug, Clone, Copy)]\npub struct {name}SoaBuilder {{\n    /// Column offsets, in the order of `{name}Soa::COLUMNS`.\n    pub columns: [u32; {}],\n    pub len: u32,\n}}\n\nimpl {name}SoaBuilder {{\n{builder}}}\n",
            s.name,
            columns.len()
        );
        if let Some((key, value)) = crate::layout::map_entry_types(&s) {
            self.map_builder(elem, key, value, columns.len());
        }
    }

    /// The read type of a map value: its view, or for an inline struct (whose
    /// fields are flattened into columns) its row.
    fn map_value_ty(&mut self, value: TypeId) -> String {
        if self.layout.as_struct(value).is_some_and(|s| !s.dynamic) {
            format!("{}Row<'a>", self.name(value))
        } else {
            self.read_ty(value)
        }
    }

    /// `get` and `iter` of the SoA view of a map's entry struct.
    fn map_methods(&mut self, key: TypeId, value: TypeId) {
        let k = self.read_ty(key);
        let v = self.map_value_ty(value);
        let read_value = if self.layout.as_struct(value).is_some_and(|s| !s.dynamic) {
            format!("{}Row::new(row.nested(1))", self.name(value))
        } else {
            format!("row.leaf::<{v}>(1)?")
        };
        let _ = writeln!(
            self.out,
            "    /// Map entry `i` as (key, value), or `None` past the end. Entries are in\n    /// the writer's order; a key may repeat (FORMAT.md §6.5).\n    pub fn get(&self, i: u32) -> {RES}<{OPT}<({k}, {v})>, {ERR}> {{\n        if i >= self.soa.len() {{\n            return Ok({OPT}::None);\n        }}\n        let row = {KF}::typed::SoaRow::new(self.msg, self.soa, i);\n        Ok({OPT}::Some((row.leaf::<{k}>(0)?, {read_value})))\n    }}\n\n    /// Every map entry, in order.\n    pub fn iter(&self) -> impl ::core::iter::Iterator<Item = {RES}<({k}, {v}), {ERR}>> + '_ {{\n        (0..self.soa.len()).map(move |i| self.get(i).and_then(|e| e.ok_or({ERR}::new({KF}::ErrorKind::NoDefault, 0))))\n    }}\n"
        );
    }

    /// `FooMapBuilder`: the entries of a map of entry struct `elem`, pushed in order.
    fn map_builder(&mut self, elem: TypeId, key: TypeId, value: TypeId, columns: usize) {
        let name = self.name(elem);
        let k = self.write_ty(key, "'_");
        let v = self.write_ty(value, "'_");
        let _ = writeln!(
            self.out,
            "/// Writes a map's entries (entry struct `{name}`) one after another, up to\n/// the capacity it was allocated with; the slot's length follows.\n#[derive(Debug, Clone, Copy)]\npub struct {name}MapBuilder {{\n    /// The map's slot.\n    pub slot: u32,\n    /// Column offsets, in the order of `{name}Soa::COLUMNS`.\n    pub columns: [u32; {columns}],\n    pub len: u32,\n    pub capacity: u32,\n}}\n\nimpl {name}MapBuilder {{\n    /// Appends an entry; `Ok(false)`, and nothing written, when the map is full.\n    pub fn push(&mut self, b: &mut {KF}::Builder, key: {k}, value: {v}) -> {RES}<bool, {KF}::builder::TooLarge> {{\n        if self.len >= self.capacity {{\n            return Ok(false);\n        }}\n        {KF}::typed::SoaElement::write_columns(&{name} {{ key, value }}, b, &self.columns, self.len)?;\n        self.len += 1;\n        // the slot's length word (FORMAT.md §6.2)\n        b.put(self.slot + 4, self.len);\n        Ok(true)\n    }}\n}}\n"
        );
    }

    /// `FooRow`: an SoA element read as inline struct `id`, field by field.
    fn row(&mut self, id: TypeId) {
        let Some(s) = self.layout.as_struct(id) else { return };
        let s = s.clone();
        let name = self.name(id);
        let _ = writeln!(
            self.out,
            "/// An SoA element read as IDL inline struct `{}`, field by field from its\n/// columns (FORMAT.md §6.3); a column the writer left out reads as zero.\n#[derive(Debug, Clone, Copy)]\npub struct {name}Row<'a> {{\n    pub row: {KF}::typed::SoaRow<'a>,\n}}\n\nimpl<'a> {name}Row<'a> {{\n    pub fn new(row: {KF}::typed::SoaRow<'a>) -> Self {{\n        Self {{ row }}\n    }}\n",
            s.name
        );
        let mut dump = String::new();
        for (pos, f) in s.fields.iter().enumerate() {
            let m = method_name(&f.name, ROW_METHODS);
            if self.layout.as_struct(f.ty).is_some_and(|x| !x.dynamic) {
                let inner = self.name(f.ty);
                let _ = writeln!(
                    self.out,
                    "    /// Field `{}`.\n    pub fn {m}(&self) -> {RES}<{inner}Row<'a>, {ERR}> {{\n        Ok({inner}Row::new(self.row.nested({pos})))\n    }}\n",
                    f.name
                );
            } else {
                let r = self.read_ty(f.ty);
                let _ = writeln!(
                    self.out,
                    "    /// Field `{}`.\n    pub fn {m}(&self) -> {RES}<{r}, {ERR}> {{\n        self.row.leaf::<{r}>({pos})\n    }}\n",
                    f.name
                );
            }
            let sep = if pos > 0 { ", " } else { "" };
            let _ = writeln!(dump, "        out.write_str(\"{sep}{}: \")?;\n        {KF}::typed::dump_result(out, &self.{m}())?;", f.name);
        }
        let _ = writeln!(
            self.out,
            "}}\n\nimpl<'a> {KF}::typed::Dump for {name}Row<'a> {{\n    fn dump(&self, out: &mut dyn ::core::fmt::Write) -> ::core::fmt::Result {{\n        out.write_char('{{')?;\n{dump}        out.write_char('}}')\n    }}\n}}\n"
        );
    }

    /// Dump code for the struct at `path` inside SoA element `elem`.
    fn soa_dump(&mut self, ty: TypeId, path: &[u32], leaves: &[(Vec<u32>, String, TypeId)], out: &mut String) {
        let Some(s) = self.layout.as_struct(ty) else { return };
        let s = s.clone();
        out.push_str("        out.write_char('{')?;\n");
        for (pos, f) in s.fields.iter().enumerate() {
            let sep = if pos > 0 { ", " } else { "" };
            let _ = writeln!(out, "        out.write_str(\"{sep}{}: \")?;", f.name);
            let mut p = path.to_vec();
            p.push(pos as u32);
            let inline_struct = self.layout.as_struct(f.ty).is_some_and(|x| !x.dynamic);
            if inline_struct {
                self.soa_dump(f.ty, &p, leaves, out);
                continue;
            }
            let Some((_, m, t)) = leaves.iter().find(|(lp, _, _)| *lp == p) else { continue };
            let default = self.default_expr(*t, f.default.as_ref(), "self.msg");
            let _ = writeln!(
                out,
                "        match self.{m}() {{\n            Ok({OPT}::Some(c)) => {KF}::typed::DumpItems::dump_item(&c, i, out)?,\n            Ok({OPT}::None) => {KF}::typed::dump_result(out, &{default})?,\n            Err(e) => write!(out, \"<error {{e}}>\")?,\n        }}"
            );
        }
        out.push_str("        out.write_char('}')?;\n");
    }

    fn bunch(&mut self, elem: TypeId, soa: bool) {
        let Kind::Union(u) = &self.layout.get(elem).kind else { return };
        let u = u.clone();
        let name = self.name(elem);
        let form = if soa { "Bovos" } else { "Bovoa" };

        let _ = writeln!(
            self.out,
            "/// An array of IDL union `{}` as a bunch of values (`#{}`): one array per\n/// case, values grouped by case in tag order (FORMAT.md §8).\n#[derive(Debug, Clone, Copy)]\npub struct {name}{form}<'a> {{\n    bunch: {KF}::typed::Bunch<'a>,\n}}\n\nimpl<'a> {name}{form}<'a> {{\n    /// The number of values, over all cases.\n    pub fn len(&self) -> u32 {{\n        self.bunch.len()\n    }}\n\n    pub fn is_empty(&self) -> bool {{\n        self.bunch.is_empty()\n    }}\n\n    /// The bunch table.\n    pub fn bunch(&self) -> {KF}::typed::Bunch<'a> {{\n        self.bunch\n    }}\n",
            u.name,
            form.to_lowercase()
        );
        let mut dump = String::new();
        for c in &u.cases {
            let m = method_name(&c.name, BUNCH_METHODS);
            let count = suffixed(&c.name, "_count");
            match c.ty {
                None => {
                    let _ = writeln!(
                        self.out,
                        "    /// How many values of payload-less case `{}`.\n    pub fn {count}(&self) -> {RES}<u32, {ERR}> {{\n        Ok(self.bunch.find({})?.map_or(0, |s| s.length))\n    }}\n",
                        c.name, c.tag
                    );
                    let _ = writeln!(dump, "                {} => {{\n                    for _ in 0..slot.length {{\n                        sep(out)?;\n                        out.write_str(\"{}\")?;\n                    }}\n                }}", c.tag, c.name);
                }
                Some(t) => {
                    let arr = if soa && self.layout.as_struct(t).is_some() {
                        format!("{}Soa<'a>", self.name(t))
                    } else {
                        format!("{KF}::typed::List<'a, {}>", self.read_ty(t))
                    };
                    let _ = writeln!(
                        self.out,
                        "    /// The values of case `{}`, or `None` when there are none.\n    pub fn {m}(&self) -> {RES}<{OPT}<{arr}>, {ERR}> {{\n        match self.bunch.find({})? {{\n            {OPT}::Some(slot) => Self::array::<{arr}>(self.bunch.message(), slot).map({OPT}::Some),\n            {OPT}::None => Ok({OPT}::None),\n        }}\n    }}\n",
                        c.name, c.tag
                    );
                    let _ = writeln!(
                        dump,
                        "                {} => match Self::array::<{arr}>(self.bunch.message(), slot) {{\n                    Ok(values) => {{\n                        for i in 0..{KF}::typed::DumpItems::item_count(&values) {{\n                            sep(out)?;\n                            out.write_str(\"{}(\")?;\n                            {KF}::typed::DumpItems::dump_item(&values, i, out)?;\n                            out.write_char(')')?;\n                        }}\n                    }}\n                    Err(e) => write!(out, \"<error {{e}}>\")?,\n                }},",
                        c.tag, c.name
                    );
                }
            }
        }
        let _ = writeln!(
            self.out,
            "    /// Reads an entry's array from its slot as `T` (a slot-reading view).\n    fn array<T: {KF}::typed::FromSlot<'a>>(msg: {KF}::view::Message<'a>, slot: {KF}::view::Slot) -> {RES}<T, {ERR}> {{\n        T::from_slot(msg, slot)\n    }}\n}}\n\n\
             impl<'a> {KF}::typed::Read<'a> for {name}{form}<'a> {{\n    const SIZE: u32 = 12;\n    const ALIGN: u32 = 4;\n    fn read(msg: {KF}::view::Message<'a>, at: u32) -> {RES}<Self, {ERR}> {{\n        Ok(Self {{ bunch: {KF}::typed::Bunch::read(msg, at)? }})\n    }}\n    fn zero(msg: {KF}::view::Message<'a>) -> {RES}<Self, {ERR}> {{\n        Ok(Self {{ bunch: {KF}::typed::Bunch::empty(msg) }})\n    }}\n}}\n\n\
             impl<'a> {KF}::typed::Dump for {name}{form}<'a> {{\n    fn dump(&self, out: &mut dyn ::core::fmt::Write) -> ::core::fmt::Result {{\n        let mut first = true;\n        let mut sep = |out: &mut dyn ::core::fmt::Write| -> ::core::fmt::Result {{\n            if !first {{\n                out.write_str(\", \")?;\n            }}\n            first = false;\n            Ok(())\n        }};\n        out.write_char('[')?;\n        for j in 0..self.bunch.entry_count() {{\n            let {OPT}::Some((tag, slot)) = self.bunch.entry(j).ok().flatten() else {{ continue }};\n            match tag {{\n{dump}                _ => write!(out, \"<unknown tag {{tag}}>\")?,\n            }}\n        }}\n        out.write_char(']')\n    }}\n}}\n"
        );
    }

    /// The Rust access path of a flattened leaf from the element value: `a.b`.
    fn leaf_access(&self, elem: TypeId, path: &[u32]) -> String {
        let mut names = vec![];
        let mut ty = elem;
        for &p in path {
            let Some(s) = self.layout.as_struct(ty) else { break };
            let Some(f) = s.fields.get(p as usize) else { break };
            names.push(field_name(&f.name));
            ty = f.ty;
        }
        names.join(".")
    }

    /// A method name for a flattened leaf: field names joined by `_`.
    fn leaf_name(&self, elem: TypeId, path: &[u32]) -> String {
        let mut names = vec![];
        let mut ty = elem;
        for &p in path {
            let Some(s) = self.layout.as_struct(ty) else { break };
            let Some(f) = s.fields.get(p as usize) else { break };
            names.push(field_name(&f.name).trim_start_matches("r#").to_string());
            ty = f.ty;
        }
        let joined = names.join("_");
        if NOT_RAW.contains(&joined.as_str()) {
            format!("{joined}_")
        } else if KEYWORDS.contains(&joined.as_str()) {
            format!("r#{joined}")
        } else {
            joined
        }
    }
}

/// `id` and every inline struct inside it, when `id` is an inline struct:
/// the structs a flattened SoA element is read through as rows.
fn row_structs(layout: &Layout, id: TypeId, out: &mut Vec<TypeId>) {
    let Some(s) = layout.as_struct(id).filter(|s| !s.dynamic) else { return };
    if out.contains(&id) {
        return;
    }
    out.push(id);
    for f in &s.fields {
        row_structs(layout, f.ty, out);
    }
}

/// Inherent methods of generated views, builders, SoA and bunch accessors
/// that a field or case named alike must not shadow.
const VIEW_METHODS: &[&str] = &["at", "root", "absent", "present", "validate", "root_validated"];
const BUILDER_METHODS: &[&str] = &["new", "new_root"];
const SOA_METHODS: &[&str] = &["len", "is_empty", "dump_element"];
const BUNCH_METHODS: &[&str] = &["len", "is_empty", "bunch", "array"];
const ROW_METHODS: &[&str] = &["new"];

/// A field's accessor name: `field_name`, with `_` appended when it would
/// clash with one of `reserved`.
fn method_name(name: &str, reserved: &[&str]) -> String {
    let m = field_name(name);
    if reserved.contains(&m.as_str()) { format!("{m}_") } else { m }
}

/// The constant name of a flag: `read-write` -> `READ_WRITE`.
fn flag_const(name: &str) -> String {
    let s: String = name.chars().map(|c| if c == '-' || c == '.' { '_' } else { c.to_ascii_uppercase() }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) || s == "_" { format!("F_{s}") } else { s }
}
