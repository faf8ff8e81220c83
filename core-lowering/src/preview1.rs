//! `--wasi preview1`: drop a `wasm32-wasip1` component's preview1 adapter.
//!
//! Owns: rewriting the instance graph so that the adapter instance is gone.
//! A `wasm32-wasip1` component instantiates its main module, then the
//! preview1 adapter (which implements `wasi_snapshot_preview1` on WASI 0.2
//! imports, with the main module's memory and `cabi_realloc`), and routes
//! the main module's preview1 imports to the adapter through wit-component's
//! shim/fixup table. Here every use of an adapter export named like a
//! preview1 function becomes an import `wasi_snapshot_preview1` `<name>`
//! of the output, the adapter instance is removed, and so is everything only
//! it used: its globals, functions and state, and its WASI 0.2 `canon
//! lower`s. Those still fill slots of the shim table (the fixup module fills
//! every slot), so they are kept *detached*: without the adapter's realloc.
//! The shim-table resolution turns the main module's calls through the
//! table into direct calls of the preview1 imports; [`finish_module`] then
//! drops (walrus' gc) the table, the slots nobody calls and the imports only
//! they used (detached or not: a lowering without a realloc is never
//! detached), and refuses a detached import that survived. For
//! a command adapter, the component's `wasi:cli/run` export becomes the
//! main module's own `_start`, which the adapter's `run` would have called.
//!
//! Which module is the adapter is the caller's to say ([`Recognise`]): the
//! structural test lives with the WASI work in `karmem-adapters`
//! (`wasi::recognize_preview1_adapter`). Anything else that uses the adapter
//! (another of its exports, another instance of it) is refused, naming it.

use std::collections::BTreeMap;
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use wasmparser::TypeRef;

use crate::graph::*;
use crate::module_info::ModuleInfo;
use crate::parse::{ParsedComponent, StaticModuleId};

/// The import module of every preview1 function.
pub const PREVIEW1_MODULE: &str = "wasi_snapshot_preview1";

/// What the caller's recogniser knows of the adapter module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdapterShape {
    /// Exports named like preview1 functions (`fd_write`, ...).
    pub preview1_exports: Vec<String>,
    /// The `wasi:cli/run@0.2.x#run` export of a command adapter.
    pub run_export: Option<String>,
}

/// Says whether a core module (its bytes) is the preview1 adapter.
pub type Recognise<'a> = &'a dyn Fn(&[u8]) -> Result<Option<AdapterShape>>;

/// What dropping the adapter did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preview1Report {
    /// Where the dropped adapter instance was (`root/core instance 22`).
    pub adapter: String,
    /// The preview1 functions the output imports in the adapter's place.
    pub preview1_imports: Vec<String>,
    /// `wasi:` imports of the output (used by modules other than the
    /// adapter), as `module#field`; filled in by [`finish_module`].
    pub wasi_imports_left: Vec<String>,
    /// Imports lowered for the adapter only (with its realloc), as
    /// `module#field`: none may survive into the output.
    pub detached_imports: Vec<String>,
    /// Whether `wasi:cli/run` became the main module's `_start`.
    pub command: bool,
}

/// What [`lower_trying_drop`] did with the preview1 adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropOutcome {
    /// No core module is the preview1 adapter.
    NoAdapter,
    /// The adapter is gone (its report; `wasi_imports_left` may be non-empty).
    Dropped(Preview1Report),
    /// The adapter is kept, for this reason (something else uses it).
    Kept(String),
}

