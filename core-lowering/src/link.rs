//! Phase 4: turn the merged binary into the final module with walrus.
//!
//! Owns: replacing `merge`'s placeholder imports with generated code
//! (resource builtins, fused adapters, borrow wrappers, host-facing
//! drops), resolving shim/fixup `call_indirect` tables to direct calls by
//! structure, dropping what nothing uses, and the `karmem:idl` and
//! `producers` custom sections. Leaves validation to `lib`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow};
use walrus::ir::{Instr, Value, VisitorMut};
use walrus::{
    ConstExpr, ElementItems, ElementKind, ExportItem, FunctionId, MemoryId, Module,
    ModuleConfig, RawCustomSection, TableId,
};

use crate::builtins::{HandleTable, ResourceFuncs};
use crate::graph::{BuiltinKind, DefinedResourceId, Graph, ResourceRef};
use crate::merge::{ImportKind, Merged};

/// Name of the custom section that carries the IDL text.
pub const IDL_SECTION: &str = "karmem:idl";
/// Name of the custom section that tells a canonical-ABI host which memory,
/// realloc and string encoding each exported and imported function uses
/// (JSON: a list of `{kind, name, memory, realloc, string-encoding}`).
pub const CANONICAL_ABI_SECTION: &str = "karmem:canonical-abi";

/// One entry of the [`CANONICAL_ABI_SECTION`]: the memory, realloc and
/// string encoding one boundary function uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct BoundaryEntry {
    /// `export` or `import`.
    pub kind: String,
    /// `iface#fn`: the export's name, or the import's module and field.
    pub name: String,
    pub memory: Option<String>,
    pub realloc: Option<String>,
    #[serde(rename = "string-encoding")]
    pub string_encoding: String,
}

/// The [`CANONICAL_ABI_SECTION`] of a lowered module (empty when it has none).
pub fn read_canonical_abi(module: &[u8]) -> Result<Vec<BoundaryEntry>> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::CustomSection(section) = payload.context("failed to read the lowered module")? {
            if section.name() == CANONICAL_ABI_SECTION {
                return serde_json::from_slice(section.data())
                    .with_context(|| format!("the `{CANONICAL_ABI_SECTION}` section is malformed"));
            }
        }
    }
    Ok(Vec::new())
}

/// Statistics of a link, for `inspect` and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkStats {
    /// Shim functions whose callers now call the target directly.
    pub shims_resolved: usize,
}

