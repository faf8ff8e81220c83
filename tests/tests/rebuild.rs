//! The committed components in `fixtures/components/` must be exactly what
//! `fixtures/build.sh` builds from `fixtures/guests/`.
//!
//! Ignored by default: a build from scratch takes minutes (the guests for
//! three targets, and the `xtask` host tool). Run it with
//! `cargo test -p karmem-tests --test rebuild -- --ignored`. Without the wasm
//! targets installed it prints a note and passes.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use karmem_tests::fixtures::fixtures_dir;

const TARGETS: [&str; 3] = ["wasm32-wasip2", "wasm32-wasip1", "wasm32-unknown-unknown"];

/// The targets whose standard library is missing from the active toolchain.
fn missing_targets() -> Result<Vec<&'static str>> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("running `rustc --print sysroot`")?;
    let sysroot = String::from_utf8(output.stdout).context("reading the sysroot path")?;
    let rustlib = Path::new(sysroot.trim()).join("lib").join("rustlib");
    Ok(TARGETS
        .into_iter()
        .filter(|target| !rustlib.join(target).join("lib").is_dir())
        .collect())
}

#[test]
#[ignore = "rebuilds every guest for three targets: minutes; run with --ignored"]
fn committed_components_match_a_rebuild() -> Result<()> {
    let missing = missing_targets()?;
    if !missing.is_empty() {
        println!(
            "note: skipping the rebuild check; targets not installed: {} (rustup target add {})",
            missing.join(", "),
            missing.join(" ")
        );
        return Ok(());
    }
    let fixtures = fixtures_dir();
    let out = tempfile::tempdir().context("creating the output directory")?;
    let status = Command::new("bash")
        .arg(fixtures.join("build.sh"))
        .arg(out.path())
        .status()
        .context("running fixtures/build.sh")?;
    if !status.success() {
        bail!("fixtures/build.sh failed with {status}");
    }
    let committed_dir = fixtures.join("components");
    let mut differences = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(&committed_dir)?
        .chain(std::fs::read_dir(out.path())?)
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wasm"))
        .collect();
    names.sort();
    names.dedup();
    for name in &names {
        let committed = std::fs::read(committed_dir.join(name)).ok();
        let rebuilt = std::fs::read(out.path().join(name)).ok();
        match (committed, rebuilt) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => differences.push(format!("{name}: bytes differ")),
            (Some(_), None) => differences.push(format!("{name}: committed but not built")),
            (None, _) => differences.push(format!("{name}: built but not committed")),
        }
    }
    if !differences.is_empty() {
        bail!(
            "fixtures/components does not match a rebuild (run fixtures/build.sh and commit):\n  {}",
            differences.join("\n  ")
        );
    }
    println!("{} components rebuilt byte for byte", names.len());
    Ok(())
}
