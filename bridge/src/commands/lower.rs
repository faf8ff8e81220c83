//! `karmem-bridge lower IN.wasm -o OUT.wasm`: flatten a component into one
//! core module.
//!
//! Owns: the command only. Lowering is `karmem-core-lowering`'s; the IDL
//! text embedded as `karmem:idl` comes from `karmem-wit-import` and
//! `karmem-idl`'s printer; `--abi karmem` (the default) then puts the Karmem
//! ABI at the module's edge with `karmem-adapters` (docs/ABI.md).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
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

/// The component's world as KarmemIDL text. When the WIT cannot be mapped
/// yet the section stays empty and the caller warns why: never made-up text.
fn idl_text(bytes: &[u8]) -> Result<String> {
    let loaded = karmem_wit_import::load::load_wasm(bytes, None)?;
    let imported = karmem_wit_import::convert::import_world(&loaded.resolve, loaded.world)?;
    Ok(karmem_idl::print(&imported.file))
}
