//! The memories of a multi-memory core module as partitions of one memory.
//!
//! Owns: turning a valid core module with several memories (one per
//! component instance that owns one, plus the Karmem edge memory) into a
//! module with exactly one 32-bit memory, so it runs on engines that refuse
//! multi-memory (node 20, wazero 1.9). Each memory becomes a *partition* at
//! a page-aligned base ([`layout`]); every access of the code to it is
//! rebased and bounds-checked against the partition's current size, so an
//! instance that addresses past its partition traps exactly where its own
//! memory would have; `memory.size`/`memory.grow` count the partition's own
//! pages and `memory.grow` past its quota returns -1 ([`rewrite`], helper
//! functions in [`glue`]). WASI preview1 imports that take pointers into a
//! partition are wrapped: pointers are checked and rebased, iovec arrays
//! and argv/environ tables translated ([`preview1`]).
//!
//! Does not own: deciding which memory belongs to whom (the caller names
//! owners), merging component modules (`karmem-core-lowering`), the Karmem
//! edge or the WASI shim (`karmem-adapters`). The layout is written up in
//! `docs/LOWERING.md` ("One memory: partitions").
//!
//! ```
//! let two = wat::parse_str(r#"
//!   (module
//!     (memory $a 1) (memory $b 1)
//!     (export "memory" (memory $a))
//!     (func (export "f") (result i32)
//!       (i32.store $b (i32.const 8) (i32.const 7))
//!       (i32.load $b (i32.const 8))))
//! "#)?;
//! let owners = vec!["edge".to_string(), "guest".to_string()];
//! let layout = karmem_partition::plan(&two, &owners, 0, &Default::default())?;
//! let one = karmem_partition::run(&two, &layout)?;
//! let memories = wasmparser::Parser::new(0).parse_all(&one).filter(|p| {
//!     matches!(p, Ok(wasmparser::Payload::MemorySection(_)))
//! }).count();
//! assert_eq!(memories, 1);
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod glue;
pub mod layout;
pub mod preview1;
pub mod rewrite;
pub mod section;

pub use layout::{Layout, Partition, Quotas, plan};
pub use rewrite::run;

/// Who owns the Karmem edge memory, as quotas and `inspect` name it.
pub const EDGE_OWNER: &str = "karmem:edge";

/// The memories of a lowered module as partitions of one: the Karmem edge
/// memory (exported as `KarmemMemory`), else the memory exported as
/// `memory`, at address 0; the owners the lowering recorded
/// (`karmem:memory-owners`) name the others, for `quotas` and `inspect`.
pub fn one_memory(module: &[u8], quotas: &Quotas) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let mut owners = match section::custom_section(module, section::OWNERS_SECTION)? {
        Some(data) => section::decode_owners(data)?,
        None => Vec::new(),
    };
    let edge = layout::exported_memory(module, "KarmemMemory")?;
    let count = layout::memory_count(module)?;
    for index in owners.len() as u32..count {
        owners.push(if Some(index) == edge { EDGE_OWNER.to_string() } else { format!("memory{index}") });
    }
    owners.truncate(count as usize);
    let identity = match edge {
        Some(edge) => edge,
        None => layout::exported_memory(module, "memory")?.context("the module exports no `memory` to place at address 0")?,
    };
    let layout = plan(module, &owners, identity, quotas)?;
    run(module, &layout)
}

/// The name of import module `module` when the import's pointers point
/// into memory `memory` of a multi-memory module and another instance
/// imports the same function into another memory (each keeps its own
/// lowering: its memory, realloc and string encoding). The WASI shim, linked
/// once per memory, names its preview1 imports
/// `wasi_snapshot_preview1!memory<k>` the same way. Plain
/// `wasi_snapshot_preview1` points into the memory exported as `memory`.
/// [`run`] serves every preview1 import with a wrapper over the real
/// `wasi_snapshot_preview1` import; a module kept multi-memory cannot.
pub fn module_in_memory(module: &str, memory: u32) -> String {
    format!("{module}{IN_MEMORY}{memory}")
}

/// [`module_in_memory`]'s inverse: the plain module name and the memory.
pub fn split_module_memory(module: &str) -> (&str, Option<u32>) {
    if let Some((plain, memory)) = module.rsplit_once(IN_MEMORY)
        && let Ok(memory) = memory.parse()
    {
        return (plain, Some(memory));
    }
    (module, None)
}

const IN_MEMORY: &str = "!memory";

/// The standard preview1 import module.
pub const PREVIEW1: &str = "wasi_snapshot_preview1";

/// The memory a preview1 import module name points into: `Some(None)` for
/// plain `wasi_snapshot_preview1` (the memory exported as `memory`),
/// `Some(Some(k))` for `wasi_snapshot_preview1!memory<k>`, `None` for any
/// other module.
pub fn preview1_memory_of(module: &str) -> Option<Option<u32>> {
    match split_module_memory(module) {
        (PREVIEW1, memory) => Some(memory),
        _ => None,
    }
}

/// Bytes in a wasm page.
pub const PAGE: u64 = 65_536;
/// Pages in a 32-bit memory.
pub const MAX_PAGES: u64 = 65_536;
