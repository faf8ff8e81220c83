//! Schema compatibility: what changed between two versions of a schema, and
//! which changes break a reader, writer or caller built against the old one.
//!
//! Owns: the rules (listed in docs/IDL.md, "Compatibility") and the report
//! `karmem-bridge compat` prints. Items are matched by name, fields of dynamic
//! structs and flags by position, union cases and enum cases by name with
//! their tags and values compared, interface members by name.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::ast::*;
use crate::printer::{access, int_width, literal, pattern, tag_width, type_ref};
use crate::schema::Schema;

/// One difference between the old and the new schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Whether something built against the old schema stops working.
    pub breaking: bool,
    /// Where: "struct `example`", "interface `api` function `f`".
    pub path: String,
    pub message: String,
    /// The old declaration (absent for additions).
    pub old_span: Option<Span>,
    /// The new declaration (absent for removals).
    pub new_span: Option<Span>,
}

impl Change {
    pub fn is_breaking(&self) -> bool {
        self.breaking
    }
}

/// Every change from `old` to `new`, in the old schema's order, additions last.
pub fn compare(old: &Schema, new: &Schema) -> Vec<Change> {
    let mut cx = Compare {
        old,
        new,
        changes: Vec::new(),
    };
    cx.package();
    for old_item in old.items() {
        let path = item_path(old_item);
        match new.get(&old_item.name().name) {
            None => cx.push(true, &path, "removed".into(), Some(old_item.span()), None),
            Some(new_item) => cx.item(&path, old_item, new_item),
        }
    }
    for new_item in new.items() {
        if old.get(&new_item.name().name).is_none() {
            cx.push(
                false,
                &item_path(new_item),
                "added".into(),
                None,
                Some(new_item.span()),
            );
        }
    }
    cx.changes
}

/// The report `compat` prints: one `breaking:` or `safe:` line per change.
pub fn report(changes: &[Change]) -> String {
    let mut out = String::new();
    for change in changes {
        let label = if change.breaking { "breaking" } else { "safe" };
        let _ = writeln!(out, "{label}: {}: {}", change.path, change.message);
    }
    out
}

fn item_kind(item: &Item) -> &'static str {
    match item {
        Item::Struct(_) => "struct",
        Item::Union(_) => "union",
        Item::Enum(_) => "enum",
        Item::Flags(_) => "flags",
        Item::Resource(_) => "resource",
        Item::Interface(_) => "interface",
    }
}

fn with_article(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}

fn item_path(item: &Item) -> String {
    format!("{} `{}`", item_kind(item), item.name().name)
}

fn evolution(e: Evolution) -> &'static str {
    match e {
        Evolution::Inline => "inline",
        Evolution::Dynamic => "dynamic",
    }
}

struct Compare<'a> {
    old: &'a Schema,
    new: &'a Schema,
    changes: Vec<Change>,
}

