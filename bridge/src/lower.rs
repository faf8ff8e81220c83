//! [`lower`]: a component to one core module, the job of `karmem-bridge
//! lower`, callable from a build script.
//!
//! Owns: the pipeline and its defaults — lower to the canonical boundary
//! (`karmem-core-lowering`), choose how WASI is reached (drop the preview1
//! adapter of a `wasm32-wasip1` component, or link the preview2-on-preview1
//! shim), then put the Karmem ABI at the edge (`karmem-adapters`); the
//! component's world, mapped to KarmemIDL (`karmem-wit-import`) with an
//! optional [`Overlay`] of patterns and shared memories, is embedded as
//! `karmem:idl`.
//!
//! Does not own: any of those steps; argument parsing and printing
//! (`commands/lower.rs`).

use anyhow::{Context as _, Result};
use karmem_adapters::abi::World;
use karmem_adapters::wasi::WasiMode;
use karmem_wit_import::{Imported, LoadedWorld, Overlay};

/// The ABI at the lowered module's edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Abi {
    /// Canonical-ABI flat signatures (exports named as the component's functions).
    Canonical,
    /// The Karmem ABI (docs/ABI.md): messages in, messages out.
    #[default]
    Karmem,
}

/// How the lowered module reaches WASI (docs/LOWERING.md, `## WASI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wasi {
    /// Drop the preview1 adapter and keep the main module's own
    /// `wasi_snapshot_preview1` imports (refused without the adapter).
    Preview1,
    /// Serve WASI 0.2 imports with the in-module preview2-on-preview1 shim,
    /// and what a preview1 host cannot serve (sockets, http, ...) with stubs
    /// acting like a host that grants no such capability.
    Shim,
    /// As `Shim`, keeping what the shim does not cover as imports (their
    /// stubs recorded for `run --stub-missing`).
    Passthrough,
    /// As `Shim`, refusing what the shim does not cover, naming it.
    Deny,
}

/// What [`lower`] does; the default is `karmem-bridge lower`'s.
#[derive(Debug, Clone, Default)]
pub struct LowerOptions {
    pub abi: Abi,
    /// `None` picks as the CLI does: the preview1 adapter is dropped when
    /// its only users are the preview1 imports it implements (WASI 0.2
    /// imports of other modules served as by `Shim`), else `Shim`; one
    /// lowering either way.
    pub wasi: Option<Wasi>,
    /// Keep the memories of separate instances separate (a multi-memory
    /// module); with [`Abi::Karmem`] the edge gets a memory of its own,
    /// `KarmemMemory` (docs/ABI.md §2). Without it, a module with several
    /// memories (a composition) gets one memory of partitions
    /// (`karmem-partition`, docs/LOWERING.md "One memory: partitions").
    pub multi_memory: bool,
    /// Quotas of partitions, by memory owner (an instance location as
    /// `inspect` prints it, or `karmem:edge`), in bytes.
    pub memory_quotas: karmem_partition::Quotas,
    /// Patterns, interface memories and placements applied to the world's
    /// KarmemIDL before it is embedded and the adapters are generated.
    pub overlay: Overlay,
}

/// A lowered module and what the user should be told about it.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The core module, binary.
    pub module: Vec<u8>,
    /// How it reaches WASI.
    pub wasi: Wasi,
    /// Things that went differently from what was asked or may go wrong
    /// (`lower` prints them as `warning:`).
    pub warnings: Vec<String>,
    /// Choices made on the user's behalf (`lower` prints them as `note:`).
    pub notes: Vec<String>,
    /// WASI interfaces a preview1 host cannot serve that were linked to
    /// stubs behaving like a host granting no such capability (without
    /// versions, sorted; `lower` lists them in one warning).
    pub stubbed_interfaces: Vec<String>,
}