/// The default lowering of a component that may be `wasm32-wasip1`: parses
/// and evaluates it once, drops the preview1 adapter when the graph allows
/// (its only users are the preview1 imports it implements), and merges
/// once, with or without it. Only when the merged module still needs a slot
/// only the adapter could fill (a detached import survived, which no known
/// toolchain produces) is the graph with the adapter merged again.
pub fn lower_trying_drop(
    component: &[u8],
    options: &crate::Options,
    recognise: Recognise<'_>,
) -> Result<(Vec<u8>, DropOutcome)> {
    if options.abi == crate::Abi::Karmem {
        bail!("`--abi karmem` is not implemented yet: use `--abi canonical`");
    }
    let parsed = crate::parse::parse(component)?;
    let (graph, infos) =
        crate::inline::Inliner::new(&parsed).run().context("failed to evaluate the component")?;
    let kept = match drop_adapter(&parsed, &graph, &infos, recognise) {
        Ok(None) => None,
        Ok(Some((dropped, mut report))) => {
            let merged = crate::merge::merge(&parsed, &dropped, &infos, options)
                .context("failed to merge the core modules")?;
            let (bytes, _) = crate::finish(merged, &dropped, options)?;
            // Not validated again here: `finish` validated the merge, and
            // the WASI step validates its input before linking the shim.
            match finish_module(&bytes, &mut report) {
                Ok(bytes) => return Ok((bytes, DropOutcome::Dropped(report))),
                Err(error) => Some(format!("{error:#}")),
            }
        }
        Err(error) => Some(format!("{:#}", error.context("failed to drop the preview1 adapter"))),
    };
    let merged = crate::merge::merge(&parsed, &graph, &infos, options).context("failed to merge the core modules")?;
    let (bytes, _) = crate::finish(merged, &graph, options)?;
    Ok((bytes, kept.map_or(DropOutcome::NoAdapter, DropOutcome::Kept)))
}

/// The graph without the adapter, or `None` when no module is recognised.
pub fn drop_adapter(
    parsed: &ParsedComponent<'_>,
    graph: &Graph,
    infos: &BTreeMap<StaticModuleId, Rc<ModuleInfo>>,
    recognise: Recognise<'_>,
) -> Result<Option<(Graph, Preview1Report)>> {
    let mut shapes: BTreeMap<StaticModuleId, Option<AdapterShape>> = BTreeMap::new();
    let mut found: Vec<(usize, AdapterShape)> = Vec::new();
    for (index, instance) in graph.instances.iter().enumerate() {
        let shape = match shapes.entry(instance.module) {
            std::collections::btree_map::Entry::Occupied(known) => known.into_mut(),
            std::collections::btree_map::Entry::Vacant(slot) => {
                let bytes = parsed.modules.get(instance.module.0).context("module missing")?.bytes;
                slot.insert(recognise(bytes).with_context(|| {
                    format!("failed to look for the preview1 adapter in `{}`", instance.location)
                })?)
            }
        };
        if let Some(shape) = shape {
            found.push((index, shape.clone()));
        }
    }
    let (adapter, shape) = match found.as_slice() {
        [] => return Ok(None),
        [one] => one.clone(),
        [first, second, ..] => bail!(
            "the preview1 adapter is instantiated more than once (`{}` and `{}`); `--wasi preview1` drops exactly one",
            location(graph, first.0),
            location(graph, second.0)
        ),
    };
    let adapter_instance = graph.instances.get(adapter).context("adapter instance missing")?;
    let adapter_info = infos.get(&adapter_instance.module).context("adapter summary missing")?;

    let mut rewrite = Rewrite {
        graph,
        adapter,
        location: adapter_instance.location.clone(),
        shape: shape.clone(),
        lowered: Vec::new(),
        lowered_map: BTreeMap::new(),
        lifted: Vec::new(),
        lifted_map: BTreeMap::new(),
        preview1: BTreeMap::new(),
        detached: Vec::new(),
    };

    let mut instances = Vec::new();
    for (index, instance) in graph.instances.iter().enumerate() {
        if index == adapter {
            continue;
        }
        let info = infos.get(&instance.module).context("module summary missing")?;
        let mut imports = Vec::new();
        for (position, def) in instance.imports.iter().enumerate() {
            let user = match info.imports.get(position) {
                Some(import) => format!("`{}` (import `{}` `{}`)", instance.location, import.module, import.field),
                None => format!("`{}`", instance.location),
            };
            imports.push(rewrite.def(def, &user)?);
        }
        instances.push(ModuleInstance { module: instance.module, location: instance.location.clone(), imports });
    }

    let mut exports = Vec::new();
    let mut command = false;
    for export in &graph.exports {
        let lifted = graph.lifted.get(export.lifted.0).context("lifted function missing")?;
        let runs_adapter = matches!(&lifted.core, CoreDef::Export(id, name)
            if id.0 == adapter && Some(name) == shape.run_export.as_ref());
        if !runs_adapter {
            exports.push(ExportedFunc { name: export.name.clone(), lifted: rewrite.lifted(export.lifted)? });
            continue;
        }
        // The adapter's `run` calls the main module's `_start` (and turns a
        // trap-free return into `ok`); a preview1 host calls `_start` itself.
        let start = adapter_info
            .imports
            .iter()
            .position(|import| import.field == "_start" && matches!(import.ty, TypeRef::Func(_)))
            .and_then(|position| adapter_instance.imports.get(position))
            .with_context(|| {
                format!("the command adapter `{}` does not import the main module's `_start`", rewrite.location)
            })?;
        let core = rewrite.def(start, &format!("the export `{}`", export.name))?;
        let id = LiftedId(rewrite.lifted.len());
        rewrite.lifted.push(Lifted {
            owner: lifted.owner,
            core,
            options: CanonOptions { memory: None, realloc: None, post_return: None, encoding: StringEncoding::Utf8 },
            sig: lifted.sig.clone(),
            location: format!("`_start` of the main module (was {})", lifted.location),
        });
        exports.push(ExportedFunc { name: "_start".to_string(), lifted: id });
        command = true;
    }

    let mut resources = Vec::new();
    for resource in &graph.resources {
        let dtor = match &resource.dtor {
            Some(dtor) => Some(rewrite.def(dtor, &format!("the destructor of {}", resource.location))?),
            None => None,
        };
        resources.push(DefinedResource { dtor, ..resource.clone() });
    }

    let report = Preview1Report {
        adapter: rewrite.location.clone(),
        preview1_imports: rewrite.preview1.keys().cloned().collect(),
        wasi_imports_left: Vec::new(),
        detached_imports: rewrite.detached.clone(),
        command,
    };
    let dropped = Graph {
        instances,
        lifted: rewrite.lifted,
        lowered: rewrite.lowered,
        builtins: graph.builtins.clone(),
        resources,
        exports,
        imports: graph.imports.clone(),
        alias_count: graph.alias_count,
        component_instances: graph.component_instances,
        component_parents: graph.component_parents.clone(),
        import_sigs: graph.import_sigs.clone(),
    };
    Ok(Some((dropped, report)))
}

