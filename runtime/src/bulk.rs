//! Rewrites `memory.copy`, `memory.fill` and `memory.init` so that no write
//! wasmtime performs in host code can reach a protected shared window.
//!
//! Why: wasmtime runs these instructions (copies above 128 constant bytes,
//! all fills, all inits) in host libcalls. Aimed at a read-only or
//! inaccessible shared window, the host faults outside compiled code and the
//! process dies. After this rewrite the same access faults inside compiled
//! code and becomes an ordinary out-of-bounds trap of that guest. Real guests
//! need it: Rust's wasm targets emit `memory.copy` for `memcpy`, and lowered
//! modules copy their descriptors in with `memory.init` at `KarmemInit`.
//!
//! - `memory.copy` and `memory.fill` become calls to two appended wasm
//!   functions that do the work with loads and stores. Semantics kept: bounds
//!   are checked before anything is written (an out-of-bounds call traps with
//!   `MemoryOutOfBounds`, like the instruction); overlapping copies behave like
//!   `memmove`; the loops carry wasmtime's epoch and fuel checks, so long
//!   copies stay interruptible. The price is speed: the loops move 8 bytes
//!   per iteration instead of calling `memmove`.
//! - `memory.init` cannot be done in wasm (its source is a data segment wasm
//!   cannot address), so it becomes a call to an appended function per data
//!   segment that first *probes* the destination: it stores back the byte it
//!   loads at the first address and at every 64 KiB page start inside the
//!   range (windows are whole, aligned pages, so each window the range
//!   touches contains a probe), then runs the original `memory.init`. A probe
//!   into a read-only or inaccessible window traps in compiled code before
//!   the host writes anything; a probe elsewhere rewrites a byte that the
//!   `memory.init` overwrites right after. Windows cannot change in between:
//!   mapping one needs the guest's store exclusively.
//!
//! Only memory 0 of single-memory, 32-bit modules is rewritten.
//!
//! Leaves to `crate::runtime` when to apply it (`RuntimeConfig::rewrite_bulk_memory`,
//! or always for sessions with interface memories, `crate::invoke`).

use std::convert::Infallible;

use anyhow::{Context, Result};
use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{BlockType, Function, Instruction, MemArg, ValType};
use wasmparser::{Operator, Parser, Payload, TypeRef};

/// Whether [`rewrite`] would change `bytes`: the module has one 32-bit memory
/// and uses `memory.copy`, `memory.fill` or `memory.init` on it.
pub fn applies(bytes: &[u8]) -> Result<bool> {
    Ok(Plan::scan(bytes)?.is_some())
}

