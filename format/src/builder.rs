//! The top-down message builder (paper Figure 34).
//!
//! Owns: a 64-byte-aligned growable buffer and the allocation discipline of
//! the format. A writer allocates the root struct first, then each array's block
//! (writing its slot in the parent), then fills columns in place; every
//! allocation returns its offset and is never repeated. Offset 0 is never used
//! as an "unallocated" marker (the Karmem Go writer's bug with nested tables at
//! offset 0): the message header occupies it, so no object can live there.
//!
//! Does not own: what to write (the dynamic encoder in `value` and generated
//! code decide) or validation.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use crate::raw::{self, Scalar, StructHeader};
use crate::view::Slot;

/// The message would exceed 4 GiB − 1 bytes, or the memory a placed
/// builder writes into ([`Builder::placed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message would exceed 4 GiB - 1 bytes or the memory it is placed in")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TooLarge {}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Chunk([u8; 64]);

/// Memory outside the Rust heap that a [`Builder`] can write a message into
/// in place: a host mapping of a shared region, a guest's linear memory.
/// The implementor keeps the memory alive and reserved for the builder.
///
/// # Safety
/// [`PlacedBytes::start`] must point to [`PlacedBytes::capacity`] bytes,
/// 64-byte aligned, readable and writable, which stay valid for as long as
/// the value lives, and which nobody else (other threads, other references,
/// wasm code) reads or writes while a method of the buffer or builder that
/// owns the value runs or a reference it lent out is alive; both methods
/// must return the same values every time.
pub unsafe trait PlacedBytes: Send + Sync {
    fn start(&self) -> *mut u8;
    fn capacity(&self) -> usize;
}

/// Where an [`AlignedBuf`]'s bytes live.
enum Storage {
    /// A growable heap allocation.
    Heap(Vec<Chunk>),
    /// Fixed memory someone else owns ([`PlacedBytes`]); `addr` and
    /// `capacity` are read from the owner once, so accesses need no call;
    /// the owner is kept only to keep the memory reserved.
    Placed { addr: usize, capacity: usize, _owner: Box<dyn PlacedBytes> },
}

/// A byte buffer whose start is 64-byte aligned, so SoA columns in it can be
/// viewed as `&[T]`: on the heap (growable), or placed in memory a
/// [`PlacedBytes`] reserves (fixed capacity).
pub struct AlignedBuf {
    storage: Storage,
    len: usize,
}

impl Default for AlignedBuf {
    fn default() -> Self {
        AlignedBuf { storage: Storage::Heap(Vec::new()), len: 0 }
    }
}

/// A clone is always on the heap (placed memory has one owner).
impl Clone for AlignedBuf {
    fn clone(&self) -> Self {
        AlignedBuf::from_bytes(self.as_slice())
    }
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let placed = matches!(self.storage, Storage::Placed { .. });
        f.debug_struct("AlignedBuf").field("len", &self.len).field("placed", &placed).finish()
    }
}

impl AlignedBuf {
    pub fn new() -> AlignedBuf {
        AlignedBuf::default()
    }

    pub fn with_capacity(bytes: usize) -> AlignedBuf {
        AlignedBuf { storage: Storage::Heap(Vec::with_capacity(bytes.div_ceil(64))), len: 0 }
    }

    /// An empty buffer over `owner`'s memory; it never grows past
    /// `owner.capacity()` bytes (see [`AlignedBuf::max_len`]).
    pub fn placed(owner: Box<dyn PlacedBytes>) -> AlignedBuf {
        let addr = owner.start().expose_provenance();
        let capacity = owner.capacity();
        AlignedBuf { storage: Storage::Placed { addr, capacity, _owner: owner }, len: 0 }
    }

