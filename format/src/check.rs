//! The steps of whole-message validation (FORMAT.md §9) that do not depend
//! on the schema: limits, objects and their overlaps, dynamic struct
//! headers, strings, SoA directories and bunch tables.
//!
//! Owns: [`Limits`] and [`Checker`], the state of one validation. Both the
//! dynamic validator (`validate`, which walks a `Layout`) and the validators
//! `gen rust` generates per type (`FooView::validate`, the walk unrolled with
//! the layout's constants) are built on it, so both report the same first
//! error for the same bytes. A checker keeps the first `N` objects inline:
//! a message whose type bounds its object count (the generated validators
//! pick `N` from the layout) is validated without a heap allocation.
//!
//! Does not own: what a type is (the caller decides which bytes to check as
//! what) or reading values (`view`, `typed`).

use alloc::vec::Vec;

use crate::error::{Error, ErrorKind, Result};
use crate::raw::{self, align_up};
use crate::view::{Message, Slot, Soa};

/// Limits on the work validation does (FORMAT.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Offsets followed from the root, at most.
    pub max_depth: u32,
    /// Sum of every object's extent plus every array's length, at most.
    pub max_visit: u64,
    /// Entries of one column directory or bunch table, at most.
    pub max_columns: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

impl Limits {
    /// The defaults of FORMAT.md §9.
    pub const DEFAULT: Limits = Limits { max_depth: 64, max_visit: 1 << 28, max_columns: 1024 };
}

/// Column directories of up to this many entries are walked in hash order
/// without storage; larger ones are sorted on the heap.
const INLINE_COLUMNS: usize = 16;

/// A list whose first `N` items live inline; past `N` they all move to the heap.
#[derive(Debug)]
pub(crate) struct InlineFirst<T, const N: usize> {
    inline: [T; N],
    len: usize,
    heap: Vec<T>,
}

impl<T: Copy + Default, const N: usize> Default for InlineFirst<T, N> {
    #[inline]
    fn default() -> Self {
        InlineFirst { inline: [T::default(); N], len: 0, heap: Vec::new() }
    }
}

impl<T: Copy + Default + Ord, const N: usize> InlineFirst<T, N> {
    #[inline]
    pub(crate) fn push(&mut self, item: T) {
        match self.inline.get_mut(self.len) {
            Some(slot) if self.heap.is_empty() => {
                *slot = item;
                self.len += 1;
            }
            _ => {
                if self.heap.is_empty() {
                    self.heap.reserve(N.max(8) * 2);
                    self.heap.extend_from_slice(self.inline.get(..self.len).unwrap_or_default());
                }
                self.heap.push(item);
            }
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        if self.heap.is_empty() { self.inline.get(..self.len).unwrap_or_default() } else { self.heap.as_slice() }
    }

    #[cfg(test)]
    pub(crate) fn on_heap(&self) -> bool {
        !self.heap.is_empty()
    }

    /// Every item, sorted.
    #[inline]
    pub(crate) fn sorted(&mut self) -> &[T] {
        let all = if self.heap.is_empty() {
            self.inline.get_mut(..self.len).unwrap_or_default()
        } else {
            self.heap.as_mut_slice()
        };
        all.sort_unstable();
        all
    }
}

/// The state of one validation: the message, the limits and what they have
/// counted so far, and the objects seen (the first `N` inline).
#[derive(Debug)]
pub struct Checker<'m, const N: usize> {
    msg: Message<'m>,
    limits: Limits,
    visited: u64,
    depth: u32,
    /// (start, end) of every object seen.
    objects: InlineFirst<(u32, u32), N>,
}

impl<'m, const N: usize> Checker<'m, N> {
    /// Checks the framing (§2) and starts a validation of `bytes`.
    #[inline]
    pub fn new(bytes: &'m [u8], limits: &Limits) -> Result<Self> {
        Ok(Checker { msg: Message::new(bytes)?, limits: *limits, visited: 0, depth: 0, objects: InlineFirst::default() })
    }

