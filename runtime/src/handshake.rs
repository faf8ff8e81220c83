//! The Karmem ABI handshake (docs/ABI.md §2, §5, §8): calling `_initialize`
//! and `KarmemInit`, decoding every `KarmemImport`/`KarmemExport` descriptor
//! with `karmem-format`, reading the module's `karmem:idl` section into a
//! schema, and checking each function's type hash against it.
//!
//! Owns the guest-agnostic part: anything that can call exports and read
//! memory ([`AbiInstance`], implemented for [`Guest`] and for
//! [`crate::invoke::Session`]) goes through the same code. Leaves calling
//! functions with values and serving imports to [`crate::invoke`], and
//! wiring guests by pattern to [`crate::compose`].

use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result, anyhow, bail, ensure};
use karmem_format::layout::{Layout, TypeId};
use karmem_format::{Limits, Value};
use wasmtime::Val;

use crate::guest::Guest;
use crate::link::{FunctionInfo, GuestInterfaces, InterfaceInfo, MemoryInfo, Pattern};
use crate::shared::Access;

/// The ABI major version this host speaks (`karmem:abi` section).
const ABI_MAJOR: &str = "0";

/// The descriptor schema, normative in the adapters crate.
const DESCRIPTOR_IDL: &str = include_str!("../../adapters/descriptor.km");

/// The calls and memory reads the handshake needs from a guest.
pub trait AbiInstance {
    /// Calls the export `name` with core values.
    fn call_export(&mut self, name: &str, params: &[Val]) -> Result<Vec<Val>>;
    /// Whether the guest exports a function `name`.
    fn has_export(&mut self, name: &str) -> bool;
    /// Copies guest memory at `offset` into `buf`.
    fn read_bytes(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// The guest memory's current size in bytes, when known; a buffer the
    /// guest points at is checked against it before the host allocates.
    fn memory_len(&mut self) -> Option<u64> {
        None
    }
}

impl AbiInstance for Guest {
    fn call_export(&mut self, name: &str, params: &[Val]) -> Result<Vec<Val>> {
        self.call(name, params)
    }

    fn has_export(&mut self, name: &str) -> bool {
        self.module().module().get_export(name).is_some_and(|ty| ty.func().is_some())
    }

    fn read_bytes(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.read_memory(offset, buf)
    }

    fn memory_len(&mut self) -> Option<u64> {
        self.memory_size().ok().map(|size| size as u64)
    }
}

/// What a lowered module's custom sections say about it.
#[derive(Debug, Clone)]
pub struct ModuleAbi {
    /// The `karmem:abi` version text.
    pub version: String,
    /// The `karmem:idl` text.
    pub idl: String,
    /// The resolved schema of `idl`.
    pub schema: Arc<karmem_idl::Schema>,
    /// Its message layout.
    pub layout: Arc<Layout>,
}

impl ModuleAbi {
    /// Reads the custom sections of a lowered module. A component, or a core
    /// module without the Karmem ABI, is refused with a hint.
    pub fn from_module_bytes(bytes: &[u8]) -> Result<Self> {
        let mut version = None;
        let mut idl = None;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload.context("failed to read the module")? {
                wasmparser::Payload::Version { encoding: wasmparser::Encoding::Component, .. } => bail!(
                    "this is a component, not a lowered module: run `karmem-bridge lower` on it first"
                ),
                wasmparser::Payload::CustomSection(section) => match section.name() {
                    "karmem:abi" => version = Some(section_text(section.data(), "karmem:abi")?),
                    "karmem:idl" => idl = Some(section_text(section.data(), "karmem:idl")?),
                    _ => {}
                },
                _ => {}
            }
        }
        let version = version.context(
            "the module has no `karmem:abi` section: it was not lowered with the Karmem ABI \
             (`karmem-bridge lower` writes it by default)",
        )?;
        ensure!(
            version.split('.').next() == Some(ABI_MAJOR),
            "the module speaks Karmem ABI `{version}`, this host only major version {ABI_MAJOR}"
        );
        let idl = idl.context("the module has no `karmem:idl` section")?;
        ensure!(
            !idl.trim().is_empty(),
            "the module's `karmem:idl` section is empty (its WIT could not be mapped to KarmemIDL when it was lowered)"
        );
        let schema = karmem_idl::load(&idl, "karmem:idl")
            .map_err(|d| anyhow!("the module's `karmem:idl` section does not resolve:\n{d}"))?;
        let layout = Layout::new(&schema).map_err(|e| anyhow!("the module's schema has no layout: {e}"))?;
        Ok(ModuleAbi { version, idl, schema: Arc::new(schema), layout: Arc::new(layout) })
    }
}

fn section_text(data: &[u8], name: &str) -> Result<String> {
    String::from_utf8(data.to_vec()).map_err(|e| anyhow!("section `{name}` is not UTF-8 at byte {}", e.utf8_error().valid_up_to()))
}

/// Calls `_initialize` (when exported) and `KarmemInit`, then reads every
/// descriptor. Does not check type hashes (see [`check_type_hashes`]).
pub fn discover(guest: &mut dyn AbiInstance) -> Result<GuestInterfaces> {
    if guest.has_export("_initialize") {
        guest.call_export("_initialize", &[]).context("`_initialize` failed")?;
    }
    let counts = single_i64(guest.call_export("KarmemInit", &[]).context("`KarmemInit` failed")?, "KarmemInit")?;
    let (imports, exports) = ((counts as u64 >> 32) as u32, counts as u64 as u32);
    let mut found = GuestInterfaces::default();
    for index in 0..imports {
        found.imports.push(read_descriptor(guest, "KarmemImport", index)?);
    }
    for index in 0..exports {
        found.exports.push(read_descriptor(guest, "KarmemExport", index)?);
    }
    Ok(found)
}

