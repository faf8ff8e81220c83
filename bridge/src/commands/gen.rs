//! `karmem-bridge gen rust FILE.km [-o out.rs]`: typed zero-copy views,
//! top-down builders and value types for every type of a schema (structs,
//! unions, enums, flags, options, results, fixed arrays, SoA and bunch arrays).
//!
//! Owns: the command only; the generator is `karmem_format::gen_rust` and
//! the layout it follows is `karmem_format::layout`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};

/// Languages the generator knows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Lang {
    /// Rust views, builders and value types over `karmem-format` (`no_std` + `alloc`).
    Rust,
    /// Go value types, views and builders over the Go host's `karmem` package (`hosts/go`).
    Go,
    /// TypeScript over the JavaScript host (`hosts/js`): value types, zero-copy
    /// views, top-down builders, typed calls per function, and the layout.
    Ts,
}

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The language to generate.
    #[arg(value_enum)]
    pub lang: Lang,
    /// The KarmemIDL file (`-` reads stdin).
    pub file: PathBuf,
    /// Where to write the code (`-` or absent: stdout).
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
    /// Go: the package name (default: the input file's stem).
    #[arg(long)]
    pub package: Option<String>,
}

pub fn run(opts: Opts) -> Result<()> {
    let schema = karmem_bridge::load_schema(&opts.file)?;
    let name = super::display_name(&opts.file);
    let layout = karmem_format::Layout::new(&schema).with_context(|| format!("failed to lay out `{name}`"))?;
    let code = match opts.lang {
        Lang::Rust => karmem_format::gen_rust::generate(&layout, &name),
        Lang::Go => karmem_format::gen_go::generate(&layout, &name, &go_package(&opts))
            .with_context(|| format!("failed to generate Go for `{name}`"))?,
        Lang::Ts => karmem_format::gen_ts::generate(&layout, &name, "karmem-host"),
    };
    super::write_output(&opts.output, code.as_bytes())
        .with_context(|| format!("failed to write generated code for `{name}`"))
}

/// The Go package: `--package`, else the input file's stem (`basics.km`: `basics`).
fn go_package(opts: &Opts) -> String {
    let stem = opts.file.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
    karmem_format::gen_go::package_name(opts.package.as_deref().unwrap_or(&stem))
}