pub fn link(merged: &Merged, graph: &Graph, idl: &str) -> Result<(Vec<u8>, LinkStats)> {
    let mut config = ModuleConfig::new();
    config.generate_producers_section(true);
    let mut module = config
        .parse(&merged.bytes)
        .map_err(|e| anyhow!("{e:#}"))
        .context("walrus could not read the merged module")?;
    let func_ids: Vec<FunctionId> = module.funcs.iter().map(|f| f.id()).collect();
    let memory_ids: Vec<MemoryId> = module.memories.iter().map(|m| m.id()).collect();
    let func = |index: u32| -> Result<FunctionId> {
        func_ids.get(index as usize).copied().with_context(|| format!("function {index} is missing"))
    };
    let plan = &merged.plan;

    // Handle tables for every defined resource that needs one.
    let mut needed: Vec<DefinedResourceId> = Vec::new();
    for import in &plan.imports {
        let resource = match &import.kind {
            ImportKind::Builtin(b) => match &graph.builtin(*b).resource {
                ResourceRef::Defined(r) => Some(*r),
                ResourceRef::Imported(_) => None,
            },
            ImportKind::DropExport(r) => Some(*r),
            _ => None,
        };
        needed.extend(resource);
    }
    for (_, borrows) in &plan.wrappers {
        needed.extend(borrows.iter().map(|(_, r)| *r));
    }
    for fused in plan.fused.values() {
        needed.extend(fused.borrows.iter().map(|(_, r)| *r));
    }
    needed.sort();
    needed.dedup();
    let mut resource_funcs: BTreeMap<DefinedResourceId, ResourceFuncs> = BTreeMap::new();
    if !needed.is_empty() {
        let memory = match plan.builtin_memory {
            Some(m) => *memory_ids.get(m.0 as usize).context("the builtins' memory is missing")?,
            None => module.memories.add_local(false, false, 0, None, None),
        };
        for r in needed {
            let table = HandleTable::new(&mut module, memory);
            let dtor = match plan.dtors.get(&r) {
                Some(d) => Some(func(d.0)?),
                None => None,
            };
            let name = graph
                .resource(r)
                .export_name
                .as_ref()
                .map(|(i, n)| format!("{i}#{n}"))
                .unwrap_or_else(|| format!("resource {}", r.0));
            resource_funcs.insert(r, table.generate(&mut module, dtor, &name));
        }
    }

    // Replace each placeholder with its code.
    for (k, import) in plan.imports.iter().enumerate() {
        let fid = func(k as u32)?;
        match &import.kind {
            ImportKind::Host { .. } => {}
            ImportKind::Builtin(b) => {
                let builtin = graph.builtin(*b);
                let ResourceRef::Defined(r) = &builtin.resource else { continue };
                let funcs = resource_funcs.get(r).context("handle table missing")?;
                let target = match builtin.kind {
                    BuiltinKind::ResourceNew => funcs.new,
                    BuiltinKind::ResourceRep => funcs.rep,
                    BuiltinKind::ResourceDrop => funcs.drop,
                };
                forward(&mut module, fid, target)?;
            }
            ImportKind::DropExport(r) => {
                let funcs = resource_funcs.get(r).context("handle table missing")?;
                forward(&mut module, fid, funcs.drop)?;
            }
            ImportKind::Fused(l) => {
                let fused = plan.fused.get(l).context("fused adapter missing")?;
                let callee = func(fused.callee.0)?;
                let post = fused.post_return.map(|p| func(p.0)).transpose()?;
                if let Some(copy) = &fused.copy {
                    let memory = |m: crate::merge::MemoryIndex| -> Result<MemoryId> {
                        memory_ids.get(m.0 as usize).copied().context("memory missing")
                    };
                    let ids = crate::adapter::CopyIds {
                        caller_memory: memory(copy.caller_memory)?,
                        callee_memory: memory(copy.callee_memory)?,
                        caller_realloc: copy.caller_realloc.map(|r| func(r.0)).transpose()?,
                        callee_realloc: copy.callee_realloc.map(|r| func(r.0)).transpose()?,
                        callee,
                        post_return: post,
                    };
                    crate::adapter::generate(&mut module, fid, &ids, &copy.params, copy.result)?;
                    continue;
                }
                let mut reps = BTreeMap::new();
                for (pos, r) in &fused.borrows {
                    reps.insert(*pos, resource_funcs.get(r).context("handle table missing")?.rep);
                }
                let results: Vec<_> = import
                    .ty
                    .results()
                    .iter()
                    .map(|t| walrus_val(*t).map(|t| module.locals.add(t)))
                    .collect::<Result<_>>()?;
                module
                    .replace_imported_func(fid, |(body, args)| {
                        for (i, a) in args.iter().enumerate() {
                            body.local_get(*a);
                            if let Some(rep) = reps.get(&i) {
                                body.call(*rep);
                            }
                        }
                        body.call(callee);
                        if let Some(post) = post {
                            for r in results.iter().rev() {
                                body.local_set(*r);
                            }
                            for r in &results {
                                body.local_get(*r);
                            }
                            body.call(post);
                            for r in &results {
                                body.local_get(*r);
                            }
                        }
                    })
                    .map_err(|e| anyhow!("{e:#}"))?;
            }
            ImportKind::BorrowWrapper(w) => {
                let (callee, borrows) = plan.wrappers.get(*w).context("borrow wrapper missing")?;
                let callee = func(callee.0)?;
                let mut reps = BTreeMap::new();
                for (pos, r) in borrows {
                    reps.insert(*pos, resource_funcs.get(r).context("handle table missing")?.rep);
                }
                module
                    .replace_imported_func(fid, |(body, args)| {
                        for (i, a) in args.iter().enumerate() {
                            body.local_get(*a);
                            if let Some(rep) = reps.get(&i) {
                                body.call(*rep);
                            }
                        }
                        body.call(callee);
                    })
                    .map_err(|e| anyhow!("{e:#}"))?;
            }
        }
    }

    let stats = LinkStats { shims_resolved: resolve_shim_tables(&mut module) };
    walrus::passes::gc::run(&mut module);

    // Only our own section and the producers entry survive.
    let customs: Vec<_> = module.customs.iter().map(|(id, _)| id).collect();
    for id in customs {
        module.customs.delete(id);
    }
    module.customs.add(RawCustomSection { name: IDL_SECTION.to_string(), data: idl.as_bytes().to_vec() });
    module.customs.add(RawCustomSection {
        name: CANONICAL_ABI_SECTION.to_string(),
        data: merged.plan.canonical_abi.as_bytes().to_vec(),
    });
    module.producers.clear();
    module.producers.add_processed_by("karmem-bridge", env!("CARGO_PKG_VERSION"));
    Ok((module.emit_wasm(), stats))
}