/// Lowers `component` (binary or text) into one core module.
pub fn lower(component: &[u8], options: &LowerOptions) -> Result<Lowered> {
    let bytes = karmem_core_lowering::binary_input(component)?;
    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    let loaded = karmem_wit_import::load_wasm(&bytes, None);
    // What each `wasi:` import a preview1 host cannot serve does as a stub,
    // from the component's own WIT (no plan: such imports are refused, as
    // under `--wasi deny`).
    let stubs = loaded.as_ref().ok().and_then(|loaded| karmem_adapters::wasi::plan_stubs(&loaded.resolve, loaded.world).ok());
    let world = match loaded.and_then(|loaded| map_world(&loaded).map(|imported| (loaded, imported))) {
        Ok((loaded, mut imported)) => {
            options.overlay.apply(&mut imported).context("failed to apply the overlay")?;
            World::from_imported(&loaded.resolve, loaded.world, imported)
        }
        Err(error) if !options.overlay.is_empty() => {
            return Err(error.context("the overlay applies to the component's world, which could not be mapped"));
        }
        Err(error) => Err(error),
    };
    let lowering = karmem_core_lowering::Options {
        // The Karmem ABI is built on the canonical boundary.
        abi: karmem_core_lowering::Abi::Canonical,
        // Instances with memories of their own stay apart until the end:
        // the partition pass puts them in one memory.
        multi_memory: true,
        idl: world.as_ref().ok().map(|world| world.idl.clone()),
    };
    let (lowered, mode, adapter_dropped) = lower_for_wasi(&bytes, &lowering, options.wasi, &mut notes)?;
    let several_memories = karmem_partition::layout::memory_count(&lowered)? > 1;
    if let Err(e) = &world {
        warnings.push(format!("`karmem:idl` left empty: the component's WIT could not be mapped to KarmemIDL: {e:#}"));
    }
    // The shim goes in first: it allocates through the module's
    // `cabi_realloc` exports, which the Karmem ABI pass does not keep.
    let finish = karmem_adapters::wasi::Finish { mode, stubs: stubs.as_ref(), adapter_dropped };
    let (lowered, stubbed) = serve_wasi(lowered, &finish).context("failed to serve the WASI imports")?;
    let stubbed_interfaces = karmem_adapters::wasi::stubbed_interfaces(&stubbed);
    if !stubbed_interfaces.is_empty() {
        warnings.push(format!(
            "WASI interfaces a preview1 host cannot serve are stubbed as on a host that grants no such capability \
             (errors such as `access-denied`, or a trap naming the import; `--wasi deny` refuses them, \
             `--wasi passthrough` keeps them as imports): {}",
            stubbed_interfaces.join(", ")
        ));
    }
    let mut several_memories = several_memories;
    let module = match options.abi {
        Abi::Canonical => lowered,
        Abi::Karmem => {
            let world = world.context("the Karmem ABI needs the component's world as KarmemIDL")?;
            let edge = |edge_memory: bool| {
                let adapters = karmem_adapters::abi::Options { edge_memory, ..Default::default() };
                karmem_adapters::abi::karmem_abi_with_warnings(&lowered, &world, &adapters)
                    .context("failed to put the Karmem ABI on the module (`--abi canonical` skips it)")
            };
            let mut edged = edge(options.multi_memory || several_memories)?;
            if edged.allocator_reads_memory_size && !options.multi_memory {
                // An allocator that may take every page up to `memory.size`
                // (docs/ABI.md §10) must not share its memory with
                // `KarmemAlloc`: the edge gets a memory of its own, which
                // becomes a partition of the one memory below.
                edged = edge(true)?;
                several_memories = true;
                notes.push(
                    "the Karmem edge has a partition of its own: the guest's allocator reads `memory.size` \
                     (directly, or to take its heap up to `sbrk(0)`: docs/ABI.md §10)"
                        .to_string(),
                );
            }
            warnings.extend(edged.warnings);
            edged.module
        }
    };
    let module = match (several_memories, options.multi_memory) {
        (true, false) => partition(module, options).context("failed to put the memories in one memory")?,
        (true, true) => {
            refuse_second_memory_wasi(&module)?;
            module
        }
        // one memory: every preview1 import already points into it
        (false, _) => module,
    };
    let wasi = match mode {
        _ if adapter_dropped => Wasi::Preview1,
        WasiMode::Preview1 => Wasi::Preview1,
        WasiMode::Shim => Wasi::Shim,
        WasiMode::Passthrough => Wasi::Passthrough,
        WasiMode::Deny => Wasi::Deny,
    };
    Ok(Lowered { module, wasi, warnings, notes, stubbed_interfaces })
}

/// The memories of `module` as partitions of one (docs/LOWERING.md, "One
/// memory: partitions"): the Karmem edge memory (or, at the canonical
/// boundary, the memory exported as `memory`) at address 0, the
/// instances' after it.
fn partition(module: Vec<u8>, options: &LowerOptions) -> Result<Vec<u8>> {
    if karmem_partition::layout::exported_memory(&module, karmem_contract::EDGE_MEMORY)?.is_none() {
        // The canonical boundary: hosts address the memory exported as
        // `memory`; a boundary function in another memory cannot be
        // reached in one memory.
        for (name, memory) in canonical_memories(&module)? {
            if memory != "memory" {
                anyhow::bail!(
                    "`{name}` passes values in `{memory}`, a second memory; at the canonical boundary that needs \
                     `--multi-memory` (or use `--abi karmem`)"
                );
            }
        }
    }
    karmem_partition::one_memory(&module, &options.memory_quotas)
}

/// Boundary functions that remain imports or exports and the memory the
/// lowering recorded for each.
fn canonical_memories(module: &[u8]) -> Result<Vec<(String, String)>> {
    let mut names = std::collections::BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        match payload? {
            wasmparser::Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import?;
                    names.insert(format!("{}#{}", import.module, import.name));
                }
            }
            wasmparser::Payload::ExportSection(section) => {
                for export in section {
                    names.insert(export?.name.to_string());
                }
            }
            _ => {}
        }
    }
    let entries = karmem_core_lowering::link::read_canonical_abi(module)?;
    Ok(entries
        .into_iter()
        .filter(|entry| names.contains(&entry.name))
        .filter_map(|entry| Some((entry.name, entry.memory?)))
        .collect())
}

