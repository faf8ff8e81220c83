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
        f.name(karmem_contract::entry::ALLOC.to_string());
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
        f.name(karmem_contract::entry::FREE.to_string());
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
/// not count by itself: without it every Rust and C guest would be warned
/// about. What does count is a caller that asks for the break and at once
/// takes a constant from it (`i32.const 0`, `call $sbrk`, `i32.const C`,
/// `i32.sub`): the size of the range from `C` (the heap base) up to the
/// break, which it takes as its heap. That is the first `malloc` of
/// wasi-libc before `__heap_end` (2022, Debian 12's), which claims every
/// page up to `memory.size` as it finds them then; later wasi-libc (2023 on:
/// Rust's, recent wasi-sdk's) ends that range at the link-time constant
/// `__heap_end` and is not matched.
pub fn reads_memory_size(module: &Module, root: FunctionId, memory: MemoryId) -> bool {
    struct Scan {
        memory: MemoryId,
        entry: walrus::ir::InstrSeqId,
        /// A `memory.size` whose value is used, not only returned.
        found: bool,
        /// A `memory.size` whose value is only returned: a break query.
        queries_break: bool,
        calls: Vec<FunctionId>,
        /// Functions called with `0` whose result loses a constant at once.
        break_minus_constant: Vec<FunctionId>,
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
                {
                    if self.returned(seq.id(), seq.instrs.get(at + 1..).unwrap_or_default()) {
                        self.queries_break = true;
                    } else {
                        self.found = true;
                    }
                }
            }
            // `i32.const 0`, `call f`, `i32.const C`, `i32.sub`: `f(0) - C`
            for window in seq.instrs.windows(4) {
                if let [(Instr::Const(zero), _), (Instr::Call(call), _), (Instr::Const(base), _), (Instr::Binop(sub), _)] =
                    window
                    && matches!(zero.value, Value::I32(0))
                    && matches!(base.value, Value::I32(_))
                    && matches!(sub.op, BinaryOp::I32Sub)
                    && !self.break_minus_constant.contains(&call.func)
                {
                    self.break_minus_constant.push(call.func);
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
    let scan = |func: FunctionId| {
        let walrus::FunctionKind::Local(local) = &module.funcs.get(func).kind else { return None };
        let mut scan = Scan {
            memory,
            entry: local.entry_block(),
            found: false,
            queries_break: false,
            calls: Vec::new(),
            break_minus_constant: Vec::new(),
        };
        walrus::ir::dfs_in_order(&mut scan, local, local.entry_block());
        Some(scan)
    };
    let mut seen = vec![root];
    let mut work = vec![root];
    while let Some(func) = work.pop() {
        let Some(scanned) = scan(func) else { continue };
        if scanned.found {
            return true;
        }
        // the heap taken up to the break (wasi-libc's first `malloc` before `__heap_end`)
        if scanned.break_minus_constant.iter().any(|&query| scan(query).is_some_and(|q| q.queries_break)) {
            return true;
        }
        for callee in scanned.calls {
            if !seen.contains(&callee) {
                seen.push(callee);
                work.push(callee);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `$realloc` of the module `body` (functions after a one-page
    /// memory, `$sbrk` = wasi-libc's) is found to read `memory.size`.
    fn finds(body: &str) -> anyhow::Result<bool> {
        let wat = format!(
            r#"(module
                (memory 1)
                (func $sbrk (param i32) (result i32)
                  block
                    local.get 0
                    br_if 0
                    memory.size
                    i32.const 16
                    i32.shl
                    return
                  end
                  local.get 0
                  i32.const 16
                  i32.shr_u
                  memory.grow
                  i32.const 16
                  i32.shl)
                {body}
                (export "cabi_realloc" (func $realloc)))"#
        );
        let module = Module::from_buffer(&wat::parse_str(wat)?)?;
        let realloc = module.exports.get_func("cabi_realloc")?;
        let memory = module.memories.iter().next().map(walrus::Memory::id).ok_or_else(|| anyhow::anyhow!("no memory"))?;
        Ok(reads_memory_size(&module, realloc, memory))
    }

    #[test]
    fn a_break_query_used_as_a_new_segment_base_is_not_found() -> anyhow::Result<()> {
        // dlmalloc's `sys_alloc`: `base = sbrk(0)`, then `sbrk(n) == base`
        assert!(!finds(
            "(func $realloc (param i32 i32 i32 i32) (result i32) (local i32)
               i32.const 0 call $sbrk local.tee 4
               i32.const 65536 call $sbrk
               i32.eq drop local.get 4)"
        )?);
        Ok(())
    }

    #[test]
    fn a_heap_that_ends_at_the_break_is_found() -> anyhow::Result<()> {
        // wasi-libc 2022's first `malloc`: the heap is `__heap_base .. sbrk(0)`
        assert!(finds(
            "(func $init (result i32) i32.const 0 call $sbrk i32.const 69680 i32.sub)
             (func $realloc (param i32 i32 i32 i32) (result i32) call $init)"
        )?);
        Ok(())
    }

    #[test]
    fn a_heap_that_ends_at_heap_end_is_not_found() -> anyhow::Result<()> {
        // later wasi-libc: the heap is `__heap_base .. __heap_end`, link-time constants
        assert!(!finds(
            "(func $realloc (param i32 i32 i32 i32) (result i32)
               i32.const 131072 i32.const 69680 i32.sub
               i32.const 65536 call $sbrk drop)"
        )?);
        Ok(())
    }

    #[test]
    fn a_constant_taken_from_another_call_is_not_found() -> anyhow::Result<()> {
        // `f(0) - C` where `f` does not query the break
        assert!(!finds(
            "(func $f (param i32) (result i32) local.get 0)
             (func $realloc (param i32 i32 i32 i32) (result i32) i32.const 0 call $f i32.const 8 i32.sub)"
        )?);
        Ok(())
    }

    #[test]
    fn a_bump_pointer_that_compares_with_memory_size_is_found() -> anyhow::Result<()> {
        assert!(finds(
            "(func $realloc (param i32 i32 i32 i32) (result i32)
               local.get 3 memory.size i32.const 16 i32.shl i32.lt_u)"
        )?);
        Ok(())
    }
}