impl Compare<'_> {
    fn push(
        &mut self,
        breaking: bool,
        path: &str,
        message: String,
        old_span: Option<Span>,
        new_span: Option<Span>,
    ) {
        self.changes.push(Change {
            breaking,
            path: path.to_string(),
            message,
            old_span,
            new_span,
        });
    }

    fn breaking(&mut self, path: &str, message: String, old: Span, new: Span) {
        self.push(true, path, message, Some(old), Some(new));
    }

    fn safe(&mut self, path: &str, message: String, old: Option<Span>, new: Option<Span>) {
        self.push(false, path, message, old, new);
    }

    fn package(&mut self) {
        let (old, new) = (&self.old.file().package, &self.new.file().package);
        match (old, new) {
            (Some(o), Some(n)) if o.name != n.name => self.breaking(
                "package",
                format!("renamed from `{}` to `{}`", o.name, n.name),
                o.span,
                n.span,
            ),
            (Some(o), Some(n)) if o.version != n.version => self.safe(
                "package",
                format!(
                    "version changed from `{}` to `{}`",
                    o.version.as_deref().unwrap_or("none"),
                    n.version.as_deref().unwrap_or("none")
                ),
                Some(o.span),
                Some(n.span),
            ),
            (Some(o), None) => self.push(
                true,
                "package",
                format!("header `{}` removed", o.name),
                Some(o.span),
                None,
            ),
            (None, Some(n)) => self.push(
                true,
                "package",
                format!("header `{}` added", n.name),
                None,
                Some(n.span),
            ),
            _ => {}
        }
    }

    fn item(&mut self, path: &str, old: &Item, new: &Item) {
        match (old, new) {
            (Item::Struct(o), Item::Struct(n)) => self.structure(path, o, n),
            (Item::Union(o), Item::Union(n)) => self.union(path, o, n),
            (Item::Enum(o), Item::Enum(n)) => self.enumeration(path, o, n),
            (Item::Flags(o), Item::Flags(n)) => self.flags(path, o, n),
            (Item::Resource(_), Item::Resource(_)) => {}
            (Item::Interface(o), Item::Interface(n)) => self.interface(path, o, n),
            _ => self.breaking(
                path,
                format!(
                    "is now {} `{}`",
                    with_article(item_kind(new)),
                    new.name().name
                ),
                old.span(),
                new.span(),
            ),
        }
    }

    /// A type's identity for comparison: a bare resource name is `own<R>` and
    /// an array of structs without a layout attribute is `#soa` (the default).
    fn canonical(&self, ty: &TypeRef, schema: &Schema) -> String {
        type_ref(&normalize(ty, schema))
    }

    fn same_type(&self, old: &TypeRef, new: &TypeRef) -> bool {
        self.canonical(old, self.old) == self.canonical(new, self.new)
    }

    fn retyped(&self, old: &TypeRef, new: &TypeRef) -> String {
        format!("from `{}` to `{}`", type_ref(old), type_ref(new))
    }

    fn structure(&mut self, path: &str, old: &StructDef, new: &StructDef) {
        if old.evolution != new.evolution {
            let message = format!(
                "changed from {} to {}",
                evolution(old.evolution),
                evolution(new.evolution)
            );
            self.breaking(path, message, old.span, new.span);
            return;
        }
        let inline = old.evolution == Evolution::Inline;
        let new_positions: HashMap<&str, usize> = new
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.name.as_str(), i))
            .collect();
        for (i, of) in old.fields.iter().enumerate() {
            let field = format!("field `{}`", of.name.name);
            match new.fields.get(i) {
                Some(nf) if nf.name.name == of.name.name => {
                    if !self.same_type(&of.ty, &nf.ty) {
                        let message = format!("{field} retyped {}", self.retyped(&of.ty, &nf.ty));
                        self.breaking(path, message, of.span, nf.span);
                    }
                    if !same_default(of.default.as_ref(), nf.default.as_ref()) {
                        let shown =
                            |d: &Option<Literal>| d.as_ref().map_or("none".to_string(), literal);
                        let message = format!(
                            "default of {field} changed from `{}` to `{}` (old messages read differently)",
                            shown(&of.default),
                            shown(&nf.default)
                        );
                        self.breaking(path, message, of.span, nf.span);
                    }
                }
                _ => match new_positions.get(of.name.name.as_str()) {
                    Some(&j) => {
                        let span = new.fields.get(j).map_or(new.span, |f| f.span);
                        self.breaking(
                            path,
                            format!("{field} moved from position {i} to {j}"),
                            of.span,
                            span,
                        );
                    }
                    None => self.push(true, path, format!("{field} removed"), Some(of.span), None),
                },
            }
        }
        let old_names: HashSet<&str> = old.fields.iter().map(|f| f.name.name.as_str()).collect();
        for (j, nf) in new.fields.iter().enumerate() {
            if old_names.contains(nf.name.name.as_str()) {
                continue;
            }
            let field = format!("field `{}`", nf.name.name);
            if inline {
                self.push(
                    true,
                    path,
                    format!("{field} added to an inline struct"),
                    None,
                    Some(nf.span),
                );
            } else if j < old.fields.len() {
                self.push(
                    true,
                    path,
                    format!("{field} inserted at position {j}, before old fields"),
                    None,
                    Some(nf.span),
                );
            } else if nf.default.is_none() && !has_zero_value(&nf.ty, self.new, &mut Vec::new()) {
                let message = format!(
                    "{field} appended without a default, and `{}` has no zero value to read old messages with",
                    type_ref(&nf.ty)
                );
                self.push(true, path, message, None, Some(nf.span));
            } else {
                self.safe(path, format!("{field} appended"), None, Some(nf.span));
            }
        }
    }

    fn union(&mut self, path: &str, old: &UnionDef, new: &UnionDef) {
        if old.evolution != new.evolution {
            let message = format!(
                "changed from {} to {}",
                evolution(old.evolution),
                evolution(new.evolution)
            );
            self.breaking(path, message, old.span, new.span);
        }
        if old.tag != new.tag {
            let message = format!(
                "tag width changed from `{}` to `{}`",
                tag_width(old.tag),
                tag_width(new.tag)
            );
            self.breaking(path, message, old.span, new.span);
        }
        let old_tags = old.effective_tags();
        let new_tags = new.effective_tags();
        let new_cases: HashMap<&str, (&UnionCase, u64)> = new
            .cases
            .iter()
            .zip(&new_tags)
            .map(|(c, &t)| (c.name.name.as_str(), (c, t)))
            .collect();
        let mut removed_tags = HashSet::new();
        for (oc, &old_tag) in old.cases.iter().zip(&old_tags) {
            let case = format!("case `{}`", oc.name.name);
            let Some(&(nc, new_tag)) = new_cases.get(oc.name.name.as_str()) else {
                removed_tags.insert(old_tag);
                self.push(
                    true,
                    path,
                    format!("{case} (tag {old_tag}) removed"),
                    Some(oc.span),
                    None,
                );
                continue;
            };
            if old_tag != new_tag {
                self.breaking(
                    path,
                    format!("tag of {case} changed from {old_tag} to {new_tag}"),
                    oc.span,
                    nc.span,
                );
            }
            match (&oc.ty, &nc.ty) {
                (Some(o), Some(n)) if !self.same_type(o, n) => self.breaking(
                    path,
                    format!("{case} retyped {}", self.retyped(o, n)),
                    oc.span,
                    nc.span,
                ),
                (Some(o), None) => self.breaking(
                    path,
                    format!("{case} lost its payload `{}`", type_ref(o)),
                    oc.span,
                    nc.span,
                ),
                (None, Some(n)) => self.breaking(
                    path,
                    format!("{case} gained a payload `{}`", type_ref(n)),
                    oc.span,
                    nc.span,
                ),
                _ => {}
            }
        }
        let old_names: HashSet<&str> = old.cases.iter().map(|c| c.name.name.as_str()).collect();
        for (nc, &tag) in new.cases.iter().zip(&new_tags) {
            if old_names.contains(nc.name.name.as_str()) {
                continue;
            }
            let case = format!("case `{}`", nc.name.name);
            if removed_tags.contains(&tag) {
                self.push(
                    true,
                    path,
                    format!("{case} reuses tag {tag} of a removed case"),
                    None,
                    Some(nc.span),
                );
            } else if new.evolution == Evolution::Inline {
                self.push(
                    true,
                    path,
                    format!("{case} added to an inline union"),
                    None,
                    Some(nc.span),
                );
            } else {
                self.safe(
                    path,
                    format!("{case} added with tag {tag}"),
                    None,
                    Some(nc.span),
                );
            }
        }
    }

    fn enumeration(&mut self, path: &str, old: &EnumDef, new: &EnumDef) {
        if old.repr != new.repr {
            let message = format!(
                "width changed from `{}` to `{}`",
                int_width(old.repr),
                int_width(new.repr)
            );
            self.breaking(path, message, old.span, new.span);
        }
        let new_values = new.effective_values();
        let new_cases: HashMap<&str, (&EnumCase, u64)> = new
            .cases
            .iter()
            .zip(&new_values)
            .map(|(c, &v)| (c.name.name.as_str(), (c, v)))
            .collect();
        let mut removed_values = HashSet::new();
        for (oc, old_value) in old.cases.iter().zip(old.effective_values()) {
            let case = format!("case `{}`", oc.name.name);
            match new_cases.get(oc.name.name.as_str()) {
                None => {
                    removed_values.insert(old_value);
                    self.push(
                        true,
                        path,
                        format!("{case} (value {old_value}) removed"),
                        Some(oc.span),
                        None,
                    );
                }
                Some(&(nc, new_value)) if new_value != old_value => self.breaking(
                    path,
                    format!("value of {case} changed from {old_value} to {new_value}"),
                    oc.span,
                    nc.span,
                ),
                Some(_) => {}
            }
        }
        let old_names: HashSet<&str> = old.cases.iter().map(|c| c.name.name.as_str()).collect();
        for (nc, &value) in new.cases.iter().zip(&new_values) {
            if old_names.contains(nc.name.name.as_str()) {
                continue;
            }
            let case = format!("case `{}`", nc.name.name);
            if removed_values.contains(&value) {
                self.push(
                    true,
                    path,
                    format!("{case} reuses value {value} of a removed case"),
                    None,
                    Some(nc.span),
                );
            } else {
                self.safe(
                    path,
                    format!("{case} added with value {value}"),
                    None,
                    Some(nc.span),
                );
            }
        }
    }

    fn flags(&mut self, path: &str, old: &FlagsDef, new: &FlagsDef) {
        for (i, of) in old.flags.iter().enumerate() {
            match new.flags.get(i) {
                Some(nf) if nf.name.name == of.name.name => {}
                Some(nf) => self.breaking(
                    path,
                    format!(
                        "bit {i} changed from flag `{}` to `{}`",
                        of.name.name, nf.name.name
                    ),
                    of.span,
                    nf.span,
                ),
                None => self.push(
                    true,
                    path,
                    format!("flag `{}` (bit {i}) removed", of.name.name),
                    Some(of.span),
                    None,
                ),
            }
        }
        for (i, nf) in new.flags.iter().enumerate().skip(old.flags.len()) {
            self.safe(
                path,
                format!("flag `{}` appended as bit {i}", nf.name.name),
                None,
                Some(nf.span),
            );
        }
    }

    fn interface(&mut self, path: &str, old: &InterfaceDef, new: &InterfaceDef) {
        if old.evolution != new.evolution {
            let message = format!(
                "changed from {} to {}",
                evolution(old.evolution),
                evolution(new.evolution)
            );
            self.breaking(path, message, old.span, new.span);
        }
        if old.pattern != new.pattern {
            let message = format!(
                "pattern changed from `{}` to `{}`",
                pattern(old.pattern),
                pattern(new.pattern)
            );
            self.breaking(path, message, old.span, new.span);
        }
        let member_name = |m: &Member| match m {
            Member::Memory(m) => m.name.name.clone(),
            Member::Function(f) => f.name.name.clone(),
        };
        let member_span = |m: &Member| match m {
            Member::Memory(m) => m.span,
            Member::Function(f) => f.span,
        };
        let new_members: HashMap<String, &Member> =
            new.members.iter().map(|m| (member_name(m), m)).collect();
        for om in &old.members {
            let name = member_name(om);
            match (om, new_members.get(&name)) {
                (Member::Memory(o), None) => self.push(
                    true,
                    path,
                    format!("memory `{name}` removed"),
                    Some(o.span),
                    None,
                ),
                (Member::Function(o), None) => self.push(
                    true,
                    path,
                    format!("function `{name}` removed"),
                    Some(o.span),
                    None,
                ),
                (Member::Memory(o), Some(Member::Memory(n))) => self.memory(path, o, n),
                (Member::Function(o), Some(Member::Function(n))) => {
                    let evolves = old.evolution == Evolution::Dynamic && new.evolution == Evolution::Dynamic;
                    self.function(path, o, n, evolves)
                }
                (Member::Memory(o), Some(n)) => self.breaking(
                    path,
                    format!("memory `{name}` is now a function"),
                    o.span,
                    member_span(n),
                ),
                (Member::Function(o), Some(n)) => self.breaking(
                    path,
                    format!("function `{name}` is now a memory"),
                    o.span,
                    member_span(n),
                ),
            }
        }
        let old_names: HashSet<String> = old.members.iter().map(member_name).collect();
        for nm in &new.members {
            let name = member_name(nm);
            if old_names.contains(&name) {
                continue;
            }
            let what = match nm {
                Member::Memory(_) => "memory",
                Member::Function(_) => "function",
            };
            if new.evolution == Evolution::Inline {
                self.push(
                    true,
                    path,
                    format!("{what} `{name}` added to an inline interface"),
                    None,
                    Some(member_span(nm)),
                );
            } else {
                self.safe(
                    path,
                    format!("{what} `{name}` added"),
                    None,
                    Some(member_span(nm)),
                );
            }
        }
    }

    fn memory(&mut self, path: &str, old: &MemoryDef, new: &MemoryDef) {
        let memory = format!("memory `{}`", old.name.name);
        for (side, o, n) in [
            ("import", old.import, new.import),
            ("export", old.export, new.export),
        ] {
            if n < o {
                self.breaking(
                    path,
                    format!(
                        "{memory} {side} access narrowed from `{}` to `{}`",
                        access(o),
                        access(n)
                    ),
                    old.span,
                    new.span,
                );
            } else if n > o {
                let message = format!(
                    "{memory} {side} access widened from `{}` to `{}`",
                    access(o),
                    access(n)
                );
                self.safe(path, message, Some(old.span), Some(new.span));
            }
        }
        if new.pages < old.pages {
            let message = format!("{memory} shrunk from {} to {} pages", old.pages, new.pages);
            self.breaking(path, message, old.span, new.span);
        } else if new.pages > old.pages {
            let message = format!("{memory} grown from {} to {} pages", old.pages, new.pages);
            self.safe(path, message, Some(old.span), Some(new.span));
        }
    }

    /// A function's parameters and results travel as dynamic argument and
    /// result structs (docs/FORMAT.md §10), so on a dynamic interface they
    /// evolve like a dynamic struct's fields: appending one (of a type with a
    /// zero value: parameters have no defaults) is safe, anything else that
    /// changes the list breaks. Inline interfaces never evolve.
    fn function(&mut self, path: &str, old: &FunctionDef, new: &FunctionDef, evolves: bool) {
        let function = format!("function `{}`", old.name.name);
        let item = |p: &Param, schema: &Schema| {
            let mut s = self.canonical(&p.ty, schema);
            if let Some(m) = &p.memory {
                let _ = write!(s, " @ {}", m.name);
            }
            s
        };
        let list = |params: &[Param], schema: &Schema| {
            params.iter().map(|p| item(p, schema)).collect::<Vec<_>>()
        };
        let (op, np) = (list(&old.params, self.old), list(&new.params, self.new));
        let (or, nr) = (list(&old.results, self.old), list(&new.results, self.new));
        let signature = |p: &[String], r: &[String]| format!("({}) -> ({})", p.join(", "), r.join(", "));
        if op != np || or != nr {
            let appended_only = evolves && np.starts_with(&op) && nr.starts_with(&or);
            if !appended_only {
                self.breaking(
                    path,
                    format!(
                        "signature of {function} changed from `{}` to `{}`",
                        signature(&op, &or),
                        signature(&np, &nr)
                    ),
                    old.span,
                    new.span,
                );
                return;
            }
            for (what, params, from) in [
                ("parameter", &new.params, old.params.len()),
                ("result", &new.results, old.results.len()),
            ] {
                for (i, p) in params.iter().enumerate().skip(from) {
                    let name = p
                        .name
                        .as_ref()
                        .map_or_else(|| format!("#{i}"), |n| n.name.clone());
                    let ty = type_ref(&p.ty);
                    if has_zero_value(&p.ty, self.new, &mut Vec::new()) {
                        self.safe(
                            path,
                            format!("{what} `{name}: {ty}` appended to {function}"),
                            Some(old.span),
                            Some(p.span),
                        );
                    } else {
                        self.breaking(
                            path,
                            format!(
                                "{what} `{name}` appended to {function}, and `{ty}` has no zero value for older messages to read as"
                            ),
                            old.span,
                            p.span,
                        );
                    }
                }
            }
        }
        let names = |params: &[Param]| {
            params
                .iter()
                .map(|p| p.name.as_ref().map(|n| n.name.clone()))
                .collect::<Vec<_>>()
        };
        let common = |a: &[Param], b: &[Param]| {
            let n = a.len().min(b.len());
            names(a.get(..n).unwrap_or_default()) != names(b.get(..n).unwrap_or_default())
        };
        if common(&old.params, &new.params) || common(&old.results, &new.results) {
            self.safe(
                path,
                format!("parameters of {function} renamed"),
                Some(old.span),
                Some(new.span),
            );
        }
    }
}

