//! The value transcoder generator: wasm functions, specialised per type,
//! that move values between Karmem messages and the canonical ABI.
//!
//! Owns: [`Transcoder`], which adds to a walrus module
//! - readers (`read.rs`): a Karmem message (FORMAT.md) in, the canonical
//!   ABI's memory representation out, lists and strings allocated with the
//!   guest's `cabi_realloc`; every offset and length is bounds-checked and
//!   every `bool`, `char`, enum value, flag bit, discriminant and union tag is
//!   checked, and any failure traps;
//! - writers (`write.rs`): the canonical ABI's memory representation in, a
//!   Karmem message out, built in a growable buffer; floats are
//!   NaN-canonicalised, `char`s and discriminants checked as the canonical
//!   ABI's lifting does;
//! - the string transcoders between UTF-8, UTF-16 and `latin1+utf16`
//!   (`strings.rs`), written in wasm so the module needs no host help;
//! - the runtime both share: the input and output globals, bounds checks,
//!   the output allocator, and a static area holding zero bytes and field
//!   defaults that absent fields and missing SoA columns are read from.
//!
//! Code shape (like wasmtime's adapter compiler): a type's code is emitted
//! inline at its use while its estimated size stays within
//! [`TranscodeOptions::inline_budget`]; larger types, and every dynamic
//! struct, union and array, get one helper function per type and direction,
//! shared by all uses. Runs of primitives whose bytes are the same in both
//! representations (`list<u8>`, `string`, `list<u32>`, fixed arrays of
//! integers) are copied with `memory.copy`.
//!
//! Memories: messages, the statics and the output buffer live in the
//! message memory (`Env::memory`); canonical values in the guest memory of
//! the function at hand ([`Transcoder::set_boundary`]), except a message
//! root that sits in the adapter's scratch area ([`Transcoder::set_place`]).
//! With a Karmem edge memory these differ and the code reads one and writes
//! the other (`memory.copy` across the two); in one memory they coincide
//! and the code is the same as without them.
//!
//! Does not own: the byte layout (`karmem-format`), the canonical shapes
//! (`canon`), flat values and the entry points (`abi`).

mod bunch;
pub(crate) mod read;
mod strings;
mod write;

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use karmem_format::layout::{ArrayForm, Kind, Layout, TypeId};
use karmem_idl::ast::{Literal, Prim};
use walrus::ir::{BinaryOp, InstrSeqId, UnaryOp, Value};
use walrus::{ConstExpr, FunctionBuilder, FunctionId, GlobalId, LocalId, MemoryId, Module, ValType};

use crate::asm::{self, Width};
use crate::canon::{AbiType, StringEncoding, abi_type};

/// Canonical NaNs (the canonical ABI's `CANONICAL_FLOAT32_NAN` / `..64_NAN`).
pub const CANONICAL_NAN32: u32 = 0x7fc0_0000;
pub const CANONICAL_NAN64: u64 = 0x7ff8_0000_0000_0000;

/// The memory and functions of the module the generated code uses.
#[derive(Debug, Clone, Copy)]
pub struct Env {
    /// The message memory: messages in and out, the static area, the
    /// output buffer and everything `alloc` hands out. Guest values live
    /// here too unless [`Transcoder::set_boundary`] names another memory
    /// (a Karmem edge memory, docs/ABI.md §2).
    pub memory: MemoryId,
    /// The guest's `cabi_realloc(old_ptr, old_size, align, new_size) -> ptr`.
    pub realloc: FunctionId,
    /// The adapter allocator, `(size, align) -> ptr` (`KarmemAlloc`).
    pub alloc: FunctionId,
    /// Its free, `(ptr, size, align)` (`KarmemFree`).
    pub free: FunctionId,
}

/// The decode limit's fixed part (docs/ABI.md §7): the guest memory the
/// readers may allocate for one message, before the per-byte allowance.
pub const DECODE_BASE_LIMIT: u32 = 16 << 20;
/// The decode limit's allowance per byte of the message (docs/ABI.md §7).
pub const DECODE_LIMIT_PER_BYTE: u32 = 8;

/// How much guest memory decoding one message may allocate:
/// `base + per_byte × message length` bytes (docs/ABI.md §7). Lists count
/// `length × element size` (at least one byte per element), strings their
/// worst-case transcoded size. Past it the reader traps, so a small hostile
/// message cannot make the guest allocate without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimit {
    pub base: u32,
    pub per_byte: u32,
}