/// Rewrites the module (see the module docs); returns `None` when there is
/// nothing to rewrite.
pub fn rewrite(bytes: &[u8]) -> Result<Option<Vec<u8>>> {
    let Some(plan) = Plan::scan(bytes)? else {
        return Ok(None);
    };
    let mut rewriter = BulkRewriter { plan };
    let mut module = wasm_encoder::Module::new();
    rewriter
        .parse_core_module(&mut module, Parser::new(0), bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("failed to rewrite bulk-memory instructions")?;
    Ok(Some(module.finish()))
}

/// Indices of what the rewrite appends.
#[derive(Debug, Clone)]
struct Plan {
    /// `(i32, i32, i32) -> ()`, appended to the type section.
    helper_type: u32,
    copy_func: u32,
    fill_func: u32,
    /// `(data segment, probing init function)`, one per segment that
    /// `memory.init` reads, in first-use order.
    init_funcs: Vec<(u32, u32)>,
}

impl Plan {
    fn scan(bytes: &[u8]) -> Result<Option<Self>> {
        let mut types = 0u32;
        let mut imported_functions = 0u32;
        let mut defined_functions = 0u32;
        let mut memories = Vec::new();
        let mut uses_bulk = false;
        let mut init_segments: Vec<u32> = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.context("failed to parse the module")? {
                Payload::TypeSection(section) => {
                    for group in section {
                        let group = group.context("failed to parse the type section")?;
                        types += u32::try_from(group.types().len())?;
                    }
                }
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        match import.context("failed to parse the import section")?.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => imported_functions += 1,
                            TypeRef::Memory(ty) => memories.push(ty),
                            _ => {}
                        }
                    }
                }
                Payload::MemorySection(section) => {
                    for memory in section {
                        memories.push(memory.context("failed to parse the memory section")?);
                    }
                }
                Payload::FunctionSection(section) => defined_functions = section.count(),
                Payload::CodeSectionEntry(body) => {
                    let mut reader = body.get_operators_reader()?;
                    while !reader.eof() {
                        match reader.read()? {
                            Operator::MemoryCopy { .. } | Operator::MemoryFill { .. } => {
                                uses_bulk = true;
                            }
                            Operator::MemoryInit { data_index, .. } => {
                                uses_bulk = true;
                                if !init_segments.contains(&data_index) {
                                    init_segments.push(data_index);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let single_32_bit =
            matches!(memories.as_slice(), [memory] if !memory.memory64 && !memory.shared);
        if !uses_bulk || !single_32_bit || types == 0 {
            return Ok(None);
        }
        let first_new = imported_functions + defined_functions;
        let init_funcs = init_segments.into_iter().zip(first_new + 2..).collect();
        Ok(Some(Plan {
            helper_type: types,
            copy_func: first_new,
            fill_func: first_new + 1,
            init_funcs,
        }))
    }
}

struct BulkRewriter {
    plan: Plan,
}

impl Reencode for BulkRewriter {
    type Error = Infallible;

    fn instruction<'a>(
        &mut self,
        op: Operator<'a>,
    ) -> Result<Instruction<'a>, reencode::Error<Self::Error>> {
        match op {
            Operator::MemoryCopy {
                dst_mem: 0,
                src_mem: 0,
            } => Ok(Instruction::Call(self.plan.copy_func)),
            Operator::MemoryFill { mem: 0 } => Ok(Instruction::Call(self.plan.fill_func)),
            Operator::MemoryInit { data_index, mem: 0 } => {
                match self
                    .plan
                    .init_funcs
                    .iter()
                    .find(|(segment, _)| *segment == data_index)
                {
                    Some((_, func)) => Ok(Instruction::Call(*func)),
                    None => reencode::utils::instruction(self, op),
                }
            }
            other => reencode::utils::instruction(self, other),
        }
    }

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_type_section(self, types, section)?;
        types
            .ty()
            .function([ValType::I32, ValType::I32, ValType::I32], []);
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut wasm_encoder::FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_function_section(self, functions, section)?;
        functions.function(self.plan.helper_type);
        functions.function(self.plan.helper_type);
        for _ in &self.plan.init_funcs {
            functions.function(self.plan.helper_type);
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut wasm_encoder::CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_code_section(self, code, section)?;
        code.function(&copy_function());
        code.function(&fill_function());
        for (segment, _) in &self.plan.init_funcs {
            code.function(&init_function(*segment));
        }
        Ok(())
    }
}

// Parameters of both helpers, and their locals.
const DST: u32 = 0;
const SRC_OR_VALUE: u32 = 1;
const LEN: u32 = 2;
const INDEX: u32 = 3;
const PATTERN: u32 = 4;

const BYTE: MemArg = MemArg {
    offset: 0,
    align: 0,
    memory_index: 0,
};
const WORD: MemArg = MemArg {
    offset: 0,
    align: 0,
    memory_index: 0,
};

/// `memory.size` in bytes, as an i64.
fn push_size_in_bytes(f: &mut Function) {
    f.instruction(&Instruction::MemorySize(0));
    f.instruction(&Instruction::I64ExtendI32U);
    f.instruction(&Instruction::I64Const(65536));
    f.instruction(&Instruction::I64Mul);
}

/// `start + len > size` (as i32 bool), computed in i64 so nothing wraps.
fn push_out_of_bounds(f: &mut Function, start: u32) {
    f.instruction(&Instruction::LocalGet(start));
    f.instruction(&Instruction::I64ExtendI32U);
    f.instruction(&Instruction::LocalGet(LEN));
    f.instruction(&Instruction::I64ExtendI32U);
    f.instruction(&Instruction::I64Add);
    push_size_in_bytes(f);
    f.instruction(&Instruction::I64GtU);
}

/// Traps with `MemoryOutOfBounds` by loading the byte just past the end of
/// memory; `unreachable` covers a full 4 GiB memory, where that address
/// wraps to 0.
fn push_trap_out_of_bounds(f: &mut Function) {
    f.instruction(&Instruction::If(BlockType::Empty));
    push_size_in_bytes(f);
    f.instruction(&Instruction::I32WrapI64);
    f.instruction(&Instruction::I32Load8U(BYTE));
    f.instruction(&Instruction::Drop);
    f.instruction(&Instruction::Unreachable);
    f.instruction(&Instruction::End);
}

/// Pushes `base + index` (an address).
fn push_address(f: &mut Function, base: u32) {
    f.instruction(&Instruction::LocalGet(base));
    f.instruction(&Instruction::LocalGet(INDEX));
    f.instruction(&Instruction::I32Add);
}

/// `index = index + delta` (delta may be negative).
fn step_index(f: &mut Function, delta: i32) {
    f.instruction(&Instruction::LocalGet(INDEX));
    f.instruction(&Instruction::I32Const(delta));
    f.instruction(&Instruction::I32Add);
    f.instruction(&Instruction::LocalSet(INDEX));
}

/// Opens `block $exit (loop $next` and branches to `$exit` when the
/// condition `push_exit` leaves is true.
fn open_loop(f: &mut Function, push_exit: impl FnOnce(&mut Function)) {
    f.instruction(&Instruction::Block(BlockType::Empty));
    f.instruction(&Instruction::Loop(BlockType::Empty));
    push_exit(f);
    f.instruction(&Instruction::BrIf(1));
}

/// Closes what `open_loop` opened, looping back first.
fn close_loop(f: &mut Function) {
    f.instruction(&Instruction::Br(0));
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::End);
}

/// `len - index < 8`: fewer than 8 bytes left going forward.
fn push_less_than_a_word_left(f: &mut Function) {
    f.instruction(&Instruction::LocalGet(LEN));
    f.instruction(&Instruction::LocalGet(INDEX));
    f.instruction(&Instruction::I32Sub);
    f.instruction(&Instruction::I32Const(8));
    f.instruction(&Instruction::I32LtU);
}

/// `index >= len`.
fn push_done_forward(f: &mut Function) {
    f.instruction(&Instruction::LocalGet(INDEX));
    f.instruction(&Instruction::LocalGet(LEN));
    f.instruction(&Instruction::I32GeU);
}

fn copy_word(f: &mut Function) {
    push_address(f, DST);
    push_address(f, SRC_OR_VALUE);
    f.instruction(&Instruction::I64Load(WORD));
    f.instruction(&Instruction::I64Store(WORD));
}

fn copy_byte(f: &mut Function) {
    push_address(f, DST);
    push_address(f, SRC_OR_VALUE);
    f.instruction(&Instruction::I32Load8U(BYTE));
    f.instruction(&Instruction::I32Store8(BYTE));
}

/// `(dst, src, len)`: `memmove` with `memory.copy`'s bounds checks.
fn copy_function() -> Function {
    let mut f = Function::new([(1, ValType::I32)]);
    push_out_of_bounds(&mut f, DST);
    push_out_of_bounds(&mut f, SRC_OR_VALUE);
    f.instruction(&Instruction::I32Or);
    push_trap_out_of_bounds(&mut f);

    // dst <= src: front to back never overwrites unread source bytes.
    f.instruction(&Instruction::LocalGet(DST));
    f.instruction(&Instruction::LocalGet(SRC_OR_VALUE));
    f.instruction(&Instruction::I32LeU);
    f.instruction(&Instruction::If(BlockType::Empty));
    open_loop(&mut f, push_less_than_a_word_left);
    copy_word(&mut f);
    step_index(&mut f, 8);
    close_loop(&mut f);
    open_loop(&mut f, push_done_forward);
    copy_byte(&mut f);
    step_index(&mut f, 1);
    close_loop(&mut f);

    // dst > src: back to front.
    f.instruction(&Instruction::Else);
    f.instruction(&Instruction::LocalGet(LEN));
    f.instruction(&Instruction::LocalSet(INDEX));
    open_loop(&mut f, |f| {
        f.instruction(&Instruction::LocalGet(INDEX));
        f.instruction(&Instruction::I32Const(8));
        f.instruction(&Instruction::I32LtU);
    });
    step_index(&mut f, -8);
    copy_word(&mut f);
    close_loop(&mut f);
    open_loop(&mut f, |f| {
        f.instruction(&Instruction::LocalGet(INDEX));
        f.instruction(&Instruction::I32Eqz);
    });
    step_index(&mut f, -1);
    copy_byte(&mut f);
    close_loop(&mut f);
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::End);
    f
}

