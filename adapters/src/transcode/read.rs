//! Readers: a Karmem value in the input message -> its canonical ABI memory
//! representation.
//!
//! Owns: the code for every type in that direction (see `transcode.rs` for
//! the checks it makes and the code shape). Addresses: `src` is absolute and
//! already known to hold the value's inline bytes (the parent checked its
//! extent); out-of-line objects are reached through `in_obj`/`in_block`,
//! which trap on offsets outside the message.
//!
//! Does not own: strings (`strings.rs`), the other direction (`write.rs`).

use karmem_format::layout::{ArrayForm, Kind, Leaf, TypeId};
use karmem_idl::ast::Prim;
use walrus::ir::{BinaryOp, InstrSeqId, UnaryOp};
use walrus::{FunctionBuilder, FunctionId, LocalId, ValType};

use super::{CANONICAL_NAN32, CANONICAL_NAN64, Role, StaticRef, Transcoder, bulk_width, prim_width};
use crate::asm::{self, Width};
use crate::canon::AbiType;

impl Transcoder<'_> {
    /// Emits: read the inline Karmem value of `ty` at `src + so`, write its
    /// canonical representation at `dst + do_`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn read_inline(
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
                let reader = self.helper(Role::ReadBody, ty);
                let mut b = f.instr_seq(seq);
                b.local_get(src);
                asm::load(&mut b, m, Width::I32, so);
                asm::addr(&mut b, dst, do_);
                b.call(reader);
            }
            Kind::Union(u) => {
                let payload = if u.dynamic { 4 } else { u.payload_offset };
                let reader = self.helper(Role::ReadUnion, ty);
                let mut b = f.instr_seq(seq);
                asm::addr(&mut b, src, so);
                asm::addr(&mut b, src, so + payload);
                asm::addr(&mut b, dst, do_);
                b.call(reader);
            }
            Kind::Array { .. } | Kind::String { .. } => {
                let reader = self.helper(Role::ReadList, ty);
                let mut b = f.instr_seq(seq);
                asm::addr(&mut b, src, so);
                asm::addr(&mut b, dst, do_);
                b.call(reader);
            }
            _ if !self.inlines(ty) => {
                let reader = self.helper(Role::Read, ty);
                let mut b = f.instr_seq(seq);
                asm::addr(&mut b, src, so);
                asm::addr(&mut b, dst, do_);
                b.call(reader);
            }
            _ => self.read_expanded(f, seq, ty, src, so, dst, do_),
        }
    }

    /// A `(src, dst)` function for a type read in place (not a dynamic
    /// struct, union or array).
    pub(super) fn gen_read_fn(&mut self, ty: TypeId) -> FunctionId {
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32; 2], &[]);
        f.name(format!("karmem read {}", self.layout.signature(ty)));
        let src = self.module.locals.add(ValType::I32);
        let dst = self.module.locals.add(ValType::I32);
        let body = f.func_body_id();
        self.read_expanded(&mut f, body, ty, src, 0, dst, 0);
        f.finish(vec![src, dst], &mut self.module.funcs)
    }

    /// The code of one level of `ty` (children by `read_inline`).
    #[allow(clippy::too_many_arguments)]
    fn read_expanded(
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
            Kind::Prim(p) => self.read_prim(f, seq, *p, src, so, dst, do_),
            Kind::Handle { .. } => {
                let mut b = f.instr_seq(seq);
                b.local_get(dst).local_get(src);
                asm::load(&mut b, m, Width::I32, so);
                asm::store(&mut b, g, Width::I32, do_);
            }
            Kind::Enum(e) => {
                let width = Width::for_bytes(e.width);
                let value = self.module.locals.add(width.val_type());
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(src);
                    asm::load(&mut b, m, width, so);
                    b.local_set(value);
                }
                let values: Vec<u64> = e.cases.iter().map(|(_, v)| *v).collect();
                let index = self.value_to_index(f, seq, value, width == Width::I64, &values);
                let disc = disc_width(values.len());
                let mut b = f.instr_seq(seq);
                b.local_get(dst).local_get(index);
                asm::store(&mut b, g, disc, do_);
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
                    let word = self.module.locals.add(ValType::I32);
                    {
                        let mut b = f.instr_seq(seq);
                        b.local_get(src);
                        asm::load(&mut b, m, width, so + at);
                        b.local_set(word);
                    }
                    if bits < width.bytes() * 8 {
                        // undeclared flag bits are invalid
                        f.instr_seq(seq).local_get(word).i32_const(!((1u32 << bits) - 1) as i32).binop(BinaryOp::I32And);
                        asm::trap_if(f, seq);
                    }
                    let mut b = f.instr_seq(seq);
                    b.local_get(dst).local_get(word);
                    asm::store(&mut b, g, width, do_ + at);
                }
            }
            Kind::Struct(s) => {
                let offsets = shape.field_offsets();
                for (field, canon) in s.fields.iter().zip(offsets) {
                    self.read_inline(f, seq, field.ty, src, so + field.offset, dst, do_ + canon);
                }
            }
            Kind::FixedArray { elem, len } => {
                let ksize = layout.get(*elem).size;
                let csize = match &shape {
                    AbiType::FixedList(e, _) => e.size(),
                    _ => 0,
                };
                if let Some(width) = bulk_width(layout, *elem) {
                    debug_assert_eq!(width.bytes(), ksize);
                    let mut b = f.instr_seq(seq);
                    asm::addr(&mut b, dst, do_);
                    asm::addr(&mut b, src, so);
                    b.i32_const((ksize * len) as i32).memory_copy(m, g);
                } else if *len <= 4 {
                    for i in 0..*len {
                        self.read_inline(f, seq, *elem, src, so + i * ksize, dst, do_ + i * csize);
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
                    self.read_inline(f, body, *elem, from, 0, to, 0);
                    let mut b = f.instr_seq(body);
                    asm::bump(&mut b, from, ksize as i32);
                    asm::bump(&mut b, to, csize as i32);
                }
            }
            Kind::Option { some, payload_offset } => {
                let cpo = shape.payload_offset();
                let disc = self.module.locals.add(ValType::I32);
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(src);
                    asm::load(&mut b, m, Width::U8, so);
                    b.local_tee(disc).i32_const(1).binop(BinaryOp::I32GtU);
                }
                asm::trap_if(f, seq);
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(dst).local_get(disc);
                    asm::store(&mut b, g, Width::U8, do_);
                    b.local_get(disc);
                }
                let then = asm::if_(f, seq);
                self.read_inline(f, then, *some, src, so + payload_offset, dst, do_ + cpo);
            }
            Kind::Result { ok, err, payload_offset } => {
                let cpo = shape.payload_offset();
                let disc = self.module.locals.add(ValType::I32);
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(src);
                    asm::load(&mut b, m, Width::U8, so);
                    b.local_tee(disc).i32_const(1).binop(BinaryOp::I32GtU);
                }
                asm::trap_if(f, seq);
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(dst).local_get(disc);
                    asm::store(&mut b, g, Width::U8, do_);
                    b.local_get(disc);
                }
                let (is_err, is_ok) = asm::if_else(f, seq);
                if let Some(ok) = ok {
                    self.read_inline(f, is_ok, *ok, src, so + payload_offset, dst, do_ + cpo);
                }
                if let Some(err) = err {
                    self.read_inline(f, is_err, *err, src, so + payload_offset, dst, do_ + cpo);
                }
            }
            Kind::Union(_) | Kind::Array { .. } | Kind::String { .. } => {
                // Never expanded: `read_inline` calls their helpers.
                self.read_inline(f, seq, ty, src, so, dst, do_);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn read_prim(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        p: Prim,
        src: LocalId,
        so: u32,
        dst: LocalId,
        do_: u32,
    ) {
        let m = self.env.memory;
        let g = self.place;
        let width = prim_width(p);
        let value = self.module.locals.add(width.val_type());
        {
            let mut b = f.instr_seq(seq);
            b.local_get(src);
            asm::load(&mut b, m, width, so);
            b.local_set(value);
        }
        match p {
            Prim::Bool => {
                f.instr_seq(seq).local_get(value).i32_const(1).binop(BinaryOp::I32GtU);
                asm::trap_if(f, seq);
            }
            Prim::Char => {
                check_char(f, seq, value);
            }
            Prim::F32 | Prim::F64 => canonicalize_nan(f, seq, value, p == Prim::F64),
            _ => {}
        }
        let mut b = f.instr_seq(seq);
        b.local_get(dst).local_get(value);
        asm::store(&mut b, g, width, do_);
    }

    /// Emits: map the enum/tag value in `value` to its case index (trapping
    /// on an undeclared value); returns the i32 local holding the index.
    pub(crate) fn value_to_index(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        value: LocalId,
        wide: bool,
        values: &[u64],
    ) -> LocalId {
        let index = self.module.locals.add(ValType::I32);
        let base = values.first().copied().unwrap_or(0);
        let consecutive = values.iter().enumerate().all(|(i, v)| *v == base.wrapping_add(i as u64));
        let n = values.len() as u64;
        if consecutive && !wide {
            // index = value - base, unsigned-compared against the count
            let mut b = f.instr_seq(seq);
            b.local_get(value).i32_const(base as i32).binop(BinaryOp::I32Sub).local_tee(index);
            b.i32_const(n as i32).binop(BinaryOp::I32GeU);
            asm::trap_if(f, seq);
        } else if consecutive {
            let mut b = f.instr_seq(seq);
            b.local_get(value).i64_const(base as i64).binop(BinaryOp::I64Sub).local_tee(value);
            b.i64_const(n as i64).binop(BinaryOp::I64GeU);
            asm::trap_if(f, seq);
            f.instr_seq(seq).local_get(value).unop(UnaryOp::I32WrapI64).local_set(index);
        } else {
            f.instr_seq(seq).i32_const(-1).local_set(index);
            for (i, v) in values.iter().enumerate() {
                let mut b = f.instr_seq(seq);
                b.local_get(value);
                if wide {
                    b.i64_const(*v as i64).binop(BinaryOp::I64Eq);
                } else {
                    b.i32_const(*v as i32).binop(BinaryOp::I32Eq);
                }
                let hit = asm::if_(f, seq);
                f.instr_seq(hit).i32_const(i as i32).local_set(index);
            }
            f.instr_seq(seq).local_get(index).i32_const(-1).binop(BinaryOp::I32Eq);
            asm::trap_if(f, seq);
        }
        index
    }

    /// `(offset, dst)`: a dynamic struct body -> canonical record. Offset 0
    /// is the empty struct; absent fields read their default or zeros.
    pub(super) fn gen_read_body(&mut self, ty: TypeId) -> FunctionId {
        let m = self.env.memory;
        let rt = self.rt;
        let layout = self.layout;
        let shape = self.shape(ty);
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32; 2], &[]);
        f.name(format!("karmem read body {}", layout.signature(ty)));
        let [off, dst, body_at, used, header, field_at] = [(); 6].map(|_| self.module.locals.add(ValType::I32));
        let size = self.module.locals.add(ValType::I64);
        let seq = f.func_body_id();
        f.instr_seq(seq).local_get(off).unop(UnaryOp::I32Eqz);
        let (empty, present) = asm::if_else(&mut f, seq);
        f.instr_seq(empty).global_get(rt.in_base).local_set(body_at).i32_const(4).local_set(used);
        {
            let mut b = f.instr_seq(present);
            b.local_get(off).i32_const(8).i32_const(8).call(rt.in_obj).local_tee(body_at);
            asm::load(&mut b, m, Width::I32, 0);
            b.local_tee(header).i32_const(3).binop(BinaryOp::I32ShrU);
            asm::widen(&mut b);
            b.i64_const(3).binop(BinaryOp::I64Shl).local_tee(size);
            // size_units >= 1
            b.unop(UnaryOp::I64Eqz);
        }
        asm::trap_if(&mut f, present);
        {
            let mut b = f.instr_seq(present);
            b.local_get(off);
            asm::widen(&mut b);
            b.local_get(size).binop(BinaryOp::I64Add).global_get(rt.in_len);
            asm::widen(&mut b);
            b.binop(BinaryOp::I64GtU);
        }
        asm::trap_if(&mut f, present);
        {
            let mut b = f.instr_seq(present);
            b.local_get(size).unop(UnaryOp::I32WrapI64).local_get(header).i32_const(7).binop(BinaryOp::I32And);
            b.binop(BinaryOp::I32Sub).local_tee(used).i32_const(4).binop(BinaryOp::I32LtU);
        }
        asm::trap_if(&mut f, present);
        if let Kind::Struct(s) = &layout.get(ty).kind {
            let offsets = shape.field_offsets();
            for (field, canon) in s.fields.iter().zip(offsets) {
                let end = field.offset + layout.get(field.ty).size;
                let absent = self.default_at(field.ty, field.default.as_ref());
                // field_at = used >= end ? body + offset : <default bytes>
                f.instr_seq(seq).local_get(body_at).i32_const(field.offset as i32).binop(BinaryOp::I32Add);
                self.push_static(&mut f, seq, absent);
                f.instr_seq(seq)
                    .local_get(used)
                    .i32_const(end as i32)
                    .binop(BinaryOp::I32GeU)
                    .select(None)
                    .local_set(field_at);
                self.read_inline(&mut f, seq, field.ty, field_at, 0, dst, canon);
            }
        }
        f.finish(vec![off, dst], &mut self.module.funcs)
    }

    /// `(tag_addr, payload_addr, dst)`: a union -> canonical variant. For a
    /// dynamic union `payload_addr` holds the payload's offset; for an
    /// inline union, the payload itself.
    pub(super) fn gen_read_union(&mut self, ty: TypeId) -> FunctionId {
        let m = self.env.memory;
        let g = self.place;
        let rt = self.rt;
        let layout = self.layout;
        let shape = self.shape(ty);
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32; 3], &[]);
        f.name(format!("karmem read union {}", layout.signature(ty)));
        let [tag_at, payload_at, dst, tag, object] = [(); 5].map(|_| self.module.locals.add(ValType::I32));
        let seq = f.func_body_id();
        let Kind::Union(u) = &layout.get(ty).kind else {
            return f.finish(vec![tag_at, payload_at, dst], &mut self.module.funcs);
        };
        {
            let mut b = f.instr_seq(seq);
            b.local_get(tag_at);
            asm::load(&mut b, m, Width::for_bytes(u.tag_width), 0);
            b.local_set(tag);
        }
        let tags: Vec<u64> = u.cases.iter().map(|c| c.tag).collect();
        let index = self.value_to_index(&mut f, seq, tag, false, &tags);
        {
            let mut b = f.instr_seq(seq);
            b.local_get(dst).local_get(index);
            asm::store(&mut b, g, disc_width(tags.len()), 0);
        }
        let cpo = shape.payload_offset();
        let cases: Vec<Option<TypeId>> = u.cases.iter().map(|c| c.ty).collect();
        let dynamic = u.dynamic;
        let arms = switch(&mut f, seq, index, cases.len());
        for (arm, case) in arms.into_iter().zip(cases) {
            let Some(case) = case else { continue };
            if !dynamic {
                self.read_inline(&mut f, arm, case, payload_at, 0, dst, cpo);
            } else if layout.is_dynamic_struct(case) {
                let reader = self.helper(Role::ReadBody, case);
                let mut b = f.instr_seq(arm);
                b.local_get(payload_at);
                asm::load(&mut b, m, Width::I32, 0);
                asm::addr(&mut b, dst, cpo);
                b.call(reader);
            } else {
                let size = layout.get(case).size;
                if size == 0 {
                    continue;
                }
                {
                    let mut b = f.instr_seq(arm);
                    b.local_get(payload_at);
                    asm::load(&mut b, m, Width::I32, 0);
                    // a payload with bytes is a real object, never offset 0
                    b.local_tee(object).unop(UnaryOp::I32Eqz);
                }
                asm::trap_if(&mut f, arm);
                f.instr_seq(arm)
                    .local_get(object)
                    .i32_const(size as i32)
                    .i32_const(8)
                    .call(rt.in_obj)
                    .local_set(object);
                self.read_inline(&mut f, arm, case, object, 0, dst, cpo);
            }
        }
        f.finish(vec![tag_at, payload_at, dst], &mut self.module.funcs)
    }

    /// `(slot_addr, dst)`: an array slot -> canonical list (or string).
    pub(super) fn gen_read_list(&mut self, ty: TypeId) -> FunctionId {
        let m = self.env.memory;
        let g = self.place;
        let rt = self.rt;
        let layout = self.layout;
        let shape = self.shape(ty);
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32; 2], &[]);
        f.name(format!("karmem read list {}", layout.signature(ty)));
        let [slot, dst, off, len, ptr, from, to, index] = [(); 8].map(|_| self.module.locals.add(ValType::I32));
        let seq = f.func_body_id();
        {
            let mut b = f.instr_seq(seq);
            b.local_get(slot);
            asm::load(&mut b, m, Width::I32, 0);
            b.local_set(off);
            b.local_get(slot);
            asm::load(&mut b, m, Width::I32, 4);
            b.local_tee(len);
            b.local_get(slot);
            asm::load(&mut b, m, Width::I32, 8);
            // length <= capacity
            b.binop(BinaryOp::I32GtU);
        }
        asm::trap_if(&mut f, seq);
        match &layout.get(ty).kind {
            Kind::String { utf16 } => {
                self.read_string(&mut f, seq, *utf16, off, len, dst);
            }
            Kind::Array { elem, form } => {
                let elem = *elem;
                let canon_elem = match &shape {
                    AbiType::List(e) => (**e).clone(),
                    _ => AbiType::Tuple(Vec::new()),
                };
                let (csize, calign) = (canon_elem.size(), canon_elem.align());
                let ksize = layout.get(elem).size;
                // ptr = cabi_realloc(0, 0, align, len * size)
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(len);
                    asm::widen(&mut b);
                    b.i64_const(csize as i64).binop(BinaryOp::I64Mul).i64_const(u32::MAX as i64).binop(BinaryOp::I64GtU);
                }
                asm::trap_if(&mut f, seq);
                {
                    // the decode limit: at least one byte per element
                    let mut b = f.instr_seq(seq);
                    b.local_get(len);
                    asm::widen(&mut b);
                    b.i64_const(i64::from(csize.max(1))).binop(BinaryOp::I64Mul);
                    self.charge(&mut b);
                }
                {
                    let mut b = f.instr_seq(seq);
                    b.i32_const(0).i32_const(0).i32_const(calign as i32);
                    b.local_get(len).i32_const(csize as i32).binop(BinaryOp::I32Mul);
                    b.call(self.env.realloc).local_set(ptr);
                }
                // realloc's result, as the canonical ABI checks it: aligned,
                // and the list in bounds (also when it is empty)
                if calign > 1 {
                    f.instr_seq(seq).local_get(ptr).i32_const(calign as i32 - 1).binop(BinaryOp::I32And);
                    asm::trap_if(&mut f, seq);
                }
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(ptr);
                    asm::widen(&mut b);
                    b.local_get(len);
                    asm::widen(&mut b);
                    b.i64_const(csize as i64).binop(BinaryOp::I64Mul).binop(BinaryOp::I64Add);
                    b.memory_size(self.guest);
                    asm::widen(&mut b);
                    b.i64_const(16).binop(BinaryOp::I64Shl).binop(BinaryOp::I64GtU);
                }
                asm::trap_if(&mut f, seq);
                {
                    let mut b = f.instr_seq(seq);
                    b.local_get(dst).local_get(ptr);
                    asm::store(&mut b, g, Width::I32, 0);
                    b.local_get(dst).local_get(len);
                    asm::store(&mut b, g, Width::I32, 4);
                }
                // the elements sit in the guest memory, wherever the list's
                // (ptr, len) does
                let saved = self.place;
                self.place = self.guest;
                match form {
                    ArrayForm::Plain => {
                        f.instr_seq(seq)
                            .local_get(off)
                            .local_get(len)
                            .i32_const(ksize as i32)
                            .call(rt.in_block)
                            .local_set(from);
                        if bulk_width(layout, elem).is_some() {
                            f.instr_seq(seq)
                                .local_get(ptr)
                                .local_get(from)
                                .local_get(len)
                                .i32_const(ksize as i32)
                                .binop(BinaryOp::I32Mul)
                                .memory_copy(m, self.guest);
                        } else {
                            f.instr_seq(seq).local_get(ptr).local_set(to);
                            let body = asm::counted_loop(&mut f, seq, len, index);
                            self.read_inline(&mut f, body, elem, from, 0, to, 0);
                            let mut b = f.instr_seq(body);
                            asm::bump(&mut b, from, ksize as i32);
                            asm::bump(&mut b, to, csize as i32);
                        }
                    }
                    ArrayForm::Soa => {
                        f.instr_seq(seq).local_get(len);
                        let some = asm::if_(&mut f, seq);
                        self.read_soa(&mut f, some, elem, &canon_elem, off, len, ptr, csize, 0);
                    }
                    ArrayForm::Bunch { soa } => {
                        self.read_bunch(&mut f, seq, elem, *soa, &canon_elem, slot, off, len, ptr);
                    }
                }
                self.place = saved;
            }
            _ => {
                f.instr_seq(seq).unreachable();
            }
        }
        f.finish(vec![slot, dst], &mut self.module.funcs)
    }

    /// Emits: read `len` (> 0) elements of an SoA array whose directory is at
    /// message offset `off` into canonical memory: element `i` goes to
    /// `ptr + i * stride + dst_off` (a list: `stride` is the element size
    /// and `dst_off` 0; a bunch entry: the variant's size and payload offset).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_soa(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        elem: TypeId,
        canon_elem: &AbiType,
        off: LocalId,
        len: LocalId,
        ptr: LocalId,
        stride: u32,
        dst_off: u32,
    ) {
        let m = self.env.memory;
        let rt = self.rt;
        let layout = self.layout;
        let columns = layout.columns(elem).to_vec();
        let [dir, count, j, index, to, found] = [(); 6].map(|_| self.module.locals.add(ValType::I32));
        // the directory: n, then n hashes, then n offsets
        {
            let mut b = f.instr_seq(seq);
            b.local_get(off).i32_const(4).i32_const(64).call(rt.in_obj).local_tee(dir);
            asm::load(&mut b, m, Width::I32, 0);
            b.local_set(count);
            b.local_get(off);
            asm::widen(&mut b);
            b.local_get(count);
            asm::widen(&mut b);
            b.i64_const(8).binop(BinaryOp::I64Mul).binop(BinaryOp::I64Add).i64_const(4).binop(BinaryOp::I64Add);
            b.global_get(rt.in_len);
            asm::widen(&mut b);
            b.binop(BinaryOp::I64GtU);
        }
        asm::trap_if(f, seq);
        // find every known column; a missing one reads as its default
        let mut cols = Vec::with_capacity(columns.len());
        for column in &columns {
            let at = self.module.locals.add(ValType::I32);
            let stride = self.module.locals.add(ValType::I32);
            f.instr_seq(seq).i32_const(-1).local_set(found);
            let body = asm::counted_loop(f, seq, count, j);
            {
                let mut b = f.instr_seq(body);
                b.local_get(dir).local_get(j).i32_const(4).binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add);
                asm::load(&mut b, m, Width::I32, 4);
                b.i32_const(column.hash as i32).binop(BinaryOp::I32Eq);
            }
            let hit = asm::if_(f, body);
            {
                let mut b = f.instr_seq(hit);
                b.local_get(dir).local_get(count).local_get(j).binop(BinaryOp::I32Add).i32_const(4);
                b.binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add);
                asm::load(&mut b, m, Width::I32, 4);
                b.local_set(found);
                // stop searching: j = count
                b.local_get(count).local_set(j);
            }
            let leaf_ty = match column.leaf {
                Leaf::Field(t) => Some(t),
                Leaf::UnionTag | Leaf::UnionPayload => None,
            };
            let default = leaf_ty.and_then(|_| leaf_default(layout, elem, &column.path));
            let absent = match leaf_ty {
                Some(t) => self.default_at(t, default.as_ref()),
                None => {
                    self.statics.zero_size = self.statics.zero_size.max(column.size.next_multiple_of(8));
                    StaticRef::Zeros
                }
            };
            f.instr_seq(seq).local_get(found).i32_const(-1).binop(BinaryOp::I32Eq);
            let (missing, present) = asm::if_else(f, seq);
            self.push_static(f, missing, absent);
            f.instr_seq(missing).local_set(at).i32_const(0).local_set(stride);
            f.instr_seq(present)
                .local_get(found)
                .local_get(len)
                .i32_const(column.size as i32)
                .call(rt.in_block)
                .local_set(at)
                .i32_const(column.size as i32)
                .local_set(stride);
            cols.push((column.clone(), at, stride));
        }
        f.instr_seq(seq).local_get(ptr).local_set(to);
        let body = asm::counted_loop(f, seq, len, index);
        let union_reader = match &layout.get(elem).kind {
            Kind::Union(_) => Some(self.helper(Role::ReadUnion, elem)),
            _ => None,
        };
        if let Some(reader) = union_reader {
            let tag = cols.iter().find(|(c, ..)| c.leaf == Leaf::UnionTag).map(|(_, at, _)| *at);
            let payload = cols.iter().find(|(c, ..)| c.leaf == Leaf::UnionPayload).map(|(_, at, _)| *at);
            if let (Some(tag), Some(payload)) = (tag, payload) {
                let mut b = f.instr_seq(body);
                b.local_get(tag).local_get(payload);
                asm::addr(&mut b, to, dst_off);
                b.call(reader);
            }
        } else {
            for (column, at, _) in &cols {
                if let Leaf::Field(t) = column.leaf {
                    let canon = leaf_offset(canon_elem, &column.path);
                    self.read_inline(f, body, t, *at, 0, to, dst_off + canon);
                }
            }
        }
        let mut b = f.instr_seq(body);
        for (_, at, stride) in &cols {
            asm::bump_by(&mut b, *at, *stride);
        }
        asm::bump(&mut b, to, stride as i32);
    }
}

