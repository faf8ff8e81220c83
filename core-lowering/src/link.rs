//! Phase 4: generate the glue and assemble the final module.
//!
//! Owns: the code of `merge`'s placeholders (resource builtins, fused and
//! copying adapters, borrow wrappers, host-facing drops), built with
//! walrus in a small module of its own and re-encoded into the merged
//! sections, and the `karmem:idl`, `karmem:canonical-abi` and `producers`
//! custom sections. The copied instance code never goes through walrus
//! (parsing and emitting 16 MB of it dominated `lower`'s time). Leaves
//! shim/fixup resolution to `merge` and validation to `lib`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, anyhow, bail};
use walrus::{FunctionId, GlobalId, LocalId, MemoryId, Module, ValType};
use wasm_encoder::reencode::{Error as ReencodeError, Reencode, utils};
use wasm_encoder::{CustomSection, ProducersField, ProducersSection};
use wasmparser::{Parser, Payload, TypeRef};

use crate::builtins::{HandleTable, ResourceFuncs, borrow_scope};
use crate::graph::{BuiltinKind, DefinedResourceId, Graph, ImportPath, ResourceRef};
use crate::merge::{
    BorrowParam, FuncIndex, INTERNAL_MODULE, ImportKind, InPlace, InstanceMaps, LinkPlan, MemoryIndex, Merged, Sections,
};
use crate::types::ValTy;

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
        if let wasmparser::Payload::CustomSection(section) = payload.context("failed to read the lowered module")?
            && section.name() == CANONICAL_ABI_SECTION
        {
            return serde_json::from_slice(section.data())
                .with_context(|| format!("the `{CANONICAL_ABI_SECTION}` section is malformed"));
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

/// Generate the glue (every placeholder's code) and assemble the output.
///
/// The copied instance code never goes through walrus: `merge` encoded it
/// with final indices, leaving the placeholders' indices for the glue. The
/// glue is built as a small walrus module that imports the merged
/// functions and memories it uses (`f`/`m`, named by final index) and
/// exports each placeholder (`p<k>`); its code is then re-encoded into the
/// merged sections with those indices.
pub fn link(merged: &Merged, graph: &Graph, idl: &str) -> Result<(Vec<u8>, LinkStats)> {
    let plan = &merged.plan;
    let mut sections = merged.sections.clone();
    let throws = crate::exceptions::can_throw(merged.sections.tags.len());
    if let Some(glue) = build_glue(plan, graph, throws)? {
        splice(&mut sections, plan, &glue).context("failed to add the generated code")?;
    }
    let idl_section = CustomSection { name: IDL_SECTION.into(), data: idl.as_bytes().into() };
    let abi_section =
        CustomSection { name: CANONICAL_ABI_SECTION.into(), data: plan.canonical_abi.as_bytes().into() };
    let mut producers = ProducersSection::new();
    let mut processed_by = ProducersField::new();
    processed_by.value("karmem-bridge", env!("CARGO_PKG_VERSION"));
    producers.field("processed-by", &processed_by);
    // Who owns which memory, for the partition pass; only when there is
    // more than one.
    let mut customs = vec![idl_section, abi_section];
    if plan.memory_owners.len() > 1 {
        let owners = karmem_partition::section::encode_owners(&plan.memory_owners)?;
        customs.push(CustomSection { name: karmem_partition::section::OWNERS_SECTION.into(), data: owners.into() });
    }
    let bytes = sections.finish(&customs, &producers);
    Ok((bytes, LinkStats { shims_resolved: plan.shims_resolved }))
}

/// Import module of the merged functions the glue calls (field: final index).
const GLUE_FUNCS: &str = "f";
/// Import module of the merged memories the glue uses (field: final index).
const GLUE_MEMORIES: &str = "m";

/// The glue module, or `None` when nothing needs generated code.
/// With `throws`, each glue function that enters another component traps on
/// an exception escaping it (`exceptions::trap_escaping`).
fn build_glue(plan: &LinkPlan, graph: &Graph, throws: bool) -> Result<Option<Vec<u8>>> {
    let mut module = Module::default();
    // Placeholders first: their arena order is their final order.
    let mut holders: BTreeMap<usize, FunctionId> = BTreeMap::new();
    for (k, import) in plan.imports.iter().enumerate() {
        if matches!(import.kind, ImportKind::Host { .. }) {
            continue;
        }
        let ty = walrus_type(&mut module, &import.ty)?;
        holders.insert(k, module.add_import_func(INTERNAL_MODULE, &format!("p{k}"), ty).0);
    }
    if holders.is_empty() {
        return Ok(None);
    }
    let mut called: BTreeMap<u32, FunctionId> = BTreeMap::new();
    for (index, ty) in &plan.func_types {
        let ty = walrus_type(&mut module, ty)?;
        called.insert(index.0, module.add_import_func(GLUE_FUNCS, &index.0.to_string(), ty).0);
    }
    let func = |index: u32| -> Result<FunctionId> {
        called.get(&index).copied().with_context(|| format!("function {index} is missing"))
    };
    let mut memories: BTreeMap<u32, MemoryId> = BTreeMap::new();
    let used = plan
        .builtin_memory
        .into_iter()
        .chain(plan.fused.values().filter_map(|f| f.copy.as_ref()).flat_map(|c| [c.caller_memory, c.callee_memory]))
        .chain(plan.wrappers.iter().filter(|w| !w.in_place.is_empty()).filter_map(|w| w.memory));
    for m in used {
        if let std::collections::btree_map::Entry::Vacant(slot) = memories.entry(m.0) {
            slot.insert(module.add_import_memory(GLUE_MEMORIES, &m.0.to_string(), false, false, 0, None, None).0);
        }
    }
    let memory = |m: MemoryIndex| -> Result<MemoryId> {
        memories.get(&m.0).copied().with_context(|| format!("memory {} is missing", m.0))
    };

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
    let defined = |ty: &ValTy| -> Vec<DefinedResourceId> {
        ty.borrowed()
            .filter_map(|r| match r {
                ResourceRef::Defined(id) => Some(*id),
                ResourceRef::Imported(_) => None,
            })
            .collect()
    };
    for wrapper in &plan.wrappers {
        needed.extend(wrapper.borrows.iter().map(|b| b.resource));
        needed.extend(wrapper.own_result);
        for fix in &wrapper.in_place {
            match fix {
                InPlace::List { elem, .. } => needed.extend(defined(elem)),
                InPlace::Memory { ty } => needed.extend(defined(ty)),
            }
        }
    }
    for (l, fused) in &plan.fused {
        if fused.copy.is_none() {
            let (owns, own_result) = fused_owns(graph, *l);
            needed.extend(owns.iter().map(|(_, r)| *r).chain(own_result));
        }
        needed.extend(fused.borrows.iter().map(|b| b.resource));
        needed.extend(fused.copy.iter().flat_map(|c| c.borrow_reps.iter().copied()));
        if let Some(c) = &fused.copy {
            let mut opaque = false;
            let mut crossing = BTreeSet::new();
            c.params.iter().chain(c.result.as_ref()).for_each(|t| defined_resources(t, &mut crossing, &mut opaque));
            needed.extend(crossing);
        }
    }
    needed.sort();
    needed.dedup();
    // Imported resources held in tables: per holding instance.
    let mut imported_needed: BTreeMap<(usize, ImportPath), Option<FunctionId>> = BTreeMap::new();
    for call in plan.host_calls.values() {
        for r in call.params.iter().map(|h| &h.resource).chain(call.result.iter()) {
            imported_needed.entry((call.owner, r.clone())).or_insert(None);
        }
    }
    for (b, host_drop) in &plan.host_drops {
        let builtin = graph.builtin(*b);
        let ResourceRef::Imported(path) = &builtin.resource else { bail!("a host drop of a defined resource") };
        imported_needed.insert((builtin.owner, path.clone()), Some(func(host_drop.0)?));
    }
    // Host handles passed between components move between their tables.
    for l in plan.fused.keys() {
        let (owns, result) = fused_imported_owns(plan, graph, *l);
        if let (Some((caller, callee)), true) = (fused_instances(graph, *l), !owns.is_empty() || result.is_some()) {
            for p in owns.iter().map(|(_, p)| p).chain(result.iter()) {
                imported_needed.entry((caller, p.clone())).or_insert(None);
                imported_needed.entry((callee, p.clone())).or_insert(None);
            }
        }
    }
    let mut resource_funcs: BTreeMap<DefinedResourceId, ResourceFuncs> = BTreeMap::new();
    // Resources whose handles move between instance tables: per holding
    // instance, the functions on its table and its `lower_borrow`.
    let moving = moving_resources(plan, graph);
    let mut moved_funcs: BTreeMap<(usize, DefinedResourceId), (ResourceFuncs, FunctionId)> = BTreeMap::new();
    let mut imported_funcs: BTreeMap<(usize, ImportPath), ResourceFuncs> = BTreeMap::new();
    let mut scope = None;
    if !needed.is_empty() || !imported_needed.is_empty() {
        let table_memory = match plan.builtin_memory {
            Some(m) => memory(m)?,
            // One page, as the Karmem edge gives a module without a memory:
            // its adapters use page 0 as scratch before `KarmemInit` (a
            // start function calling an import); tables take pages of their own.
            None => module.memories.add_local(false, false, 1, None, None),
        };
        let shared_scope = borrow_scope(&mut module);
        scope = Some(shared_scope);
        // One table per component instance; each resource type a tag of its own.
        let mut tables: BTreeMap<usize, HandleTable> = BTreeMap::new();
        let mut table = |module: &mut Module, owner: usize| {
            *tables.entry(owner).or_insert_with(|| HandleTable::new(module, table_memory, shared_scope))
        };
        for r in needed {
            let t = table(&mut module, graph.resource(r).owner);
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
            let tag = i32::try_from(r.0 + 1).context("too many resource types")?;
            resource_funcs.insert(r, t.generate(&mut module, tag, dtor, &name));
            for instance in moving.get(&r).into_iter().flatten() {
                let t = table(&mut module, *instance);
                let name = format!("{name} (held by component instance {instance})");
                let funcs = if *instance == graph.resource(r).owner {
                    resource_funcs.get(&r).copied().context("handle table missing")?
                } else {
                    t.generate(&mut module, tag, dtor, &name)
                };
                moved_funcs.insert((*instance, r), (funcs, t.lower_borrow(&mut module, tag, &name)));
            }
        }
        let mut paths: Vec<&ImportPath> = imported_needed.keys().map(|(_, p)| p).collect();
        paths.sort();
        paths.dedup();
        for ((owner, path), dtor) in &imported_needed {
            let t = table(&mut module, *owner);
            let ordinal = paths.iter().position(|p| *p == path).unwrap_or_default();
            let tag = i32::try_from(graph.resources.len() + 1 + ordinal).context("too many resource types")?;
            let name = format!("{} (held by component instance {owner})", path.join("#"));
            imported_funcs.insert((*owner, path.clone()), t.generate(&mut module, tag, *dtor, &name));
        }
    }

    // Replace each placeholder with its code.
    let mut copiers = crate::adapter::Copiers::default();
    let mut composed = Vec::new();
    let mut in_place: BTreeMap<u32, crate::reps_in_place::RepsInPlace> = BTreeMap::new();
    for (k, fid) in &holders {
        let (k, fid) = (*k, *fid);
        let import = plan.imports.get(k).context("placeholder missing")?;
        match &import.kind {
            ImportKind::Host { .. } => {}
            ImportKind::Builtin(b) => {
                let builtin = graph.builtin(*b);
                let funcs = match &builtin.resource {
                    ResourceRef::Defined(r) if moving.contains_key(r) => {
                        moved_funcs.get(&(builtin.owner, *r)).map(|(f, _)| f)
                    }
                    ResourceRef::Defined(r) => resource_funcs.get(r),
                    ResourceRef::Imported(path) => imported_funcs.get(&(builtin.owner, path.clone())),
                }
                .context("handle table missing")?;
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
                    let tables = Tables {
                        resource_funcs: &resource_funcs,
                        moved_funcs: &moved_funcs,
                        moving: &moving,
                        imported_funcs: &imported_funcs,
                        tabled: &plan.tabled,
                    };
                    let moves = copy_moves(&mut module, &mut composed, graph, *l, fused, copy, &tables)?;
                    let ids = crate::adapter::CopyIds {
                        caller_memory: memory(copy.caller_memory)?,
                        callee_memory: memory(copy.callee_memory)?,
                        caller_realloc: copy.caller_realloc.map(|r| func(r.0)).transpose()?,
                        callee_realloc: copy.callee_realloc.map(|r| func(r.0)).transpose()?,
                        callee,
                        post_return: post,
                        caller_encoding: copy.caller_encoding,
                        callee_encoding: copy.callee_encoding,
                        borrows: moves.borrows,
                        scope,
                        handles: moves.handles,
                        result_handles: moves.result_handles,
                        unlends: moves.unlends,
                    };
                    crate::adapter::generate(
                        &mut module,
                        &mut copiers,
                        fid,
                        &ids,
                        &copy.params,
                        copy.params_in_memory,
                        copy.result.as_ref(),
                        copy.result_in_memory,
                    )?;
                } else {
                    let (params, result) = fused_types(graph, *l);
                    let (owns, own_result) = fused_owns(graph, *l);
                    let check = |r: &DefinedResourceId| {
                        resource_funcs.get(r).map(|f| f.check_own).context("handle table missing")
                    };
                    // Moving handles: the caller's and the callee's tables.
                    let caller_instance = graph.lowered(*l).owner;
                    let callee_instance = match &graph.lowered(*l).target {
                        crate::graph::LowerTarget::Lifted(c) => Some(graph.lifted(*c).owner),
                        crate::graph::LowerTarget::Import(_) => None,
                    };
                    let moved = |instance: Option<usize>, r: &DefinedResourceId| {
                        let instance = instance.context("a moved handle without a callee instance")?;
                        moved_funcs.get(&(instance, *r)).copied().context("handle table missing")
                    };
                    let mut own_checks = Vec::new();
                    let mut moves = MovedHandles::default();
                    for (pos, r) in &owns {
                        if moving.contains_key(r) {
                            let (from, to) = (moved(Some(caller_instance), r)?.0, moved(callee_instance, r)?.0);
                            moves.owns.insert(*pos, (from.take, to.new));
                        } else {
                            own_checks.push((*pos, check(r)?));
                        }
                    }
                    // Host handles: from the caller's table to the callee's, the result back.
                    let (imported_owns, imported_result) = fused_imported_owns(plan, graph, *l);
                    if let Some((caller, callee)) = fused_instances(graph, *l) {
                        let funcs = |instance: usize, p: &ImportPath| {
                            imported_funcs.get(&(instance, p.clone())).copied().context("handle table missing")
                        };
                        for (pos, p) in &imported_owns {
                            moves.owns.insert(*pos, (funcs(caller, p)?.take, funcs(callee, p)?.new));
                        }
                        if let Some(p) = &imported_result {
                            moves.result = Some((funcs(callee, p)?.take, funcs(caller, p)?.new));
                        }
                    }
                    for v in fused_variant_owns(graph, *l).into_iter().filter(|v| moving.contains_key(&v.resource)) {
                        let r = &v.resource;
                        let (from, to) = (moved(Some(caller_instance), r)?.0, moved(callee_instance, r)?.0);
                        moves.variant_owns.push((v, from.take, to.new));
                    }
                    for b in fused.borrows.iter().filter(|b| moving.contains_key(&b.resource)) {
                        let from = moved(Some(caller_instance), &b.resource)?.0;
                        let lower = if b.to_owner { None } else { Some(moved(callee_instance, &b.resource)?.1) };
                        moves.borrows.insert(b.pos, (from.lend, lower, from.unlend));
                    }
                    let mut check_own_result = None;
                    if let Some(r) = &own_result {
                        if moving.contains_key(r) {
                            let (from, to) = (moved(callee_instance, r)?.0, moved(Some(caller_instance), r)?.0);
                            moves.result = Some((from.take, to.new));
                        } else {
                            check_own_result = Some(check(r)?);
                        }
                    }
                    let call = Call {
                        callee,
                        post_return: post,
                        borrows: &fused.borrows,
                        scope,
                        lifts: (&params, result.as_ref()),
                        owns: own_checks,
                        check_own_result,
                        moves,
                    };
                    call.generate(&mut module, fid, &import.ty, &resource_funcs)?;
                }
            }
            ImportKind::HostCall(l) => {
                let call = plan.host_calls.get(l).context("host call missing")?;
                let funcs = |path: &ImportPath| {
                    imported_funcs.get(&(call.owner, path.clone())).copied().context("handle table missing")
                };
                let mut params = BTreeMap::new();
                for h in &call.params {
                    let f = funcs(&h.resource)?;
                    params.insert(h.pos, (h.own, f));
                }
                let result = call.result.as_ref().map(funcs).transpose()?;
                host_call(&mut module, fid, &import.ty, func(call.host.0)?, &params, result)?;
            }
            ImportKind::Reenter(_) => {
                module
                    .replace_imported_func(fid, |(body, _)| {
                        body.unreachable();
                    })
                    .map_err(|e| anyhow!("{e:#}"))?;
            }
            ImportKind::BorrowWrapper(w) => {
                let wrapper = plan.wrappers.get(*w).context("borrow wrapper missing")?;
                let mut fixes = Vec::new();
                if !wrapper.in_place.is_empty() {
                    let m = wrapper.memory.context("borrows in memory without a memory")?;
                    let walker = match in_place.entry(m.0) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            let reps = resource_funcs.iter().map(|(r, f)| (ResourceRef::Defined(*r), f.rep)).collect();
                            e.insert(crate::reps_in_place::RepsInPlace::new(memory(m)?, reps))
                        }
                    };
                    for fix in &wrapper.in_place {
                        fixes.push(match fix {
                            InPlace::List { pos, elem } => (*pos, 2, walker.list(&mut module, elem)?),
                            InPlace::Memory { ty } => (0, 1, walker.value(&mut module, ty)?),
                        });
                    }
                }
                // The host's handles are the defining instance's: those of
                // another instance's export move between the two tables.
                let single = |r: &DefinedResourceId| resource_funcs.get(r).copied().context("handle table missing");
                let foreign = |r: &DefinedResourceId| -> Result<Option<(ResourceFuncs, FunctionId)>> {
                    if !moving.contains_key(r) || graph.resource(*r).owner == wrapper.instance {
                        return Ok(None);
                    }
                    moved_funcs.get(&(wrapper.instance, *r)).copied().map(Some).context("handle table missing")
                };
                let mut moves = MovedHandles::default();
                let mut owns = Vec::new();
                for (pos, r) in &wrapper.owns {
                    match foreign(r)? {
                        Some((to, _)) => {
                            moves.owns.insert(*pos, (single(r)?.take, to.new));
                        }
                        None => owns.push((*pos, single(r)?.check_own)),
                    }
                }
                for b in &wrapper.borrows {
                    if let Some((_, lower)) = foreign(&b.resource)? {
                        let from = single(&b.resource)?;
                        moves.borrows.insert(b.pos, (from.lend, Some(lower), from.unlend));
                    }
                }
                let own_result = match wrapper.own_result {
                    Some(r) => match foreign(&r)? {
                        Some((from, _)) => {
                            moves.result = Some((from.take, single(&r)?.new));
                            None
                        }
                        None => Some(single(&r)?.check_own),
                    },
                    None => None,
                };
                let call = Call {
                    callee: func(wrapper.callee.0)?,
                    post_return: None,
                    borrows: &wrapper.borrows,
                    scope,
                    lifts: (&[], None),
                    owns,
                    check_own_result: own_result,
                    moves,
                };
                call.generate_with(&mut module, fid, &import.ty, &resource_funcs, &fixes)?;
            }
        }
        if throws && crate::exceptions::crosses(&import.kind, plan, graph) {
            crate::exceptions::trap_escaping(&mut module, fid)?;
        }
        module.exports.add(&format!("p{k}"), fid);
    }
    Ok(Some(module.emit_wasm()))
}

