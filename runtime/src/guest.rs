//! The runtime's one instance type, [`Guest`]: one instantiated module in
//! its own wasmtime store, with its limits (per-call timeout, fuel,
//! memory), guarded host access to its message memory, shared windows mapped
//! at creation or later, and calls that never take the host down.
//!
//! Containment: each guest has a private store, so a trap or a runaway loop
//! only ends that guest's call. After any failed call the guest is
//! *poisoned*: docs/ABI.md §7 says a trapped instance is unusable, so later
//! calls are refused instead of running on half-updated state. Every call,
//! by core values or through the Karmem ABI, goes through [`Guest::call`] or
//! [`Guest::call_typed`], so the budget and the poisoning are armed and
//! settled in one place.
//!
//! Owns: the store data ([`GuestState`]: limits, windows, byte counters and
//! the WASI preview1 context), instantiation, poisoning, deadlines and fuel,
//! memory access for the host and for host functions, shared mapping.
//!
//! Leaves to `runtime` the engine, to `invoke` what a guest with the Karmem
//! ABI adds (its handshake, value calls, served imports and links: the
//! `Session` face of the same type), and to `compose` how guests are wired
//! together.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::WasmtimeResultExt;
use anyhow::{Context, Result, anyhow, bail, ensure};
use karmem_contract::MESSAGE_MEMORY;
use wasmtime::{
    AsContext, AsContextMut, Caller, Instance, Linker, Memory, Store, StoreLimits,
    StoreLimitsBuilder, Trap, TypedFunc, Val, WasmParams, WasmResults,
};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::handshake::ModuleAbi;
use crate::invoke::LinkedSession;
use crate::link::GuestInterfaces;
use crate::runtime::{EpochTicker, LoadedModule, Runtime};
use crate::shared::{MemoryCore, MemoryLayout, RegionPlacement, SharedRegion};

/// Limits applied to one guest.
#[derive(Debug, Clone, Default)]
pub struct GuestLimits {
    /// Wall-clock budget of each call (and of instantiation, which may run a
    /// start function). Enforced at the epoch tick's granularity: a call is
    /// stopped after at least this long and at most one tick more.
    pub timeout: Option<Duration>,
    /// Fuel budget of each call. Needs a runtime built with
    /// [`crate::RuntimeConfig::fuel`].
    pub fuel: Option<u64>,
    /// Maximum linear-memory size in bytes; `memory.grow` past it returns -1
    /// and an initial size past it fails instantiation.
    pub max_memory_bytes: Option<usize>,
}

/// How to instantiate a guest.
#[derive(Debug, Clone, Default)]
pub struct GuestOptions {
    /// Shared windows mapped while the memory is created (before data
    /// segments and the start function).
    pub layout: MemoryLayout,
    /// The guest's limits.
    pub limits: GuestLimits,
}

/// Store data of every guest; host functions see it through `Caller`.
pub struct GuestState {
    limits: StoreLimits,
    /// The windows asked for at instantiation: what host functions called
    /// from the start function are checked against, before `memory` is set.
    planned: MemoryLayout,
    memory: Option<Arc<MemoryCore>>,
    host_bytes_written: u64,
    host_bytes_read: u64,
    /// WASI preview1: the session's context, or an empty one made the first
    /// time a linker that serves WASI asks for it.
    wasi: Option<WasiP1Ctx>,
}

impl fmt::Debug for GuestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestState")
            .field("planned", &self.planned)
            .field("memory", &self.memory)
            .field("host_bytes_written", &self.host_bytes_written)
            .field("host_bytes_read", &self.host_bytes_read)
            .field("wasi", &self.wasi.is_some())
            .finish_non_exhaustive()
    }
}

