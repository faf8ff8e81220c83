//! Random schemas (as syntax trees) and random values of their types, from a
//! seed. Used by the round-trip property test and the hostile-bytes test.

#![allow(
    dead_code,
    clippy::indexing_slicing,
    reason = "test data generation: each test binary uses part of it, and it indexes the tables it builds"
)]

use karmem_format::Layout;
use karmem_format::layout::{ArrayForm, Kind, TypeId};
use karmem_format::value::Value;
use karmem_idl::ast::*;

/// SplitMix64: small, seedable, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn ident(name: impl Into<String>) -> Ident {
    Ident::new(name)
}

fn named(name: &str) -> TypeRef {
    TypeRef::new(TypeKind::Named(ident(name)))
}

struct Gen<'r> {
    rng: &'r mut Rng,
    /// Names declared so far, with what they are.
    structs: Vec<String>,
    unions: Vec<String>,
    others: Vec<String>,
}

impl Gen<'_> {
    fn ty(&mut self, depth: u32) -> TypeRef {
        let choice = if depth == 0 { self.rng.below(3) } else { self.rng.below(13) };
        match choice {
            0 | 1 => TypeRef::new(TypeKind::Prim(Prim::ALL[self.rng.below(12) as usize])),
            2 => {
                let all: Vec<&String> = self.structs.iter().chain(&self.unions).chain(&self.others).collect();
                if all.is_empty() {
                    TypeRef::new(TypeKind::Prim(Prim::U32))
                } else {
                    named(&all[self.rng.below(all.len() as u64) as usize].clone())
                }
            }
            3 => {
                let elem = TypeRef::new(TypeKind::Prim(if self.rng.chance(50) { Prim::U8 } else { Prim::U16 }));
                TypeRef::new(TypeKind::Array(Box::new(elem))).with_attr(AttrKind::String)
            }
            4 | 5 => TypeRef::new(TypeKind::Array(Box::new(self.ty(depth - 1)))),
            6 if !self.structs.is_empty() => {
                let s = self.structs[self.rng.below(self.structs.len() as u64) as usize].clone();
                let t = TypeRef::new(TypeKind::Array(Box::new(named(&s))));
                match self.rng.below(3) {
                    0 => t.with_attr(AttrKind::Soa),
                    1 => t.with_attr(AttrKind::Aos),
                    _ => t,
                }
            }
            7 if !self.unions.is_empty() => {
                let u = self.unions[self.rng.below(self.unions.len() as u64) as usize].clone();
                let t = TypeRef::new(TypeKind::Array(Box::new(named(&u))));
                match self.rng.below(5) {
                    0 => t.with_attr(AttrKind::Soa),
                    1 => t.with_attr(AttrKind::Aos),
                    2 => t.with_attr(AttrKind::Bovoa),
                    3 => t.with_attr(AttrKind::Bovos),
                    _ => t,
                }
            }
            8 => TypeRef::new(TypeKind::FixedArray(Box::new(self.ty(depth - 1)), 1 + self.rng.below(3) as u32)),
            9 => TypeRef::new(TypeKind::Option(Box::new(self.ty(depth - 1)))),
            10 => {
                let ok = self.rng.chance(70).then(|| Box::new(self.ty(depth - 1)));
                let err = self.rng.chance(70).then(|| Box::new(self.ty(depth - 1)));
                TypeRef::new(TypeKind::Result { ok, err })
            }
            11 => {
                // A component-model key: an integer, bool, char or a string.
                let key = match self.rng.below(4) {
                    0 => TypeRef::new(TypeKind::Array(Box::new(TypeRef::new(TypeKind::Prim(Prim::U8)))))
                        .with_attr(AttrKind::String),
                    _ => {
                        let keys: Vec<Prim> = Prim::ALL.into_iter().filter(|p| !matches!(p, Prim::F32 | Prim::F64)).collect();
                        TypeRef::new(TypeKind::Prim(keys[self.rng.below(keys.len() as u64) as usize]))
                    }
                };
                TypeRef::new(TypeKind::Map { key: Box::new(key), value: Box::new(self.ty(depth - 1)) })
            }
            _ => TypeRef::new(TypeKind::Handle(HandleKind::Own, ident("res"))),
        }
    }
}

