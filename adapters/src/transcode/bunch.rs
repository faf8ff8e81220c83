//! Bunch arrays (`#bovoa` / `#bovos`, FORMAT.md §8): a union array stored as
//! one array per case behind a bunch table, in both directions.
//!
//! Owns: reading a bunch table into a canonical `list<variant>` (values
//! grouped by entry, in entry order, as `karmem-format`'s decoder yields
//! them) and writing a canonical `list<variant>` as a bunch table (entries
//! in increasing tag order, empty cases omitted, insertion order kept
//! inside a case, as its encoder writes them). Checks on the way in: the
//! slot's `capacity = length`, the table inside the message and 64-aligned,
//! entry tags strictly increasing and declared, every entry's
//! `length ≤ capacity` (offset 0 for payload-less cases), and entry lengths summing to the slot's length.
//!
//! Does not own: the list allocation and the slot (`read.rs` /
//! `write.rs` call in here), SoA columns (`read_soa`, `soa_alloc`).

use karmem_format::layout::{ArrayForm, Kind, TypeId};
use karmem_format::raw::{BUNCH_ENTRY_SIZE, BUNCH_HEADER_SIZE};
use walrus::ir::{BinaryOp, InstrSeqId};
use walrus::{FunctionBuilder, LocalId, ValType};

use super::Transcoder;
use super::read::{disc_width, switch};
use crate::asm::{self, Width};
use crate::canon::AbiType;

/// One case of the union, as a bunch entry sees it.
struct Case {
    /// Position in the union (the canonical discriminant).
    index: u32,
    tag: u64,
    /// Payload type and its array form inside the entry.
    payload: Option<(TypeId, ArrayForm)>,
}