fn location(graph: &Graph, instance: usize) -> String {
    graph.instances.get(instance).map_or_else(|| format!("instance {instance}"), |i| i.location.clone())
}

/// Rebuilds the graph's arenas without the adapter, keeping only the
/// `canon lower`s and `canon lift`s something left still reaches.
struct Rewrite<'g> {
    graph: &'g Graph,
    adapter: usize,
    location: String,
    shape: AdapterShape,
    lowered: Vec<Lowered>,
    lowered_map: BTreeMap<usize, LoweredId>,
    lifted: Vec<Lifted>,
    lifted_map: BTreeMap<usize, LiftedId>,
    /// preview1 function name -> its new `canon lower`-like import.
    preview1: BTreeMap<String, LoweredId>,
    /// Imports lowered with an option of the adapter (`module#field`).
    detached: Vec<String>,
}

impl Rewrite<'_> {
    fn def(&mut self, def: &CoreDef, user: &str) -> Result<CoreDef> {
        Ok(match def {
            CoreDef::Export(id, name) if id.0 == self.adapter => {
                if !self.shape.preview1_exports.contains(name) {
                    bail!(
                        "{user} uses `{name}` of the preview1 adapter `{}`, which `--wasi preview1` drops; \
                         `--wasi shim` keeps the adapter",
                        self.location
                    );
                }
                CoreDef::Lowered(self.preview1_import(name))
            }
            CoreDef::Export(id, name) if id.0 > self.adapter => {
                CoreDef::Export(ModuleInstanceId(id.0 - 1), name.clone())
            }
            CoreDef::Export(id, name) => CoreDef::Export(*id, name.clone()),
            CoreDef::Lowered(id) => CoreDef::Lowered(self.lowered(*id, user)?),
            CoreDef::Builtin(id) => CoreDef::Builtin(*id),
        })
    }

    fn preview1_import(&mut self, name: &str) -> LoweredId {
        if let Some(id) = self.preview1.get(name) {
            return *id;
        }
        let id = LoweredId(self.lowered.len());
        self.lowered.push(Lowered {
            target: LowerTarget::Import(vec![PREVIEW1_MODULE.to_string(), name.to_string()]),
            options: CanonOptions { memory: None, realloc: None, post_return: None, encoding: StringEncoding::Utf8 },
            sig: None,
            location: format!("preview1 function `{name}` (in place of the adapter's export)"),
            // preview1 imports point into the memory exported as `memory`
            // whoever calls them; never qualified by instance
            owner: 0,
        });
        self.preview1.insert(name.to_string(), id);
        id
    }

    fn options(&mut self, options: &CanonOptions, user: &str) -> Result<CanonOptions> {
        let mut def = |def: &Option<CoreDef>| def.as_ref().map(|d| self.def(d, user)).transpose();
        Ok(CanonOptions {
            memory: def(&options.memory)?,
            realloc: def(&options.realloc)?,
            post_return: def(&options.post_return)?,
            encoding: options.encoding,
        })
    }

    /// Whether `def` is an item of the adapter itself.
    fn is_adapter(&self, def: &Option<CoreDef>) -> bool {
        matches!(def, Some(CoreDef::Export(id, _)) if id.0 == self.adapter)
    }

    fn lowered(&mut self, old: LoweredId, user: &str) -> Result<LoweredId> {
        if let Some(id) = self.lowered_map.get(&old.0) {
            return Ok(*id);
        }
        let original = self.graph.lowered.get(old.0).context("lowered function missing")?.clone();
        // Reserve the slot first, so a (malformed) cycle ends here.
        let id = LoweredId(self.lowered.len());
        self.lowered_map.insert(old.0, id);
        self.lowered.push(original.clone());
        let user = format!("{} (used by {user})", original.location);
        let mut options = original.options.clone();
        if let LowerTarget::Import(path) = &original.target {
            // The adapter's own lowering of an import: it only fills a shim
            // slot the adapter called (see the module docs).
            if self.is_adapter(&options.realloc) || self.is_adapter(&options.post_return) {
                options.realloc = None;
                options.post_return = None;
                let (module, field) = crate::merge::host_name(path);
                self.detached.push(format!("{module}#{field}"));
            }
        }
        let options = self.options(&options, &user)?;
        let target = match &original.target {
            LowerTarget::Import(path) => LowerTarget::Import(path.clone()),
            LowerTarget::Lifted(lifted) => LowerTarget::Lifted(self.lifted(*lifted)?),
        };
        let slot = self.lowered.get_mut(id.0).context("lowered slot missing")?;
        *slot = Lowered { target, options, ..original };
        Ok(id)
    }

    fn lifted(&mut self, old: LiftedId) -> Result<LiftedId> {
        if let Some(id) = self.lifted_map.get(&old.0) {
            return Ok(*id);
        }
        let original = self.graph.lifted.get(old.0).context("lifted function missing")?.clone();
        let id = LiftedId(self.lifted.len());
        self.lifted_map.insert(old.0, id);
        self.lifted.push(original.clone());
        let user = original.location.clone();
        let core = self.def(&original.core, &user)?;
        let options = self.options(&original.options, &user)?;
        let slot = self.lifted.get_mut(id.0).context("lifted slot missing")?;
        *slot = Lifted { core, options, ..original };
        Ok(id)
    }
}

