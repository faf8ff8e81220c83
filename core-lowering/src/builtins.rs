//! Canonical builtins as generated wasm: one handle table per resource.
//!
//! Owns: the handle table layout and the code of `resource.new`,
//! `resource.rep` and `resource.drop` for resources the component defines
//! (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#canon-resourcenew>).
//! Leaves deciding which placeholder import becomes which builtin to `link`.
//!
//! Layout: a resource's table is an array of 16-byte entries in linear
//! memory (`rep: i32`, `state: i32`, `lends: i32`, `lender: i32`). State
//! 0 is free (then `rep` holds the next free index), 1 an own handle, 2 a
//! borrow handle. Index 0 is reserved, so a handle is never 0. Freed
//! entries go on a free list. The array lives in pages the table obtains
//! with `memory.grow` and doubles when full (the old pages are left
//! behind: tables only grow). Misuse (index 0, out of range, a free entry)
//! traps with `unreachable`.
//!
//! Borrows (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#borrow-handles>):
//! `lends` counts the calls a handle is lent to right now; dropping an
//! own handle whose `lends` is not 0 traps. A borrow lent to a component
//! that does not define the resource becomes a fresh borrow entry (`rep`
//! copied, `lender` the lent handle); the global `scope` counts the borrow
//! entries the running call still holds: dropping one decrements it, and a
//! call that returns with `scope` not 0 traps (the callee must drop every
//! borrow it was given). Adapters save `scope`, zero it for the callee and
//! restore it after, so nested calls each get their own count; one `scope`
//! serves every table, as the canonical ABI counts borrows per call.

use walrus::ir::{BinaryOp, LoadKind, MemArg, StoreKind, Value};
use walrus::{ConstExpr, FunctionBuilder, FunctionId, GlobalId, LocalId, MemoryId, Module, ValType};

/// Bytes per handle table entry.
const ENTRY_SIZE: i32 = 16;
/// Entries of a table's first allocation: exactly one wasm page.
const INITIAL_CAPACITY: i32 = 65536 / ENTRY_SIZE;
/// Handle state: an own handle (dropping it runs the destructor).
pub const STATE_OWN: i32 = 1;
/// Handle state: a borrow handle (dropping it only frees the slot).
pub const STATE_BORROW: i32 = 2;

/// The globals of one resource's handle table.
#[derive(Debug, Clone, Copy)]
pub struct HandleTable {
    memory: MemoryId,
    base: GlobalId,
    capacity: GlobalId,
    next: GlobalId,
    free: GlobalId,
    /// Borrow entries the running call holds (shared by every table).
    scope: GlobalId,
}

/// The generated functions of one resource.
#[derive(Debug, Clone, Copy)]
pub struct ResourceFuncs {
    pub new: FunctionId,
    pub rep: FunctionId,
    pub drop: FunctionId,
    /// `(handle) -> rep`: lend `handle` to a call into the defining
    /// component (its `lends` goes up until `unlend`).
    pub lend: FunctionId,
    /// `(handle) -> borrow handle`: lend `handle` to a call into another
    /// component, which receives a new borrow entry counted in `scope`.
    pub borrow: FunctionId,
    /// `(handle)`: the call `handle` was lent to has returned.
    pub unlend: FunctionId,
}

/// The global counting the running call's borrow entries; one per module.
pub fn borrow_scope(module: &mut Module) -> GlobalId {
    global(module, 0)
}

fn global(module: &mut Module, init: i32) -> GlobalId {
    module.globals.add_local(ValType::I32, true, false, ConstExpr::Value(Value::I32(init)))
}

const WORD: MemArg = MemArg { align: 4, offset: 0 };
const WORD_STATE: MemArg = MemArg { align: 4, offset: 4 };
const WORD_LENDS: MemArg = MemArg { align: 4, offset: 8 };
const WORD_LENDER: MemArg = MemArg { align: 4, offset: 12 };
const I32: LoadKind = LoadKind::I32 { atomic: false };
const I32_STORE: StoreKind = StoreKind::I32 { atomic: false };

impl HandleTable {
    pub fn new(module: &mut Module, memory: MemoryId, scope: GlobalId) -> HandleTable {
        HandleTable {
            memory,
            scope,
            base: global(module, 0),
            capacity: global(module, 0),
            // Index 0 is reserved: the first handle is 1.
            next: global(module, 1),
            free: global(module, 0),
        }
    }

