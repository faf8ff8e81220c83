//! The canonical ABI's memory representation, read and written in Rust from
//! the spec, as the independent side of the transcoder tests: values go in
//! through `karmem-format`'s `Value` codec and come out through this (and the
//! other way round).

#![allow(dead_code)]

use anyhow::{Context, Result, bail};
use karmem_adapters::canon::{AbiType, StringEncoding, UTF16_TAG, abi_type};
use karmem_format::Value;
use karmem_format::layout::{Kind, Layout, TypeId};
use karmem_idl::ast::Prim;
use karmem_wit_import::abi::Discriminant;

fn bytes<const N: usize>(mem: &[u8], at: u32) -> Result<[u8; N]> {
    let at = at as usize;
    mem.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .with_context(|| format!("read of {N} bytes at {at} out of bounds"))
}

fn uint(mem: &[u8], at: u32, size: u32) -> Result<u64> {
    Ok(match size {
        1 => u8::from_le_bytes(bytes(mem, at)?) as u64,
        2 => u16::from_le_bytes(bytes(mem, at)?) as u64,
        4 => u32::from_le_bytes(bytes(mem, at)?) as u64,
        8 => u64::from_le_bytes(bytes(mem, at)?),
        _ => bail!("no integer of {size} bytes"),
    })
}

fn disc_size(cases: usize) -> u32 {
    Discriminant::for_cases(cases).size()
}

