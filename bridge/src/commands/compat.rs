//! `karmem-bridge compat OLD.km NEW.km`: list what changed between two
//! versions of a schema and fail if anything breaks.
//!
//! Owns: the command only; the rules are `karmem_idl::compat`'s.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{display_name, write_output};

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The schema readers and callers were built against (`-` reads stdin).
    pub old: PathBuf,
    /// The schema to check against it.
    pub new: PathBuf,
}

pub fn run(opts: Opts) -> Result<()> {
    if super::is_stdio(&opts.old) && super::is_stdio(&opts.new) {
        bail!("only one of the two schemas can come from stdin");
    }
    let old = karmem_bridge::load_schema(&opts.old)?;
    let new = karmem_bridge::load_schema(&opts.new)?;
    let changes = karmem_idl::compat::compare(&old, &new);
    write_output(Path::new("-"), karmem_idl::compat::report(&changes).as_bytes())?;
    let breaking = changes.iter().filter(|c| c.is_breaking()).count();
    if breaking > 0 {
        let plural = if breaking == 1 { "" } else { "s" };
        bail!(
            "{breaking} breaking change{plural} from `{}` to `{}`",
            display_name(&opts.old),
            display_name(&opts.new)
        );
    }
    Ok(())
}
