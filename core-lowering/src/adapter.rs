//! Copying adapters: a composed call whose values live in the caller's
//! memory and must reach the callee's (and back), in one multi-memory module.
//!
//! Owns: the code of a fused adapter that deep-copies arguments from the
//! caller's memory into the callee's and the result back, transcoding
//! strings between UTF-8 and UTF-16 when the two sides differ
//! (`merge::CopyPlan` says what crosses). Leaves deciding what can be
//! copied to `merge` and placing the code to `link`.
//!
//! Shape (canonical ABI): flat arguments that are strings or lists are
//! re-allocated with the callee's `realloc` and copied; records and tuples
//! copy field by field; a flat variant (`option<string>`, ...) copies the
//! payload of the case its discriminant names. Values in memory (list
//! elements, the result area) are copied by one generated function per type,
//! `copy(src, dst)`: the value's bytes with `memory.copy` across memories,
//! then every pointer in it (string, list) replaced by a deep copy. A result
//! is read from the callee's result area, copied the same way into the
//! caller's return pointer with the caller's `realloc`; then the callee's
//! post-return runs.
//!
//! Strings: the canonical ABI's `store_string` sequence of `realloc` calls.
//! Same encoding on both sides is a byte copy. UTF-8 to UTF-16 allocates
//! one code unit per byte (the most it can need), decodes, and shrinks the
//! allocation with `realloc`. UTF-16 or Latin-1 to UTF-8, and UTF-8 or
//! UTF-16 to latin1+UTF-16, allocate one byte per code unit first and fill
//! it while the characters fit (ASCII, Latin-1); only at the first that does
//! not is the allocation grown to the worst case, the rest encoded and the
//! allocation shrunk (a latin1+UTF-16 string that is UTF-16 into
//! latin1+UTF-16 is copied as UTF-16, then narrowed to Latin-1 when every
//! unit fits). So no more is written than the string needs: a
//! gigabyte-long string the callee's `realloc` refuses to grow costs a
//! few bytes, not a gigabyte of touched pages. An allocation above
//! `MAX_STRING_BYTE_LENGTH` (2^31 - 1 bytes) traps before `realloc` is
//! called. Input is assumed well-formed, as the canonical ABI requires of
//! the side that produced it; a lone surrogate is encoded as is.

use anyhow::{Context, Result, anyhow, bail};
use walrus::ir::{BinaryOp, ExtendedLoad, LoadKind, MemArg, StoreKind};
use walrus::{FunctionBuilder, FunctionId, InstrSeqBuilder, LocalId, MemoryId, Module, ValType};

use crate::types::{Flat, Parts, ValTy};

/// The load of a variant discriminant of `size` bytes.
pub(crate) fn tag_load(size: u32) -> LoadKind {
    match size {
        1 => U8,
        2 => U16,
        _ => I32,
    }
}

const I32: LoadKind = LoadKind::I32 { atomic: false };
const U8: LoadKind = LoadKind::I32_8 { kind: ExtendedLoad::ZeroExtend };
const U16: LoadKind = LoadKind::I32_16 { kind: ExtendedLoad::ZeroExtend };
const I32_STORE: StoreKind = StoreKind::I32 { atomic: false };
const STORE_8: StoreKind = StoreKind::I32_8 { atomic: false };
const STORE_16: StoreKind = StoreKind::I32_16 { atomic: false };

fn at(offset: u32, align: u32) -> MemArg {
    MemArg { align, offset: offset.into() }
}

/// Trap unless the pointer in `ptr` is a multiple of `align`: the canonical
/// ABI's check on every pointer it lifts and every `realloc` result
/// (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#loading>).
fn check_aligned(body: &mut InstrSeqBuilder<'_>, ptr: LocalId, align: u32) {
    if align > 1 {
        body.local_get(ptr).i32_const(align as i32 - 1).binop(BinaryOp::I32And).if_else(
            None,
            |unaligned| {
                unaligned.unreachable();
            },
            |_| {},
        );
    }
}

/// A string encoding a copying adapter can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16,
    /// Latin-1, or UTF-16 when the length's top bit is set.
    Latin1Utf16,
}

/// Resolved ids of one copying adapter.
#[derive(Debug)]
pub struct CopyIds {
    pub caller_memory: MemoryId,
    pub callee_memory: MemoryId,
    pub caller_realloc: Option<FunctionId>,
    pub callee_realloc: Option<FunctionId>,
    pub callee: FunctionId,
    pub post_return: Option<FunctionId>,
    pub caller_encoding: Encoding,
    pub callee_encoding: Encoding,
    /// Borrowed handles among the flat parameters: position, the function
    /// that lends the handle for the call (`lend` or `borrow` of its
    /// table) and the one that ends the loan (`unlend`).
    pub borrows: Vec<(usize, FunctionId, FunctionId)>,
    /// The borrow scope global, when there are borrows.
    pub scope: Option<walrus::GlobalId>,
    /// Per handle type (`own<T>`, `borrow<T>`) crossing in the parameters
    /// other than as a flat borrow (those are in `borrows`): `(handle) ->
    /// handle'`, lifting it from the caller's table and lowering it into
    /// the callee's (CanonicalABI.md `lift_own`/`lower_own`,
    /// `lift_borrow`/`lower_borrow`). A type without an entry crosses
    /// unchanged.
    pub handles: Vec<(ValTy, FunctionId)>,
    /// The same for the result, from the callee's table to the caller's
    /// (`own<T>` only: a result cannot hold a borrow).
    pub result_handles: Vec<(ValTy, FunctionId)>,
    /// Per `borrow<T>` in `handles`: `(handle)`, ending the loan on the
    /// caller's table when the call returns (each such handle is found
    /// again in the caller's values).
    pub unlends: Vec<(ValTy, FunctionId)>,
}

/// Every copier of one glue module, so adapters between the same two
/// memories share their copy functions.
#[derive(Debug, Default)]
pub struct Copiers {
    copiers: Vec<Copier>,
    /// Walks over the caller's values that end the loans of the handles
    /// a copy lent, per memory and set of `unlend` functions.
    walkers: Vec<crate::reps_in_place::RepsInPlace>,
}

impl Copiers {
    fn get(
        &mut self,
        src: MemoryId,
        dst: MemoryId,
        realloc: Option<FunctionId>,
        (from, to): (Encoding, Encoding),
        handles: &[(ValTy, FunctionId)],
    ) -> &mut Copier {
        let found = self.copiers.iter().position(|c| {
            c.src == src && c.dst == dst && c.realloc == realloc && c.from == from && c.to == to && c.handles == handles
        });
        let index = match found {
            Some(i) => i,
            None => {
                let mut copier = Copier::new(src, dst, realloc, from, to);
                copier.handles = handles.to_vec();
                self.copiers.push(copier);
                self.copiers.len() - 1
            }
        };
        #[allow(clippy::indexing_slicing, reason = "`index` was found in `copiers` or just pushed onto it")]
        &mut self.copiers[index]
    }

    fn walker(&mut self, memory: MemoryId, visits: &[(ValTy, FunctionId)]) -> &mut crate::reps_in_place::RepsInPlace {
        let found = self.walkers.iter().position(|w| w.is_visiting(memory, visits));
        let index = match found {
            Some(i) => i,
            None => {
                self.walkers.push(crate::reps_in_place::RepsInPlace::visiting(memory, visits.to_vec()));
                self.walkers.len() - 1
            }
        };
        #[allow(clippy::indexing_slicing, reason = "`index` was found in `walkers` or just pushed onto it")]
        &mut self.walkers[index]
    }
}

/// Generates copy functions for one direction (source memory to
/// destination memory), each type once.
#[derive(Debug)]
pub struct Copier {
    src: MemoryId,
    dst: MemoryId,
    realloc: Option<FunctionId>,
    from: Encoding,
    to: Encoding,
    values: Vec<(ValTy, FunctionId)>,
    lists: Vec<(ValTy, FunctionId)>,
    string: Option<FunctionId>,
    /// Handles of these types are converted in the copy (`(handle) ->
    /// handle'`, see [`CopyIds::handles`]).
    handles: Vec<(ValTy, FunctionId)>,
}

impl Copier {
    pub fn new(src: MemoryId, dst: MemoryId, realloc: Option<FunctionId>, from: Encoding, to: Encoding) -> Copier {
        Copier { src, dst, realloc, from, to, values: Vec::new(), lists: Vec::new(), string: None, handles: Vec::new() }
    }

    /// Must a copied value of `ty` be fixed after its bytes are copied
    /// (pointers deep-copied, handles converted)?
    fn needs_fix(&self, ty: &ValTy) -> bool {
        ty.has_pointers() || self.converts(ty, false)
    }