/// Reads the canonical value of Karmem type `ty` at `at`.
pub fn read(mem: &[u8], layout: &Layout, ty: TypeId, at: u32, enc: StringEncoding) -> Result<Value> {
    let shape = abi_type(layout, ty)?;
    Ok(match &layout.get(ty).kind {
        Kind::Prim(p) => match p {
            Prim::U8 => Value::U8(uint(mem, at, 1)? as u8),
            Prim::U16 => Value::U16(uint(mem, at, 2)? as u16),
            Prim::U32 => Value::U32(uint(mem, at, 4)? as u32),
            Prim::U64 => Value::U64(uint(mem, at, 8)?),
            Prim::I8 => Value::S8(uint(mem, at, 1)? as i8),
            Prim::I16 => Value::S16(uint(mem, at, 2)? as i16),
            Prim::I32 => Value::S32(uint(mem, at, 4)? as i32),
            Prim::I64 => Value::S64(uint(mem, at, 8)? as i64),
            Prim::F32 => Value::F32(f32::from_bits(uint(mem, at, 4)? as u32)),
            Prim::F64 => Value::F64(f64::from_bits(uint(mem, at, 8)?)),
            Prim::Bool => match uint(mem, at, 1)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => bail!("bool byte {other} at {at}"),
            },
            Prim::Char => Value::Char(char::from_u32(uint(mem, at, 4)? as u32).context("invalid char")?),
        },
        Kind::Handle { .. } => Value::U32(uint(mem, at, 4)? as u32),
        Kind::Enum(e) => {
            let index = uint(mem, at, disc_size(e.cases.len()))? as usize;
            Value::Enum(e.cases.get(index).context("enum index")?.0.clone())
        }
        Kind::Flags(f) => {
            let mut set = Vec::new();
            for (i, name) in f.flags.iter().enumerate() {
                let byte = uint(mem, at + (i / 8) as u32, 1)?;
                if byte >> (i % 8) & 1 == 1 {
                    set.push(name.clone());
                }
            }
            Value::Flags(set)
        }
        Kind::Struct(s) => {
            let offsets = shape.field_offsets();
            let mut fields = Vec::new();
            for (field, offset) in s.fields.iter().zip(offsets) {
                fields.push((field.name.clone(), read(mem, layout, field.ty, at + offset, enc)?));
            }
            Value::Record(fields)
        }
        Kind::Union(u) => {
            let index = uint(mem, at, disc_size(u.cases.len()))? as usize;
            let case = u.cases.get(index).context("variant index")?;
            let payload = match case.ty {
                Some(t) => Some(Box::new(read(mem, layout, t, at + shape.payload_offset(), enc)?)),
                None => None,
            };
            Value::Variant(case.name.clone(), payload)
        }
        Kind::Array { elem, .. } => {
            let (ptr, len) = (uint(mem, at, 4)? as u32, uint(mem, at + 4, 4)? as u32);
            let size = abi_type(layout, *elem)?.size();
            let mut items = Vec::new();
            for i in 0..len {
                items.push(read(mem, layout, *elem, ptr + i * size, enc)?);
            }
            if layout.is_map_entry(*elem) {
                // `map<k, v>` is `list<tuple<k, v>>`: each item the entry's record
                let pair = |item: Value| match item {
                    Value::Record(fields) => match <[(String, Value); 2]>::try_from(fields) {
                        Ok([(_, k), (_, v)]) => Ok((k, v)),
                        Err(fields) => bail!("a map entry of {} fields", fields.len()),
                    },
                    other => bail!("a map entry {other:?}"),
                };
                Value::Map(items.into_iter().map(pair).collect::<Result<_>>()?)
            } else {
                Value::List(items)
            }
        }
        Kind::FixedArray { elem, len } => {
            let size = abi_type(layout, *elem)?.size();
            let mut items = Vec::new();
            for i in 0..*len {
                items.push(read(mem, layout, *elem, at + i * size, enc)?);
            }
            Value::List(items)
        }
        Kind::String { .. } => {
            let (ptr, len) = (uint(mem, at, 4)? as u32, uint(mem, at + 4, 4)? as u32);
            Value::String(read_string(mem, ptr, len, enc)?)
        }
        Kind::Option { some, .. } => match uint(mem, at, 1)? {
            0 => Value::Option(None),
            1 => Value::Option(Some(Box::new(read(mem, layout, *some, at + shape.payload_offset(), enc)?))),
            other => bail!("option discriminant {other}"),
        },
        Kind::Result { ok, err, .. } => {
            let payload = |t: &Option<TypeId>| -> Result<Option<Box<Value>>> {
                Ok(match t {
                    Some(t) => Some(Box::new(read(mem, layout, *t, at + shape.payload_offset(), enc)?)),
                    None => None,
                })
            };
            match uint(mem, at, 1)? {
                0 => Value::Result(Ok(payload(ok)?)),
                1 => Value::Result(Err(payload(err)?)),
                other => bail!("result discriminant {other}"),
            }
        }
    })
}

fn read_string(mem: &[u8], ptr: u32, len: u32, enc: StringEncoding) -> Result<String> {
    let slice = |n: u32| mem.get(ptr as usize..(ptr + n) as usize).context("string out of bounds");
    let utf16 = |units: u32| -> Result<String> {
        let raw = slice(units * 2)?;
        let units: Vec<u16> = raw.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        Ok(String::from_utf16(&units)?)
    };
    Ok(match enc {
        StringEncoding::Utf8 => String::from_utf8(slice(len)?.to_vec())?,
        StringEncoding::Utf16 => utf16(len)?,
        StringEncoding::Latin1Utf16 if len & UTF16_TAG != 0 => utf16(len & !UTF16_TAG)?,
        StringEncoding::Latin1Utf16 => slice(len)?.iter().map(|b| *b as char).collect(),
    })
}

/// Guest memory and allocation, for writing canonical values.
pub trait Guest {
    fn alloc(&mut self, size: u32, align: u32) -> Result<u32>;
    fn mem(&mut self) -> &mut [u8];
}

fn put(guest: &mut dyn Guest, at: u32, data: &[u8]) -> Result<()> {
    let at = at as usize;
    guest.mem().get_mut(at..at + data.len()).context("write out of bounds")?.copy_from_slice(data);
    Ok(())
}