/// A random schema; the last struct (`root`) is the one to encode.
pub fn schema(rng: &mut Rng) -> File {
    let mut items = vec![Item::Resource(ResourceDef {
        name: ident("res"),
        docs: Docs::default(),
        span: Span::DUMMY,
    })];
    let mut g = Gen { rng, structs: Vec::new(), unions: Vec::new(), others: Vec::new() };
    let count = 1 + g.rng.below(5);
    for i in 0..count {
        let name = format!("t{i}");
        match g.rng.below(6) {
            0 => {
                let n = 1 + g.rng.below(3);
                let repr = [IntWidth::U8, IntWidth::U16, IntWidth::U32, IntWidth::U64][g.rng.below(4) as usize];
                let mut value = 0u64;
                let cases = (0..n)
                    .map(|c| {
                        value += g.rng.below(3);
                        let case = EnumCase { name: ident(format!("e{c}")), value: Some(value), docs: Docs::default(), span: Span::DUMMY };
                        value += 1;
                        case
                    })
                    .collect();
                items.push(Item::Enum(EnumDef { name: ident(&name), repr, cases, docs: Docs::default(), span: Span::DUMMY }));
                g.others.push(name);
            }
            1 => {
                let n = 1 + g.rng.below(40);
                let flags = (0..n).map(|f| FlagCase { name: ident(format!("f{f}")), docs: Docs::default(), span: Span::DUMMY }).collect();
                items.push(Item::Flags(FlagsDef { name: ident(&name), flags, docs: Docs::default(), span: Span::DUMMY }));
                g.others.push(name);
            }
            2 => {
                let n = 1 + g.rng.below(3);
                let tag = [TagWidth::U8, TagWidth::U16, TagWidth::U32][g.rng.below(3) as usize];
                let evolution = if g.rng.chance(50) { Evolution::Dynamic } else { Evolution::Inline };
                let cases = (0..n)
                    .map(|c| UnionCase {
                        name: ident(format!("c{c}")),
                        ty: g.rng.chance(75).then(|| g.ty(2)),
                        tag: Some(c + 1 + g.rng.below(2) * 10),
                        docs: Docs::default(),
                        span: Span::DUMMY,
                    })
                    .collect();
                items.push(Item::Union(UnionDef { name: ident(&name), evolution, tag, cases, docs: Docs::default(), span: Span::DUMMY }));
                g.unions.push(name);
            }
            _ => {
                items.push(Item::Struct(struct_def(&mut g, &name)));
                g.structs.push(name);
            }
        }
    }
    items.push(Item::Struct(struct_def(&mut g, "root")));
    if let Some(Item::Struct(s)) = items.last_mut() {
        s.evolution = Evolution::Dynamic;
    }
    File { package: None, items }
}

fn struct_def(g: &mut Gen<'_>, name: &str) -> StructDef {
    let n = g.rng.below(5);
    let evolution = if g.rng.chance(50) { Evolution::Dynamic } else { Evolution::Inline };
    let fields = (0..n)
        .map(|f| Field {
            name: ident(format!("f{f}")),
            ty: g.ty(3),
            default: None,
            docs: Docs::default(),
            span: Span::DUMMY,
        })
        .collect();
    StructDef { name: ident(name), evolution, fields, docs: Docs::default(), span: Span::DUMMY }
}