impl Default for DecodeLimit {
    fn default() -> Self {
        DecodeLimit { base: DECODE_BASE_LIMIT, per_byte: DECODE_LIMIT_PER_BYTE }
    }
}

/// Knobs of the generated code.
#[derive(Debug, Clone, Copy)]
pub struct TranscodeOptions {
    /// The guest's canonical `string-encoding`.
    pub string_encoding: StringEncoding,
    /// Estimated instruction count up to which a type is emitted inline at
    /// its use (a heuristic, like wasmtime's adapter compiler's).
    pub inline_budget: u32,
    /// Guest memory a message's decoding may allocate.
    pub decode_limit: DecodeLimit,
}

impl Default for TranscodeOptions {
    fn default() -> Self {
        TranscodeOptions { string_encoding: StringEncoding::Utf8, inline_budget: 48, decode_limit: DecodeLimit::default() }
    }
}

/// Globals and helper functions shared by all generated code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Runtime {
    /// Absolute address and length of the message being read.
    pub in_base: GlobalId,
    pub in_len: GlobalId,
    /// The message being written: buffer address, bytes used, capacity.
    pub out_base: GlobalId,
    pub out_len: GlobalId,
    pub out_cap: GlobalId,
    /// Non-zero while the output buffer is a fixed region (an interface
    /// memory): growing it traps instead of reallocating.
    pub out_fixed: GlobalId,
    /// Address of the static data (the empty message, then defaults).
    pub statics: GlobalId,
    /// Address of the zero area (absent fields, missing columns).
    pub zeros: GlobalId,
    /// `(offset, size, align) -> address`: an object of the input message.
    pub in_obj: FunctionId,
    /// `(offset, count, elem_size) -> address`: an array block of the input.
    pub in_block: FunctionId,
    /// `(size, align) -> offset`: zeroed space in the output message.
    pub out_alloc: FunctionId,
    /// Bytes the reader may still allocate for the message being read (i64).
    pub budget: GlobalId,
    /// `(bytes: i64)`: take bytes from `budget`, trapping when it runs out.
    pub charge: FunctionId,
}

/// Where the static area's parts are.
#[derive(Debug, Default)]
struct Statics {
    /// Bytes after the zero area: the empty message, then field defaults.
    bytes: Vec<u8>,
    /// Size of the zero area at the start (the largest inline size read).
    zero_size: u32,
}


/// The generator. Create it on a module, ask for message readers and writers,
/// then [`Transcoder::finish`] to get the init function.
#[derive(Debug)]
pub struct Transcoder<'a> {
    pub(crate) module: &'a mut Module,
    pub(crate) layout: &'a Layout,
    pub(crate) env: Env,
    pub(crate) options: TranscodeOptions,
    pub(crate) rt: Runtime,
    /// The guest memory of the function whose messages come next: where
    /// its lists and strings are allocated (with `env.realloc`).
    pub(crate) guest: MemoryId,
    /// The memory the canonical value being transcoded sits in (a reader's
    /// destination, a writer's source): a message's root may sit in the
    /// adapter's scratch area in the message memory, while the elements of
    /// its lists always sit in `guest`. In one memory all three are the same.
    pub(crate) place: MemoryId,
    shapes: HashMap<TypeId, AbiType>,
    statics: Statics,
    /// Helper functions already generated, by role, type and the canonical
    /// options that shape their code: string encoding, realloc, guest
    /// memory, and the memory the value sits in.
    helpers: HashMap<HelperKey, FunctionId>,
    /// String transcoders by (name, memory read, memory written).
    string_helpers: HashMap<(&'static str, MemoryId, MemoryId), FunctionId>,
    /// Default bytes already placed, by (type, literal text).
    defaults: HashMap<(TypeId, String), u32>,
}

/// (role, type, string encoding, realloc, guest memory, value memory).
type HelperKey = (Role, TypeId, StringEncoding, FunctionId, MemoryId, MemoryId);

/// What a helper function does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// `(src, dst)`: inline Karmem value -> canonical memory.
    Read,
    /// `(offset, dst)`: dynamic struct body -> canonical record.
    ReadBody,
    /// `(tag_addr, payload_addr, dst)`: union -> canonical variant.
    ReadUnion,
    /// `(slot_addr, dst)`: array slot -> canonical list.
    ReadList,
    /// `(src, dst_offset)`: canonical memory -> inline Karmem value.
    Write,
    /// `(src) -> offset`: canonical record -> new dynamic struct body.
    WriteBody,
    /// `(src, tag_offset, payload_offset)`: canonical variant -> union.
    WriteUnion,
    /// `(src, slot_offset)`: canonical list -> array.
    WriteList,
}

