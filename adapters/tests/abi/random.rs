//! Random KarmemIDL schemas and random values of their types, for the
//! property tests: a seeded generator (so proptest can shrink the seed) that
//! writes IDL text covering every construct the adapters transcode.
#![allow(dead_code)]

use karmem_format::Value;
use karmem_format::layout::{ArrayForm, Kind, Layout, TypeId};
use karmem_idl::ast::Prim;

/// xorshift64*: small, seeded, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ItemKind {
    InlineStruct,
    DynamicStruct,
    InlineUnion,
    DynamicUnion,
    Enum,
    Flags,
}

/// Writes a random schema whose last item is the struct `root`.
pub fn schema(rng: &mut Rng, max_items: u64) -> String {
    let mut text = String::from("package test:random@1.0.0;\n\nresource res;\n\n");
    let mut items: Vec<(String, ItemKind)> = Vec::new();
    let count = 1 + rng.below(max_items);
    for i in 0..count {
        let kinds = [
            ItemKind::InlineStruct,
            ItemKind::DynamicStruct,
            ItemKind::InlineUnion,
            ItemKind::DynamicUnion,
            ItemKind::Enum,
            ItemKind::Flags,
        ];
        let kind = *rng.pick(&kinds);
        let name = format!("t{i}");
        text.push_str(&item(rng, &name, kind, &items));
        items.push((name, kind));
    }
    let kind = if rng.chance(50) { ItemKind::DynamicStruct } else { ItemKind::InlineStruct };
    text.push_str(&item(rng, "root", kind, &items));
    text
}

fn item(rng: &mut Rng, name: &str, kind: ItemKind, items: &[(String, ItemKind)]) -> String {
    match kind {
        ItemKind::InlineStruct | ItemKind::DynamicStruct => {
            let evolution = if kind == ItemKind::InlineStruct { "inline" } else { "dynamic" };
            let mut out = format!("struct {name} ({evolution}) {{\n");
            for i in 0..rng.below(5) {
                out.push_str(&format!("    f{i}: {};\n", ty(rng, items, 3)));
            }
            out + "}\n\n"
        }
        ItemKind::InlineUnion | ItemKind::DynamicUnion => {
            let evolution = if kind == ItemKind::InlineUnion { "inline" } else { "dynamic" };
            let width = *rng.pick(&["u8", "u16", "u32"]);
            let mut out = format!("union {name} ({evolution}, {width}) {{\n");
            let mut tag = 0u64;
            for i in 0..1 + rng.below(4) {
                tag += 1 + if rng.chance(30) { rng.below(5) } else { 0 };
                if rng.chance(70) {
                    out.push_str(&format!("    c{i}: {} = {tag};\n", ty(rng, items, 2)));
                } else {
                    out.push_str(&format!("    c{i} = {tag};\n"));
                }
            }
            out + "}\n\n"
        }
        ItemKind::Enum => {
            let width = *rng.pick(&["u8", "u16", "u32", "u64"]);
            let mut out = format!("enum {name} ({width}) {{\n");
            let mut value = if rng.chance(70) { 0 } else { rng.below(4) };
            for i in 0..1 + rng.below(4) {
                out.push_str(&format!("    e{i} = {value};\n"));
                value += 1 + if rng.chance(30) { rng.below(3) } else { 0 };
            }
            out + "}\n\n"
        }
        ItemKind::Flags => {
            let n = *rng.pick(&[1u64, 3, 8, 9, 16, 17, 32, 33, 64, 70]);
            let mut out = format!("flags {name} {{\n");
            for i in 0..n {
                out.push_str(&format!("    g{i};\n"));
            }
            out + "}\n\n"
        }
    }
}

