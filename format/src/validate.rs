//! Whole-message validation under limits (FORMAT.md §9).
//!
//! Owns: [`validate`] and [`Limits`]. The walk starts at the root, checks
//! every object (bounds, alignment, offset-0 rule), every header, slot,
//! directory, bunch table and value, and finally that no two objects overlap.
//! Depth, bytes-and-elements visited and directory sizes are limited, so a
//! hostile message costs at most `max_visit` work.
//!
//! The steps that do not depend on the schema (limits, objects and
//! overlaps, headers, strings, directories, bunch tables) are
//! `check::Checker`'s, shared with the validators `gen rust` generates per
//! type, so both report the same first error.
//!
//! Does not own: building values (`value::decode` runs this first) or reading
//! single fields (`view`).

use karmem_idl::ast::Prim;

use crate::check::{self, Checker};
use crate::error::{Error, ErrorKind, Result};
use crate::layout::{ArrayForm, Kind, Layout, Leaf, StructInfo, TypeId, UnionInfo};
use crate::view::Slot;

pub use crate::check::Limits;

/// Objects a small message has fit here without a heap allocation.
const INLINE_OBJECTS: usize = 16;

/// Checks that `bytes` is a valid message whose root has type `root`.
pub fn validate(bytes: &[u8], layout: &Layout, root: TypeId, limits: &Limits) -> Result<()> {
    let mut w = Walker { layout, c: Checker::new(bytes, limits)? };
    let at = w.c.msg().root();
    match layout.as_struct(root) {
        Some(s) if s.dynamic => w.dynamic_struct(s, at)?,
        _ => {
            if w.c.out_of_line(at, at, layout.get(root).size)? {
                w.value(root, at)?;
            }
            w.c.leave();
        }
    }
    w.c.finish()
}

struct Walker<'l, 'm> {
    layout: &'l Layout,
    c: Checker<'m, INLINE_OBJECTS>,
}

impl Walker<'_, '_> {
    fn dynamic_struct(&mut self, s: &StructInfo, at: u32) -> Result<()> {
        // A field the message leaves out reads as its default or zero value,
        // which a reader materialises: it is charged as if it were stored,
        // zero values of nested dynamic structs and fixed arrays included.
        if at == 0 {
            // the empty struct: every field absent
            let mut cost = 0u64;
            for f in &s.fields {
                cost = cost.saturating_add(self.layout.absent_field_cost(f));
            }
            return self.c.visit(cost, at);
        }
        let used = self.c.struct_body(at)?;
        for f in &s.fields {
            let fsize = self.layout.get(f.ty).size;
            if f.offset as u64 + fsize as u64 <= used {
                self.value(f.ty, at + f.offset)?;
            } else {
                let cost = self.layout.absent_field_cost(f);
                self.c.visit(cost, at)?;
            }
        }
        self.c.leave();
        Ok(())
    }

    /// Checks the inline value of type `ty` at `at` (inside an object already checked).
    fn value(&mut self, ty: TypeId, at: u32) -> Result<()> {
        let layout = self.layout;
        let info = layout.get(ty);
        let msg = self.c.msg();
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
                    if layout.needs_walk(f.ty) {
                        self.value(f.ty, at + f.offset)?;
                    }
                }
            }
            Kind::Union(u) => {
                let tag = msg.uint(at, u.tag_width)?;
                self.union_parts(u, tag, at, at + u.payload_offset)?;
            }
            Kind::String { utf16 } => self.c.string(at, *utf16)?,
            Kind::Array { elem, form } => {
                let slot = self.c.enter_slot(at)?;
                self.array(*elem, *form, slot)?;
                self.c.leave();
            }
            Kind::FixedArray { elem, len } => {
                if layout.needs_walk(*elem) {
                    let size = layout.get(*elem).size;
                    self.c.visit(*len as u64, at)?;
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

    fn union_parts(&mut self, u: &UnionInfo, tag: u64, tag_at: u32, payload_at: u32) -> Result<()> {
        let Some(case) = u.cases.iter().find(|c| c.tag == tag) else {
            return Err(check::unknown_tag(tag, tag_at));
        };
        if !u.dynamic {
            if let Some(t) = case.ty {
                self.value(t, payload_at)?;
            }
            return Ok(());
        }
        let off: u32 = self.c.msg().scalar(payload_at)?;
        match case.ty {
            None => {
                if off != 0 {
                    return Err(Error::new(ErrorKind::BadOffset { expected_zero: true }, payload_at));
                }
            }
            Some(t) => match self.layout.as_struct(t) {
                Some(s) if s.dynamic => self.dynamic_struct(s, off)?,
                _ => {
                    if self.c.out_of_line(payload_at, off, self.layout.get(t).size)? {
                        self.value(t, off)?;
                    }
                    self.c.leave();
                }
            },
        }
        Ok(())
    }

    fn array(&mut self, elem: TypeId, form: ArrayForm, slot: Slot) -> Result<()> {
        let layout = self.layout;
        match form {
            ArrayForm::Plain => {
                let size = layout.get(elem).size;
                self.c.plain_array(slot, size)?;
                if layout.needs_walk(elem) {
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
        let Some(dir) = self.c.soa_directory(slot)? else { return Ok(()) };
        let layout = self.layout;
        let columns = layout.columns(elem);
        let mut union_columns = [0u32; 2];
        let mut cursor = check::Cursor::default();
        while let Some((hash, offset, entry_at)) = dir.next(&mut cursor)? {
            let Some((index, c)) = columns.iter().enumerate().find(|(_, c)| c.hash == hash) else {
                self.c.unknown_column(offset, entry_at)?;
                continue;
            };
            self.c.column(slot, offset, c.size)?;
            match c.leaf {
                Leaf::Field(t) => {
                    if layout.needs_walk(t) {
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
            if !dir.has(c.hash)? {
                self.c.visit(u64::from(slot.length).saturating_mul(layout.missing_column_cost(c)), dir.offset())?;
            }
        }
        if let Kind::Union(u) = &layout.get(elem).kind {
            let [tags, payloads] = union_columns;
            self.c.union_columns(slot, tags, payloads, u.payload_size)?;
            for i in 0..slot.length {
                let tag_at = tags + i * u.tag_width;
                let tag = self.c.msg().uint(tag_at, u.tag_width)?;
                self.union_parts(u, tag, tag_at, payloads + i * u.payload_size)?;
            }
        }
        Ok(())
    }

    fn bunch(&mut self, elem: TypeId, soa: bool, slot: Slot) -> Result<()> {
        let layout = self.layout;
        let Kind::Union(u) = &layout.get(elem).kind else { return self.c.visit(slot.length as u64, slot.offset) };
        let Some((table, m)) = self.c.bunch_table(slot)? else { return Ok(()) };
        let mut total = 0u64;
        let mut previous: Option<u32> = None;
        for j in 0..m {
            let (entry, tag) = self.c.bunch_entry(table, j, &mut previous)?;
            let Some(case) = u.cases.iter().find(|c| c.tag == tag as u64) else {
                return Err(check::unknown_tag(tag as u64, entry));
            };
            let inner = self.c.msg().slot(entry + 4)?;
            total += inner.length as u64;
            match case.ty {
                None => self.c.empty_bunch_entry(entry, inner)?,
                Some(t) => {
                    let form = if soa && layout.as_struct(t).is_some() { ArrayForm::Soa } else { ArrayForm::Plain };
                    self.c.follow(entry)?;
                    self.array(t, form, inner)?;
                    self.c.leave();
                }
            }
        }
        check::bunch_total(total, slot.length, table)
    }
}
