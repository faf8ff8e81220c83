//! `KarmemAlloc` / `KarmemFree`: the adapter's allocator, generated in wasm.
//!
//! Owns: a power-of-two size-class allocator on top of `memory.grow`. Why not
//! the guest's `cabi_realloc`: it cannot free (wit-bindgen's returns a
//! dangling pointer for size 0 and never releases), while the ABI hands
//! buffers back with `KarmemFree` on every import call and the output
//! buffer grows by reallocation — a leak per call. Why `memory.grow` is
//! safe next to the guest's own allocator: allocators of wasm guests
//! (dlmalloc in Rust and wasi-libc) take whatever `memory.grow` returns and
//! cope with memory they did not grow themselves, the same as with a host
//! that grows memory. A guest allocator that takes every page up to
//! `memory.size` as its own (a bump pointer that grows memory only when it
//! reaches the end) would hand out the allocator's pages when both share a
//! memory; taking chunks from the guest's `cabi_realloc` instead fails the
//! other way, for allocators that reclaim everything in a post-return or
//! collect garbage (measured on the WAT fixtures `latin1-utf16-strings` and
//! `utf16-strings`). The remedy is a memory of the allocator's own, the
//! Karmem edge memory (docs/ABI.md §10; `lower` gives one to the guests
//! [`reads_memory_size`] finds, as a partition of the one memory).
//!
//! Shape: classes 2^6 .. 2^31 bytes (64 B minimum, so every block is 64-byte
//! aligned, the ABI's largest alignment); one free list per class, heads in
//! a 128-byte table at the start of the first page the allocator takes; a
//! bump region carved from pages grown on demand (at least 16 pages at a
//! time for small classes). Freed blocks go on their class's list; nothing
//! is returned to the system. A request above 2^31 bytes or a failed
//! `memory.grow` traps.
//!
//! Does not own: who calls it (`abi`, the output buffer in `transcode`).

use walrus::ir::{BinaryOp, Instr, UnaryOp, Value};
use walrus::{ConstExpr, FunctionBuilder, FunctionId, MemoryId, Module, ValType};

use crate::asm::{self, Width};

/// The smallest class: 2^6 = 64 bytes.
const MIN_CLASS: i32 = 6;
/// Pages grown at a time for blocks smaller than this many pages.
const GROW_PAGES: i32 = 16;

