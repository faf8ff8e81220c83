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

use alloc::vec::Vec;
use core::fmt;

use crate::raw::{self, Scalar, StructHeader};
use crate::view::Slot;

/// The buffer would exceed 4 GiB − 1 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

impl fmt::Display for TooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message would exceed 4 GiB - 1 bytes")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TooLarge {}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Chunk([u8; 64]);

/// A byte buffer whose start is 64-byte aligned, so SoA columns in it can be
/// viewed as `&[T]`.
#[derive(Clone, Default)]
pub struct AlignedBuf {
    chunks: Vec<Chunk>,
    len: usize,
}

impl fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlignedBuf").field("len", &self.len).finish()
    }
}

impl AlignedBuf {
    pub fn new() -> AlignedBuf {
        AlignedBuf::default()
    }

    pub fn with_capacity(bytes: usize) -> AlignedBuf {
        AlignedBuf { chunks: Vec::with_capacity(bytes.div_ceil(64)), len: 0 }
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

    /// Grows (the new bytes are zero) or shrinks to `len` bytes. Shrinking
    /// keeps the allocation, so a reused buffer does not allocate again.
    pub fn resize(&mut self, len: usize) {
        if len > self.len {
            let chunks = len.div_ceil(64);
            let old = self.len;
            // Bytes past `len` in existing chunks may be stale: zero what is reused.
            let reused_end = len.min(self.chunks.len() * 64);
            if let Some(stale) = self.all_bytes_mut().get_mut(old..reused_end) {
                stale.fill(0);
            }
            if chunks > self.chunks.len() {
                self.chunks.resize(chunks, Chunk([0; 64]));
            }
        }
        self.len = len;
    }

    /// Grows to `len` bytes without zeroing bytes of a previous use of the
    /// buffer that lie in `[zero_until, len)`; bytes before `zero_until` are
    /// zeroed. The dirty bytes are initialised (old message bytes), never
    /// uninitialised memory.
    fn grow_partly_zeroed(&mut self, zero_until: usize, len: usize) {
        let old = self.len;
        if len <= old {
            return;
        }
        let zero_until = zero_until.clamp(old, len);
        let reused_end = len.min(self.chunks.len() * 64);
        if reused_end > old {
            let end = zero_until.min(reused_end);
            if let Some(stale) = self.all_bytes_mut().get_mut(old..end) {
                stale.fill(0);
            }
        }
        let chunks = len.div_ceil(64);
        if chunks > self.chunks.len() {
            self.chunks.resize(chunks, Chunk([0; 64]));
        }
        self.len = len;
    }

    pub fn clear(&mut self) {
        self.resize(0);
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `chunks` is a contiguous, initialised allocation of
        // `chunks.len() * 64` bytes (`Chunk` is `repr(C)` over `[u8; 64]`, no
        // padding), and `len <= chunks.len() * 64` is an invariant of `resize`.
        unsafe { core::slice::from_raw_parts(self.chunks.as_ptr().cast::<u8>(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        let all = self.all_bytes_mut();
        let total = all.len();
        // `len <= chunks.len() * 64` is an invariant of `resize`.
        debug_assert!(len <= total);
        all.split_at_mut(len.min(total)).0
    }

    fn all_bytes_mut(&mut self) -> &mut [u8] {
        let total = self.chunks.len() * 64;
        // SAFETY: as in `as_slice`, over the whole allocation; the borrow of
        // `self` is exclusive, so the slice is the only access.
        unsafe { core::slice::from_raw_parts_mut(self.chunks.as_mut_ptr().cast::<u8>(), total) }
    }
}

impl core::ops::Deref for AlignedBuf {
    type Target = [u8];
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

    /// Starts over, keeping the allocation (paper: memory reuse).
    pub fn reset(&mut self) {
        self.buf.resize(0);
        self.buf.resize(raw::MESSAGE_HEADER_SIZE as usize);
        self.put(0, raw::MESSAGE_HEADER_WORD);
    }

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
        if end > u32::MAX as u64 {
            return Err(TooLarge);
        }
        self.buf.resize(end as usize);
        Ok(start as u32)
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
        if end > u32::MAX as u64 {
            return Err(TooLarge);
        }
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