impl<'a> Transcoder<'a> {
    /// Adds the runtime to `module`.
    pub fn new(module: &'a mut Module, layout: &'a Layout, env: Env, options: TranscodeOptions) -> Transcoder<'a> {
        let rt = runtime(module, env);
        Transcoder {
            module,
            layout,
            env,
            options,
            rt,
            guest: env.memory,
            place: env.memory,
            shapes: HashMap::new(),
            statics: Statics { bytes: vec![0x0C, 0, 0, 0, 0, 0, 0, 0], zero_size: 16 },
            helpers: HashMap::new(),
            string_helpers: HashMap::new(),
            defaults: HashMap::new(),
        }
    }

    /// Sets the canonical options of the function whose messages come next:
    /// its `string-encoding`, the `cabi_realloc` its lists and strings are
    /// allocated with, and the guest memory they live in (the lowering
    /// records all three per function). Its values' roots sit in `guest`
    /// until [`Transcoder::set_place`] says otherwise.
    pub fn set_boundary(&mut self, string_encoding: StringEncoding, realloc: FunctionId, guest: MemoryId) {
        self.options.string_encoding = string_encoding;
        self.env.realloc = realloc;
        self.guest = guest;
        self.place = guest;
    }

    /// Sets the memory the roots of the next readers' and writers' values
    /// sit in: the guest memory (a parameter area, a return area) or the
    /// message memory (the adapter's scratch area for flat values).
    pub fn set_place(&mut self, place: MemoryId) {
        self.place = place;
    }


    /// Checks that `ty` can be transcoded: it has a canonical shape, and its
    /// arrays and defaults are ones the generator supports.
    pub fn check(&mut self, ty: TypeId) -> Result<()> {
        let mut seen = Vec::new();
        self.check_type(ty, &mut seen)
    }

    fn check_type(&mut self, ty: TypeId, seen: &mut Vec<TypeId>) -> Result<()> {
        if seen.contains(&ty) {
            return Ok(());
        }
        seen.push(ty);
        let shape = abi_type(self.layout, ty)?;
        self.shapes.insert(ty, shape);
        let layout = self.layout;
        match &layout.get(ty).kind {
            Kind::Prim(_) | Kind::Handle { .. } | Kind::Enum(_) | Kind::Flags(_) | Kind::String { .. } => {}
            Kind::Struct(s) => {
                for f in &s.fields {
                    self.check_type(f.ty, seen)?;
                    if let Some(lit) = &f.default {
                        default_bytes(layout, f.ty, lit)
                            .with_context(|| format!("default of field `{}.{}`", s.name, f.name))?;
                    }
                }
            }
            Kind::Union(u) => {
                for ty in u.cases.iter().filter_map(|c| c.ty) {
                    self.check_type(ty, seen)?;
                }
            }
            Kind::Array { elem, form } => {
                if let ArrayForm::Bunch { .. } = form
                    && !matches!(layout.get(*elem).kind, Kind::Union(_))
                {
                    bail!("a `#bovoa`/`#bovos` array of `{}`, which is not a union", layout.signature(*elem));
                }
                self.check_type(*elem, seen)?;
            }
            Kind::FixedArray { elem, .. } | Kind::Option { some: elem, .. } => self.check_type(*elem, seen)?,
            Kind::Result { ok, err, .. } => {
                for ty in ok.iter().chain(err) {
                    self.check_type(*ty, seen)?;
                }
            }
        }
        Ok(())
    }

    /// The canonical shape of a checked type.
    pub(crate) fn shape(&mut self, ty: TypeId) -> AbiType {
        if let Some(shape) = self.shapes.get(&ty) {
            return shape.clone();
        }
        // `check` computed the shape of every type reachable from a root,
        // and only those reach the generators.
        let shape = abi_type(self.layout, ty).unwrap_or(AbiType::Tuple(Vec::new()));
        self.shapes.insert(ty, shape.clone());
        shape
    }

    /// A function `(msg_ptr, msg_len, dst)` that checks the message framing
    /// and writes the canonical representation of its root (of type `root`)
    /// at `dst`. The empty buffer is the empty message.
    pub fn message_reader(&mut self, root: TypeId) -> Result<FunctionId> {
        self.check(root)?;
        let m = self.env.memory;
        let rt = self.rt;
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32; 3], &[]);
        f.name(format!("karmem read {}", self.layout.signature(root)));
        let ptr = self.module.locals.add(ValType::I32);
        let len = self.module.locals.add(ValType::I32);
        let dst = self.module.locals.add(ValType::I32);
        let root_at = self.module.locals.add(ValType::I32);
        let body = f.func_body_id();
        self.begin_read(&mut f, body, ptr, len);
        {
            let mut b = f.instr_seq(body);
            b.global_get(rt.in_base);
            asm::load(&mut b, m, Width::I32, 4);
            b.local_set(root_at);
        }
        if self.layout.is_dynamic_struct(root) {
            let reader = self.helper(Role::ReadBody, root);
            f.instr_seq(body).local_get(root_at).local_get(dst).call(reader);
        } else {
            let size = self.layout.get(root).size;
            let src = self.module.locals.add(ValType::I32);
            f.instr_seq(body)
                .local_get(root_at)
                .i32_const(size as i32)
                .i32_const(8)
                .call(rt.in_obj)
                .local_set(src);
            self.read_inline(&mut f, body, root, src, 0, dst, 0);
        }
        Ok(f.finish(vec![ptr, len, dst], &mut self.module.funcs))
    }

    /// Emits the framing checks of an input message and sets `in_base` and
    /// `in_len`: a zero-length buffer is the empty message; otherwise the
    /// buffer holds at least the 8-byte header whose first word is `0xC`.
    pub(crate) fn begin_read(&mut self, f: &mut FunctionBuilder, seq: InstrSeqId, ptr: LocalId, len: LocalId) {
        let m = self.env.memory;
        let rt = self.rt;
        f.instr_seq(seq).local_get(len).unop(UnaryOp::I32Eqz);
        let (empty, full) = asm::if_else(f, seq);
        // The empty message is the first static data.
        f.instr_seq(empty)
            .global_get(rt.statics)
            .global_set(rt.in_base)
            .i32_const(8)
            .global_set(rt.in_len);
        f.instr_seq(full).local_get(len).i32_const(8).binop(BinaryOp::I32LtU);
        asm::trap_if(f, full);
        {
            let mut b = f.instr_seq(full);
            b.local_get(ptr);
            asm::load(&mut b, m, Width::I32, 0);
            b.i32_const(karmem_format::raw::MESSAGE_HEADER_WORD as i32).binop(BinaryOp::I32Ne);
        }
        asm::trap_if(f, full);
        f.instr_seq(full).local_get(ptr).global_set(rt.in_base).local_get(len).global_set(rt.in_len);
        // the decode limit of this message: base + per_byte * len
        let limit = self.options.decode_limit;
        let mut b = f.instr_seq(seq);
        b.local_get(len);
        asm::widen(&mut b);
        b.i64_const(i64::from(limit.per_byte)).binop(BinaryOp::I64Mul);
        b.i64_const(i64::from(limit.base)).binop(BinaryOp::I64Add).global_set(rt.budget);
    }

    /// Emits: charge the i64 on the stack to the decode limit.
    pub(crate) fn charge(&self, b: &mut walrus::InstrSeqBuilder) {
        b.call(self.rt.charge);
    }

    /// A function `(src) -> i64` that writes a message whose root (of type
    /// `root`) is the canonical value at `src`, and returns it as a packed
    /// buffer `(len << 32) | ptr`. The buffer is the adapter's output buffer:
    /// valid until the next message is written.
    pub fn message_writer(&mut self, root: TypeId) -> Result<FunctionId> {
        self.check(root)?;
        let rt = self.rt;
        let mut f = FunctionBuilder::new(&mut self.module.types, &[ValType::I32], &[ValType::I64]);
        f.name(format!("karmem write {}", self.layout.signature(root)));
        let src = self.module.locals.add(ValType::I32);
        let root_at = self.module.locals.add(ValType::I32);
        let body = f.func_body_id();
        self.begin_write(&mut f, body);
        if self.layout.is_dynamic_struct(root) {
            let writer = self.helper(Role::WriteBody, root);
            f.instr_seq(body).local_get(src).call(writer).local_set(root_at);
        } else {
            let size = self.layout.get(root).size;
            if size == 0 {
                f.instr_seq(body).i32_const(0).local_set(root_at);
            } else {
                f.instr_seq(body).i32_const(size as i32).i32_const(8).call(rt.out_alloc).local_set(root_at);
            }
            self.write_inline(&mut f, body, root, src, 0, root_at, 0);
        }
        self.end_write(&mut f, body, root_at);
        Ok(f.finish(vec![src], &mut self.module.funcs))
    }

    /// Emits: start a new output message (header word, root 0).
    pub(crate) fn begin_write(&mut self, f: &mut FunctionBuilder, seq: InstrSeqId) {
        let m = self.env.memory;
        let rt = self.rt;
        let mut b = f.instr_seq(seq);
        b.i32_const(0).global_set(rt.out_len).i32_const(8).i32_const(8).call(rt.out_alloc).drop();
        b.global_get(rt.out_base).i32_const(karmem_format::raw::MESSAGE_HEADER_WORD as i32);
        asm::store(&mut b, m, Width::I32, 0);
    }

    /// Emits: store the root offset and push the packed message buffer.
    pub(crate) fn end_write(&mut self, f: &mut FunctionBuilder, seq: InstrSeqId, root_at: LocalId) {
        let m = self.env.memory;
        let rt = self.rt;
        let mut b = f.instr_seq(seq);
        b.global_get(rt.out_base).local_get(root_at);
        asm::store(&mut b, m, Width::I32, 4);
        b.global_get(rt.out_len);
        asm::widen(&mut b);
        b.i64_const(32).binop(BinaryOp::I64Shl).global_get(rt.out_base);
        asm::widen(&mut b);
        b.binop(BinaryOp::I64Or);
    }

    /// The helper function of `role` for `ty`, generated on first use.
    pub(crate) fn helper(&mut self, role: Role, ty: TypeId) -> FunctionId {
        let key = (role, ty, self.options.string_encoding, self.env.realloc, self.guest, self.place);
        if let Some(&id) = self.helpers.get(&key) {
            return id;
        }
        let id = match role {
            Role::Read => self.gen_read_fn(ty),
            Role::ReadBody => self.gen_read_body(ty),
            Role::ReadUnion => self.gen_read_union(ty),
            Role::ReadList => self.gen_read_list(ty),
            Role::Write => self.gen_write_fn(ty),
            Role::WriteBody => self.gen_write_body(ty),
            Role::WriteUnion => self.gen_write_union(ty),
            Role::WriteList => self.gen_write_list(ty),
        };
        self.helpers.insert(key, id);
        id
    }

    /// Estimated instruction count of `ty`'s code emitted inline.
    pub(crate) fn inline_cost(&self, ty: TypeId) -> u32 {
        let layout = self.layout;
        match &layout.get(ty).kind {
            Kind::Prim(Prim::Bool | Prim::Char | Prim::F32 | Prim::F64) => 12,
            Kind::Prim(_) | Kind::Handle { .. } => 5,
            Kind::Enum(e) => 12 + 6 * e.cases.len() as u32,
            Kind::Flags(f) => 12 * (f.flags.len() as u32).div_ceil(32).max(1),
            Kind::Struct(s) if !s.dynamic => s.fields.iter().map(|f| self.inline_cost(f.ty)).fold(0, u32::saturating_add),
            Kind::FixedArray { elem, len } if bulk_width(layout, *elem).is_some() || *len > 4 => {
                let _ = elem;
                16
            }
            Kind::FixedArray { elem, len } => self.inline_cost(*elem).saturating_mul(*len),
            Kind::Option { some, .. } => 16u32.saturating_add(self.inline_cost(*some)),
            Kind::Result { ok, err, .. } => {
                let payload = ok.iter().chain(err).map(|t| self.inline_cost(*t)).fold(0, u32::saturating_add);
                20u32.saturating_add(payload)
            }
            // Always a call.
            Kind::Struct(_) | Kind::Union(_) | Kind::Array { .. } | Kind::String { .. } => 6,
        }
    }

    /// Whether `ty` is emitted inline at its uses (else through its helper).
    pub(crate) fn inlines(&self, ty: TypeId) -> bool {
        let always_call = matches!(
            self.layout.get(ty).kind,
            Kind::Struct(ref s) if s.dynamic
        ) || matches!(self.layout.get(ty).kind, Kind::Union(_) | Kind::Array { .. } | Kind::String { .. });
        !always_call && self.inline_cost(ty) <= self.options.inline_budget
    }

    /// Where the inline bytes an absent field of type `ty` reads as live:
    /// its default literal's bytes, else zeros.
    pub(crate) fn default_at(&mut self, ty: TypeId, default: Option<&Literal>) -> StaticRef {
        let size = self.layout.get(ty).size;
        self.statics.zero_size = self.statics.zero_size.max(size.next_multiple_of(8));
        let Some(lit) = default else { return StaticRef::Zeros };
        let key = (ty, format!("{lit:?}"));
        if let Some(&at) = self.defaults.get(&key) {
            return StaticRef::Data(at);
        }
        // `check` accepted this literal.
        let bytes = default_bytes(self.layout, ty, lit).unwrap_or_default();
        let at = self.statics.bytes.len() as u32;
        self.statics.bytes.extend_from_slice(&bytes);
        while !self.statics.bytes.len().is_multiple_of(8) {
            self.statics.bytes.push(0);
        }
        self.defaults.insert(key, at);
        StaticRef::Data(at)
    }

    /// Emits: push the address of a static-area part.
    pub(crate) fn push_static(&self, f: &mut FunctionBuilder, seq: InstrSeqId, at: StaticRef) {
        let mut b = f.instr_seq(seq);
        match at {
            StaticRef::Zeros => {
                b.global_get(self.rt.zeros);
            }
            StaticRef::Data(offset) => {
                b.global_get(self.rt.statics);
                if offset != 0 {
                    b.i32_const(offset as i32).binop(BinaryOp::I32Add);
                }
            }
        }
    }

    /// Finishes generation: returns the init function `() -> ()` that
    /// allocates the static area (with the adapter allocator) and fills it.
    /// It must run once before any reader.
    pub fn finish(self) -> FunctionId {
        let m = self.env.memory;
        let rt = self.rt;
        let data = self.statics.bytes;
        let data_len = data.len() as u32;
        let total = data_len + self.statics.zero_size;
        let mut f = FunctionBuilder::new(&mut self.module.types, &[], &[]);
        f.name("karmem statics init".to_string());
        let body = f.func_body_id();
        let mut b = f.instr_seq(body);
        b.i32_const(total as i32).i32_const(64).call(self.env.alloc).global_set(rt.statics);
        b.global_get(rt.statics).i32_const(0).i32_const(total as i32).memory_fill(m);
        b.global_get(rt.statics).i32_const(data_len as i32).binop(BinaryOp::I32Add).global_set(rt.zeros);
        for (i, chunk) in data.chunks(8).enumerate() {
            let word = chunk.iter().rev().fold(0u64, |word, byte| (word << 8) | u64::from(*byte));
            if word != 0 {
                b.global_get(rt.statics).i64_const(word as i64);
                asm::store(&mut b, m, Width::I64, 8 * i as u32);
            }
        }
        f.finish(Vec::new(), &mut self.module.funcs)
    }
}

