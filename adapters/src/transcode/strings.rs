//! Strings: `#string` arrays (UTF-8 `[]u8`, UTF-16 `[]u16`) <-> canonical
//! ABI strings in the guest's encoding (UTF-8, UTF-16 or `latin1+utf16`).
//!
//! Owns: the string cases of the readers and writers, and the transcoding
//! functions they call, generated in wasm once per module: UTF-8 and UTF-16
//! validation, UTF-8 <-> UTF-16, UTF-8/UTF-16 -> Latin-1 (which reports
//! "not representable" as -1) and Latin-1 -> UTF-8/UTF-16. wasmtime's
//! adapters import their transcoders from the host; these are
//! self-contained. Invalid UTF-8 and unpaired surrogates trap, as the
//! canonical ABI's lifting does.
//!
//! Does not own: the rest of the readers and writers (`read.rs`, `write.rs`).

use walrus::ir::{BinaryOp, InstrSeqId};
use walrus::{FunctionBuilder, FunctionId, LocalId, MemoryId, ValType};

use super::Transcoder;
use crate::asm::{self, Width};
use crate::canon::{StringEncoding, UTF16_TAG};

impl Transcoder<'_> {
    /// Emits: the Karmem string of `len` elements at message offset `off`
    /// -> the canonical string `(ptr, len)` stored at `dst`.
    pub(super) fn read_string(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        utf16: bool,
        off: LocalId,
        len: LocalId,
        dst: LocalId,
    ) {
        // the message's string -> the guest memory; (ptr, len) -> `place`
        let (m, g, place) = (self.env.memory, self.guest, self.place);
        let rt = self.rt;
        let realloc = self.env.realloc;
        let [src, ptr, out_len] = [(); 3].map(|_| self.module.locals.add(ValType::I32));
        let unit = if utf16 { 2 } else { 1 };
        f.instr_seq(seq).local_get(off).local_get(len).i32_const(unit).call(rt.in_block).local_set(src);
        let check = self.string_helper(if utf16 { "utf16_check" } else { "utf8_check" }, m, m);
        f.instr_seq(seq).local_get(src).local_get(len).call(check);
        // Worst-case output sizes: UTF-8 -> UTF-16 two bytes per byte,
        // UTF-16 -> UTF-8 three bytes per unit. Refuse what cannot be
        // allocated in 32 bits.
        let worst_factor = match (utf16, self.options.string_encoding) {
            (false, StringEncoding::Utf8) => 1,
            (true, StringEncoding::Utf8) => 3,
            _ => 2,
        };
        {
            let mut b = f.instr_seq(seq);
            b.local_get(len);
            asm::widen(&mut b);
            b.i64_const(worst_factor).binop(BinaryOp::I64Mul).i64_const(u32::MAX as i64).binop(BinaryOp::I64GtU);
        }
        asm::trap_if(f, seq);
        // the decode limit: what the allocations below may take at most
        // (Latin-1 first, then UTF-16 when a character does not fit)
        let charged = match (utf16, self.options.string_encoding) {
            (_, StringEncoding::Latin1Utf16) => 3,
            (false, StringEncoding::Utf8) => 1,
            (true, StringEncoding::Utf16) => 2,
            _ => worst_factor,
        };
        {
            let mut b = f.instr_seq(seq);
            b.local_get(len);
            asm::widen(&mut b);
            b.i64_const(charged).binop(BinaryOp::I64Mul);
            self.charge(&mut b);
        }
        let store = |f: &mut FunctionBuilder, seq: InstrSeqId, length: &dyn Fn(&mut walrus::InstrSeqBuilder)| {
            let mut b = f.instr_seq(seq);
            b.local_get(dst).local_get(ptr);
            asm::store(&mut b, place, Width::I32, 0);
            b.local_get(dst);
            length(&mut b);
            asm::store(&mut b, place, Width::I32, 4);
        };
        match (utf16, self.options.string_encoding) {
            (false, StringEncoding::Utf8) | (true, StringEncoding::Utf16) => {
                // same encoding: one copy
                let bytes = |b: &mut walrus::InstrSeqBuilder| {
                    b.local_get(len).i32_const(unit).binop(BinaryOp::I32Mul);
                };
                {
                    let mut b = f.instr_seq(seq);
                    b.i32_const(0).i32_const(0).i32_const(unit);
                    bytes(&mut b);
                    b.call(realloc).local_tee(ptr).local_get(src);
                    bytes(&mut b);
                    b.memory_copy(m, g);
                }
                store(f, seq, &|b| {
                    b.local_get(len);
                });
            }
            (false, StringEncoding::Utf16) => {
                let transcode = self.string_helper("utf8_to_utf16", m, g);
                self.transcode_shrinking(f, seq, transcode, src, len, ptr, out_len, 2, 2);
                store(f, seq, &|b| {
                    b.local_get(out_len);
                });
            }
            (true, StringEncoding::Utf8) => {
                let transcode = self.string_helper("utf16_to_utf8", m, g);
                self.transcode_shrinking(f, seq, transcode, src, len, ptr, out_len, 3, 1);
                store(f, seq, &|b| {
                    b.local_get(out_len);
                });
            }
            (_, StringEncoding::Latin1Utf16) => {
                // Latin-1 when every character fits, else UTF-16 (tagged).
                let to_latin1 = self.string_helper(if utf16 { "utf16_to_latin1" } else { "utf8_to_latin1" }, m, g);
                {
                    let mut b = f.instr_seq(seq);
                    b.i32_const(0).i32_const(0).i32_const(2).local_get(len).call(realloc).local_set(ptr);
                    b.local_get(src).local_get(len).local_get(ptr).call(to_latin1).local_tee(out_len);
                    b.i32_const(0).binop(BinaryOp::I32GeS);
                }
                let (latin1, wide) = asm::if_else(f, seq);
                store(f, latin1, &|b| {
                    b.local_get(out_len);
                });
                f.instr_seq(wide)
                    .local_get(ptr)
                    .local_get(len)
                    .i32_const(2)
                    .local_get(len)
                    .i32_const(1)
                    .binop(BinaryOp::I32Shl)
                    .call(realloc)
                    .local_set(ptr);
                if utf16 {
                    f.instr_seq(wide)
                        .local_get(ptr)
                        .local_get(src)
                        .local_get(len)
                        .i32_const(1)
                        .binop(BinaryOp::I32Shl)
                        .memory_copy(m, g)
                        .local_get(len)
                        .local_set(out_len);
                } else {
                    let transcode = self.string_helper("utf8_to_utf16", m, g);
                    f.instr_seq(wide).local_get(src).local_get(len).local_get(ptr).call(transcode).local_set(out_len);
                }
                store(f, wide, &|b| {
                    b.local_get(out_len).i32_const(UTF16_TAG as i32).binop(BinaryOp::I32Or);
                });
            }
        }
    }

    /// Emits: `ptr = realloc(0, 0, align, len * factor)`, `out_len =
    /// transcode(src, len, ptr)`, then shrink the allocation to `out_len`
    /// units of `align` bytes when it came out smaller.
    #[allow(clippy::too_many_arguments)]
    fn transcode_shrinking(
        &mut self,
        f: &mut FunctionBuilder,
        seq: InstrSeqId,
        transcode: FunctionId,
        src: LocalId,
        len: LocalId,
        ptr: LocalId,
        out_len: LocalId,
        factor: i32,
        align: i32,
    ) {
        let realloc = self.env.realloc;
        let mut b = f.instr_seq(seq);
        b.i32_const(0).i32_const(0).i32_const(align).local_get(len).i32_const(factor).binop(BinaryOp::I32Mul);
        b.call(realloc).local_set(ptr);
        b.local_get(src).local_get(len).local_get(ptr).call(transcode).local_set(out_len);
        b.local_get(out_len).i32_const(align).binop(BinaryOp::I32Mul);
        b.local_get(len).i32_const(factor).binop(BinaryOp::I32Mul).binop(BinaryOp::I32LtU);
        let shrink = asm::if_(f, seq);
        f.instr_seq(shrink)
            .local_get(ptr)
            .local_get(len)
            .i32_const(factor)
            .binop(BinaryOp::I32Mul)
            .i32_const(align)
            .local_get(out_len)
            .i32_const(align)
            .binop(BinaryOp::I32Mul)
            .call(realloc)
            .local_set(ptr);
    }

    /// Emits: the canonical string at `src` -> a Karmem string whose slot is
    /// at message offset `slot`.
    pub(super) fn write_string(&mut self, f: &mut FunctionBuilder, seq: InstrSeqId, utf16: bool, src: LocalId, slot: LocalId) {
        // (ptr, len) at `place`, the string in the guest memory -> the message
        let (m, g, place) = (self.env.memory, self.guest, self.place);
        let rt = self.rt;
        let [ptr, len, blk, count, cap] = [(); 5].map(|_| self.module.locals.add(ValType::I32));
        {
            let mut b = f.instr_seq(seq);
            b.local_get(src);
            asm::load(&mut b, place, Width::I32, 0);
            b.local_set(ptr);
            b.local_get(src);
            asm::load(&mut b, place, Width::I32, 4);
            b.local_set(len);
        }
        // UTF-16 and latin1+UTF-16 strings are 2-aligned: lifting a string
        // at an odd address traps ("string pointer not aligned to 2").
        if self.options.string_encoding != StringEncoding::Utf8 {
            f.instr_seq(seq).local_get(ptr).i32_const(1).binop(BinaryOp::I32And);
            asm::trap_if(f, seq);
        }
        // Each case leaves `blk`, `count` and `cap` set (blk unset when empty).
        let emit_case = |this: &mut Self, f: &mut FunctionBuilder, seq: InstrSeqId, source: Source| {
            // worst-case Karmem units for `len` source units
            let (factor, unit) = match (source, utf16) {
                (Source::Utf8, false) | (Source::Utf16, true) | (Source::Latin1, true) => (1, if utf16 { 2 } else { 1 }),
                (Source::Utf8, true) => (1, 2),
                (Source::Utf16, false) => (3, 1),
                (Source::Latin1, false) => (2, 1),
            };
            {
                let mut b = f.instr_seq(seq);
                b.local_get(len);
                asm::widen(&mut b);
                b.i64_const(factor * unit as i64).binop(BinaryOp::I64Mul).i64_const(u32::MAX as i64 - 64);
                b.binop(BinaryOp::I64GtU);
            }
            asm::trap_if(f, seq);
            {
                let mut b = f.instr_seq(seq);
                b.local_get(len).i32_const(factor as i32).binop(BinaryOp::I32Mul).local_set(cap);
                b.local_get(cap).i32_const(unit).binop(BinaryOp::I32Mul).i32_const(63).binop(BinaryOp::I32Add);
                b.i32_const(-64).binop(BinaryOp::I32And).i32_const(64).call(rt.out_alloc).local_set(blk);
            }
            let same = matches!((source, utf16), (Source::Utf8, false) | (Source::Utf16, true));
            if same {
                let check = this.string_helper(if utf16 { "utf16_check" } else { "utf8_check" }, g, g);
                let mut b = f.instr_seq(seq);
                b.local_get(ptr).local_get(len).call(check);
                b.global_get(rt.out_base).local_get(blk).binop(BinaryOp::I32Add).local_get(ptr);
                b.local_get(len).i32_const(unit).binop(BinaryOp::I32Mul).memory_copy(g, m);
                b.local_get(len).local_set(count);
            } else {
                let name = match (source, utf16) {
                    (Source::Utf8, true) => "utf8_to_utf16",
                    (Source::Utf16, false) => "utf16_to_utf8",
                    (Source::Latin1, false) => "latin1_to_utf8",
                    _ => "latin1_to_utf16",
                };
                let needs_check = source == Source::Utf8;
                if needs_check {
                    let check = this.string_helper("utf8_check", g, g);
                    f.instr_seq(seq).local_get(ptr).local_get(len).call(check);
                }
                let transcode = this.string_helper(name, g, m);
                f.instr_seq(seq)
                    .local_get(ptr)
                    .local_get(len)
                    .global_get(rt.out_base)
                    .local_get(blk)
                    .binop(BinaryOp::I32Add)
                    .call(transcode)
                    .local_set(count);
            }
        };
        f.instr_seq(seq).i32_const(0).local_set(count);
        match self.options.string_encoding {
            StringEncoding::Utf8 | StringEncoding::Utf16 => {
                let source =
                    if self.options.string_encoding == StringEncoding::Utf8 { Source::Utf8 } else { Source::Utf16 };
                f.instr_seq(seq).local_get(len);
                let some = asm::if_(f, seq);
                emit_case(self, f, some, source);
            }
            StringEncoding::Latin1Utf16 => {
                f.instr_seq(seq).local_get(len).i32_const(UTF16_TAG as i32).binop(BinaryOp::I32And);
                let (wide, narrow) = asm::if_else(f, seq);
                f.instr_seq(wide).local_get(len).i32_const(!UTF16_TAG as i32).binop(BinaryOp::I32And).local_tee(len);
                let some = asm::if_(f, wide);
                emit_case(self, f, some, Source::Utf16);
                f.instr_seq(narrow).local_get(len);
                let some = asm::if_(f, narrow);
                emit_case(self, f, some, Source::Latin1);
            }
        }
        // slot = {blk, count, cap}; nothing to write for the empty string
        f.instr_seq(seq).local_get(count);
        let some = asm::if_(f, seq);
        let mut b = f.instr_seq(some);
        b.global_get(rt.out_base).local_get(slot).binop(BinaryOp::I32Add).local_tee(src).local_get(blk);
        asm::store(&mut b, m, Width::I32, 0);
        b.local_get(src).local_get(count);
        asm::store(&mut b, m, Width::I32, 4);
        b.local_get(src).local_get(cap);
        asm::store(&mut b, m, Width::I32, 8);
    }

    /// The transcoding function `name` reading memory `from` and writing
    /// memory `to` (a check only reads), generated on first use.
    pub(crate) fn string_helper(&mut self, name: &'static str, from: MemoryId, to: MemoryId) -> FunctionId {
        let key = (name, from, to);
        if let Some(&id) = self.string_helpers.get(&key) {
            return id;
        }
        let m = Mems { from, to };
        let module = &mut *self.module;
        let params: &[ValType] = if name.ends_with("check") { &[ValType::I32; 2] } else { &[ValType::I32; 3] };
        let results: &[ValType] = if name.ends_with("check") { &[] } else { &[ValType::I32] };
        let mut f = FunctionBuilder::new(&mut module.types, params, results);
        f.name(format!("karmem {name}"));
        let [p, n, out, i, k, c, cp, need, lo, hi] = [(); 10].map(|_| module.locals.add(ValType::I32));
        let args = if params.len() == 2 { vec![p, n] } else { vec![p, n, out] };
        let seq = f.func_body_id();
        let l = Locals { p, n, out, i, k, c, cp, need, lo, hi };
        match name {
            "utf8_check" => utf8_check(&mut f, seq, m, &l),
            "utf16_check" => utf16_walk(&mut f, seq, m, &l, false),
            "utf16_to_utf8" => utf16_walk(&mut f, seq, m, &l, true),
            "utf8_to_utf16" => utf8_to_utf16(&mut f, seq, m, &l),
            "utf8_to_latin1" => utf8_to_latin1(&mut f, seq, m, &l),
            "utf16_to_latin1" => utf16_to_latin1(&mut f, seq, m, &l),
            "latin1_to_utf8" => latin1_to_utf8(&mut f, seq, m, &l),
            _ => latin1_to_utf16(&mut f, seq, m, &l),
        }
        let id = f.finish(args, &mut module.funcs);
        self.string_helpers.insert(key, id);
        id
    }
}

