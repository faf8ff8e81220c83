//! `karmem-bridge lower IN.wasm -o OUT.wasm`: flatten a component into one
//! core module.
//!
//! Owns: the command only: its flags, printing the library's warnings and
//! notes, writing the output. The pipeline is `karmem_bridge::lower`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use karmem_bridge::lower::{Abi, LowerOptions, Wasi};

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
    /// exported as `KarmemMemory`. The output needs an engine with
    /// multi-memory (wasmtime, node 22; not wazero 1.9 or node 20).
    #[arg(long)]
    pub multi_memory: bool,
    /// How far the memory of one instance of a composition may grow, as
    /// `OWNER=SIZE` (`64M`, `1G`, bytes): `OWNER` is an instance location
    /// as `inspect` prints it, or `karmem:edge`. Repeatable. Partitions
    /// without one may grow to 64 MiB; the largest instance is open-ended.
    #[arg(long = "memory-quota", value_name = "OWNER=SIZE")]
    pub memory_quotas: Vec<String>,
    /// How the module reaches WASI. `preview1` drops the preview1 adapter of
    /// a wasip1 component and keeps the main module's own
    /// `wasi_snapshot_preview1` imports; `shim` serves WASI 0.2 imports with
    /// the preview2-on-preview1 shim, and links what preview1 cannot serve
    /// (sockets, http, ...) to stubs that act like a host granting no such
    /// capability (`access-denied`-like errors, else a trap naming the
    /// import), listed in one warning; `deny` refuses those, naming the
    /// interface; `passthrough` keeps them as imports (`run --stub-missing`
    /// serves them like the stubs). Default: the adapter is dropped when its
    /// only users are the preview1 imports it implements, other WASI 0.2
    /// imports are served as by `shim`; without an adapter, `shim`.
    #[arg(long, value_enum)]
    pub wasi: Option<WasiArg>,
    /// Patterns and shared memories for the embedded KarmemIDL, as `idl` takes them.
    #[command(flatten)]
    pub overlay: super::overlay::OverlayArgs,
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
    let options = LowerOptions {
        abi: match opts.abi {
            AbiArg::Canonical => Abi::Canonical,
            AbiArg::Karmem => Abi::Karmem,
        },
        wasi: opts.wasi.map(|wasi| match wasi {
            WasiArg::Preview1 => Wasi::Preview1,
            WasiArg::Shim => Wasi::Shim,
            WasiArg::Passthrough => Wasi::Passthrough,
            WasiArg::Deny => Wasi::Deny,
        }),
        multi_memory: opts.multi_memory,
        memory_quotas: parse_quotas(&opts.memory_quotas)?,
        overlay: opts.overlay.overlay()?,
    };
    let lowered = karmem_bridge::lower::lower(&bytes, &options).with_context(|| format!("failed to lower `{name}`"))?;
    for note in &lowered.notes {
        eprintln!("note: {note}");
    }
    for warning in &lowered.warnings {
        eprintln!("warning: {warning}");
    }
    let out = if opts.wat { karmem_core_lowering::to_wat(&lowered.module)?.into_bytes() } else { lowered.module };
    write_output(&opts.output, &out)
}

/// `--memory-quota OWNER=SIZE` flags.
fn parse_quotas(flags: &[String]) -> Result<karmem_partition::Quotas> {
    let mut quotas = karmem_partition::Quotas::new();
    for flag in flags {
        let (owner, size) = flag
            .rsplit_once('=')
            .with_context(|| format!("`--memory-quota {flag}` is not `OWNER=SIZE`"))?;
        let bytes = karmem_partition::layout::parse_size(size).with_context(|| format!("in `--memory-quota {flag}`"))?;
        quotas.insert(owner.to_string(), bytes);
    }
    Ok(quotas)
}