/// A part of the static area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StaticRef {
    /// The zero bytes (as large as the largest inline type read).
    Zeros,
    /// Bytes at this offset of the static data (the empty message at 0).
    Data(u32),
}

/// Adds the runtime globals and functions.
fn runtime(module: &mut Module, env: Env) -> Runtime {
    let m = env.memory;
    let mut global = |name: &str| {
        let id = module.globals.add_local(ValType::I32, true, false, ConstExpr::Value(Value::I32(0)));
        module.globals.get_mut(id).name = Some(format!("karmem {name}"));
        id
    };
    let in_base = global("in_base");
    let in_len = global("in_len");
    let out_base = global("out_base");
    let out_len = global("out_len");
    let out_cap = global("out_cap");
    let out_fixed = global("out_fixed");
    let statics = global("statics");
    let zeros = global("zeros");

    // in_obj(offset, size, align) -> address
    let in_obj = {
        let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I32; 3], &[ValType::I32]);
        f.name("karmem in_obj".to_string());
        let [off, size, align] = [(); 3].map(|_| module.locals.add(ValType::I32));
        let body = f.func_body_id();
        f.instr_seq(body)
            .local_get(off)
            .local_get(align)
            .i32_const(1)
            .binop(BinaryOp::I32Sub)
            .binop(BinaryOp::I32And);
        asm::trap_if(&mut f, body);
        in_bounds_check(&mut f, body, off, |b| {
            b.local_get(size);
            asm::widen(b);
        }, in_len);
        f.instr_seq(body).global_get(in_base).local_get(off).binop(BinaryOp::I32Add);
        f.finish(vec![off, size, align], &mut module.funcs)
    };

    // in_block(offset, count, elem_size) -> address
    let in_block = {
        let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I32; 3], &[ValType::I32]);
        f.name("karmem in_block".to_string());
        let [off, count, elem] = [(); 3].map(|_| module.locals.add(ValType::I32));
        let bytes = module.locals.add(ValType::I64);
        let body = f.func_body_id();
        {
            let mut b = f.instr_seq(body);
            b.local_get(count);
            asm::widen(&mut b);
            b.local_get(elem);
            asm::widen(&mut b);
            b.binop(BinaryOp::I64Mul).local_tee(bytes).unop(UnaryOp::I64Eqz);
        }
        let empty = asm::if_(&mut f, body);
        f.instr_seq(empty).global_get(in_base).return_();
        f.instr_seq(body).local_get(off).i32_const(63).binop(BinaryOp::I32And);
        asm::trap_if(&mut f, body);
        in_bounds_check(&mut f, body, off, |b| {
            b.local_get(bytes);
        }, in_len);
        f.instr_seq(body).global_get(in_base).local_get(off).binop(BinaryOp::I32Add);
        f.finish(vec![off, count, elem], &mut module.funcs)
    };

    // out_alloc(size, align) -> offset: zeroed, growing the buffer by doubling.
    let out_alloc = {
        let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I32; 2], &[ValType::I32]);
        f.name("karmem out_alloc".to_string());
        let [size, align, off, new_base] = [(); 4].map(|_| module.locals.add(ValType::I32));
        let [end, cap] = [(); 2].map(|_| module.locals.add(ValType::I64));
        let body = f.func_body_id();
        {
            let mut b = f.instr_seq(body);
            // off = align_up(out_len, align)
            b.global_get(out_len)
                .local_get(align)
                .binop(BinaryOp::I32Add)
                .i32_const(1)
                .binop(BinaryOp::I32Sub)
                .i32_const(0)
                .local_get(align)
                .binop(BinaryOp::I32Sub)
                .binop(BinaryOp::I32And)
                .local_set(off);
            b.local_get(off);
            asm::widen(&mut b);
            b.local_get(size);
            asm::widen(&mut b);
            b.binop(BinaryOp::I64Add).local_tee(end);
            // A message is at most 4 GiB - 1 (and the rounding must not wrap).
            b.i64_const(u32::MAX as i64).binop(BinaryOp::I64GtU);
            b.local_get(off).global_get(out_len).binop(BinaryOp::I32LtU).binop(BinaryOp::I32Or);
        }
        asm::trap_if(&mut f, body);
        {
            let mut b = f.instr_seq(body);
            b.local_get(end).global_get(out_cap);
            asm::widen(&mut b);
            b.binop(BinaryOp::I64GtU);
        }
        let grow = asm::if_(&mut f, body);
        // a message placed in an interface memory must fit its region
        f.instr_seq(grow).global_get(out_fixed);
        asm::trap_if(&mut f, grow);
        {
            let mut b = f.instr_seq(grow);
            // cap = max(end, 2 * out_cap, 1024), at most 4 GiB - 1
            b.global_get(out_cap);
            asm::widen(&mut b);
            b.i64_const(1).binop(BinaryOp::I64Shl).local_tee(cap).local_get(end).local_get(cap).local_get(end);
            b.binop(BinaryOp::I64GtU).select(None).local_set(cap);
            b.i64_const(1024).local_get(cap).local_get(cap).i64_const(1024).binop(BinaryOp::I64LtU);
            b.select(None).local_set(cap);
            b.i64_const(u32::MAX as i64)
                .local_get(cap)
                .local_get(cap)
                .i64_const(u32::MAX as i64)
                .binop(BinaryOp::I64GtU)
                .select(None)
                .local_set(cap);
            b.local_get(cap).unop(UnaryOp::I32WrapI64).i32_const(64).call(env.alloc).local_set(new_base);
            b.local_get(new_base).global_get(out_base).global_get(out_len).memory_copy(m, m);
            b.global_get(out_cap);
        }
        let had = asm::if_(&mut f, grow);
        f.instr_seq(had).global_get(out_base).global_get(out_cap).i32_const(64).call(env.free);
        {
            let mut b = f.instr_seq(grow);
            b.local_get(new_base).global_set(out_base);
            b.local_get(cap).unop(UnaryOp::I32WrapI64).global_set(out_cap);
        }
        {
            let mut b = f.instr_seq(body);
            // zero [out_len, end): padding before `off` and the object itself
            b.global_get(out_base).global_get(out_len).binop(BinaryOp::I32Add).i32_const(0);
            b.local_get(end).unop(UnaryOp::I32WrapI64).global_get(out_len).binop(BinaryOp::I32Sub).memory_fill(m);
            b.local_get(end).unop(UnaryOp::I32WrapI64).global_set(out_len);
            b.local_get(off);
        }
        f.finish(vec![size, align], &mut module.funcs)
    };

    let budget = module.globals.add_local(ValType::I64, true, false, ConstExpr::Value(Value::I64(0)));
    module.globals.get_mut(budget).name = Some("karmem decode_budget".to_string());
    // charge(bytes: i64): budget -= bytes, trapping when it goes below 0
    let charge = {
        let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I64], &[]);
        f.name("karmem charge".to_string());
        let bytes = module.locals.add(ValType::I64);
        let body = f.func_body_id();
        f.instr_seq(body)
            .global_get(budget)
            .local_get(bytes)
            .binop(BinaryOp::I64Sub)
            .global_set(budget)
            .global_get(budget)
            .i64_const(0)
            .binop(BinaryOp::I64LtS);
        asm::trap_if(&mut f, body);
        f.finish(vec![bytes], &mut module.funcs)
    };

    Runtime {
        in_base,
        in_len,
        out_base,
        out_len,
        out_cap,
        out_fixed,
        statics,
        zeros,
        in_obj,
        in_block,
        out_alloc,
        budget,
        charge,
    }
}