    /// A copy of `bytes` in an aligned buffer.
    pub fn from_bytes(bytes: &[u8]) -> AlignedBuf {
        let mut buf = AlignedBuf::with_capacity(bytes.len());
        buf.resize(bytes.len());
        buf.as_mut_slice().copy_from_slice(bytes);
        buf
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most bytes this buffer can hold: a placed buffer's capacity,
    /// `usize::MAX` on the heap.
    pub fn max_len(&self) -> usize {
        match &self.storage {
            Storage::Heap(_) => usize::MAX,
            Storage::Placed { capacity, .. } => *capacity,
        }
    }

    /// Bytes usable without growing (initialised, possibly stale).
    fn reserved(&self) -> usize {
        match &self.storage {
            Storage::Heap(chunks) => chunks.len() * 64,
            Storage::Placed { capacity, .. } => *capacity,
        }
    }

    /// Makes at least `len` bytes usable; a placed buffer cannot grow, so
    /// the callers check [`AlignedBuf::max_len`] first.
    fn reserve_to(&mut self, len: usize) {
        if let Storage::Heap(chunks) = &mut self.storage {
            let needed = len.div_ceil(64);
            if needed > chunks.len() {
                chunks.resize(needed, Chunk([0; 64]));
            }
        }
    }

    /// Grows (the new bytes are zero) or shrinks to `len` bytes. Shrinking
    /// keeps the allocation, so a reused buffer does not allocate again. A
    /// placed buffer stops at its capacity.
    pub fn resize(&mut self, len: usize) {
        let len = len.min(self.max_len());
        if len > self.len {
            let old = self.len;
            // Bytes past `len` in reserved memory may be stale: zero what is reused.
            let reused_end = len.min(self.reserved());
            if let Some(stale) = self.all_bytes_mut().get_mut(old..reused_end) {
                stale.fill(0);
            }
            self.reserve_to(len);
        }
        self.len = len;
    }

    /// Grows to `len` bytes without zeroing bytes of a previous use of the
    /// buffer that lie in `[zero_until, len)`; bytes before `zero_until` are
    /// zeroed. The dirty bytes are initialised (old message bytes), never
    /// uninitialised memory.
    fn grow_partly_zeroed(&mut self, zero_until: usize, len: usize) {
        let len = len.min(self.max_len());
        let old = self.len;
        if len <= old {
            return;
        }
        let zero_until = zero_until.clamp(old, len);
        let reused_end = len.min(self.reserved());
        if reused_end > old {
            let end = zero_until.min(reused_end);
            if let Some(stale) = self.all_bytes_mut().get_mut(old..end) {
                stale.fill(0);
            }
        }
        self.reserve_to(len);
        self.len = len;
    }

    pub fn clear(&mut self) {
        self.resize(0);
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &self.storage {
            // SAFETY: `chunks` is a contiguous, initialised allocation of
            // `chunks.len() * 64` bytes (`Chunk` is `repr(C)` over `[u8; 64]`,
            // no padding), and `len <= chunks.len() * 64` is an invariant of
            // `resize`.
            Storage::Heap(chunks) => unsafe { core::slice::from_raw_parts(chunks.as_ptr().cast::<u8>(), self.len) },
            // SAFETY: `PlacedBytes` promises `capacity` valid bytes at `addr`
            // (its provenance exposed in `placed`) that only this buffer
            // touches while `owner` lives; `len <= capacity` (`resize`).
            Storage::Placed { addr, .. } => unsafe {
                core::slice::from_raw_parts(core::ptr::with_exposed_provenance::<u8>(*addr), self.len)
            },
        }
    }

    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        let all = self.all_bytes_mut();
        let total = all.len();
        // `len <= reserved()` is an invariant of `resize`.
        debug_assert!(len <= total);
        all.split_at_mut(len.min(total)).0
    }

    #[inline]
    fn all_bytes_mut(&mut self) -> &mut [u8] {
        match &mut self.storage {
            // SAFETY: as in `as_slice`, over the whole allocation; the borrow
            // of `self` is exclusive, so the slice is the only access.
            Storage::Heap(chunks) => unsafe {
                core::slice::from_raw_parts_mut(chunks.as_mut_ptr().cast::<u8>(), chunks.len() * 64)
            },
            // SAFETY: as in `as_slice`, over all `capacity` bytes, which
            // `PlacedBytes` reserves for this buffer alone; `&mut self` is
            // exclusive.
            Storage::Placed { addr, capacity, .. } => unsafe {
                core::slice::from_raw_parts_mut(core::ptr::with_exposed_provenance_mut::<u8>(*addr), *capacity)
            },
        }
    }
}

impl core::ops::Deref for AlignedBuf {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// Builds one message top-down into an [`AlignedBuf`].
#[derive(Debug, Clone)]
pub struct Builder {
    buf: AlignedBuf,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder::with_capacity(256)
    }

