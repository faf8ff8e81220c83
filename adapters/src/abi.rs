//! The Karmem ABI at the edge of a lowered module (docs/ABI.md).
//!
//! Owns: [`karmem_abi`], which turns a module with a canonical-ABI boundary
//! (what `karmem-bridge lower --abi canonical` writes) into one with the
//! Karmem ABI, all in generated wasm:
//! - `KarmemInit`, `KarmemImport`, `KarmemExport`, `KarmemCall`, and
//!   `KarmemAlloc`/`KarmemFree` (`alloc.rs`);
//! - one export `<interface>.<function>(ptr, len) -> i64` per exported
//!   function: decode the argument message into canonical values (flat, or
//!   a params area from the guest's `cabi_realloc`), call the lifted
//!   function, encode its results, call its post-return;
//! - one adapter per lowered import: encode the argument message, call
//!   `karmem:<interface>`/`<function>`, decode the result message into the
//!   caller's return area (or flat result), free the host's buffer;
//! - the interface descriptors (`karmem_contract::Descriptor`), encoded
//!   here and copied into guest memory at init;
//! - the custom sections `karmem:abi`, `karmem:idl` and `producers`;
//! - with [`Options::edge_memory`], the Karmem edge memory `KarmemMemory`
//!   that holds all of the above's data apart from every guest memory, each
//!   function's adapter reaching the guest memory the lowering recorded for
//!   it; without it, a warning when a guest's realloc reads `memory.size`.
//!
//! Handles cross as their canonical-ABI handle indices, unchanged (the
//! lowering's handle tables already follow the canonical ABI's rules).
//!
//! Does not own: the value transcoders (`transcode`), flat values
//! (`flat.rs`), naming the boundary (`world.rs`, following the lowering),
//! the ABI's names, version, descriptor schema and code tables
//! (`karmem-contract`, re-exported here).

mod alloc;
pub mod flat;
mod world;

use anyhow::{Context, Result, anyhow, bail, ensure};
use karmem_contract::{Descriptor, FunctionDescriptor, MAIN_MEMORY, MESSAGE_ALIGN, MemoryDescriptor, entry};
use karmem_format::layout::{FunctionLayout, Layout};
use karmem_idl::ast::Item;
use karmem_wit_import::Side;
use walrus::ir::{BinaryOp, UnaryOp, Value as Const};
use walrus::{
    ConstExpr, DataKind, ExportItem, FunctionBuilder, FunctionId, FunctionKind, GlobalId, LocalId, MemoryId,
    Module, ModuleConfig, RawCustomSection, ValType,
};

pub use alloc::{add_allocator, reads_memory_size};
pub use karmem_contract::{
    ABI_SECTION, ABI_VERSION, CANONICAL_ABI_SECTION, DESCRIPTOR_KM, EDGE_MEMORY, IDL_SECTION, IMPORT_PREFIX,
    RESOURCE_DROP, descriptor_layout,
};
pub use world::{FunctionBinding, InterfaceBinding, ROOT_MODULE, WitIdentity, World};

use crate::asm::{self, Width};
use crate::canon::{AbiType, StringEncoding};
use crate::transcode::read::switch;
use crate::transcode::{Env, TranscodeOptions, Transcoder};

/// Canonical ABI `MAX_FLAT_PARAMS` and `MAX_FLAT_RESULTS`
/// (<https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md#flattening>).
const MAX_FLAT_PARAMS: usize = 16;
const MAX_FLAT_RESULTS: usize = 1;

/// How to generate the adapters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Transcoder code shape and string encoding (the lowering's boundary is
    /// UTF-8).
    pub transcode: TranscodeOptions,
    /// Put the Karmem edge in a memory of its own, exported as
    /// [`EDGE_MEMORY`]: messages, `KarmemAlloc`'s pages, the statics, the
    /// descriptors and the scratch areas live there, and every guest memory
    /// only holds what the guest allocates (`karmem-bridge lower
    /// --multi-memory`). Needed for guests whose instances own separate
    /// memories, and for guest allocators that take every page up to
    /// `memory.size` (docs/ABI.md §10).
    pub edge_memory: bool,
}

/// A Karmem-ABI module and what the generator warns about it.
#[derive(Debug, Clone)]
pub struct Lowered {
    pub module: Vec<u8>,
    /// One line each, for the user (`lower` prints them as `warning:`).
    pub warnings: Vec<String>,
    /// The edge shares the guest's memory and a guest realloc reads that
    /// memory's `memory.size` (the hazard of docs/ABI.md §10): lowering
    /// again with [`Options::edge_memory`] removes it.
    pub allocator_reads_memory_size: bool,
}

/// Turns the canonical-ABI module `canonical` into a Karmem-ABI module.
pub fn karmem_abi(canonical: &[u8], world: &World, options: &Options) -> Result<Vec<u8>> {
    karmem_abi_with_warnings(canonical, world, options).map(|lowered| lowered.module)
}

