//! Generated wasm at the edge of a lowered module.
//!
//! Owns: the `KarmemInit`/`KarmemAlloc`/`KarmemFree`/`KarmemImport`/
//! `KarmemExport`/`KarmemCall` shims and the interface descriptors they
//! hand out (`abi`), canonical-ABI <-> Karmem transcoders and string
//! transcoders (`transcode`), and the WASI preview2-on-preview1 shims
//! (`wasi`).
//!
//! Does not own: merging modules and the handle tables
//! (`karmem-core-lowering`), the Karmem ABI contract — names, version,
//! descriptor schema and code tables (`karmem-contract`) —, shared-memory
//! regions and running guests (`karmem-runtime`).
pub mod abi;
pub mod asm;
pub mod canon;
pub mod transcode;
pub mod wasi;