/// The changes between two versions of one function as a caller and a
/// callee see them: the function's signature (with the rules of
/// [`compare`]) and every item its parameters and results reach, in either
/// version. A function missing from either schema is one breaking change.
pub fn compare_function(old: &Schema, new: &Schema, interface: &str, function: &str) -> Vec<Change> {
    let mut cx = Compare {
        old,
        new,
        changes: Vec::new(),
    };
    let path = format!("interface `{interface}`");
    fn find<'s>(schema: &'s Schema, interface: &str, function: &str) -> Option<(&'s InterfaceDef, &'s FunctionDef)> {
        let Some(Item::Interface(i)) = schema.get(interface) else {
            return None;
        };
        let f = i.functions().find(|f| f.name.name == function)?;
        Some((i, f))
    }
    let find = |schema| find(schema, interface, function);
    let (Some((oi, of)), Some((ni, nf))) = (find(old), find(new)) else {
        let side = if find(old).is_none() { "old" } else { "new" };
        cx.push(
            true,
            &path,
            format!("function `{function}` is missing from the {side} schema"),
            None,
            None,
        );
        return cx.changes;
    };
    let evolves = oi.evolution == Evolution::Dynamic && ni.evolution == Evolution::Dynamic;
    cx.function(&path, of, nf, evolves);
    let mut names = Vec::new();
    for (schema, f) in [(old, of), (new, nf)] {
        for p in f.params.iter().chain(&f.results) {
            reach(&p.ty, schema, &mut names);
        }
    }
    // In the old schema's order, like `compare`.
    for old_item in old.items() {
        if !names.contains(&old_item.name().name) {
            continue;
        }
        if let Some(new_item) = new.get(&old_item.name().name) {
            cx.item(&item_path(old_item), old_item, new_item);
        }
    }
    cx.changes
}

