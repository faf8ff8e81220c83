//! Writers: a canonical ABI value in guest memory -> Karmem bytes in the
//! output message.
//!
//! Owns: the code for every type in that direction (see `transcode.rs` for
//! the checks it makes and the code shape). Addresses: `src` is an absolute
//! guest address; Karmem destinations are message *offsets* held in locals,
//! turned into addresses with `out_base` at each store, because any
//! allocation may move the output buffer. Objects are allocated parents
//! first, children depth-first in field order, like `karmem-format`'s
//! reference encoder.
//!
//! Does not own: strings (`strings.rs`), the other direction (`read.rs`).

use karmem_format::layout::{ArrayForm, ColumnInfo, Kind, Leaf, TypeId};
use karmem_format::raw::StructHeader;
use karmem_idl::ast::Prim;
use walrus::ir::{BinaryOp, InstrSeqId, UnaryOp};
use walrus::{FunctionBuilder, FunctionId, InstrSeqBuilder, LocalId, ValType};

use super::read::{canonicalize_nan, check_char, disc_width, leaf_offset, switch};
use super::{Role, Transcoder, bulk_width, prim_width};
use crate::asm::{self, Width};
use crate::canon::AbiType;

impl Transcoder<'_> {
    /// Pushes the absolute address of message offset `dst`.
    pub(super) fn out_addr(&self, b: &mut InstrSeqBuilder, dst: LocalId) {
        b.global_get(self.rt.out_base).local_get(dst).binop(BinaryOp::I32Add);
    }

    /// Emits: read the canonical value of `ty` at `src + so`, write its
    /// Karmem inline bytes at message offset `dst + do_`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_inline(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        ty: TypeId,
        src: LocalId,
        so: u32,
        dst: LocalId,
        do_: u32,
    ) {
        let m = self.env.memory;
        let layout = self.layout;
        match &layout.get(ty).kind {
            Kind::Struct(s) if s.dynamic => {
                let writer = self.helper(Role::WriteBody, ty);
                let body = self.module.locals.add(ValType::I32);
                let mut b = f.instr_seq(seq);
                asm::addr(&mut b, src, so);
                b.call(writer).local_set(body);
                self.out_addr(&mut b, dst);
                b.local_get(body);
                asm::store(&mut b, m, Width::I32, do_);
            }
            Kind::Union(u) => {
                let payload = if u.dynamic { 4 } else { u.payload_offset };
                let writer = self.helper(Role::WriteUnion, ty);
                let mut b = f.instr_seq(seq);
                asm::addr(&mut b, src, so);
                asm::addr(&mut b, dst, do_);
                asm::addr(&mut b, dst, do_ + payload);
                b.call(writer);
            }
            Kind::Array { .. } | Kind::String { .. } => {
                let writer = self.helper(Role::WriteList, ty);
                let mut b = f.instr_seq(seq);
                asm::addr(&mut b, src, so);
                asm::addr(&mut b, dst, do_);
                b.call(writer);
            }
            _ if !self.inlines(ty) => {
                let writer = self.helper(Role::Write, ty);
                let mut b = f.instr_seq(seq);
                asm::addr(&mut b, src, so);
                asm::addr(&mut b, dst, do_);
                b.call(writer);
            }
            _ => self.write_expanded(f, seq, ty, src, so, dst, do_),
        }
    }

    /// A `(src, dst_offset)` function for a type written in place.
    pub(super) fn gen_write_fn(&mut self, ty: TypeId) -> FunctionId {
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32; 2], &[]);
        f.name(format!("karmem write {}", self.layout.signature(ty)));
        let src = self.module.locals.add(ValType::I32);
        let dst = self.module.locals.add(ValType::I32);
        let body = f.func_body_id();
        self.write_expanded(&mut f, body, ty, src, 0, dst, 0);
        f.finish(vec![src, dst], &mut self.module.funcs)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_expanded(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        ty: TypeId,
        src: LocalId,
        so: u32,
        dst: LocalId,
        do_: u32,
    ) {
        let m = self.env.memory;
        let g = self.place;
        let layout = self.layout;
        let shape = self.shape(ty);
        match &layout.get(ty).kind {
            Kind::Prim(p) => {
                let width = prim_width(*p);
                let value = self.module.locals.add(width.val_type());
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(src);
                    asm::load(&mut b, g, width, so);
                    b.local_set(value);
                }
                match p {
                    // canonical lifting: any non-zero byte is true
                    Prim::Bool => {
                        f.instr_seq(seq).local_get(value).i32_const(0).binop(BinaryOp::I32Ne).local_set(value);
                    }
                    Prim::Char => check_char(f, seq, value),
                    Prim::F32 | Prim::F64 => canonicalize_nan(f, seq, value, *p == Prim::F64),
                    _ => {}
                }
                let mut b = f.instr_seq(seq);
                self.out_addr(&mut b, dst);
                b.local_get(value);
                asm::store(&mut b, m, width, do_);
            }
            Kind::Handle { .. } => {
                let mut b = f.instr_seq(seq);
                self.out_addr(&mut b, dst);
                b.local_get(src);
                asm::load(&mut b, g, Width::I32, so);
                asm::store(&mut b, m, Width::I32, do_);
            }
            Kind::Enum(e) => {
                let values: Vec<u64> = e.cases.iter().map(|(_, v)| *v).collect();
                let index = self.module.locals.add(ValType::I32);
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(src);
                    asm::load(&mut b, g, disc_width(values.len()), so);
                    b.local_tee(index).i32_const(values.len() as i32).binop(BinaryOp::I32GeU);
                }
                asm::trap_if(f, seq);
                let width = Width::for_bytes(e.width);
                let value = self.index_to_value(f, seq, index, width == Width::I64, &values);
                let mut b = f.instr_seq(seq);
                self.out_addr(&mut b, dst);
                b.local_get(value);
                asm::store(&mut b, m, width, do_);
            }
            Kind::Flags(flags) => {
                let n = flags.flags.len() as u32;
                let size = layout.get(ty).size;
                let words: Vec<(Width, u32, u32)> = if size <= 2 {
                    if size == 0 { Vec::new() } else { vec![(Width::for_bytes(size), 0, n)] }
                } else {
                    (0..size / 4).map(|i| (Width::I32, 4 * i, n.saturating_sub(32 * i).min(32))).collect()
                };
                for (width, at, bits) in words {
                    let mut b = f.instr_seq(seq);
                    self.out_addr(&mut b, dst);
                    b.local_get(src);
                    asm::load(&mut b, g, width, so + at);
                    // the canonical ABI ignores bits past the last flag
                    if bits < 32 {
                        b.i32_const(((1u64 << bits) - 1) as i32).binop(BinaryOp::I32And);
                    }
                    asm::store(&mut b, m, width, do_ + at);
                }
            }
            Kind::Struct(s) => {
                let offsets = shape.field_offsets();
                for (field, canon) in s.fields.iter().zip(offsets) {
                    self.write_inline(f, seq, field.ty, src, so + canon, dst, do_ + field.offset);
                }
            }
            Kind::FixedArray { elem, len } => {
                let ksize = layout.get(*elem).size;
                let csize = match &shape {
                    AbiType::FixedList(e, _) => e.size(),
                    _ => 0,
                };
                if bulk_width(layout, *elem).is_some() {
                    let mut b = f.instr_seq(seq);
                    self.out_addr(&mut b, dst);
                    if do_ != 0 {
                        b.i32_const(do_ as i32).binop(BinaryOp::I32Add);
                    }
                    asm::addr(&mut b, src, so);
                    b.i32_const((ksize * len) as i32).memory_copy(g, m);
                } else if *len <= 4 {
                    for i in 0..*len {
                        self.write_inline(f, seq, *elem, src, so + i * csize, dst, do_ + i * ksize);
                    }
                } else {
                    let [from, to, count, index] = [(); 4].map(|_| self.module.locals.add(ValType::I32));
                    {
                        let mut b = f.instr_seq(seq);
                        asm::addr(&mut b, src, so);
                        b.local_set(from);
                        asm::addr(&mut b, dst, do_);
                        b.local_set(to);
                        b.i32_const(*len as i32).local_set(count);
                    }
                    let body = asm::counted_loop(f, seq, count, index);
                    self.write_inline(f, body, *elem, from, 0, to, 0);
                    let mut b = f.instr_seq(body);
                    asm::bump(&mut b, from, csize as i32);
                    asm::bump(&mut b, to, ksize as i32);
                }
            }
            Kind::Option { some, payload_offset } => {
                let cpo = shape.payload_offset();
                let disc = self.load_disc(f, seq, src, so, dst, do_);
                f.instr_seq(seq).local_get(disc);
                let then = asm::if_(f, seq);
                self.write_inline(f, then, *some, src, so + cpo, dst, do_ + payload_offset);
            }
            Kind::Result { ok, err, payload_offset } => {
                let cpo = shape.payload_offset();
                let disc = self.load_disc(f, seq, src, so, dst, do_);
                f.instr_seq(seq).local_get(disc);
                let (is_err, is_ok) = asm::if_else(f, seq);
                if let Some(ok) = ok {
                    self.write_inline(f, is_ok, *ok, src, so + cpo, dst, do_ + payload_offset);
                }
                if let Some(err) = err {
                    self.write_inline(f, is_err, *err, src, so + cpo, dst, do_ + payload_offset);
                }
            }
            Kind::Union(_) | Kind::Array { .. } | Kind::String { .. } => {
                self.write_inline(f, seq, ty, src, so, dst, do_);
            }
        }
    }

    /// Emits: load an option/result discriminant (trapping unless 0 or 1)
    /// and store it; returns the local holding it.
    fn load_disc(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        src: LocalId,
        so: u32,
        dst: LocalId,
        do_: u32,
    ) -> LocalId {
        let m = self.env.memory;
        let g = self.place;
        let disc = self.module.locals.add(ValType::I32);
        {
            let mut b = f.instr_seq(seq);
            b.local_get(src);
            asm::load(&mut b, g, Width::U8, so);
            b.local_tee(disc).i32_const(1).binop(BinaryOp::I32GtU);
        }
        asm::trap_if(f, seq);
        let mut b = f.instr_seq(seq);
        self.out_addr(&mut b, dst);
        b.local_get(disc);
        asm::store(&mut b, m, Width::U8, do_);
        disc
    }

    /// Emits: map a case index (checked < count) to its declared value;
    /// returns the local (i64 when `wide`) holding it.
    fn index_to_value(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        index: LocalId,
        wide: bool,
        values: &[u64],
    ) -> LocalId {
        let value = self.module.locals.add(if wide { ValType::I64 } else { ValType::I32 });
        let base = values.first().copied().unwrap_or(0);
        let consecutive = values.iter().enumerate().all(|(i, v)| *v == base.wrapping_add(i as u64));
        if consecutive {
            let mut b = f.instr_seq(seq);
            b.local_get(index);
            if wide {
                b.unop(UnaryOp::I64ExtendUI32).i64_const(base as i64).binop(BinaryOp::I64Add);
            } else {
                b.i32_const(base as i32).binop(BinaryOp::I32Add);
            }
            b.local_set(value);
            return value;
        }
        for (i, v) in values.iter().enumerate() {
            f.instr_seq(seq).local_get(index).i32_const(i as i32).binop(BinaryOp::I32Eq);
            let hit = asm::if_(f, seq);
            if wide {
                f.instr_seq(hit).i64_const(*v as i64).local_set(value);
            } else {
                f.instr_seq(hit).i32_const(*v as i32).local_set(value);
            }
        }
        value
    }

    /// `(src) -> offset`: a canonical record -> a new dynamic struct body.
    pub(super) fn gen_write_body(&mut self, ty: TypeId) -> FunctionId {
        let m = self.env.memory;
        let rt = self.rt;
        let layout = self.layout;
        let shape = self.shape(ty);
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32], &[ValType::I32]);
        f.name(format!("karmem write body {}", layout.signature(ty)));
        let [src, body] = [(); 2].map(|_| self.module.locals.add(ValType::I32));
        let seq = f.func_body_id();
        if let Kind::Struct(s) = &layout.get(ty).kind {
            let header = StructHeader::for_used(s.used).0;
            {
                let mut b = f.instr_seq(seq);
                b.i32_const(s.body_size as i32).i32_const(8).call(rt.out_alloc).local_set(body);
                self.out_addr(&mut b, body);
                b.i32_const(header as i32);
                asm::store(&mut b, m, Width::I32, 0);
            }
            let offsets = shape.field_offsets();
            for (field, canon) in s.fields.iter().zip(offsets) {
                self.write_inline(&mut f, seq, field.ty, src, canon, body, field.offset);
            }
        }
        f.instr_seq(seq).local_get(body);
        f.finish(vec![src], &mut self.module.funcs)
    }

    /// `(src, tag_offset, payload_offset)`: a canonical variant -> a union
    /// (for a dynamic union, `payload_offset` receives the payload object's
    /// offset; for an inline union, the payload itself).
    pub(super) fn gen_write_union(&mut self, ty: TypeId) -> FunctionId {
        let m = self.env.memory;
        let g = self.place;
        let rt = self.rt;
        let layout = self.layout;
        let shape = self.shape(ty);
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32; 3], &[]);
        f.name(format!("karmem write union {}", layout.signature(ty)));
        let [src, tag_at, payload_at, index, object] = [(); 5].map(|_| self.module.locals.add(ValType::I32));
        let seq = f.func_body_id();
        let Kind::Union(u) = &layout.get(ty).kind else {
            return f.finish(vec![src, tag_at, payload_at], &mut self.module.funcs);
        };
        let tags: Vec<u64> = u.cases.iter().map(|c| c.tag).collect();
        {
            let mut b = f.instr_seq(seq);
            b.local_get(src);
            asm::load(&mut b, g, disc_width(tags.len()), 0);
            b.local_tee(index).i32_const(tags.len() as i32).binop(BinaryOp::I32GeU);
        }
        asm::trap_if(&mut f, seq);
        let tag = self.index_to_value(&mut f, seq, index, false, &tags);
        {
            let mut b = f.instr_seq(seq);
            self.out_addr(&mut b, tag_at);
            b.local_get(tag);
            asm::store(&mut b, m, Width::for_bytes(u.tag_width), 0);
        }
        let cpo = shape.payload_offset();
        let cases: Vec<Option<TypeId>> = u.cases.iter().map(|c| c.ty).collect();
        let dynamic = u.dynamic;
        let arms = switch(&mut f, seq, index, cases.len());
        for (arm, case) in arms.into_iter().zip(cases) {
            let Some(case) = case else { continue };
            if !dynamic {
                self.write_inline(&mut f, arm, case, src, cpo, payload_at, 0);
            } else if layout.is_dynamic_struct(case) {
                let writer = self.helper(Role::WriteBody, case);
                let mut b = f.instr_seq(arm);
                asm::addr(&mut b, src, cpo);
                b.call(writer).local_set(object);
                self.out_addr(&mut b, payload_at);
                b.local_get(object);
                asm::store(&mut b, m, Width::I32, 0);
            } else {
                let size = layout.get(case).size;
                if size == 0 {
                    continue;
                }
                f.instr_seq(arm).i32_const(size as i32).i32_const(8).call(rt.out_alloc).local_set(object);
                self.write_inline(&mut f, arm, case, src, cpo, object, 0);
                let mut b = f.instr_seq(arm);
                self.out_addr(&mut b, payload_at);
                b.local_get(object);
                asm::store(&mut b, m, Width::I32, 0);
            }
        }
        f.finish(vec![src, tag_at, payload_at], &mut self.module.funcs)
    }

    /// `(src, slot_offset)`: a canonical list or string -> an array.
    pub(super) fn gen_write_list(&mut self, ty: TypeId) -> FunctionId {
        let m = self.env.memory;
        let g = self.place;
                let layout = self.layout;
        let shape = self.shape(ty);
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32; 2], &[]);
        f.name(format!("karmem write list {}", layout.signature(ty)));
        let [src, slot, ptr, len, blk, from, to, index] = [(); 8].map(|_| self.module.locals.add(ValType::I32));
        let seq = f.func_body_id();
        match &layout.get(ty).kind {
            Kind::String { utf16 } => self.write_string(&mut f, seq, *utf16, src, slot),
            Kind::Array { elem, form } => {
                let elem = *elem;
                let canon_elem = match &shape {
                    AbiType::List(e) => (**e).clone(),
                    _ => AbiType::Tuple(Vec::new()),
                };
                let (csize, calign) = (canon_elem.size(), canon_elem.align());
                let ksize = layout.get(elem).size;
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(src);
                    asm::load(&mut b, g, Width::I32, 0);
                    b.local_set(ptr);
                    b.local_get(src);
                    asm::load(&mut b, g, Width::I32, 4);
                    b.local_set(len);
                    // canonical lifting: the list pointer is aligned
                    b.local_get(ptr).i32_const(calign as i32 - 1).binop(BinaryOp::I32And);
                }
                asm::trap_if(&mut f, seq);
                f.instr_seq(seq).local_get(len);
                let some = asm::if_(&mut f, seq);
                // the elements sit in the guest memory, wherever the list's
                // (ptr, len) does
                let saved = self.place;
                self.place = self.guest;
                match form {
                    ArrayForm::Plain => {
                        self.alloc_block(&mut f, some, len, ksize, blk);
                        self.store_slot(&mut f, some, slot, blk, len);
                        if bulk_width(layout, elem).is_some() {
                            let mut b = f.instr_seq(some);
                            self.out_addr(&mut b, blk);
                            b.local_get(ptr).local_get(len).i32_const(ksize as i32).binop(BinaryOp::I32Mul);
                            b.memory_copy(self.guest, m);
                        } else {
                            f.instr_seq(some).local_get(ptr).local_set(from).local_get(blk).local_set(to);
                            let body = asm::counted_loop(&mut f, some, len, index);
                            self.write_inline(&mut f, body, elem, from, 0, to, 0);
                            let mut b = f.instr_seq(body);
                            asm::bump(&mut b, from, csize as i32);
                            asm::bump(&mut b, to, ksize as i32);
                        }
                    }
                    ArrayForm::Soa => {
                        self.write_soa(&mut f, some, elem, &canon_elem, ptr, len, slot);
                    }
                    ArrayForm::Bunch { soa } => {
                        self.write_bunch(&mut f, some, elem, *soa, &canon_elem, ptr, len, slot);
                    }
                }
                self.place = saved;
            }
            _ => {
                f.instr_seq(seq).unreachable();
            }
        }
        f.finish(vec![src, slot], &mut self.module.funcs)
    }

    /// Emits: `blk = out_alloc(align_up(len * size, 64), 64)` (0 for 0 bytes),
    /// trapping when the block would not fit a message.
    pub(super) fn alloc_block(&mut self, f: &mut FunctionBuilder, seq: InstrSeqId, len: LocalId, size: u32, blk: LocalId) {
        if size == 0 {
            f.instr_seq(seq).i32_const(0).local_set(blk);
            return;
        }
        {
            let mut b = f.instr_seq(seq);
            b.local_get(len);
            asm::widen(&mut b);
            b.i64_const(size as i64).binop(BinaryOp::I64Mul).i64_const(u32::MAX as i64 - 64).binop(BinaryOp::I64GtU);
        }
        asm::trap_if(f, seq);
        let rt = self.rt;
        f.instr_seq(seq)
            .local_get(len)
            .i32_const(size as i32)
            .binop(BinaryOp::I32Mul)
            .i32_const(63)
            .binop(BinaryOp::I32Add)
            .i32_const(-64)
            .binop(BinaryOp::I32And)
            .i32_const(64)
            .call(rt.out_alloc)
            .local_set(blk);
    }

    /// Emits: the slot at `slot` = {blk, len, len}.
    pub(super) fn store_slot(&mut self, f: &mut FunctionBuilder, seq: InstrSeqId, slot: LocalId, blk: LocalId, len: LocalId) {
        let m = self.env.memory;
        let mut b = f.instr_seq(seq);
        for (at, value) in [(0, blk), (4, len), (8, len)] {
            self.out_addr(&mut b, slot);
            b.local_get(value);
            asm::store(&mut b, m, Width::I32, at);
        }
    }

    /// Emits: `len` (> 0) canonical elements at `ptr` -> an SoA array.
    #[allow(clippy::too_many_arguments)]
    fn write_soa(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        elem: TypeId,
        canon_elem: &AbiType,
        ptr: LocalId,
        len: LocalId,
        slot: LocalId,
    ) {
        let from = self.module.locals.add(ValType::I32);
        let index = self.module.locals.add(ValType::I32);
        let cols = self.soa_alloc(f, seq, elem, len, slot);
        f.instr_seq(seq).local_get(ptr).local_set(from);
        let body = asm::counted_loop(f, seq, len, index);
        self.soa_element(f, body, elem, canon_elem, from, 0, &cols);
        asm::bump(&mut f.instr_seq(body), from, canon_elem.size() as i32);
    }

    /// Emits: allocate an SoA array of `len` (> 0) elements of `elem` (its
    /// column directory and columns) and store its slot at `slot`; returns
    /// each column with the local holding its block's offset.
    pub(super) fn soa_alloc(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        elem: TypeId,
        len: LocalId,
        slot: LocalId,
    ) -> Vec<(ColumnInfo, LocalId)> {
        let m = self.env.memory;
        let rt = self.rt;
        let columns = self.layout.columns(elem).to_vec();
        let n = columns.len() as u32;
        let dir = self.module.locals.add(ValType::I32);
        let dir_size = (4 + 8 * n).next_multiple_of(64);
        f.instr_seq(seq).i32_const(dir_size as i32).i32_const(64).call(rt.out_alloc).local_set(dir);
        {
            let mut b = f.instr_seq(seq);
            self.out_addr(&mut b, dir);
            b.i32_const(n as i32);
            asm::store(&mut b, m, Width::I32, 0);
            for (j, column) in columns.iter().enumerate() {
                self.out_addr(&mut b, dir);
                b.i32_const(column.hash as i32);
                asm::store(&mut b, m, Width::I32, 4 + 4 * j as u32);
            }
        }
        let mut cols = Vec::with_capacity(columns.len());
        for (j, column) in columns.into_iter().enumerate() {
            let at = self.module.locals.add(ValType::I32);
            self.alloc_block(f, seq, len, column.size, at);
            let mut b = f.instr_seq(seq);
            self.out_addr(&mut b, dir);
            b.local_get(at);
            asm::store(&mut b, m, Width::I32, 4 + 4 * n + 4 * j as u32);
            cols.push((column, at));
        }
        self.store_slot(f, seq, slot, dir, len);
        cols
    }

    /// Emits: the canonical element at `from + so` -> the next row of the
    /// SoA columns `cols` (from [`Self::soa_alloc`]), whose offsets then
    /// move to the row after.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn soa_element(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        elem: TypeId,
        canon_elem: &AbiType,
        from: LocalId,
        so: u32,
        cols: &[(ColumnInfo, LocalId)],
    ) {
        if let Kind::Union(_) = &self.layout.get(elem).kind {
            let writer = self.helper(Role::WriteUnion, elem);
            let tag = cols.iter().find(|(c, _)| c.leaf == Leaf::UnionTag).map(|(_, at)| *at);
            let payload = cols.iter().find(|(c, _)| c.leaf == Leaf::UnionPayload).map(|(_, at)| *at);
            if let (Some(tag), Some(payload)) = (tag, payload) {
                let mut b = f.instr_seq(seq);
                asm::addr(&mut b, from, so);
                b.local_get(tag).local_get(payload).call(writer);
            }
        } else {
            for (column, at) in cols {
                if let Leaf::Field(t) = column.leaf {
                    let canon = leaf_offset(canon_elem, &column.path);
                    self.write_inline(f, seq, t, from, so + canon, *at, 0);
                }
            }
        }
        let mut b = f.instr_seq(seq);
        for (column, at) in cols {
            asm::bump(&mut b, *at, column.size as i32);
        }
    }
}