impl GuestState {
    /// The WASI preview1 context (for `wasmtime_wasi::p1::add_to_linker_sync`).
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        self.wasi
            .get_or_insert_with(|| wasmtime_wasi::WasiCtxBuilder::new().build_p1())
    }

    /// The shared window that holds `len > 0` bytes at `offset` whole.
    pub(crate) fn window_holding(&self, offset: u64, len: u32) -> Option<RegionPlacement> {
        let end = offset.checked_add(u64::from(len))?;
        self.memory.as_ref().and_then(|core| {
            core.windows()
                .into_iter()
                .find(|w| len > 0 && w.offset <= offset && end <= w.end())
        })
    }

    /// Bytes the host has copied into this guest's memory.
    pub fn host_bytes_written(&self) -> u64 {
        self.host_bytes_written
    }

    /// Bytes the host has copied out of this guest's memory.
    pub fn host_bytes_read(&self) -> u64 {
        self.host_bytes_read
    }
}

/// Why a call failed, for hosts that react differently to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The per-call timeout expired.
    Timeout,
    /// The per-call fuel ran out.
    OutOfFuel,
    /// A load or store outside what the guest may touch, including a store
    /// into a read-only shared memory.
    MemoryAccess,
    /// Any other trap (`unreachable`, division by zero, ...).
    Trap(Trap),
    /// Not a trap: a host function's error, a refused call, a link error.
    Host,
}

impl Failure {
    /// Classifies an error returned by [`Guest`] calls.
    pub fn of(error: &anyhow::Error) -> Self {
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Failure::Timeout,
            Some(Trap::OutOfFuel) => Failure::OutOfFuel,
            Some(Trap::MemoryOutOfBounds) => Failure::MemoryAccess,
            Some(trap) => Failure::Trap(*trap),
            None => Failure::Host,
        }
    }
}

/// An epoch deadline far enough away to never fire, small enough that
/// wasmtime's `current + delta` cannot overflow.
const NO_DEADLINE: u64 = u64::MAX / 2;

/// An instantiated module: a plain guest ([`crate::Runtime::instantiate`],
/// imports from the host's linker) or one with the Karmem ABI and WASI
/// ([`crate::invoke::Session`], the same type: its imports served by host
/// functions and other guests, its handshake run).
pub struct Guest {
    store: Store<GuestState>,
    instance: Instance,
    /// The message memory (docs/ABI.md §2): `KarmemMemory`, else `memory`.
    memory: Option<Memory>,
    module: LoadedModule,
    limits: GuestLimits,
    tick: Duration,
    fuel_enabled: bool,
    poisoned: Option<String>,
    /// Karmem ABI: the module's sections (`None` for a plain module).
    pub(crate) abi: Option<Arc<ModuleAbi>>,
    /// Karmem ABI: what the handshake found (empty without it).
    pub(crate) interfaces: GuestInterfaces,
    /// Karmem ABI: the guests serving each imported interface.
    pub(crate) linked: BTreeMap<String, Vec<LinkedSession>>,
    _ticker: Arc<EpochTicker>,
}

impl fmt::Debug for Guest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guest")
            .field("state", self.store.data())
            .field("poisoned", &self.poisoned)
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

impl Guest {
    pub(crate) fn instantiate(
        runtime: &Runtime,
        linker: &Linker<GuestState>,
        module: &LoadedModule,
        options: &GuestOptions,
    ) -> Result<Self> {
        Guest::create(runtime, linker, module, &options.layout, &options.limits, None)
    }

