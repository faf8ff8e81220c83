//! The resolver: checks a parsed [`File`] and turns it into a [`Schema`].
//!
//! Owns every rule a well-formed schema obeys beyond the grammar: names refer
//! to declared items, no name is declared twice in one scope, tags and values
//! are unique and fit their width, inline types do not contain themselves,
//! map keys are component-model key types,
//! functions place data only in declared memories, attributes sit on types that
//! accept them, and defaults fit their field. It reports every problem it finds,
//! in source order, rather than stopping at the first.

use std::collections::{HashMap, HashSet};

use crate::ast::*;
use crate::error::{Error, ErrorKind};
use crate::printer::{int_width, tag_width, type_ref};
use crate::schema::Schema;

/// Most pages a memory region can span: a whole 32-bit linear memory.
pub const MAX_MEMORY_PAGES: u32 = 65536;

/// Checks `file`; on success every invariant listed in the module docs holds.
pub fn resolve(file: File) -> Result<Schema, Vec<Error>> {
    let errors = check(&file);
    if errors.is_empty() {
        Ok(Schema::new_unchecked(file))
    } else {
        Err(errors)
    }
}

/// Every problem in `file`, sorted by position.
pub fn check(file: &File) -> Vec<Error> {
    let mut resolver = Resolver {
        items: HashMap::new(),
        errors: Vec::new(),
    };
    resolver.index(file);
    for item in &file.items {
        resolver.item(item);
    }
    resolver.recursion(file);
    let mut errors = resolver.errors;
    errors.sort_by_key(|e| (e.span.start, e.span.end));
    errors
}

struct Resolver<'a> {
    items: HashMap<&'a str, &'a Item>,
    errors: Vec<Error>,
}

/// Reports names declared twice among `names`, pointing at the second.
fn duplicates<'a>(
    what: &'static str,
    names: impl Iterator<Item = &'a Ident>,
    errors: &mut Vec<Error>,
) {
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for name in names {
        if let Some(&first) = seen.get(name.name.as_str()) {
            errors.push(
                Error::new(
                    ErrorKind::Duplicate {
                        what,
                        name: name.name.clone(),
                    },
                    name.span,
                )
                .with_note(first, "first declared here"),
            );
        } else {
            seen.insert(&name.name, name.span);
        }
    }
}

fn kind_of(item: &Item) -> &'static str {
    match item {
        Item::Struct(_) => "a struct",
        Item::Union(_) => "a union",
        Item::Enum(_) => "an enum",
        Item::Flags(_) => "a flags type",
        Item::Resource(_) => "a resource",
        Item::Interface(_) => "an interface",
    }
}

impl<'a> Resolver<'a> {
    fn error(&mut self, kind: ErrorKind, span: Span) {
        self.errors.push(Error::new(kind, span));
    }

    fn index(&mut self, file: &'a File) {
        duplicates("item", file.items.iter().map(Item::name), &mut self.errors);
        for item in &file.items {
            self.items.entry(item.name().name.as_str()).or_insert(item);
        }
    }

    fn item(&mut self, item: &'a Item) {
        match item {
            Item::Struct(s) => {
                duplicates("field", s.fields.iter().map(|f| &f.name), &mut self.errors);
                for field in &s.fields {
                    self.ty(&field.ty);
                    if let Some(default) = &field.default {
                        let at = value_span(field.ty.span, field.span);
                        if s.evolution == Evolution::Inline {
                            self.error(
                                ErrorKind::BadDefault {
                                    reason: format!(
                                        "inline struct `{}` never evolves, so its fields take no defaults",
                                        s.name.name
                                    ),
                                },
                                at,
                            );
                        } else {
                            self.default(default, &field.ty, at);
                        }
                    }
                }
            }
            Item::Union(u) => self.union(u),
            Item::Enum(e) => self.enumeration(e),
            Item::Flags(f) => {
                duplicates("flag", f.flags.iter().map(|c| &c.name), &mut self.errors);
                if f.flags.is_empty() {
                    self.error(
                        ErrorKind::EmptyItem {
                            what: "flags",
                            name: f.name.name.clone(),
                        },
                        f.name.span,
                    );
                }
            }
            Item::Resource(_) => {}
            Item::Interface(i) => self.interface(i),
        }
    }

