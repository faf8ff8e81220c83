//! The karmem-bridge facade: what the CLI does, callable from a build script.
//!
//! Owns: one entry point per subcommand's job, returning `anyhow::Result`.
//! Does not own: argument parsing (`main.rs` and `commands/`).

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, Result};

pub use karmem_idl::Schema;

pub mod canonical_call;
pub mod lower;
pub use lower::{LowerOptions, Lowered, lower};

/// Reads, parses and resolves a KarmemIDL file (`-` reads stdin).
///
/// A parse or resolve error becomes an error whose message is the rendered
/// diagnostic (`message`, ` --> file:line:col`, the source line and a caret).
pub fn load_schema(path: &Path) -> Result<Schema> {
    let (name, source) = if path.as_os_str() == "-" {
        let mut source = String::new();
        std::io::stdin().read_to_string(&mut source).context("failed to read stdin")?;
        ("<stdin>".to_string(), source)
    } else {
        let bytes = std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))?;
        let source = String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "`{}` is not UTF-8: invalid byte at offset {}",
                path.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        (path.display().to_string(), source)
    };
    Ok(karmem_idl::load(&source, &name)?)
}
