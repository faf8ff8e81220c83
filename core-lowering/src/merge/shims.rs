//! Shim/fixup tables, resolved by structure on the instance graph.
//!
//! Owns: finding wit-component's shim functions (whatever they are named)
//! and the function each one's table slot holds, so the merge can point
//! every reference to a shim at that function. Leaves encoding to `merge`.
//!
//! wit-component routes lowered imports through a shim module (functions
//! that `call_indirect` through a table) and a fixup module (an active
//! element segment filling that table). Names differ between wit-component
//! versions, so this looks at structure only. A table qualifies when every
//! write to it is an active element segment at a constant offset: no
//! instance that can reach it uses `table.set`, `table.grow`, `table.fill`,
//! `table.init` or `table.copy` into it (the output never exports tables).
//! A function whose whole body is "forward every parameter, `i32.const k`,
//! `call_indirect` of such a table" is a shim; it resolves to slot `k`'s
//! function when that function has the call's type. This is a heuristic
//! on structure: anything that does not match keeps its indirection,
//! which stays correct.
//!
//! Only modules that can reach a shim table have their code scanned for
//! table writes (the shim and fixup modules: a few hundred bytes), so this
//! costs little on large components.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use wasmparser::{ElementItems, ElementKind, ExternalKind, FunctionBody, Operator, Parser, Payload};

use super::{FuncTarget, Layout, callee_type, is_func, is_table};
use crate::graph::ModuleInstanceId;
use crate::parse::ParsedComponent;

/// A table by its defining instance and defined index.
type TableKey = (ModuleInstanceId, u32);

struct Shim {
    func: (ModuleInstanceId, u32),
    table: TableKey,
    slot: u32,
    /// The `call_indirect` type, as an index into the shim's module.
    ty: u32,
}