/// `(dst, value, len)`: `memory.fill` with its bounds check.
fn fill_function() -> Function {
    let mut f = Function::new([(1, ValType::I32), (1, ValType::I64)]);
    push_out_of_bounds(&mut f, DST);
    push_trap_out_of_bounds(&mut f);

    // The low byte of `value`, repeated eight times.
    f.instruction(&Instruction::LocalGet(SRC_OR_VALUE));
    f.instruction(&Instruction::I32Const(0xff));
    f.instruction(&Instruction::I32And);
    f.instruction(&Instruction::I64ExtendI32U);
    f.instruction(&Instruction::I64Const(0x0101_0101_0101_0101));
    f.instruction(&Instruction::I64Mul);
    f.instruction(&Instruction::LocalSet(PATTERN));

    open_loop(&mut f, push_less_than_a_word_left);
    push_address(&mut f, DST);
    f.instruction(&Instruction::LocalGet(PATTERN));
    f.instruction(&Instruction::I64Store(WORD));
    step_index(&mut f, 8);
    close_loop(&mut f);
    open_loop(&mut f, push_done_forward);
    push_address(&mut f, DST);
    f.instruction(&Instruction::LocalGet(SRC_OR_VALUE));
    f.instruction(&Instruction::I32Store8(BYTE));
    step_index(&mut f, 1);
    close_loop(&mut f);
    f.instruction(&Instruction::End);
    f
}