/// A call into a component's lifted function: a fused adapter (with the
/// callee's post-return) or a wrapper at the host boundary.
struct Call<'a> {
    callee: FunctionId,
    post_return: Option<FunctionId>,
    borrows: &'a [BorrowParam],
    /// The borrow scope global (present whenever a handle table is).
    scope: Option<GlobalId>,
    /// A call between two components: the parameter and result types, whose
    /// flat values are lifted (checked and converted) on the way
    /// (`adapter::lift_flat`). Empty at the host boundary.
    lifts: (&'a [ValTy], Option<&'a ValTy>),
    /// Flat `own` parameters of resources a component defines: (position,
    /// `check_own`), checked as they are lifted (they keep their entry).
    owns: Vec<(usize, FunctionId)>,
    /// An own result of a resource a component defines: its `check_own`
    /// (type, not lent) on the way out.
    check_own_result: Option<FunctionId>,
    /// Handles that move from the caller's table to the callee's (and a
    /// result from the callee's to the caller's).
    moves: MovedHandles,
}

/// Handles of resources in `moving_resources` crossing a call between two
/// component instances as flat values: each is lifted from the sending
/// instance's table and lowered into the receiving instance's
/// (CanonicalABI.md `lift_own`/`lower_own`, `lift_borrow`/`lower_borrow`).
#[derive(Default)]
struct MovedHandles {
    /// Own parameters by flat position: (`take` on the caller's table,
    /// `new` on the callee's).
    owns: BTreeMap<usize, (FunctionId, FunctionId)>,
    /// Borrow parameters by flat position: (`lend` on the caller's table,
    /// `lower_borrow` on the callee's unless it defines the resource,
    /// `unlend` on the caller's table).
    borrows: BTreeMap<usize, (FunctionId, Option<FunctionId>, FunctionId)>,
    /// An own result: (`take` on the callee's table, `new` on the caller's).
    result: Option<(FunctionId, FunctionId)>,
    /// Own handles in flat variant payloads: (the variant, `take`, `new`),
    /// moved when the discriminant names their case.
    variant_owns: Vec<(VariantOwn, FunctionId, FunctionId)>,
}