/// Adds the names of every item `ty` reaches in `schema` to `out`.
fn reach(ty: &TypeRef, schema: &Schema, out: &mut Vec<String>) {
    match &ty.kind {
        TypeKind::Prim(_) => {}
        TypeKind::Named(id) | TypeKind::Handle(_, id) => {
            if out.contains(&id.name) {
                return;
            }
            out.push(id.name.clone());
            match schema.get(&id.name) {
                Some(Item::Struct(s)) => s.fields.iter().for_each(|f| reach(&f.ty, schema, out)),
                Some(Item::Union(u)) => u.cases.iter().filter_map(|c| c.ty.as_ref()).for_each(|t| reach(t, schema, out)),
                _ => {}
            }
        }
        TypeKind::Array(elem) | TypeKind::FixedArray(elem, _) | TypeKind::Option(elem) => reach(elem, schema, out),
        TypeKind::Result { ok, err } => {
            for t in [ok, err].into_iter().flatten() {
                reach(t, schema, out);
            }
        }
        TypeKind::Map { key, value } => {
            reach(key, schema, out);
            reach(value, schema, out);
        }
    }
}

/// `ty` with the defaults made explicit (see [`Compare::canonical`]).
fn normalize(ty: &TypeRef, schema: &Schema) -> TypeRef {
    let mut out = ty.clone();
    out.span = Span::DUMMY;
    out.kind = match &ty.kind {
        TypeKind::Named(id) if matches!(schema.get(&id.name), Some(Item::Resource(_))) => {
            TypeKind::Handle(HandleKind::Own, id.clone())
        }
        TypeKind::Array(elem) => {
            if matches!(&elem.kind, TypeKind::Named(id) if matches!(schema.get(&id.name), Some(Item::Struct(_))))
                && !ty
                    .attrs
                    .iter()
                    .any(|a| matches!(a.kind, AttrKind::Soa | AttrKind::Aos))
            {
                out.attrs.push(Attr {
                    kind: AttrKind::Soa,
                    span: Span::DUMMY,
                });
            }
            TypeKind::Array(Box::new(normalize(elem, schema)))
        }
        TypeKind::FixedArray(elem, n) => {
            TypeKind::FixedArray(Box::new(normalize(elem, schema)), *n)
        }
        TypeKind::Option(inner) => TypeKind::Option(Box::new(normalize(inner, schema))),
        TypeKind::Result { ok, err } => TypeKind::Result {
            ok: ok.as_ref().map(|t| Box::new(normalize(t, schema))),
            err: err.as_ref().map(|t| Box::new(normalize(t, schema))),
        },
        TypeKind::Map { key, value } => TypeKind::Map {
            key: Box::new(normalize(key, schema)),
            value: Box::new(normalize(value, schema)),
        },
        other => other.clone(),
    };
    out
}

