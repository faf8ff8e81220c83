//! The TypeScript side of `karmem-bridge gen ts` and the layout the
//! JavaScript host (`hosts/js`) drives its dynamic codec with.
//!
//! Owns: [`layout_json`], every type of a [`Layout`] as JSON (sizes,
//! offsets, SoA columns and their hashes, union tags, defaults: everything
//! FORMAT.md makes a reader or writer compute from the schema), so that no
//! JavaScript code has to parse KarmemIDL or lay it out; and [`generate`],
//! the TypeScript module `gen ts` writes: that layout, value types, lazy
//! zero-copy views (getters that read the message when called, bounds-checked,
//! absent fields of older writers read as defaults, FORMAT.md §5.2, §6.3) and
//! top-down builders that write the reference encoder's bytes, over the
//! host package's `typed.js` (`Msg`, `List`, `Builder`).
//! `format/tests/gen_ts.rs` type-checks the output with `tsc --strict` and
//! round-trips it against `value::{encode, decode}` on node.
//!
//! Does not own: the layout rules (`layout`) or the JavaScript runtime
//! (`hosts/js/src/typed.js`, `codec.js`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::{format, vec};
use std::string::{String, ToString};
use std::vec::Vec;

use karmem_idl::ast::{Literal, Prim};

use crate::layout::{ArrayForm, ColumnInfo, Kind, Layout, Leaf, StructInfo, TypeId, UnionInfo};

/// A JSON string literal.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}


fn literal_json(lit: &Literal) -> String {
    match lit {
        // integers as strings, since 64-bit ones do not fit a JSON number
        Literal::Int(i) => quote(&i.to_string()),
        Literal::Float(f) if f.is_nan() => quote("nan"),
        Literal::Float(f) if f.is_infinite() => quote(if *f > 0.0 { "inf" } else { "-inf" }),
        Literal::Float(f) => format!("{f:?}"),
        Literal::Bool(b) => b.to_string(),
        Literal::Char(c) => quote(&c.to_string()),
        Literal::Str(s) => quote(s),
        Literal::Name(n) => quote(&n.name),
    }
}

fn ty_json(ty: Option<TypeId>) -> String {
    ty.map_or("null".to_string(), |t| t.0.to_string())
}

fn columns_json(columns: &[ColumnInfo]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let path: Vec<String> = c.path.iter().map(|p| p.to_string()).collect();
            let leaf = match c.leaf {
                Leaf::Field(t) => t.0.to_string(),
                Leaf::UnionTag => quote("tag"),
                Leaf::UnionPayload => quote("payload"),
            };
            format!(
                "{{\"path\":[{}],\"hash\":{},\"offset\":{},\"size\":{},\"leaf\":{leaf}}}",
                path.join(","),
                c.hash,
                c.offset,
                c.size
            )
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// One type as a JSON object (`k` is its kind).
fn type_json(layout: &Layout, id: TypeId) -> String {
    let info = layout.get(id);
    let (size, align) = (info.size, info.align);
    let body = match &info.kind {
        Kind::Prim(p) => format!("\"k\":\"prim\",\"p\":\"{}\"", p.keyword()),
        Kind::Handle { resource, borrow } => format!("\"k\":\"handle\",\"resource\":{},\"borrow\":{borrow}", quote(resource)),
        Kind::Enum(e) => {
            let cases: Vec<String> = e.cases.iter().map(|(n, v)| format!("[{},{v}]", quote(n))).collect();
            format!("\"k\":\"enum\",\"name\":{},\"width\":{},\"cases\":[{}]", quote(&e.name), e.width, cases.join(","))
        }
        Kind::Flags(f) => {
            let flags: Vec<String> = f.flags.iter().map(|n| quote(n)).collect();
            format!("\"k\":\"flags\",\"name\":{},\"flags\":[{}]", quote(&f.name), flags.join(","))
        }
        Kind::Struct(s) => {
            let fields: Vec<String> = s
                .fields
                .iter()
                .map(|f| {
                    let default = f.default.as_ref().map_or("null".to_string(), literal_json);
                    format!("{{\"name\":{},\"ty\":{},\"offset\":{},\"default\":{default}}}", quote(&f.name), f.ty.0, f.offset)
                })
                .collect();
            let tuple = crate::wave::is_tuple_shaped(s.fields.iter().map(|f| f.name.as_str()));
            format!(
                "\"k\":\"struct\",\"name\":{},\"dynamic\":{},\"tuple\":{tuple},\"map_entry\":{},\"used\":{},\"body_size\":{},\"fields\":[{}],\"columns\":{}",
                quote(&s.name),
                s.dynamic,
                s.map_entry,
                s.used,
                s.body_size,
                fields.join(","),
                columns_json(&s.columns)
            )
        }
        Kind::Union(u) => {
            let cases: Vec<String> = u
                .cases
                .iter()
                .map(|c| format!("{{\"name\":{},\"tag\":{},\"ty\":{}}}", quote(&c.name), c.tag, ty_json(c.ty)))
                .collect();
            format!(
                "\"k\":\"union\",\"name\":{},\"dynamic\":{},\"tag_width\":{},\"payload_offset\":{},\"payload_size\":{},\"cases\":[{}],\"columns\":{}",
                quote(&u.name),
                u.dynamic,
                u.tag_width,
                u.payload_offset,
                u.payload_size,
                cases.join(","),
                columns_json(&u.columns)
            )
        }
        Kind::Array { elem, form } => {
            let form = match form {
                ArrayForm::Plain => "plain",
                ArrayForm::Soa => "soa",
                ArrayForm::Bunch { soa: false } => "bovoa",
                ArrayForm::Bunch { soa: true } => "bovos",
            };
            let map = layout.is_map_entry(*elem);
            format!("\"k\":\"array\",\"elem\":{},\"form\":\"{form}\",\"map\":{map}", elem.0)
        }
        Kind::String { utf16 } => format!("\"k\":\"string\",\"utf16\":{utf16}"),
        Kind::FixedArray { elem, len } => format!("\"k\":\"fixed\",\"elem\":{},\"len\":{len}", elem.0),
        Kind::Option { some, payload_offset } => {
            format!("\"k\":\"option\",\"some\":{},\"payload_offset\":{payload_offset}", some.0)
        }
        Kind::Result { ok, err, payload_offset } => format!(
            "\"k\":\"result\",\"ok\":{},\"err\":{},\"payload_offset\":{payload_offset}",
            ty_json(*ok),
            ty_json(*err)
        ),
    };
    format!("{{{body},\"size\":{size},\"align\":{align}}}")
}

/// Every type of `layout` as JSON: `{"types": [...], "named": {...},
/// "functions": {"iface.fn": {"params": id, "results": id}}}`, types by
/// [`TypeId`] (docs/HOSTS.md, "The layout as JSON").
pub fn layout_json(layout: &Layout) -> String {
    let types: Vec<String> = (0..layout.len()).map(|i| type_json(layout, TypeId(i as u32))).collect();
    let named: Vec<String> = layout.named_items().iter().map(|(n, id)| format!("{}:{}", quote(n), id.0)).collect();
    let mut functions: Vec<(&str, crate::layout::FunctionLayout)> = layout.functions().collect();
    functions.sort_by(|a, b| a.0.cmp(b.0));
    let functions: Vec<String> = functions
        .iter()
        .map(|(n, f)| format!("{}:{{\"params\":{},\"results\":{}}}", quote(n), f.params.0, f.results.0))
        .collect();
    format!(
        "{{\"types\":[\n{}\n],\n\"named\":{{{}}},\n\"functions\":{{{}}}}}\n",
        types.join(",\n"),
        named.join(","),
        functions.join(",\n")
    )
}

/// A TypeScript identifier in PascalCase for an IDL name (`temperature_batch`
/// -> `TemperatureBatch`; `basics.add.params` -> `BasicsAddParams`).
fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['_', '.', '-']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'T');
    }
    out
}


