//! The Go code generator behind `karmem-bridge gen go`.
//!
//! Owns: turning a [`Layout`] into one Go file over the `karmem` package of
//! the Go host module (`hosts/go/karmem`): for every struct a value type
//! (`Foo`, with `Encode` and `DecodeFoo`), a zero-copy view (`FooView`: every
//! read bounds-checked, absent fields read as their default, array fields
//! also as lazy `karmem.Array`s) and a top-down builder (`FooBuilder`); for
//! every union a value type (`Foo{Tag: FooCase, Case: payload}`), enums and
//! flags as named integers with constants; options as pointers, results as
//! `karmem.Result`, fixed arrays as Go arrays, every other array (plain,
//! SoA, bunch, map) as a slice. Per interface function, typed `Call…` and
//! `Handle…` helpers; and the layout itself (`KarmemLayout`, the JSON of
//! `gen_ts::layout_json` plus function type hashes) for the host's dynamic
//! codec and its type-hash checks.
//!
//! Behind the public names, each type id `N` of the layout gets `rN`
//! (read the inline form), `wN` (write it), `zN` (its zero value, FORMAT.md
//! §7), `roN`/`woN` (its out-of-line form, §3); array forms get `ra…`/`wa…`
//! helpers per element type. The bytes written are exactly those of the
//! reference encoder (`value::encode`), which `format/tests/gen_go.rs`
//! checks for every fixture schema.
//!
//! Does not own: the layout (`layout`), the Go runtime package, or other
//! languages' generators.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::string::{String, ToString};
use std::vec::Vec;
use std::{format, vec};

use karmem_idl::ast::{Literal, Prim};

use crate::gen_rust::{camel, type_names};
use crate::layout::{ArrayForm, Kind, Layout, Leaf, StructInfo, TypeId};

/// The Go package generated code imports.
pub const RUNTIME_IMPORT: &str = "karmem-bridge/hosts/go/karmem";

/// A Go package name from a file stem or an IDL package: lower case letters,
/// digits and `_`, not starting with a digit, not a Go keyword.
pub fn package_name(stem: &str) -> String {
    let mut s: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'k');
    }
    if GO_KEYWORDS.contains(&s.as_str()) {
        s.push('_');
    }
    s
}

const GO_KEYWORDS: &[&str] = &[
    "break", "case", "chan", "const", "continue", "default", "defer", "else", "fallthrough", "for", "func", "go",
    "goto", "if", "import", "interface", "map", "package", "range", "return", "select", "struct", "switch", "type",
    "var",
];

/// An exported Go identifier for an IDL name, `_` appended when it clashes
/// with one of `reserved`.
fn exported(name: &str, reserved: &[&str]) -> String {
    let c = camel(name);
    if reserved.contains(&c.as_str()) { format!("{c}_") } else { c }
}

fn go_prim(p: Prim) -> &'static str {
    match p {
        Prim::U8 => "uint8",
        Prim::U16 => "uint16",
        Prim::U32 => "uint32",
        Prim::U64 => "uint64",
        Prim::I8 => "int8",
        Prim::I16 => "int16",
        Prim::I32 => "int32",
        Prim::I64 => "int64",
        Prim::F32 => "float32",
        Prim::F64 => "float64",
        Prim::Bool => "bool",
        Prim::Char => "rune",
    }
}

/// The `karmem.Message` / `karmem.Builder` method suffix of a prim.
fn prim_method(p: Prim) -> &'static str {
    match p {
        Prim::U8 => "U8",
        Prim::U16 => "U16",
        Prim::U32 => "U32",
        Prim::U64 => "U64",
        Prim::I8 => "I8",
        Prim::I16 => "I16",
        Prim::I32 => "I32",
        Prim::I64 => "I64",
        Prim::F32 => "F32",
        Prim::F64 => "F64",
        Prim::Bool => "Bool",
        Prim::Char => "Char",
    }
}

fn uint_ty(width: u32) -> &'static str {
    match width {
        1 => "uint8",
        2 => "uint16",
        4 => "uint32",
        _ => "uint64",
    }
}

/// A Go interpreted string literal.
fn go_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An array helper: element type and form (`p` plain, `s` SoA, `b` bunch, `B` bunch of SoA).
type ArrayKey = (TypeId, char);

fn form_char(form: ArrayForm) -> char {
    match form {
        ArrayForm::Plain => 'p',
        ArrayForm::Soa => 's',
        ArrayForm::Bunch { soa: false } => 'b',
        ArrayForm::Bunch { soa: true } => 'B',
    }
}

/// A schema `gen go` cannot express yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenError(pub String);

impl core::fmt::Display for GenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GenError {}

/// The named structs and unions a Go value of `id` holds by value (not
/// behind an option's pointer or an array's slice).
fn by_value(layout: &Layout, id: TypeId, out: &mut Vec<TypeId>) {
    match &layout.get(id).kind {
        Kind::Struct(_) | Kind::Union(_) => out.push(id),
        Kind::FixedArray { elem, .. } => by_value(layout, *elem, out),
        Kind::Result { ok, err, .. } => {
            for t in [ok, err].into_iter().flatten() {
                by_value(layout, *t, out);
            }
        }
        _ => {}
    }
}

/// A named struct or union whose Go value type would contain itself (a
/// recursive KarmemIDL type through dynamic fields or union payloads; WIT
/// has none): `gen go` refuses it rather than emit code that cannot compile.
fn recursive_type(layout: &Layout) -> Option<String> {
    let inner = |id: TypeId| -> Vec<TypeId> {
        let mut out = Vec::new();
        match &layout.get(id).kind {
            Kind::Struct(s) => s.fields.iter().for_each(|f| by_value(layout, f.ty, &mut out)),
            Kind::Union(u) => u.cases.iter().filter_map(|c| c.ty).for_each(|t| by_value(layout, t, &mut out)),
            _ => {}
        }
        out
    };
    for i in 0..layout.len() {
        let start = TypeId(i as u32);
        let mut seen = BTreeSet::new();
        let mut stack = inner(start);
        while let Some(t) = stack.pop() {
            if t == start {
                let name = match &layout.get(start).kind {
                    Kind::Struct(s) => s.name.clone(),
                    Kind::Union(u) => u.name.clone(),
                    _ => String::new(),
                };
                return Some(name);
            }
            if seen.insert(t) {
                stack.extend(inner(t));
            }
        }
    }
    None
}

/// Generates the Go file for `layout` as package `package`; a recursive
/// type is an error naming it.
pub fn generate(layout: &Layout, source_name: &str, package: &str) -> Result<String, GenError> {
    if let Some(name) = recursive_type(layout) {
        return Err(GenError(format!(
            "`gen go` cannot express recursive type `{name}` yet (it would contain itself by value; make the recursion go through an option or an array)"
        )));
    }
    Ok(generate_unchecked(layout, source_name, package))
}

