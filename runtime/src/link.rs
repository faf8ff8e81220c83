//! The seam where the Karmem handshake and interface linking plug in.
//!
//! What exists now: the vocabulary of docs/ABI.md §5 on the host side
//! ([`Pattern`], [`MemoryInfo`], [`InterfaceInfo`], [`GuestInterfaces`]), the
//! [`Handshake`] trait a decoder of `KarmemInit`/`KarmemImport`/`KarmemExport`
//! will implement, and the memory-level half of fanout ([`fanout_call`]):
//! one call reaching every consumer, results in order, one consumer's failure
//! contained to it.
//!
//! What does not exist yet, and is refused rather than faked: decoding the
//! descriptors ([`AbiHandshake`] returns an error), type-hash checks, and the
//! direct/singleton/pool routers, which need decoded descriptors to know which
//! import goes to which export.

use std::num::NonZeroUsize;
use std::sync::Arc;

use anyhow::{Result, bail};
use wasmtime::Val;

use crate::guest::Guest;
use crate::shared::{Access, RegionPlacement, SharedRegion};

/// How importers of an interface reach its exporters (paper §4.3.2;
/// docs/ABI.md §5 `descriptor.pattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Each importer gets one exporter.
    Direct,
    /// One call reaches every exporter; results are collected in order.
    Fanout,
    /// All importers share one exporter instance.
    Singleton,
    /// Calls spread over several exporter instances.
    Pool {
        /// Number of exporter instances.
        instances: NonZeroUsize,
    },
}

impl Pattern {
    /// Decodes the ABI's pattern byte (0 direct, 1 fanout, 2 singleton,
    /// 3 pool). The pool size is the host's choice, not the guest's.
    pub fn from_abi(code: u8, pool_size: NonZeroUsize) -> Result<Self> {
        Ok(match code {
            0 => Pattern::Direct,
            1 => Pattern::Fanout,
            2 => Pattern::Singleton,
            3 => Pattern::Pool {
                instances: pool_size,
            },
            other => bail!("unknown interface pattern code `{other}` (expected 0 to 3)"),
        })
    }
}

/// One function of an interface, as a descriptor states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The function's name in the interface.
    pub name: String,
    /// The value passed to `KarmemCall`.
    pub id: u32,
    /// Hash of the parameter and result types (docs/FORMAT.md).
    pub type_hash: u64,
}

/// One interface memory, as a participant's descriptor states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryInfo {
    /// The memory's name in the interface.
    pub name: String,
    /// This participant's access.
    pub access: Access,
    /// Byte offset of the region in the participant's linear memory.
    pub offset: u64,
    /// Size in 64 KiB pages.
    pub pages: u32,
}

impl MemoryInfo {
    /// The placement of `region` this descriptor asks for; checked when the
    /// placement joins a layout or is mapped.
    pub fn placement(&self, region: &Arc<SharedRegion>) -> Result<RegionPlacement> {
        if region.name() != self.name {
            bail!(
                "shared memory `{}` cannot back the guest's memory `{}`",
                region.name(),
                self.name
            );
        }
        Ok(RegionPlacement {
            region: Arc::clone(region),
            offset: self.offset,
            pages: self.pages,
            access: self.access,
        })
    }
}

/// One imported or exported interface of a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// KarmemIDL package, e.g. `example:types@1.0.0`.
    pub package: String,
    /// Interface name.
    pub name: String,
    /// Linking pattern.
    pub pattern: Pattern,
    /// Functions with ids and type hashes.
    pub functions: Vec<FunctionInfo>,
    /// Interface memories with this guest's placement.
    pub memories: Vec<MemoryInfo>,
}

/// What a handshake learns about a guest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestInterfaces {
    /// Interfaces the guest imports.
    pub imports: Vec<InterfaceInfo>,
    /// Interfaces the guest exports.
    pub exports: Vec<InterfaceInfo>,
}

/// Discovers a guest's interfaces. An implementation calls `KarmemInit`,
/// reads each descriptor, and checks type hashes against the host's schema;
/// the runtime then maps each [`MemoryInfo`] with [`Guest::map_shared`] and
/// wires imports by [`Pattern`].
pub trait Handshake {
    /// Runs the handshake on a freshly instantiated guest.
    fn discover(&self, guest: &mut Guest) -> Result<GuestInterfaces>;
}

/// The Karmem ABI handshake. Refuses until the descriptor format is
/// implemented in `karmem-format`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AbiHandshake;

impl Handshake for AbiHandshake {
    fn discover(&self, _guest: &mut Guest) -> Result<GuestInterfaces> {
        bail!(
            "the `KarmemInit` handshake is not implemented yet: decoding interface descriptors \
             (docs/ABI.md §5) waits for the Karmem ABI work"
        )
    }
}

/// Calls `export` on every consumer in order with the same arguments and
/// collects each result. A consumer that traps or times out yields its error
/// and is poisoned; the others still run. The arguments are plain values, so
/// a message in a shared region reaches every consumer without a copy.
pub fn fanout_call(consumers: &mut [Guest], export: &str, params: &[Val]) -> Vec<Result<Vec<Val>>> {
    consumers
        .iter_mut()
        .map(|consumer| consumer.call(export, params))
        .collect()
}
