//! The seam where the Karmem handshake and interface linking plug in.
//!
//! What exists now: the vocabulary of docs/ABI.md §5 on the host side
//! ([`Pattern`], [`MemoryInfo`], [`InterfaceInfo`], [`GuestInterfaces`]), the
//! [`Handshake`] trait a decoder of `KarmemInit`/`KarmemImport`/`KarmemExport`
//! will implement, and the call-level halves of the patterns that do not
//! need descriptors: [`fanout_call`] (one call reaching every consumer,
//! results in order, one consumer's failure contained to it), [`GuestPool`]
//! (N instances, calls spread over threads, failed members replaced) and
//! [`SharedGuest`] (one instance shared by everyone).
//!
//! What does not exist yet, and is refused rather than faked: decoding the
//! descriptors ([`AbiHandshake`] returns an error), type-hash checks, and
//! wiring a guest's imports to other guests' exports by pattern, which needs
//! decoded descriptors to know which import goes to which export.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
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

/// The Karmem ABI handshake (docs/ABI.md §2, §5): `_initialize` when
/// exported, `KarmemInit`, then every descriptor ([`crate::handshake`]).
/// Type hashes are checked against a schema with
/// [`crate::handshake::check_type_hashes`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AbiHandshake;

impl Handshake for AbiHandshake {
    fn discover(&self, guest: &mut Guest) -> Result<GuestInterfaces> {
        crate::handshake::discover(guest)
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

/// Makes a fresh exporter guest (instantiate plus, later, the handshake).
pub type GuestFactory = Arc<dyn Fn() -> Result<Guest> + Send + Sync>;

/// The call-level half of the pool pattern: N instances of one exporter,
/// calls spread across them from any number of threads. A member whose call
/// failed is unusable (it is poisoned) and is replaced by a fresh instance
/// before its next call, so one bad request does not shrink the pool.
pub struct GuestPool {
    members: Vec<Mutex<Option<Guest>>>,
    factory: GuestFactory,
    next: AtomicUsize,
    replaced: AtomicU64,
}

impl fmt::Debug for GuestPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestPool")
            .field("size", &self.members.len())
            .field("replaced", &self.replaced())
            .finish_non_exhaustive()
    }
}

impl GuestPool {
    /// Instantiates `size` members with `factory`.
    pub fn new(size: NonZeroUsize, factory: GuestFactory) -> Result<Self> {
        let members = (0..size.get())
            .map(|index| {
                factory()
                    .with_context(|| format!("failed to instantiate pool member {index}"))
                    .map(|guest| Mutex::new(Some(guest)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GuestPool {
            members,
            factory,
            next: AtomicUsize::new(0),
            replaced: AtomicU64::new(0),
        })
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Members replaced after a failed call so far.
    pub fn replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// Calls `export` on an idle member (round robin from a rotating start;
    /// waits for the starting member when all are busy).
    pub fn call(&self, export: &str, params: &[Val]) -> Result<Vec<Val>> {
        let count = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let idle = (0..count)
            .map(|step| (start + step) % count)
            .find_map(|index| self.members.get(index)?.try_lock().ok());
        let mut member = match idle {
            Some(member) => member,
            None => self
                .members
                .get(start)
                .context("the pool has no members")?
                .lock()
                .map_err(|_| anyhow!("a pool member's lock was poisoned"))?,
        };
        let usable = member.as_ref().is_some_and(|g| g.poisoned().is_none());
        if !usable {
            *member = None;
            *member = Some((self.factory)().context("failed to replace a failed pool member")?);
            self.replaced.fetch_add(1, Ordering::Relaxed);
        }
        member
            .as_mut()
            .context("a pool member is missing")?
            .call(export, params)
    }
}

/// The call-level half of the singleton pattern: one exporter instance
/// shared by every importer and thread, its state persisting between calls.
/// Unlike a pool member, a failed singleton is not replaced (that would
/// silently reset the state everyone shares): later calls fail too.
#[derive(Debug)]
pub struct SharedGuest {
    guest: Mutex<Guest>,
}

impl SharedGuest {
    /// Shares `guest`.
    pub fn new(guest: Guest) -> Self {
        SharedGuest {
            guest: Mutex::new(guest),
        }
    }

    /// Calls `export`, waiting for other callers.
    pub fn call(&self, export: &str, params: &[Val]) -> Result<Vec<Val>> {
        self.guest
            .lock()
            .map_err(|_| anyhow!("the shared guest's lock was poisoned"))?
            .call(export, params)
    }
}
