//! Phase 3: resolve every core import and copy all instantiated modules'
//! live code into the sections of one core module.
//!
//! Owns: the layout of the merged index spaces (`FuncIndex`, `MemoryIndex`,
//! ... are final positions), the resolution of each core import to its
//! provider (an internal import becomes a direct reference), shim/fixup
//! tables resolved by structure (`shims`), leaving out dead functions
//! (`gc`), folding constant globals into const expressions (dynamically
//! linked modules place data with imported `__memory_base` globals), one
//! synthetic start function that runs every instance's start in
//! instantiation order, the canonical-ABI boundary exports, and the refusal
//! of separate memories without `--multi-memory`. Functions the module must
//! implement itself (builtins, adapters) get placeholder indices after every
//! copied function ([`MergedImport::index`]); `link` generates their code
//! (the glue, built with walrus under [`INTERNAL_MODULE`] names).

use std::collections::BTreeMap;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};
use wasm_encoder::reencode::{Error as ReencodeError, Reencode, utils};
use wasm_encoder::{
    CodeSection, ConstExpr, DataCountSection, DataSection, ElementSection, EntityType, ExportKind,
    ExportSection, Function, FunctionSection, GlobalSection, ImportSection, Instruction, MemorySection,
    Module, StartSection, TableSection, TagSection, TypeSection,
};
use wasmparser::{ExternalKind, FuncType, Operator, Parser, Payload, TypeRef, ValType};

use crate::Options;
use crate::graph::*;
use crate::module_info::ModuleInfo;
use crate::parse::{ParsedComponent, StaticModuleId};
use crate::adapter::Encoding;
use crate::types::{Flat, FuncSig, MAX_FLAT_PARAMS, MAX_FLAT_RESULTS, ValTy};

mod gc;
mod shims;

/// Module name of placeholder imports that `link` replaces with code.
pub const INTERNAL_MODULE: &str = "karmem:internal";

/// Final index of a function in the merged module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FuncIndex(pub u32);
/// Final index of a memory in the merged module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemoryIndex(pub u32);

/// A function resolved before final indices are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FuncTarget {
    /// The k-th import of the merged module.
    Import(usize),
    /// The d-th defined function of a module instance.
    Defined(ModuleInstanceId, u32),
}

/// What a merged-module import stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ImportKind {
    /// A component import, lowered: stays an import, named by interface.
    Host { module: String, field: String },
    /// A canonical builtin, implemented by `link`.
    Builtin(BuiltinId),
    /// A lowered lifted function of a sibling component: a fused adapter.
    Fused(LoweredId),
    /// A lowered lifted function of the caller's own component instance, or
    /// of one it is nested in or that is nested in it: a call traps
    /// ("cannot enter component instance").
    Reenter(LoweredId),
    /// An export that converts borrowed handles to reps before the call.
    BorrowWrapper(usize),
    /// `[resource-drop]` exported for the host.
    DropExport(DefinedResourceId),
    /// A host import whose flat parameters or result carry handles of
    /// imported resources the caller holds in its handle table: the glue
    /// turns them into the host's numbers and back ([`HostCallPlan`]).
    HostCall(LoweredId),
}

/// One function the merge resolved to a host import or to generated code:
/// a host import stays an import of the output; every other kind is a
/// placeholder that `link` fills with generated code (the "glue").
#[derive(Debug, Clone)]
pub struct MergedImport {
    pub kind: ImportKind,
    pub ty: FuncType,
    /// Final index: an import index for [`ImportKind::Host`], else the
    /// index the glue function must take (after every copied function).
    pub index: FuncIndex,
}

/// One fused adapter.
#[derive(Debug, Clone)]
pub struct FusedPlan {
    pub callee: FuncIndex,
    pub post_return: Option<FuncIndex>,
    pub borrows: Vec<BorrowParam>,
    /// Set when values are copied between two memories.
    pub copy: Option<CopyPlan>,
}

/// A copying adapter between the caller's and the callee's memories.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    pub caller_memory: MemoryIndex,
    pub callee_memory: MemoryIndex,
    pub caller_realloc: Option<FuncIndex>,
    pub callee_realloc: Option<FuncIndex>,
    /// The parameter types, in order.
    pub params: Vec<ValTy>,
    /// `None`: no result.
    pub result: Option<ValTy>,
    /// The result comes back through a result area (more than one flat value).
    pub result_in_memory: bool,
    /// The parameters are passed as one pointer to a tuple of them (more
    /// than 16 flat values).
    pub params_in_memory: bool,
    pub caller_encoding: Encoding,
    pub callee_encoding: Encoding,
    /// Resources the callee defines whose borrowed handles cross inside
    /// copied values (list elements, parameters in memory): the copy
    /// replaces each handle by its rep, as a borrow lent to the defining
    /// component arrives.
    pub borrow_reps: Vec<DefinedResourceId>,
}

/// A handle of an imported resource in a host call's flat parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostHandle {
    /// Flat parameter position.
    pub pos: usize,
    pub resource: ImportPath,
    /// `own` (taken out of the caller's table) or `borrow` (lent for the call).
    pub own: bool,
}

/// A host import called through the caller's handle table: imported
/// resources listed in [`LinkPlan::imported_tables`] live in the table of
/// the component instance that holds them, with the host's number as rep.
#[derive(Debug, Clone)]
pub struct HostCallPlan {
    /// The host import itself.
    pub host: FuncIndex,
    /// The component instance that lowers the import (whose table it uses).
    pub owner: usize,
    pub params: Vec<HostHandle>,
    /// An `own` result: the host's number gets an entry in the table.
    pub result: Option<ImportPath>,
}

/// A wrapper at the host boundary around an exported function that
/// borrows handles of resources the component defines.
#[derive(Debug, Clone)]
pub struct WrapperPlan {
    /// An `own` result of a resource the component defines: the handle's
    /// type is checked on the way out.
    pub own_result: Option<DefinedResourceId>,
    pub callee: FuncIndex,
    /// Flat borrowed parameters, lent for the call.
    pub borrows: Vec<BorrowParam>,
    /// Borrows inside values in memory, made reps before the call.
    pub in_place: Vec<InPlace>,
    /// The callee's memory (where those values are).
    pub memory: Option<MemoryIndex>,
    /// Flat `own` parameters (position, resource) of resources another
    /// component instance defines.
    pub owns: Vec<(usize, DefinedResourceId)>,
    /// The component instance whose export this is.
    pub instance: usize,
}

/// What a copying adapter carries (see [`copy_shape`]).
#[derive(Debug, Clone)]
struct CopyShape {
    params: Vec<ValTy>,
    result: Option<ValTy>,
    result_in_memory: bool,
    params_in_memory: bool,
    caller_encoding: Encoding,
    callee_encoding: Encoding,
}

/// What a copying adapter can carry: parameters and a result of any type
/// without handles (strings and lists deep-copied at any depth), strings in
/// UTF-8 or UTF-16 on either side.
fn copy_shape(lowered: &Lowered, lifted: &Lifted) -> Result<CopyShape> {
    let what = || format!("{} calls {} across two memories", lowered.location, lifted.location);
    let encoding = |e: StringEncoding| match e {
        StringEncoding::Utf8 => Encoding::Utf8,
        StringEncoding::Utf16 => Encoding::Utf16,
        StringEncoding::CompactUtf16 => Encoding::Latin1Utf16,
    };
    let (caller, callee) = (encoding(lowered.options.encoding), encoding(lifted.options.encoding));
    let params_in_memory = lifted.sig.flat_params().is_none();
    // Handles move between the instances' tables, or are lent, wherever
    // they are in the copied values (`link::copy_moves`).
    let copyable = |ty: &ValTy| -> bool { ty.layout().is_some() };
    let mut params = Vec::new();
    for (name, ty) in &lifted.sig.params {
        if !copyable(ty) {
            bail!("{}: copying the parameter `{name}` between memories is not implemented yet", what());
        }
        params.push(ty.clone());
    }
    let mut flat_results = 0;
    if let Some(ty) = &lifted.sig.result {
        if ty.layout().is_none() {
            bail!("{}: copying this result between memories is not implemented yet", what());
        }
        flat_results = ty.flat_len_capped(MAX_FLAT_RESULTS);
    }
    Ok(CopyShape {
        params,
        result: lifted.sig.result.clone(),
        result_in_memory: flat_results > MAX_FLAT_RESULTS,
        params_in_memory,
        caller_encoding: caller,
        callee_encoding: callee,
    })
}

