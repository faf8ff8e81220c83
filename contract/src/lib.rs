//! The Karmem ABI contract (docs/ABI.md): every name, number and message
//! layout that the module generator (`karmem-adapters`) and the hosts
//! (`karmem-runtime`, the CLI) must agree on, defined once.
//!
//! Owns:
//! - the custom sections `karmem:abi` (the ABI version) and `karmem:idl`
//!   (the module's KarmemIDL), and the version this tree writes and reads;
//!   the name of `karmem:canonical-abi` (the lowering's record that the
//!   Karmem ABI stage consumes);
//! - the guest's entry points (`KarmemInit`, `KarmemAlloc`, ...), the
//!   message memory's export names and the message alignment (§2, §3);
//! - the import modules of imported interfaces (`karmem:<interface>`) and
//!   the `[resource-drop]` field prefix (§2, §4);
//! - packed buffers (`(len << 32) | ptr`, §1);
//! - the interface descriptor: its normative schema `descriptor.km`, the
//!   typed [`Descriptor`] with [`Descriptor::encode`] and its inverse
//!   [`Descriptor::decode`], and the pattern and access code tables (§5)
//!   ([`descriptor`]).
//!
//! Does not own: generating the wasm that implements the ABI
//! (`karmem-adapters`), calling guests (`karmem-runtime`), the message
//! format itself (`karmem-format`), or the contents of the canonical-ABI
//! record (`karmem:canonical-abi`, written by `karmem-core-lowering`).
//!
//! ```
//! use karmem_contract::{Descriptor, FunctionDescriptor, Pattern, import_module, imported_interface};
//!
//! # fn main() -> anyhow::Result<()> {
//! assert_eq!(import_module("counter"), "karmem:counter");
//! assert_eq!(imported_interface("karmem:counter"), Some("counter"));
//! let descriptor = Descriptor {
//!     name: "counter".into(),
//!     pattern: Pattern::Fanout,
//!     functions: vec![FunctionDescriptor { name: "add".into(), id: 0, type_hash: 7 }],
//!     ..Descriptor::default()
//! };
//! assert_eq!(Descriptor::decode(&descriptor.encode()?)?, descriptor);
//! # Ok(())
//! # }
//! ```

pub mod descriptor;

pub use descriptor::{
    DESCRIPTOR_KM, Descriptor, FunctionDescriptor, MemoryDescriptor, access_code, access_of_code, descriptor_layout,
    pattern_code, pattern_of_code,
};
pub use karmem_idl::ast::{Access, Pattern};

/// The ABI version this tree writes to the [`ABI_SECTION`] (§8).
pub const ABI_VERSION: &str = "0.2";
/// The major version a host of this tree accepts: [`ABI_VERSION`]'s.
pub const ABI_MAJOR: &str = "0";

/// The custom section holding the ABI version, as UTF-8 text (§8).
pub const ABI_SECTION: &str = "karmem:abi";
/// The custom section holding the module's KarmemIDL, as UTF-8 text (§8).
pub const IDL_SECTION: &str = "karmem:idl";
/// The lowering's record of each boundary function's canonical options
/// (docs/LOWERING.md: memory, realloc, string encoding), which the Karmem
/// ABI stage reads and prunes. Its contents are the canonical-ABI side's;
/// only the name is defined here, so that every reader spells it one way.
pub const CANONICAL_ABI_SECTION: &str = "karmem:canonical-abi";

/// The major version of an ABI version text (`0` of `0.2`).
pub fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// Whether a host of this tree speaks a module's ABI `version`.
pub fn speaks(version: &str) -> bool {
    major(version) == ABI_MAJOR
}

/// The guest's entry points (§2).
pub mod entry {
    /// `() -> i64`: `(imports << 32) | exports`.
    pub const INIT: &str = "KarmemInit";
    /// `(i: i32) -> i64`: packed descriptor of imported interface `i`.
    pub const IMPORT: &str = "KarmemImport";
    /// `(i: i32) -> i64`: packed descriptor of exported interface `i`.
    pub const EXPORT: &str = "KarmemExport";
    /// `(size: i32, align: i32) -> i32`.
    pub const ALLOC: &str = "KarmemAlloc";
    /// `(ptr: i32, size: i32, align: i32) -> ()`.
    pub const FREE: &str = "KarmemFree";
    /// `(fn_id: i32, ptr: i32, len: i32) -> i64`.
    pub const CALL: &str = "KarmemCall";
    /// The WASI reactor initialiser the host calls before [`INIT`].
    pub const INITIALIZE: &str = "_initialize";
    /// The WASI command entry.
    pub const START: &str = "_start";
}

/// The export of the Karmem edge memory, the message memory when the guest
/// has it (§2).
pub const EDGE_MEMORY: &str = "KarmemMemory";
/// The guest's main memory export, the message memory without an edge
/// memory (§2).
pub const MAIN_MEMORY: &str = "memory";
/// The message memory's export names in the order a host looks them up (§2).
pub const MESSAGE_MEMORY: [&str; 2] = [EDGE_MEMORY, MAIN_MEMORY];

/// The alignment a host passes to `KarmemAlloc` and `KarmemFree` for a
/// message buffer (§3, §4).
pub const MESSAGE_ALIGN: i32 = 64;

/// The import module prefix of imported interfaces: `karmem:<interface>` (§4).
pub const IMPORT_PREFIX: &str = "karmem:";

/// The import module of imported `interface` (its KarmemIDL name).
pub fn import_module(interface: &str) -> String {
    format!("{IMPORT_PREFIX}{interface}")
}

/// The interface an import module serves, when it is a Karmem one.
pub fn imported_interface(module: &str) -> Option<&str> {
    module.strip_prefix(IMPORT_PREFIX)
}

/// The field prefix of a resource-drop import (`[resource-drop]<resource>`,
/// §4) and of the function part of the matching export
/// (`<interface>.[resource-drop]<resource>`, §2).
pub const RESOURCE_DROP: &str = "[resource-drop]";

/// A packed buffer: `(len << 32) | ptr` (§1); `0` is the empty buffer.
pub fn pack(ptr: u32, len: u32) -> i64 {
    ((u64::from(len) << 32) | u64::from(ptr)) as i64
}

/// The `(ptr, len)` of a packed buffer.
pub fn unpack(packed: i64) -> (u32, u32) {
    let packed = packed as u64;
    (packed as u32, (packed >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_major_version_is_the_written_versions() {
        assert_eq!(major(ABI_VERSION), ABI_MAJOR);
        assert!(speaks(ABI_VERSION) && speaks("0.1") && !speaks("1.0") && !speaks(""));
    }

    #[test]
    fn packed_buffers_round_trip() {
        assert_eq!(pack(0, 0), 0);
        assert_eq!(unpack(pack(0x1234, 0xFFFF_FFFF)), (0x1234, 0xFFFF_FFFF));
        assert_eq!(unpack(-1), (u32::MAX, u32::MAX));
    }

    #[test]
    fn import_modules_round_trip() {
        assert_eq!(imported_interface(&import_module("a_b")), Some("a_b"));
        assert_eq!(imported_interface("wasi_snapshot_preview1"), None);
    }
}
