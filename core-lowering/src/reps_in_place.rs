//! Handles inside values in memory, converted or visited in place.
//!
//! Owns: walks over a value of a known type in one memory that reach every
//! handle of the resources given, at any depth (records, tuples, variants,
//! lists). Two uses:
//!
//! - A wrapper at the host boundary calls them before an exported function
//!   runs, when its parameters hold `borrow<T>` handles of a resource the
//!   component defines inside a list, or inside parameters passed through
//!   memory (more than 16 flat values): the canonical ABI gives the
//!   defining component the rep, so each handle is replaced by its rep
//!   where it lies (the values are already the callee's: the host wrote
//!   them with its `realloc`). [`RepsInPlace::new`].
//! - A copying adapter calls them after the callee returns, over the
//!   caller's original values, to end the loans of the borrowed handles the
//!   copy lent (`unlend` on the caller's table: the canonical ABI's lenders
//!   released at the end of the call). [`RepsInPlace::visiting`].
//!
//! One function per type: `(addr)` for a value, `(ptr, len)` for a list.
//!
//! Does not own: flat handles (lent by the wrappers in `link.rs`), copies
//! between memories (`adapter.rs`).

use anyhow::{Context, Result, bail};
use walrus::ir::{BinaryOp, LoadKind, MemArg, StoreKind};
use walrus::{FunctionBuilder, FunctionId, MemoryId, Module, ValType};

use crate::adapter::tag_load;
use crate::graph::ResourceRef;
use crate::types::{Parts, ValTy};

const I32: LoadKind = LoadKind::I32 { atomic: false };
const I32_STORE: StoreKind = StoreKind::I32 { atomic: false };

fn at(offset: u32, align: u32) -> MemArg {
    MemArg { align, offset: offset.into() }
}

/// Generates the in-place functions for one memory, each type once.
#[derive(Debug)]
pub struct RepsInPlace {
    memory: MemoryId,
    /// Per handle type (`borrow<T>` or `own<T>`), the function applied to
    /// each such handle.
    handles: Vec<(ValTy, FunctionId)>,
    /// `true`: the function is `(handle) -> handle'` and its result
    /// replaces the handle; `false`: it is `(handle)` and the value is left
    /// as it is.
    replace: bool,
    values: Vec<(ValTy, FunctionId)>,
    lists: Vec<(ValTy, FunctionId)>,
}

impl RepsInPlace {
    /// Borrowed handles made reps: `reps` is `(handle) -> rep` per resource.
    pub fn new(memory: MemoryId, reps: Vec<(ResourceRef, FunctionId)>) -> Self {
        let handles = reps.into_iter().map(|(r, f)| (ValTy::Borrow(r), f)).collect();
        RepsInPlace { memory, handles, replace: true, values: Vec::new(), lists: Vec::new() }
    }

    /// Each handle of a type in `handles` passed to its `(handle)` function,
    /// the value left unchanged.
    pub fn visiting(memory: MemoryId, handles: Vec<(ValTy, FunctionId)>) -> Self {
        RepsInPlace { memory, handles, replace: false, values: Vec::new(), lists: Vec::new() }
    }

    /// Is this the walk [`RepsInPlace::visiting`] made for `memory` and `handles`?
    pub fn is_visiting(&self, memory: MemoryId, handles: &[(ValTy, FunctionId)]) -> bool {
        !self.replace && self.memory == memory && self.handles == handles
    }

    /// Does a value of `ty` hold a handle this walk reaches?
    fn wanted(&self, ty: &ValTy) -> bool {
        if self.replace {
            return ty.has_borrows();
        }
        reaches(ty, &|t| self.handles.iter().any(|(h, _)| h == t))
    }