    fn union(&mut self, u: &'a UnionDef) {
        duplicates("case", u.cases.iter().map(|c| &c.name), &mut self.errors);
        if u.cases.is_empty() {
            self.error(
                ErrorKind::EmptyItem {
                    what: "union",
                    name: u.name.name.clone(),
                },
                u.name.span,
            );
        }
        let mut seen: HashMap<u64, &str> = HashMap::new();
        let mut next = Some(1u64);
        for case in &u.cases {
            if let Some(ty) = &case.ty {
                self.ty(ty);
            }
            let Some(tag) = case.tag.or(next) else {
                self.error(
                    ErrorKind::ImplicitValueOverflow {
                        case: case.name.name.clone(),
                        width: tag_width(u.tag),
                    },
                    case.span,
                );
                continue;
            };
            next = tag.checked_add(1);
            let after = case.ty.as_ref().map_or(case.name.span, |t| t.span);
            let at = if case.tag.is_some() {
                value_span(after, case.span)
            } else {
                case.span
            };
            if tag == 0 {
                self.error(
                    ErrorKind::ReservedTag {
                        case: case.name.name.clone(),
                    },
                    at,
                );
            } else if tag > u.tag.max() {
                let kind = if case.tag.is_some() {
                    ErrorKind::TagOutOfRange {
                        what: "tag",
                        tag,
                        width: tag_width(u.tag),
                        max: u.tag.max(),
                    }
                } else {
                    ErrorKind::ImplicitValueOverflow {
                        case: case.name.name.clone(),
                        width: tag_width(u.tag),
                    }
                };
                self.error(kind, at);
            } else if let Some(first) = seen.get(&tag) {
                let kind = ErrorKind::DuplicateTag {
                    case: case.name.name.clone(),
                    tag,
                    first: first.to_string(),
                    implicit: case.tag.is_none(),
                };
                self.error(kind, at);
            } else {
                seen.insert(tag, &case.name.name);
            }
        }
    }

    fn enumeration(&mut self, e: &'a EnumDef) {
        duplicates("case", e.cases.iter().map(|c| &c.name), &mut self.errors);
        if e.cases.is_empty() {
            self.error(
                ErrorKind::EmptyItem {
                    what: "enum",
                    name: e.name.name.clone(),
                },
                e.name.span,
            );
        }
        let mut seen: HashMap<u64, &str> = HashMap::new();
        let mut next = Some(0u64);
        for case in &e.cases {
            let Some(value) = case.value.or(next) else {
                self.error(
                    ErrorKind::ImplicitValueOverflow {
                        case: case.name.name.clone(),
                        width: int_width(e.repr),
                    },
                    case.span,
                );
                continue;
            };
            next = value.checked_add(1);
            let at = if case.value.is_some() {
                value_span(case.name.span, case.span)
            } else {
                case.span
            };
            if value > e.repr.max() {
                let kind = if case.value.is_some() {
                    ErrorKind::TagOutOfRange {
                        what: "value",
                        tag: value,
                        width: int_width(e.repr),
                        max: e.repr.max(),
                    }
                } else {
                    ErrorKind::ImplicitValueOverflow {
                        case: case.name.name.clone(),
                        width: int_width(e.repr),
                    }
                };
                self.error(kind, at);
            } else if let Some(first) = seen.get(&value) {
                let kind = ErrorKind::DuplicateValue {
                    case: case.name.name.clone(),
                    value,
                    first: first.to_string(),
                    implicit: case.value.is_none(),
                };
                self.error(kind, at);
            } else {
                seen.insert(value, &case.name.name);
            }
        }
    }