/// Writes the canonical value of Karmem type `ty` at `at` (lists allocated
/// in the guest).
pub fn write(guest: &mut dyn Guest, layout: &Layout, ty: TypeId, at: u32, value: &Value, enc: StringEncoding) -> Result<()> {
    let shape = abi_type(layout, ty)?;
    match (&layout.get(ty).kind, value) {
        (Kind::Prim(_) | Kind::Handle { .. }, v) => {
            let data: Vec<u8> = match v {
                Value::Bool(b) => vec![u8::from(*b)],
                Value::U8(x) => x.to_le_bytes().to_vec(),
                Value::U16(x) => x.to_le_bytes().to_vec(),
                Value::U32(x) => x.to_le_bytes().to_vec(),
                Value::U64(x) => x.to_le_bytes().to_vec(),
                Value::S8(x) => x.to_le_bytes().to_vec(),
                Value::S16(x) => x.to_le_bytes().to_vec(),
                Value::S32(x) => x.to_le_bytes().to_vec(),
                Value::S64(x) => x.to_le_bytes().to_vec(),
                Value::F32(x) => x.to_le_bytes().to_vec(),
                Value::F64(x) => x.to_le_bytes().to_vec(),
                Value::Char(c) => (*c as u32).to_le_bytes().to_vec(),
                other => bail!("not a scalar: {other:?}"),
            };
            put(guest, at, &data)?;
        }
        (Kind::Enum(e), Value::Enum(name)) => {
            let index = e.cases.iter().position(|(n, _)| n == name).context("enum case")? as u64;
            put(guest, at, &index.to_le_bytes()[..disc_size(e.cases.len()) as usize])?;
        }
        (Kind::Flags(f), Value::Flags(set)) => {
            let size = shape.size() as usize;
            let mut data = vec![0u8; size];
            for name in set {
                let i = f.flags.iter().position(|n| n == name).context("flag")?;
                data[i / 8] |= 1 << (i % 8);
            }
            put(guest, at, &data)?;
        }
        (Kind::Struct(s), Value::Record(fields)) => {
            for ((field, offset), (_, v)) in s.fields.iter().zip(shape.field_offsets()).zip(fields) {
                write(guest, layout, field.ty, at + offset, v, enc)?;
            }
        }
        (Kind::Union(u), Value::Variant(name, payload)) => {
            let index = u.cases.iter().position(|c| c.name == *name).context("case")?;
            put(guest, at, &(index as u64).to_le_bytes()[..disc_size(u.cases.len()) as usize])?;
            if let (Some(t), Some(p)) = (u.cases[index].ty, payload) {
                write(guest, layout, t, at + shape.payload_offset(), p, enc)?;
            }
        }
        (Kind::Array { elem, .. }, Value::List(items)) => {
            let canon = abi_type(layout, *elem)?;
            let ptr = guest.alloc(canon.size() * items.len() as u32, canon.align())?;
            for (i, item) in items.iter().enumerate() {
                write(guest, layout, *elem, ptr + i as u32 * canon.size(), item, enc)?;
            }
            put(guest, at, &ptr.to_le_bytes())?;
            put(guest, at + 4, &(items.len() as u32).to_le_bytes())?;
        }
        (Kind::Array { .. }, Value::Map(entries)) => {
            let items: Vec<Value> = entries
                .iter()
                .map(|(k, v)| Value::Record(vec![("key".into(), k.clone()), ("value".into(), v.clone())]))
                .collect();
            write(guest, layout, ty, at, &Value::List(items), enc)?;
        }
        (Kind::FixedArray { elem, .. }, Value::List(items)) => {
            let size = abi_type(layout, *elem)?.size();
            for (i, item) in items.iter().enumerate() {
                write(guest, layout, *elem, at + i as u32 * size, item, enc)?;
            }
        }
        (Kind::String { .. }, Value::String(text)) => {
            let (data, len, align): (Vec<u8>, u32, u32) = match enc {
                StringEncoding::Utf8 => (text.as_bytes().to_vec(), text.len() as u32, 1),
                StringEncoding::Utf16 => {
                    let units: Vec<u16> = text.encode_utf16().collect();
                    (units.iter().flat_map(|u| u.to_le_bytes()).collect(), units.len() as u32, 2)
                }
                StringEncoding::Latin1Utf16 if text.chars().all(|c| (c as u32) < 0x100) => {
                    (text.chars().map(|c| c as u8).collect(), text.chars().count() as u32, 2)
                }
                StringEncoding::Latin1Utf16 => {
                    let units: Vec<u16> = text.encode_utf16().collect();
                    (units.iter().flat_map(|u| u.to_le_bytes()).collect(), units.len() as u32 | UTF16_TAG, 2)
                }
            };
            let ptr = guest.alloc(data.len() as u32, align)?;
            put(guest, ptr, &data)?;
            put(guest, at, &ptr.to_le_bytes())?;
            put(guest, at + 4, &len.to_le_bytes())?;
        }
        (Kind::Option { some, .. }, Value::Option(v)) => {
            put(guest, at, &[u8::from(v.is_some())])?;
            if let Some(v) = v {
                write(guest, layout, *some, at + shape.payload_offset(), v, enc)?;
            }
        }
        (Kind::Result { ok, err, .. }, Value::Result(r)) => {
            let (disc, t, v) = match r {
                Ok(v) => (0u8, ok, v),
                Err(v) => (1u8, err, v),
            };
            put(guest, at, &[disc])?;
            if let (Some(t), Some(v)) = (t, v) {
                write(guest, layout, *t, at + shape.payload_offset(), v, enc)?;
            }
        }
        (kind, value) => bail!("value {value:?} does not fit {kind:?}"),
    }
    Ok(())
}