/// The canonical byte offset of the SoA leaf at `path` inside an element.
pub(crate) fn leaf_offset(elem: &AbiType, path: &[u32]) -> u32 {
    let mut shape = elem;
    let mut offset = 0;
    for &position in path {
        let offsets = shape.field_offsets();
        offset += offsets.get(position as usize).copied().unwrap_or(0);
        let next = match shape {
            AbiType::Record(fields) => fields.get(position as usize).map(|(_, t)| t),
            AbiType::Tuple(types) => types.get(position as usize),
            _ => None,
        };
        match next {
            Some(t) => shape = t,
            None => break,
        }
    }
    offset
}

/// The declared default of the struct field an SoA leaf path ends at.
pub(crate) fn leaf_default(
    layout: &karmem_format::layout::Layout,
    elem: TypeId,
    path: &[u32],
) -> Option<karmem_idl::ast::Literal> {
    let mut ty = elem;
    let mut default = None;
    for &position in path {
        let field = layout.as_struct(ty)?.fields.get(position as usize)?;
        default = field.default.clone();
        ty = field.ty;
    }
    default
}

/// The canonical discriminant width for `cases` cases.
pub(crate) fn disc_width(cases: usize) -> Width {
    Width::for_bytes(karmem_wit_import::abi::Discriminant::for_cases(cases).size())
}