/// What `link` needs to implement the placeholders.
#[derive(Debug, Clone, Default)]
pub struct LinkPlan {
    pub imports: Vec<MergedImport>,
    /// Final index of the memory builtins use (none if the module has none).
    pub builtin_memory: Option<MemoryIndex>,
    /// Final function index of each defined resource's destructor.
    pub dtors: BTreeMap<DefinedResourceId, FuncIndex>,
    /// For each fused adapter: callee, post-return, and the flat params
    /// that carry borrows into the resource's own component (handle to rep).
    pub fused: BTreeMap<LoweredId, FusedPlan>,
    /// For each borrow wrapper: callee, and the flat params to convert
    /// (position, resource).
    pub wrappers: Vec<WrapperPlan>,
    /// Final names of the exports, for diagnostics.
    pub export_names: Vec<String>,
    /// JSON: which memory, realloc and string encoding each boundary
    /// function uses (the `karmem:canonical-abi` section).
    pub canonical_abi: String,
    /// Who owns each memory the instances define, by final memory index
    /// (the instance's location; `#k` for an instance's k-th memory past
    /// the first): the `karmem:memory-owners` section.
    pub memory_owners: Vec<String>,
    /// Final index of the first glue function (the placeholders, in
    /// import order, then the helpers `link` adds).
    pub glue_base: u32,
    /// The core type of every function the glue calls, by final index.
    pub func_types: BTreeMap<FuncIndex, FuncType>,
    /// Host imports called through a handle table.
    pub host_calls: BTreeMap<LoweredId, HostCallPlan>,
    /// `resource.drop` of an imported resource held in a table: the host's
    /// `[resource-drop]` import it calls for an own handle.
    pub host_drops: BTreeMap<BuiltinId, FuncIndex>,
    /// Imported resources held in the tables of the instances holding them
    /// ([`tabled_imports`]).
    pub tabled: std::collections::BTreeSet<ImportPath>,
    /// Shim functions whose callers now call their slot's function.
    pub shims_resolved: usize,
}

struct Layout<'g> {
    graph: &'g Graph,
    infos: Vec<Rc<ModuleInfo>>,
    imports: Vec<MergedImport>,
    import_keys: BTreeMap<ImportKind, usize>,
    /// Host imports of the output (set once the import list is final).
    host_imports: u32,
    /// Shim functions and the function each forwards to (see `shims`).
    redirect: BTreeMap<(ModuleInstanceId, u32), FuncTarget>,
    /// Per instance, per defined function: its position among the copied
    /// functions (`u32::MAX`: not copied, see `gc`).
    func_index: Vec<Vec<u32>>,
    table_base: Vec<u32>,
    memory_base: Vec<u32>,
    global_base: Vec<u32>,
    tag_base: Vec<u32>,
    /// Per host import name, the memory and string encoding of the first
    /// `canon lower` of it; a later one into another memory gets a name of
    /// its own (`karmem_partition::module_in_memory`).
    host_lowerings: BTreeMap<(String, String), (Option<MemoryIndex>, StringEncoding)>,
    /// Per component instantiation that owns one, the memory its `canon`
    /// options name (first found).
    owner_memory: BTreeMap<usize, MemoryIndex>,
    /// Imported resources held in handle tables ([`tabled_imports`]).
    tabled: std::collections::BTreeSet<ImportPath>,
    /// Per host call through a table, the import (position) it calls.
    host_call_imports: BTreeMap<LoweredId, usize>,
    /// Per `resource.drop` of a tabled imported resource, the host drop (position).
    host_drop_imports: BTreeMap<BuiltinId, usize>,
}

impl<'g> Layout<'g> {
    #[allow(
        clippy::indexing_slicing,
        reason = "`infos` holds one entry per graph instance, and instance ids are only made by pushing onto the graph's instance list"
    )]
    fn info(&self, id: ModuleInstanceId) -> &ModuleInfo {
        &self.infos[id.0]
    }

    fn import(&mut self, kind: ImportKind, ty: FuncType) -> usize {
        if let Some(k) = self.import_keys.get(&kind) {
            return *k;
        }
        let k = self.imports.len();
        self.imports.push(MergedImport { kind: kind.clone(), ty, index: FuncIndex(u32::MAX) });
        self.import_keys.insert(kind, k);
        k
    }

    /// The position among all imports of import number `ordinal` of `kind`.
    fn nth_import(&self, id: ModuleInstanceId, kind: fn(&TypeRef) -> bool, ordinal: u32) -> Result<usize> {
        self.info(id)
            .imports
            .iter()
            .enumerate()
            .filter(|(_, i)| kind(&i.ty))
            .nth(ordinal as usize)
            .map(|(p, _)| p)
            .ok_or_else(|| anyhow!("import {ordinal} is missing in `{}`", self.graph.instance(id).location))
    }

    fn export(&self, id: ModuleInstanceId, name: &str, want: ExternalKind) -> Result<u32> {
        let location = &self.graph.instance(id).location;
        match self.info(id).exports.get(name) {
            Some((kind, index)) if same_kind(*kind, want) => Ok(*index),
            Some((kind, _)) => bail!("export `{name}` of `{location}` is a {kind:?}, not a {want:?}"),
            None => bail!("`{location}` has no export `{name}`"),
        }
    }

    /// Resolve a core function; `ty` is the type the consumer expects and
    /// names a host import's signature.
    fn func(&mut self, def: &CoreDef, ty: Option<&FuncType>, options: &Options) -> Result<FuncTarget> {
        match def {
            CoreDef::Export(id, name) => {
                let index = self.export(*id, name, ExternalKind::Func)?;
                let imported = self.info(*id).imported_funcs;
                if index < imported {
                    let pos = self.nth_import(*id, is_func, index)?;
                    let inner = self.graph.instance(*id).imports.get(pos).cloned().context("import out of range")?;
                    let ty = self.info(*id).func_type(index).cloned();
                    self.func(&inner, ty.as_ref(), options)
                } else {
                    Ok(FuncTarget::Defined(*id, index - imported))
                }
            }
            CoreDef::Lowered(lid) => {
                let lowered = self.graph.lowered(*lid).clone();
                let ty = ty.cloned().with_context(|| format!("{} is used as something other than a function", lowered.location))?;
                match &lowered.target {
                    LowerTarget::Import(path) => {
                        let (module, field) = self.host_import(&lowered)?;
                        let host = self.import(ImportKind::Host { module, field }, ty.clone());
                        let tabled = self
                            .graph
                            .import_sigs
                            .get(path)
                            .is_some_and(|sig| sig_resources(sig).iter().any(|r| self.tabled.contains(r)));
                        if tabled {
                            self.host_call_imports.insert(*lid, host);
                            return Ok(FuncTarget::Import(self.import(ImportKind::HostCall(*lid), ty)));
                        }
                        Ok(FuncTarget::Import(host))
                    }
                    LowerTarget::Lifted(callee) if self.graph.reenters(lowered.owner, self.graph.lifted(*callee).owner) => {
                        Ok(FuncTarget::Import(self.import(ImportKind::Reenter(*lid), ty)))
                    }
                    LowerTarget::Lifted(callee) => {
                        self.check_fusable(&lowered, *callee, options)?;
                        Ok(FuncTarget::Import(self.import(ImportKind::Fused(*lid), ty)))
                    }
                }
            }
            CoreDef::Builtin(bid) => {
                let builtin = self.graph.builtin(*bid).clone();
                let (params, results) = match builtin.kind {
                    BuiltinKind::ResourceNew | BuiltinKind::ResourceRep => (vec![ValType::I32], vec![ValType::I32]),
                    BuiltinKind::ResourceDrop => (vec![ValType::I32], vec![]),
                };
                let ty = FuncType::new(params, results);
                match (&builtin.resource, builtin.kind) {
                    (ResourceRef::Imported(path), BuiltinKind::ResourceDrop) => {
                        let (module, last) = host_name(path);
                        let field = format!("[resource-drop]{last}");
                        let (module, field) =
                            self.host_import_in(builtin.owner, module, field, None, StringEncoding::Utf8)?;
                        let host = self.import(ImportKind::Host { module, field }, ty.clone());
                        if self.tabled.contains(path) {
                            self.host_drop_imports.insert(*bid, host);
                            return Ok(FuncTarget::Import(self.import(ImportKind::Builtin(*bid), ty)));
                        }
                        Ok(FuncTarget::Import(host))
                    }
                    (ResourceRef::Imported(path), kind) => bail!(
                        "`canon {}` of the imported resource `{}` is not allowed",
                        kind.name(),
                        path.join("#")
                    ),
                    (ResourceRef::Defined(_), _) => Ok(FuncTarget::Import(self.import(ImportKind::Builtin(*bid), ty))),
                }
            }
        }
    }

    /// Resolve a core table, memory or global to (instance, defined index).
    fn item(&self, def: &CoreDef, kind: ExternalKind) -> Result<(ModuleInstanceId, u32)> {
        match def {
            CoreDef::Export(id, name) => {
                let index = self.export(*id, name, kind)?;
                let (imported, is_kind): (u32, fn(&TypeRef) -> bool) = match kind {
                    ExternalKind::Table => (self.info(*id).imported_tables, is_table),
                    ExternalKind::Memory => (self.info(*id).imported_memories, is_memory),
                    ExternalKind::Tag => (self.info(*id).imported_tags, is_tag),
                    _ => (self.info(*id).imported_globals, is_global),
                };
                if index < imported {
                    let pos = self.nth_import(*id, is_kind, index)?;
                    let inner = self.graph.instance(*id).imports.get(pos).cloned().context("import out of range")?;
                    self.item(&inner, kind)
                } else {
                    Ok((*id, index - imported))
                }
            }
            CoreDef::Lowered(l) => bail!("{} is used as a {kind:?}", self.graph.lowered(*l).location),
            CoreDef::Builtin(_) => bail!("a canonical builtin is used as a {kind:?}"),
        }
    }

    fn memory(&self, def: &CoreDef) -> Result<MemoryIndex> {
        let (id, d) = self.item(def, ExternalKind::Memory)?;
        Ok(MemoryIndex(base_of(&self.memory_base, id)? + d))
    }

    /// The import name of a lowered host import. Instances that lower the
    /// same import into different memories (two composed components both
    /// importing WASI) each get an import of their own: the first keeps
    /// the interface's name, the others are qualified with their memory.
    /// The same memory with another string encoding is refused.
    fn host_import(&mut self, lowered: &Lowered) -> Result<(String, String)> {
        let LowerTarget::Import(path) = &lowered.target else {
            bail!("{} does not lower an import", lowered.location);
        };
        let (module, field) = host_name(path);
        let memory = lowered.options.memory.as_ref().map(|m| self.memory(m)).transpose()?;
        self.host_import_in(lowered.owner, module, field, memory, lowered.options.encoding)
    }

    /// The memory an import of component instantiation `owner` points
    /// into: its own memory option, else (in a composition) the memory the
    /// instantiation's other `canon` options name, so that every WASI call
    /// of one component reaches the same WASI state (its handle table).
    fn effective_memory(&self, owner: usize, memory: Option<MemoryIndex>) -> Option<MemoryIndex> {
        memory.or_else(|| if self.owner_memory.len() > 1 { self.owner_memory.get(&owner).copied() } else { None })
    }

    fn host_import_in(
        &mut self,
        owner: usize,
        module: String,
        field: String,
        memory: Option<MemoryIndex>,
        encoding: StringEncoding,
    ) -> Result<(String, String)> {
        let memory = self.effective_memory(owner, memory);
        // WASI in a composition: always named by memory, so the WASI shim
        // links each component's calls to its own copy.
        if self.owner_memory.len() > 1
            && module.starts_with("wasi:")
            && let Some(m) = memory
        {
            return Ok((karmem_partition::module_in_memory(&module, m.0), field));
        }
        let these = (memory, encoding);
        let key = (module.clone(), field.clone());
        match self.host_lowerings.get(&key) {
            None => {
                self.host_lowerings.insert(key, these);
                Ok((module, field))
            }
            Some(first) if *first == these => Ok((module, field)),
            Some((first_memory, _)) if *first_memory == memory => bail!(
                "`{module}` `{field}` is lowered twice into one memory with different string encodings; \
                 this cannot be lowered yet"
            ),
            Some(_) => {
                let memory = memory.map_or(u32::MAX, |m| m.0);
                Ok((karmem_partition::module_in_memory(&module, memory), field))
            }
        }
    }

    /// A shim resolves to the function its table slot holds.
    fn redirected(&self, target: FuncTarget) -> FuncTarget {
        match target {
            FuncTarget::Defined(id, d) => self.redirect.get(&(id, d)).copied().unwrap_or(target),
            FuncTarget::Import(_) => target,
        }
    }

    /// The final index of a resolved function; valid once the import list
    /// is final (`assign_import_indices`).
    fn finish(&self, target: FuncTarget) -> FuncIndex {
        match self.redirected(target) {
            FuncTarget::Import(k) => self.imports.get(k).map_or(FuncIndex(u32::MAX), |i| i.index),
            FuncTarget::Defined(id, d) => FuncIndex(
                self.func_index
                    .get(id.0)
                    .and_then(|f| f.get(d as usize))
                    .filter(|i| **i != u32::MAX)
                    .map_or(u32::MAX, |i| self.host_imports + i),
            ),
        }
    }

    /// Number the final imports (host imports, in discovery order) and the
    /// glue functions (every other kind, after `glue_base`).
    fn assign_import_indices(&mut self, glue_base_after_imports: u32) -> u32 {
        let hosts = self.imports.iter().filter(|i| matches!(i.kind, ImportKind::Host { .. })).count() as u32;
        self.host_imports = hosts;
        let (mut host, mut glue) = (0u32, hosts + glue_base_after_imports);
        for import in &mut self.imports {
            if matches!(import.kind, ImportKind::Host { .. }) {
                import.index = FuncIndex(host);
                host += 1;
            } else {
                import.index = FuncIndex(glue);
                glue += 1;
            }
        }
        hosts + glue_base_after_imports
    }

    /// A lowered lifted function can become a direct call only when no
    /// value crosses through memory or carries a handle.
    fn check_fusable(&self, lowered: &Lowered, callee: LiftedId, options: &Options) -> Result<()> {
        let lifted = self.graph.lifted(callee);
        let sig = &lifted.sig;
        if !sig.uses_memory() {
            return Ok(());
        }
        let same = match (&lowered.options.memory, &lifted.options.memory) {
            (Some(a), Some(b)) => self.memory(a)? == self.memory(b)?,
            _ => false,
        };
        if same {
            bail!(
                "{} calls {} through one shared memory; copying adapters within one memory are not implemented yet",
                lowered.location,
                lifted.location
            );
        }
        if !options.multi_memory {
            bail!(
                "{} calls {}, and the two components own separate memories, so values must be copied between them. \
                 Either pass `--multi-memory` to keep both memories in one module, \
                 or lower each component on its own and compose them through the runtime",
                lowered.location,
                lifted.location
            );
        }
        copy_shape(lowered, lifted).map(|_| ())
    }

    /// A global's constant value, when it is an immutable global whose
    /// initializer is a plain constant (followed through imports).
    fn global_constant(&self, id: ModuleInstanceId, index: u32, module_bytes: &[&[u8]]) -> Option<Instruction<'static>> {
        let info = self.info(id);
        if index < info.imported_globals {
            let pos = self.nth_import(id, is_global, index).ok()?;
            let inner = self.graph.instance(id).imports.get(pos)?.clone();
            let (owner, d) = self.item(&inner, ExternalKind::Global).ok()?;
            return self.global_constant(owner, self.info(owner).imported_globals + d, module_bytes);
        }
        let bytes = module_bytes.get(self.graph.instance(id).module.0)?;
        let defined = index - info.imported_globals;
        for payload in Parser::new(0).parse_all(bytes) {
            if let Ok(Payload::GlobalSection(reader)) = payload {
                let global = reader.into_iter().nth(defined as usize)?.ok()?;
                if global.ty.mutable {
                    return None;
                }
                return fold_const_expr(&global.init_expr, |global_index| {
                    self.global_constant(id, global_index, module_bytes)
                });
            }
        }
        None
    }
}

