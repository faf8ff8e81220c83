//! One instantiated guest ([`Guest`]): its own wasmtime store, its limits
//! (per-call timeout, fuel, memory), guarded host access to its memory, and
//! calls that never take the host down.
//!
//! Containment: each guest has a private store, so a trap or a runaway loop
//! only ends that guest's call. After any failed call the guest is
//! *poisoned*: docs/ABI.md §7 says a trapped instance is unusable, so later
//! calls are refused instead of running on half-updated state.
//!
//! Leaves to `runtime` the engine, to `invoke` sessions with the Karmem ABI
//! and WASI, and to `compose` how guests are wired together.

use std::sync::Arc;
use std::time::Duration;

use crate::WasmtimeResultExt;
use anyhow::{Context, Result, anyhow, bail, ensure};
use wasmtime::{
    AsContext, AsContextMut, Caller, Instance, Linker, Memory, Store, StoreLimits,
    StoreLimitsBuilder, Trap, TypedFunc, Val, WasmParams, WasmResults,
};

use crate::runtime::{EpochTicker, LoadedModule, Runtime};
use crate::shared::{MemoryCore, MemoryLayout, RegionPlacement};

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
#[derive(Debug)]
pub struct GuestState {
    limits: StoreLimits,
    /// The windows asked for at instantiation: what host functions called
    /// from the start function are checked against, before `memory` is set.
    planned: MemoryLayout,
    memory: Option<Arc<MemoryCore>>,
    host_bytes_written: u64,
    host_bytes_read: u64,
}

impl GuestState {
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

/// An instantiated guest.
#[derive(Debug)]
pub struct Guest {
    store: Store<GuestState>,
    instance: Instance,
    memory: Option<Memory>,
    module: LoadedModule,
    limits: GuestLimits,
    tick: Duration,
    fuel_enabled: bool,
    poisoned: Option<String>,
    _ticker: Arc<EpochTicker>,
}

impl Guest {
    pub(crate) fn instantiate(
        runtime: &Runtime,
        linker: &Linker<GuestState>,
        module: &LoadedModule,
        options: &GuestOptions,
    ) -> Result<Self> {
        let fuel_enabled = runtime.config().fuel;
        ensure!(
            options.limits.fuel.is_none() || fuel_enabled,
            "a fuel limit needs a runtime built with fuel metering (`RuntimeConfig::fuel`)"
        );
        module
            .facts
            .check_layout(&options.layout, true)
            .context("cannot place the shared memories in this module")?;
        let mut limits = StoreLimitsBuilder::new().trap_on_grow_failure(false);
        if let Some(max) = options.limits.max_memory_bytes {
            limits = limits.memory_size(max);
        }
        let state = GuestState {
            limits: limits.build(),
            planned: options.layout.clone(),
            memory: None,
            host_bytes_written: 0,
            host_bytes_read: 0,
        };
        let mut store = Store::new(runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        let mut guest_budget = Budget {
            limits: &options.limits,
            tick: runtime.config().epoch_tick,
            fuel_enabled,
        };
        guest_budget.arm(&mut store)?;
        let (instance, consumed) = runtime.creator().with_layout(options.layout.clone(), || {
            linker.instantiate(&mut store, &module.module)
        })?;
        let instance = instance
            .into_anyhow()
            .context("failed to instantiate the module")?;
        // the message memory: `KarmemMemory` when exported, else `memory` (docs/ABI.md §2)
        let memory = instance.get_memory(&mut store, "KarmemMemory").or_else(|| instance.get_memory(&mut store, "memory"));
        let core = match consumed {
            Some(core) => Some(core),
            None => memory.and_then(|m| runtime.creator().lookup(m.data_ptr(&store))),
        };
        ensure!(
            options.layout.is_empty() || core.is_some(),
            "the module's memory was not created by the runtime, so its shared memories are not mapped"
        );
        store.data_mut().memory = core;
        Ok(Guest {
            store,
            instance,
            memory,
            module: module.clone(),
            limits: options.limits.clone(),
            tick: guest_budget.tick,
            fuel_enabled,
            poisoned: None,
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

    /// Current size of the exported `memory`, in bytes.
    pub fn memory_size(&self) -> Result<usize> {
        Ok(self.exported_memory()?.data_size(&self.store))
    }

    /// Maps a shared window into the live memory (the path a handshake takes
    /// once the guest has reported its region offsets). The window must lie
    /// in the current memory and overlap no other; the range's contents are
    /// replaced by the region's.
    pub fn map_shared(&mut self, placement: &RegionPlacement) -> Result<()> {
        let name = placement.region.name().to_owned();
        let core = self
            .store
            .data()
            .memory
            .clone()
            .context("the guest has no runtime-created memory to map shared memories into")?;
        // `&mut self` holds the store: no wasm runs and no host borrow of the
        // memory is live while the pages are replaced.
        map_window_checked(&core, &self.module.facts, placement)
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
        self.memory
            .context("the guest exports neither `KarmemMemory` nor a memory named `memory`")
    }
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
fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(tick.as_nanos().max(1)) + 1;
    u64::try_from(ticks).unwrap_or(NO_DEADLINE).min(NO_DEADLINE)
}

/// The guarded host write, shared by [`Guest::write_memory`] and host
/// functions ([`write_caller_memory`]).
fn guarded_write(
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

fn guarded_read(
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

fn check_range(store: &impl AsContext, memory: Memory, offset: u64, len: u64) -> Result<()> {
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
    let memory = caller
        .get_export("KarmemMemory")
        .or_else(|| caller.get_export("memory"))
        .and_then(|e| e.into_memory())
        .context("the calling guest exports neither `KarmemMemory` nor a memory named `memory`")?;
    guarded_write(caller, memory, offset, bytes)
}

/// For host functions: copies bytes out of the calling guest's memory.
pub fn read_caller_memory(
    caller: &mut Caller<'_, GuestState>,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    let memory = caller
        .get_export("KarmemMemory")
        .or_else(|| caller.get_export("memory"))
        .and_then(|e| e.into_memory())
        .context("the calling guest exports neither `KarmemMemory` nor a memory named `memory`")?;
    guarded_read(caller, memory, offset, buf)
}

/// Adds `placement` to the windows of `core` after checking that the module
/// (`facts`) can live with the new layout, then replaces the range's pages
/// with the region's. The caller holds the store, so no wasm runs on this
/// memory meanwhile. Shared by guests and sessions.
pub(crate) fn map_window_checked(
    core: &MemoryCore,
    facts: &crate::module::ModuleFacts,
    placement: &RegionPlacement,
) -> Result<()> {
    let mut layout = MemoryLayout::new(core.windows())?;
    layout.push(placement.clone())?;
    facts.check_layout(&layout, false)?;
    core.map_window(placement)
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