    /// Instantiates `module` through `linker` with `layout`'s windows mapped
    /// while its memory is created, under `limits`, with `wasi` as its WASI
    /// context (or none until a linker asks for one).
    pub(crate) fn create(
        runtime: &Runtime,
        linker: &Linker<GuestState>,
        module: &LoadedModule,
        layout: &MemoryLayout,
        limits: &GuestLimits,
        wasi: Option<WasiP1Ctx>,
    ) -> Result<Self> {
        let fuel_enabled = runtime.config().fuel;
        ensure!(
            limits.fuel.is_none() || fuel_enabled,
            "a fuel limit needs a runtime built with fuel metering (`RuntimeConfig::fuel`)"
        );
        module
            .facts
            .check_layout(layout, true)
            .context("cannot place the shared memories in this module")?;
        let mut store_limits = StoreLimitsBuilder::new().trap_on_grow_failure(false);
        if let Some(max) = limits.max_memory_bytes {
            store_limits = store_limits.memory_size(max);
        }
        let state = GuestState {
            limits: store_limits.build(),
            planned: layout.clone(),
            memory: None,
            host_bytes_written: 0,
            host_bytes_read: 0,
            wasi,
        };
        let mut store = Store::new(runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        let tick = runtime.config().epoch_tick;
        Budget { limits, tick, fuel_enabled }.arm(&mut store)?;
        // Without windows there is nothing to hand the memory creator: the
        // memory is found by its address below. That also lets a start
        // function's import instantiate another guest (a pool member, say)
        // on this thread.
        let (instance, consumed) = if layout.is_empty() {
            (linker.instantiate(&mut store, &module.module), None)
        } else {
            runtime
                .creator()
                .with_layout(layout.clone(), || linker.instantiate(&mut store, &module.module))?
        };
        let instance = instance
            .into_anyhow()
            .context("failed to instantiate the module")?;
        let memory = message_memory(|name| instance.get_memory(&mut store, name));
        let core = match consumed {
            Some(core) => Some(core),
            None => memory.and_then(|m| runtime.creator().lookup(m.data_ptr(&store))),
        };
        ensure!(
            layout.is_empty() || core.is_some(),
            "the module's memory was not created by the runtime, so its shared memories are not mapped"
        );
        store.data_mut().memory = core;
        Ok(Guest {
            store,
            instance,
            memory,
            module: module.clone(),
            limits: limits.clone(),
            tick,
            fuel_enabled,
            poisoned: None,
            abi: None,
            interfaces: GuestInterfaces::default(),
            linked: BTreeMap::new(),
            _ticker: runtime.ticker(),
        })
    }

    /// The wasmtime instance (exports, for the handshake and linking layers).
    pub fn instance(&self) -> Instance {
        self.instance
    }

    /// The module this guest runs.
    pub fn module(&self) -> &LoadedModule {
        &self.module
    }

    /// The store's data (byte counters).
    pub fn state(&self) -> &GuestState {
        self.store.data()
    }

    /// Bytes the host has copied into this guest's memory.
    pub fn host_bytes_written(&self) -> u64 {
        self.store.data().host_bytes_written
    }

    /// Bytes the host has copied out of this guest's memory.
    pub fn host_bytes_read(&self) -> u64 {
        self.store.data().host_bytes_read
    }

    /// Why the guest refuses calls, if a previous call failed.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// Fuel left after the last call (`None` without fuel metering).
    pub fn fuel_left(&self) -> Option<u64> {
        if self.fuel_enabled {
            self.store.get_fuel().ok()
        } else {
            None
        }
    }

    /// The shared windows mapped into this guest's memory.
    pub fn windows(&self) -> Vec<RegionPlacement> {
        self.store
            .data()
            .memory
            .as_ref()
            .map(|core| core.windows())
            .unwrap_or_default()
    }

    /// The window onto `region`, if mapped.
    pub fn window_of(&self, region: &Arc<SharedRegion>) -> Option<RegionPlacement> {
        self.windows()
            .into_iter()
            .find(|w| Arc::ptr_eq(&w.region, region))
    }

    /// Current size of the message memory (`KarmemMemory`, else `memory`),
    /// in bytes.
    pub fn memory_size(&self) -> Result<usize> {
        Ok(self.exported_memory()?.data_size(&self.store))
    }

    /// Maps a shared window into the live memory: the path a handshake
    /// takes once the guest has reported its region offsets (see
    /// [`crate::link::MemoryInfo::placement`]). The window must lie in the
    /// current memory and overlap no other, and the module must be able to
    /// live with it (`crate::module`); the range's contents are replaced by
    /// the region's.
    pub fn map_shared(&mut self, placement: &RegionPlacement) -> Result<()> {
        let name = placement.region.name().to_owned();
        let core = self
            .store
            .data()
            .memory
            .clone()
            .context("the guest's memory was not created by the runtime, so shared memories cannot be mapped")?;
        let mut layout = MemoryLayout::new(core.windows())?;
        // `&mut self` holds the store: no wasm runs and no host borrow of the
        // memory is live while the pages are replaced.
        layout
            .push(placement.clone())
            .and_then(|()| self.module.facts.check_layout(&layout, false))
            .and_then(|()| core.map_window(placement))
            .with_context(|| format!("cannot map shared memory `{name}` into this guest"))
    }

    /// Copies `bytes` into the guest's memory at `offset`. Refused (not a
    /// crash) when the range is out of bounds or touches a window the guest
    /// may not write.
    pub fn write_memory(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let memory = self.exported_memory()?;
        guarded_write(&mut self.store, memory, offset, bytes)
    }

    /// Copies `buf.len()` bytes out of the guest's memory at `offset`.
    pub fn read_memory(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let memory = self.exported_memory()?;
        guarded_read(&mut self.store, memory, offset, buf)
    }

    /// Whether the module exports a function `name`.
    pub fn has_export(&self, name: &str) -> bool {
        self.module
            .module()
            .get_export(name)
            .is_some_and(|ty| ty.func().is_some())
    }

    /// Calls export `name` with dynamically typed values.
    pub fn call(&mut self, name: &str, params: &[Val]) -> Result<Vec<Val>> {
        self.check_usable(name)?;
        let func = self
            .instance
            .get_func(&mut self.store, name)
            .with_context(|| format!("the guest has no exported function `{name}`"))?;
        let ty = func.ty(&self.store);
        let mut results: Vec<Val> = ty
            .results()
            .map(|t| Val::default_for_ty(&t).unwrap_or(Val::I32(0)))
            .collect();
        self.arm()?;
        let outcome = func.call(&mut self.store, params, &mut results);
        self.settle(name, outcome.into_anyhow())?;
        Ok(results)
    }

    /// Looks up a typed export once, for hot loops.
    pub fn typed_func<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
    ) -> Result<TypedFunc<P, R>> {
        self.instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .into_anyhow()
            .with_context(|| format!("failed to find export `{name}` with the expected type"))
    }