/// Emits: trap unless `off + <extent pushed by push_extent, i64>` <= `in_len`.
fn in_bounds_check(
    f: &mut FunctionBuilder,
    seq: InstrSeqId,
    off: LocalId,
    push_extent: impl FnOnce(&mut walrus::InstrSeqBuilder),
    in_len: GlobalId,
) {
    let mut b = f.instr_seq(seq);
    b.local_get(off);
    asm::widen(&mut b);
    push_extent(&mut b);
    b.binop(BinaryOp::I64Add).global_get(in_len);
    asm::widen(&mut b);
    b.binop(BinaryOp::I64GtU);
    asm::trap_if(f, seq);
}

/// The load/store width of a type whose Karmem and canonical bytes are the
/// same for every value, so runs of it can be copied with `memory.copy`;
/// `None` for types that need a check or conversion per value.
pub(crate) fn bulk_width(layout: &Layout, ty: TypeId) -> Option<Width> {
    match &layout.get(ty).kind {
        Kind::Prim(p) => match p {
            Prim::U8 | Prim::I8 => Some(Width::U8),
            Prim::U16 | Prim::I16 => Some(Width::U16),
            Prim::U32 | Prim::I32 => Some(Width::I32),
            Prim::U64 | Prim::I64 => Some(Width::I64),
            // floats are NaN-canonicalised, bool and char checked
            Prim::F32 | Prim::F64 | Prim::Bool | Prim::Char => None,
        },
        Kind::Handle { .. } => Some(Width::I32),
        _ => None,
    }
}

