//! Small helpers for emitting structured wasm with walrus.
//!
//! Owns: the few shapes every generator here repeats — a block, loop or `if`
//! appended to a parent sequence and returned for filling, a conditional
//! trap, a counted loop, loads and stores by width — so that generators read
//! as the wasm they emit. Generators address code as `(builder, sequence)`;
//! nothing here knows about Karmem or the canonical ABI.
//!
//! Does not own: any generated function (`transcode`, `abi`).

use walrus::ir::{BinaryOp, Block, IfElse, InstrSeqId, LoadKind, Loop, MemArg, StoreKind, UnaryOp};
use walrus::{FunctionBuilder, InstrSeqBuilder, LocalId, MemoryId, ModuleLocals, ValType};

/// The width of a load or store, and how a narrow load extends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// `i32.load8_u` / `i32.store8`
    U8,
    /// `i32.load16_u` / `i32.store16`
    U16,
    I32,
    I64,
    F32,
    F64,
}

impl Width {
    /// The byte count.
    pub fn bytes(self) -> u32 {
        match self {
            Width::U8 => 1,
            Width::U16 => 2,
            Width::I32 | Width::F32 => 4,
            Width::I64 | Width::F64 => 8,
        }
    }

    /// The value type a load produces and a store consumes.
    pub fn val_type(self) -> ValType {
        match self {
            Width::U8 | Width::U16 | Width::I32 => ValType::I32,
            Width::I64 => ValType::I64,
            Width::F32 => ValType::F32,
            Width::F64 => ValType::F64,
        }
    }

    /// The integer width of `bytes` bytes (1, 2, 4 or 8).
    pub fn for_bytes(bytes: u32) -> Width {
        match bytes {
            1 => Width::U8,
            2 => Width::U16,
            8 => Width::I64,
            _ => Width::I32,
        }
    }
}

/// Appends a load of `width` at `[address + offset]` (address on the stack).
pub fn load(b: &mut InstrSeqBuilder, memory: MemoryId, width: Width, offset: u32) {
    let kind = match width {
        Width::U8 => LoadKind::I32_8 { kind: walrus::ir::ExtendedLoad::ZeroExtend },
        Width::U16 => LoadKind::I32_16 { kind: walrus::ir::ExtendedLoad::ZeroExtend },
        Width::I32 => LoadKind::I32 { atomic: false },
        Width::I64 => LoadKind::I64 { atomic: false },
        Width::F32 => LoadKind::F32,
        Width::F64 => LoadKind::F64,
    };
    b.load(memory, kind, MemArg { align: 1, offset: offset.into() });
}

/// Appends a store of `width` at `[address + offset]` (address, value on the stack).
pub fn store(b: &mut InstrSeqBuilder, memory: MemoryId, width: Width, offset: u32) {
    let kind = match width {
        Width::U8 => StoreKind::I32_8 { atomic: false },
        Width::U16 => StoreKind::I32_16 { atomic: false },
        Width::I32 => StoreKind::I32 { atomic: false },
        Width::I64 => StoreKind::I64 { atomic: false },
        Width::F32 => StoreKind::F32,
        Width::F64 => StoreKind::F64,
    };
    b.store(memory, kind, MemArg { align: 1, offset: offset.into() });
}

/// Appends `block` to `parent` and returns its body.
pub fn block(f: &mut FunctionBuilder, parent: InstrSeqId) -> InstrSeqId {
    let seq = f.dangling_instr_seq(None).id();
    f.instr_seq(parent).instr(Block { seq });
    seq
}

/// Appends `loop` to `parent` and returns its body (a branch to it repeats).
pub fn loop_(f: &mut FunctionBuilder, parent: InstrSeqId) -> InstrSeqId {
    let seq = f.dangling_instr_seq(None).id();
    f.instr_seq(parent).instr(Loop { seq });
    seq
}

/// Appends `if` (condition on the stack) to `parent` and returns its body.
pub fn if_(f: &mut FunctionBuilder, parent: InstrSeqId) -> InstrSeqId {
    if_else(f, parent).0
}

/// Appends `if ... else ...` to `parent`; returns (then, else).
pub fn if_else(f: &mut FunctionBuilder, parent: InstrSeqId) -> (InstrSeqId, InstrSeqId) {
    let consequent = f.dangling_instr_seq(None).id();
    let alternative = f.dangling_instr_seq(None).id();
    f.instr_seq(parent).instr(IfElse { consequent, alternative });
    (consequent, alternative)
}

/// Appends `if (cond) unreachable` (condition on the stack).
pub fn trap_if(f: &mut FunctionBuilder, parent: InstrSeqId) {
    let then = if_(f, parent);
    f.instr_seq(then).unreachable();
}

/// Appends a loop running `count` (a local, unsigned) times; `index` counts
/// from 0. Returns the body, which runs with `index` set; the increment and
/// the back edge follow it.
pub fn counted_loop(f: &mut FunctionBuilder, parent: InstrSeqId, count: LocalId, index: LocalId) -> InstrSeqId {
    f.instr_seq(parent).i32_const(0).local_set(index);
    let exit = block(f, parent);
    let top = loop_(f, exit);
    f.instr_seq(top)
        .local_get(index)
        .local_get(count)
        .binop(BinaryOp::I32GeU)
        .br_if(exit);
    let body = block(f, top);
    f.instr_seq(top)
        .local_get(index)
        .i32_const(1)
        .binop(BinaryOp::I32Add)
        .local_set(index)
        .br(top);
    body
}

/// `local += delta` for an i32 local.
pub fn bump(b: &mut InstrSeqBuilder, local: LocalId, delta: i32) {
    b.local_get(local).i32_const(delta).binop(BinaryOp::I32Add).local_set(local);
}

/// `local += other` for i32 locals.
pub fn bump_by(b: &mut InstrSeqBuilder, local: LocalId, other: LocalId) {
    b.local_get(local).local_get(other).binop(BinaryOp::I32Add).local_set(local);
}

/// Pushes `local + offset` (i32).
pub fn addr(b: &mut InstrSeqBuilder, local: LocalId, offset: u32) {
    b.local_get(local);
    if offset != 0 {
        b.i32_const(offset as i32).binop(BinaryOp::I32Add);
    }
}

/// Widens the i32 on the stack to i64 (unsigned).
pub fn widen(b: &mut InstrSeqBuilder) {
    b.unop(UnaryOp::I64ExtendUI32);
}

/// A fresh i32 local.
pub fn i32_local(locals: &mut ModuleLocals) -> LocalId {
    locals.add(ValType::I32)
}
