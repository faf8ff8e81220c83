//! Flat values: the canonical ABI's core-value form of a value
//! (`flatten_type`), loaded from and stored to its memory form.
//!
//! Owns: [`load_flat`] (memory -> flat values in locals, the "lower" a caller
//! does before calling a lifted function with flat parameters) and
//! [`store_flat`] (flat values -> memory, for flat results and for the flat
//! parameters of a lowered import), including variants, whose payloads are
//! joined to shared flat types (spec, "Flattening"). A discriminant out of
//! range traps in `store_flat`, as the canonical ABI's lifting does.
//!
//! Does not own: memory <-> Karmem (`transcode`).

use walrus::ir::{BinaryOp, InstrSeqId, UnaryOp};
use walrus::{FunctionBuilder, LocalId, MemoryId, ModuleLocals, ValType};

use crate::asm::{self, Width};
use crate::canon::{AbiType, FlatType};
use crate::transcode::read::switch as switch_arms;

/// The core value type of a flat type.
pub fn val_type(flat: FlatType) -> ValType {
    match flat {
        FlatType::I32 => ValType::I32,
        FlatType::I64 => ValType::I64,
        FlatType::F32 => ValType::F32,
        FlatType::F64 => ValType::F64,
    }
}

/// Fresh locals for the flat values of `ty`.
pub fn flat_locals(locals: &mut ModuleLocals, ty: &AbiType) -> Vec<LocalId> {
    ty.flatten().into_iter().map(|t| locals.add(val_type(t))).collect()
}

/// How a scalar is loaded (with sign extension for signed narrow types).
fn scalar(ty: &AbiType) -> Option<(Width, bool)> {
    Some(match ty {
        AbiType::Bool | AbiType::U8 => (Width::U8, false),
        AbiType::S8 => (Width::U8, true),
        AbiType::U16 => (Width::U16, false),
        AbiType::S16 => (Width::U16, true),
        AbiType::U32 | AbiType::S32 | AbiType::Char | AbiType::Own(_) | AbiType::Borrow(_) => (Width::I32, false),
        AbiType::U64 | AbiType::S64 => (Width::I64, false),
        AbiType::F32 => (Width::F32, false),
        AbiType::F64 => (Width::F64, false),
        _ => return None,
    })
}

/// Emits: the flat values of the `ty` at `addr + off` into `out`.
#[allow(clippy::too_many_arguments)]
pub fn load_flat(
    f: &mut FunctionBuilder,
    seq: InstrSeqId,
    locals: &mut ModuleLocals,
    m: MemoryId,
    ty: &AbiType,
    addr: LocalId,
    off: u32,
    out: &[LocalId],
) {
    // `out` holds one local per flat value of `ty` (the callers make them
    // with `flat_locals`); were it short, the module would fail validation.
    let Some((&first, rest)) = out.split_first() else { return };
    if let Some((width, signed)) = scalar(ty) {
        let mut b = f.instr_seq(seq);
        b.local_get(addr);
        asm::load(&mut b, m, width, off);
        if signed {
            let shift = 32 - 8 * width.bytes() as i32;
            b.i32_const(shift).binop(BinaryOp::I32Shl).i32_const(shift).binop(BinaryOp::I32ShrS);
        }
        b.local_set(first);
        return;
    }
    match ty {
        AbiType::String | AbiType::List(_) => {
            let mut b = f.instr_seq(seq);
            b.local_get(addr);
            asm::load(&mut b, m, Width::I32, off);
            b.local_set(first);
            if let Some(&second) = rest.first() {
                b.local_get(addr);
                asm::load(&mut b, m, Width::I32, off + 4);
                b.local_set(second);
            }
        }
        AbiType::Record(_) | AbiType::Tuple(_) | AbiType::FixedList(..) => {
            let mut at = 0;
            for (member, offset) in members(ty) {
                let n = member.flatten().len();
                load_flat(f, seq, locals, m, &member, addr, off + offset, out.get(at..at + n).unwrap_or_default());
                at += n;
            }
        }
        AbiType::Flags(_) => {
            for (i, local) in out.iter().enumerate() {
                let width = if ty.size() < 4 { Width::for_bytes(ty.size()) } else { Width::I32 };
                let mut b = f.instr_seq(seq);
                b.local_get(addr);
                asm::load(&mut b, m, width, off + 4 * i as u32);
                b.local_set(*local);
            }
        }
        _ => {
            // enum, variant, option, result
            let disc = Width::for_bytes(ty.discriminant().map(|d| d.size()).unwrap_or(1));
            {
                let mut b = f.instr_seq(seq);
                b.local_get(addr);
                asm::load(&mut b, m, disc, off);
                b.local_set(first);
            }
            let payload = rest;
            for local in payload {
                zero(f, seq, locals, *local);
            }
            let cases = cases(ty);
            if payload.is_empty() {
                return;
            }
            let arms = switch_arms(f, seq, first, cases.len());
            let po = ty.payload_offset();
            for (arm, case) in arms.into_iter().zip(cases) {
                let Some(case) = case else { continue };
                let temps = flat_locals(locals, &case);
                load_flat(f, arm, locals, m, &case, addr, off + po, &temps);
                for ((temp, from), to) in temps.iter().zip(case.flatten()).zip(payload) {
                    let joined = locals.get(*to).ty();
                    let mut b = f.instr_seq(arm);
                    b.local_get(*temp);
                    widen_to(&mut b, val_type(from), joined);
                    b.local_set(*to);
                }
            }
        }
    }
}

