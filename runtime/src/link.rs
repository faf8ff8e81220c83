//! The host-side vocabulary of interface linking (docs/ABI.md §5) and the
//! call-level halves of the patterns (paper §4.3.2).
//!
//! Owns: [`Pattern`], [`MemoryInfo`], [`InterfaceInfo`], [`GuestInterfaces`]
//! (what a handshake learns), the [`Handshake`] trait and its Karmem ABI
//! implementation [`AbiHandshake`] (decoding is [`crate::handshake`]'s), and
//! the building blocks the patterns are made of: [`fanout_call`] (one call
//! reaching every consumer, results in order, one consumer's failure
//! contained to it), [`Pool`] (N instances, calls spread over threads, failed
//! members replaced; [`GuestPool`] for raw guests) and [`SharedGuest`] (one
//! instance shared by everyone).
//!
//! Wiring one guest's imports to other guests' exports by pattern, with
//! their shared memories, is [`crate::compose`]'s.

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
    /// Decodes the ABI's pattern byte (`karmem_contract::pattern_of_code`).
    /// The pool size is the host's choice, not the guest's.
    pub fn from_abi(code: u8, pool_size: NonZeroUsize) -> Result<Self> {
        karmem_contract::pattern_of_code(code).map(|declared| Pattern::declared(declared, pool_size))
    }

    /// The pattern a module declares (its descriptor or its `karmem:idl`
    /// schema), with `pool_size` instances for a pool.
    pub fn declared(pattern: karmem_contract::Pattern, pool_size: NonZeroUsize) -> Self {
        match pattern {
            karmem_contract::Pattern::Direct => Pattern::Direct,
            karmem_contract::Pattern::Fanout => Pattern::Fanout,
            karmem_contract::Pattern::Singleton => Pattern::Singleton,
            karmem_contract::Pattern::Pool => Pattern::Pool {
                instances: pool_size,
            },
        }
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
    /// The interface's package with version, e.g. `example:types@1.0.0`:
    /// its WIT package, else the module's KarmemIDL package.
    pub package: String,
    /// Interface name (KarmemIDL).
    pub name: String,
    /// Linking pattern.
    pub pattern: Pattern,
    /// Functions with ids and type hashes.
    pub functions: Vec<FunctionInfo>,
    /// Interface memories with this guest's placement.
    pub memories: Vec<MemoryInfo>,
    /// The WIT package (`namespace:name`), interface name and version;
    /// each empty when there is none (docs/ABI.md §5, ABI 0.2).
    pub wit_package: String,
    pub wit_interface: String,
    pub wit_version: String,
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

/// Makes a fresh exporter guest for a [`GuestPool`].
pub type GuestFactory = Arc<dyn Fn() -> Result<Guest> + Send + Sync>;

/// What a [`Pool`] needs to know about a member.
pub trait PoolMember {
    /// Whether the member can take more calls (it is not poisoned).
    fn usable(&self) -> bool;
}

impl PoolMember for Guest {
    fn usable(&self) -> bool {
        self.poisoned().is_none()
    }
}

/// N instances of one exporter, calls spread across them from any number of
/// threads. A member whose call failed is unusable (it is poisoned) and is
/// replaced by a fresh instance before its next call, so one bad request
/// does not shrink the pool.
pub struct Pool<T> {
    members: Vec<Mutex<Option<T>>>,
    factory: Arc<dyn Fn() -> Result<T> + Send + Sync>,
    next: AtomicUsize,
    replaced: AtomicU64,
}

/// The pool pattern over raw guests.
pub type GuestPool = Pool<Guest>;

impl<T> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.members.len())
            .field("replaced", &self.replaced.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: PoolMember> Pool<T> {
    /// Instantiates `size` members with `factory`.
    pub fn new(
        size: NonZeroUsize,
        factory: Arc<dyn Fn() -> Result<T> + Send + Sync>,
    ) -> Result<Self> {
        let members = (0..size.get())
            .map(|index| {
                factory()
                    .with_context(|| format!("failed to instantiate pool member {index}"))
                    .map(|member| Mutex::new(Some(member)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Pool {
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

    /// Runs `call` on an idle member (round robin from a rotating start;
    /// waits for the starting member when all are busy), replacing the
    /// member first if an earlier call left it unusable.
    pub fn with<R>(&self, call: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        let count = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count.max(1);
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
        let usable = member.as_ref().is_some_and(PoolMember::usable);
        if !usable {
            *member = None;
            *member = Some((self.factory)().context("failed to replace a failed pool member")?);
            self.replaced.fetch_add(1, Ordering::Relaxed);
        }
        call(member.as_mut().context("a pool member is missing")?)
    }

    /// Runs `visit` on every member in turn (waiting for busy ones), for
    /// inspection; a member that is missing after a failed replacement is
    /// skipped.
    pub fn for_each(&self, mut visit: impl FnMut(&mut T) -> Result<()>) -> Result<()> {
        for member in &self.members {
            let mut member = member
                .lock()
                .map_err(|_| anyhow!("a pool member's lock was poisoned"))?;
            if let Some(member) = member.as_mut() {
                visit(member)?;
            }
        }
        Ok(())
    }
}

impl Pool<Guest> {
    /// Calls `export` on an idle member (see [`Pool::with`]).
    pub fn call(&self, export: &str, params: &[Val]) -> Result<Vec<Val>> {
        self.with(|guest| guest.call(export, params))
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