/// Value equality where every NaN equals every NaN (the canonical ABI may
/// change NaN payloads), and everything else is compared exactly.
pub fn same(a: &Value, b: &Value) -> bool {
    use Value::*;
    let opt = |a: &std::option::Option<Box<Value>>, b: &std::option::Option<Box<Value>>| match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    };
    match (a, b) {
        (F32(x), F32(y)) => (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits(),
        (F64(x), F64(y)) => (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits(),
        (List(x), List(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Map(x), Map(y)) => x.len() == y.len() && x.iter().zip(y).all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb)),
        (Record(x), Record(y)) => x.len() == y.len() && x.iter().zip(y).all(|((n, a), (m, b))| n == m && same(a, b)),
        (Variant(n, x), Variant(m, y)) => n == m && opt(x, y),
        (Option(x), Option(y)) => opt(x, y),
        (Result(Ok(x)), Result(Ok(y))) | (Result(Err(x)), Result(Err(y))) => opt(x, y),
        _ => a == b,
    }
}

/// Whether every float NaN in `value` has the canonical bit pattern.
pub fn nans_canonical(value: &Value) -> bool {
    use Value::*;
    let opt = |v: &std::option::Option<Box<Value>>| v.as_deref().is_none_or(nans_canonical);
    match value {
        F32(x) => !x.is_nan() || x.to_bits() == 0x7fc0_0000,
        F64(x) => !x.is_nan() || x.to_bits() == 0x7ff8_0000_0000_0000,
        List(items) => items.iter().all(nans_canonical),
        Map(entries) => entries.iter().all(|(k, v)| nans_canonical(k) && nans_canonical(v)),
        Record(fields) => fields.iter().all(|(_, v)| nans_canonical(v)),
        Variant(_, v) | Option(v) => opt(v),
        Result(Ok(v)) | Result(Err(v)) => opt(v),
        _ => true,
    }
}

#[allow(dead_code)]
pub fn shape(layout: &Layout, ty: TypeId) -> Result<AbiType> {
    abi_type(layout, ty)
}