impl Call<'_> {
    /// Replace the placeholder `fid` (of type `ty`) with the call. Each
    /// borrow parameter is lent for the duration of the call: the owner
    /// receives the rep, another component a fresh borrow handle counted in
    /// a new borrow scope, which must be empty when the callee returns.
    fn generate(
        &self,
        module: &mut Module,
        fid: FunctionId,
        ty: &wasmparser::FuncType,
        tables: &BTreeMap<DefinedResourceId, ResourceFuncs>,
    ) -> Result<()> {
        self.generate_with(module, fid, ty, tables, &[])
    }

    /// [`Call::generate`], first calling each `(pos, n, f)` of `in_place`
    /// with the `n` arguments from flat position `pos` (borrowed handles in
    /// memory made reps: `reps_in_place`).
    fn generate_with(
        &self,
        module: &mut Module,
        fid: FunctionId,
        ty: &wasmparser::FuncType,
        tables: &BTreeMap<DefinedResourceId, ResourceFuncs>,
        in_place: &[(usize, usize, FunctionId)],
    ) -> Result<()> {
        // Per lent position: (lend or borrow, then a lower into the callee's table, unlend).
        let mut lent: BTreeMap<usize, (FunctionId, Option<FunctionId>, FunctionId)> = self.moves.borrows.clone();
        for b in self.borrows.iter().filter(|b| !self.moves.borrows.contains_key(&b.pos)) {
            let funcs = tables.get(&b.resource).context("handle table missing")?;
            lent.insert(b.pos, (if b.to_owner { funcs.lend } else { funcs.borrow }, None, funcs.unlend));
        }
        let moved_owns = &self.moves.owns;
        let moved_result = self.moves.result;
        let converted_result = module.locals.add(ValType::I32);
        let results: Vec<LocalId> = ty
            .results()
            .iter()
            .map(|t| walrus_val(*t).map(|t| module.locals.add(t)))
            .collect::<Result<_>>()?;
        let saved_scope = module.locals.add(ValType::I32);
        let scope_global = if lent.is_empty() { None } else { Some(self.scope.context("borrow scope missing")?) };
        let (callee, post, own_result) = (self.callee, self.post_return, self.check_own_result);
        let owns = &self.owns;
        // Lift the flat values only when they are all flat (nothing passed through memory).
        let (param_tys, result_ty) = self.lifts;
        let flat_count = |tys: &[&ValTy]| {
            let mut flat = Vec::new();
            tys.iter().for_each(|t| t.flatten(&mut flat));
            flat.len()
        };
        let lift_params = param_tys.iter().any(crate::adapter::needs_lifting)
            && flat_count(&param_tys.iter().collect::<Vec<_>>()) == ty.params().len();
        let lift_result = result_ty
            .filter(|t| crate::adapter::needs_lifting(t) && flat_count(&[*t]) == results.len());
        module
            .replace_imported_func(fid, |(body, args)| {
                if lift_params {
                    let mut at = 0;
                    for p in param_tys {
                        at += crate::adapter::lift_flat(body, p, args.get(at..).unwrap_or_default());
                    }
                }
                for (pos, n, f) in in_place {
                    for a in args.iter().skip(*pos).take(*n) {
                        body.local_get(*a);
                    }
                    body.call(*f);
                }
                if let Some(g) = scope_global {
                    body.global_get(g).local_set(saved_scope).i32_const(0).global_set(g);
                }
                for (v, take, new) in &self.moves.variant_owns {
                    let (Some(tag), Some(payload)) = (args.get(v.tag), args.get(v.pos)) else { continue };
                    let (payload, take, new, wide) = (*payload, *take, *new, v.wide);
                    body.local_get(*tag).i32_const(v.case as i32).binop(walrus::ir::BinaryOp::I32Eq).if_else(
                        None,
                        |then| {
                            then.local_get(payload);
                            if wide {
                                then.unop(walrus::ir::UnaryOp::I32WrapI64);
                            }
                            then.call(take).call(new);
                            if wide {
                                then.unop(walrus::ir::UnaryOp::I64ExtendUI32);
                            }
                            then.local_set(payload);
                        },
                        |_| {},
                    );
                }
                for (i, a) in args.iter().enumerate() {
                    // Lifted in order: an own handle lent by an earlier parameter traps.
                    if let Some((_, check)) = owns.iter().find(|(pos, _)| *pos == i) {
                        body.local_get(*a).call(*check);
                    }
                    body.local_get(*a);
                    if let Some((lend, lower, _)) = lent.get(&i) {
                        body.call(*lend);
                        if let Some(lower) = lower {
                            body.call(*lower);
                        }
                    }
                    if let Some((take, new)) = moved_owns.get(&i) {
                        body.call(*take).call(*new);
                    }
                }
                body.call(callee);
                if scope_global.is_none()
                    && post.is_none()
                    && lift_result.is_none()
                    && own_result.is_none()
                    && moved_result.is_none()
                {
                    return;
                }
                for r in results.iter().rev() {
                    body.local_set(*r);
                }
                if let (Some(check), Some(r)) = (own_result, results.first()) {
                    body.local_get(*r).call(check);
                }
                // The post-return gets the callee's own number; the caller its new one.
                if let (Some((take, new)), Some(r)) = (moved_result, results.first()) {
                    body.local_get(*r).call(take).call(new).local_set(converted_result);
                }
                if let Some(t) = lift_result {
                    crate::adapter::lift_flat(body, t, &results);
                }
                if let Some(g) = scope_global {
                    // The callee must have dropped every borrow it was given.
                    body.global_get(g).if_else(
                        None,
                        |bad| {
                            bad.unreachable();
                        },
                        |_| {},
                    );
                    body.local_get(saved_scope).global_set(g);
                    for (i, a) in args.iter().enumerate() {
                        if let Some((_, _, unlend)) = lent.get(&i) {
                            body.local_get(*a).call(*unlend);
                        }
                    }
                }
                if let Some(post) = post {
                    for r in &results {
                        body.local_get(*r);
                    }
                    body.call(post);
                }
                for (n, r) in results.iter().enumerate() {
                    body.local_get(if n == 0 && moved_result.is_some() { converted_result } else { *r });
                }
            })
            .map_err(|e| anyhow!("{e:#}"))?;
        Ok(())
    }
}