/// The value of a constant expression made of `i32/i64.const`, `global.get`
/// of globals whose value `global` knows, and the extended-const
/// arithmetic (`add`, `sub`, `mul`, wrapping), or `None` when it is
/// anything else (`ref.func`, a global of unknown value, ...).
fn fold_const_expr(
    expr: &wasmparser::ConstExpr<'_>,
    global: impl Fn(u32) -> Option<Instruction<'static>>,
) -> Option<Instruction<'static>> {
    #[derive(Clone, Copy)]
    enum C {
        I32(i32),
        I64(i64),
    }
    let mut stack: Vec<C> = Vec::new();
    let mut ops = expr.get_operators_reader();
    loop {
        let op = ops.read().ok()?;
        let c = match op {
            Operator::End => break,
            Operator::I32Const { value } => C::I32(value),
            Operator::I64Const { value } => C::I64(value),
            Operator::GlobalGet { global_index } => match global(global_index)? {
                Instruction::I32Const(value) => C::I32(value),
                Instruction::I64Const(value) => C::I64(value),
                _ => return None,
            },
            Operator::I32Add | Operator::I32Sub | Operator::I32Mul => {
                let (C::I32(b), C::I32(a)) = (stack.pop()?, stack.pop()?) else { return None };
                C::I32(match op {
                    Operator::I32Add => a.wrapping_add(b),
                    Operator::I32Sub => a.wrapping_sub(b),
                    _ => a.wrapping_mul(b),
                })
            }
            Operator::I64Add | Operator::I64Sub | Operator::I64Mul => {
                let (C::I64(b), C::I64(a)) = (stack.pop()?, stack.pop()?) else { return None };
                C::I64(match op {
                    Operator::I64Add => a.wrapping_add(b),
                    Operator::I64Sub => a.wrapping_sub(b),
                    _ => a.wrapping_mul(b),
                })
            }
            _ => return None,
        };
        stack.push(c);
    }
    match stack.as_slice() {
        [C::I32(value)] => Some(Instruction::I32Const(*value)),
        [C::I64(value)] => Some(Instruction::I64Const(*value)),
        _ => None,
    }
}

/// The memory, realloc and string encoding of one boundary function.
type BoundaryOptions = (Option<MemoryIndex>, Option<FuncTarget>, StringEncoding);

/// The first final index of an instance's defined items of one kind.
fn base_of(bases: &[u32], id: ModuleInstanceId) -> Result<u32> {
    bases.get(id.0).copied().context("internal error: a module instance is out of range")
}

fn same_kind(a: ExternalKind, b: ExternalKind) -> bool {
    let norm = |k| match k {
        ExternalKind::FuncExact => ExternalKind::Func,
        k => k,
    };
    norm(a) == norm(b)
}
fn is_func(t: &TypeRef) -> bool {
    matches!(t, TypeRef::Func(_) | TypeRef::FuncExact(_))
}
fn is_table(t: &TypeRef) -> bool {
    matches!(t, TypeRef::Table(_))
}
fn is_memory(t: &TypeRef) -> bool {
    matches!(t, TypeRef::Memory(_))
}
fn is_global(t: &TypeRef) -> bool {
    matches!(t, TypeRef::Global(_))
}
fn is_tag(t: &TypeRef) -> bool {
    matches!(t, TypeRef::Tag(_))
}