    #[inline]
    pub fn msg(&self) -> Message<'m> {
        self.msg
    }

    #[inline]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counts `amount` towards `Limits::max_visit`.
    #[inline]
    pub fn visit(&mut self, amount: u64, at: u32) -> Result<()> {
        self.visited = self.visited.saturating_add(amount);
        if self.visited > self.limits.max_visit {
            return Err(Error::new(ErrorKind::VisitLimit { visited: self.visited }, at));
        }
        Ok(())
    }

    /// Entering an object through an offset; [`Checker::leave`] after.
    #[inline]
    pub fn follow(&mut self, at: u32) -> Result<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(Error::new(ErrorKind::DepthLimit { depth: self.depth }, at));
        }
        Ok(())
    }

    #[inline]
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Checks an object of `extent` bytes at `at` and records it (FORMAT.md §3).
    #[inline]
    pub fn object(&mut self, at: u32, extent: u64, align: u32) -> Result<()> {
        if extent == 0 {
            if at != 0 {
                return Err(Error::new(ErrorKind::BadOffset { expected_zero: true }, at));
            }
            return Ok(());
        }
        if at == 0 {
            return Err(Error::new(ErrorKind::BadOffset { expected_zero: false }, at));
        }
        if !at.is_multiple_of(align) {
            return Err(Error::new(ErrorKind::Misaligned { align }, at));
        }
        self.msg.slice(at, extent)?;
        self.visit(extent, at)?;
        self.objects.push((at, (at as u64 + extent) as u32));
        Ok(())
    }

    /// An array block of `bytes` bytes (padded to 64) at `at`.
    #[inline]
    pub fn block(&mut self, at: u32, bytes: u64) -> Result<()> {
        self.object(at, align_up(bytes, raw::BLOCK_ALIGN as u64), raw::BLOCK_ALIGN)
    }

    /// The last check: no two objects overlap, none overlaps the header.
    #[inline]
    pub fn finish(&mut self) -> Result<()> {
        // A top-down writer lays objects out in the order they are walked:
        // then there is nothing to sort.
        let objects = if self.objects.as_slice().is_sorted() { self.objects.as_slice() } else { self.objects.sorted() };
        let mut prev = (0u32, raw::MESSAGE_HEADER_SIZE);
        for &(start, end) in objects {
            if start < prev.1 {
                return Err(Error::new(ErrorKind::Overlap { other: prev.0 }, start));
            }
            prev = (start, end);
        }
        Ok(())
    }

    /// Enters the dynamic struct body at `at` (not 0): follows the offset,
    /// checks the header and the body as an object, and returns the bytes
    /// its writer used. [`Checker::leave`] after its fields.
    #[inline]
    pub fn struct_body(&mut self, at: u32) -> Result<u64> {
        self.follow(at)?;
        // `DynamicStruct::at` (header read and checked, body in bounds),
        // then `object` without what those checks already cover: a valid
        // header has a size of at least 8 and `at` is not 0.
        let header = raw::StructHeader(raw::read_u32(self.msg.bytes(), at)?);
        if !header.is_valid() {
            return Err(Error::new(ErrorKind::BadStructHeader { header: header.0 }, at));
        }
        let size = header.size();
        self.msg.slice(at, size)?;
        if at == 0 {
            return Err(Error::new(ErrorKind::BadOffset { expected_zero: false }, at));
        }
        if !at.is_multiple_of(raw::OBJECT_ALIGN) {
            return Err(Error::new(ErrorKind::Misaligned { align: raw::OBJECT_ALIGN }, at));
        }
        self.visit(size, at)?;
        self.objects.push((at, (at as u64 + size) as u32));
        Ok(header.used())
    }

    /// The out-of-line form (root, union payload) at `at` of a type that is
    /// not a dynamic struct: `size` bytes. Returns whether there are bytes to
    /// check; [`Checker::leave`] after them.
    #[inline]
    pub fn out_of_line(&mut self, follow_at: u32, at: u32, size: u32) -> Result<bool> {
        self.follow(follow_at)?;
        self.object(at, size as u64, raw::OBJECT_ALIGN)?;
        Ok(size > 0)
    }

    /// The array slot at `at`, followed: [`Checker::leave`] after the array.
    #[inline]
    pub fn enter_slot(&mut self, at: u32) -> Result<Slot> {
        let slot = self.msg.slot(at)?;
        self.follow(at)?;
        Ok(slot)
    }

    /// A `[]u8 #string` (`utf16`: `[]u16 #string`) whose slot is at `at`.
    pub fn string(&mut self, at: u32, utf16: bool) -> Result<()> {
        let slot = self.enter_slot(at)?;
        let unit = if utf16 { 2 } else { 1 };
        self.block(slot.offset, slot.capacity as u64 * unit)?;
        let bytes = self.msg.slice(slot.offset, slot.length as u64 * unit)?;
        if utf16 {
            let units = bytes.chunks_exact(2).map(<u16 as raw::Scalar>::from_le_slice);
            if char::decode_utf16(units).any(|r| r.is_err()) {
                return Err(Error::new(ErrorKind::InvalidUtf16, slot.offset));
            }
        } else if core::str::from_utf8(bytes).is_err() {
            return Err(Error::new(ErrorKind::InvalidUtf8, slot.offset));
        }
        self.leave();
        Ok(())
    }

    /// The start of a plain array of `elem_size`-byte elements: its length
    /// counted, its block checked.
    #[inline]
    pub fn plain_array(&mut self, slot: Slot, elem_size: u32) -> Result<()> {
        self.visit(slot.length as u64, slot.offset)?;
        self.block(slot.offset, slot.capacity as u64 * elem_size as u64)
    }

    /// The column directory of an SoA array (FORMAT.md §6.3), its length
    /// counted: `None` when the array has no storage (capacity 0). The
    /// entries come sorted by hash, duplicates rejected; the caller checks
    /// each one ([`Checker::column`], [`Checker::unknown_column`]).
    #[inline]
    pub fn soa_directory(&mut self, slot: Slot) -> Result<Option<Directory<'m>>> {
        self.visit(slot.length as u64, slot.offset)?;
        if slot.capacity == 0 {
            self.object(slot.offset, 0, raw::BLOCK_ALIGN)?;
            return Ok(None);
        }
        let dir = slot.offset;
        let n: u32 = self.msg.scalar(dir)?;
        if n > self.limits.max_columns {
            return Err(Error::new(ErrorKind::TooManyColumns { count: n }, dir));
        }
        self.block(dir, 4 + 8 * n as u64)?;
        let soa = slot.soa(self.msg)?;
        // Entries are checked in hash order. A writer listing its columns in
        // hash order (or one column) needs nothing more; a small directory
        // is walked in that order by selection, without storage; a large
        // one is sorted.
        let mut increasing = true;
        let mut previous: Option<u32> = None;
        for j in 0..n {
            let (hash, _) = soa.entry(j)?;
            if previous.is_some_and(|p| hash <= p) {
                increasing = false;
                break;
            }
            previous = Some(hash);
        }
        if increasing {
            return Ok(Some(Directory { soa, n, order: Order::AsListed }));
        }
        let order = if n as usize <= INLINE_COLUMNS {
            // the first duplicate in sorted order, as sorting would find it
            let mut duplicate: Option<(u32, u32, u32)> = None;
            for j in 0..n {
                let (hash, _) = soa.entry(j)?;
                if duplicate.is_some_and(|d| d.0 <= hash) {
                    continue;
                }
                // the entries with this hash, in (offset, position) order
                let mut first: Option<(u32, u32)> = None;
                let mut second: Option<(u32, u32)> = None;
                for i in 0..n {
                    let (h, offset) = soa.entry(i)?;
                    if h != hash {
                        continue;
                    }
                    let e = (offset, i);
                    if first.is_none_or(|f| e < f) {
                        second = first;
                        first = Some(e);
                    } else if second.is_none_or(|s| e < s) {
                        second = Some(e);
                    }
                }
                if let Some((_, i)) = second {
                    duplicate = Some((hash, 0, dir + 4 + 4 * i));
                }
            }
            if let Some((hash, _, at)) = duplicate {
                return Err(Error::new(ErrorKind::DuplicateColumn { hash }, at));
            }
            Order::Select
        } else {
            let mut entries = Vec::with_capacity(n as usize);
            for j in 0..n {
                let (hash, offset) = soa.entry(j)?;
                entries.push((hash, offset, dir + 4 + 4 * j));
            }
            entries.sort_unstable();
            for pair in entries.windows(2) {
                if let [a, b] = pair
                    && a.0 == b.0
                {
                    return Err(Error::new(ErrorKind::DuplicateColumn { hash: a.0 }, b.2));
                }
            }
            Order::Sorted(entries)
        };
        Ok(Some(Directory { soa, n, order }))
    }

    /// A known column of `elem_size`-byte elements at `offset` of the SoA
    /// array in `slot`.
    #[inline]
    pub fn column(&mut self, slot: Slot, offset: u32, elem_size: u32) -> Result<()> {
        self.block(offset, slot.capacity as u64 * elem_size as u64)
    }

    /// A column from a newer writer, skipped: it must be a plausible block.
    #[inline]
    pub fn unknown_column(&self, offset: u32, entry_at: u32) -> Result<()> {
        if !offset.is_multiple_of(raw::BLOCK_ALIGN) || offset > self.msg.len() {
            return Err(Error::new(ErrorKind::Misaligned { align: raw::BLOCK_ALIGN }, entry_at));
        }
        Ok(())
    }

    /// The SoA columns of a union array (tags, payloads) once the directory
    /// is checked: both must be there when the array has elements.
    #[inline]
    pub fn union_columns(&self, slot: Slot, tags: u32, payloads: u32, payload_size: u32) -> Result<()> {
        if slot.length > 0 && (tags == 0 || (payloads == 0 && payload_size > 0)) {
            return Err(Error::new(ErrorKind::BadOffset { expected_zero: false }, slot.offset));
        }
        Ok(())
    }

    /// The bunch table of a bunch array (FORMAT.md §8), its length counted:
    /// `None` when the array is empty, else the table's offset and entry
    /// count. Each entry is then checked with [`Checker::bunch_entry`].
    #[inline]
    pub fn bunch_table(&mut self, slot: Slot) -> Result<Option<(u32, u32)>> {
        self.visit(slot.length as u64, slot.offset)?;
        if slot.capacity != slot.length {
            return Err(Error::new(
                ErrorKind::BunchLength { expected: slot.length as u64, found: slot.capacity as u64 },
                slot.offset,
            ));
        }
        if slot.length == 0 {
            self.object(slot.offset, 0, raw::BLOCK_ALIGN)?;
            return Ok(None);
        }
        let table = slot.offset;
        let m: u32 = self.msg.scalar(table)?;
        if m > self.limits.max_columns {
            return Err(Error::new(ErrorKind::TooManyColumns { count: m }, table));
        }
        self.block(table, raw::BUNCH_HEADER_SIZE as u64 + raw::BUNCH_ENTRY_SIZE as u64 * m as u64)?;
        Ok(Some((table, m)))
    }

    /// Entry `j` of the bunch table at `table`: its offset and tag, which
    /// must exceed `previous` (the tag before it).
    #[inline]
    pub fn bunch_entry(&self, table: u32, j: u32, previous: &mut Option<u32>) -> Result<(u32, u32)> {
        let entry = table + raw::BUNCH_HEADER_SIZE + raw::BUNCH_ENTRY_SIZE * j;
        let tag: u32 = self.msg.scalar(entry)?;
        if previous.is_some_and(|p| tag <= p) {
            return Err(Error::new(ErrorKind::BunchOrder { tag }, entry));
        }
        *previous = Some(tag);
        Ok((entry, tag))
    }

    /// A bunch entry of a payload-less case: `length` values, no storage.
    #[inline]
    pub fn empty_bunch_entry(&mut self, entry: u32, inner: Slot) -> Result<()> {
        self.visit(inner.length as u64, entry)?;
        self.object(inner.offset, 0, raw::BLOCK_ALIGN)
    }
}