/// Re-encode the glue module's types, memories, globals and functions
/// into the merged sections: its `f`/`m` imports become the merged
/// functions and memories they name, each `p<k>` export takes placeholder
/// `k`'s index, and the other glue functions follow them.
fn splice(sections: &mut Sections, plan: &LinkPlan, glue: &[u8]) -> Result<()> {
    let mut maps = InstanceMaps {
        funcs: Vec::new(),
        tables: Vec::new(),
        memories: Vec::new(),
        globals: Vec::new(),
        tags: Vec::new(),
        global_consts: BTreeMap::new(),
        type_base: sections.type_count,
        elem_base: 0,
        data_base: 0,
    };
    let re = |e: ReencodeError<std::convert::Infallible>| anyhow!("{e}");
    let mut func_types: Vec<u32> = Vec::new();
    let mut exported: BTreeMap<u32, FuncIndex> = BTreeMap::new();
    let mut bodies = Vec::new();
    for payload in Parser::new(0).parse_all(glue) {
        match payload? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    let group = group?;
                    sections.type_count += group.types().len() as u32;
                    utils::parse_recursive_type_group(&mut maps, sections.types.ty(), group).map_err(re)?;
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    let index: u32 = import
                        .name
                        .parse()
                        .with_context(|| format!("unexpected glue import `{}` `{}`", import.module, import.name))?;
                    match (import.module, import.ty) {
                        (GLUE_FUNCS, TypeRef::Func(_)) => maps.funcs.push(index),
                        (GLUE_MEMORIES, TypeRef::Memory(_)) => maps.memories.push(index),
                        (module, _) => bail!("unexpected glue import `{module}` `{}`", import.name),
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    func_types.push(ty?);
                }
            }
            Payload::MemorySection(reader) => {
                for m in reader {
                    maps.memories.push(sections.memory_count);
                    sections.memory_count += 1;
                    sections.memories.memory(maps.memory_type(m?).map_err(re)?);
                }
            }
            Payload::GlobalSection(reader) => {
                for g in reader {
                    maps.globals.push(sections.global_count);
                    sections.global_count += 1;
                    utils::parse_global(&mut maps, &mut sections.globals, g?).map_err(re)?;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    let k: Option<usize> = export.name.strip_prefix('p').and_then(|k| k.parse().ok());
                    let import = k.and_then(|k| plan.imports.get(k)).with_context(|| {
                        format!("unexpected glue export `{}`", export.name)
                    })?;
                    exported.insert(export.index, import.index);
                }
            }
            Payload::CodeSectionEntry(body) => bodies.push(body),
            Payload::TableSection(_)
            | Payload::ElementSection(_)
            | Payload::DataSection(_)
            | Payload::StartSection { .. }
            | Payload::TagSection(_) => bail!("the glue module has a section the merge cannot take"),
            _ => {}
        }
    }
    let imported = maps.funcs.len() as u32;
    let placeholders = exported.len() as u32;
    let expected = plan.imports.iter().filter(|i| !matches!(i.kind, ImportKind::Host { .. })).count();
    if placeholders as usize != expected {
        bail!("internal error: the glue exports {placeholders} of {expected} placeholders");
    }
    let mut helper = plan.glue_base + placeholders;
    for j in 0..func_types.len() as u32 {
        match exported.get(&(imported + j)) {
            Some(index) => maps.funcs.push(index.0),
            None => {
                maps.funcs.push(helper);
                helper += 1;
            }
        }
    }
    let mut encoded = Vec::new();
    for (j, body) in bodies.into_iter().enumerate() {
        let mut f = maps.new_function_with_parsed_locals(&body).map_err(re)?;
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            f.instruction(&maps.parse_instruction(&mut reader).map_err(re)?);
        }
        let index = maps.funcs.get(imported as usize + j).copied().context("glue function out of range")?;
        let ty = func_types.get(j).copied().context("glue function without a type")?;
        encoded.push((index, maps.type_base + ty, f));
    }
    encoded.sort_by_key(|(index, _, _)| *index);
    for (n, (index, ty, f)) in encoded.iter().enumerate() {
        if *index != plan.glue_base + n as u32 {
            bail!("internal error: glue function {index} is out of place");
        }
        sections.functions.function(*ty);
        sections.code.function(f);
    }
    Ok(())
}

