//! The host's own view of an interface memory: the region's memfd mapped
//! read-write into the host process once ([`HostMapping`]), and builders that
//! write a message straight into it ([`SharedRegion::builder`]): no heap
//! buffer, no copy and no syscall per message (the mapping is made once per
//! region). The pages are the ones every guest window maps, so a guest sees
//! the message as the builder writes it.

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result, bail, ensure};
use karmem_format::{Builder, PlacedBytes};

use super::region::SharedRegion;

/// The alignment a message start needs (SoA columns are 64-byte aligned
/// relative to it, docs/FORMAT.md).
const MESSAGE_ALIGN: u64 = 64;

/// A read-write `MAP_SHARED` mapping of a whole region in the host.
#[derive(Debug)]
pub(crate) struct HostMapping {
    addr: usize,
    len: usize,
}

impl HostMapping {
    fn map(region: &SharedRegion) -> Result<HostMapping> {
        let len = usize::try_from(region.byte_len())
            .context("the region does not fit the host's address space")?;
        // SAFETY: a fresh mapping at an address the kernel picks (no
        // MAP_FIXED), of the memfd's `len` bytes (its size is the region's);
        // nothing is replaced.
        let addr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::SHARED,
                region.fd(),
                0,
            )
        }
        .with_context(|| {
            format!(
                "failed to map shared memory `{}` into the host",
                region.name()
            )
        })?;
        Ok(HostMapping {
            addr: addr as usize,
            len,
        })
    }
}

impl Drop for HostMapping {
    fn drop(&mut self) {
        // SAFETY: `addr..addr + len` is the mapping made in `map`; it is
        // dropped with its region, after the last `RegionWriter` (each holds
        // an `Arc` of the region), so no builder still points into it. An
        // error cannot be reported; the pages stay mapped (a leak, not UB).
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut c_void, self.len) };
    }
}

/// What a placed [`Builder`] owns: a range of the host mapping, and the
/// region's writer flag, released on drop.
struct RegionWriter {
    region: Arc<SharedRegion>,
    start: usize,
    capacity: usize,
}

// SAFETY: `start..start + capacity` lies inside the host mapping (checked in
// `SharedRegion::builder`), which lives as long as the region this value
// holds; it is 64-byte aligned (mapping starts are page-aligned, offsets are
// checked); the writer flag admits one writer per region, and the caller of
// `SharedRegion::builder` promised that nothing else touches the range while
// the builder uses it.
unsafe impl PlacedBytes for RegionWriter {
    fn start(&self) -> *mut u8 {
        std::ptr::with_exposed_provenance_mut(self.start)
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Drop for RegionWriter {
    fn drop(&mut self) {
        self.region.host_writer.store(false, Ordering::Release);
    }
}

impl SharedRegion {
    /// A [`Builder`] that writes messages in place at `offset` of this
    /// region (at most `capacity` bytes each; an allocation past them fails
    /// with `TooLarge`). The host maps the region once, at the first call.
    /// Every guest that maps the region sees the bytes as they are written,
    /// so its export can take a message (`offset`, `builder.len()`) as soon
    /// as it is built; `reset` starts the next one in the same place. One
    /// builder per region at a time (the next waits for this one's drop).
    ///
    /// # Safety
    /// The builder writes `[offset, offset + capacity)` of the region while
    /// one of its methods runs, and [`Builder::as_bytes`] lends it out. While
    /// a builder method runs or a reference it lent is alive, no guest that
    /// maps the region may run (on any thread) and no host code may use
    /// [`SharedRegion::write`] on that range. Between builder calls guests may
    /// read the message (the usual shape: build, call the guests, reset,
    /// build the next one on the same thread).
    pub unsafe fn builder(self: &Arc<Self>, offset: u64, capacity: u64) -> Result<Builder> {
        ensure!(
            offset.is_multiple_of(MESSAGE_ALIGN),
            "a message in shared memory `{}` must start at a multiple of {MESSAGE_ALIGN} bytes, not {offset:#x}",
            self.name()
        );
        match offset.checked_add(capacity) {
            Some(end) if end <= self.byte_len() => {}
            _ => bail!(
                "{capacity} bytes at {offset:#x} are outside shared memory `{}` ({} bytes)",
                self.name(),
                self.byte_len()
            ),
        }
        if self.host_writer.swap(true, Ordering::Acquire) {
            bail!(
                "shared memory `{}` already has a host builder writing into it",
                self.name()
            );
        }
        let mapping = match self.host_mapping.get() {
            Some(mapping) => mapping,
            None => match HostMapping::map(self) {
                Ok(mapping) => self.host_mapping.get_or_init(|| mapping),
                Err(err) => {
                    self.host_writer.store(false, Ordering::Release);
                    return Err(err);
                }
            },
        };
        // In range of the mapping: checked against the region's size above.
        let start = mapping.addr + offset as usize;
        let writer = RegionWriter {
            region: Arc::clone(self),
            start,
            capacity: capacity as usize,
        };
        Builder::placed(Box::new(writer)).map_err(|_| {
            anyhow::anyhow!(
                "{capacity} bytes cannot hold a message header (shared memory `{}`)",
                self.name()
            )
        })
    }
}