impl Transcoder<'_> {
    fn bunch_cases(&self, elem: TypeId, soa: bool) -> Vec<Case> {
        let layout = self.layout;
        let Kind::Union(u) = &layout.get(elem).kind else { return Vec::new() };
        let mut cases: Vec<Case> = u
            .cases
            .iter()
            .enumerate()
            .map(|(index, c)| Case {
                index: index as u32,
                tag: c.tag,
                payload: c.ty.map(|t| {
                    let form = if soa && layout.as_struct(t).is_some() { ArrayForm::Soa } else { ArrayForm::Plain };
                    (t, form)
                }),
            })
            .collect();
        cases.sort_by_key(|c| c.tag);
        cases
    }

    /// Emits: the bunch array whose slot is at `slot` (offset and length
    /// already in `off` and `len`) -> the `len` canonical variants already
    /// allocated at `ptr`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn read_bunch(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        elem: TypeId,
        soa: bool,
        canon_elem: &AbiType,
        slot: LocalId,
        off: LocalId,
        len: LocalId,
        ptr: LocalId,
    ) {
        let m = self.env.memory;
        // the variants sit in the guest memory (a list's elements)
        let g = self.place;
        let rt = self.rt;
        let layout = self.layout;
        let Kind::Union(u) = &layout.get(elem).kind else {
            f.instr_seq(seq).unreachable();
            return;
        };
        let ncases = u.cases.len();
        let by_position: Vec<Option<(TypeId, ArrayForm)>> = {
            let mut cases = self.bunch_cases(elem, soa);
            cases.sort_by_key(|c| c.index);
            cases.into_iter().map(|c| c.payload).collect()
        };
        let tags: Vec<u64> = u.cases.iter().map(|c| c.tag).collect();
        let disc = disc_width(ncases);
        let csize = canon_elem.size();
        let cpo = canon_elem.payload_offset();
        let canon_cases: Vec<Option<AbiType>> = match canon_elem {
            AbiType::Variant(cases) => cases.iter().map(|(_, t)| t.clone()).collect(),
            _ => Vec::new(),
        };
        let [table, count, j, entry, tag, ioff, ilen, seen, cursor, from, i] =
            [(); 11].map(|_| self.module.locals.add(ValType::I32));
        let prev = self.module.locals.add(ValType::I64);
        // a bunch's capacity is its length
        {
            let mut b = f.instr_seq(seq);
            b.local_get(slot);
            asm::load(&mut b, m, Width::I32, 8);
            b.local_get(len).binop(BinaryOp::I32Ne);
        }
        asm::trap_if(f, seq);
        f.instr_seq(seq).local_get(len);
        let some = asm::if_(f, seq);
        // the table: m, a reserved word, then m entries, all in the message
        {
            let mut b = f.instr_seq(some);
            b.local_get(off).i32_const(BUNCH_HEADER_SIZE as i32).i32_const(64).call(rt.in_obj).local_tee(table);
            asm::load(&mut b, m, Width::I32, 0);
            b.local_set(count);
            b.local_get(off);
            asm::widen(&mut b);
            b.local_get(count);
            asm::widen(&mut b);
            b.i64_const(i64::from(BUNCH_ENTRY_SIZE)).binop(BinaryOp::I64Mul).binop(BinaryOp::I64Add);
            b.i64_const(i64::from(BUNCH_HEADER_SIZE)).binop(BinaryOp::I64Add);
            b.global_get(rt.in_len);
            asm::widen(&mut b);
            b.binop(BinaryOp::I64GtU);
        }
        asm::trap_if(f, some);
        f.instr_seq(some).i64_const(-1).local_set(prev).i32_const(0).local_set(seen).local_get(ptr).local_set(cursor);
        let body = asm::counted_loop(f, some, count, j);
        {
            let mut b = f.instr_seq(body);
            b.local_get(table).local_get(j).i32_const(BUNCH_ENTRY_SIZE as i32).binop(BinaryOp::I32Mul);
            b.binop(BinaryOp::I32Add).i32_const(BUNCH_HEADER_SIZE as i32).binop(BinaryOp::I32Add).local_tee(entry);
            asm::load(&mut b, m, Width::I32, 0);
            b.local_set(tag);
            // tags strictly increasing
            b.local_get(tag);
            asm::widen(&mut b);
            b.local_get(prev).binop(BinaryOp::I64LeS);
        }
        asm::trap_if(f, body);
        {
            let mut b = f.instr_seq(body);
            b.local_get(tag);
            asm::widen(&mut b);
            b.local_set(prev);
        }
        let index = self.value_to_index(f, body, tag, false, &tags);
        {
            let mut b = f.instr_seq(body);
            b.local_get(entry);
            asm::load(&mut b, m, Width::I32, 4);
            b.local_set(ioff);
            b.local_get(entry);
            asm::load(&mut b, m, Width::I32, 8);
            b.local_set(ilen);
            // the entries hold no more values than the slot says
            b.local_get(seen);
            asm::widen(&mut b);
            b.local_get(ilen);
            asm::widen(&mut b);
            b.binop(BinaryOp::I64Add).local_get(len);
            asm::widen(&mut b);
            b.binop(BinaryOp::I64GtU);
        }
        asm::trap_if(f, body);
        asm::bump_by(&mut f.instr_seq(body), seen, ilen);
        let arms = switch(f, body, index, ncases);
        for (k, arm) in arms.into_iter().enumerate() {
            let payload = by_position.get(k).copied().flatten();
            let canon_payload = canon_cases.get(k).cloned().flatten();
            if let (Some((t, form)), Some(canon_t)) = (payload, canon_payload) {
                // length <= capacity
                {
                    let mut b = f.instr_seq(arm);
                    b.local_get(ilen).local_get(entry);
                    asm::load(&mut b, m, Width::I32, 12);
                    b.binop(BinaryOp::I32GtU);
                }
                asm::trap_if(f, arm);
                if form == ArrayForm::Soa {
                    f.instr_seq(arm).local_get(ilen);
                    let present = asm::if_(f, arm);
                    self.read_soa(f, present, t, &canon_t, ioff, ilen, cursor, csize, cpo);
                    let each = asm::counted_loop(f, arm, ilen, i);
                    let mut b = f.instr_seq(each);
                    b.local_get(cursor).i32_const(k as i32);
                    asm::store(&mut b, g, disc, 0);
                    asm::bump(&mut b, cursor, csize as i32);
                } else {
                    let ksize = layout.get(t).size;
                    f.instr_seq(arm)
                        .local_get(ioff)
                        .local_get(ilen)
                        .i32_const(ksize as i32)
                        .call(rt.in_block)
                        .local_set(from);
                    let each = asm::counted_loop(f, arm, ilen, i);
                    {
                        let mut b = f.instr_seq(each);
                        b.local_get(cursor).i32_const(k as i32);
                        asm::store(&mut b, g, disc, 0);
                    }
                    self.read_inline(f, each, t, from, 0, cursor, cpo);
                    let mut b = f.instr_seq(each);
                    asm::bump(&mut b, from, ksize as i32);
                    asm::bump(&mut b, cursor, csize as i32);
                }
            } else {
                // payload-less values: no storage (offset 0), only a count
                f.instr_seq(arm).local_get(ioff);
                asm::trap_if(f, arm);
                let each = asm::counted_loop(f, arm, ilen, i);
                let mut b = f.instr_seq(each);
                b.local_get(cursor).i32_const(k as i32);
                asm::store(&mut b, g, disc, 0);
                asm::bump(&mut b, cursor, csize as i32);
            }
        }
        // entry lengths sum to the slot's length
        f.instr_seq(some).local_get(seen).local_get(len).binop(BinaryOp::I32Ne);
        asm::trap_if(f, some);
    }

    /// Emits: the `len` (> 0) canonical variants at `ptr` -> a bunch array
    /// whose slot is at message offset `slot`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_bunch(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        elem: TypeId,
        soa: bool,
        canon_elem: &AbiType,
        ptr: LocalId,
        len: LocalId,
        slot: LocalId,
    ) {
        let m = self.env.memory;
        // the variants sit in the guest memory (a list's elements)
        let g = self.place;
        let rt = self.rt;
        let layout = self.layout;
        let cases = self.bunch_cases(elem, soa);
        let ncases = cases.len();
        let disc = disc_width(ncases);
        let csize = canon_elem.size();
        let cpo = canon_elem.payload_offset();
        let canon_cases: Vec<Option<AbiType>> = match canon_elem {
            AbiType::Variant(cases) => cases.iter().map(|(_, t)| t.clone()).collect(),
            _ => Vec::new(),
        };
        let [from, i, index, entries, table, entry, islot, to] = [(); 8].map(|_| self.module.locals.add(ValType::I32));
        let counts: Vec<LocalId> = (0..ncases).map(|_| self.module.locals.add(ValType::I32)).collect();
        // pass 1: count the values of each case (checking discriminants)
        f.instr_seq(seq).local_get(ptr).local_set(from);
        for count in &counts {
            f.instr_seq(seq).i32_const(0).local_set(*count);
        }
        let body = asm::counted_loop(f, seq, len, i);
        {
            let mut b = f.instr_seq(body);
            b.local_get(from);
            asm::load(&mut b, g, disc, 0);
            b.local_tee(index).i32_const(ncases as i32).binop(BinaryOp::I32GeU);
        }
        asm::trap_if(f, body);
        let arms = switch(f, body, index, ncases);
        for (arm, count) in arms.into_iter().zip(&counts) {
            asm::bump(&mut f.instr_seq(arm), *count, 1);
        }
        asm::bump(&mut f.instr_seq(body), from, csize as i32);
        // the table, with one entry per case that has values
        {
            let mut b = f.instr_seq(seq);
            b.i32_const(0).local_set(entries);
            for count in &counts {
                b.local_get(*count).i32_const(0).binop(BinaryOp::I32Ne);
                b.local_get(entries).binop(BinaryOp::I32Add).local_set(entries);
            }
            b.local_get(entries).i32_const(BUNCH_ENTRY_SIZE as i32).binop(BinaryOp::I32Mul);
            b.i32_const(BUNCH_HEADER_SIZE as i32 + 63).binop(BinaryOp::I32Add).i32_const(-64).binop(BinaryOp::I32And);
            b.i32_const(64).call(rt.out_alloc).local_tee(table).local_set(entry);
            self.out_addr(&mut b, table);
            b.local_get(entries);
            asm::store(&mut b, m, Width::I32, 0);
            asm::bump(&mut b, entry, BUNCH_HEADER_SIZE as i32);
        }
        self.store_slot(f, seq, slot, table, len);
        // pass 2, per case in tag order: its entry and its values' array
        for case in &cases {
            let Some(count) = counts.get(case.index as usize).copied() else { continue };
            f.instr_seq(seq).local_get(count);
            let present = asm::if_(f, seq);
            {
                let mut b = f.instr_seq(present);
                self.out_addr(&mut b, entry);
                b.i32_const(case.tag as i32);
                asm::store(&mut b, m, Width::I32, 0);
                b.local_get(entry).i32_const(4).binop(BinaryOp::I32Add).local_set(islot);
            }
            let canon_payload = canon_cases.get(case.index as usize).cloned().flatten();
            match (case.payload, canon_payload) {
                (Some((t, form)), Some(canon_t)) => {
                    let write_values = |this: &mut Self, f: &mut FunctionBuilder, write: &dyn Fn(&mut Self, &mut FunctionBuilder, InstrSeqId)| {
                        f.instr_seq(present).local_get(ptr).local_set(from);
                        let body = asm::counted_loop(f, present, len, i);
                        {
                            let mut b = f.instr_seq(body);
                            b.local_get(from);
                            asm::load(&mut b, g, disc, 0);
                            b.i32_const(case.index as i32).binop(BinaryOp::I32Eq);
                        }
                        let hit = asm::if_(f, body);
                        write(this, f, hit);
                        asm::bump(&mut f.instr_seq(body), from, csize as i32);
                    };
                    if form == ArrayForm::Soa {
                        let cols = self.soa_alloc(f, present, t, count, islot);
                        write_values(self, f, &|this, f, hit| {
                            this.soa_element(f, hit, t, &canon_t, from, cpo, &cols);
                        });
                    } else {
                        let ksize = layout.get(t).size;
                        self.alloc_block(f, present, count, ksize, to);
                        let block = self.module.locals.add(ValType::I32);
                        f.instr_seq(present).local_get(to).local_set(block);
                        self.store_slot(f, present, islot, block, count);
                        write_values(self, f, &|this, f, hit| {
                            this.write_inline(f, hit, t, from, cpo, to, 0);
                            asm::bump(&mut f.instr_seq(hit), to, ksize as i32);
                        });
                    }
                }
                _ => {
                    // payload-less values: only a count, no storage
                    let zero = self.module.locals.add(ValType::I32);
                    self.store_slot(f, present, islot, zero, count);
                }
            }
            asm::bump(&mut f.instr_seq(present), entry, BUNCH_ENTRY_SIZE as i32);
        }
    }
}