/// The width of a primitive's loads and stores.
pub(crate) fn prim_width(p: Prim) -> Width {
    match p {
        Prim::U8 | Prim::I8 | Prim::Bool => Width::U8,
        Prim::U16 | Prim::I16 => Width::U16,
        Prim::U32 | Prim::I32 | Prim::Char => Width::I32,
        Prim::U64 | Prim::I64 => Width::I64,
        Prim::F32 => Width::F32,
        Prim::F64 => Width::F64,
    }
}

/// The inline bytes of a default literal; only scalars and enum cases have
/// one the adapters can place (a string default would need message bytes).
pub(crate) fn default_bytes(layout: &Layout, ty: TypeId, lit: &Literal) -> Result<Vec<u8>> {
    let size = layout.get(ty).size as usize;
    let int = |v: i128| -> Vec<u8> { v.to_le_bytes().into_iter().take(size).collect() };
    Ok(match (&layout.get(ty).kind, lit) {
        (Kind::Prim(Prim::F32), Literal::Float(v)) => (*v as f32).to_le_bytes().to_vec(),
        (Kind::Prim(Prim::F64), Literal::Float(v)) => v.to_le_bytes().to_vec(),
        (Kind::Prim(Prim::F32), Literal::Int(v)) => (*v as f32).to_le_bytes().to_vec(),
        (Kind::Prim(Prim::F64), Literal::Int(v)) => (*v as f64).to_le_bytes().to_vec(),
        (Kind::Prim(Prim::Bool), Literal::Bool(v)) => vec![u8::from(*v)],
        (Kind::Prim(Prim::Char), Literal::Char(c)) => (*c as u32).to_le_bytes().to_vec(),
        (Kind::Prim(_) | Kind::Handle { .. }, Literal::Int(v)) => int(*v),
        (Kind::Enum(e), Literal::Name(name)) => match e.cases.iter().find(|(case, _)| *case == name.name) {
            Some((_, value)) => int(*value as i128),
            None => bail!("`{}` is not a case of enum `{}`", name.name, e.name),
        },
        (kind, lit) => bail!("the adapters cannot place a default {lit:?} of {kind:?} yet"),
    })
}
