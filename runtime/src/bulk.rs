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
//! Each instruction becomes a call to an appended wasm function that first
//! *probes* the memory the instruction will touch, then runs the original
//! instruction (one function for `memory.copy`, one for `memory.fill`, one
//! per data segment `memory.init` reads). A probe visits the first address of
//! a range and every 64 KiB page start inside it; windows are whole, aligned
//! pages, so every window a range touches holds a probe. Destination probes
//! load the byte and store it back: on a read-only or inaccessible window
//! that traps in compiled code before the host writes anything, elsewhere it
//! rewrites a byte the instruction overwrites right after. Source probes of
//! `memory.copy` only load (read-only windows may be copied from; an
//! inaccessible one traps). Windows cannot change in between: mapping one
//! needs the guest's store exclusively. Semantics kept: a range out of bounds
//! traps with `MemoryOutOfBounds` (at a probe past the end, or in the
//! instruction) before anything is written; a zero length probes nothing and
//! leaves the bounds check to the instruction. Cost: one or two byte accesses
//! per 64 KiB page, then the host's `memmove`/`memset`.
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

// Parameters of every helper, and their locals.
const DST: u32 = 0;
const SRC_OR_VALUE: u32 = 1;
const LEN: u32 = 2;
/// The address being probed.
const PROBE: u32 = 3;
/// The next page start after the probe, in i64 (4 GiB does not fit in i32).
const NEXT: u32 = 4;

const BYTE: MemArg = MemArg {
    offset: 0,
    align: 0,
    memory_index: 0,
};

/// How a probe touches the byte it visits.
#[derive(Clone, Copy)]
enum Probe {
    /// Load it: traps on an inaccessible window.
    Read,
    /// Load it and store it back: traps on a read-only or inaccessible
    /// window, and changes nothing elsewhere.
    Write,
}

/// Visits `start` and every 64 KiB page start inside `[start, start + LEN)`
/// (module docs); emitted only under `LEN != 0`. A probe past the end of
/// memory traps out of bounds, as the instruction would.
fn push_probes(f: &mut Function, start: u32, probe: Probe) {
    f.instruction(&Instruction::LocalGet(start));
    f.instruction(&Instruction::LocalSet(PROBE));
    f.instruction(&Instruction::Loop(BlockType::Empty));
    match probe {
        Probe::Read => {
            f.instruction(&Instruction::LocalGet(PROBE));
            f.instruction(&Instruction::I32Load8U(BYTE));
            f.instruction(&Instruction::Drop);
        }
        Probe::Write => {
            f.instruction(&Instruction::LocalGet(PROBE));
            f.instruction(&Instruction::LocalGet(PROBE));
            f.instruction(&Instruction::I32Load8U(BYTE));
            f.instruction(&Instruction::I32Store8(BYTE));
        }
    }
    f.instruction(&Instruction::LocalGet(PROBE));
    f.instruction(&Instruction::I32Const(-65536));
    f.instruction(&Instruction::I32And);
    f.instruction(&Instruction::I64ExtendI32U);
    f.instruction(&Instruction::I64Const(65536));
    f.instruction(&Instruction::I64Add);
    f.instruction(&Instruction::LocalTee(NEXT));
    // Continue while next < start + len (in i64, so nothing wraps) and next
    // is a 32-bit address; a range past 4 GiB is out of bounds, and the
    // instruction after the probes traps on it before writing.
    f.instruction(&Instruction::LocalGet(start));
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
    f.instruction(&Instruction::LocalSet(PROBE));
    f.instruction(&Instruction::Br(1));
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::End);
}

/// A helper `(dst, src_or_value, len)`: when `len` is not 0, the `probes`,
/// then `native` with the three parameters on the stack.
fn probing_function(probes: &[(u32, Probe)], native: Instruction<'static>) -> Function {
    let mut f = Function::new([(1, ValType::I32), (1, ValType::I64)]);
    f.instruction(&Instruction::LocalGet(LEN));
    f.instruction(&Instruction::If(BlockType::Empty));
    for (start, probe) in probes {
        push_probes(&mut f, *start, *probe);
    }
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::LocalGet(DST));
    f.instruction(&Instruction::LocalGet(SRC_OR_VALUE));
    f.instruction(&Instruction::LocalGet(LEN));
    f.instruction(&native);
    f.instruction(&Instruction::End);
    f
}

/// `(dst, src, len)`: probes the source for reading and the destination for
/// writing, then `memory.copy`.
fn copy_function() -> Function {
    probing_function(
        &[(SRC_OR_VALUE, Probe::Read), (DST, Probe::Write)],
        Instruction::MemoryCopy {
            src_mem: 0,
            dst_mem: 0,
        },
    )
}

/// `(dst, value, len)`: probes the destination, then `memory.fill`.
fn fill_function() -> Function {
    probing_function(&[(DST, Probe::Write)], Instruction::MemoryFill(0))
}

/// `(dst, src, len)`: probes the destination, then `memory.init segment`
/// (`src` is an offset into the segment, which no window can hold).
fn init_function(segment: u32) -> Function {
    probing_function(
        &[(DST, Probe::Write)],
        Instruction::MemoryInit {
            mem: 0,
            data_index: segment,
        },
    )
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
        // One import and two functions of the module's own: the bulk
        // instructions left are the appended helpers' (after their probes).
        let facts = crate::module::ModuleFacts::scan(&rewritten)?;
        let sites: Vec<(u32, &str)> = facts
            .bulk_sites
            .iter()
            .map(|s| (s.function_index, s.instruction))
            .collect();
        assert_eq!(sites, [(3, "memory.copy"), (4, "memory.fill")]);
        Ok(())
    }
}
