//! Constants of the format and checked little-endian reads of raw bytes.
//!
//! Owns: the numbers of `docs/FORMAT.md` (header word, alignments, slot
//! sizes), the dynamic struct header, the column hash chain and the 64-bit
//! FNV-1a used by layout hashes. Everything here is `no_std` and allocation-free.

use crate::error::{Error, ErrorKind, Result};

/// The word at offset 0 of every message: an empty dynamic struct body (FORMAT.md §2, §5.2).
pub const MESSAGE_HEADER_WORD: u32 = 0x0000_000C;
/// Size of the message header: the header word and the root offset.
pub const MESSAGE_HEADER_SIZE: u32 = 8;
/// The empty message: what a zero-length buffer means.
pub const EMPTY_MESSAGE: [u8; 8] = [0x0C, 0, 0, 0, 0, 0, 0, 0];
/// Alignment of struct bodies, union payloads and the root (FORMAT.md §3).
pub const OBJECT_ALIGN: u32 = 8;
/// Alignment and size granularity of array blocks (FORMAT.md §3, paper §4.2.2).
pub const BLOCK_ALIGN: u32 = 64;
/// Size of an array slot: offset, length, capacity (FORMAT.md §6.2).
pub const SLOT_SIZE: u32 = 12;
/// Size of a dynamic union: tag (padded) and payload offset (FORMAT.md §8).
pub const DYNAMIC_UNION_SIZE: u32 = 8;
/// Size of a bunch table entry: tag, offset, length, capacity (FORMAT.md §8).
pub const BUNCH_ENTRY_SIZE: u32 = 16;
/// Size of the fixed part of a bunch table: count and a reserved word.
pub const BUNCH_HEADER_SIZE: u32 = 8;
/// Where the fields of a dynamic struct begin, after its header.
pub const DYNAMIC_FIELDS_START: u32 = 4;

/// FNV-1a 32-bit offset basis: the hash of the empty path.
pub const COLUMN_HASH_SEED: u32 = 0x811C_9DC5;
const FNV32_PRIME: u32 = 0x0100_0193;
const FNV64_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV64_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Extends a column hash by one field position (FORMAT.md §6.3).
pub const fn column_hash_step(mut hash: u32, position: u32) -> u32 {
    let bytes = position.to_le_bytes();
    let mut rest: &[u8] = &bytes;
    while let [b, tail @ ..] = rest {
        hash ^= *b as u32;
        hash = hash.wrapping_mul(FNV32_PRIME);
        rest = tail;
    }
    hash
}

/// The column hash of a path of field positions.
pub const fn column_hash(path: &[u32]) -> u32 {
    let mut hash = COLUMN_HASH_SEED;
    let mut rest = path;
    while let [p, tail @ ..] = rest {
        hash = column_hash_step(hash, *p);
        rest = tail;
    }
    hash
}

/// FNV-1a 64-bit over `bytes` (layout hashes, FORMAT.md §11).
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = FNV64_BASIS;
    let mut rest = bytes;
    while let [b, tail @ ..] = rest {
        hash ^= *b as u64;
        hash = hash.wrapping_mul(FNV64_PRIME);
        rest = tail;
    }
    hash
}

/// Rounds `x` up to a multiple of `align` (a power of two).
pub const fn align_up(x: u64, align: u64) -> u64 {
    (x + align - 1) & !(align - 1)
}

/// The 32-bit header of a dynamic struct body (FORMAT.md §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StructHeader(pub u32);

impl StructHeader {
    /// The header of a body whose writer used `used` bytes (header included).
    pub const fn for_used(used: u32) -> StructHeader {
        let size = align_up(used as u64, 8);
        let units = (size / 8) as u32;
        let unused = (size - used as u64) as u32;
        StructHeader((units << 3) | unused)
    }

    pub const fn size_units(self) -> u32 {
        self.0 >> 3
    }

    pub const fn unused(self) -> u32 {
        self.0 & 7
    }

    /// The body size in bytes.
    pub const fn size(self) -> u64 {
        self.size_units() as u64 * 8
    }

    /// The bytes the writer used; fields ending past this are absent.
    pub const fn used(self) -> u64 {
        self.size() - self.unused() as u64
    }

    pub const fn is_valid(self) -> bool {
        self.size_units() >= 1 && self.used() >= DYNAMIC_FIELDS_START as u64
    }
}

/// `base + add` as an offset, or `OutOfBounds` when it leaves the 4 GiB space.
#[inline]
pub fn offset_add(base: u32, add: u64) -> Result<u32> {
    let sum = base as u64 + add;
    u32::try_from(sum)
        .map_err(|_| Error::new(ErrorKind::OutOfBounds { size: add, len: u32::MAX }, base))
}

