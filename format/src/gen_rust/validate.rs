//! The validators `gen rust` generates: for every struct a
//! `FooView::validate(bytes, limits)` that checks a message whose root is
//! that struct exactly as `validate::validate` does (FORMAT.md §9), with
//! the walk over the layout unrolled into one function per type, array form
//! and union, and every size, offset, column hash, absent-field cost and
//! declared value a constant. The steps that do not depend on the schema
//! are `karmem_format::check::Checker`'s, shared with the dynamic
//! validator, so both return the same first error for the same bytes.
//!
//! Owns: choosing the functions a layout needs and writing them, and the
//! number of objects a root type's messages can hold (the checker keeps
//! that many inline: no heap allocation for a type whose count is bounded).
//!
//! Does not own: the rules themselves (`check`, `validate`).

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use karmem_idl::ast::Prim;

use crate::layout::{ArrayForm, Kind, Layout, Leaf, TypeId};

const CK: &str = "::karmem_format::check";
const ERR: &str = "::karmem_format::Error";
const KIND: &str = "::karmem_format::ErrorKind";
const RES: &str = "::core::result::Result";

/// Objects kept inline at most (past this a checker moves them to the heap).
const MAX_INLINE_OBJECTS: u32 = 64;
/// Objects kept inline for a type whose count has no bound.
const UNBOUNDED_INLINE_OBJECTS: u32 = 16;

/// One generated function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Func {
    /// The inline value of a type.
    Value(TypeId),
    /// A dynamic struct's body.
    Body(TypeId),
    /// A union's tag and payload.
    Parts(TypeId),
    /// A plain array of an element type, from its slot.
    Plain(TypeId),
    /// An SoA array of an element type, from its slot.
    Soa(TypeId),
    /// A bunch of a union type (`true`: `#bovos`), from its slot.
    Bunch(TypeId, bool),
    /// The root of a message of a struct type.
    Root(TypeId),
}

fn name(f: Func) -> String {
    match f {
        Func::Value(t) => format!("__km_value_{}", t.0),
        Func::Body(t) => format!("__km_body_{}", t.0),
        Func::Parts(t) => format!("__km_parts_{}", t.0),
        Func::Plain(t) => format!("__km_plain_{}", t.0),
        Func::Soa(t) => format!("__km_soa_{}", t.0),
        Func::Bunch(t, soa) => format!("__km_bunch_{}_{}", t.0, if soa { "soa" } else { "aos" }),
        Func::Root(t) => format!("__km_root_{}", t.0),
    }
}

/// The validators of every struct of `layout`: `impl` blocks adding
/// `validate` to the views named in `views`, then the functions they call.
pub(super) fn generate(layout: &Layout, views: &[(TypeId, String)]) -> String {
    let mut g = Gen { layout, out: String::new(), wanted: BTreeSet::new(), done: HashSet::new() };
    for (id, view) in views {
        g.root(*id, view);
    }
    while let Some(f) = g.wanted.pop_first() {
        if g.done.insert(f) {
            g.func(f);
        }
    }
    g.out
}

struct Gen<'l> {
    layout: &'l Layout,
    out: String,
    wanted: BTreeSet<Func>,
    done: HashSet<Func>,
}