/// The memories a transcoding function reads (`p`) and writes (`out`).
#[derive(Debug, Clone, Copy)]
struct Mems {
    from: MemoryId,
    to: MemoryId,
}

/// The encoding of a canonical string being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Utf8,
    Utf16,
    Latin1,
}

/// The locals of a transcoding function: input, count, output, input index,
/// output index, and scratch.
struct Locals {
    p: LocalId,
    n: LocalId,
    out: LocalId,
    i: LocalId,
    k: LocalId,
    c: LocalId,
    cp: LocalId,
    need: LocalId,
    lo: LocalId,
    hi: LocalId,
}

/// Emits the loop skeleton `while i < n { body }` and returns (body, top):
/// `br top` continues.
fn walk(f: &mut FunctionBuilder, seq: InstrSeqId, l: &Locals) -> (InstrSeqId, InstrSeqId) {
    f.instr_seq(seq).i32_const(0).local_set(l.i).i32_const(0).local_set(l.k);
    let done = asm::block(f, seq);
    let top = asm::loop_(f, done);
    f.instr_seq(top).local_get(l.i).local_get(l.n).binop(BinaryOp::I32GeU).br_if(done);
    let body = asm::block(f, top);
    f.instr_seq(top).br(top);
    (body, top)
}

/// Pushes the byte at `p + i + at`.
fn byte_at(b: &mut walrus::InstrSeqBuilder, m: Mems, l: &Locals, at: u32) {
    b.local_get(l.p).local_get(l.i).binop(BinaryOp::I32Add);
    asm::load(b, m.from, Width::U8, at);
}