/// The undeclared tag error of a union tag or bunch entry.
#[inline]
pub fn unknown_tag(tag: u64, at: u32) -> Error {
    Error::new(ErrorKind::UnknownTag { tag: tag as u32 }, at)
}

/// A bunch table whose entries hold `total` values, for a slot of `length`.
#[inline]
pub fn bunch_total(total: u64, length: u32, table: u32) -> Result<()> {
    if total != length as u64 {
        return Err(Error::new(ErrorKind::BunchLength { expected: length as u64, found: total }, table));
    }
    Ok(())
}

/// An SoA column directory whose entries are checked in hash order
/// (FORMAT.md §6.3): `next` gives them in that order.
#[derive(Debug)]
pub struct Directory<'m> {
    soa: Soa<'m>,
    n: u32,
    order: Order,
}

/// How a [`Directory`] finds its entries in hash order.
#[derive(Debug)]
enum Order {
    /// The message lists them in hash order, without duplicates.
    AsListed,
    /// A small directory: each next entry is the smallest hash above the
    /// previous one (no duplicates).
    Select,
    /// A large directory, sorted: (hash, offset, where the hash is).
    Sorted(Vec<(u32, u32, u32)>),
}

/// Where a walk over a [`Directory`] is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    k: u32,
    previous: Option<u32>,
}

