//! Copying adapters: a composed call whose values live in the caller's
//! memory and must reach the callee's (and back), in one multi-memory module.
//!
//! Owns: the code of a fused adapter that copies strings and lists of plain
//! elements across memories (`merge::CopyPlan` says what crosses). Leaves
//! deciding what can be copied to `merge` and placing the code to `link`.
//!
//! Shape (canonical ABI, UTF-8 on both sides): each `(ptr, len)` argument is
//! re-allocated with the callee's `realloc` and copied with `memory.copy`
//! from the caller's memory; a `(ptr, len)` result is read from the
//! callee's result area, re-allocated with the caller's `realloc`, copied
//! back and stored at the caller's return pointer; then the callee's
//! post-return runs.

use anyhow::{Context, Result, anyhow, bail};
use walrus::ir::{BinaryOp, LoadKind, MemArg, StoreKind};
use walrus::{FunctionId, LocalId, MemoryId, Module, ValType};

use crate::types::Crossing;

const WORD: MemArg = MemArg { align: 4, offset: 0 };
const WORD_2: MemArg = MemArg { align: 4, offset: 4 };
const I32: LoadKind = LoadKind::I32 { atomic: false };
const I32_STORE: StoreKind = StoreKind::I32 { atomic: false };

/// Resolved ids of one copying adapter.
#[derive(Debug)]
pub struct CopyIds {
    pub caller_memory: MemoryId,
    pub callee_memory: MemoryId,
    pub caller_realloc: Option<FunctionId>,
    pub callee_realloc: Option<FunctionId>,
    pub callee: FunctionId,
    pub post_return: Option<FunctionId>,
}

/// Replace the placeholder import `fid` with a copying adapter.
pub fn generate(
    module: &mut Module,
    fid: FunctionId,
    ids: &CopyIds,
    params: &[Crossing],
    result: Option<Crossing>,
) -> Result<()> {
    // Scratch locals per sequence parameter: the byte count and the copy.
    let mut scratch: Vec<(LocalId, LocalId)> = Vec::new();
    for p in params {
        if matches!(p, Crossing::Sequence { .. }) {
            scratch.push((module.locals.add(ValType::I32), module.locals.add(ValType::I32)));
        }
    }
    let needs_callee_realloc = params.iter().any(|p| matches!(p, Crossing::Sequence { .. }));
    let callee_realloc = match (needs_callee_realloc, ids.callee_realloc) {
        (true, None) => bail!("the callee has no `realloc` to receive copied arguments"),
        (_, r) => r,
    };
    let result_locals = match result {
        Some(Crossing::Sequence { .. }) => {
            if ids.caller_realloc.is_none() {
                bail!("the caller has no `realloc` to receive a copied result");
            }
            Some([
                module.locals.add(ValType::I32), // the callee's result area
                module.locals.add(ValType::I32), // bytes
                module.locals.add(ValType::I32), // the caller's copy
            ])
        }
        _ => None,
    };
    let flat_result_ty = match result {
        Some(Crossing::Scalars(1)) => {
            let ty = module.funcs.get(ids.callee).ty();
            module.types.get(ty).results().first().copied()
        }
        _ => None,
    };
    let flat_result = match flat_result_ty {
        Some(t) => Some(module.locals.add(t)),
        None => None,
    };
    let (caller_mem, callee_mem) = (ids.caller_memory, ids.callee_memory);
    let (callee, post) = (ids.callee, ids.post_return);
    let caller_realloc = ids.caller_realloc;
    module
        .replace_imported_func(fid, |(body, args)| {
            let mut arg = args.iter();
            let mut scratch = scratch.iter();
            for p in params {
                match p {
                    Crossing::Scalars(n) => {
                        for a in arg.by_ref().take(*n) {
                            body.local_get(*a);
                        }
                    }
                    Crossing::Sequence { size, align } => {
                        let (Some(ptr), Some(len), Some((bytes, copy))) = (arg.next(), arg.next(), scratch.next())
                        else {
                            body.unreachable();
                            return;
                        };
                        body.local_get(*len).i32_const(*size as i32).binop(BinaryOp::I32Mul).local_set(*bytes);
                        if let Some(realloc) = callee_realloc {
                            body.i32_const(0)
                                .i32_const(0)
                                .i32_const(*align as i32)
                                .local_get(*bytes)
                                .call(realloc)
                                .local_set(*copy);
                        }
                        body.local_get(*copy).local_get(*ptr).local_get(*bytes).memory_copy(caller_mem, callee_mem);
                        body.local_get(*copy).local_get(*len);
                    }
                }
            }
            body.call(callee);
            match (result, result_locals) {
                (Some(Crossing::Sequence { size, align }), Some([area, bytes, copy])) => {
                    let Some(retptr) = arg.next() else {
                        body.unreachable();
                        return;
                    };
                    body.local_set(area);
                    body.local_get(area)
                        .load(callee_mem, I32, WORD_2)
                        .i32_const(size as i32)
                        .binop(BinaryOp::I32Mul)
                        .local_set(bytes);
                    if let Some(realloc) = caller_realloc {
                        body.i32_const(0).i32_const(0).i32_const(align as i32).local_get(bytes).call(realloc).local_set(copy);
                    }
                    body.local_get(copy)
                        .local_get(area)
                        .load(callee_mem, I32, WORD)
                        .local_get(bytes)
                        .memory_copy(callee_mem, caller_mem);
                    body.local_get(*retptr).local_get(copy).store(caller_mem, I32_STORE, WORD);
                    body.local_get(*retptr)
                        .local_get(area)
                        .load(callee_mem, I32, WORD_2)
                        .store(caller_mem, I32_STORE, WORD_2);
                    if let Some(post) = post {
                        body.local_get(area).call(post);
                    }
                }
                _ => {
                    if let (Some(post), Some(r)) = (post, flat_result) {
                        body.local_set(r).local_get(r).call(post).local_get(r);
                    } else if let Some(post) = post {
                        body.call(post);
                    }
                }
            }
        })
        .map_err(|e| anyhow!("{e:#}"))
        .context("failed to build a copying adapter")?;
    Ok(())
}