/// Pushes the code unit at `p + 2 * i`.
fn unit_at(b: &mut walrus::InstrSeqBuilder, m: Mems, l: &Locals) {
    b.local_get(l.p).local_get(l.i).i32_const(1).binop(BinaryOp::I32Shl).binop(BinaryOp::I32Add);
    asm::load(b, m.from, Width::U16, 0);
}

/// Emits: `out[k + at] = <value pushed by push>` (a byte).
fn put_byte(f: &mut FunctionBuilder, seq: InstrSeqId, m: Mems, l: &Locals, at: u32, push: impl FnOnce(&mut walrus::InstrSeqBuilder)) {
    let mut b = f.instr_seq(seq);
    b.local_get(l.out).local_get(l.k).binop(BinaryOp::I32Add);
    push(&mut b);
    asm::store(&mut b, m.to, Width::U8, at);
}

/// Emits: `out[2k + at] = <value>` (a code unit).
fn put_unit(f: &mut FunctionBuilder, seq: InstrSeqId, m: Mems, l: &Locals, at: u32, push: impl FnOnce(&mut walrus::InstrSeqBuilder)) {
    let mut b = f.instr_seq(seq);
    b.local_get(l.out).local_get(l.k).i32_const(1).binop(BinaryOp::I32Shl).binop(BinaryOp::I32Add);
    push(&mut b);
    asm::store(&mut b, m.to, Width::U16, at);
}