/// [`karmem_abi`], also returning its warnings.
pub fn karmem_abi_with_warnings(canonical: &[u8], world: &World, options: &Options) -> Result<Lowered> {
    let mut warnings = Vec::new();
    let mut config = ModuleConfig::new();
    config.generate_producers_section(true);
    let mut module = config.parse(canonical).map_err(|e| anyhow!("{e:#}")).context("walrus could not read the module")?;
    let layout = Layout::new(&world.schema).map_err(|e| anyhow!("{e}")).context("failed to lay out the world's IDL")?;
    let memory = match module.exports.iter().find(|e| e.name == MAIN_MEMORY) {
        Some(export) => match export.item {
            ExportItem::Memory(m) => m,
            _ => bail!("the module's export `memory` is not a memory"),
        },
        None => {
            let first = module.memories.iter().next().map(|m| m.id());
            match first {
                Some(m) => m,
                None => module.memories.add_local(false, false, 1, None, None),
            }
        }
    };
    if module.exports.iter().all(|e| e.name != MAIN_MEMORY) {
        module.exports.add(MAIN_MEMORY, memory);
    }
    let realloc = match module.exports.get_func("cabi_realloc") {
        Ok(f) => f,
        Err(_) => trapping_realloc(&mut module),
    };
    let boundaries = Boundaries::read(canonical)?;
    // the memory of messages, `KarmemAlloc` and the adapter's own data
    let edge = if options.edge_memory {
        ensure!(
            module.exports.iter().all(|e| e.name != EDGE_MEMORY),
            "the module already exports `{EDGE_MEMORY}`, the name of the Karmem edge memory"
        );
        let edge = module.memories.add_local(false, false, 0, None, None);
        module.exports.add(EDGE_MEMORY, edge);
        edge
    } else {
        memory
    };
    let (alloc, free) = add_allocator(&mut module, edge);
    let env = Env { memory: edge, realloc, alloc, free };
    let global = |module: &mut Module, name: &str| {
        let id = module.globals.add_local(ValType::I32, true, false, ConstExpr::Value(Const::I32(0)));
        module.globals.get_mut(id).name = Some(format!("karmem {name}"));
        id
    };
    let export_scratch = global(&mut module, "export_scratch");
    let import_scratch = global(&mut module, "import_scratch");
    // interface memories: one page-aligned region each, reserved at init
    let mut regions: Vec<Region> = Vec::new();
    for iface in world.interfaces.iter().filter(|i| i.side == Side::Export || is_karmem_import(i)) {
        if let Some(Item::Interface(def)) = world.schema.get(&iface.name) {
            for mem in def.memories() {
                let base = global(&mut module, &format!("region {}.{}", iface.name, mem.name.name));
                regions.push(Region { interface: iface.name.clone(), name: mem.name.name.clone(), pages: mem.pages, base });
            }
        }
    }

    if options.edge_memory
        && let Some(region) = regions.first()
    {
        bail!(
            "interface `{}` has the interface memory `{}`, whose region the host maps into the guest's memory, \
             and a Karmem edge memory (`--multi-memory`) would hold messages placed in it apart from the guest: \
             lower without `--multi-memory`",
            region.interface,
            region.name
        );
    }
    let mut t = Transcoder::new(&mut module, &layout, env, options.transcode);
    let mut scratch_size = 8u32;
    // the reallocs the adapters allocate guest values with, by export name
    let mut reallocs: Vec<(String, FunctionId)> = Vec::new();
    let mut used_realloc = |boundary: &Boundary<'_>, id: FunctionId| {
        let name = boundary.text("realloc").unwrap_or("cabi_realloc").to_string();
        if reallocs.iter().all(|(_, f)| *f != id) {
            reallocs.push((name, id));
        }
    };
    let mut adapters: Vec<(String, FunctionId)> = Vec::new();
    // the canonical boundary's reallocs are internal from here on
    let mut dead_exports: Vec<String> =
        t.module.exports.iter().filter(|e| e.name.starts_with("cabi_realloc")).map(|e| e.name.clone()).collect();
    for iface in world.interfaces.iter().filter(|i| i.side == Side::Export) {
        for function in &iface.functions {
            let what = format!("`{}.{}` (core export `{}`)", iface.name, function.name, function.core_name);
            let fl = layout.function(&iface.name, &function.name).with_context(|| format!("no layout for {what}"))?;
            let core = t
                .module
                .exports
                .get_func(&function.core_name)
                .map_err(|_| anyhow!("the module has no export `{}` for {what}", function.core_name))?;
            let post_name = format!("cabi_post_{}", function.core_name);
            let post = t.module.exports.get_func(&post_name).ok();
            let region = placement(world, &iface.name, &function.name, false, &regions)?;
            let boundary = boundaries.get("export", &function.core_name);
            let (encoding, own_realloc, guest) = boundary.options(t.module, realloc, memory, options.edge_memory, &what)?;
            used_realloc(&boundary, own_realloc);
            t.set_boundary(encoding, own_realloc, guest);
            let adapter = export_adapter(&mut t, core, post, fl, export_scratch, &mut scratch_size, region)
                .with_context(|| format!("failed to adapt {what}"))?;
            adapters.push((format!("{}.{}", iface.name, function.name), adapter));
            dead_exports.push(function.core_name.clone());
            dead_exports.push(post_name);
        }
    }
    for iface in world.interfaces.iter().filter(|i| is_karmem_import(i)) {
        for function in &iface.functions {
            let what = format!("`{}.{}` (core import `{}`/`{}`)", iface.name, function.name, iface.core_module, function.core_name);
            let Some(import) = t.module.imports.find(&iface.core_module, &function.core_name) else {
                continue; // the component does not call it
            };
            let fl = layout.function(&iface.name, &function.name).with_context(|| format!("no layout for {what}"))?;
            let region = placement(world, &iface.name, &function.name, true, &regions)?;
            let boundary = boundaries.get("import", &format!("{}#{}", iface.core_module, function.core_name));
            let (encoding, own_realloc, guest) = boundary.options(t.module, realloc, memory, options.edge_memory, &what)?;
            used_realloc(&boundary, own_realloc);
            t.set_boundary(encoding, own_realloc, guest);
            import_adapter(&mut t, import, &iface.name, &function.name, fl, import_scratch, &mut scratch_size, region)
                .with_context(|| format!("failed to adapt {what}"))?;
        }
    }
    let statics_init = t.finish();
    let mut allocator_reads_memory_size = false;
    if !options.edge_memory {
        for (name, realloc) in &reallocs {
            if reads_memory_size(&module, *realloc, memory) {
                allocator_reads_memory_size = true;
                warnings.push(format!(
                    "the guest's `{name}` reads `memory.size` of the memory the Karmem ABI shares with it: \
                     an allocator that takes every page up to `memory.size` as its own would hand out pages \
                     `KarmemAlloc` grew (docs/ABI.md §10); lower with `--multi-memory` to give the Karmem \
                     edge a memory of its own"
                ));
            }
        }
    }

    // Imports the adapters do not cover (resource drops of imported
    // resources, `[resource-drop]<WIT name>`) move to the interface's
    // Karmem module (docs/ABI.md §4).
    for iface in world.interfaces.iter().filter(|i| is_karmem_import(i)) {
        let ids: Vec<_> = module.imports.iter().filter(|i| i.module == iface.core_module).map(|i| i.id()).collect();
        for id in ids {
            module.imports.get_mut(id).module = karmem_contract::import_module(&iface.name);
        }
    }
    // Drops of the guest's own resources: `<interface>.[resource-drop]<resource>`.
    for (core, name) in world.resource_drop_exports() {
        let Some(export) = module.exports.iter_mut().find(|e| e.name == core) else { continue };
        export.name = name;
    }
    let leftover: Vec<String> = module
        .imports
        .iter()
        .filter(|i| matches!(i.kind, walrus::ImportKind::Function(_)))
        .filter(|i| {
            karmem_contract::imported_interface(&i.module).is_none()
                && karmem_partition::preview1_memory_of(&i.module).is_none()
                && !i.module.starts_with("wasi:")
        })
        .map(|i| format!("`{}`/`{}`", i.module, i.name))
        .collect();
    ensure!(leftover.is_empty(), "imports that no interface of the world explains: {}", leftover.join(", "));

    // The canonical boundary is internal now.
    let dead: Vec<_> =
        module.exports.iter().filter(|e| dead_exports.contains(&e.name)).map(|e| e.id()).collect();
    for id in dead {
        module.exports.delete(id);
    }
    let (descriptors, export_count, import_count, region_patches) = descriptors(world, &layout, &regions)?;
    let entries = entry_points(
        &mut module,
        edge,
        EntryInputs {
            alloc,
            statics_init,
            export_scratch,
            import_scratch,
            scratch_size,
            descriptors,
            export_count,
            import_count,
            adapters: adapters.iter().map(|(_, f)| *f).collect(),
            regions: regions.iter().map(|r| (r.base, r.pages)).collect(),
            region_patches,
        },
    );
    for (name, func) in adapters.iter().chain(&entries) {
        ensure!(module.exports.iter().all(|e| e.name != *name), "two exports would be named `{name}`");
        module.exports.add(name, *func);
    }
    module.exports.add(entry::ALLOC, alloc);
    module.exports.add(entry::FREE, free);

    module.customs.remove_raw(ABI_SECTION);
    module.customs.remove_raw(IDL_SECTION);
    // the canonical boundary is internal now: only WASI imports left as
    // canonical-ABI imports (`--wasi passthrough`) keep their entries
    module.customs.remove_raw(CANONICAL_ABI_SECTION);
    let still_imported = |name: &str| {
        name.split_once('#').is_some_and(|(m, f)| module.imports.find(m, f).is_some())
    };
    let kept: Vec<&serde_json::Value> = boundaries
        .entries
        .iter()
        .filter(|e| e.get("kind").and_then(|k| k.as_str()) == Some("import"))
        .filter(|e| e.get("name").and_then(|n| n.as_str()).is_some_and(still_imported))
        .collect();
    if !kept.is_empty() {
        let data = serde_json::to_vec(&kept).context("failed to write the `karmem:canonical-abi` section")?;
        module.customs.add(RawCustomSection { name: CANONICAL_ABI_SECTION.to_string(), data });
    }
    module.customs.add(RawCustomSection { name: ABI_SECTION.to_string(), data: ABI_VERSION.as_bytes().to_vec() });
    module.customs.add(RawCustomSection { name: IDL_SECTION.to_string(), data: world.idl.as_bytes().to_vec() });
    module.producers.add_processed_by("karmem-bridge", env!("CARGO_PKG_VERSION"));
    let bytes = module.emit_wasm();
    wasmparser::Validator::new()
        .validate_all(&bytes)
        .context("internal error: the Karmem-ABI module does not validate")?;
    Ok(Lowered { module: bytes, warnings, allocator_reads_memory_size })
}