impl Directory<'_> {
    /// Number of entries.
    #[inline]
    pub fn len(&self) -> u32 {
        self.n
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The directory's offset.
    #[inline]
    pub fn offset(&self) -> u32 {
        self.soa.offset()
    }

    /// Whether the directory lists `hash`.
    #[inline]
    pub fn has(&self, hash: u32) -> Result<bool> {
        Ok(self.soa.find(hash)?.is_some())
    }

    /// The next entry in hash order: (hash, column offset, where the hash is).
    #[inline]
    pub fn next(&self, cursor: &mut Cursor) -> Result<Option<(u32, u32, u32)>> {
        if cursor.k >= self.n {
            return Ok(None);
        }
        let k = cursor.k;
        cursor.k += 1;
        let entry = match &self.order {
            Order::AsListed => {
                let (hash, offset) = self.soa.entry(k)?;
                Some((hash, offset, self.offset() + 4 + 4 * k))
            }
            Order::Sorted(sorted) => sorted.get(k as usize).copied(),
            Order::Select => {
                let mut best: Option<(u32, u32, u32)> = None;
                for j in 0..self.n {
                    let (hash, offset) = self.soa.entry(j)?;
                    if cursor.previous.is_some_and(|p| hash <= p) || best.is_some_and(|b| b.0 <= hash) {
                        continue;
                    }
                    best = Some((hash, offset, self.offset() + 4 + 4 * j));
                }
                cursor.previous = best.map(|b| b.0);
                best
            }
        };
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::{Checker, Cursor, InlineFirst, Limits};
    use crate::error::ErrorKind;
    use crate::view::Slot;
    use alloc::vec::Vec;

    /// A message holding one SoA directory at 64 with `hashes`, column `j`
    /// at offset `128 + 64 j` (one element of 4 bytes each).
    fn directory(hashes: &[u32]) -> Vec<u8> {
        let n = hashes.len() as u32;
        let mut m = alloc::vec![0u8; 128 + 64 * hashes.len()];
        m[..4].copy_from_slice(&0x0Cu32.to_le_bytes());
        m[64..68].copy_from_slice(&n.to_le_bytes());
        for (j, h) in hashes.iter().enumerate() {
            m[68 + 4 * j..72 + 4 * j].copy_from_slice(&h.to_le_bytes());
            let off = 128 + 64 * j as u32;
            let at = 68 + 4 * hashes.len() + 4 * j;
            m[at..at + 4].copy_from_slice(&off.to_le_bytes());
        }
        m
    }

    /// The entries of `hashes` in hash order as a sort gives them, or the
    /// duplicate error a sort finds first.
    /// Entries in hash order, or the (hash, offset) of a duplicate error.
    type Walked = Result<Vec<(u32, u32, u32)>, (u32, u32)>;

    fn walk(hashes: &[u32]) -> Walked {
        let bytes = directory(hashes);
        let mut c = Checker::<'_, 4>::new(&bytes, &Limits::DEFAULT).unwrap();
        let slot = Slot { offset: 64, length: 1, capacity: 1 };
        let dir = match c.soa_directory(slot) {
            Ok(d) => d.unwrap(),
            Err(e) => match e.kind {
                ErrorKind::DuplicateColumn { hash } => return Err((hash, e.offset)),
                other => panic!("{other:?}"),
            },
        };
        let mut cursor = Cursor::default();
        let mut out = Vec::new();
        while let Some(e) = dir.next(&mut cursor).unwrap() {
            out.push(e);
        }
        Ok(out)
    }

    fn sorted_reference(hashes: &[u32]) -> Walked {
        let mut all: Vec<(u32, u32, u32)> =
            hashes.iter().enumerate().map(|(j, &h)| (h, 128 + 64 * j as u32, 68 + 4 * j as u32)).collect();
        all.sort_unstable();
        for w in all.windows(2) {
            if w[0].0 == w[1].0 {
                return Err((w[0].0, w[1].2));
            }
        }
        Ok(all)
    }

    #[test]
    fn directories_are_walked_in_hash_order_as_a_sort_would() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |bound: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % bound
        };
        // in order, out of order (small: by selection; large: sorted), duplicates
        let mut cases: Vec<Vec<u32>> = alloc::vec![alloc::vec![1, 2, 3], alloc::vec![3, 1, 2], alloc::vec![5, 1, 5, 1]];
        for _ in 0..400 {
            let n = 1 + next(24) as usize;
            let range = if next(2) == 0 { 4 * n as u64 } else { 1 << 32 };
            cases.push((0..n).map(|_| next(range) as u32).collect());
        }
        for hashes in cases {
            assert_eq!(walk(&hashes), sorted_reference(&hashes), "{hashes:?}");
        }
    }

    #[test]
    fn objects_stay_inline_then_move_to_the_heap_in_order() {
        const INLINE: usize = 16;
        let mut objects = InlineFirst::<(u32, u32), INLINE>::default();
        let ranges: Vec<(u32, u32)> = (0..40u32).rev().map(|i| (64 * i + 64, 64 * i + 100)).collect();
        for (i, &range) in ranges.iter().enumerate() {
            objects.push(range);
            assert_eq!(!objects.on_heap(), i < INLINE, "after {} objects", i + 1);
        }
        let mut want = ranges.clone();
        want.sort_unstable();
        assert_eq!(objects.sorted(), want.as_slice());
        let mut few = InlineFirst::<(u32, u32), INLINE>::default();
        for &range in ranges.iter().take(3) {
            few.push(range);
        }
        assert_eq!(few.sorted(), &[ranges[2], ranges[1], ranges[0]]);
    }
}
