//! The descriptor schema (`contract/descriptor.km`, docs/ABI.md §5) evolves
//! only by appending: every version must be a safe evolution of the
//! previous one by the rules of `karmem-bridge compat`, and its package
//! version must be the `karmem:abi` section's version.

use anyhow::{Result, anyhow, ensure};
use karmem_adapters::abi::{ABI_VERSION, DESCRIPTOR_KM};

/// `contract/descriptor.km` of ABI 0.1 (doc comments dropped).
const DESCRIPTOR_0_1: &str = r#"
package karmem:abi@0.1.0;

struct descriptor (dynamic) {
    package: []u8 #string;
    name: []u8 #string;
    pattern: u8;
    functions: []function_descriptor;
    memories: []memory_descriptor;
}

struct function_descriptor (dynamic) {
    name: []u8 #string;
    id: u32;
    type_hash: u64;
}

struct memory_descriptor (dynamic) {
    name: []u8 #string;
    access: u8;
    offset: u32;
    pages: u32;
}
"#;

#[test]
fn the_descriptor_schema_only_appends() -> Result<()> {
    let old = karmem_idl::load(DESCRIPTOR_0_1, "descriptor-0.1.km").map_err(|d| anyhow!("{d}"))?;
    let new = karmem_idl::load(DESCRIPTOR_KM, "descriptor.km").map_err(|d| anyhow!("{d}"))?;
    let changes = karmem_idl::compat::compare(&old, &new);
    let breaking: Vec<String> =
        changes.iter().filter(|c| c.breaking).map(|c| format!("{}: {}", c.path, c.message)).collect();
    ensure!(breaking.is_empty(), "breaking changes to the descriptor schema: {breaking:?}");
    ensure!(changes.iter().any(|c| c.message.contains("wit_package")), "{changes:?}");
    let version = new.file().package.as_ref().and_then(|p| p.version.clone()).unwrap_or_default();
    ensure!(
        version.starts_with(&format!("{ABI_VERSION}.")),
        "descriptor.km is `{version}`, the `karmem:abi` section says `{ABI_VERSION}`"
    );
    Ok(())
}