    /// A builder whose buffer will not reallocate below `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Builder {
        let mut buf = AlignedBuf::with_capacity(bytes.max(raw::MESSAGE_HEADER_SIZE as usize));
        buf.resize(raw::MESSAGE_HEADER_SIZE as usize);
        let mut builder = Builder { buf };
        builder.put(0, raw::MESSAGE_HEADER_WORD);
        builder
    }

    /// A builder that writes its message in place into `owner`'s memory
    /// (a shared region, guest memory): no heap buffer and no copy after.
    /// The message can never exceed `owner.capacity()` bytes; an allocation
    /// past it fails with [`TooLarge`], as one past 4 GiB does on the heap.
    /// `Err` when the memory cannot even hold the message header.
    pub fn placed(owner: Box<dyn PlacedBytes>) -> Result<Builder, TooLarge> {
        if owner.capacity() < raw::MESSAGE_HEADER_SIZE as usize {
            return Err(TooLarge);
        }
        let mut buf = AlignedBuf::placed(owner);
        buf.resize(raw::MESSAGE_HEADER_SIZE as usize);
        let mut builder = Builder { buf };
        builder.put(0, raw::MESSAGE_HEADER_WORD);
        Ok(builder)
    }

    /// Starts over, keeping the allocation (paper: memory reuse).
    pub fn reset(&mut self) {
        self.buf.resize(0);
        self.buf.resize(raw::MESSAGE_HEADER_SIZE as usize);
        self.put(0, raw::MESSAGE_HEADER_WORD);
    }

    #[inline]
    pub fn len(&self) -> u32 {
        self.buf.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Allocates `size` zeroed bytes aligned to `align` (a power of two) and
    /// returns their offset. Allocation of 0 bytes returns 0 (FORMAT.md §3).
    pub fn alloc(&mut self, size: u64, align: u32) -> Result<u32, TooLarge> {
        if size == 0 {
            return Ok(0);
        }
        let start = raw::align_up(self.buf.len() as u64, align as u64);
        let end = start + size;
        self.check_end(end)?;
        self.buf.resize(end as usize);
        Ok(start as u32)
    }

    /// A message may end at `end`: below 4 GiB, and within a placed
    /// builder's memory.
    fn check_end(&self, end: u64) -> Result<(), TooLarge> {
        if end > u32::MAX as u64 || end > self.buf.max_len() as u64 {
            return Err(TooLarge);
        }
        Ok(())
    }

    /// An object (root, union payload) of `size` bytes, 8-aligned.
    pub fn alloc_object(&mut self, size: u64) -> Result<u32, TooLarge> {
        self.alloc(size, raw::OBJECT_ALIGN)
    }

    /// An array block of `size` bytes, 64-aligned and padded to 64 bytes.
    pub fn alloc_block(&mut self, size: u64) -> Result<u32, TooLarge> {
        self.alloc(raw::align_up(size, raw::BLOCK_ALIGN as u64), raw::BLOCK_ALIGN)
    }

    /// An array block of `size` bytes whose first `filled` bytes the caller
    /// promises to overwrite: only the rest (up to the 64-byte boundary) is
    /// zeroed, as the paper's writer does (§4.3.1). On a reused builder the
    /// first `filled` bytes hold the previous message's bytes until written.
    pub fn alloc_block_to_fill(&mut self, size: u64, filled: u64) -> Result<u32, TooLarge> {
        let size = raw::align_up(size, raw::BLOCK_ALIGN as u64);
        if size == 0 {
            return Ok(0);
        }
        let start = raw::align_up(self.buf.len() as u64, raw::BLOCK_ALIGN as u64);
        let end = start + size;
        self.check_end(end)?;
        // Zero the alignment gap, skip the filled part, zero the tail.
        self.buf.grow_partly_zeroed(start as usize, (start + filled.min(size)) as usize);
        self.buf.resize(end as usize);
        Ok(start as u32)
    }

    /// A dynamic struct body whose writer uses `used` bytes (header included);
    /// writes its header and returns its offset.
    pub fn alloc_dynamic_struct(&mut self, used: u32) -> Result<u32, TooLarge> {
        let header = StructHeader::for_used(used.max(raw::DYNAMIC_FIELDS_START));
        let offset = self.alloc_object(header.size())?;
        self.put(offset, header.0);
        Ok(offset)
    }

    /// Sets the root offset in the message header.
    pub fn set_root(&mut self, offset: u32) {
        self.put(4, offset);
    }

    /// Writes a slot at `at` and allocates a plain block for `capacity`
    /// elements of `elem_size` bytes; returns the block offset (0 if empty).
    pub fn alloc_plain_array(
        &mut self,
        at: u32,
        elem_size: u32,
        length: u32,
        capacity: u32,
    ) -> Result<u32, TooLarge> {
        let capacity = capacity.max(length);
        let offset = self.alloc_block(capacity as u64 * elem_size as u64)?;
        self.put_slot(at, Slot { offset, length, capacity });
        Ok(offset)
    }

    /// Writes a slot at `at`, a column directory for `columns` (hash, element
    /// size) and the columns; writes each column's offset into `out` (same order)
    /// and returns the directory offset (0 when `capacity` is 0).
    pub fn alloc_soa_array(
        &mut self,
        at: u32,
        length: u32,
        capacity: u32,
        columns: &[(u32, u32)],
        out: &mut [u32],
    ) -> Result<u32, TooLarge> {
        let capacity = capacity.max(length);
        if capacity == 0 {
            self.put_slot(at, Slot { offset: 0, length: 0, capacity: 0 });
            out.iter_mut().for_each(|o| *o = 0);
            return Ok(0);
        }
        let n = columns.len() as u32;
        let dir = self.alloc_block(4 + 8 * n as u64)?;
        self.put(dir, n);
        for (j, &(hash, elem_size)) in columns.iter().enumerate() {
            let column = self.alloc_block(capacity as u64 * elem_size as u64)?;
            self.put(dir + 4 + 4 * j as u32, hash);
            self.put(dir + 4 + 4 * n + 4 * j as u32, column);
            if let Some(o) = out.get_mut(j) {
                *o = column;
            }
        }
        self.put_slot(at, Slot { offset: dir, length, capacity });
        Ok(dir)
    }

    /// Like [`Builder::alloc_soa_array`], for a writer that fills every one of
    /// the `length` elements of every column (paper Figure 34): the columns'
    /// first `length` elements are not zeroed first, only the rest of each block.
    pub fn alloc_soa_array_to_fill(
        &mut self,
        at: u32,
        length: u32,
        capacity: u32,
        columns: &[(u32, u32)],
        out: &mut [u32],
    ) -> Result<u32, TooLarge> {
        let capacity = capacity.max(length);
        if capacity == 0 {
            return self.alloc_soa_array(at, length, capacity, columns, out);
        }
        let n = columns.len() as u32;
        let dir = self.alloc_block(4 + 8 * n as u64)?;
        self.put(dir, n);
        for (j, &(hash, elem_size)) in columns.iter().enumerate() {
            let column = self.alloc_block_to_fill(capacity as u64 * elem_size as u64, length as u64 * elem_size as u64)?;
            self.put(dir + 4 + 4 * j as u32, hash);
            self.put(dir + 4 + 4 * n + 4 * j as u32, column);
            if let Some(o) = out.get_mut(j) {
                *o = column;
            }
        }
        self.put_slot(at, Slot { offset: dir, length, capacity });
        Ok(dir)
    }

    #[inline]
    pub fn put_slot(&mut self, at: u32, slot: Slot) {
        self.put(at, slot.offset);
        self.put(at + 4, slot.length);
        self.put(at + 8, slot.capacity);
    }

    /// Writes a scalar at `offset`, which must lie in allocated space.
    ///
    /// # Panics
    /// If `offset` is outside what this builder allocated: a bug in the writer.
    #[inline]
    pub fn put<T: Scalar>(&mut self, offset: u32, value: T) {
        value.write_le(self.bytes_mut(offset, T::SIZE as usize));
    }

    /// Writes an unsigned integer of `width` bytes.
    pub fn put_uint(&mut self, offset: u32, width: u32, value: u64) {
        match width {
            1 => self.put(offset, value as u8),
            2 => self.put(offset, value as u16),
            4 => self.put(offset, value as u32),
            _ => self.put(offset, value),
        }
    }

    /// Allocated bytes at `offset` for writing.
    ///
    /// # Panics
    /// If the range is outside what this builder allocated.
    #[inline]
    pub fn bytes_mut(&mut self, offset: u32, len: usize) -> &mut [u8] {
        let start = offset as usize;
        let allocated = self.buf.len();
        assert!(
            start.checked_add(len).is_some_and(|end| end <= allocated),
            "writer bug: {len} bytes at offset {offset} lie outside the {allocated} allocated bytes"
        );
        self.buf.as_mut_slice().get_mut(start..start + len).unwrap_or_default()
    }

    /// A column (or plain array block) as a native slice to fill, on
    /// little-endian hosts; `None` on big-endian hosts (use `put`).
    #[inline]
    pub fn column_mut<T: Scalar + raw::sealed::Pod>(&mut self, offset: u32, len: u32) -> Option<&mut [T]> {
        if cfg!(target_endian = "big") {
            return None;
        }
        let bytes = self.bytes_mut(offset, len as usize * T::SIZE as usize);
        if bytes.as_ptr().align_offset(core::mem::align_of::<T>()) != 0 {
            return None;
        }
        // SAFETY: `bytes` is an exclusive borrow of exactly `len * size_of::<T>()`
        // initialised bytes, aligned for `T` (checked above); `T` is a sealed
        // plain-old-data scalar, valid for every bit pattern, and the host is
        // little-endian so native stores produce the wire encoding.
        Some(unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<T>(), len as usize) })
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.as_slice()
    }

    /// The finished message.
    pub fn finish(self) -> AlignedBuf {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placed memory for the tests: a heap block the builder borrows.
    struct Block(Box<[Chunk]>);

    // SAFETY: the block is 64-aligned (`Chunk`), owned by the value, and
    // reached by nothing else while the builder holds it.
    unsafe impl PlacedBytes for Block {
        fn start(&self) -> *mut u8 {
            self.0.as_ptr().cast::<u8>().cast_mut()
        }
        fn capacity(&self) -> usize {
            self.0.len() * 64
        }
    }

    fn block(chunks: usize, fill: u8) -> Box<dyn PlacedBytes> {
        Box::new(Block(alloc::vec![Chunk([fill; 64]); chunks].into_boxed_slice()))
    }

    fn sample(b: &mut Builder) -> Result<(), TooLarge> {
        let root = b.alloc_dynamic_struct(24)?;
        b.set_root(root);
        let mut columns = [0u32; 2];
        b.alloc_soa_array_to_fill(root + 8, 10, 10, &[(1, 8), (2, 4)], &mut columns)?;
        for i in 0..10u32 {
            b.put(columns[0] + 8 * i, u64::from(i) * 3);
            b.put(columns[1] + 4 * i, i as f32);
        }
        Ok(())
    }

    #[test]
    fn a_placed_builder_writes_the_same_bytes_in_place() {
        let mut heap = Builder::new();
        sample(&mut heap).unwrap();
        // Stale bytes (0xEE) in the placed memory must not leak into the message.
        let mut placed = Builder::placed(block(8, 0xEE)).unwrap();
        sample(&mut placed).unwrap();
        assert_eq!(placed.as_bytes(), heap.as_bytes());
        placed.reset();
        sample(&mut placed).unwrap();
        assert_eq!(placed.as_bytes(), heap.as_bytes());
        assert_eq!(placed.as_bytes().as_ptr() as usize % 64, 0);
        // A clone lives on the heap.
        let copy = placed.clone().finish();
        assert_eq!(copy.as_slice(), heap.as_bytes());
    }

    #[test]
    fn a_placed_builder_refuses_to_grow_past_its_memory() {
        assert_eq!(Builder::placed(block(0, 0)).err(), Some(TooLarge));
        let mut b = Builder::placed(block(2, 0)).unwrap();
        assert_eq!(b.alloc_block(64).unwrap(), 64);
        assert_eq!(b.alloc_block(1), Err(TooLarge));
        assert_eq!(b.alloc_block_to_fill(64, 64), Err(TooLarge));
        assert_eq!(b.len(), 128);
        let mut columns = [0u32; 1];
        assert_eq!(b.alloc_soa_array_to_fill(8, 4, 4, &[(1, 4)], &mut columns), Err(TooLarge));
    }

    #[test]
    fn reused_buffers_hand_out_zeroed_bytes() {
        let mut b = Builder::new();
        let at = b.alloc_block(200).unwrap_or(0);
        b.bytes_mut(at, 200).fill(0xAA);
        b.reset();
        assert_eq!(b.len(), 8);
        let again = b.alloc_block(300).unwrap_or(0);
        assert_eq!(again, at);
        assert!(b.as_bytes()[8..].iter().all(|&x| x == 0), "stale bytes leaked into a new message");
        assert_eq!(b.as_bytes().as_ptr() as usize % 64, 0);
    }

    #[test]
    fn blocks_to_fill_zero_their_tail_and_gap() {
        let mut b = Builder::new();
        let at = b.alloc_block(256).unwrap_or(0);
        b.bytes_mut(at, 256).fill(0xAA);
        b.reset();
        b.put(4, 0xFFu32);
        let block = b.alloc_block_to_fill(100, 40).unwrap_or(0);
        assert_eq!(block, 64);
        let bytes = b.as_bytes();
        assert!(bytes[8..64].iter().all(|&x| x == 0), "alignment gap zeroed");
        assert!(bytes[64..104].iter().all(|&x| x == 0xAA), "the part to fill is left as is");
        assert!(bytes[104..192].iter().all(|&x| x == 0), "the tail is zeroed");
        assert_eq!(bytes.len(), 192);
    }

    #[test]
    fn zero_sized_allocations_are_offset_zero() {
        let mut b = Builder::new();
        assert_eq!(b.alloc_block(0), Ok(0));
        let parent = b.alloc_object(16).unwrap_or(0);
        assert_eq!(b.alloc_plain_array(parent, 8, 0, 0), Ok(0));
        assert_eq!(b.len(), 24);
    }
}
