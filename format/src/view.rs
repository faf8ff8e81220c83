//! Zero-copy, bounds-checked views over a message.
//!
//! Owns: the schema-free reading primitives that generated code and the
//! dynamic decoder use: the message root, dynamic struct bodies (with the
//! absent-field rule), array slots, SoA column directories, and typed columns
//! that are `&[T]` slices on little-endian hosts when aligned.
//! Every read is bounds-checked and returns an [`Error`] with its offset.
//!
//! Does not own: knowing what a field is (that is the schema's or the generated
//! code's business) or whole-message validation (`validate`).

use core::marker::PhantomData;

use crate::error::{Error, ErrorKind, Result};
use crate::raw::{self, Scalar, StructHeader};

/// A message: a byte buffer starting with the message header (FORMAT.md §2).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// Checks the framing only (length and header word); a zero-length buffer
    /// is the empty message.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Result<Message<'a>> {
        if bytes.is_empty() {
            return Ok(Message { bytes: &raw::EMPTY_MESSAGE });
        }
        if bytes.len() > u32::MAX as usize {
            return Err(Error::new(ErrorKind::MessageTooLarge, 0));
        }
        let word = raw::read_u32(bytes, 0)?;
        if word != raw::MESSAGE_HEADER_WORD {
            return Err(Error::new(ErrorKind::BadMessageHeader { found: word }, 0));
        }
        raw::read_u32(bytes, 4)?;
        Ok(Message { bytes })
    }

    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    #[inline]
    pub fn len(&self) -> u32 {
        self.bytes.len() as u32
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bytes.len() <= raw::MESSAGE_HEADER_SIZE as usize
    }

    /// The offset of the root value.
    #[inline]
    pub fn root(&self) -> u32 {
        raw::read_u32(self.bytes, 4).unwrap_or(0)
    }

    #[inline]
    pub fn scalar<T: Scalar>(&self, offset: u32) -> Result<T> {
        raw::read_scalar(self.bytes, offset)
    }

    #[inline]
    pub fn uint(&self, offset: u32, width: u32) -> Result<u64> {
        raw::read_uint(self.bytes, offset, width)
    }

    #[inline]
    pub fn bool(&self, offset: u32) -> Result<bool> {
        match raw::read_u8(self.bytes, offset)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(Error::new(ErrorKind::InvalidBool { value }, offset)),
        }
    }

    #[inline]
    pub fn char(&self, offset: u32) -> Result<char> {
        let value = raw::read_u32(self.bytes, offset)?;
        char::from_u32(value).ok_or(Error::new(ErrorKind::InvalidChar { value }, offset))
    }

    /// `len` raw bytes at `offset`.
    #[inline]
    pub fn slice(&self, offset: u32, len: u64) -> Result<&'a [u8]> {
        raw::read_bytes(self.bytes, offset, len)
    }

    /// The dynamic struct whose body is at `offset` (0: the empty struct).
    #[inline]
    pub fn dynamic_struct(&self, offset: u32) -> Result<DynamicStruct<'a>> {
        DynamicStruct::at(*self, offset)
    }

    /// The array slot at `offset` (FORMAT.md §6.2).
    #[inline]
    pub fn slot(&self, offset: u32) -> Result<Slot> {
        Slot::at(*self, offset)
    }
}

/// A dynamic struct body (FORMAT.md §5.2).
#[derive(Debug, Clone, Copy)]
pub struct DynamicStruct<'a> {
    msg: Message<'a>,
    offset: u32,
    used: u64,
}

impl<'a> DynamicStruct<'a> {
    #[inline]
    pub fn at(msg: Message<'a>, offset: u32) -> Result<DynamicStruct<'a>> {
        let header = StructHeader(raw::read_u32(msg.bytes, offset)?);
        if !header.is_valid() {
            return Err(Error::new(ErrorKind::BadStructHeader { header: header.0 }, offset));
        }
        msg.slice(offset, header.size())?;
        Ok(DynamicStruct { msg, offset, used: header.used() })
    }

    #[inline]
    pub fn offset(&self) -> u32 {
        self.offset
    }

    /// Bytes the writer used, header included.
    #[inline]
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Whether a field at `field_offset` of `size` bytes was written (FORMAT.md §5.2).
    #[inline]
    pub fn has(&self, field_offset: u32, size: u32) -> bool {
        field_offset as u64 + size as u64 <= self.used
    }

    /// The absolute offset of a present field, or `None` when it is absent.
    #[inline]
    pub fn field(&self, field_offset: u32, size: u32) -> Option<u32> {
        self.has(field_offset, size).then_some(self.offset + field_offset)
    }

    /// A scalar field, or `default` when absent.
    #[inline]
    pub fn scalar_or<T: Scalar>(&self, field_offset: u32, default: T) -> Result<T> {
        match self.field(field_offset, T::SIZE) {
            Some(at) => self.msg.scalar(at),
            None => Ok(default),
        }
    }
}

/// An array slot: offset, length, capacity (FORMAT.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slot {
    pub offset: u32,
    pub length: u32,
    pub capacity: u32,
}

impl Slot {
    #[inline]
    pub fn at(msg: Message<'_>, offset: u32) -> Result<Slot> {
        let slot = Slot {
            offset: raw::read_u32(msg.bytes, offset)?,
            length: raw::read_u32(msg.bytes, offset.wrapping_add(4))?,
            capacity: raw::read_u32(msg.bytes, offset.wrapping_add(8))?,
        };
        if slot.length > slot.capacity {
            return Err(Error::new(
                ErrorKind::LengthExceedsCapacity { length: slot.length, capacity: slot.capacity },
                offset,
            ));
        }
        Ok(slot)
    }