/// Emits: store the flat values `vals` of `ty` at `addr + off`.
#[allow(clippy::too_many_arguments)]
pub fn store_flat(
    f: &mut FunctionBuilder,
    seq: InstrSeqId,
    locals: &mut ModuleLocals,
    m: MemoryId,
    ty: &AbiType,
    addr: LocalId,
    off: u32,
    vals: &[LocalId],
) {
    // as in `load_flat`: one local per flat value
    let Some((&first, rest)) = vals.split_first() else { return };
    if let Some((width, _)) = scalar(ty) {
        let mut b = f.instr_seq(seq);
        b.local_get(addr).local_get(first);
        asm::store(&mut b, m, width, off);
        return;
    }
    match ty {
        AbiType::String | AbiType::List(_) => {
            let mut b = f.instr_seq(seq);
            b.local_get(addr).local_get(first);
            asm::store(&mut b, m, Width::I32, off);
            if let Some(&second) = rest.first() {
                b.local_get(addr).local_get(second);
                asm::store(&mut b, m, Width::I32, off + 4);
            }
        }
        AbiType::Record(_) | AbiType::Tuple(_) | AbiType::FixedList(..) => {
            let mut at = 0;
            for (member, offset) in members(ty) {
                let n = member.flatten().len();
                store_flat(f, seq, locals, m, &member, addr, off + offset, vals.get(at..at + n).unwrap_or_default());
                at += n;
            }
        }
        AbiType::Flags(_) => {
            for (i, local) in vals.iter().enumerate() {
                let width = if ty.size() < 4 { Width::for_bytes(ty.size()) } else { Width::I32 };
                let mut b = f.instr_seq(seq);
                b.local_get(addr).local_get(*local);
                asm::store(&mut b, m, width, off + 4 * i as u32);
            }
        }
        _ => {
            let cases = cases(ty);
            let disc = Width::for_bytes(ty.discriminant().map(|d| d.size()).unwrap_or(1));
            // canonical lifting: the discriminant names a case
            f.instr_seq(seq).local_get(first).i32_const(cases.len() as i32).binop(BinaryOp::I32GeU);
            asm::trap_if(f, seq);
            {
                let mut b = f.instr_seq(seq);
                b.local_get(addr).local_get(first);
                asm::store(&mut b, m, disc, off);
            }
            let payload = rest;
            if payload.is_empty() {
                return;
            }
            let arms = switch_arms(f, seq, first, cases.len());
            let po = ty.payload_offset();
            for (arm, case) in arms.into_iter().zip(cases) {
                let Some(case) = case else { continue };
                let temps = flat_locals(locals, &case);
                for ((temp, to), from) in temps.iter().zip(case.flatten()).zip(payload) {
                    let joined = locals.get(*from).ty();
                    let mut b = f.instr_seq(arm);
                    b.local_get(*from);
                    narrow_from(&mut b, joined, val_type(to));
                    b.local_set(*temp);
                }
                store_flat(f, arm, locals, m, &case, addr, off + po, &temps);
            }
        }
    }
}