/// The last step after `link`: checks the output's imports against the
/// report (a detached import that survived is refused; `wasi:` imports left
/// are noted in `report.wasi_imports_left`), keeps only the
/// `karmem:canonical-abi` entries of canonical functions that still exist
/// (not the preview1 imports, not `_start`, not imports gc dropped), and
/// exports the module's memory as `memory` when nothing does: preview1
/// functions read and write the memory exported under that name, and the
/// lowering exports memories only for canonical options (a command, or a
/// reactor whose exports pass no strings or lists, would export none). More
/// than one memory is refused, since nothing says which one preview1 uses.
pub fn finish_module(module: &[u8], report: &mut Preview1Report) -> Result<Vec<u8>> {
    // Always: the adapter's slots may hold imports lowered without a realloc
    // (`get-stdout`), which are not detached but just as dead.
    let collected = collect_garbage(module)?;
    finish_collected(&collected, report)
}

/// Drops what nothing reaches (walrus' gc): the shim table and the slots
/// only the adapter called, and with them the imports only they used.
fn collect_garbage(module: &[u8]) -> Result<Vec<u8>> {
    let mut config = walrus::ModuleConfig::new();
    config.generate_producers_section(false);
    let mut parsed = config
        .parse(module)
        .map_err(|error| anyhow::anyhow!("{error:#}"))
        .context("failed to re-read the lowered module to drop the adapter's leftovers")?;
    walrus::passes::gc::run(&mut parsed);
    Ok(parsed.emit_wasm())
}