fn walrus_val(t: wasmparser::ValType) -> Result<walrus::ValType> {
    Ok(match t {
        wasmparser::ValType::I32 => walrus::ValType::I32,
        wasmparser::ValType::I64 => walrus::ValType::I64,
        wasmparser::ValType::F32 => walrus::ValType::F32,
        wasmparser::ValType::F64 => walrus::ValType::F64,
        wasmparser::ValType::V128 => walrus::ValType::V128,
        wasmparser::ValType::Ref(_) => anyhow::bail!("reference types cannot cross a fused call"),
    })
}

/// Turn the placeholder import `fid` into a function calling `target`.
fn forward(module: &mut Module, fid: FunctionId, target: FunctionId) -> Result<()> {
    module
        .replace_imported_func(fid, |(body, args)| {
            for a in args {
                body.local_get(*a);
            }
            body.call(target);
        })
        .map_err(|e| anyhow!("{e:#}"))?;
    Ok(())
}

/// Find tables that behave like wit-component's shim tables, whatever they
/// are named: defined here, not exported, filled only by active element
/// segments at constant offsets, and otherwise only read by
/// `call_indirect`. A function whose whole body forwards its parameters to
/// `call_indirect` of a constant slot of such a table is a shim; every
/// direct call to it becomes a call to the slot's function. Returns how
/// many shims were resolved. This is a heuristic on structure: anything
/// that does not match is left as it is, which stays correct.
pub fn resolve_shim_tables(module: &mut Module) -> usize {
    // Tables touched by anything but call_indirect are not constant.
    let mut mutated: Vec<TableId> = Vec::new();
    for (_, f) in module.funcs.iter_local() {
        walrus::ir::dfs_in_order(&mut TableWrites { out: &mut mutated }, f, f.entry_block());
    }
    let exported: Vec<TableId> = module
        .exports
        .iter()
        .filter_map(|e| match e.item {
            ExportItem::Table(t) => Some(t),
            _ => None,
        })
        .collect();
    let mut slots: BTreeMap<(TableId, u32), Option<FunctionId>> = BTreeMap::new();
    let mut constant_tables: Vec<TableId> = Vec::new();
    for table in module.tables.iter() {
        let id = table.id();
        if table.import.is_some() || exported.contains(&id) || mutated.contains(&id) {
            continue;
        }
        let mut ok = true;
        let mut table_slots = Vec::new();
        for element in module.elements.iter() {
            match &element.kind {
                ElementKind::Active { table, offset } if *table == id => {
                    let ConstExpr::Value(Value::I32(base)) = offset else {
                        ok = false;
                        break;
                    };
                    let items: Vec<Option<FunctionId>> = match &element.items {
                        ElementItems::Functions(fs) => fs.iter().copied().map(Some).collect(),
                        ElementItems::Expressions(_, exprs) => exprs
                            .iter()
                            .map(|e| match e {
                                ConstExpr::RefFunc(f) => Some(*f),
                                _ => None,
                            })
                            .collect(),
                    };
                    for (j, f) in items.into_iter().enumerate() {
                        table_slots.push(((*base as u32).wrapping_add(j as u32), f));
                    }
                }
                _ => {}
            }
        }
        if ok {
            constant_tables.push(id);
            for (slot, f) in table_slots {
                slots.insert((id, slot), f);
            }
        }
    }
    if constant_tables.is_empty() {
        return 0;
    }

    // Find shims.
    let mut redirect: BTreeMap<FunctionId, FunctionId> = BTreeMap::new();
    for (fid, f) in module.funcs.iter_local() {
        let instrs = &f.block(f.entry_block()).instrs;
        let args = f.args.len();
        if instrs.len() != args + 2 {
            continue;
        }
        let forwards = instrs.iter().take(args).enumerate().all(|(i, (instr, _))| {
            matches!(instr, Instr::LocalGet(g) if f.args.get(i) == Some(&g.local))
        });
        if !forwards {
            continue;
        }
        let (Some((Instr::Const(c), _)), Some((Instr::CallIndirect(ci), _))) = (instrs.get(args), instrs.get(args + 1))
        else {
            continue;
        };
        let Value::I32(slot) = c.value else { continue };
        if !constant_tables.contains(&ci.table) {
            continue;
        }
        let Some(Some(target)) = slots.get(&(ci.table, slot as u32)) else { continue };
        // The slot's function must have the call's signature, or the
        // call_indirect would trap; keep those as they are.
        let target_ty = module.funcs.get(*target).ty();
        let want = module.types.get(ci.ty);
        let have = module.types.get(target_ty);
        if want.params() == have.params() && want.results() == have.results() && *target != fid {
            redirect.insert(fid, *target);
        }
    }
    // A shim may point at another shim; follow to the end.
    let resolved: BTreeMap<FunctionId, FunctionId> = redirect
        .keys()
        .map(|k| {
            let mut t = redirect[k];
            let mut hops = 0;
            while let Some(next) = redirect.get(&t) {
                t = *next;
                hops += 1;
                if hops > redirect.len() {
                    break;
                }
            }
            (*k, t)
        })
        .collect();
    let mut rewriter = Redirect { map: &resolved };
    for (_, f) in module.funcs.iter_local_mut() {
        let entry = f.entry_block();
        walrus::ir::dfs_pre_order_mut(&mut rewriter, f, entry);
    }
    resolved.len()
}

struct TableWrites<'a> {
    out: &'a mut Vec<TableId>,
}

impl<'instr> walrus::ir::Visitor<'instr> for TableWrites<'_> {
    fn visit_instr(&mut self, instr: &'instr Instr, _: &'instr walrus::InstrLocId) {
        match instr {
            Instr::TableSet(t) => self.out.push(t.table),
            Instr::TableGrow(t) => self.out.push(t.table),
            Instr::TableFill(t) => self.out.push(t.table),
            Instr::TableInit(t) => self.out.push(t.table),
            Instr::TableCopy(t) => self.out.push(t.dst),
            _ => {}
        }
    }
}

struct Redirect<'a> {
    map: &'a BTreeMap<FunctionId, FunctionId>,
}

impl VisitorMut for Redirect<'_> {
    fn visit_instr_mut(&mut self, instr: &mut Instr, _: &mut walrus::InstrLocId) {
        match instr {
            Instr::Call(c) => {
                if let Some(t) = self.map.get(&c.func) {
                    c.func = *t;
                }
            }
            Instr::ReturnCall(c) => {
                if let Some(t) = self.map.get(&c.func) {
                    c.func = *t;
                }
            }
            _ => {}
        }
    }
}