/// Emits: `if <cond pushed> { trap }`.
fn trap_when(f: &mut FunctionBuilder, seq: InstrSeqId, push: impl FnOnce(&mut walrus::InstrSeqBuilder)) {
    push(&mut f.instr_seq(seq));
    asm::trap_if(f, seq);
}

/// UTF-8 validation (RFC 3629: no overlongs, no surrogates, at most U+10FFFF),
/// eight ASCII bytes at a time where it can.
fn utf8_check(f: &mut FunctionBuilder, seq: InstrSeqId, m: Mems, l: &Locals) {
    let (body, top) = walk(f, seq, l);
    // fast path: 8 ASCII bytes
    f.instr_seq(body).local_get(l.n).local_get(l.i).binop(BinaryOp::I32Sub).i32_const(8).binop(BinaryOp::I32GeU);
    let room = asm::if_(f, body);
    {
        let mut b = f.instr_seq(room);
        b.local_get(l.p).local_get(l.i).binop(BinaryOp::I32Add);
        asm::load(&mut b, m.from, Width::I64, 0);
        b.i64_const(0x8080_8080_8080_8080u64 as i64).binop(BinaryOp::I64And).unop(walrus::ir::UnaryOp::I64Eqz);
    }
    let ascii = asm::if_(f, room);
    {
        let mut b = f.instr_seq(ascii);
        asm::bump(&mut b, l.i, 8);
        b.br(top);
    }
    {
        let mut b = f.instr_seq(body);
        byte_at(&mut b, m, l, 0);
        b.local_tee(l.c).i32_const(0x80).binop(BinaryOp::I32LtU);
    }
    let one = asm::if_(f, body);
    {
        let mut b = f.instr_seq(one);
        asm::bump(&mut b, l.i, 1);
        b.br(top);
    }
    trap_when(f, body, |b| {
        b.local_get(l.c).i32_const(0xC2).binop(BinaryOp::I32LtU).local_get(l.c).i32_const(0xF4).binop(BinaryOp::I32GtU);
        b.binop(BinaryOp::I32Or);
    });
    // need, lo, hi by the lead byte
    f.instr_seq(body)
        .i32_const(1)
        .local_set(l.need)
        .i32_const(0x80)
        .local_set(l.lo)
        .i32_const(0xBF)
        .local_set(l.hi);
    f.instr_seq(body).local_get(l.c).i32_const(0xE0).binop(BinaryOp::I32GeU);
    let three = asm::if_(f, body);
    f.instr_seq(three).i32_const(2).local_set(l.need);
    f.instr_seq(three).local_get(l.c).i32_const(0xE0).binop(BinaryOp::I32Eq);
    let e0 = asm::if_(f, three);
    f.instr_seq(e0).i32_const(0xA0).local_set(l.lo);
    f.instr_seq(three).local_get(l.c).i32_const(0xED).binop(BinaryOp::I32Eq);
    let ed = asm::if_(f, three);
    f.instr_seq(ed).i32_const(0x9F).local_set(l.hi);
    f.instr_seq(body).local_get(l.c).i32_const(0xF0).binop(BinaryOp::I32GeU);
    let four = asm::if_(f, body);
    f.instr_seq(four).i32_const(3).local_set(l.need);
    f.instr_seq(four).local_get(l.c).i32_const(0xF0).binop(BinaryOp::I32Eq);
    let f0 = asm::if_(f, four);
    f.instr_seq(f0).i32_const(0x90).local_set(l.lo);
    f.instr_seq(four).local_get(l.c).i32_const(0xF4).binop(BinaryOp::I32Eq);
    let f4 = asm::if_(f, four);
    f.instr_seq(f4).i32_const(0x8F).local_set(l.hi);
    // the continuation bytes must be inside the input
    trap_when(f, body, |b| {
        b.local_get(l.n).local_get(l.i).binop(BinaryOp::I32Sub).local_get(l.need).binop(BinaryOp::I32LeU);
    });
    trap_when(f, body, |b| {
        byte_at(b, m, l, 1);
        b.local_tee(l.cp).local_get(l.lo).binop(BinaryOp::I32LtU).local_get(l.cp).local_get(l.hi);
        b.binop(BinaryOp::I32GtU).binop(BinaryOp::I32Or);
    });
    for at in 2..=3u32 {
        f.instr_seq(body).local_get(l.need).i32_const(at as i32).binop(BinaryOp::I32GeU);
        let more = asm::if_(f, body);
        trap_when(f, more, |b| {
            byte_at(b, m, l, at);
            b.i32_const(0xC0).binop(BinaryOp::I32And).i32_const(0x80).binop(BinaryOp::I32Ne);
        });
    }
    let mut b = f.instr_seq(body);
    b.local_get(l.i).local_get(l.need).binop(BinaryOp::I32Add).i32_const(1).binop(BinaryOp::I32Add).local_set(l.i);
}