impl Gen<'_> {
    /// A call of `f` (queued for generation) as a statement.
    fn call(&mut self, f: Func, args: &str) -> String {
        self.wanted.insert(f);
        format!("{}(c, {args})?;", name(f))
    }

    /// The statements checking the inline value of `ty` at `at` (nothing
    /// for a type whose values are all valid and have no children).
    fn value(&mut self, ty: TypeId, at: &str) -> String {
        if self.layout.needs_walk(ty) { self.call(Func::Value(ty), at) } else { String::new() }
    }

    fn root(&mut self, id: TypeId, view: &str) {
        let layout = self.layout;
        if layout.as_struct(id).is_none() {
            return;
        }
        let inline = match objects_of_root(layout, id) {
            Some(n) => n.clamp(1, MAX_INLINE_OBJECTS),
            None => UNBOUNDED_INLINE_OBJECTS,
        };
        let check = self.call(Func::Root(id), "at");
        let _ = writeln!(
            self.out,
            "impl<'a> {view}<'a> {{\n    /// Checks that `bytes` is a valid message whose root is this struct, as\n    /// `karmem_format::validate` does (FORMAT.md §9), returning the same first\n    /// error; no heap allocation for up to {inline} objects.\n    pub fn validate(bytes: &[u8], limits: &{CK}::Limits) -> {RES}<(), {ERR}> {{\n        let mut checker = {CK}::Checker::<'_, {inline}>::new(bytes, limits)?;\n        let c = &mut checker;\n        let at = c.msg().root();\n        {check}\n        c.finish()\n    }}\n\n    /// The root of a message, after `validate` with the default limits.\n    pub fn root_validated(bytes: &'a [u8]) -> {RES}<Self, {ERR}> {{\n        Self::validate(bytes, &{CK}::Limits::DEFAULT)?;\n        Self::root(bytes)\n    }}\n}}\n"
        );
    }

    /// The root's out-of-line form at `at`.
    fn root_body(&mut self, id: TypeId) -> String {
        let layout = self.layout;
        if layout.is_dynamic_struct(id) {
            return format!("    {}\n", self.call(Func::Body(id), "at"));
        }
        let v = self.value(id, "at");
        format!("    if c.out_of_line(at, at, {})? {{\n        {v}\n    }}\n    c.leave();\n", layout.get(id).size)
    }

    fn func(&mut self, f: Func) {
        let body = match f {
            Func::Value(t) => self.value_body(t),
            Func::Body(t) => self.body_body(t),
            Func::Parts(t) => self.parts_body(t),
            Func::Plain(t) => self.plain_body(t),
            Func::Soa(t) => self.soa_body(t),
            Func::Bunch(t, soa) => self.bunch_body(t, soa),
            Func::Root(t) => self.root_body(t),
        };
        let params = match f {
            Func::Value(_) | Func::Body(_) | Func::Root(_) => "at: u32",
            Func::Parts(_) => "tag: u64, tag_at: u32, payload_at: u32",
            Func::Plain(_) | Func::Soa(_) | Func::Bunch(..) => "slot: ::karmem_format::view::Slot",
        };
        let _ = writeln!(
            self.out,
            "#[inline]\nfn {}<const N: usize>(c: &mut {CK}::Checker<'_, N>, {params}) -> {RES}<(), {ERR}> {{\n{body}    Ok(())\n}}\n",
            name(f)
        );
    }

    fn value_body(&mut self, ty: TypeId) -> String {
        let layout = self.layout;
        let info = layout.get(ty);
        let mut out = String::new();
        match &info.kind {
            Kind::Prim(Prim::Bool) => out.push_str("    c.msg().bool(at)?;\n"),
            Kind::Prim(Prim::Char) => out.push_str("    c.msg().char(at)?;\n"),
            Kind::Prim(_) | Kind::Handle { .. } => {}
            Kind::Enum(e) => {
                let values: Vec<String> = e.cases.iter().map(|c| c.1.to_string()).collect();
                let arm = if values.is_empty() { String::new() } else { format!("{} => {{}}\n        ", values.join(" | ")) };
                let _ = writeln!(
                    out,
                    "    let v = c.msg().uint(at, {})?;\n    match v {{\n        {arm}_ => return Err({ERR}::new({KIND}::InvalidEnum {{ value: v }}, at)),\n    }}",
                    e.width
                );
            }
            Kind::Flags(f) => {
                let _ = writeln!(out, "    let bytes = c.msg().slice(at, {})?;", info.size);
                let n = f.flags.len();
                for i in 0..info.size as usize {
                    let valid_bits = n.saturating_sub(i * 8).min(8);
                    if valid_bits == 8 {
                        continue;
                    }
                    let mask: u8 = (1u8 << valid_bits) - 1;
                    let _ = writeln!(
                        out,
                        "    if bytes.get({i}).is_some_and(|b| b & !{mask:#04x}u8 != 0) {{\n        return Err({ERR}::new({KIND}::InvalidFlags, at + {i}));\n    }}"
                    );
                }
            }
            Kind::Struct(s) if s.dynamic => {
                let call = self.call(Func::Body(ty), "off");
                let _ = writeln!(out, "    let off: u32 = c.msg().scalar(at)?;\n    {call}");
            }
            Kind::Struct(s) => {
                for f in &s.fields {
                    let v = self.value(f.ty, &format!("at + {}", f.offset));
                    if !v.is_empty() {
                        let _ = writeln!(out, "    {v}");
                    }
                }
            }
            Kind::Union(u) => {
                let call = self.call(Func::Parts(ty), &format!("tag, at, at + {}", u.payload_offset));
                let _ = writeln!(out, "    let tag = c.msg().uint(at, {})?;\n    {call}", u.tag_width);
            }
            Kind::String { utf16 } => {
                let _ = writeln!(out, "    c.string(at, {utf16})?;");
            }
            Kind::Array { elem, form } => {
                let f = match form {
                    ArrayForm::Plain => Func::Plain(*elem),
                    ArrayForm::Soa => Func::Soa(*elem),
                    ArrayForm::Bunch { soa } => Func::Bunch(*elem, *soa),
                };
                let call = self.call(f, "slot");
                let _ = writeln!(out, "    let slot = c.enter_slot(at)?;\n    {call}\n    c.leave();");
            }
            Kind::FixedArray { elem, len } => {
                if layout.needs_walk(*elem) {
                    let size = layout.get(*elem).size;
                    let v = self.value(*elem, &format!("at + i * {size}"));
                    let _ = writeln!(out, "    c.visit({len}, at)?;\n    for i in 0..{len}u32 {{\n        {v}\n    }}");
                }
            }
            Kind::Option { some, payload_offset } => {
                let v = self.value(*some, &format!("at + {payload_offset}"));
                let _ = writeln!(
                    out,
                    "    match c.msg().scalar::<u8>(at)? {{\n        0 => {{}}\n        1 => {{\n            {v}\n        }}\n        value => return Err({ERR}::new({KIND}::InvalidDiscriminant {{ value }}, at)),\n    }}"
                );
            }
            Kind::Result { ok, err, payload_offset } => {
                let ok = ok.map(|t| self.value(t, &format!("at + {payload_offset}"))).unwrap_or_default();
                let err = err.map(|t| self.value(t, &format!("at + {payload_offset}"))).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    match c.msg().scalar::<u8>(at)? {{\n        0 => {{\n            {ok}\n        }}\n        1 => {{\n            {err}\n        }}\n        value => return Err({ERR}::new({KIND}::InvalidDiscriminant {{ value }}, at)),\n    }}"
                );
            }
        }
        out
    }

    fn body_body(&mut self, ty: TypeId) -> String {
        let layout = self.layout;
        let Some(s) = layout.as_struct(ty) else { return String::new() };
        let mut out = String::new();
        let mut empty = 0u64;
        for f in &s.fields {
            empty = empty.saturating_add(layout.absent_field_cost(f));
        }
        let _ = writeln!(out, "    if at == 0 {{\n        // the empty struct: every field absent\n        return c.visit({empty}, 0);\n    }}\n    let used = c.struct_body(at)?;");
        for f in &s.fields {
            let end = u64::from(f.offset) + u64::from(layout.get(f.ty).size);
            let cost = layout.absent_field_cost(f);
            let v = self.value(f.ty, &format!("at + {}", f.offset));
            if v.is_empty() {
                let _ = writeln!(out, "    // field `{}`\n    if used < {end} {{\n        c.visit({cost}, at)?;\n    }}", f.name);
            } else {
                let _ = writeln!(
                    out,
                    "    // field `{}`\n    if {end} <= used {{\n        {v}\n    }} else {{\n        c.visit({cost}, at)?;\n    }}",
                    f.name
                );
            }
        }
        out.push_str("    c.leave();\n");
        out
    }

    fn parts_body(&mut self, ty: TypeId) -> String {
        let layout = self.layout;
        let Kind::Union(u) = &layout.get(ty).kind else { return String::new() };
        let mut out = String::from("    match tag {\n");
        for case in &u.cases {
            let mut arm = String::new();
            match (u.dynamic, case.ty) {
                (false, Some(t)) => arm = self.value(t, "payload_at"),
                (false, None) => {}
                (true, None) => {
                    let _ = write!(
                        arm,
                        "let off: u32 = c.msg().scalar(payload_at)?;\n            if off != 0 {{\n                return Err({ERR}::new({KIND}::BadOffset {{ expected_zero: true }}, payload_at));\n            }}"
                    );
                }
                (true, Some(t)) if layout.is_dynamic_struct(t) => {
                    let call = self.call(Func::Body(t), "off");
                    let _ = write!(arm, "let off: u32 = c.msg().scalar(payload_at)?;\n            {call}");
                }
                (true, Some(t)) => {
                    let v = self.value(t, "off");
                    let _ = write!(
                        arm,
                        "let off: u32 = c.msg().scalar(payload_at)?;\n            if c.out_of_line(payload_at, off, {})? {{\n                {v}\n            }}\n            c.leave();",
                        layout.get(t).size
                    );
                }
            }
            let _ = writeln!(out, "        {} => {{\n            {arm}\n        }}", case.tag);
        }
        let _ = writeln!(out, "        _ => return Err({CK}::unknown_tag(tag, tag_at)),\n    }}");
        out
    }

    fn plain_body(&mut self, elem: TypeId) -> String {
        let size = self.layout.get(elem).size;
        let mut out = format!("    c.plain_array(slot, {size})?;\n");
        let at = if size == 0 { "0".to_string() } else { format!("slot.offset + i * {size}") };
        let v = self.value(elem, &at);
        if !v.is_empty() {
            let _ = writeln!(out, "    for i in 0..slot.length {{\n        {v}\n    }}");
        }
        out
    }

    fn soa_body(&mut self, elem: TypeId) -> String {
        let layout = self.layout;
        let columns = layout.columns(elem).to_vec();
        let union = match &layout.get(elem).kind {
            Kind::Union(u) => Some((u.tag_width, u.payload_size)),
            _ => None,
        };
        let mut out = String::from("    let Some(dir) = c.soa_directory(slot)? else { return Ok(()) };\n");
        for j in 0..columns.len() {
            let _ = writeln!(out, "    let mut seen_{j} = false;");
        }
        if union.is_some() {
            out.push_str("    let mut tags = 0u32;\n    let mut payloads = 0u32;\n");
        }
        let _ = write!(out, "    let mut cursor = {CK}::Cursor::default();\n    while let Some((hash, offset, entry_at)) = dir.next(&mut cursor)? {{\n        match hash {{\n");
        for (j, col) in columns.iter().enumerate() {
            let walk = match col.leaf {
                Leaf::Field(t) => {
                    let at = if col.size == 0 { "0".to_string() } else { format!("offset + i * {}", col.size) };
                    let v = self.value(t, &at);
                    if v.is_empty() { String::new() } else { format!("for i in 0..slot.length {{\n                    {v}\n                }}") }
                }
                Leaf::UnionTag => "tags = offset;".to_string(),
                Leaf::UnionPayload => "payloads = offset;".to_string(),
            };
            let walk = if walk.is_empty() { walk } else { format!("\n                {walk}") };
            let _ = writeln!(
                out,
                "            {:#010x} => {{\n                // path {:?}\n                seen_{j} = true;\n                c.column(slot, offset, {})?;{walk}\n            }}",
                col.hash, col.path, col.size
            );
        }
        out.push_str("            _ => c.unknown_column(offset, entry_at)?,\n        }\n    }\n");
        for (j, col) in columns.iter().enumerate() {
            let _ = writeln!(
                out,
                "    if !seen_{j} {{\n        c.visit(u64::from(slot.length).saturating_mul({}), dir.offset())?;\n    }}",
                layout.missing_column_cost(col)
            );
        }
        if let Some((tw, ps)) = union {
            let call = self.call(Func::Parts(elem), &format!("tag, tag_at, payloads + i * {ps}"));
            let _ = writeln!(
                out,
                "    c.union_columns(slot, tags, payloads, {ps})?;\n    for i in 0..slot.length {{\n        let tag_at = tags + i * {tw};\n        let tag = c.msg().uint(tag_at, {tw})?;\n        {call}\n    }}"
            );
        }
        out
    }

    fn bunch_body(&mut self, elem: TypeId, soa: bool) -> String {
        let layout = self.layout;
        let Kind::Union(u) = &layout.get(elem).kind else {
            return "    c.visit(slot.length as u64, slot.offset)?;\n".into();
        };
        let mut out = String::from(
            "    let Some((table, m)) = c.bunch_table(slot)? else { return Ok(()) };\n    let mut total = 0u64;\n    let mut previous: ::core::option::Option<u32> = None;\n    for j in 0..m {\n        let (entry, tag) = c.bunch_entry(table, j, &mut previous)?;\n        match tag {\n",
        );
        for case in &u.cases {
            let Ok(tag) = u32::try_from(case.tag) else { continue };
            let check = match case.ty {
                None => "c.empty_bunch_entry(entry, inner)?;".to_string(),
                Some(t) => {
                    let f = if soa && layout.as_struct(t).is_some() { Func::Soa(t) } else { Func::Plain(t) };
                    let call = self.call(f, "inner");
                    format!("c.follow(entry)?;\n                {call}\n                c.leave();")
                }
            };
            let _ = writeln!(
                out,
                "            {tag} => {{\n                let inner = c.msg().slot(entry + 4)?;\n                total += inner.length as u64;\n                {check}\n            }}"
            );
        }
        let _ = writeln!(out, "            _ => return Err({CK}::unknown_tag(tag as u64, entry)),\n        }}\n    }}\n    {CK}::bunch_total(total, slot.length, table)?;");
        out
    }
}

