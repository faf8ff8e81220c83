//! Whole-message validation under limits (FORMAT.md §9).
//!
//! Owns: [`validate`] and [`Limits`]. The walk starts at the root, checks
//! every object (bounds, alignment, offset-0 rule), every header, slot,
//! directory, bunch table and value, and finally that no two objects overlap.
//! Depth, bytes-and-elements visited and directory sizes are limited, so a
//! hostile message costs at most `max_visit` work.
//!
//! Does not own: building values (`value::decode` runs this first) or reading
//! single fields (`view`).

use std::vec;
use std::vec::Vec;

use karmem_idl::ast::Prim;

use crate::error::{Error, ErrorKind, Result};
use crate::layout::{ArrayForm, FieldInfo, Kind, Layout, Leaf, StructInfo, TypeId, UnionInfo};
use crate::raw::{self, align_up};
use crate::view::{Message, Slot};

/// Limits on the work `validate` does (FORMAT.md §9).
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
        Limits { max_depth: 64, max_visit: 1 << 28, max_columns: 1024 }
    }
}

/// Checks that `bytes` is a valid message whose root has type `root`.
pub fn validate(bytes: &[u8], layout: &Layout, root: TypeId, limits: &Limits) -> Result<()> {
    let msg = Message::new(bytes)?;
    let mut w = Walker {
        layout,
        msg,
        limits: *limits,
        visited: 0,
        depth: 0,
        objects: Objects::default(),
        zero_costs: Vec::new(),
    };
    let at = msg.root();
    match layout.as_struct(root) {
        Some(s) if s.dynamic => w.dynamic_struct(s, at)?,
        _ => {
            w.follow(at)?;
            let size = layout.get(root).size;
            w.object(at, size as u64, raw::OBJECT_ALIGN)?;
            if size > 0 {
                w.value(root, at)?;
            }
            w.depth -= 1;
        }
    }
    w.check_overlaps()
}

struct Walker<'l, 'm> {
    layout: &'l Layout,
    msg: Message<'m>,
    limits: Limits,
    visited: u64,
    depth: u32,
    /// (start, end) of every object seen.
    objects: Objects,
    /// Per type: what a reader materialises for its zero value (allocated
    /// at the first absent field, so complete messages never pay for it).
    zero_costs: Vec<ZeroCost>,
}

/// Objects a small message has fit here without a heap allocation.
const INLINE_OBJECTS: usize = 16;

/// Column directory entries checked without a heap allocation.
const INLINE_COLUMNS: usize = 16;

/// The (start, end) ranges of the objects a message holds.
type Objects = InlineFirst<(u32, u32), INLINE_OBJECTS>;

/// A list whose first `N` items live inline, so validating a small message
/// allocates nothing; past `N` they all move to the heap.
struct InlineFirst<T, const N: usize> {
    inline: [T; N],
    len: usize,
    heap: Vec<T>,
}

impl<T: Copy + Default, const N: usize> Default for InlineFirst<T, N> {
    fn default() -> Self {
        InlineFirst { inline: [T::default(); N], len: 0, heap: Vec::new() }
    }
}

impl<T: Copy + Default + Ord, const N: usize> InlineFirst<T, N> {
    fn push(&mut self, item: T) {
        match self.inline.get_mut(self.len) {
            Some(slot) if self.heap.is_empty() => {
                *slot = item;
                self.len += 1;
            }
            _ => {
                if self.heap.is_empty() {
                    self.heap.reserve(N * 2);
                    self.heap.extend_from_slice(self.inline.get(..self.len).unwrap_or_default());
                }
                self.heap.push(item);
            }
        }
    }

    /// Every item, sorted.
    fn sorted(&mut self) -> &[T] {
        let all = if self.heap.is_empty() {
            self.inline.get_mut(..self.len).unwrap_or_default()
        } else {
            self.heap.as_mut_slice()
        };
        all.sort_unstable();
        all
    }
}

/// The memo of [`Walker::zero_cost`].
#[derive(Debug, Clone, Copy)]
enum ZeroCost {
    Unknown,
    /// Being computed: a type whose zero value contains itself (through
    /// dynamic structs), which no reader can build; it counts 0 here.
    Open,
    Known(u64),
}