/// UTF-16 validation (`write == false`) or UTF-16 -> UTF-8 returning the
/// byte count (`write == true`); unpaired surrogates trap either way.
fn utf16_walk(f: &mut FunctionBuilder, seq: InstrSeqId, m: Mems, l: &Locals, write: bool) {
    let (body, top) = walk(f, seq, l);
    {
        let mut b = f.instr_seq(body);
        unit_at(&mut b, m, l);
        b.local_set(l.c);
        asm::bump(&mut b, l.i, 1);
    }
    if write {
        f.instr_seq(body).local_get(l.c).i32_const(0x80).binop(BinaryOp::I32LtU);
        let ascii = asm::if_(f, body);
        put_byte(f, ascii, m, l, 0, |b| {
            b.local_get(l.c);
        });
        asm::bump(&mut f.instr_seq(ascii), l.k, 1);
        f.instr_seq(ascii).br(top);
        f.instr_seq(body).local_get(l.c).i32_const(0x800).binop(BinaryOp::I32LtU);
        let two = asm::if_(f, body);
        put_byte(f, two, m, l, 0, |b| {
            b.local_get(l.c).i32_const(6).binop(BinaryOp::I32ShrU).i32_const(0xC0).binop(BinaryOp::I32Or);
        });
        put_byte(f, two, m, l, 1, |b| {
            b.local_get(l.c).i32_const(0x3F).binop(BinaryOp::I32And).i32_const(0x80).binop(BinaryOp::I32Or);
        });
        asm::bump(&mut f.instr_seq(two), l.k, 2);
        f.instr_seq(two).br(top);
    }
    f.instr_seq(body).local_get(l.c).i32_const(0xF800).binop(BinaryOp::I32And).i32_const(0xD800).binop(BinaryOp::I32Eq);
    let surrogate = asm::if_(f, body);
    // a high surrogate followed by a low one
    trap_when(f, surrogate, |b| {
        b.local_get(l.c).i32_const(0xDC00).binop(BinaryOp::I32GeU).local_get(l.i).local_get(l.n);
        b.binop(BinaryOp::I32GeU).binop(BinaryOp::I32Or);
    });
    trap_when(f, surrogate, |b| {
        unit_at(b, m, l);
        b.local_tee(l.cp).i32_const(0xFC00).binop(BinaryOp::I32And).i32_const(0xDC00).binop(BinaryOp::I32Ne);
    });
    asm::bump(&mut f.instr_seq(surrogate), l.i, 1);
    if write {
        f.instr_seq(surrogate)
            .local_get(l.c)
            .i32_const(0xD800)
            .binop(BinaryOp::I32Sub)
            .i32_const(10)
            .binop(BinaryOp::I32Shl)
            .local_get(l.cp)
            .i32_const(0xDC00)
            .binop(BinaryOp::I32Sub)
            .binop(BinaryOp::I32Add)
            .i32_const(0x10000)
            .binop(BinaryOp::I32Add)
            .local_set(l.cp);
        for (at, shift, lead) in [(0u32, 18, 0xF0), (1, 12, 0x80), (2, 6, 0x80), (3, 0, 0x80)] {
            put_byte(f, surrogate, m, l, at, |b| {
                b.local_get(l.cp).i32_const(shift).binop(BinaryOp::I32ShrU);
                if at > 0 {
                    b.i32_const(0x3F).binop(BinaryOp::I32And);
                }
                b.i32_const(lead).binop(BinaryOp::I32Or);
            });
        }
        asm::bump(&mut f.instr_seq(surrogate), l.k, 4);
    }
    f.instr_seq(surrogate).br(top);
    if write {
        for (at, shift, lead) in [(0u32, 12, 0xE0), (1, 6, 0x80), (2, 0, 0x80)] {
            put_byte(f, body, m, l, at, |b| {
                b.local_get(l.c).i32_const(shift).binop(BinaryOp::I32ShrU);
                if at > 0 {
                    b.i32_const(0x3F).binop(BinaryOp::I32And);
                }
                b.i32_const(lead).binop(BinaryOp::I32Or);
            });
        }
        asm::bump(&mut f.instr_seq(body), l.k, 3);
        f.instr_seq(seq).local_get(l.k);
    }
}