/// The entries of the `karmem:canonical-abi` section.
#[derive(Debug, Default)]
pub(crate) struct Boundaries {
    entries: Vec<serde_json::Value>,
}

/// One function's entry (or none: the defaults, UTF-8 and `cabi_realloc`).
#[derive(Debug, Default)]
struct Boundary<'a> {
    entry: Option<&'a serde_json::Value>,
}

impl Boundaries {
    pub(crate) fn read(module: &[u8]) -> Result<Boundaries> {
        for payload in wasmparser::Parser::new(0).parse_all(module) {
            if let wasmparser::Payload::CustomSection(section) = payload.context("failed to read the module")?
                && section.name() == CANONICAL_ABI_SECTION
            {
                let entries: Vec<serde_json::Value> = serde_json::from_slice(section.data())
                    .with_context(|| format!("the `{CANONICAL_ABI_SECTION}` section is not a JSON list"))?;
                return Ok(Boundaries { entries });
            }
        }
        Ok(Boundaries::default())
    }

    /// The memory (its export name) the lowering recorded for import `name`
    /// (`module#field`).
    pub(crate) fn import_memory(&self, name: &str) -> Option<&str> {
        self.get("import", name).entry?.get("memory")?.as_str()
    }

    fn get(&self, kind: &str, name: &str) -> Boundary<'_> {
        let text = |e: &serde_json::Value, key: &str| e.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let entry = self
            .entries
            .iter()
            .find(|e| text(e, "kind").as_deref() == Some(kind) && text(e, "name").as_deref() == Some(name));
        Boundary { entry }
    }
}