    /// Does `ty` hold a handle this copier converts (with `own_only`, an
    /// `own<T>`: flat borrows are lent by the adapter itself)?
    fn converts(&self, ty: &ValTy, own_only: bool) -> bool {
        !self.handles.is_empty()
            && crate::reps_in_place::reaches(ty, &|t| {
                (!own_only || matches!(t, ValTy::Own(_))) && self.handles.iter().any(|(h, _)| h == t)
            })
    }

    /// The conversion of handles of type `ty`.
    fn handle(&self, ty: &ValTy) -> Option<FunctionId> {
        self.handles.iter().find(|(h, _)| h == ty).map(|(_, f)| *f)
    }

    fn realloc(&self) -> Result<FunctionId> {
        self.realloc.context("the receiving side has no `realloc` to allocate copied values")
    }

    /// `(src_addr, dst_addr)`: copy one value of `ty` laid out at
    /// `src_addr` to `dst_addr`, pointers deep-copied.
    pub fn value(&mut self, module: &mut Module, ty: &ValTy) -> Result<FunctionId> {
        if let Some((_, f)) = self.values.iter().find(|(t, _)| t == ty) {
            return Ok(*f);
        }
        let (size, _) = ty.layout().context("a value of unknown layout cannot be copied")?;
        // What to do after the bytes are copied: per pointerful part, its
        // offset and how to fix it.
        enum Fix {
            String,
            Handle(FunctionId),
            List(FunctionId),
            Value(u32, FunctionId),
            Case { tag: LoadKind, payload: u32, cases: Vec<(u32, FunctionId)> },
        }
        let mut fixes = Vec::new();
        match ty {
            _ if !self.needs_fix(ty) => {}
            ValTy::Prim(_) => fixes.push(Fix::String),
            ValTy::Borrow(r) | ValTy::Own(r) => {
                let convert = self
                    .handle(ty)
                    .with_context(|| format!("a handle of `{r:?}` inside a copied value has no conversion"))?;
                fixes.push(Fix::Handle(convert));
            }
            ValTy::List(elem) => fixes.push(Fix::List(self.list(module, elem)?)),
            other => match other.parts_in_memory(|t| self.needs_fix(t)) {
                Some(Parts::Fields(fields)) => {
                    for (offset, f) in fields {
                        fixes.push(Fix::Value(offset, self.value(module, f)?));
                    }
                }
                Some(Parts::Cases { tag_size, payload_offset, cases }) => {
                    let mut fns = Vec::new();
                    for (c, case) in cases {
                        fns.push((c, self.value(module, case)?));
                    }
                    fixes.push(Fix::Case { tag: tag_load(tag_size), payload: payload_offset, cases: fns });
                }
                None => bail!("copying `{other:?}` between memories is not supported"),
            },
        }
        let string = if fixes.iter().any(|f| matches!(f, Fix::String)) { Some(self.string(module)?) } else { None };
        let (src_mem, dst_mem) = (self.src, self.dst);
        let src = module.locals.add(ValType::I32);
        let dst = module.locals.add(ValType::I32);
        let (ptr, len) = (module.locals.add(ValType::I32), module.locals.add(ValType::I32));
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32, ValType::I32], &[]);
        builder.name(format!("karmem copy {ty:?}"));
        let mut body = builder.func_body();
        body.local_get(dst).local_get(src).i32_const(size as i32).memory_copy(src_mem, dst_mem);
        for fix in &fixes {
            match fix {
                Fix::Handle(convert) => {
                    body.local_get(dst).local_get(src).load(src_mem, I32, at(0, 4)).call(*convert);
                    body.store(dst_mem, I32_STORE, at(0, 4));
                }
                Fix::String => {
                    let Some(string) = string else { continue };
                    body.local_get(src).load(src_mem, I32, at(0, 4));
                    body.local_get(src).load(src_mem, I32, at(4, 4));
                    body.call(string).local_set(len).local_set(ptr);
                    body.local_get(dst).local_get(ptr).store(dst_mem, I32_STORE, at(0, 4));
                    body.local_get(dst).local_get(len).store(dst_mem, I32_STORE, at(4, 4));
                }
                Fix::List(list) => {
                    body.local_get(dst);
                    body.local_get(src).load(src_mem, I32, at(0, 4));
                    body.local_get(src).load(src_mem, I32, at(4, 4));
                    body.call(*list).store(dst_mem, I32_STORE, at(0, 4));
                }
                Fix::Value(offset, f) => {
                    body.local_get(src).i32_const(*offset as i32).binop(BinaryOp::I32Add);
                    body.local_get(dst).i32_const(*offset as i32).binop(BinaryOp::I32Add);
                    body.call(*f);
                }
                Fix::Case { tag, payload, cases } => {
                    for (c, f) in cases {
                        body.local_get(src).load(src_mem, *tag, at(0, 1)).i32_const(*c as i32).binop(BinaryOp::I32Eq);
                        let (f, payload) = (*f, *payload as i32);
                        body.if_else(
                            None,
                            |then| {
                                then.local_get(src).i32_const(payload).binop(BinaryOp::I32Add);
                                then.local_get(dst).i32_const(payload).binop(BinaryOp::I32Add);
                                then.call(f);
                            },
                            |_| {},
                        );
                    }
                }
            }
        }
        let f = builder.finish(vec![src, dst], &mut module.funcs);
        self.values.push((ty.clone(), f));
        Ok(f)
    }

    /// `(ptr, len) -> ptr'`: a list of `elem` copied into a new allocation.
    pub fn list(&mut self, module: &mut Module, elem: &ValTy) -> Result<FunctionId> {
        if let Some((_, f)) = self.lists.iter().find(|(t, _)| t == elem) {
            return Ok(*f);
        }
        let (size, align) = elem.layout().context("a list element of unknown layout cannot be copied")?;
        let each = if self.needs_fix(elem) { Some(self.value(module, elem)?) } else { None };
        let realloc = self.realloc()?;
        let (src_mem, dst_mem) = (self.src, self.dst);
        let ptr = module.locals.add(ValType::I32);
        let len = module.locals.add(ValType::I32);
        let copy = module.locals.add(ValType::I32);
        let i = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32, ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem copy list {elem:?}"));
        let mut body = builder.func_body();
        check_aligned(&mut body, ptr, align);
        body.i32_const(0)
            .i32_const(0)
            .i32_const(align as i32)
            .local_get(len)
            .i32_const(size as i32)
            .binop(BinaryOp::I32Mul)
            .call(realloc)
            .local_set(copy);
        check_aligned(&mut body, copy, align);
        match each {
            None => {
                body.local_get(copy)
                    .local_get(ptr)
                    .local_get(len)
                    .i32_const(size as i32)
                    .binop(BinaryOp::I32Mul)
                    .memory_copy(src_mem, dst_mem);
            }
            Some(each) => {
                body.i32_const(0).local_set(i);
                body.block(None, |done| {
                    let done_id = done.id();
                    done.loop_(None, |next| {
                        let next_id = next.id();
                        next.local_get(i).local_get(len).binop(BinaryOp::I32GeU).br_if(done_id);
                        let offset = |b: &mut InstrSeqBuilder<'_>, base: LocalId| {
                            b.local_get(base)
                                .local_get(i)
                                .i32_const(size as i32)
                                .binop(BinaryOp::I32Mul)
                                .binop(BinaryOp::I32Add);
                        };
                        offset(next, ptr);
                        offset(next, copy);
                        next.call(each);
                        next.local_get(i).i32_const(1).binop(BinaryOp::I32Add).local_set(i).br(next_id);
                    });
                });
            }
        }
        body.local_get(copy);
        let f = builder.finish(vec![ptr, len], &mut module.funcs);
        self.lists.push((elem.clone(), f));
        Ok(f)
    }

    /// `(ptr, len) -> (ptr', len')`: a string copied, transcoded if the
    /// two sides' encodings differ (`len` counts code units; for
    /// latin1+UTF-16 its top bit says UTF-16).
    pub fn string(&mut self, module: &mut Module) -> Result<FunctionId> {
        if let Some(f) = self.string {
            return Ok(f);
        }
        let realloc = self.realloc()?;
        let l = StringLocals {
            ptr: module.locals.add(ValType::I32),
            len: module.locals.add(ValType::I32),
            copy: module.locals.add(ValType::I32),
            i: module.locals.add(ValType::I32),
            o: module.locals.add(ValType::I32),
            c: module.locals.add(ValType::I32),
            u: module.locals.add(ValType::I32),
            out_ptr: module.locals.add(ValType::I32),
            out_len: module.locals.add(ValType::I32),
            src: self.src,
            dst: self.dst,
            realloc,
        };
        let (ptr, len) = (l.ptr, l.len);
        let mut builder =
            FunctionBuilder::new(&mut module.types, &[ValType::I32, ValType::I32], &[ValType::I32, ValType::I32]);
        builder.name(format!("karmem copy string {:?} to {:?}", self.from, self.to));
        let mut body = builder.func_body();
        let to = self.to;
        check_aligned(&mut body, ptr, if self.from == Encoding::Utf8 { 1 } else { 2 });
        match self.from {
            Encoding::Utf8 => transcode(&mut body, &l, Simple::Utf8, to),
            Encoding::Utf16 => transcode(&mut body, &l, Simple::Utf16, to),
            Encoding::Latin1Utf16 => {
                // The tag picks the source encoding; `len` becomes the count.
                let tagged = l.u;
                body.local_get(len).i32_const(UTF16_TAG).binop(BinaryOp::I32And).local_set(tagged);
                body.local_get(len).i32_const(!UTF16_TAG).binop(BinaryOp::I32And).local_set(len);
                body.local_get(tagged).if_else(
                    None,
                    |utf16| {
                        if to == Encoding::Latin1Utf16 {
                            probably_utf16_to_latin1_or_utf16(utf16, &l);
                        } else {
                            transcode(utf16, &l, Simple::Utf16, to);
                        }
                    },
                    |latin1| transcode(latin1, &l, Simple::Latin1, to),
                );
            }
        }
        body.local_get(l.out_ptr).local_get(l.out_len);
        let f = builder.finish(vec![ptr, len], &mut module.funcs);
        self.string = Some(f);
        Ok(f)
    }
}