    /// The elements of a plain array of `elem_size`-byte elements, as raw bytes.
    #[inline]
    pub fn plain_bytes<'a>(&self, msg: Message<'a>, elem_size: u32) -> Result<&'a [u8]> {
        msg.slice(self.offset, self.length as u64 * elem_size as u64)
    }

    /// A plain array of scalars as a typed column.
    #[inline]
    pub fn plain<'a, T: Scalar + raw::sealed::Pod>(&self, msg: Message<'a>) -> Result<Column<'a, T>> {
        Column::new(msg, self.offset, self.length)
    }

    /// The column directory of an SoA array (FORMAT.md §6.3).
    #[inline]
    pub fn soa<'a>(&self, msg: Message<'a>) -> Result<Soa<'a>> {
        Soa::at(msg, *self)
    }
}

/// The column directory of an SoA array.
#[derive(Debug, Clone, Copy)]
pub struct Soa<'a> {
    msg: Message<'a>,
    slot: Slot,
    count: u32,
    /// The directory's bytes (`4 + 8 × count`), bounds-checked once: entries
    /// and lookups read from here without checking against the message again.
    dir: &'a [u8],
}

impl<'a> Soa<'a> {
    #[inline]
    pub fn at(msg: Message<'a>, slot: Slot) -> Result<Soa<'a>> {
        if slot.capacity == 0 {
            return Ok(Soa { msg, slot, count: 0, dir: &[] });
        }
        let count = raw::read_u32(msg.bytes, slot.offset)?;
        let dir = msg.slice(slot.offset, 4 + 8 * count as u64)?;
        Ok(Soa { msg, slot, count, dir })
    }

    #[inline]
    pub fn len(&self) -> u32 {
        self.slot.length
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slot.length == 0
    }

    #[inline]
    pub fn column_count(&self) -> u32 {
        self.count
    }

    /// The directory's offset (the slot's offset).
    #[inline]
    pub fn offset(&self) -> u32 {
        self.slot.offset
    }

    /// The directory word at byte `at` of the directory.
    #[inline]
    fn word(&self, at: u64) -> Result<u32> {
        let word = usize::try_from(at).ok().and_then(|i| self.dir.get(i..)?.first_chunk::<4>());
        match word {
            Some(w) => Ok(u32::from_le_bytes(*w)),
            None => Err(Error::new(
                ErrorKind::OutOfBounds { size: 4, len: self.msg.len() },
                self.slot.offset.wrapping_add(at as u32),
            )),
        }
    }

    /// Entry `j` of the directory: (hash, column offset).
    #[inline]
    pub fn entry(&self, j: u32) -> Result<(u32, u32)> {
        let hash = self.word(4 + 4 * j as u64)?;
        let offset = self.word(4 + 4 * self.count as u64 + 4 * j as u64)?;
        Ok((hash, offset))
    }

    /// The offset of the column with `hash`, or `None` if the writer did not write it.
    #[inline]
    pub fn find(&self, hash: u32) -> Result<Option<u32>> {
        let hashes = self.dir.get(4..4 + 4 * self.count as usize).unwrap_or_default();
        for (j, h) in hashes.chunks_exact(4).enumerate() {
            if <u32 as Scalar>::from_le_slice(h) == hash {
                return self.word(4 + 4 * self.count as u64 + 4 * j as u64).map(Some);
            }
        }
        Ok(None)
    }

    /// The column with `hash` as a typed column, or `None` when absent.
    #[inline]
    pub fn column<T: Scalar + raw::sealed::Pod>(&self, hash: u32) -> Result<Option<Column<'a, T>>> {
        match self.find(hash)? {
            Some(offset) => Column::new(self.msg, offset, self.slot.length).map(Some),
            None => Ok(None),
        }
    }
}

/// `len` little-endian scalars of type `T` at a 64-byte-aligned offset.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a, T> {
    bytes: &'a [u8],
    len: u32,
    _ty: PhantomData<T>,
}

impl<'a, T: Scalar + raw::sealed::Pod> Column<'a, T> {
    #[inline]
    pub fn new(msg: Message<'a>, offset: u32, len: u32) -> Result<Column<'a, T>> {
        let bytes = msg.slice(offset, len as u64 * T::SIZE as u64)?;
        Ok(Column { bytes, len, _ty: PhantomData })
    }

    #[inline]
    pub fn len(&self) -> u32 {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i`, or `None` past the end.
    #[inline]
    pub fn get(&self, i: u32) -> Option<T> {
        let start = i as usize * T::SIZE as usize;
        self.bytes.get(start..start + T::SIZE as usize).map(T::from_le_slice)
    }

    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        self.bytes.chunks_exact(T::SIZE as usize).map(T::from_le_slice)
    }

    /// The column as a native slice: on little-endian hosts when the bytes are
    /// aligned for `T` (always, for a message in a 64-byte-aligned buffer).
    #[inline]
    pub fn as_slice(&self) -> Option<&'a [T]> {
        if cfg!(target_endian = "big") {
            return None;
        }
        let ptr = self.bytes.as_ptr();
        if ptr.align_offset(core::mem::align_of::<T>()) != 0 {
            return None;
        }
        // SAFETY: `bytes` holds exactly `len * size_of::<T>()` initialised bytes
        // borrowed for 'a; the pointer is aligned for `T` (checked above); `T` is
        // a sealed plain-old-data type (integers and floats) for which every bit
        // pattern is valid, and the host is little-endian, so the in-memory
        // representation equals the wire encoding.
        Some(unsafe { core::slice::from_raw_parts(ptr.cast::<T>(), self.len as usize) })
    }
}
