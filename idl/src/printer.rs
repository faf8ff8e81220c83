//! The printer behind `fmt`: a [`File`] in canonical form.
//!
//! Owns: layout (four-space indent, one blank line between items), literal
//! escaping, and parentheses around array elements that carry attributes —
//! only where the grammar needs them. `parse(print(f))` equals `f` up to spans.

use std::fmt::Write as _;

use crate::ast::*;

/// Prints `file` in canonical form.
pub fn print(file: &File) -> String {
    let mut out = String::new();
    if let Some(package) = &file.package {
        docs(&mut out, &package.docs, "");
        let _ = write!(out, "package {}", package.name);
        if let Some(version) = &package.version {
            let _ = write!(out, "@{version}");
        }
        out.push_str(";\n");
    }
    for item in &file.items {
        if !out.is_empty() {
            out.push('\n');
        }
        print_item(&mut out, item);
    }
    out
}

fn docs(out: &mut String, docs: &Docs, indent: &str) {
    for line in &docs.0 {
        if line.is_empty() {
            let _ = writeln!(out, "{indent}///");
        } else {
            let _ = writeln!(out, "{indent}/// {line}");
        }
    }
}

fn evolution(e: Evolution) -> &'static str {
    match e {
        Evolution::Inline => "inline",
        Evolution::Dynamic => "dynamic",
    }
}

pub fn tag_width(w: TagWidth) -> &'static str {
    match w {
        TagWidth::U8 => "u8",
        TagWidth::U16 => "u16",
        TagWidth::U32 => "u32",
    }
}

pub fn int_width(w: IntWidth) -> &'static str {
    match w {
        IntWidth::U8 => "u8",
        IntWidth::U16 => "u16",
        IntWidth::U32 => "u32",
        IntWidth::U64 => "u64",
    }
}

pub fn pattern(p: Pattern) -> &'static str {
    match p {
        Pattern::Direct => "direct",
        Pattern::Fanout => "fanout",
        Pattern::Singleton => "singleton",
        Pattern::Pool => "pool",
    }
}

pub fn access(a: Access) -> &'static str {
    match a {
        Access::None => "none",
        Access::Read => "read",
        Access::Write => "write",
    }
}

/// Opens `{`, prints entries (each preceded by its docs) and closes `}`;
/// an empty block prints as `{}`.
fn block<T>(out: &mut String, entries: &[T], mut entry: impl FnMut(&mut String, &T)) {
    if entries.is_empty() {
        out.push_str(" {}\n");
        return;
    }
    out.push_str(" {\n");
    for e in entries {
        entry(out, e);
    }
    out.push_str("}\n");
}

fn print_item(out: &mut String, item: &Item) {
    docs(out, item.docs(), "");
    match item {
        Item::Struct(s) => {
            let _ = write!(out, "struct {} ({})", s.name.name, evolution(s.evolution));
            block(out, &s.fields, |out, f| {
                docs(out, &f.docs, "    ");
                let _ = write!(out, "    {}: {}", f.name.name, type_ref(&f.ty));
                if let Some(default) = &f.default {
                    let _ = write!(out, " = {}", literal(default));
                }
                out.push_str(";\n");
            });
        }
        Item::Union(u) => {
            let _ = write!(
                out,
                "union {} ({}, {})",
                u.name.name,
                evolution(u.evolution),
                tag_width(u.tag)
            );
            block(out, &u.cases, |out, c| {
                docs(out, &c.docs, "    ");
                let _ = write!(out, "    {}", c.name.name);
                if let Some(ty) = &c.ty {
                    let _ = write!(out, ": {}", type_ref(ty));
                }
                if let Some(tag) = c.tag {
                    let _ = write!(out, " = {tag}");
                }
                out.push_str(";\n");
            });
        }
        Item::Enum(e) => {
            let _ = write!(out, "enum {} ({})", e.name.name, int_width(e.repr));
            block(out, &e.cases, |out, c| {
                docs(out, &c.docs, "    ");
                let _ = write!(out, "    {}", c.name.name);
                if let Some(value) = c.value {
                    let _ = write!(out, " = {value}");
                }
                out.push_str(";\n");
            });
        }
        Item::Flags(f) => {
            let _ = write!(out, "flags {}", f.name.name);
            block(out, &f.flags, |out, c| {
                docs(out, &c.docs, "    ");
                let _ = writeln!(out, "    {};", c.name.name);
            });
        }
        Item::Resource(r) => {
            let _ = writeln!(out, "resource {};", r.name.name);
        }
        Item::Interface(i) => {
            let _ = write!(
                out,
                "interface {} ({}, {})",
                i.name.name,
                evolution(i.evolution),
                pattern(i.pattern)
            );
            block(out, &i.members, |out, m| match m {
                Member::Memory(m) => {
                    docs(out, &m.docs, "    ");
                    let _ = writeln!(
                        out,
                        "    {}: memory (import: {}, export: {}, {});",
                        m.name.name,
                        access(m.import),
                        access(m.export),
                        m.pages
                    );
                }
                Member::Function(f) => {
                    docs(out, &f.docs, "    ");
                    let _ = write!(out, "    {}: ", f.name.name);
                    match f.syntax {
                        FnSyntax::Named => {
                            let _ = write!(out, "fn{} {}", params(&f.params), params(&f.results));
                        }
                        FnSyntax::Arrow => {
                            let _ = write!(out, "{} -> {}", params(&f.params), params(&f.results));
                        }
                    }
                    out.push_str(";\n");
                }
            });
        }
    }
}