fn walrus_type(module: &mut Module, ty: &wasmparser::FuncType) -> Result<walrus::TypeId> {
    let params = ty.params().iter().map(|t| walrus_val(*t)).collect::<Result<Vec<_>>>()?;
    let results = ty.results().iter().map(|t| walrus_val(*t)).collect::<Result<Vec<_>>>()?;
    Ok(module.types.add(&params, &results))
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

/// A host import called with the caller's handles of imported resources:
/// each `own` parameter is taken out of the caller's table (trapping while
/// lent), each `borrow` lent for the call, the host receiving its own
/// numbers (the entries' reps); an `own` result gets a new entry.
fn host_call(
    module: &mut Module,
    fid: FunctionId,
    ty: &wasmparser::FuncType,
    host: FunctionId,
    params: &BTreeMap<usize, (bool, ResourceFuncs)>,
    result: Option<ResourceFuncs>,
) -> Result<()> {
    let results: Vec<LocalId> = ty
        .results()
        .iter()
        .map(|t| walrus_val(*t).map(|t| module.locals.add(t)))
        .collect::<Result<_>>()?;
    module
        .replace_imported_func(fid, |(body, args)| {
            for (i, a) in args.iter().enumerate() {
                body.local_get(*a);
                match params.get(&i) {
                    Some((true, funcs)) => {
                        body.call(funcs.take);
                    }
                    Some((false, funcs)) => {
                        body.call(funcs.lend);
                    }
                    None => {}
                }
            }
            body.call(host);
            for r in results.iter().rev() {
                body.local_set(*r);
            }
            for (i, a) in args.iter().enumerate() {
                if let Some((false, funcs)) = params.get(&i) {
                    body.local_get(*a).call(funcs.unlend);
                }
            }
            for (n, r) in results.iter().enumerate() {
                body.local_get(*r);
                if let (0, Some(funcs)) = (n, result) {
                    body.call(funcs.new);
                }
            }
        })
        .map_err(|e| anyhow!("{e:#}"))?;
    Ok(())
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

/// The flat `own` parameters of resources a component defines, by flat
/// position, and an `own` result of one, of the function a fused adapter
/// calls (none when its parameters do not all pass flat).
fn fused_owns(graph: &Graph, lowered: crate::graph::LoweredId) -> (Vec<(usize, DefinedResourceId)>, Option<DefinedResourceId>) {
    let crate::graph::LowerTarget::Lifted(callee) = &graph.lowered(lowered).target else {
        return (Vec::new(), None);
    };
    let sig = &graph.lifted(*callee).sig;
    let own = |ty: &ValTy| match ty {
        ValTy::Own(ResourceRef::Defined(r)) => Some(*r),
        _ => None,
    };
    // Flat positions of the `own` handles of `ty`, also inside records and tuples.
    fn flat_owns(ty: &ValTy, pos: &mut usize, owns: &mut Vec<(usize, DefinedResourceId)>) {
        match ty {
            ValTy::Own(ResourceRef::Defined(r)) => {
                owns.push((*pos, *r));
                *pos += 1;
            }
            ValTy::Record(fields) | ValTy::Tuple(fields) if ty.has_handles() => {
                fields.iter().for_each(|f| flat_owns(f, pos, owns));
            }
            other => *pos = pos.saturating_add(other.flat_len_capped(crate::types::MAX_FLAT_PARAMS)),
        }
    }
    let mut owns = Vec::new();
    if sig.flat_params().is_some() {
        let mut pos = 0usize;
        for (_, ty) in &sig.params {
            flat_owns(ty, &mut pos, &mut owns);
        }
    }
    (owns, sig.result.as_ref().and_then(own))
}

/// An `own` handle in the payload of a flat variant parameter of the
/// function a fused adapter calls (`option<own<T>>`, `result<own<T>, E>`,
/// ...): the discriminant's flat position, the case, the payload's flat
/// position and whether its joined slot is an `i64`.
struct VariantOwn {
    tag: usize,
    case: u32,
    pos: usize,
    wide: bool,
    resource: DefinedResourceId,
}

/// The [`VariantOwn`]s of the function a fused adapter calls (none when its
/// parameters do not all pass flat), also in variants inside records and
/// tuples; a variant nested in a variant's payload is not looked into.
fn fused_variant_owns(graph: &Graph, lowered: crate::graph::LoweredId) -> Vec<VariantOwn> {
    fn walk(ty: &ValTy, pos: &mut usize, out: &mut Vec<VariantOwn>) {
        match ty {
            ValTy::Record(fields) | ValTy::Tuple(fields) if ty.has_handles() => {
                fields.iter().for_each(|f| walk(f, pos, out));
            }
            ValTy::Variant(_) | ValTy::Option(_) | ValTy::Result(..) if ty.has_handles() => {
                let mut flat = Vec::new();
                ty.flatten(&mut flat);
                for (c, case) in ty.cases().unwrap_or_default().into_iter().enumerate() {
                    if let Some(ValTy::Own(ResourceRef::Defined(r))) = case {
                        out.push(VariantOwn {
                            tag: *pos,
                            case: c as u32,
                            pos: *pos + 1,
                            wide: flat.get(1) == Some(&crate::types::Flat::I64),
                            resource: *r,
                        });
                    }
                }
                *pos += flat.len();
            }
            other => *pos = pos.saturating_add(other.flat_len_capped(crate::types::MAX_FLAT_PARAMS)),
        }
    }
    let crate::graph::LowerTarget::Lifted(callee) = &graph.lowered(lowered).target else {
        return Vec::new();
    };
    let sig = &graph.lifted(*callee).sig;
    let mut out = Vec::new();
    if sig.flat_params().is_some() {
        let mut pos = 0usize;
        for (_, ty) in &sig.params {
            walk(ty, &mut pos, &mut out);
        }
    }
    out
}

/// The parameter and result types of the lifted function a fused adapter calls.
fn fused_types(graph: &Graph, lowered: crate::graph::LoweredId) -> (Vec<ValTy>, Option<ValTy>) {
    match &graph.lowered(lowered).target {
        crate::graph::LowerTarget::Lifted(callee) => {
            let sig = &graph.lifted(*callee).sig;
            (sig.params.iter().map(|(_, t)| t.clone()).collect(), sig.result.clone())
        }
        crate::graph::LowerTarget::Import(_) => (Vec::new(), None),
    }
}

/// The resources whose handles move between the tables of the component
/// instances holding them, as the canonical ABI moves them (an `own` leaves
/// the sender's table and gets the receiver's next index, a `borrow` lent
/// to a non-defining instance gets a borrow entry in its table), with the
/// instances that hold them (the defining one included). A resource moves
/// only when every call between instances that carries it passes it as a
/// flat top-level `own` or `borrow` through an adapter without a copy, no
/// host import takes it, and only its defining instance's exports carry
/// it; the others keep one table (the defining instance's) for all.
fn moving_resources(plan: &LinkPlan, graph: &Graph) -> BTreeMap<DefinedResourceId, BTreeSet<usize>> {
    let mut opaque = false;
    let mut found = |ty: &ValTy, out: &mut BTreeSet<DefinedResourceId>| defined_resources(ty, out, &mut opaque);
    let in_sig = |sig: &crate::types::FuncSig, found: &mut dyn FnMut(&ValTy, &mut BTreeSet<DefinedResourceId>)| {
        let mut out = BTreeSet::new();
        sig.params.iter().map(|(_, t)| t).chain(sig.result.as_ref()).for_each(|t| found(t, &mut out));
        out
    };
    let top_level = |ty: &ValTy| matches!(ty, ValTy::Own(ResourceRef::Defined(_)) | ValTy::Borrow(ResourceRef::Defined(_)));
    // A parameter whose handles are all at flat positions: a handle, or a
    // record or tuple of such parameters and of values without handles.
    fn flat_handles(ty: &ValTy, variants: bool) -> bool {
        match ty {
            ValTy::Own(_) | ValTy::Borrow(_) => true,
            ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().all(|f| flat_handles(f, variants)),
            // An `own` as a variant's whole payload (`fused_variant_owns`).
            ValTy::Variant(_) | ValTy::Option(_) | ValTy::Result(..) if variants => ty.cases().is_some_and(|cases| {
                cases.into_iter().flatten().all(|c| matches!(c, ValTy::Own(_)) || {
                    let mut inner = BTreeSet::new();
                    defined_resources(c, &mut inner, &mut false);
                    inner.is_empty()
                })
            }),
            other => {
                let mut inner = BTreeSet::new();
                defined_resources(other, &mut inner, &mut false);
                inner.is_empty()
            }
        }
    }
    let mut holders: BTreeMap<DefinedResourceId, BTreeSet<usize>> = BTreeMap::new();
    let mut fixed: BTreeSet<DefinedResourceId> = BTreeSet::new();
    for (id, lowered) in graph.lowered.iter().enumerate() {
        match &lowered.target {
            crate::graph::LowerTarget::Lifted(c) => {
                let lifted = graph.lifted(*c);
                let sig = &lifted.sig;
                let all = in_sig(sig, &mut found);
                if all.is_empty() {
                    continue;
                }
                let flat_only = sig.params.iter().all(|(_, t)| flat_handles(t, true))
                    && sig.result.as_ref().is_none_or(|t| {
                        let mut inner = BTreeSet::new();
                        found(t, &mut inner);
                        top_level(t) || inner.is_empty()
                    });
                let fused = plan.fused.get(&crate::graph::LoweredId(id));
                let plain = fused.is_some_and(|f| f.copy.is_none());
                // A copying adapter moves the handles wherever they are in
                // the values it copies (`copy_moves`).
                let copying = fused.is_some_and(|f| f.copy.is_some());
                if !sig.is_async && (copying || (flat_only && plain && sig.flat_params().is_some())) {
                    for r in all {
                        holders.entry(r).or_default().extend([lowered.owner, lifted.owner]);
                    }
                } else {
                    fixed.extend(all);
                }
            }
            crate::graph::LowerTarget::Import(_) => {
                if let Some(sig) = &lowered.sig {
                    fixed.extend(in_sig(sig, &mut found));
                }
            }
        }
    }
    // Another instance's export: its wrapper moves flat handles between
    // the defining instance's table (the host's handles) and the
    // exporting instance's.
    for export in &graph.exports {
        let lifted = graph.lifted(export.lifted);
        let sig = &lifted.sig;
        let flat = !sig.is_async
            && sig.flat_params().is_some()
            && sig.params.iter().all(|(_, t)| flat_handles(t, false))
            && sig.result.as_ref().is_none_or(|t| {
                let mut inner = BTreeSet::new();
                found(t, &mut inner);
                top_level(t) || inner.is_empty()
            });
        for r in in_sig(sig, &mut found) {
            if graph.resource(r).owner == lifted.owner {
                continue;
            }
            if flat {
                holders.entry(r).or_default().insert(lifted.owner);
            } else {
                fixed.insert(r);
            }
        }
    }
    if opaque {
        return BTreeMap::new();
    }
    holders.retain(|r, _| !fixed.contains(r));
    for builtin in &graph.builtins {
        if let ResourceRef::Defined(r) = &builtin.resource
            && let Some(h) = holders.get_mut(r)
        {
            h.insert(builtin.owner);
        }
    }
    for (r, h) in &mut holders {
        h.insert(graph.resource(*r).owner);
    }
    holders
}

/// The table functions a copying adapter's handle conversions are made of.
struct Tables<'a> {
    /// Per resource, the functions on the one table of a resource whose
    /// handles do not move (and on the defining instance's).
    resource_funcs: &'a BTreeMap<DefinedResourceId, ResourceFuncs>,
    /// Per holding instance and moving resource, the functions on its table
    /// and its `lower_borrow`.
    moved_funcs: &'a BTreeMap<(usize, DefinedResourceId), (ResourceFuncs, FunctionId)>,
    moving: &'a BTreeMap<DefinedResourceId, BTreeSet<usize>>,
    /// Per holding instance and imported resource held in tables, the
    /// functions on its table.
    imported_funcs: &'a BTreeMap<(usize, ImportPath), ResourceFuncs>,
    tabled: &'a BTreeSet<ImportPath>,
}

/// How the handles a copying adapter carries cross (`adapter::CopyIds`).
struct CopyMoves {
    borrows: Vec<(usize, FunctionId, FunctionId)>,
    handles: Vec<(ValTy, FunctionId)>,
    result_handles: Vec<(ValTy, FunctionId)>,
    unlends: Vec<(ValTy, FunctionId)>,
}

/// The handle conversions of the copying adapter of `lowered`. A resource
/// whose handles move (`moving_resources`): an `own` is lifted from the
/// caller's table and lowered into the callee's (the result's the other
/// way), a borrow is lent in the caller's table and arrives as the rep (the
/// callee defines the resource) or as a borrow entry of the callee's
/// table; anywhere in the values. A resource that keeps one table: an
/// `own` keeps its number, a borrow is lent in that table (arriving as the
/// rep or a borrow entry of the same table). Loans end when the call
/// returns.
fn copy_moves(
    module: &mut Module,
    composed: &mut Vec<(FunctionId, FunctionId, FunctionId)>,
    graph: &Graph,
    lowered: crate::graph::LoweredId,
    fused: &crate::merge::FusedPlan,
    copy: &crate::merge::CopyPlan,
    tables: &Tables<'_>,
) -> Result<CopyMoves> {
    let caller = graph.lowered(lowered).owner;
    let crate::graph::LowerTarget::Lifted(target) = &graph.lowered(lowered).target else {
        bail!("a copying adapter without a lifted callee")
    };
    let callee = graph.lifted(*target).owner;
    let moved = |instance: usize, r: DefinedResourceId| {
        tables.moved_funcs.get(&(instance, r)).copied().context("handle table missing")
    };
    let single = |r: DefinedResourceId| tables.resource_funcs.get(&r).copied().context("handle table missing");
    // Per borrowed resource: the lend (a `(handle) -> rep or handle`) and the unlend.
    let mut lend = |r: DefinedResourceId| -> Result<(FunctionId, FunctionId)> {
        let to_owner = graph.resource(r).owner == callee;
        if tables.moving.contains_key(&r) {
            let (from, _) = moved(caller, r)?;
            let lend = if to_owner { from.lend } else { crate::builtins::compose(module, composed, from.lend, moved(callee, r)?.1) };
            Ok((lend, from.unlend))
        } else {
            let funcs = single(r)?;
            Ok((if to_owner { funcs.lend } else { funcs.borrow }, funcs.unlend))
        }
    };
    let mut moves = CopyMoves { borrows: Vec::new(), handles: Vec::new(), result_handles: Vec::new(), unlends: Vec::new() };
    for b in &fused.borrows {
        let (f, unlend) = lend(b.resource)?;
        moves.borrows.push((b.pos, f, unlend));
    }
    // Borrows inside copied values: all of them when the parameters are in memory, else those in lists.
    let mut inside: Vec<DefinedResourceId> = Vec::new();
    for p in &copy.params {
        borrows_in_memory(p, copy.params_in_memory, &mut inside);
    }
    inside.sort();
    inside.dedup();
    for r in inside {
        let (f, unlend) = lend(r)?;
        let ty = ValTy::Borrow(ResourceRef::Defined(r));
        moves.handles.push((ty.clone(), f));
        moves.unlends.push((ty, unlend));
    }
    let owned = |tys: &mut dyn Iterator<Item = &ValTy>| {
        let mut out = BTreeSet::new();
        tys.for_each(|t| owned_resources(t, &mut out));
        out.into_iter().filter(|r| tables.moving.contains_key(r)).collect::<Vec<_>>()
    };
    for r in owned(&mut copy.params.iter()) {
        let f = crate::builtins::compose(module, composed, moved(caller, r)?.0.take, moved(callee, r)?.0.new);
        moves.handles.push((ValTy::Own(ResourceRef::Defined(r)), f));
    }
    for r in owned(&mut copy.result.iter()) {
        let f = crate::builtins::compose(module, composed, moved(callee, r)?.0.take, moved(caller, r)?.0.new);
        moves.result_handles.push((ValTy::Own(ResourceRef::Defined(r)), f));
    }
    // Host handles (flat `own`s only, see `merge::tabled_imports`).
    let sig = &graph.lifted(*target).sig;
    let (owns, result) = crate::merge::imported_owns(sig, tables.tabled);
    let imported = |instance: usize, p: &ImportPath| {
        tables.imported_funcs.get(&(instance, p.clone())).copied().context("handle table missing")
    };
    let mut paths: Vec<&ImportPath> = owns.iter().map(|(_, p)| p).collect();
    paths.sort();
    paths.dedup();
    for p in paths {
        let f = crate::builtins::compose(module, composed, imported(caller, p)?.take, imported(callee, p)?.new);
        moves.handles.push((ValTy::Own(ResourceRef::Imported(p.clone())), f));
    }
    if let Some(p) = result {
        let f = crate::builtins::compose(module, composed, imported(callee, &p)?.take, imported(caller, &p)?.new);
        moves.result_handles.push((ValTy::Own(ResourceRef::Imported(p)), f));
    }
    Ok(moves)
}

/// The caller's and the callee's component instances of a fused adapter.
fn fused_instances(graph: &Graph, lowered: crate::graph::LoweredId) -> Option<(usize, usize)> {
    match &graph.lowered(lowered).target {
        crate::graph::LowerTarget::Lifted(c) => Some((graph.lowered(lowered).owner, graph.lifted(*c).owner)),
        crate::graph::LowerTarget::Import(_) => None,
    }
}

/// The flat `own` parameters and `own` result of host resources held in
/// tables that a fused adapter passes (`merge::imported_owns`).
fn fused_imported_owns(
    plan: &LinkPlan,
    graph: &Graph,
    lowered: crate::graph::LoweredId,
) -> (Vec<(usize, ImportPath)>, Option<ImportPath>) {
    match &graph.lowered(lowered).target {
        crate::graph::LowerTarget::Lifted(c) => crate::merge::imported_owns(&graph.lifted(*c).sig, &plan.tabled),
        crate::graph::LowerTarget::Import(_) => (Vec::new(), None),
    }
}

/// The defined resources borrowed inside `ty` where a copy reaches them in
/// memory: anywhere when `in_memory`, else inside lists.
fn borrows_in_memory(ty: &ValTy, in_memory: bool, out: &mut Vec<DefinedResourceId>) {
    match ty {
        ValTy::Borrow(ResourceRef::Defined(r)) if in_memory => out.push(*r),
        ValTy::List(elem) => borrows_in_memory(elem, true, out),
        ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().for_each(|f| borrows_in_memory(f, in_memory, out)),
        ValTy::Variant(cases) => cases.iter().flatten().for_each(|c| borrows_in_memory(c, in_memory, out)),
        ValTy::FixedList(elem, _) | ValTy::Option(elem) => borrows_in_memory(elem, in_memory, out),
        ValTy::Result(ok, err) => ok.iter().chain(err.iter()).for_each(|t| borrows_in_memory(t, in_memory, out)),
        ValTy::Own(_) | ValTy::Borrow(_) | ValTy::Prim(_) | ValTy::Flags(_) | ValTy::Enum(_) | ValTy::Opaque => {}
    }
}

/// The defined resources `ty` holds `own` handles of, at any depth.
fn owned_resources(ty: &ValTy, out: &mut BTreeSet<DefinedResourceId>) {
    match ty {
        ValTy::Own(ResourceRef::Defined(r)) => {
            out.insert(*r);
        }
        ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().for_each(|f| owned_resources(f, out)),
        ValTy::Variant(cases) => cases.iter().flatten().for_each(|c| owned_resources(c, out)),
        ValTy::List(elem) | ValTy::FixedList(elem, _) | ValTy::Option(elem) => owned_resources(elem, out),
        ValTy::Result(ok, err) => ok.iter().chain(err.iter()).for_each(|t| owned_resources(t, out)),
        ValTy::Own(_) | ValTy::Borrow(_) | ValTy::Prim(_) | ValTy::Flags(_) | ValTy::Enum(_) | ValTy::Opaque => {}
    }
}

/// The defined resources `ty` carries handles of; `opaque` set when part of
/// it is a type we cannot see into.
fn defined_resources(ty: &ValTy, out: &mut BTreeSet<DefinedResourceId>, opaque: &mut bool) {
    match ty {
        ValTy::Own(ResourceRef::Defined(r)) | ValTy::Borrow(ResourceRef::Defined(r)) => {
            out.insert(*r);
        }
        ValTy::Own(_) | ValTy::Borrow(_) | ValTy::Prim(_) | ValTy::Flags(_) | ValTy::Enum(_) => {}
        ValTy::Opaque => *opaque = true,
        ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().for_each(|f| defined_resources(f, out, opaque)),
        ValTy::Variant(cases) => cases.iter().flatten().for_each(|c| defined_resources(c, out, opaque)),
        ValTy::List(elem) | ValTy::FixedList(elem, _) | ValTy::Option(elem) => defined_resources(elem, out, opaque),
        ValTy::Result(ok, err) => ok.iter().chain(err.iter()).for_each(|t| defined_resources(t, out, opaque)),
    }
}
