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
    /// multi-memory module instead of refusing.
    #[arg(long)]
    pub multi_memory: bool,
    /// What to do with WASI 0.2 imports: `shim` (the default) serves them with
    /// the preview2-on-preview1 shim, so the module imports only
    /// `wasi_snapshot_preview1` (and `karmem:*`); `deny` refuses what the shim
    /// does not cover, naming the interface; `passthrough` keeps that as
    /// imports; `preview1` (dropping a wasip1 component's adapter) is not
    /// implemented yet and is refused.
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
    let lowered = karmem_core_lowering::lower(&bytes, &options)
        .with_context(|| format!("failed to lower `{name}`"))?;
    // Warn only about a module that is written: when lowering fails, its
    // error says why and the warning would be noise before it.
    if let Err(e) = &idl {
        eprintln!("warning: `karmem:idl` left empty: the component's WIT could not be mapped to KarmemIDL: {e:#}");
    }
    // The shim goes in first: it allocates through the module's
    // `cabi_realloc` export, which the Karmem ABI pass does not keep.
    let lowered = serve_wasi(&bytes, lowered, opts.wasi.unwrap_or(WasiArg::Shim))
        .with_context(|| format!("failed to serve the WASI imports of `{name}`"))?;
    let lowered = match opts.abi {
        AbiArg::Canonical => lowered,
        AbiArg::Karmem => karmem_edge(&bytes, &lowered)
            .with_context(|| format!("failed to put the Karmem ABI on `{name}` (`--abi canonical` skips it)"))?,
    };
    let out = if opts.wat { karmem_core_lowering::to_wat(&lowered)?.into_bytes() } else { lowered };
    write_output(&opts.output, &out)
}

/// The canonical-ABI module `lowered` of `component` with the Karmem ABI.
fn karmem_edge(component: &[u8], lowered: &[u8]) -> Result<Vec<u8>> {
    let world = karmem_adapters::abi::World::from_component(component)?;
    karmem_adapters::abi::karmem_abi(lowered, &world, &karmem_adapters::abi::Options::default())
}

/// Links the preview2-on-preview1 shim into the canonical-ABI module
/// `lowered` (before the Karmem ABI pass) and turns `wasi:cli/run` into
/// `_start`.
fn serve_wasi(component: &[u8], lowered: Vec<u8>, wasi: WasiArg) -> Result<Vec<u8>> {
    let mode = match wasi {
        WasiArg::Preview1 => anyhow::bail!(
            "`--wasi preview1` (dropping the preview1 adapter of a wasip1 component) is not implemented yet; \
             `--wasi shim` serves the adapter's WASI 0.2 imports instead"
        ),
        WasiArg::Shim => WasiMode::Shim,
        WasiArg::Passthrough => WasiMode::Passthrough,
        WasiArg::Deny => WasiMode::Deny,
    };
    let realloc = realloc_for_wasi_imports(component, &lowered)?;
    let finished = karmem_adapters::wasi::finish_for_preview1(&lowered, mode, &|_, _| realloc.clone())?;
    Ok(finished.module)
}

/// The realloc the component's WASI 0.2 imports allocate their results with:
/// the main module's `cabi_realloc` in a wasip2 component; in a wasip1
/// component every WASI 0.2 import is the preview1 adapter's, whose realloc
/// the lowering exports last among the `cabi_realloc*` exports (the lowering
/// does not report the realloc per import yet).
fn realloc_for_wasi_imports(component: &[u8], lowered: &[u8]) -> Result<String> {
    if !has_preview1_adapter(component)? {
        return Ok("cabi_realloc".to_string());
    }
    let mut last = None;
    for payload in wasmparser::Parser::new(0).parse_all(lowered) {
        if let wasmparser::Payload::ExportSection(section) = payload.context("failed to read the lowered module")? {
            for export in section {
                let export = export.context("failed to read the lowered module's exports")?;
                if export.name.starts_with("cabi_realloc") {
                    last = Some(export.name.to_string());
                }
            }
        }
    }
    last.context("the lowered wasip1 component exports no `cabi_realloc`")
}

fn has_preview1_adapter(component: &[u8]) -> Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::ModuleSection { unchecked_range, .. } =
            payload.context("failed to read the component")?
        {
            let module = component.get(unchecked_range).context("a core module lies outside the component")?;
            if karmem_adapters::wasi::recognize_preview1_adapter(module)?.is_some() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The component's world as KarmemIDL text. When the WIT cannot be mapped
/// yet the section stays empty and the caller warns why: never made-up text.
fn idl_text(bytes: &[u8]) -> Result<String> {
    let loaded = karmem_wit_import::load::load_wasm(bytes, None)?;
    let imported = karmem_wit_import::convert::import_world(&loaded.resolve, loaded.world)?;
    Ok(karmem_idl::print(&imported.file))
}