impl Boundary<'_> {
    fn text(&self, key: &str) -> Option<&str> {
        self.entry.and_then(|e| e.get(key)).and_then(|v| v.as_str())
    }

    /// The function's string encoding, realloc (`fallback` without one) and
    /// memory (`main` without one). Without an edge memory, every function
    /// must use `main`: the adapters' data shares it.
    fn options(
        &self,
        module: &Module,
        fallback: FunctionId,
        main: MemoryId,
        edge_memory: bool,
        what: &str,
    ) -> Result<(StringEncoding, FunctionId, MemoryId)> {
        let encoding = match self.text("string-encoding") {
            None | Some("utf8") => StringEncoding::Utf8,
            Some("utf16") => StringEncoding::Utf16,
            Some("latin1+utf16") => StringEncoding::Latin1Utf16,
            Some(other) => bail!("{what} has the unknown string encoding `{other}`"),
        };
        let memory = match self.text("memory") {
            None | Some("memory") => main,
            Some(name) if edge_memory => match module.exports.iter().find(|e| e.name == name).map(|e| &e.item) {
                Some(ExportItem::Memory(m)) => *m,
                _ => bail!("{what} uses the memory `{name}`, which the module does not export"),
            },
            Some(name) => bail!(
                "{what} uses the memory `{name}`: a Karmem ABI sharing the guest's memory needs the module's one \
                 memory `memory` (put the Karmem edge in a memory of its own, as `--multi-memory` does, \
                 or lower with `--abi canonical`)"
            ),
        };
        let realloc = match self.text("realloc") {
            None => fallback,
            Some(name) => module
                .exports
                .get_func(name)
                .map_err(|_| anyhow!("{what} allocates with `{name}`, which the module does not export"))?,
        };
        Ok((encoding, realloc, memory))
    }
}

/// Whether a core name belongs to WASI (`wasi:...`).
fn is_wasi(core_name: &str) -> bool {
    core_name.starts_with("wasi:")
}

/// Imported interfaces that become Karmem imports: all but WASI's, which
/// stay canonical-ABI imports for the WASI shim or a WASI host
/// (docs/LOWERING.md, `## WASI`).
fn is_karmem_import(iface: &InterfaceBinding) -> bool {
    iface.side == Side::Import && !is_wasi(&iface.core_module)
}

/// Whether an interface has a descriptor (docs/ABI.md §5): one with neither
/// a function nor an interface memory (a WIT interface that only defines
/// types) has nothing to call or map, and none.
fn is_described(iface: &InterfaceBinding, def: &karmem_idl::ast::InterfaceDef) -> bool {
    !iface.functions.is_empty() || def.memories().next().is_some()
}

/// An interface memory's region.
#[derive(Debug, Clone)]
struct Region {
    interface: String,
    name: String,
    pages: u32,
    /// Holds the region's address once `KarmemInit` reserved it.
    base: GlobalId,
}

/// The region a function's outgoing message is placed in: for an export,
/// the memory of its first result placed `@ m`; for an import, of its first
/// parameter placed `@ m` (the message is one buffer, so one memory).
fn placement(
    world: &World,
    interface: &str,
    function: &str,
    import: bool,
    regions: &[Region],
) -> Result<Option<(GlobalId, u32)>> {
    let Some(Item::Interface(def)) = world.schema.get(interface) else { return Ok(None) };
    let Some(f) = def.functions().find(|f| f.name.name == function) else { return Ok(None) };
    let outgoing = if import { &f.params } else { &f.results };
    let Some(memory) = outgoing.iter().find_map(|p| p.memory.as_ref()) else { return Ok(None) };
    let region = regions
        .iter()
        .find(|r| r.interface == interface && r.name == memory.name)
        .with_context(|| format!("`{interface}.{function}` is placed in the unknown memory `{}`", memory.name))?;
    Ok(Some((region.base, region.pages)))
}

/// Emits: make `region` the output buffer (fixed size); returns the saved
/// buffer globals' locals, or `None` when there is no region.
fn enter_region(
    t: &mut Transcoder<'_>,
    f: &mut FunctionBuilder,
    seq: walrus::ir::InstrSeqId,
    region: Option<(GlobalId, u32)>,
) -> Option<(LocalId, LocalId)> {
    let (base, pages) = region?;
    let rt = t.rt;
    let [saved_base, saved_cap] = [(); 2].map(|_| t.module.locals.add(ValType::I32));
    let bytes = (u64::from(pages) << 16).min(u64::from(u32::MAX)) as u32;
    f.instr_seq(seq)
        .global_get(rt.out_base)
        .local_set(saved_base)
        .global_get(rt.out_cap)
        .local_set(saved_cap)
        .global_get(base)
        .global_set(rt.out_base)
        .i32_const(bytes as i32)
        .global_set(rt.out_cap)
        .i32_const(1)
        .global_set(rt.out_fixed);
    Some((saved_base, saved_cap))
}

