//! The Karmem ABI handshake (docs/ABI.md §2, §5, §8): calling `_initialize`
//! and `KarmemInit`, decoding every `KarmemImport`/`KarmemExport` descriptor
//! with `karmem-format`, reading the module's `karmem:idl` section into a
//! schema, and checking each function's type hash against it.
//!
//! Owns the host's side of that exchange, on any [`Guest`]. The names,
//! version, descriptor schema and code tables are the contract's
//! (`karmem-contract`); this module turns a decoded descriptor into the
//! host's vocabulary ([`InterfaceInfo`]). Leaves calling functions with
//! values and serving imports to [`crate::invoke`], and wiring guests by
//! pattern to [`crate::compose`].

use std::num::NonZeroUsize;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail, ensure};
use karmem_contract::{ABI_MAJOR, ABI_SECTION, Descriptor, IDL_SECTION, entry};
use karmem_format::layout::Layout;
use wasmtime::Val;

use crate::guest::Guest;
use crate::link::{FunctionInfo, GuestInterfaces, InterfaceInfo, MemoryInfo, Pattern};

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
                    ABI_SECTION => version = Some(section_text(section.data(), ABI_SECTION)?),
                    IDL_SECTION => idl = Some(section_text(section.data(), IDL_SECTION)?),
                    _ => {}
                },
                _ => {}
            }
        }
        let version = version.with_context(|| {
            format!(
                "the module has no `{ABI_SECTION}` section: it was not lowered with the Karmem ABI \
                 (`karmem-bridge lower` writes it by default)"
            )
        })?;
        ensure!(
            karmem_contract::speaks(&version),
            "the module speaks Karmem ABI `{version}`, this host only major version {ABI_MAJOR}"
        );
        let idl = idl.with_context(|| format!("the module has no `{IDL_SECTION}` section"))?;
        ensure!(
            !idl.trim().is_empty(),
            "the module's `{IDL_SECTION}` section is empty (its WIT could not be mapped to KarmemIDL when it was lowered)"
        );
        let schema = karmem_idl::load(&idl, IDL_SECTION)
            .map_err(|d| anyhow!("the module's `{IDL_SECTION}` section does not resolve:\n{d}"))?;
        let layout = Layout::new(&schema).map_err(|e| anyhow!("the module's schema has no layout: {e}"))?;
        Ok(ModuleAbi { version, idl, schema: Arc::new(schema), layout: Arc::new(layout) })
    }
}

fn section_text(data: &[u8], name: &str) -> Result<String> {
    String::from_utf8(data.to_vec()).map_err(|e| anyhow!("section `{name}` is not UTF-8 at byte {}", e.utf8_error().valid_up_to()))
}

/// Calls `_initialize` (when exported) and `KarmemInit`, then reads every
/// descriptor. Does not check type hashes (see [`check_type_hashes`]).
pub fn discover(guest: &mut Guest) -> Result<GuestInterfaces> {
    if guest.has_export(entry::INITIALIZE) {
        guest.call(entry::INITIALIZE, &[]).with_context(|| format!("`{}` failed", entry::INITIALIZE))?;
    }
    let counts = single_i64(guest.call(entry::INIT, &[]).with_context(|| format!("`{}` failed", entry::INIT))?, entry::INIT)?;
    // `(imports << 32) | exports`: a packed pair like a buffer's
    let (exports, imports) = karmem_contract::unpack(counts);
    let mut found = GuestInterfaces::default();
    for index in 0..imports {
        found.imports.push(read_descriptor(guest, entry::IMPORT, index)?);
    }
    for index in 0..exports {
        found.exports.push(read_descriptor(guest, entry::EXPORT, index)?);
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
pub fn read_packed(guest: &mut Guest, packed: i64) -> Result<Vec<u8>> {
    let (ptr, len) = karmem_contract::unpack(packed);
    // A hostile guest can claim any length: check it against its memory
    // before allocating, not after.
    let size = guest.memory_size()? as u64;
    ensure!(
        u64::from(ptr) + u64::from(len) <= size,
        "buffer at {ptr:#x} (+{len}) is outside the guest's memory ({size} bytes)"
    );
    let len = usize::try_from(len).context("buffer length does not fit this host")?;
    let mut bytes = vec![0; len];
    guest
        .read_memory(u64::from(ptr), &mut bytes)
        .with_context(|| format!("buffer at {ptr:#x} (+{len}) is outside the guest's memory"))?;
    Ok(bytes)
}

/// The one `i64` a Karmem ABI entry point returns.
pub(crate) fn single_i64(results: Vec<Val>, name: &str) -> Result<i64> {
    match results.as_slice() {
        [Val::I64(value)] => Ok(*value),
        _ => bail!("`{name}` did not return one `i64`"),
    }
}

fn read_descriptor(guest: &mut Guest, entry: &str, index: u32) -> Result<InterfaceInfo> {
    let packed = single_i64(
        guest.call(entry, &[Val::I32(index as i32)]).with_context(|| format!("`{entry}({index})` failed"))?,
        entry,
    )?;
    let bytes = read_packed(guest, packed).with_context(|| format!("descriptor `{entry}({index})`"))?;
    decode_descriptor(&bytes).with_context(|| format!("invalid descriptor `{entry}({index})`"))
}

/// Decodes one descriptor message (docs/ABI.md §5) into the host's
/// vocabulary.
pub fn decode_descriptor(bytes: &[u8]) -> Result<InterfaceInfo> {
    let descriptor = Descriptor::decode(bytes)?;
    Ok(InterfaceInfo {
        package: descriptor.package,
        name: descriptor.name,
        pattern: Pattern::declared(descriptor.pattern, NonZeroUsize::MIN),
        functions: descriptor
            .functions
            .into_iter()
            .map(|f| FunctionInfo { name: f.name, id: f.id, type_hash: f.type_hash })
            .collect(),
        memories: descriptor
            .memories
            .into_iter()
            .map(|m| MemoryInfo { name: m.name, access: m.access.into(), offset: u64::from(m.offset), pages: m.pages })
            .collect(),
        wit_package: descriptor.wit_package,
        wit_interface: descriptor.wit_interface,
        wit_version: descriptor.wit_version,
    })
}
