//! The two custom sections of the partitioning, each with its encoder and
//! decoder.
//!
//! Owns: `karmem:memory-owners` (who owns each memory of a lowered module
//! before partitioning: one UTF-8 line per memory index, written by the
//! lowering, read by the partition pass and dropped by it) and
//! `karmem:partitions` (the layout of a partitioned module: the text
//! [`crate::Layout`] displays, for `inspect`).

use anyhow::{Context, Result, ensure};
use wasmparser::{Parser, Payload};

/// Who owns each memory, one line per memory index.
pub const OWNERS_SECTION: &str = "karmem:memory-owners";
/// The layout of a partitioned module, as text.
pub const LAYOUT_SECTION: &str = "karmem:partitions";

/// `karmem:memory-owners`' payload.
pub fn encode_owners(owners: &[String]) -> Result<Vec<u8>> {
    for owner in owners {
        ensure!(!owner.contains('\n'), "a memory owner's name has a line break: `{owner}`");
    }
    Ok(owners.join("\n").into_bytes())
}

/// [`encode_owners`]' inverse.
pub fn decode_owners(data: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(data).with_context(|| format!("the `{OWNERS_SECTION}` section is not UTF-8"))?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text.split('\n').map(str::to_string).collect())
}

/// The payload of custom section `name` in `module`, if any.
pub fn custom_section<'a>(module: &'a [u8], name: &str) -> Result<Option<&'a [u8]>> {
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::CustomSection(section) = payload?
            && section.name() == name
        {
            return Ok(Some(section.data()));
        }
    }
    Ok(None)
}