    /// Calls a typed export found with [`Guest::typed_func`].
    pub fn call_typed<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &str,
        func: &TypedFunc<P, R>,
        params: P,
    ) -> Result<R> {
        self.check_usable(name)?;
        self.arm()?;
        let outcome = func.call(&mut self.store, params);
        self.settle(name, outcome.into_anyhow())
    }

    fn check_usable(&self, name: &str) -> Result<()> {
        match &self.poisoned {
            Some(reason) => bail!(
                "refusing to call `{name}`: the guest is unusable after an earlier failure ({reason})"
            ),
            None => Ok(()),
        }
    }

    fn arm(&mut self) -> Result<()> {
        Budget {
            limits: &self.limits,
            tick: self.tick,
            fuel_enabled: self.fuel_enabled,
        }
        .arm(&mut self.store)
    }

    fn settle<T>(&mut self, name: &str, outcome: Result<T>) -> Result<T> {
        match outcome {
            Ok(value) => Ok(value),
            Err(error) => {
                let failure = Failure::of(&error);
                self.poisoned = Some(format!("`{name}` failed: {failure:?}"));
                Err(error.context(format!("call to `{name}` failed")))
            }
        }
    }

    fn exported_memory(&self) -> Result<Memory> {
        self.memory.with_context(no_message_memory)
    }
}

/// The message memory (docs/ABI.md §2), found by export name in the
/// contract's order.
fn message_memory(mut find: impl FnMut(&str) -> Option<Memory>) -> Option<Memory> {
    MESSAGE_MEMORY.into_iter().find_map(&mut find)
}

fn no_message_memory() -> String {
    let [edge, main] = MESSAGE_MEMORY;
    format!("the guest exports neither `{edge}` nor a memory named `{main}`")
}

/// Per-call budget: epoch deadline and fuel.
struct Budget<'a> {
    limits: &'a GuestLimits,
    tick: Duration,
    fuel_enabled: bool,
}

impl Budget<'_> {
    fn arm(&mut self, mut store: impl AsContextMut) -> Result<()> {
        let mut store = store.as_context_mut();
        let ticks = match self.limits.timeout {
            Some(timeout) => deadline_ticks(timeout, self.tick),
            None => NO_DEADLINE,
        };
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        if self.fuel_enabled {
            store
                .set_fuel(self.limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| anyhow!("failed to set the guest's fuel: {e}"))?;
        }
        Ok(())
    }
}

