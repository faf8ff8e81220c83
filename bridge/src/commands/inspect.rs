//! `karmem-bridge inspect FILE.wasm [--json]`: a component's instance graph
//! or a lowered module's interfaces.
//!
//! Owns: the command only; the description is `karmem_core_lowering::inspect`'s.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use karmem_core_lowering::inspect;

use super::{display_name, read_input, write_output};

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// A component or core module (`-` reads stdin).
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(opts: Opts) -> Result<()> {
    let name = display_name(&opts.file);
    let bytes = read_input(&opts.file)?;
    let bytes = karmem_core_lowering::binary_input(&bytes)?;
    let summary = inspect::inspect(&bytes).with_context(|| format!("failed to inspect `{name}`"))?;
    let text = if opts.json { format!("{}\n", inspect::to_json(&summary)?) } else { inspect::render(&summary) };
    write_output(Path::new("-"), text.as_bytes())
}