/// Valid UTF-8 -> UTF-16, returning the unit count.
fn utf8_to_utf16(f: &mut FunctionBuilder, seq: InstrSeqId, m: Mems, l: &Locals) {
    let (body, top) = walk(f, seq, l);
    {
        let mut b = f.instr_seq(body);
        byte_at(&mut b, m, l, 0);
        b.local_tee(l.c).i32_const(0x80).binop(BinaryOp::I32LtU);
    }
    let ascii = asm::if_(f, body);
    put_unit(f, ascii, m, l, 0, |b| {
        b.local_get(l.c);
    });
    asm::bump(&mut f.instr_seq(ascii), l.i, 1);
    asm::bump(&mut f.instr_seq(ascii), l.k, 1);
    f.instr_seq(ascii).br(top);
    // decode the code point of a 2-, 3- or 4-byte sequence
    let cont = |b: &mut walrus::InstrSeqBuilder, at: u32, shift: i32| {
        byte_at(b, m, l, at);
        b.i32_const(0x3F).binop(BinaryOp::I32And);
        if shift > 0 {
            b.i32_const(shift).binop(BinaryOp::I32Shl);
        }
        b.binop(BinaryOp::I32Or);
    };
    f.instr_seq(body).local_get(l.c).i32_const(0xE0).binop(BinaryOp::I32LtU);
    let (two, more) = asm::if_else(f, body);
    {
        let mut b = f.instr_seq(two);
        b.local_get(l.c).i32_const(0x1F).binop(BinaryOp::I32And).i32_const(6).binop(BinaryOp::I32Shl);
        cont(&mut b, 1, 0);
        b.local_set(l.cp);
        asm::bump(&mut b, l.i, 2);
    }
    f.instr_seq(more).local_get(l.c).i32_const(0xF0).binop(BinaryOp::I32LtU);
    let (three, four) = asm::if_else(f, more);
    {
        let mut b = f.instr_seq(three);
        b.local_get(l.c).i32_const(0x0F).binop(BinaryOp::I32And).i32_const(12).binop(BinaryOp::I32Shl);
        cont(&mut b, 1, 6);
        cont(&mut b, 2, 0);
        b.local_set(l.cp);
        asm::bump(&mut b, l.i, 3);
    }
    {
        let mut b = f.instr_seq(four);
        b.local_get(l.c).i32_const(0x07).binop(BinaryOp::I32And).i32_const(18).binop(BinaryOp::I32Shl);
        cont(&mut b, 1, 12);
        cont(&mut b, 2, 6);
        cont(&mut b, 3, 0);
        b.local_set(l.cp);
        asm::bump(&mut b, l.i, 4);
    }
    f.instr_seq(body).local_get(l.cp).i32_const(0x10000).binop(BinaryOp::I32GeU);
    let (pair, single) = asm::if_else(f, body);
    f.instr_seq(pair).local_get(l.cp).i32_const(0x10000).binop(BinaryOp::I32Sub).local_set(l.cp);
    put_unit(f, pair, m, l, 0, |b| {
        b.local_get(l.cp).i32_const(10).binop(BinaryOp::I32ShrU).i32_const(0xD800).binop(BinaryOp::I32Or);
    });
    put_unit(f, pair, m, l, 2, |b| {
        b.local_get(l.cp).i32_const(0x3FF).binop(BinaryOp::I32And).i32_const(0xDC00).binop(BinaryOp::I32Or);
    });
    asm::bump(&mut f.instr_seq(pair), l.k, 2);
    put_unit(f, single, m, l, 0, |b| {
        b.local_get(l.cp);
    });
    asm::bump(&mut f.instr_seq(single), l.k, 1);
    f.instr_seq(seq).local_get(l.k);
}