/// `N` bytes at `offset`, or `OutOfBounds`.
#[inline]
pub fn read_array<const N: usize>(bytes: &[u8], offset: u32) -> Result<[u8; N]> {
    let start = offset as usize;
    match bytes.get(start..).and_then(|rest| rest.get(..N)) {
        Some(slice) => {
            let mut out = [0u8; N];
            out.copy_from_slice(slice);
            Ok(out)
        }
        None => Err(Error::new(
            ErrorKind::OutOfBounds { size: N as u64, len: bytes.len() as u32 },
            offset,
        )),
    }
}

/// `len` bytes at `offset`, or `OutOfBounds`.
#[inline]
pub fn read_bytes(bytes: &[u8], offset: u32, len: u64) -> Result<&[u8]> {
    let end = offset as u64 + len;
    let range = usize::try_from(end).ok().and_then(|end| bytes.get(offset as usize..end));
    range.ok_or_else(|| Error::new(ErrorKind::OutOfBounds { size: len, len: bytes.len() as u32 }, offset))
}

#[inline]
pub fn read_u8(bytes: &[u8], offset: u32) -> Result<u8> {
    Ok(read_array::<1>(bytes, offset)?[0])
}

#[inline]
pub fn read_u16(bytes: &[u8], offset: u32) -> Result<u16> {
    Ok(u16::from_le_bytes(read_array(bytes, offset)?))
}

#[inline]
pub fn read_u32(bytes: &[u8], offset: u32) -> Result<u32> {
    Ok(u32::from_le_bytes(read_array(bytes, offset)?))
}

#[inline]
pub fn read_u64(bytes: &[u8], offset: u32) -> Result<u64> {
    Ok(u64::from_le_bytes(read_array(bytes, offset)?))
}

/// A little-endian unsigned integer of `width` bytes (1, 2, 4 or 8).
#[inline]
pub fn read_uint(bytes: &[u8], offset: u32, width: u32) -> Result<u64> {
    Ok(match width {
        1 => read_u8(bytes, offset)? as u64,
        2 => read_u16(bytes, offset)? as u64,
        4 => read_u32(bytes, offset)? as u64,
        _ => read_u64(bytes, offset)?,
    })
}

/// A fixed-size value stored little-endian: the integers and floats.
pub trait Scalar: Copy + Default + 'static {
    const SIZE: u32;
    /// The value in the first `SIZE` bytes of `bytes`; callers pass exactly
    /// `SIZE` bytes (a shorter slice reads as zero rather than panicking).
    fn from_le_slice(bytes: &[u8]) -> Self;
    /// Writes the value into the first `SIZE` bytes of `out` (nothing if shorter).
    fn write_le(self, out: &mut [u8]);
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const SIZE: u32 = core::mem::size_of::<$t>() as u32;
            #[inline]
            fn from_le_slice(bytes: &[u8]) -> Self {
                match bytes.first_chunk::<{ core::mem::size_of::<$t>() }>() {
                    Some(raw) => <$t>::from_le_bytes(*raw),
                    None => <$t>::default(),
                }
            }
            #[inline]
            fn write_le(self, out: &mut [u8]) {
                if let Some(dst) = out.first_chunk_mut::<{ core::mem::size_of::<$t>() }>() {
                    *dst = self.to_le_bytes();
                }
            }
        }
        impl sealed::Pod for $t {}
    )*};
}

scalar!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

pub(crate) mod sealed {
    /// Plain old data: every bit pattern is a valid value, no padding.
    pub trait Pod {}
}

/// A scalar read at `offset`.
#[inline]
pub fn read_scalar<T: Scalar>(bytes: &[u8], offset: u32) -> Result<T> {
    Ok(T::from_le_slice(read_bytes(bytes, offset, T::SIZE as u64)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = StructHeader::for_used(14);
        assert_eq!(h.0, 0x12);
        assert_eq!((h.size(), h.used()), (16, 14));
        assert_eq!(StructHeader::for_used(4).0, MESSAGE_HEADER_WORD);
        assert!(!StructHeader(0).is_valid());
        assert!(!StructHeader(0x0F).is_valid()); // one unit, 7 unused: used 1
    }

    #[test]
    fn column_hash_is_a_chain() {
        assert_eq!(column_hash(&[]), COLUMN_HASH_SEED);
        assert_eq!(column_hash(&[0]), 0x4b95_f515);
        assert_eq!(column_hash(&[1]), 0xfb69_b604);
        assert_eq!(column_hash(&[2, 3]), column_hash_step(column_hash(&[2]), 3));
    }

    #[test]
    fn reads_are_bounds_checked() {
        let bytes = [1u8, 2, 3];
        assert!(read_u32(&bytes, 0).is_err());
        assert!(read_u16(&bytes, u32::MAX).is_err());
        assert_eq!(read_u16(&bytes, 1), Ok(0x0302));
    }
}
