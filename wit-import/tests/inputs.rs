//! The input kinds besides WIT text: a core module carrying an embedded
//! `component-type` section, and the
//! fixture components under `fixtures/components/` (built by the fixtures
//! owner). Each maps to a file that resolves and is a fixed point of the printer.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use karmem_wit_import::{Imported, Overlay, import_path, import_world, load_wasm, load_wit_text};
use wit_component::{StringEncoding, embed_component_metadata};

const WIT: &str = "package test:embedded@1.0.0;

interface api {
    record point { x: s32, y: s32 }
    resource counter {
        constructor(start: u32);
        next: func() -> u32;
    }
    move: func(p: point, by: tuple<s32, s32>) -> point;
}

world embedded {
    import log: func(line: string);
    export api;
}
";

fn check_printed(imported: &Imported, label: &str) -> Result<()> {
    let printed = karmem_idl::print(&imported.file);
    let schema = karmem_idl::load(&printed, label).map_err(|d| anyhow!("{d}"))?;
    if karmem_idl::print(schema.file()) != printed {
        bail!("{label}: not a fixed point of the printer");
    }
    Ok(())
}

#[test]
fn core_module_with_component_type_section() -> Result<()> {
    let loaded = load_wit_text("embedded.wit", WIT, None)?;
    let from_wit = import_world(&loaded.resolve, loaded.world)?;

    let mut module = wat::parse_str("(module (memory (export \"memory\") 1))")?;
    embed_component_metadata(&mut module, &loaded.resolve, loaded.world, StringEncoding::UTF8)?;
    let decoded = load_wasm(&module, None).context("core module")?;
    let from_module = import_world(&decoded.resolve, decoded.world)?;
    // The embedded world is renamed `root:root/root`; everything else is the same,
    // including the world-level functions (in an interface named after the world).
    let renamed = karmem_idl::print(&from_module.file)
        .replace("root:root/root", "test:embedded/embedded@1.0.0")
        .replace("package root:root;", "package test:embedded@1.0.0;")
        .replace("root_imports", "embedded_imports");
    assert_eq!(renamed, karmem_idl::print(&from_wit.file));
    check_printed(&from_module, "core module")?;

    // `--world` must match the module's only world.
    assert!(load_wasm(&module, Some("other")).is_err());
    assert!(load_wasm(&module, Some("root")).is_ok());
    Ok(())
}

#[test]
fn a_core_module_without_wit_is_refused() {
    // `(module)`: magic, version 1, no sections.
    let empty = b"\0asm\x01\0\0\0";
    let err = load_wasm(empty, None).err().map(|e| format!("{e:#}"));
    assert!(err.is_some_and(|e| e.contains("no `component-type` custom section")));
}

#[test]
fn fixture_components_map() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/components");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "wasm")) {
        let label = path.display().to_string();
        // Components and core modules with a component-type section map; a
        // plain core module (no WIT) is refused, which is also fine here.
        match import_path(path, None, &Overlay::default()) {
            Ok(imported) => check_printed(&imported, &label)?,
            Err(e) => {
                let message = format!("{e:#}");
                if !message.contains("no `component-type` custom section") {
                    bail!("{label}: {message}");
                }
            }
        }
    }
    Ok(())
}

/// Ids are the one input the library takes from its caller rather than from
/// the `Resolve` itself: an id of another `Resolve` is an error, not a panic.
#[test]
fn ids_of_another_resolve_are_errors() -> Result<()> {
    let ours = load_wit_text("embedded.wit", WIT, None)?;
    let theirs = load_wit_text("other.wit", "package test:other;\nworld other { record r { a: u8 } export f: func(x: r); }", None)?;
    let error = import_world(&ours.resolve, theirs.world).err().context("a foreign world id mapped")?;
    assert_eq!(format!("{error:#}"), "the world to map is not a world of this WIT `Resolve`");

    let (foreign, _) = theirs.resolve.types.iter().next().context("the other world has a type")?;
    let names = |_: wit_parser::TypeId| String::from("r");
    let error = karmem_wit_import::AbiType::from_wit(&ours.resolve, &wit_parser::Type::Id(foreign), &names)
        .err()
        .context("a foreign type id mapped")?;
    assert_eq!(format!("{error:#}"), "the type is not a type of this WIT `Resolve`");
    Ok(())
}
