//! Reading the inputs `karmem-bridge idl` accepts into a `Resolve` plus one world.
//!
//! Owns: telling the input kinds apart and picking the world:
//! - a directory: a WIT package with an optional `deps/` (`Resolve::push_dir`);
//! - a `.wit` file;
//! - a component binary (or its `.wat` text), decoded with `wit_component::decode`;
//! - a binary-encoded WIT package (a component holding only types);
//! - a core module carrying a `component-type` custom section
//!   (`wit_component::metadata::decode`).
//!
//! Does not own: the mapping itself (`convert`) or reading `-` from stdin (the CLI).

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use wit_parser::{PackageId, Resolve, WorldId};

use crate::arena;

/// A WIT resolve and the world chosen from it.
#[derive(Debug, Clone)]
pub struct LoadedWorld {
    pub resolve: Resolve,
    pub world: WorldId,
}

/// Loads `path` (a directory, `.wit`, `.wasm` or `.wat`) and selects `world`
/// (a name or `ns:pkg/name@version`), or the only world there is.
pub fn load_path(path: &Path, world: Option<&str>) -> Result<LoadedWorld> {
    if path.is_dir() {
        let mut resolve = Resolve::default();
        let pkg = match guard_wit_parser(&path.display().to_string(), || resolve.push_dir(path))? {
            Ok((pkg, _)) => pkg,
            Err(e) => bail!(
                "failed to parse the WIT package in `{}`:\n{}",
                path.display(),
                resolve.render_error(&e)
            ),
        };
        return select(resolve, pkg, world);
    }
    let bytes = std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))?;
    let is_wat = path.extension().is_some_and(|e| e == "wat");
    if is_wat || bytes.starts_with(b"\0asm") {
        let binary = if is_wat {
            wat::parse_bytes(&bytes)
                .with_context(|| format!("failed to parse `{}` as WebAssembly text", path.display()))?
                .into_owned()
        } else {
            bytes
        };
        return load_wasm(&binary, world)
            .with_context(|| format!("failed to read the WIT types of `{}`", path.display()));
    }
    let text = String::from_utf8(bytes)
        .with_context(|| format!("`{}` is neither WebAssembly nor UTF-8 WIT text", path.display()))?;
    load_wit_text(&path.display().to_string(), &text, world)
}

/// Parses WIT source text (one package, possibly with nested packages).
pub fn load_wit_text(name: &str, text: &str, world: Option<&str>) -> Result<LoadedWorld> {
    let mut resolve = Resolve::default();
    let pkg = match guard_wit_parser(name, || resolve.push_str(name, text))? {
        Ok(pkg) => pkg,
        Err(e) => bail!("failed to parse `{name}` as WIT:\n{}", resolve.render_error(&e)),
    };
    select(resolve, pkg, world)
}

/// Decodes a component, a binary WIT package, or a core module with an
/// embedded `component-type` section.
pub fn load_wasm(bytes: &[u8], world: Option<&str>) -> Result<LoadedWorld> {
    if wasmparser_is_component(bytes) {
        let decoded = match wit_component::decode(bytes) {
            Ok(decoded) => decoded,
            // A component may export at its root what a world cannot hold
            // (types, modules): its world is read from a view without them.
            Err(error) => match crate::view::wit_view(bytes) {
                Ok(Some(view)) => wit_component::decode(&view).map_err(|_| error),
                _ => Err(error),
            }
            .context("failed to decode the component's WIT")?,
        };
        return match decoded {
            wit_component::DecodedWasm::Component(resolve, found) => match world {
                None => Ok(LoadedWorld { resolve, world: found }),
                Some(wanted) => {
                    let name = &arena::world(&resolve, found).name;
                    if wanted == name || wanted.ends_with(&format!("/{name}")) {
                        Ok(LoadedWorld { resolve, world: found })
                    } else {
                        bail!("a component has exactly one world, `{name}`, not `{wanted}`")
                    }
                }
            },
            wit_component::DecodedWasm::WitPackage(resolve, pkg) => select(resolve, pkg, world),
        };
    }
    let (_, bindgen) = wit_component::metadata::decode(bytes)
        .context("failed to decode the core module's `component-type` section")?;
    let has_section = !arena::world(&bindgen.resolve, bindgen.world).imports.is_empty()
        || !arena::world(&bindgen.resolve, bindgen.world).exports.is_empty()
        || bindgen.resolve.packages.iter().count() > 1;
    if !has_section {
        bail!("this core module carries no `component-type` custom section, so it has no WIT world");
    }
    match world {
        None => Ok(LoadedWorld { resolve: bindgen.resolve, world: bindgen.world }),
        Some(wanted) => {
            let name = &arena::world(&bindgen.resolve, bindgen.world).name;
            if wanted == name || wanted.ends_with(&format!("/{name}")) {
                Ok(LoadedWorld { resolve: bindgen.resolve, world: bindgen.world })
            } else {
                bail!("the module's embedded world is `{name}`, not `{wanted}`")
            }
        }
    }
}

/// A component's header has layer 1; a core module's has layer 0.
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    matches!(bytes.get(4..8), Some([_, _, 1, 0]))
}

fn select(resolve: Resolve, pkg: PackageId, world: Option<&str>) -> Result<LoadedWorld> {
    let package = arena::package(&resolve, pkg);
    if package.worlds.is_empty() {
        bail!(
            "package `{}` declares no world; add one that imports or exports its interfaces",
            package.name
        );
    }
    let world = resolve
        .select_world(&[pkg], world)
        .with_context(|| format!("failed to pick a world from package `{}`", package.name))?;
    Ok(LoadedWorld { resolve, world })
}

/// wit-parser 0.254.2 can panic on some malformed WIT (an `unwrap` in its
/// resolver, found by the `wit_import` fuzz target; reproducer in
/// `fuzz/regressions/wit_import/wit-parser-unwrap-panic.wit`). Bad input must
/// give an error, not a crash, so the parser runs behind `catch_unwind`.
fn guard_wit_parser<T>(name: &str, parse: impl FnOnce() -> T) -> Result<T> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse));
    GUARDED.with(|g| g.set(g.get().saturating_sub(1)));
    outcome.map_err(|_| anyhow::anyhow!("failed to parse `{name}` as WIT: wit-parser hit an internal error on this input"))
}

std::thread_local! {
    /// How many guarded wit-parser calls are running on this thread.
    static GUARDED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// True while this thread runs wit-parser behind the guard above, whose panics
/// become errors. A program's panic hook uses it to stay quiet about them (the
/// `karmem-bridge` CLI does), so the user sees the error and not a backtrace hint.
pub fn in_guarded_parse() -> bool {
    GUARDED.with(|g| g.get() > 0)
}