/// Global names of TypeScript and JavaScript that a generated type must not
/// shadow (the generated code names some of them).
const TS_GLOBALS: &[&str] = &[
    "Array", "Object", "String", "Number", "Boolean", "Symbol", "Map", "Set", "Error", "RangeError", "Promise",
    "Date", "Math", "JSON", "BigInt", "Function", "RegExp", "Record", "Partial", "Readonly", "DataView", "Iterable",
    "Iterator", "Generator", "Uint8Array", "Int8Array", "Uint16Array", "Int16Array", "Uint32Array", "Int32Array",
    "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array", "ArrayBuffer", "NaN", "Infinity", "Exclude",
];

/// Field getters a generated class cannot have under the field's own name.
const NOT_GETTERS: &[&str] = &["constructor", "toValue", "__proto__"];

/// Generated TypeScript names of a layout's structs, unions, enums and flags
/// (`gen_rust::type_names`, with TypeScript's global names avoided).
pub fn ts_names(layout: &Layout) -> HashMap<TypeId, String> {
    let mut names = crate::gen_rust::type_names(layout);
    for name in names.values_mut() {
        if TS_GLOBALS.contains(&name.as_str()) {
            name.push('_');
        }
    }
    names
}

/// A property key: bare when it is an identifier, else quoted.
fn key(name: &str) -> String {
    let ident = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if ident { name.to_string() } else { quote(name) }
}

/// The getter of field `name` on a view.
fn getter(name: &str) -> String {
    if NOT_GETTERS.contains(&name) { key(&format!("{name}_")) } else { key(name) }
}

/// `obj.name` or `obj["name"]`.
fn member(obj: &str, name: &str) -> String {
    let k = key(name);
    if k.starts_with('"') { format!("{obj}[{k}]") } else { format!("{obj}.{k}") }
}

/// The method name `prefix` + PascalCase `name` (`set` + `max_temperature`).
fn method(prefix: &str, name: &str) -> String {
    format!("{prefix}{}", crate::gen_rust::camel(name))
}

/// `name`, or `name_`, `name__`, … when a method of the class already has it.
fn unique(taken: &mut Vec<String>, name: String) -> String {
    let mut name = name;
    while taken.contains(&name) {
        name.push('_');
    }
    taken.push(name.clone());
    name
}

/// A TypedArray constructor for a numeric primitive.
fn typed_array(p: Prim) -> Option<&'static str> {
    Some(match p {
        Prim::U8 => "Uint8Array",
        Prim::I8 => "Int8Array",
        Prim::U16 => "Uint16Array",
        Prim::I16 => "Int16Array",
        Prim::U32 => "Uint32Array",
        Prim::I32 => "Int32Array",
        Prim::U64 => "BigUint64Array",
        Prim::I64 => "BigInt64Array",
        Prim::F32 => "Float32Array",
        Prim::F64 => "Float64Array",
        Prim::Bool | Prim::Char => return None,
    })
}

/// The TypeScript code generator: one function per concern, every type
/// handled by its layout id (`rN` reads type `N` inline, `oN` out of line,
/// `vN` turns its view into its value, `wN` writes it inline, `woN` out of
/// line; unions also `uN`/`wuN` from a tag and a payload position; SoA
/// element structs `wrN`/`wsN` write an element's leaves and an array).
struct Ts<'l> {
    layout: &'l Layout,
    names: HashMap<TypeId, String>,
    out: String,
}