/// `(dst, src, len)`: probes the destination (module docs), then
/// `memory.init segment`.
fn init_function(segment: u32) -> Function {
    // INDEX: the address being probed; NEXT: the next page start, in i64.
    const NEXT: u32 = 4;
    let mut f = Function::new([(1, ValType::I32), (1, ValType::I64)]);
    f.instruction(&Instruction::LocalGet(LEN));
    f.instruction(&Instruction::If(BlockType::Empty));
    f.instruction(&Instruction::LocalGet(DST));
    f.instruction(&Instruction::LocalSet(INDEX));
    f.instruction(&Instruction::Loop(BlockType::Empty));
    // Store back the byte at the probe: traps on a protected window.
    f.instruction(&Instruction::LocalGet(INDEX));
    f.instruction(&Instruction::LocalGet(INDEX));
    f.instruction(&Instruction::I32Load8U(BYTE));
    f.instruction(&Instruction::I32Store8(BYTE));
    f.instruction(&Instruction::LocalGet(INDEX));
    f.instruction(&Instruction::I32Const(-65536));
    f.instruction(&Instruction::I32And);
    f.instruction(&Instruction::I64ExtendI32U);
    f.instruction(&Instruction::I64Const(65536));
    f.instruction(&Instruction::I64Add);
    f.instruction(&Instruction::LocalTee(NEXT));
    // Continue while next < dst + len (in i64, so nothing wraps) and next is
    // a 32-bit address; a range past 4 GiB is out of bounds, and the
    // `memory.init` below traps on it before writing.
    f.instruction(&Instruction::LocalGet(DST));
    f.instruction(&Instruction::I64ExtendI32U);
    f.instruction(&Instruction::LocalGet(LEN));
    f.instruction(&Instruction::I64ExtendI32U);
    f.instruction(&Instruction::I64Add);
    f.instruction(&Instruction::I64LtU);
    f.instruction(&Instruction::LocalGet(NEXT));
    f.instruction(&Instruction::I64Const(1 << 32));
    f.instruction(&Instruction::I64LtU);
    f.instruction(&Instruction::I32And);
    f.instruction(&Instruction::If(BlockType::Empty));
    f.instruction(&Instruction::LocalGet(NEXT));
    f.instruction(&Instruction::I32WrapI64);
    f.instruction(&Instruction::LocalSet(INDEX));
    f.instruction(&Instruction::Br(1));
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::LocalGet(DST));
    f.instruction(&Instruction::LocalGet(SRC_OR_VALUE));
    f.instruction(&Instruction::LocalGet(LEN));
    f.instruction(&Instruction::MemoryInit {
        mem: 0,
        data_index: segment,
    });
    f.instruction(&Instruction::End);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_rewrite_without_bulk_instructions() -> Result<()> {
        let plain = wat::parse_str("(module (memory 1) (func (drop (i32.load (i32.const 0)))))")?;
        assert!(rewrite(&plain)?.is_none());
        let two_memories = wat::parse_str(
            "(module (memory 1) (memory 1) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 1))))",
        )?;
        assert!(rewrite(&two_memories)?.is_none());
        Ok(())
    }

    #[test]
    fn rewritten_module_validates_and_has_no_bulk_instructions() -> Result<()> {
        let bytes = wat::parse_str(
            r#"(module
                 (type (func (param i32)))
                 (import "h" "log" (func (type 0)))
                 (memory 1)
                 (func (param i32) (memory.fill (local.get 0) (i32.const 7) (i32.const 9)))
                 (func (memory.copy (i32.const 0) (i32.const 4) (i32.const 300))))"#,
        )?;
        let rewritten = rewrite(&bytes)?.context("expected a rewrite")?;
        wasmparser::Validator::new().validate_all(&rewritten)?;
        let facts = crate::module::ModuleFacts::scan(&rewritten)?;
        assert!(facts.bulk_sites.is_empty(), "{:?}", facts.bulk_sites);
        Ok(())
    }
}
