//! WASI preview1 calls out of a partition.
//!
//! Owns: what each `wasi_snapshot_preview1` function's parameters point at
//! (the preview1 interface, `witx` of the snapshot), and the wrapper that
//! serves a partition's import of it with the real import: every pointer
//! checked against the partition's size and rebased; iovec arrays copied
//! to the scratch page with their buffers rebased (at most
//! [`MAX_IOVECS`] per call: a shorter read or write, which preview1
//! allows); the pointer tables `args_get`/`environ_get` write taken back
//! from physical to partition addresses. The host then reads and writes
//! the partition's bytes in place: no copy of the data.
//!
//! Does not own: the WASI shim (`karmem-adapters`), the layout.

use anyhow::{Context, Result, bail};
use wasm_encoder::{BlockType, Function, Instruction as I, ValType};

use crate::PAGE;
use crate::glue::{Helper, Helpers, memarg};
use crate::layout::Layout;

/// What a preview1 parameter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    /// A value (fd, flags, offset, ...).
    Value,
    /// A pointer to `n` bytes.
    Ptr(u32),
    /// A pointer to as many bytes as parameter `len` says.
    Buf { len: usize },
    /// A pointer to as many `size`-byte elements as parameter `len` says.
    Array { len: usize, size: u32 },
    /// A pointer to as many iovecs (`{buf: ptr, len: u32}`) as parameter
    /// `len` says.
    Iovecs { len: usize },
    /// `args_get`/`environ_get`: the pointer table, then the buffer.
    Table,
    TableBuf,
}

use Param::{Array, Buf, Iovecs, Ptr, Table, TableBuf, Value};

/// The preview1 functions and their parameters.
const FUNCTIONS: &[(&str, &[Param])] = &[
    ("args_get", &[Table, TableBuf]),
    ("args_sizes_get", &[Ptr(4), Ptr(4)]),
    ("environ_get", &[Table, TableBuf]),
    ("environ_sizes_get", &[Ptr(4), Ptr(4)]),
    ("clock_res_get", &[Value, Ptr(8)]),
    ("clock_time_get", &[Value, Value, Ptr(8)]),
    ("fd_advise", &[Value, Value, Value, Value]),
    ("fd_allocate", &[Value, Value, Value]),
    ("fd_close", &[Value]),
    ("fd_datasync", &[Value]),
    ("fd_fdstat_get", &[Value, Ptr(24)]),
    ("fd_fdstat_set_flags", &[Value, Value]),
    ("fd_fdstat_set_rights", &[Value, Value, Value]),
    ("fd_filestat_get", &[Value, Ptr(64)]),
    ("fd_filestat_set_size", &[Value, Value]),
    ("fd_filestat_set_times", &[Value, Value, Value, Value]),
    ("fd_pread", &[Value, Iovecs { len: 2 }, Value, Value, Ptr(4)]),
    ("fd_prestat_get", &[Value, Ptr(8)]),
    ("fd_prestat_dir_name", &[Value, Buf { len: 2 }, Value]),
    ("fd_pwrite", &[Value, Iovecs { len: 2 }, Value, Value, Ptr(4)]),
    ("fd_read", &[Value, Iovecs { len: 2 }, Value, Ptr(4)]),
    ("fd_readdir", &[Value, Buf { len: 2 }, Value, Value, Ptr(4)]),
    ("fd_renumber", &[Value, Value]),
    ("fd_seek", &[Value, Value, Value, Ptr(8)]),
    ("fd_sync", &[Value]),
    ("fd_tell", &[Value, Ptr(8)]),
    ("fd_write", &[Value, Iovecs { len: 2 }, Value, Ptr(4)]),
    ("path_create_directory", &[Value, Buf { len: 2 }, Value]),
    ("path_filestat_get", &[Value, Value, Buf { len: 3 }, Value, Ptr(64)]),
    ("path_filestat_set_times", &[Value, Value, Buf { len: 3 }, Value, Value, Value, Value]),
    ("path_link", &[Value, Value, Buf { len: 3 }, Value, Value, Buf { len: 6 }, Value]),
    ("path_open", &[Value, Value, Buf { len: 3 }, Value, Value, Value, Value, Value, Ptr(4)]),
    ("path_readlink", &[Value, Buf { len: 2 }, Value, Buf { len: 4 }, Value, Ptr(4)]),
    ("path_remove_directory", &[Value, Buf { len: 2 }, Value]),
    ("path_rename", &[Value, Buf { len: 2 }, Value, Value, Buf { len: 5 }, Value]),
    ("path_symlink", &[Buf { len: 1 }, Value, Value, Buf { len: 4 }, Value]),
    ("path_unlink_file", &[Value, Buf { len: 2 }, Value]),
    ("poll_oneoff", &[Array { len: 2, size: 48 }, Array { len: 2, size: 32 }, Value, Ptr(4)]),
    ("proc_exit", &[Value]),
    ("proc_raise", &[Value]),
    ("sched_yield", &[]),
    ("random_get", &[Buf { len: 1 }, Value]),
    ("sock_accept", &[Value, Value, Ptr(4)]),
    ("sock_recv", &[Value, Iovecs { len: 2 }, Value, Value, Ptr(4), Ptr(2)]),
    ("sock_send", &[Value, Iovecs { len: 2 }, Value, Value, Ptr(4)]),
    ("sock_shutdown", &[Value, Value]),
];