    /// Generate `new`, `rep` and `drop` for this table; `dtor` runs when
    /// an own handle is dropped.
    pub fn generate(&self, module: &mut Module, dtor: Option<FunctionId>, name: &str) -> ResourceFuncs {
        ResourceFuncs {
            new: self.gen_new(module, name),
            rep: self.gen_rep(module, name),
            drop: self.gen_drop(module, dtor, name),
            lend: self.gen_lend(module, name),
            borrow: self.gen_borrow(module, name),
            unlend: self.gen_unlend(module, name),
        }
    }

    /// Push the address of entry `handle`.
    fn entry_address(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId) {
        body.global_get(self.base)
            .local_get(handle)
            .i32_const(ENTRY_SIZE)
            .binop(BinaryOp::I32Mul)
            .binop(BinaryOp::I32Add);
    }

    fn gen_new(&self, module: &mut Module, name: &str) -> FunctionId {
        let rep = module.locals.add(ValType::I32);
        let handle = module.locals.add(ValType::I32);
        let new_capacity = module.locals.add(ValType::I32);
        let page = module.locals.add(ValType::I32);
        let t = *self;
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem resource.new {name}"));
        let mut body = builder.func_body();
        t.allocate(&mut body, handle, new_capacity, page);
        t.entry_address(&mut body, handle);
        body.local_get(rep).store(t.memory, I32_STORE, WORD);
        t.entry_address(&mut body, handle);
        body.i32_const(STATE_OWN).store(t.memory, I32_STORE, WORD_STATE);
        t.entry_address(&mut body, handle);
        body.i32_const(0).store(t.memory, I32_STORE, WORD_LENDS);
        body.local_get(handle);
        builder.finish(vec![rep], &mut module.funcs)
    }

    /// A fresh entry's index in `handle` (state and fields not yet set).
    fn allocate(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId, new_capacity: LocalId, page: LocalId) {
        let t = *self;
        // Reuse the head of the free list if there is one.
        body.global_get(t.free).if_else(
            None,
            |then| {
                then.global_get(t.free).local_set(handle);
                t.entry_address(then, handle);
                then.load(t.memory, I32, WORD).global_set(t.free);
            },
            |els| {
                // Grow when full: double the capacity in fresh pages.
                els.global_get(t.next).global_get(t.capacity).binop(BinaryOp::I32GeU).if_else(
                    None,
                    |grow| {
                        // select(initial, capacity * 2, capacity == 0)
                        grow.i32_const(INITIAL_CAPACITY)
                            .global_get(t.capacity)
                            .i32_const(2)
                            .binop(BinaryOp::I32Mul)
                            .global_get(t.capacity)
                            .unop(walrus::ir::UnaryOp::I32Eqz)
                            .select(None)
                            .local_set(new_capacity);
                        grow.local_get(new_capacity)
                            .i32_const(ENTRY_SIZE)
                            .binop(BinaryOp::I32Mul)
                            .i32_const(16)
                            .binop(BinaryOp::I32ShrU)
                            .memory_grow(t.memory)
                            .local_tee(page)
                            .i32_const(-1)
                            .binop(BinaryOp::I32Eq)
                            .if_else(None, |fail| {
                                fail.unreachable();
                            }, |_| {});
                        // Copy the old entries to the new pages.
                        grow.local_get(page)
                            .i32_const(16)
                            .binop(BinaryOp::I32Shl)
                            .global_get(t.base)
                            .global_get(t.capacity)
                            .i32_const(ENTRY_SIZE)
                            .binop(BinaryOp::I32Mul)
                            .memory_copy(t.memory, t.memory);
                        grow.local_get(page).i32_const(16).binop(BinaryOp::I32Shl).global_set(t.base);
                        grow.local_get(new_capacity).global_set(t.capacity);
                    },
                    |_| {},
                );
                els.global_get(t.next).local_set(handle);
                els.global_get(t.next).i32_const(1).binop(BinaryOp::I32Add).global_set(t.next);
            },
        );
    }

    /// Add `delta` to `handle`'s `lends`.
    fn add_lends(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId, delta: i32) {
        self.entry_address(body, handle);
        self.entry_address(body, handle);
        body.load(self.memory, I32, WORD_LENDS)
            .i32_const(delta)
            .binop(BinaryOp::I32Add)
            .store(self.memory, I32_STORE, WORD_LENDS);
    }

    fn gen_lend(&self, module: &mut Module, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let t = *self;
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem lend {name}"));
        let mut body = builder.func_body();
        t.check(&mut body, handle);
        t.add_lends(&mut body, handle, 1);
        t.entry_address(&mut body, handle);
        body.load(t.memory, I32, WORD);
        builder.finish(vec![handle], &mut module.funcs)
    }

