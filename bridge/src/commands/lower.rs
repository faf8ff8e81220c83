//! `karmem-bridge lower IN.wasm -o OUT.wasm`: flatten a component into one
//! core module.
//!
//! Owns: the command only. Lowering is `karmem-core-lowering`'s; the IDL
//! text embedded as `karmem:idl` comes from `karmem-wit-import` and
//! `karmem-idl`'s printer; `--abi karmem` (the default) then puts the Karmem
//! ABI at the module's edge with `karmem-adapters` (docs/ABI.md).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use karmem_adapters::wasi::WasiMode;
use karmem_core_lowering::{Abi, Options};

use super::{display_name, read_input, write_output};

/// The ABI at the lowered module's edge.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AbiArg {
    /// Canonical-ABI flat signatures (exports named as the component's functions).
    Canonical,
    /// The Karmem ABI (docs/ABI.md): messages in, messages out.
    Karmem,
}

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The component to lower (`-` reads stdin).
    pub input: PathBuf,
    /// Where to write the core module (`-` writes stdout). Written atomically.
    #[arg(short, long)]
    pub output: PathBuf,
    /// The ABI at the module's edge.
    #[arg(long, value_enum, default_value = "karmem")]
    pub abi: AbiArg,
    /// Write WebAssembly text instead of binary.
    #[arg(long)]
    pub wat: bool,
    /// Keep memories owned by separate instances as separate memories of a
    /// multi-memory module instead of refusing; with `--abi karmem` the
    /// Karmem edge (messages, `KarmemAlloc`) gets a memory of its own,
    /// exported as `KarmemMemory`.
    #[arg(long)]
    pub multi_memory: bool,
    /// How the module reaches WASI. `preview1` (the default for a wasip1
    /// component whose only WASI user is the preview1 adapter) drops the
    /// adapter and keeps the main module's own `wasi_snapshot_preview1`
    /// imports; `shim` (the default otherwise) serves WASI 0.2 imports with
    /// the preview2-on-preview1 shim, so the module imports only
    /// `wasi_snapshot_preview1` (and `karmem:*`); `deny` refuses what the shim
    /// does not cover, naming the interface; `passthrough` keeps that as
    /// imports.
    #[arg(long, value_enum)]
    pub wasi: Option<WasiArg>,
}

/// `--wasi`: how WASI 0.2 imports are served (docs/LOWERING.md, `## WASI`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WasiArg {
    Preview1,
    Shim,
    Passthrough,
    Deny,
}

pub fn run(opts: Opts) -> Result<()> {
    let name = display_name(&opts.input);
    let bytes = read_input(&opts.input)?;
    let bytes = karmem_core_lowering::binary_input(&bytes)?;
    let idl = idl_text(&bytes);
    let options = Options {
        // The Karmem ABI is built on the canonical boundary.
        abi: Abi::Canonical,
        multi_memory: opts.multi_memory,
        idl: idl.as_ref().ok().cloned(),
    };
    let (lowered, mode) =
        lower_for_wasi(&bytes, &options, opts.wasi).with_context(|| format!("failed to lower `{name}`"))?;
    // Warn only about a module that is written: when lowering fails, its
    // error says why and the warning would be noise before it.
    if let Err(e) = &idl {
        eprintln!("warning: `karmem:idl` left empty: the component's WIT could not be mapped to KarmemIDL: {e:#}");
    }
    // The shim goes in first: it allocates through the module's
    // `cabi_realloc` exports, which the Karmem ABI pass does not keep.
    let lowered =
        serve_wasi(lowered, mode).with_context(|| format!("failed to serve the WASI imports of `{name}`"))?;
    let lowered = match opts.abi {
        AbiArg::Canonical => lowered,
        AbiArg::Karmem => karmem_edge(&bytes, &lowered, opts.multi_memory)
            .with_context(|| format!("failed to put the Karmem ABI on `{name}` (`--abi canonical` skips it)"))?,
    };
    let out = if opts.wat { karmem_core_lowering::to_wat(&lowered)?.into_bytes() } else { lowered };
    write_output(&opts.output, &out)
}