/// Objects at most in a message whose root is struct `id`, or `None` when
/// messages can hold any number.
fn objects_of_root(layout: &Layout, id: TypeId) -> Option<u32> {
    let mut open = Vec::new();
    if layout.is_dynamic_struct(id) {
        body_objects(layout, id, &mut open)
    } else {
        objects(layout, id, &mut open)?.checked_add(1)
    }
}

/// Objects at most in a dynamic struct's body and below.
fn body_objects(layout: &Layout, id: TypeId, open: &mut Vec<TypeId>) -> Option<u32> {
    if open.contains(&id) {
        return None;
    }
    open.push(id);
    let mut n = Some(1u32);
    if let Some(s) = layout.as_struct(id) {
        for f in &s.fields {
            n = n.zip(objects(layout, f.ty, open)).and_then(|(a, b)| a.checked_add(b));
        }
    }
    open.pop();
    n
}

/// Objects at most below the inline value of `ty`.
fn objects(layout: &Layout, ty: TypeId, open: &mut Vec<TypeId>) -> Option<u32> {
    match &layout.get(ty).kind {
        Kind::Prim(_) | Kind::Handle { .. } | Kind::Enum(_) | Kind::Flags(_) => Some(0),
        Kind::Struct(s) if s.dynamic => body_objects(layout, ty, open),
        Kind::Struct(s) => {
            let mut n = Some(0u32);
            for f in &s.fields {
                n = n.zip(objects(layout, f.ty, open)).and_then(|(a, b)| a.checked_add(b));
            }
            n
        }
        Kind::Union(u) => {
            let mut n = Some(0u32);
            for c in &u.cases {
                let Some(t) = c.ty else { continue };
                let one = if !u.dynamic {
                    objects(layout, t, open)
                } else if layout.is_dynamic_struct(t) {
                    body_objects(layout, t, open)
                } else {
                    objects(layout, t, open).and_then(|k| k.checked_add(1))
                };
                n = n.zip(one).map(|(a, b)| a.max(b));
            }
            n
        }
        Kind::String { .. } => Some(1),
        Kind::Array { elem, form: ArrayForm::Plain } => (objects(layout, *elem, open)? == 0).then_some(1),
        Kind::Array { elem, form: ArrayForm::Soa } => {
            let columns = layout.columns(*elem);
            let mut per_element = 0u32;
            for c in columns {
                if let Leaf::Field(t) = c.leaf {
                    per_element = per_element.checked_add(objects(layout, t, open)?)?;
                }
            }
            if let Kind::Union(_) = layout.get(*elem).kind {
                per_element = per_element.checked_add(objects(layout, *elem, open)?)?;
            }
            (per_element == 0).then(|| 1 + columns.len() as u32)
        }
        Kind::Array { form: ArrayForm::Bunch { .. }, .. } => None,
        Kind::FixedArray { elem, len } => objects(layout, *elem, open)?.checked_mul(*len),
        Kind::Option { some, .. } => objects(layout, *some, open),
        Kind::Result { ok, err, .. } => {
            let a = match ok {
                Some(t) => objects(layout, *t, open)?,
                None => 0,
            };
            let b = match err {
                Some(t) => objects(layout, *t, open)?,
                None => 0,
            };
            Some(a.max(b))
        }
    }
}