fn finish_collected(module: &[u8], report: &mut Preview1Report) -> Result<Vec<u8>> {
    use wasmparser::{ExternalKind, Parser, Payload};
    let mut memories = 0u32;
    let mut exported = false;
    let mut imports: Vec<String> = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        match payload.context("failed to read the lowered module")? {
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import?;
                    match import.ty {
                        TypeRef::Memory(_) => memories += 1,
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => {
                            imports.push(format!("{}#{}", import.module, import.name));
                        }
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(section) => memories += section.count(),
            Payload::ExportSection(section) => {
                for export in section {
                    let export = export?;
                    exported |= export.name == "memory" && export.kind == ExternalKind::Memory;
                }
            }
            _ => {}
        }
    }
    if let Some(import) = imports.iter().find(|import| report.detached_imports.contains(import)) {
        bail!(
            "`{import}` was lowered for the preview1 adapter `{}` and is still used without it",
            report.adapter
        );
    }
    report.wasi_imports_left = imports.iter().filter(|import| import.starts_with("wasi:")).cloned().collect();
    let add_memory = !exported && memories > 0;
    if add_memory && memories > 1 {
        bail!("the lowered module has {memories} memories; preview1 imports need exactly one, exported as `memory`");
    }

    let mut out = wasm_encoder::Module::new();
    let mut wrote_exports = false;
    let only_memory = |out: &mut wasm_encoder::Module| {
        let mut exports = wasm_encoder::ExportSection::new();
        exports.export("memory", wasm_encoder::ExportKind::Memory, 0);
        out.section(&exports);
    };
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.context("failed to read the lowered module")?;
        match &payload {
            Payload::ExportSection(section) => {
                let mut exports = wasm_encoder::ExportSection::new();
                for export in section.clone() {
                    let export = export?;
                    let kind = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => wasm_encoder::ExportKind::Func,
                        ExternalKind::Table => wasm_encoder::ExportKind::Table,
                        ExternalKind::Memory => wasm_encoder::ExportKind::Memory,
                        ExternalKind::Global => wasm_encoder::ExportKind::Global,
                        ExternalKind::Tag => wasm_encoder::ExportKind::Tag,
                    };
                    exports.export(export.name, kind, export.index);
                }
                if add_memory {
                    exports.export("memory", wasm_encoder::ExportKind::Memory, 0);
                }
                out.section(&exports);
                wrote_exports = true;
                continue;
            }
            Payload::CustomSection(section) if section.name() == crate::link::CANONICAL_ABI_SECTION => {
                let data = prune_boundary(section.data(), &imports)?;
                out.section(&wasm_encoder::CustomSection { name: section.name().into(), data: data.into() });
                continue;
            }
            // The export section sits before start, elements, code and data:
            // write one there when the module has none.
            Payload::StartSection { .. }
            | Payload::ElementSection(_)
            | Payload::DataCountSection { .. }
            | Payload::CodeSectionStart { .. }
            | Payload::DataSection(_)
                if add_memory && !wrote_exports =>
            {
                only_memory(&mut out);
                wrote_exports = true;
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            let data = module.get(range).context("a section lies outside the module")?;
            out.section(&wasm_encoder::RawSection { id, data });
        }
    }
    if add_memory && !wrote_exports {
        only_memory(&mut out);
    }
    Ok(out.finish())
}