/// Emits: trap unless the i32 in `value` is a Unicode scalar value.
pub(crate) fn check_char(f: &mut FunctionBuilder, seq: InstrSeqId, value: LocalId) {
    f.instr_seq(seq)
        .local_get(value)
        .i32_const(0x11_0000)
        .binop(BinaryOp::I32GeU)
        .local_get(value)
        .i32_const(0xD800)
        .binop(BinaryOp::I32Sub)
        .i32_const(0x800)
        .binop(BinaryOp::I32LtU)
        .binop(BinaryOp::I32Or);
    asm::trap_if(f, seq);
}

/// Emits: replace a NaN in the float local `value` by the canonical NaN.
pub(crate) fn canonicalize_nan(f: &mut FunctionBuilder, seq: InstrSeqId, value: LocalId, f64: bool) {
    let mut b = f.instr_seq(seq);
    if f64 {
        b.f64_const(f64::from_bits(CANONICAL_NAN64)).local_get(value).local_get(value).local_get(value);
        b.binop(BinaryOp::F64Ne);
    } else {
        b.f32_const(f32::from_bits(CANONICAL_NAN32)).local_get(value).local_get(value).local_get(value);
        b.binop(BinaryOp::F32Ne);
    }
    b.select(None).local_set(value);
}

/// Emits a `br_table` over `index` (already checked to be < `arms`) and
/// returns one sequence per arm; each arm falls through to the end.
pub(crate) fn switch(f: &mut FunctionBuilder, seq: InstrSeqId, index: LocalId, arms: usize) -> Vec<InstrSeqId> {
    if arms == 0 {
        f.instr_seq(seq).unreachable();
        return Vec::new();
    }
    // $end { $b[n] { ... $b[1] { $b[0] { br_table } arm0; br $end } arm1; br $end ... } unreachable }
    let end = asm::block(f, seq);
    let mut parent = end;
    // create from the outside in, then list them innermost first
    let mut blocks = Vec::with_capacity(arms + 1);
    for _ in 0..=arms {
        let inner = asm::block(f, parent);
        blocks.push(inner);
        parent = inner;
    }
    blocks.reverse(); // blocks[0] innermost ... blocks[arms] outermost
    let (innermost, default) = (parent, blocks.last().copied().unwrap_or(end));
    let targets: Box<[InstrSeqId]> = blocks.iter().take(arms).copied().collect();
    f.instr_seq(innermost).local_get(index).br_table(targets, default);
    // after blocks[k] ends (inside blocks[k + 1]) comes arm k
    let mut out = Vec::with_capacity(arms);
    for outer in blocks.iter().skip(1) {
        let arm = asm::block(f, *outer);
        f.instr_seq(*outer).br(end);
        out.push(arm);
    }
    // after the outermost ends: the default, unreachable
    f.instr_seq(end).unreachable();
    out
}