/// latin1+UTF-16: the length's top bit says the string is UTF-16.
const UTF16_TAG: i32 = i32::MIN;

/// A source encoding once latin1+UTF-16's tag has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simple {
    Utf8,
    Utf16,
    Latin1,
}

/// The locals and ids a string copy works with.
#[derive(Debug, Clone)]
struct StringLocals {
    ptr: LocalId,
    len: LocalId,
    copy: LocalId,
    i: LocalId,
    o: LocalId,
    c: LocalId,
    u: LocalId,
    out_ptr: LocalId,
    out_len: LocalId,
    src: MemoryId,
    dst: MemoryId,
    realloc: FunctionId,
}

impl StringLocals {
    /// copy = realloc(0, 0, align, len * per_unit), after trapping when
    /// that is more than `MAX_STRING_BYTE_LENGTH`.
    fn allocate(&self, body: &mut InstrSeqBuilder<'_>, align: i32, per_unit: i32) {
        trap_if_too_long(body, self.len, per_unit);
        body.i32_const(0)
            .i32_const(0)
            .i32_const(align)
            .local_get(self.len)
            .i32_const(per_unit)
            .binop(BinaryOp::I32Mul)
            .call(self.realloc)
            .local_set(self.copy);
        check_aligned(body, self.copy, align as u32);
    }

    /// copy = realloc(copy, len * per_unit, align, len * worst), after
    /// trapping when `len * worst` is more than `MAX_STRING_BYTE_LENGTH`:
    /// the allocation grown to the worst case.
    fn grow(&self, body: &mut InstrSeqBuilder<'_>, align: i32, per_unit: i32, worst: i32) {
        trap_if_too_long(body, self.len, worst);
        self.reallocate(body, align, per_unit, (self.len, worst), self.copy);
    }

    /// out_ptr = realloc(copy, len * per_unit, align, o * out_unit)
    fn shrink(&self, body: &mut InstrSeqBuilder<'_>, align: i32, per_unit: i32, out_unit: i32) {
        self.reallocate(body, align, per_unit, (self.o, out_unit), self.out_ptr);
    }

    /// dest = realloc(copy, len * per_unit, align, count * unit), the
    /// result's alignment checked: `copy` resized to `count` units.
    fn reallocate(
        &self,
        body: &mut InstrSeqBuilder<'_>,
        align: i32,
        per_unit: i32,
        (count, unit): (LocalId, i32),
        dest: LocalId,
    ) {
        body.local_get(self.copy)
            .local_get(self.len)
            .i32_const(per_unit)
            .binop(BinaryOp::I32Mul)
            .i32_const(align)
            .local_get(count)
            .i32_const(unit)
            .binop(BinaryOp::I32Mul)
            .call(self.realloc)
            .local_set(dest);
        check_aligned(body, dest, align as u32);
    }

    /// A byte copy of `len * unit` bytes; the length stays.
    fn copy_units(&self, body: &mut InstrSeqBuilder<'_>, align: i32, unit: i32) {
        self.allocate(body, align, unit);
        body.local_get(self.copy)
            .local_get(self.ptr)
            .local_get(self.len)
            .i32_const(unit)
            .binop(BinaryOp::I32Mul)
            .memory_copy(self.src, self.dst);
        body.local_get(self.copy).local_set(self.out_ptr);
        body.local_get(self.len).local_set(self.out_len);
    }

    fn array(&self) -> [LocalId; 7] {
        [self.ptr, self.len, self.copy, self.i, self.o, self.c, self.u]
    }
}

/// Emit the copy of a `from` string (`ptr`, `len` code units) into a `to`
/// string, leaving the result in `out_ptr`, `out_len`
/// (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#strings>).
fn transcode(body: &mut InstrSeqBuilder<'_>, l: &StringLocals, from: Simple, to: Encoding) {
    match (from, to) {
        (Simple::Utf8, Encoding::Utf8) => l.copy_units(body, 1, 1),
        (Simple::Utf16, Encoding::Utf16) => l.copy_units(body, 2, 2),
        (Simple::Latin1, Encoding::Latin1Utf16) => l.copy_units(body, 2, 1),
        (Simple::Utf8, Encoding::Utf16) => {
            l.allocate(body, 2, 2);
            body.i32_const(0).local_set(l.i).i32_const(0).local_set(l.o);
            utf8_to_utf16(body, l.array(), l.src, l.dst);
            // Shrunk unless every unit allocated was written.
            body.local_get(l.len).local_get(l.o).binop(BinaryOp::I32GtU).if_else(
                None,
                |shrink| l.shrink(shrink, 2, 2, 2),
                |full| {
                    full.local_get(l.copy).local_set(l.out_ptr);
                },
            );
            body.local_get(l.o).local_set(l.out_len);
        }
        // A UTF-16 code unit takes at most three bytes (a surrogate pair
        // four), a Latin-1 byte at most two.
        (Simple::Utf16, Encoding::Utf8) => to_utf8(body, l, Simple::Utf16, 3),
        (Simple::Latin1, Encoding::Utf8) => to_utf8(body, l, Simple::Latin1, 2),
        (Simple::Latin1, Encoding::Utf16) => {
            l.allocate(body, 2, 2);
            widen_latin1(body, l);
            body.local_get(l.copy).local_set(l.out_ptr);
            body.local_get(l.len).local_set(l.out_len);
        }
        (Simple::Utf8 | Simple::Utf16, Encoding::Latin1Utf16) => to_latin1_or_utf16(body, l, from),
    }
}

/// The canonical ABI's `MAX_STRING_BYTE_LENGTH`: no string allocation is
/// larger.
const MAX_STRING_BYTES: i64 = (1 << 31) - 1;

/// Trap when `len * per_unit` bytes (computed in 64 bits) are more than
/// [`MAX_STRING_BYTES`].
fn trap_if_too_long(body: &mut InstrSeqBuilder<'_>, len: LocalId, per_unit: i32) {
    body.local_get(len)
        .unop(walrus::ir::UnaryOp::I64ExtendUI32)
        .i64_const(i64::from(per_unit))
        .binop(BinaryOp::I64Mul)
        .i64_const(MAX_STRING_BYTES)
        .binop(BinaryOp::I64GtU)
        .if_else(
            None,
            |too_long| {
                too_long.unreachable();
            },
            |_| {},
        );
}

/// The code unit `i` of the source (UTF-16 or Latin-1) on the stack.
fn source_unit(body: &mut InstrSeqBuilder<'_>, l: &StringLocals, from: Simple) {
    if from == Simple::Utf16 {
        body.local_get(l.ptr).local_get(l.i).i32_const(2).binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add).load(
            l.src,
            U16,
            at(0, 2),
        );
    } else {
        body.local_get(l.ptr).local_get(l.i).binop(BinaryOp::I32Add).load(l.src, U8, at(0, 1));
    }
}

