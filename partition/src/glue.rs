//! The helper functions partitioned code calls, and the globals they keep.
//!
//! Owns: per partition, `range` (check `[a, a + n)` against the partition's
//! current size, return the physical address), `grow` (the partition's own
//! `memory.grow`), `fill`, and `copy` per pair of partitions. They are
//! requested by index while code is rewritten and generated afterwards.
//!
//! Does not own: inline load/store checks (`rewrite.rs`), the preview1
//! wrappers (`preview1.rs`).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use wasm_encoder::{BlockType, Function, Instruction as I, MemArg, ValType};

use crate::layout::{Layout, Partition};

/// A helper function, by what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Helper {
    /// `(a: i32, n: i64) -> i32`: trap unless `a + n` is within memory
    /// `k`'s current size; the physical address of `a`.
    Range(u32),
    /// `(delta: i32) -> i32`: `memory.grow` of memory `k`.
    Grow(u32),
    /// `(d: i32, v: i32, n: i32)`: `memory.fill` of memory `k`.
    Fill(u32),
    /// `(d: i32, s: i32, n: i32)`: `memory.copy` from memory `src` to `dst`.
    Copy { dst: u32, src: u32 },
}

/// Type indices of the helpers' signatures (appended to the type section).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HelperTypes {
    pub range: u32,
    pub grow: u32,
    pub three: u32,
    pub two_to_one: u32,
}

/// A function signature: parameters, results.
pub(crate) type Signature = (Vec<ValType>, Vec<ValType>);

impl HelperTypes {
    /// The types to append after `existing` types, in order.
    pub(crate) fn new(existing: u32) -> (Self, [Signature; 4]) {
        let types = Self { range: existing, grow: existing + 1, three: existing + 2, two_to_one: existing + 3 };
        let signatures = [
            (vec![ValType::I32, ValType::I64], vec![ValType::I32]),
            (vec![ValType::I32], vec![ValType::I32]),
            (vec![ValType::I32, ValType::I32, ValType::I32], vec![]),
            (vec![ValType::I32, ValType::I32], vec![ValType::I32]),
        ];
        (types, signatures)
    }

    pub(crate) fn of(&self, helper: Helper) -> u32 {
        match helper {
            Helper::Range(_) => self.range,
            Helper::Grow(_) => self.grow,
            Helper::Fill(_) | Helper::Copy { .. } => self.three,
        }
    }
}

/// Helpers handed out so far, with their final function indices.
#[derive(Debug)]
pub(crate) struct Helpers {
    first: u32,
    pub(crate) list: Vec<Helper>,
    index: BTreeMap<Helper, u32>,
}

impl Helpers {
    pub(crate) fn new(first: u32) -> Self {
        Self { first, list: Vec::new(), index: BTreeMap::new() }
    }

    /// The function index of `helper`, allocating it on first use.
    pub(crate) fn get(&mut self, helper: Helper) -> u32 {
        if let Some(index) = self.index.get(&helper) {
            return *index;
        }
        let index = self.first + self.list.len() as u32;
        self.list.push(helper);
        self.index.insert(helper, index);
        index
    }
}

/// The globals added per input memory: its page count (`i32`), its size in
/// bytes (`i64`, what the helpers compare with), and per access width `n`
/// of 1, 2, 4, 8 and 16 bytes the *limit* (`i32`) an inline check compares
/// an address with: the first address at which an `n`-byte access no longer
/// fits, `bytes - n + 1`, or 0 when none fits ([`limit`]).
#[derive(Debug, Clone)]
pub(crate) struct Globals {
    pub(crate) first: u32,
}

/// Globals per memory: pages, bytes, five limits.
pub(crate) const GLOBALS_PER_MEMORY: u32 = 7;
/// The access widths that have a limit.
pub(crate) const WIDTHS: [u32; 5] = [1, 2, 4, 8, 16];

impl Globals {
    pub(crate) fn pages(&self, memory: u32) -> u32 {
        self.first + GLOBALS_PER_MEMORY * memory
    }
    pub(crate) fn bytes(&self, memory: u32) -> u32 {
        self.first + GLOBALS_PER_MEMORY * memory + 1
    }
    /// The limit global of `width`-byte accesses (a power of two up to 16).
    pub(crate) fn limit(&self, memory: u32, width: u32) -> u32 {
        self.first + GLOBALS_PER_MEMORY * memory + 2 + width.trailing_zeros().min(4)
    }
}

/// The limit of `width`-byte accesses in a memory of `bytes` bytes.
pub(crate) fn limit(bytes: u64, width: u32) -> u32 {
    if bytes >= u64::from(width) { (bytes - u64::from(width) + 1) as u32 } else { 0 }
}

pub(crate) fn memarg(offset: u64, align: u32) -> MemArg {
    MemArg { offset, align, memory_index: 0 }
}

fn partition(layout: &Layout, memory: u32) -> Result<&Partition> {
    layout.partition(memory).with_context(|| format!("memory {memory} has no partition"))
}

