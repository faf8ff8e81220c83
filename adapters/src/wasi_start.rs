//! `wasi:cli/run` -> `_start`: a command component becomes a preview1 command.
//!
//! Owns: finding the `wasi:cli/run@0.2.x#run` export (`() -> i32`, the flat
//! `result` discriminant) and replacing it with an exported `_start` that
//! calls it and, on `err`, calls `wasi_snapshot_preview1.proc_exit(1)`;
//! returning from `_start` is exit code 0 for every preview1 host. An explicit
//! `wasi:cli/exit#exit` inside `run` already ended the process through the
//! shim's `proc_exit`.
//!
//!
//! Also owns the exit-code rule for a wasip1 program whose adapter was
//! dropped ([`exit_codes_as_the_component`], docs/LOWERING.md "Exit codes").
//!
//! Does not own: deciding that the output is a command (the lowering does,
//! when the component exports `wasi:cli/run`).

use anyhow::{Context, Result, bail, ensure};
use walrus::ir::BinaryOp;
use walrus::{ExportItem, FunctionBuilder, FunctionId, Module, ValType};

use super::PREVIEW1_MODULE;
use super::adapter::is_cli_run;

/// The `wasi:cli/run@0.2.x#run` export of `module`, if any.
pub fn find_run_export(module: &Module) -> Option<(String, FunctionId)> {
    module.exports.iter().find_map(|export| match export.item {
        ExportItem::Function(func) if is_cli_run(&export.name) => Some((export.name.clone(), func)),
        _ => None,
    })
}

/// Replaces the `wasi:cli/run@0.2.x#run` export with `_start`. Returns the
/// new function, or `None` when the module exports no `run` (a reactor).
pub fn add_command_start(module: &mut Module) -> Result<Option<FunctionId>> {
    let Some((name, run)) = find_run_export(module) else {
        return Ok(None);
    };
    if module.exports.iter().any(|export| export.name == "_start") {
        bail!("the module exports both `{name}` and `_start`; refusing to pick one");
    }
    let run_type = module.types.get(module.funcs.get(run).ty());
    ensure!(
        run_type.params().is_empty() && run_type.results() == [ValType::I32],
        "`{name}` must have type `() -> i32` (a flattened `result`), found {:?} -> {:?}",
        run_type.params(),
        run_type.results()
    );
    let proc_exit = proc_exit_import(module)?;
    let mut builder = FunctionBuilder::new(&mut module.types, &[], &[]);
    builder.name("_start".to_string());
    builder.func_body().call(run).if_else(
        None,
        |failed| {
            failed.i32_const(1).call(proc_exit);
        },
        |_| {},
    );
    let start = builder.finish(Vec::new(), &mut module.funcs);
    let export = module
        .exports
        .iter()
        .find(|export| export.name == name)
        .map(|export| export.id())
        .context("the run export vanished")?;
    module.exports.delete(export);
    module.exports.add("_start", start);
    Ok(Some(start))
}

/// [`add_command_start`] on bytes (through a walrus round trip).
pub fn add_command_start_to_bytes(wasm: &[u8]) -> Result<Vec<u8>> {
    let mut module = Module::from_buffer(wasm).context("failed to parse the module to give a `_start`")?;
    add_command_start(&mut module)?;
    Ok(module.emit_wasm())
}

fn proc_exit_import(module: &mut Module) -> Result<FunctionId> {
    if let Ok(func) = module.imports.get_func(PREVIEW1_MODULE, "proc_exit") {
        let ty = module.types.get(module.funcs.get(func).ty());
        ensure!(
            ty.params() == [ValType::I32] && ty.results().is_empty(),
            "`{PREVIEW1_MODULE}#proc_exit` is imported with a wrong type"
        );
        return Ok(func);
    }
    let ty = module.types.add(&[ValType::I32], &[]);
    Ok(module.add_import_func(PREVIEW1_MODULE, "proc_exit", ty).0)
}

/// The exit-code rule for a wasip1 program whose preview1 adapter was
/// dropped (`--wasi preview1`): the program's `proc_exit(n)` reaches the
/// host as `proc_exit(n == 0 ? 0 : 1)`, the code the component runtime
/// reports for it (the adapter turns it into `wasi:cli/exit.exit`, whose
/// `err` is exit code 1), so every build of a guest exits alike
/// (docs/LOWERING.md, "Exit codes"). Every use of the imported `proc_exit`
/// becomes a use of a function that maps the code and calls a fresh
/// import of it. Returns whether the module imported `proc_exit`.
pub fn exit_codes_as_the_component(module: &mut Module) -> Result<bool> {
    let Ok(program) = module.imports.get_func(PREVIEW1_MODULE, "proc_exit") else {
        return Ok(false);
    };
    let ty = module.funcs.get(program).ty();
    let signature = module.types.get(ty);
    ensure!(
        signature.params() == [ValType::I32] && signature.results().is_empty(),
        "`{PREVIEW1_MODULE}#proc_exit` is imported with a wrong type"
    );
    let walrus::FunctionKind::Import(imported) = &module.funcs.get(program).kind else {
        bail!("internal error: the `proc_exit` import is not an imported function");
    };
    module.imports.delete(imported.import);
    let (host, _) = module.add_import_func(PREVIEW1_MODULE, "proc_exit", ty);
    let code = module.locals.add(ValType::I32);
    let mut builder = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[]);
    builder.name("proc_exit as the component".to_string());
    builder.func_body().local_get(code).i32_const(0).binop(BinaryOp::I32Ne).call(host);
    module.funcs.get_mut(program).kind = walrus::FunctionKind::Local(builder.local_func(vec![code]));
    Ok(true)
}