    fn interface(&mut self, i: &'a InterfaceDef) {
        let names = i.members.iter().map(|m| match m {
            Member::Memory(m) => &m.name,
            Member::Function(f) => &f.name,
        });
        duplicates("member", names, &mut self.errors);
        let memories: Vec<&str> = i.memories().map(|m| m.name.name.as_str()).collect();
        for member in &i.members {
            match member {
                Member::Memory(m) => {
                    if m.pages == 0 {
                        self.error(ErrorKind::ZeroPages(m.name.name.clone()), m.span);
                    } else if m.pages > MAX_MEMORY_PAGES {
                        self.error(
                            ErrorKind::TooManyPages {
                                name: m.name.name.clone(),
                                pages: m.pages,
                                max: MAX_MEMORY_PAGES,
                            },
                            m.span,
                        );
                    }
                }
                Member::Function(f) => {
                    duplicates(
                        "parameter",
                        f.params.iter().filter_map(|p| p.name.as_ref()),
                        &mut self.errors,
                    );
                    duplicates(
                        "result",
                        f.results.iter().filter_map(|p| p.name.as_ref()),
                        &mut self.errors,
                    );
                    for p in f.params.iter().chain(&f.results) {
                        self.ty(&p.ty);
                        if let Some(memory) = &p.memory
                            && !memories.contains(&memory.name.as_str())
                        {
                            self.error(ErrorKind::UnknownMemory(memory.name.clone()), memory.span);
                        }
                    }
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<&'a Item> {
        self.items.get(name).copied()
    }

    /// Checks names and attributes of `ty` and everything inside it.
    fn ty(&mut self, ty: &TypeRef) {
        match &ty.kind {
            TypeKind::Prim(_) => {}
            TypeKind::Named(id) => match self.lookup(&id.name) {
                None => self.error(ErrorKind::UnknownType(id.name.clone()), id.span),
                Some(item @ Item::Interface(_)) => self.error(
                    ErrorKind::NotAType {
                        name: id.name.clone(),
                        what: kind_of(item),
                    },
                    id.span,
                ),
                Some(_) => {}
            },
            TypeKind::Handle(_, id) => match self.lookup(&id.name) {
                None => self.error(ErrorKind::UnknownType(id.name.clone()), id.span),
                Some(Item::Resource(_)) => {}
                Some(_) => self.error(ErrorKind::NotAResource(id.name.clone()), id.span),
            },
            TypeKind::Array(elem) => self.ty(elem),
            TypeKind::FixedArray(elem, len) => {
                if *len == 0 {
                    self.error(ErrorKind::ZeroLengthArray, ty.span);
                }
                self.ty(elem);
            }
            TypeKind::Option(inner) => self.ty(inner),
            TypeKind::Result { ok, err } => {
                for t in ok.iter().chain(err) {
                    self.ty(t);
                }
            }
            TypeKind::Map { key, value } => {
                self.ty(key);
                self.ty(value);
                // An unknown key type is already reported as such.
                let unknown = matches!(&key.kind, TypeKind::Named(id) if self.lookup(&id.name).is_none());
                if !is_map_key(key) && !unknown {
                    self.error(ErrorKind::BadMapKey(type_ref(key)), key.span);
                }
            }
        }
        self.attrs(ty);
    }

    fn attrs(&mut self, ty: &TypeRef) {
        let mut layout: Option<AttrKind> = None;
        let mut string = false;
        for attr in &ty.attrs {
            let name = attr.kind.keyword();
            let reason = match attr.kind {
                AttrKind::String => {
                    if string {
                        Some("is given twice".to_string())
                    } else {
                        string = true;
                        self.string_reason(ty)
                    }
                }
                AttrKind::Soa | AttrKind::Aos | AttrKind::Bovoa | AttrKind::Bovos => {
                    if let Some(first) = layout {
                        self.error(
                            ErrorKind::ConflictingAttrs {
                                first: first.keyword(),
                                second: name,
                            },
                            attr.span,
                        );
                        continue;
                    }
                    layout = Some(attr.kind);
                    self.layout_reason(ty, attr.kind)
                }
            };
            if let Some(reason) = reason {
                self.error(ErrorKind::BadAttr { attr: name, reason }, attr.span);
            }
        }
    }

    /// Why `#string` does not fit `ty`, or `None` when it does.
    fn string_reason(&self, ty: &TypeRef) -> Option<String> {
        if let TypeKind::Array(elem) = &ty.kind
            && elem.attrs.is_empty()
            && matches!(elem.kind, TypeKind::Prim(Prim::U8 | Prim::U16))
        {
            return None;
        }
        Some(format!(
            "applies only to `[]u8` (UTF-8) or `[]u16` (UTF-16), not `{}`",
            bare(ty)
        ))
    }

    /// Why a layout attribute does not fit `ty`, or `None` when it does.
    fn layout_reason(&self, ty: &TypeRef, attr: AttrKind) -> Option<String> {
        let unions_only = matches!(attr, AttrKind::Bovoa | AttrKind::Bovos);
        if let TypeKind::Array(elem) = &ty.kind
            && let TypeKind::Named(id) = &elem.kind
        {
            match self.lookup(&id.name) {
                // Already reported as an unknown type.
                None => return None,
                Some(Item::Union(_)) => return None,
                Some(Item::Struct(_)) if !unions_only => return None,
                Some(_) => {}
            }
        }
        let accepted = if unions_only {
            "unions"
        } else {
            "structs or unions"
        };
        Some(format!(
            "applies only to `[]` arrays of {accepted}, not `{}`",
            bare(ty)
        ))
    }

    fn default(&mut self, default: &Literal, ty: &TypeRef, span: Span) {
        if let Some(reason) = self.default_reason(default, ty) {
            self.error(ErrorKind::BadDefault { reason }, span);
        }
    }

    /// Why `default` cannot be a value of `ty`, or `None` when it can.
    fn default_reason(&self, default: &Literal, ty: &TypeRef) -> Option<String> {
        let shown = crate::printer::literal(default);
        let ty_text = bare(ty);
        let mismatch = || Some(format!("`{shown}` is not a value of type `{ty_text}`"));
        match (&ty.kind, default) {
            (TypeKind::Prim(p), Literal::Int(n)) => {
                let (min, max): (i128, i128) = match p {
                    Prim::U8 => (0, u8::MAX.into()),
                    Prim::U16 => (0, u16::MAX.into()),
                    Prim::U32 => (0, u32::MAX.into()),
                    Prim::U64 => (0, u64::MAX.into()),
                    Prim::I8 => (i8::MIN.into(), i8::MAX.into()),
                    Prim::I16 => (i16::MIN.into(), i16::MAX.into()),
                    Prim::I32 => (i32::MIN.into(), i32::MAX.into()),
                    Prim::I64 => (i64::MIN.into(), i64::MAX.into()),
                    // Integers up to 2^24 / 2^53 are exact in f32 / f64.
                    Prim::F32 => (-(1 << 24), 1 << 24),
                    Prim::F64 => (-(1 << 53), 1 << 53),
                    Prim::Bool | Prim::Char => return mismatch(),
                };
                if (min..=max).contains(n) {
                    None
                } else {
                    Some(format!(
                        "`{n}` does not fit in `{}` ({min}..={max})",
                        p.keyword()
                    ))
                }
            }
            (TypeKind::Prim(Prim::F32), Literal::Float(f)) => {
                (f.abs() > f64::from(f32::MAX)).then(|| format!("`{shown}` does not fit in `f32`"))
            }
            (TypeKind::Prim(Prim::F64), Literal::Float(_)) => None,
            (TypeKind::Prim(Prim::Bool), Literal::Bool(_)) => None,
            (TypeKind::Prim(Prim::Char), Literal::Char(_)) => None,
            (TypeKind::Array(_), Literal::Str(_)) if ty.has_attr(AttrKind::String) => None,
            (TypeKind::Named(id), Literal::Name(case)) => match self.lookup(&id.name) {
                Some(Item::Enum(e)) => (!e.cases.iter().any(|c| c.name.name == case.name))
                    .then(|| format!("enum `{}` has no case `{}`", id.name, case.name)),
                Some(Item::Flags(f)) => (!f.flags.iter().any(|c| c.name.name == case.name))
                    .then(|| format!("flags `{}` has no flag `{}`", id.name, case.name)),
                Some(Item::Union(u)) => match u.cases.iter().find(|c| c.name.name == case.name) {
                    None => Some(format!("union `{}` has no case `{}`", id.name, case.name)),
                    Some(c) if c.ty.is_some() => Some(format!(
                        "case `{}` of union `{}` has a payload; only a payload-less case can be a default",
                        case.name, id.name
                    )),
                    Some(_) => None,
                },
                // An unknown type is reported on its own.
                None => None,
                Some(_) => Some(format!("`{}` takes no default", id.name)),
            },
            (TypeKind::Named(id), _) if self.lookup(&id.name).is_none() => None,
            (TypeKind::Prim(_), _) => mismatch(),
            (TypeKind::Named(id), _)
                if matches!(
                    self.lookup(&id.name),
                    Some(Item::Enum(_) | Item::Flags(_) | Item::Union(_))
                ) =>
            {
                mismatch()
            }
            (TypeKind::Array(_), Literal::Str(_)) => Some(format!(
                "a string default needs a `#string` array, not `{ty_text}`"
            )),
            _ => Some(format!("type `{ty_text}` takes no default")),
        }
    }

    /// Reports inline types that contain themselves by value, once per cycle.
    ///
    /// Inline structs and inline unions are laid out in place; `[]T`, maps,
    /// dynamic structs and dynamic unions are reached through an offset and
    /// break a cycle. Options and results hold their payload in place.
    fn recursion(&mut self, file: &'a File) {
        let mut reported: Vec<Vec<&str>> = Vec::new();
        let mut done: HashSet<&str> = HashSet::new();
        for root in &file.items {
            self.find_cycles(root, &mut done, &mut reported);
        }
    }

    /// Depth-first search from `root` with an explicit stack (a chain of
    /// thousands of inline structs must not overflow the native stack).
    fn find_cycles(
        &mut self,
        root: &'a Item,
        done: &mut HashSet<&'a str>,
        reported: &mut Vec<Vec<&'a str>>,
    ) {
        struct Frame<'a> {
            name: &'a str,
            edges: Vec<(&'a str, Span)>,
            next: usize,
        }
        let root_name = root.name().name.as_str();
        if done.contains(root_name) {
            return;
        }
        let mut stack = vec![Frame {
            name: root_name,
            edges: self.inline_edges(root),
            next: 0,
        }];
        // Position of each item on the stack.
        let mut on_stack: HashMap<&str, usize> = HashMap::from([(root_name, 0)]);
        while let Some(frame) = stack.last_mut() {
            let Some(&(target, _)) = frame.edges.get(frame.next) else {
                done.insert(frame.name);
                on_stack.remove(frame.name);
                stack.pop();
                continue;
            };
            frame.next += 1;
            if done.contains(target) {
                continue;
            }
            if let Some(&start) = on_stack.get(target) {
                let cycle = stack.get(start..).unwrap_or_default();
                let mut key: Vec<&str> = cycle.iter().map(|f| f.name).collect();
                key.sort_unstable();
                if !reported.contains(&key) {
                    reported.push(key);
                    let mut names: Vec<String> = cycle.iter().map(|f| f.name.to_string()).collect();
                    names.push(target.to_string());
                    // Point at the type through which the first item holds the next.
                    let span = cycle
                        .first()
                        .and_then(|f| f.edges.get(f.next.wrapping_sub(1)))
                        .map_or(Span::DUMMY, |(_, s)| *s);
                    self.error(ErrorKind::RecursiveInline { path: names }, span);
                }
                continue;
            }
            if let Some(item) = self.lookup(target) {
                on_stack.insert(target, stack.len());
                stack.push(Frame {
                    name: target,
                    edges: self.inline_edges(item),
                    next: 0,
                });
            }
        }
    }

    /// The inline items `item` holds by value, each with the type that holds it.
    fn inline_edges(&self, item: &'a Item) -> Vec<(&'a str, Span)> {
        let mut edges = Vec::new();
        match item {
            Item::Struct(s) if s.evolution == Evolution::Inline => {
                for f in &s.fields {
                    self.by_value(&f.ty, f.ty.span, &mut edges);
                }
            }
            Item::Union(u) if u.evolution == Evolution::Inline => {
                for c in &u.cases {
                    if let Some(ty) = &c.ty {
                        self.by_value(ty, ty.span, &mut edges);
                    }
                }
            }
            _ => {}
        }
        edges
    }

    fn by_value(&self, ty: &'a TypeRef, span: Span, edges: &mut Vec<(&'a str, Span)>) {
        match &ty.kind {
            TypeKind::Named(id) => {
                let inline = match self.lookup(&id.name) {
                    Some(Item::Struct(s)) => s.evolution == Evolution::Inline,
                    Some(Item::Union(u)) => u.evolution == Evolution::Inline,
                    _ => false,
                };
                if inline {
                    edges.push((id.name.as_str(), span));
                }
            }
            TypeKind::FixedArray(elem, _) | TypeKind::Option(elem) => {
                self.by_value(elem, span, edges)
            }
            TypeKind::Result { ok, err } => {
                for t in ok.iter().chain(err) {
                    self.by_value(t, span, edges);
                }
            }
            // A map's entries sit in an array block, reached through an offset.
            TypeKind::Prim(_) | TypeKind::Array(_) | TypeKind::Map { .. } | TypeKind::Handle(..) => {}
        }
    }
}

/// Whether `key` is a component-model map key (integers, `bool`, `char`,
/// strings): floats are not, as NaN equals nothing, and neither is anything
/// compound. Both `#string` forms are strings.
pub fn is_map_key(key: &TypeRef) -> bool {
    match &key.kind {
        TypeKind::Prim(p) => key.attrs.is_empty() && !matches!(p, Prim::F32 | Prim::F64),
        TypeKind::Array(elem) => {
            key.attrs.len() == 1
                && key.has_attr(AttrKind::String)
                && elem.attrs.is_empty()
                && matches!(elem.kind, TypeKind::Prim(Prim::U8 | Prim::U16))
        }
        _ => false,
    }
}

/// The text after `before` up to the end of `whole`: where a `= value` is
/// written. Rendering trims the `=`, blanks and `;` off the caret.
fn value_span(before: Span, whole: Span) -> Span {
    Span::new(before.end.min(whole.end), whole.end)
}

/// `ty` printed without its attributes, for messages about them.
fn bare(ty: &TypeRef) -> String {
    let mut plain = ty.clone();
    plain.attrs.clear();
    type_ref(&plain)
}
