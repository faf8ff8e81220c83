//! The interface descriptor (docs/ABI.md §5): what `KarmemImport(i)` and
//! `KarmemExport(i)` return, a Karmem message of the normative schema
//! `contract/descriptor.km`.
//!
//! Owns: the schema text and its layout, the typed [`Descriptor`] with
//! [`Descriptor::encode`] (the generator's side) and its inverse
//! [`Descriptor::decode`] (the hosts' side), and the code tables of
//! `descriptor.pattern` and `memory_descriptor.access`.
//!
//! Leaves to the generator where the encoded bytes go (and how region
//! offsets known only at init are patched in), and to hosts what they make
//! of a pattern or an access (a pool's size, a window's protection).

use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use karmem_format::layout::{Layout, TypeId};
use karmem_format::{Limits, Value};
use karmem_idl::ast::{Access, Pattern};

/// The normative descriptor schema.
pub const DESCRIPTOR_KM: &str = include_str!("../descriptor.km");

/// The root struct of [`DESCRIPTOR_KM`].
const ROOT: &str = "descriptor";

/// One interface's descriptor (`struct descriptor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The interface's package with its version: its WIT package when it
    /// has one, else the module's KarmemIDL package.
    pub package: String,
    /// The interface's KarmemIDL name (what export and import names use).
    pub name: String,
    /// The pattern the module declares.
    pub pattern: Pattern,
    /// The functions, in the interface's order.
    pub functions: Vec<FunctionDescriptor>,
    /// The interface memories, with this guest's access.
    pub memories: Vec<MemoryDescriptor>,
    /// The WIT package (`namespace:name`, no version); "" without one.
    pub wit_package: String,
    /// The WIT interface name (kebab-case); "" for world-level functions.
    pub wit_interface: String,
    /// The WIT package's version; "" without one.
    pub wit_version: String,
}

impl Default for Descriptor {
    fn default() -> Self {
        Descriptor {
            package: String::new(),
            name: String::new(),
            pattern: Pattern::Direct,
            functions: Vec::new(),
            memories: Vec::new(),
            wit_package: String::new(),
            wit_interface: String::new(),
            wit_version: String::new(),
        }
    }
}

/// One function of a descriptor (`struct function_descriptor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDescriptor {
    /// The function's KarmemIDL name.
    pub name: String,
    /// Exports: the `KarmemCall` id; imports: the position in the interface.
    pub id: u32,
    /// The function type hash (docs/FORMAT.md §11).
    pub type_hash: u64,
}

/// One interface memory of a descriptor (`struct memory_descriptor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryDescriptor {
    /// The memory's name in the interface.
    pub name: String,
    /// This guest's access.
    pub access: Access,
    /// The region's offset in the message memory (64 KiB aligned).
    pub offset: u32,
    /// Size in 64 KiB pages.
    pub pages: u32,
}