/// Valid UTF-8 -> Latin-1, returning the byte count, or -1 when a character
/// is above U+00FF.
fn utf8_to_latin1(f: &mut FunctionBuilder, seq: InstrSeqId, m: Mems, l: &Locals) {
    let (body, top) = walk(f, seq, l);
    {
        let mut b = f.instr_seq(body);
        byte_at(&mut b, m, l, 0);
        b.local_tee(l.c).i32_const(0x80).binop(BinaryOp::I32LtU);
    }
    let ascii = asm::if_(f, body);
    put_byte(f, ascii, m, l, 0, |b| {
        b.local_get(l.c);
    });
    asm::bump(&mut f.instr_seq(ascii), l.i, 1);
    asm::bump(&mut f.instr_seq(ascii), l.k, 1);
    f.instr_seq(ascii).br(top);
    // only C2 and C3 lead bytes encode U+0080..U+00FF
    f.instr_seq(body).local_get(l.c).i32_const(0xC3).binop(BinaryOp::I32GtU);
    let wide = asm::if_(f, body);
    f.instr_seq(wide).i32_const(-1).return_();
    put_byte(f, body, m, l, 0, |b| {
        b.local_get(l.c).i32_const(0x1F).binop(BinaryOp::I32And).i32_const(6).binop(BinaryOp::I32Shl);
        byte_at(b, m, l, 1);
        b.i32_const(0x3F).binop(BinaryOp::I32And).binop(BinaryOp::I32Or);
    });
    asm::bump(&mut f.instr_seq(body), l.i, 2);
    asm::bump(&mut f.instr_seq(body), l.k, 1);
    f.instr_seq(seq).local_get(l.k);
}

