//! Which copied functions the output keeps.
//!
//! Owns: reachability over the instance graph, so the merge copies only
//! functions something can call. Leaves encoding to `merge`.
//!
//! Roots: the boundary exports, post-returns and reallocs, whatever the
//! glue calls, every instance's start function, and every function an
//! element segment or a global's initializer names (tables are kept whole,
//! so anything in them may be called indirectly). Edges: `call`,
//! `return_call` and `ref.func` in the bodies of live functions, with
//! imports followed to their providers and shims to their slots. What is
//! left out is usually the shim and fixup modules' functions and code of
//! dynamically linked libraries no export reaches. Host imports are kept
//! even when nothing live calls them (dropping one renumbers nothing, but
//! hosts may expect the import list the component declares).

use std::collections::BTreeSet;

use anyhow::Result;
use wasmparser::{ElementItems, Operator, Parser, Payload};

use super::{FuncTarget, Layout, is_func};
use crate::graph::ModuleInstanceId;
use crate::parse::ParsedComponent;

/// Per instance, per defined function: is it live?
pub(super) fn live_functions(
    layout: &Layout<'_>,
    parsed: &ParsedComponent<'_>,
    targets: &[Vec<Option<FuncTarget>>],
    roots: &[FuncTarget],
) -> Result<Vec<Vec<bool>>> {
    let mut callees: Vec<Vec<Vec<u32>>> = Vec::new();
    let mut instance_roots: Vec<FuncTarget> = roots.to_vec();
    // Per instance: module function index of each import -> import position.
    let mut import_positions: Vec<Vec<usize>> = Vec::new();
    for (i, instance) in layout.graph.instances.iter().enumerate() {
        let id = ModuleInstanceId(i);
        let info = layout.info(id);
        import_positions
            .push(info.imports.iter().enumerate().filter(|(_, imp)| is_func(&imp.ty)).map(|(p, _)| p).collect());
        let resolve = |f: u32| -> Option<FuncTarget> {
            if f < info.imported_funcs {
                let pos = *import_positions.last()?.get(f as usize)?;
                targets.get(i)?.get(pos).copied().flatten()
            } else {
                Some(FuncTarget::Defined(id, f - info.imported_funcs))
            }
        };
        let mut bodies: Vec<Vec<u32>> = Vec::new();
        for payload in Parser::new(0).parse_all(parsed.module(instance.module).bytes) {
            match payload? {
                Payload::StartSection { func, .. } => instance_roots.extend(resolve(func)),
                Payload::ElementSection(reader) => {
                    for element in reader {
                        match element?.items {
                            ElementItems::Functions(fs) => {
                                for f in fs {
                                    instance_roots.extend(resolve(f?));
                                }
                            }
                            ElementItems::Expressions(_, exprs) => {
                                for expr in exprs {
                                    let mut ops = expr?.get_operators_reader();
                                    while !ops.eof() {
                                        if let Operator::RefFunc { function_index } = ops.read()? {
                                            instance_roots.extend(resolve(function_index));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Payload::GlobalSection(reader) => {
                    for global in reader {
                        let mut ops = global?.init_expr.get_operators_reader();
                        while !ops.eof() {
                            if let Operator::RefFunc { function_index } = ops.read()? {
                                instance_roots.extend(resolve(function_index));
                            }
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let mut calls = Vec::new();
                    let mut ops = body.get_operators_reader()?;
                    while !ops.eof() {
                        match ops.read()? {
                            Operator::Call { function_index }
                            | Operator::ReturnCall { function_index }
                            | Operator::RefFunc { function_index } => calls.push(function_index),
                            _ => {}
                        }
                    }
                    bodies.push(calls);
                }
                _ => {}
            }
        }
        callees.push(bodies);
    }

    let mut live: Vec<Vec<bool>> =
        layout.infos.iter().map(|info| vec![false; info.defined_funcs as usize]).collect();
    let mut seen: BTreeSet<(usize, u32)> = BTreeSet::new();
    let mut work: Vec<FuncTarget> = instance_roots;
    while let Some(target) = work.pop() {
        let FuncTarget::Defined(id, d) = layout.redirected(target) else { continue };
        if !seen.insert((id.0, d)) {
            continue;
        }
        if let Some(slot) = live.get_mut(id.0).and_then(|l| l.get_mut(d as usize)) {
            *slot = true;
        }
        let info = layout.info(id);
        let Some(calls) = callees.get(id.0).and_then(|c| c.get(d as usize)) else { continue };
        for &f in calls {
            let next = if f < info.imported_funcs {
                import_positions
                    .get(id.0)
                    .and_then(|p| p.get(f as usize))
                    .and_then(|pos| targets.get(id.0)?.get(*pos).copied().flatten())
            } else {
                Some(FuncTarget::Defined(id, f - info.imported_funcs))
            };
            work.extend(next);
        }
    }
    Ok(live)
}