/// A module kept multi-memory cannot serve WASI for an instance whose
/// memory is not the one exported as `memory` (preview1 hosts use only that
/// one).
fn refuse_second_memory_wasi(module: &[u8]) -> Result<()> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ImportSection(section) = payload? {
            for import in section.into_imports() {
                let import = import?;
                if let Some(Some(memory)) = karmem_partition::preview1_memory_of(import.module) {
                    anyhow::bail!(
                        "the instance owning memory {memory} uses WASI (`{}`), which a preview1 host serves only in the \
                         memory exported as `memory`; lower without `--multi-memory` to put every memory in one",
                        import.name
                    );
                }
            }
        }
    }
    Ok(())
}

/// The component's world and its mapping to KarmemIDL. When the WIT cannot
/// be mapped yet, `karmem:idl` stays empty and the caller warns why: never
/// made-up text.
fn map_world(loaded: &LoadedWorld) -> Result<Imported> {
    karmem_wit_import::import_boundary(&loaded.resolve, loaded.world)
}

/// Lowers to the canonical boundary and picks the WASI mode; also says
/// whether the preview1 adapter was dropped. `Preview1` drops the preview1
/// adapter (refused when there is none). Without a choice, the component is
/// lowered once (`lower_trying_drop`): without its adapter when the adapter's
/// only users are the preview1 imports it implements (WASI 0.2 imports of
/// other modules are then served like `Shim`'s), with it otherwise, for `Shim`.
fn lower_for_wasi(
    component: &[u8],
    options: &karmem_core_lowering::Options,
    wasi: Option<Wasi>,
    notes: &mut Vec<String>,
) -> Result<(Vec<u8>, WasiMode, bool)> {
    let mode = match wasi {
        Some(Wasi::Preview1) => {
            let (lowered, _) = karmem_core_lowering::lower_dropping_preview1_adapter(component, options, &adapter_shape)?
                .context(
                    "`--wasi preview1` drops the preview1 adapter of a wasm32-wasip1 component, and this component has \
                     none; `--wasi shim` serves its WASI 0.2 imports",
                )?;
            return Ok((lowered, WasiMode::Preview1, true));
        }
        None => {
            use karmem_core_lowering::preview1::DropOutcome;
            let (lowered, outcome) = karmem_core_lowering::preview1::lower_trying_drop(component, options, &adapter_shape)?;
            return Ok(match outcome {
                DropOutcome::Dropped(report) if report.wasi_imports_left.is_empty() => (lowered, WasiMode::Preview1, true),
                DropOutcome::Dropped(_) => (lowered, WasiMode::Shim, true),
                DropOutcome::NoAdapter => (lowered, WasiMode::Shim, false),
                DropOutcome::Kept(why) => {
                    notes.push(format!("the preview1 adapter is kept (lowered as `--wasi shim`): {why}"));
                    (lowered, WasiMode::Shim, false)
                }
            });
        }
        Some(Wasi::Shim) => WasiMode::Shim,
        Some(Wasi::Passthrough) => WasiMode::Passthrough,
        Some(Wasi::Deny) => WasiMode::Deny,
    };
    Ok((karmem_core_lowering::lower(component, options)?, mode, false))
}

/// `karmem-adapters`' structural test, in the lowering's terms.
fn adapter_shape(module: &[u8]) -> Result<Option<karmem_core_lowering::preview1::AdapterShape>> {
    Ok(karmem_adapters::wasi::recognize_preview1_adapter(module)?.map(|adapter| {
        karmem_core_lowering::preview1::AdapterShape {
            preview1_exports: adapter.preview1_exports,
            run_export: adapter.run_export,
        }
    }))
}

/// Links the preview2-on-preview1 shim into the canonical-ABI module
/// `lowered` (before the Karmem ABI pass) and turns `wasi:cli/run` into
/// `_start`. Each WASI 0.2 import allocates its results with the realloc
/// its `canon lower` names, as the lowering recorded in
/// `karmem:canonical-abi` (a wasip1 adapter's differs from the main module's).
fn serve_wasi(lowered: Vec<u8>, finish: &karmem_adapters::wasi::Finish<'_>) -> Result<(Vec<u8>, Vec<String>)> {
    let reallocs: std::collections::BTreeMap<String, String> = karmem_core_lowering::link::read_canonical_abi(&lowered)?
        .into_iter()
        .filter(|entry| entry.kind == "import")
        .filter_map(|entry| Some((entry.name, entry.realloc?)))
        .collect();
    let realloc_of = |module: &str, field: &str| {
        reallocs.get(&format!("{module}#{field}")).cloned().unwrap_or_else(|| "cabi_realloc".to_string())
    };
    let finished = karmem_adapters::wasi::finish_for_preview1_with(&lowered, finish, &realloc_of)?;
    Ok((finished.module, finished.stubbed))
}
