//! Interface memories on the host side: one memfd per interface memory
//! ([`SharedRegion`]) and the description of where a participant sees it
//! ([`RegionPlacement`], [`MemoryLayout`]).
//!
//! Owns validation of placements (64 KiB alignment, overlap, sizes). Mapping
//! the pages into a linear memory is `super::memory`'s job.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail, ensure};

/// Size of a WebAssembly page and the alignment of every region
/// (docs/ABI.md §6, "a page-aligned region of `PAGES × 64 KiB`").
pub const WASM_PAGE_SIZE: u64 = 64 * 1024;

/// How one participant may touch an interface memory (docs/ABI.md §5,
/// `memory_descriptor.access`: 0 none, 1 read, 2 write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// The window is reserved but inaccessible: any wasm load or store traps.
    None,
    /// Loads succeed, stores from wasm trap.
    Read,
    /// Loads and stores succeed.
    ReadWrite,
}

impl Access {
    /// Decodes the ABI's `access` byte (`karmem_contract::access_of_code`).
    pub fn from_abi(code: u8) -> Result<Self> {
        karmem_contract::access_of_code(code).map(Access::from)
    }

    /// Whether wasm (and the host) may write through this window.
    pub fn writable(self) -> bool {
        matches!(self, Access::ReadWrite)
    }

    /// Whether wasm (and the host) may read through this window.
    pub fn readable(self) -> bool {
        !matches!(self, Access::None)
    }
}

/// A descriptor's access as a window's protection: the ABI's `write` is
/// read-write.
impl From<karmem_contract::Access> for Access {
    fn from(access: karmem_contract::Access) -> Self {
        match access {
            karmem_contract::Access::None => Access::None,
            karmem_contract::Access::Read => Access::Read,
            karmem_contract::Access::Write => Access::ReadWrite,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::None => "none",
            Access::Read => "read",
            Access::ReadWrite => "read-write",
        })
    }
}

/// One interface memory: an anonymous, sized memfd whose pages every
/// participant maps. Cloning the `Arc` shares the same physical pages.
#[derive(Debug)]
pub struct SharedRegion {
    name: String,
    pages: u32,
    fd: OwnedFd,
    host_bytes_written: AtomicU64,
    /// The host's read-write mapping of the memfd, made at the first
    /// in-place builder ([`SharedRegion::builder`]).
    pub(super) host_mapping: std::sync::OnceLock<super::host_map::HostMapping>,
    /// Whether an in-place builder holds the region.
    pub(super) host_writer: std::sync::atomic::AtomicBool,
}

