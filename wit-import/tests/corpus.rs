//! The WIT corpus in `fixtures/wit/`: every case is mapped to KarmemIDL and
//! compared with the snapshot beside it (`BLESS=1` rewrites snapshots).
//!
//! Cases:
//! - `NAME.wit` or a package directory `NAME/` (with `deps/`) -> `NAME.km`;
//! - a component `NAME.wasm` / `NAME.wat` (or a core module with an embedded
//!   `component-type` section) -> `NAME.km`;
//! - `NAME.overlay` beside a case is applied as the overlay file;
//! - a first-line comment `// world: W` (or `;; world: W`) picks the world;
//! - `fail/NAME.wit` must be refused; the error chain is `fail/NAME.err`.
//!
//! Every snapshot must resolve (`karmem_idl::load`), be a fixed point of the
//! printer, and parse back to exactly the tree the importer built.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use karmem_wit_import::{Overlay, import_path};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wit")
}

fn bless() -> bool {
    std::env::var_os("BLESS").is_some()
}

/// Compares `actual` with the file at `path`, or writes it under `BLESS=1`.
fn check_snapshot(path: &Path, actual: &str) -> Result<()> {
    if bless() {
        std::fs::write(path, actual).with_context(|| format!("failed to write `{}`", path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(path)
        .with_context(|| format!("missing snapshot `{}` (run with BLESS=1)", path.display()))?;
    if expected != actual {
        bail!(
            "snapshot `{}` differs (run with BLESS=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
    Ok(())
}

fn world_directive(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let first = text.lines().next()?;
    let rest = first.strip_prefix("// world:").or_else(|| first.strip_prefix(";; world:"))?;
    Some(rest.trim().to_string())
}

/// The cases in the corpus directory, sorted by name.
fn cases() -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(corpus_dir()).context("failed to list fixtures/wit")? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if path.is_dir() {
            if name != "fail" && name != "sources" {
                out.push(path);
            }
        } else if name.ends_with(".wit") || name.ends_with(".wasm") || name.ends_with(".wat") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn snapshot_path(case: &Path, extension: &str) -> PathBuf {
    let stem = case.file_stem().and_then(|s| s.to_str()).unwrap_or("case");
    case.with_file_name(format!("{stem}.{extension}"))
}

fn run_case(case: &Path) -> Result<()> {
    let world_source = if case.is_dir() {
        std::fs::read_dir(case)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "wit"))
            .find_map(|p| world_directive(&p))
    } else {
        world_directive(case)
    };
    let overlay_path = snapshot_path(case, "overlay");
    let overlay = if overlay_path.exists() {
        Overlay::parse_file(&std::fs::read_to_string(&overlay_path)?)?
    } else {
        Overlay::default()
    };
    let imported = import_path(case, world_source.as_deref(), &overlay)?;
    let printed = karmem_idl::print(&imported.file);
    let km = snapshot_path(case, "km");
    check_snapshot(&km, &printed)?;

    // The snapshot resolves, is a fixed point of the printer, and is the tree we built.
    let name = km.display().to_string();
    let schema = karmem_idl::load(&printed, &name).map_err(|d| anyhow::anyhow!("{d}"))?;
    let reprinted = karmem_idl::print(schema.file());
    if reprinted != printed {
        bail!("`{name}` is not a fixed point of the printer:\n{reprinted}");
    }
    if schema.file().without_spans() != imported.file.without_spans() {
        bail!("`{name}` parses back to a different tree than the importer built");
    }
    Ok(())
}

#[test]
fn corpus_snapshots() -> Result<()> {
    let cases = cases()?;
    assert!(cases.len() >= 30, "the corpus should hold at least 30 cases, found {}", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = run_case(case) {
            failures.push(format!("{}: {e:#}", case.display()));
        }
    }
    if !failures.is_empty() {
        bail!("{} of {} cases failed:\n\n{}", failures.len(), cases.len(), failures.join("\n\n"));
    }
    Ok(())
}

#[test]
fn unmappable_wit_is_refused_with_the_item_named() -> Result<()> {
    let dir = corpus_dir().join("fail");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "expected failure cases in {}", dir.display());
    let mut failures = Vec::new();
    for case in &cases {
        match import_path(case, world_directive(case).as_deref(), &Overlay::default()) {
            Ok(_) => failures.push(format!("{}: was accepted", case.display())),
            Err(e) => {
                let text = format!("{e:#}\n").replace(&format!("{}", corpus_dir().display()), "fixtures/wit");
                if let Err(e) = check_snapshot(&snapshot_path(case, "err"), &text) {
                    failures.push(format!("{e:#}"));
                }
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}
