//! `karmem-bridge fmt FILE.km [--check] [-o OUT]`: print a file in canonical form.
//!
//! Owns: the command only; the printer is `karmem_idl::print`.

use std::path::PathBuf;

use anyhow::{Result, bail};

use super::{display_name, read_input_text, write_output};

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The KarmemIDL file to format (`-` reads stdin).
    pub file: PathBuf,
    /// Do not write anything; fail if the file is not already formatted.
    #[arg(long)]
    pub check: bool,
    /// Where to write the formatted file (`-` is stdout). Default: stdout.
    #[arg(short, long, conflicts_with = "check")]
    pub output: Option<PathBuf>,
    /// Rewrite the input file in place.
    #[arg(short = 'w', long, conflicts_with_all = ["check", "output"])]
    pub write: bool,
}

pub fn run(opts: Opts) -> Result<()> {
    let name = display_name(&opts.file);
    let source = read_input_text(&opts.file)?;
    let file = karmem_idl::parse_file(&source, &name)?;
    let printed = karmem_idl::print(&file);
    if opts.check {
        if printed != source {
            bail!("`{name}` is not formatted (run `karmem-bridge fmt -w {name}`)");
        }
        return Ok(());
    }
    let output = if opts.write {
        if super::is_stdio(&opts.file) {
            bail!("`--write` needs a file, not stdin");
        }
        opts.file.clone()
    } else {
        opts.output.unwrap_or_else(|| PathBuf::from("-"))
    };
    write_output(&output, printed.as_bytes())
}
