//! A minimal Karmem ABI host on karmem-runtime (docs/ABI.md sections 2, 3
//! and 5): start a guest (`_initialize`, `KarmemInit`), read the descriptor
//! of its exported interface 0, and read result buffers. karmem-runtime has
//! no ABI call API yet (its `KarmemInit` handshake is refused, see its
//! `link` module), so paths (b), (c) and (e) use this on top of its `Guest`.

use anyhow::{Context as _, Result, bail};
use karmem_format::value::{Value, decode};
use karmem_format::{AlignedBuf, Limits, Message};
use karmem_runtime::Guest;

/// What the descriptor of exported interface 0 says.
#[derive(Debug, Clone)]
pub struct ExportedInterface {
    pub name: String,
    /// (name, `KarmemCall` id, type hash)
    pub functions: Vec<(String, u32, u64)>,
    /// (name, access, offset, pages)
    pub memories: Vec<(String, u8, u32, u32)>,
}

impl ExportedInterface {
    /// The export `<interface>.<function>` of `function`, with its type hash.
    pub fn export_of(&self, function: &str) -> Result<(String, u64)> {
        let Some((name, _, hash)) = self.functions.iter().find(|(name, ..)| name == function) else {
            bail!("interface `{}` has no function `{function}`", self.name);
        };
        Ok((format!("{}.{name}", self.name), *hash))
    }
}

/// Runs `_initialize` (if exported) and `KarmemInit`, and reads the
/// descriptor of exported interface 0.
pub fn start(guest: &mut Guest) -> Result<ExportedInterface> {
    if guest.typed_func::<(), ()>("_initialize").is_ok() {
        guest.call("_initialize", &[])?;
    }
    let init = guest.typed_func::<(), i64>("KarmemInit")?;
    let counts = guest.call_typed("KarmemInit", &init, ())? as u64;
    if counts & 0xffff_ffff == 0 {
        bail!("the guest exports no interface (`KarmemInit` returned {counts:#x})");
    }
    let export = guest.typed_func::<u32, i64>("KarmemExport")?;
    let packed = guest.call_typed("KarmemExport", &export, 0)?;
    let mut bytes = AlignedBuf::new();
    read_buffer(guest, packed, &mut bytes).context("failed to read the descriptor of exported interface 0")?;
    parse_descriptor(&bytes)
}

/// Copies the packed buffer `packed` (`(len << 32) | ptr`) out of `guest`.
/// `into` is 8-aligned (a [`AlignedBuf`]), so it can be read as a message.
pub fn read_buffer(guest: &mut Guest, packed: i64, into: &mut AlignedBuf) -> Result<()> {
    let packed = packed as u64;
    let (ptr, len) = (packed & 0xffff_ffff, packed >> 32);
    into.resize(usize::try_from(len)?);
    guest.read_memory(ptr, into.as_mut_slice())
}

/// Decodes a descriptor message (`contract/descriptor.km`).
pub fn parse_descriptor(bytes: &[u8]) -> Result<ExportedInterface> {
    let (layout, root) = karmem_adapters::abi::descriptor_layout()?;
    let aligned = AlignedBuf::from_bytes(bytes);
    Message::new(&aligned).context("the descriptor is not a Karmem message")?;
    let value = decode(layout, root, &aligned, &Limits::default()).context("invalid descriptor")?;
    let text = |v: Option<&Value>, what: &str| match v {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => bail!("descriptor field `{what}` is missing or not a string"),
    };
    let list = |v: Option<&Value>, what: &str| match v {
        Some(Value::List(items)) => Ok(items.clone()),
        _ => bail!("descriptor field `{what}` is missing or not a list"),
    };
    let mut functions = Vec::new();
    for f in list(value.field("functions"), "functions")? {
        let (Some(Value::U32(id)), Some(Value::U64(hash))) = (f.field("id"), f.field("type_hash")) else {
            bail!("descriptor function without `id`/`type_hash`");
        };
        functions.push((text(f.field("name"), "functions.name")?, *id, *hash));
    }
    let mut memories = Vec::new();
    for m in list(value.field("memories"), "memories")? {
        let (Some(Value::U8(access)), Some(Value::U32(offset)), Some(Value::U32(pages))) =
            (m.field("access"), m.field("offset"), m.field("pages"))
        else {
            bail!("descriptor memory without `access`/`offset`/`pages`");
        };
        memories.push((text(m.field("name"), "memories.name")?, *access, *offset, *pages));
    }
    Ok(ExportedInterface { name: text(value.field("name"), "name")?, functions, memories })
}