/// UTF-16 -> Latin-1, returning the count, or -1 when a unit is above 0xFF.
fn utf16_to_latin1(f: &mut FunctionBuilder, seq: InstrSeqId, m: Mems, l: &Locals) {
    let (body, _) = walk(f, seq, l);
    {
        let mut b = f.instr_seq(body);
        unit_at(&mut b, m, l);
        b.local_tee(l.c).i32_const(0xFF).binop(BinaryOp::I32GtU);
    }
    let wide = asm::if_(f, body);
    f.instr_seq(wide).i32_const(-1).return_();
    {
        let mut b = f.instr_seq(body);
        b.local_get(l.out).local_get(l.i).binop(BinaryOp::I32Add).local_get(l.c);
        asm::store(&mut b, m.to, Width::U8, 0);
        asm::bump(&mut b, l.i, 1);
    }
    f.instr_seq(seq).local_get(l.n);
}

/// Latin-1 -> UTF-8, returning the byte count.
fn latin1_to_utf8(f: &mut FunctionBuilder, seq: InstrSeqId, m: Mems, l: &Locals) {
    let (body, _) = walk(f, seq, l);
    {
        let mut b = f.instr_seq(body);
        byte_at(&mut b, m, l, 0);
        b.local_tee(l.c).i32_const(0x80).binop(BinaryOp::I32LtU);
    }
    let (ascii, two) = asm::if_else(f, body);
    put_byte(f, ascii, m, l, 0, |b| {
        b.local_get(l.c);
    });
    asm::bump(&mut f.instr_seq(ascii), l.k, 1);
    put_byte(f, two, m, l, 0, |b| {
        b.local_get(l.c).i32_const(6).binop(BinaryOp::I32ShrU).i32_const(0xC0).binop(BinaryOp::I32Or);
    });
    put_byte(f, two, m, l, 1, |b| {
        b.local_get(l.c).i32_const(0x3F).binop(BinaryOp::I32And).i32_const(0x80).binop(BinaryOp::I32Or);
    });
    asm::bump(&mut f.instr_seq(two), l.k, 2);
    asm::bump(&mut f.instr_seq(body), l.i, 1);
    f.instr_seq(seq).local_get(l.k);
}

/// Latin-1 -> UTF-16, returning the unit count (the input length).
fn latin1_to_utf16(f: &mut FunctionBuilder, seq: InstrSeqId, m: Mems, l: &Locals) {
    let (body, _) = walk(f, seq, l);
    put_unit(f, body, m, l, 0, |b| {
        byte_at(b, m, l, 0);
    });
    asm::bump(&mut f.instr_seq(body), l.i, 1);
    asm::bump(&mut f.instr_seq(body), l.k, 1);
    f.instr_seq(seq).local_get(l.n);
}
