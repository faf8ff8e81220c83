//! Interface memories (paper §4.3.3, docs/ABI.md §6): memfd-backed regions
//! mapped into every participant's single linear memory with its declared
//! access.
//!
//! `region` describes regions and placements; `memory` is the wasmtime
//! `MemoryCreator` that maps them; `host_map` is the host's own mapping, for
//! messages built in place. Which guest gets which placement is decided
//! by whoever builds the layout: the host API ([`crate::GuestOptions::layout`],
//! [`crate::Guest::map_shared`]) or, from the handshake's descriptors,
//! [`crate::compose::Composition`] through [`crate::invoke::Session::map_shared`].

#[allow(unsafe_code)]
mod host_map;
#[allow(unsafe_code)]
mod memory;
mod region;

pub(crate) use memory::{MemoryCore, WindowedMemoryCreator};
pub use region::{Access, MemoryLayout, RegionPlacement, SharedRegion, WASM_PAGE_SIZE};
