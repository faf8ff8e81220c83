//! A wasmtime host for lowered Karmem modules (core modules, component model
//! off).
//!
//! Owns:
//! - the engine and its settings ([`Runtime`], [`RuntimeConfig`]);
//! - one instance type, [`Guest`] (`guest.rs`): store, limits, poisoning,
//!   deadlines, guarded memory access and shared mapping, for plain
//!   modules, modules with the Karmem ABI and canonical-ABI modules alike;
//! - the Karmem ABI handshake: `KarmemInit`, the descriptors decoded, type
//!   hashes checked against the module's `karmem:idl` schema ([`handshake`]);
//! - running a lowered module with WASI preview1, calling its exports with
//!   `Value`s and serving its imports from host functions ([`invoke`]; a
//!   [`Guest`] made this way is known as [`invoke::Session`]);
//! - linking guests to guests by pattern — direct, fanout, singleton, pool —
//!   with their interface memories shared ([`compose::Composition`]), on the
//!   call-level building blocks of [`link`];
//! - zero-copy interface memories: one memfd per memory mapped into each
//!   participant's linear memory with its access ([`shared`]);
//! - containment: per-call timeouts (epoch interruption), memory limits,
//!   optional fuel, poisoning of failed guests ([`Guest`], [`GuestLimits`]);
//! - the bulk-memory rewrite that lets guests with read-only windows use
//!   `memory.copy`/`memory.fill`/`memory.init` safely ([`bulk`]);
//! - the on-disk cache of compiled modules ([`ModuleCache`]).
//!
//! Does not own: producing lowered modules (`karmem-core-lowering`,
//! `karmem-adapters`), the ABI's names, version, descriptor schema and code
//! tables (`karmem-contract`), the message format (`karmem-format`), the CLI
//! (`karmem-bridge`). Design: docs/RUNTIME.md.
//!
//! ```
//! use karmem_runtime::{Access, GuestOptions, MemoryLayout, RegionPlacement, Runtime,
//!     RuntimeConfig, SharedRegion};
//!
//! # fn main() -> anyhow::Result<()> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let module = runtime.load(&wat::parse_str(r#"
//!     (module (memory (export "memory") 2)
//!       (func (export "first") (result i32) (i32.load8_u (i32.const 0x10000))))"#)?)?;
//! let region = SharedRegion::new("messages", 1)?;
//! let options = GuestOptions {
//!     layout: MemoryLayout::new(vec![RegionPlacement::new(&region, 0x10000, Access::Read)])?,
//!     ..GuestOptions::default()
//! };
//! let mut producer = runtime.instantiate(&module, &GuestOptions {
//!     layout: MemoryLayout::new(vec![RegionPlacement::new(&region, 0x10000, Access::ReadWrite)])?,
//!     ..GuestOptions::default()
//! })?;
//! let mut consumer = runtime.instantiate(&module, &options)?;
//! producer.write_memory(0x10000, &[42])?;
//! assert_eq!(consumer.call("first", &[])?[0].unwrap_i32(), 42);
//! // The host may not write where the consumer may only read.
//! assert!(consumer.write_memory(0x10000, &[1]).is_err());
//! # Ok(())
//! # }
//! ```

pub mod bulk;
pub mod canonical;
#[allow(unsafe_code)]
mod cache;
pub mod compose;
mod guest;
pub mod handshake;
pub mod invoke;
pub mod link;
pub mod module;
mod runtime;
pub mod shared;

pub use cache::{CacheOutcome, ModuleCache};
pub use guest::{
    Failure, Guest, GuestLimits, GuestOptions, GuestState, read_caller_memory, write_caller_memory,
};
pub use runtime::{LoadedModule, Runtime, RuntimeConfig};
pub use shared::{Access, MemoryLayout, RegionPlacement, SharedRegion, WASM_PAGE_SIZE};

/// Converts wasmtime 48's own error type (which is not `std::error::Error`,
/// so `anyhow::Context` does not apply) into `anyhow`, keeping the
/// underlying error (a `Trap`, say) reachable through `downcast_ref`.
pub(crate) trait WasmtimeResultExt<T> {
    fn into_anyhow(self) -> anyhow::Result<T>;
}

impl<T> WasmtimeResultExt<T> for Result<T, wasmtime::Error> {
    fn into_anyhow(self) -> anyhow::Result<T> {
        self.map_err(anyhow::Error::from)
    }
}