/// Every shim (by instance and defined function index) and the function it
/// resolves to, chains of shims followed to their end.
pub(super) fn find(
    layout: &Layout<'_>,
    parsed: &ParsedComponent<'_>,
    targets: &[Vec<Option<FuncTarget>>],
) -> Result<BTreeMap<(ModuleInstanceId, u32), FuncTarget>> {
    // Each instance's table index space, resolved to defining instances.
    let mut tables: Vec<Vec<TableKey>> = Vec::new();
    for (i, instance) in layout.graph.instances.iter().enumerate() {
        let id = ModuleInstanceId(i);
        let info = layout.info(id);
        let mut keys = Vec::new();
        for (import, def) in info.imports.iter().zip(&instance.imports) {
            if is_table(&import.ty) {
                keys.push(layout.item(def, ExternalKind::Table)?);
            }
        }
        keys.extend((0..info.defined_tables).map(|d| (id, d)));
        tables.push(keys);
    }

    let mut shims = Vec::new();
    for ((i, instance), keys) in layout.graph.instances.iter().enumerate().zip(&tables) {
        if keys.is_empty() {
            continue;
        }
        let id = ModuleInstanceId(i);
        let info = layout.info(id);
        let mut defined = 0u32;
        for payload in Parser::new(0).parse_all(parsed.module(instance.module).bytes) {
            if let Payload::CodeSectionEntry(body) = payload? {
                let params = info.func_type(info.imported_funcs + defined).map_or(0, |t| t.params().len());
                if let Some((table, slot, ty)) = shim_body(&body, params)
                    && let Some(key) = keys.get(table as usize)
                {
                    shims.push(Shim { func: (id, defined), table: *key, slot, ty });
                }
                defined += 1;
            }
        }
    }
    if shims.is_empty() {
        return Ok(BTreeMap::new());
    }
    let candidates: BTreeSet<TableKey> = shims.iter().map(|s| s.table).collect();

    // Slots written by active segments; tables written any other way.
    let mut slots: BTreeMap<(TableKey, u32), Option<FuncTarget>> = BTreeMap::new();
    let mut disqualified: BTreeSet<TableKey> = BTreeSet::new();
    for ((i, instance), keys) in layout.graph.instances.iter().enumerate().zip(&tables) {
        if !keys.iter().any(|k| candidates.contains(k)) {
            continue;
        }
        let id = ModuleInstanceId(i);
        let info = layout.info(id);
        let target_of = |f: u32| -> Result<Option<FuncTarget>> {
            if f < info.imported_funcs {
                let pos = layout.nth_import(id, is_func, f)?;
                Ok(targets.get(i).and_then(|t| t.get(pos)).copied().flatten())
            } else {
                Ok(Some(FuncTarget::Defined(id, f - info.imported_funcs)))
            }
        };
        for payload in Parser::new(0).parse_all(parsed.module(instance.module).bytes) {
            if let Payload::ElementSection(reader) = payload? {
                {
                    for element in reader {
                        let element = element?;
                        let ElementKind::Active { table_index, offset_expr } = element.kind else { continue };
                        let Some(key) = keys.get(table_index.unwrap_or(0) as usize).copied() else { continue };
                        if !candidates.contains(&key) {
                            continue;
                        }
                        let mut ops = offset_expr.get_operators_reader();
                        let base = match (ops.read()?, ops.read()?) {
                            (Operator::I32Const { value }, Operator::End) => value as u32,
                            _ => {
                                disqualified.insert(key);
                                continue;
                            }
                        };
                        let mut items = Vec::new();
                        match element.items {
                            ElementItems::Functions(reader) => {
                                for f in reader {
                                    items.push(target_of(f?)?);
                                }
                            }
                            ElementItems::Expressions(_, reader) => {
                                for expr in reader {
                                    let mut ops = expr?.get_operators_reader();
                                    items.push(match (ops.read()?, ops.read()?) {
                                        (Operator::RefFunc { function_index }, Operator::End) => {
                                            target_of(function_index)?
                                        }
                                        _ => None,
                                    });
                                }
                            }
                        }
                        for (j, item) in items.into_iter().enumerate() {
                            slots.insert((key, base.wrapping_add(j as u32)), item);
                        }
                    }
                }
            }
        }
    }
    // Table writes in code, only where a table is still in question
    // (segments at a non-constant offset already ruled out, for example,
    // the dynamically linked `__indirect_function_table`).
    for ((i, instance), keys) in layout.graph.instances.iter().enumerate().zip(&tables) {
        let open = |disqualified: &BTreeSet<TableKey>| {
            keys.iter().any(|k| candidates.contains(k) && !disqualified.contains(k))
        };
        if !open(&disqualified) {
            continue;
        }
        let location = &layout.graph.instance(ModuleInstanceId(i)).location;
        for payload in Parser::new(0).parse_all(parsed.module(instance.module).bytes) {
            let Payload::CodeSectionEntry(body) = payload? else { continue };
            if !open(&disqualified) {
                break;
            }
            let mut ops = body.get_operators_reader().with_context(|| format!("failed to read `{location}`"))?;
            while !ops.eof() {
                let written = match ops.read()? {
                    Operator::TableSet { table }
                    | Operator::TableGrow { table }
                    | Operator::TableFill { table }
                    | Operator::TableInit { table, .. } => Some(table),
                    Operator::TableCopy { dst_table, .. } => Some(dst_table),
                    _ => None,
                };
                if let Some(key) = written.and_then(|t| keys.get(t as usize)) {
                    disqualified.insert(*key);
                }
            }
        }
    }

    let mut redirect: BTreeMap<(ModuleInstanceId, u32), FuncTarget> = BTreeMap::new();
    for shim in &shims {
        if disqualified.contains(&shim.table) {
            continue;
        }
        let Some(Some(target)) = slots.get(&(shim.table, shim.slot)).copied() else { continue };
        if target == FuncTarget::Defined(shim.func.0, shim.func.1) {
            continue;
        }
        // The slot's function must have the call's type, or the
        // call_indirect would trap; keep those as they are.
        let want = layout.info(shim.func.0).types.get(shim.ty as usize).cloned().flatten();
        let have = callee_type(layout, target)?;
        if want.is_some() && want == have {
            redirect.insert(shim.func, target);
        }
    }
    // A shim may point at another shim; follow to the end.
    let mut resolved = BTreeMap::new();
    for (shim, first) in &redirect {
        let mut target = *first;
        for _ in 0..redirect.len() {
            match target {
                FuncTarget::Defined(id, d) => match redirect.get(&(id, d)) {
                    Some(next) => target = *next,
                    None => break,
                },
                FuncTarget::Import(_) => break,
            }
        }
        resolved.insert(*shim, target);
    }
    Ok(resolved)
}

/// `(table, slot, type)` when `body` is exactly: `local.get` of each of
/// its `params` in order, `i32.const slot`, `call_indirect type table`.
fn shim_body(body: &FunctionBody<'_>, params: usize) -> Option<(u32, u32, u32)> {
    if body.get_locals_reader().ok()?.get_count() != 0 {
        return None;
    }
    let mut ops = body.get_operators_reader().ok()?;
    for p in 0..params {
        match ops.read().ok()? {
            Operator::LocalGet { local_index } if local_index as usize == p => {}
            _ => return None,
        }
    }
    let Operator::I32Const { value } = ops.read().ok()? else { return None };
    let Operator::CallIndirect { type_index, table_index } = ops.read().ok()? else { return None };
    let Operator::End = ops.read().ok()? else { return None };
    ops.eof().then_some((table_index, value as u32, type_index))
}
