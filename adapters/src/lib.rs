//! Generated wasm at the edge of a lowered module.
//!
//! Will own: `KarmemInit`/`KarmemAlloc`/`KarmemFree`/`KarmemImport`/`KarmemExport`/
//! `KarmemCall` shims, canonical-ABI <-> Karmem transcoders, string transcoders,
//! handle tables, shared-memory regions and the WASI preview2-on-preview1 shims.
//!
//! Does not own: merging modules (`karmem-core-lowering`).
pub mod abi;
pub mod asm;
pub mod canon;
pub mod transcode;
pub mod wasi;