/// The body of `helper`; may request further helpers.
pub(crate) fn body(helper: Helper, layout: &Layout, globals: &Globals, helpers: &mut Helpers) -> Result<Function> {
    Ok(match helper {
        Helper::Range(k) => {
            let p = partition(layout, k)?;
            let mut f = Function::new([]);
            f.instruction(&I::LocalGet(0))
                .instruction(&I::I64ExtendI32U)
                .instruction(&I::LocalGet(1))
                .instruction(&I::I64Add)
                .instruction(&I::GlobalGet(globals.bytes(k)))
                .instruction(&I::I64GtU)
                .instruction(&I::If(BlockType::Empty))
                .instruction(&I::Unreachable)
                .instruction(&I::End)
                .instruction(&I::LocalGet(0));
            if p.base() != 0 {
                f.instruction(&I::I32Const(p.base() as u32 as i32)).instruction(&I::I32Add);
            }
            f.instruction(&I::End);
            f
        }
        Helper::Grow(k) => grow(partition(layout, k)?, globals),
        Helper::Fill(k) => {
            let range = helpers.get(Helper::Range(k));
            let mut f = Function::new([]);
            f.instruction(&I::LocalGet(0))
                .instruction(&I::LocalGet(2))
                .instruction(&I::I64ExtendI32U)
                .instruction(&I::Call(range))
                .instruction(&I::LocalGet(1))
                .instruction(&I::LocalGet(2))
                .instruction(&I::MemoryFill(0))
                .instruction(&I::End);
            f
        }
        Helper::Copy { dst, src } => {
            let range_dst = helpers.get(Helper::Range(dst));
            let range_src = helpers.get(Helper::Range(src));
            let mut f = Function::new([]);
            f.instruction(&I::LocalGet(0))
                .instruction(&I::LocalGet(2))
                .instruction(&I::I64ExtendI32U)
                .instruction(&I::Call(range_dst))
                .instruction(&I::LocalGet(1))
                .instruction(&I::LocalGet(2))
                .instruction(&I::I64ExtendI32U)
                .instruction(&I::Call(range_src))
                .instruction(&I::LocalGet(2))
                .instruction(&I::MemoryCopy { src_mem: 0, dst_mem: 0 })
                .instruction(&I::End);
            f
        }
    })
}

/// `memory.grow` of one partition. A partition with a quota only moves its
/// own page count (its pages are always there: later partitions start
/// after its quota); the open-ended one grows the memory itself.
fn grow(p: &Partition, globals: &Globals) -> Function {
    let k = p.memory;
    let mut f = Function::new([(1, ValType::I32)]);
    match p.quota_pages {
        Some(quota) => {
            // if pages + delta > quota (in 64 bits) return -1
            f.instruction(&I::GlobalGet(globals.pages(k)))
                .instruction(&I::I64ExtendI32U)
                .instruction(&I::LocalGet(0))
                .instruction(&I::I64ExtendI32U)
                .instruction(&I::I64Add)
                .instruction(&I::I64Const(i64::from(quota)))
                .instruction(&I::I64GtU)
                .instruction(&I::If(BlockType::Empty))
                .instruction(&I::I32Const(-1))
                .instruction(&I::Return)
                .instruction(&I::End)
                .instruction(&I::GlobalGet(globals.pages(k)))
                .instruction(&I::LocalSet(1))
                .instruction(&I::LocalGet(1))
                .instruction(&I::LocalGet(0))
                .instruction(&I::I32Add)
                .instruction(&I::GlobalSet(globals.pages(k)));
        }
        None => {
            // the memory's own grow; its maximum is the partition's
            f.instruction(&I::LocalGet(0))
                .instruction(&I::MemoryGrow(0))
                .instruction(&I::LocalTee(1))
                .instruction(&I::I32Const(-1))
                .instruction(&I::I32Eq)
                .instruction(&I::If(BlockType::Empty))
                .instruction(&I::I32Const(-1))
                .instruction(&I::Return)
                .instruction(&I::End)
                .instruction(&I::LocalGet(1))
                .instruction(&I::I32Const(p.base_pages as i32))
                .instruction(&I::I32Sub)
                .instruction(&I::LocalTee(1))
                .instruction(&I::LocalGet(0))
                .instruction(&I::I32Add)
                .instruction(&I::GlobalSet(globals.pages(k)));
        }
    }
    f.instruction(&I::GlobalGet(globals.pages(k)))
        .instruction(&I::I64ExtendI32U)
        .instruction(&I::I64Const(16))
        .instruction(&I::I64Shl)
        .instruction(&I::GlobalSet(globals.bytes(k)));
    // limits: bytes - n + 1 (the size only grows, so bytes >= n once it did)
    for width in WIDTHS {
        f.instruction(&I::GlobalGet(globals.bytes(k)))
            .instruction(&I::I64Const(i64::from(width)))
            .instruction(&I::I64GeU)
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::GlobalGet(globals.bytes(k)))
            .instruction(&I::I64Const(i64::from(width) - 1))
            .instruction(&I::I64Sub)
            .instruction(&I::I32WrapI64)
            .instruction(&I::GlobalSet(globals.limit(k, width)))
            .instruction(&I::End);
    }
    f.instruction(&I::LocalGet(1)).instruction(&I::End);
    f
}
