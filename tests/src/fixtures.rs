//! Finding the fixtures on disk.
//!
//! Owns: the layout of `fixtures/` as the tests see it: component fixtures
//! `components/<guest>.<variant>.wasm`, compositions of guests
//! `components/composed/<name>.<variant>.wasm`, WAT fixtures
//! `wat/<name>.wat`, and each fixture's `<name>.invocations` and
//! `<name>.expected` beside them.
//! Running them is left to the runners and the tests.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::invocation::{Invocation, read_invocations};

/// The variants a guest is built as, in the order the tests run them; the
/// first one present is the one `BLESS=1` writes the snapshot from.
pub const VARIANTS: [&str; 4] = ["p2", "core", "p1-reactor", "p1-command"];

/// `fixtures/` in the source tree.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

/// A built component fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentFixture {
    /// The guest crate, e.g. `basics`; also names the invocations file.
    pub guest: String,
    /// One of [`VARIANTS`].
    pub variant: String,
    pub path: PathBuf,
}

/// Every `components/<guest>.<variant>.wasm`, sorted by guest then by the
/// order of [`VARIANTS`].
pub fn component_fixtures() -> Result<Vec<ComponentFixture>> {
    fixtures_in(&fixtures_dir().join("components"))
}

/// Every `components/composed/<name>.<variant>.wasm`: guests composed with
/// each other (`wasm-tools compose`), whose instances own separate memories,
/// so they are not among [`component_fixtures`]. `guest` is the
/// composition's name.
pub fn composed_fixtures() -> Result<Vec<ComponentFixture>> {
    fixtures_in(&fixtures_dir().join("components").join("composed"))
}

/// The `<guest>.<variant>.wasm` files directly in `dir`, sorted by guest
/// then by the order of [`VARIANTS`].
fn fixtures_in(dir: &Path) -> Result<Vec<ComponentFixture>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing `{}`", dir.display()))? {
        let path = entry?.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = file_name.strip_suffix(".wasm") else {
            continue;
        };
        let Some((guest, variant)) = stem.split_once('.') else {
            anyhow::bail!("`{}` is not named `<guest>.<variant>.wasm`", path.display());
        };
        if !VARIANTS.contains(&variant) {
            anyhow::bail!("`{}` has the unknown variant `{variant}`", path.display());
        }
        found.push(ComponentFixture {
            guest: guest.to_owned(),
            variant: variant.to_owned(),
            path,
        });
    }
    found.sort_by_key(|f| {
        (
            f.guest.clone(),
            VARIANTS.iter().position(|v| *v == f.variant),
        )
    });
    Ok(found)
}

/// The variants of one guest.
pub fn guest_variants(guest: &str) -> Result<Vec<ComponentFixture>> {
    Ok(component_fixtures()?
        .into_iter()
        .filter(|f| f.guest == guest)
        .collect())
}

/// Every `wat/<name>.wat`, by name.
pub fn wat_fixtures() -> Result<Vec<(String, PathBuf)>> {
    let dir = fixtures_dir().join("wat");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("listing `{}`", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wat")
            && let Some(name) = path.file_stem().and_then(|n| n.to_str())
        {
            found.push((name.to_owned(), path.clone()));
        }
    }
    found.sort();
    Ok(found)
}

/// The invocations of the fixture `name` (`fixtures/<name>.invocations`).
pub fn invocations(name: &str) -> Result<Vec<Invocation>> {
    read_invocations(&fixtures_dir().join(format!("{name}.invocations")))
}

/// Where the reference transcript of the fixture `name` is kept.
pub fn expected_path(name: &str) -> PathBuf {
    fixtures_dir().join(format!("{name}.expected"))
}