/// Emits: the output buffer back to the adapter's own.
fn leave_region(t: &mut Transcoder<'_>, f: &mut FunctionBuilder, seq: walrus::ir::InstrSeqId, saved: Option<(LocalId, LocalId)>) {
    let Some((saved_base, saved_cap)) = saved else { return };
    let rt = t.rt;
    f.instr_seq(seq)
        .local_get(saved_base)
        .global_set(rt.out_base)
        .local_get(saved_cap)
        .global_set(rt.out_cap)
        .i32_const(0)
        .global_set(rt.out_fixed);
}

/// A `cabi_realloc` for modules without one (no lists or strings cross
/// their boundary, so it is never called).
fn trapping_realloc(module: &mut Module) -> FunctionId {
    let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I32; 4], &[ValType::I32]);
    f.name("karmem no cabi_realloc".to_string());
    f.func_body().unreachable();
    let args = (0..4).map(|_| module.locals.add(ValType::I32)).collect();
    f.finish(args, &mut module.funcs)
}

fn flat_vals(ty: &AbiType) -> Vec<ValType> {
    ty.flatten().into_iter().map(flat::val_type).collect()
}

/// `<interface>.<function>(ptr, len) -> i64` for one lifted export.
fn export_adapter(
    t: &mut Transcoder<'_>,
    core: FunctionId,
    post: Option<FunctionId>,
    fl: FunctionLayout,
    scratch: GlobalId,
    scratch_size: &mut u32,
    region: Option<(GlobalId, u32)>,
) -> Result<FunctionId> {
    // flat values pass through the scratch area in the message memory;
    // spilled ones sit in the guest's memory, as the canonical ABI has them
    let (m, guest) = (t.env.memory, t.guest);
    let params = t.shape(fl.params);
    let results = t.shape(fl.results);
    let param_flat = params.flatten();
    let result_flat = results.flatten();
    let spill_params = param_flat.len() > MAX_FLAT_PARAMS;
    let spill_results = result_flat.len() > MAX_FLAT_RESULTS;
    t.set_place(if spill_params { guest } else { m });
    let reader = t.message_reader(fl.params)?;
    t.set_place(if spill_results { guest } else { m });
    let writer = t.message_writer(fl.results)?;
    let want_params: Vec<ValType> = if spill_params { vec![ValType::I32] } else { flat_vals(&params) };
    let want_results: Vec<ValType> = if spill_results { vec![ValType::I32] } else { flat_vals(&results) };
    let core_ty = t.module.types.get(t.module.funcs.get(core).ty());
    ensure!(
        core_ty.params() == want_params.as_slice() && core_ty.results() == want_results.as_slice(),
        "the core function has type {:?} -> {:?}, but the IDL signature flattens to {want_params:?} -> {want_results:?}",
        core_ty.params(),
        core_ty.results()
    );
    if !spill_params {
        *scratch_size = (*scratch_size).max(params.size());
    }
    if !spill_results {
        *scratch_size = (*scratch_size).max(results.size());
    }
    let mut f = FunctionBuilder::new(&mut t.module.types, &[ValType::I32; 2], &[ValType::I64]);
    let [ptr, len, area] = [(); 3].map(|_| t.module.locals.add(ValType::I32));
    let packed = t.module.locals.add(ValType::I64);
    let seq = f.func_body_id();
    if spill_params {
        f.instr_seq(seq)
            .i32_const(0)
            .i32_const(0)
            .i32_const(params.align() as i32)
            .i32_const(params.size() as i32)
            .call(t.env.realloc)
            .local_set(area);
    } else {
        f.instr_seq(seq).global_get(scratch).local_set(area);
    }
    f.instr_seq(seq).local_get(ptr).local_get(len).local_get(area).call(reader);
    if spill_params {
        f.instr_seq(seq).local_get(area);
    } else {
        let locals = flat::flat_locals(&mut t.module.locals, &params);
        flat::load_flat(&mut f, seq, &mut t.module.locals, m, &params, area, 0, &locals);
        for local in &locals {
            f.instr_seq(seq).local_get(*local);
        }
    }
    f.instr_seq(seq).call(core);
    let core_results: Vec<LocalId> = want_results.iter().map(|ty| t.module.locals.add(*ty)).collect();
    for local in core_results.iter().rev() {
        f.instr_seq(seq).local_set(*local);
    }
    let saved = enter_region(t, &mut f, seq, region);
    match core_results.as_slice() {
        [] if region.is_none() => {
            f.instr_seq(seq).i64_const(0).local_set(packed);
        }
        [] => {
            // results placed `@ out` but none: the empty message, in place
            let empty = t.module.locals.add(ValType::I32);
            f.instr_seq(seq).global_get(scratch).local_set(empty).local_get(empty).call(writer).local_set(packed);
        }
        [only] if !spill_results => {
            f.instr_seq(seq).global_get(scratch).local_set(area);
            flat::store_flat(&mut f, seq, &mut t.module.locals, m, &results, area, 0, &[*only]);
            f.instr_seq(seq).local_get(area).call(writer).local_set(packed);
        }
        [results_ptr] => {
            f.instr_seq(seq).local_get(*results_ptr).call(writer).local_set(packed);
        }
        _ => bail!("internal error: more than one core result"),
    }
    leave_region(t, &mut f, seq, saved);
    if let Some(post) = post {
        let mut b = f.instr_seq(seq);
        for local in &core_results {
            b.local_get(*local);
        }
        b.call(post);
    }
    f.instr_seq(seq).local_get(packed);
    Ok(f.finish(vec![ptr, len], &mut t.module.funcs))
}

