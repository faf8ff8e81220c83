//! The custom wasmtime memory that lets a participant's single linear memory
//! contain windows onto shared memfds: [`WindowedMemoryCreator`] (installed
//! with `Config::with_host_memory`) and the `LinearMemory` it hands out.
//!
//! # How a layout reaches `new_memory`
//!
//! wasmtime does not tell `MemoryCreator::new_memory` which instance a memory
//! is for. The host therefore parks the layout in a *thread-local "next
//! layout" slot* ([`WindowedMemoryCreator::with_layout`]) right before it
//! instantiates on that thread; synchronous instantiation creates the
//! instance's defined memory on the calling thread, so the creator consumes
//! the slot there. The slot is per thread (concurrent instantiations on other
//! threads never see it), addressed to one creator (another engine's creator
//! on the same thread ignores it), consumed at most once (a second defined
//! memory is a plain one), and always cleared when instantiation returns or
//! unwinds. Async instantiation is not supported: the runtime never enables
//! it.
//!
//! Windows can also be mapped after instantiation ([`MemoryCore::map_window`]):
//! every memory the creator makes is registered by base address, so the host
//! finds it again from `Memory::data_ptr`. That is the path a handshake takes
//! once `KarmemInit` has reported region offsets.
//!
//! # Memory shape
//!
//! One anonymous `PROT_NONE` reservation of `reservation + guard` bytes (what
//! wasmtime asked for: compiled code elides bounds checks against it), the
//! accessible prefix made read-write, and each window `MAP_FIXED` over its
//! range from the region's memfd with the participant's protection. A wasm
//! store into a read-only window faults inside compiled code, which wasmtime
//! reports as a catchable out-of-bounds trap. Host-side writes there would
//! fault outside compiled code and kill the process, so the host API checks
//! every write against the windows ([`MemoryCore::check_host_access`]).
//!
//! Leaves to others: what the windows are (`super::region`), refusing modules
//! whose bulk-memory instructions could aim at a protected window
//! (`crate::module`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyhow::{Context, Result, anyhow, ensure};
use rustix::mm::{MapFlags, MprotectFlags, ProtFlags};
use wasmtime::{LinearMemory, MemoryCreator, MemoryType};

use super::region::{Access, MemoryLayout, RegionPlacement};

/// The state of one windowed linear memory, shared between wasmtime's boxed
/// `LinearMemory` and host-side handles. The mapping lives until the last
/// handle drops.
#[derive(Debug)]
pub struct MemoryCore {
    /// Start of the reservation (never moves).
    base: usize,
    /// Bytes reserved, guard included; what `munmap` releases.
    mapping_len: usize,
    /// Bytes the memory may grow to without moving.
    capacity: usize,
    /// Bytes currently accessible to wasm.
    size: AtomicUsize,
    windows: Mutex<Vec<RegionPlacement>>,
}

impl MemoryCore {
    fn reserve(minimum: usize, capacity: usize, guard: usize) -> Result<Self> {
        ensure!(
            minimum <= capacity,
            "memory minimum of {minimum} bytes exceeds its reservation of {capacity} bytes"
        );
        let mapping_len = capacity
            .checked_add(guard)
            .context("memory reservation plus guard overflows")?;
        ensure!(mapping_len > 0, "cannot reserve an empty memory");
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // it aliases nothing. `NORESERVE` keeps the untouched reservation from
        // counting against commit limits.
        let base = unsafe {
            rustix::mm::mmap_anonymous(
                ptr::null_mut(),
                mapping_len,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }
        .with_context(|| format!("failed to reserve {mapping_len} bytes for a linear memory"))?;
        let core = MemoryCore {
            base: base as usize,
            mapping_len,
            capacity,
            size: AtomicUsize::new(0),
            windows: Mutex::new(Vec::new()),
        };
        core.make_accessible(0, minimum)?;
        core.size.store(minimum, Ordering::Release);
        Ok(core)
    }

    /// Base address of the linear memory.
    pub fn base(&self) -> *mut u8 {
        self.base as *mut u8
    }

    /// Accessible bytes.
    pub fn byte_size(&self) -> usize {
        self.size.load(Ordering::Acquire)
    }

    /// The windows mapped so far, in mapping order.
    pub fn windows(&self) -> Vec<RegionPlacement> {
        self.windows.lock().map(|w| w.clone()).unwrap_or_default()
    }

    fn make_accessible(&self, from: usize, to: usize) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        ensure!(
            to <= self.capacity,
            "growing to {to} bytes exceeds the reservation"
        );
        // SAFETY: `[base + from, base + to)` lies inside our own reservation
        // (`to <= capacity <= mapping_len`), which only this memory owns; the
        // range is past the current size, so no window and no live data is in
        // it and turning it from PROT_NONE to read-write invalidates nothing.
        unsafe {
            rustix::mm::mprotect(
                (self.base + from) as *mut c_void,
                to - from,
                MprotectFlags::READ | MprotectFlags::WRITE,
            )
        }
        .with_context(|| format!("failed to make bytes {from:#x}..{to:#x} accessible"))
    }