fn generate_unchecked(layout: &Layout, source_name: &str, package: &str) -> String {
    let names = type_names(layout);
    let mut taken = std::collections::HashSet::new();
    for n in names.values() {
        for derived in [
            n.clone(),
            format!("{n}View"),
            format!("{n}ViewAt"),
            format!("View{n}"),
            format!("Decode{n}"),
            format!("{n}Builder"),
            format!("New{n}Builder"),
            format!("New{n}Root"),
            format!("{n}Names"),
        ] {
            taken.insert(derived);
        }
    }
    let mut g = Gen { layout, out: String::new(), names, arrays: BTreeSet::new(), done: BTreeSet::new(), taken };
    g.header(source_name, package);
    for i in 0..layout.len() {
        let id = TypeId(i as u32);
        g.type_funcs(id);
        match &layout.get(id).kind {
            Kind::Enum(_) => g.enumeration(id),
            Kind::Flags(_) => g.flags(id),
            Kind::Struct(s) => {
                let s = s.clone();
                g.value_struct(id, &s);
                g.view(id, &s);
                g.builder(id, &s);
                g.root_codec(id);
            }
            Kind::Union(_) => {
                g.value_union(id);
                g.root_codec(id);
            }
            _ => {}
        }
    }
    g.functions();
    // Array helpers: bunches ask for their payload arrays, so loop until done.
    while let Some(key) = g.arrays.iter().find(|k| !g.done.contains(*k)).copied() {
        g.done.insert(key);
        g.array_helpers(key);
    }
    // The layout in the JSON form the hosts share (`gen_ts::layout_json`),
    // with the function type hashes the handshake compares (FORMAT.md §11).
    let json = crate::gen_ts::layout_json(layout);
    let mut fns: Vec<&str> = layout.functions().map(|(k, _)| k).collect();
    fns.sort_unstable();
    let mut hashes = String::new();
    for path in fns {
        let (iface, func) = path.split_once('.').unwrap_or((path, ""));
        let _ = writeln!(hashes, "\t{}: {:#x},", go_string(path), layout.function_hash(iface, func).unwrap_or(0));
    }
    let _ = writeln!(
        g.out,
        "// KarmemLayout is the layout of every type of this schema (docs/FORMAT.md),\n// for the host's dynamic codec and its type-hash checks.\nvar KarmemLayout = karmem.MustParseLayout({}).WithHashes(map[string]uint64{{\n{hashes}}})\n",
        go_string(&json)
    );
    g.out
}

struct Gen<'l> {
    layout: &'l Layout,
    out: String,
    names: HashMap<TypeId, String>,
    arrays: BTreeSet<ArrayKey>,
    done: BTreeSet<ArrayKey>,
    /// Package-level identifiers in use (types and what is derived from them, constants).
    taken: std::collections::HashSet<String>,
}

