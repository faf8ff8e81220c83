//! The subcommands, one module each, plus the input/output helpers they share.
//!
//! Owns: reading an input path (`-` is stdin), writing an output path (`-` is
//! stdout), and rendering an error chain for the terminal.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, Result};

pub mod check;
pub mod compat;
pub mod fmt;
pub mod r#gen;
pub mod idl;
pub mod inspect;
pub mod lower;
pub mod message;
pub mod overlay;
pub mod run;

/// Whether `path` is the conventional `-` for stdin or stdout.
pub fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// The name to show for `path` in messages: `<stdin>` for `-`.
pub fn display_name(path: &Path) -> String {
    if is_stdio(path) { "<stdin>".to_string() } else { path.display().to_string() }
}

/// Reads a whole input file; `-` reads stdin.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    if is_stdio(path) {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).context("failed to read stdin")?;
        Ok(bytes)
    } else {
        std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))
    }
}

/// Reads a whole input file as UTF-8 text; `-` reads stdin.
pub fn read_input_text(path: &Path) -> Result<String> {
    let bytes = read_input(path)?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!("`{}` is not UTF-8: invalid byte at offset {}", display_name(path), e.utf8_error().valid_up_to())
    })
}

/// Writes a whole output file; `-` writes stdout. A file is replaced atomically
/// (written beside it, then renamed) so a failed run never leaves half a file.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if is_stdio(path) {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(bytes).context("failed to write stdout")?;
        return stdout.flush().context("failed to write stdout");
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    // Errors name the output the user asked for; the temporary file is
    // removed whatever step failed, and synced before the rename so the new
    // contents are on disk before they replace the old.
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    written.map_err(|error| {
        let _ = std::fs::remove_file(&temp);
        anyhow::Error::new(error).context(format!("failed to write `{}`", path.display()))
    })
}

/// `error: <message>` followed by the `Caused by:` chain, as the CLI prints it.
pub fn render_error(error: &anyhow::Error) -> String {
    let mut out = format!("error: {error}");
    let causes: Vec<String> = error.chain().skip(1).map(|c| c.to_string()).collect();
    if !causes.is_empty() {
        out.push_str("\n\nCaused by:");
        for (i, cause) in causes.iter().enumerate() {
            if causes.len() == 1 {
                let _ = write!(out, "\n    {cause}");
            } else {
                let _ = write!(out, "\n    {i}: {cause}");
            }
        }
    }
    out
}