/// Ticks for at least `timeout`: the next tick may come right after the
/// deadline is set, so one more than `timeout / tick` rounded up.
/// Every guest's deadline is set here, through [`Budget::arm`].
fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(tick.as_nanos().max(1)) + 1;
    u64::try_from(ticks).unwrap_or(NO_DEADLINE).min(NO_DEADLINE)
}

/// The guarded host write, shared by [`Guest::write_memory`] and host
/// functions ([`write_caller_memory`], the serving of Karmem imports): out of
/// bounds or aimed at a window the guest may not write is an error, never a
/// fault in host code.
pub(crate) fn guarded_write(
    mut store: impl AsContextMut<Data = GuestState>,
    memory: Memory,
    offset: u64,
    bytes: &[u8],
) -> Result<()> {
    let mut ctx = store.as_context_mut();
    let len = bytes.len() as u64;
    check_range(&ctx, memory, offset, len)?;
    match &ctx.data().memory {
        Some(core) => core.check_host_access(offset, len, true)?,
        None => ctx.data().planned.check_host_access(offset, len, true)?,
    }
    let start = usize::try_from(offset)?;
    memory
        .write(&mut ctx, start, bytes)
        .with_context(|| format!("host write of {len} bytes at {offset:#x} is out of bounds"))?;
    ctx.data_mut().host_bytes_written += len;
    Ok(())
}

/// The guarded host read, as [`guarded_write`].
pub(crate) fn guarded_read(
    mut store: impl AsContextMut<Data = GuestState>,
    memory: Memory,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    let mut ctx = store.as_context_mut();
    let len = buf.len() as u64;
    check_range(&ctx, memory, offset, len)?;
    match &ctx.data().memory {
        Some(core) => core.check_host_access(offset, len, false)?,
        None => ctx.data().planned.check_host_access(offset, len, false)?,
    }
    let start = usize::try_from(offset)?;
    memory
        .read(&ctx, start, buf)
        .with_context(|| format!("host read of {len} bytes at {offset:#x} is out of bounds"))?;
    ctx.data_mut().host_bytes_read += len;
    Ok(())
}

/// Checks `len` bytes at `offset` against `memory`'s current size.
pub(crate) fn check_range(store: &impl AsContext, memory: Memory, offset: u64, len: u64) -> Result<()> {
    let size = memory.data_size(store) as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => bail!(
            "host access of {len} bytes at {offset:#x} is outside the guest's {size} bytes of memory"
        ),
    }
}

/// For host functions: copies `bytes` into the calling guest's message
/// memory (`KarmemMemory`, else `memory`), with the same guards as [`Guest::write_memory`].
pub fn write_caller_memory(
    caller: &mut Caller<'_, GuestState>,
    offset: u64,
    bytes: &[u8],
) -> Result<()> {
    let memory = caller_memory(caller)?;
    guarded_write(caller, memory, offset, bytes)
}

/// For host functions: copies bytes out of the calling guest's message memory.
pub fn read_caller_memory(
    caller: &mut Caller<'_, GuestState>,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    let memory = caller_memory(caller)?;
    guarded_read(caller, memory, offset, buf)
}

/// The calling guest's message memory (docs/ABI.md §2).
pub(crate) fn caller_memory(caller: &mut Caller<'_, GuestState>) -> Result<Memory> {
    message_memory(|name| caller.get_export(name).and_then(|e| e.into_memory()))
        .with_context(no_message_memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_covers_the_timeout() {
        let tick = Duration::from_millis(5);
        assert_eq!(deadline_ticks(Duration::from_millis(5), tick), 2);
        assert_eq!(deadline_ticks(Duration::from_millis(6), tick), 3);
        assert_eq!(deadline_ticks(Duration::ZERO, tick), 1);
        assert_eq!(
            deadline_ticks(Duration::MAX, Duration::from_nanos(1)),
            NO_DEADLINE
        );
    }
}