/// The `karmem:canonical-abi` entries that describe canonical functions of
/// the output: not the preview1 imports, not `_start`, and no import the
/// output no longer has.
fn prune_boundary(json: &[u8], imports: &[String]) -> Result<Vec<u8>> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(json).context("failed to read the canonical-ABI description")?;
    let kept: Vec<serde_json::Value> = entries
        .into_iter()
        .filter(|entry| {
            let name = entry.get("name").and_then(serde_json::Value::as_str).unwrap_or("");
            match entry.get("kind").and_then(serde_json::Value::as_str) {
                Some("import") => {
                    !name.starts_with(&format!("{PREVIEW1_MODULE}#")) && imports.iter().any(|i| i == name)
                }
                Some("export") => name != "_start",
                _ => true,
            }
        })
        .collect();
    serde_json::to_vec(&kept).context("failed to describe the boundary")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape wit-component gives a wasip1 command: main, shim table,
    /// adapter (one imported memory, its own state, a `run` calling main's
    /// `_start`), fixup filling the table with the adapter's exports.
    const COMMAND: &str = r#"
      (component
        (import "wasi:cli/environment@0.2.0" (instance $env
          (export "get-arguments" (func (result (list string))))))
        (import "wasi:clocks/monotonic-clock@0.2.0" (instance $clock (export "now" (func (result u64)))))
        (core module $main
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 8))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))
            (call $proc_exit (i32.const 3))))
        (core module $shim
          (table (export "$imports") 4 4 funcref)
          (func (export "0") (param i32 i32 i32 i32) (result i32)
            local.get 0 local.get 1 local.get 2 local.get 3 i32.const 0
            call_indirect (param i32 i32 i32 i32) (result i32))
          (func (export "1") (param i32) local.get 0 i32.const 1 call_indirect (param i32))
          (func (export "2") (param i32) local.get 0 i32.const 2 call_indirect (param i32))
          (func (export "3") (result i64) i32.const 3 call_indirect (result i64)))
        (core module $adapter
          (import "env" "memory" (memory 0))
          (import "__main_module__" "_start" (func $start))
          (import "wasi:cli/environment@0.2.0" "get-arguments" (func $args (param i32)))
          (import "wasi:clocks/monotonic-clock@0.2.0" "now" (func $now (result i64)))
          (global $state (mut i32) (i32.const 7))
          (func (export "cabi_import_realloc") (param i32 i32 i32 i32) (result i32) global.get $state)
          (func (export "fd_write") (param i32 i32 i32 i32) (result i32) (drop (call $now)) global.get $state)
          (func (export "proc_exit") (param i32) (call $args (i32.const 0)) unreachable)
          (func (export "wasi:cli/run@0.2.0#run") (result i32) call $start i32.const 0))
        (core module $fixup
          (import "" "0" (func $a (param i32 i32 i32 i32) (result i32)))
          (import "" "1" (func $b (param i32)))
          (import "" "2" (func $c (param i32)))
          (import "" "3" (func $d (result i64)))
          (import "" "$imports" (table 4 4 funcref))
          (elem (i32.const 0) func $a $b $c $d))
        (core instance $shim (instantiate $shim))
        (core instance $main (instantiate $main
          (with "wasi_snapshot_preview1" (instance
            (export "fd_write" (func $shim "0"))
            (export "proc_exit" (func $shim "1"))))))
        (core instance $adapter (instantiate $adapter
          (with "env" (instance (export "memory" (memory $main "memory"))))
          (with "__main_module__" (instance $main))
          (with "wasi:cli/environment@0.2.0" (instance (export "get-arguments" (func $shim "2"))))
          (with "wasi:clocks/monotonic-clock@0.2.0" (instance (export "now" (func $shim "3"))))))
        (core func $get-args (canon lower (func $env "get-arguments")
          (memory $main "memory") (realloc (func $adapter "cabi_import_realloc"))))
        (core func $now (canon lower (func $clock "now")))
        (core instance (instantiate $fixup
          (with "" (instance
            (export "0" (func $adapter "fd_write"))
            (export "1" (func $adapter "proc_exit"))
            (export "2" (func $get-args))
            (export "3" (func $now))
            (export "$imports" (table $shim "$imports"))))))
        (type $run (func (result (result))))
        (func $run (type $run) (canon lift (core func $adapter "wasi:cli/run@0.2.0#run")))
        (instance $cli (export "run" (func $run)))
        (export "wasi:cli/run@0.2.0" (instance $cli)))
    "#;

    fn recognise(bytes: &[u8]) -> Result<Option<AdapterShape>> {
        let info = ModuleInfo::read(bytes, "test")?;
        if info.imported_memories != 1 || info.defined_memories != 0 {
            return Ok(None);
        }
        let names: Vec<String> = info.exports.keys().cloned().collect();
        Ok(Some(AdapterShape {
            preview1_exports: names.iter().filter(|n| ["fd_write", "proc_exit"].contains(&n.as_str())).cloned().collect(),
            run_export: names.iter().find(|n| n.starts_with("wasi:cli/run@")).cloned(),
        }))
    }

    fn interface(bytes: &[u8]) -> Result<(Vec<String>, Vec<String>, u32)> {
        let (mut imports, mut exports, mut globals) = (Vec::new(), Vec::new(), 0);
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload? {
                wasmparser::Payload::ImportSection(s) => {
                    for i in s.into_imports() {
                        let i = i?;
                        imports.push(format!("{}#{}", i.module, i.name));
                    }
                }
                wasmparser::Payload::ExportSection(s) => {
                    for e in s {
                        exports.push(e?.name.to_string());
                    }
                }
                wasmparser::Payload::GlobalSection(s) => globals += s.count(),
                _ => {}
            }
        }
        Ok((imports, exports, globals))
    }

    #[test]
    fn command_adapter_is_dropped() -> Result<()> {
        let component = wat::parse_str(COMMAND)?;
        let (bytes, report) = crate::lower_dropping_preview1_adapter(&component, &crate::Options::default(), &recognise)?
            .context("the adapter must be recognised")?;
        let (imports, mut exports, globals) = interface(&bytes)?;
        exports.sort();
        assert_eq!(imports, ["wasi_snapshot_preview1#fd_write", "wasi_snapshot_preview1#proc_exit"]);
        assert_eq!(exports, ["_start", "memory"]);
        assert_eq!(globals, 0, "the adapter's state must be gone");
        assert!(report.command);
        assert_eq!(report.preview1_imports, ["fd_write", "proc_exit"]);
        assert!(report.wasi_imports_left.is_empty());
        // The adapter's own `get-arguments` (with its realloc) fills a slot
        // only the adapter called: detached, then gone; so is its `now`
        // (no realloc, not detached: just unreachable).
        assert_eq!(report.detached_imports, ["wasi:cli/environment@0.2.0#get-arguments"]);
        assert!(report.adapter.contains("core instance"), "{report:?}");
        Ok(())
    }

    #[test]
    fn without_an_adapter_nothing_is_dropped() -> Result<()> {
        let component = wat::parse_str(
            r#"(component (core module $m (func (export "f") (result i32) i32.const 7))
                 (core instance $i (instantiate $m))
                 (func (export "seven") (result u32) (canon lift (core func $i "f"))))"#,
        )?;
        assert!(crate::lower_dropping_preview1_adapter(&component, &crate::Options::default(), &recognise)?.is_none());
        Ok(())
    }

    #[test]
    fn other_uses_of_the_adapter_are_refused() -> Result<()> {
        // The main module also calls the adapter's non-preview1 export.
        let component = COMMAND
            .replace(
                r#"(func (export "proc_exit") (param i32) (call $args (i32.const 0)) unreachable)"#,
                r#"(func (export "proc_exit") (param i32) (call $args (i32.const 0)) unreachable)
                   (func (export "adapter_close_badfd") (param i32))"#,
            )
            .replace(r#"(export "1" (func $adapter "proc_exit"))"#, r#"(export "1" (func $adapter "adapter_close_badfd"))"#);
        let component = wat::parse_str(&component)?;
        let error = crate::lower_dropping_preview1_adapter(&component, &crate::Options::default(), &recognise)
            .err()
            .context("must be refused")?;
        let message = format!("{error:#}");
        assert!(message.contains("`adapter_close_badfd` of the preview1 adapter"), "{message}");
        Ok(())
    }

    #[test]
    fn wasi_imports_of_the_main_module_are_reported() -> Result<()> {
        // The main module also imports a WASI 0.2 function itself.
        let component = COMMAND
            .replace(
                r#"(core module $main"#,
                r#"(import "wasi:random/random@0.2.0" (instance $random
                     (export "get-random-u64" (func (result u64)))))
                   (core func $u64 (canon lower (func $random "get-random-u64")))
                   (core module $main
                     (import "wasi:random/random@0.2.0" "get-random-u64" (func (result i64)))"#,
            )
            .replace(
                r#"(core instance $main (instantiate $main"#,
                r#"(core instance $main (instantiate $main
                     (with "wasi:random/random@0.2.0" (instance (export "get-random-u64" (func $u64))))"#,
            )
            .replace(
                r#"(i32.store (i32.const 0) (i32.const 8))"#,
                r#"(i64.store (i32.const 0) (call 0))"#,
            );
        let component = wat::parse_str(&component)?;
        let (bytes, report) = crate::lower_dropping_preview1_adapter(&component, &crate::Options::default(), &recognise)?
            .context("the adapter must be recognised")?;
        assert_eq!(report.wasi_imports_left, ["wasi:random/random@0.2.0#get-random-u64"]);
        let (imports, ..) = interface(&bytes)?;
        assert!(imports.contains(&"wasi:random/random@0.2.0#get-random-u64".to_string()), "{imports:?}");
        Ok(())
    }

    #[test]
    fn the_default_lowers_once_with_or_without_the_adapter() -> Result<()> {
        let component = wat::parse_str(COMMAND)?;
        let (bytes, outcome) = lower_trying_drop(&component, &crate::Options::default(), &recognise)?;
        let DropOutcome::Dropped(report) = outcome else { bail!("the adapter must be dropped: {outcome:?}") };
        assert!(report.command);
        let (dropped, _) = crate::lower_dropping_preview1_adapter(&component, &crate::Options::default(), &recognise)?
            .context("the adapter must be recognised")?;
        assert_eq!(bytes, dropped, "the same module as `--wasi preview1`");

        // Another use of the adapter keeps it, with the reason, in the same call.
        let other = COMMAND
            .replace(
                r#"(func (export "proc_exit") (param i32) (call $args (i32.const 0)) unreachable)"#,
                r#"(func (export "proc_exit") (param i32) (call $args (i32.const 0)) unreachable)
                   (func (export "adapter_close_badfd") (param i32))"#,
            )
            .replace(r#"(export "1" (func $adapter "proc_exit"))"#, r#"(export "1" (func $adapter "adapter_close_badfd"))"#);
        let component = wat::parse_str(&other)?;
        let (bytes, outcome) = lower_trying_drop(&component, &crate::Options::default(), &recognise)?;
        let DropOutcome::Kept(why) = outcome else { bail!("the adapter must be kept: {outcome:?}") };
        assert!(why.contains("`adapter_close_badfd` of the preview1 adapter"), "{why}");
        assert_eq!(bytes, crate::lower(&component, &crate::Options::default())?, "the plain lowering");
        Ok(())
    }

    #[test]
    fn boundary_loses_preview1_entries() -> Result<()> {
        let json = br#"[{"kind":"import","name":"wasi_snapshot_preview1#fd_write"},{"kind":"export","name":"_start"},{"kind":"export","name":"a#b"},{"kind":"import","name":"x#gone"},{"kind":"import","name":"x#kept"}]"#;
        let pruned = prune_boundary(json, &["x#kept".to_string()])?;
        assert_eq!(
            String::from_utf8(pruned)?,
            r#"[{"kind":"export","name":"a#b"},{"kind":"import","name":"x#kept"}]"#
        );
        Ok(())
    }
}