/// The canonical ABI's `store_string_to_utf8` from UTF-16 or Latin-1
/// (`worst` bytes per code unit at most): `len` bytes allocated and filled
/// while the code units are ASCII; at the first that is not, the
/// allocation grown to `len * worst` bytes, the rest encoded, and the
/// allocation shrunk to what was written (unless that is all of it).
fn to_utf8(body: &mut InstrSeqBuilder<'_>, l: &StringLocals, from: Simple, worst: i32) {
    let dst = l.dst;
    l.allocate(body, 1, 1);
    // The ASCII prefix, one byte per unit: i = o = its length.
    body.i32_const(0).local_set(l.i);
    body.block(None, |done| {
        let done_id = done.id();
        done.loop_(None, |next| {
            let next_id = next.id();
            next.local_get(l.i).local_get(l.len).binop(BinaryOp::I32GeU).br_if(done_id);
            source_unit(next, l, from);
            next.local_set(l.c);
            next.local_get(l.c).i32_const(0x80).binop(BinaryOp::I32GeU).br_if(done_id);
            next.local_get(l.copy).local_get(l.i).binop(BinaryOp::I32Add).local_get(l.c).store(dst, STORE_8, at(0, 1));
            next.local_get(l.i).i32_const(1).binop(BinaryOp::I32Add).local_set(l.i).br(next_id);
        });
    });
    body.local_get(l.i).local_set(l.o);
    body.local_get(l.i).local_get(l.len).binop(BinaryOp::I32LtU).if_else(
        None,
        |wide| {
            l.grow(wide, 1, 1, worst);
            if from == Simple::Utf16 {
                utf16_to_utf8(wide, l.array(), l.src, l.dst);
            } else {
                latin1_to_utf8(wide, l);
            }
            wide.local_get(l.len)
                .i32_const(worst)
                .binop(BinaryOp::I32Mul)
                .local_get(l.o)
                .binop(BinaryOp::I32GtU)
                .if_else(
                    None,
                    |shrink| l.shrink(shrink, 1, worst, 1),
                    |full| {
                        full.local_get(l.copy).local_set(l.out_ptr);
                    },
                );
            wide.local_get(l.o).local_set(l.out_len);
        },
        |ascii| {
            ascii.local_get(l.copy).local_set(l.out_ptr);
            ascii.local_get(l.len).local_set(l.out_len);
        },
    );
}

/// The canonical ABI's `store_string_to_latin1_or_utf16` from UTF-8 or
/// UTF-16: `len` bytes allocated and filled with Latin-1 while the
/// characters fit a byte. At the first that does not, the allocation grows
/// to two bytes per code unit, the Latin-1 written so far is widened in
/// place, the rest follows as UTF-16 and the length is tagged; either way
/// the allocation is shrunk to what was written (unless that is all of it).
fn to_latin1_or_utf16(body: &mut InstrSeqBuilder<'_>, l: &StringLocals, from: Simple) {
    let (src, dst) = (l.src, l.dst);
    l.allocate(body, 2, 1);
    // i: source units read; o: Latin-1 bytes written; u = 1 at a character
    // wider than a byte (i is left on it).
    body.i32_const(0).local_set(l.i).i32_const(0).local_set(l.o).i32_const(0).local_set(l.u);
    body.block(None, |done| {
        let done_id = done.id();
        done.loop_(None, |next| {
            let next_id = next.id();
            next.local_get(l.i).local_get(l.len).binop(BinaryOp::I32GeU).br_if(done_id);
            if from == Simple::Utf16 {
                source_unit(next, l, from);
                next.local_set(l.c);
                next.local_get(l.c).i32_const(0x100).binop(BinaryOp::I32GeU).if_else(
                    None,
                    |wide| {
                        wide.i32_const(1).local_set(l.u).br(done_id);
                    },
                    |_| {},
                );
                next.local_get(l.i).i32_const(1).binop(BinaryOp::I32Add).local_set(l.i);
            } else {
                // One byte below 0x80, or 0xc2/0xc3 and a continuation byte
                // (U+0080..U+00FF); anything else is wider than Latin-1.
                next.local_get(l.ptr).local_get(l.i).binop(BinaryOp::I32Add).load(src, U8, at(0, 1)).local_set(l.c);
                next.local_get(l.c).i32_const(0x80).binop(BinaryOp::I32LtU).if_else(
                    None,
                    |one| {
                        one.local_get(l.i).i32_const(1).binop(BinaryOp::I32Add).local_set(l.i);
                    },
                    |more| {
                        // two = (c & 0xfe) == 0xc2
                        more.local_get(l.c).i32_const(0xfe).binop(BinaryOp::I32And);
                        more.i32_const(0xc2).binop(BinaryOp::I32Eq).if_else(
                            None,
                            |two| {
                                two.local_get(l.c).i32_const(0x1f).binop(BinaryOp::I32And);
                                two.i32_const(6).binop(BinaryOp::I32Shl);
                                two.local_get(l.ptr).local_get(l.i).binop(BinaryOp::I32Add).load(src, U8, at(1, 1));
                                two.i32_const(0x3f).binop(BinaryOp::I32And).binop(BinaryOp::I32Or).local_set(l.c);
                                two.local_get(l.i).i32_const(2).binop(BinaryOp::I32Add).local_set(l.i);
                            },
                            |wide| {
                                wide.i32_const(1).local_set(l.u).br(done_id);
                            },
                        );
                    },
                );
            }
            next.local_get(l.copy).local_get(l.o).binop(BinaryOp::I32Add).local_get(l.c).store(dst, STORE_8, at(0, 1));
            next.local_get(l.o).i32_const(1).binop(BinaryOp::I32Add).local_set(l.o).br(next_id);
        });
    });
    body.local_get(l.u).if_else(
        None,
        |utf16| {
            l.grow(utf16, 2, 1, 2);
            // Widen the o Latin-1 bytes in place, last first (c counts down).
            utf16.local_get(l.o).local_set(l.c);
            utf16.block(None, |done| {
                let done_id = done.id();
                done.loop_(None, |next| {
                    let next_id = next.id();
                    next.local_get(l.c).unop(walrus::ir::UnaryOp::I32Eqz).br_if(done_id);
                    next.local_get(l.c).i32_const(1).binop(BinaryOp::I32Sub).local_set(l.c);
                    next.local_get(l.copy).local_get(l.c).i32_const(2).binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add);
                    next.local_get(l.copy).local_get(l.c).binop(BinaryOp::I32Add).load(dst, U8, at(0, 1));
                    next.store(dst, STORE_16, at(0, 2));
                    next.br(next_id);
                });
            });
            if from == Simple::Utf8 {
                utf8_to_utf16(utf16, l.array(), src, dst);
            } else {
                // The rest of the UTF-16 as it is (here o == i).
                utf16.local_get(l.copy).local_get(l.o).i32_const(2).binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add);
                utf16.local_get(l.ptr).local_get(l.i).i32_const(2).binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add);
                utf16.local_get(l.len).local_get(l.i).binop(BinaryOp::I32Sub).i32_const(2).binop(BinaryOp::I32Mul);
                utf16.memory_copy(src, dst);
                utf16.local_get(l.len).local_set(l.o);
            }
            utf16.local_get(l.len).local_get(l.o).binop(BinaryOp::I32GtU).if_else(
                None,
                |shrink| l.shrink(shrink, 2, 2, 2),
                |full| {
                    full.local_get(l.copy).local_set(l.out_ptr);
                },
            );
            utf16.local_get(l.o).i32_const(UTF16_TAG).binop(BinaryOp::I32Or).local_set(l.out_len);
        },
        |latin1| {
            latin1.local_get(l.len).local_get(l.o).binop(BinaryOp::I32GtU).if_else(
                None,
                |shrink| l.shrink(shrink, 2, 1, 1),
                |full| {
                    full.local_get(l.copy).local_set(l.out_ptr);
                },
            );
            latin1.local_get(l.o).local_set(l.out_len);
        },
    );
}