fn params(params: &[Param]) -> String {
    let mut out = String::from("(");
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if let Some(name) = &p.name {
            let _ = write!(out, "{}: ", name.name);
        }
        out.push_str(&type_ref(&p.ty));
        if let Some(memory) = &p.memory {
            let _ = write!(out, " @ {}", memory.name);
        }
    }
    out.push(')');
    out
}

/// A type as written: `[]([]u8 #string)`, `option<point>`, `map<u32, point>`.
pub fn type_ref(ty: &TypeRef) -> String {
    let mut out = String::new();
    write_type(&mut out, ty);
    out
}

fn write_type(out: &mut String, ty: &TypeRef) {
    match &ty.kind {
        TypeKind::Prim(p) => out.push_str(p.keyword()),
        TypeKind::Named(id) => out.push_str(&id.name),
        TypeKind::Array(elem) => {
            out.push_str("[]");
            write_element(out, elem);
        }
        TypeKind::FixedArray(elem, len) => {
            let _ = write!(out, "[{len}]");
            write_element(out, elem);
        }
        TypeKind::Option(inner) => {
            out.push_str("option<");
            write_type(out, inner);
            out.push('>');
        }
        TypeKind::Result { ok, err } => {
            out.push_str("result");
            match (ok, err) {
                (None, None) => {}
                (Some(ok), None) => {
                    out.push('<');
                    write_type(out, ok);
                    out.push('>');
                }
                (ok, Some(err)) => {
                    out.push('<');
                    match ok {
                        Some(ok) => write_type(out, ok),
                        None => out.push('_'),
                    }
                    out.push_str(", ");
                    write_type(out, err);
                    out.push('>');
                }
            }
        }
        TypeKind::Map { key, value } => {
            out.push_str("map<");
            write_type(out, key);
            out.push_str(", ");
            write_type(out, value);
            out.push('>');
        }
        TypeKind::Handle(kind, id) => {
            let _ = write!(
                out,
                "{}<{}>",
                match kind {
                    HandleKind::Own => "own",
                    HandleKind::Borrow => "borrow",
                },
                id.name
            );
        }
    }
    for attr in &ty.attrs {
        let _ = write!(out, " #{}", attr.kind.keyword());
    }
}

/// An array element needs parentheses only when it carries attributes, which
/// would otherwise bind to the whole array.
fn write_element(out: &mut String, elem: &TypeRef) {
    if elem.attrs.is_empty() {
        write_type(out, elem);
    } else {
        out.push('(');
        write_type(out, elem);
        out.push(')');
    }
}

pub fn literal(lit: &Literal) -> String {
    match lit {
        Literal::Int(n) => n.to_string(),
        // `{:?}` prints the shortest text that parses back to the same value,
        // always with a `.` or an exponent, so it never reads as an integer.
        Literal::Float(f) => format!("{f:?}"),
        Literal::Bool(b) => b.to_string(),
        Literal::Char(c) => {
            let mut out = String::from("'");
            escape(&mut out, *c, '\'');
            out.push('\'');
            out
        }
        Literal::Str(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                escape(&mut out, c, '"');
            }
            out.push('"');
            out
        }
        Literal::Name(id) => id.name.clone(),
    }
}

fn escape(out: &mut String, c: char, quote: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\0' => out.push_str("\\0"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if c.is_control() => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}