/// Adds `KarmemAlloc(size, align) -> ptr` and `KarmemFree(ptr, size, align)`.
pub fn add_allocator(module: &mut Module, memory: MemoryId) -> (FunctionId, FunctionId) {
    let mut global = |name: &str| {
        let id = module.globals.add_local(ValType::I32, true, false, ConstExpr::Value(Value::I32(0)));
        module.globals.get_mut(id).name = Some(format!("karmem alloc {name}"));
        id
    };
    let heads = global("heads");
    let bump = global("bump");
    let bump_end = global("bump_end");

    // class(size) = max(6, ceil(log2(size)))  (as the byte offset of its head: 4 * class)
    let alloc = {
        let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I32; 2], &[ValType::I32]);
        f.name("KarmemAlloc".to_string());
        let [size, align, class, ptr, need, pages] = [(); 6].map(|_| module.locals.add(ValType::I32));
        let seq = f.func_body_id();
        // sizes above 2^31 and alignments above 64 are not served
        f.instr_seq(seq)
            .local_get(size)
            .i32_const(i32::MIN)
            .binop(BinaryOp::I32GtU)
            .local_get(align)
            .i32_const(64)
            .binop(BinaryOp::I32GtU)
            .binop(BinaryOp::I32Or);
        asm::trap_if(&mut f, seq);
        {
            let mut b = f.instr_seq(seq);
            // class = 32 - clz(size - 1), at least MIN_CLASS
            b.local_get(size).i32_const(1).binop(BinaryOp::I32Sub).unop(UnaryOp::I32Clz);
            b.i32_const(32).binop(BinaryOp::I32Sub).i32_const(0).binop(BinaryOp::I32Sub);
            b.i32_const(-1).binop(BinaryOp::I32Mul).local_tee(class);
            b.i32_const(MIN_CLASS).local_get(class).i32_const(MIN_CLASS).binop(BinaryOp::I32GtS);
            b.select(None).local_set(class);
            // size 0 wraps to clz(-1) = 0 -> class 32: clamp to MIN_CLASS
            b.local_get(size).unop(UnaryOp::I32Eqz);
        }
        let tiny = asm::if_(&mut f, seq);
        f.instr_seq(tiny).i32_const(MIN_CLASS).local_set(class);
        // the head table lives in the first page taken
        f.instr_seq(seq).global_get(heads).unop(UnaryOp::I32Eqz);
        let first = asm::if_(&mut f, seq);
        {
            let mut b = f.instr_seq(first);
            b.i32_const(GROW_PAGES).memory_grow(memory).local_tee(ptr).i32_const(-1).binop(BinaryOp::I32Eq);
        }
        asm::trap_if(&mut f, first);
        {
            let mut b = f.instr_seq(first);
            b.local_get(ptr).i32_const(16).binop(BinaryOp::I32Shl).local_tee(ptr).global_set(heads);
            b.local_get(ptr).i32_const(0).i32_const(128).memory_fill(memory);
            b.local_get(ptr).i32_const(128).binop(BinaryOp::I32Add).global_set(bump);
            b.local_get(ptr).i32_const(GROW_PAGES << 16).binop(BinaryOp::I32Add).global_set(bump_end);
        }
        // a free block of this class?
        {
            let mut b = f.instr_seq(seq);
            b.global_get(heads).local_get(class).i32_const(2).binop(BinaryOp::I32Shl).binop(BinaryOp::I32Add);
            asm::load(&mut b, memory, Width::I32, 0);
            b.local_tee(ptr);
        }
        let reuse = asm::if_(&mut f, seq);
        {
            let mut b = f.instr_seq(reuse);
            // head = next
            b.global_get(heads).local_get(class).i32_const(2).binop(BinaryOp::I32Shl).binop(BinaryOp::I32Add);
            b.local_get(ptr);
            asm::load(&mut b, memory, Width::I32, 0);
            asm::store(&mut b, memory, Width::I32, 0);
            b.local_get(ptr).return_();
        }
        // carve from the bump region, growing it when too small
        {
            let mut b = f.instr_seq(seq);
            b.i32_const(1).local_get(class).binop(BinaryOp::I32Shl).local_set(need);
            b.global_get(bump_end).global_get(bump).binop(BinaryOp::I32Sub).local_get(need).binop(BinaryOp::I32LtU);
        }
        let grow = asm::if_(&mut f, seq);
        {
            let mut b = f.instr_seq(grow);
            b.local_get(need).i32_const(0xFFFF).binop(BinaryOp::I32Add).i32_const(16).binop(BinaryOp::I32ShrU);
            b.local_tee(pages).i32_const(GROW_PAGES).local_get(pages).i32_const(GROW_PAGES).binop(BinaryOp::I32GtU);
            b.select(None).local_tee(pages).memory_grow(memory).local_tee(ptr).i32_const(-1).binop(BinaryOp::I32Eq);
        }
        asm::trap_if(&mut f, grow);
        {
            let mut b = f.instr_seq(grow);
            // the rest of the old region is abandoned (a heuristic: keeps the
            // allocator simple; regions are at least 1 MiB)
            b.local_get(ptr).i32_const(16).binop(BinaryOp::I32Shl).local_tee(ptr).global_set(bump);
            b.local_get(ptr).local_get(pages).i32_const(16).binop(BinaryOp::I32Shl).binop(BinaryOp::I32Add);
            b.global_set(bump_end);
        }
        {
            let mut b = f.instr_seq(seq);
            b.global_get(bump).local_tee(ptr).local_get(need).binop(BinaryOp::I32Add).global_set(bump);
            b.local_get(ptr);
        }
        f.finish(vec![size, align], &mut module.funcs)
    };

    let free = {
        let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I32; 3], &[]);
        f.name("KarmemFree".to_string());
        let [ptr, size, align, class, head] = [(); 5].map(|_| module.locals.add(ValType::I32));
        let seq = f.func_body_id();
        // freeing nothing, or before anything was allocated, does nothing
        f.instr_seq(seq)
            .local_get(ptr)
            .unop(UnaryOp::I32Eqz)
            .global_get(heads)
            .unop(UnaryOp::I32Eqz)
            .binop(BinaryOp::I32Or);
        let nothing = asm::if_(&mut f, seq);
        f.instr_seq(nothing).return_();
        {
            let mut b = f.instr_seq(seq);
            b.local_get(size).i32_const(1).binop(BinaryOp::I32Sub).unop(UnaryOp::I32Clz);
            b.i32_const(32).binop(BinaryOp::I32Sub).i32_const(-1).binop(BinaryOp::I32Mul).local_tee(class);
            b.i32_const(MIN_CLASS).local_get(class).i32_const(MIN_CLASS).binop(BinaryOp::I32GtS);
            b.select(None).local_set(class);
            b.local_get(size).unop(UnaryOp::I32Eqz);
        }
        let tiny = asm::if_(&mut f, seq);
        f.instr_seq(tiny).i32_const(MIN_CLASS).local_set(class);
        {
            let mut b = f.instr_seq(seq);
            b.global_get(heads).local_get(class).i32_const(2).binop(BinaryOp::I32Shl).binop(BinaryOp::I32Add);
            b.local_tee(head);
            // block.next = head; head = block
            b.local_get(ptr).local_get(head);
            asm::load(&mut b, memory, Width::I32, 0);
            asm::store(&mut b, memory, Width::I32, 0);
            b.local_get(ptr);
            asm::store(&mut b, memory, Width::I32, 0);
        }
        let _ = align;
        f.finish(vec![ptr, size, align], &mut module.funcs)
    };
    (alloc, free)
}

