//! Exceptions at the component boundary.
//!
//! The component model lets no exception leave a component: one a
//! component's core code throws and does not catch is a trap where the
//! call crosses into another component or out to the host
//! ("uncaught exception propagated out of component"). In the lowered
//! module every component's code shares one call stack, so the crossings
//! are made explicit: each is a `try_table` whose `catch_all` runs
//! `unreachable`, and a trap (unlike an exception) is never caught.
//!
//! - **Between components** ([`trap_escaping`], from `link`): the glue
//!   function a component calls to enter another one — a fused or copying
//!   adapter (the callee, its `realloc`, its `post-return`, and the
//!   caller's `realloc` for the results all run inside it), and a
//!   `resource.drop` whose destructor runs — has its whole body inside the
//!   `try_table`. Its own code throws nothing, so only what the components
//!   it calls let escape is turned into the trap.
//! - **At the host boundary** ([`guard_exports`], after `link`): every
//!   exported function (the lifted functions, their post-returns, the
//!   reallocs, `[resource-drop]`s) and the start function are reached
//!   through a guard, so the Karmem edge, the WASI shim and any host call
//!   into guarded code; the exports keep their names and types.
//!
//! Only a module that can throw gets any of this: one with an exception tag
//! (every `throw` names a tag, and a `throw_ref` rethrows what a handler
//! caught, so without tags nothing throws). Every other output stays byte
//! for byte what it was, and needs no exception-handling support.
//!
//! Host imports are called directly: a component-model host function cannot
//! throw a core exception into the guest.
//!
//! Does not own: merging the tags themselves (`merge`), which glue exists
//! (`link`).

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use walrus::ir::{Block, InstrSeqType, TryTable, TryTableCatch};
use walrus::{FunctionId, FunctionKind, Module};
use wasm_encoder::{BlockType, Catch, CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

use crate::graph::{BuiltinKind, Graph, ResourceRef};
use crate::merge::{ImportKind, LinkPlan};

/// Whether a module with `tags` exception tags can throw at all.
pub(crate) fn can_throw(tags: u32) -> bool {
    tags > 0
}

/// Whether the glue of `kind` calls into a component other than its caller,
/// so that an exception escaping that component must become a trap there.
/// Exports are guarded by [`guard_exports`] instead.
pub(crate) fn crosses(kind: &ImportKind, plan: &LinkPlan, graph: &Graph) -> bool {
    match kind {
        ImportKind::Fused(_) => true,
        ImportKind::Builtin(b) => {
            let builtin = graph.builtin(*b);
            match (&builtin.resource, builtin.kind) {
                (ResourceRef::Defined(r), BuiltinKind::ResourceDrop) => plan.dtors.contains_key(r),
                _ => false,
            }
        }
        ImportKind::Host { .. }
        | ImportKind::Reenter(_)
        | ImportKind::BorrowWrapper(_)
        | ImportKind::DropExport(_)
        | ImportKind::HostCall(_) => false,
    }
}

/// Put the whole body of the glue function `fid` inside a `try_table`
/// whose `catch_all` traps:
///
/// ```text
/// block $escaped
///   try_table (result R) (catch_all $escaped)
///     <the body>
///   end
///   return
/// end
/// unreachable
/// ```
///
/// Branches of the body to the function's own label keep their target
/// (walrus names labels by sequence, not by depth).
pub(crate) fn trap_escaping(module: &mut Module, fid: FunctionId) -> Result<()> {
    let ty = module.funcs.get(fid).ty();
    let results = module.types.get(ty).results().to_vec();
    let inner_ty = InstrSeqType::new(&mut module.types, &[], &results);
    let FunctionKind::Local(local) = &mut module.funcs.get_mut(fid).kind else {
        bail!("internal error: glue function {fid:?} has no body");
    };
    let builder = local.builder_mut();
    let entry = builder.func_body_id();
    let body = std::mem::take(builder.instr_seq(entry).instrs_mut());
    let inner = builder.dangling_instr_seq(inner_ty).id();
    *builder.instr_seq(inner).instrs_mut() = body;
    let escaped = builder.dangling_instr_seq(None).id();
    builder
        .instr_seq(escaped)
        .instr(TryTable { seq: inner, catches: vec![TryTableCatch::CatchAll { label: escaped }] })
        .return_();
    builder.instr_seq(entry).instr(Block { seq: escaped }).unreachable();
    Ok(())
}

/// Reach every exported function and the start function of the module
/// `bytes` through a guard of the same type that calls it inside a
/// `try_table` whose `catch_all` traps. The guards are appended after every
/// function, so no other index moves; a function exported under several
/// names gets one guard.
pub(crate) fn guard_exports(bytes: &[u8]) -> Result<Vec<u8>> {
    // First pass: every function's type, and what the host can call.
    let mut func_types: Vec<u32> = Vec::new();
    let mut params: BTreeMap<u32, u32> = BTreeMap::new(); // type index -> parameter count
    let mut entries: Vec<u32> = Vec::new();
    let mut has_code = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::TypeSection(reader) => {
                let mut index = 0u32;
                for group in reader {
                    for sub in group?.into_types() {
                        if let wasmparser::CompositeInnerType::Func(f) = &sub.composite_type.inner {
                            params.insert(index, u32::try_from(f.params().len()).context("too many parameters")?);
                        }
                        index += 1;
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if let TypeRef::Func(ty) = import?.ty {
                        func_types.push(ty);
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    func_types.push(ty?);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    if export.kind == ExternalKind::Func {
                        entries.push(export.index);
                    }
                }
            }
            Payload::StartSection { func, .. } => entries.push(func),
            Payload::CodeSectionStart { .. } => has_code = true,
            _ => {}
        }
    }
    let mut guarded: BTreeMap<u32, u32> = BTreeMap::new(); // function -> its guard
    let total = u32::try_from(func_types.len()).context("too many functions")?;
    // Guards in the order of the functions they guard (the order `guarded` iterates in).
    entries.sort_unstable();
    entries.dedup();
    for (n, func) in entries.into_iter().enumerate() {
        guarded.insert(func, total + u32::try_from(n).context("too many functions")?);
    }
    if guarded.is_empty() {
        return Ok(bytes.to_vec());
    }
    if !has_code {
        // Every exported function is an import: the lowering refuses that.
        bail!("internal error: a module without code exports functions");
    }
    let type_of = |func: u32| -> Result<u32> {
        func_types.get(func as usize).copied().with_context(|| format!("function {func} has no type"))
    };
    // Second pass: copy every section, changing the four that name the guards.
    let mut out = wasm_encoder::Module::new();
    let mut code: Option<CodeSection> = None;
    let flush = |code: &mut Option<CodeSection>, out: &mut wasm_encoder::Module| -> Result<()> {
        let Some(mut section) = code.take() else { return Ok(()) };
        for func in guarded.keys() {
            let ty = type_of(*func)?;
            let count = params.get(&ty).copied().with_context(|| format!("type {ty} is not a function type"))?;
            section.function(&guard_body(*func, count));
        }
        out.section(&section);
        Ok(())
    };
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        if !matches!(payload, Payload::CodeSectionEntry(_)) {
            flush(&mut code, &mut out)?;
        }
        match payload {
            Payload::FunctionSection(reader) => {
                let mut section = FunctionSection::new();
                for ty in reader {
                    section.function(ty?);
                }
                for func in guarded.keys() {
                    section.function(type_of(*func)?);
                }
                out.section(&section);
            }
            Payload::ExportSection(reader) => {
                let mut section = ExportSection::new();
                for export in reader {
                    let export = export?;
                    let index = match export.kind {
                        ExternalKind::Func => guarded.get(&export.index).copied().unwrap_or(export.index),
                        _ => export.index,
                    };
                    section.export(export.name, ExportKind::from(export.kind), index);
                }
                out.section(&section);
            }
            Payload::StartSection { func, .. } => {
                let function_index = guarded.get(&func).copied().unwrap_or(func);
                out.section(&wasm_encoder::StartSection { function_index });
            }
            Payload::CodeSectionStart { .. } => code = Some(CodeSection::new()),
            Payload::CodeSectionEntry(body) => {
                code.as_mut().context("a function body outside the code section")?.raw(raw(bytes, body.range())?);
            }
            Payload::Version { .. } | Payload::End(_) => {}
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&wasm_encoder::RawSection { id, data: raw(bytes, range)? });
                }
            }
        }
    }
    flush(&mut code, &mut out)?;
    Ok(out.finish())
}

/// `(param ...) local.get 0 .. local.get n-1, call func` inside the
/// trapping `try_table`, returning what `func` returns.
fn guard_body(func: u32, params: u32) -> Function {
    let mut f = Function::new([]);
    f.instruction(&Instruction::Block(BlockType::Empty));
    f.instruction(&Instruction::TryTable(BlockType::Empty, vec![Catch::All { label: 0 }].into()));
    for p in 0..params {
        f.instruction(&Instruction::LocalGet(p));
    }
    f.instruction(&Instruction::Call(func));
    // `return` takes the results from inside the `try_table`, so both
    // blocks stay empty-typed and no type is added.
    f.instruction(&Instruction::Return);
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::End);
    f.instruction(&Instruction::Unreachable);
    f.instruction(&Instruction::End);
    f
}

fn raw(bytes: &[u8], range: std::ops::Range<usize>) -> Result<&[u8]> {
    bytes.get(range).context("a section runs past the end of the module")
}