/// Replaces the lowered import `import` with an adapter that calls
/// `karmem:<interface>`/`<function>` with messages.
#[allow(clippy::too_many_arguments)]
fn import_adapter(
    t: &mut Transcoder<'_>,
    import: walrus::ImportId,
    interface: &str,
    function: &str,
    fl: FunctionLayout,
    scratch: GlobalId,
    scratch_size: &mut u32,
    region: Option<(GlobalId, u32)>,
) -> Result<()> {
    // as in `export_adapter`: flat values in the scratch area, spilled ones
    // in the guest's memory
    let (m, guest) = (t.env.memory, t.guest);
    let func = match t.module.imports.get(import).kind {
        walrus::ImportKind::Function(f) => f,
        _ => bail!("the import is not a function"),
    };
    let params = t.shape(fl.params);
    let results = t.shape(fl.results);
    let param_flat = params.flatten();
    let result_flat = results.flatten();
    let spill_params = param_flat.len() > MAX_FLAT_PARAMS;
    let spill_results = result_flat.len() > MAX_FLAT_RESULTS;
    t.set_place(if spill_params { guest } else { m });
    let writer = t.message_writer(fl.params)?;
    t.set_place(if spill_results { guest } else { m });
    let reader = t.message_reader(fl.results)?;
    let mut want_params: Vec<ValType> = if spill_params { vec![ValType::I32] } else { flat_vals(&params) };
    if spill_results {
        want_params.push(ValType::I32);
    }
    let want_results: Vec<ValType> = if spill_results { Vec::new() } else { flat_vals(&results) };
    let ty = t.module.types.get(t.module.funcs.get(func).ty());
    ensure!(
        ty.params() == want_params.as_slice() && ty.results() == want_results.as_slice(),
        "the core import has type {:?} -> {:?}, but the IDL signature flattens to {want_params:?} -> {want_results:?}",
        ty.params(),
        ty.results()
    );
    if !spill_params {
        *scratch_size = (*scratch_size).max(params.size());
    }
    if !spill_results {
        *scratch_size = (*scratch_size).max(results.size());
    }
    let host_ty = t.module.types.add(&[ValType::I32; 2], &[ValType::I64]);
    let (host, _) = t.module.add_import_func(&karmem_contract::import_module(interface), function, host_ty);
    let args: Vec<LocalId> = want_params.iter().map(|ty| t.module.locals.add(*ty)).collect();
    let [area, rptr, rlen] = [(); 3].map(|_| t.module.locals.add(ValType::I32));
    let packed = t.module.locals.add(ValType::I64);
    let mut f = FunctionBuilder::new(&mut t.module.types, &want_params, &want_results);
    f.name(format!("karmem import {interface}.{function}"));
    let seq = f.func_body_id();
    // arguments -> message
    if spill_params {
        let first = args.first().copied().context("missing parameter pointer")?;
        f.instr_seq(seq).local_get(first).local_set(area);
    } else {
        f.instr_seq(seq).global_get(scratch).local_set(area);
        let flat_args = args.get(..param_flat.len()).context("missing flat parameters")?;
        flat::store_flat(&mut f, seq, &mut t.module.locals, m, &params, area, 0, flat_args);
    }
    let saved = enter_region(t, &mut f, seq, region);
    f.instr_seq(seq).local_get(area).call(writer).local_set(packed);
    leave_region(t, &mut f, seq, saved);
    {
        let mut b = f.instr_seq(seq);
        b.local_get(packed).unop(UnaryOp::I32WrapI64);
        b.local_get(packed).i64_const(32).binop(BinaryOp::I64ShrU).unop(UnaryOp::I32WrapI64);
        b.call(host).local_tee(packed).unop(UnaryOp::I32WrapI64).local_set(rptr);
        b.local_get(packed).i64_const(32).binop(BinaryOp::I64ShrU).unop(UnaryOp::I32WrapI64).local_set(rlen);
    }
    // result message -> the caller's return area, or the scratch area
    if spill_results {
        let retptr = args.last().copied().context("missing return pointer")?;
        f.instr_seq(seq).local_get(retptr).local_set(area);
    } else {
        f.instr_seq(seq).global_get(scratch).local_set(area);
    }
    f.instr_seq(seq).local_get(rptr).local_get(rlen).local_get(area).call(reader);
    f.instr_seq(seq).local_get(rlen);
    let owned = asm::if_(&mut f, seq);
    f.instr_seq(owned).local_get(rptr).local_get(rlen).i32_const(MESSAGE_ALIGN).call(t.env.free);
    if !spill_results && !result_flat.is_empty() {
        let locals = flat::flat_locals(&mut t.module.locals, &results);
        flat::load_flat(&mut f, seq, &mut t.module.locals, m, &results, area, 0, &locals);
        for local in &locals {
            f.instr_seq(seq).local_get(*local);
        }
    }
    let local = f.local_func(args);
    t.module.funcs.get_mut(func).kind = FunctionKind::Local(local);
    t.module.imports.delete(import);
    Ok(())
}