impl Descriptor {
    /// The descriptor message.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let (layout, root) = descriptor_layout()?;
        let functions = self
            .functions
            .iter()
            .map(|f| {
                record(vec![
                    ("name", Value::String(f.name.clone())),
                    ("id", Value::U32(f.id)),
                    ("type_hash", Value::U64(f.type_hash)),
                ])
            })
            .collect();
        let memories = self
            .memories
            .iter()
            .map(|m| {
                record(vec![
                    ("name", Value::String(m.name.clone())),
                    ("access", Value::U8(access_code(m.access))),
                    ("offset", Value::U32(m.offset)),
                    ("pages", Value::U32(m.pages)),
                ])
            })
            .collect();
        let value = record(vec![
            ("package", Value::String(self.package.clone())),
            ("name", Value::String(self.name.clone())),
            ("pattern", Value::U8(pattern_code(self.pattern))),
            ("functions", Value::List(functions)),
            ("memories", Value::List(memories)),
            ("wit_package", Value::String(self.wit_package.clone())),
            ("wit_interface", Value::String(self.wit_interface.clone())),
            ("wit_version", Value::String(self.wit_version.clone())),
        ]);
        let bytes = karmem_format::value::encode(layout, root, &value).map_err(|e| anyhow!("{e}"))?;
        Ok(bytes.as_slice().to_vec())
    }

    /// Decodes and checks a descriptor message, as a host reads it from an
    /// untrusted guest: a descriptor of an older ABI 0.x lacks the fields
    /// added since, which read as their zero values.
    pub fn decode(bytes: &[u8]) -> Result<Descriptor> {
        let (layout, root) = descriptor_layout()?;
        let value = karmem_format::value::decode(layout, root, bytes, &Limits::default()).map_err(|e| anyhow!("{e}"))?;
        let functions = list_field(&value, "functions")?
            .iter()
            .map(|f| {
                Ok(FunctionDescriptor {
                    name: string_field(f, "name")?,
                    id: u32_field(f, "id")?,
                    type_hash: match f.field("type_hash") {
                        Some(Value::U64(hash)) => *hash,
                        _ => bail!("field `type_hash` is missing"),
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let memories = list_field(&value, "memories")?
            .iter()
            .map(|m| {
                let access = access_of_code(u8_field(m, "access")?)?;
                Ok(MemoryDescriptor {
                    name: string_field(m, "name")?,
                    access,
                    offset: u32_field(m, "offset")?,
                    pages: u32_field(m, "pages")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Descriptor {
            package: string_field(&value, "package")?,
            name: string_field(&value, "name")?,
            pattern: pattern_of_code(u8_field(&value, "pattern")?)?,
            functions,
            memories,
            wit_package: string_field(&value, "wit_package")?,
            wit_interface: string_field(&value, "wit_interface")?,
            wit_version: string_field(&value, "wit_version")?,
        })
    }
}

/// The layout of [`DESCRIPTOR_KM`] and its `descriptor` type, built once.
pub fn descriptor_layout() -> Result<(&'static Layout, TypeId)> {
    static LAYOUT: OnceLock<std::result::Result<Layout, String>> = OnceLock::new();
    let layout = LAYOUT.get_or_init(|| {
        let schema = karmem_idl::load(DESCRIPTOR_KM, "descriptor.km").map_err(|d| d.to_string())?;
        Layout::new(&schema).map_err(|e| e.to_string())
    });
    let layout = layout.as_ref().map_err(|e| anyhow!("the descriptor schema is broken: {e}"))?;
    let root = layout.named(ROOT).context("the descriptor schema has no `descriptor`")?;
    Ok((layout, root))
}

/// `descriptor.pattern`: 0 direct, 1 fanout, 2 singleton, 3 pool.
pub fn pattern_code(pattern: Pattern) -> u8 {
    match pattern {
        Pattern::Direct => 0,
        Pattern::Fanout => 1,
        Pattern::Singleton => 2,
        Pattern::Pool => 3,
    }
}

/// The inverse of [`pattern_code`]; an unknown code is an error.
pub fn pattern_of_code(code: u8) -> Result<Pattern> {
    Ok(match code {
        0 => Pattern::Direct,
        1 => Pattern::Fanout,
        2 => Pattern::Singleton,
        3 => Pattern::Pool,
        other => bail!("unknown interface pattern code `{other}` (expected 0 to 3)"),
    })
}

/// `memory_descriptor.access`: 0 none, 1 read, 2 write.
pub fn access_code(access: Access) -> u8 {
    match access {
        Access::None => 0,
        Access::Read => 1,
        Access::Write => 2,
    }
}

/// The inverse of [`access_code`]; an unknown code is an error.
pub fn access_of_code(code: u8) -> Result<Access> {
    Ok(match code {
        0 => Access::None,
        1 => Access::Read,
        2 => Access::Write,
        other => bail!("unknown memory access code `{other}` (expected 0, 1 or 2)"),
    })
}

fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(n, v)| (n.to_string(), v)).collect())
}

fn string_field(value: &Value, name: &str) -> Result<String> {
    match value.field(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => bail!("field `{name}` is missing or not a string"),
    }
}

fn u8_field(value: &Value, name: &str) -> Result<u8> {
    match value.field(name) {
        Some(Value::U8(v)) => Ok(*v),
        _ => bail!("field `{name}` is missing or not a `u8`"),
    }
}

fn u32_field(value: &Value, name: &str) -> Result<u32> {
    match value.field(name) {
        Some(Value::U32(v)) => Ok(*v),
        _ => bail!("field `{name}` is missing or not a `u32`"),
    }
}

fn list_field<'a>(value: &'a Value, name: &str) -> Result<&'a [Value]> {
    match value.field(name) {
        Some(Value::List(items)) => Ok(items),
        _ => bail!("field `{name}` is missing or not a list"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_tables_are_each_others_inverse() {
        for pattern in [Pattern::Direct, Pattern::Fanout, Pattern::Singleton, Pattern::Pool] {
            assert_eq!(pattern_of_code(pattern_code(pattern)).unwrap(), pattern);
        }
        for access in [Access::None, Access::Read, Access::Write] {
            assert_eq!(access_of_code(access_code(access)).unwrap(), access);
        }
        assert!(pattern_of_code(4).is_err());
        assert!(access_of_code(3).is_err());
    }

    #[test]
    fn a_descriptor_round_trips() {
        let descriptor = Descriptor {
            package: "test:fixture@0.1.0".into(),
            name: "api".into(),
            pattern: Pattern::Pool,
            functions: vec![FunctionDescriptor { name: "f".into(), id: 3, type_hash: u64::MAX }],
            memories: vec![MemoryDescriptor { name: "input".into(), access: Access::Read, offset: 0x10000, pages: 2 }],
            wit_package: "test:fixture".into(),
            wit_interface: "api".into(),
            wit_version: "0.1.0".into(),
        };
        let bytes = descriptor.encode().unwrap();
        assert_eq!(Descriptor::decode(&bytes).unwrap(), descriptor);
        assert!(Descriptor::decode(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn a_bad_code_is_refused_by_name() {
        let mut bytes = Descriptor { pattern: Pattern::Pool, ..Descriptor::default() }.encode().unwrap();
        let direct = Descriptor::default().encode().unwrap();
        let at = bytes.iter().zip(&direct).position(|(a, b)| a != b).unwrap();
        bytes[at] = 9;
        let error = format!("{:#}", Descriptor::decode(&bytes).unwrap_err());
        assert!(error.contains("pattern code `9`"), "{error}");
    }
}