/// Checks that every function the descriptors name exists in `layout` with
/// the same type hash (docs/ABI.md §5). The error names the function.
pub fn check_type_hashes(interfaces: &GuestInterfaces, layout: &Layout) -> Result<()> {
    let sides = [("imported", &interfaces.imports), ("exported", &interfaces.exports)];
    for (side, list) in sides {
        for interface in list {
            for function in &interface.functions {
                let path = format!("{}.{}", interface.name, function.name);
                let expected = layout
                    .function_hash(&interface.name, &function.name)
                    .with_context(|| format!("{side} function `{path}` is not in the schema"))?;
                ensure!(
                    expected == function.type_hash,
                    "type hash mismatch for {side} function `{path}`: the guest says {:#018x}, the schema {:#018x}",
                    function.type_hash,
                    expected
                );
            }
        }
    }
    Ok(())
}

/// Checks every function the descriptors name against the host's own
/// schema (docs/ABI.md §5): the descriptor's type hash must match the
/// guest's `karmem:idl` schema, and the guest's version of the function must
/// be compatible with the host's by the rules of `karmem-bridge compat`
/// (one a safe evolution of the other), so a function that gained a
/// parameter is accepted although its hash changed. Errors name the function.
pub fn check_compatibility(interfaces: &GuestInterfaces, guest: &ModuleAbi, host: &karmem_idl::Schema) -> Result<()> {
    check_type_hashes(interfaces, &guest.layout).context("the guest's descriptors disagree with its `karmem:idl` section")?;
    let sides = [("imported", &interfaces.imports), ("exported", &interfaces.exports)];
    for (side, list) in sides {
        for interface in list {
            for function in &interface.functions {
                karmem_format::compat::check_function(host, &guest.schema, &interface.name, &function.name)
                    .map_err(|e| anyhow!("{side} {e}"))?;
            }
        }
    }
    Ok(())
}

/// Reads the message a packed buffer points at.
pub fn read_packed(guest: &mut dyn AbiInstance, packed: i64) -> Result<Vec<u8>> {
    let packed = packed as u64;
    let (ptr, len) = (packed & 0xFFFF_FFFF, packed >> 32);
    // A hostile guest can claim any length: check it against its memory
    // before allocating, not after.
    if let Some(size) = guest.memory_len() {
        ensure!(
            ptr.checked_add(len).is_some_and(|end| end <= size),
            "buffer at {ptr:#x} (+{len}) is outside the guest's memory ({size} bytes)"
        );
    }
    let len = usize::try_from(len).context("buffer length does not fit this host")?;
    let mut bytes = vec![0; len];
    guest.read_bytes(ptr, &mut bytes).with_context(|| format!("buffer at {ptr:#x} (+{len}) is outside the guest's memory"))?;
    Ok(bytes)
}

/// The one `i64` a Karmem ABI entry point returns.
pub(crate) fn single_i64(results: Vec<Val>, name: &str) -> Result<i64> {
    match results.as_slice() {
        [Val::I64(value)] => Ok(*value),
        _ => bail!("`{name}` did not return one `i64`"),
    }
}

fn read_descriptor(guest: &mut dyn AbiInstance, entry: &str, index: u32) -> Result<InterfaceInfo> {
    let packed = single_i64(
        guest.call_export(entry, &[Val::I32(index as i32)]).with_context(|| format!("`{entry}({index})` failed"))?,
        entry,
    )?;
    let bytes = read_packed(guest, packed).with_context(|| format!("descriptor `{entry}({index})`"))?;
    decode_descriptor(&bytes).with_context(|| format!("invalid descriptor `{entry}({index})`"))
}

struct DescriptorSchema {
    layout: Layout,
    root: TypeId,
}

fn descriptor_schema() -> Result<&'static DescriptorSchema> {
    static SCHEMA: OnceLock<std::result::Result<DescriptorSchema, String>> = OnceLock::new();
    let built = SCHEMA.get_or_init(|| {
        let schema = karmem_idl::load(DESCRIPTOR_IDL, "descriptor.km").map_err(|d| d.to_string())?;
        let layout = Layout::new(&schema).map_err(|e| e.to_string())?;
        let root = layout.named("descriptor").ok_or("no `descriptor` struct")?;
        Ok(DescriptorSchema { layout, root })
    });
    built.as_ref().map_err(|e| anyhow!("the descriptor schema does not load: {e}"))
}

/// Decodes one descriptor message (docs/ABI.md §5).
pub fn decode_descriptor(bytes: &[u8]) -> Result<InterfaceInfo> {
    let schema = descriptor_schema()?;
    let value = karmem_format::value::decode(&schema.layout, schema.root, bytes, &Limits::default())
        .map_err(|e| anyhow!("{e}"))?;
    let pattern = u8_field(&value, "pattern")?;
    let functions = list_field(&value, "functions")?
        .iter()
        .map(|f| {
            Ok(FunctionInfo {
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
            let access = Access::from_abi(u8_field(m, "access")?)?;
            Ok(MemoryInfo {
                name: string_field(m, "name")?,
                access,
                offset: u64::from(u32_field(m, "offset")?),
                pages: u32_field(m, "pages")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(InterfaceInfo {
        package: string_field(&value, "package")?,
        name: string_field(&value, "name")?,
        pattern: Pattern::from_abi(pattern, NonZeroUsize::MIN)?,
        functions,
        memories,
        wit_package: string_field(&value, "wit_package")?,
        wit_interface: string_field(&value, "wit_interface")?,
        wit_version: string_field(&value, "wit_version")?,
    })
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