/// The descriptors as one blob: a table of `(offset, length)` per export
/// then import interface, then each message at a 64-byte boundary.
/// The descriptor blob, the export and import interface counts, and where
/// in the blob `KarmemInit` writes each region's address.
type Descriptors = (Vec<u8>, u32, u32, Vec<(u32, GlobalId)>);

fn descriptors(world: &World, layout: &Layout, regions: &[Region]) -> Result<Descriptors> {
    let file_package = world
        .schema
        .file()
        .package
        .as_ref()
        .map(|p| match &p.version {
            Some(v) => format!("{}@{v}", p.name),
            None => p.name.clone(),
        })
        .unwrap_or_default();
    let mut messages = Vec::new();
    // (message index, byte offset in it, region) of every memory offset
    let mut patches: Vec<(usize, usize, GlobalId)> = Vec::new();
    let mut next_id = 0u32;
    let mut export_count = 0u32;
    for side in [Side::Export, Side::Import] {
        let on_side = world.interfaces.iter().filter(|i| i.side == side);
        for iface in on_side.filter(|i| side == Side::Export || is_karmem_import(i)) {
            let Some(Item::Interface(def)) = world.schema.get(&iface.name) else {
                bail!("interface `{}` is missing from the schema", iface.name);
            };
            if !is_described(iface, def) {
                continue;
            }
            if side == Side::Export {
                export_count += 1;
            }
            let mut functions = Vec::new();
            for (position, function) in iface.functions.iter().enumerate() {
                let id = if side == Side::Export {
                    next_id += 1;
                    next_id - 1
                } else {
                    position as u32
                };
                let type_hash = layout.function_hash(&iface.name, &function.name).unwrap_or_default();
                functions.push(FunctionDescriptor { name: function.name.clone(), id, type_hash });
            }
            // Region offsets are only known at init: encode a sentinel, find
            // it, and let `KarmemInit` patch it.
            let mut sentinels = Vec::new();
            let memories = def
                .memories()
                .enumerate()
                .map(|(k, mem)| {
                    let access = if side == Side::Export { mem.export } else { mem.import };
                    let sentinel = SENTINEL_BASE | k as u32;
                    let region = regions.iter().find(|r| r.interface == iface.name && r.name == mem.name.name);
                    sentinels.push((sentinel, region.map(|r| r.base)));
                    MemoryDescriptor { name: mem.name.name.clone(), access, offset: sentinel, pages: mem.pages }
                })
                .collect();
            let package = match iface.wit.package_with_version() {
                wit if wit.is_empty() => file_package.clone(),
                wit => wit,
            };
            let descriptor = Descriptor {
                package,
                name: iface.name.clone(),
                pattern: def.pattern,
                functions,
                memories,
                wit_package: iface.wit.package.clone(),
                wit_interface: iface.wit.interface.clone(),
                wit_version: iface.wit.version.clone(),
            };
            let bytes = descriptor
                .encode()
                .with_context(|| format!("failed to encode the descriptor of `{}`", iface.name))?;
            for (sentinel, region) in sentinels {
                let needle = sentinel.to_le_bytes();
                let hits: Vec<usize> = bytes.windows(4).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect();
                match (hits.as_slice(), region) {
                    ([at], Some(region)) => patches.push((messages.len(), *at, region)),
                    _ => bail!("internal error: cannot place the memory offsets of `{}`'s descriptor", iface.name),
                }
            }
            messages.push(bytes);
        }
    }
    let import_count = messages.len() as u32 - export_count;
    // the table, then the messages
    let mut table = Vec::with_capacity(8 * messages.len());
    let mut body = Vec::new();
    let table_size = (8 * messages.len()).next_multiple_of(64);
    let mut region_patches = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let at = (table_size + body.len()) as u32;
        for (_, offset, region) in patches.iter().filter(|(m, ..)| *m == i) {
            region_patches.push((at + *offset as u32, *region));
        }
        table.extend_from_slice(&at.to_le_bytes());
        table.extend_from_slice(&(message.len() as u32).to_le_bytes());
        body.extend_from_slice(message);
        body.resize(body.len().next_multiple_of(64), 0);
    }
    let mut blob = table;
    blob.resize(table_size, 0);
    blob.extend_from_slice(&body);
    Ok((blob, export_count, import_count, region_patches))
}

/// Placeholder memory offsets in descriptors (`0xFEED0000 + k`).
const SENTINEL_BASE: u32 = 0xFEED_0000;

struct EntryInputs {
    alloc: FunctionId,
    statics_init: FunctionId,
    export_scratch: GlobalId,
    import_scratch: GlobalId,
    scratch_size: u32,
    descriptors: Vec<u8>,
    export_count: u32,
    import_count: u32,
    adapters: Vec<FunctionId>,
    /// (address global, pages) of every interface memory region.
    regions: Vec<(GlobalId, u32)>,
    /// (offset in the descriptor blob, region) of every memory offset.
    region_patches: Vec<(u32, GlobalId)>,
}