/// The canonical-ABI module `lowered` of `component` with the Karmem ABI;
/// with `--multi-memory` its edge lives in a memory of its own,
/// `KarmemMemory` (docs/ABI.md §2). Prints the adapters' warnings.
fn karmem_edge(component: &[u8], lowered: &[u8], multi_memory: bool) -> Result<Vec<u8>> {
    let world = karmem_adapters::abi::World::from_component(component)?;
    let options = karmem_adapters::abi::Options { edge_memory: multi_memory, ..Default::default() };
    let lowered = karmem_adapters::abi::karmem_abi_with_warnings(lowered, &world, &options)?;
    for warning in &lowered.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(lowered.module)
}

/// Lowers to the canonical boundary and picks the WASI mode. `--wasi
/// preview1` drops the preview1 adapter (refused when there is none). Without
/// `--wasi`, a component carrying the adapter lowers that way when the drop
/// works and leaves no WASI 0.2 import behind (the adapter was the only WASI
/// user); anything else lowers as is, for `--wasi shim`.
fn lower_for_wasi(component: &[u8], options: &Options, wasi: Option<WasiArg>) -> Result<(Vec<u8>, WasiMode)> {
    let mode = match wasi {
        Some(WasiArg::Preview1) => {
            let (lowered, _) = karmem_core_lowering::lower_dropping_preview1_adapter(component, options, &adapter_shape)?
                .context(
                    "`--wasi preview1` drops the preview1 adapter of a wasm32-wasip1 component, and this component has \
                     none; `--wasi shim` serves its WASI 0.2 imports",
                )?;
            return Ok((lowered, WasiMode::Preview1));
        }
        Some(WasiArg::Shim) | None => WasiMode::Shim,
        Some(WasiArg::Passthrough) => WasiMode::Passthrough,
        Some(WasiArg::Deny) => WasiMode::Deny,
    };
    if wasi.is_none() && has_preview1_adapter(component) {
        match karmem_core_lowering::lower_dropping_preview1_adapter(component, options, &adapter_shape) {
            Ok(Some((lowered, report))) if report.wasi_imports_left.is_empty() => {
                return Ok((lowered, WasiMode::Preview1));
            }
            Ok(Some((_, report))) => eprintln!(
                "note: the preview1 adapter is kept (lowered as `--wasi shim`): other modules import WASI 0.2 ({})",
                report.wasi_imports_left.join(", ")
            ),
            Ok(None) => {}
            Err(error) => {
                eprintln!("note: the preview1 adapter is kept (lowered as `--wasi shim`): {error:#}");
            }
        }
    }
    Ok((karmem_core_lowering::lower(component, options)?, mode))
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
fn serve_wasi(lowered: Vec<u8>, mode: WasiMode) -> Result<Vec<u8>> {
    let reallocs: std::collections::BTreeMap<String, String> = karmem_core_lowering::link::read_canonical_abi(&lowered)?
        .into_iter()
        .filter(|entry| entry.kind == "import")
        .filter_map(|entry| Some((entry.name, entry.realloc?)))
        .collect();
    let realloc_of = |module: &str, field: &str| {
        reallocs.get(&format!("{module}#{field}")).cloned().unwrap_or_else(|| "cabi_realloc".to_string())
    };
    let finished = karmem_adapters::wasi::finish_for_preview1(&lowered, mode, &realloc_of)?;
    Ok(finished.module)
}

/// Whether one of the component's core modules is the preview1 adapter. A
/// component that cannot be read says no: the lowering then reports what is
/// wrong with it, with its offset, as for any other malformed input.
fn has_preview1_adapter(component: &[u8]) -> bool {
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        let Ok(payload) = payload else { return false };
        if let wasmparser::Payload::ModuleSection { unchecked_range, .. } = payload {
            let Some(module) = component.get(unchecked_range) else { return false };
            if matches!(karmem_adapters::wasi::recognize_preview1_adapter(module), Ok(Some(_))) {
                return true;
            }
        }
    }
    false
}

/// The component's world as KarmemIDL text. When the WIT cannot be mapped
/// yet the section stays empty and the caller warns why: never made-up text.
fn idl_text(bytes: &[u8]) -> Result<String> {
    let loaded = karmem_wit_import::load::load_wasm(bytes, None)?;
    let imported = karmem_wit_import::convert::import_world(&loaded.resolve, loaded.world)?;
    Ok(karmem_idl::print(&imported.file))
}