/// Interface and field names of an imported function: `(interface, name)`,
/// or `("$root", name)` for a function imported at the top level.
pub fn host_name(path: &[String]) -> (String, String) {
    match path {
        [] => ("$root".to_string(), String::new()),
        [name] => ("$root".to_string(), name.clone()),
        [init @ .., last] => (init.join("#"), last.clone()),
    }
}

/// Per-instance index maps for the reencoder (module index -> final index).
pub(crate) struct InstanceMaps {
    pub(crate) funcs: Vec<u32>,
    pub(crate) tables: Vec<u32>,
    pub(crate) memories: Vec<u32>,
    pub(crate) globals: Vec<u32>,
    /// Exception tags: every instance's tags are tags of the merged module.
    pub(crate) tags: Vec<u32>,
    /// For imported globals that fold to a constant.
    pub(crate) global_consts: BTreeMap<u32, Instruction<'static>>,
    pub(crate) type_base: u32,
    pub(crate) elem_base: u32,
    pub(crate) data_base: u32,
}

impl Reencode for InstanceMaps {
    type Error = std::convert::Infallible;

    // Every index below was checked by the validator, so the maps are
    // complete; `u32::MAX` would only surface as a validation error of the
    // output, never as a panic.
    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(self.funcs.get(func as usize).copied().unwrap_or(u32::MAX))
    }
    fn table_index(&mut self, table: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(self.tables.get(table as usize).copied().unwrap_or(u32::MAX))
    }
    fn memory_index(&mut self, memory: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(self.memories.get(memory as usize).copied().unwrap_or(u32::MAX))
    }
    fn global_index(&mut self, global: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(self.globals.get(global as usize).copied().unwrap_or(u32::MAX))
    }
    fn tag_index(&mut self, tag: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(self.tags.get(tag as usize).copied().unwrap_or(u32::MAX))
    }
    fn type_index(&mut self, ty: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(self.type_base + ty)
    }
    fn element_index(&mut self, element: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(self.elem_base + element)
    }
    fn data_index(&mut self, data: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(self.data_base + data)
    }
    fn const_expr(&mut self, expr: wasmparser::ConstExpr) -> Result<ConstExpr, ReencodeError<Self::Error>> {
        // Arithmetic over constants (extended-const, e.g. `__memory_base`
        // plus an offset, once `__memory_base` is known) becomes one
        // constant, so the output needs no extended-const.
        match fold_const_expr(&expr, |global_index| self.global_consts.get(&global_index).cloned()) {
            Some(Instruction::I32Const(value)) => return Ok(ConstExpr::i32_const(value)),
            Some(Instruction::I64Const(value)) => return Ok(ConstExpr::i64_const(value)),
            _ => {}
        }
        let mut ops = expr.get_operators_reader();
        let mut bytes = Vec::new();
        while !ops.is_end_then_eof() {
            let op = ops.read()?;
            let insn = match op {
                Operator::GlobalGet { global_index } if self.global_consts.contains_key(&global_index) => {
                    self.global_consts.get(&global_index).cloned().unwrap_or(Instruction::Unreachable)
                }
                op => self.instruction(op)?,
            };
            wasm_encoder::Encode::encode(&insn, &mut bytes);
        }
        Ok(ConstExpr::raw(bytes))
    }
}

/// Copy one function body with `maps` applied. Operators that carry no
/// index are copied as raw bytes (most of any body); the rest go through
/// the reencoder. This halves the cost of copying large modules compared
/// with re-encoding every operator. `memories_identity`: memory indices
/// do not change, so loads, stores and `memory.size`/`grow` copy as is.
fn reencode_body(
    maps: &mut InstanceMaps,
    code: &mut CodeSection,
    body: &wasmparser::FunctionBody<'_>,
    module: &[u8],
    memories_identity: bool,
) -> Result<(), ReencodeError<std::convert::Infallible>> {
    let mut f = maps.new_function_with_parsed_locals(body)?;
    let mut ops = body.get_operators_reader()?;
    let mut copy_from = ops.original_position();
    while !ops.eof() {
        let (op, at) = ops.read_with_offset()?;
        let raw = match module.get(at).copied() {
            // control without immediates, br, br_if, br_table, return,
            // drop, select, local.get/set/tee, constants, numeric ops.
            Some(0x00 | 0x01 | 0x05 | 0x0b..=0x0f | 0x1a | 0x1b | 0x20..=0x22 | 0x41..=0xc4) => true,
            Some(0x02..=0x04) => !matches!(
                op,
                Operator::Block { blockty: wasmparser::BlockType::FuncType(_) }
                    | Operator::Loop { blockty: wasmparser::BlockType::FuncType(_) }
                    | Operator::If { blockty: wasmparser::BlockType::FuncType(_) }
            ),
            // loads, stores, memory.size, memory.grow.
            Some(0x28..=0x40) => memories_identity,
            _ => false,
        };
        if raw {
            continue;
        }
        if let Some(before) = module.get(copy_from..at) {
            f.raw(before.iter().copied());
        }
        f.instruction(&maps.instruction(op)?);
        copy_from = ops.original_position();
    }
    if let Some(rest) = module.get(copy_from..ops.original_position()) {
        f.raw(rest.iter().copied());
    }
    code.function(&f);
    Ok(())
}

/// The merged module before `link`: every instance's code is encoded;
/// the glue (builtins, adapters) is not.
#[derive(Debug)]
pub struct Merged {
    pub sections: Sections,
    pub plan: LinkPlan,
}

fn flat_to_val(f: Flat) -> ValType {
    match f {
        Flat::I32 => ValType::I32,
        Flat::I64 => ValType::I64,
        Flat::F32 => ValType::F32,
        Flat::F64 => ValType::F64,
    }
}

/// Does every `borrow<T>` in `ty` lend a resource that `owner` (the
/// callee's component instance) defines?
fn borrows_to_owner(graph: &Graph, owner: usize, ty: &ValTy) -> bool {
    ty.borrowed().all(|r| matches!(r, ResourceRef::Defined(id) if graph.resource(*id).owner == owner))
}

/// A `borrow<T>` parameter of a resource the component defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BorrowParam {
    /// Flat parameter position.
    pub pos: usize,
    pub resource: DefinedResourceId,
    /// The callee defines the resource: it receives the rep. Otherwise it
    /// receives a fresh borrow handle it must drop before returning.
    pub to_owner: bool,
}

/// Flat positions of `borrow<T>` params of resources defined in the
/// component (the caller passes a handle; see [`BorrowParam`]).
/// Borrowed handles inside a list parameter, or in parameters passed
/// through memory, of an exported function: the wrapper at the host
/// boundary makes them reps in place before the call (`reps_in_place`).
#[derive(Debug, Clone)]
pub enum InPlace {
    /// The flat list parameter at flat position `pos` (pointer, length).
    List { pos: usize, elem: ValTy },
    /// Every parameter, as the tuple the pointer (flat position 0) points at.
    Memory { ty: ValTy },
}

/// What may hold borrowed handles below the top level of a parameter.
enum Nested<'a> {
    /// Nothing: refused.
    Refuse,
    /// Lists, deep-copied by a copying adapter, which turns the borrows
    /// inside them into reps when they go to the defining component.
    Copied,
    /// Lists, fixed in place by the export's wrapper.
    InPlace(&'a mut Vec<InPlace>),
}

fn borrow_positions(
    graph: &Graph,
    owner: usize,
    ty: &ValTy,
    pos: &mut usize,
    out: &mut Vec<BorrowParam>,
    what: &str,
    nested: &mut Nested<'_>,
) -> Result<()> {
    match ty {
        ValTy::Borrow(ResourceRef::Defined(r)) => {
            out.push(BorrowParam { pos: *pos, resource: *r, to_owner: graph.resource(*r).owner == owner });
            *pos += 1;
        }
        ValTy::Borrow(ResourceRef::Imported(path)) => bail!(
            "{what} borrows the imported resource `{}`; borrowed imported handles cannot be lowered yet",
            path.join("#")
        ),
        ValTy::Record(fields) | ValTy::Tuple(fields) => {
            for f in fields {
                borrow_positions(graph, owner, f, pos, out, what, nested)?;
            }
        }
        other => {
            if other.has_borrows() {
                let list_to_owner = matches!(other, ValTy::List(_)) && borrows_to_owner(graph, owner, other);
                match (nested, other) {
                    // The copy lends each borrow in the list (`link::copy_moves`).
                    (Nested::Copied, ValTy::List(_)) => {}
                    (Nested::InPlace(fixes), ValTy::List(elem)) if list_to_owner => {
                        fixes.push(InPlace::List { pos: *pos, elem: (**elem).clone() });
                    }
                    (Nested::Refuse, _) => {
                        bail!("{what} passes borrowed handles inside a list or variant; this cannot be lowered yet")
                    }
                    _ => bail!(
                        "{what} passes borrowed handles inside a variant, or of a resource the callee does not \
                         define inside a list; this cannot be lowered yet"
                    ),
                }
            }
            // positions matter only while the parameters are flat (at most
            // MAX_FLAT_PARAMS); past that, borrows are refused
            *pos = pos.saturating_add(other.flat_len_capped(MAX_FLAT_PARAMS));
        }
    }
    Ok(())
}

