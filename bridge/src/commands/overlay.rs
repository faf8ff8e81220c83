//! The overlay arguments `idl` and `lower` share: patterns, interface
//! memories and placements for a world mapped from WIT (docs/IDL.md,
//! "Overlay"), from a file and from flags.
//!
//! Owns: parsing them into one [`Overlay`], the file's lines first, then the
//! flags. The overlay's meaning is `karmem-wit-import`'s.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use karmem_wit_import::Overlay;

#[derive(Debug, Clone, clap::Args)]
pub struct OverlayArgs {
    /// Set an interface's pattern: `IFACE=direct|fanout|singleton|pool` (repeatable).
    #[arg(long = "pattern", value_name = "IFACE=PATTERN")]
    pub patterns: Vec<String>,
    /// Add a shared memory: `IFACE.NAME=import:ACCESS,export:ACCESS,PAGES` (repeatable).
    #[arg(long = "memory", value_name = "IFACE.NAME=SPEC")]
    pub memories: Vec<String>,
    /// Place a parameter (or the result, `ret`) in an interface memory:
    /// `IFACE.FUNCTION.PARAM=MEMORY` (repeatable).
    #[arg(long = "place", value_name = "IFACE.FN.PARAM=MEMORY")]
    pub placements: Vec<String>,
    /// An overlay file of `pattern`, `memory` and `place` lines, applied before the flags.
    #[arg(long)]
    pub overlay: Option<PathBuf>,
}

impl OverlayArgs {
    /// The overlay file's lines, then the flags.
    pub fn overlay(&self) -> Result<Overlay> {
        let mut overlay = match &self.overlay {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("failed to read overlay `{}`", path.display()))?;
                Overlay::parse_file(&text).with_context(|| format!("failed to parse overlay `{}`", path.display()))?
            }
            None => Overlay::default(),
        };
        let mut flags = Overlay::default();
        for arg in &self.patterns {
            flags.patterns.push(Overlay::parse_pattern(arg).with_context(|| format!("bad `--pattern {arg}`"))?);
        }
        for arg in &self.memories {
            flags.memories.push(Overlay::parse_memory(arg).with_context(|| format!("bad `--memory {arg}`"))?);
        }
        for arg in &self.placements {
            flags.placements.push(Overlay::parse_placement(arg).with_context(|| format!("bad `--place {arg}`"))?);
        }
        overlay.extend(flags);
        Ok(overlay)
    }
}