/// Iovecs translated per call: the scratch page holds this many after the
/// 64 bytes the size queries use.
pub const MAX_IOVECS: u32 = ((PAGE - 64) / 8) as u32;

fn params(field: &str) -> Result<&'static [Param]> {
    FUNCTIONS
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, params)| *params)
        .with_context(|| format!("`wasi_snapshot_preview1` `{field}` is not a preview1 function; its pointers cannot be translated"))
}

/// The other real imports the wrapper of `field` calls.
pub(crate) fn also_needs(field: &str) -> Option<&'static str> {
    match field {
        "args_get" => Some("args_sizes_get"),
        "environ_get" => Some("environ_sizes_get"),
        _ => None,
    }
}

/// Checks that `field` is known and takes `param_count` parameters.
pub(crate) fn check(field: &str, param_count: usize) -> Result<()> {
    let params = params(field)?;
    if params.len() != param_count {
        bail!("`wasi_snapshot_preview1` `{field}` is imported with {param_count} parameters; preview1 has {}", params.len());
    }
    Ok(())
}

/// The wrapper serving memory `memory`'s import of `field`. `real(name)`
/// is the function index of the real import `name`. The wrapper has the
/// import's type: it returns what the real function returns.
pub(crate) fn wrapper(
    field: &str,
    memory: u32,
    layout: &Layout,
    helpers: &mut Helpers,
    real: &dyn Fn(&str) -> Result<u32>,
) -> Result<Function> {
    let params = params(field)?;
    let p = layout.partition(memory).with_context(|| format!("memory {memory} has no partition"))?;
    let range = helpers.get(Helper::Range(memory));
    let scratch = (u64::from(layout.scratch_page) * PAGE) as u32 as i32;
    let n = params.len() as u32;
    // extra locals: t (counter), u (scratch slot), r (errno)
    let (t, u, r) = (n, n + 1, n + 2);
    let mut f = Function::new([(3, ValType::I32)]);
    let translate = |f: &mut Function, i: u32, len: &dyn Fn(&mut Function)| {
        f.instruction(&I::LocalGet(i));
        len(f);
        f.instruction(&I::Call(range)).instruction(&I::LocalSet(i));
    };
    if params.contains(&Table) {
        let sizes = real(also_needs(field).context("a table function has a size query")?)?;
        let get = real(field)?;
        // the sizes, into the scratch page
        f.instruction(&I::I32Const(scratch))
            .instruction(&I::I32Const(scratch + 4))
            .instruction(&I::Call(sizes))
            .instruction(&I::LocalTee(r))
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::LocalGet(r))
            .instruction(&I::Return)
            .instruction(&I::End);
        translate(&mut f, 0, &|f| {
            f.instruction(&I::I32Const(scratch))
                .instruction(&I::I32Load(memarg(0, 2)))
                .instruction(&I::I64ExtendI32U)
                .instruction(&I::I64Const(4))
                .instruction(&I::I64Mul);
        });
        translate(&mut f, 1, &|f| {
            f.instruction(&I::I32Const(scratch + 4)).instruction(&I::I32Load(memarg(0, 2))).instruction(&I::I64ExtendI32U);
        });
        f.instruction(&I::LocalGet(0))
            .instruction(&I::LocalGet(1))
            .instruction(&I::Call(get))
            .instruction(&I::LocalTee(r))
            .instruction(&I::If(BlockType::Empty))
            .instruction(&I::LocalGet(r))
            .instruction(&I::Return)
            .instruction(&I::End);
        if p.base() != 0 {
            // table[t] -= base, for t < count
            f.instruction(&I::Block(BlockType::Empty)).instruction(&I::Loop(BlockType::Empty));
            f.instruction(&I::LocalGet(t))
                .instruction(&I::I32Const(scratch))
                .instruction(&I::I32Load(memarg(0, 2)))
                .instruction(&I::I32GeU)
                .instruction(&I::BrIf(1));
            f.instruction(&I::LocalGet(0))
                .instruction(&I::LocalGet(t))
                .instruction(&I::I32Const(2))
                .instruction(&I::I32Shl)
                .instruction(&I::I32Add)
                .instruction(&I::LocalTee(u))
                .instruction(&I::LocalGet(u))
                .instruction(&I::I32Load(memarg(0, 2)))
                .instruction(&I::I32Const(p.base() as u32 as i32))
                .instruction(&I::I32Sub)
                .instruction(&I::I32Store(memarg(0, 2)));
            f.instruction(&I::LocalGet(t))
                .instruction(&I::I32Const(1))
                .instruction(&I::I32Add)
                .instruction(&I::LocalSet(t))
                .instruction(&I::Br(0))
                .instruction(&I::End)
                .instruction(&I::End);
        }
        f.instruction(&I::I32Const(0)).instruction(&I::End);
        return Ok(f);
    }
    for (i, param) in params.iter().enumerate() {
        let i = i as u32;
        match *param {
            Value | Iovecs { .. } | Table | TableBuf => {}
            Ptr(bytes) => translate(&mut f, i, &|f| {
                f.instruction(&I::I64Const(i64::from(bytes)));
            }),
            Buf { len } => translate(&mut f, i, &|f| {
                f.instruction(&I::LocalGet(len as u32)).instruction(&I::I64ExtendI32U);
            }),
            Array { len, size } => translate(&mut f, i, &|f| {
                f.instruction(&I::LocalGet(len as u32))
                    .instruction(&I::I64ExtendI32U)
                    .instruction(&I::I64Const(i64::from(size)))
                    .instruction(&I::I64Mul);
            }),
        }
    }
    for (i, param) in params.iter().enumerate() {
        let Iovecs { len } = *param else { continue };
        let (i, len) = (i as u32, len as u32);
        // count = min(count, MAX_IOVECS)
        f.instruction(&I::LocalGet(len))
            .instruction(&I::I32Const(MAX_IOVECS as i32))
            .instruction(&I::LocalGet(len))
            .instruction(&I::I32Const(MAX_IOVECS as i32))
            .instruction(&I::I32LtU)
            .instruction(&I::Select)
            .instruction(&I::LocalSet(len));
        translate(&mut f, i, &|f| {
            f.instruction(&I::LocalGet(len))
                .instruction(&I::I64ExtendI32U)
                .instruction(&I::I64Const(8))
                .instruction(&I::I64Mul);
        });
        // scratch[t] = {range(buf, len), len}
        f.instruction(&I::I32Const(0)).instruction(&I::LocalSet(t));
        f.instruction(&I::Block(BlockType::Empty)).instruction(&I::Loop(BlockType::Empty));
        f.instruction(&I::LocalGet(t)).instruction(&I::LocalGet(len)).instruction(&I::I32GeU).instruction(&I::BrIf(1));
        // u = address of the source iovec
        f.instruction(&I::LocalGet(i))
            .instruction(&I::LocalGet(t))
            .instruction(&I::I32Const(3))
            .instruction(&I::I32Shl)
            .instruction(&I::I32Add)
            .instruction(&I::LocalSet(u));
        // destination slot address, then the rebased buffer
        f.instruction(&I::I32Const(scratch + 64))
            .instruction(&I::LocalGet(t))
            .instruction(&I::I32Const(3))
            .instruction(&I::I32Shl)
            .instruction(&I::I32Add)
            .instruction(&I::LocalGet(u))
            .instruction(&I::I32Load(memarg(0, 2)))
            .instruction(&I::LocalGet(u))
            .instruction(&I::I32Load(memarg(4, 2)))
            .instruction(&I::I64ExtendI32U)
            .instruction(&I::Call(range))
            .instruction(&I::I32Store(memarg(0, 2)));
        f.instruction(&I::I32Const(scratch + 64))
            .instruction(&I::LocalGet(t))
            .instruction(&I::I32Const(3))
            .instruction(&I::I32Shl)
            .instruction(&I::I32Add)
            .instruction(&I::LocalGet(u))
            .instruction(&I::I32Load(memarg(4, 2)))
            .instruction(&I::I32Store(memarg(4, 2)));
        f.instruction(&I::LocalGet(t))
            .instruction(&I::I32Const(1))
            .instruction(&I::I32Add)
            .instruction(&I::LocalSet(t))
            .instruction(&I::Br(0))
            .instruction(&I::End)
            .instruction(&I::End);
        f.instruction(&I::I32Const(scratch + 64)).instruction(&I::LocalSet(i));
    }
    for i in 0..n {
        f.instruction(&I::LocalGet(i));
    }
    f.instruction(&I::Call(real(field)?));
    f.instruction(&I::End);
    Ok(f)
}