impl Gen<'_> {
    fn header(&mut self, source: &str, package: &str) {
        let _ = writeln!(
            self.out,
            "// Code generated by `karmem-bridge gen go` from `{source}`. DO NOT EDIT.\n\
             //\n\
             // Value types (`Foo`: `Encode`, `DecodeFoo`), zero-copy bounds-checked views\n\
             // (`ViewFoo`, `FooView`) and top-down builders (`NewFooBuilder`) over the\n\
             // Karmem format (docs/FORMAT.md), on package {RUNTIME_IMPORT}.\n\n\
             package {package}\n\n\
             import (\n\t\"context\"\n\t\"math\"\n\n\t\"{RUNTIME_IMPORT}\"\n)\n\n\
             var (\n\t_ = math.Float32frombits\n\t_ context.Context\n)\n"
        );
    }

    /// A package-level identifier not used yet (`_` appended until it is not).
    fn unique(&mut self, base: String) -> String {
        let mut name = base;
        while self.taken.contains(&name) {
            name.push('_');
        }
        self.taken.insert(name.clone());
        name
    }

    fn name(&self, id: TypeId) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| "Unknown".into())
    }

    /// The Go value type of `id`.
    fn ty(&self, id: TypeId) -> String {
        let layout = self.layout;
        match &layout.get(id).kind {
            Kind::Prim(p) => go_prim(*p).into(),
            Kind::Handle { .. } => "uint32".into(),
            Kind::Enum(_) | Kind::Flags(_) | Kind::Struct(_) | Kind::Union(_) => self.name(id),
            Kind::String { .. } => "string".into(),
            Kind::Array { elem, .. } => format!("[]{}", self.ty(*elem)),
            Kind::FixedArray { elem, len } => format!("[{len}]{}", self.ty(*elem)),
            Kind::Option { some, .. } => format!("*{}", self.ty(*some)),
            Kind::Result { ok, err, .. } => {
                let ok = ok.map_or("struct{}".into(), |t| self.ty(t));
                let err = err.map_or("struct{}".into(), |t| self.ty(t));
                format!("karmem.Result[{ok}, {err}]")
            }
        }
    }

    /// A Go expression of type `(T, error)`'s value part for a default
    /// literal, or `None` when the literal does not fit (zero value then).
    fn literal(&self, ty: TypeId, lit: &Literal) -> Option<String> {
        let layout = self.layout;
        Some(match (&layout.get(ty).kind, lit) {
            (Kind::Prim(Prim::Bool), Literal::Bool(b)) => b.to_string(),
            (Kind::Prim(Prim::Char), Literal::Char(c)) => format!("rune({:#x})", *c as u32),
            (Kind::Prim(Prim::F32), Literal::Float(f)) => format!("math.Float32frombits({:#x})", (*f as f32).to_bits()),
            (Kind::Prim(Prim::F64), Literal::Float(f)) => format!("math.Float64frombits({:#x})", f.to_bits()),
            (Kind::Prim(Prim::F32), Literal::Int(i)) => format!("math.Float32frombits({:#x})", (*i as f32).to_bits()),
            (Kind::Prim(Prim::F64), Literal::Int(i)) => format!("math.Float64frombits({:#x})", (*i as f64).to_bits()),
            (Kind::Prim(p), Literal::Int(i)) if !matches!(p, Prim::Bool | Prim::Char) => format!("{}({i})", go_prim(*p)),
            (Kind::Handle { .. }, Literal::Int(i)) => format!("uint32({i})"),
            (Kind::String { .. }, Literal::Str(s)) => go_string(s),
            (Kind::Enum(e), Literal::Name(n)) => {
                let v = e.cases.iter().find(|c| c.0 == n.name)?.1;
                format!("{}({v})", self.name(ty))
            }
            (Kind::Flags(f), Literal::Name(n)) => {
                let i = f.flags.iter().position(|x| *x == n.name)?;
                let size = layout.get(ty).size;
                if size <= 4 {
                    format!("{}(1 << {i})", self.name(ty))
                } else {
                    let mut words = vec!["0".to_string(); (size / 4) as usize];
                    if let Some(w) = words.get_mut(i / 32) {
                        *w = format!("1 << {}", i % 32);
                    }
                    format!("{}{{{}}}", self.name(ty), words.join(", "))
                }
            }
            (Kind::Union(u), Literal::Name(n)) => {
                let c = u.cases.iter().find(|c| c.name == n.name && c.ty.is_none())?;
                format!("{}{{Tag: {}}}", self.name(ty), c.tag)
            }
            _ => return None,
        })
    }

    /// Statements assigning `target` the default of an absent field (its
    /// literal, else the zero value of its type), returning on error.
    fn default_into(&self, target: &str, ty: TypeId, default: Option<&Literal>) -> String {
        match default.and_then(|l| self.literal(ty, l)) {
            Some(expr) => format!("{target} = {expr}\n"),
            None => format!("if {target}, err = z{}(); err != nil {{\n\treturn\n}}\n", ty.0),
        }
    }

    /// `rN`, `wN`, `zN`, `roN`, `woN` for type `id`.
    fn type_funcs(&mut self, id: TypeId) {
        let layout = self.layout;
        let info = layout.get(id);
        let t = self.ty(id);
        let n = id.0;
        let (read, write, zero): (String, String, String) = match &info.kind {
            Kind::Prim(p) => {
                let m = prim_method(*p);
                let write = if *p == Prim::Char {
                    "return b.PutChar(at, v)".to_string()
                } else {
                    format!("b.Put{m}(at, v)\n\treturn nil")
                };
                let zero = match p {
                    Prim::Bool => "return false, nil",
                    _ => "return 0, nil",
                };
                (format!("return m.{m}(at)"), write, zero.into())
            }
            Kind::Handle { .. } => ("return m.U32(at)".into(), "b.PutU32(at, v)\n\treturn nil".into(), "return 0, nil".into()),
            Kind::Enum(e) => {
                let values: Vec<String> = e.cases.iter().map(|c| c.1.to_string()).collect();
                let list = values.join(", ");
                let zero = if e.cases.iter().any(|c| c.1 == 0) {
                    "return 0, nil".to_string()
                } else {
                    "return 0, karmem.ErrNoDefault(0)".to_string()
                };
                (
                    format!(
                        "x, err := m.Uint(at, {w})\n\tif err != nil {{\n\t\treturn 0, err\n\t}}\n\tswitch x {{\n\tcase {list}:\n\t\treturn {t}(x), nil\n\t}}\n\treturn 0, karmem.Errorf(at, \"invalid enum value %d\", x)",
                        w = e.width
                    ),
                    format!(
                        "switch v {{\n\tcase {list}:\n\t\tb.PutUint(at, {w}, uint64(v))\n\t\treturn nil\n\t}}\n\treturn karmem.Errorf(at, \"%d is not a case of enum `{name}`\", v)",
                        w = e.width,
                        name = e.name
                    ),
                    zero,
                )
            }
            Kind::Flags(f) => {
                let count = f.flags.len();
                match info.size {
                    0 => ("return 0, nil".into(), "if v != 0 {\n\t\treturn karmem.Errorf(at, \"undeclared flag bits\")\n\t}\n\treturn nil".into(), "return 0, nil".into()),
                    1 | 2 | 4 => {
                        let m = match info.size {
                            1 => "U8",
                            2 => "U16",
                            _ => "U32",
                        };
                        let mask: u64 = if count >= 64 { u64::MAX } else { (1u64 << count) - 1 };
                        (
                            format!("x, err := m.{m}(at)\n\tif err != nil {{\n\t\treturn 0, err\n\t}}\n\tif uint64(x)&^{mask:#x} != 0 {{\n\t\treturn 0, karmem.Errorf(at, \"undeclared flag bits\")\n\t}}\n\treturn {t}(x), nil"),
                            format!("if uint64(v)&^{mask:#x} != 0 {{\n\t\treturn karmem.Errorf(at, \"undeclared flag bits\")\n\t}}\n\tb.Put{m}(at, {}(v))\n\treturn nil", uint_ty(info.size)),
                            "return 0, nil".into(),
                        )
                    }
                    size => {
                        let words = size / 4;
                        let last = count % 32;
                        let last_mask: u64 = if last == 0 { 0xFFFF_FFFF } else { (1u64 << last) - 1 };
                        (
                            format!("var v {t}\n\tfor i := range v {{\n\t\tx, err := m.U32(at + 4*uint32(i))\n\t\tif err != nil {{\n\t\t\treturn v, err\n\t\t}}\n\t\tv[i] = x\n\t}}\n\tif uint64(v[{}])&^{last_mask:#x} != 0 {{\n\t\treturn v, karmem.Errorf(at, \"undeclared flag bits\")\n\t}}\n\treturn v, nil", words - 1),
                            format!("if uint64(v[{}])&^{last_mask:#x} != 0 {{\n\t\treturn karmem.Errorf(at, \"undeclared flag bits\")\n\t}}\n\tfor i, x := range v {{\n\t\tb.PutU32(at+4*uint32(i), x)\n\t}}\n\treturn nil", words - 1),
                            format!("return {t}{{}}, nil"),
                        )
                    }
                }
            }
            Kind::Struct(s) if s.dynamic => {
                self.dynamic_body_funcs(id, s);
                (
                    format!("off, err := m.U32(at)\n\tif err != nil {{\n\t\treturn {t}{{}}, err\n\t}}\n\treturn rb{n}(m, off)"),
                    format!("off, err := wb{n}(b, v)\n\tif err != nil {{\n\t\treturn err\n\t}}\n\tb.PutU32(at, off)\n\treturn nil"),
                    self.struct_zero(id, s),
                )
            }
            Kind::Struct(s) => {
                let mut read = format!("var v {t}\n");
                if !s.fields.is_empty() {
                    read.push_str("\tvar err error\n");
                }
                let mut write = String::new();
                for f in &s.fields {
                    let fname = exported(&f.name, STRUCT_RESERVED);
                    let _ = write!(read, "\tif v.{fname}, err = r{}(m, at+{}); err != nil {{\n\t\treturn v, err\n\t}}\n", f.ty.0, f.offset);
                    let _ = write!(write, "\tif err := w{}(b, at+{}, v.{fname}); err != nil {{\n\t\treturn err\n\t}}\n", f.ty.0, f.offset);
                }
                read.push_str("\treturn v, nil");
                write.push_str("\treturn nil");
                (read.trim_start_matches('\t').to_string(), write.trim_start_matches('\t').to_string(), self.struct_zero(id, s))
            }
            Kind::Union(u) => {
                let w = u.tag_width;
                let mut read = format!("var v {t}\n\tvar err error\n\ttag, err := m.Uint(tagAt, {w})\n\tif err != nil {{\n\t\treturn v, err\n\t}}\n\tswitch tag {{\n");
                let mut write = "switch v.Tag {\n".to_string();
                for c in &u.cases {
                    let cname = exported(&c.name, UNION_RESERVED);
                    let _ = write!(read, "\tcase {}:\n\t\tv.Tag = {}\n", c.tag, c.tag);
                    let _ = write!(write, "\tcase {}:\n\t\tb.PutUint(tagAt, {w}, {})\n", c.tag, c.tag);
                    if let Some(ct) = c.ty {
                        if u.dynamic {
                            let zero_ok = !layout.is_dynamic_struct(ct);
                            let _ = write!(read, "\t\toff, err := m.U32(payloadAt)\n\t\tif err != nil {{\n\t\t\treturn v, err\n\t\t}}\n");
                            if zero_ok {
                                let _ = write!(read, "\t\tif off == 0 {{\n\t\t\tv.{cname}, err = z{}()\n\t\t\treturn v, err\n\t\t}}\n", ct.0);
                            }
                            let _ = write!(read, "\t\tv.{cname}, err = ro{}(m, off)\n\t\treturn v, err\n", ct.0);
                            let _ = write!(write, "\t\toff, err := wo{}(b, v.{cname})\n\t\tif err != nil {{\n\t\t\treturn err\n\t\t}}\n\t\tb.PutU32(payloadAt, off)\n\t\treturn nil\n", ct.0);
                        } else {
                            let _ = write!(read, "\t\tv.{cname}, err = r{}(m, payloadAt)\n\t\treturn v, err\n", ct.0);
                            let _ = writeln!(write, "\t\treturn w{}(b, payloadAt, v.{cname})", ct.0);
                        }
                    } else {
                        read.push_str("\t\treturn v, nil\n");
                        write.push_str("\t\treturn nil\n");
                    }
                }
                let _ = write!(read, "\t}}\n\treturn v, karmem.Errorf(tagAt, \"unknown union tag %d\", tag)");
                let _ = write!(write, "\t}}\n\treturn karmem.Errorf(tagAt, \"%d is not a case of union `{}`\", v.Tag)", u.name);
                let _ = writeln!(
                    self.out,
                    "func rp{n}(m karmem.Message, tagAt, payloadAt uint32) ({t}, error) {{\n\t{read}\n}}\n\n\
                     func wp{n}(b *karmem.Builder, tagAt, payloadAt uint32, v {t}) error {{\n\t{write}\n}}\n"
                );
                let zero = match u.cases.iter().find(|c| c.tag == 0) {
                    None => format!("return {t}{{}}, karmem.ErrNoDefault(0)"),
                    Some(c) => match c.ty {
                        None => format!("return {t}{{}}, nil"),
                        Some(ct) if u.dynamic && layout.out_of_line_size(ct) > 0 && !layout.is_dynamic_struct(ct) => {
                            format!("return {t}{{}}, karmem.ErrNoDefault(0)")
                        }
                        Some(ct) => format!(
                            "var v {t}\n\tvar err error\n\tv.{}, err = z{}()\n\treturn v, err",
                            exported(&c.name, UNION_RESERVED),
                            ct.0
                        ),
                    },
                };
                let po = u.payload_offset;
                (format!("return rp{n}(m, at, at+{po})"), format!("return wp{n}(b, at, at+{po}, v)"), zero)
            }
            Kind::String { utf16 } => {
                let (r, w) = if *utf16 { ("String16", "PutString16") } else { ("String8", "PutString8") };
                (format!("return m.{r}(at)"), format!("return b.{w}(at, v)"), "return \"\", nil".into())
            }
            Kind::Array { elem, form } => {
                let key = (*elem, form_char(*form));
                self.arrays.insert(key);
                let k = format!("{}{}", key.1, elem.0);
                (format!("return ra{k}(m, at)"), format!("return wa{k}(b, at, v)"), "return nil, nil".into())
            }
            Kind::FixedArray { elem, len } => {
                let size = layout.get(*elem).size;
                let e = elem.0;
                (
                    format!("var v {t}\n\tfor i := range v {{\n\t\tx, err := r{e}(m, at+uint32(i)*{size})\n\t\tif err != nil {{\n\t\t\treturn v, err\n\t\t}}\n\t\tv[i] = x\n\t}}\n\treturn v, nil"),
                    format!("for i := range v {{\n\t\tif err := w{e}(b, at+uint32(i)*{size}, v[i]); err != nil {{\n\t\t\treturn err\n\t\t}}\n\t}}\n\treturn nil"),
                    if *len == 0 {
                        format!("return {t}{{}}, nil")
                    } else {
                        format!("var v {t}\n\tx, err := z{e}()\n\tfor i := range v {{\n\t\tv[i] = x\n\t}}\n\treturn v, err")
                    },
                )
            }
            Kind::Option { some, payload_offset } => {
                let s = some.0;
                (
                    format!("d, err := m.U8(at)\n\tif err != nil {{\n\t\treturn nil, err\n\t}}\n\tswitch d {{\n\tcase 0:\n\t\treturn nil, nil\n\tcase 1:\n\t\tx, err := r{s}(m, at+{payload_offset})\n\t\tif err != nil {{\n\t\t\treturn nil, err\n\t\t}}\n\t\treturn &x, nil\n\t}}\n\treturn nil, karmem.Errorf(at, \"invalid option discriminant %d\", d)"),
                    format!("if v == nil {{\n\t\tb.PutU8(at, 0)\n\t\treturn nil\n\t}}\n\tb.PutU8(at, 1)\n\treturn w{s}(b, at+{payload_offset}, *v)"),
                    "return nil, nil".into(),
                )
            }
            Kind::Result { ok, err, payload_offset } => {
                let po = *payload_offset;
                let read_ok = ok.map_or(String::new(), |o| format!("\t\tif v.Ok, err = r{}(m, at+{po}); err != nil {{\n\t\t\treturn v, err\n\t\t}}\n", o.0));
                let read_err = err.map_or(String::new(), |e| format!("\t\tif v.Err, err = r{}(m, at+{po}); err != nil {{\n\t\t\treturn v, err\n\t\t}}\n", e.0));
                let write_ok = ok.map_or("\t\treturn nil\n".into(), |o| format!("\t\treturn w{}(b, at+{po}, v.Ok)\n", o.0));
                let write_err = err.map_or("\t\treturn nil\n".into(), |e| format!("\t\treturn w{}(b, at+{po}, v.Err)\n", e.0));
                let zero = ok.map_or(format!("return {t}{{}}, nil"), |o| format!("var v {t}\n\tvar err error\n\tv.Ok, err = z{}()\n\treturn v, err", o.0));
                (
                    format!("var v {t}\n\td, err := m.U8(at)\n\tif err != nil {{\n\t\treturn v, err\n\t}}\n\tswitch d {{\n\tcase 0:\n{read_ok}\t\treturn v, nil\n\tcase 1:\n\t\tv.IsErr = true\n{read_err}\t\treturn v, nil\n\t}}\n\treturn v, karmem.Errorf(at, \"invalid result discriminant %d\", d)"),
                    format!("if !v.IsErr {{\n\t\tb.PutU8(at, 0)\n{write_ok}\t}}\n\tb.PutU8(at, 1)\n{write_err}"),
                    zero,
                )
            }
        };
        let ool = if layout.is_dynamic_struct(id) {
            format!(
                "func ro{n}(m karmem.Message, at uint32) ({t}, error) {{\n\treturn rb{n}(m, at)\n}}\n\n\
                 func wo{n}(b *karmem.Builder, v {t}) (uint32, error) {{\n\treturn wb{n}(b, v)\n}}\n"
            )
        } else {
            let size = info.size;
            let write = if size == 0 {
                // Nothing stored (FORMAT.md §3), but the value must still be one of the type.
                format!("\tif err := w{n}(karmem.NewBuilder(), 8, v); err != nil {{\n\t\treturn 0, err\n\t}}\n\treturn 0, nil")
            } else {
                format!("\tat, err := b.AllocObject({size})\n\tif err != nil {{\n\t\treturn 0, err\n\t}}\n\treturn at, w{n}(b, at, v)")
            };
            format!(
                "func ro{n}(m karmem.Message, at uint32) ({t}, error) {{\n\treturn r{n}(m, at)\n}}\n\n\
                 func wo{n}(b *karmem.Builder, v {t}) (uint32, error) {{\n{write}\n}}\n"
            )
        };
        let _ = writeln!(
            self.out,
            "func r{n}(m karmem.Message, at uint32) ({t}, error) {{\n\t{read}\n}}\n\n\
             func w{n}(b *karmem.Builder, at uint32, v {t}) error {{\n\t{write}\n}}\n\n\
             func z{n}() ({t}, error) {{\n\t{zero}\n}}\n\n{ool}"
        );
    }

    /// The zero value of a struct: a dynamic struct's fields take their
    /// declared defaults, an inline struct's fields their zero values.
    fn struct_zero(&self, id: TypeId, s: &StructInfo) -> String {
        let mut out = format!("var v {}\n\tvar err error\n", self.name(id));
        for f in &s.fields {
            let fname = exported(&f.name, STRUCT_RESERVED);
            let default = if s.dynamic { f.default.as_ref() } else { None };
            for line in self.default_into(&format!("v.{fname}"), f.ty, default).lines() {
                let line = line.replace("return", "return v, err");
                let _ = writeln!(out, "\t{line}");
            }
        }
        out.push_str("\treturn v, err");
        out
    }

    /// `rbN`/`wbN`: a dynamic struct's body.
    fn dynamic_body_funcs(&mut self, id: TypeId, s: &StructInfo) {
        let layout = self.layout;
        let t = self.name(id);
        let n = id.0;
        let mut read = format!("func rb{n}(m karmem.Message, at uint32) (v {t}, err error) {{\n\tbody, err := m.Body(at)\n\tif err != nil {{\n\t\treturn\n\t}}\n\t_ = body\n");
        let mut write = format!("func wb{n}(b *karmem.Builder, v {t}) (uint32, error) {{\n\tat, err := b.AllocDynamicStruct({})\n\tif err != nil {{\n\t\treturn 0, err\n\t}}\n", s.used);
        for f in &s.fields {
            let fname = exported(&f.name, STRUCT_RESERVED);
            let size = layout.get(f.ty).size;
            let _ = write!(read, "\tif p, ok := body.Field({}, {size}); ok {{\n\t\tif v.{fname}, err = r{}(m, p); err != nil {{\n\t\t\treturn\n\t\t}}\n\t}} else {{\n", f.offset, f.ty.0);
            for line in self.default_into(&format!("v.{fname}"), f.ty, f.default.as_ref()).lines() {
                let _ = writeln!(read, "\t\t{line}");
            }
            read.push_str("\t}\n");
            let _ = write!(write, "\tif err := w{}(b, at+{}, v.{fname}); err != nil {{\n\t\treturn 0, err\n\t}}\n", f.ty.0, f.offset);
        }
        read.push_str("\treturn\n}\n");
        write.push_str("\treturn at, nil\n}\n");
        self.out.push_str(&read);
        self.out.push('\n');
        self.out.push_str(&write);
        self.out.push('\n');
    }

    fn enumeration(&mut self, id: TypeId) {
        let Kind::Enum(e) = &self.layout.get(id).kind else { return };
        let name = self.name(id);
        let _ = writeln!(self.out, "// {name} is IDL enum `{}`.\ntype {name} {}\n\nconst (", e.name, uint_ty(e.width));
        for (case, value) in &e.cases {
            let c = self.unique(format!("{name}{}", camel(case)));
            let _ = writeln!(self.out, "\t{c} {name} = {value}");
        }
        let _ = writeln!(self.out, ")\n\n// String is the case's IDL name.\nfunc (v {name}) String() string {{\n\tswitch v {{");
        for (case, value) in &e.cases {
            let _ = writeln!(self.out, "\tcase {value}:\n\t\treturn {}", go_string(case));
        }
        let _ = writeln!(self.out, "\t}}\n\treturn \"<invalid>\"\n}}\n");
    }

    fn flags(&mut self, id: TypeId) {
        let info = self.layout.get(id);
        let Kind::Flags(f) = &info.kind else { return };
        let name = self.name(id);
        if info.size <= 4 {
            let repr = if info.size == 0 { "uint8" } else { uint_ty(info.size) };
            let _ = writeln!(self.out, "// {name} is IDL flags `{}`: bit i is flag i (declaration order).\ntype {name} {repr}\n", f.name);
            if !f.flags.is_empty() {
                self.out.push_str("const (\n");
                for (i, flag) in f.flags.iter().enumerate() {
                    let c = self.unique(format!("{name}{}", camel(flag)));
                    let _ = writeln!(self.out, "\t{c} {name} = 1 << {i}");
                }
                self.out.push_str(")\n\n");
            }
            let _ = writeln!(self.out, "// Has reports whether flag i (declaration order) is set.\nfunc (v {name}) Has(i int) bool {{\n\treturn i >= 0 && i < 32 && (uint64(v)>>i)&1 == 1\n}}\n");
        } else {
            let _ = writeln!(
                self.out,
                "// {name} is IDL flags `{}`: flag i is bit i%32 of word i/32.\ntype {name} [{}]uint32\n\n\
                 // Has reports whether flag i (declaration order) is set.\nfunc (v {name}) Has(i int) bool {{\n\treturn i >= 0 && i/32 < len(v) && (v[i/32]>>(i%32))&1 == 1\n}}\n\n\
                 // Set sets flag i.\nfunc (v *{name}) Set(i int) {{\n\tif i >= 0 && i/32 < len(v) {{\n\t\tv[i/32] |= 1 << (i % 32)\n\t}}\n}}\n",
                f.name,
                info.size / 4
            );
        }
        let names: Vec<String> = f.flags.iter().map(|n| go_string(n)).collect();
        let _ = writeln!(self.out, "// {name}Names are the flag names in declaration order.\nvar {name}Names = []string{{{}}}\n", names.join(", "));
    }

    fn value_struct(&mut self, id: TypeId, s: &StructInfo) {
        let name = self.name(id);
        let kind = if s.dynamic { "dynamic" } else { "inline" };
        let _ = writeln!(self.out, "// {name} is IDL struct `{}` ({kind}).\ntype {name} struct {{", s.name);
        for f in &s.fields {
            let _ = writeln!(self.out, "\t{} {}", exported(&f.name, STRUCT_RESERVED), self.ty(f.ty));
        }
        self.out.push_str("}\n\n");
    }

    fn value_union(&mut self, id: TypeId) {
        let Kind::Union(u) = &self.layout.get(id).kind else { return };
        let name = self.name(id);
        let kind = if u.dynamic { "dynamic" } else { "inline" };
        let _ = writeln!(
            self.out,
            "// {name} is IDL union `{}` ({kind}): Tag says which case it is, and\n// the field of that case holds its payload.\ntype {name} struct {{\n\tTag {}",
            u.name,
            uint_ty(u.tag_width)
        );
        for c in &u.cases {
            if let Some(t) = c.ty {
                let _ = writeln!(self.out, "\t{} {}", exported(&c.name, UNION_RESERVED), self.ty(t));
            }
        }
        self.out.push_str("}\n\n// Tags of the cases.\nconst (\n");
        for c in &u.cases {
            let k = self.unique(format!("{name}{}", camel(&c.name)));
            let _ = writeln!(self.out, "\t{k} = {}", c.tag);
        }
        self.out.push_str(")\n\n");
    }

    /// `DecodeFoo` and `(*Foo).Encode`: a message whose root is a `Foo`.
    fn root_codec(&mut self, id: TypeId) {
        let name = self.name(id);
        let n = id.0;
        let _ = writeln!(
            self.out,
            "// Decode{name} reads a message whose root is a {name}, checking every read.\n\
             func Decode{name}(bytes []byte) ({name}, error) {{\n\tm, err := karmem.NewMessage(bytes)\n\tif err != nil {{\n\t\treturn {name}{{}}, err\n\t}}\n\treturn ro{n}(m, m.Root())\n}}\n\n\
             // Encode writes a message whose root is v.\n\
             func (v *{name}) Encode() ([]byte, error) {{\n\tb := karmem.NewBuilder()\n\tif err := v.WriteRoot(b); err != nil {{\n\t\treturn nil, err\n\t}}\n\treturn b.Bytes(), nil\n}}\n\n\
             // WriteRoot writes v as the root of the message in b.\n\
             func (v *{name}) WriteRoot(b *karmem.Builder) error {{\n\tat, err := wo{n}(b, *v)\n\tif err != nil {{\n\t\treturn err\n\t}}\n\tb.SetRoot(at)\n\treturn nil\n}}\n"
        );
    }

    fn view(&mut self, id: TypeId, s: &StructInfo) {
        let layout = self.layout;
        let name = self.name(id);
        let n = id.0;
        let at = if s.dynamic {
            "\tbody, err := m.Body(at)\n\tif err != nil {\n\t\treturn {V}{}, err\n\t}\n\treturn {V}{m: m, at: at, used: body.Used}, nil".replace("{V}", &format!("{name}View"))
        } else {
            format!("\tif _, err := m.Slice(at, {}); err != nil {{\n\t\treturn {name}View{{}}, err\n\t}}\n\treturn {name}View{{m: m, at: at, used: {}}}, nil", s.body_size, s.body_size)
        };
        let _ = writeln!(
            self.out,
            "// {name}View reads a {name} in place: every accessor is bounds-checked,\n// and a field its writer did not write reads as its default.\n\
             type {name}View struct {{\n\tm    karmem.Message\n\tat   uint32\n\tused uint64\n}}\n\n\
             // View{name} is the view of a message whose root is a {name}.\n\
             func View{name}(bytes []byte) ({name}View, error) {{\n\tm, err := karmem.NewMessage(bytes)\n\tif err != nil {{\n\t\treturn {name}View{{}}, err\n\t}}\n\treturn {name}ViewAt(m, m.Root())\n}}\n\n\
             // {name}ViewAt is the view of the {name} whose {} is at `at`.\n\
             func {name}ViewAt(m karmem.Message, at uint32) ({name}View, error) {{\n{at}\n}}\n\n\
             // Value reads the whole {name}.\n\
             func (v {name}View) Value() ({name}, error) {{\n\treturn ro{n}(v.m, v.at)\n}}\n\n\
             func (v {name}View) present(offset, size uint32) (uint32, bool) {{\n\tif uint64(offset)+uint64(size) <= v.used {{\n\t\treturn v.at + offset, true\n\t}}\n\treturn 0, false\n}}\n",
            if s.dynamic { "body" } else { "inline bytes" }
        );
        let reserved: Vec<String> = s.fields.iter().map(|f| exported(&f.name, STRUCT_RESERVED)).collect();
        for f in &s.fields {
            let fname = exported(&f.name, VIEW_RESERVED);
            let t = self.ty(f.ty);
            let size = layout.get(f.ty).size;
            let off = f.offset;
            let _ = writeln!(self.out, "// {fname} reads field `{}`.\nfunc (v {name}View) {fname}() (x {t}, err error) {{\n\tif p, ok := v.present({off}, {size}); ok {{\n\t\treturn r{}(v.m, p)\n\t}}", f.name, f.ty.0);
            for line in self.default_into("x", f.ty, f.default.as_ref()).lines() {
                let _ = writeln!(self.out, "\t{line}");
            }
            self.out.push_str("\treturn\n}\n\n");
            // Nested views and lazy arrays, without materialising.
            let extra = |suffix: &str| {
                let candidate = format!("{fname}{suffix}");
                if reserved.contains(&candidate) { format!("{candidate}_") } else { candidate }
            };
            match &layout.get(f.ty).kind {
                Kind::Struct(inner) => {
                    let iname = self.name(f.ty);
                    let m = extra("View");
                    let body = if inner.dynamic {
                        "\t\toff, err := v.m.U32(p)\n\t\tif err != nil {\n\t\t\treturn {I}View{}, err\n\t\t}\n\t\treturn {I}ViewAt(v.m, off)\n\t}\n\treturn {I}ViewAt(v.m, 0)".replace("{I}", &iname)
                    } else {
                        format!("\t\treturn {iname}ViewAt(v.m, p)\n\t}}\n\treturn {iname}View{{m: v.m}}, nil")
                    };
                    let _ = writeln!(self.out, "// {m} is field `{}` as a view.\nfunc (v {name}View) {m}() ({iname}View, error) {{\n\tif p, ok := v.present({off}, {size}); ok {{\n{body}\n}}\n", f.name);
                }
                Kind::Array { elem, form: form @ (ArrayForm::Plain | ArrayForm::Soa) }
                    if *form == ArrayForm::Plain || layout.as_struct(*elem).is_some() =>
                {
                    let key = (*elem, form_char(*form));
                    self.arrays.insert(key);
                    let m = extra("Array");
                    let e = self.ty(*elem);
                    let _ = writeln!(
                        self.out,
                        "// {m} is field `{}` as a lazily read array.\nfunc (v {name}View) {m}() (karmem.Array[{e}], error) {{\n\tif p, ok := v.present({off}, {size}); ok {{\n\t\treturn la{}{}(v.m, p)\n\t}}\n\treturn karmem.Array[{e}]{{}}, nil\n}}\n",
                        f.name, key.1, elem.0
                    );
                }
                _ => {}
            }
        }
    }

    fn builder(&mut self, id: TypeId, s: &StructInfo) {
        let name = self.name(id);
        let alloc = if s.dynamic {
            format!("b.AllocDynamicStruct({})", s.used)
        } else {
            format!("b.AllocObject({})", s.body_size)
        };
        let _ = writeln!(
            self.out,
            "// {name}Builder writes a {name} top down: allocate it, then set its fields\n// (an array field allocates its block when it is set).\ntype {name}Builder struct {{\n\t// At is the offset of the struct's {}.\n\tAt uint32\n}}\n\n\
             // New{name}Builder allocates a {name} in b.\nfunc New{name}Builder(b *karmem.Builder) ({name}Builder, error) {{\n\tat, err := {alloc}\n\treturn {name}Builder{{At: at}}, err\n}}\n\n\
             // New{name}Root allocates a {name} as the root of the message in b.\nfunc New{name}Root(b *karmem.Builder) ({name}Builder, error) {{\n\ts, err := New{name}Builder(b)\n\tif err == nil {{\n\t\tb.SetRoot(s.At)\n\t}}\n\treturn s, err\n}}\n",
            if s.dynamic { "body" } else { "inline bytes" }
        );
        for f in &s.fields {
            let fname = exported(&f.name, STRUCT_RESERVED);
            let _ = writeln!(
                self.out,
                "// Set{fname} writes field `{}`.\nfunc (s {name}Builder) Set{fname}(b *karmem.Builder, v {}) error {{\n\treturn w{}(b, s.At+{}, v)\n}}\n",
                f.name,
                self.ty(f.ty),
                f.ty.0,
                f.offset
            );
        }
    }

    /// `raK`/`waK` (and `laK`, the lazy form) for array helper `key`.
    fn array_helpers(&mut self, key: ArrayKey) {
        let layout = self.layout;
        let (elem, form) = key;
        let k = format!("{form}{}", elem.0);
        let e = self.ty(elem);
        let esize = layout.get(elem).size;
        let en = elem.0;
        match form {
            'p' => {
                let elem_at = if esize == 0 { "0".to_string() } else { format!("slot.Offset+i*{esize}") };
                let _ = writeln!(
                    self.out,
                    "func la{k}(m karmem.Message, at uint32) (karmem.Array[{e}], error) {{\n\tslot, err := m.Slot(at)\n\tif err != nil {{\n\t\treturn karmem.Array[{e}]{{}}, err\n\t}}\n\treturn karmem.NewArray(slot.Length, func(i uint32) ({e}, error) {{\n\t\treturn r{en}(m, {elem_at})\n\t}}), nil\n}}\n\n\
                     func ra{k}(m karmem.Message, at uint32) ([]{e}, error) {{\n\ta, err := la{k}(m, at)\n\tif err != nil || a.Len() == 0 {{\n\t\treturn nil, err\n\t}}\n\treturn a.Slice()\n}}\n\n\
                     func wa{k}(b *karmem.Builder, at uint32, v []{e}) error {{\n\tn := uint32(len(v))\n\tblock, err := b.AllocPlainArray(at, {esize}, n, n)\n\tif err != nil {{\n\t\treturn err\n\t}}\n\tfor i, x := range v {{\n\t\tif err := w{en}(b, block+uint32(i)*{esize}, x); err != nil {{\n\t\t\treturn err\n\t\t}}\n\t}}\n\treturn nil\n}}\n"
                );
            }
            's' => match &layout.get(elem).kind {
                Kind::Union(u) => {
                    let (tw, ps) = (u.tag_width, u.payload_size);
                    let hashes: Vec<String> = u.columns.iter().map(|c| c.hash.to_string()).collect();
                    let sizes: Vec<String> = u.columns.iter().map(|c| c.size.to_string()).collect();
                    let _ = writeln!(
                        self.out,
                        "func la{k}(m karmem.Message, at uint32) (karmem.Array[{e}], error) {{\n\tslot, err := m.Slot(at)\n\tif err != nil || slot.Length == 0 {{\n\t\treturn karmem.Array[{e}]{{}}, err\n\t}}\n\tsoa, err := m.Soa(slot)\n\tif err != nil {{\n\t\treturn karmem.Array[{e}]{{}}, err\n\t}}\n\tcols, found, err := soa.Columns([]uint32{{{}}})\n\tif err != nil {{\n\t\treturn karmem.Array[{e}]{{}}, err\n\t}}\n\tif !found[0] || !found[1] {{\n\t\treturn karmem.Array[{e}]{{}}, karmem.Errorf(slot.Offset, \"union column missing\")\n\t}}\n\treturn karmem.NewArray(slot.Length, func(i uint32) ({e}, error) {{\n\t\treturn rp{en}(m, cols[0]+i*{tw}, cols[1]+i*{ps})\n\t}}), nil\n}}\n\n\
                         func ra{k}(m karmem.Message, at uint32) ([]{e}, error) {{\n\ta, err := la{k}(m, at)\n\tif err != nil || a.Len() == 0 {{\n\t\treturn nil, err\n\t}}\n\treturn a.Slice()\n}}\n\n\
                         func wa{k}(b *karmem.Builder, at uint32, v []{e}) error {{\n\tn := uint32(len(v))\n\tcols, err := b.AllocSoaArray(at, n, n, []uint32{{{}}}, []uint32{{{}}})\n\tif err != nil {{\n\t\treturn err\n\t}}\n\tfor i, x := range v {{\n\t\tif err := wp{en}(b, cols[0]+uint32(i)*{tw}, cols[1]+uint32(i)*{ps}, x); err != nil {{\n\t\t\treturn err\n\t\t}}\n\t}}\n\treturn nil\n}}\n",
                        hashes.join(", "),
                        hashes.join(", "),
                        sizes.join(", ")
                    );
                }
                _ => self.soa_struct(elem, &k),
            },
            _ => self.bunch(elem, form == 'B', &k),
        }
    }

    /// SoA arrays of struct `elem` (FORMAT.md §6.3): columns found by hash,
    /// a missing column read as the field's default.
    fn soa_struct(&mut self, elem: TypeId, k: &str) {
        let layout = self.layout;
        let e = self.ty(elem);
        let columns = layout.columns(elem).to_vec();
        let hashes: Vec<String> = columns.iter().map(|c| c.hash.to_string()).collect();
        let sizes: Vec<String> = columns.iter().map(|c| c.size.to_string()).collect();
        let mut row = String::new();
        let mut put = String::new();
        for (j, c) in columns.iter().enumerate() {
            let Leaf::Field(lt) = c.leaf else { continue };
            let (access, default) = self.leaf_access(elem, &c.path);
            let at = if c.size == 0 { "0".to_string() } else { format!("cols[{j}]+i*{}", c.size) };
            let _ = write!(row, "\t\tif found[{j}] {{\n\t\t\tif v{access}, err = r{}(m, {at}); err != nil {{\n\t\t\t\treturn v, err\n\t\t\t}}\n\t\t}} else {{\n", lt.0);
            for line in self.default_into(&format!("v{access}"), lt, default.as_ref()).lines() {
                let line = line.replace("return", "return v, err");
                let _ = writeln!(row, "\t\t\t{line}");
            }
            row.push_str("\t\t}\n");
            let at_w = if c.size == 0 { "0".to_string() } else { format!("cols[{j}]+uint32(i)*{}", c.size) };
            let _ = write!(put, "\t\tif err := w{}(b, {at_w}, x{access}); err != nil {{\n\t\t\treturn err\n\t\t}}\n", lt.0);
        }
        let (hashes, sizes) = (hashes.join(", "), sizes.join(", "));
        let _ = writeln!(
            self.out,
            "func la{k}(m karmem.Message, at uint32) (karmem.Array[{e}], error) {{\n\tslot, err := m.Slot(at)\n\tif err != nil || slot.Length == 0 {{\n\t\treturn karmem.Array[{e}]{{}}, err\n\t}}\n\tsoa, err := m.Soa(slot)\n\tif err != nil {{\n\t\treturn karmem.Array[{e}]{{}}, err\n\t}}\n\tcols, found, err := soa.Columns([]uint32{{{hashes}}})\n\tif err != nil {{\n\t\treturn karmem.Array[{e}]{{}}, err\n\t}}\n\t_, _ = cols, found\n\treturn karmem.NewArray(slot.Length, func(i uint32) (v {e}, err error) {{\n{row}\t\treturn v, nil\n\t}}), nil\n}}\n\n\
             func ra{k}(m karmem.Message, at uint32) ([]{e}, error) {{\n\ta, err := la{k}(m, at)\n\tif err != nil || a.Len() == 0 {{\n\t\treturn nil, err\n\t}}\n\treturn a.Slice()\n}}\n\n\
             func wa{k}(b *karmem.Builder, at uint32, v []{e}) error {{\n\tn := uint32(len(v))\n\tcols, err := b.AllocSoaArray(at, n, n, []uint32{{{hashes}}}, []uint32{{{sizes}}})\n\tif err != nil {{\n\t\treturn err\n\t}}\n\t_ = cols\n\tfor i, x := range v {{\n\t\t_ = x\n{put}\t}}\n\treturn nil\n}}\n"
        );
    }

    /// The Go selector of a flattened leaf (`.A.B`) and, for a top-level
    /// field, its declared default (nested leaves are zero, as in `value`).
    fn leaf_access(&self, elem: TypeId, path: &[u32]) -> (String, Option<Literal>) {
        let mut out = String::new();
        let mut ty = elem;
        let mut default = None;
        for &p in path {
            let Some(s) = self.layout.as_struct(ty) else { break };
            let Some(f) = s.fields.get(p as usize) else { break };
            out.push('.');
            out.push_str(&exported(&f.name, STRUCT_RESERVED));
            default = if path.len() == 1 { f.default.clone() } else { None };
            ty = f.ty;
        }
        (out, default)
    }

    /// Bunch arrays of union `elem` (FORMAT.md §8).
    fn bunch(&mut self, elem: TypeId, soa: bool, k: &str) {
        let layout = self.layout;
        let Kind::Union(u) = &layout.get(elem).kind else { return };
        let u = u.clone();
        let e = self.ty(elem);
        let mut read = String::new();
        let mut write = String::new();
        let mut check = String::new();
        let mut sorted = u.cases.clone();
        sorted.sort_by_key(|c| c.tag);
        for c in &u.cases {
            let _ = write!(check, "{}, ", c.tag);
        }
        for c in &sorted {
            let cname = exported(&c.name, UNION_RESERVED);
            let tag = c.tag;
            match c.ty {
                None => {
                    let _ = write!(read, "\t\tcase {tag}:\n\t\t\tfor j := uint32(0); j < entry.Slot.Length; j++ {{\n\t\t\t\tout = append(out, {e}{{Tag: {tag}}})\n\t\t\t}}\n");
                    let _ = write!(write, "\tif n := count({tag}); n > 0 {{\n\t\tentries = append(entries, func(at uint32) error {{\n\t\t\tb.PutSlot(at, karmem.Slot{{Length: n, Capacity: n}})\n\t\t\treturn nil\n\t\t}})\n\t\ttags = append(tags, {tag})\n\t}}\n");
                }
                Some(t) => {
                    let f = if soa && layout.as_struct(t).is_some() { 's' } else { 'p' };
                    self.arrays.insert((t, f));
                    let pk = format!("{f}{}", t.0);
                    let pt = self.ty(t);
                    let _ = write!(read, "\t\tcase {tag}:\n\t\t\tvalues, err := ra{pk}(m, entry.At)\n\t\t\tif err != nil {{\n\t\t\t\treturn nil, err\n\t\t\t}}\n\t\t\tfor _, x := range values {{\n\t\t\t\tout = append(out, {e}{{Tag: {tag}, {cname}: x}})\n\t\t\t}}\n");
                    let _ = write!(write, "\tif n := count({tag}); n > 0 {{\n\t\tpayloads := make([]{pt}, 0, n)\n\t\tfor _, x := range v {{\n\t\t\tif x.Tag == {tag} {{\n\t\t\t\tpayloads = append(payloads, x.{cname})\n\t\t\t}}\n\t\t}}\n\t\tentries = append(entries, func(at uint32) error {{\n\t\t\treturn wa{pk}(b, at, payloads)\n\t\t}})\n\t\ttags = append(tags, {tag})\n\t}}\n");
                }
            }
        }
        let check = if check.is_empty() { String::new() } else { format!("\t\tcase {}:", check.trim_end_matches(", ")) };
        let _ = writeln!(
            self.out,
            "func ra{k}(m karmem.Message, at uint32) ([]{e}, error) {{\n\tslot, err := m.Slot(at)\n\tif err != nil {{\n\t\treturn nil, err\n\t}}\n\tentries, err := m.Bunch(slot)\n\tif err != nil || len(entries) == 0 {{\n\t\treturn nil, err\n\t}}\n\tvar out []{e}\n\tfor _, entry := range entries {{\n\t\tswitch entry.Tag {{\n{read}\t\tdefault:\n\t\t\treturn nil, karmem.Errorf(entry.At-4, \"unknown union tag %d\", entry.Tag)\n\t\t}}\n\t}}\n\treturn out, nil\n}}\n\n\
             func wa{k}(b *karmem.Builder, at uint32, v []{e}) error {{\n\tfor _, x := range v {{\n\t\tswitch x.Tag {{\n{}\n\t\tdefault:\n\t\t\treturn karmem.Errorf(at, \"%d is not a case of union `{}`\", x.Tag)\n\t\t}}\n\t}}\n\tif len(v) == 0 {{\n\t\tb.PutSlot(at, karmem.Slot{{}})\n\t\treturn nil\n\t}}\n\tcount := func(tag uint64) uint32 {{\n\t\tn := uint32(0)\n\t\tfor _, x := range v {{\n\t\t\tif uint64(x.Tag) == tag {{\n\t\t\t\tn++\n\t\t\t}}\n\t\t}}\n\t\treturn n\n\t}}\n\tvar entries []func(at uint32) error\n\tvar tags []uint32\n{write}\ttable, err := b.AllocBlock(karmem.BunchHeaderSize + karmem.BunchEntrySize*uint64(len(entries)))\n\tif err != nil {{\n\t\treturn err\n\t}}\n\tn := uint32(len(v))\n\tb.PutSlot(at, karmem.Slot{{Offset: table, Length: n, Capacity: n}})\n\tb.PutU32(table, uint32(len(entries)))\n\tfor j, write := range entries {{\n\t\tentry := table + karmem.BunchHeaderSize + karmem.BunchEntrySize*uint32(j)\n\t\tb.PutU32(entry, tags[j])\n\t\tif err := write(entry + 4); err != nil {{\n\t\t\treturn err\n\t\t}}\n\t}}\n\treturn nil\n}}\n",
            check,
            u.name
        );
    }

    /// `CallI_F` and `HandleI_F` per interface function.
    fn functions(&mut self) {
        let layout = self.layout;
        let mut fns: Vec<(String, crate::layout::FunctionLayout)> = layout.functions().map(|(k, v)| (k.to_string(), v)).collect();
        fns.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, f) in fns {
            let base = camel(&path);
            let (p, r) = (self.name(f.params), self.name(f.results));
            let _ = writeln!(
                self.out,
                "// Call{base} calls `{path}` through c (a *host.Instance, say).\n\
                 func Call{base}(ctx context.Context, c karmem.Caller, args {p}) ({r}, error) {{\n\tmsg, err := args.Encode()\n\tif err != nil {{\n\t\treturn {r}{{}}, err\n\t}}\n\tout, err := c.Call(ctx, {}, msg)\n\tif err != nil {{\n\t\treturn {r}{{}}, err\n\t}}\n\treturn Decode{r}(out)\n}}\n\n\
                 // Handle{base} serves imported function `{path}` with f.\n\
                 func Handle{base}(f func(context.Context, {p}) ({r}, error)) karmem.Handler {{\n\treturn func(ctx context.Context, msg []byte) ([]byte, error) {{\n\t\targs, err := Decode{p}(msg)\n\t\tif err != nil {{\n\t\t\treturn nil, err\n\t\t}}\n\t\tres, err := f(ctx, args)\n\t\tif err != nil {{\n\t\t\treturn nil, err\n\t\t}}\n\t\treturn res.Encode()\n\t}}\n}}\n",
                go_string(&path)
            );
        }
    }
}

/// Field names the value struct's methods take.
const STRUCT_RESERVED: &[&str] = &["Encode", "WriteRoot"];
/// Method names of views.
const VIEW_RESERVED: &[&str] = &["Value", "Encode", "WriteRoot"];
/// Field names of union values.
const UNION_RESERVED: &[&str] = &["Tag", "Encode", "WriteRoot"];