impl Ts<'_> {
    fn name(&self, id: TypeId) -> String {
        self.names.get(&id).cloned().unwrap_or_else(|| format!("T{}", id.0))
    }

    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    /// Whether a type's view is its value (no `vN` needed).
    fn identity(&self, id: TypeId) -> bool {
        matches!(self.layout.get(id).kind, Kind::Prim(_) | Kind::Handle { .. } | Kind::Enum(_) | Kind::Flags(_) | Kind::String { .. })
    }

    /// The view of `expr` (of type `id`) as a value.
    fn conv(&self, id: TypeId, expr: &str) -> String {
        if self.identity(id) { expr.to_string() } else { format!("v{}({expr})", id.0) }
    }

    /// The TypeScript type of values of `id` (docs/HOSTS.md's JSON form, 64-bit integers as bigint).
    fn tval(&self, id: TypeId) -> String {
        let layout = self.layout;
        match &layout.get(id).kind {
            Kind::Prim(Prim::U64 | Prim::I64) => "bigint".into(),
            Kind::Prim(Prim::Bool) => "boolean".into(),
            Kind::Prim(Prim::Char) | Kind::String { .. } => "string".into(),
            Kind::Prim(_) | Kind::Handle { .. } => "number".into(),
            Kind::Flags(_) => "string[]".into(),
            Kind::Enum(_) | Kind::Struct(_) | Kind::Union(_) => self.name(id),
            Kind::Array { elem, .. } => match layout.map_types(id) {
                Some((k, v)) => format!("([{}, {}])[]", self.tval(k), self.tval(v)),
                None => format!("({})[]", self.tval(*elem)),
            },
            Kind::FixedArray { elem, .. } => format!("({})[]", self.tval(*elem)),
            Kind::Option { some, .. } => format!("null | {{ some: {} }}", self.tval(*some)),
            Kind::Result { ok, err, .. } => {
                let side = |t: &Option<TypeId>| t.map_or("null".to_string(), |t| self.tval(t));
                format!("{{ ok: {} }} | {{ err: {} }}", side(ok), side(err))
            }
        }
    }

    /// The TypeScript type of the view of `id`.
    fn tview(&self, id: TypeId) -> String {
        let layout = self.layout;
        match &layout.get(id).kind {
            Kind::Struct(_) | Kind::Union(_) => format!("{}View", self.name(id)),
            Kind::Array { elem, form } => {
                if layout.map_types(id).is_some() {
                    return format!("{}Soa", self.name(*elem));
                }
                match (form, &layout.get(*elem).kind) {
                    (ArrayForm::Plain, _) => format!("$List<{}>", self.tview(*elem)),
                    (ArrayForm::Soa, Kind::Struct(_)) => format!("{}Soa", self.name(*elem)),
                    (ArrayForm::Soa, _) => format!("$List<{}>", self.tview(*elem)),
                    (ArrayForm::Bunch { .. }, _) => format!("$List<{}>", self.tval(*elem)),
                }
            }
            Kind::FixedArray { elem, .. } => format!("$List<{}>", self.tview(*elem)),
            Kind::Option { some, .. } => format!("null | {{ some: {} }}", self.tview(*some)),
            Kind::Result { ok, err, .. } => {
                let side = |t: &Option<TypeId>| t.map_or("null".to_string(), |t| self.tview(t));
                format!("{{ ok: {} }} | {{ err: {} }}", side(ok), side(err))
            }
            _ => self.tval(id),
        }
    }

    /// An expression reading the view of `id` at `at` of message `m`.
    fn read(&self, id: TypeId, m: &str, at: &str) -> String {
        match &self.layout.get(id).kind {
            Kind::Prim(p) => format!("{m}.{}({at})", p.keyword()),
            Kind::Handle { .. } => format!("{m}.u32({at})"),
            Kind::String { utf16: false } => format!("{m}.str({at})"),
            Kind::String { utf16: true } => format!("{m}.str16({at})"),
            _ => format!("r{}({m}, {at})", id.0),
        }
    }

    /// A statement writing value `v` of `id` inline at `at` with builder `b`.
    fn write(&self, id: TypeId, b: &str, at: &str, v: &str) -> String {
        match &self.layout.get(id).kind {
            Kind::Prim(p) => format!("{b}.{}({at}, {v});", p.keyword()),
            Kind::Handle { .. } => format!("{b}.u32({at}, {v});"),
            Kind::String { utf16: false } => format!("{b}.str({at}, {v});"),
            Kind::String { utf16: true } => format!("{b}.str16({at}, {v});"),
            _ => format!("w{}({b}, {at}, {v});", id.0),
        }
    }

    /// The view read when a field (or SoA column) is absent: its declared
    /// default, else the zero value (the type read from zero bytes, FORMAT.md §7).
    fn absent(&self, id: TypeId, default: Option<&Literal>) -> String {
        default.and_then(|lit| self.literal(id, lit)).unwrap_or_else(|| self.read(id, "$Z", "8"))
    }

    /// A default literal as a view of `id`, when it fits the type.
    fn literal(&self, id: TypeId, lit: &Literal) -> Option<String> {
        let kind = &self.layout.get(id).kind;
        let float = |f: f64| {
            if f.is_nan() {
                "NaN".to_string()
            } else if f.is_infinite() {
                if f > 0.0 { "Infinity".into() } else { "-Infinity".into() }
            } else {
                format!("{f:?}")
            }
        };
        Some(match (kind, lit) {
            (Kind::Prim(Prim::U64 | Prim::I64), Literal::Int(i)) => format!("{i}n"),
            (Kind::Prim(Prim::F32), Literal::Int(i)) => format!("Math.fround({i})"),
            (Kind::Prim(Prim::F32), Literal::Float(f)) => format!("Math.fround({})", float(*f)),
            (Kind::Prim(Prim::F64), Literal::Float(f)) => float(*f),
            (Kind::Prim(Prim::Bool), Literal::Bool(b)) => b.to_string(),
            (Kind::Prim(Prim::Char), Literal::Char(c)) => quote(&c.to_string()),
            (Kind::Prim(Prim::Bool | Prim::Char), _) => return None,
            (Kind::Prim(_) | Kind::Handle { .. }, Literal::Int(i)) => i.to_string(),
            (Kind::String { .. }, Literal::Str(s)) => quote(s),
            (Kind::Enum(e), Literal::Name(n)) if e.cases.iter().any(|c| c.0 == n.name) => quote(&n.name),
            (Kind::Flags(f), Literal::Name(n)) if f.flags.contains(&n.name) => format!("[{}]", quote(&n.name)),
            (Kind::Union(u), Literal::Name(n)) if u.cases.iter().any(|c| c.name == n.name && c.ty.is_none()) => {
                format!("{{ case: {}, value: null }}", quote(&n.name))
            }
            _ => return None,
        })
    }

    /// Every function of type `id`.
    fn functions(&mut self, id: TypeId) {
        let layout = self.layout;
        let n = id.0;
        let info = layout.get(id);
        let (view, val) = (self.tview(id), self.tval(id));
        let size = info.size;
        // reading
        let body = match &info.kind {
            Kind::Prim(_) | Kind::Handle { .. } | Kind::String { .. } => format!("return {};", self.read(id, "m", "at")),
            Kind::Enum(e) => {
                let mut s = format!("switch (m.uint(at, {})) {{\n", e.width);
                for (c, v) in &e.cases {
                    s.push_str(&format!("    case {v}: return {};\n", quote(c)));
                }
                s.push_str(&format!("    default: throw m.bad({}, at);\n  }}", quote(&format!("not a value of enum {}", e.name))));
                s
            }
            Kind::Flags(f) => {
                let names: Vec<String> = f.flags.iter().map(|x| quote(x)).collect();
                self.line(&format!("const F{n}: readonly string[] = [{}];", names.join(", ")));
                format!("return m.flags(at, {size}, F{n});")
            }
            Kind::Struct(s) if s.dynamic => format!("return new {}View(m, m.u32(at));", self.name(id)),
            Kind::Struct(_) => format!("return new {}View(m, at);", self.name(id)),
            Kind::Union(u) => format!("return u{n}(m, m.uint(at, {}), at + {});", u.tag_width, u.payload_offset),
            Kind::Option { some, payload_offset } => format!(
                "const d = m.u8(at);\n  if (d === 0) return null;\n  if (d !== 1) throw m.bad(\"option discriminant\", at);\n  return {{ some: {} }};",
                self.read(*some, "m", &format!("at + {payload_offset}"))
            ),
            Kind::Result { ok, err, payload_offset } => {
                let side = |t: &Option<TypeId>| t.map_or("null".to_string(), |t| self.read(t, "m", &format!("at + {payload_offset}")));
                format!(
                    "const d = m.u8(at);\n  if (d === 0) return {{ ok: {} }};\n  if (d !== 1) throw m.bad(\"result discriminant\", at);\n  return {{ err: {} }};",
                    side(ok),
                    side(err)
                )
            }
            Kind::FixedArray { elem, len } => format!("return m.fixed(at, {len}, {}, r{});", layout.get(*elem).size, elem.0),
            Kind::Array { elem, form } => {
                let esize = layout.get(*elem).size;
                match (form, &layout.get(*elem).kind) {
                    _ if layout.map_types(id).is_some() => format!("return {}Soa.at(m, at);", self.name(*elem)),
                    (ArrayForm::Plain, _) => format!("return m.list(at, {esize}, r{});", elem.0),
                    (ArrayForm::Soa, Kind::Struct(_)) => format!("return {}Soa.at(m, at);", self.name(*elem)),
                    (ArrayForm::Soa, Kind::Union(u)) => {
                        let h: Vec<String> = u.columns.iter().map(|c| c.hash.to_string()).collect();
                        format!("return m.unionSoa(at, {}, {}, [{}], u{});", u.tag_width, u.payload_size, h.join(", "), elem.0)
                    }
                    (ArrayForm::Bunch { soa }, Kind::Union(u)) => {
                        let tu = self.tval(*elem);
                        let mut s = String::from("return m.bunch(at, (tag, off, len) => {\n    switch (tag) {\n");
                        for c in &u.cases {
                            let k = quote(&c.name);
                            let entry = match c.ty {
                                None => format!("return new $List<{tu}>(len, () => ({{ {k}: null }}));"),
                                Some(t) if *soa && layout.as_struct(t).is_some() => format!(
                                    "const s = new {}Soa(m, off, len);\n        return new $List<{tu}>(len, (i) => ({{ {k}: s.get(i) }}));",
                                    self.name(t)
                                ),
                                Some(t) => {
                                    let ts = layout.get(t).size;
                                    format!(
                                        "m.block(off, len, {ts});\n        return new $List<{tu}>(len, (i) => ({{ {k}: {} }}));",
                                        self.conv(t, &self.read(t, "m", &format!("off + i * {ts}")))
                                    )
                                }
                            };
                            s.push_str(&format!("      case {}: {{\n        {entry}\n      }}\n", c.tag));
                        }
                        s.push_str("      default: return null;\n    }\n  });");
                        s
                    }
                    _ => "throw new Error(\"unreachable\");".into(),
                }
            }
        };
        self.line(&format!("function r{n}(m: $Msg, at: number): {view} {{\n  {body}\n}}"));
        // out of line
        let body = match &info.kind {
            Kind::Struct(s) if s.dynamic => format!("return new {}View(m, off);", self.name(id)),
            _ if size == 0 => format!("return r{n}(m, 0);"),
            _ => format!("return r{n}(m, m.object(off, {size}));"),
        };
        self.line(&format!("function o{n}(m: $Msg, off: number): {view} {{\n  {body}\n}}"));
        // view to value
        if !self.identity(id) {
            let body = match &info.kind {
                Kind::Struct(_) => "return x.toValue();".to_string(),
                Kind::Union(u) => {
                    let mut s = String::from("switch (x.case) {\n");
                    for c in &u.cases {
                        let v = c.ty.map_or("null".to_string(), |t| self.conv(t, "x.value"));
                        s.push_str(&format!("    case {}: return {{ {}: {v} }};\n", quote(&c.name), quote(&c.name)));
                    }
                    s.push_str("  }\n  throw new Error(\"unreachable\");");
                    s
                }
                Kind::Option { some, .. } => format!("return x === null ? null : {{ some: {} }};", self.conv(*some, "x.some")),
                Kind::Result { ok, err, .. } => {
                    let side = |t: &Option<TypeId>, e: &str| t.map_or("null".to_string(), |t| self.conv(t, e));
                    format!("return \"ok\" in x ? {{ ok: {} }} : {{ err: {} }};", side(ok, "x.ok"), side(err, "x.err"))
                }
                Kind::FixedArray { elem, .. } => {
                    if self.identity(*elem) { "return x.toArray();".into() } else { format!("return x.map((e) => v{}(e));", elem.0) }
                }
                Kind::Array { elem, form } => match (form, &layout.get(*elem).kind) {
                    _ if layout.map_types(id).is_some() => "return x.entries();".into(),
                    (ArrayForm::Soa, Kind::Struct(_)) => "return x.toValue();".into(),
                    (ArrayForm::Bunch { .. }, _) => "return x.toArray();".into(),
                    _ if self.identity(*elem) => "return x.toArray();".into(),
                    _ => format!("return x.map((e) => v{}(e));", elem.0),
                },
                _ => "return x;".into(),
            };
            self.line(&format!("function v{n}(x: {view}): {val} {{\n  {body}\n}}"));
        }
        // writing
        let body = match &info.kind {
            Kind::Prim(_) | Kind::Handle { .. } | Kind::String { .. } => self.write(id, "b", "at", "v"),
            Kind::Enum(e) => {
                let mut s = String::from("switch (v) {\n");
                for (c, value) in &e.cases {
                    s.push_str(&format!("    case {}: b.uint(at, {}, {value}); return;\n", quote(c), e.width));
                }
                s.push_str(&format!("  }}\n  throw $notACase(v, {});", quote(&format!("enum {}", e.name))));
                s
            }
            Kind::Flags(_) => format!("b.flags(at, F{n}, v);"),
            Kind::Struct(s) if s.dynamic => format!("b.u32(at, wo{n}(b, v));"),
            Kind::Struct(s) => self.field_writes(s, "b", "at", "v"),
            Kind::Union(u) => format!("wu{n}(b, at, at + {}, v);", u.payload_offset),
            Kind::Option { some, payload_offset } => format!(
                "if (v === null) {{\n    b.u8(at, 0);\n  }} else {{\n    b.u8(at, 1);\n    {}\n  }}",
                self.write(*some, "b", &format!("at + {payload_offset}"), "v.some")
            ),
            Kind::Result { ok, err, payload_offset } => {
                let side = |t: &Option<TypeId>, e: &str| t.map_or(String::new(), |t| self.write(t, "b", &format!("at + {payload_offset}"), e));
                format!(
                    "if (\"ok\" in v) {{\n    b.u8(at, 0);\n    {}\n  }} else {{\n    b.u8(at, 1);\n    {}\n  }}",
                    side(ok, "v.ok"),
                    side(err, "v.err")
                )
            }
            Kind::FixedArray { elem, len } => format!("b.fixed(at, v, {len}, {}, w{});", layout.get(*elem).size, elem.0),
            Kind::Array { elem, form } => match (form, &layout.get(*elem).kind) {
                _ if layout.map_types(id).is_some() => {
                    format!("ws{}(b, at, v.map((e) => ({{ key: e[0], value: e[1] }})));", elem.0)
                }
                (ArrayForm::Plain, _) => format!("b.list(at, v, {}, w{});", layout.get(*elem).size, elem.0),
                (ArrayForm::Soa, Kind::Struct(_)) => format!("ws{}(b, at, v);", elem.0),
                (ArrayForm::Soa, Kind::Union(u)) => {
                    let h: Vec<String> = u.columns.iter().map(|c| c.hash.to_string()).collect();
                    format!(
                        "const c = b.soa(at, v.length, [{}], [{tw}, {ps}]);\n  for (let i = 0; i < v.length; i++) wu{}(b, c[0] + i * {tw}, c[1] + i * {ps}, v[i]);",
                        h.join(", "),
                        elem.0,
                        tw = u.tag_width,
                        ps = u.payload_size
                    )
                }
                (ArrayForm::Bunch { soa }, Kind::Union(u)) => self.bunch_write(u, *soa),
                _ => "throw new Error(\"unreachable\");".into(),
            },
        };
        self.line(&format!("function w{n}(b: $Builder, at: number, v: {val}): void {{\n  {body}\n}}"));
        let body = match &info.kind {
            Kind::Struct(s) if s.dynamic => {
                format!("const at = b.body({});\n  {}\n  return at;", s.used, self.field_writes(s, "b", "at", "v"))
            }
            _ if size == 0 => "return 0;".into(),
            _ => format!("const at = b.object({size});\n  w{n}(b, at, v);\n  return at;"),
        };
        self.line(&format!("function wo{n}(b: $Builder, v: {val}): number {{\n  {body}\n}}\n"));
    }

    /// Statements writing struct `s`'s fields of value `v` at `at`.
    fn field_writes(&self, s: &StructInfo, b: &str, at: &str, v: &str) -> String {
        let tuple = crate::wave::is_tuple_shaped(s.fields.iter().map(|f| f.name.as_str()));
        let parts: Vec<String> = s
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let value = if tuple { format!("{v}[{i}]") } else { member(v, &f.name) };
                self.write(f.ty, b, &format!("{at} + {}", f.offset), &value)
            })
            .collect();
        if parts.is_empty() { format!("void {v};") } else { parts.join("\n  ") }
    }

    /// The body of a bunch array's writer (FORMAT.md §8: one array per case, in tag order).
    fn bunch_write(&self, u: &UnionInfo, soa: bool) -> String {
        let layout = self.layout;
        let mut cases: Vec<&crate::layout::CaseInfo> = u.cases.iter().collect();
        cases.sort_by_key(|c| c.tag);
        let mut s = String::new();
        for (k, c) in cases.iter().enumerate() {
            match c.ty {
                Some(t) => s.push_str(&format!("const g{k}: ({})[] = [];\n  ", self.tval(t))),
                None => s.push_str(&format!("let g{k} = 0;\n  ")),
            }
        }
        s.push_str("for (const x of v) {\n    ");
        let tests: Vec<String> = cases
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let add = if c.ty.is_some() { format!("g{k}.push(x[{}])", quote(&c.name)) } else { format!("g{k}++") };
                format!("if ({} in x) {add};", quote(&c.name))
            })
            .collect();
        s.push_str(&tests.join("\n    else "));
        s.push_str(&format!("\n    else throw $notACase(x, {});\n  }}\n", quote(&format!("union {}", u.name))));
        let counts: Vec<String> = cases
            .iter()
            .enumerate()
            .map(|(k, c)| if c.ty.is_some() { format!("(g{k}.length > 0 ? 1 : 0)") } else { format!("(g{k} > 0 ? 1 : 0)") })
            .collect();
        s.push_str("  if (v.length === 0) {\n    b.slot(at, 0, 0, 0);\n    return;\n  }\n");
        s.push_str(&format!("  const entries = {};\n", if counts.is_empty() { "0".into() } else { counts.join(" + ") }));
        s.push_str("  const table = b.block(8 + 16 * entries);\n  b.slot(at, table, v.length, v.length);\n  b.u32(table, entries);\n  let e = table + 8;\n");
        for (k, c) in cases.iter().enumerate() {
            match c.ty {
                None => s.push_str(&format!(
                    "  if (g{k} > 0) {{\n    b.u32(e, {});\n    b.slot(e + 4, 0, g{k}, g{k});\n    e += 16;\n  }}\n",
                    c.tag
                )),
                Some(t) => {
                    let array = if soa && layout.as_struct(t).is_some() {
                        format!("ws{}(b, e + 4, g{k});", t.0)
                    } else {
                        format!("b.list(e + 4, g{k}, {}, w{});", layout.get(t).size, t.0)
                    };
                    s.push_str(&format!("  if (g{k}.length > 0) {{\n    b.u32(e, {});\n    {array}\n    e += 16;\n  }}\n", c.tag));
                }
            }
        }
        s.push_str("  void e;");
        s
    }

    /// `uN` and `wuN` of union `id`: a case from its tag and payload position, and back.
    fn union(&mut self, id: TypeId, u: &UnionInfo) {
        let n = id.0;
        let mut s = String::from("switch (tag) {\n");
        for c in &u.cases {
            let value = match c.ty {
                None => "null".to_string(),
                Some(t) if u.dynamic => format!("o{}(m, m.u32(pAt))", t.0),
                Some(t) => self.read(t, "m", "pAt"),
            };
            s.push_str(&format!("    case {}: return {{ case: {}, value: {value} }};\n", c.tag, quote(&c.name)));
        }
        s.push_str(&format!("    default: throw m.bad({}, pAt);\n  }}", quote(&format!("not a tag of union {}", u.name))));
        self.line(&format!("function u{n}(m: $Msg, tag: number, pAt: number): {}View {{\n  {s}\n}}", self.name(id)));
        let mut s = String::new();
        for c in &u.cases {
            let k = quote(&c.name);
            let payload = match c.ty {
                None => String::new(),
                Some(t) if u.dynamic => format!("\n    b.u32(pAt, wo{}(b, v[{k}]));", t.0),
                Some(t) => format!("\n    {}", self.write(t, "b", "pAt", &format!("v[{k}]"))),
            };
            s.push_str(&format!("if ({k} in v) {{\n    b.uint(tagAt, {}, {});{payload}\n    return;\n  }}\n  ", u.tag_width, c.tag));
        }
        s.push_str(&format!("throw $notACase(v, {});", quote(&format!("union {}", u.name))));
        self.line(&format!(
            "function wu{n}(b: $Builder, tagAt: number, pAt: number, v: {}): void {{\n  {s}\n}}\n",
            self.name(id)
        ));
    }

    /// The value types of every named type.
    fn value_types(&mut self) {
        let layout = self.layout;
        for i in 0..layout.len() {
            let id = TypeId(i as u32);
            let body = match &layout.get(id).kind {
                Kind::Enum(e) => {
                    let cases: Vec<String> = e.cases.iter().map(|(c, _)| quote(c)).collect();
                    if cases.is_empty() { "never".to_string() } else { cases.join(" | ") }
                }
                Kind::Struct(s) => {
                    let tuple = crate::wave::is_tuple_shaped(s.fields.iter().map(|f| f.name.as_str()));
                    if tuple {
                        let parts: Vec<String> = s.fields.iter().map(|f| self.tval(f.ty)).collect();
                        format!("[{}]", parts.join(", "))
                    } else if s.fields.is_empty() {
                        "Record<string, never>".to_string()
                    } else {
                        let parts: Vec<String> = s.fields.iter().map(|f| format!("  {}: {};", key(&f.name), self.tval(f.ty))).collect();
                        format!("{{\n{}\n}}", parts.join("\n"))
                    }
                }
                Kind::Union(u) => {
                    let cases: Vec<String> = u
                        .cases
                        .iter()
                        .map(|c| format!("{{ {}: {} }}", key(&c.name), c.ty.map_or("null".to_string(), |t| self.tval(t))))
                        .collect();
                    if cases.is_empty() { "never".to_string() } else { cases.join(" | ") }
                }
                _ => continue,
            };
            let what = match &layout.get(id).kind {
                Kind::Enum(e) => format!("enum `{}`", e.name),
                Kind::Struct(s) => format!("struct `{}`", s.name),
                Kind::Union(u) => format!("union `{}`", u.name),
                _ => String::new(),
            };
            self.line(&format!("/** A value of IDL {what}. */\nexport type {} = {body};", self.name(id)));
            if let Kind::Union(u) = &layout.get(id).kind {
                let views: Vec<String> = u
                    .cases
                    .iter()
                    .map(|c| format!("{{ case: {}; value: {} }}", quote(&c.name), c.ty.map_or("null".to_string(), |t| self.tview(t))))
                    .collect();
                let body = if views.is_empty() { "never".to_string() } else { views.join(" | ") };
                self.line(&format!("/** A view of IDL union `{}`: its case and its payload's view. */\nexport type {}View = {body};", u.name, self.name(id)));
            }
            self.line(&format!("/** Layout type id of {what}. */\nexport const {}Type = {};\n", self.name(id), id.0));
        }
    }

    /// `FooView` and `FooBuilder` of struct `id`.
    fn struct_classes(&mut self, id: TypeId, s: &StructInfo) {
        let layout = self.layout;
        let name = self.name(id);
        let tuple = crate::wave::is_tuple_shaped(s.fields.iter().map(|f| f.name.as_str()));
        let kind = if s.dynamic { "dynamic" } else { "inline" };
        self.line(&format!(
            "/**\n * A zero-copy view of IDL struct `{}` ({kind}): each getter reads its field\n * from the message when called, bounds-checked{}.\n */\nexport class {name}View {{",
            s.name,
            if s.dynamic { "; a field an older writer did not write reads as its default (FORMAT.md §5.2)" } else { "" }
        ));
        self.line("  private readonly $m: $Msg;\n  private readonly $at: number;");
        if s.dynamic {
            self.line("  private readonly $used: number;");
            self.line("  constructor(m: $Msg, at: number) {\n    this.$m = m;\n    this.$at = at;\n    this.$used = m.body(at);\n  }");
        } else {
            self.line("  constructor(m: $Msg, at: number) {\n    this.$m = m;\n    this.$at = at;\n  }");
        }
        self.line(&format!(
            "  /** The root of message `bytes`. */\n  static root(bytes: Uint8Array): {name}View {{\n    const m = new $Msg(bytes);\n    return o{}(m, m.root());\n  }}",
            id.0
        ));
        let mut values = Vec::new();
        for f in &s.fields {
            let size = layout.get(f.ty).size;
            let at = format!("this.$at + {}", f.offset);
            let read = self.read(f.ty, "this.$m", &at);
            let expr = if s.dynamic {
                format!("this.$used >= {} ? {read} : {}", f.offset + size, self.absent(f.ty, f.default.as_ref()))
            } else {
                read
            };
            let g = getter(&f.name);
            self.line(&format!("  /** Field `{}`. */\n  get {g}(): {} {{\n    return {expr};\n  }}", f.name, self.tview(f.ty)));
            let access = if g.starts_with('"') { format!("this[{g}]") } else { format!("this.{g}") };
            let value = self.conv(f.ty, &access);
            values.push(if tuple { value } else { format!("{}: {value}", key(&f.name)) });
        }
        let value = if tuple { format!("[{}]", values.join(", ")) } else { format!("{{ {} }}", values.join(", ")) };
        self.line(&format!("  /** The whole value (read now). */\n  toValue(): {name} {{\n    return {value};\n  }}\n}}\n"));

        // builder
        self.line(&format!(
            "/** Writes IDL struct `{}` top-down in a `Builder`: set fields in any order. */\nexport class {name}Builder {{\n  constructor(readonly b: $Builder, readonly at: number) {{}}",
            s.name
        ));
        let root = if s.dynamic { format!("b.body({})", s.used) } else { format!("b.object({})", layout.get(id).size) };
        let mut taken: Vec<String> = vec!["newRoot".into(), "b".into(), "at".into()];
        self.line(&format!(
            "  /** Allocates the message's root {name}. */\n  static newRoot(b: $Builder): {name}Builder {{\n    const at = {root};\n    b.setRoot(at);\n    return new {name}Builder(b, at);\n  }}"
        ));
        for f in &s.fields {
            let at = format!("this.at + {}", f.offset);
            self.line(&format!(
                "  /** Writes field `{}`. */\n  {}(v: {}): this {{\n    {}\n    return this;\n  }}",
                f.name,
                unique(&mut taken, method("set", &f.name)),
                self.tval(f.ty),
                self.write(f.ty, "this.b", &at, "v")
            ));
            match &layout.get(f.ty).kind {
                Kind::Array { elem, form: ArrayForm::Soa } if layout.as_struct(*elem).is_some() && layout.map_types(f.ty).is_none() => {
                    let e = self.name(*elem);
                    let (h, z) = self.column_specs(*elem);
                    self.line(&format!(
                        "  /** Allocates field `{}` as an SoA array of `n` elements, to fill column by column. */\n  {}(n: number): {e}SoaBuilder {{\n    return new {e}SoaBuilder(this.b, this.b.soa({at}, n, [{h}], [{z}]), n);\n  }}",
                        f.name,
                        unique(&mut taken, method("alloc", &f.name))
                    ));
                }
                Kind::Struct(inner) => {
                    let t = self.name(f.ty);
                    let make = if inner.dynamic {
                        format!("const o = this.b.body({});\n    this.b.u32({at}, o);\n    return new {t}Builder(this.b, o);", inner.used)
                    } else {
                        format!("return new {t}Builder(this.b, {at});")
                    };
                    let init = unique(&mut taken, method("init", &f.name));
                    self.line(&format!("  /** Field `{}`'s builder. */\n  {init}(): {t}Builder {{\n    {make}\n  }}", f.name));
                }
                _ => {}
            }
        }
        self.line("}\n");
        let n = id.0;
        self.line(&format!(
            "/** Encodes a whole {name} as a message (in `b`, reset first, when given). */\nexport function encode{name}(v: {name}, b?: $Builder): Uint8Array {{\n  const w = b ?? new $Builder();\n  w.setRoot(wo{n}(w, v));\n  return w.finish();\n}}\n\
             /** The view of a message whose root is a {name}. */\nexport function view{name}(bytes: Uint8Array): {name}View {{\n  return {name}View.root(bytes);\n}}\n\
             /** Decodes a whole {name} from a message (through its view). */\nexport function decode{name}(bytes: Uint8Array): {name} {{\n  return {name}View.root(bytes).toValue();\n}}\n"
        ));
    }

    /// The hashes and element sizes of SoA element `elem`'s columns.
    fn column_specs(&self, elem: TypeId) -> (String, String) {
        let cols = self.layout.columns(elem);
        let h: Vec<String> = cols.iter().map(|c| c.hash.to_string()).collect();
        let z: Vec<String> = cols.iter().map(|c| c.size.to_string()).collect();
        (h.join(", "), z.join(", "))
    }

    /// A flattened leaf's name: field names along its path, joined by `_`.
    fn leaf_name(&self, elem: TypeId, path: &[u32]) -> String {
        let mut names = Vec::new();
        let mut ty = elem;
        for &p in path {
            let Some(f) = self.layout.as_struct(ty).and_then(|s| s.fields.get(p as usize)) else { break };
            names.push(f.name.replace('-', "_"));
            ty = f.ty;
        }
        names.join("_")
    }

    /// The value expression of SoA element `i` of struct `ty` at `path`, from columns `c`.
    fn soa_value(&self, elem: TypeId, ty: TypeId, path: &mut Vec<u32>) -> String {
        let layout = self.layout;
        let Some(s) = layout.as_struct(ty) else { return "undefined".into() };
        let tuple = crate::wave::is_tuple_shaped(s.fields.iter().map(|f| f.name.as_str()));
        let cols = layout.columns(elem);
        let mut parts = Vec::new();
        for (pos, f) in s.fields.iter().enumerate() {
            path.push(pos as u32);
            let value = if layout.as_struct(f.ty).is_some_and(|x| !x.dynamic) {
                self.soa_value(elem, f.ty, path)
            } else if let Some(j) = cols.iter().position(|c| c.path == *path) {
                let size = cols.get(j).map_or(0, |c| c.size);
                let default = if path.len() == 1 && s.dynamic { f.default.as_ref() } else { None };
                let read = format!("(c[{j}] >= 0 ? {} : {})", self.read(f.ty, "m", &format!("c[{j}] + i * {size}")), self.absent(f.ty, default));
                self.conv(f.ty, &read)
            } else {
                "undefined".into()
            };
            path.pop();
            parts.push(if tuple { value } else { format!("{}: {value}", key(&f.name)) });
        }
        if tuple { format!("[{}]", parts.join(", ")) } else { format!("{{ {} }}", parts.join(", ")) }
    }

    /// The value expression of leaf `path` of element value `e` of struct `elem`.
    fn leaf_access(&self, elem: TypeId, e: &str, path: &[u32]) -> String {
        let mut out = e.to_string();
        let mut ty = elem;
        for &p in path {
            let Some(s) = self.layout.as_struct(ty) else { break };
            let Some(f) = s.fields.get(p as usize) else { break };
            let tuple = crate::wave::is_tuple_shaped(s.fields.iter().map(|f| f.name.as_str()));
            out = if tuple { format!("{out}[{p}]") } else { format!("{out}[{}]", quote(&f.name)) };
            ty = f.ty;
        }
        out
    }

    /// `FooSoa` (the view of an SoA array of struct `elem`), its writers and `FooSoaBuilder`.
    fn soa(&mut self, elem: TypeId) {
        let layout = self.layout;
        let Some(s) = layout.as_struct(elem) else { return };
        let name = self.name(elem);
        let n = elem.0;
        let cols = layout.columns(elem).to_vec();
        let (h, z) = self.column_specs(elem);
        let value = self.soa_value(elem, elem, &mut Vec::new());
        self.line(&format!(
            "/**\n * An SoA array of IDL struct `{}` (FORMAT.md §6.3): columns found by hash,\n * a column an older writer did not write reads as its default.\n * `get(i)` reads element `i` whole; the `…Column()` methods read one field lazily.\n */\nexport class {name}Soa implements Iterable<{name}> {{\n  readonly length: number;\n  private readonly $m: $Msg;\n  private readonly $c: number[];\n  constructor(m: $Msg, dir: number, length: number) {{\n    this.$m = m;\n    this.length = length;\n    this.$c = m.columns(dir, length, [{h}], [{z}]);\n  }}\n  /** The array whose slot is at `at`. */\n  static at(m: $Msg, at: number): {name}Soa {{\n    const [dir, n] = m.slot(at);\n    return new {name}Soa(m, dir, n);\n  }}\n  /** Element `i`. */\n  get(i: number): {name} {{\n    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`index ${{i}} out of ${{this.length}}`);\n    const m = this.$m, c = this.$c;\n    void m;\n    void c;\n    return {value};\n  }}\n  *[Symbol.iterator](): Iterator<{name}> {{\n    for (let i = 0; i < this.length; i++) yield this.get(i);\n  }}\n  /** Every element. */\n  toValue(): {name}[] {{\n    const out: {name}[] = [];\n    for (let i = 0; i < this.length; i++) out.push(this.get(i));\n    return out;\n  }}",
            s.name
        ));
        if let Some((k, v)) = crate::layout::map_entry_types(s) {
            self.line(&format!(
                "  /** The map's entries as [key, value], in order (FORMAT.md §6.5). */\n  entries(): ([{}, {}])[] {{\n    return this.toValue().map((e): [{}, {}] => [e.key, e.value]);\n  }}",
                self.tval(k),
                self.tval(v),
                self.tval(k),
                self.tval(v)
            ));
        }
        let mut builder = String::new();
        let mut taken: Vec<String> = ["length", "get", "toValue", "entries", "at"].iter().map(|x| x.to_string()).collect();
        let mut btaken: Vec<String> = ["b", "c", "length", "check", "set"].iter().map(|x| x.to_string()).collect();
        for (j, c) in cols.iter().enumerate() {
            let Leaf::Field(t) = c.leaf else { continue };
            let leaf = self.leaf_name(elem, &c.path);
            let column = unique(&mut taken, format!("{leaf}Column"));
            let array_name = unique(&mut taken, format!("{leaf}Array"));
            let setter = unique(&mut btaken, method("set", &leaf));
            let barray = unique(&mut btaken, format!("{leaf}Array"));
            let default = if c.path.len() == 1 && s.dynamic {
                c.path.first().and_then(|p| s.fields.get(*p as usize)).and_then(|f| f.default.as_ref())
            } else {
                None
            };
            self.line(&format!(
                "  /** Column `{leaf}`, read lazily. */\n  {column}(): $List<{}> {{\n    return this.$m.column(this.$c[{j}], this.length, {}, r{}, () => {});\n  }}",
                self.tview(t),
                c.size,
                t.0,
                self.absent(t, default)
            ));
            let _ = writeln!(
                builder,
                "  /** Sets column `{leaf}` of element `i`. */\n  {setter}(i: number, v: {}): this {{\n    this.check(i);\n    {}\n    return this;\n  }}",
                self.tval(t),
                self.write(t, "this.b", &format!("this.c[{j}] + i * {}", c.size), "v")
            );
            if let Kind::Prim(p) = layout.get(t).kind
                && let Some(array) = typed_array(p)
            {
                let zero = if matches!(p, Prim::U64 | Prim::I64) { "0n" } else { "0" };
                let absent = default.and_then(|d| self.literal(t, d)).unwrap_or_else(|| zero.to_string());
                self.line(&format!(
                    "  /** Column `{leaf}` as a {array} (over the message when aligned, no copy). */\n  {array_name}(): {array} {{\n    return this.$m.typed(this.$c[{j}], this.length, {array}, {absent});\n  }}"
                ));
                let _ = writeln!(
                    builder,
                    "  /** Column `{leaf}` as a {array} over the builder's buffer (valid until its next allocation). */\n  {barray}(): {array} {{\n    return new {array}(this.b.bytes.buffer, this.c[{j}], this.length);\n  }}"
                );
            }
        }
        self.line("}\n");
        // writers
        let mut leaves = Vec::new();
        for (j, c) in cols.iter().enumerate() {
            let Leaf::Field(t) = c.leaf else { continue };
            leaves.push(self.write(t, "b", &format!("c[{j}] + i * {}", c.size), &self.leaf_access(elem, "e", &c.path)));
        }
        let leaves = if leaves.is_empty() { "void e;".to_string() } else { leaves.join("\n  ") };
        self.line(&format!(
            "function wr{n}(b: $Builder, c: number[], i: number, e: {name}): void {{\n  {leaves}\n}}\nfunction ws{n}(b: $Builder, at: number, v: {name}[]): void {{\n  const c = b.soa(at, v.length, [{h}], [{z}]);\n  for (let i = 0; i < v.length; i++) wr{n}(b, c, i, v[i]);\n}}\n"
        ));
        self.line(&format!(
            "/** Fills an allocated SoA array of IDL struct `{}`, element by element or column by column. */\nexport class {name}SoaBuilder {{\n  constructor(readonly b: $Builder, readonly c: number[], readonly length: number) {{}}\n  private check(i: number): void {{\n    if (!Number.isInteger(i) || i < 0 || i >= this.length) throw new RangeError(`index ${{i}} out of ${{this.length}}`);\n  }}\n  /** Writes element `i` whole. */\n  set(i: number, v: {name}): this {{\n    this.check(i);\n    wr{n}(this.b, this.c, i, v);\n    return this;\n  }}\n{builder}}}\n",
            s.name
        ));
    }

    /// Typed helpers per interface function.
    fn function_helpers(&mut self) {
        let layout = self.layout;
        let mut functions: Vec<(&str, crate::layout::FunctionLayout)> = layout.functions().collect();
        functions.sort_by(|a, b| a.0.cmp(b.0));
        for (path, f) in functions {
            let (Some(params), Some(results)) = (layout.as_struct(f.params), layout.as_struct(f.results)) else { continue };
            let (iface, function) = path.split_once('.').unwrap_or((path, ""));
            let base = type_name(path);
            let pname = self.name(f.params);
            let args: Vec<String> = params.fields.iter().map(|p| format!("{}: {}", ts_ident(&p.name), self.tval(p.ty))).collect();
            let ptuple = crate::wave::is_tuple_shaped(params.fields.iter().map(|f| f.name.as_str()));
            let pvalue = if ptuple {
                format!("[{}]", params.fields.iter().map(|p| ts_ident(&p.name)).collect::<Vec<_>>().join(", "))
            } else {
                format!("{{ {} }}", params.fields.iter().map(|p| format!("{}: {}", key(&p.name), ts_ident(&p.name))).collect::<Vec<_>>().join(", "))
            };
            let encode = if params.fields.is_empty() { "new Uint8Array(0)".to_string() } else { format!("encode{pname}({pvalue})") };
            let rname = self.name(f.results);
            let rtuple = crate::wave::is_tuple_shaped(results.fields.iter().map(|f| f.name.as_str()));
            let (result, ret) = match results.fields.as_slice() {
                [] => ("void".to_string(), format!("void {rname}View.root(bytes);")),
                [one] => {
                    let get = if rtuple { "[0]".to_string() } else { format!("[{}]", quote(&one.name)) };
                    (self.tval(one.ty), format!("return decode{rname}(bytes){get};"))
                }
                many => {
                    let types: Vec<String> = many.iter().map(|r| self.tval(r.ty)).collect();
                    let gets: Vec<String> = many
                        .iter()
                        .enumerate()
                        .map(|(i, r)| if rtuple { format!("r[{i}]") } else { format!("r[{}]", quote(&r.name)) })
                        .collect();
                    (format!("[{}]", types.join(", ")), format!("const r = decode{rname}(bytes);\n  return [{}];", gets.join(", ")))
                }
            };
            let names: Vec<String> = params.fields.iter().map(|p| ts_ident(&p.name)).collect();
            self.line(&format!(
                "/** The argument message of `{path}`. */\nexport function encode{base}Args({a}): Uint8Array {{\n  return {encode};\n}}\n\
                 /** The result of `{path}` from its result message. */\nexport function decode{base}Result(bytes: Uint8Array): {result} {{\n  {ret}\n}}\n\
                 /** Calls `{path}` on a loaded guest (karmem-host's `load`). */\nexport function call{base}(guest: $Guest{sep}{a}): {result} {{\n  {call}decode{base}Result(guest.callBytes({}, {}, encode{base}Args({})));\n}}\n",
                quote(iface),
                quote(function),
                names.join(", "),
                a = args.join(", "),
                sep = if args.is_empty() { "" } else { ", " },
                call = if result == "void" { "" } else { "return " },
            ));
        }
    }
}

