//! Canonical builtins as generated wasm: one handle table per component
//! instance, shared by every resource type the instance holds handles of.
//!
//! Owns: the handle table layout and the code of `resource.new`,
//! `resource.rep` and `resource.drop`, and the lifts and lowers of handles
//! (lend, borrow, take) the adapters call
//! (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#canon-resourcenew>).
//! Leaves deciding which table a resource's handles live in, and which
//! placeholder import becomes which builtin, to `link`.
//!
//! Layout: a table is an array of 16-byte entries in linear memory
//! (`rep: i32`, `state: i32`, `lends: i32`, `type: i32`), as the
//! specification's per-instance table of `ResourceHandle`s: the resources
//! an instance defines and the host resources it imports share one
//! numbering (handles 1, 2, 3 across two resource types), and each entry
//! records its resource type (a tag `link` gives each resource, unique in
//! the module). State 0 is free (then `rep` holds the next free index), 1
//! an own handle, 2 a borrow handle. Index 0 is reserved, so a handle is
//! never 0. Freed entries go on a free list (last freed, first reused, as
//! the specification's table does). The array lives in pages the table
//! obtains with `memory.grow` and doubles when full (the old pages are
//! left behind: tables only grow). Misuse traps with `unreachable`: index
//! 0, out of range or a free entry ("unknown handle index"), an entry of
//! another resource type ("handle index used with the wrong type"), an own
//! handle dropped or passed on while lent ("cannot remove owned resource
//! while borrowed"), a borrow handle passed as own.
//!
//! For an imported (host) resource the entry's `rep` is the host's own
//! handle number, and the "destructor" is the host's `[resource-drop]`.
//!
//! Borrows (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#borrow-handles>):
//! `lends` counts the calls a handle is lent to right now; dropping or
//! taking an own handle whose `lends` is not 0 traps. A borrow lent to a
//! component that does not define the resource becomes a fresh borrow
//! entry (`rep` and `type` copied); the global `scope` counts the borrow
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

/// The globals of one component instance's handle table.
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
    /// `(handle) -> rep`: lift an own handle out of the table (it moves to
    /// the callee, which now owns the resource); traps while it is lent.
    pub take: FunctionId,
    /// `(handle)`: trap unless `handle` can be lifted as `own` here (an
    /// own handle of this type, not lent), for a handle that keeps its
    /// entry when it crosses (see `link`).
    pub check_own: FunctionId,
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
const WORD_TYPE: MemArg = MemArg { align: 4, offset: 12 };
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

    /// Generate the functions of one resource type whose handles live in
    /// this table: `tag` (not 0) marks its entries, `dtor` runs with the rep
    /// when an own handle is dropped.
    pub fn generate(&self, module: &mut Module, tag: i32, dtor: Option<FunctionId>, name: &str) -> ResourceFuncs {
        let t = Typed { table: *self, tag };
        ResourceFuncs {
            new: t.gen_new(module, name),
            rep: t.gen_rep(module, name),
            drop: t.gen_drop(module, dtor, name),
            lend: t.gen_lend(module, name),
            borrow: t.gen_borrow(module, name),
            unlend: t.gen_unlend(module, name),
            take: t.gen_take(module, name),
            check_own: t.gen_check_own(module, name),
        }
    }

    /// `(rep) -> handle`: a new borrow entry of type `tag` in this table,
    /// counted in `scope` (`lower_borrow` of a rep lifted from another
    /// instance's table; generated only for resources whose handles move
    /// between tables, see `link`).
    pub fn lower_borrow(&self, module: &mut Module, tag: i32, name: &str) -> FunctionId {
        let t = Typed { table: *self, tag };
        let rep = module.locals.add(ValType::I32);
        let handle = module.locals.add(ValType::I32);
        let new_capacity = module.locals.add(ValType::I32);
        let page = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem lower borrow {name}"));
        let mut body = builder.func_body();
        t.insert(&mut body, [rep, handle, new_capacity, page], STATE_BORROW);
        body.global_get(self.scope).i32_const(1).binop(BinaryOp::I32Add).global_set(self.scope);
        body.local_get(handle);
        builder.finish(vec![rep], &mut module.funcs)
    }

    /// Push the address of entry `handle`.
    fn entry_address(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId) {
        body.global_get(self.base)
            .local_get(handle)
            .i32_const(ENTRY_SIZE)
            .binop(BinaryOp::I32Mul)
            .binop(BinaryOp::I32Add);
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

}