/// The members of a record, tuple or fixed list with their offsets.
fn members(ty: &AbiType) -> Vec<(AbiType, u32)> {
    match ty {
        AbiType::Record(fields) => fields.iter().map(|(_, t)| t.clone()).zip(ty.field_offsets()).collect(),
        AbiType::Tuple(types) => types.iter().cloned().zip(ty.field_offsets()).collect(),
        AbiType::FixedList(elem, n) => (0..*n).map(|i| ((**elem).clone(), i * elem.size())).collect(),
        _ => Vec::new(),
    }
}

/// The case payloads of an enum, variant, option or result.
fn cases(ty: &AbiType) -> Vec<Option<AbiType>> {
    match ty {
        AbiType::Enum(names) => vec![None; names.len()],
        AbiType::Variant(cases) => cases.iter().map(|(_, t)| t.clone()).collect(),
        AbiType::Option(t) => vec![None, Some((**t).clone())],
        AbiType::Result { ok, err } => vec![ok.as_deref().cloned(), err.as_deref().cloned()],
        _ => Vec::new(),
    }
}

fn zero(f: &mut FunctionBuilder, seq: InstrSeqId, locals: &ModuleLocals, local: LocalId) {
    let mut b = f.instr_seq(seq);
    match locals.get(local).ty() {
        ValType::I64 => b.i64_const(0),
        ValType::F32 => b.f32_const(0.0),
        ValType::F64 => b.f64_const(0.0),
        _ => b.i32_const(0),
    };
    b.local_set(local);
}

/// Converts a case's flat value to the joined type (spec `lower_flat` of a
/// variant: `i32`/`f32` in an `i64` slot, `f32` in an `i32` slot).
fn widen_to(b: &mut walrus::InstrSeqBuilder, from: ValType, to: ValType) {
    match (from, to) {
        (a, b2) if a == b2 => {}
        (ValType::I32, ValType::I64) => {
            b.unop(UnaryOp::I64ExtendUI32);
        }
        (ValType::F32, ValType::I32) => {
            b.unop(UnaryOp::I32ReinterpretF32);
        }
        (ValType::F32, ValType::I64) => {
            b.unop(UnaryOp::I32ReinterpretF32).unop(UnaryOp::I64ExtendUI32);
        }
        (ValType::F64, ValType::I64) => {
            b.unop(UnaryOp::I64ReinterpretF64);
        }
        _ => {
            b.unreachable();
        }
    }
}

/// The inverse of [`widen_to`] (spec `lift_flat` of a variant).
fn narrow_from(b: &mut walrus::InstrSeqBuilder, from: ValType, to: ValType) {
    match (from, to) {
        (a, b2) if a == b2 => {}
        (ValType::I64, ValType::I32) => {
            b.unop(UnaryOp::I32WrapI64);
        }
        (ValType::I32, ValType::F32) => {
            b.unop(UnaryOp::F32ReinterpretI32);
        }
        (ValType::I64, ValType::F32) => {
            b.unop(UnaryOp::I32WrapI64).unop(UnaryOp::F32ReinterpretI32);
        }
        (ValType::I64, ValType::F64) => {
            b.unop(UnaryOp::F64ReinterpretI64);
        }
        _ => {
            b.unreachable();
        }
    }
}