/// `KarmemInit`, `KarmemExport`, `KarmemImport` and `KarmemCall`.
fn entry_points(module: &mut Module, m: MemoryId, inputs: EntryInputs) -> Vec<(String, FunctionId)> {
    let initialised = module.globals.add_local(ValType::I32, true, false, ConstExpr::Value(Const::I32(0)));
    let desc_base = module.globals.add_local(ValType::I32, true, false, ConstExpr::Value(Const::I32(0)));
    let blob_len = inputs.descriptors.len() as i32;
    let data = module.data.add(DataKind::Passive, inputs.descriptors);

    // The statics and the scratch areas the adapters use. A guest's start
    // function runs before the host calls `KarmemInit` and may call
    // imports (a component's start function making and using host
    // resources): it prepares them first; `KarmemInit` does when no start
    // function did.
    let prepared = module.globals.add_local(ValType::I32, true, false, ConstExpr::Value(Const::I32(0)));
    let prepare = {
        let mut f = FunctionBuilder::new(&mut module.types, &[], &[]);
        f.name("karmem prepare".to_string());
        let mut b = f.func_body();
        b.global_get(prepared).if_else(
            None,
            |done| {
                done.return_();
            },
            |_| {},
        );
        b.i32_const(1).global_set(prepared);
        b.call(inputs.statics_init);
        for scratch in [inputs.export_scratch, inputs.import_scratch] {
            b.i32_const(inputs.scratch_size as i32).i32_const(64).call(inputs.alloc).global_set(scratch);
        }
        f.finish(Vec::new(), &mut module.funcs)
    };
    if let Some(guest_start) = module.start {
        let mut f = FunctionBuilder::new(&mut module.types, &[], &[]);
        f.name("karmem start".to_string());
        f.func_body().call(prepare).call(guest_start);
        module.start = Some(f.finish(Vec::new(), &mut module.funcs));
    }

    let init = {
        let mut f = FunctionBuilder::new(&mut module.types, &[], &[ValType::I64]);
        f.name(entry::INIT.to_string());
        let grown = module.locals.add(ValType::I32);
        let seq = f.func_body_id();
        f.instr_seq(seq).global_get(initialised);
        asm::trap_if(&mut f, seq);
        {
            let mut b = f.instr_seq(seq);
            b.i32_const(1).global_set(initialised);
            b.call(prepare);
            b.i32_const(blob_len).i32_const(MESSAGE_ALIGN).call(inputs.alloc).global_set(desc_base);
            b.global_get(desc_base).i32_const(0).i32_const(blob_len).memory_init(m, data).data_drop(data);
        }
        // interface memories: fresh pages, never handed out by KarmemAlloc
        for (base, pages) in &inputs.regions {
            f.instr_seq(seq).i32_const(*pages as i32).memory_grow(m).local_tee(grown).i32_const(-1).binop(BinaryOp::I32Eq);
            asm::trap_if(&mut f, seq);
            f.instr_seq(seq).local_get(grown).i32_const(16).binop(BinaryOp::I32Shl).global_set(*base);
        }
        for (at, base) in &inputs.region_patches {
            let mut b = f.instr_seq(seq);
            b.global_get(desc_base).global_get(*base);
            asm::store(&mut b, m, Width::I32, *at);
        }
        let mut b = f.instr_seq(seq);
        b.i64_const(((inputs.import_count as i64) << 32) | inputs.export_count as i64);
        f.finish(Vec::new(), &mut module.funcs)
    };

    let mut descriptor_fn = |name: &str, first: u32, count: u32| {
        let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I32], &[ValType::I64]);
        f.name(name.to_string());
        let index = module.locals.add(ValType::I32);
        let entry = module.locals.add(ValType::I32);
        let seq = f.func_body_id();
        f.instr_seq(seq).local_get(index).i32_const(count as i32).binop(BinaryOp::I32GeU);
        asm::trap_if(&mut f, seq);
        let mut b = f.instr_seq(seq);
        b.global_get(desc_base).local_get(index).i32_const(first as i32).binop(BinaryOp::I32Add);
        b.i32_const(3).binop(BinaryOp::I32Shl).binop(BinaryOp::I32Add).local_set(entry);
        b.local_get(entry);
        asm::load(&mut b, m, Width::I32, 4);
        asm::widen(&mut b);
        b.i64_const(32).binop(BinaryOp::I64Shl).global_get(desc_base).local_get(entry);
        asm::load(&mut b, m, Width::I32, 0);
        b.binop(BinaryOp::I32Add);
        asm::widen(&mut b);
        b.binop(BinaryOp::I64Or);
        f.finish(vec![index], &mut module.funcs)
    };
    let export = descriptor_fn(entry::EXPORT, 0, inputs.export_count);
    let import = descriptor_fn(entry::IMPORT, inputs.export_count, inputs.import_count);

    let call = {
        let mut f = FunctionBuilder::new(&mut module.types, &[ValType::I32; 3], &[ValType::I64]);
        f.name(entry::CALL.to_string());
        let [id, ptr, len] = [(); 3].map(|_| module.locals.add(ValType::I32));
        let seq = f.func_body_id();
        f.instr_seq(seq).local_get(id).i32_const(inputs.adapters.len() as i32).binop(BinaryOp::I32GeU);
        asm::trap_if(&mut f, seq);
        let arms = switch(&mut f, seq, id, inputs.adapters.len());
        for (arm, adapter) in arms.into_iter().zip(&inputs.adapters) {
            f.instr_seq(arm).local_get(ptr).local_get(len).call(*adapter).return_();
        }
        f.instr_seq(seq).unreachable();
        f.finish(vec![id, ptr, len], &mut module.funcs)
    };
    vec![
        (entry::INIT.to_string(), init),
        (entry::EXPORT.to_string(), export),
        (entry::IMPORT.to_string(), import),
        (entry::CALL.to_string(), call),
    ]
}

/// The string encoding option for callers that know their guest's.
pub fn with_encoding(encoding: StringEncoding) -> Options {
    Options {
        transcode: TranscodeOptions { string_encoding: encoding, ..TranscodeOptions::default() },
        ..Options::default()
    }
}