/// One resource type's view of a table: its entries carry `tag`.
#[derive(Clone, Copy)]
struct Typed {
    table: HandleTable,
    tag: i32,
}

fn trap_if(body: &mut walrus::InstrSeqBuilder<'_>) {
    body.if_else(
        None,
        |bad| {
            bad.unreachable();
        },
        |_| {},
    );
}

impl Typed {
    fn entry_address(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId) {
        self.table.entry_address(body, handle);
    }

    fn load(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId, field: MemArg) {
        self.entry_address(body, handle);
        body.load(self.table.memory, I32, field);
    }

    /// Store what `value` pushes in field `field` of entry `handle`.
    fn store(
        &self,
        body: &mut walrus::InstrSeqBuilder<'_>,
        handle: LocalId,
        field: MemArg,
        value: impl FnOnce(&mut walrus::InstrSeqBuilder<'_>),
    ) {
        self.entry_address(body, handle);
        value(body);
        body.store(self.table.memory, I32_STORE, field);
    }

    /// A new entry of this type holding `rep` in `state`; its index in `handle`.
    fn insert(&self, body: &mut walrus::InstrSeqBuilder<'_>, locals: [LocalId; 4], state: i32) {
        let [rep, handle, new_capacity, page] = locals;
        let tag = self.tag;
        self.table.allocate(body, handle, new_capacity, page);
        self.store(body, handle, WORD, |b| {
            b.local_get(rep);
        });
        self.store(body, handle, WORD_STATE, |b| {
            b.i32_const(state);
        });
        self.store(body, handle, WORD_LENDS, |b| {
            b.i32_const(0);
        });
        self.store(body, handle, WORD_TYPE, |b| {
            b.i32_const(tag);
        });
    }

    fn gen_new(&self, module: &mut Module, name: &str) -> FunctionId {
        let rep = module.locals.add(ValType::I32);
        let handle = module.locals.add(ValType::I32);
        let new_capacity = module.locals.add(ValType::I32);
        let page = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem resource.new {name}"));
        let mut body = builder.func_body();
        self.insert(&mut body, [rep, handle, new_capacity, page], STATE_OWN);
        body.local_get(handle);
        builder.finish(vec![rep], &mut module.funcs)
    }

    /// Add `delta` to `handle`'s `lends`.
    fn add_lends(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId, delta: i32) {
        self.table.add_lends(body, handle, delta);
    }

    fn gen_lend(&self, module: &mut Module, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem lend {name}"));
        let mut body = builder.func_body();
        self.check(&mut body, handle);
        self.add_lends(&mut body, handle, 1);
        self.load(&mut body, handle, WORD);
        builder.finish(vec![handle], &mut module.funcs)
    }

    fn gen_unlend(&self, module: &mut Module, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[]);
        builder.name(format!("karmem unlend {name}"));
        let mut body = builder.func_body();
        self.check(&mut body, handle);
        self.add_lends(&mut body, handle, -1);
        builder.finish(vec![handle], &mut module.funcs)
    }

    fn gen_borrow(&self, module: &mut Module, name: &str) -> FunctionId {
        let lender = module.locals.add(ValType::I32);
        let rep = module.locals.add(ValType::I32);
        let handle = module.locals.add(ValType::I32);
        let new_capacity = module.locals.add(ValType::I32);
        let page = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem borrow {name}"));
        let mut body = builder.func_body();
        self.check(&mut body, lender);
        self.add_lends(&mut body, lender, 1);
        // Read the rep first: the entry addresses move when the table grows.
        self.load(&mut body, lender, WORD);
        body.local_set(rep);
        self.insert(&mut body, [rep, handle, new_capacity, page], STATE_BORROW);
        let scope = self.table.scope;
        body.global_get(scope).i32_const(1).binop(BinaryOp::I32Add).global_set(scope);
        body.local_get(handle);
        builder.finish(vec![lender], &mut module.funcs)
    }

    /// Trap unless `handle` names a live entry of this type.
    fn check(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId) {
        let t = self.table;
        // Unknown handle index: 0, past the end, or free.
        body.local_get(handle)
            .unop(walrus::ir::UnaryOp::I32Eqz)
            .local_get(handle)
            .global_get(t.next)
            .binop(BinaryOp::I32GeU)
            .binop(BinaryOp::I32Or);
        trap_if(body);
        self.load(body, handle, WORD_STATE);
        body.unop(walrus::ir::UnaryOp::I32Eqz);
        trap_if(body);
        // Handle index used with the wrong type.
        self.load(body, handle, WORD_TYPE);
        body.i32_const(self.tag).binop(BinaryOp::I32Ne);
        trap_if(body);
    }