    fn grow(&self, new_size: usize) -> Result<()> {
        let old = self.byte_size();
        ensure!(
            new_size <= self.capacity,
            "cannot grow a linear memory to {new_size} bytes: its reservation is {} bytes",
            self.capacity
        );
        self.make_accessible(old, new_size)?;
        if new_size > old {
            self.size.store(new_size, Ordering::Release);
        }
        Ok(())
    }

    /// Maps `placement`'s region over its window with its access. The window
    /// must lie inside the accessible memory and overlap no other window.
    ///
    /// Whatever the participant had stored in that range is replaced by the
    /// region's contents. Crate-private: callers hold the memory's store
    /// exclusively (`&mut Guest`, or instantiation in progress), so no wasm
    /// runs on it and no borrow of its bytes is live.
    pub(crate) fn map_window(&self, placement: &RegionPlacement) -> Result<()> {
        let name = placement.region.name();
        let mut windows = self
            .windows
            .lock()
            .map_err(|_| anyhow!("the window list of a linear memory was poisoned"))?;
        // Re-validate through a layout so the rules live in one place.
        let mut layout = MemoryLayout::new(windows.clone())?;
        layout.push(placement.clone())?;
        let size = self.byte_size() as u64;
        ensure!(
            placement.end() <= size,
            "shared memory `{name}` at {:#x}..{:#x} lies outside the linear memory's {size} accessible bytes",
            placement.offset,
            placement.end()
        );
        let offset = usize::try_from(placement.offset)?;
        let len = usize::try_from(placement.byte_len())?;
        let prot = match placement.access {
            Access::None => ProtFlags::empty(),
            Access::Read => ProtFlags::READ,
            Access::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        };
        // SAFETY: the target `[base + offset, base + offset + len)` is inside
        // this memory's accessible range (checked above), owned by this
        // memory, and disjoint from every other window. `MAP_FIXED` replaces
        // exactly those pages; the caller guarantees no borrow of them is
        // live. The fd is a memfd at least `len` bytes long (its size is the
        // region's page count, which the placement must equal).
        let mapped = unsafe {
            rustix::mm::mmap(
                (self.base + offset) as *mut c_void,
                len,
                prot,
                MapFlags::SHARED | MapFlags::FIXED,
                placement.region.fd(),
                0,
            )
        }
        .with_context(|| format!("failed to map shared memory `{name}`"))?;
        ensure!(
            mapped as usize == self.base + offset,
            "the kernel placed shared memory `{name}` at the wrong address"
        );
        windows.push(placement.clone());
        Ok(())
    }

    /// Refuses host access to `[start, start + len)` that would touch a
    /// window it may not: writes into anything but a read-write window, reads
    /// from an inaccessible one. Such an access would fault outside compiled
    /// code and take the whole process down.
    pub fn check_host_access(&self, start: u64, len: u64, write: bool) -> Result<()> {
        let windows = self
            .windows
            .lock()
            .map_err(|_| anyhow!("the window list of a linear memory was poisoned"))?;
        super::region::check_host_access(&windows, start, len, write)
    }
}

impl Drop for MemoryCore {
    fn drop(&mut self) {
        // SAFETY: `base..base + mapping_len` is the reservation made in
        // `reserve` (windows were mapped inside it); the last handle is being
        // dropped, so wasmtime no longer uses the memory and no host borrow
        // of it can exist. An error here cannot be reported; the range stays
        // reserved, which leaks address space but is not unsound.
        let _ = unsafe { rustix::mm::munmap(self.base as *mut c_void, self.mapping_len) };
    }
}

type Registry = Mutex<HashMap<usize, Weak<MemoryCore>>>;

/// What wasmtime owns: a handle on the core that deregisters itself.
struct WindowedMemory {
    core: Arc<MemoryCore>,
    registry: Weak<Registry>,
}

// SAFETY: `as_ptr` never changes and the `capacity` bytes after it (plus the
// guard wasmtime asked for) stay reserved for the memory's whole life;
// `byte_size` bytes are readable and writable by wasm except inside windows,
// whose protection is the point of this memory (wasm faults there become
// traps); growth only changes protection past the old size.
unsafe impl LinearMemory for WindowedMemory {
    fn byte_size(&self) -> usize {
        self.core.byte_size()
    }

    fn byte_capacity(&self) -> usize {
        self.core.capacity
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        self.core
            .grow(new_size)
            .map_err(|e| wasmtime::Error::msg(format!("{e:#}")))
    }

    fn as_ptr(&self) -> *mut u8 {
        self.core.base()
    }
}

impl Drop for WindowedMemory {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade()
            && let Ok(mut map) = registry.lock()
        {
            map.remove(&self.core.base);
        }
    }
}

thread_local! {
    /// The "next layout" slot; see the module docs.
    static NEXT_LAYOUT: RefCell<Option<PendingLayout>> = const { RefCell::new(None) };
}