/// The canonical ABI's `store_probably_utf16_to_latin1_or_utf16`: a
/// latin1+UTF-16 string that is UTF-16 (tagged) into latin1+UTF-16. Two
/// bytes per code unit allocated and copied; kept and tagged when some unit
/// does not fit a byte, else narrowed to Latin-1 in place and shrunk.
fn probably_utf16_to_latin1_or_utf16(body: &mut InstrSeqBuilder<'_>, l: &StringLocals) {
    let dst = l.dst;
    l.allocate(body, 2, 2);
    body.local_get(l.copy).local_get(l.ptr).local_get(l.len).i32_const(2).binop(BinaryOp::I32Mul);
    body.memory_copy(l.src, dst);
    let unit = |b: &mut InstrSeqBuilder<'_>| {
        b.local_get(l.copy).local_get(l.i).i32_const(2).binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add);
        b.load(dst, U16, at(0, 2));
    };
    // c = 1 when some unit does not fit a byte.
    body.i32_const(0).local_set(l.i).i32_const(0).local_set(l.c);
    body.block(None, |done| {
        let done_id = done.id();
        done.loop_(None, |next| {
            let next_id = next.id();
            next.local_get(l.i).local_get(l.len).binop(BinaryOp::I32GeU).br_if(done_id);
            unit(next);
            next.i32_const(0xff).binop(BinaryOp::I32GtU).if_else(
                None,
                |wide| {
                    wide.i32_const(1).local_set(l.c).br(done_id);
                },
                |_| {},
            );
            next.local_get(l.i).i32_const(1).binop(BinaryOp::I32Add).local_set(l.i).br(next_id);
        });
    });
    body.local_get(l.c).if_else(
        None,
        |utf16| {
            utf16.local_get(l.copy).local_set(l.out_ptr);
            utf16.local_get(l.len).i32_const(UTF16_TAG).binop(BinaryOp::I32Or).local_set(l.out_len);
        },
        |latin1| {
            latin1.i32_const(0).local_set(l.i);
            latin1.block(None, |done| {
                let done_id = done.id();
                done.loop_(None, |next| {
                    let next_id = next.id();
                    next.local_get(l.i).local_get(l.len).binop(BinaryOp::I32GeU).br_if(done_id);
                    next.local_get(l.copy).local_get(l.i).binop(BinaryOp::I32Add);
                    unit(next);
                    next.store(dst, STORE_8, at(0, 1));
                    next.local_get(l.i).i32_const(1).binop(BinaryOp::I32Add).local_set(l.i).br(next_id);
                });
            });
            // out_ptr = realloc(copy, len * 2, 1, len)
            latin1.local_get(l.len).local_set(l.o);
            l.shrink(latin1, 1, 2, 1);
            latin1.local_get(l.len).local_set(l.out_len);
        },
    );
}

/// Latin-1 at `ptr` (`len` bytes, source memory) as UTF-8 at `copy`,
/// from byte `i` on, written from `o` on; leaves the bytes written in `o`.
fn latin1_to_utf8(body: &mut InstrSeqBuilder<'_>, l: &StringLocals) {
    let (src, dst) = (l.src, l.dst);
    body.block(None, |done| {
        let done_id = done.id();
        done.loop_(None, |next| {
            let next_id = next.id();
            next.local_get(l.i).local_get(l.len).binop(BinaryOp::I32GeU).br_if(done_id);
            next.local_get(l.ptr).local_get(l.i).binop(BinaryOp::I32Add).load(src, U8, at(0, 1)).local_set(l.c);
            next.local_get(l.c).i32_const(0x80).binop(BinaryOp::I32LtU).if_else(
                None,
                |one| {
                    one.local_get(l.copy).local_get(l.o).binop(BinaryOp::I32Add).local_get(l.c).store(
                        dst,
                        STORE_8,
                        at(0, 1),
                    );
                    one.local_get(l.o).i32_const(1).binop(BinaryOp::I32Add).local_set(l.o);
                },
                |two| {
                    two.local_get(l.copy)
                        .local_get(l.o)
                        .binop(BinaryOp::I32Add)
                        .local_get(l.c)
                        .i32_const(6)
                        .binop(BinaryOp::I32ShrU)
                        .i32_const(0xc0)
                        .binop(BinaryOp::I32Or)
                        .store(dst, STORE_8, at(0, 1));
                    two.local_get(l.copy)
                        .local_get(l.o)
                        .binop(BinaryOp::I32Add)
                        .local_get(l.c)
                        .i32_const(0x3f)
                        .binop(BinaryOp::I32And)
                        .i32_const(0x80)
                        .binop(BinaryOp::I32Or)
                        .store(dst, STORE_8, at(1, 1));
                    two.local_get(l.o).i32_const(2).binop(BinaryOp::I32Add).local_set(l.o);
                },
            );
            next.local_get(l.i).i32_const(1).binop(BinaryOp::I32Add).local_set(l.i).br(next_id);
        });
    });
}

/// Latin-1 at `ptr` (`len` bytes, source memory) as UTF-16 at `copy`.
fn widen_latin1(body: &mut InstrSeqBuilder<'_>, l: &StringLocals) {
    let (src, dst) = (l.src, l.dst);
    body.i32_const(0).local_set(l.i);
    body.block(None, |done| {
        let done_id = done.id();
        done.loop_(None, |next| {
            let next_id = next.id();
            next.local_get(l.i).local_get(l.len).binop(BinaryOp::I32GeU).br_if(done_id);
            next.local_get(l.copy).local_get(l.i).i32_const(2).binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add);
            next.local_get(l.ptr).local_get(l.i).binop(BinaryOp::I32Add).load(src, U8, at(0, 1));
            next.store(dst, STORE_16, at(0, 2));
            next.local_get(l.i).i32_const(1).binop(BinaryOp::I32Add).local_set(l.i).br(next_id);
        });
    });
}

/// Decode UTF-8 at `ptr` (`len` bytes, source memory) into UTF-16 at
/// `copy` (destination memory), from byte `i` on, written from unit `o` on;
/// leaves the code units written in `o`.
fn utf8_to_utf16(body: &mut InstrSeqBuilder<'_>, l: [LocalId; 7], src: MemoryId, dst: MemoryId) {
    let [ptr, len, copy, i, o, c, u] = l;
    let byte = |b: &mut InstrSeqBuilder<'_>, k: i32| {
        b.local_get(ptr).local_get(i).binop(BinaryOp::I32Add).load(src, U8, at(k as u32, 1));
    };
    let cont = |b: &mut InstrSeqBuilder<'_>, k: i32, shift: i32| {
        byte(b, k);
        b.i32_const(0x3f).binop(BinaryOp::I32And).i32_const(shift).binop(BinaryOp::I32Shl).binop(BinaryOp::I32Or);
    };
    let unit = |b: &mut InstrSeqBuilder<'_>, value: &dyn Fn(&mut InstrSeqBuilder<'_>)| {
        b.local_get(copy).local_get(o).i32_const(2).binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add);
        value(b);
        b.store(dst, STORE_16, at(0, 2));
        b.local_get(o).i32_const(1).binop(BinaryOp::I32Add).local_set(o);
    };
    body.block(None, |done| {
        let done_id = done.id();
        done.loop_(None, |next| {
            let next_id = next.id();
            next.local_get(i).local_get(len).binop(BinaryOp::I32GeU).br_if(done_id);
            byte(next, 0);
            next.local_set(u);
            // c = the code point, i advanced by the sequence's length.
            next.local_get(u).i32_const(0x80).binop(BinaryOp::I32LtU).if_else(
                None,
                |one| {
                    one.local_get(u).local_set(c).local_get(i).i32_const(1).binop(BinaryOp::I32Add).local_set(i);
                },
                |more| {
                    more.local_get(u).i32_const(0xe0).binop(BinaryOp::I32LtU).if_else(
                        None,
                        |two| {
                            two.local_get(u).i32_const(0x1f).binop(BinaryOp::I32And).i32_const(6).binop(BinaryOp::I32Shl);
                            cont(two, 1, 0);
                            two.local_set(c).local_get(i).i32_const(2).binop(BinaryOp::I32Add).local_set(i);
                        },
                        |more| {
                            more.local_get(u).i32_const(0xf0).binop(BinaryOp::I32LtU).if_else(
                                None,
                                |three| {
                                    three
                                        .local_get(u)
                                        .i32_const(0x0f)
                                        .binop(BinaryOp::I32And)
                                        .i32_const(12)
                                        .binop(BinaryOp::I32Shl);
                                    cont(three, 1, 6);
                                    cont(three, 2, 0);
                                    three.local_set(c).local_get(i).i32_const(3).binop(BinaryOp::I32Add).local_set(i);
                                },
                                |four| {
                                    four.local_get(u)
                                        .i32_const(0x07)
                                        .binop(BinaryOp::I32And)
                                        .i32_const(18)
                                        .binop(BinaryOp::I32Shl);
                                    cont(four, 1, 12);
                                    cont(four, 2, 6);
                                    cont(four, 3, 0);
                                    four.local_set(c).local_get(i).i32_const(4).binop(BinaryOp::I32Add).local_set(i);
                                },
                            );
                        },
                    );
                },
            );
            next.local_get(c).i32_const(0x10000).binop(BinaryOp::I32GeU).if_else(
                None,
                |pair| {
                    pair.local_get(c).i32_const(0x10000).binop(BinaryOp::I32Sub).local_set(c);
                    unit(pair, &|b| {
                        b.local_get(c).i32_const(10).binop(BinaryOp::I32ShrU).i32_const(0xd800).binop(BinaryOp::I32Or);
                    });
                    unit(pair, &|b| {
                        b.local_get(c).i32_const(0x3ff).binop(BinaryOp::I32And).i32_const(0xdc00).binop(BinaryOp::I32Or);
                    });
                },
                |single| {
                    unit(single, &|b| {
                        b.local_get(c);
                    });
                },
            );
            next.br(next_id);
        });
    });
}