    fn gen_rep(&self, module: &mut Module, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem resource.rep {name}"));
        let mut body = builder.func_body();
        self.check(&mut body, handle);
        self.load(&mut body, handle, WORD);
        builder.finish(vec![handle], &mut module.funcs)
    }

    /// Put entry `handle` on the free list.
    fn free(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId) {
        let free = self.table.free;
        self.store(body, handle, WORD, |b| {
            b.global_get(free);
        });
        self.store(body, handle, WORD_STATE, |b| {
            b.i32_const(0);
        });
        body.local_get(handle).global_set(free);
    }

    /// Trap if `state` is own and entry `handle` is lent out.
    fn check_not_lent(&self, body: &mut walrus::InstrSeqBuilder<'_>, handle: LocalId, state: LocalId) {
        body.local_get(state).i32_const(STATE_OWN).binop(BinaryOp::I32Eq);
        self.load(body, handle, WORD_LENDS);
        body.i32_const(0).binop(BinaryOp::I32Ne).binop(BinaryOp::I32And);
        trap_if(body);
    }

    fn gen_check_own(&self, module: &mut Module, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let state = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[]);
        builder.name(format!("karmem check own {name}"));
        let mut body = builder.func_body();
        self.check(&mut body, handle);
        self.load(&mut body, handle, WORD_STATE);
        body.local_tee(state);
        body.i32_const(STATE_OWN).binop(BinaryOp::I32Ne);
        trap_if(&mut body);
        self.check_not_lent(&mut body, handle, state);
        builder.finish(vec![handle], &mut module.funcs)
    }

    fn gen_take(&self, module: &mut Module, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let rep = module.locals.add(ValType::I32);
        let state = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
        builder.name(format!("karmem take {name}"));
        let mut body = builder.func_body();
        self.check(&mut body, handle);
        self.load(&mut body, handle, WORD);
        body.local_set(rep);
        self.load(&mut body, handle, WORD_STATE);
        body.local_tee(state);
        // Only an own handle can be passed as `own`.
        body.i32_const(STATE_OWN).binop(BinaryOp::I32Ne);
        trap_if(&mut body);
        self.check_not_lent(&mut body, handle, state);
        self.free(&mut body, handle);
        body.local_get(rep);
        builder.finish(vec![handle], &mut module.funcs)
    }

    fn gen_drop(&self, module: &mut Module, dtor: Option<FunctionId>, name: &str) -> FunctionId {
        let handle = module.locals.add(ValType::I32);
        let rep = module.locals.add(ValType::I32);
        let state = module.locals.add(ValType::I32);
        let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[]);
        builder.name(format!("karmem resource.drop {name}"));
        let mut body = builder.func_body();
        self.check(&mut body, handle);
        self.load(&mut body, handle, WORD);
        body.local_set(rep);
        self.load(&mut body, handle, WORD_STATE);
        body.local_set(state);
        // An own handle lent to a call that has not returned cannot go.
        self.check_not_lent(&mut body, handle, state);
        // A borrow leaves the running call's count.
        let scope = self.table.scope;
        body.local_get(state).i32_const(STATE_BORROW).binop(BinaryOp::I32Eq).if_else(
            None,
            |borrow| {
                borrow.global_get(scope).i32_const(1).binop(BinaryOp::I32Sub).global_set(scope);
            },
            |_| {},
        );
        self.free(&mut body, handle);
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

/// `(x) -> then(first(x))`: one handle conversion made of two table
/// operations (`take` then `new`: `lift_own` from one instance's table,
/// `lower_own` into another's; `lend` then `lower_borrow`). Generated once
/// per pair.
pub fn compose(module: &mut Module, made: &mut Vec<(FunctionId, FunctionId, FunctionId)>, first: FunctionId, then: FunctionId) -> FunctionId {
    if let Some((_, _, f)) = made.iter().find(|(a, b, _)| *a == first && *b == then) {
        return *f;
    }
    let x = module.locals.add(ValType::I32);
    let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I32]);
    builder.name("karmem move handle".to_string());
    builder.func_body().local_get(x).call(first).call(then);
    let f = builder.finish(vec![x], &mut module.funcs);
    made.push((first, then, f));
    f
}