/// Whether all-zero bytes decode to a value of `ty` (docs/FORMAT.md §7): what
/// a reader sees for a field an older writer did not write, absent a default.
/// Enums need a case with value 0; unions never have one (tag 0 is reserved);
/// a struct needs every field to have one (or, if dynamic, a default).
/// `visiting` breaks cycles through dynamic structs, which have no finite zero value.
fn has_zero_value<'a>(ty: &'a TypeRef, schema: &'a Schema, visiting: &mut Vec<&'a str>) -> bool {
    match &ty.kind {
        // The empty map, like the empty array.
        TypeKind::Prim(_)
        | TypeKind::Array(_)
        | TypeKind::Map { .. }
        | TypeKind::Option(_)
        | TypeKind::Handle(..) => true,
        TypeKind::FixedArray(elem, _) => has_zero_value(elem, schema, visiting),
        TypeKind::Result { ok, .. } => ok
            .as_ref()
            .is_none_or(|t| has_zero_value(t, schema, visiting)),
        TypeKind::Named(id) => {
            if visiting.contains(&id.name.as_str()) {
                return false;
            }
            match schema.get(&id.name) {
                Some(Item::Enum(e)) => e.effective_values().contains(&0),
                Some(Item::Union(_)) => false,
                Some(Item::Struct(st)) => {
                    visiting.push(&id.name);
                    let all = st.fields.iter().all(|f| {
                        (st.evolution == Evolution::Dynamic && f.default.is_some())
                            || has_zero_value(&f.ty, schema, visiting)
                    });
                    visiting.pop();
                    all
                }
                _ => true,
            }
        }
    }
}

/// Whether two field defaults are the same value: a case or flag name is
/// compared by its text, not by where it stands in each file.
fn same_default(old: Option<&Literal>, new: Option<&Literal>) -> bool {
    match (old, new) {
        (Some(Literal::Name(old)), Some(Literal::Name(new))) => old.name == new.name,
        (old, new) => old == new,
    }
}