/// The TypeScript module `karmem-bridge gen ts` writes for `layout`: the
/// layout as JSON (`layout`, for the JavaScript host's dynamic codec), a
/// value type per struct, union and enum; per struct a zero-copy view class
/// (`FooView`: getters read from the message on call, bounds-checked,
/// absent fields of older writers read as their defaults), a top-down
/// builder (`FooBuilder`) and `encodeFoo` / `viewFoo` / `decodeFoo`; per
/// union a view type (`{case, value}`); per struct used as SoA elements a
/// `FooSoa` view (elements, lazy columns, typed-array columns) and a
/// `FooSoaBuilder`; per interface function `encode…Args`, `decode…Result`
/// and `call…`. Writers produce the reference encoder's bytes. The runtime
/// is the host package's `typed.js`, imported from `import_from`.
pub fn generate(layout: &Layout, source: &str, import_from: &str) -> String {
    let mut g = Ts { layout, names: ts_names(layout), out: String::new() };
    g.out.push_str(&format!(
        "// Generated by `karmem-bridge gen ts` from {source}. Do not edit.\n\
         // Views read messages zero-copy (docs/FORMAT.md), builders write them;\n\
         // values are docs/HOSTS.md's JSON form with 64-bit integers as bigint.\n\
         /* eslint-disable */\n\
         import {{ Layout as $Layout, Msg as $Msg, Builder as $Builder, List as $List, zeroMessage as $zeroMessage, notACase as $notACase }} from {q};\n\
         import type {{ Guest as $Guest }} from {q};\n\n",
        q = quote(import_from)
    ));
    g.out.push_str("/** The schema laid out (docs/HOSTS.md, \"The layout as JSON\"), for the dynamic codec. */\n");
    g.out.push_str(&format!("export const layout: $Layout = new $Layout({});\n\n", layout_json(layout).trim_end()));
    let max = (0..layout.len()).map(|i| layout.get(TypeId(i as u32)).size).max().unwrap_or(0);
    g.out.push_str(&format!("/** Zero bytes: what absent fields are read from (FORMAT.md §7). */\nconst $Z = $zeroMessage({max});\n\n"));
    g.value_types();
    // SoA element structs: arrays of structs, `#bovos` struct payloads, map entries.
    let mut soa = Vec::new();
    for i in 0..layout.len() {
        let id = TypeId(i as u32);
        match &layout.get(id).kind {
            Kind::Array { elem, form: ArrayForm::Soa } if layout.as_struct(*elem).is_some() => soa.push(*elem),
            Kind::Array { elem, form: ArrayForm::Bunch { soa: true } } => {
                if let Kind::Union(u) = &layout.get(*elem).kind {
                    soa.extend(u.cases.iter().filter_map(|c| c.ty).filter(|t| layout.as_struct(*t).is_some()));
                }
            }
            _ => {}
        }
    }
    soa.sort();
    soa.dedup();
    for i in 0..layout.len() {
        let id = TypeId(i as u32);
        match &layout.get(id).kind {
            Kind::Struct(s) => g.struct_classes(id, &s.clone()),
            Kind::Union(u) => {
                g.union(id, &u.clone());
                let name = g.name(id);
                g.line(&format!(
                    "/** Encodes a {name} as a message (in `b`, reset first, when given). */\nexport function encode{name}(v: {name}, b?: $Builder): Uint8Array {{\n  const w = b ?? new $Builder();\n  w.setRoot(wo{i}(w, v));\n  return w.finish();\n}}\n\
                     /** The view of a message whose root is a {name}. */\nexport function view{name}(bytes: Uint8Array): {name}View {{\n  const m = new $Msg(bytes);\n  return o{i}(m, m.root());\n}}\n\
                     /** Decodes a {name} from a message (through its view). */\nexport function decode{name}(bytes: Uint8Array): {name} {{\n  return v{i}(view{name}(bytes));\n}}\n"
                ));
            }
            _ => {}
        }
    }
    for elem in soa {
        g.soa(elem);
    }
    for i in 0..layout.len() {
        g.functions(TypeId(i as u32));
    }
    g.function_helpers();
    g.out
}

/// A parameter name as a TypeScript identifier.
fn ts_ident(name: &str) -> String {
    const RESERVED: &[&str] = &[
        "break", "case", "catch", "class", "const", "continue", "debugger", "default", "delete", "do", "else", "enum",
        "export", "extends", "false", "finally", "for", "function", "if", "import", "in", "instanceof", "new", "null",
        "return", "super", "switch", "this", "throw", "true", "try", "typeof", "var", "void", "while", "with", "yield",
        "let", "static", "implements", "interface", "package", "private", "protected", "public", "await", "layout",
        "guest", "arguments", "eval",
    ];
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    let s = if s.starts_with(|c: char| c.is_ascii_digit()) { format!("_{s}") } else { s };
    if RESERVED.contains(&s.as_str()) { format!("{s}_") } else { s }
}