/// Encode UTF-16 at `ptr` (`len` code units, source memory) as UTF-8 at
/// `copy` (destination memory), from unit `i` on, written from byte `o` on;
/// leaves the bytes written in `o`.
fn utf16_to_utf8(body: &mut InstrSeqBuilder<'_>, l: [LocalId; 7], src: MemoryId, dst: MemoryId) {
    let [ptr, len, copy, i, o, c, u] = l;
    let unit_at = |b: &mut InstrSeqBuilder<'_>| {
        b.local_get(ptr).local_get(i).i32_const(2).binop(BinaryOp::I32Mul).binop(BinaryOp::I32Add).load(
            src,
            U16,
            at(0, 2),
        );
    };
    // Store `value` at copy + o + k.
    let put = |b: &mut InstrSeqBuilder<'_>, k: u32, value: &dyn Fn(&mut InstrSeqBuilder<'_>)| {
        b.local_get(copy).local_get(o).binop(BinaryOp::I32Add);
        value(b);
        b.store(dst, STORE_8, at(k, 1));
    };
    // 0x80 | ((c >> shift) & 0x3f)
    let tail = |b: &mut InstrSeqBuilder<'_>, shift: i32| {
        b.local_get(c)
            .i32_const(shift)
            .binop(BinaryOp::I32ShrU)
            .i32_const(0x3f)
            .binop(BinaryOp::I32And)
            .i32_const(0x80)
            .binop(BinaryOp::I32Or);
    };
    let lead = |b: &mut InstrSeqBuilder<'_>, shift: i32, mark: i32| {
        b.local_get(c).i32_const(shift).binop(BinaryOp::I32ShrU).i32_const(mark).binop(BinaryOp::I32Or);
    };
    let advance = |b: &mut InstrSeqBuilder<'_>, n: i32| {
        b.local_get(o).i32_const(n).binop(BinaryOp::I32Add).local_set(o);
    };
    body.block(None, |done| {
        let done_id = done.id();
        done.loop_(None, |next| {
            let next_id = next.id();
            next.local_get(i).local_get(len).binop(BinaryOp::I32GeU).br_if(done_id);
            unit_at(next);
            next.local_set(c);
            next.local_get(i).i32_const(1).binop(BinaryOp::I32Add).local_set(i);
            // A high surrogate followed by a low one is one code point.
            next.local_get(c)
                .i32_const(0xfc00)
                .binop(BinaryOp::I32And)
                .i32_const(0xd800)
                .binop(BinaryOp::I32Eq)
                .local_get(i)
                .local_get(len)
                .binop(BinaryOp::I32LtU)
                .binop(BinaryOp::I32And)
                .if_else(
                    None,
                    |high| {
                        unit_at(high);
                        high.local_set(u);
                        high.local_get(u)
                            .i32_const(0xfc00)
                            .binop(BinaryOp::I32And)
                            .i32_const(0xdc00)
                            .binop(BinaryOp::I32Eq)
                            .if_else(
                                None,
                                |low| {
                                    low.local_get(c)
                                        .i32_const(0xd800)
                                        .binop(BinaryOp::I32Sub)
                                        .i32_const(10)
                                        .binop(BinaryOp::I32Shl)
                                        .local_get(u)
                                        .i32_const(0xdc00)
                                        .binop(BinaryOp::I32Sub)
                                        .binop(BinaryOp::I32Or)
                                        .i32_const(0x10000)
                                        .binop(BinaryOp::I32Add)
                                        .local_set(c);
                                    low.local_get(i).i32_const(1).binop(BinaryOp::I32Add).local_set(i);
                                },
                                |_| {},
                            );
                    },
                    |_| {},
                );
            next.local_get(c).i32_const(0x80).binop(BinaryOp::I32LtU).if_else(
                None,
                |one| {
                    put(one, 0, &|b| {
                        b.local_get(c);
                    });
                    advance(one, 1);
                },
                |more| {
                    more.local_get(c).i32_const(0x800).binop(BinaryOp::I32LtU).if_else(
                        None,
                        |two| {
                            put(two, 0, &|b| lead(b, 6, 0xc0));
                            put(two, 1, &|b| tail(b, 0));
                            advance(two, 2);
                        },
                        |more| {
                            more.local_get(c).i32_const(0x10000).binop(BinaryOp::I32LtU).if_else(
                                None,
                                |three| {
                                    put(three, 0, &|b| lead(b, 12, 0xe0));
                                    put(three, 1, &|b| tail(b, 6));
                                    put(three, 2, &|b| tail(b, 0));
                                    advance(three, 3);
                                },
                                |four| {
                                    put(four, 0, &|b| lead(b, 18, 0xf0));
                                    put(four, 1, &|b| tail(b, 12));
                                    put(four, 2, &|b| tail(b, 6));
                                    put(four, 3, &|b| tail(b, 0));
                                    advance(four, 4);
                                },
                            );
                        },
                    );
                },
            );
            next.br(next_id);
        });
    });
}

/// How the flat arguments of one parameter cross (planned before the
/// adapter's body is built, so the body needs no `&mut Module`).
enum FlatCopy {
    /// This many flat values, as they are.
    Pass(usize),
    /// `(ptr, len)` of a string.
    String(FunctionId),
    /// `(ptr, len)` of a list; the length is passed as is.
    List(FunctionId),
    /// An `own<T>` handle: `(handle) -> handle'` moves it to the callee's table.
    Handle(FunctionId),
    Fields(Vec<FlatCopy>),
    /// A flat variant: each case with pointers rewrites its payload slots
    /// in `outs` when the discriminant names it.
    Variant { outs: Vec<LocalId>, cases: Vec<VariantCase> },
}

/// One case of a flat variant whose payload holds pointers.
struct VariantCase {
    tag: u32,
    /// The joined slot types the payload occupies (after the discriminant).
    joined: Vec<Flat>,
    /// The payload's own flat types.
    own: Vec<Flat>,
    /// Locals of the payload's own types: its values before and after copying.
    ins: Vec<LocalId>,
    outs: Vec<LocalId>,
    plan: FlatCopy,
}

fn val_type(f: Flat) -> ValType {
    match f {
        Flat::I32 => ValType::I32,
        Flat::I64 => ValType::I64,
        Flat::F32 => ValType::F32,
        Flat::F64 => ValType::F64,
    }
}

/// Convert the value on the stack from a joined variant slot to a case's
/// own flat type
/// (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#flat-lifting>).
fn from_joined(body: &mut InstrSeqBuilder<'_>, joined: Flat, own: Flat) {
    use walrus::ir::UnaryOp::*;
    match (joined, own) {
        (Flat::I64, Flat::I32) => {
            body.unop(I32WrapI64);
        }
        (Flat::I64, Flat::F32) => {
            body.unop(I32WrapI64).unop(F32ReinterpretI32);
        }
        (Flat::I64, Flat::F64) => {
            body.unop(F64ReinterpretI64);
        }
        (Flat::I32, Flat::F32) => {
            body.unop(F32ReinterpretI32);
        }
        _ => {}
    }
}

/// Convert the value on the stack from a case's own flat type to the
/// joined variant slot (flat lowering).
fn to_joined(body: &mut InstrSeqBuilder<'_>, own: Flat, joined: Flat) {
    use walrus::ir::UnaryOp::*;
    match (own, joined) {
        (Flat::I32, Flat::I64) => {
            body.unop(I64ExtendUI32);
        }
        (Flat::F32, Flat::I64) => {
            body.unop(I32ReinterpretF32).unop(I64ExtendUI32);
        }
        (Flat::F64, Flat::I64) => {
            body.unop(I64ReinterpretF64);
        }
        (Flat::F32, Flat::I32) => {
            body.unop(I32ReinterpretF32);
        }
        _ => {}
    }
}