struct PendingLayout {
    creator: u64,
    layout: MemoryLayout,
    outcome: Option<Result<Arc<MemoryCore>, String>>,
}

/// Clears the slot even if instantiation unwinds.
struct SlotGuard;

impl Drop for SlotGuard {
    fn drop(&mut self) {
        NEXT_LAYOUT.with(|slot| slot.borrow_mut().take());
    }
}

static NEXT_CREATOR_ID: AtomicU64 = AtomicU64::new(1);

/// The `MemoryCreator` of every runtime engine. Memories without a pending
/// layout are plain private memories with the same shape.
#[derive(Debug)]
pub struct WindowedMemoryCreator {
    id: u64,
    registry: Arc<Registry>,
}

impl Default for WindowedMemoryCreator {
    fn default() -> Self {
        WindowedMemoryCreator {
            id: NEXT_CREATOR_ID.fetch_add(1, Ordering::Relaxed),
            registry: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl WindowedMemoryCreator {
    /// Runs `instantiate` with `layout` parked in this thread's slot and
    /// returns its result together with the memory that consumed the layout
    /// (`None` if no memory was created, e.g. the module imports its memory).
    pub(crate) fn with_layout<R>(
        &self,
        layout: MemoryLayout,
        instantiate: impl FnOnce() -> R,
    ) -> Result<(R, Option<Arc<MemoryCore>>)> {
        let occupied = NEXT_LAYOUT.with(|slot| slot.borrow().is_some());
        ensure!(
            !occupied,
            "a layout is already pending on this thread (nested instantiation with shared memories)"
        );
        NEXT_LAYOUT.with(|slot| {
            *slot.borrow_mut() = Some(PendingLayout {
                creator: self.id,
                layout,
                outcome: None,
            });
        });
        let guard = SlotGuard;
        let result = instantiate();
        let pending = NEXT_LAYOUT.with(|slot| slot.borrow_mut().take());
        drop(guard);
        let core = match pending.and_then(|p| p.outcome) {
            Some(Ok(core)) => Some(core),
            // The creator's error already failed instantiation; `result`
            // carries it.
            Some(Err(_)) | None => None,
        };
        Ok((result, core))
    }

    /// Finds the memory this creator made at `base` (from `Memory::data_ptr`).
    pub(crate) fn lookup(&self, base: *mut u8) -> Option<Arc<MemoryCore>> {
        let map = self.registry.lock().ok()?;
        map.get(&(base as usize)).and_then(Weak::upgrade)
    }

    fn create(
        &self,
        ty: &MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved: Option<usize>,
        guard: usize,
    ) -> Result<Arc<MemoryCore>> {
        ensure!(
            !ty.is_64(),
            "64-bit memories are not supported by the karmem runtime"
        );
        ensure!(
            !ty.is_shared(),
            "threads' shared memories are not supported by the karmem runtime"
        );
        ensure!(
            ty.page_size() == super::region::WASM_PAGE_SIZE,
            "custom page sizes are not supported by the karmem runtime"
        );
        let capacity = reserved.or(maximum).unwrap_or(minimum).max(minimum);
        let layout = NEXT_LAYOUT.with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_mut() {
                Some(pending) if pending.creator == self.id && pending.outcome.is_none() => {
                    Some(pending.layout.clone())
                }
                _ => None,
            }
        });
        let core = Arc::new(MemoryCore::reserve(minimum, capacity, guard)?);
        let mapped = match &layout {
            Some(layout) => layout
                .placements()
                .iter()
                .try_for_each(|p| core.map_window(p)),
            None => Ok(()),
        };
        if layout.is_some() {
            NEXT_LAYOUT.with(|slot| {
                if let Some(pending) = slot.borrow_mut().as_mut() {
                    pending.outcome = Some(match &mapped {
                        Ok(()) => Ok(Arc::clone(&core)),
                        Err(e) => Err(format!("{e:#}")),
                    });
                }
            });
        }
        mapped?;
        self.registry
            .lock()
            .map_err(|_| anyhow!("the memory registry was poisoned"))?
            .insert(core.base, Arc::downgrade(&core));
        Ok(core)
    }
}

// SAFETY: every memory returned satisfies `LinearMemory`'s contract (see the
// impl above): reserved for `reserved + guard` bytes when wasmtime asks for a
// reservation, zero-filled outside windows, never moved.
unsafe impl MemoryCreator for WindowedMemoryCreator {
    fn new_memory(
        &self,
        ty: MemoryType,
        minimum: usize,
        maximum: Option<usize>,
        reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let core = self
            .create(
                &ty,
                minimum,
                maximum,
                reserved_size_in_bytes,
                guard_size_in_bytes,
            )
            .map_err(|e| format!("{e:#}"))?;
        Ok(Box::new(WindowedMemory {
            core,
            registry: Arc::downgrade(&self.registry),
        }))
    }
}
