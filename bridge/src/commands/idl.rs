//! `karmem-bridge idl INPUT [--world W] [--pattern ..] [--memory ..] [--place ..] [--overlay FILE] [-o OUT]`:
//! WIT (a `.wit` file, a package directory with `deps/`, a component, or a
//! core module with an embedded `component-type` section) to KarmemIDL.
//!
//! Owns: the command only; loading, mapping and the overlay are
//! `karmem-wit-import`'s, printing and checking are `karmem-idl`'s.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow, bail};
use karmem_wit_import::{LoadedWorld, import_world, load_path, load_wasm, load_wit_text};

use super::{display_name, is_stdio, read_input, write_output};

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// A `.wit` file, a WIT package directory, a component (`.wasm`/`.wat`) or a
    /// core module with a `component-type` section (`-` reads stdin).
    pub input: PathBuf,
    /// The world to map, by name or `ns:pkg/name@version`, where there are several.
    #[arg(long)]
    pub world: Option<String>,
    #[command(flatten)]
    pub overlay: super::overlay::OverlayArgs,
    /// Where to write the KarmemIDL file (`-` is stdout). Default: stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn run(opts: Opts) -> Result<()> {
    let overlay = opts.overlay.overlay()?;

    let name = display_name(&opts.input);
    let loaded = load(&opts, &name)?;
    let mut imported = import_world(&loaded.resolve, loaded.world)?;
    overlay.apply(&mut imported).context("failed to apply the overlay")?;
    let printed = karmem_idl::print(&imported.file);
    // The mapping promises a valid file in canonical form; check it rather
    // than write a bad one.
    let schema = karmem_idl::load(&printed, "<generated>")
        .map_err(|d| anyhow!("{d}"))
        .context("internal error: the generated KarmemIDL does not resolve")?;
    if karmem_idl::print(schema.file()) != printed {
        bail!("internal error: the generated KarmemIDL is not in canonical form");
    }
    let output = opts.output.unwrap_or_else(|| PathBuf::from("-"));
    write_output(&output, printed.as_bytes())
}

fn load(opts: &Opts, name: &str) -> Result<LoadedWorld> {
    let world = opts.world.as_deref();
    if !is_stdio(&opts.input) {
        return load_path(&opts.input, world);
    }
    let bytes = read_input(&opts.input)?;
    if bytes.starts_with(b"\0asm") {
        return load_wasm(&bytes, world).with_context(|| format!("failed to read the WIT types of `{name}`"));
    }
    let text = String::from_utf8(bytes).with_context(|| format!("`{name}` is neither WebAssembly nor UTF-8 WIT text"))?;
    load_wit_text(name, &text, world)
}