    /// `(addr)`: every handle in the value of `ty` at `addr` converted
    /// (borrowed handles made reps) or visited.
    pub fn value(&mut self, module: &mut Module, ty: &ValTy) -> Result<FunctionId> {
        if let Some((_, f)) = self.values.iter().find(|(t, _)| t == ty) {
            return Ok(*f);
        }
        enum Fix {
            Rep(FunctionId),
            List(FunctionId),
            Field(u32, FunctionId),
            Case { tag: LoadKind, payload: u32, cases: Vec<(u32, FunctionId)> },
        }
        let mut fixes = Vec::new();
        match ty {
            _ if !self.wanted(ty) => {}
            ValTy::Borrow(r) | ValTy::Own(r) => {
                let rep = self.handles.iter().find(|(x, _)| x == ty).map(|(_, f)| *f).with_context(|| {
                    format!("a borrowed handle of `{r:?}` does not go to the component that defines it")
                })?;
                fixes.push(Fix::Rep(rep));
            }
            ValTy::List(elem) => fixes.push(Fix::List(self.list(module, elem)?)),
            other => match other.parts_in_memory(|t| self.wanted(t)) {
                Some(Parts::Fields(fields)) => {
                    for (offset, f) in fields {
                        fixes.push(Fix::Field(offset, self.value(module, f)?));
                    }
                }
                Some(Parts::Cases { tag_size, payload_offset, cases }) => {
                    let mut fns = Vec::new();
                    for (c, case) in cases {
                        fns.push((c, self.value(module, case)?));
                    }
                    fixes.push(Fix::Case { tag: tag_load(tag_size), payload: payload_offset, cases: fns });
                }
                None => bail!("handles inside `{other:?}` cannot be reached in place"),
            },
        }
        let memory = self.memory;
        let addr = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[]);
        builder.name(format!("karmem reps in place {ty:?}"));
        let mut body = builder.func_body();
        for fix in &fixes {
            match fix {
                Fix::Rep(rep) if self.replace => {
                    body.local_get(addr).local_get(addr).load(memory, I32, at(0, 4)).call(*rep);
                    body.store(memory, I32_STORE, at(0, 4));
                }
                Fix::Rep(visit) => {
                    body.local_get(addr).load(memory, I32, at(0, 4)).call(*visit);
                }
                Fix::List(list) => {
                    body.local_get(addr).load(memory, I32, at(0, 4));
                    body.local_get(addr).load(memory, I32, at(4, 4));
                    body.call(*list);
                }
                Fix::Field(offset, f) => {
                    body.local_get(addr).i32_const(*offset as i32).binop(BinaryOp::I32Add).call(*f);
                }
                Fix::Case { tag, payload, cases } => {
                    for (c, f) in cases {
                        let (f, payload) = (*f, *payload as i32);
                        body.local_get(addr).load(memory, *tag, at(0, 1)).i32_const(*c as i32).binop(BinaryOp::I32Eq);
                        body.if_else(
                            None,
                            |then| {
                                then.local_get(addr).i32_const(payload).binop(BinaryOp::I32Add).call(f);
                            },
                            |_| {},
                        );
                    }
                }
            }
        }
        let f = builder.finish(vec![addr], &mut module.funcs);
        self.values.push((ty.clone(), f));
        Ok(f)
    }

    /// `(ptr, len)`: every element of a list of `elem` fixed in place.
    pub fn list(&mut self, module: &mut Module, elem: &ValTy) -> Result<FunctionId> {
        if let Some((_, f)) = self.lists.iter().find(|(t, _)| t == elem) {
            return Ok(*f);
        }
        let (size, _) = elem.layout().context("a list element of unknown layout")?;
        let each = self.value(module, elem)?;
        let (ptr, len, i) = (module.locals.add(ValType::I32), module.locals.add(ValType::I32), module.locals.add(ValType::I32));
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32, ValType::I32], &[]);
        builder.name(format!("karmem reps in place list {elem:?}"));
        let mut body = builder.func_body();
        body.i32_const(0).local_set(i);
        body.block(None, |done| {
            let done_id = done.id();
            done.loop_(None, |next| {
                let next_id = next.id();
                next.local_get(i).local_get(len).binop(BinaryOp::I32GeU).br_if(done_id);
                next.local_get(ptr)
                    .local_get(i)
                    .i32_const(size as i32)
                    .binop(BinaryOp::I32Mul)
                    .binop(BinaryOp::I32Add)
                    .call(each);
                next.local_get(i).i32_const(1).binop(BinaryOp::I32Add).local_set(i).br(next_id);
            });
        });
        let f = builder.finish(vec![ptr, len], &mut module.funcs);
        self.lists.push((elem.clone(), f));
        Ok(f)
    }
}

/// Does `ty` hold, at any depth, a part for which `hit` holds (handles:
/// `own<T>` or `borrow<T>`)?
pub(crate) fn reaches(ty: &ValTy, hit: &dyn Fn(&ValTy) -> bool) -> bool {
    if hit(ty) {
        return true;
    }
    match ty {
        ValTy::Own(_) | ValTy::Borrow(_) | ValTy::Prim(_) | ValTy::Flags(_) | ValTy::Enum(_) | ValTy::Opaque => false,
        ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().any(|f| reaches(f, hit)),
        ValTy::Variant(cases) => cases.iter().flatten().any(|c| reaches(c, hit)),
        ValTy::List(elem) | ValTy::FixedList(elem, _) | ValTy::Option(elem) => reaches(elem, hit),
        ValTy::Result(ok, err) => ok.iter().chain(err.iter()).any(|t| reaches(t, hit)),
    }
}
