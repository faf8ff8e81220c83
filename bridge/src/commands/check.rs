//! `karmem-bridge check FILE.km`: parse and resolve, print nothing on success.
//!
//! Owns: the command only; parsing, resolution and diagnostics are `karmem-idl`'s.

use std::path::PathBuf;

use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The KarmemIDL file to check (`-` reads stdin).
    pub file: PathBuf,
}

pub fn run(opts: Opts) -> Result<()> {
    karmem_bridge::load_schema(&opts.file)?;
    Ok(())
}