/// A random value of `ty`.
pub fn value(layout: &Layout, ty: TypeId, rng: &mut Rng, depth: u32) -> Value {
    let info = layout.get(ty);
    match &info.kind {
        Kind::Prim(p) => prim(*p, rng),
        Kind::Handle { .. } => Value::U32(rng.next() as u32),
        Kind::Enum(e) => Value::Enum(e.cases[rng.below(e.cases.len() as u64) as usize].0.clone()),
        Kind::Flags(f) => Value::Flags(f.flags.iter().filter(|_| rng.chance(50)).cloned().collect()),
        Kind::Struct(s) => Value::Record(s.fields.iter().map(|f| (f.name.clone(), value(layout, f.ty, rng, depth + 1))).collect()),
        Kind::Union(u) => {
            let c = &u.cases[rng.below(u.cases.len() as u64) as usize];
            Value::Variant(c.name.clone(), c.ty.map(|t| Box::new(value(layout, t, rng, depth + 1))))
        }
        Kind::String { .. } => {
            let n = rng.below(6);
            Value::String((0..n).map(|_| ['a', 'é', '€', '𝄞', 'z', '\0'][rng.below(6) as usize]).collect())
        }
        Kind::Array { .. } if layout.map_types(ty).is_some() => {
            let (key, val) = layout.map_types(ty).unwrap_or((ty, ty));
            let max = if depth > 4 { 1 } else { 5 };
            let mut entries: Vec<(Value, Value)> = Vec::new();
            for _ in 0..rng.below(max) {
                // Sometimes a duplicate key: a map is passed through as given.
                let k = match entries.first() {
                    Some((k, _)) if rng.chance(20) => k.clone(),
                    _ => value(layout, key, rng, depth + 1),
                };
                entries.push((k, value(layout, val, rng, depth + 1)));
            }
            Value::Map(entries)
        }
        Kind::Array { elem, form } => {
            let max = if depth > 4 { 1 } else { 5 };
            let n = rng.below(max);
            let mut items: Vec<Value> = (0..n).map(|_| value(layout, *elem, rng, depth + 1)).collect();
            if let ArrayForm::Bunch { .. } = form {
                // Bunches keep values grouped by case in tag order (FORMAT.md §8).
                if let Kind::Union(u) = &layout.get(*elem).kind {
                    let tag = |v: &Value| match v {
                        Value::Variant(name, _) => u.cases.iter().find(|c| c.name == *name).map(|c| c.tag).unwrap_or(0),
                        _ => 0,
                    };
                    items.sort_by_key(|v| tag(v));
                }
            }
            Value::List(items)
        }
        Kind::FixedArray { elem, len } => Value::List((0..*len).map(|_| value(layout, *elem, rng, depth + 1)).collect()),
        Kind::Option { some, .. } => Value::Option(rng.chance(60).then(|| Box::new(value(layout, *some, rng, depth + 1)))),
        Kind::Result { ok, err, .. } => {
            if rng.chance(50) {
                Value::Result(Ok(ok.map(|t| Box::new(value(layout, t, rng, depth + 1)))))
            } else {
                Value::Result(Err(err.map(|t| Box::new(value(layout, t, rng, depth + 1)))))
            }
        }
    }
}

fn prim(p: Prim, rng: &mut Rng) -> Value {
    let x = rng.next();
    match p {
        Prim::U8 => Value::U8(x as u8),
        Prim::U16 => Value::U16(x as u16),
        Prim::U32 => Value::U32(x as u32),
        Prim::U64 => Value::U64(x),
        Prim::I8 => Value::S8(x as i8),
        Prim::I16 => Value::S16(x as i16),
        Prim::I32 => Value::S32(x as i32),
        Prim::I64 => Value::S64(x as i64),
        Prim::F32 => Value::F32(f32::from_bits(x as u32)),
        Prim::F64 => Value::F64(f64::from_bits(x)),
        Prim::Bool => Value::Bool(x & 1 == 1),
        Prim::Char => Value::Char(char::from_u32((x % 0x11_0000) as u32).unwrap_or('?')),
    }
}