/// Whether code reachable from `root` through direct calls reads
/// `memory.size` of `memory` to use it: the mark of an allocator that may
/// take every page up to `memory.size` as its own (a heuristic;
/// `call_indirect` is not followed). A read whose value is only returned to
/// the caller, possibly in bytes (`memory.size`, `i32.const 16`, `i32.shl`,
/// `return`), is a query of the current break — wasi-libc's `sbrk(0)`, which
/// dlmalloc uses to check that the memory it grows is contiguous — and does
/// not count: without it every Rust and C guest would be warned about.
pub fn reads_memory_size(module: &Module, root: FunctionId, memory: MemoryId) -> bool {
    struct Scan {
        memory: MemoryId,
        entry: walrus::ir::InstrSeqId,
        found: bool,
        calls: Vec<FunctionId>,
    }
    impl Scan {
        /// Whether the instructions after a `memory.size` only return its value.
        fn returned(&self, seq: walrus::ir::InstrSeqId, rest: &[(Instr, walrus::InstrLocId)]) -> bool {
            let rest: Vec<&Instr> = rest.iter().map(|(instr, _)| instr).collect();
            let rest = match rest.as_slice() {
                [Instr::Const(c), Instr::Binop(b), rest @ ..]
                    if matches!(c.value, Value::I32(16)) && matches!(b.op, BinaryOp::I32Shl) =>
                {
                    rest
                }
                rest => rest,
            };
            match rest {
                [Instr::Return(_), ..] => true,
                [] => seq == self.entry,
                _ => false,
            }
        }
    }
    impl<'instr> walrus::ir::Visitor<'instr> for Scan {
        fn start_instr_seq(&mut self, seq: &'instr walrus::ir::InstrSeq) {
            for (at, (instr, _)) in seq.instrs.iter().enumerate() {
                if let Instr::MemorySize(size) = instr
                    && size.memory == self.memory
                    && !self.returned(seq.id(), seq.instrs.get(at + 1..).unwrap_or_default())
                {
                    self.found = true;
                }
            }
        }
        fn visit_call(&mut self, instr: &walrus::ir::Call) {
            self.calls.push(instr.func);
        }
        fn visit_return_call(&mut self, instr: &walrus::ir::ReturnCall) {
            self.calls.push(instr.func);
        }
    }
    let mut seen = vec![root];
    let mut work = vec![root];
    while let Some(func) = work.pop() {
        let walrus::FunctionKind::Local(local) = &module.funcs.get(func).kind else { continue };
        let mut scan = Scan { memory, entry: local.entry_block(), found: false, calls: Vec::new() };
        walrus::ir::dfs_in_order(&mut scan, local, local.entry_block());
        if scan.found {
            return true;
        }
        for callee in scan.calls {
            if !seen.contains(&callee) {
                seen.push(callee);
                work.push(callee);
            }
        }
    }
    false
}