impl Walker<'_, '_> {
    fn visit(&mut self, amount: u64, at: u32) -> Result<()> {
        self.visited = self.visited.saturating_add(amount);
        if self.visited > self.limits.max_visit {
            return Err(Error::new(ErrorKind::VisitLimit { visited: self.visited }, at));
        }
        Ok(())
    }

    /// Entering an object through an offset; callers decrement `depth` after.
    fn follow(&mut self, at: u32) -> Result<()> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(Error::new(ErrorKind::DepthLimit { depth: self.depth }, at));
        }
        Ok(())
    }

    /// Checks an object of `extent` bytes at `at` and records it (FORMAT.md §3).
    fn object(&mut self, at: u32, extent: u64, align: u32) -> Result<()> {
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

    fn check_overlaps(&mut self) -> Result<()> {
        let objects = self.objects.sorted();
        let mut prev = (0u32, raw::MESSAGE_HEADER_SIZE);
        for &(start, end) in objects {
            if start < prev.1 {
                return Err(Error::new(ErrorKind::Overlap { other: prev.0 }, start));
            }
            prev = (start, end);
        }
        Ok(())
    }

    fn dynamic_struct(&mut self, s: &StructInfo, at: u32) -> Result<()> {
        // A field the message leaves out reads as its default or zero value,
        // which a reader materialises: it is charged as if it were stored,
        // zero values of nested dynamic structs and fixed arrays included.
        if at == 0 {
            // the empty struct: every field absent
            let mut cost = 0u64;
            for f in &s.fields {
                cost = cost.saturating_add(self.absent_field_cost(f));
            }
            return self.visit(cost, at);
        }
        self.follow(at)?;
        let body = self.msg.dynamic_struct(at)?;
        let size = raw::StructHeader(self.msg.scalar(at)?).size();
        self.object(at, size, raw::OBJECT_ALIGN)?;
        for f in &s.fields {
            let fsize = self.layout.get(f.ty).size;
            match body.field(f.offset, fsize) {
                Some(abs) => self.value(f.ty, abs)?,
                None => {
                    let cost = self.absent_field_cost(f);
                    self.visit(cost, at)?;
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// What reading a dynamic struct's absent field `f` materialises: its
    /// default (its size) or its zero value.
    fn absent_field_cost(&mut self, f: &FieldInfo) -> u64 {
        match f.default {
            Some(_) => u64::from(self.layout.get(f.ty).size),
            None => self.zero_cost(f.ty),
        }
    }

    /// Bytes a reader materialises for the zero value of `ty` (at least one
    /// per value): its size, with dynamic structs expanded to their fields'
    /// zero values and fixed arrays to `len` of their element's. Memoised
    /// per type, so a schema that nests wide costs one pass.
    fn zero_cost(&mut self, ty: TypeId) -> u64 {
        let index = ty.0 as usize;
        if self.zero_costs.is_empty() {
            self.zero_costs = vec![ZeroCost::Unknown; self.layout.len()];
        }
        match self.zero_costs.get(index) {
            Some(ZeroCost::Known(cost)) => return *cost,
            Some(ZeroCost::Open) | None => return 0,
            Some(ZeroCost::Unknown) => {}
        }
        if let Some(slot) = self.zero_costs.get_mut(index) {
            *slot = ZeroCost::Open;
        }
        let layout = self.layout;
        let info = layout.get(ty);
        let own = u64::from(info.size.max(1));
        let cost = match &info.kind {
            Kind::Struct(s) => {
                let mut sum = if s.dynamic { u64::from(s.body_size.max(4)) } else { 0 };
                for f in &s.fields {
                    let one = if s.dynamic { self.absent_field_cost(f) } else { self.zero_cost(f.ty) };
                    sum = sum.saturating_add(one);
                }
                sum.max(own)
            }
            Kind::FixedArray { elem, len } => self.zero_cost(*elem).saturating_mul(u64::from(*len)).max(own),
            Kind::Union(u) => {
                let payload = u.cases.iter().find(|c| c.tag == 0).and_then(|c| c.ty);
                own.saturating_add(payload.map_or(0, |t| self.zero_cost(t)))
            }
            Kind::Result { ok: Some(t), .. } => own.saturating_add(self.zero_cost(*t)),
            _ => own,
        };
        if let Some(slot) = self.zero_costs.get_mut(index) {
            *slot = ZeroCost::Known(cost);
        }
        cost
    }

    /// Whether values of `ty` can be invalid or have children (else skip them).
    fn needs_walk(&self, ty: TypeId) -> bool {
        match &self.layout.get(ty).kind {
            Kind::Prim(p) => matches!(p, Prim::Bool | Prim::Char),
            Kind::Handle { .. } => false,
            Kind::Flags(f) => f.flags.len() % 8 != 0,
            Kind::Struct(s) if !s.dynamic => s.fields.iter().any(|f| self.needs_walk(f.ty)),
            Kind::FixedArray { elem, len } => *len > 0 && self.needs_walk(*elem),
            _ => true,
        }
    }

    /// Checks the inline value of type `ty` at `at` (inside an object already checked).
    fn value(&mut self, ty: TypeId, at: u32) -> Result<()> {
        let layout = self.layout;
        let info = layout.get(ty);
        let msg = self.msg;
        match &info.kind {
            Kind::Prim(Prim::Bool) => {
                msg.bool(at)?;
            }
            Kind::Prim(Prim::Char) => {
                msg.char(at)?;
            }
            Kind::Prim(_) | Kind::Handle { .. } => {}
            Kind::Enum(e) => {
                let v = msg.uint(at, e.width)?;
                if !e.cases.iter().any(|c| c.1 == v) {
                    return Err(Error::new(ErrorKind::InvalidEnum { value: v }, at));
                }
            }
            Kind::Flags(f) => {
                let bytes = msg.slice(at, info.size as u64)?;
                let n = f.flags.len();
                for (i, b) in bytes.iter().enumerate() {
                    let valid_bits = n.saturating_sub(i * 8).min(8);
                    let mask = if valid_bits == 8 { 0xFF } else { (1u8 << valid_bits) - 1 };
                    if b & !mask != 0 {
                        return Err(Error::new(ErrorKind::InvalidFlags, at + i as u32));
                    }
                }
            }
            Kind::Struct(s) if s.dynamic => {
                let off = msg.scalar(at)?;
                self.dynamic_struct(s, off)?;
            }
            Kind::Struct(s) => {
                for f in &s.fields {
                    if self.needs_walk(f.ty) {
                        self.value(f.ty, at + f.offset)?;
                    }
                }
            }
            Kind::Union(u) => {
                let tag = msg.uint(at, u.tag_width)?;
                self.union_parts(u, tag, at, at + u.payload_offset)?;
            }
            Kind::String { utf16 } => {
                let slot = msg.slot(at)?;
                self.follow(at)?;
                let unit = if *utf16 { 2 } else { 1 };
                self.block(slot.offset, slot.capacity as u64 * unit)?;
                let bytes = msg.slice(slot.offset, slot.length as u64 * unit)?;
                if *utf16 {
                    let units = bytes.chunks_exact(2).map(<u16 as raw::Scalar>::from_le_slice);
                    if char::decode_utf16(units).any(|r| r.is_err()) {
                        return Err(Error::new(ErrorKind::InvalidUtf16, slot.offset));
                    }
                } else if core::str::from_utf8(bytes).is_err() {
                    return Err(Error::new(ErrorKind::InvalidUtf8, slot.offset));
                }
                self.depth -= 1;
            }
            Kind::Array { elem, form } => {
                let slot = msg.slot(at)?;
                self.follow(at)?;
                self.array(*elem, *form, slot)?;
                self.depth -= 1;
            }
            Kind::FixedArray { elem, len } => {
                if self.needs_walk(*elem) {
                    let size = layout.get(*elem).size;
                    self.visit(*len as u64, at)?;
                    for i in 0..*len {
                        self.value(*elem, at + i * size)?;
                    }
                }
            }
            Kind::Option { some, payload_offset } => match msg.scalar::<u8>(at)? {
                0 => {}
                1 => self.value(*some, at + payload_offset)?,
                value => return Err(Error::new(ErrorKind::InvalidDiscriminant { value }, at)),
            },
            Kind::Result { ok, err, payload_offset } => {
                let ty = match msg.scalar::<u8>(at)? {
                    0 => ok,
                    1 => err,
                    value => return Err(Error::new(ErrorKind::InvalidDiscriminant { value }, at)),
                };
                if let Some(t) = ty {
                    self.value(*t, at + payload_offset)?;
                }
            }
        }
        Ok(())
    }

    /// An array block of `bytes` bytes (padded to 64) at `at`.
    fn block(&mut self, at: u32, bytes: u64) -> Result<()> {
        self.object(at, align_up(bytes, raw::BLOCK_ALIGN as u64), raw::BLOCK_ALIGN)
    }

    fn union_parts(&mut self, u: &UnionInfo, tag: u64, tag_at: u32, payload_at: u32) -> Result<()> {
        let Some(case) = u.cases.iter().find(|c| c.tag == tag) else {
            return Err(Error::new(ErrorKind::UnknownTag { tag: tag as u32 }, tag_at));
        };
        if !u.dynamic {
            if let Some(t) = case.ty {
                self.value(t, payload_at)?;
            }
            return Ok(());
        }
        let off: u32 = self.msg.scalar(payload_at)?;
        match case.ty {
            None => {
                if off != 0 {
                    return Err(Error::new(ErrorKind::BadOffset { expected_zero: true }, payload_at));
                }
            }
            Some(t) => match self.layout.as_struct(t) {
                Some(s) if s.dynamic => self.dynamic_struct(s, off)?,
                _ => {
                    self.follow(payload_at)?;
                    let size = self.layout.get(t).size;
                    self.object(off, size as u64, raw::OBJECT_ALIGN)?;
                    if size > 0 {
                        self.value(t, off)?;
                    }
                    self.depth -= 1;
                }
            },
        }
        Ok(())
    }

    fn array(&mut self, elem: TypeId, form: ArrayForm, slot: Slot) -> Result<()> {
        let layout = self.layout;
        self.visit(slot.length as u64, slot.offset)?;
        match form {
            ArrayForm::Plain => {
                let size = layout.get(elem).size;
                self.block(slot.offset, slot.capacity as u64 * size as u64)?;
                if self.needs_walk(elem) {
                    for i in 0..slot.length {
                        self.value(elem, if size == 0 { 0 } else { slot.offset + i * size })?;
                    }
                }
            }
            ArrayForm::Soa => self.soa(elem, slot)?,
            ArrayForm::Bunch { soa } => self.bunch(elem, soa, slot)?,
        }
        Ok(())
    }

    fn soa(&mut self, elem: TypeId, slot: Slot) -> Result<()> {
        if slot.capacity == 0 {
            return self.object(slot.offset, 0, raw::BLOCK_ALIGN);
        }
        let dir = slot.offset;
        let n: u32 = self.msg.scalar(dir)?;
        if n > self.limits.max_columns {
            return Err(Error::new(ErrorKind::TooManyColumns { count: n }, dir));
        }
        self.block(dir, 4 + 8 * n as u64)?;
        let soa = slot.soa(self.msg)?;
        let mut entries = InlineFirst::<(u32, u32, u32), INLINE_COLUMNS>::default();
        for j in 0..n {
            let (hash, offset) = soa.entry(j)?;
            entries.push((hash, offset, dir + 4 + 4 * j));
        }
        let hashes = entries.sorted();
        for pair in hashes.windows(2) {
            if let [a, b] = pair
                && a.0 == b.0
            {
                return Err(Error::new(ErrorKind::DuplicateColumn { hash: a.0 }, b.2));
            }
        }
        let layout = self.layout;
        let columns = layout.columns(elem);
        let mut union_columns = [0u32; 2];
        for &(hash, offset, entry_at) in hashes {
            let Some((index, c)) = columns.iter().enumerate().find(|(_, c)| c.hash == hash) else {
                // A column from a newer writer: skipped, but it must be a plausible block.
                if offset % raw::BLOCK_ALIGN != 0 || offset > self.msg.len() {
                    return Err(Error::new(ErrorKind::Misaligned { align: raw::BLOCK_ALIGN }, entry_at));
                }
                continue;
            };
            self.block(offset, slot.capacity as u64 * c.size as u64)?;
            match c.leaf {
                Leaf::Field(t) => {
                    if self.needs_walk(t) {
                        for i in 0..slot.length {
                            self.value(t, if c.size == 0 { 0 } else { offset + i * c.size })?;
                        }
                    }
                }
                Leaf::UnionTag | Leaf::UnionPayload => {
                    if let Some(slot_ref) = union_columns.get_mut(index) {
                        *slot_ref = offset;
                    }
                }
            }
        }
        // a column the message leaves out reads as zero values, one per
        // element: charge them as if they were stored, or a few bytes could
        // stand for millions of elements
        for c in columns {
            if hashes.iter().all(|&(hash, _, _)| hash != c.hash) {
                let one = match c.leaf {
                    Leaf::Field(t) => self.zero_cost(t).max(u64::from(c.size)),
                    Leaf::UnionTag | Leaf::UnionPayload => u64::from(c.size.max(1)),
                };
                self.visit(u64::from(slot.length).saturating_mul(one), dir)?;
            }
        }
        if let Kind::Union(u) = &layout.get(elem).kind {
            let [tags, payloads] = union_columns;
            if slot.length > 0 && (tags == 0 || (payloads == 0 && u.payload_size > 0)) {
                return Err(Error::new(ErrorKind::BadOffset { expected_zero: false }, dir));
            }
            for i in 0..slot.length {
                let tag_at = tags + i * u.tag_width;
                let tag = self.msg.uint(tag_at, u.tag_width)?;
                self.union_parts(u, tag, tag_at, payloads + i * u.payload_size)?;
            }
        }
        Ok(())
    }

    fn bunch(&mut self, elem: TypeId, soa: bool, slot: Slot) -> Result<()> {
        let layout = self.layout;
        let Kind::Union(u) = &layout.get(elem).kind else { return Ok(()) };
        if slot.capacity != slot.length {
            return Err(Error::new(
                ErrorKind::BunchLength { expected: slot.length as u64, found: slot.capacity as u64 },
                slot.offset,
            ));
        }
        if slot.length == 0 {
            return self.object(slot.offset, 0, raw::BLOCK_ALIGN);
        }
        let table = slot.offset;
        let m: u32 = self.msg.scalar(table)?;
        if m > self.limits.max_columns {
            return Err(Error::new(ErrorKind::TooManyColumns { count: m }, table));
        }
        self.block(table, raw::BUNCH_HEADER_SIZE as u64 + raw::BUNCH_ENTRY_SIZE as u64 * m as u64)?;
        let mut total = 0u64;
        let mut previous: Option<u32> = None;
        for j in 0..m {
            let entry = table + raw::BUNCH_HEADER_SIZE + raw::BUNCH_ENTRY_SIZE * j;
            let tag: u32 = self.msg.scalar(entry)?;
            if previous.is_some_and(|p| tag <= p) {
                return Err(Error::new(ErrorKind::BunchOrder { tag }, entry));
            }
            previous = Some(tag);
            let Some(case) = u.cases.iter().find(|c| c.tag == tag as u64) else {
                return Err(Error::new(ErrorKind::UnknownTag { tag }, entry));
            };
            let inner = self.msg.slot(entry + 4)?;
            total += inner.length as u64;
            match case.ty {
                None => {
                    self.visit(inner.length as u64, entry)?;
                    self.object(inner.offset, 0, raw::BLOCK_ALIGN)?;
                }
                Some(t) => {
                    let form = if soa && layout.as_struct(t).is_some() { ArrayForm::Soa } else { ArrayForm::Plain };
                    self.follow(entry)?;
                    self.array(t, form, inner)?;
                    self.depth -= 1;
                }
            }
        }
        if total != slot.length as u64 {
            return Err(Error::new(ErrorKind::BunchLength { expected: slot.length as u64, found: total }, table));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_stay_inline_then_move_to_the_heap_in_order() {
        let mut objects = Objects::default();
        let ranges: Vec<(u32, u32)> = (0..40u32).rev().map(|i| (64 * i + 64, 64 * i + 100)).collect();
        for (i, &range) in ranges.iter().enumerate() {
            objects.push(range);
            assert_eq!(objects.heap.is_empty(), i < INLINE_OBJECTS, "after {} objects", i + 1);
        }
        let mut want = ranges.clone();
        want.sort_unstable();
        assert_eq!(objects.sorted(), want.as_slice());
        let mut few = Objects::default();
        for &range in ranges.iter().take(3) {
            few.push(range);
        }
        assert_eq!(few.sorted(), &[ranges[2], ranges[1], ranges[0]]);
    }
}