fn ty(rng: &mut Rng, items: &[(String, ItemKind)], depth: u32) -> String {
    let prims = ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64", "bool", "char"];
    let choice = if depth == 0 { rng.below(4) } else { rng.below(16) };
    match choice {
        0 | 1 => rng.pick(&prims).to_string(),
        2 if !items.is_empty() => {
            let (name, kind) = rng.pick(items);
            let _ = kind;
            name.clone()
        }
        3 => (*rng.pick(&["[]u8 #string", "[]u16 #string", "own<res>", "borrow<res>", "[]u8", "[]u32"])).to_string(),
        4 | 5 => {
            // arrays of named items, in every form they allow
            let Some((name, kind)) = (!items.is_empty()).then(|| rng.pick(items).clone()) else {
                return format!("[]{}", rng.pick(&prims));
            };
            match kind {
                ItemKind::InlineStruct | ItemKind::DynamicStruct => {
                    format!("[]{name}{}", rng.pick(&["", " #soa", " #aos"]))
                }
                ItemKind::InlineUnion | ItemKind::DynamicUnion => {
                    format!("[]{name}{}", rng.pick(&["", " #aos", " #soa", " #bovoa", " #bovos"]))
                }
                _ => format!("[]{name}"),
            }
        }
        6 => format!("[]({})", ty(rng, items, depth - 1)),
        7 => format!("[{}]({})", 1 + rng.below(5), ty(rng, items, depth - 1)),
        8 | 9 => format!("option<{}>", ty(rng, items, depth - 1)),
        10 => match rng.below(4) {
            0 => format!("result<{}, {}>", ty(rng, items, depth - 1), ty(rng, items, depth - 1)),
            1 => format!("result<{}>", ty(rng, items, depth - 1)),
            2 => format!("result<_, {}>", ty(rng, items, depth - 1)),
            _ => "result".to_string(),
        },
        11 => {
            // component-model map keys: integers, bool, char, strings
            let keys = ["u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "bool", "char", "[]u8 #string", "[]u16 #string"];
            format!("map<{}, {}>", rng.pick(&keys), ty(rng, items, depth - 1))
        }
        _ => rng.pick(&prims).to_string(),
    }
}

/// A random value of `ty`.
pub fn value(rng: &mut Rng, layout: &Layout, ty: TypeId, depth: u32) -> Value {
    let list_len = |rng: &mut Rng| if depth > 4 { rng.below(2) } else if rng.chance(10) { 9 + rng.below(8) } else { rng.below(4) };
    match &layout.get(ty).kind {
        Kind::Prim(p) => prim(rng, *p),
        Kind::Handle { .. } => Value::U32(rng.next() as u32),
        Kind::Enum(e) => Value::Enum(rng.pick(&e.cases).0.clone()),
        Kind::Flags(f) => Value::Flags(f.flags.iter().filter(|_| rng.chance(40)).cloned().collect()),
        Kind::Struct(s) => {
            Value::Record(s.fields.iter().map(|f| (f.name.clone(), value(rng, layout, f.ty, depth + 1))).collect())
        }
        Kind::Union(u) => {
            let case = rng.pick(&u.cases);
            Value::Variant(case.name.clone(), case.ty.map(|t| Box::new(value(rng, layout, t, depth + 1))))
        }
        Kind::Array { .. } if layout.map_types(ty).is_some() => {
            let (key, val) = layout.map_types(ty).unwrap_or((ty, ty));
            let mut entries: Vec<(Value, Value)> = Vec::new();
            for _ in 0..list_len(rng) {
                // now and then a repeated key: maps go through as given
                let k = match entries.first() {
                    Some((k, _)) if rng.chance(20) => k.clone(),
                    _ => value(rng, layout, key, depth + 1),
                };
                entries.push((k, value(rng, layout, val, depth + 1)));
            }
            Value::Map(entries)
        }
        Kind::Array { elem, form } => {
            let n = list_len(rng);
            let mut items: Vec<Value> = (0..n).map(|_| value(rng, layout, *elem, depth + 1)).collect();
            if let (ArrayForm::Bunch { .. }, Kind::Union(u)) = (form, &layout.get(*elem).kind) {
                // a bunch keeps values grouped by case in tag order (FORMAT.md §8):
                // generate them in that order so they go round unchanged
                let tag = |v: &Value| match v {
                    Value::Variant(name, _) => u.cases.iter().find(|c| c.name == *name).map_or(0, |c| c.tag),
                    _ => 0,
                };
                items.sort_by_key(tag);
            }
            Value::List(items)
        }
        Kind::FixedArray { elem, len } => Value::List((0..*len).map(|_| value(rng, layout, *elem, depth + 1)).collect()),
        Kind::String { .. } => Value::String(string(rng)),
        Kind::Option { some, .. } => {
            Value::Option(rng.chance(60).then(|| Box::new(value(rng, layout, *some, depth + 1))))
        }
        Kind::Result { ok, err, .. } => {
            if rng.chance(50) {
                Value::Result(Ok(ok.map(|t| Box::new(value(rng, layout, t, depth + 1)))))
            } else {
                Value::Result(Err(err.map(|t| Box::new(value(rng, layout, t, depth + 1)))))
            }
        }
    }
}

fn prim(rng: &mut Rng, p: Prim) -> Value {
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
        Prim::F32 => Value::F32(*rng.pick(&[
            f32::from_bits(x as u32),
            f32::NAN,
            f32::from_bits(0xffc0_1234),
            -0.0,
            1.5,
            f32::INFINITY,
        ])),
        Prim::F64 => Value::F64(*rng.pick(&[f64::from_bits(x), f64::NAN, f64::from_bits(0xfff0_0000_0000_0001), -0.0, 2.25])),
        Prim::Bool => Value::Bool(x & 1 == 1),
        Prim::Char => Value::Char(character(rng)),
    }
}

fn character(rng: &mut Rng) -> char {
    let ranges: [(u32, u32); 5] = [(0x20, 0x7F), (0x80, 0x100), (0x100, 0xD800), (0xE000, 0x10000), (0x10000, 0x110000)];
    let (lo, hi) = *rng.pick(&ranges);
    char::from_u32(lo + rng.below((hi - lo) as u64) as u32).unwrap_or('?')
}

/// A random string: ASCII runs (to cross the 8-byte fast path), Latin-1,
/// BMP and astral characters.
pub fn string(rng: &mut Rng) -> String {
    let n = if rng.chance(20) { 20 + rng.below(20) } else { rng.below(8) };
    let mode = rng.below(4);
    (0..n)
        .map(|_| match mode {
            0 => (b'a' + rng.below(26) as u8) as char,
            1 => char::from_u32(0x20 + rng.below(0xE0) as u32).unwrap_or('?'),
            _ => character(rng),
        })
        .collect()
}