impl FlatCopy {
    fn plan(ty: &ValTy, copier: &mut Copier, module: &mut Module) -> Result<FlatCopy> {
        let mut flat = Vec::new();
        ty.flatten(&mut flat);
        // Flat borrows are lent by the adapter (`CopyIds::borrows`).
        let fix = |t: &ValTy, copier: &Copier| t.has_pointers() || copier.converts(t, true);
        if !fix(ty, copier) {
            return Ok(FlatCopy::Pass(flat.len()));
        }
        Ok(match ty {
            ValTy::Own(r) => {
                FlatCopy::Handle(copier.handle(ty).with_context(|| format!("an `own` handle of `{r:?}` has no conversion"))?)
            }
            ValTy::Prim(_) => FlatCopy::String(copier.string(module)?),
            ValTy::List(elem) => FlatCopy::List(copier.list(module, elem)?),
            ValTy::Record(fields) | ValTy::Tuple(fields) => FlatCopy::Fields(
                fields.iter().map(|f| FlatCopy::plan(f, copier, module)).collect::<Result<_>>()?,
            ),
            ValTy::FixedList(elem, n) => {
                let mut parts = Vec::new();
                for _ in 0..*n {
                    parts.push(FlatCopy::plan(elem, copier, module)?);
                }
                FlatCopy::Fields(parts)
            }
            ValTy::Variant(_) | ValTy::Option(_) | ValTy::Result(..) => {
                let outs = flat.iter().map(|f| module.locals.add(val_type(*f))).collect();
                let mut cases = Vec::new();
                for (c, case) in ty.cases().unwrap_or_default().into_iter().enumerate() {
                    let Some(case) = case.filter(|t| fix(t, copier)) else { continue };
                    let mut own = Vec::new();
                    case.flatten(&mut own);
                    let joined: Vec<Flat> = flat.iter().skip(1).take(own.len()).copied().collect();
                    if joined.len() != own.len() {
                        bail!("a variant case does not fit the variant's flat slots");
                    }
                    cases.push(VariantCase {
                        tag: c as u32,
                        ins: own.iter().map(|f| module.locals.add(val_type(*f))).collect(),
                        outs: own.iter().map(|f| module.locals.add(val_type(*f))).collect(),
                        plan: FlatCopy::plan(case, copier, module)?,
                        joined,
                        own,
                    });
                }
                FlatCopy::Variant { outs, cases }
            }
            other => bail!("copying `{other:?}` between memories is not supported"),
        })
    }

    /// Push the copied flat values of this parameter, taking its arguments
    /// from `args`.
    fn emit(&self, body: &mut InstrSeqBuilder<'_>, args: &mut std::slice::Iter<'_, LocalId>) -> Result<()> {
        let mut take = |n: usize| -> Result<Vec<LocalId>> {
            let taken: Vec<LocalId> = args.by_ref().take(n).copied().collect();
            if taken.len() != n {
                bail!("the adapter's arguments do not match its signature");
            }
            Ok(taken)
        };
        match self {
            FlatCopy::Pass(n) => {
                for a in take(*n)? {
                    body.local_get(a);
                }
            }
            FlatCopy::String(f) => {
                for a in take(2)? {
                    body.local_get(a);
                }
                body.call(*f);
            }
            FlatCopy::Handle(f) => {
                for a in take(1)? {
                    body.local_get(a);
                }
                body.call(*f);
            }
            FlatCopy::List(f) => {
                let ab = take(2)?;
                for a in &ab {
                    body.local_get(*a);
                }
                body.call(*f);
                if let Some(len) = ab.get(1) {
                    body.local_get(*len);
                }
            }
            FlatCopy::Fields(parts) => {
                for p in parts {
                    p.emit(body, args)?;
                }
            }
            FlatCopy::Variant { outs, cases } => {
                let ins = take(outs.len())?;
                for (a, o) in ins.iter().zip(outs) {
                    body.local_get(*a).local_set(*o);
                }
                let Some(tag) = ins.first().copied() else { bail!("a variant without a discriminant") };
                for case in cases {
                    let slots: Vec<LocalId> = ins.iter().skip(1).take(case.own.len()).copied().collect();
                    let targets: Vec<LocalId> = outs.iter().skip(1).take(case.own.len()).copied().collect();
                    let mut result = Ok(());
                    body.local_get(tag).i32_const(case.tag as i32).binop(BinaryOp::I32Eq).if_else(
                        None,
                        |then| {
                            let parts = slots.iter().zip(&case.joined).zip(&case.own).zip(&case.ins);
                            for (((slot, joined), own), local) in parts {
                                then.local_get(*slot);
                                from_joined(then, *joined, *own);
                                then.local_set(*local);
                            }
                            result = case.plan.emit(then, &mut case.ins.iter());
                            for o in case.outs.iter().rev() {
                                then.local_set(*o);
                            }
                            let parts = case.outs.iter().zip(&case.own).zip(&case.joined).zip(&targets);
                            for (((local, own), joined), target) in parts {
                                then.local_get(*local);
                                to_joined(then, *own, *joined);
                                then.local_set(*target);
                            }
                        },
                        |_| {},
                    );
                    result?;
                }
                for o in outs {
                    body.local_get(*o);
                }
            }
        }
        Ok(())
    }
}

/// Replace the placeholder import `fid` with a copying adapter for a call
/// with these parameter types and result type. `params_in_memory`: the
/// parameters come as one pointer to a tuple of them (more than 16 flat
/// values), copied into an allocation of the callee's; `result_in_memory`:
/// the result comes back through a result area (more than one flat value).
#[allow(clippy::too_many_arguments, reason = "the module, copiers and ids, plus the call's shape: parameter and result types, each flat or in memory")]
pub fn generate(
    module: &mut Module,
    copiers: &mut Copiers,
    fid: FunctionId,
    ids: &CopyIds,
    params: &[ValTy],
    params_in_memory: bool,
    result: Option<&ValTy>,
    result_in_memory: bool,
) -> Result<()> {
    let forward = copiers.get(
        ids.caller_memory,
        ids.callee_memory,
        ids.callee_realloc,
        (ids.caller_encoding, ids.callee_encoding),
        &ids.handles,
    );
    let (plans, tuple_copy) = if params_in_memory {
        let tuple = ValTy::Tuple(params.to_vec());
        let (size, align) = tuple.layout().context("parameters of unknown layout cannot be copied")?;
        let realloc = forward.realloc()?;
        (Vec::new(), Some((forward.value(module, &tuple)?, realloc, size, align)))
    } else {
        (params.iter().map(|p| FlatCopy::plan(p, forward, module)).collect::<Result<_>>()?, None)
    };
    let back = copiers.get(
        ids.callee_memory,
        ids.caller_memory,
        ids.caller_realloc,
        (ids.callee_encoding, ids.caller_encoding),
        &ids.result_handles,
    );
    let copy_result = match result {
        Some(ty) if result_in_memory => {
            let (_, align) = ty.layout().context("a result of unknown layout cannot be copied")?;
            Some((back.value(module, ty)?, align))
        }
        _ => None,
    };
    let flat_result = match result {
        Some(_) if !result_in_memory => {
            let ty = module.funcs.get(ids.callee).ty();
            module.types.get(ty).results().first().copied().map(|t| module.locals.add(t))
        }
        _ => None,
    };
    // A flat `own` result moves to the caller's table; the post-return
    // still gets the callee's number.
    let result_handle = match result {
        Some(ty) if !result_in_memory => {
            single_own(ty).and_then(|own| ids.result_handles.iter().find(|(h, _)| h == own)).map(|(_, f)| *f)
        }
        _ => None,
    };
    let converted = module.locals.add(ValType::I32);
    // The loans of borrowed handles inside copied parameters end when the
    // callee returns: each is found again in the caller's values.
    let mut unlend_walks: Vec<(usize, usize, FunctionId)> = Vec::new();
    if !ids.unlends.is_empty() {
        let walker = copiers.walker(ids.caller_memory, &ids.unlends);
        if params_in_memory {
            unlend_walks.push((0, 1, walker.value(module, &ValTy::Tuple(params.to_vec()))?));
        } else {
            let mut pos = 0;
            for p in params {
                lists_to_unlend(module, walker, p, &mut pos, &mut unlend_walks)?;
            }
        }
    }
    let area = module.locals.add(ValType::I32);
    let params_copy = module.locals.add(ValType::I32);
    let saved_scope = module.locals.add(ValType::I32);
    let lent: Vec<(usize, FunctionId, FunctionId, LocalId)> =
        ids.borrows.iter().map(|(pos, lend, unlend)| (*pos, *lend, *unlend, module.locals.add(ValType::I32))).collect();
    let scope = match (lent.is_empty() && ids.unlends.is_empty(), ids.scope) {
        (true, _) => None,
        (false, Some(scope)) => Some(scope),
        (false, None) => bail!("borrows cross a copying adapter without a borrow scope"),
    };
    let (callee, post) = (ids.callee, ids.post_return);
    let mut outcome = Ok(());
    module
        .replace_imported_func(fid, |(body, original)| {
            // Lend borrowed handles for the call, in a fresh borrow scope.
            if let Some(scope) = scope {
                body.global_get(scope).local_set(saved_scope).i32_const(0).global_set(scope);
            }
            let mut args: Vec<LocalId> = original.clone();
            for (pos, lend, _, local) in &lent {
                let Some(handle) = original.get(*pos) else {
                    outcome = Err(anyhow!("a borrowed parameter is out of range"));
                    return;
                };
                body.local_get(*handle).call(*lend).local_set(*local);
                if let Some(slot) = args.get_mut(*pos) {
                    *slot = *local;
                }
            }
            let mut arg = args.iter();
            if let Some((copy, realloc, size, align)) = tuple_copy {
                let Some(ptr) = arg.next() else {
                    outcome = Err(anyhow!("the caller passes no parameter pointer"));
                    return;
                };
                check_aligned(body, *ptr, align);
                body.i32_const(0).i32_const(0).i32_const(align as i32).i32_const(size as i32).call(realloc);
                body.local_set(params_copy);
                check_aligned(body, params_copy, align);
                body.local_get(*ptr).local_get(params_copy).call(copy);
                body.local_get(params_copy);
            }
            for plan in &plans {
                if let Err(e) = plan.emit(body, &mut arg) {
                    outcome = Err(e);
                    return;
                }
            }
            body.call(callee);
            if copy_result.is_some() {
                body.local_set(area);
            } else if let Some(r) = flat_result {
                body.local_set(r);
            }
            // The callee must have dropped every borrow it was given.
            if let Some(scope) = scope {
                body.global_get(scope).if_else(
                    None,
                    |bad| {
                        bad.unreachable();
                    },
                    |_| {},
                );
                body.local_get(saved_scope).global_set(scope);
                for (pos, _, unlend, _) in &lent {
                    if let Some(handle) = original.get(*pos) {
                        body.local_get(*handle).call(*unlend);
                    }
                }
                for (pos, n, walk) in &unlend_walks {
                    for a in original.iter().skip(*pos).take(*n) {
                        body.local_get(*a);
                    }
                    body.call(*walk);
                }
            }
            if let Some((copy, align)) = copy_result {
                let Some(retptr) = arg.next() else {
                    outcome = Err(anyhow!("the caller passes no return pointer"));
                    return;
                };
                check_aligned(body, area, align);
                check_aligned(body, *retptr, align);
                body.local_get(area).local_get(*retptr).call(copy);
                if let Some(post) = post {
                    body.local_get(area).call(post);
                }
            } else if let Some(r) = flat_result {
                if let Some(convert) = result_handle {
                    body.local_get(r).call(convert).local_set(converted);
                }
                if let Some(post) = post {
                    body.local_get(r).call(post);
                }
                body.local_get(if result_handle.is_some() { converted } else { r });
            } else if let Some(post) = post {
                body.call(post);
            }
        })
        .map_err(|e| anyhow!("{e:#}"))
        .context("failed to build a copying adapter")?;
    outcome
}