impl SharedRegion {
    /// Creates a zero-filled region of `pages` × 64 KiB named `name` (the
    /// name shows up in `/proc/<pid>/maps`, nothing else depends on it).
    pub fn new(name: &str, pages: u32) -> Result<Arc<Self>> {
        ensure!(
            pages > 0,
            "shared memory `{name}` must have at least one page"
        );
        let len = u64::from(pages) * WASM_PAGE_SIZE;
        let fd =
            rustix::fs::memfd_create(format!("karmem:{name}"), rustix::fs::MemfdFlags::CLOEXEC)
                .with_context(|| format!("failed to create a memfd for shared memory `{name}`"))?;
        rustix::fs::ftruncate(&fd, len)
            .with_context(|| format!("failed to size shared memory `{name}` to {len} bytes"))?;
        Ok(Arc::new(SharedRegion {
            name: name.to_owned(),
            pages,
            fd,
            host_bytes_written: AtomicU64::new(0),
            host_mapping: std::sync::OnceLock::new(),
            host_writer: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// The interface memory's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Size in 64 KiB pages.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Size in bytes.
    pub fn byte_len(&self) -> u64 {
        u64::from(self.pages) * WASM_PAGE_SIZE
    }

    /// Copies `bytes` into the region at `offset`, once for every
    /// participant: the memfd's pages are the ones every window maps. For a
    /// host that produces a message itself.
    pub fn write(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.check_range(offset, bytes.len(), "write")?;
        let mut done = 0usize;
        while done < bytes.len() {
            let rest = bytes.get(done..).unwrap_or_default();
            let written = rustix::io::pwrite(&self.fd, rest, offset + done as u64)
                .with_context(|| format!("failed to write shared memory `{}`", self.name))?;
            ensure!(
                written > 0,
                "shared memory `{}` accepted no bytes",
                self.name
            );
            done += written;
        }
        self.host_bytes_written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Copies `buf.len()` bytes out of the region at `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len(), "read")?;
        let mut done = 0usize;
        while done < buf.len() {
            let rest = buf.get_mut(done..).unwrap_or_default();
            let read = rustix::io::pread(&self.fd, rest, offset + done as u64)
                .with_context(|| format!("failed to read shared memory `{}`", self.name))?;
            ensure!(read > 0, "shared memory `{}` ended early", self.name);
            done += read;
        }
        Ok(())
    }

    /// Bytes the host has written into the region with [`SharedRegion::write`].
    pub fn host_bytes_written(&self) -> u64 {
        self.host_bytes_written.load(Ordering::Relaxed)
    }

    fn check_range(&self, offset: u64, len: usize, what: &str) -> Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.byte_len() => Ok(()),
            _ => bail!(
                "host {what} of {len} bytes at {offset:#x} is outside shared memory `{}` ({} bytes)",
                self.name,
                self.byte_len()
            ),
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Where one participant sees an interface memory: the host-side form of the
/// ABI's `memory_descriptor` (name, byte offset in the linear memory, size in
/// pages, access), bound to the region that backs it.
#[derive(Debug, Clone)]
pub struct RegionPlacement {
    /// The memfd shared by every participant of the interface memory.
    pub region: Arc<SharedRegion>,
    /// Byte offset of the window in this participant's linear memory.
    pub offset: u64,
    /// Size of the window in 64 KiB pages; must equal the region's size.
    pub pages: u32,
    /// This participant's access.
    pub access: Access,
}

impl RegionPlacement {
    /// Places all of `region` at `offset` with `access`.
    pub fn new(region: &Arc<SharedRegion>, offset: u64, access: Access) -> Self {
        RegionPlacement {
            region: Arc::clone(region),
            offset,
            pages: region.pages(),
            access,
        }
    }

    /// Byte length of the window.
    pub fn byte_len(&self) -> u64 {
        u64::from(self.pages) * WASM_PAGE_SIZE
    }

    /// One past the last byte of the window (saturating; validation rejects
    /// windows that would overflow).
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.byte_len())
    }

    /// Whether `[start, start + len)` touches this window.
    pub fn overlaps(&self, start: u64, len: u64) -> bool {
        len > 0 && start < self.end() && self.offset < start.saturating_add(len)
    }

    fn validate(&self) -> Result<()> {
        let name = self.region.name();
        ensure!(
            self.offset.is_multiple_of(WASM_PAGE_SIZE),
            "shared memory `{name}` is placed at offset {:#x}, which is not 64 KiB aligned",
            self.offset
        );
        ensure!(
            self.pages == self.region.pages(),
            "shared memory `{name}` is placed with {} pages but the region has {}",
            self.pages,
            self.region.pages()
        );
        ensure!(
            self.offset.checked_add(self.byte_len()).is_some(),
            "shared memory `{name}` placed at offset {:#x} overflows the address space",
            self.offset
        );
        Ok(())
    }
}

/// Every interface-memory window of one participant's linear memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryLayout {
    placements: Vec<RegionPlacement>,
}

impl MemoryLayout {
    /// A layout without windows: a plain private linear memory.
    pub fn empty() -> Self {
        MemoryLayout::default()
    }

    /// Builds a layout, checking alignment, sizes and that no two windows
    /// overlap.
    pub fn new(placements: Vec<RegionPlacement>) -> Result<Self> {
        let mut layout = MemoryLayout::empty();
        for placement in placements {
            layout.push(placement)?;
        }
        Ok(layout)
    }

    /// Adds one window after the same checks as [`MemoryLayout::new`].
    pub fn push(&mut self, placement: RegionPlacement) -> Result<()> {
        placement.validate()?;
        if let Some(other) = self
            .placements
            .iter()
            .find(|p| p.overlaps(placement.offset, placement.byte_len()))
        {
            bail!(
                "shared memory `{}` at {:#x}..{:#x} overlaps shared memory `{}` at {:#x}..{:#x}",
                placement.region.name(),
                placement.offset,
                placement.end(),
                other.region.name(),
                other.offset,
                other.end()
            );
        }
        self.placements.push(placement);
        Ok(())
    }

    /// The windows, in insertion order.
    pub fn placements(&self) -> &[RegionPlacement] {
        &self.placements
    }

    /// Whether the layout has no windows.
    pub fn is_empty(&self) -> bool {
        self.placements.is_empty()
    }

    /// One past the highest byte any window covers (0 when empty).
    pub fn end(&self) -> u64 {
        self.placements
            .iter()
            .map(RegionPlacement::end)
            .max()
            .unwrap_or(0)
    }

    /// Refuses host access to `[start, start + len)` that would touch a
    /// window it may not: writes into anything but a read-write window, reads
    /// from an inaccessible one.
    pub fn check_host_access(&self, start: u64, len: u64, write: bool) -> Result<()> {
        check_host_access(&self.placements, start, len, write)
    }

    /// Whether some window is not writable (so host writes must be checked
    /// and bulk-memory instructions matter).
    pub fn has_protected_window(&self) -> bool {
        self.placements.iter().any(|p| !p.access.writable())
    }
}

/// Refuses host access to `[start, start + len)` that would touch one of
/// `windows` it may not: writes into anything but a read-write window, reads
/// from an inaccessible one. Such an access would fault outside compiled
/// code and take the whole process down.
pub(crate) fn check_host_access(
    windows: &[RegionPlacement],
    start: u64,
    len: u64,
    write: bool,
) -> Result<()> {
    for window in windows.iter().filter(|w| w.overlaps(start, len)) {
        let allowed = if write {
            window.access.writable()
        } else {
            window.access.readable()
        };
        if !allowed {
            bail!(
                "refusing a host {} of {len} bytes at {start:#x}: it touches shared memory `{}` \
                 ({:#x}..{:#x}), which this guest may only access as `{}`",
                if write { "write" } else { "read" },
                window.region.name(),
                window.offset,
                window.end(),
                window.access
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_rejects_misaligned_and_overlapping_windows() -> Result<()> {
        let a = SharedRegion::new("a", 2)?;
        let b = SharedRegion::new("b", 1)?;
        let misaligned = MemoryLayout::new(vec![RegionPlacement::new(&a, 100, Access::Read)]);
        let message = format!("{:#}", misaligned.err().context("expected an error")?);
        assert!(message.contains("not 64 KiB aligned"), "{message}");

        let overlapping = MemoryLayout::new(vec![
            RegionPlacement::new(&a, 0x10000, Access::Read),
            RegionPlacement::new(&b, 0x20000, Access::ReadWrite),
        ]);
        let message = format!("{:#}", overlapping.err().context("expected an error")?);
        assert!(
            message.contains("`b`") && message.contains("overlaps"),
            "{message}"
        );

        let fine = MemoryLayout::new(vec![
            RegionPlacement::new(&a, 0x10000, Access::Read),
            RegionPlacement::new(&b, 0x30000, Access::ReadWrite),
        ])?;
        assert_eq!(fine.end(), 0x40000);
        assert!(fine.has_protected_window());
        Ok(())
    }

    #[test]
    fn placement_pages_must_match_region() -> Result<()> {
        let a = SharedRegion::new("a", 2)?;
        let mut placement = RegionPlacement::new(&a, 0, Access::Read);
        placement.pages = 3;
        let err = MemoryLayout::new(vec![placement])
            .err()
            .context("expected an error")?;
        assert!(format!("{err:#}").contains("3 pages but the region has 2"));
        Ok(())
    }

    #[test]
    fn host_reads_and_writes_stay_inside_the_region() -> Result<()> {
        let region = SharedRegion::new("r", 1)?;
        region.write(WASM_PAGE_SIZE - 3, b"abc")?;
        let mut buf = [0u8; 3];
        region.read(WASM_PAGE_SIZE - 3, &mut buf)?;
        assert_eq!(&buf, b"abc");
        assert_eq!(region.host_bytes_written(), 3);
        assert!(region.write(WASM_PAGE_SIZE - 2, b"abc").is_err());
        assert!(region.read(u64::MAX, &mut buf).is_err());
        Ok(())
    }

    #[test]
    fn access_codes_follow_the_abi() -> Result<()> {
        assert_eq!(Access::from_abi(0)?, Access::None);
        assert_eq!(Access::from_abi(1)?, Access::Read);
        assert_eq!(Access::from_abi(2)?, Access::ReadWrite);
        assert!(Access::from_abi(3).is_err());
        Ok(())
    }
}