/// Flat positions of the `own` handles in `ty` (a parameter; also inside
/// records and tuples) of resources another instance than `owner` defines.
fn foreign_owns(graph: &Graph, owner: usize, ty: &ValTy, pos: &mut usize, out: &mut Vec<(usize, DefinedResourceId)>) {
    match ty {
        ValTy::Own(ResourceRef::Defined(r)) => {
            if graph.resource(*r).owner != owner {
                out.push((*pos, *r));
            }
            *pos += 1;
        }
        ValTy::Record(fields) | ValTy::Tuple(fields) if ty.has_handles() => {
            fields.iter().for_each(|f| foreign_owns(graph, owner, f, pos, out));
        }
        other => *pos = pos.saturating_add(other.flat_len_capped(MAX_FLAT_PARAMS)),
    }
}

/// Every imported resource a value of `ty` holds a handle of (`own` or `borrow`).
fn imported_handles(ty: &ValTy, out: &mut Vec<ImportPath>) {
    match ty {
        ValTy::Own(ResourceRef::Imported(p)) | ValTy::Borrow(ResourceRef::Imported(p)) => out.push(p.clone()),
        ValTy::Own(_) | ValTy::Borrow(_) | ValTy::Prim(_) | ValTy::Flags(_) | ValTy::Enum(_) | ValTy::Opaque => {}
        ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().for_each(|f| imported_handles(f, out)),
        ValTy::Variant(cases) => cases.iter().flatten().for_each(|c| imported_handles(c, out)),
        ValTy::List(elem) | ValTy::FixedList(elem, _) | ValTy::Option(elem) => imported_handles(elem, out),
        ValTy::Result(ok, err) => {
            ok.iter().chain(err.iter()).for_each(|t| imported_handles(t, out));
        }
    }
}

/// Does `ty` (a parameter) hold imported handles only as flat `own`s: a
/// handle, or inside records and tuples?
fn imported_owns_flat(ty: &ValTy) -> bool {
    match ty {
        ValTy::Own(_) | ValTy::Borrow(ResourceRef::Defined(_)) => true,
        ValTy::Record(fields) | ValTy::Tuple(fields) => fields.iter().all(imported_owns_flat),
        other => {
            let mut out = Vec::new();
            imported_handles(other, &mut out);
            out.is_empty()
        }
    }
}

/// The flat `own` parameters (position, resource) and the `own` result of
/// imported resources in `tabled`, of a function whose parameters are flat.
pub fn imported_owns(sig: &FuncSig, tabled: &std::collections::BTreeSet<ImportPath>) -> (Vec<(usize, ImportPath)>, Option<ImportPath>) {
    fn walk(ty: &ValTy, pos: &mut usize, tabled: &std::collections::BTreeSet<ImportPath>, out: &mut Vec<(usize, ImportPath)>) {
        match ty {
            ValTy::Own(ResourceRef::Imported(p)) => {
                if tabled.contains(p) {
                    out.push((*pos, p.clone()));
                }
                *pos += 1;
            }
            ValTy::Record(fields) | ValTy::Tuple(fields) if ty.has_handles() => {
                fields.iter().for_each(|f| walk(f, pos, tabled, out));
            }
            other => *pos = pos.saturating_add(other.flat_len_capped(MAX_FLAT_PARAMS)),
        }
    }
    let mut owns = Vec::new();
    if sig.flat_params().is_some() {
        let mut pos = 0;
        for (_, ty) in &sig.params {
            walk(ty, &mut pos, tabled, &mut owns);
        }
    }
    let result = match &sig.result {
        Some(ValTy::Own(ResourceRef::Imported(p))) if tabled.contains(p) => Some(p.clone()),
        _ => None,
    };
    (owns, result)
}

/// Every imported resource a function's parameters or result hold handles of.
fn sig_resources(sig: &FuncSig) -> Vec<ImportPath> {
    let mut out = Vec::new();
    sig.params.iter().for_each(|(_, t)| imported_handles(t, &mut out));
    sig.result.iter().for_each(|t| imported_handles(t, &mut out));
    out
}

/// The handles of imported resources a host call converts: parameters that
/// are a handle themselves, at their flat positions, and an `own` result.
fn host_handles(sig: &FuncSig) -> (Vec<HostHandle>, Option<ImportPath>) {
    let mut params = Vec::new();
    let mut pos = 0usize;
    for (_, ty) in &sig.params {
        match ty {
            ValTy::Own(ResourceRef::Imported(p)) => params.push(HostHandle { pos, resource: p.clone(), own: true }),
            ValTy::Borrow(ResourceRef::Imported(p)) => params.push(HostHandle { pos, resource: p.clone(), own: false }),
            _ => {}
        }
        pos = pos.saturating_add(ty.flat_len_capped(MAX_FLAT_PARAMS));
    }
    let result = match &sig.result {
        Some(ValTy::Own(ResourceRef::Imported(p))) => Some(p.clone()),
        _ => None,
    };
    (params, result)
}

/// The imported resources whose handles live in the handle table of the
/// component instance holding them, as the canonical ABI has it (the
/// host's number is the entry's rep): those every crossing of which the
/// glue converts — a host import taking the handle as a parameter of its
/// own (`own` or `borrow`, parameters flat) or returning it as its `own`
/// result, and `resource.drop`. A resource that also crosses otherwise
/// (inside a list, record or variant, through an export, between two
/// components, or through an import whose type is not known) keeps the
/// host's numbers, passed through (docs/LOWERING.md, known limitations).
fn tabled_imports(graph: &Graph) -> std::collections::BTreeSet<ImportPath> {
    let mut candidates = std::collections::BTreeSet::new();
    let mut passed_through = std::collections::BTreeSet::new();
    for lowered in &graph.lowered {
        let LowerTarget::Import(path) = &lowered.target else { continue };
        let Some(sig) = graph.import_sigs.get(path) else {
            // Handles of some resource may cross unseen: convert none.
            return std::collections::BTreeSet::new();
        };
        let convertible = sig.flat_params().is_some();
        for (_, ty) in &sig.params {
            match ty {
                ValTy::Own(ResourceRef::Imported(p)) | ValTy::Borrow(ResourceRef::Imported(p)) if convertible => {
                    candidates.insert(p.clone());
                }
                other => {
                    let mut out = Vec::new();
                    imported_handles(other, &mut out);
                    passed_through.extend(out);
                }
            }
        }
        match &sig.result {
            Some(ValTy::Own(ResourceRef::Imported(p))) => {
                candidates.insert(p.clone());
            }
            Some(other) => {
                let mut out = Vec::new();
                imported_handles(other, &mut out);
                passed_through.extend(out);
            }
            None => {}
        }
    }
    // Between components: an `own` handle passed flat (a parameter, inside
    // a record or tuple, or the whole result) moves from the sender's
    // table to the receiver's (`link`); an export or anything else passes
    // the host's numbers through.
    for (c, lifted) in graph.lifted.iter().enumerate() {
        let exported = graph.exports.iter().any(|e| e.lifted.0 == c);
        let sig = &lifted.sig;
        let flat = !exported && !sig.is_async && sig.flat_params().is_some();
        for (_, ty) in &sig.params {
            if !(flat && imported_owns_flat(ty)) {
                passed_through.extend(sig_resources(&FuncSig { params: vec![(String::new(), ty.clone())], result: None, is_async: false }));
            }
        }
        match &sig.result {
            Some(ValTy::Own(ResourceRef::Imported(_))) if flat => {}
            Some(ty) => {
                let mut out = Vec::new();
                imported_handles(ty, &mut out);
                passed_through.extend(out);
            }
            None => {}
        }
    }
    for builtin in &graph.builtins {
        if let (ResourceRef::Imported(p), BuiltinKind::ResourceDrop) = (&builtin.resource, builtin.kind) {
            candidates.insert(p.clone());
        }
    }
    candidates.retain(|p| !passed_through.contains(p));
    candidates
}