/// The `own<T>` a value of `ty` is when it flattens to that one handle
/// (records and tuples of one field unwrapped).
fn single_own(ty: &ValTy) -> Option<&ValTy> {
    match ty {
        ValTy::Own(_) => Some(ty),
        ValTy::Record(fields) | ValTy::Tuple(fields) => match fields.as_slice() {
            [only] => single_own(only),
            _ => None,
        },
        _ => None,
    }
}

/// The walks ending the loans of borrowed handles inside the list `ty` (at
/// flat position `pos`, or inside a record or tuple there): `(position, 2,
/// walk)` over its `(ptr, len)`. Flat borrows themselves are ended by
/// position (`CopyIds::borrows`); borrows inside a flat variant are refused
/// by `merge`.
fn lists_to_unlend(
    module: &mut Module,
    walker: &mut crate::reps_in_place::RepsInPlace,
    ty: &ValTy,
    pos: &mut usize,
    out: &mut Vec<(usize, usize, FunctionId)>,
) -> Result<()> {
    match ty {
        ValTy::List(elem) if elem.has_borrows() => {
            out.push((*pos, 2, walker.list(module, elem)?));
            *pos += 2;
        }
        ValTy::Record(fields) | ValTy::Tuple(fields) => {
            for f in fields {
                lists_to_unlend(module, walker, f, pos, out)?;
            }
        }
        other => {
            if other.has_borrows() && other.has_pointers() {
                bail!("borrowed handles inside a list inside a variant cannot be copied yet");
            }
            let mut flat = Vec::new();
            other.flatten(&mut flat);
            *pos += flat.len();
        }
    }
    Ok(())
}

/// Emit the canonical ABI's flat lifting of one value of `ty` held in
/// `locals` (its flat values, in order), in place: `bool` normalised to 0
/// or 1, 8- and 16-bit integers truncated or sign-extended, unused flag bits
/// masked; a `char` that is a surrogate or past U+10FFFF and a variant or
/// enum discriminant past its cases trap
/// (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#flat-lifting>).
/// A variant's payload is lifted when its flat types are the joined slots'
/// (no conversion between slot and payload types). Returns how many flat
/// values the value takes.
pub(crate) fn lift_flat(body: &mut InstrSeqBuilder<'_>, ty: &ValTy, locals: &[LocalId]) -> usize {
    use crate::types::Prim;
    let mut flat = Vec::new();
    ty.flatten(&mut flat);
    let first = locals.first().copied();
    let trap_if = |b: &mut InstrSeqBuilder<'_>| {
        b.if_else(
            None,
            |bad| {
                bad.unreachable();
            },
            |_| {},
        );
    };
    match (ty, first) {
        (_, None) => {}
        (ValTy::Prim(p), Some(l)) => match p {
            Prim::Bool => {
                body.local_get(l).i32_const(0).binop(BinaryOp::I32Ne).local_set(l);
            }
            Prim::U8 => {
                body.local_get(l).i32_const(0xff).binop(BinaryOp::I32And).local_set(l);
            }
            Prim::U16 => {
                body.local_get(l).i32_const(0xffff).binop(BinaryOp::I32And).local_set(l);
            }
            Prim::S8 => {
                body.local_get(l).unop(walrus::ir::UnaryOp::I32Extend8S).local_set(l);
            }
            Prim::S16 => {
                body.local_get(l).unop(walrus::ir::UnaryOp::I32Extend16S).local_set(l);
            }
            Prim::Char => {
                body.local_get(l).i32_const(0x11_0000).binop(BinaryOp::I32GeU);
                body.local_get(l).i32_const(!0x7ff).binop(BinaryOp::I32And).i32_const(0xd800).binop(BinaryOp::I32Eq);
                body.binop(BinaryOp::I32Or);
                trap_if(body);
            }
            _ => {}
        },
        (ValTy::Record(fields) | ValTy::Tuple(fields), _) => {
            let mut at = 0;
            for f in fields {
                at += lift_flat(body, f, locals.get(at..).unwrap_or_default());
            }
        }
        (ValTy::FixedList(elem, n), _) => {
            let mut at = 0;
            for _ in 0..*n {
                at += lift_flat(body, elem, locals.get(at..).unwrap_or_default());
            }
        }
        (ValTy::Flags(n), _) if n % 32 != 0 => {
            if let Some(last) = locals.get(n.div_ceil(32) - 1).copied() {
                body.local_get(last).i32_const(((1u64 << (n % 32)) - 1) as i32).binop(BinaryOp::I32And).local_set(last);
            }
        }
        (ValTy::Enum(_) | ValTy::Variant(_) | ValTy::Option(_) | ValTy::Result(..), Some(tag)) => {
            let cases = ty.cases().unwrap_or_default();
            body.local_get(tag).i32_const(cases.len() as i32).binop(BinaryOp::I32GeU);
            trap_if(body);
            for (c, case) in cases.iter().enumerate() {
                let Some(case) = case else { continue };
                let mut own = Vec::new();
                case.flatten(&mut own);
                let joined = flat.get(1..1 + own.len());
                let slots = locals.get(1..1 + own.len());
                if joined != Some(own.as_slice()) || !needs_lifting(case) {
                    continue;
                }
                let Some(slots) = slots else { continue };
                body.local_get(tag).i32_const(c as i32).binop(BinaryOp::I32Eq).if_else(
                    None,
                    |then| {
                        lift_flat(then, case, slots);
                    },
                    |_| {},
                );
            }
        }
        _ => {}
    }
    flat.len()
}

/// Whether lifting a flat value of `ty` checks or converts anything.
pub(crate) fn needs_lifting(ty: &ValTy) -> bool {
    use crate::types::Prim;
    match ty {
        ValTy::Prim(p) => matches!(p, Prim::Bool | Prim::U8 | Prim::U16 | Prim::S8 | Prim::S16 | Prim::Char),
        ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().any(needs_lifting),
        ValTy::FixedList(elem, n) => *n > 0 && needs_lifting(elem),
        ValTy::Flags(n) => n % 32 != 0,
        ValTy::Enum(_) | ValTy::Variant(_) | ValTy::Option(_) | ValTy::Result(..) => true,
        _ => false,
    }
}