    fn gen_unlend(&self, module: &mut Module, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let t = *self;
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[]);
        builder.name(format!("karmem unlend {name}"));
        let mut body = builder.func_body();
        t.check(&mut body, handle);
        t.add_lends(&mut body, handle, -1);
        builder.finish(vec![handle], &mut module.funcs)
    }

    fn gen_borrow(&self, module: &mut Module, name: &str) -> FunctionId {
        let lender = module.locals.add(ValType::I32);
        let handle = module.locals.add(ValType::I32);
        let new_capacity = module.locals.add(ValType::I32);
        let page = module.locals.add(ValType::I32);
        let t = *self;
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem borrow {name}"));
        let mut body = builder.func_body();
        t.check(&mut body, lender);
        t.add_lends(&mut body, lender, 1);
        t.allocate(&mut body, handle, new_capacity, page);
        // The entry address moves when the table grows: read the lender after.
        t.entry_address(&mut body, handle);
        t.entry_address(&mut body, lender);
        body.load(t.memory, I32, WORD).store(t.memory, I32_STORE, WORD);
        t.entry_address(&mut body, handle);
        body.i32_const(STATE_BORROW).store(t.memory, I32_STORE, WORD_STATE);
        t.entry_address(&mut body, handle);
        body.i32_const(0).store(t.memory, I32_STORE, WORD_LENDS);
        t.entry_address(&mut body, handle);
        body.local_get(lender).store(t.memory, I32_STORE, WORD_LENDER);
        body.global_get(t.scope).i32_const(1).binop(BinaryOp::I32Add).global_set(t.scope);
        body.local_get(handle);
        builder.finish(vec![lender], &mut module.funcs)
    }

    /// Trap unless `handle` names a live entry.
    fn check(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId) {
        let t = *self;
        body.local_get(handle)
            .unop(walrus::ir::UnaryOp::I32Eqz)
            .local_get(handle)
            .global_get(t.next)
            .binop(BinaryOp::I32GeU)
            .binop(BinaryOp::I32Or)
            .if_else(None, |bad| {
                bad.unreachable();
            }, |_| {});
        t.entry_address(body, handle);
        body.load(t.memory, I32, WORD_STATE).unop(walrus::ir::UnaryOp::I32Eqz).if_else(
            None,
            |bad| {
                bad.unreachable();
            },
            |_| {},
        );
    }

    fn gen_rep(&self, module: &mut Module, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let t = *self;
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem resource.rep {name}"));
        let mut body = builder.func_body();
        t.check(&mut body, handle);
        t.entry_address(&mut body, handle);
        body.load(t.memory, I32, WORD);
        builder.finish(vec![handle], &mut module.funcs)
    }

    fn gen_drop(&self, module: &mut Module, dtor: Option<FunctionId>, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let rep = module.locals.add(ValType::I32);
        let state = module.locals.add(ValType::I32);
        let t = *self;
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[]);
        builder.name(format!("karmem resource.drop {name}"));
        let mut body = builder.func_body();
        t.check(&mut body, handle);
        t.entry_address(&mut body, handle);
        body.load(t.memory, I32, WORD).local_set(rep);
        t.entry_address(&mut body, handle);
        body.load(t.memory, I32, WORD_STATE).local_set(state);
        // An own handle lent to a call that has not returned cannot go.
        body.local_get(state).i32_const(STATE_OWN).binop(BinaryOp::I32Eq);
        t.entry_address(&mut body, handle);
        body.load(t.memory, I32, WORD_LENDS).i32_const(0).binop(BinaryOp::I32Ne).binop(BinaryOp::I32And).if_else(
            None,
            |bad| {
                bad.unreachable();
            },
            |_| {},
        );
        // A borrow leaves the running call's count.
        body.local_get(state).i32_const(STATE_BORROW).binop(BinaryOp::I32Eq).if_else(
            None,
            |borrow| {
                borrow.global_get(t.scope).i32_const(1).binop(BinaryOp::I32Sub).global_set(t.scope);
            },
            |_| {},
        );
        // Put the entry on the free list.
        t.entry_address(&mut body, handle);
        body.global_get(t.free).store(t.memory, I32_STORE, WORD);
        t.entry_address(&mut body, handle);
        body.i32_const(0).store(t.memory, I32_STORE, WORD_STATE);
        body.local_get(handle).global_set(t.free);
        if let Some(dtor) = dtor {
            body.local_get(state).i32_const(STATE_OWN).binop(BinaryOp::I32Eq).if_else(
                None,
                |own| {
                    own.local_get(rep).call(dtor);
                },
                |_| {},
            );
        }
        builder.finish(vec![handle], &mut module.funcs)
    }
}