/// Merge every module instance of `graph` into one core module.
pub fn merge(
    parsed: &ParsedComponent<'_>,
    graph: &Graph,
    module_infos: &BTreeMap<StaticModuleId, Rc<ModuleInfo>>,
    options: &Options,
) -> Result<Merged> {
    let infos = graph
        .instances
        .iter()
        .map(|i| module_infos.get(&i.module).cloned().context("module summary missing"))
        .collect::<Result<Vec<_>>>()?;
    let mut layout = Layout {
        graph,
        infos,
        imports: Vec::new(),
        import_keys: BTreeMap::new(),
        host_imports: 0,
        redirect: BTreeMap::new(),
        func_index: Vec::new(),
        table_base: Vec::new(),
        memory_base: Vec::new(),
        global_base: Vec::new(),
        tag_base: Vec::new(),
        host_lowerings: BTreeMap::new(),
        owner_memory: BTreeMap::new(),
        tabled: tabled_imports(graph),
        host_call_imports: BTreeMap::new(),
        host_drop_imports: BTreeMap::new(),
    };
    let (mut tables, mut memories, mut globals, mut tags) = (0u32, 0u32, 0u32, 0u32);
    for info in &layout.infos {
        layout.table_base.push(tables);
        layout.memory_base.push(memories);
        layout.global_base.push(globals);
        layout.tag_base.push(tags);
        tables += info.defined_tables;
        memories += info.defined_memories;
        globals += info.defined_globals;
        tags += info.defined_tags;
    }

    // Separate memories are refused unless asked for.
    let owners: Vec<&str> = graph
        .instances
        .iter()
        .zip(&layout.infos)
        .filter(|(_, info)| info.defined_memories > 0)
        .map(|(i, _)| i.location.as_str())
        .collect();
    if owners.len() > 1 && !options.multi_memory {
        bail!(
            "{} core instances own separate memories ({}). Either pass `--multi-memory` to keep them \
             in one multi-memory module, or lower each component on its own and compose them through the runtime",
            owners.len(),
            owners.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
        );
    }

    let mut owner_memory = BTreeMap::new();
    let lowered_options = graph.lowered.iter().map(|l| (l.owner, &l.options));
    let lifted_options = graph.lifted.iter().map(|l| (l.owner, &l.options));
    for (owner, options) in lowered_options.chain(lifted_options) {
        if let Some(m) = &options.memory
            && !owner_memory.contains_key(&owner)
        {
            owner_memory.insert(owner, layout.memory(m)?);
        }
    }
    layout.owner_memory = owner_memory;
    let mut memory_owners = Vec::new();
    for (instance, info) in graph.instances.iter().zip(&layout.infos) {
        for d in 0..info.defined_memories {
            memory_owners.push(if d == 0 { instance.location.clone() } else { format!("{}#{d}", instance.location) });
        }
    }

    // Pass 1: resolve every function import; this also discovers the
    // merged module's own imports.
    let mut func_targets: Vec<Vec<Option<FuncTarget>>> = Vec::new();
    for (i, instance) in graph.instances.iter().enumerate() {
        let id = ModuleInstanceId(i);
        let mut targets = Vec::new();
        for (import, def) in layout.info(id).imports.clone().iter().zip(&instance.imports) {
            let target = match import.ty {
                TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                    let ty = layout.info(id).types.get(t as usize).cloned().flatten();
                    Some(layout.func(def, ty.as_ref(), options).with_context(|| {
                        format!("failed to resolve import `{}` `{}` of `{}`", import.module, import.field, instance.location)
                    })?)
                }
                _ => None,
            };
            targets.push(target);
        }
        func_targets.push(targets);
    }

    // Exports at the canonical boundary.
    let mut exports: Vec<(String, ExportKind, FuncTargetOrIndex)> = Vec::new();
    let mut plan = LinkPlan { memory_owners, ..LinkPlan::default() };
    let mut canonical_memories: Vec<MemoryIndex> = Vec::new();
    let mut reallocs: Vec<FuncTarget> = Vec::new();
    // Per boundary function: (kind, name, memory, realloc, encoding).
    let mut boundary: Vec<(&str, String, BoundaryOptions)> = Vec::new();
    // (callee, flat borrows, borrows in memory, the callee's memory)
    type Wrapper =
        (FuncTarget, Vec<BorrowParam>, Vec<InPlace>, Option<MemoryIndex>, Option<DefinedResourceId>, Vec<(usize, DefinedResourceId)>, usize);
    let mut wrapper_callees: Vec<Wrapper> = Vec::new();
    let mut plan_wrapper_targets: Vec<FuncTarget> = Vec::new();
    for export in &graph.exports {
        let lifted = graph.lifted(export.lifted);
        let what = format!("the export `{}`", export.name);
        let callee = layout.func(&lifted.core, None, options).with_context(|| format!("failed to resolve {what}"))?;
        let mut borrows = Vec::new();
        let mut in_place = Vec::new();
        if lifted.sig.flat_params().is_none() {
            // Parameters in memory: every borrow is made a rep in place.
            let tuple = ValTy::Tuple(lifted.sig.params.iter().map(|(_, t)| t.clone()).collect());
            if tuple.has_borrows() {
                if !borrows_to_owner(graph, lifted.owner, &tuple) {
                    bail!(
                        "{what} passes borrowed handles of a resource it does not define through memory (too many \
                         parameters); this cannot be lowered yet"
                    );
                }
                in_place.push(InPlace::Memory { ty: tuple });
            }
        } else {
            let mut pos = 0;
            let mut nested = Nested::InPlace(&mut in_place);
            for (_, ty) in &lifted.sig.params {
                borrow_positions(graph, lifted.owner, ty, &mut pos, &mut borrows, &what, &mut nested)?;
            }
        }
        let own_result = match &lifted.sig.result {
            Some(ValTy::Own(ResourceRef::Defined(r))) => Some(*r),
            _ => None,
        };
        // Flat `own` parameters of a resource another instance defines: the
        // host's handles are the defining instance's (`link`).
        let mut owns = Vec::new();
        if lifted.sig.flat_params().is_some() {
            let mut pos = 0;
            for (_, ty) in &lifted.sig.params {
                foreign_owns(graph, lifted.owner, ty, &mut pos, &mut owns);
            }
        }
        let target = if borrows.is_empty() && in_place.is_empty() && own_result.is_none() && owns.is_empty() {
            callee
        } else {
            let mut params = Vec::new();
            for (_, ty) in &lifted.sig.params {
                ty.flatten(&mut params);
            }
            let ty = callee_type(&layout, callee)?
                .unwrap_or_else(|| FuncType::new(params.into_iter().map(flat_to_val), []));
            let k = wrapper_callees.len();
            plan_wrapper_targets.push(callee);
            let memory = lifted.options.memory.as_ref().map(|m| layout.memory(m)).transpose()?;
            wrapper_callees.push((callee, borrows, in_place, memory, own_result, owns, lifted.owner));
            FuncTarget::Import(layout.import(ImportKind::BorrowWrapper(k), ty))
        };
        if let Some(post) = &lifted.options.post_return {
            let post = layout.func(post, None, options)?;
            exports.push((format!("cabi_post_{}", export.name), ExportKind::Func, FuncTargetOrIndex::Func(post)));
        }
        let memory = lifted.options.memory.as_ref().map(|m| layout.memory(m)).transpose()?;
        let realloc = lifted.options.realloc.as_ref().map(|r| layout.func(r, None, options)).transpose()?;
        canonical_memories.extend(memory);
        reallocs.extend(realloc);
        boundary.push(("export", export.name.clone(), (memory, realloc, lifted.options.encoding)));
        exports.push((export.name.clone(), ExportKind::Func, FuncTargetOrIndex::Func(target)));
    }
    let mut import_options: BTreeMap<(String, String), BoundaryOptions> = BTreeMap::new();
    for lowered in &graph.lowered {
        if let LowerTarget::Import(_) = &lowered.target {
            let (module, field) = layout.host_import(lowered)?;
            if !layout.import_keys.contains_key(&ImportKind::Host { module: module.clone(), field: field.clone() }) {
                continue;
            }
            let memory = lowered.options.memory.as_ref().map(|m| layout.memory(m)).transpose()?;
            let memory = layout.effective_memory(lowered.owner, memory);
            let realloc = lowered.options.realloc.as_ref().map(|r| layout.func(r, None, options)).transpose()?;
            let these = (memory, realloc, lowered.options.encoding);
            // The same import lowered again into the same memory with
            // another realloc (a wasip1 adapter lowering the same import as
            // the main module): the host's results land in the same memory
            // either way; it allocates with the first realloc. See
            // docs/LOWERING.md.
            if let std::collections::btree_map::Entry::Vacant(entry) = import_options.entry((module.clone(), field.clone())) {
                canonical_memories.extend(memory);
                reallocs.extend(realloc);
                boundary.push(("import", format!("{module}#{field}"), these));
                entry.insert(these);
            }
        }
    }
    // Resource destructors and host-facing drops.
    let mut dtor_targets = BTreeMap::new();
    for (i, res) in graph.resources.iter().enumerate() {
        let id = DefinedResourceId(i);
        if let Some(dtor) = &res.dtor {
            dtor_targets.insert(id, layout.func(dtor, None, options)?);
        }
        if let Some((iface, name)) = &res.export_name {
            let used = graph.builtins.iter().any(|b| b.resource == ResourceRef::Defined(id));
            if used {
                let ty = FuncType::new([ValType::I32], []);
                let k = layout.import(ImportKind::DropExport(id), ty);
                let export = if iface == "$root" {
                    format!("[resource-drop]{name}")
                } else {
                    format!("{iface}#[resource-drop]{name}")
                };
                exports.push((export, ExportKind::Func, FuncTargetOrIndex::Func(FuncTarget::Import(k))));
            }
        }
    }
    let mut seen = Vec::new();
    let mut memory_names = Vec::new();
    for memory in canonical_memories {
        if seen.contains(&memory) {
            continue;
        }
        let name = if seen.is_empty() { "memory".to_string() } else { format!("memory{}", seen.len()) };
        seen.push(memory);
        memory_names.push((memory, name.clone()));
        exports.push((name, ExportKind::Memory, FuncTargetOrIndex::Index(memory.0)));
    }
    let mut seen_realloc = Vec::new();
    let mut realloc_names = Vec::new();
    for realloc in reallocs {
        if seen_realloc.contains(&realloc) {
            continue;
        }
        let name = if seen_realloc.is_empty() { "cabi_realloc".to_string() } else { format!("cabi_realloc{}", seen_realloc.len()) };
        seen_realloc.push(realloc);
        realloc_names.push((realloc, name.clone()));
        exports.push((name, ExportKind::Func, FuncTargetOrIndex::Func(realloc)));
    }
    // Which memory, realloc and string encoding each boundary function uses.
    let entries: Vec<serde_json::Value> = boundary
        .iter()
        .map(|(kind, name, (memory, realloc, encoding))| {
            let memory = memory.and_then(|m| memory_names.iter().find(|(x, _)| *x == m)).map(|(_, n)| n.clone());
            let realloc = realloc.and_then(|r| realloc_names.iter().find(|(x, _)| *x == r)).map(|(_, n)| n.clone());
            serde_json::json!({
                "kind": kind,
                "name": name,
                "memory": memory,
                "realloc": realloc,
                "string-encoding": match encoding {
                    StringEncoding::Utf8 => "utf8",
                    StringEncoding::Utf16 => "utf16",
                    StringEncoding::CompactUtf16 => "latin1+utf16",
                },
            })
        })
        .collect();
    plan.canonical_abi = serde_json::to_string(&entries).context("failed to describe the boundary")?;
    // Builtins need a memory for their handle tables: the canonical one,
    // else the first memory.
    plan.builtin_memory = seen.first().copied().or((memories > 0).then_some(MemoryIndex(0)));

    // Fused adapters.
    let mut fused = BTreeMap::new();
    for import in layout.imports.clone() {
        if let ImportKind::Fused(lid) = import.kind {
            let LowerTarget::Lifted(callee) = graph.lowered(lid).target else { continue };
            let lifted = graph.lifted(callee);
            let target = layout.func(&lifted.core, None, options)?;
            let post = match &lifted.options.post_return {
                Some(p) => Some(layout.func(p, None, options)?),
                None => None,
            };
            let what = graph.lowered(lid).location.clone();
            let lowered = graph.lowered(lid);
            let copying = match (&lowered.options.memory, &lifted.options.memory) {
                (Some(a), Some(b)) => lifted.sig.uses_memory() && layout.memory(a)? != layout.memory(b)?,
                _ => false,
            };
            let mut borrows = Vec::new();
            // Parameters in memory are copied whole: no flat positions.
            if !(copying && lifted.sig.flat_params().is_none()) {
                let mut pos = 0;
                for (_, ty) in &lifted.sig.params {
                    let mut nested = if copying { Nested::Copied } else { Nested::Refuse };
                    borrow_positions(graph, lifted.owner, ty, &mut pos, &mut borrows, &what, &mut nested)?;
                }
            }
            let copy = match (&lowered.options.memory, &lifted.options.memory) {
                (Some(a), Some(b)) if copying => {
                    let shape = copy_shape(lowered, lifted)?;
                    let realloc = |r: &Option<CoreDef>, layout: &mut Layout<'_>| -> Result<Option<FuncTarget>> {
                        r.as_ref().map(|r| layout.func(r, None, options)).transpose()
                    };
                    Some((
                        layout.memory(a)?,
                        layout.memory(b)?,
                        realloc(&lowered.options.realloc, &mut layout)?,
                        realloc(&lifted.options.realloc, &mut layout)?,
                        shape,
                    ))
                }
                _ => None,
            };
            fused.insert(lid, (target, post, borrows, copy));
        }
    }

    // From here on the import list is final. Shims resolve to their
    // slots, host imports come first, then every instance's functions,
    // the start function, and the glue `link` generates.
    layout.redirect = shims::find(&layout, parsed, &func_targets).context("failed to resolve shim tables")?;
    plan.shims_resolved = layout.redirect.len();
    let mut called: Vec<FuncTarget> = plan_wrapper_targets.clone();
    called.extend(layout.host_call_imports.values().chain(layout.host_drop_imports.values()).map(|k| FuncTarget::Import(*k)));
    called.extend(dtor_targets.values().copied());
    for (target, post, _, copy) in fused.values() {
        called.push(*target);
        called.extend(*post);
        if let Some((_, _, caller_realloc, callee_realloc, _)) = copy {
            called.extend(*caller_realloc);
            called.extend(*callee_realloc);
        }
    }
    // Copy only what can run.
    let mut roots: Vec<FuncTarget> = called.clone();
    roots.extend(exports.iter().filter_map(|(_, _, t)| match t {
        FuncTargetOrIndex::Func(f) => Some(*f),
        FuncTargetOrIndex::Index(_) => None,
    }));
    let live = gc::live_functions(&layout, parsed, &func_targets, &roots).context("failed to find live functions")?;
    let mut funcs = 0u32;
    for instance_live in &live {
        let mut indices = Vec::with_capacity(instance_live.len());
        for is_live in instance_live {
            if *is_live {
                indices.push(funcs);
                funcs += 1;
            } else {
                indices.push(u32::MAX);
            }
        }
        layout.func_index.push(indices);
    }
    let has_start = layout.infos.iter().any(|i| i.start.is_some());
    let glue_base = layout.assign_import_indices(funcs + u32::from(has_start));
    plan.glue_base = glue_base;
    let n_imports = layout.host_imports;
    plan.fused = fused
        .into_iter()
        .map(|(k, (t, p, borrows, copy))| {
            let copy = copy.map(|(caller_memory, callee_memory, caller_realloc, callee_realloc, shape)| {
                let mut borrow_reps: Vec<DefinedResourceId> = shape
                    .params
                    .iter()
                    .flat_map(ValTy::borrowed)
                    .filter_map(|r| match r {
                        ResourceRef::Defined(id) => Some(*id),
                        ResourceRef::Imported(_) => None,
                    })
                    .collect();
                borrow_reps.sort();
                borrow_reps.dedup();
                CopyPlan {
                    borrow_reps,
                    caller_memory,
                    callee_memory,
                    caller_realloc: caller_realloc.map(|r| layout.finish(r)),
                    callee_realloc: callee_realloc.map(|r| layout.finish(r)),
                    params: shape.params,
                    result: shape.result,
                    result_in_memory: shape.result_in_memory,
                    params_in_memory: shape.params_in_memory,
                    caller_encoding: shape.caller_encoding,
                    callee_encoding: shape.callee_encoding,
                }
            });
            (k, FusedPlan { callee: layout.finish(t), post_return: p.map(|p| layout.finish(p)), borrows, copy })
        })
        .collect();
    plan.dtors = dtor_targets.into_iter().map(|(k, t)| (k, layout.finish(t))).collect();
    plan.wrappers = wrapper_callees
        .into_iter()
        .map(|(t, borrows, in_place, memory, own_result, owns, instance)| WrapperPlan {
            owns,
            instance,
            callee: layout.finish(t),
            borrows,
            in_place,
            memory,
            own_result,
        })
        .collect();
    for (lid, k) in &layout.host_call_imports {
        let lowered = graph.lowered(*lid);
        let LowerTarget::Import(path) = &lowered.target else { continue };
        let sig = graph.import_sigs.get(path).context("host call without a type")?;
        let (mut params, mut result) = host_handles(sig);
        params.retain(|h| layout.tabled.contains(&h.resource));
        result = result.filter(|r| layout.tabled.contains(r));
        let host = layout.imports.get(*k).context("host import missing")?.index;
        plan.host_calls.insert(*lid, HostCallPlan { host, owner: lowered.owner, params, result });
    }
    plan.tabled = layout.tabled.clone();
    for (bid, k) in &layout.host_drop_imports {
        plan.host_drops.insert(*bid, layout.imports.get(*k).context("host drop missing")?.index);
    }
    // The types of the functions the glue calls.
    for target in called {
        let index = layout.finish(target);
        if let Some(ty) = callee_type(&layout, layout.redirected(target))? {
            plan.func_types.insert(index, ty);
        }
    }

    // Pass 2: encode.
    let module_bytes: Vec<&[u8]> = parsed.modules.iter().map(|m| m.bytes).collect();
    let mut types = TypeSection::new();
    let mut import_section = ImportSection::new();
    let mut functions = FunctionSection::new();
    let mut table_section = TableSection::new();
    let mut memory_section = MemorySection::new();
    let mut global_section = GlobalSection::new();
    let mut tag_section = TagSection::new();
    let mut export_section = ExportSection::new();
    let mut elements = ElementSection::new();
    let mut code = CodeSection::new();
    let mut datas = DataSection::new();
    let mut type_count = 0u32;
    let mut elem_count = 0u32;
    let mut data_count = 0u32;

    for import in &layout.imports {
        let ImportKind::Host { module, field } = &import.kind else { continue };
        let params = import.ty.params().iter().map(|t| wasm_val(*t)).collect::<Result<Vec<_>>>()?;
        let results = import.ty.results().iter().map(|t| wasm_val(*t)).collect::<Result<Vec<_>>>()?;
        types.ty().function(params, results);
        import_section.import(module, field, EntityType::Function(type_count));
        type_count += 1;
    }
    let start_type = type_count;
    types.ty().function([], []);
    type_count += 1;

    let mut starts = Vec::new();
    for (i, instance) in graph.instances.iter().enumerate() {
        let id = ModuleInstanceId(i);
        let info = layout.info(id).clone();
        let mut maps = InstanceMaps {
            funcs: Vec::new(),
            tables: Vec::new(),
            memories: Vec::new(),
            globals: Vec::new(),
            tags: Vec::new(),
            global_consts: BTreeMap::new(),
            type_base: type_count,
            elem_base: elem_count,
            data_base: data_count,
        };
        let targets = func_targets.get(i).context("import resolution missing")?;
        for ((import, target), def) in info.imports.iter().zip(targets).zip(&instance.imports) {
            match import.ty {
                TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                    let target = target.context("function import left unresolved")?;
                    maps.funcs.push(layout.finish(target).0);
                }
                TypeRef::Table(_) => {
                    let (owner, d) = layout.item(def, ExternalKind::Table)?;
                    maps.tables.push(base_of(&layout.table_base, owner)? + d);
                }
                TypeRef::Memory(_) => {
                    let (owner, d) = layout.item(def, ExternalKind::Memory)?;
                    maps.memories.push(base_of(&layout.memory_base, owner)? + d);
                }
                TypeRef::Global(_) => {
                    let (owner, d) = layout.item(def, ExternalKind::Global)?;
                    let index = maps.globals.len() as u32;
                    if let Some(c) = layout.global_constant(owner, layout.info(owner).imported_globals + d, &module_bytes) {
                        maps.global_consts.insert(index, c);
                    }
                    maps.globals.push(base_of(&layout.global_base, owner)? + d);
                }
                TypeRef::Tag(_) => {
                    let (owner, d) = layout.item(def, ExternalKind::Tag)?;
                    maps.tags.push(base_of(&layout.tag_base, owner)? + d);
                }
            }
        }
        let instance_index = layout.func_index.get(i).context("function layout missing")?;
        maps.funcs.extend(instance_index.iter().map(|d| if *d == u32::MAX { u32::MAX } else { n_imports + d }));
        let mut defined_type = 0usize;
        let mut defined_body = 0usize;
        let is_live = |d: usize| instance_index.get(d).is_some_and(|x| *x != u32::MAX);
        let (table_base, memory_base, global_base) =
            (base_of(&layout.table_base, id)?, base_of(&layout.memory_base, id)?, base_of(&layout.global_base, id)?);
        maps.tables.extend((0..info.defined_tables).map(|d| table_base + d));
        maps.memories.extend((0..info.defined_memories).map(|d| memory_base + d));
        maps.globals.extend((0..info.defined_globals).map(|d| global_base + d));
        let tag_base = base_of(&layout.tag_base, id)?;
        maps.tags.extend((0..info.defined_tags).map(|d| tag_base + d));

        let bytes = parsed.module(instance.module).bytes;
        let location = &instance.location;
        let memories_identity = maps.memories.iter().enumerate().all(|(m, f)| m as u32 == *f);
        let re = |e: ReencodeError<std::convert::Infallible>| anyhow!("failed to copy `{location}`: {e}");
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::TypeSection(reader) => {
                    for group in reader {
                        let group = group?;
                        type_count += group.types().len() as u32;
                        utils::parse_recursive_type_group(&mut maps, types.ty(), group).map_err(re)?;
                    }
                }
                Payload::FunctionSection(reader) => {
                    for ty in reader {
                        let ty = ty?;
                        if is_live(defined_type) {
                            functions.function(maps.type_base + ty);
                        }
                        defined_type += 1;
                    }
                }
                Payload::TableSection(reader) => {
                    for table in reader {
                        utils::parse_table(&mut maps, &mut table_section, table?).map_err(re)?;
                    }
                }
                Payload::MemorySection(reader) => {
                    for memory in reader {
                        memory_section.memory(maps.memory_type(memory?).map_err(re)?);
                    }
                }
                Payload::GlobalSection(reader) => {
                    for global in reader {
                        utils::parse_global(&mut maps, &mut global_section, global?).map_err(re)?;
                    }
                }
                Payload::TagSection(reader) => {
                    for tag in reader {
                        tag_section.tag(maps.tag_type(tag?).map_err(re)?);
                    }
                }
                Payload::ElementSection(reader) => {
                    for element in reader {
                        utils::parse_element(&mut maps, &mut elements, element?).map_err(re)?;
                        elem_count += 1;
                    }
                }
                Payload::DataSection(reader) => {
                    for data in reader {
                        utils::parse_data(&mut maps, &mut datas, data?).map_err(re)?;
                        data_count += 1;
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    if is_live(defined_body) {
                        reencode_body(&mut maps, &mut code, &body, bytes, memories_identity).map_err(re)?;
                    }
                    defined_body += 1;
                }
                Payload::StartSection { func, .. } => {
                    starts.push(maps.funcs.get(func as usize).copied().context("start function out of range")?);
                }
                _ => {}
            }
        }
    }

    // One start function runs every instance's start, in instantiation order.
    let start_index = if starts.is_empty() {
        None
    } else {
        functions.function(start_type);
        let mut body = Function::new([]);
        for s in &starts {
            body.instruction(&Instruction::Call(*s));
        }
        body.instruction(&Instruction::End);
        code.function(&body);
        Some(n_imports + funcs)
    };

    let mut names = Vec::new();
    for (name, kind, target) in &exports {
        if names.contains(name) {
            bail!("two exports of the lowered module would both be named `{name}`");
        }
        names.push(name.clone());
        let index = match target {
            FuncTargetOrIndex::Func(t) => layout.finish(*t).0,
            FuncTargetOrIndex::Index(i) => *i,
        };
        export_section.export(name, *kind, index);
    }
    plan.export_names = names;
    plan.imports = layout.imports.clone();

    let sections = Sections {
        types,
        type_count,
        imports: import_section,
        functions,
        tables: table_section,
        memories: memory_section,
        memory_count: memories,
        globals: global_section,
        global_count: globals,
        tags: tag_section,
        exports: export_section,
        start: start_index,
        elements,
        data_count,
        code,
        datas,
    };
    Ok(Merged { sections, plan })
}

/// The sections of the merged module, before `link` appends the glue.
#[derive(Debug, Clone)]
pub struct Sections {
    pub types: TypeSection,
    pub type_count: u32,
    pub imports: ImportSection,
    pub functions: FunctionSection,
    pub tables: TableSection,
    pub memories: MemorySection,
    pub memory_count: u32,
    pub globals: GlobalSection,
    pub global_count: u32,
    /// Exception tags of every instance, in instance order.
    pub tags: TagSection,
    pub exports: ExportSection,
    pub start: Option<u32>,
    pub elements: ElementSection,
    pub data_count: u32,
    pub code: CodeSection,
    pub datas: DataSection,
}

impl Sections {
    /// Assemble the module; `customs` are appended in order.
    pub fn finish(&self, customs: &[wasm_encoder::CustomSection<'_>], producers: &wasm_encoder::ProducersSection) -> Vec<u8> {
        let mut module = Module::new();
        if !self.types.is_empty() {
            module.section(&self.types);
        }
        if !self.imports.is_empty() {
            module.section(&self.imports);
        }
        if !self.functions.is_empty() {
            module.section(&self.functions);
        }
        if !self.tables.is_empty() {
            module.section(&self.tables);
        }
        if !self.memories.is_empty() {
            module.section(&self.memories);
        }
        if !self.tags.is_empty() {
            module.section(&self.tags);
        }
        if !self.globals.is_empty() {
            module.section(&self.globals);
        }
        if !self.exports.is_empty() {
            module.section(&self.exports);
        }
        if let Some(start) = self.start {
            module.section(&StartSection { function_index: start });
        }
        if !self.elements.is_empty() {
            module.section(&self.elements);
        }
        if self.data_count > 0 {
            module.section(&DataCountSection { count: self.data_count });
        }
        if !self.code.is_empty() {
            module.section(&self.code);
        }
        if !self.datas.is_empty() {
            module.section(&self.datas);
        }
        for custom in customs {
            module.section(custom);
        }
        module.section(producers);
        module.finish()
    }
}

#[derive(Debug, Clone, Copy)]
enum FuncTargetOrIndex {
    Func(FuncTarget),
    Index(u32),
}

/// The core type of a resolved function.
fn callee_type(layout: &Layout<'_>, target: FuncTarget) -> Result<Option<FuncType>> {
    Ok(match target {
        FuncTarget::Import(k) => layout.imports.get(k).map(|i| i.ty.clone()),
        FuncTarget::Defined(id, d) => {
            let info = layout.info(id);
            info.func_type(info.imported_funcs + d).cloned()
        }
    })
}

fn wasm_val(t: ValType) -> Result<wasm_encoder::ValType> {
    Ok(match t {
        ValType::I32 => wasm_encoder::ValType::I32,
        ValType::I64 => wasm_encoder::ValType::I64,
        ValType::F32 => wasm_encoder::ValType::F32,
        ValType::F64 => wasm_encoder::ValType::F64,
        ValType::V128 => wasm_encoder::ValType::V128,
        ValType::Ref(_) => bail!("reference types in a boundary signature are not supported"),
    })
}
